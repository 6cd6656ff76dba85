//! The nftables ruleset, rendered from the configuration.
//!
//! One source for both the shipped `nft/exfilmon.nft` (the default rendering; a unit test keeps
//! them equal, `exfilmon nft > nft/exfilmon.nft` regenerates it) and what `exfilmon nft --apply`
//! loads. The ruleset lives in its own table so it coexists with firewalld or any other ruleset,
//! and every chain's policy is accept: it observes, and drops only the egress of principals in
//! its `blocked` sets (empty unless `[response]` or `exfilmon block` put one there, each with a
//! timeout).
//!
//! Everything interpolated here was validated when the config was parsed (addresses, prefixes,
//! interface names), so a config cannot smuggle nft syntax into the ruleset.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

use std::time::Duration;

use crate::config::Config;
use crate::decode::Direction;
use crate::principal::Principal;
use crate::respond::dnsq;

pub const TABLE: &str = "inet exfilmon";

/// The ruleset for `config`, as a file `nft -f` loads atomically (re-loading replaces it).
pub fn render(config: &Config) -> String {
    let n = &config.nflog;
    let t = &config.nft;
    let group = n.group;
    let mut s = String::new();
    let w = &mut s;
    // `fmt::Write` into a String cannot fail.
    let _ = write!(
        w,
        "\
#!/usr/sbin/nft -f
# exfilmon egress ruleset, rendered by `exfilmon nft` from the configuration ([nflog], [nft]).
#
# Copies outbound packets to NFLOG group {group}, which `exfilmon run` binds (or
# `tcpdump -i nflog:{group}`). Lives in its own table so it coexists with any other ruleset;
# every chain has policy accept; it drops only egress of principals in the blocked sets (empty
# unless [response] or `exfilmon block` put one there, each with a timeout).
#
# Load:    exfilmon nft --apply          (or: nft -f nft/exfilmon.nft; re-loading is
#                                         atomic: the table is declared, deleted and
#                                         re-created in one transaction)
# Check:   nft -c -f nft/exfilmon.nft
# Remove:  exfilmon nft --remove         (or: nft delete table {TABLE})
#
# Permanent exemptions belong in allow_v4/allow_v6 of the [nft] config section; re-loading
# resets the sets. At run time:
#   nft add element {TABLE} allow_v4 {{ 192.0.2.10, 198.51.100.0/24 }}
#   nft add element {TABLE} allow_v6 {{ 2001:db8::/48 }}
# Blocks: exfilmon block USER --for 1h, exfilmon unblock USER (trail events), or
#   nft list set {TABLE} blocked
#
# Rules carry comments \"exfilmon-*\" so tools and tests find their counters:
#   nft -j list table {TABLE}
# snaplen: DNS is logged whole (names are parsed), and so are inbound DNS answers
# (destination names); ICMP and ICMPv6 we send {icmp_snaplen} bytes (echo payloads are
# compared); TLS handshake records on connections we open {hello_snaplen} bytes (a ClientHello's
# server name; matched by the payload's first bytes 0x16 0x03); everything else only {snaplen}
# bytes (IP + transport headers): byte totals come from the IP length field. queue-threshold
# only takes effect when smaller than the one the daemon configures. Log prefixes: \"srv\" for
# replies on connections a remote peer opened (served: a web server's answers), \"ans\" for
# inbound DNS answers, \"lcl\" for DNS queries to resolvers on this host (loopback, whole:
# who asked), \"out\" for the rest.

table {TABLE}
delete table {TABLE}

table {TABLE} {{
",
        snaplen = n.snaplen,
        icmp_snaplen = n.icmp_snaplen,
        hello_snaplen = n.hello_snaplen
    );
    w.push_str("\t# Destinations exempt from logging (backup / update servers).\n");
    set(w, "allow_v4", "ipv4_addr", &t.allow_v4);
    w.push('\n');
    set(w, "allow_v6", "ipv6_addr", &t.allow_v6);
    // Always there and empty unless something blocks: `[response]` or `exfilmon block` add
    // elements with a timeout, the kernel removes them when it passes.
    w.push_str(
        "\n\t# Principals whose egress is blocked ([response], exfilmon block), each until its timeout.\n\
         \tset blocked {\n\t\ttypeof meta skuid\n\t\tflags timeout\n\t}\n\n\
         \tset blocked_v4 {\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t}\n\n\
         \tset blocked_v6 {\n\t\ttype ipv6_addr\n\t\tflags timeout\n\t}\n",
    );
    if config.response.dns_queue {
        let _ = write!(
            w,
            "\n\t# [response] dns_queue: `exfilmon nft --apply` also adds, for iptables and ip6tables:\n\
             \t#   -t mangle -A OUTPUT {}\n\
             \t# (see src/nft.rs, dns_queue_spec, for why these are xtables rules).\n",
            dns_queue_spec("udp|tcp").join(" ")
        );
    }
    // Comments name the counters: `{prefix}-dns-udp`, `{prefix}-dns-tcp`, `{prefix}-icmp`,
    // `{prefix}-tls-hello`, `{prefix}-served`, then `{rest}`. Log prefixes say which end opened the connection (decode::Direction):
    // conntrack's reply direction is a connection a remote peer opened, the rest ours.
    let log_rules = |w: &mut String, prefix: &str, rest: &str| {
        let (out, srv) = (Direction::PREFIX_INITIATED, Direction::PREFIX_SERVED);
        let (snap, queue, icmp, hello) = (n.snaplen, n.queue_threshold, n.icmp_snaplen, n.hello_snaplen);
        let _ = write!(
            w,
            "\t\tudp dport 53 counter log prefix \"{out}\" group {group} accept comment \"{prefix}-dns-udp\"\n\
             \t\ttcp dport 53 counter log prefix \"{out}\" group {group} accept comment \"{prefix}-dns-tcp\"\n\
             \t\tct direction original meta l4proto {{ icmp, ipv6-icmp }} counter log prefix \"{out}\" group {group} \
             snaplen {icmp} queue-threshold {queue} accept comment \"{prefix}-icmp\"\n\
             \t\tct direction original meta l4proto tcp @ih,0,16 0x1603 counter log prefix \"{out}\" \
             group {group} snaplen {hello} queue-threshold {queue} accept comment \"{prefix}-tls-hello\"\n\
             \t\tct direction reply counter log prefix \"{srv}\" group {group} snaplen {snap} queue-threshold {queue} \
             accept comment \"{prefix}-served\"\n\
             \t\tcounter log prefix \"{out}\" group {group} snaplen {snap} queue-threshold {queue} comment \"{rest}\"\n",
        );
    };
    let interfaces = |w: &mut String, comment: &str| {
        if !t.interfaces.is_empty() {
            let names: Vec<String> = t.interfaces.iter().map(|i| format!("\"{i}\"")).collect();
            let _ = writeln!(w, "\t\toifname != {{ {} }} accept comment \"{comment}\"", names.join(", "));
        }
    };
    let audit = |w: &mut String| {
        if t.audit {
            w.push_str("\t\tjump audit_trail\n");
        } else {
            w.push_str("\t\t# audit = true in [nft] adds `jump audit_trail` here (kernel audit trail).\n");
        }
    };

    w.push_str(
        "
	# Locally generated traffic: the only place packets carry the sender's uid/gid (full
	# sockets only; time-wait, RSTs and ICMP errors carry none).
	chain egress {
		type filter hook output priority 100; policy accept;

",
    );
    // Queries to resolvers on this host (systemd-resolved, dnsmasq, unbound): who asked, since
    // the upstream query leaves as the resolver's uid.
    let _ = write!(
        w,
        "\t\toif \"lo\" udp dport 53 counter log prefix \"{lcl}\" group {group} accept comment \"exfilmon-local-dns-udp\"\n\
         \t\toif \"lo\" tcp dport 53 counter log prefix \"{lcl}\" group {group} accept comment \"exfilmon-local-dns-tcp\"\n\
         \t\toif \"lo\" accept comment \"exfilmon-skip-lo\"\n\
         \t\tmeta skuid @blocked counter drop comment \"exfilmon-blocked\"\n",
        lcl = Direction::PREFIX_LOCAL,
    );
    interfaces(w, "exfilmon-skip-other-if");
    w.push_str(
        "\t\tip daddr @allow_v4 accept comment \"exfilmon-allow-v4\"\n\
         \t\tip6 daddr @allow_v6 accept comment \"exfilmon-allow-v6\"\n",
    );
    audit(w);
    w.push('\n');
    log_rules(w, "exfilmon", "exfilmon-egress");
    w.push_str(
        "\t}

	# Routed traffic (gateway mode): attributed to the source address, never a uid.
	chain forward {
		type filter hook forward priority 100; policy accept;

		ip saddr @blocked_v4 counter drop comment \"exfilmon-fwd-blocked-v4\"
		ip6 saddr @blocked_v6 counter drop comment \"exfilmon-fwd-blocked-v6\"
",
    );
    interfaces(w, "exfilmon-fwd-skip-other-if");
    w.push_str(
        "\t\tip daddr @allow_v4 accept comment \"exfilmon-fwd-allow-v4\"\n\
         \t\tip6 daddr @allow_v6 accept comment \"exfilmon-fwd-allow-v6\"\n",
    );
    audit(w);
    w.push('\n');
    log_rules(w, "exfilmon-fwd", "exfilmon-fwd");
    let _ = write!(
        w,
        "\t}}

\t# Inbound DNS answers, whole: the names principals resolved, shown with the addresses
\t# they send to (prefix \"{ans}\": never counted as egress).
\tchain answers {{
\t\ttype filter hook input priority 100; policy accept;

\t\tiif \"lo\" accept comment \"exfilmon-answers-skip-lo\"
\t\tudp sport 53 counter log prefix \"{ans}\" group {group} queue-threshold {queue} comment \"exfilmon-answers\"
\t}}
",
        ans = Direction::PREFIX_ANSWER,
        queue = n.queue_threshold,
    );
    if t.audit {
        w.push_str(
            "
	# A second, independent record in the kernel audit trail (auditd NETFILTER_PKT: addresses
	# and protocol, no uid). `log level audit` cannot share a statement with `group`.
	chain audit_trail {
		ct state new log level audit comment \"exfilmon-audit\"
	}
",
        );
    }
    w.push_str("}\n");
    s
}

/// A named interval set; allow-list elements are validated addresses and prefixes.
fn set(w: &mut String, name: &str, kind: &str, elements: &[String]) {
    let _ = write!(w, "\tset {name} {{\n\t\ttype {kind}\n\t\tflags interval\n");
    if !elements.is_empty() {
        let _ = writeln!(w, "\t\telements = {{ {} }}", elements.join(", "));
    }
    w.push_str("\t}\n");
}

/// The blocked set `who` goes into, and its element as nft writes it.
pub fn element(who: Principal) -> (&'static str, String) {
    match who {
        Principal::Uid(u) => ("blocked", u.to_string()),
        Principal::Host(std::net::IpAddr::V4(a)) => ("blocked_v4", a.to_string()),
        Principal::Host(std::net::IpAddr::V6(a)) => ("blocked_v6", a.to_string()),
    }
}

/// Blocks `who`'s egress for `time` (a block already there gets the new timeout), in one
/// transaction.
pub fn block(who: Principal, time: Duration) -> Result<(), NftError> {
    let (set, el) = element(who);
    let secs = time.as_secs().max(1);
    // `add` of an element already there keeps its old timeout: add, delete, add anew.
    let batch = format!(
        "add element {TABLE} {set} {{ {el} }}\ndelete element {TABLE} {set} {{ {el} }}\n\
         add element {TABLE} {set} {{ {el} timeout {secs}s }}\n"
    );
    nft(&["-f", "-"], Some(&batch)).map(drop).map_err(not_loaded)
}

/// Lifts `who`'s block; false when there was none.
pub fn unblock(who: Principal) -> Result<bool, NftError> {
    if !loaded()? {
        return Err(NftError::NotLoaded);
    }
    let (set, el) = element(who);
    match nft(&["delete", "element", "inet", "exfilmon", set, &format!("{{ {el} }}")], None) {
        Ok(_) => Ok(true),
        Err(NftError::Failed(m)) if m.contains("No such file") => {
            // The element, or the set itself (a ruleset from before blocks existed).
            match nft(&["list", "set", "inet", "exfilmon", set], None) {
                Ok(_) => Ok(false),
                Err(e) => Err(not_loaded(e)),
            }
        }
        Err(e) => Err(e),
    }
}

fn not_loaded(e: NftError) -> NftError {
    match e {
        NftError::Failed(m) if m.contains("No such file") => NftError::NotLoaded,
        e => e,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("table {TABLE} or its blocked sets are not loaded: load the ruleset with `exfilmon nft --apply`")]
    NotLoaded,
    #[error("nft is not installed (apt-get install nftables), or not on PATH")]
    NotInstalled,
    #[error("[response] dns_queue needs iptables for its queue rules (apt-get install iptables)")]
    NoIptables,
    #[error("cannot run nft: {0}")]
    Spawn(std::io::Error),
    #[error("nft needs CAP_NET_ADMIN: run as root")]
    NotPermitted,
    #[error("nft refused the ruleset: {0}")]
    Failed(String),
}

/// Runs `nft` with `args`, feeding `input` on stdin; returns its stdout.
pub fn nft(args: &[&str], input: Option<&str>) -> Result<String, NftError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => NftError::NotInstalled,
            _ => NftError::Spawn(e),
        })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // A write error means nft exited early; its stderr says why.
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("Operation not permitted") {
        return Err(NftError::NotPermitted);
    }
    let first = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("no error message").trim();
    Err(NftError::Failed(crate::escape::printable(first).into_owned()))
}

/// Loads the ruleset atomically (one `nft -f` transaction), then adds or removes the DNS
/// queue rules as `[response] dns_queue` says. Blocks in force keep their time left: re-loading
/// (`systemctl reload`) must not lift them.
pub fn apply(config: &Config) -> Result<(), NftError> {
    let mut ruleset = render(config);
    for (set, element, left) in blocks_in_force() {
        let _ = writeln!(ruleset, "add element {TABLE} {set} {{ {element} timeout {left}s }}");
    }
    nft(&["-f", "-"], Some(&ruleset))?;
    dns_queue(config.response.dns_queue)
}

/// The loaded blocked sets' elements and their seconds left; none when the table is not
/// loaded (or predates blocks).
fn blocks_in_force() -> Vec<(&'static str, String, u64)> {
    let mut out = Vec::new();
    for set in ["blocked", "blocked_v4", "blocked_v6"] {
        let Ok(json) = nft(&["-j", "list", "set", "inet", "exfilmon", set], None) else { continue };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&json) else { continue };
        let sets = v["nftables"].as_array().into_iter().flatten().filter_map(|i| i["set"]["elem"].as_array());
        for e in sets.flatten() {
            let e = &e["elem"];
            // Values were put there as numbers or addresses; anything else is not carried over.
            let value = match &e["val"] {
                serde_json::Value::Number(n) => n.as_u64().map(|n| n.to_string()),
                serde_json::Value::String(s) => s.parse::<std::net::IpAddr>().ok().map(|a| a.to_string()),
                _ => None,
            };
            if let (Some(value), Some(left)) = (value, e["expires"].as_u64()) {
                out.push((set, value, left.max(1)));
            }
        }
    }
    out
}

/// Deletes the table and the DNS queue rules; returns false when the table was not loaded.
pub fn remove() -> Result<bool, NftError> {
    dns_queue(false)?;
    match nft(&["delete", "table", "inet", "exfilmon"], None) {
        Ok(_) => Ok(true),
        Err(NftError::Failed(m)) if m.contains("No such file") => Ok(false),
        Err(e) => Err(e),
    }
}

/// The iptables rule (after `-t mangle -A OUTPUT`) sending DNS queries over `proto` to the
/// monitor's queue, `bypass`: while nothing listens the kernel accepts them (fail-open).
///
/// Why xtables and not nft's own `queue` statement in this table: that needs the kernel's
/// nft_queue (CONFIG_NFT_QUEUE), which some kernels leave out (the one this project's CI runs
/// on among them), while the NFQUEUE target through iptables-nft (nft_compat) is there
/// wherever either is. The mangle table's OUTPUT chain runs at priority -150, before this
/// table's chains, so the queries the verdict accepts are logged as before; a dropped one is
/// not (it never leaves).
fn dns_queue_spec(proto: &str) -> Vec<String> {
    let queue = dnsq::QUEUE.to_string();
    ["-p", proto, "--dport", "53", "-m", "comment", "--comment", "exfilmon-dns-queue", "-j", "NFQUEUE"]
        .into_iter()
        .chain(["--queue-num", &queue, "--queue-bypass"])
        .map(String::from)
        .collect()
}

/// Adds (once) or removes the DNS queue rules of both address families. Removing is best
/// effort: a configuration without `dns_queue` never fails on iptables (absent, or not
/// allowed in a sandbox).
pub fn dns_queue(on: bool) -> Result<(), NftError> {
    match set_dns_queue(on) {
        Err(e) if !on => {
            tracing::debug!("DNS queue rules not checked: {e}");
            Ok(())
        }
        r => r,
    }
}

fn set_dns_queue(on: bool) -> Result<(), NftError> {
    for tool in ["iptables", "ip6tables"] {
        for proto in ["udp", "tcp"] {
            let spec = dns_queue_spec(proto);
            let run = |op: &str| {
                let mut args = vec!["-w", "-t", "mangle", op, "OUTPUT"];
                args.extend(spec.iter().map(String::as_str));
                Command::new(tool).args(&args).stdin(Stdio::null()).output()
            };
            match run("-C") {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if on {
                        return Err(NftError::NoIptables);
                    }
                    return Ok(());
                }
                Err(e) => return Err(NftError::Spawn(e)),
                Ok(present) => {
                    let out = match (on, present.status.success()) {
                        (true, false) => run("-A").map_err(NftError::Spawn)?,
                        (false, true) => run("-D").map_err(NftError::Spawn)?,
                        _ => continue,
                    };
                    if !out.status.success() {
                        let err = String::from_utf8_lossy(&out.stderr);
                        if err.contains("Permission denied") || err.contains("Operation not permitted") {
                            return Err(NftError::NotPermitted);
                        }
                        let first = err.lines().next().unwrap_or("no error message").trim();
                        return Err(NftError::Failed(format!("{tool}: {}", crate::escape::printable(first))));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Whether the table is loaded in this network namespace.
pub fn loaded() -> Result<bool, NftError> {
    match nft(&["list", "table", "inet", "exfilmon"], None) {
        Ok(_) => Ok(true),
        Err(NftError::Failed(m)) if m.contains("No such file") => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/nft/exfilmon.nft");

    /// The shipped file is the default rendering; regenerate it with
    /// `cargo run -- nft > nft/exfilmon.nft` after changing the renderer.
    #[test]
    fn shipped_ruleset_is_the_default_rendering() {
        let shipped = std::fs::read_to_string(SHIPPED).unwrap();
        assert!(
            shipped == render(&Config::default()),
            "nft/exfilmon.nft differs from `exfilmon nft`; regenerate: cargo run -- nft > nft/exfilmon.nft"
        );
    }

    #[test]
    fn config_reaches_the_ruleset() {
        let text = "[nflog]\ngroup = 12\nsnaplen = 96\nqueue_threshold = 8\n\
                    [nft]\nallow_v4 = [\"192.0.2.0/24\", \"198.51.100.7\"]\nallow_v6 = [\"2001:db8::/32\"]\n\
                    interfaces = [\"eth0\", \"wg*\"]\naudit = true\n";
        let r = render(&Config::parse(text, Path::new("t.toml")).unwrap());
        assert!(
            r.contains("counter log prefix \"out\" group 12 snaplen 96 queue-threshold 8 comment \"exfilmon-egress\""),
            "{r}"
        );
        assert!(r.contains("udp dport 53 counter log prefix \"out\" group 12 accept"), "{r}");
        assert!(r.contains("elements = { 192.0.2.0/24, 198.51.100.7 }"), "{r}");
        assert!(r.contains("elements = { 2001:db8::/32 }"), "{r}");
        assert!(r.contains("oifname != { \"eth0\", \"wg*\" } accept"), "{r}");
        assert_eq!(r.matches("jump audit_trail\n").count(), 2, "{r}");
        assert!(r.contains("ct state new log level audit"), "{r}");
        assert!(!render(&Config::default()).contains("chain audit_trail"));
    }

    /// Issue 17: the blocked sets and their drop rules are always there (empty, they drop
    /// nothing); the DNS queue only with `dns_queue`, and never as a statement of this table.
    #[test]
    fn blocked_sets_always_and_the_dns_queue_only_when_asked() {
        let plain = render(&Config::default());
        assert!(plain.contains("set blocked {\n\t\ttypeof meta skuid\n\t\tflags timeout\n\t}"), "{plain}");
        assert!(plain.contains("oif \"lo\" accept comment \"exfilmon-skip-lo\"\n\t\tmeta skuid @blocked counter drop"));
        assert!(plain.contains("ip saddr @blocked_v4 counter drop comment \"exfilmon-fwd-blocked-v4\""));
        assert!(
            !plain.contains("NFQUEUE") && !plain.contains("queue flags") && !plain.contains("queue num"),
            "{plain}"
        );
        let queued = render(&Config::parse("[response]\ndns_queue = true\n", Path::new("t")).unwrap());
        let text =
            "-p udp|tcp --dport 53 -m comment --comment exfilmon-dns-queue -j NFQUEUE --queue-num 7117 --queue-bypass";
        assert!(queued.contains(text), "{queued}");
        assert_eq!(
            queued.lines().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')).collect::<Vec<_>>(),
            plain.lines().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')).collect::<Vec<_>>(),
            "the table's rules are the same either way"
        );
        assert_eq!(element(Principal::Uid(1001)), ("blocked", "1001".into()));
        assert_eq!(element(Principal::Host("2001:db8::1".parse().unwrap())), ("blocked_v6", "2001:db8::1".into()));
    }
}
