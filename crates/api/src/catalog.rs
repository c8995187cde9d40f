//! The catalogue of resources the API server serves: group, version, kind, plural,
//! scope, short names, categories and subresources of every built-in kind.
//!
//! Built-in entries are derived from the `k8s-openapi` types (their `Resource`
//! constants), so names cannot drift from the types; the short names, categories and
//! subresources are upstream facts recorded here. Custom resources get entries at run
//! time from their CustomResourceDefinitions.

use k8s_openapi::Resource;

/// Everything the API server needs to know about one resource (one group/version/plural).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; empty for the core ("legacy") group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub list_kind: String,
    /// The URL path segment, e.g. `pods`.
    pub plural: String,
    /// Lower-case kind, e.g. `pod`.
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Subresources served as `<plural>/<name>`.
    pub subresources: Vec<Subresource>,
    /// Verbs on the main resource.
    pub verbs: Vec<String>,
    /// Set for resources defined by a CustomResourceDefinition.
    pub custom: bool,
}

/// A subresource such as `status`, `scale` or `log`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subresource {
    pub name: String,
    /// The kind sent and returned, with its group and version (e.g. `autoscaling/v1 Scale`).
    pub group: String,
    pub version: String,
    pub kind: String,
    pub verbs: Vec<String>,
}

impl ResourceInfo {
    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The group name used in storage keys ("core" for the legacy group).
    pub fn storage_group(&self) -> &str {
        if self.group.is_empty() {
            "core"
        } else {
            &self.group
        }
    }

    pub fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// `plural.group` (or just `plural`), as used by RBAC and error details.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// Verbs of an ordinary read/write resource.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Marker for the two `k8s-openapi` scope types.
trait Scope {
    const NAMESPACED: bool;
}
impl Scope for k8s_openapi::NamespaceResourceScope {
    const NAMESPACED: bool = true;
}
impl Scope for k8s_openapi::ClusterResourceScope {
    const NAMESPACED: bool = false;
}

fn entry<K>(short: &[&str], categories: &[&str], subs: Vec<Subresource>) -> ResourceInfo
where
    K: Resource,
    K::Scope: Scope,
{
    ResourceInfo {
        group: K::GROUP.to_string(),
        version: K::VERSION.to_string(),
        kind: K::KIND.to_string(),
        list_kind: format!("{}List", K::KIND),
        plural: K::URL_PATH_SEGMENT.to_string(),
        singular: K::KIND.to_ascii_lowercase(),
        namespaced: <K::Scope as Scope>::NAMESPACED,
        short_names: strings(short),
        categories: strings(categories),
        subresources: subs,
        verbs: strings(ALL_VERBS),
        custom: false,
    }
}

fn sub(name: &str, group: &str, version: &str, kind: &str, verbs: &[&str]) -> Subresource {
    Subresource {
        name: name.into(),
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        verbs: strings(verbs),
    }
}

/// The `status` subresource of a kind.
fn status<K: Resource>() -> Subresource {
    sub(
        "status",
        K::GROUP,
        K::VERSION,
        K::KIND,
        &["get", "patch", "update"],
    )
}

/// The `scale` subresource (autoscaling/v1 Scale).
fn scale() -> Subresource {
    sub(
        "scale",
        "autoscaling",
        "v1",
        "Scale",
        &["get", "patch", "update"],
    )
}

/// Every built-in resource Flotilla serves.
pub fn builtin() -> Vec<ResourceInfo> {
    use k8s_openapi::api::{
        apps::v1 as apps, batch::v1 as batch, coordination::v1 as coord, core::v1 as core,
        discovery::v1 as disc, events::v1 as ev, networking::v1 as net, policy::v1 as policy,
        rbac::v1 as rbac, scheduling::v1 as sched, storage::v1 as storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    let all = &["all"][..];
    let none: &[&str] = &[];
    let mut pods = entry::<core::Pod>(
        &["po"],
        all,
        vec![
            status::<core::Pod>(),
            sub("binding", "", "v1", "Binding", &["create"]),
            sub("eviction", "policy", "v1", "Eviction", &["create"]),
            sub(
                "ephemeralcontainers",
                "",
                "v1",
                "Pod",
                &["get", "patch", "update"],
            ),
            sub("resize", "", "v1", "Pod", &["get", "patch", "update"]),
            sub("log", "", "v1", "Pod", &["get"]),
            sub("exec", "", "v1", "PodExecOptions", &["create", "get"]),
            sub("attach", "", "v1", "PodAttachOptions", &["create", "get"]),
            sub(
                "portforward",
                "",
                "v1",
                "PodPortForwardOptions",
                &["create", "get"],
            ),
            sub(
                "proxy",
                "",
                "v1",
                "PodProxyOptions",
                &["create", "delete", "get", "head", "options", "patch", "put"],
            ),
        ],
    );
    pods.verbs = strings(ALL_VERBS);
    let mut namespaces = entry::<core::Namespace>(
        &["ns"],
        none,
        vec![
            status::<core::Namespace>(),
            sub("finalize", "", "v1", "Namespace", &["update"]),
        ],
    );
    namespaces.verbs = strings(&[
        "create", "delete", "get", "list", "patch", "update", "watch",
    ]);
    let mut bindings = entry::<core::Binding>(&[], none, vec![]);
    bindings.verbs = strings(&["create"]);
    let mut service_accounts = entry::<core::ServiceAccount>(
        &["sa"],
        none,
        vec![sub(
            "token",
            "authentication.k8s.io",
            "v1",
            "TokenRequest",
            &["create"],
        )],
    );
    service_accounts.verbs = strings(ALL_VERBS);
    let mut services = entry::<core::Service>(
        &["svc"],
        all,
        vec![
            status::<core::Service>(),
            sub(
                "proxy",
                "",
                "v1",
                "ServiceProxyOptions",
                &["create", "delete", "get", "head", "options", "patch", "put"],
            ),
        ],
    );
    services.verbs = strings(&[
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ]);
    let nodes = entry::<core::Node>(
        &["no"],
        none,
        vec![
            status::<core::Node>(),
            sub(
                "proxy",
                "",
                "v1",
                "NodeProxyOptions",
                &["create", "delete", "get", "head", "options", "patch", "put"],
            ),
        ],
    );

    vec![
        // core/v1
        bindings,
        entry::<core::ConfigMap>(&["cm"], none, vec![]),
        entry::<core::Endpoints>(&["ep"], none, vec![]),
        entry::<core::Event>(&["ev"], none, vec![]),
        entry::<core::LimitRange>(&["limits"], none, vec![]),
        namespaces,
        nodes,
        entry::<core::PersistentVolumeClaim>(
            &["pvc"],
            none,
            vec![status::<core::PersistentVolumeClaim>()],
        ),
        entry::<core::PersistentVolume>(&["pv"], none, vec![status::<core::PersistentVolume>()]),
        pods,
        entry::<core::PodTemplate>(&[], none, vec![]),
        entry::<core::ReplicationController>(
            &["rc"],
            all,
            vec![status::<core::ReplicationController>(), scale()],
        ),
        entry::<core::ResourceQuota>(&["quota"], none, vec![status::<core::ResourceQuota>()]),
        entry::<core::Secret>(&[], none, vec![]),
        service_accounts,
        services,
        // apps/v1
        entry::<apps::ControllerRevision>(&[], none, vec![]),
        entry::<apps::DaemonSet>(&["ds"], all, vec![status::<apps::DaemonSet>()]),
        entry::<apps::Deployment>(
            &["deploy"],
            all,
            vec![status::<apps::Deployment>(), scale()],
        ),
        entry::<apps::ReplicaSet>(&["rs"], all, vec![status::<apps::ReplicaSet>(), scale()]),
        entry::<apps::StatefulSet>(&["sts"], all, vec![status::<apps::StatefulSet>(), scale()]),
        // autoscaling/v1
        entry::<k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler>(
            &["hpa"],
            all,
            vec![status::<
                k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler,
            >()],
        ),
        // batch/v1
        entry::<batch::CronJob>(&["cj"], all, vec![status::<batch::CronJob>()]),
        entry::<batch::Job>(&[], all, vec![status::<batch::Job>()]),
        // coordination.k8s.io/v1
        entry::<coord::Lease>(&[], none, vec![]),
        // discovery.k8s.io/v1
        entry::<disc::EndpointSlice>(&[], none, vec![]),
        // events.k8s.io/v1
        entry::<ev::Event>(&["ev"], none, vec![]),
        // networking.k8s.io/v1
        entry::<net::IngressClass>(&[], none, vec![]),
        entry::<net::Ingress>(&["ing"], none, vec![status::<net::Ingress>()]),
        entry::<net::NetworkPolicy>(&["netpol"], none, vec![]),
        entry::<net::IPAddress>(&["ip"], none, vec![]),
        entry::<net::ServiceCIDR>(&[], none, vec![status::<net::ServiceCIDR>()]),
        // policy/v1
        entry::<policy::PodDisruptionBudget>(
            &["pdb"],
            none,
            vec![status::<policy::PodDisruptionBudget>()],
        ),
        // rbac.authorization.k8s.io/v1
        entry::<rbac::ClusterRoleBinding>(&[], none, vec![]),
        entry::<rbac::ClusterRole>(&[], none, vec![]),
        entry::<rbac::RoleBinding>(&[], none, vec![]),
        entry::<rbac::Role>(&[], none, vec![]),
        // scheduling.k8s.io/v1
        entry::<sched::PriorityClass>(&["pc"], none, vec![]),
        // storage.k8s.io/v1
        entry::<storage::CSIDriver>(&[], none, vec![]),
        entry::<storage::CSINode>(&[], none, vec![]),
        entry::<storage::CSIStorageCapacity>(&[], none, vec![]),
        entry::<storage::StorageClass>(&["sc"], none, vec![]),
        entry::<storage::VolumeAttachment>(&[], none, vec![status::<storage::VolumeAttachment>()]),
        // apiextensions.k8s.io/v1
        entry::<apiext::CustomResourceDefinition>(
            &["crd", "crds"],
            &["api-extensions"],
            vec![status::<apiext::CustomResourceDefinition>()],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogue_has_upstream_names() {
        let cat = builtin();
        let pods = cat.iter().find(|r| r.plural == "pods").unwrap();
        assert_eq!(
            (
                pods.group.as_str(),
                pods.version.as_str(),
                pods.kind.as_str()
            ),
            ("", "v1", "Pod")
        );
        assert!(pods.namespaced);
        assert_eq!(pods.short_names, vec!["po"]);
        assert!(pods.subresource("binding").is_some());
        let deploy = cat.iter().find(|r| r.plural == "deployments").unwrap();
        assert_eq!(deploy.api_version(), "apps/v1");
        assert_eq!(deploy.subresource("scale").unwrap().group, "autoscaling");
        let nodes = cat.iter().find(|r| r.plural == "nodes").unwrap();
        assert!(!nodes.namespaced);
        let crd = cat
            .iter()
            .find(|r| r.kind == "CustomResourceDefinition")
            .unwrap();
        assert_eq!(crd.plural, "customresourcedefinitions");
        // plurals are unique within a group
        let mut seen = std::collections::HashSet::new();
        for r in &cat {
            assert!(
                seen.insert((r.group.clone(), r.plural.clone())),
                "duplicate {}",
                r.plural
            );
        }
    }
}
