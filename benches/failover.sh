#!/usr/bin/env bash
# Cluster failover benchmark (issue 19 item 6): N loadgen sessions (default 1,000)
# on cluster node A (two headends, real redis-server, the lab of
# tests/src/cluster_lab.rs), A killed with SIGKILL, the VIP moved to B as
# keepalived does; every session reconnects with its cookie (loadgen
# --reconnect-on-loss). Prints the time from the kill until B holds all N, each
# with its old address, and the connect latency of N logins on a lone headend and
# on a cluster node. Runs the ignored e2e test `failover_benchmark` against release
# binaries (HEADEND_BIN; loadgen next to it); the lab's node lease is 2 s (LEASE_SECS).
#
# Usage: sudo benches/failover.sh [-n N]
# Takes /work/bench.lock when it exists (benchmarks never overlap on a shared box)
# and prints the load average before and after.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=1000
while [ $# -gt 0 ]; do
  case "$1" in
  -n) N=$2; shift 2 ;;
  *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
[[ "$N" =~ ^[1-9][0-9]*$ ]] && [ "$N" -le 4000 ] || { echo "failover.sh: -n 1..4000 (the /20 pool)" >&2; exit 2; }

cd "$ROOT"
# The two processes measured are release builds; the test harness that drives
# them (namespaces, polling `show vpn-sessiondb`) may stay a debug build.
cargo build --release -p headend --bin headend -p benches --bin loadgen
cargo build -p e2e --test cluster

run() {
  echo "failover.sh: before: $(uptime)" >&2
  HEADEND_BIN="$ROOT/target/release/headend" E2E_REQUIRED=1 FAILOVER_SESSIONS="$N" \
    cargo test -p e2e --test cluster failover_benchmark -- --ignored --nocapture 2>&1 |
    tee >(cat >&2) | grep '^FAILOVER_JSON ' | sed 's/^FAILOVER_JSON //'
  echo "failover.sh: after: $(uptime)" >&2
}

if [ -e /work/bench.lock ] && [ -z "${FAILOVER_LOCKED:-}" ]; then
  FAILOVER_LOCKED=1 exec flock -o /work/bench.lock "$0" -n "$N"
fi
run
