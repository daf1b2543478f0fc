#!/usr/bin/env bash
# Benchmark (not a test): freshness of the recommendations under a call budget,
# night after night against the evolving simulator (issue 13).
#
#   bench/freshness.sh [PEOPLE] [TRACKED] [NIGHTS]
#
# Builds pipeline/examples/freshness.rs (release) and runs it: refetch-everything,
# then stalest-first round-robin and the priority planner at 25 % and 10 % of
# refetch's calls, each compared night by night with the oracle (Flexplore on the
# simulator's complete truth). Defaults: 3000 people, 100 tracked, 14 nights.
# Issue 13's acceptance scale is at least 500 tracked users and 20 000
# neighbours (the first output line counts them).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p faverecs-pipeline --example freshness
/usr/bin/time -v target/release/examples/freshness "${1:-3000}" "${2:-100}" "${3:-14}" \
  2> >(grep -E "Maximum resident|Elapsed" >&2)
