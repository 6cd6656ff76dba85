//! Blocks as the trail records them (`[response]`, `exfilmon block`/`unblock`): which are
//! active now. The kernel's set is the truth for enforcement; this is the record people and
//! the daemon's expiry notices read, so it works with the monitor stopped and on a copy of
//! the database.

use rusqlite::params;

use super::{sql_err, Store, StoreError};

/// A block the trail says is in force.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveBlock {
    /// `uid 1001` or `host 192.0.2.7`, as [`crate::principal::Principal`] prints it.
    pub principal: String,
    pub uid: Option<i64>,
    pub host: Option<String>,
    pub since_us: i64,
    pub until_us: i64,
    pub reason: String,
}

impl Store {
    /// Blocks whose end is after `now_us` and that no later `blocked` or `unblocked` event of
    /// the same principal replaced, oldest end first.
    pub fn active_blocks(&self, now_us: i64) -> Result<Vec<ActiveBlock>, StoreError> {
        let err = |e| sql_err(&self.path, e);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT json_extract(b.details, '$.principal'), json_extract(b.details, '$.uid'),
                        json_extract(b.details, '$.host'), coalesce(json_extract(b.details, '$.since_us'), b.ts),
                        json_extract(b.details, '$.until_us'), coalesce(json_extract(b.details, '$.reason'), b.summary)
                 FROM events b
                 WHERE b.kind = 'blocked' AND json_extract(b.details, '$.until_us') > ?1
                   AND NOT EXISTS (SELECT 1 FROM events l WHERE l.seq > b.seq AND l.kind IN ('blocked', 'unblocked')
                                   AND json_extract(l.details, '$.principal') = json_extract(b.details, '$.principal'))
                 ORDER BY 5",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![now_us], |r| {
                Ok(ActiveBlock {
                    principal: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                    uid: r.get(1)?,
                    host: r.get(2)?,
                    since_us: r.get(3)?,
                    until_us: r.get(4)?,
                    reason: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                })
            })
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }
}
