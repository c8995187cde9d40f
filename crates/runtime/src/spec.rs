//! What the kubelet (or `flotilla ctr`) asks for: pod sandboxes and containers, close to
//! CRI's `PodSandboxConfig` / `ContainerConfig`, plus what the runtime reports back.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where a container's root filesystem comes from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Rootfs {
    /// Read-only image layers, topmost first (overlayfs `lowerdir` order); the runtime adds
    /// a per-container upper/work dir and mounts an overlay.
    Lowerdirs(Vec<PathBuf>),
    /// A plain directory used as the root as it is (writes land in it).
    Dir(PathBuf),
}

/// Defaults taken from an image's config (`config.Entrypoint`, `Cmd`, `Env`…); the pod spec
/// overrides them with the upstream rules (see [`ContainerSpec::process_args`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ImageDefaults {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env` as `KEY=value`.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `User` (`uid`, `uid:gid`, `name`, `name:group`).
    pub user: Option<String>,
    /// `StopSignal` (`SIGTERM`, `15`…).
    pub stop_signal: Option<String>,
}

/// A host path mounted into the container (volumes prepared by the kubelet).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MountSpec {
    /// Path on the host.
    pub host_path: PathBuf,
    /// Absolute path inside the container.
    pub container_path: String,
    /// Mount read-only.
    #[serde(default)]
    pub readonly: bool,
}

/// cgroup limits from the container's requests and limits.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// cgroup v1 `cpu.shares` (from the CPU request: millicores × 1024 / 1000, min 2);
    /// converted to `cpu.weight` on v2.
    pub cpu_shares: Option<u64>,
    /// CFS quota in µs per period (from the CPU limit).
    pub cpu_quota: Option<i64>,
    /// CFS period in µs (default 100000).
    pub cpu_period: Option<u64>,
    /// Memory limit in bytes.
    pub memory_limit: Option<i64>,
    /// Maximum number of tasks.
    pub pids_limit: Option<i64>,
}

impl Resources {
    /// Shares for a CPU request in millicores, as the kubelet computes them.
    pub fn shares_from_millis(millis: u64) -> u64 {
        (millis * 1024 / 1000).max(2)
    }

    /// Quota (µs) for a CPU limit in millicores over `period` µs.
    pub fn quota_from_millis(millis: u64, period: u64) -> i64 {
        ((millis * period / 1000).max(1000)) as i64
    }
}

/// Pod QoS class; decides the parent cgroup.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum QosClass {
    /// Directly under `kubepods`.
    Guaranteed,
    /// Under `kubepods/burstable`.
    #[default]
    Burstable,
    /// Under `kubepods/besteffort`.
    BestEffort,
}

impl QosClass {
    /// The cgroup of a pod with this class, relative to each hierarchy root.
    pub fn pod_cgroup(self, pod_uid: &str) -> String {
        match self {
            QosClass::Guaranteed => format!("kubepods/pod{pod_uid}"),
            QosClass::Burstable => format!("kubepods/burstable/pod{pod_uid}"),
            QosClass::BestEffort => format!("kubepods/besteffort/pod{pod_uid}"),
        }
    }
}

/// DNS settings written to the pod's `/etc/resolv.conf`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DnsConfig {
    /// `nameserver` lines; empty means copy the host's resolv.conf.
    pub servers: Vec<String>,
    /// `search` domains.
    pub searches: Vec<String>,
    /// `options`.
    pub options: Vec<String>,
}

/// A pod sandbox: the namespaces and parent cgroup its containers share.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SandboxSpec {
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod UID (names the pod cgroup).
    pub uid: String,
    /// Hostname inside the pod (ignored with host_network).
    pub hostname: String,
    /// Share the host's network namespace.
    #[serde(default)]
    pub host_network: bool,
    /// Share the host's PID namespace.
    #[serde(default)]
    pub host_pid: bool,
    /// Share the host's IPC namespace.
    #[serde(default)]
    pub host_ipc: bool,
    /// One PID namespace for all containers of the pod.
    #[serde(default)]
    pub share_process_namespace: bool,
    /// QoS class of the pod.
    #[serde(default)]
    pub qos: QosClass,
    /// resolv.conf contents.
    #[serde(default)]
    pub dns: DnsConfig,
    /// Extra `/etc/hosts` lines: (ip, hostnames).
    #[serde(default)]
    pub host_aliases: Vec<(String, Vec<String>)>,
    /// Labels kept for listing.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// What the runtime made for a sandbox.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SandboxInfo {
    /// Sandbox id.
    pub id: String,
    /// The spec it was made from.
    pub spec: SandboxSpec,
    /// The pinned network namespace to configure (None with host_network).
    pub netns_path: Option<PathBuf>,
    /// The pod cgroup, relative to each hierarchy root.
    pub cgroup_parent: String,
    /// Its directory under `<data-dir>/sandboxes`.
    pub dir: PathBuf,
    /// Creation time, RFC 3339.
    pub created_at: String,
}

/// Well-known label keys (the kubelet's).
pub mod labels {
    /// Pod name.
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    /// Pod namespace.
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    /// Pod UID.
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    /// Container name.
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
}

/// A container to create, close to CRI's `ContainerConfig`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSpec {
    /// Container name (also `labels[io.kubernetes.container.name]`).
    pub name: String,
    /// Image reference, for display.
    pub image: String,
    /// Root filesystem.
    pub rootfs: Option<Rootfs>,
    /// Image config defaults.
    #[serde(default)]
    pub image_defaults: ImageDefaults,
    /// Pod spec `command` (replaces the entrypoint).
    #[serde(default)]
    pub command: Vec<String>,
    /// Pod spec `args` (replaces the image's Cmd).
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment (overrides the image's).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working directory (overrides the image's).
    pub working_dir: Option<String>,
    /// runAsUser.
    pub run_as_user: Option<u32>,
    /// runAsGroup.
    pub run_as_group: Option<u32>,
    /// Supplemental groups.
    #[serde(default)]
    pub supplemental_groups: Vec<u32>,
    /// Volume mounts.
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    /// cgroup limits.
    #[serde(default)]
    pub resources: Resources,
    /// Privileged: all capabilities, host devices, writable /sys, no masked paths.
    #[serde(default)]
    pub privileged: bool,
    /// Mount the root filesystem read-only.
    #[serde(default)]
    pub readonly_rootfs: bool,
    /// Set no_new_privs (`allowPrivilegeEscalation: false`).
    #[serde(default)]
    pub no_new_privs: bool,
    /// Capabilities to add (`NET_ADMIN` or `CAP_NET_ADMIN`, `ALL`).
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// Capabilities to drop (`ALL` allowed).
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// Hostname when the container has no sandbox.
    pub hostname: Option<String>,
    /// Labels (pod name/namespace/uid, container name…).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The pod sandbox to join; None gives the container namespaces of its own.
    pub sandbox_id: Option<String>,
    /// Log file (CRI format); default `<state-dir>/container.log`.
    pub log_path: Option<PathBuf>,
    /// Rotate the log when it would exceed this many bytes (default 10 MiB).
    pub log_max_size: Option<u64>,
    /// Log files kept including the current one (default 5).
    pub log_max_files: Option<u32>,
    /// RuntimeClass handler; None or "" is the built-in runtime.
    pub runtime_handler: Option<String>,
    /// Seccomp profile (`None`: unconfined, the Kubernetes default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<crate::seccomp::Seccomp>,
    /// Keep a stdin open for attaching clients (pod spec `stdin`); otherwise the
    /// container's stdin is `/dev/null`.
    #[serde(default)]
    pub stdin: bool,
    /// Close the container's stdin once the first client that attached it detaches
    /// (`stdinOnce`; without a terminal, as containerd).
    #[serde(default)]
    pub stdin_once: bool,
    /// Give the container a terminal (pod spec `tty`): its stdin, stdout and stderr are
    /// one pty, whose output is logged as stdout. Built-in runtime only.
    #[serde(default)]
    pub tty: bool,
}

impl ContainerSpec {
    /// The process argv: pod `command` replaces the entrypoint (and then the image Cmd is
    /// not used); pod `args` replace the image Cmd.
    pub fn process_args(&self) -> Vec<String> {
        let (entry, cmd) = if !self.command.is_empty() {
            (self.command.clone(), self.args.clone())
        } else if !self.args.is_empty() {
            (self.image_defaults.entrypoint.clone(), self.args.clone())
        } else {
            (
                self.image_defaults.entrypoint.clone(),
                self.image_defaults.cmd.clone(),
            )
        };
        entry.into_iter().chain(cmd).collect()
    }

    /// The environment: a default PATH, then the image's, then the spec's (later wins).
    pub fn process_env(&self) -> Vec<String> {
        let mut out: Vec<(String, String)> = vec![(
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        )];
        let mut set = |k: &str, v: &str| {
            if let Some(e) = out.iter_mut().find(|(ek, _)| ek == k) {
                e.1 = v.to_string();
            } else {
                out.push((k.to_string(), v.to_string()));
            }
        };
        for kv in &self.image_defaults.env {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            set(k, v);
        }
        for (k, v) in &self.env {
            set(k, v);
        }
        out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// The working directory: spec, image, or `/`.
    pub fn process_cwd(&self) -> String {
        self.working_dir
            .clone()
            .or_else(|| self.image_defaults.working_dir.clone())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "/".into())
    }
}

/// Lifecycle state of a container.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Its init process is alive.
    Running,
    /// Its init process is gone.
    Exited,
    /// Inconsistent on disk (e.g. shim died without recording an exit).
    Unknown,
}

/// A container as the runtime sees it now.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerInfo {
    /// Container id (64 hex digits).
    pub id: String,
    /// The spec it was created from.
    pub spec: ContainerSpec,
    /// State.
    pub state: ContainerState,
    /// Init pid on the host while running.
    pub pid: Option<i32>,
    /// Shim pid while running.
    pub shim_pid: Option<i32>,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Start time, RFC 3339.
    pub started_at: Option<String>,
    /// Finish time, RFC 3339.
    pub finished_at: Option<String>,
    /// Exit code (128+signal when killed by a signal).
    pub exit_code: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled`, or why the state is Unknown.
    pub reason: Option<String>,
    /// The cgroup, relative to each hierarchy root.
    pub cgroup: String,
    /// The CRI log file.
    pub log_path: PathBuf,
    /// The runtime handler ("" = built-in).
    pub handler: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_and_args_follow_upstream_rules() {
        let mut s = ContainerSpec {
            image_defaults: ImageDefaults {
                entrypoint: vec!["/ep".into()],
                cmd: vec!["c1".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(s.process_args(), ["/ep", "c1"]);
        s.args = vec!["a1".into()];
        assert_eq!(s.process_args(), ["/ep", "a1"]);
        s.command = vec!["/cmd".into()];
        s.args.clear();
        assert_eq!(s.process_args(), ["/cmd"]);
    }

    #[test]
    fn env_spec_overrides_image() {
        let s = ContainerSpec {
            image_defaults: ImageDefaults {
                env: vec!["A=1".into(), "PATH=/x".into()],
                ..Default::default()
            },
            env: vec![("A".into(), "2".into())],
            ..Default::default()
        };
        assert_eq!(s.process_env(), ["PATH=/x", "A=2"]);
    }

    #[test]
    fn qos_parents() {
        assert_eq!(QosClass::Guaranteed.pod_cgroup("u"), "kubepods/podu");
        assert_eq!(
            QosClass::BestEffort.pod_cgroup("u"),
            "kubepods/besteffort/podu"
        );
        assert_eq!(Resources::shares_from_millis(1), 2);
        assert_eq!(Resources::quota_from_millis(200, 100_000), 20_000);
    }
}
