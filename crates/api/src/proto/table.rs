//! The shape of the generated schema table ([`super::schema`]) and lookups in it.
//!
//! Every built-in message is a [`Message`] with its upstream name
//! (`io.k8s.api.core.v1.PodSpec`, the same name the OpenAPI definitions use) and its
//! fields in Go declaration order, which is the order upstream's JSON encoder writes the
//! keys in.

use super::schema::{GROUP_VERSIONS, MESSAGES};

/// One protobuf message.
#[derive(Debug)]
pub(crate) struct Message {
    /// Upstream name, e.g. `io.k8s.api.core.v1.PodSpec`.
    pub name: &'static str,
    /// Set when the JSON form is not an object of the fields (custom Go marshalling).
    pub special: Option<Special>,
    pub fields: &'static [Field],
}

/// One field of a message.
#[derive(Debug)]
pub(crate) struct Field {
    pub number: u32,
    /// The upstream JSON name (empty for an inlined field).
    pub json: &'static str,
    /// The scalar type, or the message, of the field (of a map: of its values; keys are
    /// always strings).
    pub ty: Ty,
    pub shape: Shape,
    pub presence: Presence,
}

/// Builds a [`Field`]; keeps the generated table short.
pub(crate) const fn f(
    number: u32,
    json: &'static str,
    ty: Ty,
    shape: Shape,
    presence: Presence,
) -> Field {
    Field {
        number,
        json,
        ty,
        shape,
        presence,
    }
}

/// Field types. `Msg(n)` is `MESSAGES[n]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    Str,
    Bytes,
    Bool,
    I32,
    I64,
    F64,
    Msg(u16),
}

/// Cardinality.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A single value.
    One,
    /// A repeated field (a JSON list).
    Rep,
    /// A `map<string, …>` (a JSON object), on the wire a list of entry messages with the
    /// key as field 1 and the value as field 2.
    Map,
}

/// How a present value maps to JSON, from the Go field's type and JSON tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Presence {
    /// A Go pointer, slice or map: present means set, even to a zero value; absent
    /// values, empty lists and empty maps are left out.
    Ptr,
    /// A non-pointer field whose JSON tag has no `omitempty`: written even when zero.
    Keep,
    /// A non-pointer `omitempty` (or `omitzero`) field: a zero value means unset and is
    /// left out, as upstream's JSON encoder does.
    OmitZero,
    /// An embedded struct tagged `json:",inline"`: its fields appear in the parent
    /// object.
    Inline,
}

/// Messages whose JSON form is not an object of their fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Special {
    /// `meta.v1.Time` {seconds, nanos}: an RFC 3339 string with whole seconds.
    Time,
    /// `meta.v1.MicroTime`: an RFC 3339 string with six fractional digits.
    MicroTime,
    /// `meta.v1.Duration` {duration (ns)}: a Go duration string (`1h0m0s`).
    Duration,
    /// `meta.v1.FieldsV1` {Raw}: the embedded JSON.
    FieldsV1,
    /// `meta.v1.Verbs`, `ExtraValue` {items}: a list of strings.
    StringList,
    /// `resource.Quantity` {string}: the canonical quantity string.
    Quantity,
    /// `intstr.IntOrString` {type, intVal, strVal}: a number or a string.
    IntOrString,
    /// `runtime.RawExtension` {raw}: the embedded object (JSON bytes, or a nested
    /// protobuf envelope).
    RawExtension,
    /// `apiextensions.v1.JSON` {raw}: the embedded JSON value.
    Json,
    /// `JSONSchemaPropsOrArray` {schema, jSONSchemas}: an object or a list of them.
    PropsOrArray,
    /// `JSONSchemaPropsOrBool` {allows, schema}: a boolean or an object.
    PropsOrBool,
    /// `JSONSchemaPropsOrStringArray` {schema, property}: an object or a list of strings.
    PropsOrStringArray,
}

impl Message {
    /// The field with the given number.
    pub fn field(&self, number: u32) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.number == number)
    }
}

/// The message at an index of the table (`Ty::Msg`).
pub(crate) fn message_at(index: u16) -> &'static Message {
    &MESSAGES[usize::from(index)]
}

/// The message with the given upstream name.
pub(crate) fn message_named(name: &str) -> Option<&'static Message> {
    MESSAGES
        .binary_search_by(|m| m.name.cmp(name))
        .ok()
        .map(|i| &MESSAGES[i])
}

/// Kinds every group version serves with the `meta.k8s.io/v1` types (upstream
/// registers them in each group version, and the unversioned ones as plain `v1`).
const META_KINDS: &[&str] = &[
    "APIGroup",
    "APIGroupList",
    "APIResourceList",
    "APIVersions",
    "CreateOptions",
    "DeleteOptions",
    "GetOptions",
    "ListOptions",
    "PatchOptions",
    "Status",
    "UpdateOptions",
    "WatchEvent",
];

const META_PREFIX: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";

/// The message of a kind, e.g. `("apps/v1", "Deployment")` →
/// `io.k8s.api.apps.v1.Deployment`; the options kinds resolve to `meta.k8s.io/v1` in
/// every group version.
pub(crate) fn message_for_kind(api_version: &str, kind: &str) -> Option<&'static Message> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let prefix = GROUP_VERSIONS
        .iter()
        .find(|(g, v, _)| *g == group && *v == version)
        .map(|(_, _, prefix)| *prefix);
    if let Some(m) = prefix.and_then(|p| message_named(&format!("{p}.{kind}"))) {
        return Some(m);
    }
    if META_KINDS.contains(&kind) {
        return message_named(&format!("{META_PREFIX}.{kind}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_references_are_in_range() {
        assert!(MESSAGES.windows(2).all(|w| w[0].name < w[1].name));
        let len = MESSAGES.len();
        for m in &MESSAGES {
            for field in m.fields {
                if let Ty::Msg(i) = field.ty {
                    assert!(usize::from(i) < len, "{}.{}", m.name, field.json);
                }
                assert!(field.number > 0, "{}.{}", m.name, field.json);
                assert_eq!(
                    field.presence == Presence::Inline,
                    field.json.is_empty(),
                    "{}.{}",
                    m.name,
                    field.number
                );
            }
            let mut numbers: Vec<u32> = m.fields.iter().map(|f| f.number).collect();
            numbers.sort_unstable();
            numbers.dedup();
            assert_eq!(
                numbers.len(),
                m.fields.len(),
                "duplicate field numbers in {}",
                m.name
            );
        }
    }

    #[test]
    fn kinds_resolve_to_messages() {
        let cases = [
            ("v1", "ConfigMap", Some("io.k8s.api.core.v1.ConfigMap")),
            (
                "apps/v1",
                "Deployment",
                Some("io.k8s.api.apps.v1.Deployment"),
            ),
            (
                "autoscaling/v1",
                "Scale",
                Some("io.k8s.api.autoscaling.v1.Scale"),
            ),
            (
                "rbac.authorization.k8s.io/v1",
                "ClusterRole",
                Some("io.k8s.api.rbac.v1.ClusterRole"),
            ),
            (
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                Some(
                    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
                ),
            ),
            (
                "apiregistration.k8s.io/v1",
                "APIService",
                Some("io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIService"),
            ),
            (
                "v1",
                "DeleteOptions",
                Some("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"),
            ),
            (
                "apps/v1",
                "DeleteOptions",
                Some("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"),
            ),
            (
                "example.com/v1",
                "DeleteOptions",
                Some("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"),
            ),
            (
                "meta.k8s.io/v1",
                "PartialObjectMetadata",
                Some("io.k8s.apimachinery.pkg.apis.meta.v1.PartialObjectMetadata"),
            ),
            (
                "v1",
                "Status",
                Some("io.k8s.apimachinery.pkg.apis.meta.v1.Status"),
            ),
            ("example.com/v1", "Widget", None),
            ("v1", "Deployment", None),
            ("apps/v2", "Deployment", None),
        ];
        for (api_version, kind, want) in cases {
            assert_eq!(
                message_for_kind(api_version, kind).map(|m| m.name),
                want,
                "{api_version} {kind}"
            );
        }
    }
}
