//! Service cluster IP and node port allocation. Each allocated IP or port is a store key
//! claimed in the same transaction as the Service itself, so two Services can never get
//! the same one, and a deleted Service gives them back.

use std::net::Ipv4Addr;

use api::catalog::ResourceInfo;
use bytes::Bytes;
use serde_json::{Value, json};
use store::{Compare, CompareOp, CompareTarget, Op, RangeRequest};

use crate::errors::{ApiError, ApiResult};
use crate::server::ApiServer;

const IP_PREFIX: &str = "/flotilla/alloc/serviceips/";
const PORT_PREFIX: &str = "/flotilla/alloc/nodeports/";
pub const NODE_PORT_RANGE: (u16, u16) = (30000, 32767);

/// Parse an IPv4 CIDR into (network, prefix length).
pub fn parse_cidr(s: &str) -> Option<(u32, u32)> {
    let (ip, len) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    if len > 30 {
        return None;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((u32::from(ip) & mask, len))
}

/// The first usable address of the range (the `kubernetes` Service's IP).
pub fn first_ip(cidr: &str) -> Option<Ipv4Addr> {
    parse_cidr(cidr).map(|(net, _)| Ipv4Addr::from(net + 1))
}

fn claim(key: String, owner: &str) -> (Compare, Op) {
    (
        Compare {
            key: Bytes::from(key.clone()),
            op: CompareOp::Equal,
            target: CompareTarget::CreateRevision(0),
        },
        Op::Put {
            key: Bytes::from(key),
            value: Bytes::from(owner.to_string()),
            prev_kv: false,
        },
    )
}

async fn taken(server: &ApiServer, key: &str) -> ApiResult<bool> {
    let r = server
        .store
        .range(RangeRequest {
            key: Bytes::from(key.to_string()),
            count_only: true,
            ..Default::default()
        })
        .await?;
    Ok(r.count > 0)
}

fn svc_invalid(obj: &Value, field: &str, msg: String) -> ApiError {
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    ApiError::invalid(
        "Service",
        "",
        name,
        vec![("FieldValueInvalid".into(), msg, field.into())],
    )
}

/// Allocate what a new object needs; returns the claims to commit with it.
pub async fn allocate(
    server: &ApiServer,
    info: &ResourceInfo,
    obj: &mut Value,
    dry_run: bool,
) -> ApiResult<Vec<(Compare, Op)>> {
    if !(info.group.is_empty() && info.kind == "Service") {
        return Ok(Vec::new());
    }
    let mut claims = Vec::new();
    let owner = format!(
        "{}/{}",
        obj["metadata"]["namespace"].as_str().unwrap_or(""),
        obj["metadata"]["name"].as_str().unwrap_or("")
    );
    let svc_type = obj["spec"]["type"]
        .as_str()
        .unwrap_or("ClusterIP")
        .to_string();
    if svc_type != "ExternalName" {
        let requested = obj["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
        if requested != "None" {
            let (net, len) = parse_cidr(&server.config.service_cidr).ok_or_else(|| {
                ApiError::internal(format!("bad service CIDR {}", server.config.service_cidr))
            })?;
            let size = 1u32 << (32 - len);
            let ip = if !requested.is_empty() {
                let ip: Ipv4Addr = requested.parse().map_err(|_| {
                    svc_invalid(
                        obj,
                        "spec.clusterIPs[0]",
                        format!("Invalid value: \"{requested}\": must be a valid IP address"),
                    )
                })?;
                let n = u32::from(ip);
                if n <= net || n >= net + size - 1 {
                    return Err(svc_invalid(
                        obj,
                        "spec.clusterIPs",
                        format!(
                            "Invalid value: []string{{\"{requested}\"}}: failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is {}",
                            server.config.service_cidr
                        ),
                    ));
                }
                if taken(server, &format!("{IP_PREFIX}{ip}")).await? {
                    return Err(svc_invalid(
                        obj,
                        "spec.clusterIPs",
                        format!(
                            "Invalid value: []string{{\"{requested}\"}}: failed to allocate IP {requested}: provided IP is already allocated"
                        ),
                    ));
                }
                ip
            } else {
                let mut found = None;
                for _ in 0..64 {
                    // skip network, the first address (kubernetes service) and broadcast
                    let off = 2 + rand::random::<u32>() % (size - 3);
                    let ip = Ipv4Addr::from(net + off);
                    if !taken(server, &format!("{IP_PREFIX}{ip}")).await? {
                        found = Some(ip);
                        break;
                    }
                }
                found.ok_or_else(|| {
                    ApiError::internal("failed to allocate a service IP: range is full")
                })?
            };
            obj["spec"]["clusterIP"] = json!(ip.to_string());
            obj["spec"]["clusterIPs"] = json!([ip.to_string()]);
            claims.push(claim(format!("{IP_PREFIX}{ip}"), &owner));
        } else {
            obj["spec"]["clusterIPs"] = json!(["None"]);
        }
    }
    if svc_type == "NodePort" || svc_type == "LoadBalancer" {
        let mut used = Vec::new();
        if let Some(ports) = obj["spec"]["ports"].as_array_mut() {
            for (i, p) in ports.iter_mut().enumerate() {
                let port = match p["nodePort"].as_u64() {
                    Some(n) if n > 0 => {
                        let n = n as u16;
                        if n < NODE_PORT_RANGE.0 || n > NODE_PORT_RANGE.1 {
                            return Err(ApiError::invalid(
                                "Service",
                                "",
                                "",
                                vec![(
                                    "FieldValueInvalid".into(),
                                    format!(
                                        "Invalid value: {n}: provided port is not in the valid range. The range of valid ports is {}-{}",
                                        NODE_PORT_RANGE.0, NODE_PORT_RANGE.1
                                    ),
                                    format!("spec.ports[{i}].nodePort"),
                                )],
                            ));
                        }
                        if taken(server, &format!("{PORT_PREFIX}{n}")).await? {
                            return Err(ApiError::invalid(
                                "Service",
                                "",
                                "",
                                vec![(
                                    "FieldValueInvalid".into(),
                                    format!(
                                        "Invalid value: {n}: provided port is already allocated"
                                    ),
                                    format!("spec.ports[{i}].nodePort"),
                                )],
                            ));
                        }
                        n
                    }
                    _ => {
                        let mut chosen = None;
                        for _ in 0..64 {
                            let n = NODE_PORT_RANGE.0
                                + (rand::random::<u16>()
                                    % (NODE_PORT_RANGE.1 - NODE_PORT_RANGE.0 + 1));
                            if !used.contains(&n)
                                && !taken(server, &format!("{PORT_PREFIX}{n}")).await?
                            {
                                chosen = Some(n);
                                break;
                            }
                        }
                        chosen
                            .ok_or_else(|| ApiError::internal("failed to allocate a node port"))?
                    }
                };
                used.push(port);
                p["nodePort"] = json!(port);
            }
        }
        for p in used {
            claims.push(claim(format!("{PORT_PREFIX}{p}"), &owner));
        }
    }
    if dry_run {
        return Ok(Vec::new());
    }
    Ok(claims)
}

/// Give back a deleted Service's IP and node ports.
pub async fn release(server: &ApiServer, obj: &Value) {
    let mut ops = Vec::new();
    if let Some(ips) = obj["spec"]["clusterIPs"].as_array() {
        for ip in ips
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| *s != "None")
        {
            ops.push(Op::Delete {
                key: Bytes::from(format!("{IP_PREFIX}{ip}")),
                range_end: None,
                prev_kv: false,
            });
        }
    }
    if let Some(ports) = obj["spec"]["ports"].as_array() {
        for p in ports.iter().filter_map(|p| p["nodePort"].as_u64()) {
            ops.push(Op::Delete {
                key: Bytes::from(format!("{PORT_PREFIX}{p}")),
                range_end: None,
                prev_kv: false,
            });
        }
    }
    if ops.is_empty() {
        return;
    }
    if let Err(e) = server
        .store
        .txn(store::Txn {
            compare: vec![],
            success: ops,
            failure: vec![],
        })
        .await
    {
        tracing::warn!("releasing service allocations: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing() {
        assert_eq!(first_ip("10.96.0.0/12"), Some(Ipv4Addr::new(10, 96, 0, 1)));
        assert_eq!(
            parse_cidr("10.96.5.7/12").map(|(n, _)| Ipv4Addr::from(n)),
            Some(Ipv4Addr::new(10, 96, 0, 0))
        );
        assert!(parse_cidr("nope").is_none());
        assert!(parse_cidr("10.0.0.0/31").is_none());
    }
}
