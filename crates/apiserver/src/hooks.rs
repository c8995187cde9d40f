//! Side effects that follow a committed write: serving a new CRD's resources, releasing
//! a deleted Service's allocations, removing a deleted CRD's objects.

use api::catalog::ResourceInfo;
use bytes::Bytes;
use serde_json::Value;

use crate::server::ApiServer;

pub async fn after_write(server: &ApiServer, info: &ResourceInfo, obj: &Value) {
    if info.group == "apiextensions.k8s.io" && info.kind == "CustomResourceDefinition" {
        if obj["metadata"]["deletionTimestamp"].is_string() {
            return;
        }
        crate::custom::register(server, obj);
    }
}

pub async fn after_delete(server: &ApiServer, info: &ResourceInfo, obj: &Value) {
    if info.group == "apiextensions.k8s.io" && info.kind == "CustomResourceDefinition" {
        crate::custom::unregister(server, obj);
        let group = obj["spec"]["group"].as_str().unwrap_or("");
        let plural = obj["spec"]["names"]["plural"].as_str().unwrap_or("");
        if !group.is_empty() && !plural.is_empty() {
            let prefix = format!("/registry/{group}/{plural}/");
            let txn = store::Txn {
                compare: vec![],
                success: vec![store::Op::Delete {
                    key: Bytes::from(prefix.clone()),
                    range_end: Some(store::prefix_end(prefix.as_bytes())),
                    prev_kv: false,
                }],
                failure: vec![],
            };
            if let Err(e) = server.store.txn(txn).await {
                tracing::warn!("removing custom objects of {plural}.{group}: {e}");
            }
        }
    }
    if info.group.is_empty() && info.kind == "Service" {
        crate::allocators::release(server, obj).await;
    }
}
