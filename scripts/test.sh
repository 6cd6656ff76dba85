#!/usr/bin/env bash
# Runs exfilmon's whole test suite on a Debian machine with Rust, installing the Debian
# packages the tests use first (as root, or through passwordless sudo).
#
# Tests that need root, network namespaces or nftables skip with a printed reason when they
# cannot run; with CI=true (as CI sets it) such a skip fails the run instead.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    nftables iproute2 tcpdump tshark openssh-server openssh-client socat bind9-dnsutils
    dnsmasq-base sqlite3 publicsuffix procps passwd time auditd python3 systemd
    chromium fonts-dejavu-core prometheus rsyslog util-linux binutils logrotate postgresql openssl
    iptables
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]]; then sudo=(); elif sudo -n true 2>/dev/null; then sudo=(sudo); else sudo=(none); fi
    if [[ ${sudo[0]-} == none ]]; then
        echo "test.sh: not root and no passwordless sudo: cannot install ${missing[*]}; tests that need them will skip" >&2
    else
        echo "test.sh: installing ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

cargo test --all-targets "$@"
