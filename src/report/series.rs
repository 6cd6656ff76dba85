//! Egress and alerts over time, in buckets: what `report html` charts and `report timeline`
//! draws.
//!
//! Everything is summed in SQL, one row per (bucket, sender) or (bucket, sender, alert kind),
//! so what a renderer gets is bounded by buckets × senders shown, never by the rows stored: a
//! month of a busy server is a few thousand numbers. Senders beyond the ones asked for are
//! summed into one [`OTHERS`] series. The SQL is portable (integer arithmetic for buckets,
//! `coalesce`, window functions, no engine-only functions).

use std::collections::BTreeMap;

use serde_json::Value;

use super::db::{Db, Param};
use super::{Filter, ReportError};
use crate::principal::UserNames;
use crate::rows::MINUTE_US;

pub const HOUR_US: i64 = 60 * MINUTE_US;
pub const DAY_US: i64 = 24 * HOUR_US;

/// Charts use minutes up to this span, then hours.
const MINUTES_UP_TO: i64 = 12 * HOUR_US;
/// Charts use hours up to this span, then days.
const HOURS_UP_TO: i64 = 40 * DAY_US;
/// At most this many buckets in a chart: beyond it a bucket spans several units (2 days ...).
pub const MAX_BUCKETS: i64 = 1000;

/// The series id of every sender not asked for.
pub const OTHERS: i64 = -1;

/// The parameters every query here starts with: `$1` since, `$2` until, `$3` uid, `$4`
/// observer (the last two left out when not given).
pub fn bounds(f: &Filter) -> Vec<Param> {
    vec![f.since().into(), f.until().into(), f.uid().into(), f.observer.clone().into()]
}

/// The egress rows (`e`) [`bounds`] keeps.
pub const EGRESS_IN: &str = "e.minute >= $1 / 60000000 * 60000000 AND e.minute < $2 AND ($3 IS NULL OR e.uid = $3)
     AND ($4 IS NULL OR e.observer = $4)";
/// The alerts (`a`) [`bounds`] keeps.
pub const ALERTS_IN: &str =
    "a.ts >= $1 AND a.ts < $2 AND ($3 IS NULL OR a.uid = $3) AND ($4 IS NULL OR a.observer = $4)";

/// The key of a row's sender, unique across hosts: its observer and principal (the local row
/// id, or `uid:N` centrally); NULL for the monitor's own alerts.
pub fn key(alias: &str) -> String {
    format!("{alias}.observer || ' ' || {alias}.principal")
}

/// The time a report covers: `[start_us, end_us)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start_us: i64,
    pub end_us: i64,
}

/// The span of a report: `--since`/`--until` where given; else from the first to the last
/// minute with egress or an alert (an open `--since` ends now).
pub fn span(db: &Db, f: &Filter, now_us: i64) -> Result<Option<Span>, ReportError> {
    // The first and last minute by walking the egress key in order (no scan), then the alerts.
    let edge = |order: &str| -> Result<Option<i64>, ReportError> {
        let mut t = None;
        db.each(
            &format!("SELECT e.minute FROM {{egress}} e WHERE {EGRESS_IN} ORDER BY e.minute {order} LIMIT 1"),
            &bounds(f),
            |r| {
                t = r.opt_int(0)?;
                Ok(())
            },
        )?;
        Ok(t)
    };
    let (first, last) = (edge("ASC")?, edge("DESC")?.map(|m| m + MINUTE_US));
    let (mut a_first, mut a_last) = (None, None);
    db.each(&format!("SELECT min(a.ts), max(a.ts) + 1 FROM {{alerts}} a WHERE {ALERTS_IN}"), &bounds(f), |r| {
        (a_first, a_last) = (r.opt_int(0)?, r.opt_int(1)?);
        Ok(())
    })?;
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

/// One sender (a principal of one host) with its totals in the filter's range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// Its series: 1 for the most bytes, 2 next... (anchors in a page).
    pub id: i64,
    /// Its [`key`] in the database.
    pub key: String,
    pub observer: String,
    pub uid: Option<i64>,
    pub host: Option<String>,
    /// `alice (uid 1001)`, `uid 1001` or the host address, after `web-01: ` in the fleet
    /// store: not yet escaped for any output.
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

impl Senders {
    /// The series of a sender's key: its own if shown, else [`OTHERS`].
    pub fn series(&self, key: &str) -> i64 {
        self.top.iter().find(|s| s.key == key).map_or(OTHERS, |s| s.id)
    }
}

/// The senders with the most bytes in the range, at most `limit`, with the totals of all: one
/// pass over the egress rows (window functions over the groups give the totals).
pub fn senders(db: &Db, f: &Filter, names: &mut UserNames, limit: usize) -> Result<Senders, ReportError> {
    let mut out = Senders::default();
    let mut params = bounds(f);
    params.push(i64::try_from(limit.max(1)).unwrap_or(i64::MAX).into());
    db.each(
        &format!(
            "SELECT {key}, e.observer, max(e.uid), max(e.host), max(e.user_name), CAST(sum(e.bytes) AS BIGINT),
                    CAST(sum(e.packets) AS BIGINT), count(*) OVER (), CAST(sum(sum(e.bytes)) OVER () AS BIGINT),
                    CAST(sum(sum(e.packets)) OVER () AS BIGINT), min(min(e.first_seen)) OVER (),
                    max(max(e.last_seen)) OVER ()
             FROM {{egress}} e WHERE {EGRESS_IN}
             GROUP BY e.observer, e.principal ORDER BY sum(e.bytes) DESC, e.observer, e.principal LIMIT $5",
            key = key("e")
        ),
        &params,
        |r| {
            let (observer, uid, host) = (r.text(1)?, r.opt_int(2)?, r.opt_text(3)?);
            let label = label(db, names, &observer, uid, host.as_deref(), r.opt_text(4)?);
            out.count = r.int(7)?.max(0) as usize;
            (out.bytes, out.packets, out.first_us, out.last_us) =
                (r.int(8)?, r.int(9)?, r.opt_int(10)?, r.opt_int(11)?);
            if out.top.len() < limit {
                let id = out.top.len() as i64 + 1;
                let (bytes, packets) = (r.int(5)?, r.int(6)?);
                out.top.push(Sender { id, key: r.text(0)?, observer, uid, host, label, bytes, packets });
            }
            Ok(())
        },
    )?;
    Ok(out)
}

/// How a principal is named on a chart or a row: `alice (uid 1001)` (named as its host named
/// it in the fleet store, which also puts the host in front: `web-01: alice (uid 1001)`).
pub fn label(
    db: &Db,
    names: &mut UserNames,
    observer: &str,
    uid: Option<i64>,
    host: Option<&str>,
    user_name: Option<String>,
) -> String {
    let who = match (uid, host) {
        (Some(uid), _) => match db.user(names, Some(uid), user_name) {
            Some(name) => format!("{name} (uid {uid})"),
            None => format!("uid {uid}"),
        },
        (None, Some(host)) => host.to_string(),
        (None, None) => "monitor".to_string(),
    };
    if db.central() {
        format!("{observer}: {who}")
    } else {
        who
    }
}

/// Egress per bucket: bytes of each sender asked for (by its series id) and of the rest
/// together ([`OTHERS`], present only when non-zero), and packets of all senders together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Egress {
    pub bytes: BTreeMap<i64, Vec<i64>>,
    pub packets: Vec<i64>,
}

pub fn egress(db: &Db, f: &Filter, b: &Buckets, senders: &Senders) -> Result<Egress, ReportError> {
    // The senders' keys are parameters from $8 on; without any, every sender is in OTHERS
    // (a constant, so not a grouping term).
    let mut params = bounds(f);
    params.extend([b.start_us.into(), b.width_us.into(), b.end_us().into()]);
    let (series, group) = if senders.top.is_empty() {
        ("''".to_string(), String::new())
    } else {
        let list: Vec<String> = (0..senders.top.len()).map(|i| format!("${}", i + 8)).collect();
        params.extend(senders.top.iter().map(|s| Param::Text(Some(s.key.clone()))));
        let series = format!("CASE WHEN {k} IN ({}) THEN {k} ELSE '' END", list.join(", "), k = key("e"));
        (series.clone(), format!(", {series}"))
    };
    let mut out = Egress { bytes: BTreeMap::new(), packets: vec![0; b.count] };
    for s in &senders.top {
        out.bytes.insert(s.id, vec![0; b.count]);
    }
    db.each(
        &format!(
            "SELECT (e.minute - $5) / $6, {series}, CAST(sum(e.bytes) AS BIGINT), CAST(sum(e.packets) AS BIGINT)
             FROM {{egress}} e WHERE {EGRESS_IN} AND e.minute >= $5 AND e.minute < $7
             GROUP BY (e.minute - $5) / $6{group}"
        ),
        &params,
        |r| {
            let Some(i) = b.index(r.int(0)?) else { return Ok(()) };
            let who = senders.series(&r.text(1)?);
            out.bytes.entry(who).or_insert_with(|| vec![0; b.count])[i] += r.int(2)?;
            out.packets[i] += r.int(3)?;
            Ok(())
        },
    )?;
    Ok(out)
}

/// Alerts of one kind against one sender (none: the monitor's own) in one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub bucket: usize,
    /// The sender's [`key`].
    pub principal: Option<String>,
    pub kind: String,
    /// The highest severity among them: 1 low, 2 medium, 3 high.
    pub severity: u8,
    pub count: i64,
}

/// The alerts in the range, counted per bucket, sender and kind.
pub fn marks(db: &Db, f: &Filter, b: &Buckets) -> Result<Vec<Mark>, ReportError> {
    let mut params = bounds(f);
    params.extend([b.start_us.into(), b.width_us.into(), b.end_us().into()]);
    let mut out = Vec::new();
    db.each(
        &format!(
            "SELECT (a.ts - $5) / $6, {key}, a.kind,
                    CAST(max(CASE a.severity WHEN 'high' THEN 3 WHEN 'medium' THEN 2 ELSE 1 END) AS BIGINT),
                    count(*)
             FROM {{alerts}} a WHERE {ALERTS_IN} AND a.ts >= $5 AND a.ts < $7
             GROUP BY (a.ts - $5) / $6, a.observer, a.principal, a.kind
             ORDER BY 1, 2, 3",
            key = key("a")
        ),
        &params,
        |r| {
            if let Some(bucket) = b.index(r.int(0)?) {
                let severity = r.int(3)?.clamp(1, 3) as u8;
                out.push(Mark { bucket, principal: r.opt_text(1)?, kind: r.text(2)?, severity, count: r.int(4)? });
            }
            Ok(())
        },
    )?;
    Ok(out)
}

/// Packets the live monitor lost per bucket, from its `monitor_loss` alerts (at most one per
/// alert period, so few rows).
pub fn losses(db: &Db, f: &Filter, b: &Buckets) -> Result<Vec<i64>, ReportError> {
    let mut params = bounds(f);
    params.extend([b.start_us.into(), b.width_us.into(), b.end_us().into()]);
    let mut lost = vec![0; b.count];
    // The monitor's alerts have no uid: $3 goes unused.
    db.each(
        "SELECT (a.ts - $5) / $6, a.details FROM {alerts} a
         WHERE a.kind = 'monitor_loss' AND a.ts >= $1 AND a.ts < $2 AND ($4 IS NULL OR a.observer = $4)
           AND a.ts >= $5 AND a.ts < $7",
        &params,
        |r| {
            let Some(i) = b.index(r.int(0)?) else { return Ok(()) };
            let n = serde_json::from_str::<Value>(&r.text(1)?).ok().and_then(|v| v["lost"].as_i64()).unwrap_or(0);
            lost[i] += n.max(0);
            Ok(())
        },
    )?;
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
