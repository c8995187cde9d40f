//! Timing of pod sandbox network setup and teardown.
