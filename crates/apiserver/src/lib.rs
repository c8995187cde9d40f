//! The Kubernetes API server of Flotilla.
//!
//! It is the only component that talks to the datastore. Every request is
//! authenticated (client certificate or bearer token), authorized, validated and
//! defaulted, persisted through the store with compare-and-swap, and announced to
//! watchers. Reads, lists and watches are served from the watch cache ([`cache`]), which
//! one store watch keeps current. It speaks the real Kubernetes API (discovery,
//! OpenAPI, tables, selectors, patches, server-side apply, subresources, CRDs) so
//! unmodified `kubectl`, `helm` and client libraries work against it.
//!
//! It must never depend on controllers, the scheduler, the kubelet or the runtime: they
//! are its clients.

pub mod adapters;
pub mod allocators;
pub mod auth;
pub mod bootstrap;
pub mod cache;
pub mod custom;
pub mod discovery;
pub mod dupkeys;
pub mod errors;
pub mod handlers;
pub mod hooks;
pub mod join;
pub mod kubeletproxy;
pub mod list;
pub mod loopback;
pub mod metrics;
pub mod metrics_api;
pub mod openapi;
pub mod patching;
pub mod pki;
pub mod registry;
pub mod server;
pub mod serviceaccount;
pub mod strategy;
pub mod subresources;
pub mod table;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use server::{ApiServer, ServerConfig};

/// A started API server: its state and the address it listens on.
pub struct Running {
    pub server: Arc<ApiServer>,
    pub addr: SocketAddr,
    pub kubeconfig: std::path::PathBuf,
    /// `<data-dir>/token`: the node join token (`flotilla agent --token`).
    pub token_file: std::path::PathBuf,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Open the store, prepare the PKI and kubeconfig, and start serving HTTPS.
pub async fn start(config: ServerConfig, shutdown: CancellationToken) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data_dir)?;
    let store = store::EmbeddedStore::open(
        &config.data_dir.join("db"),
        store::EmbeddedOptions::default(),
    )
    .await?;
    start_with_store(config, store, shutdown).await
}

/// Like [`start`], on a given store (tests use the in-memory one).
pub async fn start_with_store(
    config: ServerConfig,
    store: Arc<dyn store::Backend>,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    let pki = pki::Pki::at(&config.data_dir);
    pki.ensure(&serving_hosts(&config))?;
    let ca_pem = std::fs::read(&pki.ca_cert)?;
    let token_file = join::token_path(&config.data_dir);
    let secret = join::ensure_token(&config.data_dir, &ca_pem, config.token.as_deref())?;
    let listener =
        tokio::net::TcpListener::bind((config.bind_address.as_str(), config.secure_port)).await?;
    let addr = listener.local_addr()?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let kubeconfig = config.data_dir.join("admin.kubeconfig");
    pki.write_admin_kubeconfig(&kubeconfig, &format!("https://{host}:{}", addr.port()))?;
    let mut config = config;
    config.secure_port = addr.port();
    config.token = Some(secret);
    let server = ApiServer::new(config, store.clone()).await?;
    tokio::spawn(compaction_loop(store, shutdown.clone()));
    let task = tokio::spawn(server::serve(server.clone(), listener, shutdown));
    Ok(Running {
        server,
        addr,
        kubeconfig,
        token_file,
        task,
    })
}

/// The serving certificate's extra names: `--tls-san`, the bind address, and — when
/// binding every address (`0.0.0.0`, `::`) — the host name and every non-loopback
/// address of the host, as k3s does, so other machines can reach it by any of them.
pub fn serving_hosts(config: &ServerConfig) -> Vec<String> {
    let mut hosts = config.tls_san.clone();
    match config.bind_address.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_unspecified() => {
            if let Ok(name) = nix::unistd::gethostname()
                && let Some(name) = name.to_str()
                && !name.is_empty()
                && api::names::is_dns1123_subdomain(&name.to_ascii_lowercase()).is_empty()
            {
                hosts.push(name.to_ascii_lowercase());
            }
            hosts.extend(host_addresses().iter().map(|a| a.to_string()));
        }
        _ => hosts.push(config.bind_address.clone()),
    }
    hosts
}

/// The host's non-loopback interface addresses (IPv6 link-local ones left out).
fn host_addresses() -> Vec<std::net::IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for a in addrs {
        let Some(addr) = a.address else { continue };
        let ip = if let Some(v4) = addr.as_sockaddr_in() {
            std::net::IpAddr::V4(v4.ip())
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            let ip = v6.ip();
            if (ip.segments()[0] & 0xffc0) == 0xfe80 {
                continue;
            }
            std::net::IpAddr::V6(ip)
        } else {
            continue;
        };
        if !ip.is_loopback() && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// How often history is compacted (upstream's `--etcd-compaction-interval`).
pub const COMPACTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

/// Compact the store every interval to the revision seen one interval earlier, as the
/// upstream API server does, so watches can resume across one interval.
async fn compaction_loop(store: Arc<dyn store::Backend>, shutdown: CancellationToken) {
    let mut previous = store.current_revision();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(COMPACTION_INTERVAL) => {}
        }
        if previous > store.compacted_revision()
            && let Err(e) = store.compact(previous).await
        {
            tracing::warn!("store compaction to {previous} failed: {e}");
        }
        previous = store.current_revision();
    }
}
