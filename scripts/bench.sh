#!/usr/bin/env bash
# Builds the release binary and runs `flotilla bench` with the given arguments.
#
#   scripts/bench.sh              full run (~5 min: 100k pods, 100 watchers, etcd)
#   scripts/bench.sh --quick      smoke test (~30 s), as CI runs it
#   scripts/bench.sh --json       JSON report on stdout, table on stderr
#
# The comparison with etcd needs /usr/bin/etcd (scripts/install-tools.sh);
# without it that row is skipped. Run it on an otherwise idle machine: the
# server and its clients share the CPUs, and anything else running skews the
# figures.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
cargo build --release -p flotilla >&2
exec "$ROOT/target/release/flotilla" bench "$@"
