//! Least privilege of the shipped service unit: `systemd-analyze security` must rate
//! dist/exfilmon.service "OK" or better (exposure at most 4.9 of 10; it scores 2.0), and the
//! unit keeps the one capability the daemon needs. The daemon's own side — the database 0640
//! in a 0750 directory, running as the config's `user` after binding the NFLOG group — is
//! tested in tests/replay.rs (`database_is_created_private`) and tests/live.rs
//! (`sighup_reloads_the_configuration_as_an_unprivileged_user`).
//!
//! Needs `systemd-analyze` (Debian's `systemd`, in scripts/test.sh): skips with a printed
//! reason without it, fails under CI=true.

mod common;

use std::process::Command;

use common::{repo_file, skip};

#[test]
fn shipped_unit_rates_ok_or_better_and_keeps_cap_net_admin() {
    let unit = repo_file("dist/exfilmon.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    for line in ["CapabilityBoundingSet=CAP_NET_ADMIN", "AmbientCapabilities=CAP_NET_ADMIN", "NoNewPrivileges=yes"] {
        assert!(text.lines().any(|l| l == line), "{line} missing from the unit");
    }
    let out = match Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager", "--threshold=49"])
        .arg(&unit)
        .output()
    {
        Ok(out) => out,
        Err(e) => return skip(&format!("systemd-analyze: {e} (Debian package `systemd`)")),
    };
    let report = String::from_utf8_lossy(&out.stdout);
    let overall = report.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_default();
    println!("{overall}");
    // --threshold=49: exit status non-zero when the exposure is above 4.9, "MEDIUM" or worse.
    assert!(out.status.success(), "{overall}\n{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(overall.contains(" OK") || overall.contains("SAFE") || overall.contains("PERFECT"), "{overall}");
}
