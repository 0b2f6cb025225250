"""Benchmark arithmetic and the report: request timings -> rates and latency percentiles (pure).

:func:`summarize` turns the :class:`RequestResult` records of one setting (concurrency x batch size)
into a :class:`SettingReport`; :class:`BenchReport` bundles the settings with the machine, the
generator's own ceiling (``--self-test``) and the in-process baseline, and round-trips through JSON
(:func:`report_to_json` / :func:`report_from_json`). Nothing here reads the clock, the machine or the
network: :mod:`poolserve.bench.loadgen` measures and passes the values in.

Percentiles use linear interpolation between closest ranks (Hyndman & Fan type 7, the default of
``numpy.percentile`` and of Excel's ``PERCENTILE.INC``): for sorted values ``x[0..n-1]`` the
``p``-th percentile is at rank ``h = (n - 1) * p / 100``, i.e. ``x[floor(h)] + (h - floor(h)) *
(x[floor(h) + 1] - x[floor(h)])``. It is exact for the min (p0) and max (p100) and does not jump
between samples, which matters for p99 on a few hundred requests.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from poolserve.errors import SpecError
from poolserve.vllm.facts import ServingFacts

REPORT_VERSION = 1


@dataclass(frozen=True)
class RequestResult:
    """One measured request.

    Attributes:
        ok: the server answered 2xx with a well-formed body of the expected size.
        latency_s: send to fully-read response, in seconds.
        start_s: when it was sent, relative to the start of the measured phase.
        texts: texts in the request (embedding inputs, or rerank documents).
        prompt_tokens: tokens of the request by the model's own tokenizer (0 when not counted, or on error).
        error_kind: ``timeout``, ``connect``, ``http_503``, ``bad_response`` ... when not ``ok``.
        error_detail: the server's error message or the exception text (first 200 characters).
        server_tokens: what the server reported in ``usage`` (0 when it did not): servers count differently
            (Infinity counts characters by default), so it is a check, never the token column.
    """

    ok: bool
    latency_s: float
    start_s: float
    texts: int
    prompt_tokens: int = 0
    error_kind: str | None = None
    error_detail: str | None = None
    server_tokens: int = 0


@dataclass(frozen=True)
class Setting:
    """One point of the sweep."""

    concurrency: int
    """Requests in flight at once (closed loop: each worker sends the next when its last returns)."""
    batch_size: int
    """Texts per request: embedding inputs, or documents per rerank query."""


@dataclass(frozen=True)
class SettingReport:
    """What one setting measured. Rates count successful requests only, over the measured window."""

    concurrency: int
    batch_size: int
    requests: int
    """Successful requests."""
    errors: int
    duration_s: float
    requests_per_s: float
    texts_per_s: float
    tokens_per_s: float
    """Prompt tokens per second, counted by the model's own tokenizer (0 when no tokenizer could be loaded;
    reports written before that counted the server's ``usage``)."""
    latency_p50_ms: float | None
    latency_p90_ms: float | None
    latency_p99_ms: float | None
    latency_mean_ms: float | None
    latency_max_ms: float | None
    tokens_per_text: float | None
    """Mean prompt tokens per text by the model's tokenizer (a rerank text is its query-document pair)."""
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    error_examples: dict[str, str] = field(default_factory=dict)
    """The first error message seen for each kind."""
    client_cpu_s: float | None = None
    """CPU seconds the benchmark process used during the window (it shares the machine with a local server)."""
    server_tokens_per_text: float | None = None
    """Mean tokens per text the server reported in ``usage`` (its own way of counting; a check only)."""

    @property
    def setting(self) -> Setting:
        """The (concurrency, batch size) point."""
        return Setting(self.concurrency, self.batch_size)


@dataclass(frozen=True)
class MachineInfo:
    """The machine the benchmark ran on (the client's; equal to the server's for the local target)."""

    cpu_model: str | None
    cores: int | None
    ram_gib: float | None
    os: str
    python: str
    vllm_version: str | None = None
    load_avg: tuple[float, float, float] | None = None
    """1/5/15-minute load average when the run started."""
    cpu_flags: tuple[str, ...] = ()
    """The flags that decide CPU dtype speed (avx512f, avx512_bf16, avx512_fp16, amx_bf16 ...)."""


@dataclass(frozen=True)
class BaselineResult:
    """The same texts encoded in-process (no HTTP, no server), at one batch size."""

    library: str
    batch_size: int
    texts: int
    duration_s: float
    texts_per_s: float
    dtype: str | None = None


@dataclass(frozen=True)
class BenchReport:
    """Everything ``poolserve bench`` measured; ``-o report.json`` writes it."""

    timestamp: str
    machine: MachineInfo
    endpoint: str | None
    model: str | None
    task: str
    input_tokens: int
    settings: tuple[SettingReport, ...]
    warmup_requests: int | None = None
    """Warm-up requests per setting, left out of the figures (None: the default, max(2, concurrency))."""
    label: str | None = None
    """Free text naming the run (``float32``), shown in comparisons and plots."""
    self_test: tuple[SettingReport, ...] = ()
    """The generator's own ceiling against a trivial local server, per setting."""
    baseline: tuple[BaselineResult, ...] = ()
    notes: tuple[str, ...] = ()
    version: int = REPORT_VERSION
    deployment: ServingFacts | None = None
    """What the measured deployment ran with (dtype, device, target), when ``bench`` was given a config NAME."""
    replicas: int | None = None
    """Ready replicas behind the endpoint when the run started (``poolserve plan --from`` divides by it)."""
    api: str = "vllm"
    """Whose HTTP API was spoken: ``vllm`` or ``infinity`` (the paths; see :mod:`poolserve.bench.workload`)."""
    tokens_counted_by: str | None = None
    """The tokenizer that counted the token columns, or why none could be loaded (then they are empty).
    None in reports written before poolserve counted tokens itself (their columns are the server's count)."""


# ----------------------------------------------------------------------------------------------------
# Arithmetic


def percentile(values: Sequence[float], p: float) -> float | None:
    """The ``p``-th percentile (0..100) by linear interpolation between closest ranks; None when empty.

    Raises:
        ValueError: if ``p`` is outside 0..100.
    """
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is outside 0..100")
    if not values:
        return None
    xs = sorted(values)
    h = (len(xs) - 1) * p / 100
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000.0


def _rate(count: float, duration_s: float) -> float:
    return count / duration_s if duration_s > 0 else 0.0


def summarize(results: Iterable[RequestResult], duration_s: float, setting: Setting, *,
              client_cpu_s: float | None = None) -> SettingReport:
    """Rates and latency percentiles of one setting.

    Args:
        results: the measured requests (warm-up already left out).
        duration_s: the measured window (first send to last completion); rates divide by it.
        setting: the concurrency and batch size these results belong to.
        client_cpu_s: CPU seconds the client used in the window, if measured.

    Returns:
        The setting's report. Latencies and rates count successful requests only; failed ones
        are counted in ``errors`` and ``errors_by_kind``. Empty input gives zero rates and None
        latencies.
    """
    rs = list(results)
    ok = [r for r in rs if r.ok]
    failed = [r for r in rs if not r.ok]
    lat = [r.latency_s for r in ok]
    texts = sum(r.texts for r in ok)
    tokens = sum(r.prompt_tokens for r in ok)
    server_tokens = sum(r.server_tokens for r in ok)
    kinds = Counter(r.error_kind or "unknown" for r in failed)
    examples: dict[str, str] = {}
    for r in failed:
        examples.setdefault(r.error_kind or "unknown", r.error_detail or "")
    return SettingReport(
        concurrency=setting.concurrency,
        batch_size=setting.batch_size,
        requests=len(ok),
        errors=len(failed),
        duration_s=duration_s,
        requests_per_s=_rate(len(ok), duration_s),
        texts_per_s=_rate(texts, duration_s),
        tokens_per_s=_rate(tokens, duration_s),
        latency_p50_ms=_ms(percentile(lat, 50)),
        latency_p90_ms=_ms(percentile(lat, 90)),
        latency_p99_ms=_ms(percentile(lat, 99)),
        latency_mean_ms=_ms(sum(lat) / len(lat)) if lat else None,
        latency_max_ms=_ms(max(lat)) if lat else None,
        tokens_per_text=tokens / texts if texts and tokens else None,
        errors_by_kind=dict(sorted(kinds.items())),
        error_examples=dict(sorted(examples.items())),
        client_cpu_s=client_cpu_s,
        server_tokens_per_text=server_tokens / texts if texts and server_tokens else None,
    )


def baseline_for(report: BenchReport, batch_size: int) -> BaselineResult | None:
    """The baseline measured at ``batch_size``, if any."""
    return next((b for b in report.baseline if b.batch_size == batch_size), None)


def ceiling_for(report: BenchReport, setting: Setting) -> SettingReport | None:
    """The self-test result for ``setting``, if measured."""
    return next((s for s in report.self_test if s.setting == setting), None)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


@dataclass(frozen=True)
class Comparison:
    """One setting of this report against the same setting of a previous one."""

    concurrency: int
    batch_size: int
    texts_per_s: float
    previous_texts_per_s: float
    throughput_ratio: float | None
    """``texts_per_s / previous`` (>1: faster now)."""
    latency_p50_ratio: float | None
    """``p50 / previous p50`` (<1: faster now)."""
    latency_p99_ratio: float | None


def compare(current: BenchReport, previous: BenchReport) -> list[Comparison]:
    """Settings measured in both reports, with throughput and latency ratios (current / previous)."""
    prev = {s.setting: s for s in previous.settings}
    out: list[Comparison] = []
    for s in current.settings:
        p = prev.get(s.setting)
        if p is None:
            continue
        out.append(Comparison(
            concurrency=s.concurrency, batch_size=s.batch_size, texts_per_s=s.texts_per_s,
            previous_texts_per_s=p.texts_per_s, throughput_ratio=ratio(s.texts_per_s, p.texts_per_s),
            latency_p50_ratio=ratio(s.latency_p50_ms, p.latency_p50_ms),
            latency_p99_ratio=ratio(s.latency_p99_ms, p.latency_p99_ms),
        ))
    return out


# ----------------------------------------------------------------------------------------------------
# JSON


def report_to_dict(report: BenchReport) -> dict[str, Any]:
    """Plain JSON-able data (tuples become lists)."""
    return asdict(report)


def report_to_json(report: BenchReport) -> str:
    """The report as indented JSON (stable key order)."""
    return json.dumps(report_to_dict(report), indent=2) + "\n"


def _setting_report(d: Mapping[str, Any]) -> SettingReport:
    return SettingReport(**{**d, "errors_by_kind": dict(d.get("errors_by_kind") or {}),
                            "error_examples": dict(d.get("error_examples") or {})})


def report_from_dict(data: Mapping[str, Any], source: str = "report") -> BenchReport:
    """Rebuild a report from :func:`report_to_dict` data.

    Raises:
        SpecError: naming ``source`` when the data is not a poolserve bench report.
    """
    if not isinstance(data, Mapping) or "settings" not in data or "machine" not in data:
        raise SpecError(f"{source}: not a poolserve bench report (no 'settings'/'machine')")
    if data.get("version", REPORT_VERSION) != REPORT_VERSION:
        raise SpecError(f"{source}: bench report version {data.get('version')} is not {REPORT_VERSION}")
    try:
        m = dict(data["machine"])
        load = m.get("load_avg")
        machine = MachineInfo(**{**m, "load_avg": tuple(load) if load is not None else None,
                                 "cpu_flags": tuple(m.get("cpu_flags") or ())})
        return BenchReport(**{
            **data,
            "machine": machine,
            "settings": tuple(_setting_report(s) for s in data["settings"]),
            "self_test": tuple(_setting_report(s) for s in data.get("self_test") or ()),
            "baseline": tuple(BaselineResult(**b) for b in data.get("baseline") or ()),
            "notes": tuple(data.get("notes") or ()),
            "deployment": ServingFacts.from_dict(data["deployment"]) if data.get("deployment") else None,
        })
    except (TypeError, ValueError, KeyError) as err:
        raise SpecError(f"{source}: malformed bench report: {err}") from None


def report_from_json(text: str, source: str = "report") -> BenchReport:
    """Parse :func:`report_to_json` output.

    Raises:
        SpecError: naming ``source`` when the text is not JSON or not a bench report.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SpecError(f"{source}: not JSON: {err}") from None
    return report_from_dict(data, source)


def iter_settings(report: BenchReport) -> Iterator[SettingReport]:
    """The report's settings, batch size outer, concurrency inner (the table order)."""
    yield from sorted(report.settings, key=lambda s: (s.batch_size, s.concurrency))


def unserved_settings(report: BenchReport) -> list[SettingReport]:
    """The measured settings in which not one request succeeded (their rates say nothing)."""
    return [s for s in iter_settings(report) if s.requests == 0]
