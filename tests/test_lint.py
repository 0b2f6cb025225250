"""Lint rules: each one fires on the input it guards against, and the committed config is clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolserve.config.load import load_spec, parse_spec
from poolserve.kserve.lint import Finding, lint
from poolserve.kserve.render import render
from support.assets import crd_dir

ROOT = Path(__file__).resolve().parents[1]
BASE = """\
runtimes:
  - {name: vllm-embedding-runtime, task: embed}
  - {name: vllm-reranker-runtime, task: score}
defaults:
  resources: {limits: {memory: 8Gi}}
models:
  - {name: minilm-embedding, model_id: sentence-transformers/all-MiniLM-L6-v2}
"""


def _findings(text: str, **kw: object) -> list[Finding]:
    spec = parse_spec(text)
    return list(lint(spec, render(spec), **kw).findings)  # type: ignore[arg-type]


def _has(findings: list[Finding], severity: str, fragment: str) -> bool:
    return any(f.severity == severity and fragment in f.message for f in findings)


def test_committed_config_has_no_errors_or_warnings() -> None:
    spec = load_spec(ROOT / "poolserve.yaml")
    report = lint(spec, render(spec), crd_dir=crd_dir())
    assert report.schemas_checked
    assert [f for f in report.findings if f.severity != "note"] == []


def test_task_removed_flag_in_extra_args() -> None:
    text = BASE.replace("task: embed}", "task: embed, extra_args: ['--task=embed']}")
    assert _has(_findings(text), "error", "--task was removed in vLLM 0.13.0")


def test_old_vllm_for_a_model_that_needs_newer() -> None:
    text = "image: vllm/vllm-openai:v0.9.2\n" + BASE + "  - {name: qwen, model_id: Qwen/Qwen3-Embedding-0.6B}\n"
    assert _has(_findings(text), "error", "needs vLLM >= 0.10.1")


def test_task_versus_architecture() -> None:
    text = BASE + "  - {name: rr, model_id: cross-encoder/ms-marco-MiniLM-L12-v2, task: embed}\n"
    expected = "BertForSequenceClassification (score model) but the config serves it as 'embed'"
    assert _has(_findings(text), "error", expected)


def test_rwo_pvc_shared_by_several_pods() -> None:
    text = "cache: {access_mode: ReadWriteOnce}\n" + BASE.replace("all-MiniLM-L6-v2}", "all-MiniLM-L6-v2, replicas: 2}")
    assert _has(_findings(text), "warning", "must run on one node")
    text = text.replace("ReadWriteOnce", "ReadWriteOncePod")
    assert _has(_findings(text), "error", "only one pod can ever mount it")
    assert not _has(_findings(BASE.replace("models:", "cache: {access_mode: ReadWriteOnce}\nmodels:")),
                    "warning", "must run on one node")


def test_exposed_without_auth_warns() -> None:
    text = BASE.replace("all-MiniLM-L6-v2}", "all-MiniLM-L6-v2, expose: true, auth: false}")
    assert _has(_findings(text), "warning", "without token auth")


def test_model_agent_note_for_custom_model_format() -> None:
    text = BASE.replace("task: embed}", "task: embed, model_format: vllm-embedding}")
    assert _has(_findings(text), "note", "model-agent sidecar")
    assert not _has(_findings(BASE), "note", "model-agent sidecar")


def test_bad_placeholder_in_extra_args() -> None:
    text = BASE.replace("all-MiniLM-L6-v2}", "all-MiniLM-L6-v2, extra_args: ['--chat-template={{ x }}']}")
    assert _has(_findings(text), "error", "failed to replace placeholder")


def test_missing_memory_limit_warns() -> None:
    text = BASE.replace("  resources: {limits: {memory: 8Gi}}\n", "  gpus: 0\n")
    assert _has(_findings(text), "warning", "no memory limit")


def test_required_catalog_flag_cannot_be_dropped() -> None:
    text = BASE + "  - {name: nomic, model_id: nomic-ai/nomic-embed-text-v1.5, trust_remote_code: false}\n"
    assert _has(_findings(text), "error", "needs --trust-remote-code")


def test_shared_runtime_note_explains_dashboard_delete() -> None:
    text = BASE + "  - {name: e5, model_id: intfloat/e5-base-v2}\n"
    assert _has(_findings(text), "note", "deleting any of them in the dashboard also deletes this runtime")
    assert not _has(_findings("runtime_mode: per-model\n" + text), "note", "deleting any of them")


def test_templates_say_who_may_apply_them_and_which_dashboards_find_project_ones() -> None:
    glob = _findings("dashboard: {templates: true}\n" + BASE)
    assert [(f.severity, f.subject) for f in glob if "Template" in f.message] == [
        ("note", "dashboard-templates.yaml (redhat-ods-applications)")]
    assert _has(glob, "note", "creating Templates in redhat-ods-applications needs an OpenShift AI admin")
    project = _findings("dashboard: {templates: true, templates_scope: project}\n" + BASE)
    assert _has(project, "warning", "project-scoped Templates: OpenShift AI 3.6+ finds them; 3.5 looks only in "
                                    "redhat-ods-applications and labels the runtimes 'Template removed'")
    assert not _has(_findings(BASE), "note", "Template")


def test_a_template_name_no_rendered_template_matches_warns() -> None:
    spec = parse_spec("dashboard: {templates: true}\n" + BASE)
    rendered = render(spec)
    assert not any("matches no rendered Template" in f.message for f in lint(spec, rendered).findings)
    tampered = render(spec)
    for t in tampered.templates:
        t["objects"][0]["metadata"]["name"] += "-renamed"
        t["metadata"]["name"] += "-renamed"
    findings = list(lint(spec, tampered).findings)
    assert _has(findings, "warning", "template-name 'vllm-embedding-runtime' matches no rendered Template: "
                                     "OpenShift AI 3.5+ labels it 'Template removed'")


@pytest.mark.parametrize("spec", sorted((ROOT / "tests" / "specs").glob("*.yaml")), ids=lambda p: p.stem)
def test_example_specs_lint_without_errors(spec: Path) -> None:
    s = load_spec(spec)
    assert lint(s, render(s), crd_dir=crd_dir()).errors == []


def test_stopped_model_is_noted() -> None:
    found = _findings(BASE.replace("sentence-transformers/all-MiniLM-L6-v2}",
                                   "sentence-transformers/all-MiniLM-L6-v2, stopped: true}"))
    assert _has(found, "note", "`poolserve start minilm-embedding` starts it until the next deploy")
