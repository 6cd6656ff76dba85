//! Digests of what was seen (issue 13): each run's egress rows of each minute, hashed in key
//! order ([`crate::trail::EgressDigest`]) and chained into the trail, so `exfilmon verify`
//! notices egress rows deleted, edited or inserted.
//!
//! A replay digests all its minutes in the transaction that commits it: its rows are final
//! then. The live monitor cannot wait for an end: the writer digests each minute of its run
//! once the heartbeat's clock is [`SETTLE_MINUTES`] past it ([`Store::digest_settled`]); a
//! row that still lands in a digested minute (a writer that fell far behind) has the minute
//! digested again in the same transaction, and the newest digest of a minute and run is the
//! one that holds. The minutes not yet digested when the monitor stops are digested when its
//! run ends, or, if it died, by whoever finds it dead (`Store::recover`).
//!
//! A replay's rows come to the writer a minute at a time, in key order, each written once: the
//! writer digests them as it writes them ([`Written`]) and committing only chains the digests
//! in. A minute whose rows came in more than one batch, or merged with one another (their
//! stored values are sums then), is read back instead.
//!
//! Cost: reading the run's rows back once, through the primary key, where the writer could
//! not digest them (see BENCHMARKS.md).

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use rusqlite::types::ValueRef;
use rusqlite::{params, Transaction};

use super::trail::{self, DigestRow};
use super::{sql_err, Run, RunMode, Store, StoreError};
use crate::rows::MINUTE_US;
use crate::trail::{EgressDigest, Link};

/// Minutes the live monitor waits after a minute ends before digesting it: flows are handed
/// over every second, so later rows only come from a writer far behind.
pub const SETTLE_MINUTES: i64 = 2;

/// The live run's digests so far: minutes before `done_before` are digested.
#[derive(Debug, Default)]
pub(super) struct LiveDigests {
    pub done_before: Option<i64>,
}

/// A replay's digests made as its rows were written: `None` for a minute to read back.
#[derive(Default)]
pub(super) struct Written {
    minutes: BTreeMap<i64, Option<EgressDigest>>,
    /// The minute of the batch's rows so far.
    current: Option<i64>,
}

impl Written {
    /// A batch begins; its rows follow in key order.
    pub fn begin(&mut self) {
        self.current = None;
    }

    /// One row of the batch, as the table holds it (uid, host, proto, dst, dport, packets,
    /// bytes, first_seen, last_seen); `merged`: it has the key of the row before it, so the
    /// table holds their sum.
    pub fn row(&mut self, minute: i64, merged: bool, values: &[ValueRef<'_>; 9]) {
        let new_here = self.current != Some(minute);
        self.current = Some(minute);
        let slot = match self.minutes.entry(minute) {
            Entry::Vacant(v) => v.insert(Some(EgressDigest::default())),
            Entry::Occupied(o) => {
                let slot = o.into_mut();
                // A minute an earlier batch wrote too: its rows may have merged with these.
                if new_here {
                    *slot = None;
                }
                slot
            }
        };
        if merged {
            *slot = None;
        }
        if let Some(d) = slot {
            d.add(values);
        }
    }

    /// Chains run `run_id`'s digests into the trail, oldest minute first; returns how many.
    pub fn commit(self, tx: &Transaction<'_>, run_id: i64) -> rusqlite::Result<usize> {
        let n = self.minutes.len();
        let mut at = trail::head(tx)?;
        for (minute, made) in self.minutes {
            match made {
                Some(d) => chain(tx, &mut at, run_id, minute, d)?,
                None => {
                    digest_minutes(tx, run_id, minute, minute)?;
                    at = trail::head(tx)?;
                }
            }
        }
        Ok(n)
    }
}

/// Digests run `run_id`'s rows of the minutes `first..=last` into the trail, one link per
/// minute that has rows; returns how many.
pub(super) fn digest_minutes(tx: &Transaction<'_>, run_id: i64, first: i64, last: i64) -> rusqlite::Result<usize> {
    let mut stmt = tx.prepare_cached(
        "SELECT e.minute, p.uid, p.host, e.proto, e.dst, e.dport, e.packets, e.bytes, e.first_seen, e.last_seen
         FROM egress e LEFT JOIN principals p ON p.id = e.principal_id
         WHERE e.minute BETWEEN ?1 AND ?2 AND e.run_id = ?3
         ORDER BY e.minute, e.principal_id, e.proto, e.dst, e.dport",
    )?;
    let mut rows = stmt.query(params![first, last, run_id])?;
    let mut done = Vec::new();
    let mut open: Option<(i64, EgressDigest)> = None;
    while let Some(r) = rows.next()? {
        let minute: i64 = r.get(0)?;
        if open.as_ref().is_some_and(|(m, _)| *m != minute) {
            done.extend(open.take());
        }
        let (_, digest) = open.get_or_insert_with(|| (minute, EgressDigest::default()));
        let v = |i: usize| r.get_ref(i);
        digest.add(&[v(1)?, v(2)?, v(3)?, v(4)?, v(5)?, v(6)?, v(7)?, v(8)?, v(9)?]);
    }
    done.extend(open);
    drop(rows);
    let mut at = trail::head(tx)?;
    let n = done.len();
    for (minute, d) in done {
        chain(tx, &mut at, run_id, minute, d)?;
    }
    Ok(n)
}

/// Chains one minute's digest into the trail after `at`.
fn chain(tx: &Transaction<'_>, at: &mut Link, run_id: i64, minute: i64, d: EgressDigest) -> rusqlite::Result<()> {
    let (rows, packets, bytes) = (d.rows, d.packets, d.bytes);
    trail::insert_digest(tx, at, &DigestRow { run_id, minute, rows, packets, bytes, digest: d.finish() })
}

/// The minutes `run_id` has rows in, from its row (`None` before its first row).
pub(super) fn run_minutes(tx: &Transaction<'_>, run_id: i64) -> rusqlite::Result<Option<(i64, i64)>> {
    let (first, last): (Option<i64>, Option<i64>) =
        tx.query_row("SELECT first_minute, last_minute FROM runs WHERE id = ?1", [run_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    Ok(first.zip(last))
}

/// The first minute after run `run_id`'s newest digest (`None`: it has none).
pub(super) fn digested_before(tx: &Transaction<'_>, run_id: i64) -> rusqlite::Result<Option<i64>> {
    let last: Option<i64> =
        tx.query_row("SELECT max(minute) FROM digests WHERE run_id = ?1", [run_id], |r| r.get(0))?;
    Ok(last.map(|m| m + MINUTE_US))
}

/// The rest of a live run's minutes, from `from` (`None`: all of them) on: when it ends, or
/// when it is found dead.
pub(super) fn digest_rest(tx: &Transaction<'_>, run_id: i64, from: Option<i64>) -> rusqlite::Result<usize> {
    match run_minutes(tx, run_id)? {
        Some((first, last)) => digest_minutes(tx, run_id, from.unwrap_or(first).max(first), last),
        None => Ok(0),
    }
}

/// In a live run's write transaction: minutes among `minutes` digested already (those before
/// `done_before`) have their digest made again, since the rows just written changed them.
pub(super) fn redigest_late(
    tx: &Transaction<'_>,
    run_id: i64,
    done_before: Option<i64>,
    minutes: impl Iterator<Item = i64>,
) -> rusqlite::Result<()> {
    let Some(done_before) = done_before else { return Ok(()) };
    let mut late: Vec<i64> = minutes.filter(|&m| m < done_before).collect();
    late.sort_unstable();
    late.dedup();
    for m in late {
        digest_minutes(tx, run_id, m, m)?;
    }
    Ok(())
}

impl Store {
    /// Digests the live run's minutes that ended [`SETTLE_MINUTES`] or more before `now_us`
    /// (the heartbeat's clock) and are not digested yet. At most once a minute does work.
    pub fn digest_settled(&mut self, run: Run, now_us: i64) -> Result<(), StoreError> {
        if run.mode != RunMode::Live {
            return Ok(());
        }
        let before = now_us.div_euclid(MINUTE_US) * MINUTE_US - SETTLE_MINUTES * MINUTE_US;
        if self.live_digests.done_before.is_some_and(|d| d >= before) {
            return Ok(());
        }
        let path = self.path.clone();
        let err = |e| sql_err(&path, e);
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(err)?;
        let from = match self.live_digests.done_before {
            Some(d) => Some(d),
            None => run_minutes(&tx, run.id).map_err(err)?.map(|(first, _)| first),
        };
        if let Some(from) = from.filter(|&f| f < before) {
            digest_minutes(&tx, run.id, from, before - 1).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        if from.is_some() {
            self.live_digests.done_before = Some(before);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::{Dst, Principal};
    use crate::rows::EgressRow;
    use crate::store::Batch;
    use crate::trail::verify::verify_egress;

    fn row(minute: i64, packets: u64) -> EgressRow {
        EgressRow {
            principal: Principal::Uid(1000),
            gid: None,
            dst: Dst { addr: [192, 0, 2, 1].into(), port: 443, proto: 6 },
            minute_us: minute * MINUTE_US,
            packets,
            bytes: packets * 100,
            first_us: minute * MINUTE_US,
            last_us: minute * MINUTE_US + 1,
            direction: Default::default(),
            dst_name: None,
        }
    }

    fn write(store: &mut Store, run: Run, rows: Vec<EgressRow>) {
        let mut b = Batch::default();
        b.add_rows(rows);
        store.write_batch(&b, Some(run)).unwrap();
    }

    fn digests(store: &Store) -> Vec<(i64, i64)> {
        let mut s = store.conn().prepare("SELECT minute / 60000000, rows FROM digests ORDER BY seq").unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    }

    /// A replay's digests, made as its rows are written, are those the rows give when read
    /// back: for a minute written once, one split across batches, one whose rows merged, and
    /// one of a host principal.
    #[test]
    fn a_replays_digests_made_while_writing_hold() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("d.db")).unwrap();
        let run = store.begin_run(RunMode::Replay).unwrap();
        let other = |minute, port| EgressRow { dst: Dst { port, ..row(minute, 1).dst }, ..row(minute, 1) };
        let host = EgressRow { principal: Principal::Host([10, 0, 0, 9].into()), ..row(10, 7) };
        // Text and numbers order these two differently: the table keeps the text's order.
        let to = |last: u8| EgressRow { dst: Dst { addr: [192, 0, 2, last].into(), ..row(10, 1).dst }, ..row(10, 1) };
        write(&mut store, run, vec![other(10, 22), to(9), row(10, 1), host, to(10), row(11, 2)]);
        write(&mut store, run, vec![row(11, 3), row(12, 1), other(12, 9), row(12, 4), row(13, 1)]);
        let totals = crate::rows::RunTotals::default();
        store.commit_run(run, &crate::store::RunEnd { totals: &totals, captures: &[], force: false }).unwrap();
        assert_eq!(digests(&store), [(10, 5), (11, 1), (12, 2), (13, 1)]);
        let out = verify_egress(store.conn(), &|_, _| None).unwrap();
        assert!(out.intact() && out.minutes == 4 && out.rows == 9, "{out:?}");
    }

    /// The live monitor digests minutes as they settle, again when a late row changes one, and
    /// a run whose process died is digested by whoever finds it dead: every row is covered and
    /// every digest holds.
    #[test]
    fn live_minutes_are_digested_as_they_settle_late_rows_and_all() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("d.db");
        let mut store = Store::open(&db).unwrap();
        let run = store.begin_run(RunMode::Live).unwrap();
        write(&mut store, run, vec![row(10, 1), row(11, 2)]);
        store.digest_settled(run, 12 * MINUTE_US + 5).unwrap();
        assert_eq!(digests(&store), [], "minute 10 ended less than two minutes ago");
        store.digest_settled(run, 13 * MINUTE_US).unwrap();
        assert_eq!(digests(&store), [(10, 1)]);
        store.digest_settled(run, 14 * MINUTE_US + 30_000_000).unwrap();
        assert_eq!(digests(&store), [(10, 1), (11, 1)]);
        store.digest_settled(run, 14 * MINUTE_US + 50_000_000).unwrap();
        assert_eq!(digests(&store).len(), 2, "nothing new to digest");
        // A late row for minute 10 (a writer far behind): digested again at once.
        write(&mut store, run, vec![row(10, 5), row(12, 1)]);
        assert_eq!(digests(&store), [(10, 1), (11, 1), (10, 1)]);
        let check = |store: &Store| verify_egress(store.conn(), &|_, _| None).unwrap();
        let out = check(&store);
        assert!(out.first_break.as_deref() == Some("egress of minute 1970-01-01T00:12:00Z, run 1: 1 rows no digest covers, though that run's rows have one: they were inserted"), "{out:?}");
        // The process dies: its lock goes with the store, the next opener digests the rest.
        drop(store);
        let store = Store::open(&db).unwrap();
        assert_eq!(digests(&store), [(10, 1), (11, 1), (10, 1), (12, 1)]);
        let state: String = store.conn().query_row("SELECT state FROM runs", [], |r| r.get(0)).unwrap();
        assert_eq!(state, "interrupted");
        let out = check(&store);
        assert!(out.intact() && out.minutes == 3 && out.rows == 3, "{out:?}");
    }
}
