//! Service, Namespace, Node, ConfigMap, Secret, Event and Lease validation.

use std::collections::BTreeSet;

use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Secret, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use super::apps::go_int_or_string;
use super::meta::{
    MetaRules, decode_meta, validate_kube_finalizer, validate_labels, validate_meta,
    validate_meta_create,
};
use super::{Errs, FieldError, Path, decode, immutable, non_negative, same};
use crate::names::{self, NameRule};
use crate::quantity::Quantity;
use crate::selector::go_quote;

/// Maximum size of a ConfigMap's or Secret's data.
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;
/// The default NodePort range (`--service-node-port-range`).
pub const NODE_PORT_RANGE: (i32, i32) = (30000, 32767);

fn s(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

fn push_msgs(errs: &mut Errs, path: &Path, value: &str, msgs: Vec<String>) {
    for msg in msgs {
        errs.push(FieldError::invalid(path, value, msg));
    }
}

/// Go's `%#v` of the (protocol, port) key upstream uses to report duplicate ports.
fn go_service_port_key(protocol: &str, port: i32) -> String {
    format!(
        "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:{}, NodePort:0}}",
        go_quote(protocol),
        go_int_or_string(&IntOrString::Int(0))
    )
}

fn is_headless(svc: &Service) -> bool {
    let spec = svc.spec.clone().unwrap_or_default();
    let ips = spec.cluster_ips.unwrap_or_default();
    ips.len() == 1 && ips[0] == "None"
}

fn externally_accessible(svc_type: &str, external_ips: usize) -> bool {
    svc_type == "LoadBalancer"
        || svc_type == "NodePort"
        || (svc_type == "ClusterIP" && external_ips > 0)
}

/// Services.
pub(crate) fn validate_service(obj: &Value, old: Option<&Value>) -> Result<Errs, Errs> {
    let svc: Service = decode(obj)?;
    let old_svc: Option<Service> = old.map(decode).transpose()?;
    let rules = MetaRules::for_kind("", "Service");
    let mut errs = Vec::new();
    if let Some(old) = &old_svc {
        errs.extend(validate_meta(&svc.metadata, Some(&old.metadata), rules));
        validate_service_update(&svc, old, &mut errs);
    }
    errs.extend(validate_meta_create(
        &svc.metadata,
        rules,
        &Path::new("metadata"),
    ));
    let spec = svc.spec.clone().unwrap_or_default();
    let path = Path::new("spec");
    let svc_type = s(&spec.type_);
    let headless = is_headless(&svc);
    let ports = spec.ports.clone().unwrap_or_default();
    let cluster_ips = spec.cluster_ips.clone().unwrap_or_default();
    let external_ips = spec.external_ips.clone().unwrap_or_default();
    if ports.is_empty() && !headless && svc_type != "ExternalName" {
        errs.push(FieldError::required(path.child("ports"), ""));
    }
    match svc_type {
        "LoadBalancer" | "NodePort" if headless => errs.push(FieldError::invalid(
            path.child("clusterIPs").index(0),
            "None",
            format!("may not be set to 'None' for {svc_type} services"),
        )),
        "ExternalName" => {
            if !cluster_ips.is_empty() {
                errs.push(FieldError::forbidden(
                    path.child("clusterIPs"),
                    "may not be set for ExternalName services",
                ));
            }
            if !spec.ip_families.as_deref().unwrap_or_default().is_empty() {
                errs.push(FieldError::forbidden(
                    path.child("ipFamilies"),
                    "may not be set for ExternalName services",
                ));
            }
            if spec.ip_family_policy.is_some() {
                errs.push(FieldError::forbidden(
                    path.child("ipFamilyPolicy"),
                    "may not be set for ExternalName services",
                ));
            }
            let cname = s(&spec.external_name);
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                errs.push(FieldError::required(path.child("externalName"), ""));
            } else {
                push_msgs(
                    &mut errs,
                    &path.child("externalName"),
                    cname,
                    names::is_dns1123_subdomain(cname),
                );
            }
        }
        _ => {}
    }
    let mut port_names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        validate_service_port(
            port,
            ports.len() > 1,
            &mut port_names,
            &path.child("ports").index(i),
            &mut errs,
        );
    }
    if spec.selector.is_some() {
        errs.extend(validate_labels(
            spec.selector.as_ref(),
            path.child("selector").as_str(),
        ));
    }
    let affinity = s(&spec.session_affinity);
    let ap = path.child("sessionAffinity");
    if affinity.is_empty() {
        errs.push(FieldError::required(&ap, ""));
    } else if !matches!(affinity, "ClientIP" | "None") {
        errs.push(FieldError::not_supported(
            &ap,
            affinity,
            &["ClientIP", "None"],
        ));
    }
    let cp = path.child("sessionAffinityConfig");
    if affinity == "ClientIP" {
        match spec
            .session_affinity_config
            .as_ref()
            .map(|c| c.client_ip.as_ref())
        {
            None => errs.push(FieldError::required(
                &cp,
                "when session affinity type is ClientIP",
            )),
            Some(None) => errs.push(FieldError::required(
                cp.child("clientIP"),
                "when session affinity type is ClientIP",
            )),
            Some(Some(c)) => match c.timeout_seconds {
                None => errs.push(FieldError::required(
                    cp.child("clientIP").child("timeoutSeconds"),
                    "when session affinity type is ClientIP",
                )),
                Some(t) if t <= 0 || t > 86400 => errs.push(FieldError::invalid(
                    cp.child("clientIP").child("timeoutSeconds"),
                    t,
                    "must be greater than 0 and less than 86400",
                )),
                Some(_) => {}
            },
        }
    } else if affinity == "None" && spec.session_affinity_config.is_some() {
        errs.push(FieldError::forbidden(
            &cp,
            "must not be set when session affinity is None",
        ));
    }
    validate_cluster_ips(&svc, &mut errs);
    for (i, ip) in external_ips.iter().enumerate() {
        let ip_path = path.child("externalIPs").index(i);
        let msgs = names::is_valid_ip(ip);
        if !msgs.is_empty() {
            push_msgs(&mut errs, &ip_path, ip, msgs);
        } else {
            validate_non_special_ip(ip, &ip_path, &mut errs);
        }
    }
    let tp = path.child("type");
    if svc_type.is_empty() {
        errs.push(FieldError::required(&tp, ""));
    } else if !matches!(
        svc_type,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        errs.push(FieldError::not_supported(
            &tp,
            svc_type,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let mut node_ports = BTreeSet::new();
    let mut port_keys = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = path.child("ports").index(i);
        let node_port = port.node_port.unwrap_or(0);
        if svc_type == "ClusterIP" && node_port != 0 {
            errs.push(FieldError::forbidden(
                pp.child("nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
        if node_port != 0 {
            if !node_ports.insert((s(&port.protocol).to_string(), node_port)) {
                errs.push(FieldError::duplicate(pp.child("nodePort"), node_port));
            }
            let (lo, hi) = NODE_PORT_RANGE;
            if svc_type != "ClusterIP" && !(lo..=hi).contains(&node_port) {
                errs.push(FieldError::invalid(
                    pp.child("nodePort"),
                    node_port,
                    format!("provided port is not in the valid range. The range of valid ports is {lo}-{hi}"),
                ));
            }
        }
        let protocol = s(&port.protocol);
        if !port_keys.insert((protocol.to_string(), port.port)) {
            let value = json!({"protocol": protocol, "port": port.port});
            errs.push(
                FieldError::duplicate(&pp, value)
                    .with_value_text(go_service_port_key(protocol, port.port)),
            );
        }
    }
    let ranges = spec.load_balancer_source_ranges.clone().unwrap_or_default();
    if !ranges.is_empty() {
        let rp = path.child("LoadBalancerSourceRanges");
        if svc_type != "LoadBalancer" {
            errs.push(FieldError::forbidden(
                &rp,
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        for (i, r) in ranges.iter().enumerate() {
            let r = r.trim();
            push_msgs(&mut errs, &rp.index(i), r, names::is_valid_cidr(r));
        }
    }
    if spec.allocate_load_balancer_node_ports.is_some() && svc_type != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            path.child("allocateLoadBalancerNodePorts"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if svc_type == "LoadBalancer" && spec.allocate_load_balancer_node_ports.is_none() {
        errs.push(FieldError::required(
            Path::new("allocateLoadBalancerNodePorts"),
            "",
        ));
    }
    if let Some(class) = &spec.load_balancer_class {
        if svc_type == "LoadBalancer" {
            push_msgs(
                &mut errs,
                &path.child("loadBalancerClass"),
                class,
                names::is_qualified_name(class),
            );
        } else {
            errs.push(FieldError::forbidden(
                path.child("loadBalancerClass"),
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
    }
    let etp = s(&spec.external_traffic_policy);
    let ep = path.child("externalTrafficPolicy");
    if !externally_accessible(svc_type, external_ips.len()) {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                &ep,
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(FieldError::required(&ep, ""));
    } else if !matches!(etp, "Cluster" | "Local") {
        errs.push(FieldError::not_supported(&ep, etp, &["Cluster", "Local"]));
    }
    let health = spec.health_check_node_port.unwrap_or(0);
    let hp = path.child("healthCheckNodePort");
    if !(svc_type == "LoadBalancer" && etp == "Local") {
        if health != 0 {
            errs.push(FieldError::invalid(&hp, health, "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"));
        }
    } else if health == 0 {
        errs.push(FieldError::required(&hp, ""));
    } else {
        for msg in names::is_valid_port_num(i64::from(health)) {
            errs.push(FieldError::invalid(&hp, health, msg));
        }
    }
    let itp = path.child("internalTrafficPolicy");
    match &spec.internal_traffic_policy {
        None if matches!(svc_type, "NodePort" | "LoadBalancer" | "ClusterIP") => {
            errs.push(FieldError::required(&itp, ""))
        }
        Some(p) if !matches!(p.as_str(), "Cluster" | "Local") => errs.push(
            FieldError::not_supported(&itp, p.as_str(), &["Cluster", "Local"]),
        ),
        _ => {}
    }
    if let Some(td) = &spec.traffic_distribution
        && td != "PreferClose"
    {
        errs.push(FieldError::not_supported(
            path.child("trafficDistribution"),
            td.as_str(),
            &["PreferClose"],
        ));
    }
    Ok(errs)
}

fn validate_non_special_ip(ip: &str, path: &Path, errs: &mut Errs) {
    let Ok(addr) = ip.parse::<std::net::IpAddr>() else {
        errs.push(FieldError::invalid(path, ip, "must be a valid IP address"));
        return;
    };
    if addr.is_unspecified() {
        errs.push(FieldError::invalid(
            path,
            ip,
            format!("may not be unspecified ({ip})"),
        ));
    }
    if addr.is_loopback() {
        errs.push(FieldError::invalid(
            path,
            ip,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    let link_local = match addr {
        std::net::IpAddr::V4(v4) => v4.is_link_local(),
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    if link_local {
        errs.push(FieldError::invalid(
            path,
            ip,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    let link_local_multicast = match addr {
        std::net::IpAddr::V4(v4) => v4.octets()[..3] == [224, 0, 0],
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xff0f) == 0xff02,
    };
    if link_local_multicast {
        errs.push(FieldError::invalid(
            path,
            ip,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
}

fn validate_service_port(
    port: &ServicePort,
    require_name: bool,
    names_seen: &mut BTreeSet<String>,
    path: &Path,
    errs: &mut Errs,
) {
    let name = s(&port.name);
    if require_name && name.is_empty() {
        errs.push(FieldError::required(path.child("name"), ""));
    } else if !name.is_empty() {
        push_msgs(
            errs,
            &path.child("name"),
            name,
            names::is_dns1123_label(name),
        );
        if !names_seen.insert(name.to_string()) {
            errs.push(FieldError::duplicate(path.child("name"), name));
        }
    }
    for msg in names::is_valid_port_num(i64::from(port.port)) {
        errs.push(FieldError::invalid(path.child("port"), port.port, msg));
    }
    let protocol = s(&port.protocol);
    if protocol.is_empty() {
        errs.push(FieldError::required(path.child("protocol"), ""));
    } else if !matches!(protocol, "TCP" | "UDP" | "SCTP") {
        errs.push(FieldError::not_supported(
            path.child("protocol"),
            protocol,
            &["SCTP", "TCP", "UDP"],
        ));
    }
    match port.target_port.clone().unwrap_or(IntOrString::Int(0)) {
        IntOrString::Int(n) => {
            for msg in names::is_valid_port_num(i64::from(n)) {
                errs.push(FieldError::invalid(path.child("targetPort"), n, msg));
            }
        }
        IntOrString::String(name) => push_msgs(
            errs,
            &path.child("targetPort"),
            &name,
            names::is_valid_port_name(&name),
        ),
    }
    if let Some(app) = &port.app_protocol {
        push_msgs(
            errs,
            &path.child("appProtocol"),
            app,
            names::is_qualified_name(app),
        );
    }
}

fn validate_cluster_ips(svc: &Service, errs: &mut Errs) {
    let spec = svc.spec.clone().unwrap_or_default();
    if s(&spec.type_) == "ExternalName" {
        return;
    }
    let path = Path::new("spec");
    let ips_path = path.child("clusterIPs");
    let cluster_ip = s(&spec.cluster_ip);
    let ips = spec.cluster_ips.clone().unwrap_or_default();
    let ips_value = json!(ips);
    if !cluster_ip.is_empty() {
        if ips.is_empty() {
            errs.push(FieldError::required(&ips_path, ""));
        } else if ips[0] != cluster_ip {
            errs.push(FieldError::invalid(
                &ips_path,
                ips_value.clone(),
                "first value must match `clusterIP`",
            ));
        }
    } else if !ips.is_empty() {
        errs.push(FieldError::invalid(
            &ips_path,
            ips_value.clone(),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let families = spec.ip_families.clone().unwrap_or_default();
    let mut seen = BTreeSet::new();
    for (i, family) in families.iter().enumerate() {
        let fp = path.child("ipFamilies").index(i);
        if !matches!(family.as_str(), "IPv4" | "IPv6") {
            errs.push(FieldError::not_supported(
                &fp,
                family.as_str(),
                &["IPv4", "IPv6"],
            ));
        }
        if !seen.insert(family.as_str()) {
            errs.push(FieldError::duplicate(&fp, family.as_str()));
        }
    }
    if let Some(policy) = &spec.ip_family_policy
        && !matches!(
            policy.as_str(),
            "SingleStack" | "PreferDualStack" | "RequireDualStack"
        )
    {
        errs.push(FieldError::not_supported(
            path.child("ipFamilyPolicy"),
            policy.as_str(),
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        ));
    }
    let mut invalid_ips = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && ip == "None" {
            if ips.len() > 1 {
                invalid_ips = true;
                errs.push(FieldError::invalid(
                    &ips_path,
                    ips_value.clone(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        let msgs = names::is_valid_ip(ip);
        invalid_ips |= !msgs.is_empty();
        push_msgs(errs, &ips_path.index(i), ip, msgs);
    }
    if ips.len() > 2 {
        errs.push(FieldError::invalid(
            &ips_path,
            ips_value.clone(),
            "may only hold up to 2 values",
        ));
    }
    if invalid_ips {
        return;
    }
    if ips.len() > 1 && names::is_ipv6(&ips[0]) == names::is_ipv6(&ips[1]) {
        errs.push(FieldError::invalid(
            &ips_path,
            ips_value,
            "may specify no more than one IP for each IP family",
        ));
    }
    if !is_headless(svc) {
        for (i, ip) in ips.iter().enumerate().take(families.len()) {
            let v6 = names::is_ipv6(ip);
            if families[i] == "IPv4" && v6 {
                errs.push(FieldError::invalid(
                    ips_path.index(i),
                    ip.as_str(),
                    format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
            if families[i] == "IPv6" && !v6 {
                errs.push(FieldError::invalid(
                    ips_path.index(i),
                    ip.as_str(),
                    format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
}

fn validate_service_update(svc: &Service, old: &Service, errs: &mut Errs) {
    let (new_spec, old_spec) = (
        svc.spec.clone().unwrap_or_default(),
        old.spec.clone().unwrap_or_default(),
    );
    let external = s(&new_spec.type_) == "ExternalName" || s(&old_spec.type_) == "ExternalName";
    let ips_path = Path::new("spec").child("clusterIPs");
    let (new_ips, old_ips) = (
        new_spec.cluster_ips.clone().unwrap_or_default(),
        old_spec.cluster_ips.clone().unwrap_or_default(),
    );
    let single_stack = new_spec.ip_family_policy.as_deref() == Some("SingleStack");
    let policy_value = new_spec
        .ip_family_policy
        .clone()
        .map_or(Value::Null, Value::from);
    let both_headless = is_headless(svc) && is_headless(old);
    if !external && !both_headless {
        let value = json!(new_ips);
        if new_ips.len() == old_ips.len() {
            for (i, ip) in old_ips.iter().enumerate() {
                if *ip != new_ips[i] {
                    errs.push(FieldError::invalid(
                        ips_path.index(i),
                        value.clone(),
                        "may not change once set",
                    ));
                }
            }
        } else if old_ips.len() > new_ips.len() {
            if new_ips.is_empty() {
                errs.push(FieldError::invalid(
                    ips_path.index(0),
                    value.clone(),
                    "primary clusterIP can not be unset",
                ));
            } else if new_ips[0] != old_ips[0] {
                errs.push(FieldError::invalid(
                    ips_path.index(0),
                    value.clone(),
                    "may not change once set",
                ));
            }
            if new_ips.len() == 1 && !single_stack {
                errs.push(FieldError::invalid(
                    Path::new("spec").child("ipFamilyPolicy"),
                    policy_value.clone(),
                    "must be set to 'SingleStack' when releasing the secondary clusterIP",
                ));
            }
        } else if !old_ips.is_empty() && new_ips[0] != old_ips[0] {
            errs.push(FieldError::invalid(
                ips_path.index(0),
                value,
                "may not change once set",
            ));
        }
    }
    if !external && is_headless(svc) == is_headless(old) && !is_headless(svc) {
        let fam_path = Path::new("spec").child("ipFamilies");
        let (new_f, old_f) = (
            new_spec.ip_families.clone().unwrap_or_default(),
            old_spec.ip_families.clone().unwrap_or_default(),
        );
        let value = json!(new_f);
        if new_f.len() == old_f.len() {
            if new_f != old_f {
                errs.push(FieldError::invalid(
                    fam_path.index(0),
                    value,
                    "may not change once set",
                ));
            }
        } else if old_f.len() > new_f.len() {
            if new_ips.is_empty() {
                errs.push(FieldError::invalid(
                    fam_path.index(0),
                    value,
                    "primary ipFamily can not be unset",
                ));
            } else if !new_f.is_empty() && new_f[0] != old_f[0] {
                errs.push(FieldError::invalid(
                    fam_path.index(0),
                    json!(new_ips),
                    "may not change once set",
                ));
            }
            if new_f.len() == 1 && !single_stack {
                errs.push(FieldError::invalid(
                    Path::new("spec").child("ipFamilyPolicy"),
                    policy_value,
                    "must be set to 'SingleStack' when releasing the secondary ipFamily",
                ));
            }
        } else if !old_f.is_empty() && !new_f.is_empty() && new_f[0] != old_f[0] {
            errs.push(FieldError::invalid(
                fam_path.index(0),
                json!(new_ips),
                "may not change once set",
            ));
        }
    }
    let lb = |spec: &k8s_openapi::api::core::v1::ServiceSpec| s(&spec.type_) == "LoadBalancer";
    if lb(&new_spec)
        && lb(&old_spec)
        && new_spec.load_balancer_class != old_spec.load_balancer_class
    {
        let value = new_spec
            .load_balancer_class
            .clone()
            .map_or(Value::Null, Value::from);
        errs.push(FieldError::invalid(
            Path::new("spec").child("loadBalancerClass"),
            value,
            "may not change once set",
        ));
    }
    let needs_health = |spec: &k8s_openapi::api::core::v1::ServiceSpec| {
        lb(spec) && s(&spec.external_traffic_policy) == "Local"
    };
    if needs_health(&old_spec)
        && needs_health(&new_spec)
        && new_spec.health_check_node_port != old_spec.health_check_node_port
    {
        errs.push(FieldError::forbidden(
            Path::new("spec").child("healthCheckNodePort"),
            "field is immutable",
        ));
    }
}

/// Namespaces.
pub(crate) fn validate_namespace(obj: &Value, old: Option<&Value>) -> Result<Errs, Errs> {
    let ns: Namespace = decode(obj)?;
    let rules = MetaRules::for_kind("", "Namespace");
    if let Some(old) = old {
        let old_meta = decode_meta(old)?;
        return Ok(validate_meta(&ns.metadata, Some(&old_meta), rules));
    }
    let mut errs = validate_meta(&ns.metadata, None, rules);
    let fp = Path::new("spec").child("finalizers");
    for f in ns.spec.iter().flat_map(|s| s.finalizers.iter().flatten()) {
        push_msgs(&mut errs, &fp, f, names::is_qualified_name(f));
        validate_kube_finalizer(f, &fp, &mut errs);
    }
    Ok(errs)
}

fn pod_cidrs(node: &Node) -> Vec<String> {
    let spec = node.spec.clone().unwrap_or_default();
    let cidrs = spec.pod_cidrs.unwrap_or_default();
    match spec.pod_cidr {
        Some(single) if !single.is_empty() && cidrs.first() != Some(&single) => vec![single],
        _ => cidrs,
    }
}

/// Nodes.
pub(crate) fn validate_node(obj: &Value, old: Option<&Value>) -> Result<Errs, Errs> {
    let node: Node = decode(obj)?;
    let old_node: Option<Node> = old.map(decode).transpose()?;
    let rules = MetaRules::for_kind("", "Node");
    let mut errs = validate_meta(
        &node.metadata,
        old_node.as_ref().map(|o| &o.metadata),
        rules,
    );
    let spec = node.spec.clone().unwrap_or_default();
    let taints = spec.taints.clone().unwrap_or_default();
    // Upstream reports taint errors under `metadata.taints`.
    let tp = Path::new("metadata").child("taints");
    let mut unique = BTreeSet::new();
    for (i, t) in taints.iter().enumerate() {
        let p = tp.index(i);
        push_msgs(
            &mut errs,
            &p.child("key"),
            &t.key,
            names::is_qualified_name(&t.key),
        );
        let value = s(&t.value);
        let msgs = names::is_valid_label_value(value);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(p.child("value"), value, msgs.join(";")));
        }
        if t.effect.is_empty() {
            errs.push(FieldError::required(p.child("effect"), ""));
        } else if !matches!(
            t.effect.as_str(),
            "NoSchedule" | "PreferNoSchedule" | "NoExecute"
        ) {
            errs.push(FieldError::not_supported(
                p.child("effect"),
                t.effect.as_str(),
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
        if !unique.insert((t.effect.clone(), t.key.clone())) {
            let mut e = FieldError::duplicate(&p, serde_json::to_value(t).unwrap_or(Value::Null));
            e.detail = "taints must be unique by key and effect pair".into();
            errs.push(e);
        }
    }
    let status = node.status.clone().unwrap_or_default();
    for (list, field) in [
        (&status.capacity, "capacity"),
        (&status.allocatable, "allocatable"),
    ] {
        for (name, raw) in list.iter().flatten() {
            let p = Path::new("status").child(field).child(name);
            match Quantity::parse(raw.0.trim()) {
                Ok(q) if q.signum() < 0 => errs.push(FieldError::invalid(
                    &p,
                    q.to_string(),
                    "must be greater than or equal to 0",
                )),
                Ok(_) => {}
                Err(e) => errs.push(FieldError::invalid(&p, raw.0.as_str(), e.to_string())),
            }
        }
    }
    let cidrs = pod_cidrs(&node);
    let cp = Path::new("spec").child("podCIDRs");
    if old_node.is_none() {
        for (i, c) in cidrs.iter().enumerate() {
            push_msgs(&mut errs, &cp.index(i), c, names::is_valid_cidr(c));
        }
        if cidrs.len() > 1 {
            let v6: Vec<bool> = cidrs
                .iter()
                .map(|c| names::is_ipv6(c.split('/').next().unwrap_or("")))
                .collect();
            if cidrs.len() > 2 || v6[0] == v6[1] {
                errs.push(FieldError::invalid(
                    &cp,
                    json!(cidrs),
                    "may specify no more than one CIDR for each IP family",
                ));
            }
            let mut seen = BTreeSet::new();
            for (i, c) in cidrs.iter().enumerate() {
                if !seen.insert(c) {
                    errs.push(FieldError::duplicate(cp.index(i), c.as_str()));
                }
            }
        }
    }
    if let Some(old) = &old_node {
        let mut seen = BTreeSet::new();
        for (i, addr) in status.addresses.iter().flatten().enumerate() {
            if !seen.insert((addr.type_.clone(), addr.address.clone())) {
                errs.push(FieldError::duplicate(
                    Path::new("status").child("addresses").index(i),
                    serde_json::to_value(addr).unwrap_or(Value::Null),
                ));
            }
        }
        let old_cidrs = pod_cidrs(old);
        if !old_cidrs.is_empty() && old_cidrs != cidrs {
            errs.push(FieldError::forbidden(
                &cp,
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        let old_spec = old.spec.clone().unwrap_or_default();
        let old_provider = s(&old_spec.provider_id);
        if !old_provider.is_empty() && old_provider != s(&spec.provider_id) {
            errs.push(FieldError::forbidden(
                Path::new("spec").child("providerID"),
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
        if spec.external_id != old_spec.external_id {
            errs.push(FieldError::forbidden(
                Path::new("spec").child("externalID"),
                "may not be updated",
            ));
        }
    }
    Ok(errs)
}

/// ConfigMaps.
pub(crate) fn validate_config_map(obj: &Value, old: Option<&Value>) -> Result<Errs, Errs> {
    let cm: ConfigMap = decode(obj)?;
    let old_cm: Option<ConfigMap> = old.map(decode).transpose()?;
    let rules = MetaRules::for_kind("", "ConfigMap");
    let mut errs = Vec::new();
    if let Some(old) = &old_cm {
        errs.extend(validate_meta(&cm.metadata, Some(&old.metadata), rules));
        if old.immutable == Some(true) {
            if cm.immutable != Some(true) {
                errs.push(FieldError::forbidden(
                    Path::new("immutable"),
                    "field is immutable when `immutable` is set",
                ));
            }
            if !same(&cm.data, &old.data) {
                errs.push(FieldError::forbidden(
                    Path::new("data"),
                    "field is immutable when `immutable` is set",
                ));
            }
            if !same(&cm.binary_data, &old.binary_data) {
                errs.push(FieldError::forbidden(
                    Path::new("binaryData"),
                    "field is immutable when `immutable` is set",
                ));
            }
        }
    }
    errs.extend(validate_meta(&cm.metadata, None, rules));
    let mut total = 0;
    let binary = cm.binary_data.clone().unwrap_or_default();
    for (key, value) in cm.data.iter().flatten() {
        let p = Path::new("data").key(key);
        push_msgs(&mut errs, &p, key, names::is_config_map_key(key));
        if binary.contains_key(key) {
            errs.push(FieldError::invalid(
                &p,
                key.as_str(),
                "duplicate of key present in binaryData",
            ));
        }
        total += value.len();
    }
    for (key, value) in &binary {
        push_msgs(
            &mut errs,
            &Path::new("binaryData").key(key),
            key,
            names::is_config_map_key(key),
        );
        total += value.0.len();
    }
    if total > MAX_SECRET_SIZE {
        // Upstream reports the whole object with an empty path, printed as `[]`.
        errs.push(FieldError::too_long("[]", MAX_SECRET_SIZE));
    }
    Ok(errs)
}

/// Decodes a Secret and folds `stringData` into `data`, as upstream's conversion does
/// before validation.
fn decode_secret(obj: &Value) -> Result<Secret, Errs> {
    let mut secret: Secret = decode(obj)?;
    if let Some(string_data) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(Default::default);
        for (k, v) in string_data {
            data.insert(k, ByteString(v.into_bytes()));
        }
    }
    Ok(secret)
}

/// Secrets.
pub(crate) fn validate_secret(obj: &Value, old: Option<&Value>) -> Result<Errs, Errs> {
    let secret = decode_secret(obj)?;
    let old_secret = old.map(decode_secret).transpose()?;
    let rules = MetaRules::for_kind("", "Secret");
    let mut errs = Vec::new();
    if let Some(old) = &old_secret {
        errs.extend(validate_meta(&secret.metadata, Some(&old.metadata), rules));
        immutable(
            &secret.type_.clone().unwrap_or_default(),
            &old.type_.clone().unwrap_or_default(),
            &Path::new("type"),
            &mut errs,
        );
        if old.immutable == Some(true) {
            if secret.immutable != Some(true) {
                errs.push(FieldError::forbidden(
                    Path::new("immutable"),
                    "field is immutable when `immutable` is set",
                ));
            }
            if !same(&secret.data, &old.data) {
                errs.push(FieldError::forbidden(
                    Path::new("data"),
                    "field is immutable when `immutable` is set",
                ));
            }
        }
    }
    errs.extend(validate_meta(&secret.metadata, None, rules));
    let data = secret.data.clone().unwrap_or_default();
    let dp = Path::new("data");
    let mut total = 0;
    for (key, value) in &data {
        push_msgs(&mut errs, &dp.key(key), key, names::is_config_map_key(key));
        total += value.0.len();
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long(&dp, MAX_SECRET_SIZE));
    }
    let required = |key: &str, errs: &mut Errs| errs.push(FieldError::required(dp.key(key), ""));
    let json_key = |key: &str, errs: &mut Errs| match data.get(key) {
        None => required(key, errs),
        Some(bytes) => {
            if let Err(e) = serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes.0) {
                errs.push(FieldError::invalid(
                    dp.key(key),
                    "<secret contents redacted>",
                    e.to_string(),
                ));
            }
        }
    };
    match secret.type_.as_deref().unwrap_or("") {
        "kubernetes.io/service-account-token" => {
            let annotations = secret.metadata.annotations.clone().unwrap_or_default();
            let key = "kubernetes.io/service-account.name";
            if annotations.get(key).is_none_or(String::is_empty) {
                errs.push(FieldError::required(
                    Path::new("metadata").child("annotations").key(key),
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" => json_key(".dockercfg", &mut errs),
        "kubernetes.io/dockerconfigjson" => json_key(".dockerconfigjson", &mut errs),
        "kubernetes.io/basic-auth"
            if !data.contains_key("username") && !data.contains_key("password") =>
        {
            required("username", &mut errs);
            required("password", &mut errs);
        }
        "kubernetes.io/ssh-auth" if data.get("ssh-privatekey").is_none_or(|v| v.0.is_empty()) => {
            required("ssh-privatekey", &mut errs);
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !data.contains_key(key) {
                    required(key, &mut errs);
                }
            }
        }
        _ => {}
    }
    Ok(errs)
}

/// The fields of an event in either API group, under core/v1 names.
struct EventView {
    meta: ObjectMeta,
    involved_namespace: String,
    event_time: bool,
    reporting_controller: String,
    reporting_instance: String,
    action: String,
    reason: String,
    message: String,
    type_: String,
    first_timestamp: bool,
    last_timestamp: bool,
    count: i32,
    source: bool,
    series: Option<(i32, bool)>,
}

fn event_view(group: &str, obj: &Value) -> Result<EventView, Errs> {
    if group == "events.k8s.io" {
        let e: k8s_openapi::api::events::v1::Event = decode(obj)?;
        let regarding = e.regarding.unwrap_or_default();
        let source = e.deprecated_source.unwrap_or_default();
        Ok(EventView {
            meta: e.metadata,
            involved_namespace: regarding.namespace.unwrap_or_default(),
            event_time: e.event_time.is_some(),
            reporting_controller: e.reporting_controller.unwrap_or_default(),
            reporting_instance: e.reporting_instance.unwrap_or_default(),
            action: e.action.unwrap_or_default(),
            reason: e.reason.unwrap_or_default(),
            message: e.note.unwrap_or_default(),
            type_: e.type_.unwrap_or_default(),
            first_timestamp: e.deprecated_first_timestamp.is_some(),
            last_timestamp: e.deprecated_last_timestamp.is_some(),
            count: e.deprecated_count.unwrap_or(0),
            source: source.component.is_some_and(|c| !c.is_empty())
                || source.host.is_some_and(|h| !h.is_empty()),
            series: e.series.map(|s| (s.count, true)),
        })
    } else {
        let e: k8s_openapi::api::core::v1::Event = decode(obj)?;
        Ok(EventView {
            meta: e.metadata,
            involved_namespace: e.involved_object.namespace.unwrap_or_default(),
            event_time: e.event_time.is_some(),
            reporting_controller: e.reporting_component.unwrap_or_default(),
            reporting_instance: e.reporting_instance.unwrap_or_default(),
            action: e.action.unwrap_or_default(),
            reason: e.reason.unwrap_or_default(),
            message: e.message.unwrap_or_default(),
            type_: e.type_.unwrap_or_default(),
            first_timestamp: e.first_timestamp.is_some(),
            last_timestamp: e.last_timestamp.is_some(),
            count: e.count.unwrap_or(0),
            source: false,
            series: e
                .series
                .map(|s| (s.count.unwrap_or(0), s.last_observed_time.is_some())),
        })
    }
}

/// Events, in core/v1 (legacy rules only) or events.k8s.io/v1 (strict rules too).
pub(crate) fn validate_event(group: &str, obj: &Value, old: Option<&Value>) -> Result<Errs, Errs> {
    let e = event_view(group, obj)?;
    let strict = group == "events.k8s.io";
    let mut errs = Vec::new();
    let namespace = e.meta.namespace.clone().unwrap_or_default();
    let io_ns = Path::new("involvedObject").child("namespace");
    let reporting_field = if strict {
        "reportingController"
    } else {
        "reportingComponent"
    };
    if !e.event_time {
        let mismatch = if e.involved_namespace.is_empty() {
            !namespace.is_empty() && namespace != "default"
        } else {
            namespace != e.involved_namespace
        };
        if mismatch {
            errs.push(FieldError::invalid(
                &io_ns,
                e.involved_namespace.as_str(),
                "does not match event.namespace",
            ));
        }
    } else {
        if e.involved_namespace.is_empty() && namespace != "default" && namespace != "kube-system" {
            errs.push(FieldError::invalid(
                &io_ns,
                e.involved_namespace.as_str(),
                "does not match event.namespace",
            ));
        }
        let rp = Path::new(reporting_field);
        if e.reporting_controller.is_empty() {
            errs.push(FieldError::required(&rp, ""));
        }
        push_msgs(
            &mut errs,
            &rp,
            &e.reporting_controller,
            names::is_qualified_name(&e.reporting_controller),
        );
        for (value, field, limit) in [
            (&e.reporting_instance, "reportingInstance", 128),
            (&e.action, "action", 128),
            (&e.reason, "reason", 128),
        ] {
            if value.is_empty() {
                errs.push(FieldError::required(Path::new(field), ""));
            }
            if value.len() > limit {
                errs.push(FieldError::invalid(
                    Path::new(field),
                    "",
                    format!("can have at most {limit} characters"),
                ));
            }
        }
        if e.message.len() > 1024 {
            errs.push(FieldError::invalid(
                Path::new("message"),
                "",
                "can have at most 1024 characters",
            ));
        }
    }
    push_msgs(
        &mut errs,
        &Path::new("namespace"),
        &namespace,
        names::is_dns1123_subdomain(&namespace),
    );
    if !strict {
        return Ok(errs);
    }
    let rules = MetaRules {
        name: NameRule::Dns1123Subdomain,
        namespaced: Some(true),
        kube_finalizers: true,
    };
    match old {
        None => {
            errs.extend(validate_meta(&e.meta, None, rules));
            if let Some((count, observed)) = e.series {
                if count < 2 {
                    errs.push(FieldError::invalid(
                        Path::new("series").child("count"),
                        "",
                        "should be at least 2",
                    ));
                }
                if !observed {
                    errs.push(FieldError::required(
                        Path::new("series").child("lastObservedTime"),
                        "",
                    ));
                }
            }
            if !e.event_time {
                errs.push(FieldError::required(Path::new("eventTime"), ""));
            }
            if e.type_ != "Normal" && e.type_ != "Warning" {
                errs.push(FieldError::invalid(
                    Path::new("type"),
                    "",
                    format!("has invalid value: {}", e.type_),
                ));
            }
            for (set, field) in [
                (e.first_timestamp, "firstTimestamp"),
                (e.last_timestamp, "lastTimestamp"),
            ] {
                if set {
                    errs.push(FieldError::invalid(
                        Path::new(field),
                        "",
                        "needs to be unset",
                    ));
                }
            }
            if e.count != 0 {
                errs.push(FieldError::invalid(
                    Path::new("count"),
                    "",
                    "needs to be unset",
                ));
            }
            if e.source {
                errs.push(FieldError::invalid(
                    Path::new("source"),
                    "",
                    "needs to be unset",
                ));
            }
        }
        Some(old) => {
            let o = event_view(group, old)?;
            errs.extend(validate_meta(&e.meta, Some(&o.meta), rules));
            let old_obj = &old;
            for (pointer, field) in [
                ("/regarding", "involvedObject"),
                ("/reason", "reason"),
                ("/reportingController", "reportingController"),
                ("/reportingInstance", "reportingInstance"),
                ("/action", "action"),
                ("/type", "type"),
            ] {
                let (new_v, old_v) = (
                    obj.pointer(pointer).cloned().unwrap_or(Value::Null),
                    old_obj.pointer(pointer).cloned().unwrap_or(Value::Null),
                );
                immutable(&new_v, &old_v, &Path::new(field), &mut errs);
            }
        }
    }
    Ok(errs)
}

/// Leases.
pub(crate) fn validate_lease(obj: &Value, old: Option<&Value>) -> Result<Errs, Errs> {
    let lease: Lease = decode(obj)?;
    let old_meta = old.map(decode_meta).transpose()?;
    let rules = MetaRules::for_kind("coordination.k8s.io", "Lease");
    let mut errs = validate_meta(&lease.metadata, old_meta.as_ref(), rules);
    let spec = lease.spec.clone().unwrap_or_default();
    let path = Path::new("spec");
    if let Some(d) = spec.lease_duration_seconds
        && d <= 0
    {
        errs.push(FieldError::invalid(
            path.child("leaseDurationSeconds"),
            d,
            "must be greater than 0",
        ));
    }
    if let Some(t) = spec.lease_transitions {
        non_negative(i64::from(t), &path.child("leaseTransitions"), &mut errs);
    }
    if let Some(strategy) = &spec.strategy {
        let sp = path.child("strategy");
        if strategy.contains('/') {
            push_msgs(&mut errs, &sp, strategy, names::is_qualified_name(strategy));
        } else if strategy != "OldestEmulationVersion" {
            errs.push(FieldError::not_supported(
                &sp,
                strategy.as_str(),
                &["OldestEmulationVersion"],
            ));
        }
    }
    if spec
        .preferred_holder
        .as_deref()
        .is_some_and(|p| !p.is_empty())
        && spec.strategy.as_deref().unwrap_or("").is_empty()
    {
        errs.push(FieldError::forbidden(
            path.child("preferredHolder"),
            "may only be specified if `strategy` is defined",
        ));
    }
    Ok(errs)
}
