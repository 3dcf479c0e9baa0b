//! Per-worker counters: plain `u64`s the worker bumps, published once per poll-loop
//! round into atomics that readers sum (DESIGN.md section 1: no shared mutable
//! state on the hot path).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::packet::parse::ParseError;

/// Why a frame was not forwarded (or what else happened to it). The names are
/// what `fwd stats` prints and what tests assert on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Reason {
    /// The headers do not parse (see the `malformed_*` counters for which check).
    Malformed,
    /// IPv4 header checksum wrong (Linux drops these in ip_rcv_core).
    BadChecksum,
    /// Destination MAC is not the ingress port's, or the frame is VLAN-tagged (fwd's
    /// ports are untagged): what Linux calls PACKET_OTHERHOST and drops.
    NotForUs,
    /// No route to the destination (ICMP unreachable sent, rate permitting).
    NoRoute,
    /// TTL or hop limit would reach zero (ICMP time exceeded sent, rate permitting).
    TtlExceeded,
    /// Larger than the egress MTU.
    TooBig,
    /// Held for neighbour resolution and the per-next-hop or total queue was full.
    NeighOverflow,
    /// Held for neighbour resolution and the kernel did not resolve it in time.
    NeighTimeout,
    /// The egress TX ring had no room.
    TxRingFull,
    /// Dropped by the rule table.
    Filtered,
    /// An ICMP error was due but the rate limit or a rule of RFC 1812 4.3.2.7 said no.
    IcmpSuppressed,
    /// Rejected by a `-j REJECT` rule (the answer is counted in `icmp_sent`).
    Rejected,
    /// A new connection found the connection table full (nothing to evict).
    CtTableFull,
    /// A new connection's reply tuple was another connection's.
    CtClash,
    /// NAT found no free tuple in its range, or could not translate an ICMP error.
    NatExhausted,
}

impl Reason {
    pub const ALL: [Reason; 15] = [
        Reason::Malformed,
        Reason::BadChecksum,
        Reason::NotForUs,
        Reason::NoRoute,
        Reason::TtlExceeded,
        Reason::TooBig,
        Reason::NeighOverflow,
        Reason::NeighTimeout,
        Reason::TxRingFull,
        Reason::Filtered,
        Reason::IcmpSuppressed,
        Reason::Rejected,
        Reason::CtTableFull,
        Reason::CtClash,
        Reason::NatExhausted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::BadChecksum => "bad_checksum",
            Reason::NotForUs => "not_for_us",
            Reason::NoRoute => "no_route",
            Reason::TtlExceeded => "ttl_exceeded",
            Reason::TooBig => "too_big",
            Reason::NeighOverflow => "neigh_overflow",
            Reason::NeighTimeout => "neigh_timeout",
            Reason::TxRingFull => "tx_ring_full",
            Reason::Filtered => "filtered",
            Reason::IcmpSuppressed => "icmp_suppressed",
            Reason::Rejected => "rejected",
            Reason::CtTableFull => "ct_table_full",
            Reason::CtClash => "ct_clash",
            Reason::NatExhausted => "nat_failed",
        }
    }
}

/// Events that are not drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Event {
    /// Frames forwarded (handed to an egress TX ring).
    Forwarded = 0,
    /// ICMP errors generated and sent.
    IcmpSent,
    /// Frames held while the kernel resolved their next hop.
    NeighHeld,
    /// Held frames sent once the next hop resolved.
    NeighReleased,
    /// Resolution requests sent to the kernel.
    NeighRequests,
    /// Poll-loop rounds that found no frames.
    IdleRounds,
    /// Times the worker slept in poll(2).
    Sleeps,
    /// Nanoseconds spent in rounds that moved frames, from RX to the TX kick and
    /// refill: the worker's work, which a spinning worker's CPU time hides
    /// (busy_ns / forwarded is its on-CPU cost per frame).
    BusyNs,
}

impl Event {
    pub const ALL: [Event; 8] = [
        Event::Forwarded,
        Event::IcmpSent,
        Event::NeighHeld,
        Event::NeighReleased,
        Event::NeighRequests,
        Event::IdleRounds,
        Event::Sleeps,
        Event::BusyNs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Event::Forwarded => "forwarded",
            Event::IcmpSent => "icmp_sent",
            Event::NeighHeld => "neigh_held",
            Event::NeighReleased => "neigh_released",
            Event::NeighRequests => "neigh_requests",
            Event::IdleRounds => "idle_rounds",
            Event::Sleeps => "sleeps",
            Event::BusyNs => "busy_ns",
        }
    }
}

/// How many distinct parse-error slots we keep (one per `ParseError` variant).
pub const MALFORMED_SLOTS: usize = ParseError::ALL.len();

/// The counter slot of a parse error.
#[inline]
pub fn malformed_slot(e: &ParseError) -> usize {
    let d = std::mem::discriminant(e);
    ParseError::ALL
        .iter()
        .position(|x| std::mem::discriminant(x) == d)
        .unwrap_or(0)
}
/// Latency buckets: bucket k counts frames whose batch took < 2^(k+8) ns (256 ns up
/// to about 4 s); the last bucket takes the rest.
pub const LATENCY_BUCKETS: usize = 24;
const PORT_COUNTERS: usize = 4;
const EVENTS_BASE: usize = 0;
const REASONS_BASE: usize = EVENTS_BASE + Event::ALL.len();
const MALFORMED_BASE: usize = REASONS_BASE + Reason::ALL.len();
const LATENCY_BASE: usize = MALFORMED_BASE + MALFORMED_SLOTS;
const PORTS_BASE: usize = LATENCY_BASE + LATENCY_BUCKETS;

/// Upper bound (ns) of latency bucket `k`.
pub fn latency_bound_ns(k: usize) -> u64 {
    if k + 1 == LATENCY_BUCKETS {
        u64::MAX
    } else {
        1u64 << (k + 8)
    }
}

/// A worker's own counters. Indexing is by enum and port, laid out in one flat array.
pub struct Counters {
    v: Box<[u64]>,
}

impl Counters {
    pub fn new(ports: usize) -> Self {
        Self {
            v: vec![0; PORTS_BASE + PORT_COUNTERS * ports].into_boxed_slice(),
        }
    }

    #[inline]
    pub fn event(&mut self, e: Event, n: u64) {
        self.v[EVENTS_BASE + e as usize] += n;
    }

    #[inline]
    pub fn drop(&mut self, r: Reason) {
        self.v[REASONS_BASE + r as usize] += 1;
    }

    #[inline]
    pub fn malformed(&mut self, slot: usize) {
        self.v[REASONS_BASE + Reason::Malformed as usize] += 1;
        self.v[MALFORMED_BASE + slot.min(MALFORMED_SLOTS - 1)] += 1;
    }

    /// Records that `frames` frames spent `ns` between RX and the TX ring.
    #[inline]
    pub fn latency(&mut self, ns: u64, frames: u64) {
        let k = (64 - (ns >> 8).leading_zeros() as usize).min(LATENCY_BUCKETS - 1);
        self.v[LATENCY_BASE + k] += frames;
    }

    #[inline]
    pub fn rx(&mut self, port: usize, bytes: usize) {
        let b = PORTS_BASE + PORT_COUNTERS * port;
        self.v[b] += 1;
        self.v[b + 1] += bytes as u64;
    }

    #[inline]
    pub fn tx(&mut self, port: usize, bytes: usize) {
        let b = PORTS_BASE + PORT_COUNTERS * port + 2;
        self.v[b] += 1;
        self.v[b + 1] += bytes as u64;
    }

    /// Copies the counters into the worker's published slot.
    #[inline]
    pub fn publish(&self, to: &SharedCounters) {
        for (a, v) in to.v.iter().zip(self.v.iter()) {
            a.store(*v, Ordering::Relaxed);
        }
    }
}

/// A worker's published counters; read from any thread.
pub struct SharedCounters {
    v: Box<[AtomicU64]>,
    ports: usize,
}

impl SharedCounters {
    pub fn new(ports: usize) -> Self {
        Self {
            v: (0..PORTS_BASE + PORT_COUNTERS * ports)
                .map(|_| AtomicU64::new(0))
                .collect(),
            ports,
        }
    }

    fn get(&self, i: usize) -> u64 {
        self.v[i].load(Ordering::Relaxed)
    }

    /// Frames this worker received, over all ports.
    pub fn rx_packets(&self) -> u64 {
        (0..self.ports)
            .map(|p| self.get(PORTS_BASE + PORT_COUNTERS * p))
            .sum()
    }
}

/// Per-port totals, summed over workers.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct PortTotals {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// Everything summed over workers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub events: Vec<(&'static str, u64)>,
    pub drops: Vec<(&'static str, u64)>,
    /// Malformed frames by parse-error slot (named by the caller).
    pub malformed: Vec<u64>,
    /// Frames per latency bucket.
    pub latency: Vec<u64>,
    pub ports: Vec<PortTotals>,
}

impl Totals {
    pub fn sum(workers: &[&SharedCounters]) -> Totals {
        let ports = workers.first().map_or(0, |w| w.ports);
        let s = |i: usize| workers.iter().map(|w| w.get(i)).sum::<u64>();
        Totals {
            events: Event::ALL
                .iter()
                .map(|e| (e.name(), s(EVENTS_BASE + *e as usize)))
                .collect(),
            drops: Reason::ALL
                .iter()
                .map(|r| (r.name(), s(REASONS_BASE + *r as usize)))
                .collect(),
            malformed: (0..MALFORMED_SLOTS)
                .map(|i| s(MALFORMED_BASE + i))
                .collect(),
            latency: (0..LATENCY_BUCKETS).map(|i| s(LATENCY_BASE + i)).collect(),
            ports: (0..ports)
                .map(|p| {
                    let b = PORTS_BASE + PORT_COUNTERS * p;
                    PortTotals {
                        rx_packets: s(b),
                        rx_bytes: s(b + 1),
                        tx_packets: s(b + 2),
                        tx_bytes: s(b + 3),
                    }
                })
                .collect(),
        }
    }

    pub fn drop_count(&self, name: &str) -> u64 {
        self.drops
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    }

    pub fn event_count(&self, name: &str) -> u64 {
        self.events
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_over_workers() {
        let (a, b) = (SharedCounters::new(2), SharedCounters::new(2));
        let mut ca = Counters::new(2);
        ca.rx(1, 100);
        ca.drop(Reason::NoRoute);
        ca.event(Event::Forwarded, 3);
        ca.publish(&a);
        let mut cb = Counters::new(2);
        cb.rx(1, 60);
        cb.malformed(2);
        cb.publish(&b);
        let t = Totals::sum(&[&a, &b]);
        assert_eq!(t.ports[1].rx_packets, 2);
        assert_eq!(t.ports[1].rx_bytes, 160);
        assert_eq!(t.ports[0], PortTotals::default());
        assert_eq!(t.drop_count("no_route"), 1);
        assert_eq!(t.drop_count("malformed"), 1);
        assert_eq!(t.malformed[2], 1);
        assert_eq!(t.event_count("forwarded"), 3);
        assert_eq!(a.rx_packets(), 1);
    }

    #[test]
    fn latency_lands_in_its_power_of_two_bucket() {
        let s = SharedCounters::new(1);
        let mut c = Counters::new(1);
        c.latency(100, 1); // < 256 ns
        c.latency(300, 2); // < 512 ns
        c.latency(u64::MAX, 4); // the last bucket
        c.publish(&s);
        let t = Totals::sum(&[&s]);
        assert_eq!(t.latency[0], 1);
        assert_eq!(t.latency[1], 2);
        assert_eq!(t.latency[LATENCY_BUCKETS - 1], 4);
        assert_eq!(latency_bound_ns(1), 512);
    }
}
