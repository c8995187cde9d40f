//! Data-driven tests: object JSON at a fixed time → expected cells, for every printer, and
//! the column lists (name, type, priority) of every kind.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{columns, has_printer, row, row_conditions};

/// All cases are evaluated at this instant.
fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// Metadata created five minutes before [`now`].
fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "default", "creationTimestamp": "2024-05-01T11:55:00Z"})
}

/// Builds an object with [`meta`] and the given top-level fields.
fn object(name: &str, fields: Value) -> Value {
    let mut o = json!({"metadata": meta(name)});
    if let (Some(target), Some(extra)) = (o.as_object_mut(), fields.as_object()) {
        for (k, v) in extra {
            if k == "metadata" {
                if let (Some(m), Some(more)) = (
                    target.get_mut("metadata").and_then(Value::as_object_mut),
                    v.as_object(),
                ) {
                    m.extend(more.clone());
                }
            } else {
                target.insert(k.clone(), v.clone());
            }
        }
    }
    o
}

struct Case {
    what: &'static str,
    group: &'static str,
    kind: &'static str,
    obj: Value,
    cells: Value,
}

fn case(
    what: &'static str,
    group: &'static str,
    kind: &'static str,
    obj: Value,
    cells: Value,
) -> Case {
    Case {
        what,
        group,
        kind,
        obj,
        cells,
    }
}

fn run(cases: Vec<Case>) {
    for c in cases {
        let got = row(c.group, c.kind, &c.obj, now());
        assert_eq!(Value::Array(got.clone()), c.cells, "{}", c.what);
        let width = columns(c.group, c.kind).len();
        if (c.group, c.kind) == ("networking.k8s.io", "IPAddress") {
            assert_eq!(
                got.len(),
                width + 1,
                "{}: upstream's extra age cell",
                c.what
            );
        } else {
            assert_eq!(got.len(), width, "{}: one cell per column", c.what);
        }
    }
}

fn running(name: &str, restarts: i64) -> Value {
    json!({"name": name, "ready": true, "restartCount": restarts, "started": true,
           "state": {"running": {"startedAt": "2024-05-01T11:56:00Z"}}})
}

#[test]
fn pods() {
    let one = json!({"containers": [{"name": "app", "image": "nginx"}], "nodeName": "node-1"});
    run(vec![
        case(
            "running with restarts",
            "",
            "Pod",
            object(
                "web",
                json!({"spec": one, "status": {
                    "phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}],
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [{"name": "app", "ready": true, "restartCount": 2,
                        "state": {"running": {}},
                        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2024-05-01T05:45:00Z"}}}]
                }}),
            ),
            json!([
                "web",
                "1/1",
                "Running",
                "2 (6h15m ago)",
                "5m",
                "10.0.0.5",
                "node-1",
                "<none>",
                "<none>"
            ]),
        ),
        case(
            "crash loop",
            "",
            "Pod",
            object(
                "crash",
                json!({"spec": one, "status": {
                    "phase": "Running",
                    "containerStatuses": [{"name": "app", "ready": false, "restartCount": 5,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"exitCode": 2, "finishedAt": "2024-05-01T11:58:00Z"}}}]
                }}),
            ),
            json!([
                "crash",
                "0/1",
                "CrashLoopBackOff",
                "5 (2m ago)",
                "5m",
                "<none>",
                "node-1",
                "<none>",
                "<none>"
            ]),
        ),
        case(
            "image pull error, restarts without a termination time",
            "",
            "Pod",
            object(
                "pull",
                json!({"spec": one, "status": {"phase": "Pending",
                "containerStatuses": [{"name": "app", "ready": false, "restartCount": 1,
                    "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}}]}}),
            ),
            json!([
                "pull",
                "0/1",
                "ErrImagePull",
                "1",
                "5m",
                "<none>",
                "node-1",
                "<none>",
                "<none>"
            ]),
        ),
        case(
            "pending, unscheduled, empty status",
            "",
            "Pod",
            object(
                "new",
                json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}, "status": {"phase": "Pending"}}),
            ),
            json!([
                "new", "0/2", "Pending", "0", "5m", "<none>", "<none>", "<none>", "<none>"
            ]),
        ),
        case(
            "scheduling gated",
            "",
            "Pod",
            object(
                "gated",
                json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}}),
            ),
            json!([
                "gated",
                "0/1",
                "SchedulingGated",
                "0",
                "5m",
                "<none>",
                "<none>",
                "<none>",
                "<none>"
            ]),
        ),
        case(
            "init container still running",
            "",
            "Pod",
            object(
                "init",
                json!({
                "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "app"}]},
                "status": {"phase": "Pending",
                    "conditions": [{"type": "Initialized", "status": "False"}],
                    "initContainerStatuses": [
                        {"name": "i1", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                        {"name": "i2", "ready": false, "restartCount": 1, "state": {"running": {}},
                         "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:59:00Z"}}}],
                    "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
                        "state": {"waiting": {"reason": "PodInitializing"}}}]}}),
            ),
            json!([
                "init",
                "0/1",
                "Init:1/2",
                "1 (60s ago)",
                "5m",
                "<none>",
                "<none>",
                "<none>",
                "<none>"
            ]),
        ),
        case(
            "init container failed with a reason",
            "",
            "Pod",
            object(
                "initerr",
                json!({
                "spec": {"initContainers": [{"name": "i1"}], "containers": [{"name": "app"}]},
                "status": {"phase": "Pending", "initContainerStatuses": [
                    {"name": "i1", "restartCount": 3, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}}),
            ),
            json!([
                "initerr",
                "0/1",
                "Init:Error",
                "3",
                "5m",
                "<none>",
                "<none>",
                "<none>",
                "<none>"
            ]),
        ),
        case(
            "init container crash looping",
            "",
            "Pod",
            object(
                "initcrash",
                json!({
                "spec": {"initContainers": [{"name": "i1"}], "containers": [{"name": "app"}]},
                "status": {"phase": "Pending", "initContainerStatuses": [
                    {"name": "i1", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}),
            ),
            json!([
                "initcrash",
                "0/1",
                "Init:CrashLoopBackOff",
                "4",
                "5m",
                "<none>",
                "<none>",
                "<none>",
                "<none>"
            ]),
        ),
        case(
            "init container killed by a signal",
            "",
            "Pod",
            object(
                "initsig",
                json!({
                "spec": {"initContainers": [{"name": "i1"}], "containers": [{"name": "app"}]},
                "status": {"phase": "Pending", "initContainerStatuses": [
                    {"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}}),
            ),
            json!([
                "initsig",
                "0/1",
                "Init:Signal:9",
                "0",
                "5m",
                "<none>",
                "<none>",
                "<none>",
                "<none>"
            ]),
        ),
        case(
            "init container exit code without reason",
            "",
            "Pod",
            object(
                "initcode",
                json!({
                "spec": {"initContainers": [{"name": "i1"}], "containers": [{"name": "app"}]},
                "status": {"phase": "Pending", "initContainerStatuses": [
                    {"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 3}}}]}}),
            ),
            json!([
                "initcode",
                "0/1",
                "Init:ExitCode:3",
                "0",
                "5m",
                "<none>",
                "<none>",
                "<none>",
                "<none>"
            ]),
        ),
        case(
            "sidecar init container counts toward READY and RESTARTS",
            "",
            "Pod",
            object(
                "sidecar",
                json!({
                "spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "app"}]},
                "status": {"phase": "Running",
                    "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                    "initContainerStatuses": [{"name": "proxy", "ready": true, "started": true, "restartCount": 1,
                        "state": {"running": {}},
                        "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:00:00Z"}}}],
                    "containerStatuses": [running("app", 0)]}}),
            ),
            json!([
                "sidecar",
                "2/2",
                "Running",
                "1 (60m ago)",
                "5m",
                "<none>",
                "<none>",
                "<none>",
                "<none>"
            ]),
        ),
        case(
            "terminating",
            "",
            "Pod",
            object(
                "bye",
                json!({"metadata": {"deletionTimestamp": "2024-05-01T11:59:00Z"},
                "spec": one, "status": {"phase": "Running", "containerStatuses": [running("app", 0)]}}),
            ),
            json!([
                "bye",
                "1/1",
                "Terminating",
                "0",
                "5m",
                "<none>",
                "node-1",
                "<none>",
                "<none>"
            ]),
        ),
        case(
            "node lost",
            "",
            "Pod",
            object(
                "lost",
                json!({"metadata": {"deletionTimestamp": "2024-05-01T11:59:00Z"},
                "spec": one, "status": {"phase": "Running", "reason": "NodeLost"}}),
            ),
            json!([
                "lost", "0/1", "Unknown", "0", "5m", "<none>", "node-1", "<none>", "<none>"
            ]),
        ),
        case(
            "completed, deletion does not change a terminal phase",
            "",
            "Pod",
            object(
                "done",
                json!({"metadata": {"deletionTimestamp": "2024-05-01T11:59:00Z"},
                "spec": one, "status": {"phase": "Succeeded", "containerStatuses": [{"name": "app", "ready": false,
                    "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}}),
            ),
            json!([
                "done",
                "0/1",
                "Completed",
                "0",
                "5m",
                "<none>",
                "node-1",
                "<none>",
                "<none>"
            ]),
        ),
        case(
            "one container completed, another still running, pod not ready",
            "",
            "Pod",
            object(
                "half",
                json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}, "status": {"phase": "Running",
                "containerStatuses": [
                    {"name": "a", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    running("b", 0)]}}),
            ),
            json!([
                "half", "1/2", "NotReady", "0", "5m", "<none>", "<none>", "<none>", "<none>"
            ]),
        ),
        case(
            "one container completed, another running, pod ready",
            "",
            "Pod",
            object(
                "halfready",
                json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}, "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": "a", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    running("b", 0)]}}),
            ),
            json!([
                "halfready",
                "1/2",
                "Running",
                "0",
                "5m",
                "<none>",
                "<none>",
                "<none>",
                "<none>"
            ]),
        ),
        case(
            "killed container without reason",
            "",
            "Pod",
            object(
                "killed",
                json!({"spec": one, "status": {"phase": "Running", "containerStatuses": [
                {"name": "app", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}}),
            ),
            json!([
                "killed", "0/1", "Signal:9", "0", "5m", "<none>", "node-1", "<none>", "<none>"
            ]),
        ),
        case(
            "evicted",
            "",
            "Pod",
            object(
                "evicted",
                json!({"spec": one, "status": {"phase": "Failed", "reason": "Evicted"}}),
            ),
            json!([
                "evicted", "0/1", "Evicted", "0", "5m", "<none>", "node-1", "<none>", "<none>"
            ]),
        ),
        case(
            "readiness gates, nominated node, podIPs preferred",
            "",
            "Pod",
            object(
                "gates",
                json!({
                "spec": {"containers": [{"name": "app"}], "readinessGates": [{"conditionType": "a"}, {"conditionType": "b"}]},
                "status": {"phase": "Pending", "nominatedNodeName": "node-2", "podIP": "10.0.0.9",
                    "podIPs": [{"ip": "fd00::9"}, {"ip": "10.0.0.9"}],
                    "conditions": [{"type": "a", "status": "True"}, {"type": "b", "status": "False"}]}}),
            ),
            json!([
                "gates", "0/1", "Pending", "0", "5m", "fd00::9", "<none>", "node-2", "1/2"
            ]),
        ),
    ]);
}

#[test]
fn pod_row_conditions() {
    let pod = |phase: &str| object("p", json!({"status": {"phase": phase}}));
    assert_eq!(
        row_conditions("", "Pod", &pod("Succeeded")),
        vec![
            json!({"type": "Completed", "status": "True", "reason": "Succeeded",
                    "message": "The pod has completed successfully."})
        ]
    );
    assert_eq!(
        row_conditions("", "Pod", &pod("Failed")),
        vec![
            json!({"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."})
        ]
    );
    assert!(row_conditions("", "Pod", &pod("Running")).is_empty());
    assert!(row_conditions("apps", "Deployment", &pod("Succeeded")).is_empty());
}

#[test]
fn nodes() {
    let info = json!({"kubeletVersion": "v1.33.1", "osImage": "Ubuntu 24.04", "kernelVersion": "6.8.0",
                      "containerRuntimeVersion": "containerd://2.0.0"});
    let addresses = json!([{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "n1"}]);
    let ready =
        json!([{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}]);
    run(vec![
        case(
            "ready control plane",
            "",
            "Node",
            object(
                "n1",
                json!({
                "metadata": {"labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "n1"}},
                "status": {"conditions": ready, "nodeInfo": info, "addresses": addresses}}),
            ),
            json!([
                "n1",
                "Ready",
                "control-plane",
                "5m",
                "v1.33.1",
                "192.168.1.10",
                "<none>",
                "Ubuntu 24.04",
                "6.8.0",
                "containerd://2.0.0"
            ]),
        ),
        case(
            "cordoned, several roles",
            "",
            "Node",
            object(
                "n2",
                json!({
                "metadata": {"labels": {"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/": "",
                                        "kubernetes.io/role": "edge", "node-role.kubernetes.io/control-plane": ""}},
                "spec": {"unschedulable": true},
                "status": {"conditions": ready, "nodeInfo": info,
                           "addresses": [{"type": "ExternalIP", "address": "203.0.113.7"}]}}),
            ),
            json!([
                "n2",
                "Ready,SchedulingDisabled",
                "control-plane,edge,worker",
                "5m",
                "v1.33.1",
                "<none>",
                "203.0.113.7",
                "Ubuntu 24.04",
                "6.8.0",
                "containerd://2.0.0"
            ]),
        ),
        case(
            "not ready",
            "",
            "Node",
            object(
                "n3",
                json!({"status": {"conditions": [{"type": "Ready", "status": "False"}], "nodeInfo": info}}),
            ),
            json!([
                "n3",
                "NotReady",
                "<none>",
                "5m",
                "v1.33.1",
                "<none>",
                "<none>",
                "Ubuntu 24.04",
                "6.8.0",
                "containerd://2.0.0"
            ]),
        ),
        case(
            "ready condition unknown",
            "",
            "Node",
            object(
                "n4",
                json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
            ),
            json!([
                "n4",
                "NotReady",
                "<none>",
                "5m",
                "",
                "<none>",
                "<none>",
                "<unknown>",
                "<unknown>",
                "<unknown>"
            ]),
        ),
        case(
            "no conditions yet, cordoned",
            "",
            "Node",
            object("n5", json!({"spec": {"unschedulable": true}})),
            json!([
                "n5",
                "Unknown,SchedulingDisabled",
                "<none>",
                "5m",
                "",
                "<none>",
                "<none>",
                "<unknown>",
                "<unknown>",
                "<unknown>"
            ]),
        ),
    ]);
}

#[test]
fn services() {
    run(vec![
        case(
            "cluster IP",
            "",
            "Service",
            object(
                "web",
                json!({"spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                "selector": {"app": "web", "tier": "fe"}}}),
            ),
            json!([
                "web",
                "ClusterIP",
                "10.96.0.10",
                "<none>",
                "80/TCP,53/UDP",
                "5m",
                "app=web,tier=fe"
            ]),
        ),
        case(
            "node port, defaults for type and protocol, external IPs",
            "",
            "Service",
            object(
                "np",
                json!({"spec": {"clusterIP": "10.96.0.11", "externalIPs": ["1.2.3.4", "5.6.7.8"],
                "ports": [{"port": 80, "nodePort": 30080}]}}),
            ),
            json!([
                "np",
                "ClusterIP",
                "10.96.0.11",
                "1.2.3.4,5.6.7.8",
                "80:30080/TCP",
                "5m",
                "<none>"
            ]),
        ),
        case(
            "load balancer pending",
            "",
            "Service",
            object(
                "lb",
                json!({"spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.12"],
                "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]}}),
            ),
            json!([
                "lb",
                "LoadBalancer",
                "10.96.0.12",
                "<pending>",
                "443:31443/TCP",
                "5m",
                "<none>"
            ]),
        ),
        case(
            "load balancer with ingress and external IPs (never clipped server-side)",
            "",
            "Service",
            object(
                "lb2",
                json!({"spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.13"],
                    "externalIPs": ["9.9.9.9"], "ports": [{"port": 80, "protocol": "TCP"}]},
                "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.20"}, {"hostname": "lb.example.com"},
                                                        {"ip": "203.0.113.20"}]}}}),
            ),
            json!([
                "lb2",
                "LoadBalancer",
                "10.96.0.13",
                "203.0.113.20,lb.example.com,9.9.9.9",
                "80/TCP",
                "5m",
                "<none>"
            ]),
        ),
        case(
            "external name",
            "",
            "Service",
            object(
                "ext",
                json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}}),
            ),
            json!([
                "ext",
                "ExternalName",
                "<none>",
                "db.example.com",
                "<none>",
                "5m",
                "<none>"
            ]),
        ),
        case(
            "headless",
            "",
            "Service",
            object(
                "hl",
                json!({"spec": {"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"],
                "ports": [{"port": 5432, "protocol": "TCP"}], "selector": {"app": "db"}}}),
            ),
            json!([
                "hl",
                "ClusterIP",
                "None",
                "<none>",
                "5432/TCP",
                "5m",
                "app=db"
            ]),
        ),
    ]);
}

#[test]
fn events() {
    run(vec![
        case(
            "core event with timestamps and source",
            "",
            "Event",
            object(
                "web.17a",
                json!({
                "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
                "reason": "BackOff", "message": "  Back-off restarting failed container\n", "type": "Warning",
                "firstTimestamp": "2024-05-01T10:00:00Z", "lastTimestamp": "2024-05-01T11:58:00Z", "count": 7,
                "source": {"component": "kubelet", "host": "node-1"}}),
            ),
            json!([
                "2m",
                "Warning",
                "BackOff",
                "pod/web",
                "spec.containers{app}",
                "kubelet, node-1",
                "Back-off restarting failed container",
                "120m",
                7,
                "web.17a"
            ]),
        ),
        case(
            "core event from the new API: event time, series, reporting controller",
            "",
            "Event",
            object(
                "e2",
                json!({
                "involvedObject": {"kind": "Node"}, "reason": "Rebooted", "message": "rebooted", "type": "Normal",
                "eventTime": "2024-05-01T11:00:00.000000Z", "reportingController": "kubelet",
                "series": {"count": 4, "lastObservedTime": "2024-05-01T11:59:30.000000Z"}}),
            ),
            json!([
                "30s", "Normal", "Rebooted", "node", "", "kubelet", "rebooted", "60m", 4, "e2"
            ]),
        ),
        case(
            "singleton event without count",
            "",
            "Event",
            object(
                "e3",
                json!({"involvedObject": {"kind": "Deployment", "name": "web"}, "reason": "ScalingReplicaSet",
                "message": "Scaled up", "type": "Normal", "eventTime": "2024-05-01T11:59:00.000000Z",
                "reportingController": "deployment-controller", "reportingInstance": "cm-1"}),
            ),
            json!([
                "60s",
                "Normal",
                "ScalingReplicaSet",
                "deployment/web",
                "",
                "deployment-controller, cm-1",
                "Scaled up",
                "60s",
                1,
                "e3"
            ]),
        ),
        case(
            "events.k8s.io/v1 event",
            "events.k8s.io",
            "Event",
            object(
                "e4",
                json!({"regarding": {"kind": "Pod", "name": "api", "fieldPath": "spec.containers{c}"},
                "note": "Pulled image", "reason": "Pulled", "type": "Normal",
                "deprecatedFirstTimestamp": "2024-05-01T11:50:00Z", "deprecatedLastTimestamp": "2024-05-01T11:55:00Z",
                "deprecatedCount": 2, "deprecatedSource": {"component": "kubelet"}}),
            ),
            json!([
                "5m",
                "Normal",
                "Pulled",
                "pod/api",
                "spec.containers{c}",
                "kubelet",
                "Pulled image",
                "10m",
                2,
                "e4"
            ]),
        ),
        case(
            "event without any time",
            "",
            "Event",
            object(
                "e5",
                json!({"involvedObject": {"kind": "Pod", "name": "x"}, "reason": "R", "message": "m"}),
            ),
            json!([
                "<unknown>",
                "",
                "R",
                "pod/x",
                "",
                "",
                "m",
                "<unknown>",
                1,
                "e5"
            ]),
        ),
    ]);
}

#[test]
fn small_core_kinds() {
    run(vec![
        case(
            "namespace",
            "",
            "Namespace",
            object("ns1", json!({"status": {"phase": "Active"}})),
            json!(["ns1", "Active", "5m"]),
        ),
        case(
            "terminating namespace",
            "",
            "Namespace",
            object("ns2", json!({"status": {"phase": "Terminating"}})),
            json!(["ns2", "Terminating", "5m"]),
        ),
        case(
            "namespace, defaulted phase",
            "",
            "Namespace",
            object("ns3", json!({})),
            json!(["ns3", "Active", "5m"]),
        ),
        case(
            "tls secret",
            "",
            "Secret",
            object(
                "tls",
                json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}}),
            ),
            json!(["tls", "kubernetes.io/tls", 2, "5m"]),
        ),
        case(
            "empty secret, defaulted type",
            "",
            "Secret",
            object("empty", json!({})),
            json!(["empty", "Opaque", 0, "5m"]),
        ),
        case(
            "config map counts data and binaryData",
            "",
            "ConfigMap",
            object(
                "cfg",
                json!({"data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}),
            ),
            json!(["cfg", 3, "5m"]),
        ),
        case(
            "empty config map",
            "",
            "ConfigMap",
            object("cfg2", json!({})),
            json!(["cfg2", 0, "5m"]),
        ),
        case(
            "service account",
            "",
            "ServiceAccount",
            object("default", json!({"secrets": [{"name": "tok"}]})),
            json!(["default", 1, "5m"]),
        ),
        case(
            "service account without secrets",
            "",
            "ServiceAccount",
            object("sa", json!({})),
            json!(["sa", 0, "5m"]),
        ),
        case(
            "pod template",
            "",
            "PodTemplate",
            object(
                "tpl",
                json!({"template": {"metadata": {"labels": {"run": "x", "app": "y"}},
                "spec": {"containers": [{"name": "a", "image": "img:a"}, {"name": "b", "image": "img:b"}]}}}),
            ),
            json!(["tpl", "a,b", "img:a,img:b", "app=y,run=x"]),
        ),
        case(
            "replication controller",
            "",
            "ReplicationController",
            object(
                "rc",
                json!({"spec": {"replicas": 3, "selector": {"app": "rc"},
                    "template": {"spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}},
                "status": {"replicas": 3, "readyReplicas": 2}}),
            ),
            json!(["rc", 3, 3, 2, "5m", "c", "nginx:1", "app=rc"]),
        ),
        case(
            "endpoints with more than three addresses",
            "",
            "Endpoints",
            object(
                "ep",
                json!({"subsets": [
                {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}]}),
            ),
            json!([
                "ep",
                "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...",
                "5m"
            ]),
        ),
        case(
            "headless endpoints without ports, IPv6",
            "",
            "Endpoints",
            object(
                "ep2",
                json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}]},
                                             {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 8080}]}]}),
            ),
            json!(["ep2", "10.0.0.1,[fd00::1]:8080", "5m"]),
        ),
        case(
            "endpoints without subsets",
            "",
            "Endpoints",
            object("ep3", json!({})),
            json!(["ep3", "<none>", "5m"]),
        ),
        case(
            "resource quota",
            "",
            "ResourceQuota",
            object(
                "quota",
                json!({"status": {
                "hard": {"pods": "10", "requests.cpu": "1", "limits.memory": "2Gi", "requests.memory": "1024Mi"},
                "used": {"pods": "3", "requests.cpu": "500m", "limits.memory": "1Gi"}}}),
            ),
            json!([
                "quota",
                "pods: 3/10, requests.cpu: 500m/1, requests.memory: 0/1Gi",
                "limits.memory: 1Gi/2Gi",
                "5m"
            ]),
        ),
        case(
            "empty resource quota",
            "",
            "ResourceQuota",
            object("q2", json!({})),
            json!(["q2", "", "", "5m"]),
        ),
        case(
            "limit range uses the default table",
            "",
            "LimitRange",
            object("limits", json!({"spec": {"limits": []}})),
            json!(["limits", "2024-05-01T11:55:00Z"]),
        ),
    ]);
}

#[test]
fn volumes() {
    run(vec![
        case(
            "bound persistent volume",
            "",
            "PersistentVolume",
            object(
                "pv1",
                json!({"spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "standard",
                    "claimRef": {"namespace": "default", "name": "data"}, "volumeMode": "Filesystem"},
                "status": {"phase": "Bound"}}),
            ),
            json!([
                "pv1",
                "10Gi",
                "RWO",
                "Retain",
                "Bound",
                "default/data",
                "standard",
                "<unset>",
                "",
                "5m",
                "Filesystem"
            ]),
        ),
        case(
            "terminating block volume with beta class annotation",
            "",
            "PersistentVolume",
            object(
                "pv2",
                json!({"metadata": {"deletionTimestamp": "2024-05-01T11:59:00Z",
                    "annotations": {"volume.beta.kubernetes.io/storage-class": "old"}},
                "spec": {"capacity": {"storage": "1.5Gi"}, "accessModes": ["ReadWriteMany", "ReadOnlyMany"],
                    "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "new", "volumeMode": "Block",
                    "volumeAttributesClassName": "gold"},
                "status": {"phase": "Released", "reason": "Lost"}}),
            ),
            json!([
                "pv2",
                "1536Mi",
                "ROX,RWX",
                "Delete",
                "Terminating",
                "",
                "old",
                "gold",
                "Lost",
                "5m",
                "Block"
            ]),
        ),
        case(
            "bare persistent volume, upstream defaults",
            "",
            "PersistentVolume",
            object("pv3", json!({"spec": {}})),
            json!([
                "pv3",
                "0",
                "",
                "Retain",
                "Pending",
                "",
                "",
                "<unset>",
                "",
                "5m",
                "Filesystem"
            ]),
        ),
        case(
            "bound claim",
            "",
            "PersistentVolumeClaim",
            object(
                "data",
                json!({"spec": {"volumeName": "pv1", "storageClassName": "standard",
                    "resources": {"requests": {"storage": "5Gi"}}, "volumeMode": "Filesystem"},
                "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"]}}),
            ),
            json!([
                "data",
                "Bound",
                "pv1",
                "10Gi",
                "RWO",
                "standard",
                "<unset>",
                "5m",
                "Filesystem"
            ]),
        ),
        case(
            "pending claim shows no capacity",
            "",
            "PersistentVolumeClaim",
            object(
                "wait",
                json!({"spec": {"resources": {"requests": {"storage": "5Gi"}}, "volumeAttributesClassName": ""},
                "status": {"phase": "Pending"}}),
            ),
            json!(["wait", "Pending", "", "", "", "", "", "5m", "Filesystem"]),
        ),
    ]);
}

#[test]
fn workloads() {
    let template = json!({"spec": {"containers": [{"name": "web", "image": "nginx:1.27"},
                                                  {"name": "log", "image": "busybox"}]}});
    let selector = json!({"matchLabels": {"app": "web"}});
    run(vec![
        case(
            "deployment",
            "apps",
            "Deployment",
            object(
                "web",
                json!({"spec": {"replicas": 3, "selector": selector, "template": template},
                "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}),
            ),
            json!([
                "web",
                "2/3",
                3,
                2,
                "5m",
                "web,log",
                "nginx:1.27,busybox",
                "app=web"
            ]),
        ),
        case(
            "fresh deployment, defaulted replicas, empty selector prints empty",
            "apps",
            "Deployment",
            object(
                "new",
                json!({"spec": {"selector": {}, "template": {"spec": {"containers": []}}}}),
            ),
            json!(["new", "0/1", 0, 0, "5m", "", "", ""]),
        ),
        case(
            "deployment with an invalid selector",
            "apps",
            "Deployment",
            object(
                "bad",
                json!({"spec": {"replicas": 1, "selector": {"matchExpressions": [{"key": "a", "operator": "Is"}]}}}),
            ),
            json!(["bad", "0/1", 0, 0, "5m", "", "", "<invalid>"]),
        ),
        case(
            "replica set",
            "apps",
            "ReplicaSet",
            object(
                "web-5d9",
                json!({"spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d9"}},
                    "template": template},
                "status": {"replicas": 3, "readyReplicas": 3}}),
            ),
            json!([
                "web-5d9",
                3,
                3,
                3,
                "5m",
                "web,log",
                "nginx:1.27,busybox",
                "app=web,pod-template-hash=5d9"
            ]),
        ),
        case(
            "scaled-down replica set",
            "apps",
            "ReplicaSet",
            object(
                "old",
                json!({"spec": {"replicas": 0, "selector": selector, "template": template}, "status": {"replicas": 0}}),
            ),
            json!([
                "old",
                0,
                0,
                0,
                "5m",
                "web,log",
                "nginx:1.27,busybox",
                "app=web"
            ]),
        ),
        case(
            "daemon set",
            "apps",
            "DaemonSet",
            object(
                "agent",
                json!({"spec": {"selector": {"matchLabels": {"app": "agent"}},
                    "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                                          "containers": [{"name": "agent", "image": "agent:2"}]}}},
                "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                           "updatedNumberScheduled": 3, "numberAvailable": 2}}),
            ),
            json!([
                "agent",
                3,
                3,
                2,
                3,
                2,
                "kubernetes.io/os=linux",
                "5m",
                "agent",
                "agent:2",
                "app=agent"
            ]),
        ),
        case(
            "daemon set without node selector or status",
            "apps",
            "DaemonSet",
            object(
                "ds",
                json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
            ),
            json!(["ds", 0, 0, 0, 0, 0, "<none>", "5m", "c", "i", "<none>"]),
        ),
        case(
            "stateful set",
            "apps",
            "StatefulSet",
            object(
                "db",
                json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "pg", "image": "postgres:16"}]}}},
                "status": {"readyReplicas": 1}}),
            ),
            json!(["db", "1/3", "5m", "pg", "postgres:16"]),
        ),
        case(
            "controller revision owned by a daemon set",
            "apps",
            "ControllerRevision",
            object(
                "agent-7c9",
                json!({"metadata": {"ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "u1", "controller": true}]},
                "revision": 3}),
            ),
            json!(["agent-7c9", "daemonset.apps/agent", 3, "5m"]),
        ),
        case(
            "controller revision with a core owner",
            "apps",
            "ControllerRevision",
            object(
                "rev",
                json!({"metadata": {"ownerReferences": [
                    {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u"},
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "u2", "controller": true}]},
                "revision": 1}),
            ),
            json!(["rev", "configmap/cm", 1, "5m"]),
        ),
        case(
            "orphan controller revision",
            "apps",
            "ControllerRevision",
            object("orphan", json!({"revision": 2})),
            json!(["orphan", "<none>", 2, "5m"]),
        ),
        case(
            "scale",
            "autoscaling",
            "Scale",
            object(
                "web",
                json!({"spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=web"}}),
            ),
            json!(["web", 3, 2, "5m"]),
        ),
        case(
            "pod disruption budget",
            "policy",
            "PodDisruptionBudget",
            object(
                "pdb",
                json!({"spec": {"minAvailable": 2}, "status": {"disruptionsAllowed": 1}}),
            ),
            json!(["pdb", "2", "N/A", 1, "5m"]),
        ),
        case(
            "pod disruption budget with a percentage",
            "policy",
            "PodDisruptionBudget",
            object("pdb2", json!({"spec": {"maxUnavailable": "25%"}})),
            json!(["pdb2", "N/A", "25%", 0, "5m"]),
        ),
    ]);
}

#[test]
fn jobs() {
    let spec = json!({"completions": 3, "parallelism": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
                      "template": {"spec": {"containers": [{"name": "pi", "image": "perl:5"}]}}});
    let job = |name: &str, status: Value| object(name, json!({"spec": spec, "status": status}));
    run(vec![
        case(
            "complete",
            "batch",
            "Job",
            job(
                "done",
                json!({"succeeded": 3, "startTime": "2024-05-01T11:50:00Z", "completionTime": "2024-05-01T11:52:05Z",
                "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}),
            ),
            json!([
                "done",
                "Complete",
                "3/3",
                "2m5s",
                "5m",
                "pi",
                "perl:5",
                "batch.kubernetes.io/controller-uid=u1"
            ]),
        ),
        case(
            "running",
            "batch",
            "Job",
            job(
                "run",
                json!({"succeeded": 1, "active": 1, "startTime": "2024-05-01T11:57:00Z"}),
            ),
            json!([
                "run",
                "Running",
                "1/3",
                "3m",
                "5m",
                "pi",
                "perl:5",
                "batch.kubernetes.io/controller-uid=u1"
            ]),
        ),
        case(
            "failed",
            "batch",
            "Job",
            job(
                "fail",
                json!({"failed": 6, "startTime": "2024-05-01T11:00:00Z", "conditions": [
                {"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True"}]}),
            ),
            json!([
                "fail",
                "Failed",
                "0/3",
                "60m",
                "5m",
                "pi",
                "perl:5",
                "batch.kubernetes.io/controller-uid=u1"
            ]),
        ),
        case(
            "failure target only",
            "batch",
            "Job",
            job(
                "ft",
                json!({"startTime": "2024-05-01T11:59:00Z", "conditions": [{"type": "FailureTarget", "status": "True"}]}),
            ),
            json!([
                "ft",
                "FailureTarget",
                "0/3",
                "60s",
                "5m",
                "pi",
                "perl:5",
                "batch.kubernetes.io/controller-uid=u1"
            ]),
        ),
        case(
            "suspended, not started",
            "batch",
            "Job",
            job(
                "sus",
                json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
            ),
            json!([
                "sus",
                "Suspended",
                "0/3",
                "",
                "5m",
                "pi",
                "perl:5",
                "batch.kubernetes.io/controller-uid=u1"
            ]),
        ),
        case(
            "terminating",
            "batch",
            "Job",
            object(
                "term",
                json!({"metadata": {"deletionTimestamp": "2024-05-01T11:59:00Z"}, "spec": spec,
                "status": {"conditions": [{"type": "Suspended", "status": "True"}]}}),
            ),
            json!([
                "term",
                "Terminating",
                "0/3",
                "",
                "5m",
                "pi",
                "perl:5",
                "batch.kubernetes.io/controller-uid=u1"
            ]),
        ),
        case(
            "work queue job: no completions, parallel",
            "batch",
            "Job",
            object(
                "queue",
                json!({"spec": {"parallelism": 4, "template": {"spec": {"containers": []}}},
                "status": {"succeeded": 2, "conditions": [{"type": "Complete", "status": "False"}]}}),
            ),
            json!(["queue", "Running", "2/1 of 4", "", "5m", "", "", "<none>"]),
        ),
        case(
            "cron job",
            "batch",
            "CronJob",
            object(
                "nightly",
                json!({"spec": {"schedule": "0 3 * * *", "timeZone": "Europe/Paris", "suspend": true,
                    "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "backup", "image": "backup:1"}]}}}}},
                "status": {"active": [{"name": "nightly-1"}, {"name": "nightly-2"}],
                           "lastScheduleTime": "2024-05-01T03:00:00Z"}}),
            ),
            json!([
                "nightly",
                "0 3 * * *",
                "Europe/Paris",
                "True",
                2,
                "9h",
                "5m",
                "backup",
                "backup:1",
                "<none>"
            ]),
        ),
        case(
            "cron job never scheduled, defaulted suspend",
            "batch",
            "CronJob",
            object(
                "every5",
                json!({"spec": {"schedule": "*/5 * * * *",
                "jobTemplate": {"spec": {"selector": {"matchLabels": {"a": "b"}},
                                         "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}}}),
            ),
            json!([
                "every5",
                "*/5 * * * *",
                "<none>",
                "False",
                0,
                "<none>",
                "5m",
                "c",
                "i",
                "a=b"
            ]),
        ),
    ]);
}

#[test]
fn networking_and_discovery() {
    run(vec![
        case(
            "ingress with TLS and a load balancer",
            "networking.k8s.io",
            "Ingress",
            object(
                "ing",
                json!({"spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["a.example.com"]}],
                    "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}]},
                "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.5"}, {"hostname": "lb.example.com"}]}}}),
            ),
            json!([
                "ing",
                "nginx",
                "a.example.com,b.example.com",
                "203.0.113.5,lb.example.com",
                "80, 443",
                "5m"
            ]),
        ),
        case(
            "ingress without class, hosts or address",
            "networking.k8s.io",
            "Ingress",
            object(
                "bare",
                json!({"spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}}),
            ),
            json!(["bare", "<none>", "*", "", "80", "5m"]),
        ),
        case(
            "ingress with many hosts",
            "networking.k8s.io",
            "Ingress",
            object(
                "many",
                json!({"spec": {"rules": [{"host": "a"}, {}, {"host": "b"}, {"host": "c"}, {"host": "d"}]}}),
            ),
            json!(["many", "<none>", "a,b,c + 2 more...", "", "80", "5m"]),
        ),
        case(
            "ingress class with parameters",
            "networking.k8s.io",
            "IngressClass",
            object(
                "nginx",
                json!({"spec": {"controller": "k8s.io/ingress-nginx",
                "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}}}),
            ),
            json!([
                "nginx",
                "k8s.io/ingress-nginx",
                "IngressParameters.k8s.example.com/external-lb",
                "5m"
            ]),
        ),
        case(
            "ingress class without parameters",
            "networking.k8s.io",
            "IngressClass",
            object("plain", json!({"spec": {"controller": "example.com/ctrl"}})),
            json!(["plain", "example.com/ctrl", "<none>", "5m"]),
        ),
        case(
            "network policy selecting all pods",
            "networking.k8s.io",
            "NetworkPolicy",
            object(
                "deny",
                json!({"spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
            ),
            json!(["deny", "<none>", "5m"]),
        ),
        case(
            "network policy with a selector",
            "networking.k8s.io",
            "NetworkPolicy",
            object(
                "allow",
                json!({"spec": {"podSelector": {"matchLabels": {"role": "db"}}}}),
            ),
            json!(["allow", "role=db", "5m"]),
        ),
        case(
            "service CIDR",
            "networking.k8s.io",
            "ServiceCIDR",
            object(
                "kubernetes",
                json!({"spec": {"cidrs": ["10.96.0.0/12", "fd00:10:96::/112"]}}),
            ),
            json!(["kubernetes", "10.96.0.0/12,fd00:10:96::/112", "5m"]),
        ),
        case(
            "IP address (upstream row carries an extra age cell)",
            "networking.k8s.io",
            "IPAddress",
            object(
                "10.96.0.1",
                json!({"spec": {"parentRef": {"group": "", "resource": "services",
                "namespace": "default", "name": "kubernetes"}}}),
            ),
            json!(["10.96.0.1", "services/default/kubernetes", "5m"]),
        ),
        case(
            "IP address with a grouped parent and without one",
            "networking.k8s.io",
            "IPAddress",
            object(
                "10.96.0.2",
                json!({"spec": {"parentRef": {"group": "Gateway.Networking.k8s.io",
                "resource": "Gateways", "name": "gw"}}}),
            ),
            json!(["10.96.0.2", "gateways.gateway.networking.k8s.io/gw", "5m"]),
        ),
        case(
            "endpoint slice",
            "discovery.k8s.io",
            "EndpointSlice",
            object(
                "web-abc",
                json!({"addressType": "IPv4",
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "metrics"}, {}],
                "endpoints": [{"addresses": ["10.0.0.1", "10.0.0.2"]}, {"addresses": ["10.0.0.3"]}, {"addresses": ["10.0.0.4"]}]}),
            ),
            json!([
                "web-abc",
                "IPv4",
                "80,metrics,*",
                "10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...",
                "5m"
            ]),
        ),
        case(
            "empty endpoint slice",
            "discovery.k8s.io",
            "EndpointSlice",
            object("empty", json!({"addressType": "IPv6"})),
            json!(["empty", "IPv6", "<unset>", "<unset>", "5m"]),
        ),
        case(
            "lease",
            "coordination.k8s.io",
            "Lease",
            object(
                "kube-scheduler",
                json!({"spec": {"holderIdentity": "cp-1_abc", "leaseDurationSeconds": 15}}),
            ),
            json!(["kube-scheduler", "cp-1_abc", "5m"]),
        ),
        case(
            "lease without holder",
            "coordination.k8s.io",
            "Lease",
            object("free", json!({"spec": {}})),
            json!(["free", "", "5m"]),
        ),
    ]);
}

#[test]
fn rbac_scheduling_storage() {
    run(vec![
        case(
            "role binding",
            "rbac.authorization.k8s.io",
            "RoleBinding",
            object(
                "rb",
                json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
                "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
                             {"kind": "ServiceAccount", "namespace": "ci", "name": "bot"}, {"kind": "User", "name": "bob"}]}),
            ),
            json!(["rb", "Role/reader", "5m", "alice, bob", "devs", "ci/bot"]),
        ),
        case(
            "cluster role binding without subjects",
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            object(
                "crb",
                json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}}),
            ),
            json!(["crb", "ClusterRole/view", "5m", "", "", ""]),
        ),
        case(
            "role uses the default table",
            "rbac.authorization.k8s.io",
            "Role",
            object("reader", json!({"rules": []})),
            json!(["reader", "2024-05-01T11:55:00Z"]),
        ),
        case(
            "cluster role without a creation time",
            "rbac.authorization.k8s.io",
            "ClusterRole",
            json!({"metadata": {"name": "admin"}}),
            json!(["admin", "0001-01-01T00:00:00Z"]),
        ),
        case(
            "custom resource definition uses the default table",
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            json!({"metadata": {"name": "widgets.example.com", "creationTimestamp": "2024-04-01T08:30:00+02:00"}}),
            json!(["widgets.example.com", "2024-04-01T06:30:00Z"]),
        ),
        case(
            "priority class",
            "scheduling.k8s.io",
            "PriorityClass",
            object(
                "high",
                json!({"value": 1000000, "globalDefault": true, "preemptionPolicy": "Never"}),
            ),
            json!(["high", 1000000, true, "5m", "Never"]),
        ),
        case(
            "priority class defaults",
            "scheduling.k8s.io",
            "PriorityClass",
            object("low", json!({"value": -5})),
            json!(["low", -5, false, "5m", "PreemptLowerPriority"]),
        ),
        case(
            "default storage class",
            "storage.k8s.io",
            "StorageClass",
            object(
                "standard",
                json!({"metadata": {"annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": "rancher.io/local-path", "reclaimPolicy": "Retain",
                "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": true}),
            ),
            json!([
                "standard (default)",
                "rancher.io/local-path",
                "Retain",
                "WaitForFirstConsumer",
                true,
                "5m"
            ]),
        ),
        case(
            "storage class defaults",
            "storage.k8s.io",
            "StorageClass",
            object("fast", json!({"provisioner": "csi.example.com"})),
            json!([
                "fast",
                "csi.example.com",
                "Delete",
                "Immediate",
                false,
                "5m"
            ]),
        ),
        case(
            "CSI driver",
            "storage.k8s.io",
            "CSIDriver",
            object(
                "csi.example.com",
                json!({"spec": {"attachRequired": false, "podInfoOnMount": true,
                "storageCapacity": true, "tokenRequests": [{"audience": "a"}, {"audience": "b"}],
                "requiresRepublish": true, "volumeLifecycleModes": ["Persistent", "Ephemeral"]}}),
            ),
            json!([
                "csi.example.com",
                false,
                true,
                true,
                "a,b",
                true,
                "Persistent,Ephemeral",
                "5m"
            ]),
        ),
        case(
            "CSI driver defaults",
            "storage.k8s.io",
            "CSIDriver",
            object("min.example.com", json!({"spec": {}})),
            json!([
                "min.example.com",
                true,
                false,
                false,
                "<unset>",
                false,
                "Persistent",
                "5m"
            ]),
        ),
        case(
            "CSI node",
            "storage.k8s.io",
            "CSINode",
            object(
                "node-1",
                json!({"spec": {"drivers": [{"name": "a", "nodeID": "n"}, {"name": "b", "nodeID": "n"}]}}),
            ),
            json!(["node-1", 2, "5m"]),
        ),
        case(
            "volume attachment",
            "storage.k8s.io",
            "VolumeAttachment",
            object(
                "csi-123",
                json!({"spec": {"attacher": "csi.example.com", "nodeName": "node-1",
                "source": {"persistentVolumeName": "pv1"}}, "status": {"attached": true}}),
            ),
            json!(["csi-123", "csi.example.com", "pv1", "node-1", true, "5m"]),
        ),
        case(
            "inline volume attachment, not attached yet",
            "storage.k8s.io",
            "VolumeAttachment",
            object(
                "csi-456",
                json!({"spec": {"attacher": "csi.example.com", "nodeName": "node-2",
                "source": {"inlineVolumeSpec": {}}}}),
            ),
            json!(["csi-456", "csi.example.com", "", "node-2", false, "5m"]),
        ),
        case(
            "CSI storage capacity",
            "storage.k8s.io",
            "CSIStorageCapacity",
            object(
                "cap-1",
                json!({"storageClassName": "fast", "capacity": "2048Mi"}),
            ),
            json!(["cap-1", "fast", "2Gi"]),
        ),
        case(
            "CSI storage capacity unknown",
            "storage.k8s.io",
            "CSIStorageCapacity",
            object("cap-2", json!({"storageClassName": "fast"})),
            json!(["cap-2", "fast", "<unset>"]),
        ),
        case(
            "unknown kind uses the default table",
            "example.com",
            "Gadget",
            object("g", json!({})),
            json!(["g", "2024-05-01T11:55:00Z"]),
        ),
    ]);
}

/// Expected upstream column lists as `Name:type:priority` (a leading `*` marks format `name`).
#[test]
fn column_lists() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "",
            "Pod",
            &[
                "*Name:string:0",
                "Ready:string:0",
                "Status:string:0",
                "Restarts:string:0",
                "Age:string:0",
                "IP:string:1",
                "Node:string:1",
                "Nominated Node:string:1",
                "Readiness Gates:string:1",
            ],
        ),
        (
            "",
            "PodTemplate",
            &[
                "*Name:string:0",
                "Containers:string:0",
                "Images:string:0",
                "Pod Labels:string:0",
            ],
        ),
        (
            "",
            "ReplicationController",
            &[
                "*Name:string:0",
                "Desired:integer:0",
                "Current:integer:0",
                "Ready:integer:0",
                "Age:string:0",
                "Containers:string:1",
                "Images:string:1",
                "Selector:string:1",
            ],
        ),
        (
            "",
            "Service",
            &[
                "*Name:string:0",
                "Type:string:0",
                "Cluster-IP:string:0",
                "External-IP:string:0",
                "Port(s):string:0",
                "Age:string:0",
                "Selector:string:1",
            ],
        ),
        (
            "",
            "Endpoints",
            &["*Name:string:0", "Endpoints:string:0", "Age:string:0"],
        ),
        (
            "",
            "Node",
            &[
                "*Name:string:0",
                "Status:string:0",
                "Roles:string:0",
                "Age:string:0",
                "Version:string:0",
                "Internal-IP:string:1",
                "External-IP:string:1",
                "OS-Image:string:1",
                "Kernel-Version:string:1",
                "Container-Runtime:string:1",
            ],
        ),
        (
            "",
            "Event",
            &[
                "Last Seen:string:0",
                "Type:string:0",
                "Reason:string:0",
                "Object:string:0",
                "Subobject:string:1",
                "Source:string:1",
                "Message:string:0",
                "First Seen:string:1",
                "Count:string:1",
                "*Name:string:1",
            ],
        ),
        (
            "events.k8s.io",
            "Event",
            &[
                "Last Seen:string:0",
                "Type:string:0",
                "Reason:string:0",
                "Object:string:0",
                "Subobject:string:1",
                "Source:string:1",
                "Message:string:0",
                "First Seen:string:1",
                "Count:string:1",
                "*Name:string:1",
            ],
        ),
        (
            "",
            "Namespace",
            &["*Name:string:0", "Status:string:0", "Age:string:0"],
        ),
        (
            "",
            "Secret",
            &[
                "*Name:string:0",
                "Type:string:0",
                "Data:string:0",
                "Age:string:0",
            ],
        ),
        (
            "",
            "ServiceAccount",
            &["*Name:string:0", "Secrets:string:0", "Age:string:0"],
        ),
        (
            "",
            "PersistentVolume",
            &[
                "*Name:string:0",
                "Capacity:string:0",
                "Access Modes:string:0",
                "Reclaim Policy:string:0",
                "Status:string:0",
                "Claim:string:0",
                "StorageClass:string:0",
                "VolumeAttributesClass:string:0",
                "Reason:string:0",
                "Age:string:0",
                "VolumeMode:string:1",
            ],
        ),
        (
            "",
            "PersistentVolumeClaim",
            &[
                "*Name:string:0",
                "Status:string:0",
                "Volume:string:0",
                "Capacity:string:0",
                "Access Modes:string:0",
                "StorageClass:string:0",
                "VolumeAttributesClass:string:0",
                "Age:string:0",
                "VolumeMode:string:1",
            ],
        ),
        (
            "",
            "ConfigMap",
            &["*Name:string:0", "Data:string:0", "Age:string:0"],
        ),
        (
            "",
            "ResourceQuota",
            &[
                "*Name:string:0",
                "Request:string:0",
                "Limit:string:0",
                "Age:string:0",
            ],
        ),
        ("", "LimitRange", &["*Name:string:0", "Created At:date:0"]),
        (
            "apps",
            "Deployment",
            &[
                "*Name:string:0",
                "Ready:string:0",
                "Up-to-date:string:0",
                "Available:string:0",
                "Age:string:0",
                "Containers:string:1",
                "Images:string:1",
                "Selector:string:1",
            ],
        ),
        (
            "apps",
            "ReplicaSet",
            &[
                "*Name:string:0",
                "Desired:integer:0",
                "Current:integer:0",
                "Ready:integer:0",
                "Age:string:0",
                "Containers:string:1",
                "Images:string:1",
                "Selector:string:1",
            ],
        ),
        (
            "apps",
            "DaemonSet",
            &[
                "*Name:string:0",
                "Desired:integer:0",
                "Current:integer:0",
                "Ready:integer:0",
                "Up-to-date:integer:0",
                "Available:integer:0",
                "Node Selector:string:0",
                "Age:string:0",
                "Containers:string:1",
                "Images:string:1",
                "Selector:string:1",
            ],
        ),
        (
            "apps",
            "StatefulSet",
            &[
                "*Name:string:0",
                "Ready:string:0",
                "Age:string:0",
                "Containers:string:1",
                "Images:string:1",
            ],
        ),
        (
            "apps",
            "ControllerRevision",
            &[
                "*Name:string:0",
                "Controller:string:0",
                "Revision:string:0",
                "Age:string:0",
            ],
        ),
        (
            "batch",
            "Job",
            &[
                "*Name:string:0",
                "Status:string:0",
                "Completions:string:0",
                "Duration:string:0",
                "Age:string:0",
                "Containers:string:1",
                "Images:string:1",
                "Selector:string:1",
            ],
        ),
        (
            "batch",
            "CronJob",
            &[
                "*Name:string:0",
                "Schedule:string:0",
                "Timezone:string:0",
                "Suspend:boolean:0",
                "Active:integer:0",
                "Last Schedule:string:0",
                "Age:string:0",
                "Containers:string:1",
                "Images:string:1",
                "Selector:string:1",
            ],
        ),
        (
            "policy",
            "PodDisruptionBudget",
            &[
                "*Name:string:0",
                "Min Available:string:0",
                "Max Unavailable:string:0",
                "Allowed Disruptions:integer:0",
                "Age:string:0",
            ],
        ),
        (
            "autoscaling",
            "Scale",
            &[
                "Name:string:0",
                "Desired:integer:0",
                "Available:integer:0",
                "Age:string:0",
            ],
        ),
        (
            "coordination.k8s.io",
            "Lease",
            &["*Name:string:0", "Holder:string:0", "Age:string:0"],
        ),
        (
            "discovery.k8s.io",
            "EndpointSlice",
            &[
                "*Name:string:0",
                "AddressType:string:0",
                "Ports:string:0",
                "Endpoints:string:0",
                "Age:string:0",
            ],
        ),
        (
            "networking.k8s.io",
            "Ingress",
            &[
                "*Name:string:0",
                "Class:string:0",
                "Hosts:string:0",
                "Address:string:0",
                "Ports:string:0",
                "Age:string:0",
            ],
        ),
        (
            "networking.k8s.io",
            "IngressClass",
            &[
                "*Name:string:0",
                "Controller:string:0",
                "Parameters:string:0",
                "Age:string:0",
            ],
        ),
        (
            "networking.k8s.io",
            "NetworkPolicy",
            &["*Name:string:0", "Pod-Selector:string:0", "Age:string:0"],
        ),
        (
            "networking.k8s.io",
            "IPAddress",
            &["*Name:string:0", "ParentRef:string:0"],
        ),
        (
            "networking.k8s.io",
            "ServiceCIDR",
            &["*Name:string:0", "CIDRs:string:0", "Age:string:0"],
        ),
        (
            "rbac.authorization.k8s.io",
            "RoleBinding",
            &[
                "*Name:string:0",
                "Role:string:0",
                "Age:string:0",
                "Users:string:1",
                "Groups:string:1",
                "ServiceAccounts:string:1",
            ],
        ),
        (
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            &[
                "*Name:string:0",
                "Role:string:0",
                "Age:string:0",
                "Users:string:1",
                "Groups:string:1",
                "ServiceAccounts:string:1",
            ],
        ),
        (
            "rbac.authorization.k8s.io",
            "Role",
            &["*Name:string:0", "Created At:date:0"],
        ),
        (
            "rbac.authorization.k8s.io",
            "ClusterRole",
            &["*Name:string:0", "Created At:date:0"],
        ),
        (
            "scheduling.k8s.io",
            "PriorityClass",
            &[
                "*Name:string:0",
                "Value:integer:0",
                "Global-Default:boolean:0",
                "Age:string:0",
                "PreemptionPolicy:string:0",
            ],
        ),
        (
            "storage.k8s.io",
            "StorageClass",
            &[
                "*Name:string:0",
                "Provisioner:string:0",
                "ReclaimPolicy:string:0",
                "VolumeBindingMode:string:0",
                "AllowVolumeExpansion:string:0",
                "Age:string:0",
            ],
        ),
        (
            "storage.k8s.io",
            "CSIDriver",
            &[
                "*Name:string:0",
                "AttachRequired:boolean:0",
                "PodInfoOnMount:boolean:0",
                "StorageCapacity:boolean:0",
                "TokenRequests:string:0",
                "RequiresRepublish:boolean:0",
                "Modes:string:0",
                "Age:string:0",
            ],
        ),
        (
            "storage.k8s.io",
            "CSINode",
            &["*Name:string:0", "Drivers:integer:0", "Age:string:0"],
        ),
        (
            "storage.k8s.io",
            "VolumeAttachment",
            &[
                "*Name:string:0",
                "*Attacher:string:0",
                "PV:string:0",
                "Node:string:0",
                "Attached:boolean:0",
                "Age:string:0",
            ],
        ),
        (
            "storage.k8s.io",
            "CSIStorageCapacity",
            &[
                "*Name:string:0",
                "StorageClassName:string:0",
                "Capacity:string:0",
            ],
        ),
        (
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            &["*Name:string:0", "Created At:date:0"],
        ),
    ];
    for (group, kind, want) in cases {
        let got: Vec<String> = columns(group, kind)
            .iter()
            .map(|c| {
                let star = if c.format == "name" { "*" } else { "" };
                format!("{star}{}:{}:{}", c.name, c.type_, c.priority)
            })
            .collect();
        assert_eq!(got, *want, "{group}/{kind}");
        assert_eq!(
            has_printer(group, kind),
            !want.contains(&"Created At:date:0"),
            "{group}/{kind}"
        );
    }
}

#[test]
fn column_descriptions_and_wire_form() {
    let pod = columns("", "Pod");
    assert!(
        pod[0]
            .description
            .starts_with("Name must be unique within a namespace.")
    );
    assert!(
        pod[4]
            .description
            .starts_with("CreationTimestamp is a timestamp")
    );
    assert!(
        pod[5].description.contains("IP address"),
        "{}",
        pod[5].description
    );
    assert_eq!(
        pod[1].description,
        "The aggregate readiness state of this pod for accepting traffic."
    );
    // Every field-documented column found its documentation.
    for (group, kind) in [
        ("", "Service"),
        ("apps", "DaemonSet"),
        ("storage.k8s.io", "CSIDriver"),
        ("batch", "CronJob"),
    ] {
        for c in columns(group, kind) {
            assert!(!c.description.is_empty(), "{group}/{kind} {}", c.name);
        }
    }
    let wire = serde_json::to_value(&columns("", "Namespace")[1]).unwrap_or_default();
    assert_eq!(
        wire,
        json!({"name": "Status", "type": "string", "format": "", "description": "The status of the namespace", "priority": 0})
    );
}
