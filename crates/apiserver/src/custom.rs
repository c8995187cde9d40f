//! CustomResourceDefinitions: turning a CRD into served resources (discovery, routing,
//! OpenAPI), establishing it, and validating/pruning custom objects by their structural
//! schema.

use std::collections::HashMap;

use api::catalog::{ResourceInfo, Subresource};
use serde_json::{Value, json};

use crate::errors::{ApiError, ApiResult};
use crate::server::ApiServer;

/// The CRDs currently served, by `<plural>.<group>`.
#[derive(Default)]
pub struct Crds {
    pub by_name: HashMap<String, Value>,
}

fn is_crd(info: &ResourceInfo) -> bool {
    info.group == "apiextensions.k8s.io" && info.kind == "CustomResourceDefinition"
}

/// Fill the server-owned parts of a CRD (accepted names, conditions, stored versions),
/// or prune a custom object to its schema.
pub fn prepare_custom(server: &ApiServer, info: &ResourceInfo, obj: &mut Value) -> ApiResult<()> {
    if is_crd(info) {
        let names = &obj["spec"]["names"];
        let kind = names["kind"].as_str().unwrap_or("").to_string();
        let mut accepted = names.clone();
        if accepted["singular"].as_str().is_none_or(str::is_empty) {
            accepted["singular"] = json!(kind.to_ascii_lowercase());
        }
        if accepted["listKind"].as_str().is_none_or(str::is_empty) {
            accepted["listKind"] = json!(format!("{kind}List"));
        }
        obj["spec"]["names"] = accepted.clone();
        let now = crate::registry::now_rfc3339();
        let stored: Vec<Value> = obj["spec"]["versions"]
            .as_array()
            .map(|vs| {
                vs.iter()
                    .filter(|v| v["storage"] == json!(true))
                    .map(|v| v["name"].clone())
                    .collect()
            })
            .unwrap_or_default();
        let prev_stored = obj["status"]["storedVersions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut all_stored = prev_stored;
        for s in stored {
            if !all_stored.contains(&s) {
                all_stored.push(s);
            }
        }
        let keep_time = |t: &str| -> String {
            obj["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == t))
                .and_then(|c| c["lastTransitionTime"].as_str().map(String::from))
                .unwrap_or_else(|| now.clone())
        };
        obj["status"] = json!({
            "acceptedNames": accepted,
            "storedVersions": all_stored,
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": keep_time("NamesAccepted")},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": keep_time("Established")},
            ],
        });
        return Ok(());
    }
    if info.custom
        && let Some(schema) = schema_of(server, info)
    {
        crate::openapi::prune(&schema, obj);
    }
    Ok(())
}

/// Validate a custom object against its CRD's structural schema.
pub fn validate_custom(server: &ApiServer, info: &ResourceInfo, obj: &Value) -> ApiResult<()> {
    if !info.custom {
        return Ok(());
    }
    let Some(schema) = schema_of(server, info) else {
        return Ok(());
    };
    let errs = crate::openapi::validate_custom_errors(&schema, obj);
    if errs.is_empty() {
        return Ok(());
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let causes = errs
        .into_iter()
        .map(|e| (e.error_type.reason().to_string(), e.message, e.field))
        .collect();
    Err(ApiError::invalid(&info.kind, &info.group, name, causes))
}

fn crd_version<'a>(crd: &'a Value, version: &str) -> Option<&'a Value> {
    crd["spec"]["versions"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == version)
}

fn schema_of(server: &ApiServer, info: &ResourceInfo) -> Option<Value> {
    let crds = server.crds.read().ok()?;
    let crd = crds
        .by_name
        .get(&format!("{}.{}", info.plural, info.group))?;
    let v = crd_version(crd, &info.version)?;
    let s = &v["schema"]["openAPIV3Schema"];
    if s.is_null() { None } else { Some(s.clone()) }
}

/// Resource entries for every served version of a CRD.
pub fn infos_of(crd: &Value) -> Vec<ResourceInfo> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let group = spec["group"].as_str().unwrap_or("").to_string();
    let kind = names["kind"].as_str().unwrap_or("").to_string();
    let plural = names["plural"].as_str().unwrap_or("").to_string();
    let singular = names["singular"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(String::from)
        .unwrap_or_else(|| kind.to_ascii_lowercase());
    let list_kind = names["listKind"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(String::from)
        .unwrap_or_else(|| format!("{kind}List"));
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let mut out = Vec::new();
    for v in spec["versions"].as_array().cloned().unwrap_or_default() {
        if v["served"] != json!(true) {
            continue;
        }
        let version = v["name"].as_str().unwrap_or("").to_string();
        let mut subs = Vec::new();
        if v["subresources"]["status"].is_object() {
            subs.push(Subresource {
                name: "status".into(),
                group: group.clone(),
                version: version.clone(),
                kind: kind.clone(),
                verbs: vec!["get".into(), "patch".into(), "update".into()],
            });
        }
        if v["subresources"]["scale"].is_object() {
            subs.push(Subresource {
                name: "scale".into(),
                group: "autoscaling".into(),
                version: "v1".into(),
                kind: "Scale".into(),
                verbs: vec!["get".into(), "patch".into(), "update".into()],
            });
        }
        out.push(ResourceInfo {
            group: group.clone(),
            version,
            kind: kind.clone(),
            list_kind: list_kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            namespaced,
            short_names: strs(&names["shortNames"]),
            categories: strs(&names["categories"]),
            subresources: subs,
            verbs: api::catalog::ALL_VERBS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            custom: true,
        });
    }
    out
}

/// Start serving (or update) the resources of a CRD.
pub fn register(server: &ApiServer, crd: &Value) {
    let group = crd["spec"]["group"].as_str().unwrap_or("").to_string();
    let plural = crd["spec"]["names"]["plural"]
        .as_str()
        .unwrap_or("")
        .to_string();
    if group.is_empty() || plural.is_empty() {
        return;
    }
    let infos = infos_of(crd);
    if let Ok(mut res) = server.resources.write() {
        res.remove_group_resource(&group, &plural);
        for i in &infos {
            res.insert(i.clone());
        }
    }
    if let Ok(mut crds) = server.crds.write() {
        crds.by_name
            .insert(format!("{plural}.{group}"), crd.clone());
    }
    if let Ok(oa) = server.openapi.write() {
        oa.set_crd(crd);
    }
}

/// Stop serving a CRD's resources.
pub fn unregister(server: &ApiServer, crd: &Value) {
    let group = crd["spec"]["group"].as_str().unwrap_or("").to_string();
    let plural = crd["spec"]["names"]["plural"]
        .as_str()
        .unwrap_or("")
        .to_string();
    if let Ok(mut res) = server.resources.write() {
        res.remove_group_resource(&group, &plural);
    }
    if let Ok(mut crds) = server.crds.write() {
        crds.by_name.remove(&format!("{plural}.{group}"));
    }
    if let Ok(oa) = server.openapi.write() {
        oa.remove_crd(crd);
    }
}

/// Table columns and rows for custom objects (additionalPrinterColumns, else NAME/AGE).
pub fn table(
    server: &ApiServer,
    info: &ResourceInfo,
    objs: &[Value],
    now: chrono::DateTime<chrono::Utc>,
) -> (Vec<Value>, Vec<Vec<Value>>) {
    let columns: Value = server
        .crds
        .read()
        .ok()
        .and_then(|c| {
            c.by_name
                .get(&format!("{}.{}", info.plural, info.group))
                .cloned()
        })
        .and_then(|crd| {
            crd_version(&crd, &info.version).map(|v| v["additionalPrinterColumns"].clone())
        })
        .unwrap_or(Value::Null);
    let (cols, rows) = api::printers::custom_table(&columns, objs, now);
    let defs = cols
        .iter()
        .map(|c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect();
    (defs, rows)
}
