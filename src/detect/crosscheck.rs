//! Two trails of the same connections: with `audit = true` in `[nft]` the ruleset sends each new
//! outbound connection's first packet to the kernel audit trail (`NETFILTER_PKT`) as well as
//! every packet to NFLOG. Each audit record should have NFLOG packets of the same connection
//! around the same time; one that has none means NFLOG lost it, or someone changed the ruleset
//! or the monitor's view (and the audit trail going silent is caught from auditd's own
//! records, see [`crate::source::audit::AuditNote`]). Unmatched records raise an `audit_mismatch`
//! alert, at most one per [`ALERT_PERIOD_US`], covering every record since the last one.
//!
//! A record is judged [`GRACE_US`] after its time, so late NFLOG batches and a log read a little
//! behind both arrive first. Memory: the connections seen in NFLOG are kept with their last
//! packet time, pruned to the last two grace periods once there are [`MAX_SEEN`]. A flood of
//! new connections faster than that keeps only the newer half (so no rescan per packet), and
//! records that the evicted connections could have matched are counted as unjudged, not
//! alerted on.

use std::collections::VecDeque;
use std::net::IpAddr;

use rustc_hash::FxHashMap;
use serde_json::json;

use super::{Detector, Findings, Seen, Tick};
use crate::alert::Severity;
use crate::alert::{Alert, AlertKind};
use crate::decode::Packet;
use crate::principal::{proto_name, Dst, Principal};
use crate::source::audit::AuditEvent;
use crate::source::audit::NetPkt;
use crate::units::counters;

pub const GRACE_US: i64 = 5_000_000;
pub const ALERT_PERIOD_US: i64 = 60_000_000;
pub const MAX_SEEN: usize = 1 << 18;
/// Unmatched records quoted in one alert.
const SAMPLES: usize = 5;

/// (source, destination, protocol, source port, destination port); ports 0 when the audit
/// record has none.
type Conn = (IpAddr, IpAddr, u8, u16, u16);

counters! {
    /// NETFILTER_PKT records and how they were judged.
    pub struct CrossCounters {
        /// NETFILTER_PKT records received.
        audit_packets => "audit_netfilter_pkt",
        /// ... that NFLOG saw the connection of.
        matched => "audit_netfilter_pkt_matched",
        /// ... that NFLOG did not.
        unmatched => "audit_netfilter_pkt_unmatched",
        /// ... that could not be judged: NFLOG connections of their time were evicted in a flood.
        unjudged => "audit_netfilter_pkt_unjudged",
        /// NFLOG connections evicted before their grace periods ended.
        seen_evicted => "audit_seen_evicted",
    }
}

#[derive(Default)]
pub struct AuditCrossCheck {
    seen: FxHashMap<Conn, i64>,
    pending: VecDeque<NetPkt>,
    unreported: Vec<NetPkt>,
    unreported_count: u64,
    last_alert_us: Option<i64>,
    /// Connections last seen at or before this time may have been evicted early.
    evicted_until: Option<i64>,
    pub counters: CrossCounters,
}

impl AuditCrossCheck {
    /// A packet NFLOG delivered.
    pub fn packet(&mut self, p: &Packet<'_>) {
        self.seen.insert((p.src, p.dst, p.proto, p.sport, p.dport), p.ts_us);
        self.seen.insert((p.src, p.dst, p.proto, 0, 0), p.ts_us);
        if self.seen.len() > MAX_SEEN {
            let keep = p.ts_us - 2 * GRACE_US;
            self.seen.retain(|_, t| *t >= keep);
            if self.seen.len() > MAX_SEEN / 2 {
                let mut times: Vec<i64> = self.seen.values().copied().collect();
                let mid = times.len() / 2;
                let (_, &mut cutoff, _) = times.select_nth_unstable(mid);
                let before = self.seen.len();
                self.seen.retain(|_, t| *t > cutoff);
                self.counters.seen_evicted += (before - self.seen.len()) as u64;
                self.evicted_until = Some(self.evicted_until.map_or(cutoff, |t| t.max(cutoff)));
            }
        }
    }

    /// A NETFILTER_PKT record.
    pub fn audit(&mut self, n: NetPkt) {
        self.counters.audit_packets += 1;
        self.pending.push_back(n);
    }

    /// Judges the records older than the grace period as of `now_us`; an alert when due.
    pub fn check(&mut self, now_us: i64, alerts: &mut Vec<Alert>) {
        // A match is final at once; a miss only after the grace period.
        let (seen, counters) = (&self.seen, &mut self.counters);
        // Its connection may have been evicted: no verdict either way.
        let blind = |n: &NetPkt| self.evicted_until.is_some_and(|t| n.ts_us - GRACE_US <= t);
        let mut missed = Vec::new();
        self.pending.retain(|n| {
            let key = (n.saddr, n.daddr, n.proto, n.sport, n.dport);
            if seen.get(&key).is_some_and(|&t| t >= n.ts_us - GRACE_US) {
                counters.matched += 1;
                false
            } else if n.ts_us.saturating_add(GRACE_US) <= now_us && blind(n) {
                counters.unjudged += 1;
                false
            } else if n.ts_us.saturating_add(GRACE_US) <= now_us {
                counters.unmatched += 1;
                missed.push(*n);
                false
            } else {
                true
            }
        });
        self.unreported_count += missed.len() as u64;
        let room = SAMPLES.saturating_sub(self.unreported.len());
        self.unreported.extend(missed.into_iter().take(room));
        let due = self.last_alert_us.is_none_or(|t| now_us.saturating_sub(t) >= ALERT_PERIOD_US);
        if self.unreported_count == 0 || !due {
            return;
        }
        self.last_alert_us = Some(now_us);
        let first = self.unreported.first().copied();
        let samples: Vec<String> = self.unreported.drain(..).map(|n| format!("{} -> {}", n.saddr, peer(&n))).collect();
        let n = std::mem::take(&mut self.unreported_count);
        alerts.push(Alert {
            ts_us: now_us,
            kind: AlertKind::AuditMismatch,
            severity: Severity::High,
            // About the trails, not a user: attributed to the first unmatched connection's source.
            principal: Principal::Host(first.map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |n| n.saddr)),
            dst: first.as_ref().map(peer),
            bytes: 0,
            summary: format!(
                "{n} new connection(s) in the kernel audit trail (NETFILTER_PKT) never reached NFLOG, e.g. {}: NFLOG lost them or the ruleset was changed",
                samples.first().map_or("?", String::as_str)
            ),
            details: json!({
                "unmatched": n,
                "samples": samples,
                "audit_packets_total": self.counters.audit_packets,
                "matched_total": self.counters.matched,
                "unmatched_total": self.counters.unmatched,
            }),
        });
    }
}

/// `10.0.0.1:22/tcp`, or `10.0.0.1/tcp` when the kernel's record has no ports.
fn peer(n: &NetPkt) -> String {
    match n.dport {
        0 => format!("{}/{}", n.daddr, proto_name(n.proto)),
        port => Dst { addr: n.daddr, port, proto: n.proto }.to_string(),
    }
}

impl Detector for AuditCrossCheck {
    fn packet(&mut self, seen: &Seen<'_, '_>, _out: &mut Findings) {
        self.packet(seen.packet);
    }

    fn audit(&mut self, event: &AuditEvent, _out: &mut Findings) {
        if let AuditEvent::Packet(n) = event {
            self.audit(*n);
        }
    }

    fn tick(&mut self, tick: Tick, out: &mut Findings) {
        if let Tick::Flush(now_us) = tick {
            self.check(now_us, &mut out.alerts);
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
    use crate::decode::L4;

    const S: i64 = 1_000_000;

    fn packet(ts_us: i64, sport: u16) -> Packet<'static> {
        Packet {
            ts_us,
            uid: Some(1000),
            gid: None,
            src: IpAddr::V4(Ipv4Addr::new(10, 77, 1, 2)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 77, 1, 1)),
            proto: 6,
            sport,
            dport: 22,
            wire_len: 60,
            direction: Default::default(),
            l4: L4::Other,
        }
    }

    fn record(ts_us: i64, sport: u16) -> NetPkt {
        let p = packet(ts_us, sport);
        // Records without ports have neither.
        NetPkt { ts_us, saddr: p.src, daddr: p.dst, proto: 6, sport, dport: if sport == 0 { 0 } else { 22 } }
    }

    #[test]
    fn matched_records_are_quiet_unmatched_alert_once_per_period() {
        let mut c = AuditCrossCheck::default();
        let mut alerts = Vec::new();
        c.packet(&packet(S, 40000));
        c.audit(record(S, 40000));
        // Ports missing from the record: matched on addresses and protocol.
        c.audit(record(S, 0));
        c.audit(record(2 * S, 40001));
        c.audit(record(3 * S, 40002));
        c.check(4 * S, &mut alerts);
        assert!(alerts.is_empty(), "within the grace period");
        c.check(10 * S, &mut alerts);
        assert_eq!((c.counters.matched, c.counters.unmatched), (2, 2));
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].kind.as_str(), "audit_mismatch");
        assert_eq!(alerts[0].details["unmatched"], 2);
        c.audit(record(11 * S, 40003));
        c.check(20 * S, &mut alerts);
        assert_eq!(alerts.len(), 1, "once per period");
        c.check(80 * S, &mut alerts);
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[1].details["unmatched"], 1);
    }

    /// Two million new connections within the grace periods: the table stays bounded without
    /// a rescan per packet, and a record whose connection was evicted raises no false alert.
    #[test]
    fn a_flood_of_new_connections_is_bounded_and_raises_no_false_mismatch() {
        let mut c = AuditCrossCheck::default();
        let mut alerts = Vec::new();
        c.packet(&packet(S, 40000));
        c.audit(record(S, 40000));
        let started = std::time::Instant::now();
        for i in 0..2_000_000u32 {
            let mut p = packet(S + i64::from(i), (i % 60_000) as u16);
            p.dst = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i / 60_000));
            c.packet(&p);
            assert!(c.seen.len() <= MAX_SEEN + 1);
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "rescanned per packet");
        c.check(10 * S, &mut alerts);
        assert!(alerts.is_empty(), "{alerts:?}");
        assert_eq!((c.counters.matched, c.counters.unmatched, c.counters.unjudged), (0, 0, 1));
        assert!(c.counters.seen_evicted > 0);
    }
}
