#!/usr/bin/env bash
# Node benchmarks (issue #5): builds the release binary and runs scripts/bench-node.py
# as root against a fresh `flotilla server` with its kubelet:
#
#   sudo scripts/bench-node.sh            full run (~10 min): 100 pods burst + sequential,
#                                         idle usage with 0 and 50 pods, logs -f and
#                                         port-forward throughput
#   sudo scripts/bench-node.sh --quick    smoke run (~2 min)
#   sudo scripts/bench-node.sh --json     JSON report on stdout, table on stderr
#
# It needs the node's ports (10250, 10248), the flotilla0 bridge and the `ip flotilla`
# nft table for itself: on a machine shared with e2e runs, wrap it in
# `flock /tmp/node-e2e.lock`. FLOTILLA_BIN=path skips the build and uses that binary.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ -z "${FLOTILLA_BIN:-}" ]]; then
    cargo build --release -p flotilla >&2
    export FLOTILLA_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/flotilla"
fi
PY="$ROOT/.tools/venv/bin/python"
[[ -x "$PY" ]] || { echo "missing $PY: run scripts/install-tools.sh" >&2; exit 2; }
exec "$PY" "$ROOT/scripts/bench-node.py" "$@"
