#!/usr/bin/env bash
# Benchmark (not a test): `faverecs serve` against nginx serving the same JSON bodies
# as static files, with wrk on loopback, in the same run.
#
#   bench/serve_vs_nginx.sh [PEOPLE] [SECONDS]
#
# Defaults: a synthetic community of 12000 people scored with --all-users (over 10k
# users with up to 100 photo recs each), 15 s per wrk run, three interleaved rounds
# after a discarded 5 s warm-up of each server. Requests pick a random
# user from 2000 per request: GET /api/users/{id}/photos (default limit 20).
#
# Same resources for both servers, per core: the server under test runs on CPU 0
# alone (taskset; nginx with one worker, faverecs's runtime sizes itself to the
# one CPU it may use), and wrk (-t1 -c64) on CPU 1 alone, so the load generator
# never takes the server's core. The ratio reported is per core.
# FAVERECS_BIN uses an already built release binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."

people=${1:-12000}
seconds=${2:-15}
work=target/bench/serve
port_ours=18081
port_nginx=18082

for tool in wrk nginx taskset; do
  if ! command -v "$tool" >/dev/null; then
    sudo_cmd=(); [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get install -y -qq wrk nginx >/dev/null
  fi
done
. bench/serve_lib.sh
faverecs_bin
server_cpu=0
wrk_cpu=1

rm -rf "$work" && mkdir -p "$work/www" "$work/nginx"
export FAVERECS__STORAGE__URL="$PWD/$work/data" RUST_LOG=warn
export FAVERECS__DEMO__USERS=$people FAVERECS__DEMO__TRACKED_USERS=1 FAVERECS__SIMILAR__ENABLED=false
"$bin" synth >/dev/null
"$bin" score --all-users >/dev/null
"$bin" publish >/dev/null

taskset -c $server_cpu "$bin" serve --addr 127.0.0.1:$port_ours > "$work/serve.log" 2>&1 &
ours=$!
trap 'kill $ours ${nginx_pid:-} 2>/dev/null || true' EXIT
wait_ready $port_ours $ours "$work/serve.log"
users_total=$(curl -fs "http://127.0.0.1:$port_ours/api/runs/current" | python3 -c 'import json,sys; m=json.load(sys.stdin)["manifest"]; print(m["rows_in"]["targets"], m["rows_out"]["photo_recs"])')
echo "run: $users_total (users scored, photo recs)"

# 2000 users, and their bodies as static files for nginx.
python3 - "$work" "$port_ours" <<'PY'
import glob, json, os, sys, urllib.request
work, port = sys.argv[1], sys.argv[2]
# Users with recs, from the home page's list (server-rendered, sorted).
html = urllib.request.urlopen(f"http://127.0.0.1:{port}/").read().decode()
users = [u for u in (line.split('href="/users/')[1].split('"')[0] for line in html.split("<li>") if 'href="/users/' in line)][:2000]
with open(f"{work}/users.txt", "w") as f:
    f.write("\n".join(users) + "\n")
for u in users:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/users/{u}/photos").read()
    d = f"{work}/www/api/users/{u}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/photos", "wb") as f:
        f.write(body)
print(f"users in the wrk list: {len(users)}")
PY

cat > "$work/nginx/nginx.conf" <<CONF
user root;
worker_processes 1;
daemon off;
pid $PWD/$work/nginx/nginx.pid;
error_log $PWD/$work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $PWD/$work/nginx/body;
  proxy_temp_path $PWD/$work/nginx/proxy;
  fastcgi_temp_path $PWD/$work/nginx/fastcgi;
  uwsgi_temp_path $PWD/$work/nginx/uwsgi;
  scgi_temp_path $PWD/$work/nginx/scgi;
  server {
    listen 127.0.0.1:$port_nginx;
    root $PWD/$work/www;
    default_type application/json;
    location / { try_files \$uri =404; }
  }
}
CONF
taskset -c $server_cpu nginx -c "$PWD/$work/nginx/nginx.conf" &
nginx_pid=$!
sleep 1

write_pick_lua "$work/pick.lua" "$PWD/$work/users.txt"

run() { taskset -c $wrk_cpu wrk -t1 -c64 -d"${seconds}s" --latency -s "$work/pick.lua" "http://127.0.0.1:$1" > "$work/wrk-$2.txt"; }
summary() {
  local f=$work/wrk-$1.txt
  printf "%s req/s  p50 %s  p99 %s  non-2xx %s\n" \
    "$(awk '/Requests\/sec/ {print $2}' "$f")" \
    "$(awk '$1=="50%" {print $2}' "$f")" "$(awk '$1=="99%" {print $2}' "$f")" \
    "$(awk '/Non-2xx/ {print $4}' "$f" | grep . || echo 0)"
}
# One discarded warm-up run each first: the first requests fault the served
# files' pages in (the run's layout for faverecs, the bodies for nginx).
warm() { taskset -c $wrk_cpu wrk -t1 -c64 -d5s -s "$work/pick.lua" "http://127.0.0.1:$1" > /dev/null; }
warm $port_ours
warm $port_nginx
rounds=3
for round in $(seq $rounds); do
  run $port_ours "faverecs-$round"
  run $port_nginx "nginx-$round"
done
# The unfavourable figure: the same page when the router answers it. A
# browser's request carries Accept-Encoding, which the fast path leaves to the
# router (`identity`: nothing is compressed, so the bodies stay the same).
sed 's|return wrk.format("GET", \(.*\))$|return wrk.format("GET", \1, {["Accept-Encoding"] = "identity"})|' \
  "$work/pick.lua" > "$work/pick-routed.lua"
grep -q identity "$work/pick-routed.lua"
taskset -c $wrk_cpu wrk -t1 -c64 -d"${seconds}s" --latency -s "$work/pick-routed.lua" \
  "http://127.0.0.1:$port_ours" > "$work/wrk-routed.txt"
rss=$(awk '/VmHWM/ {print $2}' /proc/$ours/status)
for round in $(seq $rounds); do
  echo "round $round faverecs: $(summary faverecs-$round)"
  echo "round $round nginx:    $(summary nginx-$round)"
done
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ours_rps=$(cat $work/wrk-faverecs-*.txt | awk '/Requests\/sec/ {print $2}' | median)
nginx_rps=$(cat $work/wrk-nginx-*.txt | awk '/Requests\/sec/ {print $2}' | median)
echo "median req/s, one core each (server on CPU $server_cpu, wrk on CPU $wrk_cpu): faverecs $ours_rps, nginx $nginx_rps, ratio per core $(awk -v a="$ours_rps" -v b="$nginx_rps" 'BEGIN {printf "%.2f", a/b}')"
echo "faverecs, the same page through the router (Accept-Encoding: identity): $(summary routed)"
echo "faverecs serve peak RSS: $((rss / 1024)) MiB"
