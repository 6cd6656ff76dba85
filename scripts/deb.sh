#!/usr/bin/env bash
# Builds the Debian package with dpkg-deb and prints its path as the last line:
#   target/debian/exfilmon_VERSION_ARCH.deb
#
#   scripts/deb.sh                     cargo build --release, then package
#   scripts/deb.sh --binary PATH       package a binary already built (tests use the debug one)
#   scripts/deb.sh --version V         another package version than Cargo.toml's (upgrade tests)
#
# The package holds /usr/bin/exfilmon, the units (exfilmon.service, exfilmon-metrics.service
# and .timer), man pages for every command and bash/zsh/fish completions (written by the
# packaged binary itself: `exfilmon generate-docs`), /etc/exfilmon/exfilmon.toml as a conffile
# (exfilmon.example.toml), the exfilmon system user (sysusers.d, adduser without systemd) and
# the state directory /var/lib/exfilmon (postinst). Needs dpkg-deb (dpkg) and gzip.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=""
version=""
while (($#)); do
    case $1 in
        --binary) bin=$2; shift 2 ;;
        --version) version=$2; shift 2 ;;
        *) echo "usage: scripts/deb.sh [--binary PATH] [--version VERSION]" >&2; exit 2 ;;
    esac
done
target=${CARGO_TARGET_DIR:-target}
if [[ -z $bin ]]; then
    cargo build --release --locked >&2
    bin=$target/release/exfilmon
fi
[[ -x $bin ]] || { echo "deb.sh: $bin is not an executable" >&2; exit 1; }
version=${version:-$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)}
arch=$(dpkg --print-architecture)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
install -Dm755 "$bin" "$root/usr/bin/exfilmon"
# The release profile keeps line tables for backtraces; the package need not.
if command -v strip >/dev/null; then strip --strip-debug "$root/usr/bin/exfilmon"; fi
install -Dm644 dist/exfilmon.service "$root/usr/lib/systemd/system/exfilmon.service"
install -Dm644 dist/exfilmon-metrics.service "$root/usr/lib/systemd/system/exfilmon-metrics.service"
install -Dm644 dist/exfilmon-metrics.timer "$root/usr/lib/systemd/system/exfilmon-metrics.timer"
install -Dm644 dist/debian/sysusers.conf "$root/usr/lib/sysusers.d/exfilmon.conf"
install -Dm644 exfilmon.example.toml "$root/etc/exfilmon/exfilmon.toml"
install -Dm644 nft/exfilmon.nft "$root/usr/share/exfilmon/exfilmon.nft"

"$bin" generate-docs "$stage/docs"
for page in "$stage"/docs/man1/*.1; do
    install -Dm644 "$page" "$root/usr/share/man/man1/$(basename "$page")"
    gzip -9n "$root/usr/share/man/man1/$(basename "$page")"
done
install -Dm644 "$stage/docs/completions/exfilmon.bash" "$root/usr/share/bash-completion/completions/exfilmon"
install -Dm644 "$stage/docs/completions/_exfilmon" "$root/usr/share/zsh/vendor-completions/_exfilmon"
install -Dm644 "$stage/docs/completions/exfilmon.fish" "$root/usr/share/fish/vendor_completions.d/exfilmon.fish"

doc=$root/usr/share/doc/exfilmon
install -Dm644 README.md "$doc/README.md"
install -Dm644 exfilmon.example.toml "$doc/examples/exfilmon.example.toml"
install -Dm644 -t "$doc/examples/drop-ins" dist/drop-ins/*.conf
cat >"$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: exfilmon

Files: *
License: MIT or Apache-2.0
COPYRIGHT
chmod 644 "$doc/copyright"

mkdir -p "$root/DEBIAN"
install -m755 dist/debian/postinst dist/debian/prerm dist/debian/postrm "$root/DEBIAN/"
echo /etc/exfilmon/exfilmon.toml >"$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: exfilmon
Version: $version
Architecture: $arch
Maintainer: exfilmon developers <exfilmon@localhost>
Installed-Size: $size
Depends: libc6 (>= 2.34), adduser | systemd
Recommends: nftables
Suggests: auditd, prometheus-node-exporter, rsyslog
Section: net
Priority: optional
Description: boundary monitor: who sent how many bytes where
 exfilmon attributes a Linux server's outbound traffic (from nftables NFLOG) to the
 sending user, stores it in SQLite, alerts on large or covert egress (DNS and ICMP
 tunnels, sensitive files read then sent) and reports it: exfilmon report, status,
 metrics.
CONTROL

out=$target/debian
mkdir -p "$out"
deb=$out/exfilmon_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
echo "$deb"
