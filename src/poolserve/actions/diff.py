"""``diff``: what ``deploy`` would change on the cluster (server-side dry run against the live objects)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from poolserve.actions.common import Edges, Source, Where, on_target

if TYPE_CHECKING:
    from poolserve.targets.base import ObjectDiff


@dataclass(frozen=True)
class DiffRequest:
    """What ``diff`` was asked."""

    source: Source = field(default_factory=Source)
    names: tuple[str, ...] = ()
    where: Where = field(default_factory=Where)


def diff(req: DiffRequest, edges: Edges) -> list[ObjectDiff]:
    """One entry per object deploy would apply: create, update (with the YAML diff) or none."""
    rendered = req.source.load(req.names)
    target = edges.cluster_target(req.where)
    with on_target(req.where, rendered, req.names, edges):
        return target.diff(rendered, req.names)
