"""Durability: concurrent writers while `flotilla server` is killed with SIGKILL.

After a restart on the same data dir, every write the server acknowledged is present
with its value, revisions never go back, and a watch resumed from a revision before
the crash sees every later event exactly once, in order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import requests

from conftest import _free_port, _materialise_credentials

WRITERS = 16
KILL_AFTER_ACKS = 400
MAX_SECONDS = 60


class Server:
    def __init__(self, binary: Path, base: Path, port: int):
        self.binary, self.base, self.port = binary, base, port
        self.data_dir = base / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.url = f"https://127.0.0.1:{port}"

    def start(self) -> None:
        log = open(self.base / "server.log", "ab")
        self.proc = subprocess.Popen(
            [str(self.binary), "server", "--data-dir", str(self.data_dir), "--secure-port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        kubeconfig = self.data_dir / "admin.kubeconfig"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.base / "server.log").read_text()[-3000:]
            if kubeconfig.exists():
                try:
                    _, ca, cert, key = _materialise_credentials(kubeconfig, self.base)
                    s = self.session(ca, cert, key)
                    if s.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                        self.creds = (ca, cert, key)
                        return
                except (requests.RequestException, KeyError, ValueError):
                    pass
            time.sleep(0.2)
        raise AssertionError("server did not become ready")

    @staticmethod
    def session(ca, cert, key) -> requests.Session:
        s = requests.Session()
        s.trust_env = False
        s.verify = str(ca)
        s.cert = (str(cert), str(key))
        return s

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def cm(name: str, value: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": value}}


def test_acknowledged_writes_survive_sigkill(flotilla_bin, tmp_path):
    server = Server(flotilla_bin, tmp_path, _free_port())
    server.start()
    try:
        base = f"{server.url}/api/v1/namespaces/default/configmaps"
        s = server.session(*server.creds)
        first = s.post(base, json=cm("before-crash", "0"), timeout=10)
        assert first.status_code == 201, first.text
        start_rv = int(first.json()["metadata"]["resourceVersion"])

        acked: dict[str, tuple[str, int]] = {}
        lock = threading.Lock()
        stop = threading.Event()

        def writer(i: int) -> None:
            sess = server.session(*server.creds)
            n = 0
            deadline = time.monotonic() + MAX_SECONDS
            while not stop.is_set() and time.monotonic() < deadline:
                name, value = f"w{i}-{n}", f"{i}:{n}"
                n += 1
                try:
                    r = sess.post(base, json=cm(name, value), timeout=10)
                except requests.RequestException:
                    return  # the server died under us: this write was never acknowledged
                if r.status_code != 201:
                    return
                with lock:
                    acked[name] = (value, int(r.json()["metadata"]["resourceVersion"]))
                    if len(acked) >= KILL_AFTER_ACKS:
                        stop.set()

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
        for t in threads:
            t.start()
        stop.wait(timeout=MAX_SECONDS)
        server.kill9()  # writers are still sending: some writes are in flight
        stop.set()
        for t in threads:
            t.join(timeout=30)
        with lock:
            acked_now = dict(acked)
        assert len(acked_now) >= KILL_AFTER_ACKS
        max_acked_rv = max(rv for _, rv in acked_now.values())

        server.start()
        s = server.session(*server.creds)
        listing = s.get(base, timeout=30).json()
        list_rv = int(listing["metadata"]["resourceVersion"])
        assert list_rv >= max_acked_rv, "revision went back after the crash"
        present = {o["metadata"]["name"]: o for o in listing["items"]}
        missing = [n for n in acked_now if n not in present]
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
        for name, (value, rv) in acked_now.items():
            assert present[name]["data"]["v"] == value
            assert int(present[name]["metadata"]["resourceVersion"]) == rv

        # A new write gets a higher revision than anything before the crash.
        r = s.post(base, json=cm("after-crash", "x"), timeout=10)
        assert r.status_code == 201
        assert int(r.json()["metadata"]["resourceVersion"]) > list_rv

        # Resume a watch from before the crash: every later event exactly once, in order.
        w = s.get(base, params={"watch": "1", "resourceVersion": str(start_rv), "timeoutSeconds": "5"},
                  stream=True, timeout=30)
        assert w.status_code == 200
        seen: list[tuple[str, str, int]] = []
        for line in w.iter_lines():
            if not line:
                continue
            ev = json.loads(line)
            assert ev["type"] != "ERROR", ev
            seen.append((ev["type"], ev["object"]["metadata"]["name"],
                         int(ev["object"]["metadata"]["resourceVersion"])))
            if ev["object"]["metadata"]["name"] == "after-crash":
                break
        w.close()
        revs = [rv for _, _, rv in seen]
        assert revs == sorted(revs) and len(set(revs)) == len(revs), "events out of order or duplicated"
        # The controller manager's own ConfigMap (kube-root-ca.crt, published into
        # every namespace) may land before or after the test's first write.
        ours = {n for n in present if n != "kube-root-ca.crt"}
        added = {name for kind, name, _ in seen if kind == "ADDED"} - {"kube-root-ca.crt"}
        expected = ours - {"before-crash"} | {"after-crash"}
        assert added == expected, (f"missing {sorted(expected - added)[:5]}, "
                                   f"unexpected {sorted(added - expected)[:5]}")
    finally:
        server.stop()
