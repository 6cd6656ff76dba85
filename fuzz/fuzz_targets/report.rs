//! Report filters (`--since`, `--until`, `--uid`, `dns --top`) over every report, on a
//! database replayed once from the fixtures (egress, alerts, DNS, sensitive-file reads), each
//! table rendered in every format. Tables and CSV must stay terminal-safe.
//!
//! Input: lines `SINCE`, `UNTIL`, `UID` (an empty line: not given); `--top` is the input's
//! length modulo 32.
#![no_main]

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Local};
use exfilmon::cli::replay::{self, ReplayArgs};
use exfilmon::cli::Common;
use exfilmon::report::table::{Format, Table};
use exfilmon::principal::UserNames;
use exfilmon::report::{self, when, Filter};
use exfilmon::store::Store;
use libfuzzer_sys::fuzz_target;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps").join(name)
}

/// The database, replayed on first use: the NFLOG sample (volume and DNS), then the
/// sensitive-file recording with its audit log.
fn database() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("exfilmon-fuzz-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("fuzz.db");
    let replays = [
        (fixture("nflog-sample.pcap"), None, None),
        (
            fixture("sensitive/egress.pcap"),
            Some(fixture("sensitive/audit-raw.log")),
            Some(fixture("sensitive/exfilmon.toml")),
        ),
    ];
    for (capture, audit_log, config) in replays {
        let args = ReplayArgs {
            files: vec![capture],
            audit_log: audit_log.into_iter().collect(),
            force: false,
            common: Common { db: Some(db.clone()), config },
        };
        replay::run(&args).unwrap();
    }
    db
}

thread_local! {
    static STORE: Store = Store::open_read(&database()).unwrap();
}

/// Renders a table every way; the human ones must hold no byte a terminal acts on.
fn render(t: &Table) {
    for format in [Format::Table, Format::Csv, Format::Json] {
        let mut out = Vec::new();
        t.write(format, &mut out).unwrap();
        if format != Format::Json {
            assert!(out.iter().all(|&b| b == b'\n' || (0x20..0x7f).contains(&b)), "{format:?}: {out:?}");
        }
        std::io::sink().write_all(&out).unwrap();
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let mut field = || lines.next().filter(|s| !s.is_empty());
    let (since, until, uid) = (field(), field(), field());
    // The clock at the fixtures' time, so short ages reach their rows.
    let now = DateTime::from_timestamp(1_764_000_000, 0).unwrap().with_timezone(&Local);
    let bound = |s: Option<&str>| s.map(|s| when::parse(s, now)).transpose();
    let (Ok(since_us), Ok(until_us)) = (bound(since), bound(until)) else { return };
    let uid = match uid.map(str::parse::<u32>) {
        Some(Err(_)) => return,
        Some(Ok(uid)) => Some(uid),
        None => None,
    };
    let f = Filter { since_us, until_us, uid, ..Filter::default() };
    let mut names = UserNames::default();
    STORE.with(|local| {
        let store = &report::db::Db::Local { store: local, observer: "fuzz".into() };
        let s = report::summary(store, &f, &mut names).unwrap();
        std::hint::black_box(s.json());
        for t in [&s.totals, &s.top_users, &s.top_destinations] {
            render(t);
        }
        let mut t = report::ALERTS.table();
        report::alerts(store, &f, &mut names, &mut t).unwrap();
        render(&t);
        let mut t = report::USERS.table();
        report::users(store, &f, &mut names, None, &mut t).unwrap();
        render(&t);
        let mut t = report::DESTINATIONS.table();
        report::destinations(store, &f, None, &mut t).unwrap();
        render(&t);
        render(&report::health::health(local, &f).unwrap());
        render(&report::events::events(store, &f, Some(20)).unwrap());
        render(&report::events::events(store, &f, None).unwrap());
        let top = data.len() % 32;
        let mut t = Table { title: report::dns::title(top), columns: report::dns::COLUMNS.to_vec(), rows: Vec::new() };
        report::dns::dns(store, &f, &mut names, top, &mut t).unwrap();
        render(&t);
        let window = std::time::Duration::from_secs(600);
        render(&report::files::files(store, &f, &mut names, window).unwrap());
    });
});
