#!/usr/bin/env python3
"""UDP tools for the namespace tests: plain sockets, JSON results.

  echo --bind ADDR --port P [--port P2 ...]
      answers each datagram with: its first 8 bytes (the sender's sequence
      number), the count of datagrams this server has received from that
      sender (address and port; 8 bytes),
      then the rest of the datagram; from the socket it came to.
  call --to ADDR:PORT --rate N --size B --seconds S
      a call-like stream: N datagrams a second of B bytes, each numbered;
      reports what was sent, what the server got (its count in the last
      answer), the answers received, and the longest silence between two
      answers (the outage a cut caused).
  burst --to ADDR:PORT --count N --size B
      N datagrams of B bytes from N source ports, one at a time, each
      waiting for its answer (up to 2 s): answered, and bytes checked.
  mapping --to ADDR:PORT --to2 ADDR2:PORT2 --probe PORT
      RFC 4787 checks from one source port: the public address and port the
      server sees for two destinations (mapping), and whether answers from
      another port of a contacted address / from an address never contacted
      arrive (filtering). The server side is `reflect`.
  reflect --bind ADDR --port P --alt-port Q [--other ADDR2]
      answers each datagram with the sender's address and port as text,
      from port P, then from port Q (same address), then from ADDR2.
"""
import argparse, json, os, socket, struct, sys, time


def sockaddr(s):
    host, port = s.rsplit(":", 1)
    return host.strip("[]"), int(port)


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def echo(a):
    socks = []
    for p in a.port:
        s = socket.socket(family(a.bind), socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((a.bind, p))
        socks.append(s)
    import select
    # Counted per sender and per call (a call's datagrams share their
    # random padding): a flow socket that reuses a port an earlier flow had
    # at the concentrator must not add that flow's datagrams to a call's.
    count = {}
    while True:
        r, _, _ = select.select(socks, [], [])
        for s in r:
            data, peer = s.recvfrom(65535)
            if len(count) > 100000:
                count.clear()
            k = (peer, data[16:32])
            count[k] = count.get(k, 0) + 1
            s.sendto(data[:8] + struct.pack("!Q", count[k]) + data[16:], peer)


def call(a):
    host, port = sockaddr(a.to)
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.connect((host, port))
    s.setblocking(False)
    interval = 1.0 / a.rate
    start = time.monotonic()
    end = start + a.seconds
    nxt = start
    seq = 0
    got = set()
    server_count = 0
    last_rx = None
    max_gap = 0.0
    pad = os.urandom(max(0, a.size - 16))
    while True:
        now = time.monotonic()
        if now >= end + 1.0:
            break
        if now >= nxt and now < end:
            try:
                s.send(struct.pack("!QQ", seq, 0) + pad)
            except OSError:
                pass
            seq += 1
            nxt += interval
        try:
            while True:
                d = s.recv(65535)
                if len(d) >= 16 and d[16:] == pad:
                    n, c = struct.unpack("!QQ", d[:16])
                    got.add(n)
                    server_count = max(server_count, c)
                    t = time.monotonic()
                    if last_rx is not None and t < end:
                        max_gap = max(max_gap, t - last_rx)
                    last_rx = t
        except BlockingIOError:
            pass
        time.sleep(min(0.002, max(0.0, nxt - time.monotonic())))
    missing = [n for n in range(seq) if n not in got]
    print(json.dumps({"sent": seq, "server_got": server_count, "answers": len(got),
                      "lost_up": seq - server_count, "lost_down": server_count - len(got),
                      "max_gap_ms": round(max_gap * 1000, 1),
                      "unanswered_ms": [round(n * interval * 1000) for n in missing[:20]]}))


def burst(a):
    host, port = sockaddr(a.to)
    ok = bad = 0
    ports = set()
    for i in range(a.count):
        s = socket.socket(family(host), socket.SOCK_DGRAM)
        s.settimeout(a.timeout)
        if a.bind:
            s.bind((a.bind, 0))
        s.connect((host, port))
        body = os.urandom(max(16, a.size))
        s.send(struct.pack("!Q", i) + body[8:])
        try:
            d = s.recv(65535)
            if d[:8] == struct.pack("!Q", i) and d[16:] == body[16:]:
                ok += 1
            else:
                bad += 1
        except OSError:
            pass
        ports.add(s.getsockname()[1])
        s.close()
    print(json.dumps({"queries": a.count, "answered": ok, "wrong": bad,
                      "source_ports": len(ports)}))
    return 0 if ok == a.count else 1


def reflect(a):
    fam = family(a.bind)
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((a.bind, a.port))
    alt = socket.socket(fam, socket.SOCK_DGRAM)
    alt.bind((a.bind, a.alt_port))
    other = None
    if a.other:
        other = socket.socket(family(a.other), socket.SOCK_DGRAM)
        other.bind((a.other, 0))
    while True:
        data, peer = s.recvfrom(65535)
        text = ("%s %d" % (peer[0], peer[1])).encode()
        s.sendto(b"main " + text, peer)
        if data.startswith(b"probe"):
            alt.sendto(b"alt " + text, peer)
            if other:
                other.sendto(b"other " + text, peer)


def mapping(a):
    h1, p1 = sockaddr(a.to)
    h2, p2 = sockaddr(a.to2)
    s = socket.socket(family(h1), socket.SOCK_DGRAM)
    s.bind(("", a.probe))
    s.settimeout(1.0)
    seen = {}
    for (h, p) in ((h1, p1), (h2, p2)):
        for _ in range(3):
            s.sendto(b"map", (h, p))
            try:
                d, peer = s.recvfrom(65535)
                if d.startswith(b"main "):
                    seen[h] = d[5:].decode()
                    break
            except OSError:
                pass
    kinds = set()
    s.sendto(b"probe", (h1, p1))
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        try:
            d, peer = s.recvfrom(65535)
            kinds.add(d.split(b" ")[0].decode())
        except OSError:
            pass
    out = {"seen_by_1": seen.get(h1), "seen_by_2": seen.get(h2),
           "same_mapping": seen.get(h1) is not None and seen.get(h1) == seen.get(h2),
           "answers": sorted(kinds)}
    print(json.dumps(out))


def pingpong(a):
    """count round trips of size bytes to an echo server, one at a time:
    p50/p99/max in microseconds, and how many got no answer in 1 s."""
    host, port = sockaddr(a.to)
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    if a.bind:
        s.bind((a.bind, 0))
    s.connect((host, port))
    s.settimeout(1.0)
    rtts, lost = [], 0
    pad = bytes(max(0, a.size - 16))
    for i in range(a.count):
        t0 = time.perf_counter_ns()
        s.send(struct.pack("!QQ", i, 0) + pad)
        try:
            while True:
                d = s.recv(65535)
                if d[:8] == struct.pack("!Q", i):
                    break
            rtts.append((time.perf_counter_ns() - t0) / 1000)
        except OSError:
            lost += 1
    rtts.sort()
    pick = lambda q: round(rtts[min(len(rtts) - 1, int(q * len(rtts)))], 1) if rtts else None
    print(json.dumps({"count": a.count, "lost": lost, "p50_us": pick(0.5), "p99_us": pick(0.99),
                      "max_us": round(rtts[-1], 1) if rtts else None}))


def dns(a):
    """count DNS queries (hN.example.test, type A) to a resolver, each from a
    new socket (a new source port), each waiting up to 2 s for its answer:
    answered when the reply has the query's id and the expected address."""
    from scapy.all import DNS, DNSQR
    host, port = sockaddr(a.to)
    ok = 0
    ports = set()
    for i in range(a.count):
        s = socket.socket(family(host), socket.SOCK_DGRAM)
        s.settimeout(2.0)
        s.connect((host, port))
        qid = (i * 7919 + 1) & 0xffff
        s.send(bytes(DNS(id=qid, rd=1, qd=DNSQR(qname="h%d.example.test" % i, qtype="A"))))
        try:
            r = DNS(s.recv(4096))
            if r.id == qid and r.ancount >= 1 and r.an.rdata == a.expect:
                ok += 1
        except OSError:
            pass
        ports.add(s.getsockname()[1])
        s.close()
    print(json.dumps({"queries": a.count, "answered": ok, "source_ports": len(ports)}))
    return 0 if ok == a.count else 1


def flood(a):
    """Datagrams of size bytes as fast as one socket sends them, for
    seconds."""
    host, port = sockaddr(a.to)
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.connect((host, port))
    body = bytes(a.size)
    t0 = time.monotonic()
    sent = 0
    while time.monotonic() - t0 < a.seconds:
        for _ in range(1000):
            try:
                s.send(body)
                sent += 1
            except OSError:
                pass
    dt = time.monotonic() - t0
    print(json.dumps({"sent": sent, "per_second": round(sent / dt) if dt else None}))


def hostile(a):
    """Hostile carrier datagrams from one real socket: garbage, a truncated
    HELLO, DATA and PING naming sessions that do not exist. Every answer
    must be a 48-byte RESET, never larger than what caused it."""
    host, port = sockaddr(a.to)
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.connect((host, port))
    s.setblocking(False)
    sent = 0
    smallest = 65535
    def put(b):
        nonlocal sent, smallest
        s.send(b)
        sent += 1
        smallest = min(smallest, len(b))
    for i in range(50):
        put(os.urandom(1 + i * 3))
    hello = bytes([0x31, 0, 0, 0]) + bytes(12)
    for i in range(20):
        put(hello + os.urandom(40))          # 56 bytes: a HELLO is 88
    for i in range(20):
        put(bytes([0x33, 0, 0, 0]) + os.urandom(4) + struct.pack("!Q", i + 1) + os.urandom(60))
    for i in range(20):
        put(bytes([0x34, 0, 0, 0]) + os.urandom(4) + struct.pack("!Q", i + 1) + os.urandom(36))
    replies, biggest, resets = 0, 0, 0
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        try:
            d = s.recv(65535)
            replies += 1
            biggest = max(biggest, len(d))
            resets += len(d) == 48 and d[0] == 0x36
        except (BlockingIOError, ConnectionRefusedError):
            time.sleep(0.01)
    print(json.dumps({"sent": sent, "replies": replies, "resets": resets,
                      "biggest_reply": biggest, "smallest_that_may_be_answered": 52}))
    return 0 if replies == resets and biggest <= 48 else 1


def replay(a):
    """Sends again, byte for byte (source address and port too), the carrier
    datagrams in a capture: each must be refused as seen before."""
    from scapy.all import rdpcap, IP, IPv6, UDP, send, conf
    conf.verb = 0
    n = 0
    for p in rdpcap(a.pcap):
        ip = p.getlayer(IP) or p.getlayer(IPv6)
        if ip is None or not p.haslayer(UDP) or p[UDP].dport != a.port:
            continue
        hdr = IP(src=ip.src, dst=ip.dst) if p.haslayer(IP) else IPv6(src=ip.src, dst=ip.dst)
        send(hdr / UDP(sport=p[UDP].sport, dport=a.port) / bytes(p[UDP].payload))
        n += 1
    print(json.dumps({"replayed": n}))
    return 0 if n else 1


def forgereset(a):
    """What an observer of a path can forge: RESETs for the session and a
    packet number it saw in a capture (the last datagram to --port), sent to
    the agent from the concentrator's address and port: the old 16-byte
    form (the header alone), the 48-byte one with made-up proofs and, with
    --ask, the RESET another concentrator sharing the TFO key answers that
    datagram with (a sibling box, for a session it does not have)."""
    from scapy.all import rdpcap, IP, IPv6, UDP, send, conf
    conf.verb = 0
    last = None
    for p in rdpcap(a.pcap):
        ip = p.getlayer(IP) or p.getlayer(IPv6)
        if ip is None or not p.haslayer(UDP) or p[UDP].dport != a.port:
            continue
        d = bytes(p[UDP].payload)
        if len(d) >= 16 and d[0] in (0x33, 0x34):
            last = (p, ip, d)
    if last is None:
        print(json.dumps({"error": "no DATA or PING in the capture"}))
        return 1
    p, ip, d = last
    hdr = bytes([0x36, 0, 0, 0]) + d[4:16]
    back = IP(src=ip.dst, dst=ip.src) if p.haslayer(IP) else IPv6(src=ip.dst, dst=ip.src)
    forged = [hdr, hdr + os.urandom(32)]
    asked = 0
    if a.ask:
        host, port = sockaddr(a.ask)
        s = socket.socket(family(host), socket.SOCK_DGRAM)
        s.settimeout(1.0)
        s.sendto(d, (host, port))
        try:
            r = s.recv(2048)
            if len(r) == 48 and r[0] == 0x36:
                forged.append(r)
                asked = 1
        except OSError:
            pass
    for payload in forged:
        send(back / UDP(sport=a.port, dport=p[UDP].sport) / payload)
    print(json.dumps({"sid": d[4:8].hex(), "pn": struct.unpack("!Q", d[8:16])[0],
                      "sent": len(forged), "asked_a_sibling": asked}))
    return 0 if asked or not a.ask else 1


def quic(a):
    """A UDP exchange with port 443: answered, or refused (ICMP port
    unreachable) as the agent does while QUIC goes to TCP."""
    host, port = sockaddr(a.to)
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.connect((host, port))
    s.settimeout(1.0)
    result = "silence"
    for _ in range(3):
        try:
            s.send(struct.pack("!QQ", 7, 0) + b"quic-ish")
            d = s.recv(65535)
            if d[:8] == struct.pack("!Q", 7):
                result = "answered"
                break
        except ConnectionRefusedError:
            result = "refused"
            break
        except OSError:
            pass
    print(json.dumps({"udp_443": result}))
    return 0 if result == a.expect else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("echo"); e.add_argument("--bind", required=True)
    e.add_argument("--port", type=int, action="append", required=True)
    c = sub.add_parser("call"); c.add_argument("--to", required=True)
    c.add_argument("--rate", type=int, default=50); c.add_argument("--size", type=int, default=200)
    c.add_argument("--seconds", type=float, default=6)
    b = sub.add_parser("burst"); b.add_argument("--to", required=True)
    b.add_argument("--count", type=int, default=100); b.add_argument("--size", type=int, default=64)
    b.add_argument("--timeout", type=float, default=2.0); b.add_argument("--bind")
    r = sub.add_parser("reflect"); r.add_argument("--bind", required=True)
    r.add_argument("--port", type=int, required=True); r.add_argument("--alt-port", type=int, required=True)
    r.add_argument("--other")
    m = sub.add_parser("mapping"); m.add_argument("--to", required=True)
    m.add_argument("--to2", required=True); m.add_argument("--probe", type=int, required=True)
    h = sub.add_parser("hostile"); h.add_argument("--to", required=True)
    pp = sub.add_parser("pingpong"); pp.add_argument("--to", required=True)
    pp.add_argument("--count", type=int, default=1000); pp.add_argument("--size", type=int, default=100)
    pp.add_argument("--bind")
    dn = sub.add_parser("dns"); dn.add_argument("--to", required=True)
    dn.add_argument("--count", type=int, default=100); dn.add_argument("--expect", required=True)
    fl = sub.add_parser("flood"); fl.add_argument("--to", required=True)
    fl.add_argument("--seconds", type=float, default=1.5); fl.add_argument("--size", type=int, default=64)
    rp = sub.add_parser("replay"); rp.add_argument("--pcap", required=True)
    fr = sub.add_parser("forgereset"); fr.add_argument("--pcap", required=True)
    fr.add_argument("--port", type=int, default=5124)
    fr.add_argument("--ask", help="HOST:PORT of a sibling concentrator to ask for a RESET")
    rp.add_argument("--port", type=int, default=5124)
    q = sub.add_parser("quic"); q.add_argument("--to", required=True)
    q.add_argument("--expect", choices=["answered", "refused"], required=True)
    a = ap.parse_args()
    return {"echo": echo, "call": call, "burst": burst, "reflect": reflect,
            "mapping": mapping, "hostile": hostile, "replay": replay, "forgereset": forgereset,
            "quic": quic, "flood": flood, "dns": dns, "pingpong": pingpong}[a.cmd](a) or 0


if __name__ == "__main__":
    sys.exit(main())
