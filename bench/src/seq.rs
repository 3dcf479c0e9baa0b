//! Loss, reordering and duplicates from the generator's sequence numbers.
//!
//! The generator numbers frames 0, 1, 2, ... . The tracker remembers, for each slot
//! `seq % WINDOW`, the last sequence number that landed there: a frame whose number
//! is already in its slot is a duplicate (exact within a window of `WINDOW` frames),
//! one below the highest seen so far arrived reordered, and whatever never arrived
//! is lost. bpf/sink.bpf.c does the same in the kernel.

/// Frames within which duplicates are detected exactly (as SEEN_SLOTS in sink.bpf.c).
pub const WINDOW: usize = 65536;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SeqStats {
    /// Every bench frame received, duplicates included.
    pub received: u64,
    /// Distinct sequence numbers received.
    pub unique: u64,
    pub duplicates: u64,
    /// Frames that arrived after a higher sequence number.
    pub reordered: u64,
    /// Sequence numbers below the highest seen that never arrived. Frames lost after
    /// the last one received are invisible here: compare `unique` with what the
    /// generator sent for those.
    pub lost: u64,
    /// Highest sequence number seen, plus one (0: nothing yet).
    pub max_seq1: u64,
}

pub struct SeqTracker {
    /// seq + 1 of the last frame in each slot; 0 is empty.
    seen: Vec<u64>,
    stats: SeqStats,
}

impl Default for SeqTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl SeqTracker {
    pub fn new() -> Self {
        Self {
            seen: vec![0; WINDOW],
            stats: SeqStats::default(),
        }
    }

    #[inline]
    pub fn record(&mut self, seq: u64) {
        let s = &mut self.stats;
        s.received += 1;
        let slot = &mut self.seen[seq as usize % WINDOW];
        if *slot == seq + 1 {
            s.duplicates += 1;
            return;
        }
        *slot = seq + 1;
        s.unique += 1;
        if seq + 1 > s.max_seq1 {
            s.max_seq1 = seq + 1;
        } else {
            s.reordered += 1;
        }
    }

    pub fn stats(&self) -> SeqStats {
        SeqStats {
            lost: self.stats.max_seq1.saturating_sub(self.stats.unique),
            ..self.stats
        }
    }
}

/// Loss (`lost`) from raw counters, as for the in-kernel sink.
pub fn finish(mut s: SeqStats) -> SeqStats {
    s.lost = s.max_seq1.saturating_sub(s.unique);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seqs: impl IntoIterator<Item = u64>) -> SeqStats {
        let mut t = SeqTracker::new();
        for s in seqs {
            t.record(s);
        }
        t.stats()
    }

    #[test]
    fn in_order_stream_is_clean() {
        let s = run(0..100_000);
        assert_eq!(
            (s.unique, s.lost, s.reordered, s.duplicates),
            (100_000, 0, 0, 0)
        );
    }

    #[test]
    fn injected_loss_is_counted_exactly() {
        // Drop every 10th frame and a burst of 500.
        let s = run((0..100_000).filter(|s| s % 10 != 3 && !(40_000..40_500).contains(s)));
        let dropped = 10_000 + 500 - 50; // the burst holds 50 "every 10th" frames
        assert_eq!(s.lost, dropped);
        assert_eq!((s.reordered, s.duplicates), (0, 0));
    }

    #[test]
    fn injected_reordering_is_counted_and_not_lost() {
        // Swap neighbours every 100 frames: 99 arrives after 100, etc.
        let mut v: Vec<u64> = (0..10_000).collect();
        for i in (100..10_000).step_by(100) {
            v.swap(i - 1, i);
        }
        let s = run(v);
        assert_eq!(s.reordered, 99);
        assert_eq!((s.lost, s.duplicates, s.unique), (0, 0, 10_000));
    }

    #[test]
    fn injected_duplicates_are_counted_and_not_unique() {
        let mut v: Vec<u64> = (0..10_000).collect();
        v.extend((0..10_000).step_by(7)); // late copies, still inside the window
        v.insert(5000, 4999); // an immediate copy
        let s = run(v);
        assert_eq!(s.duplicates, 10_000usize.div_ceil(7) as u64 + 1);
        assert_eq!((s.unique, s.lost, s.reordered), (10_000, 0, 0));
    }

    #[test]
    fn all_three_at_once() {
        let mut v: Vec<u64> = (0..1000).filter(|s| *s != 10 && *s != 11).collect();
        v.push(10); // 10 late: reordered, no longer lost
        v.push(500); // duplicate
        let s = run(v);
        assert_eq!((s.lost, s.reordered, s.duplicates), (1, 1, 1));
    }
}
