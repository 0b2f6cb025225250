"""Direct in-process inference for ``poolserve bench --baseline sentence-transformers`` (edge: torch).

The baseline encodes the same texts the benchmark sends, at the same batch sizes, with
sentence-transformers in this process: no HTTP, no server, no scheduler. The report then shows the
serving stack's texts/s as a ratio to it. Embedding models use ``SentenceTransformer.encode``,
rerankers ``CrossEncoder.predict`` on (query, document) pairs. Needs the optional extra
``reference`` (``pip install -e '.[reference]'`` in the poolserve checkout).

Each batch size runs one warm-up batch, then whole batches until ``min_texts`` texts were encoded
and at least ``min_time_s`` passed, or ``max_time_s`` passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from poolserve.bench.metrics import BaselineResult
from poolserve.bench.workload import BaselineFn
from poolserve.errors import SpecError
from poolserve.vllm.hfcache import snapshot_path

LIBRARY = "sentence-transformers"
BASELINES = (LIBRARY,)
_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16", "half": "float16"}


def resolve_model_path(model_id: str, hf_homes: Sequence[Path] = ()) -> str:
    """A local snapshot of ``model_id`` in one of ``hf_homes`` (hub layout), else ``model_id`` itself.

    Passing the directory keeps sentence-transformers offline when poolserve's own cache holds the model.
    """
    p = Path(model_id)
    if p.is_dir():
        return str(p)
    for home in hf_homes:
        snap = snapshot_path(home, model_id)
        if snap is not None:
            return str(snap)
    return model_id


def measure(encode: Callable[[Sequence[Any]], object], items: Sequence[Any], batch_size: int, *,
            min_texts: int, min_time_s: float, max_time_s: float,
            clock: Callable[[], float] = time.perf_counter, dtype: str | None = None) -> BaselineResult:
    """Time ``encode`` over whole batches of ``items`` (cycling) after one warm-up batch.

    Args:
        encode: encodes one batch (``items[i:i+batch_size]``).
        items: texts, or (query, document) pairs.
        batch_size: items per call.
        min_texts: encode at least this many items ...
        min_time_s: ... and for at least this long ...
        max_time_s: ... but stop after this long.
        clock: monotonic seconds.
        dtype: recorded in the result.

    Returns:
        Texts per second over the measured batches.
    """
    if not items:
        raise SpecError("baseline: no texts to encode")

    def batch(k: int) -> list[Any]:
        return [items[(k * batch_size + j) % len(items)] for j in range(batch_size)]

    encode(batch(0))
    done = 0
    k = 1
    t0 = clock()
    while True:
        encode(batch(k))
        k += 1
        done += batch_size
        elapsed = clock() - t0
        if elapsed >= max_time_s or (done >= min_texts and elapsed >= min_time_s):
            break
    return BaselineResult(library=LIBRARY, batch_size=batch_size, texts=done, duration_s=elapsed,
                          texts_per_s=done / elapsed if elapsed > 0 else 0.0, dtype=dtype)


def sentence_transformers_baseline(model: str, *, task: str = "embed", dtype: str = "float32",
                                   min_texts: int = 64, min_time_s: float = 5.0, max_time_s: float = 60.0,
                                   threads: int | None = None) -> BaselineFn:
    """A :data:`~poolserve.bench.workload.BaselineFn` running sentence-transformers in this process.

    Args:
        model: a model directory or a hub id (resolved offline through ``HF_HOME`` when set so).
        task: ``embed`` (SentenceTransformer) or ``score`` (CrossEncoder).
        dtype: ``float32``, ``bfloat16`` or ``float16`` (the model is cast after loading).
        min_texts: texts to encode at least, per batch size.
        min_time_s: seconds to run at least, per batch size.
        max_time_s: seconds after which a batch size stops.
        threads: torch intra-op threads (None: torch's default, one per core).

    Raises:
        SpecError: when sentence-transformers is not installed, the dtype is unknown or the model
            cannot be loaded.
    """
    torch_dtype = _DTYPES.get(dtype)
    if torch_dtype is None:
        raise SpecError(f"baseline: unknown dtype {dtype!r} (use float32, bfloat16 or float16)")
    try:
        import torch
        from sentence_transformers import CrossEncoder, SentenceTransformer
    except ImportError:
        raise SpecError("--baseline sentence-transformers needs the 'reference' extra: "
                        "pip install -e '.[reference]' in the poolserve checkout") from None
    if threads:
        torch.set_num_threads(threads)
    try:
        st: Any = (SentenceTransformer(model, device="cpu") if task == "embed"
                   else CrossEncoder(model, device="cpu"))
    except (OSError, ValueError) as err:
        raise SpecError(f"baseline: cannot load {model!r} with sentence-transformers: {err}") from None
    st.to(getattr(torch, torch_dtype))

    def run(texts: Sequence[str], batch_size: int, query: str | None) -> BaselineResult:
        with torch.inference_mode():
            if task == "embed":
                return measure(lambda b: st.encode(list(b), batch_size=batch_size, convert_to_numpy=True),
                               texts, batch_size, min_texts=min_texts, min_time_s=min_time_s,
                               max_time_s=max_time_s, dtype=torch_dtype)
            pairs = [(query or "", t) for t in texts]
            return measure(lambda b: st.predict(list(b), batch_size=batch_size, convert_to_numpy=True),
                           pairs, batch_size, min_texts=min_texts, min_time_s=min_time_s,
                           max_time_s=max_time_s, dtype=torch_dtype)

    return run
