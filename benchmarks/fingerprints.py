#!/usr/bin/env python
"""Measures how far deployment changes move the fingerprint probes: the table behind the verdict thresholds.

Starts real vLLM (the installed CPU build) once per variant, takes a fingerprint of each with poolserve's
own code (:func:`poolserve.check.fingerprint.take`), and compares every variant with the float32 baseline
(:func:`poolserve.check.fingerprint_compare.compare`):

- all-MiniLM-L6-v2: float32 twice on one server, a second float32 server, bfloat16, float16,
  ``truncate_prompt_tokens`` 128 (the requests, same server), ``--max-model-len 128``, the weights plus
  0.1 % noise, and a random last layer (another revision of the weights);
- the test cross-encoder (tests/support/models.py): float32 twice, bfloat16, float16, and another head.

One server at a time, under the vLLM lock; raw fingerprints and the table go to
benchmarks/results/fingerprints/. Docs: docs/how-to/fingerprints.md.

    flock /tmp/poolserve-vllm.lock .venv/bin/python benchmarks/fingerprints.py
    .venv/bin/python benchmarks/fingerprints.py --from-results     # the table again, no servers
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from poolserve.check.client import PoolClient  # noqa: E402
from poolserve.check.fingerprint import Fingerprint, from_json, take, to_json  # noqa: E402
from poolserve.check.fingerprint_compare import compare  # noqa: E402
from poolserve.machine import HostInfo  # noqa: E402
from poolserve.vllm.facts import ServingFacts  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "fingerprints"
FLAGS = ("avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16")


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    model: str
    """``minilm``, ``minilm-noise``, ``minilm-random``, ``ce``, ``ce-other``."""
    task: str = "embed"
    dtype: str = "float32"
    max_model_len: int = 256
    truncate: int | None = -1
    server: str = ""
    """Variants with the same server key share one server."""


VARIANTS = (
    Variant("fp32", "float32 (baseline)", "minilm", server="minilm-fp32"),
    Variant("fp32-again", "float32, same server, again", "minilm", server="minilm-fp32"),
    Variant("trunc128", "float32, truncate_prompt_tokens 128", "minilm", truncate=128, server="minilm-fp32"),
    Variant("fp32-restart", "float32, another server start", "minilm", server="minilm-fp32-b"),
    Variant("bf16", "bfloat16", "minilm", dtype="bfloat16", server="minilm-bf16"),
    Variant("bf16-again", "bfloat16, same server, again (against bfloat16)", "minilm", dtype="bfloat16",
            server="minilm-bf16"),
    Variant("fp16", "float16", "minilm", dtype="float16", server="minilm-fp16"),
    Variant("mml128", "float32, --max-model-len 128", "minilm", max_model_len=128, server="minilm-mml128"),
    Variant("noise", "float32, weights + 0.1 % noise", "minilm-noise", server="minilm-noise"),
    Variant("random", "float32, last layer re-initialised (other weights)", "minilm-random", server="minilm-random"),
    Variant("ce-fp32", "float32 (baseline)", "ce", task="score", max_model_len=512, truncate=None, server="ce-fp32"),
    Variant("ce-fp32-again", "float32, same server, again", "ce", task="score", max_model_len=512, truncate=None,
            server="ce-fp32"),
    Variant("ce-bf16", "bfloat16", "ce", task="score", dtype="bfloat16", max_model_len=512, truncate=None,
            server="ce-bf16"),
    Variant("ce-fp16", "float16", "ce", task="score", dtype="float16", max_model_len=512, truncate=None,
            server="ce-fp16"),
    Variant("ce-other", "float32, another head (other weights)", "ce-other", task="score", max_model_len=512,
            truncate=None, server="ce-other"),
)
BASELINE = {"embed": "fp32", "score": "ce-fp32"}
AGAINST = {"bf16-again": "bf16"}
"""Variants compared with another than the baseline."""
EXTRA = (("bf16", "fp16", "float16 against bfloat16", "embed"),
         ("ce-bf16", "ce-fp16", "float16 against bfloat16", "score"))
"""More pairs of measured variants."""


def _minilm() -> Path:
    from support.models import minilm_dir

    return minilm_dir()


def _perturbed(dest: Path, *, noise: float | None) -> Path:
    """MiniLM with every weight scaled by (1 + noise x N(0,1)), or (noise None) its last layer re-initialised."""
    if (dest / "model.safetensors").is_file():
        return dest
    import torch
    from transformers import BertModel

    src = _minilm()
    torch.manual_seed(1)
    model = BertModel.from_pretrained(src)
    with torch.no_grad():
        if noise is not None:
            for p in model.parameters():
                p.mul_(1 + noise * torch.randn_like(p))
        else:  # BERT's own initialisation (transformers' _init_weights skips weights it loaded)
            for name, p in model.encoder.layer[-1].named_parameters():
                if "LayerNorm" in name:
                    p.fill_(1.0 if name.endswith("weight") else 0.0)
                elif name.endswith("bias"):
                    p.zero_()
                else:
                    p.normal_(0.0, model.config.initializer_range)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("model.safetensors", ".*"))
    model.save_pretrained(tmp, safe_serialization=True)
    tmp.rename(dest)
    return dest


def _cross_encoder(dest: Path, *, other: bool) -> Path:
    from support.models import build_cross_encoder

    path = build_cross_encoder(dest / "ce")
    if not other:
        return path
    out = dest / "ce-other"
    if (out / "model.safetensors").is_file():
        return out
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(2)
    model = BertForSequenceClassification.from_pretrained(path)
    with torch.no_grad():
        model.classifier.weight.normal_(0, 0.05)
        model.classifier.bias.zero_()
    tmp = out.with_name("ce-other.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(path, tmp, ignore=shutil.ignore_patterns("model.safetensors", ".*"))
    model.save_pretrained(tmp, safe_serialization=True)
    tmp.rename(out)
    return out


def model_dir(kind: str, work: Path) -> Path:
    if kind == "minilm":
        return _minilm()
    if kind == "minilm-noise":
        return _perturbed(work / "minilm-noise", noise=1e-3)
    if kind == "minilm-random":
        return _perturbed(work / "minilm-random", noise=None)
    return _cross_encoder(work, other=kind == "ce-other")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(path: Path, v: Variant, log: Path) -> Iterator[str]:
    port = _free_port()
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(path),
            "--served-model-name", "probe", "--runner", "pooling", "--dtype", v.dtype,
            "--max-model-len", str(v.max_model_len), "--enforce-eager", "--port", str(port), "--host", "127.0.0.1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        with PoolClient(url, retries=0) as c:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"vLLM exited {proc.returncode}: see {log}")
                try:
                    if c.health():
                        break
                except Exception:  # not up yet
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"vLLM did not start in 600 s: see {log}")
                time.sleep(2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def measure(work: Path, only: set[str] | None) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    servers: dict[str, list[Variant]] = {}
    for v in VARIANTS:
        if only is None or v.key in only:
            servers.setdefault(v.server, []).append(v)
    host = HostInfo.detect()
    device = f"cpu ({host.cpu_model}; {' '.join(f for f in FLAGS if f in host.cpu_flags)})"
    for key, variants in servers.items():
        first = variants[0]
        path = model_dir(first.model, work)
        print(f"… {key}: starting vLLM on {path.name} ({first.dtype})", flush=True)
        started = time.monotonic()
        for v in variants:
            (OUT / f"{v.key}.error").unlink(missing_ok=True)
        try:
            with server(path, first, OUT / f"{key}.log") as url, PoolClient(url, model="probe", timeout_s=300) as c:
                version = c.request_json("GET", "/version").get("version")
                print(f"  up in {time.monotonic() - started:.0f} s", flush=True)
                for v in variants:
                    facts = ServingFacts(model=first.model, vllm_version=version, dtype=v.dtype, device=device,
                                         max_model_len=v.max_model_len, target="benchmark")
                    fp = take(c, name=v.key, task=v.task, facts=facts,  # type: ignore[arg-type]
                              created=datetime.now(UTC).isoformat(timespec="seconds"),
                              truncate_prompt_tokens=v.truncate)
                    (OUT / f"{v.key}.json").write_text(to_json(fp))
                    print(f"  {v.key}: saved", flush=True)
        except RuntimeError as err:  # e.g. a dtype this CPU build refuses: the table says so
            reason = _reason(OUT / f"{key}.log") or str(err)
            for v in variants:
                (OUT / f"{v.key}.json").unlink(missing_ok=True)
                (OUT / f"{v.key}.error").write_text(reason + "\n")
            print(f"  failed: {reason}", flush=True)


def _reason(log: Path) -> str | None:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if "Error" in ln]
    return lines[-1][:300] if lines else None


def _load(key: str) -> Fingerprint | None:
    path = OUT / f"{key}.json"
    return from_json(path.read_text(), str(path)) if path.is_file() else None


def _gap(cosine: float | None) -> str:
    if cosine is None:
        return "-"
    gap = 1 - cosine
    return "0" if gap < 1e-12 else f"{gap:.1e}"  # below 1e-12: float64 rounding of equal vectors


def comparisons() -> list[tuple[str, str, str, str]]:
    """``(baseline key, variant key, label, task)``: every variant against its baseline, then the extra pairs."""
    out = [(AGAINST.get(v.key, BASELINE[v.task]), v.key, v.label, v.task) for v in VARIANTS
           if v.key != BASELINE[v.task]]
    return out + [(a, b, label, task) for a, b, label, task in EXTRA]


def table() -> str:
    rows = ["| model | variant | verdict | 1 - min cosine | 1 - mean cosine | recall@10 mean (min) "
            "| largest similarity change | largest length change | what changed |",
            "|---|---|---|---:|---:|---:|---:|---:|---|"]
    score_rows = ["| model | variant | verdict | max score change | Kendall tau min (mean) | best doc kept "
                  "| what changed |", "|---|---|---|---:|---:|---:|---|"]
    for base_key, key, label, task in comparisons():
        base, fp = _load(base_key), _load(key)
        error = OUT / f"{key}.error"
        name = "test cross-encoder" if task == "score" else "all-MiniLM-L6-v2"
        if error.is_file():
            blanks = "| | |" if task == "score" else "| | | | |"
            (score_rows if task == "score" else rows).append(
                f"| {name} | {label} | did not start | {blanks} {error.read_text().strip()} |")
            continue
        if base is None or fp is None:
            continue
        c = compare(base, fp)
        # The measured variants load other weights under one name: say "weights" where the facts say "model".
        what = "; ".join(x.replace("model: ", "weights: ") for x in c.changes) or "nothing"
        if task == "score":
            score_rows.append(f"| {name} | {label} | **{c.verdict}** | {c.max_score_diff:.1e} | "
                              f"{c.min_tau:.3f} ({c.mean_tau:.3f}) | {c.top1_kept}/{c.queries} | {what} |")
        else:
            rows.append(f"| {name} | {label} | **{c.verdict}** | {_gap(c.min_cosine)} | "
                        f"{_gap(c.mean_cosine)} | {c.mean_recall:.3f} ({c.min_recall:.1f}) | "
                        f"{_small(c.max_similarity_change)} | {_small(c.max_norm_change)} | {what} |")
    return "\n".join(rows) + "\n\n" + "\n".join(score_rows) + "\n"


def _small(x: float | None) -> str:
    return "-" if x is None else ("0" if x < 1e-12 else f"{x:.1e}")


def machine() -> str:
    host = HostInfo.detect()
    import importlib.metadata as md

    try:
        vllm = md.version("vllm-cpu")
    except md.PackageNotFoundError:
        vllm = "?"
    return (f"{host.cpu_model}, {host.usable_cores} usable cores, {host.ram_gib} GiB RAM; CPU flags: "
            f"{' '.join(f for f in FLAGS if f in host.cpu_flags) or 'none of ' + ' '.join(FLAGS)}; "
            f"vllm-cpu {vllm}, Python {platform.python_version()}, {platform.system()} {platform.release()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from-results", action="store_true", help="only print the table from saved results")
    parser.add_argument("--only", help="comma-separated variant keys to (re)measure")
    args = parser.parse_args()
    if not args.from_results:
        with tempfile.TemporaryDirectory(prefix="poolserve-fp-") as tmp:
            measure(Path(tmp), set(args.only.split(",")) if args.only else None)
    text = f"Machine: {machine()}\n\n{table()}"
    (OUT / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
