//! Small building blocks the covert-channel detectors share: several counters summed over
//! one sliding window, and the one-alert-per-episode rule with escalations.
//!
//! [`Tally`] differs from [`super::window::SlidingSum`] in size, not in idea: the covert
//! detectors keep one per (principal, domain) or (principal, peer), possibly a hundred
//! thousand of them, so it holds `K` counters in 12 buckets of `u32` (a few hundred bytes)
//! instead of 60 buckets of `u64` per counter.

/// Buckets per window: the window slides in steps of 1/12 of its length.
pub const BUCKETS: usize = 12;

#[derive(Debug, Clone)]
pub struct Tally<const K: usize> {
    /// Index (time / bucket_us) of the newest bucket.
    head: i64,
    ring: [[u32; K]; BUCKETS],
    sum: [u32; K],
}

impl<const K: usize> Default for Tally<K> {
    fn default() -> Self {
        Tally {
            head: i64::MIN,
            ring: [[0; K]; BUCKETS],
            sum: [0; K],
        }
    }
}

impl<const K: usize> Tally<K> {
    /// Adds `values` at `ts_us` and returns the sums over the window ending then. Packets
    /// older than the newest bucket count in the newest bucket (capture reordering is small).
    pub fn add(&mut self, ts_us: i64, bucket_us: i64, values: [u32; K]) -> [u32; K] {
        self.advance(ts_us, bucket_us);
        let slot = self.head.rem_euclid(BUCKETS as i64) as usize;
        for (k, v) in values.into_iter().enumerate() {
            self.ring[slot][k] = self.ring[slot][k].saturating_add(v);
            self.sum[k] = self.sum[k].saturating_add(v);
        }
        self.sum
    }

    /// Moves the window's end to `ts_us`, dropping buckets that fell out of it.
    pub fn advance(&mut self, ts_us: i64, bucket_us: i64) -> [u32; K] {
        let idx = ts_us.div_euclid(bucket_us.max(1));
        if self.head == i64::MIN || idx.saturating_sub(self.head) >= BUCKETS as i64 {
            *self = Tally {
                head: idx,
                ..Tally::default()
            };
        } else if idx > self.head {
            for i in self.head + 1..=idx {
                let slot = i.rem_euclid(BUCKETS as i64) as usize;
                for k in 0..K {
                    // The sum includes every bucket, so it cannot underflow; saturate anyway
                    // because a saturated bucket may have added less than it holds.
                    self.sum[k] = self.sum[k].saturating_sub(self.ring[slot][k]);
                }
                self.ring[slot] = [0; K];
            }
            self.head = idx;
        }
        self.sum
    }
}

/// What an episode did with a new reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The first alert of an episode.
    Open,
    /// The episode grew past the next escalation level (1, 2, ...).
    Escalate(u32),
}

/// One alert per episode: an episode opens when a rule is met, escalates each time the
/// evidence (bytes carried) multiplies by [`ESCALATION_FACTOR`] past `escalate_at`, and ends
/// once the rules are no longer met; only then can a new one open.
#[derive(Debug, Clone, Copy, Default)]
pub struct Episode {
    open: bool,
    escalations: u32,
    next_escalation: u64,
}

pub const ESCALATION_FACTOR: u64 = 4;

impl Episode {
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Feeds the current verdict (`over`: a rule is met; `quiet`: the window has fallen well
    /// under the rules) and the evidence size.
    pub fn update(
        &mut self,
        over: bool,
        quiet: bool,
        carried: u64,
        escalate_at: u64,
    ) -> Option<Step> {
        if !self.open {
            if over {
                *self = Episode {
                    open: true,
                    escalations: 0,
                    next_escalation: escalate_at.max(1),
                };
                return Some(Step::Open);
            }
            return None;
        }
        if quiet && !over {
            *self = Episode::default();
            return None;
        }
        if carried >= self.next_escalation {
            self.escalations += 1;
            while self.next_escalation <= carried {
                self.next_escalation = self.next_escalation.saturating_mul(ESCALATION_FACTOR);
            }
            return Some(Step::Escalate(self.escalations));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn tally_sums_and_forgets() {
        let mut t = Tally::<2>::default();
        assert_eq!(t.add(0, 10 * S, [1, 5]), [1, 5]);
        assert_eq!(t.add(50 * S, 10 * S, [1, 1]), [2, 6]);
        // 120 s window: the first bucket leaves at 120 s.
        assert_eq!(t.add(121 * S, 10 * S, [0, 0]), [1, 1]);
        assert_eq!(t.advance(10_000 * S, 10 * S), [0, 0]);
    }

    #[test]
    fn tally_survives_extreme_times_and_values() {
        let mut t = Tally::<1>::default();
        t.add(i64::MIN + 1, 1, [u32::MAX]);
        t.add(i64::MAX, 1, [u32::MAX]);
        t.add(i64::MAX, 1, [u32::MAX]);
        t.add(0, 0, [1]);
    }

    #[test]
    fn episode_opens_once_escalates_by_factor_and_closes_when_quiet() {
        let mut e = Episode::default();
        assert_eq!(e.update(false, true, 0, 100), None);
        assert_eq!(e.update(true, false, 10, 100), Some(Step::Open));
        assert_eq!(e.update(true, false, 50, 100), None);
        assert_eq!(e.update(true, false, 120, 100), Some(Step::Escalate(1)));
        assert_eq!(e.update(true, false, 390, 100), None);
        assert_eq!(e.update(true, false, 5000, 100), Some(Step::Escalate(2)));
        assert_eq!(e.update(false, false, 5000, 100), None);
        assert!(e.is_open(), "not quiet yet: still the same episode");
        assert_eq!(e.update(false, true, 5000, 100), None);
        assert_eq!(e.update(true, false, 1, 100), Some(Step::Open));
    }
}
