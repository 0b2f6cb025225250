"""A capacity plan from a benchmark (pure): replicas and the KEDA target that keep p99 under a goal at a rate.

``poolserve bench`` measures, per request shape (texts per request, or documents per rerank query), how
throughput and latency grow with the requests in flight. :func:`plan_capacity` reads that curve for one
shape:

1. ``c_max``: the most requests in flight per replica whose p99 stays under the goal. Between two measured
   concurrencies p99 is interpolated linearly; below the lowest or above the highest nothing is assumed.
   A point with failed requests does not meet the goal.
2. The target: ``c_max`` less the headroom (default 20 %): KEDA adds replicas before one reaches its limit,
   so a burst meets spare room while new pods start.
3. Throughput per replica at the target (interpolated the same way), and the replicas the rate needs at it:
   ``max_replicas``.
4. KEDA's queue target counts inputs, not requests (vLLM counts each text of a batched request, and each
   document of a rerank query): ``target = requests in flight x batch``.

Bad input is a one-line :class:`~poolserve.errors.CapacityError` naming the ``poolserve bench`` run that
would answer it.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from poolserve.bench.metrics import BenchReport, SettingReport
from poolserve.errors import CapacityError
from poolserve.vllm.facts import ServingFacts
from poolserve.vllm.sizing import ModelPlan

DEFAULT_HEADROOM = 0.2
_RATE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?\s*$", re.I)
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s)?\s*$", re.I)
_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}


def parse_rate(text: str) -> float:
    """``500/s``, ``30000/min``, ``2e6/h`` or a bare number (per second) -> requests per second.

    Raises:
        CapacityError: not a rate, or not above 0.
    """
    m = _RATE.match(text)
    if not m:
        raise CapacityError(f"--rate {text!r}: expected requests per second like 500/s (or 30000/min)")
    rate = float(m.group(1)) / _PER[(m.group(2) or "s").lower()]
    if rate <= 0:
        raise CapacityError(f"--rate {text!r}: a rate of 0 needs no replicas; give the peak rate the application "
                            "sends, e.g. --rate 500/s")
    return rate


def parse_latency_ms(text: str) -> float:
    """``200ms``, ``0.2s`` or a bare number of milliseconds -> milliseconds.

    Raises:
        CapacityError: not a duration, or not above 0.
    """
    m = _DURATION.match(text)
    if not m:
        raise CapacityError(f"--p99 {text!r}: expected a latency like 200ms or 0.5s")
    value = float(m.group(1)) * (1000.0 if (m.group(2) or "ms").lower() == "s" else 1.0)
    if value <= 0:
        raise CapacityError(f"--p99 {text!r}: must be above 0")
    return value


def parse_headroom(text: str) -> float:
    """``20%`` or ``0.2`` -> 0.2 (0 <= headroom < 1).

    Raises:
        CapacityError: outside that range.
    """
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise CapacityError(f"--headroom {text!r}: expected a share like 20% or 0.2") from None
    if not 0 <= value < 1:
        raise CapacityError(f"--headroom {text!r}: must be at least 0 and below 100%")
    return value


@dataclass(frozen=True)
class Goal:
    """What the application needs."""

    rate_per_s: float
    """Requests per second of the ``batch`` shape."""
    p99_ms: float
    batch: int | None = None
    """Texts per request (documents per rerank query); None: the report's only batch size."""
    headroom: float = DEFAULT_HEADROOM


@dataclass(frozen=True)
class Subject:
    """The config model the plan is for, and what it is configured to run with."""

    name: str
    model_id: str
    task: str
    replicas: int
    """Its ``replicas`` (KEDA's minReplicas)."""
    facts: ServingFacts
    """The cluster deployment's dtype and device (:func:`poolserve.actions.serving.deployment_facts`)."""
    target: str | None = None
    """``--target`` for the ``poolserve bench`` commands the errors suggest."""


@dataclass(frozen=True)
class Point:
    """One measured concurrency of the chosen shape, per replica."""

    concurrency: float
    requests_per_s: float
    p99_ms: float | None
    errors: int

    def meets(self, p99_ms: float) -> bool:
        """Every request succeeded and p99 is within the goal."""
        return self.errors == 0 and self.p99_ms is not None and self.p99_ms <= p99_ms


@dataclass(frozen=True)
class CapacityPlan:
    """What ``poolserve plan NAME --from BENCH.json`` says."""

    name: str
    task: str
    batch: int
    goal: Goal
    points: tuple[Point, ...]
    c_max: float
    """Requests in flight per replica at which p99 reaches the goal (interpolated), or the highest measured."""
    concurrency: int
    """The target's requests in flight per replica (``c_max`` less the headroom, whole requests)."""
    requests_per_s: float
    """Throughput of one replica at ``concurrency``."""
    p99_ms: float
    """p99 at ``concurrency`` (interpolated)."""
    replicas_exact: float
    """Replicas the rate needs at ``concurrency``."""
    max_replicas: int
    min_replicas: int
    target: int
    """KEDA's queue target: inputs in flight per replica."""
    ceiling_per_s: float
    """Requests per second ``max_replicas`` serve within the goal (each at ``c_max``)."""
    warnings: tuple[str, ...] = ()
    """What makes the figures unsafe to use as they are (another device or dtype): print loudly."""
    notes: tuple[str, ...] = field(default_factory=tuple)


def bench_command(subject: Subject, batch: int | None, concurrency: Sequence[int] = (1, 2, 4, 8, 16, 32)) -> str:
    """The ``poolserve bench`` run that measures what the plan needs."""
    shape = "" if batch is None else (f" --documents {batch}" if subject.task == "score" else f" --batch-size {batch}")
    target = f" --target {subject.target}" if subject.target else ""
    return (f"`poolserve bench {subject.name}{target} --concurrency {','.join(map(str, concurrency))}{shape} "
            "--duration 30s -o bench.json`")


def curve(report: BenchReport, batch: int) -> tuple[Point, ...]:
    """The settings measured at ``batch``, by concurrency, per replica (divided by the report's replicas)."""
    n = report.replicas or 1
    rows: list[SettingReport] = sorted((s for s in report.settings if s.batch_size == batch),
                                       key=lambda s: s.concurrency)
    return tuple(Point(s.concurrency / n, s.requests_per_s / n, s.latency_p99_ms, s.errors) for s in rows)


def _lerp(x: float, x0: float, x1: float, y0: float, y1: float) -> float:
    return y0 if x1 == x0 else y0 + (x - x0) * (y1 - y0) / (x1 - x0)


def limit(points: Sequence[Point], p99_ms: float) -> tuple[float, int]:
    """``(c_max, i)``: the concurrency at which p99 reaches the goal, and the last measured point under it.

    Only the run of points from the lowest concurrency up that all meet the goal counts; p99 is interpolated
    between the last of them and the first that misses it. When every point meets it, ``c_max`` is the highest
    measured (nothing is extrapolated). Returns ``(0, -1)`` when the lowest point misses it already.
    """
    last = -1
    for i, p in enumerate(points):
        if not p.meets(p99_ms):
            break
        last = i
    if last < 0:
        return 0.0, -1
    lo = points[last]
    if last == len(points) - 1:
        return lo.concurrency, last
    hi = points[last + 1]
    if hi.p99_ms is None or hi.errors or lo.p99_ms is None or hi.p99_ms <= lo.p99_ms:
        return lo.concurrency, last  # no latency to interpolate towards: stay at the measured point
    return _lerp(p99_ms, lo.p99_ms, hi.p99_ms, lo.concurrency, hi.concurrency), last


def at(points: Sequence[Point], concurrency: float) -> tuple[float, float]:
    """Throughput and p99 at ``concurrency``, interpolated between the measured points around it."""
    for lo, hi in itertools.pairwise(points):
        if lo.concurrency <= concurrency <= hi.concurrency and hi.p99_ms is not None and lo.p99_ms is not None:
            return (_lerp(concurrency, lo.concurrency, hi.concurrency, lo.requests_per_s, hi.requests_per_s),
                    _lerp(concurrency, lo.concurrency, hi.concurrency, lo.p99_ms, hi.p99_ms))
    p = min(points, key=lambda q: abs(q.concurrency - concurrency))
    return p.requests_per_s, p.p99_ms or 0.0


def _batch(report: BenchReport, goal: Goal, subject: Subject) -> int:
    sizes = sorted({s.batch_size for s in report.settings if s.requests > 0})
    word = "--documents" if subject.task == "score" else "--batch"
    if goal.batch is not None:
        if goal.batch not in sizes:
            have = ", ".join(map(str, sizes)) or "none with a successful request"
            raise CapacityError(f"the report has no setting at {word} {goal.batch} (it measured {have}): run "
                                f"{bench_command(subject, goal.batch)}")
        return goal.batch
    if len(sizes) == 1:
        return sizes[0]
    if not sizes:
        raise CapacityError(f"the report has no setting with a successful request: run {bench_command(subject, 1)}")
    raise CapacityError(f"the report measured {word.lstrip('-')} sizes {', '.join(map(str, sizes))}: give the one the "
                        f"application sends with --batch N")


def _check_model(report: BenchReport, subject: Subject) -> None:
    measured = report.deployment.model if report.deployment and report.deployment.model else report.model
    if measured and measured not in (subject.model_id, subject.name) and not measured.startswith("/"):
        raise CapacityError(f"the report measured {measured}, not {subject.name}'s {subject.model_id}: run "
                            f"{bench_command(subject, None)}")
    if report.task != subject.task:
        kinds = {"embed": "an embedding model", "score": "a reranker"}
        raise CapacityError(f"the report measured {kinds.get(report.task, report.task)}, {subject.name} is "
                            f"{kinds.get(subject.task, subject.task)}: run {bench_command(subject, None)}")


def mismatches(measured: ServingFacts | None, configured: ServingFacts) -> list[str]:
    """Why the measured figures may not hold for the configured deployment (device class, GPU slice, dtype)."""
    if measured is None:
        return ["the report does not say which device and dtype it measured (a `bench --url` run, or an older "
                "poolserve): its figures are assumed to hold for the config's "
                f"{configured.device or 'device'} ({configured.dtype or 'dtype'})"]
    out: list[str] = []

    def kind(device: str | None) -> tuple[str, str | None, bool] | None:
        """The device kind (cpu, gpu), MIG profile and time-slicing: what changes the speed (not the CPU name)."""
        if device is None:
            return None
        mig = re.search(r"MIG (\S+)", device)
        return device.split(" (")[0].split(" ")[0], mig.group(1) if mig else None, "time-sliced" in device

    a, b = measured.device, configured.device
    if kind(a) and kind(b) and kind(a) != kind(b):
        out.append(f"measured on {a}, but the config deploys on {b}: the throughput does not transfer")
    if measured.dtype and configured.dtype and measured.dtype != configured.dtype and "auto" not in (
            measured.dtype, configured.dtype):
        out.append(f"measured in {measured.dtype}, but the config runs {configured.dtype}: speed differs by dtype")
    return out


def plan_capacity(report: BenchReport, goal: Goal, subject: Subject) -> CapacityPlan:
    """The replicas, KEDA target and max_replicas that keep p99 under ``goal.p99_ms`` at ``goal.rate_per_s``.

    Raises:
        CapacityError: a report of another model or task, without the request shape, or whose lowest
            concurrency misses the goal already; each names the ``poolserve bench`` run to make.
    """
    _check_model(report, subject)
    batch = _batch(report, goal, subject)
    points = tuple(p for p in curve(report, batch) if p.requests_per_s > 0 or p.errors)
    c_max, last = limit(points, goal.p99_ms)
    if last < 0:
        first = points[0]
        seen = f"p99 {first.p99_ms:.0f} ms" if first.p99_ms is not None else "no successful request"
        if first.errors:
            seen += f", {first.errors} failed"
        smaller = max(1, batch // 4)
        lower = "" if first.concurrency <= 1 else " or at concurrency 1"
        raise CapacityError(f"no measured point meets p99 <= {goal.p99_ms:g} ms at batch {batch}: the lowest, "
                            f"concurrency {first.concurrency:g}, has {seen}; this device cannot meet it with this "
                            f"shape: measure smaller requests{lower}: "
                            f"{bench_command(subject, smaller if smaller < batch else batch, (1, 2, 4))}")
    notes: list[str] = []
    warnings = mismatches(report.deployment, subject.facts)
    if report.replicas and report.replicas > 1:
        warnings.append(f"the benchmark ran against {report.replicas} replicas: the figures are divided by "
                        f"{report.replicas}, assuming the load spread evenly; bench one replica for a clean curve")
    if last == len(points) - 1:
        top = points[-1].concurrency
        notes.append(f"every measured point meets the goal: the limit lies beyond concurrency {top:g}, which the "
                     f"plan uses (nothing is extrapolated); to use more of each replica run "
                     f"{bench_command(subject, batch, (int(top), int(top) * 2, int(top) * 4))}")
    concurrency = max(1, math.floor(c_max * (1 - goal.headroom) + 1e-9))
    why = "a replica runs at least 1 request"
    if concurrency < points[0].concurrency:
        concurrency = math.ceil(points[0].concurrency)
        why = (f"the lowest measured concurrency is {points[0].concurrency:g} (measure lower: "
               f"{bench_command(subject, batch, (1, 2, 4))})")
    actual = 1 - concurrency / c_max
    if goal.headroom and actual < goal.headroom - 0.005:
        notes.append(f"only {max(actual, 0.0):.0%} headroom below the limit of {c_max:.2f}, not {goal.headroom:.0%}: "
                     f"{why}; bursts go over the p99 goal until KEDA adds replicas")
    rps, p99 = at(points, concurrency)
    top_rps, _ = at(points, c_max)
    exact = goal.rate_per_s / rps
    max_replicas = max(1, math.ceil(exact - 1e-9))
    if subject.replicas > max_replicas:
        notes.append(f"replicas (the minimum) is {subject.replicas}, more than the rate needs ({max_replicas}): "
                     f"max_replicas stays {subject.replicas}")
    max_replicas = max(max_replicas, subject.replicas)
    return CapacityPlan(
        name=subject.name, task=subject.task, batch=batch, goal=goal, points=points, c_max=c_max,
        concurrency=concurrency, requests_per_s=rps, p99_ms=p99, replicas_exact=exact, max_replicas=max_replicas,
        min_replicas=subject.replicas, target=concurrency * batch, ceiling_per_s=max_replicas * top_rps,
        warnings=tuple(warnings), notes=tuple(notes))


def memory_fit(sized: ModelPlan | None, inputs_in_flight: int, tokens_per_text: float | None) -> list[str]:
    """For a GPU model: whether the planned shape fits the MIG slice or GPU share the config names.

    Encoder-only models hold no KV cache: requests in flight wait in vLLM's queue and the memory is what
    ``poolserve plan`` estimates whatever the target. A decoder keeps each input's tokens in its KV cache.
    """
    if sized is None or sized.device == "CPU":
        return []
    est = sized.estimate
    if est is None:
        return [f"{sized.model_id} is not in the catalog: its memory is unknown"]
    if sized.fits is None:
        lines = [f"{est.need_gib:.2f} GiB estimate; the memory of the {sized.device} is unknown (set gpu_memory_gib, "
                 "or mig_profile, to check the fit)"]
    else:
        fits = "fits" if sized.fits else "does NOT fit"
        lines = [f"{est.need_gib:.2f} GiB estimate {fits} the {sized.device} ({sized.gpu_memory_gib:.1f} GiB)"]
    if not est.has_kv_cache:
        lines.append("encoder-only: requests in flight wait in vLLM's queue; memory does not grow with the target")
        return lines
    tokens = tokens_per_text or 0
    kv = inputs_in_flight * tokens * est.kv_per_token_bytes / 2**30
    if sized.gpu_memory_gib and sized.utilization:
        room = sized.utilization * sized.gpu_memory_gib - est.footprint_gib
        verdict = "fits" if kv <= room else "does NOT fit: lower the target or raise --gpu-memory-utilization"
        lines.append(f"KV cache for {inputs_in_flight} inputs x {tokens:.0f} tokens in flight: {kv:.2f} GiB of the "
                     f"{room:.2f} GiB --gpu-memory-utilization={sized.utilization:g} leaves: {verdict}")
    else:
        lines.append(f"KV cache for {inputs_in_flight} inputs x {tokens:.0f} tokens in flight: {kv:.2f} GiB")
    return lines
