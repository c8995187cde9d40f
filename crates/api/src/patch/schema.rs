//! The schemas of the built-in types, as the `k8s-openapi` `schemars` implementations
//! describe them, combined with the patch metadata of [`super::meta`].
//!
//! Strategic merge patch and server-side apply both need to know, at every point of an
//! object, whether they are looking at a struct (and which one), a map, a list (and how
//! its items are identified) or a scalar. The `k8s-openapi` schemas name every struct
//! after its upstream OpenAPI definition (`io.k8s.api.core.v1.PodSpec`) and reference
//! nested structs with `$ref`s to `#/$defs/<definition>`; this module collects those
//! definitions once, for every built-in kind, and walks them.

use std::collections::HashMap;
use std::sync::LazyLock;

use k8s_openapi::Resource;
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

use super::meta::{self, PatchMeta};

/// All definitions reachable from the built-in kinds, by definition name.
struct Registry {
    definitions: Map<String, Value>,
    /// `(group, version, kind)` → definition name.
    kinds: HashMap<(&'static str, &'static str, &'static str), String>,
}

macro_rules! registry {
    ($($ty:ty),* $(,)?) => {
        fn build_registry() -> Registry {
            let mut generator = SchemaSettings::draft2020_12().into_generator();
            let mut kinds = HashMap::new();
            $(
                generator.subschema_for::<$ty>();
                kinds.insert(
                    (<$ty as Resource>::GROUP, <$ty as Resource>::VERSION, <$ty as Resource>::KIND),
                    <$ty as JsonSchema>::schema_name().into_owned(),
                );
            )*
            let mut definitions = generator.take_definitions(false);
            definitions.values_mut().for_each(strip_descriptions);
            Registry { definitions, kinds }
        }
    };
}

registry! {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroup,
    k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroupList,
    k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList,
    k8s_openapi::apimachinery::pkg::apis::meta::v1::APIVersions,
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Status,
    k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
    k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy,
    k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
    k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration,
    k8s_openapi::api::admissionregistration::v1alpha1::MutatingAdmissionPolicy,
    k8s_openapi::api::admissionregistration::v1alpha1::MutatingAdmissionPolicyBinding,
    k8s_openapi::api::admissionregistration::v1beta1::ValidatingAdmissionPolicy,
    k8s_openapi::api::admissionregistration::v1beta1::ValidatingAdmissionPolicyBinding,
    k8s_openapi::api::apiserverinternal::v1alpha1::StorageVersion,
    k8s_openapi::api::apps::v1::ControllerRevision,
    k8s_openapi::api::apps::v1::DaemonSet,
    k8s_openapi::api::apps::v1::Deployment,
    k8s_openapi::api::apps::v1::ReplicaSet,
    k8s_openapi::api::apps::v1::StatefulSet,
    k8s_openapi::api::authentication::v1::SelfSubjectReview,
    k8s_openapi::api::authentication::v1::TokenRequest,
    k8s_openapi::api::authentication::v1::TokenReview,
    k8s_openapi::api::authorization::v1::LocalSubjectAccessReview,
    k8s_openapi::api::authorization::v1::SelfSubjectAccessReview,
    k8s_openapi::api::authorization::v1::SelfSubjectRulesReview,
    k8s_openapi::api::authorization::v1::SubjectAccessReview,
    k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler,
    k8s_openapi::api::autoscaling::v1::Scale,
    k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler,
    k8s_openapi::api::batch::v1::CronJob,
    k8s_openapi::api::batch::v1::Job,
    k8s_openapi::api::certificates::v1::CertificateSigningRequest,
    k8s_openapi::api::certificates::v1alpha1::ClusterTrustBundle,
    k8s_openapi::api::certificates::v1beta1::ClusterTrustBundle,
    k8s_openapi::api::coordination::v1::Lease,
    k8s_openapi::api::coordination::v1alpha2::LeaseCandidate,
    k8s_openapi::api::coordination::v1beta1::LeaseCandidate,
    k8s_openapi::api::core::v1::Binding,
    k8s_openapi::api::core::v1::ComponentStatus,
    k8s_openapi::api::core::v1::ConfigMap,
    k8s_openapi::api::core::v1::Endpoints,
    k8s_openapi::api::core::v1::Event,
    k8s_openapi::api::core::v1::LimitRange,
    k8s_openapi::api::core::v1::Namespace,
    k8s_openapi::api::core::v1::Node,
    k8s_openapi::api::core::v1::PersistentVolume,
    k8s_openapi::api::core::v1::PersistentVolumeClaim,
    k8s_openapi::api::core::v1::Pod,
    k8s_openapi::api::core::v1::PodTemplate,
    k8s_openapi::api::core::v1::ReplicationController,
    k8s_openapi::api::core::v1::ResourceQuota,
    k8s_openapi::api::core::v1::Secret,
    k8s_openapi::api::core::v1::Service,
    k8s_openapi::api::core::v1::ServiceAccount,
    k8s_openapi::api::discovery::v1::EndpointSlice,
    k8s_openapi::api::events::v1::Event,
    k8s_openapi::api::flowcontrol::v1::FlowSchema,
    k8s_openapi::api::flowcontrol::v1::PriorityLevelConfiguration,
    k8s_openapi::api::networking::v1::Ingress,
    k8s_openapi::api::networking::v1::IngressClass,
    k8s_openapi::api::networking::v1::IPAddress,
    k8s_openapi::api::networking::v1::NetworkPolicy,
    k8s_openapi::api::networking::v1::ServiceCIDR,
    k8s_openapi::api::networking::v1beta1::IPAddress,
    k8s_openapi::api::networking::v1beta1::ServiceCIDR,
    k8s_openapi::api::node::v1::RuntimeClass,
    k8s_openapi::api::policy::v1::Eviction,
    k8s_openapi::api::policy::v1::PodDisruptionBudget,
    k8s_openapi::api::rbac::v1::ClusterRole,
    k8s_openapi::api::rbac::v1::ClusterRoleBinding,
    k8s_openapi::api::rbac::v1::Role,
    k8s_openapi::api::rbac::v1::RoleBinding,
    k8s_openapi::api::resource::v1alpha3::DeviceClass,
    k8s_openapi::api::resource::v1alpha3::DeviceTaintRule,
    k8s_openapi::api::resource::v1alpha3::ResourceClaim,
    k8s_openapi::api::resource::v1alpha3::ResourceClaimTemplate,
    k8s_openapi::api::resource::v1alpha3::ResourceSlice,
    k8s_openapi::api::resource::v1beta1::DeviceClass,
    k8s_openapi::api::resource::v1beta1::ResourceClaim,
    k8s_openapi::api::resource::v1beta1::ResourceClaimTemplate,
    k8s_openapi::api::resource::v1beta1::ResourceSlice,
    k8s_openapi::api::resource::v1beta2::DeviceClass,
    k8s_openapi::api::resource::v1beta2::ResourceClaim,
    k8s_openapi::api::resource::v1beta2::ResourceClaimTemplate,
    k8s_openapi::api::resource::v1beta2::ResourceSlice,
    k8s_openapi::api::scheduling::v1::PriorityClass,
    k8s_openapi::api::storage::v1::CSIDriver,
    k8s_openapi::api::storage::v1::CSINode,
    k8s_openapi::api::storage::v1::CSIStorageCapacity,
    k8s_openapi::api::storage::v1::StorageClass,
    k8s_openapi::api::storage::v1::VolumeAttachment,
    k8s_openapi::api::storage::v1alpha1::VolumeAttributesClass,
    k8s_openapi::api::storage::v1beta1::VolumeAttributesClass,
    k8s_openapi::api::storagemigration::v1alpha1::StorageVersionMigration,
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(build_registry);

/// Drops the doc comments (`description`) from a schema and its subschemas: nothing
/// here reads them, and they are four fifths of the definitions' size (the OpenAPI
/// documents keep theirs). Property *names* are kept, `description` included.
fn strip_descriptions(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.get("description").is_some_and(Value::is_string) {
                map.remove("description");
            }
            for (key, value) in map.iter_mut() {
                match (key.as_str(), value) {
                    (
                        "properties" | "patternProperties" | "$defs" | "definitions",
                        Value::Object(children),
                    ) => children.values_mut().for_each(strip_descriptions),
                    ("enum" | "const" | "default" | "examples" | "required", _) => {}
                    (_, value) => strip_descriptions(value),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_descriptions),
        _ => {}
    }
}

/// Resolved positions, by the addresses of the static schemas they come from (see
/// [`Node::shape`] and [`Node::field`]); bounded by the number of schema positions.
#[derive(Default)]
struct Memo {
    shapes: foldhash::HashMap<(usize, usize), Shape>,
    fields: foldhash::HashMap<(usize, usize), Node>,
}

thread_local! {
    static MEMO: std::cell::RefCell<Memo> = std::cell::RefCell::default();
}

/// The upstream OpenAPI definition name of a built-in kind, e.g.
/// `("apps", "v1", "Deployment")` → `io.k8s.api.apps.v1.Deployment`. The core group is
/// the empty string. Returns `None` for kinds that are not built in (custom resources).
pub fn definition_for(group: &str, version: &str, kind: &str) -> Option<String> {
    REGISTRY.kinds.get(&(group, version, kind)).cloned()
}

/// The `(group, version, kind)` of a built-in kind's definition (the inverse of
/// [`definition_for`]).
pub fn kind_of_definition(definition: &str) -> Option<(&'static str, &'static str, &'static str)> {
    REGISTRY
        .kinds
        .iter()
        .find(|(_, d)| d.as_str() == definition)
        .map(|(gvk, _)| *gvk)
}

/// True if `definition` names a type whose schema is known (any built-in kind or a type
/// nested in one).
pub fn is_known_definition(definition: &str) -> bool {
    REGISTRY.definitions.contains_key(definition)
}

/// The JSON schema `k8s-openapi` gives the definition, with `$ref`s of the form
/// `#/$defs/<definition>`.
pub fn definition_schema(definition: &str) -> Option<&'static Value> {
    REGISTRY.definitions.get(definition)
}

/// Where a value sits in the schema.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Type {
    /// A named definition.
    Named(&'static str),
    /// An inline schema (a property's or a list's items).
    Inline(&'static Value),
    /// No schema: the shape is deduced from the value, as upstream does for custom
    /// resources without a schema (maps are merged key by key, lists are atomic).
    Deduced,
}

/// A schema position together with the patch metadata of the property that leads to it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Node {
    pub ty: Type,
    pub meta: Option<&'static PatchMeta>,
}

/// How the items of a list are identified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// The list is replaced as a whole.
    Atomic,
    /// A set of scalars, each item identified by its value.
    Set,
    /// Items are maps identified by these key fields.
    Map(&'static [&'static str]),
}

/// The resolved shape of a schema position.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Shape {
    /// A struct with declared properties.
    Struct {
        name: &'static str,
        properties: &'static Map<String, Value>,
        atomic: bool,
    },
    /// A map with arbitrary keys whose values share one schema.
    Map { values: Node, atomic: bool },
    /// A list.
    List { items: Node, kind: ListKind },
    /// A string, number, boolean (or int-or-string, quantity, time…).
    Scalar,
    /// Unknown: decided from the value.
    Deduced,
}

impl Node {
    /// The root of a named definition; unknown names are deduced.
    pub fn root(definition: Option<&str>) -> Node {
        let ty = match definition.and_then(|d| REGISTRY.definitions.get_key_value(d)) {
            Some((name, _)) => Type::Named(name.as_str()),
            None => Type::Deduced,
        };
        Node { ty, meta: None }
    }

    /// A position with no schema.
    pub const DEDUCED: Node = Node {
        ty: Type::Deduced,
        meta: None,
    };

    fn from_schema(schema: &'static Value, meta: Option<&'static PatchMeta>) -> Node {
        let ty = match schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(resolve_ref)
        {
            Some(name) => Type::Named(name),
            None => Type::Inline(schema),
        };
        Node { ty, meta }
    }

    /// This position's identity for the memo tables: the addresses of its static
    /// schema (or definition name) and patch metadata.
    fn identity(&self) -> (usize, usize) {
        let ty = match self.ty {
            Type::Named(name) => name.as_ptr() as usize,
            Type::Inline(schema) => std::ptr::from_ref(schema) as usize,
            Type::Deduced => 0,
        };
        (ty, self.meta.map_or(0, |m| std::ptr::from_ref(m) as usize))
    }

    /// The shape of this position.
    ///
    /// Memoized per thread: resolving a position looks up its definition by name,
    /// reads several schema keywords and searches the patch metadata, and the field
    /// manager asks for the shape of every position of every object written.
    pub fn shape(&self) -> Shape {
        let id = self.identity();
        if let Some(shape) = MEMO.with_borrow(|m| m.shapes.get(&id).copied()) {
            return shape;
        }
        let shape = self.resolve_shape();
        MEMO.with_borrow_mut(|m| m.shapes.insert(id, shape));
        shape
    }

    fn resolve_shape(&self) -> Shape {
        let (schema, name) = match self.ty {
            Type::Deduced => return Shape::Deduced,
            Type::Named(name) => match REGISTRY.definitions.get(name) {
                Some(schema) => (schema, Some(name)),
                None => return Shape::Deduced,
            },
            Type::Inline(schema) => (schema, None),
        };
        shape_of(schema, name, self.meta)
    }

    /// The position of field `key` when this position is a struct or a map; `None` for a
    /// struct without that property.
    pub fn field(&self, key: &str) -> Option<Node> {
        match self.shape() {
            Shape::Struct {
                name, properties, ..
            } => {
                // Memoized by the property's (static) schema: `from_schema` resolves
                // `$ref`s by name and `lookup` searches the patch metadata.
                let (property, schema) = properties.get_key_value(key)?;
                let id = (
                    std::ptr::from_ref(schema) as usize,
                    property.as_ptr() as usize,
                );
                if let Some(node) = MEMO.with_borrow(|m| m.fields.get(&id).copied()) {
                    return Some(node);
                }
                let node = Node::from_schema(schema, lookup(name, key));
                MEMO.with_borrow_mut(|m| m.fields.insert(id, node));
                Some(node)
            }
            Shape::Map { values, .. } => Some(values),
            Shape::Deduced => Some(Node::DEDUCED),
            Shape::List { .. } | Shape::Scalar => None,
        }
    }

    /// The position of the items when this position is a list.
    pub fn items(&self) -> Node {
        match self.shape() {
            Shape::List { items, .. } => items,
            _ => Node::DEDUCED,
        }
    }

    /// The definition name when this is a named struct.
    pub fn definition(&self) -> Option<&'static str> {
        match self.ty {
            Type::Named(name) => Some(name),
            _ => None,
        }
    }
}

fn lookup(definition: &str, property: &str) -> Option<&'static PatchMeta> {
    meta::lookup_static(definition, property)
}

/// `#/$defs/io.k8s.api.core.v1.PodSpec` → the registry's key for that definition.
fn resolve_ref(reference: &str) -> Option<&'static str> {
    let encoded = reference.rsplit('/').next()?;
    let name = encoded.replace("~1", "/").replace("~0", "~");
    REGISTRY
        .definitions
        .get_key_value(name.as_str())
        .map(|(k, _)| k.as_str())
}

fn shape_of(
    schema: &'static Value,
    name: Option<&'static str>,
    meta: Option<&'static PatchMeta>,
) -> Shape {
    if let Some(target) = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(resolve_ref)
    {
        return Node {
            ty: Type::Named(target),
            meta,
        }
        .shape();
    }
    if schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Shape::Scalar;
    }
    let map_type = meta.and_then(|m| m.map_type);
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                let own = name.and_then(|n| lookup(n, "")).and_then(|m| m.map_type);
                let atomic = map_type.or(own) == Some("atomic");
                Shape::Struct {
                    name: name.unwrap_or(""),
                    properties,
                    atomic,
                }
            } else if let Some(values) =
                schema.get("additionalProperties").filter(|v| v.is_object())
            {
                Shape::Map {
                    values: Node::from_schema(values, None),
                    atomic: map_type == Some("atomic"),
                }
            } else {
                Shape::Deduced
            }
        }
        Some("array") => {
            let items = schema
                .get("items")
                .filter(|v| v.is_object())
                .map(|s| Node::from_schema(s, None))
                .unwrap_or(Node::DEDUCED);
            Shape::List {
                items,
                kind: list_kind(meta),
            }
        }
        Some(_) => Shape::Scalar,
        None => Shape::Deduced,
    }
}

/// The list kind upstream's OpenAPI-to-SMD conversion derives: `x-kubernetes-list-type`
/// first, then a `merge` patch strategy (keyed by the merge key, or a set without one),
/// otherwise atomic.
fn list_kind(meta: Option<&'static PatchMeta>) -> ListKind {
    let Some(meta) = meta else {
        return ListKind::Atomic;
    };
    match meta.list_type {
        Some("atomic") => ListKind::Atomic,
        Some("set") => ListKind::Set,
        Some("map") => ListKind::Map(meta.list_map_keys),
        _ if meta.merges() => match &meta.merge_key {
            Some(key) => ListKind::Map(std::slice::from_ref(key)),
            None => ListKind::Set,
        },
        _ => ListKind::Atomic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_comments_are_dropped_but_fields_named_description_kept() {
        let props = definition_schema(
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps",
        )
        .expect("JSONSchemaProps");
        assert!(props.get("description").is_none(), "{props}");
        assert!(props["properties"]["description"].is_object(), "{props}");
        let pod = definition_schema("io.k8s.api.core.v1.PodSpec").expect("PodSpec");
        assert!(!pod.to_string().contains("\"description\":\""), "{pod}");
        assert!(pod["properties"]["containers"].is_object());
    }

    #[test]
    fn definitions_of_built_in_kinds() {
        let cases = [
            (
                "apps",
                "v1",
                "Deployment",
                Some("io.k8s.api.apps.v1.Deployment"),
            ),
            ("", "v1", "Pod", Some("io.k8s.api.core.v1.Pod")),
            ("", "v1", "ConfigMap", Some("io.k8s.api.core.v1.ConfigMap")),
            (
                "batch",
                "v1",
                "CronJob",
                Some("io.k8s.api.batch.v1.CronJob"),
            ),
            (
                "autoscaling",
                "v1",
                "Scale",
                Some("io.k8s.api.autoscaling.v1.Scale"),
            ),
            (
                "rbac.authorization.k8s.io",
                "v1",
                "ClusterRole",
                Some("io.k8s.api.rbac.v1.ClusterRole"),
            ),
            (
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                Some(
                    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
                ),
            ),
            (
                "apiregistration.k8s.io",
                "v1",
                "APIService",
                Some("io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIService"),
            ),
            ("apps", "v1beta1", "Deployment", None),
            ("example.com", "v1", "Widget", None),
        ];
        for (group, version, kind, want) in cases {
            assert_eq!(
                definition_for(group, version, kind).as_deref(),
                want,
                "{group}/{version} {kind}"
            );
            if let Some(def) = want {
                assert!(is_known_definition(def));
            }
        }
        assert!(is_known_definition("io.k8s.api.core.v1.PodSpec"));
        assert!(!is_known_definition("com.example.v1.Widget"));
    }

    /// Follows `path` (field names; `[]` for list items) from `root`.
    fn walk(root: &str, path: &[&str]) -> Node {
        let mut node = Node::root(Some(root));
        for step in path {
            node = if *step == "[]" {
                node.items()
            } else {
                node.field(step)
                    .unwrap_or_else(|| panic!("{root}: no field {step}"))
            };
        }
        node
    }

    #[test]
    fn walking_the_schemas() {
        let deploy = "io.k8s.api.apps.v1.Deployment";
        let containers = ["spec", "template", "spec", "containers"];
        let cases: Vec<(&str, Vec<&str>, &str)> = vec![
            (deploy, containers.to_vec(), "list map [\"name\"]"),
            (
                deploy,
                [&containers[..], &["[]"]].concat(),
                "struct io.k8s.api.core.v1.Container",
            ),
            (
                deploy,
                [&containers[..], &["[]", "ports"]].concat(),
                "list map [\"containerPort\", \"protocol\"]",
            ),
            (
                deploy,
                [&containers[..], &["[]", "args"]].concat(),
                "list atomic",
            ),
            (
                deploy,
                [&containers[..], &["[]", "image"]].concat(),
                "scalar",
            ),
            (
                deploy,
                [&containers[..], &["[]", "resources", "limits"]].concat(),
                "map",
            ),
            (
                deploy,
                [&containers[..], &["[]", "resources", "limits", "cpu"]].concat(),
                "scalar",
            ),
            (
                deploy,
                [&containers[..], &["[]", "livenessProbe", "httpGet", "port"]].concat(),
                "scalar",
            ),
            (deploy, vec!["metadata", "labels"], "map"),
            (deploy, vec!["metadata", "finalizers"], "list set"),
            (deploy, vec!["metadata", "creationTimestamp"], "scalar"),
            (
                deploy,
                vec!["spec", "selector"],
                "atomic struct io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
            ),
            (
                deploy,
                vec!["spec", "template", "spec", "nodeSelector"],
                "atomic map",
            ),
            (
                deploy,
                vec!["spec", "template", "spec", "imagePullSecrets", "[]"],
                "atomic struct io.k8s.api.core.v1.LocalObjectReference",
            ),
            (
                deploy,
                vec!["spec", "template", "spec", "tolerations"],
                "list atomic",
            ),
            (
                "io.k8s.api.core.v1.PersistentVolume",
                vec!["spec", "claimRef"],
                "struct io.k8s.api.core.v1.ObjectReference",
            ),
            (
                "io.k8s.api.core.v1.Node",
                vec!["status", "conditions"],
                "list map [\"type\"]",
            ),
            (
                "io.k8s.api.apps.v1.ControllerRevision",
                vec!["data"],
                "deduced",
            ),
        ];
        for (root, path, want) in cases {
            let node = walk(root, &path);
            let got = match node.shape() {
                Shape::Struct { name, atomic, .. } => {
                    format!("{}struct {name}", if atomic { "atomic " } else { "" })
                }
                Shape::Map { atomic, .. } => format!("{}map", if atomic { "atomic " } else { "" }),
                Shape::List {
                    kind: ListKind::Atomic,
                    ..
                } => "list atomic".into(),
                Shape::List {
                    kind: ListKind::Set,
                    ..
                } => "list set".into(),
                Shape::List {
                    kind: ListKind::Map(keys),
                    ..
                } => format!("list map {keys:?}"),
                Shape::Scalar => "scalar".into(),
                Shape::Deduced => "deduced".into(),
            };
            assert_eq!(got, want, "{root} {path:?}");
        }
        assert!(Node::root(Some(deploy)).field("nope").is_none());
        assert!(matches!(
            Node::root(Some("com.example.v1.Widget")).shape(),
            Shape::Deduced
        ));
    }
}
