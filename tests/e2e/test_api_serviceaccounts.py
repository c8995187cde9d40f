"""Service-account tokens with real clients: `kubectl create token`, the token as a
bearer credential (`kubectl --token`), TokenRequest from the Python client, the
`kube-root-ca.crt` ConfigMap in every namespace and the ServiceAccount admission's
`kube-api-access-*` volume on pods created with kubectl.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from conftest import Cluster, Kubectl
from e2e_util import wait_for

AUDIENCE = "https://kubernetes.default.svc.cluster.local"
MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def _claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _wait_default_sa(kubectl: Kubectl, ns: str) -> None:
    wait_for(lambda: kubectl("get", "serviceaccount", "default", "-n", ns).returncode == 0,
             timeout=30, message=f"default service account in {ns}")


def _token_only(cluster: Cluster, kubectl: Kubectl, tmp_path: Path) -> Kubectl:
    """kubectl with a kubeconfig that has the server and CA but no credentials."""
    kc = tmp_path / "token-only.kubeconfig"
    kc.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: c\n  cluster:\n    server: {cluster.url}\n"
        f"    certificate-authority: {cluster.ca_file}\n"
        "contexts:\n- name: c\n  context:\n    cluster: c\n    user: nobody\n"
        "current-context: c\nusers:\n- name: nobody\n  user: {}\n")
    return kubectl.with_kubeconfig(kc)


def test_kubectl_create_token_then_use_it(cluster: Cluster, kubectl: Kubectl, ns: str,
                                          tmp_path: Path):
    _wait_default_sa(kubectl, ns)
    token = kubectl.ok("create", "token", "default", "-n", ns).strip()
    c = _claims(token)
    assert c["sub"] == f"system:serviceaccount:{ns}:default"
    assert c["aud"] == [AUDIENCE] and c["iss"] == AUDIENCE
    assert c["exp"] - c["iat"] == 3600
    assert c["kubernetes.io"]["namespace"] == ns
    sa_uid = kubectl.ok("get", "sa", "default", "-n", ns, "-o", "jsonpath={.metadata.uid}")
    assert c["kubernetes.io"]["serviceaccount"] == {"name": "default", "uid": sa_uid}

    plain = _token_only(cluster, kubectl, tmp_path)
    # Without the token: anonymous, refused (kubectl then asks for a user name).
    plain.fails("get", "pods", "-n", ns)
    # With it: the service account, authorised by AllowAuthenticated.
    p = plain("get", "pods", "-n", ns, "--token", token)
    assert p.returncode == 0 and "No resources found" in p.stderr, p.stderr

    # Options: audience, duration, binding to a pod (which must exist).
    t = kubectl.ok("create", "token", "default", "-n", ns, "--audience", "vault",
                   "--duration", "20m").strip()
    c = _claims(t)
    assert c["aud"] == ["vault"] and c["exp"] - c["iat"] == 1200
    p = plain.fails("get", "pods", "-n", ns, "--token", t)  # not an API audience
    assert "Unauthorized" in p.stderr or "credentials" in p.stderr, p.stderr
    p = kubectl.fails("create", "token", "default", "-n", ns, "--duration", "5m")
    assert "10 minutes" in p.stderr, p.stderr
    p = kubectl.fails("create", "token", "ghost", "-n", ns)
    assert "NotFound" in p.stderr or "not found" in p.stderr, p.stderr
    p = kubectl.fails("create", "token", "default", "-n", ns, "--bound-object-kind", "Pod",
                      "--bound-object-name", "nope")
    assert "not found" in p.stderr, p.stderr

    # Deleting the service account revokes its tokens.
    kubectl.ok("delete", "sa", "default", "-n", ns)
    p = plain.fails("get", "pods", "-n", ns, "--token", token)
    assert "Unauthorized" in p.stderr or "credentials" in p.stderr, p.stderr


def test_python_client_token_request(k8s, kubectl: Kubectl, ns: str):
    from kubernetes import client

    _wait_default_sa(kubectl, ns)
    core = client.CoreV1Api(k8s)
    tr = core.create_namespaced_service_account_token(
        "default", ns,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=900)))
    assert tr.status.token and tr.spec.expiration_seconds == 900
    assert tr.spec.audiences == [AUDIENCE]
    assert _claims(tr.status.token)["sub"] == f"system:serviceaccount:{ns}:default"
    # The token as the only credential of a Python client.
    cfg = client.Configuration()
    cfg.host = k8s.configuration.host
    cfg.ssl_ca_cert = k8s.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": "Bearer " + tr.status.token}
    with client.ApiClient(cfg) as as_sa:
        pods = client.CoreV1Api(as_sa).list_namespaced_pod(ns)
        assert pods.items == []


def test_root_ca_config_map_in_every_namespace(cluster: Cluster, kubectl: Kubectl, ns: str):
    ca = Path(cluster.ca_file).read_text()

    def published():
        p = kubectl("get", "configmap", "kube-root-ca.crt", "-n", ns, "-o", "json")
        return p.returncode == 0 and json.loads(p.stdout)["data"] == {"ca.crt": ca}

    wait_for(published, timeout=30, message="kube-root-ca.crt")
    kubectl.ok("patch", "configmap", "kube-root-ca.crt", "-n", ns, "--type", "merge",
               "-p", '{"data": {"ca.crt": "edited"}}')
    wait_for(published, timeout=30, message="kube-root-ca.crt restored after an edit")
    kubectl.ok("delete", "configmap", "kube-root-ca.crt", "-n", ns)
    wait_for(published, timeout=30, message="kube-root-ca.crt recreated")


def test_pods_get_the_token_volume(kubectl: Kubectl, ns: str):
    _wait_default_sa(kubectl, ns)
    kubectl.ok("run", "sa-pod", "-n", ns, "--image=busybox", "--", "sleep", "3600")
    pod = json.loads(kubectl.ok("get", "pod", "sa-pod", "-n", ns, "-o", "json"))
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "default"
    vols = [v for v in spec["volumes"] if v["name"].startswith("kube-api-access-")]
    assert len(vols) == 1 and len(vols[0]["name"]) == len("kube-api-access-") + 5
    assert vols[0]["projected"] == {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt",
                           "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ],
    }
    assert spec["containers"][0]["volumeMounts"] == [
        {"name": vols[0]["name"], "readOnly": True, "mountPath": MOUNT}]
    # Opting out.
    kubectl.ok("run", "quiet", "-n", ns, "--image=busybox",
               "--overrides", '{"spec": {"automountServiceAccountToken": false}}')
    quiet = json.loads(kubectl.ok("get", "pod", "quiet", "-n", ns, "-o", "json"))["spec"]
    assert not quiet.get("volumes") and not quiet["containers"][0].get("volumeMounts")
    # A service account that does not exist: refused.
    p = kubectl.fails("run", "ghostly", "-n", ns, "--image=busybox",
                      "--overrides", '{"spec": {"serviceAccountName": "ghost"}}')
    assert "forbidden" in p.stderr and "ghost" in p.stderr, p.stderr


@pytest.mark.parametrize("kind", ["deployment"])
def test_controllers_create_pods_in_a_fresh_namespace(kubectl: Kubectl, ns: str, kind: str):
    """A workload created right after its namespace: its pods appear once the
    `default` service account exists (the admission waits, the controller retries)."""
    kubectl.ok("create", kind, "fresh", "-n", ns, "--image=busybox", "--replicas=2")
    wait_for(lambda: len(json.loads(kubectl.ok("get", "pods", "-n", ns, "-l", "app=fresh",
                                               "-o", "json"))["items"]) == 2,
             timeout=60, message="both pods created")
