//! The fleet store (issue 12) against a real PostgreSQL server (tests/common/pg.rs): two
//! hosts ship into it and the central reports add up to theirs; an outage loses and doubles
//! nothing; the password shows nowhere.

mod common;

use std::path::{Path, PathBuf};

use common::lab::{wait_for, Lab, USERS};
use common::pg::{Postgres, PASSWORD};
use common::{bin, fixture, report, report_with, run_ok, stderr, stdout, Scratch};
use serde_json::Value;

/// One monitored host: its config (observer, the postgres sink) and database.
struct Host {
    scratch: Scratch,
    config: PathBuf,
    db: String,
}

impl Host {
    fn new(pg: &Postgres, observer: &str) -> Host {
        let scratch = Scratch::new();
        let config = scratch.path("exfilmon.toml");
        std::fs::write(
            &config,
            format!(
                "observer = \"{observer}\"\n\n[[sink]]\ntype = \"postgres\"\nurl = \"{}\"\npassword_file = \"{}\"\n",
                pg.url(),
                pg.password_file().display()
            ),
        )
        .unwrap();
        let db = scratch.db();
        Host { scratch, config, db }
    }

    fn args<'a>(&'a self, cmd: &[&'a str]) -> Vec<&'a str> {
        let mut a = cmd.to_vec();
        a.extend(["--db", &self.db, "--config", self.config.to_str().unwrap()]);
        a
    }

    /// Replays `capture` (a fixture or a file), which ships at its end; its stderr.
    fn replay(&self, capture: &Path) -> String {
        let o = bin().args(self.args(&["replay"])).arg(capture).args(["-v"]).output().unwrap();
        assert!(o.status.success(), "replay {}: {}", capture.display(), stderr(&o));
        stdout(&o) + &stderr(&o)
    }

    /// `report WHAT --format json` on the fleet store, with this host's config (its password).
    fn central(&self, pg: &Postgres, what: &str, extra: &[&str]) -> Value {
        let mut args = vec!["--config", self.config.to_str().unwrap()];
        args.extend(extra);
        report_with(pg.url(), what, &args)
    }

    fn ship(&self) -> std::process::Output {
        bin().args(self.args(&["ship"])).arg("-v").output().unwrap()
    }
}

/// Total bytes over the rows of `report users` (local or central).
fn bytes_of(users: &Value) -> i64 {
    users.as_array().unwrap().iter().map(|u| u["bytes"].as_i64().unwrap()).sum()
}

fn central_counts(pg: &Postgres) -> String {
    pg.query(
        "SELECT (SELECT count(*) FROM egress) || ' ' || (SELECT coalesce(sum(bytes), 0) FROM egress) || ' ' ||
                (SELECT count(*) FROM dns) || ' ' || (SELECT count(*) FROM alerts) || ' ' ||
                (SELECT count(*) FROM events) || ' ' || (SELECT count(*) FROM digests) || ' ' ||
                (SELECT count(*) FROM checkpoints)",
    )
}

#[test]
fn two_observers_ship_into_one_store_and_its_totals_are_the_sum_of_theirs() {
    let Some(pg) = Postgres::start() else { return };
    let web = Host::new(&pg, "web-01");
    let db = Host::new(&pg, "db-02");
    web.replay(&fixture("nflog-sample.pcap"));
    db.replay(&fixture("hostile-html.pcap"));

    let local: i64 = bytes_of(&report(&web.db, "users")) + bytes_of(&report(&db.db, "users"));
    assert!(local > 0);
    let central = web.central(&pg, "users", &[]);
    assert_eq!(bytes_of(&central), local, "{central:#}");
    let observers: Vec<&str> = central.as_array().unwrap().iter().map(|u| u["observer"].as_str().unwrap()).collect();
    assert!(observers.contains(&"web-01") && observers.contains(&"db-02"), "{observers:?}");

    // Each alert arrives once, with the observer that raised it.
    for host in [&web, &db] {
        let observer = if std::ptr::eq(host, &web) { "web-01" } else { "db-02" };
        let mine = report(&host.db, "alerts");
        assert!(!mine.as_array().unwrap().is_empty(), "{observer} raised no alert");
        let there = host.central(&pg, "alerts", &["--observer", observer]);
        let strip = |v: &Value| -> Vec<(Value, Value, Value)> {
            v.as_array().unwrap().iter().map(|a| (a["ts"].clone(), a["kind"].clone(), a["summary"].clone())).collect()
        };
        assert_eq!(strip(&there), strip(&mine), "{observer}");
        assert!(there.as_array().unwrap().iter().all(|a| a["observer"] == observer));
        // Filtered by observer, the users add up to that host's.
        assert_eq!(
            bytes_of(&host.central(&pg, "users", &["--observer", observer])),
            bytes_of(&report(&host.db, "users"))
        );
    }
    // The table shows whose row it is.
    let table = stdout(&run_ok(&["report", "users", "--db", &pg.url(), "--config", web.config.to_str().unwrap()]));
    assert!(table.starts_with("Egress by user") && table.contains("HOST"), "{table}");
    assert!(table.contains("web-01") && table.contains("db-02"), "{table}");

    // DNS reads the fleet store too, each row with its host, its user named as on the host.
    let rows = web.central(&pg, "dns", &[]);
    let hosts: std::collections::BTreeSet<&str> =
        rows.as_array().unwrap().iter().map(|r| r["observer"].as_str().unwrap()).collect();
    assert_eq!(hosts.into_iter().collect::<Vec<_>>(), ["db-02", "web-01"], "{rows:#}");
    let local_dns = report_with(&web.db, "dns", &["--config", web.config.to_str().unwrap()]);
    let mine = |rows: &Value| -> Vec<(Value, Value, Value)> {
        let mut v: Vec<_> = rows
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["observer"] == "web-01")
            .map(|r| (r["domain"].clone(), r["unique"].clone(), r["user"].clone()))
            .collect();
        v.sort_by_key(|t| t.0.to_string());
        v
    };
    assert_eq!(mine(&rows), mine(&local_dns));
    assert!(web.central(&pg, "events", &[]).as_array().unwrap().iter().all(|e| e["observer"].is_string()));
    // Health on the fleet store: each host's last round.
    let rounds = web.central(&pg, "health", &[]);
    let hosts: Vec<&str> = rounds.as_array().unwrap().iter().map(|r| r["observer"].as_str().unwrap()).collect();
    assert_eq!(hosts.len(), 2, "{rounds:#}");
    assert!(rounds.as_array().unwrap().iter().all(|r| r["last_minute"].is_string()), "{rounds:#}");
    // Reports that read a host's own database say so.
    let o =
        bin().args(["report", "files", "--db", &pg.url(), "--config", web.config.to_str().unwrap()]).output().unwrap();
    assert!(!o.status.success() && stderr(&o).contains("pass --db FILE"), "{}", stderr(&o));

    // Partitioned by day, as the server sees it.
    assert!(
        pg.query_i64(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'egress'"
        ) >= 2
    );
}

#[test]
fn an_outage_loses_nothing_and_shipping_twice_changes_nothing() {
    let Some(mut pg) = Postgres::start() else { return };
    let host = Host::new(&pg, "edge-7");
    host.replay(&fixture("nflog-sample.pcap"));
    let before = central_counts(&pg);

    // The server goes away; the host keeps recording, and its replays still succeed.
    pg.stop();
    let said = host.replay(&fixture("hostile-html.pcap"));
    assert!(said.contains("the rows wait in the database"), "{said}");
    host.replay(&fixture("many-hosts.pcap"));
    let o = host.ship();
    assert!(!o.status.success(), "ship with the server down must fail");
    let health = stdout(&run_ok(&host.args(&["report", "health"])));
    assert!(health.contains("BACKLOG") && health.contains("Connection refused"), "{health}");
    let metrics = stdout(&run_ok(&host.args(&["metrics"])));
    assert!(metrics.contains("exfilmon_ship_failing{target=\"postgres:postgresql://"), "{metrics}");

    pg.start_again();
    assert_eq!(central_counts(&pg), before, "nothing arrived while the server was down");
    let o = host.ship();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("backlog 0"), "{}", stdout(&o));
    let metrics = stdout(&run_ok(&host.args(&["metrics"])));
    let target = format!("{{target=\"postgres:{}\"}}", pg.url());
    assert!(metrics.contains(&format!("exfilmon_ship_backlog{target} 0\n")), "{metrics}");
    assert!(metrics.contains(&format!("exfilmon_ship_failing{target} 0\n")), "{metrics}");
    let after = central_counts(&pg);
    assert_ne!(after, before);

    // Everything arrived once: the central totals are the host's.
    assert_eq!(bytes_of(&host.central(&pg, "users", &[])), bytes_of(&report(&host.db, "users")));
    assert_eq!(
        host.central(&pg, "alerts", &[]).as_array().unwrap().len(),
        report(&host.db, "alerts").as_array().unwrap().len()
    );

    // Shipping again sends nothing; shipping everything again (the cursor lost) changes nothing.
    let o = host.ship();
    assert!(stdout(&o).contains("shipped 0 trail rows and 0 checkpoints"), "{}", stdout(&o));
    rusqlite::Connection::open(&host.db).unwrap().execute("DELETE FROM ship_cursor", []).unwrap();
    let o = host.ship();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains("shipped 0 trail rows"), "{}", stdout(&o));
    assert_eq!(central_counts(&pg), after);
    drop(host.scratch);
}

#[test]
fn the_password_shows_nowhere() {
    let Some(mut pg) = Postgres::start() else { return };
    let host = Host::new(&pg, "quiet-1");
    let mut seen = host.replay(&fixture("nflog-sample.pcap"));
    seen += &stdout(&run_ok(&host.args(&["report", "health"])));
    seen += &stdout(&run_ok(&host.args(&["report", "health", "--format", "json"])));
    seen += &stdout(&run_ok(&host.args(&["report", "events", "--format", "json"])));
    // Reports on the fleet store take the password from $PGPASSWORD too.
    let o = bin().args(["report", "users", "--db", &pg.url()]).env("PGPASSWORD", PASSWORD).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    seen += &(stdout(&o) + &stderr(&o));
    // Failures: the server down, then a wrong password.
    pg.stop();
    let o = host.ship();
    seen += &(stdout(&o) + &stderr(&o));
    pg.start_again();
    std::fs::write(pg.password_file(), "wrong\n").unwrap();
    let o = host.ship();
    assert!(!o.status.success());
    seen += &(stdout(&o) + &stderr(&o));
    seen += &stdout(&run_ok(&host.args(&["report", "health", "--format", "json"])));
    let dump = std::process::Command::new("sqlite3").arg(&host.db).arg(".dump").output();
    if let Ok(d) = dump {
        seen += &String::from_utf8_lossy(&d.stdout);
    }
    seen += &pg.query("SELECT string_agg(summary || details, ' ') FROM events");
    assert!(!seen.contains(PASSWORD), "the password leaked:\n{seen}");
    assert!(seen.contains("password authentication failed"), "{seen}");

    // A password in the url is refused before it can be shown anywhere.
    let bad = host.scratch.path("bad.toml");
    let url = pg.url().replace("exfil@", &format!("exfil:{PASSWORD}@"));
    std::fs::write(&bad, format!("[[sink]]\ntype = \"postgres\"\nurl = \"{url}\"\n")).unwrap();
    let o = bin().args(["ship", "--db", &host.db, "--config"]).arg(&bad).output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("must not hold the password"), "{}", stderr(&o));
    assert!(!stderr(&o).contains(PASSWORD), "{}", stderr(&o));
}

/// The live monitor ships as it goes (alerts within a round) and once more as it stops (the
/// minutes its end digests): afterwards the fleet store holds what the host's database does.
#[test]
fn the_live_monitor_ships_as_it_goes_and_as_it_stops() {
    let Some(lab) = Lab::new() else { return };
    let Some(pg) = Postgres::start() else { return };
    let config = lab.path("exfilmon.toml");
    let sink = format!("observer = \"live-1\"\n[[sink]]\ntype = \"postgres\"\nurl = \"{}\"\n", pg.socket_url());
    std::fs::write(&config, sink).unwrap();
    let db = lab.path("live.db");
    let monitor = lab.start_monitor(&config, &db, "monitor.log");
    lab.load_ruleset(&config);
    let user = USERS[0];
    let script = format!("head -c {} /dev/zero | socat -u -b 1400 - UDP-SENDTO:{}:9", 6 << 20, lab.peer);
    lab.as_user(user, &["sh", "-c", &script]);
    wait_for(std::time::Duration::from_secs(30), "the volume alert in the fleet store", || {
        pg.query_i64("SELECT count(*) FROM alerts WHERE observer = 'live-1' AND kind = 'volume'") > 0
    });
    let (status, log) = monitor.stop();
    assert!(status.success(), "{log}");
    let local = bytes_of(&report(&db, "users"));
    assert!(local > 6 << 20, "{local}");
    assert_eq!(pg.query_i64("SELECT sum(bytes) FROM egress WHERE observer = 'live-1'"), local, "{log}");
    assert_eq!(
        pg.query_i64("SELECT count(*) FROM alerts WHERE observer = 'live-1'"),
        report(&db, "alerts").as_array().unwrap().len() as i64
    );
    let health = stdout(&run_ok(&["report", "health", "--db", db.to_str().unwrap()]));
    assert!(health.contains("Shipping to the fleet store"), "{health}");
}

/// `sslmode=require`: TLS through rustls, the server's certificate checked against the
/// system's roots (here the test's CA through SSL_CERT_FILE); an unknown CA is refused.
#[test]
fn sslmode_require_ships_over_tls_and_checks_the_certificate() {
    let Some(mut pg) = Postgres::start() else { return };
    let host = Host::new(&pg, "tls-1");
    let ca = pg.enable_tls();
    let text = std::fs::read_to_string(&host.config).unwrap().replace("/fleet\"", "/fleet?sslmode=require\"");
    std::fs::write(&host.config, text).unwrap();
    run_ok(&host.args(&["replay", fixture("nflog-sample.pcap").to_str().unwrap()]));

    // The test's CA is no system root: the certificate is refused, nothing ships.
    let o = bin().args(host.args(&["ship"])).env("SSL_CERT_FILE", "/dev/null").output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).to_lowercase().contains("certificate"), "{}", stderr(&o));
    assert_eq!(pg.query_i64("SELECT count(*) FROM pg_tables WHERE tablename = 'egress'"), 0, "nothing reached it");

    let o = bin().args(host.args(&["ship"])).env("SSL_CERT_FILE", &ca).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(pg.query_i64("SELECT count(*) FROM egress") > 0);
    assert!(pg.log().contains("SSL enabled"), "the server saw no TLS connection");
}

/// `retain`: day partitions wholly older are dropped, whole, by the round that follows.
#[test]
fn retain_drops_whole_day_partitions() {
    let Some(pg) = Postgres::start() else { return };
    let host = Host::new(&pg, "old-1");
    // The sample was captured on 2026-11-22: more than a day ago.
    let with_retain = std::fs::read_to_string(&host.config).unwrap() + "retain = \"1d\"\n";
    std::fs::write(&host.config, with_retain).unwrap();
    host.replay(&fixture("nflog-sample.pcap"));
    assert_eq!(pg.query_i64("SELECT count(*) FROM egress"), 0);
    assert_eq!(
        pg.query_i64(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'egress_d%' AND tablename <> 'egress_default'"
        ),
        0
    );
    // Today's rows (the trail's checkpoints and events carry the wall clock) stay.
    assert!(pg.query_i64("SELECT count(*) FROM digests") + pg.query_i64("SELECT count(*) FROM observers") > 0);
}

/// Hostile times: a capture's clock may say anything. Days far from today get no partition of
/// their own (they would make thousands); their rows land in the default one, and count.
#[test]
fn rows_of_days_years_off_land_in_the_default_partition() {
    let Some(pg) = Postgres::start() else { return };
    let host = Host::new(&pg, "odd-1");
    let packet = common::udp_v4([10, 0, 0, 1], [192, 0, 2, 1], 9, 1000);
    let mut capture = common::pcap_header(101);
    // 1970, 2001, 2023, and the far end of what a pcap can say (2106).
    for sec in [60, 1_000_000_000, 1_700_000_000, u32::MAX - 120] {
        capture.extend(common::pcap_record(sec, 0, &packet));
    }
    let path = host.scratch.path("odd.pcap");
    std::fs::write(&path, capture).unwrap();
    host.replay(&path);
    assert_eq!(bytes_of(&host.central(&pg, "users", &[])), bytes_of(&report(&host.db, "users")));
    assert_eq!(pg.query_i64("SELECT count(*) FROM egress_default"), 3, "1970, 2001 and 2106 have no partition");
    assert_eq!(
        pg.query_i64(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'egress_d%' AND tablename <> 'egress_default'"
        ),
        1
    );
}

/// Hosts connecting at once to a fresh server: one makes the schema and each day's partitions
/// while the others wait on the advisory lock; every row arrives.
#[test]
fn hosts_shipping_at_once_into_a_fresh_server_all_arrive() {
    let Some(mut pg) = Postgres::start() else { return };
    let hosts: Vec<Host> = (0..4).map(|i| Host::new(&pg, &format!("burst-{i}"))).collect();
    pg.stop();
    for h in &hosts {
        h.replay(&fixture("many-hosts.pcap"));
    }
    pg.start_again();
    let children: Vec<_> = hosts
        .iter()
        .map(|h| {
            bin()
                .args(h.args(&["ship"]))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let local: i64 = hosts.iter().map(|h| bytes_of(&report(&h.db, "users"))).sum();
    assert_eq!(bytes_of(&hosts[0].central(&pg, "users", &[])), local);
    assert_eq!(pg.query_i64("SELECT count(*) FROM exfilmon_schema"), 1);
}
