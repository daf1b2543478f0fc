#!/usr/bin/env bash
# Benchmark (not a test): writes and reads of the bucketed raw tables on S3
# (moto's server on loopback, so every request pays a real HTTP round trip but
# no network), for the request pattern rather than absolute S3 speed.
#
#   bench/raw_buckets_s3.sh [PEOPLE] [BUCKETS]
#
# Writes the synthetic community (PEOPLE people, 1000 tracked) into BUCKETS
# buckets on S3, then times an import of one new favourite for 1 % of the
# people, one for 20 people, `raw status` and a default `score`. BINS (default
# FAVERECS_BIN) is a space-separated list of binaries to compare, each on a
# fresh copy of the same data in the same run. Defaults: 30000 people (1.06M
# favourites), 256 buckets. LATENCY_MS (default 0) puts bench/latency_proxy.py
# in front of moto, adding that delay each way to every chunk, as a network
# round trip of twice that would.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/serve_lib.sh
faverecs_bin
bins=${BINS:-$bin}

people=${1:-30000}
buckets=${2:-256}
work=$PWD/target/bench/raw_buckets_s3
rm -rf "$work" && mkdir -p "$work"
port=18090
start_moto $port
endpoint=http://127.0.0.1:$port
latency=${LATENCY_MS:-0}
if [ "$latency" != 0 ]; then
  python3 bench/latency_proxy.py $((port + 1)) $port "$latency" &
  proxy=$!
  trap 'kill $moto $proxy 2>/dev/null; true' EXIT
  sleep 0.5
  endpoint=http://127.0.0.1:$((port + 1))
fi
export AWS_ENDPOINT_URL=$endpoint AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=testing \
  AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 RUST_LOG=warn
export FAVERECS__DEMO__USERS=$people FAVERECS__DEMO__TRACKED_USERS=1000 FAVERECS__STORAGE__RAW_BUCKETS=$buckets

csv() { # csv FILE STEP OFFSET: one new favourite for every STEP-th person
  python3 - "$1" "$people" "$2" "$3" <<'PY'
import sys
path, people, step, offset = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with open(path, "w") as f:
    f.write("user_id,photo_id,owner_id\n")
    for i in range(offset, people, step):
        f.write(f"{20000000 + i * 7}@N0{i % 8},9{offset}{i:09d},5@N05\n")  # community::person_id
PY
}
csv "$work/wide.csv" 100 0
csv "$work/narrow.csv" $((people / 20)) 3
echo "== $people people, $buckets buckets, on moto S3 (+${latency} ms each way); 1 % = $(($(wc -l < "$work/wide.csv") - 1)) people"
n=0
for b in $bins; do
  n=$((n + 1))
  aws_bucket=bench$n
  curl -fs -X PUT "http://127.0.0.1:$port/$aws_bucket" > /dev/null
  export FAVERECS__STORAGE__URL=s3://$aws_bucket/data
  echo "-- $b"
  timed "synth" "$b" synth
  timed "import, 1 % of the people" "$b" import favorites "$work/wide.csv"
  timed "import, 20 people" "$b" import favorites "$work/narrow.csv"
  timed "raw status" "$b" raw status
  timed "score" "$b" score
done
