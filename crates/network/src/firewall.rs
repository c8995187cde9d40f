//! The node's NAT rules (masquerade for traffic leaving the cluster network,
//! DNAT for hostPorts), computed as data and applied through the `nft` binary
//! in one atomic transaction.
//!
//! All rules live in a table of our own (`ip flotilla` by default); the
//! transaction declares the table, deletes it and re-creates it whole, so
//! other tables (iptables-nft, firewalld, Docker) are never touched and a
//! failed apply leaves the previous ruleset in place.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::str::FromStr;

use ipnet::Ipv4Net;

use crate::netns::NetnsHandle;

/// Errors of rule computation and application.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// A hostPort mapping is invalid.
    #[error("invalid hostPort mapping {mapping}: {reason}")]
    InvalidMapping {
        /// The mapping, rendered.
        mapping: String,
        /// Why.
        reason: String,
    },
    /// Two mappings claim the same host address, port and protocol.
    #[error("hostPort {port}/{protocol} on {host_ip} is mapped twice ({first} and {second})")]
    Conflict {
        /// The host port.
        port: u16,
        /// The protocol.
        protocol: Protocol,
        /// The host address, or `*`.
        host_ip: String,
        /// First target.
        first: String,
        /// Second target.
        second: String,
    },
    /// A protocol name is unknown.
    #[error("unknown protocol {0:?} (expected TCP, UDP or SCTP)")]
    UnknownProtocol(String),
    /// `nft` could not be run.
    #[error("running nft: {0}")]
    Spawn(io::Error),
    /// `nft` rejected the ruleset.
    #[error("nft rejected the ruleset (exit {status}): {stderr}")]
    Rejected {
        /// Exit status.
        status: String,
        /// What nft printed.
        stderr: String,
    },
}

/// A transport protocol of a port mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP (the Kubernetes default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

impl FromStr for Protocol {
    type Err = FirewallError;
    /// Parses the Kubernetes spelling (`TCP`, `UDP`, `SCTP`), any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" | "" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            _ => Err(FirewallError::UnknownProtocol(s.to_string())),
        }
    }
}

/// One `hostPort` of a pod: traffic to `host_ip:host_port` (any local address
/// when `host_ip` is `None` or unspecified) is sent to `pod_ip:container_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPortMapping {
    /// The node port.
    pub host_port: u16,
    /// The protocol.
    pub protocol: Protocol,
    /// The pod's address.
    pub pod_ip: IpAddr,
    /// The port in the pod.
    pub container_port: u16,
    /// Only this node address (None, or 0.0.0.0: every local address).
    pub host_ip: Option<IpAddr>,
}

impl std::fmt::Display for HostPortMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = self.host_ip.map_or("*".to_string(), |ip| ip.to_string());
        write!(
            f,
            "{host}:{}/{} -> {}:{}",
            self.host_port, self.protocol, self.pod_ip, self.container_port
        )
    }
}

/// Everything the node's NAT table must express.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallSpec {
    /// nftables table name (family `ip`).
    pub table: String,
    /// The pod bridge.
    pub bridge: String,
    /// This node's pod CIDR.
    pub pod_cidr: Ipv4Net,
    /// Destinations that are never masqueraded (the whole cluster's pod
    /// network; defaults to the pod CIDR).
    pub cluster_cidr: Ipv4Net,
    /// Whether pod traffic leaving the cluster network is masqueraded.
    pub masquerade: bool,
    /// hostPort mappings.
    pub host_ports: Vec<HostPortMapping>,
}

/// Checks mappings: non-zero ports, IPv4 addresses, no two mappings on the same
/// host address/port/protocol (a wildcard conflicts with every address).
pub fn validate_host_ports(mappings: &[HostPortMapping]) -> Result<(), FirewallError> {
    for m in mappings {
        let invalid = |reason: &str| FirewallError::InvalidMapping {
            mapping: m.to_string(),
            reason: reason.to_string(),
        };
        if m.host_port == 0 {
            return Err(invalid("hostPort must be 1-65535"));
        }
        if m.container_port == 0 {
            return Err(invalid("containerPort must be 1-65535"));
        }
        match m.pod_ip {
            IpAddr::V4(ip) if !ip.is_unspecified() && !ip.is_broadcast() => {}
            IpAddr::V4(_) => return Err(invalid("pod address must be a unicast address")),
            IpAddr::V6(_) => return Err(invalid("IPv6 hostPorts are not supported")),
        }
        if let Some(IpAddr::V6(_)) = m.host_ip {
            return Err(invalid("IPv6 hostIP is not supported"));
        }
    }
    for (i, a) in mappings.iter().enumerate() {
        for b in &mappings[i + 1..] {
            let overlap = match (host_v4(a), host_v4(b)) {
                (Some(x), Some(y)) => x == y,
                _ => true,
            };
            if a.host_port == b.host_port && a.protocol == b.protocol && overlap {
                let host = host_v4(a)
                    .or(host_v4(b))
                    .map_or("*".to_string(), |ip| ip.to_string());
                return Err(FirewallError::Conflict {
                    port: a.host_port,
                    protocol: a.protocol,
                    host_ip: host,
                    first: format!("{}:{}", a.pod_ip, a.container_port),
                    second: format!("{}:{}", b.pod_ip, b.container_port),
                });
            }
        }
    }
    Ok(())
}

fn host_v4(m: &HostPortMapping) -> Option<Ipv4Addr> {
    match m.host_ip {
        Some(IpAddr::V4(ip)) if !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}

/// Renders the nft script that makes the table exactly `spec` (one atomic
/// transaction: declare, delete, re-create). Mappings are validated first.
pub fn render_ruleset(spec: &FirewallSpec) -> Result<String, FirewallError> {
    validate_host_ports(&spec.host_ports)?;
    let t = &spec.table;
    let mut out = String::new();
    // Declaring first makes the delete valid when the table does not exist yet.
    let _ = writeln!(out, "table ip {t} {{}}");
    let _ = writeln!(out, "delete table ip {t}");
    if !spec.masquerade && spec.host_ports.is_empty() {
        return Ok(out);
    }
    let _ = writeln!(out, "table ip {t} {{");
    if !spec.host_ports.is_empty() {
        let mut mappings = spec.host_ports.clone();
        mappings.sort_by_key(|m| (m.host_port, m.protocol, host_v4(m)));
        let _ = writeln!(out, "\tchain hostports {{");
        for m in &mappings {
            let dest = match host_v4(m) {
                Some(ip) => format!("ip daddr {ip}"),
                None => "fib daddr type local".to_string(),
            };
            let _ = writeln!(
                out,
                "\t\t{dest} {proto} dport {port} dnat to {pod}:{cport}",
                proto = m.protocol.nft(),
                port = m.host_port,
                pod = m.pod_ip,
                cport = m.container_port,
            );
        }
        let _ = writeln!(out, "\t}}");
        // Traffic arriving from outside, and traffic the node itself sends.
        // nft accepts the name `dstnat` only in prerouting; it is -100.
        for (chain, priority) in [("prerouting", "dstnat"), ("output", "-100")] {
            let _ = writeln!(out, "\tchain {chain} {{");
            let _ = writeln!(
                out,
                "\t\ttype nat hook {chain} priority {priority}; policy accept;"
            );
            let _ = writeln!(out, "\t\tjump hostports");
            let _ = writeln!(out, "\t}}");
        }
    }
    if spec.masquerade || !spec.host_ports.is_empty() {
        let _ = writeln!(out, "\tchain postrouting {{");
        let _ = writeln!(
            out,
            "\t\ttype nat hook postrouting priority srcnat; policy accept;"
        );
        if !spec.host_ports.is_empty() {
            // Hairpin: a pod reaching a hostPort that leads back into this
            // node's pod network (possibly itself). Without SNAT the reply
            // would skip the node and never be un-DNATed.
            let _ = writeln!(
                out,
                "\t\tip saddr {pod} ip daddr {pod} ct status dnat masquerade",
                pod = spec.pod_cidr,
            );
        }
        if spec.masquerade {
            let _ = writeln!(
                out,
                "\t\tip saddr {pod} ip daddr != {cluster} oifname != \"{br}\" masquerade",
                pod = spec.pod_cidr,
                cluster = spec.cluster_cidr,
                br = spec.bridge,
            );
        }
        let _ = writeln!(out, "\t}}");
    }
    let _ = writeln!(out, "}}");
    Ok(out)
}

/// Applies nft scripts; a trait so the node logic can be tested without root.
pub trait NftApplier: Send + Sync {
    /// Applies `script` atomically, or fails leaving the old rules in place.
    fn apply(&self, script: &str) -> Result<(), FirewallError>;
}

/// Runs `nft -f -` inside a given network namespace (the child process is
/// forked from a thread that entered it).
#[derive(Debug)]
pub struct NftCommand {
    netns: NetnsHandle,
    binary: String,
}

impl NftCommand {
    /// `nft` (from `$PATH`) applying into `netns`.
    pub fn new(netns: NetnsHandle) -> Self {
        Self {
            netns,
            binary: "nft".to_string(),
        }
    }
}

impl NftApplier for NftCommand {
    fn apply(&self, script: &str) -> Result<(), FirewallError> {
        let run = || -> Result<std::process::Output, io::Error> {
            let mut child = Command::new(&self.binary)
                .args(["-f", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(script.as_bytes())?;
            }
            child.wait_with_output()
        };
        let output = self
            .netns
            .run(run)
            .map_err(|e| FirewallError::Spawn(io::Error::other(e.to_string())))?
            .map_err(FirewallError::Spawn)?;
        if output.status.success() {
            Ok(())
        } else {
            Err(FirewallError::Rejected {
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> FirewallSpec {
        FirewallSpec {
            table: "flotilla".into(),
            bridge: "flotilla0".into(),
            pod_cidr: "10.244.1.0/24".parse().unwrap(),
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
            masquerade: false,
            host_ports: vec![],
        }
    }

    fn hp(
        port: u16,
        proto: Protocol,
        pod: &str,
        cport: u16,
        host: Option<&str>,
    ) -> HostPortMapping {
        HostPortMapping {
            host_port: port,
            protocol: proto,
            pod_ip: pod.parse().unwrap(),
            container_port: cport,
            host_ip: host.map(|h| h.parse().unwrap()),
        }
    }

    #[test]
    fn empty_spec_only_removes_our_table() {
        assert_eq!(
            render_ruleset(&spec()).unwrap(),
            "table ip flotilla {}\ndelete table ip flotilla\n"
        );
    }

    #[test]
    fn masquerade_and_hostports() {
        let mut s = spec();
        s.masquerade = true;
        s.host_ports = vec![
            hp(8443, Protocol::Udp, "10.244.1.7", 53, Some("192.0.2.10")),
            hp(8080, Protocol::Tcp, "10.244.1.5", 80, None),
            hp(8443, Protocol::Tcp, "10.244.1.6", 443, Some("0.0.0.0")),
        ];
        let expected = "\
table ip flotilla {}
delete table ip flotilla
table ip flotilla {
\tchain hostports {
\t\tfib daddr type local tcp dport 8080 dnat to 10.244.1.5:80
\t\tfib daddr type local tcp dport 8443 dnat to 10.244.1.6:443
\t\tip daddr 192.0.2.10 udp dport 8443 dnat to 10.244.1.7:53
\t}
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tjump hostports
\t}
\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tjump hostports
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip saddr 10.244.1.0/24 ip daddr 10.244.1.0/24 ct status dnat masquerade
\t\tip saddr 10.244.1.0/24 ip daddr != 10.244.0.0/16 oifname != \"flotilla0\" masquerade
\t}
}
";
        assert_eq!(render_ruleset(&s).unwrap(), expected);
    }

    #[test]
    fn masquerade_only_has_no_dnat_chains() {
        let mut s = spec();
        s.masquerade = true;
        let out = render_ruleset(&s).unwrap();
        assert!(out.contains("masquerade"));
        assert!(!out.contains("hostports"));
        assert!(!out.contains("prerouting"));
        assert!(!out.contains("ct status dnat"));
    }

    #[test]
    fn hostports_without_masquerade_keep_hairpin_snat_only() {
        let mut s = spec();
        s.host_ports = vec![hp(8080, Protocol::Tcp, "10.244.1.5", 80, None)];
        let out = render_ruleset(&s).unwrap();
        assert!(
            out.contains("ip saddr 10.244.1.0/24 ip daddr 10.244.1.0/24 ct status dnat masquerade")
        );
        assert!(!out.contains("ip daddr != 10.244.0.0/16"));
    }

    #[test]
    fn invalid_and_conflicting_mappings() {
        let mut s = spec();
        s.host_ports = vec![hp(0, Protocol::Tcp, "10.244.1.5", 80, None)];
        assert!(matches!(
            render_ruleset(&s),
            Err(FirewallError::InvalidMapping { .. })
        ));
        s.host_ports = vec![hp(80, Protocol::Tcp, "10.244.1.5", 0, None)];
        assert!(matches!(
            render_ruleset(&s),
            Err(FirewallError::InvalidMapping { .. })
        ));
        s.host_ports = vec![hp(80, Protocol::Tcp, "fd00::5", 80, None)];
        assert!(matches!(
            render_ruleset(&s),
            Err(FirewallError::InvalidMapping { .. })
        ));
        // Wildcard and a specific address on the same port/protocol collide.
        s.host_ports = vec![
            hp(80, Protocol::Tcp, "10.244.1.5", 80, None),
            hp(80, Protocol::Tcp, "10.244.1.6", 80, Some("192.0.2.1")),
        ];
        let err = render_ruleset(&s).unwrap_err();
        assert!(
            matches!(err, FirewallError::Conflict { port: 80, .. }),
            "{err}"
        );
        // Different protocols, or different specific addresses, do not.
        s.host_ports = vec![
            hp(80, Protocol::Tcp, "10.244.1.5", 80, Some("192.0.2.2")),
            hp(80, Protocol::Tcp, "10.244.1.6", 80, Some("192.0.2.1")),
            hp(80, Protocol::Udp, "10.244.1.6", 80, None),
        ];
        render_ruleset(&s).unwrap();
    }

    #[test]
    fn protocol_parsing() {
        assert_eq!("tcp".parse::<Protocol>().unwrap(), Protocol::Tcp);
        assert_eq!("UDP".parse::<Protocol>().unwrap(), Protocol::Udp);
        assert_eq!("SCTP".parse::<Protocol>().unwrap(), Protocol::Sctp);
        assert!("icmp".parse::<Protocol>().is_err());
    }
}
