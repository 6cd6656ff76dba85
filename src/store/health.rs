//! Health rows and loss alerts of the live monitor (see [`crate::health`]).

use rusqlite::{params, TransactionBehavior};

use super::{Store, StoreError};
use crate::health::{Health, LossAlert};

impl Store {
    /// Replaces the run's heartbeat row and stores a loss alert, in one transaction; returns
    /// the alert's trail link.
    pub fn write_health(
        &mut self,
        h: &Health,
        loss: Option<&LossAlert>,
    ) -> Result<Option<crate::trail::Link>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| super::sql_err(&self.path, e))?;
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
        let mut link = None;
        if let Some(a) = loss {
            // About the monitor, not a principal: principal_id stays NULL.
            let row = super::trail::AlertRow {
                ts_us: a.ts_us,
                kind: a.kind.as_str(),
                severity: a.severity.as_str(),
                principal_id: None,
                uid: None,
                host: None,
                dst: None,
                bytes: 0,
                summary: &a.summary,
                details: a.details.to_string(),
                run_id: Some(h.run_id),
            };
            let mut at = super::trail::head(&tx).map_err(|e| super::sql_err(&self.path, e))?;
            super::trail::insert_alert(&tx, &mut at, &row).map_err(|e| super::sql_err(&self.path, e))?;
            link = Some(at);
        }
        tx.commit().map_err(|e| super::sql_err(&self.path, e))?;
        Ok(link)
    }
}
