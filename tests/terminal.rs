//! Terminal safety: names that come from the watched users — DNS query names, audit fields
//! (program names, command lines), capture file names — carry ANSI escape sequences, carriage
//! returns and invalid UTF-8 here, and none of those raw bytes may reach a terminal through
//! any human-readable output. JSON must stay valid JSON.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Output;

use common::{bin, fixture, pcap, Scratch};
use serde_json::Value;

/// The first byte a terminal could act on: anything but printable ASCII, newline and tab.
fn unsafe_byte(out: &[u8]) -> Option<(usize, u8)> {
    out.iter().copied().enumerate().find(|&(_, b)| !((0x20..0x7f).contains(&b) || b == b'\n' || b == b'\t'))
}

fn assert_safe(what: &str, out: &[u8]) {
    if let Some((at, b)) = unsafe_byte(out) {
        let from = at.saturating_sub(60);
        panic!(
            "{what}: raw byte {b:#04x} at {at}: {:?}",
            String::from_utf8_lossy(&out[from..(at + 20).min(out.len())])
        );
    }
}

/// Messages on stderr may keep non-ASCII text (a U+FFFD for a file name's invalid byte), but
/// no control character but the newline.
fn assert_safe_message(what: &str, err: &[u8]) {
    let text = String::from_utf8_lossy(err);
    let bidi = |c: char| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if let Some(c) = text.chars().find(|&c| (c.is_control() && c != '\n') || bidi(c)) {
        panic!("{what}: raw {c:?} in {text:?}");
    }
}

/// What a spreadsheet runs as a formula at the start of a cell (OWASP, CSV injection).
const FORMULA: &[char] = &['=', '+', '-', '@', '\t', '\r'];

/// No CSV cell starts a formula.
fn assert_no_formula(what: &str, out: &[u8]) {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(out);
    for record in reader.records() {
        let record = record.unwrap_or_else(|e| panic!("{what}: invalid CSV: {e}"));
        if let Some(cell) = record.iter().find(|c| c.starts_with(FORMULA)) {
            panic!("{what}: a cell starts a formula: {cell:?}");
        }
    }
}

fn ok(what: &str, o: &Output) {
    assert!(o.status.success(), "{what}: {}", String::from_utf8_lossy(&o.stderr));
}

/// Runs every report in every format and checks each output; returns the JSON of `what`.
fn check_reports(db: &str, reports: &[&str]) {
    for report in reports {
        for format in ["table", "csv", "json"] {
            let what = format!("report {report} --format {format}");
            let o = bin().args(["report", report, "--format", format, "--db"]).arg(db).output().unwrap();
            ok(&what, &o);
            assert_safe(&what, &o.stdout);
            assert_safe_message(&format!("{what} (stderr)"), &o.stderr);
            if format == "json" {
                serde_json::from_slice::<Value>(&o.stdout).unwrap_or_else(|e| panic!("{what}: invalid JSON: {e}"));
            }
            if format == "csv" {
                assert_no_formula(&what, &o.stdout);
            }
        }
    }
}

/// A DNS query for a name given as raw labels, in raw IPv4/UDP to port 53.
fn dns_packet(labels: &[&[u8]], id: u16) -> Vec<u8> {
    let mut dns = vec![(id >> 8) as u8, id as u8, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in labels {
        dns.push(l.len() as u8);
        dns.extend_from_slice(l);
    }
    dns.extend_from_slice(&[0, 0, 1, 0, 1]);
    let udp_len = 8 + dns.len();
    let ip_len = 20 + udp_len;
    let mut p =
        vec![0x45, 0, (ip_len >> 8) as u8, ip_len as u8, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 10, 198, 51, 100, 53];
    p.extend_from_slice(&(40_000 + id).to_be_bytes());
    p.extend_from_slice(&53u16.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&dns);
    p
}

/// Hostile labels: screen clear and colour, an OSC title set ended by BEL, a carriage return
/// that would overwrite the line, C1 CSI, invalid UTF-8, a newline, a backslash; and the starts
/// of spreadsheet formulas, for CSV.
const HOSTILE: &[&[u8]] = &[
    b"\x1b[2J\x1b[31mred",
    b"a\rb\x1b]0;pwned\x07",
    b"\xff\xfe\xc3",
    b"x\ny",
    b"\x9b31m",
    b"back\\slash",
    b"tab\there",
    b"=HYPERLINK(\"http://x\",\"y\")",
    b"+SUM(1)",
    b"-2+3",
    b"@SUM(1)",
];

#[test]
fn hostile_dns_names_never_reach_the_terminal() {
    let dir = Scratch::new();
    let mut records = Vec::new();
    let mut id = 0;
    // Under a plain domain, under one whose own label is hostile, and as the whole name.
    for (i, h) in HOSTILE.iter().enumerate() {
        for domain in [&[&b"evil"[..], b"com"][..], &[b"ev\x1b[8mil", b"com"], &[]] {
            id += 1;
            let mut labels = vec![*h];
            let fresh = format!("q{i}x{id}k7w2m9v4p1z8n3b6c5x0l4r7t2y9u6i3o8").into_bytes();
            labels.push(&fresh);
            labels.extend_from_slice(domain);
            records.push(dns_packet(&labels, id));
        }
    }
    let capture = dir.path("dns.pcap");
    let records: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    std::fs::write(&capture, pcap(101, &records)).unwrap();
    // Thresholds low enough that these few names raise dns_tunnel alerts carrying them.
    let config = dir.path("exfilmon.toml");
    std::fs::write(
        &config,
        "[dns]\nencoded_names = 2\nunique_names = 3\nunique_bytes = \"64B\"\nescalate_bytes = \"128B\"\n",
    )
    .unwrap();
    let db = dir.db();
    let o = bin().arg("replay").arg(&capture).arg("--config").arg(&config).arg("--db").arg(&db).output().unwrap();
    ok("replay", &o);
    assert_safe("replay", &o.stdout);

    let conn = rusqlite::Connection::open(&db).unwrap();
    let alerts: i64 =
        conn.query_row("SELECT count(*) FROM alerts WHERE kind = 'dns_tunnel'", [], |r| r.get(0)).unwrap();
    assert!(alerts >= 2, "the hostile names must reach the alerts to test their rendering: {alerts}");
    check_reports(&db, &["summary", "alerts", "users", "destinations", "dns"]);

    // The names are there, escaped: the JSON holds the escapes, not the bytes.
    let o = bin().args(["report", "dns", "--format", "json", "--db"]).arg(&db).output().unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains(r"\\x1b[8mil"), "escaped domain missing: {text}");
    let o = bin().args(["report", "alerts", "--format", "json", "--db"]).arg(&db).output().unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains(r"\\x1b[2J"), "escaped sample name missing: {text}");
    // And in CSV, kept from being a formula by a leading quote.
    let o = bin().args(["report", "dns", "--format", "csv", "--db"]).arg(&db).output().unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("'=hyperlink") && text.contains("'@sum(1)"), "formula names missing: {text}");
}

/// Hex-encodes a value the way auditd writes untrusted strings in RAW logs.
fn audit_hex(b: &[u8]) -> String {
    b.iter().map(|c| format!("{c:02X}")).collect()
}

#[test]
fn hostile_audit_fields_never_reach_the_terminal() {
    let dir = Scratch::new();
    let log = std::fs::read_to_string(fixture("sensitive/audit-raw.log")).unwrap();
    // The user controls the program's name, path and command line, and the working directory.
    let exe = audit_hex(b"/tmp/\x1b[2J\x1b]0;pwned\x07sc\rp\xff");
    let comm = audit_hex(b"@s\x1b[31mcp");
    let title = audit_hex(b"=scp\x00\x1b[8m/secret\r\n\x9bfake");
    let mut hostile = String::new();
    for line in log.lines() {
        let line = line
            .replace("exe=\"/usr/bin/scp\"", &format!("exe={exe}"))
            .replace("comm=\"scp\"", &format!("comm={comm}"));
        let line = match line.split_once("proctitle=") {
            Some((head, _)) if line.starts_with("type=PROCTITLE") => {
                format!("{head}proctitle={title}")
            }
            _ => line,
        };
        hostile.push_str(&line);
        hostile.push('\n');
    }
    assert!(hostile.contains(&exe), "the fixture has no scp to rename");
    let audit_log = dir.path("audit.log");
    std::fs::write(&audit_log, hostile).unwrap();
    let db = dir.db();
    let o = bin()
        .arg("replay")
        .arg(fixture("sensitive/egress.pcap"))
        .arg("--audit-log")
        .arg(&audit_log)
        .arg("--config")
        .arg(fixture("sensitive/exfilmon.toml"))
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    ok("replay", &o);
    assert_safe("replay", &o.stdout);
    assert_safe_message("replay (stderr)", &o.stderr);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let hits: i64 =
        conn.query_row("SELECT count(*) FROM alerts WHERE details LIKE '%pwned%'", [], |r| r.get(0)).unwrap();
    assert!(hits > 0, "the renamed program must reach an alert to test its rendering");
    check_reports(&db, &["summary", "alerts", "files"]);
    let o = bin().args(["report", "files", "--format", "csv", "--db"]).arg(&db).output().unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains(",'@s\\x1b[31mcp,") && text.contains(",'=scp"), "formula fields missing: {text}");
}

#[test]
fn hostile_capture_file_names_are_escaped() {
    let dir = Scratch::new();
    let name = std::ffi::OsStr::from_bytes(b"\x1b[2J\x1b]0;pwned\x07\rcap\xff.pcap");
    let capture = dir.root().join(name);
    std::fs::copy(fixture("raw.pcap"), &capture).unwrap();
    let db = dir.db();
    // Replayed, then skipped as already seen (the message names both files), then forced.
    for extra in [None, None, Some("--force")] {
        let o = bin().arg("replay").arg(&capture).args(extra).arg("--db").arg(&db).output().unwrap();
        ok("replay", &o);
        assert_safe("replay", &o.stdout);
        assert_safe_message("replay (stderr)", &o.stderr);
    }
    // Errors naming the file: a directory of that name, then a missing file.
    let missing = dir.root().join(std::ffi::OsStr::from_bytes(b"gone\x1b[31m\r.pcap"));
    for path in [dir.root().join(name).join(""), missing] {
        let o = bin().arg("replay").arg(&path).arg("--db").arg(&db).output().unwrap();
        assert_eq!(o.status.code(), Some(1));
        assert_safe_message("replay error (stderr)", &o.stderr);
    }
    check_reports(&db, &["summary", "alerts", "users", "destinations"]);

    // The progress bar names the capture being read: on a terminal only, so here with stderr
    // on a pseudo-terminal, into a fresh database.
    let shown = replay_on_a_terminal(&capture, &dir.path("bar.db"));
    let text = String::from_utf8_lossy(&shown);
    assert!(text.contains("cap"), "the bar was not drawn: {text:?}");
    for raw in ["\x1b]0;", "\x07", "\x1b[2J"] {
        assert!(!text.contains(raw), "raw {raw:?} reached the terminal: {text:?}");
    }
    assert!(text.contains(r"\x1b[2J\x1b]0;pwned\x07\x0dcap"), "{text:?}");
}

/// What a successful replay of `capture` into `db` draws on its terminal (stderr).
fn replay_on_a_terminal(capture: &Path, db: &Path) -> Vec<u8> {
    use std::io::Read;
    let size = nix::pty::Winsize { ws_row: 24, ws_col: 200, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = nix::pty::openpty(&size, None).unwrap();
    // The Command, and with it the pseudo-terminal's other end, goes once the child runs:
    // reading then ends when the child has exited.
    let mut child = bin()
        .arg("replay")
        .arg(capture)
        .arg("--db")
        .arg(db)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::from(pty.slave))
        .spawn()
        .unwrap();
    let mut terminal = std::fs::File::from(pty.master);
    let mut shown = Vec::new();
    let mut buf = [0; 4096];
    // EIO once the last writer is gone.
    while let Ok(n @ 1..) = terminal.read(&mut buf) {
        shown.extend_from_slice(&buf[..n]);
    }
    assert!(child.wait().unwrap().success());
    shown
}
