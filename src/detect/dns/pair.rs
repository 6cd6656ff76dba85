//! Pair state: one (principal, registered domain), its sliding tallies, its episode and its
//! minute row; a query updates it and may open or escalate the episode.

use std::hash::BuildHasher;

use super::alert::{display, display_name, pair_alert};
use super::domain;
use super::rows::{row_flags, ALERT_SAMPLES, ROW_SAMPLES, STORED_SAMPLES_PER_PAIR};
use super::{DnsCounters, DnsDetector};
use crate::alert::Alert;
use crate::decode::dns::{Flags, Query, MAX_NAME_LEN};
use crate::decode::Packet;
use crate::detect::names::{Alphabet, Shape};
use crate::detect::tally::{Episode, Tally};
use crate::principal::Principal;
use crate::rows::{DnsRow, MINUTE_US};

// Tally slots of a pair.
pub(super) const QUERIES: usize = 0;
pub(super) const UNIQUE: usize = 1;
pub(super) const BYTES: usize = 2;
pub(super) const ENCODED: usize = 3;
pub(super) const ODD: usize = 4;

/// Query types in a pair's type mix; the last slot is "other".
pub(super) const MIX: [u16; 7] = [1, 28, 16, 10, 5, 15, 33];

pub(super) struct Pair {
    pub(super) domain: String,
    pub(super) gid: Option<u32>,
    pub(super) tally: Tally<5>,
    pub(super) episode: Episode,
    /// Estimated data bytes in unique names since the episode (or the state) began.
    pub(super) carried: u64,
    pub(super) types: [u32; MIX.len() + 1],
    pub(super) longest_name: usize,
    pub(super) alphabets: u32,
    pub(super) samples: Vec<String>,
    /// A search suffix appended to the names (`corp.local`), the first one seen.
    pub(super) appended: Option<String>,
    pub(super) stored_samples: u32,
    /// Unique names in the current and the previous half of the burst window, and the
    /// current half's number (packet time divided by half the burst window).
    pub(super) burst: [u32; 2],
    pub(super) burst_half: i64,
    pub(super) row: DnsRow,
    pub(super) last_us: i64,
}

impl Pair {
    pub(super) fn new(domain: String, who: Principal, gid: Option<u32>, minute_us: i64, ts: i64) -> Pair {
        Pair {
            domain,
            gid,
            tally: Tally::default(),
            episode: Episode::default(),
            carried: 0,
            types: [0; MIX.len() + 1],
            longest_name: 0,
            alphabets: 0,
            samples: Vec::new(),
            appended: None,
            stored_samples: 0,
            burst: [0; 2],
            burst_half: i64::MIN,
            row: DnsRow {
                principal: who,
                gid,
                domain: String::new(),
                minute_us,
                queries: 0,
                unique: 0,
                name_bytes: 0,
                suspicious: 0,
                flags: 0,
                samples: Vec::new(),
            },
            last_us: ts,
        }
    }

    /// Counts a unique name into the burst halves; the unique names of this half and the last.
    pub(super) fn burst_add(&mut self, ts: i64, half_us: i64, counted: bool) -> u32 {
        let half = ts.div_euclid(half_us);
        if half != self.burst_half {
            self.burst = if half == self.burst_half.saturating_add(1) { [0, self.burst[0]] } else { [0; 2] };
            self.burst_half = half;
        }
        self.burst[0] += u32::from(counted);
        self.burst[0] + self.burst[1]
    }

    /// Unique names in the burst window ending now.
    pub(super) fn burst_now(&self) -> u32 {
        self.burst[0] + self.burst[1]
    }
}

/// Writes the lower-cased presentation form of the query name; returns its length.
pub(super) fn lower_name(q: &Query<'_>, buf: &mut [u8; MAX_NAME_LEN]) -> usize {
    let mut n = 0;
    for (i, label) in q.qname.labels().enumerate() {
        let Some(dot) = buf.get_mut(n..n + usize::from(i > 0) + label.len()) else {
            break;
        };
        let (sep, rest) = dot.split_at_mut(usize::from(i > 0));
        sep.fill(b'.');
        rest.copy_from_slice(label);
        rest.make_ascii_lowercase();
        n += usize::from(i > 0) + label.len();
    }
    n
}

/// Types ordinary programs do not ask for, but tunnels do: they carry more data in answers.
pub(super) fn odd_type(qtype: u16) -> bool {
    matches!(qtype, 0 | 10 | 13 | 25 | 99 | 65280..=65534)
}

impl DnsDetector {
    pub(super) fn query(
        &mut self,
        p: &Packet<'_>,
        who: Principal,
        q: &Query<'_>,
        c: &mut DnsCounters,
        alerts: &mut Vec<Alert>,
    ) {
        if q.flags.contains(Flags::RESPONSE) {
            c.responses += 1;
            return;
        }
        c.queries += 1;
        let ts = p.ts_us;

        // Lower-cased presentation form: for the suffix list, the allow-list and uniqueness.
        let mut buf = [0u8; MAX_NAME_LEN];
        let n = lower_name(q, &mut buf);
        let name = &buf[..n];
        // A local resolver asking upstream for a name a user just asked it for: the user.
        let who = self.credit(name, who, ts, c);
        // An appended search suffix is removed; the labels left of the registered domain
        // inside are judged.
        let split = domain::split(name);
        let registered = split.registered;
        let allowed = split.reverse || self.is_allowed(split.judged);
        let labels = |b: &[u8]| if b.is_empty() { 0 } else { b.iter().filter(|&&b| b == b'.').count() + 1 };
        let sub_labels =
            q.qname.label_count().saturating_sub(labels(registered)).saturating_sub(labels(split.appended));
        let shape = Shape::of(q.qname.labels().take(sub_labels));
        let sub_bytes = split.judged.len().saturating_sub(registered.len() + 1) as u32;

        let wire_odd = Flags::POINTER_LOOP
            | Flags::TOO_MANY_LABELS
            | Flags::NAME_TOO_LONG
            | Flags::OVERSIZED_NAME
            | Flags::DOT_IN_LABEL
            | Flags::MULTI_QUESTION;
        let malformed = q.flags.0 & wire_odd.0 != 0;
        let odd = odd_type(q.qtype) && shape.chars > 0;
        let suspicious =
            !allowed && (shape.looks_encoded(self.cfg.min_encoded_chars) || n > self.cfg.long_name || odd || malformed);
        let unique = self.remember(self.hasher.hash_one((who, name)), ts, c);
        if allowed {
            c.allowed += 1;
        }

        let key = (who, self.hasher.hash_one(registered));
        if !self.pairs.contains_key(&key) && !self.make_room(ts, c) {
            c.pairs_full += 1;
            return;
        }
        let minute_us = ts.div_euclid(MINUTE_US) * MINUTE_US;
        let pair = self.pairs.entry(key).or_insert_with(|| Pair::new(display(registered), who, p.gid, minute_us, ts));
        pair.last_us = pair.last_us.max(ts);
        pair.gid = p.gid.or(pair.gid);

        if pair.row.minute_us != minute_us && pair.row.queries > 0 {
            self.rows.push(pair.take_row(minute_us));
        }
        pair.row.minute_us = minute_us;
        let counted = unique && !allowed;
        let burst = pair.burst_add(ts, self.burst_half_us, counted);
        let row = &mut pair.row;
        row.queries += 1;
        row.unique += u32::from(unique);
        row.name_bytes += if unique { u64::from(sub_bytes) } else { 0 };
        row.suspicious += u32::from(unique && suspicious);
        row.flags |= if allowed { row_flags::ALLOWED } else { 0 }
            | if suspicious { row_flags::SUSPICIOUS } else { 0 }
            | if odd { row_flags::ODD_TYPE } else { 0 }
            | if malformed { row_flags::MALFORMED } else { 0 }
            | if shape.alphabet == Alphabet::Binary { row_flags::BINARY } else { 0 };
        if allowed {
            pair.tally.add(ts, self.bucket_us, [1, 0, 0, 0, 0]);
            return;
        }

        let slot = MIX.iter().position(|&t| t == q.qtype).unwrap_or(MIX.len());
        pair.types[slot] = pair.types[slot].saturating_add(1);
        pair.longest_name = pair.longest_name.max(n);
        if pair.appended.is_none() && !split.appended.is_empty() {
            pair.appended = Some(display(split.appended));
        }
        pair.alphabets |= 1 << shape.alphabet as u32;
        if counted {
            pair.carried += shape.carried_bytes();
        }
        // Names of a burst are samples too: they may look ordinary one by one.
        if unique && (suspicious || counted && burst >= self.cfg.burst_names.div_ceil(2)) {
            let want_alert = pair.samples.len() < ALERT_SAMPLES;
            let want_row = row.samples.len() < ROW_SAMPLES && pair.stored_samples < STORED_SAMPLES_PER_PAIR;
            if want_alert || want_row {
                let shown = display_name(q);
                if want_row {
                    pair.stored_samples += 1;
                    row.samples.push(shown.clone());
                }
                if want_alert {
                    pair.samples.push(shown);
                }
            }
        }
        let sums = pair.tally.add(
            ts,
            self.bucket_us,
            [
                1,
                u32::from(counted),
                if counted { sub_bytes } else { 0 },
                u32::from(counted && suspicious),
                u32::from(odd),
            ],
        );
        let cfg = &self.cfg;
        let bytes = u64::from(sums[BYTES]);
        let over = sums[ENCODED] >= cfg.encoded_names
            || sums[UNIQUE] >= cfg.unique_names
            || bytes >= cfg.unique_bytes
            || burst >= cfg.burst_names;
        let quiet = sums[ENCODED] < cfg.encoded_names.div_ceil(2)
            && sums[UNIQUE] < cfg.unique_names.div_ceil(2)
            && bytes < cfg.unique_bytes.div_ceil(2)
            && burst < cfg.burst_names.div_ceil(2);
        let was_open = pair.episode.is_open();
        let step = pair.episode.update(over, quiet, pair.carried, cfg.escalate_bytes);
        if was_open && !pair.episode.is_open() {
            // The episode ended: the next one starts its evidence afresh.
            pair.carried = 0;
            pair.samples.clear();
        }
        if pair.episode.is_open() {
            pair.row.flags |= row_flags::ALERTED;
        }
        if let Some(step) = step {
            alerts.push(pair_alert(cfg, self.window_us, step, who, pair, sums, p, ts));
        }
    }
}
