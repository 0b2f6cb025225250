"""What a ``device: cpu`` runtime's pods get beyond the container: vLLM's CPU threads, and bf16 node placement.

Pure. Both rules are rendered into the manifests (:mod:`poolserve.kserve.objects`) and, from
``scripts/gen_chart.py``'s generated constants, into the Helm chart's templates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from poolserve.config.resolve import Model
from poolserve.kserve.compose import parse_quantity
from poolserve.kserve.names import CONTAINER_NAME

# Node Feature Discovery labels a node ``feature.node.kubernetes.io/cpu-cpuid.<FLAG>=true`` for each CPUID flag
# its CPU has (kubernetes-sigs/node-feature-discovery, docs/usage/features.md, "CPU"): these two are the x86
# instruction sets that make bfloat16 fast (AMX's tile unit, and AVX-512's BF16 dot products).
NFD_BF16_LABELS = (
    "feature.node.kubernetes.io/cpu-cpuid.AMXBF16",
    "feature.node.kubernetes.io/cpu-cpuid.AVX512BF16",
)


def cpu_env(*, exclusive_cpus: bool = False) -> list[dict[str, Any]]:
    """Threads for vLLM's CPU backend: one per CPU of the pod, pinned only where the pod owns its CPUs.

    vLLM's default (``VLLM_CPU_OMP_THREADS_BIND=auto``) starts one OpenMP thread per physical core the
    process may run on and pins them there (``utils/ompmultiprocessing.py``). A pod without the static
    CPU manager policy may run on every core of the node while its CFS quota allows only its CPU limit,
    so that would be dozens of pinned threads sharing a few CPUs' time. ``nobind`` leaves the threads
    to the scheduler, and ``OMP_NUM_THREADS`` comes from the container's own ``limits.cpu`` (Downward
    API, rounded up to whole CPUs), so the thread count follows the pod's size.

    ``KMP_BLOCKTIME=5`` and ``KMP_TPAUSE=0`` are what vLLM gives its worker when it binds threads itself and
    skips under ``nobind``: the image preloads Intel OpenMP (``docker/Dockerfile.cpu``), whose threads
    otherwise spin 200 ms after each parallel region on CPUs the other threads and processes need
    (``benchmarks/results/cpu-sweep``: 0.90-1.01x the best binding measured with them, 0.51-0.98x without).
    Without Intel OpenMP (a local run without the image's ``LD_PRELOAD``) nothing reads them.

    With ``exclusive_cpus`` the pod's CPU set is its own (the static policy gives a Guaranteed pod whole
    CPUs), so vLLM's ``auto`` binding is right: a thread pinned to each of them, with no CPU held back for
    the front end (``VLLM_CPU_NUM_OF_RESERVED_CPU=0``; vLLM's default keeps one, half of a 2-CPU pod), and
    ``OMP_NUM_THREADS`` left to vLLM, which sets it for its worker alone.
    """
    if exclusive_cpus:
        return [
            {"name": "VLLM_CPU_OMP_THREADS_BIND", "value": "auto"},
            {"name": "VLLM_CPU_NUM_OF_RESERVED_CPU", "value": "0"},
        ]
    return [
        {"name": "VLLM_CPU_OMP_THREADS_BIND", "value": "nobind"},
        {"name": "OMP_NUM_THREADS", "valueFrom": {"resourceFieldRef": {
            "containerName": CONTAINER_NAME, "resource": "limits.cpu", "divisor": "1"}}},
        {"name": "KMP_BLOCKTIME", "value": "5"},
        {"name": "KMP_TPAUSE", "value": "0"},
    ]


def guaranteed_whole_cpus(requests: Mapping[str, Any], limits: Mapping[str, Any]) -> str | None:
    """Why a pod with these resources gets no CPUs of its own under the static policy, or None if it does.

    The kubelet's static CPU manager gives exclusive CPUs only to Guaranteed pods (every request equal to
    its limit) whose CPU request is a whole number (Kubernetes docs, "Control CPU Management Policies on
    the Node").
    """
    for key in ("cpu", "memory"):
        if key not in limits:
            return f"no {key} limit"
        if key in requests and parse_quantity(requests[key]) != parse_quantity(limits[key]):
            return f"{key} request {requests[key]} differs from its limit {limits[key]}"
    if not parse_quantity(limits["cpu"]).is_integer():
        return f"CPU limit {limits['cpu']} is not a whole number of CPUs"
    return None


def bf16_affinity() -> dict[str, Any]:
    """A required node affinity: nodes that NFD labels with AMX-BF16 or AVX512-BF16 (either term may match)."""
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": label, "operator": "In", "values": ["true"]}]} for label in NFD_BF16_LABELS]}}}


def pins_bf16_nodes(model: Model) -> bool:
    """Whether the model's or its runtime's node selector already names one of the bf16 labels."""
    return any(key in NFD_BF16_LABELS for key, _ in (*model.runtime.node_selector, *model.node_selector))


def node_affinity(model: Model) -> dict[str, Any] | None:
    """The predictor's ``affinity``: bfloat16 on a CPU runtime schedules only on nodes whose CPU has bf16.

    Without AVX512-BF16 or AMX-BF16 the CPU has no bfloat16 arithmetic to gain from (with it, bf16 measured
    1.6-3.2x float32 here); float32, the ``device: cpu`` default, runs anywhere. Not rendered
    when a node selector already pins one of the labels, nor under a hardware profile (its webhook owns
    the pod's scheduling; ``lint`` notes it).
    """
    if model.runtime.device != "cpu" or (model.dtype or model.runtime.dtype) != "bfloat16":
        return None
    if model.hardware_profile is not None or pins_bf16_nodes(model):
        return None
    return bf16_affinity()
