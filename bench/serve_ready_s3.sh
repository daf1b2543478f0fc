#!/usr/bin/env bash
# Benchmark (not a test): how soon `faverecs serve` is ready when the published
# run is on S3 (moto's server on loopback: real HTTP, no network), against the
# same community on a local directory, in the same invocation. On a local
# directory serve maps the run's serving layout where it lies; on S3 it
# downloads the layout into a temporary file first, so its start grows with
# the layout.
#
#   bench/serve_ready_s3.sh [PEOPLE] [SCORE-ARGS...]
#
# For each storage (local, then s3): `faverecs synth` (PEOPLE people, 1 000
# tracked; default 30000, 1.06M favourites), `faverecs score SCORE-ARGS`
# (e.g. --all-users), `faverecs publish`, then ROUNDS (default 3) starts of
# `serve` on CPU 0 (`taskset`), each timed from its start to the first
# `/readyz` 200 (polled every 20 ms from CPU 1), with its peak RSS. Settings
# come from the environment (FAVERECS__...). FAVERECS_BIN picks a built binary
# (else a release build).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/serve_lib.sh
faverecs_bin

people=${1:-30000}
[ $# -gt 0 ] && shift
rounds=${ROUNDS:-3}
work=$PWD/target/bench/serve_ready_s3
rm -rf "$work" && mkdir -p "$work"
port=18095
start_moto $port 1
curl -fs -X PUT "http://127.0.0.1:$port/ready" > /dev/null
export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=testing \
  AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 RUST_LOG=warn
export FAVERECS__DEMO__USERS=$people FAVERECS__DEMO__TRACKED_USERS=1000
serve_port=18096

echo "== $people people, 1000 tracked, score $*"
for where in local s3; do
  if [ "$where" = local ]; then
    export FAVERECS__STORAGE__URL=$work/data
  else
    export FAVERECS__STORAGE__URL=s3://ready/data
  fi
  timed "$where: synth" "$bin" synth
  timed "$where: score $*" "$bin" score "$@"
  run=$(awk '/^run / {print $2; exit}' "$work/out")
  timed "$where: publish" "$bin" publish --run "$run"
  if [ "$where" = local ]; then
    manifest=$(cat "$work/data/runs/$run/manifest.json")
  else
    manifest=$("$venv/bin/python" -c '
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
print(s3.get_object(Bucket="ready", Key=sys.argv[2])["Body"].read().decode())
' "$AWS_ENDPOINT_URL" "data/runs/$run/manifest.json")
  fi
  bytes=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["serving"]["bytes"])' "$manifest")
  printf '  %s: serving layout %.1f MB\n' "$where" "$(awk -v b="$bytes" 'BEGIN {print b / 1e6}')"
  for round in $(seq "$rounds"); do
    start=$(date +%s.%N)
    taskset -c 0 "$bin" serve --addr 127.0.0.1:$serve_port > "$work/serve.log" 2>&1 &
    pid=$!
    ready=""
    for _ in $(seq 30000); do
      kill -0 $pid 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
      if taskset -c 1 curl -fs "http://127.0.0.1:$serve_port/readyz" > /dev/null; then
        ready=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.2f", e - s}')
        break
      fi
      sleep 0.02
    done
    [ -n "$ready" ] || { echo "not ready within 600 s" >&2; cat "$work/serve.log" >&2; exit 1; }
    hwm=$(awk '/VmHWM/ {printf "%d", $2 / 1024}' /proc/$pid/status)
    kill $pid && wait $pid 2>/dev/null || true
    printf '  %s: serve ready in %6.2f s, peak RSS %5d MiB (round %d)\n' "$where" "$ready" "$hwm" "$round"
  done
done
