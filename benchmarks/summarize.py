"""Print the markdown tables of benchmarks/README.md from the JSON reports in a results directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from poolserve.bench.metrics import BenchReport, baseline_for, ceiling_for, ratio, report_from_json

DTYPE_RUNS = ("float32", "bfloat16", "float16")


def _f(v: float | None, d: int = 1) -> str:
    return "-" if v is None else f"{v:,.{d}f}"


def machine(r: BenchReport) -> str:
    m = r.machine
    load = "/".join(f"{x:.2f}" for x in m.load_avg) if m.load_avg else "?"
    return (f"{m.cpu_model}, {m.cores} cores, {m.ram_gib} GiB RAM, {m.os}, Python {m.python}, "
            f"vLLM {m.vllm_version}; CPU flags: {' '.join(m.cpu_flags)}; load at start {load}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("results", type=Path)
    p.add_argument("--plot", type=Path)
    a = p.parse_args()
    reports = {f.stem: report_from_json(f.read_text(), str(f)) for f in sorted(a.results.glob("*.json"))}
    ceiling = reports.pop("self-test", None)
    order = [k for k in DTYPE_RUNS if k in reports] + sorted(k for k in reports if k not in DTYPE_RUNS)
    if not order:
        raise SystemExit(f"{a.results}: no reports")
    first = reports[order[0]]
    print(f"Machine: {machine(first)}\n")
    print(f"Model {first.model}, ~{first.input_tokens} tokens per text, {first.task}.\n")
    print("| run | conc | batch | req/s | texts/s | tokens/s | p50 ms | p90 ms | p99 ms | errors "
          "| ST texts/s | vLLM / ST | client CPU | % of ceiling |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in order:
        r = reports[name]
        for s in sorted(r.settings, key=lambda s: (s.batch_size, s.concurrency)):
            b = baseline_for(r, s.batch_size)
            c = ceiling_for(ceiling, s.setting) if ceiling else None
            pct = ratio(s.requests_per_s, c.requests_per_s if c else None)
            cpu = ratio(s.client_cpu_s, s.duration_s)
            print(f"| {name} | {s.concurrency} | {s.batch_size} | {_f(s.requests_per_s)} | {_f(s.texts_per_s)} "
                  f"| {_f(s.tokens_per_s, 0)} | {_f(s.latency_p50_ms)} | {_f(s.latency_p90_ms)} "
                  f"| {_f(s.latency_p99_ms)} | {s.errors} | {_f(b.texts_per_s if b else None)} "
                  f"| {_f(ratio(s.texts_per_s, b.texts_per_s if b else None), 2)}x "
                  f"| {'-' if cpu is None else f'{100 * cpu:.0f}%'} | {'-' if pct is None else f'{100 * pct:.1f}%'} |")
    print("\nBest texts/s per run (over concurrency):\n")
    sizes = sorted({s.batch_size for r in reports.values() for s in r.settings})
    print("| run | " + " | ".join(f"batch {b}: vLLM | batch {b}: ST" for b in sizes) + " | load at start |")
    print("|---|" + "---:|---:|" * len(sizes) + "---|")
    for name in order:
        r = reports[name]
        cells = []
        for b in sizes:
            best = max((s.texts_per_s for s in r.settings if s.batch_size == b), default=None)
            base = baseline_for(r, b)
            cells += [_f(best), _f(base.texts_per_s if base else None)]
        load = "/".join(f"{x:.2f}" for x in r.machine.load_avg) if r.machine.load_avg else "?"
        print(f"| {name} | " + " | ".join(cells) + f" | {load} |")
    if ceiling:
        print("\nGenerator ceiling (`poolserve bench --self-test`, canned server in-process):\n")
        print("| conc | batch | req/s | texts/s | p50 ms |")
        print("|---:|---:|---:|---:|---:|")
        for c in sorted(ceiling.self_test, key=lambda c: (c.batch_size, c.concurrency)):
            print(f"| {c.concurrency} | {c.batch_size} | {_f(c.requests_per_s)} | {_f(c.texts_per_s)} "
                  f"| {_f(c.latency_p50_ms, 2)} |")
    notes = [f"- {name}: {n}" for name in order for n in reports[name].notes]
    if notes:
        print("\nNotes:\n")
        print("\n".join(notes))
    if a.plot:
        from poolserve.bench.plot import plot_reports

        plot_reports([reports[k] for k in DTYPE_RUNS if k in reports], a.plot,
                     title=f"{first.model} on {first.machine.cores} CPU cores: vLLM (solid) vs "
                           "sentence-transformers (dashed)")


if __name__ == "__main__":
    main()
