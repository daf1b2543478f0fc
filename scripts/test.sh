#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine.
#
# It installs what the tests need before running them:
# - moto's S3 API server (PyPI, into target/test-venv) for the s3:// code path, and
#   pyarrow and duckdb there too, as independent readers of every table;
# - schemathesis (PyPI, into target/fuzz-venv), which fuzzes the served OpenAPI
#   document against a live serve;
# - the `dockerfile` parser (PyPI, into target/infra-venv), for the Dockerfile
#   checks in scripts/infra_tests;
# - Debian's chromium (apt) and playwright-core (npm, into e2e/node_modules) for
#   the browser tests in e2e/;
# - Debian's strace, which kills the binary at chosen syscalls in the
#   kill-anywhere tests (jobs/tests/kill/).
# Extra arguments go to `cargo test` (e.g. scripts/test.sh -p faverecs-serve).
set -euo pipefail
cd "$(dirname "$0")/.."

# Installs scripts/requirements/$1.txt into target/$1-venv, once: the venv keeps
# a copy of the file it was built from and is rebuilt when the file changes. Each
# tool set has its own venv so that their pins never conflict.
venv() {
  local dir=target/$1-venv req=scripts/requirements/$1.txt
  if ! cmp -s "$req" "$dir/requirements.txt"; then
    echo "installing $(grep -v '^#' "$req" | tr '\n' ' ')into $dir ..."
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$dir/requirements.txt"
  fi
}
venv test
venv fuzz
venv infra
export FAVERECS_MOTO_SERVER="$PWD/target/test-venv/bin/moto_server"
# Independent readers for the table-contract test.
export FAVERECS_TEST_PYTHON="$PWD/target/test-venv/bin/python"
export FAVERECS_SCHEMATHESIS="$PWD/target/fuzz-venv/bin/schemathesis"

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

# The deployment files, checked offline (Docker cannot build here).
FAVERECS_BIN="$PWD/target/debug/faverecs" target/infra-venv/bin/python -m unittest discover -s scripts/infra_tests
