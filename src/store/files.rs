//! Reads of sensitive files (see `schema.sql`, table `file_reads`).

use rusqlite::{params, TransactionBehavior};

use super::{sql_err, Store, StoreError};
use crate::escape::printable_bytes;
use crate::source::audit::FileRead;

impl Store {
    /// Stores reads in one transaction; a read stored before (same log replayed) is skipped.
    pub fn write_file_reads(&mut self, reads: &[FileRead]) -> Result<(), StoreError> {
        if reads.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let err = |e| sql_err(&path, e);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO file_reads (ts, serial, path, uid, auid, fsuid, user, pid, exe, comm, proctitle, size)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .map_err(err)?;
            for r in reads {
                insert
                    .execute(params![
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
                        r.size.map(|s| s as i64)
                    ])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }
}
