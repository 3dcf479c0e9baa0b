//! One worker: a pinned thread that owns a UMEM and the sockets of its queues, and
//! runs the poll loop: RX burst -> route each frame -> stage per egress port ->
//! TX burst + kick -> reclaim completions -> refill fill rings. No allocation, no
//! lock and no syscall per packet; syscalls only when the kernel asks for them
//! (need_wakeup) or the worker goes idle.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use crossbeam::channel::{Receiver, Sender};

use crate::{
    classify::FlowCache,
    conntrack::{self, CtConfig, CtStats, StateCounts},
    packet::meta::PacketMeta,
    route::neigh::{NeighTable, NextHop},
    rules::{LogEvent, RuleCounters},
    xsk::{self, FrameBatch, Umem, XskSocket},
};

use super::{
    hold::{Drained, HoldOutcome, HoldQueue},
    pipeline::{rewrite_l2, IcmpLimiter, PortInfo, Router},
    stats::{Counters, Event, Reason, SharedCounters},
    tables::RuleSnapshot,
    Tables,
};

/// Entries of the per-worker flow cache in front of the classifier (a power of two;
/// 64 Ki entries hold the active flows of a busy port in a few MiB).
const FLOW_CACHE_ENTRIES: usize = 1 << 16;

/// Connection-table slots the expiry sweep looks at per poll-loop round.
const CT_EXPIRE_BUDGET: usize = 64;

/// How often rule counters and LOG events leave the worker.
const RULES_PUBLISH: Duration = Duration::from_millis(100);

/// How long an idle worker sleeps in poll(2) before looking again (it wakes at
/// once when a frame arrives).
const IDLE_SLEEP_MS: i32 = 10;

pub struct Worker {
    pub id: usize,
    pub core: Option<usize>,
    pub umem: Umem,
    /// The sockets this worker serves, and the port of each.
    pub sockets: Vec<XskSocket>,
    pub socket_port: Vec<u16>,
    /// For each port, the socket this worker transmits on.
    pub tx_socket: Vec<usize>,
    pub ports: Arc<[PortInfo]>,
    pub tables: Arc<ArcSwap<Tables>>,
    pub neigh: Arc<NeighTable>,
    pub neigh_requests: Sender<NextHop>,
    pub shared: Arc<SharedCounters>,
    /// Where this worker publishes its rule counters.
    pub rules_shared: Arc<ArcSwap<RuleSnapshot>>,
    /// `-j LOG` hits go to the log thread.
    pub log: Sender<Vec<LogEvent>>,
    pub stop: Arc<AtomicBool>,
    pub idle_spins: u32,
    /// Connection tracking for this worker (None: the rules need none).
    pub conntrack: Option<CtConfig>,
    /// `fwd conntrack` requests: the worker answers with its table's listing.
    pub ct_requests: Receiver<(bool, Sender<Option<CtDump>>)>,
}

/// One worker's connection table, as `fwd conntrack` shows it.
#[derive(Debug, Clone)]
pub struct CtDump {
    pub flows: Vec<String>,
    pub stats: CtStats,
    pub by_state: StateCounts,
}

impl Worker {
    pub fn run(mut self) {
        if let Some(core) = self.core {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                tracing::warn!(
                    worker = self.id,
                    core,
                    "could not pin the worker to its core"
                );
            }
        }
        let nports = self.ports.len();
        let mut counters = Counters::new(nports);
        let mut tx: Vec<FrameBatch> = (0..nports).map(|_| FrameBatch::default()).collect();
        let mut rx = FrameBatch::default();
        let mut hold = HoldQueue::new();
        let mut meta = PacketMeta::default();
        let mut ahead = PacketMeta::default();
        let mut hashes = [None; xsk::BATCH];
        let mut icmp = IcmpLimiter::new(1000, 50);
        let mut pollfds: Vec<libc::pollfd> = self
            .sockets
            .iter()
            .map(|s| libc::pollfd {
                fd: s.fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let mut idle = 0u32;
        let mut held_generation = 0u64;
        let mut last_hold_check = Instant::now();
        for s in &mut self.sockets {
            s.refill(&mut self.umem);
        }
        let ports = self.ports.clone();
        let mut flow_cache = FlowCache::new(FLOW_CACHE_ENTRIES);
        let mut rule_gen = self.tables.load().generation;
        let mut rule_counters = RuleCounters::new(self.tables.load().classifier.counter_len());
        let mut last_rules_publish = Instant::now();
        let mut log_events: Vec<LogEvent> = Vec::new();
        let mut ct = self.conntrack.as_ref().map(conntrack::Table::new);
        let started = Instant::now();
        self.publish_rules(rule_gen, &rule_counters, ct.as_ref(), 0);

        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            icmp.refill(now);
            let neigh = self.neigh.load();
            // One load per round: a reload takes effect at the next round, and the
            // old tables live until this guard drops.
            let tables = self.tables.load();
            if tables.generation != rule_gen {
                // A reload: carry the counters of unchanged rules over (DESIGN.md 4).
                let map: &[Option<u32>] = if tables.prev_generation == rule_gen {
                    &tables.counter_map
                } else {
                    &[]
                };
                rule_counters.remap(map, tables.classifier.counter_len());
                rule_gen = tables.generation;
                self.publish_rules(rule_gen, &rule_counters, ct.as_ref(), 0);
            }
            let now_ms = now.duration_since(started).as_millis() as u64;
            if let Some(ct) = ct.as_mut() {
                // Incremental expiry: a few slots a round, never a full-table scan.
                ct.expire(now_ms, CT_EXPIRE_BUDGET);
            }
            let mut got = 0;
            for si in 0..self.sockets.len() {
                let n = self.sockets[si].rx_burst(&mut rx);
                if n == 0 {
                    continue;
                }
                got += n;
                let in_port = self.socket_port[si];
                if let Some(t) = ct.as_ref() {
                    // Look ahead: start every frame's connection-table loads before
                    // the first frame needs its own, so a large table's cache misses
                    // overlap (the frames are parsed again, from L1, in route). The
                    // headers first: in copy mode another core wrote them.
                    for data in self.umem.batch_data(&rx) {
                        xsk::prefetch(&data[0]);
                    }
                    for (h, data) in hashes.iter_mut().zip(self.umem.batch_data(&rx)) {
                        *h = None;
                        if crate::packet::parse(data, &mut ahead).is_ok() {
                            *h = t.prefetch(data, &ahead, 0);
                        }
                    }
                    for h in hashes[..n].iter().flatten() {
                        t.prefetch_entry(*h);
                    }
                }
                for mut frame in rx.drain() {
                    let mut len = frame.len();
                    counters.rx(in_port as usize, len);
                    let verdict = {
                        let buf = self.umem.buf_mut(&mut frame);
                        Router {
                            fib: &tables.fib,
                            ports: &ports,
                            classifier: &tables.classifier,
                            flow_cache: &mut flow_cache,
                            rule_counters: &mut rule_counters,
                            ct: ct.as_mut(),
                            icmp: &mut icmp,
                            counters: &mut counters,
                            now_ms,
                        }
                        .route(buf, &mut len, in_port, &mut meta)
                    };
                    let Some((out, nh)) = verdict else {
                        self.umem.free(frame);
                        continue;
                    };
                    if len != frame.len() {
                        self.umem.set_len(&mut frame, len);
                    }
                    match neigh.lookup(&nh) {
                        Some(mac) => {
                            rewrite_l2(
                                self.umem.data_mut(&mut frame),
                                mac,
                                ports[out as usize].mac,
                            );
                            let batch = &mut tx[out as usize];
                            batch.push(frame);
                            if batch.is_full() {
                                self.flush(out as usize, batch, &mut counters);
                            }
                        }
                        None => match hold.hold(nh, frame, now) {
                            HoldOutcome::Held { first } => {
                                counters.event(Event::NeighHeld, 1);
                                if first {
                                    counters.event(Event::NeighRequests, 1);
                                    let _ = self.neigh_requests.try_send(nh);
                                }
                            }
                            HoldOutcome::Full(frame) => {
                                counters.drop(Reason::NeighOverflow);
                                self.umem.free(frame);
                            }
                        },
                    }
                }
            }

            // Frames waiting for a MAC: look again when the table changed, and every
            // 100 ms for timeouts.
            if !hold.is_empty()
                && (neigh.generation != held_generation
                    || now.duration_since(last_hold_check) >= Duration::from_millis(100))
            {
                held_generation = neigh.generation;
                last_hold_check = now;
                let umem = &mut self.umem;
                let mut expired = 0;
                let mut released = 0;
                hold.drain_ready(
                    now,
                    |nh| neigh.lookup(nh),
                    |d| match d {
                        Drained::Released(nh, mac, mut frame) => {
                            rewrite_l2(umem.data_mut(&mut frame), mac, ports[nh.port as usize].mac);
                            let batch = &mut tx[nh.port as usize];
                            if batch.is_full() {
                                counters.drop(Reason::TxRingFull);
                                umem.free(frame);
                            } else {
                                batch.push(frame);
                                released += 1;
                            }
                        }
                        Drained::Expired(frame) => {
                            expired += 1;
                            umem.free(frame);
                        }
                    },
                );
                counters.event(Event::NeighReleased, released);
                for _ in 0..expired {
                    counters.drop(Reason::NeighTimeout);
                }
            }

            for (p, batch) in tx.iter_mut().enumerate() {
                if !batch.is_empty() {
                    self.flush(p, batch, &mut counters);
                }
            }
            if got > 0 {
                counters.latency(now.elapsed().as_nanos() as u64, got as u64);
            }
            let mut outstanding = 0;
            for s in &mut self.sockets {
                s.kick_tx();
                s.complete(&mut self.umem);
                outstanding += s.tx_outstanding();
            }
            for s in &mut self.sockets {
                s.refill(&mut self.umem);
                if s.rx_needs_wakeup() {
                    xsk::wake_rx(s.fd());
                }
            }
            if got > 0 {
                counters.event(Event::BusyNs, now.elapsed().as_nanos() as u64);
            }

            if now.duration_since(last_rules_publish) >= RULES_PUBLISH {
                last_rules_publish = now;
                self.publish_rules(rule_gen, &rule_counters, ct.as_ref(), now_ms);
                // `fwd conntrack`: the listing is built here, off the packet path,
                // only when asked.
                while let Ok((count_only, reply)) = self.ct_requests.try_recv() {
                    let dump = ct.as_ref().map(|t| CtDump {
                        flows: if count_only {
                            Vec::new()
                        } else {
                            t.entries(now_ms).map(|f| f.to_string()).collect()
                        },
                        stats: t.stats(),
                        by_state: t.count_by_state(),
                    });
                    let _ = reply.send(dump);
                }
                if rule_counters.drain_log(&mut log_events) > 0 || !log_events.is_empty() {
                    let _ = self.log.try_send(std::mem::take(&mut log_events));
                }
            }
            if got > 0 {
                idle = 0;
                counters.publish(&self.shared);
            } else {
                idle += 1;
                counters.event(Event::IdleRounds, 1);
                if idle.is_multiple_of(1024) {
                    counters.publish(&self.shared);
                }
                if self.idle_spins > 0
                    && idle >= self.idle_spins
                    && hold.is_empty()
                    && outstanding == 0
                {
                    counters.event(Event::Sleeps, 1);
                    counters.publish(&self.shared);
                    xsk::wait_readable(&mut pollfds, IDLE_SLEEP_MS);
                    idle = 0;
                }
            }
        }
        counters.publish(&self.shared);
        self.publish_rules(rule_gen, &rule_counters, ct.as_ref(), 0);
    }

    /// Publishes this worker's rule counters for `fwd rules` (a copy every 100 ms:
    /// readers never touch the array the worker writes).
    fn publish_rules(
        &self,
        generation: u64,
        rc: &RuleCounters,
        ct: Option<&conntrack::Table>,
        _now_ms: u64,
    ) {
        self.rules_shared.store(Arc::new(RuleSnapshot {
            generation,
            counts: rc.counts().to_vec(),
            ct: ct.map(|t| t.stats()),
        }));
    }

    /// Hands a port's staged frames to its TX ring; what does not fit after one
    /// round of reclaiming completions is dropped and counted.
    #[inline]
    fn flush(&mut self, port: usize, batch: &mut FrameBatch, counters: &mut Counters) {
        let s = &mut self.sockets[self.tx_socket[port]];
        for _ in 0..2 {
            let lens: [usize; xsk::BATCH] = std::array::from_fn(|i| {
                if i < batch.len() {
                    batch.frame_len(i)
                } else {
                    0
                }
            });
            let n = s.tx_burst(batch);
            for len in &lens[..n] {
                counters.tx(port, *len);
            }
            counters.event(Event::Forwarded, n as u64);
            if batch.is_empty() {
                return;
            }
            s.kick_tx();
            s.complete(&mut self.umem);
        }
        for _ in 0..batch.len() {
            counters.drop(Reason::TxRingFull);
        }
        self.umem.free_batch(batch);
    }
}
