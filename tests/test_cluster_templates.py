"""Dashboard Templates on the cluster target (FakeCluster): deploy applies them after preflight's access
review, status warns when the dashboard would find none ("Template removed"), delete keeps those a
runtime still names, diff compares what a project member may not apply.

The same behaviours run against the real API server in test_cluster_contract.py and, through the CLI
with RBAC users, in test_cluster_rbac.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from poolserve.config.load import parse_spec
from poolserve.config.schema import PoolSpec
from poolserve.errors import Forbidden, NotFound
from poolserve.kserve.render import Rendered, render
from poolserve.targets.base import DeployOptions
from poolserve.targets.cluster.apply import deploy_objects
from poolserve.targets.cluster.fake.cluster import FakeCluster
from poolserve.targets.cluster.fake.kserve import cluster_for, ready_controller
from poolserve.targets.cluster.target import ClusterTarget

SPEC = """\
namespace: embeddings
image: vllm/vllm-openai:v0.32.0
cache: {pvc: model-cache}
dashboard: {templates: true}
runtimes:
  - {name: vllm-embedding-runtime, task: embed}
  - {name: vllm-reranker-runtime, task: score}
models:
  - {name: minilm, model_id: sentence-transformers/all-MiniLM-L6-v2, max_model_len: 256}
  - {name: granite, model_id: ibm-granite/granite-embedding-278m-multilingual}
  - {name: reranker, model_id: cross-encoder/ms-marco-MiniLM-L12-v2}
"""
NS, DASH = "embeddings", "redhat-ods-applications"
EMBED_T, RERANK_T = "vllm-embedding-runtime-template", "vllm-reranker-runtime-template"
TEMPLATES = "templates.template.openshift.io"


def make(**overrides: object) -> tuple[PoolSpec, Rendered]:
    spec = parse_spec(SPEC, "test.yaml", overrides or None)
    return spec, render(spec)


def target(fake: FakeCluster) -> ClusterTarget:
    return ClusterTarget(fake, sleep=lambda s: None, now=lambda: 0.0, poll_s=1)


def applied(fake: FakeCluster) -> list[tuple[str, str | None, str | None]]:
    return [(c.kind, c.namespace, c.name) for c in fake.verbs("apply")]


# --------------------------------------------------------------------------------------------------
# deploy


def test_deploy_applies_the_templates_in_the_dashboard_namespace_before_the_runtimes() -> None:
    spec, rendered = make()
    fake = cluster_for(spec)
    result = target(fake).deploy(rendered, [], wait=False, timeout_s=60)
    order = [(c.kind, c.namespace, c.name, c.action) for c in result.changes]
    assert order[1:5] == [("Template", DASH, EMBED_T, "created"), ("Template", DASH, RERANK_T, "created"),
                          ("ServingRuntime", NS, "vllm-embedding-runtime", "created"),
                          ("ServingRuntime", NS, "vllm-reranker-runtime", "created")]
    live = fake.stored("Template", EMBED_T, DASH)
    assert live is not None and live["objects"][0]["metadata"]["name"] == "vllm-embedding-runtime"
    assert result.warnings == ()
    # The access review asked about Templates in the dashboard namespace, not the project.
    assert ("access", "Template", DASH) in [(c.verb, c.kind, c.namespace) for c in fake.calls]
    again = target(fake).deploy(rendered, [], wait=False, timeout_s=60)
    assert {c.action for c in again.changes} == {"unchanged"}


def test_deploying_one_model_or_only_runtimes_applies_their_templates() -> None:
    spec, rendered = make()
    assert [(o["kind"], o["metadata"]["name"]) for o in deploy_objects(rendered, ["reranker"])] == [
        ("Namespace", NS), ("Template", RERANK_T), ("ServingRuntime", "vllm-reranker-runtime"),
        ("InferenceService", "reranker")]
    result = target(cluster_for(spec)).deploy(rendered, [], wait=False, timeout_s=60,
                                              options=DeployOptions(runtimes_only=True))
    assert [c.kind for c in result.changes] == ["Template", "Template", "ServingRuntime", "ServingRuntime"]


def test_per_model_runtimes_share_one_template_per_pattern() -> None:
    spec, rendered = make(runtime_mode="per-model")
    assert [t["metadata"]["name"] for t in rendered.templates] == [EMBED_T, RERANK_T]
    fake = cluster_for(spec)
    target(fake).deploy(rendered, ["minilm"], wait=False, timeout_s=60)
    assert [(k, n) for k, _, n in applied(fake)] == [("Template", EMBED_T), ("ServingRuntime", "minilm"),
                                                     ("InferenceService", "minilm")]


def test_a_user_who_may_not_create_templates_there_is_stopped_before_anything_is_applied() -> None:
    spec, rendered = make()
    fake = cluster_for(spec)
    fake.denied.add(("create", TEMPLATES, DASH))
    with pytest.raises(Forbidden) as exc:
        target(fake).deploy(rendered, [], wait=False, timeout_s=60)
    assert exc.value.message == (
        f"forbidden: you may not create {TEMPLATES} in namespace {DASH} (SelfSubjectAccessReview), and the "
        f"dashboard Templates {EMBED_T}, {RERANK_T} are not there: OpenShift AI 3.5+ would label the runtimes "
        "'Template removed'")
    assert exc.value.hint == ("ask an admin to run `oc apply -f manifests/kserve/dashboard-templates.yaml`, or set "
                              f"dashboard.templates_scope: project to keep the Templates in {NS}")
    assert exc.value.exit_code == 4
    assert applied(fake) == []


def test_templates_an_admin_applied_are_left_alone_and_the_rest_is_deployed() -> None:
    spec, rendered = make()
    fake = cluster_for(spec)
    target(fake).deploy(rendered, [], wait=False, timeout_s=60, options=DeployOptions(runtimes_only=True))
    fake.edit("Template", RERANK_T, DASH, {"objects": [{**rendered.templates[1]["objects"][0], "metadata": {
        "name": "vllm-reranker-runtime", "annotations": {"opendatahub.io/runtime-version": "v0.9.0"}}}]})
    fake.denied.update({("create", TEMPLATES, DASH), ("patch", TEMPLATES, DASH)})
    fake.calls.clear()
    result = target(fake).deploy(rendered, [], wait=False, timeout_s=60)
    by = {(c.kind, c.name): c for c in result.changes}
    assert by[("Template", EMBED_T)].action == "unchanged"
    assert by[("Template", RERANK_T)].action == "kept"
    assert by[("Template", RERANK_T)].note == ("differs from the config and you may not update it: ask an admin to "
                                               "run `oc apply -f manifests/kserve/dashboard-templates.yaml`")
    assert by[("InferenceService", "minilm")].action == "created"
    assert "Template" not in [k for k, _, _ in applied(fake)]
    assert f"the dashboard Templates in {DASH} are there already (an admin applied them): left as they are" \
        in result.notes


def test_a_template_the_dashboard_matches_under_another_name_counts() -> None:
    spec, rendered = make()
    fake = cluster_for(spec)
    for t, suffix in zip(rendered.templates, ("x7k2p", "q9m4z"), strict=True):
        # As added through Settings -> Serving runtimes: template-<random>.
        fake.seed({**t, "metadata": {**t["metadata"], "name": f"template-{suffix}"}})
    fake.denied.add(("create", TEMPLATES, DASH))
    result = target(fake).deploy(rendered, ["minilm"], wait=False, timeout_s=60)
    change = next(c for c in result.changes if c.kind == "Template")
    assert (change.action, change.note) == ("kept", "found as Template template-x7k2p, which the dashboard "
                                                    "matches; you may not create Templates here")


def test_without_openshift_or_without_the_dashboard_namespace_deploy_says_so() -> None:
    spec, rendered = make()
    fake = cluster_for(spec, openshift=False)
    with pytest.raises(NotFound) as exc:
        target(fake).deploy(rendered, [], wait=False, timeout_s=60)
    assert str(exc.value) == ("the API server has no Template (template.openshift.io/v1) resource: dashboard Templates "
                              "need OpenShift (set dashboard.templates: false on a cluster without OpenShift AI)")
    assert applied(fake) == []
    fake = cluster_for(spec)
    fake.remove("Namespace", DASH)
    with pytest.raises(NotFound) as exc:
        target(fake).deploy(rendered, [], wait=False, timeout_s=60)
    assert exc.value.message == f"namespace {DASH} (dashboard.templates_namespace) does not exist: is OpenShift " \
                                "AI installed?"
    assert "(Open Data Hub: opendatahub)" in (exc.value.hint or "")
    assert applied(fake) == []


def test_project_scoped_templates_go_with_the_models_and_warn_about_3_5() -> None:
    spec, rendered = make(**{"dashboard.templates_scope": "project"})
    fake = cluster_for(spec)
    fake.denied.add(("create", TEMPLATES, DASH))  # a project member: no rights in the dashboard namespace
    result = target(fake).deploy(rendered, [], wait=False, timeout_s=60)
    assert ("Template", NS, "vllm-embedding-runtime") in applied(fake)
    assert result.warnings == (
        f"project-scoped Templates (in {NS}): OpenShift AI 3.6+ finds them; 3.5 looks only in {DASH} and labels "
        "these runtimes 'Template removed' (there, use dashboard.templates_scope: global and an admin)",)
    # ...and the project's own access review covers them.
    fake.denied.add(("create", TEMPLATES, NS))
    with pytest.raises(Forbidden, match=f"you may not create {TEMPLATES} in namespace {NS}"):
        target(fake).deploy(rendered, [], wait=False, timeout_s=60)


# --------------------------------------------------------------------------------------------------
# status


def test_status_warns_when_the_dashboard_finds_no_template_and_lists_each_namespace_once() -> None:
    spec, rendered = make()
    fake = cluster_for(spec, controller=ready_controller)
    tgt = target(fake)
    tgt.deploy(rendered, [], wait=False, timeout_s=60)
    fake.calls.clear()
    assert [s.warnings for s in tgt.status(rendered, [])] == [(), (), ()]
    assert [(c.kind, c.namespace) for c in fake.verbs("list") if c.kind == "Template"] == [("Template", DASH),
                                                                                           ("Template", NS)]
    fake.remove("Template", EMBED_T, DASH)
    statuses = {s.name: s for s in tgt.status(rendered, [])}
    assert statuses["minilm"].ready and statuses["reranker"].warnings == ()
    assert statuses["minilm"].warnings == statuses["granite"].warnings == (
        "runtime vllm-embedding-runtime names Template 'vllm-embedding-runtime' (opendatahub.io/template-name) but "
        f"no Template in {DASH} or {NS} has that name: OpenShift AI 3.5+ labels the model 'Template removed'; an "
        "admin applies it with `oc apply -f manifests/kserve/dashboard-templates.yaml` (or deploy with "
        "dashboard.templates_scope: project)",)


def test_status_reads_no_template_when_no_runtime_names_one_and_none_without_openshift() -> None:
    spec, rendered = make(**{"dashboard.templates": False})
    fake = cluster_for(spec, controller=ready_controller)
    tgt = target(fake)
    tgt.deploy(rendered, [], wait=False, timeout_s=60)
    fake.calls.clear()
    assert all(s.warnings == () for s in tgt.status(rendered, []))
    assert [c for c in fake.verbs("list") if c.kind == "Template"] == []
    spec, rendered = make()
    fake = cluster_for(spec, controller=ready_controller)
    target(fake).deploy(rendered, [], wait=False, timeout_s=60)
    fake.openshift = False
    assert all(s.warnings == () for s in target(fake).status(rendered, []))


def test_status_finds_project_scoped_templates_by_name_only() -> None:
    spec, rendered = make(**{"dashboard.templates_scope": "project"})
    fake = cluster_for(spec, controller=ready_controller)
    tgt = target(fake)
    tgt.deploy(rendered, [], wait=False, timeout_s=60)
    assert all(s.warnings == () for s in tgt.status(rendered, []))
    # A project Template whose own name differs from template-name: the dashboard's GET misses it.
    t = fake.stored("Template", "vllm-reranker-runtime", NS)
    assert t is not None
    fake.remove("Template", "vllm-reranker-runtime", NS)
    fake.seed({**t, "metadata": {**t["metadata"], "name": "renamed"}})
    warnings = {s.name: s.warnings for s in tgt.status(rendered, [])}
    assert warnings["reranker"] and warnings["reranker"][0].endswith("`poolserve deploy --runtimes-only` applies it")


# --------------------------------------------------------------------------------------------------
# delete


def test_delete_never_deletes_a_template_another_runtime_still_names() -> None:
    spec, rendered = make(runtime_mode="per-model")
    fake = cluster_for(spec, controller=ready_controller)
    tgt = target(fake)
    tgt.deploy(rendered, [], wait=False, timeout_s=60)
    result = tgt.delete(rendered, ["minilm"], runtimes=True)
    by = {(c.kind, c.name): c for c in result.changes}
    assert by[("ServingRuntime", "minilm")].action == "deleted"
    assert (by[("Template", EMBED_T)].action, by[("Template", EMBED_T)].note) == ("kept", f"named by {NS}/granite")
    assert fake.stored("Template", EMBED_T, DASH) is not None
    # --force is about runtimes a model uses; a named Template stays even then.
    forced = tgt.delete(rendered, ["reranker"], runtimes=True, force=True)
    assert {(c.kind, c.name, c.action) for c in forced.changes} >= {("Template", RERANK_T, "deleted")}
    last = tgt.delete(rendered, ["granite"], runtimes=True)
    assert ("Template", EMBED_T, "deleted") in {(c.kind, c.name, c.action) for c in last.changes}
    assert fake.all("Template") == []


def test_delete_keeps_a_template_named_from_another_project_or_not_ours_or_not_deletable() -> None:
    spec, rendered = make()
    fake = cluster_for(spec, controller=ready_controller)
    tgt = target(fake)
    tgt.deploy(rendered, [], wait=False, timeout_s=60)
    other = dict(rendered.manifests[3], metadata={**rendered.manifests[3]["metadata"], "namespace": "elsewhere"})
    assert other["kind"] == "ServingRuntime"
    fake.seed(other)
    result = tgt.delete(rendered, [], runtimes=True)
    by = {(c.kind, c.name): c for c in result.changes}
    assert (by[("Template", EMBED_T)].action, by[("Template", EMBED_T)].note) == (
        "kept", "named by elsewhere/vllm-embedding-runtime")
    assert by[("Template", RERANK_T)].action == "deleted"
    # Not applied by poolserve (another field manager made it): kept.
    fake.remove("ServingRuntime", "vllm-embedding-runtime", "elsewhere")
    fake.remove("Template", EMBED_T, DASH)
    fake.seed(rendered.templates[0])
    again = tgt.delete(rendered, [], runtimes=True)
    change = next(c for c in again.changes if c.kind == "Template" and c.name == EMBED_T)
    assert (change.action, change.note) == ("kept", "not applied by poolserve")
    assert next(c for c in again.changes if c.name == RERANK_T).action == "absent"


def test_delete_keeps_a_global_template_when_it_cannot_tell_or_may_not_delete() -> None:
    from poolserve.targets.cluster.base import forbidden, kind_info

    spec, rendered = make()
    fake = cluster_for(spec, controller=ready_controller)
    tgt = target(fake)
    tgt.deploy(rendered, ["minilm"], wait=False, timeout_s=60)
    fake.errors["delete:Template"] = forbidden("delete", kind_info("template.openshift.io/v1", "Template"), DASH)
    result = tgt.delete(rendered, ["minilm"], runtimes=True)
    change = next(c for c in result.changes if c.kind == "Template")
    assert (change.action, change.note) == ("kept", f"you may not delete Templates in {DASH}: an admin can "
                                                    f"(`oc delete template {EMBED_T} -n {DASH}`)")
    fake.errors.clear()
    fake.errors["list:ServingRuntime"] = forbidden("list", kind_info("serving.kserve.io/v1alpha1", "ServingRuntime"),
                                                   None)
    tgt.deploy(rendered, ["minilm"], wait=False, timeout_s=60)
    again = tgt.delete(rendered, ["minilm"], runtimes=True, force=True)
    change = next(c for c in again.changes if c.kind == "Template")
    assert change.action == "kept" and "runtimes of other projects may still name it" in (change.note or "")


# --------------------------------------------------------------------------------------------------
# diff


def test_diff_of_a_template_the_user_may_not_apply_compares_locally() -> None:
    from poolserve.targets.cluster.base import forbidden, kind_info

    spec, rendered = make()
    fake = cluster_for(spec)
    fake.errors["apply:Template"] = forbidden("apply (patch)", kind_info("template.openshift.io/v1", "Template"),
                                              DASH, EMBED_T)
    diffs = {(d.kind, d.name): d for d in target(fake).diff(rendered, ["minilm"])}
    d = diffs[("Template", EMBED_T)]
    assert d.action == "create" and "+kind: Template" in d.diff
    assert d.note is not None and d.note.startswith("you may not apply it (forbidden: you may not apply (patch) ")
    assert d.note.endswith("an admin runs `oc apply -f manifests/kserve/dashboard-templates.yaml`")
    assert diffs[("ServingRuntime", "vllm-embedding-runtime")].action == "create"


# --------------------------------------------------------------------------------------------------
# CLI


def cli_env(tmp_path: Path, text: str = SPEC) -> tuple[FakeCluster, Callable[..., Any]]:
    from rich.console import Console
    from typer.testing import CliRunner

    from poolserve.cli.app import create_app

    (tmp_path / "poolserve.yaml").write_text(text)
    fake = cluster_for(parse_spec(text, "poolserve.yaml"), controller=ready_controller)
    app = create_app(target_factory=lambda name, options: target(fake),
                     out=Console(width=400, soft_wrap=True, color_system=None, force_terminal=False))

    def run(*args: str) -> Any:
        return CliRunner().invoke(app, [*args, "-c", str(tmp_path / "poolserve.yaml"), "--target", "cluster"])

    return fake, run


def test_cli_deploy_lists_the_templates_and_status_prints_the_warning(tmp_path: Path) -> None:
    fake, run = cli_env(tmp_path)
    r = run("deploy", "--no-wait")
    assert r.exit_code == 0, r.stderr
    assert f"template/{DASH}/{EMBED_T} created" in r.stderr
    table = run("status")
    assert table.exit_code == 0 and "warning" not in table.stdout
    fake.remove("Template", RERANK_T, DASH)
    table = run("status")
    assert table.exit_code == 0
    line = next(ln for ln in table.stdout.splitlines() if ln.startswith("reranker: warning: "))
    assert line.endswith("labels the model 'Template removed'; an admin applies it with `oc apply -f "
                         "manifests/kserve/dashboard-templates.yaml` (or deploy with dashboard.templates_scope: "
                         "project)")
    data = {s["name"]: s for s in json.loads(run("status", "-o", "json").stdout)}
    assert data["minilm"]["warnings"] == [] and len(data["reranker"]["warnings"]) == 1


def test_cli_refusal_is_one_line_with_exit_4(tmp_path: Path) -> None:
    fake, run = cli_env(tmp_path)
    fake.denied.add(("create", TEMPLATES, DASH))
    r = run("deploy", "--no-wait")
    assert r.exit_code == 4
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert errors[0].startswith(f"error: forbidden: you may not create {TEMPLATES} in namespace {DASH}")
    assert "`oc apply -f manifests/kserve/dashboard-templates.yaml`" in errors[0]
    assert "dashboard.templates_scope: project" in errors[0]
    assert applied(fake) == []


def test_cli_project_scope_deploy_prints_the_3_5_warning(tmp_path: Path) -> None:
    _, run = cli_env(tmp_path, SPEC.replace("{templates: true}", "{templates: true, templates_scope: project}"))
    r = run("deploy", "--no-wait")
    assert r.exit_code == 0, r.stderr
    assert f"template/{NS}/vllm-embedding-runtime created" in r.stderr
    assert "warning: project-scoped Templates (in embeddings): OpenShift AI 3.6+ finds them" in r.stderr


def test_a_dashboard_that_disables_custom_runtimes_is_warned_about() -> None:
    spec, rendered = make()
    fake = cluster_for(spec)
    config = {"apiVersion": "opendatahub.io/v1alpha", "kind": "OdhDashboardConfig",
              "metadata": {"name": "odh-dashboard-config", "namespace": DASH},
              "spec": {"dashboardConfig": {"disableCustomServingRuntimes": False}}}
    fake.seed(config)
    assert target(fake).deploy(rendered, [], wait=False, timeout_s=60).warnings == ()
    fake.edit("OdhDashboardConfig", "odh-dashboard-config", DASH,
              {"spec": {"dashboardConfig": {"disableCustomServingRuntimes": True}}})
    result = target(fake).deploy(rendered, [], wait=False, timeout_s=60)
    assert result.warnings == (
        f"OdhDashboardConfig {DASH}/odh-dashboard-config sets disableCustomServingRuntimes: the dashboard ignores "
        "custom Templates (OpenShift AI 3.5 then labels the runtimes 'Template removed'); an admin can unset it",)
