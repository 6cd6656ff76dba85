//! Recomputing the trail: `exfilmon verify`.
//!
//! [`verify`] walks the links; [`verify_egress`] then recomputes the digest of each run's
//! egress rows of each minute and compares it with the digest the trail holds.
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

use std::collections::BTreeMap;

use super::decode_hash;
use super::{link_hash, sign, Anchor, Checkpoint, EgressDigest, GENESIS};

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
    /// It covers fewer rows than were pruned off the trail's start: it cannot be checked.
    pub pruned: bool,
}

/// Where a pruned trail starts, and whether its signature holds.
#[derive(Debug, Clone)]
pub struct AnchorResult {
    pub anchor: Anchor,
    /// `None`: no public key given, the signature was not checked.
    pub signature_ok: Option<bool>,
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub rows: i64,
    pub alerts: i64,
    pub events: i64,
    pub digests: i64,
    /// Recomputed hash of the last row.
    pub head: String,
    pub first_break: Option<Break>,
    pub breaks: u64,
    pub checkpoints: Vec<CheckpointResult>,
    /// The newest anchor, when the trail was pruned.
    pub anchor: Option<AnchorResult>,
}

impl Outcome {
    /// Intact: no broken link, every checkpoint reached, every checked signature good.
    pub fn intact(&self) -> bool {
        self.first_break.is_none()
            && self.checkpoints.iter().all(|c| c.problem.is_none() && c.signature_ok != Some(false))
            && self.anchor.as_ref().is_none_or(|a| a.signature_ok != Some(false))
    }
}

/// The newest anchor, read loosely (an edited one is a finding, not an error).
pub fn anchor(conn: &Connection) -> rusqlite::Result<Option<Anchor>> {
    let mut s = conn.prepare(
        "SELECT ts, rows, head, egress_before, key_id, signature FROM trail_anchors ORDER BY id DESC LIMIT 1",
    )?;
    let mut rows = s.query([])?;
    let Some(r) = rows.next()? else { return Ok(None) };
    let text = |i: usize| -> rusqlite::Result<Option<String>> {
        Ok(match r.get_ref(i)? {
            ValueRef::Null => None,
            v => Some(show(&Value::from(v))),
        })
    };
    Ok(Some(Anchor {
        ts_us: int_of(r.get_ref(0)?),
        rows: int_of(r.get_ref(1)?),
        head: text(2)?.unwrap_or_default(),
        egress_before: int_of(r.get_ref(3)?),
        key_id: text(4)?,
        signature: text(5)?,
    }))
}

const ALERTS: &str =
    "SELECT a.seq, a.id, a.ts, a.kind, a.severity, p.uid, p.host, a.dst, a.bytes, a.summary, a.details,
        a.run_id, a.prev_hash, a.hash
     FROM alerts a LEFT JOIN principals p ON p.id = a.principal_id ORDER BY a.seq";
const EVENTS: &str =
    "SELECT seq, ts, kind, severity, run_id, summary, details, prev_hash, hash FROM events ORDER BY seq";
const DIGESTS: &str =
    "SELECT seq, ts, run_id, minute, rows, packets, bytes, digest, prev_hash, hash FROM digests ORDER BY seq";

/// One table's rows in `seq` order, one row ahead.
struct Cursor<'s> {
    rows: rusqlite::Rows<'s>,
    table: &'static str,
    /// Hashed columns.
    n: usize,
    next: Option<TrailRow>,
}

impl<'s> Cursor<'s> {
    fn new(stmt: &'s mut rusqlite::Statement<'_>, table: &'static str, n: usize) -> rusqlite::Result<Cursor<'s>> {
        let mut c = Cursor { rows: stmt.query([])?, table, n, next: None };
        c.advance()?;
        Ok(c)
    }

    /// The row ahead's position: `i64::MIN` for one that is not a number (it comes first).
    fn seq(&self) -> Option<i64> {
        self.next.as_ref().map(|r| if let Value::Integer(n) = r.seq { n } else { i64::MIN })
    }

    fn advance(&mut self) -> rusqlite::Result<Option<TrailRow>> {
        let (table, n) = (self.table, self.n);
        let next = self.rows.next()?.map(|r| read(table, r, n)).transpose()?;
        Ok(std::mem::replace(&mut self.next, next))
    }
}

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
    // A pruned trail starts after its anchor: row `rows + 1` links to the anchor's head.
    let start = anchor(conn)?;
    let (first, first_hash) = match &start {
        Some(a) => (a.rows.max(0), decode_hash(&a.head).unwrap_or(GENESIS)),
        None => (0, GENESIS),
    };
    // Recomputed hash after row n, for the n checkpoints name (row 0: the genesis hash).
    let mut at: Vec<(i64, [u8; 32])> = vec![(first, first_hash)];

    let mut out = Outcome::default();
    let (mut a_stmt, mut e_stmt, mut d_stmt) = (conn.prepare(ALERTS)?, conn.prepare(EVENTS)?, conn.prepare(DIGESTS)?);
    let mut cursors = [
        Cursor::new(&mut a_stmt, "alert", 12)?,
        Cursor::new(&mut e_stmt, "event", 7)?,
        Cursor::new(&mut d_stmt, "digest", 8)?,
    ];
    let mut running = first_hash;
    let mut expected = first + 1;
    // Recomputed links are trusted only until the first break.
    let mut trusted = true;
    // The lowest position next; on a tie the earlier table (alerts, events, digests).
    while let Some(i) = (0..cursors.len()).filter(|&i| cursors[i].seq().is_some()).min_by_key(|&i| cursors[i].seq()) {
        let Some(row) = cursors[i].advance()? else { break };
        out.rows += 1;
        match row.table {
            "alert" => out.alerts += 1,
            "event" => out.events += 1,
            _ => out.digests += 1,
        }
        let refs: Vec<ValueRef<'_>> = row.values.iter().map(ValueRef::from).collect();
        let computed = link_hash(&running, row.table, &refs);
        let stored_hash = as_hash(&row.hash);
        let who = match row.table {
            "alert" => format!("alerts.id {}", show(&row.id)),
            "event" => format!("events.seq {}", show(&row.id)),
            _ => format!("digests.seq {}", show(&row.id)),
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
        let pruned = c.rows < first;
        let problem = if pruned {
            None
        } else if c.rows > last {
            Some(format!("it covers {} rows but the trail has {last}: rows were cut off the end", c.rows))
        } else if let Some((_, h)) = at.iter().find(|(n, _)| *n == c.rows) {
            (hex::encode(h) != c.head)
                .then(|| format!("the trail's first {} rows no longer hash to its head: they were rewritten", c.rows))
        } else {
            // Not reached through trusted links: the break above already fails the trail.
            None
        };
        out.checkpoints.push(CheckpointResult { checkpoint: c, stored: from_db, signature_ok, problem, pruned });
    }
    out.anchor = start.map(|a| {
        let signature_ok = key.map(|k| sign::check_anchor(k, &a));
        AnchorResult { anchor: a, signature_ok }
    });
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

/// What the egress table said when checked against its digests (see [`super::EgressDigest`]).
#[derive(Debug, Clone, Default)]
pub struct EgressOutcome {
    /// Minutes of a run, and their rows, checked against a digest.
    pub minutes: u64,
    pub rows: u64,
    /// Rows no digest covers and none has to (yet), by why, with their number.
    pub uncovered: BTreeMap<&'static str, u64>,
    /// Digests of minutes whose rows were pruned (before the anchor's `egress_before`).
    pub pruned: u64,
    pub first_break: Option<String>,
    pub breaks: u64,
}

impl EgressOutcome {
    pub fn intact(&self) -> bool {
        self.first_break.is_none()
    }

    fn broken(&mut self, what: String) {
        self.breaks += 1;
        self.first_break.get_or_insert(what);
    }
}

/// A stored digest, read loosely (an edited one is a finding, not an error).
struct StoredDigest {
    seq: i64,
    minute: i64,
    run: i64,
    rows: i64,
    packets: i64,
    bytes: i64,
    digest: String,
}

fn int_of(v: ValueRef<'_>) -> i64 {
    if let ValueRef::Integer(n) = v {
        n
    } else {
        i64::MIN
    }
}

/// Recomputes the digest of every run's egress rows of every minute and compares it with the
/// newest digest stored for that minute and run. Both are read in minute order, so memory
/// holds one minute's digests at a time. `exempt(run, minute)` says why rows of a run need
/// no digest (yet), or `None` when they must have one. Minutes before the newest anchor's
/// `egress_before` were pruned: their digests need no rows.
pub fn verify_egress(
    conn: &Connection,
    exempt: &dyn Fn(i64, i64) -> Option<&'static str>,
) -> rusqlite::Result<EgressOutcome> {
    let pruned_before = anchor(conn)?.map_or(i64::MIN, |a| a.egress_before);
    let mut out = EgressOutcome::default();
    let mut d_stmt = conn.prepare(
        "SELECT seq, minute, run_id, rows, packets, bytes, digest FROM digests ORDER BY minute, run_id, seq",
    )?;
    let mut d_rows = d_stmt.query([])?;
    let mut next_digest = || -> rusqlite::Result<Option<StoredDigest>> {
        Ok(d_rows.next()?.map(|r| StoredDigest {
            seq: r.get_ref(0).map(int_of).unwrap_or(i64::MIN),
            minute: r.get_ref(1).map(int_of).unwrap_or(i64::MIN),
            run: r.get_ref(2).map(int_of).unwrap_or(i64::MIN),
            rows: r.get_ref(3).map(int_of).unwrap_or(0),
            packets: r.get_ref(4).map(int_of).unwrap_or(0),
            bytes: r.get_ref(5).map(int_of).unwrap_or(0),
            digest: r.get_ref(6).map(|v| show(&Value::from(v))).unwrap_or_default(),
        }))
    };
    let mut pending = next_digest()?;
    let mut e_stmt = conn.prepare(
        "SELECT e.minute, e.run_id, p.uid, p.host, e.proto, e.dst, e.dport, e.packets, e.bytes, e.first_seen, e.last_seen
         FROM egress e LEFT JOIN principals p ON p.id = e.principal_id
         ORDER BY e.minute, e.principal_id, e.proto, e.dst, e.dport, e.run_id",
    )?;
    let mut e_rows = e_stmt.query([])?;
    let mut minute: Option<i64> = None;
    let mut open: BTreeMap<i64, EgressDigest> = BTreeMap::new();
    loop {
        let row = e_rows.next()?;
        let m = row.map(|r| r.get_ref(0).map(int_of)).transpose()?;
        if minute.is_some() && m != minute {
            // The minute is complete: the newest digest of each (minute, run) up to it.
            let done = minute.unwrap_or_default();
            let mut digests: BTreeMap<(i64, i64), StoredDigest> = BTreeMap::new();
            while let Some(d) = pending.take_if(|d| d.minute <= done) {
                digests.insert((d.minute, d.run), d);
                pending = next_digest()?;
            }
            settle(&mut out, done, std::mem::take(&mut open), digests, exempt, pruned_before);
        }
        let Some(r) = row else { break };
        minute = m;
        let run = r.get_ref(1).map(int_of)?;
        let v = |i: usize| r.get_ref(i);
        open.entry(run).or_default().add(&[v(2)?, v(3)?, v(4)?, v(5)?, v(6)?, v(7)?, v(8)?, v(9)?, v(10)?]);
    }
    // Digests after the last row: their rows are all gone.
    let mut digests = BTreeMap::new();
    while let Some(d) = pending.take() {
        digests.insert((d.minute, d.run), d);
        pending = next_digest()?;
    }
    settle(&mut out, i64::MAX, BTreeMap::new(), digests, exempt, pruned_before);
    Ok(out)
}

/// Compares the recomputed digests of `minute` (`open`, by run) with the stored `digests` of
/// that minute and earlier ones (the earlier ones have lost all their rows).
fn settle(
    out: &mut EgressOutcome,
    minute: i64,
    mut open: BTreeMap<i64, EgressDigest>,
    digests: BTreeMap<(i64, i64), StoredDigest>,
    exempt: &dyn Fn(i64, i64) -> Option<&'static str>,
    pruned_before: i64,
) {
    let when = |m: i64| crate::units::rfc3339(m);
    for ((m, run), d) in digests {
        let found = if m == minute { open.remove(&run) } else { None };
        if found.is_none() && m < pruned_before {
            out.pruned += 1;
            continue;
        }
        let Some(found) = found else {
            out.broken(format!(
                "egress of minute {}, run {run}: its digest (trail row {}) covers {} rows, {} packets, {} bytes, \
                 the table has none: they were deleted",
                when(m),
                d.seq,
                d.rows,
                d.packets,
                d.bytes
            ));
            continue;
        };
        out.minutes += 1;
        out.rows += found.rows as u64;
        let (rows, packets, bytes) = (found.rows, found.packets, found.bytes);
        if found.finish() != d.digest {
            out.broken(format!(
                "egress of minute {}, run {run}: the table has {rows} rows, {packets} packets, {bytes} bytes, its \
                 digest (trail row {}) {} rows, {} packets, {} bytes: rows were edited, deleted or inserted",
                when(m),
                d.seq,
                d.rows,
                d.packets,
                d.bytes
            ));
        }
    }
    for (run, found) in open {
        match exempt(run, minute) {
            Some(why) => *out.uncovered.entry(why).or_default() += found.rows as u64,
            None => out.broken(format!(
                "egress of minute {}, run {run}: {} rows no digest covers, though that run's rows have one: they \
                 were inserted",
                when(minute),
                found.rows
            )),
        }
    }
}
