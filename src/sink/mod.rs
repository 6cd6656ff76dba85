//! Delivery of alerts, monitor events and checkpoints to the configured sinks.
//!
//! The database writer hands each record to [`Dispatcher::push`] after the transaction that
//! stored it committed, so everything delivered is also in the trail. `push` never waits: each
//! sink has its own bounded queue and thread, so a slow or hanging sink delays only itself and
//! never the capture or the database. A failed delivery is retried with exponential back-off
//! (`backoff`, doubling, at most [`MAX_BACKOFF`]); a record still failing after `retries` is
//! dropped, and so is one arriving at a full queue, each counted per sink. A sink going from
//! working to failing, starting to drop, or working again becomes a monitor [`Event`] (one per
//! transition, so a dead sink cannot flood the trail); the monitor stores those, and at exit
//! what could not be delivered in time is counted in a `sink_undelivered` event.

pub mod config;
pub mod ecs;
mod exec;
mod jsonl;
mod record;
mod syslog;

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

pub use config::{RecordKind, SinkConfig, SinkKind};
pub use record::{alert_record, checkpoint_record, event_record, hostname, loss_record, Record};

use crate::alert::Severity;
use crate::trail::{Event, EventKind};

/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Delivers one record; the error says what failed, for the `sink_failed` event.
trait Deliver: Send {
    fn deliver(&mut self, r: &Record) -> Result<(), String>;
}

/// What a sink did in this process's life.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SinkStats {
    pub delivered: u64,
    /// Attempts after a failure.
    pub retries: u64,
    /// Dropped after `retries` failed attempts.
    pub failed: u64,
    /// Dropped on arrival: the queue was full.
    pub overflow: u64,
    /// Still queued (or being delivered) when the monitor stopped.
    pub abandoned: u64,
}

impl SinkStats {
    fn dropped(&self) -> u64 {
        self.failed + self.overflow
    }
}

struct State {
    items: VecDeque<Arc<Record>>,
    stats: SinkStats,
    /// Set by `close`: deliver what is queued until then, abandon the rest.
    deadline: Option<Instant>,
    in_flight: bool,
    done: bool,
    failing: bool,
    /// A `sink_dropping` event was raised since the sink last worked with an empty queue.
    drop_noticed: bool,
    next_heartbeat: Option<Instant>,
}

struct Queue {
    config: SinkConfig,
    heartbeat: Option<Duration>,
    state: Mutex<State>,
    changed: Condvar,
    notices: Arc<Mutex<Vec<Event>>>,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn accepts(&self, r: &Record) -> bool {
        match r.kind {
            RecordKind::Heartbeat => false,
            RecordKind::Checkpoint => self.config.records.contains(&r.kind),
            _ => self.config.records.contains(&r.kind) && r.severity >= self.config.min_severity,
        }
    }

    fn enqueue(&self, r: Arc<Record>) {
        let mut s = self.lock();
        if s.items.len() >= self.config.queue || s.deadline.is_some() {
            s.stats.overflow += 1;
            self.notice_drop(&mut s, "its queue is full");
            return;
        }
        s.items.push_back(r);
        self.changed.notify_all();
    }

    fn notice(&self, kind: EventKind, severity: Severity, summary: String, s: &State, extra: Value) {
        let mut details = json!({ "sink": self.config.name, "queued": s.items.len(), "stats": s.stats });
        if let (Some(d), Value::Object(extra)) = (details.as_object_mut(), extra) {
            d.extend(extra);
        }
        self.notices.lock().unwrap_or_else(PoisonError::into_inner).push(Event::now(kind, severity, summary, details));
    }

    fn notice_drop(&self, s: &mut State, why: &str) {
        if !s.drop_noticed {
            s.drop_noticed = true;
            let summary = format!(
                "sink {} is dropping records ({why}): {} dropped so far; they are in the database, see `exfilmon report alerts`",
                self.config.name,
                s.stats.dropped()
            );
            self.notice(EventKind::SinkDropping, Severity::High, summary, s, Value::Null);
        }
    }

    /// The sink's thread: one record at a time, retried with back-off.
    fn work(&self, sink: &mut dyn Deliver) {
        loop {
            let record = {
                let mut s = self.lock();
                loop {
                    if s.deadline.is_some_and(|d| Instant::now() >= d) {
                        s.stats.abandoned += s.items.len() as u64;
                        s.items.clear();
                    }
                    if let Some(r) = s.items.pop_front() {
                        s.in_flight = true;
                        break r;
                    }
                    if s.deadline.is_some() {
                        s.done = true;
                        self.changed.notify_all();
                        return;
                    }
                    s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
                }
            };
            self.deliver(sink, &record);
            self.lock().in_flight = false;
        }
    }

    fn deliver(&self, sink: &mut dyn Deliver, record: &Record) {
        let mut delay = self.config.backoff;
        let mut attempt = 0;
        loop {
            let result = sink.deliver(record);
            let mut s = self.lock();
            if s.done {
                // `close` gave up waiting and has counted this record already.
                return;
            }
            match result {
                Ok(()) => {
                    s.stats.delivered += 1;
                    if s.failing {
                        s.failing = false;
                        let summary = format!(
                            "sink {} delivers again; {} records dropped while it failed (all are in the database)",
                            self.config.name,
                            s.stats.dropped()
                        );
                        self.notice(EventKind::SinkRecovered, Severity::Medium, summary, &s, Value::Null);
                    }
                    if s.items.is_empty() {
                        s.drop_noticed = false;
                    }
                    return;
                }
                Err(e) => {
                    attempt += 1;
                    if !s.failing {
                        s.failing = true;
                        let summary = format!(
                            "sink {} failed: {}; retrying with back-off, capture goes on",
                            self.config.name,
                            crate::escape::printable(&e)
                        );
                        self.notice(EventKind::SinkFailed, Severity::High, summary, &s, json!({ "error": e }));
                    }
                    if attempt > self.config.retries {
                        s.stats.failed += 1;
                        self.notice_drop(&mut s, &format!("a record failed {attempt} times"));
                        return;
                    }
                    // Wait out the back-off, or until `close` says time is up.
                    let until = Instant::now() + delay;
                    loop {
                        let now = Instant::now();
                        if s.deadline.is_some_and(|d| now >= d) {
                            s.stats.abandoned += 1;
                            return;
                        }
                        if now >= until {
                            break;
                        }
                        let wake = s.deadline.map_or(until, |d| d.min(until));
                        s = self.changed.wait_timeout(s, wake - now).unwrap_or_else(PoisonError::into_inner).0;
                    }
                    s.stats.retries += 1;
                    delay = (delay * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// The sinks of one process.
pub struct Dispatcher {
    /// This host's name (`observer` in the config), stamped on every record.
    observer: String,
    queues: Vec<Arc<Queue>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    notices: Arc<Mutex<Vec<Event>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("sink {name}: {message}")]
pub struct SinkError {
    name: String,
    message: String,
}

impl Dispatcher {
    /// Opens every sink (a JSON Lines file must be writable now) and starts their threads;
    /// `None` without sinks. `observer` names this host in every record, syslog header and
    /// mail subject.
    pub fn start(configs: &[SinkConfig], observer: &str) -> Result<Option<Arc<Dispatcher>>, SinkError> {
        // The postgres sink reads the database, not a queue of records (src/ship).
        if configs.iter().all(|c| matches!(c.kind, SinkKind::Postgres { .. })) {
            return Ok(None);
        }
        let notices = Arc::new(Mutex::new(Vec::new()));
        let mut queues = Vec::new();
        let mut threads = Vec::new();
        for c in configs {
            let err = |message: String| SinkError { name: c.name.clone(), message };
            let (mut sink, heartbeat): (Box<dyn Deliver>, _) = match &c.kind {
                SinkKind::Jsonl { path, format } => (Box::new(jsonl::Jsonl::open(path, *format).map_err(err)?), None),
                SinkKind::Syslog { target, facility, app_name, heartbeat } => (
                    Box::new(syslog::Syslog::new(
                        target.clone(),
                        *facility,
                        app_name.clone(),
                        observer.into(),
                        c.timeout,
                    )),
                    *heartbeat,
                ),
                SinkKind::Exec { program, args } => {
                    (Box::new(exec::Exec::new(program.clone(), args.clone(), c.timeout)), None)
                }
                SinkKind::Email { sendmail, to, from } => (
                    Box::new(exec::Email::new(sendmail.clone(), to.clone(), from.clone(), observer.into(), c.timeout)),
                    None,
                ),
                SinkKind::Postgres { .. } => continue,
            };
            let queue = Arc::new(Queue {
                config: c.clone(),
                heartbeat,
                state: Mutex::new(State {
                    items: VecDeque::new(),
                    stats: SinkStats::default(),
                    deadline: None,
                    in_flight: false,
                    done: false,
                    failing: false,
                    drop_noticed: false,
                    next_heartbeat: None,
                }),
                changed: Condvar::new(),
                notices: Arc::clone(&notices),
            });
            let worker = Arc::clone(&queue);
            let thread = std::thread::Builder::new()
                .name("exfilmon-sink".into())
                .spawn(move || worker.work(sink.as_mut()))
                .map_err(|e| err(format!("cannot start its thread: {e}")))?;
            queues.push(queue);
            threads.push(thread);
        }
        Ok(Some(Arc::new(Dispatcher { observer: observer.into(), queues, threads: Mutex::new(threads), notices })))
    }

    /// `record` with this host's name in it, as every sink receives it.
    fn stamped(&self, mut record: Record) -> Arc<Record> {
        if let Value::Object(fields) = &mut record.json {
            fields.insert("observer".into(), Value::String(self.observer.clone()));
        }
        Arc::new(record)
    }

    /// Queues `record` for every sink that takes it; never waits.
    pub fn push(&self, record: Record) {
        let record = self.stamped(record);
        for q in self.queues.iter().filter(|q| q.accepts(&record)) {
            q.enqueue(Arc::clone(&record));
        }
    }

    /// Offers a heartbeat to the syslog sinks whose interval has passed. The status is built
    /// only when one is due.
    pub fn heartbeat(&self, status: impl FnOnce() -> Value) {
        let now = Instant::now();
        let due: Vec<&Arc<Queue>> = self
            .queues
            .iter()
            .filter(|q| {
                let Some(every) = q.heartbeat else {
                    return false;
                };
                let mut s = q.lock();
                let due = s.next_heartbeat.is_none_or(|t| now >= t);
                if due {
                    s.next_heartbeat = Some(now + every);
                }
                due
            })
            .collect();
        if due.is_empty() {
            return;
        }
        let record = self.stamped(record::heartbeat_record(status()));
        for q in due {
            q.enqueue(Arc::clone(&record));
        }
    }

    /// Events the sinks raised since the last call, for the trail.
    pub fn take_notices(&self) -> Vec<Event> {
        std::mem::take(&mut *self.notices.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Per-sink counters, for the health row.
    pub fn stats(&self) -> Value {
        let map = self.queues.iter().map(|q| {
            let s = q.lock();
            let mut v = json!(s.stats);
            v["queued"] = json!(s.items.len() + usize::from(s.in_flight));
            (q.config.name.clone(), v)
        });
        Value::Object(map.collect())
    }

    /// Delivers what is queued for up to `grace`, then gives up on the rest (counted); returns
    /// the events not yet taken, with a `sink_undelivered` one per sink that lost records.
    pub fn close(&self, grace: Duration) -> Vec<Event> {
        let deadline = Instant::now() + grace;
        for q in &self.queues {
            q.lock().deadline = Some(deadline);
            q.changed.notify_all();
        }
        // A delivery in progress ends within its timeout; wait that long past the deadline,
        // then leave a hung one behind (its record counts as abandoned).
        for q in &self.queues {
            let until = deadline + q.config.timeout + Duration::from_millis(100);
            let mut s = q.lock();
            while !s.done {
                let now = Instant::now();
                if now >= until {
                    s.stats.abandoned += (s.items.len() + usize::from(s.in_flight)) as u64;
                    s.items.clear();
                    s.in_flight = false;
                    s.done = true;
                    break;
                }
                s = q.changed.wait_timeout(s, until - now).unwrap_or_else(PoisonError::into_inner).0;
            }
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for t in threads.into_iter().filter(JoinHandle::is_finished) {
            let _ = t.join();
        }
        let mut events = self.take_notices();
        for q in &self.queues {
            let s = q.lock();
            let lost = s.stats.abandoned + s.stats.dropped();
            if lost > 0 {
                let summary = format!(
                    "sink {}: {lost} records not delivered in this run ({} still queued at exit, {} failed after retries, {} on a full queue); all are in the database",
                    q.config.name, s.stats.abandoned, s.stats.failed, s.stats.overflow
                );
                let details = json!({ "sink": q.config.name, "stats": s.stats });
                events.push(Event::now(EventKind::SinkUndelivered, Severity::High, summary, details));
            }
        }
        events
    }
}
