//! Pod workers: one serialized task per pod UID driving the pod through the
//! [`PodRuntime`]: sandbox, init containers in order, containers, restarts with
//! back-off, image pulls, graceful termination. Each sync publishes the computed
//! status to the shared [`StatusStore`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use controllers::events::{NORMAL, Recorder, WARNING};
use k8s_openapi::api::core::v1::{Container, ObjectReference, Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Preconditions};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::probe::{self, ProbeState};
use crate::runtime::{ContainerConfig, ContainerInfo, ContainerState, PodRuntime, RuntimeError};
use crate::status::{self, Backoff, BackoffConfig, Waiting, WorkerView, instances};

/// Latest computed status per pod UID, with the pod it was computed for.
pub type StatusStore = Arc<Mutex<HashMap<String, (Pod, PodStatus)>>>;

/// Shared by all workers.
pub struct WorkerContext {
    pub runtime: Arc<dyn PodRuntime>,
    /// The node's containers as last listed (shared by all workers).
    pub containers: Arc<crate::pleg::ContainerCache>,
    /// Wakes a pod's worker when the relist sees its containers change.
    pub wakers: Arc<crate::pleg::Wakers>,
    pub client: Option<kube::Client>,
    pub recorder: Option<Recorder>,
    pub backoff: BackoffConfig,
    pub resync: Duration,
    pub host_ip: String,
    pub node_name: String,
    pub statuses: StatusStore,
    /// Service-account tokens of `serviceAccountToken` projections.
    pub tokens: Arc<crate::tokens::TokenManager>,
    /// How often the files of a running pod's configMap/secret/downwardAPI/projected
    /// volumes are re-read and rewritten (`syncFrequency`).
    pub volume_resync: Duration,
    /// Signalled when a worker publishes a status different from its previous one, so
    /// the status manager writes it right away instead of at its next periodic flush.
    pub status_changed: tokio::sync::Notify,
}

#[derive(Clone, Copy)]
struct BackoffEntry {
    backoff: Backoff,
    last: Instant,
}

struct Worker {
    ctx: Arc<WorkerContext>,
    start_time: Option<Timestamp>,
    waiting: HashMap<String, Waiting>,
    backoffs: HashMap<String, BackoffEntry>,
    previous: Option<PodStatus>,
    deleted_in_api: bool,
    /// (kind, container name) → probe state and when that instance was first seen
    /// running.
    probes: HashMap<(&'static str, String), (ProbeState, Instant)>,
    /// Readiness verdicts by container name.
    ready: HashMap<String, bool>,
    /// When the pod's API-sourced volumes are next rewritten.
    next_volume_sync: Option<Instant>,
    /// When this worker last changed one of its containers: the container lists it
    /// reads must be at least this recent.
    changed_at: Option<Instant>,
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn obj_ref(pod: &Pod, container: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        field_path: container.map(|c| format!("spec.containers{{{c}}}")),
        ..Default::default()
    }
}

impl Worker {
    async fn event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        type_: &str,
        reason: &str,
        msg: String,
    ) {
        if let Some(r) = &self.ctx.recorder {
            r.record(&obj_ref(pod, container), type_, reason, &msg)
                .await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Pod, PodStatus)>> {
        self.ctx.statuses.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the back-off for `key` still holds; otherwise advance it.
    fn in_backoff(&mut self, key: &str, ran: Duration) -> Option<Duration> {
        let now = Instant::now();
        if let Some(e) = self.backoffs.get(key)
            && now < e.last + e.backoff.delay
        {
            return Some(e.backoff.delay);
        }
        let e = self
            .backoffs
            .entry(key.to_string())
            .or_insert(BackoffEntry {
                backoff: Backoff::default(),
                last: now,
            });
        e.backoff.next(&self.ctx.backoff, ran);
        e.last = now;
        None
    }

    /// Resolve the container's environment: `envFrom` (config maps, secrets), then
    /// `env` (values, downward API fieldRef/resourceFieldRef, config map and secret
    /// keys). A missing non-optional source is an error (CreateContainerConfigError).
    async fn env(
        &self,
        pod: &Pod,
        c: &Container,
        pod_ip: &str,
    ) -> Result<Vec<(String, String)>, String> {
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let mut out: Vec<(String, String)> = Vec::new();
        for from in c.env_from.iter().flatten() {
            let prefix = from.prefix.clone().unwrap_or_default();
            if let Some(r) = &from.config_map_ref {
                match self.config_map(&ns, &r.name).await? {
                    Some(data) => {
                        out.extend(data.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)))
                    }
                    None if r.optional == Some(true) => {}
                    None => return Err(format!("configmap \"{}\" not found", r.name)),
                }
            }
            if let Some(r) = &from.secret_ref {
                match self.secret(&ns, &r.name).await? {
                    Some(data) => {
                        out.extend(data.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)))
                    }
                    None if r.optional == Some(true) => {}
                    None => return Err(format!("secret \"{}\" not found", r.name)),
                }
            }
        }
        for e in c.env.iter().flatten() {
            let from = e.value_from.as_ref();
            let value = if let Some(v) = &e.value {
                v.clone()
            } else if let Some(f) = from.and_then(|v| v.field_ref.as_ref()) {
                self.field(pod, &f.field_path, pod_ip)
            } else if let Some(r) = from.and_then(|v| v.resource_field_ref.as_ref()) {
                let target = match &r.container_name {
                    Some(n) if !n.is_empty() => pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.containers.iter().find(|x| &x.name == n))
                        .unwrap_or(c),
                    _ => c,
                };
                resource_value(
                    target,
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                )?
            } else if let Some(k) = from.and_then(|v| v.config_map_key_ref.as_ref()) {
                match self
                    .config_map(&ns, &k.name)
                    .await?
                    .and_then(|d| d.get(&k.key).cloned())
                {
                    Some(v) => v,
                    None if k.optional == Some(true) => continue,
                    None => {
                        return Err(format!(
                            "couldn't find key {} in ConfigMap {ns}/{}",
                            k.key, k.name
                        ));
                    }
                }
            } else if let Some(k) = from.and_then(|v| v.secret_key_ref.as_ref()) {
                match self
                    .secret(&ns, &k.name)
                    .await?
                    .and_then(|d| d.get(&k.key).cloned())
                {
                    Some(v) => v,
                    None if k.optional == Some(true) => continue,
                    None => {
                        return Err(format!(
                            "couldn't find key {} in Secret {ns}/{}",
                            k.key, k.name
                        ));
                    }
                }
            } else {
                String::new()
            };
            out.retain(|(n, _)| n != &e.name);
            out.push((e.name.clone(), value));
        }
        Ok(out)
    }

    async fn config_map(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>, String> {
        let Some(client) = &self.ctx.client else {
            return Ok(None);
        };
        let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), ns);
        match api.get_opt(name).await {
            Ok(cm) => Ok(cm.map(|cm| cm.data.unwrap_or_default())),
            Err(e) => Err(format!("reading configmap {ns}/{name}: {e}")),
        }
    }

    async fn secret(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>, String> {
        let Some(client) = &self.ctx.client else {
            return Ok(None);
        };
        let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
        match api.get_opt(name).await {
            Ok(s) => Ok(s.map(|s| {
                s.data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect()
            })),
            Err(e) => Err(format!("reading secret {ns}/{name}: {e}")),
        }
    }

    /// A config map's `data` and `binaryData` as bytes (volumes).
    async fn config_map_bytes(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, Vec<u8>>>, String> {
        let Some(client) = &self.ctx.client else {
            return Ok(None);
        };
        let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), ns);
        match api.get_opt(name).await {
            Ok(cm) => Ok(cm.map(|cm| {
                let mut out: std::collections::BTreeMap<String, Vec<u8>> = cm
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect();
                out.extend(
                    cm.binary_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0)),
                );
                out
            })),
            Err(e) => Err(format!("reading configmap {ns}/{name}: {e}")),
        }
    }

    /// A secret's `data` as bytes (volumes).
    async fn secret_bytes(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, Vec<u8>>>, String> {
        let Some(client) = &self.ctx.client else {
            return Ok(None);
        };
        let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
        match api.get_opt(name).await {
            Ok(s) => Ok(s.map(|s| {
                s.data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect()
            })),
            Err(e) => Err(format!("reading secret {ns}/{name}: {e}")),
        }
    }

    fn field(&self, pod: &Pod, path: &str, pod_ip: &str) -> String {
        let m = &pod.metadata;
        match path {
            "metadata.name" => m.name.clone().unwrap_or_default(),
            "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
            "metadata.uid" => m.uid.clone().unwrap_or_default(),
            "spec.nodeName" => self.ctx.node_name.clone(),
            "spec.serviceAccountName" => pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_default(),
            "status.podIP" | "status.podIPs" => pod_ip.to_string(),
            "status.hostIP" | "status.hostIPs" => self.ctx.host_ip.clone(),
            other => {
                let lookup =
                    |prefix: &str, map: &Option<std::collections::BTreeMap<String, String>>| {
                        other
                            .strip_prefix(prefix)
                            .and_then(|k| k.strip_suffix("']"))
                            .map(|k| {
                                map.as_ref()
                                    .and_then(|l| l.get(k))
                                    .cloned()
                                    .unwrap_or_default()
                            })
                    };
                lookup("metadata.labels['", &m.labels)
                    .or_else(|| lookup("metadata.annotations['", &m.annotations))
                    .unwrap_or_default()
            }
        }
    }

    /// The pod's containers from the node-wide list, recent enough to show this
    /// worker's own changes.
    async fn containers(&self, pod_uid: &str) -> Vec<ContainerInfo> {
        match self.ctx.containers.pod(pod_uid, self.changed_at).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(pod_uid, "listing containers: {e}");
                Vec::new()
            }
        }
    }

    /// Pull (per policy), create and start one container instance.
    async fn start(
        &mut self,
        pod: &Pod,
        sandbox: &crate::runtime::SandboxInfo,
        c: &Container,
        attempt: u32,
        init: bool,
    ) {
        self.start_instance(pod, sandbox, c, attempt, init).await;
        // Whether or not it worked, something may have been created.
        self.changed_at = Some(Instant::now());
    }

    async fn start_instance(
        &mut self,
        pod: &Pod,
        sandbox: &crate::runtime::SandboxInfo,
        c: &Container,
        attempt: u32,
        init: bool,
    ) {
        let rt = self.ctx.runtime.clone();
        let name = c.name.as_str();
        let image = c.image.clone().unwrap_or_default();
        let policy = c
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| "IfNotPresent".into());
        let present = rt.image_status(&image).await.ok().flatten();
        let image_info = match (policy.as_str(), present) {
            ("Never", None) => {
                let msg =
                    format!("Container image \"{image}\" is not present with pull policy of Never");
                self.event(pod, Some(name), WARNING, "ErrImageNeverPull", msg.clone())
                    .await;
                self.waiting.insert(
                    name.into(),
                    Waiting {
                        reason: "ErrImageNeverPull".into(),
                        message: Some(msg),
                    },
                );
                return;
            }
            (p, Some(info)) if p != "Always" => {
                self.event(
                    pod,
                    Some(name),
                    NORMAL,
                    "Pulled",
                    format!("Container image \"{image}\" already present on machine"),
                )
                .await;
                info
            }
            _ => {
                let key = format!("pull/{name}");
                if self.backoffs.contains_key(&key)
                    && self.in_backoff(&key, Duration::ZERO).is_some()
                {
                    let msg = format!("Back-off pulling image \"{image}\"");
                    self.event(pod, Some(name), NORMAL, "BackOff", msg.clone())
                        .await;
                    self.waiting.insert(
                        name.into(),
                        Waiting {
                            reason: "ImagePullBackOff".into(),
                            message: Some(msg),
                        },
                    );
                    return;
                }
                self.event(
                    pod,
                    Some(name),
                    NORMAL,
                    "Pulling",
                    format!("Pulling image \"{image}\""),
                )
                .await;
                let started = std::time::Instant::now();
                match rt.pull_image(&image, &[]).await {
                    Ok(info) => {
                        self.backoffs.remove(&key);
                        let took = started.elapsed();
                        self.event(pod, Some(name), NORMAL, "Pulled", format!(
                            "Successfully pulled image \"{image}\" in {took:.3?} ({took:.3?} including waiting). Image size: {} bytes.",
                            info.size)).await;
                        info
                    }
                    Err(e) => {
                        let detail = match &e {
                            RuntimeError::Pull { message, .. } => message.clone(),
                            other => other.to_string(),
                        };
                        self.event(
                            pod,
                            Some(name),
                            WARNING,
                            "Failed",
                            format!("Failed to pull image \"{image}\": {detail}"),
                        )
                        .await;
                        self.event(
                            pod,
                            Some(name),
                            WARNING,
                            "Failed",
                            "Error: ErrImagePull".into(),
                        )
                        .await;
                        if !self.backoffs.contains_key(&key) {
                            self.in_backoff(&key, Duration::ZERO);
                        }
                        self.waiting.insert(
                            name.into(),
                            Waiting {
                                reason: "ErrImagePull".into(),
                                message: Some(detail),
                            },
                        );
                        return;
                    }
                }
            }
        };
        let pod_ip = sandbox
            .pod_ips
            .first()
            .map(|i| i.to_string())
            .unwrap_or_default();
        let env = match self.env(pod, c, &pod_ip).await {
            Ok(env) => env,
            Err(msg) => {
                self.event(pod, Some(name), WARNING, "Failed", format!("Error: {msg}"))
                    .await;
                self.waiting.insert(
                    name.into(),
                    Waiting {
                        reason: "CreateContainerConfigError".into(),
                        message: Some(msg),
                    },
                );
                return;
            }
        };
        let volume_files = match crate::volumes::container_volume_files(
            &VolumeReader {
                worker: self,
                pod_ip: &pod_ip,
            },
            pod,
            c,
        )
        .await
        {
            Ok(files) => files,
            Err(msg) => {
                self.event(
                    pod,
                    None,
                    WARNING,
                    "FailedMount",
                    format!("MountVolume.SetUp failed: {msg}"),
                )
                .await;
                self.waiting.insert(
                    name.into(),
                    Waiting {
                        reason: "ContainerCreating".into(),
                        message: None,
                    },
                );
                return;
            }
        };
        let config = ContainerConfig {
            spec: c.clone(),
            image: image_info,
            env,
            attempt,
            init,
            volume_files,
        };
        let id = match rt.create_container(pod, sandbox, &config).await {
            Ok(id) => id,
            Err(e) => {
                self.event(pod, Some(name), WARNING, "Failed", format!("Error: {e}"))
                    .await;
                self.waiting.insert(
                    name.into(),
                    Waiting {
                        reason: "CreateContainerError".into(),
                        message: Some(e.to_string()),
                    },
                );
                return;
            }
        };
        self.event(
            pod,
            Some(name),
            NORMAL,
            "Created",
            format!("Created container: {name}"),
        )
        .await;
        if let Err(e) = rt.start_container(&id).await {
            self.event(pod, Some(name), WARNING, "Failed", format!("Error: {e}"))
                .await;
            self.waiting.insert(
                name.into(),
                Waiting {
                    reason: "RunContainerError".into(),
                    message: Some(e.to_string()),
                },
            );
            return;
        }
        self.event(
            pod,
            Some(name),
            NORMAL,
            "Started",
            format!("Started container {name}"),
        )
        .await;
        self.waiting.remove(name);
    }

    /// Restart a failed container unless it is in back-off.
    async fn restart(
        &mut self,
        pod: &Pod,
        sandbox: &crate::runtime::SandboxInfo,
        c: &Container,
        latest: &ContainerInfo,
        init: bool,
    ) {
        let ran = match (latest.started_at, latest.finished_at) {
            (Some(s), Some(f)) => f.duration_since(s).try_into().unwrap_or(Duration::ZERO),
            _ => Duration::ZERO,
        };
        if let Some(delay) = self.in_backoff(&c.name, ran) {
            let msg = format!(
                "back-off {} restarting failed container={} pod={}",
                status::go_duration(delay),
                c.name,
                status::pod_desc(pod)
            );
            if self.waiting.get(&c.name).map(|w| w.reason.as_str()) != Some("CrashLoopBackOff") {
                self.event(
                    pod,
                    Some(&c.name),
                    WARNING,
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {} in pod {}",
                        c.name,
                        status::pod_desc(pod)
                    ),
                )
                .await;
            }
            self.waiting.insert(
                c.name.clone(),
                Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: Some(msg),
                },
            );
            return;
        }
        self.start(pod, sandbox, c, latest.attempt + 1, init).await;
    }

    async fn sync(&mut self, pod: &Pod) {
        let rt = self.ctx.runtime.clone();
        let pod_uid = uid(pod);
        let Some(spec) = pod.spec.clone() else { return };
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let terminal = self
            .previous
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        let sandbox = match rt.ensure_sandbox(pod).await {
            Ok(s) => s,
            Err(e) => {
                self.event(
                    pod,
                    None,
                    WARNING,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {e}"),
                )
                .await;
                return;
            }
        };
        self.start_time.get_or_insert_with(Timestamp::now);
        let containers = self.containers(&pod_uid).await;
        if !terminal {
            let mut inits_done = true;
            for c in spec.init_containers.iter().flatten() {
                let (latest, _) = instances(&containers, &c.name);
                match latest {
                    None => {
                        self.start(pod, &sandbox, c, 0, true).await;
                        inits_done = false;
                        break;
                    }
                    Some(l) if l.state != ContainerState::Exited => {
                        inits_done = false;
                        break;
                    }
                    Some(l) if l.exit_code == Some(0) => continue,
                    Some(l) => {
                        if policy != "Never" {
                            let l = l.clone();
                            self.restart(pod, &sandbox, c, &l, true).await;
                        }
                        inits_done = false;
                        break;
                    }
                }
            }
            if inits_done {
                for c in &spec.containers {
                    let (latest, _) = instances(&containers, &c.name);
                    match latest {
                        None => self.start(pod, &sandbox, c, 0, false).await,
                        Some(l) if l.state == ContainerState::Exited => {
                            let code = l.exit_code.unwrap_or(0);
                            let again = policy == "Always" || (policy == "OnFailure" && code != 0);
                            if again {
                                let l = l.clone();
                                self.restart(pod, &sandbox, c, &l, false).await;
                            } else {
                                self.waiting.remove(&c.name);
                            }
                        }
                        Some(_) => {
                            self.waiting.remove(&c.name);
                        }
                    }
                }
            }
        }
        let containers = self.containers(&pod_uid).await;
        if !terminal {
            self.refresh_volumes(pod, &sandbox, &containers).await;
            let pod_ip = sandbox
                .pod_ips
                .first()
                .map(|i| i.to_string())
                .unwrap_or_else(|| self.ctx.host_ip.clone());
            self.probe(pod, &spec.containers, &containers, &pod_ip)
                .await;
        }
        let containers = self.containers(&pod_uid).await;
        self.gc(&containers).await;
        self.publish(pod, &containers, &sandbox, true);
    }

    /// Run due readiness and liveness probes of running containers; a liveness
    /// failure stops the container (the restart policy then restarts it).
    async fn probe(
        &mut self,
        pod: &Pod,
        specs: &[Container],
        containers: &[ContainerInfo],
        pod_ip: &str,
    ) {
        let now = Instant::now();
        let rt = self.ctx.runtime.clone();
        for c in specs {
            let (latest, _) = instances(containers, &c.name);
            let Some(l) = latest.filter(|l| l.state == ContainerState::Running) else {
                self.ready.remove(&c.name);
                continue;
            };
            for (kind, p) in [
                ("Readiness", &c.readiness_probe),
                ("Liveness", &c.liveness_probe),
            ] {
                let Some(p) = p else { continue };
                let key = (kind, c.name.clone());
                let (mut st, started) = match self.probes.get(&key) {
                    Some((st, t)) if st.container_id == l.id => (st.clone(), *t),
                    _ => (ProbeState::new(&l.id, kind == "Liveness"), now),
                };
                if st.due(p, started, now) {
                    let result = probe::run(p, c, &l.id, pod_ip, rt.as_ref()).await;
                    let ok = st.record(p, result.is_ok(), now);
                    if let Err(e) = &result {
                        self.event(
                            pod,
                            Some(&c.name),
                            WARNING,
                            "Unhealthy",
                            format!("{kind} probe failed: {e}"),
                        )
                        .await;
                    }
                    if kind == "Liveness" && !ok {
                        self.event(
                            pod,
                            Some(&c.name),
                            NORMAL,
                            "Killing",
                            format!(
                                "Container {} failed liveness probe, will be restarted",
                                c.name
                            ),
                        )
                        .await;
                        let grace = pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.termination_grace_period_seconds)
                            .unwrap_or(30)
                            .max(0) as u64;
                        if let Err(e) = rt.stop_container(&l.id, Duration::from_secs(grace)).await {
                            tracing::warn!("stopping unhealthy container: {e}");
                        }
                        self.changed_at = Some(Instant::now());
                    }
                }
                if kind == "Readiness" {
                    self.ready.insert(c.name.clone(), st.ok);
                }
                self.probes.insert(key, (st, started));
            }
        }
    }

    /// Keep only the latest and previous instance of each container.
    async fn gc(&mut self, containers: &[ContainerInfo]) {
        let mut by_name: HashMap<&str, Vec<&ContainerInfo>> = HashMap::new();
        for c in containers {
            by_name.entry(&c.name).or_default().push(c);
        }
        for (_, mut v) in by_name {
            v.sort_by_key(|c| (c.attempt, c.created_at));
            let n = v.len();
            for old in v.into_iter().take(n.saturating_sub(2)) {
                if old.state == ContainerState::Exited {
                    let _ = self.ctx.runtime.remove_container(&old.id).await;
                    self.changed_at = Some(Instant::now());
                }
            }
        }
    }

    fn publish(
        &mut self,
        pod: &Pod,
        containers: &[ContainerInfo],
        sandbox: &crate::runtime::SandboxInfo,
        sandbox_ready: bool,
    ) {
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let pod_ips = if host_network || sandbox.pod_ips.is_empty() {
            vec![self.ctx.host_ip.clone()]
        } else {
            sandbox.pod_ips.iter().map(|i| i.to_string()).collect()
        };
        let view = WorkerView {
            pod_ips,
            host_ip: self.ctx.host_ip.clone(),
            sandbox_ready,
            start_time: self.start_time,
            waiting: self.waiting.clone(),
            ready: self.ready.clone(),
        };
        let st = status::compute(
            pod,
            containers,
            &view,
            self.previous.as_ref(),
            Timestamp::now(),
        );
        let changed = self.previous.as_ref() != Some(&st);
        self.previous = Some(st.clone());
        self.lock().insert(uid(pod), (pod.clone(), st));
        if changed {
            self.ctx.status_changed.notify_one();
        }
    }

    /// Stop every container of the pod with the pod's grace period.
    async fn kill(&mut self, pod: &Pod) {
        let rt = self.ctx.runtime.clone();
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30)
            .max(0) as u64;
        let containers = rt
            .list_containers(Some(&uid(pod)))
            .await
            .unwrap_or_default();
        let mut stops = Vec::new();
        for c in containers
            .iter()
            .filter(|c| c.state == ContainerState::Running || c.state == ContainerState::Created)
        {
            self.event(
                pod,
                Some(&c.name),
                NORMAL,
                "Killing",
                format!("Stopping container {}", c.name),
            )
            .await;
            let rt = rt.clone();
            let id = c.id.clone();
            stops.push(async move { rt.stop_container(&id, Duration::from_secs(grace)).await });
        }
        for r in futures::future::join_all(stops).await {
            if let Err(e) = r {
                tracing::warn!(pod = %status::pod_desc(pod), "stopping container: {e}");
            }
        }
    }

    /// Remove every trace of the pod from the node.
    async fn remove(&mut self, pod: &Pod) {
        self.kill(pod).await;
        let rt = self.ctx.runtime.clone();
        let pod_uid = uid(pod);
        for c in rt.list_containers(Some(&pod_uid)).await.unwrap_or_default() {
            let _ = rt.remove_container(&c.id).await;
        }
        if let Err(e) = rt.remove_sandbox(&pod_uid).await {
            tracing::warn!(pod = %status::pod_desc(pod), "removing sandbox: {e}");
        }
        self.lock().remove(&pod_uid);
        self.ctx.tokens.forget_pod(&pod_uid);
    }

    /// Re-read the pod's API-sourced volumes and have the runtime swap in what
    /// changed, every `volume_resync` while a container runs (upstream refreshes them
    /// on each periodic pod sync).
    async fn refresh_volumes(
        &mut self,
        pod: &Pod,
        sandbox: &crate::runtime::SandboxInfo,
        containers: &[ContainerInfo],
    ) {
        let now = Instant::now();
        if self.next_volume_sync.is_some_and(|t| now < t)
            || !containers
                .iter()
                .any(|c| c.state == ContainerState::Running)
        {
            return;
        }
        self.next_volume_sync = Some(now + self.ctx.volume_resync);
        let has_api_volumes = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .is_some_and(|v| v.iter().any(crate::volumes::is_api_volume));
        if !has_api_volumes {
            return;
        }
        let pod_ip = sandbox
            .pod_ips
            .first()
            .map(|i| i.to_string())
            .unwrap_or_default();
        let reader = VolumeReader {
            worker: self,
            pod_ip: &pod_ip,
        };
        let files = match crate::volumes::pod_volume_files(&reader, pod).await {
            Ok(f) => f,
            Err(msg) => {
                tracing::warn!(pod = %status::pod_desc(pod), "refreshing volumes: {msg}");
                self.event(
                    pod,
                    None,
                    WARNING,
                    "FailedMount",
                    format!("MountVolume.SetUp failed: {msg}"),
                )
                .await;
                return;
            }
        };
        if let Err(e) = self.ctx.runtime.update_volume_files(pod, &files).await {
            tracing::warn!(pod = %status::pod_desc(pod), "rewriting volumes: {e}");
        }
    }

    /// Deletion requested in the API: stop containers, then delete the pod object
    /// for good (grace 0, uid precondition), as upstream's status manager does.
    async fn terminate_api(&mut self, pod: &Pod) {
        self.kill(pod).await;
        let rt = self.ctx.runtime.clone();
        let containers = rt
            .list_containers(Some(&uid(pod)))
            .await
            .unwrap_or_default();
        let sandbox = crate::runtime::SandboxInfo {
            id: String::new(),
            pod_ips: Vec::new(),
        };
        self.publish(pod, &containers, &sandbox, false);
        if self.deleted_in_api {
            return;
        }
        let Some(client) = &self.ctx.client else {
            return;
        };
        let api: Api<Pod> = Api::namespaced(
            client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api
            .delete(pod.metadata.name.as_deref().unwrap_or_default(), &dp)
            .await
        {
            Ok(_) => self.deleted_in_api = true,
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                self.deleted_in_api = true
            }
            Err(e) => tracing::warn!(pod = %status::pod_desc(pod), "deleting pod: {e}"),
        }
    }
}

/// Drive one pod until its desired value becomes `None` (removed from every
/// source) or `shutdown` (containers are then left running, as upstream).
pub async fn run_worker(
    ctx: Arc<WorkerContext>,
    mut rx: watch::Receiver<Option<Pod>>,
    shutdown: CancellationToken,
) {
    let mut w = Worker {
        ctx: ctx.clone(),
        start_time: None,
        waiting: HashMap::new(),
        backoffs: HashMap::new(),
        previous: None,
        deleted_in_api: false,
        probes: HashMap::new(),
        ready: HashMap::new(),
        next_volume_sync: None,
        changed_at: None,
    };
    let pod_uid = rx.borrow().as_ref().map(uid).unwrap_or_default();
    let wake = ctx.wakers.register(&pod_uid);
    let _unregister = Unregister(&ctx.wakers, &pod_uid);
    let mut last: Option<Pod> = None;
    loop {
        let desired = rx.borrow_and_update().clone();
        match desired {
            None => {
                if let Some(p) = last.take() {
                    w.remove(&p).await;
                }
                return;
            }
            Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
                w.terminate_api(&pod).await;
                last = Some(pod);
            }
            Some(pod) => {
                w.sync(&pod).await;
                last = Some(pod);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = rx.changed() => {
                if changed.is_err() {
                    if let Some(p) = last.take() {
                        w.remove(&p).await;
                    }
                    return;
                }
            }
            // The relist saw this pod's containers change.
            _ = wake.notified() => {}
            _ = tokio::time::sleep(ctx.resync) => {}
        }
    }
}

/// Removes a worker's wake-up registration when the worker ends.
struct Unregister<'a>(&'a crate::pleg::Wakers, &'a str);

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.0.unregister(self.1);
    }
}

/// A `resourceFieldRef` value: the container's limit (or request) of `resource`
/// divided by `divisor`, rounded up, as upstream. An unset limit reports 0 here
/// (upstream reports node allocatable, which the worker does not know).
pub fn resource_value(
    c: &Container,
    resource: &str,
    divisor: Option<&str>,
) -> Result<String, String> {
    use api::quantity::Quantity;
    let (kind, res) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resource {resource:?}"))?;
    let r = c.resources.as_ref();
    let list = match kind {
        "limits" => r.and_then(|r| r.limits.as_ref()),
        "requests" => r.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("unsupported resource {resource:?}")),
    };
    let q = match list.and_then(|l| l.get(res)) {
        Some(q) => Quantity::parse(&q.0).map_err(|e| format!("{resource}: {e}"))?,
        None => Quantity::zero(),
    };
    let d = Quantity::parse(divisor.filter(|d| !d.is_empty()).unwrap_or("1"))
        .map_err(|e| format!("divisor: {e}"))?;
    let (num, den) = (q.milli_value(), d.milli_value());
    if den <= 0 {
        return Err("divisor must be positive".into());
    }
    Ok(((num + den - 1) / den).to_string())
}

/// The worker's view of the API for volume contents.
struct VolumeReader<'a> {
    worker: &'a Worker,
    pod_ip: &'a str,
}

#[async_trait::async_trait]
impl crate::volumes::VolumeSource for VolumeReader<'_> {
    async fn config_map(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, Vec<u8>>>, String> {
        self.worker.config_map_bytes(ns, name).await
    }
    async fn secret(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, Vec<u8>>>, String> {
        self.worker.secret_bytes(ns, name).await
    }
    async fn service_account_token(
        &self,
        pod: &Pod,
        audience: &str,
        expiration_seconds: i64,
    ) -> Result<Vec<u8>, String> {
        let Some(client) = &self.worker.ctx.client else {
            return Err(
                "serviceAccountToken volumes need an API server (standalone kubelet)".into(),
            );
        };
        let sa = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        let key = crate::tokens::TokenKey {
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            service_account: sa,
            audience: audience.to_string(),
            expiration_seconds,
            pod_name: pod.metadata.name.clone().unwrap_or_default(),
            pod_uid: uid(pod),
        };
        self.worker
            .ctx
            .tokens
            .token(client, &key)
            .await
            .map(String::into_bytes)
    }
    fn field(&self, pod: &Pod, path: &str) -> String {
        match path {
            // Whole maps, as upstream formats them: `key="value"` lines, sorted.
            "metadata.labels" | "metadata.annotations" => {
                let m = if path == "metadata.labels" {
                    &pod.metadata.labels
                } else {
                    &pod.metadata.annotations
                };
                m.iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            _ => self.worker.field(pod, path, self.pod_ip),
        }
    }
    fn resource(
        &self,
        c: &Container,
        r: &k8s_openapi::api::core::v1::ResourceFieldSelector,
    ) -> Result<String, String> {
        resource_value(c, &r.resource, r.divisor.as_ref().map(|d| d.0.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_field_ref_values() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}
        }))
        .expect("container");
        assert_eq!(resource_value(&c, "limits.cpu", None).as_deref(), Ok("1"));
        assert_eq!(
            resource_value(&c, "limits.cpu", Some("1m")).as_deref(),
            Ok("500")
        );
        assert_eq!(
            resource_value(&c, "limits.memory", Some("1Mi")).as_deref(),
            Ok("64")
        );
        assert_eq!(
            resource_value(&c, "limits.memory", None).as_deref(),
            Ok("67108864")
        );
        assert_eq!(resource_value(&c, "requests.cpu", None).as_deref(), Ok("0"));
        assert!(resource_value(&c, "bogus", None).is_err());
    }
}
