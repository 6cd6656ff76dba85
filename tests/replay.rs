//! End-to-end tests of `exfilmon replay` and `exfilmon report` on the fixtures in pcaps/,
//! run through the built binary. Expected totals come from pcaps/expected.json, which
//! pcaps/expected.py computes independently (and checks against tshark).

mod common;

use std::process::Output;

use common::{fixture, pcap, report, run, stderr, stdout, temp_db, Scratch};
use serde_json::{json, Value};

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn replay(db: &str, files: &[&str], extra: &[&str]) -> Output {
    let paths: Vec<String> = files.iter().map(|f| fixture(f).to_string_lossy().into_owned()).collect();
    let mut args = vec!["replay", "--db", db];
    args.extend(paths.iter().map(String::as_str));
    args.extend(extra);
    run(&args)
}

fn query_i64(db: &str, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0)).unwrap().unwrap_or(0)
}

/// Asserts a command failed cleanly: non-zero status, a one-line `exfilmon:` message
/// containing `needle`, and no panic.
fn assert_clean_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success; stderr: {err}");
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "panic: {err}");
    assert!(err.starts_with("exfilmon: "), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line expected: {err}");
    assert!(err.contains(needle), "{needle:?} not in: {err}");
}

#[test]
fn every_fixture_totals_match_ip_length_fields() {
    let exp = expected();
    for (name, e) in exp["files"].as_object().unwrap() {
        let (_dir, db) = temp_db();
        let o = replay(&db, &[name], &[]);
        // Damaged captures fail the replay but keep their good records.
        let damaged = ["damaged.pcap", "truncated-tail.pcap"].contains(&name.as_str());
        assert_eq!(o.status.success(), !damaged, "{name}: {}", stderr(&o));
        let packets = query_i64(&db, "SELECT sum(packets) FROM egress");
        let bytes = query_i64(&db, "SELECT sum(bytes) FROM egress");
        assert_eq!(packets, e["ip_packets"].as_i64().unwrap(), "{name} packets");
        assert_eq!(bytes, e["ip_bytes"].as_i64().unwrap(), "{name} bytes");
    }
}

#[test]
fn nflog_capture_attributes_bytes_to_uids() {
    let exp = expected();
    for name in ["nflog-sample.pcap", "nflog-synth.pcap"] {
        let (_dir, db) = temp_db();
        assert!(replay(&db, &[name], &[]).status.success());
        // Packets without a uid count for their flow's uid (src/attribute.rs); expected.py does
        // the same from the capture's own fields.
        for (uid, e) in exp["files"][name]["by_principal"].as_object().unwrap() {
            let cond = if uid == "none" { "p.uid IS NULL".to_string() } else { format!("p.uid = {uid}") };
            let sql =
                format!("SELECT sum(e.bytes) FROM egress e JOIN principals p ON p.id = e.principal_id WHERE {cond}");
            assert_eq!(query_i64(&db, &sql), e["bytes"].as_i64().unwrap(), "{name} uid {uid}");
        }
    }
}

#[test]
fn captures_without_uid_are_attributed_to_the_sender_address() {
    let exp = expected();
    let (_dir, db) = temp_db();
    assert!(replay(&db, &["eth-vlan.pcap"], &[]).status.success());
    for (src, e) in exp["files"]["eth-vlan.pcap"]["by_src"].as_object().unwrap() {
        let sql = format!(
            "SELECT sum(e.bytes) FROM egress e JOIN principals p ON p.id = e.principal_id WHERE p.host = '{src}'"
        );
        assert_eq!(query_i64(&db, &sql), e["bytes"].as_i64().unwrap(), "host {src}");
    }
}

#[test]
fn scp_in_sample_raises_one_volume_alert_with_the_documented_json_fields() {
    let (_dir, db) = temp_db();
    let o = replay(&db, &["nflog-sample.pcap"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["report", "alerts", "--db", &db, "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let alerts: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let alerts = alerts.as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    for key in ["ts", "kind", "severity", "uid", "user", "host", "dst", "bytes", "summary"] {
        assert!(a.get(key).is_some(), "missing {key}: {a}");
    }
    assert_eq!(a["kind"], "volume");
    assert_eq!(a["uid"], 1001);
    assert_eq!(a["host"], Value::Null);
    assert_eq!(a["dst"], "10.77.0.1:22/tcp");
    assert!(a["bytes"].as_u64().unwrap() >= 4 << 20);
    assert!(a["ts"].as_str().unwrap().ends_with('Z'), "RFC 3339 UTC: {}", a["ts"]);
    assert!(a["summary"].as_str().unwrap().contains("uid 1001"));
}

#[test]
fn replay_is_deterministic() {
    let dump = || {
        let (_dir, db) = temp_db();
        assert!(replay(&db, &["nflog-sample.pcap", "nflog-synth.pcap"], &[]).status.success());
        let o = run(&["report", "alerts", "--db", &db, "--format", "csv"]);
        let u = run(&["report", "users", "--db", &db, "--format", "csv"]);
        (stdout(&o), stdout(&u))
    };
    assert_eq!(dump(), dump());
}

#[test]
fn second_replay_is_skipped_unless_forced() {
    let (_dir, db) = temp_db();
    assert!(replay(&db, &["raw.pcap"], &[]).status.success());
    let o = replay(&db, &["raw.pcap"], &[]);
    assert!(o.status.success());
    assert!(stderr(&o).contains("already replayed"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--force"));
    assert_eq!(query_i64(&db, "SELECT sum(packets) FROM egress"), 9);
    let o = replay(&db, &["raw.pcap"], &["--force"]);
    assert!(o.status.success());
    assert_eq!(query_i64(&db, "SELECT sum(packets) FROM egress"), 18);
}

/// Captures replayed before schema version 11 are known by their SHA-256 only (migration 11
/// prefixes it): the same content again, from the file or a pipe, is still recognised.
#[test]
fn captures_known_by_sha256_are_still_recognised() {
    let (_dir, db) = temp_db();
    assert!(replay(&db, &["raw.pcap"], &[]).status.success());
    assert_eq!(query_i64(&db, "SELECT count(*) FROM captures WHERE digest LIKE 'blake3:%'"), 1);
    let sha = std::process::Command::new("sha256sum").arg(fixture("raw.pcap")).output().unwrap();
    let sha = String::from_utf8_lossy(&sha.stdout).split_whitespace().next().unwrap().to_owned();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE captures SET digest = ?1", [format!("sha256:{sha}")]).unwrap();
    drop(conn);
    let o = replay(&db, &["raw.pcap"], &[]);
    assert!(o.status.success() && stderr(&o).contains("already replayed"), "{}", stderr(&o));
    let o = replay_through_bash(&db, &format!("<(cat {})", fixture("raw.pcap").display()));
    assert!(o.status.success() && stderr(&o).contains("already replayed"), "{}", stderr(&o));
    assert_eq!(query_i64(&db, "SELECT sum(packets) FROM egress"), 9);
}

#[test]
fn summary_line_counts_everything() {
    let (_dir, db) = temp_db();
    let o = replay(&db, &["nflog-sample.pcap", "damaged.pcap"], &[]);
    assert_clean_error(&o, "damaged.pcap: record 4 claims more than 1 MiB");
    let line = stdout(&o);
    assert_eq!(line.lines().count(), 1, "{line}");
    for part in ["2 of 2 file(s)", "255 packets", "1 alerts", "1 malformed skipped", "packets/s"] {
        assert!(line.contains(part), "{part:?} not in {line}");
    }
}

#[test]
fn volume_config_from_the_issue_works() {
    let (dir, db) = temp_db();
    let config = dir.path("exfilmon.toml");
    std::fs::write(&config, "[[volume]]\nwindow = \"10m\"      # sliding window\nbytes = \"256KiB\"    # alert\n")
        .unwrap();
    let o = replay(&db, &["nflog-synth.pcap"], &["--config", config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // nflog-synth has no principal over 256 KiB: no alert; the sample's scp is over it.
    assert_eq!(query_i64(&db, "SELECT count(*) FROM alerts"), 0);
    assert!(replay(&db, &["nflog-sample.pcap"], &["--config", config.to_str().unwrap()]).status.success());
    assert_eq!(query_i64(&db, "SELECT count(*) FROM alerts WHERE kind = 'volume'"), 1);
}

#[test]
fn bad_config_names_file_and_line() {
    let (dir, db) = temp_db();
    let config = dir.path("bad.toml");
    std::fs::write(&config, "[[volume]]\nwindow = \"10m\"\nbytes = \"lots\"\n").unwrap();
    let o = replay(&db, &["raw.pcap"], &["--config", config.to_str().unwrap()]);
    assert_clean_error(&o, "bad.toml:3:");
    assert!(stderr(&o).contains("invalid size"));
}

#[test]
fn reports_filter_by_time_and_user_and_render_all_formats() {
    let (_dir, db) = temp_db();
    assert!(replay(&db, &["nflog-sample.pcap"], &[]).status.success());
    // The sample was captured on 2026-11-22.
    let o = run(&["report", "alerts", "--db", &db, "--since", "2026-11-23T00:00:00Z", "--format", "json"]);
    assert_eq!(stdout(&o).trim(), "[]");
    let o = run(&["report", "alerts", "--db", &db, "--until", "2026-11-23", "--format", "json"]);
    assert_eq!(serde_json::from_str::<Value>(&stdout(&o)).unwrap().as_array().unwrap().len(), 1);
    // uid 0 is root on every machine: the table shows the name.
    let o = run(&["report", "users", "--db", &db, "--user", "root"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    assert!(table.contains("root"), "{table}");
    assert!(!table.contains("1001"), "{table}");
    let o = run(&["report", "destinations", "--db", &db, "--format", "csv"]);
    assert!(
        stdout(&o).starts_with("dst,proto,packets,bytes,senders,first,last,direction,name,program,programs\n"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("10.77.0.1:22,tcp,"));
    // A capture names no programs (only the live monitor looks them up).
    let users = report(&db, "users");
    assert!(users.as_array().unwrap().iter().all(|u| u["program"].is_null() && u["programs"] == json!([])), "{users}");
    let o = run(&["report", "--db", &db, "--format", "json"]);
    let summary: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["totals"]["packets"], 252);
    let o = run(&["report", "--db", &db, "--since", "yesterday"]);
    assert!(o.status.success());
    let o = run(&["report", "--db", &db, "--since", "last tuesday"]);
    assert_clean_error(&o, "--since");
}

#[test]
fn bad_inputs_are_clean_errors() {
    let (dir, db) = temp_db();
    let p = |name: &str| dir.path(name).to_string_lossy().into_owned();
    std::fs::write(p("empty.pcap"), b"").unwrap();
    std::fs::write(p("text.pcap"), b"this is not a capture file at all\n").unwrap();
    std::fs::write(p("token-ring.pcap"), pcap(6, &[b"abc"])).unwrap();
    std::fs::write(p("usb.pcap"), pcap(220, &[b"abc"])).unwrap();
    let cases = [
        ("/nonexistent/capture.pcap".to_string(), "cannot open /nonexistent/capture.pcap"),
        (p(""), "is a directory"),
        (p("empty.pcap"), "empty"),
        (p("text.pcap"), "not a pcap or pcapng"),
        (p("token-ring.pcap"), "unsupported link type 6"),
        (p("usb.pcap"), "link type 220"),
    ];
    for (path, needle) in &cases {
        let o = run(&["replay", "--db", &db, path]);
        assert_clean_error(&o, needle);
    }
}

#[test]
fn garbage_records_are_skipped_and_counted() {
    let (dir, db) = temp_db();
    let path = dir.path("garbage.pcap");
    // Raw IP records: nonsense version, header length below 20, a lone byte, an empty record,
    // IPv4 claiming options past the end, and one good ICMP packet.
    let good: &[u8] = &[0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 192, 0, 2, 1, 198, 51, 100, 1, 8, 0, 0, 0, 0, 0, 0, 0];
    std::fs::write(&path, pcap(101, &[&[0x75; 40], &[0x41; 40], &[0x45], &[], &[0x4f, 0, 0, 20], good])).unwrap();
    let o = run(&["replay", "--db", &db, path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("1 packets"), "{}", stdout(&o));
    assert!(stdout(&o).contains("5 malformed skipped"), "{}", stdout(&o));
    let counters = query_i64(&db, "SELECT malformed FROM runs");
    assert_eq!(counters, 5);
}

/// pcapng blocks carry their packet padded to 4 bytes: the packet is the captured length, so
/// a zero IP length (TSO) counts 41 bytes, not 44. Packet blocks before any interface
/// description, or naming one never described, are counted, with their reason.
#[test]
fn pcapng_packets_without_padding_and_blocks_without_interface_counted() {
    let (_dir, db) = temp_db();
    let o = replay(&db, &["pcapng-edges.pcapng"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("3 packets, 143 B"), "{}", stdout(&o));
    assert!(stdout(&o).contains("2 malformed skipped"), "{}", stdout(&o));
    assert_eq!(query_i64(&db, "SELECT sum(bytes) FROM egress"), 143);
    assert_eq!(query_i64(&db, "SELECT malformed FROM runs"), 2);
    assert_eq!(query_i64(&db, "SELECT records FROM captures"), 5);
    assert_eq!(query_i64(&db, "SELECT damaged FROM captures"), 2);
    let counters = query_i64(&db, "SELECT json_extract(counters, '$.pcapng_no_interface') FROM runs");
    assert_eq!(counters, 2);
}

#[test]
fn damaged_and_cut_captures_keep_their_good_records() {
    for (name, packets) in [("damaged.pcap", 3), ("truncated-tail.pcap", 4)] {
        let (_dir, db) = temp_db();
        let o = replay(&db, &[name], &[]);
        // The damage is an error (exit 1), but the good records before it are kept.
        assert_clean_error(&o, &format!("{name}: record {}", packets + 1));
        assert!(stdout(&o).contains("1 malformed skipped"), "{name}: {}", stdout(&o));
        assert_eq!(query_i64(&db, "SELECT sum(packets) FROM egress"), packets, "{name}");
    }
}

#[test]
fn database_errors_are_clean() {
    let dir = Scratch::new();
    let not_db = dir.path("notes.txt");
    std::fs::write(&not_db, "x".repeat(4096)).unwrap();
    let o = run(&["replay", "--db", not_db.to_str().unwrap(), fixture("raw.pcap").to_str().unwrap()]);
    assert_clean_error(&o, "not an exfilmon database");
    let o = run(&["report", "--db", dir.path("missing.db").to_str().unwrap()]);
    assert_clean_error(&o, "does not exist");
    let (_d, db) = temp_db();
    assert!(replay(&db, &["raw.pcap"], &[]).status.success());
    rusqlite::Connection::open(&db).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let o = run(&["report", "--db", &db]);
    assert_clean_error(&o, "newer than this exfilmon");
}

#[test]
fn database_is_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Scratch::new();
    let db = dir.path("state/sub/exfilmon.db");
    let o = run(&["replay", "--db", db.to_str().unwrap(), fixture("raw.pcap").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(&db).unwrap().permissions().mode() & 0o777, 0o640);
    assert_eq!(std::fs::metadata(db.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o750);
}

#[test]
fn help_teaches() {
    let o = run(&["--help"]);
    let help = stdout(&o);
    for word in ["replay", "report", "Exit status", "Examples"] {
        assert!(help.contains(word), "{word} missing from --help");
    }
    let o = run(&["replay", "--help"]);
    assert!(stdout(&o).contains("NFLOG (239"));
}

/// `exfilmon replay <args>` run by bash, where `<(cat FILE)` reads FILE through a pipe.
fn replay_through_bash(db: &str, inputs: &str) -> Output {
    let script = format!("exec \"$0\" replay --db \"$1\" {inputs}");
    std::process::Command::new("bash").args(["-c", &script, common::EXFILMON, db]).output().unwrap()
}

/// Issue 13, item 3: a capture from a pipe (`<(...)`, /dev/stdin) is read once, as it is
/// replayed. Two pipes in one command were both pre-hashed for the duplicate check (pipes have
/// no size, so they looked like twins), which drained them ("is empty"); so was every pipe after
/// one was recorded (with size 0). The same content again through a pipe still counts once.
#[test]
fn captures_from_pipes_are_read_once_and_counted_once() {
    let (_dir, db) = temp_db();
    let (raw, ipv4, ipv6) = (fixture("raw.pcap"), fixture("ipv4.pcap"), fixture("ipv6.pcap"));
    let o = replay_through_bash(&db, &format!("<(cat {}) <(cat {})", raw.display(), ipv4.display()));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("replayed 2 of 2 file(s): 14 packets"), "{}", stdout(&o));
    let o = replay_through_bash(&db, &format!("<(cat {})", ipv6.display()));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(query_i64(&db, "SELECT sum(packets) FROM egress"), 9 + 5 + 7);
    // Recorded with the size read, not the pipe's 0.
    let size = std::fs::metadata(&ipv6).unwrap().len() as i64;
    assert_eq!(query_i64(&db, "SELECT count(*) FROM captures WHERE size = 0"), 0);
    assert_eq!(query_i64(&db, &format!("SELECT count(*) FROM captures WHERE size = {size}")), 1);
    // The same content again, from a pipe and from the file: counted once.
    let o = replay_through_bash(&db, &format!("<(cat {})", raw.display()));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("already replayed"), "{}", stderr(&o));
    let o = replay(&db, &["raw.pcap"], &[]);
    assert!(o.status.success() && stderr(&o).contains("already replayed"), "{}", stderr(&o));
    assert_eq!(query_i64(&db, "SELECT sum(packets) FROM egress"), 9 + 5 + 7);
    let o = run(&["report", "--db", &db, "--format", "json"]);
    assert_eq!(serde_json::from_str::<Value>(&stdout(&o)).unwrap()["totals"]["packets"], 21);
    // Two pipes with one content: known only once both were read, and neither can be read
    // again, so nothing counts and the message says what to do.
    let (_dir, db) = temp_db();
    let o = replay_through_bash(&db, &format!("<(cat {0}) <(cat {0})", raw.display()));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("same content as an earlier file in this replay"), "{}", stderr(&o));
    assert!(stderr(&o).contains("was read from a pipe and cannot be read again"), "{}", stderr(&o));
    assert_eq!(query_i64(&db, "SELECT count(*) FROM egress"), 0);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM runs WHERE state = 'abandoned'"), 1);
}

/// Issue 13, item 11: the database is made 0640 in a 0750 directory so that its group may read
/// reports. With no writer running, a reader in the group could not: WAL mode needs the `-shm`
/// and `-wal` files, and only the owner may create them in the directory. The writer keeps
/// them (created with the database's mode), so the group reads without writing anything.
#[test]
fn the_databases_group_reads_reports_with_no_writer_running() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        common::skip("needs root to read the database as another user");
        return;
    }
    let dir = Scratch::new();
    std::fs::set_permissions(dir.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.path("state");
    let db = state.join("exfilmon.db");
    let o = run(&["replay", "--db", db.to_str().unwrap(), fixture("raw.pcap").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The directory and its files belong to the readers' group (nogroup here); the reader is
    // nobody, in that group only.
    let group = nix::unistd::Gid::from_raw(65534);
    for entry in std::iter::once(state.clone()).chain(std::fs::read_dir(&state).unwrap().map(|e| e.unwrap().path())) {
        nix::unistd::chown(&entry, None, Some(group)).unwrap();
    }
    let as_reader = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", common::EXFILMON])
            .args(args)
            .output()
            .unwrap()
    };
    let o = as_reader(&["report", "--db", db.to_str().unwrap(), "--format", "json"]);
    assert!(o.status.success(), "report as the group: {}", stderr(&o));
    assert_eq!(serde_json::from_str::<Value>(&stdout(&o)).unwrap()["totals"]["packets"], 9);
    let o = as_reader(&["verify", "--db", db.to_str().unwrap()]);
    assert!(o.status.success(), "verify as the group: {}{}", stdout(&o), stderr(&o));
    for f in std::fs::read_dir(&state).unwrap() {
        let f = f.unwrap();
        assert_eq!(f.metadata().unwrap().permissions().mode() & 0o777, 0o640, "{}", f.path().display());
    }
}
