"""Fixtures for the end-to-end suite.

One `flotilla server` per test session (fresh data dir, free port, a static
token file) and the real clients pointed at it:

* `kubectl` / `kubectl120` / `kubectl_any` - the pinned kubectl v1.33 and
  v1.20 binaries from `.tools/` (never the one on PATH), `kubectl_any` runs a
  test once with each;
* `helm` - the pinned helm;
* `api` / `anon` - `requests` sessions for raw HTTPS (admin client cert /
  no credentials), verifying the server against the CA from the kubeconfig;
* `k8s` - the Python `kubernetes` client's ApiClient from the kubeconfig;
* `ns` - a fresh namespace per test.

`FLOTILLA_BIN` overrides the binary (default target/debug/flotilla, as scripts/test.sh builds it).
When a test fails, the tail of the server log is attached to its report.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
KUBECTL_133 = TOOLS / "bin" / "kubectl"
KUBECTL_120 = TOOLS / "kubectl-1.20" / "usr" / "bin" / "kubectl"
HELM = TOOLS / "bin" / "helm"

STARTUP_TIMEOUT = 60.0   # seconds for the server to answer /readyz
CLIENT_TIMEOUT = 60.0    # seconds for any one client command
LOG_TAIL_LINES = 60

ADMIN_TOKEN_USER = "e2e-token-admin"
PLAIN_TOKEN_USER = "e2e-token-plain"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    """A running `flotilla server` and what clients need to reach it."""

    url: str
    data_dir: Path
    kubeconfig: Path
    log_path: Path
    ca_file: Path
    client_cert: Path
    client_key: Path
    tokens: dict[str, str]
    proc: subprocess.Popen = field(repr=False)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as e:
            return f"<cannot read {self.log_path}: {e}>"
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def admin_token(self) -> str:
        """A static token of a `system:masters` member (from --token-auth-file)."""
        return self.tokens[ADMIN_TOKEN_USER]


_CLUSTERS: list[Cluster] = []


def _materialise_credentials(kubeconfig: Path, out: Path) -> tuple[str, Path, Path, Path]:
    """Server URL, CA, client cert and key files from the admin kubeconfig
    (accepts inline `*-data` fields or file paths)."""
    cfg = yaml.safe_load(kubeconfig.read_text())
    ctx_name = cfg.get("current-context")
    contexts = {c["name"]: c["context"] for c in cfg.get("contexts", [])}
    ctx = contexts.get(ctx_name) or next(iter(contexts.values()))
    cluster = {c["name"]: c["cluster"] for c in cfg["clusters"]}[ctx["cluster"]]
    user = {u["name"]: u["user"] for u in cfg["users"]}[ctx["user"]]

    def material(section: dict, key: str, name: str) -> Path:
        if f"{key}-data" in section:
            path = out / name
            path.write_bytes(base64.b64decode(section[f"{key}-data"]))
            return path
        if key in section:
            p = Path(section[key])
            return p if p.is_absolute() else kubeconfig.parent / p
        raise AssertionError(f"kubeconfig {kubeconfig} has no {key}[-data]")

    return (
        cluster["server"],
        material(cluster, "certificate-authority", "ca.crt"),
        material(user, "client-certificate", "admin.crt"),
        material(user, "client-key", "admin.key"),
    )


# Test nodes relax the disk eviction thresholds: the build machines run with little
# free disk (cargo's target dirs), and upstream's defaults (nodefs.available<10%) would
# taint the node with disk-pressure and keep every pod Pending.
KUBELET_TEST_FLAGS = ["--eviction-hard",
                      "memory.available<100Mi,nodefs.available<1%,imagefs.available<1%"]


def _start_cluster(binary: Path, base: Path, kubelet: bool = False, extra: list[str] | None = None,
                   port: int | None = None, bind: str = "127.0.0.1") -> Cluster:
    # A second start on the same base restarts the cluster on its data.
    data_dir = base / "data"
    data_dir.mkdir(exist_ok=True)
    creds = base / "creds"
    creds.mkdir(exist_ok=True)
    tokens = {ADMIN_TOKEN_USER: secrets.token_hex(16), PLAIN_TOKEN_USER: secrets.token_hex(16)}
    token_file = base / "tokens.csv"
    # Upstream's static token file: token,user,uid,"group1,group2"
    token_file.write_text(
        f'{tokens[ADMIN_TOKEN_USER]},{ADMIN_TOKEN_USER},uid-e2e-admin,"system:masters"\n'
        f"{tokens[PLAIN_TOKEN_USER]},{PLAIN_TOKEN_USER},uid-e2e-plain\n"
    )
    port = port or _free_port()
    log_path = base / "flotilla-server.log"
    log = open(log_path, "ab")
    cmd = [str(binary), "server", "--data-dir", str(data_dir), "--bind-address", bind,
           "--secure-port", str(port), "--token-auth-file", str(token_file)]
    if not kubelet:
        # Control plane only: these clusters use hollow nodes, and as root a
        # kubelet would make this machine a node of every test cluster.
        cmd.append("--disable-kubelet")
    else:
        cmd += KUBELET_TEST_FLAGS
    cmd += extra or []
    env = dict(os.environ)
    env.setdefault("RUST_BACKTRACE", "1")
    env.setdefault("NO_COLOR", "1")  # plain server logs in failure reports
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    log.close()
    kubeconfig = data_dir / "admin.kubeconfig"

    def fail(why: str) -> None:
        _stop(proc)
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
        pytest.fail(f"flotilla server did not become ready: {why}\ncommand: {' '.join(cmd)}\n"
                    f"--- server log tail ({log_path}) ---\n{tail}", pytrace=False)

    deadline = time.monotonic() + STARTUP_TIMEOUT
    last_error = "no kubeconfig yet"
    url = ca = cert = key = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            fail(f"process exited with code {proc.returncode}")
        if url is None and kubeconfig.exists():
            try:
                url, ca, cert, key = _materialise_credentials(kubeconfig, creds)
            except (KeyError, StopIteration, AssertionError, AttributeError, TypeError,
                    yaml.YAMLError, ValueError) as e:
                last_error = f"kubeconfig not usable yet: {e!r}"
                url = None
        if url is not None:
            try:
                # With the admin cert, so this works whether or not /readyz is
                # anonymous; the anonymous case has its own test.
                probe = requests.Session()
                probe.trust_env = False
                with probe:
                    r = probe.get(f"{url}/readyz", verify=str(ca), cert=(str(cert), str(key)), timeout=5)
                if r.status_code == 200 and r.text.strip() == "ok":
                    break
                last_error = f"/readyz answered {r.status_code}: {r.text[:200]!r}"
            except requests.RequestException as e:
                last_error = f"/readyz: {e}"
        time.sleep(0.2)
    else:
        fail(f"not ready within {STARTUP_TIMEOUT}s ({last_error})")

    assert url == f"https://127.0.0.1:{port}", f"kubeconfig server is {url}, expected port {port}"
    return Cluster(url=url, data_dir=data_dir, kubeconfig=kubeconfig, log_path=log_path, ca_file=ca,
                   client_cert=cert, client_key=key, tokens=tokens, proc=proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------- binaries

@pytest.fixture(scope="session")
def flotilla_bin() -> Path:
    path = Path(os.environ.get("FLOTILLA_BIN") or ROOT / "target" / "debug" / "flotilla")
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"flotilla binary not found at {path}: run `cargo build -p flotilla` "
                    "or set FLOTILLA_BIN", pytrace=False)
    return path


def _require_tool(path: Path) -> Path:
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{path} missing: run scripts/install-tools.sh", pytrace=False)
    return path


# --------------------------------------------------------------------------- cluster

@pytest.fixture(scope="session")
def cluster(flotilla_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    c = _start_cluster(flotilla_bin, tmp_path_factory.mktemp("cluster"))
    _CLUSTERS.append(c)
    yield c
    _stop(c.proc)
    # A server that died on its own (panic, abort) is a failure even if every
    # test that ran before it passed.
    if c.proc.returncode not in (0, -signal.SIGTERM):
        pytest.fail(f"flotilla server exited with code {c.proc.returncode} at shutdown\n"
                    f"--- server log tail ---\n{c.log_tail()}", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _CLUSTERS:
        c = _CLUSTERS[-1]
        state = "running" if c.alive() else f"EXITED with code {c.proc.returncode}"
        report.sections.append((f"flotilla server log tail ({state}, {c.log_path})", c.log_tail()))


# --------------------------------------------------------------------------- clients

class Kubectl:
    """Runs one pinned kubectl binary against the cluster.

    `k(*args)` returns the CompletedProcess (text, never raises on exit code);
    `k.ok(*args)` asserts exit code 0 and returns stdout;
    `k.fails(*args)` asserts a non-zero exit code and returns the process;
    `k.popen(*args)` starts a long-running command (e.g. `get -w`).
    """

    def __init__(self, binary: Path, version: str, kubeconfig: Path, home: Path):
        self.binary = binary
        self.version = version  # "1.33" or "1.20"
        self.kubeconfig = kubeconfig
        self.home = home
        home.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"kubectl-{self.version}"

    def with_kubeconfig(self, kubeconfig: Path) -> "Kubectl":
        """The same binary and cache, other credentials."""
        return Kubectl(self.binary, self.version, kubeconfig, self.home)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),       # isolates ~/.kube/cache per binary
            "LANG": "C.UTF-8",
            "TZ": "UTC",
        }
        if extra:
            env.update(extra)
        return env

    def argv(self, args: tuple[Any, ...]) -> list[str]:
        return [str(self.binary), "--kubeconfig", str(self.kubeconfig), *[str(a) for a in args]]

    def __call__(self, *args: Any, input: str | None = None, env: dict[str, str] | None = None,
                 timeout: float = CLIENT_TIMEOUT) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(self.argv(args), input=input, capture_output=True, text=True,
                                  env=self.env(env), timeout=timeout,
                                  stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"{self!r} {' '.join(map(str, args))} timed out after {timeout}s\n"
                                 f"stdout: {e.stdout}\nstderr: {e.stderr}") from None

    def ok(self, *args: Any, **kw: Any) -> str:
        p = self(*args, **kw)
        assert p.returncode == 0, (f"{self!r} {' '.join(map(str, args))} exited {p.returncode}\n"
                                   f"stdout: {p.stdout}\nstderr: {p.stderr}")
        return p.stdout

    def fails(self, *args: Any, **kw: Any) -> subprocess.CompletedProcess:
        p = self(*args, **kw)
        assert p.returncode != 0, (f"{self!r} {' '.join(map(str, args))} unexpectedly succeeded\n"
                                   f"stdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    def popen(self, *args: Any, env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen(self.argv(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, env=self.env(env),
                                start_new_session=True)


@pytest.fixture(scope="session")
def client_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("client-home")


@pytest.fixture(scope="session")
def kubectl(cluster: Cluster, client_home: Path) -> Kubectl:
    return Kubectl(_require_tool(KUBECTL_133), "1.33", cluster.kubeconfig, client_home / "kubectl-1.33")


@pytest.fixture(scope="session")
def kubectl120(cluster: Cluster, client_home: Path) -> Kubectl:
    return Kubectl(_require_tool(KUBECTL_120), "1.20", cluster.kubeconfig, client_home / "kubectl-1.20")


@pytest.fixture(params=["1.33", "1.20"], ids=["kubectl-1.33", "kubectl-1.20"])
def kubectl_any(request: pytest.FixtureRequest) -> Kubectl:
    """Runs the test once with each pinned kubectl."""
    return request.getfixturevalue("kubectl" if request.param == "1.33" else "kubectl120")


class Helm:
    """Runs the pinned helm against the cluster (same calling style as Kubectl)."""

    def __init__(self, binary: Path, kubeconfig: Path, home: Path):
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.home = home
        home.mkdir(parents=True, exist_ok=True)

    def __call__(self, *args: Any, timeout: float = CLIENT_TIMEOUT) -> subprocess.CompletedProcess:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
            "LANG": "C.UTF-8",
        }
        argv = [str(self.binary), "--kubeconfig", str(self.kubeconfig), *[str(a) for a in args]]
        try:
            return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"helm {' '.join(map(str, args))} timed out after {timeout}s\n"
                                 f"stdout: {e.stdout}\nstderr: {e.stderr}") from None

    def ok(self, *args: Any, **kw: Any) -> str:
        p = self(*args, **kw)
        assert p.returncode == 0, (f"helm {' '.join(map(str, args))} exited {p.returncode}\n"
                                   f"stdout: {p.stdout}\nstderr: {p.stderr}")
        return p.stdout


@pytest.fixture(scope="session")
def helm(cluster: Cluster, client_home: Path) -> Helm:
    return Helm(_require_tool(HELM), cluster.kubeconfig, client_home / "helm")


class Api:
    """Raw HTTPS access: `api.get("/api/v1/namespaces")` etc. return the
    `requests.Response` without raising on HTTP errors."""

    def __init__(self, cluster: Cluster, session: requests.Session):
        self.url = cluster.url
        self.session = session

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", CLIENT_TIMEOUT)
        return self.session.request(method, self.url + path, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> requests.Response:
        return self.request("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> requests.Response:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.request("DELETE", path, **kw)


def _session(cluster: Cluster) -> requests.Session:
    s = requests.Session()
    # Ignore REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE and proxy variables: they would
    # override the cluster CA and route loopback traffic elsewhere.
    s.trust_env = False
    s.verify = str(cluster.ca_file)
    return s


@pytest.fixture(scope="session")
def api(cluster: Cluster) -> Api:
    s = _session(cluster)
    s.cert = (str(cluster.client_cert), str(cluster.client_key))
    return Api(cluster, s)


@pytest.fixture(scope="session")
def anon(cluster: Cluster) -> Api:
    return Api(cluster, _session(cluster))


@pytest.fixture(scope="session")
def k8s(cluster: Cluster):
    """An ApiClient of the Python `kubernetes` package, from the kubeconfig."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield client
    client.close()


# --------------------------------------------------------------------------- namespaces

def _namespace_name(nodeid: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", nodeid.split("::")[-1].lower()).strip("-")
    return f"{base[:50].rstrip('-')}-{secrets.token_hex(3)}"


@pytest.fixture
def ns(request: pytest.FixtureRequest, api: Api) -> str:
    """A fresh namespace for one test (created over the raw API)."""
    name = _namespace_name(request.node.nodeid)
    r = api.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": name}})
    assert r.status_code == 201, f"creating namespace {name}: {r.status_code} {r.text}"
    yield name
    # Best effort: deletion needs the namespace controller to finish upstream.
    api.delete(f"/api/v1/namespaces/{name}")


# --------------------------------------------------------------------------- privileged tests

def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="PRIVILEGED TEST SKIPPED: needs root")
    for item in items:
        if "privileged" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    skipped = [r for r in terminalreporter.stats.get("skipped", [])
               if "PRIVILEGED TEST SKIPPED" in str(getattr(r, "longrepr", ""))]
    if skipped:
        terminalreporter.write_sep("!", f"{len(skipped)} PRIVILEGED TESTS SKIPPED (not root)",
                                   red=True, bold=True)
    if _CLUSTERS:
        terminalreporter.write_line(f"flotilla server log: {_CLUSTERS[-1].log_path}")
