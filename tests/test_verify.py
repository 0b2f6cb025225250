"""verify(): every check on synthetic vLLM responses (pass and fail), expectations, reference helpers."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from poolserve.check import probes
from poolserve.check.client import PoolClient
from poolserve.check.expectations import Expectations, expectations_for
from poolserve.check.probes import long_text
from poolserve.check.reference import (
    INSTALL_HINT,
    apply_activation,
    cross_encoder_activation,
    default_hf_homes,
    load_reference,
    locate,
)
from poolserve.check.vectors import compare_embeddings, compare_scores, cosine
from poolserve.check.verify import VerifyReport, verify
from poolserve.config.load import parse_spec
from poolserve.errors import EndpointError, ReferenceUnavailable
from poolserve.kserve.render import render
from poolserve.vllm import hfcache
from support.fake_vllm import FakeVllm

CONFIG = """
namespace: t
image: vllm/vllm-openai:v0.32.0
runtimes:
  - {name: emb, task: embed}
  - {name: rr, task: score}
models:
  - {name: minilm, model_id: sentence-transformers/all-MiniLM-L6-v2, max_model_len: 256}
  - {name: msmarco, model_id: cross-encoder/ms-marco-MiniLM-L12-v2}
  - {name: bge-rr, model_id: BAAI/bge-reranker-v2-m3}
  - {name: custom, model_id: me/my-embedder, task: embed}
  - {name: raw, model_id: sentence-transformers/all-MiniLM-L6-v2, pooler_config: {use_activation: false}}
"""

EMBED = Expectations(name="minilm", task="embed", vllm_version=(0, 32, 0), served_model="minilm", dimensions=384,
                     normalized=True, max_model_len=256)
RERANK = Expectations(name="rr", task="score", vllm_version=(0, 32, 0), served_model="minilm")


class Clock:
    """Advances 2 ms per reading, so every call 'takes' 2 ms."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 0.002
        return self.t


def run(fake: FakeVllm, expect: Expectations, **kw: object) -> VerifyReport:
    client = PoolClient("http://vllm.test", model=expect.served_model, transport=fake.transport,
                        sleep=lambda s: None, retries=1)
    return verify(client, expect, now=Clock(), **kw)  # type: ignore[arg-type]


def test_verify_reads_no_clock_the_caller_passes_it() -> None:
    # A core module (STYLE.md): no clock import, and no clock default to fall back on.
    import ast
    import inspect

    import poolserve.check.expectations
    import poolserve.check.functional
    import poolserve.check.robustness
    import poolserve.check.runner
    import poolserve.check.vectors
    import poolserve.check.verify

    for module in (poolserve.check.verify, poolserve.check.runner, poolserve.check.functional,
                   poolserve.check.robustness, poolserve.check.vectors, poolserve.check.expectations):
        tree = ast.parse(Path(module.__file__).read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not imported & {"time", "datetime"}, module.__name__
    assert inspect.signature(verify).parameters["now"].default is inspect.Parameter.empty


def by_name(report: VerifyReport) -> dict[str, object]:
    return {c.name: c for c in report.checks}


def failed(report: VerifyReport) -> list[str]:
    return [c.name for c in report.failed]


# -- expectations ---------------------------------------------------------------------------------

def test_expectations_from_config_and_catalog() -> None:
    spec = parse_spec(CONFIG)
    e = expectations_for(render(spec).model("minilm"), served_model="minilm")
    assert (e.task, e.dimensions, e.normalized, e.max_model_len, e.score_range) == ("embed", 384, True, 256, None)
    assert e.vllm_version == (0, 32, 0)
    assert expectations_for(render(spec).model("msmarco")).score_range is None  # raw logits (Identity)
    assert expectations_for(render(spec).model("bge-rr")).score_range == (0.0, 1.0)  # sigmoid
    custom = expectations_for(render(spec).model("custom"))
    assert (custom.dimensions, custom.normalized) == (None, None)
    assert expectations_for(render(spec).model("raw")).normalized is False


# -- embedding checks -----------------------------------------------------------------------------

def test_embedding_model_passes_every_check() -> None:
    fake = FakeVllm()
    report = run(fake, EMBED)
    assert [c.name for c in report.checks] == [
        "health", "models", "embed single", "embed batch", "embed similarity", "embed too long", "embed truncate"]
    assert report.passed and report.failed == ()
    checks = by_name(report)
    assert "384 dims" in checks["embed single"].detail  # type: ignore[attr-defined]
    assert "HTTP 400 as expected: This model's maximum context length is 256" in \
        checks["embed too long"].detail  # type: ignore[attr-defined]
    assert "256 tokens" in checks["embed truncate"].detail  # type: ignore[attr-defined]
    assert checks["embed single"].latency_ms == 2.0  # type: ignore[attr-defined]
    assert checks["embed similarity"].latency_ms is None  # type: ignore[attr-defined]
    long_calls = [b for m, p, b in fake.calls if p == "/v1/embeddings" and isinstance(b["input"], str)
                  and len(b["input"].split()) > 256]
    assert len(long_calls) == 2 and long_calls[1]["truncate_prompt_tokens"] == -1


def test_wrong_dimension() -> None:
    fake = FakeVllm(dims=128)
    report = run(fake, EMBED)
    assert failed(report) == ["embed single", "embed batch", "embed similarity", "embed truncate"]
    assert "128 dims, expected 384" in by_name(report)["embed single"].detail  # type: ignore[attr-defined]


def test_nan_values() -> None:
    fake = FakeVllm()
    fake.nan = True
    report = run(fake, EMBED)
    assert "non-finite" in by_name(report)["embed single"].detail  # type: ignore[attr-defined]
    assert not report.passed


def test_unnormalized_vectors_fail_only_when_the_model_normalizes() -> None:
    fake = FakeVllm()
    fake.normalize = False
    report = run(fake, EMBED)
    assert "where the model normalizes to 1" in by_name(report)["embed single"].detail  # type: ignore[attr-defined]
    unknown = Expectations(name="x", task="embed", vllm_version=(0, 32, 0), served_model="minilm")
    assert run(fake, unknown).passed


def test_batch_order_mixed_up() -> None:
    fake = FakeVllm()
    fake.swap_batch = True
    report = run(fake, EMBED)
    assert failed(report) == ["embed batch", "embed similarity"]
    assert "alone vs in a batch" in by_name(report)["embed batch"].detail  # type: ignore[attr-defined]


class SwappedMeaning(FakeVllm):
    """Text 0 comes out like text 2 (unrelated), not like its paraphrase."""

    def vector(self, text: str) -> list[float]:
        return super().vector(probes.EMBED_TEXTS[2] if text == probes.EMBED_TEXTS[0] else text)


def test_paraphrases_not_closer_than_unrelated_texts() -> None:
    report = run(SwappedMeaning(), EMBED)
    assert failed(report) == ["embed similarity"]
    assert "<= unrelated" in by_name(report)["embed similarity"].detail  # type: ignore[attr-defined]


def test_long_input_accepted_is_a_failure_unless_chunked() -> None:
    fake = FakeVllm()
    fake.accept_long = True
    report = run(fake, EMBED)
    assert failed(report) == ["embed too long"]
    assert "were accepted" in by_name(report)["embed too long"].detail  # type: ignore[attr-defined]
    chunked = Expectations(**{**EMBED.__dict__, "chunked_processing": True})
    assert run(fake, chunked).passed


def test_max_model_len_from_v1_models_wins_over_config() -> None:
    fake = FakeVllm(max_model_len=64)
    report = run(fake, EMBED)  # config says 256; the server says 64
    assert report.passed
    assert any(len(b["input"].split()) == 64 + 16 for _, p, b in fake.calls
               if p == "/v1/embeddings" and isinstance(b["input"], str))


def test_unknown_max_model_len_skips_the_long_input_checks_with_a_note() -> None:
    fake = FakeVllm()
    fake.routes["/v1/models"] = lambda req: httpx.Response(200, json={"data": [{"id": "minilm"}]})
    report = run(fake, Expectations(**{**EMBED.__dict__, "max_model_len": None}))
    assert "embed too long" not in by_name(report)
    assert report.notes and "max_model_len unknown" in report.notes[0]


def test_wrong_served_name_fails_models_and_blocks_the_rest() -> None:
    fake = FakeVllm(served=("other",))
    report = run(fake, EMBED)
    checks = by_name(report)
    assert "'minilm' is not served here; /v1/models lists other" in checks["models"].detail  # type: ignore[attr-defined]
    assert "The model `minilm` does not exist." in checks["embed single"].detail  # type: ignore[attr-defined]
    assert checks["embed batch"].detail.startswith("not run: embed single failed")  # type: ignore[attr-defined]
    assert report.passed is False
    assert len([p for p in fake.paths() if p == "/v1/embeddings"]) == 1


def test_embedding_checks_against_a_cross_encoder_name_the_task() -> None:
    fake = FakeVllm(task="score", served=("minilm",))
    report = run(fake, EMBED)
    detail = by_name(report)["embed single"].detail  # type: ignore[attr-defined]
    assert "HTTP 404" in detail and "cross-encoder" in detail and "no /v1/embeddings" in detail
    assert failed(report) == ["embed single", "embed batch", "embed similarity", "embed too long", "embed truncate"]


def test_unhealthy_server_stops_after_health() -> None:
    fake = FakeVllm()
    fake.healthy = False
    report = run(fake, EMBED)
    assert [c.name for c in report.checks] == ["health"] and not report.passed
    assert report.notes == ("stopped after /health: the server is not ready",)


def test_connection_refused_and_auth_end_the_run() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    client = PoolClient("http://vllm.test", transport=httpx.MockTransport(refused), sleep=lambda s: None)
    with pytest.raises(EndpointError) as ei:
        verify(client, EMBED, now=Clock())
    assert ei.value.kind == "connection"
    fake = FakeVllm(token="t")
    with pytest.raises(EndpointError) as ei:
        run(fake, EMBED)
    assert ei.value.kind == "auth"


def test_auth_failing_after_health_still_ends_the_run() -> None:
    fake = FakeVllm()
    fake.routes["/v1/models"] = lambda req: httpx.Response(403, text="Forbidden")
    with pytest.raises(EndpointError) as ei:
        run(fake, EMBED)
    assert ei.value.status == 403


# -- reranker checks ------------------------------------------------------------------------------

def test_reranker_passes_every_check() -> None:
    fake = FakeVllm(task="score")
    report = run(fake, RERANK)
    assert [c.name for c in report.checks] == [
        "health", "models", "score /score", "score /v1/score", "rerank /rerank", "rerank /v1/rerank",
        "rerank /v2/rerank", "rerank top_n"]
    assert report.passed, report.failed
    assert fake.calls[-1][2]["top_n"] == 2
    assert "same scores as /score" in by_name(report)["rerank /v2/rerank"].detail  # type: ignore[attr-defined]


def test_relevant_document_not_first() -> None:
    fake = FakeVllm(task="score")
    fake.relevant_loses = True
    report = run(fake, RERANK)
    assert set(failed(report)) == {"score /score", "score /v1/score", "rerank /rerank", "rerank /v1/rerank",
                                   "rerank /v2/rerank", "rerank top_n"}
    assert "not the relevant document 1" in by_name(report)["score /score"].detail  # type: ignore[attr-defined]


def test_rerank_unsorted_and_top_n_ignored() -> None:
    fake = FakeVllm(task="score")
    fake.reverse_rerank = True
    assert "not sorted" in by_name(run(fake, RERANK))["rerank /rerank"].detail  # type: ignore[attr-defined]
    fake = FakeVllm(task="score")
    fake.ignore_top_n = True
    report = run(fake, RERANK)
    assert failed(report) == ["rerank top_n"]
    assert "top_n=2 not honoured" in by_name(report)["rerank top_n"].detail  # type: ignore[attr-defined]


def test_sigmoid_model_returning_logits_fails_the_range() -> None:
    fake = FakeVllm(task="score")
    sigmoid = Expectations(**{**RERANK.__dict__, "score_range": (0.0, 1.0)})
    report = run(fake, sigmoid)
    assert "outside 0..1" in by_name(report)["score /score"].detail  # type: ignore[attr-defined]


def test_rerank_scores_differing_from_score() -> None:
    fake = FakeVllm(task="score")
    real = fake.rerank

    def shifted(req: httpx.Request) -> httpx.Response:
        resp = real(json.loads(req.content))
        data = resp.json()
        for r in data["results"]:
            r["relevance_score"] += 0.5
        return httpx.Response(200, json=data)

    fake.routes["/v1/rerank"] = shifted
    report = run(fake, RERANK)
    assert failed(report) == ["rerank /v1/rerank"]
    assert "differs from /score" in by_name(report)["rerank /v1/rerank"].detail  # type: ignore[attr-defined]


@pytest.mark.parametrize(("version", "names"), [
    ((0, 6, 5), ["health", "models", "score /score", "score /v1/score"]),
    ((0, 6, 4), ["health", "models"]),
])
def test_old_versions_skip_routes_they_do_not_have(version: tuple[int, int, int], names: list[str]) -> None:
    report = run(FakeVllm(task="score"), Expectations(**{**RERANK.__dict__, "vllm_version": version}))
    assert [c.name for c in report.checks] == names
    assert any("predates" in n for n in report.notes)


def test_missing_rerank_route_blocks_the_other_rerank_checks() -> None:
    fake = FakeVllm(task="score")
    fake.routes["/rerank"] = lambda req: httpx.Response(404, json={"detail": "Not Found"})
    report = by_name(run(fake, RERANK))
    assert "no score/rerank API" in report["rerank /rerank"].detail  # type: ignore[attr-defined]
    assert report["rerank /v1/rerank"].detail == "not run: rerank /rerank failed"  # type: ignore[attr-defined]
    assert report["score /score"].passed  # type: ignore[attr-defined]


# -- reference ------------------------------------------------------------------------------------

class FakeReference:
    source = "/models/ref"

    def __init__(self, fake: FakeVllm, embed_noise: float = 0.0, score_offset: float = 0.0) -> None:
        self.fake, self.embed_noise, self.score_offset = fake, embed_noise, score_offset

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[x + (self.embed_noise if i % 2 else -self.embed_noise) for i, x in enumerate(self.fake.vector(t))]
                for t in texts]

    def score(self, query: str, docs: Sequence[str]) -> list[float]:
        return [self.fake.relevance(query, d, i) + self.score_offset for i, d in enumerate(docs)]


def test_reference_embeddings_match_and_mismatch() -> None:
    fake = FakeVllm()
    report = run(fake, EMBED, reference=FakeReference(fake))
    assert report.passed and report.reference == "/models/ref"
    assert by_name(report)["reference embed"].detail.startswith("min cosine 1.000000 over 4 texts")  # type: ignore
    report = run(fake, EMBED, reference=FakeReference(fake, embed_noise=0.05))
    assert failed(report) == ["reference embed"]
    assert "< 0.999" in by_name(report)["reference embed"].detail  # type: ignore[attr-defined]


def test_reference_scores_within_and_beyond_tolerance() -> None:
    fake = FakeVllm(task="score")
    assert run(fake, RERANK, reference=FakeReference(fake, score_offset=0.004)).passed
    report = run(fake, RERANK, reference=FakeReference(fake, score_offset=0.2))
    assert failed(report) == ["reference score"]
    assert "> 0.01" in by_name(report)["reference score"].detail  # type: ignore[attr-defined]


def test_compare_helpers() -> None:
    assert compare_embeddings([[1.0, 0.0]], [[1.0, 0.001]])[0]
    ok, detail = compare_embeddings([[1.0, 0.0]], [[0.0, 1.0]])
    assert not ok and "min cosine 0.000000" in detail
    assert not compare_embeddings([[1.0, 0.0]], [[1.0, 0.0, 0.0]])[0]
    assert compare_scores([8.0], [8.07])[0]  # relative above 1: 0.07/8 < 1e-2
    assert not compare_scores([0.5], [0.52])[0]  # absolute below 1
    assert math.isclose(cosine([1, 1], [1, 0]), math.sqrt(0.5))
    assert cosine([0, 0], [1, 0]) == 0.0
    assert len(long_text(100).split()) == 125


@pytest.mark.parametrize(("config", "expected"), [
    ({"sbert_ce_default_activation_function": "torch.nn.modules.linear.Identity", "num_labels": 1}, "identity"),
    ({"num_labels": 1}, "sigmoid"),
    ({"sentence_transformers": {"activation_fn": "torch.nn.modules.activation.Sigmoid"},
      "sbert_ce_default_activation_function": "torch.nn.modules.linear.Identity"}, "sigmoid"),
    ({"problem_type": "regression", "sbert_ce_default_activation_function": "x.Sigmoid"}, "identity"),
    ({"problem_type": "single_label_classification", "id2label": {"0": "a", "1": "b"}}, "softmax"),
    ({"problem_type": None, "num_labels": 1}, "sigmoid"),
])
def test_cross_encoder_activation_follows_vllm(config: dict[str, object], expected: str) -> None:
    assert cross_encoder_activation(config) == expected


def test_apply_activation() -> None:
    assert apply_activation([0.0, 2.0], "identity") == [0.0, 2.0]
    assert apply_activation([0.0], "sigmoid") == [0.5]
    assert math.isclose(apply_activation([-800.0], "sigmoid")[0], 0.0, abs_tol=1e-300)


def test_missing_sentence_transformers_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ReferenceUnavailable) as ei:
        load_reference("sentence-transformers/all-MiniLM-L6-v2", "embed")
    assert INSTALL_HINT in str(ei.value) and "\n" not in str(ei.value)


def test_locate_dir_cache_and_hub_id(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}")
    assert locate(src) == str(src)
    home = tmp_path / "hf"
    cached = hfcache.import_model(home, "org/model", src)
    assert locate("org/model", [tmp_path / "empty", home]) == str(cached.path)
    assert locate("org/other", [home]) == "org/other"
    with pytest.raises(ReferenceUnavailable, match="no such directory"):
        locate(str(tmp_path / "missing"))


def test_default_hf_homes_order(tmp_path: Path) -> None:
    homes = default_hf_homes([tmp_path / "local"], env={"HF_HOME": str(tmp_path / "hf"),
                                                         "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert homes == [tmp_path / "local", tmp_path / "hf", tmp_path / "xdg" / "huggingface"]


# -- robustness (--robustness) --------------------------------------------------------------------

ROBUST_EMBED = ["robust too long", "robust empty input", "robust unknown model", "robust batch 2048",
                "robust non-ascii", "robust long token", "robust huge token", "robust healthy after"]


def test_robustness_on_an_embedding_model_answers_like_vllm_0_32() -> None:
    fake = FakeVllm()
    report = run(fake, EMBED, robustness=True)
    assert [c.name for c in report.checks][-8:] == ROBUST_EMBED
    assert report.passed, report.failed
    c = by_name(report)
    assert c["robust too long"].status == 400  # type: ignore[attr-defined]
    assert "names the limit 256" in c["robust too long"].detail  # type: ignore[attr-defined]
    assert "/health 200 after it" in c["robust too long"].detail  # type: ignore[attr-defined]
    assert c["robust empty input"].detail.startswith(  # type: ignore[attr-defined]
        'refused cleanly: HTTP 400 "You must pass at least one prompt"')
    assert c["robust unknown model"].status == 404  # type: ignore[attr-defined]
    assert "2048 vectors, 384 dims" in c["robust batch 2048"].detail  # type: ignore[attr-defined]
    assert c["robust long token"].status == 200  # type: ignore[attr-defined]
    assert c["robust huge token"].status == 400  # type: ignore[attr-defined]  # > 18 characters per token
    assert "5120 characters (more than 4608" in c["robust huge token"].detail  # type: ignore[attr-defined]
    sent = [b for m, p, b in fake.calls if p == "/v1/embeddings" and isinstance(b["input"], list)]
    assert any(len(b["input"]) == 2048 for b in sent)
    assert any(b.get("model") == "poolserve-no-such-model" for b in sent)
    health = [p for _, p, _ in fake.calls if p == "/health"]
    assert len(health) == 1 + 7 + 1  # once first, after each bad input, and at the end


def test_robustness_on_a_reranker() -> None:
    fake = FakeVllm(task="score", max_model_len=512)
    report = run(fake, RERANK, robustness=True)
    assert report.passed, report.failed
    c = by_name(report)
    assert 'HTTP 400 "At least one text_pair element must be given"' in \
        c["robust zero documents"].detail  # type: ignore[attr-defined]
    assert "2048 results, sorted" in c["robust batch 2048"].detail  # type: ignore[attr-defined]
    assert "names the limit 512" in c["robust too long"].detail  # type: ignore[attr-defined]
    assert c["robust huge token"].status == 200  # type: ignore[attr-defined]  # no character cap on /rerank


def test_robustness_is_off_by_default() -> None:
    assert not any(c.name.startswith("robust") for c in run(FakeVllm(), EMBED).checks)


def test_a_server_error_or_a_dropped_connection_on_a_bad_input_fails_without_ending_the_run() -> None:
    fake = FakeVllm()
    real = fake.embeddings

    def crashing(body: dict) -> httpx.Response:  # type: ignore[type-arg]
        if body["input"] == []:
            return httpx.Response(500, text="Internal Server Error")
        if isinstance(body["input"], list) and len(body["input"]) == 2048:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return real(body)

    fake.embeddings = crashing  # type: ignore[method-assign]
    report = run(fake, EMBED, robustness=True)
    c = by_name(report)
    assert failed(report) == ["robust empty input", "robust batch 2048"]
    assert c["robust empty input"].detail.startswith("not a clean answer: HTTP 500")  # type: ignore[attr-defined]
    assert "connection" in c["robust batch 2048"].detail  # type: ignore[attr-defined]
    assert c["robust healthy after"].passed  # type: ignore[attr-defined]


def test_a_server_that_dies_after_a_bad_input_fails_that_check_and_the_end() -> None:
    fake = FakeVllm()
    real = fake.embeddings

    def dying(body: dict) -> httpx.Response:  # type: ignore[type-arg]
        if isinstance(body["input"], list) and len(body["input"]) == 2048:
            fake.healthy = False
        return real(body)

    fake.embeddings = dying  # type: ignore[method-assign]
    report = run(fake, EMBED, robustness=True)
    c = by_name(report)
    assert "robust batch 2048" in failed(report) and "robust healthy after" in failed(report)
    assert "/health after it: 503" in c["robust batch 2048"].detail  # type: ignore[attr-defined]


def test_too_long_must_name_the_limit_and_unknown_model_must_be_404() -> None:
    fake = FakeVllm()

    def vague(req: httpx.Request) -> httpx.Response:
        body = json.loads(req.content)
        if len(json.dumps(body["input"])) > 1000 and not body.get("truncate_prompt_tokens"):
            return httpx.Response(400, json={"error": {"message": "input too long", "param": "input_tokens"}})
        return fake.embeddings(body)

    fake.routes["/v1/embeddings"] = vague
    report = run(fake, EMBED, robustness=True)
    assert "the 400 does not name the limit 256" in by_name(report)["robust too long"].detail  # type: ignore[attr-defined]
    fake = FakeVllm(served=("minilm",))
    fake.routes["/v1/embeddings"] = lambda req: fake.embeddings({**json.loads(req.content), "model": None})
    report = run(fake, EMBED, robustness=True)
    assert by_name(report)["robust unknown model"].detail.startswith(  # type: ignore[attr-defined]
        "HTTP 200 for model 'poolserve-no-such-model': the server ignores the model name")
