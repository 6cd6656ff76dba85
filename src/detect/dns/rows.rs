//! What the detector stores: a row per (principal, registered domain, minute) with flags and
//! a few sample names.

use super::pair::Pair;

use crate::rows::DnsRow;

/// Bits of [`DnsRow::flags`].
pub mod row_flags {
    /// Some names looked encoded, over-long, or were of an unusual type.
    pub const SUSPICIOUS: u32 = 1;
    /// Some names were under an allow-listed domain.
    pub const ALLOWED: u32 = 2;
    /// A dns_tunnel episode was open for this pair.
    pub const ALERTED: u32 = 4;
    /// Some queries had an unusual type (NULL, KEY, private ...).
    pub const ODD_TYPE: u32 = 8;
    /// Some queries had wire oddities (pointer loops, over-long names, several questions).
    pub const MALFORMED: u32 = 16;
    /// Some names held bytes outside printable ASCII.
    pub const BINARY: u32 = 32;
}

/// Samples of suspicious names per stored row, and per pair state in all.
pub(super) const ROW_SAMPLES: usize = 3;
pub(super) const STORED_SAMPLES_PER_PAIR: u32 = 30;
/// Sample names carried in an alert.
pub(super) const ALERT_SAMPLES: usize = 5;

impl Pair {
    /// The finished row, leaving an empty one for `next_minute`.
    pub(super) fn take_row(&mut self, next_minute: i64) -> DnsRow {
        let empty = DnsRow {
            principal: self.row.principal,
            gid: self.gid,
            domain: String::new(),
            minute_us: next_minute,
            queries: 0,
            unique: 0,
            name_bytes: 0,
            suspicious: 0,
            flags: if self.episode.is_open() { row_flags::ALERTED } else { 0 },
            samples: Vec::new(),
        };
        let mut row = std::mem::replace(&mut self.row, empty);
        row.domain = self.domain.clone();
        row.gid = self.gid;
        row
    }
}
