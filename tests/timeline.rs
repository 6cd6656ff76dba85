//! `exfilmon report timeline` on `pcaps/hostile-html.pcap` (three bursts from root with a volume
//! alert, DNS tunnel alerts from nobody): rows fit the width, alerts are marked under their
//! columns, colour only on a terminal and never with NO_COLOR, the numbers in JSON add up.
//! Terminals are real ptys made by util-linux `script`; without it those checks skip with a
//! printed reason, and with CI=true a skip is a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{bin, fixture, ok, skip};

use serde_json::Value;

fn db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    ok("replay", &bin().arg("replay").arg(fixture("hostile-html.pcap")).arg("--db").arg(&db).output().unwrap());
    (dir, db)
}

fn timeline(db: &Path, extra: &[&str]) -> String {
    let o = bin().args(["report", "timeline", "--db"]).arg(db).args(extra).output().unwrap();
    ok("report timeline", &o);
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn rows_fit_the_width_and_mark_alerts_under_their_columns() {
    let (_dir, db) = db();
    for width in [40, 60, 100, 200] {
        let text = timeline(&db, &["--width", &width.to_string()]);
        for line in text.lines() {
            assert!(line.chars().count() <= width, "wider than {width}: {line:?}");
        }
        assert!(!text.contains('\x1b'), "colour into a pipe");
        let lines: Vec<&str> = text.lines().collect();
        // Senders by bytes: root first (its label cut on a narrow terminal), then nobody.
        let root = lines.iter().position(|l| l.starts_with("SENDER")).unwrap() + 1;
        assert!(lines[root].starts_with("root") || lines[root].starts_with("uid 0"), "{text}");
        // Three bursts: three columns with blocks, the biggest a full one.
        let spark: String = lines[root].chars().filter(|c| ('▁'..='█').contains(c)).collect();
        assert_eq!(spark.chars().count(), 3, "{}", lines[root]);
        assert!(spark.contains('█'));
        // Under it, one mark in the column of the big burst, then the kind.
        let marks = lines[root + 1];
        assert!(marks.ends_with("volume"), "{marks:?}");
        let col = |l: &str, c: char| l.chars().position(|x| x == c);
        assert_eq!(col(marks, '△'), col(lines[root], '█'), "mark under the burst:\n{}\n{marks}", lines[root]);
        let nobody = root + 2;
        assert!(lines[nobody].starts_with("nobody") || lines[nobody].starts_with("uid 65534"), "{text}");
        assert_eq!(lines[nobody + 1].matches('△').count(), 3, "three DNS tunnel alerts: {}", lines[nobody + 1]);
        assert!(lines[nobody + 1].ends_with("dns_tunnel"));
    }
    let o = bin().args(["report", "timeline", "--width", "5", "--db"]).arg(&db).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "a width too narrow is an argument error");
}

#[test]
fn json_gives_the_numbers_behind_the_rows() {
    let (_dir, db) = db();
    let rows: Value = serde_json::from_str(&timeline(&db, &["--format", "json", "--width", "80"])).unwrap();
    let rows = rows.as_array().unwrap();
    let bytes: i64 = rows.iter().map(|r| r["bytes"].as_i64().unwrap()).sum();
    let alerts: i64 = rows.iter().map(|r| r["alerts"].as_i64().unwrap()).sum();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let stored: i64 = conn.query_row("SELECT sum(bytes) FROM egress", [], |r| r.get(0)).unwrap();
    assert_eq!((bytes, alerts), (stored, 4));
    assert!(rows.iter().all(|r| r["seconds"] == 60), "a minute a column at this width");
}

#[test]
fn a_range_without_data_is_no_error() {
    let (_dir, db) = db();
    for range in [&["--since", "2030-01-01", "--until", "2030-01-02"][..], &["--since", "2030-01-01"]] {
        assert!(timeline(&db, range).contains("(none)"), "{range:?}");
        let o = bin().args(["report", "html", "--db"]).arg(&db).args(range).output().unwrap();
        ok("report html", &o);
        assert!(String::from_utf8(o.stdout).unwrap().ends_with("</html>\n"));
    }
    // Only the senders beyond --top: all in one row.
    let text = timeline(&db, &["--top", "0", "--width", "60"]);
    assert!(text.contains("2 others") && text.contains("dns_tunnel, volume"), "{text}");
}

/// Runs `cmd` on a pseudo-terminal 100 columns wide; None without util-linux `script`.
fn on_terminal(cmd: &str, no_color: Option<&str>) -> Option<String> {
    let mut c = Command::new("script");
    c.args(["-qec", &format!("stty cols 100; {cmd}"), "/dev/null"]).env_remove("NO_COLOR");
    if let Some(v) = no_color {
        c.env("NO_COLOR", v);
    }
    let o = c.output().ok()?;
    ok(cmd, &o);
    Some(String::from_utf8_lossy(&o.stdout).replace("\r\n", "\n"))
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let (_dir, db) = db();
    let cmd = format!("'{}' report timeline --db '{}'", env!("CARGO_BIN_EXE_exfilmon"), db.display());
    let Some(coloured) = on_terminal(&cmd, None) else {
        return skip("util-linux `script` is not installed");
    };
    assert!(coloured.contains("\x1b[33m△\x1b[0m"), "medium alerts in yellow: {coloured:?}");
    // Fitted to the terminal's own width.
    assert!(coloured.lines().all(|l| l.replace("\x1b[33m", "").replace("\x1b[0m", "").chars().count() <= 100));
    assert!(coloured.lines().any(|l| l.chars().count() > 80), "the terminal's width was not used");
    for v in ["1", "true"] {
        let plain = on_terminal(&cmd, Some(v)).unwrap();
        assert!(!plain.contains('\x1b'), "NO_COLOR={v}: {plain:?}");
        assert!(plain.contains('△'));
    }
    // An empty NO_COLOR is unset (no-color.org).
    assert!(on_terminal(&cmd, Some("")).unwrap().contains("\x1b[33m"));
    // The HTML report refuses to fill a terminal with markup.
    let html = format!("'{}' report html --db '{}'; echo \"exit $?\"", env!("CARGO_BIN_EXE_exfilmon"), db.display());
    let out = on_terminal(&html, None).unwrap();
    assert!(out.contains("give --output FILE") && out.contains("exit 1"), "{out}");
}
