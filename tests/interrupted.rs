//! Issue 13, items 1 and 2: a replay counts once, whole, or not at all. A replay killed
//! part-way (SIGKILL: nothing of it runs any more) left its committed rows and alerts behind
//! and no `captures` row, so the same file again counted twice while `verify` said intact;
//! four replays of one capture at once counted it four times. Now a dead replay's rows are
//! not counted and are rolled back by the next exfilmon writing the database, SIGTERM rolls
//! the replay back at once, and the duplicate check is part of the replay's commit. The
//! replays read their capture from a pipe the test feeds, so each is stopped exactly
//! part-way: after its first rows and alert are committed, before its end.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, minutes_capture, report, stderr, stdout, Scratch};
use rusqlite::{Connection, OpenFlags};

/// An integer from the database, 0 while it (or the table) does not exist yet: opened
/// read-only, so polling never creates the file.
fn peek(db: &str, sql: &str) -> i64 {
    let Ok(conn) = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY) else { return 0 };
    conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0)).ok().flatten().unwrap_or(0)
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `exfilmon replay /dev/stdin` into `db`, its capture to be written to the returned pipe.
fn replay_from_pipe(db: &str) -> (Child, ChildStdin) {
    let mut child = bin()
        .args(["replay", "--db", db, "/dev/stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

/// Feeds `capture` to the replay in small pieces until it has committed rows for half an hour
/// (the volume alert of the fourth minute was raised then too), and stops there, well before
/// the end. (The capture reader reads twice before it parses a record, so a piece at a time
/// it is.)
fn feed_half_an_hour(pipe: &mut ChildStdin, capture: &[u8], db: &str) {
    let mut fed = 0;
    while peek(db, "SELECT sum(packets) FROM egress") < 30 * 20 {
        assert!(fed < capture.len() * 3 / 4, "no rows committed after {fed} bytes");
        let end = (fed + 2048).min(capture.len());
        pipe.write_all(&capture[fed..end]).unwrap();
        fed = end;
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn replay_file(db: &str, file: &Path) -> Output {
    Command::new(common::EXFILMON).args(["replay", "--db", db]).arg(file).output().unwrap()
}

fn verify(db: &str) -> (bool, String) {
    let o = bin().args(["verify", "--db", db]).output().unwrap();
    (o.status.success(), format!("{}{}", stdout(&o), stderr(&o)))
}

fn counted_packets(db: &str) -> i64 {
    report(db, "summary")["totals"]["packets"].as_i64().unwrap()
}

/// Alerts one whole replay of `file` raises, in a database of its own.
fn alerts_of_one_replay(dir: &Scratch, file: &Path) -> i64 {
    let db = dir.path("reference.db").to_string_lossy().into_owned();
    assert!(replay_file(&db, file).status.success());
    let n = peek(&db, "SELECT count(*) FROM alerts");
    assert!(n > 0, "the capture should raise alerts");
    n
}

#[test]
fn killed_replay_then_the_same_file_again_counts_once() {
    let dir = Scratch::new();
    let db = dir.db();
    let (capture, packets) = minutes_capture(120, 20);
    let file = dir.path("capture.pcap");
    std::fs::write(&file, &capture).unwrap();
    let alerts = alerts_of_one_replay(&dir, &file);

    let (mut child, mut pipe) = replay_from_pipe(&db);
    feed_half_an_hour(&mut pipe, &capture, &db);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(pipe);
    assert!(peek(&db, "SELECT count(*) FROM egress") > 0, "the dead replay's rows are still in the table");

    // Until it is rolled back, nothing of the dead replay counts, and verify and report
    // health name it.
    assert_eq!(counted_packets(&db), 0, "a replay that never finished is counted");
    assert_eq!(peek(&db, "SELECT count(*) FROM alerts"), 0, "alerts of a replay that never finished");
    let (ok, text) = verify(&db);
    assert!(ok, "{text}");
    assert!(text.contains("unfinished: run 1 (replay") && text.contains("died before it committed"), "{text}");
    assert!(text.contains("rows not covered by a digest: of a replay not committed"), "{text}");
    let health = report(&db, "health");
    assert!(
        health.as_array().unwrap().iter().any(|r| r["run"] == 1 && r["state"] == "replay died (not counted)"),
        "{health}"
    );

    // The same content again, from the file: the dead replay is rolled back first.
    let o = replay_file(&db, &file);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("replay run 1 rolled back (its process"), "{}", stderr(&o));
    assert_eq!(peek(&db, "SELECT sum(packets) FROM egress"), packets, "rows in the table");
    assert_eq!(counted_packets(&db), packets, "packets counted");
    assert_eq!(peek(&db, "SELECT count(*) FROM alerts"), alerts, "alerts");
    assert_eq!(peek(&db, "SELECT count(*) FROM alerts_pending"), 0);
    assert_eq!(peek(&db, "SELECT count(*) FROM runs WHERE id = 1 AND state = 'abandoned'"), 1);
    assert_eq!(peek(&db, "SELECT count(*) FROM events WHERE kind = 'run_rolled_back'"), 1);
    let (ok, text) = verify(&db);
    assert!(ok, "{text}");
    assert!(text.contains("links: intact") && text.contains("1 replay(s) rolled back"), "{text}");
    assert!(text.contains("egress: intact (484 rows in 121 run-minutes"), "{text}");
    assert!(!text.contains("unfinished:"), "{text}");
    // And once more: recognised.
    let o = replay_file(&db, &file);
    assert!(o.status.success() && stderr(&o).contains("already replayed"), "{}", stderr(&o));
    assert_eq!(counted_packets(&db), packets);
}

#[test]
fn sigterm_rolls_the_replay_back_at_once() {
    let dir = Scratch::new();
    let db = dir.db();
    let (capture, _) = minutes_capture(120, 20);
    let (child, mut pipe) = replay_from_pipe(&db);
    feed_half_an_hour(&mut pipe, &capture, &db);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::SIGTERM).unwrap();
    // The replay waits on the pipe: closing it lets it see the signal.
    drop(pipe);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted: the replay was rolled back, nothing of it counts"), "{}", stderr(&o));
    for table in ["egress", "alerts", "alerts_pending", "captures"] {
        assert_eq!(peek(&db, &format!("SELECT count(*) FROM {table}")), 0, "{table}");
    }
    assert_eq!(peek(&db, "SELECT count(*) FROM runs WHERE state = 'abandoned'"), 1);
    let (ok, text) = verify(&db);
    assert!(ok && !text.contains("unfinished:"), "{text}");
}

#[test]
fn four_replays_of_one_capture_at_once_count_it_once() {
    let dir = Scratch::new();
    let db = dir.db();
    let (capture, packets) = minutes_capture(30, 20);
    let file = dir.path("capture.pcap");
    std::fs::write(&file, &capture).unwrap();
    let alerts = alerts_of_one_replay(&dir, &file);
    let replays: Vec<(Child, ChildStdin)> = (0..4).map(|_| replay_from_pipe(&db)).collect();
    let mut children = Vec::new();
    let mut pipes = Vec::new();
    for (child, mut pipe) in replays {
        pipe.write_all(&capture[..capture.len() / 2]).unwrap();
        children.push(child);
        pipes.push(pipe);
    }
    // All four are under way before any can finish.
    wait_until("four runs", || peek(&db, "SELECT count(*) FROM runs") == 4);
    for mut pipe in pipes {
        pipe.write_all(&capture[capture.len() / 2..]).unwrap();
    }
    let outputs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    for o in &outputs {
        assert!(o.status.success(), "{}", stderr(o));
    }
    let skipped = outputs.iter().filter(|o| stderr(o).contains("already replayed")).count();
    assert_eq!(skipped, 3, "{:?}", outputs.iter().map(stderr).collect::<Vec<_>>());
    assert_eq!(peek(&db, "SELECT sum(packets) FROM egress"), packets, "rows in the table");
    assert_eq!(counted_packets(&db), packets, "packets counted");
    assert_eq!(peek(&db, "SELECT count(*) FROM alerts"), alerts, "alerts");
    assert_eq!(peek(&db, "SELECT count(*) FROM captures"), 1);
    let (ok, text) = verify(&db);
    assert!(ok && text.contains("links: intact"), "{text}");
}
