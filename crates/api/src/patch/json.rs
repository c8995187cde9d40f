//! JSON patch (RFC 6902, `application/json-patch+json`), applied with the `json-patch`
//! crate the way upstream applies it with `evanphx/json-patch` v4.
//!
//! Upstream deviates from the RFC in ways clients rely on, kept here:
//! - `replace` of a missing object member adds it;
//! - `test` compares numbers by value (`1` equals `1.0`) and a missing object member
//!   tests equal to `null`;
//! - at most [`MAX_OPERATIONS`] operations per patch (413 beyond);
//! - an unknown `op` is an operation failure (422), not a decoding error.
//!
//! `test` is evaluated here rather than by the crate because of those two differences;
//! the other operations are the crate's.

use json_patch::{PatchErrorKind, PatchOperation};
use serde_json::{Map, Value};

use super::{PatchError, go_json_type};

/// The most operations upstream accepts in one JSON patch.
pub const MAX_OPERATIONS: usize = 10_000;

/// Applies a JSON patch (an array of operations) to `original`.
///
/// A body that is not an array of operation objects is a 400; an operation that does not
/// apply is a 422 ([`PatchError::OperationFailed`]); nothing is applied unless every
/// operation succeeds.
pub fn json_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let operations = decode(patch)?;
    if operations.len() > MAX_OPERATIONS {
        return Err(PatchError::TooManyOperations {
            max: MAX_OPERATIONS,
            got: operations.len(),
        });
    }
    let mut doc = original.clone();
    for operation in operations {
        apply_one(&mut doc, operation)?;
    }
    Ok(doc)
}

fn decode(patch: &Value) -> Result<&Vec<Value>, PatchError> {
    let Value::Array(operations) = patch else {
        return Err(PatchError::BadRequest(format!(
            "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
            go_json_type(patch)
        )));
    };
    if let Some(bad) = operations.iter().find(|op| !op.is_object()) {
        return Err(PatchError::BadRequest(format!(
            "json: cannot unmarshal {} into Go value of type jsonpatch.Operation",
            go_json_type(bad)
        )));
    }
    Ok(operations)
}

fn failed(message: String) -> PatchError {
    PatchError::OperationFailed(message)
}

fn apply_one(doc: &mut Value, operation: &Value) -> Result<(), PatchError> {
    let Some(fields) = operation.as_object() else {
        return Err(failed("Unexpected kind: unknown".into()));
    };
    let kind = fields
        .get("op")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    if !matches!(
        kind,
        "add" | "remove" | "replace" | "move" | "copy" | "test"
    ) {
        return Err(failed(format!("Unexpected kind: {kind}")));
    }
    let Some(path) = fields.get("path").and_then(Value::as_str) else {
        return Err(failed(format!(
            "{kind} operation failed to decode path: missing value"
        )));
    };
    let from = fields.get("from").and_then(Value::as_str);
    if matches!(kind, "move" | "copy") && from.is_none() {
        return Err(failed(format!(
            "{kind} operation failed to decode from: operation, missing from field: missing value"
        )));
    }
    let value = fields.get("value").cloned().unwrap_or(Value::Null);
    if !path.is_empty() && !path.starts_with('/') {
        return Err(failed(format!(
            "{kind} operation does not apply: doc is missing path: \"{path}\": missing value"
        )));
    }

    match kind {
        "test" => return test(doc, path, &value),
        "remove" if path.ends_with("/-") => {
            // The crate pops the last element for `-`; upstream only knows indices.
            return Err(failed(format!(
                "error in remove for path: '{path}': Unable to access invalid index: -: invalid index referenced"
            )));
        }
        "move" if from.is_some_and(|f| f.ends_with("/-")) => {
            return Err(failed(format!(
                "move operation does not apply: doc is missing from path: {}: missing value",
                from.unwrap_or_default()
            )));
        }
        _ => {}
    }

    let mut op = Map::new();
    op.insert("op".into(), Value::String(kind.into()));
    op.insert("path".into(), Value::String(path.into()));
    if let Some(from) = from {
        op.insert("from".into(), Value::String(from.into()));
    }
    if matches!(kind, "add" | "replace") {
        // Upstream's `replace` of a missing member of an existing object adds it.
        let kind = if kind == "replace" && missing_member(doc, path) {
            "add"
        } else {
            kind
        };
        op.insert("op".into(), Value::String(kind.into()));
        op.insert("value".into(), value);
    }
    let parsed: PatchOperation = serde_json::from_value(Value::Object(op))
        .map_err(|e| failed(format!("{kind} operation failed to decode path: {e}")))?;
    json_patch::patch(doc, std::slice::from_ref(&parsed))
        .map_err(|e| failed(describe(doc, kind, path, from.unwrap_or_default(), e.kind)))
}

/// Upstream's wording for an operation the document does not allow (`doc` is unchanged
/// by the failed operation).
fn describe(doc: &Value, kind: &str, path: &str, from: &str, error: PatchErrorKind) -> String {
    let parent_exists = split_last(path).is_some_and(|(parent, _)| doc.pointer(parent).is_some());
    match (error, kind) {
        (PatchErrorKind::InvalidFromPointer, _) => {
            format!(
                "{kind} operation does not apply: doc is missing from path: {from}: missing value"
            )
        }
        (PatchErrorKind::InvalidPointer, "remove") if missing_member(doc, path) => {
            let key = split_last(path).map(|(_, key)| key).unwrap_or_default();
            format!(
                "error in remove for path: '{path}': Unable to remove nonexistent key: {key}: missing value"
            )
        }
        (PatchErrorKind::InvalidPointer, "add" | "remove") if !parent_exists => {
            format!(
                "{kind} operation does not apply: doc is missing path: \"{path}\": missing value"
            )
        }
        (PatchErrorKind::InvalidPointer, "add" | "remove") => {
            let key = split_last(path).map(|(_, key)| key).unwrap_or_default();
            format!(
                "error in {kind} for path: '{path}': Unable to access invalid index: {key}: invalid index referenced"
            )
        }
        (PatchErrorKind::InvalidPointer, "replace") if parent_exists => {
            format!("replace operation does not apply: doc is missing key: {path}: missing value")
        }
        (PatchErrorKind::InvalidPointer, "move" | "copy") => {
            format!(
                "{kind} operation does not apply: doc is missing destination path: {path}: missing value"
            )
        }
        (PatchErrorKind::InvalidPointer, _) => {
            format!("{kind} operation does not apply: doc is missing path: {path}: missing value")
        }
        (other, _) => format!("error in {kind} for path: '{path}': {other}"),
    }
}

/// Splits `/a/b/c` into the parent pointer `/a/b` and the unescaped last token `c`.
fn split_last(path: &str) -> Option<(&str, String)> {
    let (parent, last) = path.rsplit_once('/')?;
    Some((parent, last.replace("~1", "/").replace("~0", "~")))
}

/// True if `path` names a member that an existing object lacks.
fn missing_member(doc: &Value, path: &str) -> bool {
    let Some((parent, key)) = split_last(path) else {
        return false;
    };
    matches!(doc.pointer(parent), Some(Value::Object(map)) if !map.contains_key(&key))
}

fn test(doc: &Value, path: &str, expected: &Value) -> Result<(), PatchError> {
    let mismatch = || failed(format!("testing value {path} failed: test failed"));
    if let Some(actual) = doc.pointer(path) {
        return if values_equal(actual, expected) {
            Ok(())
        } else {
            Err(mismatch())
        };
    }
    let Some((parent, _)) = split_last(path) else {
        return Err(mismatch());
    };
    match doc.pointer(parent) {
        // A missing member reads as null.
        Some(Value::Object(_)) if expected.is_null() => Ok(()),
        Some(Value::Object(_)) => Err(mismatch()),
        Some(Value::Array(_)) => Err(failed(format!(
            "error in test for path: '{path}': Unable to access invalid index: invalid index referenced"
        ))),
        _ => Err(failed(format!(
            "test operation does not apply: is missing path: {path}: missing value"
        ))),
    }
}

/// JSON equality with numbers compared by value, as Go compares decoded `float64`s.
fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"deployment.kubernetes.io/revision": "2"}},
            "spec": {
                "replicas": 2,
                "template": {
                    "metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:2"}]}
                }
            }
        })
    }

    #[test]
    fn json_patch_table() {
        let rollback_template = json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}
        });
        let cases: Vec<(&str, Value, Value, Value)> = vec![
            (
                // kubectl rollout undo
                "replace template and annotations",
                deployment(),
                json!([
                    {"op": "replace", "path": "/spec/template", "value": rollback_template.clone()},
                    {"op": "replace", "path": "/metadata/annotations", "value": {"deployment.kubernetes.io/revision": "1"}}
                ]),
                {
                    let mut d = deployment();
                    d["spec"]["template"] = rollback_template.clone();
                    d["metadata"]["annotations"] =
                        json!({"deployment.kubernetes.io/revision": "1"});
                    d
                },
            ),
            (
                "test then replace",
                deployment(),
                json!([
                    {"op": "test", "path": "/spec/replicas", "value": 2.0},
                    {"op": "replace", "path": "/spec/replicas", "value": 5}
                ]),
                {
                    let mut d = deployment();
                    d["spec"]["replicas"] = json!(5);
                    d
                },
            ),
            (
                "add to list end, escaped keys, remove",
                deployment(),
                json!([
                    {"op": "add", "path": "/spec/template/spec/containers/-", "value": {"name": "side", "image": "busybox"}},
                    {"op": "add", "path": "/metadata/labels/example.com~1team", "value": "a"},
                    {"op": "remove", "path": "/metadata/annotations/deployment.kubernetes.io~1revision"}
                ]),
                {
                    let mut d = deployment();
                    if let Some(containers) =
                        d["spec"]["template"]["spec"]["containers"].as_array_mut()
                    {
                        containers.push(json!({"name": "side", "image": "busybox"}));
                    }
                    d["metadata"]["labels"]["example.com/team"] = json!("a");
                    d["metadata"]["annotations"] = json!({});
                    d
                },
            ),
            (
                "replace of a missing member adds it (upstream quirk)",
                json!({"metadata": {"name": "x"}}),
                json!([{"op": "replace", "path": "/metadata/labels", "value": {"a": "b"}}]),
                json!({"metadata": {"name": "x", "labels": {"a": "b"}}}),
            ),
            (
                "test of a missing member against null passes",
                json!({"a": {}}),
                json!([{"op": "test", "path": "/a/b", "value": null}, {"op": "add", "path": "/a/b", "value": 1}]),
                json!({"a": {"b": 1}}),
            ),
            (
                "move and copy",
                json!({"a": {"x": 1}, "b": {}}),
                json!([{"op": "copy", "from": "/a/x", "path": "/b/y"}, {"op": "move", "from": "/a", "path": "/c"}]),
                json!({"b": {"y": 1}, "c": {"x": 1}}),
            ),
            ("empty patch", json!({"a": 1}), json!([]), json!({"a": 1})),
        ];
        for (name, original, patch, want) in cases {
            let got = json_patch(&original, &patch).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn json_patch_errors() {
        let cases: Vec<(&str, Value, u16, &str)> = vec![
            (
                "not a list",
                json!({"op": "add"}),
                400,
                "json: cannot unmarshal object into Go value of type jsonpatch.Patch",
            ),
            (
                "not an object",
                json!(["x"]),
                400,
                "json: cannot unmarshal string into Go value of type jsonpatch.Operation",
            ),
            (
                "unknown op",
                json!([{"op": "frobnicate", "path": "/a"}]),
                422,
                "Unexpected kind: frobnicate",
            ),
            (
                "missing op",
                json!([{"path": "/a"}]),
                422,
                "Unexpected kind: unknown",
            ),
            (
                "missing path",
                json!([{"op": "add", "value": 1}]),
                422,
                "add operation failed to decode path: missing value",
            ),
            (
                "failed test",
                json!([{"op": "test", "path": "/spec/replicas", "value": 3}]),
                422,
                "testing value /spec/replicas failed: test failed",
            ),
            (
                "test under missing parent",
                json!([{"op": "test", "path": "/nope/x", "value": 3}]),
                422,
                "test operation does not apply: is missing path: /nope/x: missing value",
            ),
            (
                "remove missing",
                json!([{"op": "remove", "path": "/metadata/labels/nope"}]),
                422,
                "error in remove for path: '/metadata/labels/nope': Unable to remove nonexistent key: nope: missing value",
            ),
            (
                "remove with dash does not panic",
                json!([{"op": "remove", "path": "/spec/template/spec/containers/-"}]),
                422,
                "error in remove for path: '/spec/template/spec/containers/-': Unable to access invalid index: -: invalid index referenced",
            ),
            (
                "add under missing parent",
                json!([{"op": "add", "path": "/nope/x", "value": 1}]),
                422,
                "add operation does not apply: doc is missing path: \"/nope/x\": missing value",
            ),
            (
                "index out of range",
                json!([{"op": "replace", "path": "/spec/template/spec/containers/5", "value": {}}]),
                422,
                "replace operation does not apply: doc is missing key: /spec/template/spec/containers/5: missing value",
            ),
            (
                "move from missing",
                json!([{"op": "move", "from": "/nope", "path": "/x"}]),
                422,
                "move operation does not apply: doc is missing from path: /nope: missing value",
            ),
            (
                "relative path",
                json!([{"op": "add", "path": "spec", "value": 1}]),
                422,
                "add operation does not apply: doc is missing path: \"spec\": missing value",
            ),
        ];
        for (name, patch, code, message) in cases {
            let err = json_patch(&deployment(), &patch).expect_err(name);
            assert_eq!(err.status_code(), code, "{name}: {err}");
            assert_eq!(err.to_string(), message, "{name}");
        }
    }

    #[test]
    fn failed_patch_changes_nothing_and_limit_applies() {
        let original = json!({"a": 1});
        let patch = json!([{"op": "replace", "path": "/a", "value": 2}, {"op": "test", "path": "/a", "value": 1}]);
        assert!(json_patch(&original, &patch).is_err());
        assert_eq!(original, json!({"a": 1}));

        let ops: Vec<Value> = (0..=MAX_OPERATIONS)
            .map(|_| json!({"op": "test", "path": "/a", "value": 1}))
            .collect();
        let err = json_patch(&original, &Value::Array(ops)).unwrap_err();
        assert_eq!(err.status_code(), 413);
        let ops: Vec<Value> = (0..MAX_OPERATIONS)
            .map(|_| json!({"op": "test", "path": "/a", "value": 1}))
            .collect();
        assert_eq!(json_patch(&original, &Value::Array(ops)).unwrap(), original);
    }
}
