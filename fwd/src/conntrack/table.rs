//! The per-worker connection table: a slab of entries allocated once
//! (`max_entries`), and an open-addressing index (linear probing, backward-shift
//! deletion, load ≤ 1/2) with one slot per direction, so the original and the
//! reply tuple both find the entry in O(1). Nothing here allocates after `new`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::ctstatus::{ALLOCATED, ASSURED, CONFIRMED, PUBLIC, SEEN_REPLY};
use super::tcp::{self, Segment, TcpOutcome, TcpTimeouts, TcpTrack};
use super::tuple::{self, icmp_valid_new, Extracted, FlowKey, L4};
use super::{CtConfig, CtDrop, CtHandle, CtResult, CtState, CtStats, Dir, TcpState, Timeouts};
use crate::packet::meta::{Family, PacketMeta};

/// Ours: an entry the TCP tracker ended (expires = now), reclaimed like an
/// expired one but counted in `killed`, not `expired`.
const DYING: u16 = 1 << 14;

/// Index slots scanned for an un-ASSURED victim when the table is full: about
/// eight entries at the index's load of 1/2, like Linux's NF_CT_EVICTION_RANGE of
/// eight hash buckets (nf_conntrack_core.c early_drop).
const EARLY_DROP_SCAN: usize = 16;

/// UDP seen both ways for this long becomes a stream (udp_packet's stream_ts).
const UDP_STREAM_AFTER_MS: u32 = 2_000;

const EMPTY: u32 = u32::MAX;

/// One index slot: the low 32 bits of the tuple's hash (its home position and a
/// filter before touching the entry) and `entry << 1 | dir`.
#[derive(Clone, Copy, Debug)]
struct Slot {
    hash: u32,
    reff: u32,
}

const EMPTY_SLOT: Slot = Slot {
    hash: 0,
    reff: EMPTY,
};

/// One connection (struct nf_conn, the parts we keep): 208 bytes. In this order
/// (`repr(C)`), every packet's fields are in the first 146 bytes and TCP's state
/// last, so a UDP flow's packet touches no more cache lines than before TCP's
/// window tracking made the entry 48 bytes longer.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub(super) struct Conn {
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// [original, reply]; the reply tuple differs from `original.invert()` when NATed.
    pub tuple: [FlowKey; 2],
    /// Absolute, in the caller's ms clock.
    pub expires: u64,
    pub gen: u32,
    /// Creation time, low 32 bits of the ms clock (UDP stream detection).
    pub start: u32,
    pub status: u16,
    pub tcp: TcpTrack,
}

impl Conn {
    #[inline]
    fn l4(&self) -> L4 {
        L4::of(self.tuple[0].family, self.tuple[0].proto)
    }
}

/// What [`Table::prefetch`] found out for [`Table::prefetch_entry`].
#[derive(Clone, Copy, Debug)]
pub struct Lookahead {
    hash: u64,
    tcp: bool,
}

/// A packet as its protocol's tracker reads it: TCP's needs the segment.
#[derive(Clone, Copy, Debug)]
enum Proto<'a> {
    Tcp(Segment<'a>),
    Udp,
    IcmpQuery,
    Generic,
}

/// Timeouts in ms.
#[derive(Clone, Copy, Debug)]
pub(super) struct TimeoutsMs {
    pub tcp: TcpTimeouts,
    pub udp: u64,
    pub udp_stream: u64,
    pub icmp: u64,
    pub generic: u64,
}

impl From<&Timeouts> for TimeoutsMs {
    fn from(t: &Timeouts) -> Self {
        let ms = |s: u32| u64::from(s) * 1000;
        TimeoutsMs {
            tcp: TcpTimeouts {
                by_state: [
                    ms(t.tcp_syn_sent), // NONE: never stored
                    ms(t.tcp_syn_sent),
                    ms(t.tcp_syn_recv),
                    ms(t.tcp_established),
                    ms(t.tcp_fin_wait),
                    ms(t.tcp_close_wait),
                    ms(t.tcp_last_ack),
                    ms(t.tcp_time_wait),
                    ms(t.tcp_close),
                    ms(t.tcp_syn_sent), // SYN_SENT2 uses syn_sent, as in Linux
                ],
                unacknowledged: ms(t.tcp_unacknowledged),
                max_retrans: ms(t.tcp_max_retrans),
            },
            udp: ms(t.udp),
            udp_stream: ms(t.udp_stream),
            icmp: ms(t.icmp),
            generic: ms(t.generic),
        }
    }
}

/// A per-worker connection table. See the module docs of `conntrack` for the
/// calling order.
pub struct Table {
    pub(super) conns: Box<[Conn]>,
    /// Stack of free entry numbers.
    free: Vec<u32>,
    index: Box<[Slot]>,
    mask: usize,
    pub(super) seed: u64,
    timeouts: TimeoutsMs,
    tcp_loose: bool,
    tcp_be_liberal: bool,
    /// Next entry the incremental sweep looks at.
    sweep_at: usize,
    pub(super) stats: CtStats,
}

impl Table {
    /// A table for `cfg.max_entries` flows, with a random hash seed.
    pub fn new(cfg: &CtConfig) -> Table {
        use std::hash::BuildHasher;
        // RandomState is keyed from the OS once per process: a cold-path source of
        // a seed senders cannot guess.
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64);
        Table::with_seed(cfg, seed)
    }

    /// [`Table::new`] with a fixed seed (tests, benchmarks).
    pub fn with_seed(cfg: &CtConfig, seed: u64) -> Table {
        let max = (cfg.max_entries as usize).clamp(1, (u32::MAX >> 2) as usize);
        // Two slots per entry at a load of at most 1/2.
        let slots = (max * 4).next_power_of_two().max(16);
        Table {
            conns: vec![Conn::default(); max].into_boxed_slice(),
            free: (0..max as u32).rev().collect(),
            index: vec![EMPTY_SLOT; slots].into_boxed_slice(),
            mask: slots - 1,
            seed,
            timeouts: TimeoutsMs::from(&cfg.timeouts),
            tcp_loose: cfg.tcp_loose,
            tcp_be_liberal: cfg.tcp_be_liberal,
            sweep_at: 0,
            stats: CtStats::default(),
        }
    }

    pub fn max_entries(&self) -> usize {
        self.conns.len()
    }

    /// Live entries, confirmed or not.
    pub fn len(&self) -> usize {
        self.conns.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> CtStats {
        CtStats {
            entries: self.len() as u64,
            ..self.stats
        }
    }

    /// Look ahead, step 1: starts loading the index slots that tracking this frame
    /// reads: its own tuple's (the lookup) and, for a connection it creates, the
    /// reply tuple's (the clash check and insertion). A batch calls this for every
    /// frame first, so the cache misses of a large table overlap instead of queueing
    /// up. Returns what step 2 needs.
    #[inline]
    pub fn prefetch(&self, frame: &[u8], meta: &PacketMeta, zone: u16) -> Option<Lookahead> {
        let Extracted::Flow(key, l4) = tuple::extract(frame, meta, zone) else {
            return None;
        };
        let h = key.hash(self.seed);
        crate::xsk::prefetch(self.home(h));
        if let Some(reply) = key.invert() {
            crate::xsk::prefetch(self.home(reply.hash(self.seed)));
        }
        Some(Lookahead {
            hash: h,
            tcp: l4 == L4::Tcp,
        })
    }

    /// Look ahead, step 2 (once step 1 ran for the whole batch, so the slot has
    /// likely arrived): starts loading the entry the tuple's home slot names, when
    /// its hash tag matches; TCP's state only for a TCP segment.
    #[inline]
    pub fn prefetch_entry(&self, ahead: Lookahead) {
        let s = self.home(ahead.hash);
        if s.reff != EMPTY && s.hash == ahead.hash as u32 {
            let c = &self.conns[(s.reff >> 1) as usize];
            crate::xsk::prefetch(&c.tuple[(s.reff & 1) as usize]);
            crate::xsk::prefetch(&c.packets);
            crate::xsk::prefetch(&c.status);
            if ahead.tcp {
                c.tcp.prefetch();
            }
        }
    }

    /// The slot where a tuple of hash `h` starts probing.
    #[inline]
    fn home(&self, h: u64) -> &Slot {
        &self.index[h as u32 as usize & self.mask]
    }

    /// Memory the table holds, in bytes (entries, free list, index).
    pub fn memory_bytes(&self) -> usize {
        self.conns.len() * std::mem::size_of::<Conn>()
            + self.free.capacity() * 4
            + self.index.len() * std::mem::size_of::<Slot>()
    }

    /// nf_conntrack_in for one parsed frame: finds or creates the entry, runs the
    /// protocol tracker, and says what the packet is. A new entry is unconfirmed
    /// until [`Table::confirm`].
    pub fn track(
        &mut self,
        frame: &[u8],
        meta: &PacketMeta,
        zone: u16,
        now: u64,
    ) -> Result<CtResult, CtDrop> {
        match tuple::extract(frame, meta, zone) {
            Extracted::Flow(key, l4) => self.track_flow(frame, key, l4, meta, now),
            Extracted::IcmpError { inner } => Ok(self.track_related(inner, meta, now)),
            Extracted::Untracked => Ok(CtResult::UNTRACKED),
            Extracted::Invalid => Ok(self.invalid()),
        }
    }

    #[inline]
    fn invalid(&mut self) -> CtResult {
        self.stats.invalid += 1;
        CtResult::INVALID
    }

    #[inline]
    fn track_flow(
        &mut self,
        frame: &[u8],
        key: FlowKey,
        l4: L4,
        meta: &PacketMeta,
        now: u64,
    ) -> Result<CtResult, CtDrop> {
        let p = match l4 {
            // tcp_error: a whole header and a flag combination a real stack sends.
            L4::Tcp => match Segment::read(frame, meta).filter(|s| tcp::valid_flags(s.flags)) {
                Some(s) => Proto::Tcp(s),
                None => return Ok(self.invalid()),
            },
            L4::Udp => Proto::Udp,
            L4::IcmpQuery => Proto::IcmpQuery,
            L4::Generic => Proto::Generic,
        };
        let h = key.hash(self.seed);
        if let Some((idx, dir)) = self.find(&key, h) {
            if self.conns[idx as usize].expires > now {
                match self.update(idx, dir, p, meta, now) {
                    Some(r) => return Ok(r),
                    None => {
                        // TCP reopen: nf_ct_kill, then NF_REPEAT looks up again.
                        self.stats.killed += 1;
                        self.free_entry(idx);
                    }
                }
            } else {
                self.reap(idx);
            }
        }
        self.create(key, h, p, meta, now)
    }

    /// The protocol tracker on a live entry. None: TCP asks to reopen.
    #[inline]
    fn update(
        &mut self,
        idx: u32,
        dir: Dir,
        p: Proto,
        meta: &PacketMeta,
        now: u64,
    ) -> Option<CtResult> {
        let t = &self.timeouts;
        let c = &mut self.conns[idx as usize];
        let mut account = true;
        let timeout = match p {
            Proto::Tcp(seg) => match c.tcp.packet(
                &mut c.status,
                dir,
                &seg,
                &t.tcp,
                self.tcp_be_liberal,
                c.expires.saturating_sub(now),
            ) {
                TcpOutcome::Refresh(x) => Some(x),
                TcpOutcome::Keep => {
                    // tcp_packet returns before nf_ct_refresh_acct: an ignored
                    // segment or a retransmitted SYN is not counted in the entry.
                    account = false;
                    None
                }
                TcpOutcome::Invalid { lower_timeout } => {
                    if let Some(x) = lower_timeout {
                        c.expires = now + x;
                    }
                    self.stats.invalid += 1;
                    return Some(CtResult::INVALID);
                }
                TcpOutcome::Reopen => return None,
                TcpOutcome::Kill => {
                    // Reclaimed by the next lookup or sweep, counted in `killed`.
                    c.status |= DYING;
                    c.expires = now;
                    None
                }
            },
            Proto::Udp => Some(if c.status & SEEN_REPLY == 0 {
                t.udp
            } else if c.status & ASSURED != 0
                || (now as u32).wrapping_sub(c.start) >= UDP_STREAM_AFTER_MS
            {
                c.status |= ASSURED;
                t.udp_stream
            } else {
                t.udp
            }),
            Proto::IcmpQuery => Some(t.icmp),
            Proto::Generic => Some(t.generic),
        };
        if let Some(x) = timeout {
            c.expires = now + x;
        }
        if account {
            c.packets[dir.index()] += 1;
            c.bytes[dir.index()] += u64::from(meta.ip_len);
        }
        if dir == Dir::Reply {
            c.status |= SEEN_REPLY;
        }
        // resolve_normal_ct: the reply direction is ESTABLISHED; the original
        // direction is ESTABLISHED once a reply was seen, NEW before.
        let state = if dir == Dir::Reply || c.status & SEEN_REPLY != 0 {
            CtState::Established
        } else {
            CtState::New
        };
        Some(CtResult {
            state,
            dir,
            status: c.status & PUBLIC,
            handle: Some(CtHandle { idx, gen: c.gen }),
        })
    }

    fn create(
        &mut self,
        key: FlowKey,
        h: u64,
        p: Proto,
        meta: &PacketMeta,
        now: u64,
    ) -> Result<CtResult, CtDrop> {
        // tcp_new, icmp_new: may this packet start an entry?
        let tcp = match &p {
            Proto::Tcp(seg) => TcpTrack::new(seg, self.tcp_loose),
            Proto::IcmpQuery => icmp_valid_new(key.family, meta.icmp_type).then(TcpTrack::default),
            Proto::Udp | Proto::Generic => Some(TcpTrack::default()),
        };
        let Some((reply, tcp)) = key.invert().zip(tcp) else {
            return Ok(self.invalid());
        };
        let hr = reply.hash(self.seed);
        if let Some((other, _)) = self.find(&reply, hr) {
            if self.conns[other as usize].expires > now {
                self.stats.clash_drops += 1;
                return Err(CtDrop::Clash);
            }
            self.reap(other);
        }
        let idx = self.alloc(h, now)?;
        let c = &mut self.conns[idx as usize];
        *c = Conn {
            tuple: [key, reply],
            gen: c.gen,
            start: now as u32,
            status: ALLOCATED,
            tcp,
            ..Conn::default()
        };
        self.index_insert(h, idx << 1);
        self.index_insert(hr, idx << 1 | 1);
        self.stats.created += 1;
        let r = self.update(idx, Dir::Original, p, meta, now);
        debug_assert!(r.is_some_and(|r| r.state == CtState::New));
        Ok(CtResult {
            state: CtState::New,
            dir: Dir::Original,
            status: self.conns[idx as usize].status & PUBLIC,
            handle: Some(CtHandle {
                idx,
                gen: self.conns[idx as usize].gen,
            }),
        })
    }

    /// nf_conntrack_inet_error: an ICMP error whose quoted packet belongs to a
    /// flow is RELATED, in the direction opposite to the quoted packet's.
    fn track_related(&mut self, inner: FlowKey, meta: &PacketMeta, now: u64) -> CtResult {
        let Some(key) = inner.invert() else {
            return self.invalid();
        };
        let Some((idx, dir)) = self.find(&key, key.hash(self.seed)) else {
            return self.invalid();
        };
        let c = &self.conns[idx as usize];
        if c.expires <= now {
            self.reap(idx);
            return self.invalid();
        }
        // "outer daddr mismatch": the error must go where the flow's packets in
        // that direction go, or anyone could make any packet RELATED.
        if c.tuple[dir.index()].dst != meta.dst {
            return self.invalid();
        }
        self.stats.related += 1;
        CtResult {
            state: CtState::Related,
            dir,
            status: c.status & PUBLIC,
            handle: Some(CtHandle { idx, gen: c.gen }),
        }
    }

    /// nf_conntrack_confirm: the packet that created the entry was accepted. True
    /// when this call confirmed it.
    pub fn confirm(&mut self, h: CtHandle) -> bool {
        match self.conn_mut(h) {
            Some(c) if c.status & CONFIRMED == 0 => {
                c.status |= CONFIRMED;
                self.stats.confirmed += 1;
                true
            }
            _ => false,
        }
    }

    /// The packet that created the entry was dropped: remove the entry (Linux
    /// frees the unconfirmed conntrack with the skb). No-op once confirmed. True
    /// when an entry was removed.
    pub fn discard_unconfirmed(&mut self, h: CtHandle) -> bool {
        match self.conn(h) {
            Some(c) if c.status & CONFIRMED == 0 => {
                if c.status & DYING == 0 {
                    self.stats.discarded += 1;
                } else {
                    self.stats.killed += 1;
                }
                self.free_entry(h.idx);
                true
            }
            _ => false,
        }
    }

    /// Looks at up to `budget` entries from where the last call stopped and removes
    /// the expired ones (the gc_worker's incremental scan). Returns how many.
    pub fn expire(&mut self, now: u64, budget: usize) -> usize {
        let n = self.conns.len();
        let mut removed = 0;
        for _ in 0..budget.min(n) {
            let i = self.sweep_at;
            self.sweep_at = if i + 1 == n { 0 } else { i + 1 };
            let c = &self.conns[i];
            if c.status & ALLOCATED != 0 && c.expires <= now {
                self.reap(i as u32);
                removed += 1;
            }
        }
        removed
    }

    /// The entry's tuple in `dir` and state, for tests and the CLI.
    pub fn lookup(&self, key: &FlowKey) -> Option<(CtHandle, Dir)> {
        let (idx, dir) = self.find(key, key.hash(self.seed))?;
        Some((
            CtHandle {
                idx,
                gen: self.conns[idx as usize].gen,
            },
            dir,
        ))
    }

    /// One entry as `conntrack -L` shows it.
    pub fn flow(&self, h: CtHandle, now: u64) -> Option<FlowView> {
        self.conn(h).map(|c| FlowView::of(c, now))
    }

    /// Confirmed, unexpired entries (`conntrack -L`). A full scan: cold path.
    pub fn entries(&self, now: u64) -> impl Iterator<Item = FlowView> + '_ {
        self.conns
            .iter()
            .filter(move |c| {
                c.status & (ALLOCATED | CONFIRMED) == ALLOCATED | CONFIRMED && c.expires > now
            })
            .map(move |c| FlowView::of(c, now))
    }

    /// Live entries by protocol state. A full scan: cold path.
    pub fn count_by_state(&self) -> StateCounts {
        let mut s = StateCounts::default();
        for c in self.conns.iter().filter(|c| c.status & ALLOCATED != 0) {
            if c.status & CONFIRMED == 0 {
                s.unconfirmed += 1;
            }
            if c.status & ASSURED != 0 {
                s.assured += 1;
            }
            if c.status & SEEN_REPLY == 0 {
                s.unreplied += 1;
            }
            match c.l4() {
                L4::Tcp => s.tcp[c.tcp.state as usize] += 1,
                L4::Udp => s.udp += 1,
                L4::IcmpQuery => s.icmp += 1,
                L4::Generic => s.other += 1,
            }
        }
        s
    }

    #[inline]
    pub(super) fn conn(&self, h: CtHandle) -> Option<&Conn> {
        self.conns
            .get(h.idx as usize)
            .filter(|c| c.gen == h.gen && c.status & ALLOCATED != 0)
    }

    #[inline]
    pub(super) fn conn_mut(&mut self, h: CtHandle) -> Option<&mut Conn> {
        self.conns
            .get_mut(h.idx as usize)
            .filter(|c| c.gen == h.gen && c.status & ALLOCATED != 0)
    }

    /// The entry and direction `key` names.
    #[inline]
    pub(super) fn find(&self, key: &FlowKey, h: u64) -> Option<(u32, Dir)> {
        let tag = h as u32;
        let mut i = tag as usize & self.mask;
        loop {
            let s = self.index[i];
            if s.reff == EMPTY {
                return None;
            }
            if s.hash == tag {
                let idx = s.reff >> 1;
                let dir = if s.reff & 1 == 0 {
                    Dir::Original
                } else {
                    Dir::Reply
                };
                if self.conns[idx as usize].tuple[dir.index()] == *key {
                    return Some((idx, dir));
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    pub(super) fn index_insert(&mut self, h: u64, reff: u32) {
        let tag = h as u32;
        let mut i = tag as usize & self.mask;
        // The load is at most 1/2, so an empty slot exists.
        while self.index[i].reff != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.index[i] = Slot { hash: tag, reff };
    }

    /// Removes the slot holding `reff` for `key`, then shifts later members of the
    /// probe run back so lookups never stop early (no tombstones).
    pub(super) fn index_remove(&mut self, key: &FlowKey, reff: u32) {
        let mut i = key.hash(self.seed) as u32 as usize & self.mask;
        while self.index[i].reff != reff {
            debug_assert!(self.index[i].reff != EMPTY, "tuple missing from the index");
            i = (i + 1) & self.mask;
        }
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let s = self.index[j];
            if s.reff == EMPTY {
                break;
            }
            let home = s.hash as usize & self.mask;
            // `s` may move to the hole at `i` unless its home lies in (i, j].
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.index[i] = s;
                i = j;
            }
        }
        self.index[i] = EMPTY_SLOT;
    }

    /// Removes an entry: both index slots, then the slab slot.
    pub(super) fn free_entry(&mut self, idx: u32) {
        let c = self.conns[idx as usize];
        self.index_remove(&c.tuple[0], idx << 1);
        self.index_remove(&c.tuple[1], idx << 1 | 1);
        let c = &mut self.conns[idx as usize];
        c.status = 0;
        c.gen = c.gen.wrapping_add(1);
        self.free.push(idx);
    }

    /// Removes an entry found past its timeout.
    pub(super) fn reap(&mut self, idx: u32) {
        if self.conns[idx as usize].status & DYING == 0 {
            self.stats.expired += 1;
        } else {
            self.stats.killed += 1;
        }
        self.free_entry(idx);
    }

    /// A free entry for a new flow hashing to `h`, evicting if the table is full.
    fn alloc(&mut self, h: u64, now: u64) -> Result<u32, CtDrop> {
        if self.free.is_empty() {
            self.early_drop(h, now);
        }
        match self.free.pop() {
            Some(i) => Ok(i),
            None => {
                self.stats.table_full_drops += 1;
                Err(CtDrop::TableFull)
            }
        }
    }

    /// early_drop: near the new flow's home slot, reclaim an expired entry or evict
    /// a confirmed un-ASSURED one. ASSURED entries are never evicted (Linux).
    fn early_drop(&mut self, h: u64, now: u64) {
        let home = h as usize & self.mask;
        for k in 0..EARLY_DROP_SCAN {
            let s = self.index[(home + k) & self.mask];
            if s.reff == EMPTY {
                continue;
            }
            let idx = s.reff >> 1;
            let c = &self.conns[idx as usize];
            if c.expires <= now {
                self.reap(idx);
                return;
            }
            if c.status & (CONFIRMED | ASSURED) == CONFIRMED {
                self.stats.early_drops += 1;
                self.free_entry(idx);
                return;
            }
        }
    }

    /// Checks every structural invariant; tests call it after random operations.
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        let live: Vec<u32> = (0..self.conns.len() as u32)
            .filter(|&i| self.conns[i as usize].status & ALLOCATED != 0)
            .collect();
        assert_eq!(live.len() + self.free.len(), self.conns.len());
        let used = self.index.iter().filter(|s| s.reff != EMPTY).count();
        assert_eq!(used, live.len() * 2, "two index slots per entry");
        let mut seen = std::collections::HashSet::new();
        for &i in &live {
            let c = &self.conns[i as usize];
            for d in [Dir::Original, Dir::Reply] {
                let k = c.tuple[d.index()];
                assert!(seen.insert(k), "tuple {k:?} used twice");
                assert_eq!(self.find(&k, k.hash(self.seed)), Some((i, d)));
            }
        }
    }
}

/// Entries by state, from [`Table::count_by_state`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// Indexed by [`TcpState`] as `u8`.
    pub tcp: [u64; TcpState::COUNT],
    pub udp: u64,
    pub icmp: u64,
    pub other: u64,
    pub assured: u64,
    pub unconfirmed: u64,
    /// No packet seen in the reply direction (`conntrack -L`'s `[UNREPLIED]`).
    pub unreplied: u64,
}

/// One entry for listing (`fwd conntrack`, like `conntrack -L`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowView {
    pub orig: FlowKey,
    pub reply: FlowKey,
    pub tcp_state: Option<TcpState>,
    /// Seconds until expiry, rounded down like /proc/net/nf_conntrack.
    pub timeout_secs: u64,
    pub status: u16,
    /// [original, reply].
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}

impl FlowView {
    fn of(c: &Conn, now: u64) -> FlowView {
        FlowView {
            orig: c.tuple[0],
            reply: c.tuple[1],
            tcp_state: (c.l4() == L4::Tcp).then_some(c.tcp.state),
            timeout_secs: c.expires.saturating_sub(now) / 1000,
            status: c.status & PUBLIC,
            packets: c.packets,
            bytes: c.bytes,
        }
    }
}

fn addr(f: Family, a: u128) -> String {
    match f {
        Family::V4 => Ipv4Addr::from(a as u32).to_string(),
        Family::V6 => Ipv6Addr::from(a).to_string(),
    }
}

fn write_tuple(f: &mut fmt::Formatter<'_>, k: &FlowKey, packets: u64, bytes: u64) -> fmt::Result {
    write!(
        f,
        "src={} dst={} ",
        addr(k.family, k.src),
        addr(k.family, k.dst)
    )?;
    match L4::of(k.family, k.proto) {
        L4::Tcp | L4::Udp => write!(f, "sport={} dport={} ", k.sport, k.dport)?,
        L4::IcmpQuery => write!(
            f,
            "type={} code={} id={} ",
            k.dport >> 8,
            k.dport & 0xff,
            k.sport
        )?,
        L4::Generic => {}
    }
    write!(f, "packets={packets} bytes={bytes}")
}

impl fmt::Display for FlowView {
    /// `conntrack -L`'s line format.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match (self.orig.proto, self.orig.family) {
            (6, _) => "tcp",
            (17, _) => "udp",
            (1, Family::V4) => "icmp",
            (58, Family::V6) => "icmpv6",
            _ => "unknown",
        };
        write!(f, "{name:<8} {} {} ", self.orig.proto, self.timeout_secs)?;
        if let Some(s) = self.tcp_state {
            write!(f, "{} ", s.as_str())?;
        }
        write_tuple(f, &self.orig, self.packets[0], self.bytes[0])?;
        if self.status & SEEN_REPLY == 0 {
            f.write_str(" [UNREPLIED]")?;
        }
        f.write_str(" ")?;
        write_tuple(f, &self.reply, self.packets[1], self.bytes[1])?;
        if self.status & ASSURED != 0 {
            f.write_str(" [ASSURED]")?;
        }
        if self.orig.zone != 0 {
            write!(f, " zone={}", self.orig.zone)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod bench;
