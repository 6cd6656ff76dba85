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

/// web-01 replays the scp sample, db-02 the hostile names (a volume alert, DNS tunnels).
fn two_hosts(pg: &Postgres) -> (Host, Host) {
    let web = Host::new(pg, "web-01");
    let db = Host::new(pg, "db-02");
    web.replay(&fixture("nflog-sample.pcap"));
    db.replay(&fixture("hostile-html.pcap"));
    (web, db)
}

#[test]
fn two_observers_ship_into_one_store_and_its_totals_are_the_sum_of_theirs() {
    let Some(pg) = Postgres::start() else { return };
    let (web, db) = two_hosts(&pg);

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

    // DNS reads the fleet store too, each row with its host, its user named as on the host,
    // and its sample name.
    let rows = web.central(&pg, "dns", &[]);
    let hosts: std::collections::BTreeSet<&str> =
        rows.as_array().unwrap().iter().map(|r| r["observer"].as_str().unwrap()).collect();
    assert_eq!(hosts.into_iter().collect::<Vec<_>>(), ["db-02", "web-01"], "{rows:#}");
    let local_dns = report_with(&web.db, "dns", &["--config", web.config.to_str().unwrap()]);
    let mine = |rows: &Value| -> Vec<(Value, Value, Value, Value)> {
        let mut v: Vec<_> = rows
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["observer"] == "web-01")
            .map(|r| (r["domain"].clone(), r["unique"].clone(), r["user"].clone(), r["sample"].clone()))
            .collect();
        v.sort_by_key(|t| t.0.to_string());
        v
    };
    assert_eq!(mine(&rows), mine(&local_dns));
    // Sample names ship too: every row of the fleet store's DNS report has one, as on the hosts.
    assert!(rows.as_array().unwrap().iter().all(|r| r["sample"].is_string()), "{rows:#}");
    assert!(web.central(&pg, "events", &[]).as_array().unwrap().iter().all(|e| e["observer"].is_string()));
    // Health on the fleet store: each host's last round.
    let rounds = web.central(&pg, "health", &[]);
    let hosts: Vec<&str> = rounds.as_array().unwrap().iter().map(|r| r["observer"].as_str().unwrap()).collect();
    assert_eq!(hosts.len(), 2, "{rounds:#}");
    assert!(rounds.as_array().unwrap().iter().all(|r| r["last_minute"].is_string()), "{rounds:#}");
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
    // Scripts read the runs from `report health --format json` as before, the shipping state
    // from `--shipping`.
    let runs = report_with(&host.db, "health", &["--config", host.config.to_str().unwrap()]);
    assert!(runs.as_array().unwrap().iter().all(|r| r["run"].is_i64()), "{runs:#}");
    let shipping = |host: &Host| -> Value {
        report_with(&host.db, "health", &["--shipping", "--config", host.config.to_str().unwrap()])
    };
    let down = shipping(&host);
    let target = format!("postgres:{}", pg.url());
    assert_eq!(down.as_array().unwrap().len(), 1, "{down:#}");
    assert_eq!(down[0]["target"], target.as_str());
    assert!(down[0]["backlog"].as_i64() > Some(0), "{down:#}");
    assert!(down[0]["last_error"].as_str().unwrap().contains("Connection refused"), "{down:#}");
    assert!(down[0]["shipped_at"].is_string() && down[0]["tried_at"].is_string(), "{down:#}");
    let metrics = stdout(&run_ok(&host.args(&["metrics"])));
    assert!(metrics.contains("exfilmon_ship_failing{target=\"postgres:postgresql://"), "{metrics}");

    pg.start_again();
    assert_eq!(central_counts(&pg), before, "nothing arrived while the server was down");
    let o = host.ship();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("backlog 0"), "{}", stdout(&o));
    let up = shipping(&host);
    assert_eq!((up[0]["backlog"].as_i64(), up[0]["last_error"].is_null()), (Some(0), true), "{up:#}");
    assert!(up[0]["shipped_through"].as_i64() > down[0]["shipped_through"].as_i64(), "{up:#}");
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
    // The programs behind the egress ship with it: the fleet store names them as the host does.
    let programs = |users: Value| -> Vec<(Value, Value)> {
        users.as_array().unwrap().iter().map(|u| (u["user"].clone(), u["program"].clone())).collect()
    };
    let here = programs(report(&db, "users"));
    assert!(
        here.iter().any(|(u, p)| u == user && p.as_str().is_some_and(|p| p.contains("socat"))),
        "no socat in {here:?}"
    );
    let config = config.to_str().unwrap();
    assert_eq!(programs(report_with(pg.socket_url(), "users", &["--config", config])), here);
    let shipped = "SELECT sum(bytes) FROM egress_programs WHERE observer = 'live-1' AND exe LIKE '%socat'";
    assert!(pg.query_i64(shipped) > 6 << 20, "{}", pg.query_i64(shipped));
    // Named on the host, as the sender is.
    let named = pg.query("SELECT DISTINCT program_user FROM egress_programs WHERE exe LIKE '%socat'");
    assert_eq!(named, user);
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
    // Each migration applied once, whoever came first.
    let migrations = std::fs::read_dir(common::repo_file("migrations/postgres")).unwrap().count() as i64;
    assert_eq!(pg.query_i64("SELECT count(*) FROM exfilmon_schema"), migrations);
}

/// A fleet store made before programs shipped (schema 3) still answers `report users` and
/// `destinations` (without programs), and the next round of a newer shipper brings it up to date.
#[test]
fn a_store_without_programs_still_reports_and_the_next_round_migrates_it() {
    let Some(pg) = Postgres::start() else { return };
    let host = Host::new(&pg, "old-1");
    host.replay(&fixture("nflog-sample.pcap"));
    pg.query("DROP TABLE egress_programs; DELETE FROM exfilmon_schema WHERE version = 4");
    for what in ["users", "destinations"] {
        let rows = host.central(&pg, what, &[]);
        assert!(rows.as_array().unwrap().iter().all(|r| r["program"].is_null()), "{rows:#}");
    }
    assert_eq!(bytes_of(&host.central(&pg, "users", &[])), bytes_of(&report(&host.db, "users")));
    let o = host.ship();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(pg.query_i64("SELECT count(*) FROM exfilmon_schema WHERE version = 4"), 1);
    assert_eq!(pg.query("SELECT to_regclass('egress_programs') IS NOT NULL"), "t");
}

/// Every open tag closed in order (void elements and `<.../>` aside): text is escaped, so a
/// `<` in the page starts a tag.
fn well_formed(html: &str) -> Result<(), String> {
    const VOID: &[&str] = &["!doctype", "meta", "br", "hr", "img", "input", "link"];
    let mut open: Vec<String> = Vec::new();
    for tag in html.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap_or_default();
        let name = tag.trim_start_matches('/').split([' ', '/']).next().unwrap_or_default().to_lowercase();
        if VOID.contains(&name.as_str()) || tag.ends_with('/') {
            continue;
        }
        if tag.starts_with('/') {
            match open.pop() {
                Some(o) if o == name => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        } else {
            open.push(name);
        }
    }
    if open.is_empty() {
        Ok(())
    } else {
        Err(format!("left open: {open:?}"))
    }
}

/// `report html` and `report timeline` on the fleet store: both hosts' senders, each labelled
/// with its host; `--observer` keeps one.
#[test]
fn html_and_timeline_read_the_fleet_store() {
    let Some(pg) = Postgres::start() else { return };
    let (web, db) = two_hosts(&pg);
    let config = web.config.to_str().unwrap();

    let page = web.scratch.path("fleet.html");
    run_ok(&["report", "html", "--db", &pg.url(), "--config", config, "--output", page.to_str().unwrap()]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
    well_formed(&html).unwrap();
    assert!(html.contains("web-01: ") && html.contains("db-02: "), "both hosts' senders");
    for link in html.split("href=\"#").skip(1) {
        let id = link.split('"').next().unwrap();
        assert!(html.contains(&format!("id=\"{id}\"")), "link to #{id} has no target");
    }
    // The hostile names stay escaped, and the host list replaces the runs.
    assert!(!html.contains("<img src=x") && html.contains("&lt;img src=x onerror=alert(1)&gt;.example"));
    assert!(html.contains("<h3>Each host's last round</h3>"), "the hosts' rounds in the health section");
    let one = stdout(&run_ok(&["report", "html", "--db", &pg.url(), "--config", config, "--observer", "db-02"]));
    assert!(one.contains("db-02: ") && !one.contains("web-01: "));

    // The timeline's numbers: rows of both hosts, adding up to their egress.
    let rows = web.central(&pg, "timeline", &["--width", "200"]);
    let rows = rows.as_array().unwrap();
    let hosts: std::collections::BTreeSet<&str> = rows.iter().filter_map(|r| r["observer"].as_str()).collect();
    assert_eq!(hosts.into_iter().collect::<Vec<_>>(), ["db-02", "web-01"], "{rows:#?}");
    let bytes: i64 = rows.iter().map(|r| r["bytes"].as_i64().unwrap()).sum();
    assert_eq!(bytes, bytes_of(&report(&web.db, "users")) + bytes_of(&report(&db.db, "users")));
    assert!(rows.iter().all(|r| r["sender"].as_str().unwrap().starts_with(r["observer"].as_str().unwrap_or(""))));
    let text = stdout(&run_ok(&["report", "timeline", "--db", &pg.url(), "--config", config, "--width", "120"]));
    assert!(text.contains("web-01: ") && text.contains("db-02: "), "{text}");
    let only = web.central(&pg, "timeline", &["--observer", "web-01"]);
    assert!(only.as_array().unwrap().iter().all(|r| r["observer"] == "web-01" || r["observer"].is_null()));
}

/// Sensitive-file reads (the recorded scenarios of pcaps/sensitive.sh, replayed with their
/// audit log) ship with the egress, once: the central `report files` is the host's, with its
/// host and the reader named as on the host.
#[test]
fn file_reads_ship_and_report_files_reads_the_fleet_store() {
    let Some(pg) = Postgres::start() else { return };
    let host = Host::new(&pg, "files-1");
    let recorded = fixture("sensitive");
    let config = std::fs::read_to_string(&host.config).unwrap()
        + &std::fs::read_to_string(recorded.join("exfilmon.toml")).unwrap();
    std::fs::write(&host.config, config).unwrap();
    let (capture, audit) = (recorded.join("egress.pcap"), recorded.join("audit.log"));
    run_ok(&host.args(&["replay", capture.to_str().unwrap(), "--audit-log", audit.to_str().unwrap()]));

    let local = report_with(&host.db, "files", &["--config", host.config.to_str().unwrap()]);
    let central = host.central(&pg, "files", &[]);
    assert_eq!(local.as_array().unwrap().len(), 5, "{local:#}");
    assert_eq!(central, local, "the same rows, the same reader names and egress after");
    assert!(central.as_array().unwrap().iter().any(|r| r["alerts"].as_i64() > Some(0)), "{central:#}");
    assert!(central.as_array().unwrap().iter().all(|r| r["observer"] == "files-1"));
    let table = stdout(&run_ok(&["report", "files", "--db", &pg.url(), "--config", host.config.to_str().unwrap()]));
    assert!(table.contains("HOST") && table.contains("files-1"), "{table}");

    // Shipped again (the cursor lost), nothing doubles.
    let reads = pg.query_i64("SELECT count(*) FROM file_reads");
    rusqlite::Connection::open(&host.db).unwrap().execute("DELETE FROM ship_cursor", []).unwrap();
    assert!(host.ship().status.success());
    assert_eq!(pg.query_i64("SELECT count(*) FROM file_reads"), reads);
    assert!(host.central(&pg, "files", &["--observer", "elsewhere"]).as_array().unwrap().is_empty());
}
