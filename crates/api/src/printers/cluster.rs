//! Rows of the networking, discovery, coordination, RBAC, scheduling and storage kinds,
//! and of upstream's default table (Name, Created At).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::core::load_balancer_text;
use super::quantity_text::quantity_string;
use super::util::{
    age, arr, cell, format_label_selector, int, list_with_more, name, s, s_or, timestamp, zero_time,
};

pub(super) fn lease(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        cell(name(o)),
        cell(s(&o["spec"]["holderIdentity"])),
        age(o, now),
    ]
}

pub(super) fn endpoint_slice(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    const MAX: usize = 3;
    let ports = arr(&o["ports"]);
    let port_list: Vec<String> = ports
        .iter()
        .take(MAX)
        .map(|p| match (&p["port"], &p["name"]) {
            (Value::Number(n), _) => n.to_string(),
            (_, Value::String(n)) => n.clone(),
            _ => "*".to_string(),
        })
        .collect();
    let ports_text = list_with_more(&port_list, ports.len() > MAX, ports.len(), MAX);

    let addresses: Vec<&Value> = arr(&o["endpoints"])
        .iter()
        .flat_map(|e| arr(&e["addresses"]))
        .collect();
    let address_list: Vec<String> = addresses
        .iter()
        .take(MAX)
        .map(|a| s(a).to_string())
        .collect();
    let endpoints_text = list_with_more(&address_list, addresses.len() > MAX, addresses.len(), MAX);

    vec![
        cell(name(o)),
        cell(s(&o["addressType"])),
        cell(ports_text),
        cell(endpoints_text),
        age(o, now),
    ]
}

/// Upstream `formatHosts`: up to three hosts, `*` when none.
fn ingress_hosts(rules: &Value) -> String {
    const MAX: usize = 3;
    let rules = arr(rules);
    let mut list: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == MAX {
            more = true;
        }
        if !more && !s(&rule["host"]).is_empty() {
            list.push(s(&rule["host"]));
        }
    }
    if list.is_empty() {
        return "*".to_string();
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - MAX)
    } else {
        joined
    }
}

pub(super) fn ingress(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &o["spec"];
    let class = spec["ingressClassName"].as_str().unwrap_or("<none>");
    let ports = if arr(&spec["tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        cell(name(o)),
        cell(class),
        cell(ingress_hosts(&spec["rules"])),
        cell(load_balancer_text(&o["status"]["loadBalancer"]["ingress"])),
        cell(ports),
        age(o, now),
    ]
}

pub(super) fn ingress_class(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let params = &o["spec"]["parameters"];
    let parameters = if params.is_null() {
        "<none>".to_string()
    } else {
        let kind = match params["apiGroup"].as_str() {
            Some(group) => format!("{}.{group}", s(&params["kind"])),
            None => s(&params["kind"]).to_string(),
        };
        format!("{kind}/{}", s(&params["name"]))
    };
    vec![
        cell(name(o)),
        cell(s(&o["spec"]["controller"])),
        cell(parameters),
        age(o, now),
    ]
}

pub(super) fn network_policy(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // The pod selector is a non-pointer field upstream: absent reads as empty, i.e. `<none>`.
    let selector = match &o["spec"]["podSelector"] {
        Value::Null => json!({}),
        sel => sel.clone(),
    };
    vec![
        cell(name(o)),
        cell(format_label_selector(&selector)),
        age(o, now),
    ]
}

/// Upstream's IPAddress printer emits an Age cell beyond its two declared columns; kept.
pub(super) fn ip_address(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let parent = &o["spec"]["parentRef"];
    let parent_text = if parent.is_null() {
        "<none>".to_string()
    } else {
        let resource = s(&parent["resource"]);
        let group_resource = match s(&parent["group"]) {
            "" => resource.to_string(),
            group => format!("{resource}.{group}"),
        };
        let mut text = group_resource.to_lowercase();
        if !s(&parent["namespace"]).is_empty() {
            text.push('/');
            text.push_str(s(&parent["namespace"]));
        }
        text.push('/');
        text.push_str(s(&parent["name"]));
        text
    };
    vec![cell(name(o)), cell(parent_text), age(o, now)]
}

pub(super) fn service_cidr(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let cidrs: Vec<&str> = arr(&o["spec"]["cidrs"]).iter().map(s).collect();
    vec![cell(name(o)), cell(cidrs.join(",")), age(o, now)]
}

/// Role bindings and cluster role bindings share a row layout.
pub(super) fn role_binding(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let role_ref = &o["roleRef"];
    let (mut users, mut groups, mut service_accounts) = (Vec::new(), Vec::new(), Vec::new());
    for subject in arr(&o["subjects"]) {
        match s(&subject["kind"]) {
            "ServiceAccount" => service_accounts.push(format!(
                "{}/{}",
                s(&subject["namespace"]),
                s(&subject["name"])
            )),
            "User" => users.push(s(&subject["name"]).to_string()),
            "Group" => groups.push(s(&subject["name"]).to_string()),
            _ => {}
        }
    }
    vec![
        cell(name(o)),
        cell(format!("{}/{}", s(&role_ref["kind"]), s(&role_ref["name"]))),
        age(o, now),
        cell(users.join(", ")),
        cell(groups.join(", ")),
        cell(service_accounts.join(", ")),
    ]
}

pub(super) fn priority_class(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        cell(name(o)),
        json!(int(&o["value"])),
        json!(o["globalDefault"].as_bool().unwrap_or(false)),
        age(o, now),
        // Upstream defaults the policy to PreemptLowerPriority.
        cell(s_or(&o["preemptionPolicy"], "PreemptLowerPriority")),
    ]
}

fn is_default_class(o: &Value) -> bool {
    let annotations = &o["metadata"]["annotations"];
    s(&annotations["storageclass.kubernetes.io/is-default-class"]) == "true"
        || s(&annotations["storageclass.beta.kubernetes.io/is-default-class"]) == "true"
}

pub(super) fn storage_class(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut display = name(o).to_string();
    if is_default_class(o) {
        display.push_str(" (default)");
    }
    vec![
        cell(display),
        cell(s(&o["provisioner"])),
        cell(s_or(&o["reclaimPolicy"], "Delete")),
        cell(s_or(&o["volumeBindingMode"], "Immediate")),
        json!(o["allowVolumeExpansion"].as_bool().unwrap_or(false)),
        age(o, now),
    ]
}

pub(super) fn csi_driver(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &o["spec"];
    let flag = |field: &str, default: bool| json!(spec[field].as_bool().unwrap_or(default));
    let token_requests = match &spec["tokenRequests"] {
        Value::Array(list) => list
            .iter()
            .map(|t| s(&t["audience"]))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<unset>".to_string(),
    };
    // Upstream defaults the lifecycle modes to [Persistent].
    let modes: Vec<&str> = arr(&spec["volumeLifecycleModes"]).iter().map(s).collect();
    let modes = if modes.is_empty() {
        "Persistent".to_string()
    } else {
        modes.join(",")
    };
    vec![
        cell(name(o)),
        flag("attachRequired", true),
        flag("podInfoOnMount", false),
        flag("storageCapacity", false),
        cell(token_requests),
        flag("requiresRepublish", false),
        cell(modes),
        age(o, now),
    ]
}

pub(super) fn csi_node(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        cell(name(o)),
        json!(arr(&o["spec"]["drivers"]).len()),
        age(o, now),
    ]
}

pub(super) fn volume_attachment(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &o["spec"];
    vec![
        cell(name(o)),
        cell(s(&spec["attacher"])),
        cell(s(&spec["source"]["persistentVolumeName"])),
        cell(s(&spec["nodeName"])),
        json!(o["status"]["attached"].as_bool().unwrap_or(false)),
        age(o, now),
    ]
}

pub(super) fn csi_storage_capacity(o: &Value) -> Vec<Value> {
    let capacity = match &o["capacity"] {
        Value::Null => "<unset>".to_string(),
        q => quantity_string(q),
    };
    vec![
        cell(name(o)),
        cell(s(&o["storageClassName"])),
        cell(capacity),
    ]
}

/// Upstream's default table row: the name and the creation time in RFC 3339 (UTC).
pub(super) fn default_row(o: &Value) -> Vec<Value> {
    let created = timestamp(&o["metadata"]["creationTimestamp"]).unwrap_or_else(zero_time);
    vec![
        cell(name(o)),
        cell(created.to_rfc3339_opts(SecondsFormat::Secs, true)),
    ]
}
