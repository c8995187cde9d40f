//! The image store: named images over the content store and the snapshots, with an
//! atomically persisted index (`index.json`), garbage collection and the rootfs query
//! the runtime uses.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::content::{ContentError, ContentStore, Digest, tmp_name};
use crate::image::{self, ImageConfig, ManifestError, Parsed};
use crate::progress::{Progress, ProgressState};
use crate::reference::{ImageRef, ReferenceError};
use crate::snapshot::{SnapshotError, SnapshotStore, chain_ids};
use crate::unpack::KernelOverlay;

/// Errors of the image store (and of pulls and imports).
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Bad image reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// Blob store failure (digest mismatch, disk full…).
    #[error(transparent)]
    Content(#[from] ContentError),
    /// Snapshot (unpack) failure.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Bad manifest, index or config, or no linux/amd64 image.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// No such image in the store.
    #[error("image {0} not found in the image store")]
    NotFound(String),
    /// The registry does not have the image.
    #[error("image {name} not found in registry {registry}: {reason}")]
    RemoteNotFound {
        /// The image.
        name: String,
        /// The registry.
        registry: String,
        /// What the registry said.
        reason: String,
    },
    /// The registry refused our credentials (or their absence).
    #[error("not authorized to pull {name} from registry {registry}: {reason}")]
    Unauthorized {
        /// The image.
        name: String,
        /// The registry.
        registry: String,
        /// What the registry said.
        reason: String,
    },
    /// The registry could not be reached or refused us.
    #[error("registry {registry}: {reason}")]
    Registry {
        /// The registry.
        registry: String,
        /// What went wrong.
        reason: String,
    },
    /// Downloading a blob failed.
    #[error("pulling blob {digest}: {reason}")]
    Blob {
        /// The blob.
        digest: Digest,
        /// What went wrong.
        reason: String,
    },
    /// An archive could not be imported.
    #[error("importing {path}: {reason}")]
    Import {
        /// The archive.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The store's index or directories could not be read or written.
    #[error("{context}: {}", crate::content::error_chain(source))]
    Io {
        /// What was being done.
        context: String,
        /// The failure.
        source: io::Error,
    },
    /// A background task failed.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl ImageError {
    /// Whether the failure was a full disk.
    pub fn is_no_space(&self) -> bool {
        self.to_string().contains("no space left on device")
    }
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, ImageError>;

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
    let context = context.into();
    move |source| ImageError::Content(ContentError::io(context, source))
}

/// One named image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageInfo {
    /// Canonical reference, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    /// What the name points to: the index (manifest list) or the manifest.
    pub target_digest: Digest,
    /// The linux/amd64 image manifest.
    pub manifest_digest: Digest,
    /// The image config blob.
    pub config_digest: Digest,
    /// Compressed size: config plus layers.
    pub size: u64,
    /// When the image was built (from its config), RFC 3339.
    pub created: Option<String>,
    /// When it was pulled or imported here, RFC 3339.
    pub stored_at: String,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct IndexFile {
    images: BTreeMap<String, ImageInfo>,
}

/// What [`ImageStore::gc`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs deleted.
    pub removed_blobs: Vec<Digest>,
    /// Snapshots (chain ids) deleted.
    pub removed_snapshots: Vec<Digest>,
    /// Bytes of blobs freed.
    pub freed_bytes: u64,
}

pub(crate) struct Inner {
    pub(crate) root: PathBuf,
    pub(crate) content: ContentStore,
    pub(crate) snapshots: SnapshotStore,
    index_lock: Mutex<()>,
    /// Pulls and imports hold it shared, gc exclusively.
    pub(crate) op_lock: tokio::sync::RwLock<()>,
    /// Blobs that running pulls and imports use (count of holders): the clean-up of a
    /// failed operation leaves them alone.
    active: Mutex<HashMap<Digest, usize>>,
}

/// Marks blobs as used by a running pull or import until dropped.
pub(crate) struct ActiveBlobs {
    inner: Arc<Inner>,
    held: Vec<Digest>,
}

impl ActiveBlobs {
    /// Marks `d` as in use by this operation.
    pub(crate) fn add(&mut self, d: &Digest) {
        if self.held.contains(d) {
            return;
        }
        if let Ok(mut a) = self.inner.active.lock() {
            *a.entry(d.clone()).or_insert(0) += 1;
            self.held.push(d.clone());
        }
    }
}

impl Drop for ActiveBlobs {
    fn drop(&mut self) {
        if let Ok(mut a) = self.inner.active.lock() {
            for d in self.held.drain(..) {
                if let Some(n) = a.get_mut(&d) {
                    *n -= 1;
                    if *n == 0 {
                        a.remove(&d);
                    }
                }
            }
        }
    }
}

/// The image store of one node, rooted at `<data-dir>/images`.
#[derive(Clone)]
pub struct ImageStore {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ImageStore({})", self.inner.root.display())
    }
}

/// Holds an exclusive `flock` on `index.lock` so that several processes (the node agent
/// and `flotilla ctr`) can update the index safely.
struct FileLock(#[allow(dead_code)] nix::fcntl::Flock<File>);

impl ImageStore {
    /// Opens (creating if needed) the store under `root`.
    pub fn open(root: &Path) -> Result<Self> {
        fs::create_dir_all(root).map_err(io_err(format!("creating {}", root.display())))?;
        let content = ContentStore::open(root)?;
        let snapshots = SnapshotStore::open(root)?;
        let s = Self {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                content,
                snapshots,
                index_lock: Mutex::new(()),
                op_lock: tokio::sync::RwLock::new(()),
                active: Mutex::new(HashMap::new()),
            }),
        };
        s.load_index()?;
        s.remove_stale_temporaries();
        Ok(s)
    }

    /// Removes temporary files and directories left in `tmp/` by processes that died
    /// (their names carry the writer's pid), e.g. a snapshot half-unpacked at a crash.
    fn remove_stale_temporaries(&self) {
        let Ok(rd) = fs::read_dir(self.inner.content.tmp_dir()) else {
            return;
        };
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().to_string();
            let pid = name.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
            let dead = match pid {
                Some(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
                None => false,
            };
            if dead {
                let p = ent.path();
                let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
            }
        }
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The content store (blobs).
    pub fn content(&self) -> &ContentStore {
        &self.inner.content
    }

    /// The snapshot store.
    pub fn snapshots(&self) -> &SnapshotStore {
        &self.inner.snapshots
    }

    fn index_path(&self) -> PathBuf {
        self.inner.root.join("index.json")
    }

    fn load_index(&self) -> Result<IndexFile> {
        let p = self.index_path();
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| ImageError::Io {
                context: format!("reading image index {}", p.display()),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(IndexFile::default()),
            Err(e) => Err(io_err(format!("reading image index {}", p.display()))(e)),
        }
    }

    fn save_index(&self, idx: &IndexFile) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(idx).map_err(|e| ImageError::Io {
            context: "encoding image index".into(),
            source: io::Error::other(e),
        })?;
        let tmp = self.inner.content.tmp_dir().join(tmp_name("index"));
        let res = (|| -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, self.index_path())?;
            File::open(&self.inner.root)?.sync_all()
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res.map_err(io_err("writing image index"))
    }

    fn lock_file(&self) -> Result<FileLock> {
        let p = self.inner.root.join("index.lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err(format!("opening {}", p.display())))?;
        let l = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| io_err(format!("locking {}", p.display()))(e.into()))?;
        Ok(FileLock(l))
    }

    /// Read-modify-write of the index under both locks.
    fn update_index<T>(&self, f: impl FnOnce(&mut IndexFile) -> Result<T>) -> Result<T> {
        let _g = self
            .inner
            .index_lock
            .lock()
            .map_err(|_| ImageError::Task("image index lock poisoned".into()))?;
        let _fl = self.lock_file()?;
        let mut idx = self.load_index()?;
        let out = f(&mut idx)?;
        self.save_index(&idx)?;
        Ok(out)
    }

    /// All images, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageInfo>> {
        Ok(self.load_index()?.images.into_values().collect())
    }

    /// The image named `reference` (normalised; `name@digest` also matches an image of
    /// that repository whose index or manifest has that digest).
    pub fn get(&self, reference: &str) -> Result<ImageInfo> {
        let r = ImageRef::parse(reference)?;
        let idx = self.load_index()?;
        if let Some(i) = idx.images.get(&r.canonical()) {
            return Ok(i.clone());
        }
        if let Some(d) = r.digest() {
            let repo = format!("{}/{}", r.registry(), r.repository());
            for i in idx.images.values() {
                let same_repo = ImageRef::parse(&i.name)
                    .map(|n| format!("{}/{}", n.registry(), n.repository()) == repo)
                    .unwrap_or(false);
                if same_repo && (i.target_digest.as_str() == d || i.manifest_digest.as_str() == d) {
                    return Ok(i.clone());
                }
            }
        }
        Err(ImageError::NotFound(r.canonical()))
    }

    /// Removes the name `reference`. Its blobs and snapshots stay until [`Self::gc`].
    pub fn remove(&self, reference: &str) -> Result<ImageInfo> {
        let info = self.get(reference)?;
        self.update_index(|idx| {
            idx.images
                .remove(&info.name)
                .ok_or_else(|| ImageError::NotFound(info.name.clone()))
        })
    }

    /// The overlay lower directories of the image, top layer first (ready for
    /// `lowerdir=` joined with `:`), and its config. Missing snapshots are unpacked again
    /// from the blobs.
    pub async fn rootfs_layers(&self, reference: &str) -> Result<(Vec<PathBuf>, ImageConfig)> {
        let _op = self.inner.op_lock.read().await;
        let info = self.get(reference)?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let (layers, diffs, cfg) = this.image_parts(&info.manifest_digest)?;
            this.ensure_snapshots(&layers, &diffs, None)?;
            let dirs = chain_ids(&diffs)
                .iter()
                .rev()
                .map(|c| this.inner.snapshots.fs_path(c))
                .collect();
            Ok((dirs, ImageConfig::from_oci(&cfg)))
        })
        .await
        .map_err(|e| ImageError::Task(e.to_string()))?
    }

    /// Layer blob digests, diff ids and config of a manifest in the store.
    fn image_parts(
        &self,
        manifest: &Digest,
    ) -> Result<(
        Vec<Digest>,
        Vec<Digest>,
        oci_spec::image::ImageConfiguration,
    )> {
        let bytes = self.inner.content.read(manifest)?;
        let Parsed::Manifest(m) = image::parse_manifest(&bytes, manifest)? else {
            return Err(ManifestError::Invalid {
                what: "manifest",
                digest: manifest.clone(),
                reason: "expected an image manifest, found an index".into(),
            }
            .into());
        };
        let cfg_d = image::desc_digest(m.config())?;
        let cfg = image::parse_config(&self.inner.content.read(&cfg_d)?, &cfg_d)?;
        let diffs = image::diff_ids(&cfg, &cfg_d)?;
        let layers: Vec<Digest> = m
            .layers()
            .iter()
            .map(image::desc_digest)
            .collect::<std::result::Result<_, _>>()?;
        if layers.len() != diffs.len() {
            return Err(ManifestError::Invalid {
                what: "config",
                digest: cfg_d,
                reason: format!(
                    "{} diff ids for {} layers in manifest {manifest}",
                    diffs.len(),
                    layers.len()
                ),
            }
            .into());
        }
        Ok((layers, diffs, cfg))
    }

    /// Unpacks every missing snapshot of a layer stack (blocking).
    pub(crate) fn ensure_snapshots(
        &self,
        layers: &[Digest],
        diffs: &[Digest],
        progress: Option<(&dyn Progress, &mut ProgressState)>,
    ) -> Result<()> {
        let chains = chain_ids(diffs);
        let mut progress = progress;
        for (i, chain) in chains.iter().enumerate() {
            if !self.inner.snapshots.has(chain) {
                let blob = self.inner.content.open_blob(&layers[i])?;
                self.inner
                    .snapshots
                    .create(chain, &layers[i], &diffs[i], blob, &KernelOverlay)?;
            }
            if let Some((p, st)) = progress.as_mut() {
                st.layers_done = i + 1;
                p.update(st);
            }
        }
        Ok(())
    }

    /// Records `name` → manifest after its blobs are stored: unpacks the snapshots and
    /// writes the index (blocking).
    pub(crate) fn commit_image(
        &self,
        name: &str,
        target: &Digest,
        manifest: &Digest,
        progress: &dyn Progress,
        state: &mut ProgressState,
    ) -> Result<ImageInfo> {
        let (layers, diffs, cfg) = self.image_parts(manifest)?;
        state.phase = format!("unpacking {name}");
        state.layers_done = 0;
        state.layers_total = layers.len();
        self.ensure_snapshots(&layers, &diffs, Some((progress, state)))?;
        let bytes = self.inner.content.read(manifest)?;
        let Parsed::Manifest(m) = image::parse_manifest(&bytes, manifest)? else {
            return Err(ImageError::Task("manifest changed under us".into()));
        };
        let size = m.config().size() + m.layers().iter().map(|l| l.size()).sum::<u64>();
        let info = ImageInfo {
            name: name.to_string(),
            target_digest: target.clone(),
            manifest_digest: manifest.clone(),
            config_digest: image::desc_digest(m.config())?,
            size,
            created: cfg.created().clone(),
            stored_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let i2 = info.clone();
        self.update_index(move |idx| {
            idx.images.insert(i2.name.clone(), i2);
            Ok(())
        })?;
        Ok(info)
    }

    /// Blobs and snapshots reachable from `roots` (manifest/index digests or chain ids).
    fn reachable(
        &self,
        roots: impl IntoIterator<Item = Digest>,
    ) -> (HashSet<Digest>, HashSet<Digest>) {
        let mut blobs = HashSet::new();
        let mut snaps = HashSet::new();
        let mut stack: Vec<Digest> = roots.into_iter().collect();
        while let Some(d) = stack.pop() {
            if self.inner.snapshots.has(&d) {
                snaps.insert(d.clone());
            }
            if !blobs.insert(d.clone()) {
                continue;
            }
            let Ok(bytes) = self.inner.content.read(&d) else {
                continue;
            };
            match image::parse_manifest(&bytes, &d) {
                Ok(Parsed::Index(idx)) => {
                    stack.extend(
                        idx.manifests()
                            .iter()
                            .filter_map(|m| image::desc_digest(m).ok()),
                    );
                }
                Ok(Parsed::Manifest(m)) => {
                    let layers: Vec<Digest> = m
                        .layers()
                        .iter()
                        .filter_map(|l| image::desc_digest(l).ok())
                        .collect();
                    blobs.extend(layers);
                    if let Ok(cfg_d) = image::desc_digest(m.config()) {
                        blobs.insert(cfg_d.clone());
                        if let Ok(b) = self.inner.content.read(&cfg_d)
                            && let Ok(cfg) = image::parse_config(&b, &cfg_d)
                            && let Ok(diffs) = image::diff_ids(&cfg, &cfg_d)
                        {
                            snaps.extend(chain_ids(&diffs));
                        }
                    }
                }
                Err(_) => {}
            }
        }
        (blobs, snaps)
    }

    fn image_roots(&self) -> Result<Vec<Digest>> {
        Ok(self
            .load_index()?
            .images
            .into_values()
            .flat_map(|i| [i.target_digest, i.manifest_digest])
            .collect())
    }

    /// A new, empty set of blobs held by an operation.
    pub(crate) fn hold(&self) -> ActiveBlobs {
        ActiveBlobs {
            inner: self.inner.clone(),
            held: Vec::new(),
        }
    }

    /// Deletes blobs written by a failed pull/import that no image references and no
    /// other running operation uses (drop the failed operation's [`ActiveBlobs`] first).
    pub(crate) fn discard(&self, new_blobs: &[Digest]) {
        let Ok(roots) = self.image_roots() else {
            return;
        };
        let (keep, _) = self.reachable(roots);
        let active: HashSet<Digest> = self
            .inner
            .active
            .lock()
            .map(|a| a.keys().cloned().collect())
            .unwrap_or_default();
        for d in new_blobs {
            if !keep.contains(d) && !active.contains(d) {
                let _ = self.inner.content.remove(d);
            }
        }
    }

    /// Garbage collection: removes every blob and snapshot not reachable from a named
    /// image or from `in_use` (manifest or index digests of images that running
    /// containers use, or chain ids of snapshots they have mounted), and temporary files
    /// older than an hour (left by a crash).
    pub async fn gc(&self, in_use: &HashSet<Digest>) -> Result<GcReport> {
        let _op = self.inner.op_lock.write().await;
        let this = self.clone();
        let in_use = in_use.clone();
        tokio::task::spawn_blocking(move || {
            let _g = this
                .inner
                .index_lock
                .lock()
                .map_err(|_| ImageError::Task("image index lock poisoned".into()))?;
            let _fl = this.lock_file()?;
            let mut roots = this.image_roots()?;
            roots.extend(in_use.iter().cloned());
            let (keep_blobs, keep_snaps) = this.reachable(roots);
            let mut report = GcReport::default();
            for d in this.inner.content.list()? {
                if !keep_blobs.contains(&d) {
                    report.freed_bytes += this.inner.content.size(&d).unwrap_or(0);
                    this.inner.content.remove(&d)?;
                    report.removed_blobs.push(d);
                }
            }
            for c in this.inner.snapshots.list()? {
                if !keep_snaps.contains(&c) && !in_use.contains(&c) {
                    this.inner.snapshots.remove(&c)?;
                    report.removed_snapshots.push(c);
                }
            }
            let tmp = this.inner.content.tmp_dir();
            if let Ok(rd) = fs::read_dir(&tmp) {
                let cutoff = SystemTime::now() - Duration::from_secs(3600);
                for ent in rd.flatten() {
                    let old = ent
                        .metadata()
                        .and_then(|m| m.modified())
                        .map(|t| t < cutoff)
                        .unwrap_or(false);
                    if old {
                        let p = ent.path();
                        let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
                    }
                }
            }
            Ok(report)
        })
        .await
        .map_err(|e| ImageError::Task(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_removes_temporaries_of_dead_processes() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        fs::create_dir_all(tmp.join("snapshot-999999999-0-1/fs/bin")).unwrap();
        fs::write(tmp.join("ingest-999999999-1-2"), b"partial").unwrap();
        let mine = tmp.join(format!("ingest-{}-7-7", std::process::id()));
        fs::write(&mine, b"in progress").unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let left: Vec<_> = fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(left, vec![mine]);
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn corrupt_index_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("index.json"), b"{not json").unwrap();
        let err = ImageStore::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("image index"), "{err}");
        assert!(matches!(
            ImageStore::open(Path::new("/proc/version/x")),
            Err(ImageError::Content(_))
        ));
    }
}
