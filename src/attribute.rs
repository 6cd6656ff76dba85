//! Who sent a packet, beyond what the packet says.
//!
//! NFLOG stamps a packet with the uid of its socket's file, and a socket without a file has
//! none: a program that sends and closes at once (`sendall(); close()`) leaves its data in the
//! socket's queue, and the kernel sends it after the close with no uid; so do FIN, RST and
//! TIME_WAIT packets. Without help those bytes count for the source address, and a transfer
//! split across close() calls slips under a threshold. So each TCP/UDP flow's principal is
//! remembered from its packets that carry a uid, and a packet of a known flow that carries
//! none counts for it, in every detector and report alike. Live and replay do the same (a
//! replay within its captures).
//!
//! Memory is bounded: at most [`MAX_FLOWS`] flows, each forgotten [`IDLE_US`] after its last
//! packet; when the table is full the idle half is evicted early and counted, so a flood of new
//! flows cannot grow it.

use std::net::IpAddr;

use rustc_hash::FxHashMap;

use crate::decode::{Packet, PROTO_TCP, PROTO_UDP};
use crate::principal::Principal;
use crate::units::counters;

/// Flows remembered at most (about 64 bytes each).
pub const MAX_FLOWS: usize = 1 << 17;
/// A flow is forgotten this long after its last packet: longer than TIME_WAIT (60 s) and the
/// longest a closed socket's queue takes to drain to a slow reader in practice.
pub const IDLE_US: i64 = 300_000_000;

/// (protocol, source, source port, destination, destination port).
type FlowKey = (u8, IpAddr, u16, IpAddr, u16);

counters! {
    pub struct AttributeCounters {
        /// Packets without a uid counted for their flow's principal.
        orphans => "attribution_orphans",
        /// Flows forgotten early because the table was full.
        evicted => "attribution_flows_evicted",
    }
}

#[derive(Default)]
pub struct Attribution {
    flows: FxHashMap<FlowKey, (Principal, i64)>,
    pub counters: AttributeCounters,
}

impl Attribution {
    /// The packet's principal: its uid, else its flow's, else its source address.
    pub fn principal(&mut self, p: &Packet<'_>) -> Principal {
        let key = (p.sport != 0 && matches!(p.proto, PROTO_TCP | PROTO_UDP))
            .then_some((p.proto, p.src, p.sport, p.dst, p.dport));
        match (p.uid, key) {
            (Some(uid), Some(key)) => {
                let who = Principal::Uid(uid);
                self.remember(key, who, p.ts_us);
                who
            }
            (Some(uid), None) => Principal::Uid(uid),
            (None, Some(key)) => match self.flows.get_mut(&key) {
                Some((who, last)) if p.ts_us.saturating_sub(*last) <= IDLE_US => {
                    *last = (*last).max(p.ts_us);
                    self.counters.orphans += 1;
                    *who
                }
                _ => Principal::Host(p.src),
            },
            (None, None) => Principal::Host(p.src),
        }
    }

    fn remember(&mut self, key: FlowKey, who: Principal, ts_us: i64) {
        if let Some(entry) = self.flows.get_mut(&key) {
            *entry = (who, entry.1.max(ts_us));
            return;
        }
        if self.flows.len() >= MAX_FLOWS {
            self.make_room(ts_us);
        }
        self.flows.insert(key, (who, ts_us));
    }

    /// Forgets idle flows; if that is not enough, the idle-longest half.
    fn make_room(&mut self, now_us: i64) {
        let before = self.flows.len();
        self.flows.retain(|_, (_, last)| now_us.saturating_sub(*last) <= IDLE_US);
        if self.flows.len() >= MAX_FLOWS {
            let mut lasts: Vec<i64> = self.flows.values().map(|(_, t)| *t).collect();
            let mid = lasts.len() / 2;
            let (_, &mut cutoff, _) = lasts.select_nth_unstable(mid);
            self.flows.retain(|_, (_, last)| *last > cutoff);
            self.counters.evicted += (before - self.flows.len()) as u64;
        }
    }

    /// Forgets flows idle as of `now_us` (the pipeline calls this each minute).
    pub fn sweep(&mut self, now_us: i64) {
        self.flows.retain(|_, (_, last)| now_us.saturating_sub(*last) <= IDLE_US);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::decode::L4;

    const S: i64 = 1_000_000;

    fn packet(ts_us: i64, uid: Option<u32>, sport: u16) -> Packet<'static> {
        Packet {
            ts_us,
            uid,
            gid: None,
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            proto: PROTO_TCP,
            sport,
            dport: 9000,
            wire_len: 1500,
            direction: Default::default(),
            l4: L4::Tcp { payload: &[] },
        }
    }

    #[test]
    fn bytes_after_close_count_for_the_flows_uid() {
        let mut a = Attribution::default();
        assert_eq!(a.principal(&packet(0, Some(1001), 40000)), Principal::Uid(1001));
        assert_eq!(a.principal(&packet(S, None, 40000)), Principal::Uid(1001));
        assert_eq!(a.counters.orphans, 1);
        // Another flow of the same host, never seen with a uid: the host.
        assert!(matches!(a.principal(&packet(S, None, 40001)), Principal::Host(_)));
        // Long after the flow went quiet: forgotten.
        assert!(matches!(a.principal(&packet(S + IDLE_US + 2 * S, None, 40000)), Principal::Host(_)));
    }

    #[test]
    fn a_flood_of_flows_is_bounded_and_counted() {
        let mut a = Attribution::default();
        for i in 0..(MAX_FLOWS as i64 + 10) {
            a.principal(&packet(i, Some(1), (i % 60000) as u16 + 1));
            let mut p = packet(i, Some(1), 1);
            p.src = IpAddr::V4(Ipv4Addr::from(i as u32));
            a.principal(&p);
        }
        assert!(a.flows.len() <= MAX_FLOWS);
        assert!(a.counters.evicted > 0);
    }
}
