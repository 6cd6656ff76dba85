//! The open rows' table: open addressing with linear probing over a power-of-two array, so the
//! slot a packet will touch can be fetched into the CPU's cache a few packets ahead
//! ([`Slots::prefetch`]); a standard hash map offers no way to, and on a flow-heavy replay its
//! miss was a twentieth of the run. Keys hash with a key drawn per process (foldhash), so no
//! one can aim destinations at one run of slots.
//!
//! The table holds at most 3/4 of its slots (it doubles before that), so a probe always ends
//! at an empty slot.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;

use crate::principal::{Dst, Principal};

pub type Key = (Principal, Dst);

/// Slots of a new table.
const MIN_SLOTS: usize = 1024;

pub struct Slots<V> {
    slots: Vec<Option<(Key, V)>>,
    len: usize,
    hasher: RandomState,
}

impl<V> Default for Slots<V> {
    fn default() -> Self {
        Slots { slots: Vec::new(), len: 0, hasher: RandomState::default() }
    }
}

impl<V> Slots<V> {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Slots allocated.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn home(&self, key: &Key) -> usize {
        self.hasher.hash_one(key) as usize & (self.slots.len() - 1)
    }

    /// The slot holding `key`, or (false) the empty slot where it would go. The table has slots.
    fn find(&self, key: &Key) -> (usize, bool) {
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            match &self.slots[i] {
                Some((k, _)) if k == key => return (i, true),
                Some(_) => i = (i + 1) & mask,
                None => return (i, false),
            }
        }
    }

    pub fn contains_key(&self, key: &Key) -> bool {
        !self.slots.is_empty() && self.find(key).1
    }

    /// The value of `key`, inserted by `make` when absent; and whether it was.
    pub fn get_or_insert_with(&mut self, key: Key, make: impl FnOnce() -> V) -> (&mut V, bool) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let (i, found) = self.find(&key);
        self.len += usize::from(!found);
        let (_, value) = self.slots[i].get_or_insert_with(|| (key, make()));
        (value, !found)
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = std::mem::replace(&mut self.slots, std::iter::repeat_with(|| None).take(size).collect());
        self.len = 0;
        self.put_back(old.into_iter().flatten());
    }

    /// Places entries known to be absent.
    fn put_back(&mut self, entries: impl IntoIterator<Item = (Key, V)>) {
        for (key, value) in entries {
            let (i, _) = self.find(&key);
            self.slots[i] = Some((key, value));
            self.len += 1;
        }
    }

    /// Takes `key`'s value out. Linear probing: the entries after it that would no longer be
    /// found from their home slot move back into the gap.
    pub fn remove(&mut self, key: &Key) -> Option<V> {
        if self.slots.is_empty() {
            return None;
        }
        let (mut gap, true) = self.find(key) else { return None };
        let (_, value) = self.slots[gap].take()?;
        self.len -= 1;
        let mask = self.slots.len() - 1;
        let mut j = gap;
        loop {
            j = (j + 1) & mask;
            let Some((k, _)) = &self.slots[j] else { break };
            let home = self.home(k);
            // It stays when its home lies cyclically in (gap, j].
            let stays = if gap <= j { gap < home && home <= j } else { gap < home || home <= j };
            if !stays {
                self.slots[gap] = self.slots[j].take();
                gap = j;
            }
        }
        Some(value)
    }

    /// Keeps the entries `keep` says to; the others are handed to it to take out.
    pub fn retain(&mut self, mut keep: impl FnMut(&Key, &V) -> bool) {
        let kept: Vec<(Key, V)> = self.slots.iter_mut().filter_map(Option::take).filter(|(k, v)| keep(k, v)).collect();
        self.len = 0;
        self.put_back(kept);
    }

    /// Empties the table, handing every entry to `f`.
    pub fn drain(&mut self, mut f: impl FnMut(Key, V)) {
        self.len = 0;
        for (key, value) in self.slots.iter_mut().filter_map(Option::take) {
            f(key, value);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &(Key, V)> {
        self.slots.iter().flatten()
    }

    /// Starts fetching the cache line of `key`'s home slot, for a lookup soon after.
    pub fn prefetch(&self, key: &Key) {
        if !self.slots.is_empty() {
            crate::prefetch::line(&self.slots[self.home(key)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn key(n: u32) -> Key {
        (Principal::Uid(n % 7), Dst { addr: IpAddr::V4(Ipv4Addr::from(n)), port: 443, proto: 6 })
    }

    /// Against a std map, through growth, removals (which shift entries back) and retains.
    #[test]
    fn behaves_as_a_map() {
        let mut t: Slots<u32> = Slots::default();
        let mut m = std::collections::HashMap::new();
        for n in 0..20_000u32 {
            let k = key(n.wrapping_mul(2_654_435_761) % 5_000);
            let (v, new) = t.get_or_insert_with(k, || n);
            assert_eq!(new, !m.contains_key(&k));
            *v += 1;
            *m.entry(k).or_insert(n) += 1;
            if n % 3 == 0 {
                let gone = key(n % 4_000);
                assert_eq!(t.remove(&gone), m.remove(&gone));
            }
            if n % 5_000 == 0 {
                t.retain(|_, v| v % 2 == 0);
                m.retain(|_, v| *v % 2 == 0);
            }
            assert_eq!(t.len(), m.len());
        }
        for (k, v) in &m {
            assert!(t.contains_key(k));
            assert_eq!(t.get_or_insert_with(*k, || 0).0, v);
        }
        assert_eq!(t.iter().count(), m.len());
        let mut drained = 0;
        t.drain(|k, v| {
            assert_eq!(m.get(&k), Some(&v));
            drained += 1;
        });
        assert_eq!((drained, t.len(), t.iter().count()), (m.len(), 0, 0));
        assert_eq!(t.remove(&key(1)), None);
    }
}
