//! The schemas of every built-in kind, generated from the `k8s-openapi` types.
//!
//! `schemars` produces the definitions (named as upstream, e.g.
//! `io.k8s.api.apps.v1.Deployment`, with the types' doc comments as descriptions). This
//! module adds what the types do not carry: the `…List` kinds (the crate models lists as
//! one generic type), `x-kubernetes-group-version-kind`, the patch/list extensions from
//! [`patch_meta`], and the upstream spelling of `Quantity` and `IntOrString`.
//!
//! Definitions are kept in one canonical form, the swagger 2.0 one (`#/definitions/…`
//! references with sibling keys); [`to_v3`] derives the OpenAPI 3 form.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use k8s_openapi::schemars::JsonSchema;
use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use k8s_openapi::{ListableResource, Resource};
use serde_json::{Map, Value, json};

use api::patch::meta::{PatchMeta, patch_meta};

/// Prefix of references in the swagger 2.0 form.
pub(crate) const V2_PREFIX: &str = "#/definitions/";
/// Prefix of references in the OpenAPI 3 form.
pub(crate) const V3_PREFIX: &str = "#/components/schemas/";

pub(crate) const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
pub(crate) const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
pub(crate) const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
pub(crate) const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
pub(crate) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(crate) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(crate) const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
pub(crate) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";

/// A group/version/kind triple.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Gvk {
    pub(crate) fn new(group: &str, version: &str, kind: &str) -> Gvk {
        Gvk {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
        }
    }

    /// The JSON form used by `x-kubernetes-group-version-kind`.
    pub(crate) fn to_json(&self) -> Value {
        json!({"group": self.group, "kind": self.kind, "version": self.version})
    }
}

/// One registered kind: its GVK, definition name and (if listable) list kind.
struct KindEntry {
    gvk: Gvk,
    definition: String,
    list_kind: Option<&'static str>,
}

fn kind<T: Resource + JsonSchema>(generator: &mut SchemaGenerator) -> KindEntry {
    generator.subschema_for::<T>();
    KindEntry {
        gvk: Gvk::new(T::GROUP, T::VERSION, T::KIND),
        definition: T::schema_name().into_owned(),
        list_kind: None,
    }
}

fn listable<T: ListableResource + JsonSchema>(generator: &mut SchemaGenerator) -> KindEntry {
    KindEntry {
        list_kind: Some(T::LIST_KIND),
        ..kind::<T>(generator)
    }
}

/// Every kind whose schema is published: the stable (v1/v2) kinds of Kubernetes 1.33,
/// including those only used as subresource bodies. The catalogue decides what is served;
/// this table only has to be a superset of it (a unit test checks that).
fn kinds(g: &mut SchemaGenerator) -> Vec<KindEntry> {
    use k8s_openapi::api::{
        admissionregistration::v1 as admission, apps::v1 as apps, authentication::v1 as authn,
        authorization::v1 as authz, autoscaling::v1 as autoscaling1,
        autoscaling::v2 as autoscaling2, batch::v1 as batch, certificates::v1 as certs,
        coordination::v1 as coord, core::v1 as core, discovery::v1 as disc, events::v1 as ev,
        flowcontrol::v1 as flow, networking::v1 as net, node::v1 as node, policy::v1 as policy,
        rbac::v1 as rbac, scheduling::v1 as sched, storage::v1 as storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apireg;
    vec![
        kind::<core::Binding>(g),
        listable::<core::ComponentStatus>(g),
        listable::<core::ConfigMap>(g),
        listable::<core::Endpoints>(g),
        listable::<core::Event>(g),
        listable::<core::LimitRange>(g),
        listable::<core::Namespace>(g),
        listable::<core::Node>(g),
        listable::<core::PersistentVolume>(g),
        listable::<core::PersistentVolumeClaim>(g),
        listable::<core::Pod>(g),
        listable::<core::PodTemplate>(g),
        listable::<core::ReplicationController>(g),
        listable::<core::ResourceQuota>(g),
        listable::<core::Secret>(g),
        listable::<core::Service>(g),
        listable::<core::ServiceAccount>(g),
        listable::<admission::MutatingWebhookConfiguration>(g),
        listable::<admission::ValidatingAdmissionPolicy>(g),
        listable::<admission::ValidatingAdmissionPolicyBinding>(g),
        listable::<admission::ValidatingWebhookConfiguration>(g),
        listable::<apps::ControllerRevision>(g),
        listable::<apps::DaemonSet>(g),
        listable::<apps::Deployment>(g),
        listable::<apps::ReplicaSet>(g),
        listable::<apps::StatefulSet>(g),
        kind::<authn::SelfSubjectReview>(g),
        kind::<authn::TokenRequest>(g),
        kind::<authn::TokenReview>(g),
        kind::<authz::LocalSubjectAccessReview>(g),
        kind::<authz::SelfSubjectAccessReview>(g),
        kind::<authz::SelfSubjectRulesReview>(g),
        kind::<authz::SubjectAccessReview>(g),
        listable::<autoscaling1::HorizontalPodAutoscaler>(g),
        kind::<autoscaling1::Scale>(g),
        listable::<autoscaling2::HorizontalPodAutoscaler>(g),
        listable::<batch::CronJob>(g),
        listable::<batch::Job>(g),
        listable::<certs::CertificateSigningRequest>(g),
        listable::<coord::Lease>(g),
        listable::<disc::EndpointSlice>(g),
        listable::<ev::Event>(g),
        listable::<flow::FlowSchema>(g),
        listable::<flow::PriorityLevelConfiguration>(g),
        listable::<net::Ingress>(g),
        listable::<net::IngressClass>(g),
        listable::<net::IPAddress>(g),
        listable::<net::NetworkPolicy>(g),
        listable::<net::ServiceCIDR>(g),
        listable::<node::RuntimeClass>(g),
        kind::<policy::Eviction>(g),
        listable::<policy::PodDisruptionBudget>(g),
        listable::<rbac::ClusterRole>(g),
        listable::<rbac::ClusterRoleBinding>(g),
        listable::<rbac::Role>(g),
        listable::<rbac::RoleBinding>(g),
        listable::<sched::PriorityClass>(g),
        listable::<storage::CSIDriver>(g),
        listable::<storage::CSINode>(g),
        listable::<storage::CSIStorageCapacity>(g),
        listable::<storage::StorageClass>(g),
        listable::<storage::VolumeAttachment>(g),
        listable::<apiext::CustomResourceDefinition>(g),
        listable::<apireg::APIService>(g),
    ]
}

/// Definitions every document needs besides the kinds' own (operation bodies and
/// responses).
fn meta_definitions(g: &mut SchemaGenerator) {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    g.subschema_for::<meta::Status>();
    g.subschema_for::<meta::DeleteOptions>();
    g.subschema_for::<meta::WatchEvent<k8s_openapi::apimachinery::pkg::runtime::RawExtension>>();
    g.subschema_for::<meta::Patch>();
    g.subschema_for::<meta::ObjectMeta>();
    g.subschema_for::<meta::ListMeta>();
}

/// The built-in definitions (swagger 2.0 form; [`Registry::definition`] derives the
/// OpenAPI 3 one), and which definition holds which kind.
pub(crate) struct Registry {
    v2: Map<String, Value>,
    by_gvk: HashMap<Gvk, String>,
}

/// The process-wide registry (it depends on nothing but the types).
pub(crate) fn shared() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::build)
}

impl Registry {
    pub(crate) fn build() -> Registry {
        // Plain JSON-Schema generation with swagger's definitions path and no transforms:
        // `$ref` siblings (descriptions) are kept, as swagger 2.0 documents have them.
        let mut generator = SchemaSettings::draft07()
            .with(|s| {
                s.definitions_path = "/definitions".into();
                s.meta_schema = None;
                s.transforms.clear();
            })
            .into_generator();
        let entries = kinds(&mut generator);
        meta_definitions(&mut generator);
        let mut v2 = generator.take_definitions(false);
        let mut by_gvk = HashMap::new();

        for entry in &entries {
            if let Some(def) = v2.get_mut(&entry.definition) {
                add_gvk(def, &entry.gvk);
                optional_metadata(def);
            }
            by_gvk.insert(entry.gvk.clone(), entry.definition.clone());
            if let Some(list_kind) = entry.list_kind {
                let list_gvk = Gvk::new(&entry.gvk.group, &entry.gvk.version, list_kind);
                let name = list_definition_name(&entry.definition, list_kind);
                v2.insert(
                    name.clone(),
                    list_schema(&entry.definition, &entry.gvk.kind, &list_gvk),
                );
                by_gvk.insert(list_gvk, name);
            }
        }
        // Status is registered in the core group too (it is a kind, but not a resource).
        if let Some(status) = v2.get_mut(STATUS) {
            add_gvk(status, &Gvk::new("", "v1", "Status"));
        }
        for (name, def) in v2.iter_mut() {
            add_patch_meta(name, def);
        }
        // Upstream publishes these two as plain strings in swagger 2.0.
        set_scalar_v2(&mut v2, QUANTITY, None);
        set_scalar_v2(&mut v2, INT_OR_STRING, Some("int-or-string"));

        Registry { v2, by_gvk }
    }

    /// A definition in the canonical (swagger 2.0) form.
    pub(crate) fn definition_v2(&self, name: &str) -> Option<&Value> {
        self.v2.get(name)
    }

    /// A definition in the requested form. The OpenAPI 3 form is derived on demand:
    /// only document rendering asks for it, and its output is cached, so keeping a
    /// second copy of every definition resident would cost memory (about 3 MB) for
    /// nothing.
    pub(crate) fn definition(&self, name: &str, v3: bool) -> Option<Cow<'_, Value>> {
        let def = self.v2.get(name)?;
        if !v3 {
            return Some(Cow::Borrowed(def));
        }
        let mut out = to_v3(def);
        // Upstream publishes the two scalar-or-number types as `oneOf` in OpenAPI 3.
        let one_of = match name {
            QUANTITY => Some(json!([{"type": "string"}, {"type": "number"}])),
            INT_OR_STRING => Some(json!([{"type": "integer"}, {"type": "string"}])),
            _ => None,
        };
        if let (Some(one_of), Value::Object(q)) = (one_of, &mut out) {
            q.remove("type");
            q.insert("oneOf".into(), one_of);
        }
        Some(Cow::Owned(out))
    }

    /// The definition name holding `group/version kind`, if built in.
    pub(crate) fn definition_for(&self, gvk: &Gvk) -> Option<&str> {
        self.by_gvk.get(gvk).map(String::as_str)
    }

    #[cfg(test)]
    pub(crate) fn names(&self) -> impl Iterator<Item = &String> {
        self.v2.keys()
    }
}

/// `io.k8s.api.apps.v1.Deployment` → `io.k8s.api.apps.v1.DeploymentList`.
pub(crate) fn list_definition_name(item_definition: &str, list_kind: &str) -> String {
    match item_definition.rsplit_once('.') {
        Some((prefix, _)) => format!("{prefix}.{list_kind}"),
        None => list_kind.to_string(),
    }
}

/// The schema of a `…List` kind holding `item_definition` objects (swagger 2.0 form).
pub(crate) fn list_schema(item_definition: &str, kind: &str, list_gvk: &Gvk) -> Value {
    json!({
        "description": format!("{} is a list of {kind} objects.", list_gvk.kind),
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object.",
                "type": "string",
            },
            "items": {
                "description": format!("The {kind} objects in this list."),
                "type": "array",
                "items": {"$ref": format!("{V2_PREFIX}{item_definition}")},
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents.",
                "type": "string",
            },
            "metadata": {
                "$ref": format!("{V2_PREFIX}{LIST_META}"),
                "description": "Standard list metadata.",
            },
        },
        "required": ["items"],
        "x-kubernetes-group-version-kind": [list_gvk.to_json()],
    })
}

/// `k8s-openapi` makes `metadata` of top-level kinds non-optional (hence `required`);
/// upstream's schemas do not require it.
fn optional_metadata(def: &mut Value) {
    let Value::Object(map) = def else { return };
    if let Some(Value::Array(required)) = map.get_mut("required") {
        required.retain(|r| r != "metadata");
        if required.is_empty() {
            map.remove("required");
        }
    }
}

/// Appends a GVK to a definition's `x-kubernetes-group-version-kind`.
pub(crate) fn add_gvk(def: &mut Value, gvk: &Gvk) {
    let Value::Object(map) = def else { return };
    let entry = map
        .entry("x-kubernetes-group-version-kind")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = entry {
        let value = gvk.to_json();
        if !list.contains(&value) {
            list.push(value);
        }
    }
}

/// Adds the patch strategy / list type extensions to one definition (definition-level
/// ones, such as atomic structs) and to its properties.
fn add_patch_meta(definition: &str, def: &mut Value) {
    if let (Some(meta), Value::Object(map)) = (patch_meta(definition, ""), &mut *def) {
        insert_patch_meta(map, &meta);
    }
    let Some(Value::Object(props)) = def.get_mut("properties") else {
        return;
    };
    for (property, schema) in props.iter_mut() {
        let Some(meta) = patch_meta(definition, property) else {
            continue;
        };
        let Value::Object(schema) = schema else {
            continue;
        };
        insert_patch_meta(schema, &meta);
    }
}

fn insert_patch_meta(schema: &mut Map<String, Value>, meta: &PatchMeta) {
    if let Some(strategy) = meta.strategy {
        schema.insert("x-kubernetes-patch-strategy".into(), strategy.into());
    }
    if let Some(key) = meta.merge_key {
        schema.insert("x-kubernetes-patch-merge-key".into(), key.into());
    }
    if let Some(list_type) = meta.list_type {
        schema.insert("x-kubernetes-list-type".into(), list_type.into());
    }
    if !meta.list_map_keys.is_empty() {
        schema.insert(
            "x-kubernetes-list-map-keys".into(),
            meta.list_map_keys.into(),
        );
    }
    if let Some(map_type) = meta.map_type {
        schema.insert("x-kubernetes-map-type".into(), map_type.into());
    }
}

fn set_scalar_v2(defs: &mut Map<String, Value>, name: &str, format: Option<&str>) {
    let Some(Value::Object(def)) = defs.get_mut(name) else {
        return;
    };
    def.remove("x-kubernetes-int-or-string");
    def.insert("type".into(), "string".into());
    if let Some(format) = format {
        def.insert("format".into(), format.into());
    }
}

/// Keys whose value maps names to schemas.
fn is_schema_map(key: &str) -> bool {
    matches!(key, "properties" | "patternProperties" | "definitions")
}

/// Keys whose value is data, not a schema.
fn is_literal(key: &str) -> bool {
    matches!(key, "enum" | "default" | "example" | "required") || key.starts_with("x-")
}

/// Converts a swagger 2.0 schema to its OpenAPI 3 form: references move to
/// `#/components/schemas/`, and a `$ref` with sibling keys becomes `allOf: [{$ref}]` with
/// the siblings beside it (OpenAPI 3.0 ignores siblings of `$ref`).
pub(crate) fn to_v3(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            let reference =
                map.get("$ref")
                    .and_then(Value::as_str)
                    .map(|r| match r.strip_prefix(V2_PREFIX) {
                        Some(name) => format!("{V3_PREFIX}{name}"),
                        None => r.to_string(),
                    });
            for (k, v) in map {
                let converted = match (k.as_str(), v) {
                    ("$ref", _) => continue,
                    (key, Value::Object(children)) if is_schema_map(key) => Value::Object(
                        children
                            .iter()
                            .map(|(name, s)| (name.clone(), to_v3(s)))
                            .collect(),
                    ),
                    (key, _) if is_literal(key) => v.clone(),
                    _ => to_v3(v),
                };
                out.insert(k.clone(), converted);
            }
            match reference {
                Some(r) if out.is_empty() => {
                    out.insert("$ref".into(), r.into());
                }
                Some(r) => {
                    out.insert("allOf".into(), json!([{"$ref": r}]));
                }
                None => {}
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(to_v3).collect()),
        other => other.clone(),
    }
}

/// Every definition name referenced from a schema or document, in either form.
pub(crate) fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = r
                            .strip_prefix(V2_PREFIX)
                            .or_else(|| r.strip_prefix(V3_PREFIX))
                        {
                            out.push(name.to_string());
                        }
                    }
                    (key, Value::Object(children)) if is_schema_map(key) => {
                        children.values().for_each(|s| references(s, out));
                    }
                    (key, _) if is_literal(key) => {}
                    _ => references(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_kinds_have_definitions() {
        let reg = Registry::build();
        for r in api::catalog::builtin() {
            let gvk = Gvk::new(&r.group, &r.version, &r.kind);
            let name = reg
                .definition_for(&gvk)
                .unwrap_or_else(|| panic!("no schema for {gvk:?}"));
            assert!(reg.definition(name, false).is_some());
            if r.verbs.iter().any(|v| v == "list") {
                let list = Gvk::new(&r.group, &r.version, &r.list_kind);
                assert!(
                    reg.definition_for(&list).is_some(),
                    "no list schema for {list:?}"
                );
            }
            for sub in &r.subresources {
                if sub.kind.ends_with("Options") {
                    continue; // connect options have no schema upstream either
                }
                let gvk = Gvk::new(&sub.group, &sub.version, &sub.kind);
                assert!(
                    reg.definition_for(&gvk).is_some(),
                    "no schema for subresource {gvk:?}"
                );
            }
        }
    }

    #[test]
    fn definitions_carry_upstream_names_and_gvk() {
        let reg = Registry::build();
        let deploy = reg
            .definition("io.k8s.api.apps.v1.Deployment", false)
            .unwrap();
        assert_eq!(
            deploy["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        assert!(
            deploy["description"]
                .as_str()
                .unwrap()
                .contains("Deployment")
        );
        assert!(
            deploy.get("required").is_none(),
            "metadata is not required upstream"
        );
        let revision = reg
            .definition("io.k8s.api.apps.v1.ControllerRevision", false)
            .unwrap();
        assert_eq!(revision["required"], json!(["revision"]));
        let list = reg
            .definition("io.k8s.api.apps.v1.DeploymentList", false)
            .unwrap();
        assert_eq!(
            list["x-kubernetes-group-version-kind"][0]["kind"],
            "DeploymentList"
        );
        assert_eq!(
            list["properties"]["items"]["items"]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.Deployment"
        );
        let pod_v3 = reg.definition("io.k8s.api.core.v1.Pod", true).unwrap();
        assert_eq!(
            pod_v3["properties"]["spec"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.PodSpec"
        );
        assert!(pod_v3["properties"]["spec"]["description"].is_string());
        assert_eq!(
            reg.definition(INT_OR_STRING, false).unwrap()["format"],
            "int-or-string"
        );
        assert!(reg.definition(QUANTITY, true).unwrap()["oneOf"].is_array());
    }

    #[test]
    fn all_references_resolve() {
        let reg = Registry::build();
        for v3 in [false, true] {
            for name in reg.names() {
                let mut refs = Vec::new();
                references(&reg.definition(name, v3).unwrap(), &mut refs);
                for r in refs {
                    assert!(
                        reg.definition(&r, v3).is_some(),
                        "{name} refers to missing {r}"
                    );
                }
            }
        }
    }

    #[test]
    fn to_v3_table() {
        let cases = [
            (
                json!({"$ref": "#/definitions/A"}),
                json!({"$ref": "#/components/schemas/A"}),
            ),
            (
                json!({"$ref": "#/definitions/A", "description": "d"}),
                json!({"description": "d", "allOf": [{"$ref": "#/components/schemas/A"}]}),
            ),
            (
                json!({"type": "array", "items": {"$ref": "#/definitions/B"}}),
                json!({"type": "array", "items": {"$ref": "#/components/schemas/B"}}),
            ),
            (
                json!({"enum": [{"$ref": "x"}]}),
                json!({"enum": [{"$ref": "x"}]}),
            ),
            (
                json!({"properties": {"default": {"$ref": "#/definitions/C"}, "required": {"type": "string"}}}),
                json!({"properties": {"default": {"$ref": "#/components/schemas/C"}, "required": {"type": "string"}}}),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(to_v3(&input), want, "{input}");
        }
    }
}
