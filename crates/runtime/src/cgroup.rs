//! The "cgroupfs" cgroup driver: one directory per pod and per container, laid out like
//! the upstream kubelet's (`kubepods/{burstable,besteffort}/pod<uid>/<container-id>`,
//! guaranteed pods directly under `kubepods`), on cgroup v1 (one hierarchy per controller)
//! or v2 (one unified hierarchy), detected once.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::spec::Resources;

/// Errors of the cgroup driver.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A cgroup file or directory could not be read or written.
    #[error("cgroup {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The cgroup still had processes when it had to be removed.
    #[error("cgroup {0} still busy after 2s")]
    Busy(PathBuf),
}

type Result<T> = std::result::Result<T, CgroupError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Which cgroup layout the host has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// Per-controller hierarchies under `/sys/fs/cgroup/<controller>`.
    V1,
    /// The unified hierarchy at `/sys/fs/cgroup`.
    V2,
}

/// v1 controllers a container cgroup is made in (those mounted on the host). Each costs
/// a few ms per container (attach and rmdir wait for RCU grace periods; measured 3–12 ms
/// per rmdir here), so only the controllers the runtime uses are joined: not cpuset
/// (no CPU pinning yet) nor freezer (no pause).
const V1_CONTROLLERS: &[&str] = &["cpu", "cpuacct", "memory", "pids", "devices"];

/// Device rules for an unprivileged container (v1 `devices` controller): may mknod
/// anything, may use only the standard character devices and its ptys.
const V1_DEVICE_ALLOW: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:200 rwm",
];

/// The cgroup driver for one host.
#[derive(Clone, Debug)]
pub struct Cgroups {
    version: Version,
    root: PathBuf,
}

/// cgroup v2 `cpu.weight` from v1 `cpu.shares`, the conversion upstream uses.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

impl Cgroups {
    /// Detect the layout under `/sys/fs/cgroup`.
    pub fn detect() -> Self {
        Self::at(PathBuf::from("/sys/fs/cgroup"))
    }

    /// Detect the layout under `root` (v2 when `root` is a cgroup2 mount).
    pub fn at(root: PathBuf) -> Self {
        let v2 = nix::sys::statfs::statfs(&root)
            .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
            .unwrap_or(false);
        Cgroups {
            version: if v2 { Version::V2 } else { Version::V1 },
            root,
        }
    }

    /// The detected version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Every directory making up cgroup `rel` (one per v1 controller, one on v2).
    pub fn dirs(&self, rel: &str) -> Vec<PathBuf> {
        match self.version {
            Version::V2 => vec![self.root.join(rel)],
            Version::V1 => V1_CONTROLLERS
                .iter()
                .map(|c| self.root.join(c))
                .filter(|d| d.is_dir())
                .map(|d| d.join(rel))
                .collect(),
        }
    }

    fn controller_dir(&self, controller: &str, rel: &str) -> PathBuf {
        match self.version {
            Version::V2 => self.root.join(rel),
            Version::V1 => self.root.join(controller).join(rel),
        }
    }

    /// Create cgroup `rel` (and its parents) and apply `res`; `privileged` opens devices.
    pub fn create(&self, rel: &str, res: &Resources, privileged: bool) -> Result<()> {
        match self.version {
            Version::V1 => {
                for dir in self.dirs(rel) {
                    self.mkdir_v1(&dir)?;
                }
                let cpu = self.controller_dir("cpu", rel);
                if let Some(s) = res.cpu_shares {
                    write(&cpu.join("cpu.shares"), &s.to_string())?;
                }
                if res.cpu_quota.is_some() || res.cpu_period.is_some() {
                    let period = res.cpu_period.unwrap_or(100_000);
                    write(&cpu.join("cpu.cfs_period_us"), &period.to_string())?;
                    if let Some(q) = res.cpu_quota {
                        write(&cpu.join("cpu.cfs_quota_us"), &q.to_string())?;
                    }
                }
                if let Some(m) = res.memory_limit {
                    let mem = self.controller_dir("memory", rel);
                    write(&mem.join("memory.limit_in_bytes"), &m.to_string())?;
                }
                if let Some(p) = res.pids_limit {
                    let d = self.controller_dir("pids", rel);
                    write(&d.join("pids.max"), &p.to_string())?;
                }
                let dev = self.controller_dir("devices", rel);
                if dev.is_dir() && !privileged {
                    write(&dev.join("devices.deny"), "a")?;
                    for rule in V1_DEVICE_ALLOW {
                        write(&dev.join("devices.allow"), rule)?;
                    }
                }
            }
            Version::V2 => {
                let dir = self.root.join(rel);
                // Enable the controllers in every ancestor so the leaf gets the files.
                let mut cur = self.root.clone();
                for part in Path::new(rel).components() {
                    let sub = cur.join("cgroup.subtree_control");
                    let _ = fs::write(&sub, "+cpu +memory +pids +cpuset");
                    cur = cur.join(part);
                    match fs::create_dir(&cur) {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(io(&cur)(e)),
                    }
                }
                if let Some(s) = res.cpu_shares {
                    write(&dir.join("cpu.weight"), &shares_to_weight(s).to_string())?;
                }
                if res.cpu_quota.is_some() || res.cpu_period.is_some() {
                    let period = res.cpu_period.unwrap_or(100_000);
                    let quota = res
                        .cpu_quota
                        .filter(|q| *q > 0)
                        .map_or("max".to_string(), |q| q.to_string());
                    write(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
                }
                if let Some(m) = res.memory_limit {
                    write(&dir.join("memory.max"), &m.to_string())?;
                    let _ = fs::write(dir.join("memory.swap.max"), "0");
                }
                if let Some(p) = res.pids_limit {
                    write(&dir.join("pids.max"), &p.to_string())?;
                }
            }
        }
        Ok(())
    }

    fn mkdir_v1(&self, dir: &Path) -> Result<()> {
        // cpuset needs cpus/mems copied down each new level before a task can join.
        let mut missing = vec![];
        let mut cur = dir.to_path_buf();
        while !cur.exists() {
            missing.push(cur.clone());
            if !cur.pop() {
                break;
            }
        }
        for d in missing.into_iter().rev() {
            match fs::create_dir(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(&d)(e)),
            }
            if d.join("cpuset.cpus").exists()
                && let Some(parent) = d.parent()
            {
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let cur = fs::read_to_string(d.join(f)).unwrap_or_default();
                    if cur.trim().is_empty() {
                        let v = fs::read_to_string(parent.join(f)).map_err(io(parent))?;
                        write(&d.join(f), v.trim())?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The `cgroup.procs` files a process writes `0` into to join cgroup `rel`.
    pub fn procs_files(&self, rel: &str) -> Vec<PathBuf> {
        self.dirs(rel)
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    /// Pids in cgroup `rel`.
    pub fn pids(&self, rel: &str) -> Vec<i32> {
        let f = self.controller_dir("pids", rel).join("cgroup.procs");
        fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// How many processes of `rel` the kernel OOM killer has killed.
    pub fn oom_kills(&self, rel: &str) -> u64 {
        let (file, key) = match self.version {
            Version::V1 => ("memory.oom_control", "oom_kill"),
            Version::V2 => ("memory.events", "oom_kill"),
        };
        let path = self.controller_dir("memory", rel).join(file);
        read_keyed(&path, key).unwrap_or(0)
    }

    /// CPU time used by `rel` in nanoseconds.
    pub fn cpu_usage_ns(&self, rel: &str) -> Option<u64> {
        match self.version {
            Version::V1 => {
                fs::read_to_string(self.controller_dir("cpuacct", rel).join("cpuacct.usage"))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            }
            Version::V2 => {
                read_keyed(&self.root.join(rel).join("cpu.stat"), "usage_usec").map(|u| u * 1000)
            }
        }
    }

    /// Memory in use by `rel` in bytes.
    pub fn memory_usage(&self, rel: &str) -> Option<u64> {
        let file = match self.version {
            Version::V1 => "memory.usage_in_bytes",
            Version::V2 => "memory.current",
        };
        fs::read_to_string(self.controller_dir("memory", rel).join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The working set of `rel` in bytes, as cAdvisor reports it: usage minus the
    /// inactive file cache (which the kernel reclaims first).
    pub fn memory_working_set(&self, rel: &str) -> Option<u64> {
        let usage = self.memory_usage(rel)?;
        let stat = self.controller_dir("memory", rel).join("memory.stat");
        let inactive = match self.version {
            Version::V1 => read_keyed(&stat, "total_inactive_file"),
            Version::V2 => read_keyed(&stat, "inactive_file"),
        }
        .unwrap_or(0);
        Some(usage.saturating_sub(inactive))
    }

    /// Remove cgroup `rel` (leaf only); waits up to 2 s for exiting tasks to leave. The
    /// per-controller directories are removed in parallel (each rmdir waits for the kernel).
    pub fn remove(&self, rel: &str) -> Result<()> {
        let dirs = self.dirs(rel);
        if dirs.len() <= 1 {
            return dirs.into_iter().try_for_each(remove_dir);
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = dirs
                .into_iter()
                .map(|d| s.spawn(move || remove_dir(d)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(CgroupError::Busy(PathBuf::from("(rmdir thread panicked)")))
                    })
                })
                .collect::<Result<Vec<()>>>()
                .map(|_| ())
        })
    }
}

fn remove_dir(dir: PathBuf) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    {
        {
            loop {
                match fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        if Instant::now() > deadline {
                            return Err(CgroupError::Busy(dir));
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => return Err(io(&dir)(e)),
                }
            }
        }
    }
    Ok(())
}

fn write(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(io(path))
}

fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_conversion_matches_upstream_bounds() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1024), 39);
    }

    #[test]
    fn keyed_files_parse() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("memory.events");
        fs::write(&p, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n").unwrap();
        assert_eq!(read_keyed(&p, "oom_kill"), Some(2));
        assert_eq!(read_keyed(&p, "nope"), None);
    }
}
