#!/usr/bin/env bash
# Installs what the lab needs, builds the workspace's binaries (the end-to-end tests run
# target/debug/headend) and runs every test. E2E_REQUIRED=1 makes the end-to-end tests
# FAIL, not skip, when they cannot run (not root, openconnect missing).
# Extra arguments go to the test runner (e.g. a test name filter).
# Exit status: the test runner's.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

bash netns/install-deps.sh || { echo "test.sh: netns/install-deps.sh failed" >&2; exit 1; }
cargo build --workspace --bins || { echo "test.sh: cargo build failed" >&2; exit 1; }

export E2E_REQUIRED=1
if command -v cargo-nextest >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  echo "test.sh: cargo-nextest not found; running cargo test" >&2
  exec cargo test --workspace --no-fail-fast "$@"
fi
