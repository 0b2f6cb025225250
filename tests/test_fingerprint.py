"""Fingerprints without a server: the probe set, the file format, the comparison and its verdicts, the facts."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import replace

import pytest

from poolserve.check import fingerprint as fpm
from poolserve.check import fingerprint_probes as probes
from poolserve.check.fingerprint_compare import (
    COMPATIBLE_MIN_COSINE,
    compare,
    kendall_tau,
    recall_at_k,
    similarity_matrix,
)
from poolserve.errors import SpecError
from poolserve.vllm.facts import ServingFacts, changes, cpu_device, describe, flag_value, from_argv, served_path

FACTS = ServingFacts(model="sentence-transformers/all-MiniLM-L6-v2", revision="abc123", vllm_version="0.32.0",
                     dtype="float32", pooling="MEAN", normalize=True, max_model_len=256, device="cpu (x; none)",
                     target="local")
DIMS = 32


def _vectors(seed: int = 0, dims: int = DIMS) -> tuple[tuple[float, ...], ...]:
    """One unit vector per probe, clustered by topic (like a real model's), float32-exact."""
    rng = random.Random(seed)
    centres = [[rng.gauss(0, 1) for _ in range(dims)] for _ in range(8)]
    out = []
    for i in range(len(probes.EMBED_PROBES)):
        v = [c + 0.5 * rng.gauss(0, 1) for c in centres[i // 8]]
        n = math.sqrt(sum(x * x for x in v))
        out.append(tuple(x / n for x in v))
    return _f32(out)


def _f32(vectors: Sequence[Sequence[float]]) -> tuple[tuple[float, ...], ...]:
    return fpm.decode_vectors(fpm.encode_vectors(vectors), len(vectors), len(vectors[0]))


def _moved(vectors: Sequence[Sequence[float]], scale: float, seed: int = 1) -> tuple[tuple[float, ...], ...]:
    """Each vector plus relative Gaussian noise of ``scale`` per component (what a lower precision does)."""
    rng = random.Random(seed)
    return _f32([[x + scale * rng.gauss(0, 1) / math.sqrt(len(v)) for x in v] for v in vectors])


def embed_fp(vectors: tuple[tuple[float, ...], ...], facts: ServingFacts = FACTS, truncate: int | None = -1
             ) -> fpm.Fingerprint:
    return fpm.Fingerprint(name="minilm-embedding", task="embed", facts=facts, created="2025-01-01T00:00:00+00:00",
                           vectors=vectors, truncate_prompt_tokens=truncate)


def _scores(seed: int = 0) -> tuple[tuple[float, ...], ...]:
    rng = random.Random(seed)
    # the on-topic documents (odd positions) score high and well apart, the others low
    return tuple(tuple((8.0 - i if d % 2 else -2.0 - i) + 0.1 * rng.random() for i, d in enumerate(range(8)))
                 for _ in probes.RERANK_QUERIES)


def score_fp(scores: tuple[tuple[float, ...], ...], facts: ServingFacts = FACTS) -> fpm.Fingerprint:
    return fpm.Fingerprint(name="msmarco-reranker", task="score", facts=facts, created="2025-01-01T00:00:00+00:00",
                           scores=scores, truncate_prompt_tokens=None)


# -- the probe set ------------------------------------------------------------------------------------


def test_probe_set_is_fixed_multilingual_and_of_varied_length() -> None:
    ids = [i for i, _ in probes.EMBED_PROBES]
    assert len(ids) == 64 and len(set(ids)) == 64
    texts = [t for _, t in probes.EMBED_PROBES]
    scripts = {unicodedata.name(ch).split()[0] for t in texts for ch in t if ch.isalpha()}
    assert {"LATIN", "CJK", "CYRILLIC", "ARABIC", "HANGUL", "DEVANAGARI", "GREEK", "HIRAGANA"} <= scripts
    words = sorted(len(t.split()) for t in texts)
    assert words[0] <= 3 and words[-1] >= 200  # a few words up to texts longer than a 256-token max_model_len
    # Released sets never change: a fingerprint's probe_sha256 must keep matching.
    assert fpm.probe_set_sha256() == "aa0eb97fff32730c64e1f508ac506cd880cb6b53d1010dbe1a241ea518f19c99"


def test_rerank_documents_interleave_on_and_off_topic() -> None:
    for i, (topic, _) in enumerate(probes.RERANK_QUERIES):
        docs = probes.rerank_documents(i)
        assert len(docs) == 8
        assert [d.startswith(topic + "/") for d, _ in docs] == [False, True] * 4


def test_probe_modules_are_pure() -> None:
    code = ("import sys, poolserve.check.fingerprint, poolserve.check.fingerprint_compare, poolserve.bench.capacity, "
            "poolserve.vllm.facts, poolserve.config.yamledit\n"
            "print(','.join(m for m in ('httpx', 'kubernetes', 'asyncio', 'torch', 'rich', 'subprocess', 'numpy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# -- the file -----------------------------------------------------------------------------------------


def test_vectors_round_trip_exactly_as_float32() -> None:
    vectors = _vectors()
    fp = embed_fp(vectors)
    back = fpm.from_json(fpm.to_json(fp))
    assert back == fp
    data = json.loads(fpm.to_json(fp))
    assert data["vectors"]["dtype"] == "float32" and data["vectors"]["dimensions"] == DIMS
    assert len(data["vectors"]["data"]) == 4 * math.ceil(64 * DIMS * 4 / 3)  # base64 of the raw float32


def test_scores_round_trip() -> None:
    fp = score_fp(_scores())
    assert fpm.from_json(fpm.to_json(fp)) == fp


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: "not json", "not JSON"),
    (lambda d: {**d, "kind": "other"}, "not a poolserve fingerprint"),
    (lambda d: {**d, "version": 99}, "fingerprint format 99 is not 1"),
    (lambda d: {**d, "probe_set": "poolserve-probes-0"}, "made with probe set 'poolserve-probes-0'"),
    (lambda d: {**d, "probe_sha256": "0" * 64}, "probe texts differ"),
    (lambda d: {**d, "vectors": {**d["vectors"], "count": 63}}, "damaged fingerprint"),
    (lambda d: {**d, "vectors": {**d["vectors"], "data": "%%%"}}, "damaged fingerprint"),
    (lambda d: {**d, "task": "generate"}, "damaged fingerprint"),
])
def test_a_foreign_or_damaged_file_is_one_line(edit: object, message: str) -> None:
    data = json.loads(fpm.to_json(embed_fp(_vectors())))
    changed = edit(data)  # type: ignore[operator]
    text = changed if isinstance(changed, str) else json.dumps(changed)
    with pytest.raises(SpecError, match=message) as err:
        fpm.from_json(text, "fp.json")
    assert str(err.value).startswith("fp.json: ") and "\n" not in str(err.value)


# -- the comparison -----------------------------------------------------------------------------------


def test_the_same_vectors_are_same() -> None:
    c = compare(embed_fp(_vectors()), embed_fp(_vectors()))
    assert c.verdict == "same" and c.changes == () and c.min_cosine == pytest.approx(1.0)
    assert c.mean_recall == 1.0 and c.max_similarity_change == pytest.approx(0.0, abs=1e-12)


def test_a_dtype_sized_move_is_compatible_and_names_the_change() -> None:
    # 1 % relative noise per vector ~ cosine 1 - 5e-5: what float32 -> bfloat16 measured on MiniLM (1 - 1e-4).
    old = embed_fp(_vectors())
    new = embed_fp(_moved(_vectors(), 0.01), replace(FACTS, dtype="bfloat16"))
    c = compare(old, new)
    assert c.verdict == "compatible", c.reason
    assert c.changes == ("dtype: float32 -> bfloat16",)
    assert COMPATIBLE_MIN_COSINE < c.min_cosine < 1 - 1e-7  # type: ignore[operator]
    assert "the index holds" in c.reason


def test_another_model_is_re_index() -> None:
    old = embed_fp(_vectors(0))
    new = embed_fp(_vectors(7), replace(FACTS, revision="def456"))
    c = compare(old, new)
    assert c.verdict == "re-index" and c.changes == ("weights revision: abc123 -> def456",)
    # Topics still cluster in another model's space (the neighbours overlap), but no vector is where it was.
    assert c.min_cosine is not None and c.min_cosine < 0.5 and c.mean_recall is not None and c.mean_recall < 0.95
    assert "re-embed the corpus" in c.reason


def test_long_probes_moving_alone_are_re_index_and_named() -> None:
    # A truncation change moves only the long probes: the worst probe says so.
    vectors = list(_vectors())
    long_ids = [i for i, (pid, _) in enumerate(probes.EMBED_PROBES) if pid.endswith("/long")]
    moved = _moved(vectors, 0.6)
    for i in long_ids:
        vectors[i] = moved[i]
    c = compare(embed_fp(_vectors()), embed_fp(_f32(vectors), truncate=128))
    assert c.verdict == "re-index" and c.worst_probe is not None and c.worst_probe.endswith("/long")
    assert "truncate_prompt_tokens: -1 -> 128" in c.changes


def test_other_dimensions_are_re_index() -> None:
    c = compare(embed_fp(_vectors()), embed_fp(_vectors(dims=16)))
    assert c.verdict == "re-index" and "16 dimensions, the index 32" in c.reason


def test_normalisation_switched_off_is_re_index_though_cosines_hold() -> None:
    scaled = _f32([[3.0 * x for x in v] for v in _vectors()])
    c = compare(embed_fp(_vectors()), embed_fp(scaled, replace(FACTS, normalize=False)))
    assert c.min_cosine == pytest.approx(1.0, abs=1e-6) and c.verdict == "re-index"
    assert "lengths changed" in c.reason and "normalisation: on -> off" in c.changes


def test_reranker_verdicts() -> None:
    base = _scores()
    assert compare(score_fp(base), score_fp(base)).verdict == "same"
    nudged = tuple(tuple(s + 0.02 for s in row) for row in base)
    c = compare(score_fp(base), score_fp(nudged, replace(FACTS, dtype="float16")))
    assert c.verdict == "compatible" and c.top1_kept == 8 and c.min_tau == 1.0
    flipped = (tuple(reversed(base[0])), *base[1:])
    c = compare(score_fp(base), score_fp(flipped))
    assert c.verdict == "re-index" and c.top1_kept == 7 and c.min_tau == -1.0
    assert "re-check relevance thresholds" in c.reason
    # A near-tie that swaps (as bfloat16 did to two documents 0.002 apart) moves no score far: compatible.
    tied = ((10.0, 10.002, 3.0, 1.0, 0.0, -1.0, -2.0, -3.0), *base[1:])
    swapped = ((10.003, 10.0, 3.0, 1.0, 0.0, -1.0, -2.0, -3.0), *base[1:])
    c = compare(score_fp(tied), score_fp(swapped))
    assert c.verdict == "compatible" and c.top1_kept == 7


def test_kendall_tau_and_recall() -> None:
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    units = [[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]]
    sim = similarity_matrix([[x / math.hypot(*v) for x in v] for v in units])
    assert recall_at_k(sim, sim, k=1) == [1.0, 1.0, 1.0, 1.0]


# -- the facts ----------------------------------------------------------------------------------------

COMPOSED = ["vllm", "serve", "sentence-transformers/all-MiniLM-L6-v2", "--port=8080", "--runner=pooling",
            "--dtype=float16", "--served-model-name", "sentence-transformers/all-MiniLM-L6-v2", "minilm-embedding",
            "--max-model-len=256", '--pooler-config={"pooling_type":"CLS","normalize":false}',
            "--hf-overrides", '{"a":1}', "--trust-remote-code"]


def test_facts_from_the_command_line_last_flag_wins() -> None:
    local = [*COMPOSED, "--port=0", "--dtype=bfloat16", "--enforce-eager"]
    f = from_argv(local, default_pooling="MEAN", default_normalize=True, device="cpu", target="local")
    assert (f.model, f.dtype, f.max_model_len, f.pooling, f.normalize) == (
        "sentence-transformers/all-MiniLM-L6-v2", "bfloat16", 256, "CLS", False)
    assert f.flags == ('--hf-overrides={"a":1}', "--trust-remote-code")
    assert (f.device, f.target) == ("cpu", "local")
    assert from_argv(["vllm", "serve", "m"], default_pooling="MEAN (+L2 normalize), from the config").pooling == \
        "MEAN (+L2 normalize)"
    assert from_argv(["vllm", "serve", "m"]).dtype == "auto"
    assert served_path(["python", "-m", "x", "--model", "/mnt/models"]) == "/mnt/models"
    assert flag_value(["--a", "--b=2"], "--a") == "" and flag_value(["--a", "1", "--a=3"], "--a") == "3"


def test_fact_changes_and_description() -> None:
    new = replace(FACTS, dtype="bfloat16", vllm_version="0.33.0", revision=None, target="cluster")
    assert changes(FACTS, new) == ["weights revision: abc123 -> unknown", "vLLM version: 0.32.0 -> 0.33.0",
                                   "dtype: float32 -> bfloat16"]
    assert changes(FACTS, replace(FACTS, target="cluster")) == []  # where it ran is not a change by itself
    assert describe(FACTS) == ("sentence-transformers/all-MiniLM-L6-v2 @abc123, vLLM 0.32.0, float32, MEAN, "
                               "normalised, max_model_len 256, cpu (x; none)")
    assert ServingFacts.from_dict({**FACTS.to_dict(), "future_key": 1}) == FACTS
    assert cpu_device("AMD EPYC", {"avx512f", "avx512_bf16", "amx_bf16"}) == "cpu (AMD EPYC; avx512_bf16 amx_bf16)"
