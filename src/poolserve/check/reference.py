"""Reference outputs for ``poolserve test --reference``: the same model, run in-process.

Embeddings come from ``sentence_transformers.SentenceTransformer`` (its module pipeline: pooling,
normalize), cross-encoder scores from ``CrossEncoder`` raw logits followed by the activation
vLLM picks from the model config (:func:`cross_encoder_activation`, vLLM's ``get_act_fn``), so a
model with ``sbert_ce_default_activation_function=Identity`` (the ms-marco family) is compared
on raw logits and one without on sigmoid scores, exactly as vLLM serves them.

sentence-transformers is the optional extra ``reference``; without it :func:`load_reference`
raises a one-line :class:`ReferenceUnavailable` naming ``pip install -e '.[reference]'`` (poolserve
is installed from its checkout, not from PyPI).
The model is found as a directory, in a Hugging Face cache (:func:`poolserve.vllm.hfcache.snapshot_path`),
or, last, handed to sentence-transformers as a hub id.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from poolserve.config.schema import Task
from poolserve.errors import ReferenceUnavailable
from poolserve.vllm import hfcache

INSTALL_HINT = "pip install -e '.[reference]' in the poolserve checkout"
Activation = Literal["identity", "sigmoid", "softmax"]


def cross_encoder_activation(config: Mapping[str, Any]) -> Activation:
    """The activation vLLM applies to a cross-encoder's logits, from its ``config.json`` (pure).

    Same order as vLLM 0.33 ``layers/pooler/activations.py get_act_fn``: HF ``problem_type``, then
    ``sentence_transformers.activation_fn``, then ``sbert_ce_default_activation_function``, else
    sigmoid for one label (softmax for more).
    """
    problem = config.get("problem_type")
    if problem == "regression":
        return "identity"
    if problem == "multi_label_classification":
        return "sigmoid"
    num_labels = int(config.get("num_labels") or len(config.get("id2label") or {}) or 1)
    if problem == "single_label_classification":
        return "softmax" if num_labels > 1 else "sigmoid"
    st = config.get("sentence_transformers")
    name = st.get("activation_fn") if isinstance(st, Mapping) else None
    name = name or config.get("sbert_ce_default_activation_function")
    if isinstance(name, str):
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "Identity":
            return "identity"
        if leaf in ("Sigmoid", "Softmax"):
            return "sigmoid" if num_labels == 1 else "softmax"
    return "sigmoid" if num_labels == 1 else "softmax"


def apply_activation(logits: Sequence[float], activation: Activation) -> list[float]:
    """Apply ``activation`` to one-label logits (softmax of a single logit is 1, as in vLLM)."""
    if activation == "identity":
        return [float(x) for x in logits]
    if activation == "softmax":
        return [1.0 for _ in logits]
    return [1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x)) for x in logits]


def default_hf_homes(extra: Sequence[Path] = (), env: Mapping[str, str] | None = None) -> list[Path]:
    """Caches to look in: ``extra`` (the local target's cache), ``$HF_HOME``, then the default location."""
    e = os.environ if env is None else env
    homes = list(extra)
    if e.get("HF_HOME"):
        homes.append(Path(e["HF_HOME"]))
    xdg = Path(e["XDG_CACHE_HOME"]) if e.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    homes.append(xdg / "huggingface")
    out: list[Path] = []
    for h in homes:
        if h not in out:
            out.append(h)
    return out


def locate(model: str | Path, hf_homes: Sequence[Path] = ()) -> str:
    """A directory for ``model``: itself if it is one, its snapshot in a cache, else the hub id as is.

    Raises:
        ReferenceUnavailable: ``model`` looks like a path but is no directory.
    """
    p = Path(model).expanduser()
    if p.is_dir():
        return str(p)
    text = str(model)
    if text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise ReferenceUnavailable(f"reference model {text}: no such directory")
    for home in hf_homes:
        snap = hfcache.snapshot_path(home, text)
        if snap is not None:
            return str(snap)
    return text


class SentenceTransformersReference:
    """Expected embeddings or scores from sentence-transformers, on CPU."""

    def __init__(self, source: str, task: Task, model: Any, activation: Activation | None = None) -> None:
        self.source = source
        self.task = task
        self._model = model
        self.activation = activation

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embeddings as the served model should return them."""
        vectors = self._model.encode(list(texts), convert_to_numpy=True, show_progress_bar=False)
        return [[float(x) for x in v] for v in vectors]

    def score(self, query: str, docs: Sequence[str]) -> list[float]:
        """Cross-encoder scores after vLLM's activation."""
        import torch

        logits = self._model.predict([(query, d) for d in docs], activation_fn=torch.nn.Identity(),
                                     convert_to_numpy=True, show_progress_bar=False)
        return apply_activation([float(x) for x in logits.reshape(-1)], self.activation or "sigmoid")


def _config(path: str, model: Any) -> dict[str, Any]:
    cfg_file = Path(path) / "config.json"
    if cfg_file.is_file():
        data = json.loads(cfg_file.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    return dict(model.model.config.to_dict())


def load_reference(model: str | Path, task: Task, hf_homes: Sequence[Path] = ()) -> SentenceTransformersReference:
    """Load ``model`` (directory, cached id or hub id) with sentence-transformers for ``task``.

    Raises:
        ReferenceUnavailable: sentence-transformers is not installed, or the model cannot be loaded.
    """
    try:
        import sentence_transformers
    except ImportError:
        raise ReferenceUnavailable(f"--reference needs sentence-transformers, which is not installed: "
                                   f"{INSTALL_HINT}") from None
    path = locate(model, hf_homes)
    try:
        if task == "embed":
            st = sentence_transformers.SentenceTransformer(path, device="cpu")
            return SentenceTransformersReference(path, task, st)
        ce = sentence_transformers.CrossEncoder(path, device="cpu")
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ReferenceUnavailable(f"cannot load reference model {path}: {first} "
                                   "(pass --reference-model with a local directory)") from err
    return SentenceTransformersReference(path, task, ce, cross_encoder_activation(_config(path, ce)))
