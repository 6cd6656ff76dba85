//! DNS tunnel detection: per (principal, registered domain), how many unique names were asked,
//! how many bytes they hold, and how many look encoded, over a sliding window.
//!
//! Single queries say little (a polling tunnel's keep-alives are short and plain), so the
//! unit of judgement is the registered domain (from the public suffix list, never "the last
//! two labels"; an appended search suffix such as `corp.local` is removed first, see
//! `domain.rs`): a tunnel must put its data in ever-new names under a domain whose server it
//! controls. Four rules, any of which opens an episode (one alert, escalations as it grows):
//! encoded-looking unique names, unique names, unique name bytes within the window, and a
//! burst of unique names within seconds (a short-lived tunnel at machine speed). Names under allow-listed
//! domains are counted in the stored aggregates but never judged.
//!
//! UDP to port 53 that does not parse as DNS is evidence of its own (raw-mode tunnels such as
//! iodine's), judged per (principal, destination address).
//!
//! Memory is bounded: at most `max_pairs` (principal, domain) states and `max_names` remembered
//! names (two generations of half a window each, so a name is "seen" for between half a window
//! and a window). States idle for a window are dropped at the minute sweep; when the table is
//! still full, idle-longest states are evicted early and counted.

mod alert;
mod config;
mod domain;
mod pair;
mod raw;
mod resume;
mod rows;

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;

use rustc_hash::{FxHashMap, FxHashSet};

use super::tally::BUCKETS;
use super::{Detector, Findings, Past, Seen, Tick};
use crate::alert::Alert;
use crate::decode::dns;
use crate::decode::{Direction, Packet, L4};
use crate::principal::Principal;
use crate::rows::DnsRow;
use crate::units::counters;

pub use config::{DnsConfig, DEFAULT_DNS_ALLOW};
use pair::Pair;
use raw::Raw;
pub use rows::row_flags;

/// How long after a user's query to a local resolver the resolver's upstream query for the
/// same name is credited to the user.
const CREDIT_US: i64 = 5_000_000;
/// Local askers remembered at most (names asked within [`CREDIT_US`] are what matter).
const MAX_ASKERS: usize = 65_536;

counters! {
    /// What the DNS path counted; every payload it did not analyse is under a reason.
    pub struct DnsCounters {
        /// Queries analysed.
        queries => "dns_queries",
        /// Of those, found on a port other than 53.
        other_port => "dns_other_port",
        /// Of those, under an allow-listed domain.
        allowed => "dns_allowed",
        /// Responses leaving (this host answers DNS): not analysed.
        responses => "dns_responses",
        /// UDP payloads to port 53 that are not DNS (raw-mode tunnel evidence).
        not_dns => "dns_not_dns_port53",
        /// TCP payloads to port 53 that do not start a DNS message (continuations).
        tcp_unparsed => "dns_tcp_unparsed",
        /// Pair states evicted early because the table was full.
        pairs_evicted => "dns_pairs_evicted",
        /// Queries not judged because the table was full even after eviction.
        pairs_full => "dns_pairs_full",
        /// Name generations retired before their time because they were full.
        names_rotated_early => "dns_names_rotated_early",
        /// Queries to a resolver on this host (loopback): who asked, not judged themselves.
        local_queries => "dns_local_queries",
        /// Upstream queries credited to the local asker of the same name.
        credited => "dns_credited_to_local_asker",
        /// Local askers forgotten early because their table was full.
        askers_dropped => "dns_local_askers_dropped",
    }
}

pub struct DnsDetector {
    cfg: DnsConfig,
    window_us: i64,
    bucket_us: i64,
    burst_half_us: i64,
    allow: FxHashSet<Box<[u8]>>,
    /// Keyed hashing: query names are chosen by the sender, who must not be able to make two
    /// names collide and so hide a unique one.
    hasher: RandomState,
    pairs: FxHashMap<(Principal, u64), Pair>,
    /// Hashes of (principal, name) seen: current generation, previous generation.
    seen: [FxHashSet<u64>; 2],
    seen_since: i64,
    raw: FxHashMap<(Principal, IpAddr), Raw>,
    /// Names asked of a resolver on this host: hash of the lower-cased name → (asker, time).
    askers: FxHashMap<u64, (Principal, i64)>,
    rows: Vec<DnsRow>,
    counters: DnsCounters,
}

impl DnsDetector {
    pub fn new(cfg: &DnsConfig) -> DnsDetector {
        let window_us = i64::try_from(cfg.window.as_micros()).unwrap_or(i64::MAX).max(BUCKETS as i64);
        let allow = cfg.allow.iter().chain(&cfg.allow_extra).map(|d| d.as_bytes().into()).collect();
        DnsDetector {
            cfg: cfg.clone(),
            window_us,
            bucket_us: window_us / BUCKETS as i64,
            burst_half_us: i64::try_from(cfg.burst_window.as_micros() / 2).unwrap_or(i64::MAX).max(1),
            allow,
            hasher: RandomState::new(),
            pairs: FxHashMap::default(),
            seen: [FxHashSet::default(), FxHashSet::default()],
            seen_since: i64::MIN,
            raw: FxHashMap::default(),
            askers: FxHashMap::default(),
            rows: Vec::new(),
            counters: DnsCounters::default(),
        }
    }

    /// Looks at a UDP or TCP packet: port 53 always, other ports when the payload has the
    /// shape of a query (a few byte compares). Anything else returns at once.
    #[inline]
    pub fn observe(&mut self, p: &Packet<'_>, who: Principal, c: &mut DnsCounters, alerts: &mut Vec<Alert>) {
        if p.direction == Direction::Local {
            return self.local(p, who, c);
        }
        if p.direction == Direction::Answer {
            return;
        }
        match p.l4 {
            L4::Udp { payload } if p.dport == 53 => match dns::parse(payload) {
                Ok(q) => self.query(p, who, &q, c, alerts),
                Err(_) => self.raw(p, who, c, alerts),
            },
            L4::Udp { payload } if self.cfg.other_ports && dns::looks_like_query(payload) => {
                self.other_port(p, who, payload, c, alerts)
            }
            L4::Tcp { payload } if p.dport == 53 && !payload.is_empty() => {
                for msg in dns::tcp_messages(payload) {
                    match dns::parse(msg) {
                        Ok(q) => self.query(p, who, &q, c, alerts),
                        Err(_) => {
                            c.tcp_unparsed += 1;
                            break;
                        }
                    }
                }
            }
            L4::Tcp { payload }
                if self.cfg.other_ports
                    && payload.len() >= 20
                    && usize::from(u16::from_be_bytes([payload[0], payload[1]])) == payload.len() - 2
                    && dns::looks_like_query(&payload[2..]) =>
            {
                self.other_port(p, who, &payload[2..], c, alerts)
            }
            _ => {}
        }
    }

    /// A query to a resolver on this host: remembered (who asked for the name, when) so the
    /// resolver's upstream query is credited to the asker; never judged itself.
    fn local(&mut self, p: &Packet<'_>, who: Principal, c: &mut DnsCounters) {
        let msg = match p.l4 {
            L4::Udp { payload } if p.dport == 53 => payload,
            L4::Tcp { payload } if p.dport == 53 => dns::tcp_messages(payload).next().unwrap_or(&[]),
            _ => return,
        };
        let Ok(q) = dns::parse(msg) else { return };
        if q.flags.contains(dns::Flags::RESPONSE) {
            return;
        }
        c.local_queries += 1;
        let mut buf = [0u8; dns::MAX_NAME_LEN];
        let n = pair::lower_name(&q, &mut buf);
        if self.askers.len() >= MAX_ASKERS {
            let horizon = p.ts_us.saturating_sub(CREDIT_US);
            let before = self.askers.len();
            self.askers.retain(|_, (_, t)| *t >= horizon);
            if self.askers.len() >= MAX_ASKERS {
                self.askers.clear();
            }
            c.askers_dropped += (before - self.askers.len()) as u64;
        }
        self.askers.insert(self.hasher.hash_one(&buf[..n]), (who, p.ts_us));
    }

    /// The principal an upstream query is judged under: the local asker of the same name
    /// within [`CREDIT_US`] before it, else its sender (the resolver, or a program asking a
    /// remote resolver itself).
    pub(super) fn credit(&mut self, name: &[u8], who: Principal, ts: i64, c: &mut DnsCounters) -> Principal {
        if self.askers.is_empty() {
            return who;
        }
        match self.askers.get(&self.hasher.hash_one(name)) {
            Some(&(asker, t)) if asker != who && ts >= t && ts - t <= CREDIT_US => {
                c.credited += 1;
                asker
            }
            _ => who,
        }
    }

    /// A DNS-shaped payload on another port counts only if it parses without any oddity.
    fn other_port(&mut self, p: &Packet<'_>, who: Principal, msg: &[u8], c: &mut DnsCounters, alerts: &mut Vec<Alert>) {
        if let Ok(q) = dns::parse(msg) {
            if q.is_clean_query() {
                c.other_port += 1;
                self.query(p, who, &q, c, alerts);
            }
        }
    }

    /// Remembers a (principal, name) hash; true if it was not seen within the last half
    /// window or more.
    fn remember(&mut self, key: u64, ts: i64, c: &mut DnsCounters) -> bool {
        let half = self.window_us / 2;
        let full = self.seen[0].len() >= self.cfg.max_names.div_ceil(2);
        if ts.saturating_sub(self.seen_since) >= half || full {
            if full && ts.saturating_sub(self.seen_since) < half {
                c.names_rotated_early += 1;
            }
            let current = std::mem::take(&mut self.seen[0]);
            self.seen[1] = current;
            self.seen_since = ts;
        }
        let new = !self.seen[1].contains(&key);
        self.seen[0].insert(key) && new
    }

    fn is_allowed(&self, name: &[u8]) -> bool {
        if self.allow.is_empty() {
            return false;
        }
        let mut rest = name;
        loop {
            if self.allow.contains(rest) {
                return true;
            }
            match rest.iter().position(|&b| b == b'.') {
                Some(i) => rest = &rest[i + 1..],
                None => return false,
            }
        }
    }

    /// Makes room for one more pair state: true if there is room.
    fn make_room(&mut self, ts: i64, c: &mut DnsCounters) -> bool {
        if self.pairs.len() < self.cfg.max_pairs {
            return true;
        }
        // Evict the idle half (by last activity), never an open episode.
        let mut idle: Vec<i64> = self.pairs.values().filter(|p| !p.episode.is_open()).map(|p| p.last_us).collect();
        if idle.is_empty() {
            return false;
        }
        let mid = idle.len() / 2;
        let (_, &mut cutoff, _) = idle.select_nth_unstable(mid);
        let rows = &mut self.rows;
        let before = self.pairs.len();
        self.pairs.retain(|_, p| {
            let keep = p.episode.is_open() || p.last_us > cutoff;
            if !keep && p.row.queries > 0 {
                rows.push(p.take_row(ts));
            }
            keep
        });
        c.pairs_evicted += (before - self.pairs.len()) as u64;
        self.pairs.len() < self.cfg.max_pairs
    }

    /// Closes the rows of minutes before `minute_us` and forgets states idle for a window.
    pub fn sweep(&mut self, minute_us: i64) {
        let horizon = minute_us.saturating_sub(self.window_us);
        let rows = &mut self.rows;
        self.pairs.retain(|_, p| {
            if p.row.minute_us < minute_us && p.row.queries > 0 {
                rows.push(p.take_row(minute_us));
            }
            p.last_us >= horizon || p.episode.is_open() && p.last_us >= horizon.saturating_sub(self.window_us)
        });
        self.raw.retain(|_, r| r.last_us >= horizon);
        let recent = minute_us.saturating_sub(60_000_000);
        self.askers.retain(|_, (_, t)| *t >= recent);
    }

    /// Closes every open row.
    pub fn drain(&mut self) {
        for p in self.pairs.values_mut() {
            if p.row.queries > 0 {
                let minute = p.row.minute_us;
                self.rows.push(p.take_row(minute));
            }
        }
    }

    /// Rows closed so far, handed over in a stable order: pairs are keyed by a per-process
    /// random hash, so their table's order is not, and the store numbers principals in the
    /// order rows arrive.
    pub fn take_rows(&mut self) -> Vec<DnsRow> {
        self.rows
            .sort_unstable_by(|a, b| (a.minute_us, a.principal, &a.domain).cmp(&(b.minute_us, b.principal, &b.domain)));
        std::mem::take(&mut self.rows)
    }

    /// (principal, domain) states held.
    pub fn pairs(&self) -> usize {
        self.pairs.len()
    }
}

impl Detector for DnsDetector {
    fn packet(&mut self, seen: &Seen<'_, '_>, out: &mut Findings) {
        let mut c = self.counters;
        self.observe(seen.packet, seen.sent.principal, &mut c, &mut out.alerts);
        self.counters = c;
    }

    fn resume(&mut self, past: Past<'_>) {
        if let Past::Dns(row) = past {
            self.resume_row(row);
        }
    }

    fn tick(&mut self, tick: Tick, out: &mut Findings) {
        match tick {
            Tick::Minute(minute_us) => self.sweep(minute_us),
            Tick::Flush(_) => self.drain(),
        }
        out.dns_rows.append(&mut self.take_rows());
    }

    fn counters(&self, f: &mut dyn FnMut(&'static str, u64)) {
        self.counters.each(f)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use serde_json::json;

    use super::rows::ROW_SAMPLES;
    use super::*;
    use crate::alert::Severity;
    use crate::decode::dns::tests::{message, query as wire_query};
    use crate::rows::MINUTE_US;

    const S: i64 = 1_000_000;
    const ALICE: Principal = Principal::Uid(1001);

    /// Drives a detector with UDP payloads to port 53 at the given times.
    struct Drive {
        d: DnsDetector,
        c: DnsCounters,
        alerts: Vec<Alert>,
    }

    impl Drive {
        fn new(cfg: DnsConfig) -> Drive {
            Drive { d: DnsDetector::new(&cfg), c: DnsCounters::default(), alerts: Vec::new() }
        }

        fn send(&mut self, ts: i64, who: Principal, dport: u16, payload: &[u8]) {
            self.send_to(ts, who, dport, payload, Direction::Initiated, Ipv4Addr::new(10, 77, 0, 1));
        }

        fn send_to(&mut self, ts: i64, who: Principal, dport: u16, payload: &[u8], d: Direction, to: Ipv4Addr) {
            let p = Packet {
                ts_us: ts,
                uid: who.uid(),
                gid: None,
                src: IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2)),
                dst: IpAddr::V4(to),
                proto: 17,
                sport: 40000,
                dport,
                wire_len: payload.len() as u32 + 28,
                direction: d,
                l4: L4::Udp { payload },
            };
            self.d.observe(&p, who, &mut self.c, &mut self.alerts);
        }

        fn ask(&mut self, ts: i64, who: Principal, name: &str, qtype: u16) {
            self.send(ts, who, 53, &wire_query(name, qtype));
        }
    }

    /// Deterministic pseudo-random base32 text.
    fn base32(seed: u64, len: usize) -> String {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b"abcdefghijklmnopqrstuvwxyz234567"[(x % 32) as usize] as char
            })
            .collect()
    }

    #[test]
    fn slow_base32_exfiltration_alerts_once_within_ten_queries() {
        let mut t = Drive::new(DnsConfig::default());
        for i in 0..200u64 {
            // One query every 7 s: far under any rate limit.
            t.ask(i as i64 * 7 * S, ALICE, &format!("{}.x.exfil.co.uk", base32(i, 52)), 1);
            if i == 8 {
                assert!(t.alerts.is_empty());
            }
        }
        assert_eq!(t.alerts.len(), 1, "{:#?}", t.alerts);
        let a = &t.alerts[0];
        assert_eq!(a.kind.as_str(), "dns_tunnel");
        assert_eq!(a.dst.as_deref(), Some("exfil.co.uk"), "registered domain from the suffix list");
        assert_eq!(a.ts_us, 9 * 7 * S);
        assert_eq!(a.details["encoded_names"], 10);
        assert_eq!(a.details["samples"].as_array().unwrap().len(), 5);
        assert!(a.bytes > 300, "{}", a.bytes);
    }

    #[test]
    fn tunnel_escalates_as_it_grows() {
        let cfg = DnsConfig { escalate_bytes: 4096, ..DnsConfig::default() };
        let mut t = Drive::new(cfg);
        for i in 0..2000u64 {
            t.ask(i as i64 * S / 10, ALICE, &format!("{}.{}.t.tun.example", base32(i, 63), base32(i + 7, 63)), 10);
        }
        let steps: Vec<_> = t.alerts.iter().map(|a| a.details["escalation"].as_u64().unwrap()).collect();
        assert_eq!(steps, vec![0, 1, 2, 3], "one alert, then escalations at 4, 16, 64 KiB");
        assert_eq!(t.alerts[1].severity, Severity::High);
    }

    #[test]
    fn polling_tunnel_with_short_plain_names_alerts_on_unique_names() {
        let mut t = Drive::new(DnsConfig::default());
        for i in 0..150 {
            t.ask(i * S, ALICE, &format!("p{i}.t.tun.example"), 1);
        }
        assert_eq!(t.alerts.len(), 1);
        assert_eq!(t.alerts[0].details["rules"], json!(["unique_names"]));
    }

    /// `n` names asked before a restart, as the store keeps them (rows), resumed into a new
    /// detector; then `m` more.
    fn across_a_restart(n: i64, m: i64) -> Vec<Alert> {
        let mut before = Drive::new(DnsConfig::default());
        for i in 0..n {
            before.ask(i * S, ALICE, &format!("p{i}.t.tun.example"), 1);
        }
        before.d.drain();
        let mut after = Drive::new(DnsConfig::default());
        for row in before.d.take_rows() {
            after.d.resume(Past::Dns(&row));
        }
        for i in n..n + m {
            after.ask(i * S, ALICE, &format!("p{i}.t.tun.example"), 1);
        }
        after.alerts
    }

    #[test]
    fn a_restart_keeps_the_pairs_window_and_its_episode() {
        // 60 unique names, a restart, 50 more: one alert for the 100 unique names rule.
        assert_eq!(across_a_restart(60, 50).len(), 1);
        // 120 (alerted before the restart), then 10 more: the same episode, no second alert.
        assert!(across_a_restart(120, 10).is_empty());
    }

    /// Issue 16, case 2: a dns2tcp session of about 60 short names within one second.
    #[test]
    fn short_lived_burst_of_short_names_alerts() {
        let mut t = Drive::new(DnsConfig::default());
        let b64 = |i: u64| {
            let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            (0..10)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[(x % 64) as usize] as char
                })
                .collect::<String>()
        };
        for i in 0..60u64 {
            t.ask(30 * S + i as i64 * S / 60, ALICE, &format!("{}.d2t.shortlived.net", b64(i)), 16);
        }
        assert_eq!(t.alerts.len(), 1, "{:#?}", t.alerts);
        let a = &t.alerts[0];
        assert_eq!(a.details["rules"], json!(["burst_names"]));
        assert_eq!(a.details["burst_names"], 40);
        assert_eq!(a.ts_us, 30 * S + 39 * S / 60);
    }

    #[test]
    fn bursts_under_the_rule_and_repeats_stay_quiet() {
        let mut t = Drive::new(DnsConfig::default());
        for round in 0..20 {
            // A page with 30 host names of one site, loaded again every 3 minutes.
            for k in 0..30 {
                t.ask(round * 180 * S + k * S / 100, ALICE, &format!("h{k}.bigsite.com"), 1);
            }
        }
        // Two halves of 20 at the edge of the burst window: 39 in any 2 s.
        for k in 0..39 {
            t.ask(4000 * S + k * S / 20, ALICE, &format!("n{k}.other.com"), 1);
        }
        assert!(t.alerts.is_empty(), "{:#?}", t.alerts);
    }

    /// Issue 16, case 7: every user's lookups leave as the local resolver's uid.
    #[test]
    fn upstream_queries_of_a_local_resolver_are_credited_to_the_asker() {
        let mut t = Drive::new(DnsConfig::default());
        let (resolver, bob) = (Principal::Uid(991), Principal::Uid(1002));
        let local = Ipv4Addr::new(127, 0, 0, 53);
        for i in 0..40u64 {
            let ts = i as i64 * S;
            let tunnel = format!("{}.tun.example", base32(i, 40));
            t.send_to(ts, ALICE, 53, &wire_query(&tunnel, 16), Direction::Local, local);
            t.send(ts + 20_000, resolver, 53, &wire_query(&tunnel.to_uppercase(), 16));
            let plain = format!("www{}.example.com", i % 3);
            t.send_to(ts, bob, 53, &wire_query(&plain, 1), Direction::Local, local);
            t.send(ts + 30_000, resolver, 53, &wire_query(&plain, 1));
            // The resolver's own lookups, and a name asked too long ago, stay the resolver's.
            t.ask(ts + 40_000, resolver, &format!("{}.own.example", base32(i + 100, 40)), 1);
        }
        t.send_to(100 * S, ALICE, 53, &wire_query("late.example.org", 1), Direction::Local, local);
        t.ask(110 * S, resolver, "late.example.org", 1);
        let who: Vec<_> = t.alerts.iter().map(|a| (a.principal, a.dst.clone().unwrap())).collect();
        assert_eq!(who, [(ALICE, "tun.example".into()), (resolver, "own.example".into())], "{:#?}", t.alerts);
        assert_eq!(t.c.local_queries, 81);
        assert_eq!(t.c.credited, 40 + 40);
        assert_eq!(t.c.queries, 121, "local queries are not judged themselves");
    }

    #[test]
    fn ordinary_browsing_does_not_alert() {
        let mut t = Drive::new(DnsConfig::default());
        let sites =
            ["news.example.com", "shop.example.co.uk", "mail.example.org", "api.github.com", "fonts.gstatic.com"];
        for round in 0..60 {
            for (i, s) in sites.iter().enumerate() {
                t.ask(round * 60 * S + i as i64 * S, ALICE, s, 1);
                t.ask(round * 60 * S + i as i64 * S, ALICE, s, 28);
            }
            // A browser burst: 40 different registered domains.
            for k in 0..40 {
                t.ask(round * 60 * S + 10 * S, ALICE, &format!("www.site{k}.example"), 1);
            }
        }
        assert!(t.alerts.is_empty(), "{:#?}", t.alerts);
    }

    #[test]
    fn random_looking_cdn_names_and_telemetry_do_not_alert() {
        let mut t = Drive::new(DnsConfig::default());
        for i in 0..8u64 {
            // Long random host names under one CDN domain that is not allow-listed.
            t.ask(i as i64 * S, ALICE, &format!("d{}.cdn-example.net", base32(i, 24)), 1);
        }
        for i in 0..500u64 {
            // Allow-listed CDN and reverse lookups, many unique names.
            t.ask(i as i64 * S, ALICE, &format!("e{}.dscb.akamaiedge.net", base32(i, 30)), 1);
            t.ask(i as i64 * S, ALICE, &format!("{}.{}.0.10.in-addr.arpa", i % 256, i / 256), 12);
            // Telemetry: the same few names again and again.
            t.ask(i as i64 * S, ALICE, &format!("v{}.events.data.microsoft.com", i % 3), 1);
        }
        assert!(t.alerts.is_empty(), "{:#?}", t.alerts);
        assert_eq!(t.c.allowed, 1000);
    }

    /// Issue 16, case 1: a Windows host appends its search suffix to a tunnel's names.
    #[test]
    fn search_suffix_appended_to_a_tunnel_is_judged_inside() {
        let mut t = Drive::new(DnsConfig::default());
        let hex = |i: u64| base32(i, 30).bytes().map(|b| format!("{:x}", b % 16)).collect::<String>();
        for i in 0..1229u64 {
            t.ask(i as i64 * S / 7, ALICE, &format!("{}.tunnel-domain.com.corp.local", hex(i)), 1);
        }
        assert_eq!(t.alerts.len(), 1, "{:#?}", t.alerts);
        let a = &t.alerts[0];
        assert_eq!(a.dst.as_deref(), Some("tunnel-domain.com"));
        assert_eq!(a.details["encoded_names"], 10);
        assert_eq!(a.details["appended_suffix"], "corp.local");
        assert!(a.details["samples"][0].as_str().unwrap().ends_with(".tunnel-domain.com.corp.local"));
        assert_eq!(t.c.allowed, 0);
    }

    #[test]
    fn internal_names_under_private_suffixes_stay_quiet() {
        let mut t = Drive::new(DnsConfig::default());
        for i in 0..600u64 {
            // AD: GUID names under _msdcs, many hosts, a search suffix on ordinary names.
            let guid = format!("{:016x}{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15), i.wrapping_mul(0xc2b2_ae3d));
            t.ask(i as i64 * S, ALICE, &format!("{guid}._msdcs.corp.local"), 33);
            t.ask(i as i64 * S, ALICE, &format!("ws{i:04}.corp.local"), 1);
            t.ask(i as i64 * S, ALICE, &format!("nas{}.lan", i % 40), 1);
            t.ask(i as i64 * S, ALICE, "www.example.com.corp.local", 1);
            t.ask(i as i64 * S, ALICE, &format!("{}.home.arpa", base32(i, 12)), 1);
        }
        assert!(t.alerts.is_empty(), "{:#?}", t.alerts);
    }

    /// Issue 16, case 3: data under a delegated reverse zone is judged; real PTRs are not.
    #[test]
    fn encoded_names_under_a_reverse_zone_alert_and_real_reverse_lookups_do_not() {
        let mut t = Drive::new(DnsConfig::default());
        for i in 0..300u64 {
            t.ask(i as i64 * S, ALICE, &format!("{}.{i:x}.8.b.d.0.1.0.0.2.ip6.arpa", base32(i, 40)), 12);
        }
        assert_eq!(t.alerts.len(), 1, "{:#?}", t.alerts);
        assert_eq!(t.alerts[0].dst.as_deref(), Some("2.ip6.arpa"));
        assert_eq!(t.alerts[0].details["encoded_names"], 10);

        let mut t = Drive::new(DnsConfig::default());
        for i in 0..3000u64 {
            let v4 = format!("{}.{}.{}.10.in-addr.arpa", i % 256, (i / 256) % 256, i % 7);
            t.ask(i as i64 * S / 10, ALICE, &v4, 12);
            let nibbles: String =
                format!("{:032x}", u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834) | 1)
                    .chars()
                    .rev()
                    .flat_map(|c| [c, '.'])
                    .collect();
            t.ask(i as i64 * S / 10, ALICE, &format!("{nibbles}ip6.arpa"), 12);
        }
        assert!(t.alerts.is_empty(), "{:#?}", t.alerts);
        assert_eq!(t.c.allowed, 6000);
    }

    #[test]
    fn allow_list_can_be_extended_and_replaced() {
        let names: Vec<String> = (0..20).map(|i| format!("{}.tun.example", base32(i, 40))).collect();
        let run = |cfg: DnsConfig| {
            let mut t = Drive::new(cfg);
            for (i, n) in names.iter().enumerate() {
                t.ask(i as i64 * S, ALICE, n, 1);
                t.ask(i as i64 * S, ALICE, &format!("{}.sophosxl.net", base32(i as u64, 40)), 1);
            }
            t.alerts.iter().map(|a| a.dst.clone().unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(DnsConfig::default()), ["tun.example"]);
        let extended = DnsConfig { allow_extra: vec!["tun.example".into()], ..DnsConfig::default() };
        assert!(run(extended).is_empty());
        let replaced = DnsConfig { allow: vec![], ..DnsConfig::default() };
        assert_eq!(run(replaced), ["tun.example", "sophosxl.net"]);
    }

    #[test]
    fn principals_are_judged_apart() {
        let mut t = Drive::new(DnsConfig::default());
        for i in 0..9u64 {
            for uid in 1..=5 {
                t.ask(
                    i as i64 * S,
                    Principal::Uid(uid),
                    &format!("{}.tun.example", base32(i * 10 + u64::from(uid), 40)),
                    1,
                );
            }
        }
        assert!(t.alerts.is_empty(), "9 encoded names each is under the rule of 10");
    }

    #[test]
    fn null_queries_and_binary_labels_count_as_suspicious() {
        let mut t = Drive::new(DnsConfig::default());
        for i in 0..10 {
            t.ask(i * S, ALICE, &format!("k{i}.t.tun.example"), 10);
        }
        assert_eq!(t.alerts.len(), 1);
        assert_eq!(t.alerts[0].details["odd_type_queries"], 10);

        let mut t = Drive::new(DnsConfig::default());
        for i in 0..10u8 {
            let mut body = vec![3, b'a', 0x1b, i, 3, b't', b'u', b'n', 7];
            body.extend_from_slice(b"example");
            body.extend_from_slice(&[0, 0, 1, 0, 1]);
            t.send(i64::from(i) * S, ALICE, 53, &message(1, 0, &body));
        }
        assert_eq!(t.alerts.len(), 1);
        let sample = t.alerts[0].details["samples"][0].as_str().unwrap().to_string();
        assert_eq!(sample, "a\\x1b\\x00.tun.example");
        assert!(!t.alerts[0].summary.contains('\x1b'));
    }

    #[test]
    fn repeated_names_are_not_unique() {
        let mut t = Drive::new(DnsConfig::default());
        let name = format!("{}.tun.example", base32(1, 50));
        for i in 0..500 {
            t.ask(i * S, ALICE, &name, 1);
        }
        assert!(t.alerts.is_empty());
        t.d.drain();
        let rows = t.d.take_rows();
        assert_eq!(rows.iter().map(|r| r.unique).sum::<u32>(), 1);
        assert_eq!(rows.iter().map(|r| r.queries).sum::<u32>(), 500);
    }

    #[test]
    fn case_changes_do_not_make_names_unique() {
        let mut t = Drive::new(DnsConfig::default());
        for i in 0..200 {
            let name: String = "www.example.com"
                .chars()
                .enumerate()
                .map(|(k, ch)| if (i >> (k % 8)) & 1 == 1 { ch.to_ascii_uppercase() } else { ch })
                .collect();
            t.ask(i * S, ALICE, &name, 1);
        }
        t.d.drain();
        assert_eq!(t.d.take_rows().iter().map(|r| r.unique).sum::<u32>(), 1);
    }

    #[test]
    fn raw_traffic_on_port_53_alerts() {
        let mut t = Drive::new(DnsConfig::default());
        for i in 0..20 {
            // iodine's raw mode header, then data.
            t.send(i * S, ALICE, 53, &[0x10, 0xd1, 0x9e, 0x00, 0x20, 1, 2, 3, 4, 5]);
        }
        assert_eq!(t.c.not_dns, 20);
        assert_eq!(t.alerts.len(), 1);
        assert_eq!(t.alerts[0].dst.as_deref(), Some("10.77.0.1:53/udp"));
        assert_eq!(t.alerts[0].details["raw"], true);
    }

    #[test]
    fn queries_on_other_ports_are_found() {
        let mut t = Drive::new(DnsConfig::default());
        for i in 0..12u64 {
            t.send(i as i64 * S, ALICE, 5353 + i as u16, &wire_query(&format!("{}.tun.example", base32(i, 40)), 16));
        }
        assert_eq!(t.c.other_port, 12);
        assert_eq!(t.alerts.len(), 1);
        // Not DNS-shaped: never parsed.
        t.send(20 * S, ALICE, 443, &[0xc0; 40]);
        assert_eq!(t.c.other_port, 12);
    }

    #[test]
    fn tcp_dns_with_several_messages_per_segment() {
        let mut d = DnsDetector::new(&DnsConfig::default());
        let (mut c, mut alerts) = (DnsCounters::default(), Vec::new());
        let mut seg = Vec::new();
        for i in 0..12u64 {
            let m = wire_query(&format!("{}.tun.example", base32(i, 40)), 16);
            seg.extend_from_slice(&(m.len() as u16).to_be_bytes());
            seg.extend_from_slice(&m);
        }
        let p = Packet {
            ts_us: 0,
            uid: Some(1001),
            gid: None,
            src: IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1)),
            proto: 6,
            sport: 40000,
            dport: 53,
            wire_len: seg.len() as u32 + 52,
            direction: Default::default(),
            l4: L4::Tcp { payload: &seg },
        };
        d.observe(&p, ALICE, &mut c, &mut alerts);
        assert_eq!(c.queries, 12);
        assert_eq!(alerts.len(), 1);
    }

    #[test]
    fn rows_per_minute_with_bounded_samples() {
        let mut t = Drive::new(DnsConfig::default());
        for i in 0..300u64 {
            t.ask(i as i64 * S, ALICE, &format!("{}.tun.example", base32(i, 40)), 1);
        }
        t.d.sweep(5 * MINUTE_US);
        let rows = t.d.take_rows();
        assert_eq!(rows.len(), 5);
        assert!(rows.iter().all(|r| r.domain == "tun.example" && r.queries == 60 && r.unique == 60));
        assert!(rows.iter().all(|r| r.samples.len() <= ROW_SAMPLES));
        assert!(rows[4].flags & row_flags::ALERTED != 0);
        assert!(rows[0].flags & row_flags::SUSPICIOUS != 0);
    }

    #[test]
    fn memory_is_bounded_by_pairs_and_names() {
        let cfg = DnsConfig { max_pairs: 1000, max_names: 4000, ..DnsConfig::default() };
        let mut t = Drive::new(cfg);
        for i in 0..20_000u64 {
            t.ask(i as i64 * 1000, ALICE, &format!("www.d{i}.example"), 1);
        }
        assert!(t.d.pairs() <= 1000);
        assert!(t.d.seen[0].len() + t.d.seen[1].len() <= 4000);
        assert!(t.c.pairs_evicted > 0 && t.c.names_rotated_early > 0);
        assert!(t.alerts.is_empty());
    }

    #[test]
    fn hostile_payloads_never_panic() {
        let mut t = Drive::new(DnsConfig::default());
        let mut x = 0x1234_5678_9abc_def1u64;
        for i in 0..5000 {
            let mut buf = vec![0u8; (x % 200) as usize];
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if buf.len() > 6 {
                buf[4..6].copy_from_slice(&[0, 1]);
            }
            t.send(i, ALICE, if i % 2 == 0 { 53 } else { 5353 }, &buf);
        }
    }
}
