//! Resource arithmetic as the scheduler sees it: a node's allocatable resources,
//! the sum requested by the pods on it, and what one pod requests.
//!
//! A pod's request follows upstream's `PodRequests`: the sum of its containers
//! (restartable "sidecar" init containers run alongside them and are added), or the
//! largest init container step if that is bigger, plus `spec.overhead`. Besides the
//! exact requests, the scheduler keeps "non-zero" CPU and memory figures in which a
//! container that names no CPU (memory) request counts 100m (200Mi), so that scoring
//! spreads best-effort pods instead of piling them onto one node.

use std::collections::BTreeMap;

use api::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KQuantity;

/// CPU counted for a container without a CPU request when scoring (upstream's
/// `DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory counted for a container without a memory request when scoring
/// (upstream's `DefaultMemoryRequest`, 200Mi).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts of the resources the scheduler accounts for. CPU is in millicores,
/// everything else in whole units (bytes, pods, devices).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Allocatable pod slots (only meaningful for a node's allocatable).
    pub allowed_pods: i64,
    /// Extended and other scalar resources (`example.com/gpu`, `hugepages-2Mi`, …),
    /// sorted by name.
    pub scalar: Vec<(String, i64)>,
}

/// Whether a resource name is accounted as a "scalar" resource by upstream: extended
/// resources (`domain/name` outside `kubernetes.io`), hugepages, attachable volumes
/// and other `kubernetes.io/`-prefixed native resources.
pub fn is_scalar_resource_name(name: &str) -> bool {
    if name.starts_with("hugepages-") || name.starts_with("attachable-volumes-") {
        return true;
    }
    // Extended resources (`example.com/gpu`) and prefixed native ones
    // (`kubernetes.io/x`) alike; `requests.*` names are quota keys, not resources.
    name.contains('/') && !name.starts_with("requests.")
}

fn quantity(q: &KQuantity) -> Option<Quantity> {
    Quantity::parse(&q.0).ok()
}

impl Resource {
    /// Reads a `ResourceList` (requests, overhead or a node's allocatable). Values
    /// that do not parse count as zero; the API server validates them on write.
    pub fn from_list(list: Option<&BTreeMap<String, KQuantity>>) -> Resource {
        let mut r = Resource::default();
        for (name, q) in list.into_iter().flatten() {
            let Some(q) = quantity(q) else { continue };
            match name.as_str() {
                "cpu" => r.milli_cpu = q.milli_value(),
                "memory" => r.memory = q.value(),
                "ephemeral-storage" => r.ephemeral_storage = q.value(),
                "pods" => r.allowed_pods = q.value(),
                other if is_scalar_resource_name(other) => r.set_scalar(other, q.value()),
                _ => {}
            }
        }
        r
    }

    /// The amount of a scalar resource (0 when absent).
    pub fn scalar(&self, name: &str) -> i64 {
        match self.scalar.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => self.scalar[i].1,
            Err(_) => 0,
        }
    }

    /// Whether the node lists this scalar resource at all.
    pub fn has_scalar(&self, name: &str) -> bool {
        self.scalar
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .is_ok()
    }

    pub fn set_scalar(&mut self, name: &str, value: i64) {
        match self.scalar.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => self.scalar[i].1 = value,
            Err(i) => self.scalar.insert(i, (name.to_string(), value)),
        }
    }

    fn combine(&mut self, other: &Resource, f: impl Fn(i64, i64) -> i64) {
        self.milli_cpu = f(self.milli_cpu, other.milli_cpu);
        self.memory = f(self.memory, other.memory);
        self.ephemeral_storage = f(self.ephemeral_storage, other.ephemeral_storage);
        self.allowed_pods = f(self.allowed_pods, other.allowed_pods);
        for (name, v) in &other.scalar {
            let mine = self.scalar(name);
            self.set_scalar(name, f(mine, *v));
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Resource) {
        self.combine(other, i64::saturating_add);
    }

    /// Subtracts `other` from `self`.
    pub fn sub(&mut self, other: &Resource) {
        self.combine(other, i64::saturating_sub);
    }

    /// Keeps, per resource, the larger of `self` and `other`.
    pub fn max_with(&mut self, other: &Resource) {
        self.combine(other, i64::max);
    }

    /// True when nothing at all is requested.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.iter().all(|(_, v)| *v == 0)
    }
}

/// What a pod asks for: its exact requests and the non-zero CPU/memory figures used
/// for scoring.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    pub requests: Resource,
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
}

impl PodRequests {
    fn add(&mut self, other: &PodRequests) {
        self.requests.add(&other.requests);
        self.non_zero_cpu += other.non_zero_cpu;
        self.non_zero_memory += other.non_zero_memory;
    }

    fn max_with(&mut self, other: &PodRequests) {
        self.requests.max_with(&other.requests);
        self.non_zero_cpu = self.non_zero_cpu.max(other.non_zero_cpu);
        self.non_zero_memory = self.non_zero_memory.max(other.non_zero_memory);
    }
}

fn container_requests(c: &Container) -> PodRequests {
    let list = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let requests = Resource::from_list(list);
    let named = |key: &str| list.is_some_and(|l| l.contains_key(key));
    PodRequests {
        non_zero_cpu: if named("cpu") {
            requests.milli_cpu
        } else {
            DEFAULT_MILLI_CPU_REQUEST
        },
        non_zero_memory: if named("memory") {
            requests.memory
        } else {
            DEFAULT_MEMORY_REQUEST
        },
        requests,
    }
}

/// Computes a pod's requests with upstream's rules for init and sidecar containers
/// and pod overhead.
pub fn pod_requests(spec: &PodSpec) -> PodRequests {
    let mut total = PodRequests::default();
    for c in &spec.containers {
        total.add(&container_requests(c));
    }
    let mut sidecars = PodRequests::default();
    let mut init_max = PodRequests::default();
    for c in spec.init_containers.iter().flatten() {
        let mut step = container_requests(c);
        if c.restart_policy.as_deref() == Some("Always") {
            // A sidecar keeps running next to the app containers.
            total.add(&step);
            sidecars.add(&step);
            step = sidecars.clone();
        } else {
            step.add(&sidecars);
        }
        init_max.max_with(&step);
    }
    total.max_with(&init_max);
    if let Some(overhead) = spec.overhead.as_ref() {
        let o = Resource::from_list(Some(overhead));
        total.requests.add(&o);
        total.non_zero_cpu += o.milli_cpu;
        total.non_zero_memory += o.memory;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn container(requests: &[(&str, &str)], sidecar: bool) -> Container {
        Container {
            name: "c".into(),
            resources: (!requests.is_empty()).then(|| ResourceRequirements {
                requests: Some(
                    requests
                        .iter()
                        .map(|(k, v)| (k.to_string(), KQuantity(v.to_string())))
                        .collect(),
                ),
                ..Default::default()
            }),
            restart_policy: sidecar.then(|| "Always".to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn scalar_resource_names() {
        for (name, want) in [
            ("cpu", false),
            ("memory", false),
            ("pods", false),
            ("example.com/gpu", true),
            ("nvidia.com/gpu", true),
            ("hugepages-2Mi", true),
            ("attachable-volumes-csi-x", true),
            ("kubernetes.io/batch", true),
            ("storage", false),
        ] {
            assert_eq!(is_scalar_resource_name(name), want, "{name}");
        }
    }

    #[test]
    fn pod_request_rules() {
        // (containers, init containers (requests, sidecar), overhead, want cpu m, want mem, nz cpu, nz mem)
        type Case<'a> = (
            Vec<Vec<(&'a str, &'a str)>>,
            Vec<(Vec<(&'a str, &'a str)>, bool)>,
            Vec<(&'a str, &'a str)>,
            i64,
            i64,
            i64,
            i64,
        );
        let mi = 1024 * 1024;
        let cases: Vec<Case> = vec![
            // Plain sum of containers.
            (
                vec![vec![("cpu", "100m"), ("memory", "1Mi")], vec![("cpu", "1")]],
                vec![],
                vec![],
                1100,
                mi,
                1100,
                mi + DEFAULT_MEMORY_REQUEST,
            ),
            // No requests at all: zero requests, default non-zero figures.
            (
                vec![vec![]],
                vec![],
                vec![],
                0,
                0,
                DEFAULT_MILLI_CPU_REQUEST,
                DEFAULT_MEMORY_REQUEST,
            ),
            // A big init container dominates.
            (
                vec![vec![("cpu", "100m"), ("memory", "1Mi")]],
                vec![(vec![("cpu", "2"), ("memory", "1Mi")], false)],
                vec![],
                2000,
                mi,
                2000,
                mi,
            ),
            // A sidecar adds to the containers and to later init steps.
            (
                vec![vec![("cpu", "100m"), ("memory", "1Mi")]],
                vec![
                    (vec![("cpu", "200m"), ("memory", "1Mi")], true),
                    (vec![("cpu", "250m"), ("memory", "1Mi")], false),
                ],
                vec![],
                450,
                2 * mi,
                450,
                2 * mi,
            ),
            // Overhead is added on top.
            (
                vec![vec![("cpu", "100m"), ("memory", "1Mi")]],
                vec![],
                vec![("cpu", "50m"), ("memory", "1Mi")],
                150,
                2 * mi,
                150,
                2 * mi,
            ),
        ];
        for (i, (containers, inits, overhead, cpu, mem, nz_cpu, nz_mem)) in
            cases.into_iter().enumerate()
        {
            let spec = PodSpec {
                containers: containers.iter().map(|r| container(r, false)).collect(),
                init_containers: (!inits.is_empty())
                    .then(|| inits.iter().map(|(r, s)| container(r, *s)).collect()),
                overhead: (!overhead.is_empty()).then(|| {
                    overhead
                        .iter()
                        .map(|(k, v)| (k.to_string(), KQuantity(v.to_string())))
                        .collect()
                }),
                ..Default::default()
            };
            let got = pod_requests(&spec);
            assert_eq!(got.requests.milli_cpu, cpu, "case {i} cpu");
            assert_eq!(got.requests.memory, mem, "case {i} memory");
            assert_eq!(got.non_zero_cpu, nz_cpu, "case {i} non-zero cpu");
            assert_eq!(got.non_zero_memory, nz_mem, "case {i} non-zero memory");
        }
    }

    #[test]
    fn resource_arithmetic_keeps_scalars_sorted() {
        let mut a = Resource::default();
        a.set_scalar("z.com/x", 1);
        let mut b = Resource::default();
        b.set_scalar("a.com/y", 2);
        b.set_scalar("z.com/x", 3);
        a.add(&b);
        assert_eq!(a.scalar, vec![("a.com/y".into(), 2), ("z.com/x".into(), 4)]);
        a.sub(&b);
        assert_eq!(a.scalar("z.com/x"), 1);
        assert_eq!(a.scalar("a.com/y"), 0);
        assert!(!a.is_zero());
    }
}
