#!/usr/bin/env bash
# Manual interop check of the headend's SXP listener (draft-smith-kandula-sxp v4,
# TCP 64999, TCP-MD5) against the open-source SXP speaker `sxpd`
# (github.com/kilcreas/sxpdc, built separately: CI cannot fetch it, so this is not part
# of netns/test.sh).
#
#   sxgw-PID  veth0 198.18.1.1/24  headend run (listener, admin socket in the work dir)
#                 │  veth
#   sxsp-PID  veth0 198.18.1.20/24 sxpd (speaker, peer 198.18.1.1:64999, TCP-MD5)
#
# Only 198.18.0.0/15 addresses inside namespaces this script creates and deletes on any
# exit; nothing leaves the machine.
#
# Usage (root): netns/sxpd-check.sh /path/to/sxpd [HEADEND_BIN]
#   HEADEND_BIN (argument or environment) defaults to target/debug/headend of this repo.
#   The work dir /tmp/sxpd-check.XXXXXX (configs, logs, sxp.pcap) is kept and printed.
#   Takes about a minute.
#
# Checks, each printed PASS/FAIL with its evidence; exit status 1 if any failed:
#   1. sxpd connects: `show cts sxp connections` shows the peer On (version, hold time)
#   2. the three SXP bindings (+ the CLI one) are in `show cts role-based sgt-map all`
#   3. sxpd config reload (SIGHUP) without 198.18.2.0/29: the binding goes, the others stay
#  3b. it stays On with its bindings for 2 x hold time (KEEPALIVEs restart the timer)
#   4. sxpd frozen (SIGSTOP: no FIN, no keepalives): bindings go when the negotiated
#      hold time runs out, the connection goes Off
#   5. sxpd restarted, then killed (SIGTERM, so the kernel closes the TCP connection):
#      bindings go and the connection is Off
#   6. sxpd with a WRONG TCP-MD5 password never gets a connection (the kernel drops the
#      SYNs: TcpExtTCPMD5Failure grows, no "SXP connection accepted" in the headend log)
# The SXP messages on the wire (tcpdump, if installed) are decoded at the end.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")

SXPD=${1:?usage: $0 /path/to/sxpd [HEADEND_BIN]}
HB=${2:-${HEADEND_BIN:-$ROOT/target/debug/headend}}
[ "$(id -u)" -eq 0 ] || { echo "needs root (network namespaces, TCP-MD5)" >&2; exit 2; }
[ -x "$SXPD" ] || { echo "not an executable: $SXPD" >&2; exit 2; }
[ -x "$HB" ] || { echo "not an executable: $HB (build with cargo build -p headend --bin headend)" >&2; exit 2; }
SXPD=$(readlink -f "$SXPD")
HB=$(readlink -f "$HB")

GW=sxgw-$$
SP=sxsp-$$
GW_IP=198.18.1.1
SP_IP=198.18.1.20
PASSWORD=Sxp-Lab-Secret1
WRONG_PASSWORD=Not-The-Secret
HOLD_MIN=9   # headend `cts sxp listener hold-time 9 30`, sxpd speaker_min_hold_time 9
HOLD_MAX=30
DIR=$(mktemp -d /tmp/sxpd-check.XXXXXX)
ADMIN=$DIR/admin.sock

HEADEND_PID=
SXPD_PID=
TCPDUMP_PID=
FAILS=0
PASSES=0

ts() { date +%H:%M:%S.%3N; }
log() { echo "[$(ts)] $*"; }
pass() { PASSES=$((PASSES + 1)); echo "PASS: $*"; }
fail() { FAILS=$((FAILS + 1)); echo "FAIL: $*"; }
indent() { sed 's/^/    | /'; }

stop_pid() { # PID [SIGNAL]: signal, wait up to 10 s, then SIGKILL
  local pid=$1 sig=${2:-TERM} i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -CONT "$pid" 2>/dev/null || true
  kill "-$sig" "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  set +e
  stop_pid "$SXPD_PID" KILL
  stop_pid "$HEADEND_PID" TERM
  stop_pid "$TCPDUMP_PID" INT
  ip netns del "$SP" 2>/dev/null
  ip netns del "$GW" 2>/dev/null
  echo "work dir (configs, logs, sxp.pcap): $DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# wait_for SECONDS CMD...: polls CMD every 0.5 s until it succeeds (0) or time is up (1).
wait_for() {
  local limit=$1
  shift
  local end=$((SECONDS + limit))
  while :; do
    if "$@"; then return 0; fi
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.5
  done
}

gw() { ip netns exec "$GW" "$@"; }
sp() { ip netns exec "$SP" "$@"; }
show_conns() { gw "$HB" show cts sxp connections --admin-socket "$ADMIN" 2>&1; }
show_map() { gw "$HB" show cts role-based sgt-map all --admin-socket "$ADMIN" 2>&1; }
conn_on() { show_conns | grep -Eq '^Conn status *: On'; }
conn_off() { show_conns | grep -Eq '^Conn status *: Off'; }
# map_has ADDR SGT SOURCE (ADDR as the headend prints it: no /32, /128)
map_has() { show_map | grep -Eq "^${1//./\\.} +$2 +$3\$"; }
map_lacks() { # only on a real answer of the headend
  local out
  out=$(show_map) && grep -q '^Active IP-SGT Bindings' <<<"$out" && ! grep -Eq "^${1//./\\.} " <<<"$out"
}
sxp_bindings_all() { map_has 198.18.1.10 20 SXP && map_has 198.18.2.0/29 30 SXP && map_has 2001:db8::10 40 SXP; }
sxp_bindings_none() { map_lacks 198.18.1.10 && map_lacks 198.18.2.0/29 && map_lacks 2001:db8::10; }
field() { show_conns | awk -F': *' -v k="$1" 'index($0, k) == 1 { print $2; exit }'; }
accepted_count() { grep -c 'SXP connection accepted' "$DIR/headend.log" || true; }
md5_failures() { gw nstat -asz TcpExtTCPMD5Failure 2>/dev/null | awk '$1 == "TcpExtTCPMD5Failure" { print $2 }' | grep . || echo 0; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# write_sxpd_config FILE PASSWORD WITH_SUBNET(yes|no)
write_sxpd_config() {
  local file=$1 pw=$2 subnet=$3
  {
    cat <<EOF
# sxpd speaker for netns/sxpd-check.sh (libconfig; see default.cfg of kilcreas/sxpdc)
global = {
    log_level = "trace";
    retry_timer = 5;
    reconciliation_timer = 0;
    speaker_min_hold_time = $HOLD_MIN;
    listener_min_hold_time = $HOLD_MIN;
    listener_max_hold_time = $HOLD_MAX;
    default_connection_passwd = "$pw";
    bind_ip = "$SP_IP";
    port_number = 64999;
    node_id = 0x0a000001;
    enabled = true;
};
# peer_type is the OTHER end's role: the headend is the listener, sxpd the speaker.
peers = (
    {
        ip_address = "$GW_IP";
        port_number = 64999;
        connection_password = "$pw";
        peer_type = "listener";
    }
);
bindings = (
    { ipv4_prefix = "198.18.1.10"; ipv4_prefix_length = 32; sgt = 20; },
EOF
    if [ "$subnet" = yes ]; then
      echo '    { ipv4_prefix = "198.18.2.0"; ipv4_prefix_length = 29; sgt = 30; },'
    fi
    cat <<EOF
    { ipv6_prefix = "2001:db8::10"; ipv6_prefix_length = 128; sgt = 40; }
);
EOF
  } >"$file"
}

# start_sxpd CONFIG LOG: `ip netns exec` execs sxpd, so $! is sxpd itself (no shell
# function or subshell in between: signals must reach sxpd, not a wrapper).
start_sxpd() {
  ip netns exec "$SP" "$SXPD" "$1" trace "$DIR/sxpd.pid" </dev/null >>"$2" 2>&1 &
  SXPD_PID=$!
  wait_for 5 grep -qsx sxpd "/proc/$SXPD_PID/comm" ||
    log "warning: pid $SXPD_PID is not sxpd ($(cat "/proc/$SXPD_PID/comm" 2>/dev/null || echo gone))"
  log "sxpd started (pid $SXPD_PID, config $1, log $2)"
}

# ---------------------------------------------------------------- setup
log "headend: $HB"
log "sxpd:    $SXPD"
log "work dir: $DIR"
ip netns add "$GW"
ip netns add "$SP"
ip link add veth0 netns "$GW" type veth peer name veth0 netns "$SP"
gw ip link set lo up
sp ip link set lo up
gw ip addr add "$GW_IP/24" dev veth0
sp ip addr add "$SP_IP/24" dev veth0
gw ip link set veth0 up
sp ip link set veth0 up
gw sysctl -qw net.ipv4.ip_forward=1
wait_for 10 sp ping -c1 -W1 "$GW_IP" >/dev/null || { echo "veth link does not work" >&2; exit 1; }
log "namespaces $GW ($GW_IP) and $SP ($SP_IP) up"

sed -e 's/@ALICE_PASSWORD@/lab-alice-unused/; s/@BOB_PASSWORD@/lab-bob-unused/' \
  "$HERE/lab-asa.cfg.in" >"$DIR/headend.cfg"
cat >>"$DIR/headend.cfg" <<EOF
!
cts role-based sgt-map 198.18.1.0/28 sgt 20
cts sxp enable
cts sxp default password $PASSWORD
cts sxp listener hold-time $HOLD_MIN $HOLD_MAX
cts sxp connection peer $SP_IP password default mode local listener
EOF
"$HB" check-config "$DIR/headend.cfg" >"$DIR/check-config.out" 2>&1 ||
  { cat "$DIR/check-config.out" >&2; echo "check-config rejected $DIR/headend.cfg" >&2; exit 1; }
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$GW_IP" \
  -keyout "$DIR/server-key.pem" -out "$DIR/server-cert.pem" >/dev/null 2>&1

if command -v tcpdump >/dev/null; then
  ip netns exec "$GW" tcpdump -i veth0 -n -U -s 0 -w "$DIR/sxp.pcap" 'tcp port 64999' >"$DIR/tcpdump.log" 2>&1 &
  TCPDUMP_PID=$!
  wait_for 10 grep -qs 'listening on' "$DIR/tcpdump.log" || log "tcpdump did not start (see $DIR/tcpdump.log)"
else
  log "tcpdump not installed: no wire capture"
fi

HEADEND_LOG=${HEADEND_LOG:-debug} ip netns exec "$GW" "$HB" run --config "$DIR/headend.cfg" \
  --tls-cert "$DIR/server-cert.pem" --tls-key "$DIR/server-key.pem" \
  --listen "$GW_IP:443" --admin-socket "$ADMIN" --tun-name vpn0 \
  </dev/null >"$DIR/headend.log" 2>&1 &
HEADEND_PID=$!
if ! wait_for 30 grep -qs 'SXP listener on TCP 64999' "$DIR/headend.log" ||
  ! wait_for 10 show_conns >/dev/null; then
  tail -n 30 "$DIR/headend.log" | indent
  echo "headend did not come up" >&2
  exit 1
fi
log "headend up (pid $HEADEND_PID), SXP listener on $GW_IP:64999"
gw ss -Hltn 'sport = :64999' | indent

# ---------------------------------------------------------------- 1. connection On
write_sxpd_config "$DIR/sxpd-3.cfg" "$PASSWORD" yes
write_sxpd_config "$DIR/sxpd-2.cfg" "$PASSWORD" no
write_sxpd_config "$DIR/sxpd-wrong.cfg" "$WRONG_PASSWORD" yes
cp "$DIR/sxpd-3.cfg" "$DIR/sxpd.cfg"
start_sxpd "$DIR/sxpd.cfg" "$DIR/sxpd-1.log"

echo
echo "== 1. sxpd (speaker, right password) connects"
if wait_for 60 conn_on; then
  pass "peer $SP_IP is On: version $(field 'Conn version'), hold time $(field 'Hold time(sec)') s"
else
  fail "peer $SP_IP not On within 60 s"
fi
show_conns | indent
grep -E 'SXP connection (accepted|up)' "$DIR/headend.log" | indent
VERSION=$(field 'Conn version')
HOLD=$(field 'Hold time(sec)')
if [ "$VERSION" = 4 ]; then
  pass "negotiated SXP version 4"
else
  fail "negotiated SXP version is '${VERSION}', expected 4"
fi
if [ "$HOLD" = "$HOLD_MIN" ]; then
  pass "negotiated hold time $HOLD s (listener range [$HOLD_MIN,$HOLD_MAX], speaker minimum $HOLD_MIN)"
else
  fail "negotiated hold time '${HOLD}', expected $HOLD_MIN"
fi
[[ "$HOLD" =~ ^[0-9]+$ ]] || HOLD=$HOLD_MIN

# ---------------------------------------------------------------- 2. bindings
echo
echo "== 2. sxpd's bindings reach the IP-to-SGT map"
if wait_for 30 sxp_bindings_all && map_has 198.18.1.0/28 20 CLI; then
  pass "198.18.1.10 -> 20, 198.18.2.0/29 -> 30, 2001:db8::10 -> 40 (SXP) and 198.18.1.0/28 -> 20 (CLI)"
else
  fail "SXP bindings missing from the map"
fi
show_map | indent
BINDINGS=$(field 'Bindings learned')
if [ "$BINDINGS" = 3 ]; then
  pass "show cts sxp connections: Bindings learned = 3"
else
  fail "show cts sxp connections: Bindings learned = '${BINDINGS}', expected 3"
fi

# ---------------------------------------------------------------- 3. reload
echo
echo "== 3. sxpd config reload without 198.18.2.0/29 (SIGHUP)"
ACC_BEFORE=$(accepted_count)
cp "$DIR/sxpd-2.cfg" "$DIR/sxpd.cfg"
T_RELOAD=$(now)
log "SIGHUP to sxpd $SXPD_PID at $(ts)"
kill -HUP "$SXPD_PID" || fail "sxpd $SXPD_PID is gone before the reload"
if wait_for 60 map_lacks 198.18.2.0/29; then
  pass "198.18.2.0/29 gone from the map $(since "$T_RELOAD") s after SIGHUP"
else
  fail "198.18.2.0/29 still in the map 60 s after SIGHUP"
fi
if map_has 198.18.1.10 20 SXP && map_has 2001:db8::10 40 SXP && map_has 198.18.1.0/28 20 CLI; then
  pass "the other bindings stay (198.18.1.10 -> 20, 2001:db8::10 -> 40 SXP, CLI entry)"
else
  fail "other bindings changed by the reload"
fi
show_map | indent
ACC_AFTER=$(accepted_count)
if conn_on && [ "$ACC_AFTER" = "$ACC_BEFORE" ]; then
  pass "the connection stayed up across the reload (no new TCP connection): delete arrived as an UPDATE"
else
  fail "connection On=$(conn_on && echo yes || echo no), TCP connections accepted before/after reload: $ACC_BEFORE/$ACC_AFTER"
fi
grep -E 'SXP bindings (updated|purged)|SXP connection' "$DIR/headend.log" | tail -n 4 | indent

echo
echo "== 3b. the connection stays up for twice the hold time while sxpd runs (keepalives)"
STABLE=yes
end=$((SECONDS + 2 * HOLD))
while [ "$SECONDS" -lt "$end" ]; do
  if ! conn_on || ! map_has 198.18.1.10 20 SXP; then STABLE=no; break; fi
  sleep 1
done
if [ "$STABLE" = yes ] && [ "$(accepted_count)" = "$ACC_BEFORE" ]; then
  pass "On with its bindings for $((2 * HOLD)) s on the same TCP connection (KEEPALIVEs restart the hold timer)"
else
  fail "connection dropped or bindings went while sxpd was running"
  grep -E 'SXP connection' "$DIR/headend.log" | tail -n 3 | indent
fi

# ---------------------------------------------------------------- 4. hold timer
echo
echo "== 4. sxpd frozen (SIGSTOP): bindings age out after the hold time ($HOLD s)"
T_STOP=$(now)
kill -STOP "$SXPD_PID" || fail "sxpd $SXPD_PID is gone before SIGSTOP"
log "SIGSTOP to sxpd $SXPD_PID at $(ts)"
# Bindings must stay until the hold timer fires (last keepalive came <= ~3 s before).
EARLY=no
end=$((SECONDS + HOLD - 4))
while [ "$SECONDS" -lt "$end" ]; do
  if map_lacks 198.18.1.10; then EARLY=yes; break; fi
  sleep 0.5
done
if [ "$EARLY" = no ] && wait_for $((HOLD + 30)) sxp_bindings_none; then
  ELAPSED=$(since "$T_STOP")
  if awk -v e="$ELAPSED" -v h="$HOLD" 'BEGIN { exit !(e >= h - 4 && e <= h + 10) }'; then
    pass "SXP bindings gone ${ELAPSED} s after SIGSTOP (hold time $HOLD s)"
  else
    fail "SXP bindings gone ${ELAPSED} s after SIGSTOP, not around the hold time $HOLD s"
  fi
else
  fail "bindings went early ($EARLY) or were still there $((HOLD + 30)) s after SIGSTOP ($(since "$T_STOP") s)"
fi
if wait_for 10 conn_off; then
  pass "connection Off after the hold timer"
else
  fail "connection not Off after the hold timer"
fi
show_conns | indent
if map_has 198.18.1.0/28 20 CLI; then pass "CLI binding untouched"; else fail "CLI binding gone"; fi
grep -E 'SXP connection closed|SXP bindings purged' "$DIR/headend.log" | tail -n 2 | indent
stop_pid "$SXPD_PID" KILL
SXPD_PID=

# ---------------------------------------------------------------- 5. kill
echo
echo "== 5. sxpd restarted, then killed (SIGTERM)"
cp "$DIR/sxpd-3.cfg" "$DIR/sxpd.cfg"
start_sxpd "$DIR/sxpd.cfg" "$DIR/sxpd-2.log"
if wait_for 60 conn_on && wait_for 30 sxp_bindings_all; then
  pass "reconnected (retry_timer 5 s) with the three bindings again"
else
  fail "no reconnection with the three bindings within 90 s"
fi
T_KILL=$(now)
kill -TERM "$SXPD_PID" || fail "sxpd $SXPD_PID is gone before SIGTERM"
log "SIGTERM to sxpd $SXPD_PID at $(ts)"
wait "$SXPD_PID" 2>/dev/null || true
SXPD_PID=
if wait_for $((HOLD + 30)) sxp_bindings_none; then
  pass "SXP bindings gone $(since "$T_KILL") s after SIGTERM (hold time $HOLD s)"
else
  fail "SXP bindings still there $((HOLD + 30)) s after SIGTERM"
fi
if wait_for 10 conn_off; then pass "connection Off after the kill"; else fail "connection not Off after the kill"; fi
grep -E 'SXP connection closed|SXP bindings purged' "$DIR/headend.log" | tail -n 2 | indent
show_map | indent

# ---------------------------------------------------------------- 6. wrong password
echo
echo "== 6. sxpd with a WRONG TCP-MD5 password never connects"
ACC_BEFORE=$(accepted_count)
MD5_BEFORE=$(md5_failures)
start_sxpd "$DIR/sxpd-wrong.cfg" "$DIR/sxpd-wrong.log"
WRONG_ON=no
end=$((SECONDS + 25)) # five retry periods of sxpd (retry_timer 5)
while [ "$SECONDS" -lt "$end" ]; do
  if conn_on; then WRONG_ON=yes; break; fi
  sleep 0.5
done
MD5_AFTER=$(md5_failures)
ACC_AFTER=$(accepted_count)
if [ "$WRONG_ON" = no ] && [ "$ACC_AFTER" = "$ACC_BEFORE" ]; then
  pass "no connection in 25 s (headend accepted $((ACC_AFTER - ACC_BEFORE)) TCP connections)"
else
  fail "wrong-password speaker: On=$WRONG_ON, TCP connections accepted $ACC_BEFORE -> $ACC_AFTER"
fi
if [ "$MD5_AFTER" -gt "$MD5_BEFORE" ]; then
  pass "kernel dropped the SYNs: TcpExtTCPMD5Failure $MD5_BEFORE -> $MD5_AFTER in $GW"
else
  fail "TcpExtTCPMD5Failure did not grow ($MD5_BEFORE -> $MD5_AFTER): did sxpd try at all? (see $DIR/sxpd-wrong.log)"
fi
if sxp_bindings_none; then pass "no SXP bindings from the wrong-password speaker"; else fail "SXP bindings present"; fi
show_conns | indent
stop_pid "$SXPD_PID" KILL
SXPD_PID=

# ---------------------------------------------------------------- wire
if [ -n "$TCPDUMP_PID" ]; then
  stop_pid "$TCPDUMP_PID" INT
  TCPDUMP_PID=
  echo
  echo "== SXP messages on the wire ($DIR/sxp.pcap; KEEPALIVEs counted, not listed)"
  if command -v python3 >/dev/null; then
    python3 - "$DIR/sxp.pcap" "$SP_IP" <<'PY' | indent || echo "    (decode failed)"
import struct, sys, time, ipaddress
path, speaker = sys.argv[1], sys.argv[2]
data = open(path, 'rb').read()
magic = struct.unpack('<I', data[:4])[0]
end = '<' if magic in (0xa1b2c3d4, 0xa1b23c4d) else '>'
nsec = struct.unpack(end + 'I', data[:4])[0] == 0xa1b23c4d
link = struct.unpack(end + 'I', data[20:24])[0]
off = 24
flows = {}    # (src, sport, dst, dport) -> dict
names = {1: 'OPEN', 2: 'OPEN_RESP', 3: 'UPDATE', 4: 'ERROR', 5: 'PURGE_ALL', 6: 'KEEPALIVE'}
attr_names = {5: 'NODE-ID', 6: 'CAPS', 7: 'HOLD-TIME', 11: 'ADD4', 12: 'ADD6', 13: 'DEL4', 14: 'DEL6', 16: 'PEER-SEQ', 17: 'SGT'}
syns = {}
def attrs_v4(b):
    out, i = [], 0
    while i < len(b):
        flags = b[i]
        if flags & 0x10:
            t = b[i + 1]
            if flags & 0x08:
                ln = struct.unpack('>H', b[i + 2:i + 4])[0]; i += 4
            else:
                ln = b[i + 2]; i += 3
        else:
            t = int.from_bytes(b[i + 1:i + 4], 'big'); ln = struct.unpack('>I', b[i + 4:i + 8])[0]; i += 8
        v = b[i:i + ln]; i += ln
        n = attr_names.get(t, 'attr%d' % t)
        if t in (11, 13) and v:
            p = v[0]; a = bytes(v[1:]) + bytes(4 - len(v[1:])); n += ' %s/%d' % (ipaddress.IPv4Address(a[:4]), p)
        elif t in (12, 14) and v:
            p = v[0]; a = bytes(v[1:]) + bytes(16 - len(v[1:])); n += ' %s/%d' % (ipaddress.IPv6Address(a[:16]), p)
        elif t == 17:
            n += ' %d' % struct.unpack('>H', v)[0]
        elif t in (5, 16):
            n += ' ' + '.'.join(str(x) for x in v[:4])
        elif t == 7:
            n += ' ' + ','.join(str(x) for x in struct.unpack('>%dH' % (len(v) // 2), v))
        out.append(n)
    return out
def handle(tsv, key, payload, f):
    f['buf'] += payload
    while len(f['buf']) >= 8:
        ln, ty = struct.unpack('>II', f['buf'][:8])
        if ln < 8 or len(f['buf']) < ln:
            break
        m = f['buf'][:ln]; f['buf'] = f['buf'][ln:]
        who = 'sxpd   -> headend' if key[0] == speaker else 'headend -> sxpd  '
        name = names.get(ty, 'type%d' % ty)
        if ty == 6:
            f['ka'] += 1
            continue
        detail = ''
        try:
            if ty in (1, 2):
                ver, mode = struct.unpack('>II', m[8:16])
                detail = ' v%d %s' % (ver, {1: 'speaker', 2: 'listener'}.get(mode, mode))
                if ver >= 4:
                    detail += ' [' + ', '.join(attrs_v4(m[16:])) + ']'
            elif ty == 3 and m[8] & 0x10:
                detail = ' [' + ', '.join(attrs_v4(m[8:])) + ']'
        except Exception as e:
            detail = ' (undecoded: %s)' % e
        stamp = stamp_of(tsv)
        print('%s conn %d %s %s%s\n      %s' % (stamp, f['n'], who, name, detail, m.hex()))
def stamp_of(tsv):
    return time.strftime('%H:%M:%S', time.localtime(tsv)) + '.%03d' % int((tsv % 1) * 1000)
conns = {}    # canonical 4-tuple -> connection number
while off + 16 <= len(data):
    sec, frac, incl, orig = struct.unpack(end + 'IIII', data[off:off + 16]); off += 16
    pkt = data[off:off + incl]; off += incl
    tsv = sec + frac / (1e9 if nsec else 1e6)
    if link == 1:
        if struct.unpack('>H', pkt[12:14])[0] != 0x0800: continue
        ip = pkt[14:]
    elif link == 113:
        ip = pkt[16:]
    else:
        ip = pkt
    if ip[0] >> 4 != 4 or ip[9] != 6: continue
    ihl = (ip[0] & 15) * 4
    tot = struct.unpack('>H', ip[2:4])[0]
    src, dst = str(ipaddress.IPv4Address(ip[12:16])), str(ipaddress.IPv4Address(ip[16:20]))
    tcp = ip[ihl:tot]
    sport, dport, seq = struct.unpack('>HHI', tcp[:8])
    doff = (tcp[12] >> 4) * 4; fl = tcp[13]
    key = (src, sport, dst, dport)
    canon = tuple(sorted([(src, sport), (dst, dport)]))
    who = 'sxpd   -> headend' if src == speaker else 'headend -> sxpd  '
    if fl & 0x02:
        kind = 'SYN-ACK' if fl & 0x10 else 'SYN'
        syns[(key, kind)] = syns.get((key, kind), 0) + 1
        if kind == 'SYN-ACK' or canon not in conns:
            conns.setdefault(canon, len(conns) + 1)
            if kind == 'SYN-ACK' or key not in flows:
                flows[key] = {'next': (seq + 1) & 0xffffffff, 'buf': b'', 'ka': 0, 'n': conns[canon]}
        continue
    f = flows.get(key)
    payload = tcp[doff:]
    if f is None: continue
    if payload and seq == f['next']:  # else retransmission or out of order: ignored
        f['next'] = (seq + len(payload)) & 0xffffffff
        handle(tsv, key, payload, f)
    if fl & 0x05 and not f.get('end'):
        f['end'] = True
        print('%s conn %d %s %s' % (stamp_of(tsv), f['n'], who, 'RST' if fl & 0x04 else 'FIN (TCP close)'))
for key, f in flows.items():
    print('conn %d %s:%d -> %s:%d: %d KEEPALIVE(s)' % (f['n'], key[0], key[1], key[2], key[3], f['ka']))
bare = {}
for (key, kind), c in syns.items():
    if kind == 'SYN':
        back = (key[2], key[3], key[0], key[1])
        answered = syns.get((back, 'SYN-ACK'), 0)
        if not answered:
            bare[key] = c
if bare:
    total = sum(bare.values())
    print('%d SYN(s) from %s on %d port(s) never answered (TCP-MD5 mismatch: dropped by the kernel)' % (total, speaker, len(bare)))
PY
  fi
fi

echo
echo "== sxpd reload log (what sxpd did on SIGHUP)"
grep -E 'cfg_reload_real|delete updates|to delete msg|DEL-PREFIX' "$DIR/sxpd-1.log" | indent || true

echo
if [ "$FAILS" -eq 0 ]; then
  echo "RESULT: PASS ($PASSES checks)"
else
  echo "RESULT: FAIL ($FAILS of $((PASSES + FAILS)) checks failed)"
  exit 1
fi
