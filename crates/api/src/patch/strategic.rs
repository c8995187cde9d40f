//! Strategic merge patch (`application/strategic-merge-patch+json`), as upstream
//! apimachinery's `strategicpatch` package applies it on the server.
//!
//! Like a JSON merge patch, except that the schema decides how lists merge:
//! - lists whose field has patch strategy `merge` and a merge key (containers by `name`,
//!   ports by `containerPort`…) merge item by item; items keep the patch's order, and
//!   items only the server has keep their place relative to the patched ones;
//! - lists of scalars with strategy `merge` (finalizers) merge as sets;
//! - every other list is replaced.
//!
//! Directives: `$patch: replace|delete` on a map, `$patch: delete|replace` on list items
//! (`merge` is rejected, as upstream rejects it), `$retainKeys`,
//! `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>`; `null` deletes.
//!
//! The schema is walked from the top-level definition through the `k8s-openapi` schemas
//! ([`super::schema`]). Types without a schema (custom resources) are rejected with 415,
//! as upstream does. Where upstream's Go implementation would fail on fields its structs
//! do not know, this one treats them as schemaless (maps merge, lists are replaced).
//! Values that come from the patch are stored without `null`s and without directive
//! keys, which is what upstream persists after decoding the merged map into its types.

use serde_json::{Map, Value};

use super::schema::{self, Node};

pub use super::schema::definition_for;
use super::{PatchError, go_format, go_json_type};

const DIRECTIVE: &str = "$patch";
const DELETE: &str = "delete";
const REPLACE: &str = "replace";
const MERGE: &str = "merge";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

const BAD_JSON_DOC: &str = "invalid JSON document";
const BAD_PRIMITIVE_LIST: &str = "invalid patch format of primitive list";
const BAD_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
const BAD_SET_ELEMENT_ORDER: &str = "invalid patch format of setElementOrder list";
const NO_LIST_OF_LISTS: &str = "lists of lists are not supported";

/// Applies a strategic merge patch to `original`, an object of the type upstream's
/// OpenAPI names `definition` (e.g. `io.k8s.api.apps.v1.Deployment`; see
/// [`super::definition_for`]).
///
/// Returns [`PatchError::StrategicMergeUnsupported`] (415) for an unknown definition.
pub fn strategic_merge(
    original: &Value,
    patch: &Value,
    definition: &str,
) -> Result<Value, PatchError> {
    if !schema::is_known_definition(definition) {
        return Err(PatchError::StrategicMergeUnsupported);
    }
    let original = match original {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        _ => return Err(PatchError::BadRequest(BAD_JSON_DOC.into())),
    };
    let patch = match patch {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        other => {
            return Err(PatchError::BadRequest(format!(
                "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                go_json_type(other)
            )));
        }
    };
    merge_map(original, patch, Node::root(Some(definition))).map(Value::Object)
}

fn merge_error(message: impl Into<String>) -> PatchError {
    PatchError::Merge(message.into())
}

fn bad_type(expected: &str, actual: &Value) -> PatchError {
    let actual = match actual {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    };
    merge_error(format!("expected a {expected}, but received a {actual}"))
}

fn no_merge_key(item: &Map<String, Value>, key: &str) -> PatchError {
    merge_error(format!(
        "map: {} does not contain declared merge key: {key}",
        go_format(&Value::Object(item.clone()))
    ))
}

/// The patch strategy of a field, without `retainKeys` (which only matters to clients
/// building patches; the server honours `$retainKeys` wherever it appears).
fn strategy(node: &Node) -> &'static str {
    node.meta
        .and_then(|m| m.strategies().find(|s| *s != "retainKeys"))
        .unwrap_or("")
}

fn merge_key(node: &Node) -> &'static str {
    node.meta.and_then(|m| m.merge_key).unwrap_or("")
}

/// The schema position of `key` inside `node`; unknown fields are schemaless.
fn child(node: &Node, key: &str) -> Node {
    node.field(key).unwrap_or(Node::DEDUCED)
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    node: Node,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.shift_remove(DIRECTIVE) {
        return match directive.as_str() {
            Some(REPLACE) => Ok(sanitized_map(patch)),
            Some(DELETE) => Ok(Map::new()),
            _ => {
                patch.insert(DIRECTIVE.into(), directive.clone());
                Err(merge_error(format!(
                    "unknown patch type: {} in map: {}",
                    go_format(&directive),
                    go_format(&Value::Object(patch))
                )))
            }
        };
    }

    apply_retain_keys(&mut original, &mut patch)?;
    merge_ordered_lists(&mut original, &mut patch, &node)?;

    for (key, patch_value) in patch {
        let (key, is_delete_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            Some(rest) => match rest.strip_prefix('/') {
                Some(field) => (field.to_string(), true),
                None => return Err(PatchError::BadRequest(BAD_PRIMITIVE_LIST.into())),
            },
            None => (key, false),
        };
        if patch_value.is_null() {
            original.shift_remove(&key);
            continue;
        }
        let Some(current) = original.get_mut(&key) else {
            if !is_delete_list && let Some(value) = sanitized(patch_value) {
                original.insert(key, value);
            }
            continue;
        };
        match (current, patch_value) {
            (Value::Object(current), Value::Object(patch_map)) => {
                let field = child(&node, &key);
                *current = if strategy(&field) == REPLACE {
                    sanitized_map(patch_map)
                } else {
                    merge_map(std::mem::take(current), patch_map, field)?
                };
            }
            (Value::Array(current), Value::Array(patch_list)) => {
                let field = child(&node, &key);
                let merged =
                    merge_list_field(std::mem::take(current), patch_list, &field, is_delete_list)?;
                *current = merged;
            }
            (current, patch_value) => {
                // Different kinds, or scalars: the patch value wins.
                if is_delete_list {
                    continue;
                }
                match sanitized(patch_value) {
                    Some(value) => *current = value,
                    None => {
                        original.shift_remove(&key);
                    }
                }
            }
        }
    }
    Ok(original)
}

/// Merges a list field according to its strategy: `merge` (or a deletion list) merges,
/// anything else replaces.
fn merge_list_field(
    original: Vec<Value>,
    patch: Vec<Value>,
    field: &Node,
    is_delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if strategy(field) == MERGE || is_delete_list {
        merge_list(
            original,
            patch,
            field.items(),
            merge_key(field),
            is_delete_list,
        )
    } else {
        Ok(sanitized_list(patch))
    }
}

/// `$retainKeys`: drop every key of the original not listed, after checking that the
/// patch only sets listed keys.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::BadRequest(BAD_RETAIN_KEYS.into()));
    };
    let retained = |key: &str| retain.iter().any(|v| v.as_str() == Some(key));
    for (key, value) in patch.iter() {
        if value.is_null()
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || key.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !retained(key) {
            return Err(PatchError::BadRequest(BAD_RETAIN_KEYS.into()));
        }
    }
    original.retain(|key, _| retained(key));
    Ok(())
}

/// `$setElementOrder/<field>`: merge the field's list, then order it as the directive
/// says (the directive first, then the patch, then the live list).
fn merge_ordered_lists(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    node: &Node,
) -> Result<(), PatchError> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for key in keys {
        let Some(order) = patch.shift_remove(&key) else {
            continue;
        };
        let Value::Array(order) = order else {
            return Err(bad_type("[]interface {}", &order));
        };
        let field_name = match key[SET_ELEMENT_ORDER.len()..].strip_prefix('/') {
            Some(name) => name.to_string(),
            None => return Err(PatchError::BadRequest(BAD_SET_ELEMENT_ORDER.into())),
        };
        let original_list = match original.get(&field_name) {
            None => None,
            Some(Value::Array(list)) => Some(list.clone()),
            Some(other) => return Err(bad_type("[]interface {}", other)),
        };
        let patch_list = match patch.get(&field_name) {
            None => None,
            Some(Value::Array(list)) => Some(list.clone()),
            Some(other) => return Err(bad_type("[]interface {}", other)),
        };
        let field = child(node, &field_name);
        let key_name = merge_key(&field);
        validate_against_order(patch_list.as_deref().unwrap_or_default(), &order, key_name)?;

        let merged = match (&original_list, &patch_list) {
            (Some(current), None) => current.clone(),
            (None, Some(list)) => sanitized_list(list.clone()),
            (Some(current), Some(list)) => {
                merge_list_field(current.clone(), list.clone(), &field, false)?
            }
            (None, None) => continue,
        };
        let server_order = original_list.unwrap_or_default();
        let (in_order, server_only) = partition(merged, &order, key_name)?;
        let ordered =
            normalize_element_order(in_order, server_only, &order, &server_order, key_name)?;
        original.insert(field_name.clone(), Value::Array(ordered));
        patch.shift_remove(&field_name);
    }
    Ok(())
}

/// Checks that the patch list's items appear in the `$setElementOrder` list, in the same
/// relative order (deletions aside).
fn validate_against_order(patch: &[Value], order: &[Value], key: &str) -> Result<(), PatchError> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let items: Vec<&Value> = if key.is_empty() {
        patch.iter().collect()
    } else {
        let mut kept = Vec::new();
        for item in patch {
            let Value::Object(map) = item else {
                return Err(bad_type("map[string]interface {}", item));
            };
            if map.get(DIRECTIVE).and_then(Value::as_str) != Some(DELETE) {
                kept.push(item);
            }
        }
        kept
    };
    let (mut p, mut o) = (0, 0);
    while p < items.len() && o < order.len() {
        if items[p].get(DIRECTIVE).is_some() {
            p += 1;
            continue;
        }
        if same_item(items[p], &order[o], key)? {
            p += 1;
        }
        o += 1;
    }
    if p < items.len() {
        return Err(merge_error(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}\n",
            go_format(&Value::Array(patch.to_vec())),
            go_format(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

fn same_item(left: &Value, right: &Value, key: &str) -> Result<bool, PatchError> {
    if key.is_empty() {
        return Ok(left == right);
    }
    let (Value::Object(l), Value::Object(r)) = (left, right) else {
        let bad = if left.is_object() { right } else { left };
        return Err(bad_type("map[string]interface {}", bad));
    };
    let lv = l.get(key).ok_or_else(|| no_merge_key(l, key))?;
    let rv = r.get(key).ok_or_else(|| no_merge_key(r, key))?;
    Ok(lv == rv)
}

/// What the items of the lists being merged are.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ElementKind {
    Map,
    Scalar,
}

/// The common kind of the items of the lists; upstream requires them all to be of one
/// type and rejects lists of lists.
fn element_kind(lists: &[&[Value]]) -> Result<Option<ElementKind>, PatchError> {
    let mut kind: Option<(u8, ElementKind)> = None;
    for item in lists.iter().flat_map(|l| l.iter()) {
        let this = match item {
            Value::Array(_) => return Err(PatchError::Unprocessable(NO_LIST_OF_LISTS.into())),
            Value::Object(_) => (0, ElementKind::Map),
            Value::String(_) => (1, ElementKind::Scalar),
            Value::Number(_) => (2, ElementKind::Scalar),
            Value::Bool(_) => (3, ElementKind::Scalar),
            Value::Null => (4, ElementKind::Scalar),
        };
        match kind {
            None => kind = Some(this),
            Some((tag, _)) if tag != this.0 => {
                let all: Vec<Value> = lists.iter().map(|l| Value::Array(l.to_vec())).collect();
                return Err(merge_error(format!(
                    "list element types are not identical: {}",
                    go_format(&Value::Array(all))
                )));
            }
            Some(_) => {}
        }
    }
    Ok(kind.map(|(_, k)| k))
}

fn merge_list(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    items: Node,
    key: &str,
    is_delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let Some(kind) = element_kind(&[&original, &patch])? else {
        return Ok(original);
    };
    let (server_order, patch, merged) = if kind == ElementKind::Scalar {
        if is_delete_list {
            original.retain(|v| !patch.contains(v));
            return Ok(original);
        }
        let mut merged = original.clone();
        for item in &patch {
            if !merged.contains(item) {
                merged.push(item.clone());
            }
        }
        (original, patch, merged)
    } else {
        if key.is_empty() {
            return Err(merge_error(format!(
                "cannot merge lists without merge key for {}",
                items.definition().unwrap_or("struct")
            )));
        }
        let (original, patch) = apply_list_directives(original, patch, key)?;
        let merged = merge_items(original.clone(), &patch, key, items)?;
        (original, patch, merged)
    };
    let (in_patch, server_only) = partition(merged, &patch, key)?;
    normalize_element_order(in_patch, server_only, &patch, &server_order, key)
}

/// Handles `$patch` items of a keyed list: `delete` removes matching items, `replace`
/// makes the rest of the patch the whole list. Returns the original and the patch
/// without directive items.
fn apply_list_directives(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Value::Object(map) = &item else {
            return Err(bad_type("map[string]interface {}", &item));
        };
        match map.get(DIRECTIVE) {
            None => plain.push(item),
            Some(directive) => match directive.as_str() {
                Some(DELETE) => {
                    let value = map.get(key).ok_or_else(|| no_merge_key(map, key))?;
                    original.retain(|o| o.get(key) != Some(value));
                }
                Some(REPLACE) => replace = true,
                Some(MERGE) => {
                    return Err(merge_error(
                        "merging lists cannot yet be specified in the patch",
                    ));
                }
                _ => {
                    return Err(merge_error(format!(
                        "unknown patch type: {} in map: {}",
                        go_format(directive),
                        go_format(&item)
                    )));
                }
            },
        }
    }
    if replace {
        Ok((sanitized_list(plain), Vec::new()))
    } else {
        Ok((original, plain))
    }
}

/// Merges each patch item into the original item with the same key, appending new ones.
fn merge_items(
    mut original: Vec<Value>,
    patch: &[Value],
    key: &str,
    items: Node,
) -> Result<Vec<Value>, PatchError> {
    for item in patch {
        let Value::Object(map) = item else {
            return Err(bad_type("map[string]interface {}", item));
        };
        let value = map.get(key).ok_or_else(|| no_merge_key(map, key))?;
        let mut found = None;
        for (i, o) in original.iter().enumerate() {
            match o {
                Value::Object(om) if om.get(key) == Some(value) => {
                    found = Some(i);
                    break;
                }
                Value::Object(_) => {}
                _ => return Err(merge_error(format!("value for key {i} is not a map"))),
            }
        }
        match found {
            Some(i) => {
                let current = match std::mem::take(&mut original[i]) {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                original[i] = Value::Object(merge_map(current, map.clone(), items)?);
            }
            None => {
                if let Some(value) = sanitized(item.clone()) {
                    original.push(value);
                }
            }
        }
    }
    Ok(original)
}

/// Position of `item` in `list`: by merge key for maps, by value for scalars.
fn position(list: &[Value], item: &Value, key: &str) -> Option<usize> {
    if key.is_empty() {
        return list.iter().position(|v| v == item);
    }
    let wanted = item.get(key)?;
    list.iter().position(|v| v.get(key) == Some(wanted))
}

/// Splits `merged` into the items present in `by` and the others.
fn partition(
    merged: Vec<Value>,
    by: &[Value],
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for item in merged {
        if !key.is_empty() {
            let Value::Object(map) = &item else {
                return Err(bad_type("map[string]interface {}", &item));
            };
            if !map.contains_key(key) {
                return Err(no_merge_key(map, key));
            }
        }
        if position(by, &item, key).is_some() {
            present.push(item);
        } else {
            absent.push(item);
        }
    }
    Ok((present, absent))
}

/// Orders the patched items by `patch_order` and the server-only items by
/// `server_order`, then interleaves them: a server-only item goes before a patched item
/// when both are in the live list and it came first there.
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: &str,
) -> Result<Vec<Value>, PatchError> {
    let patch_items = sort_by_order(patch_items, patch_order, key)?;
    let server_only = sort_by_order(server_only, server_order, key)?;
    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => out.extend(left.next()),
            (None, Some(_)) => out.extend(right.next()),
            (Some(l), Some(r)) => {
                let li = position(server_order, l, key);
                let ri = position(server_order, r, key);
                match (li, ri) {
                    (Some(li), Some(ri)) if li < ri => out.extend(left.next()),
                    _ => out.extend(right.next()),
                }
            }
        }
    }
    Ok(out)
}

/// Stable sort by position in `order`; for keyed lists, `$patch: delete` items go last.
fn sort_by_order(items: Vec<Value>, order: &[Value], key: &str) -> Result<Vec<Value>, PatchError> {
    let (mut items, deletions): (Vec<Value>, Vec<Value>) = if key.is_empty() {
        (items, Vec::new())
    } else {
        for item in items.iter().chain(order) {
            let Value::Object(map) = item else {
                return Err(bad_type("map[string]interface {}", item));
            };
            if !map.contains_key(key) {
                return Err(no_merge_key(map, key));
            }
        }
        items
            .into_iter()
            .partition(|item| item.get(DIRECTIVE).and_then(Value::as_str) != Some(DELETE))
    };
    items.sort_by_key(|item| position(order, item, key).unwrap_or(usize::MAX));
    items.extend(deletions);
    Ok(items)
}

/// A patch value as it is stored: `null` members dropped, `$patch` maps and list items
/// dropped, other directive keys dropped. `None` when the value itself is a directive.
fn sanitized(value: Value) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if map.contains_key(DIRECTIVE) {
                return None;
            }
            Some(Value::Object(sanitized_map(map)))
        }
        Value::Array(items) => Some(Value::Array(sanitized_list(items))),
        other => Some(other),
    }
}

fn sanitized_map(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .filter(|(k, v)| !v.is_null() && !is_directive_key(k))
        .filter_map(|(k, v)| sanitized(v).map(|v| (k, v)))
        .collect()
}

fn sanitized_list(items: Vec<Value>) -> Vec<Value> {
    items.into_iter().filter_map(sanitized).collect()
}

fn is_directive_key(key: &str) -> bool {
    key == DIRECTIVE
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";
    const POD: &str = "io.k8s.api.core.v1.Pod";

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "labels": {"app": "web"},
                "finalizers": ["a.example.com/x", "b.example.com/y"]
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                            {"name": "sidecar", "image": "busybox", "args": ["sleep", "1000"]}
                        ],
                        "tolerations": [{"key": "k", "operator": "Exists"}],
                        "volumes": [{"name": "data", "emptyDir": {}}]
                    }
                }
            }
        })
    }

    /// Applies `patch` to `deployment()` and returns the result.
    fn patched(patch: Value) -> Value {
        strategic_merge(&deployment(), &patch, DEPLOYMENT).unwrap_or_else(|e| panic!("{e}"))
    }

    fn names(list: &Value) -> Vec<String> {
        list.as_array()
            .map(|l| {
                l.iter()
                    .map(|i| i["name"].as_str().unwrap_or("?").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn strategic_merge_table() {
        // (name, patch, pointer into result, expected value there)
        let cases: Vec<(&str, Value, &str, Value)> = vec![
            (
                "kubectl set image merges containers by name",
                json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}}),
                "/spec/template/spec/containers",
                json!([
                    {"name": "web", "image": "nginx:2", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                    {"name": "sidecar", "image": "busybox", "args": ["sleep", "1000"]}
                ]),
            ),
            (
                "a new container goes first (items unknown to the server lead)",
                json!({"spec": {"template": {"spec": {"containers": [{"name": "log", "image": "fluent", "x": null}]}}}}),
                "/spec/template/spec/containers/0",
                json!({"name": "log", "image": "fluent"}),
            ),
            (
                "$patch: delete of a container",
                json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}),
                "/spec/template/spec/containers",
                json!([
                    {"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
                ]),
            ),
            (
                "$patch: replace of a keyed list",
                json!({"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "x"}, {"$patch": "replace"}]}}}}),
                "/spec/template/spec/containers",
                json!([{"name": "only", "image": "x"}]),
            ),
            (
                "nested keyed list (env) merges inside the merged container",
                json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}]}}}}),
                "/spec/template/spec/containers/0/env",
                json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}]),
            ),
            (
                "lists without strategy are replaced (tolerations, args)",
                json!({"spec": {"template": {"spec": {"tolerations": [{"key": "z", "operator": "Exists"}],
                    "containers": [{"name": "sidecar", "args": ["sleep"]}]}}}}),
                "/spec/template/spec",
                json!({
                    "containers": [
                        {"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                        {"name": "sidecar", "image": "busybox", "args": ["sleep"]}
                    ],
                    "tolerations": [{"key": "z", "operator": "Exists"}],
                    "volumes": [{"name": "data", "emptyDir": {}}]
                }),
            ),
            (
                "finalizers merge as a set",
                json!({"metadata": {"finalizers": ["b.example.com/y", "c.example.com/z"]}}),
                "/metadata/finalizers",
                json!(["a.example.com/x", "b.example.com/y", "c.example.com/z"]),
            ),
            (
                "$deleteFromPrimitiveList removes finalizers",
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example.com/x"]}}),
                "/metadata/finalizers",
                json!(["b.example.com/y"]),
            ),
            (
                "null deletes, labels merge",
                json!({"metadata": {"labels": {"app": null, "tier": "front"}}, "spec": {"replicas": null}}),
                "",
                {
                    let mut d = deployment();
                    d["metadata"]["labels"] = json!({"tier": "front"});
                    d["spec"]
                        .as_object_mut()
                        .map(|s| s.shift_remove("replicas"));
                    d
                },
            ),
            (
                "kubectl apply: $retainKeys on strategy (Recreate)",
                json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
                "/spec/strategy",
                json!({"type": "Recreate"}),
            ),
            (
                "$patch: replace on a map",
                json!({"spec": {"selector": {"$patch": "replace", "matchLabels": {"app": "new"}}}}),
                "/spec/selector",
                json!({"matchLabels": {"app": "new"}}),
            ),
            (
                "$patch: delete on a map empties it",
                json!({"spec": {"template": {"metadata": {"labels": {"$patch": "delete"}}}}}),
                "/spec/template/metadata/labels",
                json!({}),
            ),
            (
                "$patch: delete on a missing map leaves it absent",
                json!({"spec": {"template": {"metadata": {"annotations": {"$patch": "delete"}}}}}),
                "/spec/template/metadata",
                json!({"labels": {"app": "web"}}),
            ),
            (
                "kubectl rollout restart adds an annotation",
                json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z"}}}}}),
                "/spec/template/metadata",
                json!({"labels": {"app": "web"}, "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z"}}),
            ),
            (
                "ports merge by containerPort",
                json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "ports": [{"containerPort": 443, "protocol": "TCP"}]}]}}}}),
                "/spec/template/spec/containers/0/ports",
                json!([{"containerPort": 443, "protocol": "TCP"}, {"containerPort": 80, "protocol": "TCP"}]),
            ),
            (
                "volumes (merge,retainKeys) with $retainKeys in an item",
                json!({"spec": {"template": {"spec": {"volumes": [{"name": "data", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/d"}}]}}}}),
                "/spec/template/spec/volumes",
                json!([{"name": "data", "hostPath": {"path": "/d"}}]),
            ),
            (
                "unknown fields from the patch are kept",
                json!({"spec": {"somethingNew": {"a": [1]}}}),
                "/spec/somethingNew",
                json!({"a": [1]}),
            ),
        ];
        for (name, patch, pointer, want) in cases {
            let got = patched(patch);
            assert_eq!(got.pointer(pointer), Some(&want), "{name}: got {got:#}");
        }
    }

    #[test]
    fn kubectl_apply_three_way_patch_with_set_element_order() {
        // kubectl apply after reordering containers, changing one image and dropping
        // the sidecar, with a server-added container ("injected") it never knew about.
        let mut live = deployment();
        if let Some(containers) = live["spec"]["template"]["spec"]["containers"].as_array_mut() {
            containers.insert(1, json!({"name": "injected", "image": "proxy"}));
        }
        let patch = json!({
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "log"}, {"name": "web"}],
                "containers": [
                    {"name": "log", "image": "fluent"},
                    {"name": "web", "image": "nginx:3"},
                    {"$patch": "delete", "name": "sidecar"}
                ]
            }}}
        });
        let got = strategic_merge(&live, &patch, DEPLOYMENT).unwrap();
        let containers = &got["spec"]["template"]["spec"]["containers"];
        assert_eq!(names(containers), ["log", "web", "injected"]);
        assert_eq!(containers[1]["image"], "nginx:3");
        assert_eq!(containers[1]["env"][0]["name"], "A");

        // Only reordering: the directive alone reorders the live list.
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}]
        }}}});
        let got = strategic_merge(&deployment(), &patch, DEPLOYMENT).unwrap();
        assert_eq!(
            names(&got["spec"]["template"]["spec"]["containers"]),
            ["sidecar", "web"]
        );

        // Primitive list ordering with deletions.
        let patch = json!({"metadata": {
            "$setElementOrder/finalizers": ["c", "b.example.com/y"],
            "$deleteFromPrimitiveList/finalizers": ["a.example.com/x"],
            "finalizers": ["c"]
        }});
        let got = strategic_merge(&deployment(), &patch, DEPLOYMENT).unwrap();
        assert_eq!(
            got["metadata"]["finalizers"],
            json!(["c", "b.example.com/y"])
        );
    }

    #[test]
    fn patch_order_interleaves_with_server_only_items() {
        // Upstream's mergeSortedSlice: original [a b c], patch [d b] → [d a b c].
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        let patch = json!({"spec": {"containers": [{"name": "d"}, {"name": "b", "image": "x"}]}});
        let got = strategic_merge(&pod, &patch, POD).unwrap();
        assert_eq!(names(&got["spec"]["containers"]), ["d", "a", "b", "c"]);
        // Patch order wins among patched items; the server-only "b" goes before the
        // first patched item that follows it in the live list.
        let patch = json!({"spec": {"containers": [{"name": "c"}, {"name": "a"}]}});
        let got = strategic_merge(&pod, &patch, POD).unwrap();
        assert_eq!(names(&got["spec"]["containers"]), ["b", "c", "a"]);
    }

    #[test]
    fn other_types_and_nested_schemas() {
        // Service ports merge by port; node taints are atomic; status conditions merge by type.
        let svc = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}], "selector": {"a": "b"}}});
        let got = strategic_merge(
            &svc,
            &json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
            "io.k8s.api.core.v1.Service",
        )
        .unwrap();
        assert_eq!(
            got["spec"]["ports"],
            json!([{"port": 80, "protocol": "TCP", "targetPort": 9090}])
        );

        let node = json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "DiskPressure", "status": "False"}]}});
        let patch = json!({"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let got = strategic_merge(&node, &patch, "io.k8s.api.core.v1.Node").unwrap();
        assert_eq!(
            got["spec"]["taints"],
            json!([{"key": "b", "effect": "NoSchedule"}])
        );
        assert_eq!(
            got["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}])
        );

        // PodDisruptionBudget selector has strategy "replace".
        let pdb = json!({"spec": {"selector": {"matchLabels": {"a": "b"}}}});
        let got = strategic_merge(
            &pdb,
            &json!({"spec": {"selector": {"matchExpressions": []}}}),
            "io.k8s.api.policy.v1.PodDisruptionBudget",
        )
        .unwrap();
        assert_eq!(got["spec"]["selector"], json!({"matchExpressions": []}));
    }

    #[test]
    fn strategic_merge_errors() {
        let cases: Vec<(&str, Value, u16, &str)> = vec![
            (
                "missing merge key",
                json!({"spec": {"template": {"spec": {"containers": [{"image": "nginx"}]}}}}),
                500,
                "map: map[image:nginx] does not contain declared merge key: name",
            ),
            (
                "$patch: merge on a list item",
                json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "$patch": "merge"}]}}}}),
                500,
                "merging lists cannot yet be specified in the patch",
            ),
            (
                "$patch: merge on a map",
                json!({"spec": {"strategy": {"$patch": "merge"}}}),
                500,
                "unknown patch type: merge in map: map[$patch:merge]",
            ),
            (
                "unknown list directive",
                json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "$patch": "zap"}]}}}}),
                500,
                "unknown patch type: zap in map: map[$patch:zap name:web]",
            ),
            (
                "retainKeys not a list",
                json!({"spec": {"strategy": {"$retainKeys": "type"}}}),
                400,
                "invalid patch format of retainKeys",
            ),
            (
                "patch sets a key outside retainKeys",
                json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 2}}}}),
                400,
                "invalid patch format of retainKeys",
            ),
            (
                "bad deleteFromPrimitiveList key",
                json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}}),
                400,
                "invalid patch format of primitive list",
            ),
            (
                "bad setElementOrder key",
                json!({"metadata": {"$setElementOrder": ["a"]}}),
                400,
                "invalid patch format of setElementOrder list",
            ),
            (
                "setElementOrder disagrees with the patch",
                json!({"spec": {"template": {"spec": {
                    "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                    "containers": [{"name": "sidecar", "image": "a"}, {"name": "web", "image": "b"}]
                }}}}),
                500,
                "The order in patch list:\n[map[image:a name:sidecar] map[image:b name:web]]\n doesn't match $setElementOrder list:\n[map[name:web] map[name:sidecar]]\n",
            ),
            (
                "list of lists",
                json!({"metadata": {"finalizers": [["a"]]}}),
                422,
                "lists of lists are not supported",
            ),
            (
                "mixed element types",
                json!({"metadata": {"finalizers": [1]}}),
                500,
                "list element types are not identical: [[a.example.com/x b.example.com/y] [1]]",
            ),
            (
                "patch is not an object",
                json!([1]),
                400,
                "json: cannot unmarshal array into Go value of type map[string]interface {}",
            ),
        ];
        for (name, patch, code, message) in cases {
            let err = strategic_merge(&deployment(), &patch, DEPLOYMENT).expect_err(name);
            assert_eq!(err.status_code(), code, "{name}: {err}");
            assert_eq!(err.to_string(), message, "{name}");
        }
    }

    #[test]
    fn malformed_patches_never_panic() {
        let weird = [
            json!({"spec": {"template": {"spec": {"containers": "not a list"}}}}),
            json!({"spec": {"template": {"spec": {"containers": [1, 2]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [null]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "ports": [{"$patch": "delete"}]}]}}}}),
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": "x"}}}}),
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [1, {"name": "web"}]}}}}),
            json!({"spec": {"template": {"spec": {"$setElementOrder/volumes": [{"name": "data"}], "volumes": {"a": 1}}}}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
            json!({"metadata": {"$deleteFromPrimitiveList/labels": ["a"]}}),
            json!({"metadata": {"finalizers": [{"a": 1}]}}),
            json!({"$patch": "replace"}),
            json!({"$patch": 7}),
            json!({"$retainKeys": [1, null], "spec": null}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "$patch": "delete"}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"name": {"x": 1}}]}}}}),
        ];
        for patch in weird {
            // Either outcome is fine; a panic is not.
            let _ = strategic_merge(&deployment(), &patch, DEPLOYMENT);
            let _ = strategic_merge(&json!({"spec": 1}), &patch, DEPLOYMENT);
        }
    }

    #[test]
    fn custom_resources_are_unsupported() {
        let err = strategic_merge(&json!({}), &json!({}), "com.example.v1.Widget").unwrap_err();
        assert_eq!(err, PatchError::StrategicMergeUnsupported);
        assert_eq!(err.status_code(), 415);
    }
}
