"""Vector maths for ``poolserve test`` (pure): norms, cosines, and comparisons with reference outputs.

:func:`vector_problems` says what is wrong with served vectors; :func:`compare_embeddings` and
:func:`compare_scores` hold served outputs against the reference ones (:mod:`poolserve.check.reference`)
with vLLM's own test tolerances (see docs/explanation/lessons/http-api.md#reference-tolerances).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from poolserve.check import probes
from poolserve.check.expectations import Expectations

EMBED_MIN_COSINE = 0.999
"""Reference check: per-text cosine to sentence-transformers (vLLM's tests use 0.99 at fp16)."""
SCORE_TOL = 1e-2
"""Reference check: |served - expected| <= SCORE_TOL * max(1, |expected|) (vLLM: rtol 1e-2 at fp16)."""
NORM_TOL = 1e-2
BATCH_MIN_COSINE = 0.999
"""A vector must not change when it is sent in a batch instead of alone."""


def l2norm(v: Sequence[float]) -> float:
    """Euclidean norm."""
    return math.sqrt(math.fsum(x * x for x in v))


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity (0 when either vector is zero)."""
    na, nb = l2norm(a), l2norm(b)
    if na == 0 or nb == 0:
        return 0.0
    return math.fsum(x * y for x, y in zip(a, b, strict=True)) / (na * nb)


def finite(values: Sequence[float]) -> bool:
    """True when no value is NaN or infinite."""
    return all(math.isfinite(x) for x in values)


def vector_problems(vectors: Sequence[Sequence[float]], expect: Expectations) -> list[str]:
    """What is wrong with served vectors (dimension, NaN/inf, norm); empty when fine."""
    problems: list[str] = []
    dims = {len(v) for v in vectors}
    if len(dims) > 1:
        problems.append(f"vectors differ in length: {sorted(dims)}")
    elif expect.dimensions is not None and dims and dims != {expect.dimensions}:
        problems.append(f"{dims.pop()} dims, expected {expect.dimensions}")
    if not all(finite(v) for v in vectors):
        problems.append("non-finite values (NaN/inf)")
    elif expect.normalized:
        off = [round(l2norm(v), 4) for v in vectors if abs(l2norm(v) - 1.0) > NORM_TOL]
        if off:
            problems.append(f"norm {off[0]} where the model normalizes to 1")
    if any(l2norm(v) == 0 for v in vectors):
        problems.append("all-zero vector")
    return problems


def compare_embeddings(served: Sequence[Sequence[float]], expected: Sequence[Sequence[float]],
                       min_cosine: float = EMBED_MIN_COSINE) -> tuple[bool, str]:
    """Per-text cosine between served and reference vectors: passed, detail."""
    if len(served) != len(expected):
        return False, f"{len(served)} vectors, reference has {len(expected)}"
    if any(len(a) != len(b) for a, b in zip(served, expected, strict=True)):
        return False, f"{len(served[0])} dims, reference has {len(expected[0])}"
    cos = [cosine(a, b) for a, b in zip(served, expected, strict=True)]
    worst = min(range(len(cos)), key=cos.__getitem__)
    ok = cos[worst] >= min_cosine
    detail = f"min cosine {cos[worst]:.6f} over {len(cos)} texts ({'>=' if ok else '<'} {min_cosine})"
    if not ok:
        detail += f"; text {worst}: {probes.EMBED_TEXTS[worst][:40]!r}" if worst < len(probes.EMBED_TEXTS) else ""
    return ok, detail


def compare_scores(served: Sequence[float], expected: Sequence[float], tol: float = SCORE_TOL) -> tuple[bool, str]:
    """|served - expected| <= tol * max(1, |expected|) for every document: passed, detail."""
    if len(served) != len(expected):
        return False, f"{len(served)} scores, reference has {len(expected)}"
    diffs = [abs(a - b) / max(1.0, abs(b)) for a, b in zip(served, expected, strict=True)]
    worst = max(range(len(diffs)), key=diffs.__getitem__)
    ok = diffs[worst] <= tol
    detail = (f"max diff {diffs[worst]:.2e} over {len(diffs)} docs ({'<=' if ok else '>'} {tol:g}); "
              f"doc {worst}: served {served[worst]:.4f}, reference {expected[worst]:.4f}")
    return ok, detail
