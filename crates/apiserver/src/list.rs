//! LIST, GET rendering (plain, Table, PartialObjectMetadata) and DELETE of collections.

use std::sync::Arc;

use api::catalog::ResourceInfo;
use axum::response::Response;
use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Value, json};

use crate::cache::CachedObject;
use crate::errors::{ApiError, ApiResult};
use crate::handlers::{DeleteOptions, ResourceRoute};
use crate::registry;
use crate::server::{ApiServer, bytes_response, json_response};

/// How the client wants objects rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rendering {
    Full,
    Table,
    Metadata,
}

/// Pick the rendering from the Accept header (upstream's content negotiation for
/// `as=Table` and `as=PartialObjectMetadata[List]`).
pub fn rendering(accept: &str) -> Rendering {
    for part in accept.split(',') {
        let p = part.replace(' ', "");
        if p.contains("as=Table") && p.contains("g=meta.k8s.io") {
            return Rendering::Table;
        }
        if p.contains("as=PartialObjectMetadata") && p.contains("g=meta.k8s.io") {
            return Rendering::Metadata;
        }
        if p.starts_with("application/json")
            || p.starts_with("*/*")
            || p.starts_with("application/yaml")
        {
            return Rendering::Full;
        }
    }
    Rendering::Full
}

/// A filter built from label and field selectors.
pub type Filter = Box<dyn Fn(&CachedObject) -> bool + Send + Sync>;

pub fn build_filter(info: &ResourceInfo, r: &ResourceRoute) -> ApiResult<Filter> {
    let labels = crate::adapters::label_filter(r.query.get("labelSelector").unwrap_or(""))?;
    let fields = crate::adapters::field_filter(info, r.query.get("fieldSelector").unwrap_or(""))?;
    Ok(Box::new(move |o: &CachedObject| {
        labels(&o.labels) && fields(&o.fields)
    }))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: i64,
    start: String,
}

fn encode_continue(rv: i64, start: &str) -> String {
    let t = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: start.to_string(),
    };
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&t).unwrap_or_default())
}

fn decode_continue(s: &str) -> ApiResult<ContinueToken> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| bad())?;
    let t: ContinueToken = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if t.v != "meta.k8s.io/v1" {
        return Err(bad());
    }
    Ok(t)
}

fn parse_rv(s: &str) -> ApiResult<i64> {
    s.parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: {s:?}")))
}

/// LIST a resource.
pub async fn list(server: &ApiServer, r: &ResourceRoute, accept: &str) -> ApiResult<Response> {
    let info = r.info.clone();
    let filter = build_filter(&info, r)?;
    let limit: usize = match r.query.get("limit") {
        None | Some("") => 0,
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?
            .max(0) as usize,
    };
    if let Some(rv) = r.query.get("resourceVersion").filter(|s| !s.is_empty()) {
        let rv = parse_rv(rv)?;
        // A client asking for a state not older than rv waits until the cache has it.
        if rv > server.cache.revision().await {
            if rv > server.store.current_revision() {
                return Err(ApiError::timeout(format!(
                    "Too large resource version: {rv}, current: {}",
                    server.store.current_revision()
                )));
            }
            server.cache.wait_for(rv).await;
        }
    }
    let rv_set = r
        .query
        .get("resourceVersion")
        .is_some_and(|s| !s.is_empty());
    match r.query.get("resourceVersionMatch") {
        Some(m) if !m.is_empty() && !rv_set => {
            return Err(ApiError::invalid("ListOptions", "meta.k8s.io", "", vec![(
                "FieldValueForbidden".into(),
                "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
                "resourceVersionMatch".into(),
            )]));
        }
        None | Some("") | Some("NotOlderThan") | Some("Exact") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "resourceVersionMatch: Unsupported value: {other:?}"
            )));
        }
    }
    let prefix = registry::list_prefix(&info, &r.namespace);
    let (start, token_rv) = match r.query.get("continue").filter(|s| !s.is_empty()) {
        Some(c) => {
            let t = decode_continue(c)?;
            (Some(format!("{prefix}{}", t.start)), Some(t.rv))
        }
        None => (None, None),
    };
    let (objs, rev, next, remaining) = server
        .cache
        .list(&prefix, start.as_deref(), limit, &*filter)
        .await;
    let rev = token_rv.unwrap_or(rev);
    let cont = next.map(|k| encode_continue(rev, k.strip_prefix(&prefix).unwrap_or(&k)));
    let remaining = if cont.is_some() {
        Some(remaining)
    } else {
        None
    };
    match rendering(accept) {
        Rendering::Table => {
            let rows: Vec<Value> = objs.iter().map(|o| o.value()).collect();
            let t = crate::table::table(
                server,
                &info,
                &rows,
                rev,
                cont.as_deref(),
                r.query.get("includeObject"),
            );
            Ok(json_response(200, &t))
        }
        Rendering::Metadata => {
            let items: Vec<Value> = objs.iter().map(|o| o.partial_metadata()).collect();
            let mut meta = json!({"resourceVersion": rev.to_string()});
            if let Some(c) = &cont {
                meta["continue"] = json!(c);
            }
            Ok(json_response(
                200,
                &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items}),
            ))
        }
        Rendering::Full => Ok(bytes_response(
            200,
            full_list(&info, &objs, rev, cont.as_deref(), remaining),
            "application/json",
        )),
    }
}

/// Encode a full list by concatenating the cached JSON of each object.
fn full_list(
    info: &ResourceInfo,
    objs: &[Arc<CachedObject>],
    rev: i64,
    cont: Option<&str>,
    remaining: Option<usize>,
) -> Bytes {
    let mut meta = json!({"resourceVersion": rev.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
        if let Some(n) = remaining {
            meta["remainingItemCount"] = json!(n);
        }
    }
    let head = format!(
        "{{\"kind\":{},\"apiVersion\":{},\"metadata\":{},\"items\":[",
        json!(info.list_kind),
        json!(info.api_version()),
        meta
    );
    let size: usize = objs.iter().map(|o| o.json.len() + 1).sum::<usize>() + head.len() + 2;
    let mut buf = BytesMut::with_capacity(size);
    buf.put_slice(head.as_bytes());
    for (i, o) in objs.iter().enumerate() {
        if i > 0 {
            buf.put_u8(b',');
        }
        buf.put_slice(&o.json);
    }
    buf.put_slice(b"]}");
    buf.freeze()
}

/// The PartialObjectMetadata form of an object.
pub fn partial_metadata(v: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": v["metadata"]})
}

/// Render a single object according to the Accept header.
pub async fn render_one(
    server: &ApiServer,
    r: &ResourceRoute,
    obj: Arc<CachedObject>,
    accept: &str,
) -> ApiResult<Response> {
    match rendering(accept) {
        Rendering::Full => Ok(bytes_response(200, obj.json.clone(), "application/json")),
        Rendering::Metadata => Ok(bytes_response(
            200,
            Bytes::from(obj.partial_metadata_json()),
            "application/json",
        )),
        Rendering::Table => {
            let v = obj.value();
            let t = crate::table::table(
                server,
                &r.info,
                &[v],
                obj.mod_revision,
                None,
                r.query.get("includeObject"),
            );
            Ok(json_response(200, &t))
        }
    }
}

/// DELETE a collection: delete every matching object one by one.
pub async fn delete_collection(
    server: &ApiServer,
    r: &ResourceRoute,
    o: &DeleteOptions,
) -> ApiResult<Response> {
    let filter = build_filter(&r.info, r)?;
    let prefix = registry::list_prefix(&r.info, &r.namespace);
    let (objs, rev, _, _) = server.cache.list(&prefix, None, 0, &*filter).await;
    let mut items = Vec::new();
    for obj in objs {
        let mut rr = r.clone();
        rr.namespace = obj.namespace.clone();
        match crate::handlers::delete(server, &rr, &obj.name, o).await {
            Ok((_, v)) => items.push(v),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let items: Vec<Value> = items
        .into_iter()
        .filter(|v| v["kind"] != "Status")
        .collect();
    Ok(json_response(
        200,
        &json!({"kind": r.info.list_kind, "apiVersion": r.info.api_version(), "metadata": {"resourceVersion": rev.to_string()}, "items": items}),
    ))
}
