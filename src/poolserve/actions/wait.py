"""``wait``: block until the models are ready; fail fast with a diagnosis when one cannot start."""

from __future__ import annotations

from dataclasses import dataclass, field

from poolserve.actions.common import Duration, Edges, Source, Where, on_target, wait_timeout
from poolserve.targets.base import ModelStatus, ProgressFn


@dataclass(frozen=True)
class WaitRequest:
    """What ``wait`` was asked."""

    source: Source = field(default_factory=Source)
    names: tuple[str, ...] = ()
    where: Where = field(default_factory=Where)
    timeout: Duration | None = None
    """Default: 15 min on a cluster, ``local.startup_timeout_s`` locally."""


def wait(req: WaitRequest, edges: Edges, *, progress: ProgressFn | None = None) -> list[ModelStatus]:
    """The statuses once every named model is ready.

    Raises:
        NotReady: a model failed (with the diagnosis) or the timeout passed.
        NotFound: a model is not deployed.
    """
    rendered = req.source.load(req.names)
    target = edges.target(req.where)
    with on_target(req.where, rendered, req.names, edges):
        return target.wait(rendered, req.names, timeout_s=wait_timeout(req.timeout, rendered.spec, target),
                           progress=progress)
