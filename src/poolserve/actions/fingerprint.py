"""``test --fingerprint save|check FILE`` and ``deploy --check-fingerprint FILE``: does the vector index still hold?

``save`` sends the fixed probe set (:mod:`poolserve.check.fingerprint_probes`) to the served model and writes
its outputs with what the deployment runs with (:mod:`poolserve.actions.serving`). ``check`` does the same
against the deployment now and compares (:mod:`poolserve.check.fingerprint_compare`): same, compatible, or
re-index, naming what changed. :func:`moved` is the error a pipeline stops on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from poolserve.actions.common import (
    Duration,
    Edges,
    Source,
    Where,
    config_model,
    parse_task,
    target_endpoint,
)
from poolserve.errors import FingerprintMoved, SpecError
from poolserve.targets.base import Endpoint

if TYPE_CHECKING:
    from poolserve.check.client import PoolClient
    from poolserve.check.fingerprint import Fingerprint
    from poolserve.check.fingerprint_compare import Comparison
    from poolserve.vllm.facts import ServingFacts

Mode = Literal["save", "check"]
Notify = Callable[[str], None]
"""``notify(warning)``: what the user should read (TLS off, a token over plain HTTP)."""


@dataclass(frozen=True)
class FingerprintRequest:
    """What ``poolserve test NAME --fingerprint MODE FILE`` was asked."""

    mode: Mode
    file: Path
    name: str | None = None
    source: Source = field(default_factory=Source)
    where: Where = field(default_factory=Where)
    url: str | None = None
    task: str | None = None
    """With ``url`` and no config NAME: ``embed`` or ``score``."""
    token: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    insecure: bool = False
    served_model: str | None = None
    timeout: Duration = "60s"


@dataclass(frozen=True)
class FingerprintResult:
    """A fingerprint taken now, and (``check``) how it compares with the saved one."""

    mode: Mode
    file: Path
    fingerprint: Fingerprint
    saved: Fingerprint | None = None
    comparison: Comparison | None = None


def read_fingerprint(path: Path) -> Fingerprint:
    """The fingerprint saved at ``path``.

    Raises:
        SpecError: unreadable, not a fingerprint, or from another probe set.
    """
    from poolserve.check.fingerprint import from_json

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"{path}: cannot read the fingerprint: {e.strerror or e}") from None
    return from_json(text, str(path))


def _client(req: FingerprintRequest, endpoint: Endpoint, served: str | None, edges: Edges,
            notify: Notify | None) -> PoolClient:
    from poolserve.actions.test import pool_client

    return pool_client(endpoint, edges, served=served, token=req.token, ca_file=req.ca_file, insecure=req.insecure,
                       timeout=req.timeout, warn=notify)


def fingerprint(req: FingerprintRequest, edges: Edges, *, notify: Notify | None = None,
                now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> FingerprintResult:
    """Take the deployment's fingerprint; save it (``save``) or compare it with the saved one (``check``).

    Raises:
        SpecError: bad input (no NAME and no ``--url``, an unreadable or foreign fingerprint, a task mismatch).
        EndpointError: the endpoint cannot be used.
        NotFound, NotReady: the target says the model is not deployed / not ready.
    """
    from poolserve.actions.files import write_atomic
    from poolserve.actions.serving import deployment_facts, measured_facts
    from poolserve.actions.test import base_url, check_connection
    from poolserve.check.fingerprint import take, to_json
    from poolserve.check.fingerprint_compare import compare

    check_connection(req.url, req.ca_file, req.insecure)
    saved = read_fingerprint(req.file) if req.mode == "check" else None
    if req.name is None and req.url is None:
        raise SpecError("give a model NAME from the config, or --url URL with --task embed|score")
    found = config_model(req.source, req.name, with_url=req.url is not None)
    if found is None and req.task is None and saved is None:
        raise SpecError("without a config NAME, give --task embed or --task score (and --model for the served name)")
    rendered, model = found if found is not None else (None, None)
    task = model.task if model is not None else (parse_task(req.task) if req.task else saved.task)  # type: ignore[union-attr]
    if saved is not None and saved.task != task:
        kinds = {"score": "a reranker", "embed": "an embedding model"}
        raise SpecError(f"{req.file} is the fingerprint of {kinds[saved.task]} ({saved.name}); {req.name or req.url} "
                        f"is {kinds[task]}")
    base: ServingFacts | None = None  # with --url only the server's own facts are known
    if req.url is not None:
        endpoint = Endpoint(url=base_url(req.url)[0])
    else:
        assert rendered is not None and model is not None  # without --url, NAME is a model of the config
        target = edges.target(req.where)
        endpoint = target_endpoint(edges, req.where, rendered, model.name)
        base = deployment_facts(rendered, model, target)
    served = req.served_model or endpoint.served_model or (model.model_id if model is not None else None)
    name = model.name if model is not None else (req.name or served or endpoint.url)
    truncate = saved.truncate_prompt_tokens if saved is not None else -1
    with _client(req, endpoint, served, edges, notify) as client:
        facts = measured_facts(base, client)
        fp = take(client, name=name, task=task, facts=facts, created=now().isoformat(timespec="seconds"),
                  truncate_prompt_tokens=truncate)
    if saved is None:
        write_atomic(req.file, to_json(fp))
        return FingerprintResult("save", req.file, fp)
    return FingerprintResult("check", req.file, fp, saved, compare(saved, fp))


def moved(result: FingerprintResult) -> FingerprintMoved | None:
    """The error a pipeline stops on when the check says ``re-index`` (None otherwise)."""
    c = result.comparison
    if c is None or c.verdict != "re-index":
        return None
    what = f" ({'; '.join(c.changes)})" if c.changes else " (no setting poolserve knows of changed)"
    return FingerprintMoved(f"{result.fingerprint.name}: re-index: the outputs moved against {result.file}"
                            f"{what}: {c.reason}")


def models_of(files: tuple[Path, ...], source: Source) -> list[str]:
    """The config model each saved fingerprint belongs to (checked before ``deploy`` changes anything).

    Raises:
        SpecError: an unreadable fingerprint, or one of a model the config does not have.
    """
    names = [m.name for m in source.load().models]
    out = []
    for path in files:
        saved = read_fingerprint(path)
        if saved.name not in names:
            raise SpecError(f"{path} is the fingerprint of {saved.name!r}, which is not a model of "
                            f"{source.config} (models: {', '.join(names)})")
        out.append(saved.name)
    return out


def check_after_deploy(files: tuple[Path, ...], source: Source, where: Where, edges: Edges, *,
                       notify: Notify | None = None) -> list[FingerprintResult]:
    """``deploy --check-fingerprint FILE...``: check each saved fingerprint against its model, now deployed.

    Raises:
        SpecError: a fingerprint of a model the config does not have.
    """
    return [fingerprint(FingerprintRequest(mode="check", file=path, name=name, source=source, where=where), edges,
                        notify=notify)
            for path, name in zip(files, models_of(files, source), strict=True)]
