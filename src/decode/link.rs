//! Link layers: from a frame to its IP packet, plus what the link layer says about the sender.

use super::{nflog, DecodeError};
use crate::source::{Frame, LinkType};

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
}

impl<'a> Layer3<'a> {
    fn plain(ip: &'a [u8]) -> Self {
        Layer3 { ip, uid: None, gid: None, ts_us: None }
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
            Ok(Layer3 { ip, uid: rec.uid, gid: rec.gid, ts_us: rec.ts_us })
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
