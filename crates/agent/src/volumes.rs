//! Volumes as host directories the runtime bind-mounts: `emptyDir` (a directory per
//! pod under `<data-dir>/agent/pods/<uid>/volumes/`), `hostPath` (with its `type`
//! checks), and the volumes whose files the kubelet reads from the API (configMap,
//! secret, downwardAPI, projected), written here as upstream's atomic writer lays
//! them out: the files in a timestamped directory, `..data` pointing at it, and each
//! top-level name a symlink through `..data` — so an update swaps one symlink and a
//! reader never sees half of it. Those mounts are read-only, as upstream's.

use std::path::{Component, Path, PathBuf};

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use kubelet::volumes::VolumeFile;
use runtime::MountSpec;

/// Why a container's volumes cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume mount {0:?} names no volume of the pod")]
    Missing(String),
    #[error("volume {name}: {kind} volumes are not supported on this node yet")]
    Unsupported { name: String, kind: &'static str },
    #[error("volume {name}: hostPath {path}: {reason}")]
    HostPath {
        name: String,
        path: String,
        reason: String,
    },
    #[error("volume {name}: subPath {sub:?} must be a relative path without '..'")]
    SubPath { name: String, sub: String },
    #[error("pod uid {0:?} is not usable as a directory name")]
    BadUid(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VolumeError {
    let what = what.into();
    move |source| VolumeError::Io { what, source }
}

fn pod_dir(pods: &Path, uid: &str) -> Result<PathBuf, VolumeError> {
    if uid.is_empty() || uid.contains('/') || uid.starts_with('.') {
        return Err(VolumeError::BadUid(uid.to_string()));
    }
    Ok(pods.join(uid))
}

/// Removes the pod's volume directories (emptyDirs); missing is fine.
pub fn remove_pod_dir(pods: &Path, uid: &str) -> Result<(), VolumeError> {
    let dir = pod_dir(pods, uid)?;
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("remove {}", dir.display()))(e)),
    }
}

fn kind_of(v: &Volume) -> &'static str {
    if v.config_map.is_some() {
        "configMap"
    } else if v.secret.is_some() {
        "secret"
    } else if v.projected.is_some() {
        "projected"
    } else if v.downward_api.is_some() {
        "downwardAPI"
    } else if v.persistent_volume_claim.is_some() {
        "persistentVolumeClaim"
    } else {
        "this kind of"
    }
}

fn host_path_dir(
    name: &str,
    hp: &k8s_openapi::api::core::v1::HostPathVolumeSource,
) -> Result<PathBuf, VolumeError> {
    let path = PathBuf::from(&hp.path);
    let fail = |reason: &str| VolumeError::HostPath {
        name: name.to_string(),
        path: hp.path.clone(),
        reason: reason.to_string(),
    };
    if !path.is_absolute() {
        return Err(fail("must be an absolute path"));
    }
    let meta = std::fs::metadata(&path);
    match hp.type_.as_deref().unwrap_or("") {
        "" => {}
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(&path).map_err(io(format!("create {}", hp.path)))?;
            }
        }
        "Directory" => {
            if !meta.is_ok_and(|m| m.is_dir()) {
                return Err(fail("is not a directory"));
            }
        }
        "FileOrCreate" => {
            if meta.is_err() {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(io(format!("create {}", parent.display())))?;
                }
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(io(format!("create {}", hp.path)))?;
            }
        }
        "File" => {
            if !meta.is_ok_and(|m| m.is_file()) {
                return Err(fail("is not a file"));
            }
        }
        "Socket" | "CharDevice" | "BlockDevice" => {
            if meta.is_err() {
                return Err(fail("does not exist"));
            }
        }
        other => return Err(fail(&format!("unknown type {other:?}"))),
    }
    Ok(path)
}

/// Writes a volume's files into `dir` the way upstream's atomic writer does (see the
/// module docs); rewriting with the same files changes nothing visible, with other
/// files swaps `..data` in one rename and drops names no longer present.
pub fn write_atomic(dir: &Path, files: &[VolumeFile]) -> Result<(), VolumeError> {
    std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    let data_link = dir.join("..data");
    // Same contents: nothing to do (a rewrite would bump mtimes for readers).
    if let Ok(current) = std::fs::read_link(&data_link)
        && same_contents(&dir.join(&current), files)
    {
        return Ok(());
    }
    let stamp = format!(
        "..{}.{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
        std::process::id()
    );
    let ts_dir = dir.join(&stamp);
    std::fs::create_dir(&ts_dir).map_err(io(format!("create {}", ts_dir.display())))?;
    let mut top: Vec<String> = Vec::new();
    for f in files {
        let rel = Path::new(&f.path);
        if rel.is_absolute()
            || rel.components().any(|c| !matches!(c, Component::Normal(_)))
            || f.path.starts_with("..")
        {
            let _ = std::fs::remove_dir_all(&ts_dir);
            return Err(VolumeError::SubPath {
                name: dir.display().to_string(),
                sub: f.path.clone(),
            });
        }
        let target = ts_dir.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(format!("create {}", parent.display())))?;
        }
        std::fs::write(&target, &f.data).map_err(io(format!("write {}", target.display())))?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(f.mode))
            .map_err(io(format!("chmod {}", target.display())))?;
        if let Some(std::path::Component::Normal(first)) = rel.components().next() {
            let first = first.to_string_lossy().into_owned();
            if !top.contains(&first) {
                top.push(first);
            }
        }
    }
    let old = std::fs::read_link(&data_link).ok();
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link)
        .map_err(io(format!("symlink {}", tmp_link.display())))?;
    std::fs::rename(&tmp_link, &data_link)
        .map_err(io(format!("rename {}", data_link.display())))?;
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link)
                .map_err(io(format!("symlink {}", link.display())))?;
        }
    }
    // Names gone from the new contents, and the previous timestamped directory.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !n.starts_with("..") && !top.contains(&n) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Some(old) = old.filter(|o| o.as_os_str() != stamp.as_str()) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

fn same_contents(dir: &Path, files: &[VolumeFile]) -> bool {
    let mut count = 0usize;
    fn walk(d: &Path, n: &mut usize) {
        if let Ok(es) = std::fs::read_dir(d) {
            for e in es.flatten() {
                match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path(), n),
                    Ok(_) => *n += 1,
                    Err(_) => {}
                }
            }
        }
    }
    walk(dir, &mut count);
    count == files.len()
        && files.iter().all(|f| {
            let p = dir.join(&f.path);
            std::fs::read(&p).is_ok_and(|d| d == f.data)
                && std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o7777 == f.mode)
        })
}

/// Rewrite the API-sourced volumes of a running pod with new contents (atomic swap,
/// see [`write_atomic`]); volumes whose directory does not exist yet (no container
/// mounted them) are left for container creation, so a pod being removed is not
/// recreated on disk. `subPath` mounts keep what they were bound to, as upstream.
pub fn update_api_volumes(
    pods: &Path,
    pod: &Pod,
    files: &BTreeMap<String, Vec<VolumeFile>>,
) -> Result<(), VolumeError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let volumes: &[Volume] = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or(&[]);
    for (name, contents) in files {
        let Some(v) = volumes
            .iter()
            .find(|v| &v.name == name && kubelet::volumes::is_api_volume(v))
        else {
            continue;
        };
        let d = pod_dir(pods, &uid)?
            .join("volumes")
            .join(kind_of(v))
            .join(&v.name);
        if std::fs::symlink_metadata(d.join("..data")).is_ok() {
            write_atomic(&d, contents)?;
        }
    }
    Ok(())
}

/// The bind mounts of one container, preparing emptyDirs on the way.
pub fn mounts_for(
    pods: &Path,
    pod: &Pod,
    c: &Container,
    files: &BTreeMap<String, Vec<VolumeFile>>,
) -> Result<Vec<MountSpec>, VolumeError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let volumes: &[Volume] = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or(&[]);
    let mut out = Vec::new();
    for vm in c.volume_mounts.iter().flatten() {
        let v = volumes
            .iter()
            .find(|v| v.name == vm.name)
            .ok_or_else(|| VolumeError::Missing(vm.name.clone()))?;
        let mut api_volume = false;
        let mut host = if v.empty_dir.is_some() {
            let d = pod_dir(pods, &uid)?
                .join("volumes")
                .join("empty-dir")
                .join(&v.name);
            std::fs::create_dir_all(&d).map_err(io(format!("create {}", d.display())))?;
            d
        } else if let Some(hp) = &v.host_path {
            host_path_dir(&v.name, hp)?
        } else if kubelet::volumes::is_api_volume(v) {
            let Some(contents) = files.get(&v.name) else {
                return Err(VolumeError::Unsupported {
                    name: v.name.clone(),
                    kind: kind_of(v),
                });
            };
            let d = pod_dir(pods, &uid)?
                .join("volumes")
                .join(kind_of(v))
                .join(&v.name);
            write_atomic(&d, contents)?;
            api_volume = true;
            d
        } else {
            return Err(VolumeError::Unsupported {
                name: v.name.clone(),
                kind: kind_of(v),
            });
        };
        if let Some(sub) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
            let p = Path::new(sub);
            if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
                return Err(VolumeError::SubPath {
                    name: v.name.clone(),
                    sub: sub.to_string(),
                });
            }
            host = host.join(p);
            if !host.exists() && !api_volume {
                std::fs::create_dir_all(&host).map_err(io(format!("create {}", host.display())))?;
            }
        }
        out.push(MountSpec {
            host_path: host,
            container_path: vm.mount_path.clone(),
            readonly: api_volume || vm.read_only.unwrap_or(false),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, PodSpec, VolumeMount};

    #[test]
    fn empty_dirs_are_made_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let pod = Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                volumes: Some(vec![Volume {
                    name: "scratch".into(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = Container {
            name: "c".into(),
            volume_mounts: Some(vec![VolumeMount {
                name: "scratch".into(),
                mount_path: "/data".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let m = mounts_for(tmp.path(), &pod, &c, &BTreeMap::new()).unwrap();
        assert_eq!(m.len(), 1);
        assert!(m[0].host_path.is_dir());
        assert_eq!(m[0].container_path, "/data");
        remove_pod_dir(tmp.path(), "u1").unwrap();
        assert!(!m[0].host_path.exists());

        let bad = Container {
            name: "c".into(),
            volume_mounts: Some(vec![VolumeMount {
                name: "nope".into(),
                mount_path: "/x".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert!(matches!(
            mounts_for(tmp.path(), &pod, &bad, &BTreeMap::new()),
            Err(VolumeError::Missing(_))
        ));
        assert!(matches!(
            remove_pod_dir(tmp.path(), "../x"),
            Err(VolumeError::BadUid(_))
        ));
    }

    #[test]
    fn api_volume_files_are_swapped_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("cfg");
        let f = |path: &str, data: &str, mode: u32| VolumeFile {
            path: path.into(),
            data: data.as_bytes().to_vec(),
            mode,
        };
        write_atomic(&d, &[f("a", "1", 0o644), f("sub/b", "2", 0o400)]).unwrap();
        assert_eq!(std::fs::read_to_string(d.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(d.join("sub/b")).unwrap(), "2");
        assert_eq!(
            std::fs::metadata(d.join("sub/b"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o400
        );
        assert!(std::fs::symlink_metadata(d.join("a")).unwrap().is_symlink());
        let first = std::fs::read_link(d.join("..data")).unwrap();
        // Same contents: untouched.
        write_atomic(&d, &[f("a", "1", 0o644), f("sub/b", "2", 0o400)]).unwrap();
        assert_eq!(std::fs::read_link(d.join("..data")).unwrap(), first);
        // New contents: swapped, removed names gone, the old directory removed.
        write_atomic(&d, &[f("a", "3", 0o644)]).unwrap();
        assert_eq!(std::fs::read_to_string(d.join("a")).unwrap(), "3");
        assert!(std::fs::symlink_metadata(d.join("sub")).is_err());
        assert!(!d.join(&first).exists());
        // Escaping paths are refused.
        assert!(write_atomic(&d, &[f("../x", "", 0o644)]).is_err());
    }

    #[test]
    fn running_pods_volumes_are_updated_in_place_only() {
        let tmp = tempfile::tempdir().unwrap();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"uid": "u1"},
            "spec": {"containers": [], "volumes": [
                {"name": "cfg", "configMap": {"name": "c"}},
                {"name": "other", "secret": {"secretName": "s"}}]}
        }))
        .unwrap();
        let f = |data: &str| {
            vec![VolumeFile {
                path: "k".into(),
                data: data.as_bytes().to_vec(),
                mode: 0o644,
            }]
        };
        let dir = tmp.path().join("u1/volumes/configMap/cfg");
        write_atomic(&dir, &f("old")).unwrap();
        let files = BTreeMap::from([("cfg".to_string(), f("new")), ("other".to_string(), f("x"))]);
        update_api_volumes(tmp.path(), &pod, &files).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("k")).unwrap(), "new");
        // Not set up yet: not created.
        assert!(!tmp.path().join("u1/volumes/secret").exists());
        // A removed pod stays removed.
        remove_pod_dir(tmp.path(), "u1").unwrap();
        update_api_volumes(tmp.path(), &pod, &files).unwrap();
        assert!(!tmp.path().join("u1").exists());
    }
}
