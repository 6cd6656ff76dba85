//! What the live monitor and replay share around the pipeline: the database and its writer
//! thread, the run row, the checkpoint signer, the sinks, and the orderly shutdown.
//!
//! [`Session::open`] opens the database (replay looks up its captures there first), then
//! [`Opened::start`] records the run, starts the sinks and the writer, and builds the pipeline.
//! [`Session::finish`] stops in one order for both: final flush, the writer's last commit, the
//! run's commit (a replay's captures and alerts, the totals: `store::runs`), the alerts it
//! released to the sinks, a signed checkpoint, the sinks' delivery grace. What only the daemon
//! does (signals, privileges, reload, heartbeats) is in the `daemon` module, above this one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::alert::{Alert, Severity};
use crate::config::Config;
use crate::pipeline::{Output, Pipeline, Stats};
use crate::rows::{DnsRow, EgressRow, IcmpRow, ProgramRow, Recredit};
use crate::sink::{self, Dispatcher};
use crate::source::audit::follow::FollowStats;
use crate::source::audit::{FileRead, Reader};
use crate::store::writer::{Delivery, Write, Writer};
use crate::store::{CaptureRecord, Committed, Duplicate, Run, RunEnd, RunMode, Store, StoreError};
use crate::trail::sign::{KeyError, Signer};
use crate::trail::{Event, EventKind};

impl Output for Writer {
    fn rows(&mut self, rows: Vec<EgressRow>) {
        self.send(Write::Rows(rows));
    }

    fn alert(&mut self, alert: &Alert) {
        Writer::alert(self, alert);
    }

    fn dns_rows(&mut self, rows: Vec<DnsRow>) {
        self.send(Write::DnsRows(rows));
    }

    fn file_read(&mut self, read: &FileRead) {
        self.send(Write::FileRead(Box::new(read.clone())));
    }

    fn icmp_rows(&mut self, rows: Vec<IcmpRow>) {
        self.send(Write::IcmpRows(rows));
    }

    fn programs(&mut self, rows: Vec<ProgramRow>) {
        self.send(Write::Programs(rows));
    }

    fn recredits(&mut self, moves: Vec<Recredit>) {
        self.send(Write::Recredits(moves));
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
    run: Option<Run>,
    db: PathBuf,
    sinks: Option<Arc<Dispatcher>>,
    signer: Option<Arc<Signer>>,
    grace: Duration,
}

/// What a finished session did.
pub struct Finished {
    /// What the pipeline counted.
    pub stats: Stats,
    /// Captures found counted already when the replay committed (by another process meanwhile,
    /// or twice in this replay): the run was rolled back and nothing of it counts.
    pub duplicates: Vec<Duplicate>,
}

impl Session {
    /// Opens (creating and migrating) the database.
    pub fn open(db: &Path) -> Result<Opened, StoreError> {
        Ok(Opened { store: Store::open(db)? })
    }

    /// The run's row id; replay records none when it has nothing to replay.
    pub fn run_id(&self) -> Option<i64> {
        self.run.map(|r| r.id)
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

    /// Flushes the pipeline, lets the writer commit the rest, commits the run (for a replay:
    /// records `captures` unless one is counted already and `force` is off, and releases its
    /// alerts into the trail and to the sinks), signs a checkpoint, and gives the sinks
    /// `[monitor] delivery_grace` to deliver what is queued.
    pub fn finish(self, captures: &[CaptureRecord<'_>], force: bool) -> Result<Finished, StoreError> {
        let (mut store, stats, rest) = self.stop()?;
        let mut duplicates = Vec::new();
        if let Some(run) = rest.run {
            let committed = store.commit_run(run, &RunEnd { totals: &stats.totals(), captures, force });
            match committed {
                Ok(Committed::Done(alerts)) => {
                    if let Some(d) = &rest.sinks {
                        let mut names = crate::principal::UserNames::default();
                        for (a, link) in &alerts {
                            d.push(sink::alert_record(a, link, &mut names));
                        }
                    }
                }
                Ok(Committed::Duplicate(d)) => duplicates = d,
                Err(e) => return Err(rest.failed(e)),
            }
        }
        rest.close(store)?;
        Ok(Finished { stats, duplicates })
    }

    /// Rolls the run back instead of committing it (a replay stopped by a signal): nothing of
    /// it counts, and the trail says why.
    pub fn abandon(self, why: &str) -> Result<Stats, StoreError> {
        let (mut store, stats, rest) = self.stop()?;
        if let Some(run) = rest.run {
            if let Err(e) = store.abandon_run(run, why) {
                return Err(rest.failed(e));
            }
        }
        rest.close(store)?;
        Ok(stats)
    }

    /// Flushes the pipeline and stops the writer once it committed everything.
    fn stop(self) -> Result<(Store, Stats, Rest), StoreError> {
        let mut pipeline = self.pipeline;
        pipeline.flush();
        let stats = pipeline.stats.clone();
        let rest = Rest { run: self.run, db: self.db, sinks: self.sinks, signer: self.signer, grace: self.grace };
        match pipeline.into_output().finish() {
            Ok(store) => Ok((store, stats, rest)),
            Err(e) => Err(rest.failed(e)),
        }
    }
}

/// A session after its writer stopped.
struct Rest {
    run: Option<Run>,
    db: PathBuf,
    sinks: Option<Arc<Dispatcher>>,
    signer: Option<Arc<Signer>>,
    grace: Duration,
}

impl Rest {
    /// The database failed: the sinks hear of it, and an unfinished replay is rolled back at
    /// once if the database lets another connection do it (its lock went with the failed
    /// store), else by the next exfilmon that writes to it.
    fn failed(self, e: StoreError) -> StoreError {
        let run_id = self.run.map(|r| r.id);
        database_failed(self.sinks.as_deref(), self.grace, &e, run_id);
        if self.run.is_some() {
            let _ = Store::open(&self.db);
        }
        e
    }

    /// A signed checkpoint of the trail as the run left it, then the sinks' grace; the events
    /// they raised meanwhile go into the trail.
    fn close(self, mut store: Store) -> Result<(), StoreError> {
        if let Some(signer) = &self.signer {
            let c = store.checkpoint(signer)?;
            if let Some(d) = &self.sinks {
                d.push(sink::checkpoint_record(&c));
            }
        }
        if let Some(d) = &self.sinks {
            store.append_events(&close(d, self.grace), self.run.map(|r| r.id))?;
        }
        Ok(())
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
    pub fn start(
        mut self,
        config: &Config,
        mode: Option<RunMode>,
        signer: Option<Arc<Signer>>,
    ) -> anyhow::Result<Session> {
        let sinks = Dispatcher::start(&config.sink, &config.observer())?;
        let run = mode.map(|m| self.store.begin_run(m)).transpose()?;
        let delivery = Delivery { sinks: sinks.clone(), signer: signer.clone() };
        let db = self.store.path().to_owned();
        Ok(Session {
            pipeline: Pipeline::new(config, Writer::spawn_delivering(self.store, run, delivery)),
            run,
            db,
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
        let mut session = Session::open(&db).unwrap().start(&config, Some(RunMode::Replay), None).unwrap();
        let mut reader = config.sensitive.audit_reader(false);
        reader.line(b"garbage", &mut |_| {});
        let log = FollowStats { too_long: 1, rotations: 1, ..FollowStats::default() };
        session.count_audit(&reader, [&log, &log]);
        let run_id = session.run_id().unwrap();
        session.finish(&[], false).unwrap();
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
