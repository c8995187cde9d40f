//! Flotilla's controllers: ordinary Kubernetes API clients (watch + write) that carry
//! out what the API server only records.
//!
//! Controllers are level-triggered: watch handlers only queue keys, and each
//! reconcile reads its cache, re-reads what it is about to change, is idempotent and
//! says when to look again; errors requeue with exponential backoff.
//!
//! * [`informers`]: shared informers, one watch and cache per kind for all
//!   controllers (client-go's `SharedInformerFactory`).
//! * [`gc`]: the garbage collector (ownerReferences; background, foreground and orphan
//!   deletion).
//! * [`namespace`]: the namespace controller (empties terminating namespaces, then
//!   finalizes them).
//!
//! [`run`] starts them; it is used by `flotilla server` and `flotilla controller-manager`.

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod discovery;
pub mod endpointslice;
pub mod events;
pub mod gc;
pub mod history;
pub mod informers;
pub mod job;
pub mod leader;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
pub mod queue;
pub mod replicaset;
pub mod rootcacertpublisher;
pub mod serviceaccount;
pub mod statefulset;
pub mod workload;

use std::time::Duration;

use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use queue::Backoff;

/// Errors of the controllers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("API discovery failed: {0}")]
    Discovery(String),
    #[error("no served resource for kind {kind} in {api_version}")]
    UnknownKind { api_version: String, kind: String },
    #[error("conflicting updates kept failing: {0}")]
    Conflict(String),
    #[error("{0}")]
    Several(String),
}

pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}

pub(crate) fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict())
}

/// Which controllers run and how. Field names follow upstream kube-controller-manager
/// flags (e.g. `node_monitor_grace_period` is `--node-monitor-grace-period`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerOptions {
    /// Upstream `--controllers`: `*` (all), names to enable, `-name` to disable.
    pub controllers: Vec<String>,
    /// Run the garbage collector (kept for callers that toggle it directly).
    pub garbage_collector: bool,
    /// Run the namespace controller (likewise).
    pub namespace: bool,
    /// Concurrent garbage collector workers (upstream `--concurrent-gc-syncs`, 20).
    pub gc_workers: usize,
    /// Concurrent namespace reconciles (upstream `--concurrent-namespace-syncs`, 10).
    pub namespace_workers: usize,
    /// Concurrent workers of each workload controller (upstream `--concurrent-*-syncs`, 5).
    pub workload_workers: usize,
    /// How often the garbage collector re-runs discovery to follow new resources.
    pub discovery_period: Duration,
    /// How long the garbage collector waits for its first lists before working.
    pub cache_sync_timeout: Duration,
    /// Retry backoff of failed keys.
    pub backoff: Backoff,
    /// `--node-monitor-period` (5 s): how often node health is checked.
    pub node_monitor_period: Duration,
    /// `--node-monitor-grace-period` (40 s): silence before a node is marked unreachable.
    pub node_monitor_grace_period: Duration,
    /// `--node-startup-grace-period` (60 s): grace for a node that never reported.
    pub node_startup_grace_period: Duration,
    /// `--allocate-node-cidrs`: give each node a `spec.podCIDR` from `cluster_cidr`.
    pub allocate_node_cidrs: bool,
    /// `--cluster-cidr` (pod network).
    pub cluster_cidr: String,
    /// `--node-cidr-mask-size` (24).
    pub node_cidr_mask_size: u8,
    /// `--terminated-pod-gc-threshold` (12500): terminated pods kept before the pod GC
    /// deletes the oldest (0 disables).
    pub terminated_pod_gc_threshold: usize,
    /// `--max-endpoints-per-slice` (100).
    pub max_endpoints_per_slice: usize,
    /// `--leader-elect`: run only while holding the `kube-controller-manager` Lease.
    pub leader_elect: bool,
    /// Identity used in the Lease (hostname plus a unique suffix by default).
    pub leader_identity: String,
    /// The cluster CA bundle (PEM) the root CA publisher puts in every namespace
    /// (upstream `--root-ca-file`; Flotilla takes the kubeconfig's CA, see
    /// [`root_ca_from_kubeconfig`]). `None`: that controller does not run.
    pub root_ca: Option<String>,
    /// The shared informers the controllers watch through (one watch and cache per
    /// kind). [`run_all`] gives each leadership term fresh ones.
    pub informers: informers::Informers,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self {
            controllers: vec!["*".into()],
            garbage_collector: true,
            namespace: true,
            gc_workers: 20,
            namespace_workers: 10,
            workload_workers: 5,
            discovery_period: Duration::from_secs(30),
            cache_sync_timeout: Duration::from_secs(60),
            backoff: Backoff::default(),
            node_monitor_period: Duration::from_secs(5),
            node_monitor_grace_period: Duration::from_secs(40),
            node_startup_grace_period: Duration::from_secs(60),
            allocate_node_cidrs: true,
            cluster_cidr: "10.42.0.0/16".into(),
            node_cidr_mask_size: 24,
            terminated_pod_gc_threshold: 12500,
            max_endpoints_per_slice: 100,
            leader_elect: true,
            leader_identity: leader::default_identity(),
            root_ca: None,
            informers: informers::Informers::default(),
        }
    }
}

impl ControllerOptions {
    /// Whether the controller named `name` is enabled by `--controllers`.
    pub fn enabled(&self, name: &str) -> bool {
        if name == "garbagecollector" && !self.garbage_collector {
            return false;
        }
        if name == "namespace" && !self.namespace {
            return false;
        }
        let mut on = false;
        for c in &self.controllers {
            if c == "*" {
                on = true;
            } else if c == name {
                return true;
            } else if c.strip_prefix('-') == Some(name) {
                return false;
            }
        }
        on
    }
}

/// The certificate authority (PEM) a kubeconfig trusts for its current cluster:
/// `certificate-authority-data`, else the `certificate-authority` file. For a
/// Flotilla kubeconfig that is the cluster CA, which the root CA publisher publishes.
pub fn root_ca_from_kubeconfig(kc: &kube::config::Kubeconfig) -> Option<String> {
    use base64::Engine;
    let ctx_name = kc.current_context.as_deref()?;
    let ctx = kc
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)?
        .context
        .as_ref()?;
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)?
        .cluster
        .as_ref()?;
    if let Some(data) = &cluster.certificate_authority_data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .ok()?;
        return String::from_utf8(bytes).ok();
    }
    let path = cluster.certificate_authority.as_deref()?;
    std::fs::read_to_string(path).ok()
}

/// How a controller is started: its own run function on its own task.
pub type RunFn = fn(
    Client,
    ControllerOptions,
    CancellationToken,
) -> futures::future::BoxFuture<'static, Result<(), Error>>;

/// Every controller, by its upstream name. New controllers add one line here.
pub const CONTROLLERS: &[(&str, RunFn)] = &[
    ("garbagecollector", |c, o, t| {
        Box::pin(async move { gc::run(c, &o, t).await })
    }),
    ("namespace", |c, o, t| {
        Box::pin(async move { namespace::run(c, &o, t).await })
    }),
    ("nodelifecycle", |c, o, t| {
        Box::pin(async move { nodelifecycle::run(c, &o, t).await })
    }),
    ("taint-eviction-controller", |c, o, t| {
        Box::pin(async move { nodelifecycle::taint_eviction::run(c, &o, t).await })
    }),
    ("nodeipam", |c, o, t| {
        Box::pin(async move { nodeipam::run(c, &o, t).await })
    }),
    ("podgc", |c, o, t| {
        Box::pin(async move { podgc::run(c, &o, t).await })
    }),
    ("endpointslice", |c, o, t| {
        Box::pin(async move { endpointslice::run(c, &o, t).await })
    }),
    ("endpoint", |c, o, t| {
        Box::pin(async move { endpointslice::endpoints::run(c, &o, t).await })
    }),
    ("serviceaccount", |c, o, t| {
        Box::pin(async move { serviceaccount::run(c, &o, t).await })
    }),
    ("root-ca-cert-publisher", |c, o, t| {
        Box::pin(async move { rootcacertpublisher::run(c, &o, t).await })
    }),
    ("daemonset", |c, o, t| {
        Box::pin(async move { daemonset::run(c, &o, t).await })
    }),
    ("statefulset", |c, o, t| {
        Box::pin(async move { statefulset::run(c, &o, t).await })
    }),
    ("job", |c, o, t| {
        Box::pin(async move { job::run(c, &o, t).await })
    }),
    ("ttl-after-finished", |c, o, t| {
        Box::pin(async move { job::ttl_after_finished::run(c, &o, t).await })
    }),
    ("cronjob", |c, o, t| {
        Box::pin(async move { cronjob::run(c, &o, t).await })
    }),
    ("replicaset", |c, o, t| {
        Box::pin(async move { replicaset::run(c, &o, t).await })
    }),
    ("deployment", |c, o, t| {
        Box::pin(async move { deployment::run(c, &o, t).await })
    }),
];

/// Run the enabled controllers until `shutdown` is cancelled (or one fails). With
/// `leader_elect`, they run only while this process holds the `kube-controller-manager`
/// Lease in `kube-system`, and stop when leadership is lost.
pub async fn run(
    client: Client,
    opts: ControllerOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if opts.leader_elect {
        let cfg =
            leader::LeaderElectionConfig::new("kube-controller-manager", &opts.leader_identity);
        let c = client.clone();
        leader::run_elected(client, cfg, shutdown, move |token| {
            let c = c.clone();
            let o = opts.clone();
            async move {
                if let Err(e) = run_all(c, o, token).await {
                    tracing::error!("controllers stopped: {e:#}");
                }
            }
        })
        .await;
        Ok(())
    } else {
        run_all(client, opts, shutdown).await
    }
}

/// Run every enabled controller (no leader election).
pub async fn run_all(
    client: Client,
    mut opts: ControllerOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let leading = shutdown.child_token();
    opts.informers = informers::Informers::new(leading.clone());
    let mut tasks = Vec::new();
    for (name, start) in CONTROLLERS {
        if !opts.enabled(name) {
            continue;
        }
        info!(controller = name, "starting controller");
        let fut = start(client.clone(), opts.clone(), leading.clone());
        let token = leading.clone();
        tasks.push(tokio::spawn(async move {
            let r = fut.await;
            if let Err(e) = &r {
                tracing::error!(controller = name, "controller failed: {e}");
                token.cancel();
            }
            r
        }));
    }
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(Err(e)) if first_err.is_none() => first_err = Some(anyhow::anyhow!(e)),
            Err(e) if first_err.is_none() => {
                first_err = Some(anyhow::anyhow!("controller task panicked: {e}"))
            }
            _ => {}
        }
    }
    info!("controllers: stopped");
    first_err.map_or(Ok(()), Err)
}
