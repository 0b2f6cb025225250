"""Fixed probe inputs for ``poolserve test`` and ``bench`` (pure data).

Small, deterministic and language-neutral enough for any English embedding model; the rerank
probe has one clearly relevant document and clearly irrelevant ones.
"""

from __future__ import annotations

EMBED_TEXTS: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "A fast auburn fox leaps above a sleepy hound.",
    "Kubernetes schedules containers onto nodes in a cluster.",
    "Paris is the capital and most populous city of France.",
)
"""Texts 0 and 1 are paraphrases; 2 and 3 are unrelated to them."""

RERANK_QUERY = "What is the capital of France?"
RERANK_RELEVANT = "Paris is the capital and most populous city of France."
RERANK_IRRELEVANT: tuple[str, ...] = (
    "The mitochondria is the powerhouse of the cell.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The stock market closed higher on Tuesday after a volatile session.",
)
RERANK_DOCUMENTS: tuple[str, ...] = (RERANK_IRRELEVANT[0], RERANK_RELEVANT, *RERANK_IRRELEVANT[1:])
"""The relevant document sits at index 1, so a server that echoes input order fails the check."""
RERANK_RELEVANT_INDEX = 1

# More (query, relevant, irrelevant) triples: used to give test cross-encoders a trained head.
TRAINING_TRIPLES: tuple[tuple[str, str, str], ...] = (
    (RERANK_QUERY, RERANK_RELEVANT, RERANK_IRRELEVANT[0]),
    (RERANK_QUERY, RERANK_RELEVANT, RERANK_IRRELEVANT[1]),
    (RERANK_QUERY, RERANK_RELEVANT, RERANK_IRRELEVANT[2]),
    ("How do plants make energy?", RERANK_IRRELEVANT[1], RERANK_IRRELEVANT[2]),
    ("Which organelle produces energy in cells?", RERANK_IRRELEVANT[0], RERANK_RELEVANT),
    ("How did stocks do on Tuesday?", RERANK_IRRELEVANT[2], RERANK_IRRELEVANT[0]),
    ("What does Kubernetes do?", "Kubernetes schedules containers onto nodes in a cluster.", RERANK_RELEVANT),
    ("Who jumps over the lazy dog?", "The quick brown fox jumps over the lazy dog.", RERANK_IRRELEVANT[1]),
    ("Where is the Eiffel Tower?", "The Eiffel Tower is in Paris, France.", RERANK_IRRELEVANT[0]),
    ("What is the largest planet?", "Jupiter is the largest planet in the Solar System.", RERANK_IRRELEVANT[2]),
)


def long_text(max_model_len: int) -> str:
    """A text well over ``max_model_len`` tokens for any tokenizer ("hello" is one token in each)."""
    return " ".join(["hello"] * (max_model_len + max(16, max_model_len // 4)))


# -- robustness (``poolserve test --robustness``) ---------------------------------------------------

ROBUST_BATCH = 2048
"""Texts in one request: far more than vLLM batches at once, well under its request-size limits."""

NON_ASCII_TEXTS: tuple[str, ...] = (
    "Ünïcödé façade, naïve café, smørrebrød.",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "القاهرة هي عاصمة مصر.",
    "emoji 🚀🔥👍🏽 and a family 👨‍👩‍👧‍👦",
    "zero\u200bwidth\u200dspace, combining e\u0301 and a BOM \ufeff.",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 and \U0001f9ec astral plane",
)
"""Scripts, emoji with ZWJ sequences, combining marks, invisible and astral-plane characters."""


def long_token(chars: int) -> str:
    """One whitespace-free 'word' of ``chars`` characters (like a base64 blob or a minified URL)."""
    unit = "aB3xQz9Kp0"
    return (unit * (chars // len(unit) + 1))[:chars]


def batch_texts(n: int = ROBUST_BATCH) -> list[str]:
    """``n`` distinct short texts; the first probe text at both ends, so a reordered batch shows."""
    texts = [f"Document number {i} of the robustness batch." for i in range(n)]
    texts[0] = texts[-1] = EMBED_TEXTS[0]
    return texts
