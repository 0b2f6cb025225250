"""What ``poolserve test`` expects of a served pooling model (pure), from the config and the catalog.

:func:`expectations_for` reads a configured model; :func:`expectations_for_id` a model that is not in
the config (``test --url`` without NAME), from the catalog alone. The checks in
:mod:`poolserve.check.functional` and :mod:`poolserve.check.robustness` compare what the server
answers with the :class:`Expectations` these return.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from poolserve.config.catalog import lookup
from poolserve.config.resolve import Model
from poolserve.config.schema import Task
from poolserve.config.versions import Version


@dataclass(frozen=True)
class Expectations:
    """What a served model should look like, from the config and the catalog."""

    name: str
    task: Task
    vllm_version: Version
    served_model: str | None = None
    dimensions: int | None = None
    normalized: bool | None = None
    """True: every vector has L2 norm 1; None: unknown (norm is only reported)."""
    max_model_len: int | None = None
    """Fallback when ``/v1/models`` does not report it."""
    score_range: tuple[float, float] | None = None
    """(0, 1) for rerankers whose scores go through a sigmoid; None for raw logits."""
    chunked_processing: bool = False
    """``enable_chunked_processing``: long inputs are split and averaged, not rejected."""



def _normalizes(model: Model) -> bool | None:
    pc = model.pooler_config or {}
    for key in ("use_activation", "normalize"):
        value = pc.get(key)
        if isinstance(value, bool):
            return value
    entry = model.catalog_entry
    if entry and entry.pooling:
        return "normalize" in entry.pooling.lower() or None
    return None


def expectations_for(model: Model, *, served_model: str | None = None) -> Expectations:
    """What the checks expect of ``model`` (pure): dimensions, normalization and score range."""
    entry = model.catalog_entry
    pc: Mapping[str, Any] = model.pooler_config or {}
    score_range = None
    if model.task == "score" and entry and entry.score_output == "sigmoid" and pc.get("use_activation") is not False:
        score_range = (0.0, 1.0)
    return Expectations(
        name=model.name,
        task=model.task,
        vllm_version=model.vllm_version,
        served_model=served_model,
        dimensions=entry.dimensions if entry and model.task == "embed" and not pc.get("dimensions") else None,
        normalized=_normalizes(model) if model.task == "embed" else None,
        max_model_len=model.max_model_len,
        score_range=score_range,
        chunked_processing=bool(pc.get("enable_chunked_processing")),
    )


def expectations_for_id(name: str, task: Task, model_id: str | None, vllm_version: Version, *,
                        served_model: str | None = None) -> Expectations:
    """What the checks expect of a model that is not in the config (``test --url`` without NAME).

    Only what the catalog knows of ``model_id`` (dimensions, normalization, score range, max length);
    the vLLM version decides which score/rerank routes are checked.
    """
    entry = lookup(model_id) if model_id else None
    normalized = ("normalize" in entry.pooling.lower() or None) if entry and entry.pooling and task == "embed" \
        else None
    return Expectations(
        name=name,
        task=task,
        vllm_version=vllm_version,
        served_model=served_model,
        dimensions=entry.dimensions if entry and task == "embed" else None,
        normalized=normalized,
        max_model_len=entry.max_model_len if entry else None,
        score_range=(0.0, 1.0) if entry and task == "score" and entry.score_output == "sigmoid" else None,
    )
