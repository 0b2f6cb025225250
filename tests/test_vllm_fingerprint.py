"""Fingerprints and capacity plans end to end on the local target, against the session's real vLLM servers.

Everything goes through the CLI as a user runs it (``--target local`` and the committed config, with the
fixtures' cache and state directories): save then check gives "same"; ``deploy --check-fingerprint`` on the
running model passes; bench -> plan --from -> --write -> render shows the KEDA target. Kept short (a few
seconds of load): CI runs these beside the other vLLM tests.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from poolserve.cli.app import create_app

pytestmark = pytest.mark.vllm

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "poolserve.yaml"
runner = CliRunner()


def local_sets(server: Any) -> list[str]:
    """``-c`` the committed config and ``--set`` what the fixture changed: its cache and state dirs, the test model."""
    from poolserve.config.load import load_spec

    out = ["-c", str(CONFIG), "--set", f"local.cache_dir={server.spec.local.cache_dir}",
           "--set", f"local.state_dir={server.spec.local.state_dir}"]
    committed = load_spec(CONFIG).models
    index = next(i for i, m in enumerate(committed) if m.name == server.name)
    mine = server.spec.models[index]
    if mine.model_id != committed[index].model_id:
        out += ["--set", f"models.{index}.model_id={mine.model_id}"]
    if mine.task != committed[index].task:
        out += ["--set", f"models.{index}.task={mine.task}"]
    return out


def cli(*args: str) -> Result:
    return runner.invoke(create_app(), list(args))


def test_fingerprint_of_the_same_deployment_is_same(minilm_server: Any, tmp_path: Path) -> None:
    fp = tmp_path / "minilm.json"
    sets = local_sets(minilm_server)
    r = cli("test", minilm_server.name, "--target", "local", *sets, "--fingerprint", "save", str(fp))
    assert r.exit_code == 0, r.output
    facts = json.loads(fp.read_text())["facts"]
    # What the local target launched: its CPU dtype, this machine's CPU, the imported snapshot, vLLM's version.
    plan = minilm_server.target.plan(minilm_server.rendered, minilm_server.name, port=0)
    dtype = next(a.split("=", 1)[1] for a in reversed(plan.argv) if a.startswith("--dtype="))
    assert (facts["dtype"], facts["target"], facts["max_model_len"]) == (dtype, "local", 256)
    assert facts["device"].startswith("cpu (") and facts["vllm_version"].startswith("0.")
    assert facts["revision"] == minilm_server.model_dir.name  # the snapshot the HF cache resolves to
    assert facts["model"] == minilm_server.model_id and facts["normalize"] is True
    r = cli("test", minilm_server.name, "--target", "local", *sets, "--fingerprint", "check", str(fp))
    assert r.exit_code == 0, r.output
    assert f"{minilm_server.name} against {fp}: SAME" in r.stdout and "nothing poolserve knows of" in r.stdout
    # deploy on the running model changes nothing, then checks it.
    r = cli("deploy", minilm_server.name, "--target", "local", *sets, "--check-fingerprint", str(fp))
    assert r.exit_code == 0, r.output
    assert "SAME" in r.stderr


def test_reranker_fingerprint_of_the_same_deployment_is_same(reranker_server: Any, tmp_path: Path) -> None:
    fp = tmp_path / "reranker.json"
    sets = local_sets(reranker_server)
    r = cli("test", reranker_server.name, "--target", "local", *sets, "--fingerprint", "save", str(fp))
    assert r.exit_code == 0, r.output
    assert len(json.loads(fp.read_text())["scores"]) == 8
    r = cli("test", reranker_server.name, "--target", "local", *sets, "--fingerprint", "check", str(fp), "-o", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["verdict"] == "same" and out["comparison"]["min_tau"] == 1.0


def test_bench_then_plan_then_write_then_render_shows_the_keda_target(minilm_server: Any, tmp_path: Path) -> None:
    config = tmp_path / "poolserve.yaml"
    shutil.copy(ROOT / "poolserve.yaml", config)
    bench = tmp_path / "bench.json"
    sets = [*local_sets(minilm_server)[2:], "-c", str(config)]  # the copy, with the fixture's dirs
    r = cli("bench", minilm_server.name, "--target", "local", *sets,
            "--concurrency", "1,2", "--batch-size", "4", "--duration", "3s", "--input-tokens", "32", "-o", str(bench))
    assert r.exit_code == 0, r.output
    report = json.loads(bench.read_text())
    assert report["deployment"]["target"] == "local" and report["replicas"] == 1
    slowest = max(s["latency_p99_ms"] for s in report["settings"])
    r = cli("plan", minilm_server.name, "-c", str(config), "--from", str(bench), "--rate", "20/s",
            "--p99", f"{2 * slowest:.0f}ms", "--batch", "4", "--write")
    assert r.exit_code == 0, r.output
    # The committed config deploys on a GPU in float16: a CPU benchmark must say so, loudly.
    assert "WARNING: measured on cpu" in r.stderr and "but the config deploys on gpu" in r.stderr
    assert "every measured point meets the goal" in r.stdout  # nothing beyond concurrency 2 is assumed
    written = (config.read_text().split(f"- name: {minilm_server.name}", 1)[1]).split("\n  - name:", 1)[0]
    assert "autoscaling: {metric: queue, target: 4}" in written  # 2 in flight less 20 % -> 1 request x 4 texts
    r = cli("render", "-c", str(config), "-o", "-")
    assert r.exit_code == 0, r.output
    isvc = next(d for d in yaml.safe_load_all(r.stdout) if d and d["kind"] == "InferenceService"
                and d["metadata"]["name"] == minilm_server.name)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "keda"
    ext = isvc["spec"]["predictor"]["autoScaling"]["metrics"][0]["external"]
    assert ext["target"] == {"type": "Value", "value": "4"}
