"""Soak and overload: windows, percentiles, drift rules, error classes, the process group's memory, and
the run itself against canned servers (no vLLM, no timed assertions)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from poolserve.bench import soak as bs
from poolserve.bench import windows as bw
from poolserve.bench.metrics import RequestResult
from poolserve.bench.stub import StubServer
from poolserve.bench.workload import Workload
from poolserve.machine import group_members
from poolserve.targets.base import Endpoint
from poolserve.targets.local.lifecycle import PodStatus, Running
from poolserve.targets.local.process import free_port
from poolserve.targets.local.state import server_pgid, write_pod

ROOT = Path(__file__).resolve().parent.parent
STUB_VLLM = Path(__file__).with_name("stub_vllm.py")


def ok(start: float, latency: float) -> RequestResult:
    return RequestResult(True, latency, start, 1, 10)


def failed(start: float, latency: float, kind: str, detail: str | None = "x") -> RequestResult:
    return RequestResult(False, latency, start, 1, 0, kind, detail)


# ----------------------------------------------------------------------------------------------------
# Windows


def test_requests_fall_in_the_window_of_their_completion() -> None:
    results = [ok(0.0, 0.5), ok(9.0, 2.0), ok(10.5, 0.1), failed(19.0, 0.5, "http_503"), ok(29.0, 3.0)]
    ws = bw.windows_of(results, [], duration_s=30, window_s=10)
    assert [w.t_s for w in ws] == [0, 10, 20]
    assert [w.requests for w in ws] == [1, 2, 1]  # 29 + 3 = 32 s: drained after the last send, last window
    assert [w.errors for w in ws] == [0, 1, 0]
    assert ws[1].errors_by_kind == {"http_503": 1}
    assert ws[1].p50_ms == pytest.approx(1050.0)  # 2000 and 100 ms


def test_a_request_drained_after_the_duration_counts_in_the_last_window() -> None:
    ws = bw.windows_of([ok(29.0, 3.0)], [], duration_s=30, window_s=10)
    assert [w.requests for w in ws] == [0, 0, 1]
    assert ws[2].p50_ms == pytest.approx(3000.0)


def test_window_percentiles_interpolate_over_successful_requests_only() -> None:
    lat = [0.01 * i for i in range(1, 101)]  # 10 .. 1000 ms
    results = [ok(0.0, x) for x in lat] + [failed(0.0, 50.0, "timeout")]
    (w,) = bw.windows_of(results, [], duration_s=60, window_s=60)
    assert w.requests == 100 and w.errors == 1
    assert w.p50_ms == pytest.approx(505.0)   # rank 49.5 of 10..1000
    assert w.p99_ms == pytest.approx(990.1)   # rank 98.01
    assert w.errors_by_kind == {"timeout": 1}


def test_window_memory_is_the_peak_sample_and_none_without_samples() -> None:
    samples = [bw.Sample(1, rss_mib=100, pss_mib=80), bw.Sample(4, rss_mib=130, pss_mib=90),
               bw.Sample(25, rss_mib=120), bw.Sample(31, rss_mib=500)]  # the end sample: last window
    ws = bw.windows_of([], samples, duration_s=30, window_s=10)
    assert [w.rss_mib for w in ws] == [130, None, 500]
    assert [w.pss_mib for w in ws] == [90, None, None]


def test_a_short_remainder_joins_the_last_window_and_bad_widths_are_refused() -> None:
    assert len(bw.windows_of([], [], duration_s=34, window_s=10)) == 3
    assert len(bw.windows_of([], [], duration_s=36, window_s=10)) == 4
    assert len(bw.windows_of([], [], duration_s=2, window_s=10)) == 1
    with pytest.raises(ValueError):
        bw.windows_of([], [], duration_s=30, window_s=0)


def test_the_longest_gap_finds_a_stall_in_which_nothing_completed() -> None:
    # Completions every 0.1 s up to 11.95 s, then nothing until 16.5 s: a stall; the window's p99 alone cannot tell a
    # few slow requests from a pause of everything.
    steady = [ok(t / 10, 0.05) for t in range(100, 120)]
    stalled = [*steady, ok(12.0, 4.5), *[ok(16.5 + t / 10, 0.05) for t in range(20)]]
    ws = bw.windows_of(stalled, [], duration_s=20, window_s=10)
    assert ws[0].longest_gap_ms is None  # nothing completed in it
    assert ws[1].longest_gap_ms == pytest.approx(4550.0)  # 11.95 -> 16.5 s
    assert bw.windows_of(steady, [], duration_s=20, window_s=10)[1].longest_gap_ms == pytest.approx(100.0)
    assert ws[1].to_dict()["longest_gap_ms"] == 4550.0


def test_unclean_failures_say_when_they_happened() -> None:
    results = [failed(5.0, 0.2, "transport", "ReadError: the connection closed before a response arrived"),
               failed(1.0, 10.0, "timeout"), failed(0.5, 0.01, "http_503", "busy"), ok(0, 1),
               failed(0.1, 3.0, "transport", "RemoteProtocolError: Server disconnected")]
    assert bw.unclean_failures(results) == [
        {"sent_s": 0.1, "after_s": 3.0, "kind": "transport", "detail": "RemoteProtocolError: Server disconnected"},
        {"sent_s": 5.0, "after_s": 0.2, "kind": "transport",
         "detail": "ReadError: the connection closed before a response arrived"}]
    assert bw.unclean_failures(results, limit=1)[0]["sent_s"] == 0.1


def test_window_json_has_the_contract_keys() -> None:
    (w,) = bw.windows_of([ok(0, 0.1234)], [bw.Sample(0, rss_mib=1000.04)], duration_s=5, window_s=5)
    d = w.to_dict()
    assert {"t_s", "p50_ms", "p99_ms", "rss_mib", "requests", "errors"} <= set(d)
    assert d["p50_ms"] == 123.4 and d["rss_mib"] == 1000.0
    json.dumps(d)


# ----------------------------------------------------------------------------------------------------
# Drift


def test_flat_noisy_latency_is_stable() -> None:
    p50 = [400, 420, 395, 410, 430, 405, 398, 415, 425, 402, 410, 400]
    d = bw.drift(p50, floor=1.0, rel_floor=0.10)
    assert d.verdict == "stable"
    assert d.threshold is not None and d.threshold >= 40  # 10 % of ~405 ms


def test_a_step_up_in_latency_is_drift_and_a_step_down_too() -> None:
    assert bw.drift([100, 102, 99, 101, 130, 150, 160, 170, 175], floor=1, rel_floor=0.1).verdict == "rises"
    assert bw.drift([170, 175, 160, 150, 100, 99, 98, 101, 100], floor=1, rel_floor=0.1).verdict == "falls"


def test_a_change_within_three_times_the_window_noise_is_not_drift() -> None:
    # Windows jump by ~60 between neighbours: noise ~42; a 30 % change of the medians (~90) stays below 3x noise.
    noisy = [300, 360, 300, 360, 300, 330, 390, 330, 390, 330, 390, 420]
    d = bw.drift(noisy, floor=1, rel_floor=0.10)
    assert d.change is not None and d.change > 0.1 * (d.first or 0)
    assert d.noise is not None and d.threshold == pytest.approx(3 * d.noise)
    assert d.verdict == "stable"


def test_a_steady_leak_is_memory_drift_and_jitter_is_not() -> None:
    leak = [1500 + 5 * i for i in range(12)]  # +5 MiB per window: +40 MiB first third -> last third
    steps = bw.memory_drift([_w(rss=x) for x in leak])
    assert steps.verdict == "rises"
    jitter = [1500, 1502, 1499, 1501, 1503, 1500, 1498, 1502, 1501, 1500, 1499, 1503]
    assert bw.memory_drift([_w(rss=x) for x in jitter]).verdict == "stable"


def test_memory_floor_is_the_larger_of_16_mib_and_1_percent() -> None:
    small = bw.memory_drift([_w(rss=x) for x in [1000, 1000, 1000, 1012, 1012, 1012]])
    assert small.verdict == "stable" and small.threshold == 16
    big = bw.memory_drift([_w(rss=x) for x in [4000, 4000, 4000, 4030, 4030, 4030]])
    assert big.verdict == "stable" and big.threshold == pytest.approx(40)


def test_drift_skips_empty_windows_and_needs_three_values() -> None:
    assert bw.drift([None, 1.0, None, 2.0], floor=0).verdict == "unknown"
    assert "unknown" in bw.latency_drift([_w(p50=None)] * 5).describe("ms", "p50")
    d = bw.latency_drift([_w(p50=x) for x in [None, 100, 100, None, 100, 100, 100, 200]])
    assert d.first == 100 and d.last == 150 and d.verdict == "rises"  # 6 values: thirds of 2


def test_describe_states_the_rule_and_the_figures() -> None:
    text = bw.latency_drift([_w(p50=x) for x in [100, 101, 99, 100, 102, 100]]).describe("ms", "p50")
    assert text.startswith("stable: p50 median of the first third")
    assert "> 10.1 ms" in text and "3x the window-to-window noise 1.4 ms" in text  # 10 % of 100.5


def test_slope_per_minute() -> None:
    assert bw.slope_per_min([(0, 100), (30, 101), (60, 102), (90, None)]) == pytest.approx(2.0)
    assert bw.slope_per_min([(0, 100)]) is None


def _w(*, p50: float | None = 1.0, rss: float | None = None) -> bw.Window:
    return bw.Window(t_s=0, requests=1, errors=0, p50_ms=p50, p99_ms=p50, rss_mib=rss)


# ----------------------------------------------------------------------------------------------------
# Errors and gauges


@pytest.mark.parametrize(("kind", "detail", "expected"), [
    ("http_503", "Service Unavailable: server overloaded", "clean"),
    ("http_400", "", "clean_no_message"),
    ("timeout", "ReadTimeout", "client_timeout"),
    ("time_cap", "still in flight", "client_timeout"),
    ("transport", "Server disconnected without sending a response.", "unclean"),
    ("connect", "All connection attempts failed", "unclean"),
    ("bad_response", "response is not JSON", "unclean"),
])
def test_error_classes(kind: str, detail: str, expected: str) -> None:
    assert bw.error_class(kind, detail) == expected


def test_classify_and_count_only_failures() -> None:
    rs = [ok(0, 1), failed(0, 1, "http_503", "busy"), failed(0, 1, "transport", "reset"),
          failed(0, 1, "transport", "reset 2"), failed(0, 1, "timeout")]
    assert bw.classify(rs) == {"client_timeout": 1, "clean": 1, "unclean": 2}
    assert bw.errors_by_kind(rs) == {"http_503": 1, "timeout": 1, "transport": 2}
    assert bw.error_examples(rs)["transport"] == "reset"


def test_parse_gauges_sums_label_sets_and_skips_comments() -> None:
    text = "\n".join([
        "# HELP vllm:num_requests_running Number of requests in model execution batches.",
        "# TYPE vllm:num_requests_running gauge",
        'vllm:num_requests_running{engine="0",model_name="m"} 3.0',
        'vllm:num_requests_running{engine="1",model_name="m"} 1.0',
        'vllm:num_requests_waiting{engine="0",model_name="m"} 250.0',
        'vllm:num_requests_waiting_by_reason{engine="0",reason="capacity"} 9.0',
        "vllm:num_requests_running_total 7",
        "garbage line",
    ])
    assert bw.parse_gauges(text, bw.QUEUE_GAUGES) == {"vllm:num_requests_running": 4.0,
                                                       "vllm:num_requests_waiting": 250.0}


def test_the_windowing_module_is_pure() -> None:
    code = ("import sys, poolserve.bench.windows\n"
            "print(','.join(m for m in ('httpx', 'asyncio', 'rich', 'kubernetes') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# ----------------------------------------------------------------------------------------------------
# Memory of a process group (a real group: the stub server and its child, like vLLM's API server + engine)


@pytest.fixture
def stub_group() -> object:
    proc = subprocess.Popen([sys.executable, str(STUB_VLLM), "--host", "127.0.0.1", "--port", str(free_port())],
                            env={**os.environ, "STUB_CHILD": "1", "STUB_DELAY_S": "0"}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while len(group_members(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    yield proc
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_group_memory_sums_every_process_of_the_group(stub_group: subprocess.Popen[bytes]) -> None:
    members = group_members(stub_group.pid)
    assert len(members) == 2
    rss, pss, n = bs.group_memory(stub_group.pid)
    assert n == 2
    one_rss, one_pss, _ = bs.group_memory(stub_group.pid, members=lambda _: [stub_group.pid])
    assert rss > one_rss > 0
    # Shared pages (the interpreter) count once per process in RSS but are split in PSS.
    assert 0 < pss <= rss
    assert one_pss <= one_rss


def test_group_memory_of_a_gone_group_is_zero() -> None:
    assert bs.group_memory(1 << 22, members=lambda _: [1 << 22]) == (0.0, 0.0, 1)
    assert bs.group_memory(1 << 22)[2] == 0


def test_local_server_pgid_reads_the_supervisors_pod_file(tmp_path: Path) -> None:
    assert server_pgid(tmp_path, "m") is None
    base = PodStatus(name="m", uid="u", supervisor_pid=1, supervisor_ticks=None, restart_policy="Always", port=1)
    write_pod(tmp_path, base)
    assert server_pgid(tmp_path, "m") is None  # between two containers
    write_pod(tmp_path, PodStatus(**{**base.__dict__, "running": Running(pid=41, pgid=40, ticks=None,
                                                                         started_at=0.0)}))
    assert server_pgid(tmp_path, "m") == 40


# ----------------------------------------------------------------------------------------------------
# The run: poolserve bench's generator against canned servers


def test_run_load_measures_and_samples_beside_the_load() -> None:
    calls: list[float] = []

    def sample(t: float) -> bw.Sample:
        calls.append(t)
        return bw.Sample(t, rss_mib=100.0 + len(calls))

    with StubServer(fail_every=5) as stub:
        run = asyncio.run(bs.run_load(Endpoint(url=stub.url), Workload("embed", None, 16, 1), 4, 0.6,
                                      warmup=4, sample=sample, sample_every_s=0.2))
    assert run.vllm_version == "stub"
    assert len(run.samples) >= 2 and run.samples[-1].t_s == run.end_s  # a sample at the start and at the end
    assert run.results and all(r.ok or r.error_kind == "http_503" for r in run.results)
    assert any(not r.ok for r in run.results)
    assert bw.classify(run.results) == {"clean": sum(1 for r in run.results if not r.ok)}
    ws = bw.windows_of(run.results, run.samples, run.duration_s, 0.3)
    assert sum(w.requests + w.errors for w in ws) == len(run.results)


def test_run_load_reports_a_reset_connection_as_unclean() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/version":
            return httpx.Response(200, json={"version": "mock"})
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)

    run = asyncio.run(bs.run_load(Endpoint(url="http://mock"), Workload("embed", None, 16, 1), 2, 0.2,
                                  transport=httpx.MockTransport(handler)))
    assert run.results and not any(r.ok for r in run.results)
    assert bw.errors_by_kind(run.results) == {"transport": len(run.results)}
    assert bw.classify(run.results) == {"unclean": len(run.results)}


def _soak_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak_script", ROOT / "benchmarks" / "soak.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_soak_script_writes_the_contract_files(tmp_path: Path, stub_group: subprocess.Popen[bytes]) -> None:
    script = _soak_script()
    with StubServer() as stub:
        rc = script.main(["--url", stub.url, "--pgid", str(stub_group.pid), "--duration", "0.9", "--window",
                          "0.3", "--sample", "0.1", "--concurrency", "4", "--input-tokens", "16", "--levels", "1,8",
                          "--overload-duration", "0.3", "--client-timeout", "5", "--out", str(tmp_path)])
    assert rc == 0
    soak = json.loads((tmp_path / "soak.json").read_text())
    assert {"machine", "concurrency", "duration_s", "requests", "errors_by_kind", "windows", "drift"} <= set(soak)
    assert {"cpu_model", "cores", "cpu_flags", "has_avx512", "has_amx", "load_before", "load_after"} <= set(
        soak["machine"])
    assert soak["concurrency"] == 4 and soak["requests"] > 0 and soak["errors_by_kind"] == {}
    assert len(soak["windows"]) == 3
    for w in soak["windows"]:
        assert {"t_s", "p50_ms", "p99_ms", "rss_mib", "requests", "errors"} <= set(w)
    assert all(w["rss_mib"] and w["rss_mib"] > 0 for w in soak["windows"])  # the stub group's memory
    assert isinstance(soak["drift"]["latency"], str) and isinstance(soak["drift"]["memory"], str)
    over = json.loads((tmp_path / "overload.json").read_text())
    assert [lv["concurrency"] for lv in over["levels"]] == [1, 8]
    for lv in over["levels"]:
        assert {"concurrency", "ok", "errors_by_kind", "p50_ms", "p99_ms", "max_ms"} <= set(lv)
        assert lv["ok"] > 0 and lv["errors_by_kind"] == {}
        assert lv["health_after"] == 200
    assert "refused nothing" in over["verdict"] and "every error was clean" in over["verdict"]


def test_overload_verdict_names_refusals_and_unclean_errors() -> None:
    script = _soak_script()
    level = {"concurrency": 1024, "ok": 10, "p50_ms": 1.0, "p99_ms": 2.0, "max_ms": 3.0, "vllm_waiting_max": 900,
             "drain_s": 4.0, "health_after": 200, "errors_by_kind": {"http_503": 3, "transport": 2},
             "error_classes": {"clean": 3, "unclean": 2}}
    text = script.overload_verdict([level])
    assert "refused 3 requests (http_503)" in text and "2 errors were NOT clean" in text


# ----------------------------------------------------------------------------------------------------
# CPU beside the load


def _burn() -> None:
    t = time.process_time()
    while time.process_time() - t < 0.05:
        pass


def test_cpu_meter_counts_this_process_and_the_group_from_the_second_reading() -> None:
    meter = bs.CpuMeter()
    assert meter.read([os.getpid()]) == (None, None, None)
    _burn()
    busy, server, client = meter.read([os.getpid()])
    assert busy is not None and busy > 0
    assert server is not None and server > 0   # the "group" here is this very process
    assert client is not None and client > 0
    # A pid that was not there at the previous reading counts from now on, not from its start.
    _, server, _ = meter.read([os.getpid(), 1])
    assert server is not None and server >= 0


def test_other_cpu_is_the_machine_minus_server_and_client() -> None:
    assert bw.Sample(0, cpu_busy=1.9, cpu_server=1.2, cpu_client=0.3).cpu_other == pytest.approx(0.4)
    assert bw.Sample(0, cpu_busy=1.0, cpu_server=1.2, cpu_client=0.3).cpu_other == 0.0
    assert bw.Sample(0, cpu_busy=1.0).cpu_other is None
    (w,) = bw.windows_of([], [bw.Sample(1, cpu_busy=2.0, cpu_server=1.0, cpu_client=0.2),
                              bw.Sample(2, cpu_busy=1.0, cpu_server=0.8, cpu_client=0.2), bw.Sample(3)],
                         duration_s=5, window_s=5)
    assert w.cpu_server == pytest.approx(0.9) and w.cpu_other == pytest.approx(0.4)
    assert w.to_dict()["cpu_other_cores"] == 0.4
    # The hypervisor's steal is given apart (it is also inside "other": no process here used it).
    (w,) = bw.windows_of([], [bw.Sample(1, cpu_busy=2.0, cpu_server=1.0, cpu_client=0.2, cpu_steal=0.6)],
                         duration_s=5, window_s=5)
    assert w.cpu_steal == pytest.approx(0.6) and w.to_dict()["cpu_steal_cores"] == 0.6


def test_cpu_meter_reads_steal_from_proc_stat(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([(100, 1000, 2, 10), (400, 1400, 2, 110)])  # 400 jiffies: 300 busy, of which 100 stolen
    monkeypatch.setattr(bs, "_machine_ticks", lambda: next(ticks))
    clock = iter([0.0, 2.0])
    meter = bs.CpuMeter(clock=lambda: next(clock))
    meter.read([])
    busy, _, _ = meter.read([])
    assert busy == pytest.approx(1.5) and meter.steal == pytest.approx(0.5)


def test_server_sampler_reads_the_group_and_survives_a_server_without_metrics(
        stub_group: subprocess.Popen[bytes]) -> None:
    with StubServer() as stub:
        sampler = bs.ServerSampler(lambda: stub_group.pid, metrics_url=stub.url)
        first = sampler(0.0)
        second = sampler(1.0)
        sampler.close()
    assert first.pgid == stub_group.pid and first.processes == 2
    assert first.rss_mib is not None and first.rss_mib > 0
    assert first.cpu_server is None and second.cpu_server is not None and second.cpu_server >= 0
    assert second.waiting is None and second.running is None  # the canned server has no /metrics
    gone = bs.ServerSampler(lambda: None)(0.0)
    assert gone.rss_mib is None and gone.processes == 0 and gone.cpu_server is None


def test_markdown_tables_from_the_result_files(tmp_path: Path) -> None:
    script = _soak_script()
    soak = {"concurrency": 64, "batch_size": 1, "input_tokens": 128, "duration_s": 360.0, "requests": 10,
            "requests_per_s": 1.0, "errors_by_kind": {}, "p50_ms": 1.0, "p99_ms": 2.0, "max_ms": 3.0,
            "windows": [{"t_s": 0, "requests": 10, "errors": 0, "p50_ms": 1.0, "p99_ms": 2.0, "rss_mib": 2700.0}],
            "drift": {"latency": "stable: x", "memory": "rises: y"}}
    text = script.markdown(soak, None)
    assert "| 0 | 10 | 0 | 1.0 | 2.0 | - | 2,700.0 | - |" in text and "- memory: rises: y" in text
