//! How far each postgres sink has shipped this database (`ship_cursor`, src/ship): the
//! database is the spool, and a cursor is the last trail position and checkpoint that reached
//! the central server. A cursor moves only after the server committed, so a round that dies
//! part-way sends its batch again (the server's keys make that harmless).

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError};

/// Where a target stands, for `report health` and `exfilmon ship`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipState {
    pub target: String,
    /// Trail rows (alerts, events, digests) shipped through this position.
    pub seq: i64,
    pub checkpoint: i64,
    /// Trail rows and checkpoints past the cursor.
    pub backlog: i64,
    pub shipped_at: Option<i64>,
    pub tried_at: Option<i64>,
    pub last_error: Option<String>,
}

/// Trail rows past `?1` and checkpoints past `?2`.
const BACKLOG: &str = "(SELECT count(*) FROM alerts WHERE seq > ?1) + (SELECT count(*) FROM events WHERE seq > ?1)
     + (SELECT count(*) FROM digests WHERE seq > ?1) + (SELECT count(*) FROM checkpoints WHERE id > ?2)";

impl Store {
    /// The trail position and checkpoint id `target` has shipped through (0, 0 at first).
    pub fn ship_cursor(&self, target: &str) -> Result<(i64, i64), StoreError> {
        self.conn
            .query_row("SELECT seq, checkpoint FROM ship_cursor WHERE target = ?1", [target], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(|e| self.err(e))
    }

    /// Moves `target`'s cursor: the server has committed everything through these.
    pub fn set_ship_cursor(&self, target: &str, seq: i64, checkpoint: i64, now_us: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO ship_cursor (target, seq, checkpoint, shipped_at, tried_at) VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (target) DO UPDATE SET seq = ?2, checkpoint = ?3, shipped_at = ?4, tried_at = ?4,
                   last_error = NULL",
                params![target, seq, checkpoint, now_us],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Records a round of `target` that failed with `error` (the cursor stays).
    pub fn ship_failed(&self, target: &str, error: &str, now_us: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO ship_cursor (target, tried_at, last_error) VALUES (?1, ?2, ?3)
                 ON CONFLICT (target) DO UPDATE SET tried_at = ?2, last_error = ?3",
                params![target, now_us, error],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// The highest trail position (0: an empty trail).
    pub fn trail_end(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT max(coalesce((SELECT max(seq) FROM alerts), 0), coalesce((SELECT max(seq) FROM events), 0),
                            coalesce((SELECT max(seq) FROM digests), 0), 0)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Every target that has tried to ship, with its backlog.
    pub fn ship_states(&self) -> Result<Vec<ShipState>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT target, seq, checkpoint, shipped_at, tried_at, last_error, {} FROM ship_cursor c ORDER BY target",
                BACKLOG.replace("?1", "c.seq").replace("?2", "c.checkpoint")
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ShipState {
                    target: r.get(0)?,
                    seq: r.get(1)?,
                    checkpoint: r.get(2)?,
                    shipped_at: r.get(3)?,
                    tried_at: r.get(4)?,
                    last_error: r.get(5)?,
                    backlog: r.get(6)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Trail rows and checkpoints past a cursor.
    pub fn ship_backlog(&self, seq: i64, checkpoint: i64) -> Result<i64, StoreError> {
        self.conn
            .query_row(&format!("SELECT {BACKLOG}"), params![seq, checkpoint], |r| r.get(0))
            .map_err(|e| self.err(e))
    }
}
