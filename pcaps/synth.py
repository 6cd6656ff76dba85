#!/usr/bin/env python3
"""Writes the synthetic capture fixtures of pcaps/ (stdlib only, deterministic).

usage: synth.py [OUTDIR]        (default: the directory of this script)

Every byte is built here with `struct`: same input -> same files (fixed
timestamps from 2024-01-01T00:00:00Z, fixed addresses from the documentation
ranges 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32 -
they are only bytes in a file; nothing is sent anywhere). All IPv4/TCP/UDP/
ICMP/ICMPv6 checksums are correct (computed over the full, untruncated packet).

Files (link type numbers are LINKTYPE_* from tcpdump.org):
  eth-vlan.pcap        1 (EN10MB): untagged, 802.1Q (VLAN 10) and one QinQ
                       (0x88a8 VLAN 100 + 0x8100 VLAN 20) frames, one ARP
                       (non-IP, must be skipped), short frames padded to 60
                       bytes (frame length != IP length).
  sll.pcap           113 (LINUX_SLL, cooked v1). BIG-ENDIAN pcap header
                       (magic a1 b2 c3 d4 on disk) - byte-swapped reader path.
  sll2.pcap          276 (LINUX_SLL2, cooked v2).
  raw.pcap           101 (RAW): IPv4 and IPv6 mixed, version from 1st nibble.
  ipv4.pcap          228 (IPV4). NANOSECOND pcap (magic a1 b2 3c 4d).
  ipv6.pcap          229 (IPV6): hop-by-hop + destination-options extension
                       headers before TCP/UDP/ICMPv6, one ICMPv6 echo request.
  truncated.pcap     101, snaplen 96: IP length fields 1500/60000/1480/63040/
                       1428 but only 96 bytes captured (TSO-style super
                       packets). Bytes must come from the IP length field.
  nflog-synth.pcap   239 (NFLOG): header {family u8, version u8 = 0, res_id
                       u16 BE = 7}, then TLVs {len u16 LE, type u16 LE} (host
                       order, len includes the 4-byte TLV header, padded to
                       4), values big-endian. PACKET_HDR, PREFIX, OUTDEV,
                       UID, GID, SEQ/SEQ_GLOBAL on some, PAYLOAD; payloads
                       cut at 128 bytes like `snaplen 128`; uids 0, 1000,
                       1001, 65534 and packets without UID (kernel-made).
  sample.pcapng      pcapng (SHB + IDB(link type 101, if_name, if_tsresol=6)
                       + EPBs, one EPB with an opt_comment): the very same
                       packets and timestamps as raw.pcap.
  damaged.pcap       101: 3 good records, then one with incl_len 0x7fffffff.
  truncated-tail.pcap  101: 4 good records, then one cut in the middle
                       (header says 1240 bytes, 100 present).
"""
import os
import struct
import sys

BASE_TS = 1704067200  # 2024-01-01T00:00:00Z

# ----------------------------------------------------------------- addresses

def ip4(s):
    return bytes(int(x) for x in s.split("."))


def ip6(s):
    import ipaddress
    return ipaddress.IPv6Address(s).packed


A4 = ip4("192.0.2.10")        # "workstation" A
B4 = ip4("192.0.2.11")        # "workstation" B
WEB4 = ip4("198.51.100.20")
DNS4 = ip4("198.51.100.53")
VPN4 = ip4("198.51.100.99")
ICMP4 = ip4("203.0.113.7")
A6 = ip6("2001:db8::10")
B6 = ip6("2001:db8::11")
WEB6 = ip6("2001:db8:1::20")
DNS6 = ip6("2001:db8:1::53")

MAC_SRC = bytes.fromhex("020000000a01")
MAC_DST = bytes.fromhex("020000000a02")

# ----------------------------------------------------------------- checksums

def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def pseudo4(src, dst, proto, length):
    return src + dst + struct.pack("!BBH", 0, proto, length)


def pseudo6(src, dst, proto, length):
    return src + dst + struct.pack("!I3xB", length, proto)


def pattern(n, seed=0):
    return bytes(((i * 31 + seed * 7 + (i >> 8)) & 0xFF) for i in range(n))

# ------------------------------------------------------------ L4 builders
# Each returns (proto, l4_bytes_without_checksum_fn): we need the pseudo
# header, so L4 is finalised by the IP builder via `finish(src, dst, pseudo)`.

class L4:
    def __init__(self, proto, build):
        self.proto = proto
        self.build = build  # build(pseudo_fn) -> bytes


def tcp(sport, dport, seq, ack, flags, payload=b"", options=b"", win=64240):
    flagbits = {"F": 1, "S": 2, "R": 4, "P": 8, "A": 16}
    fl = 0
    for c in flags:
        fl |= flagbits[c]
    assert len(options) % 4 == 0
    off = (20 + len(options)) // 4

    def build(pseudo):
        hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off << 4, fl, win, 0, 0) + options
        seg = hdr + payload
        ck = csum(pseudo(6, len(seg)) + seg)
        return seg[:16] + struct.pack("!H", ck) + seg[18:]
    return L4(6, build)


def udp(sport, dport, payload):
    def build(pseudo):
        ln = 8 + len(payload)
        seg = struct.pack("!HHHH", sport, dport, ln, 0) + payload
        ck = csum(pseudo(17, ln) + seg) or 0xFFFF
        return seg[:6] + struct.pack("!H", ck) + seg[8:]
    return L4(17, build)


def icmp_echo(ident, seq, payload):
    def build(pseudo):
        msg = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
        return msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]
    return L4(1, build)


def icmp6_echo(ident, seq, payload):
    def build(pseudo):
        msg = struct.pack("!BBHHH", 128, 0, 0, ident, seq) + payload
        ck = csum(pseudo(58, len(msg)) + msg)
        return msg[:2] + struct.pack("!H", ck) + msg[4:]
    return L4(58, build)


MSS_OPT = struct.pack("!BBH", 2, 4, 1460) + b"\x01\x01\x04\x02"  # MSS, NOP, NOP, SACK-perm
# Linux SYN options: MSS, SACK-perm, timestamps, NOP, window scale 7 (20 bytes)
LINUX_SYN_OPT = struct.pack("!BBH", 2, 4, 1460) + b"\x04\x02" + struct.pack("!BBII", 8, 10, 1, 0) + b"\x01\x03\x03\x07"
PING_PAYLOAD = struct.pack("!II", 0x65920080, 0) + bytes(range(0x10, 0x10 + 48))  # 56 bytes


def dns_query(txid, name, qtype):
    qt = {"A": 1, "AAAA": 28, "TXT": 16}[qtype]
    q = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", qt, 1)

# ------------------------------------------------------------ IP builders

def ipv4(src, dst, l4, ident=0x1000, ttl=64):
    seg = l4.build(lambda p, n: pseudo4(src, dst, p, n))
    ln = 20 + len(seg)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, ln, ident, 0x4000, ttl, l4.proto, 0, src, dst)
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + seg


def ext_hdr(next_hdr, options6):
    """hop-by-hop / destination options header, 8 bytes: 6 bytes of options."""
    assert len(options6) == 6
    return bytes([next_hdr, 0]) + options6


PADN4 = b"\x01\x04\x00\x00\x00\x00"           # PadN, 4 bytes of padding
ROUTER_ALERT = b"\x05\x02\x00\x00\x01\x00"    # Router Alert (MLD) + PadN(0)


def ipv6(src, dst, l4, hlim=64, hbh=None, dstopts=None):
    seg = l4.build(lambda p, n: pseudo6(src, dst, p, n))
    chain = []  # (type, opts)
    if hbh is not None:
        chain.append((0, hbh))
    if dstopts is not None:
        chain.append((60, dstopts))
    exts = b""
    for i, (_, opts) in enumerate(chain):
        nxt = chain[i + 1][0] if i + 1 < len(chain) else l4.proto
        exts += ext_hdr(nxt, opts)
    first = chain[0][0] if chain else l4.proto
    plen = len(exts) + len(seg)
    return struct.pack("!IHBB16s16s", 0x60000000, plen, first, hlim, src, dst) + exts + seg


def ip_len(pkt: bytes) -> int:
    """bytes on the wire according to the IP header."""
    v = pkt[0] >> 4
    if v == 4:
        return struct.unpack("!H", pkt[2:4])[0]
    if v == 6:
        return 40 + struct.unpack("!H", pkt[4:6])[0]
    raise ValueError("not IP")

# ------------------------------------------------------------ packet sets

def mixed_packets():
    """The common handful: v4 + v6, TCP, UDP (DNS + other), ICMP echo."""
    return [
        ipv4(A4, WEB4, tcp(40000, 443, 1000, 0, "S", options=MSS_OPT), ident=0x1001),
        ipv4(A4, WEB4, tcp(40000, 443, 1001, 5001, "PA", pattern(1200, 1)), ident=0x1002),
        ipv4(A4, DNS4, udp(53001, 53, dns_query(0x1111, "www.example.com", "A")), ident=0x1003),
        ipv4(B4, ICMP4, icmp_echo(0x0042, 1, PING_PAYLOAD), ident=0x2001),
        ipv6(A6, WEB6, tcp(40001, 443, 7000, 0, "S", options=MSS_OPT)),
        ipv6(A6, WEB6, tcp(40001, 443, 7001, 9001, "PA", pattern(700, 2))),
        ipv6(A6, DNS6, udp(53002, 53, dns_query(0x2222, "www.example.com", "AAAA"))),
        ipv6(B6, WEB6, icmp6_echo(0x0043, 1, PING_PAYLOAD)),
        ipv4(B4, VPN4, udp(5000, 40404, pattern(300, 3)), ident=0x2002),
    ]


def v6_ext_packets():
    return [
        ipv6(A6, WEB6, tcp(40010, 443, 100, 0, "S", options=MSS_OPT), hbh=PADN4, dstopts=PADN4),
        ipv6(A6, WEB6, tcp(40010, 443, 101, 501, "PA", pattern(1000, 4)), hbh=PADN4, dstopts=PADN4),
        ipv6(A6, DNS6, udp(53003, 53, dns_query(0x3333, "files.example.org", "AAAA")), hbh=PADN4, dstopts=PADN4),
        ipv6(A6, DNS6, udp(53004, 53, dns_query(0x3334, "mail.example.org", "A")), dstopts=PADN4),
        ipv6(B6, WEB6, icmp6_echo(0x0044, 1, PING_PAYLOAD), hbh=ROUTER_ALERT),
        ipv6(B6, WEB6, icmp6_echo(0x0044, 2, PING_PAYLOAD)),
        ipv6(B6, DNS6, udp(5001, 40404, pattern(250, 5)), hbh=PADN4),
    ]


def big_tcp4(src, dst, sport, dport, seq, total_len, ident):
    return ipv4(src, dst, tcp(sport, dport, seq, 1, "A", pattern(total_len - 40, seq & 0xFF)), ident=ident)


def big_tcp6(src, dst, sport, dport, seq, total_len):
    return ipv6(src, dst, tcp(sport, dport, seq, 1, "A", pattern(total_len - 60, seq & 0xFF)))

# ------------------------------------------------------------ link layers

def eth(pkt, vlan=None, qinq=None, ethertype=None):
    et = ethertype if ethertype is not None else (0x0800 if pkt[0] >> 4 == 4 else 0x86DD)
    tags = b""
    if qinq is not None:
        tags += struct.pack("!HH", 0x88A8, qinq)
    if vlan is not None:
        tags += struct.pack("!HH", 0x8100, vlan)
    frame = MAC_DST + MAC_SRC + tags + struct.pack("!H", et) + pkt
    if len(frame) < 60:
        frame += b"\0" * (60 - len(frame))  # Ethernet minimum (no FCS)
    return frame


def arp_request():
    return (struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + MAC_SRC + A4 + b"\0" * 6 + ip4("192.0.2.1"))


def sll(pkt):
    proto = 0x0800 if pkt[0] >> 4 == 4 else 0x86DD
    # packet type 4 = outgoing, ARPHRD_ETHER, 6-byte address padded to 8
    return struct.pack("!HHH8sH", 4, 1, 6, MAC_SRC, proto) + pkt


def sll2(pkt, ifindex=2):
    proto = 0x0800 if pkt[0] >> 4 == 4 else 0x86DD
    return struct.pack("!HHIHBB8s", proto, 0, ifindex, 1, 4, 6, MAC_SRC) + pkt


NFULA_PACKET_HDR, NFULA_MARK, NFULA_IFINDEX_OUTDEV = 1, 2, 5
NFULA_PAYLOAD, NFULA_PREFIX, NFULA_UID, NFULA_SEQ, NFULA_SEQ_GLOBAL, NFULA_GID = 9, 10, 11, 12, 13, 14


def tlv(t, value):
    ln = 4 + len(value)
    return struct.pack("<HH", ln, t) + value + b"\0" * ((-ln) % 4)


def nflog(pkt, uid=None, gid=None, prefix="", group=7, snaplen=None, seq=None, mark=None):
    v4 = pkt[0] >> 4 == 4
    body = tlv(NFULA_PACKET_HDR, struct.pack("!HBx", 0x0800 if v4 else 0x86DD, 3))  # hook 3 = LOCAL_OUT
    body += tlv(NFULA_PREFIX, prefix.encode() + b"\0")
    body += tlv(NFULA_IFINDEX_OUTDEV, struct.pack("!I", 2))
    if mark is not None:
        body += tlv(NFULA_MARK, struct.pack("!I", mark))
    if uid is not None:
        body += tlv(NFULA_UID, struct.pack("!I", uid))
        body += tlv(NFULA_GID, struct.pack("!I", uid if gid is None else gid))
    if seq is not None:
        body += tlv(NFULA_SEQ, struct.pack("!I", seq))
        body += tlv(NFULA_SEQ_GLOBAL, struct.pack("!I", seq + 1000))
    body += tlv(NFULA_PAYLOAD, pkt if snaplen is None else pkt[:snaplen])
    return struct.pack("!BBH", 2 if v4 else 10, 0, group) + body

# ------------------------------------------------------------ file writers

def stamps(n, step_us=250_000):
    """fixed, strictly increasing (sec, usec) timestamps."""
    out = []
    for i in range(n):
        t = i * step_us + 123 * i
        out.append((BASE_TS + t // 1_000_000, t % 1_000_000))
    return out


def write_pcap(path, linktype, frames, snaplen=262144, big_endian=False, nano=False, orig_lens=None):
    e = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for i, ((sec, usec), data) in enumerate(zip(stamps(len(frames)), frames)):
        frac = usec * 1000 + i * 7 if nano else usec
        orig = orig_lens[i] if orig_lens else len(data)
        cap = data[:snaplen]
        out.append(struct.pack(e + "IIII", sec, frac, len(cap), orig) + cap)
    blob = b"".join(out)
    with open(path, "wb") as f:
        f.write(blob)
    return blob


def pcapng_block(btype, body):
    body += b"\0" * ((-len(body)) % 4)
    ln = 12 + len(body)
    return struct.pack("<II", btype, ln) + body + struct.pack("<I", ln)


def pcapng_opt(code, value):
    return struct.pack("<HH", code, len(value)) + value + b"\0" * ((-len(value)) % 4)


def write_pcapng(path, linktype, frames, snaplen=262144):
    shb = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
    shb += pcapng_opt(4, b"exfilmon pcaps/synth.py") + pcapng_opt(0, b"")
    out = [pcapng_block(0x0A0D0D0A, shb)]
    idb = struct.pack("<HHI", linktype, 0, snaplen)
    idb += pcapng_opt(2, b"raw0") + pcapng_opt(9, bytes([6])) + pcapng_opt(0, b"")
    out.append(pcapng_block(1, idb))
    for i, ((sec, usec), data) in enumerate(zip(stamps(len(frames)), frames)):
        ts = sec * 1_000_000 + usec
        body = struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data))
        body += data + b"\0" * ((-len(data)) % 4)
        if i == 2:
            body += pcapng_opt(1, b"DNS query, comment option on an EPB") + pcapng_opt(0, b"")
        out.append(pcapng_block(6, body))
    with open(path, "wb") as f:
        f.write(b"".join(out))

# ------------------------------------------------------------ main

def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    P = lambda name: os.path.join(outdir, name)
    mixed = mixed_packets()

    # eth-vlan.pcap: untagged / 802.1Q / QinQ, one ARP
    frames = [
        eth(mixed[0]),
        eth(mixed[1], vlan=10),
        eth(mixed[2], vlan=10),
        eth(arp_request(), ethertype=0x0806),
        eth(mixed[3]),
        eth(mixed[4], vlan=10),
        eth(mixed[5], qinq=100, vlan=20),
        eth(mixed[6], vlan=(5 << 13) | 10),   # PCP 5, VLAN 10
        eth(mixed[7]),
        eth(mixed[8], qinq=100, vlan=20),
    ]
    write_pcap(P("eth-vlan.pcap"), 1, frames)

    write_pcap(P("sll.pcap"), 113, [sll(p) for p in mixed], big_endian=True)
    write_pcap(P("sll2.pcap"), 276, [sll2(p) for p in mixed])
    write_pcap(P("raw.pcap"), 101, mixed)
    write_pcap(P("ipv4.pcap"), 228, [p for p in mixed if p[0] >> 4 == 4], nano=True)
    write_pcap(P("ipv6.pcap"), 229, v6_ext_packets())

    # truncated.pcap: snaplen 96, IP length says much more
    trunc = [
        ipv4(A4, WEB4, tcp(40020, 443, 1, 0, "S", options=LINUX_SYN_OPT), ident=0x3001),
        big_tcp4(A4, WEB4, 40020, 443, 2, 1500, 0x3002),
        big_tcp4(A4, WEB4, 40020, 443, 1462, 60000, 0x3003),
        big_tcp6(A6, WEB6, 40021, 443, 5000, 1480),
        big_tcp6(A6, WEB6, 40021, 443, 6420, 63040),
        ipv4(B4, VPN4, udp(5000, 40404, pattern(1400, 6)), ident=0x3004),
    ]
    write_pcap(P("truncated.pcap"), 101, trunc, snaplen=96, orig_lens=[len(p) for p in trunc])

    # nflog-synth.pcap
    n = [
        nflog(mixed[0], uid=1000, seq=1),
        nflog(big_tcp4(A4, WEB4, 40030, 443, 10, 32000, 0x4001), uid=1000, snaplen=128, seq=2),
        nflog(big_tcp4(A4, WEB4, 40030, 443, 31970, 1500, 0x4002), uid=1000, snaplen=128, seq=3),
        nflog(ipv4(B4, DNS4, udp(53010, 53, dns_query(0x4444, "nbswy3dpeb3w64tmmqqq.c2.example.net", "TXT")), ident=0x4003),
              uid=1001, gid=100, prefix="exfilmon-dns", seq=4),
        nflog(ipv6(B6, DNS6, udp(53011, 53, dns_query(0x4445, "onxw2zlsfzsxg5a.c2.example.net", "AAAA"))),
              uid=1001, gid=100, prefix="exfilmon-dns", seq=5),
        nflog(mixed[3], uid=0, seq=6),
        nflog(ipv6(B6, WEB6, icmp6_echo(0x0045, 1, pattern(1000, 7))), uid=1001, gid=100, snaplen=128, seq=7),
        nflog(ipv4(A4, WEB4, tcp(40031, 443, 9, 0, "R", win=0), ident=0), seq=8),   # kernel RST: no UID
        nflog(big_tcp6(A6, WEB6, 40032, 443, 77, 20040), uid=1000, snaplen=128, seq=9, mark=0x2a),
        nflog(ipv4(A4, VPN4, udp(5002, 40404, pattern(100, 8)), ident=0x4004), uid=65534, gid=65534, seq=10),
        nflog(ipv6(A6, WEB6, tcp(40033, 443, 1, 1, "FA")), prefix="", seq=11),      # time-wait: no UID
    ]
    write_pcap(P("nflog-synth.pcap"), 239, n)

    write_pcapng(P("sample.pcapng"), 101, mixed)

    # damaged.pcap: 3 good records then an absurd incl_len
    good = write_pcap(P("damaged.pcap"), 101, mixed[:3])
    bad = struct.pack("<IIII", BASE_TS + 10, 0, 0x7FFFFFFF, 0x7FFFFFFF) + pattern(32, 9)
    with open(P("damaged.pcap"), "wb") as f:
        f.write(good + bad)

    # truncated-tail.pcap: 4 good records then one cut in the middle
    good = write_pcap(P("truncated-tail.pcap"), 101, mixed[:4])
    last = mixed[1]  # 1240 bytes
    cut = struct.pack("<IIII", BASE_TS + 10, 0, len(last), len(last)) + last[:100]
    with open(P("truncated-tail.pcap"), "wb") as f:
        f.write(good + cut)


if __name__ == "__main__":
    main()
