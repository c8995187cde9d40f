//! Pod sources: static pod files (the manifest directory, read every
//! `fileCheckFrequency` and on inotify events) and the API server (pods bound to the
//! node). Each delivers full snapshots tagged with its source.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// `kubernetes.io/config.source`.
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
/// `kubernetes.io/config.hash`.
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// `kubernetes.io/config.seen`.
pub const CONFIG_SEEN: &str = "kubernetes.io/config.seen";
/// `kubernetes.io/config.mirror`.
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";

/// Errors turning a file into a static pod.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a manifest: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: kind {kind:?} is not Pod, ignored")]
    NotPod { path: PathBuf, kind: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Where a pod comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    File,
    Api,
}

/// A full snapshot of one source.
#[derive(Clone, Debug)]
pub struct SourceUpdate {
    pub source: Source,
    pub pods: Vec<Pod>,
    /// Files that were skipped, with why (reported as Events by the kubelet).
    pub skipped: Vec<String>,
}

/// Whether a pod came from a file (or another non-API source).
pub fn is_static(pod: &Pod) -> bool {
    annotation(pod, CONFIG_SOURCE).is_some_and(|s| s != "api")
}

/// Whether a pod from the API is a mirror pod.
pub fn is_mirror(pod: &Pod) -> bool {
    annotation(pod, CONFIG_MIRROR).is_some()
}

/// An annotation's value.
pub fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// Turn a manifest's text into the static pod upstream would run: named
/// `<name>-<node>`, namespace `default` if unset, UID from a hash of content, node and
/// path, the config annotations, `spec.nodeName`, and API defaults applied.
pub fn static_pod(path: &Path, text: &str, node: &str) -> Result<Pod, SourceError> {
    let perr = |message: String| SourceError::Parse {
        path: path.into(),
        message,
    };
    let mut v: serde_json::Value =
        serde_yaml_ng::from_str(text).map_err(|e| perr(e.to_string()))?;
    let kind = v
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_string();
    if kind != "Pod" {
        return Err(SourceError::NotPod {
            path: path.into(),
            kind,
        });
    }
    let name = v
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| SourceError::Invalid {
            path: path.into(),
            message: "metadata.name is required".into(),
        })?
        .to_string();
    let mut h = Sha256::new();
    h.update(text.as_bytes());
    h.update([0]);
    h.update(node.as_bytes());
    h.update([0]);
    h.update(path.display().to_string().as_bytes());
    let hash = hex::encode(&h.finalize()[..16]);
    let full_name = format!("{name}-{node}");
    {
        let Some(obj) = v.as_object_mut() else {
            return Err(perr("not an object".into()));
        };
        let meta = obj
            .entry("metadata")
            .or_insert_with(|| serde_json::json!({}));
        let Some(meta) = meta.as_object_mut() else {
            return Err(perr("metadata is not an object".into()));
        };
        meta.insert("name".into(), full_name.clone().into());
        let ns_empty = meta
            .get("namespace")
            .and_then(|n| n.as_str())
            .is_none_or(str::is_empty);
        if ns_empty {
            meta.insert("namespace".into(), "default".into());
        }
        meta.insert("uid".into(), hash.clone().into());
        meta.remove("resourceVersion");
        meta.remove("selfLink");
        let ann = meta
            .entry("annotations")
            .or_insert_with(|| serde_json::json!({}));
        if !ann.is_object() {
            *ann = serde_json::json!({});
        }
        if let Some(ann) = ann.as_object_mut() {
            ann.insert(CONFIG_SOURCE.into(), "file".into());
            ann.insert(CONFIG_HASH.into(), hash.clone().into());
            ann.insert(
                CONFIG_SEEN.into(),
                k8s_openapi::jiff::Timestamp::now().to_string().into(),
            );
        }
        let spec = obj.entry("spec").or_insert_with(|| serde_json::json!({}));
        if let Some(spec) = spec.as_object_mut() {
            spec.insert("nodeName".into(), node.into());
        }
        obj.remove("status");
    }
    api::validation::apply_defaults("", "v1", "Pod", &mut v);
    let pod: Pod = serde_json::from_value(v).map_err(|e| SourceError::Invalid {
        path: path.into(),
        message: e.to_string(),
    })?;
    if pod.spec.as_ref().is_none_or(|s| s.containers.is_empty()) {
        return Err(SourceError::Invalid {
            path: path.into(),
            message: "spec.containers must not be empty".into(),
        });
    }
    Ok(pod)
}

/// Read every manifest of `dir` (files only, hidden files skipped, sorted by name).
/// Returns the pods and the reasons for skipped files; a missing directory is empty.
pub fn read_dir(dir: &Path, node: &str) -> (Vec<Pod>, Vec<String>) {
    let mut pods: Vec<Pod> = Vec::new();
    let mut skipped = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (pods, skipped);
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    paths.sort();
    let mut names: BTreeMap<(String, String), PathBuf> = BTreeMap::new();
    for p in paths {
        let res = std::fs::read_to_string(&p)
            .map_err(|source| SourceError::Read {
                path: p.clone(),
                source,
            })
            .and_then(|text| static_pod(&p, &text, node));
        match res {
            Ok(pod) => {
                let key = (
                    pod.metadata.namespace.clone().unwrap_or_default(),
                    pod.metadata.name.clone().unwrap_or_default(),
                );
                if let Some(first) = names.get(&key) {
                    skipped.push(format!(
                        "{}: pod {}/{} is already defined by {}, ignored",
                        p.display(),
                        key.0,
                        key.1,
                        first.display()
                    ));
                    continue;
                }
                names.insert(key, p);
                pods.push(pod);
            }
            Err(e) => skipped.push(e.to_string()),
        }
    }
    (pods, skipped)
}

/// Watch the manifest directory: a snapshot at start, on every change notification
/// and every `period`. Snapshots are sent only when the set of pods or of skipped
/// files changed.
pub async fn run_file_source(
    dir: PathBuf,
    node: String,
    period: Duration,
    tx: mpsc::Sender<SourceUpdate>,
    shutdown: CancellationToken,
) {
    use notify::Watcher;
    let (ntx, mut nrx) = mpsc::unbounded_channel::<()>();
    let make_watcher = |ntx: mpsc::UnboundedSender<()>| {
        let mut w = notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
            let _ = ntx.send(());
        })
        .ok()?;
        w.watch(&dir, notify::RecursiveMode::NonRecursive).ok()?;
        Some(w)
    };
    let mut watcher = make_watcher(ntx.clone());
    let mut last: Option<(Vec<String>, Vec<String>)> = None;
    loop {
        let (pods, skipped) = read_dir(&dir, &node);
        let key = (
            pods.iter()
                .map(|p| p.metadata.uid.clone().unwrap_or_default())
                .collect::<Vec<_>>(),
            skipped.clone(),
        );
        if last.as_ref() != Some(&key) {
            for s in &skipped {
                tracing::warn!("static pod skipped: {s}");
            }
            let update = SourceUpdate {
                source: Source::File,
                pods,
                skipped,
            };
            if tx.send(update).await.is_err() {
                return;
            }
            last = Some(key);
        }
        if watcher.is_none() {
            // The directory may appear later.
            watcher = make_watcher(ntx.clone());
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
            Some(()) = nrx.recv() => {
                // Let a burst of events (editor writes) settle.
                tokio::time::sleep(Duration::from_millis(50)).await;
                while nrx.try_recv().is_ok() {}
            }
        }
    }
}

/// Watch pods bound to `node` and send full snapshots (mirror pods included).
pub async fn run_api_source(
    client: kube::Client,
    node: String,
    tx: mpsc::Sender<SourceUpdate>,
    shutdown: CancellationToken,
) {
    use kube::runtime::WatchStreamExt;
    let api: Api<Pod> = Api::all(client);
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher(api, cfg).default_backoff().boxed();
    let mut pods: HashMap<String, Pod> = HashMap::new();
    let mut staging: HashMap<String, Pod> = HashMap::new();
    let key = |p: &Pod| {
        format!(
            "{}/{}",
            p.metadata.namespace.clone().unwrap_or_default(),
            p.metadata.name.clone().unwrap_or_default()
        )
    };
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = stream.next() => ev,
        };
        let Some(ev) = ev else { return };
        let changed = match ev {
            Ok(watcher::Event::Init) => {
                staging.clear();
                false
            }
            Ok(watcher::Event::InitApply(p)) => {
                staging.insert(key(&p), p);
                false
            }
            Ok(watcher::Event::InitDone) => {
                pods = std::mem::take(&mut staging);
                true
            }
            Ok(watcher::Event::Apply(p)) => {
                pods.insert(key(&p), p);
                true
            }
            Ok(watcher::Event::Delete(p)) => {
                pods.remove(&key(&p));
                true
            }
            Err(e) => {
                tracing::debug!("pod watch: {e}");
                false
            }
        };
        if changed {
            let update = SourceUpdate {
                source: Source::Api,
                pods: pods.values().cloned().collect(),
                skipped: Vec::new(),
            };
            if tx.send(update).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: myapp-pod
  labels:
    app: myapp
spec:
  containers:
    - name: nginx-container
      image: nginx
";

    #[test]
    fn static_pod_naming_uid_and_annotations() {
        let p = Path::new("/etc/kubernetes/manifests/static.yaml");
        let pod = static_pod(p, POD, "worker-1").expect("pod");
        assert_eq!(pod.metadata.name.as_deref(), Some("myapp-pod-worker-1"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        let uid = pod.metadata.uid.clone().expect("uid");
        assert_eq!(annotation(&pod, CONFIG_SOURCE), Some("file"));
        assert_eq!(annotation(&pod, CONFIG_HASH), Some(uid.as_str()));
        assert!(annotation(&pod, CONFIG_SEEN).is_some());
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some("worker-1"));
        // Defaults applied.
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(
            spec.containers[0].image_pull_policy.as_deref(),
            Some("Always")
        );
        // Stable for the same content, node and path; changes with any of them.
        let again = static_pod(p, POD, "worker-1").expect("pod");
        assert_eq!(again.metadata.uid, pod.metadata.uid);
        let edited =
            static_pod(p, &POD.replace("nginx\n", "nginx:1.25\n"), "worker-1").expect("pod");
        assert_ne!(edited.metadata.uid, pod.metadata.uid);
        let other_node = static_pod(p, POD, "worker-2").expect("pod");
        assert_ne!(other_node.metadata.uid, pod.metadata.uid);
        let other_path = static_pod(Path::new("/x/y.yaml"), POD, "worker-1").expect("pod");
        assert_ne!(other_path.metadata.uid, pod.metadata.uid);
    }

    #[test]
    fn json_manifest_and_namespace_kept() {
        let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"etcd","namespace":"kube-system"},
            "spec":{"containers":[{"name":"etcd","image":"etcd:3.5"}]}}"#;
        let pod = static_pod(Path::new("/m/etcd.json"), json, "cp").expect("pod");
        assert_eq!(pod.metadata.name.as_deref(), Some("etcd-cp"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("kube-system"));
    }

    #[test]
    fn bad_files_are_skipped_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("a-good.yaml"), POD).expect("write");
        std::fs::write(
            d.join("b-deploy.yaml"),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
        )
        .expect("write");
        std::fs::write(d.join("c-broken.yaml"), "kind: Pod\n  : : [\n").expect("write");
        std::fs::write(d.join("d-dup.yaml"), POD.replace("app: myapp", "app: dup")).expect("write");
        std::fs::write(
            d.join("e-noname.yaml"),
            "apiVersion: v1\nkind: Pod\nspec: {containers: [{name: a, image: b}]}\n",
        )
        .expect("write");
        std::fs::write(d.join(".hidden.yaml"), "garbage").expect("write");
        let (pods, skipped) = read_dir(d, "n1");
        assert_eq!(pods.len(), 1, "{skipped:?}");
        assert_eq!(pods[0].metadata.name.as_deref(), Some("myapp-pod-n1"));
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(skipped.iter().any(|s| s.contains("Deployment")));
        assert!(skipped.iter().any(|s| s.contains("already defined")));
        let (none, _) = read_dir(&d.join("missing"), "n1");
        assert!(none.is_empty());
    }
}
