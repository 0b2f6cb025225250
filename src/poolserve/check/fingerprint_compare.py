"""Two fingerprints compared (pure): how far the outputs moved, and whether an index built on the old ones holds.

Embedding models: the cosine between each probe's old and new vector (min and mean), the probes'
neighbour agreement (for each probe, the share of its 10 nearest probes before that are still among its
10 nearest after: recall@10, mean and min), and the largest change of a probe-to-probe similarity.
Rerankers: the largest score change (relative to max(1, |score|)), the rank agreement per query (Kendall's
tau) and whether each query's best document stays first.

The verdict:

- ``same``: equal within float noise (what two runs of one deployment give);
- ``compatible``: moved, but less than a dtype change of the same weights moves them: no re-index;
- ``re-index``: moved more (other weights, truncation, pooling): an index built on the old vectors is stale.

The thresholds come from measurements on real vLLM: docs/how-to/fingerprints.md has the table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

from poolserve.check.fingerprint import Fingerprint
from poolserve.check.fingerprint_probes import EMBED_PROBES, RERANK_QUERIES
from poolserve.vllm.facts import changes

Verdict = Literal["same", "compatible", "re-index"]
K = 10
"""Neighbours per probe for the agreement (recall@10)."""

# Thresholds (docs/how-to/fingerprints.md, "Why these thresholds", has the measurements behind them).
SAME_MIN_COSINE = 1 - 1e-7
"""Every probe at least this close to itself: float32 noise (repeated runs and restarts measured exactly 1)."""
SAME_NORM_CHANGE = 1e-6
COMPATIBLE_MIN_COSINE = 0.999
"""Every probe at least this close: ten times what float32 -> bfloat16 moves MiniLM's (measured 1 - 1e-4)."""
COMPATIBLE_MIN_RECALL = 0.95
"""Mean neighbour agreement at least this (float32 -> bfloat16 keeps 0.994)."""
COMPATIBLE_NORM_CHANGE = 0.01
"""Vector lengths within 1 %: switching normalisation changes them far more, cosines not at all."""
COMPATIBLE_LABEL = "a dtype change of the same weights moves them"
SAME_SCORE_DIFF = 1e-4
"""Reranker: every score within this (relative to max(1, |score|)); a repeated run measured 2e-7."""
COMPATIBLE_SCORE_DIFF = 0.1
"""Reranker: every score within this: float32 -> bfloat16 moved the test cross-encoder's by 0.056, another head
by 1.0. Within it only near-ties can swap, so the rankings hold."""
COMPATIBLE_MEAN_TAU = 0.9
"""Reranker: mean Kendall tau over the queries at least this (bfloat16: 0.991, another head: -0.17)."""


@dataclass(frozen=True)
class Comparison:
    """How far one fingerprint's outputs are from another's, and what that means."""

    verdict: Verdict
    reason: str
    """Why this verdict, in one sentence with the numbers that decided it."""
    changes: tuple[str, ...]
    """What differs in the two deployments' settings (``dtype: float32 -> bfloat16``)."""
    task: str
    min_cosine: float | None = None
    mean_cosine: float | None = None
    worst_probe: str | None = None
    """The probe that moved most (``astronomy/long``)."""
    mean_recall: float | None = None
    min_recall: float | None = None
    max_similarity_change: float | None = None
    max_norm_change: float | None = None
    """Largest relative change of a vector's length (normalisation switched on or off shows here)."""
    max_score_diff: float | None = None
    min_tau: float | None = None
    mean_tau: float | None = None
    top1_kept: int | None = None
    queries: int | None = None


def _norm(v: Sequence[float]) -> float:
    return math.sqrt(math.fsum(x * x for x in v))


def _unit(v: Sequence[float]) -> list[float]:
    n = _norm(v)
    return [x / n for x in v] if n else [0.0 for _ in v]


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def similarity_matrix(units: Sequence[Sequence[float]]) -> list[list[float]]:
    """Cosines between every pair of (unit) vectors."""
    n = len(units)
    sim = [[1.0] * n for _ in range(n)]
    for i, j in combinations(range(n), 2):
        sim[i][j] = sim[j][i] = _dot(units[i], units[j])
    return sim


def neighbours(sim: Sequence[Sequence[float]], i: int, k: int = K) -> set[int]:
    """The ``k`` probes nearest to probe ``i`` (itself excluded; ties by index)."""
    others = sorted((j for j in range(len(sim)) if j != i), key=lambda j: (-sim[i][j], j))
    return set(others[:k])


def recall_at_k(old: Sequence[Sequence[float]], new: Sequence[Sequence[float]], k: int = K) -> list[float]:
    """Per probe: the share of its ``k`` nearest probes in ``old`` still among its ``k`` nearest in ``new``."""
    return [len(neighbours(old, i, k) & neighbours(new, i, k)) / k for i in range(len(old))]


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-a between two score lists over the same documents (1: same order, -1: reversed)."""
    pairs = list(combinations(range(len(a)), 2))
    if not pairs:
        return 1.0
    agree = sum(1 if (a[i] - a[j]) * (b[i] - b[j]) > 0 else -1 if (a[i] - a[j]) * (b[i] - b[j]) < 0 else 0
                for i, j in pairs)
    return agree / len(pairs)


def _argmax(xs: Sequence[float]) -> int:
    return max(range(len(xs)), key=lambda i: (xs[i], -i))


def compare(old: Fingerprint, new: Fingerprint) -> Comparison:
    """Compare ``new`` (the deployment now) with ``old`` (the one the index was built with).

    Both must come from the same probe set and task (:func:`~poolserve.check.fingerprint.from_json` and the
    caller check that).
    """
    diff = tuple(changes(old.facts, new.facts))
    if old.truncate_prompt_tokens != new.truncate_prompt_tokens:
        diff += (f"truncate_prompt_tokens: {old.truncate_prompt_tokens} -> {new.truncate_prompt_tokens}",)
    if old.task == "score":
        return _compare_scores(old, new, diff)
    return _compare_vectors(old, new, diff)


def _compare_vectors(old: Fingerprint, new: Fingerprint, diff: tuple[str, ...]) -> Comparison:
    if old.dimensions != new.dimensions:
        return Comparison("re-index", f"the vectors have {new.dimensions} dimensions, the index {old.dimensions}",
                          diff, old.task)
    norms = [(_norm(x), _norm(y)) for x, y in zip(old.vectors, new.vectors, strict=True)]
    norm_change = max(abs(nb / na - 1) if na else (0.0 if not nb else math.inf) for na, nb in norms)
    a = [_unit(v) for v in old.vectors]
    b = [_unit(v) for v in new.vectors]
    cos = [_dot(x, y) for x, y in zip(a, b, strict=True)]
    worst = min(range(len(cos)), key=cos.__getitem__)
    sim_a, sim_b = similarity_matrix(a), similarity_matrix(b)
    recall = recall_at_k(sim_a, sim_b)
    drift = max(abs(sim_a[i][j] - sim_b[i][j]) for i, j in combinations(range(len(a)), 2))
    lo, mean, mean_recall = cos[worst], math.fsum(cos) / len(cos), math.fsum(recall) / len(recall)
    numbers = (f"min cosine {lo:.7f} ({EMBED_PROBES[worst][0]}), mean {mean:.7f}; neighbour agreement "
               f"(recall@{K}) mean {mean_recall:.3f}; lengths within {norm_change:.1e}")
    if lo >= SAME_MIN_COSINE and norm_change <= SAME_NORM_CHANGE:
        verdict: Verdict = "same"
        reason = f"{numbers}: within float noise (min cosine >= {SAME_MIN_COSINE})"
    elif lo >= COMPATIBLE_MIN_COSINE and mean_recall >= COMPATIBLE_MIN_RECALL and norm_change <= COMPATIBLE_NORM_CHANGE:
        verdict = "compatible"
        reason = (f"{numbers}: moved, but less than {COMPATIBLE_LABEL} (min cosine >= {COMPATIBLE_MIN_COSINE}, "
                  f"recall@{K} >= {COMPATIBLE_MIN_RECALL}); the index holds")
    else:
        verdict = "re-index"
        why = (f"min cosine < {COMPATIBLE_MIN_COSINE}" if lo < COMPATIBLE_MIN_COSINE
               else f"recall@{K} < {COMPATIBLE_MIN_RECALL}" if mean_recall < COMPATIBLE_MIN_RECALL
               else f"vector lengths changed by {norm_change:.1%}: an inner-product index ranks differently")
        reason = f"{numbers}: the vectors moved ({why}); re-embed the corpus"
    return Comparison(verdict, reason, diff, old.task, min_cosine=lo, mean_cosine=mean,
                      worst_probe=EMBED_PROBES[worst][0], mean_recall=mean_recall, min_recall=min(recall),
                      max_similarity_change=drift, max_norm_change=norm_change)


def _compare_scores(old: Fingerprint, new: Fingerprint, diff: tuple[str, ...]) -> Comparison:
    rel = [abs(x - y) / max(1.0, abs(x)) for sa, sb in zip(old.scores, new.scores, strict=True)
           for x, y in zip(sa, sb, strict=True)]
    taus = [kendall_tau(sa, sb) for sa, sb in zip(old.scores, new.scores, strict=True)]
    kept = sum(_argmax(sa) == _argmax(sb) for sa, sb in zip(old.scores, new.scores, strict=True))
    worst_q = min(range(len(taus)), key=taus.__getitem__)
    n = len(taus)
    biggest, lo_tau, mean_tau = max(rel), min(taus), math.fsum(taus) / n
    numbers = (f"max score change {biggest:.2e}; Kendall tau min {lo_tau:.3f} ({RERANK_QUERIES[worst_q][0]}), "
               f"mean {mean_tau:.3f}; best document kept first in {kept}/{n} queries")
    if biggest <= SAME_SCORE_DIFF and lo_tau == 1.0:
        verdict: Verdict = "same"
        reason = f"{numbers}: within float noise (scores within {SAME_SCORE_DIFF:g})"
    elif biggest <= COMPATIBLE_SCORE_DIFF and mean_tau >= COMPATIBLE_MEAN_TAU:
        verdict = "compatible"
        reason = (f"{numbers}: scores within {COMPATIBLE_SCORE_DIFF:g} and mean tau >= {COMPATIBLE_MEAN_TAU}: only "
                  "near-ties can swap; rankings and score thresholds hold")
    else:
        verdict = "re-index"
        reason = (f"{numbers}: the scores moved; re-check relevance thresholds and any cached or evaluated "
                  "rankings")
    return Comparison(verdict, reason, diff, old.task, max_score_diff=biggest, min_tau=lo_tau, mean_tau=mean_tau,
                      top1_kept=kept, queries=n)
