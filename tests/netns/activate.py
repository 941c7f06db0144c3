#!/usr/bin/env python3
"""What systemd does for a .socket unit, for tests: create a listening socket
(--proto mptcp|tcp), then start the command with it as fd 3 and LISTEN_FDS=1,
LISTEN_PID=<its pid>, as many times as --runs says, one after the other,
keeping the socket open across runs (as systemd does across restarts).
Each child's pid is written to --pidfile when it starts. Exits 0 only when
every run exited 0 (under ASan a leak makes a run's status non-zero)."""
import argparse
import os
import socket
import sys

IPPROTO_MPTCP = 262

ap = argparse.ArgumentParser()
ap.add_argument("--listen", required=True, help="ADDR:PORT or [ADDR6]:PORT")
ap.add_argument("--proto", choices=["mptcp", "tcp"], default="mptcp")
ap.add_argument("--runs", type=int, default=1)
ap.add_argument("--pidfile", required=True)
ap.add_argument("cmd", nargs=argparse.REMAINDER)
a = ap.parse_args()
host, port = a.listen.rsplit(":", 1)
host = host.strip("[]")
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM, IPPROTO_MPTCP if a.proto == "mptcp" else socket.IPPROTO_TCP)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, int(port)))
s.listen(128)
cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
worst = 0
for run in range(a.runs):
    pid = os.fork()
    if pid == 0:
        os.dup2(s.fileno(), 3)
        os.set_inheritable(3, True)
        os.environ["LISTEN_FDS"] = "1"
        os.environ["LISTEN_PID"] = str(os.getpid())
        os.execvp(cmd[0], cmd)
    with open(a.pidfile, "w") as f:
        f.write(f"{pid}\n")
    _, st = os.waitpid(pid, 0)
    status = os.waitstatus_to_exitcode(st)
    print(f"run {run + 1}: exit {status}", flush=True)
    worst = worst or status
sys.exit(0 if worst == 0 else 1)
