//! The `flotilla sim` flags ([`SimArgs`]) and their checked form ([`Config`]).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::Error;
use crate::ipam;

/// Flags of `flotilla sim`: how many hollow nodes, what they look like, and how they
/// behave. Defaults follow upstream's kubelet where one exists.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct SimArgs {
    /// How many hollow nodes to run.
    #[arg(long, default_value_t = 1)]
    pub nodes: u32,
    /// Node names are `<prefix><index>`.
    #[arg(long, default_value = "sim-")]
    pub name_prefix: String,
    /// Index of the first node, so several sim processes can share one prefix.
    #[arg(long, default_value_t = 0)]
    pub first_index: u32,
    /// CPU capacity (and allocatable) of each node.
    #[arg(long, default_value = "4")]
    pub cpu: String,
    /// Memory capacity of each node.
    #[arg(long, default_value = "16Gi")]
    pub memory: String,
    /// Maximum pods per node (upstream kubelet `--max-pods`).
    #[arg(long, default_value_t = 110)]
    pub pods: u32,
    /// Ephemeral storage capacity of each node.
    #[arg(long, default_value = "100Gi")]
    pub ephemeral_storage: String,
    /// Extra node labels, `key=value,...` (upstream kubelet `--node-labels`).
    #[arg(long, value_delimiter = ',')]
    pub node_labels: Vec<String>,
    /// Taints the nodes register with, `key=value:Effect,...` (upstream kubelet
    /// `--register-with-taints`).
    #[arg(long, value_delimiter = ',')]
    pub register_with_taints: Vec<String>,
    /// How long a bound pod takes to "start" before it is reported Running.
    #[arg(long, value_parser = duration, default_value = "500ms")]
    pub startup_delay: Duration,
    /// Longest simulated termination of a deleted pod (the pod's own grace period
    /// when shorter) before the node deletes it for good.
    #[arg(long, value_parser = duration, default_value = "1s")]
    pub termination_delay: Duration,
    /// Stop a node's heartbeats after a while: `sim-2=30s` stops node sim-2, `30s`
    /// stops every node. Repeatable. Counted from the start of the simulation.
    #[arg(long, value_parser = parse_fail_after)]
    pub fail_after: Vec<FailAfter>,
    /// How often each node renews its Lease in `kube-node-lease`.
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub heartbeat_interval: Duration,
    /// The Lease's `leaseDurationSeconds` (upstream kubelet `nodeLeaseDurationSeconds`).
    #[arg(long, value_parser = duration, default_value = "40s")]
    pub lease_duration: Duration,
    /// How often each node posts its status (Ready condition heartbeat) when nothing
    /// changed (upstream kubelet `nodeStatusReportFrequency`). A node whose status was
    /// changed by someone else (e.g. marked Unknown) posts at once.
    #[arg(long, value_parser = duration, default_value = "5m")]
    pub status_interval: Duration,
    /// How long a pod waits for its node's `spec.podCIDR` (set by node IPAM) before the
    /// node falls back to its own range from `--fallback-pod-cidr`.
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub pod_cidr_wait: Duration,
    /// Range split into one /24 per node (by node index) for nodes without a podCIDR.
    #[arg(long, default_value = "10.128.0.0/9")]
    pub fallback_pod_cidr: String,
    /// Most API requests in flight at once for pods (node heartbeats and events get
    /// their own, smaller budgets).
    #[arg(long, default_value_t = 64)]
    pub max_in_flight: usize,
    /// Record kubelet-style Events (Pulled, Created, Started; Starting and NodeReady).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub events: bool,
    /// Register a node again when its Node object is deleted. Upstream kubelets only
    /// do so when restarted; `false` behaves like them.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub reregister: bool,
    /// Delete the simulated Node objects on shutdown.
    #[arg(long)]
    pub delete_nodes_on_exit: bool,
    /// The kubelet version the nodes report.
    #[arg(long, default_value = "v1.33.0")]
    pub kubelet_version: String,
}

impl Default for SimArgs {
    /// The flag defaults.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            args: SimArgs,
        }
        <Defaults as clap::Parser>::try_parse_from(["sim"])
            .map(|d| d.args)
            .unwrap_or_else(|e| unreachable!("flag defaults must parse: {e}"))
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    api::duration::parse(s)
}

/// One `--fail-after` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailAfter {
    /// The node to stop, or every node.
    pub node: Option<String>,
    /// When, counted from the start of the simulation.
    pub after: Duration,
}

impl FromStr for FailAfter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_fail_after(s)
    }
}

fn parse_fail_after(s: &str) -> Result<FailAfter, String> {
    match s.rsplit_once('=') {
        Some((node, after)) if !node.is_empty() => Ok(FailAfter {
            node: Some(node.to_string()),
            after: api::duration::parse(after)?,
        }),
        Some(_) => Err(format!("invalid --fail-after {s:?}: empty node name")),
        None => Ok(FailAfter {
            node: None,
            after: api::duration::parse(s)?,
        }),
    }
}

/// The checked settings the simulation runs with.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub names: Vec<String>,
    pub first_index: u64,
    pub capacity: BTreeMap<String, Quantity>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub startup_delay: Duration,
    pub termination_delay: Duration,
    pub fail_after: Vec<(Option<usize>, Duration)>,
    pub heartbeat_interval: Duration,
    pub lease_duration_seconds: i32,
    pub status_interval: Duration,
    pub pod_cidr_wait: Duration,
    pub fallback_pod_cidr: ipnet::IpNet,
    pub max_in_flight: usize,
    pub events: bool,
    pub reregister: bool,
    pub delete_nodes_on_exit: bool,
    pub kubelet_version: String,
}

fn invalid(flag: &'static str, msg: impl Into<String>) -> Error {
    Error::InvalidFlag {
        flag,
        message: msg.into(),
    }
}

fn quantity(flag: &'static str, s: &str) -> Result<Quantity, Error> {
    let q = api::quantity::Quantity::parse(s.trim())
        .map_err(|e| invalid(flag, format!("{s:?} is not a quantity: {e}")))?;
    if q.signum() < 0 {
        return Err(invalid(flag, format!("{s:?} must not be negative")));
    }
    Ok(q.to_k8s())
}

/// `key=value` (upstream `--node-labels`).
fn parse_label(s: &str) -> Result<(String, String), Error> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| invalid("--node-labels", format!("{s:?} is not key=value")))?;
    let mut errs = api::names::is_qualified_name(k);
    errs.extend(api::names::is_valid_label_value(v));
    if !errs.is_empty() {
        return Err(invalid(
            "--node-labels",
            format!("{s:?}: {}", errs.join("; ")),
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

/// `key=value:Effect` or `key:Effect` (upstream `--register-with-taints`).
fn parse_taint(s: &str) -> Result<Taint, Error> {
    let bad = |m: String| invalid("--register-with-taints", m);
    let (kv, effect) = s
        .rsplit_once(':')
        .ok_or_else(|| bad(format!("{s:?} is not key=value:Effect")))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(bad(format!(
            "{s:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute"
        )));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (kv, None),
    };
    let mut errs = api::names::is_qualified_name(key);
    if let Some(v) = value {
        errs.extend(api::names::is_valid_label_value(v));
    }
    if !errs.is_empty() {
        return Err(bad(format!("{s:?}: {}", errs.join("; "))));
    }
    Ok(Taint {
        key: key.to_string(),
        value: value.filter(|v| !v.is_empty()).map(str::to_string),
        effect: effect.to_string(),
        time_added: None,
    })
}

impl Config {
    pub fn new(args: &SimArgs) -> Result<Self, Error> {
        let first = u64::from(args.first_index);
        if first + u64::from(args.nodes) > ipam::MAX_NODES {
            return Err(invalid(
                "--nodes",
                format!("node indexes must stay below {}", ipam::MAX_NODES),
            ));
        }
        let names: Vec<String> = (0..u64::from(args.nodes))
            .map(|i| format!("{}{}", args.name_prefix, first + i))
            .collect();
        if let Some(n) = names.first() {
            let errs = api::names::is_dns1123_subdomain(n);
            if !errs.is_empty() {
                return Err(invalid(
                    "--name-prefix",
                    format!("node name {n:?} is invalid: {}", errs.join("; ")),
                ));
            }
        }
        let mut capacity = BTreeMap::new();
        capacity.insert("cpu".into(), quantity("--cpu", &args.cpu)?);
        capacity.insert("memory".into(), quantity("--memory", &args.memory)?);
        capacity.insert("pods".into(), Quantity(args.pods.to_string()));
        capacity.insert(
            "ephemeral-storage".into(),
            quantity("--ephemeral-storage", &args.ephemeral_storage)?,
        );
        capacity.insert("hugepages-1Gi".into(), Quantity("0".into()));
        capacity.insert("hugepages-2Mi".into(), Quantity("0".into()));
        let labels = args
            .node_labels
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| parse_label(s))
            .collect::<Result<_, _>>()?;
        let taints = args
            .register_with_taints
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| parse_taint(s))
            .collect::<Result<_, _>>()?;
        let mut fail_after = Vec::new();
        for f in &args.fail_after {
            let idx = match &f.node {
                None => None,
                Some(n) => Some(names.iter().position(|x| x == n).ok_or_else(|| {
                    invalid(
                        "--fail-after",
                        format!("{n:?} is not one of the simulated nodes"),
                    )
                })?),
            };
            fail_after.push((idx, f.after));
        }
        for (flag, d) in [
            ("--heartbeat-interval", args.heartbeat_interval),
            ("--status-interval", args.status_interval),
        ] {
            if d.is_zero() {
                return Err(invalid(flag, "must be positive"));
            }
        }
        let lease_duration_seconds = i32::try_from(args.lease_duration.as_secs())
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| invalid("--lease-duration", "must be between 1s and 68 years"))?;
        let fallback_pod_cidr: ipnet::IpNet = args.fallback_pod_cidr.parse().map_err(|e| {
            invalid(
                "--fallback-pod-cidr",
                format!("{:?}: {e}", args.fallback_pod_cidr),
            )
        })?;
        if args.max_in_flight == 0 {
            return Err(invalid("--max-in-flight", "must be at least 1"));
        }
        Ok(Config {
            names,
            first_index: first,
            capacity,
            labels,
            taints,
            startup_delay: args.startup_delay,
            termination_delay: args.termination_delay,
            fail_after,
            heartbeat_interval: args.heartbeat_interval,
            lease_duration_seconds,
            status_interval: args.status_interval,
            pod_cidr_wait: args.pod_cidr_wait,
            fallback_pod_cidr,
            max_in_flight: args.max_in_flight,
            events: args.events,
            reregister: args.reregister,
            delete_nodes_on_exit: args.delete_nodes_on_exit,
            kubelet_version: args.kubelet_version.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_flag_defaults() {
        let a = SimArgs::default();
        assert_eq!(a.nodes, 1);
        assert_eq!(a.name_prefix, "sim-");
        assert_eq!(a.memory, "16Gi");
        assert_eq!(a.pods, 110);
        assert_eq!(a.startup_delay, Duration::from_millis(500));
        assert_eq!(a.heartbeat_interval, Duration::from_secs(10));
        assert_eq!(a.status_interval, Duration::from_secs(300));
        assert!(a.events && a.reregister && !a.delete_nodes_on_exit);
        let c = Config::new(&a).expect("defaults are valid");
        assert_eq!(c.names, ["sim-0"]);
        assert_eq!(c.lease_duration_seconds, 40);
        assert_eq!(c.capacity["memory"].0, "16Gi");
        assert_eq!(c.capacity["pods"].0, "110");
    }

    #[test]
    fn fail_after_values() {
        let cases: &[(&str, Option<FailAfter>)] = &[
            (
                "sim-2=30s",
                Some(FailAfter {
                    node: Some("sim-2".into()),
                    after: Duration::from_secs(30),
                }),
            ),
            (
                "1m30s",
                Some(FailAfter {
                    node: None,
                    after: Duration::from_secs(90),
                }),
            ),
            ("=3s", None),
            ("sim-2=", None),
            ("sim-2=soon", None),
            ("-1s", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_fail_after(s).ok(), *want, "{s}");
        }
    }

    #[test]
    fn taints() {
        type Want<'a> = Option<(&'a str, Option<&'a str>, &'a str)>;
        let cases: &[(&str, Want)] = &[
            (
                "dedicated=gpu:NoSchedule",
                Some(("dedicated", Some("gpu"), "NoSchedule")),
            ),
            (
                "example.com/x:NoExecute",
                Some(("example.com/x", None, "NoExecute")),
            ),
            ("k=:PreferNoSchedule", Some(("k", None, "PreferNoSchedule"))),
            ("k=v:Sometimes", None),
            ("k=v", None),
            ("bad key=v:NoSchedule", None),
        ];
        for (s, want) in cases {
            let got = parse_taint(s).ok();
            let got = got
                .as_ref()
                .map(|t| (t.key.as_str(), t.value.as_deref(), t.effect.as_str()));
            assert_eq!(got, *want, "{s}");
        }
    }

    #[test]
    fn labels() {
        let cases: &[(&str, bool)] = &[
            ("topology.kubernetes.io/zone=a", true),
            ("disk=", true),
            ("disk", false),
            ("-bad=x", false),
            ("ok=bad value", false),
        ];
        for (s, ok) in cases {
            assert_eq!(parse_label(s).is_ok(), *ok, "{s}");
        }
    }

    #[test]
    fn invalid_flags_are_refused() {
        let base = SimArgs {
            nodes: 3,
            ..SimArgs::default()
        };
        let cases: Vec<(&str, SimArgs)> = vec![
            (
                "--cpu",
                SimArgs {
                    cpu: "lots".into(),
                    ..base.clone()
                },
            ),
            (
                "--memory",
                SimArgs {
                    memory: "-1Gi".into(),
                    ..base.clone()
                },
            ),
            (
                "--name-prefix",
                SimArgs {
                    name_prefix: "Sim_".into(),
                    ..base.clone()
                },
            ),
            (
                "--fail-after",
                SimArgs {
                    fail_after: vec![FailAfter {
                        node: Some("sim-3".into()),
                        after: Duration::from_secs(1),
                    }],
                    ..base.clone()
                },
            ),
            (
                "--fallback-pod-cidr",
                SimArgs {
                    fallback_pod_cidr: "10.0.0.0".into(),
                    ..base.clone()
                },
            ),
            (
                "--lease-duration",
                SimArgs {
                    lease_duration: Duration::ZERO,
                    ..base.clone()
                },
            ),
            (
                "--nodes",
                SimArgs {
                    nodes: u32::MAX,
                    ..base.clone()
                },
            ),
            (
                "--max-in-flight",
                SimArgs {
                    max_in_flight: 0,
                    ..base.clone()
                },
            ),
        ];
        for (flag, args) in cases {
            match Config::new(&args) {
                Err(Error::InvalidFlag { flag: f, .. }) => assert_eq!(f, flag),
                other => panic!("{flag}: expected an invalid flag error, got {other:?}"),
            }
        }
        let ok = Config::new(&SimArgs {
            fail_after: vec![FailAfter {
                node: Some("sim-2".into()),
                after: Duration::from_secs(1),
            }],
            ..base
        })
        .expect("valid");
        assert_eq!(ok.fail_after, vec![(Some(2), Duration::from_secs(1))]);
        assert_eq!(ok.names, ["sim-0", "sim-1", "sim-2"]);
    }
}
