//! Link layers: from a frame to its IP packet, plus what the link layer says about the sender.

use super::{nflog, DecodeError, Direction};
use crate::decode::{Frame, LinkType};

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
/// Linux `PACKET_OUTGOING`: the frame was sent by this host.
const PACKET_OUTGOING: u16 = 4;
/// More tags than any real network stacks; a bound against crafted frames.
const MAX_VLAN_TAGS: usize = 4;

/// The IP packet inside a frame and the sender facts the link layer carried.
#[derive(Debug, Clone, Copy)]
pub struct Layer3<'a> {
    pub ip: &'a [u8],
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// A timestamp from inside the record (NFLOG), better than the capture's.
    pub ts_us: Option<i64>,
    pub direction: Direction,
}

impl<'a> Layer3<'a> {
    fn plain(ip: &'a [u8]) -> Self {
        Layer3 { ip, uid: None, gid: None, ts_us: None, direction: Direction::Unknown }
    }
}

pub fn strip<'a>(frame: &Frame<'a>) -> Result<Layer3<'a>, DecodeError> {
    let d = frame.data;
    match frame.link {
        LinkType::RawIp | LinkType::Ipv4 | LinkType::Ipv6 => Ok(Layer3::plain(d)),
        LinkType::Ethernet => ethernet(d),
        LinkType::LinuxSll => {
            // packet type, ARPHRD, address length, 8 address bytes, protocol
            let hdr = d.get(..16).ok_or(DecodeError::Truncated)?;
            outgoing(u16::from_be_bytes([hdr[0], hdr[1]]))?;
            by_ethertype(u16::from_be_bytes([hdr[14], hdr[15]]), &d[16..])
        }
        LinkType::LinuxSll2 => {
            // protocol, reserved, ifindex, ARPHRD, packet type, address length, 8 address bytes
            let hdr = d.get(..20).ok_or(DecodeError::Truncated)?;
            outgoing(u16::from(hdr[10]))?;
            by_ethertype(u16::from_be_bytes([hdr[0], hdr[1]]), &d[20..])
        }
        LinkType::Nflog => {
            let rec = nflog::parse(d)?;
            let ip = rec.payload.ok_or(DecodeError::Truncated)?;
            let direction = Direction::of_prefix(rec.prefix);
            Ok(Layer3 { ip, uid: rec.uid, gid: rec.gid, ts_us: rec.ts_us, direction })
        }
    }
}

fn outgoing(packet_type: u16) -> Result<(), DecodeError> {
    if packet_type == PACKET_OUTGOING {
        Ok(())
    } else {
        Err(DecodeError::Inbound)
    }
}

fn ethernet(d: &[u8]) -> Result<Layer3<'_>, DecodeError> {
    let hdr = d.get(..14).ok_or(DecodeError::Truncated)?;
    let mut ethertype = u16::from_be_bytes([hdr[12], hdr[13]]);
    let mut rest = &d[14..];
    for _ in 0..=MAX_VLAN_TAGS {
        if !matches!(ethertype, ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD) {
            return by_ethertype(ethertype, rest);
        }
        let tag = rest.get(..4).ok_or(DecodeError::Truncated)?;
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        rest = &rest[4..];
    }
    Err(DecodeError::NotIp)
}

fn by_ethertype(ethertype: u16, rest: &[u8]) -> Result<Layer3<'_>, DecodeError> {
    match ethertype {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => Ok(Layer3::plain(rest)),
        _ => Err(DecodeError::NotIp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: &[u8] = &[0x45, 0, 0, 20];

    fn frame(link: LinkType, data: &[u8]) -> Result<Layer3<'_>, DecodeError> {
        strip(&Frame { ts_us: 0, link, data })
    }

    #[test]
    fn ethernet_with_vlan_and_qinq() {
        let mut f = vec![0; 12];
        f.extend_from_slice(&[0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2, 0x08, 0x00]);
        f.extend_from_slice(IP);
        assert_eq!(frame(LinkType::Ethernet, &f).unwrap().ip, IP);
    }

    #[test]
    fn ethernet_arp_is_not_ip_and_endless_tags_stop() {
        let mut f = vec![0; 12];
        f.extend_from_slice(&[0x08, 0x06, 0, 1]);
        assert_eq!(frame(LinkType::Ethernet, &f).err(), Some(DecodeError::NotIp));
        let mut f = vec![0; 12];
        for _ in 0..10 {
            f.extend_from_slice(&[0x81, 0x00, 0, 1]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        assert_eq!(frame(LinkType::Ethernet, &f).err(), Some(DecodeError::NotIp));
        assert_eq!(frame(LinkType::Ethernet, &[0; 13]).err(), Some(DecodeError::Truncated));
        let mut cut_tag = vec![0; 12];
        cut_tag.extend_from_slice(&[0x81, 0x00, 0]);
        assert_eq!(frame(LinkType::Ethernet, &cut_tag).err(), Some(DecodeError::Truncated));
    }

    #[test]
    fn linux_cooked_counts_only_outgoing() {
        let mut sll = vec![0, 4, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(IP);
        assert_eq!(frame(LinkType::LinuxSll, &sll).unwrap().ip, IP);
        sll[1] = 0; // PACKET_HOST: received
        assert_eq!(frame(LinkType::LinuxSll, &sll).err(), Some(DecodeError::Inbound));

        let mut sll2 = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 2, 0, 1, 4, 6, 0, 0, 0, 0, 0, 0, 0, 0];
        sll2.extend_from_slice(IP);
        assert_eq!(frame(LinkType::LinuxSll2, &sll2).unwrap().ip, IP);
        assert_eq!(frame(LinkType::LinuxSll2, &sll2[..19]).err(), Some(DecodeError::Truncated));
    }

    #[test]
    fn nflog_carries_uid_and_payload() {
        let rec = nflog::tests::record(2, 7, &[(11, &1001u32.to_be_bytes()), (9, IP)]);
        let l3 = frame(LinkType::Nflog, &rec).unwrap();
        assert_eq!((l3.ip, l3.uid), (IP, Some(1001)));
        let no_payload = nflog::tests::record(2, 7, &[(11, &1001u32.to_be_bytes())]);
        assert_eq!(frame(LinkType::Nflog, &no_payload).err(), Some(DecodeError::Truncated));
    }

    #[test]
    fn nflog_prefix_says_which_end_opened_the_connection() {
        for (prefix, direction) in [
            (&b"srv\0"[..], Direction::Served),
            (b"out\0", Direction::Initiated),
            (b"exfil\0", Direction::Unknown),
            (b"srvx\0", Direction::Unknown),
        ] {
            let rec = nflog::tests::record(2, 7, &[(10, prefix), (9, IP)]);
            assert_eq!(frame(LinkType::Nflog, &rec).unwrap().direction, direction, "{prefix:?}");
        }
        let rec = nflog::tests::record(2, 7, &[(9, IP)]);
        assert_eq!(frame(LinkType::Nflog, &rec).unwrap().direction, Direction::Unknown);
    }
}
