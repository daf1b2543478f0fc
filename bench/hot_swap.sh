#!/usr/bin/env bash
# Benchmark (not a test), issue 15 item 3: hot swap under load. While wrk drives
# `GET /api/users/{id}/photos` against `faverecs serve`, a new run is published,
# then a run whose photo_recs file is overwritten with garbage right after its
# publish (storage damage that the publish-time checks could not see). Reports
# wrk's non-2xx count, when the server switched to the new run, and what
# /api/runs/current says about the corrupt one.
#
#   bench/hot_swap.sh [PEOPLE] [SECONDS]
#
# Defaults: 12000 people scored with --all-users, 40 s of load. The server runs
# on CPU 0 and wrk on CPU 1 (taskset); the score runs in between take both.
# FAVERECS_BIN uses an already built release binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."

people=${1:-12000}
seconds=${2:-40}
work=target/bench/hot_swap
port=18083
poll=5

for tool in wrk taskset curl; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install wrk util-linux curl)" >&2; exit 1; }
done
. bench/serve_lib.sh
faverecs_bin

rm -rf "$work" && mkdir -p "$work"
export FAVERECS__STORAGE__URL="$PWD/$work/data" RUST_LOG=warn
export FAVERECS__DEMO__USERS=$people FAVERECS__DEMO__TRACKED_USERS=1 FAVERECS__SIMILAR__ENABLED=false
export FAVERECS__SERVE__POLL_INTERVAL_SECS=$poll
"$bin" synth >/dev/null
"$bin" score --all-users >/dev/null
first=$("$bin" publish | awk '{print $3}')

RUST_LOG=info taskset -c 0 "$bin" serve --addr 127.0.0.1:$port > "$work/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
wait_ready $port $server "$work/serve.log"
current() { curl -fs "http://127.0.0.1:$port/api/runs/current"; }
run_id() { current | python3 -c 'import json,sys; print(json.load(sys.stdin)["manifest"]["run_id"])'; }

# Users with recs, from the home page's list.
curl -fs "http://127.0.0.1:$port/" > "$work/home.html"
grep -o 'href="/users/[^"]*"' "$work/home.html" | sed 's|href="/users/||; s|"||' > "$work/all-users.txt"
head -2000 "$work/all-users.txt" > "$work/users.txt"
write_pick_lua "$work/pick.lua" "$PWD/$work/users.txt"
echo "serving $first; $(wc -l < "$work/users.txt") users in the wrk list"

taskset -c 1 wrk -t1 -c32 -d"${seconds}s" --latency -s "$work/pick.lua" "http://127.0.0.1:$port" > "$work/wrk.txt" &
load=$!
sleep 3

# A good run, published under load.
"$bin" score --all-users >/dev/null
second=$("$bin" publish | awk '{print $3}')
t0=$(date +%s.%N)
until [ "$(run_id)" = "$second" ]; do sleep 0.05; done
echo "published $second; served after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b-a}') s (poll interval $poll s)"

# A corrupt run: published, then its photo_recs file overwritten at once,
# before the server's next poll reads it.
"$bin" score --all-users >/dev/null
third=$("$bin" publish | awk '{print $3}')
part=$(ls "$work/data/runs/$third/photo_recs/"*.parquet | head -1)
printf 'PAR1 this is not a parquet file' > "$part"
sleep $((poll * 2))
echo "published $third with $part overwritten; serving $(run_id)"
echo "/api/runs/current load_error: $(current | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["load_error"]))')"

wait $load
requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
non2xx=$(awk '/Non-2xx/ {print $4}' "$work/wrk.txt" | grep . || echo 0)
errors=$(awk '/Socket errors/ {print}' "$work/wrk.txt" | grep . || echo "none")
echo "wrk: $requests requests, $(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt") req/s, p99 $(awk '$1=="99%" {print $2}' "$work/wrk.txt"), non-2xx $non2xx, socket errors: $errors"
echo "server log lines about the swap:"
grep -E "switched|not loaded" "$work/serve.log" | sed 's/^/  /'
