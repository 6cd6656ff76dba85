//! The Debian package (issue 14): scripts/deb.sh builds it (from the test's binary, so no
//! release build here); it installs with `dpkg -i`, runs, upgrades over itself keeping a locally
//! edited conffile, and removes and purges cleanly. Needs root and dpkg: it installs the
//! package on this machine (and purges it at the end), so it refuses to run where exfilmon is
//! already installed.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn sh(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn ok(cmd: &str, args: &[&str]) -> String {
    let o = sh(cmd, args);
    assert!(o.status.success(), "{cmd} {args:?}: {}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

fn build(version: &str) -> String {
    let o = Command::new("bash")
        .arg(repo_file("scripts/deb.sh"))
        .args(["--binary", EXFILMON, "--version", version])
        .output()
        .unwrap();
    assert!(o.status.success(), "deb.sh: {}", stderr(&o));
    let deb = stdout(&o).lines().last().unwrap().to_string();
    assert!(
        deb.ends_with(&format!("exfilmon_{version}_{}.deb", ok("dpkg", &["--print-architecture"]).trim())),
        "{deb}"
    );
    deb
}

fn installed() -> bool {
    sh("dpkg-query", &["-W", "-f=${Status}", "exfilmon"]).stdout.starts_with(b"install ok installed")
}

struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = sh("dpkg", &["--purge", "exfilmon"]);
    }
}

#[test]
fn package_installs_runs_upgrades_removes_and_purges() {
    if !nix::unistd::geteuid().is_root() || sh("dpkg-deb", &["--version"]).status.code().is_none() {
        return skip("installing a .deb needs root and dpkg");
    }
    if installed() {
        return skip("exfilmon is installed on this machine already; not replacing it");
    }
    let first = build("0.1.0~test1");
    let files = ok("dpkg-deb", &["--contents", &first]);
    for f in [
        "./usr/bin/exfilmon",
        "./usr/lib/systemd/system/exfilmon.service",
        "./usr/lib/systemd/system/exfilmon-metrics.timer",
        "./usr/lib/sysusers.d/exfilmon.conf",
        "./etc/exfilmon/exfilmon.toml",
        "./usr/share/man/man1/exfilmon.1.gz",
        "./usr/share/man/man1/exfilmon-report-alerts.1.gz",
        "./usr/share/man/man1/exfilmon-check-config.1.gz",
        "./usr/share/man/man1/exfilmon-status.1.gz",
        "./usr/share/man/man1/exfilmon-metrics.1.gz",
        "./usr/share/bash-completion/completions/exfilmon",
        "./usr/share/zsh/vendor-completions/_exfilmon",
        "./usr/share/fish/vendor_completions.d/exfilmon.fish",
    ] {
        assert!(files.lines().any(|l| l.ends_with(f)), "{f} not in the package:\n{files}");
    }
    assert!(!files.contains("-help"), "no pages for clap's help subcommand:\n{files}");
    assert_eq!(ok("dpkg-deb", &["--info", &first, "conffiles"]).trim(), "/etc/exfilmon/exfilmon.toml");

    let _purge = Purge;
    ok("dpkg", &["-i", &first]);
    assert!(installed());
    let version = ok("/usr/bin/exfilmon", &["--version"]);
    assert!(version.starts_with("exfilmon "), "{version}");
    // The shipped config and unit agree: check-config reads /etc/exfilmon/exfilmon.toml.
    let checked = ok("/usr/bin/exfilmon", &["check-config"]);
    assert!(checked.contains("/etc/exfilmon/exfilmon.toml parses"), "{checked}");
    let unit = std::fs::read_to_string("/usr/lib/systemd/system/exfilmon.service").unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/exfilmon run --config /etc/exfilmon/exfilmon.toml"), "{unit}");
    let user = ok("getent", &["passwd", "exfilmon"]);
    assert!(user.contains(":/var/lib/exfilmon:") && user.trim_end().ends_with("nologin"), "{user}");
    let state = std::fs::metadata("/var/lib/exfilmon").unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&state.permissions()) & 0o777, 0o750);
    assert!(Path::new("/usr/share/man/man1/exfilmon-report.1.gz").exists());

    // The admin enables the example's jsonl sink; an upgrade keeps the edit.
    let conf = "/etc/exfilmon/exfilmon.toml";
    let edited = format!(
        "{}\n# edited by the admin\n[[sink]]\ntype = \"jsonl\"\npath = \"/var/log/exfilmon/alerts.jsonl\"\n",
        std::fs::read_to_string(conf).unwrap()
    );
    std::fs::write(conf, &edited).unwrap();
    let systemd = Path::new("/run/systemd/system").exists();
    if systemd {
        start_the_unit();
    } else {
        // Not a skip: the package is tested all the same; only the unit is not started.
        eprintln!("NOTE: systemd is not running here: the installed unit was not started");
    }
    let second = build("0.1.0~test2");
    ok("dpkg", &["-i", &second]);
    assert_eq!(ok("dpkg-query", &["-W", "-f=${Version}", "exfilmon"]), "0.1.0~test2");
    assert_eq!(std::fs::read_to_string(conf).unwrap(), edited);
    ok("/usr/bin/exfilmon", &["check-config"]);
    if systemd {
        // The upgrade restarted the running monitor.
        wait(|| sh("systemctl", &["is-active", "exfilmon"]).stdout.starts_with(b"active"), "active after the upgrade");
    }
    // And installing the same version again works too.
    ok("dpkg", &["-i", &second]);

    ok("dpkg", &["-r", "exfilmon"]);
    assert!(!Path::new("/usr/bin/exfilmon").exists());
    assert!(!Path::new("/usr/lib/systemd/system/exfilmon.service").exists());
    assert!(Path::new(conf).exists(), "remove keeps the conffile");
    ok("dpkg", &["-P", "exfilmon"]);
    for gone in ["/etc/exfilmon", "/var/lib/exfilmon", "/usr/share/man/man1/exfilmon.1.gz"] {
        assert!(!Path::new(gone).exists(), "{gone} left after purge");
    }
    assert!(sh("dpkg-query", &["-W", "exfilmon"]).stdout.is_empty() || !installed());
    // Debian leaves system users after a purge (their uid may own files elsewhere).
    assert!(sh("getent", &["passwd", "exfilmon"]).status.success());
}

fn wait(mut done: impl FnMut() -> bool, what: &str) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "timed out waiting: {what}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The installed unit runs with the shipped config plus the example's jsonl sink: the sink's
/// file in /var/log/exfilmon is writable under ProtectSystem=strict, the monitor reports
/// running, and its messages reach the journal.
fn start_the_unit() {
    ok("systemctl", &["start", "exfilmon"]);
    let log = "/var/log/exfilmon/alerts.jsonl";
    wait(
        || std::fs::read_to_string(log).is_ok_and(|t| t.contains("\"started\"")),
        "the started event in the jsonl sink",
    );
    wait(|| sh("/usr/bin/exfilmon", &["status"]).status.code() != Some(2), "status not CRITICAL");
    let status = stdout(&sh("/usr/bin/exfilmon", &["status"]));
    assert!(status.contains("monitor running"), "{status}");
    let journal = ok("journalctl", &["-u", "exfilmon", "--no-pager", "-o", "cat"]);
    assert!(journal.contains("monitoring NFLOG group"), "{journal}");
    let owner = std::fs::metadata(log).unwrap();
    let user = ok("id", &["-u", "exfilmon"]);
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&owner).to_string(), user.trim(), "the unit runs as exfilmon");
}
