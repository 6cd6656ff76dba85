//! Which program sent the egress (`programs`, `egress_programs`; migration 9), and bytes moved
//! between principals when the owner lookup answered after they were counted.

use std::fmt::Write as _;

use rusqlite::{params, Transaction};
use rustc_hash::FxHashMap;

use super::PrincipalIds;
use crate::rows::{Program, ProgramRow, Recredit};

/// A program's id, inserted on first use.
fn program_id(tx: &Transaction<'_>, cache: &mut FxHashMap<Program, i64>, p: &Program) -> rusqlite::Result<i64> {
    if let Some(&id) = cache.get(p) {
        return Ok(id);
    }
    let (exe, comm, uid, login_uid, unknown) = match p {
        Program::Found { exe, comm, uid, login_uid } => (Some(&**exe), Some(&**comm), Some(*uid), *login_uid, None),
        Program::Unknown(why) => (None, None, None, None, Some(*why)),
    };
    tx.prepare_cached(
        "INSERT INTO programs (exe, comm, uid, login_uid, unknown) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
    )?
    .execute(params![exe, comm, uid, login_uid, unknown])?;
    let id = tx
        .prepare_cached(
            "SELECT id FROM programs WHERE ifnull(exe, '') = ifnull(?1, '') AND ifnull(comm, '') = ifnull(?2, '')
               AND ifnull(uid, -1) = ifnull(?3, -1) AND ifnull(login_uid, -1) = ifnull(?4, -1)
               AND ifnull(unknown, '') = ifnull(?5, '')",
        )?
        .query_row(params![exe, comm, uid, login_uid, unknown], |r| r.get(0))?;
    cache.insert(p.clone(), id);
    Ok(id)
}

/// Program rows; rows of the same key and run add up.
pub(super) fn write_programs(
    tx: &Transaction<'_>,
    ids: &mut PrincipalIds<'_, '_>,
    rows: &[ProgramRow],
    run_id: i64,
) -> rusqlite::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut programs = FxHashMap::default();
    let mut addr = String::with_capacity(48);
    for row in rows {
        let (pid, program) = (ids.get(row.principal, None)?, program_id(tx, &mut programs, &row.program)?);
        addr.clear();
        let _ = write!(addr, "{}", row.dst.addr);
        tx.prepare_cached(
            "INSERT INTO egress_programs (minute, principal_id, proto, dst, dport, program_id, packets, bytes, run_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT DO UPDATE SET packets = packets + excluded.packets, bytes = bytes + excluded.bytes",
        )?
        .execute(params![
            row.minute_us,
            pid,
            row.dst.proto,
            addr,
            row.dst.port,
            program,
            row.packets as i64,
            row.bytes as i64,
            run_id
        ])?;
    }
    Ok(())
}

/// Takes each recredit's bytes off the earlier principal's egress rows (a row left with no
/// packets goes); the new principal's rows are written as ordinary rows (see
/// [`Recredit::rows`](crate::rows::Recredit)).
pub(super) fn take_recredited(
    tx: &Transaction<'_>,
    ids: &mut PrincipalIds<'_, '_>,
    moves: &[Recredit],
    run_id: i64,
) -> rusqlite::Result<()> {
    let mut addr = String::with_capacity(48);
    for m in moves {
        let from = ids.get(m.from, None)?;
        for row in &m.rows {
            addr.clear();
            let _ = write!(addr, "{}", row.dst.addr);
            let key = params![row.minute_us, from, row.dst.proto, addr, row.dst.port, run_id];
            tx.prepare_cached(
                "UPDATE egress SET packets = max(packets - ?7, 0), bytes = max(bytes - ?8, 0)
                 WHERE minute = ?1 AND principal_id = ?2 AND proto = ?3 AND dst = ?4 AND dport = ?5 AND run_id = ?6",
            )?
            .execute(params![
                row.minute_us,
                from,
                row.dst.proto,
                addr,
                row.dst.port,
                run_id,
                row.packets as i64,
                row.bytes as i64
            ])?;
            tx.prepare_cached(
                "DELETE FROM egress WHERE minute = ?1 AND principal_id = ?2 AND proto = ?3 AND dst = ?4 AND dport = ?5
                   AND run_id = ?6 AND packets = 0",
            )?
            .execute(key)?;
        }
    }
    Ok(())
}
