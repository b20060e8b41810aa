#!/usr/bin/env bash
# Side-by-side throughput: this headend vs ocserv (Debian) with the same stock
# openconnect client, in the network-namespace lab of netns/lab.sh.
#
# One lab (same namespaces, certificate, users, pool 198.18.100.0/24), used twice: first
# with the headend, then with ocserv in its place (both want 198.18.0.1:443). For each
# server and each transport (DTLS = PSK-NEGOTIATE; DTLS-RESUME = session-resume mode as
# Cisco clients use, `--dtls12-ciphers=AES256-GCM-SHA384`; CSTP = `openconnect --no-dtls`) it runs iperf3
# upload (`iperf3 -c 198.18.1.10 -t N -J`) and download (`-R`) to the inside host and
# prints Gbit/s, the ratio headend/ocserv, the server's CPU seconds per GB (utime+stime
# of the headend process; of ALL ocserv processes in the headend namespace: main,
# sec-mod, workers) and openconnect's CPU seconds per GB, plus the raw veth ceiling
# (client ns -> headend ns with IP forwarding -> inside ns, no tunnel).
# It measures and prints; it asserts nothing about speed.
#
# Usage: sudo benches/compare.sh [-t SECONDS] [--only headend|ocserv] [--keep]
#   HEADEND_BIN   headend binary (default: `cargo build --release -p headend` here)
#   HEADEND_ARGS  extra `headend run` arguments (passed through netns/lab.sh)
#   --keep        keep iperf3's JSON and the headend's and ocserv's logs
#   TRANSPORTS    which of "dtls dtls-resume cstp" to run (default: all three)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
# shellcheck source=benches/bench-lib.sh
. "$HERE/bench-lib.sh"
LAB="$ROOT/netns/lab.sh"
INSIDE_HOST=198.18.1.10
OUTSIDE_IP=198.18.0.1
USER_NAME=alice
TUN_CLIENT=tun-alice
# Default tunnel MTU when the headend did not run first (--only ocserv): what the
# headend gives openconnect 9.01 in this lab (it honours openconnect's X-CSTP-MTU 1390).
DEFAULT_MTU=1390
# ocserv's `mtu` is its link MTU: it subtracts its own overhead, 66 bytes with DTLS 1.2
# PSK AES-GCM (IP 20 + UDP 8 + DTLS 13 + nonce 8 + tag 16 + type 1), 28 without DTLS.
OCSERV_DTLS_OVERHEAD=66
OCSERV_CSTP_OVERHEAD=28
HANG=30 # hang guard in seconds for things that should happen soon (not a speed check)

DURATION=10
ONLY=""
KEEP=0

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}
die() { echo "compare.sh: $*" >&2; exit 1; }
log() { echo "compare.sh: $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
  -t) [ $# -ge 2 ] || usage; DURATION=$2; shift 2 ;;
  -t*) DURATION=${1#-t}; shift ;;
  --only) [ $# -ge 2 ] || usage; ONLY=$2; shift 2 ;;
  --only=*) ONLY=${1#--only=}; shift ;;
  --keep) KEEP=1; shift ;;
  -h | --help) usage ;;
  *) echo "compare.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "-t wants a whole number of seconds, not '$DURATION'"
case "$ONLY" in
"") SERVERS=(headend ocserv) ;;
headend | ocserv) SERVERS=("$ONLY") ;;
*) die "--only wants headend or ocserv, not '$ONLY'" ;;
esac

[ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces)"
for p in ip openconnect openssl iperf3 jq ss awk column timeout getconf; do
  command -v "$p" >/dev/null || die "'$p' not found (netns/install-deps.sh installs the lab's tools; jq: apt-get install jq)"
done
if [[ " ${SERVERS[*]} " == *" ocserv "* ]]; then
  for p in ocserv ocpasswd; do command -v "$p" >/dev/null || die "'$p' not found (netns/install-deps.sh)"; done
fi
CLK_TCK=$(getconf CLK_TCK)

if [[ " ${SERVERS[*]} " == *" headend "* ]] && [ -z "${HEADEND_BIN:-}" ]; then
  log "building the headend: cargo build --release -p headend"
  (cd "$ROOT" && cargo build --release -p headend) || die "cargo build failed"
  target=${CARGO_TARGET_DIR:-$ROOT/target}
  [[ "$target" = /* ]] || target="$ROOT/$target"
  HEADEND_BIN="$target/release/headend"
fi
if [ -n "${HEADEND_BIN:-}" ]; then
  [ -x "$HEADEND_BIN" ] || die "HEADEND_BIN=$HEADEND_BIN is not an executable"
  export HEADEND_BIN
fi

# A lab id of our own: lab.sh names vpnc-ID, vpngw-ID, inside-ID and /tmp/headend-lab-ID.
# ("bench<pid>" does not look like a test lab's "<pid>-<n>", so the tests' stale-lab
# sweeper leaves it alone.)
ID="bench$$"
while [ -e "/run/netns/vpngw-$ID" ] || [ -e "/run/netns/vpnc-$ID" ] ||
  [ -e "/run/netns/inside-$ID" ] || [ -e "/tmp/headend-lab-$ID" ]; do
  ID="bench$$x$RANDOM"
done
NS_C="vpnc-$ID"
NS_G="vpngw-$ID"
NS_I="inside-$ID"
DIR="/tmp/headend-lab-$ID"
WORK=$(mktemp -d /tmp/headend-compare.XXXXXX)
RESULTS="$WORK/runs.jsonl"
: >"$RESULTS"

LAB_UP=0
IPERF_PID=""
OCSERV_PID=""
HEADEND_RUNNING=0
CEILING_ROUTE=0

# ---------------------------------------------------------------- cleanup


show_logs() {
  local f
  for f in "$DIR/oc-$USER_NAME.log" "$DIR/headend.log" "$DIR/ocserv.log" "$WORK/iperf3-server.log"; do
    [ -s "$f" ] || continue
    echo "---- last lines of $f" >&2
    tail -n 25 "$f" >&2
  done
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [ "$rc" -ne 0 ]; then
    log "failed (exit $rc); logs:"
    show_logs
  fi
  [ "$CEILING_ROUTE" -eq 1 ] && ip -n "$NS_C" route del "198.18.1.0/24" 2>/dev/null
  disconnect_client
  [ "$HEADEND_RUNNING" -eq 1 ] && stop_headend
  # The servers' logs (the headend's `DTLS pacing:` lines) go with the lab.
  [ "$KEEP" -eq 1 ] && cp "$DIR"/headend.log "$DIR"/ocserv.log "$WORK"/ 2>/dev/null
  [ -n "$OCSERV_PID" ] && stop_ocserv
  [ -n "$IPERF_PID" ] && stop_pid "$IPERF_PID"
  # lab.sh down stops whatever is left in the three namespaces, deletes them and $DIR.
  [ "$LAB_UP" -eq 1 ] && bash "$LAB" down "$ID" >/dev/null 2>&1
  if [ "$KEEP" -eq 1 ]; then
    log "kept iperf3 JSON and logs in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers




server_pids() {
  case "$1" in
  headend) cat "$DIR/headend.pid" ;;
  # Everything in the headend namespace is ocserv (main, sec-mod, one worker per client).
  ocserv) ip netns pids "$NS_G" ;;
  esac
}


client_mtu() {
  ip -n "$NS_C" -o link show dev "$TUN_CLIENT" | sed -n 's/.* mtu \([0-9]*\) .*/\1/p'
}

# ---------------------------------------------------------------- servers

start_headend() {
  bash "$LAB" start "$ID" || die "lab.sh start failed"
  HEADEND_RUNNING=1
  log "headend $(cat "$DIR/headend.pid"): $HEADEND_BIN ${HEADEND_ARGS:-}"
}

stop_headend() {
  stop_pid "$(cat "$DIR/headend.pid" 2>/dev/null)"
  rm -f "$DIR/headend.pid"
  HEADEND_RUNNING=0
  # Its TUN goes with it; ocserv comes next in the same namespace.
  wait_for "$HANG" sh -c "! ip -n '$NS_G' link show vpn0" || log "vpn0 still present after the headend stopped"
}

# `show vpn-sessiondb ARGS`.
headend_show() {
  "$HEADEND_BIN" show vpn-sessiondb "$@" --admin-socket "$DIR/admin.sock"
}

# Whether a live session's Protocol lists DTLS-Tunnel (the summary view's
# DTLS-Tunnel row also counts ended sessions, so read the detail view).
headend_dtls_live() {
  headend_show detail anyconnect | grep -q '^Protocol *:.*DTLS-Tunnel'
}

# ocserv with the e2e control's settings (tests/src/ocserv.rs); $1 = its `mtu`.
start_ocserv() {
  local mtu=$1 u pw
  if [ ! -s "$DIR/ocpasswd" ]; then
    for u in alice bob; do
      pw=$(cat "$DIR/password-$u")
      printf '%s\n%s\n' "$pw" "$pw" | ocpasswd -c "$DIR/ocpasswd" "$u" >/dev/null || die "ocpasswd $u"
    done
  fi
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
max-clients = 16
max-same-clients = 4
keepalive = 32400
dpd = 90
try-mtu-discovery = false
auth-timeout = 240
cookie-timeout = 300
deny-roaming = false
rekey-time = 172800
rekey-method = new-tunnel
device = vpns
predictable-ips = true
ipv4-network = 198.18.100.0
ipv4-netmask = 255.255.255.0
dns = 198.18.1.53
default-domain = corp.example
route = 198.18.1.0/255.255.255.0
mtu = $mtu
EOF
  # `ip netns exec` execs ocserv, so $! is ocserv-main's pid.
  ip netns exec "$NS_G" ocserv -f -d 1 -c "$DIR/ocserv.conf" </dev/null >>"$DIR/ocserv.log" 2>&1 &
  OCSERV_PID=$!
  if ! wait_for "$HANG" sh -c "ip netns exec '$NS_G' ss -Hltn 'sport = :443' | grep -q . &&
      ip netns exec '$NS_G' ss -Hlun 'sport = :443' | grep -q ."; then
    die "ocserv (pid $OCSERV_PID) is not listening on $OUTSIDE_IP:443 after ${HANG}s"
  fi
  kill -0 "$OCSERV_PID" 2>/dev/null || die "ocserv exited"
  log "ocserv $OCSERV_PID listening (mtu = $mtu)"
}

stop_ocserv() {
  local pid
  stop_pid "$OCSERV_PID" # SIGTERM: ocserv-main stops sec-mod and its workers
  OCSERV_PID=""
  if ! wait_for 10 sh -c "[ -z \"\$(ip netns pids '$NS_G')\" ]"; then
    # Leftovers in our own namespace are ocserv's.
    for pid in $(ip netns pids "$NS_G"); do kill -KILL "$pid" 2>/dev/null || true; done
  fi
}

# ---------------------------------------------------------------- client

connect_client() {
  rm -f "$DIR/oc-$USER_NAME.log"
  bash "$LAB" connect "$ID" "$USER_NAME" -- "$@" >/dev/null || die "lab.sh connect failed"
}

disconnect_client() {
  local f="$DIR/oc-$USER_NAME.pid"
  [ -r "$f" ] || return 0
  stop_pid "$(cat "$f")" # SIGTERM: openconnect says BYE to the server
  rm -f "$f"
  wait_for 10 sh -c "! ip -n '$NS_C' link show dev '$TUN_CLIENT'" || true
}

# ---------------------------------------------------------------- measuring

start_iperf_server() {
  ip netns exec "$NS_I" iperf3 -s -B "$INSIDE_HOST" >"$WORK/iperf3-server.log" 2>&1 &
  IPERF_PID=$!
  wait_for "$HANG" sh -c "ip netns exec '$NS_I' ss -Hltn 'sport = :5201' | grep -q ." ||
    die "iperf3 -s is not listening in $NS_I"
}

# iperf3 from the client ns; $1 = up|down, $2 = output file.
run_iperf() {
  local dir=$1 out=$2 rev=()
  if [ "$dir" = down ]; then rev=(-R); fi
  # timeout: a hang guard well past -t, not a speed check.
  if ! timeout $((DURATION + 60)) ip netns exec "$NS_C" \
    iperf3 -c "$INSIDE_HOST" -t "$DURATION" -J "${rev[@]}" >"$out" 2>"$out.err"; then
    jq -r '.error // empty' "$out" >&2 2>/dev/null || true
    cat "$out.err" >&2
    die "iperf3 -c $INSIDE_HOST -t $DURATION ${rev[*]} failed"
  fi
}

# One measured iperf3 run through the current tunnel; appends a JSON record.
# $1 server, $2 transport (dtls|cstp), $3 direction (up|down).
measure() {
  local server=$1 transport=$2 dir=$3 tag="$1-$2-$3"
  local oc_pid pids c_rcv0 c_rcv1 g_rcv0 g_rcv1 c_in0 c_in1 c_out0 c_out1 t0 t1 srv cli mtu
  oc_pid=$(cat "$DIR/oc-$USER_NAME.pid")
  # shellcheck disable=SC2046
  cpu_sample $(server_pids "$server") >"$WORK/$tag.srv0"
  cpu_sample "$oc_pid" >"$WORK/$tag.cli0"
  c_rcv0=$(udp_counter "$NS_C" RcvbufErrors); g_rcv0=$(udp_counter "$NS_G" RcvbufErrors)
  c_in0=$(udp_counter "$NS_C" InDatagrams); c_out0=$(udp_counter "$NS_C" OutDatagrams)
  t0=$(date +%s.%N)
  run_iperf "$dir" "$WORK/$tag.json"
  t1=$(date +%s.%N)
  # shellcheck disable=SC2046
  cpu_sample $(server_pids "$server") >"$WORK/$tag.srv1"
  cpu_sample "$oc_pid" >"$WORK/$tag.cli1"
  c_rcv1=$(udp_counter "$NS_C" RcvbufErrors); g_rcv1=$(udp_counter "$NS_G" RcvbufErrors)
  c_in1=$(udp_counter "$NS_C" InDatagrams); c_out1=$(udp_counter "$NS_C" OutDatagrams)
  srv=$(cpu_delta "$WORK/$tag.srv0" "$WORK/$tag.srv1" "compare.sh: $server")
  cli=$(cpu_delta "$WORK/$tag.cli0" "$WORK/$tag.cli1" "compare.sh: openconnect")
  mtu=$(client_mtu)
  jq -c -n --slurpfile r "$WORK/$tag.json" \
    --arg server "$server" --arg transport "$transport" --arg dir "$dir" \
    --argjson wall "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" \
    --argjson srv_ticks "$srv" --argjson cli_ticks "$cli" --argjson hz "$CLK_TCK" \
    --argjson nprocs "$(wc -l <"$WORK/$tag.srv1")" \
    --argjson c_rcvbuf $((c_rcv1 - c_rcv0)) --argjson g_rcvbuf $((g_rcv1 - g_rcv0)) \
    --argjson c_udp_in $((c_in1 - c_in0)) --argjson c_udp_out $((c_out1 - c_out0)) \
    --argjson mtu "${mtu:-0}" --arg tls "$TLS_CIPHER" --arg dtls "$DTLS_CIPHER" '
    ($r[0].end) as $e
    | ($e.sum_received.bytes) as $bytes
    | {server: $server, transport: $transport, direction: $dir,
       gbps: ($e.sum_received.bits_per_second / 1e9),
       bytes: $bytes, seconds: $e.sum_received.seconds,
       retransmits: ($e.sum_sent.retransmits // null),
       server_cpu_s: ($srv_ticks / $hz), server_processes: $nprocs,
       client_cpu_s: ($cli_ticks / $hz), wall_s: $wall,
       server_cpu_s_per_gb: (($srv_ticks / $hz) / ($bytes / 1e9)),
       client_cpu_s_per_gb: (($cli_ticks / $hz) / ($bytes / 1e9)),
       server_cpu_pct: (100 * ($srv_ticks / $hz) / $wall),
       client_cpu_pct: (100 * ($cli_ticks / $hz) / $wall),
       client_udp_rcvbuf_errors: $c_rcvbuf, server_ns_udp_rcvbuf_errors: $g_rcvbuf,
       client_udp_in: $c_udp_in, client_udp_out: $c_udp_out,
       tunnel_mtu: $mtu, tls: $tls, dtls: (if $transport != "cstp" then $dtls else null end)}
  ' >>"$RESULTS"
  if [ "$transport" != cstp ] && ! tail -n 1 "$RESULTS" |
    jq -e '(.client_udp_in + .client_udp_out) * 1500 * 4 > .bytes' >/dev/null; then
    log "WARNING: $tag: few UDP datagrams in the client namespace: was this really DTLS?"
    DTLS_WARNINGS+=("$tag: few UDP datagrams in the client namespace")
  fi
  log "$tag: $(tail -n 1 "$RESULTS" | jq -r '"\(.gbps * 100 | round / 100) Gbit/s, server \(.server_cpu_pct | round)% CPU, openconnect \(.client_cpu_pct | round)% CPU, retransmits \(.retransmits), client RcvbufErrors +\(.client_udp_rcvbuf_errors)"')"
}

# DTLS up (or, for CSTP, not up) on both ends before a run; and still up after it.
check_transport() {
  local server=$1 transport=$2 when=$3 ok=1 f="$DIR/oc-$USER_NAME.log"
  if [ "$transport" != cstp ]; then
    if [ "$when" = before ]; then
      wait_for "$HANG" grep -q "Established DTLS connection" "$f" ||
        die "$server: openconnect did not log 'Established DTLS connection'"
    fi
    # Anything after DTLS came up that says it went down (DPD dead peer, reconnects).
    if [ "$when" = after ] && awk '/Established DTLS connection/ { up = 1; next }
        up && /[Dd]ead peer|DTLS.*([Ll]ost|[Ff]ail)|[Rr]econnect/ { bad = 1 } END { exit !bad }' "$f"; then
      ok=0
    fi
    if [ "$server" = headend ]; then
      wait_for "$HANG" sh -c "'$HEADEND_BIN' show vpn-sessiondb detail anyconnect --admin-socket '$DIR/admin.sock' | grep -q '^Protocol *:.*DTLS-Tunnel'" || ok=0
    fi
    if [ "$ok" -eq 0 ]; then
      if [ "$when" = before ]; then die "$server: DTLS is not up (see the logs)"; fi
      log "WARNING: $server: DTLS went down during the runs; the DTLS numbers may be partly CSTP"
      DTLS_WARNINGS+=("$server: DTLS went down during the runs")
    fi
  else
    grep -q "DTLS disabled" "$f" || die "$server: --no-dtls but openconnect did not say 'DTLS disabled'"
    if [ "$server" = headend ] && headend_dtls_live; then
      die "headend: --no-dtls but the session shows DTLS-Tunnel"
    fi
  fi
}

# One server, both transports, both directions.
bench_server() {
  local server=$1 transport args mtu
  # dtls-resume: openconnect forced into session-resume DTLS (Cisco AnyConnect's
  # mode, legacy-dtls.md section 5), same suite family as PSK mode (AES-256-GCM).
  for transport in ${TRANSPORTS:-dtls dtls-resume cstp}; do
    args=()
    if [ "$transport" = cstp ]; then args=(--no-dtls); fi
    if [ "$transport" = dtls-resume ]; then args=(--dtls12-ciphers=AES256-GCM-SHA384); fi
    if [ "$server" = ocserv ]; then
      # Same tunnel MTU as the headend gave (ocserv ignores the client's X-CSTP-MTU and
      # derives the tunnel MTU from its own `mtu`, differently for DTLS and CSTP).
      mtu=${HEADEND_MTU[$transport]:-$DEFAULT_MTU}
      if [ "$transport" != cstp ]; then
        start_ocserv $((mtu + OCSERV_DTLS_OVERHEAD))
      else
        start_ocserv $((mtu + OCSERV_CSTP_OVERHEAD))
      fi
    fi
    connect_client "${args[@]}"
    check_transport "$server" "$transport" before
    TLS_CIPHER=$(sed -n 's/^Connected to HTTPS on .* with ciphersuite //p' "$DIR/oc-$USER_NAME.log" | tail -n 1)
    DTLS_CIPHER=$(sed -n 's/^Established DTLS connection (using [^)]*)\. Ciphersuite //p' "$DIR/oc-$USER_NAME.log" | tail -n 1)
    DTLS_CIPHER=${DTLS_CIPHER%.}
    mtu=$(client_mtu)
    log "$server $transport: openconnect tunnel MTU $mtu, TLS $TLS_CIPHER${DTLS_CIPHER:+, DTLS $DTLS_CIPHER}"
    if [ "$server" = headend ]; then
      HEADEND_MTU[$transport]=$mtu
    elif [ -n "${HEADEND_MTU[$transport]:-}" ] && [ "${HEADEND_MTU[$transport]}" != "$mtu" ]; then
      log "WARNING: tunnel MTU differs: headend ${HEADEND_MTU[$transport]}, ocserv $mtu"
    fi
    sleep 1 # let DPD/MTU probing settle
    measure "$server" "$transport" up
    measure "$server" "$transport" down
    check_transport "$server" "$transport" after
    disconnect_client
    if [ "$server" = ocserv ]; then stop_ocserv; fi
  done
}

# Raw veth, no VPN: client ns -> vpngw ns (ip_forward=1, nothing listening) -> inside ns.
measure_ceiling() {
  local dir
  ip -n "$NS_C" route add 198.18.1.0/24 via "$OUTSIDE_IP" dev eth0 || die "ceiling route"
  CEILING_ROUTE=1
  for dir in up down; do
    run_iperf "$dir" "$WORK/ceiling-$dir.json"
    CEILING[$dir]=$(jq '.end.sum_received.bits_per_second / 1e9' "$WORK/ceiling-$dir.json")
    log "ceiling $dir: $(printf '%.2f' "${CEILING[$dir]}") Gbit/s"
  done
  ip -n "$NS_C" route del 198.18.1.0/24 || die "ceiling route del"
  CEILING_ROUTE=0
}

# ---------------------------------------------------------------- main

declare -A HEADEND_MTU=() CEILING=()
DTLS_WARNINGS=()
TLS_CIPHER=""
DTLS_CIPHER=""
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

LAB_UP=1
bash "$LAB" up "$ID" || die "lab.sh up failed"
start_iperf_server
measure_ceiling
for s in "${SERVERS[@]}"; do
  if [ "$s" = headend ]; then start_headend; fi
  bench_server "$s"
  if [ "$s" = headend ]; then stop_headend; fi
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report

f2() { awk -v x="$1" 'BEGIN { if (x == "" || x == "null") print "-"; else printf "%.2f", x }'; }

echo
echo "headend vs ocserv: iperf3 -t $DURATION to $INSIDE_HOST through openconnect $(openconnect --version 2>/dev/null | sed -n 's/^OpenConnect version //p')"
echo "date $STARTED, $(nproc) CPUs, load average before: $LOAD_BEFORE, after: $LOAD_AFTER"
echo "client namespace: $(ip netns exec "$NS_C" sysctl -n net.core.rmem_default 2>/dev/null | sed 's/^/net.core.rmem_default = /'), $(ip netns exec "$NS_C" sysctl -n net.core.rmem_max 2>/dev/null | sed 's/^/net.core.rmem_max = /')"
echo "ceiling (raw veth, routed through the headend namespace, no VPN): upload $(f2 "${CEILING[up]}") Gbit/s, download $(f2 "${CEILING[down]}") Gbit/s"
echo
echo "Comparison (ratio = headend / ocserv; CPU = seconds of CPU per GB received by iperf3)"
jq -r -s --argjson servers "$(printf '%s\n' "${SERVERS[@]}" | jq -R . | jq -s .)" '
  def f2: (. * 100 | round) as $n | "\($n / 100 | floor).\($n % 100 | tostring | if length < 2 then "0" + . else . end)";
  def f: if . == null then "-" else f2 end;
  def r(a; b): if a == null or b == null or b == 0 then "-" else (a / b | f2) end;
  ["case", "headend Gbit/s", "ocserv Gbit/s", "ratio",
   "headend CPU s/GB", "ocserv CPU s/GB", "CPU ratio",
   "oc-client s/GB (h)", "oc-client s/GB (o)"],
  ( [ ["dtls","up"], ["dtls","down"], ["dtls-resume","up"], ["dtls-resume","down"], ["cstp","up"], ["cstp","down"] ][] as [$t, $d]
    | (map(select(.server == "headend" and .transport == $t and .direction == $d))[0]) as $h
    | (map(select(.server == "ocserv" and .transport == $t and .direction == $d))[0]) as $o
    | ["\($t | ascii_upcase) \($d)", ($h.gbps | f), ($o.gbps | f), r($h.gbps; $o.gbps),
       ($h.server_cpu_s_per_gb | f), ($o.server_cpu_s_per_gb | f),
       r($h.server_cpu_s_per_gb; $o.server_cpu_s_per_gb),
       ($h.client_cpu_s_per_gb | f), ($o.client_cpu_s_per_gb | f)] )
  | @tsv' "$RESULTS" | column -t -s $'\t'
echo
echo "Per run (CPU % = CPU seconds / wall seconds, 100% = one core; RcvbufErrors = UDP"
echo "receive-buffer drops in that namespace during the run; UDP in/out = client datagrams)"
jq -r -s '
  def f2: (. * 100 | round) as $n | "\($n / 100 | floor).\($n % 100 | tostring | if length < 2 then "0" + . else . end)";
  def f: if . == null then "-" else f2 end;
  def i: if . == null then "-" else (round | tostring) end;
  ["server", "case", "Gbit/s", "retr", "MTU", "srv CPU%", "srv s/GB", "procs",
   "oc CPU%", "oc s/GB", "RcvbufErr client", "RcvbufErr server-ns", "UDP in", "UDP out"],
  ( .[] | [.server, "\(.transport | ascii_upcase) \(.direction)", (.gbps | f), (.retransmits | i),
     (.tunnel_mtu | i), (.server_cpu_pct | i), (.server_cpu_s_per_gb | f), (.server_processes | i),
     (.client_cpu_pct | i), (.client_cpu_s_per_gb | f),
     (.client_udp_rcvbuf_errors | i), (.server_ns_udp_rcvbuf_errors | i),
     (.client_udp_in | i), (.client_udp_out | i)] )
  | @tsv' "$RESULTS" | column -t -s $'\t'
echo
jq -r -s 'map(select(.dtls != null) | "\(.server): TLS \(.tls), DTLS \(.dtls)") | unique | .[]' "$RESULTS"
for w in "${DTLS_WARNINGS[@]}"; do echo "WARNING: $w"; done
echo
# One machine-readable line.
printf 'RESULT_JSON '
jq -c -s \
  --arg date "$STARTED" --argjson t "$DURATION" --arg load_before "$LOAD_BEFORE" --arg load_after "$LOAD_AFTER" \
  --argjson nproc "$(nproc)" --argjson ceil_up "${CEILING[up]}" --argjson ceil_down "${CEILING[down]}" '
  . as $runs
  | {date: $date, duration_s: $t, nproc: $nproc, loadavg_before: $load_before, loadavg_after: $load_after,
     ceiling_gbps: {up: $ceil_up, down: $ceil_down},
     runs: $runs,
     ratios: [ [ ["dtls","up"], ["dtls","down"], ["dtls-resume","up"], ["dtls-resume","down"], ["cstp","up"], ["cstp","down"] ][] as [$tr, $d]
       | ($runs | map(select(.server == "headend" and .transport == $tr and .direction == $d))[0]) as $h
       | ($runs | map(select(.server == "ocserv" and .transport == $tr and .direction == $d))[0]) as $o
       | select($h != null and $o != null)
       | {case: "\($tr)-\($d)", gbps: ($h.gbps / $o.gbps),
          server_cpu_s_per_gb: ($h.server_cpu_s_per_gb / $o.server_cpu_s_per_gb)} ]}' "$RESULTS"
