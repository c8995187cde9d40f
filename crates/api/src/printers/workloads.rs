//! Rows of the workload kinds: apps/v1, batch/v1, policy/v1 PodDisruptionBudget and
//! autoscaling/v1 Scale.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::util::{
    age, arr, cell, container_cells, deleting, format_label_selector, format_labels,
    human_duration, int, name, s, selector_string, since, timestamp,
};

/// `spec.replicas`, which upstream defaults to 1.
fn desired_replicas(o: &Value) -> i64 {
    o["spec"]["replicas"].as_i64().unwrap_or(1)
}

pub(super) fn deployment(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = container_cells(&o["spec"]["template"]["spec"]["containers"]);
    let selector =
        selector_string(&o["spec"]["selector"]).unwrap_or_else(|_| "<invalid>".to_string());
    vec![
        cell(name(o)),
        cell(format!(
            "{}/{}",
            int(&o["status"]["readyReplicas"]),
            desired_replicas(o)
        )),
        json!(int(&o["status"]["updatedReplicas"])),
        json!(int(&o["status"]["availableReplicas"])),
        age(o, now),
        names,
        images,
        cell(selector),
    ]
}

pub(super) fn replica_set(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = container_cells(&o["spec"]["template"]["spec"]["containers"]);
    vec![
        cell(name(o)),
        json!(desired_replicas(o)),
        json!(int(&o["status"]["replicas"])),
        json!(int(&o["status"]["readyReplicas"])),
        age(o, now),
        names,
        images,
        cell(format_label_selector(&o["spec"]["selector"])),
    ]
}

pub(super) fn daemon_set(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let status = &o["status"];
    let (names, images) = container_cells(&o["spec"]["template"]["spec"]["containers"]);
    vec![
        cell(name(o)),
        json!(int(&status["desiredNumberScheduled"])),
        json!(int(&status["currentNumberScheduled"])),
        json!(int(&status["numberReady"])),
        json!(int(&status["updatedNumberScheduled"])),
        json!(int(&status["numberAvailable"])),
        cell(format_labels(
            &o["spec"]["template"]["spec"]["nodeSelector"],
        )),
        age(o, now),
        names,
        images,
        cell(format_label_selector(&o["spec"]["selector"])),
    ]
}

pub(super) fn stateful_set(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = container_cells(&o["spec"]["template"]["spec"]["containers"]);
    vec![
        cell(name(o)),
        cell(format!(
            "{}/{}",
            int(&o["status"]["readyReplicas"]),
            desired_replicas(o)
        )),
        age(o, now),
        names,
        images,
    ]
}

/// `kind.group/name` (lower-cased) of the controlling owner, or `<none>`.
fn controller_of(o: &Value) -> String {
    let Some(owner) = arr(&o["metadata"]["ownerReferences"])
        .iter()
        .find(|r| r["controller"].as_bool() == Some(true))
    else {
        return "<none>".to_string();
    };
    let api_version = s(&owner["apiVersion"]);
    // schema.ParseGroupVersion: "v1" has no group, "apps/v1" has group "apps".
    let group = match api_version.split_once('/') {
        Some((g, v)) if !v.contains('/') => g,
        _ => "",
    };
    let kind = s(&owner["kind"]);
    let owner_name = s(&owner["name"]);
    if group.is_empty() && kind.is_empty() {
        return owner_name.to_string();
    }
    let group_kind = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    format!("{}/{owner_name}", group_kind.to_lowercase())
}

pub(super) fn controller_revision(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        cell(name(o)),
        cell(controller_of(o)),
        json!(int(&o["revision"])),
        age(o, now),
    ]
}

/// The first condition of `type_` decides (upstream `hasJobCondition`).
fn job_condition(o: &Value, type_: &str) -> bool {
    arr(&o["status"]["conditions"])
        .iter()
        .find(|c| s(&c["type"]) == type_)
        .is_some_and(|c| s(&c["status"]) == "True")
}

pub(super) fn job(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &o["spec"];
    let status = &o["status"];
    let succeeded = int(&status["succeeded"]);
    let completions = match spec["completions"].as_i64() {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int(&spec["parallelism"]) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (
        timestamp(&status["startTime"]),
        timestamp(&status["completionTime"]),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => since(Some(start), now),
        (Some(start), Some(end)) => human_duration(end.signed_duration_since(start)),
    };
    let state = if job_condition(o, "Complete") {
        "Complete"
    } else if job_condition(o, "Failed") {
        "Failed"
    } else if deleting(o) {
        "Terminating"
    } else if job_condition(o, "Suspended") {
        "Suspended"
    } else if job_condition(o, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = container_cells(&spec["template"]["spec"]["containers"]);
    vec![
        cell(name(o)),
        cell(state),
        cell(completions),
        cell(duration),
        age(o, now),
        names,
        images,
        cell(format_label_selector(&spec["selector"])),
    ]
}

pub(super) fn cron_job(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &o["spec"];
    let last_schedule = match &o["status"]["lastScheduleTime"] {
        Value::Null => "<none>".to_string(),
        t => since(timestamp(t), now),
    };
    let time_zone = spec["timeZone"].as_str().unwrap_or("<none>");
    // Upstream defaults `suspend` to false, and prints the bool as text.
    let suspend = if spec["suspend"].as_bool().unwrap_or(false) {
        "True"
    } else {
        "False"
    };
    let job_spec = &spec["jobTemplate"]["spec"];
    let (names, images) = container_cells(&job_spec["template"]["spec"]["containers"]);
    vec![
        cell(name(o)),
        cell(s(&spec["schedule"])),
        cell(time_zone),
        cell(suspend),
        json!(arr(&o["status"]["active"]).len()),
        cell(last_schedule),
        age(o, now),
        names,
        images,
        cell(format_label_selector(&job_spec["selector"])),
    ]
}

/// An int-or-string field as upstream's `IntOrString.String()` prints it, or `N/A`.
fn int_or_string(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::String(x) => x.clone(),
        _ => "N/A".to_string(),
    }
}

pub(super) fn pod_disruption_budget(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        cell(name(o)),
        cell(int_or_string(&o["spec"]["minAvailable"])),
        cell(int_or_string(&o["spec"]["maxUnavailable"])),
        json!(int(&o["status"]["disruptionsAllowed"])),
        age(o, now),
    ]
}

pub(super) fn scale(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        cell(name(o)),
        json!(int(&o["spec"]["replicas"])),
        json!(int(&o["status"]["replicas"])),
        age(o, now),
    ]
}
