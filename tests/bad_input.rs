//! Bad input to the command line, as a table: each case is one thing a person (or an attacker
//! who controls a file) can hand exfilmon, and each must end in a one-line `exfilmon:` error
//! naming the problem and exit status 1 (2 for invalid arguments, clap's own message) —
//! never a panic, a stack trace, or a silent success.

mod common;

use std::path::Path;

use common::{bin, pcap, Scratch};

/// A pcapng section with one interface of the given link type.
fn pcapng(linktype: u16) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0x0a0d_0d0au32, 28, 0x1a2b_3c4d, 1, 0xffff_ffff, 0xffff_ffff, 28] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for v in [1u32, 20, u32::from(linktype), 65_535, 20] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b
}

/// An ICMP echo in raw IPv4, a valid record to put before damage.
const PING: &[u8] = &[0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 192, 0, 2, 1, 198, 51, 100, 1, 8, 0, 0, 0, 0, 0, 0, 0];

/// Files each case may name, created in a fresh directory: `@name` in a case's arguments
/// becomes that file's path.
fn setup(dir: &Path) {
    let w = |name: &str, data: &[u8]| std::fs::write(dir.join(name), data).unwrap();
    w("good.pcap", &pcap(101, &[PING]));
    w("empty.pcap", b"");
    w("text.pcap", b"this is not a capture file at all\n");
    w("short-header.pcap", &pcap(101, &[])[..10]);
    let mut huge = pcap(101, &[]);
    huge.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0xff, 0xff, 0xff, 0xf0, 0xff, 0xff, 0xff]);
    huge.extend_from_slice(&[0x45; 64]);
    w("huge-record.pcap", &huge);
    let cut = pcap(101, &[PING, PING]);
    w("cut.pcap", &cut[..cut.len() - 5]);
    w("token-ring.pcap", &pcap(6, &[b"abc"]));
    w("user0.pcapng", &pcapng(147));
    std::fs::create_dir(dir.join("a-directory")).unwrap();
    w("not-utf8.toml", b"[dns]\nallow_extra = [\"\xff\xfe\"]\n");
    w("syntax.toml", b"[[volume]\nwindow = \"10m\"\n");
    w("unknown-key.toml", b"[dns]\nmax_pair = 3\n");
    w("bad-size.toml", b"[[volume]]\nwindow = \"10m\"\nbytes = \"lots\"\n");
    w("bad-duration.toml", b"[[volume]]\nwindow = \"soon\"\nbytes = \"1MiB\"\n");
    w("zero.toml", b"[dns]\nmax_pairs = 0\n");
    w("wrong-type.toml", b"[nflog]\ngroup = \"seven\"\n");
    w("snaplen.toml", b"[nflog]\nsnaplen = 8\n");
    w("no-rules.toml", b"volume = []\n");
    w("bad-domain.toml", b"[dns]\nallow_extra = [\"evil\\u001b[2J.com\"]\n");
    // Durations humantime takes but no clock does (overflowing at the end of a replay).
    let long = "\"500000000000y\"";
    w("long-grace.toml", format!("[monitor]\ndelivery_grace = {long}\n").as_bytes());
    w("long-checkpoint.toml", format!("[trail]\ncheckpoint_interval = {long}\n").as_bytes());
    let jsonl = format!("[[sink]]\ntype = \"jsonl\"\npath = \"{}/out.jsonl\"\n", dir.display());
    w("long-timeout.toml", format!("{jsonl}timeout = {long}\n").as_bytes());
    w("long-backoff.toml", format!("{jsonl}backoff = {long}\n").as_bytes());
    let syslog = "[[sink]]\ntype = \"syslog\"\naddress = \"udp:127.0.0.1:9\"\n";
    w("long-heartbeat.toml", format!("{syslog}heartbeat = {long}\n").as_bytes());
    w("a-file", b"x");
    std::os::unix::fs::symlink(dir.join("a-file"), dir.join("link.jsonl")).unwrap();
    let to_link = format!("[[sink]]\ntype = \"jsonl\"\npath = \"{}/link.jsonl\"\n", dir.display());
    w("jsonl-symlink.toml", to_link.as_bytes());
    w("notes.txt", &[b'x'; 4096]);
    let sqlite =
        |name: &str, sql: &str| rusqlite::Connection::open(dir.join(name)).unwrap().execute_batch(sql).unwrap();
    sqlite("other-app.db", "CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep me');");
    sqlite("good.db", include_str!("../schema.sql"));
    sqlite(
        "newer.db",
        "CREATE TABLE exfilmon_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         INSERT INTO exfilmon_meta VALUES ('schema', 'exfilmon'); CREATE TABLE future (x); PRAGMA user_version = 99;",
    );
    // A database cut after its first page: the header says more pages follow.
    sqlite("cut.db", "CREATE TABLE a (x); CREATE TABLE b (y); CREATE TABLE c (z); PRAGMA user_version = 1;");
    let full = std::fs::read(dir.join("cut.db")).unwrap();
    w("cut.db", &full[..100]);
}

/// (what, arguments, exit status, text the one-line error must contain)
const CASES: &[(&str, &[&str], i32, &str)] = &[
    ("missing capture", &["replay", "@none.pcap"], 1, "cannot open @none.pcap"),
    ("empty capture", &["replay", "@empty.pcap"], 1, "@empty.pcap is empty"),
    ("directory as capture", &["replay", "@a-directory"], 1, "@a-directory is a directory, not a capture file"),
    ("text as capture", &["replay", "@text.pcap"], 1, "not a pcap or pcapng capture"),
    ("truncated capture header", &["replay", "@short-header.pcap"], 1, "@short-header.pcap is not a pcap or pcapng"),
    ("huge record length", &["replay", "@huge-record.pcap"], 1, "record 1 claims more than 1 MiB"),
    ("record cut short", &["replay", "@cut.pcap"], 1, "record 2 is cut short"),
    ("unknown pcap link type", &["replay", "@token-ring.pcap"], 1, "unsupported link type 6 (IEEE 802.5 Token Ring)"),
    ("unknown pcapng link type", &["replay", "@user0.pcapng"], 1, "unsupported link type 147"),
    ("missing config", &["replay", "--config", "@none.toml", "@good.pcap"], 1, "cannot read config @none.toml"),
    (
        "directory as config",
        &["replay", "--config", "@a-directory", "@good.pcap"],
        1,
        "cannot read config @a-directory",
    ),
    ("config not UTF-8", &["replay", "--config", "@not-utf8.toml", "@good.pcap"], 1, "valid UTF-8"),
    ("config syntax", &["replay", "--config", "@syntax.toml", "@good.pcap"], 1, "@syntax.toml:1:"),
    ("config unknown key", &["replay", "--config", "@unknown-key.toml", "@good.pcap"], 1, "unknown field `max_pair`"),
    ("config bad size", &["replay", "--config", "@bad-size.toml", "@good.pcap"], 1, "@bad-size.toml:3:"),
    ("config bad duration", &["replay", "--config", "@bad-duration.toml", "@good.pcap"], 1, "@bad-duration.toml:2:"),
    ("config zero cap", &["replay", "--config", "@zero.toml", "@good.pcap"], 1, "must be at least 1"),
    ("config wrong type", &["replay", "--config", "@wrong-type.toml", "@good.pcap"], 1, "@wrong-type.toml:2:"),
    ("config snaplen", &["replay", "--config", "@snaplen.toml", "@good.pcap"], 1, "snaplen 8 is too small"),
    (
        "config without rules",
        &["replay", "--config", "@no-rules.toml", "@good.pcap"],
        1,
        "at least one [[volume]] rule",
    ),
    ("config grace too long", &["replay", "--config", "@long-grace.toml", "@good.pcap"], 1, "at most 100 years"),
    (
        "config checkpoint interval too long",
        &["replay", "--config", "@long-checkpoint.toml", "@good.pcap"],
        1,
        "@long-checkpoint.toml:2:",
    ),
    (
        "sink timeout too long",
        &["replay", "--config", "@long-timeout.toml", "@good.pcap"],
        1,
        "timeout: invalid duration",
    ),
    (
        "sink backoff too long",
        &["replay", "--config", "@long-backoff.toml", "@good.pcap"],
        1,
        "backoff: invalid duration",
    ),
    (
        "syslog heartbeat too long",
        &["replay", "--config", "@long-heartbeat.toml", "@good.pcap"],
        1,
        "heartbeat: invalid duration \"500000000000y\": at most 100 years",
    ),
    (
        "jsonl sink path a symlink",
        &["replay", "--config", "@jsonl-symlink.toml", "@good.pcap"],
        1,
        "@link.jsonl is a symbolic link",
    ),
    ("config hostile domain", &["replay", "--config", "@bad-domain.toml", "@good.pcap"], 1, "is not a domain name"),
    (
        "database under a file",
        &["replay", "--db", "@a-file/x.db", "@good.pcap"],
        1,
        "cannot open database @a-file/x.db",
    ),
    (
        "database under a file, deeper",
        &["replay", "--db", "@a-file/sub/x.db", "@good.pcap"],
        1,
        "cannot create database directory",
    ),
    ("directory as database", &["replay", "--db", "@a-directory", "@good.pcap"], 1, "is a directory"),
    (
        "database not SQLite",
        &["replay", "--db", "@notes.txt", "@good.pcap"],
        1,
        "@notes.txt is not an exfilmon database",
    ),
    (
        "another program's database",
        &["replay", "--db", "@other-app.db", "@good.pcap"],
        1,
        "another program's SQLite database",
    ),
    ("database from a newer schema", &["replay", "--db", "@newer.db", "@good.pcap"], 1, "newer than this exfilmon"),
    ("report on a newer schema", &["report", "--db", "@newer.db"], 1, "newer than this exfilmon"),
    ("report on a missing database", &["report", "--db", "@none.db"], 1, "@none.db does not exist"),
    ("report on another program's database", &["report", "--db", "@other-app.db"], 1, "another program's"),
    ("truncated database", &["report", "--db", "@cut.db"], 1, "database @cut.db is damaged"),
    ("report bad time", &["report", "--db", "@good.db", "--since", "last tuesday"], 1, "--since"),
    ("report age past any date", &["report", "--db", "@good.db", "--since", "300000y"], 1, "--since: invalid duration"),
    ("report age past u64 seconds", &["report", "--db", "@good.db", "--until", "18446744073709551615s"], 1, "--until"),
    (
        "html page under a file",
        &["report", "html", "--db", "@good.db", "--output", "@a-file/page.html"],
        1,
        "cannot write @a-file/page.html",
    ),
    ("timeline too narrow", &["report", "timeline", "--db", "@good.db", "--width", "12"], 2, "--width"),
    ("missing audit log", &["replay", "--audit-log", "@none.log", "@good.pcap"], 1, "@none.log"),
    ("verify a non-database", &["verify", "--db", "@notes.txt"], 1, "not an exfilmon database"),
    ("no capture named", &["replay"], 2, "required"),
    ("unknown format", &["report", "--format", "xml"], 2, "invalid value 'xml'"),
];

#[test]
fn every_bad_input_is_a_one_line_error() {
    assert!(CASES.len() >= 20);
    let mut failed = Vec::new();
    for (what, args, status, needle) in CASES {
        // A fresh directory per case: a case that wrongly succeeded must not change the next.
        let dir = Scratch::new();
        setup(dir.root());
        let at = |s: &str| s.replace('@', &format!("{}/", dir.root().display()));
        let mut cmd = bin();
        cmd.args(args.iter().map(|a| at(a))).env("RUST_BACKTRACE", "1");
        if !args.contains(&"--db") {
            cmd.args(["--db", &at("@fresh.db")]);
        }
        let o = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        let needle = at(needle);
        let first = err.lines().next().unwrap_or("");
        let problem = if err.contains("panicked") || err.contains("stack backtrace") {
            Some("panicked")
        } else if o.status.code() != Some(*status) {
            Some("wrong exit status")
        } else if !err.contains(&needle) {
            Some("message does not name the problem")
        } else if *status == 1 && !(first.starts_with("exfilmon: ") && err.trim_end().lines().count() == 1) {
            Some("not one `exfilmon:` line")
        } else if *status == 2 && !first.starts_with("error: ") {
            Some("not clap's usage error")
        } else {
            None
        };
        if std::env::var_os("SHOW_ERRORS").is_some() {
            eprintln!("{what}: {}", err.trim_end());
        }
        if let Some(problem) = problem {
            failed.push(format!("{what}: {problem} (status {:?}, want {status}, {needle:?}):\n{err}", o.status.code()));
        }
    }
    assert!(failed.is_empty(), "{} of {} cases failed:\n{}", failed.len(), CASES.len(), failed.join("\n"));
}

/// Refusing a database of another program leaves it exactly as it was: no exfilmon tables,
/// no WAL mode.
#[test]
fn another_programs_database_is_left_untouched() {
    let dir = Scratch::new();
    setup(dir.root());
    let db = dir.path("other-app.db");
    let before = std::fs::read(&db).unwrap();
    let o =
        bin().args(["replay", "--db", db.to_str().unwrap(), dir.path("good.pcap").to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read(&db).unwrap(), before);
    assert!(!dir.path("other-app.db-wal").exists());
}

/// Output nobody can take: to a full disk (`/dev/full`) a one-line error and exit 1; to a
/// reader that has gone away (a closed pipe, `exfilmon report | head -1`) a quiet exit 0, as
/// ripgrep does. Never a panic, whichever command prints.
#[test]
fn output_to_a_full_disk_or_a_closed_pipe() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let at = |s: &str| s.replace('@', &format!("{}/", dir.path().display()));
    let commands: &[&[&str]] = &[
        &["replay", "@good.pcap", "--db", "@replay-N.db"],
        &["verify", "--db", "@good.db"],
        &["keygen", "--out", "@key-N"],
        &["report", "--db", "@good.db"],
        &["report", "--db", "@good.db", "--format", "csv"],
        &["report", "users", "--db", "@good.db", "--format", "json"],
        &["nft"],
        &["audit-rules"],
    ];
    let mut failed = Vec::new();
    let mut n = 0;
    for args in commands {
        for full in [true, false] {
            n += 1;
            // Fresh files per run: keygen never overwrites, replay skips what it has seen.
            let args: Vec<String> = args.iter().map(|a| at(a).replace("-N", &format!("-{n}"))).collect();
            let stdout = if full {
                std::process::Stdio::from(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap())
            } else {
                let (reader, writer) = nix::unistd::pipe().unwrap();
                drop(reader);
                std::process::Stdio::from(writer)
            };
            let o = bin().args(&args).stdout(stdout).env("RUST_BACKTRACE", "1").output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            let what = format!("{} to {}", args.join(" "), if full { "/dev/full" } else { "a closed pipe" });
            let problem = if err.contains("panicked") {
                Some("panicked")
            } else if full && o.status.code() != Some(1) {
                Some("not exit 1")
            } else if full
                && !(err.starts_with("exfilmon: cannot write to standard output: No space left on device")
                    && err.trim_end().lines().count() == 1)
            {
                Some("not one `exfilmon:` line naming standard output")
            } else if !full && (o.status.code() != Some(0) || !err.is_empty()) {
                Some("not a quiet exit 0")
            } else {
                None
            };
            if let Some(problem) = problem {
                failed.push(format!("{what}: {problem} (status {:?}):\n{err}", o.status.code()));
            }
        }
    }
    assert!(failed.is_empty(), "{} of {n} runs failed:\n{}", failed.len(), failed.join("\n"));
}
