"""One ``poolserve bench`` run (edge: HTTP, clock, machine facts): the grid against an endpoint, as one report.

:func:`bench` sweeps every setting (concurrency x batch size) with the load generator
(:mod:`poolserve.bench.loadgen`), optionally measures the generator's own ceiling against the stub
(:mod:`poolserve.bench.stub`) and a direct in-process baseline per batch size, and adds notes on failed
requests, on rates close to the ceiling, and on a server whose own token count differs from the tokenizer's.
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
    BenchApi,
    BenchProgress,
    BenchTask,
    Bounds,
    ProgressCallback,
    TokenCountFn,
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
    api: BenchApi = "vllm",
    tokens: TokenCountFn | None = None,
    tokens_counted_by: str | None = None,
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
        api: whose HTTP API the endpoint speaks: ``vllm`` or ``infinity`` (the paths: ``workload.API_PATHS``).
        tokens: counts each request's tokens with the model's own tokenizer (see :mod:`poolserve.bench.tokens`).
            None: the token columns stay empty, never filled from the server's ``usage``.
        tokens_counted_by: what ``tokens`` is, or why there is none; the report says it.

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
                                                     transport, progress, "measure", api=api, tokens=tokens))
    ceiling: tuple[SettingReport, ...] = ()
    if self_test:
        ceiling = tuple(run_self_test(task=task, concurrency=concurrency, batch_sizes=batch_sizes,
                                      bounds=bounds, input_tokens=input_tokens, progress=progress))
    base: list[BaselineResult] = []
    if baseline is not None:
        for b in sorted({s.batch_size for s in grid}):
            wl = Workload(task, model, input_tokens, b, api)
            if progress:
                progress(BenchProgress("baseline", Setting(1, b), 0, 1, 0, None, None))
            base.append(baseline(wl.pool_texts(), b, make_query() if task == "score" else None))
    notes = warm_notes + _notes(reports, ceiling) + _token_notes(reports, tokens is not None, tokens_counted_by)
    return BenchReport(
        timestamp=stamp, machine=replace(machine, vllm_version=version), endpoint=endpoint.url, model=model,
        task=task, input_tokens=input_tokens, settings=tuple(reports),
        warmup_requests=bounds.warmup,
        label=label, self_test=ceiling, baseline=tuple(base), notes=tuple(notes),
        api=api, tokens_counted_by=tokens_counted_by or ("nothing: no tokenizer given" if tokens is None else None),
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


def _token_notes(reports: Sequence[SettingReport], counted: bool, counted_by: str | None) -> list[str]:
    """Say when the token columns are empty, and when the server counts tokens its own way."""
    if not counted:
        seen = [r.server_tokens_per_text for r in reports if r.server_tokens_per_text]
        server = f"; the server's own count was {seen[0]:.1f} per text" if seen else ""
        return [f"token columns empty: {counted_by or 'no tokenizer given'}{server} (not used: servers count "
                "differently)"]
    for r in reports:
        mine, theirs = r.tokens_per_text, r.server_tokens_per_text
        if mine and theirs and abs(theirs - mine) > 0.02 * mine:
            return [f"the server's usage field counts {theirs:.1f} tokens per text where the tokenizer counts "
                    f"{mine:.1f} (c={r.concurrency} b={r.batch_size}); the token columns are the tokenizer's"]
    return []
