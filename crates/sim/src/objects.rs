//! What a hollow node writes: its Node object and status, its Lease, and the status of
//! the pods it "runs" — built here as plain data, with no I/O, so every field is
//! unit-tested. Field values follow what an upstream kubelet reports.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
    DaemonEndpoint, HostIP, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec,
    NodeStatus, NodeSystemInfo, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::Config;

/// Pod annotation: once Running, the pod's containers exit after this Go duration
/// (`"5s"`). Honoured for `restartPolicy` `Never` and `OnFailure`, so Jobs complete.
pub const RUN_FOR_ANNOTATION: &str = "sim.flotilla.io/run-for";
/// Pod annotation: the exit code of a pod with [`RUN_FOR_ANNOTATION`] (default 0). A
/// non-zero code fails the pod with `restartPolicy: Never`; `OnFailure` pods always
/// complete with 0 (the sim does not simulate container restarts).
pub const EXIT_CODE_ANNOTATION: &str = "sim.flotilla.io/exit-code";

/// The value of the `type` label (kwok uses `type: kwok`).
pub const NODE_TYPE: &str = "hollow";
pub const OS_IMAGE: &str = "Flotilla hollow node";
pub const RUNTIME_VERSION: &str = "flotilla-sim://0.1";
pub const KERNEL_VERSION: &str = "6.1.0-flotilla-sim";
pub const KUBELET_PORT: i32 = 10250;
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

fn hash_hex(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// A UUID-shaped id derived from `parts` (machine id, system UUID, boot id).
fn uuid_from(parts: &[&str]) -> String {
    let h = hash_hex(parts);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The labels a hollow node registers with: the kubelet's well-known ones, the
/// `type=hollow` marker, then `--node-labels`.
pub fn node_labels(cfg: &Config, name: &str) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    for (k, v) in [
        ("beta.kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("node.kubernetes.io/instance-type", NODE_TYPE),
        ("type", NODE_TYPE),
    ] {
        l.insert(k.to_string(), v.to_string());
    }
    l.extend(cfg.labels.clone());
    l
}

/// Annotations the kubelet sets on its Node.
pub fn node_annotations() -> BTreeMap<String, String> {
    [(
        "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
        "true".to_string(),
    )]
    .into()
}

/// Everything a node reports about itself, with `Ready` true since `ready_since`.
pub fn node_status(
    cfg: &Config,
    name: &str,
    ip: IpAddr,
    boot_id: &str,
    ready_since: Timestamp,
    now: Timestamp,
) -> NodeStatus {
    let cond = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(ready_since)),
    };
    NodeStatus {
        capacity: Some(cfg.capacity.clone()),
        allocatable: Some(cfg.capacity.clone()),
        conditions: Some(vec![
            cond(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            cond(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            cond(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            cond(
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
            ),
        ]),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: name.into(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: KUBELET_PORT }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".into(),
            boot_id: boot_id.into(),
            container_runtime_version: RUNTIME_VERSION.into(),
            kernel_version: KERNEL_VERSION.into(),
            kube_proxy_version: String::new(),
            kubelet_version: cfg.kubelet_version.clone(),
            machine_id: hash_hex(&["machine", name])[..32].to_string(),
            operating_system: "linux".into(),
            os_image: OS_IMAGE.into(),
            swap: None,
            system_uuid: uuid_from(&["system", name]),
        }),
        ..Default::default()
    }
}

/// A boot id for one run of node `name` (changes with `run`, like a reboot).
pub fn boot_id(name: &str, run: &str) -> String {
    uuid_from(&["boot", name, run])
}

/// The Node a hollow node registers.
pub fn node(cfg: &Config, name: &str, status: NodeStatus) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(node_labels(cfg, name)),
            annotations: Some(node_annotations()),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!cfg.taints.is_empty()).then(|| cfg.taints.clone()),
            ..Default::default()
        }),
        status: Some(status),
    }
}

/// Whether a node's reported conditions differ from what a healthy hollow node
/// reports (e.g. the node lifecycle controller set them Unknown), so it must post its
/// status again now.
pub fn status_needs_update(node: &Node) -> bool {
    let conds = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let status_of = |t: &str| {
        conds
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| c.status.as_str())
    };
    status_of("Ready") != Some("True")
        || ["MemoryPressure", "DiskPressure", "PIDPressure"]
            .iter()
            .any(|t| status_of(t) != Some("False"))
}

/// The node's pod CIDRs (`spec.podCIDRs`, else `spec.podCIDR`).
pub fn pod_cidrs(node: &Node) -> Vec<String> {
    let Some(spec) = node.spec.as_ref() else {
        return Vec::new();
    };
    match (&spec.pod_cidrs, &spec.pod_cidr) {
        (Some(v), _) if !v.is_empty() => v.clone(),
        (_, Some(c)) if !c.is_empty() => vec![c.clone()],
        _ => Vec::new(),
    }
}

/// The node's Lease, owned by its Node so the garbage collector removes it with it.
pub fn lease(name: &str, node_uid: Option<&str>, duration_seconds: i32, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(LEASE_NAMESPACE.into()),
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: name.into(),
                    uid: uid.into(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.into()),
            lease_duration_seconds: Some(duration_seconds),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// The merge patch that renews a Lease.
pub fn lease_renewal(name: &str, duration_seconds: i32, now: Timestamp) -> Value {
    json!({"spec": {
        "holderIdentity": name,
        "leaseDurationSeconds": duration_seconds,
        "renewTime": MicroTime(now),
    }})
}

/// One container of a pod, as the node needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    pub image: String,
    /// An init container with `restartPolicy: Always` (a sidecar): it keeps running.
    pub sidecar: bool,
}

/// The parts of a Pod a hollow node acts on (kept instead of the whole object, so
/// thousands of pods cost little memory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub containers: Vec<Container>,
    pub init_containers: Vec<Container>,
    pub restart_policy: String,
    pub host_network: bool,
    /// Set when the pod is being deleted: its grace period.
    pub deleting: Option<Duration>,
    pub has_finalizers: bool,
    pub phase: String,
    pub pod_ips: Vec<IpAddr>,
    pub start_time: Option<Timestamp>,
    pub has_scheduled_condition: bool,
    /// [`RUN_FOR_ANNOTATION`], when valid.
    pub run_for: Option<Duration>,
    pub exit_code: i32,
}

impl PodInfo {
    /// What the node needs of `pod`; `None` for a pod with no uid, name or node.
    pub fn from_pod(pod: &Pod) -> Option<PodInfo> {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref()?;
        let node = spec.node_name.clone().filter(|n| !n.is_empty())?;
        let status = pod.status.clone().unwrap_or_default();
        let containers = spec
            .containers
            .iter()
            .map(|c| Container {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                sidecar: false,
            })
            .collect();
        let init_containers = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| Container {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                sidecar: c.restart_policy.as_deref() == Some("Always"),
            })
            .collect();
        let restart_policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let annotations = meta.annotations.clone().unwrap_or_default();
        let run_for = (restart_policy != "Always")
            .then(|| annotations.get(RUN_FOR_ANNOTATION))
            .flatten()
            .and_then(|s| api::duration::parse(s).ok());
        let exit_code = annotations
            .get(EXIT_CODE_ANNOTATION)
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|_| restart_policy == "Never")
            .unwrap_or(0);
        let mut pod_ips: Vec<IpAddr> = status
            .pod_ips
            .iter()
            .flatten()
            .filter_map(|p| p.ip.parse().ok())
            .collect();
        if pod_ips.is_empty()
            && let Some(ip) = status.pod_ip.as_deref().and_then(|s| s.parse().ok())
        {
            pod_ips.push(ip);
        }
        Some(PodInfo {
            uid: meta.uid.clone()?,
            namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
            name: meta.name.clone()?,
            node,
            containers,
            init_containers,
            restart_policy,
            host_network: spec.host_network == Some(true),
            deleting: meta.deletion_timestamp.as_ref().map(|_| {
                Duration::from_secs(
                    meta.deletion_grace_period_seconds
                        .unwrap_or(0)
                        .max(0)
                        .unsigned_abs(),
                )
            }),
            has_finalizers: meta.finalizers.as_ref().is_some_and(|f| !f.is_empty()),
            phase: status.phase.unwrap_or_else(|| "Pending".into()),
            pod_ips,
            start_time: status.start_time.map(|t| t.0),
            has_scheduled_condition: status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "PodScheduled"),
            run_for,
            exit_code,
        })
    }

    pub fn is_terminal(&self) -> bool {
        self.phase == "Succeeded" || self.phase == "Failed"
    }
}

/// The image reference a runtime reports as `imageID`: the image fully qualified with
/// a (made up, stable) digest, e.g. `docker.io/library/nginx@sha256:…`.
pub fn image_id(image: &str) -> String {
    let name = match image.split_once('@') {
        Some((n, _)) => n,
        None => image,
    };
    // A tag follows the last ':' after the last '/' (a ':' before it is a port).
    let repo = match name.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => name,
    };
    let repo = match repo.split_once('/') {
        None => format!("docker.io/library/{repo}"),
        Some((host, _)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            repo.to_string()
        }
        Some(_) => format!("docker.io/{repo}"),
    };
    let digest = match image.split_once('@') {
        Some((_, d)) => d.to_string(),
        None => format!("sha256:{}", hash_hex(&["image", image])),
    };
    format!("{repo}@{digest}")
}

/// A stable container id `sim://<64 hex>` for container `name` of pod `uid`.
pub fn container_id(uid: &str, name: &str) -> String {
    format!("sim://{}", hash_hex(&["container", uid, name]))
}

fn pod_condition(type_: &str, status: bool, reason: Option<&str>, now: Timestamp) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.map(str::to_string),
        last_transition_time: Some(Time(now)),
        ..Default::default()
    }
}

fn running_state(started: Timestamp) -> ContainerState {
    ContainerState {
        running: Some(ContainerStateRunning {
            started_at: Some(Time(started)),
        }),
        ..Default::default()
    }
}

fn terminated_state(
    cid: &str,
    exit_code: i32,
    started: Timestamp,
    finished: Timestamp,
) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            container_id: Some(cid.into()),
            exit_code,
            reason: Some(if exit_code == 0 { "Completed" } else { "Error" }.into()),
            started_at: Some(Time(started)),
            finished_at: Some(Time(finished)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn status_patch(uid: &str, status: &PodStatus) -> Value {
    json!({"metadata": {"uid": uid}, "status": status})
}

fn host_ips(host_ip: IpAddr) -> (Option<String>, Option<Vec<HostIP>>) {
    (
        Some(host_ip.to_string()),
        Some(vec![HostIP {
            ip: host_ip.to_string(),
        }]),
    )
}

/// The strategic merge patch (pods/status) that reports `pod` Running with ready
/// containers at `pod_ips`, started at `started`.
pub fn running_status(
    pod: &PodInfo,
    host_ip: IpAddr,
    pod_ips: &[IpAddr],
    started: Timestamp,
) -> Value {
    let mut conditions = vec![
        pod_condition("PodReadyToStartContainers", true, None, started),
        pod_condition("Initialized", true, None, started),
        pod_condition("Ready", true, None, started),
        pod_condition("ContainersReady", true, None, started),
    ];
    if !pod.has_scheduled_condition {
        conditions.push(pod_condition("PodScheduled", true, None, started));
    }
    let init_statuses: Vec<ContainerStatus> = pod
        .init_containers
        .iter()
        .map(|c| {
            let cid = container_id(&pod.uid, &c.name);
            ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone(),
                image_id: image_id(&c.image),
                container_id: Some(cid.clone()),
                // A finished init container counts as ready, a sidecar is running.
                ready: true,
                started: Some(c.sidecar),
                restart_count: 0,
                state: Some(if c.sidecar {
                    running_state(started)
                } else {
                    terminated_state(&cid, 0, started, started)
                }),
                last_state: Some(ContainerState::default()),
                ..Default::default()
            }
        })
        .collect();
    let statuses = pod
        .containers
        .iter()
        .map(|c| ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone(),
            image_id: image_id(&c.image),
            container_id: Some(container_id(&pod.uid, &c.name)),
            ready: true,
            started: Some(true),
            restart_count: 0,
            state: Some(running_state(started)),
            last_state: Some(ContainerState::default()),
            ..Default::default()
        })
        .collect();
    let (host_ip, host_ips) = host_ips(host_ip);
    let status = PodStatus {
        phase: Some("Running".into()),
        conditions: Some(conditions),
        host_ip,
        host_ips,
        pod_ip: pod_ips.first().map(IpAddr::to_string),
        pod_ips: Some(
            pod_ips
                .iter()
                .map(|ip| PodIP { ip: ip.to_string() })
                .collect(),
        ),
        start_time: Some(Time(pod.start_time.unwrap_or(started))),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        ..Default::default()
    };
    status_patch(&pod.uid, &status)
}

/// The strategic merge patch (pods/status) that reports every container of `pod`
/// exited with `exit_code`: the pod Succeeded (0) or Failed.
pub fn terminated_status(
    pod: &PodInfo,
    exit_code: i32,
    started: Timestamp,
    now: Timestamp,
) -> Value {
    let terminated = |c: &Container, code: i32, finished: Timestamp, ready: bool| {
        let cid = container_id(&pod.uid, &c.name);
        ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone(),
            image_id: image_id(&c.image),
            container_id: Some(cid.clone()),
            ready,
            started: Some(false),
            restart_count: 0,
            state: Some(terminated_state(&cid, code, started, finished)),
            last_state: Some(ContainerState::default()),
            ..Default::default()
        }
    };
    // Init containers finished when the pod started; sidecars stop with the pod.
    let init_statuses: Vec<ContainerStatus> = pod
        .init_containers
        .iter()
        .map(|c| {
            if c.sidecar {
                terminated(c, 0, now, false)
            } else {
                terminated(c, 0, started, true)
            }
        })
        .collect();
    let statuses = pod
        .containers
        .iter()
        .map(|c| terminated(c, exit_code, now, false))
        .collect();
    let phase = if exit_code == 0 {
        "Succeeded"
    } else {
        "Failed"
    };
    let not_ready = |t: &str| pod_condition(t, false, Some("PodCompleted"), now);
    let status = PodStatus {
        phase: Some(phase.into()),
        conditions: Some(vec![
            pod_condition("PodReadyToStartContainers", false, None, now),
            not_ready("Ready"),
            not_ready("ContainersReady"),
        ]),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        ..Default::default()
    };
    status_patch(&pod.uid, &status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimArgs;
    use k8s_openapi::api::core::v1::{Container as K8sContainer, PodSpec};

    fn cfg() -> Config {
        Config::new(&SimArgs {
            node_labels: vec!["topology.kubernetes.io/zone=z1".into()],
            register_with_taints: vec!["dedicated=sim:NoSchedule".into()],
            ..SimArgs::default()
        })
        .expect("config")
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn node_object() {
        let cfg = cfg();
        let ip: IpAddr = "10.64.0.3".parse().expect("ip");
        let since = ts("2025-01-01T00:00:00Z");
        let now = ts("2025-01-01T00:01:00Z");
        let n = node(
            &cfg,
            "sim-2",
            node_status(&cfg, "sim-2", ip, "b", since, now),
        );
        let v = serde_json::to_value(&n).expect("serialize");
        assert_eq!(v["metadata"]["labels"]["kubernetes.io/hostname"], "sim-2");
        assert_eq!(v["metadata"]["labels"]["type"], "hollow");
        assert_eq!(v["metadata"]["labels"]["kubernetes.io/os"], "linux");
        assert_eq!(v["metadata"]["labels"]["topology.kubernetes.io/zone"], "z1");
        assert_eq!(
            v["spec"]["taints"],
            json!([{"key": "dedicated", "value": "sim", "effect": "NoSchedule"}])
        );
        let st = &v["status"];
        for (k, want) in [
            ("cpu", "4"),
            ("memory", "16Gi"),
            ("pods", "110"),
            ("ephemeral-storage", "100Gi"),
        ] {
            assert_eq!(st["capacity"][k], want, "capacity {k}");
            assert_eq!(st["allocatable"][k], want, "allocatable {k}");
        }
        assert_eq!(
            st["addresses"],
            json!([{"type": "InternalIP", "address": "10.64.0.3"}, {"type": "Hostname", "address": "sim-2"}])
        );
        assert_eq!(st["nodeInfo"]["osImage"], OS_IMAGE);
        assert_eq!(st["nodeInfo"]["containerRuntimeVersion"], RUNTIME_VERSION);
        assert_eq!(st["nodeInfo"]["kubeletVersion"], "v1.33.0");
        assert_eq!(st["nodeInfo"]["architecture"], "amd64");
        assert_eq!(st["nodeInfo"]["operatingSystem"], "linux");
        assert_eq!(st["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
        let conds = st["conditions"].as_array().expect("conditions");
        let types: Vec<(&str, &str)> = conds
            .iter()
            .map(|c| {
                (
                    c["type"].as_str().unwrap_or(""),
                    c["status"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            types,
            [
                ("MemoryPressure", "False"),
                ("DiskPressure", "False"),
                ("PIDPressure", "False"),
                ("Ready", "True")
            ]
        );
        let ready = &conds[3];
        assert_eq!(ready["reason"], "KubeletReady");
        assert_eq!(ready["message"], "kubelet is posting ready status");
        assert_eq!(ready["lastHeartbeatTime"], "2025-01-01T00:01:00Z");
        assert_eq!(ready["lastTransitionTime"], "2025-01-01T00:00:00Z");
        assert!(!status_needs_update(&n));
    }

    #[test]
    fn machine_ids_are_stable_and_distinct() {
        let cfg = cfg();
        let ip: IpAddr = "10.64.0.1".parse().expect("ip");
        let now = Timestamp::now();
        let a = node_status(&cfg, "sim-0", ip, "b", now, now)
            .node_info
            .expect("info");
        let a2 = node_status(&cfg, "sim-0", ip, "b", now, now)
            .node_info
            .expect("info");
        let b = node_status(&cfg, "sim-1", ip, "b", now, now)
            .node_info
            .expect("info");
        assert_eq!(a.machine_id, a2.machine_id);
        assert_ne!(a.machine_id, b.machine_id);
        assert_eq!(a.machine_id.len(), 32);
        assert_eq!(a.system_uuid.len(), 36);
        assert_ne!(boot_id("sim-0", "run1"), boot_id("sim-0", "run2"));
    }

    #[test]
    fn status_needs_update_when_not_healthy() {
        let cfg = cfg();
        let ip: IpAddr = "10.64.0.1".parse().expect("ip");
        let now = Timestamp::now();
        let cases: &[(&str, &str, bool)] = &[
            ("Ready", "True", false),
            ("Ready", "Unknown", true),
            ("Ready", "False", true),
            ("DiskPressure", "Unknown", true),
        ];
        for (t, s, want) in cases {
            let mut n = node(&cfg, "sim-0", node_status(&cfg, "sim-0", ip, "b", now, now));
            if let Some(c) = n
                .status
                .as_mut()
                .and_then(|st| st.conditions.as_mut())
                .and_then(|cs| cs.iter_mut().find(|c| c.type_ == *t))
            {
                c.status = s.to_string();
            }
            assert_eq!(status_needs_update(&n), *want, "{t}={s}");
        }
        assert!(status_needs_update(&Node::default()));
    }

    #[test]
    fn cidrs_of_a_node() {
        let with = |cidr: Option<&str>, cidrs: Option<Vec<&str>>| Node {
            spec: Some(NodeSpec {
                pod_cidr: cidr.map(str::to_string),
                pod_cidrs: cidrs.map(|v| v.into_iter().map(str::to_string).collect()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let cases: Vec<(Node, Vec<&str>)> = vec![
            (Node::default(), vec![]),
            (with(Some("10.42.1.0/24"), None), vec!["10.42.1.0/24"]),
            (
                with(
                    Some("10.42.1.0/24"),
                    Some(vec!["10.42.1.0/24", "fd00::/64"]),
                ),
                vec!["10.42.1.0/24", "fd00::/64"],
            ),
            (with(Some(""), Some(vec![])), vec![]),
        ];
        for (n, want) in cases {
            assert_eq!(pod_cidrs(&n), want);
        }
    }

    #[test]
    fn lease_object_and_renewal() {
        let now = ts("2025-01-01T00:00:00.123456Z");
        let v = serde_json::to_value(lease("sim-0", Some("u1"), 40, now)).expect("serialize");
        assert_eq!(v["metadata"]["namespace"], "kube-node-lease");
        assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "Node");
        assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "u1");
        assert_eq!(v["spec"]["holderIdentity"], "sim-0");
        assert_eq!(v["spec"]["leaseDurationSeconds"], 40);
        assert_eq!(v["spec"]["renewTime"], "2025-01-01T00:00:00.123456Z");
        let no_owner = serde_json::to_value(lease("sim-0", None, 40, now)).expect("serialize");
        assert!(no_owner["metadata"].get("ownerReferences").is_none());
        let p = lease_renewal("sim-0", 40, now);
        assert_eq!(p["spec"]["renewTime"], "2025-01-01T00:00:00.123456Z");
        assert_eq!(p["spec"]["holderIdentity"], "sim-0");
    }

    #[test]
    fn image_ids() {
        let cases: &[(&str, &str)] = &[
            ("nginx", "docker.io/library/nginx@sha256:"),
            ("nginx:1.27", "docker.io/library/nginx@sha256:"),
            ("bitnami/redis:7", "docker.io/bitnami/redis@sha256:"),
            (
                "registry.k8s.io/pause:3.10",
                "registry.k8s.io/pause@sha256:",
            ),
            ("localhost:5000/app", "localhost:5000/app@sha256:"),
            ("localhost/app:v1", "localhost/app@sha256:"),
            ("nginx@sha256:abc", "docker.io/library/nginx@sha256:abc"),
        ];
        for (image, prefix) in cases {
            let id = image_id(image);
            assert!(id.starts_with(prefix), "{image} -> {id}");
        }
        assert_eq!(
            image_id("nginx:1.27").len(),
            "docker.io/library/nginx@sha256:".len() + 64
        );
        assert_ne!(image_id("nginx:1.27"), image_id("nginx:1.28"));
        assert!(container_id("u", "c").starts_with("sim://"));
        assert_ne!(container_id("u", "a"), container_id("u", "b"));
    }

    fn pod(json: Value) -> Pod {
        serde_json::from_value(json).expect("pod")
    }

    #[test]
    fn pod_info() {
        let p = pod(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1",
                "annotations": {RUN_FOR_ANNOTATION: "3s", EXIT_CODE_ANNOTATION: "2"},
                "finalizers": ["x/y"]},
            "spec": {"nodeName": "sim-1", "restartPolicy": "Never", "hostNetwork": true,
                "initContainers": [{"name": "i", "image": "busybox"}, {"name": "s", "image": "envoy", "restartPolicy": "Always"}],
                "containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": "Running", "podIP": "10.42.1.5",
                "conditions": [{"type": "PodScheduled", "status": "True"}]}
        }));
        let i = PodInfo::from_pod(&p).expect("info");
        assert_eq!(i.node, "sim-1");
        assert_eq!(i.namespace, "ns");
        assert_eq!(i.run_for, Some(Duration::from_secs(3)));
        assert_eq!(i.exit_code, 2);
        assert!(i.host_network && i.has_finalizers && i.has_scheduled_condition);
        assert_eq!(i.pod_ips, vec!["10.42.1.5".parse::<IpAddr>().expect("ip")]);
        assert!(i.init_containers[1].sidecar);
        assert_eq!(i.deleting, None);

        let unbound =
            pod(json!({"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": []}}));
        assert_eq!(PodInfo::from_pod(&unbound), None);

        let always = pod(json!({
            "metadata": {"name": "p", "uid": "u", "deletionTimestamp": "2025-01-01T00:00:00Z",
                "deletionGracePeriodSeconds": 30, "annotations": {RUN_FOR_ANNOTATION: "3s", EXIT_CODE_ANNOTATION: "1"}},
            "spec": {"nodeName": "n", "containers": [{"name": "c"}]}
        }));
        let i = PodInfo::from_pod(&always).expect("info");
        assert_eq!(i.run_for, None, "restartPolicy Always pods keep running");
        assert_eq!(i.exit_code, 0);
        assert_eq!(i.deleting, Some(Duration::from_secs(30)));
        assert_eq!(i.phase, "Pending");
        assert_eq!(i.restart_policy, "Always");
    }

    fn sample_info() -> PodInfo {
        let p = Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("uid-1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("sim-1".into()),
                init_containers: Some(vec![
                    K8sContainer {
                        name: "init".into(),
                        image: Some("busybox".into()),
                        ..Default::default()
                    },
                    K8sContainer {
                        name: "side".into(),
                        image: Some("envoy".into()),
                        restart_policy: Some("Always".into()),
                        ..Default::default()
                    },
                ]),
                containers: vec![K8sContainer {
                    name: "app".into(),
                    image: Some("nginx:1.27".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        };
        PodInfo::from_pod(&p).expect("info")
    }

    #[test]
    fn running_pod_status() {
        let info = sample_info();
        let t = ts("2025-01-01T00:00:00Z");
        let host: IpAddr = "10.64.0.2".parse().expect("ip");
        let ips: Vec<IpAddr> = vec![
            "10.42.1.2".parse().expect("ip"),
            "fd00::2".parse().expect("ip"),
        ];
        let p = running_status(&info, host, &ips, t);
        assert_eq!(p["metadata"]["uid"], "uid-1");
        let s = &p["status"];
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "10.42.1.2");
        assert_eq!(s["podIPs"], json!([{"ip": "10.42.1.2"}, {"ip": "fd00::2"}]));
        assert_eq!(s["hostIP"], "10.64.0.2");
        assert_eq!(s["hostIPs"], json!([{"ip": "10.64.0.2"}]));
        assert_eq!(s["startTime"], "2025-01-01T00:00:00Z");
        let conds: Vec<(&str, &str)> = s["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .map(|c| {
                (
                    c["type"].as_str().unwrap_or(""),
                    c["status"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            conds,
            [
                ("PodReadyToStartContainers", "True"),
                ("Initialized", "True"),
                ("Ready", "True"),
                ("ContainersReady", "True"),
                ("PodScheduled", "True")
            ]
        );
        let c = &s["containerStatuses"][0];
        assert_eq!(c["name"], "app");
        assert_eq!(c["image"], "nginx:1.27");
        assert_eq!(c["ready"], true);
        assert_eq!(c["started"], true);
        assert_eq!(c["restartCount"], 0);
        assert_eq!(c["state"]["running"]["startedAt"], "2025-01-01T00:00:00Z");
        assert!(
            c["containerID"]
                .as_str()
                .is_some_and(|s| s.starts_with("sim://"))
        );
        assert!(
            c["imageID"]
                .as_str()
                .is_some_and(|s| s.starts_with("docker.io/library/nginx@sha256:"))
        );
        let init = &s["initContainerStatuses"];
        assert_eq!(init[0]["state"]["terminated"]["reason"], "Completed");
        assert_eq!(init[0]["state"]["terminated"]["exitCode"], 0);
        assert_eq!(init[1]["name"], "side");
        assert!(init[1]["state"]["running"].is_object());
    }

    #[test]
    fn running_status_keeps_scheduler_condition_and_start_time() {
        let mut info = sample_info();
        info.has_scheduled_condition = true;
        info.start_time = Some(ts("2024-12-31T00:00:00Z"));
        let p = running_status(
            &info,
            "10.64.0.2".parse().expect("ip"),
            &[],
            ts("2025-01-01T00:00:00Z"),
        );
        let s = &p["status"];
        assert_eq!(s["startTime"], "2024-12-31T00:00:00Z");
        assert!(
            !s["conditions"]
                .as_array()
                .expect("conditions")
                .iter()
                .any(|c| c["type"] == "PodScheduled"),
            "the scheduler's PodScheduled condition is left alone"
        );
    }

    #[test]
    fn terminated_pod_status() {
        let info = sample_info();
        let start = ts("2025-01-01T00:00:00Z");
        let end = ts("2025-01-01T00:00:05Z");
        let cases: &[(i32, &str, &str)] = &[(0, "Succeeded", "Completed"), (3, "Failed", "Error")];
        for (code, phase, reason) in cases {
            let p = terminated_status(&info, *code, start, end);
            let s = &p["status"];
            assert_eq!(s["phase"], *phase);
            let c = &s["containerStatuses"];
            assert_eq!(c.as_array().map(Vec::len), Some(1));
            assert_eq!(c[0]["ready"], false);
            assert_eq!(c[0]["state"]["terminated"]["exitCode"], *code);
            assert_eq!(c[0]["state"]["terminated"]["reason"], *reason);
            assert_eq!(
                c[0]["state"]["terminated"]["finishedAt"],
                "2025-01-01T00:00:05Z"
            );
            let init = s["initContainerStatuses"]
                .as_array()
                .expect("init statuses");
            let names: Vec<&str> = init
                .iter()
                .map(|c| c["name"].as_str().unwrap_or(""))
                .collect();
            assert_eq!(names, ["init", "side"]);
            assert!(
                init[1]["state"]["terminated"].is_object(),
                "sidecars stop too"
            );
            let ready = s["conditions"]
                .as_array()
                .expect("conditions")
                .iter()
                .find(|c| c["type"] == "Ready")
                .cloned()
                .unwrap_or_default();
            assert_eq!(ready["status"], "False");
            assert_eq!(ready["reason"], "PodCompleted");
        }
    }
}
