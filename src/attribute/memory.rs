//! Replay's flow memory: which uid each recent TCP/UDP flow belongs to, in a fixed table laid
//! out like a CPU cache.
//!
//! Every uid-stamped packet refreshes its flow, so this is on the path of nearly every packet
//! and must cost one memory access: a flow's five-tuple hashes (with a key drawn per process, so
//! no one can aim flows at one set) to a set of [`WAYS`] slots that share two cache lines; a
//! slot holds 32 bits of the hash as its tag, the uid and the last packet's time. A new flow
//! takes an empty or idle slot of its set, else the one idle longest (counted as evicted). The
//! table is 2 MiB whatever the traffic, and needs no sweeping: idle slots are simply reused.
//!
//! Two flows agree on set and tag with odds of about 2^-46; a uid-less packet of one would
//! then count for the other's uid. Uid-stamped packets always count for their own uid.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;

use super::{Key, IDLE_US};

const SET_BITS: u32 = 14;
const SETS: usize = 1 << SET_BITS;
/// Slots per set: the table holds `SETS * WAYS` (131,072) flows.
pub const WAYS: usize = 8;

#[derive(Clone, Copy)]
struct Slot {
    tag: u32,
    uid: u32,
    /// `i64::MIN`: empty.
    last_us: i64,
}

/// One set: two cache lines, aligned so that a lookup touches no third.
#[derive(Clone, Copy)]
#[repr(C, align(128))]
struct Set([Slot; WAYS]);

const EMPTY: Set = Set([Slot { tag: 0, uid: 0, last_us: i64::MIN }; WAYS]);

/// Where a flow lives: its set and tag.
#[derive(Clone, Copy)]
pub struct Place {
    set: usize,
    tag: u32,
}

#[derive(Default)]
pub struct FlowMemory {
    /// Allocated at the first flow (live capture keeps its flows elsewhere).
    sets: Vec<Set>,
    key: RandomState,
}

impl Slot {
    fn live_at(&self, ts_us: i64) -> bool {
        ts_us.saturating_sub(self.last_us) <= IDLE_US
    }
}

impl FlowMemory {
    pub fn place(&self, key: &Key) -> Place {
        let h = self.key.hash_one(key);
        Place { set: h as usize & (SETS - 1), tag: (h >> 32) as u32 }
    }

    /// Starts fetching the set at `at` into the CPU's cache, for a lookup soon after.
    pub fn prefetch(&self, at: Place) {
        if let Some(set) = self.sets.get(at.set) {
            crate::prefetch::lines(set);
        }
    }

    /// The uid of the flow at `at` when it sent within [`IDLE_US`] before `ts_us`.
    pub fn get(&mut self, at: Place, ts_us: i64) -> Option<u32> {
        let set = self.sets.get_mut(at.set)?;
        let slot = set.0.iter_mut().find(|s| s.tag == at.tag && s.live_at(ts_us))?;
        slot.last_us = slot.last_us.max(ts_us);
        Some(slot.uid)
    }

    /// Remembers the flow at `at` as `uid`'s as of `ts_us`; true when a flow that was not idle
    /// had to make room.
    pub fn put(&mut self, at: Place, uid: u32, ts_us: i64) -> bool {
        if self.sets.is_empty() {
            self.sets = vec![EMPTY; SETS];
        }
        let set = &mut self.sets[at.set].0;
        if let Some(slot) = set.iter_mut().find(|s| s.tag == at.tag && s.live_at(ts_us)) {
            slot.uid = uid;
            slot.last_us = slot.last_us.max(ts_us);
            return false;
        }
        // The slot to take: an idle one, else the one idle longest.
        let age = |s: &Slot| if s.live_at(ts_us) { s.last_us } else { i64::MIN };
        let oldest = (1..WAYS).fold(0, |best, i| if age(&set[i]) < age(&set[best]) { i } else { best });
        let slot = &mut set[oldest];
        let evicted = slot.live_at(ts_us);
        *slot = Slot { tag: at.tag, uid, last_us: ts_us };
        evicted
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    /// Flow `n`: from host 10.0.0.0 + n.
    fn key(n: u32) -> Key {
        (6, IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)), 40000, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 443)
    }

    #[test]
    fn remembers_refreshes_and_forgets_idle_flows() {
        let mut m = FlowMemory::default();
        let a = m.place(&key(1));
        assert_eq!(m.get(a, 0), None, "nothing allocated yet");
        assert!(!m.put(a, 1001, 0));
        assert_eq!(m.get(a, IDLE_US), Some(1001));
        assert_eq!(m.get(a, 2 * IDLE_US), Some(1001), "the last get refreshed it");
        assert_eq!(m.get(a, 3 * IDLE_US + 1), None);
        // A reused five-tuple takes the uid of its new packets.
        assert!(!m.put(a, 1002, 4 * IDLE_US));
        assert_eq!(m.get(a, 4 * IDLE_US), Some(1002));
    }

    #[test]
    fn a_full_set_gives_up_its_longest_idle_flow() {
        let mut m = FlowMemory::default();
        let mut same_set = Vec::new();
        let first = m.place(&key(1));
        for n in 1.. {
            let at = m.place(&key(n));
            if at.set == first.set {
                same_set.push(at);
            }
            if same_set.len() == WAYS + 1 {
                break;
            }
        }
        for (t, at) in same_set[..WAYS].iter().enumerate() {
            assert!(!m.put(*at, 1000 + t as u32, t as i64));
        }
        assert!(m.put(same_set[WAYS], 2000, 100), "a busy set evicts");
        assert_eq!(m.get(same_set[0], 100), None, "the oldest went");
        assert_eq!(m.get(same_set[1], 100), Some(1001));
        assert_eq!(m.get(same_set[WAYS], 100), Some(2000));
    }
}
