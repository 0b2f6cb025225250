"""``plan``: GPU memory estimates per model and what its GPU settings mean (offline)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from poolserve.actions.common import Source

if TYPE_CHECKING:
    from poolserve.vllm.sizing import ModelPlan


def plan(source: Source, names: tuple[str, ...] = ()) -> list[ModelPlan]:
    """:func:`poolserve.vllm.sizing.plan_model` for each named model (all when empty)."""
    from poolserve.vllm.sizing import plan as size

    rendered = source.load(names)
    return size([m for m in rendered.models if not names or m.name in names])
