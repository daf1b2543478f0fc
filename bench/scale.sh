#!/usr/bin/env bash
# Benchmark (not a test): score split over processes (issue 14), against one
# unsharded `faverecs score` on the same data, in the same run.
#
#   bench/scale.sh [PEOPLE ...]
#
# For each community size (the synthetic generator, `faverecs synth`, with
# demo.users = PEOPLE and demo.tracked_users = TRACKED): one unsharded score,
# then for each N in SHARDS a sharded run, every shard a separate process run
# one after another (users 0..N-1, photos 0..N-1, then finish), each timed with
# its peak RSS. Every sharded run's rows are compared with the unsharded run's
# (bench/compare_rows.py, DuckDB). With KILL=1 (default) the N = 3 run, if
# asked for, runs its users shards in the order 2, 0, 1, kills shard 0 with
# SIGKILL after half its expected time and reruns it.
#
# Defaults: PEOPLE = 30000 230000 (1.06M and 7.98M favourites; 100000 gives
# 3.5M, about 35 a person), TRACKED=1000, SHARDS="1 2 3 4", the default algorithms (set
# FAVERECS__SCORE__ALGORITHMS='["flexplore"]' FAVERECS__SIMILAR__ENABLED=false
# for Flexplore only). FAVERECS_BIN picks a built binary (else a release build).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/serve_lib.sh
faverecs_bin

tracked=${TRACKED:-1000}
shards=${SHARDS:-1 2 3 4}
venv=target/bench/venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import duckdb' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'duckdb==1.4.*'
fi
export RUST_LOG=warn

[ $# -eq 0 ] && set -- 30000 230000
for people in "$@"; do
  work=target/bench/scale/$people
  rm -rf "$work" && mkdir -p "$work"
  export FAVERECS__STORAGE__URL="$PWD/$work/data"
  export FAVERECS__DEMO__USERS=$people FAVERECS__DEMO__TRACKED_USERS=$tracked
  "$bin" synth > "$work/synth.txt"
  favorites=$(awk '/^ *favorites:/ {print $2}' "$work/synth.txt")
  echo "== $people people, $tracked tracked, $favorites favourites"
  timed "unsharded" "$bin" score
  whole=$(awk '/^run / {print $2; exit}' "$work/out")
  for n in $shards; do
    run=$(date -u +%Y%m%dT%H%M%SZ)-$(printf '%06x' "$n")
    order=$(seq 0 $((n - 1)))
    [ "$n" = 3 ] && order="2 0 1"
    for i in $order; do
      if [ "$n" = 3 ] && [ "$i" = 0 ] && [ "${KILL:-1}" = 1 ]; then
        # Killed half-way through, then rerun.
        half=$(awk '/users 2\/3/ {print $3 / 2}' "$work/times")
        timeout -s KILL "${half:-1}" "$bin" score --run-id "$run" --step users --shard 0/3 \
          > /dev/null 2>&1 && echo "  (shard 0/3 finished before the kill)" || echo "  users 0/3 killed after ${half}s"
      fi
      timed "users $i/$n" "$bin" score --run-id "$run" --step users --shard "$i/$n" | tee -a "$work/times"
    done
    for i in $(seq 0 $((n - 1))); do
      timed "photos $i/$n" "$bin" score --run-id "$run" --step photos --shard "$i/$n" | tee -a "$work/times"
    done
    timed "finish ($n shards)" "$bin" score --finish --run-id "$run"
    "$venv/bin/python" bench/compare_rows.py "$work/data" "$whole" "$run" > "$work/compare-$n.txt" &&
      echo "  N=$n: every table equal to the unsharded run" ||
      { echo "  N=$n: TABLES DIFFER"; cat "$work/compare-$n.txt"; }
  done
done
