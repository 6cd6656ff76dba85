//! The live monitor (`exfilmon run`): what only the daemon does around its [`Session`].
//!
//! One reader thread receives NFLOG batches and runs the pipeline on them (decoding and
//! aggregating are cheap); the session's writer thread commits rows, alerts and heartbeats to
//! SQLite in batches behind a bounded queue, so the reader never waits on the database. Every
//! second the open aggregates are handed to the writer with a heartbeat, so a SIGKILL loses at
//! most that second; SIGTERM and SIGINT flush everything and exit 0, SIGHUP reloads the
//! configuration. Privileges are dropped ([`privilege`]) once the group is bound and the
//! root-only files are open; [`watch`] is the monitor watching itself. Once a day a thread of
//! its own prunes what is past its `[retention]` ([`prune`]).

pub mod privilege;
pub mod respond;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::alert::Severity;
use crate::config::Config;
use crate::detect::Past;
use crate::health::{Health, HealthUpdate, LossAlarm};
use crate::nft::{self, NftError};
use crate::pipeline::Pipeline;
use crate::principal::Principal;
use crate::session::{self, Session};
use crate::source::audit::follow::Follower;
use crate::source::audit::{AuditEvent, Reader};
use crate::source::nflog::{NflogSource, Poll};
use crate::source::owner::Owners;
use crate::store::writer::{Write, Writer};
use crate::store::RunMode;
use crate::store::Store;
use crate::trail::sign::Signer;
use crate::trail::{Event, EventKind};
use crate::units::wall_clock_us;
use watch::SelfWatch;

/// Aggregates and the heartbeat go to the writer this often: what a SIGKILL can lose.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// At most one `monitor_loss` alert per period while loss goes on.
const LOSS_ALERT_PERIOD: Duration = Duration::from_secs(60);
/// The first prune a minute after the start, then one a day (see [`prune`]).
const FIRST_PRUNE: Duration = Duration::from_secs(60);
const PRUNE_EVERY: Duration = Duration::from_secs(86_400);

/// What `exfilmon run` was asked for.
pub struct Options {
    pub config: Config,
    /// Read again on SIGHUP; built-in defaults without one.
    pub config_path: Option<PathBuf>,
    pub db: PathBuf,
    /// auditd's log, followed through rotation.
    pub audit_log: Option<PathBuf>,
}

/// Monitors until TERM or INT (then `Ok`) or a capture or database error.
pub fn run(opts: Options) -> Result<()> {
    let Options { mut config, config_path, db, audit_log } = opts;
    let signals = Signals::register()?;

    let mut source = NflogSource::open(&config.nflog)?;
    match nft::loaded() {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            "table {} is not loaded: nothing will be logged to group {} until `exfilmon nft --apply`",
            nft::TABLE,
            config.nflog.group
        ),
        Err(NftError::NotInstalled) => {
            tracing::warn!("nft is not installed: cannot check that the ruleset is loaded (apt-get install nftables)")
        }
        Err(e) => tracing::warn!("cannot check the ruleset: {e}"),
    }
    // Opened before dropping privileges: the log is readable by root (and auditd's log_group).
    let mut audit = match &audit_log {
        Some(path) => Some((Follower::open(path)?, config.sensitive.audit_reader(true))),
        None => None,
    };
    // The signing key is readable by root only: loaded before dropping privileges.
    let signer = session::signer(&config)?;
    // Started while privileged: other users' /proc/PID/fd are readable by root only.
    let owners = match config.owner.enabled.then(|| Owners::start(&config.owner)).transpose() {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!("owner lookups off: {e}; flows count for their socket's uid");
            None
        }
    };
    // Binds the DNS queue (`[response] dns_queue`): needs the privileges about to go.
    let responder = respond::Responder::start(&config, &db)?;
    let privileged = match &config.user {
        Some(name) => {
            privilege::become_user(name, &db)?;
            false
        }
        None => true,
    };
    let opened = Session::open(&db).context("database not writable (fix its permissions or pass --db)")?;
    let prune_signer = signer.clone();
    let mut session = opened.start(&config, Some(RunMode::Live), signer)?;
    if let Some(owners) = owners {
        session.pipeline.set_lookups(Box::new(owners));
    }
    resume(&mut session, &config, &db);
    if let Some(r) = &responder {
        session.pipeline.output().tap_alerts(r.alerts());
    }
    let run_id = session.run_id().context("the run was not recorded")?;
    let started_us = wall_clock_us();
    eprintln!(
        "exfilmon: monitoring NFLOG group {} into {} (receive buffer {})",
        source.group(),
        db.display(),
        crate::units::human_bytes(source.rcvbuf())
    );

    let shipping = crate::ship::Continuous::start(&db, &config);
    let mut watch = SelfWatch::start(&config, session.sinks(), session.signer().is_some());
    let started = started_event(&config, &db, &source, session.signer());
    session.pipeline.output().send(Write::Event(Box::new(started)));
    if audit.is_some() {
        session.pipeline.enable_audit(&config);
    }
    let mut alarm = LossAlarm::new(LOSS_ALERT_PERIOD);
    let mut next_beat = Instant::now() + HEARTBEAT;
    let mut next_prune = Instant::now() + FIRST_PRUNE;
    let mut pruning: Option<std::thread::JoinHandle<()>> = None;
    let mut failure = None;
    while !signals.term.load(Ordering::Relaxed) {
        session.pipeline.poll_owners();
        match source.poll(&mut session.pipeline) {
            Ok(Poll::Overrun) => tracing::debug!("receive buffer overrun: the kernel dropped a batch"),
            Ok(Poll::Records(_) | Poll::Idle) => {}
            Err(e) => {
                failure = Some(anyhow::Error::new(e));
                break;
            }
        }
        if let Some((follower, reader)) = &mut audit {
            follow_audit(follower, reader, &mut session, started_us);
        }
        if let Some(r) = &responder {
            r.drain(session.pipeline.output());
        }
        if signals.hup.swap(false, Ordering::Relaxed) {
            session = reload(session, &mut config, config_path.as_deref(), &mut source, privileged);
            watch.reloaded(&config);
            if let Some((_, reader)) = &mut audit {
                session.pipeline.enable_audit(&config);
                *reader = config.sensitive.audit_reader(true);
            }
        }
        if Instant::now() >= next_prune && pruning.as_ref().is_none_or(|t| t.is_finished()) {
            next_prune = Instant::now() + PRUNE_EVERY;
            pruning = prune(&db, &config, prune_signer.clone());
        }
        if Instant::now() >= next_beat {
            next_beat = Instant::now() + HEARTBEAT;
            let watched = watched(&watch, responder.as_ref());
            heartbeat(&mut session.pipeline, &source, &mut alarm, run_id, started_us, None, watched);
            let (alerts, s) = (session.pipeline.stats.alerts, &source.stats);
            watch.tick(session.pipeline.output(), || {
                json!({ "run": run_id, "pid": std::process::id(), "started": crate::units::rfc3339(started_us),
                        "packets": s.records, "lost": s.lost, "alerts": alerts })
            });
            if session.pipeline.output().failed() {
                break;
            }
        }
    }

    let stopped = wall_clock_us();
    let why = failure.as_ref().map_or_else(|| "on a signal".to_string(), |e| format!("on an error: {e}"));
    let (s, alerts) = (&source.stats, session.pipeline.stats.alerts);
    session.pipeline.output().send(Write::Event(Box::new(Event::now(
        EventKind::Stopped,
        if failure.is_some() { Severity::High } else { Severity::Low },
        format!("exfilmon stopped {why}: {} packets received, {} lost, {alerts} alerts", s.records, s.lost),
        json!({ "packets": s.records, "lost": s.lost, "alerts": alerts }),
    ))));
    let watched = watched(&watch, responder.as_ref());
    heartbeat(&mut session.pipeline, &source, &mut alarm, run_id, started_us, Some(stopped), watched);
    let stats = session.finish(&[], false)?.stats;
    if let Some(s) = shipping {
        s.finish();
    }
    let s = &source.stats;
    eprintln!(
        "exfilmon: stopped after {}: {} packets received, {} lost in {} overruns, {} alerts",
        crate::units::human_duration(Duration::from_micros((stopped - started_us).max(0) as u64)),
        s.records,
        s.lost,
        s.overruns,
        stats.alerts
    );
    failure.map_or(Ok(()), Err)
}

/// Prunes the database on a thread of its own, with a connection of its own: it deletes in
/// chunks of a transaction each, so the writer waits one chunk at most and capture goes on.
/// A failure (a trail broken in the part to prune, say) is logged and becomes an event.
fn prune(db: &Path, config: &Config, signer: Option<Arc<Signer>>) -> Option<std::thread::JoinHandle<()>> {
    let (db, retention) = (db.to_owned(), config.retention.clone());
    let work = move || {
        let mut store = match crate::store::Store::open(&db) {
            Ok(s) => s,
            Err(e) => return tracing::warn!("daily prune: {e}"),
        };
        match store.prune(&retention, wall_clock_us(), signer.as_deref()) {
            Ok(p) => tracing::info!("daily prune: {}", p.summary()),
            Err(e) => {
                tracing::warn!("daily prune failed: {e}");
                let event = Event::now(
                    EventKind::PruneFailed,
                    Severity::High,
                    format!("the daily prune failed: {e}"),
                    json!({ "error": e.to_string() }),
                );
                if let Err(e) = store.append_events(&[event], None) {
                    tracing::warn!("daily prune: {e}");
                }
            }
        }
    };
    std::thread::Builder::new().name("exfilmon-prune".into()).spawn(work).ok()
}

struct Signals {
    term: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
}

impl Signals {
    fn register() -> Result<Signals> {
        let term = Arc::new(AtomicBool::new(false));
        let hup = Arc::new(AtomicBool::new(false));
        for sig in [SIGTERM, SIGINT] {
            // A second TERM/INT while flushing exits at once.
            signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&term))
                .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&term)))
                .context("cannot install signal handlers")?;
        }
        signal_hook::flag::register(SIGHUP, Arc::clone(&hup)).context("cannot install signal handlers")?;
        Ok(Signals { term, hup })
    }
}

/// Feeds the audit records appended since the last call. The log is read from its start, so
/// reads made shortly before a restart still open their windows; other records from before
/// this run (NETFILTER_PKT, auditd stopping) are history and are not judged again.
fn follow_audit(follower: &mut Follower, reader: &mut Reader, session: &mut Session, started_us: i64) {
    let pipeline = &mut session.pipeline;
    let fed = follower.poll(&mut |line| {
        reader.line(line, &mut |ev| {
            if matches!(ev, AuditEvent::Read(_)) || ev.ts_us() >= started_us {
                pipeline.audit(ev);
            }
        })
    });
    if let Err(e) = fed {
        tracing::warn!("reading audit log {}: {e}", follower.path().display());
    }
    pipeline.advance(wall_clock_us());
    session.count_audit(reader, [&follower.stats]);
}

/// The heartbeat's counters from the threads beside the pipeline: the sinks', `[response]`'s.
fn watched(watch: &SelfWatch, responder: Option<&respond::Responder>) -> serde_json::Value {
    json!({ "sinks": watch.sink_stats(), "response": responder.map(respond::Responder::stats) })
}

/// Hands the open aggregates and a heartbeat (with a loss alert when due) to the writer.
fn heartbeat(
    pipeline: &mut Pipeline<Writer>,
    source: &NflogSource,
    alarm: &mut LossAlarm,
    run_id: i64,
    started_us: i64,
    stopped_us: Option<i64>,
    watched: serde_json::Value,
) {
    pipeline.flush();
    let now = stopped_us.unwrap_or_else(wall_clock_us);
    let s = &source.stats;
    let rcvbuf = source.rcvbuf();
    let loss = alarm.check(now, s.lost, s.overruns, rcvbuf, stopped_us.is_some());
    if let Some(a) = &loss {
        tracing::warn!("{}", a.summary);
    }
    let totals = pipeline.stats.totals();
    let writer = pipeline.output();
    let health = Health {
        run_id,
        pid: std::process::id(),
        group: source.group(),
        rcvbuf,
        started_at_us: started_us,
        updated_at_us: now,
        stopped_at_us: stopped_us,
        received: s.records,
        lost: s.lost,
        overruns: s.overruns,
        last_packet_us: s.last_record_us,
        queue_depth: writer.depth() as u64,
        queue_waits: writer.waits,
        counters: json!({
            "packets": totals.packets,
            "bytes": totals.bytes,
            "alerts": totals.alerts,
            "malformed": totals.malformed,
            "ignored": totals.ignored,
            "skipped": totals.counters,
            "unsequenced": s.unsequenced,
            "seq_resets": s.seq_resets,
            "bad_netlink_messages": s.bad_messages,
            "sinks": watched["sinks"],
            "response": watched["response"],
        }),
    };
    writer.send(Write::Health(Box::new(HealthUpdate { health, loss })));
}

/// SIGHUP: re-reads the configuration. Detectors whose settings did not change keep their
/// windows and episodes, the others restart; the socket's batching and buffer are updated; a
/// bad file keeps the running configuration.
fn reload(
    mut session: Session,
    config: &mut Config,
    path: Option<&Path>,
    source: &mut NflogSource,
    privileged: bool,
) -> Session {
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("reload failed, keeping the running configuration: {e}");
            session.pipeline.output().send(Write::Event(Box::new(Event::now(
                EventKind::ReloadFailed,
                Severity::Medium,
                format!("reload failed, the running configuration stays: {e}"),
                json!({ "error": e.to_string() }),
            ))));
            return session;
        }
    };
    if new.nflog.group != config.nflog.group {
        tracing::warn!("[nflog] group changed: restart exfilmon to bind group {}", new.nflog.group);
    }
    if new.db != config.db {
        tracing::warn!("db changed: restart exfilmon to write to the new database");
    }
    if new.nflog != config.nflog {
        if privileged {
            if let Err(e) = source.reconfigure(&new.nflog) {
                tracing::warn!("{e}");
            }
        } else {
            tracing::warn!("[nflog] settings changed: restart exfilmon (it runs unprivileged now)");
        }
    }
    session.pipeline.reconfigure(&new);
    let restart: Vec<&str> = [
        ("sink", new.sink != config.sink),
        // The sinks stamp the observer they were started with.
        ("observer", new.observer != config.observer),
        ("trail", new.trail != config.trail),
        ("monitor", new.monitor != config.monitor),
        ("response", new.response != config.response),
    ]
    .into_iter()
    .filter_map(|(section, changed)| changed.then_some(section))
    .collect();
    if !restart.is_empty() {
        tracing::warn!("{} changed: restart exfilmon to apply", restart.join(", "));
    }
    session.pipeline.output().send(Write::Event(Box::new(Event::now(
        EventKind::Reloaded,
        Severity::Low,
        "configuration reloaded".into(),
        json!({ "path": path.map(|p| p.display().to_string()), "restart_needed_for": restart }),
    ))));
    *config = new;
    eprintln!("exfilmon: configuration reloaded");
    session
}

/// Picks the detectors' windows up from what earlier runs stored, so a transfer split by a
/// restart counts whole and an episode that alerted before does not alert again.
fn resume(session: &mut Session, config: &Config, db: &Path) {
    let now = wall_clock_us();
    let ago = |d: std::time::Duration| now.saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let volume = config.volume.iter().map(|r| r.window).max().unwrap_or_default();
    let longest = volume.max(config.dns.window).max(config.icmp.window);
    let learn_since = now.saturating_sub(i64::from(config.baseline.days) * 86_400_000_000);
    let mut rows = 0u64;
    let pipeline = &mut session.pipeline;
    let read = Store::open_read(db).and_then(|past| {
        if config.baseline.enabled {
            past.each_uid_hour_since(learn_since, |uid, hour, bytes| {
                pipeline.history(Principal::Uid(uid), hour, bytes)
            })?;
        }
        past.each_egress_since(ago(volume), |row| {
            rows += 1;
            pipeline.resume(Past::Egress(&row));
        })?;
        past.each_dns_since(ago(config.dns.window), |row| pipeline.resume(Past::Dns(&row)))?;
        past.each_icmp_since(ago(config.icmp.window), |row| pipeline.resume(Past::Icmp(&row)))?;
        past.each_alert_since(ago(longest), |alert| pipeline.resume(Past::Alert(&alert)))
    });
    match read {
        Ok(()) => tracing::info!("resumed the windows from {rows} stored egress rows"),
        Err(e) => tracing::warn!("windows start empty: cannot read earlier egress: {e}"),
    }
}

/// The trail's first word from a run: what is monitored, where alerts go, who signs.
fn started_event(config: &Config, db: &Path, source: &NflogSource, signer: Option<&Signer>) -> Event {
    let sinks: Vec<&str> = config.sink.iter().map(|s| s.name.as_str()).collect();
    Event::now(
        EventKind::Started,
        Severity::Low,
        format!(
            "exfilmon {} started: NFLOG group {} into {}, {} sink(s), checkpoints {}",
            env!("CARGO_PKG_VERSION"),
            source.group(),
            db.display(),
            sinks.len(),
            signer.map_or_else(|| "not signed".to_string(), |s| format!("signed by key {}", s.key_id()))
        ),
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "nflog_group": source.group(),
            "rcvbuf": source.rcvbuf(),
            "db": db.display().to_string(),
            "sinks": sinks,
            "key_id": signer.map(Signer::key_id),
        }),
    )
}
