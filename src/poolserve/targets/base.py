"""Where models run: the :class:`Target` protocol shared by the cluster and the local target.

``deploy``/``status``/``logs``/``delete`` (and, for ``test``/``bench``/``cache``, the endpoint, the
models deployed, the caches holding their weights and a local server's process group) are written
once against this protocol; ``--target cluster`` (KServe) and ``--target local`` (vLLM processes on
this machine) implement it. Results are frozen dataclasses; nothing here prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from poolserve.config.defaults import TARGET_ENV
from poolserve.errors import SpecError

if TYPE_CHECKING:
    from poolserve.kserve.render import Rendered

TargetName = Literal["cluster", "local"]
Phase = Literal["Ready", "Loading", "Failed", "Stopped", "Terminating", "NotDeployed", "Unknown"]


@dataclass(frozen=True)
class Endpoint:
    """How to reach one deployed model over HTTP."""

    url: str
    """Base URL without a trailing slash, e.g. ``http://127.0.0.1:8001``."""
    served_model: str | None = None
    token: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    verify_tls: bool = True


@dataclass(frozen=True)
class ModelStatus:
    """One model's state on a target: the row of ``poolserve status``."""

    name: str
    target: TargetName
    phase: Phase
    ready: bool
    runtime: str | None = None
    served_model: str | None = None
    url: str | None = None
    """Internal URL (cluster Service) or the local URL."""
    route_url: str | None = None
    replicas_ready: int = 0
    replicas_desired: int = 0
    """What the Deployment asks for: an autoscaler moves it between ``replicas_min`` and ``replicas_max``."""
    replicas_current: int = 0
    """Pods the Deployment has now (ready or not)."""
    replicas_min: int | None = None
    replicas_max: int | None = None
    autoscaler: str | None = None
    """``queue 16/replica``, ``cpu 70%``, ...: set only when the replica count can change."""
    age_s: float | None = None
    reason: str | None = None
    """Why it is not ready, in one line (``CrashLoopBackOff: --task is not a vLLM flag ...``)."""
    details: tuple[str, ...] = ()
    """Evidence: last log lines, conditions, events."""
    warnings: tuple[str, ...] = ()
    """What is wrong without keeping the model from serving (the dashboard's "Template removed")."""
    restarts: int | None = None
    """Container restarts (the pods' ``restartCount``; the local supervisor's count); None when unknown."""
    last_termination: str | None = None
    """How the last container ended: ``Error (exit 1): <diagnosis>``, ``OOMKilled (...)``."""


@dataclass(frozen=True)
class ObjectChange:
    """What happened to one object on apply/delete."""

    kind: str
    name: str
    namespace: str | None
    action: Literal["created", "configured", "unchanged", "deleted", "absent", "kept", "started", "stopped"]
    note: str | None = None


@dataclass(frozen=True)
class DeployResult:
    """Outcome of ``deploy``."""

    target: TargetName
    changes: tuple[ObjectChange, ...]
    statuses: tuple[ModelStatus, ...] = ()
    dry_run: str | None = None
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    """What the user should act on although the deploy went through."""


@dataclass(frozen=True)
class DeleteResult:
    """Outcome of ``delete``."""

    target: TargetName
    changes: tuple[ObjectChange, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ObjectDiff:
    """What ``apply`` would change on one object."""

    kind: str
    name: str
    namespace: str | None
    action: Literal["create", "update", "none"]
    diff: str
    note: str | None = None


@dataclass(frozen=True)
class CacheJobStatus:
    """What happened to one model's download."""

    model: str
    model_id: str
    job: str
    state: Literal["downloaded", "cached", "failed"]
    """``cached``: a Job with the same spec had already succeeded; nothing ran."""
    message: str = ""


@dataclass(frozen=True)
class CacheWarmResult:
    """Outcome of ``cache warm``."""

    namespace: str
    pvc: str
    hf_home: str
    jobs: tuple[CacheJobStatus, ...]
    offline: bool = False
    """``cache.offline``: the serving pods run with ``HF_HUB_OFFLINE=1``, from this cache alone."""


@dataclass(frozen=True)
class DeployOptions:
    """Options of ``deploy`` that only some targets support (the local target rejects the cluster ones)."""

    dry_run: Literal["client", "server"] | None = None
    runtimes_only: bool = False
    force_conflicts: bool = False
    force: bool = False
    """Apply even to objects another tool manages (label ``app.kubernetes.io/managed-by: Helm``)."""


@dataclass(frozen=True)
class TargetOptions:
    """How to reach a target: kube context/kubeconfig for the cluster, state dir for the local one."""

    context: str | None = None
    kubeconfig: str | None = None
    state_dir: Path | None = None


ProgressFn = Callable[[str, float | None], None]
"""``progress(message, fraction_or_None)``: called by waits; the CLI draws it, tests record it."""


class Target(Protocol):
    """A place models are deployed to.

    Every verb takes the :class:`~poolserve.kserve.render.Rendered` config (which carries its
    :class:`~poolserve.config.schema.PoolSpec`), so the objects and the config they came from cannot disagree.
    """

    name: TargetName

    def deploy(
        self,
        rendered: Rendered,
        names: Sequence[str],
        *,
        wait: bool,
        timeout_s: float,
        options: DeployOptions = DeployOptions(),
        progress: ProgressFn | None = None,
    ) -> DeployResult:
        """Start (or apply) the named models (all when ``names`` is empty)."""
        ...

    def status(self, rendered: Rendered, names: Sequence[str]) -> list[ModelStatus]:
        """State of the named models (all when empty)."""
        ...

    def wait(
        self,
        rendered: Rendered,
        names: Sequence[str],
        *,
        timeout_s: float,
        progress: ProgressFn | None = None,
    ) -> list[ModelStatus]:
        """Block until the models are ready; raise NotReady with a diagnosis when one fails or time runs out."""
        ...

    def logs(self, rendered: Rendered, name: str, *, previous: bool = False, follow: bool = False) -> Iterator[str]:
        """Log lines of the model's server."""
        ...

    def delete(self, rendered: Rendered, names: Sequence[str], *, runtimes: bool = False,
               force: bool = False) -> DeleteResult:
        """Stop/remove the named models (all when empty)."""
        ...

    def endpoint(self, rendered: Rendered, name: str) -> Endpoint:
        """Where model ``name`` answers HTTP; raises NotReady/NotFound when it does not run."""
        ...

    def stop(self, rendered: Rendered, names: Sequence[str], *, force: bool = False) -> DeployResult:
        """Stop the named deployed models (all when empty) without removing them: no pods, no process.

        ``force``: also models whose InferenceService Helm manages (cluster).
        """
        ...

    def start(self, rendered: Rendered, names: Sequence[str], *, wait: bool, timeout_s: float,
              progress: ProgressFn | None = None, force: bool = False) -> DeployResult:
        """Start stopped models again (whatever the config's ``stopped`` says); optionally wait until ready."""
        ...

    def deployed(self, rendered: Rendered, names: Sequence[str]) -> list[str]:
        """Which of ``names`` (all configured models when empty) this target has deployed, in that order."""
        ...

    def hf_homes(self, rendered: Rendered) -> list[Path]:
        """The Hugging Face caches on this machine that hold this target's model weights; empty when none does.

        The first is the one the target reads first (``cache import`` files models there).
        """
        ...

    def server_pgid(self, rendered: Rendered, name: str) -> int | None:
        """The process group of model ``name``'s running server on this machine (None: none runs here)."""
        ...

    def server_command(self, rendered: Rendered, name: str) -> tuple[list[str], dict[str, str]]:
        """The command line and the environment this target runs model ``name``'s server with."""
        ...


class ClusterOps(Protocol):
    """The verbs only the cluster target has (``diff``, ``cache warm``); actions reach them through this."""

    def diff(self, rendered: Rendered, names: Sequence[str]) -> list[ObjectDiff]:
        """What ``deploy`` would change, per object."""
        ...

    def warm_cache(self, rendered: Rendered, names: Sequence[str], *, timeout_s: float,
                   progress: ProgressFn | None = None) -> CacheWarmResult:
        """Download the models into the cache PVC."""
        ...


TargetFactory = Callable[[TargetName, TargetOptions], Target]
"""Builds the target called by name (the CLI's builds the real ones; tests inject fakes)."""


def target_name(explicit: str | None) -> TargetName:
    """``--target`` wins, then ``$POOLSERVE_TARGET``, then ``cluster``."""
    value = explicit or os.environ.get(TARGET_ENV) or "cluster"
    if value not in ("cluster", "local"):
        source = "--target" if explicit else TARGET_ENV
        raise SpecError(f"unknown target {value!r} (from {source}): use cluster or local")
    return value  # type: ignore[return-value]
