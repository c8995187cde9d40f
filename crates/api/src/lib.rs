//! Shared Kubernetes API helpers with no I/O.
//!
//! Everything here is pure logic over API objects (mostly `serde_json::Value` and
//! `k8s-openapi` types): the catalogue of built-in resources, label and field selectors,
//! quantities, name and object validation with upstream defaulting, the three PATCH
//! flavours, and the server-side table printers. It is used by the API server, the
//! controllers and the built-in CLI alike, so it must never depend on the store, the
//! network or any runtime crate.

pub mod catalog;
pub mod duration;
pub mod fields;
pub mod names;
pub mod patch;
pub mod printers;
pub mod proto;
pub mod quantity;
pub mod selector;
pub mod validation;
