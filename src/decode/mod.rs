//! Decoding: from a captured [`Frame`] to a [`Packet`] — who sent how many bytes where.
//!
//! Pure functions over borrowed bytes: no allocation, no I/O, no panics on any input. Byte
//! counts come from the IP length fields, not the captured length, because NFLOG rules cut
//! packets to a snaplen and segmentation offload hands the output hook 64 KB super-packets.

pub mod dns;
mod frame;
pub mod ip;
pub mod link;
pub mod nflog;
pub mod tls;

use std::net::IpAddr;

pub use frame::{linktype_name, Frame, LinkType};

/// A decoded outbound packet. Borrowed from the frame; cheap to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    pub ts_us: i64,
    /// The sending socket's owner, when the capture carries it (NFLOG at the output hook).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number of the transport (after IPv6 extension headers).
    pub proto: u8,
    /// Transport ports; 0 where the protocol has none or the fragment does not carry them.
    pub sport: u16,
    pub dport: u16,
    /// Bytes on the wire from the IP header on, per the IP length fields.
    pub wire_len: u32,
    /// Which end opened the connection, when the ruleset said (NFLOG prefix).
    pub direction: Direction,
    pub l4: L4<'a>,
}

/// Which end opened the connection a packet belongs to. The project's ruleset logs packets
/// of connections opened elsewhere (conntrack's reply direction: a web server's answers) with
/// the NFLOG prefix `srv`, the rest with `out`; captures of other kinds say nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    #[default]
    Unknown,
    /// A connection this host opened (or packets conntrack does not track).
    Initiated,
    /// A reply on a connection a remote peer opened.
    Served,
    /// An inbound DNS answer (for destination names): not egress, never counted as sent.
    Answer,
    /// A DNS query to a resolver on this host (loopback): not egress; tells who asked for
    /// the name the resolver then asks upstream.
    Local,
}

impl Direction {
    /// The NFLOG prefixes the ruleset uses.
    pub const PREFIX_INITIATED: &'static str = "out";
    pub const PREFIX_SERVED: &'static str = "srv";
    pub const PREFIX_ANSWER: &'static str = "ans";
    pub const PREFIX_LOCAL: &'static str = "lcl";

    pub fn of_prefix(prefix: Option<&[u8]>) -> Direction {
        match prefix {
            Some(p) if p == Self::PREFIX_INITIATED.as_bytes() => Direction::Initiated,
            Some(p) if p == Self::PREFIX_SERVED.as_bytes() => Direction::Served,
            Some(p) if p == Self::PREFIX_ANSWER.as_bytes() => Direction::Answer,
            Some(p) if p == Self::PREFIX_LOCAL.as_bytes() => Direction::Local,
            _ => Direction::Unknown,
        }
    }

    /// The stored number (egress.direction) and back.
    pub fn code(self) -> i64 {
        self as i64
    }

    pub fn of_code(code: i64) -> Direction {
        match code {
            1 => Direction::Initiated,
            2 => Direction::Served,
            3 => Direction::Answer,
            4 => Direction::Local,
            _ => Direction::Unknown,
        }
    }

    /// Not egress: inbound answers and queries to a resolver on this host.
    pub fn is_egress(self) -> bool {
        !matches!(self, Direction::Answer | Direction::Local)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Unknown => "unknown",
            Direction::Initiated => "initiated",
            Direction::Served => "served",
            Direction::Answer => "answer",
            Direction::Local => "local",
        }
    }
}

/// The transport layer, with whatever part of its payload was captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4<'a> {
    Tcp {
        payload: &'a [u8],
    },
    Udp {
        payload: &'a [u8],
    },
    Icmp {
        v6: bool,
        kind: u8,
        code: u8,
        payload: &'a [u8],
    },
    /// Another protocol, a non-first fragment, or a transport header cut by the snaplen.
    Other,
}

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// Why a frame produced no packet. Every one is counted under its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than the headers it announces.
    #[error("truncated")]
    Truncated,
    /// An IP header that cannot be (bad version, header length, ...).
    #[error("bad IP header")]
    BadIp,
    /// An NFLOG record whose TLVs do not fit.
    #[error("bad NFLOG record")]
    BadNflog,
    /// Not IP (ARP, LLDP, ...): not an error, just not egress we account.
    #[error("not IP")]
    NotIp,
    /// The link layer says the frame was received, not sent.
    #[error("inbound")]
    Inbound,
}

impl DecodeError {
    /// True for frames that are damaged, as opposed to frames that are fine but not egress.
    pub fn is_malformed(self) -> bool {
        matches!(self, DecodeError::Truncated | DecodeError::BadIp | DecodeError::BadNflog)
    }

    /// Stable name for counters and reports.
    pub fn name(self) -> &'static str {
        match self {
            DecodeError::Truncated => "truncated",
            DecodeError::BadIp => "bad_ip",
            DecodeError::BadNflog => "bad_nflog",
            DecodeError::NotIp => "not_ip",
            DecodeError::Inbound => "inbound",
        }
    }
}

/// Decodes one frame.
pub fn decode<'a>(frame: &Frame<'a>) -> Result<Packet<'a>, DecodeError> {
    let l3 = link::strip(frame)?;
    let mut p = ip::decode(l3.ip, l3.ts_us.unwrap_or(frame.ts_us), l3.uid, l3.gid)?;
    p.direction = l3.direction;
    Ok(p)
}
