"""The README's OpenAI-client example against real vLLM (CPU), and its two pitfalls.

The `openai` package comes with vLLM. Uses the session MiniLM server of tests/conftest.py; run
under `flock /tmp/poolserve-vllm.lock` on shared machines.
"""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from poolserve.check import probes
from poolserve.check.client import PoolClient

pytestmark = pytest.mark.vllm
openai = pytest.importorskip("openai")


def _client(server: Any) -> Any:
    # trust_env=False: a proxy from the environment must not intercept 127.0.0.1.
    return openai.OpenAI(base_url=f"{server.endpoint.url}/v1", api_key="unused",
                         http_client=httpx.Client(trust_env=False))


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_openai_client_gets_the_same_embeddings_as_poolclient(minilm_server: Any) -> None:
    texts = list(probes.EMBED_TEXTS)
    resp = _client(minilm_server).embeddings.create(model=minilm_server.name, input=texts)  # the ISVC name
    vectors = [d.embedding for d in sorted(resp.data, key=lambda d: d.index)]
    assert [len(v) for v in vectors] == [384] * len(texts)
    with PoolClient(minilm_server.endpoint.url, model=minilm_server.name) as pc:
        expected = pc.embed(texts).vectors
    assert min(_cosine(v, list(e)) for v, e in zip(vectors, expected, strict=True)) > 0.9999
    assert resp.usage.prompt_tokens > 0


def test_openai_client_extra_body_truncates_long_input(minilm_server: Any) -> None:
    long_text = "word " * 1000  # over max_model_len (256)
    client = _client(minilm_server)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=minilm_server.name, input=long_text)
    resp = client.embeddings.create(model=minilm_server.name, input=long_text,
                                    extra_body={"truncate_prompt_tokens": -1})
    assert len(resp.data[0].embedding) == 384


def test_dimensions_is_a_400_on_a_model_without_matryoshka(minilm_server: Any) -> None:
    # The README's pitfall: all-MiniLM-L6-v2 cannot shorten its vectors, and vLLM says so.
    with pytest.raises(openai.BadRequestError) as exc:
        _client(minilm_server).embeddings.create(model=minilm_server.name, input="text", dimensions=128)
    assert exc.value.status_code == 400
    assert "matryoshka" in str(exc.value).lower()
