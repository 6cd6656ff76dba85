//! `exfilmon report health`: is the monitor running, and did it see everything?

use std::path::Path;
use std::time::Duration;

use rusqlite::params;

use super::table::{col, hidden, Cell, Table};
use super::{rows, Filter};
use crate::store::{Store, StoreError};
use crate::units::wall_clock_us;
use crate::units::{human_bytes, human_duration};

/// A run whose heartbeat (every second) is older than this is not running any more.
const STALE_US: i64 = 10_000_000;

/// One row per `exfilmon run`, newest first: uptime, packets received and lost, last packet,
/// queue depth. A run that stopped without a clean exit shows its last heartbeat. Replays
/// that have not committed are listed too: running, or left by a process that died (not
/// counted; rolled back by the next exfilmon that writes to the database).
pub fn health(store: &Store, f: &Filter) -> Result<Table, StoreError> {
    let now = wall_clock_us();
    let db_bytes = database_size(store.path());
    let newest: Option<i64> = store
        .conn()
        .query_row("SELECT max(run_id) FROM health", [], |r| r.get(0))
        .map_err(|e| StoreError::Sql { path: store.path().to_owned(), source: e })?;
    let mut rows = rows(
        store,
        "SELECT h.run_id, h.pid, h.nflog_group, h.rcvbuf, h.started_at, h.updated_at, h.stopped_at, h.received,
                h.lost, h.overruns, h.last_packet, h.queue_depth, h.queue_waits,
                (SELECT count(*) FROM alerts a WHERE a.run_id = h.run_id AND a.kind = 'monitor_loss'), h.counters
         FROM health h WHERE h.updated_at >= ?1 AND h.started_at < ?2 ORDER BY h.run_id DESC",
        params![f.since_us.unwrap_or(i64::MIN), f.until_us.unwrap_or(i64::MAX)],
        |r| {
            let run: i64 = r.get(0)?;
            let (started, updated, stopped): (i64, i64, Option<i64>) = (r.get(4)?, r.get(5)?, r.get(6)?);
            // A run without a clean exit is alive while its heartbeat is fresh and no later run
            // has started on this database.
            let alive = stopped.is_none() && now - updated < STALE_US && newest == Some(run);
            let state = match stopped {
                Some(_) => "stopped",
                None if alive => "running",
                None => "dead (no clean exit)",
            };
            let end = match stopped {
                Some(t) => t,
                None if alive => now,
                None => updated,
            };
            let uptime = Duration::from_micros((end - started).max(0) as u64);
            let counters: String = r.get(14)?;
            Ok(vec![
                Cell::Int(run),
                Cell::Text(state.into()),
                Cell::Int(r.get(1)?),
                Cell::Int(r.get(2)?),
                Cell::Time(started),
                Cell::Text(human_duration(uptime)),
                Cell::Int(uptime.as_secs() as i64),
                Cell::Time(updated),
                Cell::Int(r.get(7)?),
                Cell::Int(r.get(8)?),
                Cell::Int(r.get(9)?),
                Cell::Int(r.get(13)?),
                r.get::<_, Option<i64>>(10)?.map_or(Cell::Null, Cell::Time),
                Cell::Int(r.get(11)?),
                Cell::Int(r.get(12)?),
                Cell::Bytes(r.get(3)?),
                Cell::Bytes(db_bytes),
                Cell::Json(serde_json::from_str(&counters).unwrap_or(serde_json::Value::Null)),
            ])
        },
    )?;
    let (unfinished, _) = store.unfinished_runs()?;
    for u in unfinished.iter().filter(|u| u.mode == "replay" && u.state == "running") {
        let state = if u.alive { "replaying (not counted until it commits)" } else { "replay died (not counted)" };
        let uptime = Duration::from_micros((now - u.started_at).max(0) as u64);
        let (uptime_text, uptime_secs) = if u.alive {
            (Cell::Text(human_duration(uptime)), Cell::Int(uptime.as_secs() as i64))
        } else {
            (Cell::Null, Cell::Null)
        };
        let mut row = vec![Cell::Null; 18];
        row[0] = Cell::Int(u.id);
        row[1] = Cell::Text(state.into());
        row[2] = Cell::opt_int(u.pid);
        row[4] = Cell::Time(u.started_at);
        row[5] = uptime_text;
        row[6] = uptime_secs;
        row[16] = Cell::Bytes(db_bytes);
        rows.push(row);
    }
    rows.sort_by_key(|r| std::cmp::Reverse(if let Cell::Int(id) = r[0] { id } else { 0 }));
    Ok(Table {
        title: format!("Monitor health (database {})", human_bytes(db_bytes.max(0) as u64)),
        columns: vec![
            col("run"),
            col("state"),
            hidden("pid"),
            hidden("group"),
            col("started"),
            col("uptime"),
            hidden("uptime_secs"),
            hidden("heartbeat"),
            col("packets"),
            col("lost"),
            col("overruns"),
            col("loss_alerts"),
            col("last_packet"),
            col("queue"),
            hidden("queue_waits"),
            hidden("rcvbuf"),
            hidden("db_bytes"),
            hidden("counters"),
        ],
        rows,
    })
}

/// The database file plus its write-ahead log, which holds the newest commits.
fn database_size(path: &Path) -> i64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    [path, Path::new(&wal)].iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len() as i64).sum()
}
