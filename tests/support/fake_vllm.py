"""A fake vLLM pooling server for httpx.MockTransport: answers like vLLM 0.32 (shapes, errors, routes).

Faults are switched on with attributes (``fake.nan = True``) or by replacing a route in
``fake.routes``; ``fake.calls`` records ``(method, path, body)``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from typing import Any

import httpx

from poolserve.check import probes

Handler = Callable[[httpx.Request], httpx.Response]

# Probe texts get fixed directions: 0 and 1 are paraphrases, 2 and 3 unrelated.
_PROBE_DIRECTIONS = {
    probes.EMBED_TEXTS[0]: {0: 1.0, 1: 0.3},
    probes.EMBED_TEXTS[1]: {0: 1.0, 2: 0.3},
    probes.EMBED_TEXTS[2]: {3: 1.0},
    probes.EMBED_TEXTS[3]: {4: 1.0, 0: 0.1},
}


def vllm_error(status: int, message: str, type_: str = "BadRequestError", param: str | None = None) -> httpx.Response:
    """vLLM >= 0.10.1 error body."""
    return httpx.Response(status, json={"error": {"message": message, "type": type_, "param": param, "code": status}})


def not_found_route() -> httpx.Response:
    """FastAPI's 404 for a route vLLM >= 0.16 did not register for this model."""
    return httpx.Response(404, json={"detail": "Not Found"})


class FakeVllm:
    """One served model. ``task`` is ``embed`` or ``score`` (a cross-encoder)."""

    def __init__(self, task: str = "embed", served: tuple[str, ...] = ("minilm",), dims: int = 384,
                 max_model_len: int = 256, token: str | None = None) -> None:
        self.task = task
        self.served = served
        self.dims = dims
        self.max_model_len = max_model_len
        self.token = token
        self.calls: list[tuple[str, str, Any]] = []
        # faults
        self.normalize = True
        self.nan = False
        self.swap_batch = False
        self.accept_long = False
        self.reverse_rerank = False
        self.ignore_top_n = False
        self.relevant_loses = False
        self.score_offset = 0.0
        self.healthy = True
        self.routes: dict[str, Handler] = {}

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def paths(self) -> list[str]:
        return [p for _, p, _ in self.calls]

    # -- model ----------------------------------------------------------------------------------

    def tokens(self, text: str) -> int:
        return len(text.split()) + 2

    def vector(self, text: str) -> list[float]:
        v = [0.0] * self.dims
        known = _PROBE_DIRECTIONS.get(text)
        if known:
            for i, x in known.items():
                v[i] = x
        else:
            digest = hashlib.sha256(text.encode()).digest()
            for i in range(self.dims):
                v[i] = (digest[i % len(digest)] - 127.5) / 127.5
        if self.nan:
            v[0] = math.nan
        if self.normalize:
            n = math.sqrt(sum(x * x for x in v if not math.isnan(x))) or 1.0
            v = [x / n for x in v]
        return v

    def relevance(self, query: str, doc: str, i: int) -> float:
        relevant = doc == probes.RERANK_RELEVANT
        if self.relevant_loses:
            relevant = not relevant and i == 0
        return (5.25 if relevant else -3.0 - 0.5 * i) + self.score_offset

    # -- HTTP -----------------------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content) if request.content else None
        self.calls.append((request.method, path, body))
        if self.token is not None and request.headers.get("authorization") != f"Bearer {self.token}":
            return httpx.Response(401, text="Unauthorized")
        if path in self.routes:
            return self.routes[path](request)
        if path == "/health":
            return httpx.Response(200 if self.healthy else 503)
        if path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [
                {"id": s, "object": "model", "root": "/models/x", "max_model_len": self.max_model_len}
                for s in self.served]})
        # Routing comes first (FastAPI 404 for a route this task has not registered), then the model name.
        handlers: dict[str, Callable[[dict[str, Any]], httpx.Response]] = {
            "/score": self.score, "/v1/score": self.score,
            "/rerank": self.rerank, "/v1/rerank": self.rerank, "/v2/rerank": self.rerank}
        if self.task == "embed":
            handlers["/v1/embeddings"] = self.embeddings
        if path not in handlers:
            return not_found_route()
        if isinstance(body, dict) and body.get("model") is not None and body["model"] not in self.served:
            return vllm_error(404, f"The model `{body['model']}` does not exist.", "NotFoundError", "model")
        return handlers[path](body)

    def _too_long(self, n: int) -> httpx.Response:
        return vllm_error(400, f"This model's maximum context length is {self.max_model_len} tokens. However, "
                          f"your prompt contains at least {self.max_model_len + 1} input tokens, which exceeds "
                          "this limit even without any output tokens. Please reduce the length of the input "
                          f"prompt. (parameter=input_tokens, value={n})", param="input_tokens")

    def _too_many_chars(self, chars: int) -> httpx.Response:
        # vLLM 0.32 refuses a text longer than max_model_len * 18 characters before tokenizing it.
        return vllm_error(400, f"This model's maximum context length is {self.max_model_len} tokens. However, your "
                          f"prompt contains {chars} characters (more than {self.max_model_len * 18} characters, which "
                          f"is the upper bound for {self.max_model_len} input tokens). Please reduce the length of "
                          f"the input prompt. (parameter=input_text, value={chars})", param="input_text")

    def embeddings(self, body: dict[str, Any]) -> httpx.Response:
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        if not texts:
            return vllm_error(400, "You must pass at least one prompt")
        truncate = body.get("truncate_prompt_tokens")
        counts = []
        for t in texts:
            if len(t) > self.max_model_len * 18 and truncate != -1:
                return self._too_many_chars(len(t))
            n = self.tokens(t)
            if truncate == -1:
                n = min(n, self.max_model_len)
            elif n > self.max_model_len and not self.accept_long:
                return self._too_long(n)
            counts.append(n)
        data = [{"index": i, "object": "embedding", "embedding": self.vector(t)} for i, t in enumerate(texts)]
        if self.swap_batch and len(data) > 1:
            data[0]["embedding"], data[1]["embedding"] = data[1]["embedding"], data[0]["embedding"]
        body_out = {"id": "embd-1", "object": "list", "created": 1, "model": self.served[0], "data": data,
                    "usage": {"prompt_tokens": sum(counts), "total_tokens": sum(counts), "completion_tokens": 0}}
        # json.dumps writes NaN as a bare token (as Python servers do); httpx's json= refuses it.
        return httpx.Response(200, content=json.dumps(body_out).encode(),
                              headers={"content-type": "application/json"})

    def _scores(self, query: str, docs: list[str]) -> list[float]:
        if self.task == "embed":  # bi-encoder: cosine of the embeddings (vLLM >= 0.8)
            q = self.vector(query)
            return [sum(a * b for a, b in zip(q, self.vector(d), strict=True)) for d in docs]
        return [self.relevance(query, d, i) for i, d in enumerate(docs)]

    def _pairs_problem(self, query: str, docs: list[str]) -> httpx.Response | None:
        if not docs:
            return vllm_error(400, "At least one text_pair element must be given")
        for d in docs:  # no character cap here (vLLM 0.32 applies it to /v1/embeddings only)
            n = self.tokens(query) + self.tokens(d)
            if n > self.max_model_len and not self.accept_long:
                return self._too_long(n)
        return None

    def score(self, body: dict[str, Any]) -> httpx.Response:
        docs = body["text_2"] if isinstance(body["text_2"], list) else [body["text_2"]]
        problem = self._pairs_problem(body["text_1"], docs)
        if problem is not None:
            return problem
        scores = self._scores(body["text_1"], docs)
        return httpx.Response(200, json={
            "id": "score-1", "object": "list", "created": 1, "model": self.served[0],
            "data": [{"index": i, "object": "score", "score": s} for i, s in enumerate(scores)],
            "usage": {"prompt_tokens": 31, "total_tokens": 31}})

    def rerank(self, body: dict[str, Any]) -> httpx.Response:
        docs = body["documents"]
        problem = self._pairs_problem(body["query"], docs)
        if problem is not None:
            return problem
        scores = self._scores(body["query"], docs)
        order = sorted(range(len(docs)), key=lambda i: scores[i], reverse=not self.reverse_rerank)
        top_n = body.get("top_n") or 0
        if top_n and not self.ignore_top_n:
            order = order[:top_n]
        return httpx.Response(200, json={
            "id": "score-2", "model": self.served[0], "usage": {"prompt_tokens": 31, "total_tokens": 31},
            "results": [{"index": i, "document": {"text": docs[i], "multi_modal": None},
                         "relevance_score": scores[i]} for i in order]})
