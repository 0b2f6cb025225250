"""`helm test` for one model: embeddings of the right dimension, or a reranking that puts the relevant document first.

Runs with the Python of the vLLM image (standard library only), in a hook Pod the chart renders
(templates/tests/test-models.yaml). Settings come from the environment:

  POOLSERVE_MODEL       the InferenceService name (vLLM serves the model under it too)
  POOLSERVE_TASK        embed or score
  POOLSERVE_URLS        base URLs to try, in order, separated by spaces (the first whose /health answers is used)
  POOLSERVE_DIMENSIONS  the embedding size the catalog knows (optional)
  POOLSERVE_TOKEN_FILE  a bearer token to send (token auth; optional)
  POOLSERVE_TIMEOUT_S   per request (default 60)

Exit 0 and one "ok:" line when the model answers correctly; otherwise exit 1 with what was wrong.
The probe texts are poolserve's own (src/poolserve/probes.py; a test keeps them equal).
"""

import json
import math
import os
import ssl
import sys
import urllib.error
import urllib.request

EMBED_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "A fast auburn fox leaps above a sleepy hound.",
    "Kubernetes schedules containers onto nodes in a cluster.",
    "Paris is the capital and most populous city of France.",
)
RERANK_QUERY = "What is the capital of France?"
RERANK_DOCUMENTS = (
    "The mitochondria is the powerhouse of the cell.",
    "Paris is the capital and most populous city of France.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The stock market closed higher on Tuesday after a volatile session.",
)
RERANK_RELEVANT_INDEX = 1  # not 0: a server that echoes the input order fails
# OpenShift puts its service CA next to the service-account token: it signs kube-rbac-proxy's certificate.
SERVICE_CA = "/var/run/secrets/kubernetes.io/serviceaccount/service-ca.crt"


class Failed(Exception):
    """The model did not answer as it should."""


def _context():
    """TLS context trusting the service CA (OpenShift) or POOLSERVE_CA_FILE, else the system's."""
    ca = os.environ.get("POOLSERVE_CA_FILE") or (SERVICE_CA if os.path.exists(SERVICE_CA) else None)
    if ca:
        return ssl.create_default_context(cafile=ca)
    return ssl.create_default_context()


def request(url, body=None, token=None, timeout_s=60.0):
    """GET (or POST ``body`` as JSON) and return (status, parsed JSON or text)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    req.add_header("Accept", "application/json")
    if data:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    ctx = _context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(req, timeout=timeout_s, context=ctx) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text


def find_base(urls, token):
    """The first URL whose /health answers 200."""
    tried = []
    for url in urls:
        try:
            status, _ = request(url.rstrip("/") + "/health", token=token, timeout_s=10)
        except (OSError, ValueError) as err:
            tried.append(f"{url}: {err}")
            continue
        if status == 200:
            return url.rstrip("/")
        tried.append(f"{url}: /health answered {status}")
    raise Failed("no URL answered /health: " + "; ".join(tried))


def cosine(a, b):
    """Cosine similarity of two vectors."""
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b)) / (na * nb)  # noqa: B905 - zip(strict=) needs Python 3.10


def check_embeddings(base, model, token, dimensions, timeout_s):
    """Embed the probe texts: one vector each, all of the model's size, finite, paraphrases closest."""
    status, body = request(base + "/v1/embeddings", {"model": model, "input": list(EMBED_TEXTS)}, token, timeout_s)
    if status != 200:
        raise Failed(f"POST /v1/embeddings answered {status}: {body}")
    data = sorted(body["data"], key=lambda d: d["index"])
    vectors = [d["embedding"] for d in data]
    if len(vectors) != len(EMBED_TEXTS):
        raise Failed(f"{len(EMBED_TEXTS)} texts sent, {len(vectors)} embeddings returned")
    sizes = {len(v) for v in vectors}
    if len(sizes) != 1:
        raise Failed(f"embeddings of different sizes: {sorted(sizes)}")
    (size,) = sizes
    if dimensions and size != dimensions:
        raise Failed(f"embeddings have {size} dimensions, the model has {dimensions}")
    if not all(math.isfinite(x) for v in vectors for x in v) or not any(any(v) for v in vectors):
        raise Failed("embeddings contain NaN, infinity or only zeros")
    paraphrase, unrelated = cosine(vectors[0], vectors[1]), cosine(vectors[0], vectors[2])
    if paraphrase <= unrelated:
        raise Failed(f"a paraphrase is less similar ({paraphrase:.3f}) than an unrelated text ({unrelated:.3f})")
    return f"{len(vectors)} embeddings of {size} dimensions; paraphrase {paraphrase:.3f} > unrelated {unrelated:.3f}"


def check_rerank(base, model, token, timeout_s):
    """Rerank the probe documents: the relevant one first and highest."""
    body = {"model": model, "query": RERANK_QUERY, "documents": list(RERANK_DOCUMENTS)}
    status, reply = request(base + "/rerank", body, token, timeout_s)
    if status == 404 and "results" not in str(reply):
        # vLLM < 0.7 has /score only (text_1, text_2), scores in document order.
        status, reply = request(base + "/score", {"model": model, "text_1": RERANK_QUERY,
                                                  "text_2": list(RERANK_DOCUMENTS)}, token, timeout_s)
        if status != 200:
            raise Failed(f"POST /score answered {status}: {reply}")
        scores = {d["index"]: d["score"] for d in reply["data"]}
    elif status != 200:
        raise Failed(f"POST /rerank answered {status}: {reply}")
    else:
        scores = {r["index"]: r["relevance_score"] for r in reply["results"]}
        if reply["results"][0]["index"] != RERANK_RELEVANT_INDEX:
            raise Failed(f"/rerank put document {reply['results'][0]['index']} first, not the relevant one "
                         f"({RERANK_RELEVANT_INDEX}): {scores}")
    if len(scores) != len(RERANK_DOCUMENTS):
        raise Failed(f"{len(RERANK_DOCUMENTS)} documents sent, {len(scores)} scores returned")
    best = scores[RERANK_RELEVANT_INDEX]
    others = [s for i, s in scores.items() if i != RERANK_RELEVANT_INDEX]
    if not best > max(others):
        raise Failed(f"the relevant document scored {best:.3f}, an irrelevant one {max(others):.3f}")
    return f"the relevant document ranks first ({best:.3f} > {max(others):.3f})"


def main():
    """Run the check the environment asks for; the exit code."""
    model = os.environ["POOLSERVE_MODEL"]
    task = os.environ["POOLSERVE_TASK"]
    urls = os.environ["POOLSERVE_URLS"].split()
    timeout_s = float(os.environ.get("POOLSERVE_TIMEOUT_S") or 60)
    dimensions = int(os.environ.get("POOLSERVE_DIMENSIONS") or 0)
    token_file = os.environ.get("POOLSERVE_TOKEN_FILE")
    token = None
    if token_file:
        with open(token_file) as fh:
            token = fh.read().strip()
    try:
        base = find_base(urls, token)
        if task == "embed":
            result = check_embeddings(base, model, token, dimensions, timeout_s)
        else:
            result = check_rerank(base, model, token, timeout_s)
    except Failed as err:
        print(f"FAILED: {model} ({task}): {err}", file=sys.stderr)
        return 1
    except (OSError, KeyError, TypeError, IndexError, ValueError) as err:
        print(f"FAILED: {model} ({task}): {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(f"ok: {model} at {base}: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
