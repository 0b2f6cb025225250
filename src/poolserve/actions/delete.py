"""``delete``: delete the models (cluster) or stop their processes (local)."""

from __future__ import annotations

from dataclasses import dataclass, field

from poolserve.actions.common import Edges, Source, Where, on_target
from poolserve.targets.base import DeleteResult


@dataclass(frozen=True)
class DeleteRequest:
    """What ``delete`` was asked."""

    source: Source = field(default_factory=Source)
    names: tuple[str, ...] = ()
    """Models to delete (all when empty)."""
    where: Where = field(default_factory=Where)
    runtimes: bool = False
    """Also delete ServingRuntimes no remaining InferenceService uses (cluster)."""
    force: bool = False
    """Delete those runtimes even if other InferenceServices still use them, and objects Helm manages."""


def delete(req: DeleteRequest, edges: Edges) -> DeleteResult:
    """What was deleted, stopped, kept or absent."""
    rendered = req.source.load(req.names)
    target = edges.target(req.where)
    with on_target(req.where, rendered, req.names, edges):
        return target.delete(rendered, req.names, runtimes=req.runtimes, force=req.force)
