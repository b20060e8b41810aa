#!/usr/bin/env bash
# Installs what the lab needs, builds the workspace's binaries (the end-to-end tests run
# target/debug/headend) and runs every test. E2E_REQUIRED=1 makes the end-to-end tests
# FAIL, not skip, when they cannot run (not root, openconnect missing).
# Extra arguments go to the test runner (e.g. a test name filter).
# Exit status: the test runner's.
#
# Run as a normal user (rustup's cargo): builds as that user; apt-get and the test
# binaries (network namespaces) get root from sudo, so target/ stays the user's.
# Run as root through sudo: the same, as $SUDO_USER. Run as root (CI): all as root.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
# shellcheck source=netns/as-user.sh
. "$ROOT/netns/as-user.sh"

bash netns/install-deps.sh || { echo "test.sh: netns/install-deps.sh failed" >&2; exit 1; }
require_cargo
as_build_user cargo build --workspace --bins || { echo "test.sh: cargo build failed" >&2; exit 1; }

export E2E_REQUIRED=1
if [ "$(build_user)" != root ]; then
  # Cargo and nextest run as the build user; each test binary runs as root through
  # sudo (cargo's target runner): -E keeps the test environment, -H makes HOME root's.
  triple=$(as_build_user rustc -vV | sed -n 's/^host: //p')
  runner_var="CARGO_TARGET_$(echo "$triple" | tr 'a-z-' 'A-Z_')_RUNNER"
  echo "test.sh: building as $(build_user); test binaries run as root via sudo ($runner_var)" >&2
  as_build_user sudo -v || { echo "test.sh: sudo failed: the end-to-end tests need root" >&2; exit 1; }
  runner_env=("$runner_var=sudo -E -H" "E2E_REQUIRED=1")
else
  runner_env=("E2E_REQUIRED=1")
fi
if as_build_user sh -c 'command -v cargo-nextest >/dev/null 2>&1'; then
  exec_args=(cargo nextest run --workspace --no-fail-fast "$@")
else
  echo "test.sh: cargo-nextest not found; running cargo test" >&2
  exec_args=(cargo test --workspace --no-fail-fast "$@")
fi
as_build_user env "${runner_env[@]}" "${exec_args[@]}"
