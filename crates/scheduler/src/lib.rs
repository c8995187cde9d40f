//! Flotilla's scheduler: kube-scheduler v1.33's behaviour as an ordinary API client.
//!
//! It watches pods, nodes, namespaces, PriorityClasses and PodDisruptionBudgets,
//! keeps a node-info cache, takes unscheduled pods naming it (`spec.schedulerName`)
//! from a priority queue, filters and scores nodes with upstream's default plugins,
//! and binds each pod through `pods/binding`. Besides bindings it only writes Events,
//! the `PodScheduled` condition and `nominatedNodeName` of pods it cannot place,
//! and the eviction (DisruptionTarget condition + graceful delete) of preemption
//! victims. It never depends on the API server's crates: everything goes through
//! the API, so it runs inside `flotilla server` or alone as `flotilla scheduler`.
//!
//! * [`model`] — pods and nodes parsed once into what the plugins read.
//! * [`resources`] — request arithmetic (init containers, sidecars, overhead).
//! * [`cache`] — nodes and the pods assigned or assumed on them.
//! * [`framework`] — extension points, statuses, the plugin profile.
//! * [`plugins`] — NodeName, NodeUnschedulable, TaintToleration, NodeAffinity,
//!   NodePorts, NodeResourcesFit, PodTopologySpread, InterPodAffinity,
//!   NodeResourcesBalancedAllocation.
//! * [`algorithm`] — one decision, with node sampling and the failure diagnosis.
//! * [`preemption`] — DefaultPreemption.
//! * [`queue`] — activeQ, backoffQ, unschedulablePods.
//! * [`informers`] and [`scheduler`] — the watches and the scheduling loop.
//! * [`bench`] — a throughput measurement against a live API server.

pub mod algorithm;
pub mod bench;
pub mod cache;
pub mod framework;
pub mod informers;
pub mod model;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod scheduler;

#[cfg(test)]
mod testutil;

use std::time::Duration;

use controllers::leader::{self, LeaderElectionConfig};
use kube::Client;
use tokio_util::sync::CancellationToken;

pub use framework::{PluginId, Profile};
pub use scheduler::{SchedulerConfig, run_scheduler};

/// The scheduler name upstream uses by default.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// Upstream's leader-election Lease name.
pub const DEFAULT_LEASE_NAME: &str = "kube-scheduler";

/// Errors of the scheduler's configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid scheduler configuration: {0}")]
    Config(String),
}

/// Command-line flags of `flotilla scheduler` (names as kube-scheduler's).
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct SchedulerArgs {
    /// The `spec.schedulerName` this scheduler serves; pods naming another are left
    /// alone.
    #[arg(long, default_value = DEFAULT_SCHEDULER_NAME)]
    pub scheduler_name: String,
    /// Schedule only while holding a coordination.k8s.io/v1 Lease.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    /// Name of the Lease (default `kube-scheduler` for the default scheduler, else
    /// the scheduler name, so a second scheduler does not compete for the first's).
    #[arg(long = "leader-elect-resource-name", alias = "leader-elect-lease-name")]
    pub leader_elect_resource_name: Option<String>,
    /// Namespace of the Lease.
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    /// Share of nodes to find feasible before scoring; 0 is upstream's adaptive
    /// default (50% minus 1% per 125 nodes, at least 5% and 100 nodes).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub percentage_of_nodes_to_score: u32,
    /// Backoff after a pod's first failed attempt (doubling per attempt).
    #[arg(long, default_value_t = 1)]
    pub pod_initial_backoff_seconds: u64,
    /// Longest backoff.
    #[arg(long, default_value_t = 10)]
    pub pod_max_backoff_seconds: u64,
    /// Bindings in flight at once (upstream binds without a bound; a bound keeps the
    /// connection count sane over HTTP/1.1).
    #[arg(long, default_value_t = 64)]
    pub binding_concurrency: usize,
}

impl Default for SchedulerArgs {
    fn default() -> Self {
        SchedulerArgs {
            scheduler_name: DEFAULT_SCHEDULER_NAME.into(),
            leader_elect: true,
            leader_elect_resource_name: None,
            leader_elect_resource_namespace: "kube-system".into(),
            percentage_of_nodes_to_score: 0,
            pod_initial_backoff_seconds: 1,
            pod_max_backoff_seconds: 10,
            binding_concurrency: 64,
        }
    }
}

impl SchedulerArgs {
    /// The Lease this scheduler elects its leader on.
    pub fn lease_name(&self) -> String {
        match &self.leader_elect_resource_name {
            Some(n) if !n.is_empty() => n.clone(),
            _ if self.scheduler_name == DEFAULT_SCHEDULER_NAME => DEFAULT_LEASE_NAME.into(),
            _ => self.scheduler_name.clone(),
        }
    }

    /// Validates the flags into a [`SchedulerConfig`].
    pub fn config(&self) -> Result<SchedulerConfig, Error> {
        if self.scheduler_name.is_empty() {
            return Err(Error::Config("--scheduler-name must not be empty".into()));
        }
        if self.pod_initial_backoff_seconds == 0 {
            return Err(Error::Config(
                "--pod-initial-backoff-seconds must be greater than 0".into(),
            ));
        }
        if self.pod_max_backoff_seconds < self.pod_initial_backoff_seconds {
            return Err(Error::Config(
                "--pod-max-backoff-seconds must be at least --pod-initial-backoff-seconds".into(),
            ));
        }
        if self.binding_concurrency == 0 {
            return Err(Error::Config(
                "--binding-concurrency must be greater than 0".into(),
            ));
        }
        Ok(SchedulerConfig {
            scheduler_name: self.scheduler_name.clone(),
            percentage_of_nodes_to_score: self.percentage_of_nodes_to_score,
            queue: queue::QueueConfig {
                initial_backoff: Duration::from_secs(self.pod_initial_backoff_seconds),
                max_backoff: Duration::from_secs(self.pod_max_backoff_seconds),
                ..Default::default()
            },
            binding_concurrency: self.binding_concurrency,
            ..Default::default()
        })
    }
}

/// Runs the scheduler until `shutdown`: with `--leader-elect`, only while holding
/// the Lease in `--leader-elect-resource-namespace` (stepping down, and rebuilding
/// its state from the API when leading again).
pub async fn run(
    client: Client,
    args: SchedulerArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let cfg = args.config()?;
    if !args.leader_elect {
        run_scheduler(client, cfg, shutdown).await;
        return Ok(());
    }
    let mut election = LeaderElectionConfig::new(&args.lease_name(), &leader::default_identity());
    election.namespace = args.leader_elect_resource_namespace.clone();
    let c = client.clone();
    leader::run_elected(client, election, shutdown, move |token| {
        run_scheduler(c.clone(), cfg.clone(), token)
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SchedulerArgs,
    }

    fn parse(argv: &[&str]) -> Result<SchedulerArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("scheduler").chain(argv.iter().copied()))
            .map(|c| c.args)
    }

    #[test]
    fn flags_and_lease_names() {
        let d = parse(&[]).expect("defaults");
        assert_eq!(d, SchedulerArgs::default());
        assert_eq!(d.lease_name(), "kube-scheduler");
        let second =
            parse(&["--scheduler-name", "my-scheduler", "--leader-elect=false"]).expect("args");
        assert!(!second.leader_elect);
        assert_eq!(second.lease_name(), "my-scheduler");
        let named =
            parse(&["--scheduler-name", "x", "--leader-elect-lease-name", "l"]).expect("args");
        assert_eq!(named.lease_name(), "l");
        assert!(parse(&["--leader-elect"]).expect("bare flag").leader_elect);
        assert!(parse(&["--percentage-of-nodes-to-score", "101"]).is_err());
        let bad = SchedulerArgs {
            pod_initial_backoff_seconds: 20,
            ..Default::default()
        };
        assert!(bad.config().is_err());
        let cfg = parse(&["--percentage-of-nodes-to-score", "30"])
            .expect("args")
            .config()
            .expect("config");
        assert_eq!(cfg.profile().percentage_of_nodes_to_score, 30);
    }
}
