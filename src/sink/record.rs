//! Records as sinks receive them: one JSON object each.
//!
//! An alert carries the fields of `exfilmon report alerts --format json` (`ts`, `kind`,
//! `severity`, `uid`, `user`, `host`, `dst`, `bytes`, `summary`, `details`) plus `type`
//! ("alert"), its trail position `seq` and `hash`, and `observer` (this host's name: the
//! config's `observer`, else the machine's host name).
//! Events have `type` "event", `ts`, `kind`, `severity`, `summary`, `details`, `run`, `seq`,
//! `hash` and `observer`; checkpoints are [`Checkpoint::json`] plus `observer`. The
//! [`Dispatcher`](super::Dispatcher) stamps `observer` on each record as it queues it.
//! [`ecs`](super::ecs) turns a record into an Elastic Common Schema document.

use std::sync::OnceLock;

use serde_json::{json, Value};

use super::RecordKind;
use crate::alert::Alert;
use crate::alert::Severity;
use crate::health::LossAlert;
use crate::principal::UserNames;
use crate::trail::{Checkpoint, Event, Link};
use crate::units::rfc3339;

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub kind: RecordKind,
    pub severity: Severity,
    /// One line for subjects and logs (already escaped where it came from the wire).
    pub summary: String,
    pub json: Value,
}

/// This machine's host name, read once: the default `observer`.
pub fn hostname() -> String {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or_else(|| "localhost".into())
    })
    .clone()
}

fn trail(link: Option<&Link>) -> (Value, Value) {
    link.map_or((Value::Null, Value::Null), |l| (json!(l.seq), json!(hex::encode(l.hash))))
}

pub fn alert_record(a: &Alert, link: &Link, names: &mut UserNames) -> Record {
    let uid = a.principal.uid();
    alert(
        AlertView {
            ts_us: a.ts_us,
            kind: a.kind.as_str(),
            severity: a.severity,
            uid,
            user: uid.and_then(|u| names.get(u)),
            host: a.principal.host().map(|h| h.to_string()),
            dst: a.dst.as_deref(),
            bytes: a.bytes,
            summary: &a.summary,
            details: &a.details,
        },
        link,
    )
}

/// A `monitor_loss` alert: about the monitor, no principal.
pub fn loss_record(a: &LossAlert, link: &Link) -> Record {
    alert(
        AlertView {
            ts_us: a.ts_us,
            kind: a.kind.as_str(),
            severity: a.severity,
            uid: None,
            user: None,
            host: None,
            dst: None,
            bytes: 0,
            summary: &a.summary,
            details: &a.details,
        },
        link,
    )
}

/// The fields every alert record has, whatever raised it.
struct AlertView<'a> {
    ts_us: i64,
    kind: &'a str,
    severity: Severity,
    uid: Option<u32>,
    user: Option<String>,
    host: Option<String>,
    dst: Option<&'a str>,
    bytes: u64,
    summary: &'a str,
    details: &'a Value,
}

/// The one shape of an alert record: `report alerts --format json`'s fields plus the trail
/// position (the observer is stamped when it is queued).
fn alert(a: AlertView<'_>, link: &Link) -> Record {
    let (seq, hash) = trail(Some(link));
    Record {
        kind: RecordKind::Alert,
        severity: a.severity,
        summary: a.summary.to_owned(),
        json: json!({
            "type": "alert",
            "ts": rfc3339(a.ts_us),
            "kind": a.kind,
            "severity": a.severity.as_str(),
            "uid": a.uid,
            "user": a.user,
            "host": a.host,
            "dst": a.dst,
            "bytes": a.bytes,
            "summary": a.summary,
            "details": a.details,
            "seq": seq,
            "hash": hash,
        }),
    }
}

/// An event; `link` is `None` for one that could not be stored (a database error).
pub fn event_record(e: &Event, link: Option<&Link>, run_id: Option<i64>) -> Record {
    let (seq, hash) = trail(link);
    Record {
        kind: RecordKind::Event,
        severity: e.severity,
        summary: e.summary.clone(),
        json: json!({
            "type": "event",
            "ts": rfc3339(e.ts_us),
            "kind": e.kind.as_str(),
            "severity": e.severity.as_str(),
            "summary": e.summary,
            "details": e.details,
            "run": run_id,
            "seq": seq,
            "hash": hash,
        }),
    }
}

pub fn checkpoint_record(c: &Checkpoint) -> Record {
    Record {
        kind: RecordKind::Checkpoint,
        severity: Severity::Low,
        summary: format!("trail checkpoint: {} rows, head {}", c.rows, c.head),
        json: c.json(),
    }
}

pub(super) fn heartbeat_record(mut status: Value) -> Record {
    status["type"] = json!("heartbeat");
    Record { kind: RecordKind::Heartbeat, severity: Severity::Low, summary: "exfilmon is running".into(), json: status }
}
