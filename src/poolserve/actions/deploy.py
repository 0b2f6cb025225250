"""``deploy``: apply the rendered manifests (cluster) or start vLLM processes (local), then wait."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from poolserve.actions.common import Duration, Edges, Source, Where, on_target, wait_timeout
from poolserve.targets.base import DeployOptions, DeployResult, ProgressFn


@dataclass(frozen=True)
class DeployRequest:
    """What ``deploy`` was asked."""

    source: Source = field(default_factory=Source)
    names: tuple[str, ...] = ()
    """Models to deploy (all when empty)."""
    where: Where = field(default_factory=Where)
    wait: bool = True
    timeout: Duration | None = None
    """How long to wait (default: 15 min on a cluster, ``local.startup_timeout_s`` locally)."""
    dry_run: Literal["client", "server"] | None = None
    runtimes_only: bool = False
    force_conflicts: bool = False
    force: bool = False
    """Take over objects Helm manages (otherwise the cluster target refuses them)."""


def deploy(req: DeployRequest, edges: Edges, *, progress: ProgressFn | None = None) -> DeployResult:
    """Deploy the named models; a dry run never waits.

    Raises:
        PoolserveError: from the config, the target, or the wait (``NotReady`` with the diagnosis).
    """
    rendered = req.source.load(req.names)
    target = edges.target(req.where)
    options = DeployOptions(dry_run=req.dry_run, runtimes_only=req.runtimes_only,
                            force_conflicts=req.force_conflicts, force=req.force)
    with on_target(req.where, rendered, req.names, edges):
        return target.deploy(rendered, req.names, wait=req.wait and req.dry_run is None,
                             timeout_s=wait_timeout(req.timeout, rendered.spec, target), options=options,
                             progress=progress)
