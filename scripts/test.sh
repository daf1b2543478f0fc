#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine.
#
# It installs what the tests need before running them: moto's S3 API server (from
# PyPI, into target/test-venv) for the s3:// code path. Extra arguments go to
# `cargo test` (e.g. scripts/test.sh -p faverecs-serve).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/test-venv
if [ ! -x "$venv/bin/moto_server" ]; then
  echo "installing moto[server] into $venv ..."
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.1'
fi
export FAVERECS_MOTO_SERVER="$PWD/$venv/bin/moto_server"

cargo test --workspace --locked "$@"
