"""``test``: prove a served model answers correctly (the checks are :mod:`poolserve.check.verify`).

Assembles what the checks need: the endpoint (``--url``, or the target's: the local process, or the
InferenceService/Route on the cluster), the client (token, CA, TLS), what to expect (from the config
model, or with ``--url`` from ``--task``/``--model`` and the catalog), and optionally the reference
outputs computed here with sentence-transformers.
"""

from __future__ import annotations

import contextlib
import io
import ssl
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from poolserve.actions.common import (
    Duration,
    Edges,
    Source,
    Where,
    config_model,
    parse_duration,
    parse_task,
    target_endpoint,
)
from poolserve.check.expectations import Expectations
from poolserve.check.runner import CheckResult, Reference
from poolserve.check.verify import VerifyReport
from poolserve.config.resolve import Model
from poolserve.config.schema import DEFAULT_IMAGE, Task
from poolserve.config.versions import image_version
from poolserve.errors import CheckFailed, InsecureTransportWarning, SpecError
from poolserve.kserve.render import Rendered
from poolserve.targets.base import Endpoint

if TYPE_CHECKING:
    from poolserve.check.client import PoolClient

Notify = Callable[[Literal["note", "warning"], str], None]
"""``notify(kind, message)``: what the user should read while the checks run (a URL fixed, TLS off)."""


@dataclass(frozen=True)
class VerifyRequest:
    """What ``poolserve test`` was asked."""

    name: str | None = None
    """A model of the config (optional with ``url``: then ``task`` says which checks apply and no config is read)."""
    source: Source = field(default_factory=Source)
    where: Where = field(default_factory=Where)
    url: str | None = None
    """Base URL of the served model (default: ask the target)."""
    task: str | None = None
    """``embed`` or ``score``: with ``url`` and no ``name``, which checks apply (required then)."""
    token: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    insecure: bool = False
    served_model: str | None = None
    """Model name to send (default: the target's served name, else the config's model_id)."""
    reference: bool = False
    reference_model: str | None = None
    """Directory or HF id of the reference weights (default: model_id, looked up in the caches)."""
    timeout: Duration = "60s"
    """Timeout of one request."""
    robustness: bool = False
    """Also send the bad inputs a deployment must survive (see :func:`poolserve.check.verify.verify`)."""


def base_url(url: str) -> tuple[str, str | None]:
    """Strip a trailing ``/v1`` (copied from an OpenAI-style setting): vLLM's /health and /score live at the root."""
    u = url.rstrip("/")
    if u.endswith("/v1"):
        return u[: -len("/v1")], f"using {u[: -len('/v1')]} (without /v1): poolserve adds the API paths itself"
    return u, None


def check_ca_file(path: str) -> None:
    """A one-line SpecError unless ``--ca-file`` is a readable PEM bundle with at least one certificate.

    A typo here is an input mistake (exit 2), not an endpoint failure.
    """
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as e:  # an OSError too: test it first
        raise SpecError(f"--ca-file {path}: not a PEM CA bundle ({e.reason or e})") from None
    except OSError as e:
        raise SpecError(f"--ca-file {path}: cannot read it: {e.strerror or e}") from None


def check_connection(url: str | None, ca_file: str | None, insecure: bool) -> None:
    """One-line SpecErrors for bad ``--url`` / ``--ca-file`` / ``--insecure`` input, before anything is contacted."""
    from poolserve.check.client import check_url

    if ca_file and insecure:
        raise SpecError("--ca-file and --insecure are mutually exclusive")
    if url is not None:
        check_url(url)
    if ca_file is not None:
        check_ca_file(ca_file)


def pool_client(endpoint: Endpoint, edges: Edges, *, served: str | None, token: str | None, ca_file: str | None,
                insecure: bool, timeout: Duration, warn: Callable[[str], None] | None = None) -> PoolClient:
    """The client for ``endpoint``: the options win over what the target said; TLS warnings go to ``warn``."""
    from poolserve.check.client import PoolClient

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InsecureTransportWarning)
        client = PoolClient.from_endpoint(
            endpoint, model=served, token=token or endpoint.token, ca_file=ca_file or endpoint.ca_file,
            insecure=insecure or (not endpoint.verify_tls and not ca_file),
            timeout_s=parse_duration(timeout), transport=edges.http_transport)
    for w in caught:
        if warn is not None:
            warn(str(w.message))
    return client


def reference_homes(edges: Edges, rendered: Rendered | None) -> list[Path]:
    """HF caches to find the reference weights in: the local target's cache first."""
    from poolserve.check.reference import default_hf_homes

    extra: list[Path] = []
    if rendered is not None:
        with contextlib.suppress(SpecError):
            extra.extend(edges.local_target().hf_homes(rendered))
    return default_hf_homes(extra)


def _load_reference(edges: Edges, source: str, task: Task, homes: Sequence[Path]) -> Reference:
    if edges.reference_loader is not None:
        return edges.reference_loader(source, task, homes)
    from poolserve.check.reference import load_reference

    # sentence-transformers draws progress bars on stderr while loading; keep them out of the report.
    with contextlib.redirect_stderr(io.StringIO()):
        return load_reference(source, task, homes)


def headline(failed: Sequence[CheckResult]) -> CheckResult:
    """The failure that explains most: a failed API call over the model list, never a 'not run'."""
    calls = [c for c in failed if c.name != "models" and not c.detail.startswith("not run:")]
    return calls[0] if calls else failed[0]


def failure(report: VerifyReport) -> CheckFailed | None:
    """The one-line error for a report with failed checks (None when every check passed)."""
    bad = report.failed
    if not bad:
        return None
    first = headline(bad)
    return CheckFailed(f"{report.name}: {len(bad)} of {len(report.checks)} checks failed at {report.url}; "
                       f"{first.name}: {first.detail}")


def _expectations(req: VerifyRequest, model: Model | None, served: str | None) -> Expectations:
    from poolserve.check.expectations import expectations_for, expectations_for_id

    if model is not None:
        return expectations_for(model, served_model=served)
    version = image_version(DEFAULT_IMAGE)
    assert version is not None  # the pinned default image's tag is a version
    return expectations_for_id(req.name or served or "endpoint", parse_task(req.task), req.served_model, version,
                               served_model=served)


def verify_model(req: VerifyRequest, edges: Edges, *, notify: Notify | None = None) -> VerifyReport:
    """Run every check of the model's task against its endpoint.

    A failed check is in the report (see :func:`failure`); an endpoint that cannot be used at all raises.

    Raises:
        SpecError: bad input (``--url``, ``--ca-file``, an unknown NAME, no NAME and no ``--url``).
        ReferenceUnavailable: ``--reference`` without sentence-transformers or the weights.
        EndpointError: the endpoint cannot be used (connection, TLS, 401/403, ...).
        NotFound, NotReady: the target says the model is not deployed / not ready.
    """
    from poolserve.check.verify import verify

    def say(kind: Literal["note", "warning"], message: str) -> None:
        if notify is not None:
            notify(kind, message)

    check_connection(req.url, req.ca_file, req.insecure)
    if req.name is None and req.url is None:
        raise SpecError("give a model NAME from the config, or --url URL with --task embed|score")
    # NAME, when given, is a model of the config (it says which checks apply); without it, --task does.
    found = config_model(req.source, req.name, with_url=False)
    if found is None and req.task is None:
        raise SpecError("without NAME, give --task embed or --task score (and --model for the served name)")
    rendered, model = found if found is not None else (None, None)
    task = model.task if model is not None else parse_task(req.task)
    ref = None
    if req.reference:
        ref_source = req.reference_model or (model.model_id if model is not None else req.served_model)
        if not ref_source:
            raise SpecError("--reference without a config model needs --reference-model DIR_OR_ID (or --model)")
        ref = _load_reference(edges, ref_source, task, reference_homes(edges, rendered))
    if req.url is None:
        assert rendered is not None and model is not None  # without --url the config has NAME
        endpoint = target_endpoint(edges, req.where, rendered, model.name)
    else:
        fixed, note = base_url(req.url)
        if note:
            say("note", note)
        endpoint = Endpoint(url=fixed)
    served = req.served_model or endpoint.served_model or (model.model_id if model is not None else None)
    client = pool_client(endpoint, edges, served=served, token=req.token, ca_file=req.ca_file,
                         insecure=req.insecure, timeout=req.timeout, warn=lambda text: say("warning", text))
    with client:
        return verify(client, _expectations(req, model, served), now=time.perf_counter, reference=ref,
                      robustness=req.robustness)
