"""A second machine joins the cluster: `flotilla agent --server URL --token T`.

A network namespace with a veth pair plays the second machine: the server listens on
0.0.0.0 (its serving certificate then names every host address, the veth's included),
runs its own kubelet as `server-1` (node IP 10.201.0.1) and the agent joins from the
namespace as `worker-1` (node IP 10.201.0.2) with the token from `<data-dir>/token`.

The agent is started with `nsenter --net=/run/netns/NS`, not `ip netns exec NS`: the
latter also unshares the mount namespace and remounts /sys, which hides the cgroup
hierarchies the runtime needs. So both kubelets share this machine's mount namespace
and cgroup tree, as the brief asks to prove harmless: each one's orphan clean-up, cgroups
and network state are keyed by its own data dir (and network namespace).

Needs root; skipped loudly otherwise. Uses the kubelet ports of the host (10250, 10248),
so it runs alone (`flock /tmp/node-e2e.lock`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import KUBECTL_133, KUBELET_TEST_FLAGS, Kubectl, _start_cluster, _stop
from e2e_util import parse_table, wait_for

ROOT = Path(__file__).resolve().parents[2]
MAKE_IMAGE = ROOT / "crates" / "images" / "tests" / "fixtures" / "make-busybox-image.sh"
IMAGE = "localhost/busybox:e2e"

HOST_IP, WORKER_IP = "10.201.0.1", "10.201.0.2"
SUFFIX = str(os.getpid())
NETNS = f"flt-agent-{SUFFIX}"
VETH_HOST, VETH_NS = f"fah{SUFFIX}"[:15], f"fan{SUFFIX}"[:15]
SERVER_NODE, WORKER_NODE = "server-1", "worker-1"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="LOUD SKIP: real containers and network namespaces need root")


def _run(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, f"{' '.join(argv)}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def _in_netns(*argv: str) -> list[str]:
    """Run in the worker's network namespace only (same mounts, cgroups, PIDs)."""
    return ["nsenter", f"--net=/run/netns/{NETNS}", "--", *argv]


def _get_in_netns(url: str) -> subprocess.CompletedProcess:
    """An HTTP GET from the worker "machine" (no proxy)."""
    code = ("import sys, urllib.request as u; o = u.build_opener(u.ProxyHandler({})); "
            f"sys.stdout.write(o.open({url!r}, timeout=5).read().decode())")
    return _run(*_in_netns(sys.executable, "-c", code), check=False)


def _make_netns() -> None:
    if HOST_IP in _run("ip", "-4", "-o", "addr").stdout:
        pytest.fail(f"{HOST_IP} is already configured on this machine: a leftover of another run?")
    _run("ip", "netns", "add", NETNS)
    _run("ip", "link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_NS)
    _run("ip", "link", "set", VETH_NS, "netns", NETNS)
    _run("ip", "addr", "add", f"{HOST_IP}/24", "dev", VETH_HOST)
    _run("ip", "link", "set", VETH_HOST, "up")
    _run("ip", "-n", NETNS, "addr", "add", f"{WORKER_IP}/24", "dev", VETH_NS)
    _run("ip", "-n", NETNS, "link", "set", VETH_NS, "up")
    _run("ip", "-n", NETNS, "link", "set", "lo", "up")
    _run("ip", "-n", NETNS, "route", "add", "default", "via", HOST_IP)


def _remove_netns() -> None:
    _run("ip", "netns", "del", NETNS, check=False)
    _run("ip", "link", "del", VETH_HOST, check=False)


def _import_image(binary: Path, data_dir: Path, base: Path) -> None:
    archive = base / "busybox.tar"
    if not archive.exists():
        oci = base / "oci"
        _run("bash", str(MAKE_IMAGE), str(oci), "e2e", timeout=120)
        _run("tar", "-C", str(oci), "-cf", str(archive), ".")
    _run(str(binary), "ctr", "--data-dir", str(data_dir), "images", "import", "--base-name",
         "localhost/busybox", str(archive), timeout=120)


def _ctr(binary: Path, data_dir: Path, netns: bool, *args: str) -> subprocess.CompletedProcess:
    argv = [str(binary), "ctr", "--data-dir", str(data_dir), *args]
    return _run(*(_in_netns(*argv) if netns else argv), check=False, timeout=120)


def _remove_containers(binary: Path, data_dir: Path, netns: bool) -> None:
    ids = _ctr(binary, data_dir, netns, "ps", "-a", "-q", "--no-trunc").stdout.split()
    if ids:
        _ctr(binary, data_dir, netns, "rm", "-f", *ids)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


class Agent:
    def __init__(self, binary: Path, base: Path, url: str, token: str):
        self.data_dir = base / "worker"
        self.log_path = base / "agent.log"
        self.cmd = _in_netns(
            str(binary), "agent", "--server", url, "--token", token,
            "--data-dir", str(self.data_dir), "--node-name", WORKER_NODE,
            "--node-ip", WORKER_IP, "--insecure-registry", f"{HOST_IP}:5000", *KUBELET_TEST_FLAGS)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         env={**os.environ, "NO_COLOR": "1"})

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


@pytest.fixture(scope="module")
def cluster2(flotilla_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("agent")
    for port in (10250, 10248):
        if not _port_free(port):
            pytest.fail(f"port {port} is taken: another kubelet runs on this machine")
    _make_netns()
    server = agent = None
    k = None
    try:
        server = _start_cluster(flotilla_bin, base, kubelet=True, bind="0.0.0.0",
                                extra=["--node-name", SERVER_NODE, "--node-ip", HOST_IP])
        port = server.url.rsplit(":", 1)[1]
        k = Kubectl(KUBECTL_133, "1.33", server.kubeconfig, base / "kubectl-home")
        _import_image(flotilla_bin, server.data_dir, base)
        wait_for(lambda: "Ready" in k.ok("get", "node", SERVER_NODE), timeout=60,
                 message="the server's own node Ready")
        token_file = server.data_dir / "token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        agent = Agent(flotilla_bin, base, f"https://{HOST_IP}:{port}", token)
        _import_image(flotilla_bin, agent.data_dir, base)
        yield server, agent, k, token
        # Pods leave both nodes through their kubelets: delete them and wait.
        for f in (agent.data_dir / "agent" / "pod-manifests").glob("*"):
            f.unlink()
        k("delete", "pods", "--all", "--wait=false")
        wait_for(lambda: not json.loads(k.ok("get", "pods", "-o", "json"))["items"],
                 timeout=90, message="all pods gone")
        for d in (server.data_dir, agent.data_dir):
            sandboxes = d / "sandboxes"
            wait_for(lambda: not sandboxes.exists() or not any(sandboxes.iterdir()),
                     timeout=60, message=f"sandboxes of {d} removed")
    finally:
        if agent is not None:
            _stop(agent.proc)
        if server is not None:
            _stop(server.proc)
        # Containers outlive their kubelet by design: stop and remove what is left.
        if agent is not None:
            _remove_containers(flotilla_bin, agent.data_dir, netns=True)
        if server is not None:
            _remove_containers(flotilla_bin, server.data_dir, netns=False)
        _remove_netns()
    # Nothing leaks: no namespace, no veth, no mount and no process of this test left.
    assert NETNS not in _run("ip", "netns", "list").stdout
    assert _run("ip", "link", "show", VETH_HOST, check=False).returncode != 0
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(base) not in mounts, [m for m in mounts.splitlines() if str(base) in m]
    left = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmdline = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(base) in cmdline:
                left.append(f"{p.name}: {cmdline}")
    assert not left, left


def _node_row(k: Kubectl, name: str) -> dict:
    return parse_table(k.ok("get", "nodes", "-o", "wide")).row(name)


def _pod(k: Kubectl, name: str) -> dict | None:
    p = k("get", "pod", name, "-o", "json")
    return json.loads(p.stdout) if p.returncode == 0 else None


def _running(k: Kubectl, name: str) -> dict | None:
    p = _pod(k, name)
    return p if p and p.get("status", {}).get("phase") == "Running" else None


def _pod_manifest(name: str, node: str | None, message: str) -> dict:
    spec: dict = {
        "terminationGracePeriodSeconds": 2,
        "containers": [{"name": "web", "image": IMAGE,
                        "command": ["sh", "-c", f"echo {message}; exec httpd -f -p 80 -h /etc"]}],
    }
    if node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}}, "spec": spec}


def test_agent_joins_and_runs_pods(cluster2, flotilla_bin: Path):
    server, agent, k, token = cluster2

    # A pod on the server's node first: the agent's kubelet must leave it alone.
    k.ok("apply", "-f", "-", input=json.dumps(_pod_manifest("on-server", SERVER_NODE, "srv")))
    srv = wait_for(lambda: _running(k, "on-server"), timeout=90, message="pod on server-1 Running")
    srv_container = srv["status"]["containerStatuses"][0]["containerID"]

    # Both nodes Ready; the worker with its own address and no control-plane role.
    def both_ready():
        try:
            rows = {n: _node_row(k, n) for n in (SERVER_NODE, WORKER_NODE)}
        except AssertionError:
            return None
        return rows if all(r["STATUS"] == "Ready" for r in rows.values()) else None
    rows = wait_for(both_ready, timeout=90,
                    message=f"both nodes Ready\n--- agent log ---\n{agent.log_tail()}")
    assert rows[WORKER_NODE]["INTERNAL-IP"] == WORKER_IP, rows
    assert rows[SERVER_NODE]["INTERNAL-IP"] == HOST_IP, rows
    assert rows[WORKER_NODE]["ROLES"] == "<none>", rows
    assert "control-plane" in rows[SERVER_NODE]["ROLES"], rows
    worker = json.loads(k.ok("get", "node", WORKER_NODE, "-o", "json"))
    assert not any(l.startswith("node-role.kubernetes.io/") for l in worker["metadata"]["labels"])
    pod_cidr = ipaddress.ip_network(worker["spec"]["podCIDR"])

    # The agent authenticated as the node itself and pinned the CA of the token.
    agent_dir = agent.data_dir / "agent"
    assert (agent_dir / "kubelet.kubeconfig").stat().st_mode & 0o777 == 0o600
    assert (agent_dir / "server-ca.crt").read_bytes() == (server.data_dir / "pki" / "ca.crt").read_bytes()
    assert "joined https://" in agent.log_path.read_text() and "system:node:worker-1" in agent.log_path.read_text()

    # A pod pinned to the worker runs there, with an IP of the worker's podCIDR.
    k.ok("apply", "-f", "-", input=json.dumps(_pod_manifest("on-worker", WORKER_NODE, "hello-worker")))
    pod = wait_for(lambda: _running(k, "on-worker"), timeout=90,
                   message=f"pod on worker-1 Running\n--- agent log ---\n{agent.log_tail()}")
    assert pod["spec"]["nodeName"] == WORKER_NODE
    ip = ipaddress.ip_address(pod["status"]["podIP"])
    assert ip in pod_cidr, (ip, pod_cidr)
    assert pod["status"]["hostIP"] == WORKER_IP

    # logs and exec go API server -> the worker's kubelet (10.201.0.2:10250) -> runtime.
    wait_for(lambda: "hello-worker" in k.ok("logs", "on-worker"), timeout=30, message="log line")
    p = k("exec", "on-worker", "--", "sh", "-c", "cat /proc/1/cmdline; exit 7")
    assert p.returncode == 7, p.stderr
    assert p.stdout.startswith("httpd"), p.stdout
    # httpd answers on the pod IP inside the worker "machine".
    out = _get_in_netns(f"http://{ip}/hostname")
    assert out.stdout.strip() == "on-worker", out

    # The worker's containers are in its own data dir; the server's pod is untouched
    # (same container, never restarted) after the agent's orphan clean-up ran.
    ps = _ctr(flotilla_bin, agent.data_dir, True, "ps").stdout
    assert "on-worker" in ps and "on-server" not in ps, ps
    ps = _ctr(flotilla_bin, server.data_dir, False, "ps").stdout
    assert "on-server" in ps and "on-worker" not in ps, ps

    # Seed 004 on the worker: a static pod dropped into its manifest directory.
    manifests = agent_dir / "pod-manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    static = _pod_manifest("myapp-pod", None, "static-on-worker")
    (manifests / "myapp.json").write_text(json.dumps(static))
    mirror = f"myapp-pod-{WORKER_NODE}"
    first = wait_for(lambda: _running(k, mirror), timeout=90,
                     message=f"mirror pod Running\n--- agent log ---\n{agent.log_tail()}")
    assert first["spec"]["nodeName"] == WORKER_NODE
    assert "myapp-pod" in k.ok("get", "pods")
    k.ok("delete", "pod", mirror, "--wait=false")
    wait_for(lambda: (p := _running(k, mirror)) and p["metadata"]["uid"] != first["metadata"]["uid"],
             timeout=60, message="mirror pod back after delete")

    # Cross-node pod-to-pod traffic (host-gw routes): the server's pod reaches the
    # worker's pod by its IP.
    tries: list[str] = []

    def across():
        # busybox-static's wget crashes (SIGSEGV) on Debian: plain HTTP over nc.
        p = k("exec", "on-server", "--", "sh", "-c",
              f"printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 80")
        tries.append(p.stdout[-200:] + p.stderr)
        return p.returncode == 0 and "200 OK" in p.stdout and p.stdout

    try:
        out = wait_for(across, timeout=30, message="server pod -> worker pod")
    except AssertionError as e:
        routes = _run("ip", "route", check=False).stdout
        ns_routes = _run("ip", "-n", NETNS, "route", check=False).stdout
        nft = _run("nft", "list", "ruleset", check=False).stdout
        ns_nft = _run(*_in_netns("nft", "list", "ruleset"), check=False).stdout
        srv_ip = _pod(k, "on-server")["status"]["podIP"]
        from_ns = _get_in_netns(f"http://{srv_ip}/hostname")
        raise AssertionError(f"{e}\nlast try: {tries[-1:]}\nhost routes:\n{routes}\n"
                             f"worker routes:\n{ns_routes}\nhost nft:\n{nft}\nworker nft:\n"
                             f"{ns_nft}\nworker host -> server pod: {from_ns}") from None
    assert out.rstrip().splitlines()[-1] == "on-worker", out

    # The server's pod was never touched by the second kubelet (whose orphan clean-up
    # runs every 10 s: more than that has passed since it started).
    srv_now = _pod(k, "on-server")
    assert srv_now["status"]["containerStatuses"][0]["containerID"] == srv_container
    assert srv_now["status"]["containerStatuses"][0]["restartCount"] == 0
    assert agent.proc.poll() is None, agent.log_tail()


def test_wrong_tokens_are_refused(cluster2, flotilla_bin: Path, tmp_path: Path):
    server, agent, k, token = cluster2
    url = agent.cmd[agent.cmd.index("--server") + 1]
    hash_part, _, _secret = token.partition("::server:")

    def join(tok: str, server_url: str = url) -> subprocess.CompletedProcess:
        return _run(*_in_netns(str(flotilla_bin), "agent", "--server", server_url, "--token", tok,
                               "--data-dir", str(tmp_path / "w2"), "--node-name", "worker-2"),
                    check=False, timeout=60)

    p = join(f"{hash_part}::server:not-the-secret")
    assert p.returncode != 0
    assert "refused the join token (401 Unauthorized)" in p.stderr, p.stderr
    p = join("not-the-secret")  # bare secret: no CA pinning, still refused
    assert p.returncode != 0 and "401" in p.stderr, p.stderr
    p = join(f"K10{'0' * 64}::server:{_secret}")
    assert p.returncode != 0
    assert "does not match the token" in p.stderr and "man in the middle" in p.stderr, p.stderr
    p = join(token, f"https://{HOST_IP}:1")
    assert p.returncode != 0 and "cannot reach the server" in p.stderr, p.stderr
    assert not (tmp_path / "w2" / "agent" / "kubelet.kubeconfig").exists()
    assert "worker-2" not in k.ok("get", "nodes")
