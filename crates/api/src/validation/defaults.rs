//! Upstream defaulting (`SetDefaults_*`), applied to objects as JSON.
//!
//! Besides the defaulting functions proper, this reproduces the visible effects of
//! upstream's decode/encode round trip on the same objects: quantities in resource lists
//! are rounded up to milli units and printed canonically, `stringData` of Secrets is
//! folded into `data`, the deprecated `serviceAccount` mirrors `serviceAccountName`,
//! and always-serialised empty structs (`resources: {}`, template
//! `creationTimestamp: null`, Service `status.loadBalancer`) appear as upstream prints
//! them. The create-time strategy steps the brief asks for (Job selector generation,
//! the Namespace `kubernetes` finalizer) run only for objects without a
//! `metadata.resourceVersion`, i.e. ones not stored yet.

use std::sync::LazyLock;

use base64::Engine;

use serde_json::{Map, Value, json};

use super::batch::{CONTROLLER_UID, JOB_NAME, LEGACY_CONTROLLER_UID, LEGACY_JOB_NAME};
use crate::quantity::Quantity;

/// The map under `key`, created (or replacing a non-object) when needed.
fn child<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map.entry(key.to_string()).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    match slot {
        Value::Object(m) => m,
        _ => unreachable!("slot was just made an object"),
    }
}

/// Sets `key` when it is missing or null.
fn default(map: &mut Map<String, Value>, key: &str, value: Value) {
    match map.get(key) {
        None | Some(Value::Null) => {
            map.insert(key.to_string(), value);
        }
        _ => {}
    }
}

/// Sets `key` when it is missing, null or an empty string.
fn default_str(map: &mut Map<String, Value>, key: &str, value: &str) {
    match map.get(key) {
        Some(Value::String(s)) if !s.is_empty() => {}
        _ => {
            map.insert(key.to_string(), Value::String(value.to_string()));
        }
    }
}

/// JSON-pointer lookup inside an object map.
fn ptr<'a>(map: &'a Map<String, Value>, pointer: &str) -> Option<&'a Value> {
    let mut parts = pointer.trim_start_matches('/').split('/');
    let mut cur = map.get(parts.next()?)?;
    for part in parts {
        cur = match cur {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn str_of<'a>(map: &'a Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or("")
}

fn objects_mut<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    map.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

fn has_resource_version(obj: &Value) -> bool {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|rv| !rv.is_empty())
}

/// Applies upstream's defaults for a kind (`group` empty for core). Kinds without
/// defaults are left unchanged.
pub fn apply_defaults(group: &str, version: &str, kind: &str, obj: &mut Value) {
    let _ = version;
    let creating = !has_resource_version(obj);
    let Value::Object(root) = obj else {
        return;
    };
    match (group, kind) {
        ("", "Pod") => {
            let spec = child(root, "spec");
            pod_spec(spec);
            pod_only(spec);
        }
        ("", "PodTemplate") => template(child(root, "template")),
        ("", "ReplicationController") => replication_controller(root),
        ("apps", "Deployment") => deployment(child(root, "spec")),
        ("apps", "ReplicaSet") => {
            let spec = child(root, "spec");
            default(spec, "replicas", json!(1));
            template(child(spec, "template"));
        }
        ("apps", "DaemonSet") => daemon_set(child(root, "spec")),
        ("apps", "StatefulSet") => stateful_set(child(root, "spec")),
        ("batch", "Job") => job(root, creating),
        ("batch", "CronJob") => cron_job(child(root, "spec")),
        ("", "Service") => service(root),
        ("", "Namespace") => namespace(root, creating),
        ("", "Secret") => secret(root),
        ("", "Node") => node(root),
        ("", "Endpoints") => {
            for subset in objects_mut(root, "subsets") {
                for port in objects_mut(subset, "ports") {
                    default_str(port, "protocol", "TCP");
                }
            }
        }
        ("", "PersistentVolumeClaim") => pvc(root),
        ("", "PersistentVolume") => {
            let spec = child(root, "spec");
            default_str(spec, "persistentVolumeReclaimPolicy", "Retain");
            default_str(spec, "volumeMode", "Filesystem");
            default_str(child(root, "status"), "phase", "Pending");
        }
        _ => {}
    }
}

/// Defaults that upstream's admission plugins (Priority, DefaultTolerationSeconds,
/// ServiceAccount) add to new Pods, for servers that run those plugins: `priority` 0
/// and `preemptionPolicy` when no priority class is named, the standard not-ready and
/// unreachable tolerations, and the `default` service account name. (Mounting the
/// service account token needs the API and is left to the server.)
pub fn apply_admission_defaults(group: &str, kind: &str, obj: &mut Value) {
    apply_admission_defaults_with(
        group,
        kind,
        obj,
        DEFAULT_TOLERATION_SECONDS,
        DEFAULT_TOLERATION_SECONDS,
    );
}

/// Upstream's `--default-not-ready-toleration-seconds` and
/// `--default-unreachable-toleration-seconds` default.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// [`apply_admission_defaults`] with the DefaultTolerationSeconds admission plugin's
/// two durations given (`not_ready`, `unreachable`).
pub fn apply_admission_defaults_with(
    group: &str,
    kind: &str,
    obj: &mut Value,
    not_ready: i64,
    unreachable: i64,
) {
    if (group, kind) != ("", "Pod") {
        return;
    }
    let Value::Object(root) = obj else {
        return;
    };
    let spec = child(root, "spec");
    if str_of(spec, "priorityClassName").is_empty() {
        default(spec, "priority", json!(0));
    }
    default_str(spec, "preemptionPolicy", "PreemptLowerPriority");
    let name = str_of(spec, "serviceAccountName").to_string();
    if name.is_empty() {
        spec.insert("serviceAccountName".into(), json!("default"));
        spec.insert("serviceAccount".into(), json!("default"));
    }
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if !tolerations.is_array() {
        *tolerations = json!([]);
    }
    if let Value::Array(list) = tolerations {
        for (key, seconds) in [
            ("node.kubernetes.io/not-ready", not_ready),
            ("node.kubernetes.io/unreachable", unreachable),
        ] {
            let tolerated = list.iter().any(|t| {
                let t_key = t.get("key").and_then(Value::as_str).unwrap_or("");
                let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
                (t_key == key
                    || (t_key.is_empty()
                        && t.get("operator").and_then(Value::as_str) == Some("Exists")))
                    && (effect.is_empty() || effect == "NoExecute")
            });
            if !tolerated {
                list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}));
            }
        }
    }
}

/// Rounds quantities up to milli units and prints them canonically.
fn resource_list(list: &mut Value) {
    let Some(map) = list.as_object_mut() else {
        return;
    };
    for value in map.values_mut() {
        if let Ok(mut q) = Quantity::from_json(value) {
            q.round_up(-3);
            *value = Value::String(q.to_string());
        }
    }
}

fn canonical_quantity(map: &mut Map<String, Value>, key: &str) {
    if let Some(value) = map.get_mut(key)
        && let Ok(q) = Quantity::from_json(value)
    {
        *value = Value::String(q.to_string());
    }
}

/// A pod template inside another object: template metadata plus PodSpec defaults.
fn template(tpl: &mut Map<String, Value>) {
    child(tpl, "metadata")
        .entry("creationTimestamp")
        .or_insert(Value::Null);
    pod_spec(child(tpl, "spec"));
}

/// `SetDefaults_PodSpec` and everything nested in a PodSpec.
fn pod_spec(spec: &mut Map<String, Value>) {
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "restartPolicy", "Always");
    default(spec, "securityContext", json!({}));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default_str(spec, "schedulerName", "default-scheduler");
    // The deprecated serviceAccount field mirrors serviceAccountName.
    let sa_name = str_of(spec, "serviceAccountName").to_string();
    let sa = str_of(spec, "serviceAccount").to_string();
    if sa_name.is_empty() && !sa.is_empty() {
        spec.insert("serviceAccountName".into(), json!(sa));
    } else if !sa_name.is_empty() {
        spec.insert("serviceAccount".into(), json!(sa_name));
    }
    for field in ["containers", "initContainers", "ephemeralContainers"] {
        for c in objects_mut(spec, field) {
            container(c);
        }
    }
    for volume in objects_mut(spec, "volumes") {
        volume_defaults(volume);
    }
    if let Some(overhead) = spec.get_mut("overhead") {
        resource_list(overhead);
    }
    if let Some(resources) = spec.get_mut("resources").and_then(Value::as_object_mut) {
        for key in ["limits", "requests"] {
            if let Some(list) = resources.get_mut(key) {
                resource_list(list);
            }
        }
    }
}

/// `SetDefaults_Pod`: what only real Pods (not templates) get.
fn pod_only(spec: &mut Map<String, Value>) {
    for field in ["containers", "initContainers"] {
        for c in objects_mut(spec, field) {
            let resources = child(c, "resources");
            let limits = resources.get("limits").and_then(Value::as_object).cloned();
            if let Some(limits) = limits {
                let requests = child(resources, "requests");
                for (k, v) in limits {
                    requests.entry(k).or_insert(v);
                }
            }
        }
    }
    default(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for field in ["containers", "initContainers"] {
            for c in objects_mut(spec, field) {
                for port in objects_mut(c, "ports") {
                    let host = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
                    if host == 0
                        && let Some(cp) = port.get("containerPort").cloned()
                    {
                        port.insert("hostPort".into(), cp);
                    }
                }
            }
        }
    }
}

static IMAGE_RE: LazyLock<regex::Regex> = LazyLock::new(|| {
    // [domain/]path[:tag][@digest], following the distribution reference grammar.
    regex::Regex::new(concat!(
        r"^(?:(?P<domain>(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?|\[[0-9a-fA-F:.]+\](?::[0-9]+)?)/)?",
        r"(?P<path>[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*)",
        r"(?::(?P<tag>[\w][\w.-]{0,127}))?",
        r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$"
    ))
    .expect("constant regex")
});

/// The pull policy upstream defaults to: `Always` for `:latest` or no tag (without a
/// digest), `IfNotPresent` otherwise, including for unparsable references.
pub(crate) fn default_pull_policy(image: &str) -> &'static str {
    let Some(caps) = IMAGE_RE.captures(image) else {
        return "IfNotPresent";
    };
    // A single-component name with a port-like suffix parses as domain:port only when
    // followed by a path; the regex handles that split.
    let tag = caps.name("tag").map(|m| m.as_str());
    let digest = caps.name("digest").is_some();
    match (tag, digest) {
        (Some("latest"), _) | (None, false) => "Always",
        _ => "IfNotPresent",
    }
}

fn container(c: &mut Map<String, Value>) {
    if str_of(c, "imagePullPolicy").is_empty() {
        let policy = default_pull_policy(str_of(c, "image"));
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    default_str(c, "terminationMessagePath", "/dev/termination-log");
    default_str(c, "terminationMessagePolicy", "File");
    for port in objects_mut(c, "ports") {
        default_str(port, "protocol", "TCP");
    }
    for env in objects_mut(c, "env") {
        if let Some(field_ref) = env
            .get_mut("valueFrom")
            .and_then(|v| v.get_mut("fieldRef"))
            .and_then(Value::as_object_mut)
        {
            default_str(field_ref, "apiVersion", "v1");
        }
        if let Some(resource_ref) = env
            .get_mut("valueFrom")
            .and_then(|v| v.get_mut("resourceFieldRef"))
            .and_then(Value::as_object_mut)
        {
            canonical_quantity(resource_ref, "divisor");
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            default(p, "timeoutSeconds", json!(1));
            default(p, "periodSeconds", json!(10));
            default(p, "successThreshold", json!(1));
            default(p, "failureThreshold", json!(3));
            http_get(p);
        }
    }
    if let Some(lifecycle) = c.get_mut("lifecycle").and_then(Value::as_object_mut) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lifecycle.get_mut(hook).and_then(Value::as_object_mut) {
                http_get(h);
            }
        }
    }
    let resources = child(c, "resources");
    for key in ["limits", "requests"] {
        if let Some(list) = resources.get_mut(key) {
            resource_list(list);
        }
    }
}

fn http_get(handler: &mut Map<String, Value>) {
    if let Some(h) = handler.get_mut("httpGet").and_then(Value::as_object_mut) {
        default_str(h, "path", "/");
        default_str(h, "scheme", "HTTP");
    }
}

const VOLUME_SOURCE_KEYS: &[&str] = &[
    "emptyDir",
    "hostPath",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "cinder",
    "cephfs",
    "quobyte",
    "downwardAPI",
    "fc",
    "flexVolume",
    "configMap",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "storageos",
    "projected",
    "scaleIO",
    "csi",
    "ephemeral",
    "image",
];

fn volume_defaults(v: &mut Map<String, Value>) {
    if !VOLUME_SOURCE_KEYS
        .iter()
        .any(|k| v.get(*k).is_some_and(|s| !s.is_null()))
    {
        v.insert("emptyDir".into(), json!({}));
    }
    if let Some(empty_dir) = v.get_mut("emptyDir").and_then(Value::as_object_mut) {
        canonical_quantity(empty_dir, "sizeLimit");
    }
    for key in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(src) = v.get_mut(key).and_then(Value::as_object_mut) {
            default(src, "defaultMode", json!(0o644));
        }
    }
    if let Some(host_path) = v.get_mut("hostPath").and_then(Value::as_object_mut) {
        default(host_path, "type", json!(""));
    }
    if let Some(items) = v.get_mut("downwardAPI").and_then(Value::as_object_mut) {
        downward_api_items(items);
    }
    if let Some(projected) = v.get_mut("projected").and_then(Value::as_object_mut) {
        for source in objects_mut(projected, "sources") {
            if let Some(token) = source
                .get_mut("serviceAccountToken")
                .and_then(Value::as_object_mut)
            {
                default(token, "expirationSeconds", json!(3600));
            }
            if let Some(d) = source.get_mut("downwardAPI").and_then(Value::as_object_mut) {
                downward_api_items(d);
            }
        }
    }
    if let Some(iscsi) = v.get_mut("iscsi").and_then(Value::as_object_mut) {
        default_str(iscsi, "iscsiInterface", "default");
    }
    if let Some(rbd) = v.get_mut("rbd").and_then(Value::as_object_mut) {
        default_str(rbd, "pool", "rbd");
        default_str(rbd, "user", "admin");
        default_str(rbd, "keyring", "/etc/ceph/keyring");
    }
    if let Some(disk) = v.get_mut("azureDisk").and_then(Value::as_object_mut) {
        default_str(disk, "cachingMode", "ReadWrite");
        default_str(disk, "fsType", "ext4");
        default(disk, "readOnly", json!(false));
        default_str(disk, "kind", "Shared");
    }
    if let Some(scale) = v.get_mut("scaleIO").and_then(Value::as_object_mut) {
        default_str(scale, "storageMode", "ThinProvisioned");
        default_str(scale, "fsType", "xfs");
    }
    if let Some(image) = v.get_mut("image").and_then(Value::as_object_mut)
        && str_of(image, "pullPolicy").is_empty()
    {
        let policy = default_pull_policy(str_of(image, "reference"));
        image.insert("pullPolicy".into(), json!(policy));
    }
    if let Some(template) = v
        .get_mut("ephemeral")
        .and_then(|e| e.get_mut("volumeClaimTemplate"))
        .and_then(Value::as_object_mut)
    {
        let spec = child(template, "spec");
        default_str(spec, "volumeMode", "Filesystem");
        pvc_resources(spec);
    }
}

fn downward_api_items(src: &mut Map<String, Value>) {
    for item in objects_mut(src, "items") {
        if let Some(field_ref) = item.get_mut("fieldRef").and_then(Value::as_object_mut) {
            default_str(field_ref, "apiVersion", "v1");
        }
        if let Some(resource_ref) = item
            .get_mut("resourceFieldRef")
            .and_then(Value::as_object_mut)
        {
            canonical_quantity(resource_ref, "divisor");
        }
    }
}

fn pvc_resources(spec: &mut Map<String, Value>) {
    if let Some(resources) = spec.get_mut("resources").and_then(Value::as_object_mut) {
        for key in ["limits", "requests"] {
            if let Some(list) = resources.get_mut(key) {
                resource_list(list);
            }
        }
    }
}

fn pvc(root: &mut Map<String, Value>) {
    let spec = child(root, "spec");
    default_str(spec, "volumeMode", "Filesystem");
    pvc_resources(spec);
    default_str(child(root, "status"), "phase", "Pending");
}

fn replication_controller(root: &mut Map<String, Value>) {
    let template_labels = ptr(root, "/spec/template/metadata/labels")
        .and_then(Value::as_object)
        .cloned();
    if let Some(labels) = template_labels {
        let spec = child(root, "spec");
        if spec
            .get("selector")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            spec.insert("selector".into(), Value::Object(labels.clone()));
        }
        let meta = child(root, "metadata");
        if meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            meta.insert("labels".into(), Value::Object(labels));
        }
    }
    let spec = child(root, "spec");
    default(spec, "replicas", json!(1));
    if let Some(tpl) = spec.get_mut("template").and_then(Value::as_object_mut) {
        template(tpl);
    }
}

fn deployment(spec: &mut Map<String, Value>) {
    default(spec, "replicas", json!(1));
    let strategy = child(spec, "strategy");
    default_str(strategy, "type", "RollingUpdate");
    if str_of(strategy, "type") == "RollingUpdate" {
        let ru = child(strategy, "rollingUpdate");
        default(ru, "maxUnavailable", json!("25%"));
        default(ru, "maxSurge", json!("25%"));
    }
    default(spec, "revisionHistoryLimit", json!(10));
    default(spec, "progressDeadlineSeconds", json!(600));
    template(child(spec, "template"));
}

fn daemon_set(spec: &mut Map<String, Value>) {
    let strategy = child(spec, "updateStrategy");
    default_str(strategy, "type", "RollingUpdate");
    if str_of(strategy, "type") == "RollingUpdate" {
        let ru = child(strategy, "rollingUpdate");
        default(ru, "maxUnavailable", json!(1));
        default(ru, "maxSurge", json!(0));
    }
    default(spec, "revisionHistoryLimit", json!(10));
    template(child(spec, "template"));
}

fn stateful_set(spec: &mut Map<String, Value>) {
    default_str(spec, "podManagementPolicy", "OrderedReady");
    let strategy = child(spec, "updateStrategy");
    if str_of(strategy, "type").is_empty() {
        strategy.insert("type".into(), json!("RollingUpdate"));
        default(strategy, "rollingUpdate", json!({}));
    }
    if str_of(strategy, "type") == "RollingUpdate"
        && let Some(ru) = strategy
            .get_mut("rollingUpdate")
            .and_then(Value::as_object_mut)
    {
        default(ru, "partition", json!(0));
    }
    let retention = child(spec, "persistentVolumeClaimRetentionPolicy");
    default_str(retention, "whenDeleted", "Retain");
    default_str(retention, "whenScaled", "Retain");
    default(spec, "replicas", json!(1));
    default(spec, "revisionHistoryLimit", json!(10));
    template(child(spec, "template"));
    for claim in objects_mut(spec, "volumeClaimTemplates") {
        default_str(claim, "apiVersion", "v1");
        default_str(claim, "kind", "PersistentVolumeClaim");
        child(claim, "metadata")
            .entry("creationTimestamp")
            .or_insert(Value::Null);
        pvc(claim);
    }
}

fn job_spec(spec: &mut Map<String, Value>) {
    let completions = spec.get("completions").is_some_and(|v| !v.is_null());
    let parallelism = spec.get("parallelism").is_some_and(|v| !v.is_null());
    if !completions && !parallelism {
        spec.insert("completions".into(), json!(1));
    }
    default(spec, "parallelism", json!(1));
    if spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null())
    {
        default(spec, "backoffLimit", json!(i32::MAX));
    } else {
        default(spec, "backoffLimit", json!(6));
    }
    default_str(spec, "completionMode", "NonIndexed");
    default(spec, "suspend", json!(false));
    let has_failure_policy = spec.get("podFailurePolicy").is_some_and(|v| !v.is_null());
    default_str(
        spec,
        "podReplacementPolicy",
        if has_failure_policy {
            "Failed"
        } else {
            "TerminatingOrFailed"
        },
    );
    if let Some(policy) = spec
        .get_mut("podFailurePolicy")
        .and_then(Value::as_object_mut)
    {
        for rule in objects_mut(policy, "rules") {
            for pattern in objects_mut(rule, "onPodConditions") {
                default_str(pattern, "status", "True");
            }
        }
    }
    template(child(spec, "template"));
}

fn job(root: &mut Map<String, Value>, creating: bool) {
    let spec = child(root, "spec");
    job_spec(spec);
    default(spec, "manualSelector", json!(false));
    let template_labels = ptr(spec, "/template/metadata/labels")
        .and_then(Value::as_object)
        .cloned();
    let meta = child(root, "metadata");
    let labels_empty = meta
        .get("labels")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    if labels_empty && let Some(labels) = template_labels {
        meta.insert("labels".into(), Value::Object(labels));
    }
    if creating {
        let mut obj = Value::Object(std::mem::take(root));
        generate_job_selector(&mut obj);
        if let Value::Object(m) = obj {
            *root = m;
        }
    }
}

/// Upstream's Job selector generation on create: unless `manualSelector` is true, adds
/// the `controller-uid`/`job-name` labels (legacy and `batch.kubernetes.io/` forms) to
/// the pod template and selects on the controller uid. Needs `metadata.uid` and
/// `metadata.name`; does nothing without a uid. When the Job has no labels of its own
/// it takes the template's, as upstream's read-time defaulting shows them.
pub fn generate_job_selector(obj: &mut Value) {
    let uid = obj
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if uid.is_empty() {
        return;
    }
    let Value::Object(root) = obj else {
        return;
    };
    let spec = child(root, "spec");
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let labels = child(child(child(spec, "template"), "metadata"), "labels");
    for key in [LEGACY_JOB_NAME, JOB_NAME] {
        labels.entry(key).or_insert_with(|| json!(name));
    }
    for key in [LEGACY_CONTROLLER_UID, CONTROLLER_UID] {
        labels.entry(key).or_insert_with(|| json!(uid));
    }
    let final_labels = labels.clone();
    let match_labels = child(child(spec, "selector"), "matchLabels");
    match_labels
        .entry(CONTROLLER_UID)
        .or_insert_with(|| json!(uid));
    let meta = child(root, "metadata");
    if meta
        .get("labels")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty)
    {
        meta.insert("labels".into(), Value::Object(final_labels));
    }
}

fn cron_job(spec: &mut Map<String, Value>) {
    default_str(spec, "concurrencyPolicy", "Allow");
    default(spec, "suspend", json!(false));
    default(spec, "successfulJobsHistoryLimit", json!(3));
    default(spec, "failedJobsHistoryLimit", json!(1));
    let job_template = child(spec, "jobTemplate");
    child(job_template, "metadata")
        .entry("creationTimestamp")
        .or_insert(Value::Null);
    let job = child(job_template, "spec");
    template(child(job, "template"));
}

fn service(root: &mut Map<String, Value>) {
    let spec = child(root, "spec");
    default_str(spec, "sessionAffinity", "None");
    match str_of(spec, "sessionAffinity") {
        "None" => {
            spec.remove("sessionAffinityConfig");
        }
        "ClientIP" => {
            let timeout = ptr(spec, "/sessionAffinityConfig/clientIP/timeoutSeconds")
                .is_some_and(|v| !v.is_null());
            if !timeout {
                spec.insert(
                    "sessionAffinityConfig".into(),
                    json!({"clientIP": {"timeoutSeconds": 10800}}),
                );
            }
        }
        _ => {}
    }
    default_str(spec, "type", "ClusterIP");
    for port in objects_mut(spec, "ports") {
        default_str(port, "protocol", "TCP");
        let unset = match port.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            _ => false,
        };
        if unset && let Some(p) = port.get("port").cloned() {
            port.insert("targetPort".into(), p);
        }
    }
    let svc_type = str_of(spec, "type").to_string();
    let external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let accessible = svc_type == "LoadBalancer"
        || svc_type == "NodePort"
        || (svc_type == "ClusterIP" && external_ips > 0);
    if accessible {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(svc_type.as_str(), "NodePort" | "LoadBalancer" | "ClusterIP") {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if svc_type == "LoadBalancer" {
        default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if svc_type != "ExternalName" {
        // The strategy keeps clusterIP and clusterIPs in step.
        let cluster_ip = str_of(spec, "clusterIP").to_string();
        if !cluster_ip.is_empty()
            && spec
                .get("clusterIPs")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
        {
            spec.insert("clusterIPs".into(), json!([cluster_ip]));
        }
        let headless = cluster_ip == "None";
        let no_selector = spec
            .get("selector")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty);
        let policy = if headless && no_selector {
            "RequireDualStack"
        } else {
            "SingleStack"
        };
        default(spec, "ipFamilyPolicy", json!(policy));
        let family = if crate::names::is_ipv6(&cluster_ip) {
            "IPv6"
        } else {
            "IPv4"
        };
        if spec
            .get("ipFamilies")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        {
            spec.insert("ipFamilies".into(), json!([family]));
        }
    }
    let status = child(root, "status");
    default(status, "loadBalancer", json!({}));
    if svc_type == "LoadBalancer"
        && let Some(ingress) = status
            .get_mut("loadBalancer")
            .and_then(|lb| lb.get_mut("ingress"))
            .and_then(Value::as_array_mut)
    {
        for ing in ingress.iter_mut().filter_map(Value::as_object_mut) {
            if !str_of(ing, "ip").is_empty() {
                default(ing, "ipMode", json!("VIP"));
            }
        }
    }
}

fn namespace(root: &mut Map<String, Value>, creating: bool) {
    let name = ptr(root, "/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !name.is_empty() {
        child(child(root, "metadata"), "labels")
            .insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    if creating {
        let spec = child(root, "spec");
        let finalizers = spec.entry("finalizers").or_insert_with(|| json!([]));
        if !finalizers.is_array() {
            *finalizers = json!([]);
        }
        if let Value::Array(list) = finalizers
            && !list.iter().any(|f| f.as_str() == Some("kubernetes"))
        {
            list.push(json!("kubernetes"));
        }
    }
    default_str(child(root, "status"), "phase", "Active");
}

fn secret(root: &mut Map<String, Value>) {
    default_str(root, "type", "Opaque");
    if let Some(Value::Object(string_data)) = root.remove("stringData") {
        let data = child(root, "data");
        for (k, v) in string_data {
            if let Some(text) = v.as_str() {
                data.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(text.as_bytes())),
                );
            }
        }
    }
}

fn node(root: &mut Map<String, Value>) {
    let spec = child(root, "spec");
    let pod_cidr = str_of(spec, "podCIDR").to_string();
    if !pod_cidr.is_empty() {
        let first = ptr(spec, "/podCIDRs/0")
            .and_then(Value::as_str)
            .map(str::to_string);
        if first.as_deref() != Some(pod_cidr.as_str()) {
            spec.insert("podCIDRs".into(), json!([pod_cidr]));
        }
    } else if let Some(first) = ptr(spec, "/podCIDRs/0")
        .and_then(Value::as_str)
        .map(str::to_string)
    {
        spec.insert("podCIDR".into(), json!(first));
    }
    if root
        .get("spec")
        .and_then(Value::as_object)
        .is_some_and(Map::is_empty)
    {
        root.remove("spec");
    }
    if let Some(status) = root.get_mut("status").and_then(Value::as_object_mut) {
        for key in ["capacity", "allocatable"] {
            if let Some(list) = status.get_mut(key) {
                resource_list(list);
            }
        }
        if status.get("allocatable").is_none_or(Value::is_null)
            && let Some(capacity) = status.get("capacity").cloned()
        {
            status.insert("allocatable".into(), capacity);
        }
    }
}

/// Upstream's built-in PriorityClasses (created at API server start there) and their
/// values, used when the store has no object of that name.
const SYSTEM_PRIORITY_CLASSES: [(&str, i64); 2] = [
    ("system-cluster-critical", 2_000_000_000),
    ("system-node-critical", 2_000_001_000),
];

/// The `spec.priorityClassName` of a Pod, when it names one.
pub fn pod_priority_class_name(obj: &Value) -> Option<&str> {
    obj.get("spec")?
        .get("priorityClassName")?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// Upstream's Priority admission plugin for a new Pod: `class` is the PriorityClass
/// the Pod names (`None` when it does not exist), or for a Pod that names none, the
/// cluster's `globalDefault` class (`None` when there is none). Sets `spec.priority`
/// to the class's value and `spec.preemptionPolicy` to the class's policy (default
/// `PreemptLowerPriority`); a Pod naming no class gets the default class's name, or
/// priority 0 when there is no default.
///
/// Errors (the server answers 403 Forbidden with the message) when the class does not
/// exist, or when the Pod gives a `priority` or `preemptionPolicy` that differs from
/// what the class computes.
pub fn admit_pod_priority(obj: &mut Value, class: Option<&Value>) -> Result<(), String> {
    let Some(name) = pod_priority_class_name(obj).map(str::to_string) else {
        let Some(default) = class else {
            if let Some(Value::Object(spec)) = obj.get_mut("spec") {
                match spec.get("priority") {
                    None | Some(Value::Null) => {
                        spec.insert("priority".into(), json!(0));
                    }
                    Some(_) => {}
                }
            }
            return Ok(());
        };
        let Some(default_name) = default["metadata"]["name"].as_str().map(str::to_string) else {
            return Ok(());
        };
        if let Some(Value::Object(spec)) = obj.get_mut("spec") {
            spec.insert("priorityClassName".into(), json!(default_name));
        }
        return admit_pod_priority(obj, Some(default));
    };
    let (value, policy) = match class {
        Some(c) => (
            c.get("value").and_then(Value::as_i64).unwrap_or(0),
            c.get("preemptionPolicy")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or("PreemptLowerPriority")
                .to_string(),
        ),
        None => match SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _)| *n == name) {
            Some((_, v)) => (*v, "PreemptLowerPriority".to_string()),
            None => return Err(format!("no PriorityClass with name {name} was found")),
        },
    };
    let Some(Value::Object(spec)) = obj.get_mut("spec") else {
        return Ok(());
    };
    match spec.get("priority") {
        None | Some(Value::Null) => {}
        Some(p) if p.as_i64() == Some(value) => {}
        Some(p) => {
            return Err(format!(
                "the integer value of priority ({p}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
            ));
        }
    }
    match spec.get("preemptionPolicy").and_then(Value::as_str) {
        None | Some("") => {}
        Some(p) if p == policy => {}
        Some(p) => {
            return Err(format!(
                "the string value of PreemptionPolicy ({p}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
            ));
        }
    }
    spec.insert("priority".into(), json!(value));
    spec.insert("preemptionPolicy".into(), json!(policy));
    Ok(())
}

#[cfg(test)]
mod priority_admission_tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn global_default_class_applies_to_pods_naming_none() {
        let class = json!({"metadata": {"name": "everyone"}, "value": 1000, "globalDefault": true});
        let mut p = pod(json!({"containers": []}));
        admit_pod_priority(&mut p, Some(&class)).unwrap();
        assert_eq!(p["spec"]["priorityClassName"], json!("everyone"));
        assert_eq!(p["spec"]["priority"], json!(1000));
        assert_eq!(p["spec"]["preemptionPolicy"], json!("PreemptLowerPriority"));
        // No default: priority 0, no class name.
        let mut p = pod(json!({"containers": []}));
        admit_pod_priority(&mut p, None).unwrap();
        assert_eq!(p["spec"]["priority"], json!(0));
        assert!(p["spec"].get("priorityClassName").is_none());
    }

    #[test]
    fn named_class_sets_priority_and_policy() {
        let class =
            json!({"metadata": {"name": "high"}, "value": 100000, "preemptionPolicy": "Never"});
        let mut p = pod(json!({"priorityClassName": "high", "containers": []}));
        admit_pod_priority(&mut p, Some(&class)).unwrap();
        assert_eq!(p["spec"]["priority"], json!(100000));
        assert_eq!(p["spec"]["preemptionPolicy"], json!("Never"));

        let class = json!({"metadata": {"name": "low"}, "value": 100});
        let mut p = pod(json!({"priorityClassName": "low"}));
        admit_pod_priority(&mut p, Some(&class)).unwrap();
        assert_eq!(p["spec"]["priority"], json!(100));
        assert_eq!(p["spec"]["preemptionPolicy"], json!("PreemptLowerPriority"));
        // The later admission defaults keep what the class computed.
        apply_admission_defaults("", "Pod", &mut p);
        assert_eq!(p["spec"]["priority"], json!(100));
    }

    #[test]
    fn missing_class_and_conflicting_values_are_refused() {
        let mut p = pod(json!({"priorityClassName": "nope"}));
        assert_eq!(
            admit_pod_priority(&mut p, None).unwrap_err(),
            "no PriorityClass with name nope was found"
        );
        assert!(p["spec"].get("priority").is_none());

        let class = json!({"value": 100});
        let mut p = pod(json!({"priorityClassName": "low", "priority": 7}));
        let e = admit_pod_priority(&mut p, Some(&class)).unwrap_err();
        assert!(
            e.starts_with("the integer value of priority (7) must not be provided"),
            "{e}"
        );
        let mut p = pod(json!({"priorityClassName": "low", "priority": 100}));
        admit_pod_priority(&mut p, Some(&class)).unwrap();

        let mut p = pod(json!({"priorityClassName": "low", "preemptionPolicy": "Never"}));
        assert!(admit_pod_priority(&mut p, Some(&class)).is_err());
    }

    #[test]
    fn system_classes_and_unnamed_pods() {
        let mut p = pod(json!({"priorityClassName": "system-node-critical"}));
        admit_pod_priority(&mut p, None).unwrap();
        assert_eq!(p["spec"]["priority"], json!(2_000_001_000));

        // A pod naming no class, with no default class: priority 0, as upstream; a
        // priority it gives itself is kept.
        let mut p = pod(json!({"containers": []}));
        admit_pod_priority(&mut p, None).unwrap();
        assert_eq!(p["spec"]["priority"], json!(0));
        let mut p = pod(json!({"containers": [], "priority": 7}));
        admit_pod_priority(&mut p, None).unwrap();
        assert_eq!(p["spec"]["priority"], json!(7));
    }
}
