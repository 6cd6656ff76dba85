//! IPv4 / IPv6 (extension headers skipped by `etherparse`'s lax slicer) and the transport
//! header fields exfilmon needs. Captured bytes may end anywhere after the IP header: the
//! transport is then [`L4::Other`] but the packet still counts with its full wire length.

use etherparse::LaxIpSlice;

use super::{DecodeError, Direction, Packet, L4, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

pub fn decode(ip: &[u8], ts_us: i64, uid: Option<u32>, gid: Option<u32>) -> Result<Packet<'_>, DecodeError> {
    let (slice, _ext_err) = LaxIpSlice::from_slice(ip).map_err(|e| match e {
        etherparse::err::ip::LaxHeaderSliceError::Len(_) => DecodeError::Truncated,
        etherparse::err::ip::LaxHeaderSliceError::Content(_) => DecodeError::BadIp,
    })?;
    let wire_len = wire_len(&slice, ip.len());
    let payload = slice.payload();
    let proto = payload.ip_number.0;
    // Only the first fragment carries the transport header: offset 0, in IPv4's header or in
    // every IPv6 fragment header (a tunnel that fragments over IPv6 is decoded like one over
    // IPv4; the fragment's own length is what is counted).
    let first_fragment = match &slice {
        LaxIpSlice::Ipv4(v4) => v4.header().fragments_offset().value() == 0,
        LaxIpSlice::Ipv6(_) => !payload.fragmented || ipv6_fragment_offset_zero(ip),
    };
    let (sport, dport, l4) = if first_fragment { transport(proto, payload.payload) } else { (0, 0, L4::Other) };
    Ok(Packet {
        ts_us,
        uid,
        gid,
        src: slice.source_addr(),
        dst: slice.destination_addr(),
        proto,
        sport,
        dport,
        wire_len,
        direction: Direction::Unknown,
        l4,
    })
}

/// Whether every IPv6 fragment header in `ip`'s extension chain has offset 0 (a first
/// fragment). Walked here over the captured bytes, bounds checked: etherparse's extension
/// iterator trusts the lengths of a lax slice and reads past a truncated header (found by the
/// decode fuzz target).
fn ipv6_fragment_offset_zero(ip: &[u8]) -> bool {
    const HOP_BY_HOP: u8 = 0;
    const ROUTING: u8 = 43;
    const FRAGMENT: u8 = 44;
    const AUTH: u8 = 51;
    const DEST_OPTS: u8 = 60;
    let (Some(&first), Some(mut rest)) = (ip.get(6), ip.get(40..)) else { return false };
    let mut next = first;
    // Real chains are short; a bound against crafted ones.
    for _ in 0..8 {
        let (Some(&following), Some(&len)) = (rest.first(), rest.get(1)) else { return true };
        let size = match next {
            HOP_BY_HOP | ROUTING | DEST_OPTS => (usize::from(len) + 1) * 8,
            AUTH => (usize::from(len) + 2) * 4,
            FRAGMENT => {
                let Some(bytes) = rest.get(2..4) else { return false };
                if u16::from_be_bytes([bytes[0], bytes[1]]) >> 3 != 0 {
                    return false;
                }
                8
            }
            _ => return true,
        };
        next = following;
        match rest.get(size..) {
            Some(r) => rest = r,
            None => return true,
        }
    }
    true
}

/// Bytes the packet had on the wire. The IP length fields are authoritative even when the
/// capture holds less; where they are unusable (0 for TSO/BIG TCP super-packets or IPv6
/// jumbograms) the captured length is the best remaining figure.
fn wire_len(slice: &LaxIpSlice<'_>, captured: usize) -> u32 {
    let claimed = match slice {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            let total = u32::from(h.total_len());
            (total >= u32::from(h.ihl()) * 4).then_some(total)
        }
        LaxIpSlice::Ipv6(v6) => {
            let plen = u32::from(v6.header().payload_length());
            (plen > 0).then_some(plen + 40)
        }
    };
    claimed.unwrap_or(captured as u32)
}

fn transport(proto: u8, p: &[u8]) -> (u16, u16, L4<'_>) {
    let ports = |p: &[u8]| match p {
        [a, b, c, d, ..] => Some((u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d]))),
        _ => None,
    };
    match proto {
        PROTO_TCP => match ports(p) {
            Some((s, d)) => {
                // Data offset in 32-bit words; a header cut by the snaplen leaves no payload.
                let hlen = p.get(12).map_or(usize::MAX, |b| usize::from(b >> 4) * 4);
                let l4 = match p.get(hlen.max(20)..) {
                    Some(payload) => L4::Tcp { payload },
                    None => L4::Tcp { payload: &[] },
                };
                (s, d, l4)
            }
            None => (0, 0, L4::Other),
        },
        PROTO_UDP => match ports(p) {
            Some((s, d)) => (s, d, L4::Udp { payload: p.get(8..).unwrap_or(&[]) }),
            None => (0, 0, L4::Other),
        },
        PROTO_ICMP | PROTO_ICMPV6 => match p {
            [kind, code, ..] => {
                let payload = p.get(8..).unwrap_or(&[]);
                (0, 0, L4::Icmp { v6: proto == PROTO_ICMPV6, kind: *kind, code: *code, payload })
            }
            _ => (0, 0, L4::Other),
        },
        _ => (0, 0, L4::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzz finding (decode target, ASan heap-buffer-overflow): a truncated IPv6 extension
    /// chain read past its end through etherparse's extension iterator; the walk is ours now.
    #[test]
    fn truncated_ipv6_extension_chain_is_read_within_bounds() {
        let input: &[u8] = &[
            3, 96, 0, 54, 0, 0, 0, 44, 0, 64, 32, 3, 13, 184, 0, 0, 0, 0, 248, 0, 0, 0, 0, 0, 0, 16, 32, 1, 13, 184, 0,
            1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0, 0, 6, 0, 1, 2, 250, 240, 142, 34, 0, 0, 2, 4, 36,
            180, 1, 1, 4, 2,
        ];
        for cut in 0..=input.len() {
            let _ = decode(&input[..cut], 0, None, None);
            let _ = ipv6_fragment_offset_zero(&input[..cut]);
        }
    }

    /// IPv4 header (no options) for `proto` with the given total length, then `rest`.
    fn v4(proto: u8, total_len: u16, rest: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0, 192, 0, 2, 1, 198, 51, 100, 7];
        p[2..4].copy_from_slice(&total_len.to_be_bytes());
        p.extend_from_slice(rest);
        p
    }

    fn tcp_header(sport: u16, dport: u16) -> Vec<u8> {
        let mut h = vec![0; 20];
        h[0..2].copy_from_slice(&sport.to_be_bytes());
        h[2..4].copy_from_slice(&dport.to_be_bytes());
        h[12] = 5 << 4;
        h
    }

    #[test]
    fn tcp_over_ipv4() {
        let mut seg = tcp_header(40000, 22);
        seg.extend_from_slice(b"hello");
        let buf = v4(6, 45, &seg);
        let p = decode(&buf, 7, Some(1000), Some(100)).unwrap();
        assert_eq!((p.sport, p.dport, p.proto, p.wire_len), (40000, 22, 6, 45));
        assert_eq!(p.l4, L4::Tcp { payload: b"hello" });
        assert_eq!((p.uid, p.gid, p.ts_us), (Some(1000), Some(100), 7));
        assert_eq!(p.dst.to_string(), "198.51.100.7");
    }

    #[test]
    fn snaplen_cut_super_packet_counts_its_ip_length() {
        // A 64000-byte TSO packet of which 60 bytes were captured.
        let buf = v4(6, 64_000, &tcp_header(1, 443));
        let p = decode(&buf, 0, None, None).unwrap();
        assert_eq!(p.wire_len, 64_000);
        assert_eq!(p.dport, 443);
    }

    #[test]
    fn zero_total_length_falls_back_to_captured_length() {
        let buf = v4(6, 0, &tcp_header(1, 443));
        let p = decode(&buf, 0, None, None).unwrap();
        assert_eq!(p.wire_len, 40);
    }

    #[test]
    fn transport_header_cut_to_two_bytes_still_counts() {
        let buf = v4(6, 1500, &[0x9c, 0x40]);
        let p = decode(&buf, 0, None, None).unwrap();
        assert_eq!((p.wire_len, p.dport, p.l4), (1500, 0, L4::Other));
    }

    #[test]
    fn tcp_data_offset_past_capture_gives_empty_payload() {
        let mut h = tcp_header(1, 2);
        h[12] = 15 << 4;
        let buf = v4(6, 100, &h);
        let p = decode(&buf, 0, None, None).unwrap();
        assert_eq!(p.l4, L4::Tcp { payload: &[] });
    }

    #[test]
    fn non_first_fragment_has_no_ports() {
        let mut pkt = v4(17, 28, &[0, 53, 0, 53, 0, 8, 0, 0]);
        pkt[6] = 0x00;
        pkt[7] = 0x10; // fragment offset 16 * 8 bytes
        let p = decode(&pkt, 0, None, None).unwrap();
        assert_eq!((p.sport, p.dport, p.l4), (0, 0, L4::Other));
    }

    #[test]
    fn udp_and_icmp() {
        let buf = v4(17, 33, &[0x30, 0x39, 0, 53, 0, 13, 0, 0, 1, 2, 3, 4, 5]);
        let p = decode(&buf, 0, None, None).unwrap();
        assert_eq!((p.sport, p.dport), (12345, 53));
        assert_eq!(p.l4, L4::Udp { payload: &[1, 2, 3, 4, 5] });
        let buf = v4(1, 30, &[8, 0, 0, 0, 0, 1, 0, 1, 0xd5, 0x20]);
        let p = decode(&buf, 0, None, None).unwrap();
        assert_eq!(p.l4, L4::Icmp { v6: false, kind: 8, code: 0, payload: &[0xd5, 0x20] });
    }

    #[test]
    fn ipv6_with_hop_by_hop_then_udp() {
        let mut p = vec![0x60, 0, 0, 0, 0, 16, 0, 64];
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop: next UDP, PadN
        p.extend_from_slice(&[0x04, 0xd2, 0x01, 0xbb, 0, 8, 0, 0]);
        let d = decode(&p, 0, None, None).unwrap();
        assert_eq!((d.proto, d.sport, d.dport, d.wire_len), (17, 1234, 443, 56));
    }

    /// IPv6 to 2001:db8::2 with a fragment header (offset in 8-byte units, more-fragments
    /// set) before UDP; `plen` is the IPv6 payload length.
    fn v6_fragment(offset: u16, more: bool, plen: u16, rest: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 0, 44, 64];
        p[4..6].copy_from_slice(&plen.to_be_bytes());
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        let off = offset << 3 | u16::from(more);
        p.extend_from_slice(&[17, 0, (off >> 8) as u8, off as u8, 0, 0, 0x12, 0x34]);
        p.extend_from_slice(rest);
        p
    }

    /// Issue 16, case 4: DNS in an IPv6 first fragment has ports and payload, as over IPv4.
    #[test]
    fn ipv6_first_fragment_carries_the_transport_header() {
        let udp = [0x9c, 0x40, 0, 53, 0x05, 0xdc, 0, 0, 0xab, 0xcd, 1, 0];
        let first = v6_fragment(0, true, 1448, &udp);
        let p = decode(&first, 0, None, None).unwrap();
        assert_eq!((p.proto, p.sport, p.dport, p.wire_len), (17, 40000, 53, 1488));
        assert_eq!(p.l4, L4::Udp { payload: &[0xab, 0xcd, 1, 0] });
        // Later fragments: no ports, whatever their bytes look like.
        let later = v6_fragment(181, false, 20, &udp);
        let p = decode(&later, 0, None, None).unwrap();
        assert_eq!((p.proto, p.sport, p.dport, p.l4), (17, 0, 0, L4::Other));
        // An atomic fragment (offset 0, no more fragments) is whole.
        let atomic = v6_fragment(0, false, 20, &udp);
        let p = decode(&atomic, 0, None, None).unwrap();
        assert_eq!(p.dport, 53);
    }

    #[test]
    fn hostile_headers_are_errors_not_panics() {
        assert_eq!(decode(&[], 0, None, None), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0x45], 0, None, None), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0x41; 40], 0, None, None), Err(DecodeError::BadIp));
        assert_eq!(decode(&[0x75; 40], 0, None, None), Err(DecodeError::BadIp));
        assert_eq!(decode(&[0x60; 20], 0, None, None), Err(DecodeError::Truncated));
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 0x45) as u8).collect();
            let _ = decode(&junk, 0, None, None);
        }
    }
}
