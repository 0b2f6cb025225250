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

:func:`self_test` measures the generator's own ceiling against :class:`StubServer`, a canned
``/v1/embeddings`` + ``/rerank`` server on 127.0.0.1 (in a thread of this process, so the ceiling is
a lower bound: the stub competes with the generator for the GIL).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import httpx

from poolserve.bench.metrics import (
    BaselineResult,
    BenchReport,
    MachineInfo,
    RequestResult,
    Setting,
    SettingReport,
    summarize,
)
from poolserve.bench.workload import (
    _BODY_POOL,
    DEFAULT_BATCH_SIZES,
    DEFAULT_CONCURRENCY,
    DEFAULT_INPUT_TOKENS,
    BaselineFn,
    BenchProgress,
    BenchTask,
    Bounds,
    ProgressCallback,
    Workload,
    make_query,
    settings_grid,
)
from poolserve.check.client import classify_response, classify_transport_error
from poolserve.errors import SpecError
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
    """(prompt tokens, problem) of a 2xx response; raises ProtocolError on a malformed body."""
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
                   clock: Clock) -> RequestResult:
    """Send one request and turn the outcome, success or failure, into a RequestResult.

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
        tokens, _ = _check(workload, response)
    except Exception as err:  # the bench worker: a failed request is data (STYLE.md)
        return RequestResult(False, clock() - t0, start_s, workload.batch_size, 0, _error_kind(err),
                             _describe(err))
    return RequestResult(True, clock() - t0, start_s, workload.batch_size, tokens)


# ----------------------------------------------------------------------------------------------------
# One setting



async def _closed_loop(client: httpx.AsyncClient, workload: Workload, concurrency: int, *, count: int | None,
                       until: float | None, hard_deadline: float, clock: Clock, t0: float,
                       on_done: Callable[[int], None]) -> list[RequestResult]:
    """Run ``concurrency`` workers until ``count`` requests were sent or ``until``/``hard_deadline`` passed."""
    results: list[RequestResult] = []
    bodies = [workload.body(i) for i in range(_BODY_POOL)]
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
            r = await send_one(client, workload, bodies[i % _BODY_POOL], start_s, clock)
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
                      progress: SettingProgress | None = None) -> SettingReport:
    """Warm up, then measure one setting.

    Args:
        client: an AsyncClient whose ``base_url`` is the endpoint.
        workload: what each request sends.
        concurrency: requests in flight at once.
        bounds: request count or duration, warm-up and time cap.
        clock: monotonic seconds (injectable for tests).
        cpu_clock: this process's CPU seconds.
        progress: ``progress(phase, done, total, fraction)``.

    Returns:
        The setting's report (warm-up excluded).
    """
    report, _ = await _measure_setting(client, workload, concurrency, bounds, clock=clock, cpu_clock=cpu_clock,
                                       progress=progress)
    return report


async def _measure_setting(client: httpx.AsyncClient, workload: Workload, concurrency: int, bounds: Bounds, *,
                           clock: Clock = time.perf_counter, cpu_clock: Clock = time.process_time,
                           progress: SettingProgress | None = None) -> tuple[SettingReport, str | None]:
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
        warm = await _closed_loop(client, workload, min(concurrency, warmup), count=warmup, until=None,
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

    results = await _closed_loop(client, workload, concurrency, count=bounds.requests, until=until,
                                 hard_deadline=hard, clock=clock, t0=t0, on_done=on_done)
    end = max((r.start_s + r.latency_s for r in results), default=clock() - t0)
    return summarize(results, end, setting, client_cpu_s=cpu_clock() - cpu0), note


# ----------------------------------------------------------------------------------------------------
# The sweep


def _client(endpoint: Endpoint, timeout_s: float, concurrency: int,
            transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {endpoint.token}"} if endpoint.token else {}
    verify: Any = endpoint.ca_file or endpoint.verify_tls
    limits = httpx.Limits(max_connections=max(concurrency, 1), max_keepalive_connections=max(concurrency, 1))
    return httpx.AsyncClient(base_url=endpoint.url, headers=headers, timeout=timeout_s, verify=verify,
                             limits=limits, transport=transport)


PROBE_CONNECT_TIMEOUT_S = 10.0


async def _probe(client: httpx.AsyncClient, timeout_s: float) -> str | None:
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


async def _sweep(endpoint: Endpoint, task: BenchTask, model: str | None, settings: Sequence[Setting],
                 input_tokens: int, bounds: Bounds, timeout_s: float,
                 transport: httpx.AsyncBaseTransport | None, progress: ProgressCallback | None,
                 phase: Literal["measure", "self-test"]) -> tuple[list[SettingReport], str | None, list[str]]:
    """Run every setting; returns the reports, the server's vLLM version and notes (warm-ups cut short)."""
    reports: list[SettingReport] = []
    notes: list[str] = []
    top = max((s.concurrency for s in settings), default=1)
    async with _client(endpoint, timeout_s, top, transport) as client:
        version = await _probe(client, timeout_s)
        for n, s in enumerate(settings):
            wl = Workload(task, model, input_tokens, s.batch_size)

            def cb(ph: str, done: int, total: int | None, fraction: float | None, s: Setting = s,
                   n: int = n) -> None:
                if progress:
                    shown: Any = ph if phase == "measure" else phase
                    progress(BenchProgress(shown, s, n, len(settings), done, total, fraction))

            report, note = await _measure_setting(client, wl, s.concurrency, bounds, progress=cb)
            reports.append(report)
            if note:
                notes.append(note)
    return reports, version, notes



def bench(
    endpoint: Endpoint,
    *,
    task: BenchTask = "embed",
    model: str | None = None,
    concurrency: Sequence[int] = DEFAULT_CONCURRENCY,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    bounds: Bounds = Bounds(),  # noqa: B008 - frozen
    input_tokens: int = DEFAULT_INPUT_TOKENS,
    timeout_s: float = 120.0,
    self_test: bool = False,
    baseline: BaselineFn | None = None,
    label: str | None = None,
    timestamp: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    progress: ProgressCallback | None = None,
) -> BenchReport:
    """Benchmark one endpoint over a grid of concurrency x batch size.

    Args:
        endpoint: where the model answers (URL, token, TLS).
        task: ``embed`` (``/v1/embeddings``, batch size = texts per request) or ``score``
            (``/v1/rerank``, batch size = documents per query).
        model: the served model name sent in each body (None: the server's only model).
        concurrency: requests in flight, one setting per value.
        batch_sizes: texts (or documents) per request, one setting per value.
        bounds: per-setting request count or duration, warm-up and time cap.
        input_tokens: tokens per text (approximate; the report has the server's count).
        timeout_s: per-request timeout.
        self_test: also measure the generator's ceiling against a local stub (see :func:`self_test`).
        baseline: direct in-process inference to compare with, called per batch size.
        label: names the run in comparisons and plots.
        timestamp: ISO time of the run (default: now, UTC).
        transport: httpx transport (tests inject ``httpx.MockTransport``).
        progress: called as requests complete.

    Returns:
        The frozen report.

    Raises:
        SpecError: on invalid settings.
        EndpointError: the endpoint does not answer at all, or wants a login (checked once, before the sweep).
    """
    if input_tokens < 3:
        raise SpecError(f"bench: --input-tokens {input_tokens}: must be at least 3")
    grid = settings_grid(concurrency, batch_sizes)
    stamp = timestamp or datetime.now(UTC).isoformat(timespec="seconds")
    machine = machine_info()
    reports, version, warm_notes = asyncio.run(_sweep(endpoint, task, model, grid, input_tokens, bounds, timeout_s,
                                                      transport, progress, "measure"))
    ceiling: tuple[SettingReport, ...] = ()
    if self_test:
        ceiling = tuple(run_self_test(task=task, concurrency=concurrency, batch_sizes=batch_sizes,
                                      bounds=bounds, input_tokens=input_tokens, progress=progress))
    base: list[BaselineResult] = []
    if baseline is not None:
        for b in sorted({s.batch_size for s in grid}):
            wl = Workload(task, model, input_tokens, b)
            if progress:
                progress(BenchProgress("baseline", Setting(1, b), 0, 1, 0, None, None))
            base.append(baseline(wl.pool_texts(), b, make_query() if task == "score" else None))
    notes = warm_notes + _notes(reports, ceiling)
    return BenchReport(
        timestamp=stamp, machine=replace(machine, vllm_version=version), endpoint=endpoint.url, model=model,
        task=task, input_tokens=input_tokens, settings=tuple(reports),
        warmup_requests=bounds.warmup,
        label=label, self_test=ceiling, baseline=tuple(base), notes=tuple(notes),
    )


def _notes(reports: Sequence[SettingReport], ceiling: Sequence[SettingReport]) -> list[str]:
    notes: list[str] = []
    for r in reports:
        if r.errors:
            kinds = ", ".join(f"{k} x{v}" for k, v in r.errors_by_kind.items())
            example = next(iter(r.error_examples.values()), "")
            notes.append(f"c={r.concurrency} b={r.batch_size}: {r.errors} failed ({kinds}): {example}")
    by_setting = {c.setting: c for c in ceiling}
    for r in reports:
        c = by_setting.get(r.setting)
        if c and c.requests_per_s and r.requests_per_s > 0.5 * c.requests_per_s:
            notes.append(f"c={r.concurrency} b={r.batch_size}: {r.requests_per_s:.0f} req/s is over half the "
                         f"generator's ceiling ({c.requests_per_s:.0f} req/s): the client may limit it")
    return notes


# ----------------------------------------------------------------------------------------------------
# Self-test: the generator against a canned server


class StubServer:
    """A trivial HTTP server on 127.0.0.1 answering like vLLM with canned bodies (in a thread).

    ``/v1/embeddings`` returns one ``dim``-float vector per input, ``/rerank`` (all three paths) one
    result per document, ``/version``, ``/health`` and ``/v1/models`` answer too. ``fail_every=N``
    makes every N-th embeddings request a 503 (for tests). Use as a context manager.
    """

    def __init__(self, *, dim: int = 384, model: str = "stub-model", fail_every: int = 0) -> None:
        self.dim = dim
        self.model = model
        self.fail_every = fail_every
        self.requests = 0
        self.models_seen: set[str | None] = set()
        """The ``model`` field of every POST body (tests check what the client sent)."""
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, int], bytes] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        if self._server is None:
            raise RuntimeError("StubServer is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _body(self, kind: str, n: int) -> bytes:
        key = (kind, n)
        if key not in self._cache:
            vec = [round(1 / (self.dim ** 0.5), 6)] * self.dim
            usage = {"prompt_tokens": 10 * n, "total_tokens": 10 * n, "completion_tokens": 0}
            if kind == "embed":
                data: dict[str, Any] = {"object": "list", "model": self.model, "usage": usage, "data": [
                    {"object": "embedding", "index": i, "embedding": vec} for i in range(n)]}
            else:
                data = {"id": "rerank-stub", "model": self.model, "usage": usage, "results": [
                    {"index": i, "relevance_score": 1.0 / (i + 1), "document": {"text": "d"}} for i in range(n)]}
            self._cache[key] = json.dumps(data).encode()
        return self._cache[key]

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        """The canned answer to one request (status, JSON body)."""
        with self._lock:
            self.requests += 1
            count = self.requests
        if method == "GET":
            if path == vllm_api.HEALTH:
                return 200, b""
            if path == "/version":
                return 200, b'{"version":"stub"}'
            if path == vllm_api.MODELS:
                return 200, json.dumps({"object": "list", "data": [{"id": self.model}]}).encode()
            return 404, b'{"detail":"Not Found"}'
        try:
            req = json.loads(body)
        except ValueError:
            return 400, b'{"error":{"message":"bad json"}}'
        with self._lock:
            self.models_seen.add(req.get("model"))
        if path == vllm_api.EMBEDDINGS:
            if self.fail_every and count % self.fail_every == 0:
                return 503, b'{"error":{"message":"stub: injected failure"}}'
            inputs = req.get("input")
            n = 1 if isinstance(inputs, str) else len(inputs or [])
            return 200, self._body("embed", n)
        if path in vllm_api.RERANK_PATHS:
            return 200, self._body("rerank", len(req.get("documents") or []))
        return 404, b'{"detail":"Not Found"}'

    def __enter__(self) -> StubServer:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs (40 ms)

            def _reply(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                status, payload = stub.handle(method, self.path, self.rfile.read(length) if length else b"")
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._reply("GET")

            def do_POST(self) -> None:
                self._reply("POST")

            def log_message(self, format: str, *args: Any) -> None:
                return

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="poolserve-stub", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def run_self_test(*, task: BenchTask = "embed", concurrency: Sequence[int] = DEFAULT_CONCURRENCY,
                  batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, bounds: Bounds = Bounds(),  # noqa: B008 - frozen
                  input_tokens: int = DEFAULT_INPUT_TOKENS,
                  progress: ProgressCallback | None = None) -> list[SettingReport]:
    """The generator's own ceiling: the same sweep against a :class:`StubServer` that answers instantly.

    Returns:
        One report per setting; its rates are what the generator can drive on this machine.
    """
    grid = settings_grid(concurrency, batch_sizes)
    with StubServer() as stub:
        reports, _, _ = asyncio.run(_sweep(Endpoint(url=stub.url), task, None, grid, input_tokens, bounds, 30.0,
                                           None, progress, "self-test"))
    return reports


def self_test_report(*, task: BenchTask = "embed", concurrency: Sequence[int] = DEFAULT_CONCURRENCY,
                     batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, bounds: Bounds = Bounds(),  # noqa: B008 - frozen
                     input_tokens: int = DEFAULT_INPUT_TOKENS, timestamp: str | None = None,
                     progress: ProgressCallback | None = None) -> BenchReport:
    """``poolserve bench --self-test`` without an endpoint: a report holding only the ceiling."""
    ceiling = run_self_test(task=task, concurrency=concurrency, batch_sizes=batch_sizes, bounds=bounds,
                            input_tokens=input_tokens, progress=progress)
    return BenchReport(timestamp=timestamp or datetime.now(UTC).isoformat(timespec="seconds"),
                       machine=machine_info(), endpoint=None, model=None, task=task, input_tokens=input_tokens,
                       settings=(), self_test=tuple(ceiling), label="self-test",
                       warmup_requests=bounds.warmup)


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


