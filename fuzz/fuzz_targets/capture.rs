//! pcap/pcapng reading: any bytes as a capture file, frames discarded.
#![no_main]

use std::path::Path;

use exfilmon::decode::Frame;
use exfilmon::source::{pcap, FrameSink};
use libfuzzer_sys::fuzz_target;

struct Discard;

impl FrameSink for Discard {
    fn frame(&mut self, frame: Frame<'_>) {
        std::hint::black_box(frame);
    }
    fn damaged_record(&mut self) {}
}

fuzz_target!(|data: &[u8]| {
    let _ = pcap::read(Path::new("fuzz.pcap"), data, &mut Discard, &mut |_| {});
});
