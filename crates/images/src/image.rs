//! Manifests, indexes and image configs (OCI and Docker schema2), parsed with `oci-spec`.

use std::collections::BTreeMap;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

use crate::content::Digest;

/// OCI image manifest media type.
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema2 manifest media type.
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Media types asked for when fetching a manifest.
pub const MANIFEST_TYPES: [&str; 4] = [
    MT_OCI_MANIFEST,
    MT_OCI_INDEX,
    MT_DOCKER_MANIFEST,
    MT_DOCKER_LIST,
];

/// Errors of manifest and config handling.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The JSON is not a manifest we can use.
    #[error("invalid {what} {digest}: {reason}")]
    Invalid {
        /// `manifest`, `index` or `config`.
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// Why.
        reason: String,
    },
    /// No entry of the index is linux/amd64.
    #[error("no manifest for linux/amd64 in {name}; the index has: {available}")]
    NoPlatform {
        /// The image.
        name: String,
        /// Platforms present, comma-separated.
        available: String,
    },
}

/// A fetched manifest: either one image or an index of per-platform images.
pub enum Parsed {
    /// An image index / manifest list.
    Index(Box<ImageIndex>),
    /// An image manifest.
    Manifest(Box<ImageManifest>),
}

/// Parses manifest or index JSON (by shape, as media types are often missing).
pub fn parse_manifest(bytes: &[u8], digest: &Digest) -> Result<Parsed, ManifestError> {
    let invalid = |what: &'static str, reason: String| ManifestError::Invalid {
        what,
        digest: digest.clone(),
        reason,
    };
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| invalid("manifest", e.to_string()))?;
    if v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1) {
        return Err(invalid(
            "manifest",
            "Docker schema1 manifests are not supported".into(),
        ));
    }
    if v.get("manifests").is_some() {
        let idx: ImageIndex =
            serde_json::from_value(v).map_err(|e| invalid("index", e.to_string()))?;
        Ok(Parsed::Index(Box::new(idx)))
    } else if v.get("layers").is_some() {
        let m: ImageManifest =
            serde_json::from_value(v).map_err(|e| invalid("manifest", e.to_string()))?;
        Ok(Parsed::Manifest(Box::new(m)))
    } else {
        Err(invalid(
            "manifest",
            "neither an image manifest nor an index".into(),
        ))
    }
}

fn platform_name(d: &Descriptor) -> String {
    match d.platform() {
        Some(p) => {
            let mut s = format!("{}/{}", p.os(), p.architecture());
            if let Some(v) = p.variant() {
                s.push('/');
                s.push_str(v);
            }
            s
        }
        None => "unknown".into(),
    }
}

/// Picks the linux/amd64 entry of an index (an error names the platforms present).
pub fn choose_linux_amd64<'a>(
    index: &'a ImageIndex,
    name: &str,
) -> Result<&'a Descriptor, ManifestError> {
    index
        .manifests()
        .iter()
        .find(|d| platform_name(d) == "linux/amd64" || platform_name(d).starts_with("linux/amd64/"))
        .ok_or_else(|| ManifestError::NoPlatform {
            name: name.to_string(),
            available: {
                let all: Vec<String> = index.manifests().iter().map(platform_name).collect();
                if all.is_empty() {
                    "no manifests".into()
                } else {
                    all.join(", ")
                }
            },
        })
}

/// A descriptor's digest, validated.
pub fn desc_digest(d: &Descriptor) -> Result<Digest, crate::content::ContentError> {
    Digest::parse(d.digest().as_ref())
}

/// Parses an image config blob.
pub fn parse_config(bytes: &[u8], digest: &Digest) -> Result<ImageConfiguration, ManifestError> {
    serde_json::from_slice(bytes).map_err(|e| ManifestError::Invalid {
        what: "config",
        digest: digest.clone(),
        reason: e.to_string(),
    })
}

/// The diff ids of a config, validated.
pub fn diff_ids(cfg: &ImageConfiguration, digest: &Digest) -> Result<Vec<Digest>, ManifestError> {
    cfg.rootfs()
        .diff_ids()
        .iter()
        .map(|d| {
            Digest::parse(d).map_err(|e| ManifestError::Invalid {
                what: "config",
                digest: digest.clone(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// What a container needs from the image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageConfig {
    /// `KEY=value` environment.
    pub env: Vec<String>,
    /// Entrypoint (may be empty).
    pub entrypoint: Vec<String>,
    /// Default command (may be empty).
    pub cmd: Vec<String>,
    /// Working directory ("" means `/`).
    pub working_dir: String,
    /// `user[:group]` ("" means root).
    pub user: String,
    /// Exposed ports like `80/tcp`.
    pub exposed_ports: Vec<String>,
    /// Image labels.
    pub labels: BTreeMap<String, String>,
    /// Stop signal, if set.
    pub stop_signal: Option<String>,
}

impl ImageConfig {
    /// Extracts the container-relevant part of an image configuration.
    pub fn from_oci(cfg: &ImageConfiguration) -> Self {
        let Some(c) = cfg.config() else {
            return Self::default();
        };
        Self {
            env: c.env().clone().unwrap_or_default(),
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            working_dir: c.working_dir().clone().unwrap_or_default(),
            user: c.user().clone().unwrap_or_default(),
            exposed_ports: c.exposed_ports().clone().unwrap_or_default(),
            labels: c.labels().clone().unwrap_or_default().into_iter().collect(),
            stop_signal: c.stop_signal().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_json(platforms: &[(&str, &str)]) -> Vec<u8> {
        let manifests: Vec<serde_json::Value> = platforms
            .iter()
            .enumerate()
            .map(|(i, (os, arch))| {
                serde_json::json!({
                    "mediaType": MT_DOCKER_MANIFEST,
                    "digest": Digest::of(format!("{i}").as_bytes()).to_string(),
                    "size": 10,
                    "platform": {"os": os, "architecture": arch}
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": MT_DOCKER_LIST, "manifests": manifests
        }))
        .unwrap()
    }

    #[test]
    fn picks_linux_amd64_or_names_what_is_there() {
        let bytes = index_json(&[("linux", "arm64"), ("linux", "amd64")]);
        let Parsed::Index(idx) = parse_manifest(&bytes, &Digest::of(&bytes)).unwrap() else {
            panic!("not an index")
        };
        let d = choose_linux_amd64(&idx, "x").unwrap();
        assert_eq!(desc_digest(d).unwrap(), Digest::of(b"1"));

        let bytes = index_json(&[("linux", "arm64"), ("windows", "amd64")]);
        let Parsed::Index(idx) = parse_manifest(&bytes, &Digest::of(&bytes)).unwrap() else {
            panic!("not an index")
        };
        let err = choose_linux_amd64(&idx, "x").unwrap_err().to_string();
        assert!(err.contains("no manifest for linux/amd64"), "{err}");
        assert!(err.contains("linux/arm64, windows/amd64"), "{err}");
    }

    #[test]
    fn rejects_garbage_and_schema1() {
        let d = Digest::of(b"x");
        assert!(parse_manifest(b"not json", &d).is_err());
        assert!(parse_manifest(b"{\"schemaVersion\":1,\"fsLayers\":[]}", &d).is_err());
        assert!(parse_manifest(b"{}", &d).is_err());
    }

    #[test]
    fn docker_config_fields() {
        let cfg = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/w", "User": "1000",
                        "ExposedPorts": {"80/tcp": {}}, "Labels": {"a": "b"}},
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(b"l").to_string()]}
        });
        let bytes = serde_json::to_vec(&cfg).unwrap();
        let parsed = parse_config(&bytes, &Digest::of(&bytes)).unwrap();
        let c = ImageConfig::from_oci(&parsed);
        assert_eq!(c.cmd, vec!["sh"]);
        assert_eq!(c.env, vec!["PATH=/bin"]);
        assert_eq!(c.working_dir, "/w");
        assert_eq!(c.user, "1000");
        assert_eq!(c.exposed_ports, vec!["80/tcp"]);
        assert_eq!(c.labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(diff_ids(&parsed, &Digest::of(&bytes)).unwrap().len(), 1);
    }
}
