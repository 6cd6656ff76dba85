//! Issue 6: every kind of tampering with the stored alert trail is caught by `exfilmon verify`
//! (exit 1, naming the first broken link), and only an intact trail exits 0.
//!
//! The trail comes from replaying pcaps/nflog-sample.pcap with four volume rules (four alerts,
//! rows 1-4, and the digest of its one minute of egress rows, row 5), a signing key (a
//! checkpoint of rows 1-5, stored and written to a JSON Lines sink, i.e. "left the machine")
//! and an exec sink that always fails (its sink_failed, sink_dropping and sink_undelivered
//! events are rows 6-8, after the checkpoint). Issue 13, item 14: deleting, editing or
//! inserting egress rows is caught too.

mod common;

use std::process::Output;

use common::{bin, fixture, Scratch};
use rusqlite::types::ValueRef;
use rusqlite::Connection;

/// The directory with the trail's database, keys, config and shipped checkpoints.
struct Trail {
    dir: Scratch,
}

impl Trail {
    /// A copy of the pristine database to tamper with.
    fn copy(&self) -> Connection {
        let copy = self.dir.path("tampered.db");
        let _ = std::fs::remove_file(&copy);
        let path = copy.to_str().unwrap().replace('\'', "''");
        Connection::open(self.dir.db()).unwrap().execute_batch(&format!("VACUUM INTO '{path}'")).unwrap();
        Connection::open(copy).unwrap()
    }

    fn verify(&self, db: &str, extra: &[&str]) -> Output {
        let pubkey = self.dir.path("trail.pub");
        let mut args = vec!["verify", "--db", db, "--pubkey", pubkey.to_str().unwrap()];
        args.extend(extra);
        bin().args(&args).output().unwrap()
    }

    fn verify_tampered(&self, extra: &[&str]) -> (i32, String) {
        let o = self.verify(self.dir.path("tampered.db").to_str().unwrap(), extra);
        let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(!text.contains("panicked"), "{text}");
        (o.status.code().unwrap_or(-1), text)
    }
}

fn trail() -> Trail {
    let t = Trail { dir: Scratch::new() };
    let out = bin().args(["keygen", "--out", t.dir.path("trail").to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = format!(
        "[trail]\nsigning_key = {:?}\n\
         [[volume]]\nwindow = \"1m\"\nbytes = \"256KiB\"\n\
         [[volume]]\nwindow = \"1m\"\nbytes = \"512KiB\"\n\
         [[volume]]\nwindow = \"10m\"\nbytes = \"1MiB\"\n\
         [[volume]]\nwindow = \"10m\"\nbytes = \"2MiB\"\n\
         [[sink]]\ntype = \"jsonl\"\npath = {:?}\n\
         [[sink]]\ntype = \"exec\"\nprogram = \"/bin/false\"\nretries = 0\n",
        t.dir.path("trail.key"),
        t.dir.path("shipped.jsonl")
    );
    std::fs::write(t.dir.path("exfilmon.toml"), config).unwrap();
    let sample = fixture("nflog-sample.pcap");
    let out = bin()
        .args(["replay", "--db", &t.dir.db(), "-c", t.dir.path("exfilmon.toml").to_str().unwrap()])
        .arg(sample)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let conn = Connection::open(t.dir.db()).unwrap();
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(count("SELECT count(*) FROM alerts"), 4, "four volume rules, four alerts");
    t
}

/// Trail positions of the alerts, digests and events, and the rows the newest checkpoint covers.
fn layout(conn: &Connection) -> (Vec<i64>, Vec<i64>, Vec<i64>, i64) {
    let seqs = |sql: &str| -> Vec<i64> {
        let mut s = conn.prepare(sql).unwrap();
        s.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let alerts = seqs("SELECT seq FROM alerts ORDER BY seq");
    let digests = seqs("SELECT seq FROM digests ORDER BY seq");
    let events = seqs("SELECT seq FROM events ORDER BY seq");
    let rows = conn.query_row("SELECT max(rows) FROM checkpoints", [], |r| r.get(0)).unwrap();
    (alerts, digests, events, rows)
}

#[test]
fn intact_trail_verifies_with_stored_and_shipped_checkpoints() {
    let t = trail();
    let conn = t.copy();
    let (alerts, digests, events, checkpoint) = layout(&conn);
    assert_eq!(alerts, [1, 2, 3, 4]);
    assert_eq!(digests, [5], "the sample's one minute of egress, digested when the replay commits");
    assert_eq!(checkpoint, 5, "the checkpoint is signed when the replay commits, before the sink events");
    assert_eq!(events, [6, 7, 8], "sink_failed, sink_dropping, sink_undelivered");
    let shipped = t.dir.path("shipped.jsonl");
    let o = t.verify(&t.dir.db(), &["--checkpoint", shipped.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("trail: 8 rows (4 alerts, 3 events, 1 egress digests)"), "{out}");
    assert!(out.contains("links: intact"), "{out}");
    // 10 rows: the sample's uid-less packets of known flows count for their uid (src/attribute.rs).
    assert!(out.contains("egress: intact (10 rows in 1 run-minutes match their digests)"), "{out}");
    assert!(out.contains("(stored): 5 rows") && out.contains("(from file): 5 rows"), "{out}");
    assert!(out.contains("signature good, reached"), "{out}");
    assert!(out.contains("3 rows after the newest stored checkpoint"), "{out}");
}

/// Issue 13, item 14: the trail covered alerts and events, not what was seen; deleting or
/// editing egress rows went unnoticed.
#[test]
fn deleting_editing_or_inserting_egress_rows_is_caught() {
    let t = trail();
    let verify = |sql: &str| {
        t.copy().execute_batch(sql).unwrap();
        t.verify_tampered(&[])
    };
    for (what, sql) in [
        (
            "deleted",
            "DELETE FROM egress WHERE (minute, principal_id, proto, dst, dport) IN
               (SELECT minute, principal_id, proto, dst, dport FROM egress ORDER BY bytes LIMIT 1)",
        ),
        ("deleted", "DELETE FROM egress WHERE dport = 22"),
        ("edited", "UPDATE egress SET bytes = bytes / 2 WHERE dport = 22"),
        (
            "edited",
            "UPDATE egress SET dst = '192.0.2.99' WHERE (minute, principal_id, proto, dst, dport) IN
               (SELECT minute, principal_id, proto, dst, dport FROM egress WHERE dport = 22 LIMIT 1)",
        ),
        ("re-pointed", "INSERT INTO principals (uid) VALUES (4242); UPDATE egress SET principal_id = (SELECT id FROM principals WHERE uid = 4242) WHERE principal_id = 1"),
        ("inserted", "INSERT INTO egress (principal_id, minute, proto, dst, dport, packets, bytes, first_seen, last_seen, run_id) SELECT principal_id, minute, proto, '192.0.2.98', dport, packets, bytes, first_seen, last_seen, run_id FROM egress WHERE dport = 22 LIMIT 1"),
    ] {
        let (code, text) = verify(sql);
        assert_eq!(code, 1, "{what}: {sql}\n{text}");
        assert!(text.contains("links: intact"), "{what}: the trail itself is untouched: {text}");
        assert!(text.contains("egress: BROKEN: egress of minute 2026-11-22T"), "{what}: {text}");
        assert!(text.contains("rows were edited, deleted or inserted"), "{what}: {text}");
    }
    let (code, text) = verify("DELETE FROM egress");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("the table has none: they were deleted"), "{text}");
    // Rows of a run that has no digest at all, slipped in under a finished run's id.
    let (code, text) = verify(
        "INSERT INTO egress (principal_id, minute, proto, dst, dport, packets, bytes, first_seen, last_seen, run_id) SELECT principal_id, minute + 600000000, proto, dst, dport, packets, bytes, first_seen, last_seen, run_id FROM egress",
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("no digest covers, though that run's rows have one: they were inserted"), "{text}");
    // Rewriting the digest to match breaks its link instead.
    let (code, text) = verify("UPDATE egress SET bytes = 1; UPDATE digests SET bytes = 1");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("trail row 5: digests.seq 5 does not match its hash"), "{text}");
}

#[test]
fn editing_one_byte_of_an_alert_or_event_is_caught() {
    let t = trail();
    let conn = t.copy();
    conn.execute("UPDATE alerts SET summary = replace(summary, 'uid 1001', 'uid 1002') WHERE seq = 2", []).unwrap();
    let (code, text) = t.verify_tampered(&[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("trail row 2: alerts.id 2 does not match its hash: the row was edited"), "{text}");

    let conn = t.copy();
    conn.execute("UPDATE alerts SET bytes = bytes - 1 WHERE seq = 4", []).unwrap();
    let (code, text) = t.verify_tampered(&[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("trail row 4: alerts.id 4 does not match its hash"), "{text}");

    let conn = t.copy();
    conn.execute("UPDATE events SET summary = summary || ' ' WHERE seq = 6", []).unwrap();
    let (code, text) = t.verify_tampered(&[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("trail row 6: events.seq 6 does not match its hash"), "{text}");

    // Re-pointing an alert at another user is an edit too, though no alerts column changes.
    let conn = t.copy();
    conn.execute("INSERT INTO principals (uid) VALUES (4242)", []).unwrap();
    conn.execute("UPDATE alerts SET principal_id = (SELECT id FROM principals WHERE uid = 4242) WHERE seq = 1", [])
        .unwrap();
    let (code, text) = t.verify_tampered(&[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("trail row 1: alerts.id 1 does not match its hash"), "{text}");
}

#[test]
fn deleting_a_middle_row_is_caught() {
    let t = trail();
    let conn = t.copy();
    conn.execute("DELETE FROM alerts WHERE seq = 2", []).unwrap();
    let (code, text) = t.verify_tampered(&[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("trail row 2: row 2 is missing before alerts.id 3 (row 3): deleted"), "{text}");

    // Renumbering the rows after it to close the gap breaks the next link instead.
    let conn = t.copy();
    conn.execute_batch("DELETE FROM alerts WHERE seq = 2; UPDATE alerts SET seq = seq - 1 WHERE seq > 2;").unwrap();
    let (code, text) = t.verify_tampered(&[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("trail row 2: alerts.id 3 does not link to row 1"), "{text}");
}

#[test]
fn reordering_two_rows_is_caught() {
    let t = trail();
    let conn = t.copy();
    conn.execute_batch(
        "UPDATE alerts SET seq = -2 WHERE seq = 2; UPDATE alerts SET seq = 2 WHERE seq = 3; UPDATE alerts SET seq = 3 WHERE seq = -2;",
    )
    .unwrap();
    let (code, text) = t.verify_tampered(&[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("trail row 2: alerts.id 3 does not link to row 1: rows were reordered"), "{text}");
}

#[test]
fn inserting_a_row_is_caught() {
    let t = trail();
    let conn = t.copy();
    conn.execute_batch(
        "INSERT INTO events (seq, ts, kind, severity, summary, prev_hash, hash)
           SELECT 9, ts, 'stopped', 'low', 'a forged event', hash, hash FROM events WHERE seq = 8;",
    )
    .unwrap();
    let (code, text) = t.verify_tampered(&[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("trail row 9: events.seq 9 does not match its hash"), "{text}");
}

#[test]
fn deleting_the_tail_is_caught_by_a_checkpoint_and_only_by_one() {
    let t = trail();
    let shipped = t.dir.path("shipped.jsonl");
    let shipped = shipped.to_str().unwrap();
    // Rows 5 to 8: the digest (covered by the checkpoint) and the events after it.
    let conn = t.copy();
    conn.execute_batch("DELETE FROM digests; DELETE FROM events;").unwrap();
    let (code, text) = t.verify_tampered(&[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("links: intact"), "the remaining links hold: {text}");
    assert!(text.contains("it covers 5 rows but the trail has 4: rows were cut off the end"), "{text}");

    // The stored checkpoint and the egress rows deleted too: nothing left in the database can
    // tell...
    conn.execute_batch("DELETE FROM checkpoints; DELETE FROM egress;").unwrap();
    let (code, text) = t.verify_tampered(&[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("checkpoints: none; rows cut off the end would go unnoticed"), "{text}");
    // ...but the checkpoint that left the machine does.
    let (code, text) = t.verify_tampered(&["--checkpoint", shipped]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("(from file): 5 rows") && text.contains("rows were cut off the end"), "{text}");

    // A checkpoint forged to match the shorter trail fails its signature.
    let conn = t.copy();
    conn.execute_batch(
        "DELETE FROM digests; DELETE FROM events; DELETE FROM egress;
         UPDATE checkpoints SET rows = 4, head = (SELECT hash FROM alerts WHERE seq = 4);",
    )
    .unwrap();
    let (code, text) = t.verify_tampered(&[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("signature BAD"), "{text}");
}

/// An insider who recomputes every link after an edit (the encoding is public) gets an intact
/// chain, but not the signed head.
#[test]
fn a_recomputed_chain_no_longer_reaches_the_checkpoint() {
    let t = trail();
    let conn = t.copy();
    conn.execute("UPDATE alerts SET bytes = 1 WHERE seq = 1", []).unwrap();
    rechain(&conn);
    let (code, text) = t.verify_tampered(&[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("links: intact"), "{text}");
    assert!(text.contains("the trail's first 5 rows no longer hash to its head: they were rewritten"), "{text}");
}

/// Recomputes every link, as the module documentation of `exfilmon::trail` describes them.
fn rechain(conn: &Connection) {
    let mut rows: Vec<(i64, &str, Vec<rusqlite::types::Value>)> = Vec::new();
    for (table, sql) in [
        ("alert", "SELECT a.seq, a.id, a.ts, a.kind, a.severity, p.uid, p.host, a.dst, a.bytes, a.summary, a.details, a.run_id FROM alerts a LEFT JOIN principals p ON p.id = a.principal_id"),
        ("event", "SELECT seq, ts, kind, severity, run_id, summary, details FROM events"),
        ("digest", "SELECT seq, ts, run_id, minute, rows, packets, bytes, digest FROM digests"),
    ] {
        let mut s = conn.prepare(sql).unwrap();
        let n = s.column_count();
        let found = s
            .query_map([], |r| {
                let values = (0..n).map(|i| r.get::<_, rusqlite::types::Value>(i)).collect::<Result<Vec<_>, _>>()?;
                Ok((r.get::<_, i64>(0)?, values))
            })
            .unwrap()
            .map(Result::unwrap);
        rows.extend(found.map(|(seq, v)| (seq, table, v)));
    }
    rows.sort_by_key(|(seq, ..)| *seq);
    let mut prev = exfilmon::trail::GENESIS;
    for (seq, table, values) in rows {
        let refs: Vec<ValueRef<'_>> = values.iter().map(ValueRef::from).collect();
        let hash = exfilmon::trail::link_hash(&prev, table, &refs);
        let sql = match table {
            "alert" => "UPDATE alerts SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            "event" => "UPDATE events SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            _ => "UPDATE digests SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
        };
        conn.execute(sql, rusqlite::params![hex(&prev), hex(&hash), seq]).unwrap();
        prev = hash;
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn verify_errors_are_clean() {
    let dir = Scratch::new();
    let missing = dir.path("none.db");
    let o = bin().args(["verify", "--db", missing.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));
    let notes = dir.path("notes.txt");
    std::fs::write(&notes, "no checkpoint here\n").unwrap();
    let t = trail();
    let o = bin().args(["verify", "--db", &t.dir.db(), "--checkpoint", notes.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds no checkpoint"));
    let o = bin().args(["keygen", "--out", t.dir.path("trail").to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("never overwritten"));
}
