#!/usr/bin/env bash
# Runs fuzz targets for MINUTES each, one after another, and prints per target the executions
# and findings (new crash, timeout, leak and out-of-memory inputs under fuzz/artifacts/TARGET).
#
#   fuzz/run.sh MINUTES [TARGET...]     # all targets when none are named
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Runs under
# `nice -n 19`. Corpora are seeded from pcaps/ by fuzz/seed.py and kept between runs in
# fuzz/corpus (not committed). Logs: fuzz/logs/TARGET.log. Exit status 1 when anything was found.
set -euo pipefail

cd "$(dirname "$0")"
minutes=${1:?usage: fuzz/run.sh MINUTES [TARGET...]}
shift
# libFuzzer takes 0 to mean forever: at least one second.
seconds=$(awk -v m="$minutes" 'BEGIN { s = int(m * 60); print (s < 1 ? 1 : s) }')
mapfile -t all < <(cargo +nightly fuzz list)
targets=("$@")
[ $# -gt 0 ] || targets=("${all[@]}")

python3 seed.py
nice -n 19 cargo +nightly fuzz build -O
mkdir -p logs
status=0
printf '%-10s %8s %14s %8s\n' target minutes executions findings
for t in "${targets[@]}"; do
    mkdir -p "artifacts/$t"
    touch "logs/$t.start"
    # -timeout: an input taking 10 s is a hang finding; -rss_limit_mb: 2 GB is a leak finding.
    nice -n 19 cargo +nightly fuzz run -O "$t" -- \
        -max_total_time=$seconds -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"logs/$t.log" 2>&1 || true
    found=$(find "artifacts/$t" -type f -newer "logs/$t.start")
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' | tail -1)
    if [ -z "$execs" ]; then
        execs=$(grep -o '^#[0-9]*' "logs/$t.log" | tr -d '#' | tail -1)
    fi
    findings=$(printf '%s' "$found" | grep -c . || true)
    [ "$findings" -eq 0 ] || status=1
    printf '%-10s %8s %14s %8s\n' "$t" "$minutes" "${execs:-?}" "$findings"
    if [ "$findings" -ne 0 ]; then
        printf '%s\n' "$found" | sed 's/^/    /'
        grep -m1 -E 'panicked|ERROR: AddressSanitizer|ERROR: libFuzzer' "logs/$t.log" | sed 's/^/    /' || true
    fi
done
exit $status
