#!/usr/bin/env bash
# FreeRADIUS for a lab made by netns/lab.sh (tests/src/radius.rs does the same for the
# Rust tests; keep the two in step). Renders the templates of this directory into
# /tmp/headend-lab-ID/radius-ADDR/ and runs `freeradius -X` in the inside namespace.
#
# Usage: radius.sh start ID [ADDR]      FreeRADIUS on ADDR (default 198.18.1.20) 1812/1813
#        radius.sh stop ID [ADDR]
#        radius.sh radtest ID USER [PASSWORD] [ADDR]   PAP from the headend namespace
#        radius.sh coa ID 'Attr = value'...            CoA-Request to 198.18.1.1:1700
#        radius.sh disconnect ID 'Attr = value'...     Disconnect-Request to 198.18.1.1:1700
#        radius.sh secret ID                           print the lab's RADIUS secret
# The secret is /tmp/headend-lab-ID/radius-secret (made on first use); alice's and bob's
# passwords are the lab's (password-USER). Logs: /tmp/headend-lab-ID/radius-ADDR.log
# (-X: every attribute), accounting: /tmp/headend-lab-ID/radius-ADDR/detail.
# `lab.sh down ID` stops whatever this started (it kills everything in the namespaces).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HEADEND=198.18.1.1
PRIMARY=198.18.1.20

die() { echo "radius.sh: $*" >&2; exit 1; }

check_id() {
  [ -n "${1:-}" ] || die "missing ID"
  [[ "$1" =~ ^[A-Za-z0-9_.-]{1,40}$ ]] || die "bad ID '$1'"
}
check_addr() { [[ "$1" =~ ^198\.18\.1\.[0-9]{1,3}$ ]] || die "bad address '$1' (198.18.1.x)"; }

lab_dir() { echo "/tmp/headend-lab-$1"; }
ns_inside() { echo "inside-$1"; }
ns_gw() { echo "vpngw-$1"; }

secret() {
  local f
  f="$(lab_dir "$1")/radius-secret"
  if [ ! -s "$f" ]; then
    (umask 077 && openssl rand -hex 16 >"$f")
  fi
  cat "$f"
}

cmd_start() {
  local id=$1 addr=${2:-$PRIMARY} dir ns raddb log sec f pid n=0
  check_addr "$addr"
  dir=$(lab_dir "$id"); ns=$(ns_inside "$id")
  [ -e "/run/netns/$ns" ] || die "lab $id is not up (netns/lab.sh up $id)"
  raddb="$dir/radius-$addr"; log="$dir/radius-$addr.log"
  [ ! -e "$raddb.pid" ] || ! kill -0 "$(cat "$raddb.pid")" 2>/dev/null ||
    die "FreeRADIUS on $addr already runs (pid $(cat "$raddb.pid"))"
  sec=$(secret "$id")
  ip -n "$ns" -4 -o addr show dev eth0 | grep -q "inet $addr/" ||
    ip -n "$ns" addr add "$addr/24" dev eth0
  rm -rf "$raddb"
  (umask 077 && mkdir -p "$raddb")
  for f in radiusd.conf clients.conf users attrs.access_reject site-auth.conf; do
    sed -e "s|@RADDB@|$raddb|g" -e "s|@ADDR@|$addr|g" -e "s|@CLIENT@|$HEADEND|g" \
      -e "s|@SECRET@|$sec|g" -e "s|@ALICE_PASSWORD@|$(cat "$dir/password-alice")|g" \
      -e "s|@BOB_PASSWORD@|$(cat "$dir/password-bob")|g" -e "s|@EXTRA_USERS@||g" \
      "$HERE/$f" >"$raddb/${f/site-auth.conf/site.conf}"
  done
  chmod 600 "$raddb"/*
  if grep -n '@[A-Z_0-9]*@' "$raddb"/*; then die "unrendered placeholders in $raddb"; fi
  (umask 077 && : >>"$log")
  # `ip netns exec` execs freeradius, so $! is its pid.
  ip netns exec "$ns" freeradius -X -d "$raddb" </dev/null >>"$log" 2>&1 &
  pid=$!
  echo "$pid" >"$raddb.pid"
  until grep -q "Ready to process requests" "$log"; do
    kill -0 "$pid" 2>/dev/null || { tail -n 40 "$log" >&2; die "freeradius exited"; }
    [ "$n" -lt 300 ] || { tail -n 40 "$log" >&2; die "freeradius not ready after 30 s"; }
    sleep 0.1; n=$((n + 1))
  done
  echo "radius.sh: FreeRADIUS $pid on $addr:1812/1813 in $ns, secret $sec, log $log" >&2
}

cmd_stop() {
  local id=$1 addr=${2:-$PRIMARY} pidf
  pidf="$(lab_dir "$id")/radius-$addr.pid"
  [ -r "$pidf" ] || die "no FreeRADIUS started on $addr for lab $id"
  kill -TERM "$(cat "$pidf")" 2>/dev/null || true
  rm -f "$pidf"
}

cmd_radtest() {
  local id=$1 user=${2:-alice} pw=${3:-} addr=${4:-$PRIMARY} dir
  dir=$(lab_dir "$id")
  [ -n "$pw" ] || pw=$(cat "$dir/password-$user" 2>/dev/null) || pw=x
  ip netns exec "$(ns_gw "$id")" radtest -t pap "$user" "$pw" "$addr" 0 "$(secret "$id")"
}

cmd_dynauth() {
  local id=$1 kind=$2 from=${RADIUS_FROM:-$PRIMARY} ns
  shift 2
  ns=$(ns_inside "$id")
  ip -n "$ns" -4 -o addr show dev eth0 | grep -q "inet $from/" ||
    ip -n "$ns" addr add "$from/24" dev eth0
  {
    printf '%s\n' "$@"
    echo "Message-Authenticator = 0x00"
    echo "Packet-Src-IP-Address = $from"
  } | ip netns exec "$ns" radclient -x -t 3 -r 1 "$HEADEND:1700" "$kind" "$(secret "$id")"
}

cmd=${1:-}
case "$cmd" in
start | stop) check_id "${2:-}"; "cmd_$cmd" "$2" "${3:-}" ;;
radtest) check_id "${2:-}"; shift; cmd_radtest "$@" ;;
coa | disconnect) check_id "${2:-}"; id=$2; shift 2; cmd_dynauth "$id" "$cmd" "$@" ;;
secret) check_id "${2:-}"; secret "$2" ;;
*)
  sed -n '6,11p' "$0" >&2
  exit 2
  ;;
esac
