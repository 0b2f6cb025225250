"""PNG charts of bench reports for ``poolserve bench --plot`` (edge: matplotlib, optional extra ``plot``).

Left: texts/s against concurrency, one line per (report, batch size), the in-process baseline as a
dashed level. Right: latency p50 (solid) and p99 (dotted) against concurrency. Several reports
(``--compare``, or one per dtype in ``benchmarks/``) share the axes, told apart by their labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from poolserve.bench.metrics import BenchReport, SettingReport
from poolserve.errors import SpecError


def _label(report: BenchReport, index: int) -> str:
    return report.label or report.model or f"report {index + 1}"


def _series(settings: Sequence[SettingReport], batch_size: int) -> list[SettingReport]:
    return sorted((s for s in settings if s.batch_size == batch_size), key=lambda s: s.concurrency)


def plot_reports(reports: Sequence[BenchReport], path: Path, *, title: str | None = None) -> Path:
    """Write the throughput and latency chart of ``reports`` to ``path`` (PNG).

    Raises:
        SpecError: when matplotlib is missing or the file cannot be written.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        raise SpecError("--plot needs matplotlib: pip install -e '.[plot]' in the poolserve checkout") from None
    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(13, 5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    k = 0
    for i, rep in enumerate(reports):
        name = _label(rep, i)
        for b in sorted({s.batch_size for s in rep.settings}):
            pts = _series(rep.settings, b)
            color = colors[k % len(colors)]
            k += 1
            xs = [s.concurrency for s in pts]
            ax_t.plot(xs, [s.texts_per_s for s in pts], marker="o", color=color, label=f"{name} b={b}")
            base = next((x for x in rep.baseline if x.batch_size == b), None)
            if base is not None:
                ax_t.axhline(base.texts_per_s, color=color, linestyle="--", linewidth=1,
                             label=f"{name} b={b} {base.library}")
            p50 = [(s.concurrency, s.latency_p50_ms) for s in pts if s.latency_p50_ms is not None]
            p99 = [(s.concurrency, s.latency_p99_ms) for s in pts if s.latency_p99_ms is not None]
            if p50:
                ax_l.plot(*zip(*p50, strict=True), marker="o", color=color, label=f"{name} b={b} p50")
            if p99:
                ax_l.plot(*zip(*p99, strict=True), marker="x", linestyle=":", color=color,
                          label=f"{name} b={b} p99")
    ticks = sorted({s.concurrency for r in reports for s in r.settings})
    for ax, ylabel in ((ax_t, "texts/s"), (ax_l, "latency (ms)")):
        ax.set_xscale("log", base=2)
        if ticks:
            ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("concurrency (requests in flight)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    ax_l.set_yscale("log")
    ax_l.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax_l.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax_l.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax_t.set_title("Throughput")
    ax_l.set_title("Latency p50 (solid) / p99 (dotted)")
    first = reports[0] if reports else None
    if title is None and first is not None:
        title = f"{first.model or ''} {first.task} - {first.input_tokens} tokens/text - {first.timestamp}"
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as err:
        raise SpecError(f"{path}: cannot write the plot: {err}") from None
    finally:
        plt.close(fig)
    return path
