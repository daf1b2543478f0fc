#!/usr/bin/env bash
# Benchmark (not a test): the bucketed raw tables (issue 14) against the single
# file of the last release, on one community, in one run.
#
#   OLD_BIN=/path/to/last-release/faverecs bench/raw_buckets.sh [PEOPLE] [BUCKETS ...]
#
# The community (`faverecs synth`, demo.users = PEOPLE, 1000 tracked) is written
# by OLD_BIN, a release binary of the last release, so its raw tables are one
# file each. Copies of it are moved into BUCKETS buckets (default 64 and 1024)
# by `faverecs raw rebucket` (timed). Then, interleaved in ROUNDS rounds, the
# default `faverecs score` of this release on each layout (the single files
# read as they are, and each bucket count), and of OLD_BIN on the single files;
# then an import of one new favourite for 1 % of the people, by OLD_BIN into the
# single files and by this release into each bucket count, with the bytes of
# raw/favorites it rewrote (files whose size or time changed).
#
# Defaults: PEOPLE 230000 (7.98M favourites), BUCKETS "64 1024", ROUNDS 2.
# FAVERECS_BIN picks a built binary of this release (else a release build).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/serve_lib.sh
faverecs_bin
old=${OLD_BIN:?set OLD_BIN to a release binary of the last release (single-file raw tables)}
old=$(realpath "$old")

people=${1:-230000}
shift || true
buckets=${*:-64 1024}
rounds=${ROUNDS:-2}
work=$PWD/target/bench/raw_buckets
rm -rf "$work" && mkdir -p "$work"
export RUST_LOG=warn FAVERECS__DEMO__USERS=$people FAVERECS__DEMO__TRACKED_USERS=1000

# The load stage of the run a score just printed, from its manifest.
load_secs() {
  local run
  run=$(awk '/^run / {print $2; exit}' "$work/out")
  python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(next(s["seconds"] for s in m["stages"] if s["stage"]=="load"))' \
    "$1/runs/$run/manifest.json"
}
# Bytes and files under raw/favorites (Parquet files only).
size_of() { find "$1/raw/favorites" -name '*.parquet' -printf '%s\n' | awk '{s+=$1; n++} END {printf "%d files, %.1f MB", n, s/1e6}'; }
# path size mtime of every Parquet file under raw/favorites.
listing() { find "$1/raw/favorites" -name '*.parquet' -printf '%P %s %T@\n' | sort; }

FAVERECS__STORAGE__URL=$work/single "$old" synth > "$work/synth.txt"
favorites=$(awk '/^ *favorites:/ {print $2}' "$work/synth.txt")
echo "== $people people, 1000 tracked, $favorites favourites"
layouts=single
for b in $buckets; do
  cp -r "$work/single" "$work/b$b"
  FAVERECS__STORAGE__URL=$work/b$b FAVERECS__STORAGE__RAW_BUCKETS=$b \
    timed "raw rebucket into $b buckets" "$bin" raw rebucket
  layouts="$layouts b$b"
done
for l in $layouts; do echo "  raw/favorites in $l: $(size_of "$work/$l")"; done

echo "-- score (default algorithms), $rounds interleaved rounds"
for round in $(seq "$rounds"); do
  for l in $layouts; do
    FAVERECS__STORAGE__URL=$work/$l timed "round $round, this release, $l" "$bin" score
    echo "    load stage $(load_secs "$work/$l") s"
  done
  FAVERECS__STORAGE__URL=$work/single timed "round $round, last release, single" "$old" score
  echo "    load stage $(load_secs "$work/single") s"
done

echo "-- import of one new favourite for 1 % of the people"
python3 - "$work/new.csv" "$people" <<'PY'
import sys
path, people = sys.argv[1], int(sys.argv[2])
step = 100  # every 100th person: 1 %
with open(path, "w") as f:
    f.write("user_id,photo_id,owner_id\n")
    for i in range(0, people, step):
        f.write(f"{20000000 + i * 7}@N0{i % 8},9{i:09d},5@N05\n")  # community::person_id
PY
echo "  people in the file: $(($(wc -l < "$work/new.csv") - 1))"
for l in $layouts; do
  before=$(listing "$work/$l")
  if [ "$l" = single ]; then
    FAVERECS__STORAGE__URL=$work/$l timed "last release, single" "$old" import favorites "$work/new.csv"
  else
    FAVERECS__STORAGE__URL=$work/$l timed "this release, $l" "$bin" import favorites "$work/new.csv"
  fi
  after=$(listing "$work/$l")
  rewritten=$(comm -13 <(echo "$before") <(echo "$after") | awk '{s+=$2; n++} END {printf "%d files, %.1f MB", n, s/1e6}')
  echo "    rewrote $rewritten of $(size_of "$work/$l")"
done
