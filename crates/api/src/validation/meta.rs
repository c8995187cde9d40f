//! ObjectMeta, label, annotation and label-selector validation shared by every kind.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use serde_json::{Value, json};

use super::{Errs, FieldError, Path, decode, non_negative, same};
use crate::names::{self, NameRule};
use crate::selector::go_string_slice;

/// How a kind's metadata is checked.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MetaRules {
    pub(crate) name: NameRule,
    /// `Some(true)` for namespaced kinds, `Some(false)` for cluster-scoped ones, `None`
    /// when unknown (custom resources): then only a given namespace's format is checked.
    pub(crate) namespaced: Option<bool>,
    /// Built-in kinds also reject unqualified finalizers that are not standard ones.
    pub(crate) kube_finalizers: bool,
}

impl MetaRules {
    pub(crate) fn for_kind(group: &str, kind: &str) -> MetaRules {
        let namespaced = scope(group, kind);
        MetaRules {
            name: names::name_rule(group, kind),
            namespaced,
            kube_finalizers: namespaced.is_some(),
        }
    }
}

/// Scope of a built-in kind from the resource catalogue.
fn scope(group: &str, kind: &str) -> Option<bool> {
    static SCOPES: OnceLock<HashMap<(String, String), bool>> = OnceLock::new();
    SCOPES
        .get_or_init(|| {
            crate::catalog::builtin()
                .into_iter()
                .map(|r| ((r.group, r.kind), r.namespaced))
                .collect()
        })
        .get(&(group.to_string(), kind.to_string()))
        .copied()
}

/// Label keys and values (`metadata.labels`, `spec.selector`, node selectors...).
/// Upstream reports every problem at the map's path, without the key.
pub fn validate_labels(labels: Option<&BTreeMap<String, String>>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels.into_iter().flatten() {
        for msg in names::is_qualified_name(k) {
            errs.push(FieldError::invalid(path, k.as_str(), msg));
        }
        for msg in names::is_valid_label_value(v) {
            errs.push(FieldError::invalid(path, v.as_str(), msg));
        }
    }
    errs
}

/// Annotation keys (qualified names, case-insensitive) and the total size limit.
pub fn validate_annotations(
    annotations: Option<&BTreeMap<String, String>>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(annotations) = annotations else {
        return errs;
    };
    for k in annotations.keys() {
        for msg in names::is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, k.as_str(), msg));
        }
    }
    if names::annotations_size(annotations) > names::TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(
            path,
            names::TOTAL_ANNOTATION_SIZE_LIMIT,
        ));
    }
    errs
}

/// A `metav1.LabelSelector` (upstream's `ValidateLabelSelector`, strict values).
pub fn validate_label_selector(selector: Option<&LabelSelector>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(selector) = selector else {
        return errs;
    };
    let path = Path::new(path);
    errs.extend(validate_labels(
        selector.match_labels.as_ref(),
        path.child("matchLabels").as_str(),
    ));
    for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let values = expr.values.as_deref().unwrap_or_default();
        match expr.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        p.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        p.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                p.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        for msg in names::is_qualified_name(&expr.key) {
            errs.push(FieldError::invalid(p.child("key"), expr.key.as_str(), msg));
        }
        for (j, v) in values.iter().enumerate() {
            for msg in names::is_valid_label_value(v) {
                errs.push(FieldError::invalid(
                    p.child("values").index(j),
                    v.as_str(),
                    msg,
                ));
            }
        }
    }
    errs
}

fn validate_owner_references(refs: &[OwnerReference], path: &Path, errs: &mut Errs) {
    let mut first_controller: Option<String> = None;
    for r in refs {
        let (group, version) = match r.api_version.split('/').collect::<Vec<_>>().as_slice() {
            [""] => (String::new(), String::new()),
            [v] => (String::new(), v.to_string()),
            [g, v] => (g.to_string(), v.to_string()),
            _ => (String::new(), String::new()),
        };
        if version.is_empty() {
            errs.push(FieldError::invalid(
                path.child("apiVersion"),
                r.api_version.as_str(),
                "version must not be empty",
            ));
        }
        if r.kind.is_empty() {
            errs.push(FieldError::invalid(
                path.child("kind"),
                r.kind.as_str(),
                "kind must not be empty",
            ));
        }
        if r.name.is_empty() {
            errs.push(FieldError::invalid(
                path.child("name"),
                r.name.as_str(),
                "name must not be empty",
            ));
        }
        if r.uid.is_empty() {
            errs.push(FieldError::invalid(
                path.child("uid"),
                r.uid.as_str(),
                "uid must not be empty",
            ));
        }
        if group.is_empty() && version == "v1" && r.kind == "Event" {
            let value = serde_json::to_value(r).unwrap_or(Value::Null);
            errs.push(FieldError::invalid(
                path,
                value,
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if r.controller == Some(true) {
            let current = format!("{}/{}", r.kind, r.name);
            match &first_controller {
                Some(first) => {
                    let value = serde_json::to_value(refs).unwrap_or(Value::Null);
                    errs.push(FieldError::invalid(
                        path,
                        value,
                        format!(
                            "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"
                        ),
                    ));
                }
                None => first_controller = Some(current),
            }
        }
    }
}

fn validate_finalizers(finalizers: &[String], path: &Path, kube: bool, errs: &mut Errs) {
    for f in finalizers {
        for msg in names::is_qualified_name(f) {
            errs.push(FieldError::invalid(path, f.as_str(), msg));
        }
    }
    if finalizers.iter().any(|f| f == "orphan")
        && finalizers.iter().any(|f| f == "foregroundDeletion")
    {
        errs.push(FieldError::invalid(
            path,
            json!(finalizers),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    if kube {
        for (i, f) in finalizers.iter().enumerate() {
            validate_kube_finalizer(f, &path.index(i), errs);
        }
    }
}

/// Unqualified finalizer names must be one of the standard ones.
pub(crate) fn validate_kube_finalizer(name: &str, path: &Path, errs: &mut Errs) {
    if !name.contains('/') && !matches!(name, "kubernetes" | "orphan" | "foregroundDeletion") {
        errs.push(FieldError::invalid(
            path,
            name,
            "name is neither a standard finalizer name nor is it fully qualified",
        ));
    }
}

fn validate_managed_fields(meta: &ObjectMeta, path: &Path, errs: &mut Errs) {
    for (i, entry) in meta.managed_fields.iter().flatten().enumerate() {
        let p = path.index(i);
        let op = entry.operation.as_deref().unwrap_or("");
        if !matches!(op, "Apply" | "Update") {
            errs.push(FieldError::invalid(
                p.child("operation"),
                op,
                "must be `Apply` or `Update`",
            ));
        }
        let fields_type = entry.fields_type.as_deref().unwrap_or("");
        if !fields_type.is_empty() && fields_type != "FieldsV1" {
            errs.push(FieldError::invalid(
                p.child("fieldsType"),
                fields_type,
                "must be `FieldsV1`",
            ));
        }
        if entry.manager.as_deref().unwrap_or("").len() > 128 {
            errs.push(FieldError::too_long(p.child("manager"), 128));
        }
        if entry.subresource.as_deref().unwrap_or("").len() > 256 {
            errs.push(FieldError::too_long(p.child("subresource"), 256));
        }
    }
}

/// The parts of metadata checked on both create and update.
fn validate_meta_common(meta: &ObjectMeta, rules: MetaRules, path: &Path, errs: &mut Errs) {
    errs.extend(validate_labels(
        meta.labels.as_ref(),
        path.child("labels").as_str(),
    ));
    errs.extend(validate_annotations(
        meta.annotations.as_ref(),
        path.child("annotations").as_str(),
    ));
    validate_owner_references(
        meta.owner_references.as_deref().unwrap_or_default(),
        &path.child("ownerReferences"),
        errs,
    );
    validate_finalizers(
        meta.finalizers.as_deref().unwrap_or_default(),
        &path.child("finalizers"),
        rules.kube_finalizers,
        errs,
    );
    validate_managed_fields(meta, &path.child("managedFields"), errs);
}

/// ObjectMeta on create (upstream's `ValidateObjectMeta`, after name generation).
pub(crate) fn validate_meta_create(meta: &ObjectMeta, rules: MetaRules, path: &Path) -> Errs {
    let mut errs = Vec::new();
    let generate_name = meta.generate_name.as_deref().unwrap_or("");
    if !generate_name.is_empty() {
        for msg in rules.name.validate(generate_name, true) {
            errs.push(FieldError::invalid(
                path.child("generateName"),
                generate_name,
                msg,
            ));
        }
    }
    let name = meta.name.as_deref().unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError::required(
            path.child("name"),
            "name or generateName is required",
        ));
    } else {
        for msg in rules.name.validate(name, false) {
            errs.push(FieldError::invalid(path.child("name"), name, msg));
        }
    }
    let namespace = meta.namespace.as_deref().unwrap_or("");
    match rules.namespaced {
        Some(true) if namespace.is_empty() => {
            errs.push(FieldError::required(path.child("namespace"), ""))
        }
        // A cluster-scoped object's namespace is cleared by the server before validation.
        Some(false) => {}
        _ if namespace.is_empty() => {}
        _ => {
            for msg in NameRule::Dns1123Label.validate(namespace, false) {
                errs.push(FieldError::invalid(path.child("namespace"), namespace, msg));
            }
        }
    }
    non_negative(
        meta.generation.unwrap_or(0),
        &path.child("generation"),
        &mut errs,
    );
    validate_meta_common(meta, rules, path, &mut errs);
    errs
}

/// ObjectMeta on update (upstream's `ValidateObjectMetaUpdate`).
pub(crate) fn validate_meta_update(
    new: &ObjectMeta,
    old: &ObjectMeta,
    rules: MetaRules,
    path: &Path,
) -> Errs {
    let mut errs = Vec::new();
    if old.deletion_timestamp.is_some() {
        let old_set: std::collections::BTreeSet<&String> =
            old.finalizers.iter().flatten().collect();
        let extra: std::collections::BTreeSet<String> = new
            .finalizers
            .iter()
            .flatten()
            .filter(|f| !old_set.contains(f))
            .cloned()
            .collect();
        if !extra.is_empty() {
            let list: Vec<String> = extra.into_iter().collect();
            errs.push(FieldError::forbidden(
                path.child("finalizers"),
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                    go_string_slice(&list)
                ),
            ));
        }
    }
    let rv = new.resource_version.as_deref().unwrap_or("");
    if rv.is_empty() {
        errs.push(FieldError::invalid(
            path.child("resourceVersion"),
            rv,
            "must be specified for an update",
        ));
    }
    let (new_gen, old_gen) = (new.generation.unwrap_or(0), old.generation.unwrap_or(0));
    if new_gen < old_gen {
        errs.push(FieldError::invalid(
            path.child("generation"),
            new_gen,
            "must not be decremented",
        ));
    }
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    for (field, new_v, old_v) in [
        ("name", text(&new.name), text(&old.name)),
        ("namespace", text(&new.namespace), text(&old.namespace)),
        ("uid", text(&new.uid), text(&old.uid)),
    ] {
        if new_v != old_v {
            errs.push(FieldError::invalid(
                path.child(field),
                new_v,
                "field is immutable",
            ));
        }
    }
    for (field, new_v, old_v) in [
        (
            "creationTimestamp",
            &new.creation_timestamp,
            &old.creation_timestamp,
        ),
        (
            "deletionTimestamp",
            &new.deletion_timestamp,
            &old.deletion_timestamp,
        ),
    ] {
        if !same(new_v, old_v) {
            let value = serde_json::to_value(new_v).unwrap_or(Value::Null);
            errs.push(FieldError::invalid(
                path.child(field),
                value,
                "field is immutable",
            ));
        }
    }
    if new.deletion_grace_period_seconds != old.deletion_grace_period_seconds {
        let value = new
            .deletion_grace_period_seconds
            .map_or(Value::Null, Value::from);
        errs.push(FieldError::invalid(
            path.child("deletionGracePeriodSeconds"),
            value,
            "field is immutable",
        ));
    }
    validate_meta_common(new, rules, path, &mut errs);
    errs
}

/// ObjectMeta on create or update, as most kinds do it.
pub(crate) fn validate_meta(new: &ObjectMeta, old: Option<&ObjectMeta>, rules: MetaRules) -> Errs {
    let path = Path::new("metadata");
    match old {
        None => validate_meta_create(new, rules, &path),
        Some(old) => validate_meta_update(new, old, rules, &path),
    }
}

/// Decodes the `metadata` of a JSON object.
pub(crate) fn decode_meta(obj: &Value) -> Result<ObjectMeta, Errs> {
    match obj.get("metadata") {
        Some(m) => decode(m).map_err(|mut errs| {
            for e in &mut errs {
                e.field = "metadata".into();
            }
            errs
        }),
        None => Ok(ObjectMeta::default()),
    }
}

/// Validates only the `metadata` of an object given as JSON (create checks), for
/// callers that validate the rest themselves (e.g. custom resources).
pub fn validate_object_meta_value(group: &str, kind: &str, obj: &Value) -> Vec<FieldError> {
    match decode_meta(obj) {
        Ok(meta) => validate_meta(&meta, None, MetaRules::for_kind(group, kind)),
        Err(errs) => errs,
    }
}

/// Kinds without their own rules: ObjectMeta only.
pub(crate) fn validate_generic(
    group: &str,
    kind: &str,
    obj: &Value,
    old: Option<&Value>,
) -> Result<Errs, Errs> {
    let rules = MetaRules::for_kind(group, kind);
    let meta = decode_meta(obj)?;
    let old_meta = old.map(decode_meta).transpose()?;
    Ok(validate_meta(&meta, old_meta.as_ref(), rules))
}
