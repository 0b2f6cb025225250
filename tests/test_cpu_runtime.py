"""CPU-only runtimes (``runtimes[].device: cpu``): what they render, what the config refuses, what lint says,
and how the local target runs them (as rendered, apart from port and paths)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from poolserve.config.load import load_spec, parse_spec
from poolserve.config.resolve import resolve_models
from poolserve.errors import SpecError
from poolserve.kserve.compose import resource_field
from poolserve.kserve.lint import Finding, lint
from poolserve.kserve.names import AUTOSCALER_CLASS, RECOMMENDED_ACCELERATORS, STOP_ANNOTATION, TEMPLATE_DISPLAY_NAME
from poolserve.kserve.render import render
from poolserve.machine import HostInfo
from poolserve.targets.local.plan import plan_launch

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "tests" / "specs" / "cpu-runtime.yaml"
CPU = """\
image: vllm/vllm-openai:{tag}
runtimes:
  - name: cpu-embed
    task: embed
    device: cpu
defaults:
  gpus: 1
models:
  - name: minilm
    model_id: sentence-transformers/all-MiniLM-L6-v2
    resources: {{requests: {{cpu: "2", memory: 4Gi}}, limits: {{cpu: "2", memory: 4Gi}}}}
"""


def _objects(text: str) -> dict[str, Any]:
    rendered = render(parse_spec(text))
    return {o["kind"]: o for o in rendered.manifests} | {"composed": rendered.compose("minilm")}


def test_cpu_runtime_renders_the_cpu_image_and_cpu_settings_and_no_gpu() -> None:
    objs = _objects(CPU.format(tag="v0.32.0"))
    sr, composed = objs["ServingRuntime"], objs["composed"]
    (c,) = sr["spec"]["containers"]
    assert c["image"] == "vllm/vllm-openai-cpu:v0.32.0-x86_64"  # vLLM's own CPU image, the same release
    assert c["args"] == ["--port=8080", "--runner=pooling", "--dtype=float32", "--gpu-memory-utilization=0.5",
                         "--enforce-eager"]
    env = {e["name"]: e for e in c["env"]}
    assert env["VLLM_CPU_OMP_THREADS_BIND"]["value"] == "nobind"
    assert env["OMP_NUM_THREADS"]["valueFrom"] == {"resourceFieldRef": {
        "containerName": "kserve-container", "resource": "limits.cpu", "divisor": "1"}}
    assert sr["spec"]["nodeSelector"] == {"kubernetes.io/arch": "amd64"}  # the image is an x86_64 build
    assert RECOMMENDED_ACCELERATORS not in sr["metadata"]["annotations"]
    assert sr["metadata"]["annotations"][TEMPLATE_DISPLAY_NAME] == "vLLM CPU Embedding Runtime"
    # defaults.gpus is for GPU models: nothing asks for a GPU, in the objects or in what KServe runs.
    assert "nvidia.com" not in repr(objs["InferenceService"]) + repr(sr)
    assert composed.container["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"},
                                               "limits": {"cpu": "2", "memory": "4Gi"}}


@pytest.mark.parametrize(("tag", "image"), [
    ("v0.20.0", "vllm/vllm-openai-cpu:v0.20.0-x86_64"),           # Docker Hub from 0.20 (vllm#32032, #34882)
    ("v0.17.0", "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.17.0"),  # AWS ECR before
])
def test_cpu_image_per_version(tag: str, image: str) -> None:
    (c,) = _objects(CPU.format(tag=tag))["ServingRuntime"]["spec"]["containers"]
    assert c["image"] == image


def test_keys_set_in_the_config_win_over_the_cpu_defaults() -> None:
    text = CPU.format(tag="v0.32.0").replace("    device: cpu\n", (
        "    device: cpu\n    dtype: bfloat16\n    enforce_eager: false\n    gpu_memory_utilization: 0.3\n"
        "    node_selector: {}\n    image: quay.io/me/vllm-cpu:v0.32.0\n"))
    sr = _objects(text)["ServingRuntime"]
    (c,) = sr["spec"]["containers"]
    assert c["args"] == ["--port=8080", "--runner=pooling", "--dtype=bfloat16", "--gpu-memory-utilization=0.3"]
    assert c["image"] == "quay.io/me/vllm-cpu:v0.32.0" and "nodeSelector" not in sr["spec"]


@pytest.mark.parametrize(("edit", "expected"), [
    (("models:\n  - name: minilm\n", "models:\n  - name: minilm\n    gpus: 1\n"),
     "f.yaml:10: models[0].gpus: runtime 'cpu-embed' has device: cpu: its models cannot use GPUs"),
    (("models:\n  - name: minilm\n", "models:\n  - name: minilm\n    mig_profile: 1g.10gb\n"),
     "f.yaml:10: models[0].mig_profile: runtime 'cpu-embed' has device: cpu: no MIG slice"),
    (("    device: cpu\n", "    device: cpu\n    accelerator: nvidia.com/gpu\n"),
     "f.yaml:6: runtimes[0].accelerator: runtime 'cpu-embed' has device: cpu: it has no accelerator"),
    (("    device: cpu\n", "    device: tpu\n"), "f.yaml:5: runtimes[0].device: invalid value 'tpu'"),
])
def test_config_errors_name_file_line_and_key(edit: tuple[str, str], expected: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(CPU.format(tag="v0.32.0").replace(*edit), "f.yaml")
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_cpu_spec_case_keeps_the_gpu_model_on_its_gpu() -> None:
    models = {m.name: m for m in resolve_models(load_spec(SPEC))}
    assert models["minilm-cpu"].gpus == 0 and models["minilm-cpu"].gpu_resource is None
    assert models["msmarco-reranker"].gpu_resource == "nvidia.com/mig-1g.10gb"
    sr = next(o for o in render(load_spec(SPEC)).manifests if o["metadata"]["name"] == "vllm-cpu-embedding-runtime")
    assert sr["spec"]["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "cpu-inference",
                                          "effect": "NoSchedule"}]


def _findings(text: str) -> list[Finding]:
    spec = parse_spec(text)
    return list(lint(spec, render(spec)).findings)


def test_lint_cpu_models_need_cpu_and_memory_limits() -> None:
    text = CPU.format(tag="v0.32.0").replace(
        'resources: {requests: {cpu: "2", memory: 4Gi}, limits: {cpu: "2", memory: 4Gi}}', "resources: {}")
    found = _findings(text)
    assert any(f.severity == "warning" and "OMP_NUM_THREADS (from limits.cpu) becomes the node's CPU count"
               in f.message for f in found)
    assert any(f.severity == "warning" and "share of the whole node's RAM" in f.message for f in found)
    assert not [f for f in _findings(CPU.format(tag="v0.32.0")) if f.severity != "note"]
    # A hardware profile supplies the limits on OpenShift AI 3.x (its webhook fills in unset resources);
    # OMP_NUM_THREADS follows them through the Downward API.
    profiled = _findings(text + "    hardware_profile: cpu-small\n")
    assert not any("limit" in f.message and f.severity == "warning" for f in profiled)


def test_cpu_runtime_combines_with_storage_uri_autoscaling_and_stopped() -> None:
    text = CPU.format(tag="v0.32.0") + (
        "    storage_uri: pvc://model-store/minilm\n    max_replicas: 3\n"
        "    autoscaling: {metric: queue, target: 8}\n    stopped: true\n")
    objs = _objects(text)
    isvc, composed = objs["InferenceService"], objs["composed"]
    ann = isvc["metadata"]["annotations"]
    assert ann[STOP_ANNOTATION] == "true" and ann[AUTOSCALER_CLASS] == "keda"
    model = isvc["spec"]["predictor"]["model"]
    assert model["storageUri"] == "pvc://model-store/minilm" and model["command"] == ["vllm", "serve", "/mnt/models"]
    assert composed.container["image"] == "vllm/vllm-openai-cpu:v0.32.0-x86_64"
    assert "nvidia.com" not in repr(objs)
    assert not [f for f in _findings(text) if f.severity == "error"]


BF16 = CPU.format(tag="v0.32.0").replace("    device: cpu\n", "    device: cpu\n    dtype: bfloat16\n")
BF16_TERMS = [{"matchExpressions": [{"key": f"feature.node.kubernetes.io/cpu-cpuid.{flag}", "operator": "In",
                                     "values": ["true"]}]} for flag in ("AMXBF16", "AVX512BF16")]


def _affinity(text: str) -> Any:
    return _objects(text)["InferenceService"]["spec"]["predictor"].get("affinity")


def test_bfloat16_on_cpu_schedules_only_on_nodes_nfd_labels_with_bf16() -> None:
    # Either label will do (nodeSelectorTerms are ORed); lint says what the pods need.
    assert _affinity(BF16) == {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": BF16_TERMS}}}
    assert any(f.severity == "note" and "cpu-cpuid.AMXBF16=true or" in f.message and "Pending" in f.message
               for f in _findings(BF16))
    # The model's own dtype counts too, not only the runtime's.
    own = CPU.format(tag="v0.32.0") + "    dtype: bfloat16\n"
    assert _affinity(own) is not None


@pytest.mark.parametrize("change", [
    "",  # float32, the CPU default: runs on any node
    "    dtype: bfloat16\n    node_selector: {feature.node.kubernetes.io/cpu-cpuid.AMXBF16: 'true'}\n",
])
def test_no_bf16_affinity_for_float32_or_a_selector_that_pins_bf16_nodes(change: str) -> None:
    text = CPU.format(tag="v0.32.0").replace("    device: cpu\n", "    device: cpu\n" + change)
    assert _affinity(text) is None
    assert not any("bfloat16 on CPU" in f.message for f in _findings(text))


def test_bfloat16_on_gpu_gets_no_cpu_affinity() -> None:
    text = BF16.replace("    device: cpu\n", "")
    assert _affinity(text) is None


def test_a_hardware_profile_owns_bf16_placement_and_lint_says_so() -> None:
    text = BF16 + "    hardware_profile: cpu-bf16\n"
    assert _affinity(text) is None
    assert any(f.severity == "note" and "hardware profile" in f.message for f in _findings(text))


EXCLUSIVE = CPU.format(tag="v0.32.0").replace("    device: cpu\n", "    device: cpu\n    exclusive_cpus: true\n")


def test_exclusive_cpus_lets_vllm_pin_a_thread_to_each_cpu_of_the_pod() -> None:
    objs = _objects(EXCLUSIVE)
    (c,) = objs["ServingRuntime"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "auto" and env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    assert "OMP_NUM_THREADS" not in env  # vLLM sets it for its worker from the CPUs it binds
    assert objs["composed"].env["VLLM_CPU_OMP_THREADS_BIND"] == "auto"
    assert not [f for f in _findings(EXCLUSIVE) if f.severity == "error"]  # requests == limits, 2 CPUs


@pytest.mark.parametrize(("resources", "why"), [
    ('{requests: {cpu: "1", memory: 4Gi}, limits: {cpu: "2", memory: 4Gi}}', "cpu request 1 differs from its limit 2"),
    ('{requests: {cpu: "2", memory: 2Gi}, limits: {cpu: "2", memory: 4Gi}}', "memory request 2Gi differs"),
    ('{limits: {cpu: 1500m, memory: 4Gi}}', "CPU limit 1500m is not a whole number of CPUs"),
    ('{limits: {memory: 4Gi}}', "no cpu limit"),
])
def test_exclusive_cpus_needs_a_guaranteed_pod_with_whole_cpus(resources: str, why: str) -> None:
    text = EXCLUSIVE.replace('{requests: {cpu: "2", memory: 4Gi}, limits: {cpu: "2", memory: 4Gi}}', resources)
    errors = [f.message for f in _findings(text) if f.severity == "error"]
    assert any("has exclusive_cpus but " + why in e for e in errors), errors


@pytest.mark.parametrize("resources", ['{limits: {cpu: "4", memory: 8Gi}}', '{limits: {cpu: 2000m, memory: 8Gi}}',
                                       '{requests: {cpu: 2000m, memory: 8192Mi}, limits: {cpu: "2", memory: 8Gi}}'])
def test_limits_alone_make_a_guaranteed_pod(resources: str) -> None:
    text = EXCLUSIVE.replace('{requests: {cpu: "2", memory: 4Gi}, limits: {cpu: "2", memory: 4Gi}}', resources)
    assert not [f for f in _findings(text) if f.severity == "error"]


def test_exclusive_cpus_is_for_cpu_runtimes() -> None:
    with pytest.raises(SpecError, match="sets exclusive_cpus, which is for device: cpu runtimes"):
        parse_spec(EXCLUSIVE.replace("    device: cpu\n", ""))


def test_lint_warns_of_a_cross_encoder_in_bfloat16_on_cpu() -> None:
    reranker = BF16.replace("task: embed", "task: score").replace(
        "sentence-transformers/all-MiniLM-L6-v2", "cross-encoder/ms-marco-MiniLM-L12-v2")
    assert any(f.severity == "warning" and "cross-encoder in bfloat16" in f.message for f in _findings(reranker))


def test_local_target_runs_a_cpu_runtime_as_rendered_apart_from_port_and_paths(tmp_path: Path) -> None:
    spec = load_spec(SPEC, {"local.cache_dir": str(tmp_path / "cache"), "local.state_dir": str(tmp_path / "s")})
    composed = render(spec).compose("minilm-cpu")
    plan = plan_launch(composed, model_id="sentence-transformers/all-MiniLM-L6-v2", local=spec.local,
                       cache_pvc=spec.cache.pvc, python="/venv/bin/python", port=40001,
                       cache_dir=tmp_path / "cache", state_dir=tmp_path / "s", model_cached=lambda _: True,
                       host=HostInfo(cpu_flags=frozenset({"amx_bf16"}), cpu_count=2, ram_gib=24.0),
                       task="embed", device="cpu")
    # The composed args, then only --port/--host: no local dtype, memory share, eager flag or reserved CPUs.
    assert list(plan.argv[3:]) == [*composed.argv[1:], "--port=40001", "--host=127.0.0.1"]
    assert "VLLM_CPU_NUM_OF_RESERVED_CPU" not in plan.env
    assert plan.env["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
    assert plan.env["OMP_NUM_THREADS"] == "2"  # the kubelet's Downward API value: limits.cpu of the container
    assert set(plan.env) - set(composed.env) == {"OMP_NUM_THREADS", "HF_HUB_OFFLINE"}
    assert all(plan.env[k] == v for k, v in composed.env.items() if not v.startswith("/"))  # only paths moved


@pytest.mark.parametrize(("resources", "ref", "value"), [
    ({"limits": {"cpu": "2"}}, {"resource": "limits.cpu", "divisor": "1"}, "2"),
    ({"limits": {"cpu": "1500m"}}, {"resource": "limits.cpu"}, "2"),          # rounded up
    ({}, {"resource": "limits.cpu"}, "8"),                                     # unset: the node's allocatable
    ({"limits": {"memory": "4Gi"}}, {"resource": "limits.memory", "divisor": "1Mi"}, "4096"),
    ({"limits": {"cpu": "4"}}, {"resource": "requests.cpu"}, "4"),             # a request defaults to the limit
])
def test_downward_api_resource_fields(resources: dict[str, Any], ref: dict[str, str], value: str) -> None:
    container = {"resources": resources}
    assert resource_field(container, ref, node_cpus=8, node_memory_bytes=2**35) == value
