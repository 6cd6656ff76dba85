//! SQLite storage: open and migrate, batched writes, a writer thread.
//!
//! The database is opened in WAL mode with `synchronous=NORMAL`: a crash loses at most the
//! last transactions, never the file's integrity. Every write batch is one transaction.

mod files;
mod health;
mod migrate;
pub mod trail;
pub mod writer;

use std::fmt::Write as _;
use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use rustc_hash::FxHashMap;

use crate::alert::{Alert, AlertKind, Severity};
use crate::decode::Direction;
use crate::principal::{Dst, Principal};
use crate::rows::{DnsRow, EgressRow, RunTotals};
use crate::units::wall_clock_us;

pub use migrate::SCHEMA_VERSION;

/// Principal ids kept in memory at most (about 40 bytes each).
const MAX_CACHED_PRINCIPALS: usize = 1 << 16;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create database directory {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open database {}: {source}", path.display())]
    Open { path: PathBuf, source: std::io::Error },
    #[error("database {} does not exist (replay a capture or start the monitor first, or pass --db)", path.display())]
    Missing { path: PathBuf },
    #[error("{} is not an exfilmon database (not SQLite)", path.display())]
    NotSqlite { path: PathBuf },
    #[error("database {} is damaged (SQLite: malformed disk image); move it aside and restore a backup, or pass a new path with --db", path.display())]
    Corrupt { path: PathBuf },
    #[error("{} is another program's SQLite database (it has tables but no exfilmon schema); pass a new path with --db", path.display())]
    Foreign { path: PathBuf },
    #[error("database {} has schema version {found}, newer than this exfilmon understands ({SCHEMA_VERSION}); upgrade exfilmon", path.display())]
    TooNew { path: PathBuf, found: i64 },
    #[error("database {}: {source}", path.display())]
    Sql { path: PathBuf, source: rusqlite::Error },
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Row id and last stored gid of each principal written so far.
    principal_ids: FxHashMap<Principal, (i64, Option<u32>)>,
}

impl Store {
    /// Opens (creating, with mode 0640 in a 0750 directory, if needed) and migrates.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .map_err(|source| StoreError::CreateDir { path: dir.to_owned(), source })?;
        }
        if path.is_dir() {
            return Err(StoreError::Open { path: path.to_owned(), source: std::io::Error::other("is a directory") });
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
            .map_err(|source| StoreError::Open { path: path.to_owned(), source })?;
        let mut conn = Connection::open(path).map_err(|e| sql_err(path, e))?;
        // Wait for a process creating or migrating the same file, from the first read on.
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| sql_err(path, e))?;
        // Judged before anything is written: WAL mode alone would change another program's file.
        // A current database skips migrate's write lock, which a running monitor may hold.
        if migrate::check(&conn, path)? < SCHEMA_VERSION {
            migrate::migrate(&mut conn, path)?;
        }
        let store = Store { conn, path: path.to_owned(), principal_ids: FxHashMap::default() };
        store.configure()?;
        Ok(store)
    }

    /// Opens an existing database for reading (reports).
    pub fn open_read(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing { path: path.to_owned() });
        }
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| sql_err(path, e))?;
        let store = Store { conn, path: path.to_owned(), principal_ids: FxHashMap::default() };
        if migrate::check(&store.conn, path)? < SCHEMA_VERSION {
            // An older database: migrate through a writable connection first.
            drop(store);
            drop(Store::open(path)?);
            return Store::open_read(path);
        }
        Ok(store)
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn configure(&self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")
            .map_err(|e| self.err(e))
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        sql_err(&self.path, e)
    }

    /// Every egress row of minutes from `since_us` on, oldest first, without collecting them.
    pub fn each_egress_since(&self, since_us: i64, mut f: impl FnMut(EgressRow)) -> Result<(), StoreError> {
        self.each_since(
            "SELECT p.uid, p.host, p.gid, e.minute, e.proto, e.dst, e.dport, e.packets, e.bytes, e.first_seen,
                    e.last_seen, e.direction, e.dst_name
             FROM egress e JOIN principals p ON p.id = e.principal_id
             WHERE e.minute >= ?1 ORDER BY e.minute, e.last_seen",
            since_us,
            |principal, r| {
                let addr = r.get::<_, String>(5).ok()?.parse().ok()?;
                let get = |i| r.get::<_, i64>(i).unwrap_or(0);
                f(EgressRow {
                    principal,
                    gid: r.get(2).unwrap_or(None),
                    dst: Dst {
                        addr,
                        port: u16::try_from(get(6)).unwrap_or(0),
                        proto: u8::try_from(get(4)).unwrap_or(0),
                    },
                    minute_us: get(3),
                    packets: u64::try_from(get(7)).unwrap_or(0),
                    bytes: u64::try_from(get(8)).unwrap_or(0),
                    first_us: get(9),
                    last_us: get(10),
                    direction: Direction::of_code(get(11)),
                    dst_name: r.get::<_, Option<String>>(12).ok().flatten().map(String::into_boxed_str),
                });
                Some(())
            },
        )
    }

    /// Every DNS row of minutes from `since_us` on, oldest first (without samples).
    pub fn each_dns_since(&self, since_us: i64, mut f: impl FnMut(DnsRow)) -> Result<(), StoreError> {
        self.each_since(
            "SELECT p.uid, p.host, p.gid, d.minute, d.domain, d.queries, d.unique_names, d.name_bytes, d.suspicious,
                    d.flags
             FROM dns d JOIN principals p ON p.id = d.principal_id WHERE d.minute >= ?1 ORDER BY d.minute",
            since_us,
            |principal, r| {
                let get = |i| u32::try_from(r.get::<_, i64>(i).unwrap_or(0)).unwrap_or(u32::MAX);
                f(DnsRow {
                    principal,
                    gid: r.get(2).unwrap_or(None),
                    domain: r.get(4).ok()?,
                    minute_us: r.get(3).ok()?,
                    queries: get(5),
                    unique: get(6),
                    name_bytes: u64::try_from(r.get::<_, i64>(7).unwrap_or(0)).unwrap_or(0),
                    suspicious: get(8),
                    flags: get(9),
                    samples: Vec::new(),
                });
                Some(())
            },
        )
    }

    /// Every alert from `since_us` on, oldest first.
    pub fn each_alert_since(&self, since_us: i64, mut f: impl FnMut(Alert)) -> Result<(), StoreError> {
        self.each_since(
            "SELECT p.uid, p.host, a.ts, a.kind, a.severity, a.dst, a.bytes, a.summary, a.details
             FROM alerts a JOIN principals p ON p.id = a.principal_id WHERE a.ts >= ?1 ORDER BY a.ts",
            since_us,
            |principal, r| {
                let severity = match r.get::<_, String>(4).ok()?.as_str() {
                    "high" => Severity::High,
                    "low" => Severity::Low,
                    _ => Severity::Medium,
                };
                f(Alert {
                    ts_us: r.get(2).ok()?,
                    kind: AlertKind::of_name(&r.get::<_, String>(3).ok()?)?,
                    severity,
                    principal,
                    dst: r.get(5).ok()?,
                    bytes: u64::try_from(r.get::<_, i64>(6).ok()?).unwrap_or(0),
                    summary: r.get(7).ok()?,
                    details: serde_json::from_str(&r.get::<_, String>(8).ok()?).unwrap_or_default(),
                });
                Some(())
            },
        )
    }

    /// Runs `query` (its first columns a principal's uid and host, `?1` the bound) and hands
    /// each row to `f`; rows `f` cannot read (`None`) are skipped.
    fn each_since(
        &self,
        query: &str,
        since_us: i64,
        mut f: impl FnMut(Principal, &rusqlite::Row<'_>) -> Option<()>,
    ) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare(query).map_err(|e| self.err(e))?;
        let mut rows = stmt.query([since_us]).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let principal = match (r.get::<_, Option<u32>>(0), r.get::<_, Option<String>>(1)) {
                (Ok(Some(uid)), _) => Principal::Uid(uid),
                (_, Ok(Some(host))) => match host.parse() {
                    Ok(addr) => Principal::Host(addr),
                    Err(_) => continue,
                },
                _ => continue,
            };
            f(principal, r);
        }
        Ok(())
    }

    /// Each uid principal's bytes per hour from `since_us` on, oldest first (for baselines).
    pub fn each_uid_hour_since(&self, since_us: i64, mut f: impl FnMut(u32, i64, u64)) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT p.uid, e.minute / 3600000000 * 3600000000 AS hour, sum(e.bytes)
                 FROM egress e JOIN principals p ON p.id = e.principal_id
                 WHERE e.minute >= ?1 AND p.uid IS NOT NULL GROUP BY p.uid, hour ORDER BY hour, p.uid",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query([since_us]).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            if let (Ok(uid), Ok(hour), Ok(bytes)) = (r.get::<_, u32>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)) {
                f(uid, hour, u64::try_from(bytes).unwrap_or(0));
            }
        }
        Ok(())
    }

    /// Gives principals their ids in this order (those new to the table), in one transaction.
    /// A replay's ids then follow the packets, whatever batches the writer made of them.
    pub fn name_principals(&mut self, principals: &[(Principal, Option<u32>)]) -> Result<(), StoreError> {
        if principals.iter().all(|(p, _)| self.principal_ids.contains_key(p)) {
            return Ok(());
        }
        let path = self.path.clone();
        let err = |e| sql_err(&path, e);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        {
            if self.principal_ids.len() > MAX_CACHED_PRINCIPALS {
                self.principal_ids.clear();
            }
            let mut ids = PrincipalIds { cache: &mut self.principal_ids, tx: &tx };
            for &(p, gid) in principals {
                ids.get(p, gid).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Writes a batch in one transaction; returns the alerts' trail links, in order.
    pub fn write(
        &mut self,
        rows: &[EgressRow],
        alerts: &[Alert],
        run_id: Option<i64>,
    ) -> Result<Vec<crate::trail::Link>, StoreError> {
        // Immediate: the trail head read below must still be the head when the alerts land.
        let tx =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| sql_err(&self.path, e))?;
        let mut links = Vec::with_capacity(alerts.len());
        {
            // A cache: when a flood of source addresses fills it, start over from the table.
            if self.principal_ids.len() > MAX_CACHED_PRINCIPALS {
                self.principal_ids.clear();
            }
            let mut ids = PrincipalIds { cache: &mut self.principal_ids, tx: &tx };
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO egress (principal_id, minute, proto, dst, dport, packets, bytes, first_seen, last_seen,
                       direction, dst_name)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT DO UPDATE SET packets = packets + excluded.packets, bytes = bytes + excluded.bytes,
                       first_seen = min(first_seen, excluded.first_seen), last_seen = max(last_seen, excluded.last_seen),
                       direction = max(direction, excluded.direction),
                       dst_name = coalesce(excluded.dst_name, dst_name)",
                )
                .map_err(|e| sql_err(&self.path, e))?;
            // Principals first, in arrival order (the last gid seen wins); then the rows in key
            // order, which starts with the minute, so inserts append at the end of the table
            // instead of splitting pages in its middle.
            let mut keyed = Vec::with_capacity(rows.len());
            for row in rows {
                keyed.push((ids.get(row.principal, row.gid).map_err(|e| sql_err(&self.path, e))?, row));
            }
            keyed.sort_unstable_by_key(|(pid, r)| (r.minute_us, *pid, r.dst.proto, r.dst.addr, r.dst.port));
            let mut addr = String::with_capacity(48);
            for (pid, row) in keyed {
                addr.clear();
                let _ = write!(addr, "{}", row.dst.addr);
                upsert
                    .execute(params![
                        pid,
                        row.minute_us,
                        row.dst.proto,
                        addr,
                        row.dst.port,
                        row.packets as i64,
                        row.bytes as i64,
                        row.first_us,
                        row.last_us,
                        row.direction.code(),
                        row.dst_name.as_deref()
                    ])
                    .map_err(|e| sql_err(&self.path, e))?;
            }
            let mut at = if alerts.is_empty() {
                crate::trail::Link::genesis()
            } else {
                trail::head(&tx).map_err(|e| sql_err(&self.path, e))?
            };
            for a in alerts {
                let pid = ids.get(a.principal, None).map_err(|e| sql_err(&self.path, e))?;
                let row = trail::AlertRow {
                    ts_us: a.ts_us,
                    kind: a.kind.as_str(),
                    severity: a.severity.as_str(),
                    principal_id: Some(pid),
                    uid: a.principal.uid(),
                    host: a.principal.host().map(|h| h.to_string()),
                    dst: a.dst.as_deref(),
                    bytes: a.bytes as i64,
                    summary: &a.summary,
                    details: a.details.to_string(),
                    run_id,
                };
                trail::insert_alert(&tx, &mut at, &row).map_err(|e| sql_err(&self.path, e))?;
                links.push(at.clone());
            }
        }
        tx.commit().map_err(|e| sql_err(&self.path, e))?;
        Ok(links)
    }

    /// Writes DNS aggregates and their sample names in one transaction; rows for the same
    /// (minute, principal, domain) add up.
    pub fn write_dns(&mut self, rows: &[DnsRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let err = |e| sql_err(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        {
            // A cache: when a flood of source addresses fills it, start over from the table.
            if self.principal_ids.len() > MAX_CACHED_PRINCIPALS {
                self.principal_ids.clear();
            }
            let mut ids = PrincipalIds { cache: &mut self.principal_ids, tx: &tx };
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO dns (minute, principal_id, domain, queries, unique_names, name_bytes, suspicious, flags)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT DO UPDATE SET queries = queries + excluded.queries,
                       unique_names = unique_names + excluded.unique_names, name_bytes = name_bytes + excluded.name_bytes,
                       suspicious = suspicious + excluded.suspicious, flags = flags | excluded.flags",
                )
                .map_err(err)?;
            let mut sample = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO dns_samples (principal_id, domain, name, minute) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(err)?;
            for row in rows {
                let pid = ids.get(row.principal, row.gid).map_err(err)?;
                upsert
                    .execute(params![
                        row.minute_us,
                        pid,
                        row.domain,
                        row.queries,
                        row.unique,
                        row.name_bytes as i64,
                        row.suspicious,
                        row.flags
                    ])
                    .map_err(err)?;
                for name in &row.samples {
                    sample.execute(params![pid, row.domain, name, row.minute_us]).map_err(err)?;
                }
            }
        }
        tx.commit().map_err(err)
    }

    /// Records the start of a run; returns its id.
    pub fn begin_run(&self, mode: &str) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO runs (mode, version, started_at) VALUES (?1, ?2, ?3)",
                params![mode, env!("CARGO_PKG_VERSION"), wall_clock_us()],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn finish_run(&self, run_id: i64, totals: &RunTotals) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET finished_at = ?2, packets = ?3, bytes = ?4, malformed = ?5, ignored = ?6, alerts = ?7, counters = ?8
                 WHERE id = ?1",
                params![
                    run_id,
                    wall_clock_us(),
                    totals.packets as i64,
                    totals.bytes as i64,
                    totals.malformed as i64,
                    totals.ignored as i64,
                    totals.alerts as i64,
                    totals.counters.to_string()
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// When and from where a capture with this content hash was replayed before.
    pub fn capture_seen(&self, sha256: &str) -> Result<Option<(String, i64)>, StoreError> {
        self.conn
            .query_row("SELECT path, replayed_at FROM captures WHERE sha256 = ?1", [sha256], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Whether a capture of exactly this many bytes was replayed before: only then can a new
    /// file have the same content, so only then must it be hashed before it is replayed.
    pub fn capture_size_seen(&self, size: u64) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT 1 FROM captures WHERE size = ?1 LIMIT 1", [size as i64], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .map_err(|e| self.err(e))
    }

    pub fn record_capture(&self, c: &CaptureRecord<'_>, run_id: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO captures (sha256, path, size, run_id, records, damaged, replayed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![c.sha256, c.path, c.size as i64, run_id, c.records as i64, c.damaged as i64, wall_clock_us()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

pub struct CaptureRecord<'a> {
    pub sha256: &'a str,
    pub path: &'a str,
    pub size: u64,
    pub records: u64,
    pub damaged: u64,
}

struct PrincipalIds<'a, 'c> {
    cache: &'a mut FxHashMap<Principal, (i64, Option<u32>)>,
    tx: &'a rusqlite::Transaction<'c>,
}

impl PrincipalIds<'_, '_> {
    fn get(&mut self, p: Principal, gid: Option<u32>) -> rusqlite::Result<i64> {
        if let Some(&(id, known)) = self.cache.get(&p) {
            if gid.is_none() || gid == known {
                return Ok(id);
            }
        }
        let host = p.host().map(|h| h.to_string());
        self.tx
            .prepare_cached(
                "INSERT INTO principals (uid, gid, host) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO UPDATE SET gid = ifnull(excluded.gid, gid)",
            )?
            .execute(params![p.uid(), gid, host])?;
        let id = self.tx.prepare_cached("SELECT id FROM principals WHERE ifnull(uid, -1) = ifnull(?1, -1) AND ifnull(host, '') = ifnull(?2, '')")?.query_row(
            params![p.uid(), host],
            |r| r.get(0),
        )?;
        self.cache.insert(p, (id, gid));
        Ok(id)
    }
}

fn sql_err(path: &Path, e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        if f.code == rusqlite::ErrorCode::NotADatabase {
            return StoreError::NotSqlite { path: path.to_owned() };
        }
        if f.code == rusqlite::ErrorCode::DatabaseCorrupt {
            return StoreError::Corrupt { path: path.to_owned() };
        }
    }
    StoreError::Sql { path: path.to_owned(), source: e }
}
