#!/usr/bin/env bash
# Installs every Debian package the build, the lab and the tests need.
# Idempotent; safe to run on a fresh Debian 12 machine as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PKGS=(
  build-essential pkg-config libssl-dev libclang-dev
  libxml2-dev libxmlsec1-dev xmlsec1
  iproute2 iputils-ping iptables nftables procps psmisc curl openssl ca-certificates
  openconnect ocserv iperf3 jq python3-venv
  rsyslog   # the lab runs its own rsyslogd in a namespace; the system one is left alone
  freeradius freeradius-utils
  simplesamlphp php-cli php-xml php-mbstring php-curl php-intl
  prometheus
  chromium chromium-driver   # the SAML browser tests: headless Chromium over WebDriver
  redis-server   # cluster tests (issue 19) run their own redis-server in a namespace
  arping         # cluster tests check the gratuitous ARP a takeover sends
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
# ocserv, freeradius, apache2 and redis-server start system services on install; the lab runs its own
# copies in its namespaces. Stop only the system services (by their init system), never
# other processes of the same name: another lab on this machine may be running.
for svc in ocserv freeradius apache2 prometheus redis-server; do
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl stop "$svc" >/dev/null 2>&1 || true
  elif [ -x "/etc/init.d/$svc" ]; then
    $SUDO "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
  fi
done
# PyPI tools the management-plane tests drive (tests/src/textfsm.rs): TextFSM with
# ntc-templates, and Netmiko. A venv from Debian's python3 keeps them off the system.
LAB_PY=/opt/headend-lab-py
if ! "$LAB_PY/bin/python" -c 'import textfsm, ntc_templates, netmiko' >/dev/null 2>&1; then
  echo "install-deps: installing textfsm ntc-templates netmiko into $LAB_PY"
  $SUDO /usr/bin/python3 -m venv "$LAB_PY"
  $SUDO "$LAB_PY/bin/pip" install --quiet textfsm ntc-templates netmiko
fi
# cargo-nextest (netns/test.sh) for the user who builds, with that user's cargo.
# shellcheck source=netns/as-user.sh
. "$(dirname "${BASH_SOURCE[0]}")/as-user.sh"
if as_build_user sh -c 'command -v cargo >/dev/null'; then
  as_build_user sh -c 'command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest'
else
  echo "install-deps: no cargo for user $(build_user) (install Rust with rustup); cargo-nextest not installed"
fi
echo "install-deps: ok"
