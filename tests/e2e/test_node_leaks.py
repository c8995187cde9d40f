"""Nothing leaks on a real node (issue #5): after 100 pod create/delete cycles the
node is back where it started - mounts under the data dir, pod cgroups (every v1
controller and the unified tree), veths on flotilla0, network namespaces, IPAM
allocations, shim processes, sandbox/container/pod/log directories.

The cycles are batched to keep the run short: one Deployment scaled 0 -> 10 -> 0 ten
times, each round waiting until ten new pods Run and then until they are gone from the
API. The kubelet tears a sandbox down after its pod left the API, so the final check
waits (bounded) for the counts to come back to the baseline.

Needs root; skipped loudly otherwise. One real node at a time on this machine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import KUBECTL_133, Kubectl, _start_cluster, _stop
from e2e_util import wait_for

ROOT = Path(__file__).resolve().parents[2]
MAKE_IMAGE = ROOT / "crates" / "images" / "tests" / "fixtures" / "make-busybox-image.sh"
IMAGE = "localhost/busybox:e2e"
NODE = "leaks-e2e"
ROUNDS = 10
REPLICAS = 10
CGROUP_ROOT = Path("/sys/fs/cgroup")
BRIDGE = "flotilla0"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="LOUD SKIP: real containers need root (CI runs as root)")


def _is_ipv4(name: str) -> bool:
    parts = name.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)


def _dir_count(path: Path) -> int:
    try:
        return sum(1 for e in path.iterdir() if e.is_dir())
    except FileNotFoundError:
        return 0


def _pod_cgroups() -> dict[str, int]:
    """Pod cgroups (`pod<uid>` and the container cgroups inside) under `kubepods` of
    every hierarchy mounted under /sys/fs/cgroup (v1 controllers, `unified`, or the v2
    root itself), per hierarchy."""
    roots = [CGROUP_ROOT] + [d for d in CGROUP_ROOT.iterdir() if d.is_dir() and not d.is_symlink()]
    out = {}
    for r in roots:
        kubepods = r / "kubepods"
        if not kubepods.is_dir():
            continue
        n = 0
        for dirpath, dirnames, _ in os.walk(kubepods):
            rel = Path(dirpath).relative_to(kubepods)
            if any(part.startswith("pod") for part in rel.parts):
                n += 1
        out[r.name or "/"] = n
    return out


def _veths() -> int:
    out = subprocess.run(["ip", "-o", "link", "show", "master", BRIDGE], capture_output=True,
                         text=True, timeout=30)
    if out.returncode != 0:  # no bridge yet
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.strip())


def _mounts(data_dir: Path) -> list[tuple[str, str]]:
    """(mount point, fs type) of the mounts under the data dir (mountinfo: field 5,
    octal-escaped, and the first field after the ` - ` separator)."""
    prefix = str(data_dir) + "/"
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, after = line.partition(" - ")
        point = fields.split()[4].encode().decode("unicode_escape")
        if point.startswith(prefix):
            found.append((point, after.split()[0]))
    return found


def _shims(data_dir: Path) -> int:
    """`flotilla shim ...` processes of this node (their arguments name the data dir)."""
    n = 0
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 2 and argv[1] == b"shim" and any(str(data_dir).encode() in a for a in argv):
            n += 1
    return n


def snapshot(data_dir: Path) -> dict[str, int]:
    mounts = _mounts(data_dir)
    counts = {
        "mounts": len(mounts),
        # Pinned pod namespaces (network, UTS, IPC): the netns entries of this node.
        "nsfs mounts": sum(1 for _, fstype in mounts if fstype == "nsfs"),
        "overlay mounts": sum(1 for _, fstype in mounts if fstype == "overlay"),
        "veths": _veths(),
        "ipam": sum(1 for p in (data_dir / "network").rglob("*") if _is_ipv4(p.name))
        if (data_dir / "network").is_dir() else 0,
        "shims": _shims(data_dir),
        "sandbox dirs": _dir_count(data_dir / "sandboxes"),
        "container dirs": _dir_count(data_dir / "containers"),
        "pod dirs": _dir_count(data_dir / "agent" / "pods"),
        "pod log dirs": _dir_count(data_dir / "agent" / "logs"),
    }
    for name, n in _pod_cgroups().items():
        counts[f"cgroups {name}"] = n
    return counts


def _pods(k: Kubectl) -> list[dict]:
    return json.loads(k.ok("get", "pods", "-l", "app=cycle", "-o", "json"))["items"]


@pytest.mark.timeout(420)
def test_hundred_pod_cycles_leave_nothing_behind(flotilla_bin: Path, tmp_path: Path):
    for port in (10250, 10248):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                pytest.fail(f"port {port} is taken: another kubelet runs on this machine")
    cluster = _start_cluster(flotilla_bin, tmp_path, kubelet=True, extra=["--node-name", NODE])
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
        wait_for(lambda: "Ready" in k.ok("get", "node", NODE), timeout=60,
                 message="the node Ready")
        before = snapshot(data)
        print(f"baseline: {before}")

        deployment = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "cycle"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "cycle"}},
                "template": {
                    "metadata": {"labels": {"app": "cycle"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{
                            "name": "main", "image": IMAGE,
                            # A log line, an emptyDir mount and a configMap-free volume
                            # file (downward API) to exercise every per-pod resource.
                            "command": ["sh", "-c", "echo up; exec sleep 3600"],
                            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"},
                                             {"name": "info", "mountPath": "/info"}],
                        }],
                        "volumes": [
                            {"name": "scratch", "emptyDir": {}},
                            {"name": "info", "downwardAPI": {"items": [
                                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                        ],
                    },
                },
            },
        }
        k.ok("apply", "-f", "-", input=json.dumps(deployment))
        seen: set[str] = set()
        started = time.monotonic()
        for rnd in range(ROUNDS):
            k.ok("scale", "deployment", "cycle", f"--replicas={REPLICAS}")

            def running() -> list[str] | None:
                names = [p["metadata"]["name"] for p in _pods(k)
                         if p.get("status", {}).get("phase") == "Running"
                         and not p["metadata"].get("deletionTimestamp")
                         and p["metadata"]["name"] not in seen]
                return names if len(names) == REPLICAS else None
            names = wait_for(running, timeout=90, interval=0.3,
                             message=f"round {rnd}: {REPLICAS} new pods Running")
            seen.update(names)
            if rnd == 0:
                # The probes see the pods (else a baseline of zeros proves nothing):
                # every per-pod resource is there at least once per running pod.
                during = snapshot(data)
                print(f"with {REPLICAS} pods: {during}")
                for key, n in during.items():
                    if not key.startswith("cgroups"):
                        assert n >= before.get(key, 0) + REPLICAS, (key, n, before)
                # The controllers the runtime uses have one cgroup per pod at least.
                assert any(n >= before.get(key, 0) + REPLICAS
                           for key, n in during.items() if key.startswith("cgroups")), during
            k.ok("scale", "deployment", "cycle", "--replicas=0")
            wait_for(lambda: not _pods(k), timeout=90, interval=0.3,
                     message=f"round {rnd}: pods gone from the API")
        assert len(seen) == ROUNDS * REPLICAS
        print(f"{len(seen)} pods created and deleted in {time.monotonic() - started:.1f}s")
        k.ok("delete", "deployment", "cycle")

        last: dict[str, int] = {}

        def back_to_baseline() -> bool:
            nonlocal last
            last = snapshot(data)
            return all(last.get(key, 0) == n for key, n in before.items()) and all(
                n == before.get(key, 0) for key, n in last.items())
        try:
            wait_for(back_to_baseline, timeout=60, interval=0.5,
                     message="node resources back to the baseline")
        finally:
            print(f"after:    {last}")
            print(f"{'resource':<22}{'before':>8}{'after':>8}")
            for key in sorted(set(before) | set(last)):
                print(f"{key:<22}{before.get(key, 0):>8}{last.get(key, 0):>8}")
        assert last == before
        # The kubelet itself is still healthy after all this.
        assert cluster.alive()
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
