#!/usr/bin/env python3
"""Forged packets for the hostile scenarios (scapy).

  forge.py syn-data --src A --dst C:PORT --to D:PORT [--count N] [--mptcp]
      N SYNs from a forged source address A to the concentrator C, each
      carrying a whole RFC 8803 Connect message for D in its payload (what a
      TCP Fast Open SYN carries), with a TFO option and, with --mptcp, an
      MP_CAPABLE option. The source never answers the SYN-ACK: the handshake
      never completes, so nothing may be connected or sent upstream.

The Convert message comes from nettool.py (built from RFC 8803 there)."""
import argparse
import random
import sys

from scapy.all import IP, IPv6, TCP, Raw, send, conf  # noqa: E402

from nettool import connect_tlv, convert_msg, split_hostport as hostport  # noqa: E402

conf.verb = 0


def syn_data(args):
    chost, cport = hostport(args.dst)
    dhost, dport = hostport(args.to)
    payload = convert_msg(connect_tlv(dhost, dport)) + b"GET / HTTP/1.0\r\n\r\n"
    l3 = IPv6 if ":" in chost else IP
    opts = [("MSS", 1400), ("SAckOK", b""), ("TFO", b"")]
    if args.mptcp:
        # MP_CAPABLE v1 in a SYN: kind 30, length 4, subtype 0 | version 1,
        # flags H (HMAC-SHA256).
        opts.append((30, b"\x01\x01"))
    pkts = [l3(src=args.src, dst=chost) /
            TCP(sport=random.randint(20000, 60000), dport=cport, flags="S",
                seq=random.getrandbits(32), options=opts) / Raw(payload)
            for _ in range(args.count)]
    send(pkts)
    print('{"forged_syns": %d}' % len(pkts))
    return True


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("syn-data")
    s.add_argument("--src", required=True)
    s.add_argument("--dst", required=True)
    s.add_argument("--to", required=True)
    s.add_argument("--count", type=int, default=1)
    s.add_argument("--mptcp", action="store_true")
    a = p.parse_args()
    return 0 if {"syn-data": syn_data}[a.cmd](a) else 1


if __name__ == "__main__":
    sys.exit(main())
