#!/usr/bin/env python3
"""Does the client drop DTLS datagrams while it waits for a CPU? (issue 13 item 4)

Run next to a DTLS download (compare.sh, downlink-probe.sh): it waits for the
`iperf3 -c ... -R` client to start, then every INTERVAL (default 100 ms) until
it exits samples
  - openconnect's /proc/<pid>/task/*/schedstat: time on a CPU and time runnable
    but waiting in a run queue (ns), and its number of time slices;
  - the client namespace's UDP counters (/proc/<openconnect>/net/snmp:
    InDatagrams, RcvbufErrors: the datagrams its 208 KiB socket buffer dropped);
  - the server's CPU (headend, or all ocserv processes) and the box's idle time.
It prints one line per interval (with --samples) and a summary: the intervals
ranked by openconnect's run-queue wait (quartiles) against the drops in them.
It measures and prints; it asserts nothing.

Usage: benches/client-sched.py [--interval S] [--samples] [--tsv FILE] [--wait S]
"""
import argparse
import glob
import os
import sys
import time

from procfs import cmdline, netns, read, sched, udp






def pids_named(name, prefix=False):
    out = []
    for d in glob.glob("/proc/[0-9]*"):
        c = read(d + "/comm")
        if c and (c.strip() == name or (prefix and c.startswith(name))):
            out.append(int(d[6:]))
    return out








def idle():
    a = read("/proc/stat").splitlines()[0].split()[1:]
    vals = list(map(int, a))
    return vals[3] + vals[4], sum(vals)


def find_iperf_client():
    for pid in pids_named("iperf3"):
        c = cmdline(pid)
        if "-c" in c and "-R" in c:
            return pid
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--samples", action="store_true")
    ap.add_argument("--tsv")
    ap.add_argument("--wait", type=float, default=300, help="seconds to wait for the download")
    args = ap.parse_args()

    deadline = time.monotonic() + args.wait
    ip = ocs = None
    # Bounded: until a download through openconnect starts (compare.sh's
    # ceiling run has no openconnect) or --wait passes.
    while time.monotonic() < deadline:
        ip = find_iperf_client()
        # The openconnect in the download's network namespace.
        ns = ip and netns(ip)
        ocs = [p for p in pids_named("openconnect") if ns and netns(p) == ns]
        if ocs:
            break
        time.sleep(0.2)
    if not ocs:
        print("client-sched: no iperf3 -R client through openconnect appeared", file=sys.stderr)
        return 1
    oc = max(ocs)
    servers = pids_named("headend") or pids_named("ocserv", prefix=True)

    def snap():
        r, w, n = sched(oc)
        i, d = udp(oc)
        srv = sum(sched(p)[0] for p in servers)
        idl, tot = idle()
        return time.monotonic(), r, w, n, i, d, srv, idl, tot

    rows = []
    prev = snap()
    # Bounded: until the iperf3 client exits (it runs -t seconds) or 10 minutes.
    stop = time.monotonic() + 600
    while os.path.exists(f"/proc/{ip}") and time.monotonic() < stop:
        time.sleep(args.interval)
        cur = snap()
        dt = cur[0] - prev[0]
        ticks = cur[8] - prev[8]
        rows.append(
            dict(
                t=dt,
                cpu=(cur[1] - prev[1]) / 1e9 / dt * 100,
                wait_ms=(cur[2] - prev[2]) / 1e6,
                slices=cur[3] - prev[3],
                dgrams=cur[4] - prev[4],
                drops=cur[5] - prev[5],
                srv=(cur[6] - prev[6]) / 1e9 / dt * 100,
                idle=(cur[7] - prev[7]) / ticks * 200 if ticks else 0,
            )
        )
        prev = cur
    # The first and last intervals are the download's start and end.
    rows = rows[2:-1] if len(rows) > 4 else rows
    if not rows:
        print("client-sched: no samples", file=sys.stderr)
        return 1
    cols = ["cpu", "wait_ms", "slices", "dgrams", "drops", "srv", "idle"]
    if args.tsv:
        with open(args.tsv, "w") as f:
            f.write("\t".join(cols) + "\n")
            for r in rows:
                f.write("\t".join(f"{r[c]:.2f}" for c in cols) + "\n")
    if args.samples:
        for r in rows:
            print(" ".join(f"{c}={r[c]:.1f}" for c in cols))
    n = len(rows)
    drops = sum(r["drops"] for r in rows)
    dg = sum(r["dgrams"] for r in rows)
    mean = lambda k, rs=rows: sum(r[k] for r in rs) / max(len(rs), 1)
    print(
        f"client-sched: {n} intervals of {args.interval * 1000:.0f} ms; openconnect CPU {mean('cpu'):.0f} %, "
        f"run-queue wait {mean('wait_ms'):.1f} ms per interval; server CPU {mean('srv'):.0f} %; box idle {mean('idle'):.0f} % of 200; "
        f"client drops {drops} of {drops + dg} ({100 * drops / max(drops + dg, 1):.2f} %); "
        f"intervals with drops {sum(1 for r in rows if r['drops'] > 0)}"
    )

    def corr(a, b):
        xs = [r[a] for r in rows]
        ys = [r[b] for r in rows]
        mx, my = sum(xs) / n, sum(ys) / n
        sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
        sx = sum((x - mx) ** 2 for x in xs) ** 0.5
        sy = sum((y - my) ** 2 for y in ys) ** 0.5
        return sxy / (sx * sy) if sx and sy else 0.0

    print(
        f"client-sched: correlation of drops with openconnect's wait {corr('wait_ms', 'drops'):+.2f}, "
        f"with its CPU {corr('cpu', 'drops'):+.2f}, with the server's CPU {corr('srv', 'drops'):+.2f}, "
        f"with datagrams in {corr('dgrams', 'drops'):+.2f}"
    )
    print("client-sched: intervals by openconnect's run-queue wait (quartiles, least wait first):")
    print("| quartile | wait ms per 100 ms | openconnect CPU % | datagrams in | drops | drop % | share of drops |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    srt = sorted(rows, key=lambda r: r["wait_ms"])
    for q in range(4):
        part = srt[q * n // 4 : (q + 1) * n // 4]
        d = sum(r["drops"] for r in part)
        i = sum(r["dgrams"] for r in part)
        print(
            f"| {q + 1} | {mean('wait_ms', part):.1f} | {mean('cpu', part):.0f} | {i} | {d} | "
            f"{100 * d / max(d + i, 1):.2f} | {100 * d / max(drops, 1):.0f} % |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
