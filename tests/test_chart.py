"""The Helm chart (charts/poolserve) against `poolserve render`, with the real helm binary.

Parity: for every config in tests/specs/ and poolserve.yaml, `helm template -f CONFIG` makes the same
objects as `poolserve render`: every object, kind, name and namespace, the same spec (and every other
field), the same labels and annotations apart from Helm's own. Plus: the chart's generated files are
current, `helm lint --strict` is clean, `helm package` works, and values.yaml is the plan.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from poolserve.cli.app import app
from poolserve.config.load import load_spec, parse_spec
from poolserve.config.schema import DEFAULT_IMAGE, PoolSpec
from poolserve.kserve.render import render
from support.helm import CHART, HELM_LABELS, differences, helm, load_objects, template, without_helm_metadata

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [ROOT / "poolserve.yaml", *sorted((ROOT / "tests" / "specs").glob("*.yaml"))]
runner = CliRunner()


def render_objects(config: Path, tmp_path: Path) -> list[dict[str, Any]]:
    """Every object `poolserve render` writes for CONFIG (the -o - stream, plus dashboard-templates.yaml)."""
    out = tmp_path / "rendered"
    r = runner.invoke(app, ["render", "-c", str(config), "-o", str(out)])
    assert r.exit_code == 0, r.output
    objects = [o for p in sorted(out.glob("*.yaml")) if p.name != "kustomization.yaml"
               for o in load_objects(p.read_text())]
    stream = runner.invoke(app, ["render", "-c", str(config), "-o", "-"])
    assert stream.exit_code == 0, stream.output
    assert all(o in objects for o in load_objects(stream.stdout))
    return objects


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_helm_template_makes_what_poolserve_render_makes(config: Path, tmp_path: Path) -> None:
    spec = load_spec(config)
    # The Namespace too: render always writes it, the chart with helm.create_namespace.
    out = template("-f", config, "--set", "helm.create_namespace=true", "--skip-tests", namespace=spec.namespace)
    chart = load_objects(out.stdout)
    rendered = render_objects(config, tmp_path)
    assert differences(chart, rendered) == []
    for obj in chart:
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm", obj["metadata"]
        for o in obj.get("objects", []):  # a Template's runtime: poolserve's labels (see below)
            assert o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "poolserve", o["metadata"]
    kinds = {o["kind"] for o in chart}
    assert {"Namespace", "ServingRuntime", "InferenceService"} <= kinds


# Corners the specs do not reach, where a template could resolve a key differently from spec.py.
_RT = "runtimes: [{name: embed, task: embed}, {name: rerank, task: score}]\n"
_MINILM = "model_id: sentence-transformers/all-MiniLM-L6-v2"
EDGE_CONFIGS = {
    # A model's null opts out of what defaults: sets (autoscaling, hardware_profile, disruption_budget); a profile
    # from defaults: leaves defaults:' node selector and tolerations out; a shared runtime whose models use one
    # profile carries it, one whose models differ carries none.
    "opt-outs-and-profiles": _RT + f"""\
defaults:
  replicas: 2
  max_replicas: 4
  autoscaling: {{metric: queue, target: 8, authentication: null}}
  hardware_profile: nvidia-l4
  disruption_budget: {{}}
  node_selector: {{pool: gpu}}
  tolerations: [{{key: gpu, operator: Exists, effect: NoSchedule}}]
models:
  - {{name: a, {_MINILM}}}
  - {{name: b, {_MINILM}, autoscaling: null, hardware_profile: null, disruption_budget: null, max_replicas: 2}}
  - {{name: c, model_id: cross-encoder/ms-marco-MiniLM-L12-v2, hardware_profile: {{name: big, namespace: x}},
      disruption_budget: {{min_available: 0}}, autoscaling: {{metric: cpu, target: 100}}}}
""",
    # Project-scoped Templates (named like the runtimes' template-name, in the models' namespace), per-model
    # runtimes with their model's profile, a ReadWriteOnce cache (Recreate unless a model says otherwise).
    "project-templates-rwo": _RT + f"""\
runtime_mode: per-model
dashboard: {{templates: true, templates_scope: project}}
cache: {{access_mode: ReadWriteOnce, pvc: store}}
defaults: {{image_pull_secrets: [pull-a]}}
models:
  - {{name: a, {_MINILM}, hardware_profile: {{name: l4}}, storage_uri: 'pvc://store/all-minilm'}}
  - {{name: b, {_MINILM}, deployment_strategy: RollingUpdate, image_pull_secrets: [],
      storage_uri: 'oci://registry.local:5000/models/minilm@sha256:{"0" * 64}'}}
  - {{name: c, {_MINILM}, image_pull_secrets: [pull-b, pull-c], storage_uri: 's3://bucket-1/models/',
      data_connection: s3-conn}}
""",
    # The dashboard's own namespace as the models' namespace: project scope too; monitoring annotations.
    "templates-in-the-models-namespace": _RT + f"""\
dashboard: {{templates: true, templates_namespace: vllm-embeddings}}
monitoring: {{enabled: true}}
models:
  - {{name: a, {_MINILM}, storage_uri: 'hf://sentence-transformers/all-MiniLM-L6-v2'}}
""",
    # Runtimes per device and version: a CPU runtime on an older vLLM (the ECR image, the api_server module)
    # with settings set to null (they do not fall back to the device's), a GPU runtime with CPU-like settings,
    # models whose own image is newer or older than their runtime's (the command follows the model's), and
    # MIG slices with and without gpus.
    "devices-and-commands": f"""\
image: vllm/vllm-openai:v0.10.2
runtimes:
  - {{name: cpu-old, task: embed, device: cpu, dtype: null, gpu_memory_utilization: null, node_selector: {{}}}}
  - {{name: gpu, task: score, enforce_eager: true, accelerator: null, image: 'vllm/vllm-openai:v0.32.0'}}
  - {{name: cpu-new, task: embed, device: cpu, vllm_version: '0.20.0', enforce_eager: false,
     tolerations: [{{key: cpu, operator: Exists}}]}}
defaults: {{gpus: 2}}
models:
  - {{name: a, {_MINILM}, runtime: cpu-old, image: 'vllm/vllm-openai:v0.32.0'}}
  - {{name: b, model_id: cross-encoder/ms-marco-MiniLM-L12-v2, image: 'vllm/vllm-openai:v0.11.0', mig_profile: 3g.40gb}}
  - {{name: c, model_id: cross-encoder/ms-marco-MiniLM-L12-v2, mig_profile: 1g.10gb+me, gpus: null}}
  - {{name: d, {_MINILM}, runtime: cpu-new, storage_uri: 'hf://sentence-transformers/all-MiniLM-L6-v2'}}
""",
    # bfloat16 on CPU (kserve.cpu.node_affinity): the runtime's dtype, a model's own, a float32 model on a bf16
    # runtime, a selector that already pins bf16 nodes, and a hardware profile (no affinity for the last three).
    "cpu-bfloat16-placement": f"""\
runtimes:
  - {{name: cpu-bf16, task: embed, device: cpu, dtype: bfloat16}}
  - {{name: cpu, task: embed, device: cpu}}
models:
  - {{name: a, {_MINILM}, runtime: cpu-bf16}}
  - {{name: b, {_MINILM}, runtime: cpu, dtype: bfloat16}}
  - {{name: c, {_MINILM}, runtime: cpu-bf16, dtype: float32}}
  - {{name: d, {_MINILM}, runtime: cpu-bf16,
     node_selector: {{feature.node.kubernetes.io/cpu-cpuid.AVX512BF16: 'true'}}}}
  - {{name: e, {_MINILM}, runtime: cpu-bf16, hardware_profile: cpu-bf16}}
""",
    # exclusive_cpus: vLLM's own binding (no OMP_NUM_THREADS), beside a runtime that leaves threads unpinned.
    "cpu-exclusive-cpus": f"""\
runtimes:
  - {{name: pinned, task: embed, device: cpu, exclusive_cpus: true}}
  - {{name: shared, task: embed, device: cpu, exclusive_cpus: false}}
defaults: {{resources: {{limits: {{cpu: "4", memory: 8Gi}}}}}}
models:
  - {{name: a, {_MINILM}, runtime: pinned}}
  - {{name: b, {_MINILM}, runtime: shared}}
""",
    # Probes set in part (the rest keep poolserve's defaults; an initial delay of 0 is left out) and env names
    # that only look like secret words (spec.secret_like lets them through).
    "probes-and-env-names": f"""\
runtimes:
  - name: embed
    task: embed
    probes: {{startup: {{period_s: 5, initial_delay_s: 0}}, liveness: {{initial_delay_s: 20, failure_threshold: 2}}}}
    env: {{TOKENIZERS_PARALLELISM: "false", KEYWORDS: x}}
models:
  - {{name: a, {_MINILM}, env: {{TOKENIZER_MODE: auto, PASS_THROUGH: "1"}}}}
""",
}


@pytest.mark.parametrize("case", EDGE_CONFIGS, ids=str)
def test_helm_template_resolves_the_corners_like_poolserve(case: str, tmp_path: Path) -> None:
    config = tmp_path / "poolserve.yaml"
    config.write_text(EDGE_CONFIGS[case])
    out = template("-f", config, "--set", "helm.create_namespace=true", "--skip-tests", namespace="vllm-embeddings")
    assert differences(load_objects(out.stdout), render_objects(config, tmp_path)) == []


@pytest.mark.parametrize("case", ["project-templates-rwo", "templates-in-the-models-namespace"], ids=str)
def test_a_templates_runtime_has_renders_metadata_exactly(case: str, tmp_path: Path) -> None:
    # The dashboard copies a Template runtime's labels into each runtime it creates from it (odh-dashboard
    # assembleServingRuntime): Helm's labels there would make that runtime look Helm-managed, with no release
    # owning it, and `poolserve delete` would refuse it. So objects[0] carries render's metadata, Helm's none.
    config = tmp_path / "poolserve.yaml"
    config.write_text(EDGE_CONFIGS[case])
    chart = load_objects(template("-f", config, "--skip-tests", namespace="vllm-embeddings").stdout)
    rendered = render_objects(config, tmp_path)
    ours = {o["metadata"]["name"]: o["objects"][0]["metadata"] for o in chart if o["kind"] == "Template"}
    theirs = {o["metadata"]["name"]: o["objects"][0]["metadata"] for o in rendered if o["kind"] == "Template"}
    assert ours and ours == theirs


def test_the_comparison_sees_a_difference(tmp_path: Path) -> None:
    # The parity check itself: one changed arg, one extra label, one missing object are all reported.
    config = ROOT / "tests" / "specs" / "minimal.yaml"
    rendered = render_objects(config, tmp_path)
    chart = load_objects(template("-f", config, "--set", "helm.create_namespace=true", "--skip-tests",
                                  namespace="vllm-embeddings").stdout)
    isvc = next(o for o in chart if o["kind"] == "InferenceService")
    isvc["spec"]["predictor"]["model"]["args"][-1] = "--max-model-len=128"
    isvc["metadata"]["labels"]["extra"] = "x"
    problems = differences([o for o in chart if o["kind"] != "Namespace"], rendered)
    assert any("only in poolserve render: ('Namespace'" in p for p in problems)
    assert any("--max-model-len=128" in p and "extra: x" in p for p in problems)
    assert without_helm_metadata({"kind": "X", "metadata": {"name": "a", "labels": dict.fromkeys(HELM_LABELS, "v")}}
                                 ) == {"kind": "X", "metadata": {"name": "a"}}


def test_default_values_install_the_plan(tmp_path: Path) -> None:
    """No -f: the plan's deployment, as poolserve renders poolserve.yaml (its namespace display name needs the file)."""
    chart = load_objects(template("--skip-tests", namespace="vllm-embeddings").stdout)
    rendered = [o for o in render_objects(ROOT / "poolserve.yaml", tmp_path) if o["kind"] != "Namespace"]
    assert differences(chart, rendered) == []
    assert not any(o["kind"] == "Namespace" for o in chart)  # the plan's namespace exists


def _maps(model: type[BaseModel], data: dict[str, Any], path: str = "") -> list[tuple[str, Any, Any]]:
    """(key, value in values.yaml, poolserve's default) for every key inside a mapping-valued key."""
    out = []
    for name, value in data.items():
        field = model.model_fields[name]
        default = field.get_default(call_default_factory=True)
        if isinstance(value, dict) and isinstance(default, BaseModel):
            out += _maps(type(default), value, f"{path}{name}.")
        elif path:  # a key inside a mapping: Helm merges it into every -f file
            out.append((f"{path}{name}", value, default))
    return out


def test_values_yaml_mappings_hold_only_poolserve_defaults() -> None:
    # Helm merges values.yaml's mappings into every -f file, so anything but poolserve's defaults there would
    # change the meaning of a user's config (lists are replaced whole and may hold the plan).
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert "namespace" not in values  # the release namespace (Helm's convention)
    assert "defaults" not in values
    for k, v in values.items():
        if k not in ("runtimes", "models") and not isinstance(v, dict):
            assert v == PoolSpec.model_fields[k].default, k
    for name, value, default in _maps(PoolSpec, {k: v for k, v in values.items() if isinstance(v, dict)}):
        assert value == (default.model_dump() if isinstance(default, BaseModel) else default), name


def test_values_yaml_is_a_poolserve_config_that_renders_the_plan() -> None:
    text = (CHART / "values.yaml").read_text()
    values = render(parse_spec(text, "values.yaml"))
    plan = render(load_spec(ROOT / "poolserve.yaml"))
    assert values.manifests[1:] == plan.manifests[1:]  # [0]: the Namespace, whose display name poolserve.yaml sets


def test_chart_versions_follow_poolserve_and_the_image() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    import tomllib

    assert chart["version"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == DEFAULT_IMAGE.rpartition(":")[2]
    assert yaml.safe_load((CHART / "values.yaml").read_text())["image"] == DEFAULT_IMAGE
    assert chart["apiVersion"] == "v2"


def test_generated_chart_files_are_current() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_chart.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_generated_check_reports_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_chart
    finally:
        sys.path.pop(0)
    monkeypatch.setattr(gen_chart, "CHART", tmp_path)
    monkeypatch.setattr(gen_chart, "RULES", tmp_path / "rules.md")
    (tmp_path / "templates").mkdir()
    assert gen_chart.main(["--check"]) == 1
    assert gen_chart.main([]) == 0
    assert gen_chart.main(["--check"]) == 0
    schema = json.loads((tmp_path / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False and "local" in schema["properties"]
    assert "| duplicate model name … |" in (tmp_path / "rules.md").read_text()


def test_helm_lint_strict_is_clean() -> None:
    runs: list[list[str]] = [[]]  # values.yaml alone, then each config
    runs += [["-f", str(c), "--namespace", load_spec(c).namespace] for c in CONFIGS]
    for args in runs:
        out = helm("lint", "--strict", CHART, *args)
        assert "0 chart(s) failed" in out.stdout
        assert "[WARNING]" not in out.stdout and "[ERROR]" not in out.stdout, out.stdout


def test_helm_package(tmp_path: Path) -> None:
    out = helm("package", CHART, "--destination", tmp_path)
    (archive,) = tmp_path.glob("poolserve-*.tgz")
    assert archive.name == f"poolserve-{yaml.safe_load((CHART / 'Chart.yaml').read_text())['version']}.tgz", out.stdout
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"poolserve/Chart.yaml", "poolserve/values.yaml", "poolserve/values.schema.json",
            "poolserve/templates/_generated.tpl", "poolserve/files/smoke.py"} <= names
    # The packaged chart renders like the directory.
    assert (template(namespace="vllm-embeddings").stdout
            == helm("template", "poolserve", archive, "--namespace", "vllm-embeddings").stdout)
