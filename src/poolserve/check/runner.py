"""How the checks of ``poolserve test`` run (pure): what they call, and how each becomes a result.

:class:`PoolAPI` is the client the checks talk to (:class:`poolserve.check.client.PoolClient`),
:class:`Reference` the expected outputs they compare with (:mod:`poolserve.check.reference`).
:class:`Runner` times each call with the caller's clock, records one :class:`CheckResult` per check,
and skips the rest of a group once a failure shows it cannot succeed (wrong model name, wrong task).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from poolserve.errors import EndpointError
from poolserve.vllm import api as vllm_api

FATAL_KINDS: frozenset[str] = frozenset({"connection", "tls", "auth", "redirect"})
"""EndpointError kinds (see :mod:`poolserve.check.client`) after which no request to the endpoint can succeed."""

T = TypeVar("T")


class PoolAPI(Protocol):
    """The client calls the checks make (:class:`poolserve.check.client.PoolClient` implements it)."""

    url: str

    def health(self) -> bool:
        """200 -> True, 503 -> False."""
        ...

    def served_models(self) -> list[vllm_api.ServedModel]:
        """``/v1/models``."""
        ...

    def embed(self, texts: Sequence[str] | str, *, truncate_prompt_tokens: int | None = None
              ) -> vllm_api.Embeddings:
        """``/v1/embeddings``."""
        ...

    def score(self, query: str, docs: Sequence[str], *, path: str = ...) -> vllm_api.Scores:
        """``/score``."""
        ...

    def rerank(self, query: str, docs: Sequence[str], top_n: int | None = None, *, path: str = ...
               ) -> vllm_api.Reranked:
        """``/rerank``."""
        ...

    def request_json(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """Any request; the decoded JSON of a 2xx answer (an error answer raises EndpointError)."""
        ...


class Reference(Protocol):
    """Expected outputs computed locally from the same weights (see :mod:`poolserve.check.reference`)."""

    source: str

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, as the served model should return them."""
        ...

    def score(self, query: str, docs: Sequence[str]) -> list[float]:
        """One score per document, after the activation vLLM applies."""
        ...


@dataclass(frozen=True)
class CheckResult:
    """One check: passed or not, what was seen, and how long its HTTP calls took."""

    name: str
    passed: bool
    detail: str
    latency_ms: float | None = None
    status: int | None = None
    """HTTP status of the answer the check is about (robustness checks: what the server said to the bad input)."""



class Runner:
    """Times calls, turns non-fatal EndpointErrors into failed checks, and records results."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self.checks: list[CheckResult] = []
        self.blocked: dict[str, str] = {}
        """group -> why its remaining checks are not run."""

    def call(self, fn: Callable[[], T], *, fatal: bool = True) -> tuple[T | None, float, EndpointError | None]:
        """Run one client call; ``fatal=False`` records even a dropped connection (a bad input may crash a server)."""
        start = self.now()
        try:
            value = fn()
        except EndpointError as err:
            if fatal and err.kind in FATAL_KINDS:
                raise
            return None, (self.now() - start) * 1000, err
        return value, (self.now() - start) * 1000, None

    def add(self, name: str, passed: bool, detail: str, latency_ms: float | None = None,
            status: int | None = None) -> None:
        """Record one check's result (the latency rounded to 0.1 ms)."""
        self.checks.append(CheckResult(name, passed, detail, None if latency_ms is None else round(latency_ms, 1),
                                       status))

    def fail_call(self, name: str, group: str, err: EndpointError, latency_ms: float) -> None:
        """Record a check whose call failed; a wrong model name blocks every group, a wrong task or route this one."""
        self.add(name, False, str(err), latency_ms)
        if err.kind == "model_not_found":
            self.blocked.setdefault("*", f"{name} failed (wrong model name)")
        elif err.kind in ("wrong_task", "not_found"):
            self.blocked.setdefault(group, f"{name} failed")

    def skip_if_blocked(self, name: str, group: str) -> bool:
        """Record ``name`` as failed and not run when an earlier failure blocked ``group``; True when it did."""
        why = self.blocked.get("*") or self.blocked.get(group)
        if why:
            self.add(name, False, f"not run: {why}")
        return bool(why)
