#!/usr/bin/env python3
"""DNS load for benches/dnsqueue.sh: SERVER N SECS WINDOW.

First N queries one at a time (latency of each: sendto to answer, 1 s timeout = lost), then
WINDOW queries in flight for SECS seconds (answers per second). Names are distinct
(q<i>.bench.example.test) so nothing is answered from a cache on this side. Prints
`key value` lines."""

import socket
import struct
import sys
import time


def query(i):
    name = b"".join(bytes([len(l)]) + l for l in (b"q%d" % i, b"bench", b"example", b"test")) + b"\0"
    return struct.pack(">HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 1, 1)


def main():
    server, n, secs, window = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((server, 53))
    s.settimeout(1.0)
    lat, lost = [], 0
    for i in range(n):
        t = time.perf_counter_ns()
        s.send(query(i))
        try:
            while struct.unpack(">H", s.recv(512)[:2])[0] != i & 0xFFFF:
                pass
            lat.append((time.perf_counter_ns() - t) / 1000)
        except socket.timeout:
            lost += 1
    lat.sort()
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")
    print("median_us %.0f" % pick(0.5))
    print("p99_us %.0f" % pick(0.99))
    print("max_us %.0f" % (lat[-1] if lat else float("nan")))
    print("seq_lost %d" % lost)

    s.settimeout(0.5)
    sent = answered = 0
    end = time.monotonic() + secs
    for _ in range(window):
        s.send(query(n + sent))
        sent += 1
    while time.monotonic() < end:
        try:
            s.recv(512)
            answered += 1
        except socket.timeout:
            # Lost in flight: put another in its place so the window stays full.
            pass
        s.send(query(n + sent))
        sent += 1
    print("qps %.0f" % (answered / secs))
    print("window_lost %d" % max(0, sent - window - answered))


main()
