//! Runs as units: a replay counts once, whole, or not at all (issue 13).
//!
//! The design, and why:
//!
//! - **Every row belongs to a run.** egress, dns, dns_samples and file_reads rows carry the id
//!   of the run that wrote them, as part of their key: two runs writing the same minute,
//!   principal and destination (a replay of a capture from a time the daemon also saw, say)
//!   keep a row each, and reports add them up. A run's rows can always be found and deleted
//!   again, which an upsert that merged them into one row could not offer. The run row keeps
//!   the range of minutes its rows lie in, so they are found through the primary key.
//! - **Batches commit as they come; a replay counts at the end.** The writer commits a replay's
//!   rows batch by batch, each a short transaction, so a replay into the daemon's database
//!   never holds the write lock for more than one batch. Until the replay commits, reports
//!   leave its rows out (the `uncounted_runs` view: replays not 'finished'), and its alerts
//!   wait in `alerts_pending`, outside the trail. One transaction for the whole replay was the
//!   other choice: it would stop every other writer, the daemon's included, for the whole
//!   replay (minutes for a big capture) and grow the WAL by the whole replay; a staging table
//!   merged at the end would write every row twice.
//! - **Ending is one transaction** ([`Store::commit_run`]): the duplicate check by content hash
//!   and the `captures` insert (so two processes replaying one file at once cannot both count
//!   it: the second finds the first's row and rolls itself back), the pending alerts into the
//!   trail, and the state 'finished' with the run's totals. The live monitor's alerts and rows
//!   count as they are committed (it must not lose a second of them to a crash, and its sinks
//!   get alerts at once); its ending only records its totals.
//! - **A dead writer is noticed by its lock.** From the transaction that creates the run row
//!   until the run ends, its process holds a shared lock on one byte of the database file
//!   ([`LOCK_BASE`] + run id, far past any page SQLite uses or locks): an open file description
//!   lock, which the kernel drops when the process dies however it dies (SIGKILL, a panic
//!   under `panic = "abort"`, the OOM killer). Reading the file is all it takes to look, so a
//!   report can tell too. Whoever opens the database to write ([`Store::recover`], in
//!   `Store::open`) looks for runs left 'running' whose lock nobody holds: a replay's is rolled
//!   back (its rows deleted, its pending alerts dropped, state 'abandoned'), a live monitor's
//!   becomes 'interrupted' (what it committed stays: it was counted and sent as it went).
//!   Either is a trail event in the same transaction, and no trail row is ever deleted, so
//!   the trail stays verifiable and says what happened. A process id is kept for people only:
//!   a pid can be reused and /proc can be hidden (`ProtectProc=`), a lock cannot lie.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde_json::json;

use super::{digest, sql_err, trail, Store, StoreError};
use crate::alert::{Alert, AlertKind, Severity};
use crate::principal::Principal;
use crate::rows::RunTotals;
use crate::trail::{Event, EventKind, Link};
use crate::units::wall_clock_us;

/// The byte locked for run N is `LOCK_BASE + N`: 2^48, beyond the largest SQLite database
/// (2^32 pages of 64 KiB) and far from SQLite's own lock bytes at 1 GiB.
pub const LOCK_BASE: i64 = 1 << 48;

/// What kind of run: it decides when its rows count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// `exfilmon run`: rows and alerts count as they are committed.
    Live,
    /// `exfilmon replay`: a unit, counted when it commits.
    Replay,
}

impl RunMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Live => "run",
            RunMode::Replay => "replay",
        }
    }
}

/// A run being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub id: i64,
    pub mode: RunMode,
}

impl Run {
    /// Whether its rows count only once it commits.
    pub fn unit(self) -> bool {
        self.mode == RunMode::Replay
    }
}

/// A capture file a replay read, recorded when the replay commits.
pub struct CaptureRecord<'a> {
    /// `blake3:<hex>`.
    pub digest: &'a str,
    /// `sha256:<hex>`, when it was taken to match captures recorded by it.
    pub sha256: Option<&'a str>,
    pub path: &'a str,
    /// Bytes read (a pipe has no size until it is read).
    pub size: u64,
    pub records: u64,
    pub damaged: u64,
}

/// How a run ends.
pub struct RunEnd<'a> {
    pub totals: &'a RunTotals,
    pub captures: &'a [CaptureRecord<'a>],
    /// Count captures again even if recorded before (`replay --force`).
    pub force: bool,
}

/// A capture whose content turned out to be counted already when its replay committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// Its position among the captures the replay committed.
    pub index: usize,
    /// This replay's file.
    pub path: String,
    /// Where and when the content was recorded before: another file of this replay when
    /// `None`.
    pub earlier: Option<(String, i64)>,
}

#[derive(Debug)]
pub enum Committed {
    /// The run counts. For a replay, its alerts just joined the trail: here with their links,
    /// for the sinks.
    Done(Vec<(Alert, Link)>),
    /// Some capture was counted already (by another process, while this one ran, or twice in
    /// this replay): the run was rolled back, nothing of it counts.
    Duplicate(Vec<Duplicate>),
}

/// A run that has not finished, as `verify` and `report health` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    pub id: i64,
    pub mode: String,
    pub state: String,
    pub pid: Option<i64>,
    pub started_at: i64,
    /// Its process still holds its lock (only for state 'running').
    pub alive: bool,
}

impl Unfinished {
    /// One line for a person.
    pub fn describe(&self) -> String {
        let pid = self.pid.map_or_else(String::new, |p| format!(", pid {p}"));
        let what = match (self.mode.as_str(), self.state.as_str(), self.alive) {
            ("replay", "running", true) => "is running; it counts once it commits",
            ("replay", "running", false) => {
                "died before it committed; not counted, and rolled back by the next exfilmon that writes here"
            }
            (_, "running", true) => "is running",
            (_, "running", false) => "ended without a clean exit; what it committed counts",
            (_, "interrupted", _) => "ended without a clean exit; what it committed counts",
            _ => "did not finish",
        };
        format!("run {} ({}{pid}, started {}) {what}", self.id, self.mode, crate::units::rfc3339(self.started_at))
    }
}

/// The lock a run's process holds on the database file while the run is being written.
pub(super) struct RunLock {
    _file: File,
}

/// The byte of run `run_id`, as a lock request of `kind` (F_RDLCK, F_WRLCK).
fn lock_range(run_id: i64, kind: i32) -> nix::libc::flock {
    nix::libc::flock {
        l_type: kind as i16,
        l_whence: nix::libc::SEEK_SET as i16,
        l_start: LOCK_BASE + run_id,
        l_len: 1,
        l_pid: 0,
    }
}

impl RunLock {
    /// Takes run `run_id`'s lock on the database at `path`.
    fn take(path: &Path, run_id: i64) -> std::io::Result<RunLock> {
        let file = File::open(path)?;
        let l = lock_range(run_id, nix::libc::F_RDLCK);
        nix::fcntl::fcntl(file.as_fd(), nix::fcntl::FcntlArg::F_OFD_SETLK(&l)).map_err(std::io::Error::from)?;
        Ok(RunLock { _file: file })
    }
}

/// Whether some process holds run `run_id`'s lock. When the file system cannot tell (no
/// open file description locks), the run is taken for alive: never undo what cannot be judged.
pub fn run_alive(path: &Path, run_id: i64) -> bool {
    let Ok(file) = File::open(path) else { return true };
    let mut l = lock_range(run_id, nix::libc::F_WRLCK);
    match nix::fcntl::fcntl(file.as_fd(), nix::fcntl::FcntlArg::F_OFD_GETLK(&mut l)) {
        Ok(_) => l.l_type != nix::libc::F_UNLCK as i16,
        Err(_) => true,
    }
}

/// What rolling a run back removed.
#[derive(Debug, Default)]
struct Undone {
    egress: usize,
    dns: usize,
    samples: usize,
    reads: usize,
    alerts: usize,
}

/// Deletes everything run `run_id` wrote and marks it 'abandoned'.
fn undo(tx: &Transaction<'_>, run_id: i64) -> rusqlite::Result<Undone> {
    let (first, last): (Option<i64>, Option<i64>) =
        tx.query_row("SELECT first_minute, last_minute FROM runs WHERE id = ?1", [run_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let mut n = Undone::default();
    if let (Some(first), Some(last)) = (first, last) {
        let range = params![first, last, run_id];
        n.egress = tx.execute("DELETE FROM egress WHERE minute BETWEEN ?1 AND ?2 AND run_id = ?3", range)?;
        tx.execute("DELETE FROM egress_programs WHERE minute BETWEEN ?1 AND ?2 AND run_id = ?3", range)?;
        tx.execute("DELETE FROM icmp WHERE minute BETWEEN ?1 AND ?2 AND run_id = ?3", range)?;
        n.dns = tx.execute("DELETE FROM dns WHERE minute BETWEEN ?1 AND ?2 AND run_id = ?3", range)?;
    }
    n.samples = tx.execute("DELETE FROM dns_samples WHERE run_id = ?1", [run_id])?;
    n.reads = tx.execute("DELETE FROM file_reads WHERE run_id = ?1", [run_id])?;
    n.alerts = tx.execute("DELETE FROM alerts_pending WHERE run_id = ?1", [run_id])?;
    tx.execute(
        "UPDATE runs SET state = 'abandoned', finished_at = ?2 WHERE id = ?1",
        params![run_id, wall_clock_us()],
    )?;
    Ok(n)
}

/// The trail event saying run `run_id` was rolled back, and why.
fn rolled_back(run_id: i64, why: &str, n: &Undone, severity: Severity) -> Event {
    Event::now(
        EventKind::RunRolledBack,
        severity,
        format!(
            "replay run {run_id} rolled back ({why}): {} egress and {} dns rows and {} alerts not yet committed removed",
            n.egress, n.dns, n.alerts
        ),
        json!({
            "run": run_id,
            "why": why,
            "egress_rows": n.egress,
            "dns_rows": n.dns,
            "dns_samples": n.samples,
            "file_reads": n.reads,
            "pending_alerts": n.alerts,
        }),
    )
}

fn state(tx: &Transaction<'_>, run_id: i64) -> rusqlite::Result<Option<String>> {
    tx.query_row("SELECT state FROM runs WHERE id = ?1", [run_id], |r| r.get(0)).optional()
}

fn parse_principal(uid: Option<i64>, host: Option<String>) -> Option<Principal> {
    match (uid, host) {
        (Some(uid), _) => u32::try_from(uid).ok().map(Principal::Uid),
        (None, Some(host)) => host.parse().ok().map(Principal::Host),
        (None, None) => None,
    }
}

impl Store {
    /// Records the start of a run and takes its lock, in one transaction: no other process can
    /// see the run without its lock held.
    pub fn begin_run(&mut self, mode: RunMode) -> Result<Run, StoreError> {
        let path = self.path.clone();
        let err = |e| sql_err(&path, e);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        tx.execute(
            "INSERT INTO runs (mode, version, started_at, state, pid) VALUES (?1, ?2, ?3, 'running', ?4)",
            params![mode.as_str(), env!("CARGO_PKG_VERSION"), wall_clock_us(), std::process::id()],
        )
        .map_err(err)?;
        let id = tx.last_insert_rowid();
        // Without the lock (a file system without open file description locks) the run is
        // written all the same; nobody can then tell it died, so it is never rolled back.
        let lock = RunLock::take(&path, id)
            .inspect_err(|e| {
                tracing::warn!("cannot lock run {id} in {}: {e}; a crash will not be rolled back", path.display())
            })
            .ok();
        tx.commit().map_err(err)?;
        self.run_lock = lock;
        Ok(Run { id, mode })
    }

    /// Ends `run` in one transaction (see the module doc): a replay's duplicate check and
    /// captures, its pending alerts into the trail; the totals and state 'finished'. A replay
    /// that turns out to duplicate a recorded capture is rolled back instead.
    pub fn commit_run(&mut self, run: Run, end: &RunEnd<'_>) -> Result<Committed, StoreError> {
        let path = self.path.clone();
        let err = |e| sql_err(&path, e);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        if state(&tx, run.id).map_err(err)?.as_deref() != Some("running") {
            return Err(StoreError::RunLost { path: path.clone(), run: run.id });
        }
        let duplicates = if end.force { Vec::new() } else { duplicates(&tx, end.captures).map_err(err)? };
        let committed = if duplicates.is_empty() {
            for c in end.captures {
                tx.execute(
                    "INSERT OR REPLACE INTO captures (digest, path, size, run_id, records, damaged, replayed_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        c.digest,
                        c.path,
                        c.size as i64,
                        run.id,
                        c.records as i64,
                        c.damaged as i64,
                        wall_clock_us()
                    ],
                )
                .map_err(err)?;
            }
            let alerts = release_alerts(&tx, run.id).map_err(err)?;
            // A replay's minutes all at once (its rows are final now); the rest of a live run's.
            if run.unit() {
                std::mem::take(&mut self.written).commit(&tx, run.id).map_err(err)?;
            } else {
                digest::digest_rest(&tx, run.id, self.live_digests.done_before).map_err(err)?;
            }
            let t = end.totals;
            tx.execute(
                "UPDATE runs SET state = 'finished', finished_at = ?2, packets = ?3, bytes = ?4, malformed = ?5,
                   ignored = ?6, alerts = ?7, counters = ?8
                 WHERE id = ?1",
                params![
                    run.id,
                    wall_clock_us(),
                    t.packets as i64,
                    t.bytes as i64,
                    t.malformed as i64,
                    t.ignored as i64,
                    t.alerts as i64,
                    t.counters.to_string()
                ],
            )
            .map_err(err)?;
            Committed::Done(alerts)
        } else {
            let n = undo(&tx, run.id).map_err(err)?;
            let why = match &duplicates[0] {
                Duplicate { path, earlier: Some(_), .. } => format!("{path} was counted by another replay meanwhile"),
                Duplicate { path, earlier: None, .. } => format!("{path} has the content of another of its files"),
            };
            let mut at = trail::head(&tx).map_err(err)?;
            trail::insert_event(&tx, &mut at, &rolled_back(run.id, &why, &n, Severity::Low), Some(run.id))
                .map_err(err)?;
            Committed::Duplicate(duplicates)
        };
        tx.commit().map_err(err)?;
        self.run_lock = None;
        self.live_digests = Default::default();
        self.written = Default::default();
        Ok(committed)
    }

    /// Rolls `run` back now (a replay stopped by a signal), with `why` in the trail.
    pub fn abandon_run(&mut self, run: Run, why: &str) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |e| sql_err(&path, e);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        if state(&tx, run.id).map_err(err)?.as_deref() == Some("running") {
            let n = undo(&tx, run.id).map_err(err)?;
            let mut at = trail::head(&tx).map_err(err)?;
            trail::insert_event(&tx, &mut at, &rolled_back(run.id, why, &n, Severity::Low), Some(run.id))
                .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        self.run_lock = None;
        Ok(())
    }

    /// Finds runs left 'running' by processes that died, and ends them (see the module doc):
    /// a replay is rolled back, a live monitor's run becomes 'interrupted'. Says what it did
    /// on stderr (warnings); returns the ids handled.
    pub fn recover(&mut self) -> Result<Vec<i64>, StoreError> {
        let path = self.path.clone();
        let err = |e| sql_err(&path, e);
        // A look without the write lock first: almost always there is nothing to do.
        let running: Vec<i64> = {
            let mut s = self.conn.prepare("SELECT id FROM runs WHERE state = 'running'").map_err(err)?;
            let ids = s.query_map([], |r| r.get(0)).map_err(err)?;
            ids.collect::<Result<_, _>>().map_err(err)?
        };
        let dead: Vec<i64> = running.into_iter().filter(|&id| !run_alive(&path, id)).collect();
        if dead.is_empty() {
            return Ok(dead);
        }
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        let mut done = Vec::new();
        for id in dead {
            // Judged again under the write lock: another process may have ended it meanwhile.
            let row: Option<(String, String, Option<i64>)> = tx
                .query_row("SELECT mode, state, pid FROM runs WHERE id = ?1", [id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()
                .map_err(err)?;
            let Some((mode, state, pid)) = row else { continue };
            if state != "running" || run_alive(&path, id) {
                continue;
            }
            let pid = pid.map_or_else(String::new, |p| format!(" (pid {p})"));
            let event = if mode == RunMode::Replay.as_str() {
                let n = undo(&tx, id).map_err(err)?;
                let e = rolled_back(id, &format!("its process{pid} died before it committed"), &n, Severity::Medium);
                tracing::warn!("{}", e.summary);
                e
            } else {
                // What it committed stays, so its last minutes get the digests it never made.
                let from = digest::digested_before(&tx, id).map_err(err)?;
                digest::digest_rest(&tx, id, from).map_err(err)?;
                tx.execute("UPDATE runs SET state = 'interrupted' WHERE id = ?1", [id]).map_err(err)?;
                let e = Event::now(
                    EventKind::RunInterrupted,
                    Severity::Medium,
                    format!(
                        "run {id} ({mode}) ended without a clean exit: its process{pid} died; what it committed stays"
                    ),
                    json!({ "run": id, "mode": mode }),
                );
                tracing::warn!("{}", e.summary);
                e
            };
            let mut at = trail::head(&tx).map_err(err)?;
            trail::insert_event(&tx, &mut at, &event, Some(id)).map_err(err)?;
            done.push(id);
        }
        tx.commit().map_err(err)?;
        Ok(done)
    }

    /// The first run whose egress rows have digests (runs before migration 6 have none).
    pub fn digests_from_run(&self) -> Result<i64, StoreError> {
        let v: Option<String> = self
            .conn
            .query_row("SELECT value FROM exfilmon_meta WHERE key = 'digests_from_run'", [], |r| r.get(0))
            .optional()
            .map_err(|e| sql_err(&self.path, e))?;
        Ok(v.and_then(|v| v.parse().ok()).unwrap_or(1))
    }

    /// Runs not finished (running, interrupted), oldest first, and how many replays were
    /// rolled back ('abandoned').
    pub fn unfinished_runs(&self) -> Result<(Vec<Unfinished>, i64), StoreError> {
        let err = |e| sql_err(&self.path, e);
        let mut s = self
            .conn
            .prepare(
                "SELECT id, mode, state, pid, started_at FROM runs WHERE state IN ('running', 'interrupted') ORDER BY id",
            )
            .map_err(err)?;
        let rows = s
            .query_map([], |r| {
                Ok(Unfinished {
                    id: r.get(0)?,
                    mode: r.get(1)?,
                    state: r.get(2)?,
                    pid: r.get(3)?,
                    started_at: r.get(4)?,
                    alive: false,
                })
            })
            .map_err(err)?;
        let mut out: Vec<Unfinished> = rows.collect::<Result<_, _>>().map_err(err)?;
        for u in &mut out {
            u.alive = u.state == "running" && run_alive(&self.path, u.id);
        }
        let abandoned = self
            .conn
            .query_row("SELECT count(*) FROM runs WHERE state = 'abandoned'", [], |r| r.get(0))
            .map_err(err)?;
        Ok((out, abandoned))
    }
}

/// The captures whose content is recorded already, or comes twice in `captures`.
fn duplicates(tx: &Transaction<'_>, captures: &[CaptureRecord<'_>]) -> rusqlite::Result<Vec<Duplicate>> {
    let mut out = Vec::new();
    for (i, c) in captures.iter().enumerate() {
        let earlier = capture_seen(tx, std::iter::once(c.digest).chain(c.sha256))?;
        if earlier.is_some() || captures[..i].iter().any(|e| e.digest == c.digest) {
            out.push(Duplicate { index: i, path: c.path.to_owned(), earlier });
        }
    }
    Ok(out)
}

/// Where and when (wall clock) a capture of one of these digests was replayed before.
pub(super) fn capture_seen<'a>(
    conn: &Connection,
    digests: impl IntoIterator<Item = &'a str>,
) -> rusqlite::Result<Option<(String, i64)>> {
    let mut find = conn.prepare_cached("SELECT path, replayed_at FROM captures WHERE digest = ?1")?;
    for digest in digests {
        if let Some(seen) = find.query_row([digest], |r| Ok((r.get(0)?, r.get(1)?))).optional()? {
            return Ok(Some(seen));
        }
    }
    Ok(None)
}

/// Moves run `run_id`'s pending alerts into the trail, in the order they were raised;
/// returns them with their links, for the sinks.
fn release_alerts(tx: &Transaction<'_>, run_id: i64) -> rusqlite::Result<Vec<(Alert, Link)>> {
    let pending: Vec<(trail::OwnedAlertRow, Option<Alert>)> = {
        let mut s = tx.prepare(
            "SELECT a.ts, a.kind, a.severity, a.principal_id, p.uid, p.host, a.dst, a.bytes, a.summary, a.details
             FROM alerts_pending a LEFT JOIN principals p ON p.id = a.principal_id
             WHERE a.run_id = ?1 ORDER BY a.id",
        )?;
        let rows = s.query_map([run_id], |r| {
            let row = trail::OwnedAlertRow {
                ts_us: r.get(0)?,
                kind: r.get(1)?,
                severity: r.get(2)?,
                principal_id: r.get(3)?,
                uid: r.get::<_, Option<i64>>(4)?.and_then(|u| u32::try_from(u).ok()),
                host: r.get(5)?,
                dst: r.get(6)?,
                bytes: r.get(7)?,
                summary: r.get(8)?,
                details: r.get(9)?,
                run_id: Some(run_id),
            };
            // The alert again, for the sinks; rows are written by this program, so only an
            // edited row fails to read back, and that one is still stored, just not sent.
            let alert = (|| {
                Some(Alert {
                    ts_us: row.ts_us,
                    kind: AlertKind::from_name(&row.kind)?,
                    severity: Severity::from_name(&row.severity)?,
                    principal: parse_principal(r.get(4).ok()?, r.get(5).ok()?)?,
                    dst: row.dst.clone(),
                    bytes: u64::try_from(row.bytes).ok()?,
                    summary: row.summary.clone(),
                    details: serde_json::from_str(&row.details).ok()?,
                })
            })();
            Ok((row, alert))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut at = trail::head(tx)?;
    let mut out = Vec::with_capacity(pending.len());
    for (row, alert) in pending {
        trail::insert_alert(tx, &mut at, &row.view())?;
        if let Some(a) = alert {
            out.push((a, at.clone()));
        }
    }
    tx.execute("DELETE FROM alerts_pending WHERE run_id = ?1", [run_id])?;
    Ok(out)
}
