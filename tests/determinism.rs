//! Replay is a pure function of its inputs: the same captures into fresh databases give the
//! same tables, row ids included, every time. Hundreds of hosts (pcaps/many-hosts.pcap, made
//! by pcaps/hosts.py) plus NFLOG captures with DNS tunnels make the detectors' hash tables big
//! enough that an order taken from them would show.

mod common;

use common::{fixture, run_ok, Scratch};
use rusqlite::types::Value;
use rusqlite::Connection;

const CAPTURES: &[&str] =
    &["many-hosts.pcap", "nflog-sample.pcap", "covert/iodine.pcap", "covert/dns2tcp.pcap", "covert/benign.pcap"];

/// Every row of the query, each column in its stored type, as one text.
fn dump(conn: &Connection, query: &str) -> String {
    let mut stmt = conn.prepare(query).unwrap();
    let n = stmt.column_count();
    let rows = stmt.query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect::<Result<Vec<_>, _>>()).unwrap();
    rows.map(|r| format!("{:?}\n", r.unwrap())).collect()
}

fn replay_into_fresh_database() -> String {
    let dir = Scratch::new();
    let db = dir.db();
    let mut args = vec!["replay".to_string(), "--db".into(), db.clone()];
    args.extend(CAPTURES.iter().map(|c| fixture(c).to_string_lossy().into_owned()));
    run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let conn = Connection::open(&db).unwrap();
    [
        "SELECT * FROM principals ORDER BY id",
        "SELECT * FROM egress ORDER BY minute, principal_id, proto, dst, dport",
        "SELECT * FROM dns ORDER BY minute, principal_id, domain",
        // The trail interleaves wall-clock events, so alerts are compared without their links.
        "SELECT id, ts, kind, severity, principal_id, dst, bytes, summary, details FROM alerts ORDER BY id",
    ]
    .iter()
    .map(|q| format!("-- {q}\n{}", dump(&conn, q)))
    .collect()
}

#[test]
fn same_captures_same_tables_ids_included() {
    let first = replay_into_fresh_database();
    assert!(first.matches("\n[").count() > 1000, "too little data to show an order:\n{first:.2000}");
    assert!(first.contains("\"volume\"") && first.contains("\"dns_tunnel\""), "expected volume and DNS alerts");
    for run in 2..=6 {
        let again = replay_into_fresh_database();
        if again != first {
            let line = first.lines().zip(again.lines()).position(|(a, b)| a != b).unwrap_or(0);
            panic!(
                "replay {run} differs from the first from line {line}:\n{}\nvs\n{}",
                first.lines().nth(line).unwrap_or(""),
                again.lines().nth(line).unwrap_or("")
            );
        }
    }
}
