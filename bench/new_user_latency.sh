#!/usr/bin/env bash
# Benchmark (not a test): how long from `faverecs users add` to published
# recommendations for a new user, with the simulator's API at Flickr's real
# rate (3600 calls an hour, burst 5).
#
#   bench/new_user_latency.sh [BINARY]
#
# The demo community (3000 people, 40 tracked). Night 0 tracks 39 of them and
# runs `faverecs nightly` at an unlimited rate (setup, not timed). Then, timed:
# `faverecs users add <the 40th user's photostream URL>` and
# `faverecs nightly --new-users` (default budget 450 calls) at 3600 calls/h,
# until the new user's recs are in the published run.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/debug/faverecs}")
work=target/bench/new-user
rm -rf "$work" && mkdir -p "$work"
export FAVERECS__STORAGE__URL="$PWD/$work/data" RUST_LOG=warn FLICKR_API_KEY=bench-key
"$bin" flickr-sim --addr 127.0.0.1:0 --api-key bench-key > "$work/sim.out" 2>&1 &
sim=$!
trap 'kill $sim 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q "flickr-sim on" "$work/sim.out" 2>/dev/null && break; sleep 0.2; done
export FAVERECS__FLICKR__API_URL=$(sed -n 's/^flickr-sim on //p' "$work/sim.out")
# The tracked users of the demo community, from a synth into a scratch store.
FAVERECS__STORAGE__URL="$PWD/$work/synth" "$bin" synth > /dev/null
FAVERECS__STORAGE__URL="$PWD/$work/synth" "$bin" users list | awk '{print $1}' > "$work/tracked.txt"
new_user=$(tail -1 "$work/tracked.txt")
{ echo "user_id"; head -n -1 "$work/tracked.txt"; } > "$work/tracked.csv"
"$bin" import tracked "$work/tracked.csv" > /dev/null
FAVERECS__FLICKR__CALLS_PER_HOUR=1000000 FAVERECS__FLICKR__BURST=100 "$bin" nightly > "$work/night0.out"
echo "night 0 (setup, unlimited rate): $(grep -c . "$work/night0.out") lines; new user $new_user not tracked"

export FAVERECS__FLICKR__CALLS_PER_HOUR=3600 FAVERECS__FLICKR__BURST=5
# Timed: users add, then nightly --new-users, until the user's recs are published.
timed() {
  local start end recs
  start=$(date +%s.%N)
  "$bin" users add "https://www.flickr.com/photos/$new_user/" > "$work/add.out"
  /usr/bin/time -v "$bin" nightly --new-users > "$work/night.out" 2> "$work/night.err"
  end=$(date +%s.%N)
  grep -E "^extract" "$work/night.out"
  recs=$("$bin" sql "SELECT count(*) AS n FROM photo_recs WHERE user_id = '$new_user'" | grep -oE '│ [0-9]+ ' | tr -dc '0-9')
  printf '%s: users add -> published in %.0f s; %s photo recs for %s; peak RSS %s kB\n' \
    "$1" "$(echo "$end - $start" | bc)" "$recs" "$new_user" \
    "$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/night.err")"
}
timed "joining the community (39 tracked users already pulled)"

# The worst case: the first user on an empty store, none of whose neighbours
# was ever pulled.
export FAVERECS__STORAGE__URL="$PWD/$work/empty"
timed "first user on an empty store"
