"""bench against real local vLLM servers (few requests): the report's fields, not speed."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from poolserve.bench.metrics import report_from_json
from poolserve.bench.run import bench
from poolserve.bench.tokens import TokenCounter, load_counter
from poolserve.bench.workload import Bounds
from poolserve.cli.app import app

pytestmark = pytest.mark.vllm


def _counter(server: Any) -> TokenCounter:
    counter = load_counter(str(server.model_dir))
    assert isinstance(counter, TokenCounter), counter
    return counter


def test_bench_embeddings_with_baseline(minilm_server: Any) -> None:
    from poolserve.bench.baseline import sentence_transformers_baseline

    base = sentence_transformers_baseline(str(minilm_server.model_dir), min_texts=4, min_time_s=0.1)
    counter = _counter(minilm_server)
    report = bench(minilm_server.endpoint, model=minilm_server.model_id, concurrency=(1, 2), batch_sizes=(1, 4),
                   bounds=Bounds(requests=4, warmup=1), input_tokens=32, baseline=base, label="smoke",
                   tokens=counter, tokens_counted_by=counter.source)
    assert [(s.concurrency, s.batch_size, s.requests, s.errors) for s in report.settings] == \
           [(1, 1, 4, 0), (2, 1, 4, 0), (1, 4, 4, 0), (2, 4, 4, 0)]
    for s in report.settings:
        # The model's tokenizer counts the generated size, and vLLM's own usage count agrees with it.
        assert s.tokens_per_text == s.server_tokens_per_text == 32
        assert s.texts_per_s == pytest.approx(s.batch_size * s.requests_per_s)
        assert s.latency_p50_ms is not None and s.latency_p50_ms <= s.latency_p99_ms  # type: ignore[operator]
    assert report.machine.vllm_version and report.machine.vllm_version.startswith("0.")
    assert report.model == minilm_server.model_id and report.endpoint == minilm_server.endpoint.url
    assert [(b.library, b.batch_size, b.dtype) for b in report.baseline] == \
           [("sentence-transformers", 1, "float32"), ("sentence-transformers", 4, "float32")]
    assert all(b.texts_per_s > 0 for b in report.baseline)


def test_bench_input_longer_than_the_model_is_an_http_400_error(minilm_server: Any) -> None:
    report = bench(minilm_server.endpoint, model=minilm_server.model_id, concurrency=(1,), batch_sizes=(1,),
                   bounds=Bounds(requests=2, warmup=0), input_tokens=400)
    s = report.settings[0]
    assert s.requests == 0 and s.errors_by_kind == {"http_400": 2}
    assert "256" in s.error_examples["http_400"]  # max_model_len, in vLLM's message


def test_bench_rerank(reranker_server: Any) -> None:
    counter = _counter(reranker_server)
    report = bench(reranker_server.endpoint, task="score", model=reranker_server.model_id, concurrency=(2,),
                   batch_sizes=(3,), bounds=Bounds(requests=3, warmup=1), input_tokens=16, tokens=counter,
                   tokens_counted_by=counter.source)
    s = report.settings[0]
    assert (s.requests, s.errors, s.batch_size) == (3, 0, 3)
    assert s.tokens_per_text and s.tokens_per_text > 16  # query + document per pair
    assert s.tokens_per_text == s.server_tokens_per_text  # [CLS] q [SEP] d [SEP], as vLLM counts the pair


def test_cli_bench_url_json(minilm_server: Any) -> None:
    r = CliRunner().invoke(app, ["bench", "--url", minilm_server.endpoint.url, "--concurrency", "2",
                                 "--batch-size", "2", "-n", "3", "--input-tokens", "16", "--tokenizer",
                                 str(minilm_server.model_dir), "-o", "-"])
    assert r.exit_code == 0, r.output
    report = report_from_json(r.stdout)
    assert report.settings[0].requests == 3
    assert report.settings[0].tokens_per_text == report.settings[0].server_tokens_per_text == 16
