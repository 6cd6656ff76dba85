//! What the owner lookups counted, and how long they took.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Why;

/// A latency histogram in microseconds: exact below 16 µs, then 8 buckets per power of two
/// (within 12.5 %), up to about 2^40 µs. Fixed size, no allocation per sample.
#[derive(Clone, PartialEq, Eq)]
pub struct Latency {
    buckets: Box<[u64; BUCKETS]>,
    count: u64,
    min_us: u64,
    max_us: u64,
}

const SUB: u32 = 8;
const LINEAR: u64 = 16;
const BUCKETS: usize = 16 + 37 * SUB as usize;

impl Default for Latency {
    fn default() -> Self {
        Latency { buckets: Box::new([0; BUCKETS]), count: 0, min_us: u64::MAX, max_us: 0 }
    }
}

impl std::fmt::Debug for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Latency {{ count: {}, min: {:?}, median: {:?}, p99: {:?}, max: {:?} }}",
            self.count,
            self.min(),
            self.quantile(0.5),
            self.quantile(0.99),
            self.max()
        )
    }
}

fn bucket(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros(); // >= 4
    let sub = (us >> (exp - 3)) & u64::from(SUB - 1);
    (LINEAR as usize + (exp as usize - 4) * SUB as usize + sub as usize).min(BUCKETS - 1)
}

/// The smallest value of a bucket.
fn bucket_floor(b: usize) -> u64 {
    if b < LINEAR as usize {
        return b as u64;
    }
    let exp = (b - LINEAR as usize) / SUB as usize + 4;
    let sub = ((b - LINEAR as usize) % SUB as usize) as u64;
    (1u64 << exp) + (sub << (exp - 3))
}

impl Latency {
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket(us)] += 1;
        self.count += 1;
        self.min_us = self.min_us.min(us);
        self.max_us = self.max_us.max(us);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn min(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_micros(self.min_us))
    }

    pub fn max(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_micros(self.max_us))
    }

    /// The `q` quantile (0..=1), as the lower edge of its bucket (within 12.5 % above 16 µs),
    /// clamped to the exact min and max.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Duration::from_micros(bucket_floor(b).clamp(self.min_us, self.max_us)));
            }
        }
        self.max()
    }
}

/// Counters of the asking side and of the worker, as [`super::Owners::stats`] gives them.
///
/// Every queued lookup ends in exactly one answer or is superseded by a newer connection on
/// its 4-tuple: `queued = found + Σ unknown + superseded + pending`.
#[derive(Debug, Clone, Default)]
pub struct OwnerStats {
    /// `ask` calls.
    pub asked: u64,
    /// Answered from the cache.
    pub cache_hits: u64,
    /// Asked while a lookup of the same flow was already under way (no new lookup).
    pub joined: u64,
    /// Lookups handed to the worker.
    pub queued: u64,
    /// Not handed over because the queue was full (the caller got `Unknown(QueueFull)`, or
    /// the stale cached answer).
    pub queue_full: u64,
    /// Answers dropped because a newer connection on the same 4-tuple was asked about after
    /// the kernel was (`ask_new`); the lookup was queued again.
    pub superseded: u64,
    /// Worker answers that named a process.
    pub found: u64,
    /// Worker answers that could not, by reason (indexed by `Why as usize`).
    pub unknown: [u64; Why::ALL.len()],
    /// Ask → answer time of the worker's answers.
    pub latency: Latency,
    /// Lookups asked and not yet answered.
    pub pending: u64,
    /// Worker side, see [`WorkerStats`].
    pub worker: WorkerStats,
}

impl OwnerStats {
    pub fn unknown(&self, why: Why) -> u64 {
        self.unknown[why as usize]
    }

    pub fn unknown_total(&self) -> u64 {
        self.unknown.iter().sum()
    }

    /// Every counter under a stable name (`owner_…`), for health records and reports.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let w = &self.worker;
        let mut c = vec![
            ("owner_asked", self.asked),
            ("owner_cache_hits", self.cache_hits),
            ("owner_joined", self.joined),
            ("owner_queued", self.queued),
            ("owner_queue_full", self.queue_full),
            ("owner_superseded", self.superseded),
            ("owner_found", self.found),
            ("owner_pending", self.pending),
        ];
        c.extend(Why::ALL.iter().map(|&w| (w.counter(), self.unknown(w))));
        c.extend([
            ("owner_diag_queries", w.diag_queries),
            ("owner_diag_bad_answers", w.diag_bad_answers),
            ("owner_retries", w.retries),
            ("owner_index_hits", w.index_hits),
            ("owner_index_stale", w.index_stale),
            ("owner_pid_scans", w.pid_scans),
            ("owner_pid_scan_us", w.pid_scan_us),
            ("owner_full_scans", w.full_scans),
            ("owner_full_scan_us", w.full_scan_us),
            ("owner_index_size", w.index_size),
            ("owner_not_indexed", w.not_indexed),
            ("owner_process_reads", w.process_reads),
            ("owner_process_cache_hits", w.process_cache_hits),
            ("owner_waiting", w.waiting),
        ]);
        c
    }
}

/// What the worker did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Sockets asked about over sock_diag.
    pub diag_queries: u64,
    /// sock_diag answers that could not be parsed or named another socket.
    pub diag_bad_answers: u64,
    /// Lookups tried again (not yet accepted, holder changed while read, nobody found).
    pub retries: u64,
    pub index_hits: u64,
    pub index_stale: u64,
    pub pid_scans: u64,
    pub pid_scan_us: u64,
    pub full_scans: u64,
    pub full_scan_us: u64,
    pub last_full_scan_us: u64,
    pub index_size: u64,
    pub not_indexed: u64,
    /// Processes read from /proc, and owners served from the short-lived process cache.
    pub process_reads: u64,
    pub process_cache_hits: u64,
    /// Lookups waiting for a retry or the next full scan now.
    pub waiting: u64,
}

/// [`WorkerStats`] shared between the worker (writer) and the asking side (reader).
#[derive(Default)]
pub(super) struct SharedStats([AtomicU64; 15]);

impl SharedStats {
    pub fn store(&self, s: &WorkerStats) {
        let v = [
            s.diag_queries,
            s.diag_bad_answers,
            s.retries,
            s.index_hits,
            s.index_stale,
            s.pid_scans,
            s.full_scans,
            s.full_scan_us,
            s.last_full_scan_us,
            s.index_size,
            s.not_indexed,
            s.process_reads,
            s.process_cache_hits,
            s.waiting,
            s.pid_scan_us,
        ];
        for (a, v) in self.0.iter().zip(v) {
            a.store(v, Ordering::Relaxed);
        }
    }

    pub fn load(&self) -> WorkerStats {
        let v: [u64; 15] = std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed));
        WorkerStats {
            diag_queries: v[0],
            diag_bad_answers: v[1],
            retries: v[2],
            index_hits: v[3],
            index_stale: v[4],
            pid_scans: v[5],
            full_scans: v[6],
            full_scan_us: v[7],
            last_full_scan_us: v[8],
            index_size: v[9],
            not_indexed: v[10],
            process_reads: v[11],
            process_cache_hits: v[12],
            waiting: v[13],
            pid_scan_us: v[14],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for us in (0..100_000u64).chain([1 << 30, u64::MAX / 2, u64::MAX]) {
            let b = bucket(us);
            assert!(b >= last, "{us}");
            last = b;
            let floor = bucket_floor(b);
            assert!(floor <= us, "{us}: floor {floor}");
            if us >= LINEAR && b < BUCKETS - 1 {
                assert!((us - floor) * 8 <= floor, "{us}: floor {floor} more than 12.5 % below");
            }
        }
    }

    #[test]
    fn quantiles() {
        let mut l = Latency::default();
        assert_eq!(l.quantile(0.5), None);
        for us in 1..=100 {
            l.record(Duration::from_micros(us));
        }
        assert_eq!(l.count(), 100);
        assert_eq!(l.min(), Some(Duration::from_micros(1)));
        assert_eq!(l.max(), Some(Duration::from_micros(100)));
        let median = l.quantile(0.5).unwrap().as_micros();
        assert!((44..=50).contains(&median), "{median}");
        let p99 = l.quantile(0.99).unwrap().as_micros();
        assert!((88..=99).contains(&p99), "{p99}");
        assert_eq!(l.quantile(1.0), Some(Duration::from_micros(96)));
        assert_eq!(l.quantile(0.0), Some(Duration::from_micros(1)));
        l.record(Duration::MAX);
        assert_eq!(l.max(), Some(Duration::from_micros(u64::MAX)));
    }
}
