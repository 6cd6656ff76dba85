//! Containment (`[response]`): what an alert makes the kernel do, decided here without I/O.
//!
//! - **Blocks.** An alert of a kind listed in `block` (at or above its severity) puts its
//!   principal into the ruleset's `blocked` set (uids, `meta skuid`) or `blocked_v4`/`_v6`
//!   (host principals: forwarded traffic, by source address) with a timeout of `block_for`:
//!   the kernel then drops the principal's egress, connections already open included, and
//!   lets it go by itself when the timeout passes. `exempt` users, groups and uid ranges are
//!   never blocked (root by default). The daemon applies what [`Policy::block`] decides
//!   through `nft` (`daemon::respond`); `exfilmon block`/`unblock` do the same by hand.
//! - **DNS holds.** With `dns_queue = true` outbound DNS queries pass through NFQUEUE
//!   ([`dnsq`]) and queries under a domain with an open `dns_tunnel` episode for the asking
//!   principal are dropped, the rest accepted. [`Holds`] is that small, capped table.
//!
//! Everything is opt-in (an empty `block` blocks nothing) and fails open: an element the kernel
//! holds expires on its own, and the queue has the `bypass` flag, so a stopped or killed
//! monitor leaves DNS working.

pub mod dnsq;

use std::collections::HashMap;
use std::time::Duration;

use serde::{de, Deserialize, Deserializer};
use serde_json::json;

use crate::alert::{Alert, AlertKind, Severity};
use crate::detect::scope::{Directory, Range};
use crate::principal::Principal;
use crate::trail::{Event, EventKind};
use crate::units::de::duration;

/// `[response]`: which alerts contain their principal, for how long, who never is.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseConfig {
    /// Alert kinds, optionally `kind:severity` (that severity or higher), that block.
    pub block: Vec<BlockOn>,
    /// How long a block lasts; the kernel lifts it by itself then.
    #[serde(deserialize_with = "block_for")]
    pub block_for: Duration,
    /// Users, groups (by name) and uids or uid ranges (`"0-999"`) never blocked.
    pub exempt: Vec<Exempt>,
    /// Send outbound DNS queries through NFQUEUE for per-query verdicts (fail-open).
    pub dns_queue: bool,
}

impl Default for ResponseConfig {
    fn default() -> Self {
        ResponseConfig {
            block: Vec::new(),
            block_for: Duration::from_secs(3600),
            exempt: vec![Exempt::Uids(Range { lo: 0, hi: 0 })],
            dns_queue: false,
        }
    }
}

fn block_for<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let d = duration(d)?;
    // nft keeps timeouts in milliseconds in 64 bits, but a block nobody remembers is a
    // forgotten outage: a month at most.
    if d < Duration::from_secs(1) || d > Duration::from_secs(30 * 86_400) {
        return Err(de::Error::custom("block_for must be between 1s and 30d"));
    }
    Ok(d)
}

/// One entry of `block`: an alert kind and the least severity that blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockOn {
    pub kind: AlertKind,
    pub severity: Severity,
}

/// Kinds that name a principal whose egress it is; the others (monitor loss, audit state) do not.
const BLOCKABLE: [AlertKind; 5] =
    [AlertKind::Volume, AlertKind::DnsTunnel, AlertKind::IcmpTunnel, AlertKind::SensitiveEgress, AlertKind::Baseline];

impl<'de> Deserialize<'de> for BlockOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<BlockOn, D::Error> {
        let s = String::deserialize(d)?;
        let (kind, severity) = s.split_once(':').unwrap_or((&s, "low"));
        let names: Vec<&str> = BLOCKABLE.iter().map(|k| k.as_str()).collect();
        let kind = AlertKind::from_name(kind.trim()).filter(|k| BLOCKABLE.contains(k)).ok_or_else(|| {
            de::Error::custom(format!(
                "{:?}: block takes one of {} (optionally kind:severity)",
                crate::escape::printable(&s),
                names.join(", ")
            ))
        })?;
        let severity = Severity::from_name(severity.trim()).ok_or_else(|| {
            de::Error::custom(format!("{:?}: severity is low, medium or high", crate::escape::printable(&s)))
        })?;
        Ok(BlockOn { kind, severity })
    }
}

/// One entry of `exempt`, resolved to numbers when the configuration is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exempt {
    /// A user name (resolved to its uid) or group name (not yet resolved).
    Name(String),
    Uids(Range),
    /// A group: its gid (for users whose primary group it is) and its listed members.
    Group(u32, Vec<u32>),
}

impl<'de> Deserialize<'de> for Exempt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Exempt, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u32),
            S(String),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::N(n) => Exempt::Uids(Range { lo: n, hi: n }),
            Raw::S(s) if s.starts_with(|c: char| c.is_ascii_digit()) => {
                Exempt::Uids(Range::parse(&s).ok_or_else(|| {
                    de::Error::custom(format!(
                        "{:?} is not a uid or a range like \"0-999\"",
                        crate::escape::printable(&s)
                    ))
                })?)
            }
            Raw::S(s) => Exempt::Name(s),
        })
    }
}

impl ResponseConfig {
    /// Anything to do for the live monitor.
    pub fn enabled(&self) -> bool {
        !self.block.is_empty() || self.dns_queue
    }

    /// Names to numbers: a name is a user, else a group; the error says which is missing.
    pub fn resolve(&mut self, dir: &dyn Directory) -> Result<(), String> {
        for e in &mut self.exempt {
            if let Exempt::Name(n) = e {
                *e = match (dir.uid(n), dir.group(n)) {
                    (Some(uid), _) => Exempt::Uids(Range { lo: uid, hi: uid }),
                    (None, Some((gid, members))) => Exempt::Group(gid, members),
                    (None, None) => return Err(format!("exempt: no user or group named {n:?}")),
                };
            }
        }
        Ok(())
    }

    /// Whether `who` is never blocked; `primary_gid` is the user's login group, if known.
    pub fn exempt(&self, who: Principal, primary_gid: Option<u32>) -> bool {
        let Some(uid) = who.uid() else { return false };
        self.exempt.iter().any(|e| match e {
            Exempt::Uids(r) => r.contains(uid),
            Exempt::Group(gid, members) => primary_gid == Some(*gid) || members.contains(&uid),
            Exempt::Name(_) => false,
        })
    }
}

/// What `[response]` decides for an alert.
pub struct Policy<'a> {
    pub config: &'a ResponseConfig,
}

/// A block of one principal until a time: what the kernel is asked to hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub principal: Principal,
    pub since_us: i64,
    pub until_us: i64,
    /// What caused it: the alert's kind and summary, or "by hand".
    pub reason: String,
}

impl Policy<'_> {
    /// The block `alert` calls for, if any (before exemptions, which need the user's group).
    pub fn block(&self, alert: &Alert) -> Option<Block> {
        let hit = self.config.block.iter().any(|b| b.kind == alert.kind && alert.severity >= b.severity);
        hit.then(|| Block {
            principal: alert.principal,
            since_us: alert.ts_us,
            until_us: alert.ts_us.saturating_add(micros(self.config.block_for)),
            reason: format!("{} ({}): {}", alert.kind.as_str(), alert.severity.as_str(), alert.summary),
        })
    }

    /// The DNS hold a `dns_tunnel` alert opens: its principal and registered domain, until
    /// the detector's window has passed without another alert renewing it.
    pub fn hold(&self, alert: &Alert, window: Duration) -> Option<(Principal, String, i64)> {
        if !self.config.dns_queue || alert.kind != AlertKind::DnsTunnel {
            return None;
        }
        let domain = alert.details.get("domain").and_then(|d| d.as_str()).or(alert.dst.as_deref())?;
        Some((alert.principal, domain.to_ascii_lowercase(), alert.ts_us.saturating_add(micros(window))))
    }
}

/// What a replay's alerts would have blocked, in the order the blocks began: one block per
/// principal and stretch of time, a later alert inside a block extending it as it would live.
/// `primary_gid` looks up a user's login group for group exemptions.
pub fn would_block(config: &ResponseConfig, alerts: &[Alert], primary_gid: impl Fn(u32) -> Option<u32>) -> Vec<Block> {
    let policy = Policy { config };
    let mut sorted: Vec<&Alert> = alerts.iter().collect();
    sorted.sort_by_key(|a| a.ts_us);
    let mut blocks: Vec<Block> = Vec::new();
    for b in sorted.into_iter().filter_map(|a| policy.block(a)) {
        if config.exempt(b.principal, b.principal.uid().and_then(&primary_gid)) {
            continue;
        }
        match blocks.iter_mut().rev().find(|o| o.principal == b.principal && o.until_us > b.since_us) {
            Some(open) => open.until_us = open.until_us.max(b.until_us),
            None => blocks.push(b),
        }
    }
    blocks
}

/// The DNS holds a replay's `dns_tunnel` alerts would have opened (with `dns_queue`), one per
/// principal, domain and stretch of time, as `would_block` events.
pub fn would_hold(
    config: &ResponseConfig,
    alerts: &[Alert],
    window: Duration,
    primary_gid: impl Fn(u32) -> Option<u32>,
) -> Vec<Event> {
    let policy = Policy { config };
    let mut sorted: Vec<&Alert> = alerts.iter().collect();
    sorted.sort_by_key(|a| a.ts_us);
    let mut holds: Vec<(Principal, String, i64, i64)> = Vec::new();
    for a in sorted {
        let Some((who, domain, until)) = policy.hold(a, window) else { continue };
        if config.exempt(who, who.uid().and_then(&primary_gid)) {
            continue;
        }
        match holds.iter_mut().rev().find(|h| h.0 == who && h.1 == domain && h.3 > a.ts_us) {
            Some(open) => open.3 = open.3.max(until),
            None => holds.push((who, domain, a.ts_us, until)),
        }
    }
    let rfc = crate::units::rfc3339;
    holds
        .into_iter()
        .map(|(who, domain, since, until)| {
            let summary = format!(
                "would have dropped DNS queries of {who} under {domain} from {} until {}",
                rfc(since),
                rfc(until)
            );
            let mut e = Event::now(EventKind::WouldBlock, Severity::High, summary, details(who, until));
            e.details["since_us"] = json!(since);
            e.details["domain"] = json!(domain);
            e
        })
        .collect()
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The trail's record of a block set (`by`: the alert's or the person's word).
pub fn blocked_event(b: &Block, replay: bool) -> Event {
    let (kind, verb) =
        if replay { (EventKind::WouldBlock, "would have blocked") } else { (EventKind::Blocked, "blocked") };
    let summary = format!(
        "{verb} egress of {} from {} until {}: {}",
        b.principal,
        crate::units::rfc3339(b.since_us),
        crate::units::rfc3339(b.until_us),
        b.reason
    );
    let mut e = Event::now(kind, Severity::High, summary, details(b.principal, b.until_us));
    e.details["since_us"] = json!(b.since_us);
    e.details["reason"] = json!(b.reason);
    e
}

/// A block lifted early (`exfilmon unblock`) or gone by its timeout.
pub fn lifted_event(who: Principal, until_us: i64, expired: bool) -> Event {
    let (kind, summary) = if expired {
        (EventKind::BlockExpired, format!("the block of {who} expired"))
    } else {
        (EventKind::Unblocked, format!("the block of {who} was lifted by hand"))
    };
    Event::now(kind, Severity::Medium, summary, details(who, until_us))
}

/// What every block event carries: the principal as text (the key `report health` groups by),
/// its uid or address, and the block's end.
fn details(who: Principal, until_us: i64) -> serde_json::Value {
    json!({
        "principal": who.to_string(),
        "uid": who.uid(),
        "host": who.host().map(|h| h.to_string()),
        "until_us": until_us,
        "until": crate::units::rfc3339(until_us),
    })
}

/// Open `dns_tunnel` episodes per (principal, registered domain), for the DNS verdicts.
/// Capped at [`Holds::CAP`] entries: past it the entry ending first makes room (counted).
#[derive(Debug, Default)]
pub struct Holds {
    /// Per principal: its held domains and when each hold ends.
    by: HashMap<Principal, Vec<(String, i64)>>,
    len: usize,
    pub evicted: u64,
}

impl Holds {
    pub const CAP: usize = 1024;

    /// Holds `domain` for `who` until `until_us` (or later, if it was held longer).
    pub fn hold(&mut self, who: Principal, domain: String, until_us: i64, now_us: i64) {
        let list = self.by.entry(who).or_default();
        if let Some(held) = list.iter_mut().find(|(d, _)| *d == domain) {
            held.1 = held.1.max(until_us);
            return;
        }
        list.push((domain, until_us));
        self.len += 1;
        self.by.retain(|_, l| {
            l.retain(|(_, u)| *u > now_us);
            !l.is_empty()
        });
        self.len = self.by.values().map(Vec::len).sum();
        while self.len > Self::CAP {
            let first = self.by.iter().flat_map(|(p, l)| l.iter().map(move |(d, u)| (*u, *p, d.clone()))).min();
            let Some((_, p, d)) = first else { break };
            if let Some(l) = self.by.get_mut(&p) {
                l.retain(|(x, _)| *x != d);
            }
            self.by.retain(|_, l| !l.is_empty());
            self.len -= 1;
            self.evicted += 1;
        }
    }

    /// Whether a query for `name` (lower-case, no trailing dot) by `who` is held at `now_us`:
    /// the name is a held domain or under one, label by label. A tunnel behind an appended
    /// search suffix (`<data>.t.example.com.corp.local`) is held too.
    pub fn held(&self, who: Principal, name: &str, now_us: i64) -> bool {
        let Some(list) = self.by.get(&who) else { return false };
        list.iter().any(|(d, u)| *u > now_us && contains_labels(name, d))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// `domain` appears in `name` on label boundaries: `name` is it, ends with `.domain`, or has
/// `.domain.` inside.
fn contains_labels(name: &str, domain: &str) -> bool {
    name.match_indices(domain).any(|(i, _)| {
        let end = i + domain.len();
        (i == 0 || name.as_bytes()[i - 1] == b'.') && (end == name.len() || name.as_bytes()[end] == b'.')
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn alert(kind: AlertKind, severity: Severity, who: Principal) -> Alert {
        Alert {
            ts_us: 1_000_000,
            kind,
            severity,
            principal: who,
            dst: Some("example.test".into()),
            bytes: 0,
            summary: "s".into(),
            details: json!({ "domain": "tun.example.test" }),
        }
    }

    #[test]
    fn block_entries_match_kind_and_least_severity() {
        let c = Config::parse(
            "[response]\nblock = [\"volume:high\", \"dns_tunnel\"]\nblock_for = \"3s\"\n",
            Path::new("t"),
        )
        .unwrap()
        .response;
        let p = Policy { config: &c };
        let u = Principal::Uid(1001);
        assert!(p.block(&alert(AlertKind::Volume, Severity::Medium, u)).is_none());
        let b = p.block(&alert(AlertKind::Volume, Severity::High, u)).unwrap();
        assert_eq!((b.since_us, b.until_us), (1_000_000, 4_000_000));
        assert!(p.block(&alert(AlertKind::DnsTunnel, Severity::Low, u)).is_some());
        assert!(p.block(&alert(AlertKind::IcmpTunnel, Severity::High, u)).is_none());
        // Holds only with the queue on.
        assert!(p.hold(&alert(AlertKind::DnsTunnel, Severity::Low, u), Duration::from_secs(1)).is_none());
    }

    #[test]
    fn bad_entries_name_their_line() {
        for (bad, says) in [
            ("block = [\"monitor_loss\"]", "block takes one of"),
            ("block = [\"volume:urgent\"]", "severity is"),
            ("block_for = \"500ms\"", "between 1s"),
            ("block_for = \"31d\"", "between 1s"),
            ("exempt = [\"5-1\"]", "not a uid"),
            ("exempt = [\"no-such-user-or-group-x\"]", "no user or group"),
            ("dns_queu = true", "unknown field"),
        ] {
            let err = Config::parse(&format!("[response]\n{bad}\n"), Path::new("t.toml")).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
            assert!(err.starts_with("t.toml:"), "{bad}: {err}");
        }
    }

    #[test]
    fn exempt_users_groups_and_ranges() {
        let c = Config::parse("[response]\nexempt = [\"root\", \"100-199\", \"daemon\"]\n", Path::new("t"))
            .unwrap()
            .response;
        assert!(c.exempt(Principal::Uid(0), None));
        assert!(c.exempt(Principal::Uid(150), None));
        assert!(!c.exempt(Principal::Uid(1001), None));
        assert!(!c.exempt(Principal::Host("192.0.2.1".parse().unwrap()), None));
        // Root is exempt unless the list says otherwise.
        assert!(ResponseConfig::default().exempt(Principal::Uid(0), None));
        let groups = ResponseConfig { exempt: vec![Exempt::Group(50, vec![1002])], ..ResponseConfig::default() };
        assert!(groups.exempt(Principal::Uid(1001), Some(50)));
        assert!(groups.exempt(Principal::Uid(1002), Some(7)));
        assert!(!groups.exempt(Principal::Uid(1003), Some(7)));
    }

    #[test]
    fn holds_match_the_domain_and_names_under_it_for_that_principal_only() {
        let (a, b) = (Principal::Uid(1), Principal::Uid(2));
        let mut h = Holds::default();
        h.hold(a, "example.test".into(), 100, 0);
        assert!(h.held(a, "example.test", 50));
        assert!(h.held(a, "abcd.tun.example.test", 50));
        assert!(h.held(a, "x.example.test.corp.local", 50));
        assert!(!h.held(a, "notexample.test", 50));
        assert!(!h.held(a, "other.test", 50));
        assert!(!h.held(b, "x.example.test", 50));
        assert!(!h.held(a, "x.example.test", 100), "ends at its time");
    }

    #[test]
    fn replayed_alerts_give_one_block_per_stretch_and_spare_the_exempt() {
        let c = ResponseConfig {
            block: vec![BlockOn { kind: AlertKind::Volume, severity: Severity::Low }],
            block_for: Duration::from_secs(10),
            ..ResponseConfig::default()
        };
        let at = |ts: i64, who: Principal| Alert { ts_us: ts, ..alert(AlertKind::Volume, Severity::High, who) };
        let (u, root) = (Principal::Uid(1001), Principal::Uid(0));
        let alerts = [at(30_000_000, u), at(5_000_000, u), at(1_000_000, u), at(2_000_000, root)];
        let blocks = would_block(&c, &alerts, |_| None);
        let spans: Vec<(i64, i64)> = blocks.iter().map(|b| (b.since_us, b.until_us)).collect();
        assert_eq!(spans, [(1_000_000, 15_000_000), (30_000_000, 40_000_000)], "root is exempt: {blocks:?}");
    }

    #[test]
    fn replayed_tunnel_alerts_give_one_hold_per_domain_and_stretch() {
        let c = ResponseConfig { dns_queue: true, ..ResponseConfig::default() };
        let at = |ts: i64, who: Principal| Alert { ts_us: ts, ..alert(AlertKind::DnsTunnel, Severity::Medium, who) };
        let u = Principal::Uid(1001);
        let alerts = [at(1_000_000, u), at(2_000_000, u), at(2_000_000, Principal::Uid(0))];
        let holds = would_hold(&c, &alerts, Duration::from_secs(60), |_| None);
        assert_eq!(holds.len(), 1, "{holds:?}");
        assert_eq!(holds[0].details["domain"], "tun.example.test");
        assert_eq!(holds[0].details["until_us"], 62_000_000);
        assert!(holds[0].summary.starts_with("would have dropped DNS queries of uid 1001 under tun.example.test"));
        let off = ResponseConfig::default();
        assert!(would_hold(&off, &alerts, Duration::from_secs(60), |_| None).is_empty(), "only with dns_queue");
    }

    /// Hostile packets on the queue: whatever arrives, the name is found or not, never a panic.
    #[test]
    fn queue_names_of_random_bytes_never_panic() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 0..2000usize {
            let bytes: Vec<u8> = (0..len % 700)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let mut ip = bytes.clone();
            if ip.len() > 20 {
                ip[0] = 0x45;
                ip[9] = if len % 2 == 0 { 17 } else { 6 };
            }
            let _ = dnsq::name(&bytes);
            let _ = dnsq::name(&ip);
        }
    }

    #[test]
    fn holds_stay_capped() {
        let mut h = Holds::default();
        for i in 0..(Holds::CAP as i64 + 10) {
            h.hold(Principal::Uid(i as u32), format!("d{i}.test"), 1000 + i, 0);
        }
        assert_eq!(h.len(), Holds::CAP);
        assert_eq!(h.evicted, 10);
        assert!(!h.held(Principal::Uid(0), "d0.test", 1), "the one ending first made room");
    }
}
