"""Soak and overload runs on top of ``poolserve bench``'s load generator (edges: HTTP, clock, ``/proc``).

A soak holds one setting (concurrency x batch size) for minutes with the same closed loop as
:mod:`poolserve.bench.loadgen` and, beside it, samples the server every few seconds (the local server's
resident memory, :func:`group_memory`; vLLM's queue gauges). :mod:`poolserve.bench.windows` cuts the
result into windows and judges drift. An overload run is such a load at a concurrency far above what
the server batches, with a client timeout.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from poolserve.bench.loadgen import Clock, closed_loop, open_client, probe_version
from poolserve.bench.metrics import RequestResult
from poolserve.bench.windows import QUEUE_GAUGES, Sample, parse_gauges
from poolserve.bench.workload import Workload
from poolserve.targets.base import Endpoint

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
        from poolserve.machine import group_members

        members = group_members
    rss = pss = 0
    pids = members(pgid)
    for pid in pids:
        rss += _proc_kib(f"/proc/{pid}/status", ("VmRSS",)).get("VmRSS", 0)
        pss += _proc_kib(f"/proc/{pid}/smaps_rollup", ("Pss",)).get("Pss", 0)
    return rss / 1024, pss / 1024, len(pids)


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

    The same generator as ``poolserve bench`` (:func:`poolserve.bench.loadgen.closed_loop`): workers stop
    sending at ``duration_s``; requests in flight then finish or hit ``timeout_s``. ``sample(t_s)`` is
    called in a thread every ``sample_every_s`` and once at the end.
    """
    async with open_client(endpoint, timeout_s, concurrency, transport) as client:
        version = await probe_version(client, min(timeout_s, 30.0))
        if warmup:
            start = clock()
            await closed_loop(client, workload, min(concurrency, warmup), count=warmup, until=None,
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
            results = await closed_loop(client, workload, concurrency, count=None, until=t0 + duration_s,
                                         hard_deadline=t0 + duration_s + timeout_s + 30, clock=clock, t0=t0,
                                         on_done=on_done)
        finally:
            stop.set()
            await task
        end = max((r.start_s + r.latency_s for r in results), default=clock() - t0)
        if sample is not None:
            samples.append(await asyncio.to_thread(sample, end))
        return LoadRun(tuple(results), tuple(samples), duration_s, end, version, time.process_time() - cpu0)


# ----------------------------------------------------------------------------------------------------
# Edges: who used the CPU


def _machine_ticks() -> tuple[int, int, int, int] | None:
    """(busy, total, cpus, steal) jiffies over every CPU, from ``/proc/stat``.

    Steal is time a virtual machine's CPUs were ready but the hypervisor ran something else: it counts as
    busy here (the guest could not use it), and is also given apart.
    """
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    v = [int(x) for x in lines[0].split()[1:9]]  # user nice system idle iowait irq softirq steal
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return sum(v) - v[3] - v[4], sum(v), max(1, cpus), v[7]


def _process_ticks(pid: int) -> int | None:
    """Utime + stime of ``pid`` in clock ticks."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


class CpuMeter:
    """Cores used between two calls: the whole machine, one process group (the server), this process.

    The first call only takes the starting point and returns Nones. A process that joins the group
    counts from its first reading; one that exits takes its last interval with it. ``steal`` holds the
    cores the hypervisor took over the last interval (see :func:`_machine_ticks`).
    """

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._last: tuple[float, tuple[int, int, int, int] | None, dict[int, int], float] | None = None
        self.steal: float | None = None

    def read(self, pids: list[int]) -> tuple[float | None, float | None, float | None]:
        """(machine busy cores, group cores, this process's cores) since the previous call."""
        now = self._clock()
        machine = _machine_ticks()
        group = {pid: t for pid in pids if (t := _process_ticks(pid)) is not None}
        times = os.times()
        me = times.user + times.system
        last, self._last = self._last, (now, machine, group, me)
        if last is None or now <= last[0]:
            return None, None, None
        wall = now - last[0]
        busy = self.steal = None
        if machine and last[1] and machine[1] > last[1][1]:
            busy = (machine[0] - last[1][0]) / (machine[1] - last[1][1]) * machine[2]
            self.steal = (machine[3] - last[1][3]) / (machine[1] - last[1][1]) * machine[2]
        server = sum(max(0, t - last[2].get(pid, t)) for pid, t in group.items()) / self._hz / wall
        return busy, server, max(0.0, me - last[3]) / wall


class ServerSampler:
    """What :func:`run_load` samples beside the load.

    The server group's memory and CPU, the machine's CPU, and (with ``metrics_url``) vLLM's queue gauges.

    ``pgid_of()`` names the server's process group at each sample (the local server's can change when
    it is restarted); None samples only the machine.
    """

    def __init__(self, pgid_of: Callable[[], int | None], *, metrics_url: str | None = None,
                 members: Callable[[int], list[int]] | None = None) -> None:
        if members is None:
            from poolserve.machine import group_members

            members = group_members
        self._pgid_of = pgid_of
        self._members = members
        self._cpu = CpuMeter()
        self._http = httpx.Client(base_url=metrics_url, timeout=5.0) if metrics_url else None

    def __call__(self, t_s: float) -> Sample:
        """One reading, ``t_s`` seconds into the run."""
        pgid = self._pgid_of()
        pids = self._members(pgid) if pgid is not None else []
        rss = pss = None
        if pgid is not None:
            rss, pss, _ = group_memory(pgid, members=lambda _: pids)
        busy, server, client = self._cpu.read(pids)
        gauges: dict[str, float] = {}
        if self._http is not None:
            try:
                r = self._http.get("/metrics")
                if r.status_code == 200:
                    gauges = parse_gauges(r.text, QUEUE_GAUGES)
            except httpx.HTTPError:
                pass
        return Sample(t_s=t_s, rss_mib=rss, pss_mib=pss, processes=len(pids), pgid=pgid,
                      running=gauges.get(QUEUE_GAUGES[0]), waiting=gauges.get(QUEUE_GAUGES[1]),
                      cpu_busy=busy, cpu_server=server if pgid is not None else None, cpu_client=client,
                      cpu_steal=self._cpu.steal)

    def close(self) -> None:
        """Close the metrics client."""
        if self._http is not None:
            self._http.close()
