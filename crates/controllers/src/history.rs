//! Controller history: the `apps/v1` ControllerRevisions that DaemonSets and
//! StatefulSets keep of their pod templates (upstream `pkg/controller/history`).
//!
//! A revision's `data` is a strategic-merge patch that replaces `spec.template`
//! (`{"spec":{"template":{…,"$patch":"replace"}}}`, keys sorted as Go's encoder writes
//! them), its `revision` a number that grows with every new template, and its name
//! `<owner>-<hash>`. DaemonSets hash the template ([`hash_template`], upstream
//! `controller.ComputeHash`) and StatefulSets the revision data
//! ([`hash_revision_data`], upstream `history.HashControllerRevision`); both are a
//! 32-bit FNV-1a sum written with upstream's `SafeEncodeString` alphabet, and the
//! collision count is mixed in when the owner's status carries one.
//!
//! Upstream hashes the Go structure (`spew` output) for DaemonSets, which no other
//! program can reproduce, so names differ from upstream's for the same template while
//! keeping their shape and stability.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::{Map, Value};

use crate::{Error, is_conflict};

/// Label with a StatefulSet revision's hash (upstream `ControllerRevisionHashLabel`).
pub const REVISION_HASH_LABEL: &str = "controller.kubernetes.io/hash";
/// Label on pods (and DaemonSet revisions) naming the revision they came from.
pub const POD_REVISION_LABEL: &str = "controller-revision-hash";
/// Upstream's limit on the owner-name prefix of a revision name.
const MAX_PREFIX: usize = 223;
/// Upstream `rand.SafeEncodeString` alphabet: no vowels, no look-alike digits.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// 32-bit FNV-1a. Written out because the `fnv` crate offers only the 64-bit hasher
/// and upstream's names depend on the 32-bit sum.
pub fn fnv32a(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for part in parts {
        for b in *part {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

/// Upstream `rand.SafeEncodeString`: each byte mapped into [`SAFE_ALPHABET`].
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()]))
        .collect()
}

/// `value` with every object's keys sorted, as Go's `encoding/json` writes maps.
pub fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> =
                m.iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn encode_sum(sum: u32) -> String {
    safe_encode(&sum.to_string())
}

/// The hash of a pod template with the owner's collision count (DaemonSet revision
/// names and `controller-revision-hash` labels, Deployment-style template hashes).
pub fn hash_template(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let json = serde_json::to_value(template).map_or_else(|_| Value::Null, |v| canonical(&v));
    let text = json.to_string();
    match collision_count {
        Some(c) => encode_sum(fnv32a(&[text.as_bytes(), c.to_string().as_bytes()])),
        None => encode_sum(fnv32a(&[text.as_bytes()])),
    }
}

/// The hash of a revision's data with the collision count (StatefulSet revisions).
pub fn hash_revision_data(data: &Value, collision_count: Option<i32>) -> String {
    let text = canonical(data).to_string();
    match collision_count {
        Some(c) => encode_sum(fnv32a(&[text.as_bytes(), c.to_string().as_bytes()])),
        None => encode_sum(fnv32a(&[text.as_bytes()])),
    }
}

/// `<prefix>-<hash>`, the prefix cut to upstream's 223 characters.
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let cut = prefix
        .char_indices()
        .nth(MAX_PREFIX)
        .map_or(prefix, |(i, _)| &prefix[..i]);
    format!("{cut}-{hash}")
}

/// The revision data for a template: a patch that replaces `spec.template`.
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or(Value::Object(Map::new()));
    if let Value::Object(m) = &mut t {
        // Go's encoder writes a zero creationTimestamp as null; keep the same bytes.
        let meta = m
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(meta) = meta {
            meta.entry("creationTimestamp").or_insert(Value::Null);
        }
        m.insert("$patch".into(), Value::String("replace".into()));
    }
    canonical(&serde_json::json!({ "spec": { "template": t } }))
}

/// The pod template stored in a revision's data (`None` if the data has none).
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = revision.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Value::Object(m) = &mut t {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// Whether two revisions hold the same template (upstream `EqualRevision`: the hash
/// labels must agree when both have one, then the data must be equal).
pub fn equal_revision(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    let hash = |r: &ControllerRevision| {
        r.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(REVISION_HASH_LABEL).cloned())
    };
    if let (Some(x), Some(y)) = (hash(a), hash(b))
        && x != y
    {
        return false;
    }
    data_equal(a.data.as_ref(), b.data.as_ref())
}

/// Whether two revision payloads are the same JSON document.
pub fn data_equal(a: Option<&RawExtension>, b: Option<&RawExtension>) -> bool {
    let norm = |r: Option<&RawExtension>| r.map(|r| canonical(&r.0));
    norm(a) == norm(b)
}

/// Sort revisions by revision number, then creation time, then name (upstream
/// `SortControllerRevisions`).
pub fn sort_revisions(revisions: &mut [ControllerRevision]) {
    revisions.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                let t =
                    |r: &ControllerRevision| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
                t(a).cmp(&t(b))
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// One more than the highest revision number (1 for no history).
pub fn next_revision(revisions: &[ControllerRevision]) -> i64 {
    revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// Build a revision owned by `owner` (not yet named: see [`create_revision`]).
pub fn new_revision(
    owner: OwnerReference,
    namespace: &str,
    labels: BTreeMap<String, String>,
    annotations: Option<BTreeMap<String, String>>,
    data: Value,
    revision: i64,
) -> ControllerRevision {
    ControllerRevision {
        metadata: ObjectMeta {
            namespace: Some(namespace.into()),
            labels: Some(labels),
            annotations: annotations.filter(|a| !a.is_empty()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// Which revisions may go: the oldest ones that are not `live`, as many as exceed
/// `limit`. StatefulSets count only the non-live revisions against the limit
/// (upstream `truncateHistory`); DaemonSets count every old revision but still spare
/// live ones (upstream `cleanupHistory`): `live_counts` chooses the latter.
/// `revisions` must be sorted with [`sort_revisions`].
pub fn revisions_to_delete<'a>(
    revisions: &'a [ControllerRevision],
    live: &dyn Fn(&ControllerRevision) -> bool,
    limit: i32,
    live_counts: bool,
) -> Vec<&'a ControllerRevision> {
    let old: Vec<&ControllerRevision> = revisions.iter().filter(|r| !live(r)).collect();
    let counted = if live_counts {
        revisions.len()
    } else {
        old.len()
    };
    let excess = counted.saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
    old.into_iter().take(excess).collect()
}

/// Create `revision` named `<prefix>-<hash(data, collision)>` for a StatefulSet-style
/// owner: on a name collision with different data the collision count grows and the
/// next name is tried; an existing equal revision is returned as is.
pub async fn create_revision(
    api: &Api<ControllerRevision>,
    prefix: &str,
    mut revision: ControllerRevision,
    collision_count: &mut i32,
) -> Result<ControllerRevision, Error> {
    let data = revision
        .data
        .as_ref()
        .map(|d| d.0.clone())
        .unwrap_or(Value::Null);
    for _ in 0..16 {
        let hash = hash_revision_data(&data, Some(*collision_count));
        revision.metadata.name = Some(revision_name(prefix, &hash));
        revision
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(REVISION_HASH_LABEL.into(), hash);
        match api.create(&PostParams::default(), &revision).await {
            Ok(r) => return Ok(r),
            Err(e) if is_already_exists(&e) => {
                let name = revision.metadata.name.clone().unwrap_or_default();
                let existing = api.get(&name).await?;
                if data_equal(existing.data.as_ref(), revision.data.as_ref()) {
                    return Ok(existing);
                }
                *collision_count = collision_count.saturating_add(1);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Conflict(format!(
        "controller revision names for {prefix} keep colliding"
    )))
}

/// Give an existing revision a new revision number (a roll back to an old template).
pub async fn update_revision_number(
    api: &Api<ControllerRevision>,
    revision: &ControllerRevision,
    number: i64,
) -> Result<ControllerRevision, Error> {
    let mut current = revision.clone();
    for _ in 0..5 {
        if current.revision == number {
            return Ok(current);
        }
        current.revision = number;
        let name = current.metadata.name.clone().unwrap_or_default();
        match api.replace(&name, &PostParams::default(), &current).await {
            Ok(r) => return Ok(r),
            Err(e) if is_conflict(&e) => current = api.get(&name).await?,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Conflict(format!(
        "controller revision {:?}",
        revision.metadata.name
    )))
}

pub(crate) fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fnv32a_known_values() {
        // Reference values of the FNV-1a specification.
        let cases: &[(&str, u32)] = &[
            ("", 0x811c_9dc5),
            ("a", 0xe40c_292c),
            ("foobar", 0xbf9c_f968),
        ];
        for (input, want) in cases {
            assert_eq!(fnv32a(&[input.as_bytes()]), *want, "{input:?}");
        }
        assert_eq!(fnv32a(&[b"foo", b"bar"]), fnv32a(&[b"foobar"]));
    }

    #[test]
    fn safe_encode_table() {
        let cases = [
            ("", ""),
            ("0", "4"),
            ("123", "567"),
            ("4294967295", "86f8fbc6f9"),
        ];
        for (input, want) in cases {
            assert_eq!(safe_encode(input), want, "{input:?}");
        }
    }

    #[test]
    fn canonical_sorts_nested_keys() {
        let v = json!({"b": 1, "a": {"z": [ {"y": 1, "x": 2} ], "c": null}});
        assert_eq!(
            canonical(&v).to_string(),
            r#"{"a":{"c":null,"z":[{"x":2,"y":1}]},"b":1}"#
        );
    }

    #[test]
    fn template_hash_depends_on_template_and_collisions() {
        let t = |image: &str| -> PodTemplateSpec {
            serde_json::from_value(json!({
                "metadata": {"labels": {"app": "x"}},
                "spec": {"containers": [{"name": "c", "image": image}]}
            }))
            .expect("template")
        };
        let a = hash_template(&t("nginx:1"), None);
        assert_eq!(a, hash_template(&t("nginx:1"), None), "stable");
        assert_ne!(a, hash_template(&t("nginx:2"), None));
        assert_ne!(a, hash_template(&t("nginx:1"), Some(1)));
        assert!(a.len() <= 10 && !a.is_empty());
        assert!(a.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{a}");
    }

    #[test]
    fn template_patch_shape() {
        let t: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}
        }))
        .expect("template");
        let p = template_patch(&t);
        assert_eq!(
            p.to_string(),
            r#"{"spec":{"template":{"$patch":"replace","metadata":{"creationTimestamp":null,"labels":{"app":"x"}},"spec":{"containers":[{"image":"i","name":"c"}]}}}}"#
        );
        let rev = ControllerRevision {
            data: Some(RawExtension(p)),
            ..Default::default()
        };
        assert_eq!(template_of(&rev), Some(t));
    }

    #[test]
    fn revision_name_cuts_long_prefix() {
        assert_eq!(revision_name("web", "abc"), "web-abc");
        let long = "x".repeat(300);
        assert_eq!(revision_name(&long, "h").len(), MAX_PREFIX + 2);
    }

    fn rev(name: &str, number: i64, data: Value) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(RawExtension(data)),
            revision: number,
        }
    }

    #[test]
    fn history_helpers() {
        let mut revs = vec![
            rev("c", 3, json!({"v": 3})),
            rev("a", 1, json!({"v": 1})),
            rev("b", 2, json!({"v": 2})),
        ];
        sort_revisions(&mut revs);
        let names: Vec<_> = revs
            .iter()
            .map(|r| r.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(next_revision(&revs), 4);
        assert_eq!(next_revision(&[]), 1);
        assert!(equal_revision(&revs[0], &rev("z", 9, json!({"v": 1}))));
        assert!(!equal_revision(&revs[0], &revs[1]));

        // (limit, live names, live revisions count, expected deletions)
        let cases: &[(i32, &[&str], bool, &[&str])] = &[
            (10, &["c"], false, &[]),
            (1, &["c"], false, &["a"]),
            (0, &["c"], false, &["a", "b"]),
            (0, &["a", "c"], false, &["b"]),
            (0, &["a", "b", "c"], false, &[]),
            (2, &["c"], false, &[]),
            (2, &["c"], true, &["a"]),
            (1, &["a"], true, &["b", "c"]),
            (3, &["a"], true, &[]),
        ];
        for (limit, live, live_counts, want) in cases {
            let is_live = |r: &ControllerRevision| {
                live.contains(&r.metadata.name.as_deref().unwrap_or_default())
            };
            let got: Vec<_> = revisions_to_delete(&revs, &is_live, *limit, *live_counts)
                .into_iter()
                .map(|r| r.metadata.name.clone().unwrap_or_default())
                .collect();
            assert_eq!(&got, want, "limit {limit} live {live:?}");
        }
    }
}
