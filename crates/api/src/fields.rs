//! Field selectors: `?fieldSelector=spec.nodeName=n1,status.phase!=Failed`.
//!
//! Parsing follows upstream's rules exactly: terms are split on unescaped commas and
//! sorted, each term is split at the first `!=`, `==` or `=`, and values may escape
//! `\`, `,` and `=` with a backslash. Which field labels a kind accepts (and what the
//! error says when it does not) follows the field label conversion functions upstream
//! registers per group/version/kind; [`object_fields`] computes the selectable fields of
//! an object as upstream's registries do.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// Errors from parsing or converting a field selector. `Display` gives upstream's text,
/// which the API server returns in a 400 `BadRequest` Status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldSelectorError {
    /// A term without a recognised operator.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    Syntax { selector: String, term: String },
    /// A backslash followed by something other than `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// An unescaped `,` or `=` in a value (upstream prints the code point).
    #[error("invalid field selector: unescaped character in value: {0}")]
    UnescapedRune(u32),
    /// A label the kind's conversion function rejects.
    #[error("field label not supported: {0}")]
    NotSupported(String),
    /// A label rejected by batch/v1 Job's conversion function.
    #[error("field label {0:?} not supported for batchv1.Job")]
    NotSupportedForJob(String),
    /// A label rejected by the default conversion (kinds without their own function).
    #[error("{0:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"")]
    NotKnown(String),
}

/// `=` (also written `==`) or `!=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    Equals,
    NotEquals,
}

/// One `field=value` or `field!=value` term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub operator: FieldOperator,
    /// The unescaped value.
    pub value: String,
}

impl FieldRequirement {
    /// Whether the fields satisfy the term; a missing field counts as the empty string.
    pub fn matches(&self, fields: &BTreeMap<String, String>) -> bool {
        let have = fields.get(&self.field).map(String::as_str).unwrap_or("");
        match self.operator {
            FieldOperator::Equals => have == self.value,
            FieldOperator::NotEquals => have != self.value,
        }
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{}{}", self.field, op, escape_value(&self.value))
    }
}

/// A field selector: the AND of its terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        FieldSelector::default()
    }

    /// Parses the string form.
    pub fn parse(selector: &str) -> Result<Self, FieldSelectorError> {
        let mut parts = split_terms(selector);
        parts.sort_unstable();
        let mut terms = Vec::with_capacity(parts.len());
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((lhs, op, rhs)) = split_term(part) else {
                return Err(FieldSelectorError::Syntax {
                    selector: selector.to_string(),
                    term: part.to_string(),
                });
            };
            terms.push(FieldRequirement {
                field: lhs.to_string(),
                operator: op,
                value: unescape_value(rhs)?,
            });
        }
        Ok(FieldSelector { terms })
    }

    /// A selector requiring each field to equal the given value.
    pub fn from_set(fields: &BTreeMap<String, String>) -> Self {
        let terms = fields
            .iter()
            .map(|(k, v)| FieldRequirement {
                field: k.clone(),
                operator: FieldOperator::Equals,
                value: v.clone(),
            })
            .collect();
        FieldSelector { terms }
    }

    /// True when there is nothing to check.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The terms in canonical order.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.terms
    }

    /// Whether an object's selectable fields satisfy every term.
    pub fn matches(&self, fields: &BTreeMap<String, String>) -> bool {
        self.terms.iter().all(|t| t.matches(fields))
    }

    /// If a term pins `field` to one value (with `=`), that value.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == field && t.operator == FieldOperator::Equals)
            .map(|t| t.value.as_str())
    }

    /// Rewrites every term's field label through the conversion function of
    /// `group/version/kind`, failing on labels the kind does not support (what the API
    /// server does before listing or watching).
    pub fn convert_for(
        &self,
        group: &str,
        version: &str,
        kind: &str,
    ) -> Result<Self, FieldSelectorError> {
        let mut terms = Vec::with_capacity(self.terms.len());
        for term in &self.terms {
            let field = convert_field_label(group, version, kind, &term.field)?;
            terms.push(FieldRequirement {
                field,
                operator: term.operator,
                value: term.value.clone(),
            });
        }
        Ok(FieldSelector { terms })
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

impl FromStr for FieldSelector {
    type Err = FieldSelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldSelector::parse(s)
    }
}

/// Escapes `\`, `,` and `=` in a value with a backslash.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reverses [`escape_value`], rejecting unknown escapes and bare `,` or `=`.
pub fn unescape_value(value: &str) -> Result<String, FieldSelectorError> {
    let mut out = String::with_capacity(value.len());
    let mut in_slash = false;
    for c in value.chars() {
        if in_slash {
            if matches!(c, '\\' | ',' | '=') {
                out.push(c);
            } else {
                return Err(FieldSelectorError::InvalidEscape(format!("\\{c}")));
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(FieldSelectorError::UnescapedRune(c as u32)),
            c => out.push(c),
        }
    }
    if in_slash {
        return Err(FieldSelectorError::InvalidEscape("\\".to_string()));
    }
    Ok(out)
}

/// Splits on commas that are not escaped; escapes stay in the terms.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in selector.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Splits at the first operator, trying `!=`, then `==`, then `=` at each position.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, kind) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::Equals),
            ("=", FieldOperator::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], kind, value));
            }
        }
    }
    None
}

/// The field labels a kind's conversion function accepts, with the label each maps to.
/// `None` means the kind uses the default conversion (only `metadata.name` and
/// `metadata.namespace`).
fn label_table(group: &str, kind: &str) -> Option<&'static [&'static str]> {
    Some(match (group, kind) {
        ("", "Pod") => &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
            "spec.host",
        ],
        ("", "Node") => &["metadata.name", "spec.unschedulable"],
        ("", "ReplicationController") => {
            &["metadata.name", "metadata.namespace", "status.replicas"]
        }
        ("", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
            "metadata.namespace",
            "metadata.name",
        ],
        ("", "Namespace") => &["status.phase", "metadata.name"],
        ("", "Secret") => &["type", "metadata.namespace", "metadata.name"],
        ("", "Service") => &[
            "metadata.namespace",
            "metadata.name",
            "spec.clusterIP",
            "spec.type",
        ],
        ("batch", "Job") => &["metadata.name", "metadata.namespace", "status.successful"],
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            &["metadata.name", "spec.signerName"]
        }
        _ => return None,
    })
}

/// Converts a field label for a kind the way upstream's scheme does: returns the
/// (possibly renamed) label, or the error upstream gives for an unsupported one.
/// `version` is accepted for symmetry with upstream's per-version registration; every
/// version served here registers the same labels.
pub fn convert_field_label(
    group: &str,
    version: &str,
    kind: &str,
    label: &str,
) -> Result<String, FieldSelectorError> {
    let _ = version;
    match label_table(group, kind) {
        Some(labels) if labels.contains(&label) => {
            // Old v1 clients send spec.host for pods.
            if (group, kind, label) == ("", "Pod", "spec.host") {
                Ok("spec.nodeName".to_string())
            } else {
                Ok(label.to_string())
            }
        }
        Some(_) if (group, kind) == ("batch", "Job") => {
            Err(FieldSelectorError::NotSupportedForJob(label.to_string()))
        }
        Some(_) => Err(FieldSelectorError::NotSupported(label.to_string())),
        None if matches!(label, "metadata.name" | "metadata.namespace") => Ok(label.to_string()),
        None => Err(FieldSelectorError::NotKnown(label.to_string())),
    }
}

/// Whether a kind accepts a field label in a field selector.
pub fn is_supported_field(group: &str, kind: &str, label: &str) -> bool {
    convert_field_label(group, "", kind, label).is_ok()
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn int_at(obj: &Value, pointer: &str) -> String {
    obj.pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .to_string()
}

fn bool_at(obj: &Value, pointer: &str) -> String {
    obj.pointer(pointer)
        .and_then(Value::as_bool)
        .unwrap_or(false)
        .to_string()
}

/// The selectable fields of an object, as upstream's registries compute them (every
/// kind has `metadata.name` and `metadata.namespace`; absent values are empty).
pub fn object_fields(group: &str, kind: &str, obj: &Value) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        fields.insert(k.to_string(), v);
    };
    put("metadata.name", str_at(obj, "/metadata/name").to_string());
    put(
        "metadata.namespace",
        str_at(obj, "/metadata/namespace").to_string(),
    );
    match (group, kind) {
        ("", "Pod") => {
            for (label, pointer) in [
                ("spec.nodeName", "/spec/nodeName"),
                ("spec.restartPolicy", "/spec/restartPolicy"),
                ("spec.schedulerName", "/spec/schedulerName"),
                ("spec.serviceAccountName", "/spec/serviceAccountName"),
                ("status.phase", "/status/phase"),
                ("status.nominatedNodeName", "/status/nominatedNodeName"),
            ] {
                put(label, str_at(obj, pointer).to_string());
            }
            put("spec.hostNetwork", bool_at(obj, "/spec/hostNetwork"));
            // The primary pod IP is podIPs[0], falling back to the legacy podIP field.
            let pod_ip = obj
                .pointer("/status/podIPs/0/ip")
                .and_then(Value::as_str)
                .unwrap_or_else(|| str_at(obj, "/status/podIP"));
            put("status.podIP", pod_ip.to_string());
        }
        ("", "Node") => put("spec.unschedulable", bool_at(obj, "/spec/unschedulable")),
        ("", "Namespace") => put("status.phase", str_at(obj, "/status/phase").to_string()),
        ("", "Secret") => put("type", str_at(obj, "/type").to_string()),
        ("", "Service") => {
            put("spec.clusterIP", str_at(obj, "/spec/clusterIP").to_string());
            put("spec.type", str_at(obj, "/spec/type").to_string());
        }
        ("", "ReplicationController") | ("apps", "ReplicaSet") => {
            put("status.replicas", int_at(obj, "/status/replicas"))
        }
        ("batch", "Job") => put("status.successful", int_at(obj, "/status/succeeded")),
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            put(
                "spec.signerName",
                str_at(obj, "/spec/signerName").to_string(),
            );
        }
        ("", "Event") | ("events.k8s.io", "Event") => event_fields(group, obj, &mut fields),
        _ => {}
    }
    fields
}

fn event_fields(group: &str, obj: &Value, fields: &mut BTreeMap<String, String>) {
    // Both API versions read the same stored events; accept either spelling.
    let events_api = group == "events.k8s.io";
    let reference = if events_api {
        "/regarding"
    } else {
        "/involvedObject"
    };
    for sub in [
        "kind",
        "namespace",
        "name",
        "uid",
        "apiVersion",
        "resourceVersion",
        "fieldPath",
    ] {
        fields.insert(
            format!("involvedObject.{sub}"),
            str_at(obj, &format!("{reference}/{sub}")).to_string(),
        );
    }
    let reporting = if events_api {
        str_at(obj, "/reportingController")
    } else {
        str_at(obj, "/reportingComponent")
    };
    let source_component = if events_api {
        str_at(obj, "/deprecatedSource/component")
    } else {
        str_at(obj, "/source/component")
    };
    let source = if source_component.is_empty() {
        reporting
    } else {
        source_component
    };
    fields.insert("reason".into(), str_at(obj, "/reason").to_string());
    fields.insert("reportingComponent".into(), reporting.to_string());
    fields.insert("source".into(), source.to_string());
    fields.insert("type".into(), str_at(obj, "/type").to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_and_print_table() {
        let cases = [
            ("", ""),
            ("a=b", "a=b"),
            ("a==b", "a=b"),
            ("a!=b", "a!=b"),
            ("b=2,a=1", "a=1,b=2"),
            ("a=,b=1", "a=,b=1"),
            ("a=x\\,y", "a=x\\,y"),
            ("a=x\\=y\\\\z", "a=x\\=y\\\\z"),
            (
                "spec.nodeName=n1,status.phase!=Succeeded,status.phase!=Failed",
                "spec.nodeName=n1,status.phase!=Failed,status.phase!=Succeeded",
            ),
            (",a=b,", "a=b"),
        ];
        for (input, want) in cases {
            let sel = FieldSelector::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(sel.to_string(), want, "{input}");
        }
        let sel = FieldSelector::parse("a=x\\,y").unwrap();
        assert_eq!(sel.requirements()[0].value, "x,y");
    }

    #[test]
    fn parse_errors_match_upstream() {
        let cases = [
            ("a", "invalid selector: 'a'; can't understand 'a'"),
            ("x=1,a", "invalid selector: 'x=1,a'; can't understand 'a'"),
            (
                "a=b\\c",
                "invalid field selector: invalid escape sequence: \\c",
            ),
            (
                "a=b\\",
                "invalid field selector: invalid escape sequence: \\",
            ),
            (
                "a=b=c",
                "invalid field selector: unescaped character in value: 61",
            ),
            (
                "a===b",
                "invalid field selector: unescaped character in value: 61",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                FieldSelector::parse(input).unwrap_err().to_string(),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn matching() {
        let fields: BTreeMap<String, String> =
            [("spec.nodeName", "n1"), ("status.phase", "Running")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let cases = [
            ("", true),
            ("spec.nodeName=n1", true),
            ("spec.nodeName=n2", false),
            ("spec.nodeName!=n2", true),
            ("spec.nodeName=n1,status.phase!=Running", false),
            ("missing=", true),
            ("missing!=x", true),
            ("missing=x", false),
        ];
        for (input, want) in cases {
            assert_eq!(
                FieldSelector::parse(input).unwrap().matches(&fields),
                want,
                "{input}"
            );
        }
        let sel = FieldSelector::parse("a=1,b!=2").unwrap();
        assert_eq!(sel.requires_exact_match("a"), Some("1"));
        assert_eq!(sel.requires_exact_match("b"), None);
    }

    #[test]
    fn label_conversion_table() {
        let ok = [
            ("", "Pod", "spec.nodeName", "spec.nodeName"),
            ("", "Pod", "spec.host", "spec.nodeName"),
            ("", "Pod", "status.podIP", "status.podIP"),
            ("", "Node", "spec.unschedulable", "spec.unschedulable"),
            ("", "Event", "involvedObject.uid", "involvedObject.uid"),
            ("", "Secret", "type", "type"),
            ("", "ConfigMap", "metadata.namespace", "metadata.namespace"),
            ("apps", "Deployment", "metadata.name", "metadata.name"),
            ("batch", "Job", "status.successful", "status.successful"),
        ];
        for (group, kind, label, want) in ok {
            assert_eq!(
                convert_field_label(group, "v1", kind, label).unwrap(),
                want,
                "{kind} {label}"
            );
        }
        let bad = [
            ("", "Pod", "spec.foo", "field label not supported: spec.foo"),
            (
                "",
                "Node",
                "metadata.namespace",
                "field label not supported: metadata.namespace",
            ),
            (
                "",
                "ConfigMap",
                "data.x",
                "\"data.x\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
            ),
            (
                "batch",
                "Job",
                "status.succeeded",
                "field label \"status.succeeded\" not supported for batchv1.Job",
            ),
        ];
        for (group, kind, label, want) in bad {
            assert_eq!(
                convert_field_label(group, "v1", kind, label)
                    .unwrap_err()
                    .to_string(),
                want
            );
            assert!(!is_supported_field(group, kind, label));
        }
        let sel = FieldSelector::parse("spec.host=n1")
            .unwrap()
            .convert_for("", "v1", "Pod")
            .unwrap();
        assert_eq!(sel.to_string(), "spec.nodeName=n1");
    }

    #[test]
    fn object_fields_per_kind() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always", "hostNetwork": true},
            "status": {"phase": "Running", "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.1"}]}
        });
        let f = object_fields("", "Pod", &pod);
        assert_eq!(f["metadata.name"], "p");
        assert_eq!(f["metadata.namespace"], "ns");
        assert_eq!(f["spec.nodeName"], "n1");
        assert_eq!(f["spec.hostNetwork"], "true");
        assert_eq!(f["spec.schedulerName"], "");
        assert_eq!(f["status.podIP"], "10.0.0.1");
        let sel =
            FieldSelector::parse("spec.nodeName=n1,status.phase!=Succeeded,status.phase!=Failed")
                .unwrap();
        assert!(sel.matches(&f));

        assert_eq!(
            object_fields("", "Node", &json!({"metadata": {"name": "n"}}))["spec.unschedulable"],
            "false"
        );
        assert_eq!(
            object_fields("batch", "Job", &json!({"status": {"succeeded": 2}}))["status.successful"],
            "2"
        );
        assert_eq!(
            object_fields("apps", "ReplicaSet", &json!({}))["status.replicas"],
            "0"
        );
        assert_eq!(
            object_fields("", "Secret", &json!({"type": "Opaque"}))["type"],
            "Opaque"
        );

        let event = json!({
            "involvedObject": {"kind": "Pod", "name": "p", "uid": "u"},
            "reason": "Scheduled", "type": "Normal", "reportingComponent": "default-scheduler"
        });
        let f = object_fields("", "Event", &event);
        assert_eq!(f["involvedObject.kind"], "Pod");
        assert_eq!(f["involvedObject.namespace"], "");
        assert_eq!(f["source"], "default-scheduler");
        let v1 = json!({"regarding": {"kind": "Node"}, "reportingController": "kubelet", "deprecatedSource": {"component": "kl"}});
        let f = object_fields("events.k8s.io", "Event", &v1);
        assert_eq!(f["involvedObject.kind"], "Node");
        assert_eq!(f["source"], "kl");
        assert_eq!(f["reportingComponent"], "kubelet");
    }
}
