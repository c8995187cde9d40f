//! Table-driven tests for validation and defaulting.
