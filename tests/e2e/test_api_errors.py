"""Bad input over raw HTTPS: every error is a `Status` with the right code.

Requests carry the admin client certificate from the kubeconfig (or none, for
the authentication tests). Upstream v1.33 answers are the reference; where
upstream itself answers 500 for client mistakes (invalid resourceVersion,
kubernetes/kubernetes#101350 and #139485), we expect the 400 BadRequest those
issues ask for: Flotilla must never answer 500 to bad input.
"""

from __future__ import annotations

import json

import pytest

from e2e_util import configmap, deployment, status_of

MIB = 1024 * 1024


def cms(ns: str) -> str:
    return f"/api/v1/namespaces/{ns}/configmaps"


def create_cm(api, ns: str, name: str = "cm", data: dict | None = None) -> dict:
    r = api.post(cms(ns), json=configmap(name, data))
    assert r.status_code == 201, r.text
    return r.json()


def expect_status(r, code: int, reason: str) -> dict:
    assert r.status_code == code, f"expected {code} {reason}, got {r.status_code}: {r.text[:1000]}"
    st = status_of(r)
    assert st.get("reason") == reason, st
    return st


# --------------------------------------------------------------------------- authentication

def test_anonymous_request_is_unauthorized(anon):
    r = anon.get("/api/v1/namespaces")
    st = expect_status(r, 401, "Unauthorized")
    assert st["message"] == "Unauthorized", st


def test_invalid_bearer_token_is_unauthorized(anon):
    r = anon.get("/api/v1/namespaces", headers={"Authorization": "Bearer not-a-valid-token"})
    expect_status(r, 401, "Unauthorized")


def test_health_endpoints_are_public(anon):
    for path in ("/readyz", "/livez", "/healthz"):
        r = anon.get(path)
        assert (r.status_code, r.text) == (200, "ok"), f"{path}: {r.status_code} {r.text[:300]}"


def token_kubeconfig(path, cluster, token: str):
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "c", "cluster": {"server": cluster.url,
                                               "certificate-authority": str(cluster.ca_file)}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "t", "context": {"cluster": "c", "user": "u"}}],
    }))
    return path


def test_static_token_authenticates(anon, cluster, kubectl_any, tmp_path):
    token = cluster.admin_token
    r = anon.get("/api/v1/namespaces", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "NamespaceList"

    # And through kubectl with a token-only kubeconfig.
    k = kubectl_any.with_kubeconfig(token_kubeconfig(tmp_path / "token.kubeconfig", cluster, token))
    p = k("get", "namespace", "default", "-o", "name")
    assert (p.returncode, p.stdout) == (0, "namespace/default\n"), p.stderr


def test_kubectl_with_bad_token(cluster, kubectl_any, tmp_path):
    k = kubectl_any.with_kubeconfig(token_kubeconfig(tmp_path / "bad.kubeconfig", cluster, "wrong"))
    p = k("get", "configmaps", "-n", "default")
    assert p.returncode == 1
    assert "error: You must be logged in to the server (" in p.stderr, p.stderr


# --------------------------------------------------------------------------- not found / exists / method

def test_not_found_and_already_exists(api, ns):
    st = expect_status(api.get(f"{cms(ns)}/nope"), 404, "NotFound")
    assert st["message"] == 'configmaps "nope" not found'
    assert st["details"] == {"name": "nope", "kind": "configmaps"}
    st = expect_status(api.get(f"/apis/apps/v1/namespaces/{ns}/deployments/nope"), 404, "NotFound")
    assert st["message"] == 'deployments.apps "nope" not found'
    assert st["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}

    create_cm(api, ns, "dup")
    st = expect_status(api.post(cms(ns), json=configmap("dup")), 409, "AlreadyExists")
    assert st["message"] == 'configmaps "dup" already exists'
    assert st["details"] == {"name": "dup", "kind": "configmaps"}


def test_unknown_paths_and_methods(api, ns):
    st = expect_status(api.get("/apis/nope.example.com/v1/things"), 404, "NotFound")
    assert st["message"] == "the server could not find the requested resource"
    expect_status(api.get(f"/api/v1/namespaces/{ns}/nothings"), 404, "NotFound")
    create_cm(api, ns, "m")
    expect_status(api.post(f"{cms(ns)}/m", json=configmap("m")), 405, "MethodNotAllowed")


# --------------------------------------------------------------------------- malformed bodies

@pytest.mark.parametrize("ctype,body", [
    ("application/json", b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": '),
    ("application/json", b"\x00\x01not json at all"),
    ("application/json", b"[1, 2, 3]"),
    ("application/yaml", b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n"),
    ("application/yaml", b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n data: [\n"),
], ids=["json-truncated", "json-garbage", "json-array", "yaml-flow-unclosed", "yaml-bad-indent"])
def test_malformed_body(api, ns, ctype, body):
    expect_status(api.post(cms(ns), data=body, headers={"Content-Type": ctype}), 400, "BadRequest")
    assert api.get(f"{cms(ns)}/x").status_code == 404


def test_wrong_field_type(api, ns):
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "t"}, "data": {"a": 1}}
    st = expect_status(api.post(cms(ns), json=body), 400, "BadRequest")
    assert st["message"].startswith('ConfigMap in version "v1" cannot be handled as a ConfigMap: '), st


def test_unsupported_content_type(api, ns):
    r = api.post(cms(ns), data=b"name=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    expect_status(r, 415, "UnsupportedMediaType")


@pytest.mark.parametrize("api_version,kind", [
    ("apps/v1", "ConfigMap"),     # wrong group for the endpoint
    ("v2", "ConfigMap"),          # version that does not exist
    ("v1", "Secret"),             # another kind than the endpoint's
    ("v1", "Nonsense"),           # a kind that does not exist
])
def test_wrong_api_version_or_kind(api, ns, api_version, kind):
    body = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "wrong"}, "data": {"a": "b"}}
    expect_status(api.post(cms(ns), json=body), 400, "BadRequest")
    assert api.get(f"{cms(ns)}/wrong").status_code == 404


# --------------------------------------------------------------------------- validation

def test_invalid_name(api, ns):
    st = expect_status(api.post(cms(ns), json=configmap("Bad_Name")), 422, "Invalid")
    assert st["message"] == (
        'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 '
        "subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end "
        "with an alphanumeric character (e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"), st
    assert st["details"]["name"] == "Bad_Name" and st["details"]["kind"] == "ConfigMap", st
    assert st["details"]["causes"] == [{
        "reason": "FieldValueInvalid",
        "message": ("Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case "
                    "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character "
                    "(e.g. 'example.com', regex used for validation is "
                    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
        "field": "metadata.name",
    }], st


def test_invalid_deployment(api, ns):
    d = deployment("bad")
    del d["spec"]["selector"]
    st = expect_status(api.post(f"/apis/apps/v1/namespaces/{ns}/deployments", json=d), 422, "Invalid")
    assert st["details"]["group"] == "apps" and st["details"]["kind"] == "Deployment", st
    fields = {(c["field"], c["reason"]) for c in st["details"]["causes"]}
    assert ("spec.selector", "FieldValueRequired") in fields, st

    d = deployment("bad2")
    d["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    st = expect_status(api.post(f"/apis/apps/v1/namespaces/{ns}/deployments", json=d), 422, "Invalid")
    assert "`selector` does not match template `labels`" in st["message"], st


def test_namespace_mismatch(api, ns):
    body = configmap("mism")
    body["metadata"]["namespace"] = "some-other-namespace"
    st = expect_status(api.post(cms(ns), json=body), 400, "BadRequest")
    assert st["message"] == "the namespace of the provided object does not match the namespace sent on the request"


def test_object_too_big_for_a_configmap(api, ns):
    r = api.post(cms(ns), json=configmap("big", {"blob": "x" * (MIB + 1)}))
    expect_status(r, 422, "Invalid")


def test_oversized_body(api, ns):
    body = json.dumps(configmap("huge", {"blob": "x" * (3 * MIB + 1024)})).encode()
    st = expect_status(api.post(cms(ns), data=body, headers={"Content-Type": "application/json"}),
                       413, "RequestEntityTooLarge")
    assert st["message"] == "Request entity too large: limit is 3145728", st
    create_cm(api, ns, "small")
    r = api.patch(f"{cms(ns)}/small", data=body, headers={"Content-Type": "application/merge-patch+json"})
    expect_status(r, 413, "RequestEntityTooLarge")


# --------------------------------------------------------------------------- field validation

def test_field_validation(api, ns):
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fv"}, "data": {"a": "b"}, "bogus": 1}
    st = expect_status(api.post(cms(ns) + "?fieldValidation=Strict", json=body), 400, "BadRequest")
    assert st["message"] == ('ConfigMap in version "v1" cannot be handled as a ConfigMap: '
                             'strict decoding error: unknown field "bogus"'), st

    dup = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"fv","name":"fv2"}}'
    st = expect_status(api.post(cms(ns) + "?fieldValidation=Strict", data=dup,
                                headers={"Content-Type": "application/json"}), 400, "BadRequest")
    assert 'duplicate field "metadata.name"' in st["message"], st

    # Default (Warn): created, with a warning header per unknown field.
    r = api.post(cms(ns), json=body)
    assert r.status_code == 201, r.text
    assert r.headers.get("Warning") == '299 - "unknown field \\"bogus\\""', r.headers
    assert "bogus" not in r.json()

    body["metadata"]["name"] = "fv-ignore"
    r = api.post(cms(ns) + "?fieldValidation=Ignore", json=body)
    assert r.status_code == 201 and "Warning" not in r.headers, (r.status_code, r.headers)

    body["metadata"]["name"] = "fv-bad"
    st = expect_status(api.post(cms(ns) + "?fieldValidation=Sometimes", json=body), 422, "Invalid")
    assert "fieldValidation" in st["message"], st


def test_deployment_unknown_nested_field_strict(api, ns):
    d = deployment("strict")
    d["spec"]["template"]["spec"]["containers"][0]["imagePolicy"] = "x"
    st = expect_status(api.post(f"/apis/apps/v1/namespaces/{ns}/deployments?fieldValidation=Strict", json=d),
                       400, "BadRequest")
    assert st["message"] == ('Deployment in version "v1" cannot be handled as a Deployment: strict decoding '
                             'error: unknown field "spec.template.spec.containers[0].imagePolicy"'), st


# --------------------------------------------------------------------------- selectors

@pytest.mark.parametrize("selector", ["a in (b", "=x", "a=b c", "k/x/y=1", "a==b==c", "!"])
def test_bad_label_selector(api, ns, selector):
    expect_status(api.get(cms(ns), params={"labelSelector": selector}), 400, "BadRequest")


@pytest.mark.parametrize("selector", ["spec.bogus=1", "metadata.name", "metadata.name~x"])
def test_bad_field_selector(api, ns, selector):
    expect_status(api.get(cms(ns), params={"fieldSelector": selector}), 400, "BadRequest")


def test_good_selectors(api, ns):
    create_cm(api, ns, "s1")
    r = api.get(cms(ns), params={"fieldSelector": "metadata.name=s1", "labelSelector": "!nolabel"})
    assert r.status_code == 200, r.text
    assert [i["metadata"]["name"] for i in r.json()["items"]] == ["s1"]


# --------------------------------------------------------------------------- patches

@pytest.mark.parametrize("ctype,body,code,reason", [
    ("application/json-patch+json", b'{"op": "add"}', 400, "BadRequest"),
    ("application/json-patch+json", b'[{"op": ', 400, "BadRequest"),
    ("application/json-patch+json", b'[{"op": "frobnicate", "path": "/data/a"}]', 422, "Invalid"),
    ("application/json-patch+json", b'[{"op": "test", "path": "/data/key", "value": "other"}]', 422, "Invalid"),
    ("application/json-patch+json", b'[{"op": "remove", "path": "/data/missing"}]', 422, "Invalid"),
    ("application/merge-patch+json", b'{"data": ', 400, "BadRequest"),
    ("application/strategic-merge-patch+json", b"not json", 400, "BadRequest"),
    ("application/strategic-merge-patch+json", b'{"data": "not-a-map"}', 422, "Invalid"),
    ("application/merge-patch+json", b'{"metadata": {"name": "renamed"}}', 400, "BadRequest"),
    ("application/apply-patch+yaml", b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: p\n", 400, "BadRequest"),
    ("text/plain", b'{"data": {"a": "b"}}', 415, "UnsupportedMediaType"),
], ids=["jsonpatch-not-array", "jsonpatch-truncated", "jsonpatch-unknown-op", "jsonpatch-test-fails",
        "jsonpatch-remove-missing", "merge-truncated", "smp-garbage", "smp-wrong-type", "merge-rename",
        "apply-bad-yaml", "text-plain"])
def test_bad_patch(api, ns, ctype, body, code, reason):
    before = create_cm(api, ns, "p")
    params = {"fieldManager": "e2e"} if ctype == "application/apply-patch+yaml" else {}
    expect_status(api.patch(f"{cms(ns)}/p", data=body, headers={"Content-Type": ctype}, params=params),
                  code, reason)
    after = api.get(f"{cms(ns)}/p").json()
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["data"] == before["data"]


def test_patch_missing_object(api, ns):
    r = api.patch(f"{cms(ns)}/ghost", json={"data": {"a": "b"}},
                  headers={"Content-Type": "application/merge-patch+json"})
    st = expect_status(r, 404, "NotFound")
    assert st["message"] == 'configmaps "ghost" not found'


def test_apply_patch_requires_field_manager(api, ns):
    r = api.patch(f"{cms(ns)}/ssa", data=b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\n",
                  headers={"Content-Type": "application/apply-patch+yaml"})
    expect_status(r, 422, "Invalid")


# --------------------------------------------------------------------------- resource versions

@pytest.mark.parametrize("query", [
    {"resourceVersion": "abc"},
    {"resourceVersion": "-1"},
    {"watch": "true", "resourceVersion": "abc"},
    {"continue": "not-a-continue-token", "limit": "1"},
])
def test_bad_resource_version_on_list(api, ns, query):
    expect_status(api.get(cms(ns), params=query, timeout=10), 400, "BadRequest")


def test_bad_resource_version_on_get(api, ns):
    create_cm(api, ns, "g")
    expect_status(api.get(f"{cms(ns)}/g", params={"resourceVersion": "abc"}), 400, "BadRequest")


def test_resource_version_match_without_version(api, ns):
    st = expect_status(api.get(cms(ns), params={"resourceVersionMatch": "Exact"}), 422, "Invalid")
    assert st["details"]["kind"] == "ListOptions" and st["details"]["group"] == "meta.k8s.io", st


def test_stale_resource_version_conflicts(api, ns):
    obj = create_cm(api, ns, "rv")
    stale = dict(obj)
    obj["data"] = {"key": "v2"}
    r = api.put(f"{cms(ns)}/rv", json=obj)
    assert r.status_code == 200, r.text
    assert int(r.json()["metadata"]["resourceVersion"]) > int(stale["metadata"]["resourceVersion"])

    stale = dict(stale, data={"key": "stale"})
    st = expect_status(api.put(f"{cms(ns)}/rv", json=stale), 409, "Conflict")
    assert st["message"] == ('Operation cannot be fulfilled on configmaps "rv": the object has been modified; '
                             'please apply your changes to the latest version and try again'), st
    assert st["details"] == {"name": "rv", "kind": "configmaps"}

    # The same precondition inside a patch body.
    patch = {"metadata": {"resourceVersion": stale["metadata"]["resourceVersion"]}, "data": {"key": "p"}}
    expect_status(api.patch(f"{cms(ns)}/rv", json=patch, headers={"Content-Type": "application/merge-patch+json"}),
                  409, "Conflict")
    assert api.get(f"{cms(ns)}/rv").json()["data"] == {"key": "v2"}


def test_garbage_resource_version_in_update(api, ns):
    obj = create_cm(api, ns, "garbage")
    obj["metadata"]["resourceVersion"] = "not-a-number"
    r = api.put(f"{cms(ns)}/garbage", json=obj)
    # Upstream answers 500 here (an unparsable version is not a Status
    # error); a client mistake must be 400 BadRequest or 409 Conflict.
    assert r.status_code in (400, 409), r.text
    status_of(r)


def test_update_name_mismatch(api, ns):
    obj = create_cm(api, ns, "named")
    obj["metadata"]["name"] = "other"
    st = expect_status(api.put(f"{cms(ns)}/named", json=obj), 400, "BadRequest")
    assert st["message"] == "the name of the object (other) does not match the name on the URL (named)", st
