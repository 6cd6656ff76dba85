//! Human units in configs and flags: durations (`10m`, `1h30m`) and byte sizes (`256KiB`, `5MB`).

use std::time::Duration;

/// The longest duration taken anywhere (config keys, report ages): 100 years (`100y`, of
/// 365.25 days). Anything longer is a typo, and would overflow the clock and date arithmetic
/// done with it.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// Parses a duration such as `90s`, `10m`, `1h30m` or `2d`, from above zero to [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?}: {e} (examples: 30s, 10m, 1h30m, 2d)"))?;
    if d.is_zero() {
        return Err(format!("invalid duration {s:?}: must be greater than zero"));
    }
    at_most_max(s, d)
}

/// `d`, parsed from `s`, if it is at most [`MAX_DURATION`].
pub fn at_most_max(s: &str, d: Duration) -> Result<Duration, String> {
    if d > MAX_DURATION {
        return Err(format!("invalid duration {s:?}: at most 100 years (100y)"));
    }
    Ok(d)
}

/// Parses a byte size such as `4096`, `256KiB`, `5MB` or `1GiB`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let n = s
        .trim()
        .parse::<bytesize::ByteSize>()
        .map_err(|e| format!("invalid size {s:?}: {e} (examples: 4096, 256KiB, 5MB, 1GiB)"))?
        .as_u64();
    if n == 0 {
        return Err(format!("invalid size {s:?}: must be greater than zero"));
    }
    Ok(n)
}

/// Formats a byte count the way a person reads it: `4.9 MiB`, `512 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Formats a duration compactly: `10m`, `1h30m`, `45s`.
pub fn human_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return format!("{}ms", d.as_millis());
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    out
}

/// Now, in microseconds since the epoch: for what the wall clock rightly decides (run start,
/// report ranges), never for packet time.
pub fn wall_clock_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

pub fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map_or_else(|| us.to_string(), |d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Deserializers for configuration values, shared by every component's config section.
pub mod de {
    use std::time::Duration;

    use serde::{de, Deserialize, Deserializer};

    pub fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        match u32::deserialize(d)? {
            0 => Err(de::Error::custom("must be at least 1")),
            n => Ok(n),
        }
    }

    pub fn positive_usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        match usize::deserialize(d)? {
            0 => Err(de::Error::custom("must be at least 1")),
            n => Ok(n),
        }
    }

    /// Domain names, lower-cased, without a trailing dot.
    pub fn domains<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Vec::<String>::deserialize(d)?
            .into_iter()
            .map(|s| {
                let name = s.trim().trim_end_matches('.').to_ascii_lowercase();
                let ok = !name.is_empty()
                    && name.len() <= 253
                    && name
                        .split('.')
                        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)));
                if ok {
                    Ok(name)
                } else {
                    Err(de::Error::custom(format!(
                        "{:?} is not a domain name (labels of letters, digits, - and _)",
                        crate::escape::printable(&s)
                    )))
                }
            })
            .collect()
    }

    pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(de::Error::custom)
    }

    pub fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Size {
            Number(u64),
            Text(String),
        }
        match Size::deserialize(d)? {
            Size::Number(0) => Err(de::Error::custom("size must be greater than zero")),
            Size::Number(n) => Ok(n),
            Size::Text(s) => super::parse_bytes(&s).map_err(de::Error::custom),
        }
    }
}

/// Declares a counter struct once: each field with the name it is stored and reported under.
/// Generates the struct (all `u64`, `Default`, `Copy`) and `each`, which visits them in order.
macro_rules! counters {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* $field:ident => $key:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: u64,)*
        }

        impl $name {
            /// Each counter with its stored name.
            pub fn each(&self, f: &mut dyn FnMut(&'static str, u64)) {
                $(f($key, self.$field);)*
            }
        }
    };
}
pub(crate) use counters;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten minutes").is_err());
        assert_eq!(parse_duration("100y").unwrap(), MAX_DURATION);
        // Accepted by humantime, but past any clock: refused here, for every caller.
        for long in ["101y", "500000000000y", "18446744073709551615s"] {
            let e = parse_duration(long).unwrap_err();
            assert!(e.contains("at most 100 years"), "{long}: {e}");
        }
        assert_eq!(human_duration(Duration::from_secs(5400)), "1h30m");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("256KiB").unwrap(), 256 * 1024);
        assert_eq!(parse_bytes("5MB").unwrap(), 5_000_000);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("0").is_err());
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(human_bytes(10), "10 B");
    }
}
