"""Static pods on a real node (issue #5, seed 004): manifests in a directory run as
real containers by the kubelet alone — no API server — and, with one, are mirrored
read-only into the API as `<name>-<node>`.

`flotilla ctr ps` plays the seed's `docker ps`. Needs root; skipped loudly otherwise.
One real node at a time on this machine (ports 10250/10248, bridge flotilla0): the
modules that start one run one after the other.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import KUBECTL_133, KUBECTL_120, KUBELET_TEST_FLAGS, Kubectl, _start_cluster, _stop
from e2e_util import wait_for

ROOT = Path(__file__).resolve().parents[2]
MAKE_IMAGE = ROOT / "crates" / "images" / "tests" / "fixtures" / "make-busybox-image.sh"
IMAGE = "localhost/busybox:e2e"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="LOUD SKIP: real containers need root (CI runs as root)")


def _manifest(name: str, namespace: str, message: str, port: int = 8080) -> str:
    # A short grace period: httpd is PID 1 of its namespace and ignores SIGTERM, so
    # every stop waits out the grace period before SIGKILL (as with docker).
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "web", "image": IMAGE,
                "command": ["sh", "-c", f"echo {message}; exec httpd -f -p {port} -h /etc"],
            }],
        },
    })


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _require_free_node_ports() -> None:
    for port in (10250, 10248):
        if not _port_free(port):
            pytest.fail(f"port {port} is taken: another kubelet runs on this machine")


class Ctr:
    """`flotilla ctr` on one data directory (the seed's `docker`)."""

    def __init__(self, binary: Path, data_dir: Path):
        self.base = [str(binary), "ctr", "--data-dir", str(data_dir)]

    def __call__(self, *args: str) -> str:
        p = subprocess.run(self.base + list(args), capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, f"flotilla ctr {' '.join(args)}: {p.stderr}"
        return p.stdout

    def containers(self, all_: bool = False) -> list[dict]:
        ids = self("ps", "-q", "--no-trunc", *(["-a"] if all_ else [])).split()
        out = []
        for i in ids:
            # The kubelet may remove a container between the listing and this look.
            p = subprocess.run(self.base + ["inspect", i], capture_output=True, text=True,
                               timeout=60)
            if p.returncode == 0:
                out.append(json.loads(p.stdout))
        return out

    def running(self, pod: str) -> list[dict]:
        return [c for c in self.containers()
                if c["spec"]["labels"].get("io.kubernetes.pod.name") == pod]

    def import_image(self, base: Path) -> None:
        oci = base / "oci"
        subprocess.run(["bash", str(MAKE_IMAGE), str(oci), "e2e"], check=True,
                       capture_output=True, timeout=120)
        archive = base / "busybox.tar"
        subprocess.run(["tar", "-C", str(oci), "-cf", str(archive), "."], check=True, timeout=60)
        self("images", "import", "--base-name", "localhost/busybox", str(archive))

    def remove_all(self) -> None:
        ids = self("ps", "-a", "-q", "--no-trunc").split()
        if ids:
            subprocess.run(self.base + ["rm", "-f", *ids], capture_output=True, timeout=120)


def _get(url: str) -> str | None:
    try:
        s = requests.Session()
        s.trust_env = False
        with s:
            r = s.get(url, timeout=3)
        return r.text if r.status_code == 200 else None
    except requests.RequestException:
        return None


def test_static_pods_without_an_api_server(flotilla_bin: Path, tmp_path: Path):
    """The kubelet alone: create, restart, re-create on change, remove with the file,
    and keep running containers across a kubelet restart."""
    _require_free_node_ports()
    data, manifests = tmp_path / "data", tmp_path / "manifests"
    manifests.mkdir()
    ctr = Ctr(flotilla_bin, data)
    ctr.import_image(tmp_path)
    node = "static-e2e"
    cmd = [str(flotilla_bin), "kubelet", "--data-dir", str(data), "--root-dir",
           str(tmp_path / "kubelet"), "--pod-manifest-path", str(manifests), "--node-name", node,
           *KUBELET_TEST_FLAGS]
    log_path = tmp_path / "kubelet.log"

    def start() -> subprocess.Popen:
        with open(log_path, "ab") as log:
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    env={**os.environ, "NO_COLOR": "1"})

    def log_tail() -> str:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])

    proc = start()
    try:
        (manifests / "web.json").write_text(_manifest("web", "default", "first"))
        c = wait_for(lambda: ctr.running(f"web-{node}"), timeout=60,
                     message=f"static pod running\n{log_tail()}")[0]
        # The seed's `docker ps`: the container is listed with its pod.
        ps = ctr("ps")
        assert f"web-{node}" in ps and "Up " in ps, ps
        assert c["spec"]["command"][-1].startswith("echo first")
        # It serves on its own pod IP (the standalone pod network).
        ip = _pod_ip(ctr, c)
        assert wait_for(lambda: _get(f"http://{ip}:8080/hostname"), timeout=20,
                        message="httpd answers").strip() == f"web-{node}"
        assert "first" in ctr("logs", c["id"])

        # Kill the container: the kubelet starts a new one (restartPolicy Always).
        os.kill(c["pid"], signal.SIGKILL)
        again = wait_for(lambda: [x for x in ctr.running(f"web-{node}") if x["id"] != c["id"]],
                         timeout=60, message=f"container restarted\n{log_tail()}")[0]

        # The kubelet restarts: running containers are kept, not restarted.
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert [x["id"] for x in ctr.running(f"web-{node}")] == [again["id"]]
        proc = start()
        time.sleep(5)
        assert [x["id"] for x in ctr.running(f"web-{node}")] == [again["id"]], log_tail()

        # A changed manifest is a new pod: the old containers go, new ones run it.
        (manifests / "web.json").write_text(_manifest("web", "default", "second"))

        def only_second():
            run = ctr.running(f"web-{node}")
            return (len(run) == 1 and run[0]["spec"]["command"][-1].startswith("echo second")
                    and run)
        wait_for(only_second, timeout=60, message=f"pod re-created from the edit\n{log_tail()}")

        # Removing the file removes the pod.
        (manifests / "web.json").unlink()
        wait_for(lambda: not ctr.running(f"web-{node}"), timeout=60,
                 message=f"pod removed with its file\n{log_tail()}")
        wait_for(lambda: not any((data / "sandboxes").iterdir()), timeout=30,
                 message="sandbox removed")
    finally:
        for f in manifests.iterdir():
            f.unlink()
        if proc.poll() is None:
            try:
                wait_for(lambda: not ctr.containers(), timeout=30, message="containers gone")
            except AssertionError:
                pass
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        ctr.remove_all()


def _pod_ip(ctr: Ctr, c: dict) -> str:
    """The pod's address, read inside the container."""
    out = ctr("exec", c["id"], "ip", "-4", "-o", "addr", "show", "eth0")
    return out.split()[3].split("/")[0]


def test_static_pods_are_mirrored_into_the_api(flotilla_bin: Path, tmp_path: Path):
    """With an API server: mirror pods `<name>-<node>` in the manifest's namespace,
    shown by kubectl 1.33 and 1.20, re-created when deleted (the container keeps
    running), removed with the file."""
    _require_free_node_ports()
    node = "mirror-e2e"
    cluster = _start_cluster(flotilla_bin, tmp_path, kubelet=True, extra=["--node-name", node])
    ctr = Ctr(flotilla_bin, cluster.data_dir)
    manifests = cluster.data_dir / "agent" / "pod-manifests"
    k = Kubectl(KUBECTL_133, "1.33", cluster.kubeconfig, tmp_path / "kubectl-home")
    k20 = Kubectl(KUBECTL_120, "1.20", cluster.kubeconfig, tmp_path / "kubectl-home-20")
    try:
        ctr.import_image(tmp_path)
        wait_for(lambda: "Ready" in k.ok("get", "node", node), timeout=60, message="node Ready")
        manifests.mkdir(parents=True, exist_ok=True)
        (manifests / "myapp.json").write_text(_manifest("myapp-pod", "kube-system", "mirrored"))
        mirror = f"myapp-pod-{node}"

        def running_mirror():
            try:
                p = json.loads(k.ok("get", "pod", mirror, "-n", "kube-system", "-o", "json"))
            except AssertionError:
                return None
            return p if p.get("status", {}).get("phase") == "Running" else None
        pod = wait_for(running_mirror, timeout=60, message="mirror pod Running")
        ann = pod["metadata"]["annotations"]
        assert ann["kubernetes.io/config.source"] == "file"
        assert ann["kubernetes.io/config.mirror"] == ann["kubernetes.io/config.hash"]
        assert pod["spec"]["nodeName"] == node
        owner = pod["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"]) == ("Node", node)
        for kc in (k, k20):
            out = kc.ok("get", "pods", "-n", "kube-system")
            assert mirror in out and "Running" in out, out
        assert "mirrored" in k.ok("logs", "-n", "kube-system", mirror)

        # Deleting the mirror pod does not touch the static pod: the kubelet
        # re-creates the mirror, the container keeps running.
        container = ctr.running(mirror)[0]["id"]
        old_uid = pod["metadata"]["uid"]
        k.ok("delete", "pod", mirror, "-n", "kube-system", "--wait=false")
        again = wait_for(lambda: (p := running_mirror()) and p["metadata"]["uid"] != old_uid and p,
                         timeout=60, message="mirror pod re-created")
        assert again["metadata"]["annotations"]["kubernetes.io/config.mirror"]
        assert [c["id"] for c in ctr.running(mirror)] == [container]

        # The mirror is read-only for the node: its mirror annotation cannot be
        # changed, and an edit of what the API allows (the image) is not run — the
        # file is the source of truth.
        p = k("annotate", "pod", mirror, "-n", "kube-system", "kubernetes.io/config.mirror-")
        assert p.returncode != 0 and "field is immutable" in p.stderr, p.stderr
        k.ok("set", "image", "-n", "kube-system", f"pod/{mirror}", "web=localhost/other:1")
        time.sleep(3)
        assert [c["id"] for c in ctr.running(mirror)] == [container]

        # Removing the file removes the pod and its mirror.
        (manifests / "myapp.json").unlink()
        wait_for(lambda: mirror not in k.ok("get", "pods", "-n", "kube-system"), timeout=60,
                 message="mirror pod deleted with the file")
        wait_for(lambda: not ctr.running(mirror), timeout=60, message="containers stopped")
    finally:
        for f in manifests.glob("*") if manifests.exists() else []:
            f.unlink()
        try:
            wait_for(lambda: not ctr.containers(), timeout=30, message="containers gone")
        except AssertionError:
            pass
        _stop(cluster.proc)
        ctr.remove_all()


def _scheduler_manifest(binary: Path, kubeconfig: Path, name: str) -> str:
    """A control-plane component as a static pod (seed 001, kubeadm style): `flotilla
    scheduler` from the host's binary (hostPath), on the host network, talking to the
    API server with the admin kubeconfig. The busybox image has no C library: the
    host's is mounted where the binary's loader looks for it."""
    volumes, mounts = [], []
    for i, (host, path, kind) in enumerate([
            (str(binary), "/flotilla/flotilla", "File"),
            (str(kubeconfig), "/etc/flotilla/scheduler.kubeconfig", "File"),
            ("/usr/lib", "/usr/lib", "Directory"),
            ("/usr/lib", "/lib", "Directory"),
            ("/usr/lib64", "/lib64", "Directory")]):
        if not Path(host).exists():
            continue
        volumes.append({"name": f"v{i}", "hostPath": {"path": host, "type": kind}})
        mounts.append({"name": f"v{i}", "mountPath": path, "readOnly": True})
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "kube-system",
                     "labels": {"component": name, "tier": "control-plane"}},
        "spec": {
            "hostNetwork": True,
            "priorityClassName": "system-node-critical",
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": name, "image": IMAGE,
                "command": ["/flotilla/flotilla", "scheduler",
                            "--kubeconfig", "/etc/flotilla/scheduler.kubeconfig",
                            "--scheduler-name", "my-scheduler",
                            "--leader-elect-resource-name", name],
                "volumeMounts": mounts,
            }],
            "volumes": volumes,
        },
    })


def test_a_scheduler_runs_as_a_static_pod(flotilla_bin: Path, tmp_path: Path):
    """Seed 001: a control-plane component runs as a static pod with hostNetwork
    (kubeadm's way), and a second scheduler serves the pods that name it: a pod with
    `schedulerName: my-scheduler` stays Pending until the static-pod scheduler runs,
    then it is bound by it."""
    _require_free_node_ports()
    node = "cp-e2e"
    cluster = _start_cluster(flotilla_bin, tmp_path, kubelet=True, extra=["--node-name", node])
    ctr = Ctr(flotilla_bin, cluster.data_dir)
    manifests = cluster.data_dir / "agent" / "pod-manifests"
    k = Kubectl(KUBECTL_133, "1.33", cluster.kubeconfig, tmp_path / "kubectl-home")
    try:
        ctr.import_image(tmp_path)
        wait_for(lambda: "Ready" in k.ok("get", "node", node), timeout=60, message="node Ready")
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "picky", "namespace": "default"},
               "spec": {"schedulerName": "my-scheduler", "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "c", "image": IMAGE,
                                        "command": ["sleep", "3600"]}]}}
        k.ok("apply", "-f", "-", input=json.dumps(pod))
        time.sleep(3)
        got = json.loads(k.ok("get", "pod", "picky", "-o", "json"))
        assert not got["spec"].get("nodeName"), "the default scheduler took my-scheduler's pod"

        manifests.mkdir(parents=True, exist_ok=True)
        (manifests / "my-scheduler.json").write_text(
            _scheduler_manifest(flotilla_bin, cluster.data_dir / "admin.kubeconfig",
                                "my-scheduler"))
        mirror = f"my-scheduler-{node}"
        wait_for(lambda: "Running" in k("get", "pod", mirror, "-n", "kube-system").stdout,
                 timeout=60, message="the scheduler's mirror pod Running")
        out = k.ok("get", "pods", "-n", "kube-system", "-o", "wide")
        assert mirror in out, out
        bound = wait_for(
            lambda: (p := json.loads(k.ok("get", "pod", "picky", "-o", "json")))["spec"]
            .get("nodeName") and p, timeout=60,
            message="my-scheduler bound its pod\n" + k("logs", "-n", "kube-system", mirror).stdout)
        assert bound["spec"]["nodeName"] == node
        events = k.ok("get", "events", "--field-selector", "involvedObject.name=picky",
                      "-o", "json")
        sources = {(e.get("reason"), (e.get("source") or {}).get("component")
                    or e.get("reportingComponent")) for e in json.loads(events)["items"]}
        assert ("Scheduled", "my-scheduler") in sources, sources
        # It is a real process on the host network, started by the kubelet.
        c = ctr.running(mirror)[0]
        assert c["spec"]["command"][:2] == ["/flotilla/flotilla", "scheduler"]
        wait_for(lambda: json.loads(k.ok("get", "pod", "picky", "-o", "json"))["status"]
                 .get("phase") == "Running", timeout=60, message="picky Running")
        k.ok("delete", "pod", "picky", "--wait=false")
    finally:
        for f in manifests.glob("*") if manifests.exists() else []:
            f.unlink()
        try:
            k("delete", "pods", "--all", "--wait=false")
            wait_for(lambda: not ctr.containers(), timeout=60, message="containers gone")
        except AssertionError:
            pass
        _stop(cluster.proc)
        ctr.remove_all()
