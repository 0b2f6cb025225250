"""What a deployed model runs with (:class:`~poolserve.vllm.facts.ServingFacts`), for fingerprints and benchmarks.

From the config and the target: the command line the target runs (the local target's launch plan, with
its CPU dtype; on a cluster the container KServe composes), the device, and the weights' revision where
this machine holds them. From the server: its vLLM version, what it loaded and its ``max_model_len``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from poolserve.vllm.facts import ServingFacts, cpu_device, from_argv, merge

if TYPE_CHECKING:
    from poolserve.check.client import PoolClient
    from poolserve.config.resolve import Model
    from poolserve.kserve.render import Rendered
    from poolserve.targets.base import Target


def _argv(rendered: Rendered, model: Model, target: Target | None) -> list[str]:
    """The server's command line: the local target's launch plan (its local dtype), else what KServe composes."""
    plan = getattr(target, "plan", None)  # the local target's; the cluster runs the composed container as is
    if target is not None and target.name == "local" and callable(plan):
        return list(plan(rendered, model.name, port=0).argv)
    return list(rendered.compose(model.name).argv)


def _device(model: Model, target: Target | None) -> str:
    if target is not None and target.name == "local":
        from poolserve.machine import HostInfo

        host = HostInfo.detect()
        return cpu_device(host.cpu_model, host.cpu_flags)
    if model.runtime.device == "cpu":
        return "cpu"
    if model.mig_profile:
        return f"gpu MIG {model.mig_profile}"
    memory = f" {model.gpu_memory_gib:g} GiB" if model.gpu_memory_gib else ""
    return f"gpu{memory}" + (" time-sliced" if model.gpu_shared else "")


def _revision(rendered: Rendered, facts: ServingFacts, target: Target | None) -> str | None:
    """The snapshot the local target's HF cache resolves the model to (the cluster's PVC is not readable here)."""
    if facts.revision and len(facts.revision) >= 40:
        return facts.revision  # a commit hash given with --revision
    if target is None or target.name != "local" or not facts.model or facts.model.startswith("/"):
        return facts.revision
    from poolserve.targets.local.plan import local_hf_home
    from poolserve.vllm.hfcache import snapshot_path

    try:
        snap = snapshot_path(local_hf_home(rendered.spec), facts.model, facts.revision or "")
    except Exception:  # a config whose cache cannot be mapped locally: the revision stays unknown
        return facts.revision
    return snap.name if snap is not None else facts.revision


def deployment_facts(rendered: Rendered, model: Model, target: Target | None) -> ServingFacts:
    """What the config and the target say model ``model`` runs with (nothing is contacted).

    ``target`` None: the deployment the config describes for a cluster (the container KServe composes).
    """
    from poolserve.check.expectations import expectations_for

    entry = model.catalog_entry
    facts = from_argv(_argv(rendered, model, target), default_pooling=entry.pooling if entry else None,
                      default_normalize=expectations_for(model).normalized if model.task == "embed" else None,
                      device=_device(model, target), target=target.name if target is not None else "cluster")
    return replace(facts, revision=_revision(rendered, facts, target))


def server_facts(client: PoolClient) -> ServingFacts:
    """What the server says: its vLLM version (``/version``), what it loaded and its max_model_len (``/v1/models``)."""
    from poolserve.errors import EndpointError

    version: Any = None
    try:
        version = client.request_json("GET", "/version").get("version")
    except (EndpointError, AttributeError):
        version = None
    served = client.served_models()
    mine = next((m for m in served if m.id == client.model), served[0] if served else None)
    return ServingFacts(vllm_version=str(version) if version else None,
                        model=mine.root if mine is not None else None,
                        max_model_len=mine.max_model_len if mine is not None else None)


def measured_facts(base: ServingFacts | None, client: PoolClient) -> ServingFacts:
    """``base`` (the config's, or none with ``--url``) with what the server says on top."""
    return merge(base or ServingFacts(target="url"), server_facts(client))


def benched_deployment(rendered: Rendered, model: Model, target: Target) -> tuple[ServingFacts, int | None]:
    """What a benchmark of ``model`` on ``target`` measures: its facts, and the replicas ready behind the endpoint.

    Best effort: a target that cannot say how many replicas run gives None (``plan --from`` then assumes one).
    """
    facts = deployment_facts(rendered, model, target)
    try:
        status = target.status(rendered, [model.name])
    except Exception:  # the count is a refinement: a benchmark never fails for it
        return facts, None
    ready = status[0].replicas_ready if status else 0
    return facts, ready or None
