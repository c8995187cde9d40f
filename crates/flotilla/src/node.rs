//! The node roles: `flotilla kubelet`, the kubelet inside `flotilla server` and the
//! one of `flotilla agent` (`join.rs`), on the real runtime (`agent::NodeRuntime`: containers, images, pod network).

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
    in_process: Option<Arc<apiserver::ApiServer>>,
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
    let client = match (&cfg.config.kubeconfig, in_process) {
        // The server's own kubelet: the API server is in this process, so requests go
        // to it directly (`apiserver::loopback`), as the node, with the privileges of
        // the admin kubeconfig it was given.
        (Some(_), Some(server)) => Some(crate::loopback_client(
            server,
            &format!("system:node:{}", cfg.config.node_name),
        )),
        (Some(p), None) => Some(crate::kube_client(p).await?),
        (None, _) => None,
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
    if let Some(client) = client.clone() {
        let nr = node_runtime.clone();
        let me = cfg.config.node_name.clone();
        tokio::spawn(node_routes(client, nr, me, shutdown.clone()));
    }
    kubelet::run_with_client(cfg, client, node_runtime, shutdown).await;
    Ok(())
}

/// How often the host-gw routes are brought in line with the Nodes.
const NODE_ROUTES_PERIOD: Duration = Duration::from_secs(5);

/// The host-gw routes this node wants: every other node's podCIDR via its InternalIP.
fn wanted_routes(nodes: &[Node], me: &str) -> Vec<(ipnet::IpNet, std::net::IpAddr)> {
    let own: Option<ipnet::IpNet> = nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(me))
        .and_then(|n| n.spec.as_ref()?.pod_cidr.as_ref()?.parse().ok());
    let mut out: Vec<(ipnet::IpNet, std::net::IpAddr)> = Vec::new();
    for n in nodes {
        if n.metadata.name.as_deref() == Some(me) {
            continue;
        }
        let Some(cidr) = n
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_ref())
            .and_then(|c| c.parse::<ipnet::IpNet>().ok())
        else {
            continue;
        };
        let Some(ip) = n
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .and_then(|a| a.address.parse::<std::net::IpAddr>().ok())
        else {
            continue;
        };
        if own.is_some_and(|o| o.contains(&cidr) || cidr.contains(&o))
            || out.iter().any(|(c, _)| *c == cidr)
        {
            continue;
        }
        out.push((cidr, ip));
    }
    out.sort();
    out
}

/// Keeps the host-gw routes to the other nodes' pod CIDRs (cross-node pod traffic;
/// the nodes must share a network).
async fn node_routes(
    client: kube::Client,
    nr: Arc<agent::NodeRuntime>,
    me: String,
    shutdown: CancellationToken,
) {
    let nodes: kube::Api<Node> = kube::Api::all(client);
    let mut applied: Option<Vec<(ipnet::IpNet, std::net::IpAddr)>> = None;
    let mut last_error = String::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(NODE_ROUTES_PERIOD) => {}
        }
        if !nr.network_ready() {
            continue;
        }
        let Ok(list) = nodes.list(&Default::default()).await else {
            continue;
        };
        let wanted = wanted_routes(&list.items, &me);
        if applied.as_ref() == Some(&wanted) {
            continue;
        }
        match nr.set_node_routes(wanted.clone()).await {
            Ok(()) => {
                tracing::info!(routes = ?wanted, "host-gw routes to other nodes' pod networks");
                applied = Some(wanted);
                last_error.clear();
            }
            Err(e) => {
                let msg = e.to_string();
                if msg != last_error {
                    tracing::warn!("host-gw routes: {msg}");
                    last_error = msg;
                }
            }
        }
    }
}

/// Writes a node's kubelet configuration (once) to `<data-dir>/agent/kubelet.yaml`
/// and returns the kubelet flags that use it with `kubeconfig`. `client_ca` is the
/// cluster CA: the API server dials the kubelet with a client certificate signed by
/// it (`pods/log`, `pods/exec`). The server's own kubelet and `flotilla agent` share it.
pub fn node_kubelet_flags(
    data_dir: &Path,
    kubeconfig: &Path,
    client_ca: &Path,
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
            cfg.authentication.x509.client_ca_file = client_ca.display().to_string();
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
    Ok(flags)
}

/// The server's kubelet: [`node_kubelet_flags`] with the admin kubeconfig and the
/// cluster CA of the data directory, labelled as the control plane.
pub fn server_kubelet_flags(
    data_dir: &Path,
    kubeconfig: &Path,
    flags: kubelet::KubeletFlags,
) -> anyhow::Result<kubelet::KubeletFlags> {
    let ca = data_dir.join("pki").join("ca.crt");
    let mut flags = node_kubelet_flags(data_dir, kubeconfig, &ca, flags)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ParseDefaults;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"podCIDR": cidr},
            "status": {"addresses": ip.map(|ip| vec![
                serde_json::json!({"type": "Hostname", "address": name}),
                serde_json::json!({"type": "InternalIP", "address": ip}),
            ])},
        }))
        .unwrap()
    }

    #[test]
    fn routes_go_to_every_other_node_with_a_cidr_and_an_address() {
        let nodes = vec![
            node("me", Some("10.42.0.0/24"), Some("10.201.0.1")),
            node("w2", Some("10.42.2.0/24"), Some("10.201.0.3")),
            node("w1", Some("10.42.1.0/24"), Some("10.201.0.2")),
            node("no-cidr", None, Some("10.201.0.4")),
            node("no-ip", Some("10.42.4.0/24"), None),
            node("overlap", Some("10.42.0.0/16"), Some("10.201.0.5")),
        ];
        let r = wanted_routes(&nodes, "me");
        let want: Vec<(ipnet::IpNet, std::net::IpAddr)> = vec![
            (
                "10.42.1.0/24".parse().unwrap(),
                "10.201.0.2".parse().unwrap(),
            ),
            (
                "10.42.2.0/24".parse().unwrap(),
                "10.201.0.3".parse().unwrap(),
            ),
        ];
        assert_eq!(r, want);
    }

    #[test]
    fn server_and_agent_share_the_node_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let flags = kubelet::KubeletFlags::parse_defaults();
        let kc = dir.path().join("k.kubeconfig");
        let ca = dir.path().join("agent").join("server-ca.crt");
        let f = node_kubelet_flags(dir.path(), &kc, &ca, flags.clone()).unwrap();
        assert_eq!(f.kubeconfig.as_deref(), Some(kc.as_path()));
        assert_eq!(f.root_dir, dir.path().join("agent").join("kubelet"));
        assert!(f.node_labels.is_empty(), "a worker has no role");
        let text = std::fs::read_to_string(f.config.unwrap()).unwrap();
        assert!(text.contains(&ca.display().to_string()), "{text}");
        assert!(
            text.contains(&dir.path().join("agent/pod-manifests").display().to_string()),
            "{text}"
        );
        let s = server_kubelet_flags(dir.path(), &kc, flags).unwrap();
        assert_eq!(
            s.node_labels,
            vec!["node-role.kubernetes.io/control-plane="]
        );
    }
}
