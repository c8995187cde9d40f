//! The `flotilla` binary: one executable, every cluster role as a subcommand.
//!
//! This is the only place that wires components together; each component crate can be
//! used on its own.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

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

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (datastore + API server) on this machine.
    Server(ServerArgs),
    /// Run the API server alone (same as `server` for now: the datastore is embedded).
    Apiserver(ServerArgs),
    /// Measure this machine: API throughput/latency, memory, store vs etcd, disk.
    Bench(bench::BenchArgs),
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
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let config = apiserver::ServerConfig {
        data_dir: args.data_dir,
        bind_address: args.bind_address,
        secure_port: args.secure_port,
        token_auth_file: args.token_auth_file,
        tls_san: args.tls_san,
        service_cidr: args.service_cluster_ip_range,
    };
    let running = apiserver::start(config, shutdown.clone()).await?;
    tracing::info!(
        "flotilla API server listening on https://{}; admin kubeconfig: {}",
        running.addr,
        running.kubeconfig.display()
    );
    println!("kubeconfig: {}", running.kubeconfig.display());
    let client = kube_client(&running.kubeconfig).await?;
    let ctrl_shutdown = shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = controllers::run(
            client,
            controllers::ControllerOptions::default(),
            ctrl_shutdown,
        )
        .await
        {
            tracing::error!("controller manager stopped: {e:#}");
        }
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        r = running.task => { r??; }
    }
    tracing::info!("shutting down");
    shutdown.cancel();
    Ok(())
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Server(a) | Command::Apiserver(a) => run_server(a).await,
            Command::Bench(a) => bench::run_cli(a).await,
        }
    })
}
