"""The checks of ``poolserve test`` (pure): is a served pooling model up, correct, and as configured?

:func:`verify` runs a fixed list of checks against a client (anything shaped like
:class:`poolserve.check.client.PoolClient`) and returns a frozen :class:`VerifyReport`; it prints
nothing. What the checks expect comes from the config and the catalog (:func:`expectations_for`),
so the same report works for a local process, a cluster Route or any URL.

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
  tolerances; see LESSONS_LEARNED "Verifying outputs").
- with ``robustness``: bad inputs a deployment must survive (too long, empty, unknown model, 2,048
  texts, non-ASCII, very long tokens), each answered cleanly (a 4xx with vLLM's message, never
  a 5xx or a dropped connection) or correctly, with ``/health`` 200 after each and after the run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from poolserve.check import probes
from poolserve.config.catalog import lookup
from poolserve.config.resolve import Model
from poolserve.config.schema import Task
from poolserve.config.versions import Version, format_version
from poolserve.errors import EndpointError
from poolserve.vllm import api as vllm_api

EMBED_MIN_COSINE = 0.999
"""Reference check: per-text cosine to sentence-transformers (vLLM's tests use 0.99 at fp16)."""
SCORE_TOL = 1e-2
"""Reference check: |served - expected| <= SCORE_TOL * max(1, |expected|) (vLLM: rtol 1e-2 at fp16)."""
NORM_TOL = 1e-2
BATCH_MIN_COSINE = 0.999
"""A vector must not change when it is sent in a batch instead of alone."""
SAME_SCORE_TOL = 1e-2
TOP_N = 2
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
class Expectations:
    """What a served model should look like, from the config and the catalog."""

    name: str
    task: Task
    vllm_version: Version
    served_model: str | None = None
    dimensions: int | None = None
    normalized: bool | None = None
    """True: every vector has L2 norm 1; None: unknown (norm is only reported)."""
    max_model_len: int | None = None
    """Fallback when ``/v1/models`` does not report it."""
    score_range: tuple[float, float] | None = None
    """(0, 1) for rerankers whose scores go through a sigmoid; None for raw logits."""
    chunked_processing: bool = False
    """``enable_chunked_processing``: long inputs are split and averaged, not rejected."""


@dataclass(frozen=True)
class CheckResult:
    """One check: passed or not, what was seen, and how long its HTTP calls took."""

    name: str
    passed: bool
    detail: str
    latency_ms: float | None = None
    status: int | None = None
    """HTTP status of the answer the check is about (robustness checks: what the server said to the bad input)."""


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


def _normalizes(model: Model) -> bool | None:
    pc = model.pooler_config or {}
    for key in ("use_activation", "normalize"):
        value = pc.get(key)
        if isinstance(value, bool):
            return value
    entry = model.catalog_entry
    if entry and entry.pooling:
        return "normalize" in entry.pooling.lower() or None
    return None


def expectations_for(model: Model, *, served_model: str | None = None) -> Expectations:
    """What the checks expect of ``model`` (pure): dimensions, normalization and score range."""
    entry = model.catalog_entry
    pc: Mapping[str, Any] = model.pooler_config or {}
    score_range = None
    if model.task == "score" and entry and entry.score_output == "sigmoid" and pc.get("use_activation") is not False:
        score_range = (0.0, 1.0)
    return Expectations(
        name=model.name,
        task=model.task,
        vllm_version=model.vllm_version,
        served_model=served_model,
        dimensions=entry.dimensions if entry and model.task == "embed" and not pc.get("dimensions") else None,
        normalized=_normalizes(model) if model.task == "embed" else None,
        max_model_len=model.max_model_len,
        score_range=score_range,
        chunked_processing=bool(pc.get("enable_chunked_processing")),
    )


def expectations_for_id(name: str, task: Task, model_id: str | None, vllm_version: Version, *,
                        served_model: str | None = None) -> Expectations:
    """What the checks expect of a model that is not in the config (``test --url`` without NAME).

    Only what the catalog knows of ``model_id`` (dimensions, normalization, score range, max length);
    the vLLM version decides which score/rerank routes are checked.
    """
    entry = lookup(model_id) if model_id else None
    normalized = ("normalize" in entry.pooling.lower() or None) if entry and entry.pooling and task == "embed" \
        else None
    return Expectations(
        name=name,
        task=task,
        vllm_version=vllm_version,
        served_model=served_model,
        dimensions=entry.dimensions if entry and task == "embed" else None,
        normalized=normalized,
        max_model_len=entry.max_model_len if entry else None,
        score_range=(0.0, 1.0) if entry and task == "score" and entry.score_output == "sigmoid" else None,
    )


# -- vector math (pure) ---------------------------------------------------------------------------

def l2norm(v: Sequence[float]) -> float:
    """Euclidean norm."""
    return math.sqrt(math.fsum(x * x for x in v))


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity (0 when either vector is zero)."""
    na, nb = l2norm(a), l2norm(b)
    if na == 0 or nb == 0:
        return 0.0
    return math.fsum(x * y for x, y in zip(a, b, strict=True)) / (na * nb)


def _finite(values: Sequence[float]) -> bool:
    return all(math.isfinite(x) for x in values)


def vector_problems(vectors: Sequence[Sequence[float]], expect: Expectations) -> list[str]:
    """What is wrong with served vectors (dimension, NaN/inf, norm); empty when fine."""
    problems: list[str] = []
    dims = {len(v) for v in vectors}
    if len(dims) > 1:
        problems.append(f"vectors differ in length: {sorted(dims)}")
    elif expect.dimensions is not None and dims and dims != {expect.dimensions}:
        problems.append(f"{dims.pop()} dims, expected {expect.dimensions}")
    if not all(_finite(v) for v in vectors):
        problems.append("non-finite values (NaN/inf)")
    elif expect.normalized:
        off = [round(l2norm(v), 4) for v in vectors if abs(l2norm(v) - 1.0) > NORM_TOL]
        if off:
            problems.append(f"norm {off[0]} where the model normalizes to 1")
    if any(l2norm(v) == 0 for v in vectors):
        problems.append("all-zero vector")
    return problems


def _norms(vectors: Sequence[Sequence[float]]) -> str:
    ns = [l2norm(v) for v in vectors]
    lo, hi = min(ns), max(ns)
    return f"norm {lo:.3f}" if round(lo, 3) == round(hi, 3) else f"norms {lo:.3f}-{hi:.3f}"


def compare_embeddings(served: Sequence[Sequence[float]], expected: Sequence[Sequence[float]],
                       min_cosine: float = EMBED_MIN_COSINE) -> tuple[bool, str]:
    """Per-text cosine between served and reference vectors: passed, detail."""
    if len(served) != len(expected):
        return False, f"{len(served)} vectors, reference has {len(expected)}"
    if any(len(a) != len(b) for a, b in zip(served, expected, strict=True)):
        return False, f"{len(served[0])} dims, reference has {len(expected[0])}"
    cos = [cosine(a, b) for a, b in zip(served, expected, strict=True)]
    worst = min(range(len(cos)), key=cos.__getitem__)
    ok = cos[worst] >= min_cosine
    detail = f"min cosine {cos[worst]:.6f} over {len(cos)} texts ({'>=' if ok else '<'} {min_cosine})"
    if not ok:
        detail += f"; text {worst}: {probes.EMBED_TEXTS[worst][:40]!r}" if worst < len(probes.EMBED_TEXTS) else ""
    return ok, detail


def compare_scores(served: Sequence[float], expected: Sequence[float], tol: float = SCORE_TOL) -> tuple[bool, str]:
    """|served - expected| <= tol * max(1, |expected|) for every document: passed, detail."""
    if len(served) != len(expected):
        return False, f"{len(served)} scores, reference has {len(expected)}"
    diffs = [abs(a - b) / max(1.0, abs(b)) for a, b in zip(served, expected, strict=True)]
    worst = max(range(len(diffs)), key=diffs.__getitem__)
    ok = diffs[worst] <= tol
    detail = (f"max diff {diffs[worst]:.2e} over {len(diffs)} docs ({'<=' if ok else '>'} {tol:g}); "
              f"doc {worst}: served {served[worst]:.4f}, reference {expected[worst]:.4f}")
    return ok, detail


def long_text(max_model_len: int) -> str:
    """A text well over ``max_model_len`` tokens for any tokenizer ("hello" is one token in each)."""
    return " ".join(["hello"] * (max_model_len + max(16, max_model_len // 4)))


# -- the runner -----------------------------------------------------------------------------------

class _Runner:
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
        self.checks.append(CheckResult(name, passed, detail, None if latency_ms is None else round(latency_ms, 1),
                                       status))

    def fail_call(self, name: str, group: str, err: EndpointError, latency_ms: float) -> None:
        self.add(name, False, str(err), latency_ms)
        if err.kind == "model_not_found":
            self.blocked.setdefault("*", f"{name} failed (wrong model name)")
        elif err.kind in ("wrong_task", "not_found"):
            self.blocked.setdefault(group, f"{name} failed")

    def skip_if_blocked(self, name: str, group: str) -> bool:
        why = self.blocked.get("*") or self.blocked.get(group)
        if why:
            self.add(name, False, f"not run: {why}")
        return bool(why)


def _check_models(r: _Runner, client: PoolAPI, expect: Expectations) -> vllm_api.ServedModel | None:
    served, ms, err = r.call(client.served_models)
    if err or served is None:
        r.add("models", False, str(err), ms)
        return None
    ids = [m.id for m in served]
    listing = ", ".join(f"{m.id} (max_model_len {m.max_model_len})" if m.max_model_len else m.id for m in served)
    if expect.served_model is None:
        r.add("models", bool(served), f"serves {listing}" if served else "/v1/models lists no model", ms)
        return served[0] if served else None
    if expect.served_model in ids:
        r.add("models", True, f"serves {listing}", ms)
        return served[ids.index(expect.served_model)]
    r.add("models", False, f"{expect.served_model!r} is not served here; /v1/models lists {listing or 'nothing'}", ms)
    return None


def _check_embed(r: _Runner, client: PoolAPI, expect: Expectations, served: vllm_api.ServedModel | None,
                 reference: Reference | None, notes: list[str]) -> None:
    texts = list(probes.EMBED_TEXTS)
    single: list[float] | None = None
    if not r.skip_if_blocked("embed single", "embed"):
        res, ms, err = r.call(lambda: client.embed(texts[0]))
        if err or res is None:
            r.fail_call("embed single", "embed", err or EndpointError("no result"), ms)
        else:
            problems = ([f"{len(res.vectors)} vectors for 1 input"] if len(res.vectors) != 1 else []) + \
                vector_problems(res.vectors, expect)
            if not problems:
                single = list(res.vectors[0])
            r.add("embed single", not problems, "; ".join(problems) or
                  f"1 vector, {len(res.vectors[0])} dims, {_norms(res.vectors)}", ms)

    batch: list[list[float]] | None = None
    if not r.skip_if_blocked("embed batch", "embed"):
        res, ms, err = r.call(lambda: client.embed(texts))
        if err or res is None:
            r.fail_call("embed batch", "embed", err or EndpointError("no result"), ms)
        else:
            problems = ([f"{len(res.vectors)} vectors for {len(texts)} inputs"]
                        if len(res.vectors) != len(texts) else []) + vector_problems(res.vectors, expect)
            same = ""
            if not problems and single is not None:
                c = cosine(single, res.vectors[0])
                if c < BATCH_MIN_COSINE:
                    problems.append(f"text 0 alone vs in a batch: cosine {c:.5f} (order mixed up?)")
                same = f", text 0 same as alone (cosine {c:.5f})"
            if not problems:
                batch = [list(v) for v in res.vectors]
            r.add("embed batch", not problems, "; ".join(problems) or
                  f"{len(res.vectors)} vectors, {len(res.vectors[0])} dims, {_norms(res.vectors)}{same}", ms)

    if batch is None:
        r.add("embed similarity", False, "not run: embed batch failed")
    else:
        para = cosine(batch[0], batch[1])
        unrelated = max(cosine(batch[0], batch[2]), cosine(batch[0], batch[3]),
                        cosine(batch[1], batch[2]), cosine(batch[1], batch[3]))
        ok = para > unrelated
        r.add("embed similarity", ok, f"paraphrases {para:.3f} {'>' if ok else '<='} unrelated {unrelated:.3f}")

    mml = (served.max_model_len if served else None) or expect.max_model_len
    if mml is None:
        notes.append("too-long input not checked: max_model_len unknown (not in /v1/models or the config)")
    else:
        text = long_text(mml)
        if not r.skip_if_blocked("embed too long", "embed"):
            res, ms, err = r.call(lambda: client.embed(text))
            if err is not None and err.kind == "input_too_long":
                said = f": {err.server_message}" if err.server_message else ""
                r.add("embed too long", True, f"HTTP 400 as expected{said}", ms)
            elif err is not None:
                r.fail_call("embed too long", "embed", err, ms)
            elif expect.chunked_processing:
                r.add("embed too long", True, f"accepted (chunked processing on): {len(text.split())} words", ms)
            else:
                r.add("embed too long", False, f"{len(text.split())} words over max_model_len {mml} were accepted; "
                      "vLLM should answer 400 (is max_model_len what the config says?)", ms)
        if not r.skip_if_blocked("embed truncate", "embed"):
            res, ms, err = r.call(lambda: client.embed(text, truncate_prompt_tokens=-1))
            if err or res is None:
                r.fail_call("embed truncate", "embed", err or EndpointError("no result"), ms)
            else:
                problems = vector_problems(res.vectors, expect)
                tokens = res.usage.prompt_tokens if res.usage else None
                if tokens is not None and tokens > mml:
                    problems.append(f"{tokens} prompt tokens > max_model_len {mml}")
                r.add("embed truncate", not problems, "; ".join(problems) or
                      f"truncate_prompt_tokens=-1 accepted: {tokens if tokens is not None else '?'} tokens "
                      f"(max_model_len {mml}), {len(res.vectors[0])} dims", ms)

    if reference is not None and not r.skip_if_blocked("reference embed", "embed"):
        res, ms, err = r.call(lambda: client.embed(texts))
        if err or res is None:
            r.fail_call("reference embed", "embed", err or EndpointError("no result"), ms)
        else:
            ok, detail = compare_embeddings(res.vectors, reference.embed(texts))
            r.add("reference embed", ok, detail, ms)


def _score_problems(scores: Sequence[float], expect: Expectations, n_docs: int) -> list[str]:
    problems: list[str] = []
    if len(scores) != n_docs:
        return [f"{len(scores)} scores for {n_docs} documents"]
    if not _finite(scores):
        return ["non-finite scores (NaN/inf)"]
    best = max(range(n_docs), key=lambda i: scores[i])
    if best != probes.RERANK_RELEVANT_INDEX:
        problems.append(f"document {best} scored highest, not the relevant document "
                        f"{probes.RERANK_RELEVANT_INDEX} ({scores[best]:.4f} vs "
                        f"{scores[probes.RERANK_RELEVANT_INDEX]:.4f})")
    if expect.score_range is not None:
        lo, hi = expect.score_range
        outside = [s for s in scores if not lo <= s <= hi]
        if outside:
            problems.append(f"score {outside[0]:.4f} outside {lo:g}..{hi:g} (activation not applied?)")
    return problems


def _margin(scores: Sequence[float]) -> str:
    rel = scores[probes.RERANK_RELEVANT_INDEX]
    others = max(s for i, s in enumerate(scores) if i != probes.RERANK_RELEVANT_INDEX)
    return f"relevant {rel:.4f} > others max {others:.4f}"


def _rerank_problems(res: vllm_api.Reranked, expect: Expectations, n_docs: int, top_n: int | None,
                     scores: Sequence[float] | None) -> list[str]:
    want = min(top_n, n_docs) if top_n else n_docs
    hits = res.results
    if len(hits) != want:
        return [f"{len(hits)} results, expected {want}" + (f" (top_n={top_n} not honoured)" if top_n else "")]
    idx = [h.index for h in hits]
    problems: list[str] = []
    if len(set(idx)) != len(idx) or not all(0 <= i < n_docs for i in idx):
        problems.append(f"result indices {idx} are not distinct documents")
    values = [h.score for h in hits]
    if not _finite(values):
        return [*problems, "non-finite scores (NaN/inf)"]
    if values != sorted(values, reverse=True):
        problems.append("results are not sorted by score")
    if idx and idx[0] != probes.RERANK_RELEVANT_INDEX:
        problems.append(f"document {idx[0]} ranked first, not the relevant document {probes.RERANK_RELEVANT_INDEX}")
    if expect.score_range is not None:
        lo, hi = expect.score_range
        if any(not lo <= v <= hi for v in values):
            problems.append(f"scores outside {lo:g}..{hi:g}")
    if scores is not None and not problems:
        diffs = [abs(h.score - scores[h.index]) / max(1.0, abs(scores[h.index])) for h in hits]
        if max(diffs) > SAME_SCORE_TOL:
            problems.append(f"relevance_score differs from /score by {max(diffs):.2e}")
    return problems


def _check_score(r: _Runner, client: PoolAPI, expect: Expectations, reference: Reference | None,
                 notes: list[str]) -> None:
    query, docs = probes.RERANK_QUERY, list(probes.RERANK_DOCUMENTS)
    v = expect.vllm_version
    base_scores: list[float] | None = None
    if v < vllm_api.SCORE_SINCE:
        notes.append(f"/score not checked: vLLM {format_version(v)} predates it (0.6.5)")
    else:
        for path in vllm_api.SCORE_PATHS:
            name = f"score {path}"
            if r.skip_if_blocked(name, "score"):
                continue
            res, ms, err = r.call(lambda p=path: client.score(query, docs, path=p))  # type: ignore[misc]
            if err or res is None:
                r.fail_call(name, "score", err or EndpointError("no result"), ms)
                continue
            problems = _score_problems(res.scores, expect, len(docs))
            if not problems and base_scores is not None:
                diff = max(abs(a - b) for a, b in zip(res.scores, base_scores, strict=True))
                if diff > SAME_SCORE_TOL:
                    problems.append(f"differs from {vllm_api.SCORE_PATHS[0]} by {diff:.2e}")
            if not problems and base_scores is None:
                base_scores = list(res.scores)
            r.add(name, not problems, "; ".join(problems) or
                  f"{len(res.scores)} scores, {_margin(res.scores)}", ms)
    if v < vllm_api.RERANK_SINCE:
        notes.append(f"/rerank not checked: vLLM {format_version(v)} predates it (0.7.0)")
    else:
        for path in vllm_api.RERANK_PATHS:
            name = f"rerank {path}"
            if r.skip_if_blocked(name, "rerank"):
                continue
            res_r, ms, err = r.call(lambda p=path: client.rerank(query, docs, path=p))  # type: ignore[misc]
            if err or res_r is None:
                r.fail_call(name, "rerank", err or EndpointError("no result"), ms)
                continue
            problems = _rerank_problems(res_r, expect, len(docs), None, base_scores)
            r.add(name, not problems, "; ".join(problems) or
                  f"{len(res_r.results)} results sorted, relevant first ({res_r.results[0].score:.4f})"
                  + (", same scores as /score" if base_scores is not None else ""), ms)
        if not r.skip_if_blocked("rerank top_n", "rerank"):
            res_r, ms, err = r.call(lambda: client.rerank(query, docs, top_n=TOP_N))
            if err or res_r is None:
                r.fail_call("rerank top_n", "rerank", err or EndpointError("no result"), ms)
            else:
                problems = _rerank_problems(res_r, expect, len(docs), TOP_N, base_scores)
                r.add("rerank top_n", not problems, "; ".join(problems) or
                      f"top_n={TOP_N}: {len(res_r.results)} results, relevant first", ms)
    if reference is not None and not r.skip_if_blocked("reference score", "score"):
        if v < vllm_api.SCORE_SINCE:
            return
        res, ms, err = r.call(lambda: client.score(query, docs))
        if err or res is None:
            r.fail_call("reference score", "score", err or EndpointError("no result"), ms)
        else:
            ok, detail = compare_scores(res.scores, reference.score(query, docs))
            r.add("reference score", ok, detail, ms)

# -- robustness (``poolserve test --robustness``) ------------------------------------------------

UNKNOWN_MODEL = "poolserve-no-such-model"
"""The model name the unknown-model check sends."""
CLEAN_ERRORS: frozenset[str] = frozenset({"bad_request", "input_too_long", "model_not_found"})
"""EndpointError kinds that are a clean refusal: a 4xx with vLLM's error body, the server unharmed."""
_MAX_SAID = 160


def _said(err: EndpointError) -> str:
    """What the server answered, short: ``HTTP 400 "This model's maximum context length is 256 ..."``."""
    if err.status is None:
        return f"{err.kind}: {err.message}"
    msg = " ".join((err.server_message or "").split())
    if len(msg) > _MAX_SAID:
        msg = msg[:_MAX_SAID - 1] + "…"
    return f'HTTP {err.status} "{msg}"' if msg else f"HTTP {err.status} ({err.kind})"


def _health_after(r: _Runner, client: PoolAPI) -> str | None:
    """None when ``/health`` still answers 200; else what went wrong."""
    ok, _, err = r.call(client.health, fatal=False)
    if err is not None:
        return f"/health after it: {err.message}"
    return None if ok else "/health after it: 503 (the engine died?)"


def _robust(r: _Runner, client: PoolAPI, name: str, fn: Callable[[], T],
            judge: Callable[[T | None, EndpointError | None], tuple[bool, str]]) -> T | None:
    """Send one bad input, judge the answer, then require ``/health`` 200; record the check."""
    value, ms, err = r.call(fn, fatal=False)
    ok, detail = judge(value, err)
    sick = _health_after(r, client)
    if sick:
        ok, detail = False, f"{detail}; {sick}"
    elif ok:
        detail += "; /health 200 after it"
    status = err.status if err is not None else (200 if value is not None else None)
    r.add(name, ok, detail, ms, status)
    return value


def _refused_or(accept: Callable[[Any], tuple[bool, str]]) -> Callable[[Any, EndpointError | None], tuple[bool, str]]:
    """A judge: a clean 4xx passes, as does an answer ``accept`` approves.

    A 5xx, a dropped connection or a timeout fails.
    """
    def judge(value: Any, err: EndpointError | None) -> tuple[bool, str]:
        if err is None:
            return accept(value)
        if err.kind in CLEAN_ERRORS:
            return True, f"refused cleanly: {_said(err)}"
        return False, f"not a clean answer: {_said(err)}"
    return judge


def _too_long_judge(mml: int, chunked: bool, accept: Callable[[Any], tuple[bool, str]] | None = None
                    ) -> Callable[[Any, EndpointError | None], tuple[bool, str]]:
    """A judge: a 400 naming the limit passes.

    With ``accept``, an answer it approves passes too (the input may be fewer tokens than it looks).
    """
    def judge(value: Any, err: EndpointError | None) -> tuple[bool, str]:
        if err is None and accept is not None:
            return accept(value)
        if err is None:
            if chunked:
                return True, "accepted (chunked processing on)"
            return False, f"accepted an input over max_model_len {mml}: vLLM should answer 400"
        if err.kind != "input_too_long":
            return False, f"expected a 400 naming max_model_len {mml}, got {_said(err)}"
        if str(mml) not in (err.server_message or ""):
            return False, f"the 400 does not name the limit {mml}: {_said(err)}"
        return True, f"{_said(err)} names the limit {mml}"
    return judge


def _vectors_ok(n: int, expect: Expectations) -> Callable[[Any], tuple[bool, str]]:
    def accept(res: Any) -> tuple[bool, str]:
        vectors = res.vectors
        problems = ([f"{len(vectors)} vectors for {n} inputs"] if len(vectors) != n else []) or \
            vector_problems(vectors, expect)
        if problems:
            return False, "; ".join(problems)
        return True, f"HTTP 200: {n} vectors, {len(vectors[0])} dims, all finite"
    return accept


def _ranked_ok(n: int, relevant: int | None = None, among: Sequence[int] = ()) -> Callable[[Any], tuple[bool, str]]:
    def accept(res: Any) -> tuple[bool, str]:
        hits = res.results
        if len(hits) != n:
            return False, f"{len(hits)} results for {n} documents"
        idx = [h.index for h in hits]
        values = [h.score for h in hits]
        if sorted(idx) != list(range(n)):
            return False, "result indices are not the documents sent"
        if not _finite(values):
            return False, "non-finite scores (NaN/inf)"
        if values != sorted(values, reverse=True):
            return False, "results are not sorted by score"
        if relevant is not None:
            rank = {i: k for k, i in enumerate(idx)}
            worse = [i for i in among if i != relevant and rank[i] < rank[relevant]]
            if worse:
                return False, f"document {worse[0]} ranked above the relevant document {relevant}"
        return True, f"HTTP 200: {n} results, sorted, all finite"
    return accept


def _check_robustness(r: _Runner, client: PoolAPI, expect: Expectations, served: vllm_api.ServedModel | None,
                      notes: list[str]) -> None:
    """The bad inputs a deployment must survive: each gets a clean error or a right answer, and /health stays 200.

    Both tasks: an input over max_model_len (a 400 naming the limit), an empty input (no texts / no
    documents), an unknown model name (404), a batch of :data:`~poolserve.check.probes.ROBUST_BATCH` texts,
    non-ASCII text, a very long whitespace-free token and a huge one (a 400 naming the limit); last,
    ``/health`` and a probe request.
    """
    embed = expect.task == "embed"
    mml = (served.max_model_len if served else None) or expect.max_model_len
    query = probes.RERANK_QUERY

    def send(texts: Sequence[str], q: str = query) -> Callable[[], Any]:
        return (lambda: client.embed(list(texts))) if embed else (lambda: client.rerank(q, list(texts)))

    if mml is None:
        notes.append("robust too long not checked: max_model_len unknown (not in /v1/models or the config)")
    else:
        text = long_text(mml)
        _robust(r, client, "robust too long", send([text]) if embed else send(["a short document"], text),
                _too_long_judge(mml, expect.chunked_processing))

    def empty_ok(res: Any) -> tuple[bool, str]:
        got = len(res.vectors) if embed else len(res.results)
        return (got == 0, f"HTTP 200 with {got} results" + ("" if got == 0 else " for no input"))

    _robust(r, client, "robust empty input" if embed else "robust zero documents", send([]), _refused_or(empty_ok))

    path = vllm_api.EMBEDDINGS if embed else vllm_api.RERANK_PATHS[0]
    body = (vllm_api.embed_request([probes.EMBED_TEXTS[0]], UNKNOWN_MODEL) if embed else
            vllm_api.rerank_request(query, [probes.RERANK_RELEVANT], UNKNOWN_MODEL))

    def unknown_judge(value: Any, err: EndpointError | None) -> tuple[bool, str]:
        if err is None:
            return False, f"HTTP 200 for model {UNKNOWN_MODEL!r}: the server ignores the model name"
        if err.kind == "model_not_found" and err.status == 404:
            return True, f"{_said(err)} as expected"
        return False, f"expected 404 for model {UNKNOWN_MODEL!r}, got {_said(err)}"

    _robust(r, client, "robust unknown model", lambda: client.request_json("POST", path, body), unknown_judge)

    n = probes.ROBUST_BATCH
    if embed:
        texts = probes.batch_texts(n)

        def batch_ok(res: Any) -> tuple[bool, str]:
            ok, detail = _vectors_ok(n, expect)(res)
            if ok and cosine(res.vectors[0], res.vectors[-1]) < BATCH_MIN_COSINE:
                return False, "the first and last texts are the same but their vectors differ (order mixed up?)"
            return ok, detail
        _robust(r, client, f"robust batch {n}", send(texts), _refused_or(batch_ok))
    else:
        docs = list(probes.RERANK_DOCUMENTS) + probes.batch_texts(n)[len(probes.RERANK_DOCUMENTS):]
        among = range(len(probes.RERANK_DOCUMENTS))
        _robust(r, client, f"robust batch {n}", send(docs),
                _refused_or(_ranked_ok(n, probes.RERANK_RELEVANT_INDEX, among)))

    texts = list(probes.NON_ASCII_TEXTS)
    _robust(r, client, "robust non-ascii", send(texts, texts[1]),
            _refused_or(_vectors_ok(len(texts), expect) if embed else _ranked_ok(len(texts))))

    # One whitespace-free word: 8 characters per allowed token (WordPiece makes one [UNK] of it; other
    # tokenizers may exceed the limit: a clean 400 then), and 20 (over vLLM's cap of 18 characters per
    # token, which /v1/embeddings checks before tokenizing: a 400 naming the limit; /rerank does not, and
    # answers when the tokenizer folds the word into few tokens).
    token = probes.long_token(8 * (mml or 512))
    _robust(r, client, "robust long token", send([token]) if embed else send([token, probes.RERANK_RELEVANT]),
            _refused_or(_vectors_ok(1, expect) if embed else _ranked_ok(2)))
    if mml is not None:
        huge = probes.long_token(20 * mml)
        _robust(r, client, "robust huge token", send([huge]) if embed else send([huge, probes.RERANK_RELEVANT]),
                _too_long_judge(mml, expect.chunked_processing, _vectors_ok(1, expect) if embed else _ranked_ok(2)))

    # Last: still Ready, and a normal request still gets a normal answer.
    ok, ms, err = r.call(client.health, fatal=False)
    if err is not None or not ok:
        r.add("robust healthy after", False, err.message if err else "/health: 503 after the run", ms,
              err.status if err else 503)
        return
    _, ms2, err = r.call(send(probes.EMBED_TEXTS[:2] if embed else probes.RERANK_DOCUMENTS), fatal=False)
    if err is not None:
        r.add("robust healthy after", False, f"/health 200 but a probe request failed: {err.message}", ms + ms2,
              err.status)
        return
    r.add("robust healthy after", True, "/health 200 and a probe request answered after the whole run",
          ms + ms2, 200)


def verify(client: PoolAPI, expect: Expectations, *, now: Callable[[], float],
           reference: Reference | None = None, robustness: bool = False) -> VerifyReport:
    """Run every check for ``expect.task`` against ``client``.

    A failing check is recorded and the others still run. Failures that make every further request
    fail the same way (connection refused, TLS, 401/403, an unreachable ``/health``) are raised.

    Args:
        client: talks to the served model (:class:`poolserve.check.client.PoolClient`).
        expect: what the model should look like (:func:`expectations_for`).
        now: monotonic clock in seconds, for latencies (the caller's: ``time.perf_counter``; this
            core module reads no clock).
        reference: expected outputs computed locally; adds the ``reference ...`` checks.
        robustness: also send the bad inputs of :func:`_check_robustness` (the ``robust ...`` checks).

    Raises:
        EndpointError: when the endpoint cannot be used at all.
    """
    r = _Runner(now)
    notes: list[str] = []
    start = now()
    healthy = client.health()  # any error here (refused, TLS, 401, 404 on /health) ends the run
    r.add("health", healthy, "GET /health: 200" if healthy else
          "GET /health: 503 (vLLM is starting or its engine died; see `poolserve status`)", (now() - start) * 1000)
    if healthy:
        served = _check_models(r, client, expect)
        if expect.task == "embed":
            _check_embed(r, client, expect, served, reference, notes)
        else:
            _check_score(r, client, expect, reference, notes)
        if robustness:
            _check_robustness(r, client, expect, served, notes)
    else:
        notes.append("stopped after /health: the server is not ready")
    return VerifyReport(
        name=expect.name, url=client.url, task=expect.task, served_model=expect.served_model,
        vllm_version=format_version(expect.vllm_version), checks=tuple(r.checks), notes=tuple(notes),
        reference=reference.source if reference is not None else None,
    )
