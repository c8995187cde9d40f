//! Pulling over the OCI distribution API with `oci-client` (auth challenges, bearer
//! tokens, per-registry plain http), verifying every blob into the content store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};

use crate::content::Digest;
use crate::image::{self, MANIFEST_TYPES, Parsed};
use crate::progress::{NoProgress, Progress, ProgressState};
use crate::reference::ImageRef;
use crate::store::{ImageError, ImageInfo, ImageStore, Result};

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Username and password (also used to obtain bearer tokens on a challenge).
    Basic {
        /// User name.
        username: String,
        /// Password or access token.
        password: String,
    },
    /// A ready bearer token.
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::Bearer(_) => write!(f, "Bearer(<redacted>)"),
        }
    }
}

/// How to pull.
#[derive(Clone)]
pub struct PullOptions {
    /// Registries (`host[:port]`) spoken to over plain http instead of https.
    pub insecure_registries: Vec<String>,
    /// Credentials by registry host (`docker.io`, `127.0.0.1:5000`); anonymous otherwise.
    pub credentials: HashMap<String, Credentials>,
    /// Progress receiver.
    pub progress: Arc<dyn Progress>,
    /// Blobs downloaded at once.
    pub max_concurrent_downloads: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            insecure_registries: Vec::new(),
            credentials: HashMap::new(),
            progress: Arc::new(NoProgress),
            max_concurrent_downloads: 3,
        }
    }
}

impl std::fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("insecure_registries", &self.insecure_registries)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// The host a credentials key names: keys may be hosts (`127.0.0.1:5000`) or URLs as in
/// Kubernetes `.dockerconfigjson` (`https://index.docker.io/v1/`); Docker Hub's aliases
/// are one registry.
fn registry_host(key: &str) -> &str {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        h => h,
    }
}

/// The credentials for `registry`, by exact key or by normalised host.
pub fn credentials_for<'a>(
    creds: &'a HashMap<String, Credentials>,
    registry: &str,
) -> Option<&'a Credentials> {
    creds.get(registry).or_else(|| {
        let want = registry_host(registry);
        creds
            .iter()
            .find(|(k, _)| registry_host(k) == want)
            .map(|(_, v)| v)
    })
}

fn chain(e: &dyn std::error::Error) -> String {
    crate::content::error_chain(e)
}

fn registry_err(r: &ImageRef, e: OciDistributionError) -> ImageError {
    let not_found = match &e {
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|x| {
            matches!(
                x.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound
            )
        }),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        _ => false,
    };
    let unauthorized = matches!(
        &e,
        OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_)
    );
    if unauthorized {
        return ImageError::Unauthorized {
            name: r.canonical(),
            registry: r.registry().to_string(),
            reason: chain(&e),
        };
    }
    if not_found {
        ImageError::RemoteNotFound {
            name: r.canonical(),
            registry: r.registry().to_string(),
            reason: chain(&e),
        }
    } else {
        ImageError::Registry {
            registry: r.registry().to_string(),
            reason: chain(&e),
        }
    }
}

/// Tries per blob download.
const BLOB_ATTEMPTS: u32 = 3;

struct Shared {
    progress: Arc<dyn Progress>,
    state: Mutex<ProgressState>,
    new_blobs: Mutex<Vec<Digest>>,
    active: Mutex<Option<crate::store::ActiveBlobs>>,
}

impl Shared {
    fn add(&self, bytes: u64, layer_done: bool) {
        if let Ok(mut s) = self.state.lock() {
            s.bytes_done += bytes;
            if layer_done {
                s.layers_done += 1;
            }
            self.progress.update(&s);
        }
    }
    fn sub(&self, bytes: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.bytes_done = s.bytes_done.saturating_sub(bytes);
        }
    }
    fn new_blob(&self, d: Digest) {
        if let Ok(mut v) = self.new_blobs.lock() {
            v.push(d);
        }
    }
}

impl ImageStore {
    /// Pulls `reference` from its registry: picks linux/amd64 from an index, skips blobs
    /// already present, verifies every blob, unpacks the snapshots and names the image.
    /// On failure, blobs written by this pull and used by no image are removed again.
    pub async fn pull(&self, reference: &str, opts: &PullOptions) -> Result<ImageInfo> {
        let r = ImageRef::parse(reference)?;
        let _op = self.inner.op_lock.read().await;
        let shared = Arc::new(Shared {
            progress: opts.progress.clone(),
            state: Mutex::new(ProgressState {
                phase: format!("pulling {}", r.canonical()),
                ..Default::default()
            }),
            new_blobs: Mutex::new(Vec::new()),
            active: Mutex::new(Some(self.hold())),
        });
        let res = self.pull_inner(&r, opts, &shared).await;
        if let Ok(mut a) = shared.active.lock() {
            a.take();
        }
        if res.is_err() {
            let new = shared
                .new_blobs
                .lock()
                .map(|v| v.clone())
                .unwrap_or_default();
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || this.discard(&new)).await;
        }
        if let Ok(s) = shared.state.lock() {
            let mut s = s.clone();
            if let Err(e) = &res {
                s.phase = format!("failed: {e}");
            } else {
                s.phase = format!("pulled {}", r.canonical());
            }
            opts.progress.finish(&s);
        }
        res
    }

    async fn pull_inner(
        &self,
        r: &ImageRef,
        opts: &PullOptions,
        shared: &Arc<Shared>,
    ) -> Result<ImageInfo> {
        // reqwest is built without a bundled crypto provider; use ring like the rest of
        // the workspace (an error only means a provider is already installed).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let protocol = if opts.insecure_registries.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(opts.insecure_registries.clone())
        };
        let client = Client::new(ClientConfig {
            protocol,
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(60)),
            platform_resolver: None,
            max_concurrent_download: opts.max_concurrent_downloads.max(1),
            ..Default::default()
        });
        let auth = match credentials_for(&opts.credentials, r.registry()) {
            Some(Credentials::Basic { username, password }) => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Some(Credentials::Bearer(t)) => RegistryAuth::Bearer(t.clone()),
            None => RegistryAuth::Anonymous,
        };
        client
            .auth(r.oci(), &auth, RegistryOperation::Pull)
            .await
            .map_err(|e| registry_err(r, e))?;
        let (bytes, _) = client
            .pull_manifest_raw(r.oci(), &auth, &MANIFEST_TYPES)
            .await
            .map_err(|e| registry_err(r, e))?;
        let top = Digest::of(&bytes);
        if let Some(want) = r.digest()
            && want != top.as_str()
        {
            return Err(crate::content::ContentError::DigestMismatch {
                expected: Digest::parse(want)?,
                actual: top,
            }
            .into());
        }
        let content = self.content().clone();
        let (manifest_digest, manifest_bytes, index_bytes) =
            match image::parse_manifest(&bytes, &top)? {
                Parsed::Manifest(_) => (top.clone(), bytes.to_vec(), None),
                Parsed::Index(idx) => {
                    let d = image::desc_digest(image::choose_linux_amd64(&idx, &r.canonical())?)?;
                    let (mb, _) = client
                        .pull_manifest_raw(&r.with_digest(d.as_str()), &auth, &MANIFEST_TYPES)
                        .await
                        .map_err(|e| registry_err(r, e))?;
                    let got = Digest::of(&mb);
                    if got != d {
                        return Err(crate::content::ContentError::DigestMismatch {
                            expected: d,
                            actual: got,
                        }
                        .into());
                    }
                    (d, mb.to_vec(), Some(bytes.to_vec()))
                }
            };
        let Parsed::Manifest(m) = image::parse_manifest(&manifest_bytes, &manifest_digest)? else {
            return Err(image::ManifestError::Invalid {
                what: "manifest",
                digest: manifest_digest,
                reason: "linux/amd64 entry is itself an index".into(),
            }
            .into());
        };
        let mut blobs = vec![(m.config().clone(), false)];
        blobs.extend(m.layers().iter().map(|l| (l.clone(), true)));
        if let Ok(mut guard) = shared.active.lock()
            && let Some(a) = guard.as_mut()
        {
            a.add(&top);
            a.add(&manifest_digest);
            for (d, _) in &blobs {
                a.add(&image::desc_digest(d)?);
            }
        }
        if let Ok(mut s) = shared.state.lock() {
            s.bytes_total = blobs.iter().map(|(d, _)| d.size()).sum();
            s.layers_total = m.layers().len();
        }
        let fetches = blobs.into_iter().map(|(desc, is_layer)| {
            let client = &client;
            let content = content.clone();
            let shared = shared.clone();
            async move {
                let d = image::desc_digest(&desc)?;
                if content.has(&d) {
                    shared.add(desc.size(), is_layer);
                    return Ok::<(), ImageError>(());
                }
                let blob_err = |reason: String| ImageError::Blob {
                    digest: d.clone(),
                    reason,
                };
                let od = OciDescriptor {
                    media_type: desc.media_type().to_string(),
                    digest: d.to_string(),
                    size: desc.size() as i64,
                    ..Default::default()
                };
                let pinned = r.with_digest(d.as_str());
                let mut attempt = 0u32;
                loop {
                    attempt += 1;
                    let mut got = 0u64;
                    // Transient failures (connection, 5xx, a broken stream) are retried;
                    // a wrong digest or size, a 4xx or a local disk error is not.
                    let once: std::result::Result<bool, (ImageError, bool)> = async {
                        let mut stream = client.pull_blob_stream(&pinned, &od).await.map_err(|e| {
                            let transient = matches!(
                                &e,
                                OciDistributionError::RequestError(_)
                                    | OciDistributionError::ServerError { code: 500.., .. }
                            );
                            (blob_err(chain(&e)), transient)
                        })?;
                        let mut w = content
                            .writer(&d, Some(desc.size()))
                            .map_err(|e| (e.into(), false))?;
                        while let Some(chunk) = stream.next().await {
                            let chunk = chunk.map_err(|e| {
                                let msg = chain(&e);
                                let transient = !msg.to_lowercase().contains("digest");
                                (blob_err(msg), transient)
                            })?;
                            w.write_all(&chunk).map_err(|e| (e.into(), false))?;
                            got += chunk.len() as u64;
                            shared.add(chunk.len() as u64, false);
                        }
                        w.commit().map_err(|e| (e.into(), false))
                    }
                    .await;
                    match once {
                        Ok(new) => {
                            if new {
                                shared.new_blob(d.clone());
                            }
                            break;
                        }
                        Err((e, true)) if attempt < BLOB_ATTEMPTS => {
                            tracing::warn!(digest = %d, attempt, error = %e, "retrying blob download");
                            shared.sub(got);
                            tokio::time::sleep(Duration::from_millis(300 * u64::from(attempt))).await;
                        }
                        Err((e, _)) => return Err(e),
                    }
                }
                if is_layer {
                    shared.add(0, true);
                }
                Ok(())
            }
        });
        futures::stream::iter(fetches)
            .buffer_unordered(opts.max_concurrent_downloads.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        if content.put(&manifest_digest, &manifest_bytes)? {
            shared.new_blob(manifest_digest.clone());
        }
        if let Some(ib) = &index_bytes
            && content.put(&top, ib)?
        {
            shared.new_blob(top.clone());
        }
        let this = self.clone();
        let name = r.canonical();
        let shared2 = shared.clone();
        tokio::task::spawn_blocking(move || {
            let mut st = shared2.state.lock().map(|s| s.clone()).unwrap_or_default();
            let res = this.commit_image(&name, &top, &manifest_digest, &*shared2.progress, &mut st);
            if let Ok(mut s) = shared2.state.lock() {
                *s = st;
            }
            res
        })
        .await
        .map_err(|e| ImageError::Task(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_lookup_normalises_hosts() {
        let basic = |u: &str| Credentials::Basic {
            username: u.into(),
            password: "p".into(),
        };
        let mut m = HashMap::new();
        m.insert("https://index.docker.io/v1/".to_string(), basic("hub"));
        m.insert("127.0.0.1:5000".to_string(), basic("local"));
        m.insert("http://quay.io".to_string(), basic("quay"));
        let user = |reg: &str| match credentials_for(&m, reg) {
            Some(Credentials::Basic { username, .. }) => Some(username.clone()),
            _ => None,
        };
        assert_eq!(user("docker.io").as_deref(), Some("hub"));
        assert_eq!(user("127.0.0.1:5000").as_deref(), Some("local"));
        assert_eq!(user("quay.io").as_deref(), Some("quay"));
        assert_eq!(user("ghcr.io"), None);
        assert_eq!(user("127.0.0.1:5001"), None);
    }
}
