//! How tables show times: local time with its zone's abbreviation (`2026-11-22 01:57:00 EST`),
//! as `date` prints it, or UTC for everyone (`--utc`). JSON and CSV always carry RFC 3339 UTC.

use std::sync::atomic::{AtomicBool, Ordering};

static UTC: AtomicBool = AtomicBool::new(false);

/// Tables of this process show UTC (`--utc`) instead of local time.
pub fn show_utc(utc: bool) {
    UTC.store(utc, Ordering::Relaxed);
}

pub fn utc() -> bool {
    UTC.load(Ordering::Relaxed)
}

/// A time for a person: local with the zone's abbreviation (or UTC), to the second.
pub fn human(us: i64) -> String {
    render(us, utc())
}

fn render(us: i64, utc: bool) -> String {
    let secs = us.div_euclid(1_000_000);
    if !utc {
        if let Some((offset, zone)) = local_offset(secs) {
            if let Some(t) = chrono::DateTime::from_timestamp(secs, 0)
                .and_then(|t| chrono::FixedOffset::east_opt(offset).map(|o| t.with_timezone(&o)))
            {
                return format!("{} {zone}", t.format("%Y-%m-%d %H:%M:%S"));
            }
        }
    }
    chrono::DateTime::from_timestamp(secs, 0)
        .map_or_else(|| us.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// The C library's view of local time at `secs` (TZ, else /etc/localtime): the offset east of
/// UTC in seconds and the zone's abbreviation (`EST`, `CET`, or `+0530` where it has none).
fn local_offset(secs: i64) -> Option<(i32, String)> {
    // time_t is 32 bits on some targets.
    #[allow(clippy::useless_conversion)]
    let t: libc::time_t = secs.try_into().ok()?;
    // SAFETY: localtime_r writes only into `tm`, which outlives the call; tm_zone then points at
    // static storage of the C library (or is null), read once here.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return None;
        }
        let offset = i32::try_from(tm.tm_gmtoff).ok()?;
        let zone = if tm.tm_zone.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(tm.tm_zone).to_string_lossy().into_owned()
        };
        let zone = if zone.is_empty() || !zone.bytes().all(|b| b.is_ascii_graphic()) {
            format!("{}{:02}{:02}", if offset < 0 { '-' } else { '+' }, offset.abs() / 3600, offset.abs() % 3600 / 60)
        } else {
            zone
        };
        Some((offset, zone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_says_so() {
        assert_eq!(render(1_700_000_000_000_000, true), "2023-11-14 22:13:20 UTC");
        // Far outside any time zone database: still a time, in UTC.
        assert!(render(i64::MIN, false).ends_with("UTC") || render(i64::MIN, false).parse::<i64>().is_ok());
    }
}
