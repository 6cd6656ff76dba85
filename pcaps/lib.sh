# shellcheck shell=bash
# What the capture scripts (make.sh, covert.sh, sensitive.sh) do alike, sourced by each after
# it has set HERE to this directory and NS_IN / NS_OUT to its namespaces' names:
#
#   HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
#   . "$HERE/lib.sh"
#
# Two network namespaces joined by a veth pair, neither with a default route (netns_pair,
# netns_del); background processes tracked by pid and killed by pid (spawn, stop_pid,
# stop_pids); test users (ensure_user); waiting for a listener or a log line (wait_port,
# wait_grep); sshd with key logins for the test users (sshd_start); the NFLOG capture
# (capture_start, capture_stop); commands in the inside namespace (inside, as_user). Each
# script's own cleanup() stops and deletes what it made with these, plus its own extras, and
# cleanup_on_exit runs it however the script ends.

# shellcheck disable=SC2034 # REPO, PY and SSH_OPTS are for the scripts
{
	REPO="$(cd "$HERE/.." && pwd)"
	PY=/usr/bin/python3 # system python: test users must be able to run it
	SSH_OPTS=(-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
		-o IdentitiesOnly=yes -o LogLevel=ERROR) # for ssh and scp to sshd_start's sshd
}
TMP=""     # the script's temporary directory (mktemp -d)
PIDS=()    # background processes, stopped by stop_pids
TCPDUMP="" # capture_start's tcpdump

log() { printf '[%s] %s\n' "${0##*/}" "$*" >&2; }

# need_root WHY: exits unless run as root.
need_root() {
	[ "$(id -u)" = 0 ] || { log "needs root ($1)"; exit 1; }
}

# cleanup_on_exit FUNCTION: runs FUNCTION when the script ends, also on Ctrl-C or SIGTERM.
cleanup_on_exit() {
	# shellcheck disable=SC2064 # the function's name, expanded now on purpose
	trap "$1" EXIT
	trap 'exit 130' INT TERM
}

# inside COMMAND...: runs COMMAND in the inside namespace.
inside() { ip netns exec "$NS_IN" "$@"; }

# as_user USER COMMAND...: runs COMMAND in the inside namespace as USER.
as_user() {
	local u=$1
	shift
	ip netns exec "$NS_IN" runuser -u "$u" -- "$@"
}

# spawn COMMAND...: starts COMMAND in the background (redirections of the call apply to it)
# and adds its pid to PIDS. COMMAND must be a program, not a shell function: a function in the
# background is a subshell, and killing that pid leaves the program running.
spawn() {
	"$@" &
	PIDS+=("$!")
}

# stop_pids ARRAY: SIGTERM to the daemons that wrote $TMP/*.pid (removing the files), then to
# every pid in the array named ARRAY (PIDS, or a script's own), waits for those and empties
# ARRAY. Pid files first: a tracked process is not reaped yet then, so its pid cannot have
# been reused.
stop_pids() {
	local -n pids="$1"
	local p f
	if [ -n "$TMP" ]; then
		for f in "$TMP"/*.pid; do
			[ -f "$f" ] || continue
			kill "$(cat "$f")" 2>/dev/null || true
			rm -f "$f"
		done
	fi
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	pids=()
}

# stop_pid PID [SIGNAL]: stops one process started with spawn (SIGTERM unless said), waits for
# it and takes it out of PIDS.
stop_pid() {
	local p keep=()
	kill -"${2:-TERM}" "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}

# netns_pair IN OUT VETH_IN VETH_OUT V4_IN V4_OUT [V6_IN V6_OUT]: namespaces IN and OUT joined
# by a veth pair, lo up in both, the IPv4 addresses (CIDR) on the veth ends and the IPv6 ones
# (without duplicate address detection) when given; without them IPv6 is off in both, so no
# router or neighbour solicitations get into a capture. Checks that neither namespace has a
# default route: nothing can leave the machine.
netns_pair() {
	local in=$1 out=$2 vin=$3 vout=$4 v4in=$5 v4out=$6 v6in=${7:-} v6out=${8:-} ns
	ip netns add "$in"
	ip netns add "$out"
	ip link add "$vin" netns "$in" type veth peer name "$vout" netns "$out"
	for ns in "$in" "$out"; do
		ip -n "$ns" link set lo up
		[ -n "$v6in" ] || ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
	done
	ip -n "$in" addr add "$v4in" dev "$vin"
	ip -n "$out" addr add "$v4out" dev "$vout"
	if [ -n "$v6in" ]; then
		ip -n "$in" addr add "$v6in" dev "$vin" nodad
		ip -n "$out" addr add "$v6out" dev "$vout" nodad
	fi
	ip -n "$in" link set "$vin" up
	ip -n "$out" link set "$vout" up
	for ns in "$in" "$out"; do
		if ip -n "$ns" route show default | grep -q . || ip -n "$ns" -6 route show default | grep -q .; then
			log "unexpected default route in $ns"
			exit 1
		fi
	done
}

# netns_del NS...: deletes the namespaces that exist.
netns_del() {
	local ns
	for ns in "$@"; do ip netns del "$ns" 2>/dev/null || true; done
}

# ensure_user USER...: creates each test user when missing. OpenSSH (UsePAM no) refuses
# accounts whose password field starts with "!" (useradd's default, locked); "*" is no
# password, but not locked.
ensure_user() {
	local u
	for u in "$@"; do
		id "$u" >/dev/null 2>&1 || useradd -m -s /bin/bash "$u"
		usermod -p '*' "$u"
	done
}

# wait_port NS PROTO PORT: waits up to 10 s until something in NS listens on PORT (PROTO t or
# u); fails otherwise.
wait_port() {
	local _
	for _ in $(seq 1 100); do
		ip netns exec "$1" ss -Hln"$2" "sport = :$3" | grep -q . && return 0
		sleep 0.1
	done
	log "nothing listening on $2/$3 in $1"
	return 1
}

# wait_grep FILE TEXT [SECONDS]: waits up to SECONDS (5) until FILE holds TEXT; fails otherwise.
wait_grep() {
	local _
	for _ in $(seq 1 $((${3:-5} * 10))); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# sshd_start NS "ADDRESS..." USER...: sshd in NS listening on the addresses, key logins (no
# passwords) for the users only. Each user's key is $TMP/USER/id (in a directory only the user
# reads); ssh and scp take SSH_OPTS; $TMP/recv is writable by everyone.
sshd_start() {
	local ns=$1 listen=$2 u a
	shift 2
	mkdir -p /run/sshd "$TMP/keys" "$TMP/recv"
	chmod 755 "$TMP/keys"
	chmod 1777 "$TMP/recv"
	ssh-keygen -q -t ed25519 -N '' -f "$TMP/hostkey"
	for u in "$@"; do
		mkdir -p "$TMP/$u"
		ssh-keygen -q -t ed25519 -N '' -C "$u@exfilmon-test" -f "$TMP/$u/id"
		cp "$TMP/$u/id.pub" "$TMP/keys/$u"
		chown -R "$u:" "$TMP/$u"
		chmod 700 "$TMP/$u"
	done
	{
		for a in $listen; do echo "ListenAddress $a"; done
		cat <<-EOF
			HostKey $TMP/hostkey
			PidFile $TMP/sshd.pid
			AuthorizedKeysFile $TMP/keys/%u
			StrictModes no
			UsePAM no
			PubkeyAuthentication yes
			PasswordAuthentication no
			KbdInteractiveAuthentication no
			PermitRootLogin no
			AllowUsers $*
			Subsystem sftp /usr/lib/openssh/sftp-server
		EOF
	} >"$TMP/sshd_config"
	ip netns exec "$ns" /usr/sbin/sshd -t -f "$TMP/sshd_config"
	spawn ip netns exec "$ns" /usr/sbin/sshd -D -e -f "$TMP/sshd_config" 2>"$TMP/sshd.log"
	wait_port "$ns" t 22
}

# capture_start FILE: `tcpdump -i nflog:7` in the inside namespace into FILE, packet-buffered
# and as root (no privilege drop, so it can write anywhere); returns once it listens. No -s:
# it would cut the NFLOG TLV record, not just the payload.
capture_start() {
	spawn ip netns exec "$NS_IN" tcpdump -i nflog:7 -U -Z root -w "$1" 2>"$TMP/tcpdump.log"
	TCPDUMP=$!
	wait_grep "$TMP/tcpdump.log" 'listening on' || { log "tcpdump did not start: $(cat "$TMP/tcpdump.log")"; exit 1; }
}

# capture_stop: stops tcpdump (SIGINT: it writes out what it has). NFLOG batches for up to the
# ruleset's timeout (1 s): the caller pauses first, or the last packets are lost.
capture_stop() {
	stop_pid "$TCPDUMP" INT
	TCPDUMP=""
}
