//! NFLOG records (the netlink message body, as in LINKTYPE_NFLOG captures) and whole netlink
//! datagrams as the kernel hands them to the live source.
#![no_main]

use exfilmon::decode::nflog;
use exfilmon::source::nflog::{read_datagram, Sequence, SourceStats};
use exfilmon::decode::Frame;
use exfilmon::source::FrameSink;
use libfuzzer_sys::fuzz_target;

struct Parse;

impl FrameSink for Parse {
    fn frame(&mut self, frame: Frame<'_>) {
        let _ = std::hint::black_box(nflog::parse(frame.data));
    }
    fn damaged_record(&mut self) {}
}

fuzz_target!(|data: &[u8]| {
    let _ = std::hint::black_box(nflog::parse(data));
    let mut stats = SourceStats::default();
    let records = read_datagram(data, 0, 7, &mut Sequence::default(), &mut stats, &mut Parse);
    assert_eq!(stats.records, records as u64);
});
