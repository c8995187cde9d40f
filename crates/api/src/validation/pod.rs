//! Pod, pod template and pod spec validation (upstream's `ValidatePodCreate`,
//! `ValidatePodUpdate`, `ValidatePodTemplateSpec` and `ValidatePodSpec`).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Affinity, Container, EnvFromSource, EnvVar, HTTPGetAction, Lifecycle, LifecycleHandler,
    NodeSelectorTerm, Pod, PodAffinityTerm, PodSecurityContext, PodSpec, PodTemplate,
    PodTemplateSpec, Probe, ResourceRequirements, SecurityContext, Toleration, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::meta::{
    MetaRules, validate_annotations, validate_label_selector, validate_labels, validate_meta,
};
use super::{Errs, FieldError, Path, decode, diff_paths, non_negative, semantic};
use crate::names::{self, NameRule};
use crate::quantity::Quantity;

const FILE_MODE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Whether the spec belongs to a Pod (stricter) or a template inside another object.
#[derive(Clone, Copy)]
pub(crate) struct PodOpts {
    pub(crate) resource_is_pod: bool,
}

fn s(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

fn push_msgs(errs: &mut Errs, path: &Path, value: &str, msgs: Vec<String>) {
    for msg in msgs {
        errs.push(FieldError::invalid(path, value, msg));
    }
}

/// Pods: create (`old` = `None`) or update.
pub(crate) fn validate_pod(obj: &Value, old: Option<&Value>) -> Result<Errs, Errs> {
    let pod: Pod = decode(obj)?;
    let spec = pod.spec.clone().unwrap_or_default();
    let spec_path = Path::new("spec");
    let Some(old) = old else {
        let mut errs = validate_pod_metadata_and_spec(&pod.metadata, &spec, None);
        if !spec
            .ephemeral_containers
            .as_deref()
            .unwrap_or_default()
            .is_empty()
        {
            errs.push(FieldError::forbidden(
                spec_path.child("ephemeralContainers"),
                "cannot be set on create",
            ));
        }
        if !s(&spec.node_name).is_empty()
            && !spec
                .scheduling_gates
                .as_deref()
                .unwrap_or_default()
                .is_empty()
        {
            errs.push(FieldError::forbidden(
                spec_path.child("nodeName"),
                "cannot be set until all schedulingGates have been cleared",
            ));
        }
        return Ok(errs);
    };
    let old_pod: Pod = decode(old)?;
    let old_spec = old_pod.spec.clone().unwrap_or_default();
    let rules = MetaRules::for_kind("", "Pod");
    let mut errs = validate_meta(&pod.metadata, Some(&old_pod.metadata), rules);
    errs.extend(validate_pod_metadata_and_spec(
        &pod.metadata,
        &spec,
        Some(&old_pod.metadata),
    ));
    // A mirror pod stays a mirror pod and a regular pod never becomes one: the
    // kubelet owns that annotation (upstream's ValidateImmutableAnnotation).
    let mirror_of = |m: &ObjectMeta| {
        m.annotations
            .as_ref()
            .and_then(|a| a.get(MIRROR_ANNOTATION))
            .cloned()
    };
    let (new_mirror, old_mirror) = (mirror_of(&pod.metadata), mirror_of(&old_pod.metadata));
    if new_mirror != old_mirror {
        errs.push(FieldError::invalid(
            format!("metadata.annotations.{MIRROR_ANNOTATION}"),
            new_mirror.unwrap_or_default(),
            "field is immutable",
        ));
    }
    if let Some(stop) = validate_container_updates(
        &spec.containers,
        &old_spec.containers,
        &spec_path.child("containers"),
        &mut errs,
    ) && stop
    {
        return Ok(errs);
    }
    let (new_init, old_init) = (
        spec.init_containers.clone().unwrap_or_default(),
        old_spec.init_containers.clone().unwrap_or_default(),
    );
    if let Some(stop) = validate_container_updates(
        &new_init,
        &old_init,
        &spec_path.child("initContainers"),
        &mut errs,
    ) && stop
    {
        return Ok(errs);
    }
    let deadline_path = spec_path.child("activeDeadlineSeconds");
    match (
        spec.active_deadline_seconds,
        old_spec.active_deadline_seconds,
    ) {
        (Some(new), old_deadline) => {
            if new < 0 || new > i64::from(i32::MAX) {
                errs.push(FieldError::invalid(
                    &deadline_path,
                    new,
                    names::inclusive_range_error(0, i64::from(i32::MAX)),
                ));
                return Ok(errs);
            }
            if old_deadline.is_some_and(|o| o < new) {
                errs.push(FieldError::invalid(
                    &deadline_path,
                    new,
                    "must be less than or equal to previous value",
                ));
                return Ok(errs);
            }
        }
        (None, Some(_)) => errs.push(FieldError::invalid(
            &deadline_path,
            Value::Null,
            "must not update from a positive integer to nil value",
        )),
        (None, None) => {}
    }
    validate_only_added_tolerations(
        spec.tolerations.as_deref().unwrap_or_default(),
        old_spec.tolerations.as_deref().unwrap_or_default(),
        &spec_path.child("tolerations"),
        &mut errs,
    );
    validate_only_deleted_scheduling_gates(
        &spec,
        &old_spec,
        &spec_path.child("schedulingGates"),
        &mut errs,
    );

    let new_json = serde_json::to_value(&spec).unwrap_or(Value::Null);
    let old_json = serde_json::to_value(&old_spec).unwrap_or(Value::Null);
    if semantic(&new_json) == semantic(&old_json) {
        return Ok(errs);
    }
    let mut munged = new_json;
    for (field, old_list) in [
        ("containers", &old_json["containers"]),
        ("initContainers", &old_json["initContainers"]),
    ] {
        if let Some(list) = munged.get_mut(field).and_then(Value::as_array_mut) {
            for (i, c) in list.iter_mut().enumerate() {
                if let Some(obj) = c.as_object_mut() {
                    match old_list.get(i).and_then(|o| o.get("image")) {
                        Some(image) => obj.insert("image".into(), image.clone()),
                        None => obj.remove("image"),
                    };
                }
            }
        }
    }
    if let Some(obj) = munged.as_object_mut() {
        for field in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
            match old_json.get(field) {
                Some(v) => obj.insert(field.into(), v.clone()),
                None => obj.remove(field),
            };
        }
        if old_spec
            .termination_grace_period_seconds
            .is_some_and(|g| g < 0)
            && spec.termination_grace_period_seconds == Some(1)
        {
            obj.insert(
                "terminationGracePeriodSeconds".into(),
                old_json["terminationGracePeriodSeconds"].clone(),
            );
        }
    }
    if semantic(&munged) != semantic(&old_json) {
        let diff = diff_paths(&old_json, &munged).join("\n");
        errs.push(FieldError::forbidden(
            spec_path,
            format!(
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n{diff}"
            ),
        ));
    }
    Ok(errs)
}

/// Returns `Some(true)` when validation must stop (containers added or removed).
fn validate_container_updates(
    new: &[Container],
    old: &[Container],
    path: &Path,
    errs: &mut Errs,
) -> Option<bool> {
    if new.len() != old.len() {
        errs.push(FieldError::forbidden(
            path,
            "pod updates may not add or remove containers",
        ));
        return Some(true);
    }
    for (i, c) in new.iter().enumerate() {
        let image = s(&c.image);
        if image.is_empty() {
            errs.push(FieldError::required(path.index(i).child("image"), ""));
        }
        if image.trim() != image {
            errs.push(FieldError::invalid(
                path.index(i).child("image"),
                image,
                "must not have leading or trailing whitespace",
            ));
        }
    }
    Some(false)
}

fn validate_only_added_tolerations(
    new: &[Toleration],
    old: &[Toleration],
    path: &Path,
    errs: &mut Errs,
) {
    for o in old {
        let found = new.iter().any(|n| {
            let mut clone = o.clone();
            clone.toleration_seconds = n.toleration_seconds;
            &clone == n
        });
        if !found {
            errs.push(FieldError::forbidden(
                path,
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            return;
        }
    }
    validate_tolerations(new, path, errs);
}

fn validate_only_deleted_scheduling_gates(
    new: &PodSpec,
    old: &PodSpec,
    path: &Path,
    errs: &mut Errs,
) {
    let old_names: BTreeSet<&str> = old
        .scheduling_gates
        .iter()
        .flatten()
        .map(|g| g.name.as_str())
        .collect();
    for (i, gate) in new.scheduling_gates.iter().flatten().enumerate() {
        if !old_names.contains(gate.name.as_str()) {
            errs.push(FieldError::forbidden(
                path.index(i).child("name"),
                format!(
                    "only deletion is allowed, but found new scheduling gate '{}'",
                    gate.name
                ),
            ));
        }
    }
}

fn validate_pod_metadata_and_spec(
    meta: &ObjectMeta,
    spec: &PodSpec,
    _old: Option<&ObjectMeta>,
) -> Errs {
    let meta_path = Path::new("metadata");
    let spec_path = Path::new("spec");
    let mut errs = validate_meta(meta, None, MetaRules::for_kind("", "Pod"));
    validate_pod_specific_annotations(
        meta.annotations.as_ref(),
        spec,
        &meta_path.child("annotations"),
        &mut errs,
    );
    errs.extend(validate_pod_spec(
        spec,
        meta.name.as_deref(),
        &spec_path,
        PodOpts {
            resource_is_pod: true,
        },
    ));
    if s(&spec.service_account_name).is_empty() {
        for (vi, volume) in spec.volumes.iter().flatten().enumerate() {
            for (si, source) in volume
                .projected
                .iter()
                .flat_map(|p| p.sources.iter().flatten())
                .enumerate()
            {
                if source.service_account_token.is_some() {
                    errs.push(FieldError::forbidden(
                        spec_path
                            .child("volumes")
                            .index(vi)
                            .child("projected")
                            .child("sources")
                            .index(si)
                            .child("serviceAccountToken"),
                        "must not be specified when serviceAccountName is not set",
                    ));
                }
            }
        }
    }
    for (field, list) in [
        ("containers", &spec.containers),
        (
            "initContainers",
            &spec.init_containers.clone().unwrap_or_default(),
        ),
    ] {
        for (i, c) in list.iter().enumerate() {
            let image = s(&c.image);
            if image.trim() != image {
                errs.push(FieldError::invalid(
                    spec_path.child(field).index(i).child("image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    errs
}

fn validate_pod_specific_annotations(
    annotations: Option<&BTreeMap<String, String>>,
    spec: &PodSpec,
    path: &Path,
    errs: &mut Errs,
) {
    let Some(annotations) = annotations else {
        return;
    };
    if let Some(value) = annotations.get(MIRROR_ANNOTATION)
        && s(&spec.node_name).is_empty()
    {
        errs.push(FieldError::invalid(
            path.key(MIRROR_ANNOTATION),
            value.as_str(),
            "must set spec.nodeName if mirror pod annotation is set",
        ));
    }
    if let Some(cost) = annotations.get(DELETION_COST_ANNOTATION)
        && cost.parse::<i32>().is_err()
    {
        errs.push(FieldError::invalid(
            path.key(DELETION_COST_ANNOTATION),
            cost.as_str(),
            "must be a 32bit integer",
        ));
    }
}

/// PodTemplates (the core kind).
pub(crate) fn validate_pod_template(obj: &Value, old: Option<&Value>) -> Result<Errs, Errs> {
    let template: PodTemplate = decode(obj)?;
    let old_meta = match old {
        Some(o) => Some(decode::<PodTemplate>(o)?.metadata),
        None => None,
    };
    let mut errs = validate_meta(
        &template.metadata,
        old_meta.as_ref(),
        MetaRules::for_kind("", "PodTemplate"),
    );
    errs.extend(validate_pod_template_spec(
        &template.template.unwrap_or_default(),
        &Path::new("template"),
    ));
    Ok(errs)
}

/// A pod template inside another object (upstream's `ValidatePodTemplateSpec`).
pub(crate) fn validate_pod_template_spec(template: &PodTemplateSpec, path: &Path) -> Errs {
    let mut errs = Vec::new();
    let meta = template.metadata.clone().unwrap_or_default();
    let spec = template.spec.clone().unwrap_or_default();
    errs.extend(validate_labels(
        meta.labels.as_ref(),
        path.child("labels").as_str(),
    ));
    errs.extend(validate_annotations(
        meta.annotations.as_ref(),
        path.child("annotations").as_str(),
    ));
    validate_pod_specific_annotations(
        meta.annotations.as_ref(),
        &spec,
        &path.child("annotations"),
        &mut errs,
    );
    errs.extend(validate_pod_spec(
        &spec,
        None,
        &path.child("spec"),
        PodOpts {
            resource_is_pod: false,
        },
    ));
    if !spec
        .ephemeral_containers
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        errs.push(FieldError::forbidden(
            path.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    errs
}

/// Upstream's `ValidatePodSpec`. `pod_name` is set for real pods (generic ephemeral
/// volumes derive PVC names from it).
pub(crate) fn validate_pod_spec(
    spec: &PodSpec,
    pod_name: Option<&str>,
    path: &Path,
    opts: PodOpts,
) -> Errs {
    let mut errs = Vec::new();
    if spec.termination_grace_period_seconds.is_none() {
        errs.push(FieldError::required(
            path.child("terminationGracePeriodSeconds"),
            "",
        ));
    }
    let grace = spec.termination_grace_period_seconds;
    let host_users = spec.host_users.unwrap_or(true);
    let volumes = validate_volumes(spec, pod_name, &path.child("volumes"), opts, &mut errs);
    let claim_names = validate_pod_resource_claims(spec, &path.child("resourceClaims"), &mut errs);
    let restart_policy = s(&spec.restart_policy);
    validate_containers(
        spec,
        &volumes,
        &claim_names,
        grace,
        &path.child("containers"),
        restart_policy,
        host_users,
        &mut errs,
    );
    validate_init_containers(
        spec,
        &volumes,
        &claim_names,
        grace,
        &path.child("initContainers"),
        restart_policy,
        host_users,
        &mut errs,
    );
    validate_ephemeral_containers(
        spec,
        &volumes,
        &claim_names,
        &path.child("ephemeralContainers"),
        restart_policy,
        host_users,
        &mut errs,
    );
    validate_host_network_deps(spec, path, opts, &mut errs);
    validate_enum(
        restart_policy,
        &path.child("restartPolicy"),
        &["Always", "OnFailure", "Never"],
        &mut errs,
    );
    validate_enum(
        s(&spec.dns_policy),
        &path.child("dnsPolicy"),
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        &mut errs,
    );
    errs.extend(validate_labels(
        spec.node_selector.as_ref(),
        path.child("nodeSelector").as_str(),
    ));
    validate_pod_security_context(spec, &path.child("securityContext"), &mut errs);
    if let Some(affinity) = &spec.affinity {
        validate_affinity(affinity, &path.child("affinity"), &mut errs);
    }
    validate_dns_config(spec, &path.child("dnsConfig"), &mut errs);
    for (i, gate) in spec.readiness_gates.iter().flatten().enumerate() {
        let p = path.child("readinessGates").index(i).child("conditionType");
        push_msgs(
            &mut errs,
            &p,
            &gate.condition_type,
            names::is_qualified_name(&gate.condition_type),
        );
    }
    let mut seen_gates = BTreeSet::new();
    for (i, gate) in spec.scheduling_gates.iter().flatten().enumerate() {
        let p = path.child("schedulingGates").index(i);
        push_msgs(
            &mut errs,
            &p,
            &gate.name,
            names::is_qualified_name(&gate.name),
        );
        if !seen_gates.insert(gate.name.as_str()) {
            errs.push(FieldError::duplicate(&p, gate.name.as_str()));
        }
    }
    validate_topology_spread(spec, &path.child("topologySpreadConstraints"), &mut errs);
    if !host_users {
        for (flag, field) in [
            (spec.host_network, "hostNetwork"),
            (spec.host_pid, "HostPID"),
            (spec.host_ipc, "HostIPC"),
        ] {
            if flag == Some(true) {
                errs.push(FieldError::forbidden(
                    path.child(field),
                    "when `pod.Spec.HostUsers` is false",
                ));
            }
        }
    }
    let sa = s(&spec.service_account_name);
    if !sa.is_empty() {
        push_msgs(
            &mut errs,
            &path.child("serviceAccountName"),
            sa,
            NameRule::Dns1123Subdomain.validate(sa, false),
        );
    }
    let node = s(&spec.node_name);
    if !node.is_empty() {
        push_msgs(
            &mut errs,
            &path.child("nodeName"),
            node,
            NameRule::Dns1123Subdomain.validate(node, false),
        );
    }
    if let Some(deadline) = spec.active_deadline_seconds
        && !(1..=i64::from(i32::MAX)).contains(&deadline)
    {
        errs.push(FieldError::invalid(
            path.child("activeDeadlineSeconds"),
            deadline,
            names::inclusive_range_error(1, i64::from(i32::MAX)),
        ));
    }
    for (field, value) in [
        ("hostname", s(&spec.hostname)),
        ("subdomain", s(&spec.subdomain)),
    ] {
        if !value.is_empty() {
            push_msgs(
                &mut errs,
                &path.child(field),
                value,
                names::is_dns1123_label(value),
            );
        }
    }
    validate_tolerations(
        spec.tolerations.as_deref().unwrap_or_default(),
        &path.child("tolerations"),
        &mut errs,
    );
    for (i, alias) in spec.host_aliases.iter().flatten().enumerate() {
        let p = path.child("hostAliases").index(i);
        push_msgs(
            &mut errs,
            &p.child("ip"),
            &alias.ip,
            names::is_valid_ip(&alias.ip),
        );
        for (j, host) in alias.hostnames.iter().flatten().enumerate() {
            push_msgs(
                &mut errs,
                &p.child("hostnames").index(j),
                host,
                names::is_dns1123_subdomain(host),
            );
        }
    }
    for (field, value) in [
        ("priorityClassName", s(&spec.priority_class_name)),
        ("runtimeClassName", s(&spec.runtime_class_name)),
    ] {
        if !value.is_empty() {
            push_msgs(
                &mut errs,
                &path.child(field),
                value,
                names::is_dns1123_subdomain(value),
            );
        }
    }
    if let Some(policy) = &spec.preemption_policy {
        validate_enum(
            policy,
            &path.child("preemptionPolicy"),
            &["PreemptLowerPriority", "Never"],
            &mut errs,
        );
    }
    if let Some(overhead) = &spec.overhead {
        let reqs = ResourceRequirements {
            limits: Some(overhead.clone()),
            ..Default::default()
        };
        validate_resource_requirements(&reqs, &BTreeSet::new(), &path.child("overhead"), &mut errs);
    }
    if let Some(os) = &spec.os {
        if os.name.is_empty() {
            errs.push(FieldError::required(
                path.child("os").child("name"),
                "cannot be empty",
            ));
        } else if !matches!(os.name.as_str(), "linux" | "windows") {
            errs.push(FieldError::not_supported(
                path.child("os"),
                os.name.as_str(),
                &["linux", "windows"],
            ));
        }
    }
    errs
}

/// Required when empty, NotSupported when not one of `valid`.
fn validate_enum(value: &str, path: &Path, valid: &[&str], errs: &mut Errs) {
    if value.is_empty() {
        errs.push(FieldError::required(path, ""));
    } else if !valid.contains(&value) {
        errs.push(FieldError::not_supported(path, value, valid));
    }
}

/// The volume source keys in the order upstream checks them, with the name upstream
/// uses in its "more than 1 volume type" error.
const VOLUME_SOURCES: &[(&str, &str)] = &[
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

fn jstr<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Volume name → source JSON, for the volumes that validated.
type VolumeMap = BTreeMap<String, Value>;

fn validate_volumes(
    spec: &PodSpec,
    pod_name: Option<&str>,
    path: &Path,
    opts: PodOpts,
    errs: &mut Errs,
) -> VolumeMap {
    let mut map = VolumeMap::new();
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    let created_pvcs: BTreeSet<String> = match pod_name {
        Some(pod) if !pod.is_empty() => volumes
            .iter()
            .filter(|v| v.ephemeral.is_some())
            .map(|v| format!("{pod}-{}", v.name))
            .collect(),
        _ => BTreeSet::new(),
    };
    let mut names_seen = BTreeSet::new();
    for (i, volume) in volumes.iter().enumerate() {
        let idx = path.index(i);
        let name_path = idx.child("name");
        let json = serde_json::to_value(volume).unwrap_or(Value::Null);
        let mut el = validate_volume_source(&json, &volume.name, &idx, pod_name, opts);
        if volume.name.is_empty() {
            el.push(FieldError::required(&name_path, ""));
        } else {
            push_msgs(
                &mut el,
                &name_path,
                &volume.name,
                names::is_dns1123_label(&volume.name),
            );
        }
        if names_seen.contains(&volume.name) {
            el.push(FieldError::duplicate(&name_path, volume.name.as_str()));
        }
        if el.is_empty() {
            names_seen.insert(volume.name.clone());
            map.insert(volume.name.clone(), json);
        } else {
            errs.extend(el);
        }
        if let Some(pvc) = &volume.persistent_volume_claim
            && created_pvcs.contains(&pvc.claim_name)
        {
            errs.push(FieldError::invalid(
                idx.child("persistentVolumeClaim").child("claimName"),
                pvc.claim_name.as_str(),
                "must not reference a PVC that gets created for an ephemeral volume",
            ));
        }
    }
    map
}

fn validate_volume_source(
    vol: &Value,
    vol_name: &str,
    path: &Path,
    pod_name: Option<&str>,
    opts: PodOpts,
) -> Errs {
    let mut errs = Vec::new();
    let mut count = 0;
    for (key, error_name) in VOLUME_SOURCES {
        let Some(src) = vol.get(*key) else {
            continue;
        };
        if count > 0 {
            errs.push(FieldError::forbidden(
                path.child(error_name),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        count += 1;
        let p = path.child(key);
        let required = |field: &str, errs: &mut Errs| {
            if jstr(src, field).is_empty() {
                errs.push(FieldError::required(p.child(field), ""));
            }
        };
        match *key {
            "emptyDir" => {
                if let Some(limit) = src.get("sizeLimit")
                    && Quantity::from_json(limit).is_ok_and(|q| q.signum() < 0)
                {
                    errs.push(FieldError::forbidden(
                        p.child("sizeLimit"),
                        "SizeLimit field must be a valid resource quantity",
                    ));
                }
            }
            "hostPath" => {
                let host_path = jstr(src, "path");
                if host_path.is_empty() {
                    errs.push(FieldError::required(p.child("path"), ""));
                } else {
                    no_backsteps(host_path, &p.child("path"), &mut errs);
                    let kind = jstr(src, "type");
                    let valid = [
                        "",
                        "BlockDevice",
                        "CharDevice",
                        "Directory",
                        "DirectoryOrCreate",
                        "File",
                        "FileOrCreate",
                        "Socket",
                    ];
                    if !valid.contains(&kind) {
                        errs.push(FieldError::not_supported(p.child("type"), kind, &valid));
                    }
                }
            }
            "gitRepo" => {
                required("repository", &mut errs);
                local_descending_path(jstr(src, "directory"), &p.child("directory"), &mut errs);
            }
            "gcePersistentDisk" => {
                let p = path.child("persistentDisk");
                if jstr(src, "pdName").is_empty() {
                    errs.push(FieldError::required(p.child("pdName"), ""));
                }
                partition(src, &p, &mut errs);
            }
            "awsElasticBlockStore" => {
                required("volumeID", &mut errs);
                partition(src, &p, &mut errs);
            }
            "secret" => {
                required("secretName", &mut errs);
                default_mode(src, &p, &mut errs);
                key_to_paths(src, &p.child("items"), &mut errs);
            }
            "configMap" => {
                required("name", &mut errs);
                default_mode(src, &p, &mut errs);
                key_to_paths(src, &p.child("items"), &mut errs);
            }
            "nfs" => {
                required("server", &mut errs);
                let nfs_path = jstr(src, "path");
                if nfs_path.is_empty() {
                    errs.push(FieldError::required(p.child("path"), ""));
                }
                if !nfs_path.starts_with('/') {
                    errs.push(FieldError::invalid(
                        p.child("path"),
                        nfs_path,
                        "must be an absolute path",
                    ));
                }
            }
            "iscsi" => {
                required("targetPortal", &mut errs);
                required("iqn", &mut errs);
                let lun = src.get("lun").and_then(Value::as_i64).unwrap_or(0);
                if !(0..=255).contains(&lun) {
                    errs.push(FieldError::invalid(
                        p.child("lun"),
                        lun,
                        names::inclusive_range_error(0, 255),
                    ));
                }
            }
            "glusterfs" => {
                required("endpoints", &mut errs);
                required("path", &mut errs);
            }
            "persistentVolumeClaim" => required("claimName", &mut errs),
            "rbd" => {
                if src
                    .get("monitors")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
                {
                    errs.push(FieldError::required(p.child("monitors"), ""));
                }
                required("image", &mut errs);
            }
            "cinder" | "portworxVolume" => required("volumeID", &mut errs),
            "cephfs" => {
                let p = path.child("cephfs");
                if src
                    .get("monitors")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
                {
                    errs.push(FieldError::required(p.child("monitors"), ""));
                }
            }
            "downwardAPI" => {
                default_mode(src, &p, &mut errs);
                for item in src
                    .get("items")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    downward_api_file(item, &p, &mut errs);
                }
            }
            "flexVolume" => required("driver", &mut errs),
            "azureFile" => {
                required("secretName", &mut errs);
                required("shareName", &mut errs);
            }
            "vsphereVolume" => required("volumePath", &mut errs),
            "photonPersistentDisk" => required("pdID", &mut errs),
            "azureDisk" => {
                required("diskName", &mut errs);
                required("diskURI", &mut errs);
            }
            "projected" => projected(src, &p, &mut errs),
            "csi" => {
                let driver = jstr(src, "driver");
                if driver.is_empty() {
                    errs.push(FieldError::required(p.child("driver"), ""));
                } else {
                    push_msgs(
                        &mut errs,
                        &p.child("driver"),
                        driver,
                        names::is_dns1123_subdomain(&driver.to_lowercase()),
                    );
                }
            }
            "ephemeral" => {
                if src.get("volumeClaimTemplate").is_none() {
                    errs.push(FieldError::required(p.child("volumeClaimTemplate"), ""));
                }
                if let Some(pod) = pod_name.filter(|p| !p.is_empty())
                    && !vol_name.is_empty()
                {
                    let pvc_name = format!("{pod}-{vol_name}");
                    for msg in names::is_dns1123_subdomain(&pvc_name) {
                        errs.push(FieldError::invalid(
                            path.child("name"),
                            vol_name,
                            format!("PVC name {pvc_name:?}: {msg}"),
                        ));
                    }
                }
            }
            "image" => {
                if opts.resource_is_pod && jstr(src, "reference").is_empty() {
                    errs.push(FieldError::required(p.child("reference"), ""));
                }
                let pull = jstr(src, "pullPolicy");
                if !pull.is_empty() && !matches!(pull, "Always" | "IfNotPresent" | "Never") {
                    errs.push(FieldError::not_supported(
                        p.child("pullPolicy"),
                        pull,
                        &["Always", "IfNotPresent", "Never"],
                    ));
                }
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(FieldError::required(path, "must specify a volume type"));
    }
    errs
}

fn partition(src: &Value, path: &Path, errs: &mut Errs) {
    let partition = src.get("partition").and_then(Value::as_i64).unwrap_or(0);
    if !(0..=255).contains(&partition) {
        errs.push(FieldError::invalid(
            path.child("partition"),
            partition,
            names::inclusive_range_error(1, 255),
        ));
    }
}

fn file_mode(src: &Value, field: &str, path: &Path, errs: &mut Errs) {
    if let Some(mode) = src.get(field).and_then(Value::as_i64)
        && !(0..=0o777).contains(&mode)
    {
        errs.push(FieldError::invalid(path.child(field), mode, FILE_MODE_MSG));
    }
}

fn default_mode(src: &Value, path: &Path, errs: &mut Errs) {
    file_mode(src, "defaultMode", path, errs);
}

fn key_to_paths(src: &Value, path: &Path, errs: &mut Errs) {
    for (i, item) in src
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        key_to_path(item, &path.index(i), errs);
    }
}

fn key_to_path(item: &Value, path: &Path, errs: &mut Errs) {
    if jstr(item, "key").is_empty() {
        errs.push(FieldError::required(path.child("key"), ""));
    }
    let target = jstr(item, "path");
    if target.is_empty() {
        errs.push(FieldError::required(path.child("path"), ""));
    }
    local_non_reserved_path(target, &path.child("path"), errs);
    file_mode(item, "mode", path, errs);
}

fn no_backsteps(target: &str, path: &Path, errs: &mut Errs) {
    if target
        .replace('\\', "/")
        .split('/')
        .any(|part| part == "..")
    {
        errs.push(FieldError::invalid(path, target, "must not contain '..'"));
    }
}

fn local_descending_path(target: &str, path: &Path, errs: &mut Errs) {
    if target.starts_with('/') {
        errs.push(FieldError::invalid(path, target, "must be a relative path"));
    }
    no_backsteps(target, path, errs);
}

fn local_non_reserved_path(target: &str, path: &Path, errs: &mut Errs) {
    local_descending_path(target, path, errs);
    if target.starts_with("..") && !target.starts_with("../") {
        errs.push(FieldError::invalid(
            path,
            target,
            "must not start with '..'",
        ));
    }
}

const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

fn downward_api_file(item: &Value, path: &Path, errs: &mut Errs) {
    let target = jstr(item, "path");
    if target.is_empty() {
        errs.push(FieldError::required(path.child("path"), ""));
    }
    local_non_reserved_path(target, &path.child("path"), errs);
    match (item.get("fieldRef"), item.get("resourceFieldRef")) {
        (Some(field_ref), resource_ref) => {
            object_field_selector(
                jstr(field_ref, "apiVersion"),
                jstr(field_ref, "fieldPath"),
                VOLUME_FIELD_PATHS,
                &path.child("fieldRef"),
                errs,
            );
            if resource_ref.is_some() {
                errs.push(FieldError::invalid(
                    path,
                    "resource",
                    "fieldRef and resourceFieldRef can not be specified simultaneously",
                ));
            }
        }
        (None, Some(resource_ref)) => resource_field_selector(
            jstr(resource_ref, "containerName"),
            jstr(resource_ref, "resource"),
            resource_ref.get("divisor"),
            &path.child("resourceFieldRef"),
            true,
            errs,
        ),
        (None, None) => errs.push(FieldError::required(
            path,
            "one of fieldRef and resourceFieldRef is required",
        )),
    }
    file_mode(item, "mode", path, errs);
}

fn projected(src: &Value, path: &Path, errs: &mut Errs) {
    default_mode(src, path, errs);
    let mut all_paths = BTreeSet::new();
    for (i, source) in src
        .get("sources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let sp = path.child("sources").index(i);
        let mut count = 0;
        for kind in [
            "secret",
            "configMap",
            "downwardAPI",
            "serviceAccountToken",
            "clusterTrustBundle",
        ] {
            let Some(item) = source.get(kind) else {
                continue;
            };
            count += 1;
            let p = sp.child(kind);
            match kind {
                "secret" | "configMap" => {
                    if jstr(item, "name").is_empty() {
                        errs.push(FieldError::required(p.child("name"), ""));
                    }
                    for (j, kp) in item
                        .get("items")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .enumerate()
                    {
                        key_to_path(kp, &p.child("items").index(j), errs);
                        let target = jstr(kp, "path");
                        if !target.is_empty() && !all_paths.insert(target.to_string()) {
                            errs.push(FieldError::invalid(
                                path,
                                jstr(item, "name"),
                                "conflicting duplicate paths",
                            ));
                        }
                    }
                }
                "downwardAPI" => {
                    for file in item
                        .get("items")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        downward_api_file(file, &p, errs);
                        let target = jstr(file, "path");
                        if !target.is_empty() && !all_paths.insert(target.to_string()) {
                            errs.push(FieldError::invalid(
                                path,
                                target,
                                "conflicting duplicate paths",
                            ));
                        }
                    }
                }
                "serviceAccountToken" => {
                    if let Some(exp) = item.get("expirationSeconds").and_then(Value::as_i64) {
                        if exp < 600 {
                            errs.push(FieldError::invalid(
                                p.child("expirationSeconds"),
                                exp,
                                "may not specify a duration less than 10 minutes",
                            ));
                        }
                        if exp > 1 << 32 {
                            errs.push(FieldError::invalid(
                                p.child("expirationSeconds"),
                                exp,
                                "may not specify a duration larger than 2^32 seconds",
                            ));
                        }
                    }
                    let target = jstr(item, "path");
                    if target.is_empty() {
                        errs.push(FieldError::required(p.child("path"), ""));
                    } else if !all_paths.insert(target.to_string()) {
                        errs.push(FieldError::invalid(
                            path,
                            target,
                            "conflicting duplicate paths",
                        ));
                    }
                }
                _ => {}
            }
        }
        if count > 1 {
            errs.push(FieldError::forbidden(
                sp,
                "may not specify more than 1 volume type per source",
            ));
        }
    }
}

/// Splits `metadata.labels['key']` into path and subscript.
fn split_subscript(field_path: &str) -> Option<(&str, &str)> {
    let inner = field_path.strip_suffix("']")?;
    let (path, subscript) = inner.split_once("['")?;
    if path.is_empty() {
        None
    } else {
        Some((path, subscript))
    }
}

fn object_field_selector(
    api_version: &str,
    field_path: &str,
    valid: &[&str],
    path: &Path,
    errs: &mut Errs,
) {
    if api_version.is_empty() {
        errs.push(FieldError::required(path.child("apiVersion"), ""));
        return;
    }
    if field_path.is_empty() {
        errs.push(FieldError::required(path.child("fieldPath"), ""));
        return;
    }
    let convert_err = if api_version != "v1" {
        Some(format!("unsupported pod version: {api_version}"))
    } else if let Some((p, _)) = split_subscript(field_path) {
        (!matches!(p, "metadata.annotations" | "metadata.labels"))
            .then(|| format!("field label does not support subscript: {field_path}"))
    } else {
        let supported = [
            "metadata.annotations",
            "metadata.labels",
            "metadata.name",
            "metadata.namespace",
            "metadata.uid",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.serviceAccountName",
            "spec.schedulerName",
            "status.phase",
            "status.hostIP",
            "status.hostIPs",
            "status.podIP",
            "status.podIPs",
            "spec.host",
        ];
        (!supported.contains(&field_path))
            .then(|| format!("field label not supported: {field_path}"))
    };
    if let Some(err) = convert_err {
        errs.push(FieldError::invalid(
            path.child("fieldPath"),
            field_path,
            format!("error converting fieldPath: {err}"),
        ));
        return;
    }
    let internal = if field_path == "spec.host" {
        "spec.nodeName"
    } else {
        field_path
    };
    if let Some((p, subscript)) = split_subscript(internal) {
        match p {
            "metadata.annotations" => {
                let lower = subscript.to_lowercase();
                push_msgs(errs, path, &lower, names::is_qualified_name(&lower));
            }
            _ => push_msgs(errs, path, subscript, names::is_qualified_name(subscript)),
        }
    } else if !valid.contains(&internal) {
        errs.push(FieldError::not_supported(
            path.child("fieldPath"),
            internal,
            valid,
        ));
    }
}

fn resource_field_selector(
    container: &str,
    resource: &str,
    divisor: Option<&Value>,
    path: &Path,
    volume: bool,
    errs: &mut Errs,
) {
    if volume && container.is_empty() {
        errs.push(FieldError::required(path.child("containerName"), ""));
    } else if resource.is_empty() {
        errs.push(FieldError::required(path.child("resource"), ""));
    } else if !RESOURCE_FIELD_PATHS.contains(&resource)
        && !resource.starts_with("requests.hugepages-")
        && !resource.starts_with("limits.hugepages-")
    {
        errs.push(FieldError::not_supported(
            path.child("resource"),
            resource,
            RESOURCE_FIELD_PATHS,
        ));
    }
    let Some(divisor) = divisor
        .and_then(|d| Quantity::from_json(d).ok())
        .filter(|d| !d.is_zero())
    else {
        return;
    };
    let text = divisor.to_string();
    let (ok, what) = match resource {
        "limits.cpu" | "requests.cpu" => (
            ["1m", "1"].contains(&text.as_str()),
            "only divisor's values 1m and 1 are supported with the cpu resource",
        ),
        "limits.memory" | "requests.memory" => (
            MEMORY_DIVISORS.contains(&text.as_str()),
            "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the memory resource",
        ),
        "limits.ephemeral-storage" | "requests.ephemeral-storage" => (
            MEMORY_DIVISORS.contains(&text.as_str()),
            "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the local ephemeral storage resource",
        ),
        _ => (true, ""),
    };
    if !ok {
        errs.push(FieldError::invalid(path.child("divisor"), resource, what));
    }
}

const MEMORY_DIVISORS: &[&str] = &[
    "1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei",
];

fn validate_pod_resource_claims(spec: &PodSpec, path: &Path, errs: &mut Errs) -> BTreeSet<String> {
    let mut names_seen = BTreeSet::new();
    for (i, claim) in spec.resource_claims.iter().flatten().enumerate() {
        let p = path.index(i);
        if claim.name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else if names_seen.contains(&claim.name) {
            errs.push(FieldError::duplicate(p.child("name"), claim.name.as_str()));
        } else {
            push_msgs(
                errs,
                &p.child("name"),
                &claim.name,
                names::is_dns1123_label(&claim.name),
            );
            names_seen.insert(claim.name.clone());
        }
        let value = serde_json::to_value(claim).unwrap_or(Value::Null);
        match (&claim.resource_claim_name, &claim.resource_claim_template_name) {
            (Some(_), Some(_)) => errs.push(FieldError::invalid(
                &p,
                value,
                "at most one of `resourceClaimName` or `resourceClaimTemplateName` may be specified",
            )),
            (None, None) => errs.push(FieldError::invalid(
                &p,
                value,
                "must specify one of: `resourceClaimName`, `resourceClaimTemplateName`",
            )),
            _ => {}
        }
    }
    names_seen
}

#[allow(clippy::too_many_arguments)]
fn validate_containers(
    spec: &PodSpec,
    volumes: &VolumeMap,
    claims: &BTreeSet<String>,
    grace: Option<i64>,
    path: &Path,
    restart_policy: &str,
    host_users: bool,
    errs: &mut Errs,
) {
    if spec.containers.is_empty() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    let mut names_seen = BTreeSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let p = path.index(i);
        validate_container_common(c, volumes, claims, &p, restart_policy, host_users, errs);
        if !names_seen.insert(c.name.as_str()) {
            errs.push(FieldError::duplicate(p.child("name"), c.name.as_str()));
        }
        if let Some(lifecycle) = &c.lifecycle {
            validate_lifecycle(lifecycle, grace, &p.child("lifecycle"), errs);
        }
        validate_probes(c, grace, &p, errs);
        if c.restart_policy.is_some() {
            errs.push(FieldError::forbidden(
                p.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    check_host_port_conflicts(&spec.containers, path, errs);
}

fn validate_probes(c: &Container, grace: Option<i64>, p: &Path, errs: &mut Errs) {
    for (probe, field) in [
        (&c.liveness_probe, "livenessProbe"),
        (&c.startup_probe, "startupProbe"),
    ] {
        if let Some(probe) = probe {
            let pp = p.child(field);
            validate_probe(probe, grace, &pp, errs);
            let threshold = probe.success_threshold.unwrap_or(0);
            if threshold != 1 {
                errs.push(FieldError::invalid(
                    pp.child("successThreshold"),
                    threshold,
                    "must be 1",
                ));
            }
        }
    }
    if let Some(probe) = &c.readiness_probe {
        let pp = p.child("readinessProbe");
        validate_probe(probe, grace, &pp, errs);
        if let Some(g) = probe.termination_grace_period_seconds {
            errs.push(FieldError::invalid(
                pp.child("terminationGracePeriodSeconds"),
                g,
                "must not be set for readinessProbes",
            ));
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn validate_init_containers(
    spec: &PodSpec,
    volumes: &VolumeMap,
    claims: &BTreeSet<String>,
    grace: Option<i64>,
    path: &Path,
    restart_policy: &str,
    host_users: bool,
    errs: &mut Errs,
) {
    let mut names_seen: BTreeSet<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let p = path.index(i);
        validate_container_common(c, volumes, claims, &p, restart_policy, host_users, errs);
        let mut restart_always = false;
        if let Some(policy) = &c.restart_policy {
            if policy != "Always" {
                errs.push(FieldError::not_supported(
                    p.child("restartPolicy"),
                    policy.as_str(),
                    &["Always"],
                ));
            }
            restart_always = policy == "Always";
        }
        if names_seen.contains(c.name.as_str()) {
            errs.push(FieldError::duplicate(p.child("name"), c.name.as_str()));
        } else if !c.name.is_empty() {
            names_seen.insert(c.name.as_str());
        }
        check_host_port_conflicts(std::slice::from_ref(c), path, errs);
        if restart_always {
            if let Some(lifecycle) = &c.lifecycle {
                validate_lifecycle(lifecycle, grace, &p.child("lifecycle"), errs);
            }
            validate_probes(c, grace, &p, errs);
        } else {
            for (set, field) in [
                (c.lifecycle.is_some(), "lifecycle"),
                (c.liveness_probe.is_some(), "livenessProbe"),
                (c.readiness_probe.is_some(), "readinessProbe"),
                (c.startup_probe.is_some(), "startupProbe"),
            ] {
                if set {
                    errs.push(FieldError::forbidden(
                        p.child(field),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
    }
}

fn validate_ephemeral_containers(
    spec: &PodSpec,
    volumes: &VolumeMap,
    claims: &BTreeSet<String>,
    path: &Path,
    restart_policy: &str,
    host_users: bool,
    errs: &mut Errs,
) {
    let ephemeral = spec.ephemeral_containers.as_deref().unwrap_or_default();
    if ephemeral.is_empty() {
        return;
    }
    let others: BTreeSet<&str> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| c.name.as_str())
        .collect();
    let mut all = others.clone();
    for (i, ec) in ephemeral.iter().enumerate() {
        let p = path.index(i);
        let as_container: Container = serde_json::to_value(ec)
            .ok()
            .and_then(|mut v| {
                v.as_object_mut()?.remove("targetContainerName");
                serde_json::from_value(v).ok()
            })
            .unwrap_or_default();
        validate_container_common(
            &as_container,
            volumes,
            claims,
            &p,
            restart_policy,
            host_users,
            errs,
        );
        if !all.insert(ec.name.as_str()) {
            errs.push(FieldError::duplicate(p.child("name"), ec.name.as_str()));
        }
        if let Some(target) = ec
            .target_container_name
            .as_deref()
            .filter(|t| !t.is_empty())
            && !others.contains(target)
        {
            errs.push(FieldError::not_found(
                p.child("targetContainerName"),
                target,
            ));
        }
        for (set, field) in [
            (ec.ports.is_some(), "ports"),
            (
                ec.resources
                    .as_ref()
                    .is_some_and(|r| r != &ResourceRequirements::default()),
                "resources",
            ),
            (ec.liveness_probe.is_some(), "livenessProbe"),
            (ec.readiness_probe.is_some(), "readinessProbe"),
            (ec.startup_probe.is_some(), "startupProbe"),
            (ec.lifecycle.is_some(), "lifecycle"),
            (ec.resize_policy.is_some(), "resizePolicy"),
            (ec.restart_policy.is_some(), "restartPolicy"),
        ] {
            if set {
                errs.push(FieldError::forbidden(
                    p.child(field),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
    }
}

fn check_host_port_conflicts(containers: &[Container], path: &Path, errs: &mut Errs) {
    let mut seen = BTreeSet::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, port) in c.ports.iter().flatten().enumerate() {
            let host_port = port.host_port.unwrap_or(0);
            if host_port == 0 {
                continue;
            }
            let key = format!("{}/{}/{}", s(&port.protocol), s(&port.host_ip), host_port);
            if !seen.insert(key.clone()) {
                errs.push(FieldError::duplicate(
                    path.index(ci).child("ports").index(pi).child("hostPort"),
                    key,
                ));
            }
        }
    }
}

fn validate_container_common(
    c: &Container,
    volumes: &VolumeMap,
    claims: &BTreeSet<String>,
    path: &Path,
    restart_policy: &str,
    host_users: bool,
    errs: &mut Errs,
) {
    let name_path = path.child("name");
    if c.name.is_empty() {
        errs.push(FieldError::required(&name_path, ""));
    } else {
        push_msgs(errs, &name_path, &c.name, names::is_dns1123_label(&c.name));
    }
    if s(&c.image).is_empty() {
        errs.push(FieldError::required(path.child("image"), ""));
    }
    validate_enum(
        s(&c.termination_message_policy),
        &path.child("terminationMessagePolicy"),
        &["File", "FallbackToLogsOnError"],
        errs,
    );
    validate_container_ports(c, &path.child("ports"), errs);
    validate_env(
        c.env.as_deref().unwrap_or_default(),
        &path.child("env"),
        errs,
    );
    validate_env_from(
        c.env_from.as_deref().unwrap_or_default(),
        &path.child("envFrom"),
        errs,
    );
    validate_volume_mounts(c, volumes, &path.child("volumeMounts"), errs);
    validate_volume_devices(c, volumes, &path.child("volumeDevices"), errs);
    let pull = s(&c.image_pull_policy);
    if pull.is_empty() {
        errs.push(FieldError::required(path.child("imagePullPolicy"), ""));
    } else if !matches!(pull, "Always" | "IfNotPresent" | "Never") {
        errs.push(FieldError::not_supported(
            path.child("imagePullPolicy"),
            pull,
            &["Always", "IfNotPresent", "Never"],
        ));
    }
    if let Some(resources) = &c.resources {
        validate_resource_requirements(resources, claims, &path.child("resources"), errs);
    }
    validate_resize_policy(c, &path.child("resizePolicy"), restart_policy, errs);
    if let Some(sc) = &c.security_context {
        validate_security_context(sc, &path.child("securityContext"), host_users, errs);
    }
}

fn validate_container_ports(c: &Container, path: &Path, errs: &mut Errs) {
    let mut names_seen = BTreeSet::new();
    for (i, port) in c.ports.iter().flatten().enumerate() {
        let p = path.index(i);
        let name = s(&port.name);
        if !name.is_empty() {
            let msgs = names::is_valid_port_name(name);
            if !msgs.is_empty() {
                push_msgs(errs, &p.child("name"), name, msgs);
            } else if !names_seen.insert(name) {
                errs.push(FieldError::duplicate(p.child("name"), name));
            }
        }
        if port.container_port == 0 {
            errs.push(FieldError::required(p.child("containerPort"), ""));
        } else {
            for msg in names::is_valid_port_num(i64::from(port.container_port)) {
                errs.push(FieldError::invalid(
                    p.child("containerPort"),
                    port.container_port,
                    msg,
                ));
            }
        }
        let host_port = port.host_port.unwrap_or(0);
        if host_port != 0 {
            for msg in names::is_valid_port_num(i64::from(host_port)) {
                errs.push(FieldError::invalid(p.child("hostPort"), host_port, msg));
            }
        }
        let protocol = s(&port.protocol);
        if protocol.is_empty() {
            errs.push(FieldError::required(p.child("protocol"), ""));
        } else if !matches!(protocol, "TCP" | "UDP" | "SCTP") {
            errs.push(FieldError::not_supported(
                p.child("protocol"),
                protocol,
                &["SCTP", "TCP", "UDP"],
            ));
        }
    }
}

fn validate_env(vars: &[EnvVar], path: &Path, errs: &mut Errs) {
    for (i, ev) in vars.iter().enumerate() {
        let p = path.index(i);
        if ev.name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else {
            push_msgs(
                errs,
                &p.child("name"),
                &ev.name,
                names::is_relaxed_env_var_name(&ev.name),
            );
        }
        let Some(from) = &ev.value_from else {
            continue;
        };
        let fp = p.child("valueFrom");
        let mut sources = 0;
        if let Some(field_ref) = &from.field_ref {
            sources += 1;
            object_field_selector(
                s(&field_ref.api_version),
                &field_ref.field_path,
                ENV_FIELD_PATHS,
                &fp.child("fieldRef"),
                errs,
            );
        }
        if let Some(resource_ref) = &from.resource_field_ref {
            sources += 1;
            let divisor = resource_ref
                .divisor
                .as_ref()
                .map(|d| Value::String(d.0.clone()));
            resource_field_selector(
                s(&resource_ref.container_name),
                &resource_ref.resource,
                divisor.as_ref(),
                &fp.child("resourceFieldRef"),
                false,
                errs,
            );
        }
        if let Some(r) = &from.config_map_key_ref {
            sources += 1;
            key_selector(&r.name, &r.key, &fp.child("configMapKeyRef"), errs);
        }
        if let Some(r) = &from.secret_key_ref {
            sources += 1;
            key_selector(&r.name, &r.key, &fp.child("secretKeyRef"), errs);
        }
        if sources == 0 {
            errs.push(FieldError::invalid(
                &fp,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !s(&ev.value).is_empty() {
            errs.push(FieldError::invalid(
                &fp,
                "",
                "may not be specified when `value` is not empty",
            ));
        } else if sources > 1 {
            errs.push(FieldError::invalid(
                &fp,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn key_selector(name: &str, key: &str, path: &Path, errs: &mut Errs) {
    push_msgs(
        errs,
        &path.child("name"),
        name,
        names::is_dns1123_subdomain(name),
    );
    if key.is_empty() {
        errs.push(FieldError::required(path.child("key"), ""));
    } else {
        push_msgs(errs, &path.child("key"), key, names::is_config_map_key(key));
    }
}

fn validate_env_from(sources: &[EnvFromSource], path: &Path, errs: &mut Errs) {
    for (i, source) in sources.iter().enumerate() {
        let p = path.index(i);
        let prefix = s(&source.prefix);
        if !prefix.is_empty() {
            push_msgs(
                errs,
                &p.child("prefix"),
                prefix,
                names::is_relaxed_env_var_name(prefix),
            );
        }
        let mut count = 0;
        for (name, field) in [
            (
                source.config_map_ref.as_ref().map(|r| r.name.as_str()),
                "configMapRef",
            ),
            (
                source.secret_ref.as_ref().map(|r| r.name.as_str()),
                "secretRef",
            ),
        ] {
            let Some(name) = name else {
                continue;
            };
            count += 1;
            let np = p.child(field).child("name");
            if name.is_empty() {
                errs.push(FieldError::required(&np, ""));
            } else {
                push_msgs(
                    errs,
                    &np,
                    name,
                    NameRule::Dns1123Subdomain.validate(name, true),
                );
            }
        }
        if count == 0 {
            errs.push(FieldError::invalid(
                path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if count > 1 {
            errs.push(FieldError::invalid(
                path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn validate_volume_mounts(c: &Container, volumes: &VolumeMap, path: &Path, errs: &mut Errs) {
    let devices: BTreeMap<&str, &str> = c
        .volume_devices
        .iter()
        .flatten()
        .map(|d| (d.name.as_str(), d.device_path.as_str()))
        .collect();
    let mut mount_points = BTreeSet::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let p = path.index(i);
        if m.name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        }
        if !volumes.contains_key(&m.name) {
            errs.push(FieldError::not_found(p.child("name"), m.name.as_str()));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(p.child("mountPath"), ""));
        }
        if !mount_points.insert(m.mount_path.as_str()) {
            errs.push(FieldError::invalid(
                p.child("mountPath"),
                m.mount_path.as_str(),
                "must be unique",
            ));
        }
        if devices.contains_key(m.name.as_str()) {
            errs.push(FieldError::invalid(
                p.child("name"),
                m.name.as_str(),
                "must not already exist in volumeDevices",
            ));
        }
        if devices.values().any(|d| *d == m.mount_path) {
            errs.push(FieldError::invalid(
                p.child("mountPath"),
                m.mount_path.as_str(),
                "must not already exist as a path in volumeDevices",
            ));
        }
        let (sub_path, sub_path_expr) = (s(&m.sub_path), s(&m.sub_path_expr));
        if volumes
            .get(&m.name)
            .is_some_and(|v| v.get("image").is_some())
        {
            if !sub_path.is_empty() {
                errs.push(FieldError::invalid(
                    p.child("subPath"),
                    sub_path,
                    "not allowed in image volume sources",
                ));
            }
            if !sub_path_expr.is_empty() {
                errs.push(FieldError::invalid(
                    p.child("subPathExpr"),
                    sub_path_expr,
                    "not allowed in image volume sources",
                ));
            }
        }
        if !sub_path.is_empty() {
            local_descending_path(sub_path, &path.child("subPath"), errs);
        }
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                errs.push(FieldError::invalid(
                    p.child("subPathExpr"),
                    sub_path_expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            local_descending_path(sub_path_expr, &path.child("subPathExpr"), errs);
        }
        validate_mount_propagation(m, c, &path.child("mountPropagation"), errs);
        validate_recursive_read_only(m, &path.child("recursiveReadOnly"), errs);
    }
}

fn validate_mount_propagation(m: &VolumeMount, c: &Container, path: &Path, errs: &mut Errs) {
    let Some(mode) = &m.mount_propagation else {
        return;
    };
    let valid = ["Bidirectional", "HostToContainer", "None"];
    if !valid.contains(&mode.as_str()) {
        errs.push(FieldError::not_supported(path, mode.as_str(), &valid));
        return;
    }
    let privileged = c
        .security_context
        .as_ref()
        .and_then(|sc| sc.privileged)
        .unwrap_or(false);
    if mode == "Bidirectional" && !privileged {
        errs.push(FieldError::forbidden(
            path,
            "Bidirectional mount propagation is available only to privileged containers",
        ));
    }
}

fn validate_recursive_read_only(m: &VolumeMount, path: &Path, errs: &mut Errs) {
    let Some(mode) = &m.recursive_read_only else {
        return;
    };
    match mode.as_str() {
        "Disabled" => {}
        "IfPossible" | "Enabled" => {
            if m.read_only != Some(true) {
                errs.push(FieldError::forbidden(
                    path,
                    "may only be specified when readOnly is true",
                ));
            }
            if m.mount_propagation.as_deref().is_some_and(|p| p != "None") {
                errs.push(FieldError::forbidden(
                    path,
                    "may only be specified when mountPropagation is None or not specified",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            path,
            other,
            &["Disabled", "Enabled", "IfPossible"],
        )),
    }
}

fn validate_volume_devices(c: &Container, volumes: &VolumeMap, path: &Path, errs: &mut Errs) {
    let mounts: BTreeMap<&str, &str> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect();
    let mut device_paths = BTreeSet::new();
    let mut device_names = BTreeSet::new();
    for (i, d) in c.volume_devices.iter().flatten().enumerate() {
        let p = path.index(i);
        let source = volumes.get(&d.name);
        let is_pvc = source.is_some_and(|v| {
            v.get("persistentVolumeClaim").is_some() || v.get("ephemeral").is_some()
        });
        if d.name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        }
        if device_names.contains(d.name.as_str()) {
            errs.push(FieldError::invalid(
                p.child("name"),
                d.name.as_str(),
                "must be unique",
            ));
        }
        if source.is_some() && !is_pvc {
            errs.push(FieldError::invalid(
                p.child("name"),
                d.name.as_str(),
                "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
            ));
        }
        if source.is_none() {
            errs.push(FieldError::not_found(p.child("name"), d.name.as_str()));
        }
        if d.device_path.is_empty() {
            errs.push(FieldError::required(p.child("devicePath"), ""));
        }
        if device_paths.contains(d.device_path.as_str()) {
            errs.push(FieldError::invalid(
                p.child("devicePath"),
                d.device_path.as_str(),
                "must be unique",
            ));
        }
        let mut backsteps = Vec::new();
        no_backsteps(&d.device_path, &p, &mut backsteps);
        if !d.device_path.is_empty() && !backsteps.is_empty() {
            errs.push(FieldError::invalid(
                p.child("devicePath"),
                d.device_path.as_str(),
                "can not contain backsteps ('..')",
            ));
        } else {
            device_paths.insert(d.device_path.as_str());
        }
        if mounts.contains_key(d.name.as_str()) {
            errs.push(FieldError::invalid(
                p.child("name"),
                d.name.as_str(),
                "must not already exist in volumeMounts",
            ));
        }
        if mounts.values().any(|m| *m == d.device_path) {
            errs.push(FieldError::invalid(
                p.child("devicePath"),
                d.device_path.as_str(),
                "must not already exist as a path in volumeMounts",
            ));
        }
        if !d.name.is_empty() {
            device_names.insert(d.name.as_str());
        }
    }
}

fn validate_resize_policy(c: &Container, path: &Path, restart_policy: &str, errs: &mut Errs) {
    let mut seen = BTreeSet::new();
    for (i, policy) in c.resize_policy.iter().flatten().enumerate() {
        if !seen.insert(policy.resource_name.as_str()) {
            errs.push(FieldError::duplicate(
                path.index(i),
                policy.resource_name.as_str(),
            ));
        }
        match policy.resource_name.as_str() {
            "cpu" | "memory" => {}
            "" => errs.push(FieldError::required(path, "")),
            other => errs.push(FieldError::not_supported(path, other, &["cpu", "memory"])),
        }
        match policy.restart_policy.as_str() {
            "NotRequired" | "RestartContainer" => {}
            "" => errs.push(FieldError::required(path, "")),
            other => errs.push(FieldError::not_supported(
                path,
                other,
                &["NotRequired", "RestartContainer"],
            )),
        }
        if restart_policy == "Never" && policy.restart_policy != "NotRequired" {
            errs.push(FieldError::invalid(
                path,
                policy.restart_policy.as_str(),
                "must be 'NotRequired' when `restartPolicy` is 'Never'",
            ));
        }
    }
}

const STANDARD_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "services.nodeports",
    "services.loadbalancers",
    "storage",
    "requests.storage",
];
const INTEGER_RESOURCES: &[&str] = &[
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name)
        && !name.starts_with("requests.")
        && names::is_qualified_name(&format!("requests.{name}")).is_empty()
}

fn is_overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !is_hugepages(name)
}

fn validate_container_resource_name(name: &str, path: &Path, errs: &mut Errs) {
    let msgs = names::is_qualified_name(name);
    if !msgs.is_empty() {
        push_msgs(errs, path, name, msgs);
        return;
    }
    if !name.contains('/') {
        let standard = STANDARD_RESOURCES.contains(&name)
            || is_hugepages(name)
            || name.starts_with("requests.hugepages-");
        if !standard {
            errs.push(FieldError::invalid(
                path,
                name,
                "must be a standard resource type or fully qualified",
            ));
        }
        if !matches!(name, "cpu" | "memory" | "ephemeral-storage") && !is_hugepages(name) {
            errs.push(FieldError::invalid(
                path,
                name,
                "must be a standard resource for containers",
            ));
        }
    } else if !is_native_resource(name) && !is_extended_resource(name) {
        errs.push(FieldError::invalid(
            path,
            name,
            "doesn't follow extended resource name standard",
        ));
    }
}

fn parse_quantity(raw: &str, path: &Path, errs: &mut Errs) -> Option<Quantity> {
    match Quantity::parse(raw.trim()) {
        Ok(q) => Some(q),
        Err(e) => {
            errs.push(FieldError::invalid(path, raw, e.to_string()));
            None
        }
    }
}

fn validate_quantity_value(name: &str, q: &Quantity, path: &Path, errs: &mut Errs) {
    if q.signum() < 0 {
        errs.push(FieldError::invalid(
            path,
            q.to_string(),
            "must be greater than or equal to 0",
        ));
    }
    if (INTEGER_RESOURCES.contains(&name) || is_extended_resource(name))
        && q.milli_value() % 1000 != 0
    {
        errs.push(FieldError::invalid(
            path,
            q.to_string(),
            "must be an integer",
        ));
    }
}

/// Upstream's `ValidateContainerResourceRequirements`: names, quantities, and
/// requests ≤ limits.
pub(crate) fn validate_resource_requirements(
    reqs: &ResourceRequirements,
    claims: &BTreeSet<String>,
    path: &Path,
    errs: &mut Errs,
) {
    let lim_path = path.child("limits");
    let req_path = path.child("requests");
    let mut limits_cpu_mem = false;
    let mut requests_cpu_mem = false;
    let mut hugepages = false;
    let mut limits = BTreeMap::new();
    for (name, raw) in reqs.limits.iter().flatten() {
        let p = lim_path.key(name);
        validate_container_resource_name(name, &p, errs);
        if let Some(q) = parse_quantity(&raw.0, &p, errs) {
            validate_quantity_value(name, &q, &p, errs);
            limits.insert(name.as_str(), q);
        }
        hugepages |= is_hugepages(name);
        limits_cpu_mem |= matches!(name.as_str(), "cpu" | "memory");
    }
    for (name, raw) in reqs.requests.iter().flatten() {
        let p = req_path.key(name);
        validate_container_resource_name(name, &p, errs);
        let Some(q) = parse_quantity(&raw.0, &p, errs) else {
            continue;
        };
        validate_quantity_value(name, &q, &p, errs);
        match limits.get(name.as_str()) {
            Some(limit) => {
                if q != *limit && !is_overcommit_allowed(name) {
                    errs.push(FieldError::invalid(
                        &req_path,
                        q.to_string(),
                        format!("must be equal to {name} limit of {limit}"),
                    ));
                } else if q > *limit {
                    errs.push(FieldError::invalid(
                        &req_path,
                        q.to_string(),
                        format!("must be less than or equal to {name} limit of {limit}"),
                    ));
                }
            }
            None if !is_overcommit_allowed(name) => {
                errs.push(FieldError::required(
                    &lim_path,
                    "Limit must be set for non overcommitable resources",
                ));
            }
            None => {}
        }
        hugepages |= is_hugepages(name);
        requests_cpu_mem |= matches!(name.as_str(), "cpu" | "memory");
    }
    if !limits_cpu_mem && !requests_cpu_mem && hugepages {
        errs.push(FieldError::forbidden(
            path,
            "HugePages require cpu or memory",
        ));
    }
    let claim_path = path.child("claims");
    let mut seen = BTreeSet::new();
    for (i, claim) in reqs.claims.iter().flatten().enumerate() {
        let p = claim_path.index(i);
        if claim.name.is_empty() {
            errs.push(FieldError::required(&p, ""));
            continue;
        }
        let key = match claim.request.as_deref().filter(|r| !r.is_empty()) {
            Some(request) => {
                push_msgs(
                    errs,
                    &p.child("request"),
                    request,
                    names::is_dns1123_label(request),
                );
                format!("{}/{request}", claim.name)
            }
            None => claim.name.clone(),
        };
        if !seen.insert(key.clone()) {
            errs.push(FieldError::duplicate(&p, key));
        }
        if !claims.contains(&claim.name) {
            let mut e = FieldError::not_found(&p, claim.name.as_str());
            e.detail = if claims.is_empty() {
                "must be one of the names in pod.spec.resourceClaims which is empty".into()
            } else {
                format!(
                    "must be one of the names in pod.spec.resourceClaims: {}",
                    claims.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            };
            errs.push(e);
        }
    }
}

fn validate_port_num_or_name(port: &IntOrString, path: &Path, errs: &mut Errs) {
    match port {
        IntOrString::Int(n) => {
            for msg in names::is_valid_port_num(i64::from(*n)) {
                errs.push(FieldError::invalid(path, *n, msg));
            }
        }
        IntOrString::String(name) => push_msgs(errs, path, name, names::is_valid_port_name(name)),
    }
}

fn validate_http_get(http: &HTTPGetAction, path: &Path, errs: &mut Errs) {
    if s(&http.path).is_empty() {
        errs.push(FieldError::required(path.child("path"), ""));
    }
    validate_port_num_or_name(&http.port, &path.child("port"), errs);
    let scheme = s(&http.scheme);
    if !matches!(scheme, "HTTP" | "HTTPS") {
        errs.push(FieldError::not_supported(
            path.child("scheme"),
            scheme,
            &["HTTP", "HTTPS"],
        ));
    }
    for header in http.http_headers.iter().flatten() {
        push_msgs(
            errs,
            &path.child("httpHeaders"),
            &header.name,
            names::is_http_header_name(&header.name),
        );
    }
}

/// The handler of a probe or lifecycle hook: exactly one action.
#[allow(clippy::too_many_arguments)]
fn validate_handler(
    exec: Option<&k8s_openapi::api::core::v1::ExecAction>,
    http: Option<&HTTPGetAction>,
    tcp: Option<&k8s_openapi::api::core::v1::TCPSocketAction>,
    grpc: Option<&k8s_openapi::api::core::v1::GRPCAction>,
    sleep: Option<&k8s_openapi::api::core::v1::SleepAction>,
    grace: Option<i64>,
    path: &Path,
    errs: &mut Errs,
) {
    let mut count = 0;
    let mut claim = |field: &str, errs: &mut Errs| -> bool {
        if count > 0 {
            errs.push(FieldError::forbidden(
                path.child(field),
                "may not specify more than 1 handler type",
            ));
            false
        } else {
            count += 1;
            true
        }
    };
    if let Some(exec) = exec
        && claim("exec", errs)
        && exec.command.as_deref().unwrap_or_default().is_empty()
    {
        errs.push(FieldError::required(
            path.child("exec").child("command"),
            "",
        ));
    }
    if let Some(http) = http
        && claim("httpGet", errs)
    {
        validate_http_get(http, &path.child("httpGet"), errs);
    }
    if let Some(tcp) = tcp
        && claim("tcpSocket", errs)
    {
        validate_port_num_or_name(&tcp.port, &path.child("tcpSocket").child("port"), errs);
    }
    if let Some(grpc) = grpc
        && claim("grpc", errs)
    {
        validate_port_num_or_name(
            &IntOrString::Int(grpc.port),
            &path.child("grpc").child("port"),
            errs,
        );
    }
    if let Some(sleep) = sleep
        && claim("sleep", errs)
        && let Some(grace) = grace
        && (sleep.seconds < 0 || sleep.seconds > grace)
    {
        errs.push(FieldError::invalid(
            path.child("sleep"),
            sleep.seconds,
            format!("must be non-negative and less than terminationGracePeriodSeconds ({grace})"),
        ));
    }
    if count == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    }
}

fn validate_lifecycle_handler(
    h: &LifecycleHandler,
    grace: Option<i64>,
    path: &Path,
    errs: &mut Errs,
) {
    validate_handler(
        h.exec.as_ref(),
        h.http_get.as_ref(),
        h.tcp_socket.as_ref(),
        None,
        h.sleep.as_ref(),
        grace,
        path,
        errs,
    );
}

fn validate_lifecycle(lifecycle: &Lifecycle, grace: Option<i64>, path: &Path, errs: &mut Errs) {
    if let Some(h) = &lifecycle.post_start {
        validate_lifecycle_handler(h, grace, &path.child("postStart"), errs);
    }
    if let Some(h) = &lifecycle.pre_stop {
        validate_lifecycle_handler(h, grace, &path.child("preStop"), errs);
    }
}

fn validate_probe(probe: &Probe, grace: Option<i64>, path: &Path, errs: &mut Errs) {
    validate_handler(
        probe.exec.as_ref(),
        probe.http_get.as_ref(),
        probe.tcp_socket.as_ref(),
        probe.grpc.as_ref(),
        None,
        grace,
        path,
        errs,
    );
    for (value, field) in [
        (probe.initial_delay_seconds, "initialDelaySeconds"),
        (probe.timeout_seconds, "timeoutSeconds"),
        (probe.period_seconds, "periodSeconds"),
        (probe.success_threshold, "successThreshold"),
        (probe.failure_threshold, "failureThreshold"),
    ] {
        non_negative(i64::from(value.unwrap_or(0)), &path.child(field), errs);
    }
    if let Some(g) = probe.termination_grace_period_seconds
        && g <= 0
    {
        errs.push(FieldError::invalid(
            path.child("terminationGracePeriodSeconds"),
            g,
            "must be greater than 0",
        ));
    }
}

fn validate_host_network_deps(spec: &PodSpec, path: &Path, opts: PodOpts, errs: &mut Errs) {
    if spec.host_network != Some(true) {
        return;
    }
    for (i, c) in spec.containers.iter().enumerate() {
        for (j, port) in c.ports.iter().flatten().enumerate() {
            let (hp, cp) = (port.host_port.unwrap_or(0), port.container_port);
            if (opts.resource_is_pod || hp != 0) && hp != cp {
                errs.push(FieldError::invalid(
                    path.child("containers")
                        .index(i)
                        .child("ports")
                        .index(j)
                        .child("hostPort"),
                    hp,
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
    }
}

fn validate_seccomp(
    profile: Option<&k8s_openapi::api::core::v1::SeccompProfile>,
    path: &Path,
    errs: &mut Errs,
) {
    let Some(sp) = profile else {
        return;
    };
    match sp.type_.as_str() {
        "Localhost" | "RuntimeDefault" | "Unconfined" => {}
        "" => errs.push(FieldError::required(
            path.child("type"),
            "type is required when seccompProfile is set",
        )),
        other => errs.push(FieldError::not_supported(
            path.child("type"),
            other,
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )),
    }
    if sp.type_ == "Localhost" {
        match &sp.localhost_profile {
            None => errs.push(FieldError::required(
                path.child("localhostProfile"),
                "must be set when seccomp type is Localhost",
            )),
            Some(p) => local_descending_path(p, &path.child("localhostProfile"), errs),
        }
    } else if sp.localhost_profile.is_some() {
        let value = serde_json::to_value(sp).unwrap_or(Value::Null);
        errs.push(FieldError::invalid(
            path.child("localhostProfile"),
            value,
            "can only be set when seccomp type is Localhost",
        ));
    }
}

fn validate_app_armor(
    profile: Option<&k8s_openapi::api::core::v1::AppArmorProfile>,
    path: &Path,
    errs: &mut Errs,
) {
    let Some(p) = profile else {
        return;
    };
    match p.type_.as_str() {
        "Localhost" => match p.localhost_profile.as_deref() {
            None => errs.push(FieldError::required(
                path.child("localhostProfile"),
                "must be set when AppArmor type is Localhost",
            )),
            Some(lp) if lp.trim() != lp => errs.push(FieldError::invalid(
                path.child("localhostProfile"),
                lp,
                "must not be padded with whitespace",
            )),
            Some("") => errs.push(FieldError::required(
                path.child("localhostProfile"),
                "must be set when AppArmor type is Localhost",
            )),
            Some(lp) if lp.len() > 4095 => {
                errs.push(FieldError::too_long(path.child("localhostProfile"), 4095))
            }
            Some(_) => {}
        },
        "RuntimeDefault" | "Unconfined" => {
            if let Some(lp) = &p.localhost_profile {
                errs.push(FieldError::invalid(
                    path.child("localhostProfile"),
                    lp.as_str(),
                    "can only be set when AppArmor type is Localhost",
                ));
            }
        }
        "" => errs.push(FieldError::required(
            path.child("type"),
            "type is required when appArmorProfile is set",
        )),
        other => errs.push(FieldError::not_supported(
            path.child("type"),
            other,
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )),
    }
}

fn id_range(value: Option<i64>, path: &Path, errs: &mut Errs) {
    if let Some(v) = value {
        for msg in names::is_valid_user_id(v) {
            errs.push(FieldError::invalid(path, v, msg));
        }
    }
}

fn validate_pod_security_context(spec: &PodSpec, path: &Path, errs: &mut Errs) {
    let Some(sc) = &spec.security_context else {
        return;
    };
    id_range(sc.fs_group, &path.child("fsGroup"), errs);
    id_range(sc.run_as_user, &path.child("runAsUser"), errs);
    id_range(sc.run_as_group, &path.child("runAsGroup"), errs);
    for (i, gid) in sc.supplemental_groups.iter().flatten().enumerate() {
        id_range(Some(*gid), &path.child("supplementalGroups").index(i), errs);
    }
    if spec.share_process_namespace == Some(true) && spec.host_pid == Some(true) {
        errs.push(FieldError::invalid(
            path.child("shareProcessNamespace"),
            true,
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    validate_sysctls(spec, sc, &path.child("sysctls"), errs);
    if let Some(policy) = &sc.fs_group_change_policy
        && !matches!(policy.as_str(), "Always" | "OnRootMismatch")
    {
        errs.push(FieldError::not_supported(
            path.child("fsGroupChangePolicy"),
            policy.as_str(),
            &["Always", "OnRootMismatch"],
        ));
    }
    validate_seccomp(
        sc.seccomp_profile.as_ref(),
        &path.child("seccompProfile"),
        errs,
    );
    validate_app_armor(
        sc.app_armor_profile.as_ref(),
        &path.child("appArmorProfile"),
        errs,
    );
    if let Some(policy) = &sc.supplemental_groups_policy
        && !matches!(policy.as_str(), "Merge" | "Strict")
    {
        errs.push(FieldError::not_supported(
            path.child("supplementalGroupsPolicy"),
            policy.as_str(),
            &["Merge", "Strict"],
        ));
    }
    if let Some(policy) = &sc.se_linux_change_policy
        && !matches!(policy.as_str(), "MountOption" | "Recursive")
    {
        errs.push(FieldError::not_supported(
            path.child("seLinuxChangePolicy"),
            policy.as_str(),
            &["MountOption", "Recursive"],
        ));
    }
}

fn validate_sysctls(spec: &PodSpec, sc: &PodSecurityContext, path: &Path, errs: &mut Errs) {
    static SYSCTL_RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$")
            .expect("constant regex")
    });
    let mut seen = BTreeSet::new();
    for (i, sysctl) in sc.sysctls.iter().flatten().enumerate() {
        let p = path.index(i).child("name");
        if sysctl.name.is_empty() {
            errs.push(FieldError::required(&p, ""));
        } else if sysctl.name.len() > 253 || !SYSCTL_RE.is_match(&sysctl.name) {
            errs.push(FieldError::invalid(
                &p,
                sysctl.name.as_str(),
                "must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$",
            ));
        } else if !seen.insert(sysctl.name.as_str()) {
            errs.push(FieldError::duplicate(&p, sysctl.name.as_str()));
        }
        let net = sysctl.name.starts_with("net.") || sysctl.name.starts_with("net/");
        let ipc = sysctl.name.starts_with("kernel.shm")
            || sysctl.name.starts_with("kernel.msg")
            || sysctl.name.starts_with("kernel.sem")
            || sysctl.name.starts_with("fs.mqueue.");
        if spec.host_network == Some(true) && net {
            errs.push(FieldError::invalid(
                &p,
                sysctl.name.as_str(),
                "may not be specified when 'hostNetwork' is true",
            ));
        } else if spec.host_ipc == Some(true) && ipc {
            errs.push(FieldError::invalid(
                &p,
                sysctl.name.as_str(),
                "may not be specified when 'hostIPC' is true",
            ));
        }
    }
}

fn validate_security_context(sc: &SecurityContext, path: &Path, host_users: bool, errs: &mut Errs) {
    id_range(sc.run_as_user, &path.child("runAsUser"), errs);
    id_range(sc.run_as_group, &path.child("runAsGroup"), errs);
    if let Some(proc_mount) = &sc.proc_mount {
        if !matches!(proc_mount.as_str(), "Default" | "Unmasked") {
            errs.push(FieldError::not_supported(
                path.child("procMount"),
                proc_mount.as_str(),
                &["Default", "Unmasked"],
            ));
        }
        if host_users && proc_mount == "Unmasked" {
            errs.push(FieldError::invalid(
                path.child("procMount"),
                proc_mount.as_str(),
                "`hostUsers` must be false to use `Unmasked`",
            ));
        }
    }
    validate_seccomp(
        sc.seccomp_profile.as_ref(),
        &path.child("seccompProfile"),
        errs,
    );
    if sc.allow_privilege_escalation == Some(false) {
        let value = serde_json::to_value(sc).unwrap_or(Value::Null);
        if sc.privileged == Some(true) {
            errs.push(FieldError::invalid(
                path,
                value.clone(),
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
        if sc
            .capabilities
            .iter()
            .flat_map(|c| c.add.iter().flatten())
            .any(|c| c == "CAP_SYS_ADMIN")
        {
            errs.push(FieldError::invalid(path, value, "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN"));
        }
    }
    validate_app_armor(
        sc.app_armor_profile.as_ref(),
        &path.child("appArmorProfile"),
        errs,
    );
}

/// Upstream's `ValidateTolerations`.
pub(crate) fn validate_tolerations(tolerations: &[Toleration], path: &Path, errs: &mut Errs) {
    for (i, t) in tolerations.iter().enumerate() {
        let p = path.index(i);
        let key = s(&t.key);
        let operator = s(&t.operator);
        let effect = s(&t.effect);
        if !key.is_empty() {
            push_msgs(errs, &p.child("key"), key, names::is_qualified_name(key));
        }
        if key.is_empty() && operator != "Exists" {
            errs.push(FieldError::invalid(
                p.child("operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                p.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        let value = s(&t.value);
        match operator {
            "Equal" | "" => {
                let msgs = names::is_valid_label_value(value);
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(
                        p.child("operator"),
                        value,
                        msgs.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(FieldError::invalid(
                        p.child("operator"),
                        value,
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                p.child("operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        {
            errs.push(FieldError::not_supported(
                p.child("effect"),
                effect,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
}

fn validate_node_selector_term(
    term: &NodeSelectorTerm,
    allow_invalid_values: bool,
    path: &Path,
    errs: &mut Errs,
) {
    for (j, req) in term.match_expressions.iter().flatten().enumerate() {
        let p = path.child("matchExpressions").index(j);
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        p.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        p.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            "Gt" | "Lt" => {
                if values.len() != 1 {
                    errs.push(FieldError::required(
                        p.child("values"),
                        "must be specified single value when `operator` is 'Lt' or 'Gt'",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                p.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        push_msgs(
            errs,
            &p.child("key"),
            &req.key,
            names::is_qualified_name(&req.key),
        );
        if !allow_invalid_values {
            for (k, v) in values.iter().enumerate() {
                push_msgs(
                    errs,
                    &p.child("values").index(k),
                    v,
                    names::is_valid_label_value(v),
                );
            }
        }
    }
    for (j, req) in term.match_fields.iter().flatten().enumerate() {
        let p = path.child("matchFields").index(j);
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" => {
                if values.len() != 1 {
                    errs.push(FieldError::required(
                        p.child("values"),
                        "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                p.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        if req.key != "metadata.name" {
            errs.push(FieldError::invalid(
                p.child("key"),
                req.key.as_str(),
                "not a valid field selector key",
            ));
        } else {
            for (k, v) in values.iter().enumerate() {
                push_msgs(
                    errs,
                    &p.child("values").index(k),
                    v,
                    names::is_dns1123_subdomain(v),
                );
            }
        }
    }
}

fn validate_pod_affinity_term(term: &PodAffinityTerm, path: &Path, errs: &mut Errs) {
    errs.extend(validate_label_selector(
        term.label_selector.as_ref(),
        path.child("labelSelector").as_str(),
    ));
    errs.extend(validate_label_selector(
        term.namespace_selector.as_ref(),
        path.child("namespaceSelector").as_str(),
    ));
    for ns in term.namespaces.iter().flatten() {
        push_msgs(
            errs,
            &path.child("namespace"),
            ns,
            names::is_dns1123_label(ns),
        );
    }
    validate_label_keys(
        term.match_label_keys.as_deref(),
        term.label_selector.as_ref(),
        &path.child("matchLabelKeys"),
        errs,
    );
    validate_label_keys(
        term.mismatch_label_keys.as_deref(),
        term.label_selector.as_ref(),
        &path.child("mismatchLabelKeys"),
        errs,
    );
    let mismatch: BTreeSet<&String> = term.mismatch_label_keys.iter().flatten().collect();
    for (i, k) in term.match_label_keys.iter().flatten().enumerate() {
        if mismatch.contains(k) {
            errs.push(FieldError::invalid(
                path.child("matchLabelKeys").index(i),
                k.as_str(),
                "exists in both matchLabelKeys and mismatchLabelKeys",
            ));
        }
    }
    if term.topology_key.is_empty() {
        errs.push(FieldError::required(
            path.child("topologyKey"),
            "can not be empty",
        ));
    }
    push_msgs(
        errs,
        &path.child("topologyKey"),
        &term.topology_key,
        names::is_qualified_name(&term.topology_key),
    );
}

fn validate_label_keys(
    keys: Option<&[String]>,
    selector: Option<&LabelSelector>,
    path: &Path,
    errs: &mut Errs,
) {
    let keys = keys.unwrap_or_default();
    if keys.is_empty() {
        return;
    }
    if selector.is_none() {
        errs.push(FieldError::forbidden(
            path,
            "must not be specified when labelSelector is not set",
        ));
        return;
    }
    for (i, k) in keys.iter().enumerate() {
        push_msgs(errs, &path.index(i), k, names::is_qualified_name(k));
    }
}

fn validate_affinity(affinity: &Affinity, path: &Path, errs: &mut Errs) {
    if let Some(na) = &affinity.node_affinity {
        let p = path.child("nodeAffinity");
        if let Some(required) = &na.required_during_scheduling_ignored_during_execution {
            let rp = p
                .child("requiredDuringSchedulingIgnoredDuringExecution")
                .child("nodeSelectorTerms");
            if required.node_selector_terms.is_empty() {
                errs.push(FieldError::required(
                    &rp,
                    "must have at least one node selector term",
                ));
            }
            for (i, term) in required.node_selector_terms.iter().enumerate() {
                validate_node_selector_term(term, false, &rp.index(i), errs);
            }
        }
        for (i, term) in na
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .enumerate()
        {
            let tp = p
                .child("preferredDuringSchedulingIgnoredDuringExecution")
                .index(i);
            if term.weight <= 0 || term.weight > 100 {
                errs.push(FieldError::invalid(
                    tp.child("weight"),
                    term.weight,
                    "must be in the range 1-100",
                ));
            }
            validate_node_selector_term(&term.preference, true, &tp.child("preference"), errs);
        }
    }
    let pod_affinities = [
        affinity.pod_affinity.as_ref().map(|a| {
            (
                &a.required_during_scheduling_ignored_during_execution,
                &a.preferred_during_scheduling_ignored_during_execution,
                "podAffinity",
            )
        }),
        affinity.pod_anti_affinity.as_ref().map(|a| {
            (
                &a.required_during_scheduling_ignored_during_execution,
                &a.preferred_during_scheduling_ignored_during_execution,
                "podAntiAffinity",
            )
        }),
    ];
    for (required, preferred, field) in pod_affinities.into_iter().flatten() {
        let p = path.child(field);
        for (i, term) in required.iter().flatten().enumerate() {
            validate_pod_affinity_term(
                term,
                &p.child("requiredDuringSchedulingIgnoredDuringExecution")
                    .index(i),
                errs,
            );
        }
        for (i, wt) in preferred.iter().flatten().enumerate() {
            let wp = p
                .child("preferredDuringSchedulingIgnoredDuringExecution")
                .index(i);
            if wt.weight <= 0 || wt.weight > 100 {
                errs.push(FieldError::invalid(
                    wp.child("weight"),
                    wt.weight,
                    "must be in the range 1-100",
                ));
            }
            validate_pod_affinity_term(&wt.pod_affinity_term, &wp.child("podAffinityTerm"), errs);
        }
    }
}

fn validate_dns_config(spec: &PodSpec, path: &Path, errs: &mut Errs) {
    if s(&spec.dns_policy) == "None" {
        match &spec.dns_config {
            None => {
                errs.push(FieldError::required(
                    path,
                    "must provide `dnsConfig` when `dnsPolicy` is None",
                ));
                return;
            }
            Some(c) if c.nameservers.as_deref().unwrap_or_default().is_empty() => {
                errs.push(FieldError::required(
                    path.child("nameservers"),
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                ));
                return;
            }
            _ => {}
        }
    }
    let Some(config) = &spec.dns_config else {
        return;
    };
    let nameservers = config.nameservers.as_deref().unwrap_or_default();
    if nameservers.len() > 3 {
        errs.push(FieldError::invalid(
            path.child("nameservers"),
            serde_json::json!(nameservers),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, ns) in nameservers.iter().enumerate() {
        push_msgs(
            errs,
            &path.child("nameservers").index(i),
            ns,
            names::is_valid_ip(ns),
        );
    }
    let searches = config.searches.as_deref().unwrap_or_default();
    if searches.len() > 32 {
        errs.push(FieldError::invalid(
            path.child("searches"),
            serde_json::json!(searches),
            "must not have more than 32 search paths",
        ));
    }
    if searches.join(" ").len() > 2048 {
        errs.push(FieldError::invalid(
            path.child("searches"),
            serde_json::json!(searches),
            "must not have more than 2048 characters (including spaces) in the search list",
        ));
    }
    for (i, search) in searches.iter().enumerate() {
        if search != "." {
            let trimmed = search.strip_suffix('.').unwrap_or(search);
            push_msgs(
                errs,
                &path.child("searches").index(i),
                trimmed,
                names::is_dns1123_subdomain_with_underscore(trimmed),
            );
        }
    }
    for (i, option) in config.options.iter().flatten().enumerate() {
        if s(&option.name).is_empty() {
            errs.push(FieldError::required(
                path.child("options").index(i),
                "must not be empty",
            ));
        }
    }
}

fn validate_topology_spread(spec: &PodSpec, path: &Path, errs: &mut Errs) {
    let constraints = spec
        .topology_spread_constraints
        .as_deref()
        .unwrap_or_default();
    for (i, c) in constraints.iter().enumerate() {
        let p = path.index(i);
        if c.max_skew <= 0 {
            errs.push(FieldError::invalid(
                p.child("maxSkew"),
                c.max_skew,
                "must be greater than zero",
            ));
        }
        if c.topology_key.is_empty() {
            errs.push(FieldError::required(
                p.child("topologyKey"),
                "can not be empty",
            ));
        }
        if !matches!(
            c.when_unsatisfiable.as_str(),
            "DoNotSchedule" | "ScheduleAnyway"
        ) {
            errs.push(FieldError::not_supported(
                p.child("whenUnsatisfiable"),
                c.when_unsatisfiable.as_str(),
                &["DoNotSchedule", "ScheduleAnyway"],
            ));
        }
        if constraints[i + 1..].iter().any(|o| {
            o.topology_key == c.topology_key && o.when_unsatisfiable == c.when_unsatisfiable
        }) {
            errs.push(FieldError::duplicate(
                p.child("{topologyKey, whenUnsatisfiable}"),
                format!("{{{}, {}}}", c.topology_key, c.when_unsatisfiable),
            ));
        }
        if let Some(min) = c.min_domains {
            if min <= 0 {
                errs.push(FieldError::invalid(
                    p.child("minDomains"),
                    min,
                    "must be greater than zero",
                ));
            }
            if c.when_unsatisfiable != "DoNotSchedule" {
                errs.push(FieldError::invalid(
                    p.child("minDomains"),
                    min,
                    format!(
                        "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {}",
                        c.when_unsatisfiable
                    ),
                ));
            }
        }
        for (policy, field) in [
            (&c.node_affinity_policy, "nodeAffinityPolicy"),
            (&c.node_taints_policy, "nodeTaintsPolicy"),
        ] {
            if let Some(policy) = policy
                && !matches!(policy.as_str(), "Honor" | "Ignore")
            {
                errs.push(FieldError::not_supported(
                    p.child(field),
                    policy.as_str(),
                    &["Honor", "Ignore"],
                ));
            }
        }
        let keys = c.match_label_keys.as_deref().unwrap_or_default();
        if !keys.is_empty() {
            let selector_keys: BTreeSet<&str> = c
                .label_selector
                .iter()
                .flat_map(|ls| {
                    ls.match_labels
                        .iter()
                        .flat_map(|m| m.keys().map(String::as_str))
                        .chain(
                            ls.match_expressions
                                .iter()
                                .flatten()
                                .map(|e| e.key.as_str()),
                        )
                })
                .collect();
            if c.label_selector.is_none() {
                errs.push(FieldError::forbidden(
                    p.child("matchLabelKeys"),
                    "must not be specified when labelSelector is not set",
                ));
            }
            for (k, key) in keys.iter().enumerate() {
                let kp = p.child("matchLabelKeys").index(k);
                push_msgs(errs, &kp, key, names::is_qualified_name(key));
                if selector_keys.contains(key.as_str()) {
                    errs.push(FieldError::invalid(
                        &kp,
                        key.as_str(),
                        "exists in both matchLabelKeys and labelSelector",
                    ));
                }
            }
        }
        errs.extend(validate_label_selector(
            c.label_selector.as_ref(),
            p.child("labelSelector").as_str(),
        ));
    }
}
