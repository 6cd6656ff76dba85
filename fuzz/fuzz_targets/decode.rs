//! Link, IP and transport decoding: the first byte picks the link type, the rest is the frame.
#![no_main]

use exfilmon::decode;
use exfilmon::decode::{Frame, LinkType};
use libfuzzer_sys::fuzz_target;

const LINKS: [LinkType; 7] = LinkType::ALL;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, data)) = data.split_first() else { return };
    let frame = Frame { ts_us: 0, link: LINKS[usize::from(pick) % LINKS.len()], data };
    if let Ok(p) = decode::decode(&frame) {
        // Every length the packet reports must be one the frame can back.
        let payload = match p.l4 {
            decode::L4::Tcp { payload } | decode::L4::Udp { payload } | decode::L4::Icmp { payload, .. } => payload,
            decode::L4::Other => &[],
        };
        assert!(payload.len() <= data.len());
    }
});
