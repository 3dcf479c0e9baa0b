//! Per-worker flow cache in front of the classifier: exact match on the packet fields
//! the rule set reads (`UsedFields`, applied as word masks), 4-way set associative,
//! fixed capacity, one 64-byte slot per IPv4 flow. A hit replays the stored verdict,
//! final mark and the counter ids of every rule the first packet traversed, so counters
//! stay exact; likewise the ctstate NOTRACK left and the NAT target a nat rule
//! recorded. A slot carries the cache's epoch, bumped whenever the classifier's
//! generation changes: after a reload every old slot misses.

use super::{Classifier, Trace, UsedFields};
use crate::packet::meta::{Family, PacketMeta};
use crate::rules::eval::hit_bytes;
use crate::rules::{Hook, HookPart, RejectWith, RuleCounters, Verdict};

/// Key words of an IPv4 flow: addresses; ports, proto, flags, hook, bits; mark and
/// interfaces; length and ICMP type/code.
const W4: usize = 4;
/// IPv6: two words per address, then the same three.
const W6: usize = 7;
/// Counter ids a slot replays; longer paths are not cached. 5 fills an IPv4 slot's
/// 64 bytes (ClassBench paths are 1 id; iptables-style sets rarely pass 5 rules).
const P4: usize = 5;
const P6: usize = 13;

/// Longest path the cache replays (IPv6 slots hold more).
pub const PATH_MAX: usize = P6;

#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Slot<const W: usize, const P: usize> {
    key: [u64; W],
    /// 0: empty.
    epoch: u32,
    mark: u32,
    /// The NAT slot the traversal recorded, 0 for none.
    nat: u16,
    /// `meta.ctstate` after the traversal (replayed when the key holds it).
    ctstate: u8,
    /// The verdict (`verdict_code`) in the high nibble, the path length in the low.
    verdict_len: u8,
    ids: [u32; P],
}

impl<const W: usize, const P: usize> Slot<W, P> {
    const EMPTY: Self = Slot {
        key: [0; W],
        epoch: 0,
        mark: 0,
        nat: 0,
        ctstate: 0,
        verdict_len: 0,
        ids: [0; P],
    };
}

const _: () = assert!(P6 < 16, "a path length fits a nibble");
const _: () = assert!(std::mem::size_of::<Slot<W4, P4>>() == 64);

/// A verdict as 4 bits: 0 ACCEPT, 1 DROP, 2 + i REJECT with `RejectWith::ALL[i]`.
#[inline]
fn verdict_code(v: Verdict) -> u8 {
    match v {
        Verdict::Accept => 0,
        Verdict::Drop => 1,
        Verdict::Reject(with) => {
            2 + RejectWith::ALL
                .iter()
                .position(|w| *w == with)
                .expect("every RejectWith is in ALL") as u8
        }
    }
}

#[inline(always)]
fn verdict_of(code: u8) -> Verdict {
    match code {
        0 => Verdict::Accept,
        1 => Verdict::Drop,
        c => Verdict::Reject(RejectWith::ALL[usize::from(c - 2)]),
    }
}

const _: () = assert!(2 + RejectWith::ALL.len() <= 16, "a verdict fits a nibble");

struct Recorder<const P: usize> {
    len: usize,
    ids: [u32; P],
    cacheable: bool,
}

impl<const P: usize> Trace for Recorder<P> {
    #[inline]
    fn hit(&mut self, id: u32) {
        if self.len < P {
            self.ids[self.len] = id;
            self.len += 1;
        } else {
            self.cacheable = false;
        }
    }
    #[inline]
    fn log(&mut self) {
        // LOG must see every packet: never answer it from the cache.
        self.cacheable = false;
    }
}

/// Which bits of the key words a classifier reads (a zero word mask drops the field).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowMasks {
    addr: [u64; 2],
    /// Word 1 (IPv4) / 5 (IPv6): sport, dport, proto, tcp flags, hook * 3 + part,
    /// l4_valid, fragment.
    l4: u64,
    /// mark, in_port, out_port.
    meta: u64,
    /// ip_len, ICMP type and code, ctstate, ctstatus.
    rest: u64,
    /// The rule set reads or writes the mark: a hit sets it.
    set_mark: bool,
    /// The rule set reads or writes ctstate: a hit sets it.
    set_ctstate: bool,
}

impl FlowMasks {
    pub fn new(u: &UsedFields) -> FlowMasks {
        let f = |used: bool, bits: u64| if used { bits } else { 0 };
        FlowMasks {
            addr: [f(u.src, u64::MAX), f(u.dst, u64::MAX)],
            l4: f(u.sport, 0xffff)
                | f(u.dport, 0xffff << 16)
                | f(u.proto, 0xff << 32)
                | f(u.tcp_flags, 0xff << 40)
                | 0xf << 48
                | f(u.l4_valid, 1 << 52)
                | f(u.fragment, 1 << 53),
            meta: f(u.mark, 0xffff_ffff << 32) | f(u.in_port, 0xffff << 16) | f(u.out_port, 0xffff),
            rest: f(u.length, 0xffff)
                | f(u.icmp, 0xffff << 16)
                | f(u.ctstate, 0xff << 32)
                | f(u.ctstatus, 0xff << 40),
            set_mark: u.mark,
            set_ctstate: u.ctstate,
        }
    }
}

#[inline(always)]
fn common_words(m: &PacketMeta, hook: Hook, part: HookPart, k: &FlowMasks) -> [u64; 3] {
    let l4 = u64::from(m.sport)
        | u64::from(m.dport) << 16
        | u64::from(m.proto) << 32
        | u64::from(m.tcp_flags) << 40
        | (hook.index() as u64 * 3 + part as u64) << 48
        | u64::from(m.l4_valid) << 52
        | u64::from(m.fragment) << 53;
    let meta = u64::from(m.mark) << 32 | u64::from(m.in_port) << 16 | u64::from(m.out_port);
    let rest = u64::from(m.ip_len)
        | u64::from(m.icmp_type) << 24
        | u64::from(m.icmp_code) << 16
        | u64::from(m.ctstate) << 32
        | u64::from(m.ctstatus) << 40;
    [l4 & k.l4, meta & k.meta, rest & k.rest]
}

#[inline(always)]
fn key_v4(m: &PacketMeta, hook: Hook, part: HookPart, k: &FlowMasks) -> [u64; W4] {
    let [l4, meta, rest] = common_words(m, hook, part, k);
    let addrs = (m.src as u64 & k.addr[0]) << 32 | (m.dst as u64 & k.addr[1] & 0xffff_ffff);
    [addrs, l4, meta, rest]
}

#[inline(always)]
fn key_v6(m: &PacketMeta, hook: Hook, part: HookPart, k: &FlowMasks) -> [u64; W6] {
    let [l4, meta, rest] = common_words(m, hook, part, k);
    let wide = |mask: u64| if mask != 0 { u128::MAX } else { 0 };
    let (s, d) = (m.src & wide(k.addr[0]), m.dst & wide(k.addr[1]));
    [
        (s >> 64) as u64,
        s as u64,
        (d >> 64) as u64,
        d as u64,
        l4,
        meta,
        rest,
    ]
}

/// Multiply-xorshift over the words: a few cycles, and the high bits mix every word.
#[inline(always)]
fn hash<const W: usize>(key: &[u64; W]) -> u64 {
    let mut h = 0x243f_6a88_85a3_08d3u64;
    for w in key {
        h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 32;
    }
    h
}

/// Picks a family's table (a fn pointer keeps `run_in` generic over both).
struct Sel;

impl Sel {
    #[inline(always)]
    fn v4_table(c: &mut FlowCache) -> &mut Table<W4, P4> {
        &mut c.v4
    }
    #[inline(always)]
    fn v6_table(c: &mut FlowCache) -> &mut Table<W6, P6> {
        &mut c.v6
    }
}

/// Slots per set. 4 ways: at half load a 2-way set overflows for ~6% of flows
/// (ClassBench traces: 0.93 hit rate), a 4-way set for ~1%.
const WAYS: usize = 4;

/// One family's slots: WAYS-way sets of adjacent slots.
struct Table<const W: usize, const P: usize> {
    slots: Vec<Slot<W, P>>,
    mask: usize,
}

impl<const W: usize, const P: usize> Table<W, P> {
    fn new(n: usize) -> Self {
        Table {
            slots: vec![Slot::EMPTY; n],
            mask: (n - 1) & !(WAYS - 1),
        }
    }
}

pub struct FlowCache {
    v4: Table<W4, P4>,
    v6: Table<W6, P6>,
    /// The classifier generation the slots of `epoch` were filled for.
    generation: u64,
    epoch: u32,
    masks: FlowMasks,
    pub hits: u64,
    pub misses: u64,
}

impl FlowCache {
    /// `capacity` (IPv4 flows) is rounded up to a power of two; IPv6 gets a quarter.
    pub fn new(capacity: usize) -> FlowCache {
        let n = capacity.max(WAYS).next_power_of_two();
        FlowCache {
            v4: Table::new(n),
            v6: Table::new((n / 4).max(WAYS)),
            generation: 0,
            epoch: 0,
            masks: FlowMasks::default(),
            hits: 0,
            misses: 0,
        }
    }

    pub fn memory_bytes(&self) -> usize {
        self.v4.slots.len() * std::mem::size_of::<Slot<W4, P4>>()
            + self.v6.slots.len() * std::mem::size_of::<Slot<W6, P6>>()
    }

    /// Same contract as `Classifier::run_hook`.
    #[inline]
    pub fn run_hook(
        &mut self,
        c: &Classifier,
        hook: Hook,
        meta: &mut PacketMeta,
        frame_len: u32,
        counters: &mut RuleCounters,
    ) -> Verdict {
        self.run_hook_part(c, hook, HookPart::All, meta, frame_len, counters)
    }

    /// Same contract as `Classifier::run_hook_part`.
    #[inline]
    pub fn run_hook_part(
        &mut self,
        c: &Classifier,
        hook: Hook,
        part: HookPart,
        meta: &mut PacketMeta,
        frame_len: u32,
        counters: &mut RuleCounters,
    ) -> Verdict {
        if c.generation() != self.generation {
            self.switch(c);
        }
        let masks = self.masks;
        match meta.family {
            Family::V4 => {
                let key = key_v4(meta, hook, part, &masks);
                self.run_in(Sel::v4_table, key, c, hook, part, meta, frame_len, counters)
            }
            Family::V6 => {
                let key = key_v6(meta, hook, part, &masks);
                self.run_in(Sel::v6_table, key, c, hook, part, meta, frame_len, counters)
            }
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn run_in<const W: usize, const P: usize>(
        &mut self,
        sel: fn(&mut FlowCache) -> &mut Table<W, P>,
        key: [u64; W],
        c: &Classifier,
        hook: Hook,
        part: HookPart,
        meta: &mut PacketMeta,
        frame_len: u32,
        counters: &mut RuleCounters,
    ) -> Verdict {
        let (epoch, set_mark, set_ctstate) =
            (self.epoch, self.masks.set_mark, self.masks.set_ctstate);
        let h = hash(&key);
        let t = sel(self);
        let set = h as usize & t.mask;
        for slot in &t.slots[set..set + WAYS] {
            if slot.epoch == epoch && slot.key == key {
                let bytes = hit_bytes(meta, frame_len);
                for &id in &slot.ids[..usize::from(slot.verdict_len & 0xf)] {
                    counters.bump(id, bytes);
                }
                if set_mark {
                    meta.mark = slot.mark;
                }
                if set_ctstate {
                    meta.ctstate = slot.ctstate;
                }
                if slot.nat != 0 {
                    meta.nat = slot.nat;
                }
                let v = verdict_of(slot.verdict_len >> 4);
                self.hits += 1;
                return v;
            }
        }
        self.misses += 1;
        let mut rec = Recorder {
            len: 0,
            ids: [0; P],
            cacheable: true,
        };
        // Tell "this path set nat" from "nat was already set": run from 0.
        let nat_before = std::mem::take(&mut meta.nat);
        let verdict = c.run(hook, part, meta, frame_len, counters, &mut rec);
        let nat = meta.nat;
        if nat == 0 {
            meta.nat = nat_before;
        }
        if rec.cacheable {
            let t = sel(self);
            // Fill an empty or stale way first; else hash bits pick the victim.
            let way = t.slots[set..set + WAYS]
                .iter()
                .position(|s| s.epoch != epoch)
                .unwrap_or((h >> 62) as usize % WAYS);
            t.slots[set + way] = Slot {
                key,
                epoch,
                mark: meta.mark,
                nat,
                ctstate: meta.ctstate,
                verdict_len: verdict_code(verdict) << 4 | rec.len as u8,
                ids: rec.ids,
            };
        }
        verdict
    }

    /// A new classifier: start a new epoch (every slot misses), clearing only when
    /// the epoch counter wraps.
    #[cold]
    fn switch(&mut self, c: &Classifier) {
        self.generation = c.generation();
        self.masks = FlowMasks::new(&c.used_fields());
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.v4.slots.fill(Slot::EMPTY);
            self.v6.slots.fill(Slot::EMPTY);
            self.epoch = 1;
        }
    }
}
