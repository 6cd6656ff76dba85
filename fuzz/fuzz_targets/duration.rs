//! The shared duration parser (every duration in the config: windows, a sink's timeout and
//! backoff, delivery_grace, checkpoint_interval, heartbeat), and what callers do with its
//! result: deadlines on both clocks, microseconds, dates.
#![no_main]

use std::time::{Instant, SystemTime};

use exfilmon::units::{self, MAX_DURATION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(d) = units::parse_duration(&text) {
        assert!(!d.is_zero() && d <= MAX_DURATION, "{text:?}: {d:?}");
        assert!(Instant::now().checked_add(d).is_some(), "{text:?}");
        assert!(SystemTime::now().checked_add(d).is_some(), "{text:?}");
        let us = i64::try_from(d.as_micros()).unwrap();
        assert!(us.checked_add(us).is_some(), "{text:?}");
        assert!(chrono::TimeDelta::from_std(d).is_ok(), "{text:?}");
        std::hint::black_box(units::human_duration(d));
    }
    if let Ok(n) = units::parse_bytes(&text) {
        std::hint::black_box(units::human_bytes(n));
    }
});
