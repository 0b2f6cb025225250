"""``status``: each model's state on its target, once or every few seconds."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from poolserve.actions.common import Edges, Source, Where, on_target
from poolserve.targets.base import ModelStatus

WATCH_INTERVAL_S = 2.0


@dataclass(frozen=True)
class StatusRequest:
    """What ``status`` was asked."""

    source: Source = field(default_factory=Source)
    names: tuple[str, ...] = ()
    """Models to show (all when empty)."""
    where: Where = field(default_factory=Where)


def status(req: StatusRequest, edges: Edges) -> list[ModelStatus]:
    """The state of each named model: ready, URLs, runtime, replicas, and why it is not ready."""
    return next(watch(req, edges))


def watch(req: StatusRequest, edges: Edges, *, interval_s: float = WATCH_INTERVAL_S,
          sleep: Callable[[float], None] = time.sleep) -> Iterator[list[ModelStatus]]:
    """:func:`status` again every ``interval_s``, for as long as the caller reads (``status --watch``)."""
    rendered = req.source.load(req.names)
    target = edges.target(req.where)
    first = True
    while True:
        if not first:
            sleep(interval_s)
        first = False
        with on_target(req.where, rendered, req.names, edges):
            statuses = target.status(rendered, req.names)
        yield statuses
