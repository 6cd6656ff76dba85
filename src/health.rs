//! The live monitor's own health: what it received, what the kernel dropped, and when to say so.
//!
//! A heartbeat row per daemon run is rewritten every second (see `store::health`), so a
//! killed daemon leaves its last state behind and `exfilmon report health` can tell a running
//! monitor from a dead one. Loss raises a `monitor_loss` alert: at once the first time, then at
//! most once per [`LossAlarm`] period, each alert covering everything lost since the previous
//! one, so a sustained overrun cannot flood the alert table yet no lost packet goes unreported.

use serde_json::{json, Value};

use crate::alert::AlertKind;
use crate::alert::Severity;

/// One heartbeat of a daemon run.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub run_id: i64,
    pub pid: u32,
    pub group: u16,
    pub rcvbuf: u64,
    pub started_at_us: i64,
    pub updated_at_us: i64,
    pub stopped_at_us: Option<i64>,
    pub received: u64,
    pub lost: u64,
    pub overruns: u64,
    pub last_packet_us: Option<i64>,
    pub queue_depth: u64,
    pub queue_waits: u64,
    pub counters: Value,
}

/// Packets the monitor did not see. Not about any principal: stored without one.
#[derive(Debug, Clone, PartialEq)]
pub struct LossAlert {
    pub ts_us: i64,
    pub kind: AlertKind,
    pub severity: Severity,
    pub lost: u64,
    pub overruns: u64,
    pub summary: String,
    pub details: Value,
}

/// What the writer thread stores for a heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthUpdate {
    pub health: Health,
    pub loss: Option<LossAlert>,
}

/// Decides when loss becomes an alert.
#[derive(Debug)]
pub struct LossAlarm {
    period_us: i64,
    reported_lost: u64,
    reported_overruns: u64,
    last_alert_us: Option<i64>,
}

impl LossAlarm {
    pub fn new(period: std::time::Duration) -> LossAlarm {
        LossAlarm {
            period_us: i64::try_from(period.as_micros()).unwrap_or(i64::MAX),
            reported_lost: 0,
            reported_overruns: 0,
            last_alert_us: None,
        }
    }

    /// Given the running totals, an alert for what is not reported yet, if it is time for one
    /// (`force` at exit: nothing unreported may remain).
    pub fn check(&mut self, now_us: i64, lost: u64, overruns: u64, rcvbuf: u64, force: bool) -> Option<LossAlert> {
        let new_lost = lost.saturating_sub(self.reported_lost);
        let new_overruns = overruns.saturating_sub(self.reported_overruns);
        if new_lost == 0 && new_overruns == 0 {
            return None;
        }
        let due = self.last_alert_us.is_none_or(|t| now_us.saturating_sub(t) >= self.period_us);
        if !due && !force {
            return None;
        }
        let since = self.last_alert_us;
        self.reported_lost = lost;
        self.reported_overruns = overruns;
        self.last_alert_us = Some(now_us);
        let period = match since {
            Some(t) => format!(
                " in the last {}",
                crate::units::human_duration(std::time::Duration::from_micros((now_us - t).max(0) as u64))
            ),
            None => String::new(),
        };
        Some(LossAlert {
            ts_us: now_us,
            kind: AlertKind::MonitorLoss,
            severity: Severity::High,
            lost: new_lost,
            overruns: new_overruns,
            summary: format!(
                "monitor lost {new_lost} packets ({new_overruns} receive-buffer overruns){period}: egress is undercounted; raise [nflog] rcvbuf (now {})",
                crate::units::human_bytes(rcvbuf)
            ),
            details: json!({ "lost": new_lost, "overruns": new_overruns, "lost_total": lost, "overruns_total": overruns, "rcvbuf": rcvbuf }),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn first_loss_at_once_then_once_per_period_and_all_at_exit() {
        let mut a = LossAlarm::new(Duration::from_secs(60));
        assert_eq!(a.check(0, 0, 0, 1, false), None);
        let first = a.check(1_000_000, 100, 2, 1, false).unwrap();
        assert_eq!((first.lost, first.overruns, first.kind.as_str()), (100, 2, "monitor_loss"));
        assert_eq!(a.check(2_000_000, 150, 3, 1, false), None, "within the period");
        let second = a.check(61_000_000, 170, 4, 1, false).unwrap();
        assert_eq!((second.lost, second.overruns), (70, 2), "covers everything since the first");
        assert!(second.summary.contains("in the last 1m"), "{}", second.summary);
        let last = a.check(62_000_000, 171, 4, 1, true).unwrap();
        assert_eq!(last.lost, 1);
        assert_eq!(a.check(63_000_000, 171, 4, 1, true), None);
    }
}
