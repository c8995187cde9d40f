#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and fails if any of them
# finds a crash (panic, sanitizer report, timeout or out-of-memory).
#
#   scripts/fuzz.sh                  every target, FUZZ_SECONDS (default 20) each
#   scripts/fuzz.sh quantity json_patch   only these targets
#
# Environment:
#   FUZZ_SECONDS    libFuzzer -max_total_time per target (default 20)
#   FUZZ_BUILD      release (default): cargo fuzz's optimised build with debug
#                   assertions, the fastest fuzzing; dev: unoptimised (--dev, debug
#                   assertions and overflow checks too): a cold build in a fraction
#                   of the time (about 3 vs over 10 minutes on two cores, with
#                   FUZZ_SANITIZER=none) but fewer executions per second; CI uses it
#   FUZZ_SANITIZER  cargo fuzz --sanitizer: address (default) or none. Flotilla's
#                   api/apiserver code has no `unsafe`, so `none` still catches every
#                   panic, overflow and hang; address adds checks of unsafe code in
#                   dependencies and costs build and run time
#   FUZZ_JOBS       targets fuzzed at the same time (default 1; each uses one core)
#   FUZZ_TIMEOUT    seconds one input may take before it counts as a hang (default 25)
#   CI=true         also require fuzz/Cargo.lock to be complete (like --locked)
#
# Each target starts from its committed seeds (fuzz/seeds/<target>/, re-checked on every
# run, including inputs that once crashed) plus the corpus grown by earlier runs
# (fuzz/corpus/<target>/, gitignored). Crashing inputs land in
# fuzz/artifacts/<target>/ and logs in fuzz/artifacts/logs/<target>.log.
#
# cargo-fuzz needs nightly-only rustc flags (-Z sanitizer, coverage instrumentation);
# with the stable toolchain they are unlocked with RUSTC_BOOTSTRAP=1. If cargo-fuzz is
# missing, the version pinned in scripts/install-tools.sh is installed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
FUZZ_BUILD="${FUZZ_BUILD:-release}"
FUZZ_SANITIZER="${FUZZ_SANITIZER:-address}"
FUZZ_JOBS="${FUZZ_JOBS:-1}"
FUZZ_TIMEOUT="${FUZZ_TIMEOUT:-25}"
LOGS="$ROOT/fuzz/artifacts/logs"

log() { printf '\033[1m[fuzz]\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

[[ $FUZZ_SECONDS =~ ^[0-9]+$ ]] || die "FUZZ_SECONDS must be a whole number of seconds"
[[ $FUZZ_JOBS =~ ^[1-9][0-9]*$ ]] || die "FUZZ_JOBS must be a positive whole number"
case "$FUZZ_BUILD" in
  release) build_flags=() ;;
  dev) build_flags=(--dev) ;;
  *) die "FUZZ_BUILD must be release or dev, not '$FUZZ_BUILD'" ;;
esac
build_flags+=(--sanitizer "$FUZZ_SANITIZER")

command -v cargo >/dev/null || die "cargo not found: install Rust (rustup) first"
if ! cargo fuzz --version >/dev/null 2>&1; then
  version="$(sed -n 's/^CARGO_FUZZ_VERSION="\([^"]*\)".*/\1/p' "$ROOT/scripts/install-tools.sh")"
  [[ -n $version ]] || die "no CARGO_FUZZ_VERSION in scripts/install-tools.sh"
  log "cargo install cargo-fuzz --version $version --locked"
  cargo install cargo-fuzz --version "$version" --locked
fi
export RUSTC_BOOTSTRAP=1
# cargo fuzz keeps its own target dir (fuzz/target): its build flags differ from the
# workspace's, so sharing a CARGO_TARGET_DIR would only make both rebuild.
unset CARGO_TARGET_DIR

cd "$ROOT"
if [[ "${CI:-}" == "true" ]]; then
  # cargo fuzz has no --locked; this fails as `cargo build --locked` would if the
  # workspace's dependencies changed and fuzz/Cargo.lock was not updated with them.
  cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null \
    || die "fuzz/Cargo.lock is out of date: run scripts/fuzz.sh locally and commit it"
fi
if [[ $# -gt 0 ]]; then
  TARGETS=("$@")
else
  mapfile -t TARGETS < <(cargo fuzz list)
fi
[[ ${#TARGETS[@]} -gt 0 ]] || die "no fuzz targets"

log "building ${TARGETS[*]} (build: $FUZZ_BUILD, sanitizer: $FUZZ_SANITIZER)"
start=$SECONDS
if [[ $# -eq 1 ]]; then
  cargo fuzz build "${build_flags[@]}" "$1" || die "build failed"
else
  cargo fuzz build "${build_flags[@]}" || die "build failed"
fi
log "built in $((SECONDS - start))s"

# Fuzzes one target; its exit status goes to $LOGS/<target>.status.
fuzz_one() {
  local target="$1" corpus="fuzz/corpus/$1" seeds="fuzz/seeds/$1"
  mkdir -p "$corpus"
  local dirs=("$corpus")
  [[ -d $seeds ]] && dirs+=("$seeds")
  local status=0
  cargo fuzz run "${build_flags[@]}" "$target" "${dirs[@]}" -- \
    -max_total_time="$FUZZ_SECONDS" -timeout="$FUZZ_TIMEOUT" -print_final_stats=1 \
    >"$LOGS/$target.log" 2>&1 || status=$?
  echo "$status" >"$LOGS/$target.status"
}

mkdir -p "$LOGS"
log "fuzzing ${#TARGETS[@]} targets, ${FUZZ_SECONDS}s each, $FUZZ_JOBS at a time"
start=$SECONDS
for target in "${TARGETS[@]}"; do
  rm -f "$LOGS/$target.status"
  while [[ $(jobs -rp | wc -l) -ge $FUZZ_JOBS ]]; do wait -n || true; done
  log "$target: ${FUZZ_SECONDS}s"
  fuzz_one "$target" &
done
wait
log "fuzzed in $((SECONDS - start))s"

failed=()
summary=()
for target in "${TARGETS[@]}"; do
  status="$(cat "$LOGS/$target.status" 2>/dev/null || echo '?')"
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOGS/$target.log" | tail -n1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$LOGS/$target.log" | tail -n1)"
  if [[ $status == 0 ]]; then
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
  log "crashes in: ${failed[*]} (reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run ${build_flags[*]} <target> fuzz/artifacts/<target>/<file>)"
  exit 1
fi
