//! Request routing (upstream's RequestInfo rules) and the handlers of every verb.

use std::collections::HashMap;
use std::sync::Arc;

use api::catalog::ResourceInfo;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use serde_json::{Value, json};

pub use crate::adapters::fields_of;
use crate::auth::{Attributes, UserInfo};
use crate::errors::{ApiError, ApiResult};
use crate::registry::{self, Update, WriteOptions, WriteResult};
use crate::server::{ApiServer, bytes_response, json_response};
use crate::strategy;

/// Upstream's request body limit (3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Decoded query string.
#[derive(Clone, Debug, Default)]
pub struct Query(pub HashMap<String, String>);

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        Query(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
    /// A boolean parameter, parsed like Go's `strconv.ParseBool` (as upstream does).
    pub fn flag(&self, k: &str) -> bool {
        matches!(
            self.get(k),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True")
        )
    }
}

/// A request for a resource (or one of its subresources).
#[derive(Clone, Debug)]
pub struct ResourceRoute {
    pub info: Arc<ResourceInfo>,
    pub namespace: String,
    pub name: Option<String>,
    pub sub: Option<String>,
    pub watch: bool,
    pub query: Query,
}

#[derive(Clone, Debug)]
pub enum Route {
    Health(&'static str),
    /// `GET /cacerts`: the cluster CA certificate, served anonymously ([`crate::join`]).
    CaCerts,
    /// `GET /v1-flotilla/client-kubelet?nodeName=N`: a joining node's credentials.
    NodeCredentials,
    Version,
    Metrics,
    OpenApiV2,
    OpenApiV3Index,
    OpenApiV3(String),
    ApiVersions,
    ApiGroupList,
    ApiGroup(String),
    ResourceList(String, String),
    Resource(ResourceRoute),
    NotFound(String),
}

impl Route {
    /// (verb, resource) labels for metrics.
    pub fn metrics_labels(&self, method: &Method) -> (String, String) {
        match self {
            Route::Resource(r) => {
                let verb = resource_verb(r, method);
                let res = match &r.sub {
                    Some(s) => format!("{}/{}", r.info.plural, s),
                    None => r.info.plural.clone(),
                };
                (verb.to_string(), res)
            }
            _ => (method.as_str().to_ascii_lowercase(), String::new()),
        }
    }

    pub fn attributes<'a>(&'a self, user: &'a UserInfo, method: &'a Method) -> Attributes<'a> {
        match self {
            Route::Resource(r) => Attributes {
                user,
                verb: resource_verb(r, method),
                namespace: &r.namespace,
                group: &r.info.group,
                resource: &r.info.plural,
                subresource: r.sub.as_deref().unwrap_or(""),
                name: r.name.as_deref().unwrap_or(""),
                path: "",
                resource_request: true,
            },
            _ => crate::server::attributes_for(
                user,
                if method == Method::GET { "get" } else { "post" },
                "",
            ),
        }
    }
}

fn resource_verb(r: &ResourceRoute, method: &Method) -> &'static str {
    match *method {
        // A WebSocket exec, attach or port-forward is a GET but creates a process or a
        // connection: upstream authorizes it as `create`
        // (AuthorizePodWebsocketUpgradeCreatePermission).
        Method::GET if matches!(r.sub.as_deref(), Some("exec" | "attach" | "portforward")) => {
            "create"
        }
        Method::GET | Method::HEAD => {
            if r.watch || r.query.flag("watch") {
                "watch"
            } else if r.name.is_some() {
                "get"
            } else {
                "list"
            }
        }
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => {
            if r.name.is_some() {
                "delete"
            } else {
                "deletecollection"
            }
        }
        _ => "unknown",
    }
}

fn decode_segment(s: &str) -> String {
    percent_decode(s)
}

/// Percent-decoding of one path segment (names never legitimately contain `%`,
/// so a failed decode just keeps the raw text and fails validation later).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

/// Resolve a request path the way upstream's RequestInfoFactory does.
pub fn route(server: &ApiServer, _method: &Method, uri: &Uri) -> Route {
    let path = uri.path();
    let query = Query::parse(uri.query());
    match path.trim_end_matches('/') {
        "/healthz" | "/healthz/ping" => return Route::Health("healthz"),
        "/livez" | "/livez/ping" => return Route::Health("livez"),
        "/readyz" | "/readyz/ping" => return Route::Health("readyz"),
        crate::join::CACERTS_PATH => return Route::CaCerts,
        crate::join::NODE_CREDENTIALS_PATH => return Route::NodeCredentials,
        "/version" => return Route::Version,
        "/metrics" => return Route::Metrics,
        "/openapi/v2" | "/swagger.json" => return Route::OpenApiV2,
        "/openapi/v3" => return Route::OpenApiV3Index,
        "/api" => return Route::ApiVersions,
        "/apis" => return Route::ApiGroupList,
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/openapi/v3/") {
        return Route::OpenApiV3(rest.to_string());
    }
    let parts: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(decode_segment)
        .collect();
    let (group, version, rest) = match parts.first().map(String::as_str) {
        Some("api") if parts.len() >= 2 => (String::new(), parts[1].clone(), &parts[2..]),
        Some("apis") if parts.len() == 2 => return Route::ApiGroup(parts[1].clone()),
        Some("apis") if parts.len() >= 3 => (parts[1].clone(), parts[2].clone(), &parts[3..]),
        _ => return Route::NotFound(path.to_string()),
    };
    if rest.is_empty() {
        let known = server
            .resources
            .read()
            .map(|r| {
                r.groups
                    .iter()
                    .any(|(g, vs)| *g == group && vs.contains(&version))
            })
            .unwrap_or(false);
        return if known {
            Route::ResourceList(group, version)
        } else {
            Route::NotFound(path.to_string())
        };
    }
    let mut rest: Vec<String> = rest.to_vec();
    let mut watch = false;
    if rest.first().map(String::as_str) == Some("watch") {
        watch = true;
        rest.remove(0);
    }
    let mut namespace = String::new();
    if rest.first().map(String::as_str) == Some("namespaces") && rest.len() > 1 {
        namespace = rest[1].clone();
        if rest.len() > 2 && rest[2] != "status" && rest[2] != "finalize" {
            rest.drain(0..2);
        }
    }
    if rest.is_empty() || rest.len() > 3 {
        return Route::NotFound(path.to_string());
    }
    let Some(info) = server.resource(&group, &version, &rest[0]) else {
        return Route::NotFound(path.to_string());
    };
    if !info.namespaced {
        namespace.clear();
    }
    let name = rest.get(1).cloned();
    let sub = rest.get(2).cloned();
    if let Some(s) = &sub
        && info.subresource(s).is_none()
    {
        return Route::NotFound(path.to_string());
    }
    Route::Resource(ResourceRoute {
        info,
        namespace,
        name,
        sub,
        watch,
        query,
    })
}

/// Handle a routed, authorized request.
pub async fn handle(
    server: Arc<ApiServer>,
    route: Route,
    user: UserInfo,
    req: Request<Body>,
) -> Response {
    let result = match route {
        Route::Health(what) => Ok(health(&server, what).await),
        Route::CaCerts => ca_certs(&server).await,
        Route::NodeCredentials => {
            let (method, uri) = (req.method().clone(), req.uri().clone());
            node_credentials(&server, &user, &method, &uri).await
        }
        Route::Version => Ok(json_response(200, &crate::discovery::version())),
        Route::Metrics => Ok(server.metrics.render(&server).await),
        Route::OpenApiV2 => Ok(crate::discovery::openapi_v2(&server, req.headers())),
        Route::OpenApiV3Index => Ok(crate::discovery::openapi_v3_index(&server)),
        Route::OpenApiV3(p) => crate::discovery::openapi_v3(&server, &p),
        Route::ApiVersions => Ok(json_response(200, &crate::discovery::api_versions(&req))),
        Route::ApiGroupList => Ok(json_response(
            200,
            &crate::discovery::api_group_list(&server),
        )),
        Route::ApiGroup(g) => {
            crate::discovery::api_group(&server, &g).map(|v| json_response(200, &v))
        }
        Route::ResourceList(g, v) => Ok(json_response(
            200,
            &crate::discovery::resource_list(&server, &g, &v),
        )),
        Route::NotFound(_) => Err(ApiError::not_found_path()),
        Route::Resource(r) => handle_resource(server, r, user, req).await,
    };
    result.unwrap_or_else(|e| e.into_response())
}

async fn ca_certs(server: &ApiServer) -> ApiResult<Response> {
    let path = crate::pki::Pki::at(&server.config.data_dir).ca_cert;
    match tokio::fs::read(&path).await {
        Ok(pem) => Ok(bytes_response(200, pem.into(), "text/plain; charset=utf-8")),
        Err(e) => {
            tracing::error!("reading {}: {e}", path.display());
            Err(ApiError::internal(format!("reading the cluster CA: {e}")))
        }
    }
}

/// Issues a client certificate `system:node:<nodeName>` (group `system:nodes`) to a
/// holder of the join secret (or an admin).
async fn node_credentials(
    server: &ApiServer,
    user: &UserInfo,
    method: &Method,
    uri: &Uri,
) -> ApiResult<Response> {
    if method != Method::GET {
        return Err(ApiError::method_not_allowed("only GET is allowed"));
    }
    if !crate::join::may_join(user) {
        return Err(ApiError::forbidden(format!(
            "User \"{}\" cannot obtain node credentials: only the join token (group {}) may",
            user.name,
            crate::join::BOOTSTRAP_GROUP
        )));
    }
    let query = Query::parse(uri.query());
    let node = query.get("nodeName").unwrap_or_default().to_string();
    let errs = api::names::is_dns1123_subdomain(&node);
    if node.is_empty() || !errs.is_empty() {
        return Err(ApiError::bad_request(format!(
            "nodeName {node:?} is not a valid node name: {}",
            if node.is_empty() {
                "must not be empty".to_string()
            } else {
                errs.join(", ")
            }
        )));
    }
    let pki = crate::pki::Pki::at(&server.config.data_dir);
    let cn = format!("system:node:{node}");
    let issued = {
        let cn = cn.clone();
        tokio::task::spawn_blocking(move || pki.issue_client(&cn, &[crate::join::NODES_GROUP]))
            .await
    };
    match issued {
        Ok(Ok((certificate, key))) => {
            tracing::info!(node = %node, by = %user.name, "issued node credentials");
            let body = crate::join::NodeCredentials {
                user: cn,
                certificate,
                key,
            };
            Ok(json_response(
                200,
                &serde_json::to_value(body).unwrap_or_default(),
            ))
        }
        Ok(Err(e)) => Err(ApiError::internal(format!("issuing node credentials: {e}"))),
        Err(e) => Err(ApiError::internal(format!("issuing node credentials: {e}"))),
    }
}

async fn health(server: &ApiServer, what: &str) -> Response {
    // Ready once the cache has loaded (it is, by construction) and the store answers.
    let ok = server
        .store
        .range(store::RangeRequest {
            key: Bytes::from_static(b"/health"),
            ..Default::default()
        })
        .await
        .is_ok();
    let _ = what;
    if ok {
        crate::server::bytes_response(200, Bytes::from_static(b"ok"), "text/plain; charset=utf-8")
    } else {
        crate::server::bytes_response(
            500,
            Bytes::from_static(b"[-]etcd failed: reason withheld\nhealthz check failed"),
            "text/plain; charset=utf-8",
        )
    }
}

async fn read_body(req: Request<Body>) -> ApiResult<(HeaderMap, Bytes)> {
    let (parts, body) = req.into_parts();
    // Read (and discard past the limit) up to a hard cap, so the client gets its 413
    // instead of a reset connection while it is still sending.
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading request body: {e}")))?;
        total += chunk.len();
        if total > MAX_BODY {
            if total > 16 * MAX_BODY {
                break;
            }
            continue;
        }
        buf.extend_from_slice(&chunk);
    }
    if total > MAX_BODY {
        return Err(ApiError::too_large());
    }
    Ok((parts.headers, buf.freeze()))
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            s.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Decode a request body as JSON or YAML into an object.
pub fn decode_object(headers: &HeaderMap, body: &[u8]) -> ApiResult<Value> {
    let ct = content_type(headers);
    let v: Value = match ct.as_str() {
        "application/vnd.kubernetes.protobuf" => api::proto::decode(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the object provided is unrecognized or the server could not decode: protobuf: {e}"
            ))
        })?,
        "" | "application/json" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the object provided is unrecognized or the server could not decode: json: {e}"
            ))
        })?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("yaml body is not valid UTF-8"))?;
            serde_yaml_ng::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))?
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the object provided is unrecognized or the server could not decode: Object 'Kind' is missing",
        ));
    }
    Ok(v)
}

fn write_options(q: &Query, headers: &HeaderMap) -> ApiResult<WriteOptions> {
    let dry_run = match q.get("dryRun") {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid dry run value: {other}; allowed values are All"
            )));
        }
    };
    let field_validation = match q.get("fieldValidation") {
        None | Some("") => "Warn".to_string(),
        Some(v @ ("Strict" | "Warn" | "Ignore")) => v.to_string(),
        Some(other) => {
            return Err(ApiError::invalid(
                "CreateOptions",
                "meta.k8s.io",
                "",
                vec![(
                    "FieldValueNotSupported".into(),
                    format!(
                        "Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
                    ),
                    "fieldValidation".into(),
                )],
            ));
        }
    };
    let field_manager = match q.get("fieldManager") {
        Some(m) if !m.is_empty() => {
            if m.len() > 128 {
                return Err(ApiError::bad_request(
                    "fieldManager: Too long: may not be more than 128 bytes",
                ));
            }
            m.to_string()
        }
        _ => headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.split('/').next().unwrap_or("unknown").to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into()),
    };
    let force = q.flag("force");
    Ok(WriteOptions {
        dry_run,
        field_manager,
        field_validation,
        force,
        apply: false,
    })
}

fn check_type(
    info: &ResourceInfo,
    obj: &mut Value,
    expect_kind: &str,
    expect_group: &str,
    expect_version: &str,
) -> ApiResult<()> {
    let av = obj["apiVersion"].as_str().unwrap_or("").to_string();
    let kind = obj["kind"].as_str().unwrap_or("").to_string();
    let want_av = if expect_group.is_empty() {
        expect_version.to_string()
    } else {
        format!("{expect_group}/{expect_version}")
    };
    if kind.is_empty() && av.is_empty() {
        obj["apiVersion"] = json!(want_av);
        obj["kind"] = json!(expect_kind);
        return Ok(());
    }
    if kind != expect_kind || (av != want_av && !av.is_empty()) {
        let _ = info;
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({want_av})"
        ))
        .with_kind_mismatch(&kind, expect_kind));
    }
    obj["apiVersion"] = json!(want_av);
    Ok(())
}

impl ApiError {
    fn with_kind_mismatch(self, got: &str, want: &str) -> Self {
        if got != want && !got.is_empty() {
            ApiError::bad_request(format!(
                "the kind in the data ({got}) does not match the expected kind ({want})"
            ))
        } else {
            self
        }
    }
}

fn warning_headers(resp: &mut Response, warnings: &[String]) {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append("Warning", v);
        }
    }
}

fn write_response(r: WriteResult) -> Response {
    let mut resp = json_response(r.code, &r.object);
    warning_headers(&mut resp, &r.warnings);
    resp
}

async fn handle_resource(
    server: Arc<ApiServer>,
    r: ResourceRoute,
    _user: UserInfo,
    req: Request<Body>,
) -> ApiResult<Response> {
    let method = req.method().clone();
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let verb = resource_verb(&r, &method);
    if r.info.namespaced && r.namespace.is_empty() && !matches!(verb, "list" | "watch") {
        return Err(ApiError::not_found_path());
    }
    if !r.info.verbs.iter().any(|v| v == verb) && r.sub.is_none() {
        return Err(ApiError::method_not_allowed(format!(
            "{verb} is not supported on resources of kind {:?}",
            r.info.plural
        )));
    }
    if verb == "create" && r.sub.is_none() && r.name.is_some() {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource (post {})",
            r.info.plural
        )));
    }
    if crate::metrics_api::serves(&r) {
        return crate::metrics_api::handle(server, &r, req).await;
    }
    if r.info.group.is_empty() && r.info.plural == "pods" {
        match (verb, r.sub.as_deref()) {
            ("get", Some("log")) => return crate::kubeletproxy::pod_log(&server, &r, req).await,
            ("create", Some("exec")) => {
                return crate::kubeletproxy::pod_exec(&server, &r, req).await;
            }
            ("create", Some("attach")) => {
                return crate::kubeletproxy::pod_attach(&server, &r, req).await;
            }
            ("create", Some("portforward")) => {
                return crate::kubeletproxy::pod_portforward(&server, &r, req).await;
            }
            _ => {}
        }
    }
    match (verb, r.sub.as_deref()) {
        ("list", _) => crate::list::list(&server, &r, &accept).await,
        ("watch", _) => crate::watch::watch(server.clone(), &r, &accept).await,
        ("get", None) => {
            if let Some(rv) = r.query.get("resourceVersion").filter(|s| !s.is_empty())
                && rv.parse::<i64>().map(|v| v < 0).unwrap_or(true)
            {
                return Err(ApiError::bad_request(format!(
                    "invalid resource version: {rv:?}"
                )));
            }
            let obj = get_object(&server, &r).await?;
            crate::list::render_one(&server, &r, obj, &accept).await
        }
        ("get", Some("status")) => {
            let obj = get_object(&server, &r).await?;
            crate::list::render_one(&server, &r, obj, &accept).await
        }
        ("get", Some("scale")) => {
            let obj = get_object(&server, &r).await?;
            Ok(json_response(
                200,
                &crate::subresources::to_scale(&r.info, &obj.value()),
            ))
        }
        ("create", None) if r.info.kind == "Binding" => {
            let (headers, body) = read_body(req).await?;
            let obj = decode_object(&headers, &body)?;
            let opts = write_options(&r.query, &headers)?;
            let pod = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            crate::subresources::bind(&server, &r, pod, obj, &opts).await
        }
        ("create", None) => {
            let (headers, body) = read_body(req).await?;
            let obj = decode_object(&headers, &body)?;
            let opts = write_options(&r.query, &headers)?;
            let dup = duplicate_check(&r.info, &headers, &body, &opts)?;
            let mut res = create(&server, &r, obj, &opts).await?;
            res.warnings.extend(dup);
            Ok(write_response(res))
        }
        ("create", Some(sub)) => {
            let (headers, body) = read_body(req).await?;
            let obj = decode_object(&headers, &body)?;
            let opts = write_options(&r.query, &headers)?;
            crate::subresources::create_sub(&server, &r, sub, obj, &opts).await
        }
        ("update", sub) => {
            let (headers, body) = read_body(req).await?;
            let obj = decode_object(&headers, &body)?;
            let opts = write_options(&r.query, &headers)?;
            let dup = duplicate_check(&r.info, &headers, &body, &opts)?;
            let mut res = update(&server, &r, sub, obj, &opts).await?;
            res.warnings.extend(dup);
            Ok(write_response(res))
        }
        ("patch", sub) => {
            let (headers, body) = read_body(req).await?;
            let opts = write_options(&r.query, &headers)?;
            let ct = content_type(&headers);
            if ct == "application/apply-patch+yaml"
                && r.query.get("fieldManager").is_none_or(str::is_empty)
            {
                return Err(ApiError::invalid(
                    "PatchOptions",
                    "meta.k8s.io",
                    "",
                    vec![(
                        "FieldValueRequired".into(),
                        "Required value: is required for apply patch".into(),
                        "fieldManager".into(),
                    )],
                ));
            }
            Ok(write_response(
                crate::patching::patch(&server, &r, sub, &ct, &body, &opts).await?,
            ))
        }
        ("delete", None) => {
            let (headers, body) = read_body(req).await?;
            let dopts = delete_options(&r.query, &headers, &body)?;
            let (code, v) = delete(&server, &r, r.name.as_deref().unwrap_or(""), &dopts).await?;
            Ok(json_response(code, &v))
        }
        ("deletecollection", None) => {
            let (headers, body) = read_body(req).await?;
            let dopts = delete_options(&r.query, &headers, &body)?;
            crate::list::delete_collection(&server, &r, &dopts).await
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({verb})"
        ))),
    }
}

/// Read one object from the cache, or 404.
pub async fn get_object(
    server: &ApiServer,
    r: &ResourceRoute,
) -> ApiResult<Arc<crate::cache::CachedObject>> {
    let name = r.name.as_deref().unwrap_or("");
    let key = registry::object_key(&r.info, &r.namespace, name);
    server
        .cache
        .get(&key)
        .await
        .ok_or_else(|| ApiError::not_found(&r.info.plural, &r.info.group, name))
}

/// Namespace must exist and not be terminating for creates in it.
pub async fn check_namespace(
    server: &ApiServer,
    info: &ResourceInfo,
    namespace: &str,
) -> ApiResult<()> {
    if !info.namespaced {
        return Ok(());
    }
    let key = format!("/registry/core/namespaces/{namespace}");
    let Some(ns) = server.cache.get(&key).await else {
        return Err(ApiError::not_found("namespaces", "", namespace));
    };
    let v = ns.value();
    if v["metadata"]["deletionTimestamp"].is_string() || v["status"]["phase"] == "Terminating" {
        let mut e = ApiError::forbidden(format!(
            "{} \"{}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
            crate::errors::qualified(&info.plural, &info.group),
            v["metadata"]["name"].as_str().unwrap_or("")
        ));
        e.details = Some(
            json!({"causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {namespace} is being terminated"), "field": "metadata.namespace"}]}),
        );
        return Err(e);
    }
    Ok(())
}

/// Unknown-field handling per `fieldValidation`.
pub fn field_validation(
    server: &ApiServer,
    info: &ResourceInfo,
    obj: &Value,
    opts: &WriteOptions,
) -> ApiResult<Vec<String>> {
    if opts.field_validation == "Ignore" {
        return Ok(Vec::new());
    }
    let unknown = match server.openapi.read() {
        Ok(o) => o.unknown_fields(&info.group, &info.version, &info.kind, obj),
        Err(_) => Vec::new(),
    };
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let msgs: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    if opts.field_validation == "Strict" {
        let text = if msgs.len() == 1 {
            msgs[0].clone()
        } else {
            msgs.join(", ")
        };
        return Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {text}",
            info.kind, info.version, info.kind
        )));
    }
    Ok(msgs)
}

/// The Priority admission plugin on a new Pod: resolve `spec.priorityClassName`
/// against the stored PriorityClasses (403 Forbidden when it names none).
async fn admit_priority(server: &ApiServer, pod: &mut Value) -> ApiResult<()> {
    const PREFIX: &str = "/registry/scheduling.k8s.io/priorityclasses/";
    let class = match api::validation::pod_priority_class_name(pod) {
        Some(name) => {
            let key = format!("{PREFIX}{name}");
            server.cache.get(&key).await.map(|c| c.value())
        }
        // A pod naming no class gets the globalDefault class, if any (the one
        // created first when several claim it, as upstream picks the lowest value
        // among them: take the lowest value, then the oldest).
        None => {
            let is_default = |o: &crate::cache::CachedObject| {
                o.value()["globalDefault"].as_bool().unwrap_or(false)
            };
            let (defaults, ..) = server.cache.list(PREFIX, None, 0, &is_default).await;
            defaults
                .iter()
                .map(|c| c.value())
                .min_by_key(|v| v["value"].as_i64().unwrap_or(0))
        }
    };
    api::validation::admit_pod_priority(pod, class.as_ref()).map_err(|why| {
        ApiError::forbidden(format!(
            "pods \"{}\" is forbidden: {why}",
            pod["metadata"]["name"].as_str().unwrap_or("")
        ))
    })
}

/// Create an object (POST).
pub async fn create(
    server: &ApiServer,
    r: &ResourceRoute,
    mut obj: Value,
    opts: &WriteOptions,
) -> ApiResult<WriteResult> {
    let info = &r.info;
    check_type(info, &mut obj, &info.kind, &info.group, &info.version)?;
    if info.namespaced {
        let body_ns = obj["metadata"]["namespace"].as_str().unwrap_or("");
        if !body_ns.is_empty() && body_ns != r.namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    let warnings = field_validation(server, info, &obj, opts)?;
    prune_unknown(server, info, &mut obj);
    registry::init_metadata(&mut obj, info, &r.namespace)?;
    strategy::prepare_create(info, &mut obj);
    crate::custom::prepare_custom(server, info, &mut obj)?;
    crate::adapters::apply_defaults(info, &mut obj);
    if (info.group.as_str(), info.kind.as_str()) == ("", "Pod") {
        admit_priority(server, &mut obj).await?;
        if server.config.service_account_admission {
            crate::serviceaccount::admit_pod(server, &r.namespace, &mut obj).await?;
        }
    }
    api::validation::apply_admission_defaults_with(
        &info.group,
        &info.kind,
        &mut obj,
        server.config.default_not_ready_toleration_seconds,
        server.config.default_unreachable_toleration_seconds,
    );
    crate::adapters::validate(info, &obj, None)?;
    crate::custom::validate_custom(server, info, &obj)?;
    check_namespace(server, info, &r.namespace).await?;
    if !opts.apply {
        crate::adapters::record_managed_fields(
            None,
            &mut obj,
            &opts.field_manager,
            &info.api_version(),
        );
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let key = registry::object_key(info, &r.namespace, &name);
    if server.cache.get(&key).await.is_some() {
        return Err(ApiError::already_exists(&info.plural, &info.group, &name));
    }
    let extra = crate::allocators::allocate(server, info, &mut obj, opts.dry_run).await?;
    if opts.dry_run {
        if server.cache.get(&key).await.is_some() {
            return Err(ApiError::already_exists(&info.plural, &info.group, &name));
        }
        return Ok(WriteResult {
            code: 201,
            object: obj,
            warnings,
        });
    }
    registry::store_create(server, info, &key, &mut obj, extra).await?;
    crate::hooks::after_write(server, info, &obj).await;
    Ok(WriteResult {
        code: 201,
        object: obj,
        warnings,
    })
}

/// Replace an object or its status (PUT).
pub async fn update(
    server: &ApiServer,
    r: &ResourceRoute,
    sub: Option<&str>,
    mut obj: Value,
    opts: &WriteOptions,
) -> ApiResult<WriteResult> {
    let info = r.info.clone();
    let name = r.name.clone().unwrap_or_default();
    if sub == Some("scale") {
        return crate::subresources::update_scale(server, r, obj, opts).await;
    }
    if sub == Some("finalize") {
        return crate::subresources::finalize_namespace(server, r, obj, opts).await;
    }
    check_type(&info, &mut obj, &info.kind, &info.group, &info.version)?;
    let body_name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(
            "the name of the object (".to_string()
                + &body_name
                + ") does not match the name on the URL ("
                + &name
                + ")",
        ));
    }
    obj["metadata"]["name"] = json!(name);
    let warnings = field_validation(server, &info, &obj, opts)?;
    update_with(server, r, sub, opts, warnings, move |_old| Ok(obj.clone())).await
}

/// Shared tail of PUT and PATCH: `make_new` builds the new object from the current one.
pub async fn update_with<F>(
    server: &ApiServer,
    r: &ResourceRoute,
    sub: Option<&str>,
    opts: &WriteOptions,
    warnings: Vec<String>,
    mut make_new: F,
) -> ApiResult<WriteResult>
where
    F: FnMut(&Value) -> ApiResult<Value>,
{
    let info = r.info.clone();
    let name = r.name.clone().unwrap_or_default();
    let key = registry::object_key(&info, &r.namespace, &name);
    let status_only = sub == Some("status");
    // Internal writes (binding, finalize) set exactly what they mean to, status included.
    let internal = matches!(sub, Some("binding") | Some("finalize"));
    let (decision, _) =
        registry::guaranteed_update(server, &info, &key, &name, opts.dry_run, |cur| {
            let Some(old) = cur else {
                return Err(ApiError::not_found(&info.plural, &info.group, &name));
            };
            let mut new = make_new(&old)?;
            // Optimistic concurrency: a resourceVersion in the body must match.
            if let Some(rv) = new["metadata"]["resourceVersion"].as_str()
                && !rv.is_empty()
                && Some(rv) != old["metadata"]["resourceVersion"].as_str()
            {
                return Err(ApiError::modified(&info.plural, &info.group, &name));
            }
            // An unconditional update acts on the current version (as upstream's store does).
            if new["metadata"]["resourceVersion"]
                .as_str()
                .is_none_or(str::is_empty)
                && new["metadata"].is_object()
            {
                new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            }
            if let Some(uid) = new["metadata"]["uid"].as_str()
                && !uid.is_empty()
                && Some(uid) != old["metadata"]["uid"].as_str()
            {
                return Err(ApiError::conflict(
                    &info.plural,
                    &info.group,
                    &name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        old["metadata"]["uid"].as_str().unwrap_or("")
                    ),
                ));
            }
            if status_only {
                new = strategy::prepare_status_update(&new, &old);
            } else if internal {
                registry::carry_metadata(&mut new, &old);
            } else {
                if !new.get("metadata").is_some_and(Value::is_object) {
                    return Err(ApiError::bad_request("metadata must be an object"));
                }
                registry::carry_metadata(&mut new, &old);
                strategy::prepare_update(&info, &mut new, &old);
                crate::custom::prepare_custom(server, &info, &mut new)?;
            }
            prune_unknown(server, &info, &mut new);
            crate::adapters::apply_defaults(&info, &mut new);
            // A binding sets spec.nodeName, which pod updates may not change: like
            // upstream's binding storage it checks the object itself, not the update.
            let validate_against = (sub != Some("binding")).then_some(&old);
            crate::adapters::validate(&info, &new, validate_against)?;
            crate::custom::validate_custom(server, &info, &new)?;
            if !opts.apply {
                crate::adapters::record_managed_fields(
                    Some(&old),
                    &mut new,
                    &opts.field_manager,
                    &info.api_version(),
                );
            }
            // Same content: no write, same resourceVersion (upstream skips no-op updates).
            let mut a = new.clone();
            let mut b = old.clone();
            for v in [&mut a, &mut b] {
                if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                    m.remove("managedFields");
                }
            }
            if a == b {
                return Ok(Update::Unchanged(old));
            }
            // Removing the last finalizer of an object being deleted completes the deletion.
            let spec_finalizers_done = info.kind != "Namespace"
                || new["spec"]["finalizers"]
                    .as_array()
                    .is_none_or(|a| a.is_empty());
            if new["metadata"]["deletionTimestamp"].is_string()
                && registry::finalizers(&new).is_empty()
                && spec_finalizers_done
                && !(info.kind == "Pod"
                    && new["metadata"]["deletionGracePeriodSeconds"]
                        .as_i64()
                        .unwrap_or(0)
                        > 0)
            {
                return Ok(Update::Delete(new));
            }
            Ok(Update::Put(new))
        })
        .await?;
    let object = match decision {
        Update::Put(v) | Update::Unchanged(v) | Update::Delete(v) => v,
    };
    crate::hooks::after_write(server, &info, &object).await;
    Ok(WriteResult {
        code: 200,
        object,
        warnings,
    })
}

/// DeleteOptions from the query and body.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub propagation: Option<String>,
    pub grace_period: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

fn delete_options(q: &Query, headers: &HeaderMap, body: &[u8]) -> ApiResult<DeleteOptions> {
    let mut o = DeleteOptions::default();
    if !body.is_empty() {
        let v = decode_object(headers, body)?;
        o.propagation = v["propagationPolicy"].as_str().map(String::from);
        o.grace_period = v["gracePeriodSeconds"].as_i64();
        o.precondition_uid = v["preconditions"]["uid"].as_str().map(String::from);
        o.precondition_rv = v["preconditions"]["resourceVersion"]
            .as_str()
            .map(String::from);
        if let Some(d) = v["dryRun"].as_array() {
            o.dry_run = d.iter().any(|x| x == "All");
        }
        if v["orphanDependents"] == json!(true) && o.propagation.is_none() {
            o.propagation = Some("Orphan".into());
        }
    }
    if let Some(p) = q.get("propagationPolicy") {
        o.propagation = Some(p.to_string());
    }
    if let Some(g) = q.get("gracePeriodSeconds") {
        o.grace_period = Some(
            g.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}")))?,
        );
    }
    if q.get("dryRun") == Some("All") {
        o.dry_run = true;
    }
    if let Some(p) = &o.propagation
        && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::invalid(
            "DeleteOptions",
            "",
            "",
            vec![(
                "FieldValueNotSupported".into(),
                format!(
                    "Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
                ),
                "propagationPolicy".into(),
            )],
        ));
    }
    Ok(o)
}

/// Delete one object, honouring finalizers, propagation policy and pod grace periods.
/// Returns (HTTP code, body).
pub async fn delete(
    server: &ApiServer,
    r: &ResourceRoute,
    name: &str,
    o: &DeleteOptions,
) -> ApiResult<(u16, Value)> {
    let info = r.info.clone();
    let key = registry::object_key(&info, &r.namespace, name);
    let (decision, _) = registry::guaranteed_update(server, &info, &key, name, o.dry_run, |cur| {
        let Some(mut obj) = cur else {
            return Err(ApiError::not_found(&info.plural, &info.group, name));
        };
        if let Some(uid) = &o.precondition_uid
            && obj["metadata"]["uid"].as_str() != Some(uid.as_str()) {
                return Err(ApiError::conflict(&info.plural, &info.group, name, &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    obj["metadata"]["uid"].as_str().unwrap_or("")
                )));
            }
        if let Some(rv) = &o.precondition_rv
            && obj["metadata"]["resourceVersion"].as_str() != Some(rv.as_str()) {
                return Err(ApiError::conflict(&info.plural, &info.group, name, &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    obj["metadata"]["resourceVersion"].as_str().unwrap_or("")
                )));
            }
        let mut fins = registry::finalizers(&obj);
        match o.propagation.as_deref() {
            Some("Orphan") => {
                fins.retain(|f| f != "foregroundDeletion");
                if !fins.iter().any(|f| f == "orphan") {
                    fins.push("orphan".into());
                }
            }
            Some("Foreground") => {
                fins.retain(|f| f != "orphan");
                if !fins.iter().any(|f| f == "foregroundDeletion") {
                    fins.push("foregroundDeletion".into());
                }
            }
            Some("Background") => fins.retain(|f| f != "orphan" && f != "foregroundDeletion"),
            _ => {}
        }
        // Namespaces always go through the namespace finalizer.
        if info.group.is_empty() && info.kind == "Namespace" {
            obj["status"]["phase"] = json!("Terminating");
        }
        let graceful = strategy_grace_period(&info, &obj, o.grace_period);
        let already = obj["metadata"]["deletionTimestamp"].is_string();
        let ns_finalizers = info.kind == "Namespace"
            && obj["spec"]["finalizers"].as_array().is_some_and(|a| !a.is_empty());
        if fins.is_empty() && graceful == 0 && !ns_finalizers {
            return Ok(Update::Delete(obj));
        }
        let changed_fins = fins != registry::finalizers(&obj);
        if already && !changed_fins && graceful >= obj["metadata"]["deletionGracePeriodSeconds"].as_i64().unwrap_or(0) {
            return Ok(Update::Unchanged(obj));
        }
        if !fins.is_empty() || obj["metadata"].get("finalizers").is_some() {
            obj["metadata"]["finalizers"] = json!(fins);
        }
        if !already || graceful < obj["metadata"]["deletionGracePeriodSeconds"].as_i64().unwrap_or(0) {
            let when = chrono::Utc::now() + chrono::Duration::seconds(graceful);
            obj["metadata"]["deletionTimestamp"] = json!(when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        obj["metadata"]["deletionGracePeriodSeconds"] = json!(graceful);
        Ok(Update::Put(obj))
    })
    .await?;
    Ok(match decision {
        Update::Delete(v) => {
            crate::hooks::after_delete(server, &info, &v).await;
            if info.kind == "Pod" || info.custom {
                (200, v)
            } else {
                (
                    200,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "group": info.group, "kind": info.plural, "uid": v["metadata"]["uid"]}}),
                )
            }
        }
        Update::Put(v) | Update::Unchanged(v) => (if o.dry_run { 200 } else { 202 }, v),
    })
}

/// Grace period for a deletion: only pods that are bound to a node and not finished
/// terminate gracefully; everything else is deleted at once (grace 0).
fn strategy_grace_period(info: &ResourceInfo, obj: &Value, requested: Option<i64>) -> i64 {
    if !(info.group.is_empty() && info.kind == "Pod") {
        return 0;
    }
    let scheduled = obj["spec"]["nodeName"]
        .as_str()
        .is_some_and(|s| !s.is_empty());
    let finished = matches!(
        obj["status"]["phase"].as_str(),
        Some("Succeeded") | Some("Failed")
    );
    if !scheduled || finished {
        return 0;
    }
    let g = requested.unwrap_or_else(|| {
        obj["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(30)
    });
    g.max(0)
}

/// Duplicate JSON keys: an error under `fieldValidation=Strict`, warnings under `Warn`.
fn duplicate_check(
    info: &ResourceInfo,
    headers: &HeaderMap,
    body: &[u8],
    opts: &WriteOptions,
) -> ApiResult<Vec<String>> {
    if opts.field_validation == "Ignore"
        || !matches!(content_type(headers).as_str(), "" | "application/json")
    {
        return Ok(Vec::new());
    }
    let dups: Vec<String> = crate::dupkeys::duplicate_fields(body)
        .into_iter()
        .map(|p| format!("duplicate field \"{p}\""))
        .collect();
    if dups.is_empty() {
        return Ok(Vec::new());
    }
    if opts.field_validation == "Strict" {
        return Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            info.kind,
            info.version,
            info.kind,
            dups.join(", ")
        )));
    }
    Ok(dups)
}

/// Drop fields a built-in kind does not have (upstream's typed decoding does the same);
/// custom resources are pruned by their structural schema in `custom`.
fn prune_unknown(server: &ApiServer, info: &ResourceInfo, obj: &mut Value) {
    if info.custom {
        return;
    }
    if let Ok(o) = server.openapi.read() {
        o.prune_unknown(&info.group, &info.version, &info.kind, obj);
    }
}
