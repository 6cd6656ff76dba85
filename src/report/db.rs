//! Where a report reads: this host's SQLite database, or the fleet store (PostgreSQL, see
//! `src/ship`). A report's SQL is written once, over two row shapes both databases provide:
//!
//! - `{egress}`: egress rows with `observer`, `principal` (the key of who sent: the principal's
//!   row id locally, `uid:N` or `host:ADDR` centrally; only compared within one database), `uid`, `gid`,
//!   `host` and `user_name` (the name the observer resolved; NULL locally);
//! - `{alerts}`: alerts with the same six;
//! - `{dns}`: DNS rows with the same six; `{dns_sample}` a sample name of the row `r` (with
//!   `observer`, `principal`, `domain`) of a query;
//! - `{events}`: monitor events with `observer`;
//! - `{file_reads}`: sensitive-file reads with `observer` and `user_name` (the reader's name
//!   as the observer resolved it; NULL locally).
//!
//! Locally they are subqueries joining `principals`, leaving out replays not committed, with
//! the configured observer as a constant; centrally they are the tables themselves (only
//! committed rows are shipped). Parameters are written `$1`, `$2`... and are integers or text
//! ([`Param`]); results are read through [`Row`]. SQL stays portable: `CAST(sum(x) AS
//! BIGINT)` (PostgreSQL's sum of bigint is numeric), aggregates over `principal`, no
//! negative `LIMIT`.

use std::cell::RefCell;

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{ToSql, Type};

use super::ReportError;
use crate::principal::UserNames;
use crate::store::{Store, StoreError};

pub enum Db<'s> {
    Local {
        store: &'s Store,
        observer: String,
    },
    /// `programs`: the store has `egress_programs` (its schema 4 on).
    Central {
        client: Box<RefCell<postgres::Client>>,
        name: String,
        programs: bool,
    },
}

/// The shapes in the fleet store: its tables.
const CENTRAL: &[(&str, &str)] = &[
    ("{egress}", "egress"),
    ("{alerts}", "alerts"),
    ("{dns}", "dns"),
    (
        "{dns_sample}",
        "(SELECT x.name FROM dns_samples x
          WHERE x.observer = r.observer AND x.principal = r.principal AND x.domain = r.domain
          ORDER BY x.minute, x.name LIMIT 1)",
    ),
    ("{events}", "events"),
    ("{file_reads}", "file_reads"),
];

/// A query parameter.
#[derive(Debug, Clone)]
pub enum Param {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Param {
    fn from(n: i64) -> Param {
        Param::Int(Some(n))
    }
}

impl From<Option<i64>> for Param {
    fn from(n: Option<i64>) -> Param {
        Param::Int(n)
    }
}

impl From<Option<String>> for Param {
    fn from(s: Option<String>) -> Param {
        Param::Text(s)
    }
}

/// One result row, from either database.
pub enum Row<'a> {
    Local(&'a rusqlite::Row<'a>),
    Central(&'a postgres::Row),
}

impl Db<'_> {
    pub fn central(&self) -> bool {
        matches!(self, Db::Central { .. })
    }

    /// Whether egress split by program can be read here: always on a host (live runs write
    /// it; other rows have none), in the fleet store once a shipper has brought its schema there.
    pub fn has_programs(&self) -> bool {
        match self {
            Db::Local { .. } => true,
            Db::Central { programs, .. } => *programs,
        }
    }

    /// The local store, for the reports that read only it.
    pub fn local(&self) -> Result<&Store, ReportError> {
        match self {
            Db::Local { store, .. } => Ok(store),
            Db::Central { name, .. } => Err(ReportError::Central {
                target: name.clone(),
                message: "this report reads a host's own database only; pass --db FILE".into(),
            }),
        }
    }

    /// `sql` with the shapes filled in and, for SQLite, `$N` as `?N`.
    fn text(&self, sql: &str) -> String {
        // The observer is a config value checked to be printable ASCII; quoted all the same.
        match self {
            Db::Local { observer, .. } => {
                let observer = format!("'{}'", observer.replace('\'', "''"));
                let who = format!("p.uid, p.gid, p.host, p.id AS principal, NULL AS user_name, {observer} AS observer");
                let not_uncounted = "run_id NOT IN (SELECT id FROM uncounted_runs)";
                let shapes = [
                    (
                        "{egress}",
                        format!(
                            "(SELECT e.*, {who} FROM egress e JOIN principals p ON p.id = e.principal_id
                              WHERE e.{not_uncounted})"
                        ),
                    ),
                    (
                        "{alerts}",
                        format!("(SELECT a.*, {who} FROM alerts a LEFT JOIN principals p ON p.id = a.principal_id)"),
                    ),
                    (
                        "{dns}",
                        format!(
                            "(SELECT d.*, {who} FROM dns d JOIN principals p ON p.id = d.principal_id
                              WHERE d.{not_uncounted})"
                        ),
                    ),
                    (
                        "{dns_sample}",
                        format!(
                            "(SELECT x.name FROM dns_samples x
                              WHERE x.principal_id = r.principal AND x.domain = r.domain
                                AND x.{not_uncounted}
                              ORDER BY x.minute, x.name LIMIT 1)"
                        ),
                    ),
                    ("{events}", format!("(SELECT e.*, {observer} AS observer FROM events e)")),
                    (
                        "{file_reads}",
                        format!(
                            "(SELECT f.*, {observer} AS observer, NULL AS user_name FROM file_reads f
                              WHERE f.{not_uncounted})"
                        ),
                    ),
                ];
                numbered(shapes.iter().fold(sql.to_owned(), |sql, (shape, text)| sql.replace(shape, text)))
            }
            Db::Central { .. } => CENTRAL.iter().fold(sql.to_owned(), |sql, (shape, text)| sql.replace(shape, text)),
        }
    }

    /// Runs `sql` with `params` and hands each row to `each` as it is read.
    pub fn each(
        &self,
        sql: &str,
        params: &[Param],
        mut each: impl FnMut(&Row<'_>) -> Result<(), ReportError>,
    ) -> Result<(), ReportError> {
        let text = self.text(sql);
        match self {
            Db::Local { store, .. } => {
                let err = |e| ReportError::Store(StoreError::Sql { path: store.path().to_owned(), source: e });
                let mut stmt = store.conn().prepare(&text).map_err(err)?;
                let values: Vec<rusqlite::types::Value> = params
                    .iter()
                    .map(|p| match p {
                        Param::Int(n) => n.map_or(rusqlite::types::Value::Null, rusqlite::types::Value::Integer),
                        Param::Text(s) => s.clone().map_or(rusqlite::types::Value::Null, rusqlite::types::Value::Text),
                    })
                    .collect();
                let mut rows = stmt.query(rusqlite::params_from_iter(values)).map_err(err)?;
                while let Some(r) = rows.next().map_err(err)? {
                    each(&Row::Local(r))?;
                }
                Ok(())
            }
            Db::Central { client, name, .. } => {
                let err = |e: postgres::Error| ReportError::Central {
                    target: name.clone(),
                    message: crate::ship::pg_text(&e),
                };
                let mut client = client.borrow_mut();
                let types: Vec<Type> =
                    params.iter().map(|p| if matches!(p, Param::Int(_)) { Type::INT8 } else { Type::TEXT }).collect();
                let stmt = client.prepare_typed(&text, &types).map_err(err)?;
                let values: Vec<&(dyn ToSql + Sync)> = params
                    .iter()
                    .map(|p| match p {
                        Param::Int(n) => n as &(dyn ToSql + Sync),
                        Param::Text(s) => s as &(dyn ToSql + Sync),
                    })
                    .collect();
                let mut rows = client.query_raw(&stmt, values).map_err(err)?;
                while let Some(r) = rows.next().map_err(err)? {
                    each(&Row::Central(&r))?;
                }
                Ok(())
            }
        }
    }

    /// The user name of a row's `uid`: as the observer resolved it (the fleet store), or
    /// from this machine's user database (locally, where the row was recorded).
    pub fn user(&self, names: &mut UserNames, uid: Option<i64>, shipped: Option<String>) -> Option<String> {
        match self {
            Db::Local { .. } => uid.and_then(|u| u32::try_from(u).ok()).and_then(|u| names.get(u)),
            Db::Central { .. } => shipped,
        }
    }
}

/// `$N` as `?N`: SQLite numbers `$`-named parameters in order of appearance, not by N.
/// A `$` not followed by a digit (a JSON path in a string) stays.
fn numbered(sql: String) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        let digit_next = chars.peek().is_some_and(char::is_ascii_digit);
        out.push(if c == '$' && digit_next { '?' } else { c });
    }
    out
}

impl Row<'_> {
    fn central_err(e: postgres::Error) -> ReportError {
        ReportError::Central { target: "the fleet store".into(), message: crate::ship::pg_text(&e) }
    }

    fn local_err(e: rusqlite::Error) -> ReportError {
        ReportError::Store(StoreError::Sql { path: Default::default(), source: e })
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, ReportError> {
        match self {
            Row::Local(r) => r.get(i).map_err(Self::local_err),
            Row::Central(r) => r.try_get(i).map_err(Self::central_err),
        }
    }

    pub fn int(&self, i: usize) -> Result<i64, ReportError> {
        Ok(self.opt_int(i)?.unwrap_or(0))
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, ReportError> {
        match self {
            Row::Local(r) => r.get(i).map_err(Self::local_err),
            Row::Central(r) => r.try_get(i).map_err(Self::central_err),
        }
    }

    pub fn text(&self, i: usize) -> Result<String, ReportError> {
        Ok(self.opt_text(i)?.unwrap_or_default())
    }
}
