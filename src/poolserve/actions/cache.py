"""``cache import`` / ``cache list`` (the local model cache) and ``cache warm`` (the cluster's cache PVC).

Locally, models land where the local target's ``HF_HOME`` points (the first of its
:meth:`~poolserve.targets.base.Target.hf_homes`): ``cache.hf_home`` mapped into ``local.cache_dir``,
in the Hugging Face hub layout, so ``--model=<hf id>`` with
``HF_HUB_OFFLINE=1`` resolves locally exactly as it does from the PVC on a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from poolserve.actions.common import Duration, Edges, Source, Where, on_target, parse_duration
from poolserve.errors import SpecError
from poolserve.targets.base import ProgressFn

if TYPE_CHECKING:
    from poolserve.targets.base import CacheWarmResult
    from poolserve.vllm.hfcache import CachedModel


@dataclass(frozen=True)
class ImportRequest:
    """What ``cache import`` was asked."""

    model_id: str
    """Hugging Face id to file the directory under (``org/name``)."""
    path: Path
    """A local model directory (with ``config.json``)."""
    source: Source = field(default_factory=Source)
    link: bool = False
    """Symlink the files instead of copying them."""


@dataclass(frozen=True)
class Imported:
    """Where ``cache import`` put the model."""

    model: CachedModel
    hf_home: Path


@dataclass(frozen=True)
class Listing:
    """The local model cache: where it is and what it holds."""

    hf_home: Path
    models: tuple[CachedModel, ...]


@dataclass(frozen=True)
class WarmRequest:
    """What ``cache warm`` was asked."""

    source: Source = field(default_factory=Source)
    names: tuple[str, ...] = ()
    where: Where = field(default_factory=Where)
    timeout: Duration = "60m"
    """How long to wait for the download Jobs."""


def import_model(req: ImportRequest, edges: Edges) -> Imported:
    """Lay a local model directory out as a hub cache entry in the local model cache.

    Raises:
        SpecError: a bad config, a path that is not a model directory, or an id that is not ``org/name``.
    """
    from poolserve.vllm import hfcache

    rendered = req.source.load()
    if not req.path.is_dir():
        raise SpecError(f"{req.path}: not a directory (expected a model directory with config.json)")
    hf_home = edges.local_target().hf_homes(rendered)[0]
    return Imported(hfcache.import_model(hf_home, req.model_id, req.path, link=req.link), hf_home)


def list_models(source: Source, edges: Edges) -> Listing:
    """The models in the local model cache."""
    from poolserve.vllm import hfcache

    hf_home = edges.local_target().hf_homes(source.load())[0]
    return Listing(hf_home, tuple(hfcache.list_models(hf_home)))


def warm(req: WarmRequest, edges: Edges, *, progress: ProgressFn | None = None) -> CacheWarmResult:
    """Download the models into the cluster's cache PVC with a Job each, so pods can run offline.

    Raises:
        NotFound: the namespace or PVC is missing.
        NotReady: a Job failed (with the diagnosed cause) or timed out.
    """
    rendered = req.source.load(req.names)
    target = edges.cluster_target(req.where)
    with on_target(req.where, rendered, req.names, edges):
        return target.warm_cache(rendered, req.names, timeout_s=parse_duration(req.timeout), progress=progress)
