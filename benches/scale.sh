#!/usr/bin/env bash
# Scale: `loadgen` (benches/src/bin/loadgen.rs) against this headend, then against
# ocserv (Debian, 1.1.6) in its place, in one lab of netns/lab.sh: same address, port,
# certificate, pool (198.18.112.0/20, 4,000 addresses) and user. For each N: idle
# sessions (memory per session, connects/s, connect latency), then the same N with
# traffic (ICMP echo through every tunnel: throughput, loss, RTT), then churn rounds
# (N sessions connecting and leaving, server RSS after each round). Prints one
# side-by-side table with the ratios and one RESULT_JSON line.
#
# Usage: sudo benches/scale.sh [-n "100 1000"] [--only headend|ocserv]
#          [--transport dtls|cstp] [--pps P] [--size B] [-t SECS] [--concurrency C]
#          [--rate R] [--churn ROUNDS]
#   HEADEND_BIN, LOADGEN_BIN  binaries to use (default: target/release/*, built if missing)
#
# Needs root, ocserv/ocpasswd (netns/install-deps.sh) and jq. Everything it starts is
# stopped and the lab removed on exit, also on failure or Ctrl-C. The machine is
# shared: the load average is printed with every row; compare ratios of one run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB="$ROOT/netns/lab.sh"
NS_LIST="100 1000"
ONLY=""
TRANSPORT=dtls
PPS=10
SIZE=1000
DURATION=10
CONC=64
RATE=0
CHURN=3
HANG=60
OUTSIDE_IP=198.18.0.1
USER_NAME=lg
PASSWORD="Scale-$RANDOM-$RANDOM"

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}
die() { echo "scale.sh: $*" >&2; exit 1; }
log() { echo "scale.sh: $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
  -n) NS_LIST=$2; shift 2 ;;
  --only) ONLY=$2; shift 2 ;;
  --transport) TRANSPORT=$2; shift 2 ;;
  --pps) PPS=$2; shift 2 ;;
  --size) SIZE=$2; shift 2 ;;
  -t) DURATION=$2; shift 2 ;;
  --concurrency) CONC=$2; shift 2 ;;
  --rate) RATE=$2; shift 2 ;;
  --churn) CHURN=$2; shift 2 ;;
  -h | --help) usage ;;
  *) echo "scale.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
case "$ONLY" in "") SERVERS=(headend ocserv) ;; headend | ocserv) SERVERS=("$ONLY") ;; *) die "--only headend|ocserv" ;; esac
[ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces)"
for p in ip jq ss; do command -v "$p" >/dev/null || die "'$p' not found"; done
MAXN=0
for n in $NS_LIST; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] && [ "$n" -le 4000 ] || die "-n wants counts of 1..4000 (the /20 pool), not '$n'"
  [ "$n" -gt "$MAXN" ] && MAXN=$n
done

target=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -z "${HEADEND_BIN:-}" ] || [ -z "${LOADGEN_BIN:-}" ]; then
  if [ ! -x "$target/release/headend" ] || [ ! -x "$target/release/loadgen" ]; then
    log "building: cargo build --release -p headend -p benches --bins"
    (cd "$ROOT" && cargo build --release -p headend -p benches --bins) || die "build failed"
  fi
fi
export HEADEND_BIN=${HEADEND_BIN:-$target/release/headend}
LOADGEN_BIN=${LOADGEN_BIN:-$target/release/loadgen}
[ -x "$HEADEND_BIN" ] && [ -x "$LOADGEN_BIN" ] || die "missing $HEADEND_BIN or $LOADGEN_BIN"

ID="scale$$"
NS_C="vpnc-$ID"
NS_G="vpngw-$ID"
DIR="/tmp/headend-lab-$ID"
WORK=$(mktemp -d /tmp/headend-scale.XXXXXX)
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
LAB_UP=0
OCSERV_PID=""
HEADEND_RUNNING=0

stop_pid() {
  local pid=$1 n=0
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null && [ "$n" -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  [ "$rc" -ne 0 ] && for f in "$DIR/headend.log" "$DIR/ocserv.log"; do [ -s "$f" ] && tail -n 20 "$f" >&2; done
  [ "$HEADEND_RUNNING" -eq 1 ] && stop_pid "$(cat "$DIR/headend.pid" 2>/dev/null)"
  [ -n "$OCSERV_PID" ] && stop_pid "$OCSERV_PID"
  [ "$LAB_UP" -eq 1 ] && bash "$LAB" down "$ID" >/dev/null 2>&1
  log "results kept in $WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_for() {
  local secs=$1; shift
  local end=$((SECONDS + secs))
  until "$@"; do [ "$SECONDS" -ge "$end" ] && return 1; sleep 0.2; done
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

bash "$LAB" up "$ID" >/dev/null || die "lab.sh up failed"
LAB_UP=1
PIN="pin-sha256:$(cat "$DIR/pin")"
# A /20 pool and one user that may log in MAXN times.
sed -i 's/^ip local pool VPN-POOL .*/ip local pool VPN-POOL 198.18.112.10-198.18.127.250 mask 255.255.240.0/' "$DIR/headend.cfg"
printf '!\ngroup-policy GP-EMPLOYEES attributes\n vpn-simultaneous-logins %s\nusername %s password %s\n' \
  "$((MAXN + 16))" "$USER_NAME" "$PASSWORD" >>"$DIR/headend.cfg"

# run SERVER N MODE [loadgen sampling args...]: one loadgen run, its RESULT_JSON
# tagged and appended to $RESULTS.
run() {
  local server=$1 n=$2 mode=$3; shift 3
  local pps=0 dur=3 load json
  [ "$mode" = traffic ] && pps=$PPS && dur=$DURATION
  load=$(loadavg)
  log "$server: $n sessions, $mode (load $load)"
  json=$(ip netns exec "$NS_C" "$LOADGEN_BIN" --server "https://$OUTSIDE_IP/" --servercert "$PIN" \
    --user "$USER_NAME" --password "$PASSWORD" --group LOCAL-PW -n "$n" \
    --concurrency "$CONC" --rate "$RATE" --transport "$TRANSPORT" --pps "$pps" --size "$SIZE" \
    --duration "$dur" --drain 10 --csv "$WORK/$server-$n-$mode.csv" --svg "$WORK/$server-$n-$mode.svg" \
    --quiet "$@" 2>>"$WORK/loadgen.log" | sed -n 's/^RESULT_JSON //p') || true
  [ -n "$json" ] || die "loadgen gave no result ($WORK/loadgen.log)"
  jq -c --arg s "$server" --arg m "$mode" --arg l "$load" --argjson n "$n" \
    '{side: $s, n: $n, mode: $m, load: $l} + .' <<<"$json" >>"$RESULTS"
  # Every session must be gone before the next run.
  wait_for "$HANG" sh -c "[ \"\$(ip netns exec '$NS_G' ss -Htn state established 'sport = :443' | wc -l)\" -eq 0 ]" ||
    log "connections still open after the run"
}

series() {
  local server=$1; shift
  local n r
  for n in $NS_LIST; do
    run "$server" "$n" idle "$@"
    run "$server" "$n" traffic "$@"
  done
  for r in $(seq 1 "$CHURN"); do run "$server" "$MAXN" "churn$r" "$@"; done
}

for server in "${SERVERS[@]}"; do
  case $server in
  headend)
    bash "$LAB" start "$ID" >/dev/null || die "lab.sh start failed"
    HEADEND_RUNNING=1
    series headend --server-pid "$(cat "$DIR/headend.pid")"
    stop_pid "$(cat "$DIR/headend.pid")"
    HEADEND_RUNNING=0
    wait_for "$HANG" sh -c "! ip -n '$NS_G' link show vpn0 2>/dev/null" || true
    ;;
  ocserv)
    for p in ocserv ocpasswd; do command -v "$p" >/dev/null || die "'$p' not found"; done
    printf '%s\n%s\n' "$PASSWORD" "$PASSWORD" | ocpasswd -c "$DIR/ocpasswd" "$USER_NAME" >/dev/null
    # The e2e control's settings (tests/src/ocserv.rs), sized for MAXN clients.
    cat >"$DIR/ocserv.conf" <<EOF
auth = "plain[passwd=$DIR/ocpasswd]"
listen-host = $OUTSIDE_IP
tcp-port = 443
udp-port = 443
run-as-user = root
run-as-group = root
socket-file = $DIR/ocserv.sock
pid-file = $DIR/ocserv.pid
server-cert = $DIR/server-cert.pem
server-key = $DIR/server-key.pem
isolate-workers = false
use-occtl = false
max-clients = $((MAXN + 16))
max-same-clients = 0
keepalive = 32400
dpd = 90
try-mtu-discovery = false
auth-timeout = 240
cookie-timeout = 300
rate-limit-ms = 0
deny-roaming = false
rekey-time = 172800
rekey-method = new-tunnel
device = vpns
predictable-ips = true
ipv4-network = 198.18.112.0
ipv4-netmask = 255.255.240.0
dns = 198.18.1.53
route = 198.18.1.0/255.255.255.0
mtu = 1456
EOF
    ip netns exec "$NS_G" ocserv -f -d 1 -c "$DIR/ocserv.conf" </dev/null >>"$DIR/ocserv.log" 2>&1 &
    OCSERV_PID=$!
    wait_for "$HANG" sh -c "ip netns exec '$NS_G' ss -Hltn 'sport = :443' | grep -q ." || die "ocserv not listening"
    series ocserv --server-netns "$NS_G"
    stop_pid "$OCSERV_PID"
    OCSERV_PID=""
    ;;
  esac
done

# One table: a row per (N, mode), headend and ocserv side by side.
echo
echo "transport $TRANSPORT, $PPS pps x $SIZE B per session with traffic, concurrency $CONC, rate $RATE"
jq -rs '
  def r(x): if x == null then "-" else (x * 100 | round / 100 | tostring) end;
  def ratio(a; b): if a == null or b == null or b == 0 then "-" else r(a / b) end;
  (group_by([.n, .mode]) | .[]) as $g
  | ($g | map(select(.side == "headend")) | .[0]) as $h
  | ($g | map(select(.side == "ocserv")) | .[0]) as $o
  | [$g[0].n, $g[0].mode,
     "\($h.up // "-")/\($o.up // "-")",
     r($h.server.rss_kib_per_session), r($o.server.rss_kib_per_session),
     r($h.connects_per_s), r($o.connects_per_s), ratio($h.connects_per_s; $o.connects_per_s),
     r($h.connect_ms.p99), r($o.connect_ms.p99),
     r($h.hold.rx_gbit_s), r($o.hold.rx_gbit_s),
     r($h.echo.loss_pct), r($o.echo.loss_pct),
     r($h.echo.rtt_ms.p99), r($o.echo.rtt_ms.p99),
     r(($h.server.end.rss_kib // null) | if . == null then null else . / 1024 end),
     r(($o.server.end.rss_kib // null) | if . == null then null else . / 1024 end),
     ($h.load // $o.load)]
  | @tsv' "$RESULTS" |
  { printf 'N\tmode\tup h/o\tKiB/sess h\tKiB/sess o\tconn/s h\tconn/s o\tconn/s h:o\tp99 ms h\tp99 ms o\tdown Gbit/s h\tdown Gbit/s o\tloss%% h\tloss%% o\trtt p99 h\trtt p99 o\tRSS end MiB h\tRSS end MiB o\tload\n'; cat; } |
  column -t -s $'\t'
echo "RESULT_JSON $(jq -cs . "$RESULTS")"
