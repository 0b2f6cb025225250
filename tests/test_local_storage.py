"""The local target and storage URIs: pvc:// and hf:// become directories here; s3:// and oci:// are refused."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from poolserve.config.load import load_spec
from poolserve.config.schema import PoolSpec
from poolserve.errors import LocalRunError
from poolserve.kserve.render import render
from poolserve.targets.local.plan import LaunchPlan, local_hf_home, plan_launch
from poolserve.targets.local.target import LocalTarget
from poolserve.vllm import hfcache

ROOT = Path(__file__).resolve().parents[1]
STUB = Path(__file__).with_name("stub_vllm.py")
MINILM = "minilm-embedding"


def _spec(tmp_path: Path, uri: str, **overrides: Any) -> PoolSpec:
    return load_spec(ROOT / "poolserve.yaml", {"local.cache_dir": str(tmp_path / "cache"),
                                               "local.state_dir": str(tmp_path / "state"),
                                               "models.0.storage_uri": uri, **overrides})


def _plan(spec: PoolSpec) -> LaunchPlan:
    model = render(spec).model(MINILM)
    hf_home = local_hf_home(spec)
    return plan_launch(render(spec).compose(MINILM), model_id=model.model_id, local=spec.local,
                       cache_pvc=spec.cache.pvc, python="/venv/bin/python", port=40001,
                       cache_dir=Path(spec.local.cache_dir), state_dir=Path(spec.local.state_dir),
                       model_cached=lambda h: False, storage_uri=model.storage_uri,
                       hf_snapshot=lambda repo, rev: hfcache.snapshot_path(hf_home, repo, rev))


def _model_arg(plan: LaunchPlan) -> str:
    """The model the local argv loads: `vllm serve`'s first argument (the launcher runs `serve MODEL ...`)."""
    argv = list(plan.argv)
    return argv[argv.index("serve") + 1]


def _weights(tmp_path: Path) -> Path:
    src = tmp_path / "weights"
    src.mkdir()
    (src / "config.json").write_text('{"architectures": ["BertModel"]}')
    return src


def test_pvc_uri_maps_to_the_claims_local_directory(tmp_path: Path) -> None:
    plan = _plan(_spec(tmp_path, "pvc://model-store/st/minilm"))
    assert _model_arg(plan) == str(tmp_path / "state" / "pvc" / "model-store" / "st" / "minilm")
    assert any("volume kserve-pvc-source (PVC model-store, /mnt/models) ->" in o for o in plan.overrides)
    # The served names do not change.
    assert "sentence-transformers/all-MiniLM-L6-v2" in plan.argv and MINILM in plan.argv


def test_pvc_dirs_point_a_claim_at_an_existing_directory(tmp_path: Path) -> None:
    weights = tmp_path / "nfs"
    spec = _spec(tmp_path, "pvc://model-store/st/minilm", **{"local.pvc_dirs": {"model-store": str(weights)}})
    assert _model_arg(_plan(spec)) == str(weights / "st" / "minilm")
    # The cache PVC itself stands for local.cache_dir.
    spec = _spec(tmp_path, "pvc://vllm-model-cache/raw/minilm")
    assert _model_arg(_plan(spec)) == str(tmp_path / "cache" / "raw" / "minilm")


def test_hf_uri_is_served_from_the_local_hf_cache(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "hf://sentence-transformers/all-MiniLM-L6-v2")
    cached = hfcache.import_model(local_hf_home(spec), "sentence-transformers/all-MiniLM-L6-v2", _weights(tmp_path))
    plan = _plan(spec)
    assert _model_arg(plan) == str(cached.path)
    assert cached.path not in plan.fresh_dirs  # never emptied like KServe's emptyDir would be
    assert any("-> " + str(cached.path) + " (the local HF cache)" in o for o in plan.overrides)
    by_rev = _spec(tmp_path, f"hf://sentence-transformers/all-MiniLM-L6-v2:{cached.revision}")
    assert _model_arg(_plan(by_rev)) == str(cached.path)


def test_hf_uri_missing_from_the_cache_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(LocalRunError) as exc:
        _plan(_spec(tmp_path, "hf://sentence-transformers/all-MiniLM-L6-v2:abc123"))
    msg = str(exc.value)
    assert msg.startswith("minilm-embedding: storage_uri hf://sentence-transformers/all-MiniLM-L6-v2:abc123: "
                          "sentence-transformers/all-MiniLM-L6-v2 at revision abc123 is not in the local HF cache")
    assert "poolserve cache import sentence-transformers/all-MiniLM-L6-v2 DIR" in msg and "\n" not in msg
    assert exc.value.exit_code == 10


@pytest.mark.parametrize(("uri", "what"), [("s3://models/minilm", "an S3 bucket"),
                                           ("oci://quay.io/org/minilm:1", "a modelcar image")])
def test_s3_and_oci_are_refused_plainly(tmp_path: Path, uri: str, what: str) -> None:
    with pytest.raises(LocalRunError) as exc:
        _plan(_spec(tmp_path, uri))
    msg = str(exc.value)
    assert msg.startswith(f"minilm-embedding: the local target cannot serve storage_uri {uri}: it is {what}")
    assert "local.pvc_dirs" in msg and "\n" not in msg


def test_local_deploy_runs_vllm_on_the_mapped_directory(tmp_path: Path) -> None:
    stub_python = tmp_path / "stub-python"
    stub_python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STUB}" "$@"\n')
    stub_python.chmod(0o755)
    weights = tmp_path / "weights"
    spec = _spec(tmp_path, "pvc://model-store/minilm", **{
        "local.python": str(stub_python), "local.pvc_dirs": {"model-store": str(weights)},
        "local.env": {"STUB_RECORD": str(tmp_path / "record.json")}})
    target = LocalTarget()
    rendered = render(spec)
    try:
        result = target.deploy(rendered, [MINILM], wait=True, timeout_s=60)
        assert result.statuses[0].phase == "Ready"
        argv = json.loads((tmp_path / "record.json").read_text())["argv"]
        assert argv[argv.index("serve") + 1] == str(weights / "minilm")
    finally:
        target.delete(rendered, [])
