#!/usr/bin/env bash
# Live capture benchmark: the highest outbound UDP rate each NFLOG consumer keeps up with at
# zero loss, all in one run, through the project's own ruleset in a network namespace:
#
#   exfilmon   `exfilmon run` (release build): decode, detect, aggregate, SQLite
#   tcpdump    `tcpdump -i nflog:7 -w /dev/null`: the bare consumer, our practical limit
#   ulogd2     NFLOG input -> BASE -> IP2STR -> SQLITE3 output (Debian ulogd2, ulogd2-sqlite3)
#
# Each trial reloads the ruleset (zeroing its counters), starts one consumer, sends RATE
# datagrams/s of 64 bytes for SECS seconds with a paced C sender (benches/udpflood.c), waits
# for the last batch, and compares what the consumer stored with what the rules logged. A rate
# is lossless when the two are equal. Every consumer gets the same 16 MiB receive buffer.
# Other work on the machine steals CPU and causes loss that is not the consumer's, never the
# reverse, so a lossy trial is retried (TRIES, default 3) and the rate passes if any try is
# lossless; a consumer that cannot keep up fails every try.
#
# KIND=icmp sends ICMP echo requests of PAYLOAD bytes (default 1000) instead of 64-byte UDP
# datagrams: the ruleset logs echo whole (snaplen 1500), so each record is about 16 times the
# size of a UDP one (issue 16's larger snaplens). KIND=dns-answer sends the other way: UDP from
# port 53 of the peer into the monitored namespace, PAYLOAD bytes (default 512), which the
# ruleset's input chain logs whole as DNS answers (a silent socket there takes them).
#
# CONFIG_APPEND adds to exfilmon's configuration (e.g. $'[response]\ndns_queue = true').
#
# Usage (root): [KIND=udp|icmp|dns-answer] [PAYLOAD=N] [CONFIG_APPEND=TOML] [CONSUMERS="exfilmon tcpdump"] [TRIES=3] benches/live.sh [SECS] [RATE...]
#   defaults: 10 s per trial, rates 2000 5000 10000 20000 50000 100000 150000 200000 300000
# Needs: nftables, tcpdump, ulogd2, ulogd2-sqlite3, sqlite3, gcc, iproute2.
#
# SAFETY: traffic goes only from namespace xmb-in-PID (10.77.250.2) over a veth pair to
# xmb-out-PID (10.77.250.1), where an nft rule drops it. No default routes. Both namespaces and
# every process started here are removed on exit.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=benches/lib.sh
. "$REPO/benches/lib.sh"
SECS="${1:-10}"
shift || true
RATES=("$@")
((${#RATES[@]})) || RATES=(2000 5000 10000 20000 50000 100000 150000 200000 300000)
NS_IN="xmb-in-$$"
NS_OUT="xmb-out-$$"
PEER=10.77.250.1
BIN="$REPO/target/release/exfilmon"
RCVBUF_KIB=16384
TRIES="${TRIES:-3}"
KIND="${KIND:-udp}"
case "$KIND" in
udp) TARGET=9 PAYLOAD="${PAYLOAD:-64}" ;;
icmp) TARGET=icmp PAYLOAD="${PAYLOAD:-1000}" ;;
dns-answer) TARGET=40053 PAYLOAD="${PAYLOAD:-512}" ;;
*) echo "KIND is udp, icmp or dns-answer" >&2; exit 2 ;;
esac
TMP=""
CONSUMER_PID=""
SILENT_PID=""

log() { printf '[live.sh] %s\n' "$*" >&2; }

cleanup() {
	[ -n "$CONSUMER_PID" ] && kill "$CONSUMER_PID" 2>/dev/null && wait "$CONSUMER_PID" 2>/dev/null
	[ -n "$SILENT_PID" ] && kill "$SILENT_PID" 2>/dev/null
	ip netns del "$NS_IN" 2>/dev/null || true
	ip netns del "$NS_OUT" 2>/dev/null || true
	[ -n "$TMP" ] && rm -rf "$TMP"
	return 0
}

[ "$(id -u)" = 0 ] || { log "needs root (network namespaces, nftables)"; exit 1; }
for tool in nft tcpdump ulogd sqlite3 gcc ip; do
	command -v "$tool" >/dev/null || { log "missing $tool (apt-get install nftables tcpdump ulogd2 ulogd2-sqlite3 sqlite3 gcc iproute2)"; exit 1; }
done
trap cleanup EXIT
trap 'exit 130' INT TERM
TMP="$(mktemp -d /tmp/exfilmon-bench.XXXXXX)"

log "building"
(cd "$REPO" && cargo build --release --quiet)
gcc -O2 -Wall -o "$TMP/udpflood" "$REPO/benches/udpflood.c"

log "namespaces $NS_IN / $NS_OUT"
veth_pair xmb
# The receiver drops the flood quietly (no ICMP port-unreachable storm back).
ip netns exec "$NS_OUT" nft -f - <<-EOF
	table inet sink {
		chain input {
			type filter hook input priority 0; policy accept;
			udp dport 9 drop
			icmp type echo-request drop
		}
	}
EOF

IN=(ip netns exec "$NS_IN")
# Who sends where: from the monitored namespace to the peer, or (DNS answers) the other way.
SEND=("${IN[@]}" "$TMP/udpflood" "$PEER" "$TARGET")
SOURCE_PORT=()
if [ "$KIND" = dns-answer ]; then
	SEND=(ip netns exec "$NS_OUT" "$TMP/udpflood" "${PEER%.1}.2" "$TARGET")
	SOURCE_PORT=(53)
	# A socket that never reads: the answers end in its full queue, with no ICMP back.
	"${IN[@]}" python3 -c 'import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 40053))
time.sleep(1e6)' &
	SILENT_PID=$!
fi
printf '[nflog]\nrcvbuf = "%dKiB"\n' "$RCVBUF_KIB" >"$TMP/exfilmon.toml"
# CONFIG_APPEND: more of exfilmon's configuration, e.g. a [response] section.
[ -z "${CONFIG_APPEND:-}" ] || printf '%s\n' "$CONFIG_APPEND" >>"$TMP/exfilmon.toml"
cat >"$TMP/ulogd.conf" <<EOF
[global]
logfile="$TMP/ulogd.log"
loglevel=3
plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_inppkt_NFLOG.so"
plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_raw2packet_BASE.so"
plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_filter_IP2STR.so"
plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_output_SQLITE3.so"
stack=log1:NFLOG,base1:BASE,ip2str1:IP2STR,sqlite3_pkt:SQLITE3

[log1]
group=7
netlink_socket_buffer_size=$((RCVBUF_KIB * 1024))
# ulogd only applies a size strictly below the maximum.
netlink_socket_buffer_maxsize=$((RCVBUF_KIB * 1024 + 1))

[sqlite3_pkt]
table="ulog_pkt"
db="$TMP/ulogd.sqlite3db"
EOF

# Packets counted by the ruleset's logging rules (only they carry counters).
logged() {
	"${IN[@]}" nft list table inet exfilmon | grep -o 'counter packets [0-9]*' | awk '{s += $3} END {print s + 0}'
}

wait_log() { # file text
	for _ in $(seq 1 100); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	log "timed out waiting for '$2' in $1"
	cat "$1" >&2 || true
	return 1
}

start_consumer() { # name
	case "$1" in
	exfilmon)
		rm -f "$TMP"/x.db*
		"${IN[@]}" "$BIN" run --config "$TMP/exfilmon.toml" --db "$TMP/x.db" 2>"$TMP/consumer.log" &
		CONSUMER_PID=$!
		wait_log "$TMP/consumer.log" "monitoring NFLOG group"
		;;
	tcpdump)
		"${IN[@]}" tcpdump -i nflog:7 -B "$RCVBUF_KIB" -w /dev/null 2>"$TMP/consumer.log" &
		CONSUMER_PID=$!
		wait_log "$TMP/consumer.log" "listening on"
		;;
	ulogd2)
		rm -f "$TMP/ulogd.sqlite3db" "$TMP/ulogd.log"
		sqlite3 "$TMP/ulogd.sqlite3db" "CREATE TABLE ulog_pkt (raw_pktlen INT, oob_uid INT, oob_gid INT,
			oob_time_sec INT, ip_saddr_str TEXT, ip_daddr_str TEXT, ip_protocol INT, udp_dport INT, tcp_dport INT);"
		"${IN[@]}" ulogd -c "$TMP/ulogd.conf" >"$TMP/consumer.log" 2>&1 &
		CONSUMER_PID=$!
		wait_log "$TMP/ulogd.log" "initialization finished"
		;;
	esac
}

# Stops the consumer; sets STORED to how many packets it stored.
stop_consumer() { # name
	case "$1" in
	exfilmon)
		kill -TERM "$CONSUMER_PID"
		wait "$CONSUMER_PID" || true
		STORED="$(sqlite3 "$TMP/x.db" "SELECT received FROM health ORDER BY run_id DESC LIMIT 1")"
		# exfilmon measures its own loss: show it next to the counters' verdict.
		SELF="$(sqlite3 -separator ' ' "$TMP/x.db" "SELECT 'self-reported lost', lost, 'overruns', overruns FROM health ORDER BY run_id DESC LIMIT 1")"
		;;
	tcpdump)
		kill -INT "$CONSUMER_PID"
		wait "$CONSUMER_PID" || true
		STORED="$(grep -o '^[0-9]* packets captured' "$TMP/consumer.log" | awk '{print $1}')"
		;;
	ulogd2)
		kill -TERM "$CONSUMER_PID"
		wait "$CONSUMER_PID" || true
		STORED="$(sqlite3 "$TMP/ulogd.sqlite3db" "SELECT count(*) FROM ulog_pkt")"
		;;
	esac
	CONSUMER_PID=""
}
SELF=""

CONSUMERS=(${CONSUMERS:-exfilmon tcpdump ulogd2})
RESULTS=()
log "sending $KIND, $PAYLOAD-byte payloads, $SECS s per trial"
printf '%-9s %9s %9s %9s %9s %s\n' consumer target sent logged stored verdict
for consumer in "${CONSUMERS[@]}"; do
	best=0
	first_loss="-"
	for rate in "${RATES[@]}"; do
		for try in $(seq 1 "$TRIES"); do
			"${IN[@]}" "$BIN" nft --apply --config "$TMP/exfilmon.toml" 2>/dev/null
			start_consumer "$consumer"
			out="$("${SEND[@]}" "$rate" "$SECS" "$PAYLOAD" "${SOURCE_PORT[@]}")"
			sent_rate="$(awk '{print $8}' <<<"$out")"
			sleep 2 # the kernel flushes partial batches after the queue timeout
			n_logged="$(logged)"
			stop_consumer "$consumer"
			stored="${STORED:-0}"
			if [ "$stored" = "$n_logged" ]; then
				verdict=lossless
				best="$sent_rate"
			else
				verdict="lost $((n_logged - stored)) ($(awk -v l="$n_logged" -v s="$stored" 'BEGIN {printf "%.2f", 100 * (l - s) / l}')%)"
			fi
			[ "$verdict" != lossless ] && [ -n "$SELF" ] && verdict="$verdict, $SELF"
			SELF=""
			printf '%-9s %9s %9s %9s %9s %s (try %s)\n' "$consumer" "$rate" "$sent_rate" "$n_logged" "$stored" "$verdict" "$try"
			[ "$verdict" = lossless ] && break
		done
		if [ "$verdict" != lossless ]; then
			first_loss="$sent_rate"
			break
		fi
		# The sender's own ceiling: a higher target would measure the sender, not the consumer.
		if awk -v s="$sent_rate" -v r="$rate" 'BEGIN {exit !(s < 0.9 * r)}'; then
			first_loss="sender limit"
			break
		fi
	done
	RESULTS+=("$consumer $best $first_loss")
done

echo
echo "| consumer | highest lossless rate (packets/s) | first failing rate |"
echo "|---|---:|---|"
for r in "${RESULTS[@]}"; do
	read -r name best loss <<<"$r"
	echo "| $name | $best | $loss |"
done
