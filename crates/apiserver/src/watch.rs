//! WATCH: a chunked stream of newline-delimited `{"type":…,"object":…}` events served
//! from the watch cache, with resume from a resourceVersion, bookmarks,
//! `sendInitialEvents`, `timeoutSeconds` and 410 Expired as an ERROR event.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::cache::{CacheError, CacheEvent, CachedObject, EventKind};
use crate::errors::{ApiError, ApiResult};
use crate::handlers::ResourceRoute;
use crate::list::{Rendering, build_filter, rendering};
use crate::registry;
use crate::server::ApiServer;

const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);

struct Encoder {
    rendering: Rendering,
    first_table: bool,
    server: Arc<ApiServer>,
    route: ResourceRoute,
}

impl Encoder {
    fn event(&mut self, kind: &str, obj: &CachedObject) -> Bytes {
        match self.rendering {
            Rendering::Full => encoded_line(kind, &obj.json),
            Rendering::Metadata => encoded_line(kind, &obj.partial_metadata_json()),
            Rendering::Table => {
                let v = obj.value();
                let mut t = crate::table::table(
                    &self.server,
                    &self.route.info,
                    &[v],
                    obj.mod_revision,
                    None,
                    self.route.query.get("includeObject"),
                );
                if !self.first_table {
                    t["columnDefinitions"] = json!([]);
                }
                self.first_table = false;
                line(kind, &t)
            }
        }
    }

    fn bookmark(&self, rev: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rev.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.route.info.kind, "apiVersion": self.route.info.api_version(), "metadata": meta});
        line("BOOKMARK", &obj)
    }
}

/// A watch event line around an object that is already encoded JSON (no re-encoding).
fn encoded_line(kind: &str, object: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(object.len() + 32);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    out.extend_from_slice(object);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

fn line(kind: &str, obj: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": obj})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

fn error_line(e: &ApiError) -> Bytes {
    line("ERROR", &e.status())
}

/// Serve a watch request.
pub async fn watch(server: Arc<ApiServer>, r: &ResourceRoute, accept: &str) -> ApiResult<Response> {
    let info = r.info.clone();
    let filter = build_filter(&info, r)?;
    let name_filter = r.name.clone();
    let q = &r.query;
    let bookmarks = q.flag("allowWatchBookmarks");
    let send_initial = match q.get("sendInitialEvents") {
        None | Some("") => None,
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Some(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Some(false),
        Some(o) => {
            return Err(ApiError::bad_request(format!(
                "invalid sendInitialEvents {o:?}"
            )));
        }
    };
    if send_initial.is_some() {
        if q.get("resourceVersionMatch") != Some("NotOlderThan") {
            return Err(ApiError::invalid("ListOptions", "meta.k8s.io", "", vec![(
                "FieldValueForbidden".into(),
                "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan".into(),
                "sendInitialEvents".into(),
            )]));
        }
        if send_initial == Some(true) && !bookmarks {
            return Err(ApiError::invalid(
                "ListOptions",
                "meta.k8s.io",
                "",
                vec![(
                    "FieldValueForbidden".into(),
                    "Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true"
                        .into(),
                    "allowWatchBookmarks".into(),
                )],
            ));
        }
    }
    let timeout = match q.get("timeoutSeconds") {
        Some(t) if !t.is_empty() => Duration::from_secs(
            t.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
        ),
        _ => Duration::from_secs(1800 + rand::random::<u64>() % 1800),
    };
    let rv = match q.get("resourceVersion") {
        None | Some("") => None,
        Some(s) => Some(
            s.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s:?}")))?,
        ),
    };
    let prefix = registry::list_prefix(&info, &r.namespace);
    // Decide the starting point: initial state (ADDED events) or a revision to resume after.
    let initial = match (send_initial, rv) {
        (Some(true), _) => true,
        (Some(false), _) => false,
        (None, None) | (None, Some(0)) => true,
        (None, Some(_)) => false,
    };
    let matches = move |o: &CachedObject| {
        filter(o) && name_filter.as_ref().is_none_or(|n| *n == o.name) && o.key.starts_with(&prefix)
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    let mut enc = Encoder {
        rendering: rendering(accept),
        first_table: true,
        server: server.clone(),
        route: r.clone(),
    };
    let server2 = server.clone();
    let prefix2 = registry::list_prefix(&info, &r.namespace);
    server.metrics.watch_started(&info.plural);
    let plural = info.plural.clone();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let (sub, initial_objs) = if initial {
            let (objs, sub) = server2.cache.snapshot_and_subscribe(&prefix2).await;
            (Ok(sub), objs)
        } else {
            let from = match rv {
                Some(v) if v > 0 => Some(v),
                _ => None,
            };
            (server2.cache.subscribe(from).await, Vec::new())
        };
        let mut sub = match sub {
            Ok(s) => s,
            Err(CacheError::TooOld { requested, .. }) => {
                let e = ApiError::expired(format!(
                    "too old resource version: {requested} ({})",
                    server2.cache.revision().await
                ));
                let _ = tx.send(Ok(error_line(&e))).await;
                server2.metrics.watch_ended(&plural);
                return;
            }
            Err(e) => {
                let _ = tx
                    .send(Ok(error_line(&ApiError::internal(e.to_string()))))
                    .await;
                server2.metrics.watch_ended(&plural);
                return;
            }
        };
        let mut last_rev = sub.revision;
        for o in initial_objs.iter().filter(|o| matches(o)) {
            if tx.send(Ok(enc.event("ADDED", o))).await.is_err() {
                server2.metrics.watch_ended(&plural);
                return;
            }
        }
        if send_initial == Some(true) {
            let _ = tx.send(Ok(enc.bookmark(sub.revision, true))).await;
        }
        let replay = std::mem::take(&mut sub.replay);
        let mut ok = true;
        for ev in replay {
            last_rev = ev.revision;
            if let Some(b) = encode_event(&mut enc, &ev, &matches)
                && tx.send(Ok(b)).await.is_err()
            {
                ok = false;
                break;
            }
        }
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await;
        if ok {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = ticker.tick() => {
                        if bookmarks && tx.send(Ok(enc.bookmark(last_rev.max(server2.cache.revision().await), false))).await.is_err() {
                            break;
                        }
                        if tx.is_closed() { break; }
                    }
                    ev = sub.live.recv() => match ev {
                        Ok(ev) => {
                            if ev.revision <= last_rev && ev.revision <= sub.revision {
                                continue;
                            }
                            last_rev = ev.revision;
                            if let Some(b) = encode_event(&mut enc, &ev, &matches)
                                && tx.send(Ok(b)).await.is_err() { break; }
                        }
                        Err(RecvError::Lagged(_)) => {
                            let e = ApiError::expired(format!("too old resource version: {last_rev}: the watcher fell behind"));
                            let _ = tx.send(Ok(error_line(&e))).await;
                            break;
                        }
                        Err(RecvError::Closed) => break,
                    }
                }
            }
        }
        server2.metrics.watch_ended(&plural);
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

/// Encode one cache event for a filtered watcher, turning selector transitions into
/// ADDED/DELETED as upstream does.
fn encode_event(
    enc: &mut Encoder,
    ev: &Arc<CacheEvent>,
    matches: &impl Fn(&CachedObject) -> bool,
) -> Option<Bytes> {
    let now = matches(&ev.obj);
    let before = ev.prev.as_ref().map(|p| matches(p)).unwrap_or(false);
    let kind = match ev.kind {
        EventKind::Added if now => "ADDED",
        EventKind::Modified if now && before => "MODIFIED",
        EventKind::Modified if now => "ADDED",
        EventKind::Modified if before => "DELETED",
        EventKind::Deleted if before || now => "DELETED",
        _ => return None,
    };
    Some(enc.event(kind, &ev.obj))
}
