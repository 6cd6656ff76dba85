//! `exfilmon replay`: capture files through the same pipeline as the live monitor.

use std::fs::File;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use signal_hook::consts::{SIGINT, SIGTERM};

use super::Common;
use crate::config::Config;
use crate::escape::message;
use crate::pipeline::Merge;
use crate::respond;
use crate::session::{self, Session};
use crate::source::audit::follow::{FollowError, FollowStats, Follower};
use crate::source::audit::{AuditEvent, Reader};
use crate::source::pcap::{self, CaptureError, ReadStats};
use crate::source::FrameSink;
use crate::store::{CaptureRecord, Duplicate, RunMode, Store};
use crate::units::{human_bytes, rfc3339};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Capture files (pcap or pcapng), read in the order given.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// An auditd log (RAW or ENRICHED) recorded alongside the captures; may be repeated. Reads
    /// of [sensitive] files are tied to the packets that follow them, merged by time.
    #[arg(long = "audit-log", value_name = "FILE")]
    pub audit_log: Vec<PathBuf>,
    /// Count a capture again even if this database has already seen it.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub common: Common,
}

/// Bytes hashed at a time, small enough to still be in the CPU cache when they are parsed
/// (or read again): hashing 1 MB reads made the whole replay ~7% slower.
const HASH_CHUNK: usize = 1 << 16;

/// A capture to replay, with its identity.
struct Capture {
    path: PathBuf,
    size: u64,
    /// A regular file: it can be read twice (hashed first, or replayed again).
    seekable: bool,
    /// Hashed before the replay only when a capture of the same size makes a duplicate
    /// possible (and the file can be read twice); otherwise while it is replayed, so the file
    /// is read once.
    identity: Option<Identity>,
    /// Also hashed with SHA-256: the database knows captures it might equal by that alone.
    sha256: bool,
}

/// A capture's content identity as stored in `captures.digest`: `blake3:<hex>`; and
/// `sha256:<hex>` when it was also taken, to match captures replayed before schema version 11.
#[derive(Debug, Clone, PartialEq)]
struct Identity {
    blake3: String,
    sha256: Option<String>,
}

impl Identity {
    fn digests(&self) -> Vec<&str> {
        std::iter::once(self.blake3.as_str()).chain(self.sha256.as_deref()).collect()
    }
}

/// A capture's identity as it is read: known before, or taken from the bytes as they pass.
enum Hashing {
    Known(Identity),
    Taking(Box<Hashers>),
}

impl Hashing {
    fn identity(self) -> Identity {
        match self {
            Hashing::Known(identity) => identity,
            Hashing::Taking(hashers) => hashers.identity(),
        }
    }
}

/// The hashes a capture's bytes go through.
struct Hashers {
    blake3: blake3::Hasher,
    sha256: Option<Sha256>,
}

impl Hashers {
    fn new(sha256: bool) -> Hashers {
        Hashers { blake3: blake3::Hasher::new(), sha256: sha256.then(Sha256::new) }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.blake3.update(bytes);
        if let Some(h) = &mut self.sha256 {
            h.update(bytes);
        }
    }

    fn identity(self) -> Identity {
        Identity {
            blake3: format!("blake3:{}", self.blake3.finalize().to_hex()),
            sha256: self.sha256.map(|h| format!("sha256:{}", hex::encode(h.finalize()))),
        }
    }
}

/// A capture as replayed: what its reader saw, its content hash and the bytes read.
struct Replayed<'a> {
    capture: &'a Capture,
    stats: ReadStats,
    identity: Identity,
    bytes: u64,
}

/// Ships what the replay committed to the postgres sinks; an unreachable server leaves the
/// rows for the next `exfilmon ship` (a warning, not a failed replay).
fn ship_at_end(config: &Config, db: &std::path::Path) {
    if crate::ship::Target::all(config).is_empty() {
        return;
    }
    match Store::open(db) {
        Ok(store) => {
            for (_, result) in crate::ship::ship_all(config, &store) {
                if let Err(e) = result {
                    eprintln!("exfilmon: warning: {e}; the rows wait in the database for `exfilmon ship`");
                }
            }
        }
        Err(e) => eprintln!("exfilmon: warning: not shipped: {e}"),
    }
}

pub fn run(args: &ReplayArgs) -> Result<()> {
    let config = Config::load(args.common.config.as_deref())?;
    let db = args.common.db_path(&config);
    let stop = stop_on_signals()?;
    let opened = Session::open(&db)?;
    let store = opened.store();

    let mut failures = Vec::new();
    let mut found = Vec::new();
    for path in &args.files {
        match identify(path) {
            Ok(c) => found.push(c),
            Err(e) => failures.push(e),
        }
    }
    // Hashing first is a shortcut for files of a size seen before: a pipe (`<(...)`,
    // /dev/stdin) has no size and can be read only once, so it is hashed as it is replayed
    // and a duplicate is found when the replay commits (and rolled back).
    let sizes: Vec<u64> = found.iter().filter(|c| c.seekable).map(|c| c.size).collect();
    let mut todo: Vec<Capture> = Vec::new();
    for mut c in found {
        if !c.seekable {
            c.sha256 = !args.force && store.sha256_captures()?;
            todo.push(c);
            continue;
        }
        let twin = sizes.iter().filter(|&&s| s == c.size).count() > 1;
        let seen = if args.force { None } else { store.capture_size_seen(c.size)? };
        c.sha256 = seen == Some(true);
        if !twin && seen.is_none() {
            todo.push(c);
            continue;
        }
        let identity = match hash_file(&c.path, c.sha256) {
            Ok(h) => h,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        match store.capture_seen(&identity.digests())? {
            Some((earlier, when)) if !args.force => skipping(&c.path, &db, &earlier, when),
            _ if todo.iter().any(|t| t.identity.as_ref().is_some_and(|i| i.blake3 == identity.blake3)) => {
                eprintln!(
                    "exfilmon: skipping {}: same content as an earlier file in this replay",
                    message(&c.path.to_string_lossy())
                )
            }
            _ => {
                c.identity = Some(identity);
                todo.push(c);
            }
        }
    }

    let started = Instant::now();
    let mut audit = config.sensitive.audit_reader(false);
    let mut events = Vec::new();
    let mut logs = Vec::new();
    for path in &args.audit_log {
        logs.push(read_audit_log(&mut audit, path, &mut events)?);
    }
    // A replay commits as a unit. When it turns out, at its commit, that a capture was counted
    // meanwhile (another process replayed the same file), the whole run is rolled back: the
    // other captures are replayed again without it, if they can be read again.
    let mut opened = Some(opened);
    let (replayed, finished, principals) = loop {
        let opened = match opened.take() {
            Some(o) => o,
            None => Session::open(&db)?,
        };
        let mut session =
            opened.start(&config, (!todo.is_empty()).then_some(RunMode::Replay), session::signer(&config)?)?;
        // Nothing is blocked in a replay: the alerts are kept to say what would have been.
        let (tap, tapped) = crossbeam_channel::unbounded();
        if config.response.enabled() {
            session.pipeline.output().tap_alerts(tap);
        }
        let run_id = session.run_id();
        if !args.audit_log.is_empty() {
            session.pipeline.enable_audit(&config);
            session.count_audit(&audit, &logs);
        }
        let (replayed, errors) = replay_all(&todo, &mut session, events.clone(), &stop);
        failures.extend(errors);
        let principals = session.pipeline.principals();
        if stop.load(Ordering::Relaxed) {
            session.abandon("stopped by a signal")?;
            anyhow::bail!("interrupted: the replay was rolled back, nothing of it counts");
        }
        let paths: Vec<_> = replayed.iter().map(|r| r.capture.path.to_string_lossy()).collect();
        let records: Vec<CaptureRecord> = replayed
            .iter()
            .zip(&paths)
            .map(|(r, path)| CaptureRecord {
                digest: &r.identity.blake3,
                sha256: r.identity.sha256.as_deref(),
                path,
                size: r.bytes,
                records: r.stats.records,
                damaged: r.stats.damaged,
            })
            .collect();
        let finished = session.finish(&records, args.force)?;
        if finished.duplicates.is_empty() {
            would_block(&config, &db, run_id, tapped.try_iter().collect())?;
            break (replayed, Some(finished), principals);
        }
        let mut again = Vec::new();
        for (i, r) in replayed.iter().enumerate() {
            let path = &r.capture.path;
            match finished.duplicates.iter().find(|d| d.index == i) {
                Some(Duplicate { earlier: Some((earlier, when)), .. }) => skipping(path, &db, earlier, *when),
                Some(Duplicate { earlier: None, .. }) => eprintln!(
                    "exfilmon: skipping {}: same content as an earlier file in this replay",
                    message(&path.to_string_lossy())
                ),
                None => again.push(path.clone()),
            }
        }
        if let Some(c) = todo.iter().find(|c| again.contains(&c.path) && !c.seekable) {
            anyhow::bail!(
                "{} was read from a pipe and cannot be read again: nothing of this replay counts; replay the other \
                 files again",
                message(&c.path.to_string_lossy())
            );
        }
        todo.retain(|c| again.contains(&c.path));
        if todo.is_empty() {
            break (Vec::new(), None, 0);
        }
        eprintln!("exfilmon: replaying the other {} file(s) again without it", todo.len());
    };
    let stats = finished.map(|f| f.stats).unwrap_or_default();
    ship_at_end(&config, &db);

    // A damaged capture still counts what came before the damage, but the replay fails, as
    // tshark does: its owner should know part of it was never seen.
    for r in &replayed {
        if let Some(damage) = r.stats.damage {
            let kept = match r.stats.records {
                0 => "nothing before it".to_string(),
                n => format!("the {n} records before it were replayed"),
            };
            failures.push(anyhow::anyhow!("{}: {damage}; {kept}", r.capture.path.display()));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    // Unreadable captures decide the exit status before output nobody could take does.
    let mut out = super::stdout();
    let printed = writeln!(
        out,
        "replayed {} of {} file(s): {} packets, {}, {} principals, {} alerts, {} malformed skipped, {} ignored, {:.2} s, {:.0} packets/s",
        replayed.len(),
        args.files.len(),
        stats.packets,
        human_bytes(stats.bytes),
        principals,
        stats.alerts,
        stats.malformed(),
        stats.ignored(),
        secs,
        stats.packets as f64 / secs.max(1e-9)
    )
    .and_then(|()| out.flush());
    match failures.len() {
        0 => Ok(printed?),
        1 => Err(failures.remove(0)),
        n => {
            for e in &failures {
                eprintln!("exfilmon: {}", message(&format!("{e:#}")));
            }
            anyhow::bail!("{n} of {} capture files could not be read in full", args.files.len())
        }
    }
}

/// `[response]`: what the replay's alerts would have blocked and which DNS queries dropped, and
/// when, as report lines and `would_block` events in the trail.
fn would_block(config: &Config, db: &Path, run_id: Option<i64>, alerts: Vec<crate::alert::Alert>) -> Result<()> {
    let group = crate::principal::login_group;
    let blocks = respond::would_block(&config.response, &alerts, group);
    let mut events: Vec<_> = blocks.iter().map(|b| respond::blocked_event(b, true)).collect();
    events.extend(respond::would_hold(&config.response, &alerts, config.dns.window, group));
    if events.is_empty() {
        return Ok(());
    }
    Store::open(db)?.append_events(&events, run_id)?;
    let mut out = super::stdout();
    for e in &events {
        writeln!(out, "{}", e.summary)?;
    }
    Ok(())
}

/// Says a capture is not replayed because `db` counted its content already.
fn skipping(path: &Path, db: &Path, earlier: &str, when: i64) {
    eprintln!(
        "exfilmon: skipping {}: already replayed into {} on {} (as {}); pass --force to count it again",
        message(&path.to_string_lossy()),
        message(&db.to_string_lossy()),
        rfc3339(when),
        crate::escape::printable(earlier)
    );
}

/// SIGINT and SIGTERM stop the replay, which is then rolled back; a second one ends the
/// process at once (the run is then rolled back by the next exfilmon writing the database).
fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT] {
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&stop)))
            .context("cannot install signal handlers")?;
    }
    Ok(stop)
}

/// Replays every capture in one session, with a progress bar on a terminal. Returns each
/// replayed capture with what its reader saw, its content hash and the bytes read, and the
/// captures that could not be read.
fn replay_all<'a>(
    todo: &'a [Capture],
    session: &mut Session,
    events: Vec<AuditEvent>,
    stop: &AtomicBool,
) -> (Vec<Replayed<'a>>, Vec<anyhow::Error>) {
    let total_bytes: u64 = todo.iter().map(|c| c.size).sum();
    let bar = ProgressBar::new(total_bytes).with_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut merged = Merge::new(&mut session.pipeline, events);
    let mut done_bytes = 0;
    let mut replayed = Vec::new();
    let mut failures = Vec::new();
    for capture in todo {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // A file name is anyone's choice: escaped like the messages that quote it.
        let name = capture.path.file_name().map(|n| message(&n.to_string_lossy()).into_owned());
        bar.set_message(name.unwrap_or_default());
        let result = replay(capture, &mut merged, &mut |n| bar.set_position(done_bytes + n), stop);
        done_bytes += capture.size;
        match result {
            Ok((stats, identity, bytes)) => replayed.push(Replayed { capture, stats, identity, bytes }),
            Err(e) => failures.push(anyhow::Error::new(e)),
        }
    }
    bar.finish_and_clear();
    merged.finish();
    (replayed, failures)
}

/// Opens the file to surface missing or unreadable files before anything is written.
fn identify(path: &Path) -> Result<Capture> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot open {}", path.display()))?;
    if meta.is_dir() {
        anyhow::bail!("{} is a directory, not a capture file", path.display());
    }
    File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Capture { path: path.to_owned(), size: meta.len(), seekable: meta.is_file(), identity: None, sha256: false })
}

/// Every event of a saved audit log, in file order, and what its follower counted.
fn read_audit_log(reader: &mut Reader, path: &Path, events: &mut Vec<AuditEvent>) -> Result<FollowStats, FollowError> {
    let mut log = Follower::open(path)?;
    let mut out = |line: &[u8]| reader.line(line, &mut |ev| events.push(ev));
    while log.poll(&mut out).map_err(|source| FollowError { path: path.to_owned(), source })? > 0 {}
    reader.finish(&mut |ev| events.push(ev));
    Ok(log.stats)
}

fn hash_file(path: &Path, sha256: bool) -> Result<Identity> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut input = Input::new(file, Hashing::Taking(Box::new(Hashers::new(sha256))), None);
    std::io::copy(&mut input, &mut std::io::sink()).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(input.hashing.identity())
}

/// Replays one capture; returns what the reader saw, the content hash (computed on the way
/// through unless the capture was hashed before) and the bytes read. Reading stops with an
/// error once `stop` is set.
fn replay(
    c: &Capture,
    sink: &mut dyn FrameSink,
    progress: &mut dyn FnMut(u64),
    stop: &AtomicBool,
) -> Result<(ReadStats, Identity, u64), CaptureError> {
    let file = File::open(&c.path).map_err(|source| CaptureError::Open { path: c.path.clone(), source })?;
    let hashing = match &c.identity {
        Some(known) => Hashing::Known(known.clone()),
        None => Hashing::Taking(Box::new(Hashers::new(c.sha256))),
    };
    let mut input = Input::new(file, hashing, Some(stop));
    let stats = pcap::read(&c.path, &mut input, sink, progress)?;
    // Reading stops at a damaged record; the identity still covers the whole file.
    std::io::copy(&mut input, &mut std::io::sink())
        .map_err(|e| CaptureError::Read { path: c.path.clone(), message: e.to_string() })?;
    let bytes = input.bytes;
    Ok((stats, input.hashing.identity(), bytes))
}

/// A capture as it is read: hashed [`HASH_CHUNK`] bytes at a time when asked, bytes counted
/// (a pipe has no size before), and cut short by a signal.
struct Input<'a, R> {
    inner: R,
    hashing: Hashing,
    bytes: u64,
    stop: Option<&'a AtomicBool>,
}

impl<'a, R: Read> Input<'a, R> {
    fn new(inner: R, hashing: Hashing, stop: Option<&'a AtomicBool>) -> Self {
        Input { inner, hashing, bytes: 0, stop }
    }
}

impl<R: Read> Read for Input<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            return Err(std::io::Error::other("stopped by a signal"));
        }
        let n = buf.len().min(HASH_CHUNK);
        let n = self.inner.read(&mut buf[..n])?;
        if let Hashing::Taking(h) = &mut self.hashing {
            h.update(&buf[..n]);
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Frame;

    struct Count(u64);

    impl FrameSink for Count {
        fn frame(&mut self, _: Frame<'_>) {
            self.0 += 1;
        }
        fn damaged_record(&mut self) {}
    }

    /// The hash taken while replaying equals the one taken before, also when reading stops
    /// early at a damaged record: otherwise a second replay would not be recognised.
    #[test]
    fn hash_on_the_way_through_covers_the_whole_file() {
        for name in ["ipv4.pcap", "truncated-tail.pcap", "sample.pcapng"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps").join(name);
            let size = std::fs::metadata(&path).unwrap().len();
            let (mut once, mut twice) = (Count(0), Count(0));
            let stop = AtomicBool::new(false);
            let c = Capture { path: path.clone(), size, seekable: true, identity: None, sha256: true };
            let (_, streamed, bytes) = replay(&c, &mut once, &mut |_| {}, &stop).unwrap();
            assert_eq!(bytes, size, "{name}");
            let before = hash_file(&path, true).unwrap();
            assert_eq!(streamed, before, "{name}");
            let c = Capture { identity: Some(before.clone()), ..c };
            assert_eq!(replay(&c, &mut twice, &mut |_| {}, &stop).unwrap().1, before, "{name}");
            assert_eq!(once.0, twice.0, "{name}");
        }
    }

    #[test]
    fn hash_covers_bytes_after_an_early_damaged_record() {
        let mut data = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 101, 0, 0, 0];
        // A record claiming 4 GB, then far more bytes than one read takes.
        data.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0xff, 0xff, 0xff, 0xf0, 0xff, 0xff, 0xff]);
        data.extend((0..4 * HASH_CHUNK).map(|i| i as u8));
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &data).unwrap();
        let c = Capture {
            path: file.path().to_owned(),
            size: data.len() as u64,
            seekable: true,
            identity: None,
            sha256: false,
        };
        let (stats, streamed, _) = replay(&c, &mut Count(0), &mut |_| {}, &AtomicBool::new(false)).unwrap();
        assert_eq!(stats.damaged, 1);
        assert_eq!(streamed, hash_file(file.path(), false).unwrap());
    }
}
