"""Issue #3 end to end: workloads with the real kubectl v1.33 against
`flotilla server` (API server, controller manager, scheduler) plus
`flotilla sim` hollow nodes.

The module starts its own `flotilla sim --nodes 3` with a unique name prefix
and a unique `e2e-pool` node label (killed by PID at the end), so other modules
sharing the session cluster are not disturbed; workloads that must stay on
these nodes select that label. A fourth, separate hollow node (`--reregister
false`, like a real kubelet) is deleted at the start of the module so that the
pod garbage collector's 40 s quarantine runs while the other tests do.
"""

from __future__ import annotations

import json
import re
import secrets
import time

import pytest

from e2e_util import parse_table, wait_for
from sim_util import (SAFE, PodWatch, Sim, apply, kjson, pod_active, pod_ready, pods,
                      running_pods, wait_running)

POOL_LABEL = "e2e-pool"


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def pool() -> str:
    return f"wl{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def sim(cluster, kubectl, flotilla_bin, pool, tmp_path_factory):
    s = Sim(flotilla_bin, cluster.kubeconfig, f"{pool}-", 3,
            tmp_path_factory.mktemp("sim") / "sim.log",
            ["--node-labels", f"{POOL_LABEL}={pool}", "--startup-delay", "200ms",
             "--delete-nodes-on-exit"])
    try:
        s.wait_ready(kubectl)
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def doomed(cluster, kubectl, flotilla_bin, pool, sim, tmp_path_factory):
    """A fourth node in the pool, from its own sim that does not re-register a
    deleted Node (upstream kubelet behaviour). A one-replica Deployment prefers
    it; once its pod runs there the Node is deleted. `test_delete_node` checks
    the outcome at the end of the module (pod GC quarantine is 40 s)."""
    s = Sim(flotilla_bin, cluster.kubeconfig, f"{pool}-doomed-", 1,
            tmp_path_factory.mktemp("sim-doomed") / "sim.log",
            ["--node-labels", f"{POOL_LABEL}={pool},e2e-doomed=yes", "--startup-delay", "200ms",
             "--reregister", "false"])
    ns = f"doomed-{pool}"
    try:
        s.wait_ready(kubectl)
        node = s.names[0]
        kubectl.ok("create", "namespace", ns)
        dep = deployment_doc("orphan", 1, pool)
        dep["spec"]["template"]["spec"]["affinity"] = {"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 100,
                "preference": {"matchExpressions": [
                    {"key": "e2e-doomed", "operator": "In", "values": ["yes"]}]}}]}}
        apply(kubectl, ns, dep)
        [pod] = wait_running(kubectl, ns, "app=orphan", 1)
        assert pod["spec"]["nodeName"] == node, (
            f"pod preferring the doomed node went to {pod['spec']['nodeName']}")
        kubectl.ok("delete", "node", node)
        yield {"ns": ns, "node": node, "pod": pod["metadata"]["name"], "deleted_at": time.monotonic(),
               "sim": s}
    finally:
        s.stop()
        kubectl("delete", "namespace", ns, "--wait=false")


def deployment_doc(name: str, replicas: int, pool: str, image: str = "nginx:1.25",
                   cpu: str = "100m") -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": {POOL_LABEL: pool},
                    "containers": [{"name": "nginx", "image": image,
                                    "ports": [{"containerPort": 80}],
                                    "resources": {"requests": {"cpu": cpu}}}],
                },
            },
        },
    }


def rollout_status(kubectl, ns: str, name: str, timeout: str = "40s") -> str:
    return kubectl.ok("rollout", "status", f"deployment/{name}", "-n", ns, f"--timeout={timeout}",
                      timeout=60)


def rs_of(kubectl, ns: str, selector: str) -> list[dict]:
    return kjson(kubectl, "get", "rs", "-n", ns, "-l", selector)["items"]


def condition(obj: dict, type_: str) -> dict | None:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), None)


def events(kubectl, ns: str) -> list[dict]:
    return kjson(kubectl, "get", "events", "-n", ns)["items"]


# --------------------------------------------------------------------------- the seed session

def test_seed_session_deployment(kubectl, ns, sim, doomed):
    """MISSION.md §9: create deployment, get/describe, delete pod, relabel, scale."""
    out = kubectl.ok("create", "deployment", "hello", "--image=nginx:1.25", "-n", ns)
    assert out.strip() == "deployment.apps/hello created"
    rollout_status(kubectl, ns, "hello")

    dep = parse_table(kubectl.ok("get", "deployment", "-n", ns))
    assert dep.headers == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    row = dep.row("hello")
    assert (row["READY"], row["UP-TO-DATE"], row["AVAILABLE"]) == ("1/1", "1", "1"), dep.raw

    rs = parse_table(kubectl.ok("get", "replicasets", "-n", ns))
    assert rs.headers == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert len(rs.rows) == 1, rs.raw
    rs_name = rs.rows[0]["NAME"]
    m = re.fullmatch(rf"hello-({SAFE}{{1,10}})", rs_name)
    assert m, f"ReplicaSet name {rs_name!r} is not hello-<hash>"
    pth = m.group(1)
    assert (rs.rows[0]["DESIRED"], rs.rows[0]["CURRENT"], rs.rows[0]["READY"]) == ("1", "1", "1")
    rs_obj = kjson(kubectl, "get", "rs", rs_name, "-n", ns)
    assert rs_obj["metadata"]["labels"]["pod-template-hash"] == pth
    assert rs_obj["spec"]["selector"]["matchLabels"] == {"app": "hello", "pod-template-hash": pth}
    assert rs_obj["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"

    po = parse_table(kubectl.ok("get", "pods", "-n", ns))
    assert po.headers == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert len(po.rows) == 1, po.raw
    pod1 = po.rows[0]["NAME"]
    assert re.fullmatch(rf"hello-{pth}-{SAFE}{{5}}", pod1), pod1
    assert (po.rows[0]["READY"], po.rows[0]["STATUS"], po.rows[0]["RESTARTS"]) == ("1/1", "Running", "0")

    wide = parse_table(kubectl.ok("get", "pods", "-n", ns, "-o", "wide"))
    assert wide.headers == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
                            "NOMINATED NODE", "READINESS GATES"]
    w = wide.row(pod1)
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", w["IP"]), w
    node = kjson(kubectl, "get", "node", w["NODE"])
    pod_cidr = node["spec"]["podCIDR"]
    import ipaddress
    assert ipaddress.ip_address(w["IP"]) in ipaddress.ip_network(pod_cidr), (w, pod_cidr)

    # describe deployment: the fields the seed shows.
    d = kubectl.ok("describe", "deployment", "hello", "-n", ns)
    expect = [
        r"^Name:\s+hello$", rf"^Namespace:\s+{ns}$", r"^CreationTimestamp:\s+\w{3}, \d\d \w{3} \d{4}",
        r"^Labels:\s+app=hello$", r"^Annotations:\s+deployment.kubernetes.io/revision: 1$",
        r"^Selector:\s+app=hello$",
        r"^Replicas:\s+1 desired \| 1 updated \| 1 total \| 1 available \| 0 unavailable$",
        r"^StrategyType:\s+RollingUpdate$", r"^MinReadySeconds:\s+0$",
        r"^RollingUpdateStrategy:\s+25% max unavailable, 25% max surge$",
        r"^Pod Template:$", r"^\s+Image:\s+nginx:1.25$",
        r"^Conditions:$", r"^\s+Available\s+True\s+MinimumReplicasAvailable$",
        r"^\s+Progressing\s+True\s+NewReplicaSetAvailable$",
        r"^OldReplicaSets:\s+<none>$", rf"^NewReplicaSet:\s+{rs_name} \(1/1 replicas created\)$",
        r"^Events:$",
        rf"ScalingReplicaSet\s+\S+\s+deployment-controller\s+Scaled up replica set {rs_name} from 0 to 1$",
    ]
    for pattern in expect:
        assert re.search(pattern, d, re.M), f"describe deployment lacks {pattern!r}:\n{d}"

    labels = kubectl.ok("get", "deployment", "hello", "-n", ns,
                        "--output", "jsonpath={.spec.template.metadata.labels}")
    assert json.loads(labels) == {"app": "hello"}
    sel = parse_table(kubectl.ok("get", "replicasets", "-l", "app=hello", "-n", ns))
    assert sel.column("NAME") == [rs_name]

    # Events: SuccessfulCreate from the ReplicaSet, ScalingReplicaSet from the Deployment.
    ev = parse_table(kubectl.ok("get", "events", "-n", ns))
    assert ev.headers == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert any(r["REASON"] == "SuccessfulCreate" and r["OBJECT"] == f"replicaset/{rs_name}"
               and r["MESSAGE"] == f"Created pod: {pod1}" for r in ev.rows), ev.raw
    assert any(r["REASON"] == "ScalingReplicaSet" and r["OBJECT"] == "deployment/hello"
               for r in ev.rows), ev.raw
    assert any(r["REASON"] == "Scheduled" and r["OBJECT"] == f"pod/{pod1}" for r in ev.rows), ev.raw

    # delete pod -> a replacement with a new suffix.
    kubectl.ok("delete", f"pod/{pod1}", "-n", ns, "--wait=false")
    [p2] = wait_running(kubectl, ns, "app=hello", 1, pred=lambda p: p["metadata"]["name"] != pod1)
    pod2 = p2["metadata"]["name"]
    assert re.fullmatch(rf"hello-{pth}-{SAFE}{{5}}", pod2) and pod2 != pod1

    # Remove the app label: the ReplicaSet releases the pod and makes a replacement.
    kubectl.ok("label", "pod", pod2, "app-", "-n", ns)
    [p3] = wait_running(kubectl, ns, "app=hello", 1)
    assert p3["metadata"]["name"] not in (pod1, pod2)

    def released():
        p = kjson(kubectl, "get", "pod", pod2, "-n", ns)
        return p if not p["metadata"].get("ownerReferences") else False

    orphan = wait_for(released, timeout=15, message=f"{pod2} released by its ReplicaSet")
    assert "app" not in orphan["metadata"]["labels"]
    assert orphan["metadata"]["labels"].get("pod-template-hash") == pth
    assert orphan["status"]["phase"] == "Running" and not orphan["metadata"].get("deletionTimestamp")

    # scale --replicas=3
    assert kubectl.ok("scale", "deployment/hello", "--replicas=3", "-n", ns).strip() == \
        "deployment.apps/hello scaled"
    wait_running(kubectl, ns, "app=hello", 3)
    rollout_status(kubectl, ns, "hello")
    row = parse_table(kubectl.ok("get", "deployment", "hello", "-n", ns)).row("hello")
    assert (row["READY"], row["UP-TO-DATE"], row["AVAILABLE"]) == ("3/3", "3", "3")
    msgs = [e["message"] for e in events(kubectl, ns) if e["reason"] == "ScalingReplicaSet"]
    assert f"Scaled up replica set {rs_name} from 1 to 3" in msgs, msgs


def test_rolling_update_bounds_history_undo(kubectl, api, ns, sim, pool):
    """set image -> rolling update within 25% surge / 75% available (from a
    watch); rollout history, undo, status."""
    apply(kubectl, ns, deployment_doc("web", 4, pool))
    rollout_status(kubectl, ns, "web")
    [rs1] = rs_of(kubectl, ns, "app=web")

    def summary(state):
        mine = [p for p in state.values() if p["metadata"].get("labels", {}).get("app") == "web"]
        active = [p for p in mine if pod_active(p)]
        avail = [p for p in active if pod_ready(p) and p["status"].get("phase") == "Running"]
        new = [p for p in avail if p["spec"]["containers"][0]["image"] == "nginx:1.26"]
        return {"active": len(active), "available": len(avail), "new_available": len(new)}

    watch = PodWatch(api, ns, summary)
    try:
        assert watch.snapshots[0][2] == {"active": 4, "available": 4, "new_available": 0}
        out = kubectl.ok("set", "image", "deployment/web", "nginx=nginx:1.26", "-n", ns)
        assert out.strip() == "deployment.apps/web image updated"
        rollout_status(kubectl, ns, "web")
        watch.wait_quiet_for(lambda st: summary(st) == {"active": 4, "available": 4, "new_available": 4}
                             and len(st) == 4)
    finally:
        snaps = watch.stop()
    # replicas 4: maxSurge 25% -> 1 (rounded up), maxUnavailable 25% -> 1 (rounded down).
    over = [s for s in snaps if s[2]["active"] > 5]
    under = [s for s in snaps if s[2]["available"] < 3]
    assert not over, f"more than 5 pods at once: {over[:3]}"
    assert not under, f"fewer than 3 available pods: {under[:3]}"
    assert max(s[2]["active"] for s in snaps) == 5, "the rollout never used its surge"
    assert len(snaps) > 10, snaps

    rss = rs_of(kubectl, ns, "app=web")
    assert len(rss) == 2
    rs2 = next(r for r in rss if r["metadata"]["name"] != rs1["metadata"]["name"])
    assert rs2["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    old = next(r for r in rss if r["metadata"]["name"] == rs1["metadata"]["name"])
    assert old["spec"]["replicas"] == 0

    hist = kubectl.ok("rollout", "history", "deployment/web", "-n", ns)
    assert re.search(r"^REVISION\s+CHANGE-CAUSE$", hist, re.M), hist
    assert re.findall(r"^(\d+)\s+<none>$", hist, re.M) == ["1", "2"], hist
    rev1 = kubectl.ok("rollout", "history", "deployment/web", "-n", ns, "--revision=1")
    assert re.search(r"Image:\s+nginx:1.25$", rev1, re.M), rev1

    d = kubectl.ok("describe", "deployment", "web", "-n", ns)
    assert re.search(rf"^NewReplicaSet:\s+{rs2['metadata']['name']} \(4/4 replicas created\)$", d, re.M), d
    # kubectl >= 1.27 lists every old ReplicaSet the Deployment controls, scaled
    # to zero or not (kubernetes/kubernetes#113083); v1.33 is used here.
    assert re.search(rf"^OldReplicaSets:\s+{rs1['metadata']['name']} \(0/0 replicas created\)$", d, re.M), d

    out = kubectl.ok("rollout", "undo", "deployment/web", "-n", ns)
    assert out.strip() == "deployment.apps/web rolled back"
    st = rollout_status(kubectl, ns, "web")
    assert 'deployment "web" successfully rolled out' in st, st
    running = wait_running(kubectl, ns, "app=web", 4)
    assert {p["spec"]["containers"][0]["image"] for p in running} == {"nginx:1.25"}
    assert {p["metadata"]["labels"]["pod-template-hash"] for p in running} == \
        {rs1["metadata"]["labels"]["pod-template-hash"]}
    dep = kjson(kubectl, "get", "deployment", "web", "-n", ns)
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    hist = kubectl.ok("rollout", "history", "deployment/web", "-n", ns)
    assert re.findall(r"^(\d+)\s+<none>$", hist, re.M) == ["2", "3"], hist
    assert len(rs_of(kubectl, ns, "app=web")) == 2  # the old RS was reused, not copied
    assert condition(dep, "Progressing")["reason"] == "NewReplicaSetAvailable"
    assert condition(dep, "Available")["status"] == "True"
    msgs = [e["message"] for e in events(kubectl, ns) if e["reason"] == "ScalingReplicaSet"]
    assert any(m.startswith(f"Scaled down replica set {rs1['metadata']['name']} from 4 to 3")
               for m in msgs), msgs


def test_rollout_restart_pause_resume(kubectl, ns, sim, pool):
    apply(kubectl, ns, deployment_doc("rr", 2, pool))
    rollout_status(kubectl, ns, "rr")
    before = {p["metadata"]["name"] for p in pods(kubectl, ns, "app=rr")}

    assert kubectl.ok("rollout", "restart", "deployment/rr", "-n", ns).strip() == \
        "deployment.apps/rr restarted"
    rollout_status(kubectl, ns, "rr")
    after = wait_running(kubectl, ns, "app=rr", 2)
    assert not before & {p["metadata"]["name"] for p in after}
    for p in after:
        assert "kubectl.kubernetes.io/restartedAt" in p["metadata"]["annotations"]
    assert len(rs_of(kubectl, ns, "app=rr")) == 2

    assert kubectl.ok("rollout", "pause", "deployment/rr", "-n", ns).strip() == \
        "deployment.apps/rr paused"
    kubectl.ok("set", "image", "deployment/rr", "nginx=nginx:1.27", "-n", ns)

    def paused_cond():
        d = kjson(kubectl, "get", "deployment", "rr", "-n", ns)
        c = condition(d, "Progressing")
        return d if c and c["status"] == "Unknown" and c["reason"] == "DeploymentPaused" else False

    d = wait_for(paused_cond, timeout=15, message="Progressing=Unknown/DeploymentPaused")
    assert d["spec"]["paused"] is True
    assert len(rs_of(kubectl, ns, "app=rr")) == 2, "a paused deployment created a ReplicaSet"
    assert {p["spec"]["containers"][0]["image"] for p in running_pods(kubectl, ns, "app=rr")} == \
        {"nginx:1.25"}

    assert kubectl.ok("rollout", "resume", "deployment/rr", "-n", ns).strip() == \
        "deployment.apps/rr resumed"
    rollout_status(kubectl, ns, "rr")
    final = wait_running(kubectl, ns, "app=rr", 2)
    assert {p["spec"]["containers"][0]["image"] for p in final} == {"nginx:1.27"}
    assert len(rs_of(kubectl, ns, "app=rr")) == 3
    d = kjson(kubectl, "get", "deployment", "rr", "-n", ns)
    assert condition(d, "Progressing")["reason"] == "NewReplicaSetAvailable"
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"


# --------------------------------------------------------------------------- services, SAs

def test_service_endpoints_and_slices(kubectl, ns, sim, pool):
    apply(kubectl, ns, deployment_doc("svc", 2, pool))
    rollout_status(kubectl, ns, "svc")
    out = kubectl.ok("expose", "deployment", "svc", "--port=80", "--target-port=80", "-n", ns)
    assert out.strip() == "service/svc exposed"

    def endpoint_ips():
        want = sorted(p["status"]["podIP"] for p in running_pods(kubectl, ns, "app=svc"))
        p = kubectl("get", "endpoints", "svc", "-n", ns)
        if p.returncode != 0:
            return False
        t = parse_table(p.stdout)
        got = sorted(x.split(":")[0] for x in t.row("svc")["ENDPOINTS"].split(","))
        return (t, want) if got == want and len(want) == 2 else False

    t, ips = wait_for(endpoint_ips, timeout=20, message="Endpoints with the pods' IPs")
    assert t.headers == ["NAME", "ENDPOINTS", "AGE"]
    assert all(x.endswith(":80") for x in t.row("svc")["ENDPOINTS"].split(","))

    def slice_ok():
        p = kubectl("get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=svc")
        if p.returncode != 0 or "No resources" in p.stderr:
            return False
        t = parse_table(p.stdout)
        if len(t.rows) != 1:
            return False
        got = sorted(t.rows[0]["ENDPOINTS"].split(","))
        return t if got == ips else False

    t = wait_for(slice_ok, timeout=20, message="an EndpointSlice with the pods' IPs")
    assert t.headers == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    row = t.rows[0]
    assert re.fullmatch(rf"svc-{SAFE}{{5}}", row["NAME"]), row
    assert (row["ADDRESSTYPE"], row["PORTS"]) == ("IPv4", "80"), row
    es = kjson(kubectl, "get", "endpointslice", row["NAME"], "-n", ns)
    assert es["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == \
        "endpointslice-controller.k8s.io"
    for e in es["endpoints"]:
        assert e["conditions"]["ready"] is True
        assert e["targetRef"]["kind"] == "Pod" and e["nodeName"].startswith(f"{pool}-")

    # Scale to 3: the new pod's IP appears in both.
    kubectl.ok("scale", "deployment/svc", "--replicas=3", "-n", ns)
    wait_running(kubectl, ns, "app=svc", 3)
    wait_for(lambda: len(kjson(kubectl, "get", "endpoints", "svc", "-n", ns)
                         .get("subsets", [{}])[0].get("addresses", [])) == 3,
             timeout=20, message="3 addresses in Endpoints")


def test_default_serviceaccount(kubectl, ns):
    def sa():
        p = kubectl("get", "serviceaccount", "default", "-n", ns)
        return p.stdout if p.returncode == 0 else False

    out = wait_for(sa, timeout=15, message="the default ServiceAccount")
    t = parse_table(out)
    assert t.headers == ["NAME", "SECRETS", "AGE"]
    assert t.row("default")["SECRETS"] == "0"


# --------------------------------------------------------------------------- Job, StatefulSet, DaemonSet

def test_job_runs_to_completion(kubectl, ns, sim, pool):
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi"},
        "spec": {
            "completions": 3, "parallelism": 2, "backoffLimit": 2,
            "template": {
                # The hollow node ends the containers after this run time.
                "metadata": {"annotations": {"sim.flotilla.io/run-for": "1s"}},
                "spec": {"restartPolicy": "Never", "nodeSelector": {POOL_LABEL: pool},
                         "containers": [{"name": "pi", "image": "perl:5.34"}]},
            },
        },
    }
    failing = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "boom"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {"sim.flotilla.io/run-for": "500ms",
                                             "sim.flotilla.io/exit-code": "3"}},
                "spec": {"restartPolicy": "Never", "nodeSelector": {POOL_LABEL: pool},
                         "containers": [{"name": "boom", "image": "busybox"}]},
            },
        },
    }
    apply(kubectl, ns, job, failing)
    kubectl.ok("wait", "--for=condition=complete", "job/pi", "-n", ns, "--timeout=40s", timeout=60)
    kubectl.ok("wait", "--for=condition=failed", "job/boom", "-n", ns, "--timeout=30s", timeout=60)

    t = parse_table(kubectl.ok("get", "jobs", "-n", ns))
    assert t.headers == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert (t.row("pi")["STATUS"], t.row("pi")["COMPLETIONS"]) == ("Complete", "3/3"), t.raw
    assert (t.row("boom")["STATUS"], t.row("boom")["COMPLETIONS"]) == ("Failed", "0/1"), t.raw

    j = kjson(kubectl, "get", "job", "pi", "-n", ns)
    assert j["status"]["succeeded"] == 3 and not j["status"].get("failed")
    assert j["status"].get("completionTime")
    b = kjson(kubectl, "get", "job", "boom", "-n", ns)
    assert condition(b, "Failed")["reason"] == "BackoffLimitExceeded"

    po = parse_table(kubectl.ok("get", "pods", "-n", ns, "-l", "job-name=pi"))
    assert len(po.rows) == 3, po.raw
    for r in po.rows:
        assert re.fullmatch(rf"pi-{SAFE}{{5}}", r["NAME"]), r
        assert (r["READY"], r["STATUS"]) == ("0/1", "Completed"), r
    po = parse_table(kubectl.ok("get", "pods", "-n", ns, "-l", "job-name=boom"))
    assert [(r["READY"], r["STATUS"]) for r in po.rows] == [("0/1", "Error")], po.raw
    reasons = {e["reason"] for e in events(kubectl, ns)}
    assert {"SuccessfulCreate", "Completed", "BackoffLimitExceeded"} <= reasons, reasons


def test_statefulset_ordered_names(kubectl, api, ns, sim, pool):
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 80}]}}
    sts = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
        "spec": {
            "serviceName": "web", "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"nodeSelector": {POOL_LABEL: pool},
                                  "containers": [{"name": "nginx", "image": "nginx:1.25"}]}},
        },
    }

    def summary(state):
        w0 = state.get("web-0")
        return {"names": sorted(state), "web0_ready": bool(w0 and pod_ready(w0) and pod_active(w0))}

    watch = PodWatch(api, ns, summary)
    try:
        apply(kubectl, ns, svc, sts)
        watch.wait_quiet_for(lambda st: sorted(st) == ["web-0", "web-1"]
                             and all(pod_ready(p) for p in st.values()), timeout=30)
    finally:
        snaps = watch.stop()
    early = [s for s in snaps if "web-1" in s[2]["names"] and not s[2]["web0_ready"]]
    assert not early, f"web-1 existed while web-0 was not Ready: {early[:3]}"
    assert any(s[0] == "ADDED" and s[1] == "web-1" for s in snaps)

    t = parse_table(kubectl.ok("get", "statefulset", "-n", ns))
    assert t.headers == ["NAME", "READY", "AGE"]
    assert t.row("web")["READY"] == "2/2"
    for i in range(2):
        p = kjson(kubectl, "get", "pod", f"web-{i}", "-n", ns)
        assert p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == f"web-{i}"
        assert p["spec"]["hostname"] == f"web-{i}" and p["spec"]["subdomain"] == "web"
    kubectl.ok("delete", "pod", "web-1", "-n", ns, "--wait=false")
    wait_running(kubectl, ns, "app=web", 2)
    assert sorted(p["metadata"]["name"] for p in pods(kubectl, ns, "app=web")) == ["web-0", "web-1"]


def test_daemonset_on_every_node(kubectl, ns, sim, pool):
    ds = {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                         "spec": {"nodeSelector": {POOL_LABEL: pool},
                                  "containers": [{"name": "agent", "image": "busybox"}]}},
        },
    }
    apply(kubectl, ns, ds)
    running = wait_running(kubectl, ns, "app=agent", 3)
    assert sorted(p["spec"]["nodeName"] for p in running) == sorted(sim.names)
    for p in running:
        assert re.fullmatch(rf"agent-{SAFE}{{5}}", p["metadata"]["name"])
    t = parse_table(kubectl.ok("get", "daemonset", "-n", ns))
    assert t.headers == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE",
                         "NODE SELECTOR", "AGE"]
    r = t.row("agent")
    assert [r[c] for c in ("DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE")] == ["3"] * 5, t.raw
    assert r["NODE SELECTOR"] == f"{POOL_LABEL}={pool}"


# --------------------------------------------------------------------------- nodes

def test_cordon_and_noschedule_taint(kubectl, ns, sim, pool):
    cordoned, tainted = sim.names[0], sim.names[1]
    try:
        assert kubectl.ok("cordon", cordoned).strip() == f"node/{cordoned} cordoned"
        t = parse_table(kubectl.ok("get", "nodes", cordoned))
        assert t.row(cordoned)["STATUS"] == "Ready,SchedulingDisabled"
        n = kjson(kubectl, "get", "node", cordoned)
        assert n["spec"]["unschedulable"] is True
        assert {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"} in [
            {k: v for k, v in x.items() if k in ("key", "effect")} for x in n["spec"].get("taints", [])]
        assert kubectl.ok("taint", "nodes", tainted, "e2e=keep-out:NoSchedule").strip() == \
            f"node/{tainted} tainted"

        apply(kubectl, ns, deployment_doc("avoid", 6, pool, cpu="10m"))
        running = wait_running(kubectl, ns, "app=avoid", 6)
        nodes = {p["spec"]["nodeName"] for p in running}
        assert nodes == {sim.names[2]}, f"pods went to {nodes}; {cordoned} cordoned, {tainted} tainted"
    finally:
        kubectl("uncordon", cordoned)
        kubectl("taint", "nodes", tainted, "e2e=keep-out:NoSchedule-")
    t = parse_table(kubectl.ok("get", "nodes", cordoned))
    assert t.row(cordoned)["STATUS"] == "Ready"
    # After uncordon and untaint, new pods may go anywhere again.
    kubectl.ok("scale", "deployment/avoid", "--replicas=12", "-n", ns)
    running = wait_running(kubectl, ns, "app=avoid", 12)
    assert {p["spec"]["nodeName"] for p in running} == set(sim.names)


def test_noexecute_taint_evicts(kubectl, ns, sim, pool):
    victim = sim.names[2]
    dep = deployment_doc("evict", 6, pool, cpu="10m")
    tolerant = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "tolerant", "labels": {"app": "tolerant"}},
        "spec": {"nodeSelector": {"kubernetes.io/hostname": victim},
                 "tolerations": [{"key": "e2e", "operator": "Exists", "effect": "NoExecute"}],
                 "containers": [{"name": "c", "image": "busybox"}]},
    }
    apply(kubectl, ns, dep, tolerant)
    running = wait_running(kubectl, ns, "app=evict", 6)
    wait_running(kubectl, ns, "app=tolerant", 1)
    on_victim = {p["metadata"]["name"] for p in running if p["spec"]["nodeName"] == victim}
    assert on_victim, (f"no pod landed on {victim}; cannot test eviction: "
                       f"{ {p['metadata']['name']: p['spec']['nodeName'] for p in running} }")
    try:
        kubectl.ok("taint", "nodes", victim, "e2e=evict:NoExecute")
        again = wait_running(kubectl, ns, "app=evict", 6, timeout=30,
                             pred=lambda p: p["spec"]["nodeName"] != victim)
        assert not on_victim & {p["metadata"]["name"] for p in again}
        [tol] = running_pods(kubectl, ns, "app=tolerant")
        assert tol["spec"]["nodeName"] == victim
        evs = [e for e in events(kubectl, ns) if e["reason"] == "TaintManagerEviction"]
        assert {e["involvedObject"]["name"] for e in evs} >= on_victim, evs
    finally:
        kubectl("taint", "nodes", victim, "e2e=evict:NoExecute-")


def test_delete_node(kubectl, sim, doomed, pool):
    """Runs last: the doomed node was deleted at module start. Its pod is
    removed by the pod GC (after upstream's 40 s quarantine) and the
    Deployment recreates it on a remaining node; the node, whose sim does not
    re-register (as a running upstream kubelet), stays gone."""
    ns, node, old = doomed["ns"], doomed["node"], doomed["pod"]
    assert kubectl("get", "node", node).returncode != 0
    deadline = doomed["deleted_at"] + 75

    def replaced():
        assert kubectl("get", "node", node).returncode != 0, f"{node} came back"
        ps = pods(kubectl, ns, "app=orphan")
        if any(p["metadata"]["name"] == old for p in ps):
            return False
        good = [p for p in ps if pod_active(p) and pod_ready(p)]
        return good if len(good) == 1 and len(ps) == 1 else False

    [new] = wait_for(replaced, timeout=max(1.0, deadline - time.monotonic()), interval=1.0,
                     message=f"{old} removed by pod GC and recreated elsewhere")
    assert new["spec"]["nodeName"] in sim.names
    assert doomed["sim"].proc.poll() is None, "the doomed node's sim exited"
