#!/usr/bin/env python3
"""A perf profile's samples of some threads, bucketed by call path (the first
bucket that matches wins, so the shares add up to 100 %): what the
headend spends its CPU on in a DTLS download or upload.

User space has no frame pointers in a release build, so a sample taken in
user space is bucketed by its leaf (crypto, or "user space" by crate); a
sample in the kernel by the syscall path above it. A UDP send is split in
two: the part where the kernel runs the receiver's side (veth -> bridge ->
the client's UDP socket -> its wake-up) in our softirq, and our own.
It measures and prints; it asserts nothing.

Usage: perf script -i perf.data -F comm,tid,ip,sym,dso | benches/perf-buckets.py '^vpn-'
       (the argument: a regex on the thread's name; headend workers are vpn-worker-N)
"""
import collections
import re
import sys

SEND = re.compile(r"__libc_sendmsg|sendmmsg|udp_sendmsg")
RECEIVER = re.compile(r"__netif_receive_skb|net_rx_action|process_backlog")
BUCKETS = [
    ("crypto (ring AES-GCM)", re.compile(r"aes_gcm|gcm_ghash|ring::aead|ring_core")),
    ("UDP send", SEND),
    ("UDP receive (recvmmsg)", re.compile(r"recvmmsg|udp_recvmsg")),
    ("TUN read", re.compile(r"tun_chr_read_iter|tun_do_read")),
    ("TUN write (the inner TCP stack runs in it)", re.compile(r"tun_chr_write_iter|tun_get_user")),
    ("pacing timer (timerfd)", re.compile(r"timerfd")),
    ("epoll, scheduler, futex", re.compile(r"epoll_wait|do_epoll|__schedule|futex|finish_task_switch")),
    ("clock_gettime", re.compile(r"clock_gettime")),
]


def main():
    threads = re.compile(sys.argv[1] if len(sys.argv) > 1 else ".")
    counts = collections.Counter()
    crates = collections.Counter()
    total = 0

    def sample(head, stack):
        nonlocal total
        if head is None or not threads.search(head):
            return
        total += 1
        chain = " ".join(stack)
        for name, rx in BUCKETS:
            if not rx.search(chain):
                continue
            if name == "UDP send":
                if RECEIVER.search(chain):
                    name = "UDP send: the receiver's path run in our softirq (veth, bridge, UDP enqueue, wake-up)"
                else:
                    name = "UDP send: our own (GSO, IP output)"
            counts[name] += 1
            return
        leaf = stack[0] if stack else "?"
        if "[kernel" in leaf:
            counts["other kernel"] += 1
        else:
            counts["user space, rest"] += 1
            m = re.match(r"<?(\w+)::", leaf)
            crates[m.group(1) if m else "libc / unknown"] += 1

    head, stack = None, []
    for line in sys.stdin:
        if not line.strip():
            sample(head, stack)
            head, stack = None, []
        elif not line[0].isspace():
            sample(head, stack)
            head, stack = line, []
        else:
            parts = line.strip().split(None, 1)
            stack.append(parts[1] if len(parts) > 1 else "?")
    sample(head, stack)
    print(f"samples: {total}")
    print("| bucket | % |\n|---|---:|")
    for name, n in counts.most_common():
        print(f"| {name} | {100 * n / max(total, 1):.1f} |")
    print("user space, rest, by the leaf's crate:")
    for name, n in crates.most_common(10):
        print(f"  {100 * n / max(total, 1):.1f} % {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
