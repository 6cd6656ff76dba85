//! `exfilmon report dns`: the registered domains each user queried most, by unique names and
//! the bytes those names hold, with the suspicious ones marked.

use super::db::Db;
use super::stream::Rows;
use super::table::{col, hidden, titled, Cell, Column};
use super::{Filter, ReportError, UserNames};

/// Suspicious names (encoded-looking, over-long, odd-typed) that mark a domain `suspicious`:
/// one or two random-looking CDN host names are ordinary, a run of them is not.
pub(super) const SUSPICIOUS_NAMES: i64 = 3;

/// Up to `top` domains per principal, principals with the most unique names first.
/// `mark` is `ALERT` where a dns_tunnel episode was open, `suspicious` where at least
/// [`SUSPICIOUS_NAMES`] names were, else empty. Domains and names were escaped when stored,
/// so they are shown as they are.
pub fn dns(db: &Db, f: &Filter, names: &mut UserNames, top: usize, out: &mut dyn Rows) -> Result<(), ReportError> {
    db.each(
        "WITH agg AS (
             SELECT d.observer, d.principal, max(d.uid) AS uid, max(d.host) AS host, max(d.user_name) AS user_name,
                    d.domain, sum(d.queries) AS q, sum(d.unique_names) AS u, sum(d.name_bytes) AS b,
                    sum(d.suspicious) AS s, max(d.flags & 4) AS alerted, min(d.minute) AS first,
                    max(d.minute) AS last
             FROM {dns} d
             WHERE d.minute >= $1 / 60000000 * 60000000 AND d.minute < $2 AND ($3 IS NULL OR d.uid = $3)
               AND ($6 IS NULL OR d.observer = $6)
             GROUP BY d.principal, d.observer, d.domain),
         ranked AS (
             SELECT agg.*, row_number() OVER (PARTITION BY observer, principal ORDER BY u DESC, b DESC, q DESC) AS rn,
                    sum(u) OVER (PARTITION BY observer, principal) AS total
             FROM agg)
         SELECT r.uid, r.host, r.domain, CAST(r.q AS BIGINT), CAST(r.u AS BIGINT), CAST(r.b AS BIGINT),
                CAST(r.s AS BIGINT), CASE WHEN r.alerted > 0 THEN 'ALERT' WHEN r.s >= $5 THEN 'suspicious' ELSE '' END,
                {dns_sample}, r.first, r.last, r.observer, r.user_name
         FROM ranked r
         WHERE r.rn <= $4
         ORDER BY r.total DESC, r.observer, r.principal, r.rn",
        &[
            f.since().into(),
            f.until().into(),
            f.uid().into(),
            i64::try_from(top).unwrap_or(i64::MAX).into(),
            SUSPICIOUS_NAMES.into(),
            f.observer.clone().into(),
        ],
        |r| {
            let uid = r.opt_int(0)?;
            out.row(vec![
                Cell::opt_int(uid),
                Cell::opt_text(db.user(names, uid, r.opt_text(12)?)),
                Cell::opt_text(r.opt_text(1)?),
                Cell::Escaped(r.text(2)?),
                Cell::Int(r.int(3)?),
                Cell::Int(r.int(4)?),
                Cell::Bytes(r.int(5)?),
                Cell::Int(r.int(6)?),
                Cell::Text(r.text(7)?),
                r.opt_text(8)?.map_or(Cell::Null, Cell::Escaped),
                Cell::Time(r.int(9)?),
                Cell::Time(r.int(10)?),
                Cell::Text(r.text(11)?),
            ])?;
            Ok(())
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
    titled("host", "SOURCE"),
    col("domain"),
    col("queries"),
    col("unique"),
    col("name_bytes"),
    col("suspicious"),
    col("mark"),
    col("sample"),
    hidden("first"),
    hidden("last"),
    titled("observer", "HOST"),
];
