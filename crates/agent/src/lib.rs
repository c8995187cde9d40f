//! The node agent's side of the kubelet: [`NodeRuntime`] implements the kubelet's
//! [`kubelet::PodRuntime`] on the real container runtime (`runtime`: sandboxes,
//! containers under their shims, cgroups, logs, exec), the image store (`images`:
//! pull, rootfs layers) and the pod network (`network`: bridge, veth, IPAM, hostPorts).
//!
//! It translates pods into the runtime's CRI-like specs: QoS class → pod cgroup,
//! requests/limits → cgroup limits, security context, volumes → host directories,
//! DNS policy → `/etc/resolv.conf`. It holds no cluster state of its own: everything
//! it needs to find again after a restart is on disk (sandboxes and containers carry
//! the pod's labels, the IPAM files name their pod).
//!
//! This crate must never talk to the API server or the store; the kubelet does.

mod volumes;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use images::{ImageStore, PullOptions};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use kubelet::PodRuntime;
use kubelet::runtime::{
    ContainerConfig, ContainerInfo, ContainerState, ExecResult, ExecStreams, ImageInfo,
    RuntimeError, SandboxInfo,
};
use network::{HostPortMapping, NodeNetConfig, NodeNetwork, Protocol};
use runtime::{ContainerRuntime, ContainerSpec, DnsConfig, QosClass, Runtime, SandboxSpec};

/// Label with the container's restart attempt (0 for the first instance).
pub const ATTEMPT_LABEL: &str = "io.kubernetes.container.attempt";
/// Label with the resolved image id the container was created from.
pub const IMAGE_ID_LABEL: &str = "io.flotilla.image.id";

/// Settings of the node runtime.
#[derive(Clone, Debug)]
pub struct NodeRuntimeConfig {
    /// The node's data directory (`/var/lib/flotilla`): containers, images, network state.
    pub data_dir: PathBuf,
    /// Registries reached over plain http (`127.0.0.1:5000`).
    pub insecure_registries: Vec<String>,
    /// `clusterDNS` of the kubelet configuration.
    pub cluster_dns: Vec<String>,
    /// `clusterDomain` of the kubelet configuration.
    pub cluster_domain: String,
    /// The whole cluster's pod network (exempt from masquerade).
    pub cluster_cidr: Option<IpNet>,
    /// Where `Localhost` seccomp profiles live (upstream: `<kubelet root-dir>/seccomp`).
    pub seccomp_profile_root: PathBuf,
    /// `seccompDefault`: `RuntimeDefault` for containers that ask for no profile.
    pub seccomp_default: bool,
}

impl NodeRuntimeConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            insecure_registries: Vec::new(),
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".into(),
            cluster_cidr: None,
            seccomp_profile_root: PathBuf::from("/var/lib/kubelet/seccomp"),
            seccomp_default: false,
        }
    }

    fn pods_dir(&self) -> PathBuf {
        self.data_dir.join("agent").join("pods")
    }

    fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("agent").join("logs")
    }
}

/// Remove the log directories of pod `uid` (`<ns>_<name>_<uid>`, as upstream's
/// `/var/log/pods`) once the pod has left the node; missing is not an error.
fn remove_pod_logs(logs: &Path, uid: &str) -> std::io::Result<()> {
    if uid.is_empty() || uid.contains('/') {
        return Ok(());
    }
    let suffix = format!("_{uid}");
    let entries = match std::fs::read_dir(logs) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        if e.file_name().to_str().is_some_and(|n| n.ends_with(&suffix)) {
            match std::fs::remove_dir_all(e.path()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// The real node: containers, images and pod network.
pub struct NodeRuntime {
    cfg: NodeRuntimeConfig,
    runtime: Arc<Runtime>,
    images: Arc<ImageStore>,
    network: tokio::sync::OnceCell<NodeNetwork>,
    host_ports: Mutex<BTreeMap<String, Vec<HostPortMapping>>>,
    /// Sandboxes set up by this process, by pod uid, with their directory: the pod
    /// workers ask for their sandbox at every sync, and listing every sandbox and
    /// re-checking the pod's network each time made the kubelet's work grow with the
    /// square of the pod count. An entry holds while its directory exists (the
    /// sandbox may be removed by `flotilla ctr` in another process).
    ready: Mutex<HashMap<String, (PathBuf, SandboxInfo)>>,
}

fn err(what: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Other(what.to_string())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, RuntimeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| err(format!("runtime task failed: {e}")))?
}

impl NodeRuntime {
    /// Opens the runtime and image store under the data directory and re-adopts the
    /// containers a previous agent left running. The pod network starts once the node
    /// has a podCIDR ([`NodeRuntime::set_pod_cidr`]).
    pub fn open(cfg: NodeRuntimeConfig) -> Result<Self, RuntimeError> {
        let rcfg = runtime::Config::new(&cfg.data_dir).map_err(err)?;
        let runtime = Runtime::new(rcfg).map_err(err)?;
        match runtime.recover() {
            Ok(n) if n > 0 => tracing::info!(containers = n, "re-adopted running containers"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "re-adopting containers"),
        }
        let images = ImageStore::open(&cfg.data_dir.join("images")).map_err(err)?;
        Ok(Self {
            cfg,
            runtime: Arc::new(runtime),
            images: Arc::new(images),
            network: tokio::sync::OnceCell::new(),
            host_ports: Mutex::new(BTreeMap::new()),
            ready: Mutex::new(HashMap::new()),
        })
    }

    /// The container runtime (for the kubelet server's logs/exec and `flotilla ctr`).
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Starts the pod network on the node's podCIDR: the bridge, forwarding and
    /// masquerade. Must run on the host's network namespace. Later calls with another
    /// CIDR are refused (a node keeps its podCIDR).
    pub async fn set_pod_cidr(&self, cidr: IpNet) -> Result<(), RuntimeError> {
        let net = self
            .network
            .get_or_try_init(|| async {
                let mut nc = NodeNetConfig::new(cidr, self.cfg.data_dir.join("network"));
                nc.cluster_cidr = self.cfg.cluster_cidr;
                let net = NodeNetwork::new(nc).map_err(err)?;
                net.ensure_bridge().await.map_err(err)?;
                net.ensure_masquerade().await.map_err(err)?;
                tracing::info!(pod_cidr = %cidr, "pod network ready");
                Ok::<_, RuntimeError>(net)
            })
            .await?;
        if net.config().pod_cidr != cidr {
            return Err(err(format!(
                "pod network already runs on {}, not {cidr}",
                net.config().pod_cidr
            )));
        }
        Ok(())
    }

    /// Makes the host-gw routes to other nodes' pod CIDRs exactly `routes`
    /// (`(podCIDR, node address)`); nothing to do before the pod network is up.
    pub async fn set_node_routes(
        &self,
        routes: Vec<(IpNet, std::net::IpAddr)>,
    ) -> Result<(), RuntimeError> {
        match self.network.get() {
            Some(net) => net.set_node_routes(routes).await.map_err(err),
            None => Ok(()),
        }
    }

    /// Whether the pod network is up.
    pub fn network_ready(&self) -> bool {
        self.network.initialized()
    }

    /// The sandbox this process set up for pod `uid`, if it still exists.
    fn ready_sandbox(&self, uid: &str) -> Option<SandboxInfo> {
        let mut ready = self.ready.lock().ok()?;
        let (dir, info) = ready.get(uid)?;
        if dir.join("sandbox.json").exists() {
            return Some(info.clone());
        }
        ready.remove(uid);
        None
    }

    fn set_ready(&self, uid: &str, dir: PathBuf, info: &SandboxInfo) {
        if let Ok(mut ready) = self.ready.lock() {
            ready.insert(uid.to_string(), (dir, info.clone()));
        }
    }

    async fn find_sandbox(&self, uid: &str) -> Result<Option<runtime::SandboxInfo>, RuntimeError> {
        let rt = self.runtime.clone();
        let uid = uid.to_string();
        blocking(move || {
            Ok(rt
                .list_sandboxes()
                .map_err(err)?
                .into_iter()
                .find(|s| s.spec.uid == uid))
        })
        .await
    }

    async fn apply_host_ports(&self) -> Result<(), RuntimeError> {
        let Some(net) = self.network.get() else {
            return Ok(());
        };
        let all: Vec<HostPortMapping> = {
            let map = self
                .host_ports
                .lock()
                .map_err(|_| err("host port table poisoned"))?;
            map.values().flatten().cloned().collect()
        };
        net.set_host_ports(all).await.map_err(err)
    }

    fn dns_for(&self, pod: &Pod) -> DnsConfig {
        let spec = pod.spec.as_ref();
        let policy = spec
            .and_then(|s| s.dns_policy.as_deref())
            .unwrap_or("ClusterFirst");
        let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let domain = &self.cfg.cluster_domain;
        let mut dns = DnsConfig::default();
        let cluster = match policy {
            "ClusterFirstWithHostNet" => true,
            "ClusterFirst" => !host_network,
            _ => false,
        };
        if cluster && !self.cfg.cluster_dns.is_empty() {
            dns.servers = self.cfg.cluster_dns.clone();
            dns.searches = vec![
                format!("{ns}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.clone(),
            ];
            dns.options = vec!["ndots:5".into()];
        }
        if let Some(c) = spec.and_then(|s| s.dns_config.as_ref()) {
            if policy == "None" {
                dns = DnsConfig::default();
            }
            dns.servers
                .extend(c.nameservers.clone().unwrap_or_default());
            dns.searches.extend(c.searches.clone().unwrap_or_default());
            for o in c.options.clone().unwrap_or_default() {
                let Some(name) = o.name else { continue };
                dns.options
                    .retain(|x| x.split(':').next() != Some(name.as_str()));
                dns.options.push(match o.value {
                    Some(v) => format!("{name}:{v}"),
                    None => name,
                });
            }
        }
        dns
    }
}

/// The pod's QoS class as upstream computes it (`status.qosClass` when set).
pub fn qos_class(pod: &Pod) -> QosClass {
    match pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) {
        Some("Guaranteed") => return QosClass::Guaranteed,
        Some("BestEffort") => return QosClass::BestEffort,
        Some("Burstable") => return QosClass::Burstable,
        _ => {}
    }
    let Some(spec) = pod.spec.as_ref() else {
        return QosClass::BestEffort;
    };
    let containers: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let r = c.resources.as_ref();
        let req = r.and_then(|r| r.requests.as_ref());
        let lim = r.and_then(|r| r.limits.as_ref());
        for res in ["cpu", "memory"] {
            let q = req.and_then(|m| m.get(res));
            let l = lim.and_then(|m| m.get(res));
            if q.is_some() || l.is_some() {
                any = true;
            }
            match l {
                None => guaranteed = false,
                Some(l) => {
                    if q.is_some_and(|q| q != l) {
                        guaranteed = false;
                    }
                }
            }
        }
    }
    if !any {
        QosClass::BestEffort
    } else if guaranteed {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

type Q = k8s_openapi::apimachinery::pkg::api::resource::Quantity;

fn quantity(q: Option<&Q>) -> Option<api::quantity::Quantity> {
    q.and_then(|q| api::quantity::Quantity::parse(&q.0).ok())
}

/// cgroup limits from a container's requests and limits (cpu in cores, memory in bytes).
pub fn resources_of(c: &Container) -> runtime::Resources {
    let r = c.resources.as_ref();
    let req = |k: &str| quantity(r.and_then(|r| r.requests.as_ref()).and_then(|m| m.get(k)));
    let lim = |k: &str| quantity(r.and_then(|r| r.limits.as_ref()).and_then(|m| m.get(k)));
    let period = 100_000u64;
    // Like upstream: the CPU request falls back to the limit; no request at all gives
    // the minimum weight of 2 shares.
    let cpu_req = req("cpu").or_else(|| lim("cpu"));
    let cpu_lim = lim("cpu").map(|q| q.milli_value().max(0) as u64);
    runtime::Resources {
        cpu_shares: Some(match cpu_req {
            Some(q) => runtime::Resources::shares_from_millis(q.milli_value().max(0) as u64),
            None => 2,
        }),
        cpu_quota: cpu_lim.map(|m| runtime::Resources::quota_from_millis(m, period)),
        cpu_period: cpu_lim.map(|_| period),
        memory_limit: lim("memory").map(|q| q.value()),
        pids_limit: None,
    }
}

fn host_ports_of(pod: &Pod, ip: IpAddr) -> Vec<HostPortMapping> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in &spec.containers {
        for p in c.ports.iter().flatten() {
            let Some(hp) = p.host_port.filter(|p| *p > 0) else {
                continue;
            };
            let protocol = match p.protocol.as_deref() {
                Some("UDP") => Protocol::Udp,
                Some("SCTP") => Protocol::Sctp,
                _ => Protocol::Tcp,
            };
            out.push(HostPortMapping {
                host_port: hp as u16,
                protocol,
                pod_ip: ip,
                container_port: p.container_port as u16,
                host_ip: p
                    .host_ip
                    .as_deref()
                    .and_then(|h| h.parse().ok())
                    .filter(|h: &IpAddr| !h.is_unspecified()),
            });
        }
    }
    out
}

fn ts(s: Option<&str>) -> Option<Timestamp> {
    s.and_then(|s| s.parse().ok())
}

fn to_kubelet_info(c: runtime::ContainerInfo) -> ContainerInfo {
    let l = &c.spec.labels;
    ContainerInfo {
        id: c.id.clone(),
        pod_uid: l
            .get(runtime::spec::labels::POD_UID)
            .cloned()
            .unwrap_or_default(),
        name: l
            .get(runtime::spec::labels::CONTAINER_NAME)
            .cloned()
            .unwrap_or_else(|| c.spec.name.clone()),
        attempt: l
            .get(ATTEMPT_LABEL)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0),
        image: c.spec.image.clone(),
        image_id: l.get(IMAGE_ID_LABEL).cloned().unwrap_or_default(),
        state: match c.state {
            runtime::ContainerState::Created => ContainerState::Created,
            runtime::ContainerState::Running => ContainerState::Running,
            runtime::ContainerState::Exited => ContainerState::Exited,
            runtime::ContainerState::Unknown => ContainerState::Unknown,
        },
        exit_code: c.exit_code,
        reason: c.reason.clone(),
        message: None,
        created_at: ts(Some(&c.created_at)).unwrap_or_else(Timestamp::now),
        started_at: ts(c.started_at.as_deref()),
        finished_at: ts(c.finished_at.as_deref()),
    }
}

#[async_trait::async_trait]
impl PodRuntime for NodeRuntime {
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    async fn update_volume_files(
        &self,
        pod: &Pod,
        files: &std::collections::BTreeMap<String, Vec<kubelet::volumes::VolumeFile>>,
    ) -> Result<(), RuntimeError> {
        volumes::update_api_volumes(&self.cfg.pods_dir(), pod, files).map_err(err)
    }

    async fn ensure_sandbox(&self, pod: &Pod) -> Result<SandboxInfo, RuntimeError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if uid.is_empty() {
            return Err(err("pod has no uid"));
        }
        if let Some(sb) = self.ready_sandbox(&uid) {
            return Ok(sb);
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let host_network = spec.host_network.unwrap_or(false);
        if !host_network && self.network.get().is_none() {
            return Err(err("pod network not ready: the node has no podCIDR yet"));
        }
        let sb = match self.find_sandbox(&uid).await? {
            Some(sb) => sb,
            None => {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let mut hostname = spec.hostname.clone().unwrap_or_else(|| name.clone());
                hostname.truncate(63);
                let mut labels = BTreeMap::new();
                labels.insert(runtime::spec::labels::POD_NAME.to_string(), name.clone());
                labels.insert(
                    runtime::spec::labels::POD_NAMESPACE.to_string(),
                    pod.metadata.namespace.clone().unwrap_or_default(),
                );
                labels.insert(runtime::spec::labels::POD_UID.to_string(), uid.clone());
                let sspec = SandboxSpec {
                    name,
                    namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                    uid: uid.clone(),
                    hostname,
                    host_network,
                    host_pid: spec.host_pid.unwrap_or(false),
                    host_ipc: spec.host_ipc.unwrap_or(false),
                    share_process_namespace: spec.share_process_namespace.unwrap_or(false),
                    qos: qos_class(pod),
                    dns: self.dns_for(pod),
                    host_aliases: spec
                        .host_aliases
                        .iter()
                        .flatten()
                        .map(|a| (a.ip.clone(), a.hostnames.clone().unwrap_or_default()))
                        .collect(),
                    labels,
                };
                let rt = self.runtime.clone();
                blocking(move || rt.create_sandbox(&sspec).map_err(err)).await?
            }
        };
        if host_network {
            let info = SandboxInfo {
                id: sb.id.clone(),
                pod_ips: Vec::new(),
            };
            self.set_ready(&uid, sb.dir, &info);
            return Ok(info);
        }
        let (Some(net), Some(netns)) = (self.network.get(), sb.netns_path.as_deref()) else {
            return Err(err(format!("sandbox {} has no network namespace", sb.id)));
        };
        let st = net.setup_pod(&uid, netns, "eth0").await.map_err(err)?;
        let ip = st.ip;
        {
            let rt = self.runtime.clone();
            let id = sb.id.clone();
            blocking(move || rt.set_sandbox_ip(&id, &ip.to_string()).map_err(err)).await?;
        }
        let ports = host_ports_of(pod, ip);
        let changed = {
            let mut map = self
                .host_ports
                .lock()
                .map_err(|_| err("host port table poisoned"))?;
            if ports.is_empty() {
                map.remove(&uid).is_some()
            } else {
                map.insert(uid.clone(), ports.clone()).as_ref() != Some(&ports)
            }
        };
        if changed {
            self.apply_host_ports().await?;
        }
        let info = SandboxInfo {
            id: sb.id.clone(),
            pod_ips: vec![ip],
        };
        self.set_ready(&uid, sb.dir, &info);
        Ok(info)
    }

    async fn remove_sandbox(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        self.ready
            .lock()
            .map_err(|_| err("sandbox table poisoned"))?
            .remove(pod_uid);
        let had_ports = self
            .host_ports
            .lock()
            .map_err(|_| err("host port table poisoned"))?
            .remove(pod_uid)
            .is_some();
        if had_ports {
            self.apply_host_ports().await?;
        }
        if let Some(sb) = self.find_sandbox(pod_uid).await? {
            if let (Some(net), Some(netns)) = (self.network.get(), sb.netns_path.as_deref()) {
                net.teardown_pod(pod_uid, netns).await.map_err(err)?;
            }
            let rt = self.runtime.clone();
            let id = sb.id.clone();
            blocking(move || rt.remove_sandbox(&id).map_err(err)).await?;
        } else if let Some(net) = self.network.get() {
            // The sandbox is gone but its address may still be held.
            net.teardown_pod(pod_uid, Path::new("/nonexistent"))
                .await
                .map_err(err)?;
        }
        volumes::remove_pod_dir(&self.cfg.pods_dir(), pod_uid).map_err(err)?;
        remove_pod_logs(&self.cfg.logs_dir(), pod_uid).map_err(err)?;
        Ok(())
    }

    async fn container_stats(
        &self,
        id: &str,
    ) -> Result<kubelet::stats::ContainerStats, RuntimeError> {
        let rt = self.runtime.clone();
        let id = id.to_string();
        let s = blocking(move || rt.stats(&id).map_err(err)).await?;
        Ok(kubelet::stats::ContainerStats {
            cpu_usage_ns: s.cpu_usage_ns.unwrap_or(0),
            memory_usage_bytes: s.memory_bytes.unwrap_or(0),
            memory_working_set_bytes: s.memory_working_set_bytes.or(s.memory_bytes).unwrap_or(0),
        })
    }

    async fn pod_network_stats(
        &self,
        pod_uid: &str,
    ) -> Result<Option<kubelet::stats::NetworkStats>, RuntimeError> {
        // The host side of the pod's veth: what it receives the pod sent.
        let dir = Path::new("/sys/class/net")
            .join(network::host_veth_name(pod_uid))
            .join("statistics");
        let read = |f: &str| -> Option<u64> {
            std::fs::read_to_string(dir.join(f))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        let (Some(rx), Some(tx)) = (read("tx_bytes"), read("rx_bytes")) else {
            return Ok(None);
        };
        Ok(Some(kubelet::stats::NetworkStats {
            rx_bytes: rx,
            tx_bytes: tx,
            rx_errors: read("tx_errors").unwrap_or(0),
            tx_errors: read("rx_errors").unwrap_or(0),
        }))
    }

    async fn list_sandbox_uids(&self) -> Result<Vec<String>, RuntimeError> {
        let rt = self.runtime.clone();
        blocking(move || {
            Ok(rt
                .list_sandboxes()
                .map_err(err)?
                .into_iter()
                .map(|s| s.spec.uid)
                .collect())
        })
        .await
    }

    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        match self.images.get(image) {
            Ok(info) => Ok(Some(ImageInfo {
                image: image.to_string(),
                image_id: format!("{}@{}", strip_tag(&info.name), info.target_digest),
                size: info.size,
            })),
            Err(images::ImageError::NotFound(_)) => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    async fn pull_image(
        &self,
        image: &str,
        auth: &[serde_json::Value],
    ) -> Result<ImageInfo, RuntimeError> {
        let mut opts = PullOptions {
            insecure_registries: self.cfg.insecure_registries.clone(),
            ..Default::default()
        };
        for cfg in auth {
            opts.credentials.extend(docker_config_credentials(cfg));
        }
        let info = self
            .images
            .pull(image, &opts)
            .await
            .map_err(|e| RuntimeError::Pull {
                image: image.to_string(),
                message: e.to_string(),
            })?;
        Ok(ImageInfo {
            image: image.to_string(),
            image_id: format!("{}@{}", strip_tag(&info.name), info.target_digest),
            size: info.size,
        })
    }

    async fn create_container(
        &self,
        pod: &Pod,
        sandbox: &SandboxInfo,
        config: &ContainerConfig,
    ) -> Result<String, RuntimeError> {
        let c = &config.spec;
        let (lowerdirs, icfg) = self
            .images
            .rootfs_layers(&config.image.image)
            .await
            .map_err(err)?;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mounts =
            volumes::mounts_for(&self.cfg.pods_dir(), pod, c, &config.volume_files).map_err(err)?;
        let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
        let sc = c.security_context.as_ref();
        let caps = sc.and_then(|s| s.capabilities.as_ref());
        let mut labels = BTreeMap::new();
        labels.insert(runtime::spec::labels::POD_NAME.to_string(), name.clone());
        labels.insert(runtime::spec::labels::POD_NAMESPACE.to_string(), ns.clone());
        labels.insert(runtime::spec::labels::POD_UID.to_string(), uid.clone());
        labels.insert(
            runtime::spec::labels::CONTAINER_NAME.to_string(),
            c.name.clone(),
        );
        labels.insert(ATTEMPT_LABEL.to_string(), config.attempt.to_string());
        labels.insert(IMAGE_ID_LABEL.to_string(), config.image.image_id.clone());
        let spec = ContainerSpec {
            name: c.name.clone(),
            image: config.image.image.clone(),
            rootfs: Some(runtime::Rootfs::Lowerdirs(lowerdirs)),
            image_defaults: image_defaults(icfg),
            command: c.command.clone().unwrap_or_default(),
            args: c.args.clone().unwrap_or_default(),
            env: config.env.clone(),
            working_dir: c.working_dir.clone().filter(|d| !d.is_empty()),
            run_as_user: sc
                .and_then(|s| s.run_as_user)
                .or_else(|| psc.and_then(|s| s.run_as_user))
                .map(|u| u as u32),
            run_as_group: sc
                .and_then(|s| s.run_as_group)
                .or_else(|| psc.and_then(|s| s.run_as_group))
                .map(|g| g as u32),
            supplemental_groups: psc
                .and_then(|s| s.supplemental_groups.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|g| g as u32)
                .collect(),
            mounts,
            resources: resources_of(c),
            privileged: sc.and_then(|s| s.privileged).unwrap_or(false),
            readonly_rootfs: sc
                .and_then(|s| s.read_only_root_filesystem)
                .unwrap_or(false),
            no_new_privs: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
            seccomp: seccomp_of(
                &self.cfg.seccomp_profile_root,
                self.cfg.seccomp_default,
                sc.and_then(|s| s.seccomp_profile.as_ref())
                    .or_else(|| psc.and_then(|s| s.seccomp_profile.as_ref())),
            )?,
            cap_add: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
            cap_drop: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
            hostname: None,
            labels,
            sandbox_id: Some(sandbox.id.clone()),
            log_path: Some(
                self.cfg
                    .logs_dir()
                    .join(format!("{ns}_{name}_{uid}"))
                    .join(&c.name)
                    .join(format!("{}.log", config.attempt)),
            ),
            log_max_size: None,
            log_max_files: None,
            runtime_handler: None,
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
        };
        let rt = self.runtime.clone();
        blocking(move || rt.create_container(&spec).map_err(err)).await
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let rt = self.runtime.clone();
        let id = id.to_string();
        blocking(move || rt.start(&id).map_err(err)).await
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let rt = self.runtime.clone();
        let id = id.to_string();
        blocking(move || rt.stop(&id, grace).map_err(err)).await
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let rt = self.runtime.clone();
        let id = id.to_string();
        blocking(move || match rt.remove(&id) {
            Ok(()) | Err(runtime::Error::NotFound(_)) => Ok(()),
            Err(e) => Err(err(e)),
        })
        .await
    }

    async fn list_containers(
        &self,
        pod_uid: Option<&str>,
    ) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let rt = self.runtime.clone();
        let uid = pod_uid.map(str::to_string);
        blocking(move || {
            Ok(rt
                .list()
                .map_err(err)?
                .into_iter()
                .filter(|c| c.spec.labels.contains_key(runtime::spec::labels::POD_UID))
                .filter(|c| {
                    uid.as_deref().is_none_or(|u| {
                        c.spec
                            .labels
                            .get(runtime::spec::labels::POD_UID)
                            .map(String::as_str)
                            == Some(u)
                    })
                })
                .map(to_kubelet_info)
                .collect())
        })
        .await
    }

    async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        let rt = self.runtime.clone();
        let id = id.to_string();
        let req = runtime::ExecRequest {
            cmd: cmd.to_vec(),
            tty: false,
            resize: None,
        };
        let run = blocking(move || {
            let (mut out_r, out_w) = std::io::pipe().map_err(err)?;
            let (mut err_r, err_w) = std::io::pipe().map_err(err)?;
            let out_t = std::thread::spawn(move || {
                let mut b = Vec::new();
                let _ = out_r.read_to_end(&mut b);
                b
            });
            let err_t = std::thread::spawn(move || {
                let mut b = Vec::new();
                let _ = err_r.read_to_end(&mut b);
                b
            });
            let code = rt
                .exec(
                    &id,
                    &req,
                    std::process::Stdio::null(),
                    out_w.into(),
                    err_w.into(),
                )
                .map_err(err)?;
            Ok(ExecResult {
                exit_code: code,
                stdout: out_t.join().unwrap_or_default(),
                stderr: err_t.join().unwrap_or_default(),
            })
        });
        match tokio::time::timeout(timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(err(format!(
                "command timed out after {}s",
                timeout.as_secs_f64()
            ))),
        }
    }

    fn log_path(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        match self.runtime.log_path(id) {
            Ok(p) => Ok(p),
            Err(runtime::Error::NotFound(_)) => Err(RuntimeError::NotFound(id.to_string())),
            Err(e) => Err(err(e)),
        }
    }

    async fn exec_stream(
        &self,
        id: &str,
        cmd: &[String],
        streams: ExecStreams,
    ) -> Result<i32, RuntimeError> {
        // The runtime's exec is blocking and takes OS handles: bridge the async
        // streams through pipes, one copying task per direction.
        let ExecStreams {
            stdin,
            stdout,
            stderr,
            tty,
            resize,
        } = streams;
        // Terminal sizes go to the exec helper through a pipe (see ExecRequest).
        let (resize_fd, resize_task) = match resize {
            Some(mut sizes) if tty => {
                let (r, w) = std::io::pipe().map_err(err)?;
                let mut w =
                    tokio::fs::File::from_std(std::fs::File::from(std::os::fd::OwnedFd::from(w)));
                let task = tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    while let Some(sz) = sizes.recv().await {
                        let frame = runtime::attach::resize_frame(sz.width, sz.height);
                        if w.write_all(&frame).await.is_err() || w.flush().await.is_err() {
                            break;
                        }
                    }
                });
                (Some(Arc::new(std::os::fd::OwnedFd::from(r))), Some(task))
            }
            _ => (None, None),
        };
        let (stdin_stdio, stdin_task) = match stdin {
            Some(mut input) => {
                let (r, w) = std::io::pipe().map_err(err)?;
                let mut w =
                    tokio::fs::File::from_std(std::fs::File::from(std::os::fd::OwnedFd::from(w)));
                let task = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut input, &mut w).await;
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut w).await;
                });
                (std::process::Stdio::from(r), Some(task))
            }
            None => (std::process::Stdio::null(), None),
        };
        let out_pipe = |sink: Option<kubelet::runtime::ExecOutput>| -> Result<
            (std::process::Stdio, Option<tokio::task::JoinHandle<()>>),
            RuntimeError,
        > {
            match sink {
                Some(mut sink) => {
                    let (r, w) = std::io::pipe().map_err(err)?;
                    let mut r = tokio::fs::File::from_std(std::fs::File::from(
                        std::os::fd::OwnedFd::from(r),
                    ));
                    let task = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut r, &mut sink).await;
                        let _ = tokio::io::AsyncWriteExt::flush(&mut sink).await;
                        drop(sink);
                    });
                    Ok((std::process::Stdio::from(w), Some(task)))
                }
                None => Ok((std::process::Stdio::null(), None)),
            }
        };
        let (out_stdio, out_task) = out_pipe(stdout)?;
        let (err_stdio, err_task) = out_pipe(stderr)?;
        let rt = self.runtime.clone();
        let id = id.to_string();
        let req = runtime::ExecRequest {
            cmd: cmd.to_vec(),
            tty,
            resize: resize_fd,
        };
        let code = blocking(move || {
            rt.exec(&id, &req, stdin_stdio, out_stdio, err_stdio)
                .map_err(err)
        })
        .await;
        for t in [stdin_task, resize_task].into_iter().flatten() {
            t.abort();
        }
        for t in [out_task, err_task].into_iter().flatten() {
            let _ = t.await;
        }
        code
    }

    async fn attach(&self, id: &str, streams: ExecStreams) -> Result<(), RuntimeError> {
        use runtime::attach::{CLOSE_STDIN, MAX_FRAME, STDERR, STDIN, STDOUT, encode};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let ExecStreams {
            stdin,
            mut stdout,
            mut stderr,
            tty: _,
            resize,
        } = streams;
        let opts = runtime::AttachOptions {
            stdin: stdin.is_some(),
            stdout: stdout.is_some(),
            stderr: stderr.is_some(),
        };
        let rt = self.runtime.clone();
        let cid = id.to_string();
        let conn = blocking(move || match rt.attach(&cid, opts) {
            Ok(c) => Ok(c),
            Err(runtime::Error::NotFound(_)) => Err(RuntimeError::NotFound(cid)),
            Err(e) => Err(err(e)),
        })
        .await?;
        let sock = conn.into_stream();
        sock.set_nonblocking(true).map_err(err)?;
        let (mut rd, mut wr) = tokio::net::UnixStream::from_std(sock)
            .map_err(err)?
            .into_split();
        // Input and resizes to the shim. The write half stays open until the end: the
        // shim takes its closing as the client leaving.
        let input = tokio::spawn(async move {
            let (mut stdin, mut resize) = (stdin, resize);
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let frame = tokio::select! {
                    Some(size) = async { resize.as_mut()?.recv().await } => {
                        runtime::attach::resize_frame(size.width, size.height)
                    }
                    n = async {
                        match stdin.as_mut() {
                            Some(i) => i.read(&mut buf).await,
                            None => std::future::pending().await,
                        }
                    } => match n {
                        Ok(n) if n > 0 => encode(STDIN, &buf[..n]),
                        _ => {
                            stdin = None;
                            encode(CLOSE_STDIN, &[])
                        }
                    },
                };
                if wr.write_all(&frame).await.is_err() {
                    return;
                }
            }
        });
        // Output from the shim until it closes the connection (the container exited or
        // the client detached) or the client's side goes away.
        while let Ok(kind) = rd.read_u8().await {
            let Ok(len) = rd.read_u32().await else { break };
            if len as usize > MAX_FRAME {
                tracing::warn!(container = id, len, "attach: oversized frame from the shim");
                break;
            }
            let mut payload = vec![0u8; len as usize];
            if rd.read_exact(&mut payload).await.is_err() {
                break;
            }
            let sink = match kind {
                STDOUT => stdout.as_mut(),
                STDERR => stderr.as_mut(),
                _ => None,
            };
            if let Some(sink) = sink
                && (sink.write_all(&payload).await.is_err() || sink.flush().await.is_err())
            {
                break;
            }
        }
        input.abort();
        for s in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
            let _ = s.flush().await;
        }
        Ok(())
    }

    async fn port_forward(
        &self,
        pod_uid: &str,
        port: u16,
    ) -> Result<tokio::net::TcpStream, RuntimeError> {
        let sb = self
            .find_sandbox(pod_uid)
            .await?
            .ok_or_else(|| RuntimeError::NotFound(format!("sandbox of pod {pod_uid}")))?;
        let netns = sb.netns_path.clone();
        let std_stream = blocking(move || {
            // The socket is made and connected on a thread inside the pod's network
            // namespace; it stays bound to that namespace when used from the host's.
            let connect = || connect_loopback(port);
            let r = match &netns {
                Some(path) => network::Netns::open(path)
                    .and_then(|ns| ns.run(connect))
                    .map_err(|e| err(format!("entering the pod network namespace: {e}")))?,
                None => connect(),
            };
            r.map_err(|e| {
                let place = match &netns {
                    Some(p) => format!("inside namespace {:?}", p.display().to_string()),
                    None => "on the node (host network)".to_string(),
                };
                err(format!(
                    "failed to connect to localhost:{port} {place}: {e}"
                ))
            })
        })
        .await?;
        std_stream.set_nonblocking(true).map_err(err)?;
        tokio::net::TcpStream::from_std(std_stream).map_err(err)
    }
}

/// How long connecting to a forwarded port may take.
const PORT_FORWARD_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connect to `port` on IPv4 loopback, then IPv6 loopback (as containerd does).
fn connect_loopback(port: u16) -> std::io::Result<std::net::TcpStream> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpStream::connect_timeout(&v4, PORT_FORWARD_CONNECT_TIMEOUT) {
        Ok(s) => Ok(s),
        Err(e4) => {
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            TcpStream::connect_timeout(&v6, PORT_FORWARD_CONNECT_TIMEOUT)
                .map_err(|e6| std::io::Error::new(e4.kind(), format!("IPv4: {e4}; IPv6: {e6}")))
        }
    }
}

/// The runtime's seccomp profile for a container's effective `seccompProfile` (its own,
/// else the pod's): `RuntimeDefault`, `Localhost` (a JSON profile under `root`, e.g.
/// `profiles/audit.json`), or unconfined (`Unconfined` or none, the Kubernetes default).
fn seccomp_of(
    root: &Path,
    default_runtime_default: bool,
    profile: Option<&k8s_openapi::api::core::v1::SeccompProfile>,
) -> Result<Option<runtime::seccomp::Seccomp>, RuntimeError> {
    let Some(p) = profile else {
        return Ok(default_runtime_default.then_some(runtime::seccomp::Seccomp::RuntimeDefault));
    };
    match p.type_.as_str() {
        "RuntimeDefault" => Ok(Some(runtime::seccomp::Seccomp::RuntimeDefault)),
        "Localhost" => {
            let rel = p.localhost_profile.as_deref().unwrap_or_default();
            let rel_path = Path::new(rel);
            if rel.is_empty()
                || rel_path.is_absolute()
                || rel_path
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(RuntimeError::Other(format!(
                    "seccomp: localhostProfile {rel:?} must be a relative path inside {}",
                    root.display()
                )));
            }
            let path = root.join(rel_path);
            let bytes = std::fs::read(&path).map_err(|e| {
                RuntimeError::Other(format!(
                    "seccomp: cannot read localhost profile {}: {e}",
                    path.display()
                ))
            })?;
            let parsed = runtime::seccomp::parse_profile(&bytes)
                .map_err(|e| RuntimeError::Other(format!("{}: {e}", path.display())))?;
            // Compile once here so a broken profile is this container's clear error,
            // not a failure deep in its init.
            runtime::seccomp::compile(&parsed)
                .map_err(|e| RuntimeError::Other(format!("{}: {e}", path.display())))?;
            let unknown = runtime::seccomp::unknown_names(&parsed);
            if !unknown.is_empty() {
                tracing::warn!(profile = %path.display(), "seccomp: unknown system calls skipped: {unknown:?}");
            }
            Ok(Some(runtime::seccomp::Seccomp::Profile(parsed)))
        }
        _ => Ok(None),
    }
}

/// The runtime's view of an image's config (entrypoint, cmd, env, workdir, user, stop
/// signal), for containers created from that image.
pub fn image_defaults(icfg: images::ImageConfig) -> runtime::ImageDefaults {
    runtime::ImageDefaults {
        entrypoint: icfg.entrypoint,
        cmd: icfg.cmd,
        env: icfg.env,
        working_dir: Some(icfg.working_dir).filter(|d| !d.is_empty()),
        user: Some(icfg.user).filter(|u| !u.is_empty()),
        stop_signal: icfg.stop_signal,
    }
}

/// Registry credentials from the contents of a `.dockerconfigjson` pull secret
/// (`{"auths": {"host": {"username", "password"} or {"auth": base64("user:pass")}}}`).
pub fn docker_config_credentials(cfg: &serde_json::Value) -> Vec<(String, images::Credentials)> {
    use base64::Engine as _;
    let Some(auths) = cfg.get("auths").and_then(|a| a.as_object()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (host, entry) in auths {
        let field = |k: &str| entry.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let (user, pass) = match (field("username"), field("password")) {
            (Some(u), Some(p)) => (u, p),
            _ => {
                let Some(decoded) = field("auth")
                    .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok())
                    .and_then(|b| String::from_utf8(b).ok())
                else {
                    continue;
                };
                let Some((u, p)) = decoded.split_once(':') else {
                    continue;
                };
                (u.to_string(), p.to_string())
            }
        };
        out.push((
            host.clone(),
            images::Credentials::Basic {
                username: user,
                password: pass,
            },
        ));
    }
    out
}

/// `registry/name:tag` → `registry/name` (for `name@digest` image ids).
fn strip_tag(name: &str) -> &str {
    let name = name.split('@').next().unwrap_or(name);
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn container(req: &[(&str, &str)], lim: &[(&str, &str)]) -> Container {
        let m = |kv: &[(&str, &str)]| {
            (!kv.is_empty()).then(|| {
                kv.iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: m(req),
                limits: m(lim),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(cs: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: cs,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn qos_classes_follow_upstream() {
        assert_eq!(
            qos_class(&pod(vec![container(&[], &[])])),
            QosClass::BestEffort
        );
        assert_eq!(
            qos_class(&pod(vec![container(
                &[],
                &[("cpu", "1"), ("memory", "1Gi")]
            )])),
            QosClass::Guaranteed
        );
        assert_eq!(
            qos_class(&pod(vec![container(
                &[("cpu", "500m"), ("memory", "1Gi")],
                &[("cpu", "1"), ("memory", "1Gi")]
            )])),
            QosClass::Burstable
        );
        assert_eq!(
            qos_class(&pod(vec![container(&[("cpu", "100m")], &[])])),
            QosClass::Burstable
        );
    }

    #[test]
    fn resources_map_to_cgroup_limits() {
        let r = resources_of(&container(
            &[("cpu", "250m")],
            &[("cpu", "500m"), ("memory", "64Mi")],
        ));
        assert_eq!(r.cpu_shares, Some(256));
        assert_eq!(r.cpu_quota, Some(50_000));
        assert_eq!(r.cpu_period, Some(100_000));
        assert_eq!(r.memory_limit, Some(64 * 1024 * 1024));
        let none = resources_of(&container(&[], &[]));
        assert_eq!(none.cpu_shares, Some(2));
        assert_eq!(none.cpu_quota, None);
        assert_eq!(none.memory_limit, None);
    }

    #[test]
    fn pull_secrets_give_basic_credentials() {
        let cfg = serde_json::json!({"auths": {
            "127.0.0.1:5000": {"username": "u", "password": "p"},
            "r.example": {"auth": "YWxpY2U6czNjcmV0"},
            "broken": {"auth": "!!"}
        }});
        let creds = docker_config_credentials(&cfg);
        assert_eq!(creds.len(), 2);
        assert!(creds.iter().any(|(h, c)| h == "r.example"
            && matches!(c, images::Credentials::Basic { username, password } if username == "alice" && password == "s3cret")));
    }

    #[test]
    fn image_ids_drop_the_tag() {
        assert_eq!(
            strip_tag("docker.io/library/busybox:1.36"),
            "docker.io/library/busybox"
        );
        assert_eq!(
            strip_tag("127.0.0.1:5000/busybox:t"),
            "127.0.0.1:5000/busybox"
        );
        assert_eq!(
            strip_tag("127.0.0.1:5000/busybox"),
            "127.0.0.1:5000/busybox"
        );
    }
}
