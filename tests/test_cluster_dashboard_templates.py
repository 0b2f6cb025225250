"""Dashboard Templates through the CLI on the real API server (envtest), as an admin and as project members.

The envtest API server serves no OpenShift group: the Template API is a CRD standing in for
OpenShift's built-in one (:mod:`support.openshift_api`). Each test has its own "dashboard namespace"
(``dashboard.templates_namespace``) next to its project namespace. What reached the API server is read
back from its audit log.

- Templates applied (admin, global scope): ``status`` has no warning; an admin deletes one: ``status``
  warns, table and JSON.
- ``deployer`` (``edit`` on the project, nothing in the dashboard namespace): the one-line refusal naming
  the admin command and the project scope, and nothing applied. Once an admin applied the Templates,
  the same user deploys and the Templates are left alone. With ``templates_scope: project`` and a
  Role on Templates in the project, the user needs no admin at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import CONFIG
from support.envcluster import EnvCluster
from support.kubeapi import path
from support.poolcli import cli, error_line
from test_cluster_rbac import KSERVE, bind, writes_by

TEMPLATES = ("template.openshift.io/v1", "templates")
EMBED_T, RERANK_T = "vllm-embedding-runtime-template", "vllm-reranker-runtime-template"


@pytest.fixture
def dash(kube: EnvCluster, ns: str) -> Iterator[str]:
    """The test's dashboard namespace (no PVC), where every user may read Templates; deleted afterwards.

    As OpenShift AI's dashboard grants it: Role ``servingruntimes-config-updater`` (get/list/watch
    Templates) bound to ``system:authenticated`` (odh-dashboard ``manifests/base/rbac/all-users/``).
    """
    name = kube.namespace(f"{ns}-dash", pvc=None)
    rbac = "rbac.authorization.k8s.io/v1"
    kube.api.create(path(rbac, "roles", name), {"metadata": {"name": "servingruntimes-config-updater"}, "rules": [
        {"apiGroups": ["template.openshift.io"], "resources": ["templates"], "verbs": ["get", "list", "watch"]}]})
    kube.api.create(path(rbac, "rolebindings", name), {
        "metadata": {"name": "servingruntimes-config-updater"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "servingruntimes-config-updater"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}]})
    yield name
    kube.delete_namespace(name)


@pytest.fixture
def config(ns: str, dash: str, tmp_path: Path) -> Path:
    text = CONFIG.read_text().replace("namespace: vllm-embeddings\n", f"namespace: {ns}\n")
    text = text.replace("dashboard:\n", f"dashboard:\n  templates: true\n  templates_namespace: {dash}\n")
    assert f"templates_namespace: {dash}" in text
    out = tmp_path / "poolserve.yaml"
    out.write_text(text)
    return out


def templates(kube: EnvCluster, namespace: str) -> list[str]:
    return sorted(t["metadata"]["name"] for t in kube.api.list(path(TEMPLATES[0], TEMPLATES[1], namespace)))


def label_project(kube: EnvCluster, ns: str) -> None:
    # An admin labelled the project for the dashboard (`edit` may read its namespace, not patch it).
    kube.api.merge_patch(f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {
        "opendatahub.io/dashboard": "true", "modelmesh-enabled": "false"}}})


def member(kube: EnvCluster, ns: str, *, templates_in_project: bool = False) -> Path:
    """``deployer``: edit on the project, all of KServe's kinds there, Templates there only if asked."""
    rules = [{"apiGroups": [KSERVE], "resources": ["servingruntimes", "inferenceservices"], "verbs": ["*"]}]
    if templates_in_project:
        rules.append({"apiGroups": ["template.openshift.io"], "resources": ["templates"], "verbs": ["*"]})
    bind(kube, ns, "deployer", "edit", rules)
    label_project(kube, ns)
    return kube.cp.kubeconfig_for("deployer")


def test_templates_applied_give_no_warning_and_a_missing_one_makes_status_warn(kube: EnvCluster, ns: str, dash: str,
                                                                               config: Path) -> None:
    r = cli("deploy", "--timeout", "90s", kubeconfig=kube.kubeconfig, config=config)
    assert r.exit_code == 0, r.stderr
    assert f"template/{dash}/{EMBED_T} created" in r.stderr and "3/3 ready" in r.stderr
    assert "warning" not in r.stdout + r.stderr
    assert templates(kube, dash) == [EMBED_T, RERANK_T]
    st = cli("status", "-o", "json", kubeconfig=kube.kubeconfig, config=config, poll_s=None)
    assert st.exit_code == 0, st.stderr
    assert {s["name"]: s["warnings"] for s in json.loads(st.stdout)} == {
        "minilm-embedding": [], "granite-embedding": [], "msmarco-reranker": []}

    kube.api.delete(path(*TEMPLATES, dash, RERANK_T))  # someone removed it from the dashboard namespace
    table = cli("status", kubeconfig=kube.kubeconfig, config=config, poll_s=None)
    assert table.exit_code == 0, table.stderr
    (line,) = [ln for ln in table.stdout.splitlines() if "warning:" in ln]
    assert line == (f"msmarco-reranker: warning: runtime vllm-reranker-runtime names Template 'vllm-reranker-runtime' "
                    f"(opendatahub.io/template-name) but no Template in {dash} or {ns} has that name: OpenShift AI "
                    "3.5+ labels the model 'Template removed'; an admin applies it with `oc apply -f "
                    "manifests/kserve/dashboard-templates.yaml` (or deploy with dashboard.templates_scope: project)")
    assert "Ready" in next(ln for ln in table.stdout.splitlines() if ln.startswith("msmarco-reranker "))


def test_a_member_without_rights_in_the_dashboard_namespace_is_refused_before_anything_is_applied(
        kube: EnvCluster, ns: str, dash: str, config: Path) -> None:
    deployer = member(kube, ns)
    mark = kube.cp.audit_mark()
    r = cli("deploy", kubeconfig=deployer, config=config, poll_s=None)
    assert r.exit_code == 4, r.stderr
    assert error_line(r) == (
        f"error: forbidden: you may not create templates.template.openshift.io in namespace {dash} "
        f"(SelfSubjectAccessReview), and the dashboard Templates {EMBED_T}, {RERANK_T} are not there: OpenShift AI "
        "3.5+ would label the runtimes 'Template removed' (ask an admin to run `oc apply -f "
        f"manifests/kserve/dashboard-templates.yaml`, or set dashboard.templates_scope: project to keep the "
        f"Templates in {ns})")
    assert writes_by(kube, "deployer", mark) == []
    assert kube.api.list(path(f"{KSERVE}/v1alpha1", "servingruntimes", ns)) == []
    assert templates(kube, dash) == []

    # The admin step, then the same member deploys: the Templates are left as the admin applied them.
    admin = cli("deploy", "--runtimes-only", kubeconfig=kube.kubeconfig, config=config, poll_s=None)
    assert admin.exit_code == 0, admin.stderr
    mark = kube.cp.audit_mark()
    r = cli("deploy", "--no-wait", kubeconfig=deployer, config=config, poll_s=None)
    assert r.exit_code == 0, r.stderr
    assert f"template/{dash}/{EMBED_T} unchanged" in r.stderr
    assert f"the dashboard Templates in {dash} are there already (an admin applied them)" in r.stderr
    assert sorted(set(writes_by(kube, "deployer", mark))) == ["patch inferenceservices", "patch servingruntimes"]


def test_project_scoped_templates_need_no_admin(kube: EnvCluster, ns: str, dash: str, config: Path) -> None:
    deployer = member(kube, ns, templates_in_project=True)
    r = cli("deploy", "--timeout", "90s", "--set", "dashboard.templates_scope=project", kubeconfig=deployer,
            config=config)
    assert r.exit_code == 0, r.stderr
    assert f"template/{ns}/vllm-embedding-runtime created" in r.stderr
    assert f"warning: project-scoped Templates (in {ns}): OpenShift AI 3.6+ finds them" in r.stderr
    assert templates(kube, ns) == ["vllm-embedding-runtime", "vllm-reranker-runtime"] and templates(kube, dash) == []
    sr = kube.api.get(path(f"{KSERVE}/v1alpha1", "servingruntimes", ns, "vllm-embedding-runtime")) or {}
    assert sr["metadata"]["annotations"]["opendatahub.io/serving-runtime-scope"] == "project"
    # The dashboard namespace has none of them; the project's are found by name.
    st = cli("status", "-o", "json", "--set", "dashboard.templates_scope=project", kubeconfig=deployer,
             config=config, poll_s=None)
    assert st.exit_code == 0, st.stderr
    assert all(s["warnings"] == [] and s["phase"] == "Ready" for s in json.loads(st.stdout))
    gone = cli("delete", "--runtimes", "--set", "dashboard.templates_scope=project", kubeconfig=deployer,
               config=config, poll_s=None)
    assert gone.exit_code == 0, gone.stderr
    assert f"template/{ns}/vllm-reranker-runtime deleted" in gone.stderr
    assert templates(kube, ns) == []
