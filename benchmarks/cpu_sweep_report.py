"""The report of benchmarks/cpu-sweep.sh: every run's best texts/s against the best vLLM of the same dtype.

    cpu_sweep_report.py RESULTS_DIR [--not-publishable REASON]   (Markdown on stdout)

The issue's target: the CPU runtime as rendered within 10 % of the best vLLM configuration measured on the
same machine in the same run, for float32 and for bfloat16. A run's dtype is read from its label
(``bfloat16`` in it: bf16; otherwise float32), as the sweep names them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from poolserve.bench.metrics import BenchReport, report_from_json

ORDER = ("rendered", "bind-auto", "bind-auto-res0", "bind-explicit", "omp-half", "omp-2x", "preload", "tcmalloc",
         "iomp", "engine-1t", "preload-engine-1t", "preload-kmp", "preload-kmp-engine-1t", "exclusive",
         "preload-exclusive", "mnbt-8192", "mns-64", "bfloat16", "preload-kmp-bfloat16", "preload-exclusive-bfloat16",
         "compiled", "local-float32", "local-bfloat16")
TARGET = 0.90


def _f(v: float | None, d: int = 1) -> str:
    return "-" if v is None else f"{v:,.{d}f}"


def dtype_of(label: str) -> str:
    return "bfloat16" if "bfloat16" in label else "float32"


def best(r: BenchReport, batch: int) -> float | None:
    return max((s.texts_per_s for s in r.settings if s.batch_size == batch), default=None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path)
    p.add_argument("--not-publishable", metavar="REASON")
    a = p.parse_args()
    reports = {f.stem: report_from_json(f.read_text(), str(f)) for f in sorted(a.results.glob("*.json"))}
    if not reports:
        raise SystemExit(f"{a.results}: no reports")
    order = [k for k in ORDER if k in reports] + sorted(k for k in reports if k not in ORDER)
    first = reports[order[0]]
    m = first.machine
    print(f"# CPU runtime sweep ({first.timestamp})\n")
    if a.not_publishable:
        print(f"> **NOT PUBLISHABLE: {a.not_publishable}.** These figures prove the script runs; they are not "
              "measurements.\n")
    print(f"Machine: {m.cpu_model}, {m.cores} cores, {m.ram_gib} GiB; CPU flags `{' '.join(m.cpu_flags) or '-'}`; "
          f"vLLM {m.vllm_version}; {first.model}, {first.input_tokens}-token texts "
          f"(tokens counted by {first.tokens_counted_by}).\n")
    sizes = sorted({s.batch_size for r in reports.values() for s in r.settings})
    print("Best texts/s over concurrency, and against the best run of the same dtype (target: the rendered runtime "
          f">= {TARGET:.2f}x):\n")
    print("| run | dtype | " + " | ".join(f"batch {b} | vs best" for b in sizes) + " | load at start |")
    print("|---|---|" + "---:|---:|" * len(sizes) + "---|")
    tops = {(dt, b): max((best(r, b) or 0 for k, r in reports.items() if dtype_of(k) == dt), default=0)
            for dt in ("float32", "bfloat16") for b in sizes}
    for k in order:
        r = reports[k]
        cells = []
        for b in sizes:
            v, top = best(r, b), tops[(dtype_of(k), b)]
            cells += [_f(v), "-" if v is None or not top else f"{v / top:.2f}x"]
        load = "/".join(f"{x:.2f}" for x in m.load_avg) if (m := r.machine).load_avg else "?"
        print(f"| {k} | {dtype_of(k)} | " + " | ".join(cells) + f" | {load} |")
    print("\nEach run at each setting against the best run of its dtype at that setting (the lowest is the run's "
          "worst case):\n")
    grid = sorted({(s.batch_size, s.concurrency) for r in reports.values() for s in r.settings})
    at = {k: {(s.batch_size, s.concurrency): s.texts_per_s for s in r.settings} for k, r in reports.items()}
    top_at = {(dt, g): max((at[k].get(g) or 0 for k in reports if dtype_of(k) == dt), default=0)
              for dt in ("float32", "bfloat16") for g in grid}
    print("| run | " + " | ".join(f"c{c} b{b}" for b, c in grid) + " | lowest |")
    print("|---|" + "---:|" * (len(grid) + 1))
    for k in order:
        ratios = [(at[k].get(g) or 0) / top_at[(dtype_of(k), g)] if top_at[(dtype_of(k), g)] and at[k].get(g)
                  else None for g in grid]
        low = min((x for x in ratios if x is not None), default=None)
        print(f"| {k} | " + " | ".join("-" if x is None else f"{x:.2f}x" for x in ratios)
              + f" | {'-' if low is None else f'{low:.2f}x'} |")
    print("\nEvery setting:\n")
    print("| run | conc | batch | texts/s | p50 ms | p99 ms | errors | tokens/text | client CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k in order:
        for s in sorted(reports[k].settings, key=lambda s: (s.batch_size, s.concurrency)):
            cpu = s.client_cpu_s / s.duration_s if s.client_cpu_s is not None and s.duration_s else None
            print(f"| {k} | {s.concurrency} | {s.batch_size} | {_f(s.texts_per_s)} | {_f(s.latency_p50_ms)} "
                  f"| {_f(s.latency_p99_ms)} | {s.errors} | {_f(s.tokens_per_text)} "
                  f"| {'-' if cpu is None else f'{100 * cpu:.0f}%'} |")
    notes = [f"- {k}: {n}" for k in order for n in reports[k].notes]
    if notes:
        print("\nNotes:\n")
        print("\n".join(notes))
    cond = a.results / "conditions.txt"
    if cond.is_file():
        print("\nConditions (what each server ran with: binding, threads, the libraries mapped):\n")
        print("```")
        print(cond.read_text().rstrip())
        print("```")


if __name__ == "__main__":
    main()
