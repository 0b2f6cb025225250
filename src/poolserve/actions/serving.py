"""What a deployed model runs with (:class:`~poolserve.vllm.facts.ServingFacts`), for fingerprints and benchmarks.

From the config and the target: the command line the target runs (the local target's launch plan, with
its CPU dtype; on a cluster the container KServe composes), the device, and the weights' revision where
this machine holds them. From the server: its vLLM version, what it loaded and its ``max_model_len``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolserve.vllm.facts import ServingFacts, cpu_device, from_argv, merge

if TYPE_CHECKING:
    from poolserve.check.client import PoolClient
    from poolserve.config.resolve import Model
    from poolserve.kserve.render import Rendered
    from poolserve.targets.base import Target


def _launch(rendered: Rendered, model: Model, target: Target | None) -> tuple[list[str], dict[str, str]]:
    """The server's command line and env as the target runs it; without a target, the container KServe composes."""
    if target is not None:
        return target.server_command(rendered, model.name)
    return list(rendered.compose(model.name).argv), {}


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


def _revision(facts: ServingFacts, env: Mapping[str, str]) -> str | None:
    """The snapshot this machine's HF cache (the local launch's ``HF_HOME``) resolves the model to.

    The cluster's PVC is not readable from here: there only ``--revision`` is known.
    """
    hf_home = env.get("HF_HOME")
    if (facts.revision and len(facts.revision) >= 40) or not hf_home or not facts.model \
            or facts.model.startswith("/"):
        return facts.revision  # a commit hash given with --revision, or nothing to look in
    from poolserve.vllm.hfcache import snapshot_path

    snap = snapshot_path(Path(hf_home), facts.model, facts.revision or "")
    return snap.name if snap is not None else facts.revision


def deployment_facts(rendered: Rendered, model: Model, target: Target | None) -> ServingFacts:
    """What the config and the target say model ``model`` runs with (nothing is contacted).

    ``target`` None: the deployment the config describes for a cluster (the container KServe composes).
    """
    from poolserve.check.expectations import expectations_for

    entry = model.catalog_entry
    argv, env = _launch(rendered, model, target)
    facts = from_argv(argv, default_pooling=entry.pooling if entry else None,
                      default_normalize=expectations_for(model).normalized if model.task == "embed" else None,
                      device=_device(model, target), target=target.name if target is not None else "cluster")
    here = target is not None and target.name == "local"  # only the local target's cache is on this machine
    return replace(facts, revision=_revision(facts, env if here else {}))


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
