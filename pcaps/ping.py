#!/usr/bin/env python3
"""Minimal ICMP/ICMPv6 echo ("ping") for make.sh - the machine has no iputils.

usage: ping.py [-c COUNT] [-i INTERVAL] ADDRESS     (needs root: raw socket)
Sends COUNT echo requests with the usual Linux 56-byte payload, waits up to
2 s for each reply, exits 1 if any reply is missing.
"""
import argparse
import os
import select
import socket
import struct
import sys
import time


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-c", type=int, default=3)
    ap.add_argument("-i", type=float, default=0.2)
    ap.add_argument("addr")
    a = ap.parse_args()
    v6 = ":" in a.addr
    if v6:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        req_type, rep_type = 128, 129
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        req_type, rep_type = 8, 0
    ident = os.getpid() & 0xFFFF
    missing = 0
    for seq in range(1, a.c + 1):
        payload = struct.pack("!d", time.time()) + bytes(range(8, 56))
        hdr = struct.pack("!BBHHH", req_type, 0, 0, ident, seq)
        # the kernel fills in the ICMPv6 checksum (needs the pseudo-header)
        ck = 0 if v6 else csum(hdr + payload)
        s.sendto(struct.pack("!BBHHH", req_type, 0, ck, ident, seq) + payload, (a.addr, 0))
        deadline = time.time() + 2
        got = False
        while not got and time.time() < deadline:
            r, _, _ = select.select([s], [], [], max(0, deadline - time.time()))
            if not r:
                break
            pkt, _ = s.recvfrom(2048)
            icmp = pkt if v6 else pkt[(pkt[0] & 0x0F) * 4:]
            t, _, _, pid, sq = struct.unpack("!BBHHH", icmp[:8])
            got = t == rep_type and pid == ident and sq == seq
        if not got:
            missing += 1
            print("no reply for seq %d from %s" % (seq, a.addr), file=sys.stderr)
        if seq < a.c:
            time.sleep(a.i)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
