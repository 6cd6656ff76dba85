//! Reports people can query (issue 14): filters, sorting, `--follow`, local time with its zone
//! and the time forms people type, the short flags journalctl and ausearch users expect, every
//! report kind in the help, the summary's CSV, refused options, and config error hints.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// nflog-sample.pcap: one volume alert, uid 1001 to 10.77.0.1:22/tcp at 2026-11-22T01:57:00Z.
fn sample() -> (Scratch, String) {
    let (dir, db) = temp_db();
    run_ok(&["replay", "--db", &db, fixture("nflog-sample.pcap").to_str().unwrap()]);
    (dir, db)
}

fn count(db: &str, args: &[&str]) -> usize {
    let mut all = vec!["report", "--db", db, "-o", "json"];
    all.extend(args);
    let o = run_ok(&all);
    serde_json::from_slice::<Value>(&o.stdout).unwrap().as_array().unwrap().len()
}

fn in_new_york(args: &[&str]) -> String {
    let o = bin().args(args).env("TZ", "America/New_York").output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    stdout(&o)
}

/// The alert at 01:57 UTC is 20:57 the day before in New York: the table says so, and
/// `--since` that local day finds it (before, the table showed 01:57 with no zone).
#[test]
fn tables_show_local_time_with_its_zone_and_since_means_local_midnight() {
    let (_d, db) = sample();
    let table = in_new_york(&["report", "alerts", "--db", &db]);
    assert!(table.contains("2026-11-21 20:57:00 EST"), "{table}");
    let found = in_new_york(&["report", "alerts", "--db", &db, "--since", "2026-11-21", "-o", "json"]);
    assert!(found.contains("2026-11-22T01:57:00Z"), "{found}");
    let none = in_new_york(&["report", "alerts", "--db", &db, "--since", "2026-11-22", "-o", "json"]);
    assert_eq!(none.trim(), "[]");
    let table = in_new_york(&["report", "alerts", "--db", &db, "--utc", "--since", "2026-11-22"]);
    assert!(table.contains("2026-11-22 01:57:00 UTC"), "{table}");
    for (since, n) in [("2026-11-21 20:56", 1), ("2026-11-21T20:58", 0), ("1h ago", 0), ("week-ago", 0)] {
        let o = in_new_york(&["report", "alerts", "--db", &db, "-S", since, "-o", "json"]);
        let got = serde_json::from_str::<Value>(&o).unwrap().as_array().unwrap().len();
        assert_eq!(got, n, "--since {since:?}");
    }
    let o = run(&["report", "alerts", "--db", &db, "--since", "last tuesday"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("\"1h ago\""), "the error lists the forms: {}", stderr(&o));
}

#[test]
fn filters_sort_and_limit() {
    let (_d, db) = sample();
    run_ok(&["replay", "--db", &db, fixture("covert/iodine.pcap").to_str().unwrap()]);
    assert_eq!(count(&db, &["alerts"]), 2);
    assert_eq!(count(&db, &["alerts", "--kind", "volume"]), 1);
    assert_eq!(count(&db, &["alerts", "-k", "volume,dns_tunnel"]), 2);
    assert_eq!(count(&db, &["alerts", "-p", "high"]), 0);
    assert_eq!(count(&db, &["alerts", "--severity", "medium"]), 2);
    assert_eq!(count(&db, &["alerts", "--dst", "10.77.0.1"]), 1);
    assert_eq!(count(&db, &["alerts", "--dst", "10.77.0.1:22"]), 1);
    assert_eq!(count(&db, &["alerts", "--dst", "10.77.0.11"]), 0);
    assert_eq!(count(&db, &["alerts", "--dst", "test"]), 1, "tun.test is below test");
    assert_eq!(count(&db, &["alerts", "-n", "1"]), 1);
    assert_eq!(count(&db, &["destinations", "--dst", "10.77.9.1"]), 1);
    assert_eq!(count(&db, &["alerts", "-u", "root"]), 1);
    assert_eq!(count(&db, &["alerts", "-u", "1001"]), 1);
    assert_eq!(count(&db, &["alerts", "-S", "2026-11-22T02:00:00Z", "-U", "2026-11-22T03:00:00Z"]), 1);

    let o = run_ok(&["report", "users", "--db", &db, "-o", "json", "--sort", "bytes"]);
    let bytes: Vec<i64> = serde_json::from_slice::<Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["bytes"].as_i64().unwrap())
        .collect();
    assert!(bytes.windows(2).all(|w| w[0] >= w[1]), "{bytes:?}");
    let o = run_ok(&["report", "users", "--db", &db, "-o", "json", "--sort", "bytes", "-r", "-n", "2"]);
    let rev: Vec<i64> = serde_json::from_slice::<Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["bytes"].as_i64().unwrap())
        .collect();
    assert_eq!(rev, bytes.iter().rev().take(2).copied().collect::<Vec<_>>());
    let o = run(&["report", "users", "--db", &db, "--sort", "nope"]);
    assert!(stderr(&o).contains("no column \"nope\""), "{}", stderr(&o));
}

#[test]
fn options_that_mean_nothing_for_a_report_are_refused() {
    let (_d, db) = sample();
    for args in [
        &["report", "users", "--kind", "volume"][..],
        &["report", "health", "--uid", "0"],
        &["report", "alerts", "--direction", "served"],
        &["report", "users", "--follow"],
        &["report", "summary", "--limit", "3"],
        &["report", "dns", "--dst", "example.com"],
    ] {
        let o = bin().args(args).args(["--db", &db]).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains("means nothing for `report"), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn help_lists_every_report_and_summary_csv_has_the_top_tables() {
    let help = stdout(&run_ok(&["--help"]));
    for kind in ["summary", "alerts", "users", "destinations", "dns", "files", "health", "events"] {
        assert!(help.contains(kind), "{kind} not in --help:\n{help}");
    }
    let (_d, db) = sample();
    let csv = stdout(&run_ok(&["report", "summary", "--db", &db, "-o", "csv"]));
    let blocks: Vec<&str> = csv.split("\n\n").collect();
    assert_eq!(blocks.len(), 3, "{csv}");
    assert!(blocks[1].starts_with("uid,user,") && blocks[1].contains("1001"), "{csv}");
    assert!(blocks[2].starts_with("dst,proto,") && blocks[2].contains("10.77.0.1:22"), "{csv}");
}

/// `report alerts -f` prints what is there, then each alert as it is stored, one JSON object
/// a line.
#[test]
fn follow_prints_new_alerts_as_they_commit() {
    let (_d, db) = sample();
    let mut child = bin()
        .args(["report", "alerts", "-f", "-o", "json", "--db", &db])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let first: Value = serde_json::from_str(&rx.recv_timeout(Duration::from_secs(20)).unwrap()).unwrap();
    assert_eq!(first["kind"], "volume");
    run_ok(&["replay", "--db", &db, fixture("covert/iodine.pcap").to_str().unwrap()]);
    let start = Instant::now();
    let next = rx.recv_timeout(Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    let next: Value = serde_json::from_str(&next.expect("a second alert while following")).unwrap();
    assert_eq!(next["kind"], "dns_tunnel");
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn config_errors_hint_at_arrays_and_point_into_sink_tables() {
    let dir = Scratch::new();
    let one = dir.path("one.toml");
    std::fs::write(&one, "[volume]\nbytes = \"1MB\"\n").unwrap();
    let o = run(&["check-config", "--config", one.to_str().unwrap()]);
    assert!(stderr(&o).contains("write [[volume]]"), "{}", stderr(&o));
    let sinks = dir.path("sinks.toml");
    std::fs::write(
        &sinks,
        "[[sink]]\ntype = \"jsonl\"\npath = \"/tmp/x\"\n\n[[sink]]\ntype = \"syslog\"\naddress = \"bogus\"\n",
    )
    .unwrap();
    let o = run(&["report", "--config", sinks.to_str().unwrap(), "--db", &dir.db()]);
    assert!(stderr(&o).contains("sinks.toml:5:1: [[sink]] 2: syslog address"), "{}", stderr(&o));
}
