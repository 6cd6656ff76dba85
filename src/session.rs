//! What the live monitor and replay share around the pipeline: the database and its writer
//! thread, the run row, the checkpoint signer, the sinks, and the orderly shutdown.
//!
//! [`Session::open`] opens the database (replay looks up its captures there first), then
//! [`Opened::start`] records the run, starts the sinks and the writer, and builds the pipeline.
//! [`Session::finish`] stops in one order for both: final flush, the writer's last commit and
//! checkpoint, the sinks' delivery grace, then the run's totals. What only the daemon does
//! (signals, privileges, reload, heartbeats) is in the `daemon` module, above this one.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::alert::{Alert, Severity};
use crate::config::Config;
use crate::pipeline::{Output, Pipeline, Stats};
use crate::rows::{DnsRow, EgressRow};
use crate::sink::{self, Dispatcher};
use crate::source::audit::follow::FollowStats;
use crate::source::audit::{FileRead, Reader};
use crate::store::writer::{Delivery, Write, Writer};
use crate::store::{CaptureRecord, Store, StoreError};
use crate::trail::sign::{KeyError, Signer};
use crate::trail::{Event, EventKind};

impl Output for Writer {
    fn rows(&mut self, rows: Vec<EgressRow>) {
        self.send(Write::Rows(rows));
    }

    fn alert(&mut self, alert: &Alert) {
        self.send(Write::Alert(alert.clone()));
    }

    fn dns_rows(&mut self, rows: Vec<DnsRow>) {
        self.send(Write::DnsRows(rows));
    }

    fn file_read(&mut self, read: &FileRead) {
        self.send(Write::FileRead(Box::new(read.clone())));
    }
}

/// The `[trail] signing_key`, loaded. The key is readable by root only, so the daemon loads it
/// before dropping privileges and opening the database.
pub fn signer(config: &Config) -> Result<Option<Arc<Signer>>, KeyError> {
    config.trail.signing_key.as_deref().map(Signer::load).transpose().map(|s| s.map(Arc::new))
}

/// A database opened for a session that has not started yet.
pub struct Opened {
    store: Store,
}

pub struct Session {
    /// Frames and audit events go in here; its output is the database writer.
    pub pipeline: Pipeline<Writer>,
    run_id: Option<i64>,
    sinks: Option<Arc<Dispatcher>>,
    signer: Option<Arc<Signer>>,
    grace: Duration,
}

impl Session {
    /// Opens (creating and migrating) the database.
    pub fn open(db: &Path) -> Result<Opened, StoreError> {
        Ok(Opened { store: Store::open(db)? })
    }

    /// The run's row id; replay records none when it has nothing to replay.
    pub fn run_id(&self) -> Option<i64> {
        self.run_id
    }

    /// The sinks, for the daemon's heartbeat lines and their events.
    pub fn sinks(&self) -> Option<Arc<Dispatcher>> {
        self.sinks.clone()
    }

    pub fn signer(&self) -> Option<&Signer> {
        self.signer.as_deref()
    }

    /// The audit logs' counters into the run totals: the reader's (lines read, lines and events
    /// not used by reason) and those of the follower of each log. Live and replay both count
    /// here, so their runs keep the same counters.
    pub fn count_audit<'a>(&mut self, reader: &Reader, logs: impl IntoIterator<Item = &'a FollowStats>) {
        let mut counters = reader.counters();
        for log in logs {
            let mut one = BTreeMap::new();
            log.add_to(&mut one);
            for (k, v) in one {
                *counters.entry(k).or_default() += v;
            }
        }
        self.pipeline.stats.audit_skipped = counters;
    }

    /// Flushes the pipeline, lets the writer commit the rest (and sign a last checkpoint), gives
    /// the sinks `[monitor] delivery_grace` to deliver what is queued, then records `captures`
    /// and the totals in the run's row. Returns what the pipeline counted.
    pub fn finish(self, captures: &[CaptureRecord<'_>]) -> Result<Stats, StoreError> {
        let mut pipeline = self.pipeline;
        pipeline.flush();
        let stats = pipeline.stats.clone();
        let mut store = match pipeline.into_output().finish() {
            Ok(store) => store,
            Err(e) => {
                database_failed(self.sinks.as_deref(), self.grace, &e, self.run_id);
                return Err(e);
            }
        };
        if let Some(d) = &self.sinks {
            store.append_events(&close(d, self.grace), self.run_id)?;
        }
        if let Some(run_id) = self.run_id {
            for c in captures {
                store.record_capture(c, run_id)?;
            }
            store.finish_run(run_id, &stats.totals())?;
        }
        Ok(stats)
    }
}

impl Opened {
    /// The database before anything is written for this session.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Records a run of `mode` (none without a mode), starts the sinks and the writer thread,
    /// and builds the pipeline for `config`. The writer signs checkpoints with `signer` (see
    /// [`signer`]).
    pub fn start(self, config: &Config, mode: Option<&str>, signer: Option<Arc<Signer>>) -> anyhow::Result<Session> {
        let run_id = mode.map(|m| self.store.begin_run(m)).transpose()?;
        let sinks = Dispatcher::start(&config.sink)?;
        let delivery = Delivery { sinks: sinks.clone(), signer: signer.clone() };
        Ok(Session {
            pipeline: Pipeline::new(config, Writer::spawn_delivering(self.store, run_id, delivery)),
            run_id,
            sinks,
            signer,
            grace: config.monitor.delivery_grace,
        })
    }
}

/// The database failed: the event cannot be stored, but it can still leave the machine.
fn database_failed(sinks: Option<&Dispatcher>, grace: Duration, error: &StoreError, run_id: Option<i64>) {
    let Some(d) = sinks else { return };
    let e = Event::now(
        EventKind::DatabaseError,
        Severity::High,
        format!("exfilmon stopped on a database error: {error}"),
        json!({ "error": error.to_string() }),
    );
    d.push(sink::event_record(&e, None, run_id));
    close(d, grace);
}

/// Gives the sinks `grace` to deliver what is queued. The events they raised since the last
/// look can no longer be delivered: they are printed, and returned for the trail.
fn close(sinks: &Dispatcher, grace: Duration) -> Vec<Event> {
    let left = sinks.close(grace);
    for e in &left {
        eprintln!("exfilmon: {}", e.summary);
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replay reads several logs, live follows one: every follower's counters add up with the
    /// reader's in the run's row.
    #[test]
    fn audit_counters_of_every_log_reach_the_run_totals() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let config = Config::default();
        let mut session = Session::open(&db).unwrap().start(&config, Some("replay"), None).unwrap();
        let mut reader = config.sensitive.audit_reader(false);
        reader.line(b"garbage", &mut |_| {});
        let log = FollowStats { too_long: 1, rotations: 1, ..FollowStats::default() };
        session.count_audit(&reader, [&log, &log]);
        let run_id = session.run_id().unwrap();
        session.finish(&[]).unwrap();
        let store = Store::open_read(&db).unwrap();
        let counters: String =
            store.conn().query_row("SELECT counters FROM runs WHERE id = ?1", [run_id], |r| r.get(0)).unwrap();
        let counters: serde_json::Value = serde_json::from_str(&counters).unwrap();
        assert_eq!(counters["audit_lines"], 1, "{counters}");
        assert_eq!(counters["audit_no_type"], 1, "{counters}");
        assert_eq!(counters["audit_line_too_long"], 2, "{counters}");
        assert_eq!(counters["audit_log_rotations"], 2, "{counters}");
        assert_eq!(counters["audit_log_truncations"], 0, "{counters}");
    }
}
