//! The whole pipeline (decode, volume/DNS/ICMP detectors, flow table) over a sequence of
//! arbitrary frames with hostile timestamps, into an output that only checks what it gets.
//!
//! Input: one byte picks the configuration (defaults, or tiny thresholds and caps so the
//! alert, escalation and eviction paths run; bit 0) and how frames are handed over (bits 1-7),
//! then frames, each `link: u8` (bit 7: an absolute
//! i64 timestamp follows, else a u16 of milliseconds after the previous frame), `len: u16`,
//! `len` bytes.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use exfilmon::alert::Alert;
use exfilmon::config::Config;
use exfilmon::rows::{DnsRow, EgressRow};
use exfilmon::pipeline::{Output, Pipeline};
use exfilmon::decode::{Frame, LinkType};
use exfilmon::source::FrameSink;
use libfuzzer_sys::fuzz_target;

const LINKS: [LinkType; 7] = LinkType::ALL;

const TINY: &str = r#"
[[volume]]
window = "1s"
bytes = "100B"
[[volume]]
window = "1m"
bytes = "1KiB"
severity = "high"
[dns]
window = "1m"
encoded_names = 1
unique_names = 2
unique_bytes = "16B"
min_encoded_chars = 1
long_name = 8
raw_packets = 1
escalate_bytes = "32B"
max_pairs = 2
max_names = 3
[icmp]
window = "1m"
carried_bytes = "8B"
signature_packets = 1
escalate_bytes = "16B"
max_pairs = 2
"#;

struct Check;

impl Output for Check {
    fn rows(&mut self, rows: Vec<EgressRow>) {
        std::hint::black_box(rows);
    }
    fn alert(&mut self, alert: &Alert) {
        assert!(!alert.summary.contains('\n'), "alert summary spans lines: {:?}", alert.summary);
        std::hint::black_box(alert.details.to_string());
    }
    fn dns_rows(&mut self, rows: Vec<DnsRow>) {
        std::hint::black_box(rows);
    }
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, rest) = data.split_at_checked(n)?;
    *data = rest;
    Some(head)
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let Some(&[pick]) = take(&mut data, 1) else { return };
    // Parsed once: a TOML parse per input would be most of the time spent.
    static CONFIGS: OnceLock<[Config; 2]> = OnceLock::new();
    let configs = CONFIGS.get_or_init(|| {
        [Config::default(), Config::parse(TINY, Path::new("tiny.toml")).expect("the tiny config parses")]
    });
    let mut pipeline = Pipeline::new(&configs[usize::from(pick & 1)], Check);
    let mut ts_us: i64 = 1_700_000_000_000_000;
    let mut frames = Vec::new();
    loop {
        let Some(&[link]) = take(&mut data, 1) else { break };
        if link & 0x80 != 0 {
            let Some(b) = take(&mut data, 8) else { break };
            ts_us = i64::from_le_bytes(b.try_into().unwrap_or_default());
        } else {
            let Some(b) = take(&mut data, 2) else { break };
            ts_us = ts_us.saturating_add(i64::from(u16::from_le_bytes([b[0], b[1]])) * 1000);
        }
        let Some(b) = take(&mut data, 2) else { break };
        let len = usize::from(u16::from_le_bytes([b[0], b[1]]));
        let len = len.min(data.len());
        let frame = take(&mut data, len).unwrap_or_default();
        let link = LINKS[usize::from(link & 0x7f) % LINKS.len()];
        frames.push(Frame { ts_us, link, data: frame });
    }
    // Bit 1: one by one, as live capture hands them over; else in batches (replay's path, with
    // its prefetches) of 1 to 64 frames, from the pick's other bits.
    if pick & 2 != 0 {
        frames.iter().for_each(|f| pipeline.frame(*f));
    } else {
        frames.chunks(usize::from(pick >> 2) + 1).for_each(|c| pipeline.frames(c));
    }
    pipeline.flush();
});
