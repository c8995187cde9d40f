//! Volumes as host directories the runtime bind-mounts: `emptyDir` (a directory per
//! pod under `<data-dir>/agent/pods/<uid>/volumes/`) and `hostPath` (with its `type`
//! checks). Volumes whose contents come from the API (configMap, secret, downwardAPI,
//! projected) are refused with a clear error until the kubelet fills them.

use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, Volume};
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

/// The bind mounts of one container, preparing emptyDirs on the way.
pub fn mounts_for(pods: &Path, pod: &Pod, c: &Container) -> Result<Vec<MountSpec>, VolumeError> {
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
        let mut host = if v.empty_dir.is_some() {
            let d = pod_dir(pods, &uid)?
                .join("volumes")
                .join("empty-dir")
                .join(&v.name);
            std::fs::create_dir_all(&d).map_err(io(format!("create {}", d.display())))?;
            d
        } else if let Some(hp) = &v.host_path {
            host_path_dir(&v.name, hp)?
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
            if !host.exists() {
                std::fs::create_dir_all(&host).map_err(io(format!("create {}", host.display())))?;
            }
        }
        out.push(MountSpec {
            host_path: host,
            container_path: vm.mount_path.clone(),
            readonly: vm.read_only.unwrap_or(false),
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
        let m = mounts_for(tmp.path(), &pod, &c).unwrap();
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
            mounts_for(tmp.path(), &pod, &bad),
            Err(VolumeError::Missing(_))
        ));
        assert!(matches!(
            remove_pod_dir(tmp.path(), "../x"),
            Err(VolumeError::BadUid(_))
        ));
    }
}
