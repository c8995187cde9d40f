"""Helpers for end-to-end tests that need nodes: a `flotilla sim` process
(hollow nodes) per test module, JSON shortcuts over kubectl, and a pod watch
on a thread that records every state the API server reports.

No fixtures here (see the test modules); nothing in this module sleeps for a
fixed long time: every wait polls with a bound.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

from e2e_util import wait_for

# Upstream's alphabet for generated names and template hashes
# (k8s.io/apimachinery/pkg/util/rand: no vowels, no 0/1/3 to avoid words).
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
SAFE = f"[{SAFE_ALPHABET}]"


class Sim:
    """A running `flotilla sim` with `count` hollow nodes `<prefix><i>`."""

    def __init__(self, binary: Path, kubeconfig: Path, prefix: str, count: int, log_path: Path,
                 extra: list[str] | None = None):
        self.prefix = prefix
        self.count = count
        self.log_path = log_path
        self.names = [f"{prefix}{i}" for i in range(count)]
        self.cmd = [str(binary), "sim", "--kubeconfig", str(kubeconfig), "--nodes", str(count),
                    "--name-prefix", prefix, *(extra or [])]
        log = open(log_path, "wb")
        env = dict(os.environ)
        env.setdefault("NO_COLOR", "1")
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        log.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as e:
            return f"<cannot read {self.log_path}: {e}>"

    def wait_ready(self, kubectl, timeout: float = 30.0) -> None:
        """Every node registered, Ready and given a pod CIDR."""

        def ready():
            assert self.proc.poll() is None, (f"flotilla sim exited with {self.proc.returncode}\n"
                                              f"{self.log_tail()}")
            p = kubectl("get", "nodes", "-o", "json")
            if p.returncode != 0:
                return False
            nodes = {n["metadata"]["name"]: n for n in json.loads(p.stdout)["items"]}
            for name in self.names:
                n = nodes.get(name)
                if n is None or not n.get("spec", {}).get("podCIDR") or not node_ready(n):
                    return False
            return True

        wait_for(ready, timeout=timeout, message=f"sim nodes {self.names} Ready with a podCIDR")

    def stop(self) -> None:
        """SIGTERM the sim (its own process group, started by us), SIGKILL if stuck."""
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass


def node_ready(node: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in node.get("status", {}).get("conditions", []))


def pod_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in pod.get("status", {}).get("conditions", []))


def pod_active(pod: dict) -> bool:
    """Counted by a ReplicaSet: not being deleted and not terminated."""
    return (not pod["metadata"].get("deletionTimestamp")
            and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"))


def kjson(kubectl, *args: Any) -> dict:
    return json.loads(kubectl.ok(*args, "-o", "json"))


def pods(kubectl, ns: str, selector: str | None = None) -> list[dict]:
    args = ["get", "pods", "-n", ns]
    if selector:
        args += ["-l", selector]
    return kjson(kubectl, *args)["items"]


def running_pods(kubectl, ns: str, selector: str | None = None) -> list[dict]:
    return [p for p in pods(kubectl, ns, selector)
            if pod_active(p) and p["status"].get("phase") == "Running" and pod_ready(p)]


def wait_running(kubectl, ns: str, selector: str, count: int, timeout: float = 30.0,
                 pred: Callable[[dict], bool] | None = None) -> list[dict]:
    """Wait until exactly `count` pods matching `selector` exist, all active,
    Running and Ready (and satisfying `pred`), and no other pod of the
    selector is left (terminating ones included)."""

    def check():
        all_pods = pods(kubectl, ns, selector)
        good = [p for p in all_pods if pod_active(p) and p["status"].get("phase") == "Running"
                and pod_ready(p) and (pred is None or pred(p))]
        if len(good) == count and len(all_pods) == count:
            return good
        return False

    return wait_for(check, timeout=timeout, interval=0.3,
                    message=f"{count} Running pods for {selector} in {ns}")


def apply(kubectl, ns: str, *docs: dict) -> str:
    import yaml

    text = "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)
    return kubectl.ok("apply", "-n", ns, "-f", "-", input=text)


class PodWatch:
    """Lists the pods of a namespace, then watches them from that
    resourceVersion on a thread (raw HTTPS through the `api` fixture) and
    keeps, after every event, `summarise(state)` where `state` maps pod name ->
    pod. Because watch events arrive in resourceVersion order, each recorded
    summary is a state the store really went through."""

    def __init__(self, api, ns: str, summarise: Callable[[dict[str, dict]], Any]):
        self.api = api
        self.ns = ns
        self.summarise = summarise
        self.snapshots: list[tuple[str, str, Any]] = []
        self.errors: list[str] = []
        r = api.get(f"/api/v1/namespaces/{ns}/pods")
        assert r.status_code == 200, r.text
        body = r.json()
        self.state = {p["metadata"]["name"]: p for p in body["items"]}
        self.snapshots.append(("LIST", "", summarise(dict(self.state))))
        self._rv = body["metadata"]["resourceVersion"]
        self._stop = threading.Event()
        self._response = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._response = self.api.get(
                f"/api/v1/namespaces/{self.ns}/pods",
                params={"watch": "1", "resourceVersion": self._rv, "allowWatchBookmarks": "false",
                        "timeoutSeconds": "120"},
                stream=True, timeout=(10, 130))
            if self._response.status_code != 200:
                self.errors.append(f"watch answered {self._response.status_code}: {self._response.text}")
                return
            for line in self._response.iter_lines():
                if self._stop.is_set():
                    return
                if not line:
                    continue
                ev = json.loads(line)
                obj = ev["object"]
                if ev["type"] == "ERROR":
                    self.errors.append(f"watch error event: {obj}")
                    return
                if ev["type"] == "BOOKMARK":
                    continue
                name = obj["metadata"]["name"]
                with self._lock:
                    if ev["type"] == "DELETED":
                        self.state.pop(name, None)
                    else:
                        self.state[name] = obj
                    self.snapshots.append((ev["type"], name, self.summarise(dict(self.state))))
        except Exception as e:  # noqa: BLE001 - reported through self.errors unless we stopped it
            if not self._stop.is_set():
                self.errors.append(f"watch failed: {e!r}")

    def events(self) -> int:
        with self._lock:
            return len(self.snapshots)

    def wait_quiet_for(self, predicate: Callable[[dict[str, dict]], bool], timeout: float = 30.0) -> None:
        """Wait until the watched state satisfies `predicate`."""

        def check():
            assert not self.errors, self.errors
            with self._lock:
                return predicate(dict(self.state))

        wait_for(check, timeout=timeout, interval=0.2, message="watched pod state")

    def stop(self) -> list[tuple[str, str, Any]]:
        self._stop.set()
        r = self._response
        if r is not None:
            # The reader thread is blocked in a socket read and holds the lock
            # of the response's buffered reader, so `close()` alone would wait
            # for the next event (or the server's timeoutSeconds). Shutting the
            # socket down for reading first makes that read return at once.
            try:
                r.raw.shutdown()
            except Exception:  # noqa: BLE001 - already released or closed
                pass
            try:
                r.close()
            except Exception:  # noqa: BLE001 - closing a stream that is being read
                pass
        self._thread.join(timeout=5)
        assert not self._thread.is_alive(), "pod watch thread did not stop within 5 s"
        assert not self.errors, self.errors
        with self._lock:
            return list(self.snapshots)


def time_left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())
