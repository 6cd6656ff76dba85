//! The writer thread: the packet path never waits on SQLite.
//!
//! The pipeline hands rows and alerts to a bounded queue; this thread drains whatever is
//! queued into one transaction at a time, so under load batches grow and commits stay few.
//! Alerts are never dropped: when the queue is full the sender waits (and the wait is
//! counted by the caller); losing packets to NFLOG overruns is measured, losing an alert is not
//! acceptable.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::alert::Alert;
use crate::detect::dns::DnsRow;
use crate::flows::EgressRow;
use crate::health::HealthUpdate;
use crate::store::{Store, StoreError};

/// Queue capacity in messages; each message is a batch of rows or one alert.
const QUEUE: usize = 1024;
/// Messages merged into one transaction at most.
const MAX_MESSAGES_PER_TX: usize = 256;

pub enum Write {
    Rows(Vec<EgressRow>),
    Alert(Alert),
    DnsRows(Vec<DnsRow>),
    /// Commit everything before this and answer.
    Sync(SyncSender<()>),
    /// The live monitor's heartbeat (and loss alert), stored after the batch it arrives in.
    Health(Box<HealthUpdate>),
}

pub struct Writer {
    tx: Option<SyncSender<Write>>,
    thread: Option<JoinHandle<Result<Store, StoreError>>>,
    /// Times a send found the queue full and had to wait.
    pub waits: u64,
    /// Messages queued and not yet taken by the thread.
    depth: Arc<AtomicUsize>,
}

impl Writer {
    pub fn spawn(mut store: Store, run_id: Option<i64>) -> Writer {
        let (tx, rx) = sync_channel(QUEUE);
        let depth = Arc::new(AtomicUsize::new(0));
        let taken = Arc::clone(&depth);
        let thread = std::thread::Builder::new()
            .name("exfilmon-writer".into())
            .spawn(move || {
                drain(&mut store, &rx, run_id, &taken)?;
                Ok(store)
            })
            .ok();
        Writer { tx: Some(tx), thread, waits: 0, depth }
    }

    pub fn send(&mut self, msg: Write) {
        let Some(tx) = &self.tx else { return };
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

fn drain(store: &mut Store, rx: &Receiver<Write>, run_id: Option<i64>, depth: &AtomicUsize) -> Result<(), StoreError> {
    let mut rows = Vec::new();
    let mut alerts = Vec::new();
    let mut acks = Vec::new();
    let mut health = Vec::new();
    let mut dns = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        let mut n = 0;
        while let Some(msg) = next.take() {
            depth.fetch_sub(1, Ordering::Relaxed);
            match msg {
                Write::Rows(mut r) => rows.append(&mut r),
                Write::Alert(a) => alerts.push(a),
                Write::DnsRows(mut r) => dns.append(&mut r),
                Write::Sync(ack) => acks.push(ack),
                Write::Health(h) => health.push(h),
            }
            n += 1;
            if n < MAX_MESSAGES_PER_TX {
                next = rx.try_recv().ok();
            }
        }
        // DNS rows before alerts, so a dns_tunnel alert never refers to rows not yet stored.
        store.write_dns(&dns)?;
        dns.clear();
        store.write(&rows, &alerts, run_id)?;
        rows.clear();
        alerts.clear();
        for h in health.drain(..) {
            store.write_health(&h.health, h.loss.as_ref())?;
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
    Ok(())
}
