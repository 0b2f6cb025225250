"""One ``poolserve bench`` run (edge: HTTP, clock, machine facts): the grid against an endpoint, as one report.

:func:`bench` sweeps every setting (concurrency x batch size) with the load generator
(:mod:`poolserve.bench.loadgen`), optionally measures the generator's own ceiling against the stub
(:mod:`poolserve.bench.stub`) and a direct in-process baseline per batch size, and adds notes on failed
requests and on rates close to the ceiling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import httpx

from poolserve.bench.loadgen import machine_info, sweep
from poolserve.bench.metrics import BaselineResult, BenchReport, Setting, SettingReport
from poolserve.bench.stub import run_self_test
from poolserve.bench.workload import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_CONCURRENCY,
    BaselineFn,
    BenchProgress,
    BenchTask,
    Bounds,
    ProgressCallback,
    Workload,
    make_query,
    settings_grid,
)
from poolserve.config.defaults import DEFAULT_INPUT_TOKENS
from poolserve.errors import SpecError
from poolserve.targets.base import Endpoint


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
        self_test: also measure the generator's ceiling against a local stub
            (see :func:`poolserve.bench.stub.run_self_test`).
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
    reports, version, warm_notes = asyncio.run(sweep(endpoint, task, model, grid, input_tokens, bounds, timeout_s,
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
