"""bench: the load generator against httpx.MockTransport and the stub server; plot; the CLI."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from poolserve.bench.baseline import measure
from poolserve.bench.loadgen import run_setting
from poolserve.bench.metrics import BaselineResult, report_from_json
from poolserve.bench.run import bench
from poolserve.bench.stub import StubServer, run_self_test
from poolserve.bench.workload import BenchProgress, Bounds, Workload, make_text
from poolserve.cli.app import app, create_app
from poolserve.errors import EndpointError, SpecError
from poolserve.targets.base import Endpoint

ROOT = Path(__file__).resolve().parents[1]
URL = "http://bench.test"
runner = CliRunner()


def embeddings(n: int, tokens_per_text: int = 10) -> dict[str, Any]:
    return {"object": "list", "model": "m",
            "data": [{"object": "embedding", "index": i, "embedding": [0.5, 0.5]} for i in range(n)],
            "usage": {"prompt_tokens": tokens_per_text * n, "total_tokens": tokens_per_text * n}}


class Recorder:
    """A MockTransport handler answering like vLLM, recording each request; ``fault(i, body)`` may override."""

    def __init__(self, fault: Callable[[int, dict[str, Any]], httpx.Response | None] | None = None) -> None:
        self.posts: list[dict[str, Any]] = []
        self.paths: Counter[str] = Counter()
        self.fault = fault

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths[request.url.path] += 1
        if request.method == "GET":
            return httpx.Response(200, json={"version": "9.9.9"})
        body = json.loads(request.content)
        self.posts.append(body)
        if self.fault is not None:
            forced = self.fault(len(self.posts), body)
            if forced is not None:
                return forced
        if request.url.path == "/v1/rerank":
            docs = body["documents"]
            return httpx.Response(200, json={"model": "m", "usage": {"prompt_tokens": 7 * len(docs),
                                                                     "total_tokens": 7 * len(docs)},
                                             "results": [{"index": i, "relevance_score": 0.1}
                                                         for i in range(len(docs))]})
        return httpx.Response(200, json=embeddings(len(body["input"])))


def test_texts_are_deterministic_and_sized() -> None:
    assert make_text(5, 20) == make_text(5, 20)
    assert make_text(5, 20) != make_text(6, 20)
    assert len(make_text(5, 20).split()) == 18  # + [CLS] and [SEP]
    w = Workload("embed", "m", 16, 4)
    assert w.body(3) == w.body(3 + 64)  # the pool of bodies cycles
    assert json.loads(w.body(3))["input"] == w.texts(3) and len(w.texts(3)) == 4


def test_texts_have_the_requested_token_count_with_the_minilm_tokenizer() -> None:
    transformers = pytest.importorskip("transformers")
    from support.models import minilm_dir

    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir())
    for i in range(20):
        assert len(tok(make_text(i, 64))["input_ids"]) == 64


def test_sweep_counts_requests_and_leaves_warmup_out() -> None:
    rec = Recorder()
    report = bench(Endpoint(URL), model="m", concurrency=(1, 4), batch_sizes=(1, 8),
                   bounds=Bounds(requests=10, warmup=3), input_tokens=16, transport=httpx.MockTransport(rec),
                   timestamp="t0", label="mock")
    assert [(s.concurrency, s.batch_size) for s in report.settings] == [(1, 1), (4, 1), (1, 8), (4, 8)]
    assert all(s.requests == 10 and s.errors == 0 for s in report.settings)
    assert rec.paths["/v1/embeddings"] == 4 * (10 + 3)  # warm-up sent, not counted
    assert rec.paths["/version"] == 1
    assert {p["model"] for p in rec.posts} == {"m"}
    assert Counter(len(p["input"]) for p in rec.posts) == {1: 26, 8: 26}
    s = report.settings[2]
    # No tokenizer given: the token columns stay empty; the server's own count is kept apart, as a check.
    assert (s.tokens_per_text, s.tokens_per_s, s.server_tokens_per_text) == (None, 0.0, pytest.approx(10.0))
    assert report.tokens_counted_by == "nothing: no tokenizer given"
    assert any(n.startswith("token columns empty") and "10.0 per text" in n for n in report.notes)
    assert s.texts_per_s == pytest.approx(8 * s.requests_per_s)
    assert s.latency_p50_ms is not None and s.client_cpu_s is not None
    assert (report.timestamp, report.label, report.machine.vllm_version, report.endpoint) == \
           ("t0", "mock", "9.9.9", URL)
    assert report.machine.cores and report.machine.python


def test_failed_requests_are_recorded_by_kind_not_raised() -> None:
    def fault(i: int, body: dict[str, Any]) -> httpx.Response | None:
        if i % 5 == 1:
            return httpx.Response(503, json={"error": {"message": "busy"}})
        if i % 5 == 2:
            raise httpx.ConnectError("refused")
        if i % 5 == 3:
            return httpx.Response(200, text="not json")
        if i % 5 == 4:
            return httpx.Response(200, json=embeddings(len(body["input"]) + 1))  # wrong count
        return None

    report = bench(Endpoint(URL), concurrency=(2,), batch_sizes=(2,), bounds=Bounds(requests=20, warmup=0),
                   transport=httpx.MockTransport(Recorder(fault)))
    s = report.settings[0]
    assert s.errors_by_kind == {"bad_response": 8, "connect": 4, "http_503": 4}
    assert s.requests == 4
    assert s.error_examples["http_503"] == "busy"
    assert s.error_examples["bad_response"].startswith("response is not JSON")
    assert any("http_503" in n for n in report.notes)


def test_rerank_sends_a_query_and_k_documents() -> None:
    rec = Recorder()
    report = bench(Endpoint(URL), task="score", model="ce", concurrency=(2,), batch_sizes=(5,),
                   bounds=Bounds(requests=4, warmup=1), transport=httpx.MockTransport(rec))
    assert rec.paths["/v1/rerank"] == 5
    assert all(len(p["documents"]) == 5 and p["query"] and p["model"] == "ce" for p in rec.posts)
    s = report.settings[0]
    assert (s.requests, s.batch_size, s.server_tokens_per_text) == (4, 5, pytest.approx(7.0))


def test_duration_mode_stops_on_the_injected_clock() -> None:
    ticks = itertools.count()

    def clock() -> float:  # every call advances 10 ms
        return next(ticks) * 0.01

    async def go() -> Any:
        async with httpx.AsyncClient(base_url=URL, transport=httpx.MockTransport(Recorder())) as client:
            return await run_setting(client, Workload("embed", None, 8, 1), 2,
                                     Bounds(requests=None, duration_s=1.0, warmup=0), clock=clock)

    s = asyncio.run(go())
    # 1 s of fake time at >= 2 clock reads per request: at most 50 requests, and some were sent.
    assert 0 < s.requests <= 50
    assert s.errors == 0


def test_the_time_cap_ends_hung_requests() -> None:
    posts = itertools.count(1)

    async def hang(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and next(posts) == 3:
            await asyncio.sleep(3600)
        return httpx.Response(200, json=embeddings(1))

    # The cap must leave room for the other worker's 98 quick requests on a loaded machine: 0.5 s did not
    # at load 5 on 2 cores (requests == 97). The hung request holds the cap, so the test takes 3 s.
    report = bench(Endpoint(URL), concurrency=(2,), batch_sizes=(1,),
                   bounds=Bounds(requests=100, warmup=0, max_time_s=3.0), input_tokens=8,
                   transport=httpx.MockTransport(hang))
    s = report.settings[0]
    assert s.errors_by_kind == {"time_cap": 1}
    assert s.requests == 99


def test_the_request_timeout_bounds_the_whole_request_not_each_phase() -> None:
    # httpx times each read on its own; a queueing server once held "10 s timeout" requests for 56 s.
    # MockTransport applies no httpx timeout at all, so only a deadline over the whole request ends this.
    posts = itertools.count(1)

    async def slow(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and next(posts) == 2:
            await asyncio.sleep(30)
        return httpx.Response(200, json=embeddings(1))

    report = bench(Endpoint(URL), concurrency=(1,), batch_sizes=(1,), bounds=Bounds(requests=3, warmup=0),
                   input_tokens=8, timeout_s=0.3, transport=httpx.MockTransport(slow))
    s = report.settings[0]
    assert s.errors_by_kind == {"timeout": 1}
    assert s.error_examples["timeout"] == "TimeoutError: no complete response within the request timeout"
    assert s.requests == 2


def test_a_transport_error_without_text_is_described() -> None:
    def fault(i: int, body: dict[str, Any]) -> httpx.Response | None:
        if i == 1:
            raise httpx.ReadError("")
        return None

    report = bench(Endpoint(URL), concurrency=(1,), batch_sizes=(1,), bounds=Bounds(requests=2, warmup=0),
                   input_tokens=8, transport=httpx.MockTransport(Recorder(fault)))
    s = report.settings[0]
    assert s.errors_by_kind == {"transport": 1}
    assert s.error_examples["transport"] == "ReadError: the connection closed before a response arrived"


def test_requests_cut_by_the_time_cap_do_not_stretch_the_window() -> None:
    # Every 5th request hangs past the cap; the measured window cannot be longer than the call took
    # (cut-off requests once ended at twice the elapsed time, halving req/s).
    posts = itertools.count(1)

    async def some_hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(3600 if next(posts) % 5 == 0 else 0.01)
        return httpx.Response(200, json=embeddings(len(json.loads(request.content)["input"])))

    async def go() -> Any:
        async with httpx.AsyncClient(base_url=URL, transport=httpx.MockTransport(some_hang)) as client:
            before = time.perf_counter()
            s = await run_setting(client, Workload("embed", None, 8, 1), 2,
                                  Bounds(requests=1000, warmup=0, max_time_s=0.5))
            return s, time.perf_counter() - before

    s, wall_s = asyncio.run(go())
    assert s.errors_by_kind == {"time_cap": 2} and s.requests > 0
    assert s.duration_s <= wall_s
    assert s.requests_per_s == pytest.approx(s.requests / s.duration_s)


def test_a_warmup_cut_by_the_time_cap_leaves_the_measurement_its_own_cap_and_a_note() -> None:
    # The first (warm-up) request hangs: it used to use up the whole cap, leaving a silent all-zero row.
    posts = itertools.count(1)

    async def first_hangs(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and next(posts) == 1:
            await asyncio.sleep(3600)
        return httpx.Response(200, json=embeddings(1))

    report = bench(Endpoint(URL), concurrency=(1,), batch_sizes=(1,),
                   bounds=Bounds(requests=5, warmup=2, max_time_s=0.5), input_tokens=8,
                   transport=httpx.MockTransport(first_hangs))
    s = report.settings[0]
    assert (s.requests, s.errors) == (5, 0)
    assert any("warm-up hit the 0.5 s time cap (0 of 2 warm-up requests finished)" in n for n in report.notes)


def test_progress_reports_warmup_then_measurement() -> None:
    events: list[BenchProgress] = []
    bench(Endpoint(URL), concurrency=(1,), batch_sizes=(1,), bounds=Bounds(requests=3, warmup=2),
          transport=httpx.MockTransport(Recorder()), progress=events.append)
    assert [e.phase for e in events] == ["warmup"] * 2 + ["measure"] * 3
    assert events[-1].done == 3 and events[-1].total == 3 and events[-1].fraction == 1.0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"requests": None}, "either a request count or a duration"),
    ({"requests": 5, "duration_s": 1.0}, "either"),
    ({"requests": 0}, "at least 1"),
    ({"max_time_s": 0}, "positive"),
    ({"warmup": -1}, "--warmup -1: must be 0 or more"),
])
def test_bounds_are_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        Bounds(**kwargs)


def test_baseline_runs_per_batch_size_on_the_same_texts() -> None:
    calls: list[tuple[int, int, str | None]] = []

    def fake(texts: Any, batch_size: int, query: str | None) -> BaselineResult:
        calls.append((len(texts), batch_size, query))
        return BaselineResult("fake", batch_size, 10, 1.0, 10.0 * batch_size)

    report = bench(Endpoint(URL), concurrency=(1, 2), batch_sizes=(1, 4), bounds=Bounds(requests=2),
                   transport=httpx.MockTransport(Recorder()), baseline=fake)
    assert calls == [(64, 1, None), (256, 4, None)]
    assert [b.texts_per_s for b in report.baseline] == [10.0, 40.0]


def test_measure_times_whole_batches_after_a_warmup() -> None:
    seen: list[list[str]] = []
    ticks = itertools.count()
    r = measure(seen.append, ["a", "b", "c"], 2, min_texts=6, min_time_s=0.0, max_time_s=100.0,
                clock=lambda: float(next(ticks)), dtype="float32")
    assert seen[0] == ["a", "b"] and seen[1] == ["c", "a"]  # warm-up, then cycling
    assert (r.texts, r.batch_size, r.dtype) == (6, 2, "float32")
    assert r.texts_per_s == pytest.approx(r.texts / r.duration_s)


def test_self_test_against_the_stub_server() -> None:
    reports = run_self_test(concurrency=(1, 4), batch_sizes=(1, 8), bounds=Bounds(requests=10, warmup=2))
    assert [(s.concurrency, s.batch_size, s.requests, s.errors) for s in reports] == \
           [(1, 1, 10, 0), (4, 1, 10, 0), (1, 8, 10, 0), (4, 8, 10, 0)]
    assert all(s.requests_per_s > 0 for s in reports)


def test_stub_server_counts_and_injects_failures() -> None:
    with StubServer(fail_every=2, model="x") as stub:
        report = bench(Endpoint(stub.url), model="x", concurrency=(1,), batch_sizes=(3,),
                       bounds=Bounds(requests=10, warmup=0), self_test=False)
        assert stub.requests == 10 + 1  # + GET /version
        assert stub.models_seen == {"x"}
    s = report.settings[0]
    assert (s.requests, s.errors_by_kind) == (5, {"http_503": 5})
    assert report.machine.vllm_version == "stub"


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from poolserve.bench.plot import plot_reports

    def fake(texts: Any, batch_size: int, query: str | None) -> BaselineResult:
        return BaselineResult("fake", batch_size, 10, 1.0, 5.0)

    report = bench(Endpoint(URL), concurrency=(1, 2), batch_sizes=(1, 4), bounds=Bounds(requests=3),
                   transport=httpx.MockTransport(Recorder()), baseline=fake, label="a")
    out = plot_reports([report, report], tmp_path / "chart.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------------
# CLI


@pytest.fixture
def stub() -> Any:
    with StubServer() as s:
        yield s


def test_cli_url_writes_table_json_and_plot(stub: StubServer, tmp_path: Path) -> None:
    report_path, png = tmp_path / "r.json", tmp_path / "r.png"
    args = ["bench", "--url", stub.url, "--concurrency", "1,2", "--batch-size", "1,4", "-n", "5",
            "--input-tokens", "16", "-o", str(report_path)]
    if __import__("importlib").util.find_spec("matplotlib"):
        args += ["--plot", str(png)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "TEXTS/S" in r.stdout and "P99 MS" in r.stdout
    report = report_from_json(report_path.read_text())
    assert [(s.concurrency, s.batch_size, s.requests) for s in report.settings] == \
           [(1, 1, 5), (2, 1, 5), (1, 4, 5), (2, 4, 5)]
    assert report.endpoint == stub.url and report.input_tokens == 16
    assert stub.models_seen == {None}  # no NAME, no --model: the server's only model
    if "--plot" in args:
        assert png.read_bytes()[:4] == b"\x89PNG"
    again = runner.invoke(app, ["bench", "--url", stub.url, "--concurrency", "1", "--batch-size", "1", "-n", "3",
                                "--input-tokens", "16", "--compare", str(report_path)])
    assert again.exit_code == 0, again.output
    assert "VS PREV" in again.stdout


def test_cli_json_to_stdout_and_self_test(stub: StubServer) -> None:
    r = runner.invoke(app, ["bench", "--url", stub.url, "--concurrency", "2", "--batch-size", "2", "-n", "4",
                            "--self-test", "-o", "-"])
    assert r.exit_code == 0, r.output
    report = report_from_json(r.stdout)
    assert len(report.settings) == 1 and len(report.self_test) == 1
    assert report.self_test[0].requests == 4


def test_cli_self_test_alone() -> None:
    r = runner.invoke(app, ["bench", "--self-test", "--concurrency", "1", "--batch-size", "1", "-n", "5"])
    assert r.exit_code == 0, r.output
    assert "generator ceiling" in r.stdout


def test_cli_name_resolves_the_endpoint_through_the_target(stub: StubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeTarget:
        name = "local"

        def endpoint(self, rendered: Any, name: str) -> Endpoint:
            assert name == "msmarco-reranker"
            return Endpoint(url=stub.url, served_model="served-ce")

        def server_command(self, rendered: Any, name: str) -> tuple[list[str], dict[str, str]]:
            return list(rendered.compose(name).argv), {}

        def hf_homes(self, rendered: Any) -> list[Path]:
            return []  # the tokenizer is not on this machine: the report says so

    wired = create_app(target_factory=lambda name, options: FakeTarget())
    r = runner.invoke(wired, ["bench", "msmarco-reranker", "-c", str(ROOT / "poolserve.yaml"), "--target", "local",
                            "--concurrency", "1", "--documents", "3", "-n", "2", "-o", "-"])
    assert r.exit_code == 0, r.output
    report = report_from_json(r.stdout)
    assert (report.task, report.model, report.settings[0].batch_size) == ("score", "served-ce", 3)
    assert stub.models_seen == {"served-ce"}
    assert report.tokens_counted_by is not None and report.tokens_counted_by.startswith("nothing: ")
    assert "cross-encoder/ms-marco-MiniLM-L12-v2" in report.tokens_counted_by  # looked up by the model id


def test_cli_url_with_a_name_the_config_lacks_needs_only_task(stub: StubServer) -> None:
    config = str(ROOT / "poolserve.yaml")
    r = runner.invoke(app, ["bench", "nosuch", "--url", stub.url, "-c", config, "--task", "rerank", "--model", "ce",
                            "--concurrency", "1", "--documents", "2", "-n", "2", "-o", "-"])
    assert r.exit_code == 0, r.output
    report = report_from_json(r.stdout)
    assert (report.task, report.model, report.settings[0].batch_size) == ("score", "ce", 2)
    missing = runner.invoke(app, ["bench", "nosuch", "--url", stub.url, "-c", config, "-n", "2"])
    assert missing.exit_code == 2, missing.output
    assert missing.stderr == (f"error: 'nosuch' is not a model in {config}: with --url give --task embed or "
                              "--task score (and --model for the served name)\n")


def test_cli_url_with_a_name_the_config_defines_takes_its_task_and_model_id(stub: StubServer) -> None:
    r = runner.invoke(app, ["bench", "msmarco-reranker", "--url", stub.url, "-c", str(ROOT / "poolserve.yaml"),
                            "--concurrency", "1", "--documents", "2", "-n", "2", "-o", "-"])
    assert r.exit_code == 0, r.output
    report = report_from_json(r.stdout)
    assert report.task == "score" and report.model == "cross-encoder/ms-marco-MiniLM-L12-v2"


@pytest.mark.parametrize(("args", "message"), [
    (["bench"], "give a model NAME"),
    (["bench", "--url", "http://127.0.0.1:9", "-n", "5", "--duration", "5s"], "not both"),
    (["bench", "--url", "http://127.0.0.1:9", "--concurrency", "a,b"], "--concurrency 'a,b'"),
    (["bench", "--url", "http://127.0.0.1:9", "--duration", "soon"], "--duration 'soon'"),
    (["bench", "--url", "http://127.0.0.1:9", "--compare", "/nonexistent/old.json"], "/nonexistent/old.json"),
    (["bench", "--url", "http://127.0.0.1:9", "--baseline", "onnx"], "--baseline 'onnx'"),
    (["bench", "--url", "http://127.0.0.1:9", "--task", "score", "--batch-size", "4"], "--documents"),
    (["bench", "nope", "-c", str(ROOT / "poolserve.yaml")], "no model named 'nope'"),
    (["bench", "--url", "http://127.0.0.1:9", "--warmup", "-1", "-n", "2"], "--warmup -1"),
    (["bench", "--url", "http://127.0.0.1:9", "-n", "0"], "--requests 0: must be at least 1"),
    (["bench", "--url", "http://127.0.0.1:9", "-n", "-3"], "--requests -3: must be at least 1"),
    (["bench", "--url", "127.0.0.1:1", "-n", "2"], "--url '127.0.0.1:1': expected an http:// or https:// URL"),
    (["bench", "--url", "ftp://x", "-n", "2"], "--url 'ftp://x': expected an http:// or https:// URL"),
])
def test_cli_user_errors_are_one_line(args: list[str], message: str) -> None:
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr and "Traceback" not in r.output
    assert r.stderr.count("\n") == 1


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("option", ["-o", "--plot"])
def test_cli_output_paths_are_checked_before_the_sweep(option: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["bench", "--url", "http://127.0.0.1:9", "-n", "2"]  # nothing listens: a sweep would fail otherwise
    name = "--output" if option == "-o" else "--plot"
    r = runner.invoke(app, [*base, option, "/nonexistent/dir/r.out"])
    assert (r.exit_code, r.stderr) == (2, f"error: {name} /nonexistent/dir/r.out: directory /nonexistent/dir "
                                          "does not exist\n")
    r = runner.invoke(app, [*base, option, str(tmp_path)])
    assert (r.exit_code, r.stderr) == (2, f"error: {name} {tmp_path}: is a directory; give a file name\n")
    real_access = os.access

    def access(path: Any, mode: int, **kw: Any) -> bool:  # tests run as root: deny writes under tmp_path only
        if mode & os.W_OK and str(path).startswith(str(tmp_path)):
            return False
        return real_access(path, mode, **kw)

    monkeypatch.setattr(os, "access", access)
    r = runner.invoke(app, [*base, option, str(tmp_path / "r.out")])
    assert (r.exit_code, r.stderr) == (2, f"error: {name} {tmp_path / 'r.out'}: directory {tmp_path} is not "
                                          "writable\n")


def test_missing_extras_name_the_checkout_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from poolserve.bench.baseline import sentence_transformers_baseline

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    r = runner.invoke(app, ["bench", "--self-test", "-n", "1", "--plot", "chart.png"])
    assert r.exit_code == 2, r.output
    assert r.stderr == "error: --plot needs matplotlib: pip install -e '.[plot]' in the poolserve checkout\n"
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(SpecError, match=r"needs the 'reference' extra: pip install -e '\.\[reference\]' in the "
                                        "poolserve checkout$"):
        sentence_transformers_baseline("/m")


def test_cli_time_cap_help_says_the_warmup_has_its_own_cap() -> None:
    import typer.main

    bench_cmd = typer.main.get_command(app).commands["bench"]  # type: ignore[attr-defined]
    help_text = next(p.help for p in bench_cmd.params if p.name == "time_cap")
    assert help_text == ("Hard limit of each setting's measurement (the warm-up has its own cap of the same "
                         "length); requests in flight then count as time_cap errors.")


def test_cli_unreachable_url_fails_before_the_sweep() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    r = runner.invoke(app, ["bench", "--url", url, "--concurrency", "1,2", "--batch-size", "1", "-n", "2"])
    assert r.exit_code == 9, r.output
    assert r.stderr.splitlines()[-1].startswith(f"error: GET {url}/version: connection refused")
    assert "Traceback" not in r.output and "CONC" not in r.stdout  # no sweep, no table of zeros


def test_probe_stops_at_a_login_page_or_refused_token() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"message": "bad token"}})

    with pytest.raises(EndpointError) as ei:
        bench(Endpoint(URL, token="t"), concurrency=(1,), batch_sizes=(1,), bounds=Bounds(requests=2),
              transport=httpx.MockTransport(handler))
    assert ei.value.kind == "auth" and "token was rejected" in str(ei.value)


def test_probe_accepts_any_other_answer() -> None:
    rec = Recorder()

    async def no_version(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(404, json={"detail": "Not Found"})  # e.g. a proxy that only routes /v1
        return await rec(request)

    report = bench(Endpoint(URL), concurrency=(1,), batch_sizes=(1,), bounds=Bounds(requests=2, warmup=0),
                   transport=httpx.MockTransport(no_version))
    assert report.machine.vllm_version is None and report.settings[0].requests == 2


def test_cli_a_setting_without_one_success_exits_9_after_the_report(tmp_path: Path) -> None:
    report_path = tmp_path / "r.json"
    with StubServer(fail_every=1) as stub:  # every embeddings request is a 503
        r = runner.invoke(app, ["bench", "--url", stub.url, "--concurrency", "1", "--batch-size", "1,2", "-n", "2",
                                "--warmup", "0", "-o", str(report_path)])
    assert r.exit_code == 9, r.output
    assert "http_503:2" in r.stdout  # the table is still printed
    assert report_from_json(report_path.read_text()).settings[0].errors == 2  # and the report written
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errors == [r.stderr.splitlines()[-1]]
    assert "2 of 2 settings had no successful request; c=1 b=1: http_503 x2 (stub: injected failure)" in errors[0]
