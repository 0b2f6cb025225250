"""Soak and overload runs on top of ``poolserve bench``'s load generator (edges: HTTP, clock, ``/proc``).

A soak holds one setting (concurrency x batch size) for minutes with the same closed loop as
:mod:`poolserve.bench` and, beside it, samples the server every few seconds (the local server's
resident memory, :func:`group_memory`; vLLM's queue gauges). :mod:`poolserve.bench_windows` cuts the
result into windows and judges drift. An overload run is such a load at a concurrency far above what
the server batches, with a client timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from poolserve.bench import Clock, _client, _closed_loop, _probe
from poolserve.bench_windows import QUEUE_GAUGES, Sample, parse_gauges
from poolserve.metrics import RequestResult
from poolserve.target import Endpoint
from poolserve.workload import Workload

# ----------------------------------------------------------------------------------------------------
# Edges: /proc and /metrics


def _proc_kib(path: str, keys: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in keys:
                    out[name] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def group_memory(pgid: int, *, members: Callable[[int], list[int]] | None = None) -> tuple[float, float, int]:
    """(RSS MiB, PSS MiB, processes) summed over the live processes of process group ``pgid``.

    RSS counts pages shared between the processes (libraries, torch) once per process, so it
    overstates the group's footprint; PSS splits them. A process that exits between the listing and
    the read counts zero.
    """
    if members is None:
        from poolserve.local.process import group_members

        members = group_members
    rss = pss = 0
    pids = members(pgid)
    for pid in pids:
        rss += _proc_kib(f"/proc/{pid}/status", ("VmRSS",)).get("VmRSS", 0)
        pss += _proc_kib(f"/proc/{pid}/smaps_rollup", ("Pss",)).get("Pss", 0)
    return rss / 1024, pss / 1024, len(pids)


def local_server_pgid(state_dir: Path, name: str) -> int | None:
    """The process group of the local target's running server for model ``name`` (None: not running)."""
    from poolserve.local.state import read_pod

    pod = read_pod(state_dir, name)
    return pod.running.pgid if pod is not None and pod.running is not None else None


async def scrape_queue(client: httpx.AsyncClient) -> dict[str, float] | None:
    """The running/waiting request gauges of vLLM from ``/metrics`` (None when it does not answer)."""
    try:
        r = await client.get("/metrics", timeout=5.0)
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    return parse_gauges(r.text, QUEUE_GAUGES)


# ----------------------------------------------------------------------------------------------------
# Edges: the load


@dataclass(frozen=True)
class LoadRun:
    """What :func:`run_load` measured."""

    results: tuple[RequestResult, ...]
    samples: tuple[Sample, ...]
    duration_s: float
    """Sending stopped here; requests still in flight then finished (or timed out) after it."""
    end_s: float
    """When the last request completed."""
    vllm_version: str | None
    client_cpu_s: float


async def run_load(endpoint: Endpoint, workload: Workload, concurrency: int, duration_s: float, *,
                   timeout_s: float = 120.0, warmup: int = 0, sample: Callable[[float], Sample] | None = None,
                   sample_every_s: float = 5.0, transport: httpx.AsyncBaseTransport | None = None,
                   clock: Clock = time.perf_counter,
                   on_tick: Callable[[float, int], None] | None = None) -> LoadRun:
    """Closed loop at ``concurrency`` for ``duration_s`` (after ``warmup`` requests), sampling beside it.

    The same generator as ``poolserve bench`` (:func:`poolserve.bench._closed_loop`): workers stop
    sending at ``duration_s``; requests in flight then finish or hit ``timeout_s``. ``sample(t_s)`` is
    called in a thread every ``sample_every_s`` and once at the end.
    """
    async with _client(endpoint, timeout_s, concurrency, transport) as client:
        version = await _probe(client, min(timeout_s, 30.0))
        if warmup:
            start = clock()
            await _closed_loop(client, workload, min(concurrency, warmup), count=warmup, until=None,
                               hard_deadline=start + timeout_s + 60, clock=clock, t0=start,
                               on_done=lambda _: None)
        cpu0 = time.process_time()
        t0 = clock()
        samples: list[Sample] = []
        stop = asyncio.Event()
        done = 0

        def on_done(n: int) -> None:
            nonlocal done
            done = n

        async def sampler() -> None:
            while True:
                t = clock() - t0
                if sample is not None:
                    samples.append(await asyncio.to_thread(sample, t))
                if on_tick is not None:
                    on_tick(t, done)
                try:
                    await asyncio.wait_for(stop.wait(), sample_every_s)
                    return
                except TimeoutError:
                    continue

        task = asyncio.create_task(sampler())
        try:
            results = await _closed_loop(client, workload, concurrency, count=None, until=t0 + duration_s,
                                         hard_deadline=t0 + duration_s + timeout_s + 30, clock=clock, t0=t0,
                                         on_done=on_done)
        finally:
            stop.set()
            await task
        end = max((r.start_s + r.latency_s for r in results), default=clock() - t0)
        if sample is not None:
            samples.append(await asyncio.to_thread(sample, end))
        return LoadRun(tuple(results), tuple(samples), duration_s, end, version, time.process_time() - cpu0)
