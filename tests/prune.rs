//! Issue 13, item 13: the database never shrank. `[retention]` ages per kind of data,
//! `exfilmon prune` (and the daemon once a day) deletes what is past them and gives the space
//! back, and the trail loses only a prefix recorded in a signed anchor, so `exfilmon verify`
//! still proves the rest, egress included, and notices an anchor moved or forged.
//!
//! Two replays: one of three years ago (2023, 2 hours: volume alerts, 121 egress digests) and
//! one of two days ago (30 minutes). With a 30-day retention the first goes, the second stays.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{bin, minutes_capture, minutes_capture_from, query_i64, stderr, stdout, Scratch};

struct Setup {
    dir: Scratch,
    db: String,
    config: String,
    pubkey: String,
}

fn run(s: &Setup, args: &[&str]) -> (i32, String) {
    let o = bin().args(args).args(["--db", &s.db, "-c", &s.config]).output().unwrap();
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!text.contains("panicked"), "{text}");
    (o.status.code().unwrap_or(-1), text)
}

fn verify(s: &Setup, db: &str) -> (i32, String) {
    let o = bin().args(["verify", "--db", db, "--pubkey", &s.pubkey]).output().unwrap();
    (o.status.code().unwrap_or(-1), format!("{}{}", stdout(&o), stderr(&o)))
}

fn setup() -> Setup {
    let dir = Scratch::new();
    let key = dir.path("trail");
    assert!(bin().args(["keygen", "--out", key.to_str().unwrap()]).output().unwrap().status.success());
    let config = dir.path("exfilmon.toml");
    std::fs::write(
        &config,
        format!(
            "[trail]\nsigning_key = {:?}\n[retention]\negress = \"30d\"\ndns = \"30d\"\nalerts = \"30d\"\n",
            dir.path("trail.key")
        ),
    )
    .unwrap();
    let s = Setup {
        db: dir.db(),
        config: config.to_string_lossy().into_owned(),
        pubkey: dir.path("trail.pub").to_string_lossy().into_owned(),
        dir,
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as u32;
    for (name, (capture, _)) in
        [("old.pcap", minutes_capture(120, 20)), ("recent.pcap", minutes_capture_from(now - 2 * 86_400, 30, 20))]
    {
        let file = s.dir.path(name);
        std::fs::write(&file, capture).unwrap();
        let (code, text) = run(&s, &["replay", file.to_str().unwrap()]);
        assert_eq!(code, 0, "{text}");
    }
    s
}

#[test]
fn prune_deletes_what_is_past_its_retention_and_the_rest_still_verifies() {
    let s = setup();
    let db = &s.db;
    let old = "minute < 1700000000000000 + 3 * 3600000000";
    let recent_rows = query_i64(db, &format!("SELECT count(*) FROM egress WHERE NOT ({old})"));
    let recent_alerts = query_i64(db, "SELECT count(*) FROM alerts WHERE run_id = 2");
    let old_trail = query_i64(db, "SELECT max(seq) FROM (SELECT seq FROM alerts WHERE run_id = 1 UNION ALL SELECT seq FROM digests WHERE run_id = 1)");
    assert!(query_i64(db, &format!("SELECT count(*) FROM egress WHERE {old}")) > 0 && recent_rows > 0);
    let pages = query_i64(db, "PRAGMA page_count");

    let (code, text) = run(&s, &["prune"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("pruned 484 egress") && text.contains(&format!("it starts after row {old_trail}")), "{text}");
    assert_eq!(query_i64(db, &format!("SELECT count(*) FROM egress WHERE {old}")), 0);
    assert_eq!(query_i64(db, "SELECT count(*) FROM egress"), recent_rows);
    assert_eq!(query_i64(db, "SELECT count(*) FROM alerts"), recent_alerts);
    assert_eq!(query_i64(db, "SELECT count(*) FROM digests WHERE run_id = 1"), 0);
    assert_eq!(query_i64(db, "SELECT min(seq) FROM (SELECT seq FROM alerts UNION ALL SELECT seq FROM digests UNION ALL SELECT seq FROM events)"), old_trail + 1);
    assert_eq!(query_i64(db, "SELECT count(*) FROM trail_anchors WHERE signature IS NOT NULL"), 1);
    assert_eq!(query_i64(db, "SELECT count(*) FROM events WHERE kind = 'pruned'"), 1);
    // The space came back.
    assert_eq!(query_i64(db, "PRAGMA auto_vacuum"), 2, "incremental");
    assert_eq!(query_i64(db, "PRAGMA freelist_count"), 0);
    assert!(query_i64(db, "PRAGMA page_count") < pages, "the file did not shrink");

    let (code, text) = verify(&s, db);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&format!("start: rows 1 to {old_trail} were pruned")), "{text}");
    assert!(text.contains("anchor signature good") && text.contains("links: intact"), "{text}");
    assert!(text.contains("egress: intact"), "{text}");
    assert!(!text.contains("NOT REACHED"), "{text}");

    // Again: nothing more to do.
    let (code, text) = run(&s, &["prune"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("pruned 0 egress, 0 dns") && text.contains("0 alerts, 0 events, 0 egress digests"), "{text}");
    assert_eq!(query_i64(db, "SELECT count(*) FROM trail_anchors"), 1);
    let (code, text) = verify(&s, db);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn a_deleted_moved_or_forged_anchor_is_caught() {
    let s = setup();
    let (code, text) = run(&s, &["prune"]);
    assert_eq!(code, 0, "{text}");
    let copy = |sql: &str| -> String {
        let path = s.dir.path("tampered.db");
        let _ = std::fs::remove_file(&path);
        let conn = rusqlite::Connection::open(&s.db).unwrap();
        conn.execute_batch(&format!("VACUUM INTO '{}'", path.display())).unwrap();
        rusqlite::Connection::open(&path).unwrap().execute_batch(sql).unwrap();
        path.to_string_lossy().into_owned()
    };
    // Without its anchor the trail misses its first rows.
    let (code, text) = verify(&s, &copy("DELETE FROM trail_anchors"));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("trail row 1: rows 1 to"), "{text}");
    // Rows cut past the anchor, and the anchor moved to match: its signature no longer holds.
    let db = copy(
        "CREATE TEMP TABLE next AS SELECT rows + 1 AS n FROM trail_anchors;
         UPDATE trail_anchors SET rows = (SELECT n FROM next),
           head = (SELECT hash FROM alerts WHERE seq = (SELECT n FROM next)
                   UNION ALL SELECT hash FROM digests WHERE seq = (SELECT n FROM next));
         DELETE FROM alerts WHERE seq = (SELECT n FROM next);
         DELETE FROM digests WHERE seq = (SELECT n FROM next);",
    );
    let (code, text) = verify(&s, &db);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("anchor signature BAD"), "{text}");
    // An anchor made up to hide a deleted prefix, unsigned.
    let (code, text) = verify(&s, &copy("UPDATE trail_anchors SET signature = NULL, key_id = NULL"));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("anchor unsigned"), "{text}");
}

/// A broken trail is not pruned: the part to delete would take the break with it.
#[test]
fn a_trail_broken_within_the_prefix_is_not_pruned() {
    let s = setup();
    rusqlite::Connection::open(&s.db).unwrap().execute("UPDATE alerts SET bytes = 1 WHERE seq = 1", []).unwrap();
    let (code, text) = run(&s, &["prune"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("the trail is broken at row 1") && text.contains("pruning would hide it"), "{text}");
    assert_eq!(query_i64(&s.db, "SELECT count(*) FROM trail_anchors"), 0);
    assert_eq!(query_i64(&s.db, "SELECT count(*) FROM alerts WHERE seq = 1"), 1);
}

/// Everything past its retention: the trail is pruned to nothing but its anchor, and what is
/// written next (the prune's own event, a new replay) links on from the anchor.
#[test]
fn a_trail_pruned_to_nothing_goes_on_from_its_anchor() {
    let s = setup();
    std::fs::write(
        &s.config,
        format!(
            "[trail]\nsigning_key = {:?}\n[retention]\negress = \"1d\"\ndns = \"1d\"\nalerts = \"1d\"\nevents = \"1d\"\n",
            s.dir.path("trail.key")
        ),
    )
    .unwrap();
    // The recent replay is two days old: everything goes but the prune's own event.
    let (code, text) = run(&s, &["prune"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(query_i64(&s.db, "SELECT count(*) FROM egress"), 0);
    assert_eq!(query_i64(&s.db, "SELECT count(*) FROM alerts") + query_i64(&s.db, "SELECT count(*) FROM digests"), 0);
    let start = query_i64(&s.db, "SELECT rows FROM trail_anchors");
    assert_eq!(query_i64(&s.db, "SELECT seq FROM events WHERE kind = 'pruned'"), start + 1);
    let (code, text) = verify(&s, &s.db);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("links: intact") && text.contains("anchor signature good"), "{text}");
    // A new replay goes on from there.
    let (capture, _) = minutes_capture_from(1_700_000_000 + 86_400, 5, 20);
    let file = s.dir.path("more.pcap");
    std::fs::write(&file, capture).unwrap();
    let (code, text) = run(&s, &["replay", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = verify(&s, &s.db);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("links: intact") && text.contains("egress: intact"), "{text}");
}
