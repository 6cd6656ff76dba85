//! Issue 13, item 2: processes writing one database at once take turns. Replays into an
//! existing database while another process holds its write lock for longer than SQLite's
//! busy timeout all wait and count everything, instead of one dying part-way on "database is
//! locked". (Processes creating a new database at once: tests/migrations.rs.)

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{bin, fixture, stderr, stdout, temp_db};
use rusqlite::Connection;

fn packets(db: &str) -> i64 {
    let conn = Connection::open(db).unwrap();
    conn.query_row("SELECT ifnull(sum(packets), 0) FROM egress", [], |r| r.get(0)).unwrap()
}

#[test]
fn replays_wait_for_a_lock_held_past_the_busy_timeout() {
    let (_dir, db) = temp_db();
    let o = bin().args(["replay", "--db", &db]).arg(fixture("raw.pcap")).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // Another writer holds the lock for 7 s (an open sqlite3 shell, a long transaction).
    let holder = Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE; INSERT INTO exfilmon_meta VALUES ('held', 'by the test')").unwrap();
    let files = ["ipv4.pcap", "ipv6.pcap", "sll.pcap", "nflog-sample.pcap"];
    let children: Vec<_> = files
        .iter()
        .map(|f| {
            bin()
                .args(["replay", "--db", &db])
                .arg(fixture(f))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(7));
    holder.execute_batch("ROLLBACK").unwrap();
    for (file, child) in files.iter().zip(children) {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{file}: {}{}", stdout(&o), stderr(&o));
        assert!(stderr(&o).contains("another process has held its lock"), "{file}: {}", stderr(&o));
    }
    // raw 9, ipv4 5, ipv6 7, sll 9, nflog-sample 252 (pcaps/expected.json)
    assert_eq!(packets(&db), 9 + 5 + 7 + 9 + 252);
}
