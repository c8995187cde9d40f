//! Host-local IP address management for one node's podCIDR.
//!
//! One file per allocated address in the state directory, named after the
//! address and holding the pod id. Files are created with `O_EXCL`, so two
//! allocators (threads, processes, or a restarted node agent) can never hand
//! out the same address. The network address, the broadcast address and the
//! gateway (first host address) are never allocated. Allocation goes round-robin
//! from the last address handed out (remembered in `last_reserved_ip`), so a
//! released address is not reused at once. All operations hold an exclusive
//! `flock` on `.lock` in the directory.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net};
use nix::fcntl::{Flock, FlockArg};

const LAST_FILE: &str = "last_reserved_ip";
const LOCK_FILE: &str = ".lock";
/// Longest pod id accepted (a pod UID or `namespace/name` fits easily).
pub const MAX_POD_ID_LEN: usize = 512;

/// Errors of address management.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// The pod CIDR cannot be used.
    #[error("invalid pod cidr {cidr}: {reason}")]
    InvalidCidr {
        /// The CIDR as given.
        cidr: String,
        /// Why it is refused.
        reason: String,
    },
    /// Every allocatable address is taken.
    #[error("no free address left in {cidr} ({count} allocatable, all in use)")]
    Exhausted {
        /// The pod CIDR.
        cidr: Ipv4Net,
        /// How many addresses it has for pods.
        count: u32,
    },
    /// The pod id cannot be stored.
    #[error("invalid pod id {0:?}: must be 1..=512 bytes without control characters")]
    InvalidPodId(String),
    /// A file operation on the state directory failed.
    #[error("ipam state {path}: {op}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The cause.
        source: io::Error,
    },
}

/// Checks a pod CIDR for use as a node's pod network: IPv4, no host bits,
/// and room for at least one pod besides network, gateway and broadcast
/// (so at most a /30).
pub fn validate_pod_cidr(cidr: &IpNet) -> Result<Ipv4Net, IpamError> {
    let invalid = |reason: &str| IpamError::InvalidCidr {
        cidr: cidr.to_string(),
        reason: reason.to_string(),
    };
    let IpNet::V4(net) = *cidr else {
        return Err(invalid("only IPv4 pod networks are supported"));
    };
    if net.trunc() != net {
        return Err(invalid(&format!(
            "host bits are set (did you mean {}?)",
            net.trunc()
        )));
    }
    if net.prefix_len() > 30 {
        return Err(invalid(
            "too small: a pod network needs at least a /30 (network, gateway, one pod, broadcast)",
        ));
    }
    Ok(net)
}

/// Parses and validates a pod CIDR given as text (e.g. from a flag).
pub fn parse_pod_cidr(text: &str) -> Result<Ipv4Net, IpamError> {
    let net: IpNet = text.trim().parse().map_err(|_| IpamError::InvalidCidr {
        cidr: text.to_string(),
        reason: "not an address/prefix-length pair".to_string(),
    })?;
    validate_pod_cidr(&net)
}

/// The gateway of a pod network: its first host address.
pub fn gateway_of(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

fn check_pod_id(pod_id: &str) -> Result<(), IpamError> {
    if pod_id.is_empty() || pod_id.len() > MAX_POD_ID_LEN || pod_id.chars().any(char::is_control) {
        return Err(IpamError::InvalidPodId(pod_id.to_string()));
    }
    Ok(())
}

/// An address handed out by [`Ipam::allocate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// False when the pod already held this address (idempotent call).
    pub newly_allocated: bool,
}

/// Host-local allocator over one pod CIDR and one state directory.
#[derive(Debug)]
pub struct Ipam {
    dir: PathBuf,
    net: Ipv4Net,
    /// First and last allocatable addresses (inclusive).
    first: u32,
    last: u32,
}

impl Ipam {
    /// Opens (creating if needed) the state directory for `cidr`. Existing
    /// allocations in it are kept.
    pub fn open(dir: &Path, cidr: &IpNet) -> Result<Self, IpamError> {
        let net = validate_pod_cidr(cidr)?;
        std::fs::create_dir_all(dir).map_err(|source| IpamError::Io {
            path: dir.to_path_buf(),
            op: "creating directory",
            source,
        })?;
        let base = u32::from(net.network());
        let broadcast = u32::from(net.broadcast());
        Ok(Self {
            dir: dir.to_path_buf(),
            net,
            first: base + 2,
            last: broadcast - 1,
        })
    }

    /// The pod CIDR.
    pub fn cidr(&self) -> Ipv4Net {
        self.net
    }

    /// The gateway address (reserved, never allocated).
    pub fn gateway(&self) -> Ipv4Addr {
        gateway_of(self.net)
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(&self, path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> IpamError {
        let path = path.to_path_buf();
        move |source| IpamError::Io { path, op, source }
    }

    fn lock(&self) -> Result<Flock<File>, IpamError> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(self.io(&path, "opening lock file"))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| IpamError::Io {
            path,
            op: "locking",
            source: io::Error::from_raw_os_error(e as i32),
        })
    }

    fn scan(&self) -> Result<Vec<(Ipv4Addr, String)>, IpamError> {
        let entries = std::fs::read_dir(&self.dir).map_err(self.io(&self.dir, "listing"))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(self.io(&self.dir, "listing"))?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let owner = match std::fs::read_to_string(&path) {
                Ok(s) => s,
                // Released concurrently by another process.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io(&path, "reading")(e)),
            };
            out.push((ip, owner));
        }
        out.sort();
        Ok(out)
    }

    /// All current allocations, `(address, pod id)`, sorted by address.
    pub fn allocations(&self) -> Result<Vec<(Ipv4Addr, String)>, IpamError> {
        let _lock = self.lock()?;
        self.scan()
    }

    /// The address held by `pod_id`, if any.
    pub fn lookup(&self, pod_id: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        check_pod_id(pod_id)?;
        let _lock = self.lock()?;
        Ok(self
            .scan()?
            .into_iter()
            .find(|(_, o)| o == pod_id)
            .map(|(ip, _)| ip))
    }

    /// Gives `pod_id` an address: the one it already holds, or the next free
    /// one after the last allocation.
    pub fn allocate(&self, pod_id: &str) -> Result<Allocation, IpamError> {
        check_pod_id(pod_id)?;
        let _lock = self.lock()?;
        let current = self.scan()?;
        if let Some((ip, _)) = current.iter().find(|(_, o)| o == pod_id) {
            return Ok(Allocation {
                ip: *ip,
                newly_allocated: false,
            });
        }
        let last_path = self.dir.join(LAST_FILE);
        let start = std::fs::read_to_string(&last_path)
            .ok()
            .and_then(|s| s.trim().parse::<Ipv4Addr>().ok())
            .map(u32::from)
            .filter(|ip| (self.first..=self.last).contains(ip))
            .map(|ip| if ip == self.last { self.first } else { ip + 1 })
            .unwrap_or(self.first);
        let count = self.last - self.first + 1;
        for step in 0..count {
            let candidate = self.first + (start - self.first + step) % count;
            let ip = Ipv4Addr::from(candidate);
            let path = self.dir.join(ip.to_string());
            let mut file = match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(self.io(&path, "creating")(e)),
            };
            if let Err(e) = file.write_all(pod_id.as_bytes()) {
                let _ = std::fs::remove_file(&path);
                return Err(self.io(&path, "writing")(e));
            }
            // Best effort: a stale hint only changes where the next search starts.
            let _ = std::fs::write(&last_path, ip.to_string());
            return Ok(Allocation {
                ip,
                newly_allocated: true,
            });
        }
        Err(IpamError::Exhausted {
            cidr: self.net,
            count,
        })
    }

    /// Frees the address held by `pod_id`; returns it, or `None` if the pod held
    /// none (release is idempotent).
    pub fn release(&self, pod_id: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        check_pod_id(pod_id)?;
        let _lock = self.lock()?;
        let mut freed = None;
        for (ip, owner) in self.scan()? {
            if owner == pod_id {
                let path = self.dir.join(ip.to_string());
                match std::fs::remove_file(&path) {
                    Ok(()) => freed = Some(ip),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(self.io(&path, "removing")(e)),
                }
            }
        }
        Ok(freed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn allocate_release_and_idempotence() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(dir.path(), &cidr("10.244.1.0/24")).unwrap();
        let a = ipam.allocate("pod-a").unwrap();
        assert_eq!(a.ip, Ipv4Addr::new(10, 244, 1, 2));
        assert!(a.newly_allocated);
        let again = ipam.allocate("pod-a").unwrap();
        assert_eq!(again.ip, a.ip);
        assert!(!again.newly_allocated);
        let b = ipam.allocate("pod-b").unwrap();
        assert_eq!(b.ip, Ipv4Addr::new(10, 244, 1, 3));
        assert_eq!(ipam.lookup("pod-b").unwrap(), Some(b.ip));
        assert_eq!(ipam.release("pod-a").unwrap(), Some(a.ip));
        assert_eq!(ipam.release("pod-a").unwrap(), None);
        assert_eq!(ipam.lookup("pod-a").unwrap(), None);
        // Round-robin: the freed .2 is not reused at once.
        let c = ipam.allocate("pod-c").unwrap();
        assert_eq!(c.ip, Ipv4Addr::new(10, 244, 1, 4));
        assert_eq!(
            ipam.allocations().unwrap(),
            vec![(b.ip, "pod-b".to_string()), (c.ip, "pod-c".to_string())]
        );
    }

    #[test]
    fn no_double_allocation_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first = Ipam::open(dir.path(), &cidr("10.0.0.0/29")).unwrap();
        let ips: Vec<_> = (0..3)
            .map(|i| first.allocate(&format!("p{i}")).unwrap().ip)
            .collect();
        drop(first);
        // A restarted allocator, and also one with a lost round-robin hint.
        let second = Ipam::open(dir.path(), &cidr("10.0.0.0/29")).unwrap();
        std::fs::remove_file(dir.path().join(LAST_FILE)).unwrap();
        for (i, ip) in ips.iter().enumerate() {
            assert_eq!(second.allocate(&format!("p{i}")).unwrap().ip, *ip);
        }
        let mut all: Vec<_> = ips.clone();
        for i in 3..5 {
            let ip = second.allocate(&format!("p{i}")).unwrap().ip;
            assert!(!all.contains(&ip), "{ip} handed out twice");
            all.push(ip);
        }
        // /29: .0 network, .1 gateway, .7 broadcast -> 5 pods.
        assert!(matches!(
            second.allocate("p5"),
            Err(IpamError::Exhausted { count: 5, .. })
        ));
    }

    #[test]
    fn concurrent_allocators_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let net = cidr("10.1.0.0/26");
        let ips: Vec<Ipv4Addr> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    let dir = dir.path().to_path_buf();
                    s.spawn(move || {
                        let ipam = Ipam::open(&dir, &net).unwrap();
                        (0..15)
                            .map(|i| ipam.allocate(&format!("t{t}-{i}")).unwrap().ip)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let mut sorted = ips.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 60);
    }

    #[test]
    fn exhaustion_on_slash_30_and_reserved_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(dir.path(), &cidr("192.0.2.4/30")).unwrap();
        assert_eq!(ipam.gateway(), Ipv4Addr::new(192, 0, 2, 5));
        assert_eq!(
            ipam.allocate("only").unwrap().ip,
            Ipv4Addr::new(192, 0, 2, 6)
        );
        let err = ipam.allocate("second").unwrap_err();
        assert!(
            matches!(err, IpamError::Exhausted { count: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("192.0.2.4/30"));
        // Network, gateway and broadcast are never handed out in a bigger net.
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(dir.path(), &cidr("10.9.0.0/28")).unwrap();
        let all: Vec<_> = (0..13)
            .map(|i| ipam.allocate(&format!("p{i}")).unwrap().ip)
            .collect();
        for reserved in [[10, 9, 0, 0], [10, 9, 0, 1], [10, 9, 0, 15]] {
            assert!(!all.contains(&Ipv4Addr::from(reserved)));
        }
        assert!(ipam.allocate("p13").is_err());
    }

    #[test]
    fn invalid_cidrs_and_pod_ids() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["10.0.0.0/31", "10.0.0.1/32", "10.0.0.5/24", "fd00::/64"] {
            let err = Ipam::open(&dir.path().join("x"), &cidr(bad)).unwrap_err();
            assert!(matches!(err, IpamError::InvalidCidr { .. }), "{bad}: {err}");
        }
        assert!(parse_pod_cidr("banana").is_err());
        assert!(parse_pod_cidr("10.0.0.0/33").is_err());
        assert_eq!(
            parse_pod_cidr(" 10.0.0.0/24 ").unwrap().to_string(),
            "10.0.0.0/24"
        );
        // Nothing was created for the refused CIDRs.
        assert!(!dir.path().join("x").exists());
        let ipam = Ipam::open(dir.path(), &cidr("10.0.0.0/24")).unwrap();
        for bad in ["", "a\nb", &"x".repeat(MAX_POD_ID_LEN + 1)] {
            assert!(matches!(
                ipam.allocate(bad),
                Err(IpamError::InvalidPodId(_))
            ));
        }
        assert!(ipam.allocations().unwrap().is_empty());
    }
}
