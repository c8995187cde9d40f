//! The node roles: `flotilla kubelet` and the kubelet inside `flotilla server`, on the
//! real runtime (`agent::NodeRuntime`: containers, images, pod network).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use k8s_openapi::api::core::v1::Node;
use tokio_util::sync::CancellationToken;

/// Flags of the node runtime under the kubelet.
#[derive(Args, Clone, Debug, Default)]
pub struct NodeRuntimeFlags {
    /// Registries reached over plain http (e.g. `127.0.0.1:5000`).
    #[arg(long = "insecure-registry")]
    pub insecure_registry: Vec<String>,
}

/// `flotilla kubelet`.
#[derive(Args, Clone)]
pub struct KubeletCmd {
    /// Where containers, images and the pod network's state live (shared with
    /// `flotilla ctr`).
    #[arg(long, default_value = "/var/lib/flotilla")]
    pub data_dir: PathBuf,
    /// The cluster's pod network, exempt from masquerade.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    #[command(flatten)]
    pub kubelet: kubelet::KubeletFlags,
    #[command(flatten)]
    pub runtime: NodeRuntimeFlags,
}

/// The static pod directory a server's kubelet uses by default: upstream's
/// `/etc/kubernetes/manifests` for the default data directory, else one inside the
/// data directory (so several test clusters on one machine stay apart).
pub fn default_static_pod_path(data_dir: &Path) -> PathBuf {
    if data_dir == Path::new("/var/lib/flotilla") {
        PathBuf::from(kubelet::config::DEFAULT_STATIC_POD_PATH)
    } else {
        data_dir.join("agent").join("pod-manifests")
    }
}

/// The pod network of a standalone kubelet (no API server to allocate one).
pub const STANDALONE_POD_CIDR: &str = "10.88.0.0/16";

/// Runs a kubelet on the real runtime until `shutdown`.
pub async fn run_kubelet(
    data_dir: &Path,
    cluster_cidr: &str,
    flags: &kubelet::KubeletFlags,
    rflags: &NodeRuntimeFlags,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        anyhow::bail!("the kubelet runs containers and needs root (run as root, or disable it)");
    }
    let cfg = kubelet::KubeletRunConfig::from_flags(flags)?;
    let mut rcfg = agent::NodeRuntimeConfig::new(data_dir);
    rcfg.insecure_registries = rflags.insecure_registry.clone();
    rcfg.cluster_dns = cfg.config.kubelet.cluster_dns.clone();
    rcfg.cluster_domain = cfg.config.kubelet.cluster_domain.clone();
    rcfg.cluster_cidr = cluster_cidr.parse().ok();
    rcfg.seccomp_profile_root = cfg.config.root_dir.join("seccomp");
    rcfg.seccomp_default = cfg.config.kubelet.seccomp_default.unwrap_or(false);
    let node_name = cfg.config.node_name.clone();
    let mut configured_cidr = cfg.config.kubelet.pod_cidr.clone();
    if configured_cidr.is_empty() && cfg.config.kubeconfig.is_none() {
        // Standalone (static pods only): no controller manager hands out a podCIDR,
        // so the node takes a private default of its own, alone in its "cluster".
        configured_cidr = STANDALONE_POD_CIDR.to_string();
        rcfg.cluster_cidr = None;
        tracing::info!("standalone kubelet: pod network on {STANDALONE_POD_CIDR}");
    }
    if let (Some(cluster), Ok(pod)) = (rcfg.cluster_cidr, configured_cidr.parse::<ipnet::IpNet>())
        && !cluster.contains(&pod)
    {
        tracing::warn!(
            "podCIDR {pod} lies outside the cluster CIDR {cluster}: masquerading all but the pod CIDR"
        );
        rcfg.cluster_cidr = None;
    }
    let node_runtime = Arc::new(agent::NodeRuntime::open(rcfg)?);
    let client = match &cfg.config.kubeconfig {
        Some(p) => Some(crate::kube_client(p).await?),
        None => None,
    };
    // The pod network starts on the node's podCIDR: the configured one (or the
    // standalone default), else the one the controller manager allocates (watched on
    // the Node).
    let nr = node_runtime.clone();
    let token = shutdown.clone();
    let watch_client = client.clone();
    tokio::spawn(async move {
        if !configured_cidr.is_empty() {
            match configured_cidr.parse() {
                Ok(c) => {
                    if let Err(e) = nr.set_pod_cidr(c).await {
                        tracing::error!("pod network: {e}");
                    }
                }
                Err(e) => tracing::error!("podCIDR {configured_cidr:?}: {e}"),
            }
            return;
        }
        let Some(client) = watch_client else {
            return;
        };
        let nodes: kube::Api<Node> = kube::Api::all(client);
        loop {
            if token.is_cancelled() {
                return;
            }
            if let Ok(Some(n)) = nodes.get_opt(&node_name).await
                && let Some(cidr) = n.spec.and_then(|s| s.pod_cidr)
            {
                match cidr.parse() {
                    Ok(c) => match nr.set_pod_cidr(c).await {
                        Ok(()) => return,
                        Err(e) => tracing::error!("pod network: {e}"),
                    },
                    Err(e) => tracing::error!("node podCIDR {cidr:?}: {e}"),
                }
            }
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
    kubelet::run_with_client(cfg, client, node_runtime, shutdown).await;
    Ok(())
}

/// Writes the server's kubelet configuration (once) and returns the kubelet flags
/// that use it with the admin kubeconfig.
pub fn server_kubelet_flags(
    data_dir: &Path,
    kubeconfig: &Path,
    mut flags: kubelet::KubeletFlags,
) -> anyhow::Result<kubelet::KubeletFlags> {
    if flags.config.is_none() {
        let path = data_dir.join("agent").join("kubelet.yaml");
        if !path.exists() {
            let static_pods = flags
                .pod_manifest_path
                .clone()
                .unwrap_or_else(|| default_static_pod_path(data_dir));
            let mut cfg = kubelet::config::default_config(&static_pods);
            // The API server dials the kubelet with a client certificate signed by the
            // cluster CA (`pods/log`, `pods/exec`).
            cfg.authentication.x509.client_ca_file =
                data_dir.join("pki").join("ca.crt").display().to_string();
            let text = cfg.to_yaml()?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let tmp = path.with_extension("yaml.tmp");
            std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        }
        tracing::info!("kubelet configuration: {}", path.display());
        flags.config = Some(path);
    }
    if flags.root_dir == Path::new(kubelet::config::DEFAULT_ROOT_DIR)
        && data_dir != Path::new("/var/lib/flotilla")
    {
        flags.root_dir = data_dir.join("agent").join("kubelet");
    }
    if flags.kubeconfig.is_none() {
        flags.kubeconfig = Some(kubeconfig.to_path_buf());
    }
    if flags
        .node_labels
        .iter()
        .all(|l| !l.starts_with("node-role.kubernetes.io/control-plane"))
    {
        flags
            .node_labels
            .push("node-role.kubernetes.io/control-plane=".to_string());
    }
    Ok(flags)
}
