//! Deployment, ReplicaSet, DaemonSet, StatefulSet and ReplicationController validation.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::meta::{
    MetaRules, validate_annotations, validate_label_selector, validate_labels, validate_meta,
};
use super::pod::validate_pod_template_spec;
use super::{Errs, FieldError, Path, decode, go_string_map, non_negative, same};
use crate::names;
use crate::selector::{Selector, go_quote, go_string_slice};

/// Go's `%#v` of a `metav1.LabelSelector`.
pub(crate) fn go_label_selector(selector: &LabelSelector) -> String {
    let labels = go_string_map(selector.match_labels.as_ref());
    let expressions = match &selector.match_expressions {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let items: Vec<String> = list
                .iter()
                .map(|r| {
                    let values = match &r.values {
                        None => "[]string(nil)".to_string(),
                        Some(v) => go_string_slice(v),
                    };
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{values}}}",
                        go_quote(&r.key),
                        go_quote(&r.operator)
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{expressions}}}")
}

/// Go's `%#v` of an `intstr.IntOrString`.
pub(crate) fn go_int_or_string(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(n) => format!("intstr.IntOrString{{Type:0, IntVal:{n}, StrVal:\"\"}}"),
        IntOrString::String(s) => format!(
            "intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}",
            go_quote(s)
        ),
    }
}

fn selector_error(path: &Path, selector: &LabelSelector, detail: &str) -> FieldError {
    let value = serde_json::to_value(selector).unwrap_or(Value::Null);
    FieldError::invalid(path, value, detail).with_value_text(go_label_selector(selector))
}

/// `selector` present in the JSON (a missing selector decodes as an empty one).
fn has_selector(obj: &Value) -> bool {
    obj.pointer("/spec/selector").is_some_and(|v| !v.is_null())
}

/// The selector, template-match and per-kind template rules shared by Deployment and
/// ReplicaSet (upstream's selector checks plus `ValidatePodTemplateSpecForReplicaSet`).
fn validate_selector_and_template(
    selector: Option<&LabelSelector>,
    template: Option<&PodTemplateSpec>,
    kind_word: &str,
    empty_word: &str,
    errs: &mut Errs,
) {
    let spec = Path::new("spec");
    match selector {
        None => errs.push(FieldError::required(spec.child("selector"), "")),
        Some(sel) => {
            errs.extend(validate_label_selector(Some(sel), "spec.selector"));
            if sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && sel
                    .match_expressions
                    .as_deref()
                    .unwrap_or_default()
                    .is_empty()
            {
                errs.push(selector_error(
                    &spec.child("selector"),
                    sel,
                    &format!("empty selector is invalid for {empty_word}"),
                ));
            }
        }
    }
    let parsed = Selector::from_optional_label_selector(selector);
    let Ok(parsed) = parsed else {
        if let Some(sel) = selector {
            errs.push(selector_error(
                &spec.child("selector"),
                sel,
                "invalid label selector",
            ));
        }
        return;
    };
    let tp = spec.child("template");
    let Some(template) = template else {
        errs.push(FieldError::required(&tp, ""));
        return;
    };
    template_checks(&parsed, template, &tp, kind_word, true, errs);
}

/// Selector must match the template labels; template valid; restart policy Always; no
/// active deadline.
fn template_checks(
    selector: &Selector,
    template: &PodTemplateSpec,
    tp: &Path,
    kind_word: &str,
    validate_template: bool,
    errs: &mut Errs,
) {
    let labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
    if !selector.is_empty() && !selector.matches(&labels.cloned().unwrap_or_default()) {
        errs.push(
            FieldError::invalid(
                tp.child("metadata").child("labels"),
                serde_json::to_value(labels).unwrap_or(Value::Null),
                "`selector` does not match template `labels`",
            )
            .with_value_text(go_string_map(labels)),
        );
    }
    if validate_template {
        errs.extend(validate_pod_template_spec(template, tp));
    }
    let spec = template.spec.clone().unwrap_or_default();
    let restart = spec.restart_policy.as_deref().unwrap_or("");
    if restart != "Always" {
        errs.push(FieldError::not_supported(
            tp.child("spec").child("restartPolicy"),
            restart,
            &["Always"],
        ));
    }
    if spec.active_deadline_seconds.is_some() {
        errs.push(FieldError::forbidden(
            tp.child("spec").child("activeDeadlineSeconds"),
            format!("activeDeadlineSeconds in {kind_word} is not Supported"),
        ));
    }
}

fn selector_immutable(new: Option<&LabelSelector>, old: Option<&LabelSelector>, errs: &mut Errs) {
    if !same(&new, &old) {
        let path = Path::new("spec").child("selector");
        match new {
            Some(sel) => errs.push(selector_error(&path, sel, "field is immutable")),
            None => errs.push(FieldError::invalid(
                &path,
                Value::Null,
                "field is immutable",
            )),
        }
    }
}

fn percent_value(v: &IntOrString) -> Option<i64> {
    match v {
        IntOrString::String(s) if names::is_valid_percent(s).is_empty() => {
            s.trim_end_matches('%').parse().ok()
        }
        _ => None,
    }
}

fn int_or_percent_value(v: &IntOrString) -> i64 {
    match v {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(_) => percent_value(v).unwrap_or(0),
    }
}

fn int_or_string_error(path: &Path, v: &IntOrString, detail: &str) -> FieldError {
    let value = serde_json::to_value(v).unwrap_or(Value::Null);
    FieldError::invalid(path, value, detail).with_value_text(go_int_or_string(v))
}

fn positive_int_or_percent(v: &IntOrString, path: &Path, errs: &mut Errs) {
    match v {
        IntOrString::String(s) => {
            for msg in names::is_valid_percent(s) {
                errs.push(int_or_string_error(path, v, &msg));
            }
        }
        IntOrString::Int(n) => non_negative(i64::from(*n), path, errs),
    }
}

fn not_more_than_100_percent(v: &IntOrString, path: &Path, errs: &mut Errs) {
    if percent_value(v).is_some_and(|p| p > 100) {
        errs.push(int_or_string_error(
            path,
            v,
            "must not be greater than 100%",
        ));
    }
}

/// Deployments.
pub(crate) fn validate_deployment(obj: &Value, old: Option<&Value>) -> Result<Errs, Errs> {
    let d: Deployment = decode(obj)?;
    let old_d: Option<Deployment> = old.map(decode).transpose()?;
    let rules = MetaRules::for_kind("apps", "Deployment");
    let mut errs = validate_meta(&d.metadata, old_d.as_ref().map(|o| &o.metadata), rules);
    let spec = d.spec.clone().unwrap_or_default();
    let path = Path::new("spec");
    non_negative(
        i64::from(spec.replicas.unwrap_or(0)),
        &path.child("replicas"),
        &mut errs,
    );
    let selector = has_selector(obj).then_some(&spec.selector);
    validate_selector_and_template(
        selector,
        Some(&spec.template),
        "ReplicaSet",
        "deployment",
        &mut errs,
    );
    let strategy = spec.strategy.clone().unwrap_or_default();
    let sp = path.child("strategy");
    match strategy.type_.as_deref().unwrap_or("") {
        "Recreate" => {
            if strategy.rolling_update.is_some() {
                errs.push(FieldError::forbidden(
                    sp.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match &strategy.rolling_update {
            None => errs.push(FieldError::required(
                sp.child("rollingUpdate"),
                "this should be defaulted and never be nil",
            )),
            Some(ru) => {
                let rp = sp.child("rollingUpdate");
                let zero = IntOrString::Int(0);
                let max_unavailable = ru.max_unavailable.as_ref().unwrap_or(&zero);
                let max_surge = ru.max_surge.as_ref().unwrap_or(&zero);
                positive_int_or_percent(max_unavailable, &rp.child("maxUnavailable"), &mut errs);
                positive_int_or_percent(max_surge, &rp.child("maxSurge"), &mut errs);
                if int_or_percent_value(max_unavailable) == 0
                    && int_or_percent_value(max_surge) == 0
                {
                    errs.push(int_or_string_error(
                        &rp.child("maxUnavailable"),
                        max_unavailable,
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                not_more_than_100_percent(max_unavailable, &rp.child("maxUnavailable"), &mut errs);
            }
        },
        _ => {
            let value = serde_json::to_value(&strategy).unwrap_or(Value::Null);
            errs.push(FieldError::not_supported(
                &sp,
                value,
                &["Recreate", "RollingUpdate"],
            ));
        }
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    non_negative(
        i64::from(min_ready),
        &path.child("minReadySeconds"),
        &mut errs,
    );
    if let Some(limit) = spec.revision_history_limit {
        non_negative(
            i64::from(limit),
            &path.child("revisionHistoryLimit"),
            &mut errs,
        );
    }
    if let Some(deadline) = spec.progress_deadline_seconds {
        non_negative(
            i64::from(deadline),
            &path.child("progressDeadlineSeconds"),
            &mut errs,
        );
        if deadline <= min_ready {
            errs.push(FieldError::invalid(
                path.child("progressDeadlineSeconds"),
                deadline,
                "must be greater than minReadySeconds",
            ));
        }
    }
    if let (Some(old), Some(old_raw)) = (old_d, old) {
        let old_spec = old.spec.unwrap_or_default();
        selector_immutable(
            selector,
            has_selector(old_raw).then_some(&old_spec.selector),
            &mut errs,
        );
    }
    Ok(errs)
}

/// ReplicaSets.
pub(crate) fn validate_replica_set(obj: &Value, old: Option<&Value>) -> Result<Errs, Errs> {
    let rs: ReplicaSet = decode(obj)?;
    let old_rs: Option<ReplicaSet> = old.map(decode).transpose()?;
    let rules = MetaRules::for_kind("apps", "ReplicaSet");
    let mut errs = validate_meta(&rs.metadata, old_rs.as_ref().map(|o| &o.metadata), rules);
    let spec = rs.spec.clone().unwrap_or_default();
    let path = Path::new("spec");
    non_negative(
        i64::from(spec.replicas.unwrap_or(0)),
        &path.child("replicas"),
        &mut errs,
    );
    non_negative(
        i64::from(spec.min_ready_seconds.unwrap_or(0)),
        &path.child("minReadySeconds"),
        &mut errs,
    );
    let selector = has_selector(obj).then_some(&spec.selector);
    let template = spec.template.clone().unwrap_or_default();
    validate_selector_and_template(
        selector,
        Some(&template),
        "ReplicaSet",
        "deployment",
        &mut errs,
    );
    if let (Some(old), Some(old_raw)) = (old_rs, old) {
        let old_spec = old.spec.unwrap_or_default();
        selector_immutable(
            selector,
            has_selector(old_raw).then_some(&old_spec.selector),
            &mut errs,
        );
    }
    Ok(errs)
}

/// DaemonSets.
pub(crate) fn validate_daemon_set(obj: &Value, old: Option<&Value>) -> Result<Errs, Errs> {
    let ds: DaemonSet = decode(obj)?;
    let old_ds: Option<DaemonSet> = old.map(decode).transpose()?;
    let rules = MetaRules::for_kind("apps", "DaemonSet");
    let mut errs = validate_meta(&ds.metadata, old_ds.as_ref().map(|o| &o.metadata), rules);
    let spec = ds.spec.clone().unwrap_or_default();
    let path = Path::new("spec");
    let selector = has_selector(obj).then_some(&spec.selector);
    if let (Some(old), Some(old_raw)) = (&old_ds, old) {
        let old_spec = old.spec.clone().unwrap_or_default();
        selector_immutable(
            selector,
            has_selector(old_raw).then_some(&old_spec.selector),
            &mut errs,
        );
    }
    errs.extend(validate_label_selector(selector, "spec.selector"));
    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    if let Ok(parsed) = Selector::from_optional_label_selector(selector)
        && !parsed.matches(&labels)
    {
        let shown = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref());
        errs.push(
            FieldError::invalid(
                path.child("template").child("metadata").child("labels"),
                serde_json::to_value(shown).unwrap_or(Value::Null),
                "`selector` does not match template `labels`",
            )
            .with_value_text(go_string_map(shown)),
        );
    }
    if let Some(sel) = selector
        && sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel
            .match_expressions
            .as_deref()
            .unwrap_or_default()
            .is_empty()
    {
        errs.push(selector_error(
            &path.child("selector"),
            sel,
            "empty selector is invalid for daemonset",
        ));
    }
    errs.extend(validate_pod_template_spec(
        &spec.template,
        &path.child("template"),
    ));
    template_checks(
        &Selector::everything(),
        &spec.template,
        &path.child("template"),
        "DaemonSet",
        false,
        &mut errs,
    );
    non_negative(
        i64::from(spec.min_ready_seconds.unwrap_or(0)),
        &path.child("minReadySeconds"),
        &mut errs,
    );
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let up = path.child("updateStrategy");
    match strategy.type_.as_deref().unwrap_or("") {
        "OnDelete" => {}
        "RollingUpdate" => match &strategy.rolling_update {
            None => errs.push(FieldError::required(up.child("rollingUpdate"), "")),
            Some(ru) => {
                let rp = up.child("rollingUpdate");
                let zero = IntOrString::Int(0);
                let max_unavailable = ru.max_unavailable.as_ref().unwrap_or(&zero);
                let max_surge = ru.max_surge.as_ref().unwrap_or(&zero);
                positive_int_or_percent(max_unavailable, &rp.child("maxUnavailable"), &mut errs);
                positive_int_or_percent(max_surge, &rp.child("maxSurge"), &mut errs);
                not_more_than_100_percent(max_unavailable, &rp.child("maxUnavailable"), &mut errs);
                not_more_than_100_percent(max_surge, &rp.child("maxSurge"), &mut errs);
                let has_unavailable = int_or_percent_value(max_unavailable) != 0;
                let has_surge = int_or_percent_value(max_surge) != 0;
                if has_unavailable && has_surge {
                    errs.push(int_or_string_error(
                        &rp.child("maxSurge"),
                        max_surge,
                        "may not be set when maxUnavailable is non-zero",
                    ));
                } else if !has_unavailable && !has_surge {
                    errs.push(FieldError::required(
                        rp.child("maxUnavailable"),
                        "cannot be 0 when maxSurge is 0",
                    ));
                }
            }
        },
        _ => {
            let value = serde_json::to_value(&strategy).unwrap_or(Value::Null);
            errs.push(FieldError::not_supported(
                &up,
                value,
                &["RollingUpdate", "OnDelete"],
            ));
        }
    }
    if let Some(limit) = spec.revision_history_limit {
        non_negative(
            i64::from(limit),
            &path.child("revisionHistoryLimit"),
            &mut errs,
        );
    }
    Ok(errs)
}

/// StatefulSets.
pub(crate) fn validate_stateful_set(obj: &Value, old: Option<&Value>) -> Result<Errs, Errs> {
    let sts: StatefulSet = decode(obj)?;
    let old_sts: Option<StatefulSet> = old.map(decode).transpose()?;
    let rules = MetaRules::for_kind("apps", "StatefulSet");
    let mut errs = validate_meta(&sts.metadata, old_sts.as_ref().map(|o| &o.metadata), rules);
    let spec = sts.spec.clone().unwrap_or_default();
    let updating = old_sts.is_some();
    let path = Path::new("spec");
    match spec.pod_management_policy.as_deref().unwrap_or("") {
        "" => errs.push(FieldError::required(path.child("podManagementPolicy"), "")),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(FieldError::invalid(
            path.child("podManagementPolicy"),
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let up = path.child("updateStrategy");
    match strategy.type_.as_deref().unwrap_or("") {
        "" => errs.push(FieldError::required(&up, "")),
        "OnDelete" => {
            if let Some(ru) = &strategy.rolling_update {
                let value = serde_json::to_value(ru).unwrap_or(Value::Null);
                errs.push(FieldError::invalid(
                    up.child("rollingUpdate"),
                    value,
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = &strategy.rolling_update {
                let rp = up.child("rollingUpdate");
                non_negative(
                    i64::from(ru.partition.unwrap_or(0)),
                    &rp.child("partition"),
                    &mut errs,
                );
                if let Some(mu) = &ru.max_unavailable {
                    let mp = rp.child("maxUnavailable");
                    positive_int_or_percent(mu, &mp, &mut errs);
                    if int_or_percent_value(mu) == 0 {
                        errs.push(int_or_string_error(&mp, mu, "cannot be 0"));
                    }
                    not_more_than_100_percent(mu, &mp, &mut errs);
                }
            }
        }
        _ => {
            let value = serde_json::to_value(&strategy).unwrap_or(Value::Null);
            errs.push(FieldError::invalid(
                &up,
                value,
                "must be 'RollingUpdate' or 'OnDelete'",
            ));
        }
    }
    if let Some(policy) = &spec.persistent_volume_claim_retention_policy {
        let pp = path.child("persistentVolumeClaimRetentionPolicy");
        for (value, field) in [
            (&policy.when_deleted, "whenDeleted"),
            (&policy.when_scaled, "whenScaled"),
        ] {
            let v = value.as_deref().unwrap_or("");
            if !matches!(v, "Retain" | "Delete") {
                errs.push(FieldError::not_supported(
                    pp.child(field),
                    v,
                    &["Retain", "Delete"],
                ));
            }
        }
    }
    non_negative(
        i64::from(spec.replicas.unwrap_or(0)),
        &path.child("replicas"),
        &mut errs,
    );
    non_negative(
        i64::from(spec.min_ready_seconds.unwrap_or(0)),
        &path.child("minReadySeconds"),
        &mut errs,
    );
    if let Some(ordinals) = &spec.ordinals {
        non_negative(
            i64::from(ordinals.start.unwrap_or(0)),
            &path.child("ordinals.start"),
            &mut errs,
        );
    }
    let service_name = spec.service_name.as_deref().unwrap_or("");
    if !updating && !service_name.is_empty() {
        for msg in names::is_dns1123_label(service_name) {
            errs.push(FieldError::invalid(
                path.child("serviceName"),
                service_name,
                msg,
            ));
        }
    }
    let selector = has_selector(obj).then_some(&spec.selector);
    match selector {
        None => errs.push(FieldError::required(path.child("selector"), "")),
        Some(sel) => {
            errs.extend(validate_label_selector(Some(sel), "spec.selector"));
            if sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && sel
                    .match_expressions
                    .as_deref()
                    .unwrap_or_default()
                    .is_empty()
            {
                errs.push(selector_error(
                    &path.child("selector"),
                    sel,
                    "empty selector is invalid for statefulset",
                ));
            }
        }
    }
    let tp = path.child("template");
    match Selector::from_optional_label_selector(selector) {
        Err(_) => {
            if let Some(sel) = selector {
                errs.push(selector_error(&path.child("selector"), sel, ""));
            }
        }
        Ok(parsed) => {
            // The controller sets hostname and subdomain and adds the claim volumes,
            // so the template is validated as the pods will look.
            let mut template = spec.template.clone();
            let mut pod_spec = template.spec.clone().unwrap_or_default();
            pod_spec.hostname = None;
            pod_spec.subdomain = None;
            let claims: Vec<String> = spec
                .volume_claim_templates
                .iter()
                .flatten()
                .filter_map(|c| c.metadata.name.clone())
                .collect();
            if !claims.is_empty() {
                let mut volumes: Vec<k8s_openapi::api::core::v1::Volume> = claims
                    .iter()
                    .map(|name| k8s_openapi::api::core::v1::Volume {
                        name: name.clone(),
                        persistent_volume_claim: Some(
                            k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource {
                                claim_name: name.clone(),
                                read_only: None,
                            },
                        ),
                        ..Default::default()
                    })
                    .collect();
                volumes.extend(
                    pod_spec
                        .volumes
                        .take()
                        .into_iter()
                        .flatten()
                        .filter(|v| !claims.contains(&v.name)),
                );
                pod_spec.volumes = Some(volumes);
            }
            template.spec = Some(pod_spec);
            let labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
            if !parsed.is_empty() && !parsed.matches(&labels.cloned().unwrap_or_default()) {
                errs.push(
                    FieldError::invalid(
                        tp.child("metadata").child("labels"),
                        serde_json::to_value(labels).unwrap_or(Value::Null),
                        "`selector` does not match template `labels`",
                    )
                    .with_value_text(go_string_map(labels)),
                );
            }
            errs.extend(validate_pod_template_spec(&template, &tp));
            let meta = template.metadata.clone().unwrap_or_default();
            errs.extend(validate_labels(
                meta.labels.as_ref(),
                tp.child("labels").as_str(),
            ));
            errs.extend(validate_annotations(
                meta.annotations.as_ref(),
                tp.child("annotations").as_str(),
            ));
        }
    }
    let pod_spec = spec.template.spec.clone().unwrap_or_default();
    let restart = pod_spec.restart_policy.as_deref().unwrap_or("");
    if restart != "Always" {
        errs.push(FieldError::not_supported(
            tp.child("spec").child("restartPolicy"),
            restart,
            &["Always"],
        ));
    }
    if pod_spec.active_deadline_seconds.is_some() {
        errs.push(FieldError::forbidden(
            tp.child("spec").child("activeDeadlineSeconds"),
            "activeDeadlineSeconds in StatefulSet is not Supported",
        ));
    }
    if let Some(old) = old_sts {
        let mut new_spec = spec.clone();
        let old_spec = old.spec.unwrap_or_default();
        new_spec.replicas = old_spec.replicas;
        new_spec.template = old_spec.template.clone();
        new_spec.update_strategy = old_spec.update_strategy.clone();
        new_spec.min_ready_seconds = old_spec.min_ready_seconds;
        new_spec.ordinals = old_spec.ordinals.clone();
        new_spec.revision_history_limit = old_spec.revision_history_limit;
        new_spec.persistent_volume_claim_retention_policy =
            old_spec.persistent_volume_claim_retention_policy.clone();
        if !same(&new_spec, &old_spec) {
            errs.push(FieldError::forbidden(
                path,
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
    Ok(errs)
}

/// ReplicationControllers (core group).
pub(crate) fn validate_replication_controller(
    obj: &Value,
    old: Option<&Value>,
) -> Result<Errs, Errs> {
    let rc: ReplicationController = decode(obj)?;
    let old_rc: Option<ReplicationController> = old.map(decode).transpose()?;
    let rules = MetaRules::for_kind("", "ReplicationController");
    let mut errs = validate_meta(&rc.metadata, old_rc.as_ref().map(|o| &o.metadata), rules);
    let spec = rc.spec.clone().unwrap_or_default();
    let path = Path::new("spec");
    non_negative(
        i64::from(spec.min_ready_seconds.unwrap_or(0)),
        &path.child("minReadySeconds"),
        &mut errs,
    );
    let selector = spec.selector.clone().unwrap_or_default();
    if selector.is_empty() {
        errs.push(FieldError::required(path.child("selector"), ""));
    }
    non_negative(
        i64::from(spec.replicas.unwrap_or(0)),
        &path.child("replicas"),
        &mut errs,
    );
    let tp = path.child("template");
    match &spec.template {
        None => errs.push(FieldError::required(&tp, "")),
        Some(template) => template_checks(
            &Selector::from_set(&selector),
            template,
            &tp,
            "ReplicationController",
            true,
            &mut errs,
        ),
    }
    Ok(errs)
}
