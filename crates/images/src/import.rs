//! Importing `docker save` tarballs and OCI image layout archives (optionally gzip or
//! zstd compressed) into the store.
//!
//! The archive is indexed once (member name → offset, size) and members are then read
//! by seeking, so multi-gigabyte archives are not unpacked to disk first (a compressed
//! archive is decompressed once to a temporary file, since it cannot be seeked).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::content::{ContentStore, Digest, tmp_name};
use crate::image::{self, Parsed};
use crate::progress::{NoProgress, Progress, ProgressState};
use crate::reference::ImageRef;
use crate::store::{ImageError, ImageInfo, ImageStore, Result};
use crate::unpack::{Compression, decompress};

/// How to import.
#[derive(Clone)]
pub struct ImportOptions {
    /// Name for images the archive names only by tag (OCI `ref.name` = `latest`) or not
    /// at all, e.g. `127.0.0.1:5000/app` (the tag is appended).
    pub base_name: Option<String>,
    /// Progress receiver.
    pub progress: Arc<dyn Progress>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            base_name: None,
            progress: Arc::new(NoProgress),
        }
    }
}

#[derive(Debug, Clone)]
struct Member {
    offset: u64,
    size: u64,
    link: Option<PathBuf>,
}

struct Archive {
    path: PathBuf,
    file: File,
    members: HashMap<PathBuf, Member>,
}

fn norm(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

impl Archive {
    fn bad(&self, reason: impl Into<String>) -> ImageError {
        ImageError::Import {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    fn open(path: &Path, file: File) -> Result<Self> {
        let bad = |reason: String| ImageError::Import {
            path: path.to_path_buf(),
            reason,
        };
        let mut members = HashMap::new();
        let mut ar = tar::Archive::new(&file);
        for e in ar
            .entries()
            .map_err(|e| bad(format!("not a tar archive: {e}")))?
        {
            let e = e.map_err(|e| bad(format!("reading tar: {e}")))?;
            let name = norm(&e.path().map_err(|e| bad(format!("reading tar: {e}")))?);
            let kind = e.header().entry_type();
            let link = if kind.is_symlink() || kind.is_hard_link() {
                let l = e
                    .link_name()
                    .map_err(|e| bad(format!("reading tar: {e}")))?
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                Some(if kind.is_symlink() {
                    norm(&name.parent().unwrap_or(Path::new("")).join(l))
                } else {
                    norm(&l)
                })
            } else if kind.is_file() {
                None
            } else {
                continue;
            };
            members.insert(
                name,
                Member {
                    offset: e.raw_file_position(),
                    size: e.size(),
                    link,
                },
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            members,
        })
    }

    fn member(&self, name: &Path) -> Result<Member> {
        let mut cur = norm(name);
        for _ in 0..8 {
            let m = self
                .members
                .get(&cur)
                .ok_or_else(|| self.bad(format!("archive has no member {}", name.display())))?;
            match &m.link {
                None => return Ok(m.clone()),
                Some(l) => cur = l.clone(),
            }
        }
        Err(self.bad(format!("too many links resolving {}", name.display())))
    }

    fn has(&self, name: &str) -> bool {
        self.members.contains_key(Path::new(name))
    }

    fn reader(&self, name: &Path) -> Result<(io::Take<&File>, u64)> {
        let m = self.member(name)?;
        let mut f = &self.file;
        f.seek(SeekFrom::Start(m.offset))
            .map_err(|e| self.bad(format!("seeking to {}: {e}", name.display())))?;
        Ok((f.take(m.size), m.size))
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let (mut r, size) = self.reader(Path::new(name))?;
        if size > 64 * 1024 * 1024 {
            return Err(self.bad(format!("{name} is too large for a metadata file")));
        }
        let mut buf = Vec::new();
        r.read_to_end(&mut buf)
            .map_err(|e| self.bad(format!("reading {name}: {e}")))?;
        Ok(buf)
    }
}

struct Ctx<'a> {
    content: &'a ContentStore,
    progress: &'a dyn Progress,
    state: ProgressState,
    new_blobs: Vec<Digest>,
    active: Option<crate::store::ActiveBlobs>,
}

impl Ctx<'_> {
    fn hold(&mut self, d: &Digest) {
        if let Some(a) = self.active.as_mut() {
            a.add(d);
        }
    }
}

impl Ctx<'_> {
    /// Copies OCI layout blob `d` into the store (verified against its digest).
    fn copy_oci_blob(&mut self, ar: &Archive, d: &Digest, is_layer: bool) -> Result<()> {
        self.hold(d);
        if self.content.has(d) {
            self.state.bytes_done += self.content.size(d).unwrap_or(0);
        } else {
            let (mut r, size) = ar.reader(&Path::new("blobs/sha256").join(d.hex()))?;
            let progress = self.progress;
            let mut state = self.state.clone();
            let new = self.content.put_reader(d, Some(size), &mut r, &mut |n| {
                state.bytes_done += n;
                progress.update(&state);
            })?;
            self.state = state;
            if new {
                self.new_blobs.push(d.clone());
            }
        }
        if is_layer {
            self.state.layers_done += 1;
            self.progress.update(&self.state);
        }
        Ok(())
    }

    fn put(&mut self, bytes: &[u8]) -> Result<Digest> {
        let d = Digest::of(bytes);
        self.hold(&d);
        if self.content.put(&d, bytes)? {
            self.new_blobs.push(d.clone());
        }
        Ok(d)
    }
}

fn name_from(base: Option<&str>, tag: Option<&str>, ar: &Archive) -> Result<String> {
    match (base, tag) {
        (Some(b), Some(t)) => Ok(ImageRef::parse(&format!("{b}:{t}"))?.canonical()),
        (Some(b), None) => Ok(ImageRef::parse(b)?.canonical()),
        (None, Some(t)) if t.contains('/') || t.contains(':') => {
            Ok(ImageRef::parse(t)?.canonical())
        }
        (None, Some(t)) => Err(ar.bad(format!(
            "image is named only by tag {t:?}; give a base name to import it"
        ))),
        (None, None) => Err(ar.bad("image has no name; give a base name to import it")),
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Images found in an archive: (name, target digest, manifest digest).
type Found = Vec<(String, Digest, Digest)>;

fn import_oci(ar: &Archive, ctx: &mut Ctx, base: Option<&str>) -> Result<Found> {
    let idx_bytes = ar.read("index.json")?;
    let idx_d = Digest::of(&idx_bytes);
    let Parsed::Index(idx) = image::parse_manifest(&idx_bytes, &idx_d)? else {
        return Err(ar.bad("index.json is not an image index"));
    };
    ctx.state.bytes_total = ar
        .members
        .iter()
        .filter(|(p, m)| p.starts_with("blobs") && m.link.is_none())
        .map(|(_, m)| m.size)
        .sum();
    let mut found = Vec::new();
    for desc in idx.manifests() {
        let ann = desc.annotations().clone().unwrap_or_default();
        let name = match ann.get("io.containerd.image.name") {
            Some(n) => ImageRef::parse(n)?.canonical(),
            None => name_from(
                base,
                ann.get("org.opencontainers.image.ref.name")
                    .map(String::as_str),
                ar,
            )?,
        };
        let target = image::desc_digest(desc)?;
        ctx.copy_oci_blob(ar, &target, false)?;
        let bytes = ctx.content.read(&target)?;
        let manifest = match image::parse_manifest(&bytes, &target)? {
            Parsed::Manifest(_) => target.clone(),
            Parsed::Index(inner) => {
                let d = image::desc_digest(image::choose_linux_amd64(&inner, &name)?)?;
                ctx.copy_oci_blob(ar, &d, false)?;
                d
            }
        };
        let mbytes = ctx.content.read(&manifest)?;
        let Parsed::Manifest(m) = image::parse_manifest(&mbytes, &manifest)? else {
            return Err(ar.bad(format!("{manifest} is not an image manifest")));
        };
        ctx.state.layers_total += m.layers().len();
        ctx.copy_oci_blob(ar, &image::desc_digest(m.config())?, false)?;
        for l in m.layers() {
            ctx.copy_oci_blob(ar, &image::desc_digest(l)?, true)?;
        }
        found.push((name, target, manifest));
    }
    if found.is_empty() {
        return Err(ar.bad("index.json lists no images"));
    }
    Ok(found)
}

fn import_docker(ar: &Archive, ctx: &mut Ctx, base: Option<&str>) -> Result<Found> {
    let entries: Vec<DockerEntry> = serde_json::from_slice(&ar.read("manifest.json")?)
        .map_err(|e| ar.bad(format!("invalid manifest.json: {e}")))?;
    if entries.is_empty() {
        return Err(ar.bad("manifest.json lists no images"));
    }
    let mut total = 0;
    for e in &entries {
        for p in std::iter::once(&e.config).chain(&e.layers) {
            total += ar.member(Path::new(p))?.size;
        }
    }
    ctx.state.bytes_total = total;
    let mut found = Vec::new();
    for e in entries {
        let cfg_bytes = ar.read(&e.config)?;
        let cfg_d = ctx.put(&cfg_bytes)?;
        ctx.state.bytes_done += cfg_bytes.len() as u64;
        ctx.state.layers_total += e.layers.len();
        let mut layers = Vec::new();
        for l in &e.layers {
            let (mut r, size) = ar.reader(Path::new(l))?;
            let mut head = [0u8; 4];
            let n = r
                .read(&mut head)
                .map_err(|err| ar.bad(format!("reading {l}: {err}")))?;
            let media = match Compression::detect(&head[..n]) {
                Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::None => "application/vnd.oci.image.layer.v1.tar",
            };
            let mut full = io::Cursor::new(head[..n].to_vec()).chain(r);
            let content = ctx.content;
            let progress = ctx.progress;
            let mut state = ctx.state.clone();
            let (d, new) = content.put_computed(&mut full, &mut |b| {
                state.bytes_done += b;
                progress.update(&state);
            })?;
            ctx.state = state;
            ctx.hold(&d);
            if new {
                ctx.new_blobs.push(d.clone());
            }
            ctx.state.layers_done += 1;
            layers.push(
                serde_json::json!({"mediaType": media, "digest": d.to_string(), "size": size}),
            );
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": image::MT_OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": cfg_d.to_string(),
                "size": cfg_bytes.len(),
            },
            "layers": layers,
        });
        let mbytes = serde_json::to_vec(&manifest).map_err(|e| ar.bad(e.to_string()))?;
        let md = ctx.put(&mbytes)?;
        let tags = e.repo_tags.unwrap_or_default();
        if tags.is_empty() {
            found.push((name_from(base, None, ar)?, md.clone(), md));
        } else {
            for t in tags {
                found.push((ImageRef::parse(&t)?.canonical(), md.clone(), md.clone()));
            }
        }
    }
    Ok(found)
}

impl ImageStore {
    /// Imports a `docker save` or OCI layout archive (`.tar`, `.tar.gz`, `.tar.zst`).
    /// Returns the images it named. Blobs are verified against their digests; on
    /// failure, blobs written by this import and used by no image are removed again.
    pub async fn import(&self, path: &Path, opts: &ImportOptions) -> Result<Vec<ImageInfo>> {
        let _op = self.inner.op_lock.read().await;
        let this = self.clone();
        let path = path.to_path_buf();
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || {
            let mut ctx = Ctx {
                content: this.content(),
                progress: &*opts.progress,
                state: ProgressState {
                    phase: format!("importing {}", path.display()),
                    ..Default::default()
                },
                new_blobs: Vec::new(),
                active: Some(this.hold()),
            };
            let res = this.import_blocking(&path, &opts, &mut ctx);
            ctx.active = None;
            if res.is_err() {
                this.discard(&ctx.new_blobs);
            }
            let mut s = ctx.state.clone();
            s.phase = match &res {
                Ok(v) => format!("imported {} image(s) from {}", v.len(), path.display()),
                Err(e) => format!("failed: {e}"),
            };
            opts.progress.finish(&s);
            res
        })
        .await
        .map_err(|e| ImageError::Task(e.to_string()))?
    }

    fn import_blocking(
        &self,
        path: &Path,
        opts: &ImportOptions,
        ctx: &mut Ctx,
    ) -> Result<Vec<ImageInfo>> {
        let bad = |reason: String| ImageError::Import {
            path: path.to_path_buf(),
            reason,
        };
        let mut file = File::open(path).map_err(|e| bad(format!("opening: {e}")))?;
        let total = file.metadata().map(|m| m.len()).unwrap_or(0);
        ctx.state.bytes_total = total;
        let mut head = [0u8; 4];
        let n = file
            .read(&mut head)
            .map_err(|e| bad(format!("reading: {e}")))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| bad(format!("reading: {e}")))?;
        // A compressed archive cannot be seeked: decompress it once to a temporary file.
        let mut _tmp_guard = None;
        if Compression::detect(&head[..n]) != Compression::None {
            let tmp = self.content().tmp_dir().join(tmp_name("import"));
            let guard = TmpGuard(tmp.clone());
            let mut out = File::create(&tmp)
                .map_err(|e| crate::content::ContentError::io("decompressing archive", e))?;
            {
                let mut dec =
                    decompress(&mut file).map_err(|e| bad(format!("decompressing: {e}")))?;
                io::copy(&mut dec, &mut out)
                    .map_err(|e| crate::content::ContentError::io("decompressing archive", e))?;
            }
            file = File::open(&tmp).map_err(|e| bad(format!("reopening: {e}")))?;
            ctx.state.bytes_total = file.metadata().map(|m| m.len()).unwrap_or(total);
            _tmp_guard = Some(guard);
        }
        let ar = Archive::open(path, file)?;
        let base = opts.base_name.as_deref();
        let found = if ar.has("index.json") && ar.has("oci-layout") {
            import_oci(&ar, ctx, base)?
        } else if ar.has("manifest.json") {
            import_docker(&ar, ctx, base)?
        } else {
            return Err(bad(
                "not a docker save or OCI archive: no manifest.json or oci-layout + index.json"
                    .into(),
            ));
        };
        let mut out = Vec::new();
        for (name, target, manifest) in found {
            let mut st = ctx.state.clone();
            out.push(self.commit_image(&name, &target, &manifest, ctx.progress, &mut st)?);
        }
        Ok(out)
    }
}

struct TmpGuard(PathBuf);

impl Drop for TmpGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
