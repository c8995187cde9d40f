"""Scheduling, node failure and leader election end to end (issue #3).

Each scenario runs its own `flotilla server` (started with conftest's helper
through a small wrapper script that appends component flags) plus hollow nodes
from `flotilla sim`, and where needed a second scheduler or two controller
managers as separate processes. Nothing here touches the session `cluster`,
so the nodes and taints of these tests never leak into other modules.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import KUBECTL_133, Cluster, Kubectl, _start_cluster, _stop
from e2e_util import wait_for

SIM_NODES = 3
SIM_CPU = "2"


# --------------------------------------------------------------------------- processes

def _wrapper(binary: Path, base: Path, extra: list[str]) -> Path:
    """An executable that runs `binary` with its arguments plus `extra`, so
    conftest's `_start_cluster` starts a server with component flags."""
    path = base / "flotilla-with-flags"
    path.write_text("#!/bin/sh\nexec " + shlex.quote(str(binary)) + ' "$@" '
                    + " ".join(shlex.quote(a) for a in extra) + "\n")
    path.chmod(0o755)
    return path


@dataclass
class Component:
    """A `flotilla <subcommand>` process in its own session, logging to a file."""

    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen = field(repr=False)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError as e:
            return f"<cannot read {self.log_path}: {e}>"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def kill9(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@dataclass
class Env:
    """One scenario's server, its kubectl and its extra processes."""

    cluster: Cluster
    binary: Path
    base: Path
    k: Kubectl
    components: list[Component] = field(default_factory=list)

    def start(self, name: str, *args: str) -> Component:
        log_path = self.base / f"{name}.log"
        argv = [str(self.binary), *args, "--kubeconfig", str(self.cluster.kubeconfig)]
        env = dict(os.environ, NO_COLOR="1", RUST_BACKTRACE="1")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        c = Component(name, argv, log_path, proc)
        self.components.append(c)
        return c

    def stop_all(self) -> None:
        for c in self.components:
            _stop(c.proc)
        _stop(self.cluster.proc)

    def diagnostics(self) -> str:
        parts = [f"--- server log tail ---\n{self.cluster.log_tail(40)}"]
        for c in self.components:
            tail = "\n".join(c.log().splitlines()[-30:])
            parts.append(f"--- {c.name} ({'running' if c.alive() else c.proc.returncode}) ---\n{tail}")
        return "\n".join(parts)

    # kubectl shortcuts
    def json(self, *args: Any) -> dict:
        return json.loads(self.k.ok(*args, "-o", "json"))

    def apply(self, *docs: dict, ns: str | None = None) -> None:
        text = "\n---\n".join(json.dumps(d) for d in docs)
        extra = ["-n", ns] if ns else []
        self.k.ok("apply", *extra, "-f", "-", input=text)

    def pods(self, ns: str) -> list[dict]:
        return self.json("get", "pods", "-n", ns)["items"]

    def nodes(self) -> list[dict]:
        return self.json("get", "nodes")["items"]

    def namespace(self, name: str) -> str:
        self.k.ok("create", "namespace", name)
        return name


def _make_env(flotilla_bin: Path, base: Path, server_flags: list[str], sim_flags: list[str]) -> Env:
    cluster = _start_cluster(_wrapper(flotilla_bin, base, server_flags), base)
    k = Kubectl(KUBECTL_133, "1.33", cluster.kubeconfig, base / "kubectl-home")
    env = Env(cluster, flotilla_bin, base, k)
    try:
        env.start("sim", "sim", "--nodes", str(SIM_NODES), "--cpu", SIM_CPU, "--memory", "8Gi",
                  "--startup-delay", "100ms", "--termination-delay", "500ms", *sim_flags)
        wait_for(lambda: len([n for n in env.nodes() if _ready(n) == "True"]) == SIM_NODES,
                 timeout=60, message=f"{SIM_NODES} Ready sim nodes")
    except BaseException:
        env.stop_all()
        raise
    return env


def _with_logs(test):
    """Failures carry the tails of the scenario's process logs."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        env = next(v for k, v in kwargs.items() if k.startswith("env_"))
        try:
            return test(*args, **kwargs)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{env.diagnostics()}") from None

    return run


# --------------------------------------------------------------------------- object helpers

def _ready(node: dict) -> str | None:
    for c in node.get("status", {}).get("conditions", []):
        if c["type"] == "Ready":
            return c["status"]
    return None


def _condition(pod: dict, type_: str) -> dict | None:
    for c in pod.get("status", {}).get("conditions", []) or []:
        if c["type"] == type_:
            return c
    return None


def _pod(name: str, cpu: str | None = None, scheduler: str | None = None,
         priority_class: str | None = None, labels: dict | None = None) -> dict:
    container: dict[str, Any] = {"name": "c", "image": "registry.k8s.io/pause:3.10"}
    if cpu:
        container["resources"] = {"requests": {"cpu": cpu}}
    spec: dict[str, Any] = {"containers": [container], "terminationGracePeriodSeconds": 1}
    if scheduler:
        spec["schedulerName"] = scheduler
    if priority_class:
        spec["priorityClassName"] = priority_class
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": name}}, "spec": spec}


def _events(env: Env, ns: str, reason: str, pod: str | None = None) -> list[dict]:
    items = env.json("get", "events", "-n", ns)["items"]
    return [e for e in items if e.get("reason") == reason
            and (pod is None or e["involvedObject"].get("name") == pod)]


def _deployment(name: str, replicas: int) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                                         "resources": {"requests": {"cpu": "100m"}}}]},
            },
        },
    }


def _live_running(env: Env, ns: str, app: str) -> list[dict]:
    return [p for p in env.pods(ns)
            if p["metadata"].get("labels", {}).get("app") == app
            and not p["metadata"].get("deletionTimestamp")
            and p.get("status", {}).get("phase") == "Running"]


# --------------------------------------------------------------------------- scenario A: scheduling

@pytest.fixture(scope="module")
def env_sched(flotilla_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    env = _make_env(flotilla_bin, tmp_path_factory.mktemp("sched"), [], [])
    yield env
    env.stop_all()


@_with_logs
def test_second_scheduler_binds_only_the_pods_naming_it(env_sched: Env):
    env = env_sched
    ns = env.namespace("second-scheduler")
    env.apply(_pod("mine-1", scheduler="my-scheduler"), _pod("mine-2", scheduler="my-scheduler"),
              _pod("default-1"), ns=ns)
    wait_for(lambda: {p["metadata"]["name"]: p["spec"].get("nodeName") for p in env.pods(ns)}
             .get("default-1"), timeout=30, message="default-1 bound by the default scheduler")
    # The default scheduler has had its chance; it must leave the others alone:
    # no binding, no PodScheduled condition, no event of its own.
    time.sleep(3)
    for p in env.pods(ns):
        if p["metadata"]["name"].startswith("mine-"):
            assert not p["spec"].get("nodeName"), p
            assert p["status"].get("phase") == "Pending", p["status"]
            assert _condition(p, "PodScheduled") is None, p["status"]
    for e in env.json("get", "events", "-n", ns)["items"]:
        if e["involvedObject"]["name"].startswith("mine-"):
            pytest.fail(f"an event about a my-scheduler pod before it ran: {e}")
    # The default pod got upstream's default NoExecute tolerations (300 s).
    default_pod = env.json("get", "pod", "default-1", "-n", ns)
    tolerations = {(t["key"], t.get("effect")): t.get("tolerationSeconds")
                   for t in default_pod["spec"].get("tolerations", [])}
    assert tolerations.get(("node.kubernetes.io/not-ready", "NoExecute")) == 300, tolerations
    assert tolerations.get(("node.kubernetes.io/unreachable", "NoExecute")) == 300, tolerations

    second = env.start("my-scheduler", "scheduler", "--scheduler-name", "my-scheduler")
    wait_for(lambda: all(p["spec"].get("nodeName") for p in env.pods(ns)), timeout=40,
             message="my-scheduler binds its pods")
    assert second.alive(), second.log()
    for name in ("mine-1", "mine-2"):
        scheduled = wait_for(lambda: _events(env, ns, "Scheduled", name), timeout=20,
                             message=f"Scheduled event of {name}")
        sources = {(e.get("source") or {}).get("component") or e.get("reportingComponent")
                   for e in scheduled}
        assert sources == {"my-scheduler"}, scheduled
        node = env.json("get", "pod", name, "-n", ns)["spec"]["nodeName"]
        assert re.search(rf"Successfully assigned {ns}/{name} to {node}", scheduled[0]["message"])
    default_events = _events(env, ns, "Scheduled", "default-1")
    assert {(e.get("source") or {}).get("component") for e in default_events} == {"default-scheduler"}
    # A pod created now is bound by the second scheduler while it runs.
    env.apply(_pod("mine-3", scheduler="my-scheduler"), ns=ns)
    wait_for(lambda: env.json("get", "pod", "mine-3", "-n", ns)["spec"].get("nodeName"), timeout=30,
             message="mine-3 bound")
    _stop(second.proc)


@_with_logs
def test_failed_scheduling_names_every_reason(env_sched: Env):
    env = env_sched
    ns = env.namespace("failed-scheduling")
    node = sorted(n["metadata"]["name"] for n in env.nodes())[0]
    env.k.ok("taint", "nodes", node, "dedicated=special:NoSchedule")
    try:
        env.apply(_pod("too-big", cpu="3"), ns=ns)

        def failed():
            p = env.json("get", "pod", "too-big", "-n", ns)
            c = _condition(p, "PodScheduled")
            ev = _events(env, ns, "FailedScheduling", "too-big")
            return (p, c, ev) if c and ev else None

        pod, cond, events = wait_for(failed, timeout=30, message="FailedScheduling for too-big")
        expected = (f"0/{SIM_NODES} nodes are available: 1 node(s) had untolerated taint "
                    f"{{dedicated: special}}, {SIM_NODES - 1} Insufficient cpu.")
        assert cond["status"] == "False" and cond["reason"] == "Unschedulable", cond
        assert cond["message"].startswith(expected), cond
        msg = events[0]["message"]
        assert msg.startswith(expected), msg
        # Preemption was tried and could not help (nothing to evict).
        assert "preemption: " in msg, msg
        assert events[0]["type"] == "Warning"
        assert (events[0].get("source") or {}).get("component") == "default-scheduler", events[0]
        assert not pod["spec"].get("nodeName")
        # kubectl describe shows it the way operators know it.
        described = env.k.ok("describe", "pod", "too-big", "-n", ns)
        assert "FailedScheduling" in described and "Insufficient cpu" in described, described
    finally:
        env.k.ok("taint", "nodes", node, "dedicated-")
        env.k("delete", "namespace", ns, "--wait=false")


@_with_logs
def test_preemption_with_priority_classes(env_sched: Env):
    env = env_sched
    ns = env.namespace("preemption")
    env.apply(
        {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
         "metadata": {"name": "e2e-low"}, "value": 100},
        {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
         "metadata": {"name": "e2e-high"}, "value": 100000},
    )
    try:
        # Each node has 2 CPUs: one low pod of 1500m fills each.
        lows = [_pod(f"low-{i}", cpu="1500m", priority_class="e2e-low", labels={"tier": "low"})
                for i in range(SIM_NODES)]
        env.apply(*lows, ns=ns)
        wait_for(lambda: len([p for p in env.pods(ns) if p["spec"].get("nodeName")]) == SIM_NODES,
                 timeout=40, message="low pods placed")
        placed = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in env.pods(ns)}
        assert len(set(placed.values())) == SIM_NODES, placed
        for p in env.pods(ns):
            assert p["spec"].get("priority") == 100, p["spec"]

        env.apply(_pod("high", cpu="1500m", priority_class="e2e-high"), ns=ns)
        high = wait_for(lambda: env.json("get", "pod", "high", "-n", ns)["spec"].get("nodeName")
                        and env.json("get", "pod", "high", "-n", ns), timeout=60,
                        message="high-priority pod bound after preemption")
        assert high["spec"]["priority"] == 100000
        node = high["spec"]["nodeName"]
        victims = [n for n, where in placed.items() if where == node]
        assert len(victims) == 1, (placed, node)
        # Exactly one low pod was preempted (the one on the high pod's node).
        remaining = {p["metadata"]["name"] for p in env.pods(ns)
                     if p["metadata"]["name"].startswith("low-")
                     and not p["metadata"].get("deletionTimestamp")}
        assert remaining == set(placed) - set(victims), remaining
        preempted = wait_for(lambda: _events(env, ns, "Preempted", victims[0]), timeout=20,
                             message="Preempted event")
        assert node in preempted[0]["message"], preempted
        # The high pod saw a FailedScheduling first, naming preemption.
        failures = _events(env, ns, "FailedScheduling", "high")
        assert failures and "Insufficient cpu" in failures[0]["message"], failures
    finally:
        env.k("delete", "namespace", ns, "--wait=false")
        env.k("delete", "priorityclass", "e2e-low", "e2e-high")


# --------------------------------------------------------------------------- scenario B: node failure

@pytest.fixture(scope="module")
def env_failure(flotilla_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    env = _make_env(
        flotilla_bin, tmp_path_factory.mktemp("node-failure"),
        ["--node-monitor-period=1s", "--node-monitor-grace-period=6s",
         "--default-unreachable-toleration-seconds=3", "--default-not-ready-toleration-seconds=3"],
        ["--heartbeat-interval=1s", "--lease-duration=5s"])
    yield env
    env.stop_all()


@_with_logs
def test_node_failure_evicts_and_recreates_pods(env_failure: Env):
    env = env_failure
    sim = next(c for c in env.components if c.name == "sim")
    ns = env.namespace("node-failure")
    replicas = 6
    env.apply(_deployment("web", replicas), ns=ns)
    wait_for(lambda: len(_live_running(env, ns, "web")) == replicas, timeout=60,
             message=f"{replicas} running pods")
    for p in env.pods(ns):
        tol = {(t["key"], t.get("effect")): t.get("tolerationSeconds")
               for t in p["spec"].get("tolerations", [])}
        assert tol.get(("node.kubernetes.io/unreachable", "NoExecute")) == 3, tol

    sim.signal(signal.SIGUSR1)  # the lowest healthy node stops its heartbeats
    t0 = time.monotonic()
    failed = wait_for(lambda: [n for n in env.nodes() if _ready(n) == "Unknown"], timeout=30,
                      message="a node becomes NotReady (Ready=Unknown)")
    elapsed = time.monotonic() - t0
    assert len(failed) == 1, [n["metadata"]["name"] for n in failed]
    dead = failed[0]["metadata"]["name"]
    # Not before the grace period (6 s, less the last heartbeat's age ≤ 1 s).
    assert elapsed >= 4, elapsed
    ready_cond = next(c for c in failed[0]["status"]["conditions"] if c["type"] == "Ready")
    assert ready_cond["reason"] == "NodeStatusUnknown", ready_cond

    def taints():
        node = env.json("get", "node", dead)
        return {(t["key"], t["effect"]) for t in node["spec"].get("taints", [])}

    wait_for(lambda: {("node.kubernetes.io/unreachable", "NoSchedule"),
                      ("node.kubernetes.io/unreachable", "NoExecute")} <= taints(), timeout=20,
             message="unreachable taints on the failed node")

    on_dead = [p["metadata"]["name"] for p in env.pods(ns) if p["spec"].get("nodeName") == dead]
    # Every pod on the dead node is evicted after its 3 s toleration ...
    if on_dead:
        wait_for(lambda: all(p["metadata"].get("deletionTimestamp") for p in env.pods(ns)
                             if p["metadata"]["name"] in on_dead),
                 timeout=30, message=f"pods on {dead} evicted: {on_dead}")
    # ... and the Deployment is whole again on the healthy nodes.
    def recovered():
        live = _live_running(env, ns, "web")
        return live if len(live) == replicas and all(p["spec"]["nodeName"] != dead for p in live) else None

    live = wait_for(recovered, timeout=60, message=f"{replicas} running pods off {dead}")
    assert len({p["metadata"]["name"] for p in live}) == replicas
    dep = env.json("get", "deployment", "web", "-n", ns)
    wait_for(lambda: env.json("get", "deployment", "web", "-n", ns)["status"].get("availableReplicas")
             == replicas, timeout=30, message="deployment available again")
    assert dep["spec"]["replicas"] == replicas
    # The other nodes stay Ready; no new pod goes to the tainted node.
    assert {n["metadata"]["name"]: _ready(n) for n in env.nodes() if n["metadata"]["name"] != dead} \
        == {n["metadata"]["name"]: "True" for n in env.nodes() if n["metadata"]["name"] != dead}


# --------------------------------------------------------------------------- scenario C: leader election

@pytest.fixture(scope="module")
def env_leader(flotilla_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    env = _make_env(flotilla_bin, tmp_path_factory.mktemp("leader"), ["--disable-controller-manager"],
                    ["--heartbeat-interval=2s"])
    yield env
    env.stop_all()


def _lease_holder(env: Env) -> str | None:
    p = env.k("get", "lease", "kube-controller-manager", "-n", "kube-system", "-o", "json")
    if p.returncode != 0:
        return None
    return json.loads(p.stdout)["spec"].get("holderIdentity") or None


def _identity_of(c: Component) -> str | None:
    for line in c.log().splitlines():
        if "became leader" in line:
            m = re.search(r"identity=(\S+)", line)
            if m:
                return m.group(1).strip('"')
    return None


@_with_logs
def test_controller_manager_leader_election(env_leader: Env):
    env = env_leader
    ns = env.namespace("leader-election")
    cms = [env.start(f"controller-manager-{i}", "controller-manager") for i in range(2)]
    holder = wait_for(lambda: _lease_holder(env), timeout=30, message="a kube-controller-manager lease")
    leader = wait_for(lambda: next((c for c in cms if _identity_of(c) == holder), None), timeout=10,
                      message=f"the process holding {holder}")
    follower = next(c for c in cms if c is not leader)
    assert _identity_of(follower) is None, follower.log()
    # A follower that lost the race to create the Lease (409 AlreadyExists) learns
    # the holder on its next attempt, one retry period (2 s) later, as upstream's
    # client-go does; so its log may still be empty when the leader's shows up.
    wait_for(lambda: "waiting for leadership" in follower.log(), timeout=10,
             message="the follower logs 'waiting for leadership'")
    assert _identity_of(follower) is None, follower.log()

    env.apply(_deployment("web", 3), ns=ns)
    wait_for(lambda: len(_live_running(env, ns, "web")) == 3, timeout=60, message="3 pods under the first leader")

    leader.kill9()
    t0 = time.monotonic()
    new_holder = wait_for(lambda: (h := _lease_holder(env)) != holder and h, timeout=30,
                          message="the follower takes the lease")
    took = time.monotonic() - t0
    lease = env.json("get", "lease", "kube-controller-manager", "-n", "kube-system")
    duration = lease["spec"]["leaseDurationSeconds"]
    # Within the lease duration plus one retry period (2 s) and polling slack.
    assert took <= duration + 4, (took, duration)
    assert wait_for(lambda: _identity_of(follower), timeout=10) == new_holder
    assert lease["spec"].get("leaseTransitions", 0) >= 1, lease

    env.k.ok("scale", "deployment", "web", "-n", ns, "--replicas=7")

    def converged():
        live = [p for p in env.pods(ns) if not p["metadata"].get("deletionTimestamp")]
        return live if len(live) == 7 and len(_live_running(env, ns, "web")) == 7 else None

    wait_for(converged, timeout=60, message="7 pods after the takeover")
    # Stays at exactly 7: nobody (e.g. a stale leader) creates extras.
    time.sleep(3)
    live = [p for p in env.pods(ns) if not p["metadata"].get("deletionTimestamp")]
    assert len(live) == 7, [p["metadata"]["name"] for p in live]
    rs = env.json("get", "replicasets", "-n", ns)["items"]
    assert len(rs) == 1 and rs[0]["status"].get("replicas") == 7, rs
    assert follower.alive(), follower.log()
