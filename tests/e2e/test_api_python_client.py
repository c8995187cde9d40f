"""The Python `kubernetes` client (v33, generated for Kubernetes v1.33)."""

from __future__ import annotations

import json

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from e2e_util import deployment

REQUEST_TIMEOUT = 30


def cm(name: str, labels: dict | None = None, data: dict | None = None) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels), data=data or {"k": "v"})


def test_create_list_get_delete(k8s, ns):
    core = client.CoreV1Api(k8s)
    for i in range(3):
        created = core.create_namespaced_config_map(
            ns, cm(f"cm{i}", {"app": "py", "idx": str(i)}, {"i": str(i)}), _request_timeout=REQUEST_TIMEOUT)
        assert created.metadata.name == f"cm{i}" and created.metadata.uid and created.metadata.resource_version
    core.create_namespaced_config_map(ns, cm("other", {"app": "else"}), _request_timeout=REQUEST_TIMEOUT)

    def names(**kw) -> list[str]:
        return sorted(i.metadata.name for i in core.list_namespaced_config_map(
            ns, _request_timeout=REQUEST_TIMEOUT, **kw).items)

    assert names(label_selector="app=py") == ["cm0", "cm1", "cm2"]
    assert names(label_selector="app=py,idx!=1") == ["cm0", "cm2"]
    assert names(label_selector="idx in (0,2)") == ["cm0", "cm2"]
    assert names(label_selector="app,!idx") == ["other"]
    assert names(field_selector="metadata.name=cm2") == ["cm2"]
    assert names(label_selector="app=py", field_selector="metadata.name!=cm0") == ["cm1", "cm2"]

    # Pagination: limit + continue.
    page1 = core.list_namespaced_config_map(ns, label_selector="app=py", limit=2, _request_timeout=REQUEST_TIMEOUT)
    assert len(page1.items) == 2 and page1.metadata._continue
    page2 = core.list_namespaced_config_map(ns, label_selector="app=py", limit=2,
                                            _continue=page1.metadata._continue, _request_timeout=REQUEST_TIMEOUT)
    assert len(page2.items) == 1 and not page2.metadata._continue
    assert sorted(i.metadata.name for i in page1.items + page2.items) == ["cm0", "cm1", "cm2"]

    got = core.read_namespaced_config_map("cm1", ns, _request_timeout=REQUEST_TIMEOUT)
    assert got.data == {"i": "1"} and got.metadata.labels == {"app": "py", "idx": "1"}

    # All namespaces, with a selector.
    everywhere = core.list_config_map_for_all_namespaces(label_selector="app=py", _request_timeout=REQUEST_TIMEOUT)
    assert sorted(i.metadata.name for i in everywhere.items if i.metadata.namespace == ns) == ["cm0", "cm1", "cm2"]

    status = core.delete_namespaced_config_map("cm1", ns, _request_timeout=REQUEST_TIMEOUT)
    assert status.status == "Success" and status.details.name == "cm1" and status.details.kind == "configmaps"
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("cm1", ns, _request_timeout=REQUEST_TIMEOUT)
    assert e.value.status == 404
    body = json.loads(e.value.body)
    assert body["reason"] == "NotFound" and body["message"] == 'configmaps "cm1" not found'

    # Collection delete with a selector.
    core.delete_collection_namespaced_config_map(ns, label_selector="app=py", _request_timeout=REQUEST_TIMEOUT)
    assert names(label_selector="app=py") == []
    assert names(label_selector="app=else") == ["other"]


def test_create_errors(k8s, ns):
    core = client.CoreV1Api(k8s)
    core.create_namespaced_config_map(ns, cm("dup"), _request_timeout=REQUEST_TIMEOUT)
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, cm("dup"), _request_timeout=REQUEST_TIMEOUT)
    assert e.value.status == 409 and json.loads(e.value.body)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, cm("Not_Valid"), _request_timeout=REQUEST_TIMEOUT)
    assert e.value.status == 422 and json.loads(e.value.body)["reason"] == "Invalid"


def test_watch_and_resume(k8s, ns):
    core = client.CoreV1Api(k8s)
    start_rv = core.list_namespaced_config_map(ns, _request_timeout=REQUEST_TIMEOUT).metadata.resource_version
    assert start_rv and start_rv.isdigit()

    core.create_namespaced_config_map(ns, cm("a", {"w": "yes"}), _request_timeout=REQUEST_TIMEOUT)
    core.create_namespaced_config_map(ns, cm("b", {"w": "yes"}), _request_timeout=REQUEST_TIMEOUT)
    core.create_namespaced_config_map(ns, cm("unlabelled"), _request_timeout=REQUEST_TIMEOUT)
    core.patch_namespaced_config_map("a", ns, {"data": {"k": "v2"}}, _request_timeout=REQUEST_TIMEOUT)
    core.delete_namespaced_config_map("b", ns, _request_timeout=REQUEST_TIMEOUT)

    def collect(rv: str, count: int, **kw) -> list[dict]:
        w = watch.Watch()
        events = []
        for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=10,
                           _request_timeout=REQUEST_TIMEOUT, **kw):
            events.append(ev)
            if len(events) == count:
                w.stop()
        return events

    events = collect(start_rv, 4, label_selector="w=yes")
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    assert events[2]["object"].data == {"k": "v2"}
    rvs = [int(e["object"].metadata.resource_version) for e in events]
    assert rvs == sorted(rvs) and len(set(rvs)) == 4, rvs

    # Resume after the second event: only what came later.
    resumed = collect(events[1]["object"].metadata.resource_version, 2, label_selector="w=yes")
    assert [(e["type"], e["object"].metadata.name) for e in resumed] == [("MODIFIED", "a"), ("DELETED", "b")]

    # A watch from "now" sees only new changes, then ends at timeoutSeconds.
    now_rv = core.list_namespaced_config_map(ns, _request_timeout=REQUEST_TIMEOUT).metadata.resource_version
    core.create_namespaced_config_map(ns, cm("c"), _request_timeout=REQUEST_TIMEOUT)
    w = watch.Watch()
    later = [(e["type"], e["object"].metadata.name) for e in w.stream(
        core.list_namespaced_config_map, ns, resource_version=now_rv, timeout_seconds=2,
        _request_timeout=REQUEST_TIMEOUT)]
    assert later == [("ADDED", "c")]


def test_strategic_merge_patch(k8s, ns):
    apps = client.AppsV1Api(k8s)
    body = deployment("web", containers=[
        {"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
        {"name": "sidecar", "image": "busybox:1.36"},
    ])
    apps.create_namespaced_deployment(ns, body, _request_timeout=REQUEST_TIMEOUT)

    # A dict body is sent as a strategic merge patch: containers merge by name.
    patched = apps.patch_namespaced_deployment(
        "web", ns, {"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.26"}]}}}},
        _request_timeout=REQUEST_TIMEOUT)
    containers = patched.spec.template.spec.containers
    assert [c.name for c in containers] == ["nginx", "sidecar"]
    assert containers[0].image == "nginx:1.26" and containers[0].ports[0].container_port == 80
    assert patched.metadata.generation == 2

    # A list body is a JSON patch.
    patched = apps.patch_namespaced_deployment(
        "web", ns, [{"op": "replace", "path": "/spec/replicas", "value": 4}], _request_timeout=REQUEST_TIMEOUT)
    assert patched.spec.replicas == 4

    # The scale subresource.
    scale = apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 6}},
                                                   _request_timeout=REQUEST_TIMEOUT)
    assert scale.spec.replicas == 6 and scale.kind == "Scale"
    assert apps.read_namespaced_deployment("web", ns, _request_timeout=REQUEST_TIMEOUT).spec.replicas == 6

    status = apps.delete_namespaced_deployment("web", ns, propagation_policy="Background",
                                               _request_timeout=REQUEST_TIMEOUT)
    assert status.status == "Success"
    with pytest.raises(ApiException) as e:
        apps.read_namespaced_deployment("web", ns, _request_timeout=REQUEST_TIMEOUT)
    assert e.value.status == 404


def test_discovery_through_python_client(k8s):
    groups = client.ApisApi(k8s).get_api_versions(_request_timeout=REQUEST_TIMEOUT)
    names = {g.name: g for g in groups.groups}
    assert names["apps"].preferred_version.group_version == "apps/v1"
    resources = client.CoreV1Api(k8s).get_api_resources(_request_timeout=REQUEST_TIMEOUT)
    pods = next(r for r in resources.resources if r.name == "pods")
    assert pods.singular_name == "pod" and pods.namespaced and pods.kind == "Pod" and "po" in pods.short_names
    version = client.VersionApi(k8s).get_code(_request_timeout=REQUEST_TIMEOUT)
    assert version.major == "1" and version.minor == "33"
