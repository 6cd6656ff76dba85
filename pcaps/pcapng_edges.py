#!/usr/bin/env python3
"""Writes pcapng-edges.pcapng: pcapng blocks a reader easily gets wrong (stdlib only,
deterministic; the packet builders, addresses and timestamps are synth.py's).

usage: pcapng_edges.py [OUTDIR]        (default: the directory of this script)

Blocks, in order (link type 101, raw IP; little-endian section):
  1. SPB before any IDB: no interface, so no link type - a record to count as
     unusable (pcapng_no_interface), never to decode.
  2. IDB, snaplen 262144.
  3. EPB: IPv4 TCP, 41 bytes (1 byte of payload), IP total length 0 as on a
     TSO/GRO super-packet, so the captured length is the byte count; padded
     to 44 with 0xEE bytes (non-zero, so padding read as data shows).
  4. SPB: the same packet, original length 41, padded to 44 the same way.
  5. EPB: IPv6 TCP, 61 bytes, payload length 0 (as a jumbogram), padded to 64.
  6. EPB naming interface 3, which was never described: unusable, as block 1.

Right: 3 packets, 41 + 41 + 61 = 143 bytes, 2 unusable records. Reading the
padding as packet data gives 44 + 44 + 64 = 152 bytes.
"""
import os
import struct
import sys

sys.dont_write_bytecode = True  # no __pycache__ next to the fixtures
from synth import A4, A6, BASE_TS, WEB4, WEB6, csum, ipv4, ipv6, pcapng_block, tcp

PAD = b"\xee"


def padded(data):
    return data + PAD * ((-len(data)) % 4)


def zero_length(pkt):
    """The packet with its IP length field 0 (IPv4 header checksum redone)."""
    if pkt[0] >> 4 == 4:
        hdr = pkt[:2] + b"\0\0" + pkt[4:10] + b"\0\0" + pkt[12:20]
        return hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:] + pkt[20:]
    return pkt[:4] + b"\0\0" + pkt[6:]


def epb(if_id, ts_us, data):
    body = struct.pack("<IIIII", if_id, ts_us >> 32, ts_us & 0xFFFFFFFF, len(data), len(data))
    return pcapng_block(6, body + padded(data))


def spb(data):
    return pcapng_block(3, struct.pack("<I", len(data)) + padded(data))


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    v4 = zero_length(ipv4(A4, WEB4, tcp(40050, 443, 1, 1, "PA", b"x"), ident=0x5001))
    v6 = zero_length(ipv6(A6, WEB6, tcp(40051, 443, 1, 1, "PA", b"y")))
    assert (len(v4), len(v6)) == (41, 61)
    ts = BASE_TS * 1_000_000
    blocks = [
        pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
        spb(v4),
        pcapng_block(1, struct.pack("<HHI", 101, 0, 262144)),
        epb(0, ts, v4),
        spb(v4),
        epb(0, ts + 250_000, v6),
        epb(3, ts + 500_000, v4),
    ]
    with open(os.path.join(outdir, "pcapng-edges.pcapng"), "wb") as f:
        f.write(b"".join(blocks))


if __name__ == "__main__":
    main()
