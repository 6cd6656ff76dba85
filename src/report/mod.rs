//! `exfilmon report`: what left the box, per user, destination and alert.
//!
//! Each report is a query whose rows stream to a [`Rows`] (written out as they are read, or
//! collected into a [`Table`] when few); rendering is shared. Tables show user
//! names for uids, as `aureport -i` does. Rows of replays that have not committed (the
//! `uncounted_runs` view, see `store::runs`) are left out: a replay counts whole or not at all.

pub mod chart;
pub mod dns;
pub mod events;
pub mod files;
pub mod health;
pub mod html;
mod programs;
pub mod select;
pub mod series;
pub mod stream;
pub mod table;
pub mod timeline;
pub mod when;
pub mod zone;

use rusqlite::{params, Row};
use serde_json::{json, Value};

use crate::decode::Direction;
use crate::principal::{endpoint, proto_name, UserNames};
use crate::store::{Store, StoreError};
use crate::units::wall_clock_us;
use stream::{Layout, Rows};
use table::{col, hidden, Cell, Table};

/// Which rows a report covers.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    pub uid: Option<u32>,
    /// Only egress of connections opened here, or only served (replies).
    pub direction: Option<Direction>,
    /// Only alerts with `after < id <= through` (`report alerts --follow`).
    pub alert_ids: Option<(i64, i64)>,
}

impl Filter {
    fn since(&self) -> i64 {
        self.since_us.unwrap_or(i64::MIN)
    }

    fn until(&self) -> i64 {
        self.until_us.unwrap_or(i64::MAX)
    }

    fn uid(&self) -> Option<i64> {
        self.uid.map(i64::from)
    }

    fn direction(&self) -> Option<i64> {
        self.direction.map(Direction::code)
    }
}

impl UserNames {
    fn cell(&mut self, uid: Option<i64>) -> Cell {
        Cell::opt_text(uid.and_then(|u| u32::try_from(u).ok()).and_then(|u| self.get(u)))
    }
}

/// Days `report users` averages for its baseline column.
const BASELINE_DAYS: i64 = 14;

/// The start of today (UTC), in microseconds.
fn today_start() -> i64 {
    const DAY_US: i64 = 86_400_000_000;
    wall_clock_us().div_euclid(DAY_US) * DAY_US
}

fn sql(store: &Store, e: rusqlite::Error) -> StoreError {
    StoreError::Sql { path: store.path().to_owned(), source: e }
}

/// Runs `query` with `params` and maps each row.
fn rows<P: rusqlite::Params>(
    store: &Store,
    query: &str,
    params: P,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<Vec<Cell>>,
) -> Result<Vec<Vec<Cell>>, StoreError> {
    select(store, query, params, map)
}

/// Runs `query` with `params` and maps each row to any value (for charts, which want numbers
/// rather than cells).
fn select<P: rusqlite::Params, T>(
    store: &Store,
    query: &str,
    params: P,
    mut map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = store.conn().prepare(query).map_err(|e| sql(store, e))?;
    let mapped = stmt.query_map(params, |r| map(r)).map_err(|e| sql(store, e))?;
    mapped.collect::<Result<_, _>>().map_err(|e| sql(store, e))
}

/// Runs `query` with `params` and hands each row, mapped, to `out` as it is read.
fn each_row<P: rusqlite::Params>(
    store: &Store,
    query: &str,
    params: P,
    out: &mut dyn Rows,
    mut map: impl FnMut(&Row<'_>) -> rusqlite::Result<Vec<Cell>>,
) -> Result<(), ReportError> {
    let mut stmt = store.conn().prepare(query).map_err(|e| sql(store, e))?;
    let mut rows = stmt.query(params).map_err(|e| sql(store, e))?;
    while let Some(r) = rows.next().map_err(|e| sql(store, e))? {
        out.row(map(r).map_err(|e| sql(store, e))?)?;
    }
    Ok(())
}

/// A report that failed: the database, or the output (a closed pipe, a full disk).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Output(#[from] std::io::Error),
}

/// `LIMIT` for SQL: none is -1.
fn limit(n: Option<usize>) -> i64 {
    n.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX))
}

pub const ALERTS: Layout = Layout {
    title: "Alerts",
    columns: &[
        col("ts"),
        col("kind"),
        col("severity"),
        hidden("uid"),
        col("user"),
        col("host"),
        col("dst"),
        col("bytes"),
        col("summary"),
        hidden("details"),
        // The process behind the flow (live), with its login user: details.process, in short.
        col("program"),
    ],
};

pub fn alerts(store: &Store, f: &Filter, names: &mut UserNames, out: &mut dyn Rows) -> Result<(), ReportError> {
    each_row(
        store,
        "SELECT a.ts, a.kind, a.severity, p.uid, p.host, a.dst, a.bytes, a.summary, a.details
         FROM alerts a LEFT JOIN principals p ON p.id = a.principal_id
         WHERE a.ts >= ?1 AND a.ts < ?2 AND (?3 IS NULL OR p.uid = ?3) AND a.id > ?4 AND a.id <= ?5
         ORDER BY a.ts, a.id",
        params![
            f.since(),
            f.until(),
            f.uid(),
            f.alert_ids.map_or(i64::MIN, |r| r.0),
            f.alert_ids.map_or(i64::MAX, |r| r.1)
        ],
        out,
        |r| {
            let uid: Option<i64> = r.get(3)?;
            let details: Value = serde_json::from_str(&r.get::<_, String>(8)?).unwrap_or(Value::Null);
            let program = programs::of_alert(&details, names);
            Ok(vec![
                Cell::Time(r.get(0)?),
                Cell::Text(r.get(1)?),
                Cell::Text(r.get(2)?),
                Cell::opt_int(uid),
                names.cell(uid),
                Cell::opt_text(r.get(4)?),
                // Detectors escape what came from the wire (DNS names) in dst and summary.
                r.get::<_, Option<String>>(5)?.map_or(Cell::Null, Cell::Escaped),
                Cell::Bytes(r.get(6)?),
                Cell::Escaped(r.get(7)?),
                Cell::Json(details),
                program,
            ])
        },
    )
}

pub const USERS: Layout = Layout {
    title: "Egress by user",
    columns: &[
        col("uid"),
        col("user"),
        hidden("gid"),
        col("host"),
        col("packets"),
        col("bytes"),
        col("destinations"),
        col("first"),
        col("last"),
        col("alerts"),
        // Of the bytes, replies on connections remote peers opened (a web server's answers).
        col("served"),
        // Sent today (UTC), and the mean of a day over the 14 days before.
        col("today"),
        col("baseline"),
        // The programs that sent the most (live only), and each one's bytes and login user.
        col("program"),
        hidden("programs"),
    ],
};

/// Egress per principal, most bytes first; `top` keeps the first ones only. SQLite
/// aggregates and sorts (spilling to temporary files past its cache), rows stream out.
pub fn users(
    store: &Store,
    f: &Filter,
    names: &mut UserNames,
    top: Option<usize>,
    out: &mut dyn Rows,
) -> Result<(), ReportError> {
    each_row(
        store,
        &format!(
            "SELECT p.uid, p.gid, p.host, sum(e.packets), sum(e.bytes),
                count(DISTINCT e.dst || ' ' || e.dport || ' ' || e.proto), min(e.first_seen), max(e.last_seen),
                (SELECT count(*) FROM alerts a WHERE a.principal_id = p.id AND a.ts >= ?1 AND a.ts < ?2),
                sum(CASE WHEN e.direction = 2 THEN e.bytes ELSE 0 END),
                sum(CASE WHEN e.minute >= ?5 THEN e.bytes ELSE 0 END), coalesce(max(b.per_day), 0), max(g.programs)
         FROM egress e JOIN principals p ON p.id = e.principal_id
         LEFT JOIN (SELECT principal_id, sum(bytes) / ?6 AS per_day FROM egress
                    WHERE minute >= ?5 - ?6 * 86400000000 AND minute < ?5 AND run_id NOT IN uncounted_runs
                    GROUP BY principal_id) b
           ON b.principal_id = p.id
         LEFT JOIN {programs} g ON g.principal_id = p.id
         WHERE e.minute >= ?1 / 60000000 * 60000000 AND e.minute < ?2 AND (?3 IS NULL OR p.uid = ?3)
           AND (?4 IS NULL OR e.direction = ?4) AND e.run_id NOT IN uncounted_runs
         GROUP BY p.id ORDER BY sum(e.bytes) DESC LIMIT ?7",
            programs = programs::by(&["principal_id"])
        ),
        params![f.since(), f.until(), f.uid(), f.direction(), today_start(), BASELINE_DAYS, limit(top)],
        out,
        |r| {
            let uid: Option<i64> = r.get(0)?;
            let [program, programs] = programs::cells(r.get(12)?, names);
            Ok(vec![
                Cell::opt_int(uid),
                names.cell(uid),
                Cell::opt_int(r.get(1)?),
                Cell::opt_text(r.get(2)?),
                Cell::Int(r.get(3)?),
                Cell::Bytes(r.get(4)?),
                Cell::Int(r.get(5)?),
                Cell::Time(r.get(6)?),
                Cell::Time(r.get(7)?),
                Cell::Int(r.get(8)?),
                Cell::Bytes(r.get(9)?),
                Cell::Bytes(r.get(10)?),
                Cell::Bytes(r.get(11)?),
                program,
                programs,
            ])
        },
    )
}

pub const DESTINATIONS: Layout = Layout {
    title: "Egress by destination",
    columns: &[
        col("dst"),
        col("proto"),
        col("packets"),
        col("bytes"),
        col("senders"),
        col("first"),
        col("last"),
        col("direction"),
        // The name a sender used for the address (DNS answer, TLS server name).
        col("name"),
        // As in `report users`.
        col("program"),
        hidden("programs"),
    ],
};

/// Egress per destination, most bytes first; `top` keeps the first ones only.
pub fn destinations(store: &Store, f: &Filter, top: Option<usize>, out: &mut dyn Rows) -> Result<(), ReportError> {
    let mut names = UserNames::default();
    each_row(
        store,
        &format!(
            "SELECT e.dst, e.dport, e.proto, sum(e.packets), sum(e.bytes),
                count(DISTINCT e.principal_id), min(e.first_seen), max(e.last_seen), max(e.direction),
                max(e.dst_name), max(g.programs)
         FROM egress e JOIN principals p ON p.id = e.principal_id
         LEFT JOIN {programs} g ON g.dst = e.dst AND g.dport = e.dport AND g.proto = e.proto
         WHERE e.minute >= ?1 / 60000000 * 60000000 AND e.minute < ?2 AND (?3 IS NULL OR p.uid = ?3)
           AND (?4 IS NULL OR e.direction = ?4) AND e.run_id NOT IN uncounted_runs
         GROUP BY e.dst, e.dport, e.proto ORDER BY sum(e.bytes) DESC LIMIT ?5",
            programs = programs::by(&["dst", "dport", "proto"])
        ),
        params![f.since(), f.until(), f.uid(), f.direction(), limit(top)],
        out,
        |r| {
            let [program, programs] = programs::cells(r.get(10)?, &mut names);
            let addr: String = r.get(0)?;
            let port: u16 = r.get(1)?;
            let proto: u8 = r.get(2)?;
            let dst = addr.parse().map_or_else(|_| addr.clone(), |a| endpoint(a, port, proto));
            Ok(vec![
                Cell::Text(dst),
                Cell::Text(proto_name(proto)),
                Cell::Int(r.get(3)?),
                Cell::Bytes(r.get(4)?),
                Cell::Int(r.get(5)?),
                Cell::Time(r.get(6)?),
                Cell::Time(r.get(7)?),
                Cell::Text(Direction::of_code(r.get(8)?).as_str().into()),
                Cell::Text(r.get::<_, Option<String>>(9)?.unwrap_or_default()),
                program,
                programs,
            ])
        },
    )
}

/// The overview: totals, alerts by kind, and the top users and destinations.
pub struct Summary {
    pub totals: Table,
    pub top_users: Table,
    pub top_destinations: Table,
}

/// Users and destinations in the summary.
const TOP: usize = 5;

pub fn summary(store: &Store, f: &Filter, names: &mut UserNames) -> Result<Summary, ReportError> {
    let bounds = params![f.since(), f.until(), f.uid()];
    let (first, last, packets, bytes, senders): (Option<i64>, Option<i64>, Option<i64>, Option<i64>, i64) = store
        .conn()
        .query_row(
            "SELECT min(e.first_seen), max(e.last_seen), sum(e.packets), sum(e.bytes), count(DISTINCT e.principal_id)
             FROM egress e JOIN principals p ON p.id = e.principal_id
             WHERE e.minute >= ?1 / 60000000 * 60000000 AND e.minute < ?2 AND (?3 IS NULL OR p.uid = ?3)
           AND e.run_id NOT IN uncounted_runs",
            bounds,
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .map_err(|e| sql(store, e))?;
    let by_kind = rows(
        store,
        "SELECT 'alerts: ' || a.kind, count(*) FROM alerts a LEFT JOIN principals p ON p.id = a.principal_id
         WHERE a.ts >= ?1 AND a.ts < ?2 AND (?3 IS NULL OR p.uid = ?3) GROUP BY a.kind ORDER BY a.kind",
        bounds,
        |r| Ok(vec![Cell::Text(r.get(0)?), Cell::Int(r.get(1)?)]),
    )?;
    let alerts: i64 = by_kind.iter().map(|r| if let Cell::Int(n) = r[1] { n } else { 0 }).sum();
    let (runs, malformed, ignored): (i64, Option<i64>, Option<i64>) = store
        .conn()
        .query_row("SELECT count(*), sum(malformed), sum(ignored) FROM runs WHERE id NOT IN uncounted_runs", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(|e| sql(store, e))?;

    let item = |name: &str, value: Cell| vec![Cell::Text(name.into()), value];
    let mut totals = vec![
        item("first packet", first.map_or(Cell::Null, Cell::Time)),
        item("last packet", last.map_or(Cell::Null, Cell::Time)),
        item("packets", Cell::Int(packets.unwrap_or(0))),
        item("bytes", Cell::Bytes(bytes.unwrap_or(0))),
        item("senders", Cell::Int(senders)),
        item("alerts", Cell::Int(alerts)),
    ];
    totals.extend(by_kind);
    totals.push(item("runs recorded", Cell::Int(runs)));
    totals.push(item("malformed frames skipped", Cell::Int(malformed.unwrap_or(0))));
    totals.push(item("frames ignored (not IP, inbound)", Cell::Int(ignored.unwrap_or(0))));

    let mut top_users = USERS.table();
    top_users.title = "Top senders".into();
    users(store, f, names, Some(TOP), &mut top_users)?;
    let mut top_destinations = DESTINATIONS.table();
    top_destinations.title = "Top destinations".into();
    destinations(store, f, Some(TOP), &mut top_destinations)?;
    Ok(Summary {
        totals: Table { title: "Egress summary".into(), columns: vec![col("item"), col("value")], rows: totals },
        top_users,
        top_destinations,
    })
}

impl Summary {
    pub fn json(&self) -> Value {
        let totals: serde_json::Map<String, Value> = self
            .totals
            .json()
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| Some((o["item"].as_str()?.to_string(), o["value"].clone())))
            .collect();
        json!({ "totals": totals, "top_users": self.top_users.json(), "top_destinations": self.top_destinations.json() })
    }
}
