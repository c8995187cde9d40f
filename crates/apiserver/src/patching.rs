//! PATCH: JSON patch, merge patch, strategic merge patch and server-side apply, each
//! applied to the current object inside the registry's compare-and-swap loop.

use api::patch::PatchType;
use serde_json::Value;

use crate::errors::{ApiError, ApiResult};
use crate::handlers::ResourceRoute;
use crate::registry::{WriteOptions, WriteResult};
use crate::server::ApiServer;

/// How many times a patch is re-applied to a changed object before the conflict is
/// reported (upstream's patcher retries a conflicting patch a few times as well).
const MAX_PATCH_ATTEMPTS: u32 = 5;

fn patch_error(e: api::patch::PatchError) -> ApiError {
    let code = e.status_code();
    let msg = e.status_message();
    match code {
        400 => ApiError::bad_request(msg),
        413 => ApiError::new(413, "RequestEntityTooLarge", msg),
        415 => ApiError::new(415, "UnsupportedMediaType", msg),
        // Upstream answers a few strategic-merge failures with 500; a bad patch is the
        // client's error, so Flotilla answers 422 (documented difference).
        _ => ApiError::new(422, "Invalid", msg),
    }
}

/// Decode a patch body: JSON for the JSON-based types, YAML (a superset) for apply.
fn decode_patch(pt: PatchType, body: &[u8]) -> ApiResult<Value> {
    match pt {
        PatchType::Apply => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("apply patch is not valid UTF-8"))?;
            let v: Value = serde_yaml_ng::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
            if !v.is_object() {
                return Err(ApiError::bad_request("apply patch must be an object"));
            }
            Ok(v)
        }
        _ => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}"))),
    }
}

/// Apply one non-apply patch to `old`.
pub fn apply_patch(
    pt: PatchType,
    old: &Value,
    patch: &Value,
    definition: Option<&str>,
) -> ApiResult<Value> {
    match pt {
        PatchType::Json => api::patch::json_patch(old, patch).map_err(patch_error),
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("merge patch must be a JSON object"));
            }
            api::patch::merge_patch(old, patch).map_err(patch_error)
        }
        PatchType::StrategicMerge => {
            let Some(def) = definition else {
                return Err(patch_error(
                    api::patch::PatchError::StrategicMergeUnsupported,
                ));
            };
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "strategic merge patch must be a JSON object",
                ));
            }
            api::patch::strategic_merge(old, patch, def).map_err(patch_error)
        }
        PatchType::Apply => Err(ApiError::internal(
            "apply patches go through server-side apply",
        )),
    }
}

pub async fn patch(
    server: &ApiServer,
    r: &ResourceRoute,
    sub: Option<&str>,
    ct: &str,
    body: &[u8],
    opts: &WriteOptions,
) -> ApiResult<WriteResult> {
    let Some(pt) = PatchType::from_content_type(ct) else {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml{}",
                if r.info.custom {
                    ""
                } else {
                    ", application/strategic-merge-patch+json"
                }
            ),
        ));
    };
    let info = r.info.clone();
    let definition = if info.custom {
        None
    } else {
        api::patch::definition_for(&info.group, &info.version, &info.kind)
    };
    if pt == PatchType::StrategicMerge && definition.is_none() {
        return Err(patch_error(
            api::patch::PatchError::StrategicMergeUnsupported,
        ));
    }
    let patch = decode_patch(pt, body)?;
    if pt == PatchType::Apply && opts.field_manager.is_empty() {
        return Err(ApiError::bad_request(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    if sub == Some("scale") {
        // As upstream's patch loop: the patch is applied to the current Scale, and when
        // the object changes before the write (a controller updating its status), it is
        // applied again to the new one. Only a resourceVersion the patch itself sets is
        // a precondition that ends in 409.
        let mut attempts = 0;
        loop {
            let cur = crate::handlers::get_object(server, r).await?;
            let scale = crate::subresources::to_scale(&info, &cur.value());
            let new_scale = match pt {
                PatchType::Apply => api::patch::merge_patch(&scale, &patch).map_err(patch_error)?,
                PatchType::StrategicMerge => {
                    api::patch::merge_patch(&scale, &patch).map_err(patch_error)?
                }
                _ => apply_patch(pt, &scale, &patch, None)?,
            };
            let unpinned =
                new_scale["metadata"]["resourceVersion"] == scale["metadata"]["resourceVersion"];
            match crate::subresources::apply_scale(server, r, new_scale, opts).await {
                Err(e) if e.code == 409 && unpinned && attempts < MAX_PATCH_ATTEMPTS => {
                    attempts += 1;
                }
                result => return result,
            }
        }
    }
    if pt == PatchType::Apply {
        return apply(server, r, sub, patch, definition.as_deref(), opts).await;
    }
    let warnings = Vec::new();
    let def = definition.clone();
    let res = crate::handlers::update_with(server, r, sub, opts, warnings, |old| {
        let mut new = apply_patch(pt, old, &patch, def.as_deref())?;
        // A patch cannot rename or move an object.
        if new["metadata"]["name"] != old["metadata"]["name"] && !new["metadata"]["name"].is_null()
        {
            return Err(ApiError::bad_request(
                "metadata.name: Invalid value: the name of an object cannot be changed by a patch",
            ));
        }
        if !new.is_object() {
            return Err(ApiError::bad_request("patched object is not a JSON object"));
        }
        new["metadata"]["name"] = old["metadata"]["name"].clone();
        // A patch that leaves a field of the wrong type is unprocessable (422), not a
        // malformed request.
        if let Err(e) = crate::adapters::validate(&info, &new, Some(old))
            && e.code == 400
        {
            return Err(ApiError::new(422, "Invalid", e.message));
        }
        Ok(new)
    })
    .await?;
    let warnings =
        crate::handlers::field_validation(server, &info, &res.object, opts).unwrap_or_default();
    Ok(WriteResult { warnings, ..res })
}

/// Server-side apply: create when missing, otherwise merge with field ownership.
async fn apply(
    server: &ApiServer,
    r: &ResourceRoute,
    sub: Option<&str>,
    mut applied: Value,
    definition: Option<&str>,
    opts: &WriteOptions,
) -> ApiResult<WriteResult> {
    let info = r.info.clone();
    let name = r.name.clone().unwrap_or_default();
    let warnings = crate::handlers::field_validation(server, &info, &applied, opts)?;
    if applied["metadata"]["name"]
        .as_str()
        .is_some_and(|n| n != name)
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            applied["metadata"]["name"].as_str().unwrap_or("")
        )));
    }
    applied["metadata"]["name"] = Value::String(name.clone());
    let key = crate::registry::object_key(&info, &r.namespace, &name);
    let now = crate::registry::now_rfc3339();
    let apply_opts = WriteOptions {
        apply: true,
        ..opts.clone()
    };
    if server.cache.get(&key).await.is_none() && sub.is_none() {
        let obj = crate::adapters::server_side_apply(
            None,
            &applied,
            &opts.field_manager,
            opts.force,
            definition,
            &info.api_version(),
            &now,
        )?;
        match crate::handlers::create(server, r, obj, &apply_opts).await {
            Err(e) if e.reason == "AlreadyExists" => {}
            other => {
                return other.map(|w| WriteResult {
                    warnings: [warnings.clone(), w.warnings].concat(),
                    ..w
                });
            }
        }
    }
    let res = crate::handlers::update_with(server, r, sub, &apply_opts, warnings, |old| {
        crate::adapters::server_side_apply(
            Some(old),
            &applied,
            &opts.field_manager,
            opts.force,
            definition,
            &info.api_version(),
            &now,
        )
    })
    .await?;
    Ok(res)
}
