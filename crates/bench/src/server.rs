//! The API server under test: a child `flotilla server` process (the honest
//! setup: its own process, its own memory, controllers included) or, for tests,
//! an in-process [`apiserver::start`].

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio_util::sync::CancellationToken;

use crate::BenchError;

/// How to run the server under test.
#[derive(Clone, Debug)]
pub enum ServerMode {
    /// `BIN server --data-dir … --secure-port 0` as a child process.
    Child(PathBuf),
    /// `apiserver::start` inside the benchmark process (no controllers, and no
    /// separate memory figure).
    InProcess,
}

enum Inner {
    Child {
        child: Box<Child>,
        // Kept open so the server's later writes to stdout cannot fail.
        _stdout: ChildStdout,
    },
    InProcess {
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<anyhow::Result<()>>,
    },
}

/// A running server under test. Dropping it kills a child process; call
/// [`ServerUnderTest::stop`] to also wait for it.
pub struct ServerUnderTest {
    inner: Inner,
    pub kubeconfig: PathBuf,
    pub log: Option<PathBuf>,
}

/// How long a server may take to write its kubeconfig.
const START_TIMEOUT: Duration = Duration::from_secs(60);

impl ServerUnderTest {
    /// Start a server with its data in `data_dir` on a free loopback port.
    pub async fn start(mode: &ServerMode, data_dir: &Path) -> Result<Self, BenchError> {
        std::fs::create_dir_all(data_dir)?;
        match mode {
            ServerMode::Child(bin) => Self::start_child(bin, data_dir).await,
            ServerMode::InProcess => {
                let config = apiserver::ServerConfig {
                    data_dir: data_dir.to_path_buf(),
                    bind_address: "127.0.0.1".into(),
                    secure_port: 0,
                    // No controller manager creates service accounts here.
                    service_account_admission: false,
                    ..Default::default()
                };
                let shutdown = CancellationToken::new();
                let running = apiserver::start(config, shutdown.clone())
                    .await
                    .map_err(|e| BenchError::Server(format!("{e:#}")))?;
                Ok(ServerUnderTest {
                    inner: Inner::InProcess {
                        shutdown,
                        task: running.task,
                    },
                    kubeconfig: running.kubeconfig,
                    log: None,
                })
            }
        }
    }

    async fn start_child(bin: &Path, data_dir: &Path) -> Result<Self, BenchError> {
        Self::start_child_with(bin, data_dir, &[]).await
    }

    /// Start `BIN server` with its data in `data_dir` on a free loopback port,
    /// with `extra` flags after the fixed ones.
    pub async fn start_child_with(
        bin: &Path,
        data_dir: &Path,
        extra: &[&str],
    ) -> Result<Self, BenchError> {
        std::fs::create_dir_all(data_dir)?;
        let log_path = data_dir.with_extension("log");
        let log = std::fs::File::create(&log_path)?;
        let mut child = Command::new(bin)
            .arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--bind-address", "127.0.0.1", "--secure-port", "0"])
            // Control plane only: the benchmark measures it, not a kubelet on this host.
            .arg("--disable-kubelet")
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BenchError::Server(format!("cannot run {}: {e}", bin.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Server("child has no stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let wait = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(path) = line.strip_prefix("kubeconfig: ") {
                    return Ok(Some(PathBuf::from(path.trim())));
                }
            }
            Ok::<_, std::io::Error>(None)
        };
        let found = tokio::time::timeout(START_TIMEOUT, wait).await;
        let kubeconfig = match found {
            Ok(Ok(Some(path))) => path,
            other => {
                let _ = child.kill().await;
                let why = match other {
                    Err(_) => "timed out".to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(_)) => "exited".to_string(),
                };
                let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: String = tail.lines().rev().take(10).collect::<Vec<_>>().join(" | ");
                return Err(BenchError::Server(format!(
                    "{} server {why} before writing its kubeconfig; log: {tail}",
                    bin.display()
                )));
            }
        };
        Ok(ServerUnderTest {
            inner: Inner::Child {
                child: Box::new(child),
                _stdout: lines.into_inner().into_inner(),
            },
            kubeconfig,
            log: Some(log_path),
        })
    }

    /// The process id of a child server.
    pub fn pid(&self) -> Option<u32> {
        match &self.inner {
            Inner::Child { child, .. } => child.id(),
            Inner::InProcess { .. } => None,
        }
    }

    /// Resident and peak resident memory (VmRSS, VmHWM) of a child server, in bytes.
    pub fn memory(&self) -> Option<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        Some(Memory {
            rss: proc_status_bytes(&status, "VmRSS")?,
            peak: proc_status_bytes(&status, "VmHWM")?,
        })
    }

    /// CPU time (user + system, all threads) a child server has used so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        process_cpu_time(&std::fs::read_to_string(format!("/proc/{}/stat", self.pid()?)).ok()?)
    }

    /// Stop the server and wait for it to end.
    pub async fn stop(self) {
        match self.inner {
            Inner::Child { mut child, .. } => {
                let _ = child.kill().await;
            }
            Inner::InProcess { shutdown, task } => {
                shutdown.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
            }
        }
    }
}

/// Resident memory figures of a process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Memory {
    pub rss: u64,
    pub peak: u64,
}

/// Clock ticks per second of `/proc/<pid>/stat` times: Linux's `USER_HZ`, which
/// is 100 on every architecture userspace sees (`getconf CLK_TCK`).
const USER_HZ: u64 = 100;

/// utime + stime of a `/proc/<pid>/stat` line.
pub fn process_cpu_time(stat: &str) -> Option<Duration> {
    // The command name (field 2) may hold spaces and parentheses: fields are
    // counted after its closing parenthesis, where field 3 (state) comes first.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

/// CPU time this (the benchmark) process has used so far.
pub fn own_cpu_time() -> Option<Duration> {
    process_cpu_time(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// CPU time all processes of the machine have used (the `cpu` line of
/// `/proc/stat`: everything but idle and iowait; guest time is already in user).
pub fn machine_cpu_time(proc_stat: &str) -> Option<Duration> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal …
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| ticks.get(i).copied())
        .sum::<Option<u64>>()?;
    Some(Duration::from_millis(busy * 1000 / USER_HZ))
}

/// [`machine_cpu_time`] of this machine now.
pub fn machine_cpu_now() -> Option<Duration> {
    machine_cpu_time(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// A `kB` field of `/proc/<pid>/status`, in bytes.
pub fn proc_status_bytes(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") => Some(value * 1024),
            None => Some(value),
            Some(_) => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_cpu_times() {
        let cases: &[(&str, Option<u64>)] = &[
            (
                "1234 (flotilla) S 1 1234 1234 0 -1 4194560 500 0 0 0 150 50 0 0 20 0 5 0 100 0 0",
                Some(2000),
            ),
            (
                "77 (odd) name)) R 1 77 77 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 1 0 0",
                Some(100),
            ),
            ("77 (short) R 1", None),
            ("no parenthesis", None),
        ];
        for &(stat, want_ms) in cases {
            assert_eq!(
                process_cpu_time(stat),
                want_ms.map(Duration::from_millis),
                "{stat}"
            );
        }
        assert!(own_cpu_time().is_some());
    }

    #[test]
    fn sums_busy_machine_time() {
        let cases: &[(&str, Option<u64>)] = &[
            // user 100, nice 1, system 20, idle 5000, iowait 7, irq 2, softirq 3, steal 4
            (
                "cpu  100 1 20 5000 7 2 3 4 0 0\ncpu0 50 0 10 2500 3 1 1 2 0 0\n",
                Some(1300),
            ),
            ("cpu  100 1 20 5000 7 2 3\n", None),
            ("cpu0 1 2 3 4 5 6 7 8\n", None),
            ("cpu  1 x 3 4 5 6 7 8\n", None),
        ];
        for &(stat, want_ms) in cases {
            assert_eq!(
                machine_cpu_time(stat),
                want_ms.map(Duration::from_millis),
                "{stat}"
            );
        }
    }

    #[test]
    fn parses_proc_status_fields() {
        let status =
            "Name:\tflotilla\nVmHWM:\t   40960 kB\nVmRSS:\t   20480 kB\nThreads:\t5\nOdd:\t3 MB\n";
        let cases: &[(&str, Option<u64>)] = &[
            ("VmRSS", Some(20480 * 1024)),
            ("VmHWM", Some(40960 * 1024)),
            ("Threads", Some(5)),
            ("Odd", None),
            ("VmSwap", None),
            ("Vm", None),
        ];
        for &(field, want) in cases {
            assert_eq!(proc_status_bytes(status, field), want, "{field}");
        }
    }
}
