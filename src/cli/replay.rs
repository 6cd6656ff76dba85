//! `exfilmon replay`: capture files through the same pipeline as the live monitor.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use super::Common;
use crate::alert::Alert;
use crate::config::Config;
use crate::flows::EgressRow;
use crate::pipeline::{Output, Pipeline};
use crate::report::table::rfc3339;
use crate::source::pcap;
use crate::store::writer::{Write, Writer};
use crate::store::{CaptureRecord, Store};
use crate::units::human_bytes;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Capture files (pcap or pcapng), read in the order given.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Count a capture again even if this database has already seen it.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub common: Common,
}

impl Output for Writer {
    fn rows(&mut self, rows: Vec<EgressRow>) {
        self.send(Write::Rows(rows));
    }

    fn alert(&mut self, alert: &Alert) {
        self.send(Write::Alert(alert.clone()));
    }

    fn dns_rows(&mut self, rows: Vec<crate::detect::dns::DnsRow>) {
        self.send(Write::DnsRows(rows));
    }
}

/// A capture to replay, with its identity.
struct Capture {
    path: PathBuf,
    sha256: String,
    size: u64,
}

pub fn run(args: &ReplayArgs) -> Result<()> {
    let config = Config::load(args.common.config.as_deref())?;
    let db = args.common.db_path(&config);
    let store = Store::open(&db)?;

    let mut failures = Vec::new();
    let mut todo = Vec::new();
    for path in &args.files {
        match identify(path) {
            Ok(c) => match store.capture_seen(&c.sha256)? {
                Some((earlier, when)) if !args.force => eprintln!(
                    "exfilmon: skipping {}: already replayed into {} on {} (as {}); pass --force to count it again",
                    path.display(),
                    db.display(),
                    rfc3339(when),
                    crate::escape::printable(&earlier)
                ),
                _ if todo.iter().any(|t: &Capture| t.sha256 == c.sha256) => {
                    eprintln!("exfilmon: skipping {}: same content as an earlier file in this replay", path.display())
                }
                _ => todo.push(c),
            },
            Err(e) => failures.push(e),
        }
    }

    let started = Instant::now();
    // A run is recorded only when there is something to replay.
    let run_id = if todo.is_empty() { None } else { Some(store.begin_run("replay")?) };
    let total_bytes: u64 = todo.iter().map(|c| c.size).sum();
    let bar = ProgressBar::new(total_bytes).with_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut pipeline = Pipeline::new(&config, Writer::spawn(store, run_id));
    let mut done_bytes = 0;
    let mut replayed = Vec::new();
    for capture in &todo {
        bar.set_message(capture.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        let result = pcap::read_file(&capture.path, &mut pipeline, &mut |n| bar.set_position(done_bytes + n));
        done_bytes += capture.size;
        match result {
            Ok(stats) => replayed.push((capture, stats)),
            Err(e) => failures.push(anyhow::Error::new(e)),
        }
    }
    bar.finish_and_clear();

    let principals = pipeline.principals();
    let stats = pipeline.stats.clone();
    let store = pipeline.into_output().finish()?;
    if let Some(run_id) = run_id {
        for (c, s) in &replayed {
            let path = c.path.to_string_lossy();
            store.record_capture(
                &CaptureRecord { sha256: &c.sha256, path: &path, size: c.size, records: s.records, damaged: s.damaged },
                run_id,
            )?;
        }
        store.finish_run(run_id, &stats.totals())?;
    }

    let secs = started.elapsed().as_secs_f64();
    println!(
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
    );
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        n => {
            for e in &failures {
                eprintln!("exfilmon: {e:#}");
            }
            anyhow::bail!("{n} of {} capture files could not be read", args.files.len())
        }
    }
}

/// Hashes the file's content; opening it here also surfaces missing or unreadable files
/// before anything is written.
fn identify(path: &Path) -> Result<Capture> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot open {}", path.display()))?;
    if meta.is_dir() {
        anyhow::bail!("{} is a directory, not a capture file", path.display());
    }
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = file.read(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let sha256 = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Capture { path: path.to_owned(), sha256, size: meta.len() })
}
