//! The kubelet: the agent on every Flotilla node. It registers the Node and keeps
//! its Lease and status fresh, runs the pods bound to the node (from the API server)
//! and the static pods of its manifest directory (mirrored into the API), restarts
//! what crashes with back-off, and reports pod status. The files of API-sourced volumes
//! (with service-account tokens, [`tokens`]) are rewritten while pods run.
//!
//! It drives the node only through the [`runtime::PodRuntime`] trait, and must never
//! depend on the runtime, image or network crates themselves: an adapter supplied by
//! the binary connects them.

pub mod config;
pub mod httpstream;
pub mod logs;
pub mod mirror;
pub mod node;
pub mod pleg;
pub mod portforward;
pub mod probe;
pub mod remotecommand;
pub mod runtime;
pub mod server;
pub mod sources;
pub mod spdy;
pub mod stats;
pub mod status;
pub mod tokens;
pub mod volumes;
pub mod worker;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodStatus};
use kube::api::{Api, Patch, PatchParams};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use config::{KubeletConfiguration, KubeletFlags, MergedConfig};
pub use runtime::{FakeRuntime, PodRuntime};
pub use status::BackoffConfig;

/// Errors starting the kubelet.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("kubelet config: {0}")]
    Config(#[from] config::ConfigError),
    #[error("reading kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
}

/// Everything [`run`] needs.
#[derive(Clone, Debug)]
pub struct KubeletRunConfig {
    /// The merged file + flags configuration.
    pub config: MergedConfig,
    /// Crash and image-pull back-off (upstream defaults unless a test shortens it).
    pub backoff: BackoffConfig,
    /// How often each pod worker re-syncs its pod with the runtime.
    pub pod_resync: Duration,
    /// How often statuses are flushed to the API and mirror pods reconciled.
    pub api_sync: Duration,
    /// How often a running pod's API-sourced volumes are rewritten (`None`: the
    /// configuration's `syncFrequency`; tests shorten it).
    pub volume_resync: Option<Duration>,
    /// Whether and where the kubelet's servers listen.
    pub listen: Listen,
}

/// Where the kubelet's HTTPS server (`address:port`) and plain healthz server
/// (`healthzBindAddress:healthzPort`, `healthzPort: 0` disables it) listen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listen {
    /// As configured (the default).
    Config,
    /// No servers (the Node then reports kubelet port 0).
    Disabled,
    /// The configured addresses with ports picked by the system (tests); the Node
    /// reports the port actually bound.
    Ephemeral,
}

impl KubeletRunConfig {
    /// Upstream timings for `config`.
    pub fn new(config: MergedConfig) -> Self {
        KubeletRunConfig {
            config,
            backoff: BackoffConfig::default(),
            pod_resync: Duration::from_secs(1),
            api_sync: Duration::from_millis(500),
            volume_resync: None,
            listen: Listen::Config,
        }
    }

    /// From command-line flags (loading `--config`).
    pub fn from_flags(flags: &KubeletFlags) -> Result<Self, KubeletError> {
        Ok(Self::new(config::merge(flags)?))
    }
}

/// Build a client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &std::path::Path) -> Result<kube::Client, KubeletError> {
    let err = |message: String| KubeletError::Kubeconfig {
        path: path.into(),
        message,
    };
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    kube::Client::try_from(cfg).map_err(|e| err(e.to_string()))
}

/// Run the kubelet until `shutdown`: with `--kubeconfig`, against the API server
/// (registering the node); without, standalone (static pods only).
pub async fn run(
    cfg: KubeletRunConfig,
    runtime: Arc<dyn PodRuntime>,
    shutdown: CancellationToken,
) -> Result<(), KubeletError> {
    let client = match &cfg.config.kubeconfig {
        Some(p) => Some(client_from_kubeconfig(p).await?),
        None => None,
    };
    run_with_client(cfg, client, runtime, shutdown).await;
    Ok(())
}

/// [`run`] with an already built client (`None`: standalone).
pub async fn run_with_client(
    cfg: KubeletRunConfig,
    client: Option<kube::Client>,
    runtime: Arc<dyn PodRuntime>,
    shutdown: CancellationToken,
) {
    let mc = &cfg.config;
    let k = &mc.kubelet;
    let node_name = mc.node_name.clone();
    let node_ip: IpAddr = mc.node_ip.unwrap_or_else(node::detect_node_ip);
    let handle = node::NodeHandle::default();
    let (tx, mut rx) = mpsc::channel::<sources::SourceUpdate>(16);
    let mut tasks = tokio::task::JoinSet::new();
    let statuses: worker::StatusStore = Arc::new(Mutex::new(HashMap::new()));
    let port = match start_servers(&cfg, &runtime, &statuses, node_ip, &shutdown).await {
        Ok(p) => p,
        Err(e) => {
            // Upstream exits; we keep running the pods but say loudly why logs and
            // exec will not work.
            tracing::error!("kubelet server not started: {e}");
            0
        }
    };
    if !k.static_pod_path.is_empty() {
        tasks.spawn(sources::run_file_source(
            PathBuf::from(&k.static_pod_path),
            node_name.clone(),
            k.file_check_frequency.0,
            tx.clone(),
            shutdown.clone(),
        ));
    }
    let recorder = client
        .as_ref()
        .map(|c| controllers::events::Recorder::new(c.clone(), "kubelet").with_host(&node_name));
    if let Some(client) = &client {
        if k.register_node.unwrap_or(true) {
            let settings = node::NodeSettings {
                name: node_name.clone(),
                ip: node_ip,
                labels: mc.node_labels.clone(),
                taints: k.register_with_taints.clone(),
                root_dir: mc.root_dir.clone(),
                max_pods: k.max_pods,
                port,
                pod_cidr: k.pod_cidr.clone(),
                eviction_hard: k.eviction_hard.clone().unwrap_or_default(),
                runtime_version: runtime.version(),
                lease_duration_seconds: k.node_lease_duration_seconds,
                status_update: k.node_status_update_frequency.0,
                status_report: k.node_status_report_frequency.0,
            };
            tasks.spawn(node::run_node(
                client.clone(),
                settings,
                handle.clone(),
                shutdown.clone(),
            ));
        }
        tasks.spawn(sources::run_api_source(
            client.clone(),
            node_name.clone(),
            tx.clone(),
            shutdown.clone(),
        ));
    }
    drop(tx);
    let containers = Arc::new(pleg::ContainerCache::new(runtime.clone()));
    let wakers = Arc::new(pleg::Wakers::default());
    tasks.spawn(pleg::run(
        containers.clone(),
        wakers.clone(),
        pleg::RELIST_PERIOD.min(cfg.pod_resync),
        shutdown.clone(),
    ));
    let ctx = Arc::new(worker::WorkerContext {
        runtime,
        containers,
        wakers,
        client: client.clone(),
        recorder: recorder.clone(),
        backoff: cfg.backoff,
        resync: cfg.pod_resync,
        host_ip: node_ip.to_string(),
        node_name: node_name.clone(),
        statuses: statuses.clone(),
        tokens: Arc::new(tokens::TokenManager::new()),
        volume_resync: cfg.volume_resync.unwrap_or(k.sync_frequency.0),
        status_changed: tokio::sync::Notify::new(),
    });
    let mut m = Manager {
        ctx,
        shutdown: shutdown.clone(),
        file_pods: Vec::new(),
        api_pods: HashMap::new(),
        api_synced: client.is_none(),
        file_synced: k.static_pod_path.is_empty(),
        cleaning: Arc::new(Mutex::new(std::collections::HashSet::new())),
        next_cleanup: tokio::time::Instant::now(),
        workers: HashMap::new(),
        terminating_static: HashMap::new(),
        static_names: HashMap::new(),
        sent: HashMap::new(),
    };
    let mut tick = tokio::time::interval(cfg.api_sync);
    let wctx = m.ctx.clone();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            // A worker published a new status: write it now (upstream's status manager
            // syncs a pod as soon as its status changes); the tick below retries failures.
            _ = wctx.status_changed.notified() => {
                if let Some(client) = &client {
                    m.flush(client).await;
                }
            }
            update = rx.recv() => {
                let Some(update) = update else { break };
                if let (Some(r), false) = (&recorder, update.skipped.is_empty()) {
                    let node_ref = ObjectReference {
                        kind: Some("Node".into()),
                        name: Some(node_name.clone()),
                        api_version: Some("v1".into()),
                        uid: handle.uid(),
                        namespace: Some("default".into()),
                        ..Default::default()
                    };
                    for s in &update.skipped {
                        r.record(&node_ref, controllers::events::WARNING, "StaticPodSkipped", s).await;
                    }
                }
                m.apply(update);
            }
            _ = tick.tick() => {
                if !m.terminating_static.is_empty() {
                    m.reconcile_workers();
                }
                m.cleanup_orphans().await;
                if let Some(client) = &client {
                    if let (true, Some(uid)) = (m.api_synced, handle.uid()) {
                        mirror::reconcile(client, &node_name, &uid, &m.file_pods, &m.api_pods).await;
                    }
                    m.flush(client).await;
                }
            }
        }
    }
    tasks.abort_all();
    for (_, (tx, join)) in m.workers.drain() {
        drop(tx);
        join.abort();
    }
}

/// Start the HTTPS and healthz servers per `cfg.listen`; returns the HTTPS port to
/// report on the Node (0 when disabled).
async fn start_servers(
    cfg: &KubeletRunConfig,
    runtime: &Arc<dyn PodRuntime>,
    statuses: &worker::StatusStore,
    node_ip: IpAddr,
    shutdown: &CancellationToken,
) -> Result<i32, server::ServerError> {
    let k = &cfg.config.kubelet;
    let ephemeral = match cfg.listen {
        Listen::Disabled => return Ok(0),
        Listen::Config => false,
        Listen::Ephemeral => true,
    };
    let pick = |p: i32| {
        if ephemeral {
            0
        } else {
            u16::try_from(p).unwrap_or(0)
        }
    };
    let ip = |a: &str| -> Result<IpAddr, server::ServerError> {
        a.parse().map_err(|_| server::ServerError::Bind {
            addr: a.to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an IP address"),
        })
    };
    if k.healthz_port.unwrap_or(0) != 0 {
        let addr = std::net::SocketAddr::new(
            ip(&k.healthz_bind_address)?,
            pick(k.healthz_port.unwrap_or(0)),
        );
        server::serve_healthz(addr, shutdown.clone()).await?;
    }
    if k.port == 0 && !ephemeral {
        return Ok(0);
    }
    let tls = server::TlsSettings {
        cert_dir: cfg.config.root_dir.join("pki"),
        hosts: vec![cfg.config.node_name.clone(), node_ip.to_string()],
        client_ca_file: k.authentication.x509.client_ca_file.clone(),
        anonymous: k.authentication.anonymous.enabled.unwrap_or(false),
    };
    let stats = Arc::new(stats::StatsCollector::new(
        runtime.clone(),
        statuses.clone(),
        cfg.config.node_name.clone(),
        cfg.config.root_dir.clone(),
    ));
    tokio::spawn(stats.clone().run(shutdown.clone()));
    let ctx = server::ServerContext {
        runtime: runtime.clone(),
        pods: statuses.clone(),
        stats: Some(stats),
    };
    let addr = std::net::SocketAddr::new(ip(&k.address)?, pick(k.port));
    let bound = server::serve_https(addr, tls, ctx, shutdown.clone()).await?;
    Ok(i32::from(bound.port()))
}

/// How often the kubelet looks for orphaned pods.
const ORPHAN_CLEANUP_PERIOD: Duration = Duration::from_secs(10);
/// Status patches the status manager sends concurrently.
const STATUS_PATCHES_IN_FLIGHT: usize = 8;
/// Grace period for the containers of an orphaned pod (its spec is gone).
const ORPHAN_GRACE: Duration = Duration::from_secs(2);

struct Manager {
    ctx: Arc<worker::WorkerContext>,
    shutdown: CancellationToken,
    file_pods: Vec<Pod>,
    /// API pods by `namespace/name` (mirror pods included).
    api_pods: HashMap<String, Pod>,
    api_synced: bool,
    /// Whether the static pod directory has been read once.
    file_synced: bool,
    /// Orphaned pods being torn down.
    cleaning: Arc<Mutex<std::collections::HashSet<String>>>,
    next_cleanup: tokio::time::Instant,
    workers: HashMap<String, (watch::Sender<Option<Pod>>, tokio::task::JoinHandle<()>)>,
    /// Static pods being torn down, by `namespace/name`: a new version of the same
    /// static pod starts only once the old one is gone (upstream's rule that one full
    /// name runs at most once — a hostNetwork control-plane pod would otherwise find its
    /// port taken by its predecessor).
    terminating_static: HashMap<String, tokio::task::JoinHandle<()>>,
    /// `namespace/name` of the static pods with a worker, by uid.
    static_names: HashMap<String, String>,
    /// Last status written per API object uid.
    sent: HashMap<String, PodStatus>,
}

impl Manager {
    /// Tears down pods the node still runs but no source wants any more — deleted
    /// while the kubelet was down, or left by a crash — once every source has been
    /// read (upstream's HandlePodCleanups for orphaned pods).
    async fn cleanup_orphans(&mut self) {
        let now = tokio::time::Instant::now();
        if !(self.api_synced && self.file_synced) || now < self.next_cleanup {
            return;
        }
        self.next_cleanup = now + ORPHAN_CLEANUP_PERIOD;
        let rt = self.ctx.runtime.clone();
        let mut uids: std::collections::HashSet<String> = match rt.list_containers(None).await {
            Ok(list) => list.into_iter().map(|c| c.pod_uid).collect(),
            Err(e) => {
                tracing::warn!("listing containers for clean-up: {e}");
                return;
            }
        };
        match rt.list_sandbox_uids().await {
            Ok(list) => uids.extend(list),
            Err(e) => tracing::warn!("listing sandboxes for clean-up: {e}"),
        }
        // Pods any source still knows keep their containers (a terminal pod's exited
        // containers stay for `kubectl logs` until the pod is deleted).
        let known: std::collections::HashSet<&str> = self
            .api_pods
            .values()
            .chain(self.file_pods.iter())
            .filter_map(|p| p.metadata.uid.as_deref())
            .chain(self.workers.keys().map(String::as_str))
            .collect();
        for uid in uids {
            if uid.is_empty() || known.contains(uid.as_str()) {
                continue;
            }
            let Ok(mut cleaning) = self.cleaning.lock() else {
                return;
            };
            if !cleaning.insert(uid.clone()) {
                continue;
            }
            drop(cleaning);
            let rt = rt.clone();
            let set = self.cleaning.clone();
            tokio::spawn(async move {
                tracing::info!(pod_uid = %uid, "cleaning up an orphaned pod");
                for c in rt.list_containers(Some(&uid)).await.unwrap_or_default() {
                    if c.state == runtime::ContainerState::Running
                        && let Err(e) = rt.stop_container(&c.id, ORPHAN_GRACE).await
                    {
                        tracing::warn!(container = %c.id, "stopping orphaned container: {e}");
                    }
                    if let Err(e) = rt.remove_container(&c.id).await {
                        tracing::warn!(container = %c.id, "removing orphaned container: {e}");
                    }
                }
                if let Err(e) = rt.remove_sandbox(&uid).await {
                    tracing::warn!(pod_uid = %uid, "removing orphaned sandbox: {e}");
                }
                if let Ok(mut s) = set.lock() {
                    s.remove(&uid);
                }
            });
        }
    }

    fn apply(&mut self, update: sources::SourceUpdate) {
        match update.source {
            sources::Source::File => {
                self.file_synced = true;
                self.file_pods = update.pods;
            }
            sources::Source::Api => {
                self.api_synced = true;
                self.api_pods = update
                    .pods
                    .into_iter()
                    .map(|p| (mirror::key(&p), p))
                    .collect();
            }
        }
        self.reconcile_workers();
    }

    /// Starts, updates and stops pod workers to match the sources.
    fn reconcile_workers(&mut self) {
        self.terminating_static
            .retain(|_, join| !join.is_finished());
        let mut desired: HashMap<String, Pod> = HashMap::new();
        for p in &self.file_pods {
            desired.insert(p.metadata.uid.clone().unwrap_or_default(), p.clone());
        }
        for p in self.api_pods.values() {
            if sources::is_mirror(p) {
                continue;
            }
            let uid = p.metadata.uid.clone().unwrap_or_default();
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            let terminal = matches!(phase, Some("Succeeded") | Some("Failed"));
            if terminal && !self.workers.contains_key(&uid) {
                continue;
            }
            desired.insert(uid, p.clone());
        }
        let gone: Vec<String> = self
            .workers
            .keys()
            .filter(|uid| !desired.contains_key(*uid))
            .cloned()
            .collect();
        for uid in gone {
            if let Some((tx, join)) = self.workers.remove(&uid) {
                let _ = tx.send(None);
                if let Some(full_name) = self.static_names.remove(&uid) {
                    self.terminating_static.insert(full_name, join);
                }
            }
        }
        for (uid, pod) in desired {
            match self.workers.get(&uid) {
                Some((tx, _)) => {
                    tx.send_if_modified(|cur| {
                        if cur.as_ref() == Some(&pod) {
                            false
                        } else {
                            *cur = Some(pod.clone());
                            true
                        }
                    });
                }
                None => {
                    if sources::is_static(&pod) {
                        let full_name = mirror::key(&pod);
                        if self.terminating_static.contains_key(&full_name) {
                            tracing::debug!(pod = %full_name, "static pod waits for its previous version to stop");
                            continue;
                        }
                        self.static_names.insert(uid.clone(), full_name);
                    }
                    let (tx, rx) = watch::channel(Some(pod));
                    let join = tokio::spawn(worker::run_worker(
                        self.ctx.clone(),
                        rx,
                        self.shutdown.child_token(),
                    ));
                    self.workers.insert(uid, (tx, join));
                }
            }
        }
    }

    /// Write changed statuses to the API (static pods: to their mirror pods), a few
    /// patches at a time.
    async fn flush(&mut self, client: &kube::Client) {
        use futures::StreamExt;
        let entries: Vec<(Pod, PodStatus)> = self
            .ctx
            .statuses
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        let mut patches = Vec::new();
        for (pod, status) in entries {
            let target = if sources::is_static(&pod) {
                self.api_pods
                    .get(&mirror::key(&pod))
                    .filter(|m| {
                        sources::annotation(m, sources::CONFIG_MIRROR)
                            == pod.metadata.uid.as_deref()
                    })
                    .cloned()
            } else {
                self.api_pods
                    .get(&mirror::key(&pod))
                    .filter(|p| p.metadata.uid == pod.metadata.uid)
                    .cloned()
            };
            let Some(target) = target else { continue };
            let Some(target_uid) = target.metadata.uid.clone() else {
                continue;
            };
            if self.sent.get(&target_uid) == Some(&status) {
                continue;
            }
            patches.push((target, target_uid, status));
        }
        let written: Vec<(String, PodStatus)> = futures::stream::iter(patches)
            .map(|(target, target_uid, status)| async move {
                let api: Api<Pod> = Api::namespaced(
                    client.clone(),
                    target.metadata.namespace.as_deref().unwrap_or("default"),
                );
                let patch = serde_json::json!({"metadata": {"uid": target_uid}, "status": status});
                match api
                    .patch_status(
                        target.metadata.name.as_deref().unwrap_or_default(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(_) => Some((target_uid, status)),
                    Err(e) => {
                        tracing::debug!(pod = %mirror::key(&target), "patching status: {e}");
                        None
                    }
                }
            })
            .buffer_unordered(STATUS_PATCHES_IN_FLIGHT)
            .filter_map(|r| async move { r })
            .collect()
            .await;
        self.sent.extend(written);
        let live: std::collections::HashSet<String> = self
            .api_pods
            .values()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        self.sent.retain(|uid, _| live.contains(uid));
    }
}
