#!/usr/bin/env python3
"""Wider benign DNS for pcaps/covert.sh (issue 16), sent for real to the lab resolver: what
pcaps/covert_synth.py's benign-wide.pcap holds, as traffic. stdlib only, seeded.

usage: covert_benign_lab.py RESOLVER
Two rounds of: AD names (GUIDs under _msdcs.corp.local, DC locator SRV, hosts, ordinary names
with the search suffix appended), hosts under lan and home.arpa, a browser burst of 120 names
under 40 registered domains within ~2 s, package mirrors (A and AAAA), mail (MX, DKIM TXT, SPF
TXT, DNSBL), NTP pool names, 20 reverse lookups (v4 and v6 PTR).
"""
import random
import socket
import sys
import time

from covert_slow_dns import ask

TYPES = {"A": 1, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33}
MIRRORS = ["deb.debian.org", "security.debian.org", "archive.ubuntu.com", "security.ubuntu.com",
           "esm.ubuntu.com", "api.snapcraft.io", "pypi.org", "files.pythonhosted.org",
           "registry.npmjs.org", "ppa.launchpadcontent.net", "download.docker.com",
           "packages.microsoft.com"]


def main() -> int:
    server = sys.argv[1]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    rng = random.Random(16)
    q = lambda name, t="A": ask(s, server, name, TYPES[t])  # noqa: E731
    for _ in range(2):
        for k in range(12):
            guid = "%08x-%04x-%04x-%04x-%012x" % tuple(rng.getrandbits(b) for b in (32, 16, 16, 16, 48))
            q("%s._msdcs.corp.local" % guid)
            q("_ldap._tcp.dc._msdcs.corp.local", "SRV")
            q("ws%04d.corp.local" % rng.randrange(3000))
            q("nas%d.lan" % (k % 4))
            q("printer-%d.home.arpa" % (k % 3))
            for site in ("www.wikipedia.org", "outlook.office365.com"):
                q(site)
                q(site + ".corp.local")
        for k in range(120):
            site = "site%d.com" % (k % 40) if k % 3 else "news%d.co.uk" % (k % 40)
            q("%s.%s" % (("www", "static", "img", "api", "cdn", "fonts")[k % 6], site), "A" if k % 2 else "AAAA")
        for name in MIRRORS:
            q(name)
            q(name, "AAAA")
        for k in range(15):
            dom = "sender%d.com" % rng.randrange(200)
            q(dom, "MX")
            q("selector%d._domainkey.%s" % (k % 2 + 1, dom), "TXT")
            q(dom, "TXT")
            q(".".join(str(rng.randrange(1, 255)) for _ in range(4)) + ".zen.spamhaus.org")
        for k in range(4):
            q("%d.debian.pool.ntp.org" % k)
            q("ntp.ubuntu.com")
        for k in range(20):
            if k % 2:
                q("%d.%d.%d.%d.in-addr.arpa" % tuple(rng.randrange(256) for _ in range(4)), "PTR")
            else:
                nib = "".join(rng.choice("0123456789abcdef") for _ in range(16)) + "0" * 8 + "20010db8"
                q(".".join(reversed(nib)) + ".ip6.arpa", "PTR")
        time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
