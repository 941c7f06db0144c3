#!/usr/bin/env python3
"""A stand-in for systemd's notify socket: binds the AF_UNIX datagram socket
named by argv[1] and appends every message to argv[2], one line per
variable, each prefixed with the time since start (seconds)."""
import os
import socket
import sys
import time

path, out = sys.argv[1], sys.argv[2]
if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
t0 = time.monotonic()
with open(out, "a", buffering=1) as f:
    print("listening", flush=True)
    while True:
        msg = s.recv(4096).decode(errors="replace")
        for line in msg.splitlines():
            f.write(f"{time.monotonic() - t0:.3f} {line}\n")
