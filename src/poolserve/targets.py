"""Build a :class:`~poolserve.target.Target` by name (the only place that knows the implementations).

The implementations are imported lazily: the local target needs no Kubernetes client and the
cluster target no vLLM, and ``poolserve render`` needs neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from poolserve.target import Target, TargetName


@dataclass(frozen=True)
class TargetOptions:
    """How to reach a target: kube context/kubeconfig for the cluster, state dir for the local one."""

    context: str | None = None
    kubeconfig: str | None = None
    state_dir: Path | None = None


def make_target(name: TargetName, options: TargetOptions = TargetOptions()) -> Target:
    """The target called ``name`` (``cluster`` or ``local``)."""
    if name == "local":
        from poolserve.local.target import LocalTarget

        local: Target = LocalTarget(state_dir=options.state_dir)
        return local
    from poolserve.cluster.kube import KubeCluster
    from poolserve.cluster.target import ClusterTarget

    cluster: Target = ClusterTarget(KubeCluster(context=options.context, kubeconfig=options.kubeconfig))
    return cluster
