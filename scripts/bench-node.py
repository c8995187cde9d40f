#!/usr/bin/env python3
"""Node benchmarks (issue #5): a `flotilla server` with its kubelet on a fresh data dir,
the busybox test image imported (so it is present), then

  (a) pod startup latency: create -> Running as seen through a watch, for N pods
      created in a burst and N created one after the other (p50/p90/p99/max);
  (b) CPU and RSS of the server process (API server, controllers, scheduler and the
      kubelet in one process) and of the shims, idle with 0 and with M pods;
  (c) throughput of `kubectl logs -f` (through the API server) vs the kubelet's
      /containerLogs directly vs the rate the log file was written, and of
      `kubectl port-forward` vs the pod IP directly (curl, a file served by httpd).

Latency is measured client-side on a monotonic clock: the anchor is taken right
before the create request is sent (creationTimestamp has one-second resolution), the
end is the arrival of the first watch event showing the pod `Running`.

Needs root and the node's fixed ports (10250/10248) free: run it alone (on shared
machines under `flock /tmp/node-e2e.lock`). Usage: see scripts/bench-node.sh.
"""

from __future__ import annotations

import argparse
import faulthandler
import base64
import concurrent.futures
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import urllib3
import yaml

ROOT = Path(__file__).resolve().parents[1]
KUBECTL = ROOT / ".tools" / "bin" / "kubectl"
MAKE_IMAGE = ROOT / "crates" / "images" / "tests" / "fixtures" / "make-busybox-image.sh"
IMAGE = "localhost/busybox:bench"
NODE = "bench-node"
NS = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def wait_for(pred, timeout: float, message: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- cluster

class Cluster:
    def __init__(self, binary: Path, base: Path):
        self.binary = binary
        self.base = base
        self.data = base / "data"
        self.port = free_port()
        self.log_path = base / "server.log"
        cmd = [str(binary), "server", "--data-dir", str(self.data), "--bind-address", "127.0.0.1",
               "--secure-port", str(self.port), "--node-name", NODE,
               # Build machines have little free disk; upstream's 10% would taint the node.
               "--eviction-hard", "memory.available<100Mi,nodefs.available<1%,imagefs.available<1%"]
        env = dict(os.environ, NO_COLOR="1")
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.kubeconfig = self.data / "admin.kubeconfig"
        wait_for(lambda: self.proc.poll() is None and self.kubeconfig.exists(), 60,
                 "the admin kubeconfig")
        cfg = yaml.safe_load(self.kubeconfig.read_text())
        cluster = cfg["clusters"][0]["cluster"]
        user = cfg["users"][0]["user"]
        self.url = cluster["server"]
        creds = base / "creds"
        creds.mkdir(exist_ok=True)

        def material(section: dict, key: str, name: str) -> str:
            if f"{key}-data" in section:
                p = creds / name
                p.write_bytes(base64.b64decode(section[f"{key}-data"]))
                return str(p)
            return section[key]
        self.ca = material(cluster, "certificate-authority", "ca.crt")
        self.cert = (material(user, "client-certificate", "admin.crt"),
                     material(user, "client-key", "admin.key"))

        def ready():
            if self.proc.poll() is not None:
                raise SystemExit(f"flotilla server exited ({self.proc.returncode}); see {self.log_path}")
            try:
                return self.session().get(f"{self.url}/readyz", timeout=5).status_code == 200
            except requests.RequestException:
                return False
        wait_for(ready, 60, "/readyz")

    def session(self) -> requests.Session:
        s = requests.Session()
        s.trust_env = False
        s.verify = self.ca
        s.cert = self.cert
        return s

    def kubectl(self, *args, input: str | None = None, timeout: float = 120) -> str:
        p = subprocess.run([str(KUBECTL), "--kubeconfig", str(self.kubeconfig), *map(str, args)],
                           input=input, capture_output=True, text=True, timeout=timeout,
                           env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                "HOME": str(self.base / "home")})
        if p.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(map(str, args))}: {p.stderr.strip()}")
        return p.stdout

    def kubectl_popen(self, *args) -> subprocess.Popen:
        return subprocess.Popen([str(KUBECTL), "--kubeconfig", str(self.kubeconfig), *map(str, args)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                     "HOME": str(self.base / "home")})

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        ctr = [str(self.binary), "ctr", "--data-dir", str(self.data)]
        ids = subprocess.run(ctr + ["ps", "-a", "-q", "--no-trunc"], capture_output=True,
                             text=True, timeout=120).stdout.split()
        if ids:
            subprocess.run(ctr + ["rm", "-f", *ids], capture_output=True, timeout=300)


def pod_manifest(name: str, command: list[str], labels: dict | None = None) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels or {"bench": "yes"}},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": IMAGE, "command": command}]},
    }


def list_pods(c: Cluster, s: requests.Session, selector: str = "") -> tuple[list[dict], str]:
    r = s.get(f"{c.url}/api/v1/namespaces/{NS}/pods", params={"labelSelector": selector},
              timeout=60)
    r.raise_for_status()
    body = r.json()
    return body["items"], body["metadata"]["resourceVersion"]


def delete_all_pods(c: Cluster, timeout: float = 300) -> None:
    s = c.session()
    r = s.delete(f"{c.url}/api/v1/namespaces/{NS}/pods", timeout=120)
    r.raise_for_status()
    wait_for(lambda: not list_pods(c, s)[0], timeout, "all pods gone from the API", 0.5)
    sandboxes = c.data / "sandboxes"
    wait_for(lambda: not sandboxes.exists() or not any(sandboxes.iterdir()), timeout,
             "every sandbox removed from the node", 0.5)


# --------------------------------------------------------------------------- (a) latency

class RunningWatch:
    """Records, per pod name, the monotonic arrival time of the first watch event
    that shows the pod Running."""

    def __init__(self, c: Cluster, rv: str):
        self.running: dict[str, float] = {}
        self.cond = threading.Condition()
        self.session = c.session()
        self.url = f"{c.url}/api/v1/namespaces/{NS}/pods"
        self.rv = rv
        self.resp = None
        self.error: str | None = None
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        buf = b""
        try:
            # Connected here, not in the caller: the server may send the response head
            # only with the first event. From `rv` on, no event is missed either way.
            self.resp = self.session.get(
                self.url, params={"watch": "1", "resourceVersion": self.rv},
                stream=True, timeout=(10, None))
            if self.resp.status_code != 200:
                self.error = f"watch: {self.resp.status_code} {self.resp.text[:200]}"
                return
            # chunk_size=None: hand over each chunk as it arrives (no 512-byte batching).
            for chunk in self.resp.iter_content(chunk_size=None):
                now = time.monotonic()
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    ev = json.loads(line)
                    obj = ev.get("object", {})
                    name = obj.get("metadata", {}).get("name")
                    if obj.get("status", {}).get("phase") == "Running" and name:
                        with self.cond:
                            self.running.setdefault(name, now)
                            self.cond.notify_all()
        except (requests.RequestException, urllib3.exceptions.HTTPError, ValueError,
                AttributeError) as e:
            self.error = f"watch: {e!r}"

    def wait(self, names, timeout: float) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(n in self.running for n in names):
                left = deadline - time.monotonic()
                if self.error:
                    raise SystemExit(self.error)
                if left <= 0:
                    missing = [n for n in names if n not in self.running]
                    raise SystemExit(f"{len(missing)} pods not Running within {timeout}s: "
                                     f"{missing[:5]}")
                self.cond.wait(min(left, 1.0))
            return {n: self.running[n] for n in names}

    def close(self) -> None:
        # Closing the response under the reading thread would block on the reader's
        # buffer lock: shut the socket down, let the thread end, then close.
        conn = getattr(self.resp.raw, "connection", None) if self.resp is not None else None
        sock = getattr(conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            if self.resp is not None:
                self.resp.close()
            self.session.close()


def create_pod(c: Cluster, s: requests.Session, pod: dict) -> float:
    """POST the pod; returns the monotonic time taken right before sending."""
    t0 = time.monotonic()
    r = s.post(f"{c.url}/api/v1/namespaces/{NS}/pods", json=pod, timeout=60)
    if r.status_code != 201:
        raise SystemExit(f"creating {pod['metadata']['name']}: {r.status_code} {r.text[:300]}")
    return t0


def percentiles(values: list[float]) -> dict[str, float]:
    v = sorted(values)

    def pct(p: float) -> float:
        # Nearest-rank percentile.
        k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
        return v[k]
    return {"n": len(v), "p50": pct(50), "p90": pct(90), "p99": pct(99), "max": v[-1],
            "mean": statistics.fmean(v)}


def latency_burst(c: Cluster, n: int, parallel: int) -> dict:
    s = c.session()
    _, rv = list_pods(c, s)
    watch = RunningWatch(c, rv)
    names = [f"burst-{i:03d}" for i in range(n)]
    local = threading.local()

    def one(name: str) -> tuple[str, float]:
        if not hasattr(local, "s"):
            local.s = c.session()
        return name, create_pod(c, local.s, pod_manifest(name, ["sleep", "3600"]))
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(parallel) as ex:
        t0 = dict(ex.map(one, names))
    created = time.monotonic() - started
    running = watch.wait(names, timeout=max(120, n * 3))
    watch.close()
    lat = [running[nm] - t0[nm] for nm in names]
    res = percentiles(lat)
    res["create_s"] = created
    res["all_running_s"] = max(running.values()) - started
    return res


def latency_sequential(c: Cluster, n: int, prefix: str = "seq") -> dict:
    s = c.session()
    _, rv = list_pods(c, s)
    watch = RunningWatch(c, rv)
    lat = []
    for i in range(n):
        name = f"{prefix}-{i:03d}"
        t0 = create_pod(c, s, pod_manifest(name, ["sleep", "3600"]))
        lat.append(watch.wait([name], timeout=60)[name] - t0)
    watch.close()
    return percentiles(lat)


# --------------------------------------------------------------------------- (b) usage

def proc_ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def proc_rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except OSError:
        return 0


def shim_pids(data: Path) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 2 and argv[1] == b"shim" and any(str(data).encode() in a for a in argv):
            out.append(int(p.name))
    return out


def usage(c: Cluster, window: float) -> dict:
    """CPU (% of one core) over `window` seconds and RSS of the server and the shims."""
    shims = shim_pids(c.data)
    t_start = time.monotonic()
    server0 = proc_ticks(c.proc.pid)
    shims0 = {p: proc_ticks(p) for p in shims}
    rss_samples = []
    while time.monotonic() - t_start < window:
        rss_samples.append(proc_rss(c.proc.pid))
        time.sleep(min(1.0, max(0.0, window - (time.monotonic() - t_start))))
    elapsed = time.monotonic() - t_start
    server1 = proc_ticks(c.proc.pid)
    shim_ticks = 0
    for p, t in shims0.items():
        t1 = proc_ticks(p)
        if t is not None and t1 is not None:
            shim_ticks += t1 - t
    shim_rss = sum(proc_rss(p) for p in shims)
    return {
        "window_s": elapsed,
        "server_cpu_pct": 100.0 * (server1 - server0) / CLK_TCK / elapsed,
        "server_rss_mb": max(rss_samples) / MB,
        "shims": len(shims),
        "shims_cpu_pct": 100.0 * shim_ticks / CLK_TCK / elapsed,
        "shims_rss_mb": shim_rss / MB,
    }


def run_pods(c: Cluster, n: int, prefix: str) -> None:
    s = c.session()
    _, rv = list_pods(c, s)
    watch = RunningWatch(c, rv)
    names = [f"{prefix}-{i:03d}" for i in range(n)]
    for nm in names:
        create_pod(c, s, pod_manifest(nm, ["sleep", "3600"]))
    watch.wait(names, timeout=max(120, n * 3))
    watch.close()


# --------------------------------------------------------------------------- (c) streams

LOGGER = """
i=0
while true; do
  while [ ! -e /tmp/go ]; do sleep 0.05; done
  rm -f /tmp/go; i=$((i+1))
  yes %s | head -c %d
  echo; echo END-$i
done
"""


def logs_throughput(c: Cluster, size: int, runs: int) -> dict:
    line = "x" * 99  # 100-byte lines with the newline
    pod = pod_manifest("logger", ["sh", "-c", LOGGER % (line, size)], {"bench": "streams"})
    s = c.session()
    _, rv = list_pods(c, s, "bench=streams")
    watch = RunningWatch(c, rv)
    create_pod(c, s, pod)
    watch.wait(["logger"], 60)
    watch.close()
    run_no = 0

    def trigger() -> None:
        # The server may still be busy with the previous stream: a few tries.
        for attempt in range(3):
            try:
                c.kubectl("exec", "-n", NS, "logger", "--", "touch", "/tmp/go")
                return
            except SystemExit as e:
                if attempt == 2:
                    raise
                log(f"  trigger: {e}; again")
                time.sleep(5)

    def consume(stream, marker: bytes, timeout: float) -> tuple[int, float, float]:
        """Read until `marker`; returns (bytes, first byte time, marker time)."""
        got = 0
        first = None
        tail = b""
        deadline = time.monotonic() + timeout
        for chunk in stream:
            now = time.monotonic()
            if first is None and chunk:
                first = now
            got += len(chunk)
            tail = (tail + chunk)[-64:]
            if marker in tail:
                return got, first, now
            if now > deadline:
                break
        raise SystemExit(f"log stream ended or timed out before {marker!r} ({got} bytes)")

    results: dict[str, list[tuple[float, int]]] = {"api": [], "kubelet": [], "file": []}
    stalled: dict[str, int] = {}
    for _ in range(runs):
        for how in ("api", "kubelet"):
            if how in stalled:
                continue
            time.sleep(3)  # let the previous stream wind down
            run_no += 1
            marker = f"END-{run_no}\n".encode()
            if how == "api":
                p = c.kubectl_popen("logs", "-f", "--tail=0", "-n", NS, "logger")
                watchdog = threading.Timer(120, p.kill)  # a stalled stream ends the run
                watchdog.start()
                # Wait until the stream is established (kubectl has connected).
                time.sleep(1.0)
                trigger()
                stream = iter(lambda: p.stdout.read1(1 << 20), b"")
                try:
                    got, first, end = consume(stream, marker, 120)
                except SystemExit as e:
                    log(f"  kubectl logs -f: {e}")
                    stalled[how] = int(str(e).rsplit("(", 1)[-1].split()[0])
                    continue
                finally:
                    watchdog.cancel()
                    p.kill()
                    p.wait()
            else:
                ks = requests.Session()
                ks.trust_env = False
                ks.verify = False
                ks.cert = c.cert
                r = ks.get(f"https://127.0.0.1:10250/containerLogs/{NS}/logger/main",
                           params={"follow": "true", "tailLines": "0"}, stream=True,
                           timeout=(10, 60))
                r.raise_for_status()
                time.sleep(1.0)
                trigger()
                try:
                    got, first, end = consume(r.iter_content(chunk_size=None), marker, 120)
                except (SystemExit, requests.RequestException) as e:
                    log(f"  kubelet /containerLogs: {e!r}")
                    stalled[how] = -1
                    continue
                finally:
                    r.close()
            results[how].append((got / MB / (end - first), got))
    # The rate the log file was written: CRI timestamps of the first and last entry of
    # the last run (the shim stamps each line as it reads it from the container).
    log_files = sorted((c.data / "agent" / "logs").glob(f"{NS}_logger_*/main/*.log"))
    if log_files:
        text = log_files[-1].read_text(errors="replace").splitlines()
        end_i = max((i for i, ln in enumerate(text) if ln.endswith(f"END-{run_no}")), default=0)
        # The run started right after the previous END (or the file's start).
        start_i = max([i for i, ln in enumerate(text[:end_i]) if " END-" in ln] or [-1]) + 1
        if start_i < end_i:
            from datetime import datetime

            def ts(ln: str) -> float:
                t = ln.split(" ", 1)[0]
                head, frac = t.rstrip("Z").split(".")
                return datetime.fromisoformat(head).timestamp() + float("0." + frac)
            span = ts(text[end_i]) - ts(text[start_i])
            nbytes = sum(len(ln.split(" ", 3)[3]) + 1 for ln in text[start_i:end_i + 1])
            if span > 0:
                # Only the part of the run still in the live file (rotation drops the rest).
                results["file"].append((nbytes / MB / span, nbytes))
    out: dict = {k: v for k, v in results.items() if v}
    if stalled:
        out["stalled"] = stalled
    return out


HTTPD = "head -c %d /dev/zero > /tmp/big && exec httpd -f -p 8080 -h /tmp"


def curl_rate(url: str) -> tuple[float, int]:
    p = subprocess.run(["curl", "-s", "-o", "/dev/null", "--max-time", "120", "--noproxy", "*",
                        "-w", "%{speed_download} %{size_download}", url],
                       capture_output=True, text=True, timeout=150)
    if p.returncode != 0:
        raise SystemExit(f"curl {url}: exit {p.returncode} {p.stderr}")
    speed, size = p.stdout.split()
    return float(speed) / MB, int(float(size))


def port_forward_throughput(c: Cluster, size: int, runs: int) -> dict:
    s = c.session()
    _, rv = list_pods(c, s, "bench=httpd")
    watch = RunningWatch(c, rv)
    create_pod(c, s, pod_manifest("httpd", ["sh", "-c", HTTPD % size], {"bench": "httpd"}))
    watch.wait(["httpd"], 60)
    watch.close()
    ip = s.get(f"{c.url}/api/v1/namespaces/{NS}/pods/httpd", timeout=30).json()["status"]["podIP"]
    wait_for(lambda: subprocess.run(["curl", "-sf", "-o", "/dev/null", "--noproxy", "*",
                                     "--max-time", "5", f"http://{ip}:8080/big"]).returncode == 0,
             60, "httpd serving the file", 0.5)
    local = free_port()
    pf = c.kubectl_popen("port-forward", "-n", NS, "pod/httpd", f"{local}:8080")
    try:
        wait_for(lambda: pf.poll() is None and socket.socket().connect_ex(("127.0.0.1", local)) == 0,
                 30, "kubectl port-forward listening", 0.2)
        res: dict[str, list[tuple[float, int]]] = {"direct": [], "port-forward": []}
        for _ in range(runs):
            res["direct"].append(curl_rate(f"http://{ip}:8080/big"))
            res["port-forward"].append(curl_rate(f"http://127.0.0.1:{local}/big"))
        for how, v in res.items():
            for _, got in v:
                if got != size:
                    raise SystemExit(f"{how}: fetched {got} bytes of {size}")
        return res
    finally:
        pf.kill()
        pf.wait()


# --------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", type=Path, default=Path(os.environ.get(
        "FLOTILLA_BIN", ROOT / "target" / "release" / "flotilla")))
    ap.add_argument("--pods", type=int, default=100, help="pods for the latency runs")
    ap.add_argument("--parallel", type=int, default=10, help="concurrent creates in the burst")
    ap.add_argument("--idle-pods", type=int, default=50)
    ap.add_argument("--window", type=float, default=30.0, help="CPU sampling window, seconds")
    ap.add_argument("--log-mb", type=int, default=200, help="MiB written per log run")
    ap.add_argument("--file-mb", type=int, default=200, help="MiB of the port-forward file")
    ap.add_argument("--runs", type=int, default=3, help="runs per throughput figure")
    ap.add_argument("--no-sequential", action="store_true")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 10 pods, 5 idle pods, 5 s windows, 20 MiB, 1 run")
    ap.add_argument("--only", choices=["latency", "usage", "streams"], action="append",
                    help="run only these parts (repeatable)")
    ap.add_argument("--json", action="store_true", help="JSON report on stdout")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    a = ap.parse_args()
    if a.quick:
        a.pods, a.idle_pods, a.window, a.log_mb, a.file_mb, a.runs = 10, 5, 5.0, 20, 20, 1
    if os.geteuid() != 0:
        print("bench-node needs root (real containers)", file=sys.stderr)
        return 2
    for port in (10250, 10248):
        with socket.socket() as sck:
            if sck.connect_ex(("127.0.0.1", port)) == 0:
                print(f"port {port} is taken: another kubelet runs here", file=sys.stderr)
                return 2
    if not a.binary.is_file():
        print(f"no flotilla binary at {a.binary}", file=sys.stderr)
        return 2

    # SIGTERM (and SIGINT, ignored in background jobs) unwind through the clean-up.
    def interrupted(signum, _frame):
        raise SystemExit(f"interrupted by signal {signum}")
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # stacks on demand
    base = Path(tempfile.mkdtemp(prefix="flotilla-bench-node-"))
    report: dict = {"binary": str(a.binary), "pods": a.pods, "parallel": a.parallel}
    log(f"starting flotilla server in {base}")
    c = Cluster(a.binary, base)
    try:
        oci = base / "oci"
        subprocess.run(["bash", str(MAKE_IMAGE), str(oci), "bench"], check=True,
                       capture_output=True, timeout=120)
        archive = base / "busybox.tar"
        subprocess.run(["tar", "-C", str(oci), "-cf", str(archive), "."], check=True, timeout=60)
        subprocess.run([str(a.binary), "ctr", "--data-dir", str(c.data), "images", "import",
                        "--base-name", "localhost/busybox", str(archive)],
                       check=True, capture_output=True, timeout=120)
        wait_for(lambda: " Ready" in c.kubectl("get", "node", NODE), 90, "the node Ready", 0.5)
        c.kubectl("create", "namespace", NS)
        wait_for(lambda: "default" in c.kubectl("get", "serviceaccounts", "-n", NS), 30,
                 "the default ServiceAccount", 0.2)
        # Warm-up: one pod (first sandbox sets up the bridge, unpacks the image).
        log("warm-up pod")
        latency_sequential(c, 1, "warmup")
        delete_all_pods(c)

        parts = set(a.only or ["latency", "usage", "streams"])
        if "usage" in parts:
            log(f"idle with 0 pods ({a.window:.0f}s)")
            time.sleep(2)
            report["idle_0"] = usage(c, a.window)
            log(f"  {report['idle_0']}")

        if "latency" in parts:
            log(f"startup latency: {a.pods} pods in a burst ({a.parallel} concurrent creates)")
            report["burst"] = latency_burst(c, a.pods, a.parallel)
            log(f"  {report['burst']}")
            delete_all_pods(c)
            if not a.no_sequential:
                log(f"startup latency: {a.pods} pods one after the other")
                report["sequential"] = latency_sequential(c, a.pods)
                log(f"  {report['sequential']}")
                delete_all_pods(c)

        if "usage" in parts:
            log(f"idle with {a.idle_pods} pods ({a.window:.0f}s)")
            run_pods(c, a.idle_pods, "idle")
            time.sleep(5)
            report["idle_n"] = usage(c, a.window)
            report["idle_n"]["pods"] = a.idle_pods
            log(f"  {report['idle_n']}")
            delete_all_pods(c)

        if "streams" in parts:
            log(f"logs -f throughput ({a.log_mb} MiB x {a.runs})")
            report["logs"] = logs_throughput(c, a.log_mb * MB, a.runs)
            log(f"  {report['logs']}")
            log(f"port-forward throughput ({a.file_mb} MiB x {a.runs})")
            report["port_forward"] = port_forward_throughput(c, a.file_mb * MB, a.runs)
            log(f"  {report['port_forward']}")
            delete_all_pods(c)
    finally:
        # The kubelet tears sandboxes down (mounts, namespaces, veths, cgroups): let it
        # before stopping the server, whatever happened.
        try:
            if c.proc.poll() is None:
                delete_all_pods(c, timeout=120)
        except (SystemExit, Exception) as e:  # noqa: BLE001 - best effort on the way out
            log(f"clean-up: {e}")
        log("stopping the server")
        c.stop()
        if not a.keep:
            for m in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
                point = m.split()[4]
                if point.startswith(str(base) + "/"):
                    subprocess.run(["umount", "-l", point], capture_output=True)
            shutil.rmtree(base, ignore_errors=True)
        else:
            log(f"kept {base}")

    print_table(report)
    if a.json:
        print(json.dumps(report, indent=2))
    return 0


def print_table(r: dict) -> None:
    out = sys.stderr if "--json" in sys.argv else sys.stdout
    w = lambda s="": print(s, file=out)  # noqa: E731
    w(f"\nnode benchmarks ({r['binary']})")
    w(f"{'pod startup latency (s)':<34}{'n':>5}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}")
    for key, label in (("burst", f"burst ({r['parallel']} concurrent creates)"),
                       ("sequential", "sequential (one at a time)")):
        if key in r:
            x = r[key]
            w(f"{label:<34}{x['n']:>5}{x['p50']:>8.3f}{x['p90']:>8.3f}{x['p99']:>8.3f}{x['max']:>8.3f}")
    if "burst" in r:
        w(f"  burst: creates took {r['burst']['create_s']:.2f}s, all Running after "
          f"{r['burst']['all_running_s']:.2f}s")
    w(f"\n{'idle usage':<34}{'server CPU%':>12}{'server RSS':>12}{'shims':>7}{'shim CPU%':>11}{'shim RSS':>10}")
    for key in ("idle_0", "idle_n"):
        if key in r:
            x = r[key]
            label = f"{x.get('pods', 0)} pods ({x['window_s']:.0f}s window)"
            w(f"{label:<34}{x['server_cpu_pct']:>12.2f}{x['server_rss_mb']:>10.1f}MB"
              f"{x['shims']:>7}{x['shims_cpu_pct']:>11.2f}{x['shims_rss_mb']:>8.1f}MB")
    w(f"\n{'throughput (MB/s, best / median)':<44}{'best':>9}{'median':>9}{'MiB':>8}")
    rows = [("logs", "api", "kubectl logs -f (API server)"),
            ("logs", "kubelet", "kubelet /containerLogs?follow"),
            ("logs", "file", "log file written (CRI timestamps)"),
            ("port_forward", "port-forward", "kubectl port-forward + curl"),
            ("port_forward", "direct", "curl to the pod IP")]
    for sect, key, label in rows:
        v = r.get(sect, {}).get(key)
        if v:
            rates = [x[0] for x in v]
            w(f"{label:<44}{max(rates):>9.1f}{statistics.median(rates):>9.1f}"
              f"{statistics.median([x[1] for x in v]) / MB:>8.1f}")
    for how, got in r.get("logs", {}).get("stalled", {}).items():
        w(f"  logs via {how}: STALLED before the end marker ({got} bytes received)")


if __name__ == "__main__":
    sys.exit(main())
