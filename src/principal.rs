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
