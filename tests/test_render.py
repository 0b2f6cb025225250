"""Rendering: golden files, CRD schema validation, determinism, the committed manifests' drift check."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolserve.config import yamlio
from poolserve.config.load import load_spec, parse_spec
from poolserve.config.resolve import resolve_models
from poolserve.errors import SpecError
from poolserve.kserve.lint import validate_against_crds
from poolserve.kserve.names import (
    DASHBOARD_LABEL,
    DEPLOYMENT_MODE,
    DISPLAY_NAME,
    ENABLE_AUTH,
    MODELMESH_ENABLED,
    RUNTIME_SCOPE,
    TEMPLATE_DISPLAY_NAME,
    TEMPLATE_NAME,
    VISIBILITY,
)
from poolserve.kserve.objects import inference_service
from poolserve.kserve.render import file_texts, render
from support.assets import crd_dir

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "tests" / "specs").glob("*.yaml"))
GOLDEN = ROOT / "tests" / "golden"


def _all_text(spec_path: Path) -> str:
    spec = load_spec(spec_path)
    texts = file_texts(render(spec), f"tests/specs/{spec_path.name}")
    return "".join(f"# ---- {name}\n{text}" for name, text in sorted(texts.items()))


@pytest.mark.parametrize("spec_path", SPECS, ids=lambda p: p.stem)
def test_render_matches_golden(spec_path: Path, request: pytest.FixtureRequest) -> None:
    golden = GOLDEN / f"{spec_path.stem}.yaml"
    text = _all_text(spec_path)
    if request.config.getoption("--update-goldens", default=False):
        golden.write_text(text)
    assert golden.is_file(), f"missing {golden}: run pytest --update-goldens"
    assert text == golden.read_text(), f"{golden} differs: run pytest --update-goldens and review the diff"


def test_render_is_deterministic() -> None:
    spec = load_spec(ROOT / "poolserve.yaml")
    assert file_texts(render(spec), "x") == file_texts(render(spec), "x")


def test_committed_manifests_match_a_fresh_render() -> None:
    texts = file_texts(render(load_spec(ROOT / "poolserve.yaml")), "poolserve.yaml")
    out = ROOT / "manifests" / "kserve"
    on_disk = {p.name: p.read_text() for p in out.glob("*.yaml")}
    assert on_disk == texts, "manifests/kserve is stale: run `poolserve render`"


def test_plan_file_names() -> None:
    texts = file_texts(render(load_spec(ROOT / "poolserve.yaml")), "poolserve.yaml")
    assert set(texts) == {
        "namespace.yaml", "serving-runtime-embedding.yaml", "serving-runtime-reranker.yaml",
        "minilm-embedding-isvc.yaml", "granite-embedding-isvc.yaml", "msmarco-reranker-isvc.yaml",
        "kustomization.yaml",
    }
    kust = yamlio.load_all(texts["kustomization.yaml"])[0]
    assert sorted(kust["resources"]) == sorted(n for n in texts if n != "kustomization.yaml")


@pytest.mark.parametrize("spec_path", [ROOT / "poolserve.yaml", *SPECS], ids=lambda p: p.stem)
def test_rendered_objects_validate_against_kserve_crds(spec_path: Path) -> None:
    rendered = render(load_spec(spec_path))
    kinds = {o["kind"] for o in rendered.manifests}
    assert {"ServingRuntime", "InferenceService"} <= kinds
    assert validate_against_crds(rendered.manifests, crd_dir()) == []


def test_crd_validation_catches_a_bad_object() -> None:
    rendered = render(load_spec(ROOT / "poolserve.yaml"))
    isvc = next(o for o in rendered.manifests if o["kind"] == "InferenceService")
    bad = {**isvc, "spec": {"predictor": {**isvc["spec"]["predictor"], "minReplicas": "one"}}}
    sr = next(o for o in rendered.manifests if o["kind"] == "ServingRuntime")
    bad_sr = {**sr, "spec": {**sr["spec"], "containers": "nope"}}
    findings = validate_against_crds([bad, bad_sr], crd_dir())
    messages = [f.message for f in findings]
    assert any("spec.predictor.minReplicas" in m for m in messages)
    assert any("spec.containers" in m for m in messages)


def test_plan_objects_are_what_kserve_and_the_dashboard_need() -> None:
    rendered = render(load_spec(ROOT / "poolserve.yaml"))
    srs = {o["metadata"]["name"]: o for o in rendered.manifests if o["kind"] == "ServingRuntime"}
    assert set(srs) == {"vllm-embedding-runtime", "vllm-reranker-runtime"}
    for sr in srs.values():
        (c,) = sr["spec"]["containers"]
        assert c["name"] == "kserve-container" and c["ports"][0]["containerPort"] == 8080
        assert c["command"] == ["vllm", "serve"]  # v0.32.0: vLLM's own image entrypoint
        assert "--runner=pooling" in c["args"] and not any(a.startswith("--task") for a in c["args"])
        assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
        assert c["startupProbe"]["httpGet"]["path"] == "/health"
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["USER"] and env["HOME"] == "/tmp/home" and env["HF_HOME"] == "/models/huggingface"
        assert env["VLLM_NO_USAGE_STATS"] == "1" and "VLLM_USAGE_STATS" not in env
        vols = {v["name"]: v for v in sr["spec"]["volumes"]}
        assert vols["model-cache"]["persistentVolumeClaim"]["claimName"] == "vllm-model-cache"
        assert vols["shm"]["emptyDir"]["medium"] == "Memory"
        ann = sr["metadata"]["annotations"]
        assert ann[TEMPLATE_DISPLAY_NAME] == ann[DISPLAY_NAME]
        assert TEMPLATE_NAME not in ann  # no Template rendered -> no "Template removed" label
        assert sr["metadata"]["labels"][DASHBOARD_LABEL] == "true"
    isvcs = [o for o in rendered.manifests if o["kind"] == "InferenceService"]
    assert len(isvcs) == 3
    for isvc in isvcs:
        meta = isvc["metadata"]
        assert meta["annotations"][DEPLOYMENT_MODE] == "RawDeployment"
        assert meta["annotations"][ENABLE_AUTH] == "false"
        assert meta["labels"][DASHBOARD_LABEL] == "true"
        assert VISIBILITY not in meta["labels"]
        model = isvc["spec"]["predictor"]["model"]
        assert model["runtime"] in srs
        assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    ns = next(o for o in rendered.manifests if o["kind"] == "Namespace")
    assert ns["metadata"]["labels"] == {DASHBOARD_LABEL: "true", MODELMESH_ENABLED: "false"}


def test_exposed_model_gets_auth_objects_and_no_secret_values() -> None:
    rendered = render(load_spec(ROOT / "tests" / "specs" / "per-model-secure.yaml"))
    kinds = [(o["kind"], o["metadata"]["name"]) for o in rendered.manifests]
    assert ("ServiceAccount", "bge-m3-sa") in kinds and ("Role", "bge-m3-view-role") in kinds
    assert ("RoleBinding", "bge-m3-view") in kinds and ("Secret", "default-bge-m3-sa") in kinds
    assert ("ServiceAccount", "bge-reranker-sa") not in kinds  # not exposed -> no auth
    for o in rendered.manifests:
        if o["kind"] == "Secret":
            assert "data" not in o and "stringData" not in o
            assert o["type"] == "kubernetes.io/service-account-token"
    isvc = next(o for o in rendered.manifests if o["metadata"]["name"] == "bge-m3" and o["kind"] == "InferenceService")
    assert isvc["metadata"]["labels"][VISIBILITY] == "exposed"
    assert isvc["metadata"]["annotations"][ENABLE_AUTH] == "true"
    sr = next(o for o in rendered.manifests if o["kind"] == "ServingRuntime" and o["metadata"]["name"] == "bge-m3")
    env = sr["spec"]["containers"][0]["env"]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}} in env
    assert sr["metadata"]["annotations"][TEMPLATE_NAME] == "vllm-embedding-runtime"
    templates = next(f for f in rendered.files if f.name == "dashboard-templates.yaml")
    names = [t["objects"][0]["metadata"]["name"] for t in templates.objects]
    assert names == ["vllm-embedding-runtime", "vllm-reranker-runtime"]


def test_runtime_env_replaces_a_default_entry_whole() -> None:
    spec = load_spec(ROOT / "tests" / "specs" / "per-model-secure.yaml", {"runtimes.0.env": {"HOME": "/home/vllm"}})
    sr = next(o for o in render(spec).manifests if o["kind"] == "ServingRuntime")
    env = {e["name"]: e for e in sr["spec"]["containers"][0]["env"]}
    assert env["HOME"] == {"name": "HOME", "value": "/home/vllm"}
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}


def test_a_secret_in_a_rendered_env_is_refused() -> None:
    # The value would be written into manifests/kserve/ (committed to git): only a Secret reference may be.
    with pytest.raises(SpecError) as info:
        load_spec(ROOT / "tests" / "specs" / "per-model-secure.yaml", {"runtimes.0.env": {"HF_TOKEN": "hf_x"}})
    assert "runtimes[0].env.HF_TOKEN: HF_TOKEN looks like a secret, and its value would be written into the " \
        "rendered manifests: use cache.hf_token_secret" in str(info.value)
    assert "hf_x" not in str(info.value)
    load_spec(ROOT / "tests" / "specs" / "per-model-secure.yaml", {"runtimes.0.env": {"TOKENIZERS_PARALLELISM": "0"}})


def test_templates_are_applied_with_the_rest_and_before_the_runtimes_that_name_them() -> None:
    rendered = render(load_spec(ROOT / "tests" / "specs" / "per-model-secure.yaml"))
    kinds = [o["kind"] for o in rendered.manifests]
    assert kinds.index("Template") < kinds.index("ServingRuntime")
    assert [t["metadata"]["name"] for t in rendered.templates] == ["vllm-embedding-runtime-template",
                                                                  "vllm-reranker-runtime-template"]
    texts = file_texts(rendered, "x.yaml")
    kust = yamlio.load_all(texts["kustomization.yaml"])[0]
    assert kust["resources"][:2] == ["namespace.yaml", "dashboard-templates.yaml"]
    assert "needs an OpenShift AI admin" in texts["dashboard-templates.yaml"].splitlines()[1]
    assert render(load_spec(ROOT / "poolserve.yaml")).templates == []


def test_project_scoped_templates() -> None:
    path = ROOT / "tests" / "specs" / "per-model-secure.yaml"
    rendered = render(load_spec(path))
    sr = next(o for o in rendered.manifests if o["kind"] == "ServingRuntime")
    assert sr["metadata"]["annotations"][RUNTIME_SCOPE] == "global"
    assert {t["metadata"]["namespace"] for t in rendered.templates} == {"redhat-ods-applications"}
    for overrides in ({"dashboard.templates_scope": "project"}, {"dashboard.templates_namespace": "search"}):
        rendered = render(load_spec(path, overrides))
        srs = [o for o in rendered.manifests if o["kind"] == "ServingRuntime"]
        assert {sr["metadata"]["annotations"][RUNTIME_SCOPE] for sr in srs} == {"project"}
        # In the project the dashboard GETs the Template *named* template-name: the two names are one.
        for t in rendered.templates:
            assert t["metadata"]["namespace"] == "search"
            assert t["metadata"]["name"] == t["objects"][0]["metadata"]["name"]
        assert {sr["metadata"]["annotations"][TEMPLATE_NAME] for sr in srs} == {
            t["metadata"]["name"] for t in rendered.templates}
        assert "OpenShift AI 3.6+ finds them" in file_texts(rendered, "x")["dashboard-templates.yaml"]


def test_whole_float_quantities_are_written_as_integers() -> None:
    # Helm reads every number as a float: both tools must write cpu: 2.0 as "2" (Kubernetes: the same quantity).
    text = ("runtimes: [{name: rt, task: embed}]\nmodels: [{name: m, model_id: sentence-transformers/all-MiniLM-L6-v2,"
            " resources: {requests: {cpu: 2.0, memory: 4Gi}, limits: {cpu: 1.5, nvidia.com/mig-1g.5gb: 1}}}]\n")
    isvc = inference_service(spec := parse_spec(text), resolve_models(spec)[0])
    assert isvc["spec"]["predictor"]["model"]["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "1.5", "nvidia.com/mig-1g.5gb": "1"}}
