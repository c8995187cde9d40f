//! Which printer serves a kind, and each printer's column definitions (names, types,
//! formats, priorities and descriptions as upstream v1.33 declares them).

use k8s_openapi::api::{
    apps::v1 as apps, autoscaling::v1 as autoscaling, batch::v1 as batch,
    coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
    networking::v1 as networking, rbac::v1 as rbac, scheduling::v1 as scheduling,
    storage::v1 as storage,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Column;
use super::docs::field;

/// A printer upstream registers for a kind; everything else uses the default table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Printer {
    Pod,
    PodTemplate,
    ReplicationController,
    Service,
    Endpoints,
    Node,
    Event,
    EventsV1Event,
    Namespace,
    Secret,
    ServiceAccount,
    PersistentVolume,
    PersistentVolumeClaim,
    ConfigMap,
    ResourceQuota,
    Deployment,
    ReplicaSet,
    DaemonSet,
    StatefulSet,
    ControllerRevision,
    Job,
    CronJob,
    PodDisruptionBudget,
    Scale,
    Lease,
    EndpointSlice,
    Ingress,
    IngressClass,
    NetworkPolicy,
    IpAddress,
    ServiceCidr,
    RoleBinding,
    ClusterRoleBinding,
    PriorityClass,
    StorageClass,
    CsiDriver,
    CsiNode,
    VolumeAttachment,
    CsiStorageCapacity,
    /// Upstream's default table convertor: Name and Created At.
    Default,
}

/// The printer upstream uses for `group`/`kind` (group `""` is core).
pub(super) fn resolve(group: &str, kind: &str) -> Printer {
    use Printer::*;
    match (group, kind) {
        ("", "Pod") => Pod,
        ("", "PodTemplate") => PodTemplate,
        ("", "ReplicationController") => ReplicationController,
        ("", "Service") => Service,
        ("", "Endpoints") => Endpoints,
        ("", "Node") => Node,
        ("", "Event") => Event,
        ("events.k8s.io", "Event") => EventsV1Event,
        ("", "Namespace") => Namespace,
        ("", "Secret") => Secret,
        ("", "ServiceAccount") => ServiceAccount,
        ("", "PersistentVolume") => PersistentVolume,
        ("", "PersistentVolumeClaim") => PersistentVolumeClaim,
        ("", "ConfigMap") => ConfigMap,
        ("", "ResourceQuota") => ResourceQuota,
        ("apps", "Deployment") => Deployment,
        ("apps", "ReplicaSet") => ReplicaSet,
        ("apps", "DaemonSet") => DaemonSet,
        ("apps", "StatefulSet") => StatefulSet,
        ("apps", "ControllerRevision") => ControllerRevision,
        ("batch", "Job") => Job,
        ("batch", "CronJob") => CronJob,
        ("policy", "PodDisruptionBudget") => PodDisruptionBudget,
        ("autoscaling", "Scale") => Scale,
        ("coordination.k8s.io", "Lease") => Lease,
        ("discovery.k8s.io", "EndpointSlice") => EndpointSlice,
        ("networking.k8s.io", "Ingress") => Ingress,
        ("networking.k8s.io", "IngressClass") => IngressClass,
        ("networking.k8s.io", "NetworkPolicy") => NetworkPolicy,
        ("networking.k8s.io", "IPAddress") => IpAddress,
        ("networking.k8s.io", "ServiceCIDR") => ServiceCidr,
        ("rbac.authorization.k8s.io", "RoleBinding") => RoleBinding,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => ClusterRoleBinding,
        ("scheduling.k8s.io", "PriorityClass") => PriorityClass,
        ("storage.k8s.io", "StorageClass") => StorageClass,
        ("storage.k8s.io", "CSIDriver") => CsiDriver,
        ("storage.k8s.io", "CSINode") => CsiNode,
        ("storage.k8s.io", "VolumeAttachment") => VolumeAttachment,
        ("storage.k8s.io", "CSIStorageCapacity") => CsiStorageCapacity,
        _ => Default,
    }
}

fn column(name: &str, type_: &str, format: &str, priority: i32, description: String) -> Column {
    Column {
        name: name.to_string(),
        type_: type_.to_string(),
        format: format.to_string(),
        priority,
        description,
    }
}

/// A priority-0 column.
fn c(name: &str, type_: &str, description: impl Into<String>) -> Column {
    column(name, type_, "", 0, description.into())
}

/// A priority-1 (`-o wide`) column.
fn w(name: &str, type_: &str, description: impl Into<String>) -> Column {
    column(name, type_, "", 1, description.into())
}

/// The `Name` column every printer starts with.
pub(super) fn name_column() -> Column {
    column("Name", "string", "name", 0, field::<ObjectMeta>("name"))
}

/// The `Age` column (a string cell holding a human duration).
fn age() -> Column {
    c("Age", "string", field::<ObjectMeta>("creationTimestamp"))
}

/// Description of a creation timestamp, used by date columns.
pub(super) fn creation_timestamp_doc() -> String {
    field::<ObjectMeta>("creationTimestamp")
}

const CONTAINERS_DOC: &str = "Names of each container in the template.";
const IMAGES_DOC: &str = "Images referenced by each container in the template.";

fn containers_images() -> [Column; 2] {
    [
        w("Containers", "string", CONTAINERS_DOC),
        w("Images", "string", IMAGES_DOC),
    ]
}

/// Column definitions of `printer`, including `-o wide` ones.
pub(super) fn definitions(printer: Printer) -> Vec<Column> {
    use Printer::*;
    let mut cols = vec![name_column()];
    match printer {
        Pod => cols.extend([
            c("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
            c("Status", "string", "The aggregate status of the containers in this pod."),
            c(
                "Restarts",
                "string",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            age(),
            w("IP", "string", field::<core::PodStatus>("podIP")),
            w("Node", "string", field::<core::PodSpec>("nodeName")),
            w("Nominated Node", "string", field::<core::PodStatus>("nominatedNodeName")),
            w("Readiness Gates", "string", field::<core::PodSpec>("readinessGates")),
        ]),
        PodTemplate => cols.extend([
            c("Containers", "string", CONTAINERS_DOC),
            c("Images", "string", IMAGES_DOC),
            c("Pod Labels", "string", "The labels for the pod template."),
        ]),
        PodDisruptionBudget => cols.extend([
            c("Min Available", "string", "The minimum number of pods that must be available."),
            c("Max Unavailable", "string", "The maximum number of pods that may be unavailable."),
            c("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."),
            age(),
        ]),
        ReplicationController => {
            cols.extend([
                c("Desired", "integer", field::<core::ReplicationControllerSpec>("replicas")),
                c("Current", "integer", field::<core::ReplicationControllerStatus>("replicas")),
                c("Ready", "integer", field::<core::ReplicationControllerStatus>("readyReplicas")),
                age(),
            ]);
            cols.extend(containers_images());
            cols.push(w("Selector", "string", field::<core::ReplicationControllerSpec>("selector")));
        }
        ReplicaSet => {
            cols.extend([
                c("Desired", "integer", field::<apps::ReplicaSetSpec>("replicas")),
                c("Current", "integer", field::<apps::ReplicaSetStatus>("replicas")),
                c("Ready", "integer", field::<apps::ReplicaSetStatus>("readyReplicas")),
                age(),
            ]);
            cols.extend(containers_images());
            cols.push(w("Selector", "string", field::<apps::ReplicaSetSpec>("selector")));
        }
        DaemonSet => {
            cols.extend([
                c("Desired", "integer", field::<apps::DaemonSetStatus>("desiredNumberScheduled")),
                c("Current", "integer", field::<apps::DaemonSetStatus>("currentNumberScheduled")),
                c("Ready", "integer", field::<apps::DaemonSetStatus>("numberReady")),
                c("Up-to-date", "integer", field::<apps::DaemonSetStatus>("updatedNumberScheduled")),
                c("Available", "integer", field::<apps::DaemonSetStatus>("numberAvailable")),
                c("Node Selector", "string", field::<core::PodSpec>("nodeSelector")),
                age(),
            ]);
            cols.extend(containers_images());
            cols.push(w("Selector", "string", field::<apps::DaemonSetSpec>("selector")));
        }
        Job => {
            cols.extend([
                c("Status", "string", "Status of the job."),
                c("Completions", "string", field::<batch::JobStatus>("succeeded")),
                c("Duration", "string", "Time required to complete the job."),
                age(),
            ]);
            cols.extend(containers_images());
            cols.push(w("Selector", "string", field::<batch::JobSpec>("selector")));
        }
        CronJob => {
            cols.extend([
                c("Schedule", "string", field::<batch::CronJobSpec>("schedule")),
                c("Timezone", "string", field::<batch::CronJobSpec>("timeZone")),
                c("Suspend", "boolean", field::<batch::CronJobSpec>("suspend")),
                c("Active", "integer", field::<batch::CronJobStatus>("active")),
                c("Last Schedule", "string", field::<batch::CronJobStatus>("lastScheduleTime")),
                age(),
            ]);
            cols.extend(containers_images());
            cols.push(w("Selector", "string", field::<batch::JobSpec>("selector")));
        }
        Service => cols.extend([
            c("Type", "string", field::<core::ServiceSpec>("type")),
            c("Cluster-IP", "string", field::<core::ServiceSpec>("clusterIP")),
            c("External-IP", "string", field::<core::ServiceSpec>("externalIPs")),
            c("Port(s)", "string", field::<core::ServiceSpec>("ports")),
            age(),
            w("Selector", "string", field::<core::ServiceSpec>("selector")),
        ]),
        Ingress => cols.extend([
            c(
                "Class",
                "string",
                "The name of the IngressClass resource that should be used for additional configuration",
            ),
            c("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule"),
            c("Address", "string", "Address is a list containing ingress points for the load-balancer"),
            c("Ports", "string", "Ports of TLS configurations that open"),
            age(),
        ]),
        IngressClass => cols.extend([
            c("Controller", "string", "Controller that is responsible for handling this class"),
            c("Parameters", "string", "A reference to a resource with additional parameters"),
            age(),
        ]),
        StatefulSet => {
            cols.extend([c("Ready", "string", "Number of the pod with ready state"), age()]);
            cols.extend(containers_images());
        }
        Endpoints => cols.extend([c("Endpoints", "string", field::<core::Endpoints>("subsets")), age()]),
        Node => cols.extend([
            c("Status", "string", "The status of the node"),
            c("Roles", "string", "The roles of the node"),
            age(),
            c("Version", "string", field::<core::NodeSystemInfo>("kubeletVersion")),
            w("Internal-IP", "string", field::<core::NodeStatus>("addresses")),
            w("External-IP", "string", field::<core::NodeStatus>("addresses")),
            w("OS-Image", "string", field::<core::NodeSystemInfo>("osImage")),
            w("Kernel-Version", "string", field::<core::NodeSystemInfo>("kernelVersion")),
            w("Container-Runtime", "string", field::<core::NodeSystemInfo>("containerRuntimeVersion")),
        ]),
        Event | EventsV1Event => {
            // Upstream's event table starts with Last Seen, and its Name column is wide-only.
            cols = vec![
                c("Last Seen", "string", field::<core::Event>("lastTimestamp")),
                c("Type", "string", field::<core::Event>("type")),
                c("Reason", "string", field::<core::Event>("reason")),
                c("Object", "string", field::<core::Event>("involvedObject")),
                w("Subobject", "string", field::<core::ObjectReference>("fieldPath")),
                w("Source", "string", field::<core::Event>("source")),
                c("Message", "string", field::<core::Event>("message")),
                w("First Seen", "string", field::<core::Event>("firstTimestamp")),
                w("Count", "string", field::<core::Event>("count")),
                column("Name", "string", "name", 1, field::<ObjectMeta>("name")),
            ];
        }
        Namespace => cols.extend([c("Status", "string", "The status of the namespace"), age()]),
        Secret => cols.extend([
            c("Type", "string", field::<core::Secret>("type")),
            c("Data", "string", field::<core::Secret>("data")),
            age(),
        ]),
        ServiceAccount => cols.extend([c("Secrets", "string", field::<core::ServiceAccount>("secrets")), age()]),
        PersistentVolume => cols.extend([
            c("Capacity", "string", field::<core::PersistentVolumeSpec>("capacity")),
            c("Access Modes", "string", field::<core::PersistentVolumeSpec>("accessModes")),
            c("Reclaim Policy", "string", field::<core::PersistentVolumeSpec>("persistentVolumeReclaimPolicy")),
            c("Status", "string", field::<core::PersistentVolumeStatus>("phase")),
            c("Claim", "string", field::<core::PersistentVolumeSpec>("claimRef")),
            c("StorageClass", "string", "StorageClass of the pv"),
            c("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
            c("Reason", "string", field::<core::PersistentVolumeStatus>("reason")),
            age(),
            w("VolumeMode", "string", field::<core::PersistentVolumeSpec>("volumeMode")),
        ]),
        PersistentVolumeClaim => cols.extend([
            c("Status", "string", field::<core::PersistentVolumeClaimStatus>("phase")),
            c("Volume", "string", field::<core::PersistentVolumeClaimSpec>("volumeName")),
            c("Capacity", "string", field::<core::PersistentVolumeClaimStatus>("capacity")),
            c("Access Modes", "string", field::<core::PersistentVolumeClaimStatus>("accessModes")),
            c("StorageClass", "string", "StorageClass of the pvc"),
            c("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
            age(),
            w("VolumeMode", "string", field::<core::PersistentVolumeClaimSpec>("volumeMode")),
        ]),
        Deployment => {
            cols.extend([
                c("Ready", "string", "Number of the pod with ready state"),
                c("Up-to-date", "string", field::<apps::DeploymentStatus>("updatedReplicas")),
                c("Available", "string", field::<apps::DeploymentStatus>("availableReplicas")),
                age(),
            ]);
            cols.extend(containers_images());
            cols.push(w("Selector", "string", field::<apps::DeploymentSpec>("selector")));
        }
        ConfigMap => cols.extend([c("Data", "string", field::<core::ConfigMap>("data")), age()]),
        NetworkPolicy => cols.extend([
            c("Pod-Selector", "string", field::<networking::NetworkPolicySpec>("podSelector")),
            age(),
        ]),
        RoleBinding | ClusterRoleBinding => {
            let (doc, what) = if printer == RoleBinding {
                (field::<rbac::RoleBinding>("roleRef"), "roleBinding")
            } else {
                (field::<rbac::ClusterRoleBinding>("roleRef"), "clusterRoleBinding")
            };
            cols.extend([
                c("Role", "string", doc),
                age(),
                w("Users", "string", format!("Users in the {what}")),
                w("Groups", "string", format!("Groups in the {what}")),
                w("ServiceAccounts", "string", format!("ServiceAccounts in the {what}")),
            ]);
        }
        Lease => cols.extend([c("Holder", "string", field::<coordination::LeaseSpec>("holderIdentity")), age()]),
        StorageClass => cols.extend([
            c("Provisioner", "string", field::<storage::StorageClass>("provisioner")),
            c("ReclaimPolicy", "string", field::<storage::StorageClass>("reclaimPolicy")),
            c("VolumeBindingMode", "string", field::<storage::StorageClass>("volumeBindingMode")),
            c("AllowVolumeExpansion", "string", field::<storage::StorageClass>("allowVolumeExpansion")),
            age(),
        ]),
        ControllerRevision => cols.extend([
            c("Controller", "string", "Controller of the object"),
            c("Revision", "string", field::<apps::ControllerRevision>("revision")),
            age(),
        ]),
        ResourceQuota => cols.extend([
            c(
                "Request",
                "string",
                "Request represents a minimum amount of cpu/memory that a container may consume.",
            ),
            c(
                "Limit",
                "string",
                "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
            ),
            age(),
        ]),
        PriorityClass => cols.extend([
            c("Value", "integer", field::<scheduling::PriorityClass>("value")),
            c("Global-Default", "boolean", field::<scheduling::PriorityClass>("globalDefault")),
            age(),
            c("PreemptionPolicy", "string", field::<scheduling::PriorityClass>("preemptionPolicy")),
        ]),
        VolumeAttachment => cols.extend([
            column("Attacher", "string", "name", 0, field::<storage::VolumeAttachmentSpec>("attacher")),
            c("PV", "string", field::<storage::VolumeAttachmentSource>("persistentVolumeName")),
            c("Node", "string", field::<storage::VolumeAttachmentSpec>("nodeName")),
            c("Attached", "boolean", field::<storage::VolumeAttachmentStatus>("attached")),
            age(),
        ]),
        EndpointSlice => cols.extend([
            c("AddressType", "string", field::<discovery::EndpointSlice>("addressType")),
            c("Ports", "string", field::<discovery::EndpointSlice>("ports")),
            c("Endpoints", "string", field::<discovery::EndpointSlice>("endpoints")),
            age(),
        ]),
        CsiNode => cols.extend([
            c("Drivers", "integer", "Drivers indicates the number of CSI drivers registered on the node"),
            age(),
        ]),
        CsiDriver => cols.extend([
            c("AttachRequired", "boolean", field::<storage::CSIDriverSpec>("attachRequired")),
            c("PodInfoOnMount", "boolean", field::<storage::CSIDriverSpec>("podInfoOnMount")),
            c("StorageCapacity", "boolean", field::<storage::CSIDriverSpec>("storageCapacity")),
            c("TokenRequests", "string", field::<storage::CSIDriverSpec>("tokenRequests")),
            c("RequiresRepublish", "boolean", field::<storage::CSIDriverSpec>("requiresRepublish")),
            c("Modes", "string", field::<storage::CSIDriverSpec>("volumeLifecycleModes")),
            age(),
        ]),
        CsiStorageCapacity => cols.extend([
            c("StorageClassName", "string", field::<storage::CSIStorageCapacity>("storageClassName")),
            c("Capacity", "string", field::<storage::CSIStorageCapacity>("capacity")),
        ]),
        ServiceCidr => cols.extend([c("CIDRs", "string", field::<networking::ServiceCIDRSpec>("cidrs")), age()]),
        // Upstream declares no Age column here although its rows carry one.
        IpAddress => cols.push(c("ParentRef", "string", field::<networking::IPAddressSpec>("parentRef"))),
        Scale => {
            // Upstream's Scale name column has no "name" format.
            cols = vec![
                c("Name", "string", field::<ObjectMeta>("name")),
                c("Desired", "integer", field::<autoscaling::ScaleSpec>("replicas")),
                c("Available", "integer", field::<autoscaling::ScaleStatus>("replicas")),
                age(),
            ];
        }
        Default => cols.push(c("Created At", "date", field::<ObjectMeta>("creationTimestamp"))),
    }
    cols
}
