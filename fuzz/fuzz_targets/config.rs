//! The configuration file, including what the commands derive from it (the nftables ruleset).
#![no_main]

use std::path::Path;

use exfilmon::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(config) = Config::parse(&text, Path::new("fuzz.toml")) {
        std::hint::black_box(exfilmon::nft::render(&config));
    }
});
