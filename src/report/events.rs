//! `exfilmon report events`: the monitor's own events (started, stopped, reloaded, ruleset
//! missing or changed, sink failures ...) and its `monitor_loss` alerts, in trail order (per
//! host, in the fleet store).

use super::db::Db;
use super::table::{col, hidden, titled, Cell, Table};
use super::{limit, Filter, ReportError};

/// Events within the filter's time range, oldest first; `newest` keeps only the last ones.
pub fn events(db: &Db, f: &Filter, newest: Option<usize>) -> Result<Table, ReportError> {
    let mut rows = Vec::new();
    db.each(
        &format!(
            "SELECT * FROM (
               SELECT seq, ts, kind, severity, run_id, summary, details, observer FROM {{events}}
                 WHERE ts >= $1 AND ts < $2 AND ($3 IS NULL OR observer = $3)
               UNION ALL
               SELECT seq, ts, kind, severity, run_id, summary, details, observer FROM {{alerts}}
                 WHERE kind = 'monitor_loss' AND ts >= $1 AND ts < $2 AND ($3 IS NULL OR observer = $3)
               ORDER BY observer DESC, seq DESC{}) x
             ORDER BY observer, seq",
            limit(newest)
        ),
        &[f.since_us.unwrap_or(i64::MIN).into(), f.until_us.unwrap_or(i64::MAX).into(), f.observer.clone().into()],
        |r| {
            let details = r.text(6)?;
            rows.push(vec![
                Cell::Int(r.int(0)?),
                Cell::Time(r.int(1)?),
                Cell::Text(r.text(2)?),
                Cell::Text(r.text(3)?),
                Cell::opt_int(r.opt_int(4)?),
                Cell::Escaped(r.text(5)?),
                Cell::Json(serde_json::from_str(&details).unwrap_or(serde_json::Value::Null)),
                Cell::Text(r.text(7)?),
            ]);
            Ok(())
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
            titled("observer", "HOST"),
        ],
        rows,
    })
}
