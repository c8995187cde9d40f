//! Discovery (`/api`, `/apis`, group and resource lists with the legacy bodies),
//! `/version`, and the OpenAPI endpoints.

use axum::response::Response;
use http::HeaderMap;
use serde_json::{Value, json};

use crate::errors::{ApiError, ApiResult};
use crate::server::{ApiServer, bytes_response};

/// The Kubernetes version Flotilla speaks.
pub const KUBE_MAJOR: &str = "1";
pub const KUBE_MINOR: &str = "33";
pub const KUBE_GIT_VERSION: &str = "v1.33.0+flotilla";

pub fn version() -> Value {
    json!({
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "emulationMajor": KUBE_MAJOR,
        "emulationMinor": KUBE_MINOR,
        "minCompatibilityMajor": KUBE_MAJOR,
        "minCompatibilityMinor": "32",
        "gitVersion": KUBE_GIT_VERSION,
        "gitCommit": env!("CARGO_PKG_VERSION"),
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": format!("linux/{}", if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" }),
    })
}

pub fn api_versions(req: &http::Request<axum::body::Body>) -> Value {
    let host = req.uri().host().unwrap_or("127.0.0.1");
    let _ = host;
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    })
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({
        "name": name,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

pub fn api_group_list(server: &ApiServer) -> Value {
    let res = server.resources.read().expect("resources lock");
    let groups: Vec<Value> = res
        .groups
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_json(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(server: &ApiServer, group: &str) -> ApiResult<Value> {
    let res = server.resources.read().expect("resources lock");
    let Some((_, vs)) = res.groups.iter().find(|(g, _)| g == group && !g.is_empty()) else {
        return Err(ApiError::not_found_path());
    };
    let mut v = group_json(group, vs);
    v["kind"] = json!("APIGroup");
    v["apiVersion"] = json!("v1");
    Ok(v)
}

pub fn resource_list(server: &ApiServer, group: &str, version: &str) -> Value {
    let res = server.resources.read().expect("resources lock");
    let mut resources = Vec::new();
    for info in res.in_group_version(group, version) {
        let mut r = json!({
            "name": info.plural,
            "singularName": info.singular,
            "namespaced": info.namespaced,
            "kind": info.kind,
            "verbs": info.verbs,
        });
        if !info.short_names.is_empty() {
            r["shortNames"] = json!(info.short_names);
        }
        if !info.categories.is_empty() {
            r["categories"] = json!(info.categories);
        }
        r["storageVersionHash"] =
            json!(storage_version_hash(&info.group, &info.version, &info.kind));
        resources.push(r);
        for s in &info.subresources {
            let mut sr = json!({
                "name": format!("{}/{}", info.plural, s.name),
                "singularName": "",
                "namespaced": info.namespaced,
                "kind": s.kind,
                "verbs": s.verbs,
            });
            if s.group != info.group || s.version != info.version {
                sr["group"] = json!(s.group);
                sr["version"] = json!(s.version);
            }
            resources.push(sr);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

/// Upstream's storageVersionHash: base64 of the first 8 bytes of sha256("group/version/kind").
fn storage_version_hash(group: &str, version: &str, kind: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{group}/{version}/{kind}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&d[..8])
}

pub fn openapi_v2(server: &ApiServer, headers: &HeaderMap) -> Response {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let oa = server.openapi.read().expect("openapi lock");
    if accept.contains("protobuf") {
        bytes_response(
            200,
            oa.v2_protobuf(),
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
        )
    } else {
        bytes_response(200, oa.v2_json(), "application/json")
    }
}

pub fn openapi_v3_index(server: &ApiServer) -> Response {
    let oa = server.openapi.read().expect("openapi lock");
    bytes_response(200, oa.v3_index(), "application/json")
}

pub fn openapi_v3(server: &ApiServer, path: &str) -> ApiResult<Response> {
    let oa = server.openapi.read().expect("openapi lock");
    match oa.v3_doc(path) {
        Some((bytes, _etag)) => Ok(bytes_response(200, bytes, "application/json")),
        None => Err(ApiError::not_found_path()),
    }
}
