//! Scaffolding shared by the integration tests: the built binary, the files in pcaps/, a
//! temporary directory holding a database, `report --format json`, legacy pcap files, and the
//! one rule for a test that cannot run here ([`skip`]). [`lab`] is the two-namespace lab of the
//! tests on the real kernel; [`pg`] a real PostgreSQL server.
//!
//! Every file in tests/ is a crate of its own that declares `mod common;` and uses a part of
//! this; in each the rest is dead code, which is not worth a warning.
#![allow(dead_code)]

pub mod lab;
pub mod pg;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The binary Cargo built for these tests.
pub const EXFILMON: &str = env!("CARGO_BIN_EXE_exfilmon");

/// `exfilmon`, for the caller's arguments.
pub fn bin() -> Command {
    Command::new(EXFILMON)
}

/// Runs `exfilmon <args>`; checking the status is the caller's business.
pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

/// Runs `exfilmon <args>` and panics with its stderr when it fails.
pub fn run_ok(args: &[&str]) -> Output {
    let o = run(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    o
}

/// Asserts `o` succeeded, showing its standard error otherwise.
pub fn ok(what: &str, o: &Output) {
    assert!(o.status.success(), "{what}: {}", String::from_utf8_lossy(&o.stderr));
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A file of the repository, e.g. `dist/exfilmon.service`.
pub fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A file under pcaps/: a capture fixture (`raw.pcap`), or one in its subdirectories
/// (`covert/iodine.pcap`, `sensitive/audit.log`).
pub fn fixture(name: &str) -> PathBuf {
    repo_file("pcaps").join(name)
}

/// A temporary directory for one test's files, removed when dropped.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch { dir: tempfile::tempdir().unwrap() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `name` in the directory (not created).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `exfilmon.db` in the directory; exfilmon creates it.
    pub fn db(&self) -> String {
        self.path("exfilmon.db").to_string_lossy().into_owned()
    }
}

/// A fresh database path in a temporary directory of its own, which lives as long as the
/// returned [`Scratch`].
pub fn temp_db() -> (Scratch, String) {
    let scratch = Scratch::new();
    let db = scratch.db();
    (scratch, db)
}

/// `exfilmon report <what> --format json` on `db`, which must succeed.
pub fn report(db: impl AsRef<Path>, what: &str) -> Value {
    report_with(db, what, &[])
}

/// [`report`] with further arguments.
pub fn report_with(db: impl AsRef<Path>, what: &str, extra: &[&str]) -> Value {
    let out = bin().args(["report", what, "--format", "json", "--db"]).arg(db.as_ref()).args(extra).output().unwrap();
    assert!(out.status.success(), "report {what}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The alerts of one kind in `report alerts`.
pub fn alerts_of(db: impl AsRef<Path>, kind: &str) -> Vec<Value> {
    report(db, "alerts").as_array().unwrap().iter().filter(|a| a["kind"] == kind).cloned().collect()
}

/// The header of a little-endian legacy pcap (version 2.4, snaplen 256 KiB).
pub fn pcap_header(linktype: u32) -> Vec<u8> {
    [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 262_144, linktype].iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// One record of such a pcap: its time and `data`, captured whole.
pub fn pcap_record(sec: u32, usec: u32, data: &[u8]) -> Vec<u8> {
    let mut b: Vec<u8> =
        [sec, usec, data.len() as u32, data.len() as u32].iter().flat_map(|v| v.to_le_bytes()).collect();
    b.extend_from_slice(data);
    b
}

/// A legacy pcap of `records`, one a second from 2023-11-14T22:13:20Z.
pub fn pcap(linktype: u32, records: &[&[u8]]) -> Vec<u8> {
    let mut b = pcap_header(linktype);
    for (i, r) in records.iter().enumerate() {
        b.extend(pcap_record(1_700_000_000 + i as u32, 0, r));
    }
    b
}

/// A raw IPv4 UDP header (28 bytes, no payload) from `src` to `dst`:`dport` whose length
/// field claims `wire_len` bytes: exfilmon counts the IP length, not what was captured.
pub fn udp_v4(src: [u8; 4], dst: [u8; 4], dport: u16, wire_len: u16) -> Vec<u8> {
    let mut p = vec![0x45, 0, (wire_len >> 8) as u8, wire_len as u8, 0, 0, 0, 0, 64, 17, 0, 0];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&40_000u16.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&(wire_len - 20).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p
}

/// A raw IP capture of `minutes` minutes from 2023-11-14T22:13:20Z, `per_minute` packets in
/// each from 10.0.0.1 to 192.0.2.1-4:9, each claiming 60,000 bytes: rows reach the database
/// minute by minute while it is replayed, and the default `[[volume]]` rule (4 MiB in 10 min)
/// alerts in its first minutes. Returns the capture and its packet count.
pub fn minutes_capture(minutes: u32, per_minute: u32) -> (Vec<u8>, i64) {
    minutes_capture_from(1_700_000_000, minutes, per_minute)
}

/// [`minutes_capture`] starting at `start` (seconds since the epoch).
pub fn minutes_capture_from(start: u32, minutes: u32, per_minute: u32) -> (Vec<u8>, i64) {
    let mut b = pcap_header(101);
    for m in 0..minutes {
        for i in 0..per_minute {
            let dst = [192, 0, 2, 1 + (i % 4) as u8];
            let usec = i * (60_000_000 / per_minute);
            let record = udp_v4([10, 0, 0, 1], dst, 9, 60_000);
            b.extend(pcap_record(start + m * 60 + usec / 1_000_000, usec % 1_000_000, &record));
        }
    }
    (b, i64::from(minutes * per_minute))
}

/// `exfilmon verify --db DB --pubkey PUBKEY --checkpoint FILE`: the trail against a checkpoint
/// that left the machine (a sink's file, or one checkpoint's JSON).
pub fn verify_checkpoint(db: &Path, pubkey: &Path, checkpoint: &Path) -> Output {
    bin()
        .arg("verify")
        .arg("--db")
        .arg(db)
        .arg("--pubkey")
        .arg(pubkey)
        .arg("--checkpoint")
        .arg(checkpoint)
        .output()
        .unwrap()
}

/// Runs `sql` on the database at `db` and returns its one integer (NULL as 0).
pub fn query_i64(db: impl AsRef<Path>, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0)).unwrap().unwrap_or(0)
}

/// A name a DNS tunnel would send: 40 pseudo-random base32 characters (seeded by `i`) under
/// `tun.example.test`, which the lab's resolver answers.
pub fn tunnel_name(i: u64) -> String {
    let mut x = (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let label: String = (0..40)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"abcdefghijklmnopqrstuvwxyz234567"[(x % 32) as usize] as char
        })
        .collect();
    format!("{label}.tun.example.test")
}

/// A test that cannot run here (no root, a tool missing) skips with the reason printed; under
/// CI=true, where everything must run, the skip is a failure.
pub fn skip(reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("cannot run under CI=true: {reason}");
    }
    // Straight to stderr: the test harness hides eprintln! output of passing tests.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {reason}");
}
