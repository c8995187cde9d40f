//! Deployment rollouts stepped against a fake cluster: the fake stores ReplicaSets with
//! resource versions and generations, and a simulated ReplicaSet controller and kubelet
//! make `status` follow `spec` one tick later (new pods become available the tick after
//! they appear).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{
    DeploymentSpec, DeploymentStatus, DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;
use serde_json::Value;

use super::util::*;
use super::*;

#[derive(Default)]
struct State {
    deployment: Deployment,
    rss: BTreeMap<String, ReplicaSet>,
    events: Vec<String>,
    clock: i64,
    rv: u64,
}

#[derive(Default)]
struct Fake {
    state: Mutex<State>,
}

fn conflict() -> kube::Error {
    kube::Error::Api(Box::new(
        kube::core::Status::failure("conflict", "Conflict").with_code(409),
    ))
}

impl Fake {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("lock")
    }

    /// The simulated ReplicaSet controller and kubelet: pods follow `spec.replicas`, and
    /// pods that existed at the previous tick are available now.
    fn tick(&self) {
        let mut st = self.lock();
        for rs in st.rss.values_mut() {
            let spec = rs_replicas(rs);
            let generation = rs.metadata.generation;
            let s = rs.status.get_or_insert_with(ReplicaSetStatus::default);
            let available = spec.min(s.replicas);
            s.replicas = spec;
            s.ready_replicas = Some(available);
            s.available_replicas = Some(available);
            s.observed_generation = generation;
        }
        st.rv += 1;
    }

    fn events(&self) -> Vec<String> {
        self.lock().events.clone()
    }

    fn rs_summary(&self) -> Vec<(String, i32, String)> {
        self.lock()
            .rss
            .values()
            .map(|r| {
                (
                    r.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(REVISION_ANNOTATION).cloned())
                        .unwrap_or_default(),
                    rs_replicas(r),
                    r.spec
                        .as_ref()
                        .and_then(|s| s.template.as_ref())
                        .and_then(|t| t.spec.as_ref())
                        .and_then(|s| s.containers[0].image.clone())
                        .unwrap_or_default(),
                )
            })
            .collect()
    }
}

#[async_trait]
impl DeploymentClient for Fake {
    async fn create_replica_set(&self, rs: &ReplicaSet) -> Result<ReplicaSet, kube::Error> {
        let mut st = self.lock();
        let name = rs.name_any();
        if st.rss.contains_key(&name) {
            return Err(kube::Error::Api(Box::new(
                kube::core::Status::failure("exists", "AlreadyExists").with_code(409),
            )));
        }
        st.clock += 1;
        st.rv += 1;
        let mut rs = rs.clone();
        rs.metadata.uid = Some(format!("uid-{name}"));
        rs.metadata.creation_timestamp = Some(Time(Timestamp::from_second(st.clock).expect("ts")));
        rs.metadata.generation = Some(1);
        rs.metadata.resource_version = Some(st.rv.to_string());
        st.rss.insert(name, rs.clone());
        Ok(rs)
    }

    async fn update_replica_set(&self, rs: &ReplicaSet) -> Result<ReplicaSet, kube::Error> {
        let mut st = self.lock();
        st.rv += 1;
        let rv = st.rv;
        let stored = st.rss.get_mut(&rs.name_any()).ok_or_else(conflict)?;
        if stored.metadata.resource_version != rs.metadata.resource_version {
            return Err(conflict());
        }
        let mut new = rs.clone();
        new.status = stored.status.clone();
        if new.spec != stored.spec {
            new.metadata.generation = Some(stored.metadata.generation.unwrap_or(1) + 1);
        }
        new.metadata.resource_version = Some(rv.to_string());
        *stored = new.clone();
        Ok(new)
    }

    async fn delete_replica_set(&self, _: &str, name: &str) -> Result<(), kube::Error> {
        self.lock().rss.remove(name);
        Ok(())
    }

    async fn patch_replica_set(&self, _: &str, _: &str, _: &Value) -> Result<(), kube::Error> {
        Ok(())
    }

    async fn get_replica_set(
        &self,
        _: &str,
        name: &str,
    ) -> Result<Option<ReplicaSet>, kube::Error> {
        Ok(self.lock().rss.get(name).cloned())
    }

    async fn get_deployment(&self, _: &str, _: &str) -> Result<Option<Deployment>, kube::Error> {
        Ok(Some(self.lock().deployment.clone()))
    }

    async fn update_deployment_status(&self, d: &Deployment) -> Result<Deployment, kube::Error> {
        let mut st = self.lock();
        st.rv += 1;
        let mut new = st.deployment.clone();
        new.status = d.status.clone();
        new.metadata.annotations = d.metadata.annotations.clone();
        new.metadata.resource_version = Some(st.rv.to_string());
        st.deployment = new.clone();
        Ok(new)
    }

    async fn event(&self, _: &Deployment, _: &str, reason: &str, message: &str) {
        self.lock().events.push(format!("{reason}: {message}"));
    }
}

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn deployment(replicas: i32, strategy: &str) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            uid: Some("d-uid".into()),
            generation: Some(1),
            resource_version: Some("1".into()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some(strategy.into()),
                rolling_update: (strategy == ROLLING_UPDATE).then(|| RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".into())),
                    max_unavailable: Some(IntOrString::String("25%".into())),
                }),
            }),
            template: template("nginx:1"),
            revision_history_limit: Some(10),
            progress_deadline_seconds: Some(600),
            ..Default::default()
        }),
        status: None,
    }
}

struct Harness {
    fake: Arc<Fake>,
    ctl: DeploymentController,
}

impl Harness {
    fn new(d: Deployment) -> Self {
        let fake = Arc::new(Fake::default());
        fake.lock().deployment = d;
        let ctl = DeploymentController::new(fake.clone(), &ControllerOptions::default());
        Harness { fake, ctl }
    }

    /// Copy the fake's objects into the controller's caches, then sync.
    async fn sync(&self) {
        let (d, rss) = {
            let st = self.fake.lock();
            (st.deployment.clone(), st.rss.clone())
        };
        let (dc, rc, _) = self.ctl.caches();
        dc.insert(Arc::new(d));
        for old in rc.list("ns") {
            if !rss.contains_key(&old.name_any()) {
                rc.remove("ns", &old.name_any());
            }
        }
        for rs in rss.into_values() {
            rc.insert(Arc::new(rs));
        }
        // Conflicts are retried on the next sync, as the work queue would.
        let _ = self.ctl.sync("ns/web").await;
    }

    fn edit(&self, f: impl FnOnce(&mut Deployment)) {
        let mut st = self.fake.lock();
        f(&mut st.deployment);
        let g = st.deployment.metadata.generation.unwrap_or(1);
        st.deployment.metadata.generation = Some(g + 1);
    }

    fn status(&self) -> DeploymentStatus {
        self.fake
            .lock()
            .deployment
            .status
            .clone()
            .unwrap_or_default()
    }

    fn complete(&self) -> bool {
        let d = self.fake.lock().deployment.clone();
        deployment_complete(&d, &self.status())
    }

    /// Sync and tick until the rollout completes, checking the surge and availability
    /// bounds after every tick.
    async fn roll_out(&self, max_pods: i32, min_available: i32) -> usize {
        for step in 0..60 {
            self.sync().await;
            self.fake.tick();
            let (pods, available) = {
                let st = self.fake.lock();
                let pods: i32 = st
                    .rss
                    .values()
                    .map(|r| r.status.as_ref().map_or(0, |s| s.replicas))
                    .sum();
                (pods, available_replicas(st.rss.values()))
            };
            assert!(pods <= max_pods, "step {step}: {pods} pods > {max_pods}");
            assert!(
                available >= min_available,
                "step {step}: {available} available < {min_available}"
            );
            if self.complete()
                && self.status().updated_replicas == Some(replicas(&self.fake.lock().deployment))
            {
                self.sync().await;
                return step;
            }
        }
        panic!("rollout did not complete: {:?}", self.fake.rs_summary());
    }
}

fn condition(s: &DeploymentStatus, t: &str) -> (String, String) {
    get_condition(s, t).map_or_else(Default::default, |c| {
        (c.status.clone(), c.reason.clone().unwrap_or_default())
    })
}

#[tokio::test]
async fn rolling_update_respects_surge_and_availability_and_records_revisions() {
    let h = Harness::new(deployment(4, ROLLING_UPDATE));
    // First rollout from nothing: everything at once (no availability to keep yet).
    h.roll_out(5, 0).await;
    let first = h.fake.rs_summary();
    assert_eq!(first, [("1".to_string(), 4, "nginx:1".to_string())]);
    let hash = compute_hash(&template("nginx:1"), None);
    let first_name = format!("web-{hash}");
    assert!(
        h.fake.lock().rss.contains_key(&first_name),
        "{:?}",
        h.fake.lock().rss.keys()
    );
    assert_eq!(
        h.fake.events(),
        [format!(
            "ScalingReplicaSet: Scaled up replica set {first_name} from 0 to 4"
        )]
    );
    let st = h.status();
    assert_eq!(
        condition(&st, AVAILABLE),
        ("True".into(), MIN_AVAILABLE_REASON.into())
    );
    assert_eq!(
        condition(&st, PROGRESSING),
        ("True".into(), NEW_RS_AVAILABLE_REASON.into())
    );
    assert_eq!(
        h.fake
            .lock()
            .deployment
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION_ANNOTATION).cloned()),
        Some("1".into())
    );
    {
        let st = h.fake.lock();
        let rs = &st.rss[&first_name];
        let labels = rs.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(UNIQUE_LABEL_KEY), Some(&hash));
        let sel = rs
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.clone())
            .unwrap_or_default();
        assert_eq!(sel.get(UNIQUE_LABEL_KEY), Some(&hash));
        let a = rs.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            a.get(DESIRED_REPLICAS_ANNOTATION).map(String::as_str),
            Some("4")
        );
        assert_eq!(
            a.get(MAX_REPLICAS_ANNOTATION).map(String::as_str),
            Some("5")
        );
        let owner = controller_of(&rs.metadata).expect("owner");
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Deployment", "d-uid")
        );
    }

    // `kubectl set image`: 25% of 4 is one pod over and one pod under.
    h.edit(|d| d.spec.as_mut().expect("spec").template = template("nginx:2"));
    h.roll_out(5, 3).await;
    let mut summary = h.fake.rs_summary();
    summary.sort();
    assert_eq!(
        summary,
        [
            ("1".to_string(), 0, "nginx:1".to_string()),
            ("2".to_string(), 4, "nginx:2".to_string())
        ]
    );
    let events = h.fake.events();
    let second_name = format!("web-{}", compute_hash(&template("nginx:2"), None));
    assert!(
        events.contains(&format!(
            "ScalingReplicaSet: Scaled up replica set {second_name} from 0 to 1"
        )),
        "{events:#?}"
    );
    assert!(
        events.contains(&format!(
            "ScalingReplicaSet: Scaled down replica set {first_name} from 4 to 3"
        )),
        "{events:#?}"
    );

    // `kubectl rollout undo`: the template goes back; the old ReplicaSet is reused and
    // becomes revision 3, remembering revision 1.
    h.edit(|d| d.spec.as_mut().expect("spec").template = template("nginx:1"));
    h.roll_out(5, 3).await;
    let st = h.fake.lock();
    let rs = &st.rss[&first_name];
    let a = rs.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(a.get(REVISION_ANNOTATION).map(String::as_str), Some("3"));
    assert_eq!(
        a.get(REVISION_HISTORY_ANNOTATION).map(String::as_str),
        Some("1")
    );
    assert_eq!(rs_replicas(rs), 4);
    assert_eq!(st.rss.len(), 2, "no third ReplicaSet");
    assert_eq!(
        st.deployment
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION_ANNOTATION).cloned()),
        Some("3".into())
    );
}

#[tokio::test]
async fn paused_deployment_scales_but_does_not_roll() {
    let h = Harness::new(deployment(2, ROLLING_UPDATE));
    h.roll_out(3, 0).await;
    h.edit(|d| {
        let s = d.spec.as_mut().expect("spec");
        s.paused = Some(true);
        s.template = template("nginx:2");
    });
    for _ in 0..3 {
        h.sync().await;
        h.fake.tick();
    }
    assert_eq!(
        h.fake.rs_summary(),
        [("1".to_string(), 2, "nginx:1".to_string())]
    );
    assert_eq!(
        condition(&h.status(), PROGRESSING),
        ("Unknown".into(), PAUSED_REASON.into())
    );

    h.edit(|d| d.spec.as_mut().expect("spec").replicas = Some(5));
    h.sync().await;
    assert_eq!(
        h.fake.rs_summary(),
        [("1".to_string(), 5, "nginx:1".to_string())]
    );

    h.edit(|d| d.spec.as_mut().expect("spec").paused = Some(false));
    h.sync().await;
    assert_eq!(
        h.fake.rs_summary().len(),
        2,
        "resumed: the new ReplicaSet appears"
    );
    assert_eq!(
        h.fake
            .lock()
            .deployment
            .status
            .as_ref()
            .and_then(|s| get_condition(s, PROGRESSING))
            .and_then(|c| c.reason.clone()),
        Some(NEW_RS_REASON.into())
    );
}

#[tokio::test]
async fn recreate_scales_old_to_zero_before_creating_new() {
    let h = Harness::new(deployment(3, RECREATE));
    h.roll_out(3, 0).await;
    h.edit(|d| d.spec.as_mut().expect("spec").template = template("nginx:2"));
    h.sync().await;
    assert_eq!(
        h.fake.rs_summary(),
        [("1".to_string(), 0, "nginx:1".to_string())]
    );
    // The old pods are still reported: nothing new yet.
    h.sync().await;
    assert_eq!(h.fake.rs_summary().len(), 1);
    h.fake.tick();
    h.sync().await;
    let mut summary = h.fake.rs_summary();
    summary.sort();
    assert_eq!(
        summary,
        [
            ("1".to_string(), 0, "nginx:1".to_string()),
            ("2".to_string(), 3, "nginx:2".to_string())
        ]
    );
}

#[tokio::test]
async fn scaling_is_proportional_during_a_rollout() {
    let h = Harness::new(deployment(10, ROLLING_UPDATE));
    h.roll_out(13, 0).await;
    h.edit(|d| d.spec.as_mut().expect("spec").template = template("nginx:2"));
    h.sync().await;
    h.fake.tick();
    // Mid-rollout (old 10, new 3): scale to 20 (max 25).
    h.edit(|d| d.spec.as_mut().expect("spec").replicas = Some(20));
    h.sync().await;
    let total: i32 = h.fake.rs_summary().iter().map(|(_, r, _)| r).sum();
    assert_eq!(total, 25, "{:?}", h.fake.rs_summary());
    let mut sizes: Vec<i32> = h.fake.rs_summary().iter().map(|(_, r, _)| *r).collect();
    sizes.sort();
    assert_eq!(
        sizes,
        [6, 19],
        "both grow in proportion: {:?}",
        h.fake.rs_summary()
    );
}

#[tokio::test]
async fn old_replica_sets_beyond_the_history_limit_are_deleted() {
    let mut d = deployment(1, ROLLING_UPDATE);
    d.spec.as_mut().expect("spec").revision_history_limit = Some(1);
    let h = Harness::new(d);
    for image in ["nginx:1", "nginx:2", "nginx:3", "nginx:4"] {
        h.edit(|d| d.spec.as_mut().expect("spec").template = template(image));
        h.roll_out(2, 0).await;
    }
    h.sync().await;
    let mut summary = h.fake.rs_summary();
    summary.sort();
    assert_eq!(
        summary,
        [
            ("3".to_string(), 0, "nginx:3".to_string()),
            ("4".to_string(), 1, "nginx:4".to_string())
        ]
    );
}

#[tokio::test]
async fn no_progress_past_the_deadline_times_out() {
    let fake = Fake::default();
    let mut d = deployment(2, ROLLING_UPDATE);
    let t0 = Timestamp::from_second(1_000).expect("ts");
    d.status = Some(DeploymentStatus {
        observed_generation: Some(1),
        conditions: Some(vec![new_condition(
            PROGRESSING,
            "True",
            RS_UPDATED_REASON,
            "x",
            t0,
        )]),
        ..Default::default()
    });
    fake.lock().deployment = d.clone();
    let stuck = ReplicaSet {
        metadata: ObjectMeta {
            name: Some("web-x".into()),
            ..Default::default()
        },
        spec: Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
            replicas: Some(2),
            ..Default::default()
        }),
        status: Some(ReplicaSetStatus::default()),
    };
    // Before the deadline: the status is written once; with nothing new the next time,
    // a check is scheduled for when the deadline passes.
    let mut early = Syncer::new(&fake, d.clone(), Timestamp::from_second(1_100).expect("ts"));
    early
        .sync_rollout_status(&[&stuck], Some(&stuck))
        .await
        .expect("status");
    assert!(early.requeue_after.is_none());
    early
        .sync_rollout_status(&[&stuck], Some(&stuck))
        .await
        .expect("status");
    let after = early.requeue_after.expect("requeue");
    assert_eq!(after.as_secs(), 501);
    // After the deadline: ProgressDeadlineExceeded.
    let mut late = Syncer::new(&fake, d, Timestamp::from_second(1_601).expect("ts"));
    late.sync_rollout_status(&[&stuck], Some(&stuck))
        .await
        .expect("status");
    let st = late.d.status.clone().unwrap_or_default();
    assert_eq!(
        condition(&st, PROGRESSING),
        ("False".into(), TIMED_OUT_REASON.into())
    );
    let c = get_condition(&st, PROGRESSING).expect("cond");
    assert_eq!(
        c.message.as_deref(),
        Some("ReplicaSet \"web-x\" has timed out progressing.")
    );
}
