#!/usr/bin/env bash
# Scale: `loadgen` (benches/src/bin/loadgen.rs) against this headend, then against
# ocserv (Debian, 1.1.6) in its place, in one lab of netns/lab.sh: same address, port,
# certificate, pool (198.18.64.0/18, 16,100 addresses) and user. For each N: idle
# sessions (memory per session, connects/s, connect latency), then the same N with
# traffic (ICMP echo through every tunnel: throughput, loss, RTT), then churn rounds
# (--churn-n sessions connecting and leaving, server RSS after each round). ocserv runs
# only the N up to --ocserv-max (a worker process per session, ~6.5 MB each). Prints
# one side-by-side table with the ratios and one RESULT_JSON line.
#
# Usage: sudo benches/scale.sh [-n "100 1000"] [--only headend|ocserv]
#          [--transport dtls|cstp] [--pps P] [--size B] [-t SECS] [--concurrency C]
#          [--rate R] [--churn ROUNDS] [--churn-n N] [--ocserv-max N] [--burst]
#   --burst: the traffic run is one ICMP echo per session, all sent at once once every
#            session is up (vpn0 TX dropped and the headend_dataplane_drops of /metrics
#            are logged after each headend run)
#   HEADEND_BIN, LOADGEN_BIN  binaries to use (default: target/release/*, built if missing)
#
# Needs root, ocserv/ocpasswd (netns/install-deps.sh) and jq. Everything it starts is
# stopped and the lab removed on exit, also on failure or Ctrl-C. The machine is
# shared: the load average is printed with every row; compare ratios of one run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=benches/bench-lib.sh
. "$ROOT/benches/bench-lib.sh"
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
CHURN_N=""
OCSERV_MAX=2000
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
  --churn-n) CHURN_N=$2; shift 2 ;;
  --ocserv-max) OCSERV_MAX=$2; shift 2 ;;
  --burst) BURST=1; shift ;;
  -h | --help) usage ;;
  *) echo "scale.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
case "$ONLY" in "") SERVERS=(headend ocserv) ;; headend | ocserv) SERVERS=("$ONLY") ;; *) die "--only headend|ocserv" ;; esac
[ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces)"
for p in ip jq ss; do command -v "$p" >/dev/null || die "'$p' not found"; done
MAXN=0
for n in $NS_LIST; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] && [ "$n" -le 16000 ] || die "-n wants counts of 1..16000 (the /18 pool), not '$n'"
  [ "$n" -gt "$MAXN" ] && MAXN=$n
done
[ -n "$CHURN_N" ] || CHURN_N=$((MAXN < 1000 ? MAXN : 1000))
[[ "$CHURN_N" =~ ^[1-9][0-9]*$ ]] && [ "$CHURN_N" -le 16000 ] || die "--churn-n: 1..16000"
[ "$CHURN_N" -gt "$MAXN" ] && MAXN=$CHURN_N
[[ "$OCSERV_MAX" =~ ^[0-9]+$ ]] || die "--ocserv-max wants a count"
# Two fds per DTLS session in loadgen (TCP + its UDP socket) and one or more in the
# servers: 10,000 sessions need more than this box's hard limit of 20,000. Root
# may raise it; loadgen and the headend raise their soft limit to it.
ulimit -Hn 65536 2>/dev/null && ulimit -Sn 65536 || log "could not raise RLIMIT_NOFILE (hard $(ulimit -Hn))"
# Sessions one loadgen process can hold within its RLIMIT_NOFILE; above that, helper
# processes hold the rest (idle, `--wait-stdin`) and the measured one connects the
# remainder while they are up (so its connect figures are with them existing).
FDS_PER=1
[ "$TRANSPORT" = dtls ] && FDS_PER=2
LG_CAP=${LG_CAP:-$((($(ulimit -Hn) - 200) / FDS_PER))}

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
HELPERS=()
OCSERV_PID=""
HEADEND_RUNNING=0

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  [ "$rc" -ne 0 ] && for f in "$DIR/headend.log" "$DIR/ocserv.log"; do [ -s "$f" ] && tail -n 20 "$f" >&2; done
  for p in "${HELPERS[@]}"; do stop_pid "$p"; done
  [ "$HEADEND_RUNNING" -eq 1 ] && stop_pid "$(cat "$DIR/headend.pid" 2>/dev/null)"
  [ -n "$OCSERV_PID" ] && stop_pid "$OCSERV_PID"
  # The servers' logs stay with the results (why a login failed is in them).
  for f in "$DIR/headend.log" "$DIR/ocserv.log"; do [ -s "$f" ] && cp "$f" "$WORK/"; done
  [ "$LAB_UP" -eq 1 ] && bash "$LAB" down "$ID" >/dev/null 2>&1
  log "results kept in $WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


bash "$LAB" up "$ID" >/dev/null || die "lab.sh up failed"
LAB_UP=1
PIN="pin-sha256:$(cat "$DIR/pin")"
# A /20 pool and one user that may log in MAXN times.
sed -i 's/^ip local pool VPN-POOL .*/ip local pool VPN-POOL 198.18.64.10-198.18.127.250 mask 255.255.192.0/' "$DIR/headend.cfg"
printf '!\ngroup-policy GP-EMPLOYEES attributes\n vpn-simultaneous-logins %s\nusername %s password %s\n' \
  "$((MAXN + 16))" "$USER_NAME" "$PASSWORD" >>"$DIR/headend.cfg"

SERVER_PID=""
server_rss() { awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status"; }
# hold N: helper loadgens (each at most LG_CAP sessions) hold N idle sessions until
# release; returns once all of them are up (or have given up).
hold() {
  local left=$1 k=0 chunk
  HELPERS=()
  while [ "$left" -gt 0 ]; do
    chunk=$((left < LG_CAP ? left : LG_CAP))
    mkfifo "$WORK/hold-$k.in"
    ip netns exec "$NS_C" "$LOADGEN_BIN" --server "https://$OUTSIDE_IP/" --servercert "$PIN" \
      --user "$USER_NAME" --password "$PASSWORD" --group LOCAL-PW -n "$chunk" \
      --concurrency "$CONC" --rate "$RATE" --transport "$TRANSPORT" --pps 0 --duration 0 --drain 0 \
      --wait-stdin --quiet <"$WORK/hold-$k.in" >"$WORK/hold-$k.out" 2>>"$WORK/loadgen.log" &
    HELPERS+=("$!")
    eval "exec $((20 + k))>\"\$WORK/hold-$k.in\""
    wait_for 1200 grep -q LOADGEN_READY "$WORK/hold-$k.out" || log "hold: helper $k not ready after 1200 s"
    left=$((left - chunk))
    k=$((k + 1))
  done
}
# release: the helpers log out; HELD_UP = how many sessions they had up.
HELD_UP=0
release() {
  local k pid up=0
  for k in "${!HELPERS[@]}"; do
    eval "echo >&$((20 + k)); exec $((20 + k))>&-"
  done
  for k in "${!HELPERS[@]}"; do
    pid=${HELPERS[$k]}
    wait "$pid" || true
    up=$((up + $(sed -n 's/^RESULT_JSON //p' "$WORK/hold-$k.out" | jq '.up // 0')))
    rm -f "$WORK/hold-$k.in"
  done
  HELPERS=()
  HELD_UP=$up
}

# run SERVER N MODE [loadgen sampling args...]: one loadgen run, its RESULT_JSON
# tagged and appended to $RESULTS. Above LG_CAP sessions, helpers hold the first
# N - M and the measured run connects the last M (its traffic, if any, is theirs
# only); memory per session is then the server's RSS with all N up minus before.
run() {
  local server=$1 n=$2 mode=$3; shift 3
  local pps=0 dur=3 load json m=$n held=0 parts rss0=0
  [ "$mode" = traffic ] && pps=$PPS && dur=$DURATION
  # --burst: the traffic run is one echo per session, all sent at once when
  # every session is up (where a loss is counted: loadgen's echo loss, the
  # TUN's TX dropped below, the headend's drop counters in its log).
  [ "$mode" = traffic ] && [ "${BURST:-0}" = 1 ] && set -- "$@" --burst --count 1 && pps=1
  load=$(loadavg)
  if [ "$n" -gt "$LG_CAP" ]; then
    [ -n "$SERVER_PID" ] || die "$n sessions need helper processes: only with the headend's pid"
    parts=$(((n + LG_CAP - 1) / LG_CAP))
    m=$((n / parts))
    held=$((n - m))
    rss0=$(server_rss)
    log "$server: $held sessions held by helpers first (LG_CAP $LG_CAP)"
    hold "$held"
  fi
  log "$server: $n sessions, $mode (load $load)"
  json=$(ip netns exec "$NS_C" "$LOADGEN_BIN" --server "https://$OUTSIDE_IP/" --servercert "$PIN" \
    --user "$USER_NAME" --password "$PASSWORD" --group LOCAL-PW -n "$m" \
    --concurrency "$CONC" --rate "$RATE" --transport "$TRANSPORT" --pps "$pps" --size "$SIZE" \
    --duration "$dur" --drain 10 --csv "$WORK/$server-$n-$mode.csv" --svg "$WORK/$server-$n-$mode.svg" \
    --quiet "$@" 2>>"$WORK/loadgen.log" | sed -n 's/^RESULT_JSON //p') || true
  [ -n "$json" ] || die "loadgen gave no result ($WORK/loadgen.log)"
  if [ "$held" -gt 0 ]; then
    release
    json=$(jq -c --argjson held "$held" --argjson hu "$HELD_UP" --argjson rss0 "$rss0" --argjson n "$n" '
      .measured = .sessions | .held = $held | .held_up = $hu | .up += $hu | .sessions = $n
      | .server.rss_kib_per_session = (if .server.up then (.server.up.rss_kib - $rss0) / $n else null end)' <<<"$json")
  fi
  jq -c --arg s "$server" --arg m "$mode" --arg l "$load" --argjson n "$n" \
    '{side: $s, n: $n, mode: $m, load: $l} + .' <<<"$json" >>"$RESULTS"
  if [ "$server" = headend ]; then
    log "after $n $mode: $(ip -n "$NS_G" -s link show vpn0 2>/dev/null | tr -s ' \n' ' ')"
    # The headend's own drop counters (netns/lab.sh serves /metrics on port 9273).
    log "after $n $mode: $(ip netns exec "$NS_G" curl -sf --max-time 5 "http://$OUTSIDE_IP:9273/metrics" |
      grep '^headend_dataplane_drops' | tr '\n' ' ')"
  fi
  # Every session must be gone before the next run.
  wait_for "$HANG" sh -c "[ \"\$(ip netns exec '$NS_G' ss -Htn state established 'sport = :443' | wc -l)\" -eq 0 ]" ||
    log "connections still open after the run"
}

series() {
  local server=$1; shift
  local n r max=16000
  [ "$server" = ocserv ] && max=$OCSERV_MAX
  for n in $NS_LIST; do
    [ "$n" -le "$max" ] || { log "$server: skipping $n sessions (--ocserv-max $max)"; continue; }
    run "$server" "$n" idle "$@"
    run "$server" "$n" traffic "$@"
  done
  [ "$CHURN_N" -le "$max" ] || return 0
  for r in $(seq 1 "$CHURN"); do run "$server" "$CHURN_N" "churn$r" "$@"; done
}

for server in "${SERVERS[@]}"; do
  case $server in
  headend)
    # /metrics for the headend's drop counters, logged after each run.
    case " ${HEADEND_ARGS:-} " in
    *" --metrics-listen "*) ;;
    *) export HEADEND_ARGS="${HEADEND_ARGS:-} --metrics-listen $OUTSIDE_IP:9273" ;;
    esac
    bash "$LAB" start "$ID" >/dev/null || die "lab.sh start failed"
    HEADEND_RUNNING=1
    SERVER_PID=$(cat "$DIR/headend.pid")
    series headend --server-pid "$SERVER_PID"
    SERVER_PID=""
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
ipv4-network = 198.18.64.0
ipv4-netmask = 255.255.192.0
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
