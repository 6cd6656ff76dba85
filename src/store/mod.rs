//! SQLite storage: open and migrate, batched writes, a writer thread.
//!
//! The database is opened in WAL mode with `synchronous=NORMAL`: a crash loses at most the
//! last transactions, never the file's integrity. Every write batch is one transaction.
//! Processes sharing the file take turns: a writer waits for another's lock as long as it
//! takes (see [`lock_waiter`]) instead of failing part-way. The `-wal` and `-shm` files are
//! kept when the last connection closes, so the database's group can read it with no writer
//! running ([`keep_wal_files`]).

mod blocks;
mod digest;
mod files;
mod health;
mod icmp;
mod migrate;
mod programs;
pub mod prune;
pub mod runs;
mod ship;
pub mod trail;
pub mod writer;

use std::fs::{DirBuilder, OpenOptions};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};
use rustc_hash::FxHashMap;

use crate::alert::{Alert, AlertKind, Severity};
use crate::decode::Direction;
use crate::principal::{Dst, Principal};
use crate::rows::{DnsRow, EgressRow, IcmpRow, ProgramRow, Recredit};
use crate::source::audit::FileRead;

pub use blocks::ActiveBlock;
pub use migrate::SCHEMA_VERSION;
pub use prune::{Pruned, RetentionConfig};
pub use runs::{CaptureRecord, Committed, Duplicate, Run, RunEnd, RunMode};
pub use ship::ShipState;

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
    #[error("database {}: {source}", path.display())]
    Prune { path: PathBuf, source: prune::BrokenPrefix },
    #[error("database {}: run {run} was ended by another exfilmon while it was being written (it took this process for dead); nothing of it counts, run it again", path.display())]
    RunLost { path: PathBuf, run: i64 },
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Row id and last stored gid of each principal written so far.
    principal_ids: FxHashMap<Principal, (i64, Option<u32>)>,
    /// Held while a run of this process is being written (see [`runs`]).
    run_lock: Option<runs::RunLock>,
    /// The live run's minutes digested so far (see [`digest`]).
    live_digests: digest::LiveDigests,
    /// The replay's digests made as its rows were written.
    written: digest::Written,
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
        // Wait for a process creating, migrating or writing the same file, from the first read on.
        conn.busy_handler(Some(lock_waiter(path.to_owned()))).map_err(|e| sql_err(path, e))?;
        keep_wal_files(&conn).map_err(|e| sql_err(path, e))?;
        // Judged before anything is written: WAL mode alone would change another program's file.
        // A current database skips migrate's write lock, which a running monitor may hold.
        let version = migrate::check(&conn, path)?;
        if version == 0 {
            // Only an empty file takes it: pruned space can then be given back (store::prune).
            conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL").map_err(|e| sql_err(path, e))?;
        }
        if version < SCHEMA_VERSION {
            migrate::migrate(&mut conn, path)?;
        }
        let mut store = Store {
            conn,
            path: path.to_owned(),
            principal_ids: FxHashMap::default(),
            run_lock: None,
            live_digests: Default::default(),
            written: Default::default(),
        };
        store.configure()?;
        // Runs left behind by processes that died are ended before anything new is written.
        store.recover()?;
        Ok(store)
    }

    /// Opens an existing database for reading (reports).
    pub fn open_read(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing { path: path.to_owned() });
        }
        let mut conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| sql_err(path, e))?;
        conn.busy_handler(Some(lock_waiter(path.to_owned()))).map_err(|e| sql_err(path, e))?;
        keep_wal_files(&conn).map_err(|e| sql_err(path, e))?;
        let store = Store {
            conn,
            path: path.to_owned(),
            principal_ids: FxHashMap::default(),
            run_lock: None,
            live_digests: Default::default(),
            written: Default::default(),
        };
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
        // journal_size_limit: the kept write-ahead log is cut to nothing when the last
        // connection closes (and to 64 MiB after a checkpoint while it is open).
        self.conn
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;
                 PRAGMA journal_size_limit = 67108864;",
            )
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
             WHERE e.minute >= ?1 AND e.run_id NOT IN uncounted_runs ORDER BY e.minute, e.last_seen",
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
             FROM dns d JOIN principals p ON p.id = d.principal_id
             WHERE d.minute >= ?1 AND d.run_id NOT IN uncounted_runs ORDER BY d.minute",
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
                f(Alert {
                    ts_us: r.get(2).ok()?,
                    kind: AlertKind::from_name(&r.get::<_, String>(3).ok()?)?,
                    severity: Severity::from_name(&r.get::<_, String>(4).ok()?)?,
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
        self.each_since(
            "SELECT p.uid, NULL, e.minute / 3600000000 * 3600000000 AS hour, sum(e.bytes)
             FROM egress e JOIN principals p ON p.id = e.principal_id
             WHERE e.minute >= ?1 AND p.uid IS NOT NULL AND e.run_id NOT IN uncounted_runs
             GROUP BY p.uid, hour ORDER BY hour, p.uid",
            since_us,
            |principal, r| {
                f(principal.uid()?, r.get(2).ok()?, u64::try_from(r.get::<_, i64>(3).ok()?).unwrap_or(0));
                Some(())
            },
        )
    }

    /// Writes a batch in one transaction: DNS rows, file reads, egress rows, then alerts, all
    /// under `run` (see [`runs`]). A live run's alerts join the trail here and their links
    /// are returned, in order; a replay's wait in `alerts_pending` until it commits.
    pub fn write_batch(&mut self, b: &Batch, run: Option<Run>) -> Result<Vec<crate::trail::Link>, StoreError> {
        if b.is_empty() {
            return Ok(Vec::new());
        }
        let path = self.path.clone();
        let err = |e| sql_err(&path, e);
        let run_id = run.map_or(0, |r| r.id);
        let done_before = self.live_digests.done_before;
        // Immediate: the trail head read below must still be the head when the alerts land.
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        let mut links = Vec::new();
        {
            // A cache: when a flood of source addresses fills it, start over from the table.
            if self.principal_ids.len() > MAX_CACHED_PRINCIPALS {
                self.principal_ids.clear();
            }
            let mut ids = PrincipalIds { cache: &mut self.principal_ids, tx: &tx };
            // New principals get their ids in the order the pipeline met them, whatever its
            // messages were merged into: a replay gives the same ids every time.
            for &(p, gid) in &b.principals {
                ids.get(p, gid).map_err(err)?;
            }
            write_dns(&tx, &mut ids, &b.dns, run_id).map_err(err)?;
            files::write_file_reads(&tx, &b.reads, run_id).map_err(err)?;
            let written = run.is_some_and(Run::unit).then_some(&mut self.written);
            write_egress(&tx, &mut ids, &b.rows, run_id, written).map_err(err)?;
            programs::write_programs(&tx, &mut ids, &b.programs, run_id).map_err(err)?;
            icmp::write_icmp(&tx, &mut ids, &b.icmp, run_id).map_err(err)?;
            // Live only (a replay has no owner lookups), so no replay digest to keep.
            for m in &b.recredits {
                write_egress(&tx, &mut ids, &m.rows, run_id, None).map_err(err)?;
            }
            programs::take_recredited(&tx, &mut ids, &b.recredits, run_id).map_err(err)?;
            if run.is_some_and(Run::unit) {
                stage_alerts(&tx, &mut ids, &b.alerts, run_id).map_err(err)?;
            } else {
                links = insert_alerts(&tx, &mut ids, &b.alerts, run.map(|r| r.id)).map_err(err)?;
                digest::redigest_late(&tx, run_id, done_before, b.minutes()).map_err(err)?;
            }
            if run.is_some() {
                let minutes =
                    b.minutes().chain(b.dns.iter().map(|r| r.minute_us)).chain(b.icmp.iter().map(|r| r.minute_us));
                if let (Some(first), Some(last)) = (minutes.clone().min(), minutes.max()) {
                    tx.prepare_cached(
                        "UPDATE runs SET first_minute = min(ifnull(first_minute, ?2), ?2),
                           last_minute = max(ifnull(last_minute, ?3), ?3) WHERE id = ?1",
                    )
                    .and_then(|mut s| s.execute(params![run_id, first, last]))
                    .map_err(err)?;
                }
            }
        }
        tx.commit().map_err(err)?;
        Ok(links)
    }

    /// When and from where a capture with one of these digests (`blake3:<hex>`, `sha256:<hex>`)
    /// was replayed before.
    pub fn capture_seen(&self, digests: &[&str]) -> Result<Option<(String, i64)>, StoreError> {
        runs::capture_seen(&self.conn, digests.iter().copied()).map_err(|e| self.err(e))
    }

    /// Whether a capture of exactly this many bytes was replayed before (only then can a new
    /// file have the same content, so only then must it be hashed before it is replayed), and
    /// if so whether one of them is known by its SHA-256 only (replayed before version 11).
    pub fn capture_size_seen(&self, size: u64) -> Result<Option<bool>, StoreError> {
        self.conn
            .query_row(
                "SELECT max(digest LIKE 'sha256:%') FROM captures WHERE size = ?1 HAVING count(*) > 0",
                [size as i64],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Whether any capture is known by its SHA-256 only: a pipe's size is unknown before it is
    /// read, so it must then be hashed both ways.
    pub fn sha256_captures(&self) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT 1 FROM captures WHERE digest LIKE 'sha256:%' LIMIT 1", [], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .map_err(|e| self.err(e))
    }
}

/// What the writer commits in one transaction.
#[derive(Debug, Default)]
pub struct Batch {
    pub rows: Vec<EgressRow>,
    pub alerts: Vec<Alert>,
    pub dns: Vec<DnsRow>,
    pub reads: Vec<FileRead>,
    pub programs: Vec<ProgramRow>,
    pub recredits: Vec<Recredit>,
    pub icmp: Vec<IcmpRow>,
    /// Every principal of the rows and alerts above, in the order they were added, with its
    /// gid: the last gid seen wins.
    principals: Vec<(Principal, Option<u32>)>,
}

impl Batch {
    pub fn add_rows(&mut self, mut rows: Vec<EgressRow>) {
        self.principals.extend(rows.iter().map(|r| (r.principal, r.gid)));
        self.rows.append(&mut rows);
    }

    pub fn add_dns(&mut self, mut rows: Vec<DnsRow>) {
        self.principals.extend(rows.iter().map(|r| (r.principal, r.gid)));
        self.dns.append(&mut rows);
    }

    pub fn add_programs(&mut self, mut rows: Vec<ProgramRow>) {
        self.principals.extend(rows.iter().map(|r| (r.principal, None)));
        self.programs.append(&mut rows);
    }

    pub fn add_icmp(&mut self, mut rows: Vec<IcmpRow>) {
        self.principals.extend(rows.iter().map(|r| (r.principal, None)));
        self.icmp.append(&mut rows);
    }

    pub fn add_recredits(&mut self, mut moves: Vec<Recredit>) {
        for m in &moves {
            self.principals.push((m.from, None));
            self.principals.extend(m.rows.iter().map(|r| (r.principal, r.gid)));
        }
        self.recredits.append(&mut moves);
    }

    /// The minutes of the egress rows, moved ones included.
    fn minutes(&self) -> impl Iterator<Item = i64> + Clone + '_ {
        self.rows.iter().chain(self.recredits.iter().flat_map(|m| &m.rows)).map(|r| r.minute_us)
    }

    pub fn add_alert(&mut self, alert: Alert) {
        self.principals.push((alert.principal, None));
        self.alerts.push(alert);
    }

    pub fn add_read(&mut self, read: FileRead) {
        self.reads.push(read);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
            && self.alerts.is_empty()
            && self.dns.is_empty()
            && self.reads.is_empty()
            && self.programs.is_empty()
            && self.recredits.is_empty()
            && self.icmp.is_empty()
    }

    pub fn clear(&mut self) {
        self.rows.clear();
        self.alerts.clear();
        self.dns.clear();
        self.reads.clear();
        self.programs.clear();
        self.recredits.clear();
        self.icmp.clear();
        self.principals.clear();
    }
}

/// Egress rows; rows of the same key and run add up.
fn write_egress(
    tx: &Transaction<'_>,
    ids: &mut PrincipalIds<'_, '_>,
    rows: &[EgressRow],
    run_id: i64,
    written: Option<&mut digest::Written>,
) -> rusqlite::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut one = tx.prepare_cached(&egress_upsert(1))?;
    let mut many = tx.prepare_cached(&egress_upsert(ROWS_PER_INSERT))?;
    // A batch is written in chunks of at most SORT_CHUNK rows, so the sort keys of a flood's
    // batch stay small (a minute split across chunks is digested by reading it back).
    let mut written = written;
    for rows in rows.chunks(SORT_CHUNK) {
        // The rows in key order (the destination as the stored text), so inserts append at the
        // end of the table instead of splitting pages in its middle. (Principals have their ids and
        // gids already, in arrival order: `None` only looks the id up.)
        let mut keyed = Vec::with_capacity(rows.len());
        for (i, row) in (0..).zip(rows) {
            keyed.push(RowOrder::of(ids.get(row.principal, None)?, row, i));
        }
        keyed.sort_unstable();
        if let Some(written) = written.as_deref_mut() {
            written.begin();
            let mut host = String::new();
            for (i, key) in keyed.iter().enumerate() {
                let r = &rows[key.row as usize];
                host.clear();
                if let Some(h) = r.principal.host() {
                    let _ = std::fmt::Write::write_fmt(&mut host, format_args!("{h}"));
                }
                let merged = i > 0 && keyed[i - 1].same_key(key);
                written.row(
                    r.minute_us,
                    merged,
                    &[
                        r.principal.uid().map_or(ValueRef::Null, |u| ValueRef::Integer(i64::from(u))),
                        if host.is_empty() { ValueRef::Null } else { ValueRef::Text(host.as_bytes()) },
                        ValueRef::Integer(i64::from(r.dst.proto)),
                        ValueRef::Text(key.dst()),
                        ValueRef::Integer(i64::from(r.dst.port)),
                        ValueRef::Integer(r.packets as i64),
                        ValueRef::Integer(r.bytes as i64),
                        ValueRef::Integer(r.first_us),
                        ValueRef::Integer(r.last_us),
                    ],
                );
            }
        }
        // Many rows to a statement: one cursor for them all, so SQLite finds each row's place
        // from the one before (they come in key order) instead of from the root.
        let mut groups = keyed.chunks_exact(ROWS_PER_INSERT);
        for group in &mut groups {
            let mut values = Vec::with_capacity(ROWS_PER_INSERT * EGRESS_COLUMNS);
            for key in group {
                values.extend(egress_values(key, &rows[key.row as usize], run_id));
            }
            many.execute(rusqlite::params_from_iter(values))?;
        }
        for key in groups.remainder() {
            one.execute(rusqlite::params_from_iter(egress_values(key, &rows[key.row as usize], run_id)))?;
        }
    }
    Ok(())
}

/// Egress rows inserted by one statement.
const ROWS_PER_INSERT: usize = 64;
const EGRESS_COLUMNS: usize = 12;

/// The statement that adds `n` egress rows (or to the stored rows of their keys).
fn egress_upsert(n: usize) -> String {
    let row = format!("({})", ["?"; EGRESS_COLUMNS].join(", "));
    format!(
        "INSERT INTO egress (principal_id, minute, proto, dst, dport, packets, bytes, first_seen, last_seen, run_id,
           direction, dst_name)
         VALUES {}
         ON CONFLICT DO UPDATE SET packets = packets + excluded.packets, bytes = bytes + excluded.bytes,
           first_seen = min(first_seen, excluded.first_seen), last_seen = max(last_seen, excluded.last_seen),
           direction = max(direction, excluded.direction), dst_name = coalesce(excluded.dst_name, dst_name)",
        vec![row; n].join(", ")
    )
}

/// One egress row's values, in [`egress_upsert`]'s column order.
fn egress_values<'a>(key: &'a RowOrder, row: &'a EgressRow, run_id: i64) -> [ToSqlOutput<'a>; EGRESS_COLUMNS] {
    [
        ValueRef::Integer(key.pid),
        ValueRef::Integer(row.minute_us),
        ValueRef::Integer(i64::from(row.dst.proto)),
        ValueRef::Text(key.dst()),
        ValueRef::Integer(i64::from(row.dst.port)),
        ValueRef::Integer(row.packets as i64),
        ValueRef::Integer(row.bytes as i64),
        ValueRef::Integer(row.first_us),
        ValueRef::Integer(row.last_us),
        ValueRef::Integer(run_id),
        ValueRef::Integer(row.direction.code()),
        row.dst_name.as_deref().map_or(ValueRef::Null, |n| ValueRef::Text(n.as_bytes())),
    ]
    .map(ToSqlOutput::Borrowed)
}

/// Egress rows sorted and written at a time (4 MiB of [`RowOrder`]).
const SORT_CHUNK: usize = 1 << 16;

/// An egress row's primary key in the order SQLite keeps it: the destination as its text,
/// zero-padded, which orders as SQLite compares text (bytewise); an array comparison is far
/// cheaper in a sort than slicing strings. 64 bytes, the row's index included.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct RowOrder {
    minute: i64,
    pid: i64,
    proto: u8,
    /// Room for any address's text (at most 39 bytes as Rust writes them).
    dst: [u8; 40],
    port: u16,
    len: u8,
    /// Its place in the batch (a batch is far below 4 G rows).
    row: u32,
}

impl RowOrder {
    fn of(pid: i64, row: &EgressRow, i: u32) -> RowOrder {
        let mut dst = [0u8; 40];
        let len = match row.dst.addr {
            IpAddr::V4(v4) => ipv4_text(v4, &mut dst),
            IpAddr::V6(v6) => {
                let mut rest = &mut dst[..];
                let _ = std::io::Write::write_fmt(&mut rest, format_args!("{v6}"));
                40 - rest.len()
            }
        };
        RowOrder { minute: row.minute_us, pid, proto: row.dst.proto, dst, port: row.dst.port, len: len as u8, row: i }
    }

    fn dst(&self) -> &[u8] {
        &self.dst[..usize::from(self.len)]
    }

    /// The table's key: rows that share it are stored as one.
    fn same_key(&self, other: &RowOrder) -> bool {
        (self.minute, self.pid, self.proto, self.dst, self.port)
            == (other.minute, other.pid, other.proto, other.dst, other.port)
    }
}

/// Writes `a` as `Ipv4Addr`'s `Display` does (`10.0.0.1`) at the start of `out`; returns the
/// length. Formatting through `fmt` was a tenth of the writer's time on a flow-heavy replay.
fn ipv4_text(a: Ipv4Addr, out: &mut [u8; 40]) -> usize {
    let mut n = 0;
    for (i, octet) in a.octets().into_iter().enumerate() {
        if i > 0 {
            out[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            out[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            out[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        out[n] = b'0' + octet % 10;
        n += 1;
    }
    n
}

/// DNS aggregates and their sample names; rows for the same (minute, principal, domain) and
/// run add up.
fn write_dns(
    tx: &Transaction<'_>,
    ids: &mut PrincipalIds<'_, '_>,
    rows: &[DnsRow],
    run_id: i64,
) -> rusqlite::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut upsert = tx.prepare_cached(
        "INSERT INTO dns (minute, principal_id, domain, queries, unique_names, name_bytes, suspicious, flags, run_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT DO UPDATE SET queries = queries + excluded.queries,
           unique_names = unique_names + excluded.unique_names, name_bytes = name_bytes + excluded.name_bytes,
           suspicious = suspicious + excluded.suspicious, flags = flags | excluded.flags",
    )?;
    let mut sample = tx.prepare_cached(
        "INSERT OR IGNORE INTO dns_samples (principal_id, domain, name, minute, run_id) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for row in rows {
        let pid = ids.get(row.principal, None)?;
        upsert.execute(params![
            row.minute_us,
            pid,
            row.domain,
            row.queries,
            row.unique,
            row.name_bytes as i64,
            row.suspicious,
            row.flags,
            run_id
        ])?;
        for name in &row.samples {
            sample.execute(params![pid, row.domain, name, row.minute_us, run_id])?;
        }
    }
    Ok(())
}

/// Alerts into the trail, each linked to the one before; returns their links.
fn insert_alerts(
    tx: &Transaction<'_>,
    ids: &mut PrincipalIds<'_, '_>,
    alerts: &[Alert],
    run_id: Option<i64>,
) -> rusqlite::Result<Vec<crate::trail::Link>> {
    if alerts.is_empty() {
        return Ok(Vec::new());
    }
    let mut at = trail::head(tx)?;
    let mut links = Vec::with_capacity(alerts.len());
    for a in alerts {
        let pid = ids.get(a.principal, None)?;
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
        trail::insert_alert(tx, &mut at, &row)?;
        links.push(at.clone());
    }
    Ok(links)
}

/// A replay's alerts, held back from the trail until the replay commits.
fn stage_alerts(
    tx: &Transaction<'_>,
    ids: &mut PrincipalIds<'_, '_>,
    alerts: &[Alert],
    run_id: i64,
) -> rusqlite::Result<()> {
    for a in alerts {
        let pid = ids.get(a.principal, None)?;
        tx.prepare_cached(
            "INSERT INTO alerts_pending (run_id, ts, kind, severity, principal_id, dst, bytes, summary, details)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            run_id,
            a.ts_us,
            a.kind.as_str(),
            a.severity.as_str(),
            pid,
            a.dst,
            a.bytes as i64,
            a.summary,
            a.details.to_string()
        ])?;
    }
    Ok(())
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

/// Keeps the `-wal` and `-shm` files when the last connection closes. SQLite makes them with
/// the database's mode (0640), but only whoever may write to the directory can make them:
/// kept, they let the database's group read reports (read-only, through the kept files) when
/// no writer is running. Without them a read-only open fails ("attempt to write a readonly
/// database").
fn keep_wal_files(conn: &Connection) -> rusqlite::Result<()> {
    let mut keep = 1;
    conn.file_control(Some(rusqlite::MAIN_DB), rusqlite::FileControl::PersistWal(&mut keep))
}

/// Waiting this long for another process's lock is worth a message; so is every further
/// [`LOCK_REMINDER`].
const LOCK_NOTE: Duration = Duration::from_secs(5);
const LOCK_REMINDER: Duration = Duration::from_secs(30);

/// The busy handler of every connection: another process (a replay, the daemon, a migration)
/// holds the lock this one needs, so wait for it as long as it takes, saying so after
/// [`LOCK_NOTE`]. A timeout would make a writer fail part-way under load ("database is
/// locked"); every write is one short transaction, so a turn always comes. What waits is the
/// writer thread (or a report), never the packet thread: the daemon's packet thread only
/// waits when the writer's queue is full, and counts it.
fn lock_waiter(path: PathBuf) -> impl FnMut(i32) -> bool + Send + 'static {
    let mut since = Instant::now();
    let mut note = LOCK_NOTE;
    move |attempt| {
        if attempt == 0 {
            since = Instant::now();
            note = LOCK_NOTE;
        }
        let waited = since.elapsed();
        if waited >= note {
            tracing::warn!(
                "waiting for database {}: another process has held its lock for {} s; exfilmon waits its turn \
                 (a long-running transaction elsewhere, e.g. an open sqlite3 shell, holds it)",
                path.display(),
                waited.as_secs()
            );
            note += LOCK_REMINDER;
        }
        // 1, 2, 4 ... 32 ms: quick while a batch commits, gentle after.
        std::thread::sleep(Duration::from_millis(1 << attempt.clamp(0, 5)));
        true
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_text_is_what_display_writes() {
        let mut out = [0u8; 40];
        for a in [0u32, 1, 9, 10, 99, 100, 255, 0x0a00_0001, 0xc0a8_0a64, 0x7f00_0001, u32::MAX, 0x0102_0304] {
            let a = Ipv4Addr::from(a);
            let n = ipv4_text(a, &mut out);
            assert_eq!(std::str::from_utf8(&out[..n]).unwrap(), a.to_string());
        }
        for i in 0..=255u8 {
            let a = Ipv4Addr::new(i, i.wrapping_mul(7), 255 - i, i / 3);
            let n = ipv4_text(a, &mut out);
            assert_eq!(std::str::from_utf8(&out[..n]).unwrap(), a.to_string());
        }
    }
}
