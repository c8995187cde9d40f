//! Patch metadata of the built-in types, as upstream Kubernetes publishes it in its
//! OpenAPI document: `x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`,
//! `x-kubernetes-list-type`, `x-kubernetes-list-map-keys` and `x-kubernetes-map-type`.
//!
//! The `k8s-openapi` schemas carry none of these extensions, so the facts are recorded
//! here, keyed by upstream's OpenAPI definition names (which are also the names the
//! `k8s-openapi` `schemars` implementations use, e.g. `io.k8s.api.core.v1.PodSpec`).
//! The table was transcribed from the Kubernetes v1.33 OpenAPI document; a unit test
//! checks every entry against the `k8s-openapi` schemas so that a misspelt definition or
//! property cannot go unnoticed.
//!
//! Strategic merge patch uses only `strategy` and `merge_key`; server-side apply uses the
//! list and map types (falling back to the patch strategy, as upstream's schema
//! conversion does); the OpenAPI generator publishes all of them.

/// The patch metadata of one property of an OpenAPI definition (or, with an empty
/// property name, of the definition itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchMeta {
    /// `x-kubernetes-patch-strategy`: `"merge"`, `"retainKeys"`, `"merge,retainKeys"` or
    /// `"replace"`.
    pub strategy: Option<&'static str>,
    /// `x-kubernetes-patch-merge-key`.
    pub merge_key: Option<&'static str>,
    /// `x-kubernetes-list-type`: `"atomic"`, `"set"` or `"map"`.
    pub list_type: Option<&'static str>,
    /// `x-kubernetes-list-map-keys` (empty unless `list_type` is `"map"`).
    pub list_map_keys: &'static [&'static str],
    /// `x-kubernetes-map-type`: `"atomic"` or `"granular"`.
    pub map_type: Option<&'static str>,
}

impl PatchMeta {
    /// True if the patch strategy includes `merge`.
    pub fn merges(&self) -> bool {
        self.strategies().any(|s| s == "merge")
    }

    /// True if the patch strategy includes `retainKeys`.
    pub fn retains_keys(&self) -> bool {
        self.strategies().any(|s| s == "retainKeys")
    }

    /// The comma-separated strategies, one by one.
    pub fn strategies(&self) -> impl Iterator<Item = &'static str> {
        self.strategy.into_iter().flat_map(|s| s.split(','))
    }
}

/// The patch metadata upstream publishes for `property` of the OpenAPI definition named
/// `definition` (e.g. `("io.k8s.api.core.v1.PodSpec", "containers")`).
///
/// An empty `property` asks for the metadata of the definition itself: upstream marks
/// some structs as atomic (`+structType=atomic`, published as a definition-level
/// `x-kubernetes-map-type: atomic`), e.g. `io.k8s.api.core.v1.LocalObjectReference`.
///
/// Returns `None` when upstream publishes nothing for that property.
pub fn patch_meta(definition: &str, property: &str) -> Option<PatchMeta> {
    lookup_static(definition, property).copied()
}

/// Like [`patch_meta`], borrowing the table entry.
pub(crate) fn lookup_static(definition: &str, property: &str) -> Option<&'static PatchMeta> {
    TABLE
        .binary_search_by(|entry| (entry.0, entry.1).cmp(&(definition, property)))
        .ok()
        .map(|i| &TABLE[i].2)
}

/// Every definition/property pair with patch metadata, sorted by definition then
/// property (binary searched by [`patch_meta`]).
pub fn all() -> impl Iterator<Item = (&'static str, &'static str, PatchMeta)> {
    TABLE.iter().copied()
}

/// The default value upstream's schemas give a key field of an associative list item,
/// used by server-side apply when an applied item omits that key (upstream marks these
/// with `+default`). `definition` names the item type.
pub fn list_key_default(definition: &str, field: &str) -> Option<&'static str> {
    match (definition, field) {
        ("io.k8s.api.core.v1.ContainerPort", "protocol")
        | ("io.k8s.api.core.v1.ServicePort", "protocol") => Some("TCP"),
        ("io.k8s.api.core.v1.LocalObjectReference", "name") => Some(""),
        _ => None,
    }
}

type Entry = (&'static str, &'static str, PatchMeta);

const fn e(
    definition: &'static str,
    property: &'static str,
    strategy: Option<&'static str>,
    merge_key: Option<&'static str>,
    list_type: Option<&'static str>,
    list_map_keys: &'static [&'static str],
    map_type: Option<&'static str>,
) -> Entry {
    (
        definition,
        property,
        PatchMeta {
            strategy,
            merge_key,
            list_type,
            list_map_keys,
            map_type,
        },
    )
}

/// The metadata, sorted by (definition, property). Arguments of `e`: definition,
/// property, patch strategy, merge key, list type, list map keys, map type.
#[rustfmt::skip]
static TABLE: &[Entry] = &[
    e("io.k8s.api.admissionregistration.v1.MatchResources", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.admissionregistration.v1.MatchResources", "excludeResourceRules", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1.MatchResources", "resourceRules", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1.MutatingWebhook", "admissionReviewVersions", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1.MutatingWebhook", "matchConditions", Some("merge"), Some("name"), Some("map"), &["name"], None),
    e("io.k8s.api.admissionregistration.v1.MutatingWebhook", "rules", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration", "webhooks", Some("merge"), Some("name"), Some("map"), &["name"], None),
    e("io.k8s.api.admissionregistration.v1.NamedRuleWithOperations", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.admissionregistration.v1.NamedRuleWithOperations", "apiGroups", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1.NamedRuleWithOperations", "apiVersions", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1.NamedRuleWithOperations", "operations", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1.NamedRuleWithOperations", "resourceNames", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1.NamedRuleWithOperations", "resources", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1.ParamKind", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.admissionregistration.v1.ParamRef", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.admissionregistration.v1.RuleWithOperations", "apiGroups", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1.RuleWithOperations", "apiVersions", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1.RuleWithOperations", "operations", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1.RuleWithOperations", "resources", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1.TypeChecking", "expressionWarnings", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyBindingSpec", "validationActions", None, None, Some("set"), &[], None),
    e("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "auditAnnotations", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "matchConditions", Some("merge"), Some("name"), Some("map"), &["name"], None),
    e("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "validations", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "variables", Some("merge"), Some("name"), Some("map"), &["name"], None),
    e("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyStatus", "conditions", None, None, Some("map"), &["type"], None),
    e("io.k8s.api.admissionregistration.v1.ValidatingWebhook", "admissionReviewVersions", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1.ValidatingWebhook", "matchConditions", Some("merge"), Some("name"), Some("map"), &["name"], None),
    e("io.k8s.api.admissionregistration.v1.ValidatingWebhook", "rules", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration", "webhooks", Some("merge"), Some("name"), Some("map"), &["name"], None),
    e("io.k8s.api.admissionregistration.v1.Variable", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.admissionregistration.v1alpha1.MatchResources", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.admissionregistration.v1alpha1.MatchResources", "excludeResourceRules", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1alpha1.MatchResources", "resourceRules", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1alpha1.MutatingAdmissionPolicySpec", "matchConditions", Some("merge"), Some("name"), Some("map"), &["name"], None),
    e("io.k8s.api.admissionregistration.v1alpha1.MutatingAdmissionPolicySpec", "mutations", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1alpha1.MutatingAdmissionPolicySpec", "variables", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1alpha1.NamedRuleWithOperations", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.admissionregistration.v1alpha1.NamedRuleWithOperations", "apiGroups", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1alpha1.NamedRuleWithOperations", "apiVersions", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1alpha1.NamedRuleWithOperations", "operations", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1alpha1.NamedRuleWithOperations", "resourceNames", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1alpha1.NamedRuleWithOperations", "resources", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1alpha1.ParamKind", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.admissionregistration.v1alpha1.ParamRef", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.admissionregistration.v1beta1.MatchResources", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.admissionregistration.v1beta1.MatchResources", "excludeResourceRules", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1beta1.MatchResources", "resourceRules", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1beta1.NamedRuleWithOperations", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.admissionregistration.v1beta1.NamedRuleWithOperations", "apiGroups", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1beta1.NamedRuleWithOperations", "apiVersions", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1beta1.NamedRuleWithOperations", "operations", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1beta1.NamedRuleWithOperations", "resourceNames", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1beta1.NamedRuleWithOperations", "resources", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1beta1.ParamKind", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.admissionregistration.v1beta1.ParamRef", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.admissionregistration.v1beta1.TypeChecking", "expressionWarnings", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1beta1.ValidatingAdmissionPolicyBindingSpec", "validationActions", None, None, Some("set"), &[], None),
    e("io.k8s.api.admissionregistration.v1beta1.ValidatingAdmissionPolicySpec", "auditAnnotations", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1beta1.ValidatingAdmissionPolicySpec", "matchConditions", Some("merge"), Some("name"), Some("map"), &["name"], None),
    e("io.k8s.api.admissionregistration.v1beta1.ValidatingAdmissionPolicySpec", "validations", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.admissionregistration.v1beta1.ValidatingAdmissionPolicySpec", "variables", Some("merge"), Some("name"), Some("map"), &["name"], None),
    e("io.k8s.api.admissionregistration.v1beta1.ValidatingAdmissionPolicyStatus", "conditions", None, None, Some("map"), &["type"], None),
    e("io.k8s.api.admissionregistration.v1beta1.Variable", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.apiserverinternal.v1alpha1.ServerStorageVersion", "decodableVersions", None, None, Some("set"), &[], None),
    e("io.k8s.api.apiserverinternal.v1alpha1.ServerStorageVersion", "servedVersions", None, None, Some("set"), &[], None),
    e("io.k8s.api.apiserverinternal.v1alpha1.StorageVersionStatus", "conditions", None, None, Some("map"), &["type"], None),
    e("io.k8s.api.apiserverinternal.v1alpha1.StorageVersionStatus", "storageVersions", None, None, Some("map"), &["apiServerID"], None),
    e("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", Some("merge"), Some("type"), Some("map"), &["type"], None),
    e("io.k8s.api.apps.v1.DeploymentSpec", "strategy", Some("retainKeys"), None, None, &[], None),
    e("io.k8s.api.apps.v1.DeploymentStatus", "conditions", Some("merge"), Some("type"), Some("map"), &["type"], None),
    e("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", Some("merge"), Some("type"), Some("map"), &["type"], None),
    e("io.k8s.api.apps.v1.StatefulSetSpec", "volumeClaimTemplates", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", Some("merge"), Some("type"), Some("map"), &["type"], None),
    e("io.k8s.api.authentication.v1.TokenRequestSpec", "audiences", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.authentication.v1.TokenReviewSpec", "audiences", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.authentication.v1.TokenReviewStatus", "audiences", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.authentication.v1.UserInfo", "groups", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.authorization.v1.FieldSelectorAttributes", "requirements", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.authorization.v1.LabelSelectorAttributes", "requirements", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.authorization.v1.NonResourceRule", "nonResourceURLs", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.authorization.v1.NonResourceRule", "verbs", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.authorization.v1.ResourceRule", "apiGroups", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.authorization.v1.ResourceRule", "resourceNames", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.authorization.v1.ResourceRule", "resources", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.authorization.v1.ResourceRule", "verbs", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.authorization.v1.SubjectAccessReviewSpec", "groups", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.authorization.v1.SubjectRulesReviewStatus", "nonResourceRules", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.authorization.v1.SubjectRulesReviewStatus", "resourceRules", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.autoscaling.v1.CrossVersionObjectReference", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.autoscaling.v2.HPAScalingRules", "policies", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "metrics", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "conditions", Some("merge"), Some("type"), Some("map"), &["type"], None),
    e("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "currentMetrics", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.batch.v1.CronJobStatus", "active", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.batch.v1.JobStatus", "conditions", Some("merge"), Some("type"), Some("atomic"), &[], None),
    e("io.k8s.api.batch.v1.PodFailurePolicy", "rules", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement", "values", None, None, Some("set"), &[], None),
    e("io.k8s.api.batch.v1.PodFailurePolicyRule", "onPodConditions", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.batch.v1.SuccessPolicy", "rules", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.batch.v1.UncountedTerminatedPods", "failed", None, None, Some("set"), &[], None),
    e("io.k8s.api.batch.v1.UncountedTerminatedPods", "succeeded", None, None, Some("set"), &[], None),
    e("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "groups", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "request", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "usages", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.certificates.v1.CertificateSigningRequestStatus", "certificate", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.certificates.v1.CertificateSigningRequestStatus", "conditions", None, None, Some("map"), &["type"], None),
    e("io.k8s.api.core.v1.Capabilities", "add", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.Capabilities", "drop", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.CephFSPersistentVolumeSource", "monitors", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.CephFSVolumeSource", "monitors", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.ComponentStatus", "conditions", Some("merge"), Some("type"), Some("map"), &["type"], None),
    e("io.k8s.api.core.v1.ConfigMapKeySelector", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.core.v1.ConfigMapProjection", "items", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.ConfigMapVolumeSource", "items", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.Container", "args", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.Container", "command", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.Container", "env", Some("merge"), Some("name"), Some("map"), &["name"], None),
    e("io.k8s.api.core.v1.Container", "envFrom", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.Container", "ports", Some("merge"), Some("containerPort"), Some("map"), &["containerPort", "protocol"], None),
    e("io.k8s.api.core.v1.Container", "resizePolicy", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.Container", "volumeDevices", Some("merge"), Some("devicePath"), Some("map"), &["devicePath"], None),
    e("io.k8s.api.core.v1.Container", "volumeMounts", Some("merge"), Some("mountPath"), Some("map"), &["mountPath"], None),
    e("io.k8s.api.core.v1.ContainerImage", "names", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.ContainerStatus", "allocatedResourcesStatus", Some("merge"), Some("name"), Some("map"), &["name"], None),
    e("io.k8s.api.core.v1.ContainerStatus", "volumeMounts", Some("merge"), Some("mountPath"), Some("map"), &["mountPath"], None),
    e("io.k8s.api.core.v1.DownwardAPIProjection", "items", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.DownwardAPIVolumeSource", "items", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.EndpointAddress", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.core.v1.EndpointPort", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.core.v1.EndpointSubset", "addresses", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.EndpointSubset", "notReadyAddresses", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.EndpointSubset", "ports", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.Endpoints", "subsets", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.EphemeralContainer", "args", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.EphemeralContainer", "command", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.EphemeralContainer", "env", Some("merge"), Some("name"), Some("map"), &["name"], None),
    e("io.k8s.api.core.v1.EphemeralContainer", "envFrom", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.EphemeralContainer", "ports", Some("merge"), Some("containerPort"), Some("map"), &["containerPort", "protocol"], None),
    e("io.k8s.api.core.v1.EphemeralContainer", "resizePolicy", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.EphemeralContainer", "volumeDevices", Some("merge"), Some("devicePath"), Some("map"), &["devicePath"], None),
    e("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts", Some("merge"), Some("mountPath"), Some("map"), &["mountPath"], None),
    e("io.k8s.api.core.v1.ExecAction", "command", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.FCVolumeSource", "targetWWNs", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.FCVolumeSource", "wwids", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.HTTPGetAction", "httpHeaders", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.HostAlias", "hostnames", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.ISCSIPersistentVolumeSource", "portals", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.ISCSIVolumeSource", "portals", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.LimitRangeSpec", "limits", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.LinuxContainerUser", "supplementalGroups", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.LoadBalancerIngress", "ports", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.LoadBalancerStatus", "ingress", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.LocalObjectReference", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.core.v1.NamespaceSpec", "finalizers", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.NamespaceStatus", "conditions", Some("merge"), Some("type"), Some("map"), &["type"], None),
    e("io.k8s.api.core.v1.NodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.NodeSelector", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.core.v1.NodeSelector", "nodeSelectorTerms", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.NodeSelectorRequirement", "values", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.NodeSelectorTerm", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.core.v1.NodeSelectorTerm", "matchExpressions", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.NodeSelectorTerm", "matchFields", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.NodeSpec", "podCIDRs", Some("merge"), None, Some("set"), &[], None),
    e("io.k8s.api.core.v1.NodeSpec", "taints", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.NodeStatus", "addresses", Some("merge"), Some("type"), Some("map"), &["type"], None),
    e("io.k8s.api.core.v1.NodeStatus", "conditions", Some("merge"), Some("type"), Some("map"), &["type"], None),
    e("io.k8s.api.core.v1.NodeStatus", "images", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.NodeStatus", "runtimeHandlers", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.NodeStatus", "volumesAttached", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.NodeStatus", "volumesInUse", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.ObjectFieldSelector", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.core.v1.ObjectReference", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "accessModes", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "accessModes", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "allocatedResourceStatuses", None, None, None, &[], Some("granular")),
    e("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "conditions", Some("merge"), Some("type"), Some("map"), &["type"], None),
    e("io.k8s.api.core.v1.PersistentVolumeSpec", "accessModes", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.PersistentVolumeSpec", "claimRef", None, None, None, &[], Some("granular")),
    e("io.k8s.api.core.v1.PersistentVolumeSpec", "mountOptions", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.PodAffinity", "preferredDuringSchedulingIgnoredDuringExecution", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.PodAffinity", "requiredDuringSchedulingIgnoredDuringExecution", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.PodAffinityTerm", "matchLabelKeys", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.PodAffinityTerm", "mismatchLabelKeys", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.PodAffinityTerm", "namespaces", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.PodAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.PodAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.PodDNSConfig", "nameservers", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.PodDNSConfig", "options", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.PodDNSConfig", "searches", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.PodSecurityContext", "supplementalGroups", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.PodSecurityContext", "sysctls", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.PodSpec", "containers", Some("merge"), Some("name"), Some("map"), &["name"], None),
    e("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", Some("merge"), Some("name"), Some("map"), &["name"], None),
    e("io.k8s.api.core.v1.PodSpec", "hostAliases", Some("merge"), Some("ip"), Some("map"), &["ip"], None),
    e("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", Some("merge"), Some("name"), Some("map"), &["name"], None),
    e("io.k8s.api.core.v1.PodSpec", "initContainers", Some("merge"), Some("name"), Some("map"), &["name"], None),
    e("io.k8s.api.core.v1.PodSpec", "nodeSelector", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.core.v1.PodSpec", "readinessGates", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.PodSpec", "resourceClaims", Some("merge,retainKeys"), Some("name"), Some("map"), &["name"], None),
    e("io.k8s.api.core.v1.PodSpec", "schedulingGates", Some("merge"), Some("name"), Some("map"), &["name"], None),
    e("io.k8s.api.core.v1.PodSpec", "tolerations", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", Some("merge"), Some("topologyKey"), Some("map"), &["topologyKey", "whenUnsatisfiable"], None),
    e("io.k8s.api.core.v1.PodSpec", "volumes", Some("merge,retainKeys"), Some("name"), Some("map"), &["name"], None),
    e("io.k8s.api.core.v1.PodStatus", "conditions", Some("merge"), Some("type"), Some("map"), &["type"], None),
    e("io.k8s.api.core.v1.PodStatus", "containerStatuses", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.PodStatus", "ephemeralContainerStatuses", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.PodStatus", "hostIPs", Some("merge"), Some("ip"), Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.PodStatus", "initContainerStatuses", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.PodStatus", "podIPs", Some("merge"), Some("ip"), Some("map"), &["ip"], None),
    e("io.k8s.api.core.v1.PodStatus", "resourceClaimStatuses", Some("merge,retainKeys"), Some("name"), Some("map"), &["name"], None),
    e("io.k8s.api.core.v1.ProjectedVolumeSource", "sources", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.RBDPersistentVolumeSource", "monitors", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.RBDVolumeSource", "monitors", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.ReplicationControllerSpec", "selector", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.core.v1.ReplicationControllerStatus", "conditions", Some("merge"), Some("type"), Some("map"), &["type"], None),
    e("io.k8s.api.core.v1.ResourceFieldSelector", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.core.v1.ResourceQuotaSpec", "scopes", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.ResourceRequirements", "claims", None, None, Some("map"), &["name"], None),
    e("io.k8s.api.core.v1.ResourceStatus", "resources", None, None, Some("map"), &["resourceID"], None),
    e("io.k8s.api.core.v1.ScopeSelector", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.core.v1.ScopeSelector", "matchExpressions", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.ScopedResourceSelectorRequirement", "values", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.SecretKeySelector", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.core.v1.SecretProjection", "items", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.SecretReference", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.core.v1.SecretVolumeSource", "items", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.ServiceAccount", "imagePullSecrets", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.ServiceAccount", "secrets", Some("merge"), Some("name"), Some("map"), &["name"], None),
    e("io.k8s.api.core.v1.ServiceSpec", "clusterIPs", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.ServiceSpec", "externalIPs", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.ServiceSpec", "ipFamilies", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.ServiceSpec", "loadBalancerSourceRanges", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.ServiceSpec", "ports", Some("merge"), Some("port"), Some("map"), &["port", "protocol"], None),
    e("io.k8s.api.core.v1.ServiceSpec", "selector", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.core.v1.ServiceStatus", "conditions", Some("merge"), Some("type"), Some("map"), &["type"], None),
    e("io.k8s.api.core.v1.TopologySelectorLabelRequirement", "values", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.TopologySelectorTerm", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.core.v1.TopologySelectorTerm", "matchLabelExpressions", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.TopologySpreadConstraint", "matchLabelKeys", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.core.v1.TypedLocalObjectReference", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.discovery.v1.Endpoint", "addresses", None, None, Some("set"), &[], None),
    e("io.k8s.api.discovery.v1.EndpointHints", "forNodes", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.discovery.v1.EndpointHints", "forZones", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.discovery.v1.EndpointPort", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.discovery.v1.EndpointSlice", "endpoints", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.discovery.v1.EndpointSlice", "ports", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.flowcontrol.v1.FlowSchemaSpec", "rules", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.flowcontrol.v1.FlowSchemaStatus", "conditions", Some("merge"), Some("type"), Some("map"), &["type"], None),
    e("io.k8s.api.flowcontrol.v1.NonResourcePolicyRule", "nonResourceURLs", None, None, Some("set"), &[], None),
    e("io.k8s.api.flowcontrol.v1.NonResourcePolicyRule", "verbs", None, None, Some("set"), &[], None),
    e("io.k8s.api.flowcontrol.v1.PolicyRulesWithSubjects", "nonResourceRules", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.flowcontrol.v1.PolicyRulesWithSubjects", "resourceRules", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.flowcontrol.v1.PolicyRulesWithSubjects", "subjects", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.flowcontrol.v1.PriorityLevelConfigurationStatus", "conditions", Some("merge"), Some("type"), Some("map"), &["type"], None),
    e("io.k8s.api.flowcontrol.v1.ResourcePolicyRule", "apiGroups", None, None, Some("set"), &[], None),
    e("io.k8s.api.flowcontrol.v1.ResourcePolicyRule", "namespaces", None, None, Some("set"), &[], None),
    e("io.k8s.api.flowcontrol.v1.ResourcePolicyRule", "resources", None, None, Some("set"), &[], None),
    e("io.k8s.api.flowcontrol.v1.ResourcePolicyRule", "verbs", None, None, Some("set"), &[], None),
    e("io.k8s.api.networking.v1.HTTPIngressRuleValue", "paths", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.networking.v1.IPBlock", "except", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.networking.v1.IngressLoadBalancerIngress", "ports", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.networking.v1.IngressLoadBalancerStatus", "ingress", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.networking.v1.IngressSpec", "rules", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.networking.v1.IngressSpec", "tls", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.networking.v1.IngressTLS", "hosts", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.networking.v1.NetworkPolicyEgressRule", "ports", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.networking.v1.NetworkPolicyEgressRule", "to", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.networking.v1.NetworkPolicyIngressRule", "from", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.networking.v1.NetworkPolicyIngressRule", "ports", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.networking.v1.NetworkPolicySpec", "egress", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.networking.v1.NetworkPolicySpec", "ingress", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.networking.v1.NetworkPolicySpec", "policyTypes", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.networking.v1.ServiceBackendPort", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.networking.v1.ServiceCIDRSpec", "cidrs", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.networking.v1.ServiceCIDRStatus", "conditions", Some("merge"), Some("type"), Some("map"), &["type"], None),
    e("io.k8s.api.networking.v1beta1.ServiceCIDRSpec", "cidrs", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.networking.v1beta1.ServiceCIDRStatus", "conditions", Some("merge"), Some("type"), Some("map"), &["type"], None),
    e("io.k8s.api.node.v1.Scheduling", "nodeSelector", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.node.v1.Scheduling", "tolerations", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.policy.v1.PodDisruptionBudgetSpec", "selector", Some("replace"), None, None, &[], None),
    e("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", Some("merge"), Some("type"), Some("map"), &["type"], None),
    e("io.k8s.api.rbac.v1.AggregationRule", "clusterRoleSelectors", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.rbac.v1.ClusterRole", "rules", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.rbac.v1.ClusterRoleBinding", "subjects", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.rbac.v1.PolicyRule", "apiGroups", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.rbac.v1.PolicyRule", "nonResourceURLs", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.rbac.v1.PolicyRule", "resourceNames", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.rbac.v1.PolicyRule", "resources", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.rbac.v1.PolicyRule", "verbs", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.rbac.v1.Role", "rules", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.rbac.v1.RoleBinding", "subjects", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.rbac.v1.RoleRef", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.rbac.v1.Subject", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.api.resource.v1alpha3.AllocatedDeviceStatus", "conditions", None, None, Some("map"), &["type"], None),
    e("io.k8s.api.resource.v1alpha3.BasicDevice", "consumesCounters", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1alpha3.BasicDevice", "taints", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1alpha3.DeviceAllocationConfiguration", "requests", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1alpha3.DeviceAllocationResult", "config", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1alpha3.DeviceAllocationResult", "results", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1alpha3.DeviceClaim", "config", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1alpha3.DeviceClaim", "constraints", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1alpha3.DeviceClaim", "requests", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1alpha3.DeviceClaimConfiguration", "requests", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1alpha3.DeviceClassSpec", "config", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1alpha3.DeviceClassSpec", "selectors", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1alpha3.DeviceConstraint", "requests", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1alpha3.DeviceRequest", "firstAvailable", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1alpha3.DeviceRequest", "selectors", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1alpha3.DeviceRequest", "tolerations", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1alpha3.DeviceRequestAllocationResult", "tolerations", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1alpha3.DeviceSubRequest", "selectors", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1alpha3.DeviceSubRequest", "tolerations", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1alpha3.DeviceTaintSelector", "selectors", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1alpha3.NetworkDeviceData", "ips", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1alpha3.ResourceClaimStatus", "devices", None, None, Some("map"), &["driver", "device", "pool"], None),
    e("io.k8s.api.resource.v1alpha3.ResourceClaimStatus", "reservedFor", Some("merge"), Some("uid"), Some("map"), &["uid"], None),
    e("io.k8s.api.resource.v1alpha3.ResourceSliceSpec", "devices", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1alpha3.ResourceSliceSpec", "sharedCounters", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta1.AllocatedDeviceStatus", "conditions", None, None, Some("map"), &["type"], None),
    e("io.k8s.api.resource.v1beta1.BasicDevice", "consumesCounters", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta1.BasicDevice", "taints", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta1.DeviceAllocationConfiguration", "requests", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta1.DeviceAllocationResult", "config", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta1.DeviceAllocationResult", "results", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta1.DeviceClaim", "config", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta1.DeviceClaim", "constraints", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta1.DeviceClaim", "requests", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta1.DeviceClaimConfiguration", "requests", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta1.DeviceClassSpec", "config", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta1.DeviceClassSpec", "selectors", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta1.DeviceConstraint", "requests", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta1.DeviceRequest", "firstAvailable", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta1.DeviceRequest", "selectors", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta1.DeviceRequest", "tolerations", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta1.DeviceRequestAllocationResult", "tolerations", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta1.DeviceSubRequest", "selectors", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta1.DeviceSubRequest", "tolerations", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta1.NetworkDeviceData", "ips", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta1.ResourceClaimStatus", "devices", None, None, Some("map"), &["driver", "device", "pool"], None),
    e("io.k8s.api.resource.v1beta1.ResourceClaimStatus", "reservedFor", Some("merge"), Some("uid"), Some("map"), &["uid"], None),
    e("io.k8s.api.resource.v1beta1.ResourceSliceSpec", "devices", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta1.ResourceSliceSpec", "sharedCounters", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta2.AllocatedDeviceStatus", "conditions", None, None, Some("map"), &["type"], None),
    e("io.k8s.api.resource.v1beta2.Device", "consumesCounters", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta2.Device", "taints", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta2.DeviceAllocationConfiguration", "requests", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta2.DeviceAllocationResult", "config", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta2.DeviceAllocationResult", "results", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta2.DeviceClaim", "config", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta2.DeviceClaim", "constraints", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta2.DeviceClaim", "requests", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta2.DeviceClaimConfiguration", "requests", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta2.DeviceClassSpec", "config", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta2.DeviceClassSpec", "selectors", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta2.DeviceConstraint", "requests", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta2.DeviceRequest", "firstAvailable", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta2.DeviceRequestAllocationResult", "tolerations", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta2.DeviceSubRequest", "selectors", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta2.DeviceSubRequest", "tolerations", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta2.ExactDeviceRequest", "selectors", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta2.ExactDeviceRequest", "tolerations", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta2.NetworkDeviceData", "ips", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta2.ResourceClaimStatus", "devices", None, None, Some("map"), &["driver", "device", "pool"], None),
    e("io.k8s.api.resource.v1beta2.ResourceClaimStatus", "reservedFor", Some("merge"), Some("uid"), Some("map"), &["uid"], None),
    e("io.k8s.api.resource.v1beta2.ResourceSliceSpec", "devices", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.resource.v1beta2.ResourceSliceSpec", "sharedCounters", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.storage.v1.CSIDriverSpec", "tokenRequests", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.storage.v1.CSIDriverSpec", "volumeLifecycleModes", None, None, Some("set"), &[], None),
    e("io.k8s.api.storage.v1.CSINodeDriver", "topologyKeys", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.storage.v1.CSINodeSpec", "drivers", Some("merge"), Some("name"), Some("map"), &["name"], None),
    e("io.k8s.api.storage.v1.StorageClass", "allowedTopologies", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.storage.v1.StorageClass", "mountOptions", None, None, Some("atomic"), &[], None),
    e("io.k8s.api.storagemigration.v1alpha1.StorageVersionMigrationStatus", "conditions", Some("merge"), Some("type"), Some("map"), &["type"], None),
    e("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionNames", "categories", None, None, Some("atomic"), &[], None),
    e("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionNames", "shortNames", None, None, Some("atomic"), &[], None),
    e("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionSpec", "versions", None, None, Some("atomic"), &[], None),
    e("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus", "conditions", None, None, Some("map"), &["type"], None),
    e("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus", "storedVersions", None, None, Some("atomic"), &[], None),
    e("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionVersion", "additionalPrinterColumns", None, None, Some("atomic"), &[], None),
    e("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionVersion", "selectableFields", None, None, Some("atomic"), &[], None),
    e("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "allOf", None, None, Some("atomic"), &[], None),
    e("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "anyOf", None, None, Some("atomic"), &[], None),
    e("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "enum", None, None, Some("atomic"), &[], None),
    e("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "oneOf", None, None, Some("atomic"), &[], None),
    e("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "required", None, None, Some("atomic"), &[], None),
    e("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "x-kubernetes-list-map-keys", None, None, Some("atomic"), &[], None),
    e("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "x-kubernetes-validations", Some("merge"), Some("rule"), Some("map"), &["rule"], None),
    e("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.WebhookConversion", "conversionReviewVersions", None, None, Some("atomic"), &[], None),
    e("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup", "serverAddressByClientCIDRs", None, None, Some("atomic"), &[], None),
    e("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup", "versions", None, None, Some("atomic"), &[], None),
    e("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList", "groups", None, None, Some("atomic"), &[], None),
    e("io.k8s.apimachinery.pkg.apis.meta.v1.APIResource", "categories", None, None, Some("atomic"), &[], None),
    e("io.k8s.apimachinery.pkg.apis.meta.v1.APIResource", "shortNames", None, None, Some("atomic"), &[], None),
    e("io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList", "resources", None, None, Some("atomic"), &[], None),
    e("io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions", "serverAddressByClientCIDRs", None, None, Some("atomic"), &[], None),
    e("io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions", "versions", None, None, Some("atomic"), &[], None),
    e("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions", "dryRun", None, None, Some("atomic"), &[], None),
    e("io.k8s.apimachinery.pkg.apis.meta.v1.FieldSelectorRequirement", "values", None, None, Some("atomic"), &[], None),
    e("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", "matchExpressions", None, None, Some("atomic"), &[], None),
    e("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement", "values", None, None, Some("atomic"), &[], None),
    e("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", Some("merge"), None, Some("set"), &[], None),
    e("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "managedFields", None, None, Some("atomic"), &[], None),
    e("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", Some("merge"), Some("uid"), Some("map"), &["uid"], None),
    e("io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference", "", None, None, None, &[], Some("atomic")),
    e("io.k8s.apimachinery.pkg.apis.meta.v1.Status", "details", None, None, Some("atomic"), &[], None),
    e("io.k8s.apimachinery.pkg.apis.meta.v1.StatusDetails", "causes", None, None, Some("atomic"), &[], None),
    e("io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceSpec", "caBundle", None, None, Some("atomic"), &[], None),
    e("io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceStatus", "conditions", Some("merge"), Some("type"), Some("map"), &["type"], None),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::schema::definition_schema;

    #[test]
    fn table_is_sorted_and_unique() {
        for pair in TABLE.windows(2) {
            assert!(
                (pair[0].0, pair[0].1) < (pair[1].0, pair[1].1),
                "{:?} / {:?}",
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn every_entry_names_a_real_definition_and_property() {
        for (definition, property, meta) in all() {
            let schema = definition_schema(definition)
                .unwrap_or_else(|| panic!("{definition} is not a k8s-openapi definition"));
            if !property.is_empty() {
                let prop = schema.pointer(&format!("/properties/{property}"));
                assert!(prop.is_some(), "{definition} has no property {property}");
                let is_list =
                    prop.and_then(|p| p.get("type")).and_then(|t| t.as_str()) == Some("array");
                // (`[]byte` fields are strings with list type atomic.)
                if meta.merge_key.is_some() || meta.list_type.is_some_and(|t| t != "atomic") {
                    assert!(
                        is_list,
                        "{definition}.{property} has list metadata but is not a list"
                    );
                }
            }
            if meta.list_type == Some("map") {
                assert!(!meta.list_map_keys.is_empty(), "{definition}.{property}");
            } else {
                assert!(meta.list_map_keys.is_empty(), "{definition}.{property}");
            }
            if let Some(key) = meta.merge_key {
                assert!(
                    meta.merges(),
                    "{definition}.{property}: merge key without merge strategy"
                );
                if meta.list_type == Some("map") {
                    assert!(meta.list_map_keys.contains(&key), "{definition}.{property}");
                }
            }
        }
    }

    #[test]
    fn known_upstream_metadata() {
        const CORE: &str = "io.k8s.api.core.v1.";
        const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.";
        // (definition, property, strategy, merge key, list type, list map keys, map type)
        #[allow(clippy::type_complexity)]
        let cases: &[(
            String,
            &str,
            Option<&str>,
            Option<&str>,
            Option<&str>,
            &[&str],
            Option<&str>,
        )] = &[
            (
                format!("{CORE}PodSpec"),
                "containers",
                Some("merge"),
                Some("name"),
                Some("map"),
                &["name"],
                None,
            ),
            (
                format!("{CORE}PodSpec"),
                "initContainers",
                Some("merge"),
                Some("name"),
                Some("map"),
                &["name"],
                None,
            ),
            (
                format!("{CORE}PodSpec"),
                "ephemeralContainers",
                Some("merge"),
                Some("name"),
                Some("map"),
                &["name"],
                None,
            ),
            (
                format!("{CORE}PodSpec"),
                "volumes",
                Some("merge,retainKeys"),
                Some("name"),
                Some("map"),
                &["name"],
                None,
            ),
            (
                format!("{CORE}PodSpec"),
                "imagePullSecrets",
                Some("merge"),
                Some("name"),
                Some("map"),
                &["name"],
                None,
            ),
            (
                format!("{CORE}PodSpec"),
                "hostAliases",
                Some("merge"),
                Some("ip"),
                Some("map"),
                &["ip"],
                None,
            ),
            (
                format!("{CORE}PodSpec"),
                "tolerations",
                None,
                None,
                Some("atomic"),
                &[],
                None,
            ),
            (
                format!("{CORE}PodSpec"),
                "topologySpreadConstraints",
                Some("merge"),
                Some("topologyKey"),
                Some("map"),
                &["topologyKey", "whenUnsatisfiable"],
                None,
            ),
            (
                format!("{CORE}PodSpec"),
                "nodeSelector",
                None,
                None,
                None,
                &[],
                Some("atomic"),
            ),
            (
                format!("{CORE}Container"),
                "ports",
                Some("merge"),
                Some("containerPort"),
                Some("map"),
                &["containerPort", "protocol"],
                None,
            ),
            (
                format!("{CORE}Container"),
                "env",
                Some("merge"),
                Some("name"),
                Some("map"),
                &["name"],
                None,
            ),
            (
                format!("{CORE}Container"),
                "volumeMounts",
                Some("merge"),
                Some("mountPath"),
                Some("map"),
                &["mountPath"],
                None,
            ),
            (
                format!("{CORE}Container"),
                "volumeDevices",
                Some("merge"),
                Some("devicePath"),
                Some("map"),
                &["devicePath"],
                None,
            ),
            (
                format!("{CORE}Container"),
                "resizePolicy",
                None,
                None,
                Some("atomic"),
                &[],
                None,
            ),
            (
                format!("{CORE}Container"),
                "args",
                None,
                None,
                Some("atomic"),
                &[],
                None,
            ),
            (
                format!("{CORE}EphemeralContainer"),
                "env",
                Some("merge"),
                Some("name"),
                Some("map"),
                &["name"],
                None,
            ),
            (
                format!("{META}ObjectMeta"),
                "finalizers",
                Some("merge"),
                None,
                Some("set"),
                &[],
                None,
            ),
            (
                format!("{META}ObjectMeta"),
                "ownerReferences",
                Some("merge"),
                Some("uid"),
                Some("map"),
                &["uid"],
                None,
            ),
            (
                format!("{META}ObjectMeta"),
                "managedFields",
                None,
                None,
                Some("atomic"),
                &[],
                None,
            ),
            (
                format!("{CORE}ServiceSpec"),
                "ports",
                Some("merge"),
                Some("port"),
                Some("map"),
                &["port", "protocol"],
                None,
            ),
            (
                format!("{CORE}NodeSpec"),
                "taints",
                None,
                None,
                Some("atomic"),
                &[],
                None,
            ),
            (
                format!("{CORE}NodeStatus"),
                "addresses",
                Some("merge"),
                Some("type"),
                Some("map"),
                &["type"],
                None,
            ),
            (
                format!("{CORE}NodeStatus"),
                "conditions",
                Some("merge"),
                Some("type"),
                Some("map"),
                &["type"],
                None,
            ),
            (
                format!("{CORE}PodStatus"),
                "conditions",
                Some("merge"),
                Some("type"),
                Some("map"),
                &["type"],
                None,
            ),
            (
                "io.k8s.api.apps.v1.DeploymentStatus".into(),
                "conditions",
                Some("merge"),
                Some("type"),
                Some("map"),
                &["type"],
                None,
            ),
            (
                "io.k8s.api.apps.v1.DeploymentSpec".into(),
                "strategy",
                Some("retainKeys"),
                None,
                None,
                &[],
                None,
            ),
            (
                "io.k8s.api.policy.v1.PodDisruptionBudgetSpec".into(),
                "selector",
                Some("replace"),
                None,
                None,
                &[],
                None,
            ),
            (
                format!("{CORE}LocalObjectReference"),
                "",
                None,
                None,
                None,
                &[],
                Some("atomic"),
            ),
            (
                format!("{META}LabelSelector"),
                "",
                None,
                None,
                None,
                &[],
                Some("atomic"),
            ),
            (
                format!("{CORE}PersistentVolumeSpec"),
                "claimRef",
                None,
                None,
                None,
                &[],
                Some("granular"),
            ),
        ];
        for (definition, property, strategy, merge_key, list_type, keys, map_type) in cases {
            let want = PatchMeta {
                strategy: *strategy,
                merge_key: *merge_key,
                list_type: *list_type,
                list_map_keys: keys,
                map_type: *map_type,
            };
            assert_eq!(
                patch_meta(definition, property),
                Some(want),
                "{definition}.{property}"
            );
        }
        for (definition, property) in [
            (format!("{CORE}PodSpec"), "restartPolicy"),
            (format!("{CORE}Container"), "image"),
            ("com.example.v1.Widget".to_string(), "spec"),
        ] {
            assert_eq!(
                patch_meta(&definition, property),
                None,
                "{definition}.{property}"
            );
        }
    }

    #[test]
    fn strategies_split() {
        let volumes = patch_meta("io.k8s.api.core.v1.PodSpec", "volumes").expect("volumes");
        assert!(volumes.merges() && volumes.retains_keys());
        let strategy =
            patch_meta("io.k8s.api.apps.v1.DeploymentSpec", "strategy").expect("strategy");
        assert!(!strategy.merges() && strategy.retains_keys());
    }
}
