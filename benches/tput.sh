#!/usr/bin/env bash
# Aggregate throughput with many sessions: `loadgen` (N AnyConnect sessions in one
# process, DTLS by default) against this headend, then against ocserv (Debian, 1.1.6)
# in its place, in one lab of netns/lab.sh (same address, port, certificate, pool
# 198.18.64.0/18, user, tunnel MTU 1390). For each server, direction and offered rate:
#   up    loadgen sends UDP (--gbps R in total, spread over the sessions) to
#         `tput sink` on the inside host (198.18.1.10:9), which counts what arrives
#   down  `tput send` on the inside host sends UDP at R in total round-robin to every
#         session's tunnel address (loadgen --addresses-out); loadgen counts per session
#   both  the two at once (R each way)
# and prints per run: offered and delivered Gbit/s, loss, server CPU-seconds per GB
# delivered (headend: its process; ocserv: every process of its namespace, main,
# sec-mod and the workers, from /proc/PID/stat), loadgen's and the sender's own CPU
# (100 % = one core: a saturated client caps the figure), the UDP receive-buffer
# drops of the client namespace, and the load average. Then one side-by-side table
# with the ratios and one RESULT_JSON line. It measures; it asserts nothing.
#
# Usage: sudo benches/tput.sh [-n SESSIONS] [--rates "0.5 1 2 4"] [--dirs "up down both"]
#          [-t SECS] [--size BYTES] [--transport dtls|cstp] [--only headend|ocserv]
#          [--sender-threads T] [--client-rcvbuf BYTES]
#   --client-rcvbuf  loadgen's DTLS socket receive buffer (default 4194304; 0: the
#                    kernel's 208 KiB, a stock client's). With traffic both ways the
#                    box is full and a server serves each session in bursts; the
#                    default buffer then drops there what loadgen has no CPU to read
#                    yet (the "rcvbuf err" column), which measures loadgen.
#   HEADEND_BIN, LOADGEN_BIN, TPUT_BIN  binaries (default: target/release/*, built if missing)
#   HEADEND_ARGS  extra `headend run` arguments (through netns/lab.sh)
#
# Needs root, ocserv/ocpasswd (netns/install-deps.sh) and jq. Everything it starts is
# stopped and the lab removed on exit, also on failure or Ctrl-C. Benchmarks on the
# shared box take the lock: `flock -o /work/bench.lock benches/tput.sh ...`.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
LAB="$ROOT/netns/lab.sh"
# shellcheck source=benches/bench-lib.sh
. "$HERE/bench-lib.sh"
N=100
RATES="0.5 1 2 4"
DIRS="up down both"
DURATION=10
SIZE=1380
TRANSPORT=dtls
ONLY=""
SENDER_THREADS=1
# Seconds loadgen's hold outlasts the sender's window (down, both).
HOLD_MARGIN=10
CLIENT_RCVBUF=4194304
HANG=60
OUTSIDE_IP=198.18.0.1
INSIDE_HOST=198.18.1.10
SINK_PORT=9
USER_NAME=tp
PASSWORD="Tput-$RANDOM-$RANDOM"

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}
die() { echo "tput.sh: $*" >&2; exit 1; }
log() { echo "tput.sh: $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
  -n) N=$2; shift 2 ;;
  --rates) RATES=$2; shift 2 ;;
  --dirs) DIRS=$2; shift 2 ;;
  -t) DURATION=$2; shift 2 ;;
  --size) SIZE=$2; shift 2 ;;
  --transport) TRANSPORT=$2; shift 2 ;;
  --only) ONLY=$2; shift 2 ;;
  --sender-threads) SENDER_THREADS=$2; shift 2 ;;
  --client-rcvbuf) CLIENT_RCVBUF=$2; shift 2 ;;
  -h | --help) usage ;;
  *) echo "tput.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
case "$ONLY" in "") SERVERS=(headend ocserv) ;; headend | ocserv) SERVERS=("$ONLY") ;; *) die "--only headend|ocserv" ;; esac
case "$TRANSPORT" in dtls | cstp) ;; *) die "--transport dtls|cstp" ;; esac
[[ "$N" =~ ^[1-9][0-9]*$ ]] && [ "$N" -le 4000 ] || die "-n wants 1..4000 sessions"
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "-t wants whole seconds"
[[ "$CLIENT_RCVBUF" =~ ^[0-9]+$ ]] || die "--client-rcvbuf wants bytes"
[[ "$SIZE" =~ ^[0-9]+$ ]] && [ "$SIZE" -ge 64 ] && [ "$SIZE" -le 1390 ] || die "--size: 64..1390 (the tunnel MTU)"
for d in $DIRS; do case "$d" in up | down | both) ;; *) die "--dirs: up, down, both" ;; esac; done
for r in $RATES; do [[ "$r" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--rates wants Gbit/s numbers, not '$r'"; done
[ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces)"
for p in ip jq ss awk column; do command -v "$p" >/dev/null || die "'$p' not found"; done
CLK_TCK=$(getconf CLK_TCK)

target=${CARGO_TARGET_DIR:-$ROOT/target}
[[ "$target" = /* ]] || target="$ROOT/$target"
if [ -z "${HEADEND_BIN:-}" ] || [ -z "${LOADGEN_BIN:-}" ] || [ -z "${TPUT_BIN:-}" ]; then
  if [ ! -x "$target/release/headend" ] || [ ! -x "$target/release/loadgen" ] || [ ! -x "$target/release/tput" ]; then
    log "building: cargo build --release -p headend -p benches --bins"
    (cd "$ROOT" && cargo build --release -p headend -p benches --bins) || die "build failed"
  fi
fi
export HEADEND_BIN=${HEADEND_BIN:-$target/release/headend}
LOADGEN_BIN=${LOADGEN_BIN:-$target/release/loadgen}
TPUT_BIN=${TPUT_BIN:-$target/release/tput}
for b in "$HEADEND_BIN" "$LOADGEN_BIN" "$TPUT_BIN"; do [ -x "$b" ] || die "missing $b"; done

ID="tput$$"
NS_C="vpnc-$ID"
NS_G="vpngw-$ID"
NS_I="inside-$ID"
DIR="/tmp/headend-lab-$ID"
WORK=$(mktemp -d /tmp/headend-tput.XXXXXX)
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
LAB_UP=0
OCSERV_PID=""
HEADEND_RUNNING=0
SINK_PID=""
LG_PID=""

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  [ "$rc" -ne 0 ] && for f in "$DIR/headend.log" "$DIR/ocserv.log" "$WORK/loadgen.log"; do [ -s "$f" ] && tail -n 20 "$f" >&2; done
  [ -n "$LG_PID" ] && stop_pid "$LG_PID"
  [ -n "$SINK_PID" ] && stop_pid "$SINK_PID"
  [ "$HEADEND_RUNNING" -eq 1 ] && stop_pid "$(cat "$DIR/headend.pid" 2>/dev/null)"
  [ -n "$OCSERV_PID" ] && stop_pid "$OCSERV_PID"
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
# A /18 pool (as scale.sh) and one user that may log in N times.
sed -i 's/^ip local pool VPN-POOL .*/ip local pool VPN-POOL 198.18.64.10-198.18.127.250 mask 255.255.192.0/' "$DIR/headend.cfg"
printf '!\ngroup-policy GP-EMPLOYEES attributes\n vpn-simultaneous-logins %s\nusername %s password %s\n' \
  "$((N + 16))" "$USER_NAME" "$PASSWORD" >>"$DIR/headend.cfg"

SERVER=""
server_pids() {
  case "$SERVER" in
  headend) cat "$DIR/headend.pid" ;;
  ocserv) ip netns pids "$NS_G" ;;
  esac
}
server_sample_args() {
  case "$SERVER" in
  headend) echo "--server-pid $(cat "$DIR/headend.pid")" ;;
  ocserv) echo "--server-netns $NS_G" ;;
  esac
}

# The sink on the inside host; its RESULT_JSON goes to $WORK/sink.out.
start_sink() {
  rm -f "$WORK/sink.in" "$WORK/sink.out"
  mkfifo "$WORK/sink.in"
  ip netns exec "$NS_I" "$TPUT_BIN" sink --bind "$INSIDE_HOST:$SINK_PORT" --max-secs $((DURATION * 4 + 300)) \
    <"$WORK/sink.in" >"$WORK/sink.out" 2>>"$WORK/tput.log" &
  SINK_PID=$!
  exec 9>"$WORK/sink.in"
  wait_for "$HANG" grep -q TPUT_SINK_READY "$WORK/sink.out" || die "tput sink not ready"
}
stop_sink() {
  echo >&9 || true
  exec 9>&-
  wait_for "$HANG" grep -q '^RESULT_JSON' "$WORK/sink.out" || log "sink gave no result"
  wait "$SINK_PID" 2>/dev/null || true
  SINK_PID=""
  rm -f "$WORK/sink.in"
}

# The counters along the downlink, prefixed by where they were read: i. the
# inside host, g. the gateway namespace (veths, TUN, UDP), c. the client
# namespace, h. the headend's `show counters` (headend runs only).
path_snapshot() {
  local ns p
  for p in i g c; do
    case $p in i) ns=$NS_I ;; g) ns=$NS_G ;; c) ns=$NS_C ;; esac
    net_snapshot "$ns" | sed "s/^/$p./"
  done
  [ "$SERVER" = headend ] && headend_counters "$HEADEND_BIN" "$DIR/admin.sock" "$NS_G" | sed 's/^headend\./h./'
  return 0
}
# One line of a run's down_path: each stage's packets, and what it dropped.
# shellcheck disable=SC2016
PATH_LINE='.down_path as $p | def n(x): (x // "-" | tostring);
  "offered \(n($p.offered)) -> tput sent \(n($p.tput_sent)) (err \(n($p.tput_errors)), sndbuf \(n($p.i_sndbuf_errors)))"
  + " -> inside veth \(n($p.g_inside_rx)) (drop \(n($p.g_inside_rx_drop)))"
  + " -> TUN tx \(n($p.tun_tx)) (drop \(n($p.tun_tx_drop)), qdisc drop \(n($p.tun_qdisc_drop)))"
  + " -> headend read \(n($p.h_tun_rx)) (queue-full \(n($p.h_queue_full)), no-session \(n($p.h_no_session)))"
  + " -> DTLS sent \(n($p.h_dtls_tx)) (err \(n($p.h_dtls_tx_errors))) / gw UDP out \(n($p.g_udp_out)) (sndbuf \(n($p.g_sndbuf_errors)))"
  + " -> c1 tx \(n($p.g_c1_tx)) (drop \(n($p.g_c1_tx_drop))) -> client eth0 rx \(n($p.c_eth0_rx)) (drop \(n($p.c_eth0_rx_drop)))"
  + " -> client UDP in \(n($p.c_udp_in)) (rcvbuf \(n($p.c_rcvbuf_errors)), inerr \(n($p.c_in_errors)))"
  + " -> loadgen decrypted \(n($p.lg_got)) (record drops \(n($p.lg_record_drops)))"'

# run DIR RATE: one measured run; appends a JSON record to $RESULTS.
run() {
  local dir=$1 rate=$2 tag="$SERVER-$1-$2" load up_args=() lg_dur addrs sender_json="null" sink_json="null"
  local s0 s1 l0 l1 crcv0 crcv1 win0 win1 srv_ticks=0 lg_ticks=0 lgjson path_json="{}"
  load=$(loadavg)
  log "$tag: $N sessions (uptime:$(uptime | sed 's/.*load average/ load average/'))"
  addrs="$WORK/$tag.addrs"
  rm -f "$addrs"
  lg_dur=$DURATION
  if [ "$dir" != down ]; then
    start_sink
    # --burst: nothing is sent until every session is up, so the totals are the hold's.
    up_args=(--traffic udp --target "$INSIDE_HOST" --udp-port "$SINK_PORT" --gbps "$rate" --size "$SIZE" --burst)
    # both: the sessions (and ocserv's workers, whose CPU the window samples)
    # outlast the sender; the upstream share of the window is scaled below.
    # The margin covers the samples taken before the sender starts (ocserv's
    # 100+ processes on a busy box: several seconds) and the 2 s after it.
    [ "$dir" = both ] && lg_dur=$((DURATION + HOLD_MARGIN))
  else
    up_args=(--traffic udp --pps 0)
    # The hold outlasts the sender (started once the addresses are written).
    lg_dur=$((DURATION + HOLD_MARGIN))
  fi
  # shellcheck disable=SC2046
  ip netns exec "$NS_C" "$LOADGEN_BIN" --server "https://$OUTSIDE_IP/" --servercert "$PIN" \
    --user "$USER_NAME" --password "$PASSWORD" --group LOCAL-PW -n "$N" --concurrency 32 \
    --transport "$TRANSPORT" "${up_args[@]}" --duration "$lg_dur" --drain 2 --udp-rcvbuf "$CLIENT_RCVBUF" \
    --addresses-out "$addrs" $(server_sample_args) --quiet \
    >"$WORK/$tag.loadgen.out" 2>>"$WORK/loadgen.log" &
  LG_PID=$!
  wait_for 600 test -s "$addrs" || die "$tag: loadgen wrote no addresses (see $WORK/loadgen.log)"
  [ "$(wc -l <"$addrs")" -eq "$N" ] || log "$tag: only $(wc -l <"$addrs") of $N sessions up"
  if [ "$dir" != up ]; then
    # The window is the sender's: server and loadgen CPU over it.
    # shellcheck disable=SC2046
    cpu_sample $(server_pids) >"$WORK/$tag.srv0"
    cpu_sample "$LG_PID" >"$WORK/$tag.lg0"
    crcv0=$(udp_counter "$NS_C" RcvbufErrors)
    path_snapshot >"$WORK/$tag.path0"
    win0=$(date +%s.%N)
    sender_json=$(ip netns exec "$NS_I" "$TPUT_BIN" send --addresses "$addrs" --gbps "$rate" --size "$SIZE" \
      --duration "$DURATION" --threads "$SENDER_THREADS" 2>>"$WORK/tput.log" | sed -n 's/^RESULT_JSON //p')
    win1=$(date +%s.%N)
    kill -0 "$LG_PID" 2>/dev/null ||
      log "$tag: loadgen ended before the sender's window closed: its CPU, the server's and the path counters miss the end"
    crcv1=$(udp_counter "$NS_C" RcvbufErrors)
    # What was still queued (session queues, sockets) lands first; the
    # sessions outlast the sender (HOLD_MARGIN).
    sleep 2
    path_snapshot >"$WORK/$tag.path1"
    path_json=$(net_delta "$WORK/$tag.path0" "$WORK/$tag.path1" |
      jq -R -n '[inputs | split(" ") | select(length == 2) | {(.[0]): (.[1] | tonumber)}] | add // {}')
    # shellcheck disable=SC2046
    cpu_sample $(server_pids) >"$WORK/$tag.srv1"
    cpu_sample "$LG_PID" >"$WORK/$tag.lg1"
    srv_ticks=$(cpu_delta "$WORK/$tag.srv0" "$WORK/$tag.srv1" "$SERVER")
    lg_ticks=$(cpu_delta "$WORK/$tag.lg0" "$WORK/$tag.lg1" loadgen)
    [ -n "$sender_json" ] || sender_json=null
  else
    crcv0=$(udp_counter "$NS_C" RcvbufErrors)
    win0=0
    win1=0
  fi
  # Bounded: loadgen ends after its hold, drain and logout (its own deadlines).
  wait "$LG_PID" || true
  LG_PID=""
  [ "$dir" = up ] && crcv1=$(udp_counter "$NS_C" RcvbufErrors)
  lgjson=$(sed -n 's/^RESULT_JSON //p' "$WORK/$tag.loadgen.out")
  [ -n "$lgjson" ] || die "$tag: loadgen gave no result ($WORK/loadgen.log)"
  if [ "$dir" != down ]; then
    stop_sink
    sink_json=$(sed -n 's/^RESULT_JSON //p' "$WORK/sink.out")
    [ -n "$sink_json" ] || sink_json=null
  fi
  jq -c -n --arg server "$SERVER" --arg dir "$dir" --argjson rate "$rate" --arg load "$load" \
    --argjson lg "$lgjson" --argjson sink "$sink_json" --argjson snd "$sender_json" \
    --argjson srv_ticks "$srv_ticks" --argjson lg_ticks "$lg_ticks" --argjson hz "$CLK_TCK" \
    --argjson win "$(awk -v a="$win0" -v b="$win1" 'BEGIN { printf "%.3f", b - a }')" \
    --argjson crcv "$((crcv1 - crcv0))" --argjson n "$N" --argjson path "$path_json" --argjson size "$SIZE" '
    def gb(b): b / 1e9;
    ($lg.traffic_s) as $hold
    | (if $dir != "down" then
        {offered: ($lg.hold.tx_bytes * 8 / $hold / 1e9),
         delivered: ($sink.bytes * 8 / $hold / 1e9),
         sent_pkts: $lg.tx.packets, got_pkts: $sink.packets,
         gb: gb($sink.bytes * (if $dir == "both" then $win / $hold else 1 end)),
         sources: $sink.sources, per_source: $sink.per_source}
       else null end) as $up
    | (if $dir != "up" then
        {offered: $snd.gbit_s, delivered: ($lg.rx.udp_bytes * 8 / $snd.secs / 1e9),
         sent_pkts: $snd.packets, got_pkts: $lg.rx.udp_packets, gb: gb($lg.rx.udp_bytes),
         per_session: $lg.rx.per_session}
       else null end) as $down
    | (if $dir == "up" then $lg.server.hold_cpu_s else $srv_ticks / $hz end) as $srv_cpu
    | (if $dir == "up" then $hold else $win end) as $secs
    | (if $dir == "up" then $lg.loadgen.hold_cpu_pct else 100 * $lg_ticks / $hz / $win end) as $lg_pct
    | (($up.gb // 0) + ($down.gb // 0)) as $gb
    | {side: $server, dir: $dir, asked_gbit_s: $rate, n: $n, load: $load,
       sessions_up: $lg.up, dtls_up: $lg.dtls_up, transport: $lg.transport,
       up: (if $up then $up + {loss_pct: (if $up.sent_pkts > 0 then 100 * (1 - $up.got_pkts / $up.sent_pkts) else null end)} else null end),
       down: (if $down then $down + {loss_pct: (if $down.sent_pkts > 0 then 100 * (1 - $down.got_pkts / $down.sent_pkts) else null end)} else null end),
       delivered_gbit_s: (($up.delivered // 0) + ($down.delivered // 0)),
       window_s: $secs, server_cpu_s: $srv_cpu, server_cpu_pct: (100 * $srv_cpu / $secs),
       server_cpu_s_per_gb: (if $gb > 0 then $srv_cpu / $gb else null end),
       loadgen_cpu_pct: $lg_pct, loadgen_pacer_lagged: $lg.tx.pacer_lagged,
       loadgen_record_drops: $lg.rx.record_drops, loadgen_local_drops: $lg.tx.local_drops,
       sender_cpu_pct: $snd.cpu_pct, sender_errors: $snd.send_errors, sender_lagged: $snd.pacer_lagged,
       sink_cpu_s: $sink.cpu_s, client_rcvbuf_errors: $crcv,
       down_path: (if $dir == "up" then null else
         # Where the downlink went, stage by stage, over the sender window
         # (+2 s): counters of the inside host (i.), the gateway (g.: its
         # "inside" veth, the TUN device(s), the bridge port c1 to the
         # client), the headend (h.), the client namespace (c.) and loadgen.
         def p(k): $path[k] // 0;
         def tun(f): [$path | to_entries[] | select(.key | test("^g\\.dev\\.vpns?[0-9]+\\." + f + "$")) | .value] | add // 0;
         def tunq: [$path | to_entries[] | select(.key | test("^g\\.qdisc\\.vpns?[0-9]+\\.drop$")) | .value] | add // 0;
         {offered: (($snd.asked_gbit_s // $rate) * 1e9 / 8 / $size * ($snd.secs // 0) | round),
          tput_sent: $snd.packets, tput_errors: $snd.send_errors, i_sndbuf_errors: p("i.udp.SndbufErrors"),
          i_eth0_tx: p("i.dev.eth0.tx_packets"), i_eth0_tx_drop: p("i.dev.eth0.tx_drop"),
          g_inside_rx: p("g.dev.inside.rx_packets"), g_inside_rx_drop: p("g.dev.inside.rx_drop"),
          tun_tx: tun("tx_packets"), tun_tx_drop: tun("tx_drop"), tun_qdisc_drop: tunq,
          h_tun_rx: $path["h.tun-rx-packets"], h_queue_full: $path["h.drop-queue-full"],
          h_no_session: $path["h.drop-no-session"],
          h_dtls_tx: $path["h.dtls-tx-datagrams"], h_dtls_tx_errors: $path["h.dtls-tx-errors"],
          g_udp_out: p("g.udp.OutDatagrams"), g_sndbuf_errors: p("g.udp.SndbufErrors"),
          g_c1_tx: p("g.dev.c1.tx_packets"), g_c1_tx_drop: p("g.dev.c1.tx_drop"),
          c_eth0_rx: p("c.dev.eth0.rx_packets"), c_eth0_rx_drop: p("c.dev.eth0.rx_drop"),
          c_udp_in: p("c.udp.InDatagrams"), c_rcvbuf_errors: p("c.udp.RcvbufErrors"), c_in_errors: p("c.udp.InErrors"),
          lg_got: $lg.rx.udp_packets, lg_record_drops: $lg.rx.record_drops}
       end)}' >>"$RESULTS"
  log "$tag: $(tail -n 1 "$RESULTS" | jq -r '"delivered \(.delivered_gbit_s * 1000 | round / 1000) Gbit/s (up \(.up.delivered // "-"), down \(.down.delivered // "-")), server \(.server_cpu_pct | round) % CPU, \(.server_cpu_s_per_gb // "-") s/GB, loadgen \(.loadgen_cpu_pct // 0 | round) % CPU"')"
  [ "$dir" != up ] && log "$tag: downlink path: $(tail -n 1 "$RESULTS" | jq -r "$PATH_LINE")"
  # Every session must be gone before the next run.
  wait_for "$HANG" sh -c "[ \"\$(ip netns exec '$NS_G' ss -Htn state established 'sport = :443' | wc -l)\" -eq 0 ]" ||
    log "connections still open after the run"
}

series() {
  local d r
  for d in $DIRS; do
    for r in $RATES; do run "$d" "$r"; done
  done
}

for SERVER in "${SERVERS[@]}"; do
  case $SERVER in
  headend)
    bash "$LAB" start "$ID" >/dev/null || die "lab.sh start failed"
    HEADEND_RUNNING=1
    series
    stop_pid "$(cat "$DIR/headend.pid")"
    HEADEND_RUNNING=0
    wait_for "$HANG" sh -c "! ip -n '$NS_G' link show vpn0 2>/dev/null" || true
    ;;
  ocserv)
    for p in ocserv ocpasswd; do command -v "$p" >/dev/null || die "'$p' not found"; done
    printf '%s\n%s\n' "$PASSWORD" "$PASSWORD" | ocpasswd -c "$DIR/ocpasswd" "$USER_NAME" >/dev/null
    # mtu 1456: tunnel MTU 1390 over DTLS (1456 - 66), as the headend grants loadgen.
    ocserv_conf "$DIR" "$OUTSIDE_IP" $((N + 16)) 198.18.64.0 255.255.192.0 1456 >"$DIR/ocserv.conf"
    ip netns exec "$NS_G" ocserv -f -d 1 -c "$DIR/ocserv.conf" </dev/null >>"$DIR/ocserv.log" 2>&1 &
    OCSERV_PID=$!
    wait_for "$HANG" sh -c "ip netns exec '$NS_G' ss -Hltn 'sport = :443' | grep -q ." || die "ocserv not listening"
    series
    stop_pid "$OCSERV_PID"
    OCSERV_PID=""
    ;;
  esac
done

echo
echo "tput: $N $TRANSPORT sessions (loadgen), UDP ${SIZE} B IP packets, ${DURATION} s per run, $(nproc) CPUs, loadgen UDP receive buffer ${CLIENT_RCVBUF} B (0: kernel default)"
echo "Gbit/s delivered (sum of both directions for 'both'); CPU s/GB = server CPU-seconds per GB delivered;"
echo "lg%/snd% = loadgen's / the sender's CPU (100 = one core); loss% up/down; load = load average at the start"
jq -rs '
  def r(x): if x == null then "-" else (x * 100 | round / 100 | tostring) end;
  def ratio(a; b): if a == null or b == null or b == 0 then "-" else r(a / b) end;
  def loss(x): if x == null then "-" else r(x.loss_pct) end;
  (group_by([.dir, .asked_gbit_s]) | .[]) as $g
  | ($g | map(select(.side == "headend")) | .[0]) as $h
  | ($g | map(select(.side == "ocserv")) | .[0]) as $o
  | [$g[0].dir, $g[0].asked_gbit_s,
     r($h.delivered_gbit_s), r($o.delivered_gbit_s), ratio($h.delivered_gbit_s; $o.delivered_gbit_s),
     "\(loss($h.up))/\(loss($h.down))", "\(loss($o.up))/\(loss($o.down))",
     r($h.server_cpu_s_per_gb), r($o.server_cpu_s_per_gb), ratio($h.server_cpu_s_per_gb; $o.server_cpu_s_per_gb),
     r($h.server_cpu_pct), r($o.server_cpu_pct),
     r($h.loadgen_cpu_pct), r($o.loadgen_cpu_pct), r($h.sender_cpu_pct // $o.sender_cpu_pct),
     "\($h.load // "-") | \($o.load // "-")"]
  | @tsv' "$RESULTS" |
  { printf 'dir\tasked\tGbit/s h\tGbit/s o\th:o\tloss%% h up/down\tloss%% o up/down\tCPU s/GB h\tCPU s/GB o\tCPU/GB h:o\tsrv%% h\tsrv%% o\tlg%% h\tlg%% o\tsnd%%\tload h | o\n'; cat; } |
  column -t -s $'\t'
echo
echo "Where the downlink went (packets over the sender's window; - = not measured for this server):"
jq -r 'select(.down_path != null) | .down_path as $p | def n(x): (x // "-" | tostring);
  [.side, .dir, .asked_gbit_s, n($p.offered), n($p.tput_sent), n($p.g_inside_rx), n($p.tun_tx),
   "\(n($p.tun_tx_drop))+\(n($p.tun_qdisc_drop))", n($p.h_tun_rx), n($p.h_queue_full), n($p.h_dtls_tx),
   n($p.g_udp_out), n($p.c_eth0_rx), n($p.c_udp_in), n($p.c_rcvbuf_errors), n($p.lg_got)] | @tsv' "$RESULTS" |
  { printf 'server\tdir\tasked\toffered\ttput sent\tgw veth rx\tTUN tx\tTUN drop+qdisc\theadend read\tqueue-full\tDTLS sent\tgw UDP out\tclient rx\tclient UDP in\trcvbuf err\tloadgen got\n'; cat; } |
  column -t -s $'\t'
echo "RESULT_JSON $(jq -cs --argjson n "$N" --arg t "$TRANSPORT" --argjson size "$SIZE" --argjson d "$DURATION" --argjson rcvbuf "$CLIENT_RCVBUF" \
  '{sessions: $n, transport: $t, size: $size, duration_s: $d, client_rcvbuf: $rcvbuf, nproc: '"$(nproc)"', runs: .}' "$RESULTS")"
