//! Reads of sensitive files (see `schema.sql`, table `file_reads`).

use crate::escape::printable_bytes;
use crate::source::audit::FileRead;
use rusqlite::{params, Transaction};

/// Stores reads under `run_id`; a read stored before by the same run is skipped.
pub(super) fn write_file_reads(tx: &Transaction<'_>, reads: &[FileRead], run_id: i64) -> rusqlite::Result<()> {
    if reads.is_empty() {
        return Ok(());
    }
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO file_reads (ts, serial, path, uid, auid, fsuid, user, pid, exe, comm, proctitle, size, run_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    for r in reads {
        insert.execute(params![
            r.ts_us,
            r.serial as i64,
            printable_bytes(&r.path),
            r.uid,
            r.auid,
            r.fsuid,
            r.user,
            r.pid,
            r.exe,
            r.comm,
            r.proctitle,
            r.size.map(|s| s as i64),
            run_id
        ])?;
    }
    Ok(())
}
