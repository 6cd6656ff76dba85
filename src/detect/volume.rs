//! Volume: alert when a principal's outbound bytes within a sliding window reach a threshold.
//!
//! One alert per episode: once a rule has fired for a principal it stays quiet until that
//! principal's sum for the rule has fallen back under the threshold.
//!
//! Memory is bounded: state for at most [`MAX_PRINCIPALS`] principals (about 1 KiB each with
//! the default two rules). Uids are few, but a gateway's forwarded traffic or a capture makes a
//! principal of every source address, which a sender can vary at will. When the table is full,
//! the idle half (by last packet) is evicted, never a principal over a threshold, and counted;
//! so a flood of new sources cannot push out a principal that is sending.

use std::time::Duration;

use rustc_hash::FxHashMap;

use serde_json::json;

use super::scope::{DirectionScope, Range, Scope, Who};
use super::tally::SlidingSum;
use super::{Detector, Findings, Past, Seen};
use crate::alert::{Alert, AlertKind, Severity};
use crate::principal::{Dst, Principal};
use crate::rows::{Recredit, Sent};
use crate::source::owner::Owner;
use crate::units::counters;
use crate::units::de::{byte_size, duration};
use crate::units::{human_bytes, human_duration};
use serde::Deserialize;

/// A principal crossed a rule's threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossing {
    pub ts_us: i64,
    pub principal: Principal,
    pub rule: Option<String>,
    pub window: Duration,
    pub threshold: u64,
    pub severity: Severity,
    /// Bytes within the window when it crossed.
    pub bytes: u64,
}

/// Principals with state at most.
pub const MAX_PRINCIPALS: usize = 16_384;

struct RuleState {
    sum: SlidingSum,
    firing: bool,
    /// Whether the rule's scope admits the principal, for the socket gid it was asked with.
    admits: Option<(Option<u32>, bool)>,
}

struct State {
    last_us: i64,
    rules: Vec<RuleState>,
}

impl State {
    fn firing(&self) -> bool {
        self.rules.iter().any(|r| r.firing)
    }
}

counters! {
    /// Principals seen, and what the bound on them cost.
    pub struct VolumeCounters {
        /// Principal states created (one evicted and seen again counts twice).
        principals => "volume_principals",
        /// Principal states dropped early because the table was full.
        principals_evicted => "volume_principals_evicted",
        /// Packets not judged because the table was full of principals over a threshold.
        principals_full => "volume_principals_full",
    }
}

pub struct VolumeDetector {
    rules: Vec<VolumeRule>,
    /// Login users' uids, for rules about people or services.
    people: Range,
    principals: FxHashMap<Principal, State>,
    max: usize,
    counters: VolumeCounters,
}

impl VolumeDetector {
    pub fn new(rules: &[VolumeRule], people: Range) -> VolumeDetector {
        VolumeDetector::with_cap(rules, people, MAX_PRINCIPALS)
    }

    fn with_cap(rules: &[VolumeRule], people: Range, max: usize) -> VolumeDetector {
        VolumeDetector {
            rules: rules.to_vec(),
            people,
            principals: FxHashMap::default(),
            max,
            counters: VolumeCounters::default(),
        }
    }

    /// Accounts a packet to every rule whose scope covers it; calls `on_cross` for each rule
    /// whose threshold this packet reached.
    pub fn observe(&mut self, s: &Sent, c: &mut VolumeCounters, mut on_cross: impl FnMut(Crossing)) {
        let Sent { principal, ts_us, bytes, .. } = *s;
        // Only a full table costs a second lookup: one for the principal, one to insert it.
        if self.principals.len() >= self.max && !self.principals.contains_key(&principal) && !self.make_room(c) {
            c.principals_full += 1;
            return;
        }
        let rules = &self.rules;
        let state = self.principals.entry(principal).or_insert_with(|| {
            c.principals += 1;
            State {
                last_us: ts_us,
                rules: rules
                    .iter()
                    .map(|r| RuleState { sum: SlidingSum::new(r.window), firing: false, admits: None })
                    .collect(),
            }
        });
        state.last_us = state.last_us.max(ts_us);
        for (rule, state) in rules.iter().zip(state.rules.iter_mut()) {
            let admits = match state.admits {
                Some((gid, admits)) if gid == s.gid => admits,
                _ => {
                    let admits = rule.scope.admits(principal, s.gid, self.people);
                    state.admits = Some((s.gid, admits));
                    admits
                }
            };
            if !admits || !rule.scope.covers(s.direction, &s.dst) {
                continue;
            }
            let sum = state.sum.add(ts_us, bytes);
            if sum < rule.bytes {
                state.firing = false;
            } else if !state.firing {
                state.firing = true;
                on_cross(Crossing {
                    ts_us,
                    principal,
                    rule: rule.name.clone(),
                    window: rule.window,
                    threshold: rule.bytes,
                    severity: rule.severity,
                    bytes: sum,
                });
            }
        }
    }

    /// Takes back bytes counted for `s.principal` since `first_us` from every rule whose scope
    /// covered them; a rule left under its threshold ends its episode.
    fn take(&mut self, s: &Sent, first_us: i64) {
        let Some(state) = self.principals.get_mut(&s.principal) else { return };
        for (rule, state) in self.rules.iter().zip(state.rules.iter_mut()) {
            if rule.scope.applies(s.principal, s.gid, self.people, s.direction, &s.dst)
                && state.sum.take(first_us, s.bytes) < rule.bytes
            {
                state.firing = false;
            }
        }
    }

    /// Makes room for one more principal in a full table: true if there is room.
    fn make_room(&mut self, c: &mut VolumeCounters) -> bool {
        // Evict the idle half (by last packet), never a principal over a threshold.
        let mut idle: Vec<i64> = self.principals.values().filter(|s| !s.firing()).map(|s| s.last_us).collect();
        if idle.is_empty() {
            return false;
        }
        let mid = idle.len() / 2;
        let (_, &mut cutoff, _) = idle.select_nth_unstable(mid);
        let before = self.principals.len();
        self.principals.retain(|_, s| s.firing() || s.last_us > cutoff);
        c.principals_evicted += (before - self.principals.len()) as u64;
        self.principals.len() < self.max
    }
}

impl Detector for VolumeDetector {
    fn packet(&mut self, seen: &Seen<'_, '_>, out: &mut Findings) {
        let mut c = self.counters;
        self.observe(&seen.sent, &mut c, |cross| {
            let dst = seen.flows.top_dst(cross.principal).unwrap_or(seen.sent.dst);
            out.alerts.push(alert(cross, dst, seen.owner));
        });
        self.counters = c;
    }

    fn recredit(&mut self, moved: &Recredit, owner: Option<&Owner>, out: &mut Findings) {
        let mut c = self.counters;
        for row in &moved.rows {
            let to = row.sent();
            self.take(&Sent { principal: moved.from, ..to }, row.first_us);
            self.observe(&to, &mut c, |cross| out.alerts.push(alert(cross, row.dst, owner)));
        }
        self.counters = c;
    }

    fn resume(&mut self, past: Past<'_>) {
        let Past::Egress(row) = past else { return };
        let mut c = self.counters;
        // A crossing in the past sets the rule firing: the alert was raised then.
        self.observe(&row.sent(), &mut c, |_| {});
        self.counters = c;
    }

    fn counters(&self, f: &mut dyn FnMut(&'static str, u64)) {
        self.counters.each(f)
    }
}

/// The alert names `dst`, where most of the principal's bytes went this minute, and the
/// flow's process when known.
fn alert(c: Crossing, dst: Dst, owner: Option<&Owner>) -> Alert {
    let window = human_duration(c.window);
    Alert {
        ts_us: c.ts_us,
        kind: AlertKind::Volume,
        severity: c.severity,
        principal: c.principal,
        dst: Some(dst.to_string()),
        bytes: c.bytes,
        summary: format!(
            "{} sent {} within {window} (threshold {}{}), most to {dst}{}",
            c.principal,
            human_bytes(c.bytes),
            human_bytes(c.threshold),
            c.rule.as_deref().map_or_else(String::new, |r| format!(", rule {}", crate::escape::printable(r))),
            owner.map_or_else(String::new, Owner::describe),
        ),
        details: json!({
            "window_secs": c.window.as_secs(),
            "threshold_bytes": c.threshold,
            "rule": c.rule,
            "process": owner.map(Owner::record),
        }),
    }
}

/// Alert when a principal's outbound bytes within `window` reach `bytes`, counting only what
/// the rule's [`Scope`] covers (`scope = { who = [...], direction = ... }`, or a
/// `[volume.scope]` table after the rule).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VolumeRule {
    /// Names the rule in alerts (default: its window and threshold).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(deserialize_with = "duration")]
    pub window: Duration,
    #[serde(deserialize_with = "byte_size")]
    pub bytes: u64,
    #[serde(default = "Severity::medium")]
    pub severity: Severity,
    #[serde(default)]
    pub scope: Scope,
}

/// A few MB within minutes is a file leaving, not a user's terminal session; tens of MB over a
/// day catches the same done slowly. People count in either direction (a pull over ssh is
/// served by their session); services and hosts only for connections they open, so a web,
/// database or backup server's serving never alerts while a service that sends out does.
pub fn default_rules() -> Vec<VolumeRule> {
    let rule = |name: &str, secs, bytes, severity, who: &[Who], direction| VolumeRule {
        name: Some(name.into()),
        window: Duration::from_secs(secs),
        bytes,
        severity,
        scope: Scope::of(who, direction),
    };
    let (people, others) = (&[Who::People][..], &[Who::Services, Who::Hosts][..]);
    vec![
        rule("people-10m", 600, 4 << 20, Severity::Medium, people, DirectionScope::Any),
        rule("people-24h", 86_400, 64 << 20, Severity::High, people, DirectionScope::Any),
        rule("services-10m", 600, 4 << 20, Severity::Medium, others, DirectionScope::Initiated),
        rule("services-24h", 86_400, 64 << 20, Severity::High, others, DirectionScope::Initiated),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    use crate::decode::Direction;
    use crate::principal::Dst;
    use crate::rows::EgressRow;

    const PEOPLE: Range = Range { lo: 1000, hi: 60000 };

    fn rule(bytes: u64) -> VolumeRule {
        VolumeRule {
            name: None,
            window: Duration::from_secs(600),
            bytes,
            severity: Severity::Medium,
            scope: Scope::default(),
        }
    }

    fn detector() -> VolumeDetector {
        VolumeDetector::new(&[rule(1000)], PEOPLE)
    }

    fn sent(principal: Principal, ts_us: i64, bytes: u64) -> Sent {
        let dst = Dst { addr: std::net::Ipv4Addr::new(203, 0, 113, 1).into(), port: 443, proto: 6 };
        Sent { principal, gid: None, direction: Direction::Unknown, dst, ts_us, bytes }
    }

    fn feed(d: &mut VolumeDetector, who: Principal, packets: &[(i64, u64)]) -> Vec<Crossing> {
        let mut out = Vec::new();
        for &(ts, n) in packets {
            let mut c = d.counters;
            d.observe(&sent(who, ts, n), &mut c, |cross| out.push(cross));
            d.counters = c;
        }
        out
    }

    #[test]
    fn one_alert_per_episode() {
        let mut d = detector();
        let alerts = feed(&mut d, Principal::Uid(1000), &[(0, 600), (S, 600), (2 * S, 600), (3 * S, 600)]);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].bytes, 1200);
        assert_eq!(alerts[0].ts_us, S);
    }

    #[test]
    fn new_episode_after_falling_back_under() {
        let mut d = detector();
        let who = Principal::Uid(1000);
        let alerts = feed(&mut d, who, &[(0, 1000), (700 * S, 10), (701 * S, 1000)]);
        assert_eq!(alerts.len(), 2);
    }

    #[test]
    fn principals_are_separate() {
        let mut d = detector();
        assert!(feed(&mut d, Principal::Uid(1), &[(0, 600)]).is_empty());
        assert!(feed(&mut d, Principal::Uid(2), &[(0, 600)]).is_empty());
        assert_eq!(d.counters.principals, 2);
    }

    #[test]
    fn a_flood_of_new_principals_evicts_idle_ones_never_a_sender_over_its_threshold() {
        let mut d = VolumeDetector::with_cap(&detector().rules, PEOPLE, 100);
        let mut c = VolumeCounters::default();
        let sender = Principal::Uid(1000);
        let mut alerts = 0;
        d.observe(&sent(sender, 0, 1000), &mut c, |_| alerts += 1);
        for i in 0..10_000u32 {
            let spoofed = Principal::Host(std::net::Ipv4Addr::from(0x0a00_0000 + i).into());
            d.observe(&sent(spoofed, i64::from(i) * 1000, 1), &mut c, |_| alerts += 1);
            assert!(d.principals.len() <= 100);
        }
        // Still over its threshold, so still there: no second alert for the same episode.
        assert!(d.principals.contains_key(&sender));
        d.observe(&sent(sender, 10 * S, 1), &mut c, |_| alerts += 1);
        assert_eq!(alerts, 1);
        assert!(c.principals_evicted >= 10_000 - 100, "{c:?}");
        assert_eq!(c.principals_full, 0);
    }

    #[test]
    fn slow_trickle_under_threshold_never_alerts() {
        let mut d = detector();
        // 100 bytes every 90 s: at most 7 in any 10 minutes.
        let packets: Vec<_> = (0..100).map(|i| (i * 90 * S, 100)).collect();
        assert!(feed(&mut d, Principal::Uid(1), &packets).is_empty());
    }

    #[test]
    fn shipped_rules_leave_serving_alone_and_catch_a_service_sending_out() {
        let mut d = VolumeDetector::new(&default_rules(), PEOPLE);
        let mut c = VolumeCounters::default();
        let mut alerts = Vec::new();
        let www = Principal::Uid(33);
        for (i, direction) in [Direction::Served, Direction::Initiated].into_iter().enumerate() {
            for k in 0..100 {
                let s = Sent { direction, ..sent(www, (i as i64 * 1000 + k) * S, 1 << 20) };
                d.observe(&s, &mut c, |x| alerts.push(x));
            }
        }
        assert_eq!(alerts.len(), 2, "{alerts:?}");
        assert!(alerts.iter().all(|a| a.ts_us >= 1000 * S), "served bytes counted: {alerts:?}");
        assert_eq!(alerts[0].rule.as_deref(), Some("services-10m"));
        // A person counts in either direction: an scp pull is served by their session.
        let mut alerts = Vec::new();
        for k in 0..5 {
            let s = Sent { direction: Direction::Served, ..sent(Principal::Uid(1001), k * S, 1 << 20) };
            d.observe(&s, &mut c, |x| alerts.push(x));
        }
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].rule.as_deref(), Some("people-10m"));
    }

    /// Issue 11: sshd's flow counted for root until the lookup saw the login; the bytes move
    /// to the user, whose rule alerts then, naming the process; root's window gives them back.
    #[test]
    fn recredited_bytes_leave_roots_window_and_alert_for_the_login_user() {
        let mut d = VolumeDetector::new(&[rule(1000)], PEOPLE);
        let (root, alice) = (Principal::Uid(0), Principal::Uid(1001));
        assert_eq!(feed(&mut d, root, &[(0, 900), (S, 300)]).len(), 1, "root crossed before the answer");
        let s = sent(alice, S, 1200);
        let row = EgressRow {
            principal: alice,
            gid: None,
            dst: s.dst,
            minute_us: 0,
            packets: 2,
            bytes: 1200,
            first_us: 0,
            last_us: S,
            direction: Direction::Unknown,
            dst_name: None,
        };
        let mut out = Findings::default();
        d.recredit(&Recredit { from: root, rows: vec![row] }, None, &mut out);
        assert_eq!(out.alerts.len(), 1);
        assert_eq!((out.alerts[0].principal, out.alerts[0].bytes), (alice, 1200));
        assert_eq!(out.alerts[0].dst.as_deref(), Some("203.0.113.1:443/tcp"));
        // Root's window is empty again: its next 900 bytes are under the threshold.
        assert!(feed(&mut d, root, &[(2 * S, 900)]).is_empty());
    }

    #[test]
    fn a_restart_resumes_the_windows_and_remembers_what_alerted() {
        let row = |who: Principal, minute: i64, bytes: u64| EgressRow {
            principal: who,
            gid: None,
            dst: sent(who, 0, 0).dst,
            minute_us: minute * 60 * S,
            packets: 10,
            bytes,
            first_us: minute * 60 * S,
            last_us: minute * 60 * S + 30 * S,
            direction: Direction::Unknown,
            dst_name: None,
        };
        let (alice, bob) = (Principal::Uid(1001), Principal::Uid(1002));
        let mut d = detector();
        // Before the restart: alice sent 600 of a 1000-byte rule, bob 1200 (he alerted then).
        d.resume(Past::Egress(&row(alice, 0, 600)));
        d.resume(Past::Egress(&row(bob, 0, 1200)));
        // After it: alice's next 500 make one alert, bob's next bytes are the same episode.
        assert_eq!(feed(&mut d, alice, &[(90 * S, 500)]).len(), 1);
        assert!(feed(&mut d, bob, &[(90 * S, 500)]).is_empty());
    }
}
