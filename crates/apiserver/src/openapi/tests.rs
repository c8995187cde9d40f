//! Tests of the published documents and of field checks through [`OpenApi`].

use std::collections::BTreeSet;

use prost::Message;
use serde_json::{Value, json};

use super::*;

fn openapi() -> OpenApi {
    OpenApi::new(&api::catalog::builtin())
}

fn parse(bytes: &Bytes) -> Value {
    serde_json::from_slice(bytes).expect("documents are JSON")
}

fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget", "listKind": "WidgetList", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["replicas"],
                            "properties": {
                                "replicas": {"type": "integer", "minimum": 0},
                                "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
                                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                            },
                        },
                        "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
                    },
                }},
            }, {
                "name": "v1beta1",
                "served": false,
                "storage": false,
            }],
        },
    })
}

/// Every `$ref` of a document resolves within it.
fn assert_refs_resolve(doc: &Value, prefix: &str, defs: &Value) {
    let mut refs = Vec::new();
    registry::references(doc, &mut refs);
    assert!(!refs.is_empty());
    let mut raw = Vec::new();
    collect_raw_refs(doc, &mut raw);
    for r in raw {
        let name = r
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("reference {r} lacks prefix {prefix}"));
        assert!(defs.get(name).is_some(), "dangling reference {r}");
    }
}

fn collect_raw_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k == "$ref" {
                    out.extend(v.as_str().map(str::to_string));
                } else {
                    collect_raw_refs(v, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_raw_refs(v, out)),
        _ => {}
    }
}

#[test]
fn index_lists_every_catalogue_group_version() {
    let oa = openapi();
    let index = parse(&oa.v3_index());
    let paths = index["paths"].as_object().unwrap();
    let want: BTreeSet<String> = api::catalog::builtin()
        .iter()
        .map(|r| render::gv_path(&r.group, &r.version))
        .collect();
    let got: BTreeSet<String> = paths.keys().cloned().collect();
    assert_eq!(got, want);
    for (path, entry) in paths {
        let url = entry["serverRelativeURL"].as_str().unwrap();
        let (prefix, hash) = url.split_once("?hash=").unwrap();
        assert_eq!(prefix, format!("/openapi/v3/{path}"));
        let (bytes, etag) = oa.v3_doc(path).unwrap();
        assert_eq!(etag, hash);
        assert_eq!(hash, super::hash(&bytes));
    }
    assert!(oa.v3_doc("apis/nothing.example/v1").is_none());
    assert!(oa.v3_doc("/apis/apps/v1/").is_some());
}

#[test]
fn deployment_patch_operation_supports_field_validation() {
    let oa = openapi();
    let doc = parse(&oa.v3_doc("apis/apps/v1").unwrap().0);
    assert_eq!(doc["openapi"], "3.0.0");
    let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    let patch = &item["patch"];
    assert_eq!(patch["x-kubernetes-action"], "patch");
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "kind": "Deployment", "version": "v1"})
    );
    let params: Vec<&str> = patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for want in ["dryRun", "fieldManager", "fieldValidation", "force"] {
        assert!(params.contains(&want), "missing {want}: {params:?}");
    }
    let content = patch["requestBody"]["content"].as_object().unwrap();
    let types: Vec<&String> = content.keys().collect();
    assert_eq!(
        types,
        vec![
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml"
        ]
    );
    // Every PATCH operation of the document (status, scale too) offers fieldValidation,
    // since kubectl may pick any of those tagged with the kind.
    for (path, item) in doc["paths"].as_object().unwrap() {
        if let Some(patch) = item.get("patch") {
            let has = patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation");
            assert!(has, "{path}");
        }
    }
    let names: Vec<&str> = item["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["name", "namespace", "pretty"]);
}

#[test]
fn references_resolve_in_every_document() {
    let oa = openapi();
    oa.set_crd(&widget_crd());
    let index = parse(&oa.v3_index());
    for path in index["paths"].as_object().unwrap().keys() {
        let doc = parse(&oa.v3_doc(path).unwrap().0);
        assert_refs_resolve(&doc, registry::V3_PREFIX, &doc["components"]["schemas"]);
    }
    let v2 = parse(&oa.v2_json());
    assert_eq!(v2["swagger"], "2.0");
    assert_refs_resolve(&v2, registry::V2_PREFIX, &v2["definitions"]);
}

#[test]
fn kinds_carry_group_version_kind() {
    let oa = openapi();
    let doc = parse(&oa.v3_doc("apis/apps/v1").unwrap().0);
    let schemas = &doc["components"]["schemas"];
    let gvk = |name: &str, v: &Value| v[name]["x-kubernetes-group-version-kind"].clone();
    assert_eq!(
        gvk("io.k8s.api.apps.v1.Deployment", schemas),
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    assert_eq!(
        gvk("io.k8s.api.apps.v1.DeploymentList", schemas)[0]["kind"],
        "DeploymentList"
    );
    assert_eq!(
        gvk("io.k8s.api.autoscaling.v1.Scale", schemas)[0]["group"],
        "autoscaling"
    );
    let delete_options = gvk(
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
        schemas,
    );
    assert!(
        delete_options
            .as_array()
            .unwrap()
            .contains(&json!({"group": "apps", "kind": "DeleteOptions", "version": "v1"}))
    );
    // `kubectl explain deployment.spec` follows spec's reference with its description.
    let spec = &schemas["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"];
    assert_eq!(
        spec["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
    );
    assert!(
        schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"]["description"]
            .is_string()
    );

    let v2 = parse(&oa.v2_json());
    let defs = &v2["definitions"];
    for (name, kind) in [
        ("io.k8s.api.core.v1.Pod", "Pod"),
        ("io.k8s.api.core.v1.PodList", "PodList"),
        ("io.k8s.api.apps.v1.Deployment", "Deployment"),
        (
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
            "CustomResourceDefinition",
        ),
    ] {
        assert_eq!(gvk(name, defs)[0]["kind"], kind, "{name}");
    }
    assert_eq!(
        defs["io.k8s.api.core.v1.Pod"]["properties"]["spec"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.PodSpec"
    );
}

#[test]
fn patch_extensions_are_published() {
    let oa = openapi();
    let doc = parse(&oa.v3_doc("api/v1").unwrap().0);
    let containers =
        &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
}

#[test]
fn unknown_fields_of_builtin_kinds() {
    let oa = openapi();
    let cases: Vec<(&str, &str, &str, Value, Vec<&str>)> = vec![
        (
            "",
            "v1",
            "Pod",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"limits": {"cpu": "1"}}}]}}),
            vec![],
        ),
        (
            "",
            "v1",
            "Pod",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i"}, {"name": "d", "imagee": "i"}], "foo": 1}}),
            vec!["spec.containers[1].imagee", "spec.foo"],
        ),
        (
            "",
            "v1",
            "Pod",
            json!({"metadata": {"name": "p", "bogus": true}, "spec": {}}),
            vec!["metadata.bogus"],
        ),
        (
            "apps",
            "v1",
            "Deployment",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "x"}}, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
                     "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i",
                        "ports": [{"containerPort": 80}], "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}}}}),
            vec![],
        ),
        (
            "apps",
            "v1",
            "Deployment",
            json!({"spec": {"replica": 2, "template": {"spec": {"containers": [{"name": "c", "ports": [{"port": 80}]}]}}}}),
            vec![
                "spec.replica",
                "spec.template.spec.containers[0].ports[0].port",
            ],
        ),
        (
            "",
            "v1",
            "ConfigMap",
            json!({"data": {"any": "thing"}, "binaryData": {}, "extra": {}}),
            vec!["extra"],
        ),
        ("", "v1", "NoSuchKind", json!({"anything": 1}), vec![]),
        // A CRD: nested schemas, extensions and free-form defaults are all known.
        (
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            widget_crd(),
            vec![],
        ),
        (
            "",
            "v1",
            "Pod",
            json!({"metadata": {"name": "p", "managedFields": [{"manager": "m", "operation": "Apply",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:containers": {}}}}]}}),
            vec![],
        ),
    ];
    for (group, version, kind, obj, want) in cases {
        assert_eq!(
            oa.unknown_fields(group, version, kind, &obj),
            want,
            "{kind} {obj}"
        );
    }
}

#[test]
fn custom_resources_are_published_checked_and_removed() {
    let oa = openapi();
    oa.set_crd(&widget_crd());
    let index = parse(&oa.v3_index());
    assert!(index["paths"]["apis/example.com/v1"].is_object());
    assert!(
        index["paths"].get("apis/example.com/v1beta1").is_none(),
        "unserved versions are not published"
    );
    let doc = parse(&oa.v3_doc("apis/example.com/v1").unwrap().0);
    let widget = &doc["components"]["schemas"]["com.example.v1.Widget"];
    assert_eq!(
        widget["x-kubernetes-group-version-kind"],
        json!([{"group": "example.com", "kind": "Widget", "version": "v1"}])
    );
    assert_eq!(
        widget["properties"]["spec"]["properties"]["replicas"]["minimum"],
        0
    );
    let patch =
        &doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"];
    let content = patch["requestBody"]["content"].as_object().unwrap();
    assert!(!content.contains_key("application/strategic-merge-patch+json"));
    assert!(content.contains_key("application/apply-patch+yaml"));
    assert!(
        patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation")
    );
    assert!(
        doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}/scale"]["get"]
            .is_object()
    );
    assert!(doc["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"].is_object());

    let obj = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "junk": 1},
        "spec": {"replicas": 1, "bad": true, "items": [{"name": "a", "x": 1}], "extra": {"free": {"form": 1}}}, "top": 1});
    let want = vec!["metadata.junk", "spec.bad", "spec.items[0].x", "top"];
    assert_eq!(oa.unknown_fields("example.com", "v1", "Widget", &obj), want);
    let mut pruned = obj.clone();
    assert_eq!(
        oa.prune_custom("example.com", "v1", "Widget", &mut pruned),
        want
    );
    assert_eq!(
        pruned,
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"replicas": 1, "items": [{"name": "a"}], "extra": {"free": {"form": 1}}}})
    );
    // The free function agrees, straight from the CRD's schema.
    let schema = &widget_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut pruned_again = obj.clone();
    assert_eq!(prune(schema, &mut pruned_again), want);
    assert_eq!(pruned_again, pruned);
    // Built-in kinds are never pruned by prune_custom.
    let mut pod = json!({"spec": {"foo": 1}});
    assert!(oa.prune_custom("", "v1", "Pod", &mut pod).is_empty());
    assert_eq!(pod, json!({"spec": {"foo": 1}}));

    let v2 = parse(&oa.v2_json());
    assert!(v2["definitions"]["com.example.v1.WidgetList"].is_object());
    assert!(v2["paths"]["/apis/example.com/v1/widgets"]["get"].is_object());

    oa.remove_crd(&widget_crd());
    assert!(oa.v3_doc("apis/example.com/v1").is_none());
    assert!(
        parse(&oa.v2_json())["definitions"]
            .get("com.example.v1.Widget")
            .is_none()
    );
    assert!(
        oa.unknown_fields("example.com", "v1", "Widget", &obj)
            .is_empty()
    );
}

#[test]
fn set_custom_and_remove_custom() {
    let oa = openapi();
    let info = ResourceInfo {
        group: "example.com".into(),
        version: "v2".into(),
        kind: "Gadget".into(),
        list_kind: "GadgetList".into(),
        plural: "gadgets".into(),
        singular: "gadget".into(),
        namespaced: false,
        short_names: vec![],
        categories: vec![],
        subresources: vec![],
        verbs: api::catalog::ALL_VERBS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        custom: true,
    };
    assert!(matches!(
        oa.set_custom(&info, Some(&json!("nope"))),
        Err(OpenApiError::InvalidSchema(_))
    ));
    let builtin = api::catalog::builtin().remove(0);
    assert!(matches!(
        oa.set_custom(&builtin, None),
        Err(OpenApiError::NotCustom(_))
    ));
    oa.set_custom(&info, None).unwrap();
    let doc = parse(&oa.v3_doc("apis/example.com/v2").unwrap().0);
    assert!(doc["paths"]["/apis/example.com/v2/gadgets/{name}"]["put"].is_object());
    // Without a schema anything is kept, except that metadata is still ObjectMeta.
    assert_eq!(
        oa.unknown_fields(
            "example.com",
            "v2",
            "Gadget",
            &json!({"spec": {"a": 1}, "x": 2})
        ),
        Vec::<String>::new()
    );
    assert!(oa.remove_custom("example.com", "v2", "gadgets"));
    assert!(!oa.remove_custom("example.com", "v2", "gadgets"));
    assert!(oa.v3_doc("apis/example.com/v2").is_none());
}

#[test]
fn v2_protobuf_round_trips() {
    let oa = openapi();
    oa.set_crd(&widget_crd());
    let json_doc = parse(&oa.v2_json());
    let bytes = oa.v2_protobuf();
    let decoded = gnostic::Document::decode(bytes.as_ref()).expect("protobuf decodes");
    assert_eq!(decoded, gnostic::document(&json_doc));
    assert_eq!(decoded.swagger, "2.0");
    let defs = &decoded.definitions.as_ref().unwrap().additional_properties;
    assert_eq!(
        defs.len(),
        json_doc["definitions"].as_object().unwrap().len()
    );
    let deployment = defs
        .iter()
        .find(|d| d.name == "io.k8s.api.apps.v1.Deployment")
        .unwrap()
        .value
        .as_ref()
        .unwrap();
    let ext = deployment
        .vendor_extension
        .iter()
        .find(|e| e.name == "x-kubernetes-group-version-kind")
        .unwrap();
    let gvk: Value = serde_yaml_ng::from_str(&ext.value.as_ref().unwrap().yaml).unwrap();
    assert_eq!(
        gvk,
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    let pod = defs
        .iter()
        .find(|d| d.name == "io.k8s.api.core.v1.Pod")
        .unwrap()
        .value
        .as_ref()
        .unwrap();
    let gvk: Value =
        serde_yaml_ng::from_str(&pod.vendor_extension[0].value.as_ref().unwrap().yaml).unwrap();
    assert_eq!(
        gvk[0]["group"], "",
        "the core group is an empty string, not null"
    );
    let paths = &decoded.paths.as_ref().unwrap().path;
    let item = paths
        .iter()
        .find(|p| p.name == "/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
        .unwrap();
    let patch = item.value.as_ref().unwrap().patch.as_ref().unwrap();
    assert_eq!(patch.operation_id, "patchAppsV1NamespacedDeployment");
    assert!(
        patch
            .consumes
            .contains(&"application/strategic-merge-patch+json".to_string())
    );
    // Arrays always have exactly one item schema (kubectl 1.20 rejects anything else).
    fn check(s: &gnostic::Schema, path: &str) {
        if s.r#type.as_ref().is_some_and(|t| t.value == ["array"]) {
            assert_eq!(s.items.as_ref().map(|i| i.schema.len()), Some(1), "{path}");
        }
        if let Some(props) = &s.properties {
            for p in &props.additional_properties {
                check(p.value.as_ref().unwrap(), &format!("{path}.{}", p.name));
            }
        }
        if let Some(items) = &s.items {
            items
                .schema
                .iter()
                .for_each(|i| check(i, &format!("{path}[]")));
        }
    }
    for d in defs {
        check(d.value.as_ref().unwrap(), &d.name);
    }
}

#[test]
fn caches_are_dropped_when_custom_resources_change() {
    let oa = openapi();
    let before = oa.v3_index();
    let v2_before = oa.v2_protobuf();
    let apps_before = oa.v3_doc("apis/apps/v1").unwrap();
    assert_eq!(
        oa.v3_index(),
        before,
        "rendering is deterministic and cached"
    );
    oa.set_crd(&widget_crd());
    assert_ne!(oa.v3_index(), before);
    assert_eq!(
        oa.v3_doc("apis/apps/v1").unwrap(),
        apps_before,
        "other group-versions are unaffected"
    );
    assert_ne!(oa.v2_protobuf(), v2_before);
    oa.remove_crd(&widget_crd());
    assert_eq!(oa.v3_index(), before);
    assert_eq!(oa.v2_protobuf(), v2_before);
}
