//! JSON merge patch (RFC 7386, `application/merge-patch+json`), as upstream applies it
//! with `evanphx/json-patch`: objects merge key by key, `null` deletes a key, anything
//! else (lists included) replaces the target.
//!
//! Written by hand rather than with `json_patch::merge` because that function removes
//! keys with `Map::remove`, which under `serde_json`'s `preserve_order` swaps the last key
//! into the removed slot and so reorders the object; and because upstream differs from
//! the RFC at the top level (a `null` or scalar patch is rejected) and prunes `null`s
//! from objects nested inside newly set lists.

use serde_json::{Map, Value};

use super::PatchError;

/// The error upstream answers for a patch that is not a JSON object or array.
const INVALID_PATCH: &str = "Invalid JSON Patch";

/// Applies a JSON merge patch to `original`.
///
/// The patch must be an object (merged into the original) or an array (which replaces
/// the whole document, as upstream allows); `null` and scalars are rejected with 400.
pub fn merge_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    match patch {
        Value::Object(patch) => {
            let mut doc = match original {
                Value::Object(map) => map.clone(),
                // Upstream treats a non-object document as absent and takes the patch.
                _ => Map::new(),
            };
            merge_into(&mut doc, patch);
            Ok(Value::Object(doc))
        }
        Value::Array(items) => Ok(Value::Array(items.iter().map(pruned).collect())),
        _ => Err(PatchError::BadRequest(INVALID_PATCH.to_string())),
    }
}

fn merge_into(doc: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        if value.is_null() {
            doc.shift_remove(key);
            continue;
        }
        match (doc.get_mut(key), value) {
            (Some(Value::Object(current)), Value::Object(patch)) => merge_into(current, patch),
            (Some(current), _) => *current = pruned(value),
            (None, _) => {
                doc.insert(key.clone(), pruned(value));
            }
        }
    }
}

/// A copy of a patch value with `null` members of objects removed at every depth (list
/// elements that are `null` are kept, as upstream does).
fn pruned(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), pruned(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(pruned).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_table() {
        let deployment = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front", "zone": "a"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}
        });
        let cases: Vec<(&str, Value, Value, Value)> = vec![
            (
                "kubectl scale",
                deployment.clone(),
                json!({"spec": {"replicas": 3}}),
                json!({
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "web", "labels": {"app": "web", "tier": "front", "zone": "a"}},
                    "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}
                }),
            ),
            (
                "kubectl label --overwrite and removal keeps key order",
                deployment.clone(),
                json!({"metadata": {"labels": {"app": "api", "tier": null}}}),
                json!({
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "web", "labels": {"app": "api", "zone": "a"}},
                    "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}
                }),
            ),
            (
                "lists are replaced, nulls inside new objects pruned",
                json!({"a": [1, 2], "b": {"c": 1}}),
                json!({"a": [{"x": null, "y": 1}, null], "d": {"e": null, "f": 2}}),
                json!({"a": [{"y": 1}, null], "b": {"c": 1}, "d": {"f": 2}}),
            ),
            (
                "object replaces scalar and scalar replaces object",
                json!({"a": 1, "b": {"c": 1}}),
                json!({"a": {"x": 1}, "b": "s"}),
                json!({"a": {"x": 1}, "b": "s"}),
            ),
            (
                "nested merge and deleting a missing key",
                json!({"a": {"b": {"c": 1, "d": 2}}}),
                json!({"a": {"b": {"d": null, "e": 3}}, "zz": null}),
                json!({"a": {"b": {"c": 1, "e": 3}}}),
            ),
            (
                "empty patch is a no-op",
                json!({"a": 1}),
                json!({}),
                json!({"a": 1}),
            ),
            (
                "array patch replaces the document",
                json!({"a": 1}),
                json!([1, {"b": null}]),
                json!([1, {}]),
            ),
        ];
        for (name, original, patch, want) in cases {
            let got = merge_patch(&original, &patch).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got, want, "{name}");
            // Key order matters to clients reading our output.
            assert_eq!(got.to_string(), want.to_string(), "{name}: key order");
        }
    }

    #[test]
    fn invalid_merge_patches() {
        for patch in [json!(null), json!("x"), json!(3), json!(true)] {
            let err = merge_patch(&json!({"a": 1}), &patch).unwrap_err();
            assert_eq!(err, PatchError::BadRequest("Invalid JSON Patch".into()));
            assert_eq!(err.status_code(), 400);
        }
    }
}
