#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine.
#
# It installs what the tests need before running them:
# - moto's S3 API server (PyPI, into target/test-venv) for the s3:// code path, and
#   pyarrow and duckdb there too, as independent readers of every table;
# - Debian's chromium (apt) and playwright-core (npm, into e2e/node_modules) for
#   the browser tests in e2e/;
# - Debian's strace, which kills the binary at chosen syscalls in the
#   kill-anywhere tests (jobs/tests/kill/).
# Extra arguments go to `cargo test` (e.g. scripts/test.sh -p faverecs-serve).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/test-venv
if [ ! -x "$venv/bin/moto_server" ] || ! "$venv/bin/python" -c 'import pyarrow, duckdb' 2>/dev/null; then
  echo "installing moto[server], pyarrow and duckdb into $venv ..."
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.1' 'pyarrow==26.0.1' 'duckdb==1.4.*'
fi
export FAVERECS_MOTO_SERVER="$PWD/$venv/bin/moto_server"
# Independent readers for the table-contract test.
export FAVERECS_TEST_PYTHON="$PWD/$venv/bin/python"

if [ ! -x /usr/bin/chromium ] || ! /usr/bin/chromium --version >/dev/null 2>&1; then
  echo "installing Debian's chromium ..."
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq chromium >/dev/null
fi
if ! command -v strace >/dev/null 2>&1; then
  echo "installing strace (for the kill-anywhere tests) ..."
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq strace >/dev/null
fi
if [ ! -d e2e/node_modules/playwright-core ]; then
  echo "installing playwright-core into e2e/node_modules ..."
  (cd e2e && npm ci --no-audit --no-fund --silent)
fi

# The house rule: no module imports another that imports it back.
python3 scripts/module_cycles.py pipeline/src serve/src

cargo test --workspace --locked "$@"

# The browser tests drive the real binary.
cargo build --locked --bin faverecs
node --test e2e/
