#!/usr/bin/env bash
# Install what the tests need (scripts/setup-venv.sh), then run every check CI runs:
# the manifest drift check, ruff, mypy, and pytest (real vLLM tests and the envtest control-plane
# tests included; `cluster` tests skip unless KUBECONFIG reaches a cluster with KServe).
# With CI=true a missing asset (KServe CRDs, control-plane binaries) fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# KServe CRDs for schema validation: $POOLSERVE_CRD_DIR, else ../shared/crds/kserve-v0.20.0.
if [ -z "${POOLSERVE_CRD_DIR:-}" ] && [ -d ../shared/crds/kserve-v0.20.0 ]; then
  POOLSERVE_CRD_DIR=$(cd ../shared/crds/kserve-v0.20.0 && pwd)
  export POOLSERVE_CRD_DIR
fi
# Control-plane binaries for the envtest tests: $KUBEBUILDER_ASSETS, else ../shared/envtest's xz files
# unpacked once into ~/.cache/poolserve/envtest/ (outside the repository).
if [ -z "${KUBEBUILDER_ASSETS:-}" ] && [ -d ../shared/envtest ]; then
  KUBEBUILDER_ASSETS=$(.venv/bin/python tests/support/assets.py ../shared/envtest)
  export KUBEBUILDER_ASSETS
fi
echo "== manifests/kserve up to date"
.venv/bin/poolserve render --check
echo "== lint (offline)"
.venv/bin/poolserve lint ${POOLSERVE_CRD_DIR:+--crd-dir "$POOLSERVE_CRD_DIR"}
echo "== ruff"
.venv/bin/ruff check src tests $( [ -d benchmarks ] && echo benchmarks )
echo "== mypy --strict"
.venv/bin/mypy
echo "== pytest"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$rc"
