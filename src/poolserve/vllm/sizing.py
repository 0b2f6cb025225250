"""GPU memory estimates for vLLM pooling models, and what they mean for GPU sharing (pure).

The estimate follows how vLLM (0.32) fills a GPU:

- ``--gpu-memory-utilization`` (util) is checked once at startup: ``util x total`` must be free
  (``v1/worker/utils.py request_memory``: "Free memory on device ... is less than desired GPU memory
  utilization").
- Weights: parameters x dtype bytes (``gpu_model_runner.py load_model``: "Model loading took X GiB").
- A profile run pushes ``max_num_batched_tokens`` dummy tokens through the model; its peak activations,
  the weights and the non-torch memory (CUDA context excluded) are what is not KV cache
  (``v1/worker/gpu_worker.py determine_available_memory``, ``utils/mem_utils.py memory_profiling``).
- CUDA graphs: pooling models capture PIECEWISE graphs unless ``--enforce-eager`` ("Pooling models do
  not support full cudagraphs", ``config/vllm.py``); since 0.21 their memory is profiled too.
- KV cache: only decoder models have one. Encoder-only attention has no KV-cache spec
  (``model_executor/layers/attention/attention.py get_kv_cache_spec``), and with no KV-cache layer the
  engine skips the profile run and allocates nothing (``v1/engine/core.py _initialize_kv_caches``:
  "Attention free models don't need memory for kv cache"). So for BERT-style embedders and
  cross-encoders util neither reserves nor caps memory: the process uses what it needs. A decoder
  (Qwen3-Embedding) gets ``util x total - (weights + activations + non-torch + graphs)`` of KV cache.

Figures are estimates, labelled as such wherever shown. The constants' sources are in
docs/explanation/lessons/gpu-sizing.md#estimate-sources.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from poolserve.config.catalog import Shape
from poolserve.config.resolve import Model

GIB = 2**30
GB = 10**9
CUDA_CONTEXT_GIB = 0.27
"""A CUDA context with lazy module loading (the default since CUDA 12.2): 287,047,680 bytes in PyTorch's
own measurement (pytorch/pytorch#86509; 666,632,192 bytes with eager loading)."""
NON_TORCH_GIB = 0.2
"""cuBLAS workspaces and other memory vLLM's profiler counts as non-torch on one GPU: 0.16-0.20 GiB in
published vLLM logs (vllm#12126, vllm#14447, kubernetes-sigs/gateway-api-inference-extension#550)."""
GRAPHS_GIB = 0.25
"""An allowance for PIECEWISE CUDA graphs of a model below 1B parameters (not modelled: vLLM >= 0.21
measures it at startup and logs "Estimated CUDA graph memory"); 0 with ``--enforce-eager``."""
GRAPHS_GIB_LARGE = 1.0
ACTIVATION_FACTOR = 1.3
"""The per-token activation formula times this matches vLLM's measured peak for Llama-3-8B at 8192
tokens (1.26 GiB, vllm#10511) within a few percent."""
FRAGMENTATION = 0.10
"""Headroom for PyTorch's caching allocator (blocks rounded up, fragmentation)."""
FIT_FRACTION = 0.9
"""A model fits a device when its estimate is at most this share of the device's memory."""
DTYPE_BYTES = {"float16": 2, "half": 2, "bfloat16": 2, "float32": 4, "float": 4}

# vLLM's default max_num_batched_tokens for the API server by device memory (engine/arg_utils.py
# get_batch_defaults, 0.33): 2048 below 70 GiB (and on A100), 8192 from 70 GiB, 16384 from 160 GiB.
BATCH_DEFAULTS = ((160.0, 16384, 1024), (70.0, 8192, 1024), (0.0, 2048, 256))

# MIG profiles per GPU (NVIDIA MIG User Guide, "Supported MIG Profiles"). The memory in a profile name is
# nominal; nvidia-smi shows about that many GB, so it is read as decimal GB (slightly under the GiB seen).
MIG_PROFILES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("A30 24GB", ("1g.6gb", "2g.12gb", "4g.24gb")),
    ("A100 40GB", ("1g.5gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb")),
    ("A100/H100 80GB", ("1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb")),
    ("H100 NVL 94GB", ("1g.12gb", "1g.24gb", "2g.24gb", "3g.47gb", "4g.47gb", "7g.94gb")),
    ("H200 141GB", ("1g.18gb", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb")),
)
_MIG_GB = re.compile(r"^\d+g\.(\d+)gb")


def mig_memory_gib(profile: str) -> float | None:
    """The memory of a MIG slice from its profile name (``1g.10gb`` -> 9.31 GiB), or None."""
    m = _MIG_GB.match(profile)
    return int(m.group(1)) * GB / GIB if m else None


@dataclass(frozen=True)
class MemoryEstimate:
    """One model's GPU memory, by part (GiB, estimates)."""

    weights_gib: float
    activations_gib: float
    runtime_gib: float
    """CUDA context plus vLLM's non-torch memory."""
    graphs_gib: float
    kv_per_token_bytes: int
    """0 for encoder-only models (no KV cache)."""
    kv_min_gib: float
    """KV cache for one sequence of ``max_model_len`` tokens: the least vLLM starts with."""
    batched_tokens: int
    dtype: str

    @property
    def footprint_gib(self) -> float:
        """Everything but the KV cache, plus allocator headroom."""
        base = self.weights_gib + self.activations_gib + self.runtime_gib + self.graphs_gib
        return base * (1 + FRAGMENTATION)

    @property
    def need_gib(self) -> float:
        """The least memory the model starts in: the footprint plus the smallest KV cache vLLM accepts."""
        return self.footprint_gib + self.kv_min_gib

    @property
    def has_kv_cache(self) -> bool:
        """Whether vLLM gives this model a KV cache (decoders only)."""
        return self.kv_per_token_bytes > 0


@dataclass(frozen=True)
class ModelPlan:
    """What ``poolserve plan`` says about one model."""

    name: str
    model_id: str
    params: int | None
    estimate: MemoryEstimate | None
    """None when the model's size is unknown (not in the catalog)."""
    device: str
    """What the config gives each pod: ``whole GPU``, ``MIG 1g.10gb``, ``time-sliced GPU``, ``CPU``."""
    gpu_memory_gib: float | None
    """The memory of that device, when known."""
    utilization: float | None
    """The ``--gpu-memory-utilization`` the model runs with."""
    recommended_utilization: float | None
    fits: bool | None
    """Whether the estimate fits the configured device (None when its memory is unknown)."""
    smallest_mig: tuple[tuple[str, str], ...] = ()
    """Per GPU family, the smallest MIG profile the estimate fits."""
    copies_per_gpu: tuple[tuple[float, int], ...] = ()
    """How many such pods fit one time-sliced GPU of 24/48/80 GiB."""
    statements: tuple[str, ...] = field(default_factory=tuple)
    """Plain-language findings, most important first."""


def _dtype(model: Model) -> str:
    dtype = model.dtype or model.runtime.dtype or "auto"
    # auto: vLLM runs pooling models in float16 when the checkpoint is float32 (config/model.py
    # _resolve_auto_dtype); bfloat16 checkpoints stay bfloat16. Both are 2 bytes.
    return "float16" if dtype == "auto" else dtype


def _flag_value(args: Sequence[str], flag: str) -> str | None:
    value: str | None = None
    for i, a in enumerate(args):
        if a.startswith(flag + "="):
            value = a.split("=", 1)[1]
        elif a == flag and i + 1 < len(args):
            value = args[i + 1]
    return value


def batched_tokens(model: Model, shape: Shape, device_gib: float | None) -> int:
    """The tokens vLLM's profile run pushes through the model (``max_num_batched_tokens``)."""
    args = [*model.runtime.extra_args, *model.extra_args]
    explicit = _flag_value(args, "--max-num-batched-tokens")
    if explicit is not None and explicit.isdigit():
        return int(explicit)
    memory = device_gib or 0.0
    default, max_seqs = next((t, s) for floor, t, s in BATCH_DEFAULTS if memory >= floor)
    if shape.causal:  # chunked prefill is on for LAST-pooling decoders: the default budget
        return default
    # Encoder-only models run without chunked prefill: a batch holds at least one whole input.
    max_len = model.max_model_len or 512
    return min(max(max_len, default), max_seqs * max_len)


def estimate(model: Model, shape: Shape, device_gib: float | None = None) -> MemoryEstimate:
    """The GPU memory one replica of ``model`` needs (an estimate, see the module docstring)."""
    dtype = _dtype(model)
    nbytes = DTYPE_BYTES.get(dtype, 2)
    tokens = batched_tokens(model, shape, device_gib)
    ffn = shape.intermediate * (3 if shape.gated_mlp else 2)  # the FFN's input projection(s) and activation
    per_token = 4 * shape.hidden + 2 * shape.kv_heads * shape.head_dim + ffn
    activations = tokens * nbytes * per_token * ACTIVATION_FACTOR / GIB
    eager = model.runtime.enforce_eager or "--enforce-eager" in [*model.runtime.extra_args, *model.extra_args]
    graphs = 0.0 if eager else (GRAPHS_GIB if shape.params < 10**9 else GRAPHS_GIB_LARGE)
    kv_token = 2 * shape.layers * shape.kv_heads * shape.head_dim * nbytes if shape.causal else 0
    kv_min = kv_token * (model.max_model_len or 0) / GIB
    return MemoryEstimate(
        weights_gib=shape.params * nbytes / GIB,
        activations_gib=activations,
        runtime_gib=CUDA_CONTEXT_GIB + NON_TORCH_GIB,
        graphs_gib=graphs,
        kv_per_token_bytes=kv_token,
        kv_min_gib=kv_min,
        batched_tokens=tokens,
        dtype=dtype,
    )


def _utilization(model: Model) -> float | None:
    return model.gpu_memory_utilization if model.gpu_memory_utilization is not None else (
        model.runtime.gpu_memory_utilization)


def _round_up(x: float, step: float = 0.01) -> float:
    return round(math.ceil(x / step - 1e-9) * step, 2)


def _gib(x: float) -> str:
    return f"{x:.2f} GiB" if x < 10 else f"{x:.1f} GiB"


def plan_model(model: Model) -> ModelPlan:
    """Size one model and say what its GPU settings mean (pure)."""
    shape = model.catalog_entry.shape if model.catalog_entry else None
    util = _utilization(model)
    if model.runtime.device == "cpu":
        return ModelPlan(model.name, model.model_id, shape.params if shape else None, None, "CPU", None, util, None,
                         None, statements=("runs on CPU (device: cpu): no GPU memory; --gpu-memory-utilization is "
                                           "a fraction of the pod's memory limit there",))
    if model.mig_profile:
        device, memory = f"MIG {model.mig_profile}", mig_memory_gib(model.mig_profile)
    elif model.gpus:
        device, memory = ("time-sliced GPU" if model.gpu_shared else "whole GPU"), model.gpu_memory_gib
    else:
        device, memory = "no GPU requested", None
    if shape is None:
        return ModelPlan(model.name, model.model_id, None, None, device, memory, util, None, None, statements=(
            f"{model.model_id} is not in the catalog: its size is unknown, so there is no estimate",))
    est = estimate(model, shape, memory)
    statements: list[str] = []
    fits = None if memory is None else est.need_gib <= FIT_FRACTION * memory
    if not est.has_kv_cache and util is not None:
        statements.append(f"--gpu-memory-utilization={util:g} does not cap or reserve this model's memory: vLLM only "
                          f"checks at startup that {util:.0%} of the device is free, then uses what it needs")
    if device == "whole GPU" and util is not None and util < FIT_FRACTION:
        statements.insert(0, f"--gpu-memory-utilization={util:g} on a whole, unshared GPU shares nothing: the device "
                             "plugin gives this pod the entire GPU and no other pod can be scheduled on it, so "
                             f"the other {1 - util:.0%} stays idle. To share a GPU, use a MIG slice (mig_profile) or "
                             "time-slicing (gpu_shared: true); small models may be cheaper on CPU (device: cpu)")
    if est.has_kv_cache and model.max_model_len:
        statements.append(f"KV cache: {est.kv_per_token_bytes / 1024:.0f} KiB per token; one "
                          f"{model.max_model_len}-token sequence needs {_gib(est.kv_min_gib)} (lower max_model_len "
                          "to need less)")
    recommended = _recommend(est, device, memory)
    if recommended is not None and util is not None and est.has_kv_cache and memory is not None \
            and util * memory < est.need_gib:
        statements.insert(0, f"--gpu-memory-utilization={util:g} gives {_gib(util * memory)}, less than the "
                             f"{_gib(est.need_gib)} this model needs: vLLM stops with 'No available memory for the "
                             "cache blocks'")
    if memory is not None and not fits:
        statements.insert(0, f"does not fit: {_gib(est.need_gib)} needed, {device} has {_gib(memory)} "
                             f"(at most {FIT_FRACTION:.0%} of it is planned)")
    smallest = []
    for family, profiles in MIG_PROFILES:
        ok = next((p for p in profiles if est.need_gib <= FIT_FRACTION * (mig_memory_gib(p) or 0)), None)
        if ok:
            smallest.append((family, ok))
    copies = tuple((g, int(FIT_FRACTION * g // est.need_gib)) for g in (24.0, 48.0, 80.0))
    return ModelPlan(model.name, model.model_id, shape.params, est, device, memory, util, recommended, fits,
                     tuple(smallest), copies, tuple(statements))


def _recommend(est: MemoryEstimate, device: str, memory: float | None) -> float | None:
    """The --gpu-memory-utilization to run with on the configured device, or None when unknown."""
    if memory is None:
        return None
    if device == "time-sliced GPU":
        # Pods share the memory: each asks for what it needs (a decoder: room for two full sequences), so
        # the startup check fails fast when the GPU lacks room instead of OOMing a neighbour later.
        need = est.footprint_gib + 2 * est.kv_min_gib
        return min(FIT_FRACTION, _round_up(need / memory))
    # A device of its own (whole GPU or MIG slice): nothing to share. Decoders turn the rest into KV
    # cache; encoder-only models use what they need whatever the value.
    return FIT_FRACTION


def plan(models: Sequence[Model]) -> list[ModelPlan]:
    """:func:`plan_model` for each model, in order."""
    return [plan_model(m) for m in models]
