//! The writer thread: the packet path never waits on SQLite.
//!
//! The pipeline hands rows and alerts to a bounded queue; this thread drains whatever is
//! queued into one transaction at a time, so under load batches grow and commits stay few.
//! Alerts are never dropped: when the queue is full the sender waits (and the wait is
//! counted by the caller); losing packets to NFLOG overruns is measured, losing an alert is not
//! acceptable. Rows queued or being written are capped at [`MAX_QUEUED_ROWS`], so memory stays
//! bounded when the database cannot keep up (a million new destinations, say).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::alert::Alert;
use crate::health::HealthUpdate;
use crate::principal::UserNames;
use crate::rows::{DnsRow, EgressRow, IcmpRow, ProgramRow, Recredit};
use crate::sink::{self, Dispatcher};
use crate::store::{Batch, Run, Store, StoreError};
use crate::trail::sign::Signer;
use crate::trail::Event;

/// Queue capacity in messages; each message is a batch of rows or one alert.
const QUEUE: usize = 1024;
/// Messages merged into one transaction at most.
const MAX_MESSAGES_PER_TX: usize = 256;
/// Egress and DNS rows queued or in the transaction being written, at most: about 11 MB. At
/// the database's ~400 k rows/s that is a third of a second of a full-speed backlog. A batch
/// larger than this waits until the queue is empty.
const MAX_QUEUED_ROWS: usize = 1 << 17;

pub enum Write {
    Rows(Vec<EgressRow>),
    Alert(Alert),
    DnsRows(Vec<DnsRow>),
    IcmpRows(Vec<IcmpRow>),
    /// Egress split by program (live).
    Programs(Vec<ProgramRow>),
    /// Bytes moved to the principal the owner lookup found after they were counted.
    Recredits(Vec<Recredit>),
    /// A read of a sensitive file, stored before the alerts of its batch.
    FileRead(Box<crate::source::audit::FileRead>),
    /// Commit everything before this and answer.
    Sync(SyncSender<()>),
    /// The live monitor's heartbeat (and loss alert), stored after the batch it arrives in.
    Health(Box<HealthUpdate>),
    /// A monitor event for the trail.
    Event(Box<Event>),
    /// Sign a checkpoint of the trail after this batch (with a signing key).
    Checkpoint,
}

/// Where committed alerts, events and checkpoints go beyond the database.
#[derive(Default)]
pub struct Delivery {
    pub sinks: Option<Arc<Dispatcher>>,
    /// Signs a checkpoint on [`Write::Checkpoint`].
    pub signer: Option<Arc<Signer>>,
}

pub struct Writer {
    tx: Option<SyncSender<Write>>,
    thread: Option<JoinHandle<Result<Store, StoreError>>>,
    /// Times a send found the queue full and had to wait.
    pub waits: u64,
    /// Messages queued and not yet taken by the thread.
    depth: Arc<AtomicUsize>,
    budget: Arc<RowBudget>,
    /// Also hands each alert here as it is sent (containment, replay's would-be blocks).
    tap: Option<crossbeam_channel::Sender<Alert>>,
}

/// Rows sent and not yet committed, shared by the sender and the writer thread.
#[derive(Default)]
struct RowBudget {
    state: Mutex<BudgetState>,
    freed: Condvar,
}

#[derive(Default)]
struct BudgetState {
    rows: usize,
    /// The writer thread has ended: nobody will free rows any more.
    closed: bool,
}

impl RowBudget {
    /// Reserves `n` rows, waiting while that would pass the cap; true if it waited.
    fn reserve(&self, n: usize) -> bool {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut waited = false;
        while !s.closed && s.rows > 0 && s.rows + n > MAX_QUEUED_ROWS {
            waited = true;
            s = self.freed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        s.rows += n;
        waited
    }

    fn release(&self, n: usize) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.rows = s.rows.saturating_sub(n);
        self.freed.notify_all();
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
        self.freed.notify_all();
    }
}

/// Closes the budget when the writer thread ends, however it ends, so no sender waits forever.
struct CloseOnExit(Arc<RowBudget>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Write {
    fn rows(&self) -> usize {
        match self {
            Write::Rows(r) => r.len(),
            Write::DnsRows(r) => r.len(),
            Write::Programs(r) => r.len(),
            Write::IcmpRows(r) => r.len(),
            _ => 0,
        }
    }
}

impl Writer {
    /// Starts the thread writing `run`'s rows (none: rows of no run).
    pub fn spawn(store: Store, run: Option<Run>) -> Writer {
        Writer::spawn_delivering(store, run, Delivery::default())
    }

    /// [`Writer::spawn`], handing what it commits to sinks and signing checkpoints. A replay's
    /// alerts reach the sinks when it commits ([`Store::commit_run`]), not here.
    pub fn spawn_delivering(mut store: Store, run: Option<Run>, delivery: Delivery) -> Writer {
        let (tx, rx) = sync_channel(QUEUE);
        let depth = Arc::new(AtomicUsize::new(0));
        let taken = Arc::clone(&depth);
        let budget = Arc::new(RowBudget::default());
        let freed = CloseOnExit(Arc::clone(&budget));
        let thread = std::thread::Builder::new()
            .name("exfilmon-writer".into())
            .spawn(move || {
                drain(&mut store, &rx, run, &taken, &freed.0, &delivery)?;
                Ok(store)
            })
            .ok();
        if thread.is_none() {
            budget.close();
        }
        Writer { tx: Some(tx), thread, waits: 0, depth, budget, tap: None }
    }

    pub fn send(&mut self, msg: Write) {
        let Some(tx) = &self.tx else { return };
        let rows = msg.rows();
        if rows > 0 && self.budget.reserve(rows) {
            self.waits += 1;
        }
        self.depth.fetch_add(1, Ordering::Relaxed);
        match tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(msg)) => {
                self.waits += 1;
                let _ = tx.send(msg);
            }
            // The thread ended on an error; `finish` reports it.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Hands every alert sent from now on to `tap` too (never waiting: a full tap misses it).
    pub fn tap_alerts(&mut self, tap: crossbeam_channel::Sender<Alert>) {
        self.tap = Some(tap);
    }

    /// An alert to the database, and to the tap if there is one.
    pub fn alert(&mut self, alert: &Alert) {
        if let Some(tap) = &self.tap {
            if tap.try_send(alert.clone()).is_err() {
                tracing::warn!("alert not handed to [response] (its queue is full): {}", alert.summary);
            }
        }
        self.send(Write::Alert(alert.clone()));
    }

    /// True once the thread has ended, i.e. on a database error; `finish` returns it.
    pub fn failed(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Messages waiting for the database.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Waits until everything sent so far is committed.
    pub fn sync(&mut self) {
        let (ack_tx, ack_rx) = sync_channel(1);
        self.send(Write::Sync(ack_tx));
        let _ = ack_rx.recv();
    }

    /// Commits what is queued, stops the thread and returns the store.
    pub fn finish(mut self) -> Result<Store, StoreError> {
        self.tx = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            _ => Err(StoreError::Open {
                path: Default::default(),
                source: std::io::Error::other("database writer thread failed to start or panicked"),
            }),
        }
    }
}

fn drain(
    store: &mut Store,
    rx: &Receiver<Write>,
    run: Option<Run>,
    depth: &AtomicUsize,
    budget: &RowBudget,
    delivery: &Delivery,
) -> Result<(), StoreError> {
    let run_id = run.map(|r| r.id);
    let mut names = UserNames::default();
    let mut events = Vec::new();
    let mut checkpoint = false;
    let mut batch = Batch::default();
    let mut acks = Vec::new();
    let mut health = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        let mut n = 0;
        let mut taken_rows = 0;
        while let Some(msg) = next.take() {
            depth.fetch_sub(1, Ordering::Relaxed);
            taken_rows += msg.rows();
            match msg {
                Write::Rows(r) => batch.add_rows(r),
                Write::Alert(a) => batch.add_alert(a),
                Write::DnsRows(r) => batch.add_dns(r),
                Write::Programs(r) => batch.add_programs(r),
                Write::IcmpRows(r) => batch.add_icmp(r),
                Write::Recredits(m) => batch.add_recredits(m),
                Write::FileRead(r) => batch.add_read(*r),
                Write::Sync(ack) => acks.push(ack),
                Write::Health(h) => health.push(h),
                Write::Event(e) => events.push(*e),
                Write::Checkpoint => checkpoint = true,
            }
            n += 1;
            if n < MAX_MESSAGES_PER_TX {
                next = rx.try_recv().ok();
            }
        }
        let links = store.write_batch(&batch, run)?;
        // Delivered only once committed: whatever a sink received is in the trail.
        let sinks = delivery.sinks.as_deref();
        if let Some(d) = sinks {
            for (a, link) in batch.alerts.iter().zip(&links) {
                d.push(sink::alert_record(a, link, &mut names));
            }
        }
        batch.clear();
        budget.release(taken_rows);
        for h in health.drain(..) {
            if let Some(run) = run {
                store.digest_settled(run, h.health.updated_at_us)?;
            }
            let link = store.write_health(&h.health, h.loss.as_ref())?;
            if let (Some(d), Some(link), Some(loss)) = (sinks, link, &h.loss) {
                d.push(sink::loss_record(loss, &link));
            }
        }
        let links = store.append_events(&events, run_id)?;
        if let Some(d) = sinks {
            for (e, link) in events.iter().zip(&links) {
                d.push(sink::event_record(e, Some(link), run_id));
            }
        }
        events.clear();
        if std::mem::take(&mut checkpoint) {
            if let Some(signer) = &delivery.signer {
                let c = store.checkpoint(signer)?;
                if let Some(d) = sinks {
                    d.push(sink::checkpoint_record(&c));
                }
            }
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::{Dst, Principal};

    /// Issue 13, item 2: another process holding the write lock longer than SQLite's default
    /// busy timeout (5 s: a replay's big batch, an open sqlite3 shell) stopped the daemon's
    /// writer with "database is locked"; the writer waits its turn and loses nothing.
    #[test]
    fn writer_waits_for_a_lock_held_past_the_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        let mut store = Store::open(&db).unwrap();
        let run = store.begin_run(crate::store::RunMode::Live).unwrap();
        let other = rusqlite::Connection::open(&db).unwrap();
        other.execute_batch("BEGIN IMMEDIATE; INSERT INTO exfilmon_meta VALUES ('held', 'by a test')").unwrap();
        let mut writer = Writer::spawn(store, Some(run));
        let row = EgressRow {
            principal: Principal::Uid(1000),
            gid: None,
            dst: Dst { addr: [192, 0, 2, 1].into(), port: 443, proto: 6 },
            minute_us: 60_000_000,
            packets: 3,
            bytes: 300,
            first_us: 60_000_000,
            last_us: 60_000_001,
            direction: Default::default(),
            dst_name: None,
        };
        writer.send(Write::Rows(vec![row]));
        std::thread::sleep(std::time::Duration::from_secs(6));
        assert!(!writer.failed(), "the writer gave up while another process held the lock");
        other.execute_batch("ROLLBACK").unwrap();
        writer.sync();
        let store = writer.finish().unwrap();
        let packets: i64 = store.conn().query_row("SELECT sum(packets) FROM egress", [], |r| r.get(0)).unwrap();
        assert_eq!(packets, 3);
    }

    #[test]
    fn row_budget_waits_for_the_writer_and_never_after_it_ended() {
        let budget = Arc::new(RowBudget::default());
        assert!(!budget.reserve(MAX_QUEUED_ROWS));
        let writer = {
            let budget = Arc::clone(&budget);
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(50));
                budget.release(MAX_QUEUED_ROWS);
            })
        };
        assert!(budget.reserve(1), "a full budget waits");
        writer.join().unwrap();
        // One batch larger than the budget passes once nothing else is queued.
        budget.release(1);
        assert!(!budget.reserve(3 * MAX_QUEUED_ROWS));
        budget.close();
        assert!(!budget.reserve(1), "nobody frees rows after the thread ended: no wait");
    }
}
