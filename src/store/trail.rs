//! Trail rows (see [`crate::trail`]): the one place alerts, events and egress digests are
//! inserted, each linked to the head read in the same transaction, and signed checkpoints of
//! the head.

use rusqlite::types::ValueRef;
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

use super::{sql_err, Store, StoreError};
use crate::trail::sign::Signer;
use crate::trail::{decode_hash, link_hash, Checkpoint, Event, Link, GENESIS};

/// The last link over both tables (the genesis link for an empty trail). Call inside the
/// writing transaction, which must be immediate so no other writer moves the head meanwhile.
pub(super) fn head(tx: &Transaction<'_>) -> rusqlite::Result<Link> {
    let last = |sql: &str| -> rusqlite::Result<Option<(i64, String)>> {
        tx.prepare_cached(sql)?.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional()
    };
    let a = last("SELECT seq, hash FROM alerts ORDER BY seq DESC LIMIT 1")?;
    let e = last("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")?;
    let d = last("SELECT seq, hash FROM digests ORDER BY seq DESC LIMIT 1")?;
    // A trail pruned to nothing goes on from its anchor (store::prune).
    let anchor = last("SELECT rows, head FROM trail_anchors ORDER BY id DESC LIMIT 1")?;
    Ok(match a.into_iter().chain(e).chain(d).chain(anchor).max_by_key(|(seq, _)| *seq) {
        // An edited head hash cannot be linked to; the next link then breaks where verify
        // reports the edit anyway.
        Some((seq, hash)) => Link { seq, hash: decode_hash(&hash).unwrap_or(GENESIS) },
        None => Link::genesis(),
    })
}

/// An alert row as inserted; `uid` and `host` are its principal's (hashed, not stored here).
pub(super) struct AlertRow<'a> {
    pub ts_us: i64,
    pub kind: &'a str,
    pub severity: &'a str,
    pub principal_id: Option<i64>,
    pub uid: Option<u32>,
    pub host: Option<String>,
    pub dst: Option<&'a str>,
    pub bytes: i64,
    pub summary: &'a str,
    pub details: String,
    pub run_id: Option<i64>,
}

/// An alert row read back (from `alerts_pending`), to insert into the trail.
pub(super) struct OwnedAlertRow {
    pub ts_us: i64,
    pub kind: String,
    pub severity: String,
    pub principal_id: Option<i64>,
    pub uid: Option<u32>,
    pub host: Option<String>,
    pub dst: Option<String>,
    pub bytes: i64,
    pub summary: String,
    pub details: String,
    pub run_id: Option<i64>,
}

impl OwnedAlertRow {
    pub fn view(&self) -> AlertRow<'_> {
        AlertRow {
            ts_us: self.ts_us,
            kind: &self.kind,
            severity: &self.severity,
            principal_id: self.principal_id,
            uid: self.uid,
            host: self.host.clone(),
            dst: self.dst.as_deref(),
            bytes: self.bytes,
            summary: &self.summary,
            details: self.details.clone(),
            run_id: self.run_id,
        }
    }
}

fn int(v: Option<i64>) -> ValueRef<'static> {
    v.map_or(ValueRef::Null, ValueRef::Integer)
}

fn text(v: Option<&str>) -> ValueRef<'_> {
    v.map_or(ValueRef::Null, |s| ValueRef::Text(s.as_bytes()))
}

/// Inserts an alert as the link after `head`, and advances `head`.
pub(super) fn insert_alert(tx: &Transaction<'_>, head: &mut Link, a: &AlertRow<'_>) -> rusqlite::Result<()> {
    let seq = head.seq + 1;
    let id: i64 = tx.prepare_cached("SELECT ifnull(max(id), 0) + 1 FROM alerts")?.query_row([], |r| r.get(0))?;
    let hash = link_hash(
        &head.hash,
        "alert",
        &[
            ValueRef::Integer(seq),
            ValueRef::Integer(id),
            ValueRef::Integer(a.ts_us),
            text(Some(a.kind)),
            text(Some(a.severity)),
            int(a.uid.map(i64::from)),
            text(a.host.as_deref()),
            text(a.dst),
            ValueRef::Integer(a.bytes),
            text(Some(a.summary)),
            text(Some(&a.details)),
            int(a.run_id),
        ],
    );
    tx.prepare_cached(
        "INSERT INTO alerts (id, ts, kind, severity, principal_id, dst, bytes, summary, details, run_id, seq, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        id,
        a.ts_us,
        a.kind,
        a.severity,
        a.principal_id,
        a.dst,
        a.bytes,
        a.summary,
        a.details,
        a.run_id,
        seq,
        hex::encode(head.hash),
        hex::encode(hash)
    ])?;
    *head = Link { seq, hash };
    Ok(())
}

/// Inserts an event as the link after `head`, and advances `head`.
pub(super) fn insert_event(
    tx: &Transaction<'_>,
    head: &mut Link,
    e: &Event,
    run_id: Option<i64>,
) -> rusqlite::Result<()> {
    let seq = head.seq + 1;
    let details = e.details.to_string();
    let hash = link_hash(
        &head.hash,
        "event",
        &[
            ValueRef::Integer(seq),
            ValueRef::Integer(e.ts_us),
            text(Some(e.kind.as_str())),
            text(Some(e.severity.as_str())),
            int(run_id),
            text(Some(&e.summary)),
            text(Some(&details)),
        ],
    );
    tx.prepare_cached(
        "INSERT INTO events (seq, ts, kind, severity, run_id, summary, details, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        seq,
        e.ts_us,
        e.kind.as_str(),
        e.severity.as_str(),
        run_id,
        e.summary,
        details,
        hex::encode(head.hash),
        hex::encode(hash)
    ])?;
    *head = Link { seq, hash };
    Ok(())
}

/// A digest of one run's egress rows of one minute, as stored.
pub(super) struct DigestRow {
    pub run_id: i64,
    pub minute: i64,
    pub rows: i64,
    pub packets: i64,
    pub bytes: i64,
    pub digest: String,
}

/// Inserts a digest as the link after `head`, and advances `head`.
pub(super) fn insert_digest(tx: &Transaction<'_>, head: &mut Link, d: &DigestRow) -> rusqlite::Result<()> {
    let seq = head.seq + 1;
    let ts = crate::units::wall_clock_us();
    let hash = link_hash(
        &head.hash,
        "digest",
        &[
            ValueRef::Integer(seq),
            ValueRef::Integer(ts),
            ValueRef::Integer(d.run_id),
            ValueRef::Integer(d.minute),
            ValueRef::Integer(d.rows),
            ValueRef::Integer(d.packets),
            ValueRef::Integer(d.bytes),
            text(Some(&d.digest)),
        ],
    );
    tx.prepare_cached(
        "INSERT INTO digests (seq, ts, run_id, minute, rows, packets, bytes, digest, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        seq,
        ts,
        d.run_id,
        d.minute,
        d.rows,
        d.packets,
        d.bytes,
        d.digest,
        hex::encode(head.hash),
        hex::encode(hash)
    ])?;
    *head = Link { seq, hash };
    Ok(())
}

impl Store {
    /// Appends monitor events to the trail in one transaction; returns their links.
    pub fn append_events(&mut self, events: &[Event], run_id: Option<i64>) -> Result<Vec<Link>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let path = self.path.clone();
        let err = |e| sql_err(&path, e);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        let mut at = head(&tx).map_err(err)?;
        let mut links = Vec::with_capacity(events.len());
        for e in events {
            insert_event(&tx, &mut at, e, run_id).map_err(err)?;
            links.push(at.clone());
        }
        tx.commit().map_err(err)?;
        Ok(links)
    }

    /// Signs and stores a checkpoint of the current head.
    pub fn checkpoint(&mut self, signer: &Signer) -> Result<Checkpoint, StoreError> {
        let path = self.path.clone();
        let err = |e| sql_err(&path, e);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        let at = head(&tx).map_err(err)?;
        let c = signer.sign(crate::units::wall_clock_us(), at.seq, &hex::encode(at.hash));
        tx.prepare_cached("INSERT INTO checkpoints (ts, rows, head, key_id, signature) VALUES (?1, ?2, ?3, ?4, ?5)")
            .and_then(|mut s| s.execute(params![c.ts_us, c.rows, c.head, c.key_id, c.signature]))
            .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(c)
    }
}
