"""The dashboard's Template lookup (odh-dashboard findTemplateByName + useFetchTemplate) and status's warning."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from poolserve.config.load import load_spec
from poolserve.config.schema import PoolSpec
from poolserve.kserve.dashboard import find_template, matches, template_warning
from poolserve.kserve.names import DASHBOARD_LABEL, SR_KIND, TEMPLATE_API_VERSION, TEMPLATE_NAME, Manifest
from poolserve.kserve.render import render

ROOT = Path(__file__).resolve().parents[1]
SECURE = ROOT / "tests" / "specs" / "per-model-secure.yaml"


def template(name: str, runtime: str, *, labelled: bool = True) -> Manifest:
    labels = {DASHBOARD_LABEL: "true"} if labelled else {}
    return {"apiVersion": TEMPLATE_API_VERSION, "kind": "Template",
            "metadata": {"name": name, "namespace": "x", "labels": labels},
            "objects": [{"kind": "ServingRuntime", "metadata": {"name": runtime}}]}


def runtime_named(spec: PoolSpec, name: str) -> Manifest:
    return next(o for o in render(spec).manifests if o["kind"] == SR_KIND and o["metadata"]["name"] == name)


def test_find_template_by_either_name_in_the_dashboard_namespace_by_metadata_name_in_the_project() -> None:
    t = template("vllm-embedding-runtime-template", "vllm-embedding-runtime")
    assert matches(t, "vllm-embedding-runtime") and matches(t, "vllm-embedding-runtime-template")
    assert not matches(t, "other")
    assert find_template("vllm-embedding-runtime", [t], []) is t
    assert find_template("vllm-embedding-runtime-template", [t], []) is t
    # The project is read with a GET by name: objects[0]'s name does not count there.
    assert find_template("vllm-embedding-runtime", [], [t]) is None
    assert find_template("vllm-embedding-runtime-template", [], [t]) is t
    # 3.5 lists only labelled Templates in the dashboard namespace.
    assert find_template("vllm-embedding-runtime", [template("a", "vllm-embedding-runtime", labelled=False)],
                         []) is None


def test_rendered_runtimes_find_their_rendered_templates_in_either_scope() -> None:
    for overrides, where in (({}, "dashboard"), ({"dashboard.templates_scope": "project"}, "project")):
        spec = load_spec(SECURE, overrides)
        rendered = render(spec)
        dash, project = (rendered.templates, []) if where == "dashboard" else ([], rendered.templates)
        for sr in (o for o in rendered.manifests if o["kind"] == SR_KIND):
            assert template_warning(spec, sr, dashboard_templates=dash, project_templates=project) is None
            # ...and the other namespace alone would not do for the project scope.
        if where == "project":
            sr = runtime_named(spec, "bge-m3")
            assert template_warning(spec, sr, dashboard_templates=[], project_templates=[]) is not None


def test_no_warning_for_a_runtime_without_template_name() -> None:
    spec = load_spec(ROOT / "poolserve.yaml")
    sr = runtime_named(spec, "vllm-embedding-runtime")
    assert TEMPLATE_NAME not in sr["metadata"]["annotations"]
    assert template_warning(spec, sr, dashboard_templates=[], project_templates=[]) is None


@pytest.mark.parametrize(("overrides", "fix"), [
    ({}, "an admin applies it with `oc apply -f manifests/kserve/dashboard-templates.yaml` (or deploy with "
         "dashboard.templates_scope: project)"),
    ({"dashboard.templates_scope": "project"}, "`poolserve deploy --runtimes-only` applies it"),
    ({"dashboard.templates": False}, "`poolserve deploy --runtimes-only` drops the template-name "
                                     "(dashboard.templates is off)"),
])
def test_the_warning_names_the_runtime_the_template_and_the_fix_for_the_config(overrides: dict, fix: str) -> None:
    sr = runtime_named(load_spec(SECURE), "bge-m3")  # as deployed with global Templates
    spec = load_spec(SECURE, overrides)
    warning = template_warning(spec, sr, dashboard_templates=[], project_templates=[])
    assert warning == ("runtime bge-m3 names Template 'vllm-embedding-runtime' (opendatahub.io/template-name) but "
                       "no Template in redhat-ods-applications or search has that name: OpenShift AI 3.5+ labels "
                       f"the model 'Template removed'; {fix}")


def test_an_unlabelled_template_and_an_unlistable_namespace_are_said() -> None:
    spec = load_spec(SECURE)
    sr = runtime_named(spec, "bge-m3")
    t = copy.deepcopy(render(spec).templates[0])
    del t["metadata"]["labels"]
    warning = template_warning(spec, sr, dashboard_templates=[t], project_templates=[], dashboard_listed=False)
    assert warning is not None
    assert ("Template redhat-ods-applications/vllm-embedding-runtime-template lacks the label "
            "opendatahub.io/dashboard=true, so OpenShift AI 3.5 does not see it") in warning
    assert warning.endswith("(the Templates in redhat-ods-applications could not be listed: forbidden)")
