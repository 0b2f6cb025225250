"""``poolserve plan``: GPU memory estimates and what each model's GPU settings mean."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from poolserve.cli.options import CONFIG, ConfigOpt, SetOpt, TableOrJson, TableOrJsonOpt, session, source
from poolserve.errors import SpecError

if TYPE_CHECKING:
    from poolserve.vllm.sizing import ModelPlan

FOOTER = ("Estimates, not measurements: parts and sources in LESSONS_LEARNED.md 'GPU sizing' "
          "(vLLM logs what it actually uses at startup).")


def _gib(x: float) -> str:
    return f"{x:.2f} GiB"


def plan_lines(p: ModelPlan) -> list[str]:
    """One model's plan as plain lines (a title, then ``key  value`` rows)."""
    params = f"{p.params / 1e6:.1f}M params" if p.params else "size unknown"
    util = f", --gpu-memory-utilization={p.utilization:g}" if p.utilization is not None else ""
    memory = f" ({_gib(p.gpu_memory_gib)})" if p.gpu_memory_gib is not None else ""
    rows: list[tuple[str, list[str]]] = [("device", [f"{p.device}{memory}{util}"])]
    e = p.estimate
    if e is not None:
        kv = (f"; KV cache {e.kv_per_token_bytes / 1024:.0f} KiB/token, at least {_gib(e.kv_min_gib)}"
              if e.has_kv_cache else "; no KV cache (encoder-only)")
        rows.append(("estimate", [f"{_gib(e.need_gib)} = weights {_gib(e.weights_gib)} ({e.dtype}) + activations "
                                  f"{_gib(e.activations_gib)} ({e.batched_tokens}-token batch) + CUDA context and "
                                  f"runtime {_gib(e.runtime_gib)} + CUDA graphs {_gib(e.graphs_gib)}, +10 %{kv}"]))
        fits = {True: "yes", False: "NO", None: "unknown (set gpu_memory_gib, or mig_profile)"}[p.fits]
        rows.append(("fits", [fits]))
        rows.append(("MIG", [", ".join(f"{prof} ({family})" for family, prof in p.smallest_mig) or "none"]))
        rows.append(("time-sliced", [", ".join(f"{n} per {g:.0f} GiB GPU" for g, n in p.copies_per_gpu)
                                     + " (memory only: they share its compute)"]))
        if p.recommended_utilization is not None:
            rows.append(("recommend", [f"--gpu-memory-utilization={p.recommended_utilization:g} on this device"]))
    rows.append(("notes", [f"- {s}" for s in p.statements] or [""]))
    width = max(len(k) for k, _ in rows)
    lines = [f"{p.name}  {p.model_id}  {params}"]
    for key, values in rows:
        for i, value in enumerate(values):
            lines.append(f" {(key if i == 0 else '').ljust(width)}  {value}".rstrip())
    return lines


def _row(p: ModelPlan) -> dict[str, Any]:
    row = asdict(p)
    if p.estimate is not None:
        row["estimate"]["footprint_gib"] = p.estimate.footprint_gib
        row["estimate"]["need_gib"] = p.estimate.need_gib
    return row


def plan_cmd(
    ctx: typer.Context,
    names: Annotated[list[str] | None, typer.Argument(help="Models to size (default: all).", show_default=False,
                                                      metavar="NAME")] = None,
    config: ConfigOpt = CONFIG,
    set_: SetOpt = None,
    output: TableOrJsonOpt = TableOrJson.table,
    from_: Annotated[Path | None, typer.Option("--from", help="A `poolserve bench -o` report: plan replicas and the "
                                               "KEDA target for --rate and --p99 from its curve (one NAME).",
                                               metavar="BENCH.json")] = None,
    rate: Annotated[str | None, typer.Option("--rate", help="With --from: the peak rate, in requests of the --batch "
                                             "shape, e.g. 500/s or 30000/min.", metavar="RATE")] = None,
    p99: Annotated[str | None, typer.Option("--p99", help="With --from: the p99 latency goal, e.g. 200ms.",
                                            metavar="LATENCY")] = None,
    batch: Annotated[int | None, typer.Option("--batch", help="With --from: texts per request (documents per "
                                              "rerank query) the application sends (default: the report's only "
                                              "one).", metavar="N")] = None,
    headroom: Annotated[str | None, typer.Option("--headroom", help="With --from: how far below the p99 limit "
                                                 "the KEDA target sits (default 20%).", metavar="SHARE")] = None,
    write: Annotated[bool, typer.Option("--write", help="With --from: set max_replicas and autoscaling in the "
                                        "config file, keeping its comments and order.")] = False,
) -> None:
    """Estimate each model's GPU memory; say whether it fits a MIG slice or a shared GPU, and what its settings do.

    With --from BENCH.json --rate R --p99 L: the replicas, KEDA target and max_replicas that keep p99 under L at R.
    """
    from rich.console import Group
    from rich.text import Text

    from poolserve.actions.plan import plan
    from poolserve.cli.output import print_result

    if from_ is not None or rate is not None or p99 is not None or write:
        from poolserve.actions.capacity import CapacityRequest
        from poolserve.cli.capacity import capacity_cmd

        if from_ is None or rate is None or p99 is None or len(names or ()) != 1:
            raise SpecError("a capacity plan needs one NAME, --from BENCH.json, --rate and --p99, e.g. `poolserve "
                            "plan minilm-embedding --from bench.json --rate 500/s --p99 200ms`")
        capacity_cmd(ctx, CapacityRequest(name=(names or [""])[0], report=from_, rate=rate, p99=p99,
                                          source=source(config, set_), batch=batch, headroom=headroom, write=write),
                     output)
        return

    plans = plan(source(config, set_), tuple(names or ()))
    lines: list[Text] = []
    for i, p in enumerate(plans):
        if i:
            lines.append(Text(""))
        lines += [Text(line, style="bold" if j == 0 else "") for j, line in enumerate(plan_lines(p))]
    print_result(session(ctx), output, [_row(p) for p in plans], table=Group(*lines), notes=[Text(FOOTER)])
