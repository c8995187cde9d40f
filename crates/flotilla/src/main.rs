//! The `flotilla` binary: one executable, every cluster role as a subcommand.
//!
//! This is the only place that wires components together; each component crate can be
//! used on its own. `server` runs the whole control plane in one process; every other
//! component is an API client and also runs alone against a kubeconfig.

mod ctr;
mod join;
mod node;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// mimalloc instead of glibc's malloc: the API server allocates and frees many small
/// JSON values on every request from several threads, and glibc's arenas spent a
/// quarter of its CPU under load in malloc, free and their consolidation.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "flotilla",
    version,
    about = "A Kubernetes-compatible container orchestrator in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the control plane (datastore, API server, controller manager) on this machine.
    Server(ServerCmd),
    /// Run the API server (with its embedded datastore) alone.
    Apiserver(ServerArgs),
    /// Run the controller manager against an API server.
    ControllerManager(ControllerManagerCmd),
    /// Run a scheduler against an API server (`--scheduler-name` for a second one).
    Scheduler(SchedulerCmd),
    /// Run simulated ("hollow") nodes against an API server.
    Sim(SimCmd),
    /// Measure this machine: API throughput/latency, memory, store vs etcd, disk.
    Bench(bench::BenchArgs),
    /// Run a kubelet (real containers) against an API server, or standalone with
    /// static pods only (no --kubeconfig).
    Kubelet(node::KubeletCmd),
    /// Join a cluster as a worker node: `--server https://HOST:6443 --token TOKEN`
    /// (the server's `<data-dir>/token`), then run its kubelet on the real runtime.
    Agent(join::AgentCmd),
    /// Node-local containers without an API server: ps, logs, exec, inspect, stop, rm, run.
    Ctr(ctr::CtrCmd),
    /// Per-container supervisor started by the runtime (internal).
    #[command(hide = true)]
    Shim {
        /// Arguments for the shim.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(Args, Clone)]
struct ServerArgs {
    /// Where the datastore, certificates and kubeconfig live.
    #[arg(long, default_value = "/var/lib/flotilla")]
    data_dir: PathBuf,
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: String,
    /// Port to serve HTTPS on (0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    /// Static bearer tokens, upstream CSV format: token,user,uid,"group1,group2".
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// Extra subject alternative names for the serving certificate.
    #[arg(long = "tls-san")]
    tls_san: Vec<String>,
    /// The Service cluster IP range.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: String,
    /// The node join secret (default: generated once, kept in `<data-dir>/token`).
    #[arg(long)]
    token: Option<String>,
    /// Toleration seconds added to pods for node.kubernetes.io/not-ready:NoExecute.
    #[arg(long, default_value_t = 300)]
    default_not_ready_toleration_seconds: i64,
    /// Toleration seconds added to pods for node.kubernetes.io/unreachable:NoExecute.
    #[arg(long, default_value_t = 300)]
    default_unreachable_toleration_seconds: i64,
    /// Admission plugins to turn off (only `ServiceAccount` is optional; other
    /// upstream plugin names are accepted with a warning, unknown names refused).
    #[arg(long, value_delimiter = ',', value_parser = admission_plugin)]
    disable_admission_plugins: Vec<String>,
}

/// Upstream kube-apiserver's admission plugin names (`--disable-admission-plugins`
/// refuses any other name, as upstream does).
const ADMISSION_PLUGINS: &[&str] = &[
    "AlwaysAdmit",
    "AlwaysDeny",
    "AlwaysPullImages",
    "CertificateApproval",
    "CertificateSigning",
    "CertificateSubjectRestriction",
    "ClusterTrustBundleAttest",
    "DefaultIngressClass",
    "DefaultStorageClass",
    "DefaultTolerationSeconds",
    "DenyServiceExternalIPs",
    "EventRateLimit",
    "ExtendedResourceToleration",
    "ImagePolicyWebhook",
    "LimitPodHardAntiAffinityTopology",
    "LimitRanger",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionWebhook",
    "NamespaceAutoProvision",
    "NamespaceExists",
    "NamespaceLifecycle",
    "NodeRestriction",
    "OwnerReferencesPermissionEnforcement",
    "PersistentVolumeClaimResize",
    "PodNodeSelector",
    "PodSecurity",
    "PodTolerationRestriction",
    "Priority",
    "ResourceQuota",
    "RuntimeClass",
    "ServiceAccount",
    "StorageObjectInUseProtection",
    "TaintNodesByCondition",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
];

/// Parses one `--disable-admission-plugins` name.
fn admission_plugin(s: &str) -> Result<String, String> {
    let s = s.trim();
    if ADMISSION_PLUGINS.contains(&s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "admission plugin {s:?} is unknown (known: {})",
            ADMISSION_PLUGINS.join(", ")
        ))
    }
}

/// A Go-style duration flag value (`40s`, `5m0s`).
fn duration(s: &str) -> Result<Duration, String> {
    api::duration::parse(s)
}

/// The controller manager's flags (upstream kube-controller-manager names).
#[derive(Args, Clone)]
struct ControllerFlags {
    /// Controllers to run: `*` for all, `name` to enable, `-name` to disable.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    controllers: Vec<String>,
    /// How often node health is checked.
    #[arg(long, value_parser = duration, default_value = "5s")]
    node_monitor_period: Duration,
    /// How long a node may stay silent before it is marked unreachable.
    #[arg(long, value_parser = duration, default_value = "40s")]
    node_monitor_grace_period: Duration,
    /// Grace for a node that never reported status.
    #[arg(long, value_parser = duration, default_value = "1m0s")]
    node_startup_grace_period: Duration,
    /// Give each node a pod CIDR from --cluster-cidr.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    allocate_node_cidrs: bool,
    /// The pod network.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,
    /// Size of each node's pod CIDR.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// Run only while holding the kube-controller-manager Lease.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Concurrent garbage collector workers.
    #[arg(long, default_value_t = 20)]
    concurrent_gc_syncs: usize,
    /// Concurrent namespace deletions.
    #[arg(long, default_value_t = 10)]
    concurrent_namespace_syncs: usize,
    /// Terminated pods kept before the pod GC deletes the oldest (0 disables).
    #[arg(long, default_value_t = 12500)]
    terminated_pod_gc_threshold: usize,
    /// Most endpoints in one EndpointSlice.
    #[arg(long, default_value_t = 100)]
    max_endpoints_per_slice: usize,
}

impl ControllerFlags {
    fn options(&self) -> controllers::ControllerOptions {
        controllers::ControllerOptions {
            controllers: self.controllers.clone(),
            node_monitor_period: self.node_monitor_period,
            node_monitor_grace_period: self.node_monitor_grace_period,
            node_startup_grace_period: self.node_startup_grace_period,
            allocate_node_cidrs: self.allocate_node_cidrs,
            cluster_cidr: self.cluster_cidr.clone(),
            node_cidr_mask_size: self.node_cidr_mask_size,
            leader_elect: self.leader_elect,
            gc_workers: self.concurrent_gc_syncs,
            namespace_workers: self.concurrent_namespace_syncs,
            terminated_pod_gc_threshold: self.terminated_pod_gc_threshold,
            max_endpoints_per_slice: self.max_endpoints_per_slice,
            ..Default::default()
        }
    }
}

#[derive(Args, Clone)]
struct ServerCmd {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    controllers: ControllerFlags,
    /// Do not run the controller manager in this process.
    #[arg(long)]
    disable_controller_manager: bool,
    /// Do not run the scheduler in this process.
    #[arg(long)]
    disable_scheduler: bool,
    /// Do not run a kubelet in this process (control plane only; nodes join with
    /// `flotilla kubelet` or hollow nodes with `flotilla sim`).
    #[arg(long)]
    disable_kubelet: bool,
    #[command(flatten)]
    kubelet: kubelet::KubeletFlags,
    #[command(flatten)]
    runtime: node::NodeRuntimeFlags,
}

#[derive(Args, Clone)]
struct SchedulerCmd {
    /// kubeconfig of the API server.
    #[arg(long)]
    kubeconfig: PathBuf,
    #[command(flatten)]
    scheduler: scheduler::SchedulerArgs,
}

#[derive(Args, Clone)]
struct SimCmd {
    /// kubeconfig of the API server.
    #[arg(long)]
    kubeconfig: PathBuf,
    #[command(flatten)]
    sim: sim::SimArgs,
}

#[derive(Args, Clone)]
struct ControllerManagerCmd {
    /// kubeconfig of the API server to manage.
    #[arg(long)]
    kubeconfig: PathBuf,
    #[command(flatten)]
    controllers: ControllerFlags,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// A client of the API server from a kubeconfig file.
async fn kube_client(path: &std::path::Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

/// A client of the API server running in this process, as the built-in component
/// `name`: requests go straight to its handlers, with no loopback connection or TLS
/// (see `apiserver::loopback`).
fn loopback_client(server: std::sync::Arc<apiserver::ApiServer>, name: &str) -> kube::Client {
    kube::Client::new(
        apiserver::loopback::Loopback::component(server, name),
        "default",
    )
}

/// The cluster CA the controller manager publishes (`kube-root-ca.crt`): the CA its
/// kubeconfig trusts for the API server.
fn root_ca(path: &std::path::Path) -> Option<String> {
    kube::config::Kubeconfig::read_from(path)
        .ok()
        .and_then(|kc| controllers::root_ca_from_kubeconfig(&kc))
}

/// Wait for SIGINT or SIGTERM.
async fn terminated() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

fn server_config(args: &ServerArgs) -> apiserver::ServerConfig {
    apiserver::ServerConfig {
        data_dir: args.data_dir.clone(),
        bind_address: args.bind_address.clone(),
        secure_port: args.secure_port,
        token_auth_file: args.token_auth_file.clone(),
        tls_san: args.tls_san.clone(),
        service_cidr: args.service_cluster_ip_range.clone(),
        default_not_ready_toleration_seconds: args.default_not_ready_toleration_seconds,
        default_unreachable_toleration_seconds: args.default_unreachable_toleration_seconds,
        service_account_admission: !args
            .disable_admission_plugins
            .iter()
            .any(|p| p == "ServiceAccount"),
        token: args.token.clone(),
    }
}

async fn run_server(cmd: ServerCmd, with_components: bool) -> anyhow::Result<()> {
    for p in &cmd.server.disable_admission_plugins {
        if p != "ServiceAccount" {
            tracing::warn!(
                plugin = %p,
                "--disable-admission-plugins: only ServiceAccount can be turned off; {p} stays as it is"
            );
        }
    }
    let shutdown = CancellationToken::new();
    let running = apiserver::start(server_config(&cmd.server), shutdown.clone()).await?;
    tracing::info!(
        "flotilla API server listening on https://{}; admin kubeconfig: {}",
        running.addr,
        running.kubeconfig.display()
    );
    println!("kubeconfig: {}", running.kubeconfig.display());
    tracing::info!(
        "node join token: {} (flotilla agent --server https://{} --token-file …)",
        running.token_file.display(),
        running.addr
    );
    println!("join token: {}", running.token_file.display());
    let mut components = Vec::new();
    if with_components && !cmd.disable_controller_manager {
        let client = loopback_client(running.server.clone(), "system:kube-controller-manager");
        let mut opts = cmd.controllers.options();
        opts.root_ca = root_ca(&running.kubeconfig);
        let token = shutdown.clone();
        components.push(tokio::spawn(async move {
            if let Err(e) = controllers::run(client, opts, token).await {
                tracing::error!("controller manager stopped: {e:#}");
            }
        }));
    }
    if with_components && !cmd.disable_scheduler {
        let client = loopback_client(running.server.clone(), "system:kube-scheduler");
        let args = scheduler::SchedulerArgs {
            leader_elect: cmd.controllers.leader_elect,
            ..Default::default()
        };
        let token = shutdown.clone();
        components.push(tokio::spawn(async move {
            if let Err(e) = scheduler::run(client, args, token).await {
                tracing::error!("scheduler stopped: {e:#}");
            }
        }));
    }
    if with_components && !cmd.disable_kubelet {
        if nix::unistd::Uid::effective().is_root() {
            let flags = node::server_kubelet_flags(
                &cmd.server.data_dir,
                &running.kubeconfig,
                cmd.kubelet.clone(),
            )?;
            let data_dir = cmd.server.data_dir.clone();
            let cluster_cidr = cmd.controllers.cluster_cidr.clone();
            let rflags = cmd.runtime.clone();
            let token = shutdown.clone();
            let server = Some(running.server.clone());
            components.push(tokio::spawn(async move {
                if let Err(e) =
                    node::run_kubelet(&data_dir, &cluster_cidr, &flags, &rflags, server, token)
                        .await
                {
                    tracing::error!("kubelet stopped: {e:#}");
                }
            }));
        } else {
            tracing::warn!(
                "not root: running without a kubelet (this machine is not a node); \
                 pass --disable-kubelet to silence this"
            );
        }
    }
    tokio::select! {
        r = terminated() => r?,
        r = running.task => { r??; }
    }
    tracing::info!("shutting down");
    shutdown.cancel();
    for c in components {
        let _ = tokio::time::timeout(Duration::from_secs(5), c).await;
    }
    Ok(())
}

async fn run_controller_manager(cmd: ControllerManagerCmd) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let client = kube_client(&cmd.kubeconfig).await?;
    let mut opts = cmd.controllers.options();
    opts.root_ca = root_ca(&cmd.kubeconfig);
    let task = tokio::spawn(controllers::run(client, opts, shutdown.clone()));
    terminated().await?;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    Ok(())
}

/// Runs one client component until SIGINT/SIGTERM (or until it stops by itself).
async fn until_terminated<F, Fut>(component: F) -> anyhow::Result<()>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let shutdown = CancellationToken::new();
    let mut task = tokio::spawn(component(shutdown.clone()));
    tokio::select! {
        r = terminated() => r?,
        r = &mut task => return r?,
    }
    shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(10), task).await {
        Ok(r) => r?,
        Err(_) => Ok(()),
    }
}

/// Caps glibc's malloc arenas at two. By default glibc gives threads up to eight
/// arenas per core, and the daemons' many short-lived blocking-pool threads (runtime
/// calls, file reads) each left memory parked in their own arena: a server running 50
/// pods held 346 MB RSS, 158 MB with this cap, at the same CPU use.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tuning; it is called before the async
    // runtime starts any thread.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 2);
    }
}

fn main() -> anyhow::Result<()> {
    // The shim runs once per container and must start fast and stay small: no argument
    // parser, no logging setup, no async runtime.
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == "shim") {
        std::process::exit(runtime::shim::main(args.collect()));
    }
    let cli = Cli::parse();
    init_logging();
    let cli = match cli.command {
        Command::Ctr(cmd) => {
            // A command-line tool piped into `head` ends quietly on a closed stdout,
            // as ps/docker do, instead of panicking on EPIPE (Rust ignores SIGPIPE).
            // SAFETY: setting a signal's disposition to the default, before any thread
            // starts; no handler runs.
            unsafe {
                let _ = nix::sys::signal::signal(
                    nix::sys::signal::Signal::SIGPIPE,
                    nix::sys::signal::SigHandler::SigDfl,
                );
            }
            std::process::exit(ctr::run(cmd)?)
        }
        Command::Shim { args } => std::process::exit(runtime::shim::main(args)),
        command => Cli { command },
    };
    limit_malloc_arenas();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Server(cmd) => run_server(cmd, true).await,
            Command::Apiserver(server) => {
                let cmd = ServerCmd {
                    server,
                    controllers: ControllerFlags::parse_defaults(),
                    disable_controller_manager: true,
                    disable_scheduler: true,
                    disable_kubelet: true,
                    kubelet: kubelet::KubeletFlags::parse_defaults(),
                    runtime: node::NodeRuntimeFlags::default(),
                };
                run_server(cmd, false).await
            }
            Command::ControllerManager(cmd) => run_controller_manager(cmd).await,
            Command::Scheduler(cmd) => {
                let client = kube_client(&cmd.kubeconfig).await?;
                until_terminated(|token| scheduler::run(client, cmd.scheduler, token)).await
            }
            Command::Sim(cmd) => {
                let client = kube_client(&cmd.kubeconfig).await?;
                until_terminated(|token| sim::run(client, cmd.sim, token)).await
            }
            Command::Bench(a) => bench::run_cli(a).await,
            Command::Kubelet(cmd) => {
                until_terminated(|token| async move {
                    node::run_kubelet(
                        &cmd.data_dir,
                        &cmd.cluster_cidr,
                        &cmd.kubelet,
                        &cmd.runtime,
                        None,
                        token,
                    )
                    .await
                })
                .await
            }
            Command::Agent(cmd) => until_terminated(|token| join::run(cmd, token)).await,
            Command::Ctr(_) | Command::Shim { .. } => {
                unreachable!("handled before the async runtime")
            }
        }
    })
}

trait ParseDefaults {
    fn parse_defaults() -> Self;
}

impl ParseDefaults for kubelet::KubeletFlags {
    fn parse_defaults() -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            f: kubelet::KubeletFlags,
        }
        Only::parse_from(["flotilla"]).f
    }
}

impl ControllerFlags {
    /// The flags' defaults, for roles that don't take them.
    fn parse_defaults() -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            f: ControllerFlags,
        }
        Only::parse_from(["flotilla"]).f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disable_admission_plugins_refuses_unknown_names() {
        let ok = Cli::try_parse_from([
            "flotilla",
            "server",
            "--disable-admission-plugins",
            "ServiceAccount,Priority",
        ]);
        let Ok(Cli {
            command: Command::Server(cmd),
        }) = ok
        else {
            panic!("known plugin names were refused");
        };
        assert_eq!(
            cmd.server.disable_admission_plugins,
            ["ServiceAccount", "Priority"]
        );
        let err = Cli::try_parse_from([
            "flotilla",
            "server",
            "--disable-admission-plugins",
            "ServiceAcount",
        ])
        .err()
        .expect("a misspelt plugin name was accepted");
        assert!(err.to_string().contains("is unknown"), "{err}");
    }
}
