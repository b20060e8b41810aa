"""/proc readers shared by the bench scripts (cpu-account.py, client-sched.py)."""

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
