//! Time bounds for reports, in the forms people type: RFC 3339, a date or a date and time in
//! the local zone (`2026-11-22`, `2026-11-22 08:00`, `2026-11-22T08:00`), a time of day
//! (`14:00`, today), a day and a time (`yesterday 14:00`), an age (`2h`, `1h ago`,
//! `10 minutes ago`), or `ausearch -ts` keywords: `now`, `recent` (10 minutes ago), `boot`,
//! `today`, `yesterday`, `this-week`, `week-ago`, `this-month`, `this-year`.
//!
//! Dates and times without a zone are in the zone of `now`: local, or UTC under `--utc`.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};

const FORMS: &str = "use a date (2026-11-22), a date and time (\"2026-11-22 08:00\", 2026-11-22T08:00), \
RFC 3339 (2026-11-22T08:00:00Z), a time today (14:00), a day and time (\"yesterday 14:00\"), an age \
(2h, \"1h ago\", \"30 minutes ago\") or one of now, recent, boot, today, yesterday, this-week, \
week-ago, this-month, this-year";

/// Parses a time bound relative to `now`, reading dates and times without a zone in `now`'s
/// zone; returns microseconds since the epoch.
pub fn parse<Tz: TimeZone>(s: &str, now: DateTime<Tz>) -> Result<i64, String> {
    let s = s.trim();
    let zone = now.timezone();
    let at = |d: NaiveDate, t: NaiveTime| -> Result<i64, String> {
        // A time skipped by a DST change does not exist; one repeated takes its first instance.
        zone.from_local_datetime(&d.and_time(t))
            .earliest()
            .map(|t| t.timestamp_micros())
            .ok_or_else(|| format!("{s:?} does not exist in the time zone"))
    };
    let today = now.date_naive();
    let day = |word: &str| -> Option<NaiveDate> {
        Some(match word {
            "today" => today,
            "yesterday" => today.checked_sub_signed(Duration::days(1))?,
            "this-week" => {
                today.checked_sub_signed(Duration::days(i64::from(today.weekday().num_days_from_monday())))?
            }
            // ausearch: midnight a week ago.
            "week-ago" => today.checked_sub_signed(Duration::days(7))?,
            "this-month" => today.with_day(1)?,
            "this-year" => today.with_ordinal(1)?,
            _ => return None,
        })
    };
    match s {
        "now" => return Ok(now.timestamp_micros()),
        "recent" => {
            return now
                .checked_sub_signed(Duration::minutes(10))
                .map(|t| t.timestamp_micros())
                .ok_or_else(|| format!("{s:?} is too far back"))
        }
        "boot" => return boot(&now),
        _ => {}
    }
    if let Some(d) = day(s) {
        return at(d, NaiveTime::MIN);
    }
    // "yesterday 14:00", "today 08:30:00"
    if let Some((word, time)) = s.split_once(char::is_whitespace) {
        if let (Some(d), Some(t)) = (day(word), time_of_day(time.trim())) {
            return at(d, t);
        }
    }
    if let Some(t) = time_of_day(s) {
        return at(today, t);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_micros());
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return at(d, NaiveTime::MIN);
    }
    for f in ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return at(t.date(), t.time());
        }
    }
    let age = s.strip_suffix("ago").map(str::trim_end).unwrap_or(s);
    if let Ok(d) = humantime::parse_duration(age) {
        // The same bound as every duration; the date arithmetic is checked all the same.
        let d = crate::units::at_most_max(s, d)?;
        return Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .map(|t| t.timestamp_micros())
            .ok_or_else(|| format!("{s:?} is too far back"));
    }
    Err(format!("invalid time {s:?}: {FORMS}"))
}

/// `14:00` or `14:00:30`.
fn time_of_day(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M").or_else(|_| NaiveTime::parse_from_str(s, "%H:%M:%S")).ok()
}

/// When the system booted: now less the uptime the kernel reports.
fn boot<Tz: TimeZone>(now: &DateTime<Tz>) -> Result<i64, String> {
    let text = std::fs::read_to_string("/proc/uptime").map_err(|e| format!("boot: cannot read /proc/uptime: {e}"))?;
    let secs: f64 = text
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| s.is_finite() && *s >= 0.0)
        .ok_or("boot: /proc/uptime holds no uptime")?;
    Ok(now.timestamp_micros().saturating_sub((secs * 1e6) as i64))
}

#[cfg(test)]
mod tests {
    use chrono::{FixedOffset, Local, Utc};

    use super::*;

    fn now() -> DateTime<Local> {
        DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z").unwrap().with_timezone(&Local)
    }

    /// 2026-11-22T12:00:00 in New York's winter offset.
    fn new_york() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2026-11-22T12:00:00-05:00").unwrap()
    }

    fn us(rfc: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc).unwrap().timestamp_micros()
    }

    #[test]
    fn forms() {
        let n = now().timestamp_micros();
        assert_eq!(parse("now", now()).unwrap(), n);
        assert_eq!(parse("2h", now()).unwrap(), n - 7_200_000_000);
        assert_eq!(parse("recent", now()).unwrap(), n - 600_000_000);
        assert_eq!(parse("2026-11-22T11:00:00Z", now()).unwrap(), n - 3_600_000_000);
        assert!(parse("today", now()).unwrap() <= n);
        assert!(parse("yesterday", now()).unwrap() < parse("today", now()).unwrap());
        assert!(parse("2026-11-01", now()).is_ok());
        assert!(parse("last tuesday", now()).is_err());
        assert!(parse("boot", now()).unwrap() < n);
    }

    /// What people type, read in the zone of `now` (issue 14: local midnight and local times).
    #[test]
    fn local_forms_in_the_zone_of_now() {
        let ny = new_york();
        assert_eq!(parse("2026-11-22", ny).unwrap(), us("2026-11-22T00:00:00-05:00"));
        assert_eq!(parse("2026-11-22 08:00", ny).unwrap(), us("2026-11-22T08:00:00-05:00"));
        assert_eq!(parse("2026-11-22T08:00", ny).unwrap(), us("2026-11-22T08:00:00-05:00"));
        assert_eq!(parse("2026-11-22 08:00:30", ny).unwrap(), us("2026-11-22T08:00:30-05:00"));
        assert_eq!(parse("yesterday 14:00", ny).unwrap(), us("2026-11-21T14:00:00-05:00"));
        assert_eq!(parse("today 08:30", ny).unwrap(), us("2026-11-22T08:30:00-05:00"));
        assert_eq!(parse("14:00", ny).unwrap(), us("2026-11-22T14:00:00-05:00"));
        assert_eq!(parse("week-ago", ny).unwrap(), us("2026-11-15T00:00:00-05:00"));
        assert_eq!(parse("1h ago", ny).unwrap(), us("2026-11-22T11:00:00-05:00"));
        assert_eq!(parse("10 minutes ago", ny).unwrap(), us("2026-11-22T11:50:00-05:00"));
        assert_eq!(parse("1h", ny).unwrap(), parse("1h ago", ny).unwrap());
        // Under --utc the same words mean UTC.
        let utc = ny.with_timezone(&Utc);
        assert_eq!(parse("2026-11-22 08:00", utc).unwrap(), us("2026-11-22T08:00:00Z"));
        let e = parse("yesterday 25:00", ny).unwrap_err();
        assert!(e.contains("\"2026-11-22 08:00\"") && e.contains("week-ago"), "{e}");
    }

    /// Ages past any date, and dates at the ends of chrono's range: an error or a time,
    /// never a panic.
    #[test]
    fn extremes_are_errors_not_panics() {
        assert_eq!(parse("100y", now()).unwrap(), now().timestamp_micros() - 3_155_760_000_000_000);
        for age in ["300000y", "500000000000y", "18446744073709551615s", "300000y ago"] {
            let e = parse(age, now()).unwrap_err();
            assert!(e.contains("at most 100 years"), "{age}: {e}");
        }
        for date in ["+262142-12-31", "-262143-01-01", "262143-12-31T23:59:59Z", "0000-01-01T00:00:00Z"] {
            let _ = parse(date, now());
        }
        let far = DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z").unwrap().with_timezone(&Local);
        assert!(parse("this-week", far).is_ok());
        let first = DateTime::<Utc>::MIN_UTC;
        for word in ["yesterday", "week-ago", "yesterday 14:00", "1s ago", "recent"] {
            let _ = parse(word, first);
        }
    }
}
