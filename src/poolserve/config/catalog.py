"""Built-in catalog of known-good vLLM pooling models.

Each entry records what a model needs to serve correctly on vLLM: its task, the real maximum
sequence length vLLM derives (``max_seq_length`` from the Sentence-Transformers config wins over
``max_position_embeddings``), the embedding size, the flags it requires and the first vLLM
release that serves it. A config model whose ``model_id`` is in the catalog takes its defaults
from here. Sources: vLLM's pooling docs and model registry (docs/models/pooling_models/*.md,
tests/models/registry.py) and the models' Hugging Face cards; see LESSONS_LEARNED.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from poolserve.config.schema import Task
from poolserve.config.versions import Version


@dataclass(frozen=True)
class Shape:
    """The model's size, from its ``config.json`` and parameter count on Hugging Face (for sizing)."""

    params: int
    """Parameters, all tensors (what vLLM loads; "Model loading took X GiB" = params x dtype bytes).

    BERT/XLM-RoBERTa counts are computed from config.json (embeddings + layers + pooler/classifier) and
    equal the checkpoints' tensor sizes; ModernBERT, NomicBERT and Qwen3 counts are the model cards'."""
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    gated_mlp: bool = False
    """SwiGLU/GeGLU feed-forward: its first projection is 2 x ``intermediate`` wide."""
    causal: bool = False
    """A decoder (LAST pooling): vLLM gives it a KV cache. Encoder-only models get none."""


@dataclass(frozen=True)
class CatalogEntry:
    """What vLLM needs to serve one pooling model."""

    model_id: str
    task: Task
    architecture: str
    max_model_len: int
    """The longest input vLLM accepts for this model (longer values fail at startup)."""
    dimensions: int | None = None
    """Embedding size (embedding models only)."""
    languages: str | None = None
    """The languages the model was trained for, from its model card: ``English``, or ``multilingual`` with the
    card's count (for choosing a model; vLLM does not check it)."""
    pooling: str | None = None
    min_vllm: Version = (0, 6, 4)
    trust_remote_code: bool = False
    hf_overrides: dict[str, Any] | None = None
    convert: str | None = None
    score_output: Literal["logits", "sigmoid"] | None = None
    """For rerankers: whether /score returns raw logits or probabilities in 0..1."""
    query_prefix: str | None = None
    document_prefix: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    shape: Shape | None = None

    @property
    def required_flags(self) -> list[str]:
        """The vLLM flags this model needs beyond ``--model`` (rendered with ``=``)."""
        import json

        flags: list[str] = []
        if self.trust_remote_code:
            flags.append("--trust-remote-code")
        if self.convert:
            flags.append(f"--convert={self.convert}")
        if self.hf_overrides:
            flags.append("--hf-overrides=" + json.dumps(self.hf_overrides, separators=(",", ":")))
        return flags


_ENTRIES: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        model_id="sentence-transformers/all-MiniLM-L6-v2",
        task="embed",
        architecture="BertModel",
        languages="English",
        max_model_len=256,
        dimensions=384,
        pooling="MEAN (+L2 normalize), from the Sentence-Transformers config",
        notes=(
            "config.json says 512 positions, but sentence_bert_config.json max_seq_length=256 wins: "
            "--max-model-len=512 fails at startup with 'User-specified max_model_len (512) is greater "
            "than the derived max_model_len'.",
        ),
        shape=Shape(params=22_713_216, layers=6, hidden=384, intermediate=1536, heads=12, kv_heads=12, head_dim=32),
    ),
    CatalogEntry(
        model_id="ibm-granite/granite-embedding-278m-multilingual",
        task="embed",
        architecture="XLMRobertaModel",
        languages="multilingual (12 languages)",
        max_model_len=512,
        dimensions=768,
        pooling="CLS, from the Sentence-Transformers config",
        shape=Shape(params=278_043_648, layers=12, hidden=768, intermediate=3072, heads=12, kv_heads=12,
                    head_dim=64),
    ),
    CatalogEntry(
        model_id="ibm-granite/granite-embedding-english-r2",
        task="embed",
        architecture="ModernBertModel",
        languages="English",
        max_model_len=8192,
        dimensions=768,
        pooling="CLS, from the Sentence-Transformers config",
        min_vllm=(0, 9, 0),
        shape=Shape(params=149_000_000, layers=22, hidden=768, intermediate=1152, heads=12, kv_heads=12,
                    head_dim=64, gated_mlp=True),
    ),
    CatalogEntry(
        model_id="cross-encoder/ms-marco-MiniLM-L12-v2",
        task="score",
        architecture="BertForSequenceClassification",
        languages="English",
        max_model_len=512,
        score_output="logits",
        min_vllm=(0, 6, 5),
        notes=(
            "sbert_ce_default_activation_function=Identity: /score and /rerank return raw logits "
            "(unbounded), exactly like sentence-transformers CrossEncoder.predict.",
        ),
        shape=Shape(params=33_360_385, layers=12, hidden=384, intermediate=1536, heads=12, kv_heads=12,
                    head_dim=32),
    ),
    CatalogEntry(
        model_id="BAAI/bge-m3",
        task="embed",
        architecture="XLMRobertaModel",
        languages="multilingual (100+ languages)",
        max_model_len=8192,
        dimensions=1024,
        pooling="CLS (+normalize)",
        notes=(
            "Dense embeddings only. Sparse/ColBERT outputs need "
            "--hf-overrides '{\"architectures\":[\"BgeM3EmbeddingModel\"]}' (vLLM >= 0.15) on /pooling.",
        ),
        shape=Shape(params=567_754_752, layers=24, hidden=1024, intermediate=4096, heads=16, kv_heads=16,
                    head_dim=64),
    ),
    CatalogEntry(
        model_id="BAAI/bge-reranker-v2-m3",
        task="score",
        architecture="XLMRobertaForSequenceClassification",
        languages="multilingual (built on bge-m3)",
        max_model_len=8192,
        score_output="sigmoid",
        min_vllm=(0, 6, 5),
        shape=Shape(params=567_755_777, layers=24, hidden=1024, intermediate=4096, heads=16, kv_heads=16,
                    head_dim=64),
    ),
    CatalogEntry(
        model_id="intfloat/e5-base-v2",
        task="embed",
        architecture="BertModel",
        languages="English",
        max_model_len=512,
        dimensions=768,
        pooling="MEAN",
        query_prefix="query: ",
        document_prefix="passage: ",
        shape=Shape(params=109_482_240, layers=12, hidden=768, intermediate=3072, heads=12, kv_heads=12,
                    head_dim=64),
    ),
    CatalogEntry(
        model_id="intfloat/e5-large-v2",
        task="embed",
        architecture="BertModel",
        languages="English",
        max_model_len=512,
        dimensions=1024,
        pooling="MEAN",
        query_prefix="query: ",
        document_prefix="passage: ",
        shape=Shape(params=335_141_888, layers=24, hidden=1024, intermediate=4096, heads=16, kv_heads=16,
                    head_dim=64),
    ),
    CatalogEntry(
        model_id="Qwen/Qwen3-Embedding-0.6B",
        task="embed",
        architecture="Qwen3ForCausalLM (Sentence-Transformers config)",
        languages="multilingual (100+ languages)",
        max_model_len=32768,
        dimensions=1024,
        pooling="LAST (+normalize)",
        min_vllm=(0, 10, 1),
        query_prefix="Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:",
        notes=(
            "Resolved to the pooling runner automatically from its modules.json since vLLM 0.10.1.",
            "Prefix caching and chunked prefill are on for this causal model.",
        ),
        shape=Shape(params=595_776_512, layers=28, hidden=1024, intermediate=3072, heads=16, kv_heads=8,
                    head_dim=128, gated_mlp=True, causal=True),
    ),
    CatalogEntry(
        model_id="Qwen/Qwen3-Reranker-0.6B",
        task="score",
        architecture="Qwen3ForCausalLM -> Qwen3ForSequenceClassification (hf-overrides)",
        languages="multilingual (100+ languages)",
        max_model_len=32768,
        score_output="sigmoid",
        min_vllm=(0, 9, 2),
        hf_overrides={
            "architectures": ["Qwen3ForSequenceClassification"],
            "classifier_from_token": ["no", "yes"],
            "is_original_qwen3_reranker": True,
        },
        notes=(
            "vLLM >= 0.14 also wants --chat-template with qwen3_reranker.jinja from vLLM's "
            "examples/pooling/score/template/ (mount it into the container); before 0.14 clients "
            "must build the prompt themselves.",
        ),
        shape=Shape(params=595_776_512, layers=28, hidden=1024, intermediate=3072, heads=16, kv_heads=8,
                    head_dim=128, gated_mlp=True, causal=True),
    ),
    CatalogEntry(
        model_id="nomic-ai/nomic-embed-text-v1.5",
        task="embed",
        architecture="NomicBertModel",
        languages="English",
        max_model_len=8192,
        dimensions=768,
        pooling="MEAN",
        min_vllm=(0, 8, 5),
        trust_remote_code=True,
        query_prefix="search_query: ",
        document_prefix="search_document: ",
        notes=("Matryoshka model; clients add the task prefixes.",),
        shape=Shape(params=137_000_000, layers=12, hidden=768, intermediate=3072, heads=12, kv_heads=12,
                    head_dim=64, gated_mlp=True),
    ),
)

CATALOG: dict[str, CatalogEntry] = {e.model_id: e for e in _ENTRIES}


def lookup(model_id: str) -> CatalogEntry | None:
    """Return the catalog entry for a Hugging Face model id (case-insensitive), or None."""
    if model_id in CATALOG:
        return CATALOG[model_id]
    lowered = model_id.lower()
    for key, entry in CATALOG.items():
        if key.lower() == lowered:
            return entry
    return None
