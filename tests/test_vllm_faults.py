"""Faults against real vLLM (CPU): the engine process killed under a Ready local server.

The `Done when` check of the reliability work, as a user would see it: `kill -9` on `VLLM::EngineCore`
(what the kernel OOM killer does) gives a named diagnosis in `poolserve status`, and the supervisor
brings the server back Ready by itself with RESTARTS 1.

It deploys its OWN server (its own state dir and port; the session's model cache, read only), so the
shared servers of tests/conftest.py that other tests use are never touched. Costs two vLLM starts
(about 2-3 minutes here). Run under `flock /tmp/poolserve-vllm.lock` on shared machines.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from conftest import CONFIG, MINILM_NAME
from poolserve.cli.app import app
from poolserve.config.load import load_spec
from poolserve.config.schema import PoolSpec
from poolserve.kserve.render import Rendered, render
from poolserve.machine import group_members
from poolserve.targets.local.state import read_pod
from poolserve.targets.local.target import LocalTarget

pytestmark = pytest.mark.vllm
runner = CliRunner()
ENGINE_TITLE = "VLLM::EngineCore"
OUT_ENV = "POOLSERVE_RELIABILITY_OUT"


def eventually(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f}s waiting for {what}"
        time.sleep(0.5)


def process_title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class Own:
    """A minilm-embedding deployment of this test only (its own state dir; the session's model cache)."""

    def __init__(self, state_dir: Path, cache_dir: Path) -> None:
        self.sets = {"local.cache_dir": str(cache_dir), "local.state_dir": str(state_dir)}
        self.state_dir = state_dir
        self.spec: PoolSpec = load_spec(CONFIG, self.sets)
        self.rendered: Rendered = render(self.spec)

    def status_json(self) -> dict[str, Any]:
        args = ["status", "--target", "local", MINILM_NAME, "-c", str(CONFIG), "-o", "json"]
        for k, v in self.sets.items():
            args += ["--set", f"{k}={v}"]
        r = runner.invoke(app, args)
        assert "Traceback" not in r.output, r.output
        data = json.loads(r.stdout)
        rows = data if isinstance(data, list) else data.get("models", data.get("items", [data]))
        return next(m for m in rows if m["name"] == MINILM_NAME)


@pytest.fixture
def own(tmp_path: Path, model_cache_dir: Path, hf_home_dir: Path) -> Iterator[Own]:
    pytest.importorskip("vllm")
    o = Own(tmp_path / "state", model_cache_dir)
    try:
        LocalTarget().deploy(o.rendered, [MINILM_NAME], wait=True, timeout_s=o.spec.local.startup_timeout_s)
        yield o
    finally:
        LocalTarget().delete(o.rendered, [MINILM_NAME])


def test_engine_killed_is_diagnosed_and_the_server_comes_back_ready_with_restarts_1(own: Own) -> None:
    endpoint = LocalTarget().endpoint(own.rendered, MINILM_NAME)
    before = own.status_json()
    assert before["phase"] == "Ready" and before["restarts"] == 0, before
    run = read_pod(own.state_dir, MINILM_NAME).running
    engines = [p for p in group_members(run.pgid) if p != run.pid and ENGINE_TITLE in process_title(p)]
    assert len(engines) == 1, [(p, process_title(p)) for p in group_members(run.pgid)]
    killed_at = time.monotonic()
    os.kill(engines[0], signal.SIGKILL)  # what the kernel OOM killer does

    # The diagnosis while it restarts or once it is back: named, with the likely causes.
    eventually(lambda: own.status_json()["restarts"] == 1, 120, "the supervisor to restart vLLM")
    restarted_s = time.monotonic() - killed_at
    back = LocalTarget().wait(own.rendered, [MINILM_NAME], timeout_s=own.spec.local.startup_timeout_s)[0]
    assert back.phase == "Ready" and back.restarts == 1, back
    ready_s = time.monotonic() - killed_at
    after = own.status_json()
    assert after["phase"] == "Ready" and after["restarts"] == 1, after
    term = after["last_termination"] or ""
    assert "engine process died (EngineDeadError)" in term and "OOM killer" in term, term
    # It serves again, on the same URL.
    r = httpx.post(endpoint.url + "/v1/embeddings", json={"input": ["back again"], "model": endpoint.served_model},
                   timeout=60)
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 384
    out = os.environ.get(OUT_ENV)
    if out:  # benchmarks/reliability.py reports it
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "engine-kill.json").write_text(json.dumps({
            "killed": f"{ENGINE_TITLE} (pid {engines[0]}) with SIGKILL", "restart_seen_after_s": round(restarted_s, 1),
            "ready_after_s": round(ready_s, 1), "status_before": before, "status_after": after}, indent=2))
