//! Time bounds for reports, in the forms `ausearch -ts` users know: RFC 3339, a date,
//! `now`, `recent` (10 minutes ago), `today`, `yesterday`, `this-week`, `this-month`,
//! `this-year`, or a relative age such as `2h`, `30m`, `7d`.

use chrono::{DateTime, Datelike, Duration, Local, NaiveDate, NaiveTime, TimeZone};

/// Parses a time bound relative to `now`; returns microseconds since the epoch.
pub fn parse(s: &str, now: DateTime<Local>) -> Result<i64, String> {
    let s = s.trim();
    let midnight = |d: NaiveDate| -> Result<i64, String> {
        Local
            .from_local_datetime(&d.and_time(NaiveTime::MIN))
            .earliest()
            .map(|t| t.timestamp_micros())
            .ok_or_else(|| format!("{s:?} does not exist in the local time zone"))
    };
    let today = now.date_naive();
    match s {
        "now" => return Ok(now.timestamp_micros()),
        "recent" => return Ok((now - Duration::minutes(10)).timestamp_micros()),
        "today" => return midnight(today),
        "yesterday" => return midnight(today - Duration::days(1)),
        "this-week" => return midnight(today - Duration::days(i64::from(today.weekday().num_days_from_monday()))),
        "this-month" => return midnight(today.with_day(1).unwrap_or(today)),
        "this-year" => return midnight(today.with_ordinal(1).unwrap_or(today)),
        _ => {}
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_micros());
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return midnight(d);
    }
    if let Ok(age) = humantime::parse_duration(s) {
        let age = Duration::from_std(age).map_err(|_| format!("{s:?} is too far back"))?;
        return Ok((now - age).timestamp_micros());
    }
    Err(format!(
        "invalid time {s:?}: use RFC 3339 (2026-11-22T08:00:00Z), a date (2026-11-22), an age (2h, 30m, 7d) \
         or one of now, recent, today, yesterday, this-week, this-month, this-year"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Local> {
        DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z").unwrap().with_timezone(&Local)
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
    }
}
