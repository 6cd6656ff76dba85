//! Resource bounds: a flood of unique keys cannot exhaust memory. A capture of 1 M packets to
//! 1 M distinct destinations, from 1 M distinct source addresses (so also 1 M principals: the
//! sender of raw IP is its source address), with a DNS query for a distinct name under a
//! distinct (principal, domain) pair every eighth packet, replayed through the real binary; its
//! peak RSS (GNU time's maximum resident set) must stay under [`BOUND_MIB`].
//!
//! This input fills every cap at once (BENCHMARKS.md, "Resource bounds", adds them up: about
//! 250 MiB), so the peak is the bound of the design, not of this capture: 3 M such packets
//! peak at the same size. Without the caps the principals alone would take 1 GiB. Needs
//! /usr/bin/time (Debian's `time`, installed by scripts/test.sh): skips with a printed reason
//! without it, fails under CI=true.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{pcap_header, pcap_record, skip, Scratch, EXFILMON};

const PACKETS: u32 = 1_000_000;
const BOUND_MIB: u64 = 300;

/// Raw IPv4 records: UDP 1000-byte datagrams (captured to their 28 header bytes) from and to
/// addresses counting up; every eighth a DNS query for a name of its own.
fn write_capture(path: &Path) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    out.write_all(&pcap_header(101)).unwrap();
    for i in 0..PACKETS {
        let src = (0x0a00_0000 + i).to_be_bytes();
        let dst = (0x6400_0000 + i).to_be_bytes();
        let mut p = Vec::with_capacity(96);
        let dns = i % 8 == 0;
        let payload = if dns {
            let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            let label = format!("n{i:08x}");
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
            q.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
            q
        } else {
            Vec::new()
        };
        let wire = if dns { 28 + payload.len() } else { 1028 } as u16;
        p.extend_from_slice(&[0x45, 0, (wire >> 8) as u8, wire as u8, 0, 0, 0, 0, 64, 17, 0, 0]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&40_000u16.to_be_bytes());
        p.extend_from_slice(&(if dns { 53u16 } else { 9 }).to_be_bytes());
        p.extend_from_slice(&(wire - 20).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&payload);
        // 10,000 packets a second of capture time: minutes pass and sweeps run, and a minute
        // holds more destinations than the flow table's cap.
        out.write_all(&pcap_record(1_700_000_000 + i / 10_000, (i % 10_000) * 100, &p)).unwrap();
    }
    out.flush().unwrap();
}

#[test]
fn a_million_unique_destinations_sources_and_names_stay_under_the_memory_bound() {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        return skip("needs /usr/bin/time (Debian package `time`)");
    }
    let dir = Scratch::new();
    let capture = dir.path("unique.pcap");
    write_capture(&capture);
    let db = dir.db();
    let started = Instant::now();
    let out = Command::new(time)
        .args(["-f", "maxrss_kib=%M"])
        .arg(EXFILMON)
        .arg("replay")
        .arg(&capture)
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let kib: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kib="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no maxrss in {err}"));
    let summary = String::from_utf8_lossy(&out.stdout);
    println!("{summary}peak RSS {:.1} MiB in {:.1} s", kib as f64 / 1024.0, started.elapsed().as_secs_f64());
    assert!(summary.contains(&format!("{PACKETS} packets")), "{summary}");

    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: i64 = conn.query_row("SELECT count(*) FROM egress", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, i64::from(PACKETS), "one row per destination: nothing dropped for memory");
    // Every eviction is counted in the run's counters.
    let counters: String = conn.query_row("SELECT counters FROM runs", [], |r| r.get(0)).unwrap();
    let counters: serde_json::Value = serde_json::from_str(&counters).unwrap();
    for key in ["volume_principals_evicted", "flows_early_flushes"] {
        assert!(counters[key].as_u64() > Some(0), "{key} not counted: {counters}");
    }
    assert!(kib < BOUND_MIB * 1024, "peak RSS {kib} KiB over the {BOUND_MIB} MiB bound");
}

/// Principals in the database of [`reports_stay_flat_however_many_principals`].
const PRINCIPALS: i64 = 100_000;
/// Its bound: a report's rows are written as they are read, so memory does not grow with them.
const REPORT_BOUND_MIB: u64 = 64;

/// Peak RSS of `exfilmon <args>` and its standard output's length.
fn peak(args: &[&str]) -> (u64, usize) {
    let out = Command::new("/usr/bin/time").args(["-f", "maxrss_kib=%M"]).arg(EXFILMON).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {err}");
    let kib = err.lines().find_map(|l| l.strip_prefix("maxrss_kib=")).and_then(|n| n.trim().parse().ok());
    (kib.unwrap_or_else(|| panic!("no maxrss in {err}")), out.stdout.len())
}

/// Issue 13, item 12: reports collected every row, then a JSON tree of them, before writing:
/// `report users --format json` on 3 M principals died at a 4 GB limit, and the summary (top
/// five of each) took 1.2 GB. 100,000 principals (a host each, as raw IP captures make them)
/// sending to 100,000 destinations, in a database written by SQL for speed: every report stays
/// under [`REPORT_BOUND_MIB`] (BENCHMARKS.md: 1 M principals, release build).
#[test]
fn reports_stay_flat_however_many_principals() {
    if !Path::new("/usr/bin/time").exists() {
        return skip("needs /usr/bin/time (Debian package `time`)");
    }
    let dir = Scratch::new();
    let db = dir.db();
    // The schema and a finished run, then the rows.
    let capture = dir.path("one.pcap");
    std::fs::write(&capture, common::pcap(101, &[&common::udp_v4([10, 0, 0, 1], [192, 0, 2, 1], 9, 100)])).unwrap();
    let o = Command::new(EXFILMON).arg("replay").arg(&capture).arg("--db").arg(&db).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(&format!(
        "BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {PRINCIPALS})
         INSERT INTO principals (host) SELECT '10.' || (i >> 16) || '.' || ((i >> 8) & 255) || '.' || (i & 255) || '.1' FROM n;
         INSERT INTO egress (principal_id, minute, proto, dst, dport, packets, bytes, first_seen, last_seen, run_id)
           SELECT id, 1700000000000000 / 60000000 * 60000000, 17, '100.' || (id >> 16) || '.' || ((id >> 8) & 255) || '.' || (id & 255),
                  9, 1, 1000 + id, 1700000000000000, 1700000000000000, 1
           FROM principals;
         COMMIT;"
    ))
    .unwrap();
    drop(conn);
    for args in [
        &["report", "users", "--format", "json"][..],
        &["report", "users", "--format", "csv"],
        &["report", "destinations", "--format", "json"],
        &["report", "summary", "--format", "json"],
        &["report", "summary"],
    ] {
        let mut args = args.to_vec();
        args.extend(["--db", &db]);
        let started = Instant::now();
        let (kib, bytes) = peak(&args);
        println!(
            "{args:?}: peak RSS {:.1} MiB, {bytes} bytes out, {:.1} s",
            kib as f64 / 1024.0,
            started.elapsed().as_secs_f64()
        );
        assert!(kib < REPORT_BOUND_MIB * 1024, "{args:?}: peak RSS {kib} KiB over {REPORT_BOUND_MIB} MiB");
    }
}
