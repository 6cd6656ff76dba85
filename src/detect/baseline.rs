//! Baselines: "unusual for this principal". A slow leak under every fixed threshold still
//! stands out against what the same user sends at the same hour on other days.
//!
//! Per uid principal in scope, the mean bytes of each hour of the day (UTC) is learned from
//! its finished hours, over about `days` days (a running mean that forgets with weight
//! 1/`days`; idle hours count as zero). Until `warmup` days have been seen it only learns. An
//! hour whose bytes pass `multiple` times that hour's mean and `floor` raises one `baseline`
//! alert. The live monitor starts from the stored history ([`Detector::history`]); a replay
//! learns from its captures as their packet time passes, so it stays a function of them.
//!
//! Memory: at most [`MAX_PRINCIPALS`] principals of about 120 bytes; the least recently active
//! is forgotten when a new one needs room, and counted.

use std::time::Duration;

use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::json;

use super::scope::{Range, Scope, Who};
use super::{Detector, Findings, Seen};
use crate::alert::{Alert, AlertKind, Severity};
use crate::principal::Principal;
use crate::rows::{Recredit, Sent};
use crate::source::owner::Owner;
use crate::units::counters;
use crate::units::de::{byte_size, duration};
use crate::units::human_bytes;

const HOUR_US: i64 = 3_600_000_000;
pub const MAX_PRINCIPALS: usize = 4096;

/// `[baseline]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineConfig {
    pub enabled: bool,
    /// How many days the means remember.
    pub days: u32,
    /// Days of history before a principal is judged.
    #[serde(deserialize_with = "duration")]
    pub warmup: Duration,
    /// An hour alerts above this many times its usual bytes...
    pub multiple: f64,
    /// ...and above this many bytes.
    #[serde(deserialize_with = "byte_size")]
    pub floor: u64,
    /// Whose egress is judged (default: people; see `[[volume]]` for the keys).
    pub scope: Scope,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            enabled: true,
            days: 14,
            warmup: Duration::from_secs(3 * 86_400),
            multiple: 4.0,
            floor: 16 << 20,
            scope: Scope::of(&[Who::People], Default::default()),
        }
    }
}

counters! {
    pub struct BaselineCounters {
        /// Principals forgotten to make room for new ones.
        evicted => "baseline_principals_evicted",
        /// Hours folded into the means.
        hours_learned => "baseline_hours_learned",
    }
}

struct Learned {
    /// Mean bytes per hour of the day.
    mean: [f64; 24],
    /// Finished hours folded in (the warm-up counts them).
    hours: u32,
    /// Start of the hour being counted, and its bytes.
    hour_us: i64,
    bytes: u64,
    alerted: bool,
    /// Newest packet time, for forgetting the least recently active first.
    last_us: i64,
}

impl Learned {
    fn new(hour_us: i64) -> Learned {
        Learned { mean: [0.0; 24], hours: 0, hour_us, bytes: 0, alerted: false, last_us: hour_us }
    }

    /// Moves to the hour starting at `hour_us`, folding in the finished one and the idle ones
    /// between (at most a week of them: beyond that the means have forgotten anyway).
    fn advance(&mut self, hour_us: i64, days: u32, learned: &mut u64) {
        let mut h = self.hour_us;
        let mut bytes = self.bytes;
        let mut steps = 0;
        while h < hour_us && steps < 24 * 7 {
            let slot = hour_of_day(h);
            let weight = 1.0 / f64::from(days.max(1)).min(f64::from(self.hours / 24 + 1));
            self.mean[slot] += (bytes as f64 - self.mean[slot]) * weight;
            self.hours += 1;
            *learned += 1;
            bytes = 0;
            h += HOUR_US;
            steps += 1;
        }
        if hour_us > self.hour_us {
            self.hour_us = hour_us;
            self.bytes = 0;
            self.alerted = false;
        }
    }
}

fn hour_of_day(hour_us: i64) -> usize {
    (hour_us.div_euclid(HOUR_US).rem_euclid(24)) as usize
}

pub struct BaselineDetector {
    cfg: BaselineConfig,
    people: Range,
    principals: FxHashMap<u32, Learned>,
    counters: BaselineCounters,
}

impl BaselineDetector {
    pub fn new(cfg: &BaselineConfig, people: Range) -> BaselineDetector {
        BaselineDetector {
            cfg: cfg.clone(),
            people,
            principals: FxHashMap::default(),
            counters: BaselineCounters::default(),
        }
    }

    fn learned(&mut self, uid: u32, hour_us: i64) -> &mut Learned {
        if self.principals.len() >= MAX_PRINCIPALS && !self.principals.contains_key(&uid) {
            if let Some((&oldest, _)) = self.principals.iter().min_by_key(|(u, l)| (l.last_us, **u)) {
                self.principals.remove(&oldest);
                self.counters.evicted += 1;
            }
        }
        self.principals.entry(uid).or_insert_with(|| Learned::new(hour_us))
    }

    /// Adds `bytes` of `uid` at `ts_us`; an alert when the hour turns unusual.
    fn add(&mut self, uid: u32, ts_us: i64, bytes: u64) -> Option<Alert> {
        let hour_us = ts_us.div_euclid(HOUR_US) * HOUR_US;
        let (days, multiple, floor) = (self.cfg.days, self.cfg.multiple, self.cfg.floor);
        let warm = u32::try_from(self.cfg.warmup.as_secs() / 3600).unwrap_or(u32::MAX);
        let mut learned = 0;
        let l = self.learned(uid, hour_us);
        l.advance(hour_us, days, &mut learned);
        l.bytes = l.bytes.saturating_add(bytes);
        let usual = l.mean[hour_of_day(hour_us)];
        let unusual = l.hours >= warm && !l.alerted && l.bytes > floor && l.bytes as f64 > usual * multiple;
        l.alerted |= unusual;
        l.last_us = l.last_us.max(ts_us);
        let (sent, hours) = (l.bytes, l.hours);
        self.counters.hours_learned += learned;
        unusual.then(|| Alert {
            ts_us,
            kind: AlertKind::Baseline,
            severity: Severity::Medium,
            principal: Principal::Uid(uid),
            dst: None,
            bytes: sent,
            summary: format!(
                "uid {uid} sent {} this hour, usually {} at this hour ({multiple}x its usual, {} days learned)",
                human_bytes(sent),
                human_bytes(usual as u64),
                hours / 24
            ),
            details: json!({ "hour_of_day": hour_of_day(hour_us), "usual_bytes": usual as u64, "multiple": multiple, "days_learned": hours / 24 }),
        })
    }
}

impl BaselineDetector {
    /// The uid of a principal whose bytes like these the scope counts.
    fn counted(&self, s: &Sent) -> Option<u32> {
        s.principal.uid().filter(|_| self.cfg.scope.applies(s.principal, s.gid, self.people, s.direction, &s.dst))
    }
}

impl Detector for BaselineDetector {
    fn packet(&mut self, seen: &Seen<'_, '_>, out: &mut Findings) {
        let s = &seen.sent;
        if let Some(uid) = self.counted(s) {
            out.alerts.extend(self.add(uid, s.ts_us, s.bytes));
        }
    }

    /// Bytes of this hour leave the earlier principal's count for the new one's.
    fn recredit(&mut self, moved: &Recredit, _owner: Option<&Owner>, out: &mut Findings) {
        for row in &moved.rows {
            let to = row.sent();
            let from = Sent { principal: moved.from, ..to };
            let hour_us = to.ts_us.div_euclid(HOUR_US) * HOUR_US;
            if let Some(l) = self.counted(&from).and_then(|uid| self.principals.get_mut(&uid)) {
                if l.hour_us == hour_us {
                    l.bytes = l.bytes.saturating_sub(to.bytes);
                }
            }
            if let Some(uid) = self.counted(&to) {
                out.alerts.extend(self.add(uid, to.ts_us, to.bytes));
            }
        }
    }

    fn history(&mut self, principal: Principal, hour_us: i64, bytes: u64) {
        if let Some(uid) = principal.uid() {
            // The past is learned, never alerted on.
            let warm = self.cfg.warmup;
            self.cfg.warmup = Duration::MAX;
            self.add(uid, hour_us, bytes);
            self.cfg.warmup = warm;
        }
    }

    fn counters(&self, f: &mut dyn FnMut(&'static str, u64)) {
        self.counters.each(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEOPLE: Range = Range { lo: 1000, hi: 60000 };

    /// Issue 11: bytes moved from the socket's uid to the login user count in the user's hour.
    #[test]
    fn recredited_bytes_count_in_the_new_principals_hour() {
        let mut d = BaselineDetector::new(&BaselineConfig::default(), PEOPLE);
        let t = 10 * 24 * HOUR_US + 14 * HOUR_US;
        d.add(1001, t, 1);
        d.add(1002, t, 5 << 20);
        let row = crate::rows::EgressRow {
            principal: Principal::Uid(1001),
            gid: None,
            dst: crate::principal::Dst { addr: [192, 0, 2, 1].into(), port: 22, proto: 6 },
            minute_us: t,
            packets: 10,
            bytes: 5 << 20,
            first_us: t,
            last_us: t + 1,
            direction: Default::default(),
            dst_name: None,
        };
        d.recredit(&Recredit { from: Principal::Uid(1002), rows: vec![row] }, None, &mut Findings::default());
        assert_eq!((d.principals[&1001].bytes, d.principals[&1002].bytes), ((5 << 20) + 1, 0));
    }

    #[test]
    fn a_slow_leak_under_fixed_thresholds_stands_out_against_the_users_own_hours() {
        let mut d = BaselineDetector::new(&BaselineConfig::default(), PEOPLE);
        let mut alerts = Vec::new();
        // Ten days of 2 MiB at 09:00 and nothing else.
        for day in 0..10 {
            let t = day * 24 * HOUR_US + 9 * HOUR_US;
            alerts.extend(d.add(1001, t, 2 << 20));
        }
        assert!(alerts.is_empty(), "{alerts:?}");
        // Day 11: 3 MiB a quarter hour for an hour at 14:00, under a 4 MiB / 10 min rule.
        let t = 10 * 24 * HOUR_US + 14 * HOUR_US;
        for q in 0..4 {
            alerts.extend(d.add(1001, t + q * 900_000_000, 6 << 20));
        }
        assert_eq!(alerts.len(), 1, "one alert per hour: {alerts:?}");
        assert_eq!(alerts[0].kind, AlertKind::Baseline);
        // The usual 09:00 does not alert.
        alerts.clear();
        alerts.extend(d.add(1001, 11 * 24 * HOUR_US + 9 * HOUR_US, 2 << 20));
        assert!(alerts.is_empty(), "{alerts:?}");
    }

    #[test]
    fn nothing_is_judged_before_the_warm_up() {
        let mut d = BaselineDetector::new(&BaselineConfig::default(), PEOPLE);
        assert!(d.add(1001, 0, 1 << 30).is_none());
        assert!(d.add(1001, 2 * 24 * HOUR_US, 1 << 30).is_none());
    }

    #[test]
    fn history_is_learned_not_alerted() {
        let mut d = BaselineDetector::new(&BaselineConfig::default(), PEOPLE);
        for h in 0..(24 * 5) {
            d.history(Principal::Uid(1001), h * HOUR_US, if h == 100 { 1 << 30 } else { 1 << 20 });
        }
        assert!(d.principals[&1001].hours >= 24 * 4);
    }

    #[test]
    fn principals_are_bounded() {
        let mut d = BaselineDetector::new(&BaselineConfig::default(), PEOPLE);
        for uid in 0..(MAX_PRINCIPALS as u32 + 10) {
            d.add(uid + 1000, i64::from(uid), 1);
        }
        assert!(d.principals.len() <= MAX_PRINCIPALS);
        assert_eq!(d.counters.evicted, 10);
    }
}
