# Shell helpers for the benchmark scripts (sourced, not run): process
# control, hang guards, CPU and UDP counters, the ocserv configuration.
# compare.sh, tput.sh, scale.sh and churn.sh source them.
# shellcheck shell=bash

# TERM, up to $2 seconds of grace (default 10), then KILL. Only pids the calling
# script started.
stop_pid() {
  local pid=$1 grace=${2:-10} n=0
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  [[ "$grace" =~ ^[0-9]+$ ]] || grace=10
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null && [ "$n" -lt $((grace * 10)) ]; do sleep 0.1; n=$((n + 1)); done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Wait up to $1 seconds for "$@" to succeed (a hang guard, not a speed check).
wait_for() {
  local secs=$1; shift
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.1
  done
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# "pid:starttime ticks" for each pid (utime+stime of all its threads, in clock
# ticks); starttime tells a reused pid from the one sampled before.
cpu_sample() {
  local pid stat rest
  for pid in "$@"; do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    rest=${stat##*) } # the fields after "(comm) "; comm may hold spaces
    # shellcheck disable=SC2086
    set -- $rest
    # rest: $1 = state (field 3), so utime (14) is $12, stime (15) $13, starttime (22) $20.
    echo "$pid:${20} $((${12} + ${13}))"
  done
}

# CPU ticks used between two samples (files): processes that appeared count
# from 0; processes that vanished are reported on stderr (their ticks are lost).
cpu_delta() {
  awk -v tag="$3" '
    FNR == NR { before[$1] = $2; next }
    { d += $2 - (($1 in before) ? before[$1] : 0); seen[$1] = 1 }
    END {
      for (k in before) if (!(k in seen)) printf "%s process %s exited during the run; its CPU is not counted\n", tag, k > "/dev/stderr"
      print d + 0
    }' "$1" "$2"
}

# One counter of the "Udp:" line of /proc/net/snmp, as seen in namespace $1.
udp_counter() {
  ip netns exec "$1" awk -v want="$2" '
    /^Udp:/ { if (!hdr) { for (i = 1; i <= NF; i++) if ($i == want) col = i; hdr = 1 } else { print (col ? $col : 0); exit } }
  ' /proc/net/snmp
}

# ocserv.conf with the e2e control's settings (tests/src/ocserv.rs) for DIR
# (certificate, key, ocpasswd, socket and pid files live there), at most
# MAX_CLIENTS clients, pool NETWORK/NETMASK and link MTU MTU (ocserv takes
# 66 bytes of it for DTLS 1.2 AES-GCM, 28 for CSTP).
# Usage: ocserv_conf DIR LISTEN_IP MAX_CLIENTS NETWORK NETMASK MTU >ocserv.conf
ocserv_conf() {
  local dir=$1 listen=$2 max=$3 net=$4 mask=$5 mtu=$6
  cat <<EOF
auth = "plain[passwd=$dir/ocpasswd]"
listen-host = $listen
tcp-port = 443
udp-port = 443
run-as-user = root
run-as-group = root
socket-file = $dir/ocserv.sock
pid-file = $dir/ocserv.pid
server-cert = $dir/server-cert.pem
server-key = $dir/server-key.pem
isolate-workers = false
use-occtl = false
max-clients = $max
max-same-clients = 0
keepalive = 32400
dpd = 90
try-mtu-discovery = false
auth-timeout = 240
cookie-timeout = 300
rate-limit-ms = 0
deny-roaming = false
rekey-time = 172800
rekey-method = new-tunnel
device = vpns
predictable-ips = true
ipv4-network = $net
ipv4-netmask = $mask
dns = 198.18.1.53
route = 198.18.1.0/255.255.255.0
mtu = $mtu
EOF
}

# A snapshot of namespace $1's packet counters, one "key value" a line, for
# net_delta: per interface (/proc/net/dev) rx/tx packets and drops, the
# qdisc drops of each interface (`tc -s qdisc`: a TUN device's queue can
# drop before the device counts it), and every field of the "Udp:" line of
# /proc/net/snmp (InDatagrams, RcvbufErrors, SndbufErrors, ...).
net_snapshot() {
  ip netns exec "$1" awk '
    FILENAME == "/proc/net/dev" && /:/ {
      split($0, a, ":"); ifc = a[1]; gsub(/ /, "", ifc); n = split(a[2], f, " ")
      printf "dev.%s.rx_packets %s\ndev.%s.rx_drop %s\ndev.%s.tx_packets %s\ndev.%s.tx_drop %s\n", ifc, f[2], ifc, f[4], ifc, f[10], ifc, f[12]
    }
    FILENAME == "/proc/net/snmp" && /^Udp:/ {
      if (!hdr) { for (i = 2; i <= NF; i++) name[i] = $i; hdr = 1 }
      else { for (i = 2; i <= NF; i++) printf "udp.%s %s\n", name[i], $i }
    }' /proc/net/dev /proc/net/snmp
  tc -n "$1" -s qdisc show 2>/dev/null | awk '
    $1 == "qdisc" { for (i = 1; i <= NF; i++) if ($i == "dev") ifc = $(i + 1) }
    /Sent .* dropped/ { for (i = 1; i <= NF; i++) if ($i == "(dropped") { d = $(i + 1); sub(/,/, "", d); q[ifc] += d } }
    END { for (k in q) printf "qdisc.%s.drop %s\n", k, q[k] }'
}

# The headend's dataplane and DTLS counters (`show counters`) as "headend.NAME value".
headend_counters() {
  local bin=$1 sock=$2 ns=$3
  ip netns exec "$ns" "$bin" show counters --admin-socket "$sock" 2>/dev/null |
    awk -F: 'NF == 2 { k = $1; v = $2; gsub(/ /, "", k); gsub(/ /, "", v); if (v ~ /^[0-9]+$/) print "headend." k, v }'
}

# "key after-before" for every key of snapshot file $2 (keys missing in $1 count from 0).
net_delta() {
  awk 'FNR == NR { b[$1] = $2; next } { printf "%s %d\n", $1, $2 - (($1 in b) ? b[$1] : 0) }' "$1" "$2"
}
