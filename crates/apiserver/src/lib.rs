//! The Kubernetes API server (to be written).
pub mod openapi;
