"""``poolserve bench``: throughput and latency of a deployed model, against a baseline and the client's ceiling.

Parses options, calls :func:`poolserve.actions.bench.benchmark`, prints the table on stdout and
narration on stderr, writes ``-o`` JSON and ``--plot`` PNG (both checked before the sweep).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from poolserve.cli.options import (
    CONFIG,
    ConfigOpt,
    ContextOpt,
    KubeconfigOpt,
    Session,
    SetOpt,
    TargetOpt,
    session,
    source,
    where,
)
from poolserve.config.defaults import DEFAULT_DOCUMENTS, DEFAULT_INPUT_TOKENS, TOKEN_ENV
from poolserve.errors import SpecError

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from poolserve.bench.metrics import BenchReport
    from poolserve.bench.workload import ProgressCallback


def parse_ints(text: str, option: str) -> tuple[int, ...]:
    """``"1,4,16"`` -> ``(1, 4, 16)``; a one-line SpecError naming ``option`` otherwise."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise SpecError(f"{option} {text!r}: expected comma-separated integers like 1,4,16") from None
    if not values or any(v < 1 for v in values):
        raise SpecError(f"{option} {text!r}: expected positive integers like 1,4,16")
    return values


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def bench_table(report: BenchReport, previous: BenchReport | None = None) -> RenderableType:
    """The per-setting table, then the baseline and the generator's ceiling."""
    from rich.console import Group
    from rich.text import Text

    from poolserve.bench.metrics import baseline_for, ceiling_for, compare, iter_settings, ratio
    from poolserve.cli.output import fit_table

    has_base = bool(report.baseline)
    has_ceiling = bool(report.self_test)
    cols = ["CONC", "BATCH", "REQ/S", "TEXTS/S", "TOK/S", "P50 MS", "P90 MS", "P99 MS", "ERRORS"]
    if has_base:
        cols.append("VS BASE")
    if has_ceiling:
        cols.append("CEIL %")
    prev = {(c.concurrency, c.batch_size): c for c in compare(report, previous)} if previous else {}
    if previous:
        cols += ["VS PREV", "P50 VS PREV"]
    table = fit_table(*cols, wrap=("ERRORS",))
    for s in iter_settings(report):
        errors = ", ".join(f"{k}:{v}" for k, v in s.errors_by_kind.items()) if s.errors else "0"
        row = [str(s.concurrency), str(s.batch_size), _fmt(s.requests_per_s), _fmt(s.texts_per_s),
               _fmt(s.tokens_per_s if s.tokens_per_text else None, 0),  # '-': no tokenizer
               _fmt(s.latency_p50_ms), _fmt(s.latency_p90_ms), _fmt(s.latency_p99_ms),
               errors]
        if has_base:
            b = baseline_for(report, s.batch_size)
            row.append(_x(ratio(s.texts_per_s, b.texts_per_s if b else None)))
        if has_ceiling:
            c = ceiling_for(report, s.setting)
            pct = ratio(s.requests_per_s, c.requests_per_s if c else None)
            row.append("-" if pct is None else f"{100 * pct:.1f}%")
        if previous:
            cmp = prev.get((s.concurrency, s.batch_size))
            row += [_x(cmp.throughput_ratio if cmp else None), _x(cmp.latency_p50_ratio if cmp else None)]
        table.add_row(*row)
    parts: list[RenderableType] = []
    if report.settings:
        parts.append(table)
    for b in report.baseline:
        parts.append(Text(f"baseline {b.library} ({b.dtype or 'default dtype'}, in-process) batch {b.batch_size}: "
                          f"{b.texts_per_s:,.1f} texts/s ({b.texts} texts in {b.duration_s:.1f} s)"))
    if report.self_test:
        ceiling = fit_table("CONC", "BATCH", "CEILING REQ/S", "CEILING TEXTS/S", "P50 MS", "CLIENT CPU S",
                            title="generator ceiling (--self-test, canned local server)", title_justify="left")
        for c in sorted(report.self_test, key=lambda c: (c.batch_size, c.concurrency)):
            ceiling.add_row(str(c.concurrency), str(c.batch_size), _fmt(c.requests_per_s), _fmt(c.texts_per_s),
                            _fmt(c.latency_p50_ms, 2), _fmt(c.client_cpu_s, 2))
        parts.append(ceiling)
    return Group(*parts)


def _describe(report: BenchReport) -> str:
    m = report.machine
    load = "/".join(f"{x:.2f}" for x in m.load_avg) if m.load_avg else "?"
    return (f"{report.model or '-'} ({report.task}) at {report.endpoint or '-'} ({report.api} API); "
            f"vLLM {m.vllm_version or '?'}; {m.cpu_model or '?'}, {m.cores or '?'} cores, {m.ram_gib or '?'} GiB, "
            f"load {load}; ~{report.input_tokens} tokens/text; tokens counted by {report.tokens_counted_by or '?'}")


@contextmanager
def _progress(err: Console) -> Iterator[ProgressCallback]:
    """A bar per setting on a terminal (stderr); one line per setting otherwise."""
    from poolserve.bench.workload import BenchProgress

    seen: set[tuple[str, int]] = set()
    if not err.is_terminal:
        def plain(ev: BenchProgress) -> None:
            key = (ev.phase, ev.index)
            if key not in seen:
                seen.add(key)
                err.print(f"… {ev.phase} {ev.index + 1}/{ev.settings}: concurrency {ev.setting.concurrency}, "
                          f"batch {ev.setting.batch_size}", highlight=False)

        yield plain
        return
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
                  TimeElapsedColumn(), console=err, transient=True) as bar:
        tasks: dict[tuple[str, int], TaskID] = {}

        def update(ev: BenchProgress) -> None:
            key = (ev.phase, ev.index)
            desc = (f"{ev.phase} {ev.index + 1}/{ev.settings} c={ev.setting.concurrency} "
                    f"b={ev.setting.batch_size}")
            if key not in tasks:
                for t in tasks.values():
                    bar.update(t, visible=False)
                tasks[key] = bar.add_task(desc, total=1.0, count="")
            count = f"{ev.done}/{ev.total}" if ev.total else str(ev.done)
            bar.update(tasks[key], completed=ev.fraction or 0.0, count=count)

        yield update


def _check_writable(path: Path | None, option: str) -> None:
    """Fail before the sweep, not after it, when ``path`` cannot be written."""
    if path is None or str(path) == "-":
        return
    parent = path.parent
    if path.is_dir():
        raise SpecError(f"{option} {path}: is a directory; give a file name")
    if not parent.is_dir():
        raise SpecError(f"{option} {path}: directory {parent} does not exist")
    if not os.access(path if path.exists() else parent, os.W_OK):
        raise SpecError(f"{option} {path}: {'file' if path.exists() else 'directory ' + str(parent)} is not "
                        "writable")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"{path}: cannot read the report: {e.strerror or e}") from None


def _finish(s: Session, report: BenchReport, previous: BenchReport | None, output_file: Path | None,
            plot: Path | None) -> None:
    from poolserve.bench.metrics import report_to_json

    err, out = s.err(), s.out()
    err.print(_describe(report), highlight=False)
    if output_file is not None and str(output_file) == "-":
        typer.echo(report_to_json(report), nl=False)
    else:
        out.print(bench_table(report, previous))
    if output_file is not None and str(output_file) != "-":
        try:
            output_file.write_text(report_to_json(report), encoding="utf-8")
        except OSError as e:
            raise SpecError(f"{output_file}: cannot write the report: {e.strerror or e}") from None
        err.print(f"wrote {output_file}", highlight=False)
    if plot is not None:
        from poolserve.bench.plot import plot_reports

        shown = report if report.settings else replace(report, settings=report.self_test)
        reports = [shown] if previous is None else [shown, replace(previous, label=previous.label or "previous")]
        plot_reports(reports, plot)
        err.print(f"wrote {plot}", highlight=False)
    for note in report.notes:
        err.print(f"note: {note}", style="yellow", highlight=False)


def bench_cmd(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Model name from the config (optional with --url or "
                                               "--self-test).", show_default=False, metavar="NAME")] = None,
    config: ConfigOpt = CONFIG,
    target: TargetOpt = None,
    url: Annotated[str | None, typer.Option("--url", help="Benchmark this base URL instead of the target's "
                                            "endpoint, e.g. http://127.0.0.1:8000.", metavar="URL")] = None,
    token: Annotated[str | None, typer.Option("--token", envvar=TOKEN_ENV, metavar="TOKEN",
                                              help="Bearer token for --url.")] = None,
    task_opt: Annotated[str | None, typer.Option("--task", help="embed or score, with --url when NAME is not in "
                                                 "the config (required then; without NAME default embed).",
                                                 metavar="TASK")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model name sent in requests, with --url when NAME "
                                              "is not in the config.", metavar="MODEL")] = None,
    concurrency: Annotated[str, typer.Option("--concurrency", help="Requests in flight, one setting each.",
                                             metavar="N,N,...")] = "1,4,16,64",
    batch_size: Annotated[str | None, typer.Option("--batch-size", help="Texts per embeddings request, one "
                                                   "setting each (default 1,8,32).", metavar="N,N,...")] = None,
    requests: Annotated[int | None, typer.Option("--requests", "-n", help="Measured requests per setting "
                                                 "(default 200 unless --duration).", metavar="N")] = None,
    duration: Annotated[str | None, typer.Option("--duration", help="Measure each setting this long "
                                                 "instead, e.g. 30s.", metavar="DURATION")] = None,
    warmup: Annotated[int | None, typer.Option("--warmup", help="Warm-up requests per setting, left out "
                                               "(default: max(2, concurrency)).", metavar="N")] = None,
    time_cap: Annotated[str, typer.Option("--time-cap", help="Hard limit of each setting's measurement (the "
                                          "warm-up has its own cap of the same length); requests in flight then "
                                          "count as time_cap errors.", metavar="DURATION")] = "5m",
    input_tokens: Annotated[int, typer.Option("--input-tokens", help="Tokens per text (approximate).",
                                              metavar="N")] = DEFAULT_INPUT_TOKENS,
    documents: Annotated[str, typer.Option("--documents", help="Documents per rerank request (rerankers), "
                                           "one setting each.", metavar="N,N,...")] = str(DEFAULT_DOCUMENTS),
    output_file: Annotated[Path | None, typer.Option("--output", "-o", help="Write the JSON report here "
                                                     "('-' for stdout instead of the table).", metavar="FILE")]
    = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG chart (needs the 'plot' extra: "
                                              "matplotlib).", metavar="FILE")] = None,
    compare_file: Annotated[Path | None, typer.Option("--compare", help="A previous JSON report: show "
                                                      "ratios against it.", metavar="FILE")] = None,
    baseline: Annotated[str | None, typer.Option("--baseline", help="Also encode the same texts in-process, "
                                                 "after the load: sentence-transformers (needs the 'reference' "
                                                 "extra).", metavar="LIBRARY")] = None,
    baseline_dtype: Annotated[str, typer.Option("--baseline-dtype", help="dtype of the baseline model.",
                                                metavar="DTYPE")] = "float32",
    self_test: Annotated[bool, typer.Option("--self-test", help="Measure the generator's own ceiling "
                                            "against a canned local server (alone without NAME/--url).")]
    = False,
    label: Annotated[str | None, typer.Option("--label", help="Name of this run in comparisons and plots.",
                                              metavar="TEXT")] = None,
    api: Annotated[str, typer.Option("--api", help="Whose HTTP API the endpoint speaks: vllm (/v1/embeddings, "
                                     "/v1/rerank) or infinity (/embeddings, /rerank under the --url given, which "
                                     "includes Infinity's --url-prefix).", metavar="API")] = "vllm",
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", help="Count tokens with this tokenizer (a "
                                                  "directory or a cached model id; default: the model's). The "
                                                  "server's usage count is never used.", metavar="DIR_OR_ID")]
    = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Benchmark a deployed model: throughput, latency p50/p90/p99 and errors per concurrency x batch size."""
    from poolserve.actions.bench import BenchRequest, benchmark, unserved
    from poolserve.bench.metrics import report_from_json

    s = session(ctx)
    _check_writable(output_file, "--output")
    _check_writable(plot, "--plot")
    req = BenchRequest(
        name=name, source=source(config, set_), where=where(target, context, kubeconfig), url=url, token=token,
        task=task_opt, model=model, concurrency=parse_ints(concurrency, "--concurrency"),
        batch_sizes=parse_ints(batch_size, "--batch-size") if batch_size else None,
        documents=parse_ints(documents, "--documents"), requests=requests, duration=duration, warmup=warmup,
        time_cap=time_cap, input_tokens=input_tokens, baseline=baseline, baseline_dtype=baseline_dtype,
        self_test=self_test, label=label, api=api, tokenizer=tokenizer)
    previous = report_from_json(_read(compare_file), str(compare_file)) if compare_file else None
    if plot is not None:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise SpecError("--plot needs matplotlib: pip install -e '.[plot]' in the poolserve checkout")
    with _progress(s.err()) as progress:
        report = benchmark(req, s.edges, progress=progress, notify=lambda m: s.err().print(m, highlight=False))
    _finish(s, report, previous, output_file, plot)
    problem = unserved(report)
    if problem is not None:
        raise problem
