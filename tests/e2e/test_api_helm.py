"""helm (v4, server-side apply by default) installs, upgrades and uninstalls a
small chart the test writes itself."""

from __future__ import annotations

import json
import re
from pathlib import Path

from e2e_util import RFC3339_RE

CHART_YAML = """\
apiVersion: v2
name: demo
description: A tiny chart for Flotilla's end-to-end tests
type: application
version: 0.1.0
appVersion: "1.0"
"""

VALUES_YAML = """\
replicas: 2
message: hello
image: nginx:1.25
"""

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
  labels:
    app.kubernetes.io/name: {{ .Chart.Name }}
    app.kubernetes.io/instance: {{ .Release.Name }}
data:
  message: {{ .Values.message | quote }}
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
  labels:
    app.kubernetes.io/name: {{ .Chart.Name }}
    app.kubernetes.io/instance: {{ .Release.Name }}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels:
      app.kubernetes.io/instance: {{ .Release.Name }}
  template:
    metadata:
      labels:
        app.kubernetes.io/instance: {{ .Release.Name }}
    spec:
      containers:
        - name: web
          image: {{ .Values.image }}
          ports:
            - containerPort: 80
"""

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}-web
spec:
  selector:
    app.kubernetes.io/instance: {{ .Release.Name }}
  ports:
    - port: 80
      targetPort: 80
"""


def write_chart(root: Path) -> Path:
    chart = root / "demo"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(CHART_YAML)
    (chart / "values.yaml").write_text(VALUES_YAML)
    (chart / "templates" / "configmap.yaml").write_text(CONFIGMAP)
    (chart / "templates" / "deployment.yaml").write_text(DEPLOYMENT)
    (chart / "templates" / "service.yaml").write_text(SERVICE)
    return chart


def release_fields(output: str) -> dict[str, str]:
    """The `KEY: value` header helm prints after install/upgrade/status."""
    fields = {}
    for line in output.splitlines():
        m = re.match(r"^([A-Z][A-Z ]+): (.*)$", line)
        if m:
            fields[m.group(1)] = m.group(2)
    return fields


def test_helm_install_upgrade_uninstall(helm, kubectl, ns, tmp_path):
    chart = write_chart(tmp_path)

    out = helm.ok("install", "demo", chart, "--namespace", ns)
    f = release_fields(out)
    assert (f.get("NAME"), f.get("NAMESPACE"), f.get("STATUS"), f.get("REVISION")) == \
        ("demo", ns, "deployed", "1"), out

    releases = json.loads(helm.ok("list", "--namespace", ns, "--output", "json"))
    assert len(releases) == 1, releases
    r = releases[0]
    assert (r["name"], r["namespace"], str(r["revision"]), r["status"], r["chart"], r["app_version"]) == \
        ("demo", ns, "1", "deployed", "demo-0.1.0", "1.0"), r

    cm = json.loads(kubectl.ok("get", "configmap", "demo-config", "-n", ns, "-o", "json"))
    assert cm["data"] == {"message": "hello"}
    assert cm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert cm["metadata"]["annotations"]["meta.helm.sh/release-name"] == "demo"
    assert cm["metadata"]["annotations"]["meta.helm.sh/release-namespace"] == ns
    dep = json.loads(kubectl.ok("get", "deployment", "demo-web", "-n", ns, "-o", "json"))
    assert dep["spec"]["replicas"] == 2
    kubectl.ok("get", "service", "demo-web", "-n", ns)

    # Helm keeps the release in a Secret of its own type.
    secret = json.loads(kubectl.ok("get", "secret", "sh.helm.release.v1.demo.v1", "-n", ns, "-o", "json"))
    assert secret["type"] == "helm.sh/release.v1"
    assert secret["metadata"]["labels"]["owner"] == "helm"
    assert secret["metadata"]["labels"]["status"] == "deployed"

    out = helm.ok("upgrade", "demo", chart, "--namespace", ns, "--set", "message=bye", "--set", "replicas=3")
    f = release_fields(out)
    assert (f.get("STATUS"), f.get("REVISION")) == ("deployed", "2"), out
    assert json.loads(kubectl.ok("get", "configmap", "demo-config", "-n", ns, "-o", "json"))["data"] == \
        {"message": "bye"}
    assert kubectl.ok("get", "deployment", "demo-web", "-n", ns, "-o", "jsonpath={.spec.replicas}") == "3"

    status = json.loads(helm.ok("status", "demo", "--namespace", ns, "--output", "json"))
    assert status["info"]["status"] == "deployed" and status["version"] == 2
    history = json.loads(helm.ok("history", "demo", "--namespace", ns, "--output", "json"))
    assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "deployed")]
    assert RFC3339_RE.match(kubectl.ok("get", "secret", "sh.helm.release.v1.demo.v2", "-n", ns,
                                       "-o", "jsonpath={.metadata.creationTimestamp}"))

    assert helm.ok("uninstall", "demo", "--namespace", ns) == 'release "demo" uninstalled\n'
    for kind, name in (("configmap", "demo-config"), ("deployment", "demo-web"), ("service", "demo-web"),
                       ("secret", "sh.helm.release.v1.demo.v1"), ("secret", "sh.helm.release.v1.demo.v2")):
        p = kubectl.fails("get", kind, name, "-n", ns)
        assert "(NotFound)" in p.stderr, p.stderr
    assert json.loads(helm.ok("list", "--namespace", ns, "--output", "json")) == []
