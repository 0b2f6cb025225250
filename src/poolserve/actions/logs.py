"""``logs``: the vLLM server log of one model (the predictor pod's, or the local process's)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from poolserve.actions.common import Edges, Source, Where, on_target


@dataclass(frozen=True)
class LogsRequest:
    """What ``logs`` was asked."""

    name: str
    source: Source = field(default_factory=Source)
    where: Where = field(default_factory=Where)
    previous: bool = False
    """The previous (crashed) container's or run's log."""
    follow: bool = False


def logs(req: LogsRequest, edges: Edges) -> Iterator[str]:
    """The log lines, as they are read (``follow`` keeps reading until the server stops)."""
    rendered = req.source.load([req.name])
    target = edges.target(req.where)
    with on_target(req.where, rendered, [req.name], edges):
        yield from target.logs(rendered, req.name, previous=req.previous, follow=req.follow)
