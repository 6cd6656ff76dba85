//! `exfilmon report events`: the monitor's own events (started, stopped, reloaded, ruleset
//! missing or changed, sink failures ...) and its `monitor_loss` alerts, in trail order.

use rusqlite::params;

use super::table::{col, hidden, Cell, Table};
use super::{rows, Filter};
use crate::store::{Store, StoreError};

/// Events within the filter's time range, oldest first; `newest` keeps only the last ones.
pub fn events(store: &Store, f: &Filter, newest: Option<usize>) -> Result<Table, StoreError> {
    let limit = newest.map_or(-1, |n| n as i64);
    let rows = rows(
        store,
        "SELECT * FROM (
           SELECT seq, ts, kind, severity, run_id, summary, details FROM events WHERE ts >= ?1 AND ts < ?2
           UNION ALL
           SELECT seq, ts, kind, severity, run_id, summary, details FROM alerts
             WHERE kind = 'monitor_loss' AND ts >= ?1 AND ts < ?2
           ORDER BY seq DESC LIMIT ?3)
         ORDER BY seq",
        params![f.since_us.unwrap_or(i64::MIN), f.until_us.unwrap_or(i64::MAX), limit],
        |r| {
            let details: String = r.get(6)?;
            Ok(vec![
                Cell::Int(r.get(0)?),
                Cell::Time(r.get(1)?),
                Cell::Text(r.get(2)?),
                Cell::Text(r.get(3)?),
                Cell::opt_int(r.get(4)?),
                Cell::Escaped(r.get(5)?),
                Cell::Json(serde_json::from_str(&details).unwrap_or(serde_json::Value::Null)),
            ])
        },
    )?;
    Ok(Table {
        title: "Monitor events".into(),
        columns: vec![
            hidden("seq"),
            col("ts"),
            col("kind"),
            col("severity"),
            hidden("run"),
            col("summary"),
            hidden("details"),
        ],
        rows,
    })
}
