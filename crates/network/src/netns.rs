//! Persistent network namespaces, the way `ip netns add` makes them: a thread
//! unshares a new network namespace and bind-mounts its
//! `/proc/thread-self/ns/net` onto a file, which keeps the namespace alive after
//! the thread is gone. Removing one is an unmount plus an unlink.
//!
//! Work inside a namespace always happens on a dedicated thread that `setns`-es
//! into it and ends afterwards, so no thread of a caller (and never a tokio
//! worker) changes namespace.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::statfs::{NSFS_MAGIC, statfs};

/// The namespace file of the calling thread (not of the process: threads may
/// differ).
pub const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// Errors of namespace creation, removal and entry.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The path to create a namespace at is already taken.
    #[error("network namespace path {0} already exists")]
    Exists(PathBuf),
    /// The namespace file does not exist.
    #[error("network namespace {0} does not exist")]
    NotFound(PathBuf),
    /// The file exists but no namespace is mounted on it.
    #[error("{0} is not a network namespace (no nsfs mount)")]
    NotNetns(PathBuf),
    /// A step of creating the namespace failed (nothing is left behind).
    #[error("creating network namespace {path}: {step}: {source}")]
    Create {
        /// The namespace path.
        path: PathBuf,
        /// Which step failed.
        step: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// Unmounting or unlinking failed.
    #[error("removing network namespace {path}: {step}: {source}")]
    Remove {
        /// The namespace path.
        path: PathBuf,
        /// Which step failed.
        step: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// Opening or entering the namespace failed.
    #[error("entering network namespace {path}: {source}")]
    Enter {
        /// The namespace path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The worker thread could not be started.
    #[error("starting a thread for network namespace {path}: {source}")]
    Thread {
        /// The namespace path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn errno_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// An open handle on a network namespace (an open nsfs file). Holding it keeps
/// the namespace alive even if its bind mount is removed.
#[derive(Debug)]
pub struct NetnsHandle {
    file: File,
    path: PathBuf,
}

impl NetnsHandle {
    /// The open namespace file (for `setns`, or `IFLA_NET_NS_FD`).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a new thread that has entered this namespace and waits for
    /// it. A panic in `f` is propagated to the caller.
    pub fn run<F, R>(&self, f: F) -> Result<R, NetnsError>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        thread::scope(|s| {
            let worker = thread::Builder::new()
                .name("netns".into())
                .spawn_scoped(s, || {
                    setns(&self.file, CloneFlags::CLONE_NEWNET).map_err(|e| NetnsError::Enter {
                        path: self.path.clone(),
                        source: errno_io(e),
                    })?;
                    Ok(f())
                })
                .map_err(|source| NetnsError::Thread {
                    path: self.path.clone(),
                    source,
                })?;
            match worker.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

/// Persistent network namespaces bound to files.
pub struct Netns;

impl Netns {
    /// Creates a new, empty network namespace and pins it at `path` (the parent
    /// directory is created if needed). Fails if `path` exists. On failure no
    /// file and no mount is left behind.
    pub fn create(path: &Path) -> Result<(), NetnsError> {
        let create_err = |step: &'static str| {
            move |source: io::Error| NetnsError::Create {
                path: path.to_path_buf(),
                step,
                source,
            }
        };
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(create_err("creating parent directory"))?;
        }
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(NetnsError::Exists(path.to_path_buf()));
            }
            Err(e) => return Err(create_err("creating mount point file")(e)),
        }
        let mounted: Result<(), NetnsError> = thread::scope(|s| {
            let worker = thread::Builder::new()
                .name("netns-create".into())
                .spawn_scoped(s, || -> Result<(), NetnsError> {
                    // This thread alone moves to the new namespace and ends.
                    unshare(CloneFlags::CLONE_NEWNET)
                        .map_err(|e| create_err("unshare(CLONE_NEWNET)")(errno_io(e)))?;
                    mount(
                        Some(THREAD_NETNS),
                        path,
                        None::<&str>,
                        MsFlags::MS_BIND,
                        None::<&str>,
                    )
                    .map_err(|e| create_err("bind mount")(errno_io(e)))
                })
                .map_err(create_err("starting thread"))?;
            match worker.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        });
        if let Err(e) = mounted {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        Ok(())
    }

    /// Unmounts and unlinks the namespace file at `path`. A missing path is not
    /// an error (removal is idempotent). Processes still inside the namespace
    /// keep it alive; the path is gone either way.
    pub fn remove(path: &Path) -> Result<(), NetnsError> {
        let remove_err = |step: &'static str| {
            move |source: io::Error| NetnsError::Remove {
                path: path.to_path_buf(),
                step,
                source,
            }
        };
        if std::fs::symlink_metadata(path).is_err() {
            return Ok(());
        }
        match umount2(path, MntFlags::MNT_DETACH) {
            // EINVAL: not a mount point (already unmounted).
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(remove_err("unmount")(errno_io(e))),
        }
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(remove_err("unlink")(e)),
        }
    }

    /// Whether a network namespace is mounted at `path`.
    pub fn exists(path: &Path) -> bool {
        matches!(statfs(path), Ok(s) if s.filesystem_type() == NSFS_MAGIC)
    }

    /// Opens the namespace at `path`, checking that it is one.
    pub fn open(path: &Path) -> Result<NetnsHandle, NetnsError> {
        let file = File::open(path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                NetnsError::NotFound(path.to_path_buf())
            } else {
                NetnsError::Enter {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        let fs = nix::sys::statfs::fstatfs(&file).map_err(|e| NetnsError::Enter {
            path: path.to_path_buf(),
            source: errno_io(e),
        })?;
        if fs.filesystem_type() != NSFS_MAGIC {
            return Err(NetnsError::NotNetns(path.to_path_buf()));
        }
        Ok(NetnsHandle {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Opens the network namespace of the calling thread.
    pub fn current() -> Result<NetnsHandle, NetnsError> {
        Self::open(Path::new(THREAD_NETNS))
    }

    /// Runs `f` on a thread inside the namespace at `path` and returns its
    /// result (see [`NetnsHandle::run`]).
    pub fn enter<F, R>(path: &Path, f: F) -> Result<R, NetnsError>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        Self::open(path)?.run(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_missing_and_non_netns_paths() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(matches!(
            Netns::open(&missing),
            Err(NetnsError::NotFound(_))
        ));
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"").unwrap();
        assert!(matches!(Netns::open(&plain), Err(NetnsError::NotNetns(_))));
        assert!(!Netns::exists(&plain));
        // Removing a missing path is fine.
        Netns::remove(&missing).unwrap();
    }
}
