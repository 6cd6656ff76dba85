//! The tamper-evident trail: every alert, every monitor event and a digest of every minute's
//! egress rows is a link of one hash chain.
//!
//! Rows of `alerts`, `events` and `digests` share one sequence (`seq` = 1, 2, 3 ... over the
//! three tables).
//! Each row stores `prev_hash`, the hash of row `seq - 1` (64 zeros for row 1), and `hash`:
//!
//! ```text
//! hash = SHA-256( "exfilmon trail v1" 0x00 || prev (32 raw bytes) || v(table) || v(col1) || v(col2) ... )
//! v(NULL)    = 0x00
//! v(INTEGER) = 0x01 || i64, 8 bytes big-endian
//! v(REAL)    = 0x02 || IEEE 754 bits, 8 bytes big-endian
//! v(TEXT)    = 0x03 || byte length, u64 big-endian || the UTF-8 bytes
//! v(BLOB)    = 0x04 || byte length, u64 big-endian || the bytes
//! table      = TEXT "alert", "event" or "digest"
//! alert cols = seq, id, ts, kind, severity, uid, host, dst, bytes, summary, details, run_id
//! event cols = seq, ts, kind, severity, run_id, summary, details
//! digest cols = seq, ts, run_id, minute, rows, packets, bytes, digest
//! ```
//!
//! A digest covers one run's egress rows of one minute (see [`EgressDigest`]):
//!
//! ```text
//! digest = SHA-256( "exfilmon egress v1" 0x00 || for each row, in key order (principal_id,
//!          proto, dst, dport): v(uid) v(host) v(proto) v(dst) v(dport) v(packets) v(bytes)
//!          v(first_seen) v(last_seen) )
//! ```
//!
//! with `uid` and `host` the row's principal's, so re-pointing rows at another user shows.
//!
//! Values are taken as SQLite holds them (`details` is the stored JSON text, not re-encoded),
//! so `sqlite3` plus any SHA-256 tool can recompute a link. `uid` and `host` come from the
//! alert's principal, so re-pointing an alert at another user breaks its link too. Hashes
//! are stored as lower-case hex.
//!
//! Links are only ever added by the database writer, inside the transaction that inserts the
//! row and after reading the head in that same (immediate) transaction, so a crash leaves a
//! whole transaction or none of it and the chain stays intact; two processes writing the same
//! database take turns. Editing, deleting, inserting or reordering rows breaks a link that
//! `exfilmon verify` finds. Cutting rows off the end does not; a signed [`Checkpoint`] of the
//! head (rows, head hash, time) that has left the machine does.

pub mod sign;
pub mod verify;

use rusqlite::types::ValueRef;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::alert::Severity;

pub const DOMAIN: &[u8] = b"exfilmon trail v1\0";
/// `prev_hash` of the first row, and the head of an empty trail.
pub const GENESIS: [u8; 32] = [0; 32];

/// Columns hashed for an alert, after the table name; `uid`, `host` are the principal's.
pub const ALERT_COLUMNS: &[&str] =
    &["seq", "id", "ts", "kind", "severity", "uid", "host", "dst", "bytes", "summary", "details", "run_id"];
pub const EVENT_COLUMNS: &[&str] = &["seq", "ts", "kind", "severity", "run_id", "summary", "details"];
pub const DIGEST_COLUMNS: &[&str] = &["seq", "ts", "run_id", "minute", "rows", "packets", "bytes", "digest"];
pub const EGRESS_DOMAIN: &[u8] = b"exfilmon egress v1\0";

/// The digest of one run's egress rows of one minute, fed row by row in key order.
#[derive(Clone)]
pub struct EgressDigest {
    hasher: Sha256,
    /// A row's encoding, hashed in one piece (a hash update per value cost a replay 4 %).
    row: Vec<u8>,
    pub rows: i64,
    pub packets: i64,
    pub bytes: i64,
}

impl Default for EgressDigest {
    fn default() -> Self {
        let mut hasher = Sha256::new();
        hasher.update(EGRESS_DOMAIN);
        EgressDigest { hasher, row: Vec::with_capacity(128), rows: 0, packets: 0, bytes: 0 }
    }
}

impl EgressDigest {
    /// One row: uid, host, proto, dst, dport, packets, bytes, first_seen, last_seen, as
    /// SQLite holds them.
    pub fn add(&mut self, values: &[ValueRef<'_>; 9]) {
        self.row.clear();
        for v in values {
            encode(&mut self.row, *v);
        }
        self.hasher.update(&self.row);
        let int = |v: ValueRef<'_>| if let ValueRef::Integer(n) = v { n } else { 0 };
        self.rows += 1;
        self.packets = self.packets.saturating_add(int(values[5]));
        self.bytes = self.bytes.saturating_add(int(values[6]));
    }

    /// The digest, as stored: lower-case hex.
    pub fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

/// The hash of a row whose previous row hashed to `prev`.
pub fn link_hash(prev: &[u8; 32], table: &str, values: &[ValueRef<'_>]) -> [u8; 32] {
    let mut encoded = Vec::with_capacity(256);
    encode(&mut encoded, ValueRef::Text(table.as_bytes()));
    for v in values {
        encode(&mut encoded, *v);
    }
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(prev);
    h.update(&encoded);
    h.finalize().into()
}

/// A value as hashed: a type byte, then an integer's or real's 8 bytes big-endian, or a text's or
/// blob's length (8 bytes) and bytes.
fn encode(out: &mut Vec<u8>, v: ValueRef<'_>) {
    match v {
        ValueRef::Null => out.push(0),
        ValueRef::Integer(n) => {
            out.push(1);
            out.extend_from_slice(&n.to_be_bytes());
        }
        ValueRef::Real(f) => {
            out.push(2);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        ValueRef::Text(t) => {
            out.push(3);
            out.extend_from_slice(&(t.len() as u64).to_be_bytes());
            out.extend_from_slice(t);
        }
        ValueRef::Blob(b) => {
            out.push(4);
            out.extend_from_slice(&(b.len() as u64).to_be_bytes());
            out.extend_from_slice(b);
        }
    }
}

/// A stored row's place in the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub seq: i64,
    pub hash: [u8; 32],
}

impl Link {
    pub fn genesis() -> Link {
        Link { seq: 0, hash: GENESIS }
    }
}

/// What happened to the monitor itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    Started,
    Stopped,
    Reloaded,
    ReloadFailed,
    /// The ruleset's table is not loaded: nothing is logged to the monitor.
    RulesetMissing,
    /// The loaded table differs from what the configuration renders.
    RulesetChanged,
    /// The loaded table matches the rendering again.
    RulesetRestored,
    /// The ruleset cannot be checked (nft missing or not permitted).
    RulesetUnchecked,
    DatabaseError,
    SinkFailed,
    /// A failing sink started dropping records (after retries, or on a full queue).
    SinkDropping,
    SinkRecovered,
    /// Records a sink could not deliver before the monitor stopped.
    SinkUndelivered,
    /// A replay was undone: its process died before it committed, it was stopped, or a capture
    /// of it turned out to be counted already.
    RunRolledBack,
    /// A live monitor's run ended without a clean exit (found by the next process to write).
    RunInterrupted,
    /// `exfilmon prune` (or the daemon's daily prune) deleted what was past its retention.
    Pruned,
    PruneFailed,
    /// `[response]` or `exfilmon block` put a principal's egress behind a timed block.
    Blocked,
    /// `exfilmon unblock` lifted a block before its time.
    Unblocked,
    /// A block's time passed: the kernel let the principal's egress through again.
    BlockExpired,
    /// A replay's alert would have blocked its principal (nothing is blocked in a replay).
    WouldBlock,
    /// A block could not be set (the ruleset not loaded, nft failing).
    BlockFailed,
}

impl EventKind {
    /// Every kind, for what must handle them all (the sinks' ECS documents are tested so).
    pub const ALL: [EventKind; 22] = [
        EventKind::Started,
        EventKind::Stopped,
        EventKind::Reloaded,
        EventKind::ReloadFailed,
        EventKind::RulesetMissing,
        EventKind::RulesetChanged,
        EventKind::RulesetRestored,
        EventKind::RulesetUnchecked,
        EventKind::DatabaseError,
        EventKind::SinkFailed,
        EventKind::SinkDropping,
        EventKind::SinkRecovered,
        EventKind::SinkUndelivered,
        EventKind::RunRolledBack,
        EventKind::RunInterrupted,
        EventKind::Pruned,
        EventKind::PruneFailed,
        EventKind::Blocked,
        EventKind::Unblocked,
        EventKind::BlockExpired,
        EventKind::WouldBlock,
        EventKind::BlockFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Stopped => "stopped",
            EventKind::Reloaded => "reloaded",
            EventKind::ReloadFailed => "reload_failed",
            EventKind::RulesetMissing => "ruleset_missing",
            EventKind::RulesetChanged => "ruleset_changed",
            EventKind::RulesetRestored => "ruleset_restored",
            EventKind::RulesetUnchecked => "ruleset_unchecked",
            EventKind::DatabaseError => "database_error",
            EventKind::SinkFailed => "sink_failed",
            EventKind::SinkDropping => "sink_dropping",
            EventKind::SinkRecovered => "sink_recovered",
            EventKind::SinkUndelivered => "sink_undelivered",
            EventKind::RunRolledBack => "run_rolled_back",
            EventKind::RunInterrupted => "run_interrupted",
            EventKind::Pruned => "pruned",
            EventKind::PruneFailed => "prune_failed",
            EventKind::Blocked => "blocked",
            EventKind::Unblocked => "unblocked",
            EventKind::BlockExpired => "block_expired",
            EventKind::WouldBlock => "would_block",
            EventKind::BlockFailed => "block_failed",
        }
    }
}

/// One monitor event, stored in `events` (wall-clock time).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub ts_us: i64,
    pub kind: EventKind,
    pub severity: Severity,
    pub summary: String,
    pub details: Value,
}

impl Event {
    pub fn now(kind: EventKind, severity: Severity, summary: String, details: Value) -> Event {
        Event { ts_us: crate::units::wall_clock_us(), kind, severity, summary, details }
    }
}

/// A signed statement that the trail had `rows` rows ending in `head` at `ts_us`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub ts_us: i64,
    pub rows: i64,
    pub head: String,
    pub key_id: String,
    pub signature: String,
}

impl Checkpoint {
    /// The exact bytes signed.
    pub fn message(ts_us: i64, rows: i64, head: &str) -> String {
        format!("exfilmon checkpoint v1\nts {ts_us}\nrows {rows}\nhead {head}\n")
    }

    /// The record sent to sinks; [`Checkpoint::from_json`] reads it back.
    pub fn json(&self) -> Value {
        json!({
            "type": "checkpoint",
            "ts": crate::units::rfc3339(self.ts_us),
            "ts_us": self.ts_us,
            "rows": self.rows,
            "head": self.head,
            "key_id": self.key_id,
            "signature": self.signature,
        })
    }

    pub fn from_json(v: &Value) -> Option<Checkpoint> {
        if v.get("type")?.as_str()? != "checkpoint" {
            return None;
        }
        Some(Checkpoint {
            ts_us: v.get("ts_us")?.as_i64()?,
            rows: v.get("rows")?.as_i64()?,
            head: v.get("head")?.as_str()?.to_owned(),
            key_id: v.get("key_id")?.as_str()?.to_owned(),
            signature: v.get("signature")?.as_str()?.to_owned(),
        })
    }
}

/// Where a pruned trail starts: `exfilmon prune` deleted rows 1 to `rows` (alerts, events and
/// digests whose time was past their retention) and row `rows + 1` links to `head`, the hash
/// row `rows` had. Signed like a checkpoint when a key is set, so it cannot be moved later.
/// Egress rows of minutes before `egress_before` were pruned too: their digests may remain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub ts_us: i64,
    pub rows: i64,
    pub head: String,
    pub egress_before: i64,
    pub key_id: Option<String>,
    pub signature: Option<String>,
}

impl Anchor {
    /// The exact bytes signed.
    pub fn message(&self) -> String {
        format!(
            "exfilmon anchor v1\nts {}\nrows {}\nhead {}\negress_before {}\n",
            self.ts_us, self.rows, self.head, self.egress_before
        )
    }
}

/// A stored hash back from its hex text; `None` when it is not 32 bytes of hex.
pub fn decode_hash(hex_text: &str) -> Option<[u8; 32]> {
    let mut out = [0; 32];
    hex::decode_to_slice(hex_text, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoding is part of the on-disk format: a change here breaks every stored trail.
    #[test]
    fn link_hash_is_stable() {
        let h = link_hash(&GENESIS, "event", &[ValueRef::Integer(1), ValueRef::Null, ValueRef::Text(b"started")]);
        let mut manual = Sha256::new();
        manual.update(b"exfilmon trail v1\0");
        manual.update([0; 32]);
        manual.update([3, 0, 0, 0, 0, 0, 0, 0, 5]);
        manual.update(b"event");
        manual.update([1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 7]);
        manual.update(b"started");
        assert_eq!(h, <[u8; 32]>::from(manual.finalize()));
        // Field boundaries count: "ab","c" is not "a","bc".
        let a = link_hash(&GENESIS, "event", &[ValueRef::Text(b"ab"), ValueRef::Text(b"c")]);
        let b = link_hash(&GENESIS, "event", &[ValueRef::Text(b"a"), ValueRef::Text(b"bc")]);
        assert_ne!(a, b);
    }

    /// Also part of the on-disk format: the digest of rows is SHA-256 over the domain and their
    /// encoded values, with the counts and sums beside it.
    #[test]
    fn egress_digest_is_stable() {
        let row = |i: i64| -> [ValueRef<'static>; 9] {
            [
                ValueRef::Integer(1000),
                ValueRef::Null,
                ValueRef::Integer(6),
                ValueRef::Text(b"192.0.2.1"),
                ValueRef::Integer(443),
                ValueRef::Integer(i),
                ValueRef::Integer(100 * i),
                ValueRef::Integer(5),
                ValueRef::Integer(6),
            ]
        };
        let mut d = EgressDigest::default();
        let mut manual = Sha256::new();
        manual.update(b"exfilmon egress v1\0");
        let int = |n: i64| [&[1][..], &n.to_be_bytes()].concat();
        for i in 0..1000 {
            d.add(&row(i));
            manual.update(int(1000));
            manual.update([0]);
            manual.update(int(6));
            manual.update([3, 0, 0, 0, 0, 0, 0, 0, 9]);
            manual.update(b"192.0.2.1");
            for n in [443, i, 100 * i, 5, 6] {
                manual.update(int(n));
            }
        }
        assert_eq!((d.rows, d.packets, d.bytes), (1000, 499_500, 49_950_000));
        assert_eq!(d.finish(), hex::encode(manual.finalize()));
    }

    #[test]
    fn checkpoint_json_round_trips() {
        let c = Checkpoint { ts_us: 5, rows: 3, head: "ab".into(), key_id: "k".into(), signature: "s".into() };
        assert_eq!(Checkpoint::from_json(&c.json()), Some(c));
        assert_eq!(Checkpoint::from_json(&json!({"type": "alert"})), None);
    }
}
