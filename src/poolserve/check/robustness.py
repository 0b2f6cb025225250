"""The robustness checks of ``poolserve test --robustness`` (pure): bad inputs a deployment must survive.

Each bad input (too long, empty, an unknown model, :data:`~poolserve.check.probes.ROBUST_BATCH` texts,
non-ASCII, very long tokens) must be answered cleanly (a 4xx with vLLM's message, never a 5xx or a
dropped connection) or correctly, with ``/health`` 200 after each; :func:`check_robustness` ends with
``/health`` and a probe request after the whole run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from poolserve.check import probes
from poolserve.check.expectations import Expectations
from poolserve.check.runner import PoolAPI, Runner
from poolserve.check.vectors import BATCH_MIN_COSINE, cosine, finite, vector_problems
from poolserve.errors import EndpointError
from poolserve.vllm import api as vllm_api

T = TypeVar("T")

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


def _health_after(r: Runner, client: PoolAPI) -> str | None:
    """None when ``/health`` still answers 200; else what went wrong."""
    ok, _, err = r.call(client.health, fatal=False)
    if err is not None:
        return f"/health after it: {err.message}"
    return None if ok else "/health after it: 503 (the engine died?)"


def _robust(r: Runner, client: PoolAPI, name: str, fn: Callable[[], T],
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
        if not finite(values):
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



class _Send(Protocol):
    """The client call that sends ``texts`` to the model's task (``q``: the rerank query)."""

    def __call__(self, texts: Sequence[str], q: str = ...) -> Callable[[], Any]: ...


def _sender(client: PoolAPI, embed: bool) -> _Send:
    def send(texts: Sequence[str], q: str = probes.RERANK_QUERY) -> Callable[[], Any]:
        return (lambda: client.embed(list(texts))) if embed else (lambda: client.rerank(q, list(texts)))
    return send


def check_robustness(r: Runner, client: PoolAPI, expect: Expectations, served: vllm_api.ServedModel | None,
                     notes: list[str]) -> None:
    """The bad inputs a deployment must survive: each gets a clean error or a right answer, and /health stays 200.

    Both tasks: an input over max_model_len (a 400 naming the limit), an empty input (no texts / no
    documents), an unknown model name (404), a batch of :data:`~poolserve.check.probes.ROBUST_BATCH` texts,
    non-ASCII text, a very long whitespace-free token and a huge one (a 400 naming the limit); last,
    ``/health`` and a probe request.

    Args:
        r: records the results (the ``robust ...`` checks).
        client: talks to the served model.
        expect: what the model should look like.
        served: its ``/v1/models`` entry, for ``max_model_len``.
        notes: gets a line when the too-long input cannot be sized.
    """
    embed = expect.task == "embed"
    mml = (served.max_model_len if served else None) or expect.max_model_len
    send = _sender(client, embed)
    if mml is None:
        notes.append("robust too long not checked: max_model_len unknown (not in /v1/models or the config)")
    else:
        text = probes.long_text(mml)
        _robust(r, client, "robust too long", send([text]) if embed else send(["a short document"], text),
                _too_long_judge(mml, expect.chunked_processing))
    _robust_empty(r, client, embed, send)
    _robust_unknown_model(r, client, embed)
    _robust_batch(r, client, expect, send)
    texts = list(probes.NON_ASCII_TEXTS)
    _robust(r, client, "robust non-ascii", send(texts, texts[1]),
            _refused_or(_vectors_ok(len(texts), expect) if embed else _ranked_ok(len(texts))))
    _robust_long_tokens(r, client, expect, send, mml)
    _robust_healthy_after(r, client, embed, send)


def _robust_empty(r: Runner, client: PoolAPI, embed: bool, send: _Send) -> None:
    """No texts (no documents): a clean 4xx, or a 200 with no results."""
    def empty_ok(res: Any) -> tuple[bool, str]:
        got = len(res.vectors) if embed else len(res.results)
        return (got == 0, f"HTTP 200 with {got} results" + ("" if got == 0 else " for no input"))

    _robust(r, client, "robust empty input" if embed else "robust zero documents", send([]), _refused_or(empty_ok))


def _robust_unknown_model(r: Runner, client: PoolAPI, embed: bool) -> None:
    """A request naming :data:`UNKNOWN_MODEL`: vLLM's 404, not an answer from another model."""
    path = vllm_api.EMBEDDINGS if embed else vllm_api.RERANK_PATHS[0]
    body = (vllm_api.embed_request([probes.EMBED_TEXTS[0]], UNKNOWN_MODEL) if embed else
            vllm_api.rerank_request(probes.RERANK_QUERY, [probes.RERANK_RELEVANT], UNKNOWN_MODEL))

    def unknown_judge(value: Any, err: EndpointError | None) -> tuple[bool, str]:
        if err is None:
            return False, f"HTTP 200 for model {UNKNOWN_MODEL!r}: the server ignores the model name"
        if err.kind == "model_not_found" and err.status == 404:
            return True, f"{_said(err)} as expected"
        return False, f"expected 404 for model {UNKNOWN_MODEL!r}, got {_said(err)}"

    _robust(r, client, "robust unknown model", lambda: client.request_json("POST", path, body), unknown_judge)


def _robust_batch(r: Runner, client: PoolAPI, expect: Expectations, send: _Send) -> None:
    """:data:`~poolserve.check.probes.ROBUST_BATCH` texts in one request, in order (rerank: the relevant first)."""
    n = probes.ROBUST_BATCH
    if expect.task == "embed":
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


def _robust_long_tokens(r: Runner, client: PoolAPI, expect: Expectations, send: _Send, mml: int | None) -> None:
    """One very long whitespace-free word, and (``max_model_len`` known) a huge one."""
    embed = expect.task == "embed"
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


def _robust_healthy_after(r: Runner, client: PoolAPI, embed: bool, send: _Send) -> None:
    """Last: still Ready, and a normal request still gets a normal answer."""
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
