"""RBAC on the real API server: preflight's SelfSubjectAccessReview, and a read-only user.

Two users of the envtest cluster's token file, bound in the test's namespace:

- ``deployer``: the built-in ``edit`` ClusterRole plus a Role on KServe's kinds that allows everything on
  ServingRuntimes but not ``create`` on InferenceServices;
- ``viewer``: the built-in ``view`` ClusterRole plus get/list/watch on KServe's kinds.

Each runs the CLI with its own kubeconfig, through the CLI's own target factory (nothing injected).
What reached the API server is read back from its audit log.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import CONFIG
from support.envcluster import EnvCluster
from support.kubeapi import path
from support.poolcli import cli, error_line

KSERVE = "serving.kserve.io"
WRITES = ("create", "update", "patch", "delete")


@pytest.fixture
def config(ns: str, tmp_path: Path) -> Path:
    out = tmp_path / "poolserve.yaml"
    out.write_text(CONFIG.read_text().replace("namespace: vllm-embeddings\n", f"namespace: {ns}\n"))
    return out


def bind(kube: EnvCluster, ns: str, user: str, cluster_role: str, kserve_rules: list[dict]) -> None:
    api = kube.api
    api.create(path("rbac.authorization.k8s.io/v1", "rolebindings", ns), {
        "metadata": {"name": f"{user}-{cluster_role}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})
    api.create(path("rbac.authorization.k8s.io/v1", "roles", ns), {
        "metadata": {"name": f"{user}-kserve"}, "rules": kserve_rules})
    api.create(path("rbac.authorization.k8s.io/v1", "rolebindings", ns), {
        "metadata": {"name": f"{user}-kserve"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{user}-kserve"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})


def writes_by(kube: EnvCluster, user: str, since: int) -> list[str]:
    return [f"{e['verb']} {e['objectRef'].get('resource')}" for e in kube.cp.audit(since=since)
            if e["user"]["username"] == user and e["verb"] in WRITES
            and e["objectRef"].get("resource") != "selfsubjectaccessreviews"]


def test_a_user_who_may_not_create_inference_services_is_stopped_by_preflight(kube: EnvCluster, ns: str,
                                                                               config: Path) -> None:
    bind(kube, ns, "deployer", "edit", [
        {"apiGroups": [KSERVE], "resources": ["servingruntimes"], "verbs": ["*"]},
        {"apiGroups": [KSERVE], "resources": ["inferenceservices"],
         "verbs": ["get", "list", "watch", "patch", "update", "delete"]}])
    # An admin labelled the project for the dashboard (`edit` may read its namespace, not patch it).
    kube.api.merge_patch(f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {
        "opendatahub.io/dashboard": "true", "modelmesh-enabled": "false"}}})
    mark = kube.cp.audit_mark()
    r = cli("deploy", kubeconfig=kube.cp.kubeconfig_for("deployer"), config=config, poll_s=None)
    assert r.exit_code == 4, r.stderr
    assert error_line(r) == (f"error: forbidden: you may not create inferenceservices.serving.kserve.io in namespace "
                             f"{ns} (SelfSubjectAccessReview) (ask a cluster/project admin for a role that allows it "
                             "(e.g. admin or edit on the project))")
    assert writes_by(kube, "deployer", mark) == []  # nothing applied, not even the runtimes it could create
    assert kube.api.list(path(f"{KSERVE}/v1alpha1", "servingruntimes", ns)) == []


def test_a_read_only_user_gets_status_and_logs_but_not_deploy(kube: EnvCluster, ns: str, config: Path) -> None:
    admin = cli("deploy", "--timeout", "90s", kubeconfig=kube.kubeconfig, config=config)
    assert admin.exit_code == 0, admin.stderr
    bind(kube, ns, "viewer", "view", [
        {"apiGroups": [KSERVE], "resources": ["servingruntimes", "inferenceservices"],
         "verbs": ["get", "list", "watch"]}])
    viewer = kube.cp.kubeconfig_for("viewer")
    mark = kube.cp.audit_mark()
    st = cli("status", "-o", "json", kubeconfig=viewer, config=config, poll_s=None)
    assert st.exit_code == 0, st.stderr
    assert {s["phase"] for s in json.loads(st.stdout)} == {"Ready"}
    table = cli("status", kubeconfig=viewer, config=config, poll_s=None)
    assert table.exit_code == 0 and "minilm-embedding" in table.stdout
    logs = cli("logs", "minilm-embedding", kubeconfig=viewer, config=config, poll_s=None)
    assert logs.exit_code == 0 and "Application startup complete." in logs.stdout
    r = cli("deploy", kubeconfig=viewer, config=config, poll_s=None)
    assert r.exit_code == 4, r.stderr
    assert error_line(r).startswith(
        "error: forbidden: you may not create servingruntimes.serving.kserve.io, patch "
        "servingruntimes.serving.kserve.io, create inferenceservices.serving.kserve.io, patch "
        f"inferenceservices.serving.kserve.io in namespace {ns} (SelfSubjectAccessReview)")
    delete = cli("delete", kubeconfig=viewer, config=config, poll_s=None)
    assert delete.exit_code == 4
    assert error_line(delete).startswith(
        f"error: forbidden: you may not delete inferenceservices.serving.kserve.io/minilm-embedding in namespace {ns}")
    assert writes_by(kube, "viewer", mark) == ["delete inferenceservices"]  # refused by the API server
    assert len(kube.api.list(path(f"{KSERVE}/v1beta1", "inferenceservices", ns))) == 3
