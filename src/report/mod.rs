//! `exfilmon report`: what left the box, per user, destination and alert.
//!
//! Each report is a query whose rows stream to a [`Rows`] (written out as they are read, or
//! collected into a [`Table`] when few); rendering is shared. Tables show user
//! names for uids, as `aureport -i` does. Rows of replays that have not committed (the
//! `uncounted_runs` view, see `store::runs`) are left out: a replay counts whole or not at all.

pub mod chart;
pub mod db;
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

use db::{Db, Param};
use serde_json::{json, Value};

use crate::decode::Direction;
use crate::principal::{endpoint, proto_name, UserNames};
use crate::store::{Store, StoreError};
use crate::units::wall_clock_us;
use stream::{Layout, Rows};
use table::{col, hidden, titled, Cell, Table};

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
    /// Only this host's rows (`--observer`).
    pub observer: Option<String>,
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

/// A report that failed: the database, or the output (a closed pipe, a full disk).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Output(#[from] std::io::Error),
    #[error("{target}: {message}")]
    Central { target: String, message: String },
}

/// A `LIMIT` clause, none without a limit (PostgreSQL takes no negative limit).
fn limit(n: Option<usize>) -> String {
    n.map_or_else(String::new, |n| format!(" LIMIT {n}"))
}

pub const ALERTS: Layout = Layout {
    title: "Alerts",
    columns: &[
        col("ts"),
        col("kind"),
        col("severity"),
        hidden("uid"),
        col("user"),
        titled("host", "SOURCE"),
        col("dst"),
        col("bytes"),
        col("summary"),
        hidden("details"),
        // The host that raised it (issue 12): this one's name locally, each's in the fleet
        // store. Last, so CSV columns keep their places.
        titled("observer", "HOST"),
        // The process behind the flow (live), with its login user: details.process, in short.
        col("program"),
    ],
};

/// `$N IS NULL OR column = $N`: a filter left out when not given.
fn observer_param(f: &Filter) -> Param {
    Param::Text(f.observer.clone())
}

pub fn alerts(db: &Db, f: &Filter, names: &mut UserNames, out: &mut dyn Rows) -> Result<(), ReportError> {
    db.each(
        "SELECT a.observer, a.ts, a.kind, a.severity, a.uid, a.host, a.dst, a.bytes, a.summary, a.details, a.user_name
         FROM {alerts} a
         WHERE a.ts >= $1 AND a.ts < $2 AND ($3 IS NULL OR a.uid = $3) AND a.id > $4 AND a.id <= $5
           AND ($6 IS NULL OR a.observer = $6)
         ORDER BY a.ts, a.observer, a.seq",
        &[
            f.since().into(),
            f.until().into(),
            f.uid().into(),
            f.alert_ids.map_or(i64::MIN, |r| r.0).into(),
            f.alert_ids.map_or(i64::MAX, |r| r.1).into(),
            observer_param(f),
        ],
        |r| {
            let uid = r.opt_int(4)?;
            let details: Value = serde_json::from_str(&r.text(9)?).unwrap_or(Value::Null);
            let program = programs::of_alert(&details, names);
            out.row(vec![
                Cell::Time(r.int(1)?),
                Cell::Text(r.text(2)?),
                Cell::Text(r.text(3)?),
                Cell::opt_int(uid),
                Cell::opt_text(db.user(names, uid, r.opt_text(10)?)),
                Cell::opt_text(r.opt_text(5)?),
                // Detectors escape what came from the wire (DNS names) in dst and summary.
                r.opt_text(6)?.map_or(Cell::Null, Cell::Escaped),
                Cell::Bytes(r.int(7)?),
                Cell::Escaped(r.text(8)?),
                Cell::Json(details),
                Cell::Text(r.text(0)?),
                program,
            ])?;
            Ok(())
        },
    )
}

pub const USERS: Layout = Layout {
    title: "Egress by user",
    columns: &[
        col("uid"),
        col("user"),
        hidden("gid"),
        titled("host", "SOURCE"),
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
        titled("observer", "HOST"),
        // The programs that sent the most (live only), and each one's bytes and login user.
        col("program"),
        hidden("programs"),
    ],
};

/// Egress per principal (and observer), most bytes first; `top` keeps the first ones only.
/// The database aggregates and sorts (SQLite spilling to temporary files past its cache),
/// rows stream out.
pub fn users(
    db: &Db,
    f: &Filter,
    names: &mut UserNames,
    top: Option<usize>,
    out: &mut dyn Rows,
) -> Result<(), ReportError> {
    let sql = format!(
        "SELECT e.observer, max(e.uid), max(e.gid), max(e.host), CAST(sum(e.packets) AS BIGINT),
                CAST(sum(e.bytes) AS BIGINT),
                count(DISTINCT e.dst || ' ' || e.dport || ' ' || e.proto), min(e.first_seen), max(e.last_seen),
                (SELECT count(*) FROM {{alerts}} a
                 WHERE a.principal = e.principal AND a.observer = e.observer AND a.ts >= $1 AND a.ts < $2),
                CAST(sum(CASE WHEN e.direction = 2 THEN e.bytes ELSE 0 END) AS BIGINT),
                CAST(sum(CASE WHEN e.minute >= $5 THEN e.bytes ELSE 0 END) AS BIGINT),
                CAST(coalesce(max(b.per_day), 0) AS BIGINT), max(e.user_name), {programs}
         FROM {{egress}} e
         LEFT JOIN (SELECT observer, principal, sum(bytes) / $6 AS per_day FROM {{egress}}
                    WHERE minute >= $5 - $6 * 86400000000 AND minute < $5
                    GROUP BY principal, observer) b
           ON b.principal = e.principal AND b.observer = e.observer
         {by_program}
         WHERE e.minute >= $1 / 60000000 * 60000000 AND e.minute < $2 AND ($3 IS NULL OR e.uid = $3)
           AND ($4 IS NULL OR e.direction = $4) AND ($7 IS NULL OR e.observer = $7)
         GROUP BY e.principal, e.observer ORDER BY sum(e.bytes) DESC, e.observer, e.principal{}",
        limit(top),
        programs = programs::column(db),
        by_program = programs::join(db, programs::By::Principal, "$7"),
    );
    db.each(
        &sql,
        &[
            f.since().into(),
            f.until().into(),
            f.uid().into(),
            f.direction().into(),
            today_start().into(),
            BASELINE_DAYS.into(),
            observer_param(f),
        ],
        |r| {
            let uid = r.opt_int(1)?;
            let [program, programs] = programs::cells(r.opt_text(14)?, names);
            out.row(vec![
                Cell::opt_int(uid),
                Cell::opt_text(db.user(names, uid, r.opt_text(13)?)),
                Cell::opt_int(r.opt_int(2)?),
                Cell::opt_text(r.opt_text(3)?),
                Cell::Int(r.int(4)?),
                Cell::Bytes(r.int(5)?),
                Cell::Int(r.int(6)?),
                Cell::Time(r.int(7)?),
                Cell::Time(r.int(8)?),
                Cell::Int(r.int(9)?),
                Cell::Bytes(r.int(10)?),
                Cell::Bytes(r.int(11)?),
                Cell::Bytes(r.int(12)?),
                Cell::Text(r.text(0)?),
                program,
                programs,
            ])?;
            Ok(())
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
pub fn destinations(db: &Db, f: &Filter, top: Option<usize>, out: &mut dyn Rows) -> Result<(), ReportError> {
    let mut names = UserNames::default();
    let sql = format!(
        "SELECT e.dst, e.dport, e.proto, CAST(sum(e.packets) AS BIGINT), CAST(sum(e.bytes) AS BIGINT),
                count(DISTINCT e.observer || ' ' || e.principal), min(e.first_seen), max(e.last_seen),
                max(e.direction), max(e.dst_name), {programs}
         FROM {{egress}} e
         {by_program}
         WHERE e.minute >= $1 / 60000000 * 60000000 AND e.minute < $2 AND ($3 IS NULL OR e.uid = $3)
           AND ($4 IS NULL OR e.direction = $4) AND ($5 IS NULL OR e.observer = $5)
         GROUP BY e.dst, e.dport, e.proto ORDER BY sum(e.bytes) DESC, e.dst, e.dport, e.proto{}",
        limit(top),
        programs = programs::column(db),
        by_program = programs::join(db, programs::By::Destination, "$5"),
    );
    db.each(&sql, &[f.since().into(), f.until().into(), f.uid().into(), f.direction().into(), observer_param(f)], |r| {
        let addr = r.text(0)?;
        let port = u16::try_from(r.int(1)?).unwrap_or(0);
        let proto = u8::try_from(r.int(2)?).unwrap_or(0);
        let dst = addr.parse().map_or_else(|_| addr.clone(), |a| endpoint(a, port, proto));
        let [program, programs] = programs::cells(r.opt_text(10)?, &mut names);
        out.row(vec![
            Cell::Text(dst),
            Cell::Text(proto_name(proto)),
            Cell::Int(r.int(3)?),
            Cell::Bytes(r.int(4)?),
            Cell::Int(r.int(5)?),
            Cell::Time(r.int(6)?),
            Cell::Time(r.int(7)?),
            Cell::Text(Direction::of_code(r.int(8)?).as_str().into()),
            Cell::Text(r.opt_text(9)?.unwrap_or_default()),
            program,
            programs,
        ])?;
        Ok(())
    })
}

/// The overview: totals, alerts by kind, and the top users and destinations.
pub struct Summary {
    pub totals: Table,
    pub top_users: Table,
    pub top_destinations: Table,
}

/// Users and destinations in the summary.
const TOP: usize = 5;

pub fn summary(db: &Db, f: &Filter, names: &mut UserNames) -> Result<Summary, ReportError> {
    let bounds = [f.since().into(), f.until().into(), f.uid().into(), observer_param(f)];
    let mut totals = Vec::new();
    let item = |name: &str, value: Cell| vec![Cell::Text(name.into()), value];
    db.each(
        "SELECT min(e.first_seen), max(e.last_seen), CAST(sum(e.packets) AS BIGINT), CAST(sum(e.bytes) AS BIGINT),
                count(DISTINCT e.observer || ' ' || e.principal), count(DISTINCT e.observer)
         FROM {egress} e
         WHERE e.minute >= $1 / 60000000 * 60000000 AND e.minute < $2 AND ($3 IS NULL OR e.uid = $3)
           AND ($4 IS NULL OR e.observer = $4)",
        &bounds,
        |r| {
            totals.push(item("first packet", r.opt_int(0)?.map_or(Cell::Null, Cell::Time)));
            totals.push(item("last packet", r.opt_int(1)?.map_or(Cell::Null, Cell::Time)));
            totals.push(item("packets", Cell::Int(r.int(2)?)));
            totals.push(item("bytes", Cell::Bytes(r.int(3)?)));
            totals.push(item("senders", Cell::Int(r.int(4)?)));
            if db.central() {
                totals.push(item("hosts", Cell::Int(r.int(5)?)));
            }
            Ok(())
        },
    )?;
    let mut by_kind = Vec::new();
    db.each(
        "SELECT 'alerts: ' || a.kind, count(*) FROM {alerts} a
         WHERE a.ts >= $1 AND a.ts < $2 AND ($3 IS NULL OR a.uid = $3) AND ($4 IS NULL OR a.observer = $4)
         GROUP BY a.kind ORDER BY a.kind",
        &bounds,
        |r| {
            by_kind.push(vec![Cell::Text(r.text(0)?), Cell::Int(r.int(1)?)]);
            Ok(())
        },
    )?;
    let alerts: i64 = by_kind.iter().map(|r| if let Cell::Int(n) = r[1] { n } else { 0 }).sum();
    totals.push(item("alerts", Cell::Int(alerts)));
    totals.extend(by_kind);
    // Runs and what they skipped are each host's own: `report summary --db` on the host.
    if let Db::Local { store, .. } = db {
        let (runs, malformed, ignored): (i64, Option<i64>, Option<i64>) = store
            .conn()
            .query_row(
                "SELECT count(*), sum(malformed), sum(ignored) FROM runs WHERE id NOT IN uncounted_runs",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|e| sql(store, e))?;
        totals.push(item("runs recorded", Cell::Int(runs)));
        totals.push(item("malformed frames skipped", Cell::Int(malformed.unwrap_or(0))));
        totals.push(item("frames ignored (not IP, inbound)", Cell::Int(ignored.unwrap_or(0))));
    }

    let mut top_users = USERS.table();
    top_users.title = "Top senders".into();
    users(db, f, names, Some(TOP), &mut top_users)?;
    let mut top_destinations = DESTINATIONS.table();
    top_destinations.title = "Top destinations".into();
    destinations(db, f, Some(TOP), &mut top_destinations)?;
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
