//! Flotilla's controllers: ordinary Kubernetes API clients (watch + write) that carry
//! out what the API server only records.
//!
//! Controllers are level-triggered: watch handlers only queue keys, and each
//! reconcile reads its cache, re-reads what it is about to change, is idempotent and
//! says when to look again; errors requeue with exponential backoff.
//!
//! * [`gc`]: the garbage collector (ownerReferences; background, foreground and orphan
//!   deletion).
//! * [`namespace`]: the namespace controller (empties terminating namespaces, then
//!   finalizes them).
//!
//! [`run`] starts them; it is used by `flotilla server` and `flotilla controller-manager`.

pub mod discovery;
pub mod gc;
pub mod namespace;
pub mod queue;

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

/// Which controllers run and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerOptions {
    /// Run the garbage collector.
    pub garbage_collector: bool,
    /// Run the namespace controller.
    pub namespace: bool,
    /// Concurrent garbage collector workers (upstream `--concurrent-gc-syncs`, 20).
    pub gc_workers: usize,
    /// Concurrent namespace reconciles (upstream `--concurrent-namespace-syncs`, 10).
    pub namespace_workers: usize,
    /// How often the garbage collector re-runs discovery to follow new resources.
    pub discovery_period: Duration,
    /// How long the garbage collector waits for its first lists before working.
    pub cache_sync_timeout: Duration,
    /// Retry backoff of failed keys.
    pub backoff: Backoff,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self {
            garbage_collector: true,
            namespace: true,
            gc_workers: 20,
            namespace_workers: 10,
            discovery_period: Duration::from_secs(30),
            cache_sync_timeout: Duration::from_secs(60),
            backoff: Backoff::default(),
        }
    }
}

/// Run the enabled controllers until `shutdown` is cancelled (or one fails).
///
/// Leader election is not implemented yet. Its seam is this function: when it
/// arrives, `run` will first acquire the lease (a `coordination.k8s.io` Lease) and pass
/// the controllers a token that is cancelled when leadership is lost, instead of
/// `shutdown` itself; the controllers already stop cleanly on that token. Until then,
/// run exactly one instance per cluster.
pub async fn run(
    client: Client,
    opts: ControllerOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let leading = shutdown.child_token();
    info!(
        gc = opts.garbage_collector,
        namespace = opts.namespace,
        "controllers: starting"
    );
    let gc = async {
        if opts.garbage_collector {
            gc::run(client.clone(), &opts, leading.clone()).await
        } else {
            Ok(())
        }
    };
    let ns = async {
        if opts.namespace {
            namespace::run(client.clone(), &opts, leading.clone()).await
        } else {
            Ok(())
        }
    };
    let (a, b) = tokio::join!(
        async {
            let r = gc.await;
            if r.is_err() {
                leading.cancel();
            }
            r
        },
        async {
            let r = ns.await;
            if r.is_err() {
                leading.cancel();
            }
            r
        }
    );
    a?;
    b?;
    info!("controllers: stopped");
    Ok(())
}
