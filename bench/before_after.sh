#!/usr/bin/env bash
# Benchmark (not a test): two faverecs binaries scoring the same data,
# interleaved (old, new, old, new, …) so drift on a noisy machine hits both alike.
#
#   bench/before_after.sh OLD_BINARY NEW_BINARY [REPEATS] [all|tracked]
#
# Uses the benchmark community of bench/score_vs_duckdb.sh (32000 people, about
# 1.15M favourites, 2000 tracked users), generating it with NEW_BINARY if it is
# not there, with the same settings as that script (flexplore only, no similar
# photos). Prints each side's wall times, medians, new/old ratios of the median
# wall time and of the median CPU time (user + sys, less noisy here), and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
old=$(realpath "$1")
new=$(realpath "$2")
repeats=${3:-7}
mode=${4:-all}
score_args=()
[ "$mode" = all ] && score_args=(--all-users)
work=target/bench/score
export FAVERECS__STORAGE__URL="$PWD/$work/data"
export FAVERECS__DEMO__USERS=32000 FAVERECS__DEMO__TRACKED_USERS=2000
export RUST_LOG=warn FAVERECS__SIMILAR__ENABLED=false FAVERECS__SCORE__ALGORITHMS='["flexplore"]'
if [ "$(cat "$work/size" 2>/dev/null)" != "32000/2000" ]; then
  rm -rf "$work" && mkdir -p "$work"
  "$new" synth > /dev/null
  echo "32000/2000" > "$work/size"
fi
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
: > "$work/old.times"; : > "$work/new.times"
for i in $(seq "$repeats"); do
  for side in old new; do
    bin=$old; [ "$side" = new ] && bin=$new
    rm -rf "$work/data/runs" "$work/data/CURRENT"
    /usr/bin/time -f "%e %M %U %S" -o "$work/t" "$bin" score "${score_args[@]}" > /dev/null
    cat "$work/t" >> "$work/$side.times"
  done
done
o=$(cut -d' ' -f1 "$work/old.times" | median)
n=$(cut -d' ' -f1 "$work/new.times" | median)
echo "mode:        $mode ($repeats runs each, interleaved)"
echo "old $old: median ${o}s (all: $(cut -d' ' -f1 "$work/old.times" | tr '\n' ' ')) peak RSS $(( $(cut -d' ' -f2 "$work/old.times" | sort -n | tail -1) / 1024 )) MiB"
echo "new $new: median ${n}s (all: $(cut -d' ' -f1 "$work/new.times" | tr '\n' ' ')) peak RSS $(( $(cut -d' ' -f2 "$work/new.times" | sort -n | tail -1) / 1024 )) MiB"
cpu() { awk '{print $3 + $4}' "$work/$1.times" | median; }
echo "new/old:     $(awk -v a="$n" -v b="$o" 'BEGIN {printf "%.3f", a/b}') wall; CPU (user+sys) medians old $(cpu old)s new $(cpu new)s, new/old $(awk -v a="$(cpu new)" -v b="$(cpu old)" 'BEGIN {printf "%.3f", a/b}')"
