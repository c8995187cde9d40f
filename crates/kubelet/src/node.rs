//! The node's presence in the API: registration (capacity, addresses, nodeInfo,
//! labels, taints), the Lease heartbeat in `kube-node-lease`, and node status with
//! the pressure conditions. Re-registers when the Node object is deleted.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::{Threshold, parse_threshold};

/// Namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The kubelet version reported in nodeInfo, matching the API server's `/version`.
pub const KUBELET_VERSION: &str = "v1.33.0";

/// Errors talking to the API about the node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("node {node}: {source}")]
    Api { node: String, source: kube::Error },
}

/// What the node agent needs to know.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    pub name: String,
    pub ip: IpAddr,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub root_dir: PathBuf,
    pub max_pods: i32,
    pub port: i32,
    pub pod_cidr: String,
    pub eviction_hard: BTreeMap<String, String>,
    pub runtime_version: String,
    pub lease_duration_seconds: i32,
    pub status_update: Duration,
    pub status_report: Duration,
}

/// Facts about this machine.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MachineInfo {
    pub cpus: u64,
    pub memory_bytes: u64,
    pub storage_bytes: u64,
    pub kernel: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
}

/// Read a `key: value kB` line of /proc/meminfo, in bytes.
pub fn meminfo_bytes(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let n: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(n * 1024)
    })
}

/// `PRETTY_NAME` of an os-release file.
pub fn os_pretty_name(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix("PRETTY_NAME=")?;
        Some(v.trim().trim_matches('"').to_string())
    })
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Gather [`MachineInfo`] from /proc, uname, os-release and statvfs of `root_dir`.
pub fn machine_info(root_dir: &Path) -> MachineInfo {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1);
    let memory_bytes = meminfo_bytes(&read("/proc/meminfo"), "MemTotal").unwrap_or(0);
    let storage_bytes = fs_stats(root_dir).map(|s| s.0).unwrap_or(0);
    let kernel = nix::sys::utsname::uname()
        .ok()
        .and_then(|u| u.release().to_str().map(String::from))
        .unwrap_or_default();
    let os_image = os_pretty_name(&read("/etc/os-release")).unwrap_or_else(|| "Linux".into());
    MachineInfo {
        cpus,
        memory_bytes,
        storage_bytes,
        kernel,
        os_image,
        machine_id: read("/etc/machine-id").trim().to_string(),
        boot_id: read("/proc/sys/kernel/random/boot_id").trim().to_string(),
    }
}

/// (total, available) bytes of the filesystem holding `path` (or its nearest
/// existing ancestor).
fn fs_stats(path: &Path) -> Option<(u64, u64)> {
    let mut p = Some(path);
    while let Some(dir) = p {
        if let Ok(s) = nix::sys::statvfs::statvfs(dir) {
            let f = s.fragment_size();
            return Some((s.blocks() * f, s.blocks_available() * f));
        }
        p = dir.parent();
    }
    None
}

/// The architecture name Kubernetes uses.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The source address of the default route (a UDP "connect" sends no packet), or
/// loopback when there is none.
pub fn detect_node_ip() -> IpAddr {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

/// Standard node labels, then `extra` (`--node-labels`).
pub fn node_labels(name: &str, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = [
        ("beta.kubernetes.io/arch", go_arch()),
        ("beta.kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", go_arch()),
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    l.extend(extra.clone());
    l
}

fn q(s: String) -> Quantity {
    Quantity(s)
}

fn percent_of(total: u64, t: &Threshold) -> u64 {
    match t {
        Threshold::Quantity(v) => (*v).max(0) as u64,
        Threshold::Percent(p) => (total as f64 * p / 100.0) as u64,
    }
}

/// Capacity and allocatable (capacity minus the hard eviction thresholds).
pub fn resources(
    m: &MachineInfo,
    s: &NodeSettings,
) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let mut cap = BTreeMap::new();
    cap.insert("cpu".into(), q(m.cpus.to_string()));
    cap.insert("memory".into(), q(format!("{}Ki", m.memory_bytes / 1024)));
    cap.insert(
        "ephemeral-storage".into(),
        q(format!("{}Ki", m.storage_bytes / 1024)),
    );
    cap.insert("pods".into(), q(s.max_pods.to_string()));
    cap.insert("hugepages-2Mi".into(), q("0".into()));
    let mut alloc = cap.clone();
    let th = |k: &str| s.eviction_hard.get(k).and_then(|v| parse_threshold(v).ok());
    if let Some(t) = th("memory.available") {
        let m2 = m
            .memory_bytes
            .saturating_sub(percent_of(m.memory_bytes, &t));
        alloc.insert("memory".into(), q(format!("{}Ki", m2 / 1024)));
    }
    if let Some(t) = th("nodefs.available") {
        let s2 = m
            .storage_bytes
            .saturating_sub(percent_of(m.storage_bytes, &t));
        alloc.insert("ephemeral-storage".into(), q(s2.to_string()));
    }
    (cap, alloc)
}

/// Condition statuses measured now: (memory pressure, disk pressure, pid pressure).
pub fn pressures(s: &NodeSettings) -> (bool, bool, bool) {
    let th = |k: &str| s.eviction_hard.get(k).and_then(|v| parse_threshold(v).ok());
    let mem = read("/proc/meminfo");
    let mem_pressure = match (
        meminfo_bytes(&mem, "MemTotal"),
        meminfo_bytes(&mem, "MemAvailable"),
        th("memory.available"),
    ) {
        (Some(total), Some(avail), Some(t)) => avail < percent_of(total, &t),
        _ => false,
    };
    let disk_pressure = match (fs_stats(&s.root_dir), th("nodefs.available")) {
        (Some((total, avail)), Some(t)) => avail < percent_of(total, &t),
        _ => false,
    };
    // /proc/loadavg's fourth field is running/total tasks.
    let pid_pressure = {
        let max: u64 = read("/proc/sys/kernel/pid_max").trim().parse().unwrap_or(0);
        let total: u64 = read("/proc/loadavg")
            .split_whitespace()
            .nth(3)
            .and_then(|f| f.split('/').nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        max > 0 && total * 10 > max * 9
    };
    (mem_pressure, disk_pressure, pid_pressure)
}

/// The four conditions with upstream's reasons and messages. Transition times are
/// kept from `previous` where the status did not change.
pub fn conditions(
    pressure: (bool, bool, bool),
    ready: bool,
    previous: &[NodeCondition],
    now: Timestamp,
) -> Vec<NodeCondition> {
    let make = |type_: &str, on: bool, yes: (&str, &str), no: (&str, &str)| {
        let status = if on { "True" } else { "False" };
        let (reason, message) = if on { yes } else { no };
        let since = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        NodeCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(since),
        }
    };
    vec![
        make(
            "MemoryPressure",
            pressure.0,
            (
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            ),
            (
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
        ),
        make(
            "DiskPressure",
            pressure.1,
            ("KubeletHasDiskPressure", "kubelet has disk pressure"),
            ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ),
        make(
            "PIDPressure",
            pressure.2,
            (
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            ),
            (
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
        ),
        make(
            "Ready",
            ready,
            ("KubeletReady", "kubelet is posting ready status"),
            ("KubeletNotReady", "container runtime is not ready"),
        ),
    ]
}

/// The full node status.
pub fn node_status(
    m: &MachineInfo,
    s: &NodeSettings,
    conditions: Vec<NodeCondition>,
) -> NodeStatus {
    let (cap, alloc) = resources(m, s);
    NodeStatus {
        capacity: Some(cap),
        allocatable: Some(alloc),
        conditions: Some(conditions),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: s.ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: s.name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: s.port }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: go_arch().into(),
            boot_id: m.boot_id.clone(),
            container_runtime_version: format!("flotilla://{}", s.runtime_version),
            kernel_version: m.kernel.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: m.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: m.os_image.clone(),
            swap: None,
            system_uuid: m.machine_id.clone(),
        }),
        ..Default::default()
    }
}

/// The Node object to register.
pub fn node_object(s: &NodeSettings) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(s.name.clone()),
            labels: Some(node_labels(&s.name, &s.labels)),
            annotations: Some(
                [(
                    "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
                    "true".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!s.taints.is_empty()).then(|| s.taints.clone()),
            pod_cidr: (!s.pod_cidr.is_empty()).then(|| s.pod_cidr.clone()),
            ..Default::default()
        }),
        status: None,
    }
}

/// The node as registered: its uid once known (mirror pods reference it).
#[derive(Clone, Default)]
pub struct NodeHandle {
    uid: Arc<RwLock<Option<String>>>,
}

impl NodeHandle {
    /// The Node's uid, once registered.
    pub fn uid(&self) -> Option<String> {
        self.uid.read().map(|u| u.clone()).unwrap_or(None)
    }
    fn set(&self, uid: Option<String>) {
        if let Ok(mut g) = self.uid.write() {
            *g = uid;
        }
    }
}

fn api_err(node: &str) -> impl Fn(kube::Error) -> NodeError + '_ {
    move |source| NodeError::Api {
        node: node.into(),
        source,
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Create the Node (or adopt the existing one), returning its uid.
async fn register(client: &kube::Client, s: &NodeSettings) -> Result<String, NodeError> {
    let api: Api<Node> = Api::all(client.clone());
    let node = match api.create(&PostParams::default(), &node_object(s)).await {
        Ok(n) => n,
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let patch = json!({"metadata": {"labels": node_labels(&s.name, &s.labels)}});
            api.patch(&s.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api_err(&s.name))?
        }
        Err(e) => return Err(api_err(&s.name)(e)),
    };
    tracing::info!(node = %s.name, "node registered");
    Ok(node.metadata.uid.unwrap_or_default())
}

async fn renew_lease(
    client: &kube::Client,
    s: &NodeSettings,
    node_uid: &str,
) -> Result<(), NodeError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let now = MicroTime(Timestamp::now());
    let patch = json!({"spec": {"holderIdentity": s.name,
        "leaseDurationSeconds": s.lease_duration_seconds, "renewTime": now}});
    match api
        .patch(&s.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(s.name.clone()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    owner_references: Some(vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: s.name.clone(),
                        uid: node_uid.into(),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(s.name.clone()),
                    lease_duration_seconds: Some(s.lease_duration_seconds),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            api.create(&PostParams::default(), &lease)
                .await
                .map(|_| ())
                .map_err(api_err(&s.name))
        }
        Err(e) => Err(api_err(&s.name)(e)),
    }
}

fn condition_statuses(c: &[NodeCondition]) -> Vec<(String, String)> {
    c.iter()
        .map(|c| (c.type_.clone(), c.status.clone()))
        .collect()
}

/// Keep the node registered, its Lease renewed and its status posted until
/// `shutdown`. Errors (API unreachable) are logged and retried.
pub async fn run_node(
    client: kube::Client,
    s: NodeSettings,
    handle: NodeHandle,
    shutdown: CancellationToken,
) {
    let machine = machine_info(&s.root_dir);
    let api: Api<Node> = Api::all(client.clone());
    let renew = Duration::from_millis((s.lease_duration_seconds.max(1) as u64) * 250);
    let mut next_lease = tokio::time::Instant::now();
    let mut next_status = tokio::time::Instant::now();
    let mut last_report: Option<tokio::time::Instant> = None;
    let mut last_conditions: Vec<NodeCondition> = Vec::new();
    let mut retry = Duration::from_millis(200);
    loop {
        if handle.uid().is_none() {
            match register(&client, &s).await {
                Ok(uid) => {
                    handle.set(Some(uid));
                    last_report = None;
                    retry = Duration::from_millis(200);
                    next_lease = tokio::time::Instant::now();
                    next_status = tokio::time::Instant::now();
                }
                Err(e) => {
                    tracing::warn!("registering node: {e}");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(Duration::from_secs(7));
                    continue;
                }
            }
        }
        let now = tokio::time::Instant::now();
        if now >= next_lease {
            let uid = handle.uid().unwrap_or_default();
            if let Err(e) = renew_lease(&client, &s, &uid).await {
                tracing::warn!("renewing lease: {e}");
            }
            next_lease = now + renew;
        }
        if now >= next_status {
            next_status = now + s.status_update;
            match api.get_opt(&s.name).await {
                Ok(None) => {
                    tracing::warn!(node = %s.name, "node object deleted; registering again");
                    handle.set(None);
                    continue;
                }
                Ok(Some(node)) => {
                    let previous = node
                        .status
                        .as_ref()
                        .and_then(|st| st.conditions.clone())
                        .unwrap_or_default();
                    let conds = conditions(pressures(&s), true, &previous, Timestamp::now());
                    let changed = condition_statuses(&conds) != condition_statuses(&previous)
                        || condition_statuses(&conds) != condition_statuses(&last_conditions);
                    let due = last_report.is_none_or(|t| now.duration_since(t) >= s.status_report);
                    if changed || due {
                        let status = node_status(&machine, &s, conds.clone());
                        let patch = json!({"status": status});
                        match api
                            .patch_status(&s.name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                        {
                            Ok(_) => {
                                last_report = Some(now);
                                last_conditions = conds;
                            }
                            Err(e) => tracing::warn!("posting node status: {e}"),
                        }
                    }
                }
                Err(e) => tracing::warn!("reading node: {e}"),
            }
        }
        let wake = next_lease.min(next_status);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_os_release() {
        let mem = "MemTotal:       16314300 kB\nMemFree:  100 kB\nMemAvailable:   8000 kB\n";
        assert_eq!(meminfo_bytes(mem, "MemTotal"), Some(16314300 * 1024));
        assert_eq!(meminfo_bytes(mem, "MemAvailable"), Some(8000 * 1024));
        assert_eq!(meminfo_bytes(mem, "Swap"), None);
        let os = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            os_pretty_name(os).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn conditions_keep_transition_times_and_use_upstream_reasons() {
        let t0 = Timestamp::from_second(1_000).expect("ts");
        let t1 = Timestamp::from_second(2_000).expect("ts");
        let first = conditions((false, false, false), true, &[], t0);
        let ready = first.iter().find(|c| c.type_ == "Ready").expect("ready");
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("kubelet is posting ready status")
        );
        let second = conditions((true, false, false), true, &first, t1);
        let mem = second
            .iter()
            .find(|c| c.type_ == "MemoryPressure")
            .expect("mem");
        assert_eq!(mem.status, "True");
        assert_eq!(mem.last_transition_time, Some(Time(t1)));
        let ready = second.iter().find(|c| c.type_ == "Ready").expect("ready");
        assert_eq!(ready.last_transition_time, Some(Time(t0)));
        assert_eq!(ready.last_heartbeat_time, Some(Time(t1)));
    }

    #[test]
    fn allocatable_subtracts_hard_eviction() {
        let m = MachineInfo {
            cpus: 2,
            memory_bytes: 1024 * 1024 * 1024,
            storage_bytes: 1000 * 1024,
            ..Default::default()
        };
        let s = NodeSettings {
            name: "n".into(),
            ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            labels: Default::default(),
            taints: vec![],
            root_dir: "/".into(),
            max_pods: 110,
            port: 10250,
            pod_cidr: String::new(),
            eviction_hard: crate::config::default_eviction_hard(),
            runtime_version: "x".into(),
            lease_duration_seconds: 40,
            status_update: Duration::from_secs(10),
            status_report: Duration::from_secs(300),
        };
        let (cap, alloc) = resources(&m, &s);
        assert_eq!(cap["memory"].0, "1048576Ki");
        assert_eq!(alloc["memory"].0, format!("{}Ki", 1048576 - 102400));
        assert_eq!(cap["pods"].0, "110");
        assert_eq!(
            alloc["ephemeral-storage"].0,
            (1000 * 1024 * 9 / 10).to_string()
        );
    }
}
