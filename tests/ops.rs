//! Commands for operators: `check-config`, `status` (Nagios exit statuses) and `metrics`
//! (Prometheus text, checked with promtool from Debian's `prometheus` package).

mod common;

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use rusqlite::{params, Connection};

/// A database with a replayed capture (alerts, egress) and a live run's heartbeat row.
fn monitored(lost: i64, fresh: bool, failing_sink: bool) -> (Scratch, String) {
    let (dir, db) = temp_db();
    let cap = fixture("nflog-sample.pcap");
    run_ok(&["replay", "--db", &db, cap.to_str().unwrap()]);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64;
    let beat = if fresh { now } else { now - 3_600_000_000 };
    let conn = Connection::open(&db).unwrap();
    conn.execute(
        "INSERT INTO runs (id, mode, version, started_at) VALUES (100, 'run', 'test', ?1)",
        [now - 7_200_000_000],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO health (run_id, pid, nflog_group, rcvbuf, started_at, updated_at, received, lost, overruns,
           queue_depth, queue_waits, counters)
         VALUES (100, 4242, 5, 4194304, ?1, ?2, 10000, ?3, 0, 0, 0, ?4)",
        params![
            now - 7_200_000_000,
            beat,
            lost,
            r#"{"sinks":{"mail \"ops\"":{"delivered":1,"failed":2,"overflow":1},"file":{"delivered":5,"failed":0,"overflow":0}}}"#
        ],
    )
    .unwrap();
    if failing_sink {
        conn.execute(
            "INSERT INTO events (ts, kind, severity, run_id, summary, details, prev_hash, hash)
             VALUES (?1, 'sink_failed', 'high', 100, 'sink failed', '{\"sink\":\"mail \\\"ops\\\"\"}', 'x', 'y')",
            [now],
        )
        .unwrap();
    }
    (dir, db)
}

fn status(db: &str) -> (i32, String) {
    let o = run(&["status", "--db", db]);
    let line = stdout(&o);
    assert_eq!(line.lines().count(), 1, "one line: {line:?} {}", stderr(&o));
    (o.status.code().unwrap(), line)
}

#[test]
fn status_is_ok_warning_or_critical_with_nagios_exit_codes() {
    // nft may answer for the ruleset (as root here): take the ruleset out of the comparison
    // by looking only at the level the monitor's own state sets.
    let (_d, db) = monitored(0, true, false);
    let (code, line) = status(&db);
    assert!(line.contains("monitor running (run 100, pid 4242"), "{line}");
    assert!(line.contains("no loss") && line.contains("sinks ok"), "{line}");
    if line.contains("ruleset missing") {
        assert_eq!(code, 2, "{line}");
    } else {
        assert_eq!(code, 0, "{line}");
        assert!(line.starts_with("EXFILMON OK - "), "{line}");
    }

    let (_d, db) = monitored(5, true, true);
    let (code, line) = status(&db);
    assert!(line.contains("5 of 10005 packets lost"), "{line}");
    assert!(line.contains("sinks failing: mail \"ops\""), "{line}");
    assert!(code >= 1, "{line}");

    let (_d, db) = monitored(500, true, false);
    let (code, line) = status(&db);
    assert_eq!(code, 2, "5% loss is critical at the default 1%: {line}");

    let (_d, db) = monitored(0, false, false);
    let (code, line) = status(&db);
    assert_eq!(code, 2, "{line}");
    assert!(line.starts_with("EXFILMON CRITICAL - monitor not running"), "{line}");

    let (_d, db) = temp_db();
    let (code, line) = status(&db);
    assert_eq!(code, 2, "{line}");
    assert!(line.starts_with("EXFILMON CRITICAL - "), "{line}");
}

#[test]
fn metrics_pass_promtool_and_bound_the_principals() {
    let (dir, db) = monitored(7, true, true);
    let out = dir.path("exfilmon.prom");
    run_ok(&["metrics", "--db", &db, "--top", "1", "--output", out.to_str().unwrap()]);
    let text = std::fs::read_to_string(&out).unwrap();
    for needle in [
        "exfilmon_up 1\n",
        "exfilmon_packets_received_total 10000\n",
        "exfilmon_packets_lost_total 7\n",
        "exfilmon_alerts_total{kind=\"volume\"} 1\n",
        "exfilmon_egress_bytes_total{principal=\"other\"}",
        "exfilmon_sink_failures_total{sink=\"mail \\\"ops\\\"\"} 1\n",
        "exfilmon_sink_failing{sink=\"mail \\\"ops\\\"\"} 1\n",
        "exfilmon_sink_failing{sink=\"file\"} 0\n",
        "exfilmon_sink_dropped_total{sink=\"mail \\\"ops\\\"\"} 3\n",
        "exfilmon_database_size_bytes ",
        "exfilmon_blocks_active 0",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
    // --top 1: one principal of its own plus "other".
    assert_eq!(text.lines().filter(|l| l.starts_with("exfilmon_egress_bytes_total{")).count(), 2, "{text}");
    // Standard output carries the same text.
    let o = run_ok(&["metrics", "--db", &db, "--top", "1"]);
    assert_eq!(stdout(&o).lines().filter(|l| l.starts_with("exfilmon_alerts_total")).count(), 1);

    match Command::new("promtool").args(["check", "metrics"]).stdin(std::fs::File::open(&out).unwrap()).output() {
        Err(_) => skip("promtool is not installed (apt-get install prometheus)"),
        Ok(o) => assert!(
            o.status.success(),
            "promtool check metrics:\n{}{}\n{text}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    }
}

#[test]
fn check_config_names_each_problem_and_exits_1() {
    let dir = Scratch::new();
    let good = dir.path("good.toml");
    let log = dir.path("alerts.jsonl");
    std::fs::write(&good, format!("[[sink]]\ntype = \"jsonl\"\npath = {:?}\n", log.to_str().unwrap())).unwrap();
    let o = run(&["check-config", "--config", good.to_str().unwrap(), "--db", &dir.db()]);
    let text = stdout(&o);
    assert!(o.status.success(), "{text}{}", stderr(&o));
    assert!(text.contains("ok: ") && text.contains("can be created"), "{text}");
    assert!(text.contains("ruleset"), "{text}");

    let bad = dir.path("bad.toml");
    std::fs::write(
        &bad,
        "user = \"no-such-user-exfilmon\"\n[[sink]]\ntype = \"jsonl\"\npath = \"/nonexistent/dir/alerts.jsonl\"\n\
         [[sink]]\ntype = \"exec\"\nprogram = \"/nonexistent/notify\"\n",
    )
    .unwrap();
    let o = run(&["check-config", "--config", bad.to_str().unwrap(), "--db", &dir.db()]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("error: user \"no-such-user-exfilmon\" does not exist"), "{text}");
    assert!(text.contains("cannot create /nonexistent/dir/alerts.jsonl"), "{text}");
    assert!(text.contains("/nonexistent/notify is not executable"), "{text}");
    assert!(stderr(&o).starts_with("exfilmon: ") && stderr(&o).contains("no-such-user-exfilmon"), "{}", stderr(&o));

    let syntax = dir.path("syntax.toml");
    std::fs::write(&syntax, "[nflog]\nbogus = 1\n").unwrap();
    let o = run(&["check-config", "--config", syntax.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("syntax.toml:2:"), "{}", stderr(&o));
}
