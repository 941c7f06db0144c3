#!/usr/bin/env python3
"""Test servers and RFC 8803 Convert clients for the namespace scenarios.

Servers (one process, several ports):
  serve --bind ADDR [--bind ADDR6] --base PORT
    PORT+0 echo: returns every byte; after the client's FIN, finishes
           echoing and sends its own FIN (so the client's half-close must
           not end the other direction).
    PORT+1 reset: reads a little, then resets (SO_LINGER 0).
    PORT+2 server-first half-close: sends b"bye", shuts its write side,
           reads until EOF, then logs the byte count and sha256 it received.
    --mptcp: MPTCP listeners (plain TCP clients fall back), for the benches'
    no-proxy reference.

Clients (each prints one JSON line and exits 0 only when the check holds):
  echo         N flows, each sending BYTES random bytes and checking the echo
  error        one Convert request (or raw bytes) expecting an Error code
  reset        expects the server's reset to arrive as a reset
  halfclose    server-first half-close: EOF first, then send BYTES
  stall        COUNT clients stuck mid-header and one valid flow among them
  errors       every refusal case at once, with a valid flow running through
  tcpping      request latency: small echoes over one connection (benches)

The Convert message is built here byte by byte from RFC 8803, independently
of the C codec, so the tests check the daemon against the RFC rather than
against itself."""
import argparse
import asyncio
import hashlib
import ipaddress
import json
import os
import socket
import struct
import sys
import time

IPPROTO_MPTCP = getattr(socket, "IPPROTO_MPTCP", 262)


# ---------------------------------------------------------------- protocol

def mapped(ip):
    a = ipaddress.ip_address(ip)
    if a.version == 4:
        return b"\0" * 10 + b"\xff\xff" + a.packed
    return a.packed


def tlv(t, value):
    raw = bytes([t, 0]) + value
    raw += b"\0" * (-len(raw) % 4)
    return bytes([t, len(raw) // 4]) + raw[2:]


def convert_msg(*tlvs, version=1):
    body = b"".join(tlvs)
    return bytes([version, (4 + len(body)) // 4]) + struct.pack("!H", 0x2263) + body


def connect_tlv(ip, port, opts=b""):
    return tlv(10, struct.pack("!H", port) + mapped(ip) + opts)


async def read_reply(reader):
    """Returns (error_code or None, reply bytes)."""
    hdr = await reader.readexactly(4)
    if hdr[0] != 1 or hdr[2:4] != b"\x22\x63":
        raise ValueError(f"bad reply header {hdr.hex()}")
    rest = await reader.readexactly(hdr[1] * 4 - 4)
    off, code = 0, None
    while off < len(rest):
        t, ln = rest[off], rest[off + 1] * 4
        if ln == 0:
            raise ValueError("zero-length TLV in reply")
        if t == 30:
            code = rest[off + 2]
        off += ln
    return code, hdr + rest


def split_hostport(s):
    if s.startswith("["):
        h, p = s[1:].split("]:")
    else:
        h, p = s.rsplit(":", 1)
    return h, int(p)


async def open_conn(conc, proto=IPPROTO_MPTCP, src=None):
    host, port = split_hostport(conc)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM, proto)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if src:
        s.bind((src, 0))
    s.setblocking(False)
    # Not loop.sock_connect(): it calls getaddrinfo() with the socket's
    # protocol, and glibc rejects IPPROTO_MPTCP there.
    loop = asyncio.get_running_loop()
    err = s.connect_ex((host, port))
    if err not in (0, 115):  # EINPROGRESS
        s.close()
        raise OSError(err, os.strerror(err))
    if err:
        fut = loop.create_future()
        loop.add_writer(s.fileno(), lambda: fut.done() or fut.set_result(None))
        try:
            await asyncio.wait_for(fut, 10)
        finally:
            loop.remove_writer(s.fileno())
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            s.close()
            raise OSError(err, os.strerror(err))
    return await asyncio.open_connection(sock=s)


# ---------------------------------------------------------------- servers

DUMP_DIR = os.environ.get("NETTOOL_DUMP")  # echo server: keep what each flow sent


async def srv_echo(reader, writer):
    got = bytearray() if DUMP_DIR else None
    try:
        while True:
            d = await reader.read(65536)
            if not d:
                break
            if got is not None and len(got) < 4 << 20:
                got += d
            writer.write(d)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
        if got:
            # Named by the flow's first bytes (random): the client finds
            # what the server received, to tell which direction went wrong.
            with open(os.path.join(DUMP_DIR, bytes(got[:8]).hex()), "wb") as f:
                f.write(got)


async def srv_reset(reader, writer):
    """PORT+1: reads a byte, answers "R", then resets: a client that sees
    "R" and then a reset knows the reset came from the server, after its
    flow was relayed both ways."""
    try:
        await reader.read(1)
        writer.write(b"R")
        await writer.drain()
        await asyncio.sleep(0.2)
    except (ConnectionError, OSError):
        pass
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def srv_halfclose(reader, writer):
    h, n = hashlib.sha256(), 0
    try:
        writer.write(b"bye")
        writer.write_eof()
        await writer.drain()
        while True:
            d = await reader.read(65536)
            if not d:
                break
            h.update(d)
            n += len(d)
    except (ConnectionError, OSError):
        pass
    print(json.dumps({"halfclose_received": n, "sha256": h.hexdigest()}), flush=True)
    writer.close()


async def srv_whoami(reader, writer):
    peer = writer.get_extra_info("peername")
    writer.write(f"{peer[0]}\n".encode())
    await writer.drain()
    writer.close()


class UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.t = transport

    def datagram_received(self, data, addr):
        self.t.sendto(data, addr)


async def srv_sink(reader, writer):
    """PORT+4: a server that never reads: its receive window closes."""
    try:
        await asyncio.sleep(3600)
    finally:
        writer.close()


async def stub_converter(reader, writer):
    """An RFC 8803 converter that knows only the RFC's TLVs (as a third
    party's would): a request carrying a private-use TLV gets Error 2
    (Unsupported Message) naming its type; any other request is answered
    with success and its bytes echoed (the stub is its own server)."""
    try:
        head = await asyncio.wait_for(reader.readexactly(4), 10)
        body = await asyncio.wait_for(reader.readexactly(head[1] * 4 - 4), 10)
        i = 0
        while i + 2 <= len(body):
            t, ln = body[i], body[i + 1] * 4
            if t >= 192:
                writer.write(convert_msg(tlv(30, bytes([2, t]))))
                await writer.drain()
                print(json.dumps({"stub": "refused", "tlv": t}), flush=True)
                writer.close()
                return
            i += max(ln, 4)
        writer.write(convert_msg())
        print(json.dumps({"stub": "accepted"}), flush=True)
        while True:
            d = await reader.read(65536)
            if not d:
                break
            writer.write(d)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
        pass
    writer.close()


async def serve_stub(args):
    host, port = split_hostport(args.bind[0])
    ls = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
                       IPPROTO_MPTCP)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    srv = await asyncio.start_server(stub_converter, sock=ls)
    print("serving", flush=True)
    await srv.serve_forever()


async def serve(args):
    if args.stub_converter:
        return await serve_stub(args)
    servers = []
    loop = asyncio.get_running_loop()
    for b in args.bind:
        if args.udp443:
            await loop.create_datagram_endpoint(UdpEcho, local_addr=(b, 443))
        for off, fn in ((0, srv_echo), (1, srv_reset), (2, srv_halfclose), (3, srv_whoami),
                        (4, srv_sink)):
            if args.mptcp:
                # An MPTCP listener (it also takes plain TCP clients, as a
                # fallback): the benches' no-proxy reference connects here.
                fam = socket.AF_INET6 if ":" in b else socket.AF_INET
                ls = socket.socket(fam, socket.SOCK_STREAM, IPPROTO_MPTCP)
                ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                ls.bind((b, args.base + off))
                servers.append(await asyncio.start_server(fn, sock=ls, backlog=4096))
            else:
                servers.append(await asyncio.start_server(fn, b, args.base + off,
                                                          reuse_address=True, backlog=4096))
    print("serving", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


# ---------------------------------------------------------------- clients

async def echo_flow(conc, dst, nbytes, proto=IPPROTO_MPTCP, split=False, chunk=1 << 16,
                    pace=0.0, plain=False, src=None):
    """One flow: Convert + data; returns (ok, detail). The first data rides
    in the same write as the Convert message, as a 0-RTT client does. With
    plain, an ordinary TCP connection straight to dst (a LAN device behind
    the agent): no Convert message, no reply."""
    host, port = split_hostport(dst)
    if plain:
        # A LAN device speaks TCP; "mptcp" is the kernel-only reference
        # (an MPTCP client straight to an MPTCP server, no proxy).
        reader, writer = await open_conn(dst, IPPROTO_MPTCP if plain == "mptcp" else
                                         socket.IPPROTO_TCP, src)
        msg = b""
    else:
        reader, writer = await open_conn(conc, proto, src)
        msg = convert_msg(connect_tlv(host, port))
    data = os.urandom(nbytes)
    first = data[:1000]
    if split:
        # The message in three pieces, with pauses, to cross segments.
        for piece in (msg[:3], msg[3:9], msg[9:] + first):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.05)
    else:
        writer.write(msg + first)
        await writer.drain()

    async def send_rest():
        steps = max(1, (len(data) - len(first) + chunk - 1) // chunk)
        for i in range(len(first), len(data), chunk):
            writer.write(data[i:i + chunk])
            await writer.drain()
            if pace:
                await asyncio.sleep(pace / steps)
        writer.write_eof()

    sender = asyncio.ensure_future(send_rest())
    code = None
    if not plain:
        code, _ = await read_reply(reader)
    if code is not None:
        sender.cancel()
        writer.close()
        return False, f"error {code}"
    h, n = hashlib.sha256(), 0
    got = bytearray() if nbytes <= 4 << 20 else None
    try:
        while True:
            d = await reader.read(1 << 18)
            if not d:
                break
            h.update(d)
            n += len(d)
            if got is not None:
                got += d
    except ConnectionError:
        # Reset: what came before it must still be the sent bytes, here
        # and (with NETTOOL_DUMP) at the server.
        sender.cancel()
        writer.close()
        detail = f"reset after {n} of {nbytes} bytes"
        if got is not None:
            detail += ", echo " + ("a prefix of the sent bytes" if data[:n] == got
                                   else "NOT a prefix: " + describe_mismatch(data, bytes(got)))
        if DUMP_DIR:
            at = os.path.join(DUMP_DIR, data[:8].hex())
            for _ in range(40):   # the server writes it when its side closes
                if os.path.exists(at):
                    break
                await asyncio.sleep(0.05)
            if os.path.exists(at):
                srv = open(at, "rb").read()
                detail += (f"; the server got {len(srv)} bytes, " +
                           ("a prefix of the sent bytes" if data[:len(srv)] == srv
                            else "NOT a prefix: " + describe_mismatch(data, srv)))
            else:
                detail += "; the server kept nothing"
        return False, detail
    await sender
    writer.close()
    ok = n == nbytes and h.digest() == hashlib.sha256(data).digest()
    detail = f"{n} of {nbytes} bytes, hash {'equal' if ok else 'DIFFERENT'}"
    if not ok and got is not None:
        detail += "; " + describe_mismatch(data, bytes(got))
        if DUMP_DIR:
            name = os.path.join(DUMP_DIR, data[:8].hex())
            with open(name + ".sent", "wb") as f:
                f.write(data)
            with open(name + ".echo", "wb") as f:
                f.write(got)
            if os.path.exists(name):
                detail += "; at the server: " + describe_mismatch(data, open(name, "rb").read())
    return ok, detail


def describe_mismatch(sent, got):
    """Where a stream went wrong: the first differing byte, how long the
    wrong run is, and where in the sent stream those bytes came from (a
    displaced segment points at reassembly, bytes from nowhere at memory)."""
    n = min(len(sent), len(got))
    first = next((i for i in range(n) if sent[i] != got[i]), n)
    if first == n and len(sent) == len(got):
        return "streams equal"
    last = max((i for i in range(first, n) if sent[i] != got[i]), default=first)
    probe = got[first:first + 32]
    src = sent.find(probe) if len(probe) == 32 else -1
    if src >= 0:
        k = 0
        while first + k < len(got) and src + k < len(sent) and got[first + k] == sent[src + k]:
            k += 1
        where = f"{k} bytes from sent offset {src} ({src - first:+d})"
    else:
        where = "bytes not sent in this flow"
    return f"first wrong byte {first}, last wrong byte {last}: {where}"


async def cmd_echo(args):
    proto = socket.IPPROTO_TCP if args.tcp else IPPROTO_MPTCP
    t0 = time.monotonic()
    res = await asyncio.gather(*(echo_flow(args.conc, args.dst, args.bytes, proto, args.split,
                                           pace=args.pace, plain="mptcp" if args.plain and args.mptcp else args.plain,
                                           src=args.src)
                                 for _ in range(args.flows)), return_exceptions=True)
    dt = time.monotonic() - t0
    good = sum(1 for r in res if not isinstance(r, BaseException) and r[0])
    bad = [repr(r) if isinstance(r, BaseException) else r[1] for r in res
           if isinstance(r, BaseException) or not r[0]]
    print(json.dumps({"flows": args.flows, "ok": good, "seconds": round(dt, 3),
                      "mbit_s": round(2 * 8 * args.bytes * args.flows / dt / 1e6, 1),
                      "failures": bad[:5]}))
    return good == args.flows


async def request_error(conc, payload, src=None, proto=IPPROTO_MPTCP):
    reader, writer = await open_conn(conc, proto, src)
    writer.write(payload)
    await writer.drain()
    try:
        code, raw = await asyncio.wait_for(read_reply(reader), 10)
        # After an Error the converter closes: EOF must follow.
        rest = await asyncio.wait_for(reader.read(), 10)
        return code, raw.hex(), len(rest)
    finally:
        writer.close()


async def cmd_error(args):
    if args.raw:
        payload = bytes.fromhex(args.raw)
    else:
        host, port = split_hostport(args.dst)
        payload = convert_msg(connect_tlv(host, port))
    code, raw, extra = await request_error(args.conc, payload, args.src)
    print(json.dumps({"code": code, "reply": raw, "trailing": extra}))
    return code == args.code and extra == 0


async def cmd_reset(args):
    """The server's reset (PORT+1) must arrive as a reset, after its "R":
    a reset before anything was relayed proves nothing. --plain: straight
    to dst (through the agent), no Convert."""
    host, port = split_hostport(args.dst)
    code = None
    if args.plain:
        reader, writer = await open_conn(args.dst, socket.IPPROTO_TCP)
        writer.write(b"x")
    else:
        reader, writer = await open_conn(args.conc)
        writer.write(convert_msg(connect_tlv(host, port)) + b"x")
    await writer.drain()
    if not args.plain:
        code, _ = await read_reply(reader)
    try:
        first = await asyncio.wait_for(reader.readexactly(1), 10)
    except (asyncio.IncompleteReadError, ConnectionError) as e:
        print(json.dumps({"code": code, "result": f"{type(e).__name__} before the server's byte"}))
        return False
    try:
        d = await asyncio.wait_for(reader.read(), 10)
        out = {"code": code, "first": first.decode(), "result": f"EOF after {len(d)} bytes"}
        ok = False
    except (ConnectionResetError, BrokenPipeError) as e:
        out = {"code": code, "first": first.decode(), "result": type(e).__name__}
        ok = code is None and first == b"R"
    print(json.dumps(out))
    return ok


async def cmd_halfclose(args):
    host, port = split_hostport(args.dst)
    code = None
    if args.plain:
        reader, writer = await open_conn(args.dst, socket.IPPROTO_TCP)
    else:
        reader, writer = await open_conn(args.conc)
        writer.write(convert_msg(connect_tlv(host, port)))
        await writer.drain()
        code, _ = await read_reply(reader)
    got = await asyncio.wait_for(reader.read(), 10)   # server FIN: EOF
    data = os.urandom(args.bytes)
    for i in range(0, len(data), 1 << 16):
        writer.write(data[i:i + (1 << 16)])
        await writer.drain()
    writer.write_eof()
    await writer.drain()
    # The server closes after our FIN; wait for the full close.
    await asyncio.wait_for(reader.read(), 10)
    writer.close()
    sha = hashlib.sha256(data).hexdigest()
    out = {"code": code, "got": got.decode(errors="replace"), "sent": len(data), "sha256": sha}
    server_ok = True
    if args.server_log:
        # The server logs what it received once it has read our FIN; the
        # check is that line, with our byte count and our hash.
        out["server"] = await server_logged(args.server_log, len(data), sha)
        server_ok = out["server"] == "same bytes"
    print(json.dumps(out))
    return code is None and got == b"bye" and server_ok


async def server_logged(path, nbytes, sha, deadline=10.0):
    """What the half-close server logged for a flow whose bytes hash to
    sha: 'same bytes', or what it saw instead (a hash that is not ours
    cannot be told apart from another flow's, so only the count and the
    hash together are a match)."""
    want = {"halfclose_received": nbytes, "sha256": sha}
    t_end = time.monotonic() + deadline
    while True:
        try:
            with open(path) as f:
                for line in f:
                    try:
                        if json.loads(line) == want:
                            return "same bytes"
                    except ValueError:
                        continue
        except OSError:
            pass
        if time.monotonic() > t_end:
            return f"no line {json.dumps(want)} in {path} within {deadline:.0f} s"
        await asyncio.sleep(0.05)


async def cmd_stall(args):
    """COUNT clients send 2 bytes of a header and stop. A valid flow started
    after them must finish before any of them is closed (they cannot delay
    it), and each must be closed by the handshake timeout."""
    t0 = time.monotonic()
    conns = [await open_conn(args.conc) for _ in range(args.count)]
    for r, w in conns:
        w.write(b"\x01\x06")
    await asyncio.gather(*(w.drain() for r, w in conns))
    t_valid0 = time.monotonic()
    ok, detail = await echo_flow(args.conc, args.dst, 1 << 20)
    t_valid = time.monotonic()

    async def closed_at(r):
        try:
            await asyncio.wait_for(r.read(), args.timeout * 4 + 10)
        except (ConnectionError, OSError):
            pass
        except asyncio.TimeoutError:
            return None
        return time.monotonic()

    closes = await asyncio.gather(*(closed_at(r) for r, w in conns))
    for r, w in conns:
        w.close()
    still_open = sum(1 for c in closes if c is None)
    done = [c for c in closes if c is not None]
    first, last = (min(done) - t0, max(done) - t0) if done else (None, None)
    out = {"stalled": args.count, "valid_ok": ok, "valid_detail": detail,
           "valid_seconds": round(t_valid - t_valid0, 3),
           "valid_done_before_first_close": bool(done) and t_valid < min(done),
           "first_close_s": first and round(first, 2), "last_close_s": last and round(last, 2),
           "still_open": still_open}
    print(json.dumps(out))
    return (ok and still_open == 0 and out["valid_done_before_first_close"]
            and first >= args.timeout * 0.5)


async def cmd_errors(args):
    """All refusal cases concurrently, with a valid 16 MiB flow in parallel;
    each must get its code and the valid flow must be intact."""
    host, port = split_hostport(args.dst)
    ok_hdr = convert_msg(connect_tlv(host, port))
    cases = {
        "0 unsupported version": (0, convert_msg(connect_tlv(host, port), version=2), None),
        "1 garbage": (1, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", None),
        "1 zero-length TLV": (1, ok_hdr[:5] + b"\0" + ok_hdr[6:], None),
        "1 truncated then EOF": (1, ok_hdr[:10], "eof"),
        "2 unknown TLV": (2, convert_msg(connect_tlv(host, port), tlv(99, b"\0\0")), None),
        "2 private-use TLV": (2, convert_msg(connect_tlv(host, port), tlv(200, b"\0\0")), None),
        "32 RFC1918 destination": (32, convert_msg(connect_tlv("10.1.2.3", 80)), None),
        "32 loopback destination": (32, convert_msg(connect_tlv("127.0.0.1", port)), None),
        "32 v4-mapped private": (32, convert_msg(tlv(10, struct.pack("!H", 80) + mapped("192.168.1.1"))), None),
        "32 link-local v6": (32, convert_msg(connect_tlv("fe80::1", 80)), None),
        "32 ULA v6": (32, convert_msg(connect_tlv("fd00::1", 80)), None),
        "32 NAT64 of private": (32, convert_msg(tlv(10, struct.pack("!H", 80) + bytes.fromhex("0064ff9b0000000000000000c0a80101"))), None),
        "32 concentrator itself": (32, convert_msg(connect_tlv(args.self_addr, 22)), None),
        "33 unsupported TCP option": (33, convert_msg(connect_tlv(host, port, bytes([30, 4, 0, 0]))), None),
        "96 refused": (96, convert_msg(connect_tlv(host, args.closed_port)), None),
        "97 no route": (97, convert_msg(connect_tlv(args.unroutable, 80)), None),
        "97 timeout": (97, convert_msg(connect_tlv(host, args.blackhole_port)), None),
    }
    if args.bad_src:
        cases["32 client not allowed"] = (32, ok_hdr, "src")

    async def one(name, code, payload, mode):
        try:
            if mode == "eof":
                reader, writer = await open_conn(args.conc)
                writer.write(payload)
                writer.write_eof()
                await writer.drain()
                got, _ = await asyncio.wait_for(read_reply(reader), 10)
                writer.close()
            else:
                got, _, _ = await request_error(args.conc, payload,
                                                args.bad_src if mode == "src" else None)
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            got = repr(e)
        return name, code, got

    valid = asyncio.ensure_future(echo_flow(args.conc, args.dst, 16 << 20))
    res = await asyncio.gather(*(one(n, c, p, m) for n, (c, p, m) in cases.items()))
    vok, vdetail = await valid
    bad = [f"{n}: got {g}" for n, c, g in res if c != g]
    print(json.dumps({"cases": len(res), "wrong": bad, "valid_flow": vdetail}))
    return not bad and vok


async def cmd_limit(args):
    """Hold COUNT flows open through the concentrator; the next must get
    Error 64; after one held flow closes, a new one must succeed."""
    host, port = split_hostport(args.dst)
    held = []
    for _ in range(args.count):
        reader, writer = await open_conn(args.conc)
        writer.write(convert_msg(connect_tlv(host, port)))
        await writer.drain()
        code, _ = await read_reply(reader)
        if code is not None:
            print(json.dumps({"held_error": code}))
            return False
        held.append((reader, writer))
    code, raw, _ = await request_error(args.conc, convert_msg(connect_tlv(host, port)))
    r0, w0 = held.pop()
    w0.write_eof()
    await asyncio.wait_for(r0.read(), 10)
    w0.close()
    await asyncio.sleep(0.2)
    ok_after, detail = await echo_flow(args.conc, args.dst, 1000)
    for r, w in held:
        w.close()
    print(json.dumps({"over_limit_code": code, "after_release": detail}))
    return code == 64 and ok_after


def cmd_tfo(args):
    """0-RTT: the Convert message and the first payload in the SYN (TCP Fast
    Open, sendto with MSG_FASTOPEN), then the reply and the echo."""
    host, port = split_hostport(args.dst)
    chost, cport = split_hostport(args.conc)
    fam = socket.AF_INET6 if ":" in chost else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM, IPPROTO_MPTCP)
    payload = b"0-RTT hello"
    # Blocking: with a timeout set, Python makes the socket non-blocking and
    # the SYN-with-data sendto would return EINPROGRESS.
    s.sendto(convert_msg(connect_tlv(host, port)) + payload, socket.MSG_FASTOPEN, (chost, cport))
    s.settimeout(10)
    hdr = b""
    while len(hdr) < 4:
        d = s.recv(4 - len(hdr))
        if not d:
            break
        hdr += d
    echo = b""
    while len(echo) < len(payload):
        d = s.recv(len(payload) - len(echo))
        if not d:
            break
        echo += d
    s.close()
    print(json.dumps({"reply": hdr.hex(), "echo": echo.decode(errors="replace")}))
    return hdr == bytes([1, 1, 0x22, 0x63]) and echo == payload


def cmd_whoami(args):
    """Plain TCP to dst's whoami port: prints the address the server saw."""
    host, port = split_hostport(args.dst)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.create_connection((host, port), timeout=10)
    data = s.makefile().readline().strip()
    s.close()
    print(json.dumps({"server_saw": data}))
    return bool(data)


def cmd_quic(args):
    """A UDP datagram to dst:443. Prints "echo" when it came back, "refused"
    when an ICMP port-unreachable arrived, "timeout" otherwise."""
    host, port = split_hostport(args.dst)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.connect((host, port))
    s.send(b"QUIC-ish probe")
    try:
        d = s.recv(100)
        res = "echo" if d else "empty"
    except ConnectionRefusedError:
        res = "refused"
    except socket.timeout:
        res = "timeout"
    print(json.dumps({"udp443": res}))
    return True


def pcap_tcp(path):
    """Each TCP segment in a pcap (Ethernet or Linux cooked), as a dict:
    src, dst, sport, dport, flags, seq, ack, option kinds, payload."""
    import struct as st
    data = open(path, "rb").read()
    magic = st.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xa1b2c3d4, 0xa1b23c4d) else ">"
    linktype = st.unpack(endian + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = st.unpack(endian + "IIII", data[off:off + 16])
        pkt = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if linktype == 1:
            l2, eth = 14, st.unpack("!H", pkt[12:14])[0]
        elif linktype == 113:
            l2, eth = 16, st.unpack("!H", pkt[14:16])[0]
        elif linktype == 276:  # Linux cooked v2 (tcpdump -i any)
            l2, eth = 20, st.unpack("!H", pkt[0:2])[0]
        else:
            continue
        ip = pkt[l2:]
        if eth == 0x0800 and ip[9] == 6:
            ihl, tot = (ip[0] & 15) * 4, st.unpack("!H", ip[2:4])[0]
            tcp, end = ip[ihl:], tot - ihl
            src, dst = socket.inet_ntop(socket.AF_INET, ip[12:16]), socket.inet_ntop(socket.AF_INET, ip[16:20])
        elif eth == 0x86DD and ip[6] == 6:
            tcp, end = ip[40:], st.unpack("!H", ip[4:6])[0]
            src, dst = socket.inet_ntop(socket.AF_INET6, ip[8:24]), socket.inet_ntop(socket.AF_INET6, ip[24:40])
        else:
            continue
        sport, dport, seq, ack = st.unpack("!HHII", tcp[:12])
        doff = (tcp[12] >> 4) * 4
        opts, kinds, i = tcp[20:doff], [], 0
        while i < len(opts):
            k = opts[i]
            if k == 0:
                break
            if k == 1:
                i += 1
                continue
            kinds.append(k)
            i += max(2, opts[i + 1])
        yield {"src": src, "dst": dst, "sport": sport, "dport": dport, "flags": tcp[13],
               "seq": seq, "ack": ack, "option_kinds": kinds, "payload": tcp[doff:end]}


def cmd_pcap_syn(args):
    """Reports each SYN (no ACK) to PORT in a pcap: its TCP option kinds and
    the start of its payload."""
    want = args.expect_data.encode() if args.expect_data else b""
    syns = [{"option_kinds": t["option_kinds"], "payload_len": len(t["payload"]),
             "payload_head": t["payload"][:8].hex(), "has_data": want in t["payload"],
             "message_len": t["payload"][1] * 4 if len(t["payload"]) > 1 else 0}
            for t in pcap_tcp(args.file)
            if t["dport"] == args.port and (t["flags"] & 0x12) == 0x02]
    convert = [x for x in syns if 30 in x["option_kinds"] and x["payload_head"][:2] == "01"
               and x["payload_head"][4:8] == "2263" and x["payload_head"][8:10] == "0a"]
    if args.no_data:
        # Fast Open off (or a kernel without it for MPTCP): bare SYNs.
        print(json.dumps({"syns": len(syns), "with_mptcp": sum(30 in x["option_kinds"] for x in syns),
                          "with_payload": sum(x["payload_len"] > 0 for x in syns)}))
        return (len(syns) >= args.min and all(30 in x["option_kinds"] for x in syns)
                and not any(x["payload_len"] for x in syns))
    if args.only_message:
        # Each SYN carries its Convert message and nothing behind it.
        extra = [x for x in convert if x["payload_len"] != x["message_len"]]
        print(json.dumps({"syns": len(syns), "with_convert": len(convert),
                          "with_bytes_behind_message": len(extra), "first": extra[:3]}))
        return len(convert) >= args.min and not extra
    print(json.dumps({"syns": syns}))
    # The check: a SYN carrying the MPTCP option (30) and a Convert message
    # (version 1, magic 0x2263, a Connect TLV first), and with --expect-data
    # those bytes behind it (the client's own first bytes, 0-RTT).
    return any(x["has_data"] for x in convert)


def cmd_pcap_tfo(args):
    """0-RTT as the wire shows it: SYNs to PORT that carry a Convert message,
    and how many of them the server's SYN-ACK acknowledged with their data
    (ack = seq + 1 + payload length), i.e. the request was taken from the
    SYN. Exit 0 when at least --min were."""
    syns, acked = {}, 0
    for t in pcap_tcp(args.file):
        key = (t["src"], t["sport"], t["dst"], t["dport"])
        if t["dport"] == args.port and (t["flags"] & 0x12) == 0x02 and t["payload"][:1] == b"\x01" \
                and t["payload"][2:4] == b"\x22\x63":
            syns[key] = (t["seq"] + 1 + len(t["payload"])) & 0xffffffff
        elif t["sport"] == args.port and (t["flags"] & 0x12) == 0x12:
            want = syns.get((t["dst"], t["dport"], t["src"], t["sport"]))
            if want is not None and t["ack"] == want:
                acked += 1
                syns[(t["dst"], t["dport"], t["src"], t["sport"])] = None
    print(json.dumps({"syns_with_convert": len(syns), "data_acked_in_synack": acked}))
    return acked >= args.min


# ---------------------------------------------------------------- gateway keys

COOKIE_LABEL = b"mptcp-ha cookie 1"


def cookie_value(kid, secret, ts, nonce, client, dst_host, dst_port, nat=False, opts=b""):
    """The Cookie TLV value our gateways send (common/cookie.h), written
    here from its description, not from the C code."""
    import hmac
    hdr = bytes([1, 1 if nat else 0]) + struct.pack("!IIQ", kid, ts & 0xffffffff, nonce)
    addr = b"\0" * 16 if nat or client is None else mapped(client)
    if dst_host is None:
        dst = b"\0" * 18
    else:
        dst = struct.pack("!H", dst_port) + mapped(dst_host) + opts
    mac = hmac.new(secret, COOKIE_LABEL + hdr + addr + dst, hashlib.sha256).digest()
    return hdr + mac


async def cmd_cookie(args):
    """One request with a Cookie built for --case; expects --expect (an Error
    code, or -1 for success with the echo intact). Cases: none, good,
    replay (the same cookie twice: the second must fail; --replay-to: at
    another concentrator), stale, future,
    badmac, unknownkey, otherdst (cookie for another destination),
    othersrc (cookie for another client address), nat."""
    host, port = split_hostport(args.dst)
    kid, hexsecret = args.key.split(":")
    kid, secret = int(kid), bytes.fromhex(hexsecret)
    now = int(time.time())
    nonce = int.from_bytes(os.urandom(8), "big")
    client = args.src
    ts, chost, nat = now, host, args.case == "nat" or args.nat
    if args.time is not None:
        ts = args.time
    if args.case == "stale":
        ts = now - 200
    elif args.case == "future":
        ts = now + 200
    elif args.case == "unknownkey":
        kid = 4242
    elif args.case == "otherdst":
        chost = "203.0.113.77"
    elif args.case == "othersrc":
        client = "198.51.100.99"
    value = cookie_value(kid, secret, ts, nonce, client, chost, port, nat=nat)
    if args.case == "badmac":
        value = value[:-1] + bytes([value[-1] ^ 1])
    tlvs = [connect_tlv(host, port)]
    if args.case != "none":
        tlvs.append(tlv(22, b"\0\0" + value))
    msg = convert_msg(*tlvs)
    results = []
    for attempt in range(2 if args.case == "replay" else 1):
        conc = args.replay_to if attempt == 1 and args.replay_to else args.conc
        reader, writer = await open_conn(conc, IPPROTO_MPTCP, args.src)
        payload = os.urandom(4096)
        writer.write(msg + payload)
        await writer.drain()
        try:
            code, raw = await asyncio.wait_for(read_reply(reader), 10)
            if code is None:
                echo = await asyncio.wait_for(reader.readexactly(len(payload)), 10)
                code = -1 if echo == payload else -2
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            code = repr(e)
        finally:
            writer.close()
        results.append(code)
    want = [-1, args.expect] if args.case == "replay" else [args.expect]
    print(json.dumps({"case": args.case, "codes": results, "want": want}))
    return results == want


async def cmd_speedtest(args):
    """Speed test requests (TLV 193, written from docs/speedtest.md) at
    --conc from --src, by --case: none (no cookie), badmac, unkeyed (a
    well-formed cookie under --key at a concentrator without keys), good,
    replay (one cookie twice: the second refused), twice (two good ones at
    once: the second refused for the limit). Prints each request's result:
    an Error code, or -1 when the test's TLV came back."""
    now = int(time.time())
    value = bytes([1, 1 if args.dir == "down" else 2, args.seconds, 0, 0, 0])

    def cookie():
        kid, hexsecret = args.key.split(":")
        nonce = int.from_bytes(os.urandom(8), "big")
        import hmac
        hdr = bytes([1, 0]) + struct.pack("!IIQ", int(kid), now, nonce)
        mac = hmac.new(bytes.fromhex(hexsecret), COOKIE_LABEL + hdr + mapped(args.src)
                       + b"\0" * 18 + value, hashlib.sha256).digest()
        if args.case == "badmac":
            mac = mac[:-1] + bytes([mac[-1] ^ 1])
        return tlv(22, b"\0\0" + hdr + mac)

    def message(ck):
        return convert_msg(tlv(193, value), *([ck] if ck else []))

    async def one(msg, hold, answered=None):
        reader, writer = await open_conn(args.conc, socket.IPPROTO_TCP, args.src)
        try:
            writer.write(msg)
            await writer.drain()
            code, raw = await asyncio.wait_for(read_reply(reader), 10)
            if answered:
                answered.set()  # served or not, the box has decided
            if code is None:
                code = -1 if b"\xc1\x02" in raw[4:] else -2
                if hold:
                    await asyncio.sleep(hold)  # the test held open meanwhile
            return code
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as e:
            return repr(e)
        finally:
            writer.close()

    if args.case == "none":
        codes = [await one(message(None), 0)]
    elif args.case in ("badmac", "good", "unkeyed"):
        codes = [await one(message(cookie()), 0)]
    elif args.case == "replay":
        m = message(cookie())
        codes = [await one(m, 0), await one(m, 0)]
    elif args.case == "resets":
        # Requests whose sender resets at once (the reply cannot go
        # out): each must give its admission back; then a good one runs.
        import socket as so
        # (the caller then waits for the box's running tests to be 0 and
        # asks for a good one: --case good)
        for _ in range(6):
            host, port = split_hostport(args.conc)
            s = so.socket(so.AF_INET, so.SOCK_STREAM)
            s.bind((args.src, 0))
            s.connect((host, port))
            s.setsockopt(so.SOL_SOCKET, so.SO_LINGER, struct.pack("ii", 1, 0))
            s.send(message(cookie()))
            s.close()
        codes = []
    elif args.case == "twice":
        answered = asyncio.Event()
        first = asyncio.ensure_future(one(message(cookie()), 1.5, answered))
        await answered.wait()  # the first is running when the second asks
        second = await one(message(cookie()), 0)
        codes = [await first, second]
    else:
        raise SystemExit("unknown case " + args.case)
    print(json.dumps({"case": args.case, "codes": codes, "want": args.expect}))
    return codes == args.expect


async def cmd_cookieflood(args):
    """A key holder's flood of valid cookies dated --ahead seconds in the
    future (the end of the window), --count requests, --parallel at once,
    from --src: Connect requests to --dst (each one makes the concentrator
    connect there) and, with --info, as many Info-only requests. Prints the
    answers by code; fails unless every request was answered (the flood
    happened), whatever the answers were."""
    host, port = split_hostport(args.dst)
    kid, hexsecret = args.key.split(":")
    kid, secret = int(kid), bytes.fromhex(hexsecret)
    codes = {}
    sem = asyncio.Semaphore(args.parallel)

    async def one(info):
        ts = int(time.time()) + args.ahead
        nonce = int.from_bytes(os.urandom(8), "big")
        if info:
            msg = convert_msg(tlv(1, b"\0\0"), tlv(22, b"\0\0" + cookie_value(
                kid, secret, ts, nonce, args.src, None, 0)))
        else:
            msg = convert_msg(connect_tlv(host, port), tlv(22, b"\0\0" + cookie_value(
                kid, secret, ts, nonce, args.src, host, port)))
        async with sem:
            writer = None
            try:
                reader, writer = await open_conn(args.conc, IPPROTO_MPTCP, args.src)
                writer.write(msg)
                await writer.drain()
                code, _ = await asyncio.wait_for(read_reply(reader), 10)
                key = "ok" if code is None else str(code)
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError,
                    ValueError, OSError) as e:
                key = type(e).__name__
            finally:
                if writer:
                    writer.close()
            codes[key] = codes.get(key, 0) + 1

    t0 = time.monotonic()
    jobs = [one(False) for _ in range(args.count)]
    if args.info:
        jobs += [one(True) for _ in range(args.count)]
    await asyncio.gather(*jobs)
    sent = len(jobs)
    answered = sum(n for k, n in codes.items() if k == "ok" or k.isdigit())
    print(json.dumps({"sent": sent, "answered": answered, "codes": codes,
                      "seconds": round(time.monotonic() - t0, 1)}))
    return answered == sent


# ------------------------------------------------------- mesh announcements

MESH_LABEL = b"mptcp-ha mesh 2"


def mesh_announce(lending, kid, secret, seq, sender, version=2, borrow_from=None,
                  mac="02:00:00:00:00:09"):
    """A mesh announcement as gw-agent/meshmsg.h describes it, written here
    from that description: version 1 is the old unsigned 8 bytes. With
    borrow_from (a lender's address): a borrow request for that lender,
    from mac."""
    if version == 1:
        return b"gwml" + bytes([1, 1 if lending else 0, 0, 0])
    import hmac
    flags = 3 if borrow_from else 1 if lending else 0
    body = (b"gwml" + bytes([version, flags, 0, 0]) +
            struct.pack("!IQ", kid, seq) + socket.inet_aton(sender))
    if borrow_from:
        body += bytes.fromhex(mac.replace(":", "")) + b"\0\0"
    label = b"mptcp-ha borrow 2" + socket.inet_aton(borrow_from) if borrow_from else MESH_LABEL
    tag = hmac.new(secret, label + body, hashlib.sha256).digest()[:16]
    return body + tag


def send_spoofed_udp(dev, src, payload, dport=5126):
    """One UDP broadcast from src (any address: a raw socket writes the IP
    header) out of dev."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    udp = struct.pack("!HHHH", 40000, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton("255.255.255.255"))
    s.sendto(ip + udp, ("255.255.255.255", 0))
    s.close()


def cmd_meshannounce(args):
    """--count announcements out of --dev from each --src (comma-separated;
    spoofed as needed), --interval s apart: signed with --key ID:HEX (as
    --sender, default the source, sequence = our clock in ms +
    --seq-offset), or --version 1 (unsigned), or the bytes of --replay FILE
    as they are."""
    srcs = args.src.split(",")
    for i in range(args.count):
        for src in srcs:
            if args.replay:
                msg = open(args.replay, "rb").read()
            elif args.version == 1:
                msg = mesh_announce(args.lending, 0, b"", 0, src, version=1)
            else:
                kid, hexsecret = args.key.split(":")
                seq = int(time.time() * 1000) + args.seq_offset + i
                msg = mesh_announce(args.lending, int(kid), bytes.fromhex(hexsecret), seq,
                                    args.sender or src, borrow_from=args.borrow, mac=args.mac)
            send_spoofed_udp(args.dev, src, msg)
        time.sleep(args.interval)
    print(json.dumps({"sent": args.count * len(srcs), "src": args.src}))
    return True


def cmd_meshcapture(args):
    """The first announcement from --from (lending) heard on --dev, into
    --out: what anyone on the segment can record."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, args.dev.encode())
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 5126))
    s.settimeout(5)
    while True:
        data, (host, _) = s.recvfrom(64)
        if host == args.src and len(data) == 40 and data[5] == 1:
            open(args.out, "wb").write(data)
            print(json.dumps({"captured": len(data), "from": host}))
            return True


def cmd_rtt(args):
    """--count UDP probes to an echo server (serve --udp443), --interval s
    apart: round-trip times, losses and whether replies came in order.
    Prints one JSON line; checks are the caller's."""
    host, port = split_hostport(args.dst)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.connect((host, port))
    s.setblocking(False)
    sent, rtts, seen, reordered, last = {}, [], set(), 0, -1
    end = time.monotonic() + args.count * args.interval + 2
    i = 0
    while time.monotonic() < end:
        now = time.monotonic()
        if i < args.count and now >= (sent.get(i - 1, now - args.interval) + args.interval):
            s.send(struct.pack("!Id", i, now))
            sent[i] = now
            i += 1
        try:
            while True:
                d = s.recv(64)
                k, t = struct.unpack("!Id", d[:12])
                if k in seen:
                    continue
                seen.add(k)
                rtts.append((time.monotonic() - t) * 1000)
                reordered += k < last
                last = max(last, k)
        except BlockingIOError:
            pass
        if i == args.count and len(seen) == args.count:
            break
        time.sleep(min(args.interval / 4, 0.001))
    rtts.sort()
    q = lambda f: round(rtts[min(len(rtts) - 1, int(f * len(rtts)))], 2) if rtts else None
    print(json.dumps({"sent": args.count, "received": len(rtts), "lost": args.count - len(rtts),
                      "min_ms": q(0), "median_ms": q(0.5), "p90_ms": q(0.9), "max_ms": q(0.999),
                      "reordered": reordered}))
    return True


def cmd_tcpping(args):
    """Request latency over one TCP (--mptcp: MPTCP) connection to an echo
    server: --count small requests (64 bytes), --interval s apart, each
    timed until its whole echo is back. What a user's small request feels
    while other traffic loads the paths. Prints one JSON line (ms)."""
    host, port = split_hostport(args.dst)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM, IPPROTO_MPTCP if args.mptcp else 0)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(args.timeout)
    t0 = time.monotonic()
    s.connect((host, port))
    connect_ms = (time.monotonic() - t0) * 1000
    rtts, timeouts, first_ms = [], 0, None
    msg = b"p" * 64
    nxt = time.monotonic()
    # One request first, not counted: through a proxy, connect() returns
    # once the proxy has accepted, and the first request also waits for
    # the proxy's own connection onwards (connect_ms is then ~0).
    for i in range(args.count + 1):
        nxt += args.interval
        t = time.monotonic()
        try:
            s.sendall(msg)
            got = 0
            while got < len(msg):
                d = s.recv(len(msg) - got)
                if not d:
                    raise ConnectionError("closed")
                got += len(d)
            if i == 0:
                first_ms = (time.monotonic() - t) * 1000
            else:
                rtts.append((time.monotonic() - t) * 1000)
        except socket.timeout:
            timeouts += 1
            break
        time.sleep(max(0.0, nxt - time.monotonic()))
    s.close()
    rtts.sort()
    q = lambda f: round(rtts[min(len(rtts) - 1, int(f * len(rtts)))], 2) if rtts else None
    print(json.dumps({"count": len(rtts), "timeouts": timeouts, "connect_ms": round(connect_ms, 2),
                      "first_ms": round(first_ms, 2) if rtts else None,
                      "min_ms": q(0), "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99),
                      "max_ms": q(1.0)}))
    return len(rtts) == args.count


def cmd_trickle(args):
    """A client that sends its request one byte every --interval seconds
    (slowloris), until the server closes or --bytes are sent. Passes when
    the server closed before the request was complete."""
    host, port = split_hostport(args.dst)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.create_connection((host, port), timeout=10)
    data = (args.raw or "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").encode()[:args.bytes]
    sent, closed = 0, False
    for b in data:
        try:
            s.send(bytes([b]))
            sent += 1
        except OSError:
            closed = True
            break
        s.settimeout(args.interval)
        try:
            d = s.recv(4096)
            if not d:
                closed = True
                break
        except socket.timeout:
            pass
        except OSError:
            closed = True
            break
    s.close()
    print(json.dumps({"sent": sent, "of": len(data), "closed_by_server": closed}))
    return closed and sent < len(data)


def cmd_noread(args):
    """--count Convert connections to --dst, each sending up to --bytes
    (as much as the window takes) and never reading; held --seconds."""
    chost, cport = split_hostport(args.conc)
    host, port = split_hostport(args.dst)
    socks, sent = [], 0
    blob = os.urandom(1 << 16)
    for _ in range(args.count):
        s = socket.socket(socket.AF_INET6 if ":" in chost else socket.AF_INET,
                          socket.SOCK_STREAM, IPPROTO_MPTCP)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        if args.src:
            s.bind((args.src, 0))
        s.connect((chost, cport))
        s.setblocking(False)
        tlvs = [connect_tlv(host, port)]
        if args.key:
            # A gateway key (ID:HEX): these clients are valid, just slow.
            kid, hexsecret = args.key.split(":")
            tlvs.append(tlv(22, b"\0\0" + cookie_value(
                int(kid), bytes.fromhex(hexsecret), int(time.time()),
                int.from_bytes(os.urandom(8), "big"), s.getsockname()[0], host, port)))
        s.send(convert_msg(*tlvs))
        socks.append(s)
    deadline = time.monotonic() + 3
    left = {s: args.bytes for s in socks}
    while left and time.monotonic() < deadline:
        for s in list(left):
            try:
                n = s.send(blob[:min(len(blob), left[s])])
                sent += n
                left[s] -= n
                if left[s] <= 0:
                    del left[s]
            except BlockingIOError:
                pass
        time.sleep(0.01)
    # The load happened, or the check it stands behind means nothing: every
    # connection open and each with at least --min-bytes sent on average.
    ok = len(socks) == args.count and sent >= args.count * args.min_bytes
    print(json.dumps({"connections": len(socks), "bytes_sent": sent, "load_ok": ok}), flush=True)
    time.sleep(args.seconds)
    # How many the far side reset meanwhile (the unread bytes are dropped
    # with the reset, so a peek says so).
    resets = 0
    for s in socks:
        try:
            s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
        except OSError:
            resets += 1
    print(json.dumps({"reset_by_the_far_side": resets}), flush=True)
    for s in socks:
        s.close()
    return ok


def cmd_hold(args):
    """Opens --count plain TCP connections to --dst, sends nothing, holds
    them --seconds, then closes them. Prints how many connected."""
    host, port = split_hostport(args.dst)
    socks, failed, why = [], 0, {}
    if args.churn:
        done = 0
        for _ in range(args.count):
            try:
                c = socket.create_connection((host, port), timeout=args.connect_timeout,
                                             source_address=(args.src, 0) if args.src else None)
                c.close()
                done += 1
            except OSError as e:
                failed += 1
                why[type(e).__name__] = why.get(type(e).__name__, 0) + 1
        print(json.dumps({"connected_and_closed": done, "failed": failed, "why": why}), flush=True)
        return args.expect is None or done == args.expect
    request = None
    if args.request:
        # A Convert request on each: the concentrator connects there (a
        # blackholed destination keeps it connecting).
        rh, rp = split_hostport(args.request)
        request = convert_msg(connect_tlv(rh, rp))
    srcs = args.src.split(",") if args.src else [None]
    for i in range(args.count):
        src = srcs[i % len(srcs)]  # a comma-separated --src: the addresses in turn
        try:
            c = socket.create_connection((host, port), timeout=args.connect_timeout,
                                         source_address=(src, 0) if src else None)
            if request:
                c.sendall(request)
            socks.append(c)
        except OSError as e:
            failed += 1
            why[type(e).__name__] = why.get(type(e).__name__, 0) + 1
    print(json.dumps({"held": len(socks), "failed": failed, "why": why}), flush=True)
    held_ok = ((args.expect is None or len(socks) == args.expect) and
               len(socks) >= args.at_least)
    if args.trickle:
        # One byte a second on each (a Convert header that never ends).
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            for x in socks:
                try:
                    x.send(b"\x01")
                except OSError:
                    pass
            time.sleep(1)
    else:
        time.sleep(args.seconds)
    if args.verify:
        # Each connection still carries bytes both ways (an echo server):
        # how many do, after the holding time.
        alive = 0
        for x in socks:
            try:
                x.settimeout(5)
                x.send(b"x")
                alive += x.recv(1) == b"x"
            except OSError:
                pass
        print(json.dumps({"alive": alive}), flush=True)
        if alive != args.verify:
            return False
    for x in socks:
        x.close()
    return held_ok


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--bind", action="append", required=True)
    s.add_argument("--base", type=int, default=9000)
    s.add_argument("--udp443", action="store_true", help="also echo UDP on port 443")
    s.add_argument("--mptcp", action="store_true", help="MPTCP listeners")
    s.add_argument("--stub-converter", action="store_true",
                   help="an RFC 8803 converter without our private TLV, on --bind ADDR:PORT")
    tp = sub.add_parser("tcpping")
    tp.add_argument("--dst", required=True)
    tp.add_argument("--count", type=int, default=50)
    tp.add_argument("--interval", type=float, default=0.1)
    tp.add_argument("--timeout", type=float, default=5)
    tp.add_argument("--mptcp", action="store_true")
    w = sub.add_parser("whoami")
    w.add_argument("--dst", required=True)
    q = sub.add_parser("quic")
    q.add_argument("--dst", required=True)
    pc = sub.add_parser("pcap-syn")
    pc.add_argument("file")
    pc.add_argument("--port", type=int, required=True)
    pc.add_argument("--expect-data", help="bytes the SYN must carry behind the Convert message")
    pc.add_argument("--only-message", action="store_true",
                    help="every Convert SYN carries its message and nothing more (at least --min)")
    pc.add_argument("--min", type=int, default=1)
    pc.add_argument("--no-data", action="store_true", help="every SYN: MPTCP, no payload")
    rt = sub.add_parser("rtt")
    rt.add_argument("--dst", required=True)
    rt.add_argument("--count", type=int, default=200)
    rt.add_argument("--interval", type=float, default=0.01)
    tr = sub.add_parser("trickle")
    tr.add_argument("--dst", required=True)
    tr.add_argument("--interval", type=float, default=0.5)
    tr.add_argument("--bytes", type=int, default=24)
    tr.add_argument("--raw")
    ck = sub.add_parser("cookie")
    ck.add_argument("--conc", required=True)
    ck.add_argument("--dst", required=True)
    ck.add_argument("--key", required=True, help="ID:HEXSECRET")
    ck.add_argument("--case", required=True)
    ck.add_argument("--expect", type=int, required=True)
    ck.add_argument("--time", type=int, help="the cookie's time (Unix seconds) instead of now")
    ck.add_argument("--src", required=True)
    ck.add_argument("--replay-to", help="HOST:PORT: the replay goes to this concentrator")
    ck.add_argument("--nat", action="store_true", help="a NAT cookie (no address), any case")
    sp = sub.add_parser("speedtest")
    sp.add_argument("--conc", required=True)
    sp.add_argument("--src", required=True)
    sp.add_argument("--key", default="1:" + "00" * 32, help="ID:HEXSECRET")
    sp.add_argument("--case", required=True)
    sp.add_argument("--dir", default="down")
    sp.add_argument("--seconds", type=int, default=1)
    sp.add_argument("--expect", type=int, nargs="*", default=[])
    cf = sub.add_parser("cookieflood")
    cf.add_argument("--conc", required=True)
    cf.add_argument("--dst", required=True)
    cf.add_argument("--key", required=True, help="ID:HEXSECRET")
    cf.add_argument("--src", required=True)
    cf.add_argument("--count", type=int, default=1000)
    cf.add_argument("--parallel", type=int, default=32)
    cf.add_argument("--ahead", type=int, default=89)
    cf.add_argument("--info", action="store_true")
    ma = sub.add_parser("meshannounce")
    ma.add_argument("--dev", required=True)
    ma.add_argument("--src", required=True)
    ma.add_argument("--sender")
    ma.add_argument("--key", help="ID:HEXSECRET")
    ma.add_argument("--version", type=int, default=2)
    ma.add_argument("--lending", type=int, default=1)
    ma.add_argument("--count", type=int, default=20)
    ma.add_argument("--interval", type=float, default=0.02)
    ma.add_argument("--seq-offset", type=int, default=0)
    ma.add_argument("--replay")
    ma.add_argument("--borrow", help="LENDER: a borrow request for that lender instead")
    ma.add_argument("--mac", default="02:00:00:00:00:09", help="the borrow request's MAC")
    mc = sub.add_parser("meshcapture")
    mc.add_argument("--dev", required=True)
    mc.add_argument("--src", required=True)
    mc.add_argument("--out", required=True)
    nr = sub.add_parser("noread")
    nr.add_argument("--conc", required=True)
    nr.add_argument("--dst", required=True)
    nr.add_argument("--count", type=int, default=100)
    nr.add_argument("--bytes", type=int, default=1 << 20)
    nr.add_argument("--seconds", type=float, default=10)
    nr.add_argument("--src")
    nr.add_argument("--key", help="ID:HEXSECRET: put a valid cookie in each request")
    nr.add_argument("--min-bytes", type=int, default=1,
                    help="fail unless this many bytes per connection were sent on average")
    ho = sub.add_parser("hold")
    ho.add_argument("--request", help="HOST:PORT: send a Convert request for it on each")
    ho.add_argument("--dst", required=True)
    ho.add_argument("--count", type=int, default=100)
    ho.add_argument("--seconds", type=float, default=5)
    ho.add_argument("--src", help="ADDR[,ADDR...]: bind each connection to the next one")
    ho.add_argument("--connect-timeout", type=float, default=2,
                    help="seconds a connect may take (a SYN dropped at a full accept queue "
                         "is sent again after 1, 3 and 7 s)")
    ho.add_argument("--trickle", action="store_true", help="send a byte a second on each")
    ho.add_argument("--churn", action="store_true", help="connect and close at once, --count times")
    ho.add_argument("--verify", type=int, default=0,
                    help="expect this many to still echo a byte after --seconds")
    ho.add_argument("--expect", type=int,
                    help="fail unless exactly this many connected (with --churn: connected and closed)")
    ho.add_argument("--at-least", type=int, default=0,
                    help="fail unless at least this many connected (a flood, where the "
                         "listener's backlog may drop a few SYNs)")
    pt = sub.add_parser("pcap-tfo")
    pt.add_argument("file")
    pt.add_argument("--port", type=int, required=True)
    pt.add_argument("--min", type=int, default=1)
    for name in ("echo", "error", "reset", "halfclose", "stall", "errors", "limit", "tfo"):
        c = sub.add_parser(name)
        c.add_argument("--conc", help="the concentrator (not with --plain)")
        c.add_argument("--dst")
        c.add_argument("--bytes", type=int, default=1 << 20)
        c.add_argument("--flows", type=int, default=1)
        c.add_argument("--split", action="store_true")
        c.add_argument("--plain", action="store_true",
                       help="ordinary TCP straight to --dst, as a LAN device")
        c.add_argument("--pace", type=float, default=0.0,
                       help="spread the sending over this many seconds")
        c.add_argument("--tcp", action="store_true", help="plain TCP client (fallback)")
        c.add_argument("--mptcp", action="store_true",
                       help="with --plain: MPTCP straight to --dst (the kernel alone)")
        c.add_argument("--code", type=int)
        c.add_argument("--raw")
        c.add_argument("--src")
        c.add_argument("--count", type=int, default=300)
        c.add_argument("--timeout", type=float, default=2)
        c.add_argument("--closed-port", type=int)
        c.add_argument("--blackhole-port", type=int)
        c.add_argument("--unroutable")
        c.add_argument("--self-addr")
        c.add_argument("--bad-src")
        c.add_argument("--server-log",
                       help="halfclose: the server's log, which must show our bytes' hash")
    args = p.parse_args()
    sync = {"tfo": cmd_tfo, "whoami": cmd_whoami, "quic": cmd_quic, "pcap-syn": cmd_pcap_syn,
            "pcap-tfo": cmd_pcap_tfo, "trickle": cmd_trickle, "hold": cmd_hold,
            "noread": cmd_noread, "rtt": cmd_rtt, "tcpping": cmd_tcpping,
            "meshannounce": cmd_meshannounce, "meshcapture": cmd_meshcapture}
    if args.cmd in sync:
        sys.exit(0 if sync[args.cmd](args) else 1)
    fn = {"serve": serve, "echo": cmd_echo, "error": cmd_error, "reset": cmd_reset,
          "halfclose": cmd_halfclose, "stall": cmd_stall, "errors": cmd_errors,
          "limit": cmd_limit, "cookie": cmd_cookie, "cookieflood": cmd_cookieflood,
          "speedtest": cmd_speedtest}[args.cmd]
    ok = asyncio.run(fn(args))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
