//! Per-worker flow cache in front of the classifier: exact match on the packet fields
//! the rule set reads (`UsedFields`), direct-mapped, fixed capacity. A hit replays the
//! stored verdict, final mark and the counter ids of every rule the first packet
//! traversed, so counters stay exact; likewise the ctstate NOTRACK left and the NAT
//! target a nat rule recorded. Entries carry the classifier's generation: after
//! a reload every old entry misses.

use std::hash::{Hash, Hasher};

use rustc_hash::FxHasher;

use super::{Classifier, Trace};
use crate::packet::meta::{Family, PacketMeta};
use crate::rules::eval::hit_bytes;
use crate::rules::{Hook, HookPart, RuleCounters, Verdict};

/// Paths longer than this (counting every rule that matched on the way) are not cached.
pub const PATH_MAX: usize = 8;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct FlowKey {
    src: u128,
    dst: u128,
    mark: u32,
    in_port: u16,
    out_port: u16,
    sport: u16,
    dport: u16,
    ip_len: u16,
    /// `hook * 3 + part`.
    hook: u8,
    family: u8,
    ctstate: u8,
    ctstatus: u8,
    proto: u8,
    tcp_flags: u8,
    icmp: u16,
    /// bit 0: l4_valid, bit 1: fragment.
    bits: u8,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    generation: u64,
    key: FlowKey,
    verdict: Verdict,
    mark: u32,
    /// `meta.ctstate` after the traversal (when the key holds it).
    ctstate: u8,
    /// The NAT slot the traversal recorded, 0 for none.
    nat: u16,
    len: u8,
    ids: [u32; PATH_MAX],
}

const EMPTY: Slot = Slot {
    generation: 0,
    key: FlowKey {
        src: 0,
        dst: 0,
        mark: 0,
        in_port: 0,
        out_port: 0,
        sport: 0,
        dport: 0,
        ip_len: 0,
        hook: 0,
        family: 0,
        ctstate: 0,
        ctstatus: 0,
        proto: 0,
        tcp_flags: 0,
        icmp: 0,
        bits: 0,
    },
    verdict: Verdict::Accept,
    mark: 0,
    ctstate: 0,
    nat: 0,
    len: 0,
    ids: [0; PATH_MAX],
};

struct Recorder {
    len: usize,
    ids: [u32; PATH_MAX],
    cacheable: bool,
}

impl Trace for Recorder {
    #[inline]
    fn hit(&mut self, id: u32) {
        if self.len < PATH_MAX {
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

pub struct FlowCache {
    slots: Vec<Slot>,
    mask: usize,
    pub hits: u64,
    pub misses: u64,
}

impl FlowCache {
    /// `capacity` is rounded up to a power of two.
    pub fn new(capacity: usize) -> FlowCache {
        let n = capacity.max(1).next_power_of_two();
        FlowCache {
            slots: vec![EMPTY; n],
            mask: n - 1,
            hits: 0,
            misses: 0,
        }
    }

    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>()
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
        let key = flow_key(c, hook, part, meta);
        let mut h = FxHasher::default();
        key.hash(&mut h);
        let slot = &mut self.slots[h.finish() as usize & self.mask];
        if slot.generation == c.generation && slot.key == key {
            self.hits += 1;
            let bytes = hit_bytes(meta, frame_len);
            for &id in &slot.ids[..usize::from(slot.len)] {
                counters.bump(id, bytes);
            }
            meta.mark = slot.mark;
            if c.used.ctstate {
                meta.ctstate = slot.ctstate;
            }
            if slot.nat != 0 {
                meta.nat = slot.nat;
            }
            return slot.verdict;
        }
        self.misses += 1;
        let mut rec = Recorder {
            len: 0,
            ids: [0; PATH_MAX],
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
            *slot = Slot {
                generation: c.generation,
                key,
                verdict,
                mark: meta.mark,
                ctstate: meta.ctstate,
                nat,
                len: rec.len as u8,
                ids: rec.ids,
            };
        }
        verdict
    }
}

#[inline]
fn flow_key(c: &Classifier, hook: Hook, part: HookPart, m: &PacketMeta) -> FlowKey {
    let u = &c.used;
    let pick16 = |used: bool, v: u16| if used { v } else { 0 };
    FlowKey {
        src: if u.src { m.src } else { 0 },
        dst: if u.dst { m.dst } else { 0 },
        mark: if u.mark { m.mark } else { 0 },
        in_port: pick16(u.in_port, m.in_port),
        out_port: pick16(u.out_port, m.out_port),
        sport: pick16(u.sport, m.sport),
        dport: pick16(u.dport, m.dport),
        ip_len: pick16(u.length, m.ip_len),
        hook: hook as u8 * 3 + part as u8,
        family: match m.family {
            Family::V4 => 4,
            Family::V6 => 6,
        },
        proto: if u.proto { m.proto } else { 0 },
        ctstate: if u.ctstate { m.ctstate } else { 0 },
        ctstatus: if u.ctstatus { m.ctstatus } else { 0 },
        tcp_flags: if u.tcp_flags { m.tcp_flags } else { 0 },
        icmp: pick16(u.icmp, u16::from(m.icmp_type) << 8 | u16::from(m.icmp_code)),
        bits: u8::from(u.l4_valid && m.l4_valid) | u8::from(u.fragment && m.fragment) << 1,
    }
}
