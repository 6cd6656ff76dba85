//! Schema migrations (migrations/, src/store/migrate.rs): a new database gets exactly the
//! schema schema.sql describes, a version-1 database from before the migrations keeps every
//! row and its trail, processes creating one database at once all succeed, and another
//! program's SQLite file is refused without a byte of it changing.

mod common;

use std::process::Output;

use common::{bin, fixture, repo_file as repo, Scratch};
use exfilmon::store::{Store, StoreError, SCHEMA_VERSION};
use rusqlite::Connection;

fn text(o: &Output) -> String {
    format!("{}{}", common::stdout(o), common::stderr(o))
}

fn version(conn: &Connection) -> i64 {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap()
}

/// The schema as (type, name, tbl_name, sql) rows by name, the sql without comments and with
/// whitespace collapsed, none before `,` or `)`: comments and layout explain, they are not
/// schema (`ALTER TABLE ADD COLUMN` appends `, column` after the last line's comment).
fn schema(conn: &Connection) -> Vec<(String, String, String, String)> {
    let mut s = conn.prepare("SELECT type, name, tbl_name, ifnull(sql, '') FROM sqlite_master ORDER BY name").unwrap();
    let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, String>(3)?))).unwrap();
    rows.map(Result::unwrap)
        .map(|(t, n, tbl, sql)| {
            let code: Vec<&str> = sql.lines().map(|l| l.split("--").next().unwrap()).collect();
            let sql = code.join(" ").split_whitespace().collect::<Vec<_>>().join(" ");
            (t, n, tbl, sql.replace(" ,", ",").replace(" )", ")"))
        })
        .collect()
}

fn marker(conn: &Connection) -> Vec<(String, String)> {
    let mut s = conn.prepare("SELECT key, value FROM exfilmon_meta WHERE key = 'schema'").unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

#[test]
fn migrations_build_what_schema_sql_describes() {
    let dir = Scratch::new();
    let db = dir.path("new.db");
    drop(Store::open(&db).unwrap());
    let migrated = Connection::open(&db).unwrap();
    let described = Connection::open_in_memory().unwrap();
    described.execute_batch(include_str!("../schema.sql")).unwrap();
    assert_eq!(schema(&migrated), schema(&described), "schema.sql differs from what migrations/ build");
    assert_eq!(version(&migrated), SCHEMA_VERSION);
    assert_eq!(version(&described), SCHEMA_VERSION, "schema.sql's PRAGMA user_version");
    let ours = vec![("schema".to_string(), "exfilmon".to_string())];
    assert_eq!(marker(&migrated), ours);
    assert_eq!(marker(&described), ours);
}

/// Tables and their row counts.
fn counts(conn: &Connection) -> Vec<(String, i64)> {
    let mut s = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").unwrap();
    let tables: Vec<String> = s.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    tables
        .into_iter()
        .map(|t| {
            let n = conn.query_row(&format!("SELECT count(*) FROM \"{t}\""), [], |r| r.get(0)).unwrap();
            (t, n)
        })
        .collect()
}

/// tests/fixtures/schema1.db, written by the build before migrations/ existed (see
/// tests/fixtures/README.md), is migrated by a report, keeps every row, and its trail still
/// verifies, signatures included.
#[test]
fn schema1_database_is_migrated_with_every_row_and_an_intact_trail() {
    let dir = Scratch::new();
    let db = dir.path("schema1.db");
    std::fs::copy(repo("tests/fixtures/schema1.db"), &db).unwrap();
    let (before, packets) = {
        let conn = Connection::open(&db).unwrap();
        assert_eq!(version(&conn), 1);
        let packets: i64 = conn.query_row("SELECT sum(packets) FROM egress", [], |r| r.get(0)).unwrap();
        (counts(&conn), packets)
    };
    assert!(!before.iter().any(|(t, _)| t == "exfilmon_meta"), "the fixture predates the marker");
    let count = |table: &str| before.iter().find(|(t, _)| t == table).map_or(0, |&(_, n)| n);
    for table in ["principals", "egress", "alerts", "events", "checkpoints", "runs", "dns", "captures", "file_reads"] {
        assert!(count(table) > 0, "the fixture should have {table} rows");
    }

    let db_arg = db.to_str().unwrap();
    let o = bin().args(["report", "users", "--db", db_arg, "--format", "json"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let users: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let reported: i64 = users.as_array().unwrap().iter().map(|u| u["packets"].as_i64().unwrap()).sum();
    assert_eq!(reported, packets, "the report reads every egress row");

    let conn = Connection::open(&db).unwrap();
    assert_eq!(version(&conn), SCHEMA_VERSION);
    assert_eq!(marker(&conn), [("schema".to_string(), "exfilmon".to_string())]);
    // The fixture's runs came before egress digests: verify reports their rows as not covered.
    let runs: i64 = conn.query_row("SELECT max(id) FROM runs", [], |r| r.get(0)).unwrap();
    let from: String =
        conn.query_row("SELECT value FROM exfilmon_meta WHERE key = 'digests_from_run'", [], |r| r.get(0)).unwrap();
    assert_eq!(from, (runs + 1).to_string());
    // Tables later migrations added (the marker, alerts_pending, digests) are left out.
    let after: Vec<_> = counts(&conn).into_iter().filter(|(t, _)| before.iter().any(|(b, _)| b == t)).collect();
    assert_eq!(after, before, "row counts per table");
    drop(conn);

    let o = bin()
        .args(["verify", "--db", db_arg, "--pubkey", repo("tests/fixtures/schema1.pub").to_str().unwrap()])
        .output()
        .unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let (alerts, events) = (count("alerts"), count("events"));
    let trail = format!("trail: {} rows ({alerts} alerts, {events} events, 0 egress digests)", alerts + events);
    assert!(out.contains(&trail), "{out}");
    assert!(out.contains("egress: intact") && out.contains("written before egress digests existed"), "{out}");
    assert!(out.contains("links: intact"), "{out}");
    assert_eq!(out.matches("signature good, reached").count() as i64, count("checkpoints"), "{out}");
}

/// Four replays into one new database at once: each waits for the first to create the schema
/// instead of failing with "table principals already exists".
#[test]
fn processes_creating_one_database_at_once_all_succeed() {
    for round in 0..3 {
        let dir = Scratch::new();
        let db = dir.path("new.db");
        let children: Vec<_> = ["raw.pcap", "ipv4.pcap", "ipv6.pcap", "sll.pcap"]
            .iter()
            .map(|p| {
                bin()
                    .args(["replay", "--db", db.to_str().unwrap()])
                    .arg(fixture(p))
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let o = child.wait_with_output().unwrap();
            assert!(o.status.success(), "round {round}: {}", text(&o));
        }
        let conn = Connection::open(&db).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
        assert_eq!(conn.query_row("SELECT count(*) FROM runs", [], |r| r.get::<_, i64>(0)).unwrap(), 4);
    }
}

/// Another program's SQLite file is refused before anything is written, whatever its
/// user_version, even one that happens to be 1 (schema 1 had no marker): no exfilmon tables, no
/// WAL mode, the same bytes.
#[test]
fn another_programs_database_is_refused_and_left_untouched() {
    for user_version in [0, 1, 2, 99] {
        let dir = Scratch::new();
        let db = dir.path("other.db");
        Connection::open(&db)
            .unwrap()
            .execute_batch(&format!(
                "CREATE TABLE principals (body TEXT); INSERT INTO principals VALUES ('keep me');
                 PRAGMA user_version = {user_version};"
            ))
            .unwrap();
        let bytes = std::fs::read(&db).unwrap();
        for (how, result) in [("open", Store::open(&db).map(drop)), ("open_read", Store::open_read(&db).map(drop))] {
            match result {
                Err(e @ StoreError::Foreign { .. }) => {
                    let message = e.to_string();
                    assert!(message.contains("another program's SQLite database"), "{message}");
                    assert_eq!(message.lines().count(), 1, "{message}");
                }
                Err(e) => panic!("user_version {user_version}, {how}: {e}"),
                Ok(()) => panic!("user_version {user_version}, {how}: accepted"),
            }
            assert_eq!(std::fs::read(&db).unwrap(), bytes, "user_version {user_version}, {how}: changed");
            assert!(!dir.path("other.db-wal").exists(), "user_version {user_version}, {how}: WAL");
        }
        let conn = Connection::open(&db).unwrap();
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "delete", "user_version {user_version}");
    }
}
