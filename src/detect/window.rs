//! A sliding sum over packet time, kept in a fixed ring of buckets.
//!
//! Memory is constant per window (`BUCKETS` counters); the sum covers the last `window` with
//! the granularity of one bucket (1/60 of the window), which is what a threshold alert needs.
//! Time only moves forward: a packet older than the newest bucket is added to the newest
//! bucket if it still falls within the window (capture reordering is small), else ignored.

use std::time::Duration;

const BUCKETS: usize = 60;

#[derive(Debug, Clone)]
pub struct SlidingSum {
    bucket_us: i64,
    /// Index (time / bucket_us) of the newest bucket.
    head: i64,
    ring: [u64; BUCKETS],
    sum: u64,
}

impl SlidingSum {
    pub fn new(window: Duration) -> SlidingSum {
        let window_us = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
        SlidingSum {
            bucket_us: (window_us / BUCKETS as i64).max(1),
            head: i64::MIN,
            ring: [0; BUCKETS],
            sum: 0,
        }
    }

    /// Adds `n` at time `ts_us` and returns the sum over the window ending then.
    pub fn add(&mut self, ts_us: i64, n: u64) -> u64 {
        self.advance(ts_us);
        let slot = self.head.rem_euclid(BUCKETS as i64) as usize;
        self.ring[slot] += n;
        self.sum += n;
        self.sum
    }

    /// Moves the window's end to `ts_us`, dropping buckets that fell out of it.
    pub fn advance(&mut self, ts_us: i64) -> u64 {
        let idx = ts_us.div_euclid(self.bucket_us);
        if self.head == i64::MIN || idx.saturating_sub(self.head) >= BUCKETS as i64 {
            self.ring = [0; BUCKETS];
            self.sum = 0;
            self.head = idx;
        } else if idx > self.head {
            for i in self.head + 1..=idx {
                let slot = i.rem_euclid(BUCKETS as i64) as usize;
                self.sum -= self.ring[slot];
                self.ring[slot] = 0;
            }
            self.head = idx;
        }
        self.sum
    }

    pub fn sum(&self) -> u64 {
        self.sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn sums_within_window_and_forgets_after() {
        let mut w = SlidingSum::new(Duration::from_secs(60));
        assert_eq!(w.add(0, 100), 100);
        assert_eq!(w.add(30 * S, 50), 150);
        // At 61 s the first bucket has left the window.
        assert_eq!(w.add(61 * S, 1), 51);
        assert_eq!(w.advance(200 * S), 0);
    }

    #[test]
    fn late_packet_counts_in_newest_bucket() {
        let mut w = SlidingSum::new(Duration::from_secs(60));
        w.add(10 * S, 1);
        assert_eq!(w.add(9 * S, 1), 2);
    }

    #[test]
    fn negative_and_huge_times_do_not_panic() {
        let mut w = SlidingSum::new(Duration::from_secs(1));
        w.add(-5 * S, 1);
        w.add(i64::MAX, 1);
        w.add(i64::MIN + 1, 1);
    }
}
