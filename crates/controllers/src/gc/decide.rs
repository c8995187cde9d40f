//! Pure decisions of the garbage collector and the patches that carry them out.
//!
//! Decisions follow upstream's `attemptToDeleteItem`: an object whose owner references
//! all point to absent owners (or owners deleting in the foreground) is deleted; an
//! object with at least one live owner only loses its references to the others. Patches
//! are JSON merge patches that carry the object's `uid` and `resourceVersion`, so the API
//! server rejects them (409/422) when the object changed since it was read.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::PropagationPolicy;
use serde_json::{Value, json};

use super::graph::{FOREGROUND_FINALIZER, ORPHAN_FINALIZER};

/// What a live lookup found for one owner reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// The owner exists and is not waiting for its dependents.
    Solid,
    /// The owner does not exist (not found, or found with another uid).
    Dangling,
    /// The owner is being deleted in the foreground.
    WaitingForDependents,
}

/// What to do with an object that has owner references and is not being deleted.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Some owner is alive and every reference is to a live owner.
    Keep,
    /// Some owner is alive: remove the references to these other owners' uids.
    RemoveReferences(Vec<String>),
    /// No live owner, some owner waits for its dependents and this object has
    /// dependents of its own: delete it in the foreground too. With `unblock`, first
    /// clear `blockOwnerDeletion` on its references (a dependent of it is itself
    /// deleting in the foreground, which could otherwise be a deadlock cycle).
    DeleteForeground { unblock: bool },
    /// No live owner: delete the object with this policy.
    Delete(PropagationPolicy),
}

/// Decide for an object from its classified owner references.
pub fn decide(
    refs: &[(OwnerReference, OwnerState)],
    finalizers: &[String],
    has_dependents: bool,
    dependent_deleting_dependents: bool,
) -> Decision {
    let of = |s: OwnerState| {
        refs.iter()
            .filter(move |(_, st)| *st == s)
            .map(|(r, _)| r.uid.clone())
    };
    let solid = of(OwnerState::Solid).count();
    let waiting: Vec<String> = of(OwnerState::WaitingForDependents).collect();
    if solid > 0 {
        let mut drop: Vec<String> = of(OwnerState::Dangling).collect();
        drop.extend(waiting);
        return if drop.is_empty() {
            Decision::Keep
        } else {
            Decision::RemoveReferences(drop)
        };
    }
    if !waiting.is_empty() && has_dependents {
        return Decision::DeleteForeground {
            unblock: dependent_deleting_dependents,
        };
    }
    let has = |f: &str| finalizers.iter().any(|x| x == f);
    Decision::Delete(if has(ORPHAN_FINALIZER) {
        PropagationPolicy::Orphan
    } else if has(FOREGROUND_FINALIZER) {
        PropagationPolicy::Foreground
    } else {
        PropagationPolicy::Background
    })
}

/// What the collector does for an object that has a `deletionTimestamp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletingAction {
    /// `orphan` finalizer: release the dependents, then drop the finalizer.
    OrphanDependents,
    /// `foregroundDeletion` finalizer: delete the dependents, drop the finalizer when no
    /// blocking dependent remains.
    DeleteDependents,
    /// Other finalizers or graceful deletion: wait for the final deletion.
    Wait,
}

/// The action for an object being deleted (`None` when it is not being deleted).
pub fn deleting_action(meta: &ObjectMeta) -> Option<DeletingAction> {
    meta.deletion_timestamp.as_ref()?;
    let has = |f: &str| meta.finalizers.iter().flatten().any(|x| x == f);
    Some(if has(ORPHAN_FINALIZER) {
        DeletingAction::OrphanDependents
    } else if has(FOREGROUND_FINALIZER) {
        DeletingAction::DeleteDependents
    } else {
        DeletingAction::Wait
    })
}

fn preconditions(meta: &ObjectMeta) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    if let Some(uid) = &meta.uid {
        m.insert("uid".into(), json!(uid));
    }
    if let Some(rv) = &meta.resource_version {
        m.insert("resourceVersion".into(), json!(rv));
    }
    m
}

/// Merge patch removing the owner references with these uids (`None`: nothing to remove).
pub fn remove_owner_refs_patch(meta: &ObjectMeta, uids: &[String]) -> Option<Value> {
    let refs = meta.owner_references.as_deref().unwrap_or_default();
    let kept: Vec<&OwnerReference> = refs.iter().filter(|r| !uids.contains(&r.uid)).collect();
    if kept.len() == refs.len() {
        return None;
    }
    let mut m = preconditions(meta);
    m.insert(
        "ownerReferences".into(),
        if kept.is_empty() {
            Value::Null
        } else {
            json!(kept)
        },
    );
    Some(json!({ "metadata": m }))
}

/// Merge patch setting `blockOwnerDeletion: false` on every blocking reference.
pub fn unblock_owner_refs_patch(meta: &ObjectMeta) -> Option<Value> {
    let refs = meta.owner_references.as_deref().unwrap_or_default();
    if !refs.iter().any(|r| r.block_owner_deletion == Some(true)) {
        return None;
    }
    let unblocked: Vec<OwnerReference> = refs
        .iter()
        .cloned()
        .map(|mut r| {
            if r.block_owner_deletion == Some(true) {
                r.block_owner_deletion = Some(false);
            }
            r
        })
        .collect();
    let mut m = preconditions(meta);
    m.insert("ownerReferences".into(), json!(unblocked));
    Some(json!({ "metadata": m }))
}

/// Merge patch removing `finalizer` (`None` when the object does not have it).
pub fn remove_finalizer_patch(meta: &ObjectMeta, finalizer: &str) -> Option<Value> {
    let fins = meta.finalizers.as_deref().unwrap_or_default();
    if !fins.iter().any(|f| f == finalizer) {
        return None;
    }
    let kept: Vec<&String> = fins.iter().filter(|f| *f != finalizer).collect();
    let mut m = preconditions(meta);
    m.insert(
        "finalizers".into(),
        if kept.is_empty() {
            Value::Null
        } else {
            json!(kept)
        },
    );
    Some(json!({ "metadata": m }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use OwnerState::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn oref(uid: &str, block: Option<bool>) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: format!("n-{uid}"),
            uid: uid.into(),
            block_owner_deletion: block,
            controller: None,
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// (name, refs, finalizers, has_dependents, dependent_deleting_dependents, expected)
    type DecideCase = (
        &'static str,
        Vec<(&'static str, OwnerState)>,
        Vec<&'static str>,
        bool,
        bool,
        Decision,
    );

    #[test]
    fn decide_table() {
        // (name, refs, finalizers, has_dependents, dependent_deleting_dependents, expected)
        let cases: Vec<DecideCase> = vec![
            (
                "single live owner",
                vec![("a", Solid)],
                vec![],
                false,
                false,
                Decision::Keep,
            ),
            (
                "all owners live",
                vec![("a", Solid), ("b", Solid)],
                vec![],
                true,
                false,
                Decision::Keep,
            ),
            (
                "one owner gone, one live",
                vec![("a", Dangling), ("b", Solid)],
                vec![],
                false,
                false,
                Decision::RemoveReferences(s(&["a"])),
            ),
            (
                "live owner plus foreground owner",
                vec![("a", Solid), ("b", WaitingForDependents), ("c", Dangling)],
                vec![],
                false,
                false,
                Decision::RemoveReferences(s(&["c", "b"])),
            ),
            (
                "owner gone",
                vec![("a", Dangling)],
                vec![],
                false,
                false,
                Decision::Delete(PropagationPolicy::Background),
            ),
            (
                "owner gone, has dependents",
                vec![("a", Dangling)],
                vec![],
                true,
                false,
                Decision::Delete(PropagationPolicy::Background),
            ),
            (
                "owner gone, orphan finalizer kept",
                vec![("a", Dangling)],
                vec!["orphan"],
                false,
                false,
                Decision::Delete(PropagationPolicy::Orphan),
            ),
            (
                "owner gone, foreground finalizer kept",
                vec![("a", Dangling)],
                vec!["foregroundDeletion"],
                false,
                false,
                Decision::Delete(PropagationPolicy::Foreground),
            ),
            (
                "owner waiting, leaf",
                vec![("a", WaitingForDependents)],
                vec![],
                false,
                false,
                Decision::Delete(PropagationPolicy::Background),
            ),
            (
                "owner waiting, has dependents",
                vec![("a", WaitingForDependents)],
                vec![],
                true,
                false,
                Decision::DeleteForeground { unblock: false },
            ),
            (
                "owner waiting, dependent also foreground (cycle guard)",
                vec![("a", WaitingForDependents), ("b", Dangling)],
                vec![],
                true,
                true,
                Decision::DeleteForeground { unblock: true },
            ),
        ];
        for (name, refs, fins, deps, dep_fg, want) in cases {
            let refs: Vec<_> = refs
                .into_iter()
                .map(|(u, st)| (oref(u, None), st))
                .collect();
            assert_eq!(decide(&refs, &s(&fins), deps, dep_fg), want, "{name}");
        }
    }

    #[test]
    fn deleting_action_table() {
        let cases: Vec<(bool, Vec<&str>, Option<DeletingAction>)> = vec![
            (false, vec!["orphan"], None),
            (true, vec![], Some(DeletingAction::Wait)),
            (true, vec!["example.com/x"], Some(DeletingAction::Wait)),
            (true, vec!["orphan"], Some(DeletingAction::OrphanDependents)),
            (
                true,
                vec!["foregroundDeletion"],
                Some(DeletingAction::DeleteDependents),
            ),
            (
                true,
                vec!["foregroundDeletion", "orphan"],
                Some(DeletingAction::OrphanDependents),
            ),
        ];
        for (deleting, fins, want) in cases {
            let m = ObjectMeta {
                deletion_timestamp: deleting
                    .then_some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
                finalizers: Some(s(&fins)),
                ..Default::default()
            };
            assert_eq!(deleting_action(&m), want, "{deleting} {fins:?}");
        }
    }

    fn meta(refs: Vec<OwnerReference>, fins: &[&str]) -> ObjectMeta {
        ObjectMeta {
            uid: Some("me".into()),
            resource_version: Some("42".into()),
            owner_references: Some(refs),
            finalizers: Some(s(fins)),
            ..Default::default()
        }
    }

    #[test]
    fn remove_owner_refs_patch_table() {
        let m = meta(vec![oref("a", Some(true)), oref("b", None)], &[]);
        let cases: Vec<(Vec<&str>, Option<Value>)> = vec![
            (vec!["zzz"], None),
            (
                vec!["a"],
                Some(
                    json!({"metadata": {"uid": "me", "resourceVersion": "42", "ownerReferences": [
                        {"apiVersion": "v1", "kind": "ConfigMap", "name": "n-b", "uid": "b"}
                    ]}}),
                ),
            ),
            (
                vec!["a", "b"],
                Some(
                    json!({"metadata": {"uid": "me", "resourceVersion": "42", "ownerReferences": null}}),
                ),
            ),
        ];
        for (uids, want) in cases {
            assert_eq!(remove_owner_refs_patch(&m, &s(&uids)), want, "{uids:?}");
        }
    }

    #[test]
    fn unblock_patch_table() {
        assert_eq!(
            unblock_owner_refs_patch(&meta(vec![oref("a", None), oref("b", Some(false))], &[])),
            None
        );
        assert_eq!(
            unblock_owner_refs_patch(&meta(vec![oref("a", Some(true)), oref("b", None)], &[])),
            Some(
                json!({"metadata": {"uid": "me", "resourceVersion": "42", "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "n-a", "uid": "a", "blockOwnerDeletion": false},
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "n-b", "uid": "b"}
                ]}})
            )
        );
    }

    #[test]
    fn remove_finalizer_patch_table() {
        let cases: Vec<(Vec<&str>, &str, Option<Value>)> = vec![
            (vec![], "orphan", None),
            (vec!["example.com/x"], "orphan", None),
            (
                vec!["orphan"],
                "orphan",
                Some(
                    json!({"metadata": {"uid": "me", "resourceVersion": "42", "finalizers": null}}),
                ),
            ),
            (
                vec!["example.com/x", "foregroundDeletion"],
                "foregroundDeletion",
                Some(
                    json!({"metadata": {"uid": "me", "resourceVersion": "42", "finalizers": ["example.com/x"]}}),
                ),
            ),
        ];
        for (fins, f, want) in cases {
            assert_eq!(
                remove_finalizer_patch(&meta(vec![], &fins), f),
                want,
                "{fins:?} - {f}"
            );
        }
    }
}
