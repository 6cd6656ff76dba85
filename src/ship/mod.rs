//! The fleet store (issue 12): every host ships its rows into one PostgreSQL database, and
//! `exfilmon report --db postgresql://...` reads them there.
//!
//! The local SQLite database is the spool. A round ([`Shipper::round`]) sends whatever lies
//! past the target's cursor (`store::ship`), batch by batch, and moves the cursor only once
//! the server committed a batch: an outage of hours loses nothing (the rows wait here) and
//! blocks nothing (the monitor writes on; the next round catches up). Delivery is at least
//! once; the server's keys make the effect exactly once:
//!
//! - alerts, events and digests by observer and trail position (`seq`), checkpoints by
//!   observer and id: shipped again, nothing changes (`ON CONFLICT DO NOTHING`);
//! - egress by observer, minute, principal, destination and run (the local key), DNS by
//!   observer, minute, principal, domain and run, egress by program as egress and the
//!   program's identity: a row shipped again is overwritten with
//!   itself (`DO UPDATE`), so a minute the live monitor digested again (a late row) arrives
//!   with its final values.
//!
//! What is shipped follows the trail: a batch is a range of trail positions, and each digest
//! in it (one run's egress rows of one minute, chained when the minute is final: at a
//! replay's commit, or two minutes after it for the live monitor) brings that minute's
//! egress rows with their split by program, and that run's DNS rows, their sample names and
//! file reads up to that minute.
//! So only what counts locally is shipped (a replay not committed has no digests), and a
//! minute goes out once it is final. Limits: rows written before digests existed (schema 6)
//! are not shipped, nor the DNS rows, samples and file reads of a run's minutes after its
//! last egress minute.
//!
//! Rows travel by `COPY` into temporary tables, then one `INSERT ... SELECT ... ON CONFLICT`
//! per table in one transaction. Tables are partitioned by day; a shipper makes the day
//! partitions its batch needs first (under an advisory lock, so hosts do not race), and
//! `retain` drops whole partitions. User names are resolved here, on the observer.
//!
//! The password comes from `password_file` or `$PGPASSWORD`, never from the URL (the
//! config refuses one there), so the target's name, its errors and `report health` cannot
//! carry it. TLS goes through rustls with the system's CA roots: `sslmode=require` insists
//! on it and checks the server's certificate (stricter than libpq, which does not check).

pub mod schema;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use postgres::config::SslMode;
use postgres::{Client, NoTls};
use rusqlite::types::ValueRef;

use crate::config::Config;
use crate::principal::UserNames;
use crate::sink::SinkKind;
use crate::store::{Store, StoreError};
use crate::units::wall_clock_us;

/// Trail positions per batch: one server transaction each.
const BATCH: i64 = 5_000;

const DAY_US: i64 = 86_400_000_000;

/// Days get their own partition from this many years back (older rows: the default one).
const PARTITION_YEARS: i64 = 10;

/// Partitions one batch makes at most (a capture whose times span years makes no thousands).
const NEW_PARTITIONS: usize = 64;

/// A postgres sink, as configured.
#[derive(Debug, Clone)]
pub struct Target {
    /// The sink's name (by default `postgres:URL`): the cursor's key and what reports show.
    pub name: String,
    url: String,
    password_file: Option<PathBuf>,
    retain: Option<Duration>,
    timeout: Duration,
}

impl Target {
    /// The postgres sinks of `config`.
    pub fn all(config: &Config) -> Vec<Target> {
        config
            .sink
            .iter()
            .filter_map(|s| match &s.kind {
                SinkKind::Postgres { url, password_file, retain } => Some(Target {
                    name: s.name.clone(),
                    url: url.clone(),
                    password_file: password_file.clone(),
                    retain: *retain,
                    timeout: s.timeout,
                }),
                _ => None,
            })
            .collect()
    }

    pub fn url_is(&self, url: &str) -> bool {
        self.url == url
    }

    /// A target for `url` alone (reports), its password as for a sink.
    pub fn url(url: &str) -> Target {
        Target {
            name: format!("postgres:{url}"),
            url: url.to_owned(),
            password_file: None,
            retain: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// Connects and brings the schema up to date, for shipping.
    pub fn connect(&self) -> Result<Client, ShipError> {
        let mut client = self.open()?;
        schema::migrate(&mut client).map_err(|e| self.error(pg_text(&e)))?;
        Ok(client)
    }

    fn error(&self, message: String) -> ShipError {
        ShipError::Server { target: self.name.clone(), message }
    }

    /// Connects (password from the file, else `$PGPASSWORD`), for reading.
    pub fn open(&self) -> Result<Client, ShipError> {
        let err = |message: String| self.error(message);
        let mut config: postgres::Config = self.url.parse().map_err(|e| err(format!("url: {e}")))?;
        if config.get_password().is_some() {
            return Err(err("the url must not hold the password: use password_file or $PGPASSWORD".into()));
        }
        let password = match &self.password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| err(format!("cannot read password_file {}: {e}", path.display())))?
                    .trim_end_matches(['\n', '\r'])
                    .to_owned(),
            ),
            None => std::env::var("PGPASSWORD").ok(),
        };
        if let Some(p) = password {
            config.password(p);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(self.timeout);
        }
        config.application_name("exfilmon");
        match config.get_ssl_mode() {
            SslMode::Disable => config.connect(NoTls),
            _ => config.connect(tls().map_err(err)?),
        }
        .map_err(|e| err(pg_text(&e)))
    }
}

/// rustls with ring and the system's CA roots (ca-certificates; add a private CA there).
fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// A client error with its cause (the server's message, or why the connection failed).
pub fn pg_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                let _ = write!(text, ": {s}");
                source = s.source();
            }
            text
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{target}: {message}")]
    Server { target: String, message: String },
}

/// What one round sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Shipped {
    /// Trail positions and checkpoints the cursor moved over.
    pub trail: i64,
    pub checkpoints: i64,
    /// Rows sent per table (egress and DNS rows of digested minutes included).
    pub rows: u64,
    pub batches: u64,
    /// Left past the cursor (0 after a round that reached the end).
    pub backlog: i64,
}

/// One table's rows: read here, staged by `COPY`, merged on the key.
struct Part {
    table: &'static str,
    /// What the local query starts with besides the columns.
    who: Who,
    /// The central columns after those, in the local query's order.
    columns: &'static str,
    key: &'static str,
    /// The time column partitions go by.
    time: &'static str,
    /// Columns a row shipped again overwrites; empty: it is left alone.
    update: &'static str,
    /// Rows of the batch `(?1, ?2]`: trail positions, or checkpoint ids.
    local: &'static str,
    /// Of `columns`, those whose local value is a uid that ships as its name on this host.
    named: &'static [&'static str],
}

/// The columns a row's sender becomes centrally.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    /// Nothing: the query gives the columns alone.
    No,
    /// The principal's uid, gid and host: the central principal, uid, gid, host and user_name.
    Principal,
    /// A uid (a file's reader): its name as `user_name`.
    Reader,
}

impl Who {
    /// The central columns in front of a part's own.
    fn columns(self) -> &'static str {
        match self {
            Who::No => "",
            Who::Principal => "principal, uid, gid, host, user_name, ",
            Who::Reader => "user_name, ",
        }
    }
}

/// The local query of rows that go by minute without a digest of their own (DNS rows, their
/// samples, file reads): `$columns` of `$from` (the table as `x`) of each run's minutes up to
/// the newest it digested in the batch `(?1, ?2]`, after the newest it digested before, and
/// of any minute digested again.
macro_rules! by_minute {
    ($columns:literal, $from:literal, $minute:literal) => {
        concat!(
            "WITH now AS (SELECT run_id, max(minute) AS upto FROM digests WHERE seq > ?1 AND seq <= ?2 GROUP BY run_id),
                  before AS (SELECT run_id, max(minute) AS done FROM digests WHERE seq <= ?1 GROUP BY run_id)
             SELECT ", $columns, " FROM ", $from, "
             JOIN now ON now.run_id = x.run_id LEFT JOIN before ON before.run_id = x.run_id
             WHERE ", $minute, " <= now.upto AND (before.done IS NULL OR ", $minute, " > before.done
                   OR (x.run_id, ", $minute, ") IN (SELECT run_id, minute FROM digests WHERE seq > ?1 AND seq <= ?2))"
        )
    };
}

/// Tables that follow the trail.
const TRAIL: &[Part] = &[
    Part {
        table: "alerts",
        who: Who::Principal,
        columns: "seq, id, ts, kind, severity, dst, bytes, summary, details, run_id, hash",
        key: "observer, seq, ts",
        time: "ts",
        update: "",
        named: &[],
        local: "SELECT p.uid, p.gid, p.host, a.seq, a.id, a.ts, a.kind, a.severity, a.dst, a.bytes, a.summary,
                       a.details, a.run_id, a.hash
                FROM alerts a LEFT JOIN principals p ON p.id = a.principal_id WHERE a.seq > ?1 AND a.seq <= ?2",
    },
    Part {
        table: "events",
        who: Who::No,
        columns: "seq, ts, kind, severity, run_id, summary, details, hash",
        key: "observer, seq, ts",
        time: "ts",
        update: "",
        named: &[],
        local:
            "SELECT seq, ts, kind, severity, run_id, summary, details, hash FROM events WHERE seq > ?1 AND seq <= ?2",
    },
    Part {
        table: "digests",
        who: Who::No,
        columns: "seq, ts, run_id, minute, rows, packets, bytes, digest, hash",
        key: "observer, seq, ts",
        time: "ts",
        update: "",
        named: &[],
        local: "SELECT seq, ts, run_id, minute, rows, packets, bytes, digest, hash FROM digests
                WHERE seq > ?1 AND seq <= ?2",
    },
    Part {
        table: "egress",
        who: Who::Principal,
        columns: "minute, proto, dst, dport, packets, bytes, first_seen, last_seen, direction, dst_name, run_id",
        key: "observer, minute, principal, proto, dst, dport, run_id",
        time: "minute",
        update: "gid, user_name, packets, bytes, first_seen, last_seen, direction, dst_name",
        named: &[],
        local: "SELECT p.uid, p.gid, p.host, e.minute, e.proto, e.dst, e.dport, e.packets, e.bytes, e.first_seen,
                       e.last_seen, e.direction, e.dst_name, e.run_id
                FROM egress e JOIN principals p ON p.id = e.principal_id
                WHERE (e.run_id, e.minute) IN (SELECT run_id, minute FROM digests WHERE seq > ?1 AND seq <= ?2)",
    },
    // DNS rows, their samples and file reads go by minute (`by_minute!`); a DNS row shipped
    // again overwrites itself, a sample or a read is left alone.
    Part {
        table: "dns",
        who: Who::Principal,
        columns: "minute, domain, queries, unique_names, name_bytes, suspicious, flags, run_id",
        key: "observer, minute, principal, domain, run_id",
        time: "minute",
        update: "gid, user_name, queries, unique_names, name_bytes, suspicious, flags",
        named: &[],
        local: by_minute!(
            "p.uid, p.gid, p.host, x.minute, x.domain, x.queries, x.unique_names, x.name_bytes, x.suspicious, x.flags,
             x.run_id",
            "dns x JOIN principals p ON p.id = x.principal_id",
            "x.minute"
        ),
    },
    Part {
        table: "dns_samples",
        who: Who::Principal,
        columns: "minute, domain, name, run_id",
        key: "observer, minute, principal, domain, name, run_id",
        time: "minute",
        update: "",
        named: &[],
        local: by_minute!(
            "p.uid, p.gid, p.host, x.minute, x.domain, x.name, x.run_id",
            "dns_samples x JOIN principals p ON p.id = x.principal_id",
            "x.minute"
        ),
    },
    Part {
        table: "file_reads",
        who: Who::Reader,
        columns: "ts, serial, path, uid, auid, fsuid, \"user\", pid, exe, comm, proctitle, size, run_id",
        key: "observer, ts, serial, path, run_id",
        time: "ts",
        update: "",
        named: &[],
        local: by_minute!(
            "coalesce(x.fsuid, x.uid), x.ts, x.serial, x.path, x.uid, x.auid, x.fsuid, x.user, x.pid, x.exe, x.comm,
             x.proctitle, x.size, x.run_id",
            "file_reads x",
            "x.ts / 60000000 * 60000000"
        ),
    },
    // Egress split by program goes with its minute's egress rows; `program` is the identity
    // the central key holds for the program's columns, which may be null.
    Part {
        table: "egress_programs",
        who: Who::Principal,
        columns: "minute, proto, dst, dport, program, exe, comm, program_uid, login_uid, unknown, program_user,
                  login_user, packets, bytes, run_id",
        key: "observer, minute, principal, proto, dst, dport, program, run_id",
        time: "minute",
        update: "gid, user_name, program_user, login_user, packets, bytes",
        named: &["program_user", "login_user"],
        local: "SELECT p.uid, p.gid, p.host, x.minute, x.proto, x.dst, x.dport,
                       json_array(pr.exe, pr.comm, pr.uid, pr.login_uid, pr.unknown), pr.exe, pr.comm, pr.uid,
                       pr.login_uid, pr.unknown, pr.uid, pr.login_uid, x.packets, x.bytes, x.run_id
                FROM egress_programs x JOIN principals p ON p.id = x.principal_id
                JOIN programs pr ON pr.id = x.program_id
                WHERE (x.run_id, x.minute) IN (SELECT run_id, minute FROM digests WHERE seq > ?1 AND seq <= ?2)",
    },
];

/// Checkpoints, by their own id.
const CHECKPOINTS: Part = Part {
    table: "checkpoints",
    who: Who::No,
    columns: "id, ts, rows, head, key_id, signature",
    key: "observer, id, ts",
    time: "ts",
    update: "",
    named: &[],
    local: "SELECT id, ts, rows, head, key_id, signature FROM checkpoints WHERE id > ?1 AND id <= ?2",
};

/// Ships one database to one target, keeping its connection between rounds.
pub struct Shipper {
    target: Target,
    observer: String,
    client: Option<Client>,
    names: UserNames,
    /// Day partitions known to exist (made or found) on the server.
    partitions: HashSet<String>,
    /// The last round failed (the live monitor logs an outage once).
    failing: bool,
}

impl Shipper {
    pub fn new(target: Target, observer: String) -> Shipper {
        Shipper {
            target,
            observer,
            client: None,
            names: UserNames::default(),
            partitions: HashSet::new(),
            failing: false,
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Sends everything past the cursor and records the outcome (`report health`): the
    /// error of a round that failed, with the connection dropped for the next round.
    pub fn round(&mut self, store: &Store) -> Result<Shipped, ShipError> {
        let result = self.push(store);
        if let Err(ShipError::Server { message, .. }) = &result {
            store.ship_failed(&self.target.name, message, wall_clock_us())?;
        }
        result
    }

    /// A round of the live monitor's: an outage is logged when it starts and when it ends, not
    /// every round of it; `then` says what becomes of the rows meanwhile.
    fn logged_round(&mut self, store: &Store, then: &str) {
        match self.round(store) {
            Ok(_) if self.failing => {
                self.failing = false;
                tracing::info!("{}: shipping again", self.target.name);
            }
            Ok(_) => {}
            Err(e) if self.failing => tracing::debug!("{e}"),
            Err(e) => {
                self.failing = true;
                tracing::warn!("{e} (the rows wait in the local database; {then})");
            }
        }
    }

    /// Connects if need be, ships, and keeps the connection for the next round if it worked.
    fn push(&mut self, store: &Store) -> Result<Shipped, ShipError> {
        let mut client = match self.client.take().filter(|c| !c.is_closed()) {
            Some(c) => c,
            None => {
                self.partitions.clear();
                self.target.connect()?
            }
        };
        let shipped = self.push_with(&mut client, store)?;
        self.client = Some(client);
        Ok(shipped)
    }

    fn push_with(&mut self, client: &mut Client, store: &Store) -> Result<Shipped, ShipError> {
        let (mut seq, mut checkpoint) = store.ship_cursor(&self.target.name)?;
        let end = store.trail_end()?;
        let last_checkpoint: i64 = store
            .conn()
            .query_row("SELECT coalesce(max(id), 0) FROM checkpoints", [], |r| r.get(0))
            .map_err(|e| sql(store, e))?;
        let mut shipped = Shipped::default();
        // A round with nothing new still says it reached the server.
        store.set_ship_cursor(&self.target.name, seq, checkpoint, wall_clock_us())?;
        while seq < end {
            let through = (seq + BATCH).min(end);
            shipped.rows += self.batch(client, store, TRAIL, seq, through, through)?;
            shipped.trail += through - seq;
            shipped.batches += 1;
            seq = through;
            store.set_ship_cursor(&self.target.name, seq, checkpoint, wall_clock_us())?;
        }
        if checkpoint < last_checkpoint {
            shipped.rows +=
                self.batch(client, store, std::slice::from_ref(&CHECKPOINTS), checkpoint, last_checkpoint, seq)?;
            shipped.checkpoints = last_checkpoint - checkpoint;
            shipped.batches += 1;
            checkpoint = last_checkpoint;
            store.set_ship_cursor(&self.target.name, seq, checkpoint, wall_clock_us())?;
        }
        self.retain(client)?;
        shipped.backlog = store.ship_backlog(seq, checkpoint)?;
        Ok(shipped)
    }

    /// Ships the rows of `parts` in `(after, through]`: staged, partitions made, merged in
    /// one transaction with the observer's trail position `seq`. Returns the rows sent.
    fn batch(
        &mut self,
        client: &mut Client,
        store: &Store,
        parts: &[Part],
        after: i64,
        through: i64,
        seq: i64,
    ) -> Result<u64, ShipError> {
        let name = self.target.name.clone();
        let server = |e: postgres::Error| ShipError::Server { target: name.clone(), message: pg_text(&e) };
        let mut sent = 0;
        for part in parts {
            sent += self.stage(client, store, part, after, through)?;
        }
        self.make_partitions(client, parts).map_err(&server)?;
        let mut tx = client.transaction().map_err(&server)?;
        for part in parts {
            let columns = format!("observer, {}{}", part.who.columns(), part.columns);
            let on_conflict = if part.update.is_empty() {
                "DO NOTHING".to_owned()
            } else {
                let set: Vec<String> = part.update.split(", ").map(|c| format!("{c} = EXCLUDED.{c}")).collect();
                format!("DO UPDATE SET {}", set.join(", "))
            };
            tx.batch_execute(&format!(
                "INSERT INTO {t} ({columns}) SELECT {columns} FROM stage_{t} ON CONFLICT ({key}) {on_conflict};
                 TRUNCATE stage_{t}",
                t = part.table,
                key = part.key,
            ))
            .map_err(&server)?;
        }
        tx.execute(
            "INSERT INTO observers (observer, seq, shipped_at, version) VALUES ($1, $2, $3, $4)
             ON CONFLICT (observer) DO UPDATE SET seq = greatest(observers.seq, EXCLUDED.seq),
               shipped_at = EXCLUDED.shipped_at, version = EXCLUDED.version",
            &[&self.observer, &seq, &wall_clock_us(), &env!("CARGO_PKG_VERSION")],
        )
        .map_err(&server)?;
        tx.commit().map_err(&server)?;
        Ok(sent)
    }

    /// Copies `part`'s local rows of `(after, through]` into its staging table.
    fn stage(
        &mut self,
        client: &mut Client,
        store: &Store,
        part: &Part,
        after: i64,
        through: i64,
    ) -> Result<u64, ShipError> {
        let name = self.target.name.clone();
        let server = |e: postgres::Error| ShipError::Server { target: name.clone(), message: pg_text(&e) };
        let mut copy = client
            .copy_in(&format!(
                "COPY stage_{} (observer, {}{}) FROM STDIN (FORMAT csv)",
                part.table,
                part.who.columns(),
                part.columns
            ))
            .map_err(&server)?;
        let named: Vec<bool> = part.columns.split(',').map(|c| part.named.contains(&c.trim())).collect();
        let mut stmt = store.conn().prepare_cached(part.local).map_err(|e| sql(store, e))?;
        let mut rows = stmt.query([after, through]).map_err(|e| sql(store, e))?;
        let mut line = Vec::with_capacity(256);
        let mut sent = 0;
        let write_err = |e: std::io::Error| ShipError::Server { target: name.clone(), message: e.to_string() };
        while let Some(r) = rows.next().map_err(|e| sql(store, e))? {
            line.clear();
            csv_text(&mut line, Some(&self.observer));
            let mut first = 0;
            if part.who == Who::Reader {
                let uid: Option<i64> = r.get(0).map_err(|e| sql(store, e))?;
                line.push(b',');
                csv_text(&mut line, user_name(&mut self.names, uid).as_deref());
                first = 1;
            }
            if part.who == Who::Principal {
                let uid: Option<i64> = r.get(0).map_err(|e| sql(store, e))?;
                let host: Option<String> = r.get(2).map_err(|e| sql(store, e))?;
                let principal = match (uid, &host) {
                    (Some(u), _) => Some(format!("uid:{u}")),
                    (None, Some(h)) => Some(format!("host:{h}")),
                    (None, None) => None,
                };
                let user = user_name(&mut self.names, uid);
                line.push(b',');
                csv_text(&mut line, principal.as_deref());
                for i in 0..2 {
                    line.push(b',');
                    csv_value(&mut line, r.get_ref(i).map_err(|e| sql(store, e))?);
                }
                line.push(b',');
                csv_text(&mut line, host.as_deref());
                line.push(b',');
                csv_text(&mut line, user.as_deref());
                first = 3;
            }
            for (i, named) in (first..r.as_ref().column_count()).zip(named.iter().chain(std::iter::repeat(&false))) {
                line.push(b',');
                if *named {
                    let uid: Option<i64> = r.get(i).map_err(|e| sql(store, e))?;
                    csv_text(&mut line, user_name(&mut self.names, uid).as_deref());
                } else {
                    csv_value(&mut line, r.get_ref(i).map_err(|e| sql(store, e))?);
                }
            }
            line.push(b'\n');
            copy.write_all(&line).map_err(write_err)?;
            sent += 1;
        }
        copy.finish().map_err(&server)?;
        Ok(sent)
    }

    /// Makes the day partitions the staged rows need, each in its own short transaction under
    /// an advisory lock: two hosts making the same day's partition wait for each other.
    ///
    /// Packet times are whatever a capture says, so the days are bounded: only days from
    /// [`PARTITION_YEARS`] back to tomorrow get a partition, at most [`NEW_PARTITIONS`] per
    /// batch; rows of other days land in the table's default partition. A day whose rows are
    /// already there keeps them there (PostgreSQL refuses the new partition: fine).
    fn make_partitions(&mut self, client: &mut Client, parts: &[Part]) -> Result<(), postgres::Error> {
        let today = wall_clock_us().div_euclid(DAY_US);
        let oldest = today - PARTITION_YEARS * 366;
        let mut made = 0;
        for part in parts {
            let q = format!(
                "SELECT DISTINCT div({t}, {DAY_US})::bigint AS day FROM stage_{table}
                 WHERE {t} >= $1 AND {t} < $2 ORDER BY day DESC",
                t = part.time,
                table = part.table
            );
            for r in client.query(&q, &[&(oldest * DAY_US), &((today + 2) * DAY_US)])? {
                let day: i64 = r.get(0);
                let name = partition_name(part.table, day);
                if made >= NEW_PARTITIONS || self.partitions.contains(&name) {
                    continue;
                }
                let mut tx = client.transaction()?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&schema::LOCK])?;
                let created = tx.batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS \"{name}\" PARTITION OF {} FOR VALUES FROM ({}) TO ({})",
                    part.table,
                    day * DAY_US,
                    (day + 1) * DAY_US
                ));
                match created {
                    Ok(()) => tx.commit()?,
                    // The default partition holds rows of that day: they stay there.
                    Err(e) if e.code() == Some(&postgres::error::SqlState::CHECK_VIOLATION) => tx.rollback()?,
                    Err(e) => return Err(e),
                }
                self.partitions.insert(name);
                made += 1;
            }
        }
        Ok(())
    }

    /// Drops the day partitions wholly older than `retain`.
    fn retain(&mut self, client: &mut Client) -> Result<(), ShipError> {
        let Some(retain) = self.target.retain else { return Ok(()) };
        let name = self.target.name.clone();
        let server = |e: postgres::Error| ShipError::Server { target: name.clone(), message: pg_text(&e) };
        let cutoff_day = (wall_clock_us() - i64::try_from(retain.as_micros()).unwrap_or(i64::MAX)).div_euclid(DAY_US);
        let rows = client
            .query(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 JOIN pg_class p ON p.oid = i.inhparent
                 WHERE p.relname IN ('egress', 'dns', 'alerts', 'events', 'digests', 'checkpoints', 'file_reads',
                                    'dns_samples', 'egress_programs')",
                &[],
            )
            .map_err(&server)?;
        for r in rows {
            let relname: String = r.get(0);
            let Some(day) = partition_day(&relname) else { continue };
            // The partition holds day `day`: wholly past the cutoff when the next day starts
            // at or before it.
            if day < cutoff_day {
                client.batch_execute(&format!("DROP TABLE IF EXISTS \"{relname}\"")).map_err(&server)?;
                self.partitions.remove(&relname);
            }
        }
        Ok(())
    }
}

/// `TABLE_dDAYS`: the day as days since the epoch.
fn partition_name(table: &str, day: i64) -> String {
    format!("{table}_d{day}")
}

fn partition_day(name: &str) -> Option<i64> {
    name.rsplit_once("_d")?.1.parse().ok()
}

/// A stored uid's name on this host (the observer), if it has one.
fn user_name(names: &mut UserNames, uid: Option<i64>) -> Option<String> {
    uid.and_then(|u| u32::try_from(u).ok()).and_then(|u| names.get(u))
}

fn sql(store: &Store, e: rusqlite::Error) -> ShipError {
    ShipError::Store(StoreError::Sql { path: store.path().to_owned(), source: e })
}

/// A CSV field for `COPY ... (FORMAT csv)`: NULL is an empty unquoted field, text is always
/// quoted (so an empty string stays one). PostgreSQL text cannot hold NUL: escaped as \x00.
fn csv_text(out: &mut Vec<u8>, text: Option<&str>) {
    let Some(text) = text else { return };
    out.push(b'"');
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\"\""),
            '\0' => out.extend_from_slice(b"\\x00"),
            c => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

fn csv_value(out: &mut Vec<u8>, v: ValueRef<'_>) {
    match v {
        ValueRef::Null => {}
        ValueRef::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        ValueRef::Real(f) => {
            let _ = write!(out, "{f}");
        }
        ValueRef::Text(t) | ValueRef::Blob(t) => csv_text(out, Some(&String::from_utf8_lossy(t))),
    }
}

/// One round for every postgres sink of `config` over the database at `store`: what `replay`
/// and `exfilmon ship` do. A failure leaves the rows to the next round.
pub fn ship_all(config: &Config, store: &Store) -> Vec<(String, Result<Shipped, ShipError>)> {
    Target::all(config)
        .into_iter()
        .map(|t| {
            let name = t.name.clone();
            let result = Shipper::new(t, config.observer()).round(store);
            (name, result)
        })
        .collect()
}

/// The live monitor's shipping: a round every [`SHIP_EVERY`] on a thread with its own
/// connection to the database, and a last one when it stops.
pub struct Continuous {
    stop: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: std::thread::JoinHandle<()>,
}

/// How often the live monitor ships: a minute is digested (and so shipped) two minutes
/// after it ends, so this adds little to the delay.
pub const SHIP_EVERY: Duration = Duration::from_secs(10);

impl Continuous {
    /// `None` without postgres sinks (or when the thread cannot start: logged).
    pub fn start(db: &std::path::Path, config: &Config) -> Option<Continuous> {
        let targets = Target::all(config);
        if targets.is_empty() {
            return None;
        }
        let (db, observer) = (db.to_owned(), config.observer());
        let stop = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let flag = Arc::clone(&stop);
        let work = move || {
            let store = match Store::open(&db) {
                Ok(s) => s,
                Err(e) => return tracing::warn!("shipping off: {e}"),
            };
            let mut shippers: Vec<Shipper> = targets.into_iter().map(|t| Shipper::new(t, observer.clone())).collect();
            let (lock, wake) = &*flag;
            loop {
                for s in &mut shippers {
                    s.logged_round(&store, &format!("tried again every {} s", SHIP_EVERY.as_secs()));
                }
                let Ok(stopped) = lock.lock() else { return };
                let Ok((stopped, _)) = wake.wait_timeout_while(stopped, SHIP_EVERY, |s| !*s) else { return };
                if *stopped {
                    // The last round: what the run's end committed.
                    drop(stopped);
                    for s in &mut shippers {
                        s.logged_round(&store, "`exfilmon ship` sends them");
                    }
                    return;
                }
            }
        };
        match std::thread::Builder::new().name("exfilmon-ship".into()).spawn(work) {
            Ok(thread) => Some(Continuous { stop, thread }),
            Err(e) => {
                tracing::warn!("shipping off: cannot start its thread: {e}");
                None
            }
        }
    }

    /// Ships once more (after the run's end was written) and waits for that round.
    pub fn finish(self) {
        if let Ok(mut stopped) = self.stop.0.lock() {
            *stopped = true;
        }
        self.stop.1.notify_all();
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_keep_null_empty_quotes_and_nul_apart() {
        let mut out = Vec::new();
        csv_text(&mut out, None);
        out.push(b',');
        csv_text(&mut out, Some(""));
        out.push(b',');
        csv_text(&mut out, Some("a\"b\0,\nc"));
        out.push(b',');
        csv_value(&mut out, ValueRef::Integer(-5));
        assert_eq!(String::from_utf8(out).unwrap(), ",\"\",\"a\"\"b\\x00,\nc\",-5");
    }

    #[test]
    fn partition_names_round_trip_any_day() {
        for day in [0, 20_423, -3, i64::MAX / DAY_US] {
            assert_eq!(partition_day(&partition_name("egress", day)), Some(day));
        }
    }
}
