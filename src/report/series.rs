//! Egress and alerts over time, in buckets: what `report html` charts and `report timeline`
//! draws.
//!
//! Everything is summed in SQL, one row per (bucket, sender) or (bucket, sender, alert kind),
//! so what a renderer gets is bounded by buckets × senders shown, never by the rows stored: a
//! month of a busy server is a few thousand numbers. Senders beyond the ones asked for are
//! summed into one [`OTHERS`] series. The SQL is portable (integer arithmetic for buckets,
//! `coalesce`, window functions, no engine-only functions).

use std::collections::BTreeMap;

use rusqlite::params;
use serde_json::Value;

use super::{select, Filter};
use crate::principal::UserNames;
use crate::rows::MINUTE_US;
use crate::store::{Store, StoreError};

pub const HOUR_US: i64 = 60 * MINUTE_US;
pub const DAY_US: i64 = 24 * HOUR_US;

/// Charts use minutes up to this span, then hours.
const MINUTES_UP_TO: i64 = 12 * HOUR_US;
/// Charts use hours up to this span, then days.
const HOURS_UP_TO: i64 = 40 * DAY_US;
/// At most this many buckets in a chart: beyond it a bucket spans several units (2 days ...).
pub const MAX_BUCKETS: i64 = 1000;

/// The series key of every sender not asked for by id.
pub const OTHERS: i64 = -1;

/// The time a report covers: `[start_us, end_us)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start_us: i64,
    pub end_us: i64,
}

/// The span of a report: `--since`/`--until` where given; else from the first to the last
/// minute with egress or an alert (an open `--since` ends now).
pub fn span(store: &Store, f: &Filter, now_us: i64) -> Result<Option<Span>, StoreError> {
    // The first and last minute by walking the egress key in order (no scan), then the alerts.
    let edge = |order: &str| -> Result<Option<i64>, StoreError> {
        let t: Vec<i64> = select(
            store,
            &format!(
                "SELECT e.minute FROM egress e JOIN principals p ON p.id = e.principal_id
                 WHERE e.minute >= ?1 / 60000000 * 60000000 AND e.minute < ?2 AND (?3 IS NULL OR p.uid = ?3)
                 ORDER BY e.minute {order} LIMIT 1"
            ),
            params![f.since(), f.until(), f.uid()],
            |r| r.get(0),
        )?;
        Ok(t.first().copied())
    };
    let (first, last) = (edge("ASC")?, edge("DESC")?.map(|m| m + MINUTE_US));
    let alerts: Vec<(Option<i64>, Option<i64>)> = select(
        store,
        "SELECT min(a.ts), max(a.ts) + 1 FROM alerts a LEFT JOIN principals p ON p.id = a.principal_id
         WHERE a.ts >= ?1 AND a.ts < ?2 AND (?3 IS NULL OR p.uid = ?3)",
        params![f.since(), f.until(), f.uid()],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (a_first, a_last) = alerts.first().copied().unwrap_or((None, None));
    let first = first.into_iter().chain(a_first).min();
    let last = last.into_iter().chain(a_last).max();
    let start = f.since_us.or(first);
    let end = f.until_us.or(if f.since_us.is_some() { Some(now_us.max(last.unwrap_or(i64::MIN))) } else { last });
    Ok(match (start, end) {
        (Some(start_us), Some(end_us)) if end_us > start_us => Some(Span { start_us, end_us }),
        _ => None,
    })
}

/// The unit a bucket is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Minute,
    Hour,
    Day,
}

impl Unit {
    pub fn us(self) -> i64 {
        match self {
            Unit::Minute => MINUTE_US,
            Unit::Hour => HOUR_US,
            Unit::Day => DAY_US,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
        }
    }
}

/// Equal time buckets covering a span: bucket `i` is `[start_us + i × width_us, + width_us)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    pub start_us: i64,
    pub width_us: i64,
    pub count: usize,
    pub unit: Unit,
}

impl Buckets {
    /// The rollup a chart of `span` uses: minutes up to 12 hours, hours up to 40 days, days
    /// beyond; aligned to UTC minutes, hours and days; several units a bucket when it would
    /// take more than [`MAX_BUCKETS`].
    pub fn rollup(span: Span) -> Buckets {
        let len = span.end_us - span.start_us;
        let unit = match len {
            l if l <= MINUTES_UP_TO => Unit::Minute,
            l if l <= HOURS_UP_TO => Unit::Hour,
            _ => Unit::Day,
        };
        let start = span.start_us.div_euclid(unit.us()) * unit.us();
        let units = (span.end_us - start + unit.us() - 1).div_euclid(unit.us()).max(1);
        let per_bucket = (units + MAX_BUCKETS - 1) / MAX_BUCKETS;
        let width_us = unit.us() * per_bucket;
        let start_us = start.div_euclid(width_us) * width_us;
        let count = (span.end_us - start_us + width_us - 1).div_euclid(width_us).max(1) as usize;
        Buckets { start_us, width_us, count, unit }
    }

    /// At most `columns` equal buckets of whole minutes covering `span` (a terminal row).
    pub fn fit(span: Span, columns: usize) -> Buckets {
        let start_us = span.start_us.div_euclid(MINUTE_US) * MINUTE_US;
        let minutes = (span.end_us - start_us + MINUTE_US - 1).div_euclid(MINUTE_US).max(1);
        let columns = columns.max(1) as i64;
        let width_us = MINUTE_US * ((minutes + columns - 1) / columns);
        let count = (span.end_us - start_us + width_us - 1).div_euclid(width_us).max(1) as usize;
        Buckets { start_us, width_us, count, unit: Unit::Minute }
    }

    pub fn end_us(&self) -> i64 {
        self.start_us + self.width_us * self.count as i64
    }

    pub fn bucket_start(&self, i: usize) -> i64 {
        self.start_us + self.width_us * i as i64
    }

    /// `hour`, `2 hours`, `minute` ...: what one bucket is, for axis titles.
    pub fn label(&self) -> String {
        let n = self.width_us / self.unit.us();
        if n == 1 {
            self.unit.name().to_string()
        } else {
            format!("{n} {}s", self.unit.name())
        }
    }

    /// The bucket of a time returned by SQL as `(t - start) / width`, if it is inside.
    fn index(&self, i: i64) -> Option<usize> {
        usize::try_from(i).ok().filter(|&i| i < self.count)
    }
}

/// One sender (a principal) with its totals in the filter's range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub id: i64,
    pub uid: Option<i64>,
    pub host: Option<String>,
    /// `alice (uid 1001)`, `uid 1001` or the host address: not yet escaped for any output.
    pub label: String,
    pub bytes: i64,
    pub packets: i64,
}

/// The senders with the most bytes, and the totals of all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Senders {
    /// Most bytes first, at most the limit asked for.
    pub top: Vec<Sender>,
    /// Senders in the range, shown or not.
    pub count: usize,
    pub bytes: i64,
    pub packets: i64,
    /// First and last packet seen.
    pub first_us: Option<i64>,
    pub last_us: Option<i64>,
}

/// The senders with the most bytes in the range, at most `limit`, with the totals of all: one
/// pass over the egress rows (window functions over the groups give the totals).
pub fn senders(store: &Store, f: &Filter, names: &mut UserNames, limit: usize) -> Result<Senders, StoreError> {
    let mut out = Senders::default();
    let mut top: Vec<Sender> = select(
        store,
        "SELECT p.id, p.uid, p.host, sum(e.bytes), sum(e.packets),
                count(*) OVER (), sum(sum(e.bytes)) OVER (), sum(sum(e.packets)) OVER (),
                min(min(e.first_seen)) OVER (), max(max(e.last_seen)) OVER ()
         FROM egress e JOIN principals p ON p.id = e.principal_id
         WHERE e.minute >= ?1 / 60000000 * 60000000 AND e.minute < ?2 AND (?3 IS NULL OR p.uid = ?3)
         GROUP BY p.id, p.uid, p.host ORDER BY sum(e.bytes) DESC, p.id LIMIT ?4",
        params![f.since(), f.until(), f.uid(), i64::try_from(limit.max(1)).unwrap_or(i64::MAX)],
        |r| {
            out = Senders {
                top: Vec::new(),
                count: r.get::<_, i64>(5)?.max(0) as usize,
                bytes: r.get(6)?,
                packets: r.get(7)?,
                first_us: r.get(8)?,
                last_us: r.get(9)?,
            };
            Ok(Sender {
                id: r.get(0)?,
                uid: r.get(1)?,
                host: r.get(2)?,
                label: String::new(),
                bytes: r.get(3)?,
                packets: r.get(4)?,
            })
        },
    )?;
    top.truncate(limit);
    for s in &mut top {
        s.label = label(names, s.uid, s.host.as_deref());
    }
    out.top = top;
    Ok(out)
}

/// How a principal is named on a chart or a row.
pub fn label(names: &mut UserNames, uid: Option<i64>, host: Option<&str>) -> String {
    match (uid, host) {
        (Some(uid), _) => match u32::try_from(uid).ok().and_then(|u| names.get(u)) {
            Some(name) => format!("{name} (uid {uid})"),
            None => format!("uid {uid}"),
        },
        (None, Some(host)) => host.to_string(),
        (None, None) => "monitor".to_string(),
    }
}

/// Egress per bucket: bytes of each sender asked for and of the rest together ([`OTHERS`],
/// present only when non-zero), and packets of all senders together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Egress {
    pub bytes: BTreeMap<i64, Vec<i64>>,
    pub packets: Vec<i64>,
}

pub fn egress(store: &Store, f: &Filter, b: &Buckets, ids: &[i64]) -> Result<Egress, StoreError> {
    // Ids come from the database as integers: formatting them cannot inject anything. Without
    // ids every sender is in OTHERS (a constant, so not a grouping term).
    let (key, group) = if ids.is_empty() {
        (format!("{OTHERS}"), String::new())
    } else {
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        let key = format!("CASE WHEN e.principal_id IN ({}) THEN e.principal_id ELSE {OTHERS} END", list.join(", "));
        (key.clone(), format!(", {key}"))
    };
    let rows: Vec<(i64, i64, i64, i64)> = select(
        store,
        &format!(
            "SELECT (e.minute - ?4) / ?5, {key}, sum(e.bytes), sum(e.packets)
             FROM egress e JOIN principals p ON p.id = e.principal_id
             WHERE e.minute >= ?1 / 60000000 * 60000000 AND e.minute < ?2 AND (?3 IS NULL OR p.uid = ?3)
               AND e.minute >= ?4 AND e.minute < ?6
             GROUP BY (e.minute - ?4) / ?5{group}"
        ),
        params![f.since(), f.until(), f.uid(), b.start_us, b.width_us, b.end_us()],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let mut out = Egress { bytes: BTreeMap::new(), packets: vec![0; b.count] };
    for &id in ids {
        out.bytes.insert(id, vec![0; b.count]);
    }
    for (i, who, bytes, packets) in rows {
        let Some(i) = b.index(i) else { continue };
        out.bytes.entry(who).or_insert_with(|| vec![0; b.count])[i] += bytes;
        out.packets[i] += packets;
    }
    Ok(out)
}

/// Alerts of one kind against one principal (none: the monitor's own) in one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub bucket: usize,
    pub principal: Option<i64>,
    pub kind: String,
    /// The highest severity among them: 1 low, 2 medium, 3 high.
    pub severity: u8,
    pub count: i64,
}

/// The alerts in the range, counted per bucket, principal and kind.
pub fn marks(store: &Store, f: &Filter, b: &Buckets) -> Result<Vec<Mark>, StoreError> {
    let rows: Vec<(i64, Option<i64>, String, i64, i64)> = select(
        store,
        "SELECT (a.ts - ?4) / ?5, a.principal_id, a.kind,
                max(CASE a.severity WHEN 'high' THEN 3 WHEN 'medium' THEN 2 ELSE 1 END), count(*)
         FROM alerts a LEFT JOIN principals p ON p.id = a.principal_id
         WHERE a.ts >= ?1 AND a.ts < ?2 AND (?3 IS NULL OR p.uid = ?3) AND a.ts >= ?4 AND a.ts < ?6
         GROUP BY (a.ts - ?4) / ?5, a.principal_id, a.kind
         ORDER BY 1, 2, 3",
        params![f.since(), f.until(), f.uid(), b.start_us, b.width_us, b.end_us()],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?;
    Ok(rows
        .into_iter()
        .filter_map(|(i, principal, kind, severity, count)| {
            Some(Mark { bucket: b.index(i)?, principal, kind, severity: severity.clamp(1, 3) as u8, count })
        })
        .collect())
}

/// Packets the live monitor lost per bucket, from its `monitor_loss` alerts (at most one per
/// alert period, so few rows).
pub fn losses(store: &Store, f: &Filter, b: &Buckets) -> Result<Vec<i64>, StoreError> {
    let rows: Vec<(i64, String)> = select(
        store,
        "SELECT (a.ts - ?3) / ?4, a.details FROM alerts a
         WHERE a.kind = 'monitor_loss' AND a.ts >= ?1 AND a.ts < ?2 AND a.ts >= ?3 AND a.ts < ?5",
        params![f.since(), f.until(), b.start_us, b.width_us, b.end_us()],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut lost = vec![0; b.count];
    for (i, details) in rows {
        let Some(i) = b.index(i) else { continue };
        let n = serde_json::from_str::<Value>(&details).ok().and_then(|v| v["lost"].as_i64()).unwrap_or(0);
        lost[i] += n.max(0);
    }
    Ok(lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000_000;

    fn span(len: i64) -> Span {
        Span { start_us: T0, end_us: T0 + len }
    }

    #[test]
    fn rollup_follows_the_range() {
        let b = Buckets::rollup(span(2 * HOUR_US));
        assert_eq!((b.unit, b.width_us), (Unit::Minute, MINUTE_US));
        assert!(b.start_us <= T0 && b.end_us() >= T0 + 2 * HOUR_US && b.count <= 121);
        let week = Buckets::rollup(span(7 * DAY_US));
        assert_eq!((week.unit, week.width_us, week.label().as_str()), (Unit::Hour, HOUR_US, "hour"));
        assert!((168..=169).contains(&week.count));
        assert_eq!(week.start_us % HOUR_US, 0);
        let month = Buckets::rollup(span(31 * DAY_US));
        assert_eq!(month.unit, Unit::Hour);
        let years = Buckets::rollup(span(10 * 365 * DAY_US));
        assert_eq!((years.unit, years.label().as_str()), (Unit::Day, "4 days"));
        assert!(years.count as i64 <= MAX_BUCKETS && years.end_us() >= T0 + 10 * 365 * DAY_US);
    }

    #[test]
    fn fit_never_exceeds_the_columns_and_covers_the_span() {
        for (len, cols) in [(MINUTE_US, 40), (7 * DAY_US, 57), (3 * HOUR_US + 7, 180), (DAY_US, 1)] {
            let b = Buckets::fit(span(len), cols);
            assert!(b.count <= cols, "{len} {cols}: {b:?}");
            assert!(b.end_us() >= T0 + len && b.start_us <= T0);
            assert_eq!(b.width_us % MINUTE_US, 0);
        }
    }
}
