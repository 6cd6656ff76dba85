#!/usr/bin/env python3
"""Synthetic additions to the covert corpus (issue 16), stdlib only, deterministic.

usage: covert_synth.py [OUTDIR]      (default: pcaps/covert/ next to this script)

Each file is NFLOG (link type 239) as `tcpdump -i nflog:7` writes it from nft/exfilmon.nft:
UID/GID TLVs, prefix "out", addresses of pcaps/covert.sh (10.77.9.2 -> resolver 10.77.9.1,
fd77:9::2 -> fd77:9::1), sender exfil-cov (uid 1005 in users.json) unless said otherwise.
Timestamps start at 2024-01-01T00:00:00Z. The shapes copy what the issue measured on real
tools; the lab recordings of pcaps/covert.sh remain the reference for the tools themselves.

  suffix-dns.pcap   a tunnel behind a Windows search suffix: 1,229 unique 30-character hex
                    names `<hex>.<seq>.tunnel-domain.com.corp.local` (A), in 170 s
  short-dns.pcap    a short-lived dns2tcp-like session: 60 unique 10-character base64 names
                    `<b64>.d2t.shortlived.net` (TXT) within one second, after a few
                    ordinary lookups
  reverse-dns.pcap  data under a delegated reverse zone: 300 unique 40-character base32 names
                    `<b32>.<seq>.9.77.10.in-addr.arpa` (TXT), one every 0.3 s, between
                    ordinary PTR lookups
  frag6-dns.pcap    a tunnel that fragments over IPv6: 30 A queries with 50-character base32
                    names under frag-tunnel.net and 1,400 bytes of EDNS padding, each
                    sent as two IPv6 fragments (first 1,232 bytes of UDP, then the rest),
                    as a raw-socket sender can; one every 0.5 s
  icmp-padded.pcap  an ICMP tunnel behind the old 128-byte snaplen: 60 echo requests of 1,000
                    payload bytes, the first 100 constant and the rest random (the issue's
                    520 KB run, shortened to keep the file small), ten a second, logged
                    whole as the `exfilmon-icmp` rule does (snaplen 1500)
  dest-names.pcap   destination names (case 6): exfil-cov looks up files.exfil-drop.example
                    (the answer, 10.77.9.7, logged inbound with prefix "ans" and no uid as
                    the `answers` chain does), then sends 6.4 MB to 10.77.9.7:9100 in
                    64,000-byte TSO packets cut at 128 bytes; the volume alert must name it;
                    then a TLS connection to 10.77.9.8:443 whose ClientHello (logged whole,
                    as the `tls-hello` rule does) names upload.exfil-drop.example
  local-resolver.pcap  a host with a caching resolver (uid 991, like systemd-resolve) on
                    127.0.0.53: exfil-cov asks it for 40 base32 names under tun.test and
                    exfil-web for ordinary names (logged on loopback, prefix "lcl"); the
                    resolver asks 10.77.9.1 for each, 20 ms later, as itself
  benign-wide.pcap  wider benign traffic (none may alert): AD/SRV and GUID lookups under
                    corp.local, hosts under lan and home.arpa, a browser burst of 120 names
                    under 40 domains in 2 s each minute for 5 minutes, Debian/Ubuntu mirrors and snap/pip/npm names,
                    mail (MX, DKIM, DNSBL), NTP pool names, 200 reverse lookups (v4 and v6)
"""
import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import synth  # noqa: E402

BASE_US = synth.BASE_TS * 1_000_000
SRC4, DNS4 = synth.ip4("10.77.9.2"), synth.ip4("10.77.9.1")
SRC6, DNS6 = synth.ip6("fd77:9::2"), synth.ip6("fd77:9::1")
COV, WEB = 1005, 1006
TYPES = {"A": 1, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33, "NULL": 10}


def dns_query(txid, name, qtype):
    q = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".") if l) + b"\0"
    return struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", TYPES[qtype], 1)


class Capture:
    def __init__(self):
        self.records = []  # (ts_us, frame)
        self.txid = 0

    def ask(self, t_us, uid, name, qtype="A", v6=False, sport=40000):
        self.txid = (self.txid + 1) & 0xFFFF
        l4 = synth.udp(sport, 53, dns_query(self.txid, name, qtype))
        pkt = synth.ipv6(SRC6, DNS6, l4) if v6 else synth.ipv4(SRC4, DNS4, l4, ident=self.txid)
        self.add(t_us, pkt, uid)

    def add(self, t_us, pkt, uid, snaplen=None, prefix="out"):
        self.records.append((t_us, synth.nflog(pkt, uid=uid, prefix=prefix, snaplen=snaplen)))

    def write(self, path):
        out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 239)]
        for t, frame in sorted(self.records, key=lambda r: r[0]):
            t += BASE_US
            out.append(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame), len(frame)) + frame)
        with open(path, "wb") as f:
            f.write(b"".join(out))


def suffix_dns():
    c, rng = Capture(), random.Random(16_1)
    for i in range(1229):
        name = "%s.%x.tunnel-domain.com.corp.local" % ("".join(rng.choice("0123456789abcdef") for _ in range(30)), i)
        c.ask(i * 138_000, COV, name)
    return c


def short_dns():
    c, rng = Capture(), random.Random(16_3)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    for k, name in enumerate(("www.example.com", "shortlived.net", "www.shortlived.net")):
        c.ask(k * 300_000, COV, name)
    for i in range(60):
        name = "%s.d2t.shortlived.net" % "".join(rng.choice(alphabet) for _ in range(10))
        c.ask(2_000_000 + i * 16_500, COV, name, "TXT")
    return c


def reverse_dns():
    c, rng = Capture(), random.Random(16_4)
    for i in range(300):
        data = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(40))
        c.ask(i * 300_000, COV, "%s.%x.9.77.10.in-addr.arpa" % (data, i), "TXT")
        if i % 10 == 0:
            c.ask(i * 300_000 + 1000, COV, "%d.9.77.10.in-addr.arpa" % (i % 250 + 1), "PTR")
    return c


def frag6(pkt, ident, first_len=1232):
    """Splits an IPv6 packet without extension headers into two fragments."""
    hdr, l4 = pkt[:40], pkt[40:]
    out = []
    for off, chunk, more in ((0, l4[:first_len], 1), (first_len, l4[first_len:], 0)):
        frag = struct.pack("!BBHI", hdr[6], 0, off | more, ident)
        ip = bytearray(hdr)
        ip[4:6] = struct.pack("!H", len(frag) + len(chunk))
        ip[6] = 44
        out.append(bytes(ip) + frag + chunk)
    return out


def frag6_dns():
    c, rng = Capture(), random.Random(16_5)
    opt = b"\0" + struct.pack("!HHIH", 41, 1232, 0, 4 + 1400) + struct.pack("!HH", 12, 1400) + bytes(1400)
    for i in range(30):
        name = "%s.%x.frag-tunnel.net" % ("".join(rng.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(50)), i)
        msg = bytearray(dns_query(i + 1, name, "A") + opt)
        msg[10:12] = struct.pack("!H", 1)  # ARCOUNT
        pkt = synth.ipv6(SRC6, DNS6, synth.udp(40000 + i, 53, bytes(msg)))
        for k, f in enumerate(frag6(pkt, 0x16000 + i)):
            c.add(i * 500_000 + k * 10, f, COV)
    return c


def icmp_padded():
    c, rng = Capture(), random.Random(16_6)
    head = bytes(range(100))
    for seq in range(60):
        payload = head + bytes(rng.getrandbits(8) for _ in range(900))
        c.add(seq * 100_000, synth.ipv4(SRC4, DNS4, synth.icmp_echo(0x1606, seq, payload), ident=seq), COV)
    return c


def dns_answer(txid, name, addrs):
    """A response to dns_query(txid, name, "A"): the question, then one A record per address."""
    msg = bytearray(dns_query(txid, name, "A"))
    msg[2:4] = struct.pack("!H", 0x8180)
    msg[6:8] = struct.pack("!H", len(addrs))
    for a in addrs:
        msg += struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + synth.ip4(a)
    return bytes(msg)


def dest_names():
    c = Capture()
    name, drop = "files.exfil-drop.example", synth.ip4("10.77.9.7")
    c.add(0, synth.ipv4(SRC4, DNS4, synth.udp(41000, 53, dns_query(0x600, name, "A"))), COV)
    answer = synth.ipv4(DNS4, SRC4, synth.udp(53, 41000, dns_answer(0x600, name, ["10.77.9.7"])))
    c.records.append((9_000, synth.nflog(answer, prefix="ans")))
    for seq in range(100):
        pkt = synth.big_tcp4(SRC4, drop, 42000, 9100, seq * 63960, 64000, seq)
        c.add(100_000 + seq * 50_000, pkt, COV, snaplen=128)
    # A TLS connection to an address never resolved here: its ClientHello names it.
    upload = synth.ip4("10.77.9.8")
    hello = tls_client_hello("upload.exfil-drop.example")
    c.add(6_000_000, synth.ipv4(SRC4, upload, synth.tcp(43000, 443, 1, 1, "PA", hello), ident=900), COV, snaplen=2048)
    for seq in range(3):
        pkt = synth.big_tcp4(SRC4, upload, 43000, 443, 2000 + seq * 1400, 1440, 901 + seq)
        c.add(6_100_000 + seq * 10_000, pkt, COV, snaplen=128)
    return c


def tls_client_hello(name):
    """A TLS 1.3-style ClientHello record with a server_name extension."""
    sni = name.encode()
    entry = b"\0" + struct.pack("!H", len(sni)) + sni
    ext_sni = struct.pack("!HH", 0, len(entry) + 2) + struct.pack("!H", len(entry)) + entry
    ext_groups = struct.pack("!HHH", 10, 4, 2) + struct.pack("!H", 29)
    exts = ext_groups + ext_sni
    body = b"\x03\x03" + bytes(32) + b"\x20" + bytes(range(32)) + struct.pack("!H", 6) + bytes.fromhex("130113021303")
    body += b"\x01\x00" + struct.pack("!H", len(exts)) + exts
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def local_resolver():
    c, rng = Capture(), random.Random(16_7)
    lo, stub = synth.ip4("127.0.0.1"), synth.ip4("127.0.0.53")
    resolver = 991
    for i in range(40):
        t = i * 700_000
        data = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(45))
        for uid, name, qt in ((COV, "%s.%x.tun.test" % (data, i), "TXT"), (WEB, "www%d.example.com" % (i % 4), "A")):
            sport = 50000 + i * 2 + (uid == WEB)
            c.add(t, synth.ipv4(lo, stub, synth.udp(sport, 53, dns_query(i, name, qt))), uid, prefix="lcl")
            up = synth.ipv4(SRC4, DNS4, synth.udp(33000 + i * 2 + (uid == WEB), 53, dns_query(i + 7, name, qt)))
            c.add(t + 20_000, up, resolver)
    return c


def benign_wide():
    c, rng = Capture(), random.Random(16_2)
    t = 0
    for minute in range(5):
        t = minute * 60_000_000
        # Active Directory: DC locator SRV, GUID names under _msdcs, hosts, search suffix on
        # ordinary names (a Windows-style devolution: the name, then name + suffix).
        for k in range(12):
            guid = "%08x-%04x-%04x-%04x-%012x" % tuple(rng.getrandbits(b) for b in (32, 16, 16, 16, 48))
            c.ask(t + k * 90_000, WEB, "%s._msdcs.corp.local" % guid, "A")
            c.ask(t + k * 90_000 + 1000, WEB, "_ldap._tcp.dc._msdcs.corp.local", "SRV")
            c.ask(t + k * 90_000 + 2000, WEB, "ws%04d.corp.local" % rng.randrange(3000))
            c.ask(t + k * 90_000 + 3000, WEB, "nas%d.lan" % (k % 4))
            c.ask(t + k * 90_000 + 4000, WEB, "printer-%d.home.arpa" % (k % 3))
            for site in ("www.wikipedia.org", "outlook.office365.com"):
                c.ask(t + k * 90_000 + 5000, WEB, site)
                c.ask(t + k * 90_000 + 6000, WEB, site + ".corp.local")
        # A browser burst: 120 names under 40 registered domains within 2 s.
        for k in range(120):
            site = "site%d.com" % (k % 40) if k % 3 else "news%d.co.uk" % (k % 40)
            host = ("www", "static", "img", "api", "cdn", "fonts")[k % 6]
            c.ask(t + 5_000_000 + k * 16_000, WEB, "%s.%s" % (host, site), "A" if k % 2 else "AAAA")
        # Package updates.
        for k, name in enumerate(
            (
                "deb.debian.org",
                "security.debian.org",
                "archive.ubuntu.com",
                "security.ubuntu.com",
                "esm.ubuntu.com",
                "api.snapcraft.io",
                "pypi.org",
                "files.pythonhosted.org",
                "registry.npmjs.org",
                "ppa.launchpadcontent.net",
                "download.docker.com",
                "packages.microsoft.com",
            )
        ):
            c.ask(t + 20_000_000 + k * 30_000, WEB, name)
            c.ask(t + 20_000_000 + k * 30_000 + 500, WEB, name, "AAAA")
        # Mail: MX, DKIM, SPF TXT and DNSBL lookups of senders.
        for k in range(15):
            dom = "sender%d.com" % rng.randrange(200)
            c.ask(t + 30_000_000 + k * 200_000, WEB, dom, "MX")
            c.ask(t + 30_000_000 + k * 200_000 + 100, WEB, "selector%d._domainkey.%s" % (k % 2 + 1, dom), "TXT")
            c.ask(t + 30_000_000 + k * 200_000 + 200, WEB, dom, "TXT")
            ip = ".".join(str(rng.randrange(1, 255)) for _ in range(4))
            c.ask(t + 30_000_000 + k * 200_000 + 300, WEB, ip + ".zen.spamhaus.org")
        # NTP pool names, resolved again and again.
        for k in range(4):
            c.ask(t + 40_000_000 + k * 1000, WEB, "%d.debian.pool.ntp.org" % k)
            c.ask(t + 40_000_000 + k * 1000 + 500, WEB, "ntp.ubuntu.com")
        # Reverse lookups of real addresses (a log viewer resolving its peers).
        for k in range(20):
            if k % 2:
                a = [rng.randrange(256) for _ in range(4)]
                c.ask(t + 45_000_000 + k * 50_000, WEB, "%d.%d.%d.%d.in-addr.arpa" % tuple(reversed(a)), "PTR")
            else:
                nib = "".join(rng.choice("0123456789abcdef") for _ in range(16)) + "0000000000000000"
                name = ".".join(reversed("20010db8" + nib[8:])) + ".ip6.arpa"
                c.ask(t + 45_000_000 + k * 50_000, WEB, name, "PTR", v6=True)
    return c


SCENARIOS = {
    "suffix-dns": suffix_dns,
    "short-dns": short_dns,
    "reverse-dns": reverse_dns,
    "frag6-dns": frag6_dns,
    "icmp-padded": icmp_padded,
    "dest-names": dest_names,
    "local-resolver": local_resolver,
    "benign-wide": benign_wide,
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "covert")
    for name, build in SCENARIOS.items():
        build().write(os.path.join(out, name + ".pcap"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
