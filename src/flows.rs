//! Egress aggregates: per (principal, destination, minute) packet and byte counters.
//!
//! The database grows with flows and minutes, not packets: each flow keeps one open row for
//! its current minute and hands it to the store when the minute changes, when the pipeline
//! sweeps closed minutes, or at the end. Memory is capped: at `MAX_FLOWS` open rows the table
//! is flushed early (rows for the same minute merge in the store, so nothing is lost).

mod slots;

use slots::Slots;

use crate::decode::Direction;
use crate::principal::{Dst, Principal};
use crate::rows::{EgressRow, Sent, MINUTE_US};

/// Open rows at most: 3/4 of 2^18, the most a table of 2^18 slots holds before it doubles, so
/// the cap bounds the table at about 25 MB.
const MAX_FLOWS: usize = 196_608;
/// An open row without its key, which the table already holds.
#[derive(Debug, Clone, Copy)]
struct Open {
    gid: Option<u32>,
    minute_us: i64,
    packets: u64,
    bytes: u64,
    first_us: i64,
    last_us: i64,
    direction: Direction,
}

impl Open {
    fn row(&self, (principal, dst): (Principal, Dst)) -> EgressRow {
        EgressRow {
            principal,
            gid: self.gid,
            dst,
            minute_us: self.minute_us,
            packets: self.packets,
            bytes: self.bytes,
            first_us: self.first_us,
            last_us: self.last_us,
            direction: self.direction,
            dst_name: None,
        }
    }
}

#[derive(Default)]
pub struct FlowTable {
    open: Slots<Open>,
    /// Times the cap forced an early flush.
    pub early_flushes: u64,
}

impl FlowTable {
    /// Counts one packet; rows that close are pushed to `out`.
    pub fn add(&mut self, s: &Sent, out: &mut Vec<EgressRow>) {
        let Sent { principal, gid, direction, dst, ts_us, bytes } = *s;
        let minute_us = ts_us.div_euclid(MINUTE_US) * MINUTE_US;
        if self.open.len() >= MAX_FLOWS && !self.open.contains_key(&(principal, dst)) {
            self.early_flushes += 1;
            self.drain(out);
        }
        let fresh = Open { gid, minute_us, packets: 1, bytes, first_us: ts_us, last_us: ts_us, direction };
        let (row, new) = self.open.get_or_insert_with((principal, dst), || fresh);
        if new {
            return;
        }
        if row.minute_us == minute_us {
            row.packets += 1;
            row.bytes += bytes;
            row.first_us = row.first_us.min(ts_us);
            row.last_us = row.last_us.max(ts_us);
            row.gid = gid.or(row.gid);
            // Known beats unknown; a destination both opened and served counts as served.
            row.direction = row.direction.max(direction);
        } else {
            out.push(std::mem::replace(row, fresh).row((principal, dst)));
        }
    }

    /// Starts fetching the open row a packet of `principal` to `dst` will touch.
    pub fn prefetch(&self, principal: Principal, dst: Dst) {
        self.open.prefetch(&(principal, dst));
    }

    /// Closes every row of a minute before `minute_us`.
    pub fn sweep(&mut self, minute_us: i64, out: &mut Vec<EgressRow>) {
        let from = out.len();
        self.open.retain(|key, row| {
            if row.minute_us < minute_us {
                out.push(row.row(*key));
                false
            } else {
                true
            }
        });
        in_key_order(&mut out[from..]);
    }

    /// Closes the open row of `(principal, dst)`, if any.
    pub fn close(&mut self, principal: Principal, dst: Dst, out: &mut Vec<EgressRow>) {
        if let Some(row) = self.open.remove(&(principal, dst)) {
            out.push(row.row((principal, dst)));
        }
    }

    /// Closes every open row.
    pub fn drain(&mut self, out: &mut Vec<EgressRow>) {
        let from = out.len();
        self.open.drain(|key, row| out.push(row.row(key)));
        in_key_order(&mut out[from..]);
    }

    /// The destination with the most bytes in `principal`'s open rows. A linear scan: it runs
    /// only when an alert is raised.
    pub fn top_dst(&self, principal: Principal) -> Option<Dst> {
        self.open
            .iter()
            .filter(|((p, _), _)| *p == principal)
            .max_by_key(|((_, dst), row)| (row.bytes, *dst))
            .map(|((_, dst), _)| *dst)
    }
}

/// Rows taken out of the table, in an order that does not depend on its per-process hash key:
/// the store numbers principals as it first sees them, and a replay is deterministic.
fn in_key_order(rows: &mut [EgressRow]) {
    rows.sort_unstable_by_key(|r| (r.principal, r.dst));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(principal: Principal, dst: Dst, ts_us: i64, bytes: u64) -> Sent {
        Sent { principal, gid: None, direction: Direction::Unknown, dst, ts_us, bytes }
    }
    use std::net::{IpAddr, Ipv4Addr};

    fn dst(port: u16) -> Dst {
        Dst { addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), port, proto: 6 }
    }

    #[test]
    fn one_row_per_minute() {
        let mut t = FlowTable::default();
        let mut out = Vec::new();
        let who = Principal::Uid(1);
        t.add(&sent(who, dst(22), 1_000, 100), &mut out);
        t.add(&sent(who, dst(22), 2_000, 50), &mut out);
        assert!(out.is_empty());
        t.add(&sent(who, dst(22), MINUTE_US + 5, 7), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].packets, out[0].bytes, out[0].first_us, out[0].last_us), (2, 150, 1_000, 2_000));
        t.sweep(2 * MINUTE_US, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].minute_us, MINUTE_US);
    }

    #[test]
    fn cap_flushes_early_and_loses_nothing() {
        let mut t = FlowTable::default();
        let mut out = Vec::new();
        let n = MAX_FLOWS as u32 + 10;
        for i in 0..n {
            let dst = Dst { addr: IpAddr::V4(Ipv4Addr::from(i)), port: 443, proto: 6 };
            t.add(&sent(Principal::Uid(1), dst, 0, 1), &mut out);
        }
        assert_eq!(t.early_flushes, 1);
        assert_eq!(out.len(), MAX_FLOWS);
        assert!(t.open.capacity() < 2 * MAX_FLOWS, "the table grew past its cap");
        t.drain(&mut out);
        assert_eq!(out.iter().map(|r| r.packets).sum::<u64>(), u64::from(n));
    }

    #[test]
    fn top_destination_by_bytes() {
        let mut t = FlowTable::default();
        let mut out = Vec::new();
        let who = Principal::Uid(1);
        t.add(&sent(who, dst(22), 0, 10), &mut out);
        t.add(&sent(who, dst(443), 0, 900), &mut out);
        t.add(&sent(Principal::Uid(2), dst(80), 0, 5000), &mut out);
        assert_eq!(t.top_dst(who), Some(dst(443)));
    }
}
