#!/usr/bin/env bash
# The lab of shared/docs/lab.md in network namespaces (tests/src/lab.rs, tests/src/idp.rs
# build the same topology from Rust for the end-to-end tests; keep them in step).
#
#   vpnc-ID   eth0 198.18.0.2/24  ──veth── c1  ┐
#   vpnc2-ID  eth0 198.18.0.3/24  ──veth── c2  ├ bridge "outside" 198.18.0.1/24   vpngw-ID
#   idp-ID    eth0 198.18.0.30/24 ──veth── idp ┘ TUN vpn0 198.18.100.1/24 (made by headend)
#             php -S 198.18.0.30:8080 (SimpleSAMLphp, the SAML IdP)
#                                                 fd00:100::1/64 (VPN-POOL6)
#   inside-ID eth0 198.18.1.10/24 ──veth── inside 198.18.1.1/24                 (ip_forward=1)
#             fd00:1::10/64                     fd00:1::1/64            (v6 forwarding=1)
#             default via 198.18.1.1 / fd00:1::1
#
# The IdP sits on the outside bridge, so a client's browser reaches it before any tunnel
# exists. Its config is netns/saml/*.php plus a lab.json rendered here as tests/src/idp.rs
# does (users alice and bob with IdP passwords of their own, SP = tunnel group
# company-vpn); the headend config gets the SAML blocks tests/src/idp.rs renders
# (trustpoint LAB-IDP with the IdP's certificate, `webvpn / saml idp`, tunnel group
# company-vpn with `authentication saml`, next to the password groups LOCAL-PW,
# LOCAL-NODTLS and the dual-stack LOCAL-DUAL).
#
# Usage: lab.sh up ID | start ID | show ID | down ID | demo [--keep]
#        lab.sh connect ID [USER] [--client N] [-- OPENCONNECT-ARGS…]
#             openconnect with USER's local password on LOCAL-PW
#        lab.sh connect-saml ID USER [--client N] [-- OPENCONNECT-ARGS…]
#             openconnect --external-browser on company-vpn; the browser is
#             netns/sso-browser.sh logging in at the IdP as USER
# --client 2 uses the second client namespace vpnc2-ID (default 1: vpnc-ID).
# State (certs, keys, configs, passwords, pids, logs) lives in /tmp/headend-lab-ID/:
# password-USER (local, LOCAL-PW), idp-password-USER (at the IdP), idp/ (IdP config
# and state), idp.log, headend.log, oc-USER.log, sso-browser-USER.log.
# demo [--keep]: LAB_NO_INSTALL=1 skips netns/install-deps.sh; HEADEND_BIN=PATH skips the
# build; --keep leaves the lab running and prints what to try. Run as a normal user, it
# builds with that user's cargo and asks sudo for root; as root through sudo, it builds
# as $SUDO_USER (netns/as-user.sh).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
LAB_ARGS=("$@")
# shellcheck source=netns/as-user.sh
. "$HERE/as-user.sh"
METRICS_PORT=9273
OUTSIDE_IP=198.18.0.1
CLIENT_IP=198.18.0.2
CLIENT2_IP=198.18.0.3
INSIDE_GW=198.18.1.1
INSIDE_HOST=198.18.1.10
INSIDE_GW6=fd00:1::1
INSIDE_HOST6=fd00:1::10
TUN_NAME=vpn0
USERS=(alice bob)
# The SAML IdP (as tests/src/idp.rs: IDP_IP, IDP_PORT, IDP_TRUSTPOINT).
IDP_IP=198.18.0.30
IDP_PORT=8080
IDP_TRUSTPOINT=LAB-IDP
IDP_BASE_URL="http://$IDP_IP:$IDP_PORT/simplesaml/"
IDP_ENTITY_ID="${IDP_BASE_URL}saml2/idp/metadata.php"
SIMPLESAMLPHP_WWW=/usr/share/simplesamlphp/www
SAML_TG=company-vpn
SAML_GP=GP-EMPLOYEES
# Hang guard for a whole SAML login (browser, IdP, ACS, token, CSTP); not a speed check.
SSO_GUARD=90

die() { echo "lab.sh: $*" >&2; exit 1; }
log() { echo "lab.sh: $*" >&2; }
# Run a command and say which one failed.
run() { "$@" || die "failed ($?): $*"; }

lab_dir() { echo "/tmp/headend-lab-$1"; }
ns_client() { echo "vpnc-$1"; }
ns_gw() { echo "vpngw-$1"; }
ns_inside() { echo "inside-$1"; }
ns_client2() { echo "vpnc2-$1"; }
ns_idp() { echo "idp-$1"; }
all_ns() { echo "$(ns_client "$1") $(ns_client2 "$1") $(ns_gw "$1") $(ns_inside "$1") $(ns_idp "$1")"; }
# Client namespace number $2 (1 or 2) of lab $1.
ns_client_n() {
  case "$2" in
    1) ns_client "$1" ;;
    2) ns_client2 "$1" ;;
    *) die "bad client number '$2' (1 or 2)" ;;
  esac
}

check_id() {
  [ -n "${1:-}" ] || die "missing ID"
  [[ "$1" =~ ^[A-Za-z0-9_.-]{1,40}$ ]] || die "bad ID '$1' (letters, digits, _ . - only)"
}
# Network namespaces need root: a normal user's run continues through sudo (the
# build, if any, is done by then, as that user).
need_root() {
  [ "$(id -u)" -eq 0 ] && return 0
  command -v sudo >/dev/null || die "must run as root (network namespaces) and sudo is not installed"
  log "network namespaces need root: continuing with sudo"
  exec sudo env ${HEADEND_BIN:+"HEADEND_BIN=$HEADEND_BIN"} ${LAB_NO_INSTALL:+"LAB_NO_INSTALL=$LAB_NO_INSTALL"} \
    ${HEADEND_ARGS:+"HEADEND_ARGS=$HEADEND_ARGS"} bash "$HERE/lab.sh" "${LAB_ARGS[@]}"
}

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
  local id=$1 dir c c2 g i p ns
  need_root
  dir=$(lab_dir "$id"); c=$(ns_client "$id"); c2=$(ns_client2 "$id"); g=$(ns_gw "$id")
  i=$(ns_inside "$id"); p=$(ns_idp "$id")
  for ns in $(all_ns "$id"); do
    [ ! -e "/run/netns/$ns" ] || die "namespace $ns exists: run '$0 down $id' first"
  done
  mkdir -p "$dir"
  chmod 700 "$dir"

  for ns in $(all_ns "$id"); do
    run ip netns add "$ns"
    run ip -n "$ns" link set lo up
  done
  # Outside: a bridge in the headend ns that the clients and the IdP join.
  run ip -n "$g" link add outside type bridge
  run ip -n "$g" addr add "$OUTSIDE_IP/24" dev outside
  run ip -n "$g" link set outside up
  bridge_port "$g" "$c" c1 "$CLIENT_IP"
  bridge_port "$g" "$c2" c2 "$CLIENT2_IP"
  bridge_port "$g" "$p" idp "$IDP_IP"
  # Inside.
  run ip -n "$g" link add inside type veth peer name eth0 netns "$i"
  run ip -n "$g" addr add "$INSIDE_GW/24" dev inside
  run ip -n "$g" link set inside up
  run ip -n "$i" addr add "$INSIDE_HOST/24" dev eth0
  run ip -n "$i" link set eth0 up
  run ip -n "$i" route add default via "$INSIDE_GW"
  # IPv6 inside (LOCAL-DUAL clients reach fd00:1::10 through the tunnel).
  run ip -n "$g" -6 addr add "$INSIDE_GW6/64" dev inside nodad
  run ip -n "$i" -6 addr add "$INSIDE_HOST6/64" dev eth0 nodad
  run ip -n "$i" -6 route add default via "$INSIDE_GW6"
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

  # Random passwords: local ones (LOCAL-PW) and, different, the IdP's.
  local sed_args=() u pw
  for u in "${USERS[@]}"; do
    pw=$(openssl rand -hex 12)
    printf '%s\n' "$pw" >"$dir/password-$u"
    sed_args+=(-e "s/@${u^^}_PASSWORD@/$pw/g")
    openssl rand -hex 12 >"$dir/idp-password-$u"
  done
  render_idp "$dir"
  # The headend config: the lab template plus the SAML blocks.
  {
    sed "${sed_args[@]}" "$HERE/lab-asa.cfg.in"
    printf '!\n! SAML (appended by netns/lab.sh, as tests/src/idp.rs renders it)\n'
    saml_config_block "$dir/idp/config/cert/idp.crt"
  } >"$dir/headend.cfg"
  chmod 600 "$dir"/password-* "$dir"/idp-password-* "$dir/headend.cfg" "$dir/server-key.pem"
  log "up $id: namespaces $(all_ns "$id"), state in $dir"
}

# A veth from namespace $2 (eth0, address $4/24) to port $3 of the outside bridge in $1.
bridge_port() {
  local g=$1 ns=$2 port=$3 addr=$4
  run ip -n "$ns" link add eth0 type veth peer name "$port" netns "$g"
  run ip -n "$g" link set "$port" master outside
  run ip -n "$g" link set "$port" up
  run ip -n "$ns" addr add "$addr/24" dev eth0
  run ip -n "$ns" link set eth0 up
}

# memberOf of an IdP user, as JSON list items (tests/src/idp.rs groups_of).
idp_groups() {
  case "$1" in
    alice) echo '"vpn-users", "engineering"' ;;
    bob) echo '"vpn-users", "sales"' ;;
    *) echo '"vpn-users"' ;;
  esac
}

# SimpleSAMLphp's config and state under LABDIR/idp (tests/src/idp.rs render_config):
# netns/saml/*.php, a per-lab RSA 2048 signing key pair, lab.json.
render_idp() {
  local dir=$1 idp sub f u first=1
  idp="$dir/idp"
  for sub in log data tmp sessions docroot config/cert; do mkdir -p "$idp/$sub"; done
  ln -s "$SIMPLESAMLPHP_WWW" "$idp/docroot/simplesaml"
  for f in lab.php config.php authsources.php saml20-idp-hosted.php saml20-sp-remote.php; do
    run cp "$HERE/saml/$f" "$idp/config/$f"
  done
  run openssl req -x509 -newkey rsa:2048 -sha256 -nodes -days 30 \
    -subj "/O=corp.example/CN=lab-idp" \
    -keyout "$idp/config/cert/idp.key" -out "$idp/config/cert/idp.crt" 2>/dev/null
  chmod 600 "$idp/config/cert/idp.key"
  {
    printf '{\n  "base_url": "%s",\n  "entity_id": "%s",\n  "dir": "%s",\n' \
      "$IDP_BASE_URL" "$IDP_ENTITY_ID" "$idp"
    printf '  "secret_salt": "%s",\n  "admin_password": "%s",\n  "users": [' \
      "$(openssl rand -hex 16)" "$(openssl rand -hex 12)"
    for u in "${USERS[@]}"; do
      [ "$first" -eq 1 ] || printf ','
      first=0
      printf '\n    {"user": "%s", "password": "%s", "attributes": {"uid": ["%s"], ' \
        "$u" "$(cat "$dir/idp-password-$u")" "$u"
      printf '"email": ["%s@corp.example"], "displayName": ["%s"], "memberOf": [%s]}}' \
        "$u" "${u^}" "$(idp_groups "$u")"
    done
    printf '\n  ],\n  "sps": [\n    {"entity_id": "https://%s/saml/sp/metadata/%s",\n' "$OUTSIDE_IP" "$SAML_TG"
    printf '     "acs": "https://%s/+CSCOE+/saml/sp/acs?tgname=%s",\n' "$OUTSIDE_IP" "$SAML_TG"
    printf '     "slo": "https://%s/+CSCOE+/saml/sp/logout",\n     "sign_response": false}\n  ]\n}\n' \
      "$OUTSIDE_IP"
  } >"$idp/config/lab.json"
  chmod 600 "$idp/config/lab.json"
}

# The headend lines that trust the IdP whose certificate is $1, and the SAML tunnel
# group: exactly Idp::asa_config_block("https://198.18.0.1") followed by
# Idp::asa_tunnel_group_block("company-vpn", "GP-EMPLOYEES") of tests/src/idp.rs.
saml_config_block() {
  local pem
  pem=$(cat "$1")
  cat <<CFG
crypto ca trustpoint $IDP_TRUSTPOINT
 revocation-check none
 no id-usage
 no ca-check
 enrollment terminal
crypto ca authenticate $IDP_TRUSTPOINT
$pem
quit
!
webvpn
 saml idp $IDP_ENTITY_ID
  url sign-in ${IDP_BASE_URL}saml2/idp/SSOService.php
  url sign-out ${IDP_BASE_URL}saml2/idp/SingleLogoutService.php
  base-url https://$OUTSIDE_IP
  trustpoint idp $IDP_TRUSTPOINT
  no signature
  force re-authentication
!
tunnel-group $SAML_TG type remote-access
tunnel-group $SAML_TG general-attributes
 address-pool VPN-POOL
 default-group-policy $SAML_GP
tunnel-group $SAML_TG webvpn-attributes
 authentication saml
 group-alias $SAML_TG enable
 saml identity-provider $IDP_ENTITY_ID
 ! ASA 9.17+: openconnect logs in with an external browser; without this line
 ! the headend (as an ASA) offers only the client's embedded browser.
 saml external-browser enable
!
CFG
}

# Why the IdP cannot run here, if it cannot.
idp_unavailable() {
  command -v php >/dev/null 2>&1 || { echo "php not found"; return; }
  [ -f "$SIMPLESAMLPHP_WWW/saml2/idp/SSOService.php" ] ||
    echo "SimpleSAMLphp not installed ($SIMPLESAMLPHP_WWW missing)"
}

# The IdP: php -S in idp-ID, logging to LABDIR/idp.log; waits until the client
# namespace can fetch its metadata.
start_idp() {
  local id=$1 dir p c pid
  dir=$(lab_dir "$id"); p=$(ns_idp "$id"); c=$(ns_client "$id")
  # `ip netns exec` and `env` exec, so $! is php's own pid (its workers are children).
  ip netns exec "$p" env SIMPLESAMLPHP_CONFIG_DIR="$dir/idp/config" PHP_CLI_SERVER_WORKERS=4 \
    php -d display_errors=stderr -d log_errors=0 -S "$IDP_IP:$IDP_PORT" -t "$dir/idp/docroot" \
    </dev/null >"$dir/idp.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/idp.pid"
  if ! wait_for 30 sh -c "ip netns exec '$c' curl -sS --max-time 5 --noproxy '*' '$IDP_ENTITY_ID' | grep -qF '$IDP_ENTITY_ID'"; then
    tail -n 50 "$dir/idp.log" >&2 || true
    die "the IdP (pid $pid) does not serve $IDP_ENTITY_ID to $c after 30 s"
  fi
  log "IdP $pid serving $IDP_BASE_URL, log $dir/idp.log"
}

cmd_start() {
  local id=$1 dir g bin pid why
  need_root
  dir=$(lab_dir "$id"); g=$(ns_gw "$id")
  [ -e "/run/netns/$g" ] || die "lab $id is not up: run '$0 up $id'"
  bin=$(headend_bin)
  if ! "$bin" check-config "$dir/headend.cfg" >"$dir/check-config.out" 2>&1; then
    cat "$dir/check-config.out" >&2
    die "headend check-config rejected $dir/headend.cfg"
  fi
  # The IdP first: the headend needs nothing from it to start, but logins do.
  why=$(idp_unavailable)
  if [ -n "$why" ]; then
    log "not starting the SAML IdP: $why (run netns/install-deps.sh); connect-saml will not work"
  elif [ -e "/run/netns/$(ns_idp "$id")" ]; then
    start_idp "$id"
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

# Parses `[USER] [--client N] [-- ARGS…]` (after ID) into CONNECT_USER, CONNECT_CLIENT
# and CONNECT_ARGS.
parse_connect_args() {
  CONNECT_USER=
  CONNECT_CLIENT=1
  CONNECT_ARGS=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --) shift; CONNECT_ARGS=("$@"); return ;;
      --client) [ $# -ge 2 ] || die "--client needs a number"; CONNECT_CLIENT=$2; shift 2 ;;
      --client=*) CONNECT_CLIENT=${1#--client=}; shift ;;
      -*) die "unknown option '$1' (openconnect options go after --)" ;;
      *)
        [ -z "$CONNECT_USER" ] || die "unexpected argument '$1'"
        CONNECT_USER=$1; shift ;;
    esac
  done
}

# Waits until TUN device $2 in namespace $1 has an IPv4 address, then says so.
connected() {
  local ns=$1 ifname=$2 user=$3 log=$4
  if ! wait_for 30 sh -c "ip -n '$ns' -4 -o addr show dev '$ifname' | grep -q inet"; then
    tail -n 30 "$log" >&2 || true
    die "no address on $ifname in $ns after 30 s"
  fi
  log "$user connected: $(ip -n "$ns" -4 -o addr show dev "$ifname" | awk '{print $4}') on $ifname in $ns"
  ip -n "$ns" route show dev "$ifname" >&2
}

cmd_connect() {
  local id=$1 user dir c pin ifname
  shift
  parse_connect_args "$@"
  user=${CONNECT_USER:-alice}
  need_root
  dir=$(lab_dir "$id"); c=$(ns_client_n "$id" "$CONNECT_CLIENT")
  [ -r "$dir/password-$user" ] || die "no password for '$user' in $dir (users: ${USERS[*]})"
  pin=$(cat "$dir/pin")
  ifname="tun-$user"
  ifname=${ifname:0:15}
  # openconnect runs the script with /bin/sh -c, so "sh PATH" works even without +x.
  if ! ip netns exec "$c" openconnect --protocol=anyconnect \
    --user "$user" --passwd-on-stdin --non-inter --authgroup LOCAL-PW \
    --servercert "pin-sha256:$pin" --interface "$ifname" \
    --script "/bin/sh $HERE/vpnc-script-min" \
    --background --pid-file "$dir/oc-$user.pid" "${CONNECT_ARGS[@]}" "https://$OUTSIDE_IP/" \
    <"$dir/password-$user" >>"$dir/oc-$user.log" 2>&1; then
    tail -n 30 "$dir/oc-$user.log" >&2 || true
    die "openconnect for $user failed (log $dir/oc-$user.log)"
  fi
  connected "$c" "$ifname" "$user" "$dir/oc-$user.log"
}

# The external browser for USER: netns/sso-browser.sh with the IdP password of the lab,
# logging to LABDIR/sso-browser-USER.log and recording its exit status (openconnect
# never reaps the browser and waits on its listener forever when the browser fails).
browser_wrapper() {
  local dir=$1 user=$2 w st
  w="$dir/sso-browser-$user.sh"
  st="$dir/sso-browser-$user.status"
  {
    echo '#!/bin/bash'
    printf 'rm -f %q\n' "$st"
    printf 'SSO_USER=%q SSO_PASSWORD_FILE=%q SSO_LOG=%q /bin/bash %q "$@"\n' \
      "$user" "$dir/idp-password-$user" "$dir/sso-browser-$user.log" "$HERE/sso-browser.sh"
    echo 'rc=$?'
    printf 'echo "$rc" >%q && mv -f %q %q\n' "$st.tmp" "$st.tmp" "$st"
    echo 'exit "$rc"'
  } >"$w"
  chmod 700 "$w"
  echo "$w"
}

cmd_connect_saml() {
  local id=$1 user dir c pin ifname wrapper status oc rc end
  shift
  parse_connect_args "$@"
  user=$CONNECT_USER
  [ -n "$user" ] || die "connect-saml: missing USER"
  need_root
  dir=$(lab_dir "$id"); c=$(ns_client_n "$id" "$CONNECT_CLIENT")
  [ -r "$dir/idp-password-$user" ] || die "no IdP password for '$user' in $dir (users: ${USERS[*]})"
  [ -r "$dir/idp.pid" ] && kill -0 "$(cat "$dir/idp.pid")" 2>/dev/null ||
    die "the lab's IdP is not running (see $dir/idp.log; '$0 start $id' starts it)"
  [[ "$user" =~ ^[A-Za-z0-9_.-]+$ ]] || die "bad user name '$user'"
  pin=$(cat "$dir/pin")
  ifname="tun-$user"
  ifname=${ifname:0:15}
  wrapper=$(browser_wrapper "$dir" "$user")
  status="$dir/sso-browser-$user.status"
  rm -f "$status"
  # In the background of this shell: openconnect waits on its [::1]:29786 listener for
  # the browser with no timeout, so this script is the hang guard. --background forks
  # once the tunnel is up and the first process exits 0.
  ip netns exec "$c" openconnect --protocol=anyconnect --non-inter --authgroup "$SAML_TG" \
    --external-browser="$wrapper" \
    --servercert "pin-sha256:$pin" --interface "$ifname" \
    --script "/bin/sh $HERE/vpnc-script-min" \
    --background --pid-file "$dir/oc-$user.pid" "${CONNECT_ARGS[@]}" "https://$OUTSIDE_IP/" \
    </dev/null >>"$dir/oc-$user.log" 2>&1 &
  oc=$!
  end=$((SECONDS + SSO_GUARD))
  until ip -n "$c" -4 -o addr show dev "$ifname" 2>/dev/null | grep -q inet; do
    rc=
    if [ -s "$status" ] && [ "$(cat "$status")" != 0 ]; then
      rc=$(cat "$status")
      kill -TERM "$oc" 2>/dev/null || true
      tail -n 30 "$dir/sso-browser-$user.log" >&2 || true
      die "the browser for $user failed (exit $rc, see netns/sso-browser.sh; log $dir/sso-browser-$user.log)"
    fi
    if [ -n "$oc" ] && ! kill -0 "$oc" 2>/dev/null; then
      rc=0
      wait "$oc" || rc=$?
      oc=
      if [ "$rc" -ne 0 ]; then
        tail -n 30 "$dir/oc-$user.log" >&2 || true
        die "openconnect for $user failed (exit $rc, log $dir/oc-$user.log)"
      fi
    fi
    if [ "$SECONDS" -ge "$end" ]; then
      [ -z "$oc" ] || kill -TERM "$oc" 2>/dev/null || true
      tail -n 30 "$dir/oc-$user.log" >&2 || true
      tail -n 30 "$dir/sso-browser-$user.log" >&2 || true
      die "no tunnel for $user after ${SSO_GUARD}s (logs $dir/oc-$user.log, $dir/sso-browser-$user.log)"
    fi
    sleep 0.2
  done
  log "$user: SAML login done (browser exit $(cat "$status" 2>/dev/null || echo '?'), log $dir/sso-browser-$user.log)"
  connected "$c" "$ifname" "$user" "$dir/oc-$user.log"
}

cmd_show() {
  local id=$1 dir g
  dir=$(lab_dir "$id"); g=$(ns_gw "$id")
  ip netns exec "$g" "$(headend_bin)" show vpn-sessiondb anyconnect --admin-socket "$dir/admin.sock"
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
    for f in "$dir"/oc-*.pid "$dir/headend.pid" "$dir/idp.pid"; do
      [ -r "$f" ] && stop_pid "$(cat "$f")"
    done
  fi
  for ns in $(all_ns "$id"); do
    [ -e "/run/netns/$ns" ] || continue
    # Anything still running in our namespaces was started by this lab.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || log "could not delete namespace $ns"
  done
  rm -rf "$dir"
  log "down $id"
}

cmd_demo() {
  local id="demo$$" why keep=0 arg c c2 g sessions
  for arg in "$@"; do
    case "$arg" in
      --keep) keep=1 ;;
      *) die "demo: unknown argument '$arg' (only --keep)" ;;
    esac
  done
  if [ "${LAB_NO_INSTALL:-0}" = 1 ]; then
    log "LAB_NO_INSTALL=1: not running netns/install-deps.sh"
  else
    bash "$HERE/install-deps.sh"
    export LAB_NO_INSTALL=1
  fi
  if [ -n "${HEADEND_BIN:-}" ]; then
    [ -x "$HEADEND_BIN" ] || die "HEADEND_BIN=$HEADEND_BIN is not an executable"
    log "HEADEND_BIN=$HEADEND_BIN: not building"
  else
    require_cargo
    log "building the headend (release) as $(build_user)"
    (cd "$ROOT" && as_build_user cargo build --release -p headend --bin headend)
    export HEADEND_BIN="$ROOT/target/release/headend"
  fi
  case " ${HEADEND_ARGS:-} " in
    *" --metrics-listen "*) ;;
    *) export HEADEND_ARGS="${HEADEND_ARGS:-} --metrics-listen $OUTSIDE_IP:$METRICS_PORT" ;;
  esac
  need_root
  why=$(idp_unavailable)
  [ -z "$why" ] || die "the demo needs the SAML IdP: $why (run netns/install-deps.sh)"
  c=$(ns_client "$id"); c2=$(ns_client2 "$id"); g=$(ns_gw "$id")
  if [ "$keep" = 0 ]; then
    # Expanded now: $id is local and gone by the time the EXIT trap runs.
    # shellcheck disable=SC2064
    trap "cmd_down '$id'" EXIT
  else
    # Only a failed demo is torn down; a finished one stays for you to use.
    # shellcheck disable=SC2064
    trap "[ \$? -eq 0 ] || cmd_down '$id'" EXIT
  fi
  trap 'exit 130' INT TERM
  cmd_up "$id"
  cmd_start "$id"
  log "alice: SAML login (tunnel group $SAML_TG) from $c, browser = netns/sso-browser.sh"
  cmd_connect_saml "$id" alice
  log "ping $INSIDE_HOST from $c through alice's tunnel"
  ip netns exec "$c" ping -c 3 -i 0.2 -W 2 "$INSIDE_HOST"
  log "bob: local password (tunnel group LOCAL-PW) from $c2"
  cmd_connect "$id" bob --client 2
  log "ping $INSIDE_HOST from $c2 through bob's tunnel"
  ip netns exec "$c2" ping -c 3 -i 0.2 -W 2 "$INSIDE_HOST"
  log "headend show vpn-sessiondb anyconnect"
  cmd_show "$id"
  sessions=$(ip netns exec "$g" curl -sf --max-time 5 "http://$OUTSIDE_IP:$METRICS_PORT/metrics" |
    awk '/^headend_sessions\{/ { n += $2 } END { print n + 0 }')
  cat <<SUMMARY

=== demo summary ===
- lab $id: clients $c (198.18.0.2) and $c2 ($CLIENT2_IP), headend in $g ($OUTSIDE_IP),
  inside host $INSIDE_HOST, SAML IdP at $IDP_BASE_URL
- alice logged in with SAML (tunnel group $SAML_TG), bob with a local password (LOCAL-PW)
- both pinged $INSIDE_HOST through their tunnels
- show vpn-sessiondb listed both sessions; /metrics reports headend_sessions = $sessions
SUMMARY
  if [ "$keep" = 1 ]; then
    cat <<KEEP
The lab is still running (--keep). Things to try (as root, or prefix with sudo):
  ip netns exec $g $HEADEND_BIN show vpn-sessiondb anyconnect --admin-socket $(lab_dir "$id")/admin.sock
  ip netns exec $g $HEADEND_BIN show counters --admin-socket $(lab_dir "$id")/admin.sock
  ip netns exec $c ping -c 3 $INSIDE_HOST            # through alice's tunnel
  ip netns exec $g curl -s http://$OUTSIDE_IP:$METRICS_PORT/metrics | grep ^headend_
  bash netns/lab.sh connect $id alice                # a second session for alice (LOCAL-PW)
  less $(lab_dir "$id")/headend.log
When done:
  bash netns/lab.sh down $id
KEEP
  else
    echo "The lab is removed now (run 'bash netns/lab.sh demo --keep' to keep it)."
  fi
}

usage() {
  echo "usage: $0 up ID | start ID | connect ID [USER] [--client N] [-- OPENCONNECT-ARGS...] |" >&2
  echo "       connect-saml ID USER [--client N] [-- OPENCONNECT-ARGS...] | show ID | down ID | demo [--keep]" >&2
  exit 2
}

cmd=${1:-}
case "$cmd" in
up | start | show | down) check_id "${2:-}"; "cmd_$cmd" "$2" ;;
connect) check_id "${2:-}"; shift; cmd_connect "$@" ;;
connect-saml) check_id "${2:-}"; shift; cmd_connect_saml "$@" ;;
demo) shift; cmd_demo "$@" ;;
*) usage ;;
esac
