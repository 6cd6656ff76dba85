//! `exfilmon report files`: for each sensitive file, who read it, when, with what program, and
//! what each reader sent out in the window that followed.
//!
//! Egress is stored per minute, so "after the read" means the aggregates whose packets span
//! the window: the minute of the read counts whole (a few bytes sent just before the read may
//! be included). The detector itself works per packet; its alerts are counted here.

use std::time::Duration;

use super::db::Db;
use super::table::{col, hidden, titled, Cell, Table};
use super::{Filter, ReportError, UserNames};
use crate::principal::Dst;

/// Destinations listed per read.
const TOP_DSTS: usize = 3;

pub fn files(db: &Db, f: &Filter, names: &mut UserNames, window: Duration) -> Result<Table, ReportError> {
    let window_us = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
    let mut reads = Vec::new();
    db.each(
        // A log replayed twice stored each read under both runs: one row per read.
        "SELECT f.path, f.ts, max(f.uid), max(f.auid), max(f.fsuid), max(f.\"user\"), max(f.exe), max(f.comm),
                max(f.size), max(f.pid), max(f.proctitle), f.observer, max(f.user_name)
         FROM {file_reads} f
         WHERE f.ts >= $1 AND f.ts < $2 AND ($3 IS NULL OR f.fsuid = $3 OR f.auid = $3)
           AND ($4 IS NULL OR f.observer = $4)
         GROUP BY f.observer, f.ts, f.serial, f.path ORDER BY f.path, f.ts, f.observer, f.serial",
        &super::series::bounds(f),
        |r| {
            let text = |i| Ok::<_, ReportError>(r.opt_text(i)?.map_or(Cell::Null, Cell::Escaped));
            let row = vec![
                Cell::Escaped(r.text(0)?),
                Cell::Time(r.int(1)?),
                Cell::opt_int(r.opt_int(2)?),
                Cell::opt_int(r.opt_int(3)?),
                Cell::opt_int(r.opt_int(4)?),
                text(5)?,
                text(6)?,
                text(7)?,
                r.opt_int(8)?.map_or(Cell::Null, Cell::Bytes),
                Cell::opt_int(r.opt_int(9)?),
                text(10)?,
            ];
            reads.push((row, r.text(11)?, r.opt_text(12)?));
            Ok(())
        },
    )?;
    let mut out = Vec::with_capacity(reads.len());
    for (mut row, observer, user_name) in reads {
        let int = |c: &Cell| if let Cell::Int(n) = c { Some(*n) } else { None };
        let (ts, uid, auid, fsuid) =
            (if let Cell::Time(t) = row[1] { t } else { 0 }, int(&row[2]), int(&row[3]), int(&row[4]));
        let who = fsuid.or(uid);
        // The detector's uids: fsuid, and the login uid when set.
        let (a, b) = (who.unwrap_or(-1), auid.or(who).unwrap_or(-1));
        let end = ts.saturating_add(window_us);
        let params = [a.into(), b.into(), ts.into(), end.into(), Some(observer.clone()).into()];
        let mut dsts: Vec<(String, i64)> = Vec::new();
        db.each(
            "SELECT e.dst, e.dport, e.proto, CAST(sum(e.bytes) AS BIGINT) FROM {egress} e
             WHERE e.uid IN ($1, $2) AND e.minute >= $3 / 60000000 * 60000000 AND e.minute <= $4
               AND e.last_seen >= $3 AND e.first_seen <= $4 AND e.observer = $5
             GROUP BY e.dst, e.dport, e.proto ORDER BY 4 DESC",
            &params,
            |r| {
                let addr = r.text(0)?;
                let (port, proto) = (u16::try_from(r.int(1)?).unwrap_or(0), u8::try_from(r.int(2)?).unwrap_or(0));
                let dst = addr.parse().map_or(addr.clone(), |addr| Dst { addr, port, proto }.to_string());
                dsts.push((dst, r.int(3)?));
                Ok(())
            },
        )?;
        let path = if let Cell::Escaped(p) = &row[0] { p.clone() } else { String::new() };
        let mut n = 0;
        // `replace` finds the path in the summary on both databases (instr is SQLite's only).
        db.each(
            "SELECT count(*) FROM {alerts} a
             WHERE a.kind = 'sensitive_egress' AND a.uid IN ($1, $2) AND a.ts >= $3 AND a.ts <= $4
               AND a.observer = $5 AND replace(a.summary, $6, '') <> a.summary",
            &[params.as_slice(), &[Some(path).into()]].concat(),
            |r| {
                n = r.int(0)?;
                Ok(())
            },
        )?;
        let sent: i64 = dsts.iter().map(|(_, b)| b).sum();
        let listed: Vec<String> = dsts.iter().take(TOP_DSTS).map(|(d, _)| d.clone()).collect();
        let mut to = listed.join(", ");
        if dsts.len() > TOP_DSTS {
            to.push_str(&format!(" (+{} more)", dsts.len() - TOP_DSTS));
        }
        // The name of the uid where it was recorded; the name auditd resolved, otherwise.
        if let Some(name) = db.user(names, who, user_name) {
            row[5] = Cell::Text(name);
        }
        row.push(Cell::Bytes(sent));
        row.push(if to.is_empty() { Cell::Null } else { Cell::Text(to) });
        row.push(Cell::Int(n));
        row.push(Cell::Text(observer));
        out.push(row);
    }
    Ok(Table {
        title: format!("Sensitive file reads and the egress within {} after", crate::units::human_duration(window)),
        columns: vec![
            col("file"),
            col("read_at"),
            hidden("uid"),
            hidden("auid"),
            col("fsuid"),
            col("user"),
            col("program"),
            hidden("comm"),
            col("size"),
            hidden("pid"),
            hidden("proctitle"),
            col("sent_after"),
            col("destinations"),
            col("alerts"),
            // Last, so CSV columns keep their places (issue 12).
            titled("observer", "HOST"),
        ],
        rows: out,
    })
}
