#!/usr/bin/env bash
# Fleet store benchmark (issue 12): a simulated fleet ships into one PostgreSQL server, then
# fleet-wide reports run against it.
#
#   sudo benches/fleet.sh                       # 200 hosts x one day (1,440 minutes)
#   HOSTS=20 ROWS=4 sudo benches/fleet.sh       # smaller
#   EXFILMON=target/release/exfilmon sudo benches/fleet.sh
#
# A benchmark, not a test: it prints figures and exits 0 unless something failed to run.
# Needs root (the server runs as the postgres user) and Debian's postgresql package.
#
# Each host is one SQLite database made with sqlite3 from schema.sql: one live run, ROWS
# principals each sending to its own destination every minute of the last day (ROWS egress
# rows a minute), one DNS row a minute, a digest a minute in the trail (that is what ships
# a minute's rows) and an alert an hour. The databases differ only in the observer their
# config names, so every host's rows are distinct on the server. `exfilmon ship` runs host
# after host (what a fleet does at once, one after another: the figure is the server's and
# one shipper's throughput, not a fleet's concurrency). Then `report users` and
# `report alerts --since 1h` over the whole fleet, best of 3.
set -euo pipefail

HOSTS=${HOSTS:-200}
ROWS=${ROWS:-4}
MINUTES=${MINUTES:-1440}
cd "$(dirname "$0")/.."
EXFILMON=${EXFILMON:-target/debug/exfilmon}
[[ -x $EXFILMON ]] || { echo "fleet.sh: build first (cargo build), or set EXFILMON" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "fleet.sh: run as root (the server runs as the postgres user)" >&2; exit 1; }
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -x $pgbin/initdb ]] || { echo "fleet.sh: apt-get install postgresql" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "fleet.sh: apt-get install sqlite3" >&2; exit 1; }

work=$(mktemp -d)
chown postgres: "$work"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pg() { runuser -u postgres -- "$pgbin/$1" "${@:2}"; }
cleanup() {
    pg pg_ctl -D "$work/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

pg initdb --auth-local=trust --auth-host=scram-sha-256 -U postgres -E UTF8 -D "$work/data" >/dev/null
pg pg_ctl -D "$work/data" -l "$work/server.log" -w \
    -o "-p $port -k $work -c listen_addresses=127.0.0.1 -c shared_buffers=512MB -c max_wal_size=4GB" start >/dev/null
psql() { pg psql -X -q -A -t -h "$work" -p "$port" -U postgres "$@"; }
psql -d postgres -c "CREATE ROLE bench LOGIN PASSWORD 'bench'" -c "CREATE DATABASE fleet OWNER bench"
url="postgresql://bench@127.0.0.1:$port/fleet"
export PGPASSWORD=bench

# One host's database: the minutes of the day that ends now.
now_us=$(($(date +%s) * 1000000))
start=$(((now_us / 60000000 - MINUTES) * 60000000))
base=$work/base.db
sqlite3 "$base" <schema.sql
sqlite3 "$base" >/dev/null <<SQL
PRAGMA journal_mode = WAL;
INSERT INTO runs (id, mode, version, started_at, finished_at, state, first_minute, last_minute)
VALUES (1, 'run', 'bench', $start, $now_us, 'finished', $start, $start + ($MINUTES - 1) * 60000000);
WITH RECURSIVE p(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM p WHERE i + 1 < $ROWS)
INSERT INTO principals (id, uid, gid) SELECT i + 1, 1000 + i, 1000 + i FROM p;
WITH RECURSIVE m(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM m WHERE i + 1 < $MINUTES),
               p(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM p WHERE j + 1 < $ROWS)
INSERT INTO egress (principal_id, minute, proto, dst, dport, packets, bytes, first_seen, last_seen, direction, run_id)
SELECT j + 1, $start + i * 60000000, 6, '203.0.113.' || (j + 1), 443, 10 + j, 15000 * (j + 1) + i,
       $start + i * 60000000, $start + i * 60000000 + 59000000, 1, 1 FROM m, p;
WITH RECURSIVE m(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM m WHERE i + 1 < $MINUTES)
INSERT INTO dns (minute, principal_id, domain, queries, unique_names, name_bytes, suspicious, flags, run_id)
SELECT $start + i * 60000000, 1, 'example.org', 3, 2, 24, 0, 0, 1 FROM m;
WITH RECURSIVE m(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM m WHERE i + 1 < $MINUTES)
INSERT INTO digests (seq, ts, run_id, minute, rows, packets, bytes, digest, prev_hash, hash)
SELECT i + 1, $start + (i + 2) * 60000000, 1, $start + i * 60000000, $ROWS, 0, 0, hex(randomblob(32)), '', '' FROM m;
WITH RECURSIVE h(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM h WHERE i + 1 < $MINUTES / 60)
INSERT INTO alerts (ts, kind, severity, principal_id, dst, bytes, summary, details, run_id, seq, prev_hash, hash)
SELECT $start + (i * 60 + 30) * 60000000, 'volume', 'high', 1, '203.0.113.1', 5000000,
       'uid 1000 sent 5 MB to 203.0.113.1', '{}', 1, $MINUTES + i + 1, '', '' FROM h;
SQL
per_host=$(sqlite3 "$base" "SELECT (SELECT count(*) FROM egress) + (SELECT count(*) FROM dns)
    + (SELECT count(*) FROM digests) + (SELECT count(*) FROM alerts)")
echo "fleet: $HOSTS hosts x $MINUTES minutes; $per_host rows a host ($ROWS egress rows a minute, 1 dns, 1 digest, an alert an hour)"

ship_secs=0
for h in $(seq 1 "$HOSTS"); do
    cp "$base" "$work/host.db"
    printf 'observer = "host-%03d"\n[[sink]]\ntype = "postgres"\nurl = "%s"\n' "$h" "$url" >"$work/host.toml"
    t0=$(date +%s.%N)
    "$EXFILMON" ship --db "$work/host.db" --config "$work/host.toml" >/dev/null
    t1=$(date +%s.%N)
    ship_secs=$(echo "$ship_secs + $t1 - $t0" | bc -l)
done
total=$((per_host * HOSTS))
echo "shipped $total rows in $(printf %.1f "$ship_secs") s: $(echo "$total / $ship_secs" | bc) rows/s" \
    "(each host's ship: connect, $((MINUTES / 5000 + 1)) batch(es), one process)"
echo "server: $(psql -d fleet -c "SELECT pg_size_pretty(pg_database_size('fleet'))"), egress rows" \
    "$(psql -d fleet -c 'SELECT count(*) FROM egress'), partitions" \
    "$(psql -d fleet -c "SELECT count(*) FROM pg_inherits")"
psql -d fleet -c "VACUUM ANALYZE" >/dev/null

best() {
    local best=999999 t0 t1 s
    for _ in 1 2 3; do
        t0=$(date +%s.%N)
        "$EXFILMON" report "$@" --db "$url" --format json >"$work/out.json"
        t1=$(date +%s.%N)
        s=$(echo "$t1 - $t0" | bc -l)
        best=$(echo "if ($s < $best) $s else $best" | bc -l)
    done
    printf '%.3f' "$best"
}
echo "report users (fleet-wide, $((HOSTS * ROWS)) rows out): $(best users) s"
echo "report alerts --since 1h: $(best alerts --since 1h) s ($(python3 -c "import json; print(len(json.load(open('$work/out.json'))))") alerts)"
echo "report users --observer host-001: $(best users --observer host-001) s"
