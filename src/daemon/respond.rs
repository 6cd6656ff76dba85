//! The live monitor's containment (`[response]`): the I/O around [`crate::respond`].
//!
//! Alerts reach a thread of its own (`exfilmon-respond`) as the pipeline raises them; it asks
//! the policy what they call for, runs `nft` to set blocks (milliseconds the packet loop never
//! waits for), opens DNS holds for the verdict thread, and notices blocks whose time has
//! passed. What it did comes back as trail events, which the daemon's loop hands to the writer
//! like every other event (so sinks get them too). The NFQUEUE verdict thread
//! ([`crate::respond::dnsq`]) reads only the holds table.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde_json::{json, Value};

use crate::alert::{Alert, Severity};
use crate::config::Config;
use crate::nft;
use crate::principal::Principal;
use crate::respond::dnsq::{self, QueueStats};
use crate::respond::{blocked_event, lifted_event, Block, Holds, Policy, ResponseConfig};
use crate::store::writer::{Write, Writer};
use crate::store::Store;
use crate::trail::{Event, EventKind};
use crate::units::wall_clock_us;

/// Alerts waiting for the respond thread; past this they are not acted on (and logged).
const QUEUED_ALERTS: usize = 1024;
/// How often the trail is read for blocks set elsewhere (`exfilmon block`), so that their
/// expiry is recorded too.
const LOOK_FOR_BLOCKS: Duration = Duration::from_secs(5);

pub struct Responder {
    alerts: Sender<Alert>,
    events: Receiver<Event>,
    dns: Option<Arc<QueueStats>>,
}

impl Responder {
    /// Starts the respond thread and, with `dns_queue`, binds the queue and starts the verdict
    /// thread: before privileges are dropped (binding needs CAP_NET_ADMIN). `None` without a
    /// `[response]` that does anything.
    pub fn start(config: &Config, db: &Path) -> anyhow::Result<Option<Responder>> {
        let response = &config.response;
        if !response.enabled() {
            return Ok(None);
        }
        if config.user.is_some() && !response.block.is_empty() {
            tracing::warn!(
                "[response] block runs nft, which needs CAP_NET_ADMIN: with `user` set, blocks will fail \
                 (block_failed events); run as root to contain"
            );
        }
        let holds = Arc::new(Mutex::new(Holds::default()));
        let dns = if response.dns_queue {
            let queue = dnsq::open().map_err(|e| {
                anyhow::anyhow!(
                    "[response] dns_queue: cannot bind NFQUEUE {} ({e}); needs root, and no other program on that queue",
                    dnsq::QUEUE
                )
            })?;
            let stats = Arc::new(QueueStats::default());
            let (h, s) = (Arc::clone(&holds), Arc::clone(&stats));
            std::thread::Builder::new().name("exfilmon-dnsq".into()).spawn(move || dnsq::serve(queue, h, s))?;
            Some(stats)
        } else {
            None
        };
        let (alerts_tx, alerts_rx) = crossbeam_channel::bounded(QUEUED_ALERTS);
        let (events_tx, events_rx) = crossbeam_channel::unbounded();
        let state = State {
            config: response.clone(),
            dns_window: config.dns.window,
            db: db.to_owned(),
            holds,
            pending: Vec::new(),
            events: events_tx,
        };
        std::thread::Builder::new().name("exfilmon-respond".into()).spawn(move || state.run(alerts_rx))?;
        Ok(Some(Responder { alerts: alerts_tx, events: events_rx, dns }))
    }

    /// Where the pipeline's alerts go (the writer's tap).
    pub fn alerts(&self) -> Sender<Alert> {
        self.alerts.clone()
    }

    /// What the respond thread did since the last call, into the trail.
    pub fn drain(&self, writer: &mut Writer) {
        for e in self.events.try_iter() {
            tracing::warn!("{}", e.summary);
            writer.send(Write::Event(Box::new(e)));
        }
    }

    /// The verdict thread's counters for the heartbeat.
    pub fn stats(&self) -> Value {
        json!({ "dns_queue": self.dns.as_ref().map(|s| s.json()) })
    }
}

struct State {
    config: ResponseConfig,
    dns_window: Duration,
    db: PathBuf,
    holds: Arc<Mutex<Holds>>,
    /// Blocks set by this or an earlier run that have not ended: each gets its expiry event.
    pending: Vec<(Principal, i64)>,
    events: Sender<Event>,
}

impl State {
    fn run(mut self, alerts: Receiver<Alert>) {
        let mut next_look = std::time::Instant::now();
        loop {
            // Blocks an earlier run or `exfilmon block` set end while this one runs too.
            if std::time::Instant::now() >= next_look {
                next_look = std::time::Instant::now() + LOOK_FOR_BLOCKS;
                self.adopt();
            }
            match alerts.recv_timeout(Duration::from_millis(500)) {
                Ok(alert) => self.alert(&alert),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.expire(wall_clock_us());
        }
    }

    /// Takes on the blocks the trail says are in force that this thread did not set.
    fn adopt(&mut self) {
        let Ok(store) = Store::open_read(&self.db) else { return };
        let Ok(active) = store.active_blocks(wall_clock_us()) else { return };
        for b in &active {
            if let Some(who) = principal_of(b) {
                if !self.pending.contains(&(who, b.until_us)) {
                    self.pending.retain(|(p, _)| *p != who);
                    self.pending.push((who, b.until_us));
                }
            }
        }
    }

    fn alert(&mut self, alert: &Alert) {
        let policy = Policy { config: &self.config };
        let who = alert.principal;
        let exempt = self.config.exempt(who, who.uid().and_then(crate::principal::login_group));
        if exempt {
            if policy.block(alert).is_some() || policy.hold(alert, self.dns_window).is_some() {
                tracing::info!("{who} is exempt from [response]: not blocked");
            }
            return;
        }
        if let Some((who, domain, until)) = policy.hold(alert, self.dns_window) {
            self.holds.lock().unwrap_or_else(PoisonError::into_inner).hold(who, domain, until, alert.ts_us);
        }
        if let Some(block) = policy.block(alert) {
            self.block(&block);
        }
    }

    fn block(&mut self, b: &Block) {
        let left = Duration::from_micros(b.until_us.saturating_sub(wall_clock_us()).max(1_000_000) as u64);
        let event = match nft::block(b.principal, left) {
            Ok(()) => {
                self.pending.retain(|(p, _)| *p != b.principal);
                self.pending.push((b.principal, b.until_us));
                blocked_event(b, false)
            }
            Err(e) => Event::now(
                EventKind::BlockFailed,
                Severity::High,
                format!("cannot block {}: {e}", b.principal),
                json!({ "principal": b.principal.to_string(), "error": e.to_string(), "reason": b.reason }),
            ),
        };
        let _ = self.events.send(event);
    }

    /// Expiry events for blocks whose time passed, unless the trail says they were lifted or
    /// replaced meanwhile (by `exfilmon unblock` or `block`, from another process).
    fn expire(&mut self, now: i64) {
        if !self.pending.iter().any(|(_, until)| *until <= now) {
            return;
        }
        let store = Store::open_read(&self.db).ok();
        let events = &self.events;
        self.pending.retain(|&(who, until)| {
            if until > now {
                return true;
            }
            let current = store
                .as_ref()
                .and_then(|s| s.active_blocks(until - 1).ok())
                .is_none_or(|active| active.iter().any(|b| b.principal == who.to_string() && b.until_us == until));
            if current {
                let _ = events.send(lifted_event(who, until, true));
            }
            false
        });
    }
}

fn principal_of(b: &crate::store::ActiveBlock) -> Option<Principal> {
    match (b.uid, &b.host) {
        (Some(uid), _) => u32::try_from(uid).ok().map(Principal::Uid),
        (None, Some(h)) => h.parse().ok().map(Principal::Host),
        (None, None) => None,
    }
}
