//! Shared helpers of the privileged tests: throwaway namespaces cleaned up on
//! drop, running async code inside a "node" namespace, tiny TCP servers and
//! clients inside pod namespaces.

#![allow(dead_code)]

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use network::Netns;

/// Every wait in these tests is bounded by this.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(90);

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Returns early (skipping the test loudly) when not root.
#[macro_export]
macro_rules! require_root {
    ($name:expr) => {
        if !common::is_root() {
            eprintln!("SKIPPED (not root): {}", $name);
            return;
        }
    };
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A scratch directory with namespaces in it; everything is removed on drop,
/// even when the test fails.
pub struct Scratch {
    dir: tempfile::TempDir,
    namespaces: Vec<PathBuf>,
}

impl Scratch {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = tempfile::Builder::new()
            .prefix(&format!("flotilla-net-{tag}-{}-{n}-", std::process::id()))
            .tempdir()
            .expect("tempdir");
        Self {
            dir,
            namespaces: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Creates a namespace at `<dir>/ns/<name>`, removed on drop.
    pub fn netns(&mut self, name: &str) -> PathBuf {
        let path = self.netns_path(name);
        Netns::create(&path).expect("create netns");
        self.namespaces.push(path.clone());
        path
    }

    /// The path a namespace called `name` would have (not created).
    pub fn netns_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("ns").join(name)
    }

    /// Number of files in the namespace directory.
    pub fn netns_files(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("ns"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = Netns::remove(ns);
        }
    }
}

/// Runs `f` on a current-thread runtime on a thread inside `ns`, bounded by
/// [`TEST_TIMEOUT`].
pub fn on_node<F, Fut, T>(ns: &Path, f: F) -> T
where
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = T>,
    T: Send,
{
    Netns::enter(ns, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            tokio::time::timeout(TEST_TIMEOUT, f())
                .await
                .expect("test step timed out")
        })
    })
    .expect("enter node netns")
}

/// Runs a shell command inside `ns`; panics with its output if it fails.
pub fn sh(ns: &Path, cmd: &str) -> String {
    let out = Netns::enter(ns, || Command::new("sh").args(["-c", cmd]).output())
        .expect("enter netns")
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Names of the links in `ns`.
pub fn links(ns: &Path) -> Vec<String> {
    sh(ns, "ip -o link show")
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// Connects two namespaces with a veth pair and addresses both ends
/// (`a_addr`/`b_addr` in CIDR form).
pub fn link_namespaces(a: &Path, a_if: &str, a_addr: &str, b: &Path, b_if: &str, b_addr: &str) {
    sh(
        a,
        &format!(
            "ip link add {a_if} type veth peer name {b_if} netns {b} && ip addr add {a_addr} dev {a_if} \
             && ip link set {a_if} up && ip link set lo up",
            b = b.display()
        ),
    );
    sh(
        b,
        &format!("ip addr add {b_addr} dev {b_if} && ip link set {b_if} up && ip link set lo up"),
    );
}

/// A TCP server on a thread inside a namespace. Every connection gets one
/// line: `<tag> <peer ip>`. Stops on drop.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(ns: &Path, port: u16, tag: &str) -> Server {
        let handle = Netns::open(ns).expect("open netns");
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let tag = tag.to_string();
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            handle
                .run(move || {
                    let listener = match TcpListener::bind(("0.0.0.0", port)) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    listener.set_nonblocking(true).expect("nonblocking");
                    let _ = tx.send(Ok(()));
                    let deadline = Instant::now() + TEST_TIMEOUT;
                    while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                        match listener.accept() {
                            Ok((mut s, peer)) => {
                                let _ = s.set_nonblocking(false);
                                let _ = writeln!(s, "{tag} {}", peer.ip());
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            Err(_) => break,
                        }
                    }
                })
                .expect("enter netns");
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("server start")
            .expect("bind");
        Server {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects to `addr` from the calling thread's namespace and returns the line
/// the server sent.
pub fn fetch(addr: SocketAddr, timeout: Duration) -> io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.trim().to_string())
}

/// [`fetch`] from inside `ns`.
pub fn fetch_in(ns: &Path, addr: SocketAddr, timeout: Duration) -> io::Result<String> {
    Netns::enter(ns, || fetch(addr, timeout)).expect("enter netns")
}

/// Files in an IPAM state directory that are allocations.
pub fn ipam_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
                })
                .count()
        })
        .unwrap_or(0)
}
