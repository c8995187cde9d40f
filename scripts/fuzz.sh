#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and fails if any of them
# finds a crash (panic, sanitizer report, timeout or out-of-memory).
#
#   scripts/fuzz.sh                  every target, FUZZ_SECONDS (default 20) each
#   scripts/fuzz.sh quantity json_patch   only these targets
#
# Environment:
#   FUZZ_SECONDS    libFuzzer -max_total_time per target (default 20)
#   FUZZ_SANITIZER  cargo fuzz --sanitizer: address (default) or none
#   FUZZ_TIMEOUT    seconds one input may take before it counts as a hang (default 25)
#
# Each target starts from its committed seeds (fuzz/seeds/<target>/, re-checked on every
# run, including inputs that once crashed) plus the corpus grown by earlier runs
# (fuzz/corpus/<target>/, gitignored). Crashing inputs land in
# fuzz/artifacts/<target>/ and logs in fuzz/artifacts/logs/<target>.log.
#
# cargo-fuzz needs nightly-only rustc flags (-Z sanitizer, coverage instrumentation);
# with the stable toolchain they are unlocked with RUSTC_BOOTSTRAP=1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
FUZZ_SANITIZER="${FUZZ_SANITIZER:-address}"
FUZZ_TIMEOUT="${FUZZ_TIMEOUT:-25}"
LOGS="$ROOT/fuzz/artifacts/logs"

log() { printf '\033[1m[fuzz]\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

[[ $FUZZ_SECONDS =~ ^[0-9]+$ ]] || die "FUZZ_SECONDS must be a whole number of seconds"
command -v cargo >/dev/null || die "cargo not found: install Rust (rustup) first"
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "cargo install cargo-fuzz --locked"
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

cd "$ROOT"
if [[ $# -gt 0 ]]; then
  TARGETS=("$@")
else
  mapfile -t TARGETS < <(cargo fuzz list)
fi
[[ ${#TARGETS[@]} -gt 0 ]] || die "no fuzz targets"

log "building ${TARGETS[*]} (sanitizer: $FUZZ_SANITIZER)"
cargo fuzz build --sanitizer "$FUZZ_SANITIZER" || die "build failed"

mkdir -p "$LOGS"
failed=()
summary=()
for target in "${TARGETS[@]}"; do
  corpus="fuzz/corpus/$target"
  seeds="fuzz/seeds/$target"
  mkdir -p "$corpus"
  dirs=("$corpus")
  [[ -d $seeds ]] && dirs+=("$seeds")
  log "$target: ${FUZZ_SECONDS}s"
  status=0
  cargo fuzz run --sanitizer "$FUZZ_SANITIZER" "$target" "${dirs[@]}" -- \
    -max_total_time="$FUZZ_SECONDS" -timeout="$FUZZ_TIMEOUT" -print_final_stats=1 \
    >"$LOGS/$target.log" 2>&1 || status=$?
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOGS/$target.log" | tail -n1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$LOGS/$target.log" | tail -n1)"
  if [[ $status -eq 0 ]]; then
    summary+=("$(printf '%-18s ok     %10s execs %8s/s' "$target" "${execs:-?}" "${rate:-?}")")
  else
    failed+=("$target")
    summary+=("$(printf '%-18s FAILED (exit %s), see %s' "$target" "$status" "$LOGS/$target.log")")
    # The panic message / sanitizer report and the saved crashing input.
    grep -E -m 20 "panicked at|ERROR: (AddressSanitizer|libFuzzer)|SUMMARY|Test unit written to" \
      "$LOGS/$target.log" >&2 || tail -n 20 "$LOGS/$target.log" >&2
  fi
done

log "summary:"
printf '  %s\n' "${summary[@]}" >&2
if [[ ${#failed[@]} -gt 0 ]]; then
  log "crashes in: ${failed[*]} (reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run -s $FUZZ_SANITIZER <target> fuzz/artifacts/<target>/<file>)"
  exit 1
fi
