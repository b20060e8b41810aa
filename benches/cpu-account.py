#!/usr/bin/env python3
"""Where ALL the CPU of the box goes during each iperf3 run through a tunnel
(issue 13 item 6: "if the client process or the shared 2 cores cap a figure,
show it").

Run next to compare.sh or downlink-probe.sh: it waits for each `iperf3 -c`
client that runs in a network namespace with an openconnect (the ceiling runs
have none), skips its first --skip seconds (TCP's start), and when it exits
prints, for the window:
  - per process group, CPU in % of one core and run-queue wait in ms per
    second, from /proc/PID/task/*/schedstat (nanoseconds; tick accounting is
    too coarse for 10 s): the server (headend, or every ocserv process),
    openconnect, the iperf3 client (-c) and server (-s), ksoftirqd/N,
    kworkers, everything else (named);
  - the box from /proc/stat, in % of all cores (2 cores = 200 %): user,
    system, softirq, irq, idle, steal. On this kernel (tick accounting, no
    IRQ_TIME_ACCOUNTING) a softirq that runs on the back of a process (a
    send's or a receive's network stack) is in that process's time AND in
    the box's softirq column; only ksoftirqd's share is separate;
  - the client namespace's UDP InDatagrams and RcvbufErrors (the client's
    socket buffer drops);
  - the sender's TCP state every 0.5 s (`ss -tin` in its namespace): RTT,
    cwnd, unacknowledged and not-sent bytes, the peer's window, and the
    share of the busy time limited by the receive window or the send buffer.
It measures and prints; it asserts nothing.

Usage: benches/cpu-account.py [--runs N] [--skip S] [--wait S] [--tsv FILE] [--perf DIR] &
  --runs N    stop after N runs (default: until --wait seconds pass with no run)
  --perf DIR  also a system-wide `perf record -g` of each window (it costs CPU:
              take the accounting from runs without it)
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import time

from procfs import cmdline, netns, read, sched, udp








def procs():
    """pid -> (comm, args) for every process now."""
    out = {}
    for d in glob.glob("/proc/[0-9]*"):
        c = read(d + "/comm")
        if c is None:
            continue
        pid = int(d[6:])
        out[pid] = (c.strip(), cmdline(pid))
    return out




def reaped(pid):
    """Ticks of the process's waited-for children (cutime + cstime): a build's
    short-lived compiler processes show up in their parent's."""
    s = read(f"/proc/{pid}/stat")
    if not s:
        return 0
    f = s[s.rindex(")") + 2 :].split()
    return int(f[13]) + int(f[14])


def stat():
    """/proc/stat's first line: user nice system idle iowait irq softirq steal."""
    a = read("/proc/stat").splitlines()[0].split()[1:9]
    return list(map(int, a))




def ss_sample(ns_pid):
    """The sender's TCP state of the iperf3 data connection (the one with the
    most bytes acknowledged) in the namespace of `ns_pid`, as a dict."""
    try:
        out = subprocess.run(
            ["nsenter", f"--net=/proc/{ns_pid}/ns/net", "ss", "-tinH", "( sport = :5201 or dport = :5201 )"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    best = None
    for line in out.replace("\n\t", " ").splitlines():
        m = re.search(r"bytes_acked:(\d+)", line)
        if m and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), line)
    if not best:
        return None
    line = best[1]
    d = {}
    for k, pat in [
        ("rtt", r" rtt:([\d.]+)/"),
        ("cwnd", r" cwnd:(\d+)"),
        ("unacked", r" unacked:(\d+)"),
        ("notsent", r" notsent:(\d+)"),
        ("retrans", r" retrans:\d+/(\d+)"),
        ("busy", r" busy:(\d+)ms"),
        ("rwnd_limited", r" rwnd_limited:(\d+)ms"),
        ("sndbuf_limited", r" sndbuf_limited:(\d+)ms"),
        ("snd_wnd", r" snd_wnd:(\d+)"),
        ("delivery_rate", r" delivery_rate (\d+)bps"),
    ]:
        m = re.search(pat, line)
        if m:
            d[k] = float(m.group(1))
    return d


def ss_summary(samples):
    if not samples:
        return "no sender TCP samples"
    mean = lambda k: sum(x.get(k, 0) for x in samples) / len(samples)
    mx = lambda k: max(x.get(k, 0) for x in samples)
    first, last = samples[0], samples[-1]
    busy = last.get("busy", 0) - first.get("busy", 0)
    lim = lambda k: 100 * (last.get(k, 0) - first.get(k, 0)) / busy if busy else 0
    return (
        f"sender TCP ({len(samples)} samples): rtt mean {mean('rtt'):.2f} ms (max {mx('rtt'):.2f}), "
        f"cwnd mean {mean('cwnd'):.0f} segments, unacked mean {mean('unacked'):.0f}, "
        f"notsent mean {mean('notsent') / 1024:.0f} KiB, peer window (snd_wnd) mean {mean('snd_wnd') / 1024:.0f} KiB, "
        f"retransmits {last.get('retrans', 0) - first.get('retrans', 0):.0f}; of the busy time "
        f"rwnd-limited {lim('rwnd_limited'):.0f} %, sndbuf-limited {lim('sndbuf_limited'):.0f} % "
        f"(the rest: cwnd-limited or application-limited)"
    )


def group(comm, args):
    """The accounting row a process belongs to."""
    if comm == "headend":
        return "server: headend"
    if comm.startswith("ocserv"):
        return "server: ocserv (all)"
    if comm == "openconnect":
        return "openconnect"
    if comm == "iperf3":
        return "iperf3 -s" if "-s" in args else "iperf3 -c"
    if comm.startswith("ksoftirqd"):
        return "ksoftirqd (all)"
    if comm.startswith("kworker"):
        # kworker/u8:3-events_unbound: by the work queue it last served.
        return "kworkers " + (comm.split("-", 1)[1] if "-" in comm else "(idle name)")
    return "other: " + comm


def find_client():
    """The newest `iperf3 -c` whose namespace has an openconnect."""
    ps = procs()
    ocs = {netns(p): p for p, (c, _) in ps.items() if c == "openconnect"}
    for pid, (c, a) in sorted(ps.items(), reverse=True):
        if c == "iperf3" and "-c" in a:
            ns = netns(pid)
            if ns in ocs:
                return pid, ocs[ns], "-R" in a
    return None


def snapshot():
    t = time.monotonic()
    ps = procs()
    per = {p: sched(p)[:2] + (reaped(p),) for p in ps}
    return t, ps, per, stat()


def account(a, b, oc, down, n, tsv):
    t0, ps0, per0, st0 = a
    t1, ps1, per1, st1 = b
    dt = t1 - t0
    rows = {}
    hz = os.sysconf("SC_CLK_TCK")
    for pid, (c, args) in ps1.items():
        r1, w1, k1 = per1.get(pid, (0, 0, 0))
        # (A kworker's name changes with the queue it serves: same pid, same task.)
        r0, w0, k0 = per0.get(pid, (0, 0, 0)) if pid in ps0 else (0, 0, k1)
        g = group(c, args)
        cur = rows.setdefault(g, [0, 0])
        cur[0] += r1 - r0
        cur[1] += w1 - w0
        if k1 > k0:
            # Children that exited in the window (their whole life, so this
            # can overstate a child that started before the window).
            cur = rows.setdefault("exited children of " + g, [0, 0])
            cur[0] += (k1 - k0) * 1_000_000_000 // hz
    d = [x - y for x, y in zip(st1, st0)]
    ncpu = os.cpu_count() or 1
    # Idle in /proc/stat is the nohz idle clock (precise); the busy columns
    # are ticks, which miss the short busy spells between idle periods of a
    # pipeline that wakes thousands of times a second. So: idle against the
    # wall clock, and the busy time split in the ticks' proportions.
    idle = min(100 * (d[3] + d[4]) / hz / dt, 100 * ncpu)
    busy = 100 * ncpu - idle
    ticks = sum(d) - d[3] - d[4] or 1
    pct = lambda v: busy * v / ticks
    server = next((g for g in rows if g.startswith("server")), "server: ?")
    print(
        f"cpu-account: run {n} ({'down' if down else 'up'}, {server[8:]}), "
        f"{time.strftime('%H:%M:%S', time.gmtime())} UTC, {dt:.1f} s window, "
        f"load {' '.join(read('/proc/loadavg').split()[:3])}"
    )
    print("| process | CPU % of one core | run-queue wait ms/s |")
    print("|---|---:|---:|")
    named = sorted(rows.items(), key=lambda kv: -kv[1][0])
    shown = 0.0
    other = [0, 0]
    for g, (r, w) in named:
        cpu = 100 * r / 1e9 / dt
        if (g.startswith("other") or g.startswith("kworkers") or g.startswith("exited")) and cpu < 1.0:
            other[0] += r
            other[1] += w
            continue
        shown += cpu
        print(f"| {g} | {cpu:.1f} | {w / 1e6 / dt:.1f} |")
    ocpu = 100 * other[0] / 1e9 / dt
    print(f"| other, kworkers, exited children (each < 1 %) | {ocpu:.1f} | {other[1] / 1e6 / dt:.1f} |")
    procs_total = shown + ocpu
    print(
        f"| **processes total** | {procs_total:.1f} | |\n"
        f"| box busy (/proc/stat, of {100 * ncpu}) | {busy:.1f} | |\n"
        f"| box: user {pct(d[0] + d[1]):.1f}, system {pct(d[2]):.1f}, softirq {pct(d[6]):.1f}, "
        f"irq {pct(d[5]):.1f}, steal {pct(d[7]):.1f}; idle {idle:.1f} | | |"
    )
    print(
        f"cpu-account: busy not in any process (softirq on the idle task, processes "
        f"that exited unreaped or started and ended in the window): {busy - procs_total:.1f} % "
        f"(ticks of {hz} Hz: +-{200 / max(dt * hz, 1) * ncpu:.1f})"
    )
    if tsv:
        with open(tsv, "a") as f:
            for g, (r, w) in named:
                f.write(f"{n}\t{'down' if down else 'up'}\t{server[8:]}\t{g}\t{100 * r / 1e9 / dt:.2f}\t{w / 1e6 / dt:.2f}\n")
            f.write(f"{n}\t{'down' if down else 'up'}\t{server[8:]}\tbox idle\t{idle:.2f}\t\n")
            f.write(f"{n}\t{'down' if down else 'up'}\t{server[8:]}\tbox softirq\t{pct(d[6]):.2f}\t\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=0)
    ap.add_argument("--skip", type=float, default=1.0, help="seconds of each run not counted (TCP's start)")
    ap.add_argument("--wait", type=float, default=300, help="give up after this long without a run")
    ap.add_argument("--tsv")
    ap.add_argument("--perf", metavar="DIR", help="also `perf record -a -g` each window into DIR/runN-DIR.data")
    ap.add_argument("--freq", type=int, default=999, help="perf's sampling frequency")
    args = ap.parse_args()
    n = 0
    # Bounded: each wait for a run ends after --wait seconds; each window
    # ends at the client's -t, and the wait for its exit 30 s after that.
    while args.runs == 0 or n < args.runs:
        deadline = time.monotonic() + args.wait
        found = None
        while time.monotonic() < deadline:
            found = find_client()
            if found:
                break
            time.sleep(0.05)
        if not found:
            break
        ip, oc, down = found
        t_start = time.monotonic()
        a_ = cmdline(ip)
        try:
            secs = float(a_[a_.index("-t") + 1])
        except (ValueError, IndexError):
            secs = 10.0
        time.sleep(args.skip)
        if not os.path.exists(f"/proc/{ip}"):
            continue
        a = snapshot()
        i0, d0 = udp(oc)
        perf = None
        if args.perf:
            # System-wide, with call graphs: `perf report --comm headend`
            # gives the server's profile, `--sort comm` the split by process.
            w = max(secs - 0.5 - args.skip, 0.5)
            out = os.path.join(args.perf, f"run{n + 1}-{'down' if down else 'up'}.data")
            perf = subprocess.Popen(
                ["perf", "record", "-a", "-g", "-F", str(args.freq), "-o", out, "--", "sleep", f"{w:.1f}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        # The window ends half a second before the client's -t runs out: its
        # own CPU (and openconnect's counters) go with it when it exits.
        end = t_start + max(secs - 0.5, args.skip + 0.5)
        # The sender: iperf3 -s in a download, the client in an upload.
        sender = ip if not down else next(
            (p for p, (c, a_) in procs().items() if c == "iperf3" and "-s" in a_), None
        )
        samples = []
        next_ss = time.monotonic()
        while os.path.exists(f"/proc/{ip}") and time.monotonic() < end:
            if sender and time.monotonic() >= next_ss:
                x = ss_sample(sender)
                if x:
                    samples.append(x)
                next_ss += 0.5
            time.sleep(0.05)
        if not os.path.exists(f"/proc/{ip}"):
            print("cpu-account: the client exited early; run not counted", file=sys.stderr)
            continue
        last_udp = udp(oc)
        b = snapshot()
        n += 1
        account(a, b, oc, down, n, args.tsv)
        if last_udp:
            i1, d1 = last_udp
            di, dd = i1 - i0, d1 - d0
            print(
                f"cpu-account: client UDP in {di}, RcvbufErrors {dd} "
                f"({100 * dd / max(di + dd, 1):.2f} %)"
            )
        if perf:
            perf.wait()
        print("cpu-account: " + ss_summary(samples))
        sys.stdout.flush()
        # Do not count the same client twice.
        gone = time.monotonic() + 30
        while os.path.exists(f"/proc/{ip}") and time.monotonic() < gone:
            time.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main())
