#!/usr/bin/env python3
"""Computes pcaps/expected.json and the generated table in pcaps/README.md.

usage: expected.py [PCAPDIR]

Every fixture is parsed twice: by the small independent reader below (pcap
both byte orders / both resolutions, pcapng; link types 1, 101, 113, 228, 229,
239, 276) and by tshark. Packet counts, IP byte totals, per-uid, per-source
and per-destination totals and DNS query names must agree, else nothing is
written and the exit status is 1.

Byte rule: bytes of a packet = IPv4 total length, or IPv6 payload length +
40 - never the captured or the frame length (captures are cut at snaplen;
TSO super-packets are up to 64 KB; Ethernet frames are padded to 60 bytes).
"""
import collections
import ipaddress
import json
import os
import re
import struct
import subprocess
import sys

FIXTURES = [
    "nflog-sample.pcap", "nflog-synth.pcap", "eth-vlan.pcap", "sll.pcap", "sll2.pcap",
    "raw.pcap", "ipv4.pcap", "ipv6.pcap", "truncated.pcap", "sample.pcapng",
    "damaged.pcap", "truncated-tail.pcap",
]

WHAT = {
    "nflog-sample.pcap": "REAL tcpdump -i nflog:7 capture (exf-in netns): alice scp 5 MiB, bob dig/ssh/IPv6 TCP, root ping, kernel ND/MLD/ACKs without uid",
    "nflog-synth.pcap": "hand-built NFLOG TLVs: uids 0/1000/1001/65534 + no-UID packets, SEQ/MARK TLVs, payloads cut at 128 bytes, base32-looking DNS names",
    "eth-vlan.pcap": "Ethernet: untagged, 802.1Q, QinQ (0x88a8+0x8100), one ARP (non-IP), frames padded to 60 bytes",
    "sll.pcap": "Linux cooked v1, BIG-ENDIAN pcap header",
    "sll2.pcap": "Linux cooked v2",
    "raw.pcap": "raw IP, v4 and v6 mixed",
    "ipv4.pcap": "LINKTYPE_IPV4, NANOSECOND pcap magic",
    "ipv6.pcap": "LINKTYPE_IPV6: hop-by-hop + destination options before TCP/UDP/ICMPv6",
    "truncated.pcap": "snaplen 96, IP length 1500/60000/1480/63040 (TSO): bytes must come from the IP header",
    "sample.pcapng": "pcapng (SHB, IDB with options, EPBs, one EPB comment) of the raw.pcap packets",
    "damaged.pcap": "3 good records then incl_len 0x7fffffff: reader must stop with an error, not allocate 2 GB",
    "truncated-tail.pcap": "4 good records then a record cut in the middle",
}

NFULA_PAYLOAD, NFULA_UID, NFULA_GID, NFULA_PREFIX = 9, 11, 14, 10


class ReadError(Exception):
    pass

# ----------------------------------------------------------------- readers

def read_pcap(data):
    magic_le = struct.unpack("<I", data[:4])[0]
    if magic_le in (0xA1B2C3D4, 0xA1B23C4D):
        e = "<"
    elif struct.unpack(">I", data[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D):
        e = ">"
    else:
        raise ReadError("not a pcap file")
    magic, vmaj, vmin, _, _, snaplen, linktype = struct.unpack(e + "IHHiIII", data[:24])
    nano = magic == 0xA1B23C4D
    info = {"format": "pcap", "byte_order": "big" if e == ">" else "little",
            "ts_resolution": "ns" if nano else "us", "snaplen": snaplen, "linktype": linktype & 0xFFFF}
    recs, off, err = [], 24, None
    while off < len(data):
        if off + 16 > len(data):
            err = "record %d: header cut short" % (len(recs) + 1)
            break
        sec, frac, incl, orig = struct.unpack(e + "IIII", data[off:off + 16])
        if incl > max(snaplen, 262144):
            err = "record %d: incl_len %d larger than snaplen %d" % (len(recs) + 1, incl, snaplen)
            break
        if off + 16 + incl > len(data):
            err = "record %d: cut short (%d of %d bytes)" % (len(recs) + 1, len(data) - off - 16, incl)
            break
        ts = sec + frac / (1e9 if nano else 1e6)
        recs.append((ts, data[off + 16:off + 16 + incl], orig))
        off += 16 + incl
    return info, recs, err


def read_pcapng(data):
    off, recs, ifaces, err = 0, [], [], None
    info = {"format": "pcapng", "byte_order": "little"}
    while off < len(data):
        btype, blen = struct.unpack("<II", data[off:off + 8])
        if btype == 0x0A0D0D0A:
            if struct.unpack("<I", data[off + 8:off + 12])[0] != 0x1A2B3C4D:
                raise ReadError("big-endian pcapng not handled here")
        body = data[off + 8:off + blen - 4]
        if btype == 1:
            lt, _, snap = struct.unpack("<HHI", body[:8])
            ifaces.append(lt)
            info.setdefault("linktype", lt)
            info.setdefault("snaplen", snap)
            info["ts_resolution"] = "us"
        elif btype == 6:
            ifid, hi, lo, cap, orig = struct.unpack("<IIIII", body[:20])
            recs.append((((hi << 32) | lo) / 1e6, body[20:20 + cap], orig))
        off += blen
    return info, recs, err


def read_any(path):
    data = open(path, "rb").read()
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        return read_pcapng(data)
    return read_pcap(data)

# ----------------------------------------------------------------- decoding

def nflog_tlvs(rec):
    fam, ver, res = struct.unpack("!BBH", rec[:4])
    off, tl = 4, {}
    while off + 4 <= len(rec):
        ln, t = struct.unpack("<HH", rec[off:off + 4])
        if ln < 4:
            break
        tl[t & 0x3FFF] = rec[off + 4:off + ln]
        off += (ln + 3) & ~3
    return fam, res, tl


def l3_of(linktype, rec):
    """returns (ip_bytes_or_None, extra) where extra has uid/gid/prefix."""
    extra = {}
    if linktype in (101, 228, 229):
        return rec, extra
    if linktype == 1:
        et, off = struct.unpack("!H", rec[12:14])[0], 14
        while et in (0x8100, 0x88A8, 0x9100):
            et, off = struct.unpack("!H", rec[off + 2:off + 4])[0], off + 4
        return (rec[off:] if et in (0x0800, 0x86DD) else None), extra
    if linktype == 113:
        et = struct.unpack("!H", rec[14:16])[0]
        return (rec[16:] if et in (0x0800, 0x86DD) else None), extra
    if linktype == 276:
        et = struct.unpack("!H", rec[0:2])[0]
        return (rec[20:] if et in (0x0800, 0x86DD) else None), extra
    if linktype == 239:
        fam, res, tl = nflog_tlvs(rec)
        extra["group"] = res
        if NFULA_UID in tl:
            extra["uid"] = struct.unpack("!I", tl[NFULA_UID][:4])[0]
        if NFULA_GID in tl:
            extra["gid"] = struct.unpack("!I", tl[NFULA_GID][:4])[0]
        if NFULA_PREFIX in tl:
            extra["prefix"] = tl[NFULA_PREFIX].split(b"\0")[0].decode()
        return tl.get(NFULA_PAYLOAD), extra
    raise ReadError("link type %d not handled" % linktype)


def parse_ip(p):
    v = p[0] >> 4
    if v == 4:
        ihl = (p[0] & 15) * 4
        return {"v": 4, "len": struct.unpack("!H", p[2:4])[0], "proto": p[9],
                "src": str(ipaddress.IPv4Address(p[12:16])), "dst": str(ipaddress.IPv4Address(p[16:20])),
                "l4": p[ihl:]}
    if v == 6:
        nh, off = p[6], 40
        while nh in (0, 43, 60) and off + 8 <= len(p):
            nh, off = p[off], off + 8 * (p[off + 1] + 1)
        if nh == 44:
            nh, off = p[off], off + 8
        return {"v": 6, "len": 40 + struct.unpack("!H", p[4:6])[0], "proto": nh,
                "src": str(ipaddress.IPv6Address(p[8:24])), "dst": str(ipaddress.IPv6Address(p[24:40])),
                "l4": p[off:]}
    return None


QTYPES = {1: "A", 28: "AAAA", 16: "TXT", 5: "CNAME", 15: "MX", 12: "PTR", 10: "NULL", 255: "ANY"}


def dns_qname(ip):
    """name + type of a DNS query to port 53 (UDP, or TCP with length prefix)."""
    l4 = ip["l4"]
    if ip["proto"] == 17 and len(l4) >= 8 and struct.unpack("!H", l4[2:4])[0] == 53:
        msg = l4[8:]
    elif ip["proto"] == 6 and len(l4) >= 20 and struct.unpack("!H", l4[2:4])[0] == 53:
        msg = l4[(l4[12] >> 4) * 4 + 2:]
    else:
        return None
    if len(msg) < 17 or struct.unpack("!H", msg[4:6])[0] < 1 or msg[2] & 0x80:
        return None
    off, labels = 12, []
    while off < len(msg) and msg[off]:
        n = msg[off]
        labels.append(msg[off + 1:off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    qt = struct.unpack("!H", msg[off + 1:off + 3])[0]
    return ".".join(labels), QTYPES.get(qt, str(qt))


PROTO = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}


def add(d, k, n):
    e = d.setdefault(k, {"packets": 0, "bytes": 0})
    e["packets"] += 1
    e["bytes"] += n


def summarize(path):
    info, recs, err = read_any(path)
    lt = info["linktype"]
    s = dict(info)
    s.update({"records": len(recs), "ip_packets": 0, "ip_bytes": 0, "ipv4_packets": 0,
              "ipv4_bytes": 0, "ipv6_packets": 0, "ipv6_bytes": 0})
    by_proto, by_src, by_dst, by_uid, by_principal, dns = {}, {}, {}, {}, {}, []
    # Flow memory (src/attribute.rs): a TCP/UDP packet without a uid counts for the uid its flow
    # (proto, addresses, ports) last carried, within 300 s of that flow's last packet.
    flows = {}
    for ts, rec, orig in recs:
        l3, extra = l3_of(lt, rec)
        if not l3:
            continue
        ip = parse_ip(l3)
        if ip is None:
            continue
        n = ip["len"]
        s["ip_packets"] += 1
        s["ip_bytes"] += n
        s["ipv%d_packets" % ip["v"]] += 1
        s["ipv%d_bytes" % ip["v"]] += n
        add(by_proto, PROTO.get(ip["proto"], str(ip["proto"])), n)
        add(by_src, ip["src"], n)
        add(by_dst, ip["dst"], n)
        if lt == 239:
            add(by_uid, str(extra["uid"]) if "uid" in extra else "none", n)
            l4 = ip["l4"]
            key = None
            if ip["proto"] in (6, 17) and len(l4) >= 4 and struct.unpack("!H", l4[0:2])[0] != 0:
                key = (ip["proto"], ip["src"], l4[0:2], ip["dst"], l4[2:4])
            who = extra.get("uid")
            if who is not None and key:
                flows[key] = [who, max(ts, flows.get(key, [0, ts])[1])]
            elif who is None and key in flows and ts - flows[key][1] <= 300:
                who = flows[key][0]
                flows[key][1] = max(flows[key][1], ts)
            add(by_principal, str(who) if who is not None else "none", n)
        q = dns_qname(ip)
        if q:
            d = {"src": ip["src"], "dst": ip["dst"], "qname": q[0], "qtype": q[1]}
            if lt == 239:
                d["uid"] = extra.get("uid")
            dns.append(d)
    s["by_proto"] = by_proto
    if lt == 239:
        s["by_uid"] = by_uid
        s["by_principal"] = by_principal
    s["by_src"] = by_src
    s["by_dst"] = by_dst
    s["dns_queries"] = dns
    if err:
        s["read_error"] = err
    return s

# ----------------------------------------------------------------- tshark

def tshark_check(path, s):
    """independent numbers from tshark; returns list of mismatch strings."""
    fields = ["frame.number", "ip.len", "ipv6.plen", "nflog.uid", "ip.src", "ip.dst",
              "ipv6.src", "ipv6.dst", "dns.qry.name", "dns.flags.response"]
    cmd = ["tshark", "-n", "-r", path, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    for f in fields:
        cmd += ["-e", f]
    r = subprocess.run(cmd, capture_output=True, text=True)
    rows = [l.split("\t") for l in r.stdout.splitlines() if l.strip()]
    t = {"records": 0, "ip_packets": 0, "ip_bytes": 0}
    by_uid, by_src, by_dst, names = collections.Counter(), collections.Counter(), collections.Counter(), []
    for row in rows:
        row += [""] * (len(fields) - len(row))
        _, iplen, plen, uid, s4, d4, s6, d6, qn, resp = row
        t["records"] += 1
        if iplen:
            n, src, dst = int(iplen), s4, d4
        elif plen:
            n, src, dst = int(plen) + 40, s6, d6
        else:
            continue
        t["ip_packets"] += 1
        t["ip_bytes"] += n
        by_uid[uid or "none"] += n
        by_src[src] += n
        by_dst[dst] += n
        if qn and resp in ("0", "False", ""):
            names.append(qn)
    bad = []
    for k in t:
        if t[k] != s[k]:
            bad.append("%s: %s mine=%s tshark=%s" % (os.path.basename(path), k, s[k], t[k]))
    pairs = [("by_src", by_src), ("by_dst", by_dst)]
    if "by_uid" in s:
        pairs.append(("by_uid", by_uid))
    for key, cnt in pairs:
        mine = {k: v["bytes"] for k, v in s[key].items()}
        if mine != dict(cnt):
            bad.append("%s: %s mine=%s tshark=%s" % (os.path.basename(path), key, mine, dict(cnt)))
    mine_names = [d["qname"] for d in s["dns_queries"]]
    if sorted(mine_names) != sorted(names):
        bad.append("%s: dns names mine=%s tshark=%s" % (os.path.basename(path), mine_names, names))
    return bad

# ----------------------------------------------------------------- output

def fmt_map(m, limit=6):
    items = sorted(m.items(), key=lambda kv: -kv[1]["bytes"])
    parts = ["%s: %d B / %d pk" % (k, v["bytes"], v["packets"]) for k, v in items[:limit]]
    if len(items) > limit:
        parts.append("... (%d more)" % (len(items) - limit))
    return "<br>".join(parts)


def readme_table(out, meta):
    L = ["| file | size | link type | records | IP pk | IP bytes | per uid (bytes / packets) | exercises |",
         "|---|---:|---|---:|---:|---:|---|---|"]
    for name, s in out["files"].items():
        lt = "%d%s" % (s["linktype"], " (pcapng)" if s["format"] == "pcapng" else "")
        uid = fmt_map(s["by_uid"]) if "by_uid" in s else "-"
        rec = str(s["records"]) + (" + bad" if "read_error" in s else "")
        L.append("| `%s` | %d | %s | %s | %d | %d | %s | %s |" % (
            name, s["file_size"], lt, rec, s["ip_packets"], s["ip_bytes"], uid, WHAT[name]))
    L.append("")
    L.append("Per source host (IP bytes / packets):")
    L.append("")
    L.append("| file | by source | by destination |")
    L.append("|---|---|---|")
    for name, s in out["files"].items():
        L.append("| `%s` | %s | %s |" % (name, fmt_map(s["by_src"]), fmt_map(s["by_dst"])))
    if meta:
        L.append("")
        L.append("`nflog-sample.pcap` users on the capturing machine: %s. nft rule counters at the end of the run: %s." % (
            ", ".join("%s = uid %d" % kv for kv in sorted(meta["users"].items(), key=lambda kv: kv[1])),
            ", ".join("%s %d pk / %d B" % (k, v["packets"], v["bytes"])
                      for k, v in sorted(meta["nft_counters"].items()) if v["packets"])))
    return "\n".join(L)


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    out = {"about": "generated by pcaps/expected.py from the fixture files; checked against tshark",
           "byte_rule": "IPv4 total length, or IPv6 payload length + 40, summed over IP packets; never the captured/frame length",
           "files": {}}
    problems = []
    for name in FIXTURES:
        p = os.path.join(d, name)
        if not os.path.exists(p):
            problems.append("missing " + name)
            continue
        s = summarize(p)
        s["file_size"] = os.path.getsize(p)
        problems += tshark_check(p, s)
        out["files"][name] = s
    meta_path = os.path.join(d, "nflog-sample.meta.json")
    meta = json.load(open(meta_path)) if os.path.exists(meta_path) else None
    if meta:
        ns = out["files"].get("nflog-sample.pcap")
        ns["users"] = meta["users"]
        ns["nft_counters"] = meta["nft_counters"]
        pk = sum(v["packets"] for v in meta["nft_counters"].values())
        by = sum(v["bytes"] for v in meta["nft_counters"].values())
        if ns and (pk, by) != (ns["records"], ns["ip_bytes"]):
            problems.append("nflog-sample.pcap: nft counters %d pk / %d B vs file %d records / %d B"
                            % (pk, by, ns["records"], ns["ip_bytes"]))
    total = sum(s["file_size"] for s in out["files"].values())
    out["total_fixture_bytes"] = total
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(out, f, indent=1, sort_keys=False)
        f.write("\n")
    rd = os.path.join(d, "README.md")
    if os.path.exists(rd):
        txt = open(rd).read()
        new, n = re.subn(r"(<!-- BEGIN GENERATED by expected.py -->\n).*?(<!-- END GENERATED -->)",
                         lambda m: m.group(1) + readme_table(out, meta) + "\n" + m.group(2), txt, flags=re.S)
        if n != 1:
            print("README.md: markers not found", file=sys.stderr)
            return 1
        open(rd, "w").write(new)
    print("ok: %d files, %d bytes total; tshark agrees" % (len(out["files"]), total), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
