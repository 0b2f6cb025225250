"""metrics: percentiles, rates and error counts on synthetic timings; the report's JSON round trip."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from poolserve.bench.metrics import (
    BaselineResult,
    BenchReport,
    MachineInfo,
    RequestResult,
    Setting,
    compare,
    percentile,
    report_from_json,
    report_to_json,
    summarize,
)
from poolserve.errors import SpecError


def ok(latency_s: float, texts: int = 1, tokens: int = 0, start_s: float = 0.0) -> RequestResult:
    return RequestResult(True, latency_s, start_s, texts, tokens)


def failed(kind: str, detail: str = "boom") -> RequestResult:
    return RequestResult(False, 0.5, 0.0, 1, 0, kind, detail)


@pytest.mark.parametrize(("values", "p", "expected"), [
    ([1, 2, 3, 4], 50, 2.5),
    ([1, 2, 3, 4], 0, 1),
    ([1, 2, 3, 4], 100, 4),
    ([4, 3, 2, 1], 25, 1.75),  # sorted first: rank 0.75 between 1 and 2
    (list(range(1, 11)), 90, 9.1),
    (list(range(1, 101)), 99, 99.01),
    ([7], 99, 7),
])
def test_percentile_interpolates_between_closest_ranks(values: list[float], p: float, expected: float) -> None:
    assert percentile(values, p) == pytest.approx(expected)


def test_percentile_matches_numpy_default_method() -> None:
    np = pytest.importorskip("numpy")
    rng = random.Random(3)
    values = [rng.expovariate(10) for _ in range(257)]
    for p in (1, 50, 90, 99, 99.9):
        assert percentile(values, p) == pytest.approx(float(np.percentile(values, p)))


def test_percentile_of_nothing_is_none_and_p_is_checked() -> None:
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


def test_summarize_rates_count_successful_requests_over_the_window() -> None:
    results = [ok(0.1 * (i + 1), texts=4, tokens=40) for i in range(8)] + [failed("http_503"), failed("timeout")]
    r = summarize(results, 2.0, Setting(concurrency=4, batch_size=4))
    assert (r.concurrency, r.batch_size, r.requests, r.errors) == (4, 4, 8, 2)
    assert r.requests_per_s == pytest.approx(4.0)
    assert r.texts_per_s == pytest.approx(16.0)
    assert r.tokens_per_s == pytest.approx(160.0)
    assert r.tokens_per_text == pytest.approx(10.0)
    # latencies of the 8 successes only: 0.1..0.8 s
    assert r.latency_p50_ms == pytest.approx(450.0)
    assert r.latency_p90_ms == pytest.approx(730.0)
    assert r.latency_max_ms == pytest.approx(800.0)
    assert r.latency_mean_ms == pytest.approx(450.0)


def test_summarize_counts_errors_by_kind_with_the_first_message() -> None:
    results = [failed("http_503", "overloaded"), failed("http_503", "again"), failed("connect", "refused"), ok(0.2)]
    r = summarize(results, 1.0, Setting(1, 1))
    assert r.errors_by_kind == {"connect": 1, "http_503": 2}
    assert r.error_examples == {"connect": "refused", "http_503": "overloaded"}
    assert r.requests == 1


def test_summarize_empty_and_zero_duration() -> None:
    r = summarize([], 0.0, Setting(8, 32))
    assert (r.requests, r.errors, r.requests_per_s, r.texts_per_s, r.tokens_per_s) == (0, 0, 0.0, 0.0, 0.0)
    assert r.latency_p50_ms is None and r.latency_p99_ms is None and r.tokens_per_text is None
    only_errors = summarize([failed("timeout")], 1.0, Setting(1, 1))
    assert only_errors.requests_per_s == 0.0 and only_errors.latency_p50_ms is None


def _report(label: str = "fp32", scale: float = 1.0) -> BenchReport:
    s1 = summarize([ok(0.01 * scale, texts=1, tokens=30) for _ in range(10)], 1.0 * scale, Setting(1, 1),
                   client_cpu_s=0.2)
    s2 = summarize([ok(0.2 * scale, texts=32, tokens=960) for _ in range(10)] + [failed("http_400", "too long")],
                   2.0 * scale, Setting(8, 32))
    return BenchReport(
        timestamp="2025-01-01T00:00:00+00:00",
        machine=MachineInfo(cpu_model="Test CPU", cores=2, ram_gib=24.0, os="Linux", python="3.11.7",
                            vllm_version="0.32.0", load_avg=(0.1, 0.2, 0.3), cpu_flags=("avx2", "amx_bf16")),
        endpoint="http://127.0.0.1:8000", model="m", task="embed", input_tokens=32,
        settings=(s1, s2), warmup_requests=None, label=label, self_test=(s1,),
        baseline=(BaselineResult("sentence-transformers", 32, 320, 2.0, 160.0, "float32"),),
        notes=("a note",),
    )


def test_report_json_round_trip_is_exact() -> None:
    report = _report()
    text = report_to_json(report)
    assert json.loads(text)["settings"][1]["errors_by_kind"] == {"http_400": 1}
    assert report_from_json(text) == report


@pytest.mark.parametrize(("text", "message"), [
    ("{", "not JSON"),
    ('{"settings": []}', "not a poolserve bench report"),
    ('{"settings": [], "machine": {}, "version": 99}', "version 99"),
    ('{"settings": [{"x": 1}], "machine": {}}', "malformed"),
])
def test_report_from_json_names_the_file_on_bad_input(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        report_from_json(text, "old.json")
    assert str(info.value).startswith("old.json: ")


def test_compare_matches_settings_and_gives_ratios() -> None:
    fast, slow = _report("new", 1.0), _report("old", 2.0)
    rows = {(c.concurrency, c.batch_size): c for c in compare(fast, slow)}
    assert set(rows) == {(1, 1), (8, 32)}
    assert rows[(1, 1)].throughput_ratio == pytest.approx(2.0)
    assert rows[(1, 1)].latency_p50_ratio == pytest.approx(0.5)


def test_metrics_is_pure() -> None:
    code = ("import sys, poolserve.bench.metrics\n"
            "print(','.join(m for m in ('httpx', 'rich', 'torch', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
