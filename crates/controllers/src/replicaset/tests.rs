//! ReplicaSet controller logic against a fake API client.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::api::ObjectMeta;
use serde_json::Value;

use super::*;

#[derive(Default)]
struct Fake {
    created: Mutex<Vec<Pod>>,
    deleted: Mutex<Vec<String>>,
    patched: Mutex<Vec<(String, Value)>>,
    statuses: Mutex<Vec<ReplicaSetStatus>>,
    events: Mutex<Vec<(String, String)>>,
    /// Creations fail from this (0-based) call on.
    fail_create_from: Option<usize>,
    rs: Mutex<Option<ReplicaSet>>,
}

fn api_error(code: u16, reason: &str, message: &str) -> kube::Error {
    kube::Error::Api(Box::new(kube::core::Status {
        code,
        reason: reason.into(),
        message: message.into(),
        ..kube::core::Status::failure(message, reason)
    }))
}

#[async_trait]
impl ReplicaSetClient for Fake {
    async fn create_pod(&self, namespace: &str, pod: &Pod) -> Result<Pod, kube::Error> {
        let mut created = self.created.lock().expect("lock");
        let n = created.len();
        if self.fail_create_from.is_some_and(|f| n >= f) {
            created.push(Pod::default());
            return Err(api_error(403, "Forbidden", "exceeded quota"));
        }
        let mut p = pod.clone();
        p.metadata.name = Some(format!(
            "{}{n:05}",
            pod.metadata.generate_name.clone().unwrap_or_default()
        ));
        p.metadata.namespace = Some(namespace.into());
        created.push(p.clone());
        Ok(p)
    }
    async fn delete_pod(&self, _: &str, name: &str) -> Result<(), kube::Error> {
        self.deleted.lock().expect("lock").push(name.into());
        Ok(())
    }
    async fn patch_pod(&self, _: &str, name: &str, patch: &Value) -> Result<(), kube::Error> {
        self.patched
            .lock()
            .expect("lock")
            .push((name.into(), patch.clone()));
        Ok(())
    }
    async fn get_replica_set(&self, _: &str, _: &str) -> Result<Option<ReplicaSet>, kube::Error> {
        Ok(self.rs.lock().expect("lock").clone())
    }
    async fn update_status(&self, rs: &ReplicaSet) -> Result<ReplicaSet, kube::Error> {
        self.statuses
            .lock()
            .expect("lock")
            .push(rs.status.clone().unwrap_or_default());
        Ok(rs.clone())
    }
    async fn event(&self, _: &ReplicaSet, _: &str, reason: &str, message: &str) {
        self.events
            .lock()
            .expect("lock")
            .push((reason.into(), message.into()));
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn replica_set(replicas: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some("web-abc".into()),
            namespace: Some("ns".into()),
            uid: Some("rs-uid".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&[("app", "web")])),
                    ..Default::default()
                }),
                spec: Some(PodSpec::default()),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn pod(name: &str, app: &str, owned: bool, ready: bool) -> Arc<Pod> {
    let rs = replica_set(1);
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some("1".into()),
            labels: Some(labels(&[("app", app)])),
            owner_references: owned
                .then(|| vec![claim::controller_ref(API_VERSION, KIND, &rs.metadata)]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("n1".into()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(Time(Timestamp::UNIX_EPOCH)),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    })
}

fn reasons(fake: &Fake) -> Vec<String> {
    fake.events
        .lock()
        .expect("lock")
        .iter()
        .map(|(r, m)| format!("{r}: {m}"))
        .collect()
}

#[tokio::test]
async fn creates_missing_pods_with_owner_and_events() {
    let fake = Fake::default();
    let exp = Expectations::default();
    let rs = replica_set(3);
    let m = manage_replicas(&fake, &exp, "ns/web-abc", &rs, &[], &[], status::now()).await;
    assert!(m.error.is_none());
    let created = fake.created.lock().expect("lock").clone();
    assert_eq!(created.len(), 3);
    for p in &created {
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-abc-"));
        let r = &p.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (
                r.api_version.as_str(),
                r.kind.as_str(),
                r.name.as_str(),
                r.uid.as_str()
            ),
            ("apps/v1", "ReplicaSet", "web-abc", "rs-uid")
        );
        assert_eq!(
            (r.controller, r.block_owner_deletion),
            (Some(true), Some(true))
        );
        assert_eq!(p.metadata.labels, Some(labels(&[("app", "web")])));
    }
    let mut ev = reasons(&fake);
    ev.sort();
    assert_eq!(
        ev,
        [
            "SuccessfulCreate: Created pod: web-abc-00000",
            "SuccessfulCreate: Created pod: web-abc-00001",
            "SuccessfulCreate: Created pod: web-abc-00002",
        ]
    );
    assert_eq!(
        exp.pending("ns/web-abc"),
        Some((3, 0)),
        "waiting for the watch"
    );
    assert!(!exp.satisfied("ns/web-abc"));
}

#[tokio::test]
async fn failed_creations_stop_the_slow_start_and_lower_expectations() {
    let fake = Fake {
        fail_create_from: Some(1),
        ..Default::default()
    };
    let exp = Expectations::default();
    let rs = replica_set(10);
    let m = manage_replicas(&fake, &exp, "k", &rs, &[], &[], status::now()).await;
    assert_eq!(m.error.as_deref(), Some("exceeded quota"));
    // Batches 1 (ok) and 2 (both fail); the remaining 7 are never attempted.
    assert_eq!(fake.created.lock().expect("lock").len(), 3);
    assert_eq!(
        exp.pending("k"),
        Some((1, 0)),
        "only the success is awaited"
    );
    let ev = reasons(&fake);
    assert_eq!(
        ev.iter()
            .filter(|e| *e == "FailedCreate: Error creating: exceeded quota")
            .count(),
        2
    );
}

#[tokio::test]
async fn creations_are_capped_by_the_burst() {
    let fake = Fake::default();
    let exp = Expectations::default();
    let rs = replica_set(600);
    manage_replicas(&fake, &exp, "k", &rs, &[], &[], status::now()).await;
    assert_eq!(fake.created.lock().expect("lock").len(), BURST_REPLICAS);
}

#[tokio::test]
async fn deletes_surplus_not_ready_first() {
    let fake = Fake::default();
    let exp = Expectations::default();
    let rs = replica_set(1);
    let pods = vec![
        pod("a", "web", true, true),
        pod("b", "web", true, false),
        pod("c", "web", true, true),
    ];
    let m = manage_replicas(&fake, &exp, "k", &rs, &pods, &pods, status::now()).await;
    assert!(m.error.is_none());
    let deleted = fake.deleted.lock().expect("lock").clone();
    assert_eq!(deleted.len(), 2);
    assert_eq!(deleted[0], "b", "the not-ready pod goes first");
    assert_eq!(m.deleted.len(), 2);
    assert_eq!(exp.pending("k"), Some((0, 2)));
    exp.deletion_observed("k", "ns/b");
    exp.deletion_observed("k", &format!("ns/{}", deleted[1]));
    assert!(exp.satisfied("k"));
    assert!(reasons(&fake).contains(&"SuccessfulDelete: Deleted pod: b".to_string()));
}

fn controller(fake: Arc<Fake>) -> ReplicaSetController {
    ReplicaSetController::new(fake, &ControllerOptions::default())
}

#[tokio::test]
async fn sync_adopts_releases_creates_and_writes_status() {
    let fake = Arc::new(Fake::default());
    let rs = replica_set(2);
    *fake.rs.lock().expect("lock") = Some(rs.clone());
    let ctl = controller(Arc::clone(&fake));
    let (rss, pods) = ctl.caches();
    rss.insert(Arc::new(rs));
    pods.insert(pod("orphan", "web", false, true));
    pods.insert(pod("relabeled", "other", true, true));
    pods.insert(pod("stranger", "other", false, true));

    ctl.sync("ns/web-abc").await.expect("sync");
    let patched: Vec<String> = fake
        .patched
        .lock()
        .expect("lock")
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(patched.len(), 2);
    assert!(patched.contains(&"orphan".to_string()));
    assert!(patched.contains(&"relabeled".to_string()));
    // The adopted pod counts, the released one does not: one pod to create.
    assert_eq!(fake.created.lock().expect("lock").len(), 1);
    let st = fake.statuses.lock().expect("lock").clone();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].replicas, 1);
    assert_eq!(st[0].ready_replicas, Some(1));
    assert_eq!(st[0].observed_generation, Some(1));

    // The creation is not observed yet: a second sync must not create again.
    ctl.sync("ns/web-abc").await.expect("sync");
    assert_eq!(fake.created.lock().expect("lock").len(), 1);
    // The watch reports the new pod: expectations are met.
    let mut new_pod = (*pod("web-abc-00000", "web", true, false)).clone();
    new_pod.metadata.resource_version = Some("2".into());
    let new_pod = Arc::new(new_pod);
    pods.insert(Arc::clone(&new_pod));
    ctl.on_pod(Change::Added(new_pod));
    assert!(ctl.expectations().satisfied("ns/web-abc"));
}

#[tokio::test]
async fn sync_of_a_deleted_replica_set_forgets_expectations() {
    let fake = Arc::new(Fake::default());
    let ctl = controller(Arc::clone(&fake));
    ctl.expectations().expect_creations("ns/gone", 3);
    ctl.sync("ns/gone").await.expect("sync");
    assert!(ctl.expectations().pending("ns/gone").is_none());
    assert!(fake.created.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn terminating_pods_are_replaced_at_once() {
    let fake = Arc::new(Fake::default());
    let ctl = controller(Arc::clone(&fake));
    let rs = Arc::new(replica_set(1));
    ctl.caches().0.insert(Arc::clone(&rs));
    let old = pod("a", "web", true, true);
    ctl.expectations()
        .expect_deletions("ns/web-abc", vec!["ns/a".into()]);
    let mut terminating = (*old).clone();
    terminating.metadata.resource_version = Some("9".into());
    terminating.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
    ctl.on_pod(Change::Updated {
        old,
        new: Arc::new(terminating),
    });
    assert!(ctl.expectations().satisfied("ns/web-abc"));
    assert_eq!(ctl.queue.len(), 1);
}
