//! Schema migrations: recognise a database as exfilmon's, then bring it to the current version.
//!
//! The steps are the files in `migrations/` (see its README): `PRAGMA user_version` counts the
//! ones a database has had. Recognising reads only, so a file that is not ours is refused
//! before a byte of it changes.

use std::path::Path;

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use super::{sql_err, StoreError};

/// Entry N brings a database to version N + 1. Released entries are never edited.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_initial.sql"),
    include_str!("../../migrations/0002_marker.sql"),
    include_str!("../../migrations/0003_direction.sql"),
    include_str!("../../migrations/0004_dst_name.sql"),
    include_str!("../../migrations/0005_runs_as_units.sql"),
    include_str!("../../migrations/0006_egress_digests.sql"),
    include_str!("../../migrations/0007_retention.sql"),
    include_str!("../../migrations/0008_ship_cursor.sql"),
    include_str!("../../migrations/0009_programs.sql"),
    include_str!("../../migrations/0010_icmp.sql"),
    include_str!("../../migrations/0011_capture_digest.sql"),
];
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Tables every version-1 database has had: version 1 was edited in place for a while, so
/// older ones lack later tables, but all have these. They recognise the databases made
/// before the marker (migration 2) existed.
const V1_TABLES: &[&str] = &["principals", "egress", "alerts", "runs", "captures"];

/// The version of an empty or exfilmon database (0: empty, to be created), reading only.
/// Errors: Foreign for anything else non-empty, TooNew for a newer exfilmon's.
pub fn check(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let err = |e| sql_err(path, e);
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?;
    let objects: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0)).map_err(err)?;
    let ours = (objects == 0 && version == 0)
        || marked(conn).map_err(err)?
        || (version == 1 && has_v1_tables(conn).map_err(err)?);
    // Unmarked is foreign whatever its version: every version since 2 has the marker. A
    // negative version is no version of ours either.
    if !ours || version < 0 {
        return Err(StoreError::Foreign { path: path.to_owned() });
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew { path: path.to_owned(), found: version });
    }
    Ok(version)
}

fn has_table(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    let sql = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1";
    Ok(conn.query_row(sql, [name], |r| r.get::<_, i64>(0))? > 0)
}

fn has_v1_tables(conn: &Connection) -> rusqlite::Result<bool> {
    for table in V1_TABLES {
        if !has_table(conn, table)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether the file has the marker row of migration 2.
fn marked(conn: &Connection) -> rusqlite::Result<bool> {
    if !has_table(conn, "exfilmon_meta")? {
        return Ok(false);
    }
    // A table of that name with other columns is someone else's: "no such column" then means
    // "not marked", not a failure.
    let sql = "SELECT count(*) FROM exfilmon_meta WHERE key = 'schema' AND value = 'exfilmon'";
    match conn.query_row(sql, [], |r| r.get::<_, i64>(0)) {
        Ok(n) => Ok(n > 0),
        Err(rusqlite::Error::SqlInputError { .. }) => Ok(false),
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::Unknown) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Applies every migration above the database's version, all in one exclusive transaction:
/// of several processes opening the same new database at once, one creates the schema while
/// the others wait on the lock (the store's busy handler), then find the work done. The version is read
/// (and the file judged) again under the lock, since another process may have moved it on.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let err = |e| sql_err(path, e);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive).map_err(err)?;
    let version = check(&tx, path)?;
    if version == SCHEMA_VERSION {
        return Ok(()); // dropping tx ends the transaction: nothing was written
    }
    for sql in &MIGRATIONS[version as usize..] {
        tx.execute_batch(sql).map_err(err)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(err)?;
    tx.commit().map_err(err)
}
