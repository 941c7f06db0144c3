#!/usr/bin/env python3
"""Each named process's share of a `perf record -a` file, by kind of work
(copies, CRC, io_uring, MPTCP, TCP/IP, device and qdisc, memory, scheduling
and interrupts, the rest) and its top symbols (benches/profile.sh,
compare.sh with PERF=1).

    perf-kinds.py PERF.DATA WHO...      WHO: a process name (a thread's
                                         name is cut at 15 characters: give
                                         it whole), or LABEL=TID,TID... for
                                         one process of a name shared by
                                         several (its threads' ids)
"""
import re
import subprocess
import sys

KINDS = [("copy", r"copy_(to|from)_(user|iter)|_copy_|rep_mov|memcpy|copy_page|skb_copy|csum_partial_copy"),
         ("crc", r"crc32|crc_|^hw_three|^hw_serial"),
         ("io_uring", r"^io_|^__io_|io_uring"),
         ("mptcp", r"mptcp"),
         ("tcp/ip", r"tcp|^ip_|^ip6_|inet|^sk_|^__sk|^skb_|sock|^__skb|^kfree_skb|netfilter|nf_|^__inet"),
         ("device/qdisc", r"veth|tbf|qdisc|netif|napi|^dev_|^__dev|net_rx|^__netif|htb|xmit"),
         ("memory", r"alloc|free|slab|page|kmem|memcg|mem_cgroup|folio"),
         ("sched/irq/syscall", r"schedule|switch|irq|syscall|entry|futex|wake|softirq|rcu|tick|hrtimer|finish_task|__x64")]


def main():
    data, comms = sys.argv[1], sys.argv[2:]
    rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "pid,sym",
                          "-F", "overhead,pid,sym", "--stdio"],
                         capture_output=True, text=True).stdout
    rows = {}
    for line in rep.splitlines():
        # "  12.34%  4242:gw-agent  [k] _copy_to_iter" (pid: the thread's)
        m = re.match(r"\s*([\d.]+)%\s+(\d+):(\S+)\s+\[[k.]\]\s+(\S+)", line)
        if not m:
            continue
        pct, tid, comm, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4)
        for who in comms:
            name, _, tids = who.partition("=")
            if (tids and tid in tids.split(",")) or (not tids and comm == name[:15]):
                rows.setdefault(who, {})
                rows[who][sym] = rows[who].get(sym, 0) + pct
    rows = {who: [(p, s) for s, p in syms.items()] for who, syms in rows.items()}
    for who in comms:
        syms = rows.get(who, [])
        tot = sum(p for p, _ in syms)
        if not tot:
            print(f"{who}: no samples")
            continue
        by = {}
        for p, s in syms:
            k = next((k for k, rx in KINDS if re.search(rx, s)), "other")
            by[k] = by.get(k, 0) + p
        print(f"{who}: {tot:.1f}% of all samples; by kind (share of its own): " +
              ", ".join(f"{k} {100 * v / tot:.0f}%" for k, v in sorted(by.items(), key=lambda x: -x[1])))
        print("  top: " + ", ".join(f"{s} {100 * p / tot:.1f}%" for p, s in sorted(syms, reverse=True)[:12]))


if __name__ == "__main__":
    main()
