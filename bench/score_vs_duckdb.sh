#!/usr/bin/env bash
# Benchmark (not a test): `faverecs score` against a DuckDB SQL baseline of the same
# Flexplore formula, on the same synthetic data, in the same run.
#
#   bench/score_vs_duckdb.sh [USERS] [TRACKED] [REPEATS] [tracked|all]
#
# Defaults: 32000 people (about 1.15M favourites), 2000 tracked users, 3 repeats,
# scoring the tracked users; `all` scores every favoriter (`score --all-users`).
# Both sides use all cores. Prints the median wall time of each, the ratio, peak RSS,
# and whether the two outputs agree.
#
# FAVERECS_BIN picks a built binary (else a release build).
# BEFORE=path/to/an/older/faverecs also times that binary in the same runs (its
# output is not compared), for before/after figures under the same conditions.
# WHOLE=1 also times this binary with tag lists on (`score.tag_photos_per_tag`
# 20, the default), for which it scans every favourite's ids (before
# 2026-12-04 it read every favourite); the main side turns them off (the
# baseline computes none), so with tracked users it reads only their
# neighbourhood. BEFORE runs with its own default (it refuses 0).
set -euo pipefail
cd "$(dirname "$0")/.."

users=${1:-32000}
tracked=${2:-2000}
repeats=${3:-3}
mode=${4:-tracked}
score_args=()
[ "$mode" = all ] && score_args=(--all-users)
work=target/bench/score
threads=$(nproc)
venv=target/bench/venv

source bench/serve_lib.sh
faverecs_bin

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import duckdb' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'duckdb==1.4.*' || \
    "$venv/bin/pip" install --quiet --disable-pip-version-check duckdb
fi

export FAVERECS__STORAGE__URL="$PWD/$work/data"
export FAVERECS__DEMO__USERS=$users FAVERECS__DEMO__TRACKED_USERS=$tracked
export RUST_LOG=warn
# Like for like: the baseline computes photo and photographer recs only.
export FAVERECS__SIMILAR__ENABLED=false
export FAVERECS__SCORE__ALGORITHMS='["flexplore"]'
export FAVERECS__SCORE__TAG_PHOTOS_PER_TAG=0
# Nor does it fill short lists with popular photos (fallbacks).
export FAVERECS__SCORE__FALLBACK_BELOW=0
# The community is deterministic: regenerate it only when its size changed.
if [ "$(cat "$work/size" 2>/dev/null)" != "$users/$tracked" ]; then
  rm -rf "$work" && mkdir -p "$work"
  "$bin" synth
  echo "$users/$tracked" > "$work/size"
fi
rm -rf "$work/data/runs" "$work/data/CURRENT" "$work/duckdb"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: > "$work/faverecs.times"; : > "$work/duckdb.times"; : > "$work/before.times"; : > "$work/whole.times"
# Appends "wall peak-KiB prepare-seconds" of one faverecs score to $1.times.
timed_score() {
  local side=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/t" "$@" score "${score_args[@]}" > "$work/$side.out"
  local id
  id=$(awk '/^run /{print $2}' "$work/$side.out")
  echo "$(cat "$work/t") $("$venv/bin/python" -c "import json,sys; m=json.load(open(sys.argv[1])); print(next(s['seconds'] for s in m['stages'] if s['stage']=='prepare'))" "$work/data/runs/$id/manifest.json")" >> "$work/$side.times"
}
for i in $(seq "$repeats"); do
  if [ -n "${BEFORE:-}" ]; then
    timed_score before env -u FAVERECS__SCORE__TAG_PHOTOS_PER_TAG "$BEFORE"
  fi
  if [ -n "${WHOLE:-}" ]; then
    timed_score whole env FAVERECS__SCORE__TAG_PHOTOS_PER_TAG=20 "$bin"
  fi
  timed_score faverecs "$bin"
  /usr/bin/time -f "%e %M" -o "$work/t" "$venv/bin/python" bench/flexplore_duckdb.py "$work/data" "$work/duckdb" "$threads" "$mode" > "$work/duckdb.json"
  cat "$work/t" >> "$work/duckdb.times"
done
run_id=$(awk '/^run /{print $2}' "$work/faverecs.out")

fav_rows=$("$venv/bin/python" -c "import duckdb,sys; print(duckdb.sql(\"select count(*) from read_parquet('$work/data/raw/favorites/*/*.parquet')\").fetchone()[0])")
f_sec=$(cut -d' ' -f1 "$work/faverecs.times" | median)
d_sec=$(cut -d' ' -f1 "$work/duckdb.times" | median)
f_rss=$(cut -d' ' -f2 "$work/faverecs.times" | sort -n | tail -1)
d_rss=$(cut -d' ' -f2 "$work/duckdb.times" | sort -n | tail -1)
agree=$("$venv/bin/python" bench/compare.py "$work/data/runs/$run_id" "$work/duckdb" && echo "yes" || echo "NO")

echo "favorites rows:        $fav_rows"
echo "users scored:           $([ "$mode" = all ] && echo "every favoriter (--all-users)" || echo "$tracked tracked users")"
echo "threads:               $threads"
echo "faverecs score:        ${f_sec}s median of $repeats (all runs: $(cut -d' ' -f1 "$work/faverecs.times" | tr '\n' ' '))"
echo "duckdb baseline:       ${d_sec}s median of $repeats (all runs: $(cut -d' ' -f1 "$work/duckdb.times" | tr '\n' ' '))"
echo "speed-up (duckdb/ours): $(awk -v a="$d_sec" -v b="$f_sec" 'BEGIN {printf "%.1fx", a/b}')"
if [ -n "${BEFORE:-}" ]; then
  b_sec=$(cut -d' ' -f1 "$work/before.times" | median)
  b_rss=$(cut -d' ' -f2 "$work/before.times" | sort -n | tail -1)
  echo "before ($BEFORE):  ${b_sec}s median (all runs: $(cut -d' ' -f1 "$work/before.times" | tr '\n' ' ')), peak RSS $((b_rss / 1024)) MiB"
  echo "speed-up (duckdb/before): $(awk -v a="$d_sec" -v b="$b_sec" 'BEGIN {printf "%.1fx", a/b}')"
  echo "speed-up (before/ours):   $(awk -v a="$b_sec" -v b="$f_sec" 'BEGIN {printf "%.2fx", a/b}')"
fi
if [ -n "${WHOLE:-}" ]; then
  w_sec=$(cut -d' ' -f1 "$work/whole.times" | median)
  w_rss=$(cut -d' ' -f2 "$work/whole.times" | sort -n | tail -1)
  echo "tag lists on: ${w_sec}s median (all runs: $(cut -d' ' -f1 "$work/whole.times" | tr '\n' ' ')), peak RSS $((w_rss / 1024)) MiB"
  echo "speed-up (duckdb/tag lists on): $(awk -v a="$d_sec" -v b="$w_sec" 'BEGIN {printf "%.1fx", a/b}')"
fi
for side in before whole faverecs; do
  [ -s "$work/$side.times" ] || continue
  echo "prepare $side: $(cut -d' ' -f3 "$work/$side.times" | median)s median (all runs: $(cut -d' ' -f3 "$work/$side.times" | tr '\n' ' '))"
done
echo "peak RSS faverecs:     $((f_rss / 1024)) MiB ($(awk -v r="$f_rss" -v n="$fav_rows" 'BEGIN {printf "%.1f", r * 1024 / n}') bytes a favourite)"
echo "peak RSS duckdb:       $((d_rss / 1024)) MiB"
echo "stages of the last run: $("$venv/bin/python" -c "import json,sys; m=json.load(open(sys.argv[1])); print(' '.join(f\"{s['stage']}={s['seconds']:.3f}s\" for s in m['stages']), '| targets', m['rows_in']['targets'], '| favourite rows read', m['rows_in']['favorites'])" "$work/data/runs/$run_id/manifest.json")"
echo "outputs agree:         $agree"
