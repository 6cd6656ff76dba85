//! DNS messages: the query parser, the cheap pre-check, TCP framing and name rendering.
#![no_main]

use exfilmon::decode::dns;
use libfuzzer_sys::fuzz_target;

fn check(msg: &[u8]) {
    if let Ok(q) = dns::parse(msg) {
        let name = q.qname;
        assert!(name.label_count() <= dns::MAX_LABELS);
        assert!(name.len() <= dns::MAX_NAME_LEN);
        let mut total = 0;
        assert_eq!(name.labels().count(), name.label_count());
        for label in name.labels() {
            total += label.len();
            assert!(label.len() <= name.longest_label());
        }
        assert!(total <= name.len());
        std::hint::black_box(format!("{name:?} {}", dns::type_name(q.qtype)));
    }
    std::hint::black_box(dns::looks_like_query(msg));
    let mut addrs = [std::net::IpAddr::from([0u8; 4]); 8];
    assert!(dns::answer_addresses(msg, &mut addrs) <= addrs.len());
}

fuzz_target!(|data: &[u8]| {
    check(data);
    for msg in dns::tcp_messages(data) {
        check(msg);
    }
});
