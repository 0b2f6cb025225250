"""The local target with real vLLM: outputs match sentence-transformers, delete leaves no process,
crashes are diagnosed fast. Slow (a vLLM start is ~35-90 s on 2 CPUs): run under
``flock /tmp/poolserve-vllm.lock`` on a shared machine."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from poolserve.check import probes
from poolserve.config.load import load_spec
from poolserve.errors import LocalStartError
from poolserve.kserve.render import render
from poolserve.machine import group_members, pid_alive
from poolserve.targets.local.state import read_pod, read_state
from poolserve.targets.local.target import LocalTarget
from poolserve.vllm import api as vllm_api

pytestmark = pytest.mark.vllm

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "poolserve.yaml"


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _post(url: str, body: dict[str, Any]) -> Any:
    r = httpx.post(url, json=body, timeout=60, trust_env=False)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def own_spec(tmp_path: Path, model_cache_dir: Path, hf_home_dir: Path) -> Any:
    """Build a spec for a deployment of the test's own (not the shared servers'), in its own state dir."""
    pytest.importorskip("vllm", reason="vLLM is not installed (scripts/setup-venv.sh)")

    def make(**overrides: Any) -> Any:
        return load_spec(CONFIG, {"local.cache_dir": str(model_cache_dir), "local.state_dir": str(tmp_path / "state"),
                                  **overrides})

    return make


def test_a_bad_flag_fails_fast_with_the_diagnosis(own_spec: Any) -> None:
    spec = own_spec(**{"models.0.extra_args": ["--no-such-flag"]})
    rendered = render(spec)
    target = LocalTarget()
    try:
        with pytest.raises(LocalStartError) as info:
            target.deploy(rendered, ["minilm-embedding"], wait=True, timeout_s=600)
        assert info.value.returncode == 2  # argparse
        assert info.value.diagnosis is not None
        assert info.value.diagnosis.cause == "vLLM rejected a flag (--no-such-flag)"
        assert any("unrecognized arguments: --no-such-flag" in ln for ln in info.value.log_tail)
        status = target.status(rendered, ["minilm-embedding"])[0]
        assert status.phase == "Failed" and "vLLM rejected a flag (--no-such-flag)" in (status.reason or "")
    finally:
        target.delete(rendered, [])


def test_max_model_len_above_the_limit_is_diagnosed(own_spec: Any) -> None:
    from support.models import RERANKER_ID

    # The test cross-encoder is not in the catalog, so only vLLM itself knows its limit (512).
    spec = own_spec(**{"models.2.model_id": RERANKER_ID, "models.2.task": "score", "models.2.max_model_len": 1024})
    rendered = render(spec)
    target = LocalTarget()
    try:
        with pytest.raises(LocalStartError) as info:
            target.deploy(rendered, ["msmarco-reranker"], wait=True, timeout_s=600)
        assert info.value.diagnosis is not None
        assert info.value.diagnosis.cause == "max_model_len 1024 is above the model's limit"
        assert "last log lines" in str(info.value)
    finally:
        target.delete(rendered, [])


def test_delete_stops_every_process_of_the_server(own_spec: Any) -> None:
    spec = own_spec()
    rendered = render(spec)
    target = LocalTarget()
    try:
        target.deploy(rendered, ["minilm-embedding"], wait=True, timeout_s=spec.local.startup_timeout_s)
        entry = read_state(Path(spec.local.state_dir) / "local-state.json").models["minilm-embedding"]
        # The entry's pid is the supervisor's; the server runs in a process group of its own.
        run = read_pod(Path(spec.local.state_dir), "minilm-embedding").running
        members = group_members(run.pgid)
        assert run.pid in members and len(members) >= 3  # API server, EngineCore, worker (+ resource tracker)
        assert pid_alive(entry.pid) and entry.pid not in members
    finally:
        # A fresh target, as a later `poolserve delete --target local` would be.
        result = LocalTarget().delete(rendered, [])
    assert [(c.name, c.action) for c in result.changes] == [("minilm-embedding", "stopped")]
    assert group_members(run.pgid) == []
    assert not any(pid_alive(p) for p in [*members, entry.pid])


def test_minilm_embeddings_match_sentence_transformers(minilm_server: Any) -> None:
    from sentence_transformers import SentenceTransformer

    texts = list(probes.EMBED_TEXTS)
    body = _post(minilm_server.endpoint.url + vllm_api.EMBEDDINGS,
                 vllm_api.embed_request(texts, minilm_server.endpoint.served_model))
    served = vllm_api.parse_embeddings(body)
    assert served.model == minilm_server.model_id
    reference = SentenceTransformer(str(minilm_server.model_dir), device="cpu").encode(texts)
    assert len(served.vectors) == len(texts) and len(served.vectors[0]) == 384
    for got, want in zip(served.vectors, reference, strict=True):
        assert _cosine(got, [float(x) for x in want]) >= 0.999
    # Sanity: the paraphrases are closer to each other than to the unrelated text.
    assert _cosine(served.vectors[0], served.vectors[1]) > _cosine(served.vectors[0], served.vectors[2])


def test_minilm_answers_under_its_isvc_name_and_redeploy_is_unchanged(minilm_server: Any) -> None:
    body = _post(minilm_server.endpoint.url + vllm_api.EMBEDDINGS, vllm_api.embed_request(["hi"], minilm_server.name))
    assert len(body["data"][0]["embedding"]) == 384
    s = minilm_server
    result = s.target.deploy(s.rendered, [s.name], wait=True, timeout_s=60)
    assert [c.action for c in result.changes] == ["unchanged"]
    assert result.statuses[0].phase == "Ready" and result.statuses[0].url == s.endpoint.url


def test_reranker_matches_sentence_transformers_cross_encoder(reranker_server: Any) -> None:
    from sentence_transformers import CrossEncoder

    docs = list(probes.RERANK_DOCUMENTS)
    body = _post(reranker_server.endpoint.url + vllm_api.RERANK_PATHS[0],
                 vllm_api.rerank_request(probes.RERANK_QUERY, docs, reranker_server.endpoint.served_model))
    ranked = vllm_api.parse_rerank(body)
    assert ranked.model == reranker_server.model_id
    reference = CrossEncoder(str(reranker_server.model_dir), device="cpu").predict(
        [(probes.RERANK_QUERY, d) for d in docs])
    served = {hit.index: hit.score for hit in ranked.results}
    assert sorted(served) == list(range(len(docs)))
    # vLLM's own tolerance for 16-bit classification (rtol 1e-2; tests/models/.../test_classification.py),
    # with an absolute floor of 1e-2 for logits near zero: the local default is bfloat16 on CPUs with
    # AMX/AVX512-BF16 (float32 elsewhere), and the same rule backs `poolserve test --reference`.
    for i, want in enumerate(reference):
        assert abs(served[i] - float(want)) <= 1e-2 * max(1.0, abs(float(want))), (i, served[i], float(want))
    assert ranked.results[0].index == probes.RERANK_RELEVANT_INDEX
    expected_order = sorted(range(len(docs)), key=lambda i: -float(reference[i]))
    assert [hit.index for hit in ranked.results] == expected_order


def test_the_rendered_cpu_runtime_starts_and_serves_here_as_rendered(tmp_path: Path, model_cache_dir: Path,
                                                                     hf_home_dir: Path) -> None:
    """tests/specs/cpu-runtime.yaml's device: cpu runtime, through the local target with nothing changed but the
    port and the paths: vLLM's CLI (`vllm serve`), float32, --enforce-eager, the memory share, unpinned
    threads as many as the CPU limit. It serves embeddings equal to sentence-transformers'."""
    pytest.importorskip("vllm", reason="vLLM is not installed (scripts/setup-venv.sh)")
    from sentence_transformers import SentenceTransformer

    from support.models import minilm_dir

    spec = load_spec(ROOT / "tests" / "specs" / "cpu-runtime.yaml",
                     {"local.cache_dir": str(model_cache_dir), "local.state_dir": str(tmp_path / "state")})
    rendered = render(spec)
    composed = rendered.compose("minilm-cpu")
    target = LocalTarget()
    try:
        result = target.deploy(rendered, ["minilm-cpu"], wait=True, timeout_s=spec.local.startup_timeout_s)
        assert result.statuses[0].phase == "Ready"
        entry = read_state(tmp_path / "state" / "local-state.json").models["minilm-cpu"]
        # The container's argv after `vllm`, then only the local port and host.
        assert list(entry.argv[3:]) == [*composed.argv[1:], f"--port={entry.port}", "--host=127.0.0.1"]
        assert "--dtype=float32" in entry.argv and "--enforce-eager" in entry.argv
        texts = list(probes.EMBED_TEXTS)
        body = _post(entry.url + vllm_api.EMBEDDINGS, vllm_api.embed_request(texts, "minilm-cpu"))
        served = vllm_api.parse_embeddings(body)
        reference = SentenceTransformer(str(minilm_dir()), device="cpu").encode(texts)
        for got, want in zip(served.vectors, reference, strict=True):
            assert _cosine(got, [float(x) for x in want]) >= 0.9999  # float32: as exact as the reference
        log = Path(entry.log).read_text(encoding="utf-8", errors="replace")
        assert "VLLM_CPU_OMP_THREADS_BIND='nobind'" in log and "OMP_NUM_THREADS=2 is set" in log
        assert "api_server` command is deprecated" not in log  # vllm serve, not the deprecated module
    finally:
        target.delete(rendered, [])
