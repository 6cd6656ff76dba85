//! IPv4 / IPv6 (extension headers skipped by `etherparse`'s lax slicer) and the transport
//! header fields exfilmon needs. Captured bytes may end anywhere after the IP header: the
//! transport is then [`L4::Other`] but the packet still counts with its full wire length.

use etherparse::LaxIpSlice;

use super::{DecodeError, Packet, L4, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

pub fn decode(ip: &[u8], ts_us: i64, uid: Option<u32>, gid: Option<u32>) -> Result<Packet<'_>, DecodeError> {
    let (slice, _ext_err) = LaxIpSlice::from_slice(ip).map_err(|e| match e {
        etherparse::err::ip::LaxHeaderSliceError::Len(_) => DecodeError::Truncated,
        etherparse::err::ip::LaxHeaderSliceError::Content(_) => DecodeError::BadIp,
    })?;
    let wire_len = wire_len(&slice, ip.len());
    let payload = slice.payload();
    let proto = payload.ip_number.0;
    // Only the first fragment carries the transport header. (IPv6 first fragments are rare
    // in egress and are counted without ports.)
    let first_fragment = match &slice {
        LaxIpSlice::Ipv4(v4) => v4.header().fragments_offset().value() == 0,
        LaxIpSlice::Ipv6(_) => !payload.fragmented,
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
        l4,
    })
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
