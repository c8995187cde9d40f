//! The node's pod network: bridge, per-pod veth pairs, addresses, routes to
//! other nodes' pod CIDRs, NAT.
//!
//! A [`NodeNetwork`] operates on the network namespace of the thread that
//! created it: its netlink socket is opened there, and it keeps a handle on that
//! namespace for everything else (`nft`, sysctls). Production creates it in the
//! root namespace; tests create it on a thread that entered a throwaway "node"
//! namespace, so the machine's own network is never touched. After creation it
//! may be used from any thread of the tokio runtime it was created in.
//!
//! Calls for one pod must not run concurrently (the kubelet serializes a pod's
//! sandbox operations); calls for different pods may.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use ipnet::{IpNet, Ipv4Net};
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol,
};
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::firewall::{
    FirewallError, FirewallSpec, HostPortMapping, NftApplier, NftCommand, render_ruleset,
};
use crate::ipam::{Ipam, IpamError, gateway_of, validate_pod_cidr};
use crate::netns::{Netns, NetnsError, NetnsHandle};

/// Default bridge name.
pub const DEFAULT_BRIDGE: &str = "flotilla0";
/// Our nftables table (family `ip`).
pub const NFT_TABLE: &str = "flotilla";
/// Routing protocol number marking the host-gw routes we own (`proto 0xf1`),
/// so replacing the set never touches anyone else's routes.
pub const ROUTE_PROTOCOL: u8 = 0xf1;
/// Default MTU of bridge and veths.
pub const DEFAULT_MTU: u32 = 1500;

const ENODEV: i32 = 19;
const EEXIST: i32 = 17;
const ESRCH: i32 = 3;

/// Errors of the node network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The configuration cannot be used.
    #[error("invalid network config: {0}")]
    Config(String),
    /// An argument of a call is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Address management failed.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// A namespace operation failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// Firewall rules failed.
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    /// A netlink request failed.
    #[error("netlink: {op}: {source}")]
    Netlink {
        /// What was being done.
        op: String,
        /// The cause.
        source: rtnetlink::Error,
    },
    /// The bridge is missing (call [`NodeNetwork::ensure_bridge`]).
    #[error("bridge {0} does not exist (ensure_bridge not called?)")]
    NoBridge(String),
    /// A link with the bridge's name exists but is something else.
    #[error("link {0} exists and is not a bridge")]
    NotABridge(String),
    /// An I/O step failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The cause.
        source: io::Error,
    },
    /// No tokio runtime is running on the calling thread.
    #[error("NodeNetwork needs a tokio runtime on the calling thread")]
    NoRuntime,
}

fn nl(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
    let op = op.into();
    move |source| NetworkError::Netlink { op, source }
}

fn io_err(op: impl Into<String>) -> impl FnOnce(io::Error) -> NetworkError {
    let op = op.into();
    move |source| NetworkError::Io { op, source }
}

/// The positive errno of a netlink error, if it is one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

/// Host-side veth name of a pod: `veth` + 11 hex digits of SHA-256(pod id),
/// 15 characters (the kernel's limit), stable across restarts.
pub fn host_veth_name(pod_id: &str) -> String {
    let digest = Sha256::digest(pod_id.as_bytes());
    let mut name = String::from("veth");
    name.push_str(&hex::encode(&digest[..6])[..11]);
    name
}

/// Checks a Linux interface name (1-15 bytes, no `/`, `:` or whitespace).
pub fn validate_ifname(name: &str) -> Result<(), NetworkError> {
    if name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(NetworkError::InvalidArgument(format!(
            "interface name {name:?} must be 1-15 characters without '/', ':' or spaces"
        )));
    }
    Ok(())
}

/// Configuration of a node's pod network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeNetConfig {
    /// The pod bridge (default `flotilla0`).
    pub bridge_name: String,
    /// This node's pod CIDR (IPv4, at most /30).
    pub pod_cidr: IpNet,
    /// Where the IPAM files live (one file per allocated address).
    pub state_dir: PathBuf,
    /// The whole cluster's pod network, exempt from masquerade (None: the pod
    /// CIDR alone).
    pub cluster_cidr: Option<IpNet>,
    /// MTU of the bridge and veths.
    pub mtu: u32,
}

impl NodeNetConfig {
    /// A config with the default bridge name and MTU.
    pub fn new(pod_cidr: IpNet, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            bridge_name: DEFAULT_BRIDGE.to_string(),
            pod_cidr,
            state_dir: state_dir.into(),
            cluster_cidr: None,
            mtu: DEFAULT_MTU,
        }
    }
}

/// Network status of a pod sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetStatus {
    /// The pod's address.
    pub ip: IpAddr,
    /// Prefix length of the pod network.
    pub prefix_len: u8,
    /// The pod's default gateway (the bridge).
    pub gateway: IpAddr,
    /// The host side of the pod's veth pair.
    pub host_veth: String,
}

#[derive(Debug, Default)]
struct FirewallState {
    masquerade: bool,
    host_ports: Vec<HostPortMapping>,
}

/// A node's pod network (see the module docs for the namespace rule).
pub struct NodeNetwork {
    config: NodeNetConfig,
    pod_cidr: Ipv4Net,
    cluster_cidr: Ipv4Net,
    ipam: Ipam,
    handle: Handle,
    node_ns: Arc<NetnsHandle>,
    nft: Arc<dyn NftApplier>,
    firewall: Mutex<FirewallState>,
}

impl std::fmt::Debug for NodeNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeNetwork")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl NodeNetwork {
    /// Validates `config`, opens the IPAM state (existing allocations are
    /// kept) and a netlink connection in the calling thread's network
    /// namespace. Must be called inside a tokio runtime. Changes nothing on
    /// the system.
    pub fn new(config: NodeNetConfig) -> Result<Self, NetworkError> {
        validate_ifname(&config.bridge_name).map_err(|_| {
            NetworkError::Config(format!("bad bridge name {:?}", config.bridge_name))
        })?;
        if !(68..=65535).contains(&config.mtu) {
            return Err(NetworkError::Config(format!(
                "mtu {} out of range 68-65535",
                config.mtu
            )));
        }
        let pod_cidr = validate_pod_cidr(&config.pod_cidr)?;
        let cluster_cidr = match config.cluster_cidr {
            None => pod_cidr,
            Some(IpNet::V4(c)) if c.contains(&pod_cidr) => c.trunc(),
            Some(c) => {
                return Err(NetworkError::Config(format!(
                    "cluster cidr {c} must be IPv4 and contain the pod cidr {pod_cidr}"
                )));
            }
        };
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NetworkError::NoRuntime)?;
        let node_ns = Arc::new(Netns::current()?);
        let ipam = Ipam::open(&config.state_dir, &config.pod_cidr)?;
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(io_err("opening netlink socket"))?;
        runtime.spawn(conn);
        let nft = Arc::new(NftCommand::new(Netns::current()?));
        Ok(Self {
            config,
            pod_cidr,
            cluster_cidr,
            ipam,
            handle,
            node_ns,
            nft,
            firewall: Mutex::new(FirewallState::default()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NodeNetConfig {
        &self.config
    }

    /// The gateway (bridge) address: the first host address of the pod CIDR.
    pub fn gateway(&self) -> Ipv4Addr {
        gateway_of(self.pod_cidr)
    }

    /// The address allocator (e.g. to list allocations).
    pub fn ipam(&self) -> &Ipam {
        &self.ipam
    }

    async fn link_by_name(&self, name: &str) -> Result<Option<LinkMessage>, NetworkError> {
        link_by_name(&self.handle, name).await
    }

    /// Makes sure the bridge exists, is up, has a fixed MAC address, carries the
    /// gateway address, and that IPv4 forwarding is on in this namespace.
    /// Idempotent.
    pub async fn ensure_bridge(&self) -> Result<(), NetworkError> {
        let name = &self.config.bridge_name;
        let link = match self.link_by_name(name).await? {
            Some(link) => link,
            None => {
                let msg = LinkBridge::new(name).mtu(self.config.mtu).build();
                match self.handle.link().add(msg).execute().await {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(EEXIST) => {}
                    Err(e) => return Err(nl(format!("creating bridge {name}"))(e)),
                }
                self.link_by_name(name)
                    .await?
                    .ok_or_else(|| NetworkError::NoBridge(name.clone()))?
            }
        };
        if link_kind(&link) != Some(InfoKind::Bridge) {
            return Err(NetworkError::NotABridge(name.clone()));
        }
        let index = link.header.index;
        // Pin the bridge's MAC: otherwise it follows the lowest port MAC and
        // pods' ARP entries for the gateway go stale as pods come and go.
        let mut change = LinkUnspec::new_with_index(index).up();
        if let Some(mac) = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(mac) => Some(mac.clone()),
            _ => None,
        }) {
            change = change.address(mac);
        }
        self.handle
            .link()
            .change(change.build())
            .execute()
            .await
            .map_err(nl(format!("setting bridge {name} up")))?;
        let gateway = IpAddr::V4(self.gateway());
        let has_gateway = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect::<Vec<_>>()
            .await
            .map_err(nl(format!("listing addresses of {name}")))?
            .iter()
            .any(|m| {
                m.header.prefix_len == self.pod_cidr.prefix_len()
                    && m.attributes.iter().any(|a| matches!(a, AddressAttribute::Local(ip) | AddressAttribute::Address(ip) if *ip == gateway))
            });
        if !has_gateway {
            match self
                .handle
                .address()
                .add(index, gateway, self.pod_cidr.prefix_len())
                .execute()
                .await
            {
                Ok(()) => {}
                Err(e) if errno(&e) == Some(EEXIST) => {}
                Err(e) => return Err(nl(format!("adding {gateway} to {name}"))(e)),
            }
        }
        self.node_ns
            .run(|| std::fs::write("/proc/sys/net/ipv4/ip_forward", b"1"))?
            .map_err(io_err("enabling net.ipv4.ip_forward"))?;
        Ok(())
    }

    /// Connects the pod's network namespace at `netns_path` to the bridge: a veth
    /// pair (host side named by [`host_veth_name`], pod side `if_name`), an
    /// address from the pod CIDR, `lo` up and a default route via the gateway.
    /// Idempotent: for a pod that is already set up it returns the same status.
    /// On failure nothing is left behind (no veth, no new allocation).
    pub async fn setup_pod(
        &self,
        pod_id: &str,
        netns_path: &Path,
        if_name: &str,
    ) -> Result<PodNetStatus, NetworkError> {
        validate_ifname(if_name)?;
        let pod_ns = Netns::open(netns_path)?;
        let bridge = self
            .link_by_name(&self.config.bridge_name)
            .await?
            .ok_or_else(|| NetworkError::NoBridge(self.config.bridge_name.clone()))?;
        let alloc = self.ipam.allocate(pod_id)?;
        let host_veth = host_veth_name(pod_id);
        let status = PodNetStatus {
            ip: IpAddr::V4(alloc.ip),
            prefix_len: self.pod_cidr.prefix_len(),
            gateway: IpAddr::V4(self.gateway()),
            host_veth: host_veth.clone(),
        };
        match self
            .connect_pod(&pod_ns, bridge.header.index, &host_veth, if_name, alloc.ip)
            .await
        {
            Ok(()) => Ok(status),
            Err(e) => {
                let _ = self.delete_link(&host_veth).await;
                if alloc.newly_allocated {
                    let _ = self.ipam.release(pod_id);
                }
                Err(e)
            }
        }
    }

    async fn connect_pod(
        &self,
        pod_ns: &NetnsHandle,
        bridge_index: u32,
        host_veth: &str,
        if_name: &str,
        ip: Ipv4Addr,
    ) -> Result<(), NetworkError> {
        let prefix = self.pod_cidr.prefix_len();
        let gateway = self.gateway();
        if let Some(existing) = self.link_by_name(host_veth).await? {
            let attached = existing
                .attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::Controller(i) if *i == bridge_index));
            let ifn = if_name.to_string();
            let pod_ok = attached
                && in_netns(pod_ns, move |h| async move {
                    pod_side_has(&h, &ifn, ip, prefix).await
                })
                .await?;
            if pod_ok {
                return Ok(());
            }
            // Half-made or stale: start over.
            self.delete_link(host_veth).await?;
        }
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(if_name)
            .mtu(self.config.mtu)
            .setns_by_fd(pod_ns.file().as_raw_fd())
            .build();
        let msg = LinkVeth::new(host_veth, if_name)
            .mtu(self.config.mtu)
            .controller(bridge_index)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(nl(format!(
                "creating veth {host_veth} <-> {if_name} in {}",
                pod_ns.path().display()
            )))?;
        // Hairpin: frames may leave through the port they came in on, so a pod
        // can reach itself through a hostPort (kubelet's hairpin-veth mode).
        let host = self
            .link_by_name(host_veth)
            .await?
            .ok_or_else(|| NetworkError::Io {
                op: format!("configuring {host_veth}"),
                source: io::Error::other("veth vanished right after creation"),
            })?;
        self.handle
            .link()
            .set_port(LinkBridgePort::new(host.header.index).hairpin(true).build())
            .execute()
            .await
            .map_err(nl(format!("setting hairpin mode on {host_veth}")))?;
        let ifn = if_name.to_string();
        in_netns(pod_ns, move |h| async move {
            configure_pod_side(&h, &ifn, ip, prefix, gateway).await
        })
        .await
    }

    async fn delete_link(&self, name: &str) -> Result<bool, NetworkError> {
        let Some(link) = self.link_by_name(name).await? else {
            return Ok(false);
        };
        match self.handle.link().del(link.header.index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(false),
            Err(e) => Err(nl(format!("deleting {name}"))(e)),
        }
    }

    /// Removes the pod's veth pair and releases its address. Idempotent; works
    /// when the namespace at `netns_path` is already gone (then only the address
    /// is released, the kernel having removed the veth with the namespace).
    pub async fn teardown_pod(&self, pod_id: &str, netns_path: &Path) -> Result<(), NetworkError> {
        let host_veth = host_veth_name(pod_id);
        let deleted = self.delete_link(&host_veth).await?;
        if !deleted && let Ok(pod_ns) = Netns::open(netns_path) {
            // The host side is missing (renamed or moved): remove whatever veth
            // is left in the pod's own namespace.
            in_netns(&pod_ns, |h| async move { delete_veths(&h).await }).await?;
        }
        self.ipam.release(pod_id)?;
        Ok(())
    }

    /// The firewall spec the node currently wants.
    pub async fn firewall_spec(&self) -> FirewallSpec {
        let state = self.firewall.lock().await;
        self.spec_of(&state)
    }

    fn spec_of(&self, state: &FirewallState) -> FirewallSpec {
        FirewallSpec {
            table: NFT_TABLE.to_string(),
            bridge: self.config.bridge_name.clone(),
            pod_cidr: self.pod_cidr,
            cluster_cidr: self.cluster_cidr,
            masquerade: state.masquerade,
            host_ports: state.host_ports.clone(),
        }
    }

    async fn apply_firewall(&self, state: &FirewallState) -> Result<(), NetworkError> {
        let script = render_ruleset(&self.spec_of(state))?;
        let nft = self.nft.clone();
        tokio::task::spawn_blocking(move || nft.apply(&script))
            .await
            .map_err(|e| NetworkError::Io {
                op: "nft worker".into(),
                source: io::Error::other(e.to_string()),
            })??;
        Ok(())
    }

    /// Turns on masquerading of pod traffic to destinations outside the cluster
    /// CIDR that leaves through an interface other than the bridge.
    pub async fn ensure_masquerade(&self) -> Result<(), NetworkError> {
        let mut state = self.firewall.lock().await;
        let was = state.masquerade;
        state.masquerade = true;
        if let Err(e) = self.apply_firewall(&state).await {
            state.masquerade = was;
            return Err(e);
        }
        Ok(())
    }

    /// Replaces the node's whole set of hostPort mappings (DNAT from any local
    /// address, or the given host address, to the pod). Invalid or conflicting
    /// sets are refused before anything changes.
    pub async fn set_host_ports(&self, mappings: Vec<HostPortMapping>) -> Result<(), NetworkError> {
        crate::firewall::validate_host_ports(&mappings)?;
        let mut state = self.firewall.lock().await;
        let old = std::mem::replace(&mut state.host_ports, mappings);
        if let Err(e) = self.apply_firewall(&state).await {
            state.host_ports = old;
            return Err(e);
        }
        Ok(())
    }

    /// Removes our nftables table (masquerade and hostPorts) entirely.
    pub async fn remove_firewall(&self) -> Result<(), NetworkError> {
        let mut state = self.firewall.lock().await;
        *state = FirewallState::default();
        self.apply_firewall(&state).await
    }

    /// Makes the host-gw routes to other nodes' pod CIDRs exactly `routes`
    /// (`(pod CIDR, node address)`): missing ones are added, changed ones
    /// replaced, ours that are no longer wanted deleted. Only routes marked with
    /// [`ROUTE_PROTOCOL`] are ever removed. The node addresses must be directly
    /// reachable (same L2 network).
    pub async fn set_node_routes(&self, routes: Vec<(IpNet, IpAddr)>) -> Result<(), NetworkError> {
        let mut wanted: Vec<(Ipv4Net, Ipv4Addr)> = Vec::new();
        for (cidr, via) in &routes {
            let bad = |reason: &str| {
                NetworkError::InvalidArgument(format!("node route {cidr} via {via}: {reason}"))
            };
            let (IpNet::V4(net), IpAddr::V4(gw)) = (cidr, via) else {
                return Err(bad("only IPv4 is supported"));
            };
            if net.trunc() != *net {
                return Err(bad("host bits set in the pod cidr"));
            }
            if net.contains(&self.pod_cidr) || self.pod_cidr.contains(net) {
                return Err(bad("overlaps this node's own pod cidr"));
            }
            if gw.is_unspecified() || gw.is_multicast() || gw.is_broadcast() {
                return Err(bad("not a unicast node address"));
            }
            if wanted.iter().any(|(n, _)| n == net) {
                return Err(bad("pod cidr listed twice"));
            }
            wanted.push((*net, *gw));
        }
        let current = self.our_routes().await?;
        for (msg, net, gw) in &current {
            if !wanted.contains(&(*net, *gw)) {
                match self.handle.route().del(msg.clone()).execute().await {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(ESRCH) => {}
                    Err(e) => return Err(nl(format!("deleting route {net} via {gw}"))(e)),
                }
            }
        }
        for (net, gw) in wanted {
            if current.iter().any(|(_, n, g)| *n == net && *g == gw) {
                continue;
            }
            let msg = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(net.network(), net.prefix_len())
                .gateway(gw)
                .protocol(RouteProtocol::from(ROUTE_PROTOCOL))
                .build();
            self.handle
                .route()
                .add(msg)
                .replace()
                .execute()
                .await
                .map_err(nl(format!("adding route {net} via {gw}")))?;
        }
        Ok(())
    }

    /// Our host-gw routes currently in the main table.
    pub async fn node_routes(&self) -> Result<Vec<(Ipv4Net, Ipv4Addr)>, NetworkError> {
        Ok(self
            .our_routes()
            .await?
            .into_iter()
            .map(|(_, n, g)| (n, g))
            .collect())
    }

    async fn our_routes(&self) -> Result<Vec<(RouteMessage, Ipv4Net, Ipv4Addr)>, NetworkError> {
        let all: Vec<RouteMessage> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(nl("listing routes"))?;
        let mut out = Vec::new();
        for msg in all {
            if u8::from(msg.header.protocol) != ROUTE_PROTOCOL
                || msg.header.table != RouteHeader::RT_TABLE_MAIN
            {
                continue;
            }
            let dst = msg.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            let gw = msg.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            if let (Some(dst), Some(gw)) = (dst, gw)
                && let Ok(net) = Ipv4Net::new(dst, msg.header.destination_prefix_length)
            {
                out.push((msg, net, gw));
            }
        }
        Ok(out)
    }
}

fn link_kind(link: &LinkMessage) -> Option<InfoKind> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k.clone()),
            _ => None,
        }),
        _ => None,
    })
}

async fn link_by_name(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, NetworkError> {
    let mut links = handle.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(link) => Ok(link),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
        Err(e) => Err(nl(format!("looking up link {name}"))(e)),
    }
}

/// Runs `f` with a netlink handle opened inside `ns`, on a dedicated thread
/// with its own single-threaded runtime, and awaits the result.
async fn in_netns<F, Fut, T>(ns: &NetnsHandle, f: F) -> Result<T, NetworkError>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, NetworkError>>,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let file = ns
        .file()
        .try_clone()
        .map_err(io_err("duplicating namespace handle"))?;
    let path = ns.path().to_path_buf();
    std::thread::Builder::new()
        .name("netns-netlink".into())
        .spawn(move || {
            let result = (|| {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                    NetnsError::Enter {
                        path: path.clone(),
                        source: io::Error::from_raw_os_error(e as i32),
                    }
                })?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                    .map_err(io_err("starting a runtime in the pod namespace"))?;
                rt.block_on(async move {
                    let (conn, handle, _) = rtnetlink::new_connection()
                        .map_err(io_err("opening netlink socket in pod namespace"))?;
                    tokio::spawn(conn);
                    f(handle).await
                })
            })();
            let _ = tx.send(result);
        })
        .map_err(io_err("starting a namespace thread"))?;
    rx.await.map_err(|_| NetworkError::Io {
        op: "namespace thread".into(),
        source: io::Error::other("ended without a result"),
    })?
}

async fn set_up(handle: &Handle, index: u32, what: &str) -> Result<(), NetworkError> {
    handle
        .link()
        .change(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl(format!("setting {what} up")))
}

async fn configure_pod_side(
    handle: &Handle,
    if_name: &str,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> Result<(), NetworkError> {
    if let Some(lo) = link_by_name(handle, "lo").await? {
        set_up(handle, lo.header.index, "lo").await?;
    }
    let link = link_by_name(handle, if_name)
        .await?
        .ok_or_else(|| NetworkError::Io {
            op: format!("configuring {if_name}"),
            source: io::Error::other("interface missing in pod namespace after creation"),
        })?;
    let index = link.header.index;
    handle
        .address()
        .add(index, IpAddr::V4(ip), prefix)
        .replace()
        .execute()
        .await
        .map_err(nl(format!("adding {ip}/{prefix} to {if_name}")))?;
    set_up(handle, index, if_name).await?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
        .gateway(gateway)
        .output_interface(index)
        .build();
    handle
        .route()
        .add(route)
        .replace()
        .execute()
        .await
        .map_err(nl(format!("adding default route via {gateway}")))
}

async fn pod_side_has(
    handle: &Handle,
    if_name: &str,
    ip: Ipv4Addr,
    prefix: u8,
) -> Result<bool, NetworkError> {
    let Some(link) = link_by_name(handle, if_name).await? else {
        return Ok(false);
    };
    let addrs: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(link.header.index)
        .execute()
        .try_collect()
        .await
        .map_err(nl(format!("listing addresses of {if_name}")))?;
    Ok(addrs.iter().any(|m| {
        m.header.prefix_len == prefix
            && m.attributes
                .iter()
                .any(|a| matches!(a, AddressAttribute::Address(IpAddr::V4(a)) if *a == ip))
    }))
}

async fn delete_veths(handle: &Handle) -> Result<(), NetworkError> {
    let links: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing pod links"))?;
    for link in links {
        if link_kind(&link) == Some(InfoKind::Veth) {
            match handle.link().del(link.header.index).execute().await {
                Ok(()) => {}
                Err(e) if errno(&e) == Some(ENODEV) => {}
                Err(e) => return Err(nl("deleting pod veth")(e)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_are_stable_short_and_distinct() {
        let a = host_veth_name("default/web-0");
        assert_eq!(a, host_veth_name("default/web-0"));
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("veth"));
        assert!(a[4..].chars().all(|c| c.is_ascii_hexdigit()));
        validate_ifname(&a).unwrap();
        let names: std::collections::HashSet<_> = (0..1000)
            .map(|i| host_veth_name(&format!("pod-{i}")))
            .collect();
        assert_eq!(names.len(), 1000);
        // Known value: SHA-256("") starts with e3b0c44298fc.
        assert_eq!(host_veth_name(""), "vethe3b0c44298f");
    }

    #[test]
    fn interface_name_validation() {
        for ok in ["eth0", "flotilla0", "a", "123456789012345"] {
            validate_ifname(ok).unwrap();
        }
        for bad in ["", "1234567890123456", "a/b", "a:b", "a b", ".", ".."] {
            assert!(validate_ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn bad_configs_are_refused_without_side_effects() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("ipam");
        let mut cfg = NodeNetConfig::new("10.244.0.0/31".parse().unwrap(), &state);
        assert!(matches!(
            NodeNetwork::new(cfg.clone()),
            Err(NetworkError::Ipam(_))
        ));
        cfg.pod_cidr = "10.244.0.0/24".parse().unwrap();
        cfg.bridge_name = "way-too-long-bridge".into();
        assert!(matches!(
            NodeNetwork::new(cfg.clone()),
            Err(NetworkError::Config(_))
        ));
        cfg.bridge_name = DEFAULT_BRIDGE.into();
        cfg.mtu = 10;
        assert!(matches!(
            NodeNetwork::new(cfg.clone()),
            Err(NetworkError::Config(_))
        ));
        cfg.mtu = 1500;
        cfg.cluster_cidr = Some("10.0.0.0/16".parse().unwrap());
        assert!(matches!(
            NodeNetwork::new(cfg.clone()),
            Err(NetworkError::Config(_))
        ));
        assert!(!state.exists());
    }

    #[test]
    fn new_outside_a_runtime_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = NodeNetConfig::new("10.244.0.0/24".parse().unwrap(), dir.path());
        assert!(matches!(
            NodeNetwork::new(cfg),
            Err(NetworkError::NoRuntime)
        ));
    }
}
