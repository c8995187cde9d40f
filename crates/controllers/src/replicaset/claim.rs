//! Adoption and release through controller references (upstream
//! `ControllerRefManager`), shared by the ReplicaSet controller (claiming pods) and the
//! Deployment controller (claiming ReplicaSets).
//!
//! An object controlled by the owner stays claimed while the owner's selector matches it,
//! and is released (its controller reference removed) once it does not. An orphan that
//! matches is adopted (a controller reference added) unless it or the owner is being
//! deleted. Objects controlled by someone else are left alone. Both writes are strategic
//! merge patches that carry the object's `uid`, so they fail instead of touching a
//! re-created object of the same name; before the first adoption the owner is read
//! again from the API server to make sure it still exists and is not being deleted.

use std::sync::Arc;

use api::selector::Selector;
use async_trait::async_trait;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use serde_json::{Value, json};

use crate::is_not_found;

/// What to do with one candidate object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Controlled by the owner and matching: keep.
    Owned,
    /// Controlled by someone else, or not ours to take: skip.
    Ignore,
    /// Matching orphan: add our controller reference.
    Adopt,
    /// Ours but no longer matching: remove our controller reference.
    Release,
}

/// The controller reference of an object (the owner reference with `controller: true`).
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// A controller reference to `owner` (upstream `NewControllerRef`).
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Decide about `obj` for `owner` whose selector is `selector` (upstream `ClaimObject`).
pub fn decide(owner: &ObjectMeta, selector: &Selector, obj: &ObjectMeta) -> Claim {
    let matches = || selector.matches(&obj.labels.clone().unwrap_or_default());
    let owner_deleting = owner.deletion_timestamp.is_some();
    if let Some(r) = controller_of(obj) {
        if Some(r.uid.as_str()) != owner.uid.as_deref() {
            return Claim::Ignore;
        }
        if matches() {
            return Claim::Owned;
        }
        return if owner_deleting {
            Claim::Ignore
        } else {
            Claim::Release
        };
    }
    if owner_deleting || !matches() || obj.deletion_timestamp.is_some() {
        return Claim::Ignore;
    }
    let owner_ns = owner.namespace.as_deref().unwrap_or("");
    if !owner_ns.is_empty() && Some(owner_ns) != obj.namespace.as_deref() {
        return Claim::Ignore;
    }
    Claim::Adopt
}

/// The strategic merge patch that adds `controller` to the object with uid `uid`.
pub fn adopt_patch(controller: &OwnerReference, uid: &str) -> Value {
    json!({"metadata": {"ownerReferences": [controller], "uid": uid}})
}

/// The strategic merge patch that removes the reference to `owner_uid` from the object
/// with uid `uid`.
pub fn release_patch(owner_uid: &str, uid: &str) -> Value {
    json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": owner_uid}], "uid": uid}})
}

/// The writes claiming needs.
#[async_trait]
pub trait ClaimClient: Send + Sync {
    /// Strategic-merge `patch` into the candidate `namespace/name`.
    async fn patch_candidate(
        &self,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<(), kube::Error>;
    /// The owner as the API server has it now (`None` when gone).
    async fn current_owner(&self) -> Result<Option<ObjectMeta>, kube::Error>;
}

/// Claiming failed for some objects; the messages say why.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct ClaimError(pub Vec<String>);

async fn can_adopt(client: &dyn ClaimClient, owner: &ObjectMeta) -> Result<(), String> {
    let name = || {
        format!(
            "{}/{}",
            owner.namespace.as_deref().unwrap_or(""),
            owner.name.as_deref().unwrap_or("")
        )
    };
    let fresh = client
        .current_owner()
        .await
        .map_err(|e| format!("can't recheck DeletionTimestamp: {e}"))?;
    let Some(fresh) = fresh else {
        return Err(format!(
            "can't recheck DeletionTimestamp: {} not found",
            name()
        ));
    };
    if fresh.uid != owner.uid {
        return Err(format!(
            "original {} is gone: got uid {}, wanted {}",
            name(),
            fresh.uid.unwrap_or_default(),
            owner.uid.clone().unwrap_or_default()
        ));
    }
    if let Some(t) = fresh.deletion_timestamp {
        return Err(format!("{} has just been deleted at {}", name(), t.0));
    }
    Ok(())
}

/// Claim `objects` for `owner` (see the module documentation): returns the objects the
/// owner now controls, or the errors of the adoptions and releases that failed.
pub async fn claim<K: Resource>(
    client: &dyn ClaimClient,
    owner: &ObjectMeta,
    controller: &OwnerReference,
    selector: &Selector,
    objects: Vec<Arc<K>>,
) -> Result<Vec<Arc<K>>, ClaimError> {
    let mut claimed = Vec::new();
    let mut errors = Vec::new();
    let mut adoptable: Option<Result<(), String>> = None;
    for obj in objects {
        let meta = obj.meta();
        let ns = meta.namespace.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let uid = meta.uid.clone().unwrap_or_default();
        match decide(owner, selector, meta) {
            Claim::Owned => claimed.push(obj),
            Claim::Ignore => {}
            Claim::Release => {
                let owner_uid = owner.uid.as_deref().unwrap_or("");
                match client
                    .patch_candidate(&ns, &name, &release_patch(owner_uid, &uid))
                    .await
                {
                    Ok(()) => {}
                    // Gone, or re-created (uid mismatch) / no longer referencing us.
                    Err(kube::Error::Api(s)) if s.is_not_found() || s.is_invalid() => {}
                    Err(e) => errors.push(format!("releasing {ns}/{name}: {e}")),
                }
            }
            Claim::Adopt => {
                if adoptable.is_none() {
                    adoptable = Some(can_adopt(client, owner).await);
                }
                if let Some(Err(e)) = &adoptable {
                    errors.push(format!("cannot adopt {ns}/{name}: {e}"));
                    continue;
                }
                match client
                    .patch_candidate(&ns, &name, &adopt_patch(controller, &uid))
                    .await
                {
                    Ok(()) => claimed.push(obj),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => errors.push(format!("adopting {ns}/{name}: {e}")),
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(claimed)
    } else {
        Err(ClaimError(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use std::sync::Mutex;

    fn meta(uid: &str, labels: &[(&str, &str)], controller: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(format!("obj-{uid}")),
            namespace: Some("ns".into()),
            uid: Some(uid.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            owner_references: controller.map(|c| {
                vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: "x".into(),
                    uid: c.into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]
            }),
            ..Default::default()
        }
    }

    fn deleting(mut m: ObjectMeta) -> ObjectMeta {
        m.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        m
    }

    #[test]
    fn decisions() {
        let sel = Selector::parse("app=a").expect("selector");
        let owner = meta("owner", &[], None);
        let other_ns = ObjectMeta {
            namespace: Some("other".into()),
            ..meta("p", &[("app", "a")], None)
        };
        let cases = [
            (
                "ours and matching",
                owner.clone(),
                meta("p", &[("app", "a")], Some("owner")),
                Claim::Owned,
            ),
            (
                "ours, not matching",
                owner.clone(),
                meta("p", &[("app", "b")], Some("owner")),
                Claim::Release,
            ),
            (
                "ours, not matching, owner deleting",
                deleting(owner.clone()),
                meta("p", &[], Some("owner")),
                Claim::Ignore,
            ),
            (
                "someone else's",
                owner.clone(),
                meta("p", &[("app", "a")], Some("other")),
                Claim::Ignore,
            ),
            (
                "matching orphan",
                owner.clone(),
                meta("p", &[("app", "a")], None),
                Claim::Adopt,
            ),
            (
                "non-matching orphan",
                owner.clone(),
                meta("p", &[("app", "b")], None),
                Claim::Ignore,
            ),
            (
                "orphan being deleted",
                owner.clone(),
                deleting(meta("p", &[("app", "a")], None)),
                Claim::Ignore,
            ),
            (
                "orphan, owner deleting",
                deleting(owner.clone()),
                meta("p", &[("app", "a")], None),
                Claim::Ignore,
            ),
            (
                "orphan in another namespace",
                owner.clone(),
                other_ns,
                Claim::Ignore,
            ),
        ];
        for (name, owner, obj, want) in cases {
            assert_eq!(decide(&owner, &sel, &obj), want, "{name}");
        }
    }

    #[test]
    fn patches() {
        let owner = meta("owner", &[], None);
        let r = controller_ref("apps/v1", "ReplicaSet", &owner);
        assert_eq!(
            adopt_patch(&r, "p1"),
            json!({"metadata": {"ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "obj-owner",
                "uid": "owner", "controller": true, "blockOwnerDeletion": true}], "uid": "p1"}})
        );
        assert_eq!(
            release_patch("owner", "p1"),
            json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": "owner"}], "uid": "p1"}})
        );
    }

    struct Fake {
        owner: Option<ObjectMeta>,
        patched: Mutex<Vec<(String, Value)>>,
    }

    #[async_trait]
    impl ClaimClient for Fake {
        async fn patch_candidate(
            &self,
            _: &str,
            name: &str,
            patch: &Value,
        ) -> Result<(), kube::Error> {
            self.patched
                .lock()
                .expect("lock")
                .push((name.into(), patch.clone()));
            Ok(())
        }
        async fn current_owner(&self) -> Result<Option<ObjectMeta>, kube::Error> {
            Ok(self.owner.clone())
        }
    }

    fn pod(m: ObjectMeta) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: m,
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn claim_adopts_releases_and_rechecks_owner() {
        let sel = Selector::parse("app=a").expect("selector");
        let owner = meta("owner", &[], None);
        let r = controller_ref("apps/v1", "ReplicaSet", &owner);
        let pods = vec![
            pod(meta("kept", &[("app", "a")], Some("owner"))),
            pod(meta("orphan", &[("app", "a")], None)),
            pod(meta("relabeled", &[("app", "z")], Some("owner"))),
            pod(meta("foreign", &[("app", "a")], Some("other"))),
        ];
        let fake = Fake {
            owner: Some(owner.clone()),
            patched: Mutex::new(Vec::new()),
        };
        let got = claim(&fake, &owner, &r, &sel, pods.clone())
            .await
            .expect("claim");
        let names: Vec<_> = got
            .iter()
            .map(|p| p.metadata.uid.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["kept", "orphan"]);
        let patched = fake.patched.lock().expect("lock").clone();
        assert_eq!(patched.len(), 2);
        assert_eq!(patched[0].0, "obj-orphan");
        assert_eq!(
            patched[1],
            (
                "obj-relabeled".to_string(),
                release_patch("owner", "relabeled")
            )
        );

        // The owner was re-created under the same name: no adoption.
        let gone = Fake {
            owner: Some(meta("new-owner", &[], None)),
            patched: Mutex::new(Vec::new()),
        };
        let err = claim(&gone, &owner, &r, &sel, pods)
            .await
            .expect_err("cannot adopt");
        assert!(err.to_string().contains("is gone"), "{err}");
        assert_eq!(
            gone.patched.lock().expect("lock").len(),
            1,
            "only the release"
        );
    }
}
