//! TLS ClientHello server names: never a panic, and a name is always a plausible host name.
#![no_main]

use exfilmon::decode::tls;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(name) = tls::server_name(data) {
        assert!(!name.is_empty() && name.len() <= tls::MAX_SNI);
        assert!(name.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')));
    }
});
