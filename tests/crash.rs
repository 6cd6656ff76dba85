//! Crash safety: `exfilmon run` killed with SIGKILL at random moments under load, twenty times
//! in a row on the same database. After each kill the database opens, `PRAGMA integrity_check`
//! says ok, `exfilmon verify` passes, and every alert the daemon had reported as stored is
//! still there. "Reported as stored" is the JSON Lines sink's file: the writer hands a record
//! to the sinks only after the transaction that stored it committed.
//!
//! Load: as two users, DNS queries with fresh encoded-looking names under ever-new domains
//! (a dns_tunnel alert every dozen queries) and bursts of UDP (a volume alert per burst), from
//! a generator that keeps running across the monitor's restarts. Needs root like tests/live.rs;
//! skips with a printed reason otherwise (a failure under CI=true).
//!
//! Run: `sudo -E cargo test --test crash -- --nocapture` (prints the seed of the kill times;
//! CRASH_SEED=N repeats them).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::lab::{wait_exit, wait_for, Lab, USERS};
use common::{bin, report};
use serde_json::Value;

const KILLS: usize = 20;

/// DNS queries (a fresh 40-character hex label under `tN-D.test`, twelve per domain)
/// and every few seconds a 200 KB UDP burst to the discard port, until killed.
const GENERATOR: &str = r#"
import os, socket, struct, sys, time
peer, tag = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
i = 0
last_burst = 0.0
while True:
    domain = b"%s-%d" % (tag.encode(), i // 12)
    q = struct.pack(">HHHHHH", i & 0xffff, 0x0100, 1, 0, 0, 0)
    for label in (os.urandom(20).hex().encode(), domain, b"test"):
        q += bytes([len(label)]) + label
    q += b"\x00\x00\x01\x00\x01"
    s.sendto(q, (peer, 53))
    i += 1
    if time.time() - last_burst > 3:
        last_burst = time.time()
        for _ in range(200):
            s.sendto(b"\x00" * 1000, (peer, 9))
    time.sleep(0.004)
"#;

/// Kill times from a small LCG, so a failing run can be repeated with its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// The alerts in the sink's file, keyed by what `report alerts` also shows.
fn delivered(sink: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(sink).unwrap_or_default();
    // The last line may be cut by the kill: only whole lines count.
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("sink line {l:?}: {e}")))
        .filter(|r| r["type"] == "alert")
        .map(|r| key(&r))
        .collect()
}

fn key(a: &Value) -> String {
    format!("{} {} {} {} {}", a["ts"], a["kind"], a["dst"], a["bytes"], a["summary"])
}

fn verify_exists() -> bool {
    bin().args(["verify", "--help"]).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap().success()
}

#[test]
fn sigkill_under_load_twenty_times_loses_no_stored_alert() {
    let Some(mut lab) = Lab::new() else { return };
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64);
    println!("CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let sink = lab.path("alerts.jsonl");
    let cfg = lab.path("exfilmon.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[volume]]\nwindow = \"2s\"\nbytes = \"100KiB\"\n\n[monitor]\ndelivery_grace = \"1s\"\n\n[[sink]]\ntype = \"jsonl\"\npath = \"{}\"\n",
            sink.display()
        ),
    )
    .unwrap();
    let db = lab.path("crash.db");
    let generator = lab.path("load.py");
    std::fs::write(&generator, GENERATOR).unwrap();
    let verify = verify_exists();
    println!(
        "exfilmon verify {}",
        if verify { "exists: checked after every kill" } else { "does not exist yet: not checked" }
    );

    let mut monitor = lab.start_monitor(&cfg, &db, "monitor-0.log");
    lab.load_ruleset(&cfg);
    let peer = lab.peer.clone();
    let inside = lab.inside.clone();
    for (i, user) in USERS.iter().enumerate() {
        let tag = format!("t{i}");
        let args = ["runuser", "-u", user, "--", "python3", generator.to_str().unwrap(), &peer, &tag];
        lab.spawn_in(&inside, &args, &format!("load-{i}.log"));
    }
    wait_for(Duration::from_secs(20), "the first alerts", || !delivered(&sink).is_empty());

    let mut last = 0;
    for kill in 1..=KILLS {
        // Let it work a random while: some kills land mid-transaction, some between.
        std::thread::sleep(Duration::from_millis(150 + rng.below(1200)));
        assert!(
            monitor.running(),
            "the monitor died by itself before kill {kill}: {}",
            std::fs::read_to_string(&monitor.log).unwrap_or_default()
        );
        monitor.signal("KILL");
        wait_exit(&mut monitor.child, Duration::from_secs(5));

        let conn = rusqlite::Connection::open(&db).unwrap();
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok", "integrity_check after kill {kill}");
        drop(conn);
        if verify {
            let out = bin().args(["verify", "--db"]).arg(&db).output().unwrap();
            assert!(
                out.status.success(),
                "verify after kill {kill}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stored: BTreeSet<String> = report(&db, "alerts").as_array().unwrap().iter().map(key).collect();
        let reported = delivered(&sink);
        let lost: Vec<&String> = reported.difference(&stored).collect();
        assert!(lost.is_empty(), "kill {kill}: {} alerts reported as stored are gone: {lost:#?}", lost.len());
        println!("kill {kill}: integrity ok, {} alerts stored, {} reported by the sink", stored.len(), reported.len());
        last = reported.len();

        if kill < KILLS {
            monitor = lab.start_monitor(&cfg, &db, &format!("monitor-{kill}.log"));
        }
    }
    assert!(last >= KILLS, "the load raised too few alerts to test anything: {last}");
}
