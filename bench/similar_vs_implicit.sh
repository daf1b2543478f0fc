#!/usr/bin/env bash
# Benchmark (not a test): similar photos for every photo, faverecs' Rayon kernel
# against the `implicit` library's CosineRecommender (pip), on the same synthetic
# favourites, in the same run.
#
#   bench/similar_vs_implicit.sh [USERS] [REPEATS]
#
# Defaults: 32000 people (about 1.15M favourites), 3 repeats. faverecs scores every
# favoriter (`score --all-users`), so similar_photos covers every favourited photo;
# its time is the manifest's `similar_photos` stage (the kernel on the CSR graph).
# implicit's time is `CosineRecommender.fit` (normalisation plus all top-K rows) on
# a scipy CSR matrix built beforehand. Both use all cores. Prints the medians, the
# ratio and the share of photos whose top-K sets are identical.
set -euo pipefail
cd "$(dirname "$0")/.."

users=${1:-32000}
repeats=${2:-3}
k=20
work=target/bench/similar
threads=$(nproc)
venv=target/bench/venv-implicit

cargo build --release --locked --bin faverecs
bin=target/release/faverecs

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import implicit, pyarrow' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'implicit==0.7.2' 'pyarrow==21.*'
fi

export FAVERECS__STORAGE__URL="$PWD/$work/data"
export FAVERECS__DEMO__USERS=$users FAVERECS__DEMO__TRACKED_USERS=100
export FAVERECS__SIMILAR__K=$k FAVERECS__SIMILAR__MIN_COMMON=1 FAVERECS__SIMILAR__SIMILARITY=cosine
# popular is the cheapest algorithm; the similar_photos stage is what is timed.
export FAVERECS__SCORE__ALGORITHMS='["popular"]'
export RUST_LOG=warn
if [ "$(cat "$work/size" 2>/dev/null)" != "$users" ]; then
  rm -rf "$work" && mkdir -p "$work"
  "$bin" synth
  echo "$users" > "$work/size"
fi
rm -rf "$work/data/runs" "$work/data/CURRENT"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
: > "$work/ours.times"
for i in $(seq "$repeats"); do
  "$bin" score --all-users > "$work/score.out"
  run_id=$(awk '/^run /{print $2}' "$work/score.out")
  "$venv/bin/python" -c "import json,sys; m=json.load(open(sys.argv[1])); print(next(s['seconds'] for s in m['stages'] if s['stage']=='similar_photos'))" \
    "$work/data/runs/$run_id/manifest.json" >> "$work/ours.times"
done
prepare=$("$venv/bin/python" -c "import json,sys; m=json.load(open(sys.argv[1])); print(next(s['seconds'] for s in m['stages'] if s['stage']=='prepare'))" "$work/data/runs/$run_id/manifest.json")
/usr/bin/time -f "%e %M" -o "$work/t" "$venv/bin/python" bench/similar_implicit.py \
  "$work/data/raw/favorites" "$work/data/runs/$run_id/similar_photos" "$k" "$repeats" "$threads" > "$work/implicit.json"
ours=$(median < "$work/ours.times")
theirs=$("$venv/bin/python" -c "import json; print(json.load(open('$work/implicit.json'))['fit_median'])")
echo "implicit:              $(cat "$work/implicit.json")"
echo "threads:               $threads"
echo "faverecs similar:      ${ours}s median of $repeats (all: $(tr '\n' ' ' < "$work/ours.times")); prepare (Parquet rows -> CSR) ${prepare}s"
echo "implicit fit:          ${theirs}s median of $repeats"
echo "speed-up (implicit/ours): $(awk -v a="$theirs" -v b="$ours" 'BEGIN {printf "%.1fx", a/b}')"
