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
        // The same bound as every duration; the date arithmetic is checked all the same.
        let age = crate::units::at_most_max(s, age)?;
        return Duration::from_std(age)
            .ok()
            .and_then(|age| now.checked_sub_signed(age))
            .map(|t| t.timestamp_micros())
            .ok_or_else(|| format!("{s:?} is too far back"));
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

    /// Ages past any date, and dates at the ends of chrono's range: an error or a time,
    /// never a panic.
    #[test]
    fn extremes_are_errors_not_panics() {
        assert_eq!(parse("100y", now()).unwrap(), now().timestamp_micros() - 3_155_760_000_000_000);
        for age in ["300000y", "500000000000y", "18446744073709551615s"] {
            let e = parse(age, now()).unwrap_err();
            assert!(e.contains("at most 100 years"), "{age}: {e}");
        }
        for date in ["+262142-12-31", "-262143-01-01", "262143-12-31T23:59:59Z", "0000-01-01T00:00:00Z"] {
            let _ = parse(date, now());
        }
        let far = DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z").unwrap().with_timezone(&Local);
        assert!(parse("this-week", far).is_ok());
    }
}
