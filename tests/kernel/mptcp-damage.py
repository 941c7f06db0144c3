#!/usr/bin/env python3
"""Verified MPTCP flows with the kernel alone: no project code on the path.

  serve  --bind ADDR:PORT --mode MODE --log FILE
  client --dst ADDR:PORT --mode MODE --flows N --bytes B [--src ADDR] [--log FILE]

Each flow opens with a 24-byte header: b"KDMG", the payload length (u32,
network order) and a 16-byte random seed. The payload is SHAKE-256(seed)
cut to that length, so the server knows what every byte should be without
trusting the client's copy, and tells where a damaged stream went wrong:
the first and last wrong byte, and where in the flow's own stream the
wrong bytes came from (the kernel defect's signature is one run of bytes
from later in the same stream). The server echoes the payload; the client
checks the echo the same way (damage on the way back).

Modes (when the client's bytes leave, relative to the handshake):
  plain  header and payload right after connect()
  reply  header right after connect(); payload once the server has sent
         one byte back (how gw-agent sends after the RFC 8803 Convert reply)
  syn    TCP Fast Open: header and the first 1,000 payload bytes in the SYN

serve --hold-ms N: after a flow's header, the server makes one recv(MSG_PEEK)
into a page that userfaultfd holds missing for N ms, so that recv() keeps
the MPTCP socket's lock (it is owned by the user) for N ms while the
client's bytes and its MP_JOIN keep arriving: what a receiver preempted in
the middle of a recv() does, made deterministic.

Both ends print one JSON line per flow (the server to --log, the client to
stdout, or --log), then the client a summary line. Exit 0 even when flows
were damaged: counting them is the job; exit 1 on a usage or setup error."""
import argparse
import asyncio
import concurrent.futures
import ctypes
import mmap
import threading
import errno
import hashlib
import json
import os
import select
import socket
import struct
import sys
import time

IPPROTO_MPTCP = getattr(socket, "IPPROTO_MPTCP", 262)
SOL_MPTCP = 284
MPTCP_INFO = 1
TCP_FASTOPEN_CONNECT = 30
SO_RCVBUFFORCE = 33
MSG_FASTOPEN = getattr(socket, "MSG_FASTOPEN", 0x20000000)
MAGIC = b"KDMG"
HDR = 24
SYN_BYTES = 1000


def expected(seed, n):
    return hashlib.shake_256(seed).digest(n)


def locate(want, got):
    """Where got differs from want: None when equal, else a dict."""
    if got == want:
        return None
    n = min(len(want), len(got))
    first = next((i for i in range(n) if want[i] != got[i]), n)
    if first == n:
        return {"short": True, "got_len": len(got), "want_len": len(want)}
    last = max(i for i in range(first, n) if want[i] != got[i])
    out = {"first_wrong": first, "last_wrong": last, "got_len": len(got), "want_len": len(want)}
    # Where the wrong bytes came from: the first 32 of them found in the
    # flow's own stream, and how far the match runs.
    src = want.find(bytes(got[first:first + 32]))
    if src >= 0:
        run = 0
        while first + run < n and src + run < len(want) and got[first + run] == want[src + run]:
            run += 1
        out.update(src=src, displacement=src - first, run=run,
                   one_run=(first + run - 1 >= last))
    return out


def subflows(sock):
    """Additional subflows the kernel reports for this connection (the
    first byte of struct mptcp_info), or None without MPTCP_INFO."""
    try:
        return sock.getsockopt(SOL_MPTCP, MPTCP_INFO, 64)[0]
    except OSError:
        return None


def split(hp):
    host, _, port = hp.rpartition(":")
    return host.strip("[]"), int(port)


# ------------------------------------------------------------------ server

async def recv_exactly(loop, c, n, buf):
    while len(buf) < n:
        d = await loop.sock_recv(c, 65536)
        if not d:
            break
        buf += d
    return buf


# ------------------------------------------------------------ lock holder

class LockHolder:
    """recv(MSG_PEEK) into pages that userfaultfd keeps missing for hold_ms:
    the kernel's copy to user space faults with the socket's lock owned and
    waits for us (x86_64 only; root)."""
    PAGES = 1024
    UFFDIO_API, UFFDIO_REGISTER, UFFDIO_ZEROPAGE = 0xC018AA3F, 0xC020AA00, 0xC020AA04

    def __init__(self, hold_ms):
        self.hold = hold_ms / 1000.0
        libc = ctypes.CDLL(None, use_errno=True)
        self.libc = libc
        libc.syscall.restype = ctypes.c_long
        self.fd = libc.syscall(323, os.O_CLOEXEC)  # userfaultfd(2)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "userfaultfd")
        api = (ctypes.c_uint64 * 3)(0xAA, 0, 0)
        self._ioctl(self.UFFDIO_API, api)
        self.map = mmap.mmap(-1, self.PAGES * 4096)
        self.base = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        reg = (ctypes.c_uint64 * 4)(self.base, self.PAGES * 4096, 1, 0)  # MODE_MISSING
        self._ioctl(self.UFFDIO_REGISTER, reg)
        self.next = 0
        self.lock = threading.Lock()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=64)
        threading.Thread(target=self._faults, daemon=True).start()

    def _ioctl(self, req, arg):
        if self.libc.ioctl(self.fd, ctypes.c_ulong(req), ctypes.byref(arg)) < 0:
            raise OSError(ctypes.get_errno(), "userfaultfd ioctl %#x" % req)

    def _faults(self):
        while True:
            msg = os.read(self.fd, 32)
            if len(msg) < 32 or msg[0] != 0x12:  # UFFD_EVENT_PAGEFAULT
                continue
            addr = struct.unpack_from("=Q", msg, 16)[0] & ~4095
            threading.Timer(self.hold, self._fill, (addr,)).start()

    def _fill(self, addr):
        zp = (ctypes.c_int64 * 4)(addr, 4096, 0, 0)
        try:
            self._ioctl(self.UFFDIO_ZEROPAGE, zp)
        except OSError:
            pass

    def _peek(self, c):
        with self.lock:
            i = self.next
            self.next = (self.next + 1) % self.PAGES
        off = i * 4096
        buf = (ctypes.c_char * 4096).from_buffer(self.map, off)
        t0 = time.monotonic()
        try:
            p = select.poll()
            p.register(c.fileno(), select.POLLIN)
            p.poll(1000)  # the client's bytes are there (reply mode sends them after "G")
            t0 = time.monotonic()
            c.recv_into(buf, 4096, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except OSError:
            pass
        finally:
            del buf
            self.map.madvise(mmap.MADV_DONTNEED, off, 4096)  # missing again for its next use
        return round((time.monotonic() - t0) * 1000, 1)

    async def hold_once(self, c):
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._peek, c)


async def serve_one(c, args, log):
    loop = asyncio.get_running_loop()
    rec = {"t": round(time.time(), 3)}
    try:
        head = await asyncio.wait_for(recv_exactly(loop, c, HDR, bytearray()), 60)
        if len(head) < HDR or head[:4] != MAGIC:
            rec.update(verdict="bad_header", head=bytes(head[:24]).hex())
            return
        length = struct.unpack("!I", head[4:8])[0]
        seed = bytes(head[8:24])
        rec["seed"] = seed.hex()
        got = bytearray(head[HDR:])
        if args.mode == "reply":
            if args.settle_ms:
                await asyncio.sleep(args.settle_ms / 1000.0)  # joins come up while nobody owns the socket
            await loop.sock_sendall(c, b"G")
        if args.holder:
            rec["held_ms"] = await args.holder.hold_once(c)
        sent = 0
        # Echo as it arrives (both directions busy at once, as in a relay).
        while True:
            if sent < len(got):
                await loop.sock_sendall(c, bytes(got[sent:]))
                sent = len(got)
            d = await loop.sock_recv(c, 65536)
            if not d:
                break
            got += d
        c.shutdown(socket.SHUT_WR)
        rec["joins"] = subflows(c)
        where = locate(expected(seed, length), bytes(got))
        rec["verdict"] = "ok" if where is None else "damaged"
        if where:
            rec["where"] = where
    except (OSError, asyncio.TimeoutError) as e:
        rec.update(verdict="failed", error=type(e).__name__ + ": " + str(e))
    finally:
        c.close()
        log.write(json.dumps(rec) + "\n")
        log.flush()


async def serve(args):
    host, port = split(args.bind)
    ls = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                       socket.SOCK_STREAM, IPPROTO_MPTCP)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 1024)
    ls.bind((host, port))
    ls.listen(4096)
    ls.setblocking(False)
    log = open(args.log, "a")
    loop = asyncio.get_running_loop()
    print("listening", flush=True)
    tasks = set()
    while True:
        c, _ = await loop.sock_accept(ls)
        c.setblocking(False)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the concentrator
        t = asyncio.create_task(serve_one(c, args, log))
        tasks.add(t)
        t.add_done_callback(tasks.discard)


# ------------------------------------------------------------------ client

async def writable(loop, s, timeout):
    fut = loop.create_future()
    loop.add_writer(s.fileno(), lambda: fut.done() or fut.set_result(None))
    try:
        await asyncio.wait_for(fut, timeout)
    finally:
        loop.remove_writer(s.fileno())
    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, os.strerror(err))


async def flow(args):
    loop = asyncio.get_running_loop()
    seed = os.urandom(16)
    payload = expected(seed, args.bytes)
    stream = MAGIC + struct.pack("!I", args.bytes) + seed + payload
    rec = {"seed": seed.hex()}
    host, port = split(args.dst)
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                      socket.SOCK_STREAM, IPPROTO_MPTCP)
    try:
        s.setblocking(False)
        # As gw-agent's MPTCP sockets: no Nagle, a fixed 4 MiB receive buffer.
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        if args.src:
            s.bind((args.src, 0))
        # What leaves with (syn) or right after (plain, reply) the handshake.
        first = {"syn": stream[:HDR + SYN_BYTES], "reply": stream[:HDR], "plain": b""}[args.mode]
        if args.mode == "syn":
            try:
                n = s.sendto(first, MSG_FASTOPEN, (host, port))
            except BlockingIOError:
                n = 0
            await writable(loop, s, 30)
            await loop.sock_sendall(s, first[n:])
        else:
            err = s.connect_ex((host, port))
            if err not in (0, errno.EINPROGRESS):
                raise OSError(err, os.strerror(err))
            await writable(loop, s, 30)
            await loop.sock_sendall(s, first)
        if args.mode == "reply":
            g = await asyncio.wait_for(loop.sock_recv(s, 1), 30)
            if g != b"G":
                raise ConnectionError(f"reply {g!r}")

        async def send_rest():
            # 32 KiB send()s, as the relays write.
            for i in range(len(first), len(stream), 32768):
                await loop.sock_sendall(s, stream[i:i + 32768])
            s.shutdown(socket.SHUT_WR)

        sender = asyncio.create_task(send_rest())
        got = bytearray()
        while True:
            d = await asyncio.wait_for(loop.sock_recv(s, 65536), 60)
            if not d:
                break
            got += d
        await sender
        rec["joins"] = subflows(s)
        where = locate(payload, bytes(got))
        rec["echo"] = "ok" if where is None else "damaged"
        if where:
            rec["where"] = where
    except (OSError, asyncio.TimeoutError, ConnectionError) as e:
        rec.update(echo="failed", error=type(e).__name__ + ": " + str(e))
    finally:
        s.close()
    return rec


async def client(args):
    out = open(args.log, "a") if args.log else sys.stdout
    recs = await asyncio.gather(*(flow(args) for _ in range(args.flows)))
    for r in recs:
        out.write(json.dumps(r) + "\n")
    out.flush()
    n = {k: sum(1 for r in recs if r["echo"] == k) for k in ("ok", "damaged", "failed")}
    print(json.dumps({"flows": len(recs), **n}), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--bind", required=True)
    s.add_argument("--log", required=True)
    s.add_argument("--hold-ms", type=float, default=0)
    s.add_argument("--settle-ms", type=float, default=0)
    c = sub.add_parser("client")
    c.add_argument("--dst", required=True)
    c.add_argument("--src")
    c.add_argument("--flows", type=int, default=40)
    c.add_argument("--bytes", type=int, default=100000)
    c.add_argument("--log")
    for x in (s, c):
        x.add_argument("--mode", choices=("plain", "reply", "syn"), default="plain")
    args = p.parse_args()
    if args.cmd == "serve":
        args.holder = LockHolder(args.hold_ms) if args.hold_ms > 0 else None
        asyncio.run(serve(args))
    else:
        asyncio.run(client(args))


if __name__ == "__main__":
    main()
