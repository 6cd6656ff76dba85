//! Recomputing the trail: `exfilmon verify`.
//!
//! Rows of both tables are read in `seq` order (two sorted cursors merged, so memory stays
//! constant however long the trail) and every link is recomputed from the row's values. The
//! first broken link is reported with what most likely happened; after a break the walk
//! resynchronises on the stored hash so one edit is counted once. Checkpoints (stored, or
//! read from a file that left the machine) must be reached by the recomputed chain, and with a
//! public key their signatures must hold. Nothing read here can panic: every value is taken as
//! whatever SQLite type it has.

use ed25519_dalek::VerifyingKey;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row};

use super::decode_hash;
use super::{link_hash, sign, Checkpoint, GENESIS};

/// A value as SQLite holds it, owned (text need not be valid UTF-8: it was maybe edited).
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl From<ValueRef<'_>> for Value {
    fn from(v: ValueRef<'_>) -> Value {
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(n) => Value::Integer(n),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(t) => Value::Text(t.to_vec()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        }
    }
}

impl<'a> From<&'a Value> for ValueRef<'a> {
    fn from(v: &'a Value) -> ValueRef<'a> {
        match v {
            Value::Null => ValueRef::Null,
            Value::Integer(n) => ValueRef::Integer(*n),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(t) => ValueRef::Text(t),
            Value::Blob(b) => ValueRef::Blob(b),
        }
    }
}

/// One row as read back.
struct TrailRow {
    table: &'static str,
    /// `alerts.id`, or the seq for events.
    id: Value,
    seq: Value,
    values: Vec<Value>,
    prev: Value,
    hash: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// Position in the trail (the row's `seq`, or where one was expected).
    pub seq: i64,
    /// Which row, and what most likely happened.
    pub what: String,
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "trail row {}: {}", self.seq, self.what)
    }
}

/// A checkpoint and what the trail said about it.
#[derive(Debug, Clone)]
pub struct CheckpointResult {
    pub checkpoint: Checkpoint,
    /// From the database, or from a file given to verify.
    pub stored: bool,
    /// `None`: no public key given, the signature was not checked.
    pub signature_ok: Option<bool>,
    /// Why the trail does not reach this checkpoint.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub rows: i64,
    pub alerts: i64,
    pub events: i64,
    /// Recomputed hash of the last row.
    pub head: String,
    pub first_break: Option<Break>,
    pub breaks: u64,
    pub checkpoints: Vec<CheckpointResult>,
}

impl Outcome {
    /// Intact: no broken link, every checkpoint reached, every checked signature good.
    pub fn intact(&self) -> bool {
        self.first_break.is_none()
            && self.checkpoints.iter().all(|c| c.problem.is_none() && c.signature_ok != Some(false))
    }
}

const ALERTS: &str =
    "SELECT a.seq, a.id, a.ts, a.kind, a.severity, p.uid, p.host, a.dst, a.bytes, a.summary, a.details,
        a.run_id, a.prev_hash, a.hash
     FROM alerts a LEFT JOIN principals p ON p.id = a.principal_id ORDER BY a.seq";
const EVENTS: &str =
    "SELECT seq, ts, kind, severity, run_id, summary, details, prev_hash, hash FROM events ORDER BY seq";

fn read(table: &'static str, r: &Row<'_>, n: usize) -> rusqlite::Result<TrailRow> {
    let v = |i: usize| -> rusqlite::Result<Value> { Ok(Value::from(r.get_ref(i)?)) };
    let values = (0..n).map(v).collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(TrailRow {
        table,
        id: if table == "alert" { v(1)? } else { v(0)? },
        seq: v(0)?,
        values,
        prev: v(n)?,
        hash: v(n + 1)?,
    })
}

fn as_hash(v: &Value) -> Option<[u8; 32]> {
    match v {
        Value::Text(t) => std::str::from_utf8(t).ok().and_then(decode_hash),
        _ => None,
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Integer(n) => n.to_string(),
        Value::Null => "NULL".into(),
        Value::Text(t) => crate::escape::printable_bytes(t).into_owned(),
        Value::Real(f) => f.to_string(),
        Value::Blob(b) => format!("x'{}'", hex::encode(b)),
    }
}

/// Walks the trail of `conn`; `external` checkpoints came from outside the database.
pub fn verify(conn: &Connection, key: Option<&VerifyingKey>, external: &[Checkpoint]) -> rusqlite::Result<Outcome> {
    let mut stored = Vec::new();
    {
        let mut s = conn.prepare("SELECT ts, rows, head, key_id, signature FROM checkpoints ORDER BY id")?;
        let mut rows = s.query([])?;
        while let Some(r) = rows.next()? {
            // Read loosely: an edited checkpoint is a finding, not an error.
            let text = |i: usize| -> rusqlite::Result<String> { Ok(show(&Value::from(r.get_ref(i)?))) };
            let int = |i: usize| -> rusqlite::Result<i64> {
                Ok(match r.get_ref(i)? {
                    ValueRef::Integer(n) => n,
                    _ => -1,
                })
            };
            stored.push(Checkpoint {
                ts_us: int(0)?,
                rows: int(1)?,
                head: text(2)?,
                key_id: text(3)?,
                signature: text(4)?,
            });
        }
    }
    let wanted: Vec<i64> = stored.iter().chain(external).map(|c| c.rows).collect();
    // Recomputed hash after row n, for the n checkpoints name (row 0: the genesis hash).
    let mut at: Vec<(i64, [u8; 32])> = vec![(0, GENESIS)];

    let mut out = Outcome::default();
    let mut a_stmt = conn.prepare(ALERTS)?;
    let mut e_stmt = conn.prepare(EVENTS)?;
    let mut a_rows = a_stmt.query([])?;
    let mut e_rows = e_stmt.query([])?;
    let mut next_a = a_rows.next()?.map(|r| read("alert", r, 12)).transpose()?;
    let mut next_e = e_rows.next()?.map(|r| read("event", r, 7)).transpose()?;
    let mut running = GENESIS;
    let mut expected = 1i64;
    // Recomputed links are trusted only until the first break.
    let mut trusted = true;
    loop {
        let seq_of = |r: &Option<TrailRow>| match r.as_ref().map(|r| &r.seq) {
            Some(Value::Integer(n)) => Some(*n),
            Some(_) => Some(i64::MIN),
            None => None,
        };
        let take_alert = match (seq_of(&next_a), seq_of(&next_e)) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(e)) => a <= e,
        };
        let row = if take_alert {
            let r = next_a.take();
            next_a = a_rows.next()?.map(|r| read("alert", r, 12)).transpose()?;
            r
        } else {
            let r = next_e.take();
            next_e = e_rows.next()?.map(|r| read("event", r, 7)).transpose()?;
            r
        };
        let Some(row) = row else { break };
        out.rows += 1;
        if row.table == "alert" {
            out.alerts += 1;
        } else {
            out.events += 1;
        }
        let refs: Vec<ValueRef<'_>> = row.values.iter().map(ValueRef::from).collect();
        let computed = link_hash(&running, row.table, &refs);
        let stored_hash = as_hash(&row.hash);
        let who = if row.table == "alert" {
            format!("alerts.id {}", show(&row.id))
        } else {
            format!("events.seq {}", show(&row.id))
        };
        let problem = match row.seq {
            Value::Integer(seq) if seq > expected => {
                let gap = if seq - expected == 1 {
                    format!("row {expected} is")
                } else {
                    format!("rows {expected} to {} are", seq - 1)
                };
                Some((expected, format!("{gap} missing before {who} (row {seq}): deleted")))
            }
            Value::Integer(seq) if seq < expected => {
                Some((seq, format!("{who} takes position {seq} a second time: a row was inserted or copied")))
            }
            Value::Integer(_) if as_hash(&row.prev) != Some(running) => Some((
                expected,
                format!(
                    "{who} does not link to row {}: rows were reordered or inserted, or a row was deleted and the \
                     positions renumbered",
                    expected - 1
                ),
            )),
            Value::Integer(_) if stored_hash != Some(computed) => {
                Some((expected, format!("{who} does not match its hash: the row was edited")))
            }
            Value::Integer(_) => None,
            ref other => {
                Some((expected, format!("{who} has position {}, not a number: the row was edited", show(other))))
            }
        };
        if let Some((seq, what)) = problem {
            out.breaks += 1;
            trusted = false;
            if out.first_break.is_none() {
                out.first_break = Some(Break { seq, what });
            }
        }
        // Resynchronise on what is stored, so the walk can go on past one broken row.
        running = if trusted { computed } else { stored_hash.unwrap_or(computed) };
        expected = match row.seq {
            Value::Integer(seq) => seq.max(expected - 1) + 1,
            _ => expected + 1,
        };
        if trusted && wanted.contains(&(expected - 1)) {
            at.push((expected - 1, running));
        }
    }
    out.head = hex::encode(running);

    let last = expected - 1;
    let results = stored.into_iter().map(|c| (c, true)).chain(external.iter().cloned().map(|c| (c, false)));
    for (c, from_db) in results {
        let signature_ok = key.map(|k| sign::check(k, &c));
        let problem = if c.rows > last {
            Some(format!("it covers {} rows but the trail has {last}: rows were cut off the end", c.rows))
        } else if let Some((_, h)) = at.iter().find(|(n, _)| *n == c.rows) {
            (hex::encode(h) != c.head)
                .then(|| format!("the trail's first {} rows no longer hash to its head: they were rewritten", c.rows))
        } else {
            // Not reached through trusted links: the break above already fails the trail.
            None
        };
        out.checkpoints.push(CheckpointResult { checkpoint: c, stored: from_db, signature_ok, problem });
    }
    Ok(out)
}

/// Checkpoints in a file that left the machine: lines holding a checkpoint object, as the JSON
/// Lines sink writes them (or syslog lines whose message is that object).
pub fn checkpoints_in(text: &str) -> Vec<Checkpoint> {
    text.lines()
        .filter_map(|line| {
            let start = line.find('{')?;
            let v: serde_json::Value = serde_json::from_str(&line[start..]).ok()?;
            Checkpoint::from_json(&v)
        })
        .collect()
}
