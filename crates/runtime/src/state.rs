//! On-disk state. Everything needed to re-adopt a container after the kubelet restarts
//! lives in its directory `<data-dir>/containers/<id>/`:
//! - `state.json` — written once by the runtime at create ([`Record`]);
//! - `config.json` + `rootfs/` — the OCI bundle (run by the built-in runtime or runc);
//! - `pid.json` — written by the shim once the container runs ([`Started`]);
//! - `exit.json` — written by the shim when the init process is gone ([`Exited`]);
//! - `shim.log` — the shim's own diagnostics;
//! - `attach.sock` — the shim's attach endpoint while the container runs
//!   ([`crate::attach`]).
//!
//! Each file has one writer and is replaced atomically (write to a temp file, rename).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::spec::ContainerSpec;

/// Errors reading or writing state files.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A state file could not be read or written.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A state file did not parse.
    #[error("state file {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

/// What the runtime wrote at create.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Container id.
    pub id: String,
    /// The spec.
    pub spec: ContainerSpec,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// Runtime handler: "" built-in, otherwise the OCI runtime binary's path.
    pub handler: String,
    /// Cgroup relative to each hierarchy root.
    pub cgroup: String,
    /// Log file.
    pub log_path: PathBuf,
    /// Log rotation size.
    pub log_max_size: u64,
    /// Log files kept.
    pub log_max_files: u32,
    /// Whether rootfs/ is an overlay mount the runtime made.
    pub overlay: bool,
    /// Signal stop sends first.
    pub stop_signal: i32,
    /// runc `--root` for OCI-binary containers.
    pub oci_root: Option<PathBuf>,
}

/// A process identity that survives pid reuse: pid + start time (clock ticks since boot,
/// field 22 of `/proc/<pid>/stat`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProcId {
    /// Host pid.
    pub pid: i32,
    /// Start time in clock ticks.
    pub start_time: u64,
}

impl ProcId {
    /// The identity of a live pid now.
    pub fn of(pid: i32) -> Option<ProcId> {
        start_time(pid).map(|start_time| ProcId { pid, start_time })
    }

    /// True while this very process exists (and is not a zombie).
    pub fn alive(&self) -> bool {
        match stat_fields(self.pid) {
            Some((state, st)) => st == self.start_time && state != 'Z' && state != 'X',
            None => false,
        }
    }
}

/// Written by the shim once the container's init runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    /// The shim process.
    pub shim: ProcId,
    /// The container's init process.
    pub init: ProcId,
    /// RFC 3339 start time.
    pub started_at: String,
}

/// Written by the shim (or the runtime, if the shim is gone) when the init exits.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exited {
    /// Exit status, 128+signal when killed.
    pub exit_code: i32,
    /// The killing signal, if any.
    pub signal: Option<i32>,
    /// The cgroup's OOM killer fired.
    pub oom_killed: bool,
    /// `Completed`, `Error`, `OOMKilled`, `Unknown`.
    pub reason: String,
    /// RFC 3339 finish time.
    pub finished_at: String,
}

impl Exited {
    /// Classify a wait status.
    pub fn from_status(code: Option<i32>, signal: Option<i32>, oom_killed: bool) -> Exited {
        let exit_code = code.unwrap_or_else(|| 128 + signal.unwrap_or(0));
        let reason = if oom_killed {
            "OOMKilled"
        } else if exit_code == 0 {
            "Completed"
        } else {
            "Error"
        };
        Exited {
            exit_code,
            signal,
            oom_killed,
            reason: reason.into(),
            finished_at: now(),
        }
    }
}

/// RFC 3339 now with nanoseconds.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Write JSON atomically (temp file + fsync-free rename; a crash leaves old or new).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| StateError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &bytes)
}

/// Write bytes atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let err = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    drop(f);
    fs::rename(&tmp, path).map_err(err)
}

/// Read a JSON file; Ok(None) when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StateError::Json {
            path: path.to_path_buf(),
            source,
        })
}

fn stat_fields(pid: i32) -> Option<(char, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let state = fields.first()?.chars().next()?;
    // Field 22 overall is index 19 after pid and comm.
    let st = fields.get(19)?.parse().ok()?;
    Some((state, st))
}

/// Start time of `pid` in clock ticks since boot.
pub fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid).map(|(_, st)| st)
}

/// A new random 64-hex-digit id.
pub fn new_id() -> Result<String, StateError> {
    let mut b = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|source| StateError::Io {
            path: "/dev/urandom".into(),
            source,
        })?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_identity() {
        let me = ProcId::of(std::process::id() as i32).unwrap();
        assert!(me.alive());
        let other = ProcId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(
            !other.alive(),
            "a different start time is a different process"
        );
    }

    #[test]
    fn exit_classification() {
        assert_eq!(
            Exited::from_status(Some(0), None, false).reason,
            "Completed"
        );
        let e = Exited::from_status(None, Some(9), true);
        assert_eq!((e.exit_code, e.reason.as_str()), (137, "OOMKilled"));
        assert_eq!(Exited::from_status(Some(3), None, false).reason, "Error");
    }

    #[test]
    fn atomic_json_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.json");
        assert!(read_json::<Exited>(&p).unwrap().is_none());
        write_json(&p, &Exited::from_status(Some(1), None, false)).unwrap();
        assert_eq!(read_json::<Exited>(&p).unwrap().unwrap().exit_code, 1);
        assert_eq!(new_id().unwrap().len(), 64);
    }
}
