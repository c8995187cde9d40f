//! [`Runtime`]: the node's container runtime over a data directory, implementing
//! [`ContainerRuntime`]. All state is on disk (see [`crate::state`]), so any number of
//! `Runtime` values — the kubelet's, `flotilla ctr`'s, one made after a kubelet restart —
//! see and manage the same containers.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::attach::{AttachConn, AttachOptions};
use crate::cgroup::{CgroupError, Cgroups};
use crate::oci::{self, BundleContext, Ns};
use crate::spec::{ContainerInfo, ContainerSpec, ContainerState, Rootfs, SandboxInfo, SandboxSpec};
use crate::state::{self, Exited, ProcId, Record, Started};

/// Errors of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such container.
    #[error("container {0} not found")]
    NotFound(String),
    /// No such sandbox.
    #[error("sandbox {0} not found")]
    SandboxNotFound(String),
    /// The operation needs a stopped container.
    #[error("container {0} is running; stop it first")]
    Running(String),
    /// The operation needs a running container.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// The container was already started.
    #[error("container {0} was already started")]
    AlreadyStarted(String),
    /// Unknown RuntimeClass handler.
    #[error("unknown runtime handler {0:?}")]
    UnknownHandler(String),
    /// Bad spec.
    #[error("invalid container spec: {0}")]
    Invalid(String),
    /// Building the bundle config failed.
    #[error(transparent)]
    Spec(#[from] oci::SpecError),
    /// State files.
    #[error(transparent)]
    State(#[from] state::StateError),
    /// cgroups.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The shim could not start the container.
    #[error("starting container {id}: {message}")]
    Start {
        /// Container or sandbox id.
        id: String,
        /// The shim's answer.
        message: String,
    },
    /// A wait timed out.
    #[error("timed out waiting for container {0}")]
    Timeout(String),
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: String,
        /// errno.
        source: nix::Error,
    },
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, Error>;

fn fio<T>(what: impl FnOnce() -> String, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|source| Error::Io {
        what: what(),
        source,
    })
}

fn sys<T>(what: impl FnOnce() -> String, r: nix::Result<T>) -> Result<T> {
    r.map_err(|source| Error::Sys {
        what: what(),
        source,
    })
}

/// An OCI runtime binary (runc) that runs the same bundles under the shim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciRuntimeBinary {
    /// Path of the binary.
    pub path: PathBuf,
}

impl OciRuntimeBinary {
    /// Debian's runc, if installed.
    pub fn find_runc() -> Option<OciRuntimeBinary> {
        ["/usr/sbin/runc", "/usr/bin/runc"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .map(|path| OciRuntimeBinary { path })
    }
}

/// Runtime configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Root of all state (`/var/lib/flotilla`); containers live in `<data_dir>/containers`.
    pub data_dir: PathBuf,
    /// The executable run as `<shim> shim …` (default: this executable, i.e. `flotilla`).
    pub shim_path: PathBuf,
    /// RuntimeClass handlers served by an OCI runtime binary; "" is always built-in.
    pub handlers: BTreeMap<String, OciRuntimeBinary>,
}

impl Config {
    /// Defaults for `data_dir`: shim = current executable, handler `runc` when installed.
    pub fn new(data_dir: impl Into<PathBuf>) -> Result<Config> {
        let shim_path = fio(|| "find own executable".into(), std::env::current_exe())?;
        let mut handlers = BTreeMap::new();
        if let Some(r) = OciRuntimeBinary::find_runc() {
            handlers.insert("runc".to_string(), r);
        }
        Ok(Config {
            data_dir: data_dir.into(),
            shim_path,
            handlers,
        })
    }
}

/// Resource usage of a container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// CPU time in nanoseconds.
    pub cpu_usage_ns: Option<u64>,
    /// Memory in use in bytes.
    pub memory_bytes: Option<u64>,
    /// Memory working set in bytes (usage minus inactive file cache).
    pub memory_working_set_bytes: Option<u64>,
}

/// The descriptor number the exec helper reads terminal sizes from.
const RESIZE_FD: i32 = 3;

/// A command to run in a container.
#[derive(Clone, Debug, Default)]
pub struct ExecRequest {
    /// argv.
    pub cmd: Vec<String>,
    /// Allocate a terminal.
    pub tty: bool,
    /// With `tty`: the read end of a pipe carrying terminal size changes as
    /// [`crate::attach::resize_frame`]s, applied to the terminal as they come.
    pub resize: Option<Arc<std::os::fd::OwnedFd>>,
}

/// The operations the kubelet needs from a container runtime. Blocking calls: wrap them in
/// `spawn_blocking` from async code.
pub trait ContainerRuntime: Send + Sync {
    /// Create a pod sandbox: pinned network/IPC/UTS (and PID if shared) namespaces and the
    /// pod cgroup. The network crate configures `netns_path`.
    fn create_sandbox(&self, spec: &SandboxSpec) -> Result<SandboxInfo>;
    /// Remove a sandbox: unpin namespaces, remove its cgroup and directory.
    fn remove_sandbox(&self, id: &str) -> Result<()>;
    /// All sandboxes.
    fn list_sandboxes(&self) -> Result<Vec<SandboxInfo>>;
    /// Create a container (rootfs, cgroup, bundle); returns its id.
    fn create_container(&self, spec: &ContainerSpec) -> Result<String>;
    /// Start a created container under its shim.
    fn start(&self, id: &str) -> Result<()>;
    /// Stop: the stop signal, up to `grace`, then SIGKILL. No-op when not running.
    fn stop(&self, id: &str, grace: Duration) -> Result<()>;
    /// Remove a stopped container: mounts, cgroup, state.
    fn remove(&self, id: &str) -> Result<()>;
    /// All containers.
    fn list(&self) -> Result<Vec<ContainerInfo>>;
    /// One container.
    fn status(&self, id: &str) -> Result<ContainerInfo>;
    /// Wait until the container has exited.
    fn wait(&self, id: &str, timeout: Duration) -> Result<ContainerInfo>;
    /// Run a command in a running container; returns its exit code.
    fn exec(
        &self,
        id: &str,
        req: &ExecRequest,
        stdin: Stdio,
        stdout: Stdio,
        stderr: Stdio,
    ) -> Result<i32>;
    /// Attach to a running container's stdio (see [`crate::attach`]): its output from
    /// now on, and its stdin if it has one.
    fn attach(&self, id: &str, opts: AttachOptions) -> Result<AttachConn>;
    /// The container's CRI log file.
    fn log_path(&self, id: &str) -> Result<PathBuf>;
    /// CPU and memory usage.
    fn stats(&self, id: &str) -> Result<Stats>;
}

/// The built-in runtime (plus OCI-binary handlers) over one data directory.
pub struct Runtime {
    cfg: Config,
    cgroups: Cgroups,
}

/// Parse a signal name or number (`SIGTERM`, `TERM`, `15`).
pub fn parse_signal(s: &str) -> Option<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse().ok()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_mounted(path: &Path) -> bool {
    let Ok(mi) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let p = path.to_string_lossy();
    mi.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|mp| mp == p))
}

fn unmount_all(path: &Path) {
    while is_mounted(path) {
        if umount2(path, MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
}

/// Resolve an image `User` (`uid[:gid]` or names from the rootfs' /etc/passwd, /etc/group).
pub fn resolve_user(rootfs: &Path, user: &str) -> std::result::Result<(u32, u32), String> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = fs::read_to_string(crate::init::secure_join(rootfs, Path::new("/etc/passwd")))
        .unwrap_or_default();
    let (uid, mut gid) = match u.parse::<u32>() {
        Ok(n) => (
            n,
            passwd
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.get(2)?.parse::<u32>().ok()? == n).then(|| f.get(3)?.parse().ok())?
                })
                .unwrap_or(0),
        ),
        Err(_) => passwd
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.first()? == &u)
                    .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
            })
            .ok_or_else(|| format!("user {u:?} not found in the image's /etc/passwd"))?,
    };
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let group =
                    fs::read_to_string(crate::init::secure_join(rootfs, Path::new("/etc/group")))
                        .unwrap_or_default();
                group
                    .lines()
                    .find_map(|l| {
                        let f: Vec<&str> = l.split(':').collect();
                        (f.first()? == &g).then(|| f.get(2)?.parse().ok())?
                    })
                    .ok_or_else(|| format!("group {g:?} not found in the image's /etc/group"))?
            }
        };
    }
    Ok((uid, gid))
}

impl Runtime {
    /// Open the runtime over `cfg.data_dir`, re-adopting the containers found there.
    pub fn new(cfg: Config) -> Result<Runtime> {
        for d in ["containers", "sandboxes", "runc"] {
            let p = cfg.data_dir.join(d);
            fio(|| format!("create {}", p.display()), fs::create_dir_all(&p))?;
        }
        let rt = Runtime {
            cfg,
            cgroups: Cgroups::detect(),
        };
        rt.recover()?;
        Ok(rt)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The cgroup driver.
    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    /// Record an exit for containers whose shim and init both died without one (e.g. the
    /// node's pid space was reset); live ones are left to their shims.
    pub fn recover(&self) -> Result<usize> {
        let mut fixed = 0;
        for id in self.ids()? {
            let dir = self.dir(&id);
            if dir.join("exit.json").exists() {
                continue;
            }
            if let Some(s) = state::read_json::<Started>(&dir.join("pid.json"))?
                && !s.init.alive()
                && !s.shim.alive()
                && !dir.join("exit.json").exists()
            {
                let mut e = Exited::from_status(Some(255), None, false);
                e.reason = "Unknown".into();
                state::write_json(&dir.join("exit.json"), &e)?;
                fixed += 1;
            }
        }
        Ok(fixed)
    }

    /// Rewrite a sandbox's `/etc/hosts` once its pod IP is known (the network is set up
    /// after the sandbox): localhost lines, `<pod-ip> <hostname>`, then the host aliases.
    /// Written in place so containers' bind mounts of the file see the new contents.
    pub fn set_sandbox_ip(&self, id: &str, pod_ip: &str) -> Result<()> {
        let sb = self.sandbox(id)?;
        if pod_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(Error::Invalid(format!("bad pod IP {pod_ip:?}")));
        }
        let hostname = if sb.spec.hostname.is_empty() {
            sb.spec.name.clone()
        } else {
            sb.spec.hostname.clone()
        };
        let mut aliases = vec![(pod_ip.to_string(), vec![hostname])];
        aliases.extend(sb.spec.host_aliases.iter().cloned());
        let p = sb.dir.join("hosts");
        fio(
            || format!("write {}", p.display()),
            fs::write(&p, hosts_file(&aliases)),
        )
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.cfg.data_dir.join("containers").join(id)
    }

    fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.cfg.data_dir.join("sandboxes").join(id)
    }

    fn ids(&self) -> Result<Vec<String>> {
        let d = self.cfg.data_dir.join("containers");
        let mut out = vec![];
        for e in fio(|| format!("list {}", d.display()), fs::read_dir(&d))? {
            let e = fio(|| format!("list {}", d.display()), e)?;
            let name = e.file_name().to_string_lossy().into_owned();
            if valid_id(&name) && e.path().join("state.json").exists() {
                out.push(name);
            }
        }
        Ok(out)
    }

    fn record(&self, id: &str) -> Result<Record> {
        if !valid_id(id) {
            return Err(Error::NotFound(id.into()));
        }
        state::read_json(&self.dir(id).join("state.json"))?
            .ok_or_else(|| Error::NotFound(id.into()))
    }

    /// Find a container by full id or unique prefix.
    pub fn resolve(&self, prefix: &str) -> Result<String> {
        let ids: Vec<String> = self
            .ids()?
            .into_iter()
            .filter(|i| i.starts_with(prefix))
            .collect();
        match ids.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::NotFound(prefix.into())),
            _ => Err(Error::Invalid(format!("id prefix {prefix:?} is ambiguous"))),
        }
    }

    fn sandbox(&self, id: &str) -> Result<SandboxInfo> {
        if !valid_id(id) {
            return Err(Error::SandboxNotFound(id.into()));
        }
        state::read_json(&self.sandbox_dir(id).join("sandbox.json"))?
            .ok_or_else(|| Error::SandboxNotFound(id.into()))
    }

    fn run_shim(&self, args: &[&std::ffi::OsStr], id: &str, log: &Path) -> Result<String> {
        let log_file = fio(
            || format!("open {}", log.display()),
            fs::OpenOptions::new().create(true).append(true).open(log),
        )?;
        let mut cmd = Command::new(&self.cfg.shim_path);
        cmd.arg("shim")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        // SAFETY: setsid is async-signal-safe; the shim leaves the runtime's session so
        // the runtime's terminal or process group dying does not take it along.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut child = fio(
            || format!("spawn {}", self.cfg.shim_path.display()),
            cmd.spawn(),
        )?;
        let mut out = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        let _ = child.wait();
        let line = out.lines().next().unwrap_or("").to_string();
        if line.starts_with("ok") {
            Ok(line)
        } else {
            let message = if line.is_empty() {
                let l = fs::read_to_string(log).unwrap_or_default();
                format!("shim gave no answer; {}", l.lines().last().unwrap_or(""))
            } else {
                line.trim_start_matches("error: ").to_string()
            };
            Err(Error::Start {
                id: id.into(),
                message,
            })
        }
    }

    fn info(&self, rec: Record) -> Result<ContainerInfo> {
        let dir = self.dir(&rec.id);
        let started: Option<Started> = state::read_json(&dir.join("pid.json"))?;
        let exited: Option<Exited> = state::read_json(&dir.join("exit.json"))?;
        let mut info = ContainerInfo {
            id: rec.id.clone(),
            spec: rec.spec,
            state: ContainerState::Created,
            pid: None,
            shim_pid: None,
            created_at: rec.created_at,
            started_at: started.as_ref().map(|s| s.started_at.clone()),
            finished_at: None,
            exit_code: None,
            reason: None,
            cgroup: rec.cgroup,
            log_path: rec.log_path,
            handler: rec.handler,
        };
        if let Some(e) = exited {
            info.state = ContainerState::Exited;
            info.finished_at = Some(e.finished_at);
            info.exit_code = Some(e.exit_code);
            info.reason = Some(e.reason);
        } else if let Some(s) = started {
            if s.init.alive() {
                info.state = ContainerState::Running;
                info.pid = Some(s.init.pid);
                info.shim_pid = s.shim.alive().then_some(s.shim.pid);
            } else if s.shim.alive() {
                // The shim is recording the exit right now.
                info.state = ContainerState::Running;
                info.shim_pid = Some(s.shim.pid);
            } else {
                info.state = ContainerState::Unknown;
                info.reason = Some("init and shim gone without an exit record".into());
            }
        }
        Ok(info)
    }

    fn cleanup_create(&self, dir: &Path, cgroup: Option<&str>) {
        unmount_all(&dir.join("rootfs"));
        if let Some(cg) = cgroup {
            let _ = self.cgroups.remove(cg);
        }
        if !is_mounted(&dir.join("rootfs")) {
            let _ = fs::remove_dir_all(dir);
        }
    }

    fn create_inner(&self, spec: &ContainerSpec, id: &str, dir: &Path) -> Result<Record> {
        let handler = match spec.runtime_handler.as_deref() {
            None | Some("") => String::new(),
            Some(h) => self
                .cfg
                .handlers
                .get(h)
                .map(|b| b.path.to_string_lossy().into_owned())
                .ok_or_else(|| Error::UnknownHandler(h.into()))?,
        };
        let rootfs = dir.join("rootfs");
        fio(
            || format!("create {}", rootfs.display()),
            fs::create_dir_all(&rootfs),
        )?;
        let mut overlay = false;
        let mut root_path = rootfs.clone();
        match &spec.rootfs {
            None => return Err(Error::Invalid("no rootfs".into())),
            Some(Rootfs::Dir(d)) => {
                if !d.is_dir() {
                    return Err(Error::Invalid(format!(
                        "rootfs {} is not a directory",
                        d.display()
                    )));
                }
                root_path = d.clone();
            }
            Some(Rootfs::Lowerdirs(lowers)) => {
                if lowers.is_empty() {
                    return Err(Error::Invalid("rootfs has no layers".into()));
                }
                for l in lowers {
                    if !l.is_dir() || l.to_string_lossy().contains([',', ':']) {
                        return Err(Error::Invalid(format!("bad layer dir {}", l.display())));
                    }
                }
                let (upper, work) = (dir.join("upper"), dir.join("work"));
                for d in [&upper, &work] {
                    fio(|| format!("create {}", d.display()), fs::create_dir_all(d))?;
                }
                let lower = lowers
                    .iter()
                    .map(|l| l.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(":");
                let data = format!(
                    "lowerdir={lower},upperdir={},workdir={}",
                    upper.display(),
                    work.display()
                );
                // `volatile`: no sync of the upper dir on unmount (measured at ~50 ms per
                // container removal here). A writable layer never outlives its container
                // across a node crash, so its durability is not needed.
                let volatile = format!("{data},volatile");
                let r = mount(
                    Some("overlay"),
                    &rootfs,
                    Some("overlay"),
                    MsFlags::empty(),
                    Some(volatile.as_str()),
                )
                .or_else(|_| {
                    mount(
                        Some("overlay"),
                        &rootfs,
                        Some("overlay"),
                        MsFlags::empty(),
                        Some(data.as_str()),
                    )
                });
                sys(|| format!("mount overlay rootfs for {id}"), r)?;
                overlay = true;
            }
        }
        // Namespaces, cgroup and /etc files from the sandbox, or private ones.
        let (mut ctx, cgroup) = match &spec.sandbox_id {
            Some(sid) => {
                let sb = self.sandbox(sid)?;
                let s = &sb.spec;
                let pinned = |name: &str| Ns::Join(crate::shim::sandbox_ns_path(&sb.dir, name));
                let pid = if s.host_pid {
                    Ns::Host
                } else if s.share_process_namespace {
                    let pause: ProcId = state::read_json(&sb.dir.join("pause.json"))?
                        .filter(|p: &ProcId| p.alive())
                        .ok_or_else(|| {
                            Error::Invalid(format!("sandbox {sid} lost its PID namespace keeper"))
                        })?;
                    Ns::Join(PathBuf::from(format!("/proc/{}/ns/pid", pause.pid)))
                } else {
                    Ns::New
                };
                let ctx = BundleContext {
                    net: if s.host_network {
                        Ns::Host
                    } else {
                        pinned("net")
                    },
                    uts: if s.host_network {
                        Ns::Host
                    } else {
                        pinned("uts")
                    },
                    ipc: if s.host_ipc { Ns::Host } else { pinned("ipc") },
                    pid,
                    hostname: None,
                    cgroup: String::new(),
                    etc_files: ["hosts", "resolv.conf", "hostname"]
                        .iter()
                        .map(|f| (sb.dir.join(f), format!("/etc/{f}")))
                        .collect(),
                    shm: Some(if s.host_ipc {
                        "/dev/shm".into()
                    } else {
                        sb.dir.join("shm")
                    }),
                    user: (0, 0, vec![]),
                };
                (ctx, format!("{}/{id}", sb.cgroup_parent))
            }
            None => {
                let hostname = spec
                    .hostname
                    .clone()
                    .unwrap_or_else(|| id[..12].to_string());
                write_etc_files(dir, &hostname, &crate::spec::DnsConfig::default(), &[])?;
                let ctx = BundleContext {
                    net: Ns::New,
                    uts: Ns::New,
                    ipc: Ns::New,
                    pid: Ns::New,
                    hostname: Some(hostname),
                    cgroup: String::new(),
                    etc_files: ["hosts", "resolv.conf", "hostname"]
                        .iter()
                        .map(|f| (dir.join(f), format!("/etc/{f}")))
                        .collect(),
                    shm: None,
                    user: (0, 0, vec![]),
                };
                (ctx, format!("flotilla/{id}"))
            }
        };
        ctx.cgroup = cgroup.clone();
        let (mut uid, mut gid) = (0, 0);
        if let Some(u) = spec
            .image_defaults
            .user
            .as_deref()
            .filter(|u| !u.is_empty())
        {
            (uid, gid) = resolve_user(&root_path, u).map_err(Error::Invalid)?;
        }
        if let Some(u) = spec.run_as_user {
            uid = u;
        }
        if let Some(g) = spec.run_as_group {
            gid = g;
        }
        ctx.user = (uid, gid, spec.supplemental_groups.clone());
        let mut config = oci::build(spec, &ctx)?;
        if !overlay && let Some(root) = config.root_mut() {
            root.set_path(root_path.clone());
        }
        let cfg_path = dir.join("config.json");
        config
            .save(&cfg_path)
            .map_err(|e| Error::Invalid(format!("write {}: {e}", cfg_path.display())))?;
        if handler.is_empty() {
            self.cgroups
                .create(&cgroup, &spec.resources, spec.privileged)?;
        }
        let stop_signal = spec
            .image_defaults
            .stop_signal
            .as_deref()
            .map(|s| {
                parse_signal(s).ok_or_else(|| Error::Invalid(format!("bad stop signal {s:?}")))
            })
            .transpose()?
            .unwrap_or(Signal::SIGTERM) as i32;
        let rec = Record {
            id: id.to_string(),
            spec: spec.clone(),
            created_at: state::now(),
            handler: handler.clone(),
            cgroup,
            log_path: spec
                .log_path
                .clone()
                .unwrap_or_else(|| dir.join("container.log")),
            log_max_size: spec.log_max_size.unwrap_or(crate::logs::DEFAULT_MAX_SIZE),
            log_max_files: spec.log_max_files.unwrap_or(crate::logs::DEFAULT_MAX_FILES),
            overlay,
            stop_signal,
            oci_root: (!handler.is_empty()).then(|| self.cfg.data_dir.join("runc")),
        };
        state::write_json(&dir.join("state.json"), &rec)?;
        Ok(rec)
    }

    fn kill_all(&self, rec: &Record, init: Option<ProcId>, sig: Signal) {
        if let Some(i) = init
            && i.alive()
        {
            let _ = kill(Pid::from_raw(i.pid), sig);
        }
        for p in self.cgroups.pids(&rec.cgroup) {
            let _ = kill(Pid::from_raw(p), sig);
        }
    }
}

fn hosts_file(aliases: &[(String, Vec<String>)]) -> String {
    let mut hosts = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    for (ip, names) in aliases {
        hosts.push_str(&format!("{ip}\t{}\n", names.join(" ")));
    }
    hosts
}

/// Write hosts, resolv.conf and hostname files into `dir`.
fn write_etc_files(
    dir: &Path,
    hostname: &str,
    dns: &crate::spec::DnsConfig,
    aliases: &[(String, Vec<String>)],
) -> Result<()> {
    let hosts = hosts_file(aliases);
    let resolv = if dns.servers.is_empty() {
        fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
    } else {
        let mut r = String::new();
        for s in &dns.servers {
            r.push_str(&format!("nameserver {s}\n"));
        }
        if !dns.searches.is_empty() {
            r.push_str(&format!("search {}\n", dns.searches.join(" ")));
        }
        if !dns.options.is_empty() {
            r.push_str(&format!("options {}\n", dns.options.join(" ")));
        }
        r
    };
    for (name, body) in [
        ("hosts", hosts),
        ("resolv.conf", resolv),
        ("hostname", format!("{hostname}\n")),
    ] {
        let p = dir.join(name);
        fio(|| format!("write {}", p.display()), fs::write(&p, body))?;
    }
    Ok(())
}

impl ContainerRuntime for Runtime {
    fn create_sandbox(&self, spec: &SandboxSpec) -> Result<SandboxInfo> {
        let id = state::new_id()?;
        let dir = self.sandbox_dir(&id);
        fio(
            || format!("create {}", dir.display()),
            fs::create_dir_all(&dir),
        )?;
        let uid = if spec.uid.is_empty() {
            id.clone()
        } else {
            spec.uid.clone()
        };
        let info = SandboxInfo {
            id: id.clone(),
            spec: spec.clone(),
            netns_path: (!spec.host_network).then(|| crate::shim::sandbox_ns_path(&dir, "net")),
            cgroup_parent: spec.qos.pod_cgroup(&uid),
            dir: dir.clone(),
            created_at: state::now(),
        };
        let r = (|| {
            let hostname = if spec.hostname.is_empty() {
                spec.name.clone()
            } else {
                spec.hostname.clone()
            };
            write_etc_files(&dir, &hostname, &spec.dns, &spec.host_aliases)?;
            if !spec.host_ipc {
                let shm = dir.join("shm");
                fio(
                    || format!("create {}", shm.display()),
                    fs::create_dir_all(&shm),
                )?;
                sys(
                    || "mount pod /dev/shm".into(),
                    mount(
                        Some("shm"),
                        &shm,
                        Some("tmpfs"),
                        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                        Some("mode=1777,size=65536k"),
                    ),
                )?;
            }
            self.cgroups
                .create(&info.cgroup_parent, &Default::default(), true)?;
            state::write_json(&dir.join("sandbox.json"), &info)?;
            self.run_shim(
                &["sandbox".as_ref(), dir.as_os_str()],
                &id,
                &dir.join("shim.log"),
            )?;
            Ok(())
        })();
        match r {
            Ok(()) => Ok(info),
            Err(e) => {
                let _ = self.remove_sandbox(&id);
                let _ = fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    fn remove_sandbox(&self, id: &str) -> Result<()> {
        let info = self.sandbox(id)?;
        if let Some(p) = state::read_json::<ProcId>(&info.dir.join("pause.json"))?
            && p.alive()
        {
            let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(5);
            while p.alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        for n in ["net", "uts", "ipc"] {
            unmount_all(&crate::shim::sandbox_ns_path(&info.dir, n));
        }
        unmount_all(&info.dir.join("shm"));
        self.cgroups.remove(&info.cgroup_parent)?;
        for n in ["net", "uts", "ipc"] {
            if is_mounted(&crate::shim::sandbox_ns_path(&info.dir, n)) {
                return Err(Error::Invalid(format!(
                    "sandbox {id}: {n} namespace still mounted"
                )));
            }
        }
        if is_mounted(&info.dir.join("shm")) {
            return Err(Error::Invalid(format!("sandbox {id}: shm still mounted")));
        }
        fio(
            || format!("remove {}", info.dir.display()),
            fs::remove_dir_all(&info.dir),
        )
    }

    fn list_sandboxes(&self) -> Result<Vec<SandboxInfo>> {
        let d = self.cfg.data_dir.join("sandboxes");
        let mut out = vec![];
        for e in fio(|| format!("list {}", d.display()), fs::read_dir(&d))? {
            let e = fio(|| format!("list {}", d.display()), e)?;
            if let Some(i) = state::read_json::<SandboxInfo>(&e.path().join("sandbox.json"))? {
                out.push(i);
            }
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(out)
    }

    fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        let id = state::new_id()?;
        let dir = self.dir(&id);
        fio(
            || format!("create {}", dir.display()),
            fs::create_dir_all(&dir),
        )?;
        match self.create_inner(spec, &id, &dir) {
            Ok(_) => Ok(id),
            Err(e) => {
                let cg = spec
                    .sandbox_id
                    .as_ref()
                    .and_then(|s| self.sandbox(s).ok())
                    .map_or_else(
                        || format!("flotilla/{id}"),
                        |sb| format!("{}/{id}", sb.cgroup_parent),
                    );
                self.cleanup_create(&dir, Some(&cg));
                Err(e)
            }
        }
    }

    fn start(&self, id: &str) -> Result<()> {
        let rec = self.record(id)?;
        let dir = self.dir(&rec.id);
        if dir.join("pid.json").exists() || dir.join("exit.json").exists() {
            return Err(Error::AlreadyStarted(id.into()));
        }
        match self.run_shim(
            &["start".as_ref(), dir.as_os_str()],
            id,
            &dir.join("shim.log"),
        ) {
            Ok(_) => Ok(()),
            Err(e) => {
                // A failed start is an exit: record it so status and ps show why.
                if !dir.join("exit.json").exists() {
                    let mut x = Exited::from_status(Some(128), None, false);
                    x.reason = format!("StartError: {e}");
                    state::write_json(&dir.join("exit.json"), &x)?;
                }
                Err(e)
            }
        }
    }

    fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        let rec = self.record(id)?;
        let dir = self.dir(id);
        let started: Option<Started> = state::read_json(&dir.join("pid.json"))?;
        let Some(started) = started else {
            return Ok(());
        };
        let done = |dir: &Path| dir.join("exit.json").exists();
        if done(&dir) {
            return Ok(());
        }
        let sig = Signal::try_from(rec.stop_signal).unwrap_or(Signal::SIGTERM);
        if started.init.alive() {
            let _ = kill(Pid::from_raw(started.init.pid), sig);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && !done(&dir) && started.init.alive() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if !done(&dir) {
            self.kill_all(&rec, Some(started.init), Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(&dir) {
            if !started.shim.alive() && !started.init.alive() {
                // No shim to record the exit (it was killed): record what we know.
                let mut x = Exited::from_status(None, Some(Signal::SIGKILL as i32), false);
                x.reason = "Unknown".into();
                state::write_json(&dir.join("exit.json"), &x)?;
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout(id.into()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    fn remove(&self, id: &str) -> Result<()> {
        let rec = self.record(id)?;
        let info = self.info(rec.clone())?;
        if info.state == ContainerState::Running {
            return Err(Error::Running(id.into()));
        }
        let dir = self.dir(id);
        self.kill_all(&rec, None, Signal::SIGKILL);
        if let Some(root) = &rec.oci_root {
            let _ = Command::new(&rec.handler)
                .arg("--root")
                .arg(root)
                .args(["delete", "--force", id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let rootfs = dir.join("rootfs");
        unmount_all(&rootfs);
        if is_mounted(&rootfs) {
            return Err(Error::Invalid(format!("rootfs of {id} is still mounted")));
        }
        self.cgroups.remove(&rec.cgroup)?;
        fio(
            || format!("remove {}", dir.display()),
            fs::remove_dir_all(&dir),
        )?;
        if rec.spec.log_path.is_some() {
            // The kubelet owns log paths it chose; it removes them with the pod.
        }
        Ok(())
    }

    fn list(&self) -> Result<Vec<ContainerInfo>> {
        let mut out = vec![];
        for id in self.ids()? {
            match self.record(&id) {
                Ok(r) => out.push(self.info(r)?),
                Err(Error::NotFound(_)) => {} // removed meanwhile
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        Ok(out)
    }

    fn status(&self, id: &str) -> Result<ContainerInfo> {
        let rec = self.record(id)?;
        self.info(rec)
    }

    fn wait(&self, id: &str, timeout: Duration) -> Result<ContainerInfo> {
        let deadline = Instant::now() + timeout;
        let mut nap = Duration::from_micros(200);
        loop {
            let i = self.status(id)?;
            if matches!(
                i.state,
                ContainerState::Exited | ContainerState::Unknown | ContainerState::Created
            ) {
                return Ok(i);
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout(id.into()));
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(2));
        }
    }

    fn exec(
        &self,
        id: &str,
        req: &ExecRequest,
        stdin: Stdio,
        stdout: Stdio,
        stderr: Stdio,
    ) -> Result<i32> {
        let info = self.status(id)?;
        if info.state != ContainerState::Running || info.pid.is_none() {
            return Err(Error::NotRunning(id.into()));
        }
        if req.cmd.is_empty() {
            return Err(Error::Invalid("exec needs a command".into()));
        }
        let dir = self.dir(id);
        let mut cmd = Command::new(&self.cfg.shim_path);
        cmd.arg("shim").arg("exec").arg(&dir);
        if req.tty {
            cmd.arg("--tty");
            if let Some(fd) = req.resize.clone() {
                use std::os::fd::AsRawFd;
                cmd.arg("--resize-fd").arg(RESIZE_FD.to_string());
                // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and
                // exec; `fd` stays open in the parent for as long as `cmd` lives.
                unsafe {
                    cmd.pre_exec(move || {
                        let raw = fd.as_raw_fd();
                        if raw == RESIZE_FD {
                            // dup2 onto itself keeps close-on-exec: clear it.
                            if libc::fcntl(raw, libc::F_SETFD, 0) < 0 {
                                return Err(std::io::Error::last_os_error());
                            }
                        } else if libc::dup2(raw, RESIZE_FD) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            }
        }
        cmd.arg("--")
            .args(&req.cmd)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr);
        let status = fio(|| "run exec helper".into(), cmd.status())?;
        use std::os::unix::process::ExitStatusExt;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }

    fn attach(&self, id: &str, opts: AttachOptions) -> Result<AttachConn> {
        let info = self.status(id)?;
        if info.state != ContainerState::Running {
            return Err(Error::NotRunning(id.into()));
        }
        let dir = self.dir(id);
        crate::attach::connect(&dir, opts).map_err(|source| {
            if dir.join("exit.json").exists() {
                Error::NotRunning(id.into())
            } else {
                Error::Io {
                    what: format!("attach to container {id}"),
                    source,
                }
            }
        })
    }

    fn log_path(&self, id: &str) -> Result<PathBuf> {
        Ok(self.record(id)?.log_path)
    }

    fn stats(&self, id: &str) -> Result<Stats> {
        let rec = self.record(id)?;
        Ok(Stats {
            cpu_usage_ns: self.cgroups.cpu_usage_ns(&rec.cgroup),
            memory_bytes: self.cgroups.memory_usage(&rec.cgroup),
            memory_working_set_bytes: self.cgroups.memory_working_set(&rec.cgroup),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse() {
        assert_eq!(parse_signal("SIGTERM"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("quit"), Some(Signal::SIGQUIT));
        assert_eq!(parse_signal("9"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("nope"), None);
    }

    #[test]
    fn users_resolve_from_image_files() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("etc")).unwrap();
        fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/:/bin/sh\nweb:x:33:34::/:/bin/sh\n",
        )
        .unwrap();
        fs::write(d.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(resolve_user(d.path(), "web").unwrap(), (33, 34));
        assert_eq!(resolve_user(d.path(), "33").unwrap(), (33, 34));
        assert_eq!(resolve_user(d.path(), "1000:staff").unwrap(), (1000, 50));
        assert!(resolve_user(d.path(), "nobody").is_err());
    }

    #[test]
    fn ids_are_validated() {
        assert!(valid_id("abc123"));
        assert!(!valid_id("../etc"));
        assert!(!valid_id(""));
    }
}
