//! Retention: `exfilmon prune`, and the live monitor once a day (issue 13).
//!
//! Each table keeps what is younger than its `[retention]` age, by the time of the data:
//! packet time for egress, dns and alerts, the audit record's time for file reads, the wall
//! clock for events and runs. Deleting goes in chunks of [`CHUNK_MINUTES`] minutes, each its
//! own transaction, so a writer (the daemon's) waits one chunk at most.
//!
//! The trail can only lose a prefix: rows 1 to N, where every row up to N (alert, event or
//! egress digest) is past its retention; a row that must stay keeps every row after it. The
//! prefix is verified first (pruning a broken one would hide the break), then cut in one
//! transaction that records an anchor: N and the hash of row N (and the egress horizon),
//! signed when a key is set. `verify` starts from the newest anchor, so the rest still proves
//! itself. Checkpoints of fewer than N rows go with the prefix. The prune itself is a trail
//! event (`pruned`) with what it deleted.
//!
//! Space comes back: new databases use `auto_vacuum = INCREMENTAL`, and the pages freed are
//! returned in chunks (`PRAGMA incremental_vacuum`). An older database reuses freed pages but
//! keeps its size until `exfilmon prune --vacuum` rewrites it once (VACUUM: it needs free disk
//! as large as the database and holds the write lock throughout).

use std::time::Duration;

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::Deserialize;
use serde_json::json;

use super::{sql_err, trail, Store, StoreError};
use crate::alert::Severity;
use crate::rows::MINUTE_US;
use crate::trail::sign::Signer;
use crate::trail::{Anchor, Event, EventKind};

/// Minutes of egress or dns deleted per transaction.
pub const CHUNK_MINUTES: i64 = 10;
/// Pages returned to the file system per transaction.
const VACUUM_PAGES: i64 = 4096;
/// The shortest retention accepted: shorter would prune the minutes the monitor is writing.
const MIN_RETENTION: Duration = Duration::from_secs(86_400);

/// `[retention]`: how long each kind of data is kept. The defaults suit the busy-server mix
/// of BENCHMARKS.md, which grows by about 0.85 GB a day, nearly all egress and dns rows: 60
/// days of those is about 51 GB; alerts, events, file reads and runs are small and kept for
/// 400 days (a year and a review).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    #[serde(deserialize_with = "retention")]
    pub egress: Duration,
    #[serde(deserialize_with = "retention")]
    pub dns: Duration,
    #[serde(deserialize_with = "retention")]
    pub file_reads: Duration,
    #[serde(deserialize_with = "retention")]
    pub alerts: Duration,
    #[serde(deserialize_with = "retention")]
    pub events: Duration,
    #[serde(deserialize_with = "retention")]
    pub runs: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        let days = |n: u64| Duration::from_secs(n * 86_400);
        RetentionConfig {
            egress: days(60),
            dns: days(60),
            file_reads: days(400),
            alerts: days(400),
            events: days(400),
            runs: days(400),
        }
    }
}

fn retention<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let age = crate::units::de::duration(d)?;
    if age < MIN_RETENTION {
        return Err(serde::de::Error::custom("a retention must be at least 1d"));
    }
    Ok(age)
}

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    pub egress: usize,
    pub dns: usize,
    pub dns_samples: usize,
    pub file_reads: usize,
    pub alerts: usize,
    pub events: usize,
    pub digests: usize,
    pub checkpoints: usize,
    pub runs: usize,
    /// Where the trail now starts (the anchor's row count), when its prefix was cut.
    pub trail_start: Option<i64>,
    /// Bytes the database file gave back (incremental vacuum).
    pub freed_bytes: u64,
    /// The database cannot give space back until `prune --vacuum` (auto_vacuum is off).
    pub needs_vacuum: bool,
}

impl Pruned {
    pub fn summary(&self) -> String {
        format!(
            "pruned {} egress, {} dns, {} dns sample, {} file read rows; {} alerts, {} events, {} egress digests \
             off the trail's start{}; {} runs; {} given back",
            self.egress,
            self.dns,
            self.dns_samples,
            self.file_reads,
            self.alerts,
            self.events,
            self.digests,
            self.trail_start.map_or_else(String::new, |n| format!(" (it starts after row {n} now)")),
            self.runs,
            crate::units::human_bytes(self.freed_bytes)
        )
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the trail is broken at row {seq} ({what}), within the part prune would delete: pruning would hide it; run `exfilmon verify` and keep this database as evidence")]
pub struct BrokenPrefix {
    pub seq: i64,
    pub what: String,
}

impl Store {
    /// Deletes what is older than `r` says, as of `now_us` (wall clock), then gives the space
    /// back. The trail's prefix is cut only when it verifies; its anchor is signed by `signer`.
    pub fn prune(&mut self, r: &RetentionConfig, now_us: i64, signer: Option<&Signer>) -> Result<Pruned, StoreError> {
        let cutoff = |age: Duration| now_us.saturating_sub(i64::try_from(age.as_micros()).unwrap_or(i64::MAX));
        let minute = |us: i64| us.div_euclid(MINUTE_US) * MINUTE_US;
        let mut out = Pruned {
            egress: self.delete_minutes("egress", minute(cutoff(r.egress)))?,
            dns: self.delete_minutes("dns", minute(cutoff(r.dns)))?,
            ..Pruned::default()
        };
        // The split by program goes with the rows it splits; the ICMP window with egress.
        self.delete_minutes("egress_programs", minute(cutoff(r.egress)))?;
        self.delete_minutes("icmp", minute(cutoff(r.egress)))?;
        let path = self.path.clone();
        let err = |e| sql_err(&path, e);
        {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
            out.dns_samples =
                tx.execute("DELETE FROM dns_samples WHERE minute < ?1", [minute(cutoff(r.dns))]).map_err(err)?;
            out.file_reads = tx.execute("DELETE FROM file_reads WHERE ts < ?1", [cutoff(r.file_reads)]).map_err(err)?;
            tx.commit().map_err(err)?;
        }
        self.cut_trail(r, now_us, minute(cutoff(r.egress)), signer, &mut out)?;
        self.give_back(&mut out)?;
        Ok(out)
    }

    /// Deletes rows of `table` (egress or dns: the minute leads their key) before `before`,
    /// [`CHUNK_MINUTES`] of them per transaction.
    fn delete_minutes(&mut self, table: &str, before: i64) -> Result<usize, StoreError> {
        let path = self.path.clone();
        let err = |e| sql_err(&path, e);
        let first = format!("SELECT minute FROM {table} WHERE minute >= ?1 AND minute < ?2 ORDER BY minute LIMIT 1");
        let delete = format!("DELETE FROM {table} WHERE minute >= ?1 AND minute < ?2");
        let mut from = i64::MIN;
        let mut n = 0;
        loop {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
            let Some(start) =
                tx.query_row(&first, params![from, before], |r| r.get::<_, i64>(0)).optional().map_err(err)?
            else {
                break;
            };
            let end = start.saturating_add(CHUNK_MINUTES * MINUTE_US).min(before);
            n += tx.execute(&delete, params![start, end]).map_err(err)?;
            tx.commit().map_err(err)?;
            from = end;
        }
        Ok(n)
    }

    /// Cuts the trail's expired prefix (see the module doc), with old runs, in one transaction.
    fn cut_trail(
        &mut self,
        r: &RetentionConfig,
        now_us: i64,
        egress_before: i64,
        signer: Option<&Signer>,
        out: &mut Pruned,
    ) -> Result<(), StoreError> {
        let cutoff = |age: Duration| now_us.saturating_sub(i64::try_from(age.as_micros()).unwrap_or(i64::MAX));
        // The rows to cut must verify: walked outside the write lock, up to the head it saw.
        let walked = crate::trail::verify::verify(&self.conn, None, &[]).map_err(|e| self.err(e))?;
        let walked_to = walked.first_break.as_ref().map_or(i64::MAX, |b| b.seq - 1);
        let path = self.path.clone();
        let err = |e| sql_err(&path, e);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        let head = trail::head(&tx).map_err(err)?;
        let start: i64 = tx
            .query_row("SELECT ifnull((SELECT rows FROM trail_anchors ORDER BY id DESC LIMIT 1), 0)", [], |r| r.get(0))
            .map_err(err)?;
        let first_kept =
            |sql: &str, at: i64| -> rusqlite::Result<Option<i64>> { tx.query_row(sql, [at], |r| r.get(0)) };
        let kept = [
            first_kept("SELECT min(seq) FROM alerts WHERE ts >= ?1", cutoff(r.alerts)),
            first_kept("SELECT min(seq) FROM events WHERE ts >= ?1", cutoff(r.events)),
            first_kept("SELECT min(seq) FROM digests WHERE minute >= ?1", egress_before),
        ];
        let mut first_kept_seq = head.seq + 1;
        for k in kept {
            if let Some(seq) = k.map_err(err)? {
                first_kept_seq = first_kept_seq.min(seq);
            }
        }
        let cut = (first_kept_seq - 1).min(head.seq);
        let previous = crate::trail::verify::anchor(&tx).map_err(err)?;
        let mut anchor = previous.clone().unwrap_or(Anchor {
            ts_us: now_us,
            rows: 0,
            head: hex::encode(crate::trail::GENESIS),
            egress_before: i64::MIN,
            key_id: None,
            signature: None,
        });
        if cut > start {
            if walked_to < cut {
                let b = walked.first_break.unwrap_or(crate::trail::verify::Break { seq: cut, what: String::new() });
                return Err(StoreError::Prune {
                    path: path.clone(),
                    source: BrokenPrefix { seq: b.seq, what: b.what },
                });
            }
            anchor.head = tx
                .query_row(
                    "SELECT hash FROM alerts WHERE seq = ?1 UNION ALL SELECT hash FROM events WHERE seq = ?1
                     UNION ALL SELECT hash FROM digests WHERE seq = ?1",
                    [cut],
                    |r| r.get(0),
                )
                .map_err(err)?;
            anchor.rows = cut;
            out.alerts = tx.execute("DELETE FROM alerts WHERE seq <= ?1", [cut]).map_err(err)?;
            out.events = tx.execute("DELETE FROM events WHERE seq <= ?1", [cut]).map_err(err)?;
            out.digests = tx.execute("DELETE FROM digests WHERE seq <= ?1", [cut]).map_err(err)?;
            out.checkpoints = tx.execute("DELETE FROM checkpoints WHERE rows < ?1", [cut]).map_err(err)?;
            out.trail_start = Some(cut);
        }
        // Minutes once pruned stay pruned, whatever the retention says later.
        anchor.egress_before = anchor.egress_before.max(egress_before);
        if previous.as_ref().is_none_or(|p| p.rows != anchor.rows || p.egress_before != anchor.egress_before) {
            anchor.ts_us = now_us;
            anchor.key_id = None;
            anchor.signature = None;
            if let Some(s) = signer {
                s.sign_anchor(&mut anchor);
            }
            tx.execute(
                "INSERT INTO trail_anchors (ts, rows, head, egress_before, alerts, events, digests, key_id, signature)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    anchor.ts_us,
                    anchor.rows,
                    anchor.head,
                    anchor.egress_before,
                    out.alerts as i64,
                    out.events as i64,
                    out.digests as i64,
                    anchor.key_id,
                    anchor.signature
                ],
            )
            .map_err(err)?;
        }
        out.runs = prune_runs(&tx, cutoff(r.runs)).map_err(err)?;
        let event = Event::now(
            EventKind::Pruned,
            Severity::Low,
            out.summary(),
            json!({
                "egress": out.egress, "dns": out.dns, "dns_samples": out.dns_samples, "file_reads": out.file_reads,
                "alerts": out.alerts, "events": out.events, "digests": out.digests,
                "checkpoints": out.checkpoints, "runs": out.runs, "trail_start": out.trail_start,
                "egress_before": crate::units::rfc3339(egress_before),
            }),
        );
        let mut at = trail::head(&tx).map_err(err)?;
        trail::insert_event(&tx, &mut at, &event, None).map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Returns the pages pruning freed to the file system, a chunk per transaction.
    fn give_back(&mut self, out: &mut Pruned) -> Result<(), StoreError> {
        let err = |e| sql_err(&self.path, e);
        let pragma = |name: &str| -> Result<i64, StoreError> {
            self.conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0)).map_err(err)
        };
        if pragma("auto_vacuum")? != 2 {
            out.needs_vacuum = pragma("freelist_count")? > 0;
            return Ok(());
        }
        let (pages, page_size) = (pragma("page_count")?, pragma("page_size")?);
        while pragma("freelist_count")? > 0 {
            self.conn
                .execute_batch(&format!("PRAGMA incremental_vacuum({VACUUM_PAGES})"))
                .map_err(|e| sql_err(&self.path, e))?;
        }
        // The file shrinks when the write-ahead log is checkpointed into it.
        self.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())).map_err(|e| sql_err(&self.path, e))?;
        out.freed_bytes = ((pages - pragma("page_count")?).max(0) * page_size) as u64;
        Ok(())
    }

    /// Rewrites the database with `auto_vacuum = INCREMENTAL` (databases made before it), so
    /// pruned space can be given back from now on. Returns the bytes it saved.
    pub fn vacuum(&mut self) -> Result<u64, StoreError> {
        let err = |e| sql_err(&self.path, e);
        let size = |s: &Store| -> Result<i64, StoreError> {
            s.conn
                .query_row("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()", [], |r| {
                    r.get(0)
                })
                .map_err(|e| sql_err(&s.path, e))
        };
        let before = size(self)?;
        self.conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;").map_err(err)?;
        self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(|e| sql_err(&self.path, e))?;
        Ok((before - size(self)?).max(0) as u64)
    }
}

/// Deletes runs that ended before `before` and that nothing refers to any more (no alert,
/// event, digest or row), with their heartbeats and capture records. Returns how many.
fn prune_runs(tx: &rusqlite::Transaction<'_>, before: i64) -> rusqlite::Result<usize> {
    let candidates: Vec<(i64, Option<i64>, Option<i64>)> = {
        let mut s = tx.prepare(
            "SELECT id, first_minute, last_minute FROM runs
             WHERE state <> 'running' AND ifnull(finished_at, started_at) < ?1
               AND id NOT IN (SELECT run_id FROM alerts WHERE run_id IS NOT NULL
                              UNION SELECT run_id FROM events WHERE run_id IS NOT NULL
                              UNION SELECT run_id FROM digests
                              UNION SELECT run_id FROM file_reads UNION SELECT run_id FROM dns_samples
                              UNION SELECT run_id FROM alerts_pending)",
        )?;
        let rows = s.query_map([before], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut n = 0;
    for (id, first, last) in candidates {
        if let (Some(first), Some(last)) = (first, last) {
            let has = |table: &str| -> rusqlite::Result<bool> {
                tx.query_row(
                    &format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE minute BETWEEN ?1 AND ?2 AND run_id = ?3)"),
                    params![first, last, id],
                    |r| r.get(0),
                )
            };
            if has("egress")? || has("dns")? {
                continue;
            }
        }
        tx.execute("DELETE FROM health WHERE run_id = ?1", [id])?;
        tx.execute("DELETE FROM captures WHERE run_id = ?1", [id])?;
        n += tx.execute("DELETE FROM runs WHERE id = ?1", [id])?;
    }
    Ok(n)
}
