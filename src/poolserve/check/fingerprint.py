"""Deployment fingerprints (pure): the probe set's outputs plus what the deployment ran with, saved and read.

A fingerprint holds the outputs of one deployment for the fixed probe set
(:mod:`poolserve.check.fingerprint_probes`): one vector per probe for an embedding model, one score per
query-document pair for a reranker, and the :class:`~poolserve.vllm.facts.ServingFacts` that decide them.
:func:`take` makes one through a client (anything shaped like :class:`poolserve.check.client.PoolClient`);
:func:`to_json` / :func:`from_json` store it. Vectors are float32, little-endian, base64 in the JSON
(64 probes x 384 dims is 131 KB); scores are plain JSON numbers. Comparing two is
:mod:`poolserve.check.fingerprint_compare`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from poolserve.check import fingerprint_probes as probes
from poolserve.config.schema import Task
from poolserve.errors import SpecError
from poolserve.vllm import api as vllm_api
from poolserve.vllm.facts import ServingFacts

KIND = "poolserve-fingerprint"
FORMAT_VERSION = 1
EMBED_BATCH = 8
"""Probes per ``/v1/embeddings`` request: fixed, so every fingerprint batches the same texts together."""
DEFAULT_TRUNCATE = -1
"""``truncate_prompt_tokens`` sent with the probes: -1 cuts the long probes at the model's ``max_model_len``
(instead of a 400), so a ``max_model_len`` change moves them as it would move a long document."""


class FingerprintClient(Protocol):
    """The client calls a fingerprint makes (:class:`poolserve.check.client.PoolClient` implements them)."""

    def embed(self, texts: Sequence[str] | str, *, truncate_prompt_tokens: int | None = None
              ) -> vllm_api.Embeddings:
        """``/v1/embeddings``."""
        ...

    def score(self, query: str, docs: Sequence[str], *, path: str = ...) -> vllm_api.Scores:
        """``/score``."""
        ...


def probe_set_sha256() -> str:
    """SHA-256 of the probe set's texts, ids and queries: two fingerprints compare only when theirs are equal."""
    data = {"embed": probes.EMBED_PROBES, "queries": probes.RERANK_QUERIES,
            "documents": [probes.rerank_documents(i) for i in range(len(probes.RERANK_QUERIES))]}
    return hashlib.sha256(json.dumps(data, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Fingerprint:
    """One deployment's probe outputs and the settings that made them."""

    name: str
    """The config model (or the served name, with ``--url``)."""
    task: Task
    facts: ServingFacts
    created: str
    """ISO time, UTC."""
    vectors: tuple[tuple[float, ...], ...] = ()
    """embed: one vector per probe, in :data:`~poolserve.check.fingerprint_probes.EMBED_PROBES` order."""
    scores: tuple[tuple[float, ...], ...] = ()
    """score: per query, one score per document, in :func:`~poolserve.check.fingerprint_probes.rerank_documents`
    order."""
    truncate_prompt_tokens: int | None = DEFAULT_TRUNCATE
    probe_set: str = probes.PROBE_SET
    probe_sha256: str = field(default_factory=probe_set_sha256)

    @property
    def dimensions(self) -> int | None:
        """The vectors' length (None for a reranker)."""
        return len(self.vectors[0]) if self.vectors else None


def take(client: FingerprintClient, *, name: str, task: Task, facts: ServingFacts, created: str,
         truncate_prompt_tokens: int | None = DEFAULT_TRUNCATE) -> Fingerprint:
    """Send the probe set to the served model and return its fingerprint.

    Raises:
        EndpointError: from the client, when a request fails.
    """
    if task == "score":
        scores = []
        for i, (_, query) in enumerate(probes.RERANK_QUERIES):
            docs = [text for _, text in probes.rerank_documents(i)]
            scores.append(tuple(client.score(query, docs).scores))
        return Fingerprint(name=name, task=task, facts=facts, created=created, scores=tuple(scores),
                           truncate_prompt_tokens=None)
    texts = [text for _, text in probes.EMBED_PROBES]
    vectors: list[tuple[float, ...]] = []
    for start in range(0, len(texts), EMBED_BATCH):
        got = client.embed(texts[start:start + EMBED_BATCH], truncate_prompt_tokens=truncate_prompt_tokens)
        vectors.extend(got.vectors)
    return Fingerprint(name=name, task=task, facts=facts, created=created, vectors=tuple(vectors),
                       truncate_prompt_tokens=truncate_prompt_tokens)


# -- JSON ---------------------------------------------------------------------------------------------


def encode_vectors(vectors: Sequence[Sequence[float]]) -> str:
    """float32 little-endian, all vectors one after the other, base64."""
    flat = array("f", (x for v in vectors for x in v))
    if sys.byteorder == "big":
        flat.byteswap()
    return base64.b64encode(flat.tobytes()).decode("ascii")


def decode_vectors(data: str, count: int, dimensions: int) -> tuple[tuple[float, ...], ...]:
    """The inverse of :func:`encode_vectors`.

    Raises:
        ValueError: when the data does not hold ``count`` x ``dimensions`` float32 values.
    """
    flat = array("f")
    flat.frombytes(base64.b64decode(data.encode("ascii"), validate=True))
    if sys.byteorder == "big":
        flat.byteswap()
    if len(flat) != count * dimensions:
        raise ValueError(f"{len(flat)} values, expected {count} x {dimensions}")
    return tuple(tuple(flat[i * dimensions:(i + 1) * dimensions]) for i in range(count))


def to_dict(fp: Fingerprint) -> dict[str, Any]:
    """Plain JSON data (see the module docstring for the encoding)."""
    out: dict[str, Any] = {
        "kind": KIND, "version": FORMAT_VERSION, "name": fp.name, "task": fp.task, "created": fp.created,
        "probe_set": fp.probe_set, "probe_sha256": fp.probe_sha256,
        "truncate_prompt_tokens": fp.truncate_prompt_tokens, "facts": fp.facts.to_dict(),
    }
    if fp.task == "score":
        out["scores"] = [list(s) for s in fp.scores]
    else:
        out["vectors"] = {"dtype": "float32", "byteorder": "little", "count": len(fp.vectors),
                          "dimensions": fp.dimensions, "data": encode_vectors(fp.vectors)}
    return out


def to_json(fp: Fingerprint) -> str:
    """The fingerprint as indented JSON."""
    return json.dumps(to_dict(fp), indent=2, ensure_ascii=False) + "\n"


def _outputs(data: Mapping[str, Any], task: str) -> dict[str, Any]:
    if task == "score":
        scores = tuple(tuple(float(x) for x in row) for row in data["scores"])
        return {"scores": scores}
    v = data["vectors"]
    if v.get("dtype") != "float32" or v.get("byteorder", "little") != "little":
        raise ValueError(f"vectors stored as {v.get('dtype')} {v.get('byteorder')}, expected float32 little")
    return {"vectors": decode_vectors(v["data"], int(v["count"]), int(v["dimensions"]))}


def from_dict(data: Any, source: str = "fingerprint") -> Fingerprint:
    """Rebuild a fingerprint from :func:`to_dict` data.

    Raises:
        SpecError: naming ``source`` when it is not a poolserve fingerprint, comes from a newer poolserve, or
            is damaged.
    """
    if not isinstance(data, Mapping) or data.get("kind") != KIND:
        raise SpecError(f"{source}: not a poolserve fingerprint (save one with `poolserve test NAME "
                        "--fingerprint save FILE`)")
    if data.get("version") != FORMAT_VERSION:
        raise SpecError(f"{source}: fingerprint format {data.get('version')} is not {FORMAT_VERSION}: made by "
                        "another poolserve version")
    if data.get("probe_set") != probes.PROBE_SET:
        raise SpecError(f"{source}: made with probe set {data.get('probe_set')!r}; this poolserve has "
                        f"{probes.PROBE_SET!r}: save a new one with the same poolserve version on both sides")
    try:
        task = data["task"]
        if task not in ("embed", "score"):
            raise ValueError(f"task {task!r}")
        fp = Fingerprint(name=str(data["name"]), task=task, facts=ServingFacts.from_dict(data.get("facts")),
                         created=str(data.get("created", "")),
                         truncate_prompt_tokens=data.get("truncate_prompt_tokens"),
                         probe_set=data["probe_set"], probe_sha256=str(data.get("probe_sha256", "")),
                         **_outputs(data, task))
    except (KeyError, TypeError, ValueError) as err:
        raise SpecError(f"{source}: damaged fingerprint: {err}") from None
    if fp.probe_sha256 != probe_set_sha256():
        raise SpecError(f"{source}: its probe texts differ from {probes.PROBE_SET}'s (sha256 mismatch)")
    expected = len(probes.RERANK_QUERIES) if fp.task == "score" else len(probes.EMBED_PROBES)
    got = len(fp.scores) if fp.task == "score" else len(fp.vectors)
    if got != expected:
        raise SpecError(f"{source}: damaged fingerprint: {got} outputs, the probe set has {expected}")
    return fp


def from_json(text: str, source: str = "fingerprint") -> Fingerprint:
    """Parse :func:`to_json` output.

    Raises:
        SpecError: naming ``source`` when the text is not JSON or not a fingerprint.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SpecError(f"{source}: not JSON: {err}") from None
    return from_dict(data, source)


def with_facts(fp: Fingerprint, facts: ServingFacts) -> Fingerprint:
    """The same outputs with other facts."""
    return replace(fp, facts=facts)
