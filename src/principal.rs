//! Who sent a packet, and where it went.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use crate::decode::{Packet, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

/// The party egress is attributed to: the sending uid when the capture carries it, else the
/// source address (captures without uid, forwarded traffic, kernel-made packets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Principal {
    Uid(u32),
    Host(IpAddr),
}

impl Principal {
    pub fn uid(self) -> Option<u32> {
        match self {
            Principal::Uid(u) => Some(u),
            Principal::Host(_) => None,
        }
    }

    pub fn host(self) -> Option<IpAddr> {
        match self {
            Principal::Uid(_) => None,
            Principal::Host(h) => Some(h),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Uid(u) => write!(f, "uid {u}"),
            Principal::Host(h) => write!(f, "host {h}"),
        }
    }
}

/// A destination: address, port and transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dst {
    pub addr: IpAddr,
    pub port: u16,
    pub proto: u8,
}

impl Dst {
    pub fn of(p: &Packet<'_>) -> Dst {
        Dst { addr: p.dst, port: p.dport, proto: p.proto }
    }
}

/// Protocol name as people write it: `tcp`, `udp`, `icmp`, or the number.
pub fn proto_name(proto: u8) -> String {
    match proto {
        PROTO_TCP => "tcp".into(),
        PROTO_UDP => "udp".into(),
        PROTO_ICMP => "icmp".into(),
        PROTO_ICMPV6 => "icmpv6".into(),
        n => format!("proto-{n}"),
    }
}

/// `addr:port` (IPv6 in brackets), or just the address for protocols without ports.
pub fn endpoint(addr: IpAddr, port: u16, proto: u8) -> String {
    match (addr, proto) {
        (_, PROTO_TCP | PROTO_UDP) => match addr {
            IpAddr::V4(a) => format!("{a}:{port}"),
            IpAddr::V6(a) => format!("[{a}]:{port}"),
        },
        _ => addr.to_string(),
    }
}

impl fmt::Display for Dst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", endpoint(self.addr, self.port, self.proto), proto_name(self.proto))
    }
}

/// A user's login (primary) group from the system's user database.
pub fn login_group(uid: u32) -> Option<u32> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.gid.as_raw())
}

/// An alert's destination text read back: the address, the port and the protocol's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DstParts<'a> {
    pub addr: IpAddr,
    pub port: Option<u16>,
    pub proto: Option<&'a str>,
}

/// Reads what [`Dst`]'s display writes (`a.b.c.d:port/proto`, `[v6]:port/proto`, or
/// `addr/proto` for protocols without ports), or a bare address; `None` for anything else,
/// such as the domain a DNS tunnel alert names.
pub fn dst_parts(text: &str) -> Option<DstParts<'_>> {
    let (rest, proto) = match text.rsplit_once('/') {
        Some((rest, proto)) => (rest, Some(proto)),
        None => (text, None),
    };
    if let Some(v6) = rest.strip_prefix('[') {
        let (addr, port) = v6.split_once("]:")?;
        return Some(DstParts { addr: addr.parse().ok()?, port: Some(port.parse().ok()?), proto });
    }
    if let Ok(addr) = rest.parse() {
        return Some(DstParts { addr, port: None, proto });
    }
    let (addr, port) = rest.rsplit_once(':')?;
    Some(DstParts { addr: addr.parse().ok()?, port: Some(port.parse().ok()?), proto })
}

/// uid → user name from the system's user database, looked up once per uid.
#[derive(Default)]
pub struct UserNames(HashMap<u32, Option<String>>);

impl UserNames {
    pub fn get(&mut self, uid: u32) -> Option<String> {
        self.0
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.name)
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_in_alerts_parse() {
        let parts = |addr: &str, port, proto| Some(DstParts { addr: addr.parse().unwrap(), port, proto });
        for (dst, want) in [
            ("10.77.0.2:9100/tcp", parts("10.77.0.2", Some(9100), Some("tcp"))),
            ("10.77.9.1", parts("10.77.9.1", None, None)),
            ("10.77.9.1:53/udp", parts("10.77.9.1", Some(53), Some("udp"))),
            ("[fd77::1]:443/tcp", parts("fd77::1", Some(443), Some("tcp"))),
            ("fd77:9::1", parts("fd77:9::1", None, None)),
            ("fd77:9::1/icmpv6", parts("fd77:9::1", None, Some("icmpv6"))),
            ("10.77.1.1/proto-47", parts("10.77.1.1", None, Some("proto-47"))),
            ("tun.example", None),
            ("[fd77::1]/tcp", None),
            ("10.77.0.2:99999/tcp", None),
            ("", None),
        ] {
            assert_eq!(dst_parts(dst), want, "{dst}");
        }
        // Every destination Dst writes reads back.
        let d = Dst { addr: "fd77::2".parse().unwrap(), port: 8443, proto: PROTO_TCP };
        assert_eq!(dst_parts(&d.to_string()), parts("fd77::2", Some(8443), Some("tcp")));
    }
}
