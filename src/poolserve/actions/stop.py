"""``stop`` and ``start``: take deployed models down without removing them, and bring them back.

On a cluster both flip ``serving.kserve.io/stop`` (the annotation the OpenShift AI dashboard's
Stop/Start buttons set) with server-side apply under poolserve's field manager, touching nothing
else; locally they stop and start the vLLM process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from poolserve.actions.common import Duration, Edges, Source, Where, on_target, wait_timeout
from poolserve.targets.base import DeployResult, ProgressFn


@dataclass(frozen=True)
class StopRequest:
    """What ``stop`` or ``start`` was asked."""

    names: tuple[str, ...]
    source: Source = field(default_factory=Source)
    where: Where = field(default_factory=Where)
    wait: bool = True
    """``start`` only: wait until the models are ready."""
    timeout: Duration | None = None
    force: bool = False
    """Also flip InferenceServices Helm manages (otherwise refused: ``helm upgrade`` would then conflict)."""


def stop(req: StopRequest, edges: Edges) -> DeployResult:
    """Stop the named models; the statuses show them Stopped.

    Raises:
        NotFound: a model is not deployed.
    """
    rendered = req.source.load(req.names)
    target = edges.target(req.where)
    with on_target(req.where, rendered, req.names, edges):
        return target.stop(rendered, req.names, force=req.force)


def start(req: StopRequest, edges: Edges, *, progress: ProgressFn | None = None) -> DeployResult:
    """Start the named models again; with ``wait``, return once they are ready.

    Raises:
        NotFound: a model is not deployed.
        NotReady: (``wait``) a model fails to start (with the diagnosis) or the timeout passes.
    """
    rendered = req.source.load(req.names)
    target = edges.target(req.where)
    with on_target(req.where, rendered, req.names, edges):
        return target.start(rendered, req.names, wait=req.wait,
                            timeout_s=wait_timeout(req.timeout, rendered.spec, target), progress=progress,
                            force=req.force)
