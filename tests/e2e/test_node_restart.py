"""Restarts on a real node (issue #5): restarting `flotilla server` (API server and
kubelet) does not restart healthy containers, and a pod deleted while the kubelet was
down is torn down when it returns, leaving nothing behind.

Needs root; skipped loudly otherwise. One real node at a time on this machine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import KUBECTL_133, Kubectl, _start_cluster, _stop
from e2e_util import wait_for

ROOT = Path(__file__).resolve().parents[2]
MAKE_IMAGE = ROOT / "crates" / "images" / "tests" / "fixtures" / "make-busybox-image.sh"
IMAGE = "localhost/busybox:e2e"
NODE = "restart-e2e"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="LOUD SKIP: real containers need root (CI runs as root)")


def _containers(flotilla_bin: Path, data_dir: Path) -> dict[str, str]:
    """Running containers: id -> pod name."""
    ctr = [str(flotilla_bin), "ctr", "--data-dir", str(data_dir)]
    ids = subprocess.run(ctr + ["ps", "-q", "--no-trunc"], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    out = {}
    for i in ids:
        # The kubelet may remove a container between the listing and this look.
        p = subprocess.run(ctr + ["inspect", i], capture_output=True, text=True, timeout=60)
        if p.returncode == 0:
            out[i] = json.loads(p.stdout)["spec"]["labels"]["io.kubernetes.pod.name"]
    return out


def _running(k: Kubectl) -> dict[str, dict]:
    items = json.loads(k.ok("get", "pods", "-l", "app=hello", "-o", "json"))["items"]
    return {p["metadata"]["name"]: p for p in items
            if p.get("status", {}).get("phase") == "Running"
            and all(c.get("ready") for c in p["status"].get("containerStatuses", []))
            and not p["metadata"].get("deletionTimestamp")}


def test_restarts_keep_containers_and_clean_up_orphans(flotilla_bin: Path, tmp_path: Path):
    for port in (10250, 10248):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                pytest.fail(f"port {port} is taken: another kubelet runs on this machine")
    cluster = _start_cluster(flotilla_bin, tmp_path, kubelet=True, extra=["--node-name", NODE])
    port = int(cluster.url.rsplit(":", 1)[1])
    data = cluster.data_dir
    k = Kubectl(KUBECTL_133, "1.33", cluster.kubeconfig, tmp_path / "kubectl-home")
    try:
        oci = tmp_path / "oci"
        subprocess.run(["bash", str(MAKE_IMAGE), str(oci), "e2e"], check=True,
                       capture_output=True, timeout=120)
        archive = tmp_path / "busybox.tar"
        subprocess.run(["tar", "-C", str(oci), "-cf", str(archive), "."], check=True, timeout=60)
        subprocess.run([str(flotilla_bin), "ctr", "--data-dir", str(data), "images", "import",
                        "--base-name", "localhost/busybox", str(archive)],
                       check=True, capture_output=True, timeout=120)
        k.ok("create", "deployment", "hello", f"--image={IMAGE}", "--replicas=2", "--",
             "sh", "-c", "exec httpd -f -p 80 -h /etc")
        pods = wait_for(lambda: len(_running(k)) == 2 and _running(k), timeout=90,
                        message="two hello pods Running")
        before = _containers(flotilla_bin, data)
        assert sorted(before.values()) == sorted(pods), (before, list(pods))

        # 1. Restart the whole server: the containers keep running, untouched.
        _stop(cluster.proc)
        assert _containers(flotilla_bin, data) == before
        cluster = _start_cluster(flotilla_bin, tmp_path, kubelet=True,
                                 extra=["--node-name", NODE], port=port)
        wait_for(lambda: len(_running(k)) == 2, timeout=60, message="pods Running after restart")
        assert _containers(flotilla_bin, data) == before
        for p in _running(k).values():
            assert p["status"]["containerStatuses"][0]["restartCount"] == 0

        # 2. A pod deleted while the node's kubelet is down.
        _stop(cluster.proc)
        cluster = _start_cluster(flotilla_bin, tmp_path, kubelet=False, port=port)
        victim = sorted(pods)[0]
        k.ok("delete", "pod", victim, "--force", "--grace-period=0")
        _stop(cluster.proc)
        assert victim in _containers(flotilla_bin, data).values()
        cluster = _start_cluster(flotilla_bin, tmp_path, kubelet=True,
                                 extra=["--node-name", NODE], port=port)
        wait_for(lambda: victim not in _containers(flotilla_bin, data).values(), timeout=60,
                 message="the deleted pod's containers torn down")
        after = wait_for(lambda: len(_running(k)) == 2 and _running(k), timeout=90,
                         message="a replacement Running")
        assert victim not in after
        survivor = sorted(pods)[1]
        kept = [i for i, pod in before.items() if pod == survivor]
        assert all(i in _containers(flotilla_bin, data) for i in kept)
        # The victim's sandbox is gone too: one sandbox per running pod.
        sandboxes = list((data / "sandboxes").iterdir())
        assert len(sandboxes) == 2, sandboxes
    finally:
        k("delete", "deployments,pods", "--all", "--wait=false")
        try:
            wait_for(lambda: not json.loads(k.ok("get", "pods", "-o", "json"))["items"],
                     timeout=60, message="all pods gone")
        except AssertionError:
            pass
        _stop(cluster.proc)
        ctr = [str(flotilla_bin), "ctr", "--data-dir", str(data)]
        ids = subprocess.run(ctr + ["ps", "-a", "-q", "--no-trunc"], capture_output=True,
                             text=True).stdout.split()
        if ids:
            subprocess.run(ctr + ["rm", "-f", *ids], capture_output=True)
