#!/usr/bin/env python3
"""Writes pcaps/hostile-html.pcap: markup in DNS names, for `report html` (stdlib only).

usage: hostile_html.py [OUTFILE]     (default: hostile-html.pcap beside this script)

A resolver would never pass these names, but the wire carries any bytes in a label, and the
monitor records what was sent. NFLOG (link type 239), built with synth.py's helpers, fixed
timestamps from 2024-01-01T00:00:00Z over 40 minutes, documentation addresses only:

- uid 65534 (nobody) asks 14 names each under three registered domains whose own label is
  markup: `<img src=x onerror=alert(1)>.example`, `<script>alert(1)</script>.example` and
  `x"><svg onload=alert(1)>.example`; each name's first label is 32 base32 characters, so
  the default [dns] rules (10 encoded-looking unique names in an hour) raise a dns_tunnel
  alert per domain, and the names reach the dns, dns_samples and alerts tables.
- uid 0 (root) sends TSO-size TCP (64,000 bytes each by the IP header, cut at 128 bytes as
  the ruleset logs them) in three bursts: 1 MB, then 5 MB (a volume alert at the default
  4 MiB in 10 minutes), then 1 MB: a chart with several minutes and an alert on its axis.
"""
import base64
import hashlib
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from synth import BASE_TS, DNS4, WEB4, A4, B4, big_tcp4, ipv4, nflog, udp  # noqa: E402

HOSTILE = [
    b"<img src=x onerror=alert(1)>",
    b"<script>alert(1)</script>",
    b'x"><svg onload=alert(1)>',
]


def query(txid, labels):
    q = b"".join(bytes([len(l)]) + l for l in labels) + b"\0"
    return struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", 1, 1)


def label(n):
    """32 base32 characters from n: encoded-looking, distinct for distinct n."""
    return base64.b32encode(hashlib.sha256(b"hostile-html %d" % n).digest())[:32].lower()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "hostile-html.pcap")
    records = []  # (microseconds after BASE_TS, NFLOG record)
    txid = 0
    for d, domain in enumerate(HOSTILE):
        for i in range(14):
            txid += 1
            pkt = ipv4(B4, DNS4, udp(50000 + txid, 53, query(txid, [label(txid), domain, b"example"])), ident=txid)
            # Domain d asks from minute 2 + 10 d, one name every 20 s.
            records.append(((2 + 10 * d) * 60_000_000 + i * 20_000_000, nflog(pkt, uid=65534, prefix="exfilmon-dns")))
    seq = 1
    for minute, megabytes in [(1, 1), (12, 5), (33, 1)]:
        for i in range(megabytes * 1_000_000 // 64_000 + 1):
            pkt = big_tcp4(A4, WEB4, 40100 + minute, 443, seq, 64_000, seq & 0xFFFF)
            seq += 64_000
            records.append((minute * 60_000_000 + i * 500_000, nflog(pkt, uid=0, snaplen=128)))
    records.sort(key=lambda r: r[0])
    blob = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 239)]
    for t, data in records:
        blob.append(struct.pack("<IIII", BASE_TS + t // 1_000_000, t % 1_000_000, len(data), len(data)) + data)
    with open(out, "wb") as f:
        f.write(b"".join(blob))


if __name__ == "__main__":
    main()
