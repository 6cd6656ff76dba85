#!/usr/bin/env python3
"""Writes pcaps/many-hosts.pcap: an Ethernet capture (link type 1) of the kind public traces
are, with hundreds of hosts and no uid, for the replay determinism test (tests/determinism.rs).

usage: hosts.py [OUT]        (default: many-hosts.pcap beside this script)

Stdlib and synth.py's builders only, deterministic (a fixed linear congruential generator, fixed timestamps from
2024-03-01T00:00:00Z): same script, same bytes. 320 senders in 10.20.0.0/16 over three
minutes: TCP to a few dozen servers (some with 60 KB IP lengths, TSO-style, captured cut to
96 bytes so the file stays small), DNS queries with per-host names under a dozen domains, and
ICMP echo. Three senders push several MB so volume alerts fire. Addresses are only bytes in a
file; nothing is sent anywhere.
"""
import os
import struct
import sys

from synth import big_tcp4, dns_query, eth, icmp_echo, ipv4, tcp, udp

BASE_TS = 1709251200  # 2024-03-01T00:00:00Z
SNAP = 96


class Lcg:
    def __init__(self, seed):
        self.x = seed

    def next(self, n):
        self.x = (self.x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        return (self.x >> 33) % n


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "many-hosts.pcap")
    rng = Lcg(20240301)
    hosts = [bytes([10, 20, 1 + i // 200, 1 + i % 200]) for i in range(320)]
    servers = [bytes([203, 0, 113, 1 + i]) for i in range(40)]
    resolver = bytes([10, 20, 0, 53])
    domains = ["example.com", "example.net", "example.org", "cdn.example", "mail.example", "corp.example",
               "updates.example", "api.example", "files.example", "shop.example", "news.example", "tv.example"]
    records = []
    for t in range(0, 180_000_000, 60_000):  # 3,000 slots over three minutes
        host = rng.next(len(hosts))
        src = hosts[host]
        kind = rng.next(10)
        if kind < 6:
            dst = servers[rng.next(len(servers))]
            big = rng.next(4) == 0
            ip = big_tcp4(src, dst, 40000 + host, 443, t, 60040, 1) if big else ipv4(src, dst, tcp(40000 + host, 443, 1, 1, "PA", b"x" * 8))
        elif kind < 9:
            name = "h%d-%d.%s" % (host, rng.next(50), domains[rng.next(len(domains))])
            ip = ipv4(src, resolver, udp(50000 + host, 53, dns_query(rng.next(65536), name, "A")))
        else:
            ip = ipv4(src, servers[0], icmp_echo(host, t // 1_000_000 % 65536, bytes(range(56))))
        records.append((t, eth(ip)))
    # Three heavy senders: 120 TSO-sized packets each within a minute, ~7 MB apiece.
    for h in (7, 150, 299):
        for k in range(120):
            t = 60_000_000 + h * 1000 + k * 400_000
            records.append((t, eth(big_tcp4(hosts[h], servers[h % 40], 41000, 22, k, 60040, 1))))
    records.sort(key=lambda r: r[0])
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAP, 1))
        for t, frame in records:
            cap = frame[:SNAP]
            f.write(struct.pack("<IIII", BASE_TS + t // 1_000_000, t % 1_000_000, len(cap), len(frame)))
            f.write(cap)


if __name__ == "__main__":
    main()
