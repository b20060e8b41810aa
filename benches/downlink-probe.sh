#!/usr/bin/env bash
# What limits one TCP flow downloaded through the headend's DTLS tunnel (issue 13):
# one openconnect (DTLS), `iperf3 -R` from the inside host, and while it runs, every
# 0.5 s: the sender's TCP state (`ss -tin`: RTT, cwnd, bytes in flight), the backlog of
# the TUN device's queue (`tc -s qdisc`), the CPU of the whole box (/proc/stat: busy,
# softirq) and of each process (headend, openconnect, both iperf3s), plus a ping through
# the tunnel (unloaded first, then under load). After the run: client UDP drops
# (RcvbufErrors), the headend's drop counters and its "DTLS pacing" log line (waits,
# wake-ups, how late the timerfd fired, rate lost to late wake-ups).
# It measures and prints; it asserts nothing.
#
# Usage: sudo benches/downlink-probe.sh [-t SECONDS] [--samples]
#   HEADEND_BIN  headend binary (default target/release/headend)
#   HEADEND_DTLS_PACE_MBIT / HEADEND_DTLS_PACE_BURST / … reach the headend unchanged.
#   --samples    print every sample, not only the summary.
#   PIN=1        a diagnostic, not the benchmark's setting: the headend and the
#                iperf3 sender on CPU 0, openconnect and the iperf3 receiver on
#                CPU 1 (`taskset`), so that the scheduler cannot queue the client
#                behind the server that woke it.
# Take the benchmark lock: flock -o /work/bench.lock benches/downlink-probe.sh
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
LAB="$ROOT/netns/lab.sh"
INSIDE_HOST=198.18.1.10
USER_NAME=alice
DURATION=10
SAMPLES=0
while [ $# -gt 0 ]; do
  case "$1" in
  -t) DURATION=$2; shift 2 ;;
  --samples) SAMPLES=1; shift ;;
  *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || { echo "downlink-probe.sh: -t wants whole seconds" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "downlink-probe.sh: must run as root" >&2; exit 1; }
export HEADEND_BIN=${HEADEND_BIN:-$ROOT/target/release/headend}
[ -x "$HEADEND_BIN" ] || { echo "downlink-probe.sh: no $HEADEND_BIN" >&2; exit 1; }

ID="probe$$"
NS_C="vpnc-$ID"; NS_G="vpngw-$ID"; NS_I="inside-$ID"
DIR="/tmp/headend-lab-$ID"
WORK=$(mktemp -d /tmp/downlink-probe.XXXXXX)
PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  [ -r "$DIR/oc-$USER_NAME.pid" ] && kill -TERM "$(cat "$DIR/oc-$USER_NAME.pid")" 2>/dev/null
  bash "$LAB" down "$ID" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

udp() { ip netns exec "$1" awk -v want="$2" '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == want) c = i; h = 1 } else { print $c; exit } }' /proc/net/snmp; }
ticks() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }; s=${s##*) }; set -- $s; echo $((${12} + ${13})); }

bash "$LAB" up "$ID" >/dev/null
bash "$LAB" start "$ID" >/dev/null
bash "$LAB" connect "$ID" "$USER_NAME" >/dev/null
for _ in $(seq 1 100); do grep -q "Established DTLS connection" "$DIR/oc-$USER_NAME.log" && break; sleep 0.1; done
grep -q "Established DTLS connection" "$DIR/oc-$USER_NAME.log" || { echo "downlink-probe.sh: DTLS not up" >&2; exit 1; }
ip netns exec "$NS_I" iperf3 -s -B "$INSIDE_HOST" >/dev/null 2>&1 &
PIDS+=($!)
IPERF_S=$!
sleep 1
HEADEND=$(cat "$DIR/headend.pid"); OC=$(cat "$DIR/oc-$USER_NAME.pid")
if [ "${PIN:-0}" = 1 ]; then
  taskset -a -cp 0 "$HEADEND" >/dev/null
  taskset -a -cp 0 "$IPERF_S" >/dev/null
  taskset -a -cp 1 "$OC" >/dev/null
fi
ping_idle=$(ip netns exec "$NS_C" ping -q -c 10 -i 0.05 "$INSIDE_HOST" | sed -n 's/^rtt.* = //p')

c_rcv0=$(udp "$NS_C" RcvbufErrors); c_in0=$(udp "$NS_C" InDatagrams)
read -r _ u0 n0 s0 i0 w0 q0 sq0 _ </proc/stat
h0=$(ticks "$HEADEND"); o0=$(ticks "$OC")
ip netns exec "$NS_C" iperf3 -c "$INSIDE_HOST" -R -t "$DURATION" -J >"$WORK/iperf.json" 2>&1 &
IPERF_C=$!
PIDS+=($IPERF_C)
if [ "${PIN:-0}" = 1 ]; then taskset -a -cp 1 "$IPERF_C" >/dev/null || true; fi
sleep 1
ip netns exec "$NS_C" ping -q -c $(((DURATION - 2) * 10)) -i 0.1 "$INSIDE_HOST" >"$WORK/ping" 2>&1 &
PIDS+=($!)
PING=$!
is0=$(ticks "$IPERF_S")
# Bounded: two samples a second for the run's remaining seconds.
for _ in $(seq 1 $(((DURATION - 2) * 2))); do
  ip netns exec "$NS_I" ss -tinH "sport = :5201" >>"$WORK/ss"
  echo "--" >>"$WORK/ss"
  tc -n "$NS_G" -s qdisc show dev vpn0 | sed -n 's/.*backlog \([0-9]*[KM]*b\) \([0-9]*\)p.*/\1 \2/p' | head -n 1 >>"$WORK/backlog"
  sleep 0.5
done
wait "$PING" || true
is1=$(ticks "$IPERF_S")
wait "$IPERF_C" || true
read -r _ u1 n1 s1 i1 w1 q1 sq1 _ </proc/stat
h1=$(ticks "$HEADEND"); o1=$(ticks "$OC")
c_rcv1=$(udp "$NS_C" RcvbufErrors); c_in1=$(udp "$NS_C" InDatagrams)
counters=$("$HEADEND_BIN" show counters --admin-socket "$DIR/admin.sock" 2>/dev/null | grep -Ei 'drop|queue' | tr -s ' ' | paste -sd ';' || true)
txdrop=$(ip -n "$NS_G" -s link show dev vpn0 | awk '/TX:/ { getline; print $4 }')
kill -TERM "$OC" 2>/dev/null || true
for _ in $(seq 1 50); do grep -q "DTLS pacing" "$DIR/headend.log" && break; sleep 0.1; done

hz=$(getconf CLK_TCK)
tot=$(((u1 + n1 + s1 + i1 + w1 + q1 + sq1) - (u0 + n0 + s0 + i0 + w0 + q0 + sq0)))
# The data connection: the one with the most bytes_acked in each sample.
awk '
  /^--/ { if (best != "") print best; best = ""; max = -1; next }
  { if (match($0, /bytes_acked:[0-9]+/)) { v = substr($0, RSTART + 12, RLENGTH - 12) + 0; if (v > max) { max = v; best = $0 } } }
' "$WORK/ss" >"$WORK/ss.data"
field() { sed -n "s/.*[ ]$1:\([0-9.\/]*\).*/\1/p" "$WORK/ss.data"; }
stats() { awk '{ split($1, a, "/"); v = a[1] + 0; s += v; n++; if (n == 1 || v < mn) mn = v; if (v > mx) mx = v } END { if (n) printf "mean %.1f min %.1f max %.1f (n=%d)", s / n, mn, mx, n; else print "-" }'; }
echo "downlink-probe: $(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1-3 /proc/loadavg), HEADEND_DTLS_PACE_MBIT=${HEADEND_DTLS_PACE_MBIT:-default} HEADEND_DTLS_PACE_BURST=${HEADEND_DTLS_PACE_BURST:-default}${PIN:+ PIN=$PIN}"
jq -r '"iperf3 -R: \(.end.sum_received.bits_per_second / 1e9 * 100 | round / 100) Gbit/s, retransmits \(.end.sum_sent.retransmits)"' "$WORK/iperf.json"
echo "sender TCP rtt ms: $(field rtt | stats)"
echo "sender cwnd (segments): $(field cwnd | stats)"
echo "sender unacked (segments): $(field unacked | stats)"
echo "sender notsent bytes: $(field notsent | stats)"
echo "ping idle: $ping_idle ms; under load: $(sed -n 's/^rtt.* = //p' "$WORK/ping") ms, $(grep -o '[0-9.]*% packet loss' "$WORK/ping")"
echo "vpn0 qdisc backlog (bytes packets) per sample: $(tr '\n' ' ' <"$WORK/backlog")"
echo "vpn0 TX dropped (total): $txdrop"
awk -v tot="$tot" -v u="$((u1 - u0 + n1 - n0))" -v s="$((s1 - s0))" -v i="$((i1 - i0 + w1 - w0))" -v q="$((q1 - q0 + sq1 - sq0))" \
  'BEGIN { printf "box CPU (2 cores = 200%%): user %.0f%% sys %.0f%% irq+softirq %.0f%% idle %.0f%%\n", 200 * u / tot, 200 * s / tot, 200 * q / tot, 200 * i / tot }'
wall=$(jq '.end.sum_received.seconds' "$WORK/iperf.json")
awk -v h="$((h1 - h0))" -v o="$((o1 - o0))" -v is="$((is1 - is0))" -v hz="$hz" -v w="$wall" -v sw="$(((DURATION - 2)))" \
  'BEGIN { printf "process CPU: headend %.0f%%, openconnect %.0f%%, iperf3 sender %.0f%%\n", 100 * h / hz / w, 100 * o / hz / w, 100 * is / hz / sw }'
d_rcv=$((c_rcv1 - c_rcv0)); d_in=$((c_in1 - c_in0))
awk -v r="$d_rcv" -v i="$d_in" 'BEGIN { printf "client RcvbufErrors %d of %d datagrams (%.2f %%)\n", r, r + i, (r + i) ? 100 * r / (r + i) : 0 }'
echo "headend counters: $counters"
grep -o "DTLS pacing.*" "$DIR/headend.log" | tail -n 1 || echo "(no DTLS pacing line)"
