//! Field documentation for column descriptions.
//!
//! Upstream fills most column descriptions from the API types' field docs
//! (`SwaggerDoc()`). The same text ships with `k8s-openapi` as JSON-schema descriptions,
//! so it is read from there at run time instead of being repeated here. Each type's
//! schema is generated once and cached.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use k8s_openapi::schemars::{JsonSchema, SchemaGenerator};

type FieldDocs = Arc<HashMap<String, String>>;

fn cache() -> &'static Mutex<HashMap<TypeId, FieldDocs>> {
    static CACHE: OnceLock<Mutex<HashMap<TypeId, FieldDocs>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

fn docs_of<T: JsonSchema + 'static>() -> FieldDocs {
    let key = TypeId::of::<T>();
    if let Some(found) = cache().lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return found.clone();
    }
    let schema = T::json_schema(&mut SchemaGenerator::default());
    let docs: HashMap<String, String> = schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|props| {
            props
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.get("description")?.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let docs = Arc::new(docs);
    cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, docs.clone());
    docs
}

/// The documentation of field `name` of type `T` (empty when there is none, as upstream's
/// `SwaggerDoc()[name]` is for an unknown key).
pub(super) fn field<T: JsonSchema + 'static>(name: &str) -> String {
    docs_of::<T>().get(name).cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn reads_field_docs() {
        assert!(field::<ObjectMeta>("name").starts_with("Name must be unique within a namespace."));
        assert!(
            field::<ObjectMeta>("creationTimestamp")
                .starts_with("CreationTimestamp is a timestamp")
        );
        assert_eq!(field::<ObjectMeta>("noSuchField"), "");
    }
}
