//! Definitions of custom resources, derived from a CRD version's `openAPIV3Schema`.
//!
//! As upstream: the definition is named after the reversed group
//! (`com.example.v1.Widget`), `metadata` refers to `ObjectMeta`, `apiVersion`/`kind` are
//! described, and the kind and its list carry `x-kubernetes-group-version-kind`. The
//! OpenAPI 3 form keeps the schema as written; the swagger 2.0 form drops what swagger
//! (and kubectl's client-side validation of old versions) cannot express — `nullable`
//! and preserve-unknown-fields subtrees become untyped, int-or-string loses its type and
//! the `oneOf`/`anyOf`/`allOf`/`not` value validations are removed.

use serde_json::{Map, Value, json};

use super::registry::{
    Gvk, OBJECT_META, V2_PREFIX, add_gvk, list_definition_name, list_schema, to_v3,
};

/// The definitions of one custom resource version.
pub(crate) struct CustomDefs {
    pub name: String,
    pub list_name: String,
    pub v2: Value,
    pub v3: Value,
    pub list_v2: Value,
    pub list_v3: Value,
}

/// `example.com`, `v1`, `Widget` → `com.example.v1.Widget`.
pub(crate) fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// Builds both forms of the definitions from the CRD's schema (already an object).
pub(crate) fn build(gvk: &Gvk, list_kind: &str, schema: &Value) -> CustomDefs {
    let name = definition_name(&gvk.group, &gvk.version, &gvk.kind);
    let list_name = list_definition_name(&name, list_kind);
    let list_gvk = Gvk::new(&gvk.group, &gvk.version, list_kind);

    let mut v2 = to_v2(schema);
    complete_root(&mut v2, false);
    add_gvk(&mut v2, gvk);
    // The schema itself carries no references; only the added `metadata` one needs
    // converting, which `to_v3` does.
    let mut v3 = schema.clone();
    complete_root(&mut v3, true);
    if let Some(meta) = v3.pointer_mut("/properties/metadata") {
        *meta = to_v3(meta);
    }
    add_gvk(&mut v3, gvk);

    let list_v2 = list_schema(&name, &gvk.kind, &list_gvk);
    let list_v3 = to_v3(&list_v2);
    CustomDefs {
        name,
        list_name,
        v2,
        v3,
        list_v2,
        list_v3,
    }
}

/// Adds `apiVersion`, `kind` and `metadata` to a root schema's properties; unless
/// `always`, only when the root lists properties (a root that is untyped in the swagger
/// form must stay untyped).
pub(crate) fn complete_root(root: &mut Value, always: bool) {
    let Value::Object(map) = root else { return };
    if always {
        map.entry("properties")
            .or_insert_with(|| Value::Object(Map::new()));
    }
    let Some(Value::Object(props)) = map.get_mut("properties") else {
        return;
    };
    props.entry("apiVersion").or_insert_with(|| {
        json!({
            "description": "APIVersion defines the versioned schema of this representation of an object.",
            "type": "string",
        })
    });
    props.entry("kind").or_insert_with(|| {
        json!({
            "description": "Kind is a string value representing the REST resource this object represents.",
            "type": "string",
        })
    });
    props.insert(
        "metadata".into(),
        json!({"$ref": format!("{V2_PREFIX}{OBJECT_META}"), "description": "Standard object's metadata."}),
    );
    map.entry("type").or_insert_with(|| "object".into());
}

fn truthy(map: &Map<String, Value>, key: &str) -> bool {
    map.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// The swagger 2.0 form of a structural schema.
pub(crate) fn to_v2(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    let untyped = truthy(map, "nullable") || truthy(map, "x-kubernetes-preserve-unknown-fields");
    for (k, v) in map {
        match k.as_str() {
            "nullable" | "oneOf" | "anyOf" | "allOf" | "not" => {}
            "type" | "items" | "properties" | "additionalProperties" if untyped => {}
            "type" if truthy(map, "x-kubernetes-int-or-string") => {}
            "properties" | "patternProperties" | "definitions" => {
                let Value::Object(children) = v else { continue };
                let converted = children
                    .iter()
                    .map(|(name, child)| (name.clone(), to_v2(child)))
                    .collect();
                out.insert(k.clone(), Value::Object(converted));
            }
            "items" | "additionalProperties" => {
                out.insert(k.clone(), if v.is_object() { to_v2(v) } else { v.clone() });
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    // An array without an item schema cannot be expressed in swagger's model.
    if out.get("type").and_then(Value::as_str) == Some("array") && !out.contains_key("items") {
        out.remove("type");
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_reverse_the_group() {
        assert_eq!(
            definition_name("example.com", "v1", "Widget"),
            "com.example.v1.Widget"
        );
        assert_eq!(
            definition_name("cert-manager.io", "v1", "Certificate"),
            "io.cert-manager.v1.Certificate"
        );
    }

    #[test]
    fn v2_form_table() {
        let cases = [
            (json!({"type": "string", "nullable": true}), json!({})),
            (
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"a": {}}}),
                json!({"x-kubernetes-preserve-unknown-fields": true}),
            ),
            (
                json!({"x-kubernetes-int-or-string": true, "type": "string", "anyOf": [{"type": "integer"}]}),
                json!({"x-kubernetes-int-or-string": true}),
            ),
            (json!({"type": "array"}), json!({})),
            (
                json!({"type": "object", "properties": {"a": {"type": "integer", "minimum": 1, "nullable": false}}}),
                json!({"type": "object", "properties": {"a": {"type": "integer", "minimum": 1}}}),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(to_v2(&input), want, "{input}");
        }
    }

    #[test]
    fn root_gets_metadata_and_gvk() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object"}}});
        let defs = build(
            &Gvk::new("example.com", "v1", "Widget"),
            "WidgetList",
            &schema,
        );
        assert_eq!(defs.name, "com.example.v1.Widget");
        assert_eq!(defs.list_name, "com.example.v1.WidgetList");
        assert_eq!(
            defs.v2["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert_eq!(
            defs.v3["properties"]["metadata"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert_eq!(
            defs.v3["x-kubernetes-group-version-kind"][0]["kind"],
            "Widget"
        );
        assert_eq!(
            defs.list_v3["properties"]["items"]["items"]["$ref"],
            "#/components/schemas/com.example.v1.Widget"
        );
    }
}
