//! The OCI bundle `config.json` a container runs from. The built-in runtime
//! ([`crate::init`]) and an OCI runtime binary (runc) read the same file, so a container
//! can move between them by RuntimeClass handler.

use std::collections::HashSet;
use std::path::PathBuf;
use std::str::FromStr;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

use crate::seccomp::Seccomp;
use crate::spec::ContainerSpec;

/// Errors building a bundle config.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A capability name is not known.
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    /// The container has nothing to run.
    #[error("container has no command: neither the image nor the spec gives one")]
    NoCommand,
    /// A container path is not absolute.
    #[error("mount destination {0:?} is not an absolute path")]
    RelativeMount(String),
    /// oci-spec refused a value.
    #[error("building the OCI config: {0}")]
    Oci(#[from] oci_spec::OciSpecError),
}

/// containerd's default capability set for unprivileged containers.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// /proc and /sys paths hidden from unprivileged containers.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// /proc paths made read-only for unprivileged containers.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// How a container gets one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ns {
    /// A new one.
    New,
    /// Join the namespace at this path (a pinned sandbox namespace or /proc/<pid>/ns/x).
    Join(PathBuf),
    /// Stay in the host's (the namespace is left out of config.json).
    Host,
}

/// Everything about a container's surroundings that is not in its [`ContainerSpec`].
#[derive(Clone, Debug)]
pub struct BundleContext {
    /// Network namespace.
    pub net: Ns,
    /// IPC namespace.
    pub ipc: Ns,
    /// UTS namespace.
    pub uts: Ns,
    /// PID namespace.
    pub pid: Ns,
    /// Hostname to set when the UTS namespace is new.
    pub hostname: Option<String>,
    /// cgroup relative to each hierarchy root.
    pub cgroup: String,
    /// Host files bound over /etc/hosts, /etc/resolv.conf, /etc/hostname.
    pub etc_files: Vec<(PathBuf, String)>,
    /// Host directory bound at /dev/shm (the pod's); None gives a private tmpfs.
    pub shm: Option<PathBuf>,
    /// uid, gid, supplementary gids.
    pub user: (u32, u32, Vec<u32>),
}

/// All capability names the kernel headers this build knows.
pub fn all_caps() -> Vec<String> {
    caps::all().into_iter().map(|c| c.to_string()).collect()
}

fn norm_cap(name: &str) -> String {
    let up = name.trim().to_ascii_uppercase();
    if up.starts_with("CAP_") || up == "ALL" {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// The capability set for a spec: containerd's default (or all when privileged), then
/// `ALL` in add/drop, then the named adds and drops.
pub fn capabilities(spec: &ContainerSpec) -> Result<Vec<String>, SpecError> {
    if spec.privileged {
        return Ok(all_caps());
    }
    let known: HashSet<String> = all_caps().into_iter().collect();
    let add: Vec<String> = spec.cap_add.iter().map(|c| norm_cap(c)).collect();
    let drop: Vec<String> = spec.cap_drop.iter().map(|c| norm_cap(c)).collect();
    for c in add.iter().chain(&drop) {
        if c != "ALL" && !known.contains(c) {
            return Err(SpecError::UnknownCapability(c.clone()));
        }
    }
    let mut set: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    if add.iter().any(|c| c == "ALL") {
        set = all_caps();
    }
    if drop.iter().any(|c| c == "ALL") {
        set.clear();
    }
    for c in add.iter().filter(|c| *c != "ALL") {
        if !set.contains(c) {
            set.push(c.clone());
        }
    }
    set.retain(|c| !drop.contains(c));
    set.sort();
    Ok(set)
}

fn oci_caps(names: &[String]) -> Result<HashSet<Capability>, SpecError> {
    names
        .iter()
        .map(|n| {
            Capability::from_str(n.trim_start_matches("CAP_"))
                .map_err(|_| SpecError::UnknownCapability(n.clone()))
        })
        .collect()
}

fn mount(dest: &str, typ: &str, source: &str, opts: &[&str]) -> Result<Mount, SpecError> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// Build the bundle config; `root.path` is `rootfs` inside the bundle.
pub fn build(spec: &ContainerSpec, ctx: &BundleContext) -> Result<Spec, SpecError> {
    let args = spec.process_args();
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    let caps = oci_caps(&capabilities(spec)?)?;
    let linux_caps = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps.clone())
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;
    let user = UserBuilder::default()
        .uid(ctx.user.0)
        .gid(ctx.user.1)
        .additional_gids(ctx.user.2.clone())
        .build()?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(args)
        .env({
            // As containerd's WithTTY: a terminal without TERM gets xterm.
            let mut env = spec.process_env();
            if spec.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
                env.push("TERM=xterm".into());
            }
            env
        })
        .cwd(spec.process_cwd())
        .user(user)
        .capabilities(linux_caps)
        .no_new_privileges(spec.no_new_privs)
        .build()?;

    let mut mounts = vec![mount(
        "/proc",
        "proc",
        "proc",
        &["nosuid", "noexec", "nodev"],
    )?];
    if spec.privileged {
        mounts.push(mount("/dev", "bind", "/dev", &["rbind", "nosuid"])?);
    } else {
        mounts.push(mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?);
    }
    mounts.push(mount(
        "/dev/pts",
        "devpts",
        "devpts",
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ],
    )?);
    match &ctx.shm {
        Some(dir) => mounts.push(mount(
            "/dev/shm",
            "bind",
            &dir.to_string_lossy(),
            &["rbind", "nosuid", "noexec", "nodev"],
        )?),
        None => mounts.push(mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?),
    }
    mounts.push(mount(
        "/dev/mqueue",
        "mqueue",
        "mqueue",
        &["nosuid", "noexec", "nodev"],
    )?);
    let sys_opts: &[&str] = if spec.privileged {
        &["nosuid", "noexec", "nodev"]
    } else {
        &["nosuid", "noexec", "nodev", "ro"]
    };
    mounts.push(mount("/sys", "sysfs", "sysfs", sys_opts)?);
    // runc mounts the container's cgroup view; the built-in runtime skips this entry.
    mounts.push(mount(
        "/sys/fs/cgroup",
        "cgroup",
        "cgroup",
        &["nosuid", "noexec", "nodev", "relatime", "ro"],
    )?);
    let user_dests: HashSet<&str> = spec
        .mounts
        .iter()
        .map(|m| m.container_path.as_str())
        .collect();
    for (host, dest) in &ctx.etc_files {
        if !user_dests.contains(dest.as_str()) {
            mounts.push(mount(
                dest,
                "bind",
                &host.to_string_lossy(),
                &["rbind", "rprivate"],
            )?);
        }
    }
    for m in &spec.mounts {
        if !m.container_path.starts_with('/') {
            return Err(SpecError::RelativeMount(m.container_path.clone()));
        }
        let opts: &[&str] = if m.readonly {
            &["rbind", "rprivate", "ro"]
        } else {
            &["rbind", "rprivate"]
        };
        mounts.push(mount(
            &m.container_path,
            "bind",
            &m.host_path.to_string_lossy(),
            opts,
        )?);
    }

    let mut namespaces = vec![
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Mount)
            .build()?,
    ];
    for (typ, ns) in [
        (LinuxNamespaceType::Network, &ctx.net),
        (LinuxNamespaceType::Ipc, &ctx.ipc),
        (LinuxNamespaceType::Uts, &ctx.uts),
        (LinuxNamespaceType::Pid, &ctx.pid),
    ] {
        match ns {
            Ns::Host => {}
            Ns::New => namespaces.push(LinuxNamespaceBuilder::default().typ(typ).build()?),
            Ns::Join(p) => namespaces.push(
                LinuxNamespaceBuilder::default()
                    .typ(typ)
                    .path(p.clone())
                    .build()?,
            ),
        }
    }

    let r = &spec.resources;
    let mut cpu = LinuxCpuBuilder::default();
    if let Some(s) = r.cpu_shares {
        cpu = cpu.shares(s);
    }
    if let Some(q) = r.cpu_quota {
        cpu = cpu.quota(q);
    }
    if r.cpu_quota.is_some() || r.cpu_period.is_some() {
        cpu = cpu.period(r.cpu_period.unwrap_or(100_000));
    }
    let mut res = LinuxResourcesBuilder::default()
        .cpu(cpu.build()?)
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(spec.privileged)
                .access("rwm")
                .build()?,
        ]);
    if let Some(m) = r.memory_limit {
        res = res.memory(LinuxMemoryBuilder::default().limit(m).build()?);
    }
    if let Some(p) = r.pids_limit {
        res = res.pids(LinuxPidsBuilder::default().limit(p).build()?);
    }

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(format!("/{}", ctx.cgroup)))
        .resources(res.build()?)
        .rootfs_propagation("rprivate");
    // Privileged containers run unconfined, as with containerd's CRI plugin.
    if !spec.privileged {
        match &spec.seccomp {
            Some(Seccomp::RuntimeDefault) => {
                linux = linux.seccomp(crate::seccomp::runtime_default(&capabilities(spec)?));
            }
            Some(Seccomp::Profile(p)) => linux = linux.seccomp(p.clone()),
            None => {}
        }
    }
    if !spec.privileged {
        linux = linux
            .masked_paths(
                MASKED_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
            .readonly_paths(
                READONLY_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            );
    }

    let mut b = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(spec.readonly_rootfs)
                .build()?,
        )
        .process(process)
        .mounts(mounts)
        .linux(linux.build()?);
    if ctx.uts == Ns::New
        && let Some(h) = &ctx.hostname
    {
        b = b.hostname(h.clone());
    }
    Ok(b.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> BundleContext {
        BundleContext {
            net: Ns::Join("/x/net".into()),
            ipc: Ns::New,
            uts: Ns::New,
            pid: Ns::Host,
            hostname: Some("h".into()),
            cgroup: "kubepods/besteffort/podu/c".into(),
            etc_files: vec![("/s/hosts".into(), "/etc/hosts".into())],
            shm: None,
            user: (1, 2, vec![3]),
        }
    }

    #[test]
    fn capabilities_follow_add_drop_rules() {
        let mut s = ContainerSpec::default();
        assert_eq!(capabilities(&s).unwrap().len(), DEFAULT_CAPS.len());
        s.cap_drop = vec!["ALL".into()];
        s.cap_add = vec!["net_admin".into()];
        assert_eq!(capabilities(&s).unwrap(), ["CAP_NET_ADMIN"]);
        s.cap_add = vec!["BOGUS".into()];
        assert!(capabilities(&s).is_err());
        s.privileged = true;
        assert!(
            capabilities(&s)
                .unwrap()
                .contains(&"CAP_SYS_ADMIN".to_string())
        );
    }

    #[test]
    fn bundle_has_namespaces_mounts_and_limits() {
        let s = ContainerSpec {
            command: vec!["/bin/true".into()],
            readonly_rootfs: true,
            resources: crate::spec::Resources {
                memory_limit: Some(1 << 25),
                cpu_quota: Some(20_000),
                ..Default::default()
            },
            mounts: vec![crate::spec::MountSpec {
                host_path: "/data".into(),
                container_path: "/etc/hosts".into(),
                readonly: true,
            }],
            ..Default::default()
        };
        let spec = build(&s, &ctx()).unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        let ns = &json["linux"]["namespaces"];
        assert!(
            ns.as_array()
                .unwrap()
                .iter()
                .any(|n| n["type"] == "network" && n["path"] == "/x/net")
        );
        assert!(!ns.as_array().unwrap().iter().any(|n| n["type"] == "pid"));
        assert_eq!(json["root"]["readonly"], true);
        assert_eq!(json["hostname"], "h");
        assert_eq!(json["linux"]["resources"]["memory"]["limit"], 1 << 25);
        assert_eq!(json["linux"]["resources"]["cpu"]["period"], 100_000);
        assert_eq!(json["process"]["user"]["uid"], 1);
        let hosts: Vec<_> = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|m| m.destination() == &PathBuf::from("/etc/hosts"))
            .collect();
        assert_eq!(
            hosts.len(),
            1,
            "the user's mount replaces the pod's /etc/hosts"
        );
        assert_eq!(hosts[0].source().as_ref().unwrap(), &PathBuf::from("/data"));
        let relative = ContainerSpec {
            mounts: vec![crate::spec::MountSpec {
                host_path: "/d".into(),
                container_path: "rel".into(),
                readonly: false,
            }],
            ..s
        };
        assert!(build(&relative, &ctx()).is_err());
    }
}
