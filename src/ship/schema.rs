//! The fleet store's schema: numbered files in `migrations/postgres/`, applied in order, each
//! in its own transaction, under an advisory lock so that hosts connecting at once take turns.
//! `exfilmon_schema` holds the versions applied. Released files are never edited.

use postgres::Client;

/// Entry N brings the central database to version N + 1.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_fleet.sql"),
    include_str!("../../migrations/postgres/0002_file_reads.sql"),
    include_str!("../../migrations/postgres/0003_dns_samples.sql"),
    include_str!("../../migrations/postgres/0004_egress_programs.sql"),
];

/// The advisory lock key of schema changes (migrations, new day partitions): "exfi".
pub const LOCK: i64 = 0x6578_6669;

/// Tables a round stages its rows in (this session's, gone with the connection).
const STAGED: &[&str] =
    &["egress", "dns", "alerts", "events", "digests", "checkpoints", "file_reads", "dns_samples", "egress_programs"];

/// Brings the schema up to date, and makes this session's staging tables.
pub fn migrate(client: &mut Client) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS exfilmon_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")?;
    let applied: i32 = tx.query_one("SELECT coalesce(max(version), 0) FROM exfilmon_schema", &[])?.get(0);
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(usize::try_from(applied).unwrap_or(0)) {
        tx.batch_execute(migration)?;
        let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
        tx.execute("INSERT INTO exfilmon_schema (version) VALUES ($1)", &[&version])?;
    }
    tx.commit()?;
    for t in STAGED {
        client.batch_execute(&format!("CREATE TEMP TABLE IF NOT EXISTS stage_{t} (LIKE {t})"))?;
    }
    Ok(())
}
