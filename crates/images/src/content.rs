//! Content-addressed blob store: `blobs/sha256/<hex>` under the store root.
//!
//! Every blob is written to a temporary file under `tmp/`, its size and sha256 checked,
//! fsynced, then renamed into place, so a blob file's name always matches its content
//! and a failed or interrupted write leaves nothing under `blobs/`.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

/// Errors of the content store.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// A digest string is malformed.
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex>")]
    InvalidDigest(String),
    /// Content did not hash to the digest it was announced with.
    #[error("digest mismatch for {expected}: content hashes to {actual}")]
    DigestMismatch {
        /// The announced digest.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// Content did not have the announced size.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The announced size.
        expected: u64,
        /// What arrived.
        actual: u64,
    },
    /// The filesystem is full.
    #[error("no space left on device while {context}")]
    NoSpace {
        /// What was being written.
        context: String,
    },
    /// The blob is not in the store.
    #[error("blob {0} not found in the content store")]
    NotFound(Digest),
    /// Any other I/O failure.
    #[error("{context}: {}", error_chain(source))]
    Io {
        /// What was being done.
        context: String,
        /// The failure.
        source: io::Error,
    },
}

impl ContentError {
    /// Wraps an I/O error, turning ENOSPC into [`ContentError::NoSpace`].
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        let context = context.into();
        if is_enospc(&source) {
            ContentError::NoSpace { context }
        } else {
            ContentError::Io { context, source }
        }
    }
}

type Result<T> = std::result::Result<T, ContentError>;

/// An error and its causes on one line (wrapped I/O errors hide the useful part).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Whether an I/O error (or what it wraps) is ENOSPC.
pub fn is_enospc(e: &io::Error) -> bool {
    if e.raw_os_error() == Some(nix::libc::ENOSPC) {
        return true;
    }
    let mut cur: Option<&dyn std::error::Error> = e.get_ref().map(|x| x as &dyn std::error::Error);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<io::Error>()
            && io.raw_os_error() == Some(nix::libc::ENOSPC)
        {
            return true;
        }
        cur = c.source();
    }
    error_chain(e).contains("No space left on device")
}

/// A validated `sha256:<hex>` content digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// Parses and validates `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Result<Self> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| ContentError::InvalidDigest(s.to_string()))?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ContentError::InvalidDigest(s.to_string()));
        }
        Ok(Self(s.to_string()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    pub(crate) fn from_hasher(h: Sha256) -> Self {
        Self(format!("sha256:{}", hex::encode(h.finalize())))
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The full `sha256:<hex>` string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex characters, for tables.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }
}

impl TryFrom<String> for Digest {
    type Error = ContentError;
    fn try_from(s: String) -> Result<Self> {
        Digest::parse(&s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique name for a temporary file or directory of this process.
pub(crate) fn tmp_name(prefix: &str) -> String {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

/// The blob store.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    /// Opens (creating if needed) the blob store under `root` (`root/blobs/sha256`, `root/tmp`).
    pub fn open(root: &Path) -> Result<Self> {
        let s = Self {
            root: root.to_path_buf(),
        };
        for d in [s.blob_dir(), s.tmp_dir()] {
            fs::create_dir_all(&d)
                .map_err(|e| ContentError::io(format!("creating {}", d.display()), e))?;
        }
        Ok(s)
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// The directory for temporary files (same filesystem as the blobs).
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where blob `d` lives (whether or not it exists).
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.blob_dir().join(d.hex())
    }

    /// Whether blob `d` is present.
    pub fn has(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    /// The size of blob `d`.
    pub fn size(&self, d: &Digest) -> Result<u64> {
        match fs::metadata(self.path(d)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ContentError::NotFound(d.clone())),
            Err(e) => Err(ContentError::io(format!("reading blob {d}"), e)),
        }
    }

    /// Opens blob `d` for reading.
    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        match File::open(self.path(d)) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ContentError::NotFound(d.clone())),
            Err(e) => Err(ContentError::io(format!("opening blob {d}"), e)),
        }
    }

    /// Reads blob `d` whole (for manifests and configs).
    pub fn read(&self, d: &Digest) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.open_blob(d)?
            .read_to_end(&mut buf)
            .map_err(|e| ContentError::io(format!("reading blob {d}"), e))?;
        Ok(buf)
    }

    /// Starts writing blob `expected` (of `size` bytes if known).
    pub fn writer(&self, expected: &Digest, size: Option<u64>) -> Result<BlobWriter> {
        let tmp = self.tmp_dir().join(tmp_name("ingest"));
        let file = File::create(&tmp)
            .map_err(|e| ContentError::io(format!("creating temporary file for {expected}"), e))?;
        Ok(BlobWriter {
            file: Some(file),
            tmp,
            dest: self.path(expected),
            expected: expected.clone(),
            size,
            written: 0,
            hasher: Sha256::new(),
        })
    }

    /// Stores `bytes` as blob `expected` (verified). Returns whether it was newly written.
    pub fn put(&self, expected: &Digest, bytes: &[u8]) -> Result<bool> {
        if self.has(expected) {
            return Ok(false);
        }
        let mut w = self.writer(expected, Some(bytes.len() as u64))?;
        w.write_all(bytes)?;
        w.commit()
    }

    /// Copies `reader` into the store as blob `expected` (verified).
    pub fn put_reader(
        &self,
        expected: &Digest,
        size: Option<u64>,
        reader: &mut dyn Read,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<bool> {
        if self.has(expected) {
            return Ok(false);
        }
        let mut w = self.writer(expected, size)?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| ContentError::io(format!("reading content of {expected}"), e))?;
            if n == 0 {
                break;
            }
            w.write_all(&buf[..n])?;
            on_bytes(n as u64);
        }
        w.commit()
    }

    /// Copies `reader` into the store under the digest of what it contains (for archives
    /// that do not name their blobs by digest). Returns the digest and whether it was new.
    pub fn put_computed(
        &self,
        reader: &mut dyn Read,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<(Digest, bool)> {
        let tmp = self.tmp_dir().join(tmp_name("ingest"));
        let mut guard = TmpFile(Some(tmp.clone()));
        let mut file = File::create(&tmp)
            .map_err(|e| ContentError::io("creating temporary file for a blob", e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| ContentError::io("reading blob content", e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])
                .map_err(|e| ContentError::io("writing blob", e))?;
            on_bytes(n as u64);
        }
        file.sync_all()
            .map_err(|e| ContentError::io("syncing blob", e))?;
        let d = Digest::from_hasher(hasher);
        let dest = self.path(&d);
        if dest.exists() {
            return Ok((d, false));
        }
        fs::rename(&tmp, &dest).map_err(|e| ContentError::io(format!("storing blob {d}"), e))?;
        guard.0 = None;
        Ok((d, true))
    }

    /// Removes blob `d` (no error if absent).
    pub fn remove(&self, d: &Digest) -> Result<()> {
        match fs::remove_file(self.path(d)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ContentError::io(format!("removing blob {d}"), e)),
        }
    }

    /// All blobs present.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let dir = self.blob_dir();
        let rd = fs::read_dir(&dir)
            .map_err(|e| ContentError::io(format!("listing {}", dir.display()), e))?;
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| ContentError::io(format!("listing {}", dir.display()), e))?;
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

struct TmpFile(Option<PathBuf>);

impl Drop for TmpFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// A blob being written; committed with [`BlobWriter::commit`], discarded on drop.
pub struct BlobWriter {
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
    expected: Digest,
    size: Option<u64>,
    written: u64,
    hasher: Sha256,
}

impl BlobWriter {
    /// Appends `buf`, hashing it.
    pub fn write_all(&mut self, buf: &[u8]) -> Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Err(ContentError::io(
                format!("writing {}", self.expected),
                io::Error::other("writer already closed"),
            ));
        };
        self.written += buf.len() as u64;
        if let Some(size) = self.size
            && self.written > size
        {
            return Err(ContentError::SizeMismatch {
                digest: self.expected.clone(),
                expected: size,
                actual: self.written,
            });
        }
        self.hasher.update(buf);
        file.write_all(buf)
            .map_err(|e| ContentError::io(format!("writing blob {}", self.expected), e))
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Verifies size and digest, syncs and renames into place. Returns `true` when the
    /// blob was newly added (`false` if an identical blob appeared meanwhile).
    pub fn commit(mut self) -> Result<bool> {
        let file = self.file.take();
        if let Some(size) = self.size
            && size != self.written
        {
            return Err(ContentError::SizeMismatch {
                digest: self.expected.clone(),
                expected: size,
                actual: self.written,
            });
        }
        let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
        if actual != self.expected {
            return Err(ContentError::DigestMismatch {
                expected: self.expected.clone(),
                actual,
            });
        }
        if let Some(f) = file {
            f.sync_all()
                .map_err(|e| ContentError::io(format!("syncing blob {}", self.expected), e))?;
        }
        if self.dest.exists() {
            return Ok(false);
        }
        fs::rename(&self.tmp, &self.dest)
            .map_err(|e| ContentError::io(format!("storing blob {}", self.expected), e))?;
        Ok(true)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // After a successful rename this fails with ENOENT, which is fine.
        let _ = fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_validation() {
        let d = Digest::of(b"hello");
        assert_eq!(
            d.as_str(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert!(Digest::parse(d.as_str()).is_ok());
        for bad in [
            "",
            "sha256:",
            "md5:abc",
            "sha256:ABC",
            &d.as_str().to_uppercase(),
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn put_verifies_and_leaves_nothing_on_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        let good = Digest::of(b"content");
        assert!(cs.put(&good, b"content").unwrap());
        assert!(!cs.put(&good, b"content").unwrap());
        assert_eq!(cs.read(&good).unwrap(), b"content");

        let wrong = Digest::of(b"other");
        let err = cs.put(&wrong, b"content").unwrap_err();
        assert!(err.to_string().contains(wrong.as_str()), "{err}");
        assert!(!cs.has(&wrong));
        let err = cs
            .put_reader(&wrong, Some(3), &mut &b"other"[..], &mut |_| {})
            .unwrap_err();
        assert!(matches!(err, ContentError::SizeMismatch { .. }), "{err}");
        assert_eq!(fs::read_dir(cs.tmp_dir()).unwrap().count(), 0);
        assert_eq!(cs.list().unwrap(), vec![good]);
    }
}
