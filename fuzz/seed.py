#!/usr/bin/env python3
"""Seeds each fuzz target's corpus from the repository's captures and configs, so the fuzzers
start from real frames instead of rediscovering pcap magic and IP headers byte by byte.

Usage: fuzz/seed.py  (writes fuzz/corpus/TARGET/seed-*; existing files are kept)
"""
import hashlib
import pathlib
import re
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
# LINKS order in fuzz_targets/decode.rs and pipeline.rs.
LINKS = {1: 0, 101: 1, 12: 1, 228: 2, 229: 3, 113: 4, 276: 5, 239: 6}
PIPELINE_SEED_MAX = 32 << 10


def put(target, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / ("seed-" + hashlib.sha1(data).hexdigest()[:16])).write_bytes(data)


def records(path):
    """(linktype, ts_us, data) of a legacy pcap; nothing for pcapng or damaged files."""
    b = path.read_bytes()
    if len(b) < 24:
        return
    magic = b[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        return
    nanos = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(e + "I", b[20:24])[0]
    at = 24
    while at + 16 <= len(b):
        sec, frac, incl, _ = struct.unpack(e + "IIII", b[at:at + 16])
        data = b[at + 16:at + 16 + incl]
        if len(data) < incl:
            return
        yield linktype, sec * 1_000_000 + (frac // 1000 if nanos else frac), data
        at += 16 + incl


def ip_of(linktype, data):
    if linktype == 239:
        rest = data[4:]
        while len(rest) >= 4:
            ln, kind = struct.unpack("<HH", rest[:4])
            if ln < 4:
                return b""
            if kind & 0x3FFF == 9:
                return rest[4:ln]
            rest = rest[(ln + 3) & ~3:]
        return b""
    if linktype == 1:
        at = 12
        while data[at:at + 2] in (b"\x81\x00", b"\x88\xa8"):
            at += 4
        return data[at + 2:]
    return data[{113: 16, 276: 20}.get(linktype, 0):]


def dns_payload(ip):
    """The transport payload of a packet to or from port 53, else None."""
    if len(ip) < 20:
        return None
    if ip[0] >> 4 == 4:
        proto, l4 = ip[9], ip[(ip[0] & 15) * 4:]
    elif ip[0] >> 4 == 6 and len(ip) >= 40:
        proto, l4 = ip[6], ip[40:]
    else:
        return None
    if len(l4) < 8 or 53 not in struct.unpack(">HH", l4[:4]):
        return None
    if proto == 17:
        return l4[8:]
    if proto == 6 and len(l4) >= 20:
        return l4[(l4[12] >> 4) * 4:]
    return None


def main():
    captures = sorted(ROOT.glob("pcaps/**/*.pcap*"))
    for path in captures:
        if path.stat().st_size <= 64 << 10:
            put("capture", path.read_bytes())
        pipeline = bytearray([len(path.name) & 1])
        first = True
        prev = 0
        for linktype, ts, data in records(path):
            if linktype not in LINKS:
                break
            link = LINKS[linktype]
            put("decode", bytes([link]) + data)
            if linktype == 239:
                put("nflog", data)
                # The same record as the kernel sends it: nlmsghdr (type NFNL_SUBSYS_ULOG << 8
                # | NFULNL_MSG_PACKET), then the body, padded to 4 bytes.
                msg = struct.pack("<IHHII", 16 + len(data), 4 << 8, 0, 0, 0) + data
                put("nflog", msg + b"\0" * (-len(msg) % 4))
            payload = dns_payload(ip_of(linktype, data))
            if payload:
                put("dns", payload)
            delta = (ts - prev) // 1000
            if first or not 0 <= delta < 65536:
                frame = bytes([link | 0x80]) + struct.pack("<q", ts)
            else:
                frame = bytes([link]) + struct.pack("<H", delta)
            frame += struct.pack("<H", len(data)) + data
            if len(pipeline) + len(frame) > PIPELINE_SEED_MAX:
                break
            pipeline += frame
            first, prev = False, ts
        if len(pipeline) > 1:
            put("pipeline", bytes(pipeline))
    # Audit lines from the parser's own tests, one event's worth per seed.
    for src in sorted(ROOT.glob("src/audit/*.rs")):
        lines = re.findall(rb'"(type=[A-Z_]+ msg=audit\(.*?)\\?"?,?$', src.read_bytes(), re.M)
        lines = [l.rstrip(b'\\ "') .replace(b'\\"', b'"') for l in lines]
        for i in range(0, len(lines), 4):
            put("audit", b"\n".join(lines[i:i + 4]) + b"\n")
    # Durations and time bounds as people write them; report filters, one per line.
    for text in ["10m", "1h30m", "2d", "100y", "500000000000y", "90s 500ms", "1w"]:
        put("duration", text.encode())
    for text in ["now", "recent", "today", "this-week", "this-year", "2h", "300000y", "2026-11-22",
                 "2026-11-22T08:00:00Z", "+262142-12-31T23:59:59+14:00"]:
        put("when", b"\0\0\0\x70" + text.encode())
    for text in ["", "2025-01-01\n\n1001", "30d\nnow\n", "\n2026-11-22T08:00:00Z\n0", "100y\n-262143-01-01"]:
        put("report", text.encode())
    put("config", (ROOT / "exfilmon.example.toml").read_bytes())
    put("config", b'db = "/tmp/x.db"\nuser = "nobody"\n[[volume]]\nwindow = "1s"\nbytes = "1B"\n')


if __name__ == "__main__":
    main()
