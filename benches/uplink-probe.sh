#!/usr/bin/env bash
# Where the headend's CPU goes in an upload, per GB: run it next to compare.sh or
# tput.sh in the same lock hold. It finds the newest lab with a headend
# (/tmp/headend-lab-*/headend.pid), waits until the uplink flows (vpn0 RX in the
# gateway namespace over MINPPS packets/s and above its TX), then for WINDOW
# seconds counts the headend's syscalls by kind (perf stat on the syscall
# tracepoints, per thread: in-kernel counting, no strace slowdown), its context
# switches (/proc/PID/task/*/status), `show counters`, the namespace's UDP and
# vpn0 statistics, samples recvmmsg's return values for 1 s, and then records a
# call-graph profile (perf record -g) for PERF seconds. Then:
#   python3 benches/uplink-probe-report.py OUTDIR   (per-GB table; profile: perf report -i OUTDIR/perf.data)
# Usage: flock -o /work/bench.lock bash -c 'benches/uplink-probe.sh OUT & TRANSPORTS=dtls benches/compare.sh -t 10 --only headend; wait'
#        benches/uplink-probe.sh OUTDIR [WINDOW=4] [PERF=3] [MINPPS=20000]
# It measures; it asserts nothing.
set -uo pipefail
OUT=$1; WINDOW=${2:-4}; PERFW=${3:-3}; MINPPS=${4:-20000}
mkdir -p "$OUT"
log() { echo "probe: $(date +%T) $*" >&2; }

find_lab() {
  local d
  for d in $(ls -td /tmp/headend-lab-*/ 2>/dev/null); do
    [ -s "$d/headend.pid" ] && { echo "${d%/}"; return 0; }
  done
  return 1
}
vpn0() { ip -n "$NS" -s -j link show "$1" 2>/dev/null | jq -r '.[0].stats64 | "\(.rx.packets) \(.rx.bytes) \(.tx.packets) \(.tx.bytes)"'; }

end=$((SECONDS + 600))
while [ $SECONDS -lt $end ]; do
  DIR=$(find_lab) && break
  sleep 0.3
done
[ -n "${DIR:-}" ] || { log "no lab"; exit 1; }
ID=${DIR#/tmp/headend-lab-}; NS="vpngw-$ID"; PID=$(cat "$DIR/headend.pid")
BIN=$(readlink -f /proc/$PID/exe)
log "lab $ID headend $PID ($BIN)"
# Wait for the uplink: vpn0 RX (packets the headend writes) over MINPPS, more than TX.
prev=$(vpn0 vpn0)
while [ $SECONDS -lt $end ]; do
  sleep 0.5
  kill -0 "$PID" 2>/dev/null || { log "headend gone"; exit 1; }
  cur=$(vpn0 vpn0)
  read -r r0 _ t0 _ <<<"$prev"; read -r r1 _ t1 _ <<<"$cur"
  prev=$cur
  if [ $(( (r1 - r0) * 2 )) -gt "$MINPPS" ] && [ $((r1 - r0)) -gt $((t1 - t0)) ]; then break; fi
done
log "uplink flowing; measuring in 1 s"
sleep 1

snap() {
  local tag=$1
  "$BIN" show counters --admin-socket "$DIR/admin.sock" >"$OUT/counters.$tag" 2>&1
  echo "vpn0 $(vpn0 vpn0)" >"$OUT/links.$tag"
  echo "outside $(vpn0 outside)" >>"$OUT/links.$tag"
  ip netns exec "$NS" cat /proc/net/snmp | grep '^Udp:' >"$OUT/udp.$tag"
  cat /proc/$PID/stat >"$OUT/stat.$tag"
  for t in /proc/$PID/task/*; do
    echo "$(basename "$t") $(cat "$t/comm") $(awk '/^voluntary_ctxt_switches/ {v=$2} /^nonvoluntary_ctxt_switches/ {n=$2} END {print v, n}' "$t/status") $(awk '{print $14+$15}' "$t/stat")"
  done >"$OUT/tasks.$tag"
  cat /proc/stat | head -1 >"$OUT/cpu.$tag"
  date +%s.%N >"$OUT/time.$tag"
}
EV=""
for s in recvmmsg recvmsg recvfrom read write writev sendmsg sendmmsg sendto epoll_wait epoll_pwait futex ioctl sched_yield timerfd_settime; do
  EV="$EV,syscalls:sys_enter_$s"
done
EV="raw_syscalls:sys_enter,context-switches,cpu-migrations$EV"
snap a
perf stat -x, --per-thread -e "$EV" -p "$PID" -o "$OUT/stat.perf" -- sleep "$WINDOW" &
sp=$!
perf record -q -e syscalls:sys_exit_recvmmsg -p "$PID" -o "$OUT/recvmmsg.data" -- sleep 1 >/dev/null 2>&1
wait $sp
snap b
{ cat /proc/loadavg; top -b -n1 | head -15; } >"$OUT/top"
log "perf record -g ${PERFW}s"
perf record -q -g -p "$PID" -o "$OUT/perf.data" -- sleep "$PERFW" >/dev/null 2>&1
log "done"
