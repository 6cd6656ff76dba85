//! What a rule is about: which principals (people, services, hosts; named users, groups, uid
//! ranges, exclusions), which direction (connections opened here, or served), which
//! destination ports and addresses. A web, database or backup server serves large answers all
//! day; a rule for services that only counts connections they open stays quiet on that and
//! still catches a compromised service that opens its own connection out.
//!
//! Names are resolved to ids when the configuration is loaded ([`Scope::resolve`]), so matching
//! never touches the system's user database and a replay judges the same way everywhere.

use std::net::IpAddr;

use serde::{de, Deserialize, Deserializer};

use crate::decode::Direction;
use crate::principal::{Dst, Principal};

/// A kind of principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Who {
    /// Login users: uids in the people range (`[accounts] people`, from /etc/login.defs).
    People,
    /// System accounts: every other uid, root and daemons among them.
    Services,
    /// Traffic without a uid: forwarded (gateway mode) or made by the kernel.
    Hosts,
}

/// Which connections count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectionScope {
    #[default]
    Any,
    /// Connections opened here (and captures that do not say).
    Initiated,
    /// Replies on connections remote peers opened.
    Served,
}

/// A user or group, by name or number; names become numbers when the config is loaded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Account {
    Id(u32),
    Name(String),
}

/// An inclusive range of numbers: `1000`, `"1000-1999"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub lo: u32,
    pub hi: u32,
}

impl Range {
    pub fn contains(&self, n: u32) -> bool {
        (self.lo..=self.hi).contains(&n)
    }

    pub fn parse(s: &str) -> Option<Range> {
        let (lo, hi) = s.split_once('-').unwrap_or((s, s));
        let (lo, hi) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
        (lo <= hi).then_some(Range { lo, hi })
    }
}

impl<'de> Deserialize<'de> for Range {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Range, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u32),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Range { lo: n, hi: n }),
            Raw::S(s) => Range::parse(&s)
                .ok_or_else(|| de::Error::custom(format!("{s:?} is not a number or a range like \"1000-1999\""))),
        }
    }
}

/// An address or network: `"10.0.0.0/8"`, `"2001:db8::/32"`, `"192.0.2.7"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    pub fn contains(&self, a: IpAddr) -> bool {
        let bits = |a: IpAddr| match a {
            IpAddr::V4(v) => (u128::from(u32::from(v)) << 96, 32),
            IpAddr::V6(v) => (u128::from(v), 128),
        };
        let ((net, width), (have, other)) = (bits(self.addr), bits(a));
        if width != other {
            return false;
        }
        let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix)) };
        net & mask == have & mask
    }
}

impl<'de> Deserialize<'de> for Net {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Net, D::Error> {
        let s = String::deserialize(d)?;
        let bad = || de::Error::custom(format!("{s:?} is not an address or address/prefix"));
        let (a, p) = s.trim().split_once('/').map_or((s.trim(), None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Net { addr, prefix })
    }
}

/// The scope keys of a rule. Empty lists mean "any"; exclusions win.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scope {
    pub who: Vec<Who>,
    pub users: Vec<Account>,
    pub groups: Vec<Account>,
    pub uids: Vec<Range>,
    pub exclude_users: Vec<Account>,
    pub direction: DirectionScope,
    pub ports: Vec<Range>,
    pub dst: Vec<Net>,
    pub exclude_dst: Vec<Net>,
    /// `groups` as gids with their members' uids, filled by [`Scope::resolve`].
    #[serde(skip)]
    members: Vec<(u32, Vec<u32>)>,
}

/// Looks names up in the system's user database (at config load only).
pub trait Directory {
    fn uid(&self, name: &str) -> Option<u32>;
    /// A group's gid and its listed members' uids.
    fn group(&self, name: &str) -> Option<(u32, Vec<u32>)>;
    fn group_by_id(&self, gid: u32) -> Option<(u32, Vec<u32>)>;
}

impl Scope {
    /// Kinds of principals in one direction, nothing else narrowed.
    pub fn of(who: &[Who], direction: DirectionScope) -> Scope {
        Scope { who: who.to_vec(), direction, ..Scope::default() }
    }

    /// Names to numbers; the error names what is missing.
    pub fn resolve(&mut self, dir: &dyn Directory) -> Result<(), String> {
        for a in self.users.iter_mut().chain(self.exclude_users.iter_mut()) {
            if let Account::Name(n) = a {
                *a = Account::Id(dir.uid(n).ok_or_else(|| format!("no user named {n:?}"))?);
            }
        }
        self.members = self
            .groups
            .iter()
            .map(|g| match g {
                Account::Id(gid) => Ok(dir.group_by_id(*gid).unwrap_or((*gid, Vec::new()))),
                Account::Name(n) => dir.group(n).ok_or_else(|| format!("no group named {n:?}")),
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    /// Whether a packet of `who` (with the socket's `gid`) to `dst` counts under this scope.
    /// `people`: the uids of login users.
    pub fn applies(&self, who: Principal, gid: Option<u32>, people: Range, direction: Direction, dst: &Dst) -> bool {
        self.admits(who, gid, people) && self.covers(direction, dst)
    }

    /// The part of [`applies`](Self::applies) that depends only on the sender: the same for all
    /// of a principal's packets with one gid, so callers may keep it.
    pub fn admits(&self, who: Principal, gid: Option<u32>, people: Range) -> bool {
        let ids = |list: &[Account], uid: u32| list.contains(&Account::Id(uid));
        let class = match who {
            Principal::Uid(u) if people.contains(u) => Who::People,
            Principal::Uid(_) => Who::Services,
            Principal::Host(_) => Who::Hosts,
        };
        if !self.who.is_empty() && !self.who.contains(&class) {
            return false;
        }
        let uid = who.uid();
        let named = self.users.is_empty() && self.groups.is_empty() && self.uids.is_empty()
            || uid.is_some_and(|u| {
                ids(&self.users, u)
                    || self.uids.iter().any(|r| r.contains(u))
                    || self.members.iter().any(|(g, m)| gid == Some(*g) || m.contains(&u))
            });
        named && !uid.is_some_and(|u| ids(&self.exclude_users, u))
    }

    /// The part of [`applies`](Self::applies) that depends on the packet.
    pub fn covers(&self, direction: Direction, dst: &Dst) -> bool {
        let direction_ok = match self.direction {
            DirectionScope::Any => true,
            DirectionScope::Initiated => direction != Direction::Served,
            DirectionScope::Served => direction == Direction::Served,
        };
        direction_ok
            && (self.ports.is_empty() || self.ports.iter().any(|r| r.contains(u32::from(dst.port))))
            && (self.dst.is_empty() || self.dst.iter().any(|n| n.contains(dst.addr)))
            && !self.exclude_dst.iter().any(|n| n.contains(dst.addr))
    }
}

/// The system's user database (NSS), for [`Scope::resolve`].
pub struct System;

impl Directory for System {
    fn uid(&self, name: &str) -> Option<u32> {
        nix::unistd::User::from_name(name).ok().flatten().map(|u| u.uid.as_raw())
    }

    fn group(&self, name: &str) -> Option<(u32, Vec<u32>)> {
        nix::unistd::Group::from_name(name).ok().flatten().map(|g| (g.gid.as_raw(), self.uids_of(&g.mem)))
    }

    fn group_by_id(&self, gid: u32) -> Option<(u32, Vec<u32>)> {
        nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
            .ok()
            .flatten()
            .map(|g| (g.gid.as_raw(), self.uids_of(&g.mem)))
    }
}

impl System {
    fn uids_of(&self, names: &[String]) -> Vec<u32> {
        names.iter().filter_map(|n| self.uid(n)).collect()
    }
}

/// `[accounts]`: which uids are people (login users); every other uid is a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// Default: `UID_MIN`-`UID_MAX` of /etc/login.defs.
    pub people: Range,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig { people: login_uids(&std::fs::read_to_string("/etc/login.defs").unwrap_or_default()) }
    }
}

/// Login users' uids: `UID_MIN`-`UID_MAX` of /etc/login.defs, else Debian's 1000-60000.
pub fn login_uids(login_defs: &str) -> Range {
    let value = |key: &str| {
        login_defs.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(key)).then(|| w.next()?.parse().ok()).flatten()
        })
    };
    let lo = value("UID_MIN").unwrap_or(1000);
    let hi = value("UID_MAX").unwrap_or(60000);
    if lo <= hi {
        Range { lo, hi }
    } else {
        Range { lo: 1000, hi: 60000 }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const PEOPLE: Range = Range { lo: 1000, hi: 60000 };

    fn dst(port: u16) -> Dst {
        Dst { addr: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)), port, proto: 6 }
    }

    fn scope(toml_text: &str) -> Scope {
        toml::from_str(toml_text).unwrap()
    }

    struct Fake;
    impl Directory for Fake {
        fn uid(&self, name: &str) -> Option<u32> {
            [("alice", 1001), ("www-data", 33)].iter().find(|(n, _)| *n == name).map(|(_, u)| *u)
        }
        fn group(&self, name: &str) -> Option<(u32, Vec<u32>)> {
            (name == "staff").then(|| (50, vec![1002]))
        }
        fn group_by_id(&self, gid: u32) -> Option<(u32, Vec<u32>)> {
            (gid == 50).then(|| (50, vec![1002]))
        }
    }

    #[test]
    fn services_count_only_what_they_open() {
        let s = scope("who = [\"services\", \"hosts\"]\ndirection = \"initiated\"");
        let www = Principal::Uid(33);
        assert!(!s.applies(www, None, PEOPLE, Direction::Served, &dst(40000)));
        assert!(s.applies(www, None, PEOPLE, Direction::Initiated, &dst(443)));
        assert!(s.applies(www, None, PEOPLE, Direction::Unknown, &dst(443)), "captures that do not say count");
        assert!(!s.applies(Principal::Uid(1001), None, PEOPLE, Direction::Initiated, &dst(443)), "a person");
    }

    #[test]
    fn named_users_groups_ranges_and_exclusions() {
        let mut s = scope("users = [\"alice\"]\ngroups = [\"staff\"]\nuids = [\"2000-2999\"]\nexclude_users = [2500]");
        s.resolve(&Fake).unwrap();
        let ok = |u: u32, gid: Option<u32>| s.applies(Principal::Uid(u), gid, PEOPLE, Direction::Initiated, &dst(22));
        assert!(ok(1001, None) && ok(1002, None) && ok(2001, None) && ok(4000, Some(50)));
        assert!(!ok(2500, None) && !ok(4000, None) && !ok(33, None));
        let mut bad = scope("users = [\"nobody-here\"]");
        assert_eq!(bad.resolve(&Fake).unwrap_err(), "no user named \"nobody-here\"");
    }

    #[test]
    fn ports_and_destination_sets() {
        let s = scope("ports = [22, \"8000-8099\"]\ndst = [\"203.0.113.0/24\"]\nexclude_dst = [\"203.0.113.9\"]");
        let who = Principal::Uid(1001);
        assert!(s.applies(who, None, PEOPLE, Direction::Served, &dst(22)));
        assert!(s.applies(who, None, PEOPLE, Direction::Served, &dst(8050)));
        assert!(!s.applies(who, None, PEOPLE, Direction::Served, &dst(443)));
        let mut other = dst(22);
        other.addr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
        assert!(!s.applies(who, None, PEOPLE, Direction::Served, &other));
        other.addr = "2001:db8::1".parse().unwrap();
        assert!(!s.applies(who, None, PEOPLE, Direction::Served, &other));
    }

    #[test]
    fn login_defs_give_the_people_range() {
        assert_eq!(login_uids("# x\nUID_MIN\t\t 500\nUID_MAX 29999\n"), Range { lo: 500, hi: 29999 });
        assert_eq!(login_uids(""), Range { lo: 1000, hi: 60000 });
        assert!(toml::from_str::<Scope>("uids = [\"9-1\"]").is_err());
        assert!(toml::from_str::<Scope>("dst = [\"10.0.0.0/33\"]").is_err());
    }
}
