#!/usr/bin/env bash
# DNS through the [response] dns_queue (NFQUEUE verdicts) against plain DNS, in namespaces.
#
#   resolver   dnsmasq in the outside namespace answering *.example.test (no upstream)
#   monitor    `exfilmon run` inside with the project's ruleset, twice: without [response]
#              (plain: queries are logged and accepted by the kernel) and with
#              `dns_queue = true` (each query also waits for the verdict thread; no hold is
#              open, so each verdict decodes the query and finds no entry for its uid)
#   client     benches/dnsclient.py: sequential queries for latency (one in flight: the time
#              from sendto to the answer), then WINDOW queries in flight for SECS s (answers/s)
#
# Added latency is the queue's median and p99 minus plain's. The numbers include Python's
# own overhead, the same in both modes.
#
# Usage (root): [PROFILE=release|dev] [EXFILMON_BIN=path] [QUERIES=5000] [SECS=5] [WINDOW=32] benches/dnsqueue.sh
# Needs: dnsmasq, nftables, iptables, iproute2, python3.
#
# SAFETY: traffic goes only from namespace xdq-in-PID (10.77.252.2) over a veth pair to
# xdq-out-PID (10.77.252.1). No default routes. Both namespaces and every process started here
# are removed on exit.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=benches/lib.sh
. "$REPO/benches/lib.sh"
PROFILE="${PROFILE:-release}"
QUERIES="${QUERIES:-5000}"
SECS="${SECS:-5}"
WINDOW="${WINDOW:-32}"
NS_IN="xdq-in-$$"
NS_OUT="xdq-out-$$"
PEER=10.77.252.1
TMP=""
PIDS=()

log() { printf '[dnsqueue.sh] %s\n' "$*" >&2; }

cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	ip netns del "$NS_IN" 2>/dev/null || true
	ip netns del "$NS_OUT" 2>/dev/null || true
	[ -n "$TMP" ] && rm -rf "$TMP"
	return 0
}

[ "$(id -u)" = 0 ] || { log "needs root (network namespaces, nftables, NFQUEUE)"; exit 1; }
for tool in nft iptables ip dnsmasq python3; do
	command -v "$tool" >/dev/null || { log "missing $tool (apt-get install nftables iptables iproute2 dnsmasq-base python3)"; exit 1; }
done
trap cleanup EXIT
trap 'exit 130' INT TERM
TMP="$(mktemp -d /tmp/exfilmon-dnsqueue-bench.XXXXXX)"
chmod 755 "$TMP"

target="${CARGO_TARGET_DIR:-$REPO/target}"
if [ -n "${EXFILMON_BIN:-}" ]; then
	BIN="$EXFILMON_BIN" # a binary built already (a release build with fat LTO takes long here)
elif [ "$PROFILE" = release ]; then
	(cd "$REPO" && cargo build --release --quiet --bin exfilmon)
	BIN="$target/release/exfilmon"
else
	(cd "$REPO" && cargo build --quiet --bin exfilmon)
	BIN="$target/debug/exfilmon"
fi

veth_pair xdq
IN=(ip netns exec "$NS_IN")

ip netns exec "$NS_OUT" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
	--bind-interfaces --listen-address="$PEER" --address=/example.test/"$PEER" --dns-forward-max=1000 \
	--cache-size=10000 --pid-file="$TMP/dnsmasq.pid" >"$TMP/dnsmasq.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
	ip netns exec "$NS_OUT" ss -Hlnu "sport = :53" | grep -q . && break
	sleep 0.1
done

# One run of the client against a monitor started with config $1; prints its figures.
measure() {
	local cfg="$1" name="$2"
	"${IN[@]}" "$BIN" nft --apply --config "$cfg" 2>/dev/null
	rm -f "$TMP/$name.db"*
	"${IN[@]}" "$BIN" run --config "$cfg" --db "$TMP/$name.db" 2>"$TMP/$name.log" &
	local mon=$!
	PIDS+=("$mon")
	for _ in $(seq 1 100); do
		grep -qs "monitoring NFLOG group" "$TMP/$name.log" && break
		sleep 0.1
	done
	"${IN[@]}" python3 "$REPO/benches/dnsclient.py" "$PEER" "$QUERIES" "$SECS" "$WINDOW" >"$TMP/$name.out"
	sleep 1.5 # one heartbeat with the final counters
	kill -TERM "$mon"
	wait "$mon" || true
	cat "$TMP/$name.out"
}

: >"$TMP/plain.toml"
printf '[response]\ndns_queue = true\n' >"$TMP/queue.toml"

log "plain DNS (ruleset, monitor, no queue)"
measure "$TMP/plain.toml" plain >"$TMP/plain.figures"
log "DNS through the queue"
measure "$TMP/queue.toml" queue >"$TMP/queue.figures"
verdicts="$(sqlite3 "$TMP/queue.db" "SELECT json_extract(counters, '$.response.dns_queue') FROM health ORDER BY run_id DESC LIMIT 1" 2>/dev/null || echo '?')"

get() { awk -v k="$2" '$1 == k {print $2}' "$TMP/$1.figures"; }
printf '| mode | median | p99 | max | lost (of %s sequential) | answers/s (%s in flight, %s s) | lost |\n' "$QUERIES" "$WINDOW" "$SECS"
printf '|---|---:|---:|---:|---:|---:|---:|\n'
for m in plain queue; do
	printf '| %s | %s µs | %s µs | %s µs | %s | %s | %s |\n' "$m" "$(get $m median_us)" "$(get $m p99_us)" \
		"$(get $m max_us)" "$(get $m seq_lost)" "$(get $m qps)" "$(get $m window_lost)"
done
awk -v a="$(get queue median_us)" -v b="$(get plain median_us)" -v c="$(get queue p99_us)" -v d="$(get plain p99_us)" \
	'BEGIN { printf "added latency: median %+.0f µs, p99 %+.0f µs\n", a - b, c - d }'
echo "verdict thread counters: $verdicts"
