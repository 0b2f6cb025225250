"""What a vLLM pooling server runs with, as far as it decides the outputs (pure).

A fingerprint (:mod:`poolserve.check.fingerprint`) and a benchmark report (:mod:`poolserve.bench.metrics`)
both record them, so a comparison can name what changed between two deployments: the weights (model and
revision), the vLLM version, the dtype, the pooling and normalisation, ``max_model_len`` and the device.
:func:`from_argv` reads them from the server's command line the way vLLM's argparse does (the last
occurrence of a flag wins); :func:`changes` lists the differences in words.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

OUTPUT_FLAGS = ("--hf-overrides", "--convert", "--quantization", "--tokenizer", "--tokenizer-revision",
                "--trust-remote-code", "--code-revision")
"""Flags besides dtype, pooling, max_model_len and revision that change what the model computes."""
_POOLER_FLAGS = ("--pooler-config", "--override-pooler-config")
_LABELS = {"model": "model", "revision": "weights revision", "vllm_version": "vLLM version", "dtype": "dtype",
           "pooling": "pooling", "normalize": "normalisation", "max_model_len": "max_model_len",
           "device": "device", "flags": "other output flags"}
CPU_DTYPE_FLAGS = ("avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16")
"""CPU flags that decide how vLLM's CPU kernels compute in bfloat16 / float16 (and so their rounding)."""
_NOT_COMPARED = ("target",)
"""Where it ran says nothing about the vectors by itself: the device does."""


@dataclass(frozen=True)
class ServingFacts:
    """One deployment's settings that decide its outputs; None where unknown."""

    model: str | None = None
    """What vLLM loaded: the Hugging Face id, or a path (``/mnt/models``)."""
    revision: str | None = None
    """The weights' revision: the HF cache snapshot (a commit hash on a real download) or ``--revision``."""
    vllm_version: str | None = None
    dtype: str | None = None
    """``--dtype`` as launched; ``auto`` when the command line does not set it."""
    pooling: str | None = None
    """The pooler config's ``pooling_type``, else the catalog's pooling (``MEAN + normalize``)."""
    normalize: bool | None = None
    max_model_len: int | None = None
    device: str | None = None
    """``cpu (AMD EPYC; avx512_bf16)``, ``gpu``, ``gpu MIG 1g.10gb`` ..."""
    target: str | None = None
    """``local``, ``cluster`` or ``url`` (a bare endpoint: only what the server says is known)."""
    flags: tuple[str, ...] = ()
    """Other flags that change outputs (:data:`OUTPUT_FLAGS`), as given."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (the tuple becomes a list)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ServingFacts:
        """The inverse of :meth:`to_dict`; unknown keys (a newer poolserve's) are ignored."""
        if not data:
            return cls()
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["flags"] = tuple(values.get("flags") or ())
        return cls(**values)


def cpu_device(cpu_model: str | None, cpu_flags: Collection[str]) -> str:
    """``cpu (AMD EPYC; avx512_bf16)``: the CPU and the flags that change its low-precision arithmetic."""
    flags = " ".join(f for f in CPU_DTYPE_FLAGS if f in cpu_flags) or "no bf16/fp16 instructions"
    return f"cpu ({cpu_model or 'unknown CPU'}; {flags})"


def flag_value(argv: Sequence[str], flag: str) -> str | None:
    """The value of ``flag`` in ``argv`` (``--flag=v`` or ``--flag v``); the last occurrence wins, like argparse.

    A flag given without a value (``--trust-remote-code``) reads as ``""``.
    """
    value: str | None = None
    for i, a in enumerate(argv):
        if a.startswith(flag + "="):
            value = a.split("=", 1)[1]
        elif a == flag:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            value = nxt if nxt is not None and not nxt.startswith("--") else ""
    return value


def served_path(argv: Sequence[str]) -> str | None:
    """What vLLM loads: ``--model``, else the positional after ``serve``."""
    explicit = flag_value(argv, "--model")
    if explicit:
        return explicit
    for i, a in enumerate(argv[:-1]):
        if a == "serve" and not argv[i + 1].startswith("-"):
            return argv[i + 1]
    return None


def _pooler(argv: Sequence[str]) -> dict[str, Any]:
    for flag in _POOLER_FLAGS:
        raw = flag_value(argv, flag)
        if raw:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                return {}
            return value if isinstance(value, dict) else {}
    return {}


def from_argv(argv: Sequence[str], *, default_pooling: str | None = None, default_normalize: bool | None = None,
              **known: Any) -> ServingFacts:
    """The facts a server started with ``argv`` runs with; ``known`` fills the rest (device, target, version).

    ``default_pooling`` / ``default_normalize`` (the catalog's) apply when the pooler config does not say.
    """
    pooler = _pooler(argv)
    normalize = next((pooler[k] for k in ("normalize", "use_activation") if isinstance(pooler.get(k), bool)),
                     default_normalize)
    max_len = flag_value(argv, "--max-model-len")
    flags = []
    for flag in OUTPUT_FLAGS:
        value = flag_value(argv, flag)
        if value is not None:
            flags.append(f"{flag}={value}" if value else flag)
    facts = ServingFacts(
        model=served_path(argv),
        revision=flag_value(argv, "--revision") or None,
        dtype=flag_value(argv, "--dtype") or "auto",
        # The catalog's pooling may explain itself after a comma ("MEAN (+L2 normalize), from the ... config").
        pooling=str(pooler.get("pooling_type") or (default_pooling or "").split(",")[0]) or None,
        normalize=normalize,
        max_model_len=int(max_len) if max_len and max_len.isdigit() else None,
        flags=tuple(flags),
    )
    return replace(facts, **{k: v for k, v in known.items() if v is not None})


def merge(base: ServingFacts, measured: ServingFacts) -> ServingFacts:
    """``base`` with every field ``measured`` knows (what the server said wins over what the config says)."""
    return replace(base, **{f.name: getattr(measured, f.name) for f in fields(measured)
                            if getattr(measured, f.name) not in (None, ())})


def _show(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return " ".join(value) or "none"
    return str(value)


def changes(old: ServingFacts, new: ServingFacts) -> list[str]:
    """What differs between two deployments' facts, one phrase each (``dtype: float32 -> bfloat16``).

    A field unknown on one side is listed only when the other side knows it (``revision: unknown -> 3f2a``).
    """
    out: list[str] = []
    for f in fields(ServingFacts):
        if f.name in _NOT_COMPARED:
            continue
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a != b and not (a is None and b is None):
            out.append(f"{_LABELS.get(f.name, f.name)}: {_show(a)} -> {_show(b)}")
    return out


def describe(facts: ServingFacts) -> str:
    """One line: ``all-MiniLM-L6-v2 @3f2a9c1 on vLLM 0.32.0, bfloat16, MEAN, normalised, max_model_len 256, cpu``."""
    parts = [facts.model or "model unknown"]
    if facts.revision:
        parts[0] += f" @{facts.revision[:12]}"
    parts.append(f"vLLM {facts.vllm_version or '?'}")
    parts.append(facts.dtype or "dtype unknown")
    if facts.pooling:
        parts.append(facts.pooling)
    if facts.normalize is not None:
        parts.append("normalised" if facts.normalize else "not normalised")
    if facts.max_model_len:
        parts.append(f"max_model_len {facts.max_model_len}")
    parts.append(facts.device or "device unknown")
    parts.extend(facts.flags)
    return ", ".join(parts)
