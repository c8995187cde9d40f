"""`flotilla ctr run IMAGE` on a real node (issue #4): the image is pulled from a local
Debian `docker-registry` (plain http, `--insecure-registry`) into the node's image store,
unpacked, and run as a real container whose output and exit code come back; bad
references and unreachable registries are clear errors.

Needs root (real containers); skipped loudly otherwise. Starts no kubelet, so it does
not compete with the real-node modules for ports.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
MAKE_IMAGE = ROOT / "crates" / "images" / "tests" / "fixtures" / "make-busybox-image.sh"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="LOUD SKIP: real containers need root (CI runs as root)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    """Debian's docker-registry on a free loopback port, holding busybox:e2e."""
    base = tmp_path_factory.mktemp("registry")
    addr = f"127.0.0.1:{_free_port()}"
    (base / "storage").mkdir()
    cfg = base / "config.yml"
    cfg.write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                   f"    rootdirectory: {base / 'storage'}\nhttp:\n  addr: {addr}\n")
    proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                s = requests.Session()
                s.trust_env = False
                if s.get(f"http://{addr}/v2/", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "docker-registry did not start"
            time.sleep(0.1)
        oci = base / "oci"
        subprocess.run(["bash", str(MAKE_IMAGE), str(oci), "e2e"], check=True,
                       capture_output=True, timeout=120)
        subprocess.run(["skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false", "-q",
                        f"oci:{oci}:e2e", f"docker://{addr}/busybox:e2e"], check=True,
                       capture_output=True, timeout=120)
        yield addr
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _ctr(binary: Path, data: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), "ctr", "--data-dir", str(data), *args],
                          capture_output=True, text=True, timeout=timeout)


def test_run_pulls_the_image_and_returns_the_exit_code(flotilla_bin: Path, tmp_path: Path,
                                                       registry: str):
    data = tmp_path / "data"
    image = f"{registry}/busybox:e2e"
    try:
        p = _ctr(flotilla_bin, data, "run", "--rm", "--insecure-registry", registry, image, "--",
                 "sh", "-c", "echo hello from $(hostname) pid $$; exit 3")
        assert p.returncode == 3, p.stderr
        assert "hello from" in p.stdout and "pid 1" in p.stdout, p.stdout
        # The pull went into the node's store: `ctr images` lists it, by digest.
        images = _ctr(flotilla_bin, data, "images", "ls")
        assert images.returncode == 0 and f"{registry}/busybox" in images.stdout, images.stdout
        # --rm removed the container.
        ps = _ctr(flotilla_bin, data, "ps", "-a", "-q")
        assert ps.returncode == 0 and ps.stdout.strip() == "", ps.stdout

        # The image is present now: --pull=never runs it, with the image's default
        # command when none is given (busybox's `sh`, which exits at EOF on stdin).
        p = _ctr(flotilla_bin, data, "run", "--rm", "--pull", "never", image, "--",
                 "cat", "/etc/passwd")
        assert p.returncode == 0 and "root:x:0:0" in p.stdout, p.stderr

        # Detached: the id comes back and `ctr ps` shows it running.
        p = _ctr(flotilla_bin, data, "run", "-d", "--name", "sleeper", image, "sleep", "300")
        assert p.returncode == 0, p.stderr
        cid = p.stdout.strip()
        ps = _ctr(flotilla_bin, data, "ps")
        assert cid[:12] in ps.stdout and "Up " in ps.stdout, ps.stdout
        assert _ctr(flotilla_bin, data, "rm", "-f", cid).returncode == 0
    finally:
        ids = _ctr(flotilla_bin, data, "ps", "-a", "-q", "--no-trunc").stdout.split()
        if ids:
            _ctr(flotilla_bin, data, "rm", "-f", *ids)


def test_run_bad_images_are_clear_errors(flotilla_bin: Path, tmp_path: Path, registry: str):
    data = tmp_path / "data"
    cases = [
        # (args, words the message must contain)
        (["--pull", "never", f"{registry}/busybox:e2e"], "not present"),
        (["--insecure-registry", registry, f"{registry}/busybox:missing-tag"], "missing-tag"),
        (["--insecure-registry", registry, f"{registry}/Bad_Ref::x"], "Bad_Ref"),
        # Nothing listens there: a connection error, quickly.
        ([f"127.0.0.1:{_free_port()}/busybox:e2e"], "pulling"),
    ]
    for args, word in cases:
        p = _ctr(flotilla_bin, data, "run", *args, "--", "true", timeout=120)
        assert p.returncode != 0, (args, p.stdout)
        assert word in p.stderr, (args, p.stderr)
        assert "panicked" not in p.stderr, p.stderr
    # Nothing was created by the failed runs.
    ps = _ctr(flotilla_bin, data, "ps", "-a", "-q")
    assert ps.stdout.strip() == "", ps.stdout
