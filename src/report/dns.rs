//! `exfilmon report dns`: the registered domains each user queried most, by unique names and
//! the bytes those names hold, with the suspicious ones marked.

use rusqlite::params;

use super::stream::Rows;
use super::table::{col, hidden, Cell, Column};
use super::{each_row, Filter, ReportError, UserNames};
use crate::store::Store;

/// Suspicious names (encoded-looking, over-long, odd-typed) that mark a domain `suspicious`:
/// one or two random-looking CDN host names are ordinary, a run of them is not.
pub(super) const SUSPICIOUS_NAMES: i64 = 3;

/// Up to `top` domains per principal, principals with the most unique names first.
/// `mark` is `ALERT` where a dns_tunnel episode was open, `suspicious` where at least
/// [`SUSPICIOUS_NAMES`] names were, else empty. Domains and names were escaped when stored,
/// so they are shown as they are.
pub fn dns(
    store: &Store,
    f: &Filter,
    names: &mut UserNames,
    top: usize,
    out: &mut dyn Rows,
) -> Result<(), ReportError> {
    each_row(
        store,
        "WITH agg AS (
             SELECT d.principal_id, d.domain, sum(d.queries) AS q, sum(d.unique_names) AS u, sum(d.name_bytes) AS b,
                    sum(d.suspicious) AS s, max(d.flags & 4) AS alerted,
                    min(d.minute) AS first, max(d.minute) AS last
             FROM dns d JOIN principals p ON p.id = d.principal_id
             WHERE d.minute >= ?1 / 60000000 * 60000000 AND d.minute < ?2 AND (?3 IS NULL OR p.uid = ?3)
               AND d.run_id NOT IN uncounted_runs
             GROUP BY d.principal_id, d.domain),
         ranked AS (
             SELECT agg.*, row_number() OVER (PARTITION BY principal_id ORDER BY u DESC, b DESC, q DESC) AS rn,
                    sum(u) OVER (PARTITION BY principal_id) AS total
             FROM agg)
         SELECT p.uid, p.host, r.domain, r.q, r.u, r.b, r.s,
                CASE WHEN r.alerted > 0 THEN 'ALERT' WHEN r.s >= ?5 THEN 'suspicious' ELSE '' END,
                (SELECT x.name FROM dns_samples x WHERE x.principal_id = r.principal_id AND x.domain = r.domain
                   AND x.run_id NOT IN uncounted_runs
                 ORDER BY x.minute, x.name LIMIT 1),
                r.first, r.last
         FROM ranked r JOIN principals p ON p.id = r.principal_id
         WHERE r.rn <= ?4
         ORDER BY r.total DESC, r.principal_id, r.rn",
        params![f.since(), f.until(), f.uid(), i64::try_from(top).unwrap_or(i64::MAX), SUSPICIOUS_NAMES],
        out,
        |r| {
            let uid: Option<i64> = r.get(0)?;
            Ok(vec![
                Cell::opt_int(uid),
                names.cell(uid),
                Cell::opt_text(r.get(1)?),
                Cell::Escaped(r.get(2)?),
                Cell::Int(r.get(3)?),
                Cell::Int(r.get(4)?),
                Cell::Bytes(r.get(5)?),
                Cell::Int(r.get(6)?),
                Cell::Text(r.get(7)?),
                r.get::<_, Option<String>>(8)?.map_or(Cell::Null, Cell::Escaped),
                Cell::Time(r.get(9)?),
                Cell::Time(r.get(10)?),
            ])
        },
    )
}

/// The report's title for `top` domains per user.
pub fn title(top: usize) -> String {
    format!("DNS: top {top} registered domains per user by unique names")
}

pub const COLUMNS: &[Column] = &[
    hidden("uid"),
    col("user"),
    col("host"),
    col("domain"),
    col("queries"),
    col("unique"),
    col("name_bytes"),
    col("suspicious"),
    col("mark"),
    col("sample"),
    hidden("first"),
    hidden("last"),
];
