#!/usr/bin/env bash
# Benchmark (not a test): freshness of the recommendations under a call budget,
# night after night against the evolving simulator (issue 13).
#
#   bench/freshness.sh [PEOPLE] [TRACKED] [NIGHTS]
#
# Builds pipeline/examples/freshness.rs (release) and runs it: refetch-everything,
# then stalest-first round-robin and the priority planner at 25 % and 10 % of
# refetch's calls the same night, each compared night by night with the oracle
# (Flexplore on the simulator's truth as the public API shows it; the complete
# truth's figure beside it). Defaults: 3000 people, 100 tracked, 14 nights.
# Issue 13's scale (at least 500 tracked users and 20 000 neighbours; the first
# output line counts them): `bench/freshness.sh 100000 1500 14` (23 024
# neighbours; about 35 minutes and 6 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p faverecs-pipeline --example freshness
/usr/bin/time -v "${CARGO_TARGET_DIR:-target}/release/examples/freshness" "${1:-3000}" "${2:-100}" "${3:-14}" \
  2> >(grep -E "Maximum resident|Elapsed" >&2)
