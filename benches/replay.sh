#!/usr/bin/env bash
# Replay benchmark: exfilmon beside tcpdump and tshark on the same generated capture.
#
#   benches/replay.sh                 # 1,000,000 packets, 3 runs each (best run counts)
#   PACKETS=200000 RUNS=1 benches/replay.sh
#   MEMORY=0 benches/replay.sh         # skip the memory runs
#   BASELINE=/tmp/exfilmon-52c3bcd benches/replay.sh   # also an older exfilmon build, runs
#                                      # alternating with this one (this machine's speed drifts)
#
# A benchmark, not a test: it prints figures and exits 0 unless something failed to run.
# Every tool is pinned to one core (taskset -c $CORE), exfilmon with its writer thread, and
# exfilmon replays into a fresh database each run. Figures: wall seconds of the best run,
# packets/s, exfilmon's packets/s divided by the tool's, and peak RSS (GNU time %M).
# Results of a run are recorded in BENCHMARKS.md ("Replay").
#
# Captures come from `cargo run --release --example gen_capture` (deterministic: the same
# arguments give the same bytes) and are kept in target/bench/ between runs.
set -euo pipefail

PACKETS=${PACKETS:-1000000}
RUNS=${RUNS:-3}
TSHARK_RUNS=${TSHARK_RUNS:-1}
MEMORY=${MEMORY:-1}
CORE=${CORE:-0}
UNIQUE=${UNIQUE:-1000000}

cd "$(dirname "$0")/.."
dir=target/bench
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

need() {
    local cmd=$1 pkg=$2
    command -v "$cmd" >/dev/null && return
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "installing $pkg ..." >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
    fi
    command -v "$cmd" >/dev/null || { echo "replay.sh: $cmd is missing; install the $pkg package" >&2; exit 1; }
}
need /usr/bin/time time
need taskset util-linux
need tcpdump tcpdump
need tshark tshark

cargo build --release --quiet --bin exfilmon --example gen_capture
exfilmon=$PWD/target/release/exfilmon
gen=$PWD/target/release/examples/gen_capture

# gen NAME ARGS...: generates $dir/NAME.pcap unless an identical one exists.
gen() {
    local name=$1
    shift
    local file=$dir/$name.pcap stamp="$*"
    if [[ ! -f $file || $(cat "$file.args" 2>/dev/null) != "$stamp" || $gen -nt $file ]]; then
        "$gen" "$@" --out "$file"
        echo "$stamp" >"$file.args"
    fi
    echo "$file"
}

# measure RUNS CMD...: runs CMD pinned to $CORE RUNS times; prints "best_seconds max_rss_kb".
# $prepare, if set, runs before each run (not timed).
prepare=:
measure() {
    local runs=$1
    shift
    local best="" rss=0
    for ((i = 0; i < runs; i++)); do
        $prepare
        local t0 t1
        t0=$(date +%s%N)
        /usr/bin/time -f %M -o "$work/rss" taskset -c "$CORE" "$@" >"$work/out" 2>"$work/err" || {
            echo "replay.sh: failed: $*" >&2
            cat "$work/err" >&2
            exit 1
        }
        t1=$(date +%s%N)
        local secs
        secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
        if [[ -z $best ]] || awk -v s="$secs" -v b="$best" 'BEGIN { exit !(s < b) }'; then best=$secs; fi
        local r
        r=$(tail -n 1 "$work/rss")
        ((r > rss)) && rss=$r
    done
    echo "$best $rss"
}

fresh_db() { rm -f "$work"/bench.db "$work"/bench.db-wal "$work"/bench.db-shm; }

# exfilmon's own line: "... N packets, ..."; fails loudly if it did not decode every packet.
check_packets() {
    local want=$1 got
    got=$(sed -n 's/.* \([0-9]*\) packets, .*/\1/p' "$work/out")
    if [[ $got != "$want" ]]; then
        echo "replay.sh: exfilmon counted '${got}' packets, expected $want:" >&2
        cat "$work/out" "$work/err" >&2
        exit 1
    fi
}

row() { # tool seconds rss_kb base_pps
    awk -v tool="$1" -v s="$2" -v rss="$3" -v n="$PACKETS" -v base="$4" 'BEGIN {
        pps = n / s
        printf "%-34s %8.3f %14.0f %9.2f %10.1f\n", tool, s, pps, (base > 0 ? base / pps : 1), rss / 1024
    }'
}

header() {
    printf "%-34s %8s %14s %9s %10s\n" tool seconds packets/s "exf/tool" "RSS MiB"
}

echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1); pinned to core $CORE"
echo "exfilmon $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src schema.sql 2>/dev/null || echo +dirty)," \
    "$(tcpdump --version 2>&1 | head -n 1), $(tshark --version 2>/dev/null | head -n 1)"

mixed=$(gen mixed --packets "$PACKETS")
echo "capture: $mixed, $PACKETS packets, $(($(stat -c %s "$mixed") / 1048576)) MiB (NFLOG, snaplen 128, DNS whole)"
# Warm the page cache so no tool pays for the disk.
cat "$mixed" >/dev/null

prepare=fresh_db
BASELINE=${BASELINE:-}
if [[ -n $BASELINE ]]; then
    # One run of each in turn, so a drift of the machine's speed reaches both alike.
    exf_s="" base_s="" exf_rss=0 base_rss=0
    for ((run = 0; run < RUNS; run++)); do
        read -r s rss < <(measure 1 "$exfilmon" replay "$mixed" --db "$work/bench.db")
        check_packets "$PACKETS"
        summary=$(cat "$work/out")
        if [[ -z $exf_s ]] || awk -v s="$s" -v b="$exf_s" 'BEGIN { exit !(s < b) }'; then exf_s=$s; fi
        ((rss > exf_rss)) && exf_rss=$rss
        read -r s rss < <(measure 1 "$BASELINE" replay "$mixed" --db "$work/bench.db")
        if [[ -z $base_s ]] || awk -v s="$s" -v b="$base_s" 'BEGIN { exit !(s < b) }'; then base_s=$s; fi
        ((rss > base_rss)) && base_rss=$rss
    done
else
    read -r exf_s exf_rss < <(measure "$RUNS" "$exfilmon" replay "$mixed" --db "$work/bench.db")
    check_packets "$PACKETS"
    summary=$(cat "$work/out")
fi
exf_pps=$(awk -v n="$PACKETS" -v s="$exf_s" 'BEGIN { print n / s }')
prepare=:
read -r tcpdump_s tcpdump_rss < <(measure "$RUNS" tcpdump -r "$mixed" -w /dev/null)
read -r tshark_s tshark_rss < <(measure "$TSHARK_RUNS" tshark -n -r "$mixed")

echo
header
row "exfilmon replay (fresh db)" "$exf_s" "$exf_rss" "$exf_pps"
[[ -n $BASELINE ]] && row "$(basename "$BASELINE") replay (fresh db)" "$base_s" "$base_rss" "$exf_pps"
row "tcpdump -r FILE -w /dev/null" "$tcpdump_s" "$tcpdump_rss" "$exf_pps"
row "tshark -n -r FILE" "$tshark_s" "$tshark_rss" "$exf_pps"
echo "exfilmon said: $summary"

if [[ $MEMORY == 1 ]]; then
    # Memory with many distinct keys: every non-DNS packet to a new destination, every DNS
    # query a new name, then both at once (half the packets each, twice as many packets).
    dsts=$(gen unique-dsts --packets "$UNIQUE" --dns-percent 0 --unique-dsts "$UNIQUE")
    names=$(gen unique-names --packets "$UNIQUE" --dns-percent 100 --unique-names "$UNIQUE")
    both=$(gen unique-both --packets $((2 * UNIQUE)) --dns-percent 50 --unique-dsts "$UNIQUE" --unique-names "$UNIQUE")
    cat "$dsts" "$names" "$both" >/dev/null
    echo
    printf "%-34s %8s %14s %10s\n" "memory run" seconds packets/s "RSS MiB"
    for f in "$dsts" "$names" "$both"; do
        n=$UNIQUE
        [[ $f == "$both" ]] && n=$((2 * UNIQUE))
        prepare=fresh_db
        read -r s rss < <(measure 1 "$exfilmon" replay "$f" --db "$work/bench.db")
        check_packets "$n"
        awk -v tool="$(basename "$f" .pcap) ($UNIQUE)" -v s="$s" -v rss="$rss" -v n="$n" \
            'BEGIN { printf "%-34s %8.3f %14.0f %10.1f\n", tool, s, n / s, rss / 1024 }'
    done
fi
