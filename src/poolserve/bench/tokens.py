"""Token counts from the model's own tokenizer (edge: transformers), never from the server's ``usage``.

Servers count differently: vLLM counts the tokens the model sees ([CLS] and [SEP] included; a rerank
pair as ``[CLS] query [SEP] document [SEP]``), while Infinity 0.0.78 counts *characters* unless it was
started with ``--lengths-via-tokenize`` (then tokens without the special ones; a rerank pair as
``query + document`` glued together). A tokens/s column taken from ``usage`` therefore compares
nothing across servers. ``poolserve bench`` counts each request's tokens itself with the tokenizer of
the model (what vLLM's own count is), and keeps the server's count beside it only as a check.

:func:`load_counter` loads the tokenizer from a local directory or the local HF cache only (no download);
when it cannot, it returns why, and the report says so instead of falling back to the server's count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poolserve.bench.baseline import resolve_model_path


@dataclass(frozen=True)
class TokenCounter:
    """Counts tokens with one model's tokenizer."""

    tokenizer: Any
    source: str
    """What counted: the model id and where its tokenizer was loaded from."""

    def __call__(self, texts: Sequence[str], query: str | None = None) -> int:
        """Tokens of ``texts`` (or of each (``query``, text) pair), special tokens included."""
        if not texts:
            return 0
        if query is None:
            enc = self.tokenizer(list(texts), add_special_tokens=True, truncation=False)
        else:
            enc = self.tokenizer([query] * len(texts), list(texts), add_special_tokens=True, truncation=False)
        return sum(len(ids) for ids in enc["input_ids"])


@dataclass(frozen=True)
class NoCounter:
    """Why no tokenizer could be loaded (the report shows it)."""

    reason: str


def load_counter(model: str | None, hf_homes: Sequence[Path] = ()) -> TokenCounter | NoCounter:
    """The tokenizer of ``model`` (a directory, or an id found in ``hf_homes`` or the default HF cache).

    Nothing is downloaded: a tokenizer that is not on this machine gives a :class:`NoCounter`.
    """
    if not model:
        return NoCounter("no model to take the tokenizer from: give --tokenizer DIR_OR_ID (or --model)")
    try:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError:
        return NoCounter("transformers is not installed (pip install -e '.[reference]' in the poolserve checkout)")
    path = resolve_model_path(model, hf_homes)
    # Quiet "Token indices sequence length is longer than ..." for long inputs: counting is all we do.
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return NoCounter(f"cannot load the tokenizer of {model!r} from this machine ({first[:160]}); "
                         "give --tokenizer DIR")
    where = "" if path == model else f" ({path})"
    return TokenCounter(tok, f"{type(tok).__name__} of {model}{where}")
