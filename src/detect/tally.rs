//! Small building blocks the detectors share: counters summed over one sliding window, and
//! the one-alert-per-episode rule with escalations.
//!
//! One ring of buckets serves both sizes: the covert detectors keep a [`Tally`] per
//! (principal, domain) or (principal, peer), possibly a hundred thousand of them, so theirs
//! holds `K` counters in 12 buckets of `u32` (a few hundred bytes) and is told the bucket width
//! on each call; the volume detector keeps a [`SlidingSum`] of bytes per principal and rule, a
//! `u64` in 60 buckets for a finer edge. Time only moves forward: a packet older than the
//! newest bucket counts in the newest bucket (capture reordering is small).

use std::time::Duration;

/// Buckets per covert-detector window: it slides in steps of 1/12 of its length.
pub const BUCKETS: usize = 12;

/// A counter in a bucket: adds and removes saturate, so extreme values cannot panic.
pub trait Count: Copy + Default {
    fn plus(self, other: Self) -> Self;
    fn minus(self, other: Self) -> Self;
}

impl Count for u32 {
    fn plus(self, other: Self) -> Self {
        self.saturating_add(other)
    }
    fn minus(self, other: Self) -> Self {
        self.saturating_sub(other)
    }
}

impl Count for u64 {
    fn plus(self, other: Self) -> Self {
        self.saturating_add(other)
    }
    fn minus(self, other: Self) -> Self {
        self.saturating_sub(other)
    }
}

/// `K` counters summed over the last `B` buckets. One ring is always told the same bucket
/// width.
#[derive(Debug, Clone)]
pub struct Ring<T: Count, const K: usize, const B: usize> {
    /// Index (time / bucket_us) of the newest bucket.
    head: i64,
    /// Where the newest bucket ends: a time before it needs no division to place (the path
    /// nearly every packet takes; a 64-bit division costs tens of cycles).
    head_end_us: i64,
    ring: [[T; K]; B],
    sum: [T; K],
}

/// The covert detectors' window: `K` counters of `u32` in [`BUCKETS`] buckets.
pub type Tally<const K: usize> = Ring<u32, K, BUCKETS>;

impl<T: Count, const K: usize, const B: usize> Default for Ring<T, K, B> {
    fn default() -> Self {
        Ring { head: i64::MIN, head_end_us: i64::MIN, ring: [[T::default(); K]; B], sum: [T::default(); K] }
    }
}

impl<T: Count, const K: usize, const B: usize> Ring<T, K, B> {
    /// Adds `values` at `ts_us` and returns the sums over the window ending then.
    pub fn add(&mut self, ts_us: i64, bucket_us: i64, values: [T; K]) -> [T; K] {
        self.advance(ts_us, bucket_us);
        let slot = self.head.rem_euclid(B as i64) as usize;
        for (k, v) in values.into_iter().enumerate() {
            self.ring[slot][k] = self.ring[slot][k].plus(v);
            self.sum[k] = self.sum[k].plus(v);
        }
        self.sum
    }

    /// Moves the window's end to `ts_us`, dropping buckets that fell out of it.
    pub fn advance(&mut self, ts_us: i64, bucket_us: i64) -> [T; K] {
        if ts_us < self.head_end_us {
            return self.sum;
        }
        let bucket_us = bucket_us.max(1);
        let idx = ts_us.div_euclid(bucket_us);
        if self.head == i64::MIN || idx.saturating_sub(self.head) >= B as i64 {
            *self = Ring { head: idx, ..Ring::default() };
        } else if idx > self.head {
            for i in self.head + 1..=idx {
                let slot = i.rem_euclid(B as i64) as usize;
                for k in 0..K {
                    // The sum includes every bucket, so it cannot underflow; saturate anyway
                    // because a saturated bucket may have added less than it holds.
                    self.sum[k] = self.sum[k].minus(self.ring[slot][k]);
                }
                self.ring[slot] = [T::default(); K];
            }
            self.head = idx;
        }
        self.head_end_us = self.head.saturating_add(1).saturating_mul(bucket_us);
        self.sum
    }
}

/// Bytes over a fixed window in 60 buckets (1/60 of the window each), which is what a
/// threshold alert needs; memory is constant per window.
#[derive(Debug, Clone)]
pub struct SlidingSum {
    bucket_us: i64,
    ring: Ring<u64, 1, 60>,
}

impl SlidingSum {
    pub fn new(window: Duration) -> SlidingSum {
        let window_us = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
        SlidingSum { bucket_us: (window_us / 60).max(1), ring: Ring::default() }
    }

    /// Adds `n` at time `ts_us` and returns the sum over the window ending then.
    pub fn add(&mut self, ts_us: i64, n: u64) -> u64 {
        self.ring.add(ts_us, self.bucket_us, [n])[0]
    }

    /// Moves the window's end to `ts_us` and returns what is left in it.
    pub fn advance(&mut self, ts_us: i64) -> u64 {
        self.ring.advance(ts_us, self.bucket_us)[0]
    }

    /// Takes back up to `n` added since `first_us` (from the newest bucket back: a packet
    /// added late counts in the newest) and returns the sum left.
    pub fn take(&mut self, first_us: i64, mut n: u64) -> u64 {
        let r = &mut self.ring;
        if r.head == i64::MIN {
            return 0;
        }
        let oldest = r.head.saturating_sub(59).max(first_us.div_euclid(self.bucket_us));
        let mut i = r.head;
        while n > 0 && i >= oldest {
            let slot = i.rem_euclid(60) as usize;
            let t = r.ring[slot][0].min(n);
            r.ring[slot][0] -= t;
            r.sum[0] = r.sum[0].saturating_sub(t);
            n -= t;
            i -= 1;
        }
        r.sum[0]
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
    pub fn update(&mut self, over: bool, quiet: bool, carried: u64, escalate_at: u64) -> Option<Step> {
        if !self.open {
            if over {
                *self = Episode { open: true, escalations: 0, next_escalation: escalate_at.max(1) };
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

    /// The ring against its definition (what a bucket holds is what arrived at times in it or,
    /// when older than the newest bucket, then), over jittered times around zero.
    #[test]
    fn ring_sums_what_its_buckets_saw() {
        let bucket = 7;
        let mut ring = Tally::<1>::default();
        let mut seen: Vec<(i64, u32)> = Vec::new();
        let mut newest = i64::MIN;
        let mut x: i64 = 12345;
        for step in 0..5000 {
            x = (x * 1_103_515_245 + 12345) % 2_147_483_648;
            let ts = step * 3 - 4000 + x % 20 - 10;
            let idx = ts.div_euclid(bucket).max(newest);
            newest = idx;
            seen.push((idx, 1));
            let want: u32 = seen.iter().filter(|(i, _)| idx - i < BUCKETS as i64).map(|(_, n)| n).sum();
            assert_eq!(ring.add(ts, bucket, [1]), [want], "step {step} at {ts}");
        }
    }

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

    #[test]
    fn sliding_sum_within_window_and_forgets_after() {
        let mut w = SlidingSum::new(Duration::from_secs(60));
        assert_eq!(w.add(0, 100), 100);
        assert_eq!(w.add(30 * S, 50), 150);
        // At 61 s the first bucket has left the window.
        assert_eq!(w.add(61 * S, 1), 51);
        assert_eq!(w.advance(200 * S), 0);
    }

    #[test]
    fn sliding_sum_late_packet_counts_in_newest_bucket() {
        let mut w = SlidingSum::new(Duration::from_secs(60));
        w.add(10 * S, 1);
        assert_eq!(w.add(9 * S, 1), 2);
    }

    #[test]
    fn sliding_sum_negative_and_huge_times_do_not_panic() {
        let mut w = SlidingSum::new(Duration::from_secs(1));
        w.add(-5 * S, 1);
        w.add(i64::MAX, 1);
        w.add(i64::MIN + 1, 1);
    }
}
