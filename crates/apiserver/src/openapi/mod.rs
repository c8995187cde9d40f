//! The OpenAPI documents the API server publishes, and schema-driven field checks.
//!
//! Everything is generated from the Rust types (`k8s-openapi` with `schemars`) and from
//! the CRDs' schemas; no upstream spec file is embedded. [`OpenApi`] serves:
//!
//! * `/openapi/v3` — an index of group-versions ([`OpenApi::v3_index`]) and one
//!   OpenAPI 3.0 document per group-version ([`OpenApi::v3_doc`]), used by current
//!   kubectl for `explain`, for client-side apply's merge keys, and to decide that the
//!   server validates fields itself (a PATCH operation carrying `fieldValidation`);
//! * `/openapi/v2` — one swagger 2.0 document of everything, as JSON
//!   ([`OpenApi::v2_json`]) and as gnostic protobuf ([`OpenApi::v2_protobuf`]), which
//!   kubectl 1.20 downloads for client-side validation and `explain`.
//!
//! Rendered documents are cached and dropped whenever a custom resource is added or
//! removed. The same schemas answer [`OpenApi::unknown_fields`] (server-side
//! `fieldValidation=Strict|Warn`) and prune custom resources ([`OpenApi::prune_custom`],
//! [`prune`]); [`validate_custom`] checks a custom resource against its structural schema.

mod custom;
mod fields;
pub mod gnostic;
mod paths;
mod registry;
mod render;
mod structural;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError, RwLock};

use api::catalog::ResourceInfo;
use bytes::Bytes;
use prost::Message;
use serde_json::{Value, json};
use sha2::{Digest, Sha512};

use custom::CustomDefs;
use fields::{Mode, Walker};
use registry::{Gvk, Registry};
use render::Source;

pub use render::INFO_VERSION;
pub use structural::{ErrorType, FieldError, validate_custom, validate_custom_errors};

/// The `Content-Type` of [`OpenApi::v2_protobuf`] responses. Clients ask with
/// `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, but `@` is not
/// valid in a media type and kubectl's parser rejects it in a response, so upstream
/// answers with this dotted spelling.
pub const V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// Errors of [`OpenApi::set_custom`].
#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    #[error("{0} is not a custom resource")]
    NotCustom(String),
    #[error("the schema of {0} is not a JSON object")]
    InvalidSchema(String),
}

/// The served resources and their documents. Cheap to share behind an `Arc`; every
/// method takes `&self`.
pub struct OpenApi {
    model: RwLock<Model>,
    cache: Mutex<Cache>,
}

/// What is served: the built-ins and the custom resources.
pub(crate) struct Model {
    builtins: Vec<ResourceInfo>,
    /// Keyed by (group, version, plural).
    customs: BTreeMap<(String, String, String), Custom>,
}

/// One custom resource version.
pub(crate) struct Custom {
    info: ResourceInfo,
    defs: CustomDefs,
}

/// Rendered documents. Each group-version's OpenAPI 3 document depends only on that
/// group-version, so a CRD change drops just its own documents, the index and v2.
#[derive(Default)]
struct Cache {
    /// Keyed by `api/v1` / `apis/<group>/<version>`: the document and its hash.
    v3: HashMap<String, (Bytes, String)>,
    v3_index: Option<Bytes>,
    v2_json: Option<Bytes>,
    v2_proto: Option<Bytes>,
}

/// Upstream's document hash: upper-case hex SHA-512.
fn hash(bytes: &[u8]) -> String {
    hex::encode_upper(Sha512::digest(bytes))
}

fn json_bytes(value: &Value) -> Bytes {
    Bytes::from(value.to_string())
}

/// The schema used for a CRD version without one: anything goes.
fn permissive_schema() -> Value {
    json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

impl OpenApi {
    /// Documents for the given built-in resources (normally `api::catalog::builtin()`).
    pub fn new(builtins: &[ResourceInfo]) -> OpenApi {
        OpenApi {
            model: RwLock::new(Model {
                builtins: builtins.to_vec(),
                customs: BTreeMap::new(),
            }),
            cache: Mutex::new(Cache::default()),
        }
    }

    /// Adds or replaces a custom resource version. `info` is its catalogue entry
    /// (`custom: true`; `subresources` lists `status`/`scale` when the CRD enables them);
    /// `schema` is the version's `openAPIV3Schema` (`None`: accept anything).
    pub fn set_custom(
        &self,
        info: &ResourceInfo,
        schema: Option<&Value>,
    ) -> Result<(), OpenApiError> {
        if !info.custom {
            return Err(OpenApiError::NotCustom(info.group_resource()));
        }
        let schema = match schema {
            Some(s @ Value::Object(_)) => s.clone(),
            Some(_) => return Err(OpenApiError::InvalidSchema(info.group_resource())),
            None => permissive_schema(),
        };
        let gvk = Gvk::new(&info.group, &info.version, &info.kind);
        let defs = custom::build(&gvk, &info.list_kind, &schema);
        let key = (
            info.group.clone(),
            info.version.clone(),
            info.plural.clone(),
        );
        self.write_model().customs.insert(
            key,
            Custom {
                info: info.clone(),
                defs,
            },
        );
        self.invalidate([(info.group.as_str(), info.version.as_str())]);
        Ok(())
    }

    /// Serves every served version of a CustomResourceDefinition (its JSON form), with
    /// each version's `schema.openAPIV3Schema`, and forgets the versions of that CRD it
    /// no longer serves. A CRD without group, kind or plural is ignored.
    pub fn set_crd(&self, crd: &Value) {
        let entries = crd_versions(crd);
        let spec = &crd["spec"];
        let (Some(group), Some(plural)) =
            (spec["group"].as_str(), spec["names"]["plural"].as_str())
        else {
            return;
        };
        let mut model = self.write_model();
        let mut touched: Vec<(String, String)> = Vec::new();
        model.customs.retain(|(g, v, p), _| {
            let keep = !(g == group && p == plural);
            if !keep {
                touched.push((g.clone(), v.clone()));
            }
            keep
        });
        for (info, schema) in entries {
            touched.push((info.group.clone(), info.version.clone()));
            let gvk = Gvk::new(&info.group, &info.version, &info.kind);
            let defs = custom::build(&gvk, &info.list_kind, &schema);
            let key = (
                info.group.clone(),
                info.version.clone(),
                info.plural.clone(),
            );
            model.customs.insert(key, Custom { info, defs });
        }
        drop(model);
        self.invalidate(touched.iter().map(|(g, v)| (g.as_str(), v.as_str())));
    }

    /// Stops publishing every version of a CustomResourceDefinition (its JSON form).
    pub fn remove_crd(&self, crd: &Value) {
        let spec = &crd["spec"];
        let (Some(group), Some(plural)) =
            (spec["group"].as_str(), spec["names"]["plural"].as_str())
        else {
            return;
        };
        let mut model = self.write_model();
        let mut touched: Vec<(String, String)> = Vec::new();
        model.customs.retain(|(g, v, p), _| {
            let keep = !(g == group && p == plural);
            if !keep {
                touched.push((g.clone(), v.clone()));
            }
            keep
        });
        drop(model);
        if !touched.is_empty() {
            self.invalidate(touched.iter().map(|(g, v)| (g.as_str(), v.as_str())));
        }
    }

    /// Removes a custom resource version; returns whether it was present.
    pub fn remove_custom(&self, group: &str, version: &str, plural: &str) -> bool {
        let key = (group.to_string(), version.to_string(), plural.to_string());
        let removed = self.write_model().customs.remove(&key).is_some();
        if removed {
            self.invalidate([(group, version)]);
        }
        removed
    }

    /// The `/openapi/v3` index: `{"paths": {"apis/apps/v1": {"serverRelativeURL":
    /// "/openapi/v3/apis/apps/v1?hash=…"}, …}}`.
    pub fn v3_index(&self) -> Bytes {
        let mut cache = self.lock_cache();
        if let Some(index) = &cache.v3_index {
            return index.clone();
        }
        let model = self.read_model();
        let src = Source {
            registry: registry::shared(),
            model: &model,
        };
        let mut index = serde_json::Map::new();
        for (group, version) in src.group_versions() {
            let Some((_, digest)) = v3_cached(&mut cache, &src, &group, &version) else {
                continue;
            };
            let path = render::gv_path(&group, &version);
            index.insert(
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={digest}")}),
            );
        }
        let index = json_bytes(&json!({"paths": index}));
        cache.v3_index = Some(index.clone());
        index
    }

    /// The document of one group-version (`api/v1`, `apis/apps/v1`; surrounding slashes
    /// are ignored) and its hash, which is also the value of the `hash` query parameter
    /// in the index (serve it quoted as the ETag).
    pub fn v3_doc(&self, path: &str) -> Option<(Bytes, String)> {
        let path = path.trim_matches('/');
        let (group, version) = match path.split('/').collect::<Vec<_>>()[..] {
            ["api", version] => ("", version),
            ["apis", group, version] => (group, version),
            _ => return None,
        };
        let mut cache = self.lock_cache();
        let model = self.read_model();
        let src = Source {
            registry: registry::shared(),
            model: &model,
        };
        v3_cached(&mut cache, &src, group, version)
    }

    /// The swagger 2.0 document as JSON.
    pub fn v2_json(&self) -> Bytes {
        self.v2().0
    }

    /// The swagger 2.0 document as gnostic protobuf
    /// (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`).
    pub fn v2_protobuf(&self) -> Bytes {
        self.v2().1
    }

    /// JSON paths of the fields of `obj` that the schema of `group/version kind` does not
    /// know, as upstream's strict decoding names them (`spec.foo`,
    /// `spec.containers[0].foo`). Empty for unknown kinds.
    pub fn unknown_fields(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        obj: &Value,
    ) -> Vec<String> {
        let model = self.read_model();
        let src = Source {
            registry: registry::shared(),
            model: &model,
        };
        let Some((schema, mode)) = root_schema(&src, group, version, kind) else {
            return Vec::new();
        };
        let mut copy = obj.clone();
        let mut walker = Walker::new(&src, false);
        walker.walk(schema, &mut copy, mode);
        walker.unknown
    }

    /// Drops the fields of a custom resource that its schema does not know (and nulls it
    /// does not allow), as upstream does before storing; returns the dropped paths. Does
    /// nothing for kinds that are not custom resources.
    /// Drops the fields of any object that its schema does not know, as upstream's
    /// decoding into typed structs does; returns the dropped paths.
    pub fn prune_unknown(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        obj: &mut Value,
    ) -> Vec<String> {
        let model = self.read_model();
        let src = Source {
            registry: registry::shared(),
            model: &model,
        };
        let Some((schema, mode)) = root_schema(&src, group, version, kind) else {
            return Vec::new();
        };
        let mut walker = Walker::new(&src, true);
        walker.walk(schema, obj, mode);
        walker.unknown
    }

    pub fn prune_custom(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        obj: &mut Value,
    ) -> Vec<String> {
        let model = self.read_model();
        let src = Source {
            registry: registry::shared(),
            model: &model,
        };
        let Some((schema, Mode::Structural)) = root_schema(&src, group, version, kind) else {
            return Vec::new();
        };
        let mut walker = Walker::new(&src, true);
        walker.walk(schema, obj, Mode::Structural);
        walker.unknown
    }

    fn read_model(&self) -> std::sync::RwLockReadGuard<'_, Model> {
        self.model.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_model(&self) -> std::sync::RwLockWriteGuard<'_, Model> {
        self.model.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops the cached documents that depend on the given group-versions.
    fn invalidate<'a>(&self, group_versions: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let mut cache = self.lock_cache();
        for (group, version) in group_versions {
            cache.v3.remove(&render::gv_path(group, version));
        }
        cache.v3_index = None;
        cache.v2_json = None;
        cache.v2_proto = None;
    }

    fn v2(&self) -> (Bytes, Bytes) {
        let mut cache = self.lock_cache();
        if let (Some(json), Some(proto)) = (&cache.v2_json, &cache.v2_proto) {
            return (json.clone(), proto.clone());
        }
        let model = self.read_model();
        let src = Source {
            registry: registry::shared(),
            model: &model,
        };
        let doc = render::v2_document(&src);
        let json = json_bytes(&doc);
        let proto = Bytes::from(gnostic::document(&doc).encode_to_vec());
        cache.v2_json = Some(json.clone());
        cache.v2_proto = Some(proto.clone());
        (json, proto)
    }
}

/// The cached OpenAPI 3 document of a group-version, rendered if missing.
fn v3_cached(
    cache: &mut Cache,
    src: &Source<'_>,
    group: &str,
    version: &str,
) -> Option<(Bytes, String)> {
    let path = render::gv_path(group, version);
    if let Some(doc) = cache.v3.get(&path) {
        return Some(doc.clone());
    }
    let doc = render::v3_document(src, group, version)?;
    let bytes = json_bytes(&doc);
    let entry = (bytes.clone(), hash(&bytes));
    cache.v3.insert(path, entry.clone());
    Some(entry)
}

/// The served versions of a CRD as catalogue entries with their schemas (the
/// permissive schema where a version has none). Empty when names are missing.
fn crd_versions(crd: &Value) -> Vec<(ResourceInfo, Value)> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let (Some(group), Some(kind), Some(plural)) = (
        text(&spec["group"]),
        text(&names["kind"]),
        text(&names["plural"]),
    ) else {
        return Vec::new();
    };
    let list_kind = text(&names["listKind"]).unwrap_or_else(|| format!("{kind}List"));
    let singular = text(&names["singular"]).unwrap_or_else(|| kind.to_ascii_lowercase());
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let versions = spec["versions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let sub_verbs = || vec!["get".to_string(), "patch".to_string(), "update".to_string()];
    versions
        .iter()
        .filter(|v| v["served"].as_bool() == Some(true))
        .filter_map(|v| {
            let version = text(&v["name"])?;
            let mut subresources = Vec::new();
            if v["subresources"]["status"].is_object() {
                subresources.push(api::catalog::Subresource {
                    name: "status".into(),
                    group: group.clone(),
                    version: version.clone(),
                    kind: kind.clone(),
                    verbs: sub_verbs(),
                });
            }
            if v["subresources"]["scale"].is_object() {
                subresources.push(api::catalog::Subresource {
                    name: "scale".into(),
                    group: "autoscaling".into(),
                    version: "v1".into(),
                    kind: "Scale".into(),
                    verbs: sub_verbs(),
                });
            }
            let schema = match &v["schema"]["openAPIV3Schema"] {
                s @ Value::Object(_) => s.clone(),
                _ => permissive_schema(),
            };
            let info = ResourceInfo {
                group: group.clone(),
                version,
                kind: kind.clone(),
                list_kind: list_kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                namespaced,
                short_names: strings(&names["shortNames"]),
                categories: strings(&names["categories"]),
                subresources,
                verbs: api::catalog::ALL_VERBS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                custom: true,
            };
            Some((info, schema))
        })
        .collect()
}

/// The definition of a kind and the rules it follows.
fn root_schema<'a>(
    src: &'a Source<'_>,
    group: &str,
    version: &str,
    kind: &str,
) -> Option<(&'a Value, Mode)> {
    use fields::Resolve;
    let name = src.lookup(&Gvk::new(group, version, kind))?;
    src.resolve(&name)
}

/// Resolves only the built-in definitions (for [`prune`], where `metadata` refers to
/// `ObjectMeta`).
struct Builtins(&'static Registry);

impl fields::Resolve for Builtins {
    fn resolve(&self, name: &str) -> Option<(&Value, Mode)> {
        self.0.definition_v2(name).map(|d| (d, Mode::Builtin))
    }
}

/// Prunes a custom resource against a CRD version's `openAPIV3Schema` directly: drops
/// unknown fields (keeping `apiVersion`, `kind`, and `metadata` pruned as `ObjectMeta`)
/// and returns their paths.
pub fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut root = schema.clone();
    custom::complete_root(&mut root, true);
    let resolver = Builtins(registry::shared());
    let mut walker = Walker::new(&resolver, true);
    walker.walk(&root, obj, Mode::Structural);
    walker.unknown
}

#[cfg(test)]
mod tests;
