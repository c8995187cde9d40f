//! Flotilla's container runtime: the node-local layer under the kubelet that turns a
//! container spec into isolated processes — pod sandboxes with pinned namespaces, cgroups
//! (v1 and v2, kubelet-style hierarchy), an OCI bundle per container run by the built-in
//! low-level runtime ([`init`]) or an OCI runtime binary such as runc, a per-container
//! [`shim`] that survives kubelet restarts, CRI-format logs, exec, [`attach`], stop and
//! removal.
//!
//! It must never depend on the API server, the image store or the network crate: it takes
//! a rootfs as overlay lowerdirs or a directory, and hands out a network namespace path.
//! `flotilla ctr` and the kubelet share its on-disk state (`<data-dir>/containers`).

pub mod attach;
pub mod cgroup;
pub mod init;
pub mod logs;
pub mod oci;
pub mod runtime;
pub mod seccomp;
pub mod shim;
pub mod spec;
pub mod state;

pub use attach::{AttachConn, AttachOptions};
pub use runtime::{
    Config, ContainerRuntime, Error, ExecRequest, OciRuntimeBinary, Result, Runtime, Stats,
};
pub use spec::{
    ContainerInfo, ContainerSpec, ContainerState, DnsConfig, ImageDefaults, MountSpec, QosClass,
    Resources, Rootfs, SandboxInfo, SandboxSpec,
};
