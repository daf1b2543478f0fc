# Sourced by the benchmarks (serve_vs_nginx.sh, hot_swap.sh, scale.sh,
# raw_buckets.sh, raw_buckets_s3.sh, serve_ready_s3.sh); not run alone.

# Sets `bin`: FAVERECS_BIN when given (an already built release binary), else a
# release build of this checkout.
faverecs_bin() {
  if [ -z "${FAVERECS_BIN:-}" ]; then
    cargo build --release --locked --bin faverecs
    bin=$PWD/${CARGO_TARGET_DIR:-target}/release/faverecs
  else
    bin=$(realpath "$FAVERECS_BIN")
  fi
}

# Writes a wrk script to $1 that requests GET /api/users/{id}/photos for a user
# picked at random per request from the file $2 (one id a line).
write_pick_lua() {
  cat > "$1" <<LUA
local users = {}
for line in io.lines("$2") do users[#users + 1] = line end
request = function()
  return wrk.format("GET", "/api/users/" .. users[math.random(#users)] .. "/photos")
end
LUA
}

# timed LABEL CMD...: runs CMD (its output in $work/out and $work/err), prints
# LABEL, seconds and peak RSS (MiB); on failure prints CMD's stderr and fails.
timed() {
  local label=$1
  shift
  /usr/bin/time -f "%e %M" -o "$work/t" "$@" > "$work/out" 2> "$work/err" || {
    cat "$work/err" >&2
    return 1
  }
  read -r secs kb < "$work/t"
  printf '  %-40s %8.2f s %8d MiB\n' "$label" "$secs" $((kb / 1024))
}

# wait_ready PORT PID LOG: waits up to 20 s for /readyz on PORT to answer 200
# from the server PID; fails, printing LOG, when PID exits first (for example
# because the port is taken) or never gets ready, so a benchmark never
# measures some other process on the port.
wait_ready() {
  local port=$1 pid=$2 log=$3
  for _ in $(seq 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "the server under test exited before it was ready:" >&2
      cat "$log" >&2
      return 1
    fi
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && return 0
    sleep 0.2
  done
  echo "the server under test was not ready within 20 s:" >&2
  cat "$log" >&2
  return 1
}

# start_moto PORT [CPUS]: starts moto's S3 server on PORT (pinned to CPUS with
# taskset when given; its log in $work/moto.log), installing it into
# target/test-venv first when it is not there; sets `venv` and `moto` (its
# pid), kills it on exit, and waits until it answers.
start_moto() {
  local port=$1 pin=()
  [ $# -gt 1 ] && pin=(taskset -c "$2")
  venv=target/test-venv
  if [ ! -x "$venv/bin/moto_server" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.1'
  fi
  "${pin[@]}" "$venv/bin/moto_server" -p "$port" > "$work/moto.log" 2>&1 &
  moto=$!
  trap 'kill $moto 2>/dev/null; true' EXIT
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/" >/dev/null && return 0; sleep 0.2; done
  echo "moto's server did not answer on port $port:" >&2
  cat "$work/moto.log" >&2
  return 1
}
