//! Thin adapters between the HTTP layer and the `api` crate's pure logic
//! (validation, defaulting, field sets, selectors, patches, printers), so handlers
//! speak in `ApiError`s.

use std::collections::BTreeMap;

use api::catalog::ResourceInfo;
use serde_json::Value;

use crate::errors::{ApiError, ApiResult};

/// Selectable fields of an object (for field selectors), by its apiVersion/kind.
pub fn fields_of(obj: &Value) -> BTreeMap<String, String> {
    let (group, _) = split_api_version(obj["apiVersion"].as_str().unwrap_or(""));
    let kind = obj["kind"].as_str().unwrap_or("");
    api::fields::object_fields(group, kind, obj)
}

pub fn split_api_version(av: &str) -> (&str, &str) {
    match av.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", av),
    }
}

/// Upstream defaulting for the kind.
pub fn apply_defaults(info: &ResourceInfo, obj: &mut Value) {
    api::validation::apply_defaults(&info.group, &info.version, &info.kind, obj);
}

/// Validate an object (and an update against the old object); 422 on failure.
pub fn validate(info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> ApiResult<()> {
    let errs = api::validation::validate(&info.group, &info.kind, obj, old);
    if errs.is_empty() {
        return Ok(());
    }
    if let Some(e) = errs
        .iter()
        .find(|e| e.kind == api::validation::FieldErrorType::TypeInvalid && e.field.is_empty())
    {
        return Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {}",
            info.kind, info.version, info.kind, e.detail
        )));
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let mut err = ApiError::new(
        422,
        "Invalid",
        api::validation::invalid_message(&info.group, &info.kind, name, &errs),
    );
    let mut details = serde_json::json!({"name": name, "kind": info.kind, "causes": errs.iter().map(|e| e.to_cause()).collect::<Vec<_>>()});
    if !info.group.is_empty() {
        details["group"] = serde_json::json!(info.group);
    }
    err.details = Some(details);
    Err(err)
}

/// A predicate over a string map (labels or selectable fields).
pub type MapPredicate = Box<dyn Fn(&BTreeMap<String, String>) -> bool + Send + Sync>;

/// A label-selector predicate from its string form; 400 on a bad selector.
pub fn label_filter(s: &str) -> ApiResult<MapPredicate> {
    if s.trim().is_empty() {
        return Ok(Box::new(|_| true));
    }
    let sel = api::selector::Selector::parse(s)
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    Ok(Box::new(move |labels| sel.matches(labels)))
}

/// A field-selector predicate for a kind; 400 on a bad selector or unsupported field.
pub fn field_filter(info: &ResourceInfo, s: &str) -> ApiResult<MapPredicate> {
    if s.trim().is_empty() {
        return Ok(Box::new(|_| true));
    }
    let sel =
        api::fields::FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let sel = if info.custom {
        for t in sel.requirements() {
            if t.field != "metadata.name" && t.field != "metadata.namespace" {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {}",
                    t.field
                )));
            }
        }
        sel
    } else {
        sel.convert_for(&info.group, &info.version, &info.kind)
            .map_err(|e| ApiError::bad_request(e.to_string()))?
    };
    Ok(Box::new(move |fields| sel.matches(fields)))
}

/// Record an `Update` operation of `manager` in `managedFields`.
pub fn record_managed_fields(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
) {
    let now = crate::registry::now_rfc3339();
    api::patch::record_managed_fields(old, new, manager, "Update", api_version, None, &now);
}

/// Server-side apply through the `api` crate, mapping conflicts to 409.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    definition: Option<&str>,
    api_version: &str,
    now: &str,
) -> ApiResult<Value> {
    let _ = api_version;
    api::patch::server_side_apply(live, applied, manager, force, definition, now).map_err(|e| {
        match e {
            api::patch::ApplyError::Conflicts(_) => {
                let mut err = ApiError::new(409, "Conflict", e.to_string());
                err.details = Some(serde_json::json!({"causes": []}));
                err
            }
            other => ApiError::bad_request(other.to_string()),
        }
    })
}
