#!/usr/bin/env bash
# Benchmark (not a test): the users step of a sharded score, by several builds
# of faverecs taking turns on the same data, for before/after figures of one
# change under the same conditions.
#
#   bench/users_shards.sh DATA N ROUNDS BIN...
#
# DATA is a storage directory already holding a community (for example
# target/bench/scale/230000/data, left by bench/scale.sh). Each round runs,
# for each BIN in turn, the N users shards of a run of its own, one process
# after another, and prints per shard the wall time and peak RSS, then the
# shards' total time and largest peak. The settings come from the environment
# (FAVERECS__...), as for bench/scale.sh; a run without similar photos needs no
# photos step first. The runs are left in DATA/runs, never published.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 4 ] || { sed -n '2,15p' "$0" >&2; exit 2; }
data=$(realpath "$1") n=$2 rounds=$3
shift 3
export FAVERECS__STORAGE__URL=$data
export RUST_LOG=${RUST_LOG:-warn}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for round in $(seq 1 "$rounds"); do
  for bin in "$@"; do
    run=$(date -u +%Y%m%dT%H%M%SZ)-$(printf '%06x' $(((RANDOM * 32768 + RANDOM) % 16777216)))
    total=0 largest=0 line=""
    for i in $(seq 0 $((n - 1))); do
      /usr/bin/time -f "%e %M" -o "$work/t" "$bin" score --run-id "$run" --step users \
        --shard "$i/$n" > /dev/null 2> "$work/err" || { cat "$work/err" >&2; exit 1; }
      read -r secs kb < "$work/t"
      mib=$(awk -v k="$kb" 'BEGIN {printf "%.1f", k / 1024}')
      line+=" $secs s/$mib MiB"
      total=$(awk -v a="$total" -v b="$secs" 'BEGIN {print a + b}')
      largest=$(awk -v a="$largest" -v b="$mib" 'BEGIN {print (b > a) ? b : a}')
    done
    printf 'round %s %-24s total %5.2f s, largest %6.1f MiB:%s\n' \
      "$round" "$(basename "$bin")" "$total" "$largest" "$line"
  done
done
