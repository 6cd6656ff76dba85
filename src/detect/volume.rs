//! Volume: alert when a principal's outbound bytes within a sliding window reach a threshold.
//!
//! One alert per episode: once a rule has fired for a principal it stays quiet until that
//! principal's sum for the rule has fallen back under the threshold.

use std::time::Duration;

use rustc_hash::FxHashMap;

use super::window::SlidingSum;
use crate::config::{Severity, VolumeRule};
use crate::principal::Principal;

/// A principal crossed a rule's threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossing {
    pub ts_us: i64,
    pub principal: Principal,
    pub window: Duration,
    pub threshold: u64,
    pub severity: Severity,
    /// Bytes within the window when it crossed.
    pub bytes: u64,
}

struct RuleState {
    sum: SlidingSum,
    firing: bool,
}

pub struct VolumeDetector {
    rules: Vec<VolumeRule>,
    principals: FxHashMap<Principal, Vec<RuleState>>,
}

impl VolumeDetector {
    pub fn new(rules: &[VolumeRule]) -> VolumeDetector {
        VolumeDetector { rules: rules.to_vec(), principals: FxHashMap::default() }
    }

    /// Accounts `bytes` sent by `principal` at `ts_us`; calls `on_cross` for each rule whose
    /// threshold this packet reached.
    pub fn observe(&mut self, principal: Principal, ts_us: i64, bytes: u64, mut on_cross: impl FnMut(Crossing)) {
        let rules = &self.rules;
        let states = self.principals.entry(principal).or_insert_with(|| {
            rules.iter().map(|r| RuleState { sum: SlidingSum::new(r.window), firing: false }).collect()
        });
        for (rule, state) in rules.iter().zip(states.iter_mut()) {
            let sum = state.sum.add(ts_us, bytes);
            if sum < rule.bytes {
                state.firing = false;
            } else if !state.firing {
                state.firing = true;
                on_cross(Crossing {
                    ts_us,
                    principal,
                    window: rule.window,
                    threshold: rule.bytes,
                    severity: rule.severity,
                    bytes: sum,
                });
            }
        }
    }

    /// Number of principals with state.
    pub fn principals(&self) -> usize {
        self.principals.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn detector() -> VolumeDetector {
        VolumeDetector::new(&[VolumeRule { window: Duration::from_secs(600), bytes: 1000, severity: Severity::Medium }])
    }

    fn feed(d: &mut VolumeDetector, who: Principal, packets: &[(i64, u64)]) -> Vec<Crossing> {
        let mut out = Vec::new();
        for &(ts, n) in packets {
            d.observe(who, ts, n, |c| out.push(c));
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
        assert_eq!(d.principals(), 2);
    }

    #[test]
    fn slow_trickle_under_threshold_never_alerts() {
        let mut d = detector();
        // 100 bytes every 90 s: at most 7 in any 10 minutes.
        let packets: Vec<_> = (0..100).map(|i| (i * 90 * S, 100)).collect();
        assert!(feed(&mut d, Principal::Uid(1), &packets).is_empty());
    }
}
