//! Records as Elastic Common Schema documents: the lines of `[[sink]] type = "jsonl"` with
//! `format = "ecs"`, for Filebeat, Elastic Agent, Vector or Logstash to ship with no mapping
//! step of their own.
//!
//! A document is made from the native record ([`Record`]), so the two never disagree: what
//! has an ECS field goes there (`@timestamp`, `event.*`, `user.*`, `source.*`,
//! `destination.*`, `network.*`, `process.*`, `host.name`, `observer.*`, `threat.*` with the
//! MITRE ATT&CK technique each alert kind stands for); the rest stays under `exfilmon.*`, the
//! custom namespace ECS asks custom fields to use (`exfilmon.details`, `exfilmon.dst`,
//! `exfilmon.severity`, `exfilmon.run`, and a checkpoint whole under `exfilmon.checkpoint`).
//! Egress is bytes *from* the source, so an alert's bytes are `source.bytes`.
//!
//! `event.id` is `OBSERVER:SEQ`, the record's place in this host's trail: a shipper that
//! indexes with it as the document id stores a record delivered twice once.
//! `tests/ecs.rs` checks every field of every kind of document against ECS's own field
//! definitions (`tests/fixtures/ecs/`).

use serde_json::{json, Map, Value};

use super::{Record, RecordKind};
use crate::alert::{AlertKind, Severity};
use crate::principal::dst_parts;
use crate::trail::EventKind;

/// The ECS version the documents follow (`ecs.version`).
pub const ECS_VERSION: &str = "8.12.0";

/// The ECS document of `r`.
pub fn document(r: &Record) -> Value {
    let j = &r.json;
    let mut doc = Doc::default();
    doc.put("@timestamp", j["ts"].clone());
    doc.put("ecs.version", ECS_VERSION);
    doc.put("message", r.summary.as_str());
    doc.put("event.module", "exfilmon");
    doc.put("event.dataset", format!("exfilmon.{}", r.kind.as_str()));
    doc.put("event.severity", severity_number(r.severity));
    doc.put("host.name", j["observer"].clone());
    doc.put("observer.hostname", j["observer"].clone());
    doc.put("observer.product", "exfilmon");
    doc.put("observer.vendor", "exfilmon");
    doc.put("observer.type", "ids");
    doc.put("observer.version", env!("CARGO_PKG_VERSION"));
    doc.put("exfilmon.severity", r.severity.as_str());
    match r.kind {
        RecordKind::Alert => alert(&mut doc, j),
        RecordKind::Event => event(&mut doc, j),
        RecordKind::Checkpoint => {
            // The trail's state: its rows and head hash, signed.
            state(&mut doc, j, RecordKind::Checkpoint, "database");
            doc.put("event.id", id(j, &j["ts_us"], Some("checkpoint")));
            doc.put("event.sequence", j["rows"].clone());
            doc.put("event.hash", j["head"].clone());
        }
        RecordKind::Heartbeat => state(&mut doc, j, RecordKind::Heartbeat, "process"),
    }
    Value::Object(doc.0)
}

/// A record that describes a state: categorised, and kept whole under `exfilmon.<kind>`
/// without the observer said above (a checkpoint read back from there verifies as the
/// native one does).
fn state(doc: &mut Doc, j: &Value, kind: RecordKind, category: &str) {
    let mut native = j.clone();
    if let Value::Object(m) = &mut native {
        m.remove("observer");
    }
    doc.put("event.kind", "state");
    doc.put("event.category", json!([category]));
    doc.put("event.type", json!(["info"]));
    doc.put("event.action", kind.as_str());
    doc.put(&format!("exfilmon.{}", kind.as_str()), native);
}

/// Low 1, medium 2, high 3: higher is worse, as ECS's `event.severity` expects.
fn severity_number(s: Severity) -> u8 {
    match s {
        Severity::Low => 1,
        Severity::Medium => 2,
        Severity::High => 3,
    }
}

/// `OBSERVER:SEQ` (or `OBSERVER:WHAT:N`): unique across a fleet, the same at every delivery.
fn id(j: &Value, n: &Value, what: Option<&str>) -> Value {
    match (j["observer"].as_str(), n.as_i64()) {
        (Some(o), Some(n)) => match what {
            Some(w) => format!("{o}:{w}:{n}").into(),
            None => format!("{o}:{n}").into(),
        },
        _ => Value::Null,
    }
}

/// The trail position: `event.id`, `event.sequence`, `event.hash` (none for an event that
/// could not be stored).
fn trail(doc: &mut Doc, j: &Value) {
    doc.put("event.id", id(j, &j["seq"], None));
    doc.put("event.sequence", j["seq"].clone());
    doc.put("event.hash", j["hash"].clone());
}

fn alert(doc: &mut Doc, j: &Value) {
    let kind = j["kind"].as_str().and_then(AlertKind::from_name);
    let details = &j["details"];
    let (category, types): (&[&str], &[&str]) = match kind {
        Some(AlertKind::AuditOff | AlertKind::AuditMismatch) => (&["configuration"], &["change"]),
        Some(AlertKind::MonitorLoss) | None => (&["network"], &["info"]),
        Some(_) => (&["network", "intrusion_detection"], &["info"]),
    };
    doc.put("event.kind", "alert");
    doc.put("event.category", json!(category));
    doc.put("event.type", json!(types));
    doc.put("event.action", j["kind"].clone());
    trail(doc, j);
    doc.put("user.id", j["uid"].as_u64().map(|u| u.to_string()));
    doc.put("user.name", j["user"].clone());
    doc.put("source.ip", j["host"].clone());
    if j["bytes"].as_u64().is_some_and(|b| b > 0) {
        doc.put("source.bytes", j["bytes"].clone());
        doc.put("network.direction", "egress");
    }
    destination(doc, kind, j["dst"].as_str(), details);
    process(doc, &details["process"]);
    threat(doc, kind.map_or(&[], |k| techniques(k, details)));
    doc.put("exfilmon.dst", j["dst"].clone());
    doc.put("exfilmon.details", details.clone());
}

/// An alert's `dst`: an address with port and protocol, a bare address, or a domain.
fn destination(doc: &mut Doc, kind: Option<AlertKind>, dst: Option<&str>, details: &Value) {
    let Some(dst) = dst.filter(|d| !d.is_empty()) else { return };
    let Some(parts) = dst_parts(dst) else {
        doc.put("destination.address", dst);
        doc.put("destination.domain", dst);
        if kind == Some(AlertKind::DnsTunnel) {
            doc.put("dns.question.registered_domain", dst);
            doc.put("network.protocol", "dns");
        }
        return;
    };
    doc.put("destination.address", parts.addr.to_string());
    doc.put("destination.ip", parts.addr.to_string());
    doc.put("destination.port", parts.port);
    // The name this principal looked the address up by (DNS answer, TLS server name).
    doc.put("destination.domain", details["dst_name"].clone());
    doc.put("network.type", if parts.addr.is_ipv4() { "ipv4" } else { "ipv6" });
    // ICMP tunnel alerts name the peer alone; their details say which ICMP.
    let proto = match (parts.proto, kind) {
        (None, Some(AlertKind::IcmpTunnel)) => Some(if details["icmpv6"] == true { "icmpv6" } else { "icmp" }),
        (proto, _) => proto,
    };
    match proto {
        // IANA's keyword, which ECS's network.transport uses.
        Some("icmpv6") => doc.put("network.transport", "ipv6-icmp"),
        Some(p) => match p.strip_prefix("proto-") {
            Some(number) => doc.put("network.iana_number", number),
            None => doc.put("network.transport", p),
        },
        None => {}
    }
}

/// The process behind the flow, when the live monitor found it (`details.process`).
fn process(doc: &mut Doc, p: &Value) {
    doc.put("process.pid", p["pid"].clone());
    doc.put("process.name", p["comm"].clone());
    doc.put("process.executable", p["exe"].as_str().filter(|e| !e.is_empty()));
    doc.put("process.user.id", p["uid"].as_u64().map(|u| u.to_string()));
}

/// A monitor event: exfilmon's own life (process), its configuration and ruleset, its database.
fn event(doc: &mut Doc, j: &Value) {
    let kind = j["kind"].as_str().and_then(|k| EventKind::ALL.into_iter().find(|e| e.as_str() == k));
    let (category, kind_type) = match kind {
        Some(EventKind::Started) => ("process", "start"),
        Some(EventKind::Stopped | EventKind::RunInterrupted) => ("process", "end"),
        Some(
            EventKind::Reloaded | EventKind::RulesetMissing | EventKind::RulesetChanged | EventKind::RulesetRestored,
        ) => ("configuration", "change"),
        Some(EventKind::ReloadFailed | EventKind::RulesetUnchecked) => ("configuration", "info"),
        Some(EventKind::DatabaseError | EventKind::PruneFailed) => ("database", "error"),
        Some(EventKind::Pruned | EventKind::RunRolledBack) => ("database", "change"),
        // [response]: a principal's egress denied, allowed again, or what a replay would have done.
        Some(EventKind::Blocked) => ("network", "denied"),
        Some(EventKind::Unblocked | EventKind::BlockExpired) => ("network", "allowed"),
        Some(EventKind::WouldBlock | EventKind::BlockFailed) => ("network", "info"),
        Some(
            EventKind::SinkFailed | EventKind::SinkDropping | EventKind::SinkRecovered | EventKind::SinkUndelivered,
        )
        | None => ("process", "info"),
    };
    doc.put("event.kind", "event");
    doc.put("event.category", json!([category]));
    doc.put("event.type", json!([kind_type]));
    doc.put("event.action", j["kind"].clone());
    trail(doc, j);
    doc.put("exfilmon.run", j["run"].clone());
    doc.put("exfilmon.details", j["details"].clone());
}

/// A MITRE ATT&CK technique (or sub-technique) and the tactic it serves.
struct Technique {
    id: &'static str,
    name: &'static str,
    /// The parent technique's name, for a sub-technique.
    parent: Option<&'static str>,
    tactic: (&'static str, &'static str),
}

const EXFILTRATION: (&str, &str) = ("TA0010", "Exfiltration");
const COMMAND_AND_CONTROL: (&str, &str) = ("TA0011", "Command and Control");
const COLLECTION: (&str, &str) = ("TA0009", "Collection");
const DEFENSE_EVASION: (&str, &str) = ("TA0005", "Defense Evasion");

const fn technique(
    id: &'static str,
    name: &'static str,
    parent: Option<&'static str>,
    tactic: (&'static str, &'static str),
) -> Technique {
    Technique { id, name, parent, tactic }
}

const ALTERNATIVE_PROTOCOL: Technique =
    technique("T1048", "Exfiltration Over Alternative Protocol", None, EXFILTRATION);
const UNENCRYPTED_NON_C2: Technique = technique(
    "T1048.003",
    "Exfiltration Over Unencrypted Non-C2 Protocol",
    Some("Exfiltration Over Alternative Protocol"),
    EXFILTRATION,
);
const DNS: Technique = technique("T1071.004", "DNS", Some("Application Layer Protocol"), COMMAND_AND_CONTROL);
const NON_APPLICATION_LAYER: Technique =
    technique("T1095", "Non-Application Layer Protocol", None, COMMAND_AND_CONTROL);
const SIZE_LIMITS: Technique = technique("T1030", "Data Transfer Size Limits", None, EXFILTRATION);
const LOCAL_SYSTEM: Technique = technique("T1005", "Data from Local System", None, COLLECTION);
const LINUX_AUDIT: Technique =
    technique("T1562.012", "Disable or Modify Linux Audit System", Some("Impair Defenses"), DEFENSE_EVASION);
const SYSTEM_FIREWALL: Technique =
    technique("T1562.004", "Disable or Modify System Firewall", Some("Impair Defenses"), DEFENSE_EVASION);

/// What each alert kind is evidence of.
fn techniques(kind: AlertKind, details: &Value) -> &'static [Technique] {
    match kind {
        AlertKind::Volume => &[ALTERNATIVE_PROTOCOL],
        // Names carrying data through resolvers; a raw tunnel sends its own protocol to port 53.
        AlertKind::DnsTunnel if details["raw"] == true => &[ALTERNATIVE_PROTOCOL, NON_APPLICATION_LAYER],
        AlertKind::DnsTunnel => &[UNENCRYPTED_NON_C2, DNS],
        AlertKind::IcmpTunnel => &[ALTERNATIVE_PROTOCOL, NON_APPLICATION_LAYER],
        // A slow leak kept under the fixed thresholds.
        AlertKind::Baseline => &[SIZE_LIMITS],
        AlertKind::SensitiveEgress => &[LOCAL_SYSTEM, ALTERNATIVE_PROTOCOL],
        AlertKind::AuditOff => &[LINUX_AUDIT],
        // Connections the audit trail saw and NFLOG did not: the logging rules were changed.
        AlertKind::AuditMismatch => &[SYSTEM_FIREWALL],
        AlertKind::MonitorLoss => &[],
    }
}

/// `threat.*`: ECS keeps techniques, sub-techniques and tactics in parallel lists.
fn threat(doc: &mut Doc, techniques: &[Technique]) {
    if techniques.is_empty() {
        return;
    }
    let mut tactics: Vec<(&str, &str)> = Vec::new();
    let mut parents: Vec<(&str, &str)> = Vec::new();
    let mut subs: Vec<(&str, &str)> = Vec::new();
    for t in techniques {
        if !tactics.contains(&t.tactic) {
            tactics.push(t.tactic);
        }
        let parent = match (t.id.split_once('.'), t.parent) {
            (Some((parent_id, _)), Some(parent_name)) => {
                subs.push((t.id, t.name));
                (parent_id, parent_name)
            }
            _ => (t.id, t.name),
        };
        if !parents.contains(&parent) {
            parents.push(parent);
        }
    }
    doc.put("threat.framework", "MITRE ATT&CK");
    let lists = [
        ("tactic", tactics, "tactics"),
        ("technique", parents, "techniques"),
        ("technique.subtechnique", subs, "techniques"),
    ];
    for (field, items, path) in lists.into_iter().filter(|(_, items, _)| !items.is_empty()) {
        doc.put(&format!("threat.{field}.id"), json!(items.iter().map(|i| i.0).collect::<Vec<_>>()));
        doc.put(&format!("threat.{field}.name"), json!(items.iter().map(|i| i.1).collect::<Vec<_>>()));
        // ATT&CK's pages: /tactics/TA0010/, /techniques/T1048/, /techniques/T1048/003/.
        let refs: Vec<String> =
            items.iter().map(|i| format!("https://attack.mitre.org/{path}/{}/", i.0.replace('.', "/"))).collect();
        doc.put(&format!("threat.{field}.reference"), json!(refs));
    }
}

/// A document under construction: nested objects, as ECS's examples and shippers expect.
#[derive(Default)]
struct Doc(Map<String, Value>);

impl Doc {
    /// Sets the field at the dotted `path`, making the objects on the way; null values (a
    /// field the record does not have) are left out.
    fn put(&mut self, path: &str, value: impl Into<Value>) {
        let value = value.into();
        if value.is_null() {
            return;
        }
        let (parents, leaf) = match path.rsplit_once('.') {
            // `@timestamp` and `message` are top-level; no ECS name has a dot in a part.
            Some((parents, leaf)) => (Some(parents), leaf),
            None => (None, path),
        };
        let mut map = &mut self.0;
        for part in parents.into_iter().flat_map(|p| p.split('.')) {
            let slot = map.entry(part).or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            let Value::Object(next) = slot else { return };
            map = next;
        }
        map.insert(leaf.to_owned(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Alert;
    use crate::principal::{Principal, UserNames};
    use crate::trail::Link;

    fn alert_doc(kind: AlertKind, dst: Option<&str>, details: Value) -> Value {
        let a = Alert {
            ts_us: 1_700_000_000_000_000,
            kind,
            severity: Severity::High,
            principal: Principal::Uid(4_000_000),
            dst: dst.map(str::to_owned),
            bytes: 5_000_000,
            summary: "uid 4000000 sent 4.8 MiB".into(),
            details,
        };
        let mut r = super::super::alert_record(&a, &Link { seq: 42, hash: [7; 32] }, &mut UserNames::default());
        r.json["observer"] = json!("web-01");
        document(&r)
    }

    #[test]
    fn a_volume_alert_maps_onto_source_destination_process_and_threat() {
        let process = json!({ "pid": 4242, "comm": "scp", "exe": "/usr/bin/scp", "uid": 1001, "login_uid": 1001 });
        let d = alert_doc(
            AlertKind::Volume,
            Some("[2001:db8::7]:22/tcp"),
            json!({ "process": process, "dst_name": "backup.example" }),
        );
        assert_eq!(d["@timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(d["event"]["id"], "web-01:42");
        assert_eq!(d["event"]["sequence"], 42);
        assert_eq!(d["event"]["severity"], 3);
        assert_eq!(d["user"]["id"], "4000000");
        assert_eq!(d["source"]["bytes"], 5_000_000);
        assert_eq!(d["destination"]["ip"], "2001:db8::7");
        assert_eq!(d["destination"]["port"], 22);
        assert_eq!(d["destination"]["domain"], "backup.example");
        assert_eq!(d["network"]["transport"], "tcp");
        assert_eq!(d["network"]["type"], "ipv6");
        assert_eq!(
            d["process"],
            json!({ "pid": 4242, "name": "scp", "executable": "/usr/bin/scp", "user": { "id": "1001" } })
        );
        assert_eq!(d["threat"]["technique"]["id"], json!(["T1048"]));
        assert_eq!(d["threat"]["tactic"]["reference"], json!(["https://attack.mitre.org/tactics/TA0010/"]));
        assert_eq!(d["host"]["name"], "web-01");
        assert_eq!(d["exfilmon"]["details"]["process"], process);
        assert!(d.get("destination").unwrap().get("bytes").is_none(), "egress is source.bytes");
    }

    #[test]
    fn dns_tunnels_name_dns_or_a_raw_protocol() {
        let d = alert_doc(AlertKind::DnsTunnel, Some("tun.example"), json!({ "domain": "tun.example" }));
        assert_eq!(d["destination"]["domain"], "tun.example");
        assert_eq!(d["dns"]["question"]["registered_domain"], "tun.example");
        assert_eq!(d["threat"]["technique"]["id"], json!(["T1048", "T1071"]));
        assert_eq!(d["threat"]["technique"]["subtechnique"]["id"], json!(["T1048.003", "T1071.004"]));
        assert_eq!(
            d["threat"]["technique"]["subtechnique"]["reference"][0],
            "https://attack.mitre.org/techniques/T1048/003/"
        );
        assert_eq!(d["threat"]["tactic"]["id"], json!(["TA0010", "TA0011"]));
        let raw = alert_doc(AlertKind::DnsTunnel, Some("10.77.0.1:53/udp"), json!({ "raw": true }));
        assert_eq!(raw["threat"]["technique"]["id"], json!(["T1048", "T1095"]));
        assert!(raw["threat"]["technique"].get("subtechnique").is_none());
        let icmp = alert_doc(AlertKind::IcmpTunnel, Some("fd77::1"), json!({ "icmpv6": true }));
        assert_eq!(icmp["network"]["transport"], "ipv6-icmp");
    }

    #[test]
    fn hostile_text_stays_a_string_value() {
        let d = alert_doc(AlertKind::DnsTunnel, Some("a\"b\n\u{1b}[31m.example"), json!({ "x": "\u{0}" }));
        let line = d.to_string();
        assert!(!line.contains('\n') && !line.contains('\u{1b}'), "{line}");
        assert_eq!(d["destination"]["domain"], "a\"b\n\u{1b}[31m.example");
    }
}
