#!/usr/bin/env python3
"""Writes the seed corpora for fuzz-convert and fuzz-handshake. For
fuzz-convert: valid requests and replies of
every TLV, and a few broken ones. The first byte of each file is the harness's
control byte (bit 0: decode as a reply; bit 1: EOF; bit 2: size limit).
Run from anywhere; rewrites tests/fuzz/corpus/convert/."""
import os, struct

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "convert")
os.makedirs(out, exist_ok=True)

def pad(b):
    return b + b"\0" * (-len(b) % 4)

def tlv(t, value):
    v = pad(bytes([t, 0]) + value)
    return bytes([t, len(v) // 4]) + v[2:]

def msg(*tlvs, trailer=b""):
    body = b"".join(tlvs)
    return bytes([1, (4 + len(body)) // 4]) + struct.pack("!H", 0x2263) + body + trailer

v4 = bytes(10) + b"\xff\xff" + bytes([203, 0, 113, 2])
v6 = bytes.fromhex("20010db8000000000000000000000001")
connect = lambda addr, port, opts=b"": tlv(10, struct.pack("!H", port) + addr + opts)

REQ, REPLY, EOF, LIMIT = 0, 1, 2, 4 | (8 << 3)
seeds = {
    "connect-v4": (REQ, msg(connect(v4, 80))),
    "connect-v4-payload": (REQ, msg(connect(v4, 80), trailer=b"GET / HTTP/1.1\r\n\r\n")),
    "connect-v6-opts": (REQ, msg(connect(v6, 443, bytes([2, 4, 5, 0xb4, 4, 2, 1, 3, 3, 7])))),
    "info": (REQ, msg(tlv(1, b"\0\0"))),
    "info-connect-cookie": (REQ, msg(tlv(1, b"\0\0"), connect(v4, 8080), tlv(22, b"\0\0" + bytes(range(16))))),
    "connect-limit": (REQ | LIMIT, msg(connect(v4, 80))),
    "connect-eof-trunc": (REQ | EOF, msg(connect(v4, 80))[:13]),
    "reply-ok": (REPLY, msg()),
    "reply-ok-payload": (REPLY, msg(trailer=b"HTTP/1.1 200 OK\r\n")),
    "reply-error": (REPLY, msg(tlv(30, bytes([97, 3, 1])))),
    "reply-ext-supported": (REPLY, msg(tlv(20, b"\0\0" + bytes(20) + bytes([2, 4, 5, 0xb4])), tlv(21, b"\0\0" + bytes([2, 3, 4, 8, 30])))),
    "bad-version": (REQ, bytes([2]) + msg(connect(v4, 80))[1:]),
    "bad-magic": (REQ, b"GET / HTTP/1.1\r\n"),
    "bad-zero-tlv": (REQ, msg(connect(v4, 80))[:5] + b"\0" + msg(connect(v4, 80))[6:]),
    "bad-unknown-tlv": (REQ, msg(connect(v4, 80), tlv(200, b"\0\0"))),
    "partial-header": (REQ, b"\x01\x06"),
}
for name, (ctl, data) in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes([ctl]) + data)
print(f"wrote {len(seeds)} seeds to {out}")

# fuzz-handshake: control byte bit 0 keys required, bit 1 EOF, bits 2-3 the
# client's address (0: 198.51.100.2). Key 7 (any) and key 9 (any, nat) have
# the secret 01 02 .. 20; the harness's clock is 1700000000.
import hashlib, hmac
hs = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "handshake")
os.makedirs(hs, exist_ok=True)
secret = bytes(range(1, 33))
peer0 = bytes(10) + b"\xff\xff" + bytes([198, 51, 100, 2])
NOW = 1700000000

def cookie(kid, addr, port, opts=b"", nat=False, t=NOW, nonce=1):
    hdr = bytes([1, 1 if nat else 0]) + struct.pack("!IIQ", kid, t, nonce)
    dst = bytes(18) if addr is None else struct.pack("!H", port) + addr + opts
    mac = hmac.new(secret, b"mptcp-ha cookie 1" + hdr + (bytes(16) if nat else peer0) + dst,
                   hashlib.sha256).digest()
    return tlv(22, b"\0\0" + hdr + mac)

KEYS = 1
v4priv = bytes(10) + b"\xff\xff" + bytes([10, 0, 0, 1])
v4op = bytes(10) + b"\xff\xff" + bytes([10, 20, 1, 1])
mss = bytes([2, 4, 5, 0xb4])
hseeds = {
    "connect": (0, msg(connect(v4, 80))),
    "connect-payload": (0, msg(connect(v4, 80), trailer=b"GET / HTTP/1.0\r\n\r\n")),
    "connect-mss": (0, msg(connect(v4, 80, mss))),
    "connect-bad-option": (0, msg(connect(v4, 80, bytes([30, 4, 0, 0])))),
    "connect-denied": (0, msg(connect(v4priv, 80))),
    "connect-operator-allowed": (0, msg(connect(v4op, 22))),
    "connect-v6": (4, msg(connect(v6, 443))),
    "info": (0, msg(tlv(1, b"\0\0"))),
    "eof-partial": (2, msg(connect(v4, 80))[:9]),
    "keyed-missing": (KEYS, msg(connect(v4, 80))),
    "keyed-good": (KEYS, msg(connect(v4, 80), cookie(7, v4, 80))),
    "keyed-good-mss": (KEYS, msg(connect(v4, 80, mss), cookie(7, v4, 80, mss))),
    "keyed-nat": (KEYS, msg(connect(v4, 80), cookie(9, v4, 80, nat=True))),
    "keyed-info": (KEYS, msg(tlv(1, b"\0\0"), cookie(7, None, 0))),
    "keyed-stale": (KEYS, msg(connect(v4, 80), cookie(7, v4, 80, t=NOW - 1000))),
    "keyed-wrong-dst": (KEYS, msg(connect(v4, 81), cookie(7, v4, 80))),
}
for name, (ctl, data) in hseeds.items():
    with open(os.path.join(hs, name), "wb") as f:
        f.write(bytes([ctl]) + data)
print(f"wrote {len(hseeds)} seeds to {hs}")
