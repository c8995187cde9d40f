//! Addresses of hollow nodes and their pods.
//!
//! Node addresses are fake and never contacted: node `i` gets the `i+1`-th address
//! after [`NODE_IP_BASE`]. Pod addresses come from the node's `spec.podCIDRs` (set by
//! the controller manager's node IPAM) through a [`Pool`] per CIDR, handed out round
//! robin like the host-local CNI plugin does, so a freed address is not reused at once.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// First address of the fake node range (`10.64.0.0/12`, outside the default pod and
/// service ranges).
pub const NODE_IP_BASE: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 0);

/// How many nodes the fake node range holds.
pub const MAX_NODES: u64 = (1 << 20) - 2;

/// Largest number of addresses a pool hands out (IPv6 node ranges are huge).
const MAX_POOL: u128 = 1 << 16;

/// The fake InternalIP of node number `index`, or `None` past [`MAX_NODES`].
pub fn node_ip(index: u64) -> Option<Ipv4Addr> {
    if index >= MAX_NODES {
        return None;
    }
    let base = u32::from(NODE_IP_BASE);
    u32::try_from(index + 1)
        .ok()
        .map(|i| Ipv4Addr::from(base + i))
}

/// The `index`-th subnet of `prefix` bits inside `range` (`10.128.0.0/9`, 24, 3 →
/// `10.128.3.0/24`), or `None` when `range` has no such subnet.
pub fn nth_subnet(range: IpNet, prefix: u8, index: u64) -> Option<IpNet> {
    if prefix < range.prefix_len() || prefix > range.max_prefix_len() {
        return None;
    }
    let bits = u32::from(prefix - range.prefix_len());
    if bits < 64 && index >= (1u64 << bits) {
        return None;
    }
    let shift = u32::from(range.max_prefix_len() - prefix);
    let offset = u128::from(index).checked_shl(shift)?;
    let addr = add(range.network(), offset)?;
    IpNet::new(addr, prefix).ok()
}

fn add(addr: IpAddr, offset: u128) -> Option<IpAddr> {
    match addr {
        IpAddr::V4(a) => {
            let v = u128::from(u32::from(a)).checked_add(offset)?;
            u32::try_from(v).ok().map(|v| IpAddr::V4(Ipv4Addr::from(v)))
        }
        IpAddr::V6(a) => u128::from(a)
            .checked_add(offset)
            .map(|v| IpAddr::V6(Ipv6Addr::from(v))),
    }
}

fn offset_of(net: &IpNet, addr: IpAddr) -> Option<u128> {
    match (net.network(), addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => u32::from(a).checked_sub(u32::from(n)).map(u128::from),
        (IpAddr::V6(n), IpAddr::V6(a)) => u128::from(a).checked_sub(u128::from(n)),
        _ => None,
    }
}

/// Hands out the addresses of one CIDR: offsets `2 ..` (skipping the network address
/// and the gateway `.1`), and for IPv4 never the broadcast address.
#[derive(Clone, Debug)]
pub struct Pool {
    net: IpNet,
    /// One past the last offset handed out.
    end: u128,
    used: BTreeSet<u128>,
    next: u128,
}

impl Pool {
    pub fn new(net: IpNet) -> Self {
        let net = net.trunc();
        let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
        let size = if host_bits >= 17 {
            MAX_POOL + 2
        } else {
            1u128 << host_bits
        };
        let end = match net {
            // The broadcast address is not a host.
            IpNet::V4(_) => size.saturating_sub(1),
            IpNet::V6(_) => size,
        };
        Pool {
            net,
            end,
            used: BTreeSet::new(),
            next: 2,
        }
    }

    pub fn net(&self) -> IpNet {
        self.net
    }

    /// How many addresses are handed out.
    pub fn len(&self) -> usize {
        self.used.len()
    }

    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }

    /// The next free address, or `None` when the pool is exhausted.
    pub fn allocate(&mut self) -> Option<IpAddr> {
        let span = self.end.checked_sub(2)?;
        for step in 0..span {
            let off = 2 + (self.next - 2 + step) % span;
            if !self.used.contains(&off) {
                self.used.insert(off);
                self.next = if off + 1 >= self.end { 2 } else { off + 1 };
                return add(self.net.network(), off);
            }
        }
        None
    }

    /// Mark `addr` as taken (an address a pod already had); false when it is not one
    /// this pool hands out.
    pub fn reserve(&mut self, addr: IpAddr) -> bool {
        match offset_of(&self.net, addr) {
            Some(off) if (2..self.end).contains(&off) => {
                self.used.insert(off);
                true
            }
            _ => false,
        }
    }

    /// Give `addr` back; addresses of other pools are ignored.
    pub fn release(&mut self, addr: IpAddr) {
        if let Some(off) = offset_of(&self.net, addr) {
            self.used.remove(&off);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test CIDR")
    }

    #[test]
    fn node_ips() {
        let cases: &[(u64, Option<&str>)] = &[
            (0, Some("10.64.0.1")),
            (1, Some("10.64.0.2")),
            (255, Some("10.64.1.0")),
            (MAX_NODES - 1, Some("10.79.255.254")),
            (MAX_NODES, None),
        ];
        for (i, want) in cases {
            assert_eq!(
                node_ip(*i).map(|a| a.to_string()).as_deref(),
                *want,
                "node {i}"
            );
        }
    }

    #[test]
    fn subnets() {
        let cases: &[(&str, u8, u64, Option<&str>)] = &[
            ("10.128.0.0/9", 24, 0, Some("10.128.0.0/24")),
            ("10.128.0.0/9", 24, 3, Some("10.128.3.0/24")),
            ("10.128.0.0/9", 24, 256, Some("10.129.0.0/24")),
            ("10.128.0.0/9", 24, 32767, Some("10.255.255.0/24")),
            ("10.128.0.0/9", 24, 32768, None),
            ("10.128.0.0/9", 8, 0, None),
            ("fd00::/48", 64, 2, Some("fd00:0:0:2::/64")),
        ];
        for (range, prefix, i, want) in cases {
            assert_eq!(
                nth_subnet(net(range), *prefix, *i)
                    .map(|n| n.to_string())
                    .as_deref(),
                *want,
                "{range} /{prefix} #{i}"
            );
        }
    }

    #[test]
    fn pool_hands_out_hosts_round_robin() {
        let mut p = Pool::new(net("10.42.3.0/29"));
        let got: Vec<String> = (0..5)
            .map(|_| p.allocate().expect("free address").to_string())
            .collect();
        assert_eq!(
            got,
            [
                "10.42.3.2",
                "10.42.3.3",
                "10.42.3.4",
                "10.42.3.5",
                "10.42.3.6"
            ]
        );
        assert_eq!(
            p.allocate(),
            None,
            "network, gateway and broadcast are never handed out"
        );
        p.release("10.42.3.3".parse().expect("ip"));
        assert_eq!(
            p.allocate().map(|a| a.to_string()).as_deref(),
            Some("10.42.3.3")
        );
        assert_eq!(p.len(), 5);
    }

    #[test]
    fn released_addresses_are_not_reused_at_once() {
        let mut p = Pool::new(net("10.42.0.0/24"));
        let a = p.allocate().expect("first");
        p.release(a);
        assert_ne!(p.allocate(), Some(a));
    }

    #[test]
    fn reserve_only_own_hosts() {
        let mut p = Pool::new(net("10.42.1.0/24"));
        let cases: &[(&str, bool)] = &[
            ("10.42.1.7", true),
            ("10.42.1.0", false),
            ("10.42.1.1", false),
            ("10.42.1.255", false),
            ("10.42.2.7", false),
            ("fd00::7", false),
        ];
        for (ip, want) in cases {
            assert_eq!(p.reserve(ip.parse().expect("ip")), *want, "{ip}");
        }
        assert_eq!(p.len(), 1);
        // 10.42.1.7 is taken, so round robin skips it.
        let firsts: Vec<IpAddr> = (0..6).filter_map(|_| p.allocate()).collect();
        assert!(!firsts.contains(&"10.42.1.7".parse().expect("ip")));
    }

    #[test]
    fn ipv6_pools_are_capped() {
        let mut p = Pool::new(net("fd00:10::/64"));
        assert_eq!(
            p.allocate().map(|a| a.to_string()).as_deref(),
            Some("fd00:10::2")
        );
        assert!(p.reserve("fd00:10::ffff".parse().expect("ip")));
        assert!(!p.reserve("fd00:10::1:0:0".parse().expect("ip")));
    }

    #[test]
    fn tiny_pools_are_empty() {
        assert_eq!(Pool::new(net("10.0.0.0/31")).allocate(), None);
        assert_eq!(Pool::new(net("10.0.0.1/32")).allocate(), None);
    }
}
