#!/usr/bin/env bash
# Benchmark (not a test): what `faverecs serve` holds and how soon it is ready on
# a large run, for two binaries in the same run (issue 15).
#
#   OLD_BIN=path/to/old/faverecs bench/serve_memory.sh [PEOPLE] [SECONDS]
#
# Scores a synthetic community of PEOPLE people (default 30000) with
# --all-users and the default algorithms (four lists of up to 100 photo recs
# per user, plus similar photos), publishes it, then for each binary (OLD_BIN,
# when given, and this checkout's) starts `serve` on CPU 0 alone and reports:
# - the time from start to the first /readyz 200;
# - RssAnon (the process's own memory: the heap, not the mapped files) and
#   VmRSS after load;
# - wrk on CPU 1 alone (-t1 -c64), uniformly over every user with lists
#   (GET /api/users/{id}/photos), for SECONDS (default 40: over 1M requests at
#   the rates seen here), then RssAnon and VmRSS again;
# - wrk over a hot set of 100 users for 10 s: req/s and p99.
# FAVERECS_BIN uses an already built release binary for this checkout's.
set -euo pipefail
cd "$(dirname "$0")/.."

people=${1:-30000}
seconds=${2:-40}
work=target/bench/serve-memory
port=18090
for tool in wrk taskset; do
  if ! command -v "$tool" >/dev/null; then
    sudo_cmd=(); [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get install -y -qq wrk >/dev/null
  fi
done
. bench/serve_lib.sh
faverecs_bin
new_bin=$bin

rm -rf "$work" && mkdir -p "$work"
export FAVERECS__STORAGE__URL="$PWD/$work/data" RUST_LOG=warn
export FAVERECS__DEMO__USERS=$people FAVERECS__DEMO__TRACKED_USERS=1
"$new_bin" synth >/dev/null
timed "score --all-users (this checkout)" "$new_bin" score --all-users
"$new_bin" publish >/dev/null
python3 - "$work/data" <<'PY'
import json, sys
root = sys.argv[1]
run = json.load(open(f"{root}/CURRENT"))["run_id"]
m = json.load(open(f"{root}/runs/{run}/manifest.json"))
rows = m["rows_out"]
print(f"run {run}: {rows['photo_recs']} photo recs, {rows['similar_photos']} similar-photo rows, "
      f"{m['rows_in']['targets']} users scored; serving layout {m['serving']['bytes'] / 2**20:.0f} MiB")
PY

status() { awk -v k="$2:" '$1==k {print int($2/1024)}' /proc/$1/status; }
wrk_line() {
  printf "%s req/s, p99 %s, %s requests, non-2xx %s" \
    "$(awk '/Requests\/sec/ {print $2}' "$1")" "$(awk '$1=="99%" {print $2}' "$1")" \
    "$(awk '/requests in/ {print $1}' "$1")" "$(awk '/Non-2xx/ {print $4}' "$1" | grep . || echo 0)"
}

measure() {
  local label=$1 b=$2
  local started
  started=$(date +%s.%N)
  taskset -c 0 "$b" serve --addr 127.0.0.1:$port > "$work/serve-$label.log" 2>&1 &
  local pid=$!
  until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
    kill -0 $pid 2>/dev/null || { cat "$work/serve-$label.log" >&2; exit 1; }
    sleep 0.05
  done
  local ready
  ready=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN {printf "%.2f", e-s}')
  echo "$label: ready after $ready s; after load RssAnon $(status $pid RssAnon) MiB, VmRSS $(status $pid VmRSS) MiB"
  if [ ! -s "$work/users.txt" ]; then
    curl -fs "http://127.0.0.1:$port/" | grep -o 'href="/users/[^"]*"' | sed 's|href="/users/||; s|"$||' > "$work/users.txt"
    head -100 "$work/users.txt" > "$work/hot.txt"
    write_pick_lua "$work/uniform.lua" "$PWD/$work/users.txt"
    write_pick_lua "$work/hot.lua" "$PWD/$work/hot.txt"
    echo "users with lists: $(wc -l < "$work/users.txt")"
  fi
  taskset -c 1 wrk -t1 -c64 -d"${seconds}s" --latency -s "$work/uniform.lua" "http://127.0.0.1:$port" > "$work/wrk-$label-uniform.txt"
  echo "$label: uniform over every user: $(wrk_line "$work/wrk-$label-uniform.txt")"
  echo "$label: after it RssAnon $(status $pid RssAnon) MiB, VmRSS $(status $pid VmRSS) MiB, peak VmHWM $(status $pid VmHWM) MiB"
  taskset -c 1 wrk -t1 -c64 -d10s --latency -s "$work/hot.lua" "http://127.0.0.1:$port" > "$work/wrk-$label-hot.txt"
  echo "$label: hot set of 100 users: $(wrk_line "$work/wrk-$label-hot.txt")"
  kill $pid
  wait $pid 2>/dev/null || true
}

if [ -n "${OLD_BIN:-}" ]; then
  measure old "$(realpath "$OLD_BIN")"
fi
measure new "$new_bin"
