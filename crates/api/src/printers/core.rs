//! Rows of the core/v1 kinds (and `events.k8s.io/v1` Event, which upstream prints with
//! the core event printer).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::quantity_text::quantity_string;
use super::util::{
    access_modes, age, arr, cell, container_cells, deleting, format_labels, int, join_host_port,
    name, obj, obj_len, s, s_or, since, timestamp,
};

/// Whether the init container named `name` is a sidecar (`restartPolicy: Always`).
fn restartable_init(pod: &Value, name: &str) -> bool {
    arr(&pod["spec"]["initContainers"])
        .iter()
        .find(|c| s(&c["name"]) == name)
        .is_some_and(|c| s(&c["restartPolicy"]) == "Always")
}

fn condition_true(conditions: &Value, type_: &str) -> bool {
    arr(conditions)
        .iter()
        .any(|c| s(&c["type"]) == type_ && s(&c["status"]) == "True")
}

/// Keeps the later of `latest` and the container's last termination time.
fn note_termination(latest: &mut Option<DateTime<Utc>>, status: &Value) {
    if let Some(t) = timestamp(&status["lastState"]["terminated"]["finishedAt"])
        && latest.is_none_or(|l| l < t)
    {
        *latest = Some(t);
    }
}

/// Reason text for a terminated container state without a reason.
fn exit_text(terminated: &Value) -> String {
    let signal = int(&terminated["signal"]);
    if signal != 0 {
        format!("Signal:{signal}")
    } else {
        format!("ExitCode:{}", int(&terminated["exitCode"]))
    }
}

/// The pod STATUS column, READY counts and RESTARTS text, computed like upstream's `printPod`.
pub(super) fn pod(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &o["spec"];
    let status = &o["status"];
    let init_specs = arr(&spec["initContainers"]);
    let mut total = arr(&spec["containers"]).len();
    total += init_specs
        .iter()
        .filter(|c| s(&c["restartPolicy"]) == "Always")
        .count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_sidecar_restart: Option<DateTime<Utc>> = None;

    let phase = s(&status["phase"]);
    let mut reason = s_or(&status["reason"], phase).to_string();
    if arr(&status["conditions"])
        .iter()
        .any(|c| s(&c["type"]) == "PodScheduled" && s(&c["reason"]) == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let mut initializing = false;
    for (i, cs) in arr(&status["initContainerStatuses"]).iter().enumerate() {
        restarts += int(&cs["restartCount"]);
        note_termination(&mut last_restart, cs);
        let sidecar = restartable_init(o, s(&cs["name"]));
        if sidecar {
            sidecar_restarts += int(&cs["restartCount"]);
            note_termination(&mut last_sidecar_restart, cs);
        }
        let terminated = &cs["state"]["terminated"];
        let waiting = &cs["state"]["waiting"];
        if !terminated.is_null() && int(&terminated["exitCode"]) == 0 {
            continue;
        }
        if sidecar && cs["started"].as_bool() == Some(true) {
            if cs["ready"].as_bool() == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if !terminated.is_null() {
            match s(&terminated["reason"]) {
                "" => format!("Init:{}", exit_text(terminated)),
                r => format!("Init:{r}"),
            }
        } else if !waiting.is_null()
            && !s(&waiting["reason"]).is_empty()
            && s(&waiting["reason"]) != "PodInitializing"
        {
            format!("Init:{}", s(&waiting["reason"]))
        } else {
            format!("Init:{}/{}", i, init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || pod_initialized(status) {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for cs in arr(&status["containerStatuses"]).iter().rev() {
            restarts += int(&cs["restartCount"]);
            note_termination(&mut last_restart, cs);
            let waiting = &cs["state"]["waiting"];
            let terminated = &cs["state"]["terminated"];
            if !waiting.is_null() && !s(&waiting["reason"]).is_empty() {
                reason = s(&waiting["reason"]).to_string();
            } else if !terminated.is_null() && !s(&terminated["reason"]).is_empty() {
                reason = s(&terminated["reason"]).to_string();
            } else if !terminated.is_null() {
                reason = exit_text(terminated);
            } else if cs["ready"].as_bool() == Some(true) && !cs["state"]["running"].is_null() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(&status["conditions"], "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .to_string();
        }
    }

    if deleting(o) && s(&status["reason"]) == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting(o) && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_text = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), now)),
        _ => restarts.to_string(),
    };

    let pod_ip = arr(&status["podIPs"])
        .first()
        .map(|p| s(&p["ip"]))
        .unwrap_or_else(|| s(&status["podIP"]));
    let gates = arr(&spec["readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let passed = gates
            .iter()
            .filter(|g| {
                arr(&status["conditions"])
                    .iter()
                    .find(|c| s(&c["type"]) == s(&g["conditionType"]))
                    .is_some_and(|c| s(&c["status"]) == "True")
            })
            .count();
        format!("{passed}/{}", gates.len())
    };
    let or_none = |x: &str| cell(if x.is_empty() { "<none>" } else { x });
    vec![
        cell(name(o)),
        cell(format!("{ready}/{total}")),
        cell(reason),
        cell(restarts_text),
        age(o, now),
        or_none(pod_ip),
        or_none(s(&spec["nodeName"])),
        or_none(s(&status["nominatedNodeName"])),
        cell(readiness_gates),
    ]
}

fn pod_initialized(status: &Value) -> bool {
    arr(&status["conditions"])
        .iter()
        .find(|c| s(&c["type"]) == "Initialized")
        .is_some_and(|c| s(&c["status"]) == "True")
}

/// Row conditions upstream attaches to pod rows (`Completed` for finished pods).
pub(super) fn pod_conditions(o: &Value) -> Vec<Value> {
    let (reason, message) = match s(&o["status"]["phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return Vec::new(),
    };
    vec![json!({"type": "Completed", "status": "True", "reason": reason, "message": message})]
}

pub(super) fn pod_template(o: &Value) -> Vec<Value> {
    let (names, images) = container_cells(&o["template"]["spec"]["containers"]);
    vec![
        cell(name(o)),
        names,
        images,
        cell(format_labels(&o["template"]["metadata"]["labels"])),
    ]
}

pub(super) fn replication_controller(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = container_cells(&o["spec"]["template"]["spec"]["containers"]);
    vec![
        cell(name(o)),
        json!(o["spec"]["replicas"].as_i64().unwrap_or(1)),
        json!(int(&o["status"]["replicas"])),
        json!(int(&o["status"]["readyReplicas"])),
        age(o, now),
        names,
        images,
        cell(format_labels(&o["spec"]["selector"])),
    ]
}

/// Upstream's load-balancer ingress text: sorted unique IPs/hostnames. The server always
/// prints "wide", so the 16-character clipping of client-side printing never applies.
pub(super) fn load_balancer_text(ingress: &Value) -> String {
    let mut set: Vec<&str> = arr(ingress)
        .iter()
        .filter_map(|i| match (s(&i["ip"]), s(&i["hostname"])) {
            ("", "") => None,
            ("", host) => Some(host),
            (ip, _) => Some(ip),
        })
        .collect();
    set.sort_unstable();
    set.dedup();
    set.join(",")
}

fn service_external_ip(o: &Value, type_: &str) -> String {
    let external: Vec<&str> = arr(&o["spec"]["externalIPs"]).iter().map(s).collect();
    match type_ {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() {
                "<none>".to_string()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let lb = load_balancer_text(&o["status"]["loadBalancer"]["ingress"]);
            if !external.is_empty() {
                let mut all: Vec<&str> = if lb.is_empty() {
                    Vec::new()
                } else {
                    lb.split(',').collect()
                };
                all.extend(external);
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => s(&o["spec"]["externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

pub(super) fn service(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &o["spec"];
    let type_ = s_or(&spec["type"], "ClusterIP");
    let cluster_ip = arr(&spec["clusterIPs"])
        .first()
        .map(s)
        .unwrap_or_else(|| s(&spec["clusterIP"]));
    let ports: Vec<String> = arr(&spec["ports"])
        .iter()
        .map(|p| {
            let protocol = s_or(&p["protocol"], "TCP");
            let node_port = int(&p["nodePort"]);
            if node_port > 0 {
                format!("{}:{node_port}/{protocol}", int(&p["port"]))
            } else {
                format!("{}/{protocol}", int(&p["port"]))
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    vec![
        cell(name(o)),
        cell(type_),
        cell(if cluster_ip.is_empty() {
            "<none>"
        } else {
            cluster_ip
        }),
        cell(service_external_ip(o, type_)),
        cell(ports),
        age(o, now),
        cell(format_labels(&spec["selector"])),
    ]
}

/// Upstream `formatEndpoints`: up to three `ip:port` entries, then ` + N more...`.
fn format_endpoints(o: &Value) -> String {
    let subsets = arr(&o["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addresses = arr(&ss["addresses"]);
        let ports = arr(&ss["ports"]);
        if ports.is_empty() {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(s(&a["ip"]).to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(s(&a["ip"]), int(&port["port"])));
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

pub(super) fn endpoints(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![cell(name(o)), cell(format_endpoints(o)), age(o, now)]
}

/// Node roles from `node-role.kubernetes.io/<role>` keys and `kubernetes.io/role` values.
fn node_roles(o: &Value) -> String {
    let mut roles: Vec<&str> = Vec::new();
    if let Some(labels) = obj(&o["metadata"]["labels"]) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role);
                }
            } else if k == "kubernetes.io/role" && !s(v).is_empty() {
                roles.push(s(v));
            }
        }
    }
    roles.sort_unstable();
    roles.dedup();
    if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    }
}

fn node_address(o: &Value, type_: &str) -> String {
    arr(&o["status"]["addresses"])
        .iter()
        .find(|a| s(&a["type"]) == type_)
        .map_or_else(|| "<none>".to_string(), |a| s(&a["address"]).to_string())
}

pub(super) fn node(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // Upstream keys conditions by type (the last one of a type wins) and looks only at Ready.
    let ready = arr(&o["status"]["conditions"])
        .iter()
        .rev()
        .find(|c| s(&c["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if s(&c["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if o["spec"]["unschedulable"].as_bool() == Some(true) {
        status.push("SchedulingDisabled");
    }
    let info = &o["status"]["nodeInfo"];
    let unknown = |v: &Value| cell(s_or(v, "<unknown>"));
    vec![
        cell(name(o)),
        cell(status.join(",")),
        cell(node_roles(o)),
        age(o, now),
        cell(s(&info["kubeletVersion"])),
        cell(node_address(o, "InternalIP")),
        cell(node_address(o, "ExternalIP")),
        unknown(&info["osImage"]),
        unknown(&info["kernelVersion"]),
        unknown(&info["containerRuntimeVersion"]),
    ]
}

/// Field names of an event in its two API versions.
struct EventFields {
    regarding: &'static str,
    message: &'static str,
    source: &'static str,
    first: &'static str,
    last: &'static str,
    count: &'static str,
}

const CORE_EVENT: EventFields = EventFields {
    regarding: "involvedObject",
    message: "message",
    source: "source",
    first: "firstTimestamp",
    last: "lastTimestamp",
    count: "count",
};

const EVENTS_V1_EVENT: EventFields = EventFields {
    regarding: "regarding",
    message: "note",
    source: "deprecatedSource",
    first: "deprecatedFirstTimestamp",
    last: "deprecatedLastTimestamp",
    count: "deprecatedCount",
};

/// An event row; `events_v1` selects the `events.k8s.io/v1` field names.
pub(super) fn event(o: &Value, now: DateTime<Utc>, events_v1: bool) -> Vec<Value> {
    let f = if events_v1 {
        &EVENTS_V1_EVENT
    } else {
        &CORE_EVENT
    };
    let first = match timestamp(&o[f.first]) {
        Some(t) => since(Some(t), now),
        None => since(timestamp(&o["eventTime"]), now),
    };
    let mut last = match timestamp(&o[f.last]) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = int(&o[f.count]);
    let series = &o["series"];
    if !series.is_null() {
        last = since(timestamp(&series["lastObservedTime"]), now);
        count = int(&series["count"]);
    } else if count == 0 {
        count = 1;
    }
    let regarding = &o[f.regarding];
    let kind = s(&regarding["kind"]).to_lowercase();
    let target = match s(&regarding["name"]) {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let source = &o[f.source];
    let component = s_or(&source["component"], s(&o["reportingController"]));
    let host = s_or(&source["host"], s(&o["reportingInstance"]));
    let source_text = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    vec![
        cell(last),
        cell(s(&o["type"])),
        cell(s(&o["reason"])),
        cell(target),
        cell(s(&regarding["fieldPath"])),
        cell(source_text),
        cell(s(&o[f.message]).trim()),
        cell(first),
        json!(count),
        cell(name(o)),
    ]
}

pub(super) fn namespace(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        cell(name(o)),
        cell(s_or(&o["status"]["phase"], "Active")),
        age(o, now),
    ]
}

pub(super) fn secret(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        cell(name(o)),
        cell(s_or(&o["type"], "Opaque")),
        json!(obj_len(&o["data"])),
        age(o, now),
    ]
}

pub(super) fn service_account(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![cell(name(o)), json!(arr(&o["secrets"]).len()), age(o, now)]
}

pub(super) fn config_map(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        cell(name(o)),
        json!(obj_len(&o["data"]) + obj_len(&o["binaryData"])),
        age(o, now),
    ]
}

/// An optional string field: its value when set (even empty), else `<unset>`.
fn optional_or_unset(v: &Value) -> &str {
    v.as_str().unwrap_or("<unset>")
}

const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

pub(super) fn persistent_volume(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &o["spec"];
    let claim = &spec["claimRef"];
    let claim_text = if claim.is_null() {
        String::new()
    } else {
        format!("{}/{}", s(&claim["namespace"]), s(&claim["name"]))
    };
    let phase = if deleting(o) {
        "Terminating"
    } else {
        s_or(&o["status"]["phase"], "Pending")
    };
    let class = match &o["metadata"]["annotations"][BETA_STORAGE_CLASS] {
        Value::String(c) => c.as_str(),
        _ => s(&spec["storageClassName"]),
    };
    vec![
        cell(name(o)),
        cell(quantity_string(&spec["capacity"]["storage"])),
        cell(access_modes(&spec["accessModes"])),
        cell(s_or(&spec["persistentVolumeReclaimPolicy"], "Retain")),
        cell(phase),
        cell(claim_text),
        cell(class),
        cell(optional_or_unset(&spec["volumeAttributesClassName"])),
        cell(s(&o["status"]["reason"])),
        age(o, now),
        cell(s_or(&spec["volumeMode"], "Filesystem")),
    ]
}

pub(super) fn persistent_volume_claim(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &o["spec"];
    let phase = if deleting(o) {
        "Terminating"
    } else {
        s_or(&o["status"]["phase"], "Pending")
    };
    let volume = s(&spec["volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity_string(&o["status"]["capacity"]["storage"]),
            access_modes(&o["status"]["accessModes"]),
        )
    };
    let class = match &o["metadata"]["annotations"][BETA_STORAGE_CLASS] {
        Value::String(c) => c.as_str(),
        _ => s(&spec["storageClassName"]),
    };
    vec![
        cell(name(o)),
        cell(phase),
        cell(volume),
        cell(capacity),
        cell(modes),
        cell(class),
        cell(optional_or_unset(&spec["volumeAttributesClassName"])),
        age(o, now),
        cell(s_or(&spec["volumeMode"], "Filesystem")),
    ]
}

pub(super) fn resource_quota(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let hard = &o["status"]["hard"];
    let used = &o["status"]["used"];
    let mut resources: Vec<&String> = obj(hard).map(|m| m.keys().collect()).unwrap_or_default();
    resources.sort();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for r in resources {
        let text = format!(
            "{r}: {}/{}",
            quantity_string(&used[r.as_str()]),
            quantity_string(&hard[r.as_str()])
        );
        let mut pieces = r.split('.');
        if pieces.next() == Some("limits") && pieces.next().is_some() {
            limits.push(text);
        } else {
            requests.push(text);
        }
    }
    vec![
        cell(name(o)),
        cell(requests.join(", ")),
        cell(limits.join(", ")),
        age(o, now),
    ]
}
