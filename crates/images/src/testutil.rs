//! Test fixtures built by the project itself: a busybox image from Debian's static
//! `/bin/busybox` written as an OCI layout, `docker save` / OCI archives of it, and a
//! local `docker-registry` (loopback, plain http) to push to with `skopeo`.
//!
//! Enabled in this crate's tests and, for other crates' tests, with feature `testutil`.
//! Helpers panic on failure: they are for tests only.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::content::Digest;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique directory under the system temp dir, removed on drop.
pub struct TestDir(pub PathBuf);

impl TestDir {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("flotilla-images-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Whether we run as root (privileged tests skip otherwise).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The commands busybox is linked as in the fixture.
pub const APPLETS: [&str; 10] = [
    "sh", "ls", "echo", "httpd", "wget", "sleep", "cat", "true", "false", "mkdir",
];

/// What a built layout contains.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    pub manifest: Digest,
    pub config: Digest,
    /// Compressed layer blobs, bottom first.
    pub layers: Vec<Digest>,
    pub diff_ids: Vec<Digest>,
    /// Uncompressed layer tars, bottom first (for docker archives).
    pub layer_tars: Vec<Vec<u8>>,
    pub config_bytes: Vec<u8>,
}

fn hdr(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn add_dir(b: &mut tar::Builder<Vec<u8>>, p: &str) {
    let mut h = hdr(tar::EntryType::Directory, 0o755, 0);
    b.append_data(&mut h, p, std::io::empty()).unwrap();
}

fn add_file(b: &mut tar::Builder<Vec<u8>>, p: &str, data: &[u8], mode: u32) {
    let mut h = hdr(tar::EntryType::Regular, mode, data.len() as u64);
    b.append_data(&mut h, p, data).unwrap();
}

/// Layer 1: busybox and its links, files for the next layer to delete.
pub fn base_layer_tar() -> Vec<u8> {
    let busybox = fs::read("/bin/busybox").expect("busybox-static must be installed");
    let mut b = tar::Builder::new(Vec::new());
    for d in ["bin/", "etc/", "opaque-dir/", "dev/", "tmp/"] {
        add_dir(&mut b, d);
    }
    add_file(&mut b, "bin/busybox", &busybox, 0o755);
    for a in APPLETS {
        let mut h = hdr(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, format!("bin/{a}"), "busybox")
            .unwrap();
    }
    let mut h = hdr(tar::EntryType::Link, 0o755, 0);
    b.append_link(&mut h, "bin/busybox.hard", "bin/busybox")
        .unwrap();
    let mut h = hdr(tar::EntryType::Char, 0o666, 0);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    b.append_data(&mut h, "dev/null", std::io::empty()).unwrap();
    add_file(&mut b, "etc/hostname", b"busybox\n", 0o644);
    add_file(
        &mut b,
        "etc/removed",
        b"deleted by the upper layer\n",
        0o644,
    );
    add_file(
        &mut b,
        "opaque-dir/old",
        b"hidden by the opaque marker\n",
        0o644,
    );
    b.into_inner().unwrap()
}

/// Layer 2: whiteouts and new files.
pub fn upper_layer_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    add_dir(&mut b, "etc/");
    add_file(&mut b, "etc/.wh.removed", b"", 0o644);
    add_file(&mut b, "etc/added", b"from layer 2\n", 0o644);
    add_dir(&mut b, "opaque-dir/");
    add_file(&mut b, "opaque-dir/.wh..wh..opq", b"", 0o644);
    add_file(&mut b, "opaque-dir/new", b"from layer 2\n", 0o644);
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn write_blob(dir: &Path, data: &[u8]) -> Digest {
    let d = Digest::of(data);
    let p = dir.join("blobs/sha256");
    fs::create_dir_all(&p).unwrap();
    fs::write(p.join(d.hex()), data).unwrap();
    d
}

/// Writes an OCI layout at `dir` with the given layers (gzip for the first, zstd for
/// the others), config `Cmd ["sh"]` and `label`, indexed under ref.name `tag`.
pub fn build_layout(dir: &Path, tag: &str, layer_tars: Vec<Vec<u8>>, label: &str) -> Layout {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut layers = Vec::new();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, t) in layer_tars.iter().enumerate() {
        diff_ids.push(Digest::of(t));
        let (blob, mt) = if i == 0 {
            (gzip(t), "application/vnd.oci.image.layer.v1.tar+gzip")
        } else {
            (
                zstd::encode_all(&t[..], 3).unwrap(),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            )
        };
        let d = write_blob(dir, &blob);
        descs.push(
            serde_json::json!({"mediaType": mt, "digest": d.to_string(), "size": blob.len()}),
        );
        layers.push(d);
    }
    let config = serde_json::json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/bin"],
            "Cmd": ["sh"],
            "WorkingDir": "/",
            "ExposedPorts": {"80/tcp": {}},
            "Labels": {"fixture": label}
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
        "history": []
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_d = write_blob(dir, &config_bytes);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::image::MT_OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_d.to_string(), "size": config_bytes.len()},
        "layers": descs,
    });
    let mbytes = serde_json::to_vec(&manifest).unwrap();
    let md = write_blob(dir, &mbytes);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::image::MT_OCI_INDEX,
        "manifests": [{"mediaType": crate::image::MT_OCI_MANIFEST, "digest": md.to_string(),
                       "size": mbytes.len(),
                       "annotations": {"org.opencontainers.image.ref.name": tag}}],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    Layout {
        dir: dir.to_path_buf(),
        manifest: md,
        config: config_d,
        layers,
        diff_ids,
        layer_tars,
        config_bytes,
    }
}

/// The two-layer busybox image (busybox + whiteouts) as an OCI layout.
pub fn busybox_layout(dir: &Path, tag: &str) -> Layout {
    build_layout(
        dir,
        tag,
        vec![base_layer_tar(), upper_layer_tar()],
        "busybox",
    )
}

/// Rewrites the layout's index.json so that `tag` points to an image index listing
/// only a linux/arm64 image (for the "no linux/amd64" case).
pub fn make_arm64_only(layout: &Layout, tag: &str) {
    let mbytes = fs::read(layout.dir.join("blobs/sha256").join(layout.manifest.hex())).unwrap();
    let inner = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::image::MT_OCI_INDEX,
        "manifests": [{"mediaType": crate::image::MT_OCI_MANIFEST,
                       "digest": layout.manifest.to_string(), "size": mbytes.len(),
                       "platform": {"os": "linux", "architecture": "arm64"}}],
    });
    let ib = serde_json::to_vec(&inner).unwrap();
    let id = write_blob(&layout.dir, &ib);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": crate::image::MT_OCI_INDEX, "digest": id.to_string(),
                       "size": ib.len(),
                       "annotations": {"org.opencontainers.image.ref.name": tag}}],
    });
    fs::write(
        layout.dir.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

/// Tars a directory (an OCI archive when it is a layout).
pub fn tar_dir(dir: &Path, out: &Path) {
    let mut b = tar::Builder::new(fs::File::create(out).unwrap());
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
}

/// Writes a `docker save` style archive of `layout` with `repo_tags`.
pub fn docker_archive(layout: &Layout, repo_tags: &[&str], out: &Path) {
    let mut b = tar::Builder::new(Vec::new());
    let cfg_name = format!("{}.json", layout.config.hex());
    add_file(&mut b, &cfg_name, &layout.config_bytes, 0o644);
    let mut names = Vec::new();
    for (i, t) in layout.layer_tars.iter().enumerate() {
        let dir = format!("layer{i}");
        add_dir(&mut b, &format!("{dir}/"));
        add_file(&mut b, &format!("{dir}/VERSION"), b"1.0", 0o644);
        add_file(&mut b, &format!("{dir}/layer.tar"), t, 0o644);
        names.push(format!("{dir}/layer.tar"));
    }
    let manifest =
        serde_json::json!([{"Config": cfg_name, "RepoTags": repo_tags, "Layers": names}]);
    add_file(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
        0o644,
    );
    fs::write(out, b.into_inner().unwrap()).unwrap();
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Debian's `docker-registry` on a free loopback port, killed and wiped on drop.
pub struct LocalRegistry {
    child: Child,
    pub addr: String,
    pub dir: TestDir,
}

impl LocalRegistry {
    /// Starts it and waits (at most 15 s) until `/v2/` answers.
    pub fn start() -> Self {
        let dir = TestDir::new("registry");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let storage = dir.path().join("storage");
        fs::create_dir_all(&storage).unwrap();
        let cfg = dir.path().join("config.yml");
        fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                storage.display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry must be installed");
        let reg = Self { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if reg.get_status("/v2/") == Some(200) {
                break;
            }
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    fn get_status(&self, path: &str) -> Option<u16> {
        let mut s =
            TcpStream::connect_timeout(&self.addr.parse().ok()?, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).ok()?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).ok()?;
        let line = String::from_utf8_lossy(&buf[..n]).to_string();
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Pushes `oci:layout_dir:tag` to `addr/name:tag` with skopeo (`--all` keeps indexes).
    pub fn push(&self, layout_dir: &Path, tag: &str, name: &str) {
        self.push_as(layout_dir, tag, name, &[]);
    }

    /// Like [`Self::push`] with extra skopeo copy flags (e.g. `--format v2s2` to store a
    /// Docker schema2 manifest).
    pub fn push_as(&self, layout_dir: &Path, tag: &str, name: &str, extra: &[&str]) {
        let out = Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--all",
                "--dest-tls-verify=false",
                "-q",
            ])
            .args(extra)
            .arg(format!("oci:{}:{tag}", layout_dir.display()))
            .arg(format!("docker://{}/{name}:{tag}", self.addr))
            .output()
            .expect("skopeo must be installed");
        assert!(
            out.status.success(),
            "skopeo copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The registry's file holding blob `d`.
    pub fn blob_file(&self, d: &Digest) -> PathBuf {
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&d.hex()[..2])
            .join(d.hex())
            .join("data")
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts files (not directories) below `p`.
pub fn count_files(p: &Path) -> usize {
    let Ok(rd) = fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}
