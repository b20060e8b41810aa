#!/usr/bin/env bash
# Installs target/debian/headend_*.deb into a clean Debian 12 (debootstrap minbase +
# systemd) booted with systemd-nspawn, starts headend.service and checks it: the unit
# is active after READY=1, runs as user headend with only CAP_NET_ADMIN and
# CAP_NET_BIND_SERVICE, has its TUN device and listeners, answers `headend show`,
# serves /metrics, survives `systemctl reload`, and stops cleanly.
# Needs root, debootstrap and systemd-container (apt-get install debootstrap
# systemd-container) and reaches deb.debian.org. The root fs is kept in
# $DEB12_ROOT (default /var/tmp/headend-deb12) for the next run; the container is
# stopped at the end. Exit status 0 = every check passed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEB=${DEB:-$(ls -1t "$ROOT"/target/debian/headend_*.deb 2>/dev/null | head -1)}
[ -n "$DEB" ] || { echo "no target/debian/headend_*.deb: run packaging/build-deb.sh" >&2; exit 1; }
FS=${DEB12_ROOT:-/var/tmp/headend-deb12}
[ "$(id -u)" -eq 0 ] || { echo "needs root" >&2; exit 1; }
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

if [ ! -x "$FS/lib/systemd/systemd" ]; then
  echo "debootstrap Debian 12 into $FS"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,curl \
    bookworm "$FS" http://deb.debian.org/debian >"$FS.debootstrap.log" 2>&1 ||
    fail "debootstrap (log $FS.debootstrap.log)"
fi
echo headend-deb12 >"$FS/etc/hostname"
cp "$DEB" "$FS/root/"
# The container has no network (--private-network): fetch the .deb's Debian
# dependencies into its apt cache from here first (a chroot shares our network).
cp /etc/resolv.conf "$FS/etc/resolv.conf"
chroot "$FS" apt-get update -qq >"$FS.apt-update.log" 2>&1 || fail "apt-get update (log $FS.apt-update.log)"
chroot "$FS" env DEBIAN_FRONTEND=noninteractive apt-get install -y --download-only \
  "/root/$(basename "$DEB")" >"$FS.apt-download.log" 2>&1 || fail "downloading dependencies (log $FS.apt-download.log)"

# Boot it: own network namespace (only lo), no registration with a host systemd.
systemd-nspawn -q -D "$FS" --keep-unit --register=no --private-network --boot \
  >"$FS.console.log" 2>&1 &
NSPAWN=$!
cleanup() {
  kill -TERM "$NSPAWN" 2>/dev/null || true   # nspawn shuts the container down
  for _ in $(seq 100); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$NSPAWN" 2>/dev/null || true
}
trap cleanup EXIT
INIT=
for _ in $(seq 300); do
  INIT=$(pgrep -P "$NSPAWN" -x systemd || true)
  [ -n "$INIT" ] && break
  sleep 0.1
done
[ -n "$INIT" ] || fail "container did not boot (console $FS.console.log)"
c() { nsenter -t "$INIT" -m -u -i -n -p -- "$@"; }
for _ in $(seq 300); do
  state=$(c systemctl is-system-running 2>/dev/null || true)
  case "$state" in running | degraded) break ;; esac
  sleep 0.2
done
ok "Debian 12 container booted (system $state)"

c env DEBIAN_FRONTEND=noninteractive apt-get install -y "/root/$(basename "$DEB")" \
  >"$FS.apt.log" 2>&1 || { tail -n 30 "$FS.apt.log"; fail "apt-get install of the .deb"; }
ok "apt-get install $(basename "$DEB") (dependencies from Debian 12)"
c test -x /usr/bin/headend || fail "no /usr/bin/headend"
c getent passwd headend >/dev/null || fail "no headend user"
c test -s /usr/share/man/man1/headend.1.gz || c test -s /usr/share/man/man1/headend.1 || fail "no man page"
c test -s /usr/share/bash-completion/completions/headend || fail "no bash completion"
c test -s /etc/headend/tls/key.pem || fail "no self-signed key"
c systemctl is-enabled headend >/dev/null 2>&1 && fail "unit enabled by the install" || true
ok "binary, headend user, man page, completions, self-signed cert; unit not enabled"

# A user to log in as and the metrics endpoint; then start the unit.
c sh -c 'echo "username alice password lab-secret-pw" >>/etc/headend/headend.cfg'
c sh -c 'echo "HEADEND_ARGS=\"--tls-cert /etc/headend/tls/cert.pem --tls-key /etc/headend/tls/key.pem --metrics-listen 127.0.0.1:9273\"" >/etc/default/headend'
c systemd-analyze verify --man=no /usr/lib/systemd/system/headend.service >"$FS.verify.log" 2>&1 ||
  { cat "$FS.verify.log"; fail "systemd-analyze verify"; }
ok "systemd-analyze verify headend.service"
c systemctl start headend || { c journalctl -u headend --no-pager | tail -n 30; fail "systemctl start headend"; }
c systemctl is-active headend >/dev/null || fail "headend not active"
ok "systemctl start headend: active (Type=notify: READY=1 received)"

PID=$(c systemctl show -p MainPID --value headend)
status=$(c cat "/proc/$PID/status")
uid=$(c id -u headend)
echo "$status" | grep -Eq "^Uid:\s+$uid\s" || fail "not running as headend: $(echo "$status" | grep ^Uid)"
for set in CapEff CapPrm CapBnd CapAmb; do
  echo "$status" | grep -Eq "^$set:\s+0000000000001400$" || fail "$set: $(echo "$status" | grep "^$set")"
done
ok "MainPID $PID runs as headend (uid $uid) with CapEff/CapPrm/CapBnd/CapAmb = NET_ADMIN+NET_BIND_SERVICE"
c ip -4 addr show vpn0 | grep -q 198.18.100.1/24 || fail "no TUN vpn0 with 198.18.100.1/24"
c sh -c "ss -Hltn 'sport = :443' | grep -q ." || fail "not listening on TCP 443"
ok "TUN vpn0 198.18.100.1/24 and TCP 443 listening"
c headend show vpn-sessiondb summary | grep -q "AnyConnect Client : 0" || fail "headend show"
ok "headend show vpn-sessiondb summary over /run/headend/admin.sock"
c curl -sf http://127.0.0.1:9273/metrics | grep -q '^headend_sessions{tunnel_group="LOCAL-PW",transport="tls"} 0' ||
  fail "metrics"
ok "GET /metrics"
c curl -sk -o /dev/null -w '%{http_code}' https://127.0.0.1/ | grep -q 200 || fail "HTTPS page"
ok "HTTPS answers on 443"
c systemctl reload headend
for _ in $(seq 100); do
  c journalctl -u headend --no-pager | grep -q "policy reloaded" && break
  sleep 0.1
done
c journalctl -u headend --no-pager | grep -q "policy reloaded" || fail "reload not logged"
c systemctl is-active headend >/dev/null || fail "not active after reload"
ok "systemctl reload headend (SIGHUP): policy reloaded, still active"
c systemctl show -p WatchdogUSec --value headend | grep -q 30s || fail "watchdog not set"
ok "WatchdogSec=30s in force"
c systemctl stop headend
c systemctl is-active headend >/dev/null && fail "still active after stop" || true
c sh -c '! ip link show vpn0 2>/dev/null' || fail "vpn0 left behind"
ok "systemctl stop headend: inactive, TUN removed"
echo "--- journal ---"
c journalctl -u headend --no-pager | tail -n 15
echo "ALL CHECKS PASSED"
