"""A real node (issues #4 and #5): `flotilla server` with its kubelet runs pods in
real containers from an image the test builds from Debian's busybox-static.

Needs root (namespaces, cgroups, overlayfs, veths); skipped loudly otherwise. One
cluster for the module, on the kubelet's fixed ports (10250, 10248), so no other
module may start a server with a kubelet.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import KUBECTL_120, KUBECTL_133, Kubectl, _start_cluster, _stop
from e2e_util import wait_for

ROOT = Path(__file__).resolve().parents[2]
MAKE_IMAGE = ROOT / "crates" / "images" / "tests" / "fixtures" / "make-busybox-image.sh"
IMAGE = "localhost/busybox:e2e"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0,
                       reason="LOUD SKIP: real containers need root (CI runs as root)"),
]


@pytest.fixture(scope="module")
def node(flotilla_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("node")
    # The node owns host-wide things (ports 10250/10248, the flotilla0 bridge, the nft
    # table): a second node on this machine (another test run) would fight over them.
    for port in (10250, 10248):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                pytest.fail(f"port {port} is taken: another kubelet runs on this machine")
    # A short syncFrequency: edited ConfigMaps reach running pods within seconds.
    cluster = _start_cluster(flotilla_bin, base, kubelet=True,
                             extra=["--node-name", "flotilla-e2e-node",
                                    "--sync-frequency", "5s"])
    try:
        # The image, built here and imported into the node's image store.
        oci = base / "oci"
        subprocess.run(["bash", str(MAKE_IMAGE), str(oci), "e2e"], check=True,
                       capture_output=True)
        archive = base / "busybox.tar"
        subprocess.run(["tar", "-C", str(oci), "-cf", str(archive), "."], check=True)
        subprocess.run([str(flotilla_bin), "ctr", "--data-dir", str(cluster.data_dir), "images",
                        "import", "--base-name", "localhost/busybox", str(archive)],
                       check=True, capture_output=True)
        k = Kubectl(KUBECTL_133, "1.33", cluster.kubeconfig, base / "kubectl-home")
        wait_for(lambda: "Ready" in k.ok("get", "node", "flotilla-e2e-node"), timeout=60,
                 message="the server's own node Ready")
        yield cluster, k
        # Pods leave the node through the kubelet's own teardown (containers, sandbox,
        # veth, address): delete them all and wait before stopping the server.
        k("delete", "deployments,pods", "--all", "--wait=false")
        wait_for(lambda: not json.loads(k.ok("get", "pods", "-o", "json"))["items"],
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
                             text=True).stdout.split()
        if ids:
            subprocess.run(ctr + ["rm", "-f", *ids], capture_output=True)


def _pod_json(k: Kubectl, name: str) -> dict:
    return json.loads(k.ok("get", "pod", name, "-o", "json"))


def _running_pods(k: Kubectl, app: str) -> list[dict]:
    items = json.loads(k.ok("get", "pods", "-l", f"app={app}", "-o", "json"))["items"]
    return [p for p in items if p.get("status", {}).get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")]


def test_deployment_runs_real_containers(node, flotilla_bin: Path):
    cluster, k = node
    node_obj = json.loads(k.ok("get", "node", "flotilla-e2e-node", "-o", "json"))
    assert "node-role.kubernetes.io/control-plane" in node_obj["metadata"]["labels"]
    assert node_obj["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("flotilla://")
    assert node_obj["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250

    k.ok("create", "deployment", "hello", f"--image={IMAGE}", "--",
         "sh", "-c", "echo started; exec httpd -f -p 80 -h /etc")
    pods = wait_for(lambda: _running_pods(k, "hello"), timeout=60, message="hello pod Running")
    pod = pods[0]
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    assert pod["spec"]["nodeName"] == "flotilla-e2e-node"
    assert pod["status"]["containerStatuses"][0]["ready"] is True

    # The pod's own network: its IP answers from the host, serving the container's /etc.
    r = wait_for(lambda: _get(f"http://{ip}/hostname"), timeout=20, message="httpd answers")
    assert r.strip() == name  # the pod's hostname, from its own UTS namespace

    # kubectl logs and exec go API server -> kubelet -> runtime.
    wait_for(lambda: "started" in k.ok("logs", name), timeout=20, message="log line")
    p = k("exec", name, "--", "sh", "-c", "echo pid $$; exit 7")
    assert p.returncode == 7, p.stderr
    assert p.stdout.strip() == "pid " + p.stdout.strip().split()[-1]
    # The container's PID namespace: httpd is PID 1.
    assert k.ok("exec", name, "--", "cat", "/proc/1/cmdline").startswith("httpd")
    # Default signal dispositions: SIGPIPE is not inherited ignored from the (Rust)
    # shim, else `yes x | head` never ends.
    sig_ign = k.ok("exec", name, "--", "grep", "SigIgn", "/proc/self/status").split()[1]
    assert int(sig_ign, 16) & (1 << (13 - 1)) == 0, f"SIGPIPE ignored: SigIgn {sig_ign}"
    assert k.ok("exec", name, "--", "sh", "-c", "yes x | head -c 100000 | wc -c",
                timeout=30).strip() == "100000"

    # The node-local view shows the kubelet's container with its pod.
    ps = subprocess.run([str(flotilla_bin), "ctr", "--data-dir", str(cluster.data_dir), "ps"],
                        capture_output=True, text=True, check=True).stdout
    assert name in ps and "Up " in ps

    # Self-healing: delete the pod, a replacement runs in a new container.
    k.ok("delete", "pod", name, "--wait=false")
    wait_for(lambda: [p for p in _running_pods(k, "hello") if p["metadata"]["name"] != name],
             timeout=60, message="replacement pod Running")
    wait_for(lambda: name not in k.ok("get", "pods"), timeout=60, message="old pod gone")
    k.ok("delete", "deployment", "hello")


def test_crashing_container_restarts_with_back_off(node):
    _, k = node
    k.ok("run", "crasher", f"--image={IMAGE}", "--", "sh", "-c", "echo boom; exit 2")

    def restarted():
        st = _pod_json(k, "crasher").get("status", {}).get("containerStatuses") or []
        return st and st[0].get("restartCount", 0) >= 2 and st[0]
    st = wait_for(restarted, timeout=90, message="two restarts")
    assert st["lastState"]["terminated"]["exitCode"] == 2
    wait_for(lambda: "CrashLoopBackOff" in k.ok("get", "pod", "crasher"), timeout=60,
             message="CrashLoopBackOff shown")
    k.ok("delete", "pod", "crasher", "--wait=false")


def _get(url: str) -> str | None:
    try:
        s = requests.Session()
        s.trust_env = False
        with s:
            r = s.get(url, timeout=3)
        return r.text if r.status_code == 200 else None
    except requests.RequestException:
        return None


def test_config_map_secret_and_downward_api_volumes(node):
    _, k = node
    k.ok("create", "configmap", "web-config", "--from-literal=greeting=hello from a config map",
         "--from-literal=other=x")
    k.ok("create", "secret", "generic", "web-secret", "--from-literal=password=s3cret")
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "volumes", "labels": {"app": "volumes", "tier": "web"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": IMAGE, "command": ["sleep", "3600"],
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/config"},
                    {"name": "secret", "mountPath": "/etc/secret"},
                    {"name": "info", "mountPath": "/etc/podinfo"},
                    {"name": "all", "mountPath": "/etc/all"},
                ],
            }],
            "volumes": [
                {"name": "config", "configMap": {"name": "web-config",
                                                  "items": [{"key": "greeting", "path": "conf/greeting.txt"}]}},
                {"name": "secret", "secret": {"secretName": "web-secret", "defaultMode": 0o400}},
                {"name": "info", "downwardAPI": {"items": [
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                {"name": "all", "projected": {"sources": [
                    {"configMap": {"name": "web-config"}},
                    {"secret": {"name": "web-secret"}}]}},
            ],
        },
    }
    k.ok("apply", "-f", "-", input=json.dumps(pod))
    try:
        wait_for(lambda: _pod_json(k, "volumes").get("status", {}).get("phase") == "Running",
                 timeout=60, message="pod with volumes Running")
        cat = lambda path: k.ok("exec", "volumes", "--", "cat", path)  # noqa: E731
        assert cat("/etc/config/conf/greeting.txt") == "hello from a config map"
        assert cat("/etc/secret/password") == "s3cret"
        assert k.ok("exec", "volumes", "--", "stat", "-L", "-c", "%a", "/etc/secret/password").strip() == "400"
        assert cat("/etc/podinfo/name") == "volumes"
        assert cat("/etc/podinfo/labels").splitlines() == ['app="volumes"', 'tier="web"']
        assert sorted(k.ok("exec", "volumes", "--", "ls", "/etc/all").split()) == ["greeting", "other", "password"]
        # Read-only, as upstream mounts them.
        p = k("exec", "volumes", "--", "sh", "-c", "echo x > /etc/config/new")
        assert p.returncode != 0
    finally:
        k("delete", "pod", "volumes", "--wait=false")
        k("delete", "configmap", "web-config")
        k("delete", "secret", "web-secret")


def test_missing_config_map_holds_the_pod_with_failed_mount(node):
    _, k = node
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nomap"},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "3600"],
                                 "volumeMounts": [{"name": "c", "mountPath": "/c"}]}],
                 "volumes": [{"name": "c", "configMap": {"name": "absent"}}]},
    }
    k.ok("apply", "-f", "-", input=json.dumps(pod))
    try:
        ev = wait_for(lambda: [e for e in json.loads(k.ok("get", "events", "-o", "json"))["items"]
                               if e["reason"] == "FailedMount"
                               and e["involvedObject"]["name"] == "nomap"],
                      timeout=60, message="FailedMount event")
        assert 'configmap "absent" not found' in ev[0]["message"], ev[0]
        def creating():
            st = _pod_json(k, "nomap").get("status", {})
            cs = st.get("containerStatuses") or [{}]
            return (st.get("phase") == "Pending"
                    and cs[0].get("state", {}).get("waiting", {}).get("reason") == "ContainerCreating")
        wait_for(creating, timeout=30, message="Pending, ContainerCreating")
        assert "ContainerCreating" in k.ok("get", "pod", "nomap")
        # Creating the config map lets the pod start.
        k.ok("create", "configmap", "absent", "--from-literal=k=v")
        wait_for(lambda: _pod_json(k, "nomap")["status"].get("phase") == "Running", timeout=90,
                 message="pod Running once the config map exists")
        assert k.ok("exec", "nomap", "--", "cat", "/c/k") == "v"
    finally:
        k("delete", "pod", "nomap", "--wait=false")
        k("delete", "configmap", "absent")


def test_kubectl_top_reads_usage_from_the_kubelet(node, client_home: Path):
    """`kubectl top` (1.33 and 1.20) through metrics.k8s.io, from the kubelet's
    /stats/summary: a container busy-looping under a 200m CPU limit shows about that."""
    cluster, k = node
    k20 = Kubectl(KUBECTL_120, "1.20", cluster.kubeconfig, client_home / "top-1.20")
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "busy", "labels": {"app": "busy"}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "spin", "image": IMAGE, "command": ["sh", "-c", "while :; do :; done"],
            "resources": {"limits": {"cpu": "200m", "memory": "64Mi"}}}]},
    }
    k.ok("apply", "-f", "-", input=json.dumps(pod))
    try:
        wait_for(lambda: _pod_json(k, "busy").get("status", {}).get("phase") == "Running",
                 timeout=60, message="busy pod Running")

        def top_pod(kc: Kubectl):
            p = kc("top", "pod", "busy")
            if p.returncode != 0:
                return None
            row = p.stdout.splitlines()[-1].split()
            return row if row[0] == "busy" and row[1].endswith("m") else None
        row = wait_for(lambda: top_pod(k), timeout=60, message="kubectl top pod")
        cpu = int(row[1][:-1])
        assert 100 <= cpu <= 260, row  # the cgroup's quota holds it near 200m
        assert row[2].endswith("Mi"), row
        assert wait_for(lambda: top_pod(k20), timeout=30, message="kubectl 1.20 top pod")
        # Label selectors and all namespaces.
        assert "busy" in k.ok("top", "pods", "-l", "app=busy", "-A")
        assert "busy" not in k.ok("top", "pods", "-l", "app=other", "-A")
        nodes = k.ok("top", "nodes")
        line = next(ln for ln in nodes.splitlines() if ln.startswith("flotilla-e2e-node"))
        name, cores, cpu_pct, mem, mem_pct = line.split()
        assert cores.endswith("m") and int(cores[:-1]) >= cpu, line
        assert cpu_pct.endswith("%") and mem.endswith("Mi") and mem_pct.endswith("%"), line
        assert "flotilla-e2e-node" in k20.ok("top", "node")
        # A pod the metrics API does not know.
        p = k("top", "pod", "nonexistent")
        assert p.returncode != 0 and "not found" in p.stderr, p.stderr
    finally:
        k("delete", "pod", "busy", "--wait=false")


def test_probes_kills_and_logs_follow(node, flotilla_bin: Path):
    """Readiness gates Ready, a failing liveness probe restarts the container, a
    process killed from the host is restarted (RESTARTS `1 (Xs ago)`), `logs -f`
    streams new lines."""
    cluster, k = node
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probed"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "web", "image": IMAGE,
            "command": ["sh", "-c",
                        "i=0; while :; do echo tick $i; i=$((i+1)); sleep 1; done & "
                        "exec httpd -f -p 80 -h /tmp"],
            # Ready once /tmp/ready exists; alive while /tmp/alive does not say no.
            "readinessProbe": {"exec": {"command": ["test", "-e", "/tmp/ready"]},
                               "periodSeconds": 1, "failureThreshold": 1},
            "livenessProbe": {"exec": {"command": ["sh", "-c", "! test -e /tmp/dead"]},
                              "periodSeconds": 1, "failureThreshold": 2},
        }]},
    }
    k.ok("apply", "-f", "-", input=json.dumps(pod))
    follow = None
    try:
        def status():
            cs = (_pod_json(k, "probed").get("status", {}).get("containerStatuses") or [{}])[0]
            return cs
        wait_for(lambda: status().get("state", {}).get("running"), timeout=60,
                 message="probed container running")
        assert status()["ready"] is False
        assert "0/1" in k.ok("get", "pod", "probed")
        k.ok("exec", "probed", "--", "touch", "/tmp/ready")
        wait_for(lambda: status().get("ready") is True, timeout=30, message="Ready after the file")
        assert "1/1" in k.ok("get", "pod", "probed")

        # logs -f: lines keep coming while the command runs.
        follow = subprocess.Popen(k.argv(("logs", "-f", "probed")), stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True, env=k.env(None))
        seen = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(seen) < 3:
            line = follow.stdout.readline()
            if not line:
                break
            if line.startswith("tick"):
                seen.append(int(line.split()[1]))
        assert len(seen) == 3 and seen == sorted(seen), seen

        # Liveness: the probe fails twice, the kubelet restarts the container.
        k.ok("exec", "probed", "--", "touch", "/tmp/dead")
        wait_for(lambda: status().get("restartCount", 0) >= 1, timeout=60,
                 message="restart after a failing liveness probe")
        events = json.loads(k.ok("get", "events", "-o", "json"))["items"]
        assert any(e["reason"] == "Unhealthy" and e["involvedObject"]["name"] == "probed"
                   and "Liveness probe failed" in e["message"] for e in events), events
        wait_for(lambda: status().get("state", {}).get("running"), timeout=60,
                 message="running again")

        # Kill the process from the host: restarted, and kubectl shows when.
        ctr = [str(flotilla_bin), "ctr", "--data-dir", str(cluster.data_dir)]
        cid = status()["containerID"].split("://", 1)[1]
        pid = json.loads(subprocess.run(ctr + ["inspect", cid], capture_output=True, text=True,
                                        check=True).stdout)["pid"]
        os.kill(pid, 9)
        wait_for(lambda: status().get("restartCount", 0) >= 2, timeout=60,
                 message="restart after a kill from the host")
        line = k.ok("get", "pod", "probed").splitlines()[1]
        assert " ago)" in line and line.split()[3] == "2", line
        last = status()["lastState"]["terminated"]
        assert last["exitCode"] == 137 and last["reason"] == "Error", last
    finally:
        if follow is not None:
            follow.kill()
            follow.wait(timeout=10)
        k("delete", "pod", "probed", "--wait=false")


def test_seccomp_profiles_confine_pods(node):
    """securityContext.seccompProfile: RuntimeDefault refuses namespace creation (no
    CAP_SYS_ADMIN) in the container and in `kubectl exec`; Unconfined (the default)
    allows it; a Localhost profile missing from the node is the container's clear error."""
    cluster, k = node
    probe = ("grep Seccomp: /proc/self/status; "
             "busybox unshare -U true && echo unshare=ok || echo unshare=denied; "
             "exec sleep 3600")

    def pod(name: str, profile: dict | None) -> dict:
        spec = {"terminationGracePeriodSeconds": 1,
                "containers": [{"name": "c", "image": IMAGE, "command": ["sh", "-c", probe]}]}
        if profile:
            spec["securityContext"] = {"seccompProfile": profile}
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}

    names = ["sc-default", "sc-unconfined", "sc-missing"]
    try:
        for name, profile in [
                ("sc-default", {"type": "RuntimeDefault"}),
                ("sc-unconfined", None),
                ("sc-missing", {"type": "Localhost", "localhostProfile": "nope/profile.json"})]:
            k.ok("apply", "-f", "-", input=json.dumps(pod(name, profile)))
        wait_for(lambda: "unshare=" in k.ok("logs", "sc-default"), timeout=60,
                 message="sc-default ran")
        out = k.ok("logs", "sc-default")
        assert "Seccomp:\t2" in out and "unshare=denied" in out, out
        p = k("exec", "sc-default", "--", "busybox", "unshare", "-U", "true")
        assert p.returncode != 0 and "Operation not permitted" in p.stderr, (p.stdout, p.stderr)

        wait_for(lambda: "unshare=" in k.ok("logs", "sc-unconfined"), timeout=60,
                 message="sc-unconfined ran")
        out = k.ok("logs", "sc-unconfined")
        assert "Seccomp:\t0" in out and "unshare=ok" in out, out

        def waiting_reason():
            st = json.loads(k.ok("get", "pod", "sc-missing", "-o", "json")).get("status", {})
            for cs in st.get("containerStatuses") or []:
                w = cs.get("state", {}).get("waiting") or {}
                if w.get("reason") == "CreateContainerError":
                    return w
            return None
        w = wait_for(waiting_reason, timeout=60, message="CreateContainerError for the profile")
        assert "nope/profile.json" in w.get("message", ""), w
    finally:
        k("delete", "pod", *names, "--wait=false")


SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def _claims(token: str) -> dict:
    import base64
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_service_account_token_and_live_config_map_volume(node):
    cluster, k = node
    k.ok("create", "configmap", "live", "--from-literal=greeting=hello")
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sa-reader"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": IMAGE, "command": ["sleep", "3600"],
                "volumeMounts": [
                    {"name": "cfg", "mountPath": "/cfg"},
                    {"name": "cfg", "mountPath": "/sub/greeting", "subPath": "greeting"},
                ],
            }],
            "volumes": [{"name": "cfg", "configMap": {"name": "live"}}],
        },
    }
    k.ok("apply", "-f", "-", input=json.dumps(pod))
    try:
        wait_for(lambda: _pod_json(k, "sa-reader").get("status", {}).get("phase") == "Running",
                 timeout=60, message="pod with the token volume Running")
        p = _pod_json(k, "sa-reader")
        assert any(v["name"].startswith("kube-api-access-") for v in p["spec"]["volumes"])
        cat = lambda path: k.ok("exec", "sa-reader", "--", "cat", path)  # noqa: E731
        token = cat(f"{SA_DIR}/token")
        c = _claims(token)
        assert c["sub"] == "system:serviceaccount:default:default"
        assert c["kubernetes.io"]["pod"] == {"name": "sa-reader", "uid": p["metadata"]["uid"]}
        assert c["aud"] == ["https://kubernetes.default.svc.cluster.local"]
        assert c["exp"] - c["iat"] == 3607
        assert cat(f"{SA_DIR}/ca.crt") == Path(cluster.ca_file).read_text()
        assert cat(f"{SA_DIR}/namespace") == "default"
        assert k.ok("exec", "sa-reader", "--", "stat", "-L", "-c", "%a",
                    f"{SA_DIR}/token").strip() == "644"
        # The pod's token is a credential of its service account, while the pod lives.
        kc = cluster.data_dir.parent / "token-only.kubeconfig"
        kc.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: c\n  cluster:\n    server: {cluster.url}\n"
            f"    certificate-authority: {cluster.ca_file}\n"
            "contexts:\n- name: c\n  context:\n    cluster: c\n    user: nobody\n"
            "current-context: c\nusers:\n- name: nobody\n  user: {}\n")
        assert "sa-reader" in k.with_kubeconfig(kc).ok("get", "pods", "--token", token)

        # Editing the ConfigMap reaches the running container (not the subPath mount).
        assert cat("/cfg/greeting") == "hello"
        k.ok("patch", "configmap", "live", "--type", "merge", "-p",
             '{"data": {"greeting": "bonjour", "added": "new"}}')
        wait_for(lambda: cat("/cfg/greeting") == "bonjour", timeout=60,
                 message="the edit inside the container")
        assert cat("/cfg/added") == "new"
        assert cat("/sub/greeting") == "hello"
        cs = _pod_json(k, "sa-reader")["status"]["containerStatuses"][0]
        assert cs["restartCount"] == 0
    finally:
        k("delete", "pod", "sa-reader", "--wait=false")
        k("delete", "configmap", "live")
