//! auditd log lines: the line parser and the event assembler, over the lines of the input.
#![no_main]

use exfilmon::source::audit::parse::Record;
use exfilmon::detect::sensitive::SensitiveConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut reader = SensitiveConfig::default().audit_reader(false);
    for line in data.split(|&b| b == b'\n') {
        let _ = std::hint::black_box(Record::parse(line));
        reader.line(line, &mut |ev| drop(std::hint::black_box(ev)));
    }
    reader.finish(&mut |ev| drop(std::hint::black_box(ev)));
    std::hint::black_box(reader.counters());
});
