"""The Python half of benchmarks/peers.sh: sentence-transformers in-process, and the side-by-side report.

    peers.py st --task embed --model DIR --dtype bfloat16 --sizes 1,32 --seconds 15 -o st.json
        Encodes the texts `poolserve bench` sends (same generator, same batch sizes or documents per query)
        in this process with SentenceTransformer (embed) or CrossEncoder (score), and writes a bench report
        whose `baseline` holds one result per size (no HTTP, no server, no concurrency).
    peers.py report RESULTS_DIR [--plot PNG] [--not-publishable REASON]
        Reads RESULTS_DIR/{embed,score}-*.json (bench reports) and conditions.txt, prints the Markdown
        report: the machine and its CPU flags, the compute ceiling, texts/s per server and setting, each
        setting's share of the ceiling, and vLLM as deployed against each peer.
    peers.py cpu-facts
        Prints the CPU facts the report counts with (vendor, family, clock, flags), one `key=value` a line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from poolserve.bench.compute import ceiling_share, encoder_shape, flops_per_sequence, peak_flops
from poolserve.bench.loadgen import machine_info
from poolserve.bench.metrics import BenchReport, SettingReport, report_from_json, report_to_json
from poolserve.bench.workload import Workload, make_query
from poolserve.machine import HostInfo, proc_field

# Rows in this order; the label is the file name's tail ({task}-{label}.json).
SERVERS = {
    "vllm-local": "vLLM, local target (as `poolserve deploy --target local` runs it)",
    "vllm-cpu": "vLLM, CPU runtime as rendered (`device: cpu`, composed as KServe composes it)",
    "infinity-torch": "Infinity 0.0.78, torch engine",
    "infinity-optimum": "Infinity 0.0.78, optimum engine (ONNX Runtime)",
    "st": "sentence-transformers in-process (no server)",
}
DEPLOYED = ("vllm-local", "vllm-cpu")
PEERS = ("infinity-torch", "infinity-optimum", "st")
TASKS = {"embed": "Embeddings (texts per request = batch)", "score": "Reranking (documents per query = batch)"}


# ----------------------------------------------------------------------------------------------------
# The machine


def cpu_facts() -> dict[str, Any]:
    """Vendor, family, clock (GHz), model and flags of this CPU, from /proc/cpuinfo (CPU_GHZ overrides the clock)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    family = proc_field(text, "cpu family")
    mhz = proc_field(text, "cpu MHz")
    ghz = float(os.environ["CPU_GHZ"]) if os.environ.get("CPU_GHZ") else (float(mhz) / 1000 if mhz else 0.0)
    host = HostInfo.detect()
    clock_from = "CPU_GHZ" if os.environ.get("CPU_GHZ") else "/proc/cpuinfo cpu MHz"
    return {"vendor": proc_field(text, "vendor_id"), "family": int(family) if family and family.isdigit() else None,
            "clock_ghz": round(ghz, 3), "clock_from": clock_from,
            "model": host.cpu_model, "cores": host.usable_cores or 1, "flags": host.cpu_flags}


# ----------------------------------------------------------------------------------------------------
# sentence-transformers in-process


def run_st(a: argparse.Namespace) -> None:
    from poolserve.bench.baseline import sentence_transformers_baseline
    from poolserve.bench.tokens import TokenCounter, load_counter

    counter = load_counter(a.model)
    fn = sentence_transformers_baseline(a.model, task=a.task, dtype=a.dtype, min_texts=a.min_texts,
                                        min_time_s=a.seconds, max_time_s=3 * a.seconds)
    results, settings = [], []
    for b in (int(x) for x in a.sizes.split(",")):
        wl = Workload(a.task, None, a.tokens, b)
        r = fn(wl.pool_texts(), b, make_query() if a.task == "score" else None)
        results.append(r)
        per_text = None
        if isinstance(counter, TokenCounter):
            per_text = wl.tokens(0, counter) / b
        # One pseudo-setting per size (concurrency 1: one caller, one batch at a time), so the tables line up.
        settings.append(SettingReport(
            concurrency=1, batch_size=b, requests=r.texts // b, errors=0, duration_s=r.duration_s,
            requests_per_s=r.texts_per_s / b, texts_per_s=r.texts_per_s,
            tokens_per_s=(per_text or 0) * r.texts_per_s, latency_p50_ms=1000 * b / r.texts_per_s,
            latency_p90_ms=None, latency_p99_ms=None, latency_mean_ms=1000 * b / r.texts_per_s, latency_max_ms=None,
            tokens_per_text=per_text))
        print(f"st {a.task} b={b} {a.dtype}: {r.texts_per_s:.1f} texts/s", file=sys.stderr)
    import sentence_transformers

    report = BenchReport(
        timestamp=datetime.now(UTC).isoformat(timespec="seconds"), machine=machine_info(), endpoint=None,
        model=a.model, task=a.task, input_tokens=a.tokens, settings=tuple(settings), label="st",
        baseline=tuple(results), api="in-process",
        tokens_counted_by=counter.source if isinstance(counter, TokenCounter) else f"nothing: {counter.reason}",
        notes=(f"sentence-transformers {sentence_transformers.__version__} in-process, {a.dtype}, "
               f"{'SentenceTransformer.encode' if a.task == 'embed' else 'CrossEncoder.predict'}; the p50 "
               "column is the time of one batch",))
    Path(a.output).write_text(report_to_json(report))


# ----------------------------------------------------------------------------------------------------
# The report


def _f(v: float | None, d: int = 1) -> str:
    return "-" if v is None else f"{v:,.{d}f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def load(results: Path) -> dict[str, dict[str, BenchReport]]:
    """``{task: {server label: report}}`` from ``{task}-{label}.json``."""
    out: dict[str, dict[str, BenchReport]] = {}
    for f in sorted(results.glob("*.json")):
        m = re.fullmatch(r"(embed|score)-(.+)", f.stem)
        if m:
            out.setdefault(m.group(1), {})[m.group(2)] = report_from_json(f.read_text(), str(f))
    return out


def _order(labels: list[str]) -> list[str]:
    return [k for k in SERVERS if k in labels] + sorted(k for k in labels if k not in SERVERS)


def _flops_per_text(report: BenchReport, model_dir: Path | None, tokens: float | None) -> float | None:
    if model_dir is None or tokens is None:
        return None
    try:
        return flops_per_sequence(encoder_shape(json.loads((model_dir / "config.json").read_text())), tokens)
    except (OSError, ValueError):
        return None


def report(a: argparse.Namespace) -> None:
    runs = load(a.results)
    if not runs:
        raise SystemExit(f"{a.results}: no {{embed,score}}-*.json reports")
    facts = cpu_facts()
    meta = json.loads((a.results / "meta.json").read_text()) if (a.results / "meta.json").is_file() else {}
    dtypes = {"embed": meta.get("embed_dtype", "float32"), "score": meta.get("rerank_dtype", "float32")}
    models = {"embed": Path(meta["embed_model"]) if meta.get("embed_model") else None,
              "score": Path(meta["rerank_model"]) if meta.get("rerank_model") else None}
    first = next(iter(next(iter(runs.values())).values()))
    lines: list[str] = []
    w = lines.append
    w(f"# Serving speed side by side: vLLM as poolserve deploys it, Infinity, sentence-transformers "
      f"({first.timestamp})")
    w("")
    if a.not_publishable:
        w(f"> **NOT PUBLISHABLE: {a.not_publishable}.** The figures below prove the script runs; they are not "
          "measurements.")
        w("")
    flags = sorted(f for f in facts["flags"] if f in ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni",
                                                      "amx_bf16", "amx_fp16", "amx_int8", "amx_tile"))
    missing = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f not in facts["flags"]]
    w("## Machine")
    w("")
    w(f"- CPU: {facts['model']} ({facts['vendor']}, family {facts['family']}), {facts['cores']} usable cores, "
      f"clock {facts['clock_ghz']} GHz ({facts['clock_from']}); {first.machine.ram_gib} GiB RAM, {first.machine.os}")
    w(f"- CPU flags that decide the dtype's speed: `{' '.join(flags) or '-'}`"
      + (f"; absent: `{' '.join(missing)}`" if missing else ""))
    vllm_v = next((r.machine.vllm_version for t in runs.values() for r in t.values() if r.machine.vllm_version), None)
    w(f"- vLLM {vllm_v or '?'}; {meta.get('infinity_version') or 'Infinity: not run'}; "
      f"{meta.get('st_version') or 'sentence-transformers: not run'}; Python {first.machine.python}")
    w("- Load average at the start of each run: "
      + ", ".join(f"{t}/{k} {'/'.join(f'{x:.2f}' for x in r.machine.load_avg) if r.machine.load_avg else '?'}"
                  for t, rs in runs.items() for k, r in rs.items()))
    if meta.get("duration"):
        w(f"- Method: closed loop, {meta['duration']} per setting after max(2, concurrency) warm-up requests, "
          f"{first.input_tokens}-token texts (the model's tokenizer), concurrency {meta.get('conc', '?')}, "
          f"embedding batches {meta.get('batch', '?')}, rerank documents per query {meta.get('docs', '?')}; "
          f"embeddings in {dtypes['embed']}, reranking in {dtypes['score']} on every server.")
    w("")
    w("## Compute ceiling")
    w("")
    w("Share of the ceiling = FLOPs per text x texts/s / peak FLOP/s. FLOPs per text: 2 per multiply-add of the "
      "encoder's QKV/output projections, FFN and attention, per layer and token, at the token count the model's "
      "tokenizer gives (a rerank text is its query-document pair); peak: cores x clock x FLOP/cycle per core of "
      "the widest path the CPU flags allow for the dtype. Sources and per-ISA figures: "
      "`src/poolserve/bench/compute.py` (Kaplan et al. 2020; Intel Optimization Reference Manual; AMD Software "
      "Optimization Guides). The clock is nominal, so the shares are estimates: compare them within this report.")
    w("")
    w("| task | dtype | tokens per text | GFLOP per text | ISA path | FLOP/cycle/core | peak GFLOP/s |")
    w("|---|---|---:|---:|---|---:|---:|")
    ceilings: dict[str, tuple[float | None, Any]] = {}
    for task, rs in runs.items():
        per_text = next((s.tokens_per_text for r in rs.values() for s in r.settings if s.tokens_per_text), None)
        fpt = _flops_per_text(first, models[task], per_text)
        peak = peak_flops(frozenset(facts["flags"]), vendor=facts["vendor"], family=facts["family"],
                          clock_ghz=facts["clock_ghz"], cores=facts["cores"], dtype=dtypes[task])
        ceilings[task] = (fpt, peak)
        w(f"| {task} | {dtypes[task]} | {_f(per_text)} | {_f(fpt / 1e9 if fpt else None, 2)} | {peak.isa} "
          f"| {peak.flops_per_cycle} | {_f(peak.gflops, 0)} |")
    w("")
    for task, rs in runs.items():
        fpt, peak = ceilings[task]
        order = _order(list(rs))
        grid = sorted({(s.concurrency, s.batch_size) for r in rs.values() for s in r.settings if r.label != "st"},
                      key=lambda cb: (cb[1], cb[0]))
        over = [s.texts_per_s for r in rs.values() for s in r.settings
                if fpt and (ceiling_share(fpt, s.texts_per_s, peak) or 0) > 1.0]
        w(f"## {TASKS.get(task, task)}")
        w("")
        w("Texts/s (share of the compute ceiling). sentence-transformers has no concurrency: its figure per batch "
          "size is under every concurrency of that batch.")
        w("")
        w("| server | " + " | ".join(f"c{c} b{b}" for c, b in grid) + " |")
        w("|---|" + "---:|" * len(grid))
        for k in order:
            r = rs[k]
            by = {(s.concurrency, s.batch_size): s for s in r.settings}
            cells = []
            for c, b in grid:
                s = by.get((1, b)) if k == "st" else by.get((c, b))
                share = ceiling_share(fpt, s.texts_per_s, peak) if (s and fpt) else None
                cells.append("-" if s is None else f"{_f(s.texts_per_s)} ({_pct(share)})")
            w(f"| {k} | " + " | ".join(cells) + " |")
        w("")
        if over:
            w(f"Shares above 100 % ({len(over)} settings) mean the cores ran faster than the "
              f"{peak.clock_ghz} GHz counted (boost clocks; in a VM /proc/cpuinfo shows the nominal one): rerun "
              "the report with CPU_GHZ set to the all-core boost clock, or read the shares as relative only.")
            w("")
        deployed = [k for k in DEPLOYED if k in rs]
        peers = [k for k in PEERS if k in rs]
        if deployed and peers:
            w("vLLM as deployed against each peer (texts/s ratio; the target is >= 1.00x at every setting):")
            w("")
            w("| vLLM | peer | " + " | ".join(f"c{c} b{b}" for c, b in grid) + " | lowest |")
            w("|---|---|" + "---:|" * (len(grid) + 1))
            for d in deployed:
                dby = {(s.concurrency, s.batch_size): s for s in rs[d].settings}
                for p in peers:
                    pby = {(s.concurrency, s.batch_size): s for s in rs[p].settings}
                    ratios = []
                    for c, b in grid:
                        ds, ps = dby.get((c, b)), pby.get((1, b)) if p == "st" else pby.get((c, b))
                        ratios.append(ds.texts_per_s / ps.texts_per_s if ds and ps and ps.texts_per_s else None)
                    low = min((x for x in ratios if x is not None), default=None)
                    w(f"| {d} | {p} | " + " | ".join("-" if x is None else f"{x:.2f}x" for x in ratios)
                      + f" | {'-' if low is None else f'{low:.2f}x'} |")
            w("")
        w("Every setting (latency of one request; tokens by the model's tokenizer, and what the server's own usage "
          "field said):")
        w("")
        w("| server | conc | batch | texts/s | p50 ms | p99 ms | errors | tokens/text | server's usage/text "
          "| client CPU |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for k in order:
            for s in sorted(rs[k].settings, key=lambda s: (s.batch_size, s.concurrency)):
                cpu = s.client_cpu_s / s.duration_s if s.client_cpu_s is not None and s.duration_s else None
                w(f"| {k} | {s.concurrency} | {s.batch_size} | {_f(s.texts_per_s)} | {_f(s.latency_p50_ms)} "
                  f"| {_f(s.latency_p99_ms)} | {s.errors} | {_f(s.tokens_per_text)} | {_f(s.server_tokens_per_text)} "
                  f"| {_pct(cpu)} |")
        w("")
        w("Tokens counted by: " + "; ".join(f"{k}: {rs[k].tokens_counted_by or '?'}" for k in order))
        w("")
    w("## Servers")
    w("")
    for k in _order(sorted({k for rs in runs.values() for k in rs})):
        w(f"- **{k}**: {SERVERS.get(k, k)}")
    skipped = meta.get("skipped") or []
    for s in skipped:
        w(f"- not run: {s}")
    w("")
    notes = [f"- {t}/{k}: {n}" for t, rs in runs.items() for k in _order(list(rs)) for n in rs[k].notes]
    if notes:
        w("## Notes")
        w("")
        lines.extend(notes)
        w("")
    cond = a.results / "conditions.txt"
    if cond.is_file():
        w("## Conditions (conditions.txt)")
        w("")
        w("```")
        lines.extend(cond.read_text().rstrip().splitlines()[-40:])
        w("```")
    print("\n".join(lines))
    if a.plot:
        plot(runs, a.plot, ceilings, a.not_publishable)


def plot(runs: dict[str, dict[str, BenchReport]], path: Path, ceilings: dict[str, tuple[float | None, Any]],
         not_publishable: str | None) -> None:
    """Grouped bars: texts/s per setting, one bar per server, one panel per task; the ceiling as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(7 * len(runs), 6), squeeze=False)
    for ax, (task, rs) in zip(axes[0], runs.items(), strict=True):
        order = _order(list(rs))
        grid = sorted({(s.concurrency, s.batch_size) for r in rs.values() for s in r.settings if r.label != "st"},
                      key=lambda cb: (cb[1], cb[0]))
        width = 0.8 / max(1, len(order))
        for i, k in enumerate(order):
            by = {(s.concurrency, s.batch_size): s for s in rs[k].settings}
            ys = [(by.get((1, b)) if k == "st" else by.get((c, b))) for c, b in grid]
            ax.bar([x + i * width for x in range(len(grid))], [s.texts_per_s if s else 0 for s in ys], width,
                   label=k)
        fpt, peak = ceilings[task]
        if fpt:
            ax.axhline(peak.gflops * 1e9 / fpt, color="k", linestyle="--", linewidth=1,
                       label=f"compute ceiling ({peak.isa}, {peak.gflops:.0f} GFLOP/s)")
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(grid))], [f"c{c}\nb{b}" for c, b in grid])
        ax.set_ylabel("texts/s")
        ax.set_title(TASKS.get(task, task))
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    title = "poolserve peers: texts/s per setting (c = concurrency, b = texts or documents per request)"
    if not_publishable:
        title += f"\nNOT PUBLISHABLE: {not_publishable}"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("st", help="sentence-transformers in-process, as a bench report")
    st.add_argument("--task", choices=("embed", "score"), required=True)
    st.add_argument("--model", required=True, help="model directory")
    st.add_argument("--dtype", default="float32")
    st.add_argument("--sizes", default="1,32", help="batch sizes (embed) or documents per query (score)")
    st.add_argument("--tokens", type=int, default=128, help="tokens per text")
    st.add_argument("--seconds", type=float, default=15.0, help="minimum measuring time per size")
    st.add_argument("--min-texts", type=int, default=64)
    st.add_argument("-o", "--output", required=True)
    rp = sub.add_parser("report", help="the Markdown report (stdout) and the plot")
    rp.add_argument("results", type=Path)
    rp.add_argument("--plot", type=Path)
    rp.add_argument("--not-publishable", metavar="REASON", help="say so at the top of the report and the plot")
    sub.add_parser("cpu-facts", help="the CPU facts the report counts with")
    a = p.parse_args()
    if a.cmd == "st":
        run_st(a)
    elif a.cmd == "report":
        report(a)
    else:
        for k, v in cpu_facts().items():
            print(f"{k}={' '.join(sorted(v)) if isinstance(v, frozenset) else v}")


if __name__ == "__main__":
    main()
