//! The kubelet: the agent on every Flotilla node. It registers the Node and keeps
//! its Lease and status fresh, runs the pods bound to the node (from the API server)
//! and the static pods of its manifest directory (mirrored into the API), restarts
//! what crashes with back-off, and reports pod status.
//!
//! It drives the node only through the [`runtime::PodRuntime`] trait, and must never
//! depend on the runtime, image or network crates themselves: an adapter supplied by
//! the binary connects them.

pub mod config;
pub mod runtime;
