# Shared by the benchmark scripts (sourced): wait until the machine is quiet before a measurement, and find the
# libraries vLLM's CPU image preloads. Needs PY (the interpreter) and OUT (the results dir, for conditions.txt).
# Wait (at most QUIET_WAIT s) until the machine is quiet: CPU busy < QUIET_BUSY % over 5 s, nothing of ours running.
QUIET_BUSY=${QUIET_BUSY:-15}
QUIET_WAIT=${QUIET_WAIT:-600}
busy() {
  "$PY" -c 'import time
def s():
    v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(v), v[3] + v[4]
t0, i0 = s(); time.sleep(5); t1, i1 = s()
print(round(100 * (1 - (i1 - i0) / max(1, t1 - t0))))'
}
wait_quiet() {
  local deadline=$((SECONDS + QUIET_WAIT)) b
  while :; do
    b=$(busy)
    if [ "$b" -lt "$QUIET_BUSY" ] || [ $SECONDS -ge $deadline ]; then break; fi
    echo "   machine busy (${b}% CPU), waiting" >&2
  done
  echo "$(date -u +%FT%TZ) $1: CPU busy ${b}% before start; $(uptime)" | tee -a "$OUT/conditions.txt" >&2
}

# preload_lib NAME: the path of NAME (libtcmalloc_minimal.so.4, libiomp5.so) where the local target finds it
# (poolserve.machine.CpuPreload, the one place that knows where to look), or nothing.
preload_lib() {
  "$PY" -c 'import sys
from poolserve.machine import CpuPreload
print(next((p for p in CpuPreload.detect(sys.executable).found if p.endswith("/" + sys.argv[1])), ""))' "$1"
}
