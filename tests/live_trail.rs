//! Issue 6 on the real kernel: the live monitor's own events (started, reloaded, ruleset
//! missing / changed / restored, stopped), heartbeat lines to syslog, periodic signed
//! checkpoints, and a trail that verifies afterwards. Same lab as tests/live.rs (two network
//! namespaces, the project's ruleset); skips without root, fails under CI=true.
//!
//! Run: `sudo -E cargo test --test live_trail -- --nocapture`

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::lab::{wait_for, Lab};
use common::{bin, report, verify_checkpoint};
use serde_json::Value;

fn kinds(db: &std::path::Path) -> Vec<String> {
    report(db, "events").as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn monitor_events_heartbeats_and_checkpoints_reach_syslog_and_verify() {
    let Some(lab) = Lab::new() else { return };
    let key = lab.path("trail");
    let out = bin().args(["keygen", "--out"]).arg(&key).output().unwrap();
    assert!(out.status.success());
    // A syslog collector on a socket in the lab's directory (reachable from any namespace).
    let sock_path = lab.path("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let collected = Arc::clone(&lines);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        loop {
            match sock.recv(&mut buf) {
                Ok(n) => collected.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return,
            }
        }
    });
    let cfg = lab.path("exfilmon.toml");
    let text = format!(
        "[trail]\nsigning_key = \"{}.key\"\ncheckpoint_interval = \"1s\"\n\
         [monitor]\nruleset_check = \"1s\"\n\
         [[sink]]\ntype = \"syslog\"\naddress = \"unix:{}\"\nheartbeat = \"1s\"\n\
         [[sink]]\ntype = \"jsonl\"\npath = \"{}\"\n",
        key.display(),
        sock_path.display(),
        lab.path("shipped.jsonl").display()
    );
    std::fs::write(&cfg, text).unwrap();
    lab.load_ruleset(&cfg);
    let db = lab.path("live.db");
    let monitor = lab.start_monitor(&cfg, &db, "monitor.log");
    // The local socket gets syslog(3)'s form, `<PRI>Mmm dd hh:mm:ss exfilmon[PID]: JSON`; the
    // record type is the JSON's `type`.
    let body = |l: &str| -> Option<Value> { serde_json::from_str(l.split_once("]: ")?.1).ok() };
    let syslog = |kind: &str| -> Vec<String> {
        lines.lock().unwrap().iter().filter(|l| body(l).is_some_and(|j| j["type"] == kind)).cloned().collect()
    };
    wait_for(Duration::from_secs(10), "two heartbeat lines", || syslog("heartbeat").len() >= 2);
    let beat = &syslog("heartbeat")[0];
    assert!(beat.starts_with("<86>") && beat.contains(" exfilmon["), "authpriv.info: {beat}");
    let json = body(beat).unwrap();
    assert_eq!(json["type"], "heartbeat");
    assert!(json["packets"].is_u64(), "{json}");
    assert!(syslog("event").iter().any(|l| l.contains("\"kind\":\"started\"")), "{:?}", lines.lock().unwrap());

    // The ruleset removed, restored, then an address allow-listed behind the monitor's back.
    assert!(lab.inside(&["nft", "delete", "table", "inet", "exfilmon"]).status.success());
    wait_for(Duration::from_secs(10), "ruleset_missing", || kinds(&db).iter().any(|k| k == "ruleset_missing"));
    lab.load_ruleset(&cfg);
    wait_for(Duration::from_secs(10), "ruleset_restored", || kinds(&db).iter().any(|k| k == "ruleset_restored"));
    assert!(lab.inside(&["nft", "add", "element", "inet", "exfilmon", "allow_v4", "{ 203.0.113.9 }"]).status.success());
    wait_for(Duration::from_secs(10), "ruleset_changed", || kinds(&db).iter().any(|k| k == "ruleset_changed"));
    let changed =
        report(&db, "events").as_array().unwrap().iter().find(|e| e["kind"] == "ruleset_changed").cloned().unwrap();
    assert!(changed["summary"].as_str().unwrap().contains("203.0.113.9"), "{changed}");
    assert!(syslog("event").iter().any(|l| l.contains("ruleset_changed")), "the event left the machine too");

    monitor.signal("HUP");
    wait_for(Duration::from_secs(10), "reloaded", || kinds(&db).iter().any(|k| k == "reloaded"));
    wait_for(Duration::from_secs(10), "a periodic checkpoint", || !syslog("checkpoint").is_empty());
    let (status, log) = monitor.stop();
    assert!(status.success(), "{log}");

    let k = kinds(&db);
    assert_eq!(k.first().map(String::as_str), Some("started"), "{k:?}");
    assert_eq!(k.last().map(String::as_str), Some("stopped"), "{k:?}");
    // The last checkpoint is signed at exit and covers the stopped event.
    let shipped = lab.path("shipped.jsonl");
    let o = verify_checkpoint(&db, Path::new(&format!("{}.pub", key.display())), &shipped);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("links: intact") && !out.contains("rows after the newest"), "{out}");
    let health = report(&db, "health");
    assert!(health[0]["counters"]["sinks"].is_object(), "{health}");
}
