"""``poolserve plan``: GPU memory estimates and what each model's GPU settings mean."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer

from poolserve.cli.options import CONFIG, ConfigOpt, SetOpt, TableOrJson, TableOrJsonOpt, session, source

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
) -> None:
    """Estimate each model's GPU memory; say whether it fits a MIG slice or a shared GPU, and what its settings do."""
    from rich.console import Group
    from rich.text import Text

    from poolserve.actions.plan import plan
    from poolserve.cli.output import print_result

    plans = plan(source(config, set_), tuple(names or ()))
    lines: list[Text] = []
    for i, p in enumerate(plans):
        if i:
            lines.append(Text(""))
        lines += [Text(line, style="bold" if j == 0 else "") for j, line in enumerate(plan_lines(p))]
    print_result(session(ctx), output, [_row(p) for p in plans], table=Group(*lines), notes=[Text(FOOTER)])
