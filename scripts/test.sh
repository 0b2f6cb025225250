#!/usr/bin/env bash
# Install what the tests need (scripts/setup-venv.sh, helm included), then run every check CI runs:
# the manifest drift check, lint, the Helm chart's generated files and helm lint, the generated docs and the docs site
# (mkdocs build --strict), ruff, mypy, and pytest (real vLLM tests included). The real-control-plane (envtest) tests run when $KUBEBUILDER_ASSETS names etcd and kube-apiserver
# (`setup-envtest use 1.36 -p path`; add kube-controller-manager and kube-scheduler for the controller tests) and
# skip with one line otherwise; `cluster` tests skip unless KUBECONFIG reaches a cluster with KServe.
# With CI=true missing KServe CRDs fail instead of skipping. The last line says what the envtest tests covered.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# KServe CRDs for schema validation: $POOLSERVE_CRD_DIR, else ../shared/crds/kserve-v0.20.0.
if [ -z "${POOLSERVE_CRD_DIR:-}" ] && [ -d ../shared/crds/kserve-v0.20.0 ]; then
  POOLSERVE_CRD_DIR=$(cd ../shared/crds/kserve-v0.20.0 && pwd)
  export POOLSERVE_CRD_DIR
fi
echo "== manifests/kserve up to date"
.venv/bin/poolserve render --check
echo "== lint (offline)"
.venv/bin/poolserve lint ${POOLSERVE_CRD_DIR:+--crd-dir "$POOLSERVE_CRD_DIR"}
echo "== Helm chart: generated files current, helm lint --strict"
.venv/bin/python scripts/gen_chart.py --check
if [ -x .venv/bin/helm ]; then
  .venv/bin/helm lint --strict charts/poolserve
elif [ "${CI:-}" = true ]; then
  echo "helm is missing from .venv/bin (scripts/install-helm.sh)" >&2
  exit 1
fi
echo "== docs: generated references current, mkdocs build --strict"
.venv/bin/python scripts/gen_docs.py --check
site=$(mktemp -d)
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet -d "$site"
rm -rf "$site"
echo "== ruff"
.venv/bin/ruff check src tests scripts/gen_chart.py scripts/rules_table.py scripts/gen_docs.py scripts/generated.py scripts/mkdocs_hooks.py \
  charts/poolserve/files $( [ -d benchmarks ] && echo benchmarks )
echo "== mypy --strict"
.venv/bin/mypy
echo "== import contracts (pyproject.toml [tool.importlinter])"
.venv/bin/lint-imports --no-cache
echo "== pytest"
report=$(mktemp)
trap 'rm -f "$report"' EXIT
set +e
POOLSERVE_ENVTEST_REPORT=$report .venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
cat "$report"
exit "$rc"
