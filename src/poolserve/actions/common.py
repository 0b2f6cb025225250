"""What every action shares: the config it reads, the target it acts on, and the edges it acts with.

- :class:`Source`: the config file and its ``--set`` overrides; :meth:`Source.load` renders it.
- :class:`Where`: ``--target`` (else ``$POOLSERVE_TARGET``, else ``cluster``) and how to reach it.
- :class:`Edges`: what actions act *with*, kept apart from what they are asked (Helm's
  ``action.Configuration``): the target factory, the HTTP transport, the reference loader. The CLI
  builds the real ones; tests and API users pass fakes.
- :func:`on_target`: when ``--target`` was left to its default and the cluster cannot be used, the
  error says so if the model runs on the local target.
- :func:`target_endpoint`: where a config model answers, as its target says (``test`` and ``bench``).

Actions reach targets through the :class:`~poolserve.targets.base.Target` protocol only; the CLI's
target factory is the one place that builds the real ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from poolserve.config.defaults import DEFAULT_CONFIG, TARGET_ENV
from poolserve.errors import ClusterUnreachable, MissingDependency, PoolserveError, SpecError
from poolserve.targets.base import ClusterOps, Endpoint, Target, TargetFactory, TargetName, TargetOptions, target_name

if TYPE_CHECKING:
    from poolserve.check.runner import Reference
    from poolserve.config.resolve import Model
    from poolserve.config.schema import PoolSpec, Task
    from poolserve.kserve.render import Rendered

CLUSTER_TIMEOUT_S = 900.0
"""How long ``deploy``/``wait`` wait on a cluster without ``--timeout`` (first downloads are slow)."""

Duration = float | str
"""Seconds, or text like ``90``, ``90s``, ``15m``, ``1h``."""

ReferenceLoader = Callable[[str, "Task", Sequence[Path]], "Reference"]
"""``loader(model dir or HF id, task, HF caches) -> Reference`` (default: sentence-transformers)."""


def parse_sets(values: Sequence[str]) -> dict[str, Any]:
    """``["a.b=1"]`` -> ``{"a.b": 1}`` (values parsed as YAML scalars).

    Raises:
        SpecError: for an item without ``=`` or a value that is not YAML.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SpecError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or "invalid YAML"
            raise SpecError(f"--set {key.strip()}: the value {raw!r} is not valid YAML ({problem})") from None
    return out


def parse_duration(text: Duration, option: str = "--timeout") -> float:
    """``90``, ``90s``, ``15m``, ``1h`` (or a number of seconds) -> seconds; errors name ``option``.

    Raises:
        SpecError: when it is not a positive duration.
    """
    if isinstance(text, int | float):
        value = float(text)
    else:
        units = {"s": 1, "m": 60, "h": 3600}
        t = text.strip().lower()
        try:
            value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
        except ValueError:
            raise SpecError(f"{option} {text!r}: expected a duration like 30s or 15m") from None
    if value <= 0:
        raise SpecError(f"{option} {text!r}: must be positive")
    return value


@dataclass(frozen=True)
class Source:
    """The config an action reads: a file, and ``--set KEY=VALUE`` overrides on top of it."""

    config: Path = Path(DEFAULT_CONFIG)
    overrides: Sequence[str] = ()

    def spec(self) -> PoolSpec:
        """The validated config.

        Raises:
            SpecError: naming the file, line and key (or the ``--set``) that is wrong.
        """
        from poolserve.config.load import load_spec

        return load_spec(self.config, parse_sets(self.overrides))

    def load(self, names: Sequence[str] = ()) -> Rendered:
        """The rendered config, after checking that every name in ``names`` is one of its models.

        Raises:
            SpecError: for a bad config or an unknown model name (one line each).
        """
        from poolserve.kserve.render import render

        rendered = render(self.spec())
        for n in names:
            rendered.model(n)
        return rendered


@dataclass(frozen=True)
class Where:
    """Which target an action works on, and how to reach it."""

    target: str | None = None
    """``cluster`` or ``local``; None: ``$POOLSERVE_TARGET``, else ``cluster``."""
    context: str | None = None
    kubeconfig: str | None = None

    def name(self) -> TargetName:
        """The target's name (``--target`` wins, then ``$POOLSERVE_TARGET``, then ``cluster``)."""
        return target_name(self.target)

    def defaulted(self) -> bool:
        """Neither ``--target`` nor ``$POOLSERVE_TARGET`` chose the target."""
        import os

        return self.target is None and not os.environ.get(TARGET_ENV)


@dataclass(frozen=True)
class Edges:
    """What actions act with: the target factory, the HTTP transport and the reference loader."""

    target_factory: TargetFactory
    http_transport: Any = None
    """An ``httpx.BaseTransport`` for every request ``test`` makes (None: the network)."""
    reference_loader: ReferenceLoader | None = None
    """Loads ``test --reference``'s model (None: sentence-transformers, see :mod:`poolserve.check.reference`)."""

    def target(self, where: Where) -> Target:
        """The target ``where`` names, built by the factory (nothing is contacted yet).

        Raises:
            SpecError: for an unknown target name.
        """
        return self.target_factory(where.name(), TargetOptions(context=where.context, kubeconfig=where.kubeconfig))

    def cluster_target(self, where: Where) -> ClusterOps:
        """The cluster target, for the verbs only a cluster has (``diff``, ``cache warm``).

        Raises:
            SpecError: if the factory does not give a target with those verbs.
        """
        tgt = self.target_factory("cluster", TargetOptions(context=where.context, kubeconfig=where.kubeconfig))
        if not all(callable(getattr(tgt, verb, None)) for verb in ("diff", "warm_cache")):
            raise SpecError("this command needs the cluster target")
        return cast("ClusterOps", tgt)

    def local_target(self) -> Target:
        """The local target (this machine's servers and model cache), whatever ``--target`` says."""
        return self.target_factory("local", TargetOptions())


def parse_task(text: str | None) -> Task:
    """``--task``: ``embed``, or ``score`` (also spelt ``rerank``); None means ``embed``.

    Raises:
        SpecError: for anything else.
    """
    if text is None:
        return "embed"
    if text not in ("embed", "score", "rerank"):
        raise SpecError(f"--task {text!r}: use embed or score")
    return "score" if text == "rerank" else text  # type: ignore[return-value]


def config_model(source: Source, name: str | None, *, with_url: bool) -> tuple[Rendered, Model] | None:
    """NAME's rendered config and model; None when there is no NAME, or with ``--url`` when the config lacks it.

    Without ``--url`` NAME must be in the config (its target gives the endpoint). With ``--url`` the
    config is optional: a NAME it does not define (or no config file at all) is served by what
    ``--task``/``--model`` say.

    Raises:
        SpecError: a bad config, or (without ``--url``) a NAME it does not define.
    """
    if name is None:
        return None
    if not with_url:
        rendered = source.load()
        return rendered, rendered.model(name)
    if source.config.is_file():
        rendered = source.load()
        if any(m.name == name for m in rendered.models):
            return rendered, rendered.model(name)
    return None


def wait_timeout(timeout: Duration | None, spec: PoolSpec, target: Target) -> float:
    """``timeout`` if given, else the target's default (the config's ``local.startup_timeout_s`` locally)."""
    if timeout is not None:
        return parse_duration(timeout)
    return spec.local.startup_timeout_s if target.name == "local" else CLUSTER_TIMEOUT_S


def deployed_locally(edges: Edges, rendered: Rendered, names: Sequence[str]) -> list[str]:
    """Which of ``names`` (all configured models when empty) the local target has deployed.

    Best effort, for a hint: none when the local target cannot say (its state unreadable, or a target
    factory that builds no local target), so the error the hint adds to is never replaced.
    """
    try:
        return edges.local_target().deployed(rendered, names)
    except PoolserveError:  # a hint must not hide the error it explains
        return []


@contextmanager
def on_target(where: Where, rendered: Rendered, names: Sequence[str], edges: Edges) -> Iterator[None]:
    """Run target calls; when the default cluster target cannot be used, point at the local one if it fits.

    ``poolserve test NAME`` after the local demo, without ``--target local``, would otherwise end in
    "the kubernetes Python client is not installed" or "no kubeconfig found" with no word of the
    model that is running right here.
    """
    try:
        yield
    except (ClusterUnreachable, MissingDependency) as err:
        local = deployed_locally(edges, rendered, names) if where.defaulted() else []
        if not local:
            raise
        which = ", ".join(local)
        raise err.with_message(
            f"{which} {'is' if len(local) == 1 else 'are'} deployed locally, but --target defaults to cluster: "
            f"add --target local (or export {TARGET_ENV}=local); the cluster target said: {err.message}") from err


def target_endpoint(edges: Edges, where: Where, rendered: Rendered, name: str) -> Endpoint:
    """Where config model ``name`` answers HTTP, as the target ``where`` names says (``test``, ``bench``).

    Raises:
        NotFound, NotReady: the target says the model is not deployed / not ready.
        ClusterUnreachable, MissingDependency: the cluster cannot be used (naming the local target
            when the model runs there and ``--target`` was left to its default).
    """
    with on_target(where, rendered, [name], edges):
        return edges.target(where).endpoint(rendered, name)
