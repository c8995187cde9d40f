//! Contents of the volumes whose files come from the API: `configMap`, `secret`,
//! `downwardAPI` and `projected` (configMap, secret and downwardAPI sources). The
//! kubelet computes the files (path, bytes, mode) as upstream lays them out; the
//! runtime only writes them under the pod's directory and bind-mounts them.
//!
//! `serviceAccountToken` projections get a token bound to the pod from the TokenRequest
//! API (through [`VolumeSource::service_account_token`], the worker's
//! [`crate::tokens::TokenManager`]), with the projected volume's mode.
//!
//! The worker calls [`pod_volume_files`] again every `syncFrequency` while the pod
//! runs and hands the result to the runtime, which swaps the files in place: edits of a
//! ConfigMap or Secret, and refreshed tokens, reach running containers (but not
//! `subPath` mounts, as upstream).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, KeyToPath, Pod, ResourceFieldSelector, Volume,
};

/// One file of a volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeFile {
    /// Path relative to the volume's root (`key`, or an item's `path`, may contain `/`).
    pub path: String,
    pub data: Vec<u8>,
    /// Permission bits (`defaultMode`/`mode`, 0644 by default).
    pub mode: u32,
}

/// Default file mode of configMap/secret/downwardAPI/projected volumes (upstream 0644).
pub const DEFAULT_MODE: u32 = 0o644;

/// Where the kubelet reads API objects for volumes.
#[async_trait::async_trait]
pub trait VolumeSource: Send + Sync {
    /// A config map's `data` and `binaryData` (`None`: not found).
    async fn config_map(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String>;
    /// A secret's `data` (`None`: not found).
    async fn secret(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String>;
    /// A service-account token for the pod (`audience` empty: the API server's).
    async fn service_account_token(
        &self,
        pod: &Pod,
        audience: &str,
        expiration_seconds: i64,
    ) -> Result<Vec<u8>, String>;
    /// A downward API `fieldRef` value of the pod.
    fn field(&self, pod: &Pod, path: &str) -> String;
    /// A downward API `resourceFieldRef` value.
    fn resource(&self, c: &Container, r: &ResourceFieldSelector) -> Result<String, String>;
}

/// Whether the volume's contents come from the API.
pub fn is_api_volume(v: &Volume) -> bool {
    v.config_map.is_some()
        || v.secret.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
}

/// A relative path without `..`, as upstream validates item paths.
fn check_path(volume: &str, path: &str) -> Result<(), String> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.split('/').any(|c| c == ".." || c.is_empty())
        || path.starts_with("..");
    if bad {
        return Err(format!(
            "volume {volume}: invalid path {path:?}: must be relative, without '..'"
        ));
    }
    Ok(())
}

fn mode_of(m: Option<i32>, default: u32) -> u32 {
    m.map(|m| (m as u32) & 0o7777).unwrap_or(default)
}

/// A config map or secret referenced by a volume (or a projected source).
struct KeySource<'a> {
    /// `configmap` or `secret`.
    kind: &'static str,
    name: &'a str,
    items: Option<&'a [KeyToPath]>,
    mode: u32,
    optional: bool,
}

/// `items` projection of a key/value map: all keys, or the listed ones (a missing
/// listed key is an error unless the source is optional).
fn project(
    volume: &str,
    src: &KeySource,
    data: &BTreeMap<String, Vec<u8>>,
    out: &mut Vec<VolumeFile>,
) -> Result<(), String> {
    match src.items {
        None | Some([]) => {
            for (k, v) in data {
                out.push(VolumeFile {
                    path: k.clone(),
                    data: v.clone(),
                    mode: src.mode,
                });
            }
        }
        Some(items) => {
            for it in items {
                check_path(volume, &it.path)?;
                match data.get(&it.key) {
                    Some(v) => out.push(VolumeFile {
                        path: it.path.clone(),
                        data: v.clone(),
                        mode: mode_of(it.mode, src.mode),
                    }),
                    None if src.optional => {}
                    None => {
                        let what = if src.kind == "configmap" {
                            "config"
                        } else {
                            "secret"
                        };
                        return Err(format!(
                            "{} {:?} references non-existent {what} key: {}",
                            src.kind, src.name, it.key
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

fn downward(
    src: &dyn VolumeSource,
    volume: &str,
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    mode: u32,
    out: &mut Vec<VolumeFile>,
) -> Result<(), String> {
    for it in items {
        check_path(volume, &it.path)?;
        let value = if let Some(f) = &it.field_ref {
            src.field(pod, &f.field_path)
        } else if let Some(r) = &it.resource_field_ref {
            let containers = pod
                .spec
                .as_ref()
                .map(|s| s.containers.as_slice())
                .unwrap_or_default();
            let name = r.container_name.as_deref().unwrap_or_default();
            let c = containers
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| format!("volume {volume}: container {name:?} not found"))?;
            src.resource(c, r)?
        } else {
            String::new()
        };
        out.push(VolumeFile {
            path: it.path.clone(),
            data: value.into_bytes(),
            mode: mode_of(it.mode, mode),
        });
    }
    Ok(())
}

async fn key_files(
    src: &dyn VolumeSource,
    ns: &str,
    volume: &str,
    key: KeySource<'_>,
    out: &mut Vec<VolumeFile>,
) -> Result<(), String> {
    let data = if key.kind == "configmap" {
        src.config_map(ns, key.name).await?
    } else {
        src.secret(ns, key.name).await?
    };
    match data {
        Some(data) => project(volume, &key, &data, out),
        None if key.optional => Ok(()),
        None => Err(format!("{} \"{}\" not found", key.kind, key.name)),
    }
}

/// The files of one API-sourced volume (`Ok(None)` for other kinds).
pub async fn volume_files(
    src: &dyn VolumeSource,
    pod: &Pod,
    v: &Volume,
) -> Result<Option<Vec<VolumeFile>>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = Vec::new();
    let name = v.name.as_str();
    if let Some(cm) = &v.config_map {
        let key = KeySource {
            kind: "configmap",
            name: &cm.name,
            items: cm.items.as_deref(),
            mode: mode_of(cm.default_mode, DEFAULT_MODE),
            optional: cm.optional == Some(true),
        };
        key_files(src, ns, name, key, &mut out).await?;
    } else if let Some(s) = &v.secret {
        let key = KeySource {
            kind: "secret",
            name: s.secret_name.as_deref().unwrap_or_default(),
            items: s.items.as_deref(),
            mode: mode_of(s.default_mode, DEFAULT_MODE),
            optional: s.optional == Some(true),
        };
        key_files(src, ns, name, key, &mut out).await?;
    } else if let Some(d) = &v.downward_api {
        let mode = mode_of(d.default_mode, DEFAULT_MODE);
        let items = d.items.as_deref().unwrap_or_default();
        downward(src, name, pod, items, mode, &mut out)?;
    } else if let Some(p) = &v.projected {
        let mode = mode_of(p.default_mode, DEFAULT_MODE);
        for s in p.sources.iter().flatten() {
            if let Some(cm) = &s.config_map {
                let key = KeySource {
                    kind: "configmap",
                    name: &cm.name,
                    items: cm.items.as_deref(),
                    mode,
                    optional: cm.optional == Some(true),
                };
                key_files(src, ns, name, key, &mut out).await?;
            } else if let Some(sec) = &s.secret {
                let key = KeySource {
                    kind: "secret",
                    name: &sec.name,
                    items: sec.items.as_deref(),
                    mode,
                    optional: sec.optional == Some(true),
                };
                key_files(src, ns, name, key, &mut out).await?;
            } else if let Some(d) = &s.downward_api {
                downward(
                    src,
                    name,
                    pod,
                    d.items.as_deref().unwrap_or_default(),
                    mode,
                    &mut out,
                )?;
            } else if let Some(t) = &s.service_account_token {
                check_path(name, &t.path)?;
                let token = src
                    .service_account_token(
                        pod,
                        t.audience.as_deref().unwrap_or_default(),
                        t.expiration_seconds.unwrap_or(3600),
                    )
                    .await?;
                out.push(VolumeFile {
                    path: t.path.clone(),
                    data: token,
                    mode,
                });
            } else {
                return Err(format!("volume {name}: unsupported projected source"));
            }
        }
    } else {
        return Ok(None);
    }
    for f in &out {
        check_path(name, &f.path)?;
    }
    Ok(Some(out))
}

/// The files of every API-sourced volume `c` mounts, by volume name.
pub async fn container_volume_files(
    src: &dyn VolumeSource,
    pod: &Pod,
    c: &Container,
) -> Result<BTreeMap<String, Vec<VolumeFile>>, String> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    for m in c.volume_mounts.iter().flatten() {
        if out.contains_key(&m.name) {
            continue;
        }
        let Some(v) = volumes.iter().find(|v| v.name == m.name) else {
            continue;
        };
        if let Some(files) = volume_files(src, pod, v).await? {
            out.insert(v.name.clone(), files);
        }
    }
    Ok(out)
}

/// The files of every API-sourced volume any container or init container of the pod
/// mounts, by volume name (for refreshing them while the pod runs).
pub async fn pod_volume_files(
    src: &dyn VolumeSource,
    pod: &Pod,
) -> Result<BTreeMap<String, Vec<VolumeFile>>, String> {
    let mut out = BTreeMap::new();
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(out);
    };
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        for (name, files) in container_volume_files(src, pod, c).await? {
            out.entry(name).or_insert(files);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Src;

    #[async_trait::async_trait]
    impl VolumeSource for Src {
        async fn config_map(
            &self,
            _ns: &str,
            name: &str,
        ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
            Ok((name == "cfg").then(|| {
                BTreeMap::from([
                    ("a.conf".to_string(), b"A".to_vec()),
                    ("b".to_string(), b"B".to_vec()),
                ])
            }))
        }
        async fn secret(
            &self,
            _ns: &str,
            name: &str,
        ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
            Ok((name == "sec").then(|| BTreeMap::from([("pw".to_string(), vec![0, 1, 2])])))
        }
        async fn service_account_token(
            &self,
            pod: &Pod,
            audience: &str,
            expiration_seconds: i64,
        ) -> Result<Vec<u8>, String> {
            Ok(format!(
                "token:{}:{audience}:{expiration_seconds}",
                pod.metadata.name.as_deref().unwrap_or_default()
            )
            .into_bytes())
        }
        fn field(&self, pod: &Pod, path: &str) -> String {
            match path {
                "metadata.name" => pod.metadata.name.clone().unwrap_or_default(),
                _ => String::new(),
            }
        }
        fn resource(&self, _c: &Container, r: &ResourceFieldSelector) -> Result<String, String> {
            Ok(format!("res:{}", r.resource))
        }
    }

    fn pod(volumes: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"containers": [{"name": "c", "volumeMounts": [
                {"name": "v", "mountPath": "/v"}]}], "volumes": volumes}
        }))
        .expect("pod")
    }

    async fn files(volume: serde_json::Value) -> Result<Vec<VolumeFile>, String> {
        let p = pod(json!([volume]));
        let c = p.spec.as_ref().expect("spec").containers[0].clone();
        let mut m = container_volume_files(&Src, &p, &c).await?;
        Ok(m.remove("v").unwrap_or_default())
    }

    #[tokio::test]
    async fn config_maps_and_secrets_with_items_and_modes() {
        let all = files(json!({"name": "v", "configMap": {"name": "cfg"}}))
            .await
            .expect("all keys");
        assert_eq!(
            all.iter()
                .map(|f| (f.path.as_str(), f.mode))
                .collect::<Vec<_>>(),
            [("a.conf", 0o644), ("b", 0o644)]
        );
        let some = files(json!({"name": "v", "configMap": {"name": "cfg", "defaultMode": 0o400,
            "items": [{"key": "b", "path": "dir/b.txt"}, {"key": "a.conf", "path": "a", "mode": 0o600}]}}))
        .await
        .expect("items");
        assert_eq!(
            some.iter()
                .map(|f| (f.path.as_str(), f.mode, f.data.as_slice()))
                .collect::<Vec<_>>(),
            [("dir/b.txt", 0o400, &b"B"[..]), ("a", 0o600, &b"A"[..])]
        );
        let sec = files(json!({"name": "v", "secret": {"secretName": "sec"}}))
            .await
            .expect("secret");
        assert_eq!(sec[0].data, vec![0, 1, 2]);
        // Missing sources: an error unless optional.
        assert!(
            files(json!({"name": "v", "secret": {"secretName": "nope"}}))
                .await
                .unwrap_err()
                .contains("secret \"nope\" not found")
        );
        assert!(
            files(json!({"name": "v", "configMap": {"name": "nope", "optional": true}}))
                .await
                .expect("optional")
                .is_empty()
        );
        assert!(
            files(json!({"name": "v", "configMap": {"name": "cfg", "items": [{"key": "zz", "path": "z"}]}}))
                .await
                .is_err()
        );
        // Paths escaping the volume are refused.
        for bad in ["../x", "/etc/passwd", "a/../../b", "..data"] {
            assert!(
                files(json!({"name": "v", "configMap": {"name": "cfg", "items": [{"key": "b", "path": bad}]}}))
                    .await
                    .is_err(),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn downward_api_and_projected_sources() {
        let d = files(json!({"name": "v", "downwardAPI": {"items": [
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}}]}}))
        .await
        .expect("downward");
        assert_eq!(d[0].data, b"p");
        assert_eq!(d[1].data, b"res:limits.cpu");
        let p = files(json!({"name": "v", "projected": {"defaultMode": 0o440, "sources": [
            {"configMap": {"name": "cfg", "items": [{"key": "b", "path": "b"}]}},
            {"secret": {"name": "sec"}},
            {"downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}}))
        .await
        .expect("projected");
        assert_eq!(
            p.iter()
                .map(|f| (f.path.as_str(), f.mode))
                .collect::<Vec<_>>(),
            [("b", 0o440), ("pw", 0o440), ("n", 0o440)]
        );
        let token = files(
            json!({"name": "v", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {"serviceAccountToken": {"path": "vault", "audience": "vault"}}]}}),
        )
        .await
        .expect("token");
        assert_eq!(
            token
                .iter()
                .map(|f| (f.path.as_str(), f.mode, f.data.as_slice()))
                .collect::<Vec<_>>(),
            [
                ("token", 0o644, &b"token:p::3607"[..]),
                ("vault", 0o644, &b"token:p:vault:3600"[..])
            ]
        );
        assert!(
            files(json!({"name": "v", "projected": {"sources": [
                {"serviceAccountToken": {"path": "../t"}}]}}))
            .await
            .is_err()
        );
    }
}
