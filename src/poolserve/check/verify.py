"""The checks of ``poolserve test`` (pure): is a served pooling model up, correct, and as configured?

:func:`verify` runs a fixed list of checks against a client (anything shaped like
:class:`poolserve.check.client.PoolClient`) and returns a frozen :class:`VerifyReport`; it prints
nothing. What the checks expect comes from the config and the catalog
(:func:`poolserve.check.expectations.expectations_for`), so the same report works for a local
process, a cluster Route or any URL.

- every model: ``/health`` answers 200; ``/v1/models`` lists the served name.
- embedding models: ``/v1/embeddings`` single and batched (dimension as the catalog says, finite
  values, unit norm when the model normalizes, batching does not change a vector, a paraphrase
  pair is more similar than unrelated pairs); an input over ``max_model_len`` gets vLLM's 400,
  and is accepted with ``truncate_prompt_tokens=-1``.
- rerankers: ``/score`` and ``/v1/score`` (vLLM >= 0.6.5), ``/rerank``, ``/v1/rerank`` and
  ``/v2/rerank`` (>= 0.7.0): the relevant probe document scores highest and ranks first,
  results are sorted, ``top_n`` is honoured, rerank scores equal score scores.
- with a reference (:mod:`poolserve.check.reference`): embeddings have cosine >= 0.999 to
  sentence-transformers' per text, cross-encoder scores are within 1e-2 (vLLM's own test
  tolerances; see docs/explanation/lessons/http-api.md#reference-tolerances).
- with ``robustness``: bad inputs a deployment must survive (too long, empty, unknown model, 2,048
  texts, non-ASCII, very long tokens), each answered cleanly (a 4xx with vLLM's message, never
  a 5xx or a dropped connection) or correctly, with ``/health`` 200 after each and after the run.

The checks themselves live beside this module: :mod:`~poolserve.check.functional` (models, embed,
score and rerank), :mod:`~poolserve.check.robustness` (the bad inputs), with the thresholds and vector
maths in :mod:`~poolserve.check.vectors` and the call timing in :mod:`~poolserve.check.runner`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from poolserve.check.expectations import Expectations
from poolserve.check.functional import check_embed, check_models, check_score
from poolserve.check.robustness import check_robustness
from poolserve.check.runner import CheckResult, PoolAPI, Reference, Runner
from poolserve.config.schema import Task
from poolserve.config.versions import format_version


@dataclass(frozen=True)
class VerifyReport:
    """Everything ``poolserve test`` found about one served model."""

    name: str
    url: str
    task: Task
    served_model: str | None
    vllm_version: str
    checks: tuple[CheckResult, ...]
    notes: tuple[str, ...] = ()
    reference: str | None = None
    """Where the reference outputs came from (a path or an HF id), when compared."""
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "passed", bool(self.checks) and all(c.passed for c in self.checks))

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        """The checks that did not pass."""
        return tuple(c for c in self.checks if not c.passed)


def verify(client: PoolAPI, expect: Expectations, *, now: Callable[[], float],
           reference: Reference | None = None, robustness: bool = False) -> VerifyReport:
    """Run every check for ``expect.task`` against ``client``.

    A failing check is recorded and the others still run. Failures that make every further request
    fail the same way (connection refused, TLS, 401/403, an unreachable ``/health``) are raised.

    Args:
        client: talks to the served model (:class:`poolserve.check.client.PoolClient`).
        expect: what the model should look like (:func:`~poolserve.check.expectations.expectations_for`).
        now: monotonic clock in seconds, for latencies (the caller's: ``time.perf_counter``; this
            core module reads no clock).
        reference: expected outputs computed locally; adds the ``reference ...`` checks.
        robustness: also send the bad inputs of :func:`~poolserve.check.robustness.check_robustness`
            (the ``robust ...`` checks).

    Raises:
        EndpointError: when the endpoint cannot be used at all.
    """
    r = Runner(now)
    notes: list[str] = []
    start = now()
    healthy = client.health()  # any error here (refused, TLS, 401, 404 on /health) ends the run
    r.add("health", healthy, "GET /health: 200" if healthy else
          "GET /health: 503 (vLLM is starting or its engine died; see `poolserve status`)", (now() - start) * 1000)
    if healthy:
        served = check_models(r, client, expect)
        if expect.task == "embed":
            check_embed(r, client, expect, served, reference, notes)
        else:
            check_score(r, client, expect, reference, notes)
        if robustness:
            check_robustness(r, client, expect, served, notes)
    else:
        notes.append("stopped after /health: the server is not ready")
    return VerifyReport(
        name=expect.name, url=client.url, task=expect.task, served_model=expect.served_model,
        vllm_version=format_version(expect.vllm_version), checks=tuple(r.checks), notes=tuple(notes),
        reference=reference.source if reference is not None else None,
    )
