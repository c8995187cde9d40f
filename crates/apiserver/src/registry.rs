//! The generic registry: create, read, update, patch and delete of any resource on top
//! of the store, with upstream's metadata rules (uid, timestamps, generateName,
//! resourceVersion preconditions, finalizers and graceful deletion). It never matches
//! on a kind itself: kind-specific behaviour comes from [`crate::strategy`] and
//! `api::validation`.

use std::sync::Arc;

use api::catalog::ResourceInfo;
use bytes::Bytes;
use serde_json::{Value, json};
use store::{Compare, CompareOp, CompareTarget, Op, RangeRequest, Revision, Txn};

use crate::errors::{ApiError, ApiResult};
use crate::server::ApiServer;

/// Where an object lives in the store.
pub fn object_key(info: &ResourceInfo, namespace: &str, name: &str) -> String {
    if info.namespaced {
        format!(
            "/registry/{}/{}/{}/{}",
            info.storage_group(),
            info.plural,
            namespace,
            name
        )
    } else {
        format!(
            "/registry/{}/{}/{}",
            info.storage_group(),
            info.plural,
            name
        )
    }
}

/// The key prefix of a list (one namespace, or all of them when `namespace` is empty).
pub fn list_prefix(info: &ResourceInfo, namespace: &str) -> String {
    if info.namespaced && !namespace.is_empty() {
        format!(
            "/registry/{}/{}/{}/",
            info.storage_group(),
            info.plural,
            namespace
        )
    } else {
        format!("/registry/{}/{}/", info.storage_group(), info.plural)
    }
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Options every write carries.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: String,
    /// "Strict", "Warn" (default) or "Ignore".
    pub field_validation: String,
    pub force: bool,
    /// Set for server-side apply, which records its own managedFields.
    pub apply: bool,
}

/// Result of a write: HTTP code, the object, and warnings for the `Warning` header.
pub struct WriteResult {
    pub code: u16,
    pub object: Value,
    pub warnings: Vec<String>,
}

/// What an update function decides.
pub enum Update {
    Put(Value),
    Delete(Value),
    /// Leave the object as it is and answer with this.
    Unchanged(Value),
}

/// Read the latest stored state of a key (value without resourceVersion, mod revision).
pub async fn read_latest(server: &ApiServer, key: &str) -> ApiResult<Option<(Value, Revision)>> {
    let resp = server
        .store
        .range(RangeRequest {
            key: Bytes::from(key.to_string()),
            ..Default::default()
        })
        .await?;
    match resp.kvs.into_iter().next() {
        None => Ok(None),
        Some(kv) => {
            let v: Value = serde_json::from_slice(&kv.value)
                .map_err(|e| ApiError::internal(format!("stored object {key} is not JSON: {e}")))?;
            Ok(Some((v, kv.mod_revision)))
        }
    }
}

fn set_rv(obj: &mut Value, rev: Revision) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), Value::String(rev.to_string()));
    }
}

fn strip_rv(obj: &Value) -> Bytes {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("selfLink");
    }
    Bytes::from(serde_json::to_vec(&o).unwrap_or_default())
}

/// Upstream's random suffix alphabet for generateName (no vowels, no confusable digits).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub fn random_suffix(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..n)
        .map(|_| SUFFIX_ALPHABET[rng.random_range(0..SUFFIX_ALPHABET.len())] as char)
        .collect()
}

/// Store one new object; fails with AlreadyExists if the key is taken.
/// `extra` are additional ops committed in the same transaction (allocations).
pub async fn store_create(
    server: &ApiServer,
    info: &ResourceInfo,
    key: &str,
    obj: &mut Value,
    extra: Vec<(Compare, Op)>,
) -> ApiResult<Revision> {
    let mut compare = vec![Compare {
        key: Bytes::from(key.to_string()),
        op: CompareOp::Equal,
        target: CompareTarget::CreateRevision(0),
    }];
    let mut success = vec![Op::Put {
        key: Bytes::from(key.to_string()),
        value: strip_rv(obj),
        prev_kv: false,
    }];
    for (c, o) in extra {
        compare.push(c);
        success.push(o);
    }
    let resp = server
        .store
        .txn(Txn {
            compare,
            success,
            failure: vec![],
        })
        .await?;
    if !resp.succeeded {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // Either the object exists or an allocation raced; report the object first.
        if read_latest(server, key).await?.is_some() {
            return Err(ApiError::already_exists(&info.plural, &info.group, &name));
        }
        return Err(ApiError::conflict(
            &info.plural,
            &info.group,
            &name,
            "an allocation raced; please retry",
        ));
    }
    set_rv(obj, resp.revision);
    server.cache.wait_for(resp.revision).await;
    Ok(resp.revision)
}

/// Read-modify-write with compare-and-swap, retried on races. `f` sees the current
/// object (with its resourceVersion set) and decides what to do.
pub async fn guaranteed_update<F>(
    server: &ApiServer,
    info: &ResourceInfo,
    key: &str,
    name: &str,
    dry_run: bool,
    mut f: F,
) -> ApiResult<(Update, Revision)>
where
    F: FnMut(Option<Value>) -> ApiResult<Update>,
{
    for _ in 0..32 {
        let current = read_latest(server, key).await?;
        let (cur_val, cur_rev) = match current {
            Some((mut v, rev)) => {
                set_rv(&mut v, rev);
                (Some(v), rev)
            }
            None => (None, 0),
        };
        let decision = f(cur_val)?;
        if dry_run {
            return Ok((decision, cur_rev));
        }
        let cmp = if cur_rev == 0 {
            CompareTarget::CreateRevision(0)
        } else {
            CompareTarget::ModRevision(cur_rev)
        };
        let compare = vec![Compare {
            key: Bytes::from(key.to_string()),
            op: CompareOp::Equal,
            target: cmp,
        }];
        let op = match &decision {
            Update::Unchanged(_) => return Ok((decision, cur_rev)),
            Update::Put(v) => Op::Put {
                key: Bytes::from(key.to_string()),
                value: strip_rv(v),
                prev_kv: false,
            },
            Update::Delete(_) => Op::Delete {
                key: Bytes::from(key.to_string()),
                range_end: None,
                prev_kv: false,
            },
        };
        let resp = server
            .store
            .txn(Txn {
                compare,
                success: vec![op],
                failure: vec![],
            })
            .await?;
        if resp.succeeded {
            server.cache.wait_for(resp.revision).await;
            let decision = match decision {
                Update::Put(mut v) => {
                    set_rv(&mut v, resp.revision);
                    Update::Put(v)
                }
                Update::Delete(mut v) => {
                    set_rv(&mut v, resp.revision);
                    Update::Delete(v)
                }
                u => u,
            };
            return Ok((decision, resp.revision));
        }
    }
    Err(ApiError::conflict(
        &info.plural,
        &info.group,
        name,
        "too many concurrent updates; please retry",
    ))
}

/// Fill server-set metadata on create (uid, creationTimestamp, name from generateName).
pub fn init_metadata(obj: &mut Value, info: &ResourceInfo, namespace: &str) -> ApiResult<()> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    let meta = obj["metadata"]
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
    let has_name = meta
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if !has_name
        && let Some(prefix) = meta
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    {
        // Upstream truncates the prefix so the name stays within 63 characters.
        let mut p = prefix.to_string();
        p.truncate(58);
        meta.insert(
            "name".into(),
            Value::String(format!("{p}{}", random_suffix(5))),
        );
    }
    if info.namespaced {
        meta.insert("namespace".into(), Value::String(namespace.to_string()));
    } else {
        meta.remove("namespace");
    }
    meta.insert(
        "uid".into(),
        Value::String(uuid::Uuid::new_v4().to_string()),
    );
    meta.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
    for f in [
        "resourceVersion",
        "selfLink",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        meta.remove(f);
    }
    // generation is managed by the strategy
    meta.remove("generation");
    Ok(())
}

/// Carry over what an update may not change (uid, creationTimestamp, deletion fields…).
pub fn carry_metadata(new: &mut Value, old: &Value) {
    let Some(new_meta) = new.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for f in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old["metadata"].get(f) {
            Some(v) => {
                new_meta.insert(f.into(), v.clone());
            }
            None => {
                new_meta.remove(f);
            }
        }
    }
    if let Some(ns) = old["metadata"].get("namespace") {
        new_meta.insert("namespace".into(), ns.clone());
    }
}

/// Names of finalizers on an object.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

pub type InfoRef = Arc<ResourceInfo>;
