#!/usr/bin/env bash
# Check (not a test): two faverecs binaries give the same run tables from the
# same raw tables. For refactors that must not change behaviour.
#
#   bench/same_outputs.sh OLD_BINARY NEW_BINARY [demo|bench]
#
# demo:  the demo community (3000 people, 40 tracked users), extracted from the
#        simulator by OLD_BINARY's `faverecs demo`, then scored by both with every
#        algorithm, similar photos and the offline evaluation.
# bench: the benchmark community (32000 people, about 1.15M favourites), scored
#        by both with --all-users (every algorithm, similar photos).
# Both score the same copy of the raw tables; bench/compare_runs.py reads every
# table of the two runs with pyarrow and compares them row for row.
set -euo pipefail
cd "$(dirname "$0")/.."
old=$(realpath "$1")
new=$(realpath "$2")
mode=${3:-demo}
work=target/bench/same-outputs/$mode
venv=target/bench/venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import pyarrow' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'pyarrow==26.0.1'
fi
export RUST_LOG=warn
rm -rf "$work" && mkdir -p "$work"
score_args=()
case "$mode" in
  demo)
    FAVERECS__STORAGE__URL="$PWD/$work/source" "$old" demo --no-serve > /dev/null
    export FAVERECS__EVALUATE__ENABLED=true
    ;;
  bench)
    FAVERECS__STORAGE__URL="$PWD/$work/source" FAVERECS__DEMO__USERS=32000 \
      FAVERECS__DEMO__TRACKED_USERS=2000 "$old" synth > /dev/null
    score_args=(--all-users)
    ;;
  *) echo "mode is demo or bench" >&2; exit 2 ;;
esac
runs=()
for side in old new; do
  mkdir -p "$work/$side"
  cp -r "$work/source/raw" "$work/$side/raw"
  bin=$old; [ "$side" = new ] && bin=$new
  out=$(FAVERECS__STORAGE__URL="$PWD/$work/$side" "$bin" score "${score_args[@]}")
  run_id=$(awk '/^run /{print $2}' <<< "$out")
  runs+=("$work/$side/runs/$run_id")
  echo "$side: $bin → run $run_id"
done
"$venv/bin/python" bench/compare_runs.py "${runs[0]}" "${runs[1]}"
