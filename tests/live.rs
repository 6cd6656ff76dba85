//! The live monitor on the real kernel: two network namespaces joined by a veth pair, the
//! project's own ruleset and `exfilmon run` in the inside one, real traffic made by real local
//! users (`runuser`). Needs root and the tools in scripts/test.sh; without them each test skips
//! with a printed reason, and under CI=true a skip fails. All traffic stays in the namespaces.
//!
//! Run: `sudo -E cargo test --test live -- --nocapture` (the tests serialize among themselves).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::lab::{must, wait_exit, wait_for, Lab, USERS};
use common::{alerts_of, bin, report, EXFILMON};
use serde_json::Value;

fn config(lab: &Lab, text: &str) -> PathBuf {
    let path = lab.path("exfilmon.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn dig(lab: &Lab, user: &str, name: &str, tcp: bool) {
    let server = format!("@{}", lab.peer);
    let mut args = vec!["dig", "+short", "+tries=1", "+time=2", &server, name, "A"];
    if tcp {
        args.push("+tcp");
    }
    let answer = lab.as_user(user, &args);
    assert_eq!(answer.trim(), lab.peer, "dnsmasq answers *.example.test with the peer");
}

/// Sends `bytes` of zeros as 200-byte UDP datagrams to the peer's discard port, as fast as
/// socat goes, as `user`.
fn flood(lab: &Lab, user: &str, bytes: usize) -> Command {
    flood_from(lab, user, bytes, 1)
}

/// [`flood`] from `senders` processes at once.
fn flood_from(lab: &Lab, user: &str, bytes: usize, senders: usize) -> Command {
    let one = format!("head -c {bytes} /dev/zero | socat -u -b 200 - UDP-SENDTO:{}:9 &", lab.peer);
    let script = format!("{} wait", one.repeat(senders));
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.inside, "runuser", "-u", user, "--", "sh", "-c", &script]).stdin(Stdio::null());
    c
}

/// Issue 3, case 1: an scp of 5 MB raises a volume alert naming the uid and destination,
/// visible in `report alerts` within seconds.
#[test]
fn scp_of_5_mb_raises_a_volume_alert_within_seconds() {
    let Some(mut lab) = Lab::new() else { return };
    let ssh = lab.start_sshd();
    let cfg = config(&lab, "");
    let db = lab.path("live.db");
    let monitor = lab.start_monitor(&cfg, &db, "monitor.log");
    lab.load_ruleset(&cfg);
    let user = USERS[0];
    let uid = Lab::uid(user);
    lab.scp(&ssh, user, &lab.secret(user, 5 << 20));

    let dst = format!("{}:22/tcp", lab.peer);
    let waited = wait_for(Duration::from_secs(10), "a volume alert", || {
        alerts_of(&db, "volume").iter().any(|a| a["uid"] == uid && a["dst"] == dst.as_str())
    });
    assert!(waited < Duration::from_secs(5), "alert took {waited:?}");
    let alert = &alerts_of(&db, "volume")[0];
    assert!(alert["summary"].as_str().unwrap().contains(&format!("uid {uid}")), "{alert}");

    // The alert comes at 4 MiB; the rest of the scp may still sit in the kernel's batch (up to
    // `timeout`) or the socket on a loaded machine. TERM stops reading, so let it arrive.
    std::thread::sleep(Duration::from_secs(1));
    let (status, log) = monitor.stop();
    assert!(status.success(), "{log}");
    let users = report(&db, "users");
    let row = users.as_array().unwrap().iter().find(|u| u["uid"] == uid).expect("the sender's uid is in the report");
    assert!(row["bytes"].as_u64().unwrap() > 5 << 20, "{row}");
}

/// Case 2: a few small ordinary exchanges raise nothing, but are seen and attributed.
#[test]
fn dns_lookups_and_a_short_ssh_command_raise_no_alert() {
    let Some(mut lab) = Lab::new() else { return };
    let ssh = lab.start_sshd();
    lab.start_dns();
    let cfg = config(&lab, "");
    let db = lab.path("live.db");
    let monitor = lab.start_monitor(&cfg, &db, "monitor.log");
    lab.load_ruleset(&cfg);
    let user = USERS[1];
    let uid = Lab::uid(user);
    for name in ["www.example.test", "mail.example.test", "updates.example.test"] {
        dig(&lab, user, name, false);
    }
    dig(&lab, user, "tcp.example.test", true);
    lab.ssh_true(&ssh, user);
    std::thread::sleep(Duration::from_millis(1500));

    let (status, log) = monitor.stop();
    assert!(status.success(), "{log}");
    assert_eq!(report(&db, "alerts"), Value::Array(vec![]));
    let dsts = report(&db, "destinations");
    let dns = format!("{}:53", lab.peer);
    let udp = dsts.as_array().unwrap().iter().find(|d| d["dst"] == dns.as_str() && d["proto"] == "udp");
    assert!(udp.is_some_and(|d| d["packets"].as_u64() >= Some(3)), "DNS queries seen: {dsts}");
    let users = report(&db, "users");
    assert!(users.as_array().unwrap().iter().any(|u| u["uid"] == uid), "{users}");
}

/// Case 3: a flood against a tiny receive buffer. Loss is counted and reported, the daemon
/// keeps running, and received + lost equals what the ruleset's counters say was logged.
#[test]
fn flood_with_tiny_buffer_counts_exactly_what_was_lost() {
    let Some(lab) = Lab::new() else { return };
    // One packet per netlink message and room for a handful: the reader must wake for every
    // few packets, which no reader does at flood rate.
    let cfg = config(&lab, "[nflog]\nrcvbuf = \"4KiB\"\nqueue_threshold = 1\n");
    let db = lab.path("live.db");
    // Ruleset after the monitor: every packet the rules log reaches a bound group.
    let mut monitor = lab.start_monitor(&cfg, &db, "monitor.log");
    lab.load_ruleset(&cfg);
    let status = flood_from(&lab, USERS[0], 15_000_000, 2).status().unwrap();
    assert!(status.success());
    // Sentinels, one per batch, reveal a loss at the very end of the flood as a sequence gap.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        assert!(flood(&lab, USERS[0], 10).status().unwrap().success());
    }
    std::thread::sleep(Duration::from_millis(1500));

    assert!(monitor.running(), "the monitor survives overruns");
    let health = report(&db, "health");
    let h = &health[0];
    assert_eq!(h["state"], "running", "{h}");
    assert!(h["lost"].as_u64().unwrap() > 0 && h["overruns"].as_u64().unwrap() > 0, "{h}");
    assert!(!alerts_of(&db, "monitor_loss").is_empty(), "a monitor_loss alert");

    let logged = lab.logged_by_ruleset("exfilmon");
    let (status, log) = monitor.stop();
    assert!(status.success(), "{log}");
    let h = &report(&db, "health")[0];
    let (received, lost) = (h["packets"].as_u64().unwrap(), h["lost"].as_u64().unwrap());
    eprintln!("logged {logged}, received {received}, lost {lost}, overruns {}", h["overruns"]);
    assert_eq!(lost, logged - received, "lost = logged by the rules - received; {h}");
    let reported: u64 = alerts_of(&db, "monitor_loss").iter().map(|a| a["details"]["lost"].as_u64().unwrap()).sum();
    assert_eq!(reported, lost, "loss alerts add up to the loss");
}

/// Case 4: SIGKILL during traffic; the database opens, passes integrity_check and keeps the
/// alerts from before, and a restarted monitor carries on in it.
#[test]
fn sigkill_during_traffic_leaves_an_intact_database() {
    let Some(mut lab) = Lab::new() else { return };
    let ssh = lab.start_sshd();
    let cfg = config(&lab, "");
    let db = lab.path("live.db");
    let mut monitor = lab.start_monitor(&cfg, &db, "monitor.log");
    lab.load_ruleset(&cfg);
    lab.scp(&ssh, USERS[0], &lab.secret(USERS[0], 5 << 20));
    wait_for(Duration::from_secs(10), "a volume alert", || !alerts_of(&db, "volume").is_empty());
    // A heartbeat has committed the scp's rows: what the kill below may not take away.
    wait_for(Duration::from_secs(5), "a heartbeat", || report(&db, "health")[0]["packets"].as_u64() > Some(100));

    let mut traffic = flood(&lab, USERS[1], 40_000_000).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let before = report(&db, "alerts");
    let users_before = report(&db, "users");
    monitor.signal("KILL");
    wait_exit(&mut monitor.child, Duration::from_secs(5));
    wait_exit(&mut traffic, Duration::from_secs(60));

    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    drop(conn);
    let after = report(&db, "alerts");
    for a in before.as_array().unwrap() {
        assert!(after.as_array().unwrap().contains(a), "{a} was stored before the kill and must still be there");
    }
    let sent = |users: &Value, uid: u32| {
        users.as_array().unwrap().iter().find(|u| u["uid"] == uid).map(|u| u["bytes"].clone())
    };
    let t1 = Lab::uid(USERS[0]);
    assert_eq!(sent(&report(&db, "users"), t1), sent(&users_before, t1), "the scp's rows survive");

    let restarted = lab.start_monitor(&cfg, &db, "monitor2.log");
    std::thread::sleep(Duration::from_millis(1500));
    let health = report(&db, "health");
    assert_eq!(health[0]["state"], "running", "{health}");
    let killed_log = std::fs::read_to_string(lab.path("monitor.log")).unwrap_or_default();
    assert_eq!(health[1]["state"], "dead (no clean exit)", "{health}\nkilled monitor's log: {killed_log}");
    let (status, log) = restarted.stop();
    assert!(status.success(), "{log}");
    assert!(report(&db, "alerts").as_array().unwrap().len() >= before.as_array().unwrap().len());
}

/// Case 5: the same traffic captured with `tcpdump -i nflog:8` (a copy of the ruleset logging
/// to group 8) and replayed gives the live run's per-uid totals.
#[test]
fn tcpdump_capture_replayed_matches_the_live_totals() {
    let Some(mut lab) = Lab::new() else { return };
    let ssh = lab.start_sshd();
    lab.start_dns();
    let cfg = config(&lab, "");
    let db = lab.path("live.db");
    let monitor = lab.start_monitor(&cfg, &db, "monitor.log");
    lab.load_ruleset(&cfg);
    let rendered = must(&[EXFILMON, "nft", "--config", cfg.to_str().unwrap()]);
    let tap = rendered.replace("inet exfilmon", "inet exfilmon_tap").replace(" group 7 ", " group 8 ");
    std::fs::write(lab.path("tap.nft"), tap).unwrap();
    let out = lab.inside(&["nft", "-f", lab.path("tap.nft").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pcap = lab.path("tap.pcap");
    let inside = lab.inside.clone();
    let tcpdump = lab.spawn_in(
        &inside,
        &["tcpdump", "-i", "nflog:8", "-U", "-Z", "root", "-w", pcap.to_str().unwrap()],
        "tcpdump.log",
    );
    let tcpdump_log = lab.path("tcpdump.err");
    wait_for(Duration::from_secs(10), "tcpdump to listen", || {
        std::fs::read_to_string(&tcpdump_log).unwrap_or_default().contains("listening on")
    });

    lab.scp(&ssh, USERS[0], &lab.secret(USERS[0], 5 << 20));
    dig(&lab, USERS[1], "www.example.test", false);
    dig(&lab, USERS[1], "tcp.example.test", true);
    lab.ssh_true(&ssh, USERS[1]);
    std::thread::sleep(Duration::from_millis(1500));

    lab.stop_child(tcpdump, "INT");
    let (status, log) = monitor.stop();
    assert!(status.success(), "{log}");
    let replayed = lab.path("replayed.db");
    must(&[EXFILMON, "replay", pcap.to_str().unwrap(), "--db", replayed.to_str().unwrap()]);

    let totals = |db: &Path| -> BTreeMap<String, (u64, u64)> {
        report(db, "users")
            .as_array()
            .unwrap()
            .iter()
            .map(|u| {
                (format!("{}/{}", u["uid"], u["host"]), (u["packets"].as_u64().unwrap(), u["bytes"].as_u64().unwrap()))
            })
            .collect()
    };
    let (live, offline) = (totals(&db), totals(&replayed));
    eprintln!("live {live:?}\nreplayed {offline:?}");
    assert_eq!(live, offline);
    let t1 = format!("{}/null", Lab::uid(USERS[0]));
    assert!(live[&t1].1 > 5 << 20, "{live:?}");
}

/// One readable line for each way the monitor cannot start.
#[test]
fn startup_errors_say_what_failed_and_what_to_do() {
    let Some(mut lab) = Lab::new() else { return };
    let cfg = config(&lab, "");
    lab.load_ruleset(&cfg);
    let db = lab.path("live.db");
    let start = |lab: &Lab, prefix: &[&str], db: &Path| {
        let mut args = prefix.to_vec();
        args.extend([EXFILMON, "run", "--config", cfg.to_str().unwrap(), "--db", db.to_str().unwrap()]);
        let out = lab.inside(&args);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        err
    };

    let err = start(&lab, &["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"], &db);
    assert!(err.contains("needs CAP_NET_ADMIN"), "{err}");

    let inside = lab.inside.clone();
    let tcpdump = lab.spawn_in(&inside, &["tcpdump", "-i", "nflog:7", "-w", "/dev/null"], "busy.log");
    let busy_log = lab.path("busy.err");
    wait_for(Duration::from_secs(10), "tcpdump to listen", || {
        std::fs::read_to_string(&busy_log).unwrap_or_default().contains("listening on")
    });
    let err = start(&lab, &[], &db);
    assert!(err.contains("NFLOG group 7 is already bound by another program (tcpdump"), "{err}");
    lab.stop_child(tcpdump, "INT");

    std::fs::create_dir(lab.path("dir.db")).unwrap();
    let err = start(&lab, &[], &lab.path("dir.db"));
    assert!(err.contains("database not writable") && err.contains("dir.db"), "{err}");

    let out = bin().args(["nft", "--apply"]).env("PATH", "/nonexistent").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("nft is not installed"), "{err}");
}

/// SIGHUP applies a new configuration without a restart, also after the monitor switched to
/// an unprivileged user (`user` in the config).
#[test]
fn sighup_reloads_the_configuration_as_an_unprivileged_user() {
    let Some(lab) = Lab::new() else { return };
    let user = USERS[1];
    let quiet = format!("user = \"{user}\"\n[[volume]]\nwindow = \"10m\"\nbytes = \"1GiB\"\n");
    let cfg = config(&lab, &quiet);
    let db = lab.path("db/live.db");
    let monitor = lab.start_monitor(&cfg, &db, "monitor.log");
    lab.load_ruleset(&cfg);
    let status = std::fs::read_to_string(format!("/proc/{}/status", monitor.child.id())).unwrap();
    let uid = Lab::uid(user).to_string();
    assert!(status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(&uid)), "{status}");

    assert!(flood(&lab, USERS[0], 1_000_000).status().unwrap().success());
    std::thread::sleep(Duration::from_millis(1500));
    assert!(alerts_of(&db, "volume").is_empty(), "1 MB is under the 1 GiB threshold");

    std::fs::write(&cfg, quiet.replace("1GiB", "256KiB")).unwrap();
    monitor.signal("HUP");
    wait_for(Duration::from_secs(5), "the reload", || {
        std::fs::read_to_string(&monitor.log).unwrap_or_default().contains("configuration reloaded")
    });
    assert!(flood(&lab, USERS[0], 1_000_000).status().unwrap().success());
    wait_for(Duration::from_secs(5), "a volume alert under the new threshold", || !alerts_of(&db, "volume").is_empty());
    let (status, log) = monitor.stop();
    assert!(status.success(), "{log}");
}

/// Issue 16, cases 5-7 on the real kernel: a caching resolver (dnsmasq, dropping to `nobody`)
/// on 127.0.0.53 inside; a user asks it for encoded names and sends padded echoes. The
/// dns_tunnel alert names the user, not the resolver; the echoes, logged with the larger ICMP
/// snaplen, raise icmp_tunnel; DNS answers come back logged whole; nothing is lost.
#[test]
fn tunnel_through_a_local_resolver_and_padded_echoes_name_the_user() {
    let Some(mut lab) = Lab::new() else { return };
    lab.start_dns();
    lab.start_local_resolver();
    let inside = lab.inside.clone();
    must(&["ip", "netns", "exec", &inside, "sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647"]);
    let cfg = config(&lab, "");
    let db = lab.path("live.db");
    let monitor = lab.start_monitor(&cfg, &db, "monitor.log");
    lab.load_ruleset(&cfg);
    let user = USERS[0];
    let uid = Lab::uid(user);

    let mut args = vec!["dig".to_string(), "+short".into(), "+tries=1".into(), "+time=2".into(), "@127.0.0.53".into()];
    for i in 0..15u64 {
        args.extend([common::tunnel_name(i), "A".into()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let answers = lab.as_user(user, &args);
    assert!(answers.lines().filter(|l| l.trim() == lab.peer).count() >= 10, "answers through the resolver: {answers}");
    let ping = format!(
        "import os, socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)\n\
         for i in range(40):\n    s.sendto(bytes([8, 0, 0, 0, 0, 0, 0, i]) + bytes(100) + os.urandom(1300), ('{}', 0))\n",
        lab.peer
    );
    lab.as_user(user, &["/usr/bin/python3", "-c", &ping]);

    wait_for(Duration::from_secs(10), "dns_tunnel and icmp_tunnel alerts", || {
        !alerts_of(&db, "dns_tunnel").is_empty() && !alerts_of(&db, "icmp_tunnel").is_empty()
    });
    std::thread::sleep(Duration::from_millis(1500));
    let logged = lab.logged_by_ruleset("exfilmon");
    let (status, log) = monitor.stop();
    assert!(status.success(), "{log}");
    let dns = alerts_of(&db, "dns_tunnel");
    assert_eq!(dns.len(), 1, "{dns:#?}");
    assert_eq!(
        (dns[0]["uid"].as_u64(), dns[0]["dst"].as_str()),
        (Some(u64::from(uid)), Some("example.test")),
        "{dns:#?}"
    );
    let icmp = alerts_of(&db, "icmp_tunnel");
    assert_eq!(icmp[0]["uid"].as_u64(), Some(u64::from(uid)), "{icmp:#?}");
    let h = &report(&db, "health")[0];
    eprintln!("logged {logged}, health {h}");
    assert_eq!(h["lost"].as_u64(), Some(0), "{h}");
    assert_eq!(h["packets"].as_u64(), Some(logged), "every logged packet received: {h}");
    // The loopback queries are not egress.
    let dsts = report(&db, "destinations");
    assert!(!dsts.as_array().unwrap().iter().any(|d| d["dst"].as_str().unwrap().starts_with("127.")), "{dsts:#}");
}
