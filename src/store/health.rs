//! Health rows and loss alerts of the live monitor (see [`crate::health`]).

use rusqlite::params;

use super::{Store, StoreError};
use crate::health::{Health, LossAlert};

impl Store {
    /// Replaces the run's heartbeat row and stores a loss alert, in one transaction.
    pub fn write_health(&mut self, h: &Health, loss: Option<&LossAlert>) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(|e| super::sql_err(&self.path, e))?;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO health (run_id, pid, nflog_group, rcvbuf, started_at, updated_at, stopped_at,
               received, lost, overruns, last_packet, queue_depth, queue_waits, counters)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )
        .and_then(|mut s| {
            s.execute(params![
                h.run_id,
                h.pid,
                h.group,
                h.rcvbuf as i64,
                h.started_at_us,
                h.updated_at_us,
                h.stopped_at_us,
                h.received as i64,
                h.lost as i64,
                h.overruns as i64,
                h.last_packet_us,
                h.queue_depth as i64,
                h.queue_waits as i64,
                h.counters.to_string()
            ])
        })
        .map_err(|e| super::sql_err(&self.path, e))?;
        if let Some(a) = loss {
            // About the monitor, not a principal: principal_id stays NULL.
            tx.prepare_cached(
                "INSERT INTO alerts (ts, kind, severity, dst, bytes, summary, details, run_id)
                 VALUES (?1, ?2, ?3, NULL, 0, ?4, ?5, ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    a.ts_us,
                    a.kind.as_str(),
                    a.severity.as_str(),
                    a.summary,
                    a.details.to_string(),
                    h.run_id
                ])
            })
            .map_err(|e| super::sql_err(&self.path, e))?;
        }
        tx.commit().map_err(|e| super::sql_err(&self.path, e))
    }
}
