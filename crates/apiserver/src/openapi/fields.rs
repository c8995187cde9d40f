//! Unknown-field detection and pruning against a schema.
//!
//! One walker serves both: `fieldValidation=Strict|Warn` on any kind reports the fields
//! the schema does not know, and custom resources are pruned (unknown fields dropped) as
//! upstream does before storing them. Paths are reported as upstream's strict decoder
//! prints them: `spec.foo`, `spec.containers[0].foo`, map entries as `.key`.
//!
//! Two schema styles meet here. Built-in definitions come from Go types, where an object
//! schema without properties (`RawExtension`, `FieldsV1`, `JSON`) holds arbitrary data.
//! Structural (CRD) schemas are stricter: an object without properties keeps nothing
//! unless it says `x-kubernetes-preserve-unknown-fields: true` or has
//! `additionalProperties`. Following a `$ref` into a built-in definition (a custom
//! resource's `metadata`) switches to the built-in rules.

use serde_json::{Map, Value};

use super::registry::{OBJECT_META, V2_PREFIX, V3_PREFIX};

/// Which rules a schema follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Generated from Go types.
    Builtin,
    /// A CRD structural schema.
    Structural,
}

/// Looks up a definition by name.
pub(crate) trait Resolve {
    fn resolve(&self, name: &str) -> Option<(&Value, Mode)>;
}

/// Limits how many schema nodes one position may combine (guards reference cycles).
const MAX_NODES: usize = 32;

/// The schema nodes that apply at one position: the node, its `$ref` target and its
/// `allOf` members, transitively.
struct View<'a> {
    nodes: Vec<&'a Map<String, Value>>,
    mode: Mode,
}

impl<'a> View<'a> {
    fn new(resolver: &'a dyn Resolve, schema: &'a Value, mode: Mode) -> View<'a> {
        let mut view = View {
            nodes: Vec::new(),
            mode,
        };
        let mut stack = vec![schema];
        while let Some(node) = stack.pop() {
            let Value::Object(map) = node else { continue };
            if view.nodes.len() >= MAX_NODES {
                break;
            }
            view.nodes.push(map);
            if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
                let name = reference
                    .strip_prefix(V2_PREFIX)
                    .or_else(|| reference.strip_prefix(V3_PREFIX));
                if let Some((target, target_mode)) = name.and_then(|n| resolver.resolve(n)) {
                    stack.push(target);
                    view.mode = target_mode;
                }
            }
            if let Some(Value::Array(all)) = map.get("allOf") {
                stack.extend(all.iter());
            }
        }
        view
    }

    fn first(&self, key: &str) -> Option<&'a Value> {
        self.nodes.iter().find_map(|n| n.get(key))
    }

    fn flag(&self, key: &str) -> bool {
        self.nodes
            .iter()
            .any(|n| n.get(key).and_then(Value::as_bool) == Some(true))
    }

    fn property(&self, name: &str) -> Option<&'a Value> {
        self.nodes
            .iter()
            .find_map(|n| n.get("properties").and_then(|p| p.get(name)))
    }

    fn has_properties(&self) -> bool {
        self.nodes
            .iter()
            .any(|n| n.get("properties").is_some_and(Value::is_object))
    }
}

/// One step of a field path.
enum Step {
    Key(String),
    Index(usize),
}

fn render(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// Walks a value against a schema, collecting unknown field paths and, when pruning,
/// removing them.
pub(crate) struct Walker<'r> {
    resolver: &'r dyn Resolve,
    prune: bool,
    pub unknown: Vec<String>,
}

impl<'r> Walker<'r> {
    pub(crate) fn new(resolver: &'r dyn Resolve, prune: bool) -> Walker<'r> {
        Walker {
            resolver,
            prune,
            unknown: Vec::new(),
        }
    }

    pub(crate) fn walk(&mut self, schema: &Value, value: &mut Value, mode: Mode) {
        let mut path = Vec::new();
        self.visit(schema, value, mode, &mut path);
    }

    fn visit(&mut self, schema: &Value, value: &mut Value, mode: Mode, path: &mut Vec<Step>) {
        let resolver = self.resolver;
        let view = View::new(resolver, schema, mode);
        match value {
            Value::Object(map) => self.visit_object(&view, map, path),
            Value::Array(items) => {
                let Some(item_schema) = view.first("items").filter(|s| s.is_object()) else {
                    return;
                };
                for (i, item) in items.iter_mut().enumerate() {
                    path.push(Step::Index(i));
                    self.visit(item_schema, item, view.mode, path);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    fn visit_object(
        &mut self,
        view: &View<'_>,
        map: &mut Map<String, Value>,
        path: &mut Vec<Step>,
    ) {
        let preserve = view.flag("x-kubernetes-preserve-unknown-fields");
        let embedded = view.flag("x-kubernetes-embedded-resource");
        let additional = view.first("additionalProperties");
        let has_properties = view.has_properties();
        if !has_properties && additional.is_none() {
            // Nothing is described: arbitrary data for Go-typed schemas and schemas
            // that preserve unknown fields; an object holding nothing for structural ones.
            if preserve || view.mode == Mode::Builtin || view.first("type").is_none() {
                return;
            }
        }
        let structural = view.mode == Mode::Structural;
        let mut remove: Vec<String> = Vec::new();
        for (key, child) in map.iter_mut() {
            let key_str = key.as_str();
            path.push(Step::Key(key.clone()));
            if let Some(prop) = view.property(key_str) {
                if structural
                    && self.prune
                    && child.is_null()
                    && !nullable_or_defaulted(self.resolver, prop)
                {
                    // Upstream drops nulls the schema does not allow (and has no default for).
                    remove.push(key.clone());
                } else {
                    self.visit(prop, child, view.mode, path);
                }
            } else if embedded && (key_str == "apiVersion" || key_str == "kind") {
                // Embedded objects always carry their type.
            } else if embedded && key_str == "metadata" {
                let object_meta =
                    serde_json::json!({ "$ref": format!("{V2_PREFIX}{OBJECT_META}") });
                self.visit(&object_meta, child, Mode::Builtin, path);
            } else if let Some(schema) = additional.filter(|a| a.is_object()) {
                self.visit(schema, child, view.mode, path);
            } else if preserve || additional.and_then(Value::as_bool) == Some(true) {
                // Kept as is.
            } else {
                self.unknown.push(render(path));
                remove.push(key.clone());
            }
            path.pop();
        }
        if self.prune {
            for key in remove {
                map.shift_remove(&key);
            }
        }
    }
}

fn nullable_or_defaulted(resolver: &dyn Resolve, schema: &Value) -> bool {
    let view = View::new(resolver, schema, Mode::Structural);
    view.flag("nullable") || view.first("default").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct NoDefs;
    impl Resolve for NoDefs {
        fn resolve(&self, _: &str) -> Option<(&Value, Mode)> {
            None
        }
    }

    #[test]
    fn structural_pruning_table() {
        let schema = json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "size": {"type": "integer"},
                        "tags": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "empty": {"type": "object"},
                        "opt": {"type": "string", "nullable": true},
                        "embedded": {"type": "object", "x-kubernetes-embedded-resource": true,
                                     "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                    }
                }
            }
        });
        let cases = [
            (
                json!({"spec": {"size": 1}}),
                json!({"spec": {"size": 1}}),
                vec![],
            ),
            (
                json!({"spec": {"size": 1, "bad": 2}}),
                json!({"spec": {"size": 1}}),
                vec!["spec.bad"],
            ),
            (
                json!({"spec": {"tags": [{"k": "a"}, {"k": "b", "x": 1}]}}),
                json!({"spec": {"tags": [{"k": "a"}, {"k": "b"}]}}),
                vec!["spec.tags[1].x"],
            ),
            (
                json!({"spec": {"labels": {"a": "b"}}}),
                json!({"spec": {"labels": {"a": "b"}}}),
                vec![],
            ),
            (
                json!({"spec": {"free": {"any": {"thing": 1}}}}),
                json!({"spec": {"free": {"any": {"thing": 1}}}}),
                vec![],
            ),
            (
                json!({"spec": {"empty": {"a": 1}}}),
                json!({"spec": {"empty": {}}}),
                vec!["spec.empty.a"],
            ),
            (
                json!({"spec": {"size": null, "opt": null}}),
                json!({"spec": {"opt": null}}),
                vec![],
            ),
            (
                json!({"spec": {"embedded": {"apiVersion": "v1", "kind": "Pod", "spec": {"x": 1}, "y": 2}}}),
                json!({"spec": {"embedded": {"apiVersion": "v1", "kind": "Pod", "spec": {"x": 1}}}}),
                vec!["spec.embedded.y"],
            ),
            (json!({"top": 1}), json!({}), vec!["top"]),
        ];
        for (input, want, unknown) in cases {
            let mut value = input.clone();
            let mut walker = Walker::new(&NoDefs, true);
            walker.walk(&schema, &mut value, Mode::Structural);
            assert_eq!(value, want, "{input}");
            assert_eq!(walker.unknown, unknown, "{input}");
        }
    }

    #[test]
    fn builtin_objects_without_properties_are_arbitrary() {
        let schema = json!({"type": "object", "properties": {"raw": {"type": "object"}}});
        let mut value = json!({"raw": {"anything": {"goes": true}}, "nope": 1});
        let mut walker = Walker::new(&NoDefs, false);
        walker.walk(&schema, &mut value, Mode::Builtin);
        assert_eq!(walker.unknown, vec!["nope"]);
        // Not pruning leaves the value alone.
        assert_eq!(value["nope"], 1);
    }
}
