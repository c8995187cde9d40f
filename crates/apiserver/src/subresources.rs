//! Subresources with their own shapes: `scale` (autoscaling/v1 Scale), `binding`,
//! `eviction`, and the namespace `finalize` subresource.

use axum::response::Response;
use serde_json::{Value, json};

use crate::errors::{ApiError, ApiResult};
use crate::handlers::{DeleteOptions, ResourceRoute};
use crate::registry::{WriteOptions, WriteResult};
use crate::server::{ApiServer, json_response};
use api::catalog::ResourceInfo;

/// The label selector of an object's `spec.selector` as a string (`a=b,c in (d)`).
pub fn selector_string(sel: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(m) = sel["matchLabels"].as_object() {
        for (k, v) in m {
            parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
        }
    }
    if let Some(exprs) = sel["matchExpressions"].as_array() {
        for e in exprs {
            let key = e["key"].as_str().unwrap_or("");
            let vals: Vec<&str> = e["values"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e["operator"].as_str().unwrap_or("") {
                "In" => parts.push(format!("{key} in ({})", vals.join(","))),
                "NotIn" => parts.push(format!("{key} notin ({})", vals.join(","))),
                "Exists" => parts.push(key.to_string()),
                "DoesNotExist" => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.sort();
    parts.join(",")
}

/// The Scale view of a scalable object.
pub fn to_scale(info: &ResourceInfo, obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let selector = if obj["spec"]["selector"].is_object() {
        selector_string(&obj["spec"]["selector"])
    } else if let Some(m) = obj["spec"]["selector"].as_object() {
        m.iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(",")
    } else {
        String::new()
    };
    let _ = info;
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

/// Apply a new Scale (from PUT or a patched Scale) to the parent object.
pub async fn apply_scale(
    server: &ApiServer,
    r: &ResourceRoute,
    scale: Value,
    opts: &WriteOptions,
) -> ApiResult<WriteResult> {
    let replicas = match &scale["spec"]["replicas"] {
        Value::Null => 0,
        v => v
            .as_i64()
            .ok_or_else(|| ApiError::bad_request("spec.replicas must be an integer"))?,
    };
    if replicas < 0 {
        let name = r.name.clone().unwrap_or_default();
        return Err(ApiError::invalid(
            "Scale",
            "autoscaling",
            &name,
            vec![(
                "FieldValueInvalid".into(),
                format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                "spec.replicas".into(),
            )],
        ));
    }
    let want_rv = scale["metadata"]["resourceVersion"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(String::from);
    let info = r.info.clone();
    let name = r.name.clone().unwrap_or_default();
    let res = crate::handlers::update_with(server, r, None, opts, Vec::new(), |old| {
        if let Some(rv) = &want_rv
            && old["metadata"]["resourceVersion"].as_str() != Some(rv.as_str())
        {
            return Err(ApiError::modified(&info.plural, &info.group, &name));
        }
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(replicas);
        Ok(new)
    })
    .await?;
    Ok(WriteResult {
        code: 200,
        object: to_scale(&r.info, &res.object),
        warnings: res.warnings,
    })
}

pub async fn update_scale(
    server: &ApiServer,
    r: &ResourceRoute,
    scale: Value,
    opts: &WriteOptions,
) -> ApiResult<WriteResult> {
    if scale["kind"].as_str().is_some_and(|k| k != "Scale") {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({}) does not match the expected kind (Scale)",
            scale["kind"].as_str().unwrap_or("")
        )));
    }
    apply_scale(server, r, scale, opts).await
}

/// POST to a subresource (`binding`, `eviction`).
pub async fn create_sub(
    server: &ApiServer,
    r: &ResourceRoute,
    sub: &str,
    body: Value,
    opts: &WriteOptions,
) -> ApiResult<Response> {
    match sub {
        "token" if r.info.group.is_empty() && r.info.plural == "serviceaccounts" => {
            let name = r.name.clone().unwrap_or_default();
            let out = crate::serviceaccount::token_request(
                server,
                &r.namespace,
                &name,
                body,
                opts.dry_run,
            )
            .await?;
            Ok(json_response(201, &out))
        }
        "binding" => bind(server, r, r.name.clone().unwrap_or_default(), body, opts).await,
        "eviction" => {
            let dopts = DeleteOptions {
                grace_period: body["deleteOptions"]["gracePeriodSeconds"].as_i64(),
                dry_run: opts.dry_run,
                ..Default::default()
            };
            crate::handlers::delete(server, r, r.name.as_deref().unwrap_or(""), &dopts).await?;
            Ok(json_response(
                201,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "create is not supported on {}/{sub}",
            r.info.plural
        ))),
    }
}

/// Bind a pod to a node (the scheduler's only write).
pub async fn bind(
    server: &ApiServer,
    r: &ResourceRoute,
    pod_name: String,
    body: Value,
    opts: &WriteOptions,
) -> ApiResult<Response> {
    let node = body["target"]["name"].as_str().unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "Binding",
            "",
            &pod_name,
            vec![(
                "FieldValueRequired".into(),
                "Required value".into(),
                "target.name".into(),
            )],
        ));
    }
    let pods = server
        .resource("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("pods not served"))?;
    let pr = ResourceRoute {
        info: pods.clone(),
        namespace: r.namespace.clone(),
        name: Some(pod_name.clone()),
        sub: None,
        watch: false,
        query: r.query.clone(),
    };
    let annotations = body["metadata"]["annotations"].clone();
    crate::handlers::update_with(server, &pr, Some("binding"), opts, Vec::new(), |old| {
        if old["metadata"]["deletionTimestamp"].is_string() {
            return Err(ApiError::conflict("pods", "", &pod_name, "pod is being deleted, cannot be assigned to a host"));
        }
        if let Some(cur) = old["spec"]["nodeName"].as_str().filter(|s| !s.is_empty()) {
            return Err(ApiError::conflict("pods", "", &pod_name, &format!("pod {pod_name} is already assigned to node \"{cur}\"")));
        }
        let mut new = old.clone();
        new["spec"]["nodeName"] = json!(node);
        if let Some(a) = annotations.as_object() {
            for (k, v) in a {
                new["metadata"]["annotations"][k] = v.clone();
            }
        }
        let now = crate::registry::now_rfc3339();
        let mut conds: Vec<Value> = new["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conds.retain(|c| c["type"] != "PodScheduled");
        conds.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
        new["status"]["conditions"] = json!(conds);
        Ok(new)
    })
    .await?;
    Ok(json_response(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// PUT namespaces/<name>/finalize: only `spec.finalizers` may change.
pub async fn finalize_namespace(
    server: &ApiServer,
    r: &ResourceRoute,
    body: Value,
    opts: &WriteOptions,
) -> ApiResult<WriteResult> {
    let fins = body["spec"]["finalizers"].clone();
    crate::handlers::update_with(server, r, Some("finalize"), opts, Vec::new(), |old| {
        let mut new = old.clone();
        new["spec"]["finalizers"] = if fins.is_null() {
            json!([])
        } else {
            fins.clone()
        };
        Ok(new)
    })
    .await
}
