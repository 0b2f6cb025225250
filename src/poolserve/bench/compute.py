"""How much of the CPU's compute a benchmark setting used: FLOPs per text x texts/s against the ISA's peak (pure).

**FLOPs per text** (:func:`flops_per_sequence`) count the matrix products of a BERT-style encoder, two
FLOPs per multiply-add, per layer and token: the Q, K, V and output projections (``4 d^2``), the
feed-forward block (``2 d d_ff``) and attention itself, scores ``Q K^T`` and the weighted sum of ``V``
(``2 L d`` for a sequence of ``L`` tokens). That is the forward cost ``2N + 2 n_layer n_ctx d`` of
Kaplan et al., *Scaling Laws for Neural Language Models* (2020), table 1, with ``N`` the non-embedding
parameters. Embedding lookups, layer norms, softmax, GELU, pooling and a classifier head are left out
(under 1 % for MiniLM). all-MiniLM-L6-v2 (6 layers, d 384, d_ff 1536) costs 2.87 GFLOP per 128-token text.
A rerank "text" is one query-document pair, as many tokens as the tokenizer counts for the pair.

**Peak** (:func:`peak_flops`): cores x clock x FLOPs per cycle per core of the widest matrix path the CPU
flags allow for the dtype. Per-cycle figures, dense FMA throughput per core:

- AVX2: two 256-bit FMA units, ``2 x 8 x 2 = 32`` fp32 FLOP/cycle (Intel 64 and IA-32 Architectures
  Optimization Reference Manual, "Haswell microarchitecture"; AMD Software Optimization Guide for
  family 17h/19h).
- AVX-512 on Intel server cores: two 512-bit FMA units, 64 fp32 FLOP/cycle (Intel Optimization Manual,
  "Skylake Server microarchitecture": ports 0+1 fused and port 5). Some Xeon Silver/Bronze parts have one
  unit (32): the figure is then an upper bound, so a share is a lower bound.
- AVX512-BF16 (``VDPBF16PS``: a 512-bit instruction does 32 bf16 products summed pairwise into 16 fp32
  lanes, 64 FLOP), two per cycle: 128 FLOP/cycle. AVX512-FP16 (``VFMADDPH``, 32 lanes): 128.
- AMX (``TDPBF16PS``/``TDPFP16PS``: 16 x 16 x 32 multiply-adds per tile instruction, one every 16
  cycles): 1024 bf16/fp16 FLOP/cycle (Intel, "Intel Advanced Matrix Extensions (Intel AMX)" overview:
  1024 BF16 operations per cycle per core; Optimization Manual, "Intel AMX").
- AMD Zen 4 (family 19h with AVX-512) runs 512-bit instructions on 256-bit datapaths, two FMA pipes:
  half of the Intel figures (32 fp32, 64 bf16); Zen 5 (family 1Ah) has full 512-bit datapaths
  (AMD Software Optimization Guide for family 19h and 1Ah processors).

Without a native path for the dtype (bf16 or fp16 on a CPU without those flags), the math runs in fp32
after conversion and the fp32 peak applies. The clock is what ``/proc/cpuinfo`` says (nominal in a VM;
turbo and AVX-512 down-clocking both move it), so a share is an estimate: compare shares within one report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SOURCE = ("FLOPs: 2 per multiply-add over the QKV/output projections, the FFN and attention (Kaplan et al. 2020, "
          "table 1); peak: cores x clock x FLOP/cycle of the ISA (Intel Optimization Reference Manual, AMD "
          "Software Optimization Guides 19h/1Ah), see poolserve/bench/compute.py")


@dataclass(frozen=True)
class EncoderShape:
    """What a BERT-style encoder's FLOPs depend on."""

    layers: int
    hidden: int
    intermediate: int


def encoder_shape(config: Mapping[str, Any]) -> EncoderShape:
    """Layers, hidden size and FFN width from a Hugging Face ``config.json`` (BERT/RoBERTa/XLM-R keys).

    Raises:
        ValueError: a key is missing or not a positive integer.
    """
    values: dict[str, int] = {}
    for key in ("num_hidden_layers", "hidden_size", "intermediate_size"):
        v = config.get(key)
        if not isinstance(v, int) or v <= 0:
            raise ValueError(f"config.json has no positive integer {key!r} (got {v!r}): not a BERT-style encoder")
        values[key] = v
    return EncoderShape(values["num_hidden_layers"], values["hidden_size"], values["intermediate_size"])


def flops_per_sequence(shape: EncoderShape, tokens: float) -> float:
    """Forward FLOPs of one sequence of ``tokens`` tokens (see the module docstring)."""
    d, dff = shape.hidden, shape.intermediate
    return shape.layers * tokens * 2 * (4 * d * d + 2 * d * dff + 2 * tokens * d)


@dataclass(frozen=True)
class Peak:
    """The CPU's peak for one dtype."""

    gflops: float
    flops_per_cycle: int
    """Per core."""
    isa: str
    """The instruction path the figure is for (``AMX-BF16``, ``AVX512-BF16``, ``AVX-512``, ``AVX2``)."""
    clock_ghz: float
    cores: int
    source: str = SOURCE


_HALF = {"bfloat16": "bf16", "bf16": "bf16", "float16": "fp16", "fp16": "fp16", "half": "fp16"}


def peak_flops(flags: frozenset[str], *, vendor: str | None, family: int | None, clock_ghz: float, cores: int,
               dtype: str) -> Peak:
    """The peak FLOP/s of ``cores`` cores at ``clock_ghz`` for ``dtype``, from the CPU flags.

    Args:
        flags: ``/proc/cpuinfo`` flags (``avx2``, ``avx512f``, ``avx512_bf16``, ``amx_bf16`` ...).
        vendor: ``GenuineIntel`` or ``AuthenticAMD`` (``vendor_id``).
        family: the CPU family number (AMD: 0x19 Zen 3/4, 0x1A Zen 5).
        clock_ghz: the clock to count with.
        cores: the cores the server computes on.
        dtype: the dtype the model ran in (``float32``, ``bfloat16``, ``float16``).
    """
    half = _HALF.get(dtype)
    zen4 = vendor == "AuthenticAMD" and family is not None and family < 0x1A
    narrow = " (Zen 4: 256-bit datapath)" if zen4 else ""
    per_cycle, isa = 16, "SSE/scalar"
    if "avx2" in flags:
        per_cycle, isa = 32, "AVX2"
    if "avx512f" in flags:
        per_cycle, isa = (32, "AVX-512" + narrow) if zen4 else (64, "AVX-512")
    if half == "bf16" and "avx512_bf16" in flags:
        per_cycle, isa = (64, "AVX512-BF16" + narrow) if zen4 else (128, "AVX512-BF16")
    if half == "fp16" and "avx512_fp16" in flags:
        per_cycle, isa = 128, "AVX512-FP16"
    if (half == "bf16" and "amx_bf16" in flags) or (half == "fp16" and "amx_fp16" in flags):
        per_cycle, isa = 1024, f"AMX-{half.upper()}"
    return Peak(gflops=cores * clock_ghz * per_cycle, flops_per_cycle=per_cycle, isa=isa, clock_ghz=clock_ghz,
                cores=cores)


def ceiling_share(flops_per_text: float, texts_per_s: float, peak: Peak) -> float | None:
    """The share of ``peak`` that ``texts_per_s`` texts of ``flops_per_text`` FLOPs each use (None: no peak)."""
    if peak.gflops <= 0:
        return None
    return flops_per_text * texts_per_s / (peak.gflops * 1e9)
