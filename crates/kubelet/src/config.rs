//! The kubelet's configuration: a `KubeletConfiguration` file
//! (`kubelet.config.k8s.io/v1beta1`, YAML or JSON, upstream field names and defaults)
//! overridden by command-line flags ([`KubeletFlags`]).
//!
//! As upstream, a zero duration (`0s`, which kubeadm writes for every unset duration)
//! means "use the default". Fields upstream knows but Flotilla does not act on are
//! accepted and kept (so a kubeadm-written file loads), unknown fields are refused.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `apiVersion` of the configuration file.
pub const API_VERSION: &str = "kubelet.config.k8s.io/v1beta1";
/// `kind` of the configuration file.
pub const KIND: &str = "KubeletConfiguration";
/// Upstream's conventional static pod directory.
pub const DEFAULT_STATIC_POD_PATH: &str = "/etc/kubernetes/manifests";
/// Upstream's default `--root-dir`.
pub const DEFAULT_ROOT_DIR: &str = "/var/lib/kubelet";

/// Errors loading or merging the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading kubelet config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing kubelet config {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing kubelet config: {0}")]
    Syntax(String),
    #[error("kubelet config field {field}: {message}")]
    Field { field: String, message: String },
    #[error("invalid flag {flag}: {message}")]
    Flag { flag: String, message: String },
}

fn field_err(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field: field.into(),
        message: message.into(),
    }
}

/// A Go `time.Duration` as written in config files (`20s`, `1m30s`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    /// Whether this is the zero duration (meaning "default" in the file).
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
    fn or_default(&mut self, d: Duration) {
        if self.0.is_zero() {
            self.0 = d;
        }
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&api::duration::format(self.0))
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        api::duration::parse(&text)
            .map(GoDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// `authentication.anonymous`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AnonymousAuthentication {
    pub enabled: Option<bool>,
}

/// `authentication.webhook`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WebhookAuthentication {
    pub enabled: Option<bool>,
    #[serde(rename = "cacheTTL")]
    pub cache_ttl: GoDuration,
}

/// `authentication.x509`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct X509Authentication {
    #[serde(rename = "clientCAFile", skip_serializing_if = "String::is_empty")]
    pub client_ca_file: String,
}

/// `authentication`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Authentication {
    pub anonymous: AnonymousAuthentication,
    pub webhook: WebhookAuthentication,
    pub x509: X509Authentication,
}

/// `authorization.webhook`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WebhookAuthorization {
    #[serde(rename = "cacheAuthorizedTTL")]
    pub cache_authorized_ttl: GoDuration,
    #[serde(rename = "cacheUnauthorizedTTL")]
    pub cache_unauthorized_ttl: GoDuration,
}

/// `authorization`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Authorization {
    /// `AlwaysAllow` or `Webhook`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
    pub webhook: WebhookAuthorization,
}

/// The `KubeletConfiguration` file, upstream field names. After [`load`] or
/// [`KubeletConfiguration::with_defaults`] every defaultable field holds its value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct KubeletConfiguration {
    pub api_version: String,
    pub kind: String,
    /// Directory of static pod manifests.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub static_pod_path: String,
    #[serde(rename = "staticPodURL", skip_serializing_if = "String::is_empty")]
    pub static_pod_url: String,
    pub sync_frequency: GoDuration,
    pub file_check_frequency: GoDuration,
    pub http_check_frequency: GoDuration,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub address: String,
    pub port: i32,
    pub read_only_port: i32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tls_cert_file: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tls_private_key_file: String,
    pub rotate_certificates: bool,
    #[serde(rename = "serverTLSBootstrap")]
    pub server_tls_bootstrap: bool,
    pub authentication: Authentication,
    pub authorization: Authorization,
    pub register_node: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub register_with_taints: Vec<Taint>,
    /// `0` disables the healthz endpoint; unset means 10248.
    pub healthz_port: Option<i32>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub healthz_bind_address: String,
    #[serde(rename = "clusterDNS", skip_serializing_if = "Vec::is_empty")]
    pub cluster_dns: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster_domain: String,
    pub streaming_connection_idle_timeout: GoDuration,
    pub node_status_update_frequency: GoDuration,
    pub node_status_report_frequency: GoDuration,
    pub node_lease_duration_seconds: i32,
    #[serde(rename = "imageMinimumGCAge")]
    pub image_minimum_gc_age: GoDuration,
    #[serde(rename = "imageMaximumGCAge")]
    pub image_maximum_gc_age: GoDuration,
    #[serde(rename = "imageGCHighThresholdPercent")]
    pub image_gc_high_threshold_percent: Option<i32>,
    #[serde(rename = "imageGCLowThresholdPercent")]
    pub image_gc_low_threshold_percent: Option<i32>,
    pub volume_stats_agg_period: GoDuration,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cgroup_root: String,
    #[serde(rename = "cgroupsPerQOS")]
    pub cgroups_per_qos: Option<bool>,
    /// `cgroupfs` or `systemd`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cgroup_driver: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cpu_manager_policy: String,
    pub cpu_manager_reconcile_period: GoDuration,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub memory_manager_policy: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub topology_manager_policy: String,
    pub runtime_request_timeout: GoDuration,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hairpin_mode: String,
    pub max_pods: i32,
    #[serde(rename = "podCIDR", skip_serializing_if = "String::is_empty")]
    pub pod_cidr: String,
    pub pod_pids_limit: Option<i64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resolv_conf: String,
    pub serialize_image_pulls: Option<bool>,
    /// Hard eviction thresholds (`memory.available: 100Mi`); unset means upstream's.
    pub eviction_hard: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eviction_soft: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eviction_soft_grace_period: Option<BTreeMap<String, String>>,
    pub eviction_pressure_transition_period: GoDuration,
    pub eviction_max_pod_grace_period: i32,
    pub fail_swap_on: Option<bool>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub feature_gates: BTreeMap<String, bool>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub system_reserved: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub kube_reserved: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub enforce_node_allocatable: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub container_log_max_size: String,
    pub container_log_max_files: Option<i32>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub container_runtime_endpoint: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image_service_endpoint: String,
    pub shutdown_grace_period: GoDuration,
    pub shutdown_grace_period_critical_pods: GoDuration,
    #[serde(rename = "providerID", skip_serializing_if = "String::is_empty")]
    pub provider_id: String,
    pub protect_kernel_defaults: bool,
    pub make_iptables_util_chains: Option<bool>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub system_cgroups: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kubelet_cgroups: String,
    /// `RuntimeDefault` seccomp for containers that ask for no profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp_default: Option<bool>,
    /// Logging options (format, verbosity); accepted, Flotilla logs through `tracing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<serde_json::Value>,
}

/// Upstream's default hard eviction thresholds.
pub fn default_eviction_hard() -> BTreeMap<String, String> {
    [
        ("memory.available", "100Mi"),
        ("nodefs.available", "10%"),
        ("nodefs.inodesFree", "5%"),
        ("imagefs.available", "15%"),
        ("imagefs.inodesFree", "5%"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

const EVICTION_SIGNALS: &[&str] = &[
    "memory.available",
    "nodefs.available",
    "nodefs.inodesFree",
    "imagefs.available",
    "imagefs.inodesFree",
    "containerfs.available",
    "containerfs.inodesFree",
    "pid.available",
    "allocatableMemory.available",
];

impl KubeletConfiguration {
    /// Fill every unset (or zero-duration) field with upstream's default.
    pub fn with_defaults(mut self) -> Self {
        let s = &mut self;
        if s.api_version.is_empty() {
            s.api_version = API_VERSION.into();
        }
        if s.kind.is_empty() {
            s.kind = KIND.into();
        }
        s.sync_frequency.or_default(Duration::from_secs(60));
        s.file_check_frequency.or_default(Duration::from_secs(20));
        s.http_check_frequency.or_default(Duration::from_secs(20));
        if s.address.is_empty() {
            s.address = "0.0.0.0".into();
        }
        if s.port == 0 {
            s.port = 10250;
        }
        s.authentication.anonymous.enabled.get_or_insert(false);
        s.authentication.webhook.enabled.get_or_insert(true);
        s.authentication
            .webhook
            .cache_ttl
            .or_default(Duration::from_secs(120));
        if s.authorization.mode.is_empty() {
            s.authorization.mode = "Webhook".into();
        }
        s.authorization
            .webhook
            .cache_authorized_ttl
            .or_default(Duration::from_secs(300));
        s.authorization
            .webhook
            .cache_unauthorized_ttl
            .or_default(Duration::from_secs(30));
        s.register_node.get_or_insert(true);
        s.healthz_port.get_or_insert(10248);
        if s.healthz_bind_address.is_empty() {
            s.healthz_bind_address = "127.0.0.1".into();
        }
        s.streaming_connection_idle_timeout
            .or_default(Duration::from_secs(4 * 3600));
        s.node_status_update_frequency
            .or_default(Duration::from_secs(10));
        s.node_status_report_frequency
            .or_default(Duration::from_secs(300));
        if s.node_lease_duration_seconds == 0 {
            s.node_lease_duration_seconds = 40;
        }
        s.image_minimum_gc_age.or_default(Duration::from_secs(120));
        s.image_gc_high_threshold_percent.get_or_insert(85);
        s.image_gc_low_threshold_percent.get_or_insert(80);
        s.volume_stats_agg_period
            .or_default(Duration::from_secs(60));
        s.cgroups_per_qos.get_or_insert(true);
        if s.cgroup_driver.is_empty() {
            s.cgroup_driver = "cgroupfs".into();
        }
        if s.cpu_manager_policy.is_empty() {
            s.cpu_manager_policy = "none".into();
        }
        s.cpu_manager_reconcile_period
            .or_default(Duration::from_secs(10));
        if s.memory_manager_policy.is_empty() {
            s.memory_manager_policy = "None".into();
        }
        if s.topology_manager_policy.is_empty() {
            s.topology_manager_policy = "none".into();
        }
        s.runtime_request_timeout
            .or_default(Duration::from_secs(120));
        if s.hairpin_mode.is_empty() {
            s.hairpin_mode = "promiscuous-bridge".into();
        }
        if s.max_pods == 0 {
            s.max_pods = 110;
        }
        s.pod_pids_limit.get_or_insert(-1);
        if s.resolv_conf.is_empty() {
            s.resolv_conf = "/etc/resolv.conf".into();
        }
        s.serialize_image_pulls.get_or_insert(true);
        if s.eviction_hard.is_none() {
            s.eviction_hard = Some(default_eviction_hard());
        }
        s.eviction_pressure_transition_period
            .or_default(Duration::from_secs(300));
        s.fail_swap_on.get_or_insert(true);
        if s.enforce_node_allocatable.is_empty() {
            s.enforce_node_allocatable = vec!["pods".into()];
        }
        if s.container_log_max_size.is_empty() {
            s.container_log_max_size = "10Mi".into();
        }
        s.container_log_max_files.get_or_insert(5);
        s.make_iptables_util_chains.get_or_insert(true);
        self
    }

    /// Check values, naming the first offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.api_version != API_VERSION {
            return Err(field_err(
                "apiVersion",
                format!("must be {API_VERSION:?}, got {:?}", self.api_version),
            ));
        }
        if self.kind != KIND {
            return Err(field_err(
                "kind",
                format!("must be {KIND:?}, got {:?}", self.kind),
            ));
        }
        let port_ok = |p: i32| (0..=65535).contains(&p);
        for (name, p) in [
            ("port", self.port),
            ("readOnlyPort", self.read_only_port),
            ("healthzPort", self.healthz_port.unwrap_or(0)),
        ] {
            if !port_ok(p) {
                return Err(field_err(name, format!("{p} is not a port (0-65535)")));
            }
        }
        for (name, a) in [
            ("address", &self.address),
            ("healthzBindAddress", &self.healthz_bind_address),
        ] {
            if a.parse::<IpAddr>().is_err() {
                return Err(field_err(name, format!("{a:?} is not an IP address")));
            }
        }
        for (i, ip) in self.cluster_dns.iter().enumerate() {
            if ip.parse::<IpAddr>().is_err() {
                return Err(field_err(
                    &format!("clusterDNS[{i}]"),
                    format!("{ip:?} is not an IP address"),
                ));
            }
        }
        if !matches!(self.cgroup_driver.as_str(), "cgroupfs" | "systemd") {
            return Err(field_err(
                "cgroupDriver",
                format!(
                    "{:?} is not supported (cgroupfs, systemd)",
                    self.cgroup_driver
                ),
            ));
        }
        if !matches!(self.authorization.mode.as_str(), "AlwaysAllow" | "Webhook") {
            return Err(field_err(
                "authorization.mode",
                format!(
                    "{:?} is not supported (AlwaysAllow, Webhook)",
                    self.authorization.mode
                ),
            ));
        }
        if self.max_pods < 1 {
            return Err(field_err("maxPods", "must be at least 1"));
        }
        if !self.pod_cidr.is_empty() && self.pod_cidr.parse::<ipnet::IpNet>().is_err() {
            return Err(field_err(
                "podCIDR",
                format!("{:?} is not a CIDR", self.pod_cidr),
            ));
        }
        if self.node_lease_duration_seconds < 1 {
            return Err(field_err("nodeLeaseDurationSeconds", "must be positive"));
        }
        for (k, v) in self.eviction_hard.iter().flatten() {
            let field = format!("evictionHard[{k}]");
            if !EVICTION_SIGNALS.contains(&k.as_str()) {
                return Err(field_err(&field, "unknown eviction signal"));
            }
            parse_threshold(v).map_err(|m| field_err(&field, m))?;
        }
        for (i, t) in self.register_with_taints.iter().enumerate() {
            check_effect(&t.effect)
                .map_err(|m| field_err(&format!("registerWithTaints[{i}].effect"), m))?;
        }
        Ok(())
    }

    /// Parse a file's text (YAML or JSON) and apply defaults and validation.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        // YAML is a superset of JSON: one parser reads both.
        let value: serde_json::Value =
            serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        let cfg: KubeletConfiguration = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." || path.is_empty() {
                ConfigError::Syntax(inner)
            } else {
                field_err(&path, inner)
            }
        })?;
        if cfg.api_version.is_empty() {
            return Err(field_err("apiVersion", format!("required ({API_VERSION})")));
        }
        if cfg.kind.is_empty() {
            return Err(field_err("kind", format!("required ({KIND})")));
        }
        let cfg = cfg.with_defaults();
        cfg.validate()?;
        Ok(cfg)
    }

    /// Serialise as YAML.
    pub fn to_yaml(&self) -> Result<String, ConfigError> {
        serde_yaml_ng::to_string(self).map_err(|e| ConfigError::Syntax(e.to_string()))
    }
}

/// An eviction threshold: a quantity (`100Mi`) or a percentage (`10%`).
#[derive(Clone, Debug, PartialEq)]
pub enum Threshold {
    /// Absolute amount (bytes, inodes, PIDs).
    Quantity(i64),
    /// Fraction of capacity, 0-100.
    Percent(f64),
}

/// Parse an eviction threshold value.
pub fn parse_threshold(v: &str) -> Result<Threshold, String> {
    if let Some(p) = v.strip_suffix('%') {
        let f: f64 = p
            .parse()
            .map_err(|_| format!("{v:?} is not a percentage"))?;
        if !(0.0..=100.0).contains(&f) {
            return Err(format!("{v:?} must be between 0% and 100%"));
        }
        return Ok(Threshold::Percent(f));
    }
    api::quantity::Quantity::parse(v)
        .map(|q| Threshold::Quantity(q.value()))
        .map_err(|e| format!("{v:?} is not a quantity: {e}"))
}

fn check_effect(effect: &str) -> Result<(), String> {
    match effect {
        "NoSchedule" | "PreferNoSchedule" | "NoExecute" => Ok(()),
        other => Err(format!(
            "{other:?} is not a taint effect (NoSchedule, PreferNoSchedule, NoExecute)"
        )),
    }
}

/// Read and parse a configuration file.
pub fn load(path: &Path) -> Result<KubeletConfiguration, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    KubeletConfiguration::parse(&text)
}

/// The configuration the all-in-one server writes: upstream defaults with
/// `staticPodPath` set.
pub fn default_config(static_pod_path: &Path) -> KubeletConfiguration {
    KubeletConfiguration {
        static_pod_path: static_pod_path.display().to_string(),
        ..Default::default()
    }
    .with_defaults()
}

/// Write [`default_config`] to `path` (YAML), creating parent directories. The file
/// is written next to its final name and renamed, never left half-written.
pub fn write_default_config(
    path: &Path,
    static_pod_path: &Path,
) -> Result<KubeletConfiguration, ConfigError> {
    let cfg = default_config(static_pod_path);
    let text = cfg.to_yaml()?;
    let werr = |source| ConfigError::Write {
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(werr)?;
    }
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).map_err(werr)?;
    std::fs::rename(&tmp, path).map_err(werr)?;
    Ok(cfg)
}

/// The kubelet's command-line flags (flatten into a clap command). Flags override
/// the file given by `--config`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct KubeletFlags {
    /// KubeletConfiguration file (YAML or JSON).
    #[arg(long = "config")]
    pub config: Option<PathBuf>,
    /// Static pod directory (overrides staticPodPath).
    #[arg(long = "pod-manifest-path")]
    pub pod_manifest_path: Option<PathBuf>,
    /// Name of this node (default: the host name).
    #[arg(long = "node-name", alias = "hostname-override")]
    pub node_name: Option<String>,
    /// Kubeconfig to reach the API server; without it the kubelet runs standalone
    /// (static pods only).
    #[arg(long = "kubeconfig")]
    pub kubeconfig: Option<PathBuf>,
    /// Directory for the kubelet's files.
    #[arg(long = "root-dir", default_value = DEFAULT_ROOT_DIR)]
    pub root_dir: PathBuf,
    /// Labels to add when registering the node (`k=v,k2=v2`).
    #[arg(long = "node-labels", value_delimiter = ',')]
    pub node_labels: Vec<String>,
    /// Taints to register the node with (`key=value:Effect,key:Effect`).
    #[arg(long = "register-with-taints", value_delimiter = ',')]
    pub register_with_taints: Vec<String>,
    /// The IP to report as the node's InternalIP (default: the source address of the
    /// default route).
    #[arg(long = "node-ip")]
    pub node_ip: Option<IpAddr>,
    /// Hard eviction thresholds, replacing the configured ones
    /// (`memory.available<100Mi,nodefs.available<10%`), as upstream's flag.
    #[arg(long = "eviction-hard", value_delimiter = ',')]
    pub eviction_hard: Vec<String>,
    /// `syncFrequency`, replacing the configured one (`1m0s`, `10s`): how often running
    /// pods are synced, which bounds how soon ConfigMap/Secret edits reach their volumes.
    #[arg(long = "sync-frequency", value_parser = parse_flag_duration)]
    pub sync_frequency: Option<Duration>,
}

fn parse_flag_duration(s: &str) -> Result<Duration, String> {
    let d = api::duration::parse(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be positive".into());
    }
    Ok(d)
}

/// Parses `--eviction-hard` items (`signal<quantity-or-percentage`).
pub fn parse_eviction_thresholds(
    items: &[String],
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let Some((signal, value)) = item.split_once('<') else {
            return Err(ConfigError::Flag {
                flag: "--eviction-hard".into(),
                message: format!("{item:?}: expected signal<value, e.g. nodefs.available<10%"),
            });
        };
        out.insert(signal.trim().to_string(), value.trim().to_string());
    }
    Ok(out)
}

/// Configuration after merging file and flags.
#[derive(Clone, Debug)]
pub struct MergedConfig {
    pub kubelet: KubeletConfiguration,
    pub node_name: String,
    pub kubeconfig: Option<PathBuf>,
    pub root_dir: PathBuf,
    pub node_labels: BTreeMap<String, String>,
    pub node_ip: Option<IpAddr>,
}

/// Parse `--node-labels` entries.
pub fn parse_node_labels(items: &[String]) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for item in items.iter().filter(|s| !s.trim().is_empty()) {
        let (k, v) = item.split_once('=').ok_or_else(|| ConfigError::Flag {
            flag: "--node-labels".into(),
            message: format!("{item:?} is not key=value"),
        })?;
        if k.trim().is_empty() {
            return Err(ConfigError::Flag {
                flag: "--node-labels".into(),
                message: format!("{item:?} has an empty key"),
            });
        }
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// Parse `--register-with-taints` entries (`key=value:Effect` or `key:Effect`).
pub fn parse_taints(items: &[String]) -> Result<Vec<Taint>, ConfigError> {
    let bad = |item: &str, m: String| ConfigError::Flag {
        flag: "--register-with-taints".into(),
        message: format!("{item:?}: {m}"),
    };
    let mut out = Vec::new();
    for item in items.iter().filter(|s| !s.trim().is_empty()) {
        let (kv, effect) = item
            .rsplit_once(':')
            .ok_or_else(|| bad(item, "missing :Effect".into()))?;
        check_effect(effect).map_err(|m| bad(item, m))?;
        let (key, value) = match kv.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (kv, None),
        };
        if key.is_empty() {
            return Err(bad(item, "empty key".into()));
        }
        out.push(Taint {
            key: key.into(),
            value,
            effect: effect.into(),
            time_added: None,
        });
    }
    Ok(out)
}

/// The default node name: the host name, lower-cased.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.trim().to_lowercase())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Load `--config` (if given) and apply the flags on top.
pub fn merge(flags: &KubeletFlags) -> Result<MergedConfig, ConfigError> {
    let mut kubelet = match &flags.config {
        Some(p) => load(p)?,
        None => KubeletConfiguration::default().with_defaults(),
    };
    merge_into(&mut kubelet, flags)?;
    Ok(MergedConfig {
        node_name: flags.node_name.clone().unwrap_or_else(host_name),
        kubeconfig: flags.kubeconfig.clone(),
        root_dir: flags.root_dir.clone(),
        node_labels: parse_node_labels(&flags.node_labels)?,
        node_ip: flags.node_ip,
        kubelet,
    })
}

/// Apply the flags that live in the configuration to an already loaded one.
pub fn merge_into(
    kubelet: &mut KubeletConfiguration,
    flags: &KubeletFlags,
) -> Result<(), ConfigError> {
    if let Some(p) = &flags.pod_manifest_path {
        kubelet.static_pod_path = p.display().to_string();
    }
    if kubelet.static_pod_path.is_empty() {
        kubelet.static_pod_path = DEFAULT_STATIC_POD_PATH.into();
    }
    if !flags.register_with_taints.is_empty() {
        kubelet.register_with_taints = parse_taints(&flags.register_with_taints)?;
    }
    if let Some(d) = flags.sync_frequency {
        kubelet.sync_frequency = GoDuration(d);
    }
    if !flags.eviction_hard.is_empty() {
        kubelet.eviction_hard = Some(parse_eviction_thresholds(&flags.eviction_hard)?);
        kubelet.validate().map_err(|e| ConfigError::Flag {
            flag: "--eviction-hard".into(),
            message: e.to_string(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kubeadm-written file of seed 004, verbatim except the author's arrow note
    /// after `staticPodPath`.
    const SEED_004: &str = "apiVersion: kubelet.config.k8s.io/v1beta1
authentication:
  anonymous:
    enabled: false
  webhook:
    cacheTTL: 0s
    enabled: true
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
authorization:
  mode: Webhook
  webhook:
    cacheAuthorizedTTL: 0s
    cacheUnauthorizedTTL: 0s
cgroupDriver: systemd
clusterDNS:
- 10.96.0.10
clusterDomain: cluster.local
cpuManagerReconcilePeriod: 0s
evictionPressureTransitionPeriod: 0s
fileCheckFrequency: 0s
healthzBindAddress: 127.0.0.1
healthzPort: 10248
httpCheckFrequency: 0s
imageMinimumGCAge: 0s
kind: KubeletConfiguration
logging: {}
nodeStatusReportFrequency: 0s
nodeStatusUpdateFrequency: 0s
resolvConf: /run/systemd/resolve/resolv.conf
rotateCertificates: true
runtimeRequestTimeout: 0s
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
staticPodPath: /etc/kubernetes/manifests
streamingConnectionIdleTimeout: 0s
syncFrequency: 0s
volumeStatsAggPeriod: 0s
";

    #[test]
    fn seed_004_file_parses_with_upstream_defaults() {
        let c = KubeletConfiguration::parse(SEED_004).expect("seed parses");
        assert_eq!(c.static_pod_path, "/etc/kubernetes/manifests");
        assert_eq!(c.cluster_dns, vec!["10.96.0.10".to_string()]);
        assert_eq!(c.cluster_domain, "cluster.local");
        assert_eq!(c.cgroup_driver, "systemd");
        assert_eq!(c.resolv_conf, "/run/systemd/resolve/resolv.conf");
        assert_eq!(
            c.authentication.x509.client_ca_file,
            "/etc/kubernetes/pki/ca.crt"
        );
        assert_eq!(c.authentication.anonymous.enabled, Some(false));
        assert_eq!(c.authorization.mode, "Webhook");
        // 0s means default.
        assert_eq!(c.file_check_frequency.0, Duration::from_secs(20));
        assert_eq!(c.sync_frequency.0, Duration::from_secs(60));
        assert_eq!(c.node_status_update_frequency.0, Duration::from_secs(10));
        assert_eq!(c.node_status_report_frequency.0, Duration::from_secs(300));
        assert_eq!(
            c.authentication.webhook.cache_ttl.0,
            Duration::from_secs(120)
        );
        assert_eq!(c.shutdown_grace_period.0, Duration::ZERO);
        assert_eq!(c.healthz_port, Some(10248));
    }

    #[test]
    fn seed_004_as_json_parses_too() {
        let v: serde_json::Value = serde_yaml_ng::from_str(SEED_004).expect("yaml");
        let json = serde_json::to_string(&v).expect("json");
        let c = KubeletConfiguration::parse(&json).expect("json parses");
        assert_eq!(c.cluster_domain, "cluster.local");
    }

    #[test]
    fn defaults_match_upstream() {
        let c = KubeletConfiguration::parse(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n",
        )
        .expect("minimal parses");
        assert_eq!(c.file_check_frequency.0, Duration::from_secs(20));
        assert_eq!(c.sync_frequency.0, Duration::from_secs(60));
        assert_eq!(c.healthz_port, Some(10248));
        assert_eq!(c.healthz_bind_address, "127.0.0.1");
        assert_eq!(c.port, 10250);
        assert_eq!(c.address, "0.0.0.0");
        assert_eq!(c.cgroup_driver, "cgroupfs");
        assert_eq!(c.max_pods, 110);
        assert_eq!(c.node_lease_duration_seconds, 40);
        assert_eq!(c.resolv_conf, "/etc/resolv.conf");
        assert_eq!(c.authentication.webhook.enabled, Some(true));
        assert_eq!(c.authentication.anonymous.enabled, Some(false));
        assert_eq!(c.eviction_hard, Some(default_eviction_hard()));
        assert_eq!(
            c.eviction_hard
                .as_ref()
                .and_then(|e| e.get("memory.available")),
            Some(&"100Mi".to_string())
        );
    }

    #[test]
    fn unknown_field_is_named() {
        let e = KubeletConfiguration::parse(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPth: /x\n",
        )
        .expect_err("unknown field");
        assert!(e.to_string().contains("staticPodPth"), "{e}");
        let e = KubeletConfiguration::parse(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nauthentication:\n  webhook:\n    cacheTTL: soon\n",
        )
        .expect_err("bad duration");
        assert!(
            e.to_string().contains("authentication.webhook.cacheTTL"),
            "{e}"
        );
    }

    #[test]
    fn invalid_values_are_named() {
        let base = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";
        for (extra, field) in [
            ("cgroupDriver: nope\n", "cgroupDriver"),
            ("healthzPort: 70000\n", "healthzPort"),
            ("clusterDNS: [notanip]\n", "clusterDNS[0]"),
            ("maxPods: -3\n", "maxPods"),
            ("evictionHard: {memory.available: lots}\n", "evictionHard"),
            ("podCIDR: 10.0.0.0/99\n", "podCIDR"),
        ] {
            let e = KubeletConfiguration::parse(&format!("{base}{extra}")).expect_err(extra);
            assert!(e.to_string().contains(field), "{extra}: {e}");
        }
        let e = KubeletConfiguration::parse("kind: KubeletConfiguration\n").expect_err("version");
        assert!(e.to_string().contains("apiVersion"), "{e}");
    }

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kubelet.yaml");
        std::fs::write(&path, SEED_004).expect("write");
        let flags = KubeletFlags {
            config: Some(path),
            pod_manifest_path: Some("/srv/manifests".into()),
            node_name: Some("worker-1".into()),
            node_labels: vec!["zone=a".into(), "role=edge".into()],
            register_with_taints: vec!["dedicated=infra:NoSchedule".into(), "gpu:NoExecute".into()],
            sync_frequency: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        let m = merge(&flags).expect("merge");
        assert_eq!(m.kubelet.sync_frequency.0, Duration::from_secs(5));
        assert!(parse_flag_duration("0s").is_err());
        assert_eq!(parse_flag_duration("1m0s"), Ok(Duration::from_secs(60)));
        assert_eq!(m.kubelet.static_pod_path, "/srv/manifests");
        assert_eq!(m.kubelet.cluster_domain, "cluster.local");
        assert_eq!(m.node_name, "worker-1");
        assert_eq!(m.node_labels.get("zone").map(String::as_str), Some("a"));
        assert_eq!(m.kubelet.register_with_taints.len(), 2);
        assert_eq!(m.kubelet.register_with_taints[1].key, "gpu");
        assert_eq!(m.kubelet.register_with_taints[1].value, None);
        let evict = KubeletFlags {
            eviction_hard: vec!["nodefs.available<1%".into(), "memory.available<50Mi".into()],
            ..Default::default()
        };
        let m = merge(&evict).expect("merge");
        assert_eq!(
            m.kubelet.eviction_hard,
            Some(BTreeMap::from([
                ("memory.available".to_string(), "50Mi".to_string()),
                ("nodefs.available".to_string(), "1%".to_string()),
            ]))
        );
        let bad_evict = KubeletFlags {
            eviction_hard: vec!["nodefs.available=1%".into()],
            ..Default::default()
        };
        assert!(merge(&bad_evict).is_err());
        let bad = KubeletFlags {
            register_with_taints: vec!["x=y:Sometimes".into()],
            ..Default::default()
        };
        assert!(merge(&bad).is_err());
    }

    #[test]
    fn default_file_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent/kubelet.yaml");
        let manifests = dir.path().join("agent/pod-manifests");
        let written = write_default_config(&path, &manifests).expect("write");
        let read = load(&path).expect("load");
        assert_eq!(written, read);
        assert_eq!(read.static_pod_path, manifests.display().to_string());
    }
}
