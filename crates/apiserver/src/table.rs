//! `meta.k8s.io/v1 Table` responses for `kubectl get`, from the `api::printers` columns.

use api::catalog::ResourceInfo;
use serde_json::{Value, json};

use crate::list::partial_metadata;
use crate::server::ApiServer;

/// Build a Table of `objs`. `include_object` is upstream's `includeObject` parameter:
/// `None` (no object), `Object` (the full object) or `Metadata` (default).
pub fn table(
    server: &ApiServer,
    info: &ResourceInfo,
    objs: &[Value],
    rev: i64,
    cont: Option<&str>,
    include_object: Option<&str>,
) -> Value {
    let now = chrono::Utc::now();
    let (columns, rows): (Vec<Value>, Vec<Vec<Value>>) = if info.custom {
        crate::custom::table(server, info, objs, now)
    } else {
        let cols = api::printers::columns(&info.group, &info.kind);
        let defs = cols
            .iter()
            .map(|c| {
                json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority})
            })
            .collect();
        let rows = objs
            .iter()
            .map(|o| api::printers::row(&info.group, &info.kind, o, now))
            .collect();
        (defs, rows)
    };
    let rows: Vec<Value> = objs
        .iter()
        .zip(rows)
        .map(|(o, cells)| {
            let object = match include_object {
                Some("None") => Value::Null,
                Some("Object") => o.clone(),
                _ => partial_metadata(o),
            };
            let mut row = json!({"cells": cells, "object": object});
            if !info.custom {
                let conditions = api::printers::row_conditions(&info.group, &info.kind, o);
                if !conditions.is_empty() {
                    row["conditions"] = json!(conditions);
                }
            }
            row
        })
        .collect();
    let mut meta = json!({"resourceVersion": rev.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns,
        "rows": rows,
    })
}
