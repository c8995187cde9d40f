//! Pure decisions shared by the EndpointSlice and Endpoints controllers: which pods a
//! Service selects and publishes, endpoint and port building (named `targetPort`s
//! resolved against the pod's container ports), the EndpointSlice reconciliation plan
//! and the legacy Endpoints subsets, and the `last-change-trigger-time` tracker.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CorePort, EndpointSubset, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use crate::nodelifecycle::informer::Key;

pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`] on the slices this controller owns.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
pub const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
pub const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// Most addresses a legacy Endpoints object carries.
pub const MAX_LEGACY_ADDRESSES: usize = 1000;
pub const IPV4: &str = "IPv4";
pub const IPV6: &str = "IPv6";

/// The selector of a Service the controllers manage endpoints for: `None` for
/// ExternalName services and services without a selector (their endpoints are
/// maintained by someone else, like the API server's `kubernetes` service).
pub fn managed_selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref()
}

/// Equality-based selector match (an empty selector selects everything).
pub fn selects(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Pod Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod's IPs (`status.podIPs`, else `status.podIP`).
pub fn pod_ips(pod: &Pod) -> Vec<String> {
    let Some(st) = pod.status.as_ref() else {
        return Vec::new();
    };
    let ips: Vec<String> = st
        .pod_ips
        .as_ref()
        .map(|v| {
            v.iter()
                .map(|p| p.ip.clone())
                .filter(|ip| !ip.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if !ips.is_empty() {
        return ips;
    }
    st.pod_ip
        .clone()
        .filter(|ip| !ip.is_empty())
        .into_iter()
        .collect()
}

/// "IPv4" / "IPv6" for an address.
pub fn ip_family(ip: &str) -> Option<&'static str> {
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => Some(IPV4),
        IpAddr::V6(_) => Some(IPV6),
    }
}

/// Upstream `ShouldPodBeInEndpoints`: not terminal, has an IP, and (unless
/// `include_terminating`) not being deleted.
pub fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    if pod_ips(pod).is_empty() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// Upstream `FindPort`: the pod port a service port targets (`None` when a named
/// target port has no matching container port).
pub fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) if *n == 0 => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let proto = sp.protocol.as_deref().unwrap_or("TCP");
            pod.spec.as_ref()?.containers.iter().find_map(|c| {
                c.ports.as_ref()?.iter().find_map(|p| {
                    (p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == proto)
                        .then_some(p.container_port)
                })
            })
        }
    }
}

/// The EndpointSlice ports for `pod` (ports whose target cannot be resolved are left out).
pub fn slice_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    service_ports(svc)
        .iter()
        .filter_map(|sp| {
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(find_port(pod, sp)?),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

fn service_ports(svc: &Service) -> &[ServicePort] {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default()
}

fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// Address types of the service's slices: its `ipFamilies`, else its cluster IP's
/// family; a headless service without families gets IPv4 (what the API server defaults
/// `ipFamilies` to on a single-stack IPv4 cluster).
pub fn address_types(svc: &Service) -> Vec<&'static str> {
    let spec = svc.spec.as_ref();
    let mut out: Vec<&'static str> = spec
        .and_then(|s| s.ip_families.as_ref())
        .map(|f| {
            f.iter()
                .filter_map(|x| match x.as_str() {
                    IPV4 => Some(IPV4),
                    IPV6 => Some(IPV6),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    out.dedup();
    if !out.is_empty() {
        return out;
    }
    if let Some(fam) = spec
        .and_then(|s| s.cluster_ip.as_deref())
        .and_then(ip_family)
    {
        return vec![fam];
    }
    vec![IPV4]
}

fn hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let h = spec.hostname.clone().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace)
        .then_some(h)
}

fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The slice endpoint of `pod` for `address_type` (upstream `podToEndpoint`), `None`
/// if the pod has no address of that family. `zone` is its node's zone label.
pub fn slice_endpoint(
    pod: &Pod,
    svc: &Service,
    address_type: &str,
    zone: Option<String>,
) -> Option<Endpoint> {
    let addresses: Vec<String> = pod_ips(pod)
        .into_iter()
        .filter(|ip| ip_family(ip) == Some(address_type))
        .collect();
    if addresses.is_empty() {
        return None;
    }
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    let serving = pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = publish || (serving && !terminating);
    Some(Endpoint {
        addresses,
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: hostname(pod, svc),
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(pod_ref(pod)),
        zone,
        ..Default::default()
    })
}

/// Comparable form of a slice port.
pub type PortSig = (String, i32, String, Option<String>);

pub fn port_sig(p: &EndpointPort) -> PortSig {
    (
        p.name.clone().unwrap_or_default(),
        p.port.unwrap_or_default(),
        p.protocol.clone().unwrap_or_else(|| "TCP".into()),
        p.app_protocol.clone(),
    )
}

/// Group key of a port list (order-insensitive).
pub fn ports_key(ports: &[EndpointPort]) -> Vec<PortSig> {
    let mut v: Vec<PortSig> = ports.iter().map(port_sig).collect();
    v.sort();
    v
}

/// Comparable form of a slice endpoint.
pub type EndpointSig = (
    Vec<String>,
    (bool, bool, bool),
    Option<String>,
    Option<String>,
    Option<String>,
    (Option<String>, Option<String>, Option<String>),
);

pub fn endpoint_sig(e: &Endpoint) -> EndpointSig {
    let c = e.conditions.clone().unwrap_or_default();
    let t = e.target_ref.clone().unwrap_or_default();
    (
        e.addresses.clone(),
        (
            c.ready.unwrap_or(false),
            c.serving.unwrap_or(false),
            c.terminating.unwrap_or(false),
        ),
        e.hostname.clone(),
        e.node_name.clone(),
        e.zone.clone(),
        (t.namespace, t.name, t.uid),
    )
}

/// Identity of an endpoint across updates: its pod and addresses.
fn endpoint_id(e: &Endpoint) -> (Option<String>, Option<String>, Vec<String>) {
    let t = e.target_ref.clone().unwrap_or_default();
    (t.namespace, t.name, e.addresses.clone())
}

/// Desired endpoints of one address type, grouped by port list.
pub type Desired = BTreeMap<Vec<PortSig>, (Vec<EndpointPort>, Vec<Endpoint>)>;

/// Desired endpoints of `svc` per address type from its selected `pods`. `zone_of` gives
/// a node's zone, or `None` when the node is unknown (such pods are left out unless the
/// service publishes not-ready addresses, as upstream). Returns also whether a pod was
/// skipped for a missing node (the caller retries later).
pub fn desired_slices(
    svc: &Service,
    pods: &[&Pod],
    zone_of: &dyn Fn(&str) -> Option<Option<String>>,
) -> (BTreeMap<&'static str, Desired>, bool) {
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    let mut out: BTreeMap<&'static str, Desired> = address_types(svc)
        .into_iter()
        .map(|t| (t, Desired::new()))
        .collect();
    let mut skipped = false;
    for pod in pods {
        if !should_be_in_endpoints(pod, true) {
            continue;
        }
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("");
        let zone = match zone_of(node) {
            Some(z) => z,
            None if publish => None,
            None => {
                skipped = true;
                continue;
            }
        };
        let ports = slice_ports(svc, pod);
        let key = ports_key(&ports);
        for (at, desired) in out.iter_mut() {
            if let Some(ep) = slice_endpoint(pod, svc, at, zone.clone()) {
                desired
                    .entry(key.clone())
                    .or_insert_with(|| (ports.clone(), Vec::new()))
                    .1
                    .push(ep);
            }
        }
    }
    (out, skipped)
}

/// Labels of the service's slices (upstream `setEndpointSliceLabels`).
pub fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = svc
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != LABEL_SERVICE_NAME && k != LABEL_MANAGED_BY && k != LABEL_HEADLESS)
        .collect();
    l.insert(
        LABEL_SERVICE_NAME.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    l.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
    if is_headless(svc) {
        l.insert(LABEL_HEADLESS.into(), String::new());
    }
    l
}

/// The controller owner reference of the service's slices.
pub fn service_owner(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.metadata.name.clone().unwrap_or_default(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    slice.metadata.owner_references.as_ref().is_some_and(|o| {
        o.iter()
            .any(|r| Some(&r.uid) == svc.metadata.uid.as_ref() && r.controller == Some(true))
    })
}

/// Writes that bring a service's slices to the desired state.
#[derive(Clone, Debug, Default)]
pub struct SlicePlan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<String>,
}

struct Working {
    slice: EndpointSlice,
    key: Option<Vec<PortSig>>,
    dirty: bool,
}

/// Plan the slices of `svc` (upstream reconciler, simplified): existing slices keep
/// the endpoints that are still wanted (updated in place), new endpoints first fill
/// slices with room then new ones of at most `max` endpoints; slices left empty are
/// deleted or reused for new content; a service without any endpoint of an address type
/// keeps one empty placeholder slice of that type. `existing` are the slices labelled as
/// this service's and managed by this controller.
pub fn plan_slices(
    svc: &Service,
    existing: &[EndpointSlice],
    desired: &BTreeMap<&'static str, Desired>,
    max: usize,
) -> SlicePlan {
    let max = max.max(1);
    let labels = slice_labels(svc);
    let owner = service_owner(svc);
    let mut plan = SlicePlan::default();
    let mut sorted: Vec<&EndpointSlice> = existing.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut by_type: BTreeMap<String, Vec<Working>> = BTreeMap::new();
    for s in sorted {
        if !owned_by(s, svc) || !desired.contains_key(s.address_type.as_str()) {
            plan.delete
                .push(s.metadata.name.clone().unwrap_or_default());
            continue;
        }
        let meta_ok = s.metadata.labels.as_ref() == Some(&labels)
            && s.metadata.owner_references.as_deref() == Some(std::slice::from_ref(&owner));
        by_type
            .entry(s.address_type.clone())
            .or_default()
            .push(Working {
                slice: s.clone(),
                key: Some(ports_key(s.ports.as_deref().unwrap_or_default())),
                dirty: !meta_ok,
            });
    }
    for (at, want) in desired {
        let mut work = by_type.remove(*at).unwrap_or_default();
        // Endpoints still to place, per port group, by identity.
        let mut pending: BTreeMap<Vec<PortSig>, Vec<Endpoint>> = want
            .iter()
            .map(|(k, (_, eps))| (k.clone(), eps.clone()))
            .collect();
        for w in work.iter_mut() {
            let Some(key) = w.key.clone() else { continue };
            let Some(p) = pending.get_mut(&key) else {
                // Port group no longer wanted: empty it.
                if !w.slice.endpoints.is_empty() {
                    w.slice.endpoints.clear();
                    w.dirty = true;
                }
                continue;
            };
            let mut kept = Vec::new();
            for e in &w.slice.endpoints {
                let id = endpoint_id(e);
                if let Some(i) = p.iter().position(|d| endpoint_id(d) == id) {
                    let d = p.remove(i);
                    if endpoint_sig(&d) != endpoint_sig(e) {
                        w.dirty = true;
                    }
                    kept.push(d);
                } else {
                    w.dirty = true;
                }
            }
            w.slice.endpoints = kept;
        }
        // Fill slices with room (fullest first), then reuse emptied slices, then create.
        for (key, rest) in pending.iter_mut() {
            let ports = want.get(key).map(|(p, _)| p.clone()).unwrap_or_default();
            let mut order: Vec<usize> = (0..work.len())
                .filter(|&i| {
                    work[i].key.as_ref() == Some(key) && !work[i].slice.endpoints.is_empty()
                })
                .collect();
            order.sort_by_key(|&i| std::cmp::Reverse(work[i].slice.endpoints.len()));
            for i in order {
                while !rest.is_empty() && work[i].slice.endpoints.len() < max {
                    work[i].slice.endpoints.push(rest.remove(0));
                    work[i].dirty = true;
                }
            }
            while !rest.is_empty() {
                let take: Vec<Endpoint> = rest.drain(..rest.len().min(max)).collect();
                if let Some(w) = work.iter_mut().find(|w| w.slice.endpoints.is_empty()) {
                    w.slice.endpoints = take;
                    w.slice.ports = Some(ports.clone());
                    w.key = Some(key.clone());
                    w.dirty = true;
                } else {
                    work.push(Working {
                        slice: new_slice(svc, at, ports.clone(), take, &labels, &owner),
                        key: None,
                        dirty: true,
                    });
                }
            }
        }
        // What is left empty goes, except one placeholder when nothing has endpoints.
        let any_endpoints = work.iter().any(|w| !w.slice.endpoints.is_empty());
        let mut placeholder_kept = any_endpoints;
        for w in work {
            let is_new = w.slice.metadata.name.is_none();
            if w.slice.endpoints.is_empty() {
                if !placeholder_kept {
                    placeholder_kept = true;
                    let mut s = w.slice;
                    let wants_ports = !s.ports.as_deref().unwrap_or_default().is_empty();
                    if is_new {
                        plan.create.push(s);
                    } else if w.dirty || wants_ports {
                        s.ports = None;
                        set_meta(&mut s, &labels, &owner);
                        plan.update.push(s);
                    }
                } else if let Some(n) = w.slice.metadata.name.clone() {
                    plan.delete.push(n);
                }
                continue;
            }
            let mut s = w.slice;
            set_meta(&mut s, &labels, &owner);
            if is_new {
                plan.create.push(s);
            } else if w.dirty {
                plan.update.push(s);
            }
        }
        if !placeholder_kept {
            plan.create
                .push(new_slice(svc, at, Vec::new(), Vec::new(), &labels, &owner));
        }
    }
    plan
}

fn set_meta(s: &mut EndpointSlice, labels: &BTreeMap<String, String>, owner: &OwnerReference) {
    s.metadata.labels = Some(labels.clone());
    s.metadata.owner_references = Some(vec![owner.clone()]);
}

fn new_slice(
    svc: &Service,
    address_type: &str,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
    labels: &BTreeMap<String, String>,
    owner: &OwnerReference,
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!(
                "{}-",
                svc.metadata.name.clone().unwrap_or_default()
            )),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        address_type: address_type.into(),
        endpoints,
        ports: (!ports.is_empty()).then_some(ports),
    }
}

/// Comparable form of a legacy endpoint address.
pub type AddressSig = (
    String,
    Option<String>,
    Option<String>,
    (Option<String>, Option<String>, Option<String>),
);

fn address_sig(a: &EndpointAddress) -> AddressSig {
    let t = a.target_ref.clone().unwrap_or_default();
    (
        a.ip.clone(),
        a.hostname.clone(),
        a.node_name.clone(),
        (t.namespace, t.name, t.uid),
    )
}

fn core_port_sig(p: &CorePort) -> PortSig {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        p.protocol.clone().unwrap_or_else(|| "TCP".into()),
        p.app_protocol.clone(),
    )
}

/// Comparable form of legacy subsets.
pub type SubsetsSig = Vec<(Vec<AddressSig>, Vec<AddressSig>, Vec<PortSig>)>;

pub fn subsets_sig(subsets: &[EndpointSubset]) -> SubsetsSig {
    subsets
        .iter()
        .map(|s| {
            let mut a: Vec<AddressSig> = s.addresses.iter().flatten().map(address_sig).collect();
            let mut n: Vec<AddressSig> = s
                .not_ready_addresses
                .iter()
                .flatten()
                .map(address_sig)
                .collect();
            let mut p: Vec<PortSig> = s.ports.iter().flatten().map(core_port_sig).collect();
            a.sort();
            n.sort();
            p.sort();
            (a, n, p)
        })
        .collect()
}

/// The IP a legacy Endpoints address uses: the service's primary family.
fn legacy_ip(pod: &Pod, svc: &Service) -> Option<String> {
    let ips = pod_ips(pod);
    let fam = address_types(svc).first().copied();
    ips.iter()
        .find(|ip| ip_family(ip) == fam)
        .cloned()
        .or_else(|| {
            if is_headless(svc) {
                ips.first().cloned()
            } else {
                None
            }
        })
}

fn ip_order(ip: &str) -> (u8, u128) {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(v)) => (4, u128::from(u32::from(v))),
        Ok(IpAddr::V6(v)) => (6, u128::from(v)),
        Err(_) => (9, 0),
    }
}

/// The subsets of a service's legacy Endpoints (upstream `syncService` +
/// `RepackSubsets`): addresses grouped by identical port lists, ready and not-ready
/// apart, sorted by IP; at most [`MAX_LEGACY_ADDRESSES`] addresses (ready ones first).
/// Returns the subsets and whether some were cut.
pub fn legacy_subsets(svc: &Service, pods: &[&Pod]) -> (Vec<EndpointSubset>, bool) {
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    let headless = is_headless(svc);
    // (ports sig) -> (ports, ready addresses, not-ready addresses)
    let mut groups: BTreeMap<
        Vec<PortSig>,
        (Vec<CorePort>, Vec<EndpointAddress>, Vec<EndpointAddress>),
    > = BTreeMap::new();
    for pod in pods {
        if !should_be_in_endpoints(pod, publish) {
            continue;
        }
        let Some(ip) = legacy_ip(pod, svc) else {
            continue;
        };
        let addr = EndpointAddress {
            ip,
            hostname: hostname(pod, svc),
            node_name: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            target_ref: Some(pod_ref(pod)),
        };
        let ports: Vec<CorePort> = service_ports(svc)
            .iter()
            .filter_map(|sp| {
                Some(CorePort {
                    name: sp.name.clone().filter(|n| !n.is_empty()),
                    port: find_port(pod, sp)?,
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        if ports.is_empty() && !(service_ports(svc).is_empty() && headless) {
            continue;
        }
        let mut sig: Vec<PortSig> = ports.iter().map(core_port_sig).collect();
        sig.sort();
        sig.dedup();
        let g = groups.entry(sig).or_insert_with(|| {
            let mut p = ports.clone();
            p.sort_by_key(core_port_sig);
            p.dedup_by(|a, b| core_port_sig(a) == core_port_sig(b));
            (p, Vec::new(), Vec::new())
        });
        if publish || pod_ready(pod) {
            g.1.push(addr);
        } else {
            g.2.push(addr);
        }
    }
    let total: usize = groups.values().map(|(_, r, n)| r.len() + n.len()).sum();
    let truncated = total > MAX_LEGACY_ADDRESSES;
    let mut budget = MAX_LEGACY_ADDRESSES;
    let sort = |v: &mut Vec<EndpointAddress>| {
        v.sort_by(|a, b| {
            ip_order(&a.ip).cmp(&ip_order(&b.ip)).then_with(|| {
                a.target_ref
                    .as_ref()
                    .map(|t| &t.uid)
                    .cmp(&b.target_ref.as_ref().map(|t| &t.uid))
            })
        })
    };
    for (_, r, n) in groups.values_mut() {
        sort(r);
        sort(n);
    }
    // Ready addresses keep their place before not-ready ones when cutting.
    for (_, r, _) in groups.values_mut() {
        let keep = r.len().min(budget);
        r.truncate(keep);
        budget -= keep;
    }
    for (_, _, n) in groups.values_mut() {
        let keep = n.len().min(budget);
        n.truncate(keep);
        budget -= keep;
    }
    let subsets = groups
        .into_values()
        .filter(|(_, r, n)| !r.is_empty() || !n.is_empty())
        .map(|(p, r, n)| EndpointSubset {
            addresses: (!r.is_empty()).then_some(r),
            not_ready_addresses: (!n.is_empty()).then_some(n),
            ports: (!p.is_empty()).then_some(p),
        })
        .collect();
    (subsets, truncated)
}

/// Labels of a service's legacy Endpoints.
pub fn legacy_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = svc
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != LABEL_HEADLESS)
        .collect();
    l.insert(LABEL_SKIP_MIRROR.into(), "true".into());
    if is_headless(svc) {
        l.insert(LABEL_HEADLESS.into(), String::new());
    }
    l
}

/// When a pod last changed in a way endpoints reflect: its Ready condition's
/// transition time, else its creation.
pub fn pod_trigger_time(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Upstream `TriggerTimeTracker`: the trigger time of a sync is the earliest change
/// (pod trigger time or service creation) not reflected by the previous sync.
#[derive(Debug, Default)]
pub struct TriggerTracker {
    seen: HashMap<Key, (Option<Timestamp>, HashMap<Key, Timestamp>)>,
}

impl TriggerTracker {
    /// Compute the trigger time for `svc` with its current `pods` (key, trigger time),
    /// and remember them.
    pub fn compute(
        &mut self,
        svc: &Key,
        svc_time: Option<Timestamp>,
        pods: &[(Key, Timestamp)],
    ) -> Option<Timestamp> {
        let (old_svc, old_pods) = self.seen.remove(svc).unwrap_or_default();
        let mut min: Option<Timestamp> = None;
        let mut consider = |t: Timestamp| min = Some(min.map_or(t, |m| m.min(t)));
        if let Some(t) = svc_time
            && old_svc != Some(t)
        {
            consider(t);
        }
        let mut now_pods = HashMap::new();
        for (k, t) in pods {
            if old_pods.get(k) != Some(t) {
                consider(*t);
            }
            now_pods.insert(k.clone(), *t);
        }
        self.seen.insert(svc.clone(), (svc_time, now_pods));
        min
    }

    pub fn forget(&mut self, svc: &Key) {
        self.seen.remove(svc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("ts")
    }

    /// A pod `name` with labels app=web, a container port "http" 8080/TCP and
    /// "metrics" 9090/TCP, on node n1, with `ips`, Ready per `ready`.
    fn pod(name: &str, ips: &[&str], ready: Option<bool>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                creation_timestamp: Some(Time(ts(10))),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![
                        ContainerPort {
                            name: Some("http".into()),
                            container_port: 8080,
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        },
                        ContainerPort {
                            name: Some("metrics".into()),
                            container_port: 9090,
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: ips.first().map(|s| s.to_string()),
                pod_ips: Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect()),
                conditions: ready.map(|r| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: if r { "True" } else { "False" }.into(),
                        last_transition_time: Some(Time(ts(20))),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    fn sport(name: &str, port: i32, target: Option<IntOrString>) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port,
            target_port: target,
            protocol: Some("TCP".into()),
            ..Default::default()
        }
    }

    fn svc(ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("svc-uid".into()),
                labels: Some([("tier".to_string(), "front".to_string())].into()),
                creation_timestamp: Some(Time(ts(5))),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), "web".to_string())].into()),
                cluster_ip: Some("10.43.0.10".into()),
                ports: Some(ports),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn find_port_table() {
        let p = pod("a", &["10.0.0.1"], Some(true));
        let udp = |mut s: ServicePort| {
            s.protocol = Some("UDP".into());
            s
        };
        let cases: Vec<(ServicePort, Option<i32>)> = vec![
            (sport("x", 80, None), Some(80)),
            (sport("x", 80, Some(IntOrString::Int(0))), Some(80)),
            (sport("x", 80, Some(IntOrString::Int(8000))), Some(8000)),
            (
                sport("x", 80, Some(IntOrString::String("http".into()))),
                Some(8080),
            ),
            (
                sport("x", 80, Some(IntOrString::String("metrics".into()))),
                Some(9090),
            ),
            (
                sport("x", 80, Some(IntOrString::String("nope".into()))),
                None,
            ),
            (
                udp(sport("x", 80, Some(IntOrString::String("http".into())))),
                None,
            ),
            (
                sport("x", 80, Some(IntOrString::String("7070".into()))),
                Some(7070),
            ),
        ];
        for (sp, want) in cases {
            assert_eq!(find_port(&p, &sp), want, "{sp:?}");
        }
    }

    #[test]
    fn membership_table() {
        let mut terminating = pod("t", &["10.0.0.3"], Some(true));
        terminating.metadata.deletion_timestamp = Some(Time(ts(99)));
        let mut done = pod("d", &["10.0.0.4"], Some(false));
        if let Some(s) = done.status.as_mut() {
            s.phase = Some("Succeeded".into());
        }
        // (pod, include_terminating, in endpoints)
        let cases = [
            (pod("a", &["10.0.0.1"], Some(true)), false, true),
            (pod("b", &[], Some(true)), false, false),
            (pod("c", &["10.0.0.2"], None), false, true),
            (terminating.clone(), false, false),
            (terminating, true, true),
            (done, true, false),
        ];
        for (p, inc, want) in cases {
            assert_eq!(
                should_be_in_endpoints(&p, inc),
                want,
                "{:?} {inc}",
                p.metadata.name
            );
        }
        let sel: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let other: BTreeMap<String, String> = [("app".to_string(), "db".to_string())].into();
        assert!(selects(&sel, Some(&sel)));
        assert!(!selects(&sel, Some(&other)));
        assert!(!selects(&sel, None));
        assert!(
            selects(&BTreeMap::new(), None),
            "empty selector selects everything"
        );
        let mut ext = svc(vec![]);
        if let Some(s) = ext.spec.as_mut() {
            s.type_ = Some("ExternalName".into());
        }
        assert!(managed_selector(&ext).is_none());
        let mut nosel = svc(vec![]);
        if let Some(s) = nosel.spec.as_mut() {
            s.selector = None;
        }
        assert!(managed_selector(&nosel).is_none());
    }

    #[test]
    fn slice_endpoint_conditions_table() {
        let s = svc(vec![sport(
            "http",
            80,
            Some(IntOrString::String("http".into())),
        )]);
        let mut publish = s.clone();
        if let Some(sp) = publish.spec.as_mut() {
            sp.publish_not_ready_addresses = Some(true);
        }
        let mut terminating = pod("t", &["10.0.0.3"], Some(true));
        terminating.metadata.deletion_timestamp = Some(Time(ts(99)));
        // (service, pod, (ready, serving, terminating))
        let cases = [
            (&s, pod("a", &["10.0.0.1"], Some(true)), (true, true, false)),
            (
                &s,
                pod("b", &["10.0.0.2"], Some(false)),
                (false, false, false),
            ),
            (&s, pod("c", &["10.0.0.2"], None), (false, false, false)),
            (&s, terminating.clone(), (false, true, true)),
            (
                &publish,
                pod("b", &["10.0.0.2"], Some(false)),
                (true, false, false),
            ),
            (&publish, terminating, (true, true, true)),
        ];
        for (svc, p, want) in cases {
            let e = slice_endpoint(&p, svc, IPV4, Some("z1".into())).expect("endpoint");
            let c = e.conditions.clone().expect("conditions");
            assert_eq!(
                (
                    c.ready.unwrap_or_default(),
                    c.serving.unwrap_or_default(),
                    c.terminating.unwrap_or_default()
                ),
                want,
                "{:?}",
                p.metadata.name
            );
            assert_eq!(e.node_name.as_deref(), Some("n1"));
            assert_eq!(e.zone.as_deref(), Some("z1"));
            let t = e.target_ref.expect("targetRef");
            assert_eq!(
                (t.kind.as_deref(), t.name, t.uid),
                (Some("Pod"), p.metadata.name.clone(), p.metadata.uid.clone())
            );
        }
        let dual = pod("d", &["10.0.0.9", "fd00::9"], Some(true));
        assert_eq!(
            slice_endpoint(&dual, &s, IPV4, None).expect("v4").addresses,
            ["10.0.0.9"]
        );
        assert_eq!(
            slice_endpoint(&dual, &s, IPV6, None).expect("v6").addresses,
            ["fd00::9"]
        );
        assert!(slice_endpoint(&pod("e", &["10.0.0.1"], None), &s, IPV6, None).is_none());
    }

    #[test]
    fn address_types_table() {
        let with = |families: Option<Vec<&str>>, ip: Option<&str>| {
            let mut s = svc(vec![]);
            if let Some(sp) = s.spec.as_mut() {
                sp.ip_families = families.map(|f| f.into_iter().map(String::from).collect());
                sp.cluster_ip = ip.map(String::from);
            }
            s
        };
        let cases = [
            (
                with(Some(vec![IPV6, IPV4]), Some("fd00::1")),
                vec![IPV6, IPV4],
            ),
            (with(None, Some("10.43.0.1")), vec![IPV4]),
            (with(None, Some("fd00::1")), vec![IPV6]),
            (with(None, Some("None")), vec![IPV4]),
        ];
        for (s, want) in cases {
            assert_eq!(address_types(&s), want);
        }
    }

    fn ports_of(s: &EndpointSlice) -> Vec<(String, i32)> {
        s.ports
            .iter()
            .flatten()
            .map(|p| {
                (
                    p.name.clone().unwrap_or_default(),
                    p.port.unwrap_or_default(),
                )
            })
            .collect()
    }

    fn ips_of(s: &EndpointSlice) -> Vec<String> {
        s.endpoints
            .iter()
            .flat_map(|e| e.addresses.clone())
            .collect()
    }

    /// Simulate the API server: created slices get names, updates replace by name.
    fn apply(existing: &mut Vec<EndpointSlice>, plan: SlicePlan) {
        existing.retain(|s| {
            !plan
                .delete
                .contains(s.metadata.name.as_ref().expect("name"))
        });
        for u in plan.update {
            let slot = existing
                .iter_mut()
                .find(|s| s.metadata.name == u.metadata.name)
                .expect("updated slice exists");
            *slot = u;
        }
        for (i, mut c) in plan.create.into_iter().enumerate() {
            c.metadata.name = Some(format!("web-{}{i}", existing.len()));
            existing.push(c);
        }
    }

    #[test]
    fn plan_slices_scenarios() {
        let s = svc(vec![
            sport("http", 80, Some(IntOrString::String("http".into()))),
            sport("", 81, Some(IntOrString::Int(8181))),
        ]);
        let zone = |_: &str| Some(None);
        let desired_for = |pods: &[Pod]| {
            let refs: Vec<&Pod> = pods.iter().collect();
            desired_slices(&s, &refs, &zone).0
        };
        let mut slices: Vec<EndpointSlice> = Vec::new();

        // No pods: one empty placeholder slice.
        let plan = plan_slices(&s, &slices, &desired_for(&[]), 2);
        assert_eq!(
            (plan.create.len(), plan.update.len(), plan.delete.len()),
            (1, 0, 0)
        );
        let p = &plan.create[0];
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(p.address_type, IPV4);
        assert!(p.endpoints.is_empty() && p.ports.is_none());
        let labels = p.metadata.labels.clone().expect("labels");
        assert_eq!(
            labels.get(LABEL_SERVICE_NAME).map(String::as_str),
            Some("web")
        );
        assert_eq!(
            labels.get(LABEL_MANAGED_BY).map(String::as_str),
            Some(MANAGED_BY)
        );
        assert_eq!(labels.get("tier").map(String::as_str), Some("front"));
        let owner = &p.metadata.owner_references.clone().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Service", "svc-uid", Some(true))
        );
        apply(&mut slices, plan);

        // Steady state: nothing to write.
        let plan = plan_slices(&s, &slices, &desired_for(&[]), 2);
        assert_eq!(
            (plan.create.len(), plan.update.len(), plan.delete.len()),
            (0, 0, 0)
        );

        // Three pods, max 2 per slice: the placeholder is reused, one more slice created.
        let pods = vec![
            pod("a", &["10.0.0.1"], Some(true)),
            pod("b", &["10.0.0.2"], Some(false)),
            pod("c", &["10.0.0.3"], Some(true)),
        ];
        let plan = plan_slices(&s, &slices, &desired_for(&pods), 2);
        assert_eq!(
            (plan.create.len(), plan.update.len(), plan.delete.len()),
            (1, 1, 0)
        );
        apply(&mut slices, plan);
        let mut all: Vec<String> = slices.iter().flat_map(ips_of).collect();
        all.sort();
        assert_eq!(all, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        for sl in &slices {
            assert!(sl.endpoints.len() <= 2);
            assert_eq!(
                ports_of(sl),
                [("http".to_string(), 8080), (String::new(), 8181)]
            );
        }
        let plan = plan_slices(&s, &slices, &desired_for(&pods), 2);
        assert_eq!(
            (plan.create.len(), plan.update.len(), plan.delete.len()),
            (0, 0, 0),
            "converged"
        );

        // b becomes ready: only its slice is updated.
        let pods2 = vec![
            pods[0].clone(),
            pod("b", &["10.0.0.2"], Some(true)),
            pods[2].clone(),
        ];
        let plan = plan_slices(&s, &slices, &desired_for(&pods2), 2);
        assert_eq!(
            (plan.create.len(), plan.update.len(), plan.delete.len()),
            (0, 1, 0)
        );
        apply(&mut slices, plan);
        assert!(
            slices.iter().flat_map(|s| s.endpoints.iter()).all(|e| e
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                == Some(true))
        );

        // A pod whose named port resolves differently lands in its own slice group.
        let mut odd = pod("z", &["10.0.0.26"], Some(true));
        if let Some(c) = odd
            .spec
            .as_mut()
            .and_then(|s| s.containers[0].ports.as_mut())
        {
            c[0].container_port = 7000;
        }
        let pods3 = vec![pods2[0].clone(), pods2[1].clone(), pods2[2].clone(), odd];
        let plan = plan_slices(&s, &slices, &desired_for(&pods3), 2);
        apply(&mut slices, plan);
        let odd_slice = slices
            .iter()
            .find(|sl| ips_of(sl) == ["10.0.0.26"])
            .expect("own slice");
        assert_eq!(
            ports_of(odd_slice),
            [("http".to_string(), 7000), (String::new(), 8181)]
        );

        // All pods gone: one empty placeholder remains, the rest are deleted.
        let plan = plan_slices(&s, &slices, &desired_for(&[]), 2);
        apply(&mut slices, plan);
        assert_eq!(slices.len(), 1);
        assert!(slices[0].endpoints.is_empty() && slices[0].ports.is_none());

        // A slice owned by an older service of the same name is deleted.
        let mut foreign = slices[0].clone();
        foreign.metadata.name = Some("web-old".into());
        foreign.metadata.owner_references = Some(vec![OwnerReference {
            uid: "old".into(),
            ..service_owner(&s)
        }]);
        slices.push(foreign);
        let plan = plan_slices(&s, &slices, &desired_for(&[]), 2);
        assert_eq!(plan.delete, ["web-old"]);
    }

    #[test]
    fn legacy_subsets_table() {
        let s = svc(vec![
            sport("http", 80, Some(IntOrString::String("http".into()))),
            sport("metrics", 90, Some(IntOrString::String("metrics".into()))),
        ]);
        let mut terminating = pod("t", &["10.0.0.7"], Some(true));
        terminating.metadata.deletion_timestamp = Some(Time(ts(99)));
        let mut odd = pod("o", &["10.0.0.5"], Some(true));
        if let Some(c) = odd
            .spec
            .as_mut()
            .and_then(|s| s.containers[0].ports.as_mut())
        {
            c.truncate(1); // no "metrics" port: only http resolves
        }
        let pods = [
            pod("b", &["10.0.0.12"], Some(true)),
            pod("a", &["10.0.0.9"], Some(true)),
            pod("n", &["10.0.0.3"], Some(false)),
            pod("x", &[], Some(true)),
            terminating,
            odd,
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let (subsets, truncated) = legacy_subsets(&s, &refs);
        assert!(!truncated);
        let sig = subsets_sig(&subsets);
        let ips = |v: &Vec<AddressSig>| v.iter().map(|a| a.0.clone()).collect::<Vec<_>>();
        let ports = |v: &Vec<PortSig>| v.iter().map(|p| (p.0.clone(), p.1)).collect::<Vec<_>>();
        assert_eq!(sig.len(), 2, "{sig:?}");
        let full = sig
            .iter()
            .find(|s| s.2.len() == 2)
            .expect("two-port subset");
        let mut want = vec!["10.0.0.12".to_string(), "10.0.0.9".to_string()];
        assert_eq!(ips(&full.0), want, "ready");
        want.reverse();
        let two_port = subsets
            .iter()
            .find(|s| s.ports.as_ref().map(Vec::len) == Some(2))
            .expect("subset");
        let order: Vec<String> = two_port
            .addresses
            .iter()
            .flatten()
            .map(|a| a.ip.clone())
            .collect();
        assert_eq!(order, want, "sorted by IP numerically");
        assert_eq!(ips(&full.1), ["10.0.0.3"], "not ready");
        assert_eq!(
            ports(&full.2),
            [("http".to_string(), 8080), ("metrics".to_string(), 9090)]
        );
        let half = sig
            .iter()
            .find(|s| s.2.len() == 1)
            .expect("one-port subset");
        assert_eq!(ips(&half.0), ["10.0.0.5"]);
        let addr = subsets
            .iter()
            .flat_map(|s| s.addresses.iter().flatten())
            .find(|a| a.ip == "10.0.0.9")
            .expect("address");
        assert_eq!(addr.node_name.as_deref(), Some("n1"));
        assert_eq!(
            addr.target_ref.as_ref().and_then(|t| t.name.as_deref()),
            Some("a")
        );

        // Cut at 1000 addresses, ready ones kept first.
        let many: Vec<Pod> = (0..1001)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &[&format!("10.1.{}.{}", i / 250, i % 250)],
                    Some(i != 0),
                )
            })
            .collect();
        let refs: Vec<&Pod> = many.iter().collect();
        let (subsets, truncated) = legacy_subsets(&s, &refs);
        assert!(truncated);
        let ready: usize = subsets
            .iter()
            .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
            .sum();
        let not_ready: usize = subsets
            .iter()
            .map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len))
            .sum();
        assert_eq!((ready, not_ready), (1000, 0));
    }

    #[test]
    fn trigger_tracker_table() {
        let mut t = TriggerTracker::default();
        let svc_key = Key::new("ns", "web");
        let a = Key::new("ns", "a");
        let b = Key::new("ns", "b");
        // (service time, pods, expected trigger)
        let steps: Vec<(Option<i64>, Vec<(&Key, i64)>, Option<i64>)> = vec![
            (Some(5), vec![(&a, 20)], Some(5)),
            (Some(5), vec![(&a, 20)], None),
            (Some(5), vec![(&a, 30), (&b, 25)], Some(25)),
            (Some(5), vec![(&b, 25)], None),
            (Some(7), vec![(&b, 25)], Some(7)),
        ];
        for (i, (st, pods, want)) in steps.into_iter().enumerate() {
            let pods: Vec<(Key, Timestamp)> =
                pods.into_iter().map(|(k, s)| (k.clone(), ts(s))).collect();
            assert_eq!(
                t.compute(&svc_key, st.map(ts), &pods),
                want.map(ts),
                "step {i}"
            );
        }
        t.forget(&svc_key);
        assert_eq!(t.compute(&svc_key, Some(ts(7)), &[]), Some(ts(7)));
    }
}
