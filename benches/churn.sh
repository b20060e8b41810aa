#!/usr/bin/env bash
# Churn and leaks (issue 12 "memory goes back after churn", issue 17 item 4): `loadgen`
# rounds of N sessions logging in and out against one headend in a lab of
# netns/lab.sh, then reconnects after cut TCP connections; after every round, with 0
# sessions left, the headend's sessions, pool addresses, DTLS registrations, async
# tasks, fds, threads and RSS. Prints a table and one RESULT_JSON line; exit status 1
# if anything did not return to its level after the first round (RSS: more than
# --rss-slack MiB above it).
#
# Usage: sudo benches/churn.sh [--rounds R] [-n N] [--reconnect-sessions M]
#          [--reconnects K] [--transport dtls|cstp] [--concurrency C] [--rss-slack MIB]
#          [--settle SECS] [--probe "0 1000"] [--probe-n P] [--storm S]
#   HEADEND_BIN, LOADGEN_BIN  binaries (default target/release/*, built if missing)
#   HEADEND_PRELOAD           LD_PRELOAD for the headend (an allocator to compare:
#                             /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 ...)
#   HEADEND_ENV               extra environment for the headend (MALLOC_ARENA_MAX=2 ...)
#   HEADEND_WRAP              command to run the headend under (heaptrack -o FILE);
#                             the sampled process is then the headend, its child
#   CHURN_KEEP=1              keep the lab and the headend running at the end
#
# --probe "B1 B2 ...": first, for each B, P new logins (--probe-n, default 200) while B
# other sessions are up: connects/s and p99 connect latency, to see whether a login
# costs more when many sessions exist (issue 12). --rounds 0 skips the churn.
# --storm S: S sessions (loadgen --reconnect-on-loss) whose TCP connections the server
# cuts all at once (`ss -K` in its namespace); prints how long until every one is
# connected again and whether each kept its address.
# R rounds of N sessions = R*N connect/logout cycles; then M sessions that each cut
# their TCP connection (RST, no logout) and reconnect with their cookie K times (M*K
# reconnects), echo through the last tunnel, and log out. Everything it starts is
# stopped and the lab removed on exit. The machine is shared: the load average is
# printed with every row.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=benches/bench-lib.sh
. "$ROOT/benches/bench-lib.sh"
LAB="$ROOT/netns/lab.sh"
ROUNDS=20
N=500
RC_SESSIONS=100
RECONNECTS=10
TRANSPORT=dtls
CONC=64
PROBE=""
PROBE_N=200
STORM=0
SLACK=32
SETTLE=15
OUTSIDE_IP=198.18.0.1
USER_NAME=churn
PASSWORD="Churn-$RANDOM-$RANDOM"

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}
die() { echo "churn.sh: $*" >&2; exit 1; }
log() { echo "churn.sh: $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
  --rounds) ROUNDS=$2; shift 2 ;;
  -n) N=$2; shift 2 ;;
  --reconnect-sessions) RC_SESSIONS=$2; shift 2 ;;
  --reconnects) RECONNECTS=$2; shift 2 ;;
  --transport) TRANSPORT=$2; shift 2 ;;
  --concurrency) CONC=$2; shift 2 ;;
  --rss-slack) SLACK=$2; shift 2 ;;
  --settle) SETTLE=$2; shift 2 ;;
  --probe) PROBE=$2; shift 2 ;;
  --probe-n) PROBE_N=$2; shift 2 ;;
  --storm) STORM=$2; shift 2 ;;
  -h | --help) usage ;;
  *) echo "churn.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
for v in "$ROUNDS" "$N" "$RC_SESSIONS" "$RECONNECTS" "$CONC" "$SLACK" "$SETTLE" "$PROBE_N" "$STORM" $PROBE; do
  [[ "$v" =~ ^[0-9]+$ ]] || die "counts must be numbers, not '$v'"
done
[ "$N" -ge 1 ] && [ "$N" -le 16000 ] && [ "$RC_SESSIONS" -le 16000 ] || die "-n and --reconnect-sessions: 1..16000 (the /18 pool)"
[ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces)"
for p in ip jq ss; do command -v "$p" >/dev/null || die "'$p' not found"; done

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

ID="churn$$"
NS_C="vpnc-$ID"
NS_G="vpngw-$ID"
DIR="/tmp/headend-lab-$ID"
WORK=$(mktemp -d /tmp/headend-churn.XXXXXX)
RESULTS="$WORK/rounds.jsonl"
: >"$RESULTS"
LAB_UP=0
RUN_PID=""
HELPERS=()

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  [ "$rc" -ne 0 ] && [ -s "$DIR/headend.log" ] && tail -n 20 "$DIR/headend.log" >&2
  if [ "${CHURN_KEEP:-0}" = 1 ] && [ "$rc" -eq 0 ]; then
    log "kept: lab $ID, headend pid $(cat "$DIR/headend.pid" 2>/dev/null) (netns/lab.sh down $ID)"
  else
    for p in "${HELPERS[@]}"; do stop_pid "$p"; done
    # HEADEND_WRAP=heaptrack writes its file after the headend exits: up to 5 minutes.
    [ -n "$RUN_PID" ] && stop_pid "$RUN_PID" 300
    [ "$LAB_UP" -eq 1 ] && bash "$LAB" down "$ID" >/dev/null 2>&1
  fi
  log "results kept in $WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

admin() { ip netns exec "$NS_G" "$HEADEND_BIN" "$@" --admin-socket "$DIR/admin.sock"; }

bash "$LAB" up "$ID" >/dev/null || die "lab.sh up failed"
LAB_UP=1
PIN="pin-sha256:$(cat "$DIR/pin")"
MAXN=$((N > RC_SESSIONS ? N : RC_SESSIONS))
for b in $PROBE; do [ $((b + PROBE_N)) -gt "$MAXN" ] && MAXN=$((b + PROBE_N)); done
[ "$STORM" -gt "$MAXN" ] && MAXN=$STORM
[ "$MAXN" -le 16000 ] || die "more than 16,000 sessions at once (the /18 pool)"
# Two fds per DTLS session in loadgen (TCP + UDP): 10,000 sessions need more than
# this box's hard limit of 20,000; root may raise it (loadgen and the headend then
# raise their soft limit to it).
ulimit -Hn 65536 2>/dev/null && ulimit -Sn 65536 || log "could not raise RLIMIT_NOFILE (hard $(ulimit -Hn))"
# Sessions one loadgen process can hold within its RLIMIT_NOFILE; more are split
# over several processes (the probe's background sessions and the storm).
FDS_PER=1
[ "$TRANSPORT" = dtls ] && FDS_PER=2
LG_CAP=${LG_CAP:-$((($(ulimit -Hn) - 200) / FDS_PER))}
sed -i 's/^ip local pool VPN-POOL .*/ip local pool VPN-POOL 198.18.64.10-198.18.127.250 mask 255.255.192.0/' "$DIR/headend.cfg"
printf '!\ngroup-policy GP-EMPLOYEES attributes\n vpn-simultaneous-logins %s\nusername %s password %s\n' \
  "$((MAXN + 16))" "$USER_NAME" "$PASSWORD" >>"$DIR/headend.cfg"
"$HEADEND_BIN" check-config "$DIR/headend.cfg" >/dev/null || die "check-config failed"

# The headend as lab.sh starts it, optionally under a wrapper or another allocator.
# shellcheck disable=SC2086
ip netns exec "$NS_G" env ${HEADEND_PRELOAD:+LD_PRELOAD=$HEADEND_PRELOAD} ${HEADEND_ENV:-} \
  ${HEADEND_WRAP:-} "$HEADEND_BIN" run --config "$DIR/headend.cfg" \
  --tls-cert "$DIR/server-cert.pem" --tls-key "$DIR/server-key.pem" \
  --listen "$OUTSIDE_IP:443" --admin-socket "$DIR/admin.sock" --tun-name vpn0 \
  </dev/null >"$DIR/headend.log" 2>&1 &
RUN_PID=$!
wait_for 120 ip netns exec "$NS_G" sh -c "ss -Hltn 'sport = :443' | grep -q ." || die "headend not listening"
# The headend itself (under a wrapper it is a descendant of $RUN_PID).
PID=$(ip netns exec "$NS_G" ss -Hltnp 'sport = :443' | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1)
[[ "$PID" =~ ^[0-9]+$ ]] || die "no headend pid"
echo "$PID" >"$DIR/headend.pid"
log "headend pid $PID${HEADEND_PRELOAD:+ with LD_PRELOAD=$HEADEND_PRELOAD}${HEADEND_ENV:+ env $HEADEND_ENV}${HEADEND_WRAP:+ under $HEADEND_WRAP}"

counters() { admin show --json counters; }
# sample PHASE ROUND LOADGEN_JSON: the headend's state with 0 sessions, as one JSON row.
sample() {
  local phase=$1 round=$2 lg=$3 c pool rss threads fds
  c=$(counters)
  pool=$(admin show ip local pool VPN-POOL | sed -n 2p | awk '{print $NF}')
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$PID/status")
  threads=$(awk '/^Threads:/ {print $2}' "/proc/$PID/status")
  fds=$(find "/proc/$PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
  jq -cn --arg phase "$phase" --argjson round "$round" --argjson lg "$lg" --argjson c "$c" \
    --argjson sessions "$(admin show --json vpn-sessiondb summary | jq '.active + .inactive')" \
    --argjson pool "${pool:-null}" --argjson rss "$rss" --argjson threads "$threads" \
    --argjson fds "$fds" --arg load "$(loadavg)" --arg t "$(date -u +%T)" \
    '{phase: $phase, round: $round, t: $t, load: $load, up: $lg.up, failed: $lg.failed,
      lost: $lg.lost, reconnects: $lg.reconnects, addr_changed: $lg.reconnect_address_changed,
      echo_sent: $lg.echo.sent, echo_received: $lg.echo.received,
      rss_up_kib: $lg.server.up.rss_kib, sessions: $sessions, pool_in_use: $pool,
      dtls_app_ids: $c["dtls-app-ids"], dtls_peers: $c["dtls-peers"], tasks: $c.tasks,
      fds: $fds, threads: $threads, rss_kib: $rss}'
}

# settle: every session gone, then give idle threads (blocking pool: 10 s keep-alive)
# time to leave before sampling.
settle() {
  wait_for 120 sh -c "[ \"\$(ip netns exec '$NS_G' '$HEADEND_BIN' show --json vpn-sessiondb summary --admin-socket '$DIR/admin.sock' | jq '.active + .inactive')\" = 0 ]" ||
    log "sessions still there after 120 s"
  sleep "$SETTLE"
}

# loadgen ARGS...: one run, its RESULT_JSON on stdout.
loadgen() {
  ip netns exec "$NS_C" "$LOADGEN_BIN" --server "https://$OUTSIDE_IP/" --servercert "$PIN" \
    --user "$USER_NAME" --password "$PASSWORD" --group LOCAL-PW --transport "$TRANSPORT" \
    --concurrency "$CONC" --pps "${LG_PPS:-5}" --count 1 --duration 0 --drain 30 --server-pid "$PID" \
    --quiet "$@" 2>>"$WORK/loadgen.log" | sed -n 's/^RESULT_JSON //p'
}

# hold NAME N [ARGS...]: N sessions held up (loadgen --wait-stdin) by as many
# processes as RLIMIT_NOFILE needs (LG_CAP each); returns once all are ready.
hold() {
  local name=$1 left=$2 k=0 chunk
  shift 2
  HELPERS=()
  while [ "$left" -gt 0 ]; do
    chunk=$((left < LG_CAP ? left : LG_CAP))
    mkfifo "$WORK/$name-$k.in"
    ip netns exec "$NS_C" "$LOADGEN_BIN" --server "https://$OUTSIDE_IP/" --servercert "$PIN" \
      --user "$USER_NAME" --password "$PASSWORD" --group LOCAL-PW --transport "$TRANSPORT" \
      --concurrency "$CONC" --pps 0 --duration 0 --drain 0 --wait-stdin --quiet -n "$chunk" "$@" \
      <"$WORK/$name-$k.in" >"$WORK/$name-$k.out" 2>>"$WORK/loadgen.log" &
    HELPERS+=("$!")
    eval "exec $((20 + k))>\"\$WORK/$name-$k.in\""
    wait_for 1200 grep -q LOADGEN_READY "$WORK/$name-$k.out" || return 1
    left=$((left - chunk))
    k=$((k + 1))
  done
  HOLD_NAME=$name
}
# release: the held sessions log out; prints their RESULT_JSONs summed (one line).
release() {
  local k
  for k in "${!HELPERS[@]}"; do
    eval "echo >&$((20 + k)); exec $((20 + k))>&-"
  done
  for k in "${!HELPERS[@]}"; do wait "${HELPERS[$k]}" || true; done
  for k in "${!HELPERS[@]}"; do sed -n 's/^RESULT_JSON //p' "$WORK/$HOLD_NAME-$k.out"; done |
    jq -cs '{up: (map(.up) | add), reconnects: (map(.reconnects // 0) | add),
             lost: (map(.lost // 0) | add), logged_out: (map(.logged_out // 0) | add),
             processes: length}'
  HELPERS=()
}

sample baseline 0 '{"server":{}, "echo":{}}' >>"$RESULTS"
PROBES="$WORK/probes.jsonl"
: >"$PROBES"
for b in $PROBE; do
  # B sessions held up (loadgen --wait-stdin) while the probe logs in.
  [ "$b" -gt 0 ] && { hold "bg-$b" "$b" || die "probe: $b background sessions did not come up"; }
  load=$(loadavg)
  json=$(LG_PPS=0 loadgen -n "$PROBE_N") || true
  [ -n "$json" ] || die "probe at $b: loadgen gave no result"
  jq -c --argjson b "$b" --arg load "$load" \
    '{existing: $b, up: .up, failed: .failed, connects_per_s: .connects_per_s,
      p50_ms: .connect_ms.p50, p99_ms: .connect_ms.p99, login_cpu_s: .server.connect_cpu_s, load: $load}' \
    <<<"$json" | tee -a "$PROBES" >&2
  [ "$b" -gt 0 ] && release >/dev/null
  settle
done
if [ "$STORM" -gt 0 ]; then
  hold storm "$STORM" --reconnect-on-loss || die "storm: $STORM sessions did not come up"
  estab() { ip netns exec "$NS_G" ss -Htn state established '( sport = :443 )' | wc -l; }
  addrs() { admin show --json vpn-sessiondb anyconnect | jq -c '[.sessions[] | [.index, .assigned_ip]] | sort'; }
  a0=$(addrs)
  rss0=$(awk '/^VmRSS:/ {print $2}' "/proc/$PID/status")
  load=$(loadavg)
  t0=$(date +%s.%N)
  ip netns exec "$NS_G" ss -K -tn state established '( sport = :443 )' >/dev/null
  # Bounded: 600 s.
  wait_for 600 sh -c "[ \"\$(ip netns exec '$NS_G' ss -Htn state established '( sport = :443 )' | wc -l)\" -ge $STORM ]" ||
    log "storm: only $(estab) of $STORM connections back after 600 s"
  t1=$(date +%s.%N)
  sleep 2
  a1=$(addrs)
  rss1=$(awk '/^VmRSS:/ {print $2}' "/proc/$PID/status")
  release >"$WORK/storm-sum.json"
  sjson=$(cat "$WORK/storm-sum.json")
  settle
  jq -cn --argjson n "$STORM" --arg load "$load" --argjson s "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" \
    --argjson same "$([ "$a0" = "$a1" ] && echo true || echo false)" --argjson lg "${sjson:-null}" \
    --argjson rss0 "$rss0" --argjson rss1 "$rss1" \
    '{storm: $n, seconds_to_all_back: $s, same_indexes_and_addresses: $same,
      reconnects: $lg.reconnects, lost: $lg.lost, logged_out: $lg.logged_out,
      rss_before_mib: ($rss0 / 1024), rss_after_mib: ($rss1 / 1024), load: $load}' |
    tee "$WORK/storm.json" >&2
fi
for r in $(seq 1 "$ROUNDS"); do
  json=$(loadgen -n "$N") || true
  [ -n "$json" ] || die "round $r: loadgen gave no result ($WORK/loadgen.log)"
  settle
  row=$(sample churn "$r" "$json")
  echo "$row" >>"$RESULTS"
  log "round $r: $(jq -r '"up \(.up) failed \(.failed), left: sessions \(.sessions) pool \(.pool_in_use) tasks \(.tasks) fds \(.fds) threads \(.threads) RSS \(.rss_kib / 1024 | floor) MiB (load \(.load))"' <<<"$row")"
done
if [ "$RC_SESSIONS" -gt 0 ] && [ "$RECONNECTS" -gt 0 ]; then
  json=$(loadgen -n "$RC_SESSIONS" --reconnects "$RECONNECTS") || true
  [ -n "$json" ] || die "reconnects: loadgen gave no result ($WORK/loadgen.log)"
  settle
  row=$(sample reconnect "$RECONNECTS" "$json")
  echo "$row" >>"$RESULTS"
  log "reconnects: $(jq -r '"\(.reconnects) (\(.addr_changed) with another address), up \(.up) failed \(.failed), echo \(.echo_received)/\(.echo_sent); left: sessions \(.sessions) pool \(.pool_in_use) tasks \(.tasks) fds \(.fds) threads \(.threads) RSS \(.rss_kib / 1024 | floor) MiB"' <<<"$row")"
fi

if [ -s "$PROBES" ]; then
  echo
  echo "$PROBE_N new logins ($CONC in flight) while B other sessions are up"
  jq -rs '.[] | [.existing, "\(.up)/\(.failed)", (.connects_per_s * 10 | round / 10),
      .p50_ms, .p99_ms, (.login_cpu_s * 1000 | round / 1000), .load] | @tsv' "$PROBES" |
    { printf 'B\tup/failed\tconn/s\tp50 ms\tp99 ms\tserver CPU s\tload\n'; cat; } | column -t -s $'\t'
fi
echo
echo "headend $(basename "$HEADEND_BIN")${HEADEND_PRELOAD:+ LD_PRELOAD=$HEADEND_PRELOAD}${HEADEND_ENV:+ $HEADEND_ENV}, transport $TRANSPORT, $N sessions x $ROUNDS rounds, $RC_SESSIONS x $RECONNECTS reconnects, concurrency $CONC"
jq -rs '
  def r(x): if x == null then "-" else (x * 10 | round / 10 | tostring) end;
  .[] | [.phase, .round, .t, "\(.up // "-")/\(.failed // "-")", (.reconnects // "-"),
         "\(.echo_received // "-")/\(.echo_sent // "-")",
         r(if .rss_up_kib == null then null else .rss_up_kib / 1024 end),
         .sessions, .pool_in_use, .dtls_app_ids, .dtls_peers, .tasks, .fds, .threads,
         r(.rss_kib / 1024), .load] | @tsv' "$RESULTS" |
  { printf 'phase\tround\tUTC\tup/failed\treconn\techo\tRSS up MiB\tsessions\tpool used\tapp-ids\tpeers\ttasks\tfds\tthreads\tRSS MiB\tload\n'; cat; } |
  column -t -s $'\t'
# Back to the level after the first round: counts equal, RSS within the slack.
verdict=$(jq -s --argjson slack "$SLACK" '
  ((map(select(.phase == "churn")) | .[0]) // .[0]) as $first
  | (.[-1]) as $last
  | {first_round: $first, last: $last,
     counts_back: ($last.sessions == 0 and $last.pool_in_use == 0
                   and ($last.dtls_app_ids // 0) == 0 and ($last.dtls_peers // 0) == 0
                   and $last.tasks <= $first.tasks and $last.fds <= $first.fds
                   and $last.threads <= $first.threads),
     rss_growth_mib: (($last.rss_kib - $first.rss_kib) / 1024),
     rss_back: (($last.rss_kib - $first.rss_kib) / 1024 <= $slack),
     failures: (map(.failed // 0) | add)}' "$RESULTS")
echo "RESULT_JSON $(jq -cs --argjson v "$verdict" '{rounds: ., verdict: $v}' "$RESULTS")"
jq -r '"counts back to the first round: \(.counts_back); RSS \(.rss_growth_mib | . * 10 | round / 10) MiB above the first round (slack '"$SLACK"'): \(.rss_back); failed logins: \(.failures)"' <<<"$verdict"
jq -e '.counts_back and .rss_back and .failures == 0' <<<"$verdict" >/dev/null
