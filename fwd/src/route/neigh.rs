//! The neighbour table the workers read (next hop -> MAC), published as immutable
//! snapshots so a worker reads it with one atomic load per batch and no lock.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex,
};

use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;

use crate::packet::meta::Family;

/// A next hop on a port: the key of the neighbour table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NextHop {
    pub port: u16,
    pub family: Family,
    pub addr: u128,
}

/// One published state of the table.
#[derive(Default, Debug)]
pub struct NeighSnapshot {
    entries: FxHashMap<NextHop, [u8; 6]>,
    /// Bumped on every publish, so a worker knows when held frames may now resolve.
    pub generation: u64,
}

impl NeighSnapshot {
    #[inline]
    pub fn lookup(&self, nh: &NextHop) -> Option<[u8; 6]> {
        self.entries.get(nh).copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&NextHop, &[u8; 6])> {
        self.entries.iter()
    }
}

/// The shared table: written by the kernel-sync thread, read by workers.
pub struct NeighTable {
    current: ArcSwap<NeighSnapshot>,
    generation: AtomicU64,
    /// Static entries from the config: never replaced or removed by kernel events.
    statics: Mutex<FxHashMap<NextHop, [u8; 6]>>,
    /// The kernel's entries as last published, so a change of statics can republish.
    learned: Mutex<FxHashMap<NextHop, [u8; 6]>>,
}

impl NeighTable {
    pub fn new(statics: FxHashMap<NextHop, [u8; 6]>) -> Arc<Self> {
        let table = Arc::new(Self {
            current: ArcSwap::from_pointee(NeighSnapshot::default()),
            generation: AtomicU64::new(0),
            statics: Mutex::new(statics),
            learned: Mutex::new(FxHashMap::default()),
        });
        table.publish(FxHashMap::default());
        table
    }

    /// The current snapshot; hold it for a batch, not longer.
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<NeighSnapshot>> {
        self.current.load()
    }

    /// Publishes the kernel's entries (statics win over learned ones).
    pub fn publish(&self, learned: FxHashMap<NextHop, [u8; 6]>) {
        let mut kept = self.learned.lock().unwrap_or_else(|p| p.into_inner());
        *kept = learned;
        self.publish_locked(&kept);
    }

    /// Replaces the static entries (a config reload) and republishes.
    pub fn set_statics(&self, statics: FxHashMap<NextHop, [u8; 6]>) {
        let kept = self.learned.lock().unwrap_or_else(|p| p.into_inner());
        *self.statics.lock().unwrap_or_else(|p| p.into_inner()) = statics;
        self.publish_locked(&kept);
    }

    fn publish_locked(&self, learned: &FxHashMap<NextHop, [u8; 6]>) {
        let mut entries = learned.clone();
        entries.extend(
            self.statics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(k, v)| (*k, *v)),
        );
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.current.store(Arc::new(NeighSnapshot {
            entries,
            generation,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statics_win_and_generation_moves() {
        let nh = NextHop {
            port: 1,
            family: Family::V4,
            addr: 0xc613_0002,
        };
        let other = NextHop {
            port: 0,
            family: Family::V4,
            addr: 0xc612_0002,
        };
        let mut statics = FxHashMap::default();
        statics.insert(nh, [2, 0, 0, 0, 0, 2]);
        let t = NeighTable::new(statics);
        let g0 = t.load().generation;
        let mut learned = FxHashMap::default();
        learned.insert(nh, [9; 6]);
        learned.insert(other, [3; 6]);
        t.publish(learned);
        let s = t.load();
        assert!(s.generation > g0);
        assert_eq!(s.lookup(&nh), Some([2, 0, 0, 0, 0, 2]));
        assert_eq!(s.lookup(&other), Some([3; 6]));
        assert_eq!(s.lookup(&NextHop { port: 1, ..other }), None);
        // A reload that drops the static entry lets the learned one show.
        t.set_statics(FxHashMap::default());
        assert_eq!(t.load().lookup(&nh), Some([9; 6]));
    }
}
