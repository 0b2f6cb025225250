"""The load generator behind ``poolserve bench`` (edge: HTTP, clock, machine facts).

First one ``GET /version`` checks that the endpoint answers at all (and reads its vLLM version).
Closed loop: for each setting (concurrency x batch size) ``concurrency`` workers each send a request,
wait for the answer, and send the next, over one ``httpx.AsyncClient`` (its transport is injectable).
Warm-up requests run first and are left out. A setting stops after ``requests`` measured requests or
``duration_s`` seconds, and always ``max_time_s`` after its measurement started (requests still in
flight then are cancelled and counted as ``time_cap`` errors; the window ends at the cut). The warm-up
has a cap of the same length of its own; when it hits it, the report says so in a note. A failed
request is data (a :class:`~poolserve.bench.metrics.RequestResult` with an ``error_kind``), never an exception.

What each request sends and when a setting stops are :mod:`poolserve.bench.workload` (pure).
:func:`sweep` runs every setting; :func:`poolserve.bench.run.bench` makes the report of one run, and
:mod:`poolserve.bench.stub` measures the generator's own ceiling against a canned local server.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import httpx

from poolserve.bench.metrics import (
    MachineInfo,
    RequestResult,
    Setting,
    SettingReport,
    summarize,
)
from poolserve.bench.workload import (
    _BODY_POOL,
    BenchApi,
    BenchProgress,
    BenchTask,
    Bounds,
    ProgressCallback,
    TokenCountFn,
    Workload,
)
from poolserve.check.client import classify_response, classify_transport_error
from poolserve.machine import HostInfo
from poolserve.targets.base import Endpoint
from poolserve.vllm import api as vllm_api

Clock = Callable[[], float]

_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16", "amx_fp16",
              "amx_int8", "amx_tile")


# ----------------------------------------------------------------------------------------------------
# One request


def _error_kind(err: BaseException) -> str:
    if isinstance(err, httpx.TimeoutException | TimeoutError):
        return "timeout"
    if isinstance(err, httpx.ConnectError):
        return "connect"
    if isinstance(err, httpx.TransportError):
        return "transport"
    if isinstance(err, vllm_api.ProtocolError | json.JSONDecodeError | UnicodeDecodeError):
        return "bad_response"
    return type(err).__name__


_NO_TEXT = {
    "ReadError": "the connection closed before a response arrived",
    "WriteError": "the connection closed while the request was sent",
    "RemoteProtocolError": "the server closed the connection without a complete response",
    "TimeoutError": "no complete response within the request timeout",
}


def _describe(err: BaseException) -> str:
    """A failure's message: httpx's transport errors often carry no text, only their class."""
    text = str(err).strip()
    name = type(err).__name__
    if text:
        return text[:200]
    return f"{name}: {_NO_TEXT[name]}" if name in _NO_TEXT else name


def _check(workload: Workload, response: httpx.Response) -> tuple[int, str | None]:
    """(the server's usage count, problem) of a 2xx response; raises ProtocolError on a malformed body.

    vLLM and Infinity answer in the same shapes (``data[].embedding``; ``results[].relevance_score``,
    whose ``document`` is an object in vLLM and absent or a string in Infinity, which ``parse_rerank``
    accepts); only their usage counts mean different things.
    """
    try:
        data = response.json()
    except ValueError as err:
        raise vllm_api.ProtocolError(f"response is not JSON: {err}") from None
    if workload.task == "embed":
        emb = vllm_api.parse_embeddings(data)
        got, usage = len(emb.vectors), emb.usage
    else:
        rr = vllm_api.parse_rerank(data)
        got, usage = len(rr.results), rr.usage
    if got != workload.batch_size:
        raise vllm_api.ProtocolError(f"expected {workload.batch_size} results, got {got}")
    return (usage.prompt_tokens if usage else 0), None


async def send_one(client: httpx.AsyncClient, workload: Workload, body: bytes, start_s: float,
                   clock: Clock, tokens: int | None = None) -> RequestResult:
    """Send one request and turn the outcome, success or failure, into a RequestResult.

    ``tokens`` is the request's token count by the model's tokenizer (None: not counted); the server's
    own ``usage`` count is kept apart, as ``server_tokens``.

    The one place poolserve catches ``Exception``: a failed request is a measurement. The client's read
    timeout bounds the whole request: httpx applies its timeouts to each phase (connect, write, each
    read) on its own, so a server that trickles or queues could otherwise hold a request far longer.
    """
    t0 = clock()
    deadline = client.timeout.read
    try:
        async with asyncio.timeout(deadline):
            response = await client.post(workload.path(), content=body,
                                         headers={"content-type": "application/json"})
            await response.aread()
        if response.status_code >= 400:
            detail = None
            try:
                detail = vllm_api.error_message(response.json())
            except ValueError:
                detail = response.text[:200] or None
            return RequestResult(False, clock() - t0, start_s, workload.batch_size, 0,
                                 f"http_{response.status_code}", detail)
        server_tokens, _ = _check(workload, response)
    except Exception as err:  # the bench worker: a failed request is data (STYLE.md)
        return RequestResult(False, clock() - t0, start_s, workload.batch_size, 0, _error_kind(err),
                             _describe(err))
    return RequestResult(True, clock() - t0, start_s, workload.batch_size, tokens or 0,
                         server_tokens=server_tokens)


# ----------------------------------------------------------------------------------------------------
# One setting



async def closed_loop(client: httpx.AsyncClient, workload: Workload, concurrency: int, *, count: int | None,
                       until: float | None, hard_deadline: float, clock: Clock, t0: float,
                       on_done: Callable[[int], None], tokens: TokenCountFn | None = None) -> list[RequestResult]:
    """Run ``concurrency`` workers until ``count`` requests were sent or ``until``/``hard_deadline`` passed.

    ``tokens`` counts each body's tokens once, before the first request (the bodies cycle).
    """
    results: list[RequestResult] = []
    bodies = [workload.body(i) for i in range(_BODY_POOL)]
    counted = [workload.tokens(i, tokens) for i in range(_BODY_POOL)] if tokens is not None else None
    next_index = 0
    in_flight: dict[int, float] = {}  # request index -> send time (relative to t0)

    def take() -> int | None:
        nonlocal next_index
        now = clock()
        if now >= hard_deadline or (until is not None and now >= until):
            return None
        if count is not None and next_index >= count:
            return None
        i = next_index
        next_index += 1
        return i

    async def worker() -> None:
        while (i := take()) is not None:
            start_s = clock() - t0
            in_flight[i] = start_s
            r = await send_one(client, workload, bodies[i % _BODY_POOL], start_s, clock,
                               counted[i % _BODY_POOL] if counted is not None else None)
            del in_flight[i]
            results.append(r)
            on_done(len(results))

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, hard_deadline - clock()))
    if pending:
        # A cut-off request keeps its real send time and ends at the cut: the window ends there too
        # (recording it as sent at the cut would put its end at twice the elapsed time).
        cut_s = clock() - t0
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        results.extend(RequestResult(False, max(0.0, cut_s - start_s), start_s, workload.batch_size, 0,
                                     "time_cap", "still in flight at the time cap")
                       for start_s in sorted(in_flight.values()))
    return results


SettingProgress = Callable[[str, int, int | None, float | None], None]


async def run_setting(client: httpx.AsyncClient, workload: Workload, concurrency: int, bounds: Bounds, *,
                      clock: Clock = time.perf_counter, cpu_clock: Clock = time.process_time,
                      progress: SettingProgress | None = None, tokens: TokenCountFn | None = None) -> SettingReport:
    """Warm up, then measure one setting.

    Args:
        client: an AsyncClient whose ``base_url`` is the endpoint.
        workload: what each request sends.
        concurrency: requests in flight at once.
        bounds: request count or duration, warm-up and time cap.
        clock: monotonic seconds (injectable for tests).
        cpu_clock: this process's CPU seconds.
        progress: ``progress(phase, done, total, fraction)``.
        tokens: counts each request's tokens with the model's tokenizer (None: token columns stay empty).

    Returns:
        The setting's report (warm-up excluded).
    """
    report, _ = await _measure_setting(client, workload, concurrency, bounds, clock=clock, cpu_clock=cpu_clock,
                                       progress=progress, tokens=tokens)
    return report


async def _measure_setting(client: httpx.AsyncClient, workload: Workload, concurrency: int, bounds: Bounds, *,
                           clock: Clock = time.perf_counter, cpu_clock: Clock = time.process_time,
                           progress: SettingProgress | None = None,
                           tokens: TokenCountFn | None = None) -> tuple[SettingReport, str | None]:
    """:func:`run_setting`, plus a note when the warm-up was cut by its time cap."""
    setting = Setting(concurrency, workload.batch_size)
    warmup = bounds.warmup if bounds.warmup is not None else max(2, concurrency)
    note = None
    if warmup:
        def on_warm(done: int) -> None:
            if progress:
                progress("warmup", done, warmup, done / warmup)

        # The warm-up has its own cap: charged to the measurement, a slow warm-up left it no time
        # and the setting reported zeros with no error.
        start = clock()
        warm = await closed_loop(client, workload, min(concurrency, warmup), count=warmup, until=None,
                                  hard_deadline=start + bounds.max_time_s, clock=clock, t0=start, on_done=on_warm)
        cut = sum(1 for r in warm if r.error_kind == "time_cap")
        if cut:
            note = (f"c={concurrency} b={workload.batch_size}: the warm-up hit the {bounds.max_time_s:g} s time cap "
                    f"({len(warm) - cut} of {warmup} warm-up requests finished); the server may still be warming up")
    t0 = clock()
    hard = t0 + bounds.max_time_s
    cpu0 = cpu_clock()
    until = t0 + bounds.duration_s if bounds.duration_s is not None else None

    def on_done(done: int) -> None:
        if progress:
            if bounds.requests is not None:
                progress("measure", done, bounds.requests, done / bounds.requests)
            else:
                progress("measure", done, None, min(1.0, (clock() - t0) / (bounds.duration_s or 1)))

    results = await closed_loop(client, workload, concurrency, count=bounds.requests, until=until,
                                 hard_deadline=hard, clock=clock, t0=t0, on_done=on_done, tokens=tokens)
    end = max((r.start_s + r.latency_s for r in results), default=clock() - t0)
    return summarize(results, end, setting, client_cpu_s=cpu_clock() - cpu0), note


# ----------------------------------------------------------------------------------------------------
# The sweep


def open_client(endpoint: Endpoint, timeout_s: float, concurrency: int,
                transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
    """An async client for ``endpoint``: its token and TLS settings, a pool sized for ``concurrency``."""
    headers = {"authorization": f"Bearer {endpoint.token}"} if endpoint.token else {}
    verify: Any = endpoint.ca_file or endpoint.verify_tls
    limits = httpx.Limits(max_connections=max(concurrency, 1), max_keepalive_connections=max(concurrency, 1))
    return httpx.AsyncClient(base_url=endpoint.url, headers=headers, timeout=timeout_s, verify=verify,
                             limits=limits, transport=transport)


PROBE_CONNECT_TIMEOUT_S = 10.0


async def probe_version(client: httpx.AsyncClient, timeout_s: float) -> str | None:
    """Check once that the endpoint answers at all; returns its vLLM version from ``/version`` (or None).

    A sweep against nothing used to report every setting as connect errors with exit 0. Any HTTP
    answer counts as reachable (a 404 from a proxy too), except a login page or a refused token: then
    no measured request could succeed either.

    Raises:
        EndpointError: nothing answers (refused, unknown host, TLS, timeout), or 3xx/401/403.
    """
    url = str(client.base_url).rstrip("/") + "/version"
    try:
        r = await client.get("/version", timeout=httpx.Timeout(timeout_s, connect=PROBE_CONNECT_TIMEOUT_S))
    except httpx.TransportError as err:
        raise classify_transport_error(err, "GET", url, timeout_s) from err
    if r.status_code in (301, 302, 303, 307, 308, 401, 403):
        raise classify_response(r, "GET", "/version", token_sent="authorization" in client.headers)
    if r.status_code != 200:
        return None
    try:
        v = r.json().get("version")
    except (ValueError, AttributeError):
        return None
    return str(v) if v else None


async def sweep(endpoint: Endpoint, task: BenchTask, model: str | None, settings: Sequence[Setting],
                input_tokens: int, bounds: Bounds, timeout_s: float,
                transport: httpx.AsyncBaseTransport | None, progress: ProgressCallback | None,
                phase: Literal["measure", "self-test"], *, api: BenchApi = "vllm",
                tokens: TokenCountFn | None = None) -> tuple[list[SettingReport], str | None, list[str]]:
    """Run every setting; returns the reports, the server's vLLM version and notes (warm-ups cut short).

    Args:
        endpoint: where the model answers (URL, token, TLS).
        task: what each request asks for (``embed`` or ``score``).
        model: the served model name sent in each body (None: the server's only model).
        settings: the grid, in order.
        input_tokens: tokens per text (approximate).
        bounds: per-setting request count or duration, warm-up and time cap.
        timeout_s: per-request timeout.
        transport: httpx transport (tests inject ``httpx.MockTransport``).
        progress: called as requests complete.
        phase: what progress reports the measured requests as (``self-test`` for the ceiling).
        api: whose HTTP API the endpoint speaks (``vllm`` or ``infinity``: the paths).
        tokens: counts each request's tokens with the model's tokenizer (None: not counted).

    Raises:
        EndpointError: the endpoint does not answer at all, or wants a login.
    """
    reports: list[SettingReport] = []
    notes: list[str] = []
    top = max((s.concurrency for s in settings), default=1)
    async with open_client(endpoint, timeout_s, top, transport) as client:
        version = await probe_version(client, timeout_s)
        for n, s in enumerate(settings):
            wl = Workload(task, model, input_tokens, s.batch_size, api)

            def cb(ph: str, done: int, total: int | None, fraction: float | None, s: Setting = s,
                   n: int = n) -> None:
                if progress:
                    shown: Any = ph if phase == "measure" else phase
                    progress(BenchProgress(shown, s, n, len(settings), done, total, fraction))

            report, note = await _measure_setting(client, wl, s.concurrency, bounds, progress=cb, tokens=tokens)
            reports.append(report)
            if note:
                notes.append(note)
    return reports, version, notes


# ----------------------------------------------------------------------------------------------------
# The machine


def machine_info() -> MachineInfo:
    """CPU model, cores, RAM, OS, Python and load average of this machine (Linux /proc; best effort)."""
    host = HostInfo.detect()
    try:
        load: tuple[float, float, float] | None = os.getloadavg()
    except OSError:
        load = None
    return MachineInfo(
        cpu_model=host.cpu_model,
        cores=host.usable_cores,
        ram_gib=host.ram_gib,
        os=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        load_avg=tuple(round(x, 2) for x in load) if load else None,  # type: ignore[arg-type]
        cpu_flags=tuple(f for f in _CPU_FLAGS if f in host.cpu_flags),
    )

