//! Destination names: what each principal called the addresses it sends to, so an alert says
//! `10.77.0.2:9100/tcp (files.exfil-drop.example)` rather than only the address.
//!
//! Two sources, both logged by the ruleset: inbound DNS answers (the `answers` chain, NFLOG
//! prefix `ans`, logged whole; the pipeline hands them only to this detector and never counts
//! them as egress) give (asker, address) → the name asked; the server name of a TLS
//! ClientHello (the first packets of each outbound TCP connection are logged with a larger
//! snaplen) gives (sender, destination address) → the name the client meant, and wins over
//! DNS. Registered last, this detector then adds the name to every alert the others raised
//! on the same input whose destination is an address: `details.dst_name` and the summary.
//!
//! Memory: at most `max_entries` names, in two generations (when the current one holds half,
//! it becomes the previous and the oldest is dropped, counted), so a name is remembered for at
//! least the time `max_entries / 2` other names take to arrive.

use std::net::IpAddr;

use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::Value;

use super::{Detector, Findings, Seen, Tick};
use crate::alert::Alert;
use crate::decode::{dns, tls, Direction, L4};
use crate::principal::Principal;
use crate::source::audit::AuditEvent;
use crate::units::counters;
use crate::units::de::positive_usize;

/// Addresses taken from one answer at most.
const ADDRS_PER_ANSWER: usize = 8;

counters! {
    /// What the destination-name path counted.
    pub struct NamesCounters {
        /// DNS answers read (inbound, prefix `ans`).
        answers => "names_dns_answers",
        /// Of those, with no A/AAAA record or not parsable.
        answers_without_addresses => "names_dns_answers_empty",
        /// TLS ClientHellos with a server name.
        tls_names => "names_tls_server_names",
        /// Names dropped with the oldest generation when the table was full.
        dropped => "names_dropped",
        /// Alerts given a destination name.
        annotated => "names_alerts_named",
    }
}

/// `[names]`: destination names from DNS answers and TLS server names.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NamesConfig {
    pub enabled: bool,
    /// (principal, address) → name entries kept at most.
    #[serde(deserialize_with = "positive_usize")]
    pub max_entries: usize,
}

impl Default for NamesConfig {
    fn default() -> Self {
        NamesConfig { enabled: true, max_entries: 200_000 }
    }
}

type Key = (Option<Principal>, IpAddr);

pub struct NamesSeen {
    half: usize,
    /// Current and previous generation; each name is also kept under (None, address) so an
    /// alert of a principal that did not resolve the address itself still gets a name.
    names: [FxHashMap<Key, Box<str>>; 2],
    counters: NamesCounters,
}

impl NamesSeen {
    pub fn new(cfg: &NamesConfig) -> NamesSeen {
        NamesSeen {
            half: cfg.max_entries.div_ceil(2).max(1),
            names: [FxHashMap::default(), FxHashMap::default()],
            counters: NamesCounters::default(),
        }
    }

    fn insert(&mut self, who: Principal, addr: IpAddr, name: &str) {
        for key in [(Some(who), addr), (None, addr)] {
            if self.names[0].get(&key).is_some_and(|n| &**n == name) {
                continue;
            }
            if self.names[0].len() >= self.half {
                let old = std::mem::take(&mut self.names[0]);
                self.counters.dropped += self.names[1].len() as u64;
                self.names[1] = old;
            }
            self.names[0].insert(key, name.into());
        }
    }

    /// The name `who` (or, failing that, anyone) used for `addr`.
    pub fn name(&self, who: Principal, addr: IpAddr) -> Option<&str> {
        [(Some(who), addr), (None, addr)]
            .iter()
            .find_map(|k| self.names[0].get(k).or_else(|| self.names[1].get(k)))
            .map(|n| &**n)
    }

    fn answer(&mut self, who: Principal, msg: &[u8]) {
        self.counters.answers += 1;
        let mut addrs = [IpAddr::from([0u8; 4]); ADDRS_PER_ANSWER];
        let n = dns::answer_addresses(msg, &mut addrs);
        let Some(name) = dns::parse(msg).ok().filter(|_| n > 0).and_then(|q| host_name(&q.qname)) else {
            self.counters.answers_without_addresses += 1;
            return;
        };
        for &addr in &addrs[..n] {
            self.insert(who, addr, &name);
        }
    }

    /// Adds the destination's name to alerts that name an address.
    fn annotate(&mut self, alerts: &mut [Alert]) {
        for a in alerts.iter_mut() {
            if !a.details.get("dst_name").is_none_or(Value::is_null) {
                continue;
            }
            let Some(dst) = a.dst.as_deref() else { continue };
            let Some(addr) = crate::principal::dst_parts(dst).map(|d| d.addr) else { continue };
            let Some(name) = self.name(a.principal, addr) else { continue };
            let name = name.to_string();
            if a.summary.contains(dst) {
                a.summary = a.summary.replacen(dst, &format!("{dst} ({name})"), 1);
            } else {
                a.summary.push_str(&format!(" [{name}]"));
            }
            if let Value::Object(m) = &mut a.details {
                m.insert("dst_name".into(), Value::String(name));
            }
            self.counters.annotated += 1;
        }
    }
}

/// A lower-case presentation name made only of host-name characters, else none.
fn host_name(name: &dns::Name<'_>) -> Option<String> {
    let mut s = String::with_capacity(name.len());
    for (i, label) in name.labels().enumerate() {
        if label.is_empty() || !label.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return None;
        }
        if i > 0 {
            s.push('.');
        }
        s.extend(label.iter().map(|&b| char::from(b.to_ascii_lowercase())));
    }
    (!s.is_empty()).then_some(s)
}

impl Detector for NamesSeen {
    fn packet(&mut self, seen: &Seen<'_, '_>, out: &mut Findings) {
        let p = seen.packet;
        match p.l4 {
            L4::Udp { payload } if p.direction == Direction::Answer && p.sport == 53 => {
                self.answer(seen.sent.principal, payload)
            }
            L4::Tcp { payload } if p.direction.is_egress() && payload.first() == Some(&22) => {
                if let Ok(name) = tls::server_name(payload) {
                    self.counters.tls_names += 1;
                    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                    self.insert(seen.sent.principal, p.dst, &name);
                }
            }
            _ => {}
        }
        if !out.alerts.is_empty() {
            self.annotate(&mut out.alerts);
        }
    }

    fn audit(&mut self, _event: &AuditEvent, out: &mut Findings) {
        self.annotate(&mut out.alerts);
    }

    fn tick(&mut self, _tick: Tick, out: &mut Findings) {
        self.annotate(&mut out.alerts);
    }

    fn counters(&self, f: &mut dyn FnMut(&'static str, u64)) {
        self.counters.each(f)
    }

    fn name_of(&self, who: Principal, addr: IpAddr) -> Option<&str> {
        self.name(who, addr)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use serde_json::json;

    use super::*;
    use crate::alert::{AlertKind, Severity};
    use crate::decode::dns::tests::response;
    use crate::decode::tls::tests::{client_hello, sni_ext};
    use crate::decode::Packet;
    use crate::flows::FlowTable;
    use crate::principal::Dst;
    use crate::rows::Sent;

    const ALICE: Principal = Principal::Uid(1001);

    fn feed(n: &mut NamesSeen, direction: Direction, l4: L4<'_>, dst: IpAddr, out: &mut Findings) {
        let p = Packet {
            ts_us: 0,
            uid: Some(1001),
            gid: None,
            src: IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1)),
            dst,
            proto: if matches!(l4, L4::Tcp { .. }) { 6 } else { 17 },
            sport: if direction == Direction::Answer { 53 } else { 40000 },
            dport: 443,
            wire_len: 100,
            direction,
            l4,
        };
        let sent =
            Sent { principal: ALICE, gid: None, direction, dst: Dst::of(&p), ts_us: 0, bytes: u64::from(p.wire_len) };
        let flows = FlowTable::default();
        n.packet(&Seen { packet: &p, sent, owner: None, flows: &flows }, out);
    }

    fn alert(dst: &str) -> Alert {
        Alert {
            ts_us: 0,
            kind: AlertKind::Volume,
            severity: Severity::Medium,
            principal: ALICE,
            dst: Some(dst.into()),
            bytes: 1,
            summary: format!("uid 1001 sent 5 MiB to {dst} within 1m"),
            details: json!({}),
        }
    }

    #[test]
    fn names_from_dns_answers_and_tls_server_names_reach_alerts() {
        let mut n = NamesSeen::new(&NamesConfig::default());
        let mut out = Findings::default();
        let drop: IpAddr = "10.77.0.2".parse().unwrap();
        let ans = response("Files.Exfil-Drop.example", &[drop, "fd77::2".parse().unwrap()]);
        feed(&mut n, Direction::Answer, L4::Udp { payload: &ans }, drop, &mut out);
        assert_eq!(n.name(ALICE, drop), Some("files.exfil-drop.example"));
        assert_eq!(n.name(Principal::Uid(7), "fd77::2".parse().unwrap()), Some("files.exfil-drop.example"));

        out.alerts.push(alert("10.77.0.2:9100/tcp"));
        out.alerts.push(alert("[fd77::2]:443/tcp"));
        out.alerts.push(alert("tun.example"));
        out.alerts.push(alert("192.0.2.1"));
        let hello = client_hello(&[sni_ext(b"upload.example.org")]);
        let web: IpAddr = "192.0.2.1".parse().unwrap();
        feed(&mut n, Direction::Initiated, L4::Tcp { payload: &hello }, web, &mut out);
        let a = &out.alerts;
        assert_eq!(a[0].summary, "uid 1001 sent 5 MiB to 10.77.0.2:9100/tcp (files.exfil-drop.example) within 1m");
        assert_eq!(a[0].details["dst_name"], "files.exfil-drop.example");
        assert_eq!(a[1].details["dst_name"], "files.exfil-drop.example");
        assert!(a[2].details.get("dst_name").is_none(), "a domain is not an address");
        assert_eq!(a[3].details["dst_name"], "upload.example.org");
        assert_eq!(n.counters.annotated, 3);
    }

    #[test]
    fn hostile_answers_and_names_are_refused() {
        let mut n = NamesSeen::new(&NamesConfig::default());
        let mut out = Findings::default();
        let addr: IpAddr = "10.77.0.2".parse().unwrap();
        let mut ans = response("evil.example", &[addr]);
        ans[13] = 0x1b; // a control byte in the first label
        feed(&mut n, Direction::Answer, L4::Udp { payload: &ans }, addr, &mut out);
        // Not an answer: an outbound packet from port 53 is not read as one.
        let ok = response("fine.example", &[addr]);
        feed(&mut n, Direction::Initiated, L4::Udp { payload: &ok }, addr, &mut out);
        assert_eq!(n.name(ALICE, addr), None);
        assert_eq!(n.counters.answers_without_addresses, 1);
    }

    #[test]
    fn memory_is_bounded() {
        let mut n = NamesSeen::new(&NamesConfig { enabled: true, max_entries: 1000 });
        for i in 0..10_000u32 {
            n.insert(ALICE, IpAddr::from(i.to_be_bytes()), "x.example");
        }
        assert!(n.names[0].len() + n.names[1].len() <= 1000);
        assert!(n.counters.dropped > 0);
    }
}
