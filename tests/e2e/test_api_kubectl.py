"""Real kubectl (v1.33 and v1.20, default flags) against `flotilla server`.

Expected output is what upstream kubectl prints against a real Kubernetes
v1.33 cluster. There are no controllers yet, so nothing here depends on
ReplicaSets or Pods being created from a Deployment (status counts are matched
loosely, everything the API server itself decides is matched exactly).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import yaml

from e2e_util import (AGE_RE, IPV4_RE, RFC3339_RE, UID_RE, LineReader, configmap, deployment,
                      parse_table, secret, service, strip_ansi, wait_for, write_manifest)

DEPLOY_HEADERS = ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]


def labelled(obj: dict, **labels: str) -> dict:
    obj["metadata"].setdefault("labels", {}).update(labels)
    return obj


def web_stack(tmp_path: Path) -> Path:
    """Deployment, Service, ConfigMap and Secret, all labelled app=web."""
    return write_manifest(
        tmp_path, "stack.yaml",
        deployment("web"),
        service("web"),
        configmap("web-config", {"key": "value", "other": "x"}, labels={"app": "web"}),
        labelled(secret("web-secret", {"username": "admin", "password": "s3cr3t"}), app="web"),
    )


def jsonpath(k, ns: str, target: str, expr: str) -> str:
    return k.ok("get", target, "-n", ns, "-o", f"jsonpath={expr}")


def get_json(k, ns: str, *target: str) -> dict:
    return json.loads(k.ok("get", *target, "-n", ns, "-o", "json"))


def wait_settled(k, ns: str, *target: str, quiet: float = 1.5) -> dict:
    """Wait until the controllers are done with an object: its status has seen the
    current generation and its resourceVersion stays put for `quiet` seconds. A
    client-side "(no change)" verdict compares the object kubectl read with the one
    the server returns, so a status write in between would make it "patched"."""
    state = {"rv": None, "since": time.monotonic()}

    def settled():
        obj = get_json(k, ns, *target)
        meta = obj["metadata"]
        if obj.get("status", {}).get("observedGeneration") != meta.get("generation"):
            state["rv"] = None
            return None
        if meta["resourceVersion"] != state["rv"]:
            state["rv"], state["since"] = meta["resourceVersion"], time.monotonic()
            return None
        return obj if time.monotonic() - state["since"] >= quiet else None

    return wait_for(settled, timeout=30, interval=0.3, message=f"{'/'.join(target)} to settle")


# --------------------------------------------------------------------------- cluster-level

def test_cluster_info(kubectl_any, cluster):
    out = strip_ansi(kubectl_any.ok("cluster-info"))
    lines = out.rstrip("\n").splitlines()
    assert lines[0] == f"Kubernetes control plane is running at {cluster.url}", out
    assert lines[-1] == "To further debug and diagnose cluster problems, use 'kubectl cluster-info dump'.", out


def test_version(kubectl_any):
    info = json.loads(kubectl_any.ok("version", "-o", "json"))
    server = info["serverVersion"]
    assert server["major"] == "1" and server["minor"] == "33", server
    assert re.match(r"^v1\.33\.\d+", server["gitVersion"]), server
    for key in ("gitCommit", "buildDate", "goVersion", "compiler", "platform"):
        assert server.get(key), f"serverVersion.{key} missing: {server}"


def test_api_versions(kubectl_any):
    versions = kubectl_any.ok("api-versions").split()
    for gv in ("v1", "apps/v1", "apiextensions.k8s.io/v1", "autoscaling/v1"):
        assert gv in versions, versions


def test_api_resources(kubectl_any):
    table = parse_table(kubectl_any.ok("api-resources"))
    assert table.headers == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    expected = [
        # NAME, SHORTNAMES, APIVERSION, NAMESPACED, KIND
        ("configmaps", "cm", "v1", "true", "ConfigMap"),
        ("events", "ev", "v1", "true", "Event"),
        ("namespaces", "ns", "v1", "false", "Namespace"),
        ("nodes", "no", "v1", "false", "Node"),
        ("pods", "po", "v1", "true", "Pod"),
        ("secrets", "", "v1", "true", "Secret"),
        ("serviceaccounts", "sa", "v1", "true", "ServiceAccount"),
        ("services", "svc", "v1", "true", "Service"),
        ("customresourcedefinitions", "crd,crds", "apiextensions.k8s.io/v1", "false",
         "CustomResourceDefinition"),
        ("deployments", "deploy", "apps/v1", "true", "Deployment"),
        ("replicasets", "rs", "apps/v1", "true", "ReplicaSet"),
        ("daemonsets", "ds", "apps/v1", "true", "DaemonSet"),
    ]
    got = {(r["NAME"], r["APIVERSION"]): r for r in table.rows}
    for name, short, gv, namespaced, kind in expected:
        row = got.get((name, gv))
        assert row is not None, f"{name} ({gv}) missing from api-resources:\n{table.raw}"
        assert (row["SHORTNAMES"], row["NAMESPACED"], row["KIND"]) == (short, namespaced, kind), row
    # Subresources are not listed as resources.
    assert not [r for r in table.rows if "/" in r["NAME"]], table.raw

    names = kubectl_any.ok("api-resources", "--api-group=apps", "-o", "name").split()
    assert "deployments.apps" in names and "replicasets.apps" in names, names
    cluster_scoped = parse_table(kubectl_any.ok("api-resources", "--namespaced=false"))
    assert "namespaces" in cluster_scoped.column("NAME")
    assert "pods" not in cluster_scoped.column("NAME")


# --------------------------------------------------------------------------- create / get

def test_create_from_file(kubectl_any, ns, tmp_path):
    out = kubectl_any.ok("create", "-f", web_stack(tmp_path), "-n", ns)
    assert out.splitlines() == [
        "deployment.apps/web created",
        "service/web created",
        "configmap/web-config created",
        "secret/web-secret created",
    ]
    # Creating it again: AlreadyExists for each object, exit code 1.
    p = kubectl_any.fails("create", "-f", tmp_path / "stack.yaml", "-n", ns)
    assert p.returncode == 1
    f = tmp_path / "stack.yaml"
    assert (f'Error from server (AlreadyExists): error when creating "{f}": '
            'deployments.apps "web" already exists') in p.stderr.splitlines(), p.stderr
    assert (f'Error from server (AlreadyExists): error when creating "{f}": '
            'configmaps "web-config" already exists') in p.stderr.splitlines(), p.stderr


def test_get_tables(kubectl_any, ns, tmp_path):
    k = kubectl_any
    k.ok("create", "-f", web_stack(tmp_path), "-n", ns)

    t = parse_table(k.ok("get", "deployments", "-n", ns))
    assert t.headers == DEPLOY_HEADERS
    assert len(t.rows) == 1
    row = t.row("web")
    assert re.fullmatch(r"\d+/2", row["READY"]), row
    assert row["UP-TO-DATE"].isdigit() and row["AVAILABLE"].isdigit(), row
    assert AGE_RE.match(row["AGE"]), row

    t = parse_table(k.ok("get", "deploy", "web", "-n", ns, "-o", "wide"))
    assert t.headers == DEPLOY_HEADERS + ["CONTAINERS", "IMAGES", "SELECTOR"]
    row = t.row("web")
    assert (row["CONTAINERS"], row["IMAGES"], row["SELECTOR"]) == ("nginx", "nginx:1.25", "app=web")

    t = parse_table(k.ok("get", "svc", "web", "-n", ns))
    assert t.headers == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    row = t.row("web")
    assert row["TYPE"] == "ClusterIP" and row["EXTERNAL-IP"] == "<none>" and row["PORT(S)"] == "80/TCP", row
    assert IPV4_RE.match(row["CLUSTER-IP"]), row
    t = parse_table(k.ok("get", "services", "web", "-n", ns, "-o", "wide"))
    assert t.headers == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    assert t.row("web")["SELECTOR"] == "app=web"

    t = parse_table(k.ok("get", "configmap", "web-config", "-n", ns))
    assert t.headers == ["NAME", "DATA", "AGE"]
    assert t.row("web-config")["DATA"] == "2"

    t = parse_table(k.ok("get", "secret", "web-secret", "-n", ns))
    assert t.headers == ["NAME", "TYPE", "DATA", "AGE"]
    row = t.row("web-secret")
    assert (row["TYPE"], row["DATA"]) == ("Opaque", "2"), row

    t = parse_table(k.ok("get", "namespace", ns))
    assert t.headers == ["NAME", "STATUS", "AGE"]
    assert t.row(ns)["STATUS"] == "Active"


def test_get_output_formats(kubectl_any, ns, tmp_path):
    k = kubectl_any
    k.ok("create", "-f", web_stack(tmp_path), "-n", ns)

    assert k.ok("get", "deployment", "web", "-n", ns, "-o", "name") == "deployment.apps/web\n"
    names = k.ok("get", "deploy,svc,cm,secret", "-l", "app=web", "-n", ns, "-o", "name").splitlines()
    assert names == ["deployment.apps/web", "service/web", "configmap/web-config", "secret/web-secret"]

    # Maps print as JSON (both versions).
    assert jsonpath(k, ns, "deployment/web", "{.spec.template.metadata.labels}") == '{"app":"web"}'
    assert jsonpath(k, ns, "deployment/web", "{.spec.replicas}") == "2"
    assert jsonpath(k, ns, "deployment/web", "{.spec.template.spec.containers[0].image}") == "nginx:1.25"

    for fmt in ("json", "yaml"):
        text = k.ok("get", "deployment", "web", "-n", ns, "-o", fmt)
        obj = json.loads(text) if fmt == "json" else yaml.safe_load(text)
        if fmt == "yaml":
            assert text.startswith("apiVersion: apps/v1\n"), text[:200]
        assert obj["apiVersion"] == "apps/v1" and obj["kind"] == "Deployment"
        meta = obj["metadata"]
        assert meta["name"] == "web" and meta["namespace"] == ns
        assert meta["labels"] == {"app": "web"}
        assert UID_RE.match(meta["uid"]), meta
        assert meta["resourceVersion"].isdigit(), meta
        assert meta["generation"] == 1, meta
        assert RFC3339_RE.match(meta["creationTimestamp"]), meta
        spec = obj["spec"]
        # Upstream defaulting of apps/v1 Deployment and its pod template.
        assert spec["replicas"] == 2
        assert spec["progressDeadlineSeconds"] == 600
        assert spec["revisionHistoryLimit"] == 10
        assert spec["strategy"] == {"type": "RollingUpdate",
                                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
        pod = spec["template"]["spec"]
        assert pod["restartPolicy"] == "Always"
        assert pod["dnsPolicy"] == "ClusterFirst"
        assert pod["schedulerName"] == "default-scheduler"
        assert pod["terminationGracePeriodSeconds"] == 30
        assert pod["securityContext"] == {}
        c = pod["containers"][0]
        assert c["imagePullPolicy"] == "IfNotPresent"
        assert c["terminationMessagePath"] == "/dev/termination-log"
        assert c["terminationMessagePolicy"] == "File"
        assert c["resources"] == {}
        assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]

    svc = get_json(k, ns, "service", "web")
    spec = svc["spec"]
    assert IPV4_RE.match(spec["clusterIP"]) and spec["clusterIPs"] == [spec["clusterIP"]], spec
    assert spec["type"] == "ClusterIP" and spec["sessionAffinity"] == "None", spec
    assert spec["ipFamilies"] == ["IPv4"] and spec["ipFamilyPolicy"] == "SingleStack", spec
    assert spec["internalTrafficPolicy"] == "Cluster", spec
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}], spec

    sec = get_json(k, ns, "secret", "web-secret")
    assert "stringData" not in sec, sec
    assert sec["type"] == "Opaque"
    assert sec["data"] == {"username": "YWRtaW4=", "password": "czNjcjN0"}, sec


def test_get_selectors_and_all_namespaces(kubectl_any, ns, tmp_path):
    k = kubectl_any
    k.ok("create", "-f", write_manifest(tmp_path, "d.yaml", deployment("web"), deployment("api")), "-n", ns)

    assert parse_table(k.ok("get", "deploy", "-l", "app=web", "-n", ns)).column("NAME") == ["web"]
    assert parse_table(k.ok("get", "deploy", "-l", "app!=web", "-n", ns)).column("NAME") == ["api"]
    assert sorted(parse_table(k.ok("get", "deploy", "-l", "app in (web,api)", "-n", ns)).column("NAME")) \
        == ["api", "web"]
    p = k("get", "deploy", "-l", "app=nope", "-n", ns)
    assert (p.returncode, p.stdout, p.stderr) == (0, "", f"No resources found in {ns} namespace.\n")

    assert parse_table(k.ok("get", "deploy", "--field-selector", "metadata.name=api", "-n", ns)) \
        .column("NAME") == ["api"]
    assert parse_table(k.ok("get", "deploy", "--field-selector", "metadata.name!=api", "-n", ns)) \
        .column("NAME") == ["web"]

    t = parse_table(k.ok("get", "deployments", "-A"))
    assert t.headers == ["NAMESPACE"] + DEPLOY_HEADERS
    mine = sorted(r["NAME"] for r in t.rows if r["NAMESPACE"] == ns)
    assert mine == ["api", "web"], t.raw
    t = parse_table(k.ok("get", "deployments", "--all-namespaces", "--field-selector",
                         f"metadata.namespace={ns}"))
    assert sorted(t.column("NAME")) == ["api", "web"] and set(t.column("NAMESPACE")) == {ns}


def test_get_not_found(kubectl_any, ns):
    p = kubectl_any.fails("get", "deployment", "nope", "-n", ns)
    assert p.returncode == 1
    assert p.stderr == 'Error from server (NotFound): deployments.apps "nope" not found\n'
    p = kubectl_any.fails("get", "configmap", "nope", "-n", ns)
    assert p.stderr == 'Error from server (NotFound): configmaps "nope" not found\n'


def test_get_watch(kubectl_any, ns):
    k = kubectl_any
    k.ok("create", "configmap", "w1", "--from-literal=a=1", "-n", ns)
    proc = k.popen("get", "configmaps", "-w", "-n", ns)
    try:
        out = LineReader(proc.stdout)
        assert re.split(r"\s{2,}", out.expect(r"^NAME\s")) == ["NAME", "DATA", "AGE"]
        out.expect(r"^w1\s+1\s+\S+$")
        k.ok("create", "configmap", "w2", "--from-literal=a=1", "--from-literal=b=2", "-n", ns)
        out.expect(r"^w2\s+2\s+\S+$")
        k.ok("patch", "configmap", "w1", "-n", ns, "-p", '{"data":{"c":"3"}}')
        out.expect(r"^w1\s+2\s+\S+$")
        k.ok("delete", "configmap", "w2", "-n", ns)
        # A deletion is printed as one more row for the object.
        out.expect(r"^w2\s+2\s+\S+$")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


# --------------------------------------------------------------------------- describe

def test_describe(kubectl_any, ns, tmp_path):
    k = kubectl_any
    k.ok("create", "-f", web_stack(tmp_path), "-n", ns)
    out = k.ok("describe", "deployment", "web", "-n", ns)
    for pattern in (
        r"^Name:\s+web$",
        rf"^Namespace:\s+{ns}$",
        r"^CreationTimestamp:\s+\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$",
        r"^Labels:\s+app=web$",
        r"^Selector:\s+app=web$",
        r"^Replicas:\s+2 desired \| \d+ updated \| \d+ total \| \d+ available \| \d+ unavailable$",
        r"^StrategyType:\s+RollingUpdate$",
        r"^MinReadySeconds:\s+0$",
        r"^RollingUpdateStrategy:\s+25% max unavailable, 25% max surge$",
        r"^Pod Template:$",
        r"^  Labels:\s+app=web$",
        r"^  Containers:$",
        r"^   nginx:$",
        r"^    Image:\s+nginx:1\.25$",
        r"^    Port:\s+80/TCP$",
        r"^Events:",
    ):
        assert re.search(pattern, out, re.M), f"{pattern!r} not in describe output:\n{out}"

    out = k.ok("describe", "configmap", "web-config", "-n", ns)
    for pattern in (r"^Name:\s+web-config$", rf"^Namespace:\s+{ns}$", r"^Labels:\s+app=web$",
                    r"^Annotations:\s+<none>$", r"^Data\n====$", r"^key:\n----\nvalue$"):
        assert re.search(pattern, out, re.M), f"{pattern!r} not in describe output:\n{out}"

    p = k.fails("describe", "deployment", "nope", "-n", ns)
    assert 'Error from server (NotFound): deployments.apps "nope" not found' in p.stderr


# --------------------------------------------------------------------------- custom resources

def crd_manifest(group: str) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {"type": "object", "properties": {
                        "size": {"type": "integer"},
                        "color": {"type": "string"},
                    }}},
                }},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
            }],
        },
    }


def test_crd_and_custom_resource(kubectl_any, ns, tmp_path):
    k = kubectl_any
    group = f"{ns}.example.com"  # unique per test: CRDs are cluster-scoped
    crd_name = f"widgets.{group}"
    crd_file = write_manifest(tmp_path, "crd.yaml", crd_manifest(group))
    assert k.ok("create", "-f", crd_file) == \
        f"customresourcedefinition.apiextensions.k8s.io/{crd_name} created\n"
    try:
        assert k.ok("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd_name}") == \
            f"customresourcedefinition.apiextensions.k8s.io/{crd_name} condition met\n"
        t = parse_table(k.ok("get", "crd", crd_name))
        assert t.headers == ["NAME", "CREATED AT"]
        assert RFC3339_RE.match(t.row(crd_name)["CREATED AT"]), t.raw

        cr = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w1"},
              "spec": {"size": 3, "color": "blue"}}
        cr_file = write_manifest(tmp_path, "cr.yaml", cr)
        assert k.ok("create", "-f", cr_file, "-n", ns) == f"widget.{group}/w1 created\n"
        t = parse_table(k.ok("get", f"widgets.{group}", "-n", ns))
        assert t.headers == ["NAME", "SIZE", "AGE"]
        assert t.row("w1")["SIZE"] == "3"
        obj = json.loads(k.ok("get", f"widgets.{group}", "w1", "-n", ns, "-o", "json"))
        assert obj["spec"] == {"size": 3, "color": "blue"}
        assert UID_RE.match(obj["metadata"]["uid"]) and obj["metadata"]["generation"] == 1

        assert k.ok("patch", f"widgets.{group}", "w1", "-n", ns, "--type=merge",
                    "-p", '{"spec":{"size":5}}') == f"widget.{group}/w1 patched\n"
        assert jsonpath(k, ns, f"widgets.{group}/w1", "{.spec.size}") == "5"
        assert k.ok("delete", f"widgets.{group}", "w1", "-n", ns) == f'widget.{group} "w1" deleted\n'
    finally:
        k("delete", "crd", crd_name, "--wait=false")


def test_custom_resource_unknown_field_rejected(kubectl, api, ns, tmp_path):
    """kubectl 1.33 sends fieldValidation=Strict; unknown fields in a CR are
    then an error rather than silently pruned."""
    group = f"{ns}.example.com"
    crd_name = f"widgets.{group}"
    kubectl.ok("create", "-f", write_manifest(tmp_path, "crd.yaml", crd_manifest(group)))
    try:
        kubectl.ok("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd_name}")
        # Upstream publishes a CRD's OpenAPI asynchronously; kubectl reads it
        # to decide on server-side field validation.
        wait_for(lambda: f"apis/{group}/v1" in api.get("/openapi/v3").json().get("paths", {}),
                 timeout=30, message=f"/openapi/v3 to list apis/{group}/v1")
        bad = write_manifest(tmp_path, "bad.yaml", {
            "apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w2"},
            "spec": {"size": 1, "bogus": True}})
        p = kubectl.fails("create", "-f", bad, "-n", ns)
        assert p.stderr.startswith("Error from server (BadRequest): "), p.stderr
        assert 'strict decoding error: unknown field "spec.bogus"' in p.stderr, p.stderr
    finally:
        kubectl("delete", "crd", crd_name, "--wait=false")


# --------------------------------------------------------------------------- label / annotate

def test_label_and_annotate(kubectl_any, ns, tmp_path):
    k = kubectl_any
    k.ok("create", "-f", write_manifest(tmp_path, "d.yaml", deployment("web")), "-n", ns)

    assert k.ok("label", "deployment", "web", "tier=frontend", "-n", ns) == "deployment.apps/web labeled\n"
    assert jsonpath(k, ns, "deployment/web", "{.metadata.labels.tier}") == "frontend"
    p = k.fails("label", "deployment", "web", "tier=backend", "-n", ns)
    assert p.stderr == "error: 'tier' already has a value (frontend), and --overwrite is false\n"
    assert k.ok("label", "deployment", "web", "tier=backend", "--overwrite", "-n", ns) == \
        "deployment.apps/web labeled\n"
    assert jsonpath(k, ns, "deployment/web", "{.metadata.labels.tier}") == "backend"
    assert parse_table(k.ok("get", "deploy", "-l", "tier=backend", "-n", ns)).column("NAME") == ["web"]
    removed = k.ok("label", "deployment", "web", "tier-", "-n", ns)
    # kubectl 1.20 has no distinct "unlabeled" message.
    assert removed == ("deployment.apps/web unlabeled\n" if k.version == "1.33" else
                       "deployment.apps/web labeled\n")
    assert get_json(k, ns, "deployment", "web")["metadata"]["labels"] == {"app": "web"}

    assert k.ok("annotate", "deployment", "web", "note=hello world", "-n", ns) == \
        "deployment.apps/web annotated\n"
    assert jsonpath(k, ns, "deployment/web", "{.metadata.annotations.note}") == "hello world"
    assert k.ok("annotate", "deployment", "web", "note-", "-n", ns) == "deployment.apps/web annotated\n"
    assert "note" not in get_json(k, ns, "deployment", "web")["metadata"].get("annotations", {})

    p = k.fails("label", "deployment", "nope", "a=b", "-n", ns)
    assert 'Error from server (NotFound): deployments.apps "nope" not found' in p.stderr


# --------------------------------------------------------------------------- patch

def test_patch_strategic_merge_json(kubectl_any, ns, tmp_path):
    k = kubectl_any
    two = deployment("web", containers=[
        {"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
        {"name": "sidecar", "image": "busybox:1.36", "command": ["sleep", "infinity"]},
    ])
    k.ok("create", "-f", write_manifest(tmp_path, "d.yaml", two), "-n", ns)

    # Strategic merge (the default): containers merge by name.
    smp = '{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.26"}]}}}}'
    assert k.ok("patch", "deployment", "web", "-n", ns, "-p", smp) == "deployment.apps/web patched\n"
    containers = get_json(k, ns, "deployment", "web")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["nginx", "sidecar"]
    assert containers[0]["image"] == "nginx:1.26"
    assert containers[0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    wait_settled(k, ns, "deployment", "web")
    assert k.ok("patch", "deployment", "web", "-n", ns, "-p", smp) == \
        "deployment.apps/web patched (no change)\n"
    assert get_json(k, ns, "deployment", "web")["metadata"]["generation"] == 2

    # JSON merge patch: maps merge, lists are replaced.
    assert k.ok("patch", "deployment", "web", "-n", ns, "--type=merge",
                "-p", '{"metadata":{"labels":{"env":"prod"}}}') == "deployment.apps/web patched\n"
    assert get_json(k, ns, "deployment", "web")["metadata"]["labels"] == {"app": "web", "env": "prod"}
    assert k.ok("patch", "deployment", "web", "-n", ns, "--type", "merge", "-p",
                '{"spec":{"template":{"spec":{"containers":[{"name":"only","image":"busybox:1.36"}]}}}}') \
        == "deployment.apps/web patched\n"
    containers = get_json(k, ns, "deployment", "web")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["only"]
    assert containers[0]["imagePullPolicy"] == "IfNotPresent"  # defaulted after the patch

    # JSON patch.
    assert k.ok("patch", "deployment", "web", "-n", ns, "--type=json",
                "-p", '[{"op":"replace","path":"/spec/replicas","value":5}]') == "deployment.apps/web patched\n"
    assert jsonpath(k, ns, "deployment/web", "{.spec.replicas}") == "5"
    # A failing "test" operation rejects the whole patch (422 from the server).
    k.fails("patch", "deployment", "web", "-n", ns, "--type=json",
            "-p", '[{"op":"test","path":"/spec/replicas","value":1},{"op":"replace","path":"/spec/replicas","value":9}]')
    assert jsonpath(k, ns, "deployment/web", "{.spec.replicas}") == "5"

    p = k.fails("patch", "deployment", "nope", "-n", ns, "-p", '{"spec":{"replicas":1}}')
    assert p.stderr == 'Error from server (NotFound): deployments.apps "nope" not found\n'


# --------------------------------------------------------------------------- apply

def test_apply_client_side(kubectl_any, ns, tmp_path):
    k = kubectl_any
    v1 = deployment("web", labels={"app": "web", "extra": "yes"})
    f = write_manifest(tmp_path, "web.yaml", v1)
    assert k.ok("apply", "-f", f, "-n", ns) == "deployment.apps/web created\n"
    obj = get_json(k, ns, "deployment", "web")
    last = json.loads(obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["metadata"]["labels"] == {"app": "web", "extra": "yes"}
    assert last["spec"]["replicas"] == 2

    assert k.ok("apply", "-f", f, "-n", ns) == "deployment.apps/web unchanged\n"

    # Out-of-band change, then a new config that drops a label and rescales:
    # three-way merge removes what the config dropped, keeps the rest.
    k.ok("label", "deployment", "web", "manual=kept", "-n", ns)
    v2 = deployment("web", replicas=3, labels={"app": "web"})
    write_manifest(tmp_path, "web.yaml", v2)
    assert k.ok("apply", "-f", f, "-n", ns) == "deployment.apps/web configured\n"
    obj = get_json(k, ns, "deployment", "web")
    assert obj["spec"]["replicas"] == 3
    assert obj["metadata"]["labels"] == {"app": "web", "manual": "kept"}
    assert k.ok("apply", "-f", f, "-n", ns) == "deployment.apps/web unchanged\n"


def test_apply_to_object_created_imperatively(kubectl_any, ns, tmp_path):
    k = kubectl_any
    f = write_manifest(tmp_path, "cm.yaml", configmap("cfg", {"a": "1"}))
    k.ok("create", "-f", f, "-n", ns)
    write_manifest(tmp_path, "cm.yaml", configmap("cfg", {"a": "2"}))
    p = k("apply", "-f", f, "-n", ns)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "configmap/cfg configured\n"
    assert ("Warning: resource configmaps/cfg is missing the kubectl.kubernetes.io/last-applied-configuration "
            "annotation which is required by kubectl apply.") in p.stderr, p.stderr
    assert jsonpath(k, ns, "configmap/cfg", "{.data.a}") == "2"


def test_apply_server_side(kubectl_any, ns, tmp_path, api):
    k = kubectl_any
    f2 = write_manifest(tmp_path, "r2.yaml", deployment("web", replicas=2))
    f3 = write_manifest(tmp_path, "r3.yaml", deployment("web", replicas=3))
    assert k.ok("apply", "--server-side", "--field-manager=alice", "-f", f2, "-n", ns) == \
        "deployment.apps/web serverside-applied\n"
    # Same config again is still "serverside-applied" (no three-way diff).
    assert k.ok("apply", "--server-side", "--field-manager=alice", "-f", f2, "-n", ns) == \
        "deployment.apps/web serverside-applied\n"

    p = k.fails("apply", "--server-side", "--field-manager=bob", "-f", f3, "-n", ns)
    assert 'Apply failed with 1 conflict: conflict with "alice": .spec.replicas' in p.stderr, p.stderr
    assert "--force-conflicts" in p.stderr, p.stderr
    assert jsonpath(k, ns, "deployment/web", "{.spec.replicas}") == "2"

    assert k.ok("apply", "--server-side", "--field-manager=bob", "--force-conflicts", "-f", f3, "-n", ns) == \
        "deployment.apps/web serverside-applied\n"
    assert jsonpath(k, ns, "deployment/web", "{.spec.replicas}") == "3"

    managed = api.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web").json()["metadata"]["managedFields"]
    by_manager = {m["manager"]: m for m in managed}
    assert by_manager["bob"]["operation"] == "Apply" and by_manager["alice"]["operation"] == "Apply"
    assert "f:replicas" in by_manager["bob"]["fieldsV1"]["f:spec"]
    assert "f:replicas" not in by_manager["alice"]["fieldsV1"].get("f:spec", {})


# --------------------------------------------------------------------------- edit / scale

def test_edit_with_scripted_editor(kubectl_any, ns, tmp_path):
    k = kubectl_any
    k.ok("create", "-f", write_manifest(tmp_path, "d.yaml", deployment("web")), "-n", ns)
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nset -e\nsed -i 's/^  replicas: 2$/  replicas: 7/' \"$1\"\n")
    editor.chmod(0o755)
    assert k.ok("edit", "deployment/web", "-n", ns, env={"KUBE_EDITOR": str(editor)}) == \
        "deployment.apps/web edited\n"
    assert jsonpath(k, ns, "deployment/web", "{.spec.replicas}") == "7"

    p = k("edit", "deployment/web", "-n", ns, env={"KUBE_EDITOR": "true"})
    assert p.returncode == 0, p.stderr
    assert "Edit cancelled, no changes made." in p.stdout + p.stderr
    assert jsonpath(k, ns, "deployment/web", "{.spec.replicas}") == "7"


def test_scale(kubectl_any, ns, tmp_path, api):
    k = kubectl_any
    k.ok("create", "-f", write_manifest(tmp_path, "d.yaml", deployment("web")), "-n", ns)
    assert k.ok("scale", "deployment/web", "--replicas=3", "-n", ns) == "deployment.apps/web scaled\n"
    assert jsonpath(k, ns, "deployment/web", "{.spec.replicas}") == "3"
    assert k.ok("scale", "deployment", "web", "--current-replicas=3", "--replicas=4", "-n", ns) == \
        "deployment.apps/web scaled\n"
    assert jsonpath(k, ns, "deployment/web", "{.spec.replicas}") == "4"
    p = k.fails("scale", "deployment/web", "--current-replicas=9", "--replicas=1", "-n", ns)
    assert jsonpath(k, ns, "deployment/web", "{.spec.replicas}") == "4", p.stderr

    scale = api.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web/scale").json()
    assert scale["apiVersion"] == "autoscaling/v1" and scale["kind"] == "Scale"
    assert scale["spec"] == {"replicas": 4}
    assert scale["status"]["selector"] == "app=web"


# --------------------------------------------------------------------------- delete

def test_delete_and_cascade(kubectl_any, ns, tmp_path):
    k = kubectl_any
    names = ["d-background", "d-orphan", "d-foreground", "d-default"]
    k.ok("create", "-f", write_manifest(tmp_path, "d.yaml", *[deployment(n) for n in names]), "-n", ns)

    assert k.ok("delete", "deployment", "d-background", "--cascade=background", "-n", ns) == \
        'deployment.apps "d-background" deleted\n'
    assert k.ok("delete", "deployment", "d-orphan", "--cascade=orphan", "-n", ns) == \
        'deployment.apps "d-orphan" deleted\n'
    assert k.ok("delete", "deployment", "d-foreground", "--cascade=foreground", "-n", ns) == \
        'deployment.apps "d-foreground" deleted\n'
    assert k.ok("delete", "deployment/d-default", "-n", ns) == 'deployment.apps "d-default" deleted\n'
    for name in ("d-background", "d-orphan", "d-default"):
        p = k.fails("get", "deployment", name, "-n", ns)
        assert p.stderr == f'Error from server (NotFound): deployments.apps "{name}" not found\n'

    p = k.fails("delete", "deployment", "nope", "-n", ns)
    assert p.returncode == 1
    assert p.stderr == 'Error from server (NotFound): deployments.apps "nope" not found\n'

    f = write_manifest(tmp_path, "cms.yaml", configmap("c1"), configmap("c2"))
    k.ok("create", "-f", f, "-n", ns)
    assert k.ok("delete", "-f", f, "-n", ns).splitlines() == ['configmap "c1" deleted', 'configmap "c2" deleted']
    k.ok("create", "-f", f, "-n", ns)
    k.ok("label", "configmap", "c1", "c2", "group=g", "-n", ns)
    assert k.ok("delete", "configmap", "-l", "group=g", "-n", ns).splitlines() == \
        ['configmap "c1" deleted', 'configmap "c2" deleted']


# --------------------------------------------------------------------------- explain

def test_explain(kubectl_any):
    k = kubectl_any
    out = k.ok("explain", "deployment.spec")
    lines = out.splitlines()
    if k.version == "1.33":
        assert lines[:4] == ["GROUP:      apps", "KIND:       Deployment", "VERSION:    v1", ""], out
        assert "FIELD: spec <DeploymentSpec>" in lines, out
        fields = {
            "minReadySeconds": "<integer>", "paused": "<boolean>", "progressDeadlineSeconds": "<integer>",
            "replicas": "<integer>", "revisionHistoryLimit": "<integer>",
            "selector": "<LabelSelector> -required-", "strategy": "<DeploymentStrategy>",
            "template": "<PodTemplateSpec> -required-",
        }
    else:
        assert lines[:2] == ["KIND:     Deployment", "VERSION:  apps/v1"], out
        assert "RESOURCE: spec <Object>" in lines, out
        fields = {
            "minReadySeconds": "<integer>", "paused": "<boolean>", "progressDeadlineSeconds": "<integer>",
            "replicas": "<integer>", "revisionHistoryLimit": "<integer>",
            "selector": "<Object> -required-", "strategy": "<Object>", "template": "<Object> -required-",
        }
    assert "DESCRIPTION:" in lines and "FIELDS:" in lines, out
    for name, typ in fields.items():
        assert re.search(rf"^\s+{name}\t{re.escape(typ)}$", out, re.M), f"{name} {typ} missing:\n{out}"

    p = k.fails("explain", "deployment.spec.nope")
    assert 'field "nope" does not exist' in p.stderr, p.stderr


# --------------------------------------------------------------------------- dry run

def test_dry_run_server(kubectl_any, ns, tmp_path):
    k = kubectl_any
    f = write_manifest(tmp_path, "cm.yaml", configmap("dry"))
    assert k.ok("create", "-f", f, "--dry-run=server", "-n", ns) == "configmap/dry created (server dry run)\n"
    p = k.fails("get", "configmap", "dry", "-n", ns)
    assert p.stderr == 'Error from server (NotFound): configmaps "dry" not found\n'
    # The server-side dry run still validates.
    bad = write_manifest(tmp_path, "bad.yaml", configmap("Bad_Name"))
    p = k.fails("create", "-f", bad, "--dry-run=server", "-n", ns)
    assert 'The ConfigMap "Bad_Name" is invalid' in p.stderr, p.stderr

    assert k.ok("apply", "-f", f, "--dry-run=server", "-n", ns) == "configmap/dry created (server dry run)\n"
    k.fails("get", "configmap", "dry", "-n", ns)

    k.ok("create", "-f", f, "-n", ns)
    assert k.ok("delete", "configmap", "dry", "--dry-run=server", "-n", ns) == \
        'configmap "dry" deleted (server dry run)\n'
    k.ok("get", "configmap", "dry", "-n", ns)
    rv = jsonpath(k, ns, "configmap/dry", "{.metadata.resourceVersion}")
    out = k.ok("label", "configmap", "dry", "x=y", "--dry-run=server", "-n", ns)
    # kubectl 1.20 sends dryRun=All but omits the suffix for label.
    assert out == ("configmap/dry labeled (server dry run)\n" if k.version == "1.33" else
                   "configmap/dry labeled\n")
    assert jsonpath(k, ns, "configmap/dry", "{.metadata.resourceVersion}") == rv
    assert jsonpath(k, ns, "configmap/dry", "{.metadata.labels}") == ""


# --------------------------------------------------------------------------- bad input through kubectl

def test_invalid_name(kubectl_any, ns, tmp_path):
    f = write_manifest(tmp_path, "bad.yaml", configmap("Bad_Name"))
    p = kubectl_any.fails("create", "-f", f, "-n", ns)
    assert p.stderr == (
        'The ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 '
        "subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end "
        "with an alphanumeric character (e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')\n"), p.stderr


def test_unknown_field(kubectl_any, ns, tmp_path):
    d = deployment("web")
    d["spec"]["bogus"] = 1
    f = write_manifest(tmp_path, "bad.yaml", d)
    p = kubectl_any.fails("create", "-f", f, "-n", ns)
    if kubectl_any.version == "1.33":
        # 1.33 leaves validation to the server (fieldValidation=Strict).
        assert p.stderr == (f'Error from server (BadRequest): error when creating "{f}": Deployment in version '
                            '"v1" cannot be handled as a Deployment: strict decoding error: unknown field '
                            '"spec.bogus"\n'), p.stderr
    else:
        # 1.20 validates on the client against /openapi/v2.
        assert p.stderr == (f'error: error validating "{f}": error validating data: ValidationError('
                            'Deployment.spec): unknown field "bogus" in io.k8s.api.apps.v1.DeploymentSpec; '
                            'if you choose to ignore these errors, turn validation off with '
                            '--validate=false\n'), p.stderr
    kubectl_any.fails("get", "deployment", "web", "-n", ns)


def test_unknown_api_version(kubectl_any, ns, tmp_path):
    d = deployment("web")
    d["apiVersion"] = "apps/v9"
    f = write_manifest(tmp_path, "bad.yaml", d)
    p = kubectl_any.fails("create", "-f", f, "-n", ns)
    assert 'no matches for kind "Deployment" in version "apps/v9"' in p.stderr, p.stderr


def test_malformed_manifest(kubectl_any, ns, tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n data: [\n")
    p = kubectl_any.fails("create", "-f", f, "-n", ns)
    assert p.stderr.startswith(f"error: error parsing {f}: error converting YAML to JSON: yaml: line "), p.stderr
