"""vLLM's pooling HTTP API: request bodies and response parsing (pure, no HTTP).

Shapes per vLLM version (see docs/explanation/lessons/http-api.md): ``/v1/embeddings`` (OpenAI),
``/score`` + ``/v1/score`` (``text_1``/``text_2``, accepted from 0.6.5 to today), ``/rerank`` +
``/v1/rerank`` + ``/v2/rerank`` (0.7.0+). Shared by the client (``poolserve test``) and ``bench``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from poolserve.config.versions import Version

EMBEDDINGS = "/v1/embeddings"
SCORE_PATHS = ("/score", "/v1/score")
RERANK_PATHS = ("/rerank", "/v1/rerank", "/v2/rerank")
MODELS = "/v1/models"
HEALTH = "/health"
RERANK_SINCE: Version = (0, 7, 0)
SCORE_SINCE: Version = (0, 6, 5)


class ProtocolError(ValueError):
    """A response body did not have the expected shape."""


@dataclass(frozen=True)
class Usage:
    """Token counts the server reported."""

    prompt_tokens: int
    total_tokens: int


@dataclass(frozen=True)
class Embeddings:
    """Parsed ``/v1/embeddings`` response (vectors in input order)."""

    model: str
    vectors: tuple[tuple[float, ...], ...]
    usage: Usage | None


@dataclass(frozen=True)
class Scores:
    """Parsed ``/score`` response (scores in document order)."""

    model: str
    scores: tuple[float, ...]
    usage: Usage | None


@dataclass(frozen=True)
class RerankHit:
    """One rerank result."""

    index: int
    score: float
    text: str | None


@dataclass(frozen=True)
class Reranked:
    """Parsed ``/rerank`` response (best first, as the server sorted it)."""

    model: str
    results: tuple[RerankHit, ...]
    usage: Usage | None


def embed_request(texts: Sequence[str] | str, model: str | None = None, *,
                  truncate_prompt_tokens: int | None = None) -> dict[str, Any]:
    """Body for ``/v1/embeddings``. ``model`` may be omitted (vLLM >= 0.8 serves its only model)."""
    body: dict[str, Any] = {"input": texts if isinstance(texts, str) else list(texts)}
    if model:
        body["model"] = model
    if truncate_prompt_tokens is not None:
        body["truncate_prompt_tokens"] = truncate_prompt_tokens
    return body


def score_request(query: str, documents: Sequence[str], model: str | None = None) -> dict[str, Any]:
    """Body for ``/score``: ``text_1``/``text_2`` is the spelling every version since 0.6.5 accepts."""
    body: dict[str, Any] = {"text_1": query, "text_2": list(documents)}
    if model:
        body["model"] = model
    return body


def rerank_request(query: str, documents: Sequence[str], model: str | None = None,
                   top_n: int | None = None) -> dict[str, Any]:
    """Body for ``/rerank``; ``top_n`` None or 0 returns every document."""
    body: dict[str, Any] = {"query": query, "documents": list(documents)}
    if model:
        body["model"] = model
    if top_n:
        body["top_n"] = top_n
    return body


def _usage(body: Mapping[str, Any]) -> Usage | None:
    u = body.get("usage")
    if not isinstance(u, Mapping):
        return None
    total = int(u.get("total_tokens") or 0)
    # /rerank has no prompt_tokens before vLLM 0.13: total == prompt for pooling.
    return Usage(prompt_tokens=int(u.get("prompt_tokens") or total), total_tokens=total)


def _require(body: Any, key: str, what: str) -> Any:
    if not isinstance(body, Mapping) or key not in body:
        raise ProtocolError(f"{what} response has no {key!r} field")
    return body[key]


def parse_embeddings(body: Any) -> Embeddings:
    """Parse an embeddings response; vectors are put back in input order."""
    data = _require(body, "data", "embeddings")
    try:
        items = sorted(data, key=lambda d: d["index"])
        vectors = tuple(tuple(float(x) for x in d["embedding"]) for d in items)
    except (KeyError, TypeError, ValueError) as err:
        raise ProtocolError(f"embeddings response is malformed: {err}") from None
    return Embeddings(model=str(body.get("model", "")), vectors=vectors, usage=_usage(body))


def parse_scores(body: Any) -> Scores:
    """Parse a ``/score`` response; scores are put back in document order."""
    data = _require(body, "data", "score")
    try:
        items = sorted(data, key=lambda d: d["index"])
        scores = tuple(float(d["score"]) for d in items)
    except (KeyError, TypeError, ValueError) as err:
        raise ProtocolError(f"score response is malformed: {err}") from None
    return Scores(model=str(body.get("model", "")), scores=scores, usage=_usage(body))


def parse_rerank(body: Any) -> Reranked:
    """Parse a ``/rerank`` response."""
    results = _require(body, "results", "rerank")
    try:
        hits = tuple(
            RerankHit(index=int(r["index"]), score=float(r["relevance_score"]),
                      text=(r.get("document") or {}).get("text") if isinstance(r.get("document"), Mapping) else None)
            for r in results
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ProtocolError(f"rerank response is malformed: {err}") from None
    return Reranked(model=str(body.get("model", "")), results=hits, usage=_usage(body))


def error_message(body: Any) -> str | None:
    """The error text of a vLLM error response, in any of its shapes.

    ``{"error":{"message"}}`` since 0.10.1, flat before, or FastAPI's ``{"detail": ...}`` for a route
    the model does not have (vLLM >= 0.16).
    """
    if not isinstance(body, Mapping):
        return None
    err = body.get("error")
    if isinstance(err, Mapping) and "message" in err:
        return str(err["message"])
    if "message" in body:
        return str(body["message"])
    if "detail" in body:
        return str(body["detail"])
    return None


@dataclass(frozen=True)
class ServedModel:
    """One entry of ``/v1/models``: the served name and, when vLLM reports it, its max_model_len."""

    id: str
    max_model_len: int | None = None
    root: str | None = None
    """What vLLM loaded (``--model``: an HF id or a path)."""


def served_models(body: Any) -> list[ServedModel]:
    """Entries of ``/v1/models`` (``max_model_len`` is listed by every vLLM version with pooling)."""
    data = _require(body, "data", "models")
    out: list[ServedModel] = []
    for d in data:
        if isinstance(d, Mapping):
            mml = d.get("max_model_len")
            out.append(ServedModel(id=str(d.get("id")),
                                   max_model_len=int(mml) if isinstance(mml, int) else None,
                                   root=str(d["root"]) if d.get("root") else None))
    return out
