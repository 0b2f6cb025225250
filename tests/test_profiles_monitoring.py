"""Hardware profiles (OpenShift AI 2.x and 3.x annotations) and opt-in monitoring."""

from __future__ import annotations

import pytest

from poolserve.config.load import parse_spec
from poolserve.config.resolve import resolve_models
from poolserve.errors import SpecError
from poolserve.kserve.lint import Finding, lint
from poolserve.kserve.names import ENABLE_PROMETHEUS_SCRAPING, KSERVE_PROMETHEUS_PATH, KSERVE_PROMETHEUS_PORT
from poolserve.kserve.render import render

BASE = """\
runtimes:
  - {name: vllm-embedding-runtime, task: embed}
defaults:
  gpus: 1
  resources: {limits: {memory: 8Gi}}
  node_selector: {nvidia.com/gpu.product: NVIDIA-L4}
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
models:
  - name: minilm-embedding
    model_id: sentence-transformers/all-MiniLM-L6-v2
"""
NAME, NS = "opendatahub.io/hardware-profile-name", "opendatahub.io/hardware-profile-namespace"


def _objects(text: str) -> list[dict]:
    return render(parse_spec(text)).manifests


def _one(text: str, kind: str, name: str | None = None) -> dict:
    return next(o for o in _objects(text) if o["kind"] == kind and (name is None or o["metadata"]["name"] == name))


def _findings(text: str) -> list[Finding]:
    spec = parse_spec(text)
    return list(lint(spec, render(spec)).findings)


def test_hardware_profile_annotations_on_the_inference_service() -> None:
    isvc = _one(BASE + "    hardware_profile: nvidia-l4\n", "InferenceService")
    ann = isvc["metadata"]["annotations"]
    # The dashboard namespace by default: where global profiles live (the 3.x UI reads it from there too).
    assert (ann[NAME], ann[NS]) == ("nvidia-l4", "redhat-ods-applications")
    custom = _one(BASE + "    hardware_profile: {name: l4-small, namespace: vllm-embeddings}\n", "InferenceService")
    assert (custom["metadata"]["annotations"][NAME], custom["metadata"]["annotations"][NS]) == (
        "l4-small", "vllm-embeddings")
    odh = _one("dashboard: {templates_namespace: opendatahub}\n" + BASE + "    hardware_profile: nvidia-l4\n",
               "InferenceService")
    assert odh["metadata"]["annotations"][NS] == "opendatahub"


def test_the_profile_owns_scheduling_and_resources_stay_as_configured() -> None:
    """Its 3.x webhook merges the profile's node selector and tolerations (profile wins): poolserve leaves them out.

    Resources stay: the 3.x dashboard writes them itself, and the webhook only fills names left unset.
    """
    predictor = _one(BASE + "    hardware_profile: nvidia-l4\n", "InferenceService")["spec"]["predictor"]
    assert "nodeSelector" not in predictor and "tolerations" not in predictor
    assert predictor["model"]["resources"]["limits"] == {"memory": "8Gi", "nvidia.com/gpu": "1"}
    plain = _one(BASE, "InferenceService")["spec"]["predictor"]
    assert plain["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"} and plain["tolerations"]


@pytest.mark.parametrize("key", ["node_selector: {a: b}", "tolerations: [{key: x, operator: Exists}]"])
def test_profile_and_own_scheduling_on_one_model_is_an_error(key: str) -> None:
    field = key.split(":")[0]
    with pytest.raises(SpecError) as exc:
        parse_spec(BASE + f"    hardware_profile: nvidia-l4\n    {key}\n")
    assert str(exc.value).startswith(f"poolserve.yaml:12: models[0].{field}: {field} comes from the hardware "
                                     "profile"), str(exc.value)


@pytest.mark.parametrize(("value", "fragment"), [
    ("Nvidia_L4", "models[0].hardware_profile.name: 'Nvidia_L4' is not a valid Kubernetes name"),
    ("{namespace: x}", "models[0].hardware_profile.name: Field required"),
    ("{name: a, nmespace: b}", "models[0].hardware_profile.nmespace: unknown key"),
])
def test_bad_hardware_profile(value: str, fragment: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse_spec(BASE + f"    hardware_profile: {value}\n")
    assert fragment in str(exc.value)


def test_runtime_shows_the_profile_for_the_2x_dashboard_when_its_models_agree() -> None:
    two = (BASE + "    hardware_profile: nvidia-l4\n"
           "  - {name: e5, model_id: intfloat/e5-base-v2, hardware_profile: a10}\n")
    shared = _one(two, "ServingRuntime")
    assert NAME not in shared["metadata"]["annotations"]  # two profiles on one runtime: the 2.x UI shows none
    assert any("2.x has no such webhook" in f.message for f in _findings(two))
    per_model = _objects("runtime_mode: per-model\n" + two)
    srs = {o["metadata"]["name"]: o["metadata"]["annotations"] for o in per_model if o["kind"] == "ServingRuntime"}
    assert srs["minilm-embedding"][NAME] == "nvidia-l4" and srs["e5"][NAME] == "a10"
    assert srs["e5"][NS] == "redhat-ods-applications"
    same = BASE.replace("defaults:\n", "defaults:\n  hardware_profile: nvidia-l4\n")
    assert _one(same, "ServingRuntime")["metadata"]["annotations"][NAME] == "nvidia-l4"


def test_profile_from_defaults_drops_defaults_scheduling() -> None:
    text = BASE.replace("defaults:\n", "defaults:\n  hardware_profile: nvidia-l4\n")
    (m,) = resolve_models(parse_spec(text))
    assert m.hardware_profile == ("nvidia-l4", "redhat-ods-applications")
    assert m.node_selector == () and m.tolerations == ()


def test_profile_model_without_memory_limit_is_not_warned() -> None:
    text = BASE.replace("  resources: {limits: {memory: 8Gi}}\n", "") + "    hardware_profile: nvidia-l4\n"
    findings = _findings(text)
    assert not any("no memory limit" in f.message for f in findings)
    assert any(f.severity == "note" and "hardware profile redhat-ods-applications/nvidia-l4" in f.message
               for f in findings)


def test_monitoring_is_opt_in() -> None:
    plain = _objects(BASE)
    assert all(o["kind"] != "PodMonitor" for o in plain)
    isvc = next(o for o in plain if o["kind"] == "InferenceService")
    assert "prometheus.io/scrape" not in isvc["metadata"]["annotations"]


def test_monitoring_renders_a_pod_monitor_and_kserves_annotations() -> None:
    text = "monitoring: {enabled: true}\n" + BASE
    pm = _one(text, "PodMonitor")
    assert pm["apiVersion"] == "monitoring.coreos.com/v1" and pm["metadata"]["name"] == "minilm-embedding-vllm"
    assert pm["metadata"]["namespace"] == "vllm-embeddings"
    assert pm["spec"]["selector"] == {"matchLabels": {"serving.kserve.io/inferenceservice": "minilm-embedding",
                                                      "component": "predictor"}}
    assert pm["spec"]["podMetricsEndpoints"] == [{"port": "http", "path": "/metrics", "scheme": "http"}]
    # The endpoint's port is the runtime container's port name.
    sr = _one(text, "ServingRuntime")
    assert sr["spec"]["containers"][0]["ports"][0]["name"] == "http"
    ann = _one(text, "InferenceService")["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert (ann[KSERVE_PROMETHEUS_PORT], ann[KSERVE_PROMETHEUS_PATH]) == ("8080", "/metrics")
    assert ann[ENABLE_PROMETHEUS_SCRAPING] == "false"
    assert any("each pod is scraped twice" in f.message for f in _findings(text))


def test_kserve_pod_mutator_keeps_the_metrics_port_because_scraping_is_false() -> None:
    """With enable-prometheus-scraping "true" KServe points prometheus.io/port at queue-proxy (9091)."""
    from support.kserve_sim import predictor_objects
    from support.kserve_webhooks import mutate_pod

    rendered = render(parse_spec("monitoring: {enabled: true}\n" + BASE))
    sr, isvc = rendered.objects_by_model["minilm-embedding"]
    deployment, _, _ = predictor_objects({**isvc, "metadata": {**isvc["metadata"], "uid": "u"}}, sr)
    tmpl = deployment["spec"]["template"]
    pod = mutate_pod({"metadata": {**tmpl["metadata"], "namespace": "ns"}, "spec": tmpl["spec"]})
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8080"
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    flipped = {**tmpl["metadata"], "annotations": {**tmpl["metadata"]["annotations"],
                                                    ENABLE_PROMETHEUS_SCRAPING: "true"}}
    pod = mutate_pod({"metadata": flipped, "spec": tmpl["spec"]})
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9091"


def test_a_runtimes_template_carries_no_models_hardware_profile() -> None:
    text = "runtime_mode: per-model\ndashboard: {templates: true}\n" + BASE + "    hardware_profile: nvidia-l4\n"
    (template,) = [o for o in _objects(text) if o["kind"] == "Template"]
    assert NAME not in template["objects"][0]["metadata"]["annotations"]
    assert _one(text, "ServingRuntime")["metadata"]["annotations"][NAME] == "nvidia-l4"
