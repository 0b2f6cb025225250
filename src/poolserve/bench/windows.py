"""Soak arithmetic (pure): requests and memory samples -> time windows, drift verdicts, error classes.

A soak run (:mod:`poolserve.bench.soak`) gives the :class:`~poolserve.bench.metrics.RequestResult` records of
one long closed loop and :class:`Sample` readings taken beside it. :func:`windows_of` cuts both into
windows of equal length by completion time; :func:`drift` compares the median of the first third of
the windows with the median of the last third and calls a change drift only when it is larger than
a floor and than three times the window-to-window noise. :func:`error_class` tells a clean refusal
(an HTTP status with a message) from the client's own timeout and from a broken answer.

Nothing here reads the clock, ``/proc`` or the network.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from poolserve.bench.metrics import RequestResult, percentile


@dataclass(frozen=True)
class Sample:
    """One reading taken beside the load, ``t_s`` seconds after the measured phase started."""

    t_s: float
    rss_mib: float | None = None
    """Sum of VmRSS over the server's process group (shared pages count once per process)."""
    pss_mib: float | None = None
    """Sum of Pss over the group (shared pages split between the processes that map them)."""
    processes: int = 0
    pgid: int | None = None
    """The group sampled; a change means the server was restarted under the load."""
    running: float | None = None
    """vLLM's ``num_requests_running`` gauge (None: not scraped)."""
    waiting: float | None = None
    """vLLM's ``num_requests_waiting`` gauge."""
    cpu_busy: float | None = None
    """Cores the whole machine kept busy since the previous sample (0..cores, from ``/proc/stat``)."""
    cpu_server: float | None = None
    """Cores the server's process group used since the previous sample."""
    cpu_client: float | None = None
    """Cores the load generator used since the previous sample."""
    cpu_steal: float | None = None
    """Cores a hypervisor took from this virtual machine since the previous sample (part of ``cpu_busy``)."""

    @property
    def cpu_other(self) -> float | None:
        """Cores everything else used: the machine's busy time minus the server's and the client's."""
        if self.cpu_busy is None or self.cpu_server is None or self.cpu_client is None:
            return None
        return max(0.0, self.cpu_busy - self.cpu_server - self.cpu_client)


@dataclass(frozen=True)
class Window:
    """Requests that completed in ``[t_s, t_s + width)`` and the samples taken in it."""

    t_s: float
    requests: int
    """Successful requests."""
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    rss_mib: float | None
    """The largest group RSS sampled in the window (None: no sample)."""
    pss_mib: float | None = None
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    cpu_server: float | None = None
    """Mean cores the server's group used over the window's samples."""
    cpu_client: float | None = None
    cpu_other: float | None = None
    """Mean cores other processes used (the hypervisor's steal included): anything well above 0 means the
    window was not measured alone."""
    cpu_steal: float | None = None
    """Mean cores the hypervisor took (the part of ``cpu_other`` no process in this machine used)."""
    longest_gap_ms: float | None = None
    """The longest time between two completions in the window (from its start for the first): a stall in
    which no request finished, where a steady closed loop completes one every few tens of ms."""

    def to_dict(self) -> dict[str, Any]:
        """The window as written to ``soak.json``."""
        return {"t_s": round(self.t_s, 3), "p50_ms": _r(self.p50_ms), "p99_ms": _r(self.p99_ms),
                "rss_mib": _r(self.rss_mib), "pss_mib": _r(self.pss_mib), "requests": self.requests,
                "errors": self.errors, "errors_by_kind": dict(self.errors_by_kind),
                "cpu_server_cores": _r(self.cpu_server, 2), "cpu_client_cores": _r(self.cpu_client, 2),
                "cpu_other_cores": _r(self.cpu_other, 2), "cpu_steal_cores": _r(self.cpu_steal, 2),
                "longest_gap_ms": _r(self.longest_gap_ms)}


def _r(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x, digits)


def windows_of(results: Sequence[RequestResult], samples: Sequence[Sample], duration_s: float,
               window_s: float) -> list[Window]:
    """Cut a run into windows of ``window_s`` seconds by each request's completion time.

    Windows start at 0, ``window_s``, ... up to ``duration_s``; a request that completed after
    ``duration_s`` (drained after the last send) counts in the last window, and so does a shorter
    remainder than half a window. Latency percentiles are of successful requests only.

    Raises:
        ValueError: on a non-positive ``window_s`` or ``duration_s``.
    """
    if window_s <= 0 or duration_s <= 0:
        raise ValueError("window and duration must be positive")
    count = max(1, math.floor(duration_s / window_s + 0.5))
    lat: list[list[float]] = [[] for _ in range(count)]
    errs: list[Counter[str]] = [Counter() for _ in range(count)]
    done: list[list[float]] = [[] for _ in range(count)]

    def slot(t: float) -> int:
        return min(count - 1, max(0, math.floor(t / window_s)))

    for r in results:
        i = slot(r.start_s + r.latency_s)
        done[i].append(r.start_s + r.latency_s)
        if r.ok:
            lat[i].append(r.latency_s)
        else:
            errs[i][r.error_kind or "unknown"] += 1
    per: list[list[Sample]] = [[] for _ in range(count)]
    for s in samples:
        per[slot(s.t_s)].append(s)

    def peak(xs: list[float | None]) -> float | None:
        vs = [x for x in xs if x is not None]
        return max(vs) if vs else None

    def mean(xs: list[float | None]) -> float | None:
        vs = [x for x in xs if x is not None]
        return sum(vs) / len(vs) if vs else None

    out = []
    for i in range(count):
        p50, p99 = percentile(lat[i], 50), percentile(lat[i], 99)
        ss = per[i]
        out.append(Window(t_s=i * window_s, requests=len(lat[i]), errors=sum(errs[i].values()),
                          p50_ms=None if p50 is None else p50 * 1000, p99_ms=None if p99 is None else p99 * 1000,
                          rss_mib=peak([s.rss_mib for s in ss]), pss_mib=peak([s.pss_mib for s in ss]),
                          errors_by_kind=dict(sorted(errs[i].items())),
                          cpu_server=mean([s.cpu_server for s in ss]), cpu_client=mean([s.cpu_client for s in ss]),
                          cpu_other=mean([s.cpu_other for s in ss]), cpu_steal=mean([s.cpu_steal for s in ss]),
                          longest_gap_ms=longest_gap(done[i], i * window_s)))
    return out


def longest_gap(completions: Sequence[float], start_s: float) -> float | None:
    """Milliseconds of the longest stretch without a completion, from ``start_s`` (None: none completed)."""
    if not completions:
        return None
    ts = [start_s, *sorted(completions)]
    return max(b - a for a, b in itertools.pairwise(ts)) * 1000


@dataclass(frozen=True)
class Drift:
    """The first third of the windows against the last third."""

    verdict: str
    """``stable``, ``rises``, ``falls`` or ``unknown`` (fewer than 3 windows with a value)."""
    first: float | None
    """Median over the first third's windows."""
    last: float | None
    change: float | None
    """``last - first`` (in the value's unit)."""
    threshold: float | None
    """The smallest ``|change|`` called drift (in the value's unit)."""
    noise: float | None
    """Median absolute deviation of the windows from their neighbours' trend-free level (value's unit)."""

    def describe(self, unit: str, what: str) -> str:
        """One sentence for reports."""
        if self.verdict == "unknown" or self.first is None or self.last is None:
            return f"unknown: fewer than 3 windows with a {what} value"
        pct = 100 * (self.change or 0) / self.first if self.first else 0.0
        return (f"{self.verdict}: {what} median of the first third of the windows {self.first:,.1f} {unit}, "
                f"last third {self.last:,.1f} {unit} ({self.change:+,.1f} {unit}, {pct:+.1f}%); drift means "
                f"|change| > {self.threshold:,.1f} {unit} (the larger of the floor and 3x the window-to-window "
                f"noise {self.noise:,.1f} {unit})")


def _thirds(values: Sequence[float | None]) -> tuple[list[float], list[float], list[float]] | None:
    xs = [v for v in values if v is not None]
    if len(xs) < 3:
        return None
    k = max(1, len(xs) // 3)
    return xs[:k], xs[-k:], xs


def _noise(xs: Sequence[float]) -> float:
    """Median absolute step between neighbouring windows, divided by sqrt(2).

    That is the spread of one window's value around a slowly moving level: a steady trend adds little
    to it, unlike a spread around the mean.
    """
    steps = [abs(b - a) for a, b in itertools.pairwise(xs)]
    return statistics.median(steps) / math.sqrt(2) if steps else 0.0


def drift(values: Sequence[float | None], *, floor: float, rel_floor: float = 0.0) -> Drift:
    """Compare the median of the first third of ``values`` with the median of the last third.

    Drift is a change larger than ``max(floor, rel_floor * first, 3 * noise)``, where noise is the
    window-to-window spread (:func:`_noise`). ``None`` values (windows without data) are skipped.
    """
    parts = _thirds(values)
    if parts is None:
        return Drift("unknown", None, None, None, None, None)
    head, tail, xs = parts
    first, last = statistics.median(head), statistics.median(tail)
    noise = _noise(xs)
    threshold = max(floor, rel_floor * abs(first), 3 * noise)
    change = last - first
    verdict = "stable" if abs(change) <= threshold else ("rises" if change > 0 else "falls")
    return Drift(verdict, first, last, change, threshold, noise)


LATENCY_REL_FLOOR = 0.10
"""Latency changes below 10 % are not called drift, however quiet the windows were."""
MEMORY_FLOOR_MIB = 16.0
MEMORY_REL_FLOOR = 0.01


def latency_drift(windows: Sequence[Window]) -> Drift:
    """Drift of the windows' p50 latency (floor: 10 % of the first third's, and 1 ms)."""
    return drift([w.p50_ms for w in windows], floor=1.0, rel_floor=LATENCY_REL_FLOOR)


def memory_drift(windows: Sequence[Window]) -> Drift:
    """Drift of the windows' group RSS (floor: 16 MiB or 1 % of the first third's, whichever is larger)."""
    return drift([w.rss_mib for w in windows], floor=MEMORY_FLOOR_MIB, rel_floor=MEMORY_REL_FLOOR)


def slope_per_min(points: Sequence[tuple[float, float | None]]) -> float | None:
    """Least-squares slope of ``(t_s, value)`` points, per minute (None with fewer than 2 values)."""
    pts = [(t, v) for t, v in points if v is not None]
    if len(pts) < 2:
        return None
    mt = sum(t for t, _ in pts) / len(pts)
    mv = sum(v for _, v in pts) / len(pts)
    den = sum((t - mt) ** 2 for t, _ in pts)
    if den == 0:
        return None
    return 60 * sum((t - mt) * (v - mv) for t, v in pts) / den


CLEAN_KINDS = "http_"
"""An HTTP status (with the server's message): the server said no, cleanly."""
CLIENT_KINDS = ("timeout", "time_cap")
"""The client gave up (its timeout, or the run's time cap): nothing wrong on the wire."""


def error_class(kind: str, detail: str | None) -> str:
    """The class of a failed request's error kind.

    ``clean`` (an HTTP status with a message), ``clean_no_message`` (a status, empty body),
    ``client_timeout`` (the client gave up), or ``unclean`` (reset, refused, half answer, bad body).
    """
    if kind.startswith(CLEAN_KINDS):
        return "clean" if (detail or "").strip() else "clean_no_message"
    if kind in CLIENT_KINDS:
        return "client_timeout"
    return "unclean"


def classify(results: Sequence[RequestResult]) -> dict[str, int]:
    """Failed requests counted by :func:`error_class`."""
    c = Counter(error_class(r.error_kind or "unknown", r.error_detail) for r in results if not r.ok)
    return dict(sorted(c.items()))


def errors_by_kind(results: Sequence[RequestResult]) -> dict[str, int]:
    """Failed requests counted by kind (``http_503``, ``timeout``, ``transport`` ...)."""
    return dict(sorted(Counter(r.error_kind or "unknown" for r in results if not r.ok).items()))


def error_examples(results: Sequence[RequestResult]) -> dict[str, str]:
    """The first message seen per error kind."""
    out: dict[str, str] = {}
    for r in results:
        if not r.ok:
            out.setdefault(r.error_kind or "unknown", r.error_detail or "")
    return dict(sorted(out.items()))


def unclean_failures(results: Sequence[RequestResult], limit: int = 20) -> list[dict[str, Any]]:
    """When the unclean failures happened: sent at (s into the run), failed after (s), kind, message.

    Whether they came in the opening burst, at one moment or spread out tells a connection limit from a
    server restart from a client at its end; the first ``limit`` by send time.
    """
    bad = sorted((r for r in results if not r.ok and error_class(r.error_kind or "unknown", r.error_detail)
                  == "unclean"), key=lambda r: r.start_s)
    return [{"sent_s": round(r.start_s, 3), "after_s": round(r.latency_s, 3), "kind": r.error_kind,
             "detail": r.error_detail} for r in bad[:limit]]


def parse_gauges(text: str, names: Sequence[str]) -> dict[str, float]:
    """Sum of each named metric over its label sets in Prometheus text ``text``."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        metric = line.split("{", 1)[0].split(" ", 1)[0]
        if metric in names:
            try:
                out[metric] = out.get(metric, 0.0) + float(line.rsplit(" ", 1)[1])
            except (ValueError, IndexError):
                continue
    return out


QUEUE_GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting")
