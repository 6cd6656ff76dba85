//! Issue 12: `[[sink]] type = "jsonl"` with `format = "ecs"` writes Elastic Common Schema
//! documents. Every field of every document is checked against ECS's own definitions (the
//! subset of `ecs_flat.yml` in tests/fixtures/ecs/, whose README says where it came from):
//! the name must be an ECS field or sit under `exfilmon.*` (the custom namespace), the JSON
//! value must suit the field's type, categorisation values must be allowed ones and each
//! `event.type` expected for each `event.category`.
//!
//! Documents come from real replays (volume, DNS and ICMP tunnels, sensitive egress,
//! audit_off, checkpoints), from a live monitor in the namespace lab (its own events, a
//! volume alert naming the process behind an scp, checkpoints), and from the sink's record
//! builders for the alert kinds a replay cannot raise (baseline, monitor_loss,
//! audit_mismatch) and every monitor event kind. The ECS lines are compared with the native
//! lines the same records produced in a second jsonl sink.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::lab::{wait_for, Lab, USERS};
use common::{fixture, repo_file, run_ok, verify_checkpoint, Scratch};
use exfilmon::alert::{Alert, AlertKind, Severity};
use exfilmon::principal::{Principal, UserNames};
use exfilmon::sink::{alert_record, ecs, event_record};
use exfilmon::trail::{Checkpoint, Event, EventKind, Link};
use serde_json::{json, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// One ECS field as `ecs_flat.yml` defines it.
struct Def {
    ty: String,
    array: bool,
    /// `allowed_values` names, with each one's `expected_event_types` (event.category).
    allowed: Option<BTreeMap<String, Vec<String>>>,
}

struct Schema(BTreeMap<String, Def>);

impl Schema {
    fn load() -> Schema {
        let text = std::fs::read_to_string(repo_file("tests/fixtures/ecs/ecs_flat.yml")).unwrap();
        let docs = YamlLoader::load_from_str(&text).unwrap();
        let strings = |y: &Yaml| -> Vec<String> {
            y.as_vec().map(|v| v.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()).unwrap_or_default()
        };
        let fields = docs[0].as_hash().unwrap().iter().map(|(name, def)| {
            let name = name.as_str().unwrap().to_owned();
            assert_eq!(def["flat_name"].as_str(), Some(name.as_str()), "fixture entry {name}");
            let allowed = def["allowed_values"].as_vec().map(|values| {
                values
                    .iter()
                    .map(|v| (v["name"].as_str().unwrap().to_owned(), strings(&v["expected_event_types"])))
                    .collect()
            });
            let def = Def {
                ty: def["type"].as_str().unwrap().to_owned(),
                array: strings(&def["normalize"]).iter().any(|n| n == "array"),
                allowed,
            };
            (name, def)
        });
        Schema(fields.collect())
    }

    /// What is wrong with `doc`; adds the fields it has to `seen`.
    fn check(&self, doc: &Value, seen: &mut BTreeSet<String>) -> Vec<String> {
        let mut errors = Vec::new();
        for required in ["@timestamp", "ecs.version", "event.kind", "event.category", "event.type"] {
            if lookup(doc, required).is_none() {
                errors.push(format!("{required} missing"));
            }
        }
        self.walk("", doc, seen, &mut errors);
        let types = lookup(doc, "event.type").and_then(Value::as_array).cloned().unwrap_or_default();
        let categories = lookup(doc, "event.category").and_then(Value::as_array).cloned().unwrap_or_default();
        let expected = self.0["event.category"].allowed.as_ref().unwrap();
        for c in categories.iter().filter_map(Value::as_str) {
            for t in types.iter().filter_map(Value::as_str) {
                if expected.get(c).is_some_and(|e| !e.iter().any(|x| x == t)) {
                    errors.push(format!("event.type {t} is not expected for event.category {c}"));
                }
            }
        }
        errors
    }

    fn walk(&self, prefix: &str, v: &Value, seen: &mut BTreeSet<String>, errors: &mut Vec<String>) {
        let Some(fields) = v.as_object() else {
            errors.push(format!("{prefix}: an object was expected, got {v}"));
            return;
        };
        for (key, value) in fields {
            let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            if path == "exfilmon" {
                // The custom namespace: whatever exfilmon keeps there, as an object.
                if !value.is_object() {
                    errors.push(format!("exfilmon: not an object: {value}"));
                }
                seen.insert(path);
            } else if let Some(def) = self.0.get(&path) {
                self.value(&path, def, value, errors);
                seen.insert(path);
            } else if self.0.keys().any(|k| k.starts_with(&format!("{path}."))) {
                self.walk(&path, value, seen, errors);
            } else {
                errors.push(format!("{path} is not an ECS field (nor under exfilmon.*)"));
            }
        }
    }

    fn value(&self, path: &str, def: &Def, v: &Value, errors: &mut Vec<String>) {
        let items: Vec<&Value> = match (v, def.array) {
            (Value::Array(items), true) if !items.is_empty() => items.iter().collect(),
            (Value::Array(_), _) => return errors.push(format!("{path}: {v} (ECS wants {})", expect(def))),
            (one, _) => vec![one],
        };
        for item in items {
            let ok = match def.ty.as_str() {
                "keyword" | "match_only_text" => item.is_string(),
                "long" => item.is_i64() || item.is_u64(),
                "ip" => item.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
                "date" => item.as_str().is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
                other => panic!("{path}: the check knows no ECS type {other}"),
            };
            if !ok {
                errors.push(format!("{path}: {item} is not a {}", def.ty));
            }
            if let (Some(allowed), Some(s)) = (&def.allowed, item.as_str()) {
                if !allowed.contains_key(s) {
                    errors.push(format!("{path}: {s} is not one of ECS's allowed values"));
                }
            }
        }
    }
}

fn expect(def: &Def) -> String {
    if def.array {
        format!("a non-empty list of {}", def.ty)
    } else {
        format!("one {}", def.ty)
    }
}

/// The value at a dotted path of a nested document.
fn lookup<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = doc.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(doc, |v, part| v.get(part))
}

fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// Checks every document, panicking with all that is wrong; returns the fields seen.
fn assert_ecs(schema: &Schema, docs: &[Value]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut errors = Vec::new();
    for d in docs {
        for e in schema.check(d, &mut seen) {
            errors.push(format!("{e}\n    in {d}"));
        }
    }
    assert!(errors.is_empty(), "{} problems:\n{}", errors.len(), errors.join("\n"));
    seen
}

/// The ECS line says what the native line of the same record says.
fn assert_same_record(ecs: &Value, native: &Value) {
    let at = |p: &str| lookup(ecs, p).cloned().unwrap_or(Value::Null);
    assert_eq!(at("@timestamp"), native["ts"], "{ecs}\n{native}");
    assert_eq!(at("observer.hostname"), native["observer"]);
    assert_eq!(at("host.name"), native["observer"]);
    assert_eq!(at("event.dataset"), json!(format!("exfilmon.{}", native["type"].as_str().unwrap())));
    match native["type"].as_str().unwrap() {
        "alert" => {
            assert_eq!(at("event.kind"), "alert");
            assert_eq!(at("event.action"), native["kind"]);
            assert_eq!(at("event.sequence"), native["seq"]);
            assert_eq!(at("event.hash"), native["hash"]);
            assert_eq!(at("event.id"), json!(format!("{}:{}", native["observer"].as_str().unwrap(), native["seq"])));
            assert_eq!(at("exfilmon.severity"), native["severity"]);
            assert_eq!(at("message"), native["summary"]);
            assert_eq!(at("user.id"), native["uid"].as_u64().map_or(Value::Null, |u| json!(u.to_string())));
            assert_eq!(at("user.name"), native["user"]);
            assert_eq!(at("source.ip"), native["host"]);
            // Egress is what the source sent.
            let bytes = native["bytes"].as_u64().unwrap();
            assert_eq!(at("source.bytes"), if bytes > 0 { json!(bytes) } else { Value::Null });
            assert_eq!(at("destination.bytes"), Value::Null);
            assert_eq!(at("exfilmon.dst"), native["dst"]);
            if let Some(ip) = at("destination.ip").as_str() {
                assert!(native["dst"].as_str().unwrap().contains(ip), "{ecs}\n{native}");
            }
            assert_eq!(at("exfilmon.details"), native["details"]);
        }
        "event" => {
            assert_eq!(at("event.kind"), "event");
            assert_eq!(at("event.action"), native["kind"]);
            assert_eq!(at("event.sequence"), native["seq"]);
            assert_eq!(at("exfilmon.details"), native["details"]);
        }
        "checkpoint" => {
            assert_eq!(at("event.kind"), "state");
            assert_eq!(at("event.sequence"), native["rows"]);
            assert_eq!(at("event.hash"), native["head"]);
            // The checkpoint whole, as `exfilmon verify --checkpoint` reads it.
            let shipped = Checkpoint::from_json(&at("exfilmon.checkpoint")).unwrap();
            assert_eq!(Some(shipped), Checkpoint::from_json(native));
        }
        other => panic!("a {other} record in a jsonl file"),
    }
}

/// A config's two jsonl sinks, native and ECS, in `dir`.
fn sinks(dir: &Path) -> String {
    format!(
        "[[sink]]\ntype = \"jsonl\"\npath = {:?}\n[[sink]]\ntype = \"jsonl\"\npath = {:?}\nformat = \"ecs\"\n",
        dir.join("native.jsonl"),
        dir.join("ecs.jsonl")
    )
}

fn keygen(dir: &Path) -> PathBuf {
    let key = dir.join("trail");
    run_ok(&["keygen", "--out", key.to_str().unwrap()]);
    key
}

/// Every alert kind a capture can raise, the sensitive-file ones with their audit log.
fn replayed(dir: &Scratch) -> (Vec<Value>, Vec<Value>) {
    let key = keygen(dir.root());
    let cfg = dir.path("exfilmon.toml");
    let sensitive = std::fs::read_to_string(fixture("sensitive/exfilmon.toml")).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "observer = \"web-01\"\n[trail]\nsigning_key = \"{}.key\"\n{sensitive}\n\
             [[volume]]\nwindow = \"1m\"\nbytes = \"512KiB\"\nseverity = \"high\"\n{}",
            key.display(),
            sinks(dir.root())
        ),
    )
    .unwrap();
    let (db, cfg) = (dir.db(), cfg.to_string_lossy().into_owned());
    let captures = [
        "nflog-sample.pcap",
        "covert/dest-names.pcap",
        "covert/iodine.pcap",
        "covert/iodine-raw.pcap",
        "covert/ptunnel.pcap",
        "covert/icmp6-exfil.pcap",
    ];
    let files: Vec<String> = captures.iter().map(|f| fixture(f).to_string_lossy().into_owned()).collect();
    let mut args = vec!["replay", "--db", &db, "-c", &cfg];
    args.extend(files.iter().map(String::as_str));
    run_ok(&args);
    let (pcap, log) = (fixture("sensitive/egress.pcap"), fixture("sensitive/audit.log"));
    run_ok(&["replay", "--db", &db, "-c", &cfg, pcap.to_str().unwrap(), "--audit-log", log.to_str().unwrap()]);
    (lines(&dir.path("ecs.jsonl")), lines(&dir.path("native.jsonl")))
}

#[test]
fn replayed_alerts_and_checkpoints_are_ecs_documents() {
    let schema = Schema::load();
    let dir = Scratch::new();
    let (ecs, native) = replayed(&dir);
    assert_eq!(ecs.len(), native.len());
    assert_ecs(&schema, &ecs);
    for (e, n) in ecs.iter().zip(&native) {
        assert_same_record(e, n);
    }
    let actions: BTreeSet<&str> = ecs.iter().filter_map(|d| d["event"]["action"].as_str()).collect();
    let want = ["audit_off", "checkpoint", "dns_tunnel", "icmp_tunnel", "sensitive_egress", "volume"];
    assert_eq!(actions, want.into_iter().collect(), "every kind a capture raises");
    let of = |action: &str| ecs.iter().filter(|d| d["event"]["action"] == action).collect::<Vec<_>>();

    let techniques = |d: &Value| d["threat"]["technique"]["id"].clone();
    let names = of("dns_tunnel").into_iter().find(|d| d["destination"]["domain"] == "tun.test").unwrap();
    assert_eq!(names["threat"]["technique"]["subtechnique"]["id"], json!(["T1048.003", "T1071.004"]));
    assert_eq!(names["network"]["protocol"], "dns");
    let raw = of("dns_tunnel").into_iter().find(|d| d["destination"]["port"] == 53).unwrap();
    assert_eq!((techniques(raw), &raw["network"]["transport"]), (json!(["T1048", "T1095"]), &json!("udp")));
    let icmp: Vec<&Value> = of("icmp_tunnel");
    assert!(icmp.iter().any(|d| d["network"]["transport"] == "icmp" && d["destination"]["ip"] == "10.77.9.1"));
    assert!(icmp.iter().any(|d| d["network"]["transport"] == "ipv6-icmp" && d["destination"]["ip"] == "fd77:9::1"));
    assert!(icmp.iter().all(|d| techniques(d) == json!(["T1048", "T1095"])));
    let named = of("volume").into_iter().find(|d| d["destination"]["ip"] == "10.77.9.7").unwrap();
    assert_eq!(named["destination"]["domain"], "files.exfil-drop.example", "the name it was looked up by");
    assert_eq!(techniques(of("sensitive_egress")[0]), json!(["T1005", "T1048"]));
    let off = of("audit_off")[0];
    assert_eq!((&off["event"]["category"], techniques(off)), (&json!(["configuration"]), json!(["T1562"])));
    assert!(ecs.iter().all(|d| d["observer"]["hostname"] == "web-01" && d["ecs"]["version"] == ecs::ECS_VERSION));
}

fn alert(kind: AlertKind, principal: Principal, dst: Option<&str>, bytes: u64, details: Value) -> Alert {
    Alert {
        ts_us: 1_700_000_000_000_000,
        kind,
        severity: Severity::Medium,
        principal,
        dst: dst.map(str::to_owned),
        bytes,
        summary: format!("a {} alert", kind.as_str()),
        details,
    }
}

/// Documents of every alert kind and every monitor event kind, from the sink's own record
/// builders (the kinds a replay cannot raise among them), in every destination form.
fn built() -> Vec<Value> {
    let mut names = UserNames::default();
    let link = |seq| Link { seq, hash: [seq as u8; 32] };
    let uid = Principal::Uid(0);
    let host = Principal::Host("192.0.2.8".parse().unwrap());
    let process = json!({ "pid": 4242, "comm": "curl", "exe": "/usr/bin/curl", "uid": 1001, "login_uid": 1001, "unit": "session-3.scope", "cgroup": "/user.slice" });
    let mut alerts = vec![
        alert(AlertKind::Volume, uid, Some("203.0.113.5:443/tcp"), 9_000_000, json!({ "process": process })),
        alert(AlertKind::Volume, host, Some("[2001:db8::5]:22/tcp"), 5_000_000, json!({ "process": null })),
        alert(AlertKind::AuditMismatch, uid, Some("203.0.113.9/proto-47"), 0, json!({ "connections": 3 })),
    ];
    for kind in AlertKind::ALL {
        alerts.push(alert(kind, uid, None, 0, json!({})));
    }
    let mut records: Vec<_> =
        alerts.iter().enumerate().map(|(i, a)| alert_record(a, &link(i as i64 + 1), &mut names)).collect();
    for (i, kind) in EventKind::ALL.into_iter().enumerate() {
        let e = Event::now(kind, Severity::High, format!("{} happened", kind.as_str()), json!({ "why": "test" }));
        // A database error cannot be stored: it has no place in the trail.
        let stored = (kind != EventKind::DatabaseError).then(|| link(100 + i as i64));
        records.push(event_record(&e, stored.as_ref(), Some(7)));
    }
    records
        .into_iter()
        .map(|mut r| {
            // As the dispatcher stamps it.
            r.json["observer"] = json!("db-02");
            ecs::document(&r)
        })
        .collect()
}

#[test]
fn every_alert_and_event_kind_is_an_ecs_document() {
    let docs = built();
    assert_ecs(&Schema::load(), &docs);
    let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["event"]["action"].as_str()).collect();
    for k in AlertKind::ALL {
        assert!(kinds.contains(k.as_str()), "{k:?}");
    }
    let curl = &docs[0];
    assert_eq!(
        curl["process"],
        json!({ "pid": 4242, "name": "curl", "executable": "/usr/bin/curl", "user": { "id": "1001" } })
    );
    assert_eq!(curl["user"], json!({ "id": "0", "name": "root" }));
    assert_eq!((&docs[1]["source"]["ip"], &docs[1]["network"]["type"]), (&json!("192.0.2.8"), &json!("ipv6")));
    assert_eq!(docs[2]["network"]["iana_number"], "47");
    let action = |a: &str| docs.iter().find(|d| d["event"]["action"] == a).unwrap();
    assert_eq!(action("baseline")["threat"]["technique"]["id"], json!(["T1030"]));
    assert!(action("monitor_loss").get("threat").is_none(), "packet loss is no technique");
    assert_eq!(action("started")["event"]["type"], json!(["start"]));
    assert_eq!(action("stopped")["event"]["type"], json!(["end"]));
    assert_eq!(action("database_error")["event"]["category"], json!(["database"]));
    assert!(action("database_error")["event"].get("id").is_none(), "not in the trail, no trail id");
    assert_eq!(action("sink_failed")["event"]["id"], "db-02:109");
}

/// The fixture is the subset in use: every field it defines is emitted by some document.
#[test]
fn every_vendored_field_is_emitted() {
    let schema = Schema::load();
    let dir = Scratch::new();
    let mut docs = replayed(&dir).0;
    docs.extend(built());
    let seen = assert_ecs(&schema, &docs);
    let unused: Vec<&String> = schema.0.keys().filter(|k| !seen.contains(*k)).collect();
    assert!(unused.is_empty(), "tests/fixtures/ecs/ecs_flat.yml defines fields no record uses: {unused:?}");
}

/// The body of the code block in docs/shipping.md fenced as `lang` that contains `needle`.
fn snippet(lang: &str, needle: &str) -> String {
    let doc = std::fs::read_to_string(repo_file("docs/shipping.md")).unwrap();
    let fence = format!("```{lang}\n");
    doc.split(fence.as_str())
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(body, _)| body.to_owned()))
        .find(|body| body.contains(needle))
        .unwrap_or_else(|| panic!("docs/shipping.md has no {lang} block with {needle:?}"))
}

/// docs/shipping.md's snippets: not run by Filebeat or Vector (neither is in Debian), but they
/// parse, read the file the sink writes, and name fields the documents have.
#[test]
fn shipping_snippets_parse_and_read_the_sinks_file() {
    let sink = snippet("toml", "[[sink]]");
    let config = exfilmon::config::Config::parse(&sink, Path::new("docs/shipping.md")).unwrap();
    let exfilmon::sink::SinkKind::Jsonl { path, format } = &config.sink[0].kind else { panic!("{sink}") };
    assert_eq!(*format, exfilmon::sink::config::JsonlFormat::Ecs);
    let path = path.to_str().unwrap();
    assert_eq!(path, "/var/log/exfilmon/alerts.jsonl", "the example config's path");

    let example: Value = serde_json::from_str(&snippet("json", "\"@timestamp\"")).unwrap();
    assert_ecs(&Schema::load(), std::slice::from_ref(&example));
    let doc = &built()[0];
    for field in ["event.dataset", "event.id"] {
        assert!(lookup(doc, field).is_some() && lookup(&example, field).is_some(), "{field}");
    }

    let vector: toml::Value = toml::from_str(&snippet("toml", "[sources.exfilmon_file]")).unwrap();
    assert_eq!(vector["sources"]["exfilmon_file"]["include"][0].as_str(), Some(path));
    let es = &vector["sinks"]["elasticsearch"];
    assert_eq!(es["id_key"].as_str(), Some("event.id"));
    assert_eq!(es["data_stream"]["dataset"].as_str(), Some("{{ event.dataset }}"));
    assert!(vector["transforms"]["exfilmon_ecs"]["source"].as_str().unwrap().contains("parse_json!"));

    let filebeat = &YamlLoader::load_from_str(&snippet("yaml", "filebeat.inputs")).unwrap()[0];
    let input = &filebeat["filebeat.inputs"][0];
    assert_eq!((input["type"].as_str(), input["paths"][0].as_str()), (Some("filestream"), Some(path)));
    assert_eq!(input["parsers"][0]["ndjson"]["target"].as_str(), Some(""));
    assert_eq!(filebeat["processors"][0]["fingerprint"]["fields"][0].as_str(), Some("event.id"));
    assert_eq!(filebeat["output.elasticsearch"]["index"].as_str(), Some("logs-%{[event.dataset]}-default"));
}

/// The live monitor's records: its events, a volume alert naming the process behind an scp,
/// checkpoints; every line an ECS document saying what the native line says, none lost or
/// doubled when logrotate (docs/shipping.md's configuration) rotates the file mid-run.
#[test]
fn live_monitor_events_and_alerts_are_ecs_documents() {
    let Some(mut lab) = Lab::new() else { return };
    if !Path::new("/usr/sbin/logrotate").exists() {
        return common::skip("logrotate is not installed (Debian package logrotate)");
    }
    let key = keygen(lab.dir.path());
    let cfg = lab.path("exfilmon.toml");
    let text = format!(
        "observer = \"web-01\"\n[trail]\nsigning_key = \"{}.key\"\ncheckpoint_interval = \"1s\"\n\
         [monitor]\nruleset_check = \"1s\"\n\
         [[volume]]\nwindow = \"1m\"\nbytes = \"512KiB\"\n{}",
        key.display(),
        sinks(lab.dir.path())
    );
    std::fs::write(&cfg, text).unwrap();
    lab.load_ruleset(&cfg);
    let db = lab.path("live.db");
    let monitor = lab.start_monitor(&cfg, &db, "monitor.log");
    let ssh = lab.start_sshd();
    let user = USERS[0];
    let file = lab.secret(user, 1 << 20);
    // Paced (2 Mbit/s, 4 s): the owner lookup names the process before the rule's threshold.
    lab.scp_with(&ssh, user, &file, &["-l", "2000"]);
    let ecs_path = lab.path("ecs.jsonl");
    let rotated = lab.path("ecs.jsonl.1");
    // Both generations of the file, oldest first, as a shipper reads them.
    let all = |name: &str| {
        [format!("{name}.1"), name.to_owned()].iter().flat_map(|n| lines(&lab.path(n))).collect::<Vec<_>>()
    };
    let has = |action: &str| all("ecs.jsonl").iter().any(|d| d["event"]["action"] == action);
    wait_for(Duration::from_secs(20), "a volume alert", || has("volume"));

    // logrotate with docs/shipping.md's configuration, pointed at the lab's directory, while
    // the monitor runs: the file is renamed and the next record makes a new one.
    let conf = lab.path("logrotate.conf");
    let dir = format!("{}/", lab.dir.path().display());
    std::fs::write(&conf, snippet("conf", "/var/log/exfilmon/*.jsonl {").replace("/var/log/exfilmon/", &dir)).unwrap();
    let state = lab.path("logrotate.state");
    let o = std::process::Command::new("logrotate").arg("-f").arg("-s").arg(&state).arg(&conf).output().unwrap();
    assert!(o.status.success(), "logrotate: {}", String::from_utf8_lossy(&o.stderr));
    assert!(rotated.exists() && !ecs_path.exists(), "renamed, and nocreate leaves the new file to exfilmon");
    assert!(lab.inside(&["nft", "delete", "table", "inet", "exfilmon"]).status.success());
    wait_for(Duration::from_secs(10), "ruleset_missing", || has("ruleset_missing"));
    lab.load_ruleset(&cfg);
    wait_for(Duration::from_secs(10), "ruleset_restored", || has("ruleset_restored"));
    monitor.signal("HUP");
    wait_for(Duration::from_secs(10), "reloaded", || has("reloaded"));
    let (status, log) = monitor.stop();
    assert!(status.success(), "{log}");

    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&ecs_path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o640, "the file after rotation is exfilmon's own");
    let (ecs, native) = (all("ecs.jsonl"), all("native.jsonl"));
    assert_eq!(ecs.len(), native.len());
    assert!(!lines(&rotated).is_empty() && !lines(&ecs_path).is_empty(), "records on both sides of the rotation");
    // Nothing lost or doubled across the rotation: the trail positions run on, one by one.
    let seqs: Vec<i64> =
        ecs.iter().filter(|d| d["event"]["kind"] != "state").filter_map(|d| d["event"]["sequence"].as_i64()).collect();
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
    assert_ecs(&Schema::load(), &ecs);
    for (e, n) in ecs.iter().zip(&native) {
        assert_same_record(e, n);
    }
    let actions: Vec<&str> = ecs.iter().filter_map(|d| d["event"]["action"].as_str()).collect();
    for want in ["started", "volume", "ruleset_missing", "ruleset_restored", "reloaded", "stopped", "checkpoint"] {
        assert!(actions.contains(&want), "{want}: {actions:?}");
    }
    let started = ecs.iter().find(|d| d["event"]["action"] == "started").unwrap();
    assert_eq!(started["event"]["type"], json!(["start"]));
    let volume = ecs.iter().find(|d| d["event"]["action"] == "volume").unwrap();
    assert_eq!(volume["user"]["name"], user);
    assert_eq!(volume["destination"]["ip"], lab.peer.as_str());
    assert!(volume["source"]["bytes"].as_u64().unwrap() >= 512 << 10, "{volume}");
    assert!(volume["process"]["pid"].as_u64().is_some_and(|p| p > 0), "the process behind it: {volume}");
    assert!(volume["process"]["name"].is_string(), "{volume}");
    // The last checkpoint, read from the ECS file, verifies the trail.
    let last = ecs.iter().rev().find(|d| d["event"]["action"] == "checkpoint").unwrap();
    let shipped = lab.path("checkpoint.json");
    std::fs::write(&shipped, last["exfilmon"]["checkpoint"].to_string()).unwrap();
    let o = verify_checkpoint(&db, Path::new(&format!("{}.pub", key.display())), &shipped);
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
}
