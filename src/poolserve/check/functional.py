"""The functional checks of ``poolserve test`` (pure): does the served model answer, and answer right?

:func:`check_models` reads ``/v1/models``; :func:`check_embed` checks an embedding model's answers
(dimension, finite values, norm, batching, similarity, too-long input, truncation, and the reference
vectors); :func:`check_score` a reranker's (``/score``, ``/rerank`` and their versioned paths,
``top_n``, and the reference scores). Each check records its result on the :class:`Runner`; none
raises but for the fatal endpoint errors the runner lets through.
"""

from __future__ import annotations

from collections.abc import Sequence

from poolserve.check import probes
from poolserve.check.expectations import Expectations
from poolserve.check.runner import PoolAPI, Reference, Runner
from poolserve.check.vectors import (
    BATCH_MIN_COSINE,
    compare_embeddings,
    compare_scores,
    cosine,
    finite,
    l2norm,
    vector_problems,
)
from poolserve.config.versions import format_version
from poolserve.errors import EndpointError
from poolserve.vllm import api as vllm_api

SAME_SCORE_TOL = 1e-2
TOP_N = 2


def check_models(r: Runner, client: PoolAPI, expect: Expectations) -> vllm_api.ServedModel | None:
    """``/v1/models`` lists the served name (any model when none is expected).

    Returns:
        The served model's entry (its ``max_model_len`` sizes the too-long inputs), or None.
    """
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


# -- embedding models -----------------------------------------------------------------------------

def _norms(vectors: Sequence[Sequence[float]]) -> str:
    ns = [l2norm(v) for v in vectors]
    lo, hi = min(ns), max(ns)
    return f"norm {lo:.3f}" if round(lo, 3) == round(hi, 3) else f"norms {lo:.3f}-{hi:.3f}"


def check_embed(r: Runner, client: PoolAPI, expect: Expectations, served: vllm_api.ServedModel | None,
                reference: Reference | None, notes: list[str]) -> None:
    """The ``embed ...`` checks, and ``reference embed`` when there is a reference.

    Args:
        r: records the results.
        client: talks to the served model.
        expect: what the model should look like.
        served: its ``/v1/models`` entry, for ``max_model_len``.
        reference: expected vectors computed locally, or None.
        notes: gets a line for each check that cannot be made.
    """
    texts = list(probes.EMBED_TEXTS)
    single = _embed_single(r, client, expect, texts[0])
    batch = _embed_batch(r, client, expect, texts, single)
    _embed_similarity(r, batch)
    mml = (served.max_model_len if served else None) or expect.max_model_len
    if mml is None:
        notes.append("too-long input not checked: max_model_len unknown (not in /v1/models or the config)")
    else:
        _embed_too_long(r, client, expect, mml)
    if reference is not None and not r.skip_if_blocked("reference embed", "embed"):
        res, ms, err = r.call(lambda: client.embed(texts))
        if err or res is None:
            r.fail_call("reference embed", "embed", err or EndpointError("no result"), ms)
        else:
            ok, detail = compare_embeddings(res.vectors, reference.embed(texts))
            r.add("reference embed", ok, detail, ms)


def _embed_single(r: Runner, client: PoolAPI, expect: Expectations, text: str) -> list[float] | None:
    """``embed single``: one text, one right vector; returns it when it passed."""
    if r.skip_if_blocked("embed single", "embed"):
        return None
    res, ms, err = r.call(lambda: client.embed(text))
    if err or res is None:
        r.fail_call("embed single", "embed", err or EndpointError("no result"), ms)
        return None
    problems = ([f"{len(res.vectors)} vectors for 1 input"] if len(res.vectors) != 1 else []) + \
        vector_problems(res.vectors, expect)
    r.add("embed single", not problems, "; ".join(problems) or
          f"1 vector, {len(res.vectors[0])} dims, {_norms(res.vectors)}", ms)
    return None if problems else list(res.vectors[0])


def _embed_batch(r: Runner, client: PoolAPI, expect: Expectations, texts: Sequence[str],
                 single: list[float] | None) -> list[list[float]] | None:
    """``embed batch``: every text at once, text 0 the same as alone; returns the vectors when it passed."""
    if r.skip_if_blocked("embed batch", "embed"):
        return None
    res, ms, err = r.call(lambda: client.embed(texts))
    if err or res is None:
        r.fail_call("embed batch", "embed", err or EndpointError("no result"), ms)
        return None
    problems = ([f"{len(res.vectors)} vectors for {len(texts)} inputs"]
                if len(res.vectors) != len(texts) else []) + vector_problems(res.vectors, expect)
    same = ""
    if not problems and single is not None:
        c = cosine(single, res.vectors[0])
        if c < BATCH_MIN_COSINE:
            problems.append(f"text 0 alone vs in a batch: cosine {c:.5f} (order mixed up?)")
        same = f", text 0 same as alone (cosine {c:.5f})"
    r.add("embed batch", not problems, "; ".join(problems) or
          f"{len(res.vectors)} vectors, {len(res.vectors[0])} dims, {_norms(res.vectors)}{same}", ms)
    return None if problems else [list(v) for v in res.vectors]


def _embed_similarity(r: Runner, batch: list[list[float]] | None) -> None:
    """``embed similarity``: the paraphrase pair is closer than any unrelated pair."""
    if batch is None:
        r.add("embed similarity", False, "not run: embed batch failed")
        return
    para = cosine(batch[0], batch[1])
    unrelated = max(cosine(batch[0], batch[2]), cosine(batch[0], batch[3]),
                    cosine(batch[1], batch[2]), cosine(batch[1], batch[3]))
    ok = para > unrelated
    r.add("embed similarity", ok, f"paraphrases {para:.3f} {'>' if ok else '<='} unrelated {unrelated:.3f}")


def _embed_too_long(r: Runner, client: PoolAPI, expect: Expectations, mml: int) -> None:
    """``embed too long``: vLLM's 400 over ``max_model_len``; ``embed truncate``: accepted with truncation."""
    text = probes.long_text(mml)
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


# -- rerankers ------------------------------------------------------------------------------------

def _score_problems(scores: Sequence[float], expect: Expectations, n_docs: int) -> list[str]:
    problems: list[str] = []
    if len(scores) != n_docs:
        return [f"{len(scores)} scores for {n_docs} documents"]
    if not finite(scores):
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
    if not finite(values):
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


def check_score(r: Runner, client: PoolAPI, expect: Expectations, reference: Reference | None,
                notes: list[str]) -> None:
    """The ``score ...`` and ``rerank ...`` checks, and ``reference score`` when there is a reference.

    Which routes are checked follows ``expect.vllm_version``: ``/score`` since 0.6.5, ``/rerank`` since 0.7.0.

    Args:
        r: records the results.
        client: talks to the served model.
        expect: what the model should look like.
        reference: expected scores computed locally, or None.
        notes: gets a line for each route the vLLM version predates.
    """
    v = expect.vllm_version
    base_scores: list[float] | None = None
    if v < vllm_api.SCORE_SINCE:
        notes.append(f"/score not checked: vLLM {format_version(v)} predates it (0.6.5)")
    else:
        base_scores = _score_routes(r, client, expect)
    if v < vllm_api.RERANK_SINCE:
        notes.append(f"/rerank not checked: vLLM {format_version(v)} predates it (0.7.0)")
    else:
        _rerank_routes(r, client, expect, base_scores)
    if reference is not None and not r.skip_if_blocked("reference score", "score"):
        if v < vllm_api.SCORE_SINCE:
            return
        query, docs = probes.RERANK_QUERY, list(probes.RERANK_DOCUMENTS)
        res, ms, err = r.call(lambda: client.score(query, docs))
        if err or res is None:
            r.fail_call("reference score", "score", err or EndpointError("no result"), ms)
        else:
            ok, detail = compare_scores(res.scores, reference.score(query, docs))
            r.add("reference score", ok, detail, ms)


def _score_routes(r: Runner, client: PoolAPI, expect: Expectations) -> list[float] | None:
    """``score <path>`` for each score route, all with the same scores; returns the first route's when right."""
    query, docs = probes.RERANK_QUERY, list(probes.RERANK_DOCUMENTS)
    base_scores: list[float] | None = None
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
    return base_scores


def _rerank_routes(r: Runner, client: PoolAPI, expect: Expectations, base_scores: list[float] | None) -> None:
    """``rerank <path>`` for each rerank route (the same scores as ``/score`` when known), then ``rerank top_n``."""
    query, docs = probes.RERANK_QUERY, list(probes.RERANK_DOCUMENTS)
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
