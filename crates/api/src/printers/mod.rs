//! Server-side Table printers: the columns and cells of `meta.k8s.io/v1 Table` responses,
//! which is what `kubectl get` displays.
//!
//! Column lists, types, priorities and cell formats follow the upstream v1.33 API server's
//! printers. Some upstream quirks are deliberate and kept: the `Age` column is declared as
//! type `string` and carries a human duration (`5m`); a few boolean columns carry text
//! (`Suspend` of cron jobs) and a few string columns carry numbers (`Data`, `Count`);
//! kinds without a dedicated printer (roles, cluster roles, limit ranges, CRDs, …) get
//! upstream's default table of `Name` and `Created At` (type `date`, RFC 3339 text).
//!
//! The API server always prints "wide", so [`row`] returns a cell for every column,
//! priority-1 ones included; clients hide those unless asked for `-o wide`.
//!
//! Objects are read as JSON and are expected to be stored with upstream defaults applied;
//! where upstream's decoding would unconditionally default a printed field (replicas to 1,
//! service type `ClusterIP`, port protocol `TCP`, secret type `Opaque`, …) a missing value
//! is printed as that default.
//!
//! Custom resources are printed from their CRD's `additionalPrinterColumns` with
//! [`CrdTable`] (or the one-shot [`custom_table`] / [`crd_columns_and_row`]).

mod cluster;
mod columns;
mod core;
mod crd;
mod docs;
mod jsonpath;
mod quantity_text;
mod util;
mod workloads;

#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use columns::Printer;

pub use crd::{CrdTable, crd_columns_and_row, custom_table};
pub use util::human_duration;

/// One column definition of a Table (`meta.k8s.io/v1 TableColumnDefinition`); serializes
/// to the wire form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Column {
    /// Display name, e.g. `Name`, `Nominated Node` (clients upper-case it).
    pub name: String,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `name` for the column holding the object name, else usually empty.
    pub format: String,
    /// Description of the column.
    pub description: String,
    /// 0, or 1 for columns shown only with `-o wide`.
    pub priority: i32,
}

/// Problems with a CRD's printer columns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrinterError {
    /// A column's JSONPath cannot be parsed.
    #[error("unrecognized column definition {json_path:?}: {reason}")]
    InvalidColumn { json_path: String, reason: String },
    /// A column lacks its name or JSONPath.
    #[error("additionalPrinterColumns[{0}] needs a name and a jsonPath")]
    IncompleteColumn(usize),
    /// `additionalPrinterColumns` is not a list.
    #[error("additionalPrinterColumns must be a list")]
    NotAnArray,
    /// The CRD does not define the requested version.
    #[error("version {0:?} not found in the CustomResourceDefinition")]
    VersionNotFound(String),
}

/// Column definitions for built-in `kind` of API `group` (`""` for core), including wide
/// (priority 1) columns. Kinds without an upstream printer get `Name` and `Created At`.
pub fn columns(group: &str, kind: &str) -> Vec<Column> {
    columns::definitions(columns::resolve(group, kind))
}

/// Whether upstream has a dedicated printer for the kind (otherwise the default
/// `Name`/`Created At` table is used).
pub fn has_printer(group: &str, kind: &str) -> bool {
    columns::resolve(group, kind) != Printer::Default
}

/// The cells of `obj` (a `group`/`kind` object as JSON), one per column of
/// [`columns`], evaluated at time `now`.
///
/// One upstream quirk is kept: the `networking.k8s.io` IPAddress row carries an age cell
/// after its two declared columns.
pub fn row(group: &str, kind: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    use Printer::*;
    match columns::resolve(group, kind) {
        Pod => core::pod(obj, now),
        PodTemplate => core::pod_template(obj),
        ReplicationController => core::replication_controller(obj, now),
        Service => core::service(obj, now),
        Endpoints => core::endpoints(obj, now),
        Node => core::node(obj, now),
        Event => core::event(obj, now, false),
        EventsV1Event => core::event(obj, now, true),
        Namespace => core::namespace(obj, now),
        Secret => core::secret(obj, now),
        ServiceAccount => core::service_account(obj, now),
        PersistentVolume => core::persistent_volume(obj, now),
        PersistentVolumeClaim => core::persistent_volume_claim(obj, now),
        ConfigMap => core::config_map(obj, now),
        ResourceQuota => core::resource_quota(obj, now),
        Deployment => workloads::deployment(obj, now),
        ReplicaSet => workloads::replica_set(obj, now),
        DaemonSet => workloads::daemon_set(obj, now),
        StatefulSet => workloads::stateful_set(obj, now),
        ControllerRevision => workloads::controller_revision(obj, now),
        Job => workloads::job(obj, now),
        CronJob => workloads::cron_job(obj, now),
        PodDisruptionBudget => workloads::pod_disruption_budget(obj, now),
        Scale => workloads::scale(obj, now),
        Lease => cluster::lease(obj, now),
        EndpointSlice => cluster::endpoint_slice(obj, now),
        Ingress => cluster::ingress(obj, now),
        IngressClass => cluster::ingress_class(obj, now),
        NetworkPolicy => cluster::network_policy(obj, now),
        IpAddress => cluster::ip_address(obj, now),
        ServiceCidr => cluster::service_cidr(obj, now),
        RoleBinding | ClusterRoleBinding => cluster::role_binding(obj, now),
        PriorityClass => cluster::priority_class(obj, now),
        StorageClass => cluster::storage_class(obj, now),
        CsiDriver => cluster::csi_driver(obj, now),
        CsiNode => cluster::csi_node(obj, now),
        VolumeAttachment => cluster::volume_attachment(obj, now),
        CsiStorageCapacity => cluster::csi_storage_capacity(obj),
        Default => cluster::default_row(obj),
    }
}

/// The `conditions` upstream attaches to a row (`meta.k8s.io/v1 TableRowCondition` JSON):
/// a `Completed` condition for succeeded or failed pods, nothing otherwise.
pub fn row_conditions(group: &str, kind: &str, obj: &Value) -> Vec<Value> {
    match columns::resolve(group, kind) {
        Printer::Pod => core::pod_conditions(obj),
        _ => Vec::new(),
    }
}
