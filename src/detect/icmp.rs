//! ICMP tunnel detection: per (principal, peer), how much echo payload carries new content.
//!
//! Ordinary pings repeat one payload: Linux ping a timestamp then a fixed pattern, Windows a
//! fixed alphabet, `ping -s 1400` a longer fixed pattern. A tunnel's payloads differ packet by
//! packet. So each echo's payload, past its first 16 bytes (where ping keeps its timestamp),
//! is compared with the peer's recent payloads; bytes of payloads not among them are "carried".
//! Known tunnel signatures (ptunnel's and ptunnel-ng's magic numbers at offset 0, a whole IP
//! packet inside) count on their own. Echo requests and replies both count: a tunnel's server
//! side sends replies. ICMPv6 echo is treated the same.
//!
//! The ruleset logs ICMP and ICMPv6 we send with `[nflog] icmp_snaplen` bytes (1500 by default)
//! so the whole payload of an Ethernet-MTU echo is compared; under the general 128-byte
//! snaplen only payload bytes 16-100 were, and a tunnel keeping those constant went unseen.
//! Echoes cut shorter than their payload are counted (`icmp_echo_cut`).
//!
//! A restart keeps the windows: each (principal, peer)'s counts per minute go to the store as
//! [`IcmpRow`]s and are read back on start ([`Past::Icmp`]); the payload hashes are not (they
//! are keyed per process), so the first payloads after a restart count as new once.
//!
//! Limits: up to 16 bytes per packet can hide in the timestamp area; payload sizes come from
//! the IP length field minus a basic IP header (options and IPv6 extension headers, rare on
//! echo, are counted as payload). Memory: at most `max_pairs` peers, idle ones dropped at the
//! minute sweep.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::time::Duration;

use rustc_hash::FxHashMap;
use serde_json::json;

use super::tally::{Episode, Step, Tally};
use super::{Detector, Findings, Past, Seen, Tick};
use crate::alert::Severity;
use crate::alert::{Alert, AlertKind};
use crate::decode::{Packet, L4};
use crate::principal::Principal;
use crate::rows::{IcmpRow, MINUTE_US};
use crate::units::counters;
use crate::units::de::{byte_size, duration, positive, positive_usize};
use crate::units::{human_bytes, human_duration};
use serde::Deserialize;

/// Recent payload hashes remembered per peer.
const RECENT: usize = 16;
/// Leading payload bytes not compared: ping's timestamp.
const TIMESTAMP: usize = 16;

/// A known tunnel's mark in an echo payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// ptunnel's magic 0xD5200880 or ptunnel-ng's 0xDEADC0DE at offset 0.
    Ptunnel,
    /// An IPv4 or IPv6 packet whose length field matches the payload (icmptunnel, hans).
    IpInside,
}

impl Signature {
    pub fn as_str(self) -> &'static str {
        match self {
            Signature::Ptunnel => "ptunnel",
            Signature::IpInside => "ip-in-icmp",
        }
    }

    /// `payload` as captured (possibly cut by the snaplen); `len` its size on the wire.
    pub fn find(payload: &[u8], len: usize) -> Option<Signature> {
        match payload {
            [0xd5, 0x20, 0x08, 0x80, ..] | [0xde, 0xad, 0xc0, 0xde, ..] => Some(Signature::Ptunnel),
            [v, _, hi, lo, ..]
                if v >> 4 == 4 && v & 0x0f >= 5 && usize::from(u16::from_be_bytes([*hi, *lo])) == len =>
            {
                Some(Signature::IpInside)
            }
            [v, _, _, _, hi, lo, ..] if v >> 4 == 6 && usize::from(u16::from_be_bytes([*hi, *lo])) + 40 == len => {
                Some(Signature::IpInside)
            }
            _ => None,
        }
    }
}

counters! {
    /// What the ICMP path counted.
    pub struct IcmpCounters {
        /// Echo requests and replies analysed.
        echo => "icmp_echo",
        /// Of those, with a tunnel signature.
        signatures => "icmp_signatures",
        /// Of those, cut by the rule's snaplen: judged on the bytes logged only (raise
        /// `[nflog] icmp_snaplen` when this grows).
        cut => "icmp_echo_cut",
        /// Echoes not judged because the peer table was full.
        pairs_full => "icmp_pairs_full",
    }
}

// Tally slots.
const REQUESTS: usize = 0;
const REPLIES: usize = 1;
const CARRIED: usize = 2;
const SIGNED: usize = 3;

#[derive(Default)]
struct Peer {
    tally: Tally<4>,
    recent: [u64; RECENT],
    next: usize,
    episode: Episode,
    /// Carried bytes since the episode (or the state) began.
    carried: u64,
    distinct: u32,
    min_payload: usize,
    max_payload: usize,
    signature: Option<Signature>,
    last_us: i64,
    /// This minute's counts, not yet handed over as a row.
    minute: Minute,
}

/// Counts of one minute of a (principal, peer), for [`IcmpRow`].
#[derive(Default, Clone, Copy)]
struct Minute {
    minute_us: i64,
    requests: u32,
    replies: u32,
    carried: u64,
    signed: u32,
}

impl Minute {
    fn is_empty(&self) -> bool {
        self.requests == 0 && self.replies == 0
    }

    fn row(&self, (principal, peer): (Principal, IpAddr)) -> IcmpRow {
        IcmpRow {
            principal,
            peer,
            minute_us: self.minute_us,
            requests: self.requests,
            replies: self.replies,
            carried: self.carried,
            signed: self.signed,
        }
    }
}

pub struct IcmpDetector {
    cfg: IcmpConfig,
    window_us: i64,
    bucket_us: i64,
    hasher: RandomState,
    peers: FxHashMap<(Principal, IpAddr), Peer>,
    counters: IcmpCounters,
    /// Minutes closed, not yet handed over.
    rows: Vec<IcmpRow>,
}

impl IcmpDetector {
    pub fn new(cfg: &IcmpConfig) -> IcmpDetector {
        let window_us = i64::try_from(cfg.window.as_micros()).unwrap_or(i64::MAX).max(super::tally::BUCKETS as i64);
        IcmpDetector {
            cfg: cfg.clone(),
            window_us,
            bucket_us: window_us / super::tally::BUCKETS as i64,
            hasher: RandomState::new(),
            peers: FxHashMap::default(),
            counters: IcmpCounters::default(),
            rows: Vec::new(),
        }
    }

    #[inline]
    pub fn observe(&mut self, p: &Packet<'_>, who: Principal, c: &mut IcmpCounters, alerts: &mut Vec<Alert>) {
        let L4::Icmp { v6, kind, payload, .. } = p.l4 else {
            return;
        };
        let reply = match (v6, kind) {
            (false, 8) | (true, 128) => false,
            (false, 0) | (true, 129) => true,
            _ => return,
        };
        c.echo += 1;
        let ip_header = if v6 { 40 } else { 20 };
        let len = (p.wire_len as usize).saturating_sub(ip_header + 8);
        // Judged on what was logged: the ruleset logs echoes we send whole up to
        // `[nflog] icmp_snaplen`; anything cut shorter is counted.
        c.cut += u64::from(payload.len() < len);
        let signature = Signature::find(payload, len);
        if signature.is_some() {
            c.signatures += 1;
        }
        let key = (who, p.dst);
        let content = self.hasher.hash_one((len, payload.get(TIMESTAMP..).unwrap_or(payload)));
        let ts = p.ts_us;
        let Some(peer) = room(&mut self.peers, self.cfg.max_pairs, key) else {
            c.pairs_full += 1;
            return;
        };
        peer.last_us = peer.last_us.max(ts);
        let new = !peer.recent.contains(&content);
        if new {
            peer.recent[peer.next] = content;
            peer.next = (peer.next + 1) % RECENT;
            peer.distinct = peer.distinct.saturating_add(1);
            peer.carried += len as u64;
        }
        peer.min_payload = peer.min_payload.min(len);
        peer.max_payload = peer.max_payload.max(len);
        peer.signature = signature.or(peer.signature);
        let carried = if new { u32::try_from(len).unwrap_or(u32::MAX) } else { 0 };
        let minute_us = ts.div_euclid(MINUTE_US) * MINUTE_US;
        if minute_us > peer.minute.minute_us {
            if !peer.minute.is_empty() {
                self.rows.push(peer.minute.row(key));
            }
            peer.minute = Minute { minute_us, ..Minute::default() };
        }
        let m = &mut peer.minute;
        (m.requests, m.replies) = (m.requests + u32::from(!reply), m.replies + u32::from(reply));
        m.carried += u64::from(carried);
        m.signed += u32::from(signature.is_some());
        let sums = peer.tally.add(
            ts,
            self.bucket_us,
            [u32::from(!reply), u32::from(reply), carried, u32::from(signature.is_some())],
        );
        let cfg = &self.cfg;
        let over = u64::from(sums[CARRIED]) >= cfg.carried_bytes || sums[SIGNED] >= cfg.signature_packets;
        let quiet = u64::from(sums[CARRIED]) < cfg.carried_bytes.div_ceil(2) && sums[SIGNED] == 0;
        let was_open = peer.episode.is_open();
        let step = peer.episode.update(over, quiet, peer.carried, cfg.escalate_bytes);
        if was_open && !peer.episode.is_open() {
            *peer = Peer {
                recent: peer.recent,
                next: peer.next,
                last_us: peer.last_us,
                minute: peer.minute,
                min_payload: usize::MAX,
                ..Peer::default()
            };
        }
        let Some(step) = step else { return };
        let (severity, escalation) = match step {
            Step::Open => (Severity::Medium, 0),
            Step::Escalate(n) => (Severity::High, n),
        };
        let family = if v6 { "ICMPv6" } else { "ICMP" };
        let sign = peer.signature.map_or_else(String::new, |s| format!(", {} signature", s.as_str()));
        alerts.push(Alert {
            ts_us: ts,
            kind: AlertKind::IcmpTunnel,
            severity,
            principal: who,
            dst: Some(p.dst.to_string()),
            bytes: peer.carried,
            summary: format!(
                "{who} sent {family} echo to {} carrying ~{} of varying payload within {} ({} requests, {} replies{sign}){}",
                p.dst,
                human_bytes(u64::from(sums[CARRIED])),
                human_duration(cfg.window),
                sums[REQUESTS],
                sums[REPLIES],
                match escalation {
                    0 => String::new(),
                    n => format!(" (escalation {n}: ~{} so far)", human_bytes(peer.carried)),
                }
            ),
            details: json!({
                "peer": p.dst.to_string(),
                "icmpv6": v6,
                "window_secs": cfg.window.as_secs(),
                "requests": sums[REQUESTS],
                "replies": sums[REPLIES],
                "carried_bytes": sums[CARRIED],
                "signature_packets": sums[SIGNED],
                "signature": peer.signature.map(Signature::as_str),
                "distinct_payloads": peer.distinct,
                "min_payload": peer.min_payload,
                "max_payload": peer.max_payload,
                "estimated_bytes": peer.carried,
                "escalation": escalation,
            }),
        });
    }

    /// Forgets peers idle for a window.
    pub fn sweep(&mut self, now_us: i64) {
        let horizon = now_us.saturating_sub(self.window_us);
        self.peers.retain(|_, p| p.last_us >= horizon);
    }

    /// Hands over the rows of minutes before `before_us`, in a stable order (see
    /// `DnsDetector::take_rows`).
    fn take_rows(&mut self, before_us: i64) -> Vec<IcmpRow> {
        for (key, peer) in &mut self.peers {
            if !peer.minute.is_empty() && peer.minute.minute_us < before_us {
                self.rows.push(peer.minute.row(*key));
                peer.minute = Minute { minute_us: peer.minute.minute_us, ..Minute::default() };
            }
        }
        self.rows.sort_unstable_by_key(|r| (r.minute_us, r.principal, r.peer));
        std::mem::take(&mut self.rows)
    }

    pub fn peers(&self) -> usize {
        self.peers.len()
    }
}

/// A (principal, peer)'s state, made if there are fewer than `max` peers.
fn room(peers: &mut FxHashMap<(Principal, IpAddr), Peer>, max: usize, key: (Principal, IpAddr)) -> Option<&mut Peer> {
    if !peers.contains_key(&key) && peers.len() >= max {
        return None;
    }
    Some(peers.entry(key).or_insert_with(|| Peer { min_payload: usize::MAX, ..Peer::default() }))
}

/// `[icmp]`: ICMP tunnel detection per (principal, peer) over a sliding window.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IcmpConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "duration")]
    pub window: Duration,
    /// Echo payload bytes whose content differs from the peer's recent packets: data carried.
    #[serde(deserialize_with = "byte_size")]
    pub carried_bytes: u64,
    /// Echo packets with a known tunnel signature (ptunnel magic, IP inside).
    #[serde(deserialize_with = "positive")]
    pub signature_packets: u32,
    #[serde(deserialize_with = "byte_size")]
    pub escalate_bytes: u64,
    /// (principal, peer) states kept at most; idle ones are evicted first.
    #[serde(deserialize_with = "positive_usize")]
    pub max_pairs: usize,
}

impl Default for IcmpConfig {
    fn default() -> Self {
        IcmpConfig {
            enabled: true,
            window: Duration::from_secs(600),
            carried_bytes: 8 << 10,
            signature_packets: 3,
            escalate_bytes: 256 << 10,
            max_pairs: 65_536,
        }
    }
}

impl Detector for IcmpDetector {
    fn packet(&mut self, seen: &Seen<'_, '_>, out: &mut Findings) {
        let mut c = self.counters;
        self.observe(seen.packet, seen.sent.principal, &mut c, &mut out.alerts);
        self.counters = c;
    }

    /// The stored minutes rebuild the windows (payload hashes are not stored); an alert before
    /// a restart keeps its peer's episode open for a window, so the same tunnel does not alert
    /// again.
    fn resume(&mut self, past: Past<'_>) {
        let bucket_us = self.bucket_us;
        if let Past::Icmp(r) = past {
            let Some(peer) = room(&mut self.peers, self.cfg.max_pairs, (r.principal, r.peer)) else { return };
            let carried = u32::try_from(r.carried).unwrap_or(u32::MAX);
            peer.tally.add(r.minute_us, bucket_us, [r.requests, r.replies, carried, r.signed]);
            peer.carried = peer.carried.saturating_add(r.carried);
            peer.last_us = peer.last_us.max(r.minute_us);
            return;
        }
        let Past::Alert(a) = past else { return };
        let Some(dst) = a.dst.as_deref().and_then(|d| d.parse::<IpAddr>().ok()) else { return };
        if a.kind != AlertKind::IcmpTunnel {
            return;
        }
        let carried = u32::try_from(a.bytes.max(self.cfg.carried_bytes)).unwrap_or(u32::MAX);
        let escalate_at = self.cfg.escalate_bytes;
        let Some(peer) = room(&mut self.peers, self.cfg.max_pairs, (a.principal, dst)) else { return };
        peer.last_us = peer.last_us.max(a.ts_us);
        peer.tally.add(a.ts_us, bucket_us, [0, 0, carried, 0]);
        peer.carried = peer.carried.max(a.bytes);
        peer.episode.update(true, false, peer.carried, escalate_at);
    }

    fn tick(&mut self, tick: Tick, out: &mut Findings) {
        match tick {
            Tick::Minute(minute_us) => {
                out.icmp_rows.append(&mut self.take_rows(minute_us));
                self.sweep(minute_us);
            }
            Tick::Flush(_) => out.icmp_rows.append(&mut self.take_rows(i64::MAX)),
        }
    }

    fn counters(&self, f: &mut dyn FnMut(&'static str, u64)) {
        self.counters.each(f)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const S: i64 = 1_000_000;
    const WHO: Principal = Principal::Uid(1001);

    fn echo(d: &mut IcmpDetector, c: &mut IcmpCounters, ts: i64, v6: bool, kind: u8, payload: &[u8]) -> Vec<Alert> {
        let p = Packet {
            ts_us: ts,
            uid: Some(1001),
            gid: None,
            src: IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1)),
            proto: if v6 { 58 } else { 1 },
            sport: 0,
            dport: 0,
            wire_len: payload.len() as u32 + 8 + if v6 { 40 } else { 20 },
            direction: Default::default(),
            l4: L4::Icmp { v6, kind, code: 0, payload },
        };
        let mut alerts = Vec::new();
        d.observe(&p, WHO, c, &mut alerts);
        alerts
    }

    fn linux_ping(seq: u64, size: usize) -> Vec<u8> {
        let mut p = (seq * 1_000_003).to_le_bytes().to_vec();
        p.extend_from_slice(&(seq * 7).to_le_bytes());
        p.extend((16..size).map(|i| i as u8));
        p.truncate(size);
        p
    }

    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn standard_pings_stay_quiet() {
        let mut d = IcmpDetector::new(&IcmpConfig::default());
        let mut c = IcmpCounters::default();
        for seq in 0..5000 {
            assert!(echo(&mut d, &mut c, seq as i64 * S / 5, false, 8, &linux_ping(seq, 56)).is_empty());
            assert!(echo(&mut d, &mut c, seq as i64 * S / 5, true, 128, &b"abcdefghijklmnopqrstuvwabcdefghi"[..])
                .is_empty());
        }
        // MTU probing: large but constant.
        for seq in 0..1000 {
            assert!(echo(&mut d, &mut c, seq as i64 * S, false, 8, &linux_ping(seq, 1472)).is_empty());
        }
        assert_eq!(c.echo, 11_000);
    }

    #[test]
    fn varied_payloads_alert_once_then_escalate() {
        let mut d = IcmpDetector::new(&IcmpConfig::default());
        let mut c = IcmpCounters::default();
        let mut alerts = Vec::new();
        for seq in 0..400u64 {
            alerts.extend(echo(&mut d, &mut c, seq as i64 * S / 10, false, 8, &noise(seq, 1000)));
            if seq == 7 {
                assert!(alerts.is_empty(), "8 KB carried is the threshold");
            }
        }
        assert_eq!(alerts[0].kind.as_str(), "icmp_tunnel");
        assert_eq!(alerts[0].ts_us, 8 * S / 10);
        assert_eq!(alerts[0].details["requests"], 9);
        let steps: Vec<_> = alerts.iter().map(|a| a.details["escalation"].as_u64().unwrap()).collect();
        assert_eq!(steps, vec![0, 1], "escalation at 256 KiB, the next would be at 1 MiB");
    }

    /// Issue 16, case 5: the first 100 payload bytes constant, the rest random.
    #[test]
    fn padded_tunnel_is_judged_on_the_whole_logged_payload() {
        let payload = |seq: u64| {
            let mut p = vec![0x42; 100];
            p.extend(noise(seq, 900));
            p
        };
        let run = |captured: usize| {
            let mut d = IcmpDetector::new(&IcmpConfig::default());
            let mut c = IcmpCounters::default();
            let mut alerts = Vec::new();
            for seq in 0..520u64 {
                let full = payload(seq);
                let p = Packet {
                    ts_us: seq as i64 * S / 10,
                    uid: Some(1001),
                    gid: None,
                    src: IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2)),
                    dst: IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1)),
                    proto: 1,
                    sport: 0,
                    dport: 0,
                    wire_len: full.len() as u32 + 28,
                    direction: Default::default(),
                    l4: L4::Icmp { v6: false, kind: 8, code: 0, payload: &full[..captured.min(full.len())] },
                };
                d.observe(&p, WHO, &mut c, &mut alerts);
            }
            (alerts, c)
        };
        // Cut at 128 bytes of packet (100 of payload): nothing differs, nothing is seen.
        let (alerts, c) = run(100);
        assert!(alerts.is_empty());
        assert_eq!(c.cut, 520);
        // Logged with icmp_snaplen 1500: caught within 9 echoes.
        let (alerts, c) = run(1472);
        assert_eq!(alerts[0].details["requests"], 9, "{alerts:#?}");
        assert_eq!(c.cut, 0);
    }

    #[test]
    fn an_alert_before_a_restart_keeps_its_episode_open() {
        let mut first = IcmpDetector::new(&IcmpConfig::default());
        let mut c = IcmpCounters::default();
        let mut alerts = Vec::new();
        for seq in 0..20u64 {
            alerts.extend(echo(&mut first, &mut c, seq as i64 * S / 10, false, 8, &noise(seq, 1000)));
        }
        assert_eq!(alerts.len(), 1);
        let mut again = IcmpDetector::new(&IcmpConfig::default());
        again.resume(Past::Alert(&alerts[0]));
        for seq in 20..40u64 {
            assert!(echo(&mut again, &mut c, seq as i64 * S / 10, false, 8, &noise(seq, 1000)).is_empty());
        }
    }

    /// Issue 11: 5 KiB of a tunnel before a restart, 5 KiB after, an 8 KiB rule: one alert,
    /// from the stored minutes. A plain ping across the restart stays quiet.
    #[test]
    fn a_tunnel_split_by_a_restart_alerts_once_from_the_stored_minutes() {
        let mut before = IcmpDetector::new(&IcmpConfig::default());
        let mut c = IcmpCounters::default();
        let mut alerts = Vec::new();
        for seq in 0..5u64 {
            alerts.extend(echo(&mut before, &mut c, 50 * S + seq as i64 * S, false, 8, &noise(seq, 1024)));
            alerts.extend(echo(&mut before, &mut c, 50 * S + seq as i64 * S, true, 128, &linux_ping(seq, 56)));
        }
        let mut found = Findings::default();
        before.tick(Tick::Minute(60 * S), &mut found);
        before.tick(Tick::Flush(60 * S), &mut found);
        assert!(alerts.is_empty());
        let rows = std::mem::take(&mut found.icmp_rows);
        assert_eq!(rows.len(), 1, "one peer, one minute: {} rows", rows.len());
        assert_eq!((rows[0].requests, rows[0].carried), (10, 5 * 1024 + 56), "the first ping payload is new");

        let mut after = IcmpDetector::new(&IcmpConfig::default());
        for r in &rows {
            after.resume(Past::Icmp(r));
        }
        for seq in 5..10u64 {
            alerts.extend(echo(&mut after, &mut c, 70 * S + seq as i64 * S, false, 8, &noise(seq, 1024)));
            alerts.extend(echo(&mut after, &mut c, 70 * S + seq as i64 * S, true, 128, &linux_ping(seq, 56)));
        }
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        // 10 before and the third tunnel echo after (5 KiB after the restart alone stays under).
        assert_eq!(alerts[0].details["requests"], 15, "{:#}", alerts[0].details);
    }

    #[test]
    fn ptunnel_magic_alerts_on_small_packets() {
        let mut d = IcmpDetector::new(&IcmpConfig::default());
        let mut c = IcmpCounters::default();
        let mut alerts = Vec::new();
        for seq in 0..3u8 {
            let mut p = vec![0xde, 0xad, 0xc0, 0xde, 10, 77, 0, 1];
            p.extend_from_slice(&[0, 0, 0, 22, seq, 0, 0, 0]);
            alerts.extend(echo(&mut d, &mut c, i64::from(seq) * S, false, 0, &p));
        }
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].details["signature"], "ptunnel");
        assert_eq!(alerts[0].details["replies"], 3);
    }

    #[test]
    fn ip_packet_inside_is_a_signature() {
        let mut inner = vec![0x45, 0, 0, 60];
        inner.extend_from_slice(&[0; 56]);
        assert_eq!(Signature::find(&inner, 60), Some(Signature::IpInside));
        assert_eq!(Signature::find(&inner, 61), None);
        assert_eq!(Signature::find(&[], 0), None);
        let mut v6 = vec![0x60, 0, 0, 0, 0, 20];
        v6.extend_from_slice(&[0; 54]);
        assert_eq!(Signature::find(&v6, 60), Some(Signature::IpInside));
    }

    #[test]
    fn icmpv6_tunnels_are_caught_too() {
        let mut d = IcmpDetector::new(&IcmpConfig::default());
        let mut c = IcmpCounters::default();
        let alerts: Vec<_> =
            (0..20u64).flat_map(|s| echo(&mut d, &mut c, s as i64 * S, true, 128, &noise(s, 900))).collect();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].details["icmpv6"], true);
    }

    #[test]
    fn other_icmp_types_are_ignored_and_idle_peers_forgotten() {
        let mut d = IcmpDetector::new(&IcmpConfig::default());
        let mut c = IcmpCounters::default();
        echo(&mut d, &mut c, 0, false, 3, &noise(1, 500));
        assert_eq!(c.echo, 0);
        echo(&mut d, &mut c, 0, false, 8, &noise(1, 500));
        assert_eq!(d.peers(), 1);
        d.sweep(3600 * S);
        assert_eq!(d.peers(), 0);
    }
}
