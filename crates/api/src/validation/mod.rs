//! Object validation and defaulting as upstream's API server does them.
//!
//! [`apply_defaults`] reproduces upstream's `SetDefaults_*` functions (plus the few
//! create-time strategy steps the brief asks for: Job selector generation and the
//! Namespace finalizer), working directly on the JSON a client sent. [`validate`]
//! reproduces upstream's validation for the built-in kinds with the same field paths,
//! error types and messages, so the API server can answer 422 `Invalid` exactly like
//! upstream; [`invalid_message`] and [`FieldError::to_cause`] build the Status parts.
//!
//! Objects are decoded into `k8s-openapi` types for validation (after dropping JSON
//! `null`s, which Go treats as absent); decoding failures are reported as a single
//! `FieldValueTypeInvalid` error.

mod apps;
mod batch;
mod core_v1;
mod defaults;
mod meta;
mod pod;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

pub use batch::parse_cron;
pub use core_v1::{MAX_SECRET_SIZE, NODE_PORT_RANGE};
pub use defaults::{
    DEFAULT_TOLERATION_SECONDS, admit_pod_priority, apply_admission_defaults,
    apply_admission_defaults_with, apply_defaults, generate_job_selector, pod_priority_class_name,
};
pub use meta::{
    validate_annotations, validate_label_selector, validate_labels, validate_object_meta_value,
};

use crate::selector::{go_quote, go_string_slice};

/// The machine-readable kind of a field error (upstream's `field.ErrorType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldErrorType {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    Forbidden,
    TooLong,
    TooMany,
    NotFound,
    /// The value does not have the type the schema expects.
    TypeInvalid,
    Internal,
}

impl FieldErrorType {
    /// The Status cause `reason` (`FieldValueRequired`, ...).
    pub fn reason(self) -> &'static str {
        match self {
            FieldErrorType::Required => "FieldValueRequired",
            FieldErrorType::Invalid => "FieldValueInvalid",
            FieldErrorType::NotSupported => "FieldValueNotSupported",
            FieldErrorType::Duplicate => "FieldValueDuplicate",
            FieldErrorType::Forbidden => "FieldValueForbidden",
            FieldErrorType::TooLong => "FieldValueTooLong",
            FieldErrorType::TooMany => "FieldValueTooMany",
            FieldErrorType::NotFound => "FieldValueNotFound",
            FieldErrorType::TypeInvalid => "FieldValueTypeInvalid",
            FieldErrorType::Internal => "InternalError",
        }
    }

    /// The human text (`Required value`, `Invalid value`, ...).
    pub fn text(self) -> &'static str {
        match self {
            FieldErrorType::Required => "Required value",
            FieldErrorType::Invalid | FieldErrorType::TypeInvalid => "Invalid value",
            FieldErrorType::NotSupported => "Unsupported value",
            FieldErrorType::Duplicate => "Duplicate value",
            FieldErrorType::Forbidden => "Forbidden",
            FieldErrorType::TooLong => "Too long",
            FieldErrorType::TooMany => "Too many",
            FieldErrorType::NotFound => "Not found",
            FieldErrorType::Internal => "Internal error",
        }
    }
}

/// One validation failure, as upstream's `field.Error`.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub kind: FieldErrorType,
    /// The JSON path of the field, e.g. `spec.template.spec.containers[0].image`.
    pub field: String,
    /// The explanation after the value (may be empty).
    pub detail: String,
    /// The offending value; `None` when upstream does not print one.
    pub bad_value: Option<Value>,
    /// Replaces the printed value where upstream prints a Go-syntax structure
    /// (e.g. `map[string]string{"app":"web"}`).
    pub bad_value_text: Option<String>,
}

impl FieldError {
    fn new(
        kind: FieldErrorType,
        field: impl Into<String>,
        bad_value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            kind,
            field: field.into(),
            detail: detail.into(),
            bad_value,
            bad_value_text: None,
        }
    }

    /// `Required value`.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError::new(FieldErrorType::Required, field, None, detail)
    }

    /// `Invalid value: <value>`.
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<Value>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError::new(FieldErrorType::Invalid, field, Some(value.into()), detail)
    }

    /// `Unsupported value: <value>: supported values: "a", "b"`.
    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<Value>,
        valid: &[&str],
    ) -> Self {
        let detail = if valid.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = valid.iter().map(|v| go_quote(v)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        FieldError::new(
            FieldErrorType::NotSupported,
            field,
            Some(value.into()),
            detail,
        )
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(field: impl Into<String>, value: impl Into<Value>) -> Self {
        FieldError::new(FieldErrorType::Duplicate, field, Some(value.into()), "")
    }

    /// `Forbidden: <detail>`.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError::new(FieldErrorType::Forbidden, field, None, detail)
    }

    /// `Too long: may not be more than N bytes`.
    pub fn too_long(field: impl Into<String>, max_length: usize) -> Self {
        FieldError::new(
            FieldErrorType::TooLong,
            field,
            None,
            format!("may not be more than {max_length} bytes"),
        )
    }

    /// `Too many: <actual>: must have at most N items`.
    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> Self {
        FieldError::new(
            FieldErrorType::TooMany,
            field,
            Some(json!(actual)),
            format!("must have at most {max} items"),
        )
    }

    /// `Not found: <value>`.
    pub fn not_found(field: impl Into<String>, value: impl Into<Value>) -> Self {
        FieldError::new(FieldErrorType::NotFound, field, Some(value.into()), "")
    }

    /// A value that could not be decoded into the expected type.
    pub fn type_invalid(
        field: impl Into<String>,
        value: impl Into<Value>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError::new(
            FieldErrorType::TypeInvalid,
            field,
            Some(value.into()),
            detail,
        )
    }

    /// Sets the Go-syntax rendering of the bad value.
    pub fn with_value_text(mut self, text: impl Into<String>) -> Self {
        self.bad_value_text = Some(text.into());
        self
    }

    /// The Status cause `reason`.
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }

    /// The message without the field name (upstream's `ErrorBody`), used as the Status
    /// cause `message`.
    pub fn body(&self) -> String {
        let mut s = match self.kind {
            FieldErrorType::Required
            | FieldErrorType::Forbidden
            | FieldErrorType::TooLong
            | FieldErrorType::Internal => self.kind.text().to_string(),
            _ => match (&self.bad_value_text, &self.bad_value) {
                (Some(text), _) => format!("{}: {}", self.kind.text(), text),
                (None, value) => format!("{}: {}", self.kind.text(), render_value(value.as_ref())),
            },
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// `field: body`, as upstream's `Error()`.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }

    /// The Status `details.causes[]` entry.
    pub fn to_cause(&self) -> Value {
        json!({"reason": self.reason(), "message": self.body(), "field": self.field})
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for FieldError {}

/// Prints a bad value as Go's `fmt` would print the corresponding Go value.
fn render_value(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "\"null\"".to_string(),
        Some(Value::String(s)) => go_quote(s),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            let strings: Vec<String> = items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            go_string_slice(&strings)
        }
        Some(other) => other.to_string(),
    }
}

/// Go's `%#v` of a `map[string]string` (keys sorted, as Go prints maps).
pub fn go_string_map(map: Option<&BTreeMap<String, String>>) -> String {
    match map {
        None => "map[string]string(nil)".to_string(),
        Some(m) => {
            let inner: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
                .collect();
            format!("map[string]string{{{}}}", inner.join(", "))
        }
    }
}

/// Joins errors as upstream's aggregate error does: one error alone, several in
/// brackets, duplicates dropped.
pub fn aggregate_message(errors: &[FieldError]) -> String {
    let mut seen = BTreeSet::new();
    let messages: Vec<String> = errors
        .iter()
        .map(FieldError::message)
        .filter(|m| seen.insert(m.clone()))
        .collect();
    match messages.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// The Status message of a 422 Invalid response: `Deployment.apps "web" is invalid: ...`.
pub fn invalid_message(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> String {
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    if errors.is_empty() {
        format!("{qualified} {} is invalid", go_quote(name))
    } else {
        format!(
            "{qualified} {} is invalid: {}",
            go_quote(name),
            aggregate_message(errors)
        )
    }
}

/// A field path under construction (upstream's `field.Path`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Path(String);

impl Path {
    pub(crate) fn new(name: &str) -> Path {
        Path(name.to_string())
    }

    pub(crate) fn child(&self, name: &str) -> Path {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{}", self.0, name))
        }
    }

    pub(crate) fn index(&self, i: usize) -> Path {
        Path(format!("{}[{}]", self.0, i))
    }

    pub(crate) fn key(&self, k: &str) -> Path {
        Path(format!("{}[{}]", self.0, k))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&Path> for String {
    fn from(p: &Path) -> String {
        p.0.clone()
    }
}

impl From<Path> for String {
    fn from(p: Path) -> String {
        p.0
    }
}

/// Collected errors.
pub(crate) type Errs = Vec<FieldError>;

/// Removes JSON nulls from objects (recursively), which Go decoding treats as absent.
pub(crate) fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                if !v.is_null() {
                    out.insert(k.clone(), strip_nulls(v));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// True if a `null` appears anywhere in `value`.
fn has_nulls(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.values().any(has_nulls),
        Value::Array(items) => items.iter().any(has_nulls),
        _ => false,
    }
}

/// Decodes an object into a `k8s-openapi` type, ignoring `apiVersion`/`kind` (checked
/// by the server) and nulls.
pub(crate) fn decode<T: DeserializeOwned>(obj: &Value) -> Result<T, Errs> {
    // Most objects hold no nulls: decode those in place, without the cleaned copy (a
    // failure takes the slow path, so errors read the same either way).
    if !has_nulls(obj)
        && let Ok(decoded) = T::deserialize(obj)
    {
        return Ok(decoded);
    }
    let mut clean = strip_nulls(obj);
    if let Value::Object(map) = &mut clean {
        map.remove("apiVersion");
        map.remove("kind");
    }
    serde_json::from_value(clean)
        .map_err(|e| vec![FieldError::type_invalid("", Value::Null, e.to_string())])
}

/// A comparable form of a value: nulls, empty lists and empty maps dropped, as
/// upstream's semantic equality treats empty and nil collections alike.
pub(crate) fn semantic(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let v = semantic(v);
                let empty = v.is_null()
                    || v.as_array().is_some_and(Vec::is_empty)
                    || v.as_object().is_some_and(Map::is_empty);
                if !empty {
                    out.insert(k.clone(), v);
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(semantic).collect()),
        other => other.clone(),
    }
}

/// Semantic equality of two serialisable values.
pub(crate) fn same<T: serde::Serialize>(a: &T, b: &T) -> bool {
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => semantic(&a) == semantic(&b),
        _ => false,
    }
}

/// Lists the paths where two values differ, for messages that upstream fills with a
/// structural diff.
pub(crate) fn diff_paths(old: &Value, new: &Value) -> Vec<String> {
    fn walk(prefix: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
        match (old, new) {
            (Value::Object(a), Value::Object(b)) => {
                let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for k in keys {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(
                        &p,
                        a.get(k).unwrap_or(&Value::Null),
                        b.get(k).unwrap_or(&Value::Null),
                        out,
                    );
                }
            }
            (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    walk(&format!("{prefix}[{i}]"), x, y, out);
                }
            }
            (a, b) if a != b => out.push(format!("-\t{prefix}: {a}\n+\t{prefix}: {b}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", &semantic(old), &semantic(new), &mut out);
    out
}

/// `field is immutable` for a value that changed.
pub(crate) fn immutable<T: serde::Serialize>(new: &T, old: &T, path: &Path, errs: &mut Errs) {
    if !same(new, old) {
        let value = serde_json::to_value(new).unwrap_or(Value::Null);
        errs.push(FieldError::invalid(path, value, "field is immutable"));
    }
}

/// `must be greater than or equal to 0`.
pub(crate) fn non_negative(value: i64, path: &Path, errs: &mut Errs) {
    if value < 0 {
        errs.push(FieldError::invalid(
            path,
            value,
            "must be greater than or equal to 0",
        ));
    }
}

/// Validates an object of a built-in kind as upstream's create (`old` = `None`) or
/// update validation does. `group` is empty for the core group. Unknown kinds get the
/// ObjectMeta checks only.
pub fn validate(group: &str, kind: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let result = match (group, kind) {
        ("", "Pod") => pod::validate_pod(obj, old),
        ("", "PodTemplate") => pod::validate_pod_template(obj, old),
        ("", "ReplicationController") => apps::validate_replication_controller(obj, old),
        ("apps", "Deployment") => apps::validate_deployment(obj, old),
        ("apps", "ReplicaSet") => apps::validate_replica_set(obj, old),
        ("apps", "DaemonSet") => apps::validate_daemon_set(obj, old),
        ("apps", "StatefulSet") => apps::validate_stateful_set(obj, old),
        ("batch", "Job") => batch::validate_job(obj, old),
        ("batch", "CronJob") => batch::validate_cron_job(obj, old),
        ("", "Service") => core_v1::validate_service(obj, old),
        ("", "Namespace") => core_v1::validate_namespace(obj, old),
        ("", "Node") => core_v1::validate_node(obj, old),
        ("", "ConfigMap") => core_v1::validate_config_map(obj, old),
        ("", "Secret") => core_v1::validate_secret(obj, old),
        ("", "Event") | ("events.k8s.io", "Event") => core_v1::validate_event(group, obj, old),
        ("coordination.k8s.io", "Lease") => core_v1::validate_lease(obj, old),
        _ => meta::validate_generic(group, kind, obj, old),
    };
    result.unwrap_or_else(|errs| errs)
}

#[cfg(test)]
mod tests;
