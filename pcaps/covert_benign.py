#!/usr/bin/env python3
"""Benign DNS for pcaps/covert.sh: what a user's programs look up on an ordinary day,
through glibc (A + AAAA per lookup) and a few direct queries. stdlib only."""
import random
import socket
import time

from covert_slow_dns import ask

SITES = ["www.example.test", "mail.example.test", "api.github.test", "news.example.co.uk",
         "shop.example.com.br", "docs.python.test", "login.example.org"]
CDN = ["e1234.dscb.akamaiedge.net", "d3c33hcgiwev3.cloudfront.net", "r3---sn-4g5e6nz7.googlevideo.com",
       "scontent-lhr8-1.xx.fbcdn.net", "prod-2-4fb2a2c8.elb.amazonaws.com", "cs1100.wpc.omegacdn.net",
       "a1b2c3d4e5f60718293a.cdn-example.net", "9f8e7d6c5b4a39281706.cdn-example.net",
       "lh3.googleusercontent.com", "video-weaver.fra05.hls.ttvnw.net",
       "my-service-7d9f8b6c5-x2k4j.default.svc.cluster.test",
       "xn--bcher-kva.example.test", "3e6a7b9c-1234-4cde-8f00-112233445566.blob.example-cloud.test"]
TELEMETRY = ["v10.events.data.microsoft.com", "self.events.data.microsoft.com",
             "incoming.telemetry.mozilla.org", "firefox.settings.services.mozilla.com"]


def lookup(name: str) -> None:
    try:
        socket.getaddrinfo(name, 443, type=socket.SOCK_STREAM)
    except OSError:
        pass


def main() -> None:
    rng = random.Random(5)
    for _ in range(3):
        for name in SITES + TELEMETRY:
            lookup(name)
        time.sleep(0.5)
    for name in CDN:
        lookup(name)
    # A browser opening a busy page: many sites, their static hosts, trackers.
    for i in range(25):
        for host in ("www", "static", "cdn"):
            lookup("%s.site%d.example" % (host, i))
    for i in range(10):
        lookup("pixel.tracker%d.test" % i)
    # Reverse lookups and a mail server's blocklist checks.
    for i in range(20):
        try:
            socket.gethostbyaddr("10.77.9.%d" % (i + 1))
        except OSError:
            pass
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    for _ in range(10):
        ip = ".".join(str(rng.randrange(1, 255)) for _ in range(4))
        ask(s, "10.77.9.1", "%s.zen.spamhaus.org" % ip)
    for name in ("example.test", "example.co.uk"):
        ask(s, "10.77.9.1", name, 16)   # TXT (SPF)
        ask(s, "10.77.9.1", name, 15)   # MX
    ask(s, "10.77.9.1", "_xmpp-client._tcp.example.test", 33)  # SRV
    for name in SITES + TELEMETRY:
        lookup(name)


if __name__ == "__main__":
    main()
