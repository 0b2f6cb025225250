"""Measure the local target: deploy -> ready time, and embeddings/s vs sentence-transformers in-process.

Not a bench tool (that is ``poolserve bench``): a fixed script behind the figures in the README.
Run from the repo root, on an otherwise idle machine, with the MiniLM weights imported
(``scripts/local-demo.sh`` does that):

    flock /tmp/poolserve-vllm.lock .venv/bin/python scripts/local-measure.py [--quick]

It deploys ``minilm-embedding`` from poolserve.yaml into a private state dir, with variants set
through the same ``--set`` keys a user has (``local.enforce_eager``, ``local.env``, ``local.dtype``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from poolserve.targets.local.plan import local_hf_home
from poolserve.targets.local.target import LocalTarget
from poolserve.kserve.render import render
from poolserve.config.load import load_spec

NAME = "minilm-embedding"
WORDS = ["model", "serving", "cluster", "vector", "search", "query", "document", "latency", "token", "batch",
         "embedding", "rerank", "kubernetes", "runtime", "cache", "memory", "python", "server", "client",
         "request", "answer", "paris", "france", "capital"]


def texts(n: int, words: int = 24) -> list[str]:
    """Deterministic sentences of ``words`` words (~30 tokens for MiniLM)."""
    return [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(words)) + f" #{i}" for i in range(n)]


def load() -> str:
    """``uptime`` (load averages), recorded with the figures."""
    return os.popen("uptime").read().strip()


async def _run(url: str, model: str, inputs: list[str], concurrency: int, batch: int) -> float:
    queue = [inputs[i:i + batch] for i in range(0, len(inputs), batch)]
    async with httpx.AsyncClient(timeout=120, trust_env=False,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        async def worker() -> None:
            while queue:
                chunk = queue.pop()
                r = await client.post(url + "/v1/embeddings", json={"model": model, "input": chunk})
                r.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(inputs) / (time.perf_counter() - start)


def throughput(url: str, model: str, n: int, settings: list[tuple[int, int]]) -> dict[str, float]:
    """Embeddings/s for each (concurrency, inputs per request) setting, after a warm-up."""
    asyncio.run(_run(url, model, texts(32), 4, 1))  # warm-up
    return {f"c={c},batch={b}": round(asyncio.run(_run(url, model, texts(n), c, b)), 1) for c, b in settings}


def st_baseline(model_dir: Path, n: int) -> dict[str, float]:
    """sentence-transformers in-process on the same weights and texts (embeddings/s)."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    model.encode(texts(32))
    out: dict[str, float] = {"torch_threads": torch.get_num_threads()}
    for bs in (1, 32):
        start = time.perf_counter()
        model.encode(texts(n), batch_size=bs)
        out[f"batch_size={bs}"] = round(n / (time.perf_counter() - start), 1)
    return out


def deploy_time(state_dir: Path, overrides: dict[str, Any]) -> tuple[float, LocalTarget, Any]:
    """Deploy minilm-embedding with ``--set``-style overrides; seconds from deploy to /health 200."""
    spec = load_spec("poolserve.yaml", {"local.state_dir": str(state_dir), **overrides})
    target = LocalTarget()
    start = time.monotonic()
    target.deploy(render(spec), [NAME], wait=True, timeout_s=900)
    return time.monotonic() - start, target, spec


def main() -> None:
    """Run every variant and print one JSON report (progress lines on stderr)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer variants and requests")
    parser.add_argument("-n", type=int, default=1024, help="texts per throughput run")
    args = parser.parse_args()
    n = 256 if args.quick else args.n
    settings = [(1, 1), (4, 1), (16, 1), (4, 32)]
    report: dict[str, Any] = {"load_before": load(), "cpus": os.cpu_count(), "texts": n}
    base = load_spec("poolserve.yaml")
    model_dir = next((local_hf_home(base) / "hub").glob("models--sentence-transformers--all-MiniLM-L6-v2/snapshots/*"))
    report["sentence_transformers"] = st_baseline(model_dir, n)

    variants: list[tuple[str, dict[str, Any]]] = [("default (fp32, --enforce-eager)", {})]
    if not args.quick:
        variants += [
            ("VLLM_CPU_NUM_OF_RESERVED_CPU=0", {"local.env": {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}}),
            ("dtype=float16", {"local.dtype": "float16"}),
        ]
    work = Path(tempfile.mkdtemp(prefix="poolserve-measure-"))
    try:
        for i, (label, overrides) in enumerate(variants):
            secs, target, spec = deploy_time(work / f"state-{i}", overrides)
            try:
                entry = target.endpoint(render(spec), NAME)
                report[label] = {"deploy_to_ready_s": round(secs, 1),
                                 "embeddings_per_s": throughput(entry.url, entry.served_model or NAME, n, settings)}
            finally:
                target.delete(render(spec), [])
            print(json.dumps({label: report[label]}), file=sys.stderr, flush=True)
        # Startup with torch.compile: a cold compile cache, then a warm one (kept across runs).
        compile_cache = work / "vllm-cache"
        for i, label in enumerate(("torch.compile, cold compile cache", "torch.compile, warm compile cache")):
            secs, target, spec = deploy_time(work / f"state-compile-{i}", {"local.enforce_eager": False,
                                                    "local.env": {"VLLM_CACHE_ROOT": str(compile_cache)}})
            try:
                entry = target.endpoint(render(spec), NAME)
                report[label] = {"deploy_to_ready_s": round(secs, 1)}
                if "warm" in label:
                    report[label]["embeddings_per_s"] = throughput(entry.url, entry.served_model or NAME, n, settings)
            finally:
                target.delete(render(spec), [])
            print(json.dumps({label: report[label]}), file=sys.stderr, flush=True)
    finally:
        report["logs"] = str(work)  # server logs of every run, for the phase timings
    report["load_after"] = load()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
