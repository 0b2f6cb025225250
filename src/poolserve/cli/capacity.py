"""``poolserve plan NAME --from BENCH.json``: printing the capacity plan (:mod:`poolserve.actions.capacity`)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from poolserve.actions.capacity import CapacityRequest, CapacityResult
    from poolserve.bench.capacity import CapacityPlan


def _shape(plan: CapacityPlan) -> str:
    return f"{plan.batch} document{'s' if plan.batch != 1 else ''} per query" if plan.task == "score" else \
        f"{plan.batch} text{'s' if plan.batch != 1 else ''} per request"


def _inputs(plan: CapacityPlan, requests: float) -> str:
    return f"{requests * plan.batch:,.0f} {'pairs' if plan.task == 'score' else 'texts'}/s"


def _curve(plan: CapacityPlan) -> list[str]:
    return [f"c={p.concurrency:g}: {p.requests_per_s:,.1f} req/s, p99 "
            + ("-" if p.p99_ms is None else f"{p.p99_ms:,.0f} ms") + (f", {p.errors} failed" if p.errors else "")
            for p in plan.points]


def plan_rows(r: CapacityResult, config: str) -> list[tuple[str, list[str]]]:
    """``(key, values)`` rows of the plan, after the headline."""
    from poolserve.config.yamledit import flow
    from poolserve.vllm.facts import describe

    p, g = r.plan, r.plan.goal
    lo = max((q.concurrency for q in p.points if q.concurrency <= p.c_max), default=p.c_max)
    hi = min((q.concurrency for q in p.points if q.concurrency > p.c_max), default=None)
    exact = "measured" if hi is None or lo == p.c_max else f"interpolated between c={lo:g} and c={hi:g}"
    rows: list[tuple[str, list[str]]] = [(f"WARNING {i + 1}", [w]) for i, w in enumerate(p.warnings)]
    rows += [
        ("measured", [describe(r.report.deployment) if r.report.deployment else
                      f"{r.report.model or '?'} at {r.report.endpoint or '?'} (device and dtype not recorded)"]),
        ("goal", [f"{g.rate_per_s:,.1f} requests/s of {_shape(p)} ({_inputs(p, g.rate_per_s)}), p99 <= "
                  f"{g.p99_ms:,.0f} ms, {g.headroom:.0%} headroom"]),
        ("curve", _curve(p)),
        ("limit", [f"p99 reaches {g.p99_ms:,.0f} ms at {p.c_max:.1f} requests in flight per replica ({exact})"]),
        ("per replica", [f"target {p.concurrency} in flight ({g.headroom:.0%} below the limit): "
                         f"{p.requests_per_s:,.1f} req/s ({_inputs(p, p.requests_per_s)}), p99 {p.p99_ms:,.0f} ms"]),
        ("replicas", [f"{g.rate_per_s:,.1f} / {p.requests_per_s:,.1f} = {p.replicas_exact:.2f} -> max_replicas "
                      f"{p.max_replicas} (min {p.min_replicas}); at the limit they serve up to "
                      f"{p.ceiling_per_s:,.1f} req/s within p99, "
                      f"{p.ceiling_per_s / g.rate_per_s - 1:.0%} above the rate"]),
        ("keda", [f"queue target {p.target} inputs in flight per replica ({p.concurrency} "
                  f"request{'s' if p.concurrency != 1 else ''} x {p.batch}: vLLM counts each "
                  + ("document" if p.task == "score" else "text") + ")"]),
    ]
    if r.memory:
        rows.append(("memory", list(r.memory)))
    paste = [f"max_replicas: {r.updates['max_replicas']}", f"autoscaling: {flow(r.updates['autoscaling'])}"]
    rows.append(("written" if r.written else "config", [f"models[{p.name}] in {config}:", *(f"  {x}" for x in paste)]))
    if p.notes:
        rows.append(("notes", [f"- {n}" for n in p.notes]))
    return rows


def plan_lines(r: CapacityResult, config: str) -> list[tuple[str, str | None]]:
    """``(line, style)`` pairs: the headline, then aligned ``key  value`` rows (warnings bold red)."""
    rep = r.report
    head = (f"{r.plan.name}: capacity plan from a benchmark of {rep.timestamp}"
            + (f" ({rep.deployment.target} target)" if rep.deployment and rep.deployment.target else ""))
    rows = plan_rows(r, config)
    width = max(len(k) for k, _ in rows)
    out: list[tuple[str, str | None]] = [(head, "bold")]
    for key, values in rows:
        style = "bold red" if key.startswith("WARNING") else ("green" if key == "written" else None)
        for i, value in enumerate(values):
            out.append((f" {(key if i == 0 else '').ljust(width)}  {value}".rstrip(), style))
    return out


def plan_data(r: CapacityResult) -> dict[str, Any]:
    """JSON-ready: the plan, the memory lines, the config updates and where they were written."""
    return {"plan": asdict(r.plan), "memory": list(r.memory), "updates": r.updates,
            "written": str(r.written) if r.written else None,
            "measured": r.report.deployment.to_dict() if r.report.deployment else None}


def capacity_cmd(ctx: Any, req: CapacityRequest, output: str) -> None:
    """Run the action and print it; warnings again on stderr, so a pipe still shows them."""
    import typer

    from poolserve.actions.capacity import capacity
    from poolserve.cli.options import session

    s = session(ctx)
    result = capacity(req)
    if output == "json":
        typer.echo(json.dumps(plan_data(result), indent=2))
    else:
        for line, style in plan_lines(result, str(req.source.config)):
            s.out().print(line, style=style, highlight=False, markup=False)
    for w in result.plan.warnings:
        s.err().print(f"WARNING: {w}", style="bold red", highlight=False, markup=False)
    if result.written is not None:
        s.err().print(f"wrote {result.written}: `poolserve render` shows the KEDA target", highlight=False,
                      markup=False)
