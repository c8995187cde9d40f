//! The `flotilla` binary: one executable, every cluster role as a subcommand.
fn main() {}
