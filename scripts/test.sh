#!/usr/bin/env bash
# The project's test command. Runs, in order:
#   1. cargo fmt --all --check
#   2. cargo clippy --workspace --all-targets -- -D warnings
#   3. cargo test --workspace
#   4. fuzz (bounded): scripts/fuzz.sh, every cargo-fuzz target in fuzz/ for
#      FUZZ_SECONDS (default 10) from its seeds, in the quick-to-build mode
#      (unoptimised, no sanitizer; 3-6 minutes cold on 2 cores, build included).
#      Only in CI (CI=true) or with --fuzz; fails if a target crashes.
#   5. cargo build -p flotilla (the dev profile cargo test already compiled;
#      benchmarks build their own release binary, see scripts/bench.sh)
#   6. pytest tests/e2e   (real kubectl v1.33 + v1.20, helm, Python client
#                          against target/debug/flotilla)
# Every step runs even when an earlier one failed (so one run shows all
# problems), except that e2e needs the binary build. Exits non-zero if any
# step failed.
#
# Options:
#   --quick       fmt + clippy + unit tests only (no fuzz, binary build or e2e)
#   --no-e2e      everything except the e2e suite
#   --e2e-only    binary build + e2e suite only
#   --fuzz        run the fuzz step outside CI too
#   --no-fuzz     skip the fuzz step in CI
#   -- ARGS...    extra arguments for pytest (e.g. -- -k apply -x)
#
# Tools come from scripts/install-tools.sh (run it once first; it also
# installs cargo-fuzz).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

run_cargo=1
run_build=1
run_e2e=1
run_fuzz=0
if [[ "${CI:-}" == "true" ]]; then run_fuzz=1; fi
no_fuzz=0
pytest_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) run_build=0; run_e2e=0 ;;
    --no-e2e) run_e2e=0 ;;
    --e2e-only) run_cargo=0 ;;
    --fuzz) run_fuzz=1 ;;
    --no-fuzz) no_fuzz=1 ;;
    --) shift; pytest_args=("$@"); break ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
# The fuzz step belongs to full runs only.
if [[ $no_fuzz -eq 1 || $run_cargo -eq 0 || $run_build -eq 0 ]]; then run_fuzz=0; fi

# In CI the committed Cargo.lock must already be complete.
cargo_flags=()
if [[ "${CI:-}" == "true" ]]; then cargo_flags+=(--locked); fi

failed=()
summary=()
step() {
  local name="$1"; shift
  printf '\n\033[1m==> %s\033[0m\n' "$name"
  local start=$SECONDS
  if "$@"; then
    summary+=("ok    $(printf '%4ds' $((SECONDS - start)))  $name")
  else
    summary+=("FAIL  $(printf '%4ds' $((SECONDS - start)))  $name")
    failed+=("$name")
    return 1
  fi
}

if [[ $run_cargo -eq 1 ]]; then
  step "cargo fmt --check" cargo fmt --all --check
  step "cargo clippy" cargo clippy "${cargo_flags[@]}" --workspace --all-targets -- -D warnings
  step "cargo test" cargo test "${cargo_flags[@]}" --workspace
fi

# Before the e2e suite: the order does not change the total time (fuzz builds
# into its own fuzz/target, nothing is shared with target/), and this way a
# crash report shows up before the long e2e run. Two targets run at a time.
if [[ $run_fuzz -eq 1 ]]; then
  step "fuzz (bounded)" env FUZZ_BUILD="${FUZZ_BUILD:-dev}" \
    FUZZ_SANITIZER="${FUZZ_SANITIZER:-none}" FUZZ_SECONDS="${FUZZ_SECONDS:-10}" \
    FUZZ_JOBS="${FUZZ_JOBS:-2}" bash scripts/fuzz.sh
fi

if [[ $run_build -eq 1 ]]; then
  if step "cargo build -p flotilla" cargo build "${cargo_flags[@]}" -p flotilla; then
    if [[ $run_e2e -eq 1 ]]; then
      py="$ROOT/.tools/venv/bin/python"
      if [[ ! -x $py ]]; then
        echo "missing $py: run scripts/install-tools.sh first" >&2
        failed+=("e2e (tools not installed)")
      else
        target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
        export FLOTILLA_BIN="${FLOTILLA_BIN:-$target_dir/debug/flotilla}"
        step "pytest tests/e2e" "$py" -m pytest tests/e2e "${pytest_args[@]}"
      fi
    fi
  elif [[ $run_e2e -eq 1 ]]; then
    failed+=("e2e (skipped: build failed)")
  fi
fi

printf '\n\033[1m==> summary\033[0m\n'
printf '  %s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
  printf '\033[31mFAILED:\033[0m %s\n' "${failed[@]}"
  exit 1
fi
echo "all steps passed"
