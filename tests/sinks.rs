//! Issue 6: alert delivery to real receivers on loopback — a syslog collector (UDP and TCP),
//! an exec hook and a sendmail stand-in that record what they get, a JSON Lines file — and
//! receivers that hang or fail: the replay still finishes, every alert is stored, and every
//! record not delivered is counted in a monitor event.
//!
//! Alerts come from replaying pcaps/nflog-sample.pcap (one volume alert by default; the
//! config here adds a second rule, so two), which is deterministic.

mod common;

use std::io::Read as _;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{bin, fixture, report_with, Scratch};
use serde_json::Value;

/// Every record, syslog header and mail subject names this observer, not the machine.
const OBSERVER: &str = "web-01";
const RULES: &str = "observer = \"web-01\"\n[[volume]]\nwindow = \"10m\"\nbytes = \"4MiB\"\n[[volume]]\nwindow = \"1m\"\nbytes = \"512KiB\"\nseverity = \"high\"\n";

/// One test's directory: its config, scripts, receivers' files and the database.
struct Case {
    dir: Scratch,
}

impl Case {
    fn new() -> Case {
        Case { dir: Scratch::new() }
    }

    /// `report WHAT --format json` read with the case's configuration (its observer).
    fn report(&self, what: &str) -> Value {
        let config = self.dir.path("exfilmon.toml");
        report_with(self.dir.db(), what, &["-c", config.to_str().unwrap()])
    }

    /// An executable shell script (the sinks themselves use no shell).
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.dir.path(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn replay(&self, sinks: &str) -> Output {
        std::fs::write(self.dir.path("exfilmon.toml"), format!("{RULES}{sinks}")).unwrap();
        let sample = fixture("nflog-sample.pcap");
        let o = bin()
            .arg("replay")
            .arg("--db")
            .arg(self.dir.db())
            .arg("-c")
            .arg(self.dir.path("exfilmon.toml"))
            .arg(sample)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o
    }

    fn lines(&self, name: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path(name)).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
    }
}

/// The fields `report alerts --format json` has, with the same values.
fn assert_same_as_report(sent: &Value, reported: &Value) {
    for (key, value) in reported.as_object().unwrap() {
        assert_eq!(&sent[key], value, "field {key}: sent {sent}, reported {reported}");
    }
    assert_eq!(sent["type"], "alert");
    assert_eq!(sent["observer"], OBSERVER, "{sent}");
    assert!(sent["hash"].as_str().is_some_and(|h| h.len() == 64), "{sent}");
}

#[test]
fn jsonl_lines_carry_the_report_fields_and_the_trail_position() {
    let c = Case::new();
    c.replay(&format!("[[sink]]\ntype = \"jsonl\"\npath = {:?}\n", c.dir.path("alerts.jsonl")));
    let sent = c.lines("alerts.jsonl");
    let reported = c.report("alerts");
    assert_eq!(sent.len(), 2, "{sent:?}");
    // Report order is by time then id; the trail's is by seq: the same here.
    for (s, r) in sent.iter().zip(reported.as_array().unwrap()) {
        assert_same_as_report(s, r);
    }
    assert_eq!((sent[0]["seq"].as_i64(), sent[1]["seq"].as_i64()), (Some(1), Some(2)));
}

#[test]
fn syslog_over_udp_and_tcp_is_rfc5424() {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = Case::new();
    let sinks = format!(
        "[[sink]]\ntype = \"syslog\"\naddress = \"udp:{}\"\nfacility = \"local3\"\n\
         [[sink]]\ntype = \"syslog\"\naddress = \"tcp:{}\"\napp_name = \"exfil-test\"\n",
        udp.local_addr().unwrap(),
        tcp.local_addr().unwrap()
    );
    let collector = std::thread::spawn(move || {
        let (mut conn, _) = tcp.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut all = Vec::new();
        let _ = conn.read_to_end(&mut all);
        String::from_utf8(all).unwrap()
    });
    c.replay(&sinks);

    let mut buf = [0u8; 65536];
    let mut datagrams = Vec::new();
    for _ in 0..2 {
        let n = udp.recv(&mut buf).unwrap();
        datagrams.push(String::from_utf8(buf[..n].to_vec()).unwrap());
    }
    let reported = c.report("alerts");
    // local3 (19) * 8 + crit (2) for the high alert, + warning (4) for the medium one.
    let first: Vec<&str> = datagrams[0].splitn(8, ' ').collect();
    assert_eq!(first[0], "<154>1", "{}", datagrams[0]);
    assert_eq!(first[2], OBSERVER, "RFC 5424 HOSTNAME");
    assert_eq!(first[3], "exfilmon");
    assert_eq!(first[5..7], ["alert", "-"]);
    chrono::DateTime::parse_from_rfc3339(first[1]).unwrap();
    assert!(datagrams[1].starts_with("<156>1 "), "{}", datagrams[1]);
    for (d, r) in datagrams.iter().zip(reported.as_array().unwrap()) {
        let json: Value = serde_json::from_str(d.splitn(8, ' ').nth(7).unwrap()).unwrap();
        assert_same_as_report(&json, r);
    }

    // TCP: octet-counted frames ("LEN SP MSG"), the connection closed when replay exits.
    let stream = collector.join().unwrap();
    let mut rest = stream.as_str();
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let (len, after) = rest.split_once(' ').unwrap();
        let len: usize = len.parse().unwrap();
        frames.push(&after[..len]);
        rest = &after[len..];
    }
    assert_eq!(frames.len(), 2, "{stream}");
    assert!(frames[0].starts_with("<82>1 ") && frames[0].contains(" exfil-test "), "{}", frames[0]);
}

#[test]
fn exec_hook_gets_each_alert_as_json_on_stdin_without_a_shell() {
    let c = Case::new();
    let hook = c.script(
        "hook",
        "echo \"$EXFILMON_RECORD $1 $2\" >> \"$(dirname \"$0\")/args\"; cat >> \"$(dirname \"$0\")/stdin\"",
    );
    // An argument with shell syntax arrives as it is.
    c.replay(&format!(
        "[[sink]]\ntype = \"exec\"\nprogram = {hook:?}\nargs = [\"--team\", \"sec; rm -rf /tmp/x $(id)\"]\n"
    ));
    let args = std::fs::read_to_string(c.dir.path("args")).unwrap();
    assert_eq!(args, "alert --team sec; rm -rf /tmp/x $(id)\n".repeat(2));
    let sent = c.lines("stdin");
    for (s, r) in sent.iter().zip(c.report("alerts").as_array().unwrap()) {
        assert_same_as_report(s, r);
    }
    assert_eq!(sent.len(), 2);
}

#[test]
fn email_goes_through_the_sendmail_program() {
    let c = Case::new();
    let sendmail = c.script("sendmail", "echo \"$@\" >> \"$(dirname \"$0\")/argv\"; cat >> \"$(dirname \"$0\")/mail\"");
    c.replay(&format!(
        "[[sink]]\ntype = \"email\"\nsendmail = {sendmail:?}\nto = [\"soc@example.org\", \"oncall@example.org\"]\nfrom = \"exfilmon@example.org\"\nmin_severity = \"high\"\n"
    ));
    let argv = std::fs::read_to_string(c.dir.path("argv")).unwrap();
    assert_eq!(argv, "-oi -- soc@example.org oncall@example.org\n", "only the high alert is mailed");
    let mail = std::fs::read_to_string(c.dir.path("mail")).unwrap();
    let (headers, body) = mail.split_once("\n\n").unwrap();
    assert!(headers.contains("From: exfilmon@example.org\nTo: soc@example.org, oncall@example.org\n"), "{headers}");
    assert!(headers.contains("Subject: [exfilmon web-01] high volume: uid 1001 sent"), "{headers}");
    assert!(body.starts_with("uid 1001 sent 517.4 KiB within 1m"), "{body}");
    assert!(body.contains("\"kind\": \"volume\""), "{body}");
}

/// A hook that hangs is killed at its timeout and retried with back-off; the replay is not
/// held up beyond the delivery grace, every alert is stored, and what was not delivered is
/// counted in events that `report health` and `report events` show.
#[test]
fn hanging_receiver_times_out_is_counted_and_blocks_nothing() {
    let c = Case::new();
    let hang = c.script("hang", "sleep 30");
    let started = Instant::now();
    let o = c.replay(&format!(
        "[monitor]\ndelivery_grace = \"1s\"\n\
         [[sink]]\ntype = \"exec\"\nprogram = {hang:?}\ntimeout = \"300ms\"\nretries = 1\nbackoff = \"100ms\"\n\
         [[sink]]\ntype = \"jsonl\"\npath = {:?}\n",
        c.dir.path("alerts.jsonl")
    ));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "replay took {took:?}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("did not finish within 300ms and was killed"), "{stderr}");
    assert_eq!(c.report("alerts").as_array().unwrap().len(), 2, "capture and storage went on");
    assert_eq!(c.lines("alerts.jsonl").len(), 2, "the other sink delivered");

    let events = c.report("events");
    let kinds: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"sink_failed"), "{events}");
    let undelivered = events.as_array().unwrap().iter().find(|e| e["kind"] == "sink_undelivered").unwrap();
    let stats = &undelivered["details"]["stats"];
    let lost =
        stats["failed"].as_u64().unwrap() + stats["abandoned"].as_u64().unwrap() + stats["overflow"].as_u64().unwrap();
    assert_eq!((lost, stats["delivered"].as_u64()), (2, Some(0)), "both alerts counted: {undelivered}");
    assert!(undelivered["summary"].as_str().unwrap().contains(&format!("sink exec:{}", hang.display())));

    let table = bin().args(["report", "health", "--db"]).arg(c.dir.db()).output().unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("Monitor events") && table.contains("sink_undelivered"), "{table}");
}

/// A full queue drops on arrival; every record is still accounted for.
#[test]
fn full_queue_and_failing_receivers_drop_nothing_uncounted() {
    let c = Case::new();
    let hang = c.script("hang", "sleep 30");
    // Nothing listens on this port: connecting fails at once.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    c.replay(&format!(
        "[monitor]\ndelivery_grace = \"200ms\"\n\
         [[sink]]\ntype = \"exec\"\nprogram = {hang:?}\ntimeout = \"200ms\"\nqueue = 1\n\
         [[sink]]\ntype = \"exec\"\nprogram = \"/bin/false\"\nretries = 2\nbackoff = \"10ms\"\n\
         [[sink]]\ntype = \"syslog\"\naddress = \"tcp:{closed}\"\nretries = 0\n"
    ));
    let events = c.report("events");
    let events = events.as_array().unwrap();
    for name in [format!("exec:{}", hang.display()), "exec:/bin/false".into(), format!("syslog:tcp:{closed}")] {
        let mine: Vec<&Value> = events.iter().filter(|e| e["details"]["sink"] == name.as_str()).collect();
        let failed = mine.iter().find(|e| e["kind"] == "sink_failed").unwrap_or_else(|| panic!("{name}: {events:?}"));
        let undelivered = mine.iter().find(|e| e["kind"] == "sink_undelivered").unwrap();
        let s = &undelivered["details"]["stats"];
        let total: u64 = ["delivered", "failed", "overflow", "abandoned"].iter().map(|k| s[k].as_u64().unwrap()).sum();
        assert_eq!(total, 2, "{name}: every alert delivered or counted: {s}");
        if name.starts_with("syslog") {
            assert!(failed["summary"].as_str().unwrap().contains("cannot connect"), "{failed}");
        }
        if name == "exec:/bin/false" {
            assert_eq!((s["failed"].as_u64(), s["retries"].as_u64()), (Some(2), Some(4)), "{s}");
        }
    }
    // The trail with the sink events in it verifies.
    let o = bin().arg("verify").arg("--db").arg(c.dir.db()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}
