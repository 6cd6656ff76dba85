//! Picking up after a restart: a stored row's counts go back into its pair's window, so the
//! names sent before and after a restart add up; a window over a threshold then is an episode
//! that alerted then. Names themselves are not stored, so one asked again after the restart
//! counts as unique once more (the error is on the side of alerting).

use std::hash::BuildHasher;

use super::pair::{Pair, BYTES, ENCODED, UNIQUE};
use super::rows::row_flags;
use super::DnsDetector;
use crate::rows::DnsRow;

impl DnsDetector {
    pub(super) fn resume_row(&mut self, r: &DnsRow) {
        let key = (r.principal, self.hasher.hash_one(r.domain.as_bytes()));
        let mut c = self.counters;
        if !self.pairs.contains_key(&key) && !self.make_room(r.minute_us, &mut c) {
            self.counters = c;
            return;
        }
        self.counters = c;
        let pair = self
            .pairs
            .entry(key)
            .or_insert_with(|| Pair::new(r.domain.clone(), r.principal, r.gid, r.minute_us, r.minute_us));
        pair.last_us = pair.last_us.max(r.minute_us);
        let judged = r.flags & row_flags::ALLOWED == 0 || r.suspicious > 0;
        let bytes = u32::try_from(r.name_bytes).unwrap_or(u32::MAX);
        let counts = if judged { [r.queries, r.unique, bytes, r.suspicious, 0] } else { [r.queries, 0, 0, 0, 0] };
        let sums = pair.tally.add(r.minute_us, self.bucket_us, counts);
        if judged {
            pair.carried += r.name_bytes;
        }
        let cfg = &self.cfg;
        let over = sums[ENCODED] >= cfg.encoded_names
            || sums[UNIQUE] >= cfg.unique_names
            || u64::from(sums[BYTES]) >= cfg.unique_bytes;
        // Opening it again here, without an alert: it alerted before the restart.
        pair.episode.update(over, false, pair.carried, cfg.escalate_bytes);
    }
}
