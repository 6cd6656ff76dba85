#!/usr/bin/env bash
# Owner-lookup benchmark: new TCP flows per second from a paced sender, each logged once by
# NFLOG and looked up by `source::owner` (sock_diag → /proc → process) from the reader thread,
# as the live monitor will. Reports lookups done, missed (by reason) and their latency.
#
#   sender     benches/tcpconnect.c: RATE new connections/s for SECS s, each socket held
#              HOLD_MS ms (so about RATE × HOLD_MS / 1000 are open at any time), then closed
#   ruleset    one rule in the sender's namespace: log every outgoing SYN to group 9
#   consumer   examples/owner_bench.rs: NFLOG → decode → Owners::ask; prints its counts
#
# A lookup is "done" when it named the sender process, "missed" otherwise (with the reason
# the lookup gave, or "4-tuple reused" when a later connection on the same ports was asked
# about before the earlier one was answered). Latency is from ask() on the reader thread to
# the worker's answer.
#
# Each rate is run TRIES times (default 3): other work on the machine takes CPU from the
# worker and shows as latency, so every try is printed with the load average before it.
#
# Usage (root): [PROFILE=dev|release] [HOLD_MS=200] [TRIES=3] benches/owner.sh [SECS] [RATE...]
#   defaults: release build, 10 s per trial, rates 1000 5000 10000
# Needs: gcc, iproute2, nftables. Worker CPU is seconds over the consumer's whole run (from
# before the sender starts to 1 s after it ends, plus collecting the last answers); sender CPU
# is the sender's own.
#
# SAFETY: traffic goes only from namespace xob-in-PID (10.77.251.2) over a veth pair to
# xob-out-PID (10.77.251.1), where an nft rule drops it. No default routes. Both namespaces and
# every process started here are removed on exit.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=benches/lib.sh
. "$REPO/benches/lib.sh"
SECS="${1:-10}"
shift || true
RATES=("$@")
((${#RATES[@]})) || RATES=(1000 5000 10000)
PROFILE="${PROFILE:-release}"
HOLD_MS="${HOLD_MS:-200}"
TRIES="${TRIES:-3}"
NS_IN="xob-in-$$"
NS_OUT="xob-out-$$"
PEER=10.77.251.1
PORT=9
TMP=""
CONSUMER_PID=""

log() { printf '[owner.sh] %s\n' "$*" >&2; }

cleanup() {
	[ -n "$CONSUMER_PID" ] && kill "$CONSUMER_PID" 2>/dev/null && wait "$CONSUMER_PID" 2>/dev/null
	ip netns del "$NS_IN" 2>/dev/null || true
	ip netns del "$NS_OUT" 2>/dev/null || true
	[ -n "$TMP" ] && rm -rf "$TMP"
	return 0
}

[ "$(id -u)" = 0 ] || { log "needs root (network namespaces, nftables, NFLOG)"; exit 1; }
for tool in nft gcc ip; do
	command -v "$tool" >/dev/null || { log "missing $tool (apt-get install nftables gcc iproute2)"; exit 1; }
done
trap cleanup EXIT
trap 'exit 130' INT TERM
TMP="$(mktemp -d /tmp/exfilmon-owner-bench.XXXXXX)"

log "building ($PROFILE)"
target="${CARGO_TARGET_DIR:-$REPO/target}"
if [ "$PROFILE" = release ]; then
	(cd "$REPO" && cargo build --release --quiet --example owner_bench)
	BIN="$target/release/examples/owner_bench"
else
	(cd "$REPO" && cargo build --quiet --example owner_bench)
	BIN="$target/debug/examples/owner_bench"
fi
gcc -O2 -Wall -o "$TMP/tcpconnect" "$REPO/benches/tcpconnect.c"

log "namespaces $NS_IN / $NS_OUT"
veth_pair xob
# The peer drops the SYNs quietly: no RST, so each socket stays in SYN_SENT until closed.
ip netns exec "$NS_OUT" nft -f - <<-EOF
	table inet sink {
		chain input {
			type filter hook input priority 0; policy accept;
			tcp dport $PORT drop
		}
	}
EOF
# One log entry per new connection, without conntrack (stateless: the SYN alone).
ip netns exec "$NS_IN" nft -f - <<-EOF
	table inet ownerbench {
		chain output {
			type filter hook output priority 0; policy accept;
			tcp dport $PORT tcp flags & (syn | ack) == syn log group 9
		}
	}
EOF

IN=(ip netns exec "$NS_IN")
printf '| rate (new flows/s) | load | sent | logged | looked up | done | missed (reason) | median | p99 | max | reader cost per ask | worker CPU (per lookup) | sender CPU |\n'
printf '|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n'
for rate in "${RATES[@]}"; do
	for try in $(seq 1 "$TRIES"); do
		load="$(cut -d' ' -f1 /proc/loadavg)"
		# Emptied here: the background job truncates them only once it runs.
		: >"$TMP/out"
		: >"$TMP/err"
		"${IN[@]}" "$BIN" --group 9 >"$TMP/out" 2>"$TMP/err" &
		CONSUMER_PID=$!
		for _ in $(seq 1 300); do
			grep -q ready "$TMP/err" 2>/dev/null && break
			sleep 0.1
		done
		if ! grep -q ready "$TMP/err"; then
			log "consumer did not start within 30 s:"
			ps -o pid,stat,wchan:30,etime,cmd --ppid "$CONSUMER_PID" -p "$CONSUMER_PID" >&2 || true
			cat "$TMP/err" >&2
			exit 1
		fi
		sent="$("${IN[@]}" "$TMP/tcpconnect" "$PEER" "$PORT" "$rate" "$SECS" "$HOLD_MS")"
		sleep 1 # the kernel flushes the last NFLOG batch after its timeout (100 ms)
		kill -TERM "$CONSUMER_PID"
		wait "$CONSUMER_PID" || { log "consumer failed"; cat "$TMP/err" >&2; exit 1; }
		CONSUMER_PID=""
		sleep 1 # the group is free again once the kernel has released the old socket
		get() { awk -v k="$1" '$1 == k {print $2}' "$TMP/out"; }
		missed="$(($(get asked) - $(get found_expected_comm)))"
		reasons="$(awk '$1 ~ /^unknown_/ {sub(/^unknown_/, "", $1); printf "%s%s %s", sep, $1, $2; sep = ", "}' "$TMP/out")"
		[ "$(get queue_full)" != 0 ] && reasons="$reasons${reasons:+, }queue full $(get queue_full)"
		[ "$(get found_other_comm)" != 0 ] && reasons="$reasons${reasons:+, }other process $(get found_other_comm)"
		[ "$(get pending)" != 0 ] && reasons="$reasons${reasons:+, }unanswered $(get pending)"
		# ask_new on a 4-tuple still under lookup joins it: the earlier connection gets no
		# answer of its own (its port was reused within the lookup's latency).
		reused="$(($(get asked) - $(get found) - $(get unknown) - $(get queue_full) - $(get pending)))"
		[ "$reused" != 0 ] && reasons="$reasons${reasons:+, }4-tuple reused while looked up $reused"
		per="$(awk -v c="$(get worker_cpu_s)" -v n="$(get asked)" 'BEGIN {printf "%.0f", n ? c * 1e6 / n : 0}')"
		printf '| %s | %s | %s | %s (lost %s) | %s | %s | %s%s | %s ms | %s ms | %s ms | %s ns (max %s µs) | %s s (%s µs) | %s s |\n' \
			"$rate" "$load" "$(awk '{print $2}' <<<"$sent")" "$(get nflog_packets)" "$(get nflog_lost)" "$(get asked)" \
			"$(get found_expected_comm)" "$missed" "${reasons:+ ($reasons)}" \
			"$(get latency_median_ms)" "$(get latency_p99_ms)" "$(get latency_max_ms)" \
			"$(get ask_mean_ns)" "$(get ask_max_us)" "$(get worker_cpu_s)" "$per" "$(awk '{print $10}' <<<"$sent")"
		log "rate $rate try $try ($sent): $(tr '\n' ' ' <"$TMP/out")"
	done
done
