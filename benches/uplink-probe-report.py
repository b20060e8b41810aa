#!/usr/bin/env python3
"""Summarises a benches/uplink-probe.sh directory: the headend's syscalls, context
switches and CPU per GB written to TUN, datagrams per receive call, packets per TUN
write (GRO), the downlink (ACKs) during the upload. Usage: uplink-probe-report.py DIR"""
import os, subprocess, sys

d = sys.argv[1]
rd = lambda n: open(os.path.join(d, n)).read()

def links(tag):
    out = {}
    for line in rd(f"links.{tag}").splitlines():
        k, *v = line.split()
        out[k] = [int(x) for x in v]
    return out

def counters(tag):
    out = {}
    for line in rd(f"counters.{tag}").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            try:
                out[k.strip()] = int(v.strip())
            except ValueError:
                pass
    return out

def udp(tag):
    h, v = rd(f"udp.{tag}").splitlines()[:2]
    return dict(zip(h.split()[1:], map(int, v.split()[1:])))

def tasks(tag):
    out = {}
    for line in rd(f"tasks.{tag}").splitlines():
        p = line.split()
        out[p[0]] = (p[1], int(p[2]), int(p[3]), int(p[4]))
    return out

def cpu(tag):
    f = rd(f"cpu.{tag}").split()[1:]
    v = list(map(int, f))
    return sum(v), v[3] + v[4]

t = float(rd("time.b")) - float(rd("time.a"))
la, lb = links("a"), links("b")
rxp = lb["vpn0"][0] - la["vpn0"][0]
rxb = lb["vpn0"][1] - la["vpn0"][1]
txp = lb["vpn0"][2] - la["vpn0"][2]
txb = lb["vpn0"][3] - la["vpn0"][3]
k = "outside" if "outside" in la else "eth0"
eth = [b - a for a, b in zip(la[k], lb[k])] or [0,0,0,0]
gb = rxb / 1e9
ca, cb = counters("a"), counters("b")
dc = {k: cb[k] - ca.get(k, 0) for k in cb}
ua, ub = udp("a"), udp("b")
du = {k: ub[k] - ua[k] for k in ub}
sa = rd("stat.a").rsplit(")", 1)[1].split()
sb = rd("stat.b").rsplit(")", 1)[1].split()
ticks = (int(sb[11]) + int(sb[12])) - (int(sa[11]) + int(sa[12]))
hz = os.sysconf("SC_CLK_TCK")
tot_a, idle_a = cpu("a")
tot_b, idle_b = cpu("b")
idle_pct = 100 * (idle_b - idle_a) / max(1, tot_b - tot_a)

print(f"window {t:.2f} s; uplink into TUN {rxp} pkts {rxb/1e6:.1f} MB = {8*rxb/t/1e9:.2f} Gbit/s; "
      f"downlink from TUN {txp} pkts {txb/1e6:.2f} MB")
print(f"headend CPU {ticks/hz:.2f} s = {100*ticks/hz/t:.0f} %, {ticks/hz/gb:.2f} s/GB; box idle {idle_pct:.0f} %")
print(f"ns {k}: rx {eth[0]} pkts {eth[1]/1e6:.1f} MB, tx {eth[2]} pkts {eth[3]/1e6:.2f} MB")
print(f"ns Udp: " + ", ".join(f"{k} {v}" for k, v in du.items() if v))
print("headend counters: " + ", ".join(f"{k} {v}" for k, v in dc.items() if v and k not in ("tasks",)))

# perf stat per thread: "comm-tid,count,unit,event,..."
counts = {}
per_thread = {}
for line in rd("stat.perf").splitlines():
    if not line or line.startswith("#"):
        continue
    p = line.split(",")
    if len(p) < 4:
        continue
    th, val, ev = p[0], p[1], p[3]
    try:
        v = int(val)
    except ValueError:
        continue
    ev = ev.replace("syscalls:sys_enter_", "")
    counts[ev] = counts.get(ev, 0) + v
    if v:
        per_thread.setdefault(th, {})[ev] = v
print("\nper GB of uplink (TUN-written bytes), whole process:")
for ev, v in sorted(counts.items(), key=lambda kv: -kv[1]):
    if v:
        print(f"  {ev:18} {v:9d} in window = {v/gb:10.0f} /GB")
print("per thread (nonzero):")
for th, evs in per_thread.items():
    print(f"  {th}: " + ", ".join(f"{k} {v}" for k, v in sorted(evs.items(), key=lambda kv: -kv[1])))

rx_dgrams = dc.get("dtls-rx-datagrams", 0)
rec = counts.get("recvmmsg", 0)
wr = counts.get("write", 0) + counts.get("writev", 0)
snd = counts.get("sendmsg", 0) + counts.get("sendmmsg", 0) + counts.get("sendto", 0)
print(f"\nDTLS datagrams in {rx_dgrams} ({rx_dgrams/gb:.0f}/GB); per recvmmsg call {rx_dgrams/max(1,rec):.1f}")
print(f"TUN packets written {dc.get('tun-tx-packets',0)}, per write syscall {dc.get('tun-tx-packets',0)/max(1,wr):.1f}, "
      f"bytes per write {rxb/max(1,wr):.0f}")
print(f"downlink: TUN read {dc.get('tun-rx-packets',0)} pkts, DTLS tx datagrams {dc.get('dtls-tx-datagrams',0)} "
      f"({dc.get('dtls-tx-datagrams',0)/gb:.0f}/GB), send calls {snd} ({snd/gb:.0f}/GB), datagrams per send {dc.get('dtls-tx-datagrams',0)/max(1,snd):.1f}")

ta, tb = tasks("a"), tasks("b")
print("\nthreads (voluntary, nonvoluntary switches, CPU ticks) in window, per GB:")
for tid, (name, v, n, c) in tb.items():
    if tid in ta:
        _, v0, n0, c0 = ta[tid]
        if c - c0 or v - v0 or n - n0:
            print(f"  {tid} {name:16} vol {v-v0:7d} ({(v-v0)/gb:8.0f}/GB) invol {n-n0:6d} ({(n-n0)/gb:7.0f}/GB) cpu {(c-c0)/hz:.2f}s")

# recvmmsg return values
try:
    s = subprocess.run(["perf", "script", "-i", os.path.join(d, "recvmmsg.data"), "-F", "trace"],
                       capture_output=True, text=True).stdout
    rets = []
    for line in s.splitlines():
        if "0x" in line:
            try:
                rets.append(int(line.strip().split()[-1], 16))
            except ValueError:
                pass
    if rets:
        zero_like = sum(1 for r in rets if r >= 1 << 63)
        good = [r for r in rets if r < 1 << 63]
        hist = {}
        for r in good:
            hist[r] = hist.get(r, 0) + 1
        print(f"\nrecvmmsg returns (1 s sample): {len(rets)} calls, errors(EAGAIN) {zero_like}, "
              f"mean messages {sum(good)/max(1,len(good)):.2f}, hist {dict(sorted(hist.items()))}")
except Exception as e:
    print("recvmmsg sample:", e)
