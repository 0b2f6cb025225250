#!/usr/bin/env bash
# How long the CLI takes to answer: `poolserve --version`, `render -o -` and `lint` (the commands people
# run in loops and Makefiles), measured with hyperfine, with the machine and its load written first.
#
# Usage: benchmarks/startup.sh [REV]
#   REV: also measure the source tree of that git revision (e.g. the one before a change), run by
#        the same interpreter and venv (PYTHONPATH puts its src/ first), so the two differ only in code.
# Env:   ROUNDS (default 3) x RUNS (default 10) runs per command, WARMUP (default 3) per round,
#        OUT (benchmarks/results/startup.md). The rounds take turns over all the commands, so a load
#        that comes and goes on a shared machine falls on the old and the new code alike.
# Needs: hyperfine (Debian: apt-get install hyperfine) and the venv (scripts/setup-venv.sh).
# Takes /tmp/poolserve-measure.lock, so two measurements never share the 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${POOLSERVE_STARTUP_LOCKED:-}" ]; then
  export POOLSERVE_STARTUP_LOCKED=1
  exec flock /tmp/poolserve-measure.lock "$0" "$@"
fi
ROUNDS=${ROUNDS:-3}
RUNS=${RUNS:-10}
WARMUP=${WARMUP:-3}
OUT=${OUT:-benchmarks/results/startup.md}
PY=$PWD/.venv/bin/python
BIN=$PWD/.venv/bin/poolserve
REV=${1:-}

commands=()
names=()
add() {  # add LABEL PYTHONPATH
  local label=$1 path=$2 env=""
  [ -n "$path" ] && env="env PYTHONPATH=$path "
  for args in "--version" "render -o -" "lint"; do
    names+=(-n "$label: poolserve $args")
    commands+=("${env}$BIN $args")
  done
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -n "$REV" ]; then
  git archive "$REV" src | tar -x -C "$tmp"
  add "$(git rev-parse --short "$REV")" "$tmp/src"
fi
add "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo +changes)" ""

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq 1 "$ROUNDS"); do
  hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$tmp/round-$round.json" \
    "${names[@]}" "${commands[@]}" >&2
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

{
  echo "# CLI startup, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores usable,"
  echo "  flags $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_bf16|amx_bf16)$' | paste -sd' ')"
  echo "- Python $("$PY" -c 'import platform; print(platform.python_version())'), run in $(basename "$PWD") with its poolserve.yaml"
  echo "- load average (1/5/15 min) before: $load_before, after: $load_after"
  echo "- $ROUNDS rounds x $RUNS runs per command (after $WARMUP warm-up runs per round), rounds taking turns"
  echo
  "$PY" - "$tmp"/round-*.json <<'EOF'
import json, statistics, sys
times: dict[str, list[float]] = {}
for path in sys.argv[1:]:
    for r in json.load(open(path))["results"]:
        times.setdefault(r["command"], []).extend(r["times"])
print("| command | mean ms | median ms | min ms | max ms | runs |")
print("|---|---:|---:|---:|---:|---:|")
for name, ts in times.items():
    ms = [t * 1000 for t in ts]
    print(f"| `{name}` | {statistics.fmean(ms):.0f} | {statistics.median(ms):.0f} | {min(ms):.0f} | {max(ms):.0f} "
          f"| {len(ms)} |")
EOF
} > "$OUT"
cat "$OUT"
