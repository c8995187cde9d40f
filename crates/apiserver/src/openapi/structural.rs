//! Validation of custom resources against their CRD's structural schema: types
//! (including `x-kubernetes-int-or-string` and `nullable`), `required`, `enum`,
//! `minimum`/`maximum` (with exclusive bounds), `multipleOf`, `pattern`,
//! `minLength`/`maxLength`, `minItems`/`maxItems`, `minProperties`/`maxProperties` and
//! the `allOf`/`anyOf`/`oneOf`/`not` combinators. CEL rules (`x-kubernetes-validations`)
//! and `format` checks are not evaluated.
//!
//! Messages follow upstream's field errors, e.g.
//! `spec.replicas: Invalid value: "two": spec.replicas in body must be of type integer: "string"`.

use std::collections::HashMap;
use std::fmt;

use regex::Regex;
use serde_json::{Map, Value};

/// The kind of a validation failure; maps to a Status cause `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    Required,
    Invalid,
    TypeInvalid,
    NotSupported,
    TooLong,
    TooMany,
}

impl ErrorType {
    /// The Status cause type, e.g. `FieldValueRequired`.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::TypeInvalid => "FieldValueTypeInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
        }
    }

    /// The human label starting a message, e.g. `Required value`.
    pub fn label(self) -> &'static str {
        match self {
            ErrorType::Required => "Required value",
            ErrorType::Invalid | ErrorType::TypeInvalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
        }
    }
}

/// One validation failure.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// The field path, e.g. `spec.items[0].name`.
    pub field: String,
    pub error_type: ErrorType,
    /// The message without the field, e.g. `Required value` or
    /// `Invalid value: 0: spec.size in body should be greater than or equal to 1`.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Validates a custom resource against `openAPIV3Schema`, returning (field, message)
/// pairs such as `("spec.size", "Required value")`. See [`validate_custom_errors`].
pub fn validate_custom(schema: &Value, obj: &Value) -> Vec<(String, String)> {
    validate_custom_errors(schema, obj)
        .into_iter()
        .map(|e| (e.field, e.message))
        .collect()
}

/// Validates a custom resource against `openAPIV3Schema`. The object's `apiVersion`,
/// `kind` and `metadata` are not checked here (the API server validates them as for
/// every object).
pub fn validate_custom_errors(schema: &Value, obj: &Value) -> Vec<FieldError> {
    let mut v = Validator {
        errors: Vec::new(),
        patterns: HashMap::new(),
    };
    let root = match (schema, obj) {
        (Value::Object(s), Value::Object(o)) => (s, o),
        _ => {
            v.check(schema, obj, "");
            return v.errors;
        }
    };
    let (schema_map, obj_map) = root;
    // Check the root without its metadata-like fields.
    let mut trimmed_schema = schema_map.clone();
    if let Some(Value::Object(props)) = trimmed_schema.get_mut("properties") {
        for skip in ["apiVersion", "kind", "metadata"] {
            props.remove(skip);
        }
    }
    if let Some(Value::Array(required)) = trimmed_schema.get_mut("required") {
        required.retain(|r| !matches!(r.as_str(), Some("apiVersion" | "kind" | "metadata")));
    }
    let mut trimmed_obj = obj_map.clone();
    for skip in ["apiVersion", "kind", "metadata"] {
        trimmed_obj.remove(skip);
    }
    v.check(
        &Value::Object(trimmed_schema),
        &Value::Object(trimmed_obj),
        "",
    );
    v.errors
}

struct Validator {
    errors: Vec<FieldError>,
    /// Compiled patterns; `None` for patterns that do not compile.
    patterns: HashMap<String, Option<Regex>>,
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// How upstream names a value's JSON type in messages.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() && !is_integral(v) => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integral(v: &Value) -> bool {
    match v {
        Value::Number(n) => {
            n.is_i64()
                || n.is_u64()
                || n.as_f64()
                    .is_some_and(|f| f.is_finite() && f.fract() == 0.0)
        }
        _ => false,
    }
}

/// Renders a bad value as upstream does in `Invalid value: <v>`.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => Value::String(s.clone()).to_string(),
        other => other.to_string(),
    }
}

/// Formats a bound without a trailing `.0` for whole numbers.
fn num(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

fn body_path(path: &str) -> &str {
    if path.is_empty() { "body" } else { path }
}

impl Validator {
    fn push(&mut self, path: &str, error_type: ErrorType, value: Option<&Value>, detail: &str) {
        let mut message = error_type.label().to_string();
        if let Some(value) = value {
            message.push_str(": ");
            message.push_str(&show(value));
        }
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(detail);
        }
        self.errors.push(FieldError {
            field: path.to_string(),
            error_type,
            message,
        });
    }

    fn invalid(&mut self, path: &str, value: &Value, detail: String) {
        self.push(
            path,
            ErrorType::Invalid,
            Some(value),
            &format!("{} in body {detail}", body_path(path)),
        );
    }

    /// Whether `value` satisfies `schema`, without recording errors.
    fn passes(&mut self, schema: &Value, value: &Value, path: &str) -> bool {
        let before = self.errors.len();
        self.check(schema, value, path);
        let ok = self.errors.len() == before;
        self.errors.truncate(before);
        ok
    }

    fn check(&mut self, schema: &Value, value: &Value, path: &str) {
        let Value::Object(s) = schema else { return };
        if value.is_null() {
            let nullable = s.get("nullable").and_then(Value::as_bool) == Some(true);
            if !nullable && let Some(ty) = s.get("type").and_then(Value::as_str) {
                let detail = format!("{} in body must be of type {ty}: \"null\"", body_path(path));
                self.push(path, ErrorType::TypeInvalid, Some(value), &detail);
            }
            return;
        }
        if !self.check_type(s, value, path) {
            return;
        }
        self.check_enum(s, value, path);
        match value {
            Value::Number(_) => self.check_number(s, value, path),
            Value::String(text) => self.check_string(s, value, text, path),
            Value::Array(items) => self.check_array(s, value, items, path),
            Value::Object(map) => self.check_object(s, value, map, path),
            _ => {}
        }
        self.check_combinators(s, value, path);
    }

    /// Returns false (after recording an error) when the value has the wrong type.
    fn check_type(&mut self, s: &Map<String, Value>, value: &Value, path: &str) -> bool {
        let int_or_string =
            s.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
        let ok = if int_or_string {
            value.is_string() || is_integral(value)
        } else {
            match s.get("type").and_then(Value::as_str) {
                None | Some("") => true,
                Some("object") => value.is_object(),
                Some("array") => value.is_array(),
                Some("string") => value.is_string(),
                Some("boolean") => value.is_boolean(),
                Some("number") => value.is_number(),
                Some("integer") => is_integral(value),
                Some(_) => true,
            }
        };
        if !ok {
            let expected = if int_or_string {
                "integer,string"
            } else {
                s.get("type").and_then(Value::as_str).unwrap_or_default()
            };
            let detail = format!(
                "{} in body must be of type {expected}: \"{}\"",
                body_path(path),
                type_name(value)
            );
            self.push(path, ErrorType::TypeInvalid, Some(value), &detail);
        }
        ok
    }

    fn check_enum(&mut self, s: &Map<String, Value>, value: &Value, path: &str) {
        let Some(Value::Array(allowed)) = s.get("enum") else {
            return;
        };
        if allowed.contains(value) || allowed.is_empty() {
            return;
        }
        let quoted: Vec<String> = allowed
            .iter()
            .map(|a| match a {
                Value::String(s) => Value::String(s.clone()).to_string(),
                other => Value::String(other.to_string()).to_string(),
            })
            .collect();
        let detail = format!("supported values: {}", quoted.join(", "));
        self.push(path, ErrorType::NotSupported, Some(value), &detail);
    }

    fn check_number(&mut self, s: &Map<String, Value>, value: &Value, path: &str) {
        let Some(x) = value.as_f64() else { return };
        let flag = |key: &str| s.get(key).and_then(Value::as_bool) == Some(true);
        if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
            if flag("exclusiveMaximum") && x >= max {
                self.invalid(path, value, format!("should be less than {}", num(max)));
            } else if x > max {
                self.invalid(
                    path,
                    value,
                    format!("should be less than or equal to {}", num(max)),
                );
            }
        }
        if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
            if flag("exclusiveMinimum") && x <= min {
                self.invalid(path, value, format!("should be greater than {}", num(min)));
            } else if x < min {
                self.invalid(
                    path,
                    value,
                    format!("should be greater than or equal to {}", num(min)),
                );
            }
        }
        if let Some(m) = s
            .get("multipleOf")
            .and_then(Value::as_f64)
            .filter(|m| *m > 0.0)
        {
            let q = x / m;
            if (q - q.round()).abs() > 1e-9 {
                self.invalid(path, value, format!("should be a multiple of {}", num(m)));
            }
        }
    }

    fn check_string(&mut self, s: &Map<String, Value>, value: &Value, text: &str, path: &str) {
        let len = text.chars().count() as u64;
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            self.push(
                path,
                ErrorType::TooLong,
                None,
                &format!("may not be longer than {max}"),
            );
        }
        if let Some(min) = s.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            self.invalid(path, value, format!("should be at least {min} chars long"));
        }
        if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
            let compiled = self
                .patterns
                .entry(pattern.to_string())
                .or_insert_with(|| Regex::new(pattern).ok());
            if let Some(re) = compiled
                && !re.is_match(text)
            {
                let detail = format!("should match '{pattern}'");
                self.invalid(path, value, detail);
            }
        }
    }

    fn check_array(&mut self, s: &Map<String, Value>, value: &Value, items: &[Value], path: &str) {
        let len = items.len() as u64;
        if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
            && len > max
        {
            self.push(
                path,
                ErrorType::TooMany,
                Some(&Value::from(len)),
                &format!("must have at most {max} items"),
            );
        }
        if let Some(min) = s.get("minItems").and_then(Value::as_u64)
            && len < min
        {
            self.invalid(path, value, format!("should have at least {min} items"));
        }
        if s.get("uniqueItems").and_then(Value::as_bool) == Some(true) {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    self.push(
                        &format!("{path}[{i}]"),
                        ErrorType::Invalid,
                        Some(item),
                        "Duplicate value",
                    );
                }
            }
        }
        if let Some(item_schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.check(item_schema, item, &format!("{path}[{i}]"));
            }
        }
    }

    fn check_object(
        &mut self,
        s: &Map<String, Value>,
        value: &Value,
        map: &Map<String, Value>,
        path: &str,
    ) {
        let count = map.len() as u64;
        if let Some(max) = s.get("maxProperties").and_then(Value::as_u64)
            && count > max
        {
            self.push(
                path,
                ErrorType::TooMany,
                Some(&Value::from(count)),
                &format!("must have at most {max} items"),
            );
        }
        if let Some(min) = s.get("minProperties").and_then(Value::as_u64)
            && count < min
        {
            self.invalid(
                path,
                value,
                format!("should have at least {min} properties"),
            );
        }
        if let Some(Value::Array(required)) = s.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(name) {
                    self.push(&child(path, name), ErrorType::Required, None, "");
                }
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        let additional = s.get("additionalProperties").filter(|a| a.is_object());
        for (key, v) in map {
            let sub = child(path, key);
            if let Some(prop) = props.and_then(|p| p.get(key)) {
                self.check(prop, v, &sub);
            } else if let Some(schema) = additional {
                self.check(schema, v, &sub);
            }
        }
    }

    fn check_combinators(&mut self, s: &Map<String, Value>, value: &Value, path: &str) {
        if let Some(Value::Array(all)) = s.get("allOf") {
            for sub in all {
                self.check(sub, value, path);
            }
        }
        if let Some(Value::Array(any)) = s.get("anyOf")
            && !any.is_empty()
            && !any.iter().any(|sub| self.passes(sub, value, path))
        {
            self.invalid(
                path,
                value,
                "must validate at least one schema (anyOf)".into(),
            );
        }
        if let Some(Value::Array(one)) = s.get("oneOf")
            && !one.is_empty()
        {
            let passing = one
                .iter()
                .filter(|sub| self.passes(sub, value, path))
                .count();
            if passing != 1 {
                let detail = format!(
                    "must validate one and only one schema (oneOf). Found {passing} valid alternatives"
                );
                self.invalid(path, value, detail);
            }
        }
        if let Some(not) = s.get("not")
            && self.passes(not, value, path)
        {
            self.invalid(path, value, "must not validate the schema (not)".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["spec"],
            "properties": {
                "apiVersion": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "integer", "minimum": 1, "maximum": 10},
                        "ratio": {"type": "number", "exclusiveMinimum": true, "minimum": 0},
                        "mode": {"type": "string", "enum": ["fast", "slow"]},
                        "name": {"type": "string", "pattern": "^[a-z]+$", "minLength": 2, "maxLength": 5},
                        "items": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string"}},
                        "port": {"x-kubernetes-int-or-string": true},
                        "note": {"type": "string", "nullable": true},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "choice": {"type": "object", "oneOf": [{"required": ["a"]}, {"required": ["b"]}]},
                    }
                }
            }
        })
    }

    #[test]
    fn validation_table() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({"spec": {"size": 3}}), vec![]),
            (json!({"spec": {"size": 3.0}}), vec![]),
            (json!({}), vec!["spec: Required value"]),
            (json!({"spec": {}}), vec!["spec.size: Required value"]),
            (
                json!({"spec": {"size": "two"}}),
                vec![
                    r#"spec.size: Invalid value: "two": spec.size in body must be of type integer: "string""#,
                ],
            ),
            (
                json!({"spec": {"size": 0}}),
                vec![
                    "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1",
                ],
            ),
            (
                json!({"spec": {"size": 11}}),
                vec![
                    "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10",
                ],
            ),
            (
                json!({"spec": {"size": 1, "ratio": 0}}),
                vec!["spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0"],
            ),
            (
                json!({"spec": {"size": 1, "mode": "medium"}}),
                vec![r#"spec.mode: Unsupported value: "medium": supported values: "fast", "slow""#],
            ),
            (
                json!({"spec": {"size": 1, "name": "ABC"}}),
                vec![
                    r#"spec.name: Invalid value: "ABC": spec.name in body should match '^[a-z]+$'"#,
                ],
            ),
            (
                json!({"spec": {"size": 1, "name": "a"}}),
                vec![
                    r#"spec.name: Invalid value: "a": spec.name in body should be at least 2 chars long"#,
                ],
            ),
            (
                json!({"spec": {"size": 1, "name": "abcdef"}}),
                vec!["spec.name: Too long: may not be longer than 5"],
            ),
            (
                json!({"spec": {"size": 1, "items": []}}),
                vec![
                    "spec.items: Invalid value: []: spec.items in body should have at least 1 items",
                ],
            ),
            (
                json!({"spec": {"size": 1, "items": ["a", "b", "c"]}}),
                vec!["spec.items: Too many: 3: must have at most 2 items"],
            ),
            (
                json!({"spec": {"size": 1, "items": ["a", 1]}}),
                vec![
                    r#"spec.items[1]: Invalid value: 1: spec.items[1] in body must be of type string: "integer""#,
                ],
            ),
            (json!({"spec": {"size": 1, "port": 80}}), vec![]),
            (json!({"spec": {"size": 1, "port": "http"}}), vec![]),
            (
                json!({"spec": {"size": 1, "port": 1.5}}),
                vec![
                    r#"spec.port: Invalid value: 1.5: spec.port in body must be of type integer,string: "number""#,
                ],
            ),
            (json!({"spec": {"size": 1, "note": null}}), vec![]),
            (
                json!({"spec": {"size": 1, "labels": {"a": 1}}}),
                vec![
                    r#"spec.labels.a: Invalid value: 1: spec.labels.a in body must be of type string: "integer""#,
                ],
            ),
            (json!({"spec": {"size": 1, "choice": {"a": 1}}}), vec![]),
            (
                json!({"spec": {"size": 1, "choice": {"a": 1, "b": 2}}}),
                vec![
                    r#"spec.choice: Invalid value: {"a":1,"b":2}: spec.choice in body must validate one and only one schema (oneOf). Found 2 valid alternatives"#,
                ],
            ),
            // apiVersion/kind/metadata are not this validator's business.
            (
                json!({"apiVersion": 5, "metadata": "x", "spec": {"size": 1}}),
                vec![],
            ),
        ];
        let schema = schema();
        for (obj, want) in cases {
            let got: Vec<String> = validate_custom_errors(&schema, &obj)
                .iter()
                .map(ToString::to_string)
                .collect();
            let pairs: Vec<String> = validate_custom(&schema, &obj)
                .iter()
                .map(|(f, m)| format!("{f}: {m}"))
                .collect();
            assert_eq!(pairs, got);
            assert_eq!(got, want, "{obj}");
        }
    }

    #[test]
    fn error_types_map_to_cause_reasons() {
        let errs = validate_custom_errors(
            &schema(),
            &json!({"spec": {"size": "x", "mode": "m", "name": "abcdefg"}}),
        );
        let reasons: Vec<&str> = errs.iter().map(|e| e.error_type.reason()).collect();
        assert_eq!(
            reasons,
            vec![
                "FieldValueTypeInvalid",
                "FieldValueNotSupported",
                "FieldValueTooLong"
            ]
        );
    }
}
