//! Resource-specific behaviour, kept out of the generic registry: what a create resets,
//! which kinds keep a `generation`, what the status subresource may change, and the
//! small amount of server-side allocation (Service cluster IPs) upstream does in its
//! registries. Validation and defaulting themselves live in `api::validation`.

use api::catalog::ResourceInfo;
use serde_json::{Value, json};

/// Kinds whose `metadata.generation` is maintained (bumped on spec changes).
pub fn keeps_generation(info: &ResourceInfo) -> bool {
    if info.custom {
        return true;
    }
    matches!(
        (info.group.as_str(), info.kind.as_str()),
        ("apps", _)
            | ("batch", _)
            | ("policy", "PodDisruptionBudget")
            | (
                "networking.k8s.io",
                "NetworkPolicy" | "Ingress" | "IngressClass"
            )
            | ("apiextensions.k8s.io", "CustomResourceDefinition")
            | ("", "ReplicationController")
    )
}

pub fn has_status_subresource(info: &ResourceInfo) -> bool {
    info.subresource("status").is_some()
}

/// The parts of an object that count as its "spec" for generation purposes:
/// everything except metadata and status.
pub fn spec_part(obj: &Value) -> Value {
    let mut o = obj.as_object().cloned().unwrap_or_default();
    o.remove("metadata");
    o.remove("status");
    o.remove("apiVersion");
    o.remove("kind");
    Value::Object(o)
}

/// Reset what a create may not set (upstream PrepareForCreate).
pub fn prepare_create(info: &ResourceInfo, obj: &mut Value) {
    if keeps_generation(info) {
        obj["metadata"]["generation"] = json!(1);
    }
    let kind = (info.group.as_str(), info.kind.as_str());
    match kind {
        ("", "Pod") => {
            let qos = qos_class(obj);
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        ("", "Namespace") => {
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "Service") => {
            obj["status"] = json!({"loadBalancer": {}});
        }
        ("", "PersistentVolume") | ("", "PersistentVolumeClaim") => {
            obj["status"] = json!({"phase": "Pending"});
        }
        // Nodes (registered by kubelets) and custom resources without a status
        // subresource may set their status on create.
        ("", "Node") => {}
        _ => {
            if has_status_subresource(info)
                && let Some(o) = obj.as_object_mut()
            {
                o.remove("status");
            }
        }
    }
}

/// Apply a main-resource update on top of `old` (upstream PrepareForUpdate): status is
/// kept from the old object when a status subresource exists; generation bumps when
/// the spec changed.
pub fn prepare_update(info: &ResourceInfo, new: &mut Value, old: &Value) {
    if has_status_subresource(info) {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    bump_generation(info, new, old);
}

pub fn bump_generation(info: &ResourceInfo, new: &mut Value, old: &Value) {
    if !keeps_generation(info) {
        return;
    }
    let old_gen = old["metadata"]["generation"].as_i64().unwrap_or(1);
    let changed = if has_status_subresource(info) {
        spec_part(new) != spec_part(old)
    } else {
        let mut a = new.clone();
        let mut b = old.clone();
        for v in [&mut a, &mut b] {
            if let Some(o) = v.as_object_mut() {
                o.remove("metadata");
            }
        }
        a != b
    };
    new["metadata"]["generation"] = json!(if changed { old_gen + 1 } else { old_gen });
}

/// A status-subresource write: only `status` changes (upstream
/// ResetObjectMetaForStatus + spec reset).
pub fn prepare_status_update(new: &Value, old: &Value) -> Value {
    let mut out = old.clone();
    match new.get("status") {
        Some(s) => out["status"] = s.clone(),
        None => {
            if let Some(o) = out.as_object_mut() {
                o.remove("status");
            }
        }
    }
    // Upstream lets a status write carry metadata.resourceVersion for concurrency only.
    out
}

/// The QoS class upstream computes for a pod (Guaranteed, Burstable, BestEffort).
pub fn qos_class(pod: &Value) -> &'static str {
    let spec = &pod["spec"];
    let mut containers: Vec<&Value> = Vec::new();
    for field in ["initContainers", "containers"] {
        if let Some(cs) = spec[field].as_array() {
            containers.extend(cs.iter());
        }
    }
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let req = c["resources"]["requests"].as_object();
        let lim = c["resources"]["limits"].as_object();
        for res in ["cpu", "memory"] {
            let r = req.and_then(|m| m.get(res));
            let l = lim.and_then(|m| m.get(res));
            if r.is_some() || l.is_some() {
                any = true;
            }
            match (r, l) {
                (_, None) => guaranteed = false,
                (Some(r), Some(l)) if r != l => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed && !containers.is_empty() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_classes() {
        let be = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(qos_class(&be), "BestEffort");
        let g = json!({"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}});
        assert_eq!(qos_class(&b), "Burstable");
    }

    #[test]
    fn generation_bumps_only_on_spec_change() {
        let info = api::catalog::builtin()
            .into_iter()
            .find(|r| r.kind == "Deployment")
            .unwrap();
        let old = json!({"metadata": {"generation": 3}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut same =
            json!({"metadata": {"generation": 3, "labels": {"a": "b"}}, "spec": {"replicas": 1}});
        prepare_update(&info, &mut same, &old);
        assert_eq!(same["metadata"]["generation"], 3);
        assert_eq!(same["status"]["replicas"], 1);
        let mut changed = json!({"metadata": {"generation": 3}, "spec": {"replicas": 2}});
        prepare_update(&info, &mut changed, &old);
        assert_eq!(changed["metadata"]["generation"], 4);
    }
}
