//! Layer unpacking: a (gzip, zstd or plain) tar layer into one overlayfs snapshot
//! directory, with OCI whiteouts converted to overlayfs form and path traversal refused.
//!
//! `tar` does the file creation (modes, ownership, mtimes, xattrs, symlinks, hard links);
//! this module adds what it lacks: whiteout conversion, device nodes and FIFOs (tar 0.4
//! writes them as empty files), strict refusal of `..` and of writing through symlinks
//! (tar silently skips `..` entries), and the uncompressed digest (diff id) check.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::content::Digest;

/// Errors of layer unpacking.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// An entry would land outside the snapshot or write through a symlink.
    #[error("layer entry {entry:?} refused: {reason}")]
    Traversal {
        /// The entry's path in the tar.
        entry: String,
        /// Why.
        reason: String,
    },
    /// The uncompressed layer does not hash to the diff id of the image config.
    #[error("layer diff id mismatch: config says {expected}, layer content hashes to {actual}")]
    DiffIdMismatch {
        /// From the image config.
        expected: Digest,
        /// Computed.
        actual: Digest,
    },
    /// The filesystem is full.
    #[error("no space left on device while {context}")]
    NoSpace {
        /// What was being written.
        context: String,
    },
    /// Reading the archive or writing a file failed.
    #[error("{context}: {}", crate::content::error_chain(source))]
    Io {
        /// What was being done.
        context: String,
        /// The failure.
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>, source: io::Error) -> UnpackError {
    let context = context.into();
    if crate::content::is_enospc(&source) {
        UnpackError::NoSpace { context }
    } else {
        UnpackError::Io { context, source }
    }
}

type Result<T> = std::result::Result<T, UnpackError>;

/// The overlayfs-specific side effects of unpacking, behind a trait so that whiteout
/// conversion is testable without root.
pub trait OverlayOps {
    /// Marks `path` as deleted: a character device 0:0.
    fn whiteout(&self, path: &Path) -> io::Result<()>;
    /// Marks directory `dir` opaque: xattr `trusted.overlay.opaque=y`.
    fn set_opaque(&self, dir: &Path) -> io::Result<()>;
}

/// The real overlayfs operations (need CAP_MKNOD and CAP_SYS_ADMIN).
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelOverlay;

impl OverlayOps for KernelOverlay {
    fn whiteout(&self, path: &Path) -> io::Result<()> {
        use nix::sys::stat::{Mode, SFlag, makedev, mknod};
        mknod(path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(io::Error::from)
    }
    fn set_opaque(&self, dir: &Path) -> io::Result<()> {
        xattr::set(dir, "trusted.overlay.opaque", b"y")
    }
}

/// How to unpack.
#[derive(Debug, Clone, Copy)]
pub struct UnpackOptions {
    /// Keep the uid/gid of entries (needs root).
    pub same_owner: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        Self {
            same_owner: nix::unistd::geteuid().is_root(),
        }
    }
}

/// Which compression a layer uses, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// Detects the compression from magic bytes.
    pub fn detect(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Wraps `reader` in the decompressor its magic bytes call for.
pub fn decompress<'a>(reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(256 * 1024, reader);
    let kind = Compression::detect(br.fill_buf()?);
    Ok(match kind {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(br)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(br)?),
        Compression::None => Box::new(br),
    })
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Normalises an entry path to a relative path inside the snapshot: leading `/` and
/// `./` are dropped (as Docker does), `..` anywhere is refused. `None` for the root.
pub fn sanitize_entry_path(p: &Path) -> Result<Option<PathBuf>> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                return Err(UnpackError::Traversal {
                    entry: p.display().to_string(),
                    reason: "path contains '..'".into(),
                });
            }
            Component::Prefix(_) => {
                return Err(UnpackError::Traversal {
                    entry: p.display().to_string(),
                    reason: "unsupported path prefix".into(),
                });
            }
        }
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

/// Refuses `rel` if any of its parent directories inside `root` is a symlink: writing
/// through it could land outside the snapshot (e.g. `etc -> /etc` then `etc/passwd`).
fn check_parents(root: &Path, rel: &Path, entry: &Path) -> Result<()> {
    let mut cur = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(UnpackError::Traversal {
                        entry: entry.display().to_string(),
                        reason: format!(
                            "parent {} is a symlink",
                            cur.strip_prefix(root).unwrap_or(&cur).display()
                        ),
                    });
                }
                Ok(m) if !m.is_dir() => {
                    return Err(UnpackError::Traversal {
                        entry: entry.display().to_string(),
                        reason: format!(
                            "parent {} is not a directory",
                            cur.strip_prefix(root).unwrap_or(&cur).display()
                        ),
                    });
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    Ok(())
}

fn remove_any(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Unpacks one layer (compressed or not) into `dest` (an existing empty directory),
/// converting whiteouts with `ops`. Returns the layer's diff id (sha256 of the tar).
pub fn unpack_layer(
    reader: impl Read,
    dest: &Path,
    ops: &dyn OverlayOps,
    opts: UnpackOptions,
) -> Result<Digest> {
    let stream = decompress(reader).map_err(|e| io_err("reading layer header", e))?;
    let hashing = HashingReader {
        inner: stream,
        hasher: Sha256::new(),
    };
    let mut archive = tar::Archive::new(hashing);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(opts.same_owner);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(opts.same_owner);
    archive.set_overwrite(true);
    // Directory mtimes are restored at the end: creating entries inside changes them.
    let mut dir_times: Vec<(PathBuf, u64)> = Vec::new();
    {
        let entries = archive
            .entries()
            .map_err(|e| io_err("reading layer tar", e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| io_err("reading layer tar entry", e))?;
            let raw = entry
                .path()
                .map_err(|e| io_err("reading layer tar entry path", e))?
                .into_owned();
            let Some(rel) = sanitize_entry_path(&raw)? else {
                continue;
            };
            check_parents(dest, &rel, &raw)?;
            let name = rel
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let parent = dest.join(rel.parent().unwrap_or(Path::new("")));
            if let Some(target) = name.strip_prefix(".wh.") {
                fs::create_dir_all(&parent)
                    .map_err(|e| io_err(format!("creating {}", parent.display()), e))?;
                if target == ".wh..opq" {
                    ops.set_opaque(&parent)
                        .map_err(|e| io_err(format!("marking {} opaque", parent.display()), e))?;
                } else if target.is_empty() || target == "." || target == ".." {
                    return Err(UnpackError::Traversal {
                        entry: raw.display().to_string(),
                        reason: "invalid whiteout name".into(),
                    });
                } else if target.starts_with(".wh.") {
                    // Other AUFS metadata (.wh..wh.plnk etc.): not content, ignored.
                } else {
                    let p = parent.join(target);
                    remove_any(&p).map_err(|e| io_err(format!("replacing {}", p.display()), e))?;
                    ops.whiteout(&p)
                        .map_err(|e| io_err(format!("creating whiteout {}", p.display()), e))?;
                }
                continue;
            }
            let header = entry.header().clone();
            let kind = header.entry_type();
            if kind.is_hard_link() {
                let link = entry
                    .link_name()
                    .map_err(|e| io_err(format!("reading link of {}", raw.display()), e))?
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                let Some(link_rel) =
                    sanitize_entry_path(&link).map_err(|_| UnpackError::Traversal {
                        entry: raw.display().to_string(),
                        reason: format!("hard link target {} contains '..'", link.display()),
                    })?
                else {
                    return Err(UnpackError::Traversal {
                        entry: raw.display().to_string(),
                        reason: "hard link to the root".into(),
                    });
                };
                check_parents(dest, &link_rel, &raw)?;
            }
            let target = dest.join(&rel);
            if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
                make_special(&target, &header, opts)
                    .map_err(|e| io_err(format!("creating device {}", raw.display()), e))?;
                continue;
            }
            if kind.is_dir()
                && let Ok(m) = header.mtime()
            {
                dir_times.push((target.clone(), m));
            }
            // An entry replaces whatever is there (overwrite semantics of tar), except that
            // a directory entry keeps an existing directory. In particular a directory
            // entry over a symlink must not follow it (tar would chmod the target).
            if let Ok(m) = fs::symlink_metadata(&target)
                && (kind.is_dir() != m.is_dir())
            {
                remove_any(&target)
                    .map_err(|e| io_err(format!("replacing {}", target.display()), e))?;
            }
            let unpacked = entry
                .unpack_in(dest)
                .map_err(|e| io_err(format!("unpacking {}", raw.display()), e))?;
            if !unpacked {
                return Err(UnpackError::Traversal {
                    entry: raw.display().to_string(),
                    reason: "outside the snapshot".into(),
                });
            }
        }
    }
    for (dir, mtime) in dir_times.iter().rev() {
        let t = filetime_from(*mtime);
        let _ = nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            dir,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        );
    }
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| io_err("reading layer trailer", e))?;
    Ok(Digest::from_hasher(rest.hasher))
}

fn filetime_from(secs: u64) -> nix::sys::time::TimeSpec {
    nix::sys::time::TimeSpec::new(secs as i64, 0)
}

fn make_special(target: &Path, header: &tar::Header, opts: UnpackOptions) -> io::Result<()> {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    let kind = header.entry_type();
    let sflag = if kind.is_character_special() {
        SFlag::S_IFCHR
    } else if kind.is_block_special() {
        SFlag::S_IFBLK
    } else {
        SFlag::S_IFIFO
    };
    let major = header.device_major()?.unwrap_or(0);
    let minor = header.device_minor()?.unwrap_or(0);
    let mode = header.mode()? & 0o7777;
    remove_any(target)?;
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)?;
    }
    mknod(
        target,
        sflag,
        Mode::from_bits_truncate(mode),
        makedev(major.into(), minor.into()),
    )
    .map_err(io::Error::from)?;
    if opts.same_owner {
        let uid = header.uid()? as u32;
        let gid = header.gid()? as u32;
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            target,
            Some(uid.into()),
            Some(gid.into()),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(io::Error::from)?;
    }
    fs::set_permissions(target, fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Recorder {
        whiteouts: RefCell<Vec<PathBuf>>,
        opaque: RefCell<Vec<PathBuf>>,
    }

    impl OverlayOps for Recorder {
        fn whiteout(&self, path: &Path) -> io::Result<()> {
            self.whiteouts.borrow_mut().push(path.to_path_buf());
            Ok(())
        }
        fn set_opaque(&self, dir: &Path) -> io::Result<()> {
            self.opaque.borrow_mut().push(dir.to_path_buf());
            Ok(())
        }
    }

    fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        h
    }

    /// Raw-writes a path into the header so that `..` survives (tar's builder refuses it).
    fn raw_entry(b: &mut tar::Builder<Vec<u8>>, path: &str, kind: tar::EntryType, link: &str) {
        let mut h = header(kind, 0, 0o644);
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        if !link.is_empty() {
            let l = &mut h.as_old_mut().linkname;
            l[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        b.append(&h, io::empty()).unwrap();
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = header(tar::EntryType::Regular, data.len() as u64, 0o644);
        b.append_data(&mut h, path, data).unwrap();
    }

    fn opts() -> UnpackOptions {
        UnpackOptions { same_owner: false }
    }

    #[test]
    fn whiteouts_become_overlay_markers() {
        let mut b = tar::Builder::new(Vec::new());
        let mut d = header(tar::EntryType::Directory, 0, 0o755);
        b.append_data(&mut d, "etc/", io::empty()).unwrap();
        file(&mut b, "etc/.wh.passwd", b"");
        file(&mut b, "opt/app/.wh..wh..opq", b"");
        file(&mut b, "opt/app/new", b"new");
        file(&mut b, "./.wh.gone-dir", b"");
        let tar_bytes = b.into_inner().unwrap();
        let diff = Digest::of(&tar_bytes);

        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("gone-dir")).unwrap();
        let rec = Recorder::default();
        let got = unpack_layer(&tar_bytes[..], dir.path(), &rec, opts()).unwrap();
        assert_eq!(got, diff);
        assert_eq!(
            *rec.whiteouts.borrow(),
            vec![dir.path().join("etc/passwd"), dir.path().join("gone-dir")]
        );
        assert!(!dir.path().join("gone-dir").exists());
        assert_eq!(*rec.opaque.borrow(), vec![dir.path().join("opt/app")]);
        assert_eq!(fs::read(dir.path().join("opt/app/new")).unwrap(), b"new");
        assert!(!dir.path().join("etc/.wh.passwd").exists());
        assert!(!dir.path().join("opt/app/.wh..wh..opq").exists());
    }

    #[test]
    fn compressed_layers_and_links() {
        let mut b = tar::Builder::new(Vec::new());
        file(&mut b, "bin/busybox", b"#!binary");
        let mut l = header(tar::EntryType::Symlink, 0, 0o777);
        b.append_link(&mut l, "bin/sh", "/bin/busybox").unwrap();
        let mut h = header(tar::EntryType::Link, 0, 0o644);
        b.append_link(&mut h, "bin/hard", "bin/busybox").unwrap();
        let tar_bytes = b.into_inner().unwrap();
        let diff = Digest::of(&tar_bytes);

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar_bytes).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&tar_bytes[..], 1).unwrap();
        for (name, data) in [("plain", &tar_bytes), ("gzip", &gz), ("zstd", &zst)] {
            let dir = tempfile::tempdir().unwrap();
            let got = unpack_layer(&data[..], dir.path(), &Recorder::default(), opts()).unwrap();
            assert_eq!(got, diff, "{name}");
            assert_eq!(
                fs::read_link(dir.path().join("bin/sh")).unwrap(),
                Path::new("/bin/busybox")
            );
            assert_eq!(fs::read(dir.path().join("bin/hard")).unwrap(), b"#!binary");
        }
        assert_eq!(Compression::detect(&gz), Compression::Gzip);
        assert_eq!(Compression::detect(&zst), Compression::Zstd);
        assert_eq!(Compression::detect(&tar_bytes), Compression::None);
    }

    #[test]
    fn path_traversal_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        type Build = Box<dyn Fn(&mut tar::Builder<Vec<u8>>)>;
        let cases: Vec<(&str, Build)> = vec![
            (
                "dotdot",
                Box::new(|b| raw_entry(b, "a/../../evil", tar::EntryType::Regular, "")),
            ),
            (
                "hardlink out",
                Box::new(|b| raw_entry(b, "h", tar::EntryType::Link, "../../etc/passwd")),
            ),
            (
                "through absolute symlink",
                Box::new({
                    let target = outside.path().display().to_string();
                    move |b| {
                        let mut l = header(tar::EntryType::Symlink, 0, 0o777);
                        b.append_link(&mut l, "escape", &target).unwrap();
                        file(b, "escape/pwned", b"x");
                    }
                }),
            ),
            (
                "through relative symlink",
                Box::new(|b| {
                    let mut l = header(tar::EntryType::Symlink, 0, 0o777);
                    b.append_link(&mut l, "up", "../..").unwrap();
                    file(b, "up/pwned", b"x");
                }),
            ),
        ];
        for (name, build) in cases {
            let mut b = tar::Builder::new(Vec::new());
            build(&mut b);
            let bytes = b.into_inner().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let err =
                unpack_layer(&bytes[..], dir.path(), &Recorder::default(), opts()).expect_err(name);
            assert!(
                matches!(err, UnpackError::Traversal { .. }),
                "{name}: {err}"
            );
            assert!(err.to_string().contains("refused"), "{name}: {err}");
        }
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn file_over_symlink_replaces_the_link_not_its_target() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, b"original").unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut l = header(tar::EntryType::Symlink, 0, 0o777);
        b.append_link(&mut l, "f", &victim).unwrap();
        file(&mut b, "f", b"overwritten");
        let bytes = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        unpack_layer(&bytes[..], dir.path(), &Recorder::default(), opts()).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"original");
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"overwritten");
        assert!(
            !fs::symlink_metadata(dir.path().join("f"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn directory_over_symlink_does_not_touch_the_target() {
        use std::os::unix::fs::PermissionsExt;
        let outside = tempfile::tempdir().unwrap();
        fs::set_permissions(outside.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut l = header(tar::EntryType::Symlink, 0, 0o777);
        b.append_link(&mut l, "d", outside.path()).unwrap();
        let mut d = header(tar::EntryType::Directory, 0, 0o777);
        b.append_data(&mut d, "d/", io::empty()).unwrap();
        let bytes = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        unpack_layer(&bytes[..], dir.path(), &Recorder::default(), opts()).unwrap();
        let mode = fs::metadata(outside.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(fs::symlink_metadata(dir.path().join("d")).unwrap().is_dir());
    }

    #[test]
    fn sanitize_paths() {
        assert_eq!(
            sanitize_entry_path(Path::new("/etc/passwd")).unwrap(),
            Some(PathBuf::from("etc/passwd"))
        );
        assert_eq!(
            sanitize_entry_path(Path::new("./a/./b")).unwrap(),
            Some(PathBuf::from("a/b"))
        );
        assert_eq!(sanitize_entry_path(Path::new("./")).unwrap(), None);
        assert!(sanitize_entry_path(Path::new("a/../b")).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = [0x1f, 0x8b, 1, 2, 3, 4, 5];
        let err = unpack_layer(&garbage[..], dir.path(), &Recorder::default(), opts());
        assert!(err.is_err());
        let junk = [7u8; 1000];
        assert!(unpack_layer(&junk[..], dir.path(), &Recorder::default(), opts()).is_err());
    }
}
