//! Timing of pod sandbox network setup and teardown, for `flotilla bench`.
//!
//! One cycle = setup (create a pinned network namespace, then
//! [`NodeNetwork::setup_pod`]: veth pair, address, routes) and teardown
//! ([`NodeNetwork::teardown_pod`], then remove the namespace). Everything runs
//! inside a private "node" namespace made for the run, so the machine's own
//! network is untouched; the scratch directory and namespaces are removed on
//! every exit path. Needs root.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::netns::{Netns, NetnsError};
use crate::node::{NetworkError, NodeNetConfig, NodeNetwork};

/// Most cycles one run may ask for (keeps a run bounded in time).
pub const MAX_CYCLES: usize = 10_000;

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Namespaces and netlink changes need root.
    #[error("the sandbox network benchmark needs root")]
    NotRoot,
    /// The cycle count is out of range.
    #[error("cycles must be 1..={MAX_CYCLES}, got {0}")]
    BadCycles(usize),
    /// A network step failed.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// A namespace step failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// Scratch directory or runtime setup failed.
    #[error("benchmark setup: {0}")]
    Setup(std::io::Error),
}

/// Summary of one timed phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Mean.
    pub mean: Duration,
    /// Median.
    pub p50: Duration,
    /// 99th percentile (nearest rank).
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

impl Timing {
    /// Summarizes samples (empty input gives zeros).
    pub fn from_samples(samples: &[Duration]) -> Timing {
        if samples.is_empty() {
            return Timing {
                mean: Duration::ZERO,
                p50: Duration::ZERO,
                p99: Duration::ZERO,
                max: Duration::ZERO,
            };
        }
        let mut sorted = samples.to_vec();
        sorted.sort();
        let rank = |p: f64| {
            let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[idx]
        };
        let total: Duration = sorted.iter().sum();
        Timing {
            mean: total / sorted.len() as u32,
            p50: rank(0.50),
            p99: rank(0.99),
            max: sorted[sorted.len() - 1],
        }
    }
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(self.mean),
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )
    }
}

/// Result of [`sandbox_setup_teardown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxBench {
    /// Cycles run.
    pub cycles: usize,
    /// netns create + veth + address + routes.
    pub setup: Timing,
    /// veth removal + address release + netns removal.
    pub teardown: Timing,
}

impl std::fmt::Display for SandboxBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "pod sandbox network, {} cycles", self.cycles)?;
        writeln!(f, "  setup    (netns + veth + IP): {}", self.setup)?;
        write!(f, "  teardown (veth + IP + netns): {}", self.teardown)
    }
}

/// Removes the scratch namespaces and directory on drop.
struct Scratch {
    dir: PathBuf,
    node: PathBuf,
    pod: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Netns::remove(&self.pod);
        let _ = Netns::remove(&self.node);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `cycles` pod sandbox network setups and teardowns and times them.
pub fn sandbox_setup_teardown(cycles: usize) -> Result<SandboxBench, BenchError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(BenchError::NotRoot);
    }
    if !(1..=MAX_CYCLES).contains(&cycles) {
        return Err(BenchError::BadCycles(cycles));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir =
        std::env::temp_dir().join(format!("flotilla-netbench-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir).map_err(BenchError::Setup)?;
    let scratch = Scratch {
        node: dir.join("node"),
        pod: dir.join("pod"),
        dir,
    };
    Netns::create(&scratch.node)?;
    Netns::enter(&scratch.node, || run_cycles(&scratch, cycles))?
}

fn run_cycles(scratch: &Scratch, cycles: usize) -> Result<SandboxBench, BenchError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BenchError::Setup)?;
    rt.block_on(async {
        let config = NodeNetConfig::new(
            // Lives only inside the private node namespace.
            "10.250.0.0/24"
                .parse()
                .map_err(|_| BenchError::Setup(std::io::Error::other("cidr")))?,
            scratch.dir.join("ipam"),
        );
        let net = NodeNetwork::new(config)?;
        net.ensure_bridge().await?;
        let mut setup = Vec::with_capacity(cycles);
        let mut teardown = Vec::with_capacity(cycles);
        for i in 0..cycles {
            let pod_id = format!("bench-{i}");
            let t0 = Instant::now();
            Netns::create(&scratch.pod)?;
            net.setup_pod(&pod_id, &scratch.pod, "eth0").await?;
            let t1 = Instant::now();
            net.teardown_pod(&pod_id, &scratch.pod).await?;
            Netns::remove(&scratch.pod)?;
            let t2 = Instant::now();
            setup.push(t1 - t0);
            teardown.push(t2 - t1);
        }
        Ok(SandboxBench {
            cycles,
            setup: Timing::from_samples(&setup),
            teardown: Timing::from_samples(&teardown),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_summary() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let t = Timing::from_samples(&samples);
        assert_eq!(t.mean, Duration::from_micros(50_500));
        assert_eq!(t.p50, Duration::from_millis(50));
        assert_eq!(t.p99, Duration::from_millis(99));
        assert_eq!(t.max, Duration::from_millis(100));
        assert_eq!(Timing::from_samples(&[]).max, Duration::ZERO);
        let one = Timing::from_samples(&[Duration::from_millis(3)]);
        assert_eq!(
            (one.p50, one.p99),
            (Duration::from_millis(3), Duration::from_millis(3))
        );
    }

    #[test]
    fn bad_cycle_counts() {
        if nix::unistd::geteuid().is_root() {
            assert!(matches!(
                sandbox_setup_teardown(0),
                Err(BenchError::BadCycles(0))
            ));
        } else {
            assert!(matches!(
                sandbox_setup_teardown(1),
                Err(BenchError::NotRoot)
            ));
        }
    }
}
