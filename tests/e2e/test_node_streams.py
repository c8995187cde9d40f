"""Streams through a real node: `kubectl port-forward`, `kubectl exec`, `kubectl attach`
and `kubectl run -i`/`-it` with both pinned kubectl versions, API server -> kubelet ->
the pod's network namespace or container (attach: the container's shim).

kubectl 1.33 port-forwards over SPDY tunnelled in a WebSocket
(`SPDY/3.1+portforward.k8s.io`) and execs and attaches over WebSocket
(`v5.channel.k8s.io`);
kubectl 1.20 uses plain SPDY/3.1 (`portforward.k8s.io`, `v4.channel.k8s.io`).

Needs root (namespaces, cgroups, overlayfs, veths); skipped loudly otherwise. One
cluster for the module, on the kubelet's fixed ports (10250, 10248), so no other
module may run a node at the same time.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import KUBECTL_120, KUBECTL_133, Kubectl, _session, _start_cluster, _stop
from e2e_util import wait_for

ROOT = Path(__file__).resolve().parents[2]
MAKE_IMAGE = ROOT / "crates" / "images" / "tests" / "fixtures" / "make-busybox-image.sh"
IMAGE = "localhost/busybox:e2e"
NODE = "flotilla-e2e-streams"
BIG_SIZE = 1 << 20
# The container writes BIG_SIZE bytes of this line, repeated, to /etc/big.txt.
BIG_LINE = b"0123456789abcdef\n"
BIG = (BIG_LINE * (BIG_SIZE // len(BIG_LINE) + 1))[:BIG_SIZE]
READY_TIMEOUT = 30.0

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0,
                       reason="LOUD SKIP: real containers need root (CI runs as root)"),
]


@pytest.fixture(scope="module")
def node(flotilla_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("node-streams")
    # The node owns host-wide things (ports 10250/10248, the flotilla0 bridge, the nft
    # table): a second node on this machine would fight over them. Wait a while for
    # another run's node to finish.
    def ports_free() -> bool:
        for port in (10250, 10248):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return False
        return True
    if not ports_free():
        try:
            wait_for(ports_free, timeout=180, interval=2, message="ports 10250/10248 free")
        except AssertionError:
            pytest.fail("ports 10250/10248 are taken: another kubelet runs on this machine")
    # (conftest relaxes the disk eviction thresholds of test nodes.)
    cluster = _start_cluster(flotilla_bin, base, kubelet=True, extra=["--node-name", NODE])
    try:
        oci = base / "oci"
        subprocess.run(["bash", str(MAKE_IMAGE), str(oci), "e2e"], check=True,
                       capture_output=True, timeout=120)
        archive = base / "busybox.tar"
        subprocess.run(["tar", "-C", str(oci), "-cf", str(archive), "."], check=True,
                       timeout=60)
        subprocess.run([str(flotilla_bin), "ctr", "--data-dir", str(cluster.data_dir), "images",
                        "import", "--base-name", "localhost/busybox", str(archive)],
                       check=True, capture_output=True, timeout=120)
        k133 = Kubectl(KUBECTL_133, "1.33", cluster.kubeconfig, base / "kubectl-1.33")
        k120 = Kubectl(KUBECTL_120, "1.20", cluster.kubeconfig, base / "kubectl-1.20")
        wait_for(lambda: "Ready" in k133.ok("get", "node", NODE), timeout=60,
                 message="the server's own node Ready")
        k133.ok("create", "deployment", "hello", f"--image={IMAGE}", "--", "sh", "-c",
                "yes 0123456789abcdef | head -c 1048576 > /etc/big.txt; "
                "exec httpd -f -p 80 -h /etc")
        pod = wait_for(lambda: _running_pod(k133, "hello"), timeout=90,
                       message="hello pod Running")
        name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
        wait_for(lambda: _get(f"http://{ip}/big.txt") == BIG, timeout=30,
                 message="httpd serves the big file")
        yield {"cluster": cluster, "k133": k133, "k120": k120, "pod": name}
        # Pods leave the node through the kubelet's own teardown (containers, sandbox,
        # veth, address): delete them all and wait before stopping the server.
        k133("delete", "deployments,pods", "--all", "--wait=false")
        wait_for(lambda: not json.loads(k133.ok("get", "pods", "-o", "json"))["items"],
                 timeout=60, message="all pods gone from the node")
        # The kubelet removes a sandbox (mounts, network namespace, veth) after the pod
        # left the API: wait for that too.
        sandboxes = cluster.data_dir / "sandboxes"
        wait_for(lambda: not sandboxes.exists() or not any(sandboxes.iterdir()),
                 timeout=60, message="the node's sandboxes removed")
    finally:
        _stop(cluster.proc)
        # Containers outlive the kubelet by design: stop and remove them.
        ctr = [str(flotilla_bin), "ctr", "--data-dir", str(cluster.data_dir)]
        ids = subprocess.run(ctr + ["ps", "-a", "-q", "--no-trunc"], capture_output=True,
                             text=True, timeout=60).stdout.split()
        if ids:
            subprocess.run(ctr + ["rm", "-f", *ids], capture_output=True, timeout=60)


def _running_pod(k: Kubectl, app: str) -> dict | None:
    items = json.loads(k.ok("get", "pods", "-l", f"app={app}", "-o", "json"))["items"]
    running = [p for p in items if p.get("status", {}).get("phase") == "Running"
               and not p["metadata"].get("deletionTimestamp")]
    return running[0] if running else None


def _get(url: str, timeout: float = 10) -> bytes | None:
    try:
        s = requests.Session()
        s.trust_env = False
        with s:
            r = s.get(url, timeout=timeout)
        return r.content if r.status_code == 200 else None
    except requests.RequestException:
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PortForward:
    """A running `kubectl port-forward`, its output collected in the background."""

    def __init__(self, k: Kubectl, target: str, *ports: str, verbose: bool = False):
        self.k = k
        args = ["port-forward", target, *ports] + (["-v=4"] if verbose else [])
        self.proc = k.popen(*args)
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(pipe, sink: list[str]) -> None:
        for line in iter(pipe.readline, ""):
            sink.append(line)

    def text(self) -> str:
        return f"stdout: {''.join(self.out)}\nstderr: {''.join(self.err)}"

    def wait_ready(self, local_port: int) -> None:
        wait_for(lambda: any(f"127.0.0.1:{local_port}" in line for line in self.out)
                 or self.proc.poll() is not None,
                 timeout=READY_TIMEOUT, message=f"{self.k!r} port-forward listening")
        assert self.proc.poll() is None, f"port-forward exited {self.proc.returncode}\n{self.text()}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for t in self._threads:
            t.join(timeout=5)


@pytest.mark.parametrize("version", ["1.33", "1.20"])
@pytest.mark.parametrize("kind", ["deployment", "pod", "service"])
def test_port_forward_serves_http_from_the_pod(node, version: str, kind: str):
    k = node["k133"] if version == "1.33" else node["k120"]
    target = {"deployment": "deployment/hello", "pod": f"pod/{node['pod']}",
              "service": "service/hello"}[kind]
    remote = "80"
    if kind == "service":
        # kubectl maps the service port to the pod's targetPort itself.
        if node["k133"]("get", "service", "hello").returncode != 0:
            node["k133"].ok("expose", "deployment", "hello", "--port=8080", "--target-port=80")
        remote = "8080"
    port = _free_port()
    pf = PortForward(k, target, f"{port}:{remote}", verbose=version == "1.33")
    try:
        pf.wait_ready(port)
        if version == "1.33":
            # kubectl 1.33 tunnels SPDY in a WebSocket and does not fall back.
            err = "".join(pf.err)
            assert "tunneling_dialer" in err and "portforward.k8s.io" in err, pf.text()
            assert "fallback" not in err, pf.text()
        # Two sequential requests, each a new forwarded connection.
        for _ in range(2):
            body = _get(f"http://127.0.0.1:{port}/hostname")
            assert body is not None, pf.text()
            assert body.decode().strip() == node["pod"]
        # 1 MiB through the forwarder (more than SPDY's 64 KiB default window).
        started = time.monotonic()
        big = _get(f"http://127.0.0.1:{port}/big.txt", timeout=30)
        elapsed = time.monotonic() - started
        assert big is not None, pf.text()
        assert len(big) == BIG_SIZE and big == BIG
        print(f"kubectl {version} port-forward: 1 MiB in {elapsed:.2f}s")
        assert pf.proc.poll() is None, pf.text()
    finally:
        pf.stop()


@pytest.mark.parametrize("version", ["1.33", "1.20"])
def test_port_forward_to_a_closed_port_reports_the_error(node, version: str):
    k = node["k133"] if version == "1.33" else node["k120"]
    good, closed = _free_port(), _free_port()
    pf = PortForward(k, f"pod/{node['pod']}", f"{good}:80", f"{closed}:81")
    try:
        pf.wait_ready(good)
        pf.wait_ready(closed)
        assert _get(f"http://127.0.0.1:{closed}/hostname", timeout=10) is None
        wait_for(lambda: "error forwarding port 81 to pod" in "".join(pf.err),
                 timeout=20, message="the kubelet's error reported by kubectl")
        assert "connection refused" in "".join(pf.err).lower(), pf.text()
        if version == "1.20":
            # The session stays up: the other port keeps working.
            body = _get(f"http://127.0.0.1:{good}/hostname")
            assert body is not None and body.decode().strip() == node["pod"], pf.text()
            assert pf.proc.poll() is None, pf.text()
        else:
            # kubectl >= 1.27 (client-go) closes its whole connection after any error
            # on an error stream and exits: "lost connection to pod". Upstream's kubelet
            # behaves the same; the server side has not closed anything.
            wait_for(lambda: pf.proc.poll() is not None, timeout=20,
                     message="kubectl 1.33 exits after the error")
            wait_for(lambda: "lost connection to pod" in "".join(pf.err), timeout=5,
                     message="kubectl's own message")
    finally:
        pf.stop()


@pytest.mark.parametrize("version", ["1.33", "1.20"])
def test_exec_exit_codes_stdin_and_large_output(node, version: str):
    k = node["k133"] if version == "1.33" else node["k120"]
    pod = node["pod"]
    p = k("exec", pod, "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert p.returncode == 7, p.stderr
    assert p.stdout == "out\n"
    assert "err\n" in p.stderr
    assert k.ok("exec", pod, "--", "true") == ""
    # stdin with -i: the process sees the input, then EOF.
    p = k("exec", "-i", pod, "--", "sh", "-c", "cat; echo done", input="line one\nline two\n")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "line one\nline two\ndone\n"
    # 1 MiB of output.
    started = time.monotonic()
    p = subprocess.run(k.argv(("exec", pod, "--", "cat", "/etc/big.txt")), capture_output=True,
                       env=k.env(), timeout=60, stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    assert p.returncode == 0, p.stderr
    assert p.stdout == BIG
    print(f"kubectl {version} exec: 1 MiB of output in {elapsed:.2f}s")
    # A command that does not exist: an error, not a hang.
    p = k("exec", pod, "--", "/no/such/command")
    assert p.returncode != 0


def test_api_server_refuses_bad_streaming_requests_with_status(node):
    cluster, k = node["cluster"], node["k133"]
    s = _session(cluster)
    s.cert = (str(cluster.client_cert), str(cluster.client_key))
    base = f"{cluster.url}/api/v1/namespaces/default/pods"
    with s:
        # No upgrade at all.
        for sub in ("portforward", "exec?command=true&stdout=1"):
            r = s.post(f"{base}/{node['pod']}/{sub}", timeout=10)
            assert r.status_code == 400, r.text
            st = r.json()
            assert st["kind"] == "Status" and st["reason"] == "BadRequest", st
            assert "upgrade" in st["message"], st
        # A pod no node runs.
        k.ok("run", "nowhere", f"--image={IMAGE}", "--overrides",
             json.dumps({"spec": {"nodeSelector": {"no-such-label": "x"}}}), "--", "true")
        try:
            r = s.post(f"{base}/nowhere/portforward", timeout=10,
                       headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                                "X-Stream-Protocol-Version": "portforward.k8s.io"})
            assert r.status_code == 400, r.text
            assert r.json()["message"] == "pod nowhere does not have a host assigned"
        finally:
            k("delete", "pod", "nowhere", "--wait=false")
        # A protocol the kubelet does not speak: its 403 and accepted versions pass
        # through.
        r = s.post(f"{base}/{node['pod']}/portforward", timeout=10,
                   headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                            "X-Stream-Protocol-Version": "portforward.k8s.io.v9"})
        assert r.status_code == 403, r.text
        assert r.headers.get("X-Accepted-Stream-Protocol-Versions") == "portforward.k8s.io"


def _kubectl_for(node, version: str) -> Kubectl:
    return node["k133"] if version == "1.33" else node["k120"]


def _gone(k: Kubectl, pod: str) -> bool:
    p = k("get", "pod", pod, "-o", "name")
    return p.returncode != 0 and "NotFound" in p.stderr


@pytest.mark.parametrize("version", ["1.33", "1.20"])
def test_run_i_rm_feeds_stdin_and_deletes_the_pod(node, version: str):
    k = _kubectl_for(node, version)
    name = f"att-{version.replace('.', '')}"
    p = k("run", "-i", "--rm", "--restart=Never", f"--image={IMAGE}", name, "--",
          "sh", "-c", "read x; echo got:$x", input="hello\n", timeout=120)
    assert p.returncode == 0, f"stdout: {p.stdout}\nstderr: {p.stderr}"
    assert "got:hello" in p.stdout, f"stdout: {p.stdout}\nstderr: {p.stderr}"
    wait_for(lambda: _gone(k, name), timeout=60, message=f"pod {name} deleted by --rm")


class Terminal:
    """kubectl on a pseudo-terminal (what `-t` needs), read in the background."""

    def __init__(self, k: Kubectl, *args: str):
        import fcntl
        import pty
        import struct
        import termios
        self.master, slave = pty.openpty()
        # kubectl sends its terminal's size to the container's terminal.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 37, 111, 0, 0))
        self.proc = subprocess.Popen(k.argv(args), stdin=slave, stdout=slave, stderr=slave,
                                     env=k.env({"TERM": "xterm"}), start_new_session=True)
        os.close(slave)
        self.buf = b""
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:  # EIO once kubectl has exited
                return
            if not data:
                return
            with self._lock:
                self.buf += data

    def text(self) -> str:
        with self._lock:
            return self.buf.decode(errors="replace")

    def type(self, s: str) -> None:
        os.write(self.master, s.encode())

    def resize(self, rows: int, cols: int) -> None:
        """Resize the terminal and tell kubectl, as a terminal emulator does."""
        import fcntl
        import signal
        import struct
        import termios
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        # kubectl's terminal is not its controlling one here, so the kernel sends no
        # SIGWINCH: send it.
        os.kill(self.proc.pid, signal.SIGWINCH)

    def wait_for(self, needle: str, timeout: float = 60) -> None:
        wait_for(lambda: needle in self.text() or self.proc.poll() is not None,
                 timeout=timeout, interval=0.1, message=f"{needle!r} on the terminal")
        assert needle in self.text(), f"kubectl exited {self.proc.returncode}: {self.text()!r}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._thread.join(timeout=5)
        os.close(self.master)


@pytest.mark.parametrize("version", ["1.33", "1.20"])
def test_run_it_gives_an_interactive_terminal(node, version: str):
    k = _kubectl_for(node, version)
    name = f"tty-{version.replace('.', '')}"
    t = Terminal(k, "run", "-it", "--rm", "--restart=Never", f"--image={IMAGE}", name,
                 "--", "sh")
    try:
        # The shell's first prompt went out before kubectl attached (kubectl says so).
        t.wait_for("If you don't see a command prompt", timeout=90)
        t.type("echo hi-$((1+2))\r")
        t.wait_for("hi-3")
        t.type("stty size\r")
        t.wait_for("37 111")
        t.type("exit\r")
        t.proc.wait(timeout=60)
        assert t.proc.returncode == 0, t.text()
    finally:
        t.close()
    wait_for(lambda: _gone(k, name), timeout=60, message=f"pod {name} deleted by --rm")


@pytest.mark.parametrize("version", ["1.33", "1.20"])
def test_exec_it_follows_terminal_resizes(node, version: str):
    k = _kubectl_for(node, version)
    pod = _counter_pod(node["k133"])
    t = Terminal(k, "exec", "-it", pod, "--", "sh")
    try:
        t.type("stty size\r")
        t.wait_for("37 111")
        t.resize(45, 132)
        # The new size reaches the container's terminal shortly after the signal.
        wait_for(lambda: (t.type("stty size\r"), "45 132" in t.text())[1],
                 timeout=30, interval=1.0, message="the resized terminal")
        t.type("exit 3\r")
        t.proc.wait(timeout=60)
        assert t.proc.returncode == 3, t.text()
    finally:
        t.close()


def _counter_pod(k: Kubectl) -> str:
    if k("get", "pod", "counter").returncode != 0:
        k.ok("run", "counter", f"--image={IMAGE}", "--restart=Never", "--", "sh", "-c",
             "i=0; while :; do i=$((i+1)); echo count-$i; sleep 0.2; done")
    wait_for(lambda: json.loads(k.ok("get", "pod", "counter", "-o", "json"))
             .get("status", {}).get("phase") == "Running",
             timeout=90, message="counter pod Running")
    return "counter"


def _counts(text: str) -> list[int]:
    return [int(w[len("count-"):]) for w in text.split() if w.startswith("count-")
            and w[len("count-"):].isdigit()]


@pytest.mark.parametrize("version", ["1.33", "1.20"])
def test_attach_streams_fresh_output_of_a_running_container(node, version: str):
    k = _kubectl_for(node, version)
    pod = _counter_pod(node["k133"])
    wait_for(lambda: _counts(k.ok("logs", pod)), timeout=30, message="counter output")
    before = max(_counts(k.ok("logs", pod)))
    proc = k.popen("attach", pod, "-c", "counter")
    out: list[str] = []
    err: list[str] = []
    threads = [threading.Thread(target=PortForward._pump, args=(proc.stdout, out), daemon=True),
               threading.Thread(target=PortForward._pump, args=(proc.stderr, err), daemon=True)]
    for th in threads:
        th.start()
    try:
        wait_for(lambda: len(_counts("".join(out))) >= 3 or proc.poll() is not None,
                 timeout=60, message="three counter lines through attach")
        seen = _counts("".join(out))
        assert len(seen) >= 3, f"attach exited {proc.returncode}: {''.join(out)} {''.join(err)}"
        # Only output written after the attach, in order, without gaps.
        assert seen[0] >= before, (before, seen)
        assert seen == list(range(seen[0], seen[0] + len(seen))), seen
        assert proc.poll() is None, "attach keeps streaming while the container runs"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for th in threads:
            th.join(timeout=5)


@pytest.mark.parametrize("version", ["1.33", "1.20"])
def test_attach_to_a_missing_container_is_a_clear_error(node, version: str):
    k = _kubectl_for(node, version)
    pod = _counter_pod(node["k133"])
    p = k("attach", pod, "-c", "nope", timeout=60)
    assert p.returncode != 0
    assert "nope" in p.stderr and "panic" not in p.stderr, p.stderr
    # The same request straight to the API server: a Status, and the node lives on.
    cluster = node["cluster"]
    s = _session(cluster)
    s.cert = (str(cluster.client_cert), str(cluster.client_key))
    base = f"{cluster.url}/api/v1/namespaces/default/pods/{pod}/attach"
    upgrade = {"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
               "X-Stream-Protocol-Version": "v4.channel.k8s.io"}
    with s:
        r = s.post(f"{base}?container=nope&stdout=1", headers=upgrade, timeout=10)
        assert r.status_code == 400, r.text
        st = r.json()
        assert st["kind"] == "Status" and st["reason"] == "BadRequest", st
        assert st["message"] == f"container nope is not valid for pod {pod}", st
        r = s.post(f"{base}?container=counter&stdout=1", timeout=10)
        assert r.status_code == 400 and "upgrade" in r.json()["message"], r.text
    assert _counts(k.ok("logs", pod, "--tail=1"))
