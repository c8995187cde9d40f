//! Overlay snapshots: one directory per layer chain, `snapshots/<chainid hex>/fs`,
//! shared by every image whose layer stack starts with the same layers.
//!
//! A snapshot is unpacked into a temporary directory under `tmp/` and renamed into place,
//! so a crash or an error never leaves a half-filled snapshot.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::content::{Digest, tmp_name};
use crate::unpack::{self, OverlayOps, UnpackError, UnpackOptions};

/// Errors of the snapshot store.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Unpacking the layer failed.
    #[error("unpacking layer {layer} into snapshot {chain}: {source}")]
    Unpack {
        /// The (compressed) layer blob.
        layer: Digest,
        /// The chain id of the snapshot.
        chain: Digest,
        /// What went wrong.
        source: UnpackError,
    },
    /// The filesystem is full.
    #[error("no space left on device while {context}")]
    NoSpace {
        /// What was being written.
        context: String,
    },
    /// Filesystem failure around the snapshot directories.
    #[error("{context}: {}", crate::content::error_chain(source))]
    Io {
        /// What was being done.
        context: String,
        /// The failure.
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> SnapshotError {
    let context = context.into();
    move |source| {
        if crate::content::is_enospc(&source) {
            SnapshotError::NoSpace { context }
        } else {
            SnapshotError::Io { context, source }
        }
    }
}

type Result<T> = std::result::Result<T, SnapshotError>;

/// Chain ids of a layer stack (OCI image spec): `chain(0) = diff(0)`,
/// `chain(n) = sha256(chain(n-1) + " " + diff(n))`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::from_hasher(Sha256::new_with_prefix(format!("{prev} {d}"))),
        };
        out.push(next);
    }
    out
}

/// The snapshot directories.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
    tmp: PathBuf,
}

/// Removes a temporary snapshot directory unless disarmed.
struct TmpDir(Option<PathBuf>);

impl Drop for TmpDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_dir_all(p);
        }
    }
}

impl SnapshotStore {
    /// Opens (creating) `root/snapshots`, with temporaries in `root/tmp`.
    pub fn open(root: &Path) -> Result<Self> {
        let s = Self {
            dir: root.join("snapshots"),
            tmp: root.join("tmp"),
        };
        fs::create_dir_all(&s.dir).map_err(io_err(format!("creating {}", s.dir.display())))?;
        fs::create_dir_all(&s.tmp).map_err(io_err(format!("creating {}", s.tmp.display())))?;
        Ok(s)
    }

    /// The directory holding snapshot `chain` (contains `fs`).
    pub fn dir_of(&self, chain: &Digest) -> PathBuf {
        self.dir.join(chain.hex())
    }

    /// The filesystem of snapshot `chain`, usable as an overlay lowerdir.
    pub fn fs_path(&self, chain: &Digest) -> PathBuf {
        self.dir_of(chain).join("fs")
    }

    /// Whether snapshot `chain` exists.
    pub fn has(&self, chain: &Digest) -> bool {
        self.fs_path(chain).is_dir()
    }

    /// Unpacks `layer` (the compressed blob, read from `reader`) as snapshot `chain`,
    /// checking that its uncompressed digest is `diff_id`. No-op if it exists.
    pub fn create(
        &self,
        chain: &Digest,
        layer: &Digest,
        diff_id: &Digest,
        reader: impl io::Read,
        ops: &dyn OverlayOps,
    ) -> Result<()> {
        if self.has(chain) {
            return Ok(());
        }
        let tmp = self.tmp.join(tmp_name("snapshot"));
        let guard = TmpDir(Some(tmp.clone()));
        let fs_dir = tmp.join("fs");
        fs::create_dir_all(&fs_dir).map_err(io_err(format!("creating {}", fs_dir.display())))?;
        let wrap = |source| SnapshotError::Unpack {
            layer: layer.clone(),
            chain: chain.clone(),
            source,
        };
        let actual =
            unpack::unpack_layer(reader, &fs_dir, ops, UnpackOptions::default()).map_err(wrap)?;
        if &actual != diff_id {
            return Err(wrap(UnpackError::DiffIdMismatch {
                expected: diff_id.clone(),
                actual,
            }));
        }
        fs::write(tmp.join("layer"), layer.as_str())
            .map_err(io_err(format!("writing {}", tmp.display())))?;
        let dest = self.dir_of(chain);
        match fs::rename(&tmp, &dest) {
            Ok(()) => {
                let mut g = guard;
                g.0 = None;
                Ok(())
            }
            // Another unpack of the same chain won the race: keep theirs.
            Err(_) if self.has(chain) => Ok(()),
            Err(e) => Err(io_err(format!("storing snapshot {chain}"))(e)),
        }
    }

    /// Removes snapshot `chain` (no error if absent).
    pub fn remove(&self, chain: &Digest) -> Result<()> {
        let d = self.dir_of(chain);
        match fs::remove_dir_all(&d) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("removing snapshot {chain}"))(e)),
        }
    }

    /// All snapshots present.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let rd =
            fs::read_dir(&self.dir).map_err(io_err(format!("listing {}", self.dir.display())))?;
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(io_err(format!("listing {}", self.dir.display())))?;
            if let Some(name) = ent.file_name().to_str()
                && let Ok(d) = Digest::parse(&format!("sha256:{name}"))
            {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::of(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn failed_unpack_leaves_no_snapshot() {
        struct NoOps;
        impl OverlayOps for NoOps {
            fn whiteout(&self, _: &Path) -> io::Result<()> {
                Ok(())
            }
            fn set_opaque(&self, _: &Path) -> io::Result<()> {
                Ok(())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let s = SnapshotStore::open(dir.path()).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        b.append_data(&mut h, "f", &b"x"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let wrong = Digest::of(b"not it");
        let chain = wrong.clone();
        let err = s
            .create(&chain, &Digest::of(&bytes), &wrong, &bytes[..], &NoOps)
            .unwrap_err();
        assert!(err.to_string().contains("diff id mismatch"), "{err}");
        assert!(!s.has(&chain));
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        let right = Digest::of(&bytes);
        s.create(&right, &right, &right, &bytes[..], &NoOps)
            .unwrap();
        assert_eq!(fs::read(s.fs_path(&right).join("f")).unwrap(), b"x");
        assert_eq!(s.list().unwrap(), vec![right]);
    }
}
