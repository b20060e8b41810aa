"""/proc readers shared by the bench scripts (cpu-account.py, client-sched.py)."""

import glob
import os


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def cmdline(pid):
    s = read(f"/proc/{pid}/cmdline")
    return s.split("\0") if s else []


def netns(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def sched(pid):
    """(on-CPU ns, run-queue wait ns, slices) summed over the threads."""
    run = wait = n = 0
    for f in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        s = read(f)
        if s:
            a = s.split()
            run += int(a[0])
            wait += int(a[1])
            n += int(a[2])
    return run, wait, n


def udp(pid):
    """(InDatagrams, RcvbufErrors) of the network namespace `pid` is in."""
    s = read(f"/proc/{pid}/net/snmp")
    if not s:
        return 0, 0
    lines = [line.split() for line in s.splitlines() if line.startswith("Udp:")]
    d = dict(zip(lines[0][1:], map(int, lines[1][1:])))
    return d.get("InDatagrams", 0), d.get("RcvbufErrors", 0)
