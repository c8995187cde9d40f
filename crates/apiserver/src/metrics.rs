//! Prometheus metrics of the API server: request counts and latency histograms by verb
//! and resource, open watches, and stored objects per resource.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use axum::response::Response;

use crate::server::{ApiServer, bytes_response};

const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// Counters guarded by one mutex each; contention is low (one short update per request).
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<HashMap<(String, String, u16), u64>>,
    latency: Mutex<HashMap<(String, String), Histogram>>,
    watches: Mutex<HashMap<String, i64>>,
}

impl Metrics {
    pub fn observe(&self, verb: &str, resource: &str, code: u16, elapsed: Duration) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((verb.to_string(), resource.to_string(), code))
                .or_default() += 1;
        }
        if verb == "watch" {
            return;
        }
        if let Ok(mut m) = self.latency.lock() {
            let h = m
                .entry((verb.to_string(), resource.to_string()))
                .or_default();
            if h.counts.is_empty() {
                h.counts = vec![0; BUCKETS.len()];
            }
            let s = elapsed.as_secs_f64();
            for (i, b) in BUCKETS.iter().enumerate() {
                if s <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += s;
            h.count += 1;
        }
    }

    pub fn watch_started(&self, resource: &str) {
        if let Ok(mut m) = self.watches.lock() {
            *m.entry(resource.to_string()).or_default() += 1;
        }
    }

    pub fn watch_ended(&self, resource: &str) {
        if let Ok(mut m) = self.watches.lock() {
            *m.entry(resource.to_string()).or_default() -= 1;
        }
    }

    pub async fn render(&self, server: &ApiServer) -> Response {
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Counter of apiserver requests broken out by verb, resource and HTTP response code.\n# TYPE apiserver_request_total counter\n");
        if let Ok(m) = self.requests.lock() {
            let mut rows: Vec<_> = m.iter().collect();
            rows.sort();
            for ((verb, res, code), n) in rows {
                let _ = writeln!(
                    out,
                    "apiserver_request_total{{verb=\"{verb}\",resource=\"{res}\",code=\"{code}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb and resource.\n# TYPE apiserver_request_duration_seconds histogram\n");
        if let Ok(m) = self.latency.lock() {
            let mut rows: Vec<_> = m.iter().collect();
            rows.sort_by(|a, b| a.0.cmp(b.0));
            for ((verb, res), h) in rows {
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "apiserver_request_duration_seconds_bucket{{verb=\"{verb}\",resource=\"{res}\",le=\"{b}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "apiserver_request_duration_seconds_bucket{{verb=\"{verb}\",resource=\"{res}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "apiserver_request_duration_seconds_sum{{verb=\"{verb}\",resource=\"{res}\"}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "apiserver_request_duration_seconds_count{{verb=\"{verb}\",resource=\"{res}\"}} {}",
                    h.count
                );
            }
        }
        out.push_str("# HELP apiserver_longrunning_requests Number of open watch requests by resource.\n# TYPE apiserver_longrunning_requests gauge\n");
        if let Ok(m) = self.watches.lock() {
            let mut rows: Vec<_> = m.iter().collect();
            rows.sort();
            for (res, n) in rows {
                let _ = writeln!(
                    out,
                    "apiserver_longrunning_requests{{verb=\"watch\",resource=\"{res}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP apiserver_storage_objects Number of stored objects per resource.\n# TYPE apiserver_storage_objects gauge\n");
        let infos: Vec<_> = server
            .resources
            .read()
            .map(|r| r.by_path.values().cloned().collect())
            .unwrap_or_default();
        let mut seen = std::collections::HashSet::new();
        for info in infos {
            if !seen.insert(info.group_resource()) {
                continue;
            }
            let n = server
                .cache
                .count(&crate::registry::list_prefix(&info, ""))
                .await;
            let _ = writeln!(
                out,
                "apiserver_storage_objects{{resource=\"{}\"}} {n}",
                info.group_resource()
            );
        }
        let _ = writeln!(
            out,
            "# HELP flotilla_store_revision Current datastore revision.\n# TYPE flotilla_store_revision gauge\nflotilla_store_revision {}",
            server.store.current_revision()
        );
        bytes_response(200, out.into(), "text/plain; version=0.0.4")
    }
}
