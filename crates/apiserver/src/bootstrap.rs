//! What a fresh cluster has from its first start: the `default`, `kube-system`,
//! `kube-public` and `kube-node-lease` namespaces and the `kubernetes` Service; and on
//! every start, the custom resources of stored CRDs.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::handlers::{Query, ResourceRoute};
use crate::registry::WriteOptions;
use crate::server::ApiServer;

fn route(
    server: &ApiServer,
    group: &str,
    version: &str,
    plural: &str,
    namespace: &str,
) -> anyhow::Result<ResourceRoute> {
    let info = server
        .resource(group, version, plural)
        .ok_or_else(|| anyhow::anyhow!("{plural} not served"))?;
    Ok(ResourceRoute {
        info,
        namespace: namespace.into(),
        name: None,
        sub: None,
        watch: false,
        query: Query::default(),
    })
}

/// Create an object as the API server itself, ignoring AlreadyExists.
pub async fn ensure(
    server: &ApiServer,
    group: &str,
    version: &str,
    plural: &str,
    namespace: &str,
    obj: Value,
) -> anyhow::Result<()> {
    let r = route(server, group, version, plural, namespace)?;
    let opts = WriteOptions {
        field_manager: "kube-apiserver".into(),
        field_validation: "Ignore".into(),
        ..Default::default()
    };
    match crate::handlers::create(server, &r, obj, &opts).await {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(anyhow::anyhow!("bootstrapping {plural}: {e}")),
    }
}

pub async fn bootstrap(server: &Arc<ApiServer>) -> anyhow::Result<()> {
    // Serve stored CRDs before anything else reads them.
    let prefix = "/registry/apiextensions.k8s.io/customresourcedefinitions/";
    let (crds, _, _, _) = server.cache.list(prefix, None, 0, &|_| true).await;
    for crd in crds {
        crate::custom::register(server, &crd.value());
    }
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure(
            server,
            "",
            "v1",
            "namespaces",
            "",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await?;
    }
    let ip = crate::allocators::first_ip(&server.config.service_cidr)
        .ok_or_else(|| anyhow::anyhow!("invalid service CIDR {}", server.config.service_cidr))?;
    ensure(server, "", "v1", "services", "default", json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "clusterIP": ip.to_string(),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": server.config.secure_port}],
            "sessionAffinity": "None",
            "type": "ClusterIP",
        },
    }))
    .await?;
    Ok(())
}
