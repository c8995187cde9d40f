//! Input generators shared by the fuzz targets in `fuzz_targets/`.
//!
//! Every target accepts two input shapes, chosen by the first byte:
//!
//! * **Text** (the input starts with `{`, `[`, `"`, `n` or ASCII whitespace): the input
//!   is a stream of JSON values ([`json_stream`]), e.g. `"io.k8s.api.apps.v1.Deployment"
//!   {original} {patch}`. The committed seeds in `fuzz/seeds/<target>/` use this form so
//!   that they stay readable; libFuzzer's mutations then explore near them.
//! * **Structured** (anything else): the bytes drive an [`arbitrary::Unstructured`] that
//!   builds Kubernetes-shaped objects from the OpenAPI schemas the `api` crate ships
//!   ([`Gen::object`]), so mutations stay well-formed JSON and reach deep into the patch
//!   and validation logic instead of dying in the JSON parser.
//!
//! (Targets whose input is a plain string, `selectors` and `quantity`, document their own
//! layout.)
//!
//! The generators are written here rather than derived with `arbitrary`'s derive macro
//! because the interesting inputs are schema-driven (field names, merge keys, patch
//! directives) and `serde_json::Value` has no `Arbitrary` implementation.

use arbitrary::{Result, Unstructured};
use serde_json::{Map, Number, Value};

/// Built-in kinds the structured generators pick from: `(apiVersion, kind)`.
pub const KINDS: &[(&str, &str)] = &[
    ("apps/v1", "Deployment"),
    ("v1", "Pod"),
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("apps/v1", "ReplicaSet"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("v1", "Secret"),
    ("v1", "Namespace"),
    ("v1", "Node"),
    ("v1", "ReplicationController"),
    ("v1", "PodTemplate"),
    ("v1", "Event"),
    ("events.k8s.io/v1", "Event"),
    ("coordination.k8s.io/v1", "Lease"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("networking.k8s.io/v1", "Ingress"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
];

/// Sample strings: merge-key values that collide, patch directives, quantities, times,
/// label keys, escapes that JSON pointers and field selectors treat specially.
const STRINGS: &[&str] = &[
    "",
    "a",
    "b",
    "c",
    "nginx",
    "web",
    "80",
    "http",
    "TCP",
    "UDP",
    "delete",
    "replace",
    "merge",
    "100m",
    "1Gi",
    "0.5",
    "1e3",
    "50%",
    "0",
    "-1",
    "app",
    "app.kubernetes.io/name",
    "kube-system",
    "default",
    "Always",
    "IfNotPresent",
    "RollingUpdate",
    "Recreate",
    "OnDelete",
    "ClusterIP",
    "NodePort",
    "LoadBalancer",
    "None",
    "Exists",
    "In",
    "NotIn",
    "DoesNotExist",
    "Equal",
    "NoSchedule",
    "2024-01-01T00:00:00Z",
    "2024-01-01T00:00:00.000001Z",
    "*/5 * * * *",
    "@hourly",
    "TZ=UTC 0 0 * * *",
    "Orphan",
    "Background",
    "Foreground",
    "kubectl",
    "Apply",
    "Update",
    "v1",
    "apps/v1",
    "FieldsV1",
    "Fn8=",
    "-",
    "~0",
    "~1",
    "/",
    "a=b",
    "a,b",
    "\\",
    "$patch",
    "\u{0}",
    "é",
];

/// Object keys for schemaless values: Kubernetes field names, patch directives and the
/// encodings `fieldsV1` uses.
const KEYS: &[&str] = &[
    "metadata",
    "name",
    "namespace",
    "labels",
    "annotations",
    "spec",
    "status",
    "template",
    "containers",
    "initContainers",
    "image",
    "ports",
    "containerPort",
    "protocol",
    "env",
    "value",
    "kind",
    "apiVersion",
    "items",
    "finalizers",
    "managedFields",
    "manager",
    "operation",
    "fieldsType",
    "fieldsV1",
    "subresource",
    "time",
    "f:metadata",
    "f:spec",
    "f:labels",
    "f:name",
    "f:containers",
    "k:{\"name\":\"a\"}",
    "k:{\"containerPort\":80,\"protocol\":\"TCP\"}",
    "v:\"a\"",
    "v:1",
    "i:0",
    ".",
    "selector",
    "matchLabels",
    "matchExpressions",
    "key",
    "operator",
    "values",
    "replicas",
    "volumes",
    "data",
    "binaryData",
    "type",
    "resourceVersion",
    "uid",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "ownerReferences",
    "resources",
    "limits",
    "requests",
    "cpu",
    "memory",
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$setElementOrder/ports",
    "$deleteFromPrimitiveList/finalizers",
    "$deleteFromPrimitiveList/args",
    "a",
    "b",
    "",
];

const PATCH_DIRECTIVES: &[&str] = &["delete", "replace", "merge", "bogus"];

/// How many values one generated document may hold (keeps executions fast).
const NODE_BUDGET: usize = 160;
/// How deep generated documents may nest.
const MAX_DEPTH: usize = 14;

/// True if `data` is in the text (JSON stream) form described in the crate docs.
pub fn is_text(data: &[u8]) -> bool {
    matches!(
        data.first(),
        Some(b'{' | b'[' | b'"' | b'n' | b' ' | b'\t' | b'\n' | b'\r')
    )
}

/// The leading JSON values of `data`, stopping at the first one that does not parse.
pub fn json_stream(data: &[u8]) -> Vec<Value> {
    serde_json::Deserializer::from_slice(data)
        .into_iter::<Value>()
        .map_while(std::result::Result::ok)
        .take(8)
        .collect()
}

/// `(group, version)` of an `apiVersion`.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

/// The OpenAPI definition name of a built-in kind.
pub fn definition_of(api_version: &str, kind: &str) -> Option<String> {
    let (group, version) = split_api_version(api_version);
    api::patch::schema::definition_for(group, version, kind)
}

/// Picks one element of a non-empty slice.
pub fn pick<'s, T>(u: &mut Unstructured<'_>, items: &'s [T]) -> Result<&'s T> {
    u.choose(items)
}

/// A generator of JSON documents driven by fuzz input.
pub struct Gen<'a, 'u> {
    pub u: &'u mut Unstructured<'a>,
    budget: usize,
}

impl<'a, 'u> Gen<'a, 'u> {
    pub fn new(u: &'u mut Unstructured<'a>) -> Self {
        Gen {
            u,
            budget: NODE_BUDGET,
        }
    }

    /// Resets the node budget before generating another document.
    pub fn reset(&mut self) {
        self.budget = NODE_BUDGET;
    }

    fn spend(&mut self) -> bool {
        if self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        true
    }

    /// A sample string, occasionally an arbitrary one.
    pub fn string(&mut self) -> Result<String> {
        if self.u.ratio(1, 8)? {
            let s: &str = self.u.arbitrary()?;
            Ok(s.chars().take(40).collect())
        } else {
            Ok(pick(self.u, STRINGS)?.to_string())
        }
    }

    /// An object key for a schemaless position.
    pub fn key(&mut self) -> Result<String> {
        if self.u.ratio(1, 10)? {
            self.string()
        } else {
            Ok(pick(self.u, KEYS)?.to_string())
        }
    }

    fn integer(&mut self) -> Result<Value> {
        Ok(match self.u.int_in_range(0..=9)? {
            0 => Value::from(self.u.arbitrary::<i64>()?),
            1 => Value::from(self.u.arbitrary::<u64>()?),
            2 => Value::from(self.u.arbitrary::<i32>()?),
            3 => Number::from_f64(f64::from(self.u.arbitrary::<i16>()?) / 4.0)
                .map_or(Value::Null, Value::Number),
            _ => Value::from(self.u.int_in_range(-2i64..=100)?),
        })
    }

    fn number(&mut self) -> Result<Value> {
        if self.u.ratio(1, 2)? {
            self.integer()
        } else {
            let f: f64 = self.u.arbitrary()?;
            Ok(Number::from_f64(f).map_or(Value::from(0.5), Value::Number))
        }
    }

    /// A scalar of any JSON type.
    pub fn scalar(&mut self) -> Result<Value> {
        Ok(match self.u.int_in_range(0..=5)? {
            0 => Value::Null,
            1 => Value::Bool(self.u.arbitrary()?),
            2 => self.integer()?,
            3 => self.number()?,
            _ => Value::String(self.string()?),
        })
    }

    /// A schemaless JSON value built from Kubernetes-ish keys and strings.
    pub fn any(&mut self, depth: usize) -> Result<Value> {
        if depth >= MAX_DEPTH || !self.spend() || self.u.is_empty() {
            return self.scalar();
        }
        Ok(match self.u.int_in_range(0..=5)? {
            0 | 1 => {
                let n = self.u.int_in_range(0..=4)?;
                let mut map = Map::new();
                for _ in 0..n {
                    let k = self.key()?;
                    let v = self.any(depth + 1)?;
                    map.insert(k, v);
                }
                Value::Object(map)
            }
            2 => {
                let n = self.u.int_in_range(0..=3)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.any(depth + 1)?);
                }
                Value::Array(items)
            }
            _ => self.scalar()?,
        })
    }

    /// A whole object of a built-in kind, shaped by its schema, with `apiVersion` and
    /// `kind` set (usually to the kind's own values). With `patch`, strategic-merge
    /// directives and `null`s are sprinkled in.
    pub fn object(&mut self, api_version: &str, kind: &str, patch: bool) -> Result<Value> {
        let mut value = match definition_of(api_version, kind) {
            Some(def) => self.definition(&def, 0, patch)?,
            None => self.any(0)?,
        };
        if let Value::Object(map) = &mut value {
            if !self.u.ratio(1, 16)? {
                map.insert("apiVersion".into(), Value::from(api_version));
                map.insert("kind".into(), Value::from(kind));
            }
            if self.u.ratio(3, 4)? {
                let meta = map
                    .entry("metadata")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(meta) = meta {
                    meta.entry("name").or_insert_with(|| Value::from("a"));
                }
            }
        }
        Ok(value)
    }

    /// A value of the named OpenAPI definition.
    pub fn definition(&mut self, definition: &str, depth: usize, patch: bool) -> Result<Value> {
        match api::patch::schema::definition_schema(definition) {
            Some(schema) => self.schema(schema, Some(definition), depth, patch),
            None => self.any(depth),
        }
    }

    fn schema(
        &mut self,
        schema: &'static Value,
        definition: Option<&str>,
        depth: usize,
        patch: bool,
    ) -> Result<Value> {
        if let Some(name) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"))
        {
            return self.definition(name, depth, patch);
        }
        if depth >= MAX_DEPTH || !self.spend() || self.u.is_empty() {
            return Ok(Value::Null);
        }
        // Now and then a value of the wrong type, or (in patches) a deletion.
        if self.u.ratio(1, 24)? {
            return self.any(depth);
        }
        if patch && self.u.ratio(1, 24)? {
            return Ok(Value::Null);
        }
        if schema.get("x-kubernetes-int-or-string").is_some() {
            return Ok(if self.u.ratio(1, 2)? {
                self.integer()?
            } else {
                Value::String(self.string()?)
            });
        }
        let ty = match schema.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or(""),
            _ => "",
        };
        match ty {
            "object" => self.schema_object(schema, definition, depth, patch),
            "array" => {
                let items = schema.get("items").unwrap_or(&Value::Null);
                let n = self.u.int_in_range(0..=3)?;
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    if patch && self.u.ratio(1, 12)? {
                        let mut directive = Map::new();
                        directive.insert(
                            "$patch".into(),
                            Value::from(*pick(self.u, PATCH_DIRECTIVES)?),
                        );
                        directive.insert("name".into(), Value::String(self.string()?));
                        out.push(Value::Object(directive));
                    } else if items.is_object() {
                        out.push(self.schema(items, None, depth + 1, patch)?);
                    } else {
                        out.push(self.any(depth + 1)?);
                    }
                }
                Ok(Value::Array(out))
            }
            "string" => Ok(Value::String(
                match schema.get("format").and_then(Value::as_str) {
                    Some("date-time") if self.u.ratio(3, 4)? => "2024-01-01T00:00:00Z".to_string(),
                    Some("byte") if self.u.ratio(3, 4)? => "aGVsbG8=".to_string(),
                    _ => self.string()?,
                },
            )),
            "integer" => self.integer(),
            "number" => self.number(),
            "boolean" => Ok(Value::Bool(self.u.arbitrary()?)),
            _ => self.any(depth),
        }
    }

    fn schema_object(
        &mut self,
        schema: &'static Value,
        definition: Option<&str>,
        depth: usize,
        patch: bool,
    ) -> Result<Value> {
        let mut map = Map::new();
        if let Some(Value::Object(props)) = schema.get("properties") {
            let names: Vec<&'static String> = props.keys().collect();
            let n = self.u.int_in_range(0..=names.len().min(5))?;
            for _ in 0..n {
                let name = *pick(self.u, &names)?;
                if map.contains_key(name.as_str()) {
                    continue;
                }
                let value = self.schema(&props[name.as_str()], None, depth + 1, patch)?;
                let value = self.with_merge_keys(definition, name, value)?;
                map.insert(name.clone(), value);
            }
            if patch && !names.is_empty() && self.u.ratio(1, 6)? {
                self.directive(&mut map, definition, &names)?;
            }
        } else if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            let n = self.u.int_in_range(0..=3)?;
            for _ in 0..n {
                let k = self.string()?;
                let v = self.schema(values, None, depth + 1, patch)?;
                map.insert(k, v);
            }
        } else {
            return self.any(depth);
        }
        Ok(Value::Object(map))
    }

    /// Gives the items of a list with a merge key (or list-map keys) values for those
    /// keys from a small set, so that items of original and patch meet.
    fn with_merge_keys(
        &mut self,
        definition: Option<&str>,
        property: &str,
        value: Value,
    ) -> Result<Value> {
        let Some(meta) = definition.and_then(|d| api::patch::meta::patch_meta(d, property)) else {
            return Ok(value);
        };
        let mut keys: Vec<&str> = meta.list_map_keys.to_vec();
        if let Some(k) = meta.merge_key {
            keys.push(k);
        }
        let Value::Array(mut items) = value else {
            return Ok(value);
        };
        for item in &mut items {
            if let Value::Object(obj) = item {
                for key in &keys {
                    if self.u.ratio(7, 8)? {
                        let v = match self.u.int_in_range(0..=3)? {
                            0 => Value::from(80),
                            1 => Value::from("b"),
                            2 => Value::from("TCP"),
                            _ => Value::from("a"),
                        };
                        obj.insert((*key).to_string(), v);
                    }
                }
            }
        }
        Ok(Value::Array(items))
    }

    /// Adds one strategic-merge directive key to an object in a patch.
    fn directive(
        &mut self,
        map: &mut Map<String, Value>,
        definition: Option<&str>,
        names: &[&'static String],
    ) -> Result<()> {
        let name = pick(self.u, names)?.as_str();
        match self.u.int_in_range(0..=3)? {
            0 => {
                map.insert(
                    "$patch".into(),
                    Value::from(*pick(self.u, PATCH_DIRECTIVES)?),
                );
            }
            1 => {
                let n = self.u.int_in_range(0..=3)?;
                let mut keep = Vec::new();
                for _ in 0..n {
                    keep.push(Value::from(pick(self.u, names)?.as_str()));
                }
                map.insert("$retainKeys".into(), Value::Array(keep));
            }
            2 => {
                let key = definition
                    .and_then(|d| api::patch::meta::patch_meta(d, name))
                    .and_then(|m| m.merge_key)
                    .unwrap_or("name");
                let n = self.u.int_in_range(0..=3)?;
                let mut order = Vec::new();
                for _ in 0..n {
                    let mut item = Map::new();
                    item.insert(
                        key.to_string(),
                        Value::from(*pick(self.u, &["a", "b", "c"])?),
                    );
                    order.push(Value::Object(item));
                }
                map.insert(format!("$setElementOrder/{name}"), Value::Array(order));
            }
            _ => {
                let n = self.u.int_in_range(0..=2)?;
                let mut values = Vec::new();
                for _ in 0..n {
                    values.push(Value::String(self.string()?));
                }
                map.insert(
                    format!("$deleteFromPrimitiveList/{name}"),
                    Value::Array(values),
                );
            }
        }
        Ok(())
    }

    /// A JSON pointer into `doc` (mostly to something that exists, sometimes one step
    /// past it or malformed), for JSON patch operations.
    pub fn pointer(&mut self, doc: &Value) -> Result<String> {
        let mut out = String::new();
        let mut at = Some(doc);
        loop {
            if self.u.ratio(1, 3)? || self.u.is_empty() {
                return Ok(out);
            }
            let step = match at {
                Some(Value::Object(map)) if !map.is_empty() && self.u.ratio(5, 6)? => {
                    let keys: Vec<&String> = map.keys().collect();
                    let k = *pick(self.u, &keys)?;
                    at = map.get(k);
                    k.replace('~', "~0").replace('/', "~1")
                }
                Some(Value::Array(items)) if self.u.ratio(5, 6)? => {
                    let i = self.u.int_in_range(0..=items.len())?;
                    at = items.get(i);
                    if i == items.len() && self.u.ratio(1, 2)? {
                        "-".to_string()
                    } else {
                        i.to_string()
                    }
                }
                _ => {
                    at = None;
                    (*pick(
                        self.u,
                        &[
                            "a",
                            "0",
                            "01",
                            "-",
                            "-1",
                            "~",
                            "~2",
                            "",
                            "99999999999999999999",
                        ],
                    )?)
                    .to_string()
                }
            };
            out.push('/');
            out.push_str(&step);
        }
    }
}
