//! A busy server's ordinary day raises no volume alert from serving: `examples/gen_capture`'s
//! mix (a web server answering thousands of clients, postgres streaming to its standby,
//! kernel-made ACKs and RSTs) with the shipped rules alerts only on what was sent out on the
//! server's own initiative (root's backup over ssh, two users' transfers).

mod common;

use std::path::PathBuf;

use common::{alerts_of, bin, skip, Scratch};

/// The example, built as a program (`cargo test` builds examples as test harnesses only).
fn gen_capture() -> Option<PathBuf> {
    let dir = std::env::current_exe().ok()?.parent()?.parent()?.join("examples");
    let built = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--example", "gen_capture", "--manifest-path"])
        .arg(common::repo_file("Cargo.toml"))
        .status()
        .ok()?
        .success();
    let path = dir.join("gen_capture");
    (built && path.exists()).then_some(path)
}

#[test]
fn serving_traffic_never_alerts_and_what_the_server_sends_out_does() {
    let Some(gen) = gen_capture() else {
        return skip("cannot build examples/gen_capture");
    };
    let dir = Scratch::new();
    let capture = dir.path("mixed.pcap");
    let o = std::process::Command::new(gen).args(["--packets", "300000", "--out"]).arg(&capture).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let db = dir.db();
    let o = bin().args(["replay", "--db", &db]).arg(&capture).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let alerts = alerts_of(&db, "volume");
    let who: Vec<Option<i64>> = alerts.iter().map(|a| a["uid"].as_i64()).collect();
    // www-data (33) answers clients, postgres (998) streams to its standby, the kernel's
    // uid-less packets close served connections: none of it alerts.
    for quiet in [Some(33), Some(998), None] {
        assert!(!who.contains(&quiet), "serving alerted for {quiet:?}: {alerts:#?}");
    }
    // root's backup over ssh is a connection the server opened.
    assert!(who.contains(&Some(0)), "root's backup did not alert: {alerts:#?}");
}
