//! Flotilla's pod network: what a node needs so its pods get an address and can
//! talk to each other, to the node, to pods on other nodes and to the outside.
//!
//! - [`netns`]: persistent network namespaces (create, remove, run code inside).
//! - [`ipam`]: host-local address allocation over the node's podCIDR, one file
//!   per address, safe across restarts.
//! - [`node`]: [`NodeNetwork`], the bridge (`flotilla0`), one veth pair per pod,
//!   host-gw routes to other nodes' podCIDRs.
//! - [`firewall`]: masquerade and hostPort DNAT, rendered as an nftables
//!   ruleset in a table of our own and applied atomically with `nft`.
//! - [`bench`]: timing of pod sandbox network setup and teardown.
//!
//! A [`NodeNetwork`] works on the network namespace of the thread that created
//! it, so the whole crate can be exercised inside throwaway namespaces.
//!
//! This crate is a leaf of the node agent: it must never depend on the API
//! server, the store, the container runtime or any Kubernetes types; callers
//! translate pods into pod ids, namespace paths and port mappings.

pub mod bench;
pub mod firewall;
pub mod ipam;
pub mod netns;
pub mod node;

pub use firewall::{FirewallError, FirewallSpec, HostPortMapping, Protocol};
pub use ipam::{Allocation, Ipam, IpamError};
pub use netns::{Netns, NetnsError, NetnsHandle};
pub use node::{NetworkError, NodeNetConfig, NodeNetwork, PodNetStatus, host_veth_name};
