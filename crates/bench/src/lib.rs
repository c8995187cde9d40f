//! `flotilla bench`: one run that measures the control plane on this machine and
//! prints the figures next to the targets of the project.
//!
//! What it measures, in order:
//! 1. the disk's bare `fsync` and `fdatasync` rates (`store::bench`);
//! 2. durable puts/s of the embedded store (`store::bench::put_throughput`) and of a
//!    throwaway etcd (v3 gRPC, see [`etcd`]) at concurrency 1 and 64, same value size;
//! 3. a `flotilla server` child process (or an in-process server): idle memory;
//!    pod creates/s and latency at concurrency 1 and 64; single-pod GET latency;
//!    watch delivery delays with many watchers; full LISTs of 10k and 100k pods;
//!    memory once loaded. The server runs whole (controllers and scheduler too), but
//!    the pods name a scheduler that does not run ([`load::UNSCHEDULED`]), so they stay
//!    pending untouched and the figures are the API server's, not the cost of the
//!    scheduler's failures (a status patch and an event per pod with no nodes).
//!
//! `flotilla bench control-plane` (module [`control_plane`]) measures the
//! scheduler, the controllers and memory at scale with hollow nodes instead.
//!
//! Everything runs on 127.0.0.1, in one temporary directory (on the disk chosen
//! with `--data-dir`) that is removed afterwards; child processes are killed on
//! every exit path, including errors and Ctrl-C. Every loop is bounded in count
//! and in time.

pub mod client;
pub mod control_plane;
pub mod etcd;
pub mod load;
pub mod report;
pub mod server;
pub mod stats;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use http::{Method, StatusCode};

use crate::client::ApiClient;
use crate::report::{DiskFigures, MemoryFigures, PhaseCpu, PutFigures, Report};
use crate::server::{ServerMode, ServerUnderTest};

/// Errors of the benchmark's clients and processes.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("kubeconfig {path}: {reason}")]
    Kubeconfig { path: PathBuf, reason: String },
    #[error("refusing to send traffic to {0}: not a loopback address")]
    NotLoopback(String),
    #[error("{method} {path}: HTTP {status}: {body}")]
    Status {
        method: Method,
        path: String,
        status: StatusCode,
        body: String,
    },
    #[error("server under test: {0}")]
    Server(String),
    #[error("etcd: {0}")]
    Etcd(String),
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("HTTP: {0}")]
    Hyper(#[from] hyper::Error),
    #[error("HTTP request: {0}")]
    Request(#[from] http::Error),
    #[error("benchmark task: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// How much work each measurement does.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// Pod creates at concurrency 1.
    pub creates_c1: usize,
    /// Pod creates at `high_concurrency`.
    pub creates_high: usize,
    pub high_concurrency: usize,
    /// Single-pod GETs (concurrency 1).
    pub gets: usize,
    pub watchers: usize,
    /// Pods the watch writer creates…
    pub watch_events: usize,
    /// …at this rate (per second).
    pub watch_rate: f64,
    /// Pod counts to LIST at (the namespace is filled up to each in turn).
    pub list_sizes: Vec<usize>,
    pub list_samples: usize,
    /// Store puts at concurrency 1 (fewer on a disk too slow to do them in ~5 s)…
    pub store_puts_c1: usize,
    /// …and at `high_concurrency` (likewise bounded, assuming full batching).
    pub store_puts_high: usize,
    pub value_size: usize,
    /// How long each bare sync rate is probed.
    pub sync_probe: Duration,
    /// Idle time before memory is read.
    pub idle_wait: Duration,
    /// Time limit of each load phase (filling to the largest LIST size gets 3×).
    pub phase_limit: Duration,
}

impl Sizes {
    /// The full benchmark the issue asks for.
    pub fn full() -> Sizes {
        Sizes {
            creates_c1: 2_000,
            creates_high: 20_000,
            high_concurrency: 64,
            gets: 10_000,
            watchers: 100,
            watch_events: 1_000,
            watch_rate: 100.0,
            list_sizes: vec![10_000, 100_000],
            list_samples: 3,
            store_puts_c1: 5_000,
            store_puts_high: 50_000,
            value_size: 1024,
            sync_probe: Duration::from_secs(2),
            idle_wait: Duration::from_secs(5),
            phase_limit: Duration::from_secs(300),
        }
    }

    /// A smoke test of every measurement at small sizes (CI).
    pub fn quick() -> Sizes {
        Sizes {
            creates_c1: 200,
            creates_high: 2_000,
            gets: 1_000,
            watchers: 20,
            watch_events: 200,
            list_sizes: vec![10_000],
            store_puts_c1: 500,
            store_puts_high: 5_000,
            sync_probe: Duration::from_secs(1),
            phase_limit: Duration::from_secs(120),
            ..Sizes::full()
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Shown in the report ("full", "quick", …).
    pub profile: String,
    pub sizes: Sizes,
    pub server: ServerMode,
    /// The etcd to compare with; `None` skips it.
    pub etcd_bin: Option<PathBuf>,
    /// Where the temporary work directory goes (decides the disk measured).
    pub work_parent: Option<PathBuf>,
    /// Keep the work directory afterwards.
    pub keep: bool,
    /// Print progress lines to stderr.
    pub progress: bool,
}

/// The `flotilla bench` command line.
#[derive(clap::Args, Clone, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// Another suite instead of the API and store benchmarks.
    #[command(subcommand)]
    pub suite: Option<Suite>,
    /// Smaller sizes (2k creates, LIST of 10k only, 20 watchers): a smoke test.
    #[arg(long)]
    pub quick: bool,
    /// Parent of the temporary work directory (server data, stores, etcd): the
    /// disk measured. Default: the system temporary directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// etcd binary to compare the embedded store with; skipped if absent.
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd_bin: PathBuf,
    /// Print the report as JSON on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Run the API server inside this process instead of as a child
    /// `flotilla server` (no controllers, no memory figures).
    #[arg(long)]
    pub in_process: bool,
    /// The flotilla binary to start as the server. Default: this executable.
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Keep the work directory (data and logs) instead of removing it.
    #[arg(long)]
    pub keep: bool,
}

/// The other benchmark suites of `flotilla bench`.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum Suite {
    /// Scheduler throughput, Deployment rollout time and memory at scale, with
    /// hollow nodes (`flotilla sim`).
    ControlPlane(control_plane::ControlPlaneArgs),
}

/// Run `flotilla bench`: measure, print, clean up (also on Ctrl-C or SIGTERM).
pub async fn run_cli(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(Suite::ControlPlane(cp)) = args.suite {
        return control_plane::run_cli(cp).await;
    }
    let server = if args.in_process {
        ServerMode::InProcess
    } else {
        let bin = match args.server_bin {
            Some(b) => b,
            None => std::env::current_exe().context("locating the flotilla binary")?,
        };
        ServerMode::Child(bin)
    };
    let opts = Options {
        profile: if args.quick { "quick" } else { "full" }.into(),
        sizes: if args.quick {
            Sizes::quick()
        } else {
            Sizes::full()
        },
        server,
        etcd_bin: Some(args.etcd_bin),
        work_parent: args.data_dir,
        keep: args.keep,
        progress: true,
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // Dropping `run` on a signal kills its child processes and removes its
    // temporary directory.
    let report = tokio::select! {
        r = run(opts) => r?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
        _ = term.recv() => anyhow::bail!("terminated"),
    };
    if args.json {
        eprint!("{report}");
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

/// Run every measurement and return the figures.
pub async fn run(opts: Options) -> anyhow::Result<Report> {
    let started = Instant::now();
    let parent = opts.work_parent.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let work = tempfile::Builder::new()
        .prefix("flotilla-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a work directory in {}", parent.display()))?;
    let load_average = || {
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
    };
    let mut report = Report {
        load_average_before: load_average(),
        profile: opts.profile.clone(),
        server: match &opts.server {
            ServerMode::Child(bin) => format!("child process `{} server`", bin.display()),
            ServerMode::InProcess => "in-process apiserver::start".into(),
        },
        work_dir: work.path().display().to_string(),
        ..Default::default()
    };
    let result = measure(&opts, work.path(), &mut report).await;
    report.seconds = started.elapsed().as_secs_f64();
    report.load_average_after = load_average();
    if opts.keep {
        let kept = work.keep();
        eprintln!("[bench] kept {}", kept.display());
    }
    result.map(|()| report)
}

fn progress(opts: &Options, what: &str) {
    if opts.progress {
        eprintln!("[bench] {what}");
    }
}

async fn measure(opts: &Options, work: &Path, report: &mut Report) -> anyhow::Result<()> {
    let sizes = &opts.sizes;
    let high = sizes.high_concurrency;

    progress(opts, "disk: bare fsync and fdatasync rates");
    let disk_dir = work.join("disk");
    let probe = sizes.sync_probe;
    let disk = {
        let dir = disk_dir.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<DiskFigures> {
            Ok(DiskFigures {
                fsync_per_sec: store::bench::fsync_rate(&dir, probe)?,
                fdatasync_per_sec: store::bench::fdatasync_rate(&dir, probe)?,
            })
        })
        .await?
        .context("probing the disk")?
    };
    // Size the store runs so that a slow disk cannot make them take minutes.
    let budget = (disk.fdatasync_per_sec * 5.0) as usize;
    let store_runs = [
        (1, sizes.store_puts_c1.min(budget.max(50))),
        (high, sizes.store_puts_high.min((budget * high).max(500))),
    ];
    report.disk = Some(disk);

    for (concurrency, puts) in store_runs {
        progress(
            opts,
            &format!("store: {puts} embedded puts at concurrency {concurrency}"),
        );
        let dir = work.join(format!("embedded-c{concurrency}"));
        let r = store::bench::put_throughput(&dir, concurrency, puts, sizes.value_size)
            .await
            .context("embedded store benchmark")?;
        report.store.push(PutFigures {
            system: "embedded".into(),
            concurrency,
            puts: r.puts,
            value_size: r.value_size,
            puts_per_sec: r.puts_per_sec,
            latency: stats::Summary {
                samples: r.puts,
                p50_ms: r.p50.as_secs_f64() * 1e3,
                p99_ms: r.p99.as_secs_f64() * 1e3,
                max_ms: r.max.as_secs_f64() * 1e3,
            },
        });
        let _ = std::fs::remove_dir_all(&dir);
        match etcd_puts(opts, work, concurrency, puts).await {
            Ok(figures) => report.store.push(figures),
            Err(e) => {
                report.etcd_skipped = Some(e.to_string());
                progress(opts, &format!("etcd skipped: {e}"));
            }
        }
    }

    progress(opts, "server: starting");
    let server = ServerUnderTest::start(&opts.server, &work.join("server"))
        .await
        .context("starting the server under test")?;
    let result = measure_server(opts, &server, report).await;
    server.stop().await;
    result
}

async fn etcd_puts(
    opts: &Options,
    work: &Path,
    concurrency: usize,
    puts: usize,
) -> Result<PutFigures, BenchError> {
    let bin = opts
        .etcd_bin
        .as_ref()
        .ok_or_else(|| BenchError::Etcd("no etcd binary given".into()))?;
    if !bin.exists() {
        return Err(BenchError::Etcd(format!(
            "{} not found (scripts/install-tools.sh installs it)",
            bin.display()
        )));
    }
    progress(
        opts,
        &format!("store: {puts} etcd puts at concurrency {concurrency}"),
    );
    let dir = work.join(format!("etcd-c{concurrency}"));
    let mut etcd = etcd::Etcd::start(bin, &dir).await?;
    let deadline = Instant::now() + opts.sizes.phase_limit;
    let result = etcd::put_throughput(
        etcd.client,
        concurrency,
        puts,
        opts.sizes.value_size,
        deadline,
    )
    .await;
    etcd.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    let mut figures = result?;
    figures.system = format!("etcd {} (gRPC)", etcd.version);
    Ok(figures)
}

/// Measures the CPU both processes use during a phase.
struct CpuMeter {
    started: Instant,
    server: Option<Duration>,
    bench: Option<Duration>,
    machine: Option<Duration>,
}

impl CpuMeter {
    fn start(server: &ServerUnderTest) -> CpuMeter {
        CpuMeter {
            started: Instant::now(),
            server: server.cpu_time(),
            bench: server::own_cpu_time(),
            machine: server::machine_cpu_now(),
        }
    }

    fn finish(self, server: &ServerUnderTest, phase: String, ops: usize) -> PhaseCpu {
        let delta = |before: Option<Duration>, after: Option<Duration>| {
            Some(after?.saturating_sub(before?).as_secs_f64())
        };
        PhaseCpu {
            phase,
            seconds: self.started.elapsed().as_secs_f64(),
            server_cpu_secs: delta(self.server, server.cpu_time()),
            bench_cpu_secs: delta(self.bench, server::own_cpu_time()),
            machine_cpu_secs: delta(self.machine, server::machine_cpu_now()),
            ops,
        }
    }
}

async fn measure_server(
    opts: &Options,
    server: &ServerUnderTest,
    report: &mut Report,
) -> anyhow::Result<()> {
    let sizes = &opts.sizes;
    let high = sizes.high_concurrency;
    let limit = sizes.phase_limit;
    let client = ApiClient::from_kubeconfig(&server.kubeconfig)?;
    load::wait_ready(&client, Duration::from_secs(60)).await?;
    progress(
        opts,
        &format!("server: ready; idle for {:?}", sizes.idle_wait),
    );
    tokio::time::sleep(sizes.idle_wait).await;
    report.memory_idle = server.memory().map(|m| MemoryFigures {
        rss_bytes: m.rss,
        peak_bytes: m.peak,
        pods: 0,
    });

    load::create_namespace(&client).await?;
    let mut pods = 0;
    for (concurrency, total) in [(1, sizes.creates_c1), (high, sizes.creates_high)] {
        let prefix = format!("c{concurrency}");
        progress(
            opts,
            &format!("pods: {total} creates at concurrency {concurrency}"),
        );
        let meter = CpuMeter::start(server);
        let figures =
            load::create_pods(&client, &prefix, concurrency, total, Instant::now() + limit).await?;
        report.cpu.push(meter.finish(
            server,
            format!("pod create c={concurrency}"),
            figures.created,
        ));
        pods += figures.created;
        report.creates.push(figures);
    }

    progress(opts, &format!("pods: {} GETs", sizes.gets));
    let created_high = report.creates.last().map(|c| c.created).unwrap_or(0);
    let names: Vec<String> = (0..created_high.min(1000))
        .map(|i| format!("c{high}-{i:07}"))
        .collect();
    if !names.is_empty() {
        let meter = CpuMeter::start(server);
        let get = load::get_pods(&client, &names, sizes.gets, Instant::now() + limit).await?;
        report
            .cpu
            .push(meter.finish(server, "pod GET c=1".into(), get.latency.samples));
        report.get = Some(get);
    }

    progress(
        opts,
        &format!(
            "watch: {} watchers, {} events at {}/s",
            sizes.watchers, sizes.watch_events, sizes.watch_rate
        ),
    );
    let meter = CpuMeter::start(server);
    let watch = load::watch_latency(
        &client,
        sizes.watchers,
        sizes.watch_events,
        sizes.watch_rate,
        Instant::now() + limit,
    )
    .await?;
    report.cpu.push(meter.finish(
        server,
        format!("watch ({} watchers)", watch.watchers),
        watch.deliveries,
    ));
    pods += watch.events;
    report.watch = Some(watch);

    let largest = sizes.list_sizes.iter().copied().max().unwrap_or(0);
    for &target in &sizes.list_sizes {
        if target > pods {
            progress(
                opts,
                &format!("pods: filling to {target} at concurrency {high}"),
            );
            let fill_limit = if target == largest { limit * 3 } else { limit };
            let meter = CpuMeter::start(server);
            let fill = load::create_pods(
                &client,
                &format!("fill{target}"),
                high,
                target - pods,
                Instant::now() + fill_limit,
            )
            .await?;
            report.cpu.push(meter.finish(
                server,
                format!("pod create c={high} (fill to {})", report::count(target)),
                fill.created,
            ));
            pods += fill.created;
            report.fills.push(fill);
        }
        progress(
            opts,
            &format!("pods: {} LISTs of {pods}", sizes.list_samples),
        );
        let meter = CpuMeter::start(server);
        let list = load::list_pods(&client, pods, sizes.list_samples).await?;
        report.cpu.push(meter.finish(
            server,
            format!("pod LIST {}", report::count(pods)),
            list.latency.samples,
        ));
        report.lists.push(list);
    }

    tokio::time::sleep(sizes.idle_wait).await;
    report.memory_loaded = server.memory().map(|m| MemoryFigures {
        rss_bytes: m.rss,
        peak_bytes: m.peak,
        pods,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(argv: &[&str]) -> Result<BenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(argv.iter().copied())).map(|c| c.bench)
    }

    #[test]
    fn suites_on_the_command_line() {
        let api = parse(&["--quick", "--json"]).expect("api suite");
        assert!(api.quick && api.json && api.suite.is_none());
        let cp = parse(&["control-plane", "--quick", "--json", "--nodes", "300"]).expect("cp");
        assert!(!cp.quick && !cp.json);
        match cp.suite {
            Some(Suite::ControlPlane(a)) => {
                assert!(a.quick && a.json);
                assert_eq!(a.nodes, Some(300));
            }
            None => panic!("no suite parsed"),
        }
        // The API suite's flags do not mix with a suite.
        assert!(parse(&["--quick", "control-plane"]).is_err());
        assert!(parse(&["control-plane", "--etcd-bin", "/x"]).is_err());
    }
}
