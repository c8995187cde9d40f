//! `flotilla bench control-plane`: the control plane at scale, with hollow nodes.
//!
//! Two fresh `flotilla server` children (API server, controller manager and
//! scheduler in one process), each with a `flotilla sim` child running the
//! hollow nodes, on 127.0.0.1 in a temporary directory:
//!
//! 1. deployment: on `deploy_nodes` hollow nodes (pod start delay 0), a
//!    Deployment of `replicas` (the object `kubectl create deployment` sends) is
//!    timed from its create to `status.availableReplicas == replicas` (watch);
//! 2. scheduling throughput, shaped like upstream scheduler_perf's
//!    SchedulingBasic: on `nodes` hollow nodes with `placed` pods already bound
//!    (created with `spec.nodeName`, not timed), `pods` new pods are created with
//!    bounded concurrency; a pod watch records when each gets `spec.nodeName`.
//!    Reported: pods/s from the first create to the last bind, the steady rate
//!    (10th to 90th percentile of binds) and the create rate, so it is clear
//!    which side limited;
//! 3. memory: the namespace is filled to `memory_pods` pods bound directly to
//!    the nodes, the load is let settle, and VmRSS/VmHWM of the server and of
//!    the sim are read from `/proc`.
//!
//! CPU seconds of the server, the sim and the benchmark are recorded per phase.
//! Every wait is bounded in time; the children are killed on every exit path
//! (they are `kill_on_drop`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

use crate::BenchError;
use crate::client::{ApiClient, Conn};
use crate::load::{self, NAMESPACE};
use crate::report::{CreateFigures, count, mb};
use crate::server::{self, ServerUnderTest};
use crate::stats::rate;

/// Scheduled pods/s the issue asks for (5000 nodes, 1000 placed, 10,000 new).
pub const TARGET_SCHEDULED_PER_SEC: f64 = 2_700.0;
/// Upstream kube-scheduler's CI floor for the same workload (scheduler_perf
/// SchedulingBasic 5000 nodes), on a much larger machine.
pub const UPSTREAM_FLOOR_PER_SEC: f64 = 270.0;
/// Deployment of 1000 replicas available in less than this (seconds).
pub const TARGET_DEPLOYMENT_SECS: f64 = 10.0;
/// The Deployment size the time target applies to.
pub const TARGET_DEPLOYMENT_REPLICAS: usize = 1000;
/// The node count the throughput target applies to.
pub const TARGET_SCHEDULING_NODES: usize = 5000;

/// Hollow nodes are named `<NODE_PREFIX><i>`.
const NODE_PREFIX: &str = "hollow-";

/// `flotilla bench control-plane` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct ControlPlaneArgs {
    /// Small sizes (200 nodes, 100 placed + 1000 new pods; 100 replicas on 20
    /// nodes; memory at 2000 pods): a smoke test.
    #[arg(long)]
    pub quick: bool,
    /// Hollow nodes of the scheduling and memory phases.
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Pods bound before the scheduling measurement.
    #[arg(long)]
    pub placed: Option<usize>,
    /// New pods whose scheduling is measured.
    #[arg(long)]
    pub pods: Option<usize>,
    /// Concurrent creates of the new pods.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Hollow nodes of the deployment phase.
    #[arg(long)]
    pub deploy_nodes: Option<usize>,
    /// Replicas of the Deployment.
    #[arg(long)]
    pub replicas: Option<usize>,
    /// Pods in the namespace when memory is measured (0 skips the fill).
    #[arg(long)]
    pub memory_pods: Option<usize>,
    /// Time limit of each phase, in seconds.
    #[arg(long)]
    pub phase_limit: Option<u64>,
    /// Pass `--events` to the sim (kubelet-style Events for every started pod).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub sim_events: bool,
    /// Skip the deployment phase.
    #[arg(long)]
    pub skip_deployment: bool,
    /// Skip the scheduling and memory phases.
    #[arg(long)]
    pub skip_scheduling: bool,
    /// Parent of the temporary work directory. Default: the system temporary
    /// directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print the report as JSON on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// The flotilla binary to run as server and sim. Default: this executable.
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Keep the work directory (data and logs) instead of removing it.
    #[arg(long)]
    pub keep: bool,
}

/// How much work each phase does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sizes {
    pub nodes: usize,
    pub placed: usize,
    pub pods: usize,
    pub concurrency: usize,
    pub deploy_nodes: usize,
    pub replicas: usize,
    pub memory_pods: usize,
    pub phase_limit: Duration,
    /// Longest wait for the load to settle before memory is read.
    pub settle_limit: Duration,
}

impl Sizes {
    /// The issue's figures.
    pub fn full() -> Sizes {
        Sizes {
            nodes: 5000,
            placed: 1000,
            pods: 10_000,
            concurrency: 64,
            deploy_nodes: 100,
            replicas: 1000,
            memory_pods: 50_000,
            phase_limit: Duration::from_secs(600),
            settle_limit: Duration::from_secs(180),
        }
    }

    /// A smoke test.
    pub fn quick() -> Sizes {
        Sizes {
            nodes: 200,
            placed: 100,
            pods: 1000,
            deploy_nodes: 20,
            replicas: 100,
            memory_pods: 2000,
            phase_limit: Duration::from_secs(120),
            settle_limit: Duration::from_secs(60),
            ..Sizes::full()
        }
    }

    /// The sizes `args` ask for.
    pub fn from_args(args: &ControlPlaneArgs) -> Sizes {
        let base = if args.quick {
            Sizes::quick()
        } else {
            Sizes::full()
        };
        Sizes {
            nodes: args.nodes.unwrap_or(base.nodes).max(1),
            placed: args.placed.unwrap_or(base.placed),
            pods: args.pods.unwrap_or(base.pods).max(1),
            concurrency: args.concurrency.unwrap_or(base.concurrency).max(1),
            deploy_nodes: args.deploy_nodes.unwrap_or(base.deploy_nodes).max(1),
            replicas: args.replicas.unwrap_or(base.replicas).max(1),
            memory_pods: args.memory_pods.unwrap_or(base.memory_pods),
            phase_limit: args
                .phase_limit
                .map_or(base.phase_limit, Duration::from_secs),
            settle_limit: base.settle_limit,
        }
    }
}

/// The scheduling throughput phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SchedulingFigures {
    pub nodes: usize,
    pub placed: usize,
    pub pods: usize,
    /// New pods seen bound before the time limit.
    pub bound: usize,
    /// Seconds from the first create to the last pod bound.
    pub seconds: f64,
    /// `bound / seconds`.
    pub pods_per_sec: f64,
    /// Binds/s between the 10th and the 90th percentile bind.
    pub steady_pods_per_sec: f64,
    /// Seconds from the first create to the first bind.
    pub first_bind_secs: f64,
    /// The creates of the new pods (their rate bounds the scheduling rate).
    pub create: Option<CreateFigures>,
    /// Seconds for the hollow nodes to register and become Ready.
    pub nodes_ready_secs: f64,
}

/// The deployment phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DeploymentFigures {
    pub nodes: usize,
    pub replicas: usize,
    /// `status.availableReplicas` last seen.
    pub available: usize,
    /// Seconds from the create to half and to all replicas available (None if
    /// not reached within the time limit).
    pub half_available_secs: Option<f64>,
    pub all_available_secs: Option<f64>,
}

/// Resident memory of one process at one load point.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessMemory {
    pub process: String,
    pub nodes: usize,
    pub pods: usize,
    pub rss_bytes: u64,
    pub peak_bytes: u64,
}

/// CPU used during one phase.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseCpu {
    pub phase: String,
    pub seconds: f64,
    pub server_cpu_secs: Option<f64>,
    pub sim_cpu_secs: Option<f64>,
    pub bench_cpu_secs: Option<f64>,
    pub machine_cpu_secs: Option<f64>,
}

/// Everything one `flotilla bench control-plane` run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub profile: String,
    pub server: String,
    pub work_dir: String,
    pub seconds: f64,
    pub sim_events: bool,
    pub load_average_before: Option<String>,
    pub load_average_after: Option<String>,
    pub deployment: Option<DeploymentFigures>,
    pub scheduling: Option<SchedulingFigures>,
    pub memory: Vec<ProcessMemory>,
    pub cpu: Vec<PhaseCpu>,
}

/// Binds per second in the steady part of a run: between the binds at the 10th
/// and the 90th percentile of `times` (each a bind's offset from the start; any
/// order). Ramp-up and the tail (stragglers, backoff) are left out. Zero with
/// fewer than 10 binds or no time between those two.
pub fn steady_rate(times: &mut [Duration]) -> f64 {
    if times.len() < 10 {
        return 0.0;
    }
    times.sort_unstable();
    let lo = times.len() / 10;
    let hi = times.len() - 1 - times.len() / 10;
    rate(hi - lo, times[hi].saturating_sub(times[lo]))
}

/// Overall rate: `bound` binds from the start to the last of `times`.
pub fn overall_rate(times: &[Duration]) -> f64 {
    times
        .iter()
        .max()
        .map_or(0.0, |last| rate(times.len(), *last))
}

/// A pod bound to `node`: the benchmark's realistic pod with `spec.nodeName`.
pub fn bound_pod_json(name: &str, node: &str) -> Bytes {
    let pod = load::pod_json(name);
    let text = String::from_utf8_lossy(&pod);
    Bytes::from(text.replacen(
        r#""spec":{"#,
        &format!(r#""spec":{{"nodeName":"{node}","#),
        1,
    ))
}

/// The Deployment `kubectl create deployment NAME --image=IMAGE --replicas=N`
/// sends (labels `app=NAME`, one container named after the image).
pub fn deployment_json(name: &str, image: &str, replicas: usize) -> Bytes {
    let container = image
        .rsplit('/')
        .next()
        .and_then(|s| s.split([':', '@']).next())
        .unwrap_or(name);
    Bytes::from(
        serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": name}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": container, "image": image, "resources": {}}]}
                },
                "strategy": {}
            },
            "status": {}
        })
        .to_string(),
    )
}

/// A child process (`flotilla sim`) whose memory and CPU are measured; killed
/// when dropped.
struct SimChild {
    child: Child,
    log: PathBuf,
}

impl SimChild {
    async fn start(
        bin: &Path,
        kubeconfig: &Path,
        nodes: usize,
        events: bool,
        log: PathBuf,
    ) -> Result<SimChild, BenchError> {
        let file = std::fs::File::create(&log)?;
        let child = Command::new(bin)
            .arg("sim")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--nodes", &nodes.to_string()])
            .args(["--name-prefix", NODE_PREFIX])
            .args(["--startup-delay", "0s"])
            .arg(format!("--events={events}"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BenchError::Server(format!("cannot run {} sim: {e}", bin.display())))?;
        Ok(SimChild { child, log })
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    fn memory(&self) -> Option<server::Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        Some(server::Memory {
            rss: server::proc_status_bytes(&status, "VmRSS")?,
            peak: server::proc_status_bytes(&status, "VmHWM")?,
        })
    }

    fn cpu_time(&self) -> Option<Duration> {
        server::process_cpu_time(
            &std::fs::read_to_string(format!("/proc/{}/stat", self.pid()?)).ok()?,
        )
    }

    /// Fails if the sim has exited (with the tail of its log).
    fn check_alive(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => {
                let tail = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: String = tail.lines().rev().take(10).collect::<Vec<_>>().join(" | ");
                Err(BenchError::Server(format!(
                    "sim exited ({status}); log: {tail}"
                )))
            }
        }
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

struct CpuMeter {
    started: Instant,
    server: Option<Duration>,
    sim: Option<Duration>,
    bench: Option<Duration>,
    machine: Option<Duration>,
}

impl CpuMeter {
    fn start(server: &ServerUnderTest, sim: &SimChild) -> CpuMeter {
        CpuMeter {
            started: Instant::now(),
            server: server.cpu_time(),
            sim: sim.cpu_time(),
            bench: server::own_cpu_time(),
            machine: server::machine_cpu_now(),
        }
    }

    fn finish(&self, server: &ServerUnderTest, sim: &SimChild, phase: &str) -> PhaseCpu {
        let delta = |before: Option<Duration>, after: Option<Duration>| {
            Some(after?.saturating_sub(before?).as_secs_f64())
        };
        PhaseCpu {
            phase: phase.to_string(),
            seconds: self.started.elapsed().as_secs_f64(),
            server_cpu_secs: delta(self.server, server.cpu_time()),
            sim_cpu_secs: delta(self.sim, sim.cpu_time()),
            bench_cpu_secs: delta(self.bench, server::own_cpu_time()),
            machine_cpu_secs: delta(self.machine, server::machine_cpu_now()),
        }
    }
}

fn progress(what: &str) {
    eprintln!("[bench control-plane] {what}");
}

fn load_average() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// Run `flotilla bench control-plane`: measure, print, clean up (also on Ctrl-C
/// or SIGTERM).
pub async fn run_cli(args: ControlPlaneArgs) -> anyhow::Result<()> {
    let bin = match &args.server_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("locating the flotilla binary")?,
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let report = tokio::select! {
        r = run(&args, &bin) => r?,
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

/// Run the phases `args` select with `bin` as server and sim.
pub async fn run(args: &ControlPlaneArgs, bin: &Path) -> anyhow::Result<Report> {
    let started = Instant::now();
    let sizes = Sizes::from_args(args);
    let parent = args.data_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let work = tempfile::Builder::new()
        .prefix("flotilla-bench-cp-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a work directory in {}", parent.display()))?;
    let mut report = Report {
        profile: if args.quick { "quick" } else { "full" }.into(),
        server: format!("child processes `{} server` and `… sim`", bin.display()),
        work_dir: work.path().display().to_string(),
        sim_events: args.sim_events,
        load_average_before: load_average(),
        ..Default::default()
    };
    let mut result = Ok(());
    if !args.skip_deployment {
        result = deployment_phase(args, bin, &sizes, &work.path().join("deploy"), &mut report)
            .await
            .context("deployment phase");
    }
    if result.is_ok() && !args.skip_scheduling {
        result = scheduling_phases(args, bin, &sizes, &work.path().join("sched"), &mut report)
            .await
            .context("scheduling phase");
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.load_average_after = load_average();
    if args.keep {
        let kept = work.keep();
        eprintln!("[bench control-plane] kept {}", kept.display());
    }
    if let Err(e) = result {
        // Show what was measured before the failure.
        eprint!("{report}");
        return Err(e);
    }
    Ok(report)
}

/// A server and a sim, started together; both are killed when dropped.
struct Cluster {
    server: ServerUnderTest,
    sim: SimChild,
    client: ApiClient,
    nodes_ready: Duration,
}

impl Cluster {
    async fn start(
        bin: &Path,
        dir: &Path,
        nodes: usize,
        events: bool,
        limit: Duration,
    ) -> anyhow::Result<Cluster> {
        progress("starting flotilla server");
        // A pod network with a /24 for each of thousands of nodes (the default
        // /16 has 256), so node IPAM never runs out.
        let server =
            ServerUnderTest::start_child_with(bin, dir, &["--cluster-cidr", "10.0.0.0/10"])
                .await
                .context("starting the server")?;
        let client = ApiClient::from_kubeconfig(&server.kubeconfig)?;
        load::wait_ready(&client, Duration::from_secs(60)).await?;
        load::create_namespace(&client).await?;
        progress(&format!("starting flotilla sim with {nodes} hollow nodes"));
        let t = Instant::now();
        let mut sim = SimChild::start(
            bin,
            &server.kubeconfig,
            nodes,
            events,
            dir.with_extension("sim.log"),
        )
        .await?;
        wait_nodes_ready(&client, &mut sim, nodes, Instant::now() + limit).await?;
        let nodes_ready = t.elapsed();
        progress(&format!(
            "{nodes} nodes Ready after {:.1} s",
            nodes_ready.as_secs_f64()
        ));
        Ok(Cluster {
            server,
            sim,
            client,
            nodes_ready,
        })
    }

    async fn stop(self) {
        self.sim.stop().await;
        self.server.stop().await;
    }
}

#[derive(Deserialize)]
struct NodeList {
    items: Vec<NodeItem>,
}

#[derive(Deserialize)]
struct NodeItem {
    metadata: Meta,
    #[serde(default)]
    status: NodeStatus,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize, Default)]
struct NodeStatus {
    #[serde(default)]
    conditions: Vec<Condition>,
}

#[derive(Deserialize)]
struct Condition {
    #[serde(rename = "type")]
    kind: String,
    status: String,
}

/// Ready hollow nodes in a NodeList.
fn ready_nodes(list: &NodeList) -> usize {
    list.items
        .iter()
        .filter(|n| n.metadata.name.starts_with(NODE_PREFIX))
        .filter(|n| {
            n.status
                .conditions
                .iter()
                .any(|c| c.kind == "Ready" && c.status == "True")
        })
        .count()
}

async fn wait_nodes_ready(
    client: &ApiClient,
    sim: &mut SimChild,
    want: usize,
    deadline: Instant,
) -> anyhow::Result<()> {
    let mut conn = client.connect().await?;
    loop {
        sim.check_alive()?;
        let (_, body) = conn
            .call(Method::GET, "/api/v1/nodes", None, &[StatusCode::OK])
            .await?;
        let list: NodeList = serde_json::from_slice(&body).context("node list")?;
        let ready = ready_nodes(&list);
        if ready >= want {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("only {ready}/{want} hollow nodes Ready within the time limit");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The resourceVersion to start a watch of `path` from.
async fn current_rv(conn: &mut Conn, path: &str) -> anyhow::Result<String> {
    #[derive(Deserialize)]
    struct List {
        metadata: ListMeta,
    }
    #[derive(Deserialize)]
    struct ListMeta {
        #[serde(rename = "resourceVersion")]
        resource_version: String,
    }
    let (_, body) = conn
        .call(
            Method::GET,
            &format!("{path}?limit=1"),
            None,
            &[StatusCode::OK],
        )
        .await?;
    Ok(serde_json::from_slice::<List>(&body)
        .context("list metadata")?
        .metadata
        .resource_version)
}

/// Follow a watch (`path` with query) line by line, handing each event line and
/// its arrival time to `on_event` until it returns `true`; fails at `deadline`,
/// on an ERROR event or when the stream ends.
async fn follow_watch<F>(
    mut conn: Conn,
    path: String,
    deadline: Instant,
    mut on_event: F,
) -> anyhow::Result<()>
where
    F: FnMut(&[u8], Instant) -> anyhow::Result<bool>,
{
    let resp = conn.send(Method::GET, &path, None).await?;
    if resp.status() != StatusCode::OK {
        anyhow::bail!("watch {path}: HTTP {}", resp.status());
    }
    let mut body = resp.into_body();
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let frame = match tokio::time::timeout_at(deadline.into(), body.frame()).await {
            Err(_) => anyhow::bail!("time limit reached"),
            Ok(None) => anyhow::bail!("watch {path} ended"),
            Ok(Some(f)) => f?,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let now = Instant::now();
        pending.extend_from_slice(&data);
        let mut start = 0;
        while let Some(nl) = pending[start..].iter().position(|&b| b == b'\n') {
            let line = &pending[start..start + nl];
            start += nl + 1;
            if line.starts_with(br#"{"type":"ERROR""#) {
                anyhow::bail!("watch error: {}", String::from_utf8_lossy(line));
            }
            if on_event(line, now)? {
                return Ok(());
            }
        }
        pending.drain(..start);
    }
}

#[derive(Deserialize)]
struct PodEvent<'a> {
    #[serde(borrow)]
    object: PodObject<'a>,
}

#[derive(Deserialize)]
struct PodObject<'a> {
    #[serde(borrow)]
    metadata: PodMeta<'a>,
    #[serde(borrow, default)]
    spec: Option<PodSpec<'a>>,
}

#[derive(Deserialize)]
struct PodMeta<'a> {
    #[serde(borrow, default)]
    name: &'a str,
}

#[derive(Deserialize)]
struct PodSpec<'a> {
    #[serde(rename = "nodeName", borrow, default)]
    node_name: Option<&'a str>,
}

/// `(name, bound)` of a pod watch event line; `None` for other lines (bookmarks).
fn pod_binding(line: &[u8]) -> Option<(&str, bool)> {
    let ev: PodEvent = serde_json::from_slice(line).ok()?;
    let bound = ev
        .object
        .spec
        .and_then(|s| s.node_name)
        .is_some_and(|n| !n.is_empty());
    Some((ev.object.metadata.name, bound))
}

async fn deployment_phase(
    args: &ControlPlaneArgs,
    bin: &Path,
    sizes: &Sizes,
    dir: &Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    let cluster = Cluster::start(
        bin,
        dir,
        sizes.deploy_nodes,
        args.sim_events,
        sizes.phase_limit,
    )
    .await?;
    let result = deployment(&cluster, sizes, report).await;
    cluster.stop().await;
    result
}

async fn deployment(cluster: &Cluster, sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    const NAME: &str = "web";
    let replicas = sizes.replicas;
    let path = format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments");
    let mut conn = cluster.client.connect().await?;
    let rv = current_rv(&mut conn, &path).await?;
    let watch_path = format!(
        "{path}?watch=1&resourceVersion={rv}&fieldSelector=metadata.name%3D{NAME}&timeoutSeconds={}",
        sizes.phase_limit.as_secs() + 60
    );
    let watch_conn = cluster.client.connect().await?;
    progress(&format!(
        "deployment: {replicas} replicas on {} hollow nodes",
        sizes.deploy_nodes
    ));
    let meter = CpuMeter::start(&cluster.server, &cluster.sim);
    let start = Instant::now();
    let deadline = start + sizes.phase_limit;
    let figures = std::sync::Arc::new(std::sync::Mutex::new(DeploymentFigures {
        nodes: sizes.deploy_nodes,
        replicas,
        ..Default::default()
    }));
    let seen = figures.clone();
    let watcher = tokio::spawn(follow_watch(
        watch_conn,
        watch_path,
        deadline,
        move |line, at| {
            #[derive(Deserialize)]
            struct Ev {
                object: Obj,
            }
            #[derive(Deserialize)]
            struct Obj {
                #[serde(default)]
                status: St,
            }
            #[derive(Deserialize, Default)]
            struct St {
                #[serde(rename = "availableReplicas", default)]
                available: usize,
            }
            let Ok(ev) = serde_json::from_slice::<Ev>(line) else {
                return Ok(false);
            };
            let secs = at.duration_since(start).as_secs_f64();
            let mut f = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            f.available = ev.object.status.available;
            if f.available * 2 >= replicas && f.half_available_secs.is_none() {
                f.half_available_secs = Some(secs);
            }
            if f.available >= replicas {
                f.all_available_secs = Some(secs);
                return Ok(true);
            }
            Ok(false)
        },
    ));
    let created = conn
        .call(
            Method::POST,
            &path,
            Some(deployment_json(
                NAME,
                "registry.k8s.io/pause:3.10",
                replicas,
            )),
            &[StatusCode::CREATED],
        )
        .await;
    if let Err(e) = created {
        watcher.abort();
        return Err(e.into());
    }
    let watched = watcher.await?;
    let mut cpu = meter.finish(&cluster.server, &cluster.sim, "");
    let figures = figures
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    cpu.phase = format!(
        "deployment {} on {} nodes",
        count(replicas),
        sizes.deploy_nodes
    );
    report.cpu.push(cpu);
    progress(&format!(
        "deployment: {}/{} available{}",
        figures.available,
        replicas,
        figures
            .all_available_secs
            .map_or(String::new(), |s| format!(" after {s:.2} s"))
    ));
    report.deployment = Some(figures);
    if let Err(e) = watched {
        progress(&format!("deployment watch: {e:#}"));
    }
    Ok(())
}

async fn scheduling_phases(
    args: &ControlPlaneArgs,
    bin: &Path,
    sizes: &Sizes,
    dir: &Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    let cluster = Cluster::start(bin, dir, sizes.nodes, args.sim_events, sizes.phase_limit).await?;
    let result = scheduling(&cluster, sizes, report).await;
    let result = match result {
        Ok(()) => memory(&cluster, sizes, report).await,
        Err(e) => Err(e),
    };
    cluster.stop().await;
    result
}

async fn scheduling(cluster: &Cluster, sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    let client = &cluster.client;
    let nodes = sizes.nodes;
    let mut figures = SchedulingFigures {
        nodes,
        placed: sizes.placed,
        pods: sizes.pods,
        nodes_ready_secs: cluster.nodes_ready.as_secs_f64(),
        ..Default::default()
    };
    if sizes.placed > 0 {
        progress(&format!("placing {} pods directly", sizes.placed));
        let meter = CpuMeter::start(&cluster.server, &cluster.sim);
        let (placed, _) = load::create_objects(
            &load::pods_path(),
            client,
            sizes.concurrency,
            sizes.placed,
            Instant::now() + sizes.phase_limit,
            move |i| {
                bound_pod_json(
                    &format!("placed-{i:07}"),
                    &format!("{NODE_PREFIX}{}", i % nodes),
                )
            },
        )
        .await?;
        report.cpu.push(meter.finish(
            &cluster.server,
            &cluster.sim,
            &format!("place {} pods (nodeName)", count(sizes.placed)),
        ));
        if placed.created < sizes.placed {
            anyhow::bail!(
                "placed only {}/{} pods: {}",
                placed.created,
                sizes.placed,
                placed.first_error.unwrap_or_default()
            );
        }
    }

    const PREFIX: &str = "sched";
    let path = load::pods_path();
    let mut conn = client.connect().await?;
    let rv = current_rv(&mut conn, &path).await?;
    let watch_path = format!(
        "{path}?watch=1&resourceVersion={rv}&timeoutSeconds={}",
        sizes.phase_limit.as_secs() + 60
    );
    let watch_conn = client.connect().await?;
    let want = sizes.pods;
    let (tx, rx) = tokio::sync::oneshot::channel::<Vec<Option<Instant>>>();
    let deadline = Instant::now() + sizes.phase_limit;
    let watcher = tokio::spawn(async move {
        let mut seen: Vec<Option<Instant>> = vec![None; want];
        let mut bound = 0;
        let result = follow_watch(watch_conn, watch_path, deadline, |line, at| {
            if let Some((name, true)) = pod_binding(line)
                && let Some(i) = load::index_of(name, PREFIX)
                && i < want
                && seen[i].is_none()
            {
                seen[i] = Some(at);
                bound += 1;
            }
            Ok(bound >= want)
        })
        .await;
        let _ = tx.send(seen);
        result
    });

    progress(&format!(
        "scheduling: {want} new pods at concurrency {} on {nodes} nodes",
        sizes.concurrency
    ));
    let meter = CpuMeter::start(&cluster.server, &cluster.sim);
    let (create, first_create) =
        load::create_objects(&path, client, sizes.concurrency, want, deadline, move |i| {
            load::pod_json(&format!("{PREFIX}-{i:07}"))
        })
        .await?;
    progress(&format!(
        "scheduling: {} created in {:.2} s ({:.0}/s); waiting for binds",
        create.created, create.seconds, create.per_sec
    ));
    let watched = watcher.await?;
    let mut cpu = meter.finish(&cluster.server, &cluster.sim, "");
    cpu.phase = format!("schedule {} pods on {} nodes", count(want), count(nodes));
    report.cpu.push(cpu);
    let seen = rx.await.unwrap_or_default();
    let mut times: Vec<Duration> = seen
        .iter()
        .flatten()
        .map(|t| t.saturating_duration_since(first_create))
        .collect();
    figures.bound = times.len();
    figures.seconds = times.iter().max().map_or(0.0, Duration::as_secs_f64);
    figures.first_bind_secs = times.iter().min().map_or(0.0, Duration::as_secs_f64);
    figures.pods_per_sec = overall_rate(&times);
    figures.steady_pods_per_sec = steady_rate(&mut times);
    figures.create = Some(create);
    progress(&format!(
        "scheduling: {}/{want} bound in {:.2} s: {:.0} pods/s (steady {:.0}/s)",
        figures.bound, figures.seconds, figures.pods_per_sec, figures.steady_pods_per_sec
    ));
    report.scheduling = Some(figures);
    if let Err(e) = watched {
        progress(&format!("scheduling watch: {e:#}"));
    }
    Ok(())
}

/// Fill to `memory_pods` pods bound directly, let the load settle, read memory.
async fn memory(cluster: &Cluster, sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    let nodes = sizes.nodes;
    let mut pods = sizes.placed + report.scheduling.as_ref().map_or(0, |s| s.bound);
    let read = |pods: usize, report: &mut Report| {
        for (process, m) in [
            ("server", cluster.server.memory()),
            ("sim", cluster.sim.memory()),
        ] {
            if let Some(m) = m {
                report.memory.push(ProcessMemory {
                    process: process.into(),
                    nodes,
                    pods,
                    rss_bytes: m.rss,
                    peak_bytes: m.peak,
                });
            }
        }
    };
    settle(cluster, sizes.settle_limit).await;
    read(pods, report);
    if sizes.memory_pods > pods {
        let fill = sizes.memory_pods - pods;
        progress(&format!("memory: filling with {fill} pods bound directly"));
        let meter = CpuMeter::start(&cluster.server, &cluster.sim);
        let (created, _) = load::create_objects(
            &load::pods_path(),
            &cluster.client,
            sizes.concurrency,
            fill,
            Instant::now() + sizes.phase_limit,
            move |i| {
                bound_pod_json(
                    &format!("fill-{i:07}"),
                    &format!("{NODE_PREFIX}{}", i % nodes),
                )
            },
        )
        .await?;
        pods += created.created;
        progress(&format!(
            "memory: {} created at {:.0}/s; letting the sim catch up",
            created.created, created.per_sec
        ));
        let settled = settle(cluster, sizes.settle_limit).await;
        let mut cpu = meter.finish(&cluster.server, &cluster.sim, "");
        cpu.phase = format!(
            "fill to {} pods (nodeName) + settle{}",
            count(pods),
            if settled { "" } else { " (did not settle)" }
        );
        report.cpu.push(cpu);
        read(pods, report);
    }
    Ok(())
}

/// Wait until the server and the sim use less than 10% of a core over 2 s (or
/// `limit`). True when they settled.
async fn settle(cluster: &Cluster, limit: Duration) -> bool {
    const WINDOW: Duration = Duration::from_secs(2);
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let meter = CpuMeter::start(&cluster.server, &cluster.sim);
        tokio::time::sleep(WINDOW).await;
        let cpu = meter.finish(&cluster.server, &cluster.sim, "settle");
        let busy = cpu.server_cpu_secs.unwrap_or(0.0) + cpu.sim_cpu_secs.unwrap_or(0.0);
        if busy < 0.1 * WINDOW.as_secs_f64() {
            return true;
        }
    }
    false
}

/// One line of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub what: String,
    pub result: String,
    pub target: String,
    pub verdict: Option<bool>,
}

impl Report {
    /// The table's rows, targets checked (only at the sizes they apply to).
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let mut row = |what: String, result: String, target: String, verdict: Option<bool>| {
            rows.push(Row {
                what,
                result,
                target,
                verdict,
            })
        };
        if let Some(d) = &self.deployment {
            let at_target = d.replicas == TARGET_DEPLOYMENT_REPLICAS;
            let result = match d.all_available_secs {
                Some(s) => format!("{s:.2} s"),
                None => format!("NOT REACHED ({}/{} available)", d.available, d.replicas),
            };
            let half = d
                .half_available_secs
                .map_or(String::new(), |s| format!("  (half at {s:.2} s)"));
            row(
                format!(
                    "deployment {} replicas available, {} nodes",
                    count(d.replicas),
                    d.nodes
                ),
                format!("{result}{half}"),
                if at_target {
                    format!("< {TARGET_DEPLOYMENT_SECS:.0} s")
                } else {
                    String::new()
                },
                at_target.then(|| {
                    d.all_available_secs
                        .is_some_and(|s| s < TARGET_DEPLOYMENT_SECS)
                }),
            );
        }
        if let Some(s) = &self.scheduling {
            let at_target = s.nodes == TARGET_SCHEDULING_NODES;
            let name = format!(
                "scheduling {} nodes, {} placed + {} new",
                count(s.nodes),
                count(s.placed),
                count(s.pods)
            );
            let missing = if s.bound < s.pods {
                format!("  ONLY {}/{} BOUND", s.bound, s.pods)
            } else {
                String::new()
            };
            row(
                format!("{name}: overall"),
                format!("{:.0} pods/s ({:.2} s){missing}", s.pods_per_sec, s.seconds),
                if at_target {
                    format!("≥ {TARGET_SCHEDULED_PER_SEC:.0} pods/s")
                } else {
                    String::new()
                },
                at_target
                    .then_some(s.bound == s.pods && s.pods_per_sec >= TARGET_SCHEDULED_PER_SEC),
            );
            row(
                format!("{name}: steady (p10–p90)"),
                format!(
                    "{:.0} pods/s  (first bind after {:.2} s)",
                    s.steady_pods_per_sec, s.first_bind_secs
                ),
                String::new(),
                None,
            );
            row(
                format!("{name}: vs upstream floor"),
                format!("{:.1}x", s.pods_per_sec / UPSTREAM_FLOOR_PER_SEC),
                format!("floor {UPSTREAM_FLOOR_PER_SEC:.0} pods/s"),
                at_target.then_some(s.pods_per_sec >= UPSTREAM_FLOOR_PER_SEC),
            );
            if let Some(c) = &s.create {
                row(
                    format!("{name}: creates c={}", c.concurrency),
                    format!(
                        "{:.0} /s ({:.2} s)  p50 {:.1} ms p99 {:.1} ms{}",
                        c.per_sec,
                        c.seconds,
                        c.latency.p50_ms,
                        c.latency.p99_ms,
                        if c.errors > 0 {
                            format!("  {} ERRORS", c.errors)
                        } else {
                            String::new()
                        }
                    ),
                    String::new(),
                    None,
                );
            }
            row(
                format!("{} hollow nodes Ready", count(s.nodes)),
                format!("{:.1} s", s.nodes_ready_secs),
                String::new(),
                None,
            );
        }
        for m in &self.memory {
            row(
                format!(
                    "{} RSS, {} nodes + {} pods",
                    m.process,
                    count(m.nodes),
                    count(m.pods)
                ),
                format!("{}  (peak {})", mb(m.rss_bytes), mb(m.peak_bytes)),
                String::new(),
                None,
            );
        }
        rows
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "flotilla bench control-plane ({}): {}; sim events {}; work dir {}; {:.0} s; load average {} before, {} after",
            self.profile,
            self.server,
            if self.sim_events { "on" } else { "off" },
            self.work_dir,
            self.seconds,
            self.load_average_before.as_deref().unwrap_or("?"),
            self.load_average_after.as_deref().unwrap_or("?"),
        )?;
        let rows = self.rows();
        let width = |pick: fn(&Row) -> &str, min: usize| {
            rows.iter()
                .map(|r| pick(r).chars().count())
                .max()
                .unwrap_or(0)
                .max(min)
        };
        let (w0, w1, w2) = (
            width(|r| r.what.as_str(), 11),
            width(|r| r.result.as_str(), 6),
            width(|r| r.target.as_str(), 6),
        );
        writeln!(
            f,
            "{:w0$}  {:w1$}  {:w2$}  verdict",
            "measurement", "result", "target"
        )?;
        for r in &rows {
            let verdict = match r.verdict {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "",
            };
            writeln!(
                f,
                "{:w0$}  {:w1$}  {:w2$}  {verdict}",
                r.what, r.result, r.target
            )?;
        }
        if !self.cpu.is_empty() {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            writeln!(f, "CPU seconds per phase ({cores} cores shared by all):")?;
            let secs = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
            for c in &self.cpu {
                let others = match (c.machine_cpu_secs, c.bench_cpu_secs) {
                    (Some(m), Some(b)) => Some(
                        (m - b - c.server_cpu_secs.unwrap_or(0.0) - c.sim_cpu_secs.unwrap_or(0.0))
                            .max(0.0),
                    ),
                    _ => None,
                };
                writeln!(
                    f,
                    "  {:40} {:>7.1} s wall  server {:>6}  sim {:>6}  bench {:>6}  other processes {:>6}",
                    c.phase,
                    c.seconds,
                    secs(c.server_cpu_secs),
                    secs(c.sim_cpu_secs),
                    secs(c.bench_cpu_secs),
                    secs(others),
                )?;
            }
        }
        if let Some(e) = self
            .scheduling
            .as_ref()
            .and_then(|s| s.create.as_ref())
            .and_then(|c| c.first_error.as_ref())
        {
            writeln!(f, "first create error: {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn steady_rate_leaves_out_ramp_and_tail() {
        // 100 binds: 1 per ms from 1 s on, except a slow start and straggling end.
        let mut times: Vec<u64> = (0..100).map(|i| 1000 + i).collect();
        times[0] = 0;
        times[99] = 60_000;
        let mut t = ms(&times);
        t.reverse();
        // p10 = index 10 (1010 ms), p90 = index 89 (1089 ms): 79 binds in 79 ms.
        assert!((steady_rate(&mut t) - 1000.0).abs() < 1e-6);
        // Overall: 100 binds in 60 s.
        assert!((overall_rate(&t) - 100.0 / 60.0).abs() < 1e-9);
        assert_eq!(steady_rate(&mut ms(&[1, 2, 3])), 0.0);
        assert_eq!(steady_rate(&mut ms(&[5; 20])), 0.0);
        assert_eq!(overall_rate(&[]), 0.0);
    }

    #[test]
    fn bound_pod_and_deployment_bodies() {
        let pod: serde_json::Value =
            serde_json::from_slice(&bound_pod_json("p-1", "hollow-7")).expect("pod JSON");
        assert_eq!(pod["spec"]["nodeName"], "hollow-7");
        assert_eq!(pod["metadata"]["name"], "p-1");
        assert!(pod["spec"]["containers"].is_array());
        let d: serde_json::Value =
            serde_json::from_slice(&deployment_json("web", "registry.k8s.io/pause:3.10", 1000))
                .expect("deployment JSON");
        assert_eq!(d["spec"]["replicas"], 1000);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["name"],
            "pause"
        );
        assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
        assert_eq!(d["spec"]["template"]["metadata"]["labels"]["app"], "web");
    }

    #[test]
    fn pod_watch_lines() {
        let cases: &[(&str, Option<(&str, bool)>)] = &[
            (
                r#"{"type":"MODIFIED","object":{"metadata":{"name":"sched-0000001"},"spec":{"nodeName":"hollow-3"}}}"#,
                Some(("sched-0000001", true)),
            ),
            (
                r#"{"type":"ADDED","object":{"metadata":{"name":"sched-0000002"},"spec":{"containers":[]}}}"#,
                Some(("sched-0000002", false)),
            ),
            (
                r#"{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"9"}}}"#,
                Some(("", false)),
            ),
            ("not json", None),
        ];
        for &(line, want) in cases {
            assert_eq!(pod_binding(line.as_bytes()), want, "{line}");
        }
    }

    #[test]
    fn targets_apply_only_at_the_issue_sizes() {
        let sched = |nodes, bound, rate| SchedulingFigures {
            nodes,
            placed: 1000,
            pods: 10_000,
            bound,
            seconds: 1.0,
            pods_per_sec: rate,
            ..Default::default()
        };
        let verdict = |r: &Report, prefix: &str| {
            r.rows()
                .into_iter()
                .find(|row| row.what.contains(prefix))
                .and_then(|row| row.verdict)
        };
        let cases = [
            (sched(5000, 10_000, 3000.0), Some(true)),
            (sched(5000, 10_000, 2000.0), Some(false)),
            (sched(5000, 9_999, 3000.0), Some(false)),
            (sched(200, 10_000, 3000.0), None),
        ];
        for (s, want) in cases {
            let r = Report {
                scheduling: Some(s.clone()),
                ..Default::default()
            };
            assert_eq!(verdict(&r, "overall"), want, "{s:?}");
        }
        let r = Report {
            scheduling: Some(sched(5000, 10_000, 540.0)),
            deployment: Some(DeploymentFigures {
                nodes: 100,
                replicas: 1000,
                available: 1000,
                half_available_secs: Some(2.0),
                all_available_secs: Some(9.5),
            }),
            ..Default::default()
        };
        assert_eq!(verdict(&r, "deployment"), Some(true));
        assert_eq!(verdict(&r, "upstream floor"), Some(true));
        assert!(r.to_string().contains("2.0x"), "{r}");
    }

    #[test]
    fn quick_and_overridden_sizes() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            a: ControlPlaneArgs,
        }
        let parse = |argv: &[&str]| {
            Cli::try_parse_from(std::iter::once("cp").chain(argv.iter().copied()))
                .map(|c| Sizes::from_args(&c.a))
        };
        assert_eq!(parse(&[]).expect("defaults"), Sizes::full());
        assert_eq!(parse(&["--quick"]).expect("quick"), Sizes::quick());
        let s = parse(&["--quick", "--nodes", "50", "--phase-limit", "5"]).expect("args");
        assert_eq!((s.nodes, s.pods), (50, 1000));
        assert_eq!(s.phase_limit, Duration::from_secs(5));
        assert!(parse(&["--nodes", "x"]).is_err());
    }
}
