"""Helpers shared by the end-to-end tests (no fixtures here; see conftest.py).

Parsing helpers read kubectl's human output the way a person would: tables are
split at the column starts of the header line (kubectl aligns columns with a
tabwriter), so empty cells and cells with single spaces are handled exactly.
"""

from __future__ import annotations

import json
import re
import threading
import time
import queue
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
# A header cell: words separated by single spaces ("CREATED AT", "PORT(S)").
HEADER_CELL_RE = re.compile(r"\S+(?: \S+)*")
RFC3339_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
UID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# kubectl's short human durations: 0s, 59s, 3m2s, 5h, 2d3h...
AGE_RE = re.compile(r"^(\d+s|\d+m(\d+s)?|\d+h(\d+m)?|\d+d(\d+h)?|\d+y(\d+d)?)$")
IPV4_RE = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")


def strip_ansi(text: str) -> str:
    return ANSI_RE.sub("", text)


class Table:
    """A kubectl table: `headers` and `rows` (each a dict header -> cell)."""

    def __init__(self, headers: list[str], rows: list[dict[str, str]], raw: str):
        self.headers = headers
        self.rows = rows
        self.raw = raw

    def row(self, name: str, column: str = "NAME") -> dict[str, str]:
        """The single row whose `column` cell equals `name`."""
        found = [r for r in self.rows if r.get(column) == name]
        assert len(found) == 1, f"expected one row with {column}={name!r}, got {len(found)}:\n{self.raw}"
        return found[0]

    def column(self, header: str) -> list[str]:
        return [r[header] for r in self.rows]


def parse_table(text: str) -> Table:
    """Parse kubectl's tabular output (first non-empty line is the header)."""
    lines = [line for line in strip_ansi(text).splitlines() if line.strip()]
    assert lines, "expected a table, got empty output"
    header = lines[0]
    cells = list(HEADER_CELL_RE.finditer(header))
    headers = [m.group(0) for m in cells]
    starts = [m.start() for m in cells]
    rows = []
    for line in lines[1:]:
        row = {}
        for i, name in enumerate(headers):
            end = starts[i + 1] if i + 1 < len(starts) else None
            row[name] = line[starts[i]:end].strip()
        rows.append(row)
    return Table(headers, rows, text)


def header_cells(text: str) -> list[str]:
    """Column names of the first line of a kubectl table."""
    return parse_table(text).headers


def dump_yaml(*docs: dict) -> str:
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


def write_manifest(directory: Path, name: str, *docs: dict) -> Path:
    path = directory / name
    path.write_text(dump_yaml(*docs))
    return path


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.2,
             message: str = "condition") -> Any:
    """Poll `predicate` until it returns a truthy value; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


class LineReader:
    """Collects a subprocess's stdout lines on a thread, for `kubectl get -w`
    and other streams; `expect()` waits for a matching line."""

    def __init__(self, stream: Iterable[str]):
        self.lines: list[str] = []
        self._queue: "queue.Queue[str | None]" = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: Iterable[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, pattern: str, timeout: float = 20.0) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no line matching {pattern!r} within {timeout}s; got:\n" + "\n".join(self.lines))
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(
                    f"stream ended before a line matched {pattern!r}; got:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if regex.search(line):
                return line


def deployment(name: str, replicas: int = 2, image: str = "nginx:1.25", labels: dict | None = None,
               containers: list[dict] | None = None) -> dict:
    """A minimal apps/v1 Deployment selecting app=<name>."""
    labels = labels if labels is not None else {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": containers if containers is not None else [
                        {"name": "nginx", "image": image, "ports": [{"containerPort": 80}]},
                    ],
                },
            },
        },
    }


def service(name: str, port: int = 80) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"selector": {"app": name}, "ports": [{"port": port}]},
    }


def configmap(name: str, data: dict | None = None, labels: dict | None = None) -> dict:
    obj: dict = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
    if labels:
        obj["metadata"]["labels"] = labels
    obj["data"] = data if data is not None else {"key": "value"}
    return obj


def secret(name: str, string_data: dict) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "stringData": string_data,
    }


def status_of(response) -> dict:
    """The Status object of an error response, checked for upstream's shape."""
    ctype = response.headers.get("Content-Type", "")
    assert ctype.startswith("application/json"), (
        f"error responses are JSON Status objects, got Content-Type {ctype!r}: {response.text[:500]}")
    body = json.loads(response.text)
    assert body.get("kind") == "Status" and body.get("apiVersion") == "v1", body
    assert body.get("status") == "Failure", body
    assert body.get("code") == response.status_code, body
    assert isinstance(body.get("message"), str) and body["message"], body
    return body
