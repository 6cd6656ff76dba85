//! Report time bounds (`report --since/--until`): any text, against any clock from 2000 to
//! 2136. A bound is a time chrono can represent, or an error; never a panic.
#![no_main]

use chrono::{DateTime, Local};
use exfilmon::units::rfc3339;
use exfilmon::report::when;
use libfuzzer_sys::fuzz_target;

/// 2000-01-01T00:00:00Z.
const Y2K: i64 = 946_684_800;

fuzz_target!(|data: &[u8]| {
    let Some((clock, text)) = data.split_first_chunk::<4>() else { return };
    let now = DateTime::from_timestamp(Y2K + i64::from(u32::from_le_bytes(*clock)), 0).unwrap();
    let text = String::from_utf8_lossy(text);
    if let Ok(us) = when::parse(&text, now.with_timezone(&Local)) {
        assert!(DateTime::from_timestamp_micros(us).is_some(), "{text:?}: {us}");
        std::hint::black_box(rfc3339(us));
    }
});
