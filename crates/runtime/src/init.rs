//! The built-in low-level runtime: turns a forked child of the shim into the container's
//! init process from the bundle's `config.json` (namespaces, mounts, pivot_root, devices,
//! masked paths, hostname, capabilities, user, no_new_privs), then execs the command.
//!
//! Written on `nix`/`libc`/`caps` rather than youki's `libcontainer`: FACTS.md measured
//! libcontainer at 124 ms per `/bin/true` start against runc's ~40 ms; the goal here is
//! at or below crun's 47 ms for create+start+wait+delete, which needs a short, direct path.
//!
//! Seccomp profiles (`linux.seccomp`) are compiled with `seccompiler` ([`crate::seccomp`]).
//! Not implemented (runc does them from the same bundle): AppArmor/SELinux,
//! rlimits, sysctls, user namespaces, the cgroup filesystem inside the container.

use std::convert::Infallible;
use std::ffi::CString;
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::stat::{Mode, SFlag, makedev, mknod, umask};
use nix::unistd::{Gid, Uid, chdir, execve, pivot_root, setgroups, sethostname};
use oci_spec::runtime::{LinuxNamespaceType, LinuxSeccomp, Mount, Process, Spec};

/// Errors setting up a container process (reported to the shim over a pipe).
#[derive(Debug, thiserror::Error)]
pub enum InitError {
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
    /// The config asks for something impossible.
    #[error("{0}")]
    Invalid(String),
}

fn sys<T>(what: impl FnOnce() -> String, r: nix::Result<T>) -> Result<T, InitError> {
    r.map_err(|source| InitError::Sys {
        what: what(),
        source,
    })
}

fn fio<T>(what: impl FnOnce() -> String, r: std::io::Result<T>) -> Result<T, InitError> {
    r.map_err(|source| InitError::Io {
        what: what(),
        source,
    })
}

fn ns_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Time => CloneFlags::empty(),
    }
}

/// The PID namespace setting of a config: None = host, Some(None) = new,
/// Some(Some(path)) = join. The shim applies it before forking the init.
pub fn pid_namespace(spec: &Spec) -> Option<Option<PathBuf>> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Pid)
        .map(|n| n.path().clone())
}

/// Resolve `path` inside `root` the way the container will see it: symlinks are followed
/// relative to `root` and `..` never climbs above it, so a hostile image cannot point a
/// mount outside its rootfs. Hand-written: it is a few lines and no small crate does
/// exactly this on a path that may not exist yet.
pub fn secure_join(root: &Path, path: &Path) -> PathBuf {
    let mut parts: Vec<PathBuf> = vec![];
    let mut todo: Vec<PathBuf> = path
        .components()
        .rev()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        match c.components().next() {
            Some(Component::RootDir) | Some(Component::CurDir) | None => continue,
            Some(Component::ParentDir) => {
                parts.pop();
                continue;
            }
            _ => {}
        }
        let cur: PathBuf = root.join(parts.iter().collect::<PathBuf>()).join(&c);
        match fs::read_link(&cur) {
            Ok(target) if links < 40 => {
                links += 1;
                if target.is_absolute() {
                    parts.clear();
                }
                for t in target.components().rev() {
                    todo.push(PathBuf::from(t.as_os_str()));
                }
            }
            _ => parts.push(c),
        }
    }
    root.join(parts.iter().collect::<PathBuf>())
}

struct MountOpts {
    flags: MsFlags,
    data: Vec<String>,
    bind: bool,
    propagation: MsFlags,
}

fn parse_opts(opts: &[String]) -> MountOpts {
    let mut o = MountOpts {
        flags: MsFlags::empty(),
        data: vec![],
        bind: false,
        propagation: MsFlags::empty(),
    };
    for opt in opts {
        match opt.as_str() {
            "ro" => o.flags |= MsFlags::MS_RDONLY,
            "rw" => {}
            "nosuid" => o.flags |= MsFlags::MS_NOSUID,
            "nodev" => o.flags |= MsFlags::MS_NODEV,
            "noexec" => o.flags |= MsFlags::MS_NOEXEC,
            "strictatime" => o.flags |= MsFlags::MS_STRICTATIME,
            "relatime" => o.flags |= MsFlags::MS_RELATIME,
            "noatime" => o.flags |= MsFlags::MS_NOATIME,
            "bind" => o.bind = true,
            "rbind" => {
                o.bind = true;
                o.flags |= MsFlags::MS_REC;
            }
            "private" => o.propagation = MsFlags::MS_PRIVATE,
            "rprivate" => o.propagation = MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            "slave" => o.propagation = MsFlags::MS_SLAVE,
            "rslave" => o.propagation = MsFlags::MS_SLAVE | MsFlags::MS_REC,
            "shared" => o.propagation = MsFlags::MS_SHARED,
            "rshared" => o.propagation = MsFlags::MS_SHARED | MsFlags::MS_REC,
            other => o.data.push(other.to_string()),
        }
    }
    o
}

fn mount_one(rootfs: &Path, m: &Mount) -> Result<(), InitError> {
    let typ = m.typ().clone().unwrap_or_default();
    if typ == "cgroup" || typ == "cgroup2" {
        return Ok(());
    }
    let dest = secure_join(rootfs, m.destination());
    let opts = parse_opts(m.options().as_deref().unwrap_or(&[]));
    let source = m.source().clone().unwrap_or_else(|| PathBuf::from(&typ));
    let d = dest.display().to_string();
    if opts.bind || typ == "bind" {
        let meta = fio(
            || format!("bind source {}", source.display()),
            fs::metadata(&source),
        )?;
        if meta.is_dir() {
            fio(|| format!("mkdir {d}"), fs::create_dir_all(&dest))?;
        } else if !dest.exists() {
            if let Some(p) = dest.parent() {
                fio(|| format!("mkdir {}", p.display()), fs::create_dir_all(p))?;
            }
            fio(|| format!("create {d}"), fs::File::create(&dest))?;
        }
        let rec = opts.flags & MsFlags::MS_REC;
        sys(
            || format!("bind {} on {d}", source.display()),
            mount(
                Some(&source),
                &dest,
                None::<&str>,
                MsFlags::MS_BIND | rec,
                None::<&str>,
            ),
        )?;
        let extra = opts.flags - MsFlags::MS_REC;
        if !extra.is_empty() {
            sys(
                || format!("remount {d}"),
                mount(
                    None::<&str>,
                    &dest,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra,
                    None::<&str>,
                ),
            )?;
        }
    } else {
        fio(|| format!("mkdir {d}"), fs::create_dir_all(&dest))?;
        let data = opts.data.join(",");
        sys(
            || format!("mount {typ} on {d}"),
            mount(
                Some(&source),
                &dest,
                Some(typ.as_str()),
                opts.flags,
                (!data.is_empty()).then_some(data.as_str()),
            ),
        )?;
    }
    if !opts.propagation.is_empty() {
        sys(
            || format!("propagation of {d}"),
            mount(
                None::<&str>,
                &dest,
                None::<&str>,
                opts.propagation,
                None::<&str>,
            ),
        )?;
    }
    Ok(())
}

/// Standard device nodes of a container with a tmpfs /dev.
const DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

fn make_devices(dev: &Path) -> Result<(), InitError> {
    for (name, major, minor) in DEVICES {
        let p = dev.join(name);
        let _ = fs::remove_file(&p);
        sys(
            || format!("mknod {}", p.display()),
            mknod(
                &p,
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                makedev(*major, *minor),
            ),
        )?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let p = dev.join(name);
        if fs::symlink_metadata(&p).is_err() {
            fio(
                || format!("symlink {}", p.display()),
                std::os::unix::fs::symlink(target, &p),
            )?;
        }
    }
    Ok(())
}

fn mask_paths(rootfs: &Path, spec: &Spec) -> Result<(), InitError> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    for p in linux.masked_paths().as_deref().unwrap_or(&[]) {
        let target = secure_join(rootfs, Path::new(p));
        match fs::metadata(&target) {
            Ok(m) if m.is_dir() => sys(
                || format!("mask {p}"),
                mount(
                    Some("tmpfs"),
                    &target,
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY,
                    None::<&str>,
                ),
            )?,
            Ok(_) => sys(
                || format!("mask {p}"),
                mount(
                    Some("/dev/null"),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                ),
            )?,
            Err(_) => {}
        }
    }
    for p in linux.readonly_paths().as_deref().unwrap_or(&[]) {
        let target = secure_join(rootfs, Path::new(p));
        if !target.exists() {
            continue;
        }
        sys(
            || format!("readonly {p}"),
            mount(
                Some(&target),
                &target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            ),
        )?;
        sys(
            || format!("readonly {p}"),
            mount(
                None::<&str>,
                &target,
                None::<&str>,
                MsFlags::MS_BIND
                    | MsFlags::MS_REMOUNT
                    | MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV
                    | MsFlags::MS_NOEXEC,
                None::<&str>,
            ),
        )?;
    }
    Ok(())
}

/// Become the container: called in the shim's forked child, after the shim entered or
/// created the PID namespace. `cgroup_procs` are joined first. Returns only on error.
pub fn run(bundle: &Path, spec: &Spec, cgroup_procs: &[PathBuf]) -> Result<Infallible, InitError> {
    umask(Mode::empty());
    for f in cgroup_procs {
        fio(|| format!("join cgroup {}", f.display()), fs::write(f, "0"))?;
    }
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| InitError::Invalid("config.json has no linux section".into()))?;
    let mut new_ns = CloneFlags::empty();
    for ns in linux.namespaces().as_deref().unwrap_or(&[]) {
        if ns.typ() == LinuxNamespaceType::Pid {
            continue;
        }
        match ns.path() {
            Some(p) => {
                let f = fio(
                    || format!("open namespace {}", p.display()),
                    fs::File::open(p),
                )?;
                sys(
                    || format!("join namespace {}", p.display()),
                    setns(f.as_fd(), ns_flag(ns.typ())),
                )?;
            }
            None => new_ns |= ns_flag(ns.typ()),
        }
    }
    sys(|| "unshare namespaces".into(), unshare(new_ns))?;
    if !new_ns.contains(CloneFlags::CLONE_NEWNS) {
        return Err(InitError::Invalid(
            "a container needs its own mount namespace".into(),
        ));
    }
    sys(
        || "make / private".into(),
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        ),
    )?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| InitError::Invalid("config.json has no root".into()))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    sys(
        || format!("bind rootfs {}", rootfs.display()),
        mount(
            Some(&rootfs),
            &rootfs,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ),
    )?;
    let mut dev_is_tmpfs = false;
    for m in spec.mounts().as_deref().unwrap_or(&[]) {
        mount_one(&rootfs, m)?;
        if m.destination() == Path::new("/dev") && m.typ().as_deref() == Some("tmpfs") {
            dev_is_tmpfs = true;
        }
    }
    if dev_is_tmpfs {
        make_devices(&rootfs.join("dev"))?;
    }
    mask_paths(&rootfs, spec)?;
    sys(|| "chdir rootfs".into(), chdir(&rootfs))?;
    sys(|| "pivot_root".into(), pivot_root(".", "."))?;
    sys(
        || "detach old root".into(),
        umount2(".", MntFlags::MNT_DETACH),
    )?;
    sys(|| "chdir /".into(), chdir("/"))?;
    if root.readonly() == Some(true) {
        sys(
            || "remount / read-only".into(),
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            ),
        )?;
    }
    if new_ns.contains(CloneFlags::CLONE_NEWUTS)
        && let Some(h) = spec.hostname()
    {
        sys(|| "sethostname".into(), sethostname(h))?;
    }
    umask(Mode::from_bits_truncate(0o022));
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| InitError::Invalid("config.json has no process".into()))?;
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    exec_process(process, None, seccomp)
}

/// Drop to the process's credentials, confine it with `seccomp` and exec it; `args`
/// overrides the config's argv (used by exec). Returns only on error.
pub fn exec_process(
    process: &Process,
    args: Option<&[String]>,
    seccomp: Option<&LinuxSeccomp>,
) -> Result<Infallible, InitError> {
    let argv: Vec<String> = match args {
        Some(a) => a.to_vec(),
        None => process.args().clone().unwrap_or_default(),
    };
    let env: Vec<String> = process.env().clone().unwrap_or_default();
    let program = argv
        .first()
        .ok_or_else(|| InitError::Invalid("empty command".into()))?;
    let cwd_ok = chdir(process.cwd()).is_ok();
    let no_new_privs = process.no_new_privileges() == Some(true);
    if no_new_privs {
        sys(
            || "set no_new_privs".into(),
            nix::sys::prctl::set_no_new_privs(),
        )?;
    }
    let filters = match seccomp {
        Some(p) => crate::seccomp::compile(p).map_err(|e| InitError::Invalid(e.to_string()))?,
        None => Vec::new(),
    };
    let install = |filters: &[seccompiler::BpfProgram]| {
        crate::seccomp::install(filters).map_err(|e| InitError::Invalid(e.to_string()))
    };
    // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN: do it now, while
    // init still holds it (as runc does); with it, as late as possible (below).
    if !no_new_privs {
        install(&filters)?;
    }
    let to_caps = |set: &Option<std::collections::HashSet<oci_spec::runtime::Capability>>| {
        set.iter()
            .flatten()
            .filter_map(|c| format!("CAP_{c}").parse::<caps::Capability>().ok())
            .collect::<caps::CapsHashSet>()
    };
    // Only what this process holds can be granted (a privileged container gets "all"
    // capabilities the node's runtime has, as with runc).
    let held = caps::read(None, caps::CapSet::Permitted)
        .map_err(|e| InitError::Invalid(format!("read capabilities: {e}")))?;
    let to_caps = |set: &Option<std::collections::HashSet<oci_spec::runtime::Capability>>| {
        to_caps(set)
            .intersection(&held)
            .copied()
            .collect::<caps::CapsHashSet>()
    };
    let capset = process.capabilities().as_ref();
    let bounding = capset.map(|c| to_caps(c.bounding()));
    if let Some(b) = &bounding {
        for c in caps::all() {
            if !b.contains(&c) {
                caps::drop(None, caps::CapSet::Bounding, c)
                    .map_err(|e| InitError::Invalid(format!("drop {c} from bounding set: {e}")))?;
            }
        }
    }
    let user = process.user();
    sys(
        || "keep capabilities".into(),
        nix::sys::prctl::set_keepcaps(true),
    )?;
    let groups: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    sys(|| "setgroups".into(), setgroups(&groups))?;
    let gid = Gid::from_raw(user.gid());
    sys(
        || format!("setresgid {gid}"),
        nix::unistd::setresgid(gid, gid, gid),
    )?;
    let uid = Uid::from_raw(user.uid());
    sys(
        || format!("setresuid {uid}"),
        nix::unistd::setresuid(uid, uid, uid),
    )?;
    sys(
        || "keep capabilities".into(),
        nix::sys::prctl::set_keepcaps(false),
    )?;
    if let Some(c) = capset {
        let setc = |which: caps::CapSet, v: caps::CapsHashSet| {
            caps::set(None, which, &v)
                .map_err(|e| InitError::Invalid(format!("set {which:?} capabilities: {e}")))
        };
        // Effective before permitted: effective must stay a subset of permitted.
        setc(caps::CapSet::Inheritable, to_caps(c.inheritable()))?;
        setc(caps::CapSet::Effective, to_caps(c.effective()))?;
        setc(caps::CapSet::Permitted, to_caps(c.permitted()))?;
        for a in to_caps(c.ambient()) {
            caps::raise(None, caps::CapSet::Ambient, a)
                .map_err(|e| InitError::Invalid(format!("raise ambient {a}: {e}")))?;
        }
    }
    if !cwd_ok {
        sys(
            || format!("chdir {}", process.cwd().display()),
            chdir(process.cwd()),
        )?;
    }
    let path = find_program(program, &env)
        .ok_or_else(|| InitError::Invalid(format!("executable {program:?} not found")))?;
    if no_new_privs {
        install(&filters)?;
    }
    let c = |s: &str| CString::new(s).map_err(|_| InitError::Invalid(format!("NUL byte in {s:?}")));
    let argv_c = argv.iter().map(|a| c(a)).collect::<Result<Vec<_>, _>>()?;
    let env_c = env.iter().map(|a| c(a)).collect::<Result<Vec<_>, _>>()?;
    let path_c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| InitError::Invalid("NUL byte in program path".into()))?;
    reset_signals();
    let e = execve(&path_c, &argv_c, &env_c).unwrap_err();
    Err(InitError::Sys {
        what: format!("exec {program}"),
        source: e,
    })
}

/// Gives the container's process default signal dispositions and an empty signal mask,
/// as runc and containerd do: an ignored disposition survives exec, and the shim is a
/// Rust program, which ignores SIGPIPE (a container's `yes | head` must end by SIGPIPE,
/// not by an EPIPE error).
fn reset_signals() {
    use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
    // Real-time signals too, which nix's `Signal` does not list: plain libc.
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL installs no handler; nothing else runs in this process.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

fn find_program(program: &str, env: &[String]) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok() && p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_join_stays_inside_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("etc")).unwrap();
        std::os::unix::fs::symlink("/../../outside", r.join("evil")).unwrap();
        std::os::unix::fs::symlink("../etc", r.join("etc/self")).unwrap();
        assert_eq!(secure_join(r, Path::new("/../../x")), r.join("x"));
        assert_eq!(secure_join(r, Path::new("/evil/f")), r.join("outside/f"));
        assert_eq!(
            secure_join(r, Path::new("/etc/self/hosts")),
            r.join("etc/hosts")
        );
    }

    #[test]
    fn mount_options_parse() {
        let o = parse_opts(&[
            "rbind".into(),
            "ro".into(),
            "size=1k".into(),
            "rprivate".into(),
        ]);
        assert!(o.bind && o.flags.contains(MsFlags::MS_REC | MsFlags::MS_RDONLY));
        assert_eq!(o.data, ["size=1k"]);
        assert!(o.propagation.contains(MsFlags::MS_PRIVATE));
    }
}
