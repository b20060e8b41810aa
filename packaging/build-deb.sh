#!/usr/bin/env bash
# Builds target/debian/headend_VERSION_ARCH.deb: the release binary, its man pages
# and shell completions (`headend generate-assets`), the systemd unit, the example
# configs and the Grafana dashboard (see [package.metadata.deb] in headend/Cargo.toml).
# Needs the build dependencies of the README's Install section and cargo-deb
# (`cargo install --locked cargo-deb`).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
command -v cargo-deb >/dev/null 2>&1 || { echo "build-deb.sh: cargo-deb not found: cargo install --locked cargo-deb" >&2; exit 1; }
cargo build --release -p headend --bin headend
rm -rf target/assets
target/release/headend generate-assets --out target/assets
cargo deb -p headend --no-build "$@"
ls -1 target/debian/*.deb
