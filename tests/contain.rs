//! Issue 17 on the real kernel: `[response]` blocks a user's egress after a chosen alert (new
//! connections and one already open), another user and exempt users keep theirs, `unblock`
//! and the block's own expiry restore it; DNS queries under a tunnel's domain stop being
//! answered while the same user's other lookups resolve; kill -9 of the monitor leaves DNS
//! working (bypass) and blocks in place until they expire. Same lab as tests/live.rs (two
//! network namespaces, the project's ruleset, real users through `runuser`); skips without
//! root, fails under CI=true. Nothing here touches the host's own network namespace.
//!
//! Run: `sudo -E cargo test --test contain -- --nocapture`

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::lab::{exec, must, wait_for, Lab, USERS};
use common::{alerts_of, bin, report, stderr};
use serde_json::Value;

fn events(db: &Path, kind: &str) -> Vec<Value> {
    report(db, "events").as_array().unwrap().iter().filter(|e| e["kind"] == kind).cloned().collect()
}

fn event_for(db: &Path, kind: &str, uid: u32) -> bool {
    events(db, kind).iter().any(|e| e["details"]["uid"] == uid)
}

/// Whether `user` can open a TCP connection to the peer's port 5000 (one second to connect).
fn connects(lab: &Lab, user: &str) -> bool {
    let target = format!("TCP:{}:5000,connect-timeout=1", lab.peer);
    let mut args = vec!["ip", "netns", "exec", &lab.inside, "runuser", "-u", user, "--"];
    args.extend(["socat", "-u", "OPEN:/dev/null", &target]);
    exec(&args).status.success()
}

/// Sends `bytes` of zeros as UDP datagrams to the peer as `user`; the send may stop part way
/// (a block makes sendto fail), so its status is not checked.
fn flood(lab: &Lab, user: &str, bytes: usize) {
    let script = format!("head -c {bytes} /dev/zero | socat -u -b 1000 - UDP-SENDTO:{}:9", lab.peer);
    let _ = exec(&["ip", "netns", "exec", &lab.inside, "runuser", "-u", user, "--", "sh", "-c", &script]);
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Whether the file stops growing (the writer's segments are dropped) over a second.
fn stalled(path: &Path) -> bool {
    let before = file_len(path);
    std::thread::sleep(Duration::from_millis(1200));
    file_len(path) == before
}

fn cli(lab: &Lab, cfg: &Path, db: &Path, args: &[&str]) -> std::process::Output {
    let mut full = vec!["ip", "netns", "exec", &lab.inside, common::EXFILMON];
    full.extend_from_slice(args);
    let (c, d) = (cfg.to_str().unwrap(), db.to_str().unwrap());
    full.extend(["--config", c, "--db", d]);
    exec(&full)
}

fn blocked_drops(lab: &Lab) -> u64 {
    let out = must(&["ip", "netns", "exec", &lab.inside, "nft", "-j", "list", "chain", "inet", "exfilmon", "egress"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["rule"]["comment"] == "exfilmon-blocked")
        .flat_map(|i| i["rule"]["expr"].as_array().unwrap().iter().filter_map(|e| e["counter"]["packets"].as_u64()))
        .sum()
}

#[test]
fn a_volume_alert_blocks_the_sender_until_unblock_or_expiry_and_spares_others() {
    let Some(mut lab) = Lab::new() else { return };
    let (t1, t2) = (USERS[0], USERS[1]);
    let (uid1, uid2) = (Lab::uid(t1), Lab::uid(t2));
    let outside = lab.outside.clone();
    lab.spawn_in(&outside, &["socat", "-u", "TCP-LISTEN:5000,fork,reuseaddr", "OPEN:/dev/null"], "sink.log");
    let long = lab.path("long.txt");
    let listen = format!("CREATE:{}", long.display());
    lab.spawn_in(&outside, &["socat", "-u", "TCP-LISTEN:5001,reuseaddr", &listen], "long.log");
    lab.wait_listening("t", 5000);
    lab.wait_listening("t", 5001);
    let cfg = lab.path("exfilmon.toml");
    let shipped = lab.path("shipped.jsonl");
    std::fs::write(
        &cfg,
        format!(
            "[[volume]]\nwindow = \"10m\"\nbytes = \"1MiB\"\nseverity = \"high\"\n\
             [response]\nblock = [\"volume:high\"]\nblock_for = \"6s\"\nexempt = [\"root\", \"{t2}\"]\n\
             [monitor]\nruleset_check = \"1s\"\n[[sink]]\ntype = \"jsonl\"\npath = \"{}\"\n",
            shipped.display()
        ),
    )
    .unwrap();
    lab.load_ruleset(&cfg);
    let db = lab.path("live.db");
    let monitor = lab.start_monitor(&cfg, &db, "monitor.log");
    assert!(connects(&lab, t1) && connects(&lab, t2), "both users reach the peer before any alert");
    // A connection t1 opened before the alert, sending a line every 100 ms.
    let writer = format!("while :; do date +%s.%N; sleep 0.1; done | socat -u - TCP:{}:5001", lab.peer);
    let inside = lab.inside.clone();
    lab.spawn_in(&inside, &["runuser", "-u", t1, "--", "sh", "-c", &writer], "writer.log");
    wait_for(Duration::from_secs(10), "the open connection to carry data", || file_len(&long) > 0);

    flood(&lab, t1, 2 << 20);
    wait_for(Duration::from_secs(10), "a blocked event for the sender", || event_for(&db, "blocked", uid1));
    let blocked_at = Instant::now();
    assert!(!connects(&lab, t1), "the blocked user cannot open a connection out");
    assert!(connects(&lab, t2), "another user still can");
    assert!(stalled(&long), "the connection opened before the block carries nothing more");
    assert!(blocked_drops(&lab) > 0, "the kernel's drop rule counted the blocked packets");
    let alert = alerts_of(&db, "volume").into_iter().find(|a| a["uid"] == uid1).expect("the alert behind the block");
    assert_eq!(alert["severity"], "high", "{alert}");
    let health = report(&db, "health");
    let blocks = &health[0]["blocks"];
    assert!(blocks.as_array().unwrap().iter().any(|b| b["uid"] == uid1), "report health lists the block: {blocks}");

    // The exempt user sends past the same threshold: an alert, no block.
    flood(&lab, t2, 2 << 20);
    wait_for(Duration::from_secs(10), "the exempt user's alert", || {
        alerts_of(&db, "volume").iter().any(|a| a["uid"] == uid2)
    });
    std::thread::sleep(Duration::from_millis(700));
    assert!(!event_for(&db, "blocked", uid2), "exempt users are never blocked");
    assert!(connects(&lab, t2));

    // block_for passes: the kernel lets t1 out again, the trail says the block expired, and
    // the connection that was open carries data again (after TCP's retransmission backoff).
    wait_for(Duration::from_secs(15), "the block to expire", || connects(&lab, t1));
    assert!(
        blocked_at.elapsed() >= Duration::from_secs(5),
        "expired after {:?}, before block_for",
        blocked_at.elapsed()
    );
    wait_for(Duration::from_secs(5), "a block_expired event", || event_for(&db, "block_expired", uid1));
    let resumed = file_len(&long);
    wait_for(Duration::from_secs(20), "the open connection to resume", || file_len(&long) > resumed);

    // By hand: block, then unblock early.
    let out = cli(&lab, &cfg, &db, &["block", t1, "--for", "1h"]);
    assert!(out.status.success(), "block: {}", stderr(&out));
    assert!(!connects(&lab, t1), "blocked by hand");
    lab.load_ruleset(&cfg);
    assert!(!connects(&lab, t1), "re-loading the ruleset (systemctl reload) keeps the block");
    let out = cli(&lab, &cfg, &db, &["unblock", t1]);
    assert!(out.status.success(), "unblock: {}", stderr(&out));
    assert!(connects(&lab, t1), "unblock restores the user at once");
    assert!(event_for(&db, "unblocked", uid1));
    // A block set by hand while the monitor runs: its expiry is recorded by the monitor.
    let out = cli(&lab, &cfg, &db, &["block", t1, "--for", "2s"]);
    assert!(out.status.success(), "block: {}", stderr(&out));
    let expired = |db: &Path| events(db, "block_expired").iter().filter(|e| e["details"]["uid"] == uid1).count();
    wait_for(Duration::from_secs(15), "the expiry of the hand-set block", || expired(&db) == 2);
    assert!(connects(&lab, t1));
    let out = cli(&lab, &cfg, &db, &["block", "root"]);
    assert!(!out.status.success() && stderr(&out).contains("exempt"), "{}", stderr(&out));

    let (status, log) = monitor.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains("differs"), "the ruleset check (every second) stays quiet with blocks: {log}");
    assert!(events(&db, "ruleset_changed").is_empty());
    // The sink got the alert and every block event, from the monitor and from the commands.
    let records: Vec<Value> = std::fs::read_to_string(&shipped)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &Value| r["details"]["uid"] == uid1 || r["uid"] == uid1)
        .collect();
    let kinds: Vec<&str> = records.iter().filter_map(|r| r["kind"].as_str()).collect();
    for kind in ["volume", "blocked", "block_expired", "unblocked"] {
        assert!(kinds.contains(&kind), "{kind} reached the sink: {kinds:?}");
    }
    let verify = bin().args(["verify", "--db"]).arg(&db).output().unwrap();
    assert!(verify.status.success(), "the trail with its block events verifies: {}", stderr(&verify));
}

/// Without the ruleset, block and unblock say what to do; nothing is recorded.
#[test]
fn block_and_unblock_without_the_ruleset_say_how_to_load_it() {
    let Some(lab) = Lab::new() else { return };
    let cfg = lab.path("exfilmon.toml");
    std::fs::write(&cfg, "").unwrap();
    let db = lab.path("live.db");
    for args in [&["block", USERS[0]][..], &["unblock", USERS[0]]] {
        let out = cli(&lab, &cfg, &db, args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains("exfilmon nft --apply"), "{args:?}: {}", stderr(&out));
    }
    let out = cli(&lab, &cfg, &db, &["block", "no-such-user-here"]);
    assert!(stderr(&out).contains("no user named"), "{}", stderr(&out));
}

/// `dig` as `user` to the lab's resolver: the answers, empty when none came (dropped).
fn dig(lab: &Lab, user: &str, names: &[String]) -> String {
    dig_at(lab, &lab.peer, user, names)
}

/// [`dig`] to the resolver at `server`.
fn dig_at(lab: &Lab, server: &str, user: &str, names: &[String]) -> String {
    let server = format!("@{server}");
    let mut args = vec!["ip", "netns", "exec", &lab.inside, "runuser", "-u", user, "--"];
    args.extend(["dig", "+short", "+tries=1", "+time=1", &server]);
    for n in names {
        args.extend([n.as_str(), "A"]);
    }
    String::from_utf8_lossy(&exec(&args).stdout).into_owned()
}

fn resolves(lab: &Lab, user: &str, name: &str) -> bool {
    dig(lab, user, &[name.to_string()]).lines().any(|l| l.trim() == lab.peer)
}

fn tunnel_names(from: u64, n: u64) -> Vec<String> {
    (from..from + n).map(common::tunnel_name).collect()
}

#[test]
fn dns_queue_drops_a_detected_tunnels_queries_only_and_fails_open_when_killed() {
    let Some(mut lab) = Lab::new() else { return };
    lab.start_dns();
    lab.start_local_resolver();
    let outside = lab.outside.clone();
    lab.spawn_in(&outside, &["socat", "-u", "TCP-LISTEN:5000,fork,reuseaddr", "OPEN:/dev/null"], "sink.log");
    lab.wait_listening("t", 5000);
    let (t1, t2) = (USERS[0], USERS[1]);
    let uid1 = Lab::uid(t1);
    let cfg = lab.path("exfilmon.toml");
    std::fs::write(&cfg, "[response]\ndns_queue = true\n").unwrap();
    lab.load_ruleset(&cfg);
    let rules = must(&["ip", "netns", "exec", &lab.inside, "iptables", "-t", "mangle", "-S", "OUTPUT"]);
    assert!(rules.contains("--queue-bypass"), "the queue rules have the bypass flag: {rules}");
    // Nothing listens on the queue yet: bypass lets queries through.
    assert!(resolves(&lab, t1, "www.other.test"), "DNS works with the queue and no monitor");
    let db = lab.path("live.db");
    let mut monitor = lab.start_monitor(&cfg, &db, "monitor.log");
    assert!(resolves(&lab, t1, &tunnel_names(0, 1)[0]), "before detection, tunnel names are answered");

    dig(&lab, t1, &tunnel_names(1, 15));
    wait_for(Duration::from_secs(10), "a dns_tunnel alert", || {
        alerts_of(&db, "dns_tunnel").iter().any(|a| a["uid"] == uid1 && a["dst"] == "example.test")
    });
    std::thread::sleep(Duration::from_millis(300));
    let fresh = tunnel_names(100, 3);
    for name in &fresh {
        assert!(!resolves(&lab, t1, name), "a tunnel query after detection is dropped: {name}");
    }
    assert!(resolves(&lab, t1, "www.other.test"), "the same user's other lookups resolve");
    assert!(resolves(&lab, t2, &fresh[0]), "another user's queries under the domain resolve");
    // Through the local resolver the query to 127.0.0.53 is the user's: held too, while the
    // resolver's own upstream queries (as nobody) and the other user's pass.
    let local = |user: &str, name: &str| dig_at(&lab, "127.0.0.53", user, &[name.to_string()]).contains(&lab.peer);
    assert!(!local(t1, &tunnel_names(300, 1)[0]), "held through the local resolver too");
    assert!(local(t1, "mail.other.test") && local(t2, &tunnel_names(301, 1)[0]));
    let health = report(&db, "health");
    eprintln!("health counters: {}", health[0]["counters"]["response"]);

    // A block set while the monitor runs outlives it; DNS keeps working without it (bypass).
    let out = cli(&lab, &cfg, &db, &["block", t2, "--for", "4s"]);
    assert!(out.status.success(), "block: {}", stderr(&out));
    let blocked_at = Instant::now();
    monitor.signal("KILL");
    common::lab::wait_exit(&mut monitor.child, Duration::from_secs(10));
    assert!(resolves(&lab, t1, &tunnel_names(200, 1)[0]), "with the monitor killed, the kernel lets queries pass");
    assert!(!connects(&lab, t2), "the block stays with the monitor gone");
    wait_for(Duration::from_secs(10), "the block to expire by itself", || connects(&lab, t2));
    assert!(blocked_at.elapsed() >= Duration::from_secs(3), "expired after {:?}", blocked_at.elapsed());
    let out = lab.inside(&[common::EXFILMON, "nft", "--remove"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rules = must(&["ip", "netns", "exec", &lab.inside, "iptables", "-t", "mangle", "-S", "OUTPUT"]);
    assert!(!rules.contains("NFQUEUE"), "nft --remove takes the queue rules away: {rules}");
}

/// Nothing is blocked in a replay: it says what would have been, and when, on stdout and as
/// `would_block` events; without `[response] block` it says nothing of the kind.
#[test]
fn replay_reports_what_would_have_been_blocked_and_when() {
    let s = common::Scratch::new();
    let (capture, _) = common::minutes_capture(3, 100);
    let file = s.path("big.pcap");
    std::fs::write(&file, capture).unwrap();
    let cfg = s.path("exfilmon.toml");
    std::fs::write(&cfg, "[response]\nblock = [\"volume\"]\nblock_for = \"5m\"\n").unwrap();
    let db = s.path("r.db");
    let out = bin().arg("replay").arg(&file).arg("--config").arg(&cfg).arg("--db").arg(&db).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = common::stdout(&out);
    let line = text.lines().find(|l| l.starts_with("would have blocked")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("host 10.0.0.1 from 2023-11-14T22:1") && line.contains("volume"), "{line}");
    let would = events(&db, "would_block");
    assert_eq!(would.len(), 1, "{would:#?}");
    assert_eq!(would[0]["details"]["host"], "10.0.0.1");
    let until = would[0]["details"]["until_us"].as_i64().unwrap() - would[0]["details"]["since_us"].as_i64().unwrap();
    assert_eq!(until, 300_000_000, "block_for from the alert's packet time");
    assert!(events(&db, "blocked").is_empty(), "a replay blocks nothing");
    let health = bin().args(["report", "health", "--db"]).arg(&db).output().unwrap();
    assert!(!common::stdout(&health).contains("Active blocks"), "no active block: {}", common::stdout(&health));

    // With dns_queue, a tunnel's alert says which queries would have been dropped.
    let dns = s.path("dns.toml");
    std::fs::write(&dns, "[response]\ndns_queue = true\n").unwrap();
    let tunnel = common::repo_file("pcaps/covert/dns2tcp.pcap");
    let out =
        bin().arg("replay").arg(&tunnel).arg("--config").arg(&dns).arg("--db").arg(s.path("d.db")).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = common::stdout(&out);
    assert!(
        text.contains("would have dropped DNS queries of uid 1005 under tun.test from 2026-11-22T02:13:30Z"),
        "{text}"
    );

    let plain = s.path("plain.db");
    let out = bin().arg("replay").arg(&file).arg("--db").arg(&plain).output().unwrap();
    assert!(out.status.success() && !common::stdout(&out).contains("would have"), "{}", common::stdout(&out));
}
