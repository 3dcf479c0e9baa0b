//! Per-worker rule counters and the LOG ring: plain arrays the hot path bumps without
//! locks or formatting; a reader sums workers (`Ruleset::sum_counters`) and a cold thread
//! formats log events.

use super::RejectWith;
use crate::packet::meta::PacketMeta;

/// Packet and byte count of one rule or policy. Bytes are IP lengths, as iptables counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// The outcome of a hook. NAT is not a verdict: a NAT rule accepts and records its
/// target in `PacketMeta::nat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Accept,
    Drop,
    /// Dropped by `-j REJECT`; the dataplane answers with this.
    Reject(RejectWith),
}

/// One `-j LOG` hit: the rule id and the packet, formatted later off the hot path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogEvent {
    pub rule_id: u32,
    pub meta: PacketMeta,
}

/// Events kept between two drains. LOG is rate-limited by this bound: hits beyond it
/// in one drain interval only count in `log_dropped`.
pub const LOG_RING_CAPACITY: usize = 64;

/// One worker's counters, indexed by the rule ids of a `Ruleset`.
#[derive(Clone, Debug)]
pub struct RuleCounters {
    counts: Vec<Counter>,
    log: Vec<LogEvent>,
    log_dropped: u64,
}

impl RuleCounters {
    pub fn new(len: usize) -> Self {
        RuleCounters {
            counts: vec![Counter::default(); len],
            log: Vec::with_capacity(LOG_RING_CAPACITY),
            log_dropped: 0,
        }
    }

    pub fn counts(&self) -> &[Counter] {
        &self.counts
    }

    pub fn get(&self, id: u32) -> Counter {
        self.counts[id as usize]
    }

    /// Adds one packet of `bytes` to counter `id`. An id past the end (a rule set reloaded
    /// with more rules while this worker still holds the old array) is a bug upstream:
    /// the worker must `resize` when it picks up a new classifier.
    #[inline]
    pub fn bump(&mut self, id: u32, bytes: u64) {
        let c = &mut self.counts[id as usize];
        c.packets += 1;
        c.bytes += bytes;
    }

    /// Carries counters over a reload: `map[old_id]` is the rule's id in the new rule
    /// set (None: the rule is gone); the result has `new_len` counters.
    pub fn remap(&mut self, map: &[Option<u32>], new_len: usize) {
        let mut next = vec![Counter::default(); new_len];
        for (old, c) in self.counts.iter().enumerate() {
            if let Some(Some(new)) = map.get(old) {
                next[*new as usize] = *c;
            }
        }
        self.counts = next;
    }

    /// Resets to `len` zeroed counters (after a reload, ids mean other rules).
    pub fn reset(&mut self, len: usize) {
        self.counts.clear();
        self.counts.resize(len, Counter::default());
    }

    /// Records a LOG hit without allocating: the ring's capacity is reserved up front.
    #[inline]
    pub fn log(&mut self, rule_id: u32, meta: &PacketMeta) {
        if self.log.len() < LOG_RING_CAPACITY {
            self.log.push(LogEvent {
                rule_id,
                meta: *meta,
            });
        } else {
            self.log_dropped += 1;
        }
    }

    /// Hands the pending LOG events to the cold path; returns how many were dropped
    /// for rate since the last drain.
    pub fn drain_log(&mut self, out: &mut Vec<LogEvent>) -> u64 {
        out.append(&mut self.log);
        self.log.reserve(LOG_RING_CAPACITY);
        std::mem::take(&mut self.log_dropped)
    }

    pub fn pending_log(&self) -> &[LogEvent] {
        &self.log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ring_is_bounded_and_counts_what_it_drops() {
        let mut c = RuleCounters::new(1);
        let meta = PacketMeta::default();
        for _ in 0..LOG_RING_CAPACITY + 5 {
            c.log(0, &meta);
        }
        let mut out = Vec::new();
        assert_eq!(c.drain_log(&mut out), 5);
        assert_eq!(out.len(), LOG_RING_CAPACITY);
        assert!(c.pending_log().is_empty());
        assert_eq!(c.drain_log(&mut out), 0);
    }
}
