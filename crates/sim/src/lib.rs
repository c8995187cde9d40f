//! Hollow nodes (`flotilla sim`): simulated kubelets for scale tests and benchmarks,
//! in the role of upstream's kubemark and kwok.
//!
//! Each simulated node registers a Node (or adopts an existing one), renews its Lease
//! in `kube-node-lease`, posts its status, and "runs" the pods bound to it: after a
//! startup delay it reports them Running with an address from the node's podCIDR and
//! ready containers (and records the kubelet's Pulled/Created/Started events), and it
//! finishes the deletion of pods being deleted. Nothing is executed and the addresses
//! are never contacted.
//!
//! Thousands of nodes run in one process: all of them share one pod watch and one
//! node watch, their timers live in one timing wheel driven by one task, and writes go
//! out with bounded concurrency in three lanes (node heartbeats, pods, events) so a
//! burst of pod work cannot starve the heartbeats.
//!
//! A node can be stopped ([`Control::fail`], `--fail-after`, SIGUSR1 in
//! [`run`]): it stops renewing its Lease, posting status and handling pods, as a
//! crashed kubelet would, so the node lifecycle controller marks it unreachable.
//!
//! Like every component but the API server, this crate reaches the cluster only
//! through the API; it never depends on the API server or the store.

mod config;
mod engine;
pub mod ipam;
mod objects;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use config::{FailAfter, SimArgs};
pub use objects::{EXIT_CODE_ANNOTATION, RUN_FOR_ANNOTATION};

/// Errors of the simulation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag value that cannot be used.
    #[error("invalid {flag}: {message}")]
    InvalidFlag { flag: &'static str, message: String },
    /// A node name that is not one of the simulated nodes.
    #[error("{0:?} is not a simulated node")]
    UnknownNode(String),
    /// The simulation is no longer running.
    #[error("the simulation has stopped")]
    Stopped,
}

/// A snapshot of the simulation's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Nodes whose Node object exists as far as the simulation knows.
    pub nodes_registered: u64,
    /// Nodes stopped by `--fail-after`, a signal or [`Control::fail`].
    pub nodes_failed: u64,
    /// Pods currently reported Running.
    pub pods_running: u64,
    /// Pods reported Running since the start.
    pub pods_started: u64,
    /// Pods the simulation finished deleting.
    pub pods_deleted: u64,
    /// API writes that failed (they are retried).
    pub write_errors: u64,
    /// Events not recorded because too many were queued.
    pub events_dropped: u64,
}

/// A handle to a running (or not yet started) simulation: stop and restart nodes'
/// heartbeats, read counters. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    tx: mpsc::UnboundedSender<engine::Command>,
    by_name: Arc<HashMap<String, usize>>,
    counters: Arc<engine::Counters>,
}

impl Control {
    fn index(&self, node: &str) -> Result<usize, Error> {
        self.by_name
            .get(node)
            .copied()
            .ok_or_else(|| Error::UnknownNode(node.to_string()))
    }

    fn send(&self, cmd: engine::Command) -> Result<(), Error> {
        self.tx.send(cmd).map_err(|_| Error::Stopped)
    }

    /// Stop `node`: no more Lease renewals, status updates or pod handling.
    pub fn fail(&self, node: &str) -> Result<(), Error> {
        let i = self.index(node)?;
        self.send(engine::Command::Fail(Some(i)))
    }

    /// Stop every node.
    pub fn fail_all(&self) -> Result<(), Error> {
        self.send(engine::Command::Fail(None))
    }

    /// Stop the healthy node with the lowest index (what SIGUSR1 does).
    pub fn fail_next(&self) -> Result<(), Error> {
        self.send(engine::Command::FailNext)
    }

    /// Bring a stopped node back: it renews its Lease, reports Ready and handles its
    /// pods again (registering anew if its Node was deleted meanwhile).
    pub fn recover(&self, node: &str) -> Result<(), Error> {
        let i = self.index(node)?;
        self.send(engine::Command::Recover(Some(i)))
    }

    /// Bring every stopped node back (what SIGUSR2 does).
    pub fn recover_all(&self) -> Result<(), Error> {
        self.send(engine::Command::Recover(None))
    }

    /// The current counters.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            nodes_registered: get(&c.registered),
            nodes_failed: get(&c.failed),
            pods_running: get(&c.running),
            pods_started: get(&c.started),
            pods_deleted: get(&c.deleted),
            write_errors: get(&c.errors),
            events_dropped: get(&c.events_dropped),
        }
    }
}

/// A configured simulation, ready to [`run`](Sim::run).
pub struct Sim {
    client: kube::Client,
    cfg: Arc<config::Config>,
    control: Control,
    commands: mpsc::UnboundedReceiver<engine::Command>,
}

impl Sim {
    /// Check `args` and prepare the simulation; nothing is contacted yet.
    pub fn new(client: kube::Client, args: &SimArgs) -> Result<Self, Error> {
        let cfg = config::Config::new(args)?;
        let by_name = cfg
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let (tx, commands) = mpsc::unbounded_channel();
        Ok(Sim {
            client,
            cfg: Arc::new(cfg),
            control: Control {
                tx,
                by_name: Arc::new(by_name),
                counters: Default::default(),
            },
            commands,
        })
    }

    /// The names of the simulated nodes, in index order.
    pub fn node_names(&self) -> &[String] {
        &self.cfg.names
    }

    /// A handle to control the simulation while it runs.
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Run until `shutdown` is cancelled, then let in-flight requests finish (and
    /// delete the Nodes with `--delete-nodes-on-exit`). API errors are retried, never
    /// returned.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        engine::run(
            self.client,
            self.cfg,
            self.control.by_name.clone(),
            self.control.counters.clone(),
            self.commands,
            shutdown,
        )
        .await;
        Ok(())
    }
}

/// `flotilla sim`: run the hollow nodes described by `args` until `shutdown` is
/// cancelled (the binary cancels it on SIGINT/SIGTERM). SIGUSR1 stops the healthy node
/// with the lowest index; SIGUSR2 brings every stopped node back.
pub async fn run(
    client: kube::Client,
    args: SimArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let sim = Sim::new(client, &args)?;
    tracing::info!(
        nodes = sim.node_names().len(),
        first = sim.node_names().first().map(String::as_str).unwrap_or(""),
        "starting hollow nodes"
    );
    let signals = tokio::spawn(forward_signals(sim.control(), shutdown.clone()));
    let result = sim.run(shutdown).await;
    signals.abort();
    result.map_err(Into::into)
}

async fn forward_signals(control: Control, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut usr1, mut usr2) = match (
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!("cannot listen for SIGUSR1/SIGUSR2: {e}");
            return;
        }
    };
    loop {
        let sent = tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(()) = usr1.recv() => control.fail_next(),
            Some(()) = usr2.recv() => control.recover_all(),
        };
        if sent.is_err() {
            return;
        }
    }
}
