//! `exfilmon report files`: for each sensitive file, who read it, when, with what program, and
//! what each reader sent out in the window that followed.
//!
//! Egress is stored per minute, so "after the read" means the aggregates whose packets span
//! the window: the minute of the read counts whole (a few bytes sent just before the read may
//! be included). The detector itself works per packet; its alerts are counted here.

use std::time::Duration;

use rusqlite::params;

use super::table::{col, hidden, Cell, Table};
use super::{rows, sql, Filter, UserNames};
use crate::principal::Dst;
use crate::store::{Store, StoreError};

/// Destinations listed per read.
const TOP_DSTS: usize = 3;

pub fn files(store: &Store, f: &Filter, names: &mut UserNames, window: Duration) -> Result<Table, StoreError> {
    let window_us = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
    let reads = rows(
        store,
        // A log replayed twice stored each read under both runs: one row per read.
        "SELECT path, ts, uid, auid, fsuid, user, exe, comm, size, pid, proctitle FROM file_reads
         WHERE ts >= ?1 AND ts < ?2 AND (?3 IS NULL OR fsuid = ?3 OR auid = ?3) AND run_id NOT IN uncounted_runs
         GROUP BY ts, serial, path ORDER BY path, ts, serial",
        params![f.since(), f.until(), f.uid()],
        |r| {
            Ok(vec![
                Cell::Escaped(r.get(0)?),
                Cell::Time(r.get(1)?),
                Cell::opt_int(r.get(2)?),
                Cell::opt_int(r.get(3)?),
                Cell::opt_int(r.get(4)?),
                r.get::<_, Option<String>>(5)?.map_or(Cell::Null, Cell::Escaped),
                r.get::<_, Option<String>>(6)?.map_or(Cell::Null, Cell::Escaped),
                r.get::<_, Option<String>>(7)?.map_or(Cell::Null, Cell::Escaped),
                r.get::<_, Option<i64>>(8)?.map_or(Cell::Null, Cell::Bytes),
                Cell::opt_int(r.get(9)?),
                r.get::<_, Option<String>>(10)?.map_or(Cell::Null, Cell::Escaped),
            ])
        },
    )?;
    let mut egress = store
        .conn()
        .prepare(
            "SELECT e.dst, e.dport, e.proto, sum(e.bytes) FROM egress e JOIN principals p ON p.id = e.principal_id
             WHERE p.uid IN (?1, ?2) AND e.minute >= ?3 / 60000000 * 60000000 AND e.minute <= ?4
               AND e.last_seen >= ?3 AND e.first_seen <= ?4 AND e.run_id NOT IN uncounted_runs
             GROUP BY e.dst, e.dport, e.proto ORDER BY 4 DESC",
        )
        .map_err(|e| sql(store, e))?;
    let mut alerts = store
        .conn()
        .prepare(
            "SELECT count(*) FROM alerts a JOIN principals p ON p.id = a.principal_id
             WHERE a.kind = 'sensitive_egress' AND p.uid IN (?1, ?2) AND a.ts >= ?3 AND a.ts <= ?4 AND instr(a.summary, ?5) > 0",
        )
        .map_err(|e| sql(store, e))?;
    let mut out = Vec::with_capacity(reads.len());
    for mut row in reads {
        let int = |c: &Cell| if let Cell::Int(n) = c { Some(*n) } else { None };
        let (ts, uid, auid, fsuid) =
            (if let Cell::Time(t) = row[1] { t } else { 0 }, int(&row[2]), int(&row[3]), int(&row[4]));
        let who = fsuid.or(uid);
        // The detector's uids: fsuid, and the login uid when set.
        let (a, b) = (who.unwrap_or(-1), auid.or(who).unwrap_or(-1));
        let end = ts.saturating_add(window_us);
        let dsts: Vec<(String, i64)> = egress
            .query_map(params![a, b, ts, end], |r| {
                let (addr, port, proto): (String, u16, u8) = (r.get(0)?, r.get(1)?, r.get(2)?);
                let dst = addr.parse().map_or(addr.clone(), |addr| Dst { addr, port, proto }.to_string());
                Ok((dst, r.get(3)?))
            })
            .and_then(|m| m.collect::<Result<_, _>>())
            .map_err(|e| sql(store, e))?;
        let path = if let Cell::Escaped(p) = &row[0] { p.clone() } else { String::new() };
        let n: i64 = alerts.query_row(params![a, b, ts, end, path], |r| r.get(0)).map_err(|e| sql(store, e))?;
        let sent: i64 = dsts.iter().map(|(_, b)| b).sum();
        let listed: Vec<String> = dsts.iter().take(TOP_DSTS).map(|(d, _)| d.clone()).collect();
        let mut to = listed.join(", ");
        if dsts.len() > TOP_DSTS {
            to.push_str(&format!(" (+{} more)", dsts.len() - TOP_DSTS));
        }
        // The local name of the uid; the name auditd resolved where it recorded, otherwise.
        let user = match who.and_then(|u| u32::try_from(u).ok()).and_then(|u| names.get(u)) {
            Some(name) => Cell::Text(name),
            None => row[5].clone(),
        };
        row[5] = user;
        row.push(Cell::Bytes(sent));
        row.push(if to.is_empty() { Cell::Null } else { Cell::Text(to) });
        row.push(Cell::Int(n));
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
        ],
        rows: out,
    })
}
