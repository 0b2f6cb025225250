"""The load generator's own ceiling (edge: HTTP server thread, clock): ``poolserve bench --self-test``.

:class:`StubServer` is a canned ``/v1/embeddings`` + ``/rerank`` server on 127.0.0.1 (in a thread of
this process, so the ceiling is a lower bound: the stub competes with the generator for the GIL).
:func:`run_self_test` runs the same sweep as ``poolserve bench`` (:func:`poolserve.bench.loadgen.sweep`)
against it; :func:`self_test_report` is that ceiling alone as a report, when no endpoint is given.
Tests use the stub as a fast, real HTTP server.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from poolserve.bench.loadgen import machine_info, sweep
from poolserve.bench.metrics import BenchReport, SettingReport
from poolserve.bench.workload import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_CONCURRENCY,
    BenchTask,
    Bounds,
    ProgressCallback,
    settings_grid,
)
from poolserve.config.defaults import DEFAULT_INPUT_TOKENS
from poolserve.targets.base import Endpoint
from poolserve.vllm import api as vllm_api


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
        reports, _, _ = asyncio.run(sweep(Endpoint(url=stub.url), task, None, grid, input_tokens, bounds, 30.0,
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
