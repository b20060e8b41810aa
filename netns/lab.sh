#!/usr/bin/env bash
# The lab of shared/docs/lab.md in network namespaces (tests/src/lab.rs builds the same
# topology from Rust for the end-to-end tests; keep the two in step).
#
#   vpnc-ID  eth0 198.18.0.2/24 ──veth── c1 ┐
#                                           ├ bridge "outside" 198.18.0.1/24   vpngw-ID
#                       (more clients: c2…) ┘ TUN vpn0 198.18.100.1/24 (made by headend)
#   inside-ID eth0 198.18.1.10/24 ──veth── inside 198.18.1.1/24                (ip_forward=1)
#             default via 198.18.1.1
#
# Usage: lab.sh up ID | start ID | connect ID [USER] [-- OPENCONNECT-ARGS…] |
#        show ID | down ID | demo
# State (cert, key, config, passwords, pids, logs) lives in /tmp/headend-lab-ID/.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
OUTSIDE_IP=198.18.0.1
CLIENT_IP=198.18.0.2
INSIDE_GW=198.18.1.1
INSIDE_HOST=198.18.1.10
TUN_NAME=vpn0
USERS=(alice bob)

die() { echo "lab.sh: $*" >&2; exit 1; }
log() { echo "lab.sh: $*" >&2; }
# Run a command and say which one failed.
run() { "$@" || die "failed ($?): $*"; }

lab_dir() { echo "/tmp/headend-lab-$1"; }
ns_client() { echo "vpnc-$1"; }
ns_gw() { echo "vpngw-$1"; }
ns_inside() { echo "inside-$1"; }

check_id() {
  [ -n "${1:-}" ] || die "missing ID"
  [[ "$1" =~ ^[A-Za-z0-9_.-]{1,40}$ ]] || die "bad ID '$1' (letters, digits, _ . - only)"
}
need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces)"; }

headend_bin() {
  if [ -n "${HEADEND_BIN:-}" ]; then echo "$HEADEND_BIN"; return; fi
  local b
  for b in "$ROOT/target/release/headend" "$ROOT/target/debug/headend"; do
    if [ -x "$b" ]; then echo "$b"; return; fi
  done
  die "no headend binary: run 'cargo build --bins' (or set HEADEND_BIN)"
}

# Wait up to $1 seconds for the command "$@" to succeed (a hang guard, not a speed check).
wait_for() {
  local secs=$1; shift
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.1
  done
}

cmd_up() {
  local id=$1 dir c g i
  need_root
  dir=$(lab_dir "$id"); c=$(ns_client "$id"); g=$(ns_gw "$id"); i=$(ns_inside "$id")
  for ns in "$c" "$g" "$i"; do
    [ ! -e "/run/netns/$ns" ] || die "namespace $ns exists: run '$0 down $id' first"
  done
  mkdir -p "$dir"
  chmod 700 "$dir"

  for ns in "$c" "$g" "$i"; do
    run ip netns add "$ns"
    run ip -n "$ns" link set lo up
  done
  # Outside: a bridge in the headend ns so more client namespaces can join later.
  run ip -n "$g" link add outside type bridge
  run ip -n "$g" addr add "$OUTSIDE_IP/24" dev outside
  run ip -n "$g" link set outside up
  run ip -n "$c" link add eth0 type veth peer name c1 netns "$g"
  run ip -n "$g" link set c1 master outside
  run ip -n "$g" link set c1 up
  run ip -n "$c" addr add "$CLIENT_IP/24" dev eth0
  run ip -n "$c" link set eth0 up
  # Inside.
  run ip -n "$g" link add inside type veth peer name eth0 netns "$i"
  run ip -n "$g" addr add "$INSIDE_GW/24" dev inside
  run ip -n "$g" link set inside up
  run ip -n "$i" addr add "$INSIDE_HOST/24" dev eth0
  run ip -n "$i" link set eth0 up
  run ip -n "$i" route add default via "$INSIDE_GW"
  run ip netns exec "$g" sysctl -qw net.ipv4.ip_forward=1
  run ip netns exec "$g" sysctl -qw net.ipv6.conf.all.forwarding=1

  # TLS identity of the headend: self-signed, for the outside address.
  run openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$OUTSIDE_IP" \
    -addext "subjectAltName=IP:$OUTSIDE_IP" \
    -keyout "$dir/server-key.pem" -out "$dir/server-cert.pem" 2>/dev/null
  openssl x509 -in "$dir/server-cert.pem" -pubkey -noout |
    openssl pkey -pubin -outform der |
    openssl dgst -sha256 -binary | base64 >"$dir/pin"
  [ -s "$dir/pin" ] || die "could not compute the certificate pin"

  # Config with random local passwords.
  local sed_args=() u pw
  for u in "${USERS[@]}"; do
    pw=$(openssl rand -hex 12)
    printf '%s\n' "$pw" >"$dir/password-$u"
    sed_args+=(-e "s/@${u^^}_PASSWORD@/$pw/g")
  done
  sed "${sed_args[@]}" "$HERE/lab-asa.cfg.in" >"$dir/headend.cfg"
  chmod 600 "$dir"/password-* "$dir/headend.cfg" "$dir/server-key.pem"
  log "up $id: namespaces $c $g $i, state in $dir"
}

cmd_start() {
  local id=$1 dir g bin pid
  need_root
  dir=$(lab_dir "$id"); g=$(ns_gw "$id")
  [ -e "/run/netns/$g" ] || die "lab $id is not up: run '$0 up $id'"
  bin=$(headend_bin)
  if ! "$bin" check-config "$dir/headend.cfg" >"$dir/check-config.out" 2>&1; then
    cat "$dir/check-config.out" >&2
    die "headend check-config rejected $dir/headend.cfg"
  fi
  # `ip netns exec` execs the program, so $! is the headend's own pid.
  ip netns exec "$g" "$bin" run --config "$dir/headend.cfg" \
    --tls-cert "$dir/server-cert.pem" --tls-key "$dir/server-key.pem" \
    --listen "$OUTSIDE_IP:443" --admin-socket "$dir/admin.sock" --tun-name "$TUN_NAME" ${HEADEND_ARGS:-} \
    </dev/null >"$dir/headend.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/headend.pid"
  if ! wait_for 30 ip netns exec "$g" sh -c "ss -Hltn 'sport = :443' | grep -q ."; then
    tail -n 50 "$dir/headend.log" >&2 || true
    die "headend (pid $pid) is not listening on $OUTSIDE_IP:443 after 30 s"
  fi
  kill -0 "$pid" 2>/dev/null || { tail -n 50 "$dir/headend.log" >&2; die "headend exited"; }
  log "headend $pid listening on $OUTSIDE_IP:443, log $dir/headend.log"
}

cmd_connect() {
  local id=$1 user=alice dir c pin ifname
  shift
  if [ $# -gt 0 ] && [ "$1" != "--" ]; then user=$1; shift; fi
  [ "${1:-}" != "--" ] || shift
  need_root
  dir=$(lab_dir "$id"); c=$(ns_client "$id")
  [ -r "$dir/password-$user" ] || die "no password for '$user' in $dir (users: ${USERS[*]})"
  pin=$(cat "$dir/pin")
  ifname="tun-$user"
  ifname=${ifname:0:15}
  # openconnect runs the script with /bin/sh -c, so "sh PATH" works even without +x.
  if ! ip netns exec "$c" openconnect --protocol=anyconnect \
    --user "$user" --passwd-on-stdin --non-inter --authgroup LOCAL-PW \
    --servercert "pin-sha256:$pin" --interface "$ifname" \
    --script "/bin/sh $HERE/vpnc-script-min" \
    --background --pid-file "$dir/oc-$user.pid" "$@" "https://$OUTSIDE_IP/" \
    <"$dir/password-$user" >>"$dir/oc-$user.log" 2>&1; then
    tail -n 30 "$dir/oc-$user.log" >&2 || true
    die "openconnect for $user failed (log $dir/oc-$user.log)"
  fi
  if ! wait_for 30 sh -c "ip -n '$c' -4 -o addr show dev '$ifname' | grep -q inet"; then
    tail -n 30 "$dir/oc-$user.log" >&2 || true
    die "no address on $ifname in $c after 30 s"
  fi
  log "$user connected: $(ip -n "$c" -4 -o addr show dev "$ifname" | awk '{print $4}') on $ifname"
  ip -n "$c" route show dev "$ifname" >&2
}

cmd_show() {
  local id=$1 dir g
  dir=$(lab_dir "$id"); g=$(ns_gw "$id")
  ip netns exec "$g" "$(headend_bin)" show vpn-sessiondb --admin-socket "$dir/admin.sock"
}

# Stop a pid we recorded: TERM, up to 5 s grace, then KILL.
stop_pid() {
  local pid=$1 n=0
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null && [ "$n" -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
  kill -KILL "$pid" 2>/dev/null || true
}

cmd_down() {
  local id=$1 dir f ns pid
  need_root
  dir=$(lab_dir "$id")
  if [ -d "$dir" ]; then
    # Clients first, so they can say goodbye to a headend that is still there.
    for f in "$dir"/oc-*.pid "$dir/headend.pid"; do
      [ -r "$f" ] && stop_pid "$(cat "$f")"
    done
  fi
  for ns in "$(ns_client "$id")" "$(ns_gw "$id")" "$(ns_inside "$id")"; do
    [ -e "/run/netns/$ns" ] || continue
    # Anything still running in our namespaces was started by this lab.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || log "could not delete namespace $ns"
  done
  rm -rf "$dir"
  log "down $id"
}

cmd_demo() {
  local id="demo$$"
  need_root
  bash "$HERE/install-deps.sh"
  (cd "$ROOT" && cargo build --release --bins)
  export HEADEND_BIN="$ROOT/target/release/headend"
  # Expanded now: $id is local and gone by the time the EXIT trap runs.
  # shellcheck disable=SC2064
  trap "cmd_down '$id'" EXIT
  trap 'exit 130' INT TERM
  cmd_up "$id"
  cmd_start "$id"
  cmd_connect "$id" alice
  log "ping $INSIDE_HOST from $(ns_client "$id") through the tunnel"
  ip netns exec "$(ns_client "$id")" ping -c 3 -i 0.2 -W 2 "$INSIDE_HOST"
  log "headend show vpn-sessiondb"
  cmd_show "$id"
}

cmd=${1:-}
case "$cmd" in
up | start | show | down) check_id "${2:-}"; "cmd_$cmd" "$2" ;;
connect) check_id "${2:-}"; shift; cmd_connect "$@" ;;
demo) cmd_demo ;;
*)
  echo "usage: $0 up ID | start ID | connect ID [USER] [-- OPENCONNECT-ARGS...] | show ID | down ID | demo" >&2
  exit 2
  ;;
esac
