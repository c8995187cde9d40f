//! The per-container shim: the `flotilla` binary run as `flotilla shim …`.
//!
//! - `shim start <container-dir>`: double-forks away from the runtime (which started it
//!   with `setsid`), becomes a child subreaper, starts the container's init (built-in
//!   [`crate::init`] or `runc run --detach` of the same bundle), writes `pid.json`, answers
//!   `ok <pid>` on stdout, pumps the container's stdout/stderr into the CRI log, waits for
//!   the init and writes `exit.json` (exit code, signal, OOM kill, finish time). The runtime
//!   can die and restart meanwhile; the container and its shim keep running.
//! - `shim exec <container-dir> [--tty] -- CMD…`: joins the container's namespaces and
//!   cgroup, runs CMD with the container's credentials and returns its exit code.
//! - `shim sandbox <sandbox-dir>`: creates a pod's namespaces and pins them with bind
//!   mounts (plus a PID-1 keeper when the pod shares its process namespace).
//!
//! No async runtime here: a few threads and blocking waits keep the shim's RSS small.

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2, sethostname};
use oci_spec::runtime::Spec;

use crate::cgroup::Cgroups;
use crate::logs::{LogWriter, Stream, pump};
use crate::spec::SandboxInfo;
use crate::state::{self, Exited, ProcId, Record, Started};

/// Errors of the shim.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// Bad command line.
    #[error("usage: flotilla shim start DIR | exec DIR [--tty] -- CMD... | sandbox DIR ({0})")]
    Usage(String),
    /// A state file.
    #[error(transparent)]
    State(#[from] state::StateError),
    /// The log file.
    #[error(transparent)]
    Log(#[from] crate::logs::LogError),
    /// The bundle config.
    #[error("bundle config {path}: {source}")]
    Config {
        /// config.json.
        path: PathBuf,
        /// The cause.
        source: oci_spec::OciSpecError,
    },
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
    /// The container's init could not be set up.
    #[error("container init: {0}")]
    Init(String),
    /// The OCI runtime binary failed.
    #[error("{0}")]
    Oci(String),
    /// The container is not running.
    #[error("container is not running")]
    NotRunning,
}

fn sys<T>(what: impl FnOnce() -> String, r: nix::Result<T>) -> Result<T, ShimError> {
    r.map_err(|source| ShimError::Sys {
        what: what(),
        source,
    })
}

fn fio<T>(what: impl FnOnce() -> String, r: std::io::Result<T>) -> Result<T, ShimError> {
    r.map_err(|source| ShimError::Io {
        what: what(),
        source,
    })
}

/// Entry point of `flotilla shim ARGS…` (ARGS without the `shim` word); returns the exit
/// status the process should exit with.
pub fn main(args: Vec<OsString>) -> i32 {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let r = match args.first().map(String::as_str) {
        Some("start") if args.len() == 2 => start(Path::new(&args[1])),
        Some("exec") if args.len() >= 4 => {
            let tty = args[2] == "--tty";
            let rest = &args[if tty { 3 } else { 2 }..];
            match rest.split_first() {
                Some((dd, cmd)) if dd == "--" && !cmd.is_empty() => {
                    match exec(Path::new(&args[1]), tty, cmd) {
                        Ok(code) => return code,
                        Err(e) => Err(e),
                    }
                }
                _ => Err(ShimError::Usage("exec needs -- CMD".into())),
            }
        }
        Some("sandbox") if args.len() == 2 => sandbox(Path::new(&args[1])),
        _ => Err(ShimError::Usage(format!("got {args:?}"))),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            // stdout is the runtime's status pipe for start and sandbox.
            if matches!(args.first().map(String::as_str), Some("start" | "sandbox")) {
                println!("error: {e}");
            }
            eprintln!("flotilla shim: {e}");
            if matches!(e, ShimError::NotRunning | ShimError::Usage(_)) {
                126
            } else {
                1
            }
        }
    }
}

fn dev_null() -> Result<fs::File, ShimError> {
    fio(
        || "open /dev/null".into(),
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null"),
    )
}

fn start(dir: &Path) -> Result<(), ShimError> {
    // First fork: the parent returns at once so the runtime can reap it; the child is
    // re-parented to init (or the nearest subreaper) and never becomes a zombie of the
    // runtime. SAFETY: single-threaded here; the child continues normally.
    match sys(|| "fork".into(), unsafe { fork() })? {
        ForkResult::Parent { .. } => unsafe { libc::_exit(0) },
        ForkResult::Child => {}
    }
    sys(
        || "become subreaper".into(),
        nix::sys::prctl::set_child_subreaper(true),
    )?;
    let record: Record = state::read_json(&dir.join("state.json"))?
        .ok_or_else(|| ShimError::Oci("state.json missing".into()))?;
    let config_path = dir.join("config.json");
    let spec = Spec::load(&config_path).map_err(|source| ShimError::Config {
        path: config_path.clone(),
        source,
    })?;
    let cgroups = Cgroups::detect();
    let log = Arc::new(Mutex::new(LogWriter::open(
        &record.log_path,
        record.log_max_size,
        record.log_max_files,
    )?));
    let (out_r, out_w) = sys(|| "pipe".into(), pipe2(OFlag::O_CLOEXEC))?;
    let (err_r, err_w) = sys(|| "pipe".into(), pipe2(OFlag::O_CLOEXEC))?;
    let init_pid = if record.handler.is_empty() {
        start_builtin(
            dir,
            &spec,
            &cgroups.procs_files(&record.cgroup),
            out_w,
            err_w,
        )?
    } else {
        start_oci(dir, &record, out_w, err_w)?
    };
    let me = ProcId::of(std::process::id() as i32)
        .ok_or_else(|| ShimError::Oci("cannot read own /proc stat".into()))?;
    let init = ProcId::of(init_pid.as_raw()).unwrap_or(ProcId {
        pid: init_pid.as_raw(),
        start_time: 0,
    });
    state::write_json(
        &dir.join("pid.json"),
        &Started {
            shim: me,
            init,
            started_at: state::now(),
        },
    )?;
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "ok {init_pid}");
    let _ = stdout.flush();
    // Stop holding the runtime's status pipe (and stdin).
    let null = dev_null()?;
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
        libc::dup2(null.as_raw_fd(), 1);
    }
    let (done_tx, done_rx) = mpsc::channel::<()>();
    for (r, stream) in [(out_r, Stream::Stdout), (err_r, Stream::Stderr)] {
        let log = log.clone();
        let done = done_tx.clone();
        std::thread::spawn(move || {
            pump(fs::File::from(r), stream, log);
            let _ = done.send(());
        });
    }
    drop(done_tx);
    let (code, signal) = loop {
        match waitpid(None::<Pid>, None) {
            Ok(WaitStatus::Exited(p, c)) if p == init_pid => break (Some(c), None),
            Ok(WaitStatus::Signaled(p, s, _)) if p == init_pid => break (None, Some(s as i32)),
            Ok(_) => continue,
            Err(nix::Error::EINTR) => continue,
            Err(_) => break (None, None),
        }
    };
    let finished_at = state::now();
    // Drain what the dead processes wrote before recording the exit, so a reader that
    // sees exit.json also sees the last log lines. Bounded: a leftover process could hold
    // the pipes open.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let _ = done_rx.recv_timeout(left);
    }
    let oom = cgroups.oom_kills(&record.cgroup) > 0;
    let mut exited = if code.is_none() && signal.is_none() {
        let mut e = Exited::from_status(Some(255), None, oom);
        e.reason = "Unknown".into();
        e
    } else {
        Exited::from_status(code, signal, oom)
    };
    exited.finished_at = finished_at;
    state::write_json(&dir.join("exit.json"), &exited)?;
    Ok(())
}

fn start_builtin(
    dir: &Path,
    spec: &Spec,
    procs: &[PathBuf],
    out_w: OwnedFd,
    err_w: OwnedFd,
) -> Result<Pid, ShimError> {
    // Entering a PID namespace changes only where our *children* go; threads cannot be
    // created meanwhile (clone(CLONE_THREAD) fails with EINVAL), so switch back after the
    // fork before the log pumps start.
    let own_pid_ns = fio(
        || "open own pid namespace".into(),
        fs::File::open("/proc/self/ns/pid"),
    )?;
    match crate::init::pid_namespace(spec) {
        Some(Some(path)) => {
            let f = fio(|| format!("open {}", path.display()), fs::File::open(&path))?;
            sys(
                || format!("join pid namespace {}", path.display()),
                setns(f.as_fd(), CloneFlags::CLONE_NEWPID),
            )?;
        }
        Some(None) => sys(
            || "new pid namespace".into(),
            unshare(CloneFlags::CLONE_NEWPID),
        )?,
        None => {}
    }
    let (sync_r, sync_w) = sys(|| "pipe".into(), pipe2(OFlag::O_CLOEXEC))?;
    let null = dev_null()?;
    // SAFETY: the shim is single-threaded until the pumps start after this fork.
    match sys(|| "fork container init".into(), unsafe { fork() })? {
        ForkResult::Child => {
            drop(sync_r);
            unsafe {
                libc::dup2(null.as_raw_fd(), 0);
                libc::dup2(out_w.as_raw_fd(), 1);
                libc::dup2(err_w.as_raw_fd(), 2);
            }
            let msg = match crate::init::run(dir, spec, procs) {
                Err(e) => e.to_string(),
                Ok(never) => match never {},
            };
            let mut w = fs::File::from(sync_w);
            let _ = w.write_all(msg.as_bytes());
            unsafe { libc::_exit(127) }
        }
        ForkResult::Parent { child } => {
            sys(
                || "return to own pid namespace".into(),
                setns(own_pid_ns.as_fd(), CloneFlags::CLONE_NEWPID),
            )?;
            drop(sync_w);
            drop(out_w);
            drop(err_w);
            let mut msg = String::new();
            let _ = fs::File::from(sync_r).read_to_string(&mut msg);
            if !msg.is_empty() {
                let _ = waitpid(child, None);
                return Err(ShimError::Init(msg));
            }
            Ok(child)
        }
    }
}

fn start_oci(
    dir: &Path,
    record: &Record,
    out_w: OwnedFd,
    err_w: OwnedFd,
) -> Result<Pid, ShimError> {
    let pid_file = dir.join("init.pid");
    let root = record
        .oci_root
        .clone()
        .unwrap_or_else(|| dir.join("oci-root"));
    // runc's own diagnostics go to runc.log; the container's stdio are the log pipes,
    // which `run --detach` hands straight to the container.
    let status = Command::new(&record.handler)
        .arg("--root")
        .arg(&root)
        .arg("--log")
        .arg(dir.join("runc.log"))
        .args(["run", "--detach", "--pid-file"])
        .arg(&pid_file)
        .arg("--bundle")
        .arg(dir)
        .arg(&record.id)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w))
        .status();
    let status = fio(|| format!("run {}", record.handler), status)?;
    if !status.success() {
        let log = fs::read_to_string(dir.join("runc.log")).unwrap_or_default();
        let last = log.lines().last().unwrap_or("").to_string();
        return Err(ShimError::Oci(format!(
            "{} run failed ({status}): {last}",
            record.handler
        )));
    }
    let pid = fio(
        || format!("read {}", pid_file.display()),
        fs::read_to_string(&pid_file),
    )?;
    pid.trim()
        .parse::<i32>()
        .map(Pid::from_raw)
        .map_err(|_| ShimError::Oci(format!("bad pid file {pid:?}")))
}

fn exec(dir: &Path, tty: bool, cmd: &[String]) -> Result<i32, ShimError> {
    let record: Record = state::read_json(&dir.join("state.json"))?.ok_or(ShimError::NotRunning)?;
    let started: Started = state::read_json(&dir.join("pid.json"))?.ok_or(ShimError::NotRunning)?;
    if !started.init.alive() || dir.join("exit.json").exists() {
        return Err(ShimError::NotRunning);
    }
    let config_path = dir.join("config.json");
    let spec = Spec::load(&config_path).map_err(|source| ShimError::Config {
        path: config_path.clone(),
        source,
    })?;
    let mut process = spec
        .process()
        .clone()
        .ok_or_else(|| ShimError::Init("config.json has no process".into()))?;
    if tty {
        let mut env = process.env().clone().unwrap_or_default();
        if !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        process.set_env(Some(env));
    }
    let pid = started.init.pid;
    let mut fds = vec![];
    for (name, flag) in [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        let p = format!("/proc/{pid}/ns/{name}");
        fds.push((fio(|| format!("open {p}"), fs::File::open(&p))?, flag, p));
    }
    // Identity check after opening: the fds now pin the namespaces of the right process.
    if !started.init.alive() {
        return Err(ShimError::NotRunning);
    }
    for f in Cgroups::detect().procs_files(&record.cgroup) {
        fio(
            || format!("join cgroup {}", f.display()),
            fs::write(&f, "0"),
        )?;
    }
    let own_pid_ns = fio(
        || "open own pid namespace".into(),
        fs::File::open("/proc/self/ns/pid"),
    )?;
    for (f, flag, p) in &fds {
        sys(|| format!("setns {p}"), setns(f.as_fd(), *flag))?;
    }
    let pty = if tty {
        Some(sys(|| "openpty".into(), nix::pty::openpty(None, None))?)
    } else {
        None
    };
    // SAFETY: single-threaded until after the fork.
    match sys(|| "fork".into(), unsafe { fork() })? {
        ForkResult::Child => {
            if let Some(p) = &pty {
                unsafe {
                    libc::setsid();
                    libc::ioctl(p.slave.as_raw_fd(), libc::TIOCSCTTY as _, 0);
                    for fd in 0..3 {
                        libc::dup2(p.slave.as_raw_fd(), fd);
                    }
                }
            }
            let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
            let e = match crate::init::exec_process(&process, Some(cmd), seccomp) {
                Err(e) => e,
                Ok(never) => match never {},
            };
            eprintln!("exec: {e}");
            unsafe { libc::_exit(127) }
        }
        ForkResult::Parent { child } => {
            // Threads need our own pid namespace back (see start_builtin).
            sys(
                || "return to own pid namespace".into(),
                setns(own_pid_ns.as_fd(), CloneFlags::CLONE_NEWPID),
            )?;
            if let Some(p) = pty {
                drop(p.slave);
                let master = fs::File::from(p.master);
                let mut to_child = fio(|| "dup pty".into(), master.try_clone())?;
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_child);
                });
                let mut from_child = master;
                let mut out = std::io::stdout();
                let mut buf = [0u8; 8192];
                // EIO once the child side is closed.
                while let Ok(n) = from_child.read(&mut buf) {
                    if n == 0 || out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    let _ = out.flush();
                }
            }
            loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, c)) => return Ok(c),
                    Ok(WaitStatus::Signaled(_, s, _)) => return Ok(128 + s as i32),
                    Ok(_) | Err(nix::Error::EINTR) => continue,
                    Err(e) => {
                        return Err(ShimError::Sys {
                            what: "wait exec".into(),
                            source: e,
                        });
                    }
                }
            }
        }
    }
}

/// Pinned namespace files of a sandbox directory.
pub fn sandbox_ns_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("ns").join(name)
}

fn sandbox(dir: &Path) -> Result<(), ShimError> {
    let info: SandboxInfo = state::read_json(&dir.join("sandbox.json"))?
        .ok_or_else(|| ShimError::Oci("sandbox.json missing".into()))?;
    let s = &info.spec;
    let mut wanted = vec![];
    if !s.host_network {
        wanted.push(("net", CloneFlags::CLONE_NEWNET));
        wanted.push(("uts", CloneFlags::CLONE_NEWUTS));
    }
    if !s.host_ipc {
        wanted.push(("ipc", CloneFlags::CLONE_NEWIPC));
    }
    let flags = wanted.iter().fold(CloneFlags::empty(), |a, (_, f)| a | *f);
    sys(|| "unshare sandbox namespaces".into(), unshare(flags))?;
    if flags.contains(CloneFlags::CLONE_NEWUTS) && !s.hostname.is_empty() {
        sys(|| "sethostname".into(), sethostname(&s.hostname))?;
    }
    fio(|| "mkdir ns".into(), fs::create_dir_all(dir.join("ns")))?;
    for (name, _) in &wanted {
        let target = sandbox_ns_path(dir, name);
        fio(
            || format!("create {}", target.display()),
            fs::File::create(&target),
        )?;
        sys(
            || format!("pin {name} namespace"),
            mount(
                Some(format!("/proc/self/ns/{name}").as_str()),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            ),
        )?;
    }
    if s.share_process_namespace && !s.host_pid {
        sys(
            || "new pid namespace".into(),
            unshare(CloneFlags::CLONE_NEWPID),
        )?;
        let null = dev_null()?;
        // SAFETY: single-threaded.
        match sys(|| "fork pause".into(), unsafe { fork() })? {
            ForkResult::Child => {
                // PID 1 of the pod's shared PID namespace: reap orphans until killed.
                unsafe {
                    libc::setsid();
                    for fd in 0..3 {
                        libc::dup2(null.as_raw_fd(), fd);
                    }
                }
                loop {
                    if let Err(nix::Error::ECHILD) = waitpid(None::<Pid>, None) {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
            ForkResult::Parent { child } => {
                let id = ProcId::of(child.as_raw())
                    .ok_or_else(|| ShimError::Oci("pause process vanished".into()))?;
                state::write_json(&dir.join("pause.json"), &id)?;
            }
        }
    }
    println!("ok");
    Ok(())
}
