//! Node IPAM (upstream kube-controller-manager's `nodeipam` with the `RangeAllocator`):
//! with `--allocate-node-cidrs`, every Node without `spec.podCIDRs` gets the next free
//! `--node-cidr-mask-size` subnet of each `--cluster-cidr` (comma-separated, at most one
//! IPv4 and one IPv6; IPv6 nodes get /64) in `spec.podCIDR` and `spec.podCIDRs`.
//!
//! Subnets already on nodes are marked used when the node is first seen (so a restart
//! recovers the allocation map from the nodes), and released when a node is deleted.
//! Allocation continues after the last subnet handed out (wrapping around), as upstream,
//! so a released subnet is not reused at once. A full range records `CIDRNotAvailable`
//! on the node and retries with backoff; a failed write records `CIDRAssignmentFailed`
//! and returns the subnet.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::events::{NORMAL, Recorder};
use crate::nodelifecycle::informer;
use crate::queue::WorkQueue;
use crate::{ControllerOptions, Error, is_not_found};

/// Event source component (upstream's range allocator records as this).
pub const COMPONENT: &str = "cidrAllocator";
/// Node subnet size for an IPv6 cluster CIDR (upstream `--node-cidr-mask-size-ipv6`).
pub const DEFAULT_IPV6_MASK: u8 = 64;
/// Attempts to write a node's podCIDRs (upstream `cidrUpdateRetries`).
const UPDATE_ATTEMPTS: usize = 3;
/// Concurrent node workers (upstream `cidrUpdateWorkers`).
const WORKERS: usize = 30;
/// Largest supported number of subnets per cluster CIDR (2^24).
const MAX_SUBNET_BITS: u8 = 24;

/// IPAM failures.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpamError {
    #[error("invalid CIDR {0:?}")]
    InvalidCidr(String),
    #[error("no cluster CIDR given")]
    NoClusterCidr,
    #[error("at most two cluster CIDRs (one IPv4, one IPv6) are supported, got {0:?}")]
    TooManyCidrs(String),
    #[error("node CIDR mask /{node} must be between the cluster CIDR's /{cluster} and /{max}")]
    MaskOutOfRange { node: u8, cluster: u8, max: u8 },
    #[error("node CIDR mask /{node} splits {cluster} into more than 2^{MAX_SUBNET_BITS} subnets")]
    TooManySubnets { node: u8, cluster: IpNet },
    #[error(
        "CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range {0}"
    )]
    Full(IpNet),
    #[error("CIDR {cidr} is outside the cluster CIDR {cluster}")]
    OutOfRange { cidr: IpNet, cluster: IpNet },
}

fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn from_u128(v4: bool, n: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(
            u32::try_from(n & u128::from(u32::MAX)).unwrap_or(0),
        ))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

/// Which subnets of one cluster CIDR are in use (upstream `cidrset.CidrSet`).
#[derive(Clone, Debug)]
pub struct CidrSet {
    cluster: IpNet,
    node_prefix: u8,
    max: usize,
    used: Vec<u64>,
    next: usize,
    allocated: usize,
}

impl CidrSet {
    /// Subnets of `/node_prefix` in `cluster`.
    pub fn new(cluster: IpNet, node_prefix: u8) -> Result<Self, IpamError> {
        let cluster = cluster.trunc();
        if node_prefix < cluster.prefix_len() || node_prefix > cluster.max_prefix_len() {
            return Err(IpamError::MaskOutOfRange {
                node: node_prefix,
                cluster: cluster.prefix_len(),
                max: cluster.max_prefix_len(),
            });
        }
        let bits = node_prefix - cluster.prefix_len();
        if bits > MAX_SUBNET_BITS {
            return Err(IpamError::TooManySubnets {
                node: node_prefix,
                cluster,
            });
        }
        let max = 1usize << bits;
        Ok(CidrSet {
            cluster,
            node_prefix,
            max,
            used: vec![0; max.div_ceil(64)],
            next: 0,
            allocated: 0,
        })
    }

    pub fn cluster(&self) -> IpNet {
        self.cluster
    }

    /// Number of subnets in use.
    pub fn allocated(&self) -> usize {
        self.allocated
    }

    fn is_used(&self, i: usize) -> bool {
        self.used[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: usize, on: bool) {
        let was = self.is_used(i);
        if on {
            self.used[i / 64] |= 1 << (i % 64);
        } else {
            self.used[i / 64] &= !(1 << (i % 64));
        }
        match (was, on) {
            (false, true) => self.allocated += 1,
            (true, false) => self.allocated -= 1,
            _ => {}
        }
    }

    fn subnet(&self, i: usize) -> IpNet {
        let host_bits = u32::from(self.cluster.max_prefix_len() - self.node_prefix);
        let base = to_u128(self.cluster.network());
        let addr = base + ((i as u128) << host_bits);
        let v4 = matches!(self.cluster, IpNet::V4(_));
        // The prefix is within range: checked in `new`.
        IpNet::new(from_u128(v4, addr), self.node_prefix).unwrap_or(self.cluster)
    }

    fn index_of(&self, addr: IpAddr) -> usize {
        let host_bits = u32::from(self.cluster.max_prefix_len() - self.node_prefix);
        let off = to_u128(addr).saturating_sub(to_u128(self.cluster.network()));
        usize::try_from(off >> host_bits)
            .unwrap_or(usize::MAX)
            .min(self.max - 1)
    }

    /// The subnet indices `net` covers (inclusive).
    fn range(&self, net: &IpNet) -> Result<(usize, usize), IpamError> {
        let net = net.trunc();
        let same_family = matches!(
            (net, self.cluster),
            (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_))
        );
        if !same_family
            || !(self.cluster.contains(&net.network()) || net.contains(&self.cluster.network()))
        {
            return Err(IpamError::OutOfRange {
                cidr: net,
                cluster: self.cluster,
            });
        }
        let first = if net.contains(&self.cluster.network()) {
            self.cluster.network()
        } else {
            net.network()
        };
        let last = if net.contains(&self.cluster.broadcast()) {
            self.cluster.broadcast()
        } else {
            net.broadcast()
        };
        Ok((self.index_of(first), self.index_of(last)))
    }

    /// The next free subnet after the last one handed out.
    pub fn allocate_next(&mut self) -> Result<IpNet, IpamError> {
        if self.allocated >= self.max {
            return Err(IpamError::Full(self.cluster));
        }
        for k in 0..self.max {
            let i = (self.next + k) % self.max;
            if !self.is_used(i) {
                self.set(i, true);
                self.next = (i + 1) % self.max;
                return Ok(self.subnet(i));
            }
        }
        Err(IpamError::Full(self.cluster))
    }

    /// Mark the subnets `net` covers as used.
    pub fn occupy(&mut self, net: &IpNet) -> Result<(), IpamError> {
        let (a, b) = self.range(net)?;
        for i in a..=b {
            self.set(i, true);
        }
        Ok(())
    }

    /// Mark the subnets `net` covers as free.
    pub fn release(&mut self, net: &IpNet) -> Result<(), IpamError> {
        let (a, b) = self.range(net)?;
        for i in a..=b {
            self.set(i, false);
        }
        Ok(())
    }
}

/// One [`CidrSet`] per cluster CIDR.
#[derive(Clone, Debug)]
pub struct Allocator {
    sets: Vec<CidrSet>,
}

/// Parse a CIDR the way upstream's `ParseCIDRSloppy` does (host bits allowed).
pub fn parse_cidr(s: &str) -> Result<IpNet, IpamError> {
    s.trim()
        .parse::<IpNet>()
        .map(|n| n.trunc())
        .map_err(|_| IpamError::InvalidCidr(s.to_string()))
}

impl Allocator {
    /// From `--cluster-cidr` (comma-separated) and the node mask sizes.
    pub fn new(cluster_cidrs: &str, ipv4_mask: u8, ipv6_mask: u8) -> Result<Self, IpamError> {
        let nets: Vec<IpNet> = cluster_cidrs
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(parse_cidr)
            .collect::<Result<_, _>>()?;
        if nets.is_empty() {
            return Err(IpamError::NoClusterCidr);
        }
        let v4 = nets.iter().filter(|n| matches!(n, IpNet::V4(_))).count();
        if nets.len() > 2 || (nets.len() == 2 && v4 != 1) {
            return Err(IpamError::TooManyCidrs(cluster_cidrs.to_string()));
        }
        let sets = nets
            .into_iter()
            .map(|n| {
                let mask = if matches!(n, IpNet::V4(_)) {
                    ipv4_mask
                } else {
                    ipv6_mask
                };
                CidrSet::new(n, mask)
            })
            .collect::<Result<_, _>>()?;
        Ok(Allocator { sets })
    }

    /// Mark a node's podCIDRs used (each in the set of its position, as upstream).
    pub fn occupy(&mut self, pod_cidrs: &[String]) -> Result<(), IpamError> {
        for (i, c) in pod_cidrs.iter().enumerate() {
            let net = parse_cidr(c)?;
            if let Some(set) = self.sets.get_mut(i) {
                set.occupy(&net)?;
            }
        }
        Ok(())
    }

    /// Release a node's podCIDRs.
    pub fn release(&mut self, pod_cidrs: &[String]) -> Result<(), IpamError> {
        for (i, c) in pod_cidrs.iter().enumerate() {
            let net = parse_cidr(c)?;
            if let Some(set) = self.sets.get_mut(i) {
                set.release(&net)?;
            }
        }
        Ok(())
    }

    /// One new subnet from every cluster CIDR (nothing is kept on failure).
    pub fn allocate(&mut self) -> Result<Vec<IpNet>, IpamError> {
        let mut got = Vec::new();
        for i in 0..self.sets.len() {
            match self.sets[i].allocate_next() {
                Ok(n) => got.push(n),
                Err(e) => {
                    for (j, n) in got.iter().enumerate() {
                        let _ = self.sets[j].release(n);
                    }
                    return Err(e);
                }
            }
        }
        Ok(got)
    }

    pub fn sets(&self) -> &[CidrSet] {
        &self.sets
    }
}

fn pod_cidrs(node: &Node) -> Vec<String> {
    let spec = node.spec.as_ref();
    match spec
        .and_then(|s| s.pod_cidrs.clone())
        .filter(|v| !v.is_empty())
    {
        Some(v) => v,
        None => spec
            .and_then(|s| s.pod_cidr.clone())
            .filter(|c| !c.is_empty())
            .into_iter()
            .collect(),
    }
}

struct Controller {
    client: Client,
    recorder: Recorder,
    alloc: Arc<Mutex<Allocator>>,
    queue: Arc<WorkQueue<String>>,
}

fn lock(a: &Mutex<Allocator>) -> MutexGuard<'_, Allocator> {
    a.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run node IPAM until `shutdown` is cancelled (returns at once when
/// `allocate_node_cidrs` is off).
pub async fn run(
    client: Client,
    opts: &ControllerOptions,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    if !opts.allocate_node_cidrs {
        info!("node IPAM: --allocate-node-cidrs is off, not allocating");
        return Ok(());
    }
    let alloc = Allocator::new(
        &opts.cluster_cidr,
        opts.node_cidr_mask_size,
        DEFAULT_IPV6_MASK,
    )
    .map_err(|e| Error::Several(format!("node IPAM: {e}")))?;
    let alloc = Arc::new(Mutex::new(alloc));
    let token = shutdown.child_token();
    let queue = WorkQueue::new(opts.backoff);
    let nodes = {
        let (alloc, queue) = (alloc.clone(), queue.clone());
        informer::spawn_shared::<Node, _>(&opts.informers, &client, token.clone(), move |ev, _| {
            match ev {
                watcher::Event::Apply(n) | watcher::Event::InitApply(n) => {
                    let cidrs = pod_cidrs(n);
                    if cidrs.is_empty() {
                        queue.add(informer::name_of(n));
                    } else if let Err(e) = lock(&alloc).occupy(&cidrs) {
                        debug!(node = %informer::name_of(n), error = %e, "node IPAM: cannot mark node CIDRs used");
                    }
                }
                watcher::Event::Delete(n) => {
                    if let Err(e) = lock(&alloc).release(&pod_cidrs(n)) {
                        debug!(node = %informer::name_of(n), error = %e, "node IPAM: cannot release node CIDRs");
                    }
                }
                _ => {}
            }
        })
    };
    if !informer::wait_ready(&nodes, &token).await {
        return Ok(());
    }
    info!(cluster_cidr = %opts.cluster_cidr, mask = opts.node_cidr_mask_size, "node IPAM: started");
    let ctl = Arc::new(Controller {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
        alloc,
        queue: queue.clone(),
    });
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let c = ctl.clone();
        workers.push(tokio::spawn(async move { c.worker().await }));
    }
    token.cancelled().await;
    queue.shut_down();
    for w in workers {
        let _ = w.await;
    }
    info!("node IPAM: stopped");
    Ok(())
}

impl Controller {
    async fn worker(&self) {
        while let Some(name) = self.queue.get().await {
            match self.sync(&name).await {
                Ok(()) => self.queue.forget(&name),
                Err(e) => {
                    debug!(node = %name, error = %e, "node IPAM: retrying");
                    self.queue.add_rate_limited(name.clone());
                }
            }
            self.queue.done(&name);
        }
    }

    async fn event(&self, node: &Node, reason: &str) {
        let name = informer::name_of(node);
        let r = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(name.clone()),
            uid: node.metadata.uid.clone(),
            ..Default::default()
        };
        self.recorder
            .record(
                &r,
                NORMAL,
                reason,
                &format!("Node {name} status is now: {reason}"),
            )
            .await;
    }

    async fn sync(&self, name: &str) -> Result<(), Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        let Some(node) = api.get_opt(name).await? else {
            return Ok(());
        };
        let existing = pod_cidrs(&node);
        if !existing.is_empty() {
            if let Err(e) = lock(&self.alloc).occupy(&existing) {
                debug!(node = %name, error = %e, "node IPAM: cannot mark node CIDRs used");
            }
            return Ok(());
        }
        let allocated = lock(&self.alloc).allocate();
        let cidrs = match allocated {
            Ok(c) => c,
            Err(e) => {
                warn!(node = %name, error = %e, "node IPAM: no CIDR left to allocate");
                self.event(&node, "CIDRNotAvailable").await;
                return Err(Error::Several(format!(
                    "node IPAM: no CIDR available for node {name}"
                )));
            }
        };
        let strings: Vec<String> = cidrs.iter().map(|c| c.to_string()).collect();
        let patch = json!({"spec": {"podCIDR": strings[0], "podCIDRs": strings}});
        let mut last = None;
        for _ in 0..UPDATE_ATTEMPTS {
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    info!(node = %name, pod_cidrs = ?strings, "node IPAM: set node podCIDRs");
                    return Ok(());
                }
                Err(e) if is_not_found(&e) => {
                    let _ = lock(&self.alloc).release(&strings);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        warn!(node = %name, "node IPAM: writing podCIDRs failed, releasing them");
        self.event(&node, "CIDRAssignmentFailed").await;
        let _ = lock(&self.alloc).release(&strings);
        Err(last.map_or_else(
            || Error::Conflict(format!("podCIDRs of node {name}")),
            Error::from,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        parse_cidr(s).expect("cidr")
    }

    #[test]
    fn allocation_table() {
        // (cluster, mask, pre-occupied, number of allocations, expected results)
        type Case = (
            &'static str,
            u8,
            Vec<&'static str>,
            usize,
            Vec<Result<&'static str, ()>>,
        );
        let cases: Vec<Case> = vec![
            (
                "10.42.0.0/16",
                24,
                vec![],
                3,
                vec![Ok("10.42.0.0/24"), Ok("10.42.1.0/24"), Ok("10.42.2.0/24")],
            ),
            (
                "10.42.0.0/16",
                24,
                vec!["10.42.1.0/24"],
                2,
                vec![Ok("10.42.0.0/24"), Ok("10.42.2.0/24")],
            ),
            // A bigger occupied range covers several subnets.
            (
                "10.42.0.0/16",
                24,
                vec!["10.42.0.0/23"],
                1,
                vec![Ok("10.42.2.0/24")],
            ),
            // A smaller occupied range takes its whole subnet.
            (
                "10.42.0.0/16",
                24,
                vec!["10.42.0.128/25"],
                1,
                vec![Ok("10.42.1.0/24")],
            ),
            (
                "10.0.0.0/30",
                31,
                vec![],
                3,
                vec![Ok("10.0.0.0/31"), Ok("10.0.0.2/31"), Err(())],
            ),
            (
                "10.1.2.3/24",
                24,
                vec![],
                2,
                vec![Ok("10.1.2.0/24"), Err(())],
            ),
            (
                "fd00:10::/56",
                64,
                vec![],
                2,
                vec![Ok("fd00:10::/64"), Ok("fd00:10:0:1::/64")],
            ),
        ];
        for (cluster, mask, occ, n, want) in cases {
            let mut s = CidrSet::new(net(cluster), mask).expect("set");
            for o in &occ {
                s.occupy(&net(o)).expect("occupy");
            }
            let got: Vec<Result<String, ()>> = (0..n)
                .map(|_| s.allocate_next().map(|c| c.to_string()).map_err(|_| ()))
                .collect();
            let want: Vec<Result<String, ()>> =
                want.into_iter().map(|r| r.map(String::from)).collect();
            assert_eq!(got, want, "{cluster} /{mask} occupied {occ:?}");
        }
    }

    #[test]
    fn release_and_round_robin() {
        let mut s = CidrSet::new(net("10.0.0.0/22"), 24).expect("set");
        let a = s.allocate_next().expect("a");
        let b = s.allocate_next().expect("b");
        assert_eq!(s.allocated(), 2);
        s.release(&a).expect("release");
        assert_eq!(s.allocated(), 1);
        // Continues after the last one handed out, then wraps around to the freed one.
        assert_eq!(s.allocate_next().expect("c").to_string(), "10.0.2.0/24");
        assert_eq!(s.allocate_next().expect("d").to_string(), "10.0.3.0/24");
        assert_eq!(s.allocate_next().expect("e"), a);
        assert_eq!(s.allocate_next(), Err(IpamError::Full(net("10.0.0.0/22"))));
        s.release(&b).expect("release");
        assert_eq!(s.allocate_next().expect("f"), b);
        assert!(matches!(
            s.occupy(&net("10.9.0.0/24")),
            Err(IpamError::OutOfRange { .. })
        ));
        assert!(matches!(
            s.occupy(&net("fd00::/64")),
            Err(IpamError::OutOfRange { .. })
        ));
    }

    #[test]
    fn config_errors_table() {
        let cases: Vec<(&str, u8, Result<usize, ()>)> = vec![
            ("10.42.0.0/16", 24, Ok(1)),
            ("10.42.0.0/16,fd00::/56", 24, Ok(2)),
            ("", 24, Err(())),
            ("nonsense", 24, Err(())),
            ("10.42.0.0/16", 8, Err(())),
            ("10.42.0.0/16", 33, Err(())),
            ("10.0.0.0/8,10.1.0.0/16", 24, Err(())),
            ("10.0.0.0/8,fd00::/56,fd01::/56", 24, Err(())),
            ("10.0.0.0/1", 30, Err(())),
        ];
        for (cidrs, mask, want) in cases {
            let got = Allocator::new(cidrs, mask, 64)
                .map(|a| a.sets().len())
                .map_err(|_| ());
            assert_eq!(got, want, "{cidrs} /{mask}");
        }
    }

    #[test]
    fn dual_stack_allocates_both_and_rolls_back() {
        let mut a = Allocator::new("10.0.0.0/24,fd00::/64", 24, 64).expect("alloc");
        let got: Vec<String> = a
            .allocate()
            .expect("first")
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(got, ["10.0.0.0/24", "fd00::/64"]);
        // Both ranges are now full; nothing leaks from a failed attempt.
        assert!(a.allocate().is_err());
        a.release(&got).expect("release");
        assert_eq!(a.sets()[0].allocated(), 0);
        assert_eq!(a.sets()[1].allocated(), 0);
        let mut b = Allocator::new("10.0.0.0/23,fd00::/64", 24, 64).expect("alloc");
        b.allocate().expect("first");
        assert!(b.allocate().is_err(), "IPv6 set is full");
        assert_eq!(
            b.sets()[0].allocated(),
            1,
            "IPv4 subnet of the failed attempt was returned"
        );
        assert!(b.occupy(&["10.0.1.0/24".to_string()]).is_ok());
        assert_eq!(b.sets()[0].allocated(), 2);
    }
}
