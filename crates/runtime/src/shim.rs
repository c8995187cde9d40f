//! The per-container shim: the `flotilla` binary run as `flotilla shim …`.
//!
//! - `shim start <container-dir>`: double-forks away from the runtime (which started it
//!   with `setsid`), becomes a child subreaper, starts the container's init (built-in
//!   [`crate::init`] or `runc run --detach` of the same bundle), writes `pid.json`, answers
//!   `ok <pid>` on stdout, pumps the container's stdout/stderr into the CRI log, waits for
//!   the init and writes `exit.json` (exit code, signal, OOM kill, finish time). The runtime
//!   can die and restart meanwhile; the container and its shim keep running. With `stdin`
//!   the shim holds the write end of the container's stdin pipe (with `tty`, the master of
//!   its pty, whose output is the stdout stream) and serves `attach.sock`
//!   ([`crate::attach`]): input to the container, output to every attached client.
//! - `shim exec <container-dir> [--tty] -- CMD…`: joins the container's namespaces and
//!   cgroup, runs CMD with the container's credentials and returns its exit code.
//! - `shim sandbox <sandbox-dir>`: creates a pod's namespaces and pins them with bind
//!   mounts (plus a PID-1 keeper when the pod shares its process namespace).
//!
//! No async runtime here: a few threads and blocking waits keep the shim's RSS small.

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
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

use crate::attach::{self, AttachOptions};
use crate::cgroup::Cgroups;
use crate::logs::{LogWriter, Stream, pump_tee};
use crate::spec::ContainerSpec;
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
        Some("exec") if args.len() >= 4 => match exec_args(&args[2..]) {
            Ok((tty, resize_fd, cmd)) => match exec(Path::new(&args[1]), tty, resize_fd, cmd) {
                Ok(code) => return code,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
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
    let builtin = record.handler.is_empty();
    let (child_io, held) = container_io(&record.spec, builtin)?;
    let init_pid = if builtin {
        start_builtin(dir, &spec, &cgroups.procs_files(&record.cgroup), child_io)?
    } else {
        start_oci(dir, &record, child_io)?
    };
    let hub = Arc::new(Hub::new(held.stdin, held.master, &record.spec));
    // Bound before the runtime hears `ok`, so an attach right after start finds it.
    let listener = fio(|| "bind attach socket".into(), crate::attach::bind(dir))?;
    {
        let hub = hub.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let hub = hub.clone();
                std::thread::spawn(move || serve_client(hub, conn));
            }
        });
    }
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
    let pumps = held.outputs.len();
    for (r, stream) in held.outputs {
        let log = log.clone();
        let done = done_tx.clone();
        let hub = hub.clone();
        std::thread::spawn(move || {
            pump_tee(r, stream, log, |chunk| hub.broadcast(stream, chunk));
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
    for _ in 0..pumps {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let _ = done_rx.recv_timeout(left);
    }
    // Attached clients get the rest of the output, then the end of their connection.
    let _ = fs::remove_file(dir.join(crate::attach::SOCKET));
    hub.close(Duration::from_secs(2));
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
    io: ChildIo,
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
            let stdin = io
                .stdin
                .as_ref()
                .map_or(null.as_raw_fd(), |f| f.as_raw_fd());
            unsafe {
                libc::dup2(stdin, 0);
                libc::dup2(io.stdout.as_raw_fd(), 1);
                libc::dup2(io.stderr.as_raw_fd(), 2);
                if io.tty {
                    // The terminal becomes the controlling terminal of a new session.
                    libc::setsid();
                    libc::ioctl(0, libc::TIOCSCTTY as _, 0);
                }
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
            // The container's ends: only the container may hold them (a pty's output
            // ends with EIO once the last holder of its terminal side is gone).
            drop(io);
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

fn start_oci(dir: &Path, record: &Record, io: ChildIo) -> Result<Pid, ShimError> {
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
        .stdin(io.stdin.map_or_else(Stdio::null, Stdio::from))
        .stdout(Stdio::from(io.stdout))
        .stderr(Stdio::from(io.stderr))
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

/// `[--tty] [--resize-fd N] -- CMD…` of `shim exec`.
fn exec_args(args: &[String]) -> Result<(bool, Option<i32>, &[String]), ShimError> {
    let mut tty = false;
    let mut resize = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--tty" => tty = true,
            "--resize-fd" => {
                let fd = args.get(i + 1).and_then(|f| f.parse::<i32>().ok());
                resize =
                    Some(fd.ok_or_else(|| ShimError::Usage("--resize-fd needs a number".into()))?);
                i += 1;
            }
            "--" if i + 1 < args.len() => return Ok((tty, resize, &args[i + 1..])),
            _ => break,
        }
        i += 1;
    }
    Err(ShimError::Usage("exec needs -- CMD".into()))
}

/// Sets the size of the terminal whose master is `master`; false if that failed.
fn set_winsize(master: &impl AsRawFd, width: u16, height: u16) -> bool {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) >= 0 }
}

/// Applies the [`attach::RESIZE`] frames read from `sizes` to the terminal `master`,
/// until either end closes.
fn relay_resizes(mut sizes: fs::File, master: fs::File) {
    while let Ok(Some((kind, payload))) = attach::read_frame(&mut sizes) {
        if let (attach::RESIZE, Some((w, h))) = (kind, attach::parse_resize(&payload))
            && !set_winsize(&master, w, h)
        {
            return;
        }
    }
}

fn exec(dir: &Path, tty: bool, resize_fd: Option<i32>, cmd: &[String]) -> Result<i32, ShimError> {
    // The size pipe is the shim's alone: the command must not inherit it.
    let resize = resize_fd.map(|fd| {
        // SAFETY: the runtime passed this descriptor to the shim for it to own.
        let f = unsafe { fs::File::from_raw_fd(fd) };
        // SAFETY: F_SETFD on a descriptor we own.
        unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        f
    });
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
                if let Some(sizes) = resize {
                    let m = fio(|| "dup pty".into(), master.try_clone())?;
                    std::thread::spawn(move || relay_resizes(sizes, m));
                }
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

/// The container's ends of its stdio.
struct ChildIo {
    /// `None`: `/dev/null`.
    stdin: Option<OwnedFd>,
    stdout: OwnedFd,
    stderr: OwnedFd,
    /// The three are one terminal, to become the controlling terminal.
    tty: bool,
}

/// The shim's ends of the container's stdio.
struct HeldIo {
    /// Where attached input goes (pipe or pty master); `None` without `stdin`.
    stdin: Option<fs::File>,
    /// The pty master, for resizes.
    master: Option<fs::File>,
    /// Output to log and broadcast.
    outputs: Vec<(fs::File, Stream)>,
}

fn container_io(spec: &ContainerSpec, builtin: bool) -> Result<(ChildIo, HeldIo), ShimError> {
    let pipe = || -> Result<(fs::File, fs::File), ShimError> {
        let (r, w) = sys(|| "pipe".into(), pipe2(OFlag::O_CLOEXEC))?;
        Ok((fs::File::from(r), fs::File::from(w)))
    };
    let dup = |f: &fs::File| fio(|| "dup".into(), f.try_clone());
    if spec.tty && builtin {
        let pty = sys(|| "openpty".into(), nix::pty::openpty(None, None))?;
        for fd in [&pty.master, &pty.slave] {
            sys(
                || "set close-on-exec".into(),
                nix::fcntl::fcntl(
                    fd,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                ),
            )?;
        }
        let (master, slave) = (fs::File::from(pty.master), fs::File::from(pty.slave));
        let child = ChildIo {
            stdin: Some(dup(&slave)?.into()),
            stdout: dup(&slave)?.into(),
            stderr: slave.into(),
            tty: true,
        };
        let held = HeldIo {
            stdin: if spec.stdin {
                Some(dup(&master)?)
            } else {
                None
            },
            outputs: vec![(dup(&master)?, Stream::Stdout)],
            master: Some(master),
        };
        return Ok((child, held));
    }
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (child_in, held_in) = if spec.stdin {
        let (r, w) = pipe()?;
        (Some(r.into()), Some(w))
    } else {
        (None, None)
    };
    Ok((
        ChildIo {
            stdin: child_in,
            stdout: out_w.into(),
            stderr: err_w.into(),
            tty: false,
        },
        HeldIo {
            stdin: held_in,
            master: None,
            outputs: vec![(out_r, Stream::Stdout), (err_r, Stream::Stderr)],
        },
    ))
}

/// Frames queued for one attached client before it counts as stuck and is dropped.
const CLIENT_QUEUE: usize = 1024;

struct Client {
    id: u64,
    opts: AttachOptions,
    tx: mpsc::SyncSender<Vec<u8>>,
    /// To cut off a client that does not keep up.
    conn: std::os::unix::net::UnixStream,
}

#[derive(Default)]
struct Clients {
    list: Vec<Client>,
    writers: Vec<std::thread::JoinHandle<()>>,
    closed: bool,
    next: u64,
}

/// The attached clients of one container and its stdin.
struct Hub {
    clients: Mutex<Clients>,
    stdin: Mutex<Option<fs::File>>,
    master: Option<fs::File>,
    has_stdin: bool,
    stdin_once: bool,
    tty: bool,
}

impl Hub {
    fn new(stdin: Option<fs::File>, master: Option<fs::File>, spec: &ContainerSpec) -> Hub {
        Hub {
            clients: Mutex::default(),
            has_stdin: stdin.is_some(),
            stdin: Mutex::new(stdin),
            tty: master.is_some(),
            master,
            stdin_once: spec.stdin_once,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Clients> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add a client; `None` once the container has exited.
    fn register(
        &self,
        opts: AttachOptions,
        tx: mpsc::SyncSender<Vec<u8>>,
        conn: std::os::unix::net::UnixStream,
        writer: std::thread::JoinHandle<()>,
    ) -> Option<u64> {
        let mut c = self.lock();
        c.writers.retain(|w| !w.is_finished());
        c.writers.push(writer);
        if c.closed {
            return None;
        }
        c.next += 1;
        let id = c.next;
        c.list.push(Client { id, opts, tx, conn });
        Some(id)
    }

    /// Detach a client: its connection ends once its queue is written.
    fn remove(&self, id: u64) {
        self.lock().list.retain(|c| c.id != id);
    }

    fn broadcast(&self, stream: Stream, chunk: &[u8]) {
        let kind = match stream {
            Stream::Stdout => attach::STDOUT,
            Stream::Stderr => attach::STDERR,
        };
        let mut c = self.lock();
        if c.list.is_empty() {
            return;
        }
        let frame = attach::encode(kind, chunk);
        c.list.retain(|cl| {
            let wants = if kind == attach::STDOUT {
                cl.opts.stdout
            } else {
                cl.opts.stderr
            };
            if !wants {
                return true;
            }
            match cl.tx.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::TrySendError::Full(_)) => {
                    eprintln!("attach: client {} does not keep up; detached", cl.id);
                    let _ = cl.conn.shutdown(std::net::Shutdown::Both);
                    false
                }
                Err(mpsc::TrySendError::Disconnected(_)) => false,
            }
        });
    }

    fn write_stdin(&self, data: &[u8]) {
        let mut s = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = s.as_mut()
            && f.write_all(data).is_err()
        {
            // The container closed its stdin.
            *s = None;
        }
    }

    /// A client's input ended: with `stdinOnce` (and no terminal) the container's stdin
    /// is closed; otherwise the client detaches (as containerd). True if it detached.
    fn stdin_ended(&self, id: u64) -> bool {
        if self.stdin_once && !self.tty {
            *self.stdin.lock().unwrap_or_else(|p| p.into_inner()) = None;
            false
        } else {
            self.remove(id);
            true
        }
    }

    fn resize(&self, width: u16, height: u16) {
        if let Some(m) = &self.master {
            set_winsize(m, width, height);
        }
    }

    /// The container is gone and its output drained: end every connection once its
    /// queue is written (waiting up to `grace` for that).
    fn close(&self, grace: Duration) {
        let writers = {
            let mut c = self.lock();
            c.closed = true;
            c.list.clear();
            std::mem::take(&mut c.writers)
        };
        let deadline = std::time::Instant::now() + grace;
        for w in writers {
            while !w.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// One attached client: HELLO, then input frames until it hangs up; output goes out
/// through a writer thread fed by [`Hub::broadcast`].
fn serve_client(hub: Arc<Hub>, mut conn: std::os::unix::net::UnixStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let opts = match attach::read_frame(&mut conn) {
        Ok(Some((attach::HELLO, p))) if p.len() == 1 => AttachOptions::from_byte(p[0]),
        _ => return,
    };
    let _ = conn.set_read_timeout(None);
    let (Ok(mut out), Ok(cut)) = (conn.try_clone(), conn.try_clone()) else {
        return;
    };
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(CLIENT_QUEUE);
    let writer = std::thread::spawn(move || {
        for frame in rx {
            if out.write_all(&frame).is_err() {
                break;
            }
        }
        let _ = out.shutdown(std::net::Shutdown::Write);
    });
    let Some(id) = hub.register(opts, tx, cut, writer) else {
        return;
    };
    // Input to a container without stdin is ignored, its end included.
    let mut stdin_open = opts.stdin && hub.has_stdin;
    loop {
        match attach::read_frame(&mut conn) {
            Ok(Some((attach::STDIN, data))) if stdin_open => hub.write_stdin(&data),
            Ok(Some((attach::CLOSE_STDIN, _))) if stdin_open => {
                stdin_open = false;
                if hub.stdin_ended(id) {
                    return;
                }
            }
            Ok(Some((attach::RESIZE, p))) => {
                if let Some((w, h)) = attach::parse_resize(&p) {
                    hub.resize(w, h);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    if stdin_open {
        hub.stdin_ended(id);
    }
    hub.remove(id);
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
