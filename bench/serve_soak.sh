#!/usr/bin/env bash
# Benchmark (not a test), issue 15 item 4: a soak. `faverecs serve` on CPU 0
# alone answers wrk on CPU 1 alone (-t1 -c64, GET /api/users/{id}/photos for a
# user picked uniformly per request) for MINUTES one-minute rounds back to back.
# After each round it prints the round's req/s, p99, errors (non-2xx and
# socket errors), VmRSS and RssAnon; at the end, the largest deviation of VmRSS
# and RssAnon from their value after minute 1.
#
#   bench/serve_soak.sh [MINUTES]     (default 30)
#
# Serves the run bench/serve_memory.sh left in target/bench/serve-memory (run
# that first). FAVERECS_BIN uses an already built release binary.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-30}
work=target/bench/serve-memory
port=18091
[ -s "$work/users.txt" ] || { echo "run bench/serve_memory.sh first" >&2; exit 1; }
. bench/serve_lib.sh
faverecs_bin
export FAVERECS__STORAGE__URL="$PWD/$work/data" RUST_LOG=warn
taskset -c 0 "$bin" serve --addr 127.0.0.1:$port > "$work/soak.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; true' EXIT
until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do sleep 0.1; done
status() { awk -v k="$1:" '$1==k {print $2}' /proc/$pid/status; }
rm -f "$work/soak.txt"
printf '%6s %10s %8s %7s %10s %10s\n' minute req/s p99 errors VmRSS_KiB RssAnon_KiB
for m in $(seq "$minutes"); do
  taskset -c 1 wrk -t1 -c64 -d60s --latency -s "$work/uniform.lua" "http://127.0.0.1:$port" > "$work/soak-wrk.txt"
  non2xx=$(awk '/Non-2xx/ {print $4}' "$work/soak-wrk.txt" | grep . || echo 0)
  sock=$(awk -F'[ ,]+' '/Socket errors/ {print $4+$6+$8+$10}' "$work/soak-wrk.txt" | grep . || echo 0)
  printf '%6d %10s %8s %7d %10d %10d\n' "$m" "$(awk '/Requests\/sec/ {print $2}' "$work/soak-wrk.txt")" \
    "$(awk '$1=="99%" {print $2}' "$work/soak-wrk.txt")" $((non2xx + sock)) "$(status VmRSS)" "$(status RssAnon)" | tee -a "$work/soak.txt"
done
awk 'NR==1 {r1=$5; a1=$6} {d=($5-r1)/r1*100; if (d<0) d=-d; if (d>dr) dr=d; e=($6-a1)/a1*100; if (e<0) e=-e; if (e>da) da=e; err+=$4}
     END {printf "errors %d; largest deviation from minute 1: VmRSS %.1f %%, RssAnon %.1f %%\n", err, dr, da}' "$work/soak.txt"
