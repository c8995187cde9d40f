//! Pull, import, corruption, full-disk and gc tests against a local `docker-registry`.
//! Privileged ones (mknod for whiteouts, tmpfs and overlay mounts) skip when not root.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use images::testutil::{self, LocalRegistry, TestDir};
use images::{Digest, ImageStore, ImportOptions, Progress, ProgressState, PullOptions};

fn insecure(reg: &LocalRegistry) -> PullOptions {
    PullOptions {
        insecure_registries: vec![reg.addr.clone()],
        ..Default::default()
    }
}

macro_rules! require_root {
    () => {
        if !testutil::is_root() {
            eprintln!("SKIPPED (not root): needs mknod/xattrs/mounts");
            return;
        }
    };
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("test step timed out")
}

#[derive(Default)]
struct Recorder(Mutex<Vec<ProgressState>>);

impl Progress for Recorder {
    fn update(&self, s: &ProgressState) {
        self.0.lock().unwrap().push(s.clone());
    }
}

/// Unmounts on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn mount_overlay(lower: &[PathBuf], target: &Path) -> Mount {
    fs::create_dir_all(target).unwrap();
    let lowers: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
    let opts = format!("lowerdir={}", lowers.join(":"));
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(opts.as_str()),
    )
    .expect("mount overlay");
    Mount(target.to_path_buf())
}

fn assert_clean(root: &Path) {
    assert_eq!(testutil::count_files(&root.join("blobs")), 0, "blobs left");
    assert_eq!(
        testutil::count_files(&root.join("tmp")),
        0,
        "temp files left"
    );
    let snaps = fs::read_dir(root.join("snapshots"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(snaps, 0, "snapshots left");
}

#[tokio::test]
async fn pull_from_local_registry_reuses_blobs_and_overlays_with_whiteouts() {
    require_root!();
    let reg = LocalRegistry::start();
    let work = TestDir::new("pull");
    let layout = testutil::busybox_layout(&work.path().join("layout"), "v1");
    reg.push(&layout.dir, "v1", "test/busybox");
    let root = work.path().join("store");
    let store = ImageStore::open(&root).unwrap();
    let name = format!("{}/test/busybox:v1", reg.addr);

    let rec = Arc::new(Recorder::default());
    let mut opts = insecure(&reg);
    opts.progress = rec.clone();
    let info = timed(store.pull(&name, &opts)).await.unwrap();
    assert_eq!(info.name, name);
    assert_eq!(info.manifest_digest, layout.manifest);
    assert_eq!(info.config_digest, layout.config);
    for l in &layout.layers {
        assert!(store.content().has(l), "layer {l} stored");
    }
    let states = rec.0.lock().unwrap().clone();
    let last = states.last().unwrap();
    assert_eq!(last.layers_total, 2);
    assert_eq!(last.layers_done, 2);
    assert!(
        states
            .iter()
            .any(|s| s.bytes_total > 0 && s.bytes_done >= s.bytes_total)
    );

    // Two concurrent pulls of the same image, and a pull pinned by digest.
    let other = ImageStore::open(&work.path().join("store2")).unwrap();
    let fresh = work.path().join("layout2");
    let layout2 = testutil::busybox_layout(&fresh, "v2");
    reg.push(&layout2.dir, "v2", "test/busybox");
    let name2 = format!("{}/test/busybox:v2", reg.addr);
    let pinned = format!("{}/test/busybox@{}", reg.addr, layout2.manifest);
    let o = insecure(&reg);
    let (a, b, c) = timed(async {
        tokio::join!(
            other.pull(&name2, &o),
            other.pull(&name2, &o),
            other.pull(&pinned, &o)
        )
    })
    .await;
    assert_eq!(a.unwrap().manifest_digest, layout2.manifest);
    assert_eq!(b.unwrap().manifest_digest, layout2.manifest);
    assert_eq!(c.unwrap().name, pinned);
    assert_eq!(
        other.get(&pinned).unwrap().manifest_digest,
        layout2.manifest
    );
    assert_eq!(other.snapshots().list().unwrap().len(), 2);
    let wrong = format!(
        "{}/test/busybox@{}",
        reg.addr,
        Digest::of(b"no such manifest")
    );
    let err = timed(other.pull(&wrong, &insecure(&reg)))
        .await
        .unwrap_err();
    eprintln!("wrong digest: {err}");
    assert!(err.to_string().contains("not found"), "{err}");

    // Pulling again re-uses the blobs: corrupt the registry's copy of layer 1 and the
    // second pull still succeeds because it never downloads it.
    let data = reg.blob_file(&layout.layers[0]);
    let mut bytes = fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&data, &bytes).unwrap();
    let again = timed(store.pull(&name, &insecure(&reg))).await.unwrap();
    assert_eq!(again.manifest_digest, info.manifest_digest);
    assert_eq!(store.list().unwrap().len(), 1);

    let (lower, cfg) = store.rootfs_layers(&name).await.unwrap();
    assert_eq!(lower.len(), 2);
    assert_eq!(cfg.cmd, vec!["sh"]);
    assert_eq!(cfg.exposed_ports, vec!["80/tcp"]);
    // Top layer first: it holds the whiteouts.
    let wh = fs::symlink_metadata(lower[0].join("etc/removed")).unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(
        xattr::get(lower[0].join("opaque-dir"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    assert!(lower[1].join("bin/busybox").is_file());
    let null = fs::symlink_metadata(lower[1].join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(
        fs::read_link(lower[1].join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        fs::metadata(lower[1].join("bin/busybox.hard"))
            .unwrap()
            .ino(),
        fs::metadata(lower[1].join("bin/busybox")).unwrap().ino()
    );

    let merged = work.path().join("merged");
    let _m = mount_overlay(&lower, &merged);
    assert!(merged.join("bin/busybox").is_file());
    assert!(merged.join("etc/hostname").is_file());
    assert!(
        !merged.join("etc/removed").exists(),
        "whiteout hides the file"
    );
    assert!(
        !merged.join("opaque-dir/old").exists(),
        "opaque dir hides old"
    );
    assert!(merged.join("opaque-dir/new").is_file());
    let out = Command::new(merged.join("bin/busybox"))
        .args(["echo", "hello"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
}

#[tokio::test]
async fn corrupted_blob_is_refused_and_leaves_nothing() {
    let reg = LocalRegistry::start();
    let work = TestDir::new("corrupt");
    let layout = testutil::busybox_layout(&work.path().join("layout"), "v1");
    reg.push(&layout.dir, "v1", "test/corrupt");
    let data = reg.blob_file(&layout.layers[0]);
    let mut bytes = fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&data, &bytes).unwrap();

    let root = work.path().join("store");
    let store = ImageStore::open(&root).unwrap();
    let err = timed(store.pull(&format!("{}/test/corrupt:v1", reg.addr), &insecure(&reg)))
        .await
        .unwrap_err()
        .to_string();
    eprintln!("corrupt blob: {err}");
    assert!(err.contains(layout.layers[0].as_str()), "{err}");
    assert_clean(&root);
    assert!(store.list().unwrap().is_empty());
}

#[tokio::test]
async fn bad_pulls_give_clear_errors() {
    let work = TestDir::new("bad");
    let root = work.path().join("store");
    let store = ImageStore::open(&root).unwrap();

    let err = store
        .pull("Not A Ref", &PullOptions::default())
        .await
        .unwrap_err();
    eprintln!("invalid reference: {err}");
    assert!(err.to_string().contains("invalid image reference"), "{err}");

    let port = testutil::free_port();
    let closed = format!("127.0.0.1:{port}");
    let opts = PullOptions {
        insecure_registries: vec![closed.clone()],
        ..Default::default()
    };
    let err = timed(store.pull(&format!("{closed}/x:1"), &opts))
        .await
        .unwrap_err();
    let msg = err.to_string();
    eprintln!("closed port: {msg}");
    assert!(msg.contains(&closed), "{msg}");
    assert!(msg.to_lowercase().contains("connect"), "{msg}");

    let reg = LocalRegistry::start();
    let layout = testutil::busybox_layout(&work.path().join("layout"), "v1");
    reg.push(&layout.dir, "v1", "test/bad");
    let err = timed(store.pull(&format!("{}/test/bad:nope", reg.addr), &insecure(&reg)))
        .await
        .unwrap_err();
    eprintln!("missing tag: {err}");
    assert!(err.to_string().contains("not found"), "{err}");
    let err = timed(store.pull(&format!("{}/test/absent:v1", reg.addr), &insecure(&reg)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");

    testutil::make_arm64_only(&layout, "arm");
    reg.push(&layout.dir, "arm", "test/bad");
    let err = timed(store.pull(&format!("{}/test/bad:arm", reg.addr), &insecure(&reg)))
        .await
        .unwrap_err()
        .to_string();
    eprintln!("arm64 only: {err}");
    assert!(err.contains("no manifest for linux/amd64"), "{err}");
    assert!(err.contains("linux/arm64"), "{err}");
    assert_clean(&root);
}

#[tokio::test]
async fn full_disk_gives_no_space_error_and_no_partial_files() {
    require_root!();
    let reg = LocalRegistry::start();
    let work = TestDir::new("nospace");
    let layout = testutil::busybox_layout(&work.path().join("layout"), "v1");
    reg.push(&layout.dir, "v1", "test/full");
    let name = format!("{}/test/full:v1", reg.addr);
    let blobs: u64 = layout
        .layers
        .iter()
        .map(|l| {
            fs::metadata(layout.dir.join("blobs/sha256").join(l.hex()))
                .unwrap()
                .len()
        })
        .sum();
    // Too small for the blobs; then room for the blobs but not for the unpacked layer.
    for size in [256 * 1024, blobs + 256 * 1024] {
        let mnt = work.path().join(format!("tmpfs-{size}"));
        fs::create_dir_all(&mnt).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &mnt,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={size}").as_str()),
        )
        .unwrap();
        let _m = Mount(mnt.clone());
        let root = mnt.join("images");
        let store = ImageStore::open(&root).unwrap();
        let err = timed(store.pull(&name, &insecure(&reg))).await.unwrap_err();
        eprintln!("tmpfs of {size} bytes: {err}");
        assert!(err.is_no_space(), "size {size}: {err}");
        assert!(err.to_string().contains("no space left"), "{err}");
        assert_clean(&root);
        assert!(store.list().unwrap().is_empty());
    }
}

#[tokio::test]
async fn docker_and_oci_archives_import() {
    require_root!();
    let work = TestDir::new("import");
    let layout = testutil::busybox_layout(&work.path().join("layout"), "v1");
    let store = ImageStore::open(&work.path().join("store")).unwrap();

    let docker_tar = work.path().join("docker.tar");
    testutil::docker_archive(&layout, &["example.com/tools/busybox:saved"], &docker_tar);
    let got = timed(store.import(&docker_tar, &ImportOptions::default()))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].name, "example.com/tools/busybox:saved");
    assert_eq!(got[0].config_digest, layout.config);
    let (lower, cfg) = store
        .rootfs_layers("example.com/tools/busybox:saved")
        .await
        .unwrap();
    assert_eq!(cfg.cmd, vec!["sh"]);
    assert!(lower[1].join("bin/busybox").is_file());

    // OCI archive, gzip-compressed, named by base name + ref.name.
    let oci_tar = work.path().join("oci.tar");
    testutil::tar_dir(&layout.dir, &oci_tar);
    let gz = work.path().join("oci.tar.gz");
    let mut enc =
        flate2::write::GzEncoder::new(fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    std::io::copy(&mut fs::File::open(&oci_tar).unwrap(), &mut enc).unwrap();
    enc.finish().unwrap();
    let opts = ImportOptions {
        base_name: Some("localhost:5000/busybox".into()),
        ..Default::default()
    };
    let got = timed(store.import(&gz, &opts)).await.unwrap();
    assert_eq!(got[0].name, "localhost:5000/busybox:v1");
    assert_eq!(got[0].manifest_digest, layout.manifest);
    let (lower2, _) = store
        .rootfs_layers("localhost:5000/busybox:v1")
        .await
        .unwrap();
    assert_eq!(lower, lower2, "same layers, same snapshots");

    // Without a name the OCI archive is refused clearly; garbage is refused.
    let err = store
        .import(&oci_tar, &ImportOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("base name"), "{err}");
    let junk = work.path().join("junk.tar");
    fs::write(&junk, b"definitely not a tar").unwrap();
    assert!(
        store
            .import(&junk, &ImportOptions::default())
            .await
            .is_err()
    );

    // A tampered OCI blob is refused by digest.
    let bad_dir = work.path().join("bad-layout");
    let bad = testutil::busybox_layout(&bad_dir, "v1");
    let cfg_path = bad_dir.join("blobs/sha256").join(bad.config.hex());
    let mut c = fs::read(&cfg_path).unwrap();
    c[0] = b' ';
    fs::write(&cfg_path, c).unwrap();
    let bad_tar = work.path().join("bad.tar");
    testutil::tar_dir(&bad_dir, &bad_tar);
    let fresh = ImageStore::open(&work.path().join("fresh")).unwrap();
    let err = fresh.import(&bad_tar, &opts).await.unwrap_err();
    assert!(err.to_string().contains(bad.config.as_str()), "{err}");
    assert_clean(&work.path().join("fresh"));
}

#[tokio::test]
async fn gc_removes_unreferenced_and_keeps_in_use() {
    require_root!();
    let work = TestDir::new("gc");
    let store = ImageStore::open(&work.path().join("store")).unwrap();
    // A: busybox + whiteout layer; B: only the busybox layer (shared with A).
    let a = testutil::busybox_layout(&work.path().join("a"), "a");
    let b = testutil::build_layout(
        &work.path().join("b"),
        "b",
        vec![testutil::base_layer_tar()],
        "base",
    );
    for (l, name) in [(&a, "example.com/a:1"), (&b, "example.com/b:1")] {
        let t = work.path().join(format!("{}.tar", l.config.hex()));
        testutil::docker_archive(l, &[name], &t);
        store.import(&t, &ImportOptions::default()).await.unwrap();
    }
    let a_info = store.get("example.com/a:1").unwrap();
    let (a_lower, _) = store.rootfs_layers("example.com/a:1").await.unwrap();
    let (b_lower, _) = store.rootfs_layers("example.com/b:1").await.unwrap();
    assert_eq!(a_lower[1], b_lower[0], "base snapshot shared");

    let report = store.gc(&HashSet::new()).await.unwrap();
    assert!(report.removed_blobs.is_empty() && report.removed_snapshots.is_empty());

    store.remove("example.com/a:1").unwrap();
    assert!(store.get("example.com/a:1").is_err());
    // Still used by a container: kept.
    let in_use: HashSet<Digest> = [a_info.manifest_digest.clone()].into();
    let report = store.gc(&in_use).await.unwrap();
    assert!(report.removed_blobs.is_empty(), "{report:?}");
    assert!(a_lower[0].is_dir());

    let report = store.gc(&HashSet::new()).await.unwrap();
    assert_eq!(report.removed_snapshots.len(), 1, "{report:?}");
    assert!(!a_lower[0].exists());
    assert!(b_lower[0].join("bin/busybox").is_file());
    // A's manifest, config and upper layer went; the shared layer stayed.
    assert!(!store.content().has(&a_info.manifest_digest));
    assert!(!store.content().has(&a_info.config_digest));
    assert_eq!(report.removed_blobs.len(), 3, "{report:?}");
    assert!(report.freed_bytes > 0);
    let (again, _) = store.rootfs_layers("example.com/b:1").await.unwrap();
    assert_eq!(again, b_lower);
}

#[tokio::test]
async fn cli_import_ls_pull_rm_gc() {
    require_root!();
    use images::ImagesCommand;
    let work = TestDir::new("cli");
    let root = work.path().join("store");
    let layout = testutil::busybox_layout(&work.path().join("layout"), "v1");
    let tarball = work.path().join("docker.tar");
    testutil::docker_archive(&layout, &["busybox:cli"], &tarball);
    images::run_cli(
        ImagesCommand::Import {
            file: tarball,
            base_name: None,
        },
        &root,
    )
    .await
    .unwrap();
    images::run_cli(ImagesCommand::Ls { quiet: false }, &root)
        .await
        .unwrap();
    let reg = LocalRegistry::start();
    reg.push(&layout.dir, "v1", "cli/busybox");
    let pulled = format!("{}/cli/busybox:v1", reg.addr);
    images::run_cli(
        ImagesCommand::Pull {
            reference: pulled.clone(),
            insecure_registries: vec![reg.addr.clone()],
            user: None,
        },
        &root,
    )
    .await
    .unwrap();
    let store = ImageStore::open(&root).unwrap();
    let names: Vec<String> = store.list().unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(
        names,
        vec![pulled.clone(), "docker.io/library/busybox:cli".to_string()]
    );
    let err = images::run_cli(
        ImagesCommand::Rm {
            refs: vec!["busybox:cli".into(), "busybox:absent".into()],
        },
        &root,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("busybox:absent"), "{err}");
    images::run_cli(ImagesCommand::Rm { refs: vec![pulled] }, &root)
        .await
        .unwrap();
    images::run_cli(ImagesCommand::Gc, &root).await.unwrap();
    assert!(store.list().unwrap().is_empty());
    assert_clean(&root);
}

#[tokio::test]
async fn busybox_script_image_pushes_pulls_and_imports() {
    let work = TestDir::new("script");
    let layout = work.path().join("layout");
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/make-busybox-image.sh"
    ))
    .arg(&layout)
    .arg("1.0")
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = Digest::parse(String::from_utf8_lossy(&out.stdout).trim()).unwrap();

    let reg = LocalRegistry::start();
    reg.push(&layout, "1.0", "library/busybox");
    let store = ImageStore::open(&work.path().join("store")).unwrap();
    let name = format!("{}/library/busybox:1.0", reg.addr);
    let info = timed(store.pull(&name, &insecure(&reg))).await.unwrap();
    assert_eq!(info.manifest_digest, manifest);
    let (lower, cfg) = store.rootfs_layers(&name).await.unwrap();
    assert_eq!(cfg.cmd, vec!["sh"]);
    assert_eq!(
        fs::read_link(lower[0].join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert!(lower[0].join("etc/passwd").is_file());

    // The same image as a Docker schema2 manifest.
    reg.push_as(
        &layout,
        "1.0",
        "library/busybox-v2s2",
        &["--format", "v2s2"],
    );
    let v2 = format!("{}/library/busybox-v2s2:1.0", reg.addr);
    let info2 = timed(store.pull(&v2, &insecure(&reg))).await.unwrap();
    let raw = store.content().read(&info2.manifest_digest).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(json["mediaType"], images::image::MT_DOCKER_MANIFEST);
    let (lower_v2, _) = store.rootfs_layers(&v2).await.unwrap();
    assert_eq!(lower_v2, lower, "same diff ids, same snapshot");

    let tarball = work.path().join("busybox.tar");
    testutil::tar_dir(&layout, &tarball);
    let opts = ImportOptions {
        base_name: Some("busybox".into()),
        ..Default::default()
    };
    let got = timed(store.import(&tarball, &opts)).await.unwrap();
    assert_eq!(got[0].name, "docker.io/library/busybox:1.0");
    let (lower2, _) = store.rootfs_layers("busybox:1.0").await.unwrap();
    assert_eq!(lower, lower2);
}
