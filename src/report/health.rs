//! `exfilmon report health`: is the monitor running, and did it see everything?

use std::path::Path;
use std::time::Duration;

use rusqlite::params;

use super::db::Db;
use super::table::{col, hidden, titled, Cell, Table};
use super::{Filter, ReportError};
use crate::store::{Store, StoreError};
use crate::units::wall_clock_us;
use crate::units::{human_bytes, human_duration};

/// A run whose heartbeat (every second) is older than this is not running any more.
const STALE_US: i64 = 10_000_000;

/// One `exfilmon run` as its health row says, for `report health`, `status` and `metrics`.
#[derive(Debug, Clone)]
pub struct Run {
    pub run: i64,
    /// "running", "stopped" or "dead (no clean exit)".
    pub state: &'static str,
    pub pid: i64,
    pub group: i64,
    pub rcvbuf: i64,
    pub started_us: i64,
    pub updated_us: i64,
    pub uptime: Duration,
    pub received: i64,
    pub lost: i64,
    pub overruns: i64,
    pub loss_alerts: i64,
    pub last_packet_us: Option<i64>,
    pub queue: i64,
    pub queue_waits: i64,
    pub counters: serde_json::Value,
}

impl Run {
    pub fn running(&self) -> bool {
        self.state == "running"
    }

    /// Per-sink counters of the heartbeat: name and its `failed`, `overflow`, `retries`...
    pub fn sinks(&self) -> impl Iterator<Item = (&str, &serde_json::Value)> {
        self.counters["sinks"].as_object().into_iter().flatten().map(|(k, v)| (k.as_str(), v))
    }
}

/// The runs whose life overlaps the filter's window, newest first.
pub fn runs(store: &Store, f: &Filter) -> Result<Vec<Run>, StoreError> {
    let now = wall_clock_us();
    let newest: Option<i64> = store
        .conn()
        .query_row("SELECT max(run_id) FROM health", [], |r| r.get(0))
        .map_err(|e| StoreError::Sql { path: store.path().to_owned(), source: e })?;
    let mut stmt = store
        .conn()
        .prepare(
            "SELECT h.run_id, h.pid, h.nflog_group, h.rcvbuf, h.started_at, h.updated_at, h.stopped_at, h.received,
                h.lost, h.overruns, h.last_packet, h.queue_depth, h.queue_waits,
                (SELECT count(*) FROM alerts a WHERE a.run_id = h.run_id AND a.kind = 'monitor_loss'), h.counters
         FROM health h WHERE h.updated_at >= ?1 AND h.started_at < ?2 ORDER BY h.run_id DESC",
        )
        .map_err(|e| StoreError::Sql { path: store.path().to_owned(), source: e })?;
    let mapped = stmt
        .query_map(params![f.since_us.unwrap_or(i64::MIN), f.until_us.unwrap_or(i64::MAX)], |r| {
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
            let counters: String = r.get(14)?;
            Ok(Run {
                run,
                state,
                pid: r.get(1)?,
                group: r.get(2)?,
                rcvbuf: r.get(3)?,
                started_us: started,
                updated_us: updated,
                uptime: Duration::from_micros((end - started).max(0) as u64),
                received: r.get(7)?,
                lost: r.get(8)?,
                overruns: r.get(9)?,
                loss_alerts: r.get(13)?,
                last_packet_us: r.get(10)?,
                queue: r.get(11)?,
                queue_waits: r.get(12)?,
                counters: serde_json::from_str(&counters).unwrap_or(serde_json::Value::Null),
            })
        })
        .map_err(|e| StoreError::Sql { path: store.path().to_owned(), source: e })?;
    mapped.collect::<Result<_, _>>().map_err(|e| StoreError::Sql { path: store.path().to_owned(), source: e })
}

/// One row per `exfilmon run`, newest first: uptime, packets received and lost, last packet,
/// queue depth. A run that stopped without a clean exit shows its last heartbeat. Replays
/// that have not committed are listed too: running, or left by a process that died (not
/// counted; rolled back by the next exfilmon that writes to the database).
pub fn health(store: &Store, f: &Filter) -> Result<Table, StoreError> {
    let now = wall_clock_us();
    let db_bytes = database_size(store.path());
    let active: Vec<serde_json::Value> = store
        .active_blocks(now)?
        .into_iter()
        .map(|b| {
            serde_json::json!({
                "principal": b.principal, "uid": b.uid, "host": b.host, "since": crate::units::rfc3339(b.since_us),
                "until": crate::units::rfc3339(b.until_us), "reason": b.reason,
            })
        })
        .collect();
    let mut rows: Vec<Vec<Cell>> = runs(store, f)?
        .into_iter()
        .map(|h| {
            vec![
                Cell::Int(h.run),
                Cell::Text(h.state.into()),
                Cell::Int(h.pid),
                Cell::Int(h.group),
                Cell::Time(h.started_us),
                Cell::Text(human_duration(h.uptime)),
                Cell::Int(h.uptime.as_secs() as i64),
                Cell::Time(h.updated_us),
                Cell::Int(h.received),
                Cell::Int(h.lost),
                Cell::Int(h.overruns),
                Cell::Int(h.loss_alerts),
                h.last_packet_us.map_or(Cell::Null, Cell::Time),
                Cell::Int(h.queue),
                Cell::Int(h.queue_waits),
                Cell::Bytes(h.rcvbuf),
                Cell::Bytes(db_bytes),
                Cell::Json(h.counters),
                Cell::Json(serde_json::Value::Array(active.clone())),
            ]
        })
        .collect();
    let (unfinished, _) = store.unfinished_runs()?;
    for u in unfinished.iter().filter(|u| u.mode == "replay" && u.state == "running") {
        let state = if u.alive { "replaying (not counted until it commits)" } else { "replay died (not counted)" };
        let uptime = Duration::from_micros((now - u.started_at).max(0) as u64);
        let (uptime_text, uptime_secs) = if u.alive {
            (Cell::Text(human_duration(uptime)), Cell::Int(uptime.as_secs() as i64))
        } else {
            (Cell::Null, Cell::Null)
        };
        let mut row = vec![Cell::Null; 19];
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
            // The same on every row: blocks belong to the host, not to a run.
            hidden("blocks"),
        ],
        rows,
    })
}

/// The fleet store's health: each host's last round (its `observers` row) and the newest
/// minute of egress it has delivered, oldest round first, so a host that stopped shipping
/// stands out at the top.
pub fn fleet(db: &Db, f: &Filter) -> Result<Table, ReportError> {
    let mut rows = Vec::new();
    db.each(
        "SELECT o.observer, o.seq, o.shipped_at, o.version,
                (SELECT max(e.minute) FROM egress e WHERE e.observer = o.observer)
         FROM observers o WHERE ($1 IS NULL OR o.observer = $1) ORDER BY o.shipped_at, o.observer",
        &[f.observer.clone().into()],
        |r| {
            rows.push(vec![
                Cell::Text(r.text(0)?),
                Cell::Int(r.int(1)?),
                Cell::Time(r.int(2)?),
                Cell::Text(r.text(3)?),
                r.opt_int(4)?.map_or(Cell::Null, Cell::Time),
            ]);
            Ok(())
        },
    )?;
    Ok(Table {
        title: "Fleet: each host's last round".into(),
        columns: vec![
            titled("observer", "HOST"),
            col("shipped_through"),
            col("shipped_at"),
            col("version"),
            col("last_minute"),
        ],
        rows,
    })
}

/// Where each postgres sink stands (src/ship): the trail position and checkpoint shipped
/// through, what waits (backlog), the last round that reached the server and the last error.
/// Target names are URLs without passwords (the config refuses one in a URL).
pub fn shipping(store: &Store) -> Result<Table, StoreError> {
    let rows = store
        .ship_states()?
        .into_iter()
        .map(|s| {
            vec![
                Cell::Text(s.target),
                Cell::Int(s.seq),
                Cell::Int(s.checkpoint),
                Cell::Int(s.backlog),
                s.shipped_at.map_or(Cell::Null, Cell::Time),
                s.tried_at.map_or(Cell::Null, Cell::Time),
                Cell::opt_text(s.last_error),
            ]
        })
        .collect();
    Ok(Table {
        title: "Shipping to the fleet store".into(),
        columns: vec![
            col("target"),
            col("shipped_through"),
            hidden("checkpoint"),
            col("backlog"),
            col("shipped_at"),
            hidden("tried_at"),
            col("last_error"),
        ],
        rows,
    })
}

/// Blocks in force ([response], `exfilmon block`), for people: who, since, until, why.
pub fn blocks(store: &Store) -> Result<Table, StoreError> {
    let rows = store
        .active_blocks(wall_clock_us())?
        .into_iter()
        .map(|b| vec![Cell::Text(b.principal), Cell::Time(b.since_us), Cell::Time(b.until_us), Cell::Escaped(b.reason)])
        .collect();
    Ok(Table {
        title: "Active blocks (exfilmon unblock USER|UID|ADDRESS lifts one)".into(),
        columns: vec![col("principal"), col("since"), col("until"), col("reason")],
        rows,
    })
}

/// The database file plus its write-ahead log, which holds the newest commits.
pub fn database_size(path: &Path) -> i64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    [path, Path::new(&wal)].iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len() as i64).sum()
}

/// The sinks of `run` whose latest sink event says failing or dropping (not recovered since).
pub fn failing_sinks(store: &Store, run: i64) -> Result<Vec<String>, StoreError> {
    let sql = |e| StoreError::Sql { path: store.path().to_owned(), source: e };
    let mut stmt = store
        .conn()
        .prepare(
            "SELECT json_extract(details, '$.sink'), kind FROM events
             WHERE run_id = ?1 AND kind IN ('sink_failed', 'sink_dropping', 'sink_recovered') ORDER BY seq",
        )
        .map_err(sql)?;
    let mut last = std::collections::BTreeMap::<String, bool>::new();
    let rows = stmt.query_map([run], |r| Ok((r.get::<_, Option<String>>(0)?, r.get::<_, String>(1)?))).map_err(sql)?;
    for row in rows {
        let (sink, kind) = row.map_err(sql)?;
        last.insert(sink.unwrap_or_default(), kind != "sink_recovered");
    }
    Ok(last.into_iter().filter(|(_, failing)| *failing).map(|(s, _)| s).collect())
}

/// What `run`'s self-watch last said about the ruleset: `ruleset_missing`, `ruleset_changed`,
/// `ruleset_restored` or `ruleset_unchecked`; `None` when it said nothing (it matched).
pub fn ruleset_event(store: &Store, run: i64) -> Result<Option<String>, StoreError> {
    store
        .conn()
        .query_row(
            "SELECT kind FROM events WHERE run_id = ?1 AND kind LIKE 'ruleset_%' ORDER BY seq DESC LIMIT 1",
            [run],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })
        .map_err(|e| StoreError::Sql { path: store.path().to_owned(), source: e })
}
