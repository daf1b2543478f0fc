#!/usr/bin/env bash
# Benchmark (not a test): whole `faverecs score` runs by several builds taking
# turns on the same data, for before/after figures of one change under the
# same conditions.
#
#   bench/score_builds.sh DATA ROUNDS BIN... [-- SCORE-ARGS...]
#
# DATA is a storage directory already holding a community (for example
# target/bench/score/data, left by bench/score_vs_duckdb.sh). Each round runs
# one score per BIN in turn and prints its wall time, peak RSS, the layout's
# size and the manifest's stage times. SCORE-ARGS (for example --all-users)
# go to every score; the settings come from the environment (FAVERECS__...),
# as for bench/score_vs_duckdb.sh. Each run is removed once measured, and
# none is published.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { sed -n '2,14p' "$0" >&2; exit 2; }
data=$(realpath "$1") rounds=$2
shift 2
bins=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do bins+=("$1"); shift; done
[ $# -gt 0 ] && shift
export FAVERECS__STORAGE__URL=$data
export RUST_LOG=${RUST_LOG:-warn}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for round in $(seq 1 "$rounds"); do
  for bin in "${bins[@]}"; do
    /usr/bin/time -f "%e %M" -o "$work/t" "$bin" score "$@" > "$work/out" 2> "$work/err" ||
      { cat "$work/err" >&2; exit 1; }
    run=$(awk '/^run /{print $2}' "$work/out")
    read -r secs kb < "$work/t"
    stages=$(jq -r '[.stages[] | "\(.stage) \(.seconds * 100 | round / 100)"] | join(", ")' \
      "$data/runs/$run/manifest.json")
    bytes=$(jq -r '.serving.bytes // 0' "$data/runs/$run/manifest.json")
    printf 'round %s %-12s %6.2f s %7.1f MiB, layout %6.1f MB: %s\n' "$round" "$(basename "$bin")" \
      "$secs" "$(awk -v k="$kb" 'BEGIN {print k / 1024}')" \
      "$(awk -v b="$bytes" 'BEGIN {print b / 1e6}')" "$stages"
    rm -rf "${data:?}/runs/$run"
  done
done
