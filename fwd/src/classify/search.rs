//! One family's half of a hook program, laid out for the lookup: only the entries a
//! packet of that family can reach ("slots", in program order, jump targets renumbered),
//! a compact match table (one cache line per slot), and one decision tree per
//! partition of the slots (EffiCuts: rules wildcard in a field go to a tree that does
//! not cut that field, so they are not copied into every leaf).
//!
//! A packet walks the program from slot 0; only "events" move it: a matching entry, or
//! any jump guard in a leaf (it transfers past its callee block when it does not match).
//! Each step takes the smallest event at or after the current slot over all partitions,
//! scanning a partition's leaf only below the best event found so far.

use super::pred::PredTables;
use super::tree::{land_after, Flow, Item, KeyInt, Node, Tree, DIMS};
use super::{Action, Entry, Trace, NO_COUNTER};
use crate::packet::meta::{ctstate, PacketMeta};
use crate::rules::{HookPart, RuleCounters, Verdict};

/// At most this many partitions per family (a bitmask tracks which were looked up).
pub const MAX_PARTS: usize = 8;
const _: () = assert!(MAX_PARTS >= 7, "partition() makes up to 7 groups");

/// An address-sized key element: u32 for IPv4 programs, u128 for IPv6.
pub trait Addr: KeyInt + Copy + Ord + Default {
    /// Truncates; the compiler clamps bounds to the family's space first.
    fn from_u128(v: u128) -> Self;
    fn wrapping_sub(self, o: Self) -> Self;
}

impl Addr for u32 {
    #[inline(always)]
    fn from_u128(v: u128) -> u32 {
        v.min(u128::from(u32::MAX)) as u32
    }
    #[inline(always)]
    fn wrapping_sub(self, o: u32) -> u32 {
        u32::wrapping_sub(self, o)
    }
}

impl Addr for u128 {
    #[inline(always)]
    fn from_u128(v: u128) -> u128 {
        v
    }
    #[inline(always)]
    fn wrapping_sub(self, o: u128) -> u128 {
        u128::wrapping_sub(self, o)
    }
}

/// The full Pred must hold too (something the box does not say).
const RESIDUAL: u16 = 1;
/// A jump guard: an event whenever it is a candidate; matching decides where to go.
const GUARD: u16 = 2;
/// The port ranges only admit packets with a transport header.
const NEEDS_L4: u16 = 4;

/// What one slot needs to say "this packet may match": its box (intersected with the
/// boxes of the jumps around it) as `lo..=lo+span` per field, and whether the full
/// predicate must be consulted. 32 bytes for IPv4: two candidates per cache line,
/// since a lookup's cost is mostly the lines its leaf scans touch.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(32))]
struct Compact<A> {
    src_lo: A,
    src_span: A,
    dst_lo: A,
    dst_span: A,
    sport_lo: u16,
    sport_span: u16,
    dport_lo: u16,
    dport_span: u16,
    proto_lo: u8,
    proto_span: u8,
    flags: u16,
    /// Position in the family program (leaves copy the slot's `Compact`).
    slot: u32,
}

impl<A: Addr> Compact<A> {
    fn new(bounds: &[(u128, u128); DIMS], flags: u16, slot: u32) -> Compact<A> {
        let addr = |(lo, hi): (u128, u128)| {
            let lo = A::from_u128(lo);
            (lo, A::from_u128(hi).wrapping_sub(lo))
        };
        let mut flags = flags;
        let mut port = |(lo, hi): (u128, u128)| {
            debug_assert!(
                lo <= 65535,
                "no predicate admits only packets without ports"
            );
            if hi <= 65535 {
                flags |= NEEDS_L4;
            }
            let (lo, hi) = (lo.min(65535) as u16, hi.min(65535) as u16);
            (lo, hi - lo)
        };
        let (src_lo, src_span) = addr(bounds[0]);
        let (dst_lo, dst_span) = addr(bounds[1]);
        let (sport_lo, sport_span) = port(bounds[2]);
        let (dport_lo, dport_span) = port(bounds[3]);
        let (plo, phi) = (bounds[4].0.min(255) as u8, bounds[4].1.min(255) as u8);
        Compact {
            src_lo,
            src_span,
            dst_lo,
            dst_span,
            sport_lo,
            sport_span,
            dport_lo,
            dport_span,
            proto_lo: plo,
            proto_span: phi - plo,
            flags,
            slot,
        }
    }

    #[inline(always)]
    fn in_box(&self, key: &[A; DIMS], meta: &PacketMeta) -> bool {
        (key[0].wrapping_sub(self.src_lo) <= self.src_span)
            & (key[1].wrapping_sub(self.dst_lo) <= self.dst_span)
            & (meta.sport.wrapping_sub(self.sport_lo) <= self.sport_span)
            & (meta.dport.wrapping_sub(self.dport_lo) <= self.dport_span)
            & (meta.proto.wrapping_sub(self.proto_lo) <= self.proto_span)
            & (meta.l4_valid | (self.flags & NEEDS_L4 == 0))
    }
}

/// What a slot does once it is an event; transfer targets are slots.
#[derive(Clone, Copy, Debug)]
struct Act {
    counter: u32,
    /// Index into the hook's entries (for the residual predicate).
    entry: u32,
    action: Action,
}

struct Part<A> {
    tree: Tree,
    /// The leaves' candidates as copies of their `Compact` (laid out like
    /// `tree.leaves`, which is then dropped): a leaf scan reads memory in order.
    leaves: Vec<Compact<A>>,
    /// Largest slot in the partition.
    max: u32,
    slots: u32,
}

pub struct FamilyProgram<A> {
    acts: Vec<Act>,
    parts: Vec<Part<A>>,
    /// The first slot after the raw table's block (`HookPart::Raw` runs the slots
    /// before it, `HookPart::AfterRaw` those from it on).
    raw_end: u32,
}

/// Whether to try one tree before partitioning (tests force partitions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Auto,
    Always,
}

/// Nodes plus leaf slots one tree over all n slots may take before the rule set is
/// partitioned instead. ClassBench-style sets with a catch-all rule early (every
/// generated acl/fw/ipc set: rule 400-561) stay at 10k-450k; a single tree there
/// measured 47/39/53 ns at 10k against 64/55/64 ns for two trees.
fn single_tree_budget(n: usize) -> usize {
    64 * n + (1 << 16)
}

/// Nodes plus leaf slots for all of a family's partition trees: 12M, at most 12M *
/// 32 bytes = 384 MiB (IPv4 leaf slots are 32 bytes, nodes 12); past it trees cut no
/// further and leaves grow longer.
const FAMILY_BUDGET: usize = 12 << 20;
const MIN_TREE_BUDGET: usize = 1 << 16;

/// One entry as the family builder sees it: the entry index and its placement box.
pub struct SlotSrc {
    pub entry: u32,
    pub bounds: [(u128, u128); DIMS],
}

/// Per dimension: a field is "large" for partitioning when its range covers more than
/// 1/2^LARGE_SHIFT of the space (measured on ClassBench acl/fw/ipc: 8 keeps /8 prefixes
/// with the specific ones, which ClassBench clusters under the same /16s anyway).
const LARGE_SHIFT: u32 = 4;

impl<A: Addr> FamilyProgram<A> {
    /// `slots`: the entries reachable in this family, in program order.
    pub fn build(
        entries: &[Entry],
        slots: &[SlotSrc],
        raw_end: u32,
        bits: [u8; DIMS],
        split: Split,
    ) -> FamilyProgram<A> {
        // slot_of[e]: the first slot at or after entry e.
        let mut slot_of = vec![slots.len() as u32; entries.len() + 1];
        {
            let mut s = slots.len();
            for e in (0..=entries.len()).rev() {
                if s > 0 && slots[s - 1].entry as usize >= e {
                    s -= 1;
                    while s > 0 && slots[s - 1].entry as usize >= e {
                        s -= 1;
                    }
                }
                slot_of[e] = s as u32;
            }
        }
        let to_slot = |e: u32| slot_of[e as usize];
        let mut matches: Vec<Compact<A>> = Vec::with_capacity(slots.len());
        let mut acts = Vec::with_capacity(slots.len());
        let mut items = Vec::with_capacity(slots.len());
        let mut targets = Vec::with_capacity(slots.len());
        for s in slots {
            let e = &entries[s.entry as usize];
            let action = match e.action {
                Action::Guard { fail } => Action::Guard {
                    fail: to_slot(fail),
                },
                Action::Skip(to) => Action::Skip(to_slot(to)),
                Action::Accept(to) => Action::Accept(to_slot(to)),
                Action::Nat { slot, to } => Action::Nat {
                    slot,
                    to: to_slot(to),
                },
                a => a,
            };
            let (flow, target) = match action {
                Action::Count | Action::Mark { .. } | Action::Log | Action::Notrack => {
                    (Flow::Next, None)
                }
                Action::Guard { fail } => (Flow::Next, Some(fail)),
                Action::Skip(to) | Action::Accept(to) | Action::Nat { to, .. } => {
                    (Flow::Transfer(to), Some(to))
                }
                Action::Drop | Action::Reject(_) => (Flow::End, None),
            };
            let mut flags = 0;
            if !e.pred.box_only() {
                flags |= RESIDUAL;
            }
            if matches!(action, Action::Guard { .. }) {
                flags |= GUARD;
            }
            matches.push(Compact::new(&s.bounds, flags, matches.len() as u32));
            acts.push(Act {
                counter: e.counter,
                entry: s.entry,
                action,
            });
            // No key is above NO_L4 in a port dimension: a bound reaching it reaches the
            // end of the tree's space, so regions past it still count as inside the box.
            let mut bounds = s.bounds;
            for (d, b) in bounds.iter_mut().enumerate() {
                if b.1 == u128::from(super::NO_L4) && bits[d] == 17 {
                    b.1 = (1 << 17) - 1;
                }
            }
            items.push(Item {
                bounds,
                box_only: e.pred.box_only(),
                flow,
            });
            targets.push(target);
        }
        let land = land_after(&targets);
        let n = items.len();
        let all: Vec<u32> = (0..n as u32).collect();
        // One tree when it stays small: a lookup is then one walk. Rule sets whose
        // wildcards make one tree replicate past SINGLE_TREE_BUDGET are partitioned.
        let single = match split {
            Split::Auto if n > 0 => Tree::build(
                &items,
                &land,
                all.clone(),
                bits,
                single_tree_budget(n),
                true,
            )
            .map(|t| vec![(all, t)]),
            _ => None,
        };
        let trees = single.unwrap_or_else(|| {
            partition(&items, bits)
                .into_iter()
                .filter(|l| !l.is_empty())
                .map(|list| {
                    // The family's budget, shared in proportion to the slots.
                    let share = (FAMILY_BUDGET as u128 * list.len() as u128 / n as u128) as usize;
                    let budget = share.max(MIN_TREE_BUDGET);
                    let tree = Tree::build(&items, &land, list.clone(), bits, budget, false)
                        .expect("a build that does not abort returns a tree");
                    (list, tree)
                })
                .collect()
        });
        let parts = trees
            .into_iter()
            .map(|(list, mut tree)| {
                let leaves = tree.leaves.iter().map(|&s| matches[s as usize]).collect();
                tree.leaves = Vec::new();
                Part {
                    max: *list.last().expect("not empty"),
                    slots: list.len() as u32,
                    tree,
                    leaves,
                }
            })
            .collect();
        FamilyProgram {
            acts,
            parts,
            raw_end: to_slot(raw_end),
        }
    }

    pub fn memory_bytes(&self) -> usize {
        self.acts.capacity() * std::mem::size_of::<Act>()
            + self.parts.capacity() * std::mem::size_of::<Part<A>>()
            + self
                .parts
                .iter()
                .map(|p| p.tree.memory_bytes() + p.leaves.capacity() * size_of::<Compact<A>>())
                .sum::<usize>()
    }

    /// Candidates the trees hand `key` (diagnostics).
    pub fn candidates(&self, key: &[A; DIMS]) -> usize {
        self.parts
            .iter()
            .map(|p| {
                let mut n = p.tree.root();
                while !n.is_leaf() {
                    n = p.tree.step(n, key);
                }
                n.leaf_range().len()
            })
            .sum()
    }

    /// Partitions (diagnostics).
    pub fn partitions(&self) -> usize {
        self.parts.len()
    }

    /// Per partition: slots, nodes, leaf slots, depth (diagnostics).
    pub fn part_stats(&self) -> Vec<[usize; 4]> {
        self.parts
            .iter()
            .map(|p| {
                let (nodes, _, depth) = p.tree.shape();
                [p.slots as usize, nodes, p.leaves.len(), depth]
            })
            .collect()
    }

    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        key: &[A; DIMS],
        part: HookPart,
        meta: &mut PacketMeta,
        bytes: u64,
        entries: &[Entry],
        tables: &PredTables,
        counters: &mut RuleCounters,
        trace: &mut impl Trace,
    ) -> Verdict {
        let n = self.acts.len() as u32;
        // The raw block comes first: a part is a contiguous range of slots.
        let (mut pos, end) = match part {
            HookPart::All => (0, u32::MAX),
            HookPart::Raw => (0, self.raw_end),
            HookPart::AfterRaw => (self.raw_end, u32::MAX),
        };
        if pos >= n || end == 0 {
            return Verdict::Accept;
        }
        let parts = &self.parts[..self.parts.len().min(MAX_PARTS)];
        // Walk every tree at once, a level per round: the walks' cache misses overlap.
        let mut node: [Node; MAX_PARTS] = [Node::EMPTY; MAX_PARTS];
        let mut walking = 0u32;
        for (i, p) in parts.iter().enumerate() {
            node[i] = p.tree.root();
            if !node[i].is_leaf() {
                walking |= 1 << i;
            }
        }
        while walking != 0 {
            for (i, p) in parts.iter().enumerate() {
                if walking & (1 << i) != 0 {
                    node[i] = p.tree.step(node[i], key);
                    if node[i].is_leaf() {
                        walking &= !(1 << i);
                    }
                }
            }
        }
        // Read every leaf's first slot now: the loads issue together (their misses
        // overlap) and a leaf starting at or past the best event is never scanned.
        let mut leaf: [&[Compact<A>]; MAX_PARTS] = [&[]; MAX_PARTS];
        let mut first = [u32::MAX; MAX_PARTS];
        for (i, p) in parts.iter().enumerate() {
            leaf[i] = &p.leaves[node[i].leaf_range()];
            first[i] = leaf[i].first().map_or(u32::MAX, |m| m.slot);
        }
        let mut at = [0usize; MAX_PARTS];
        loop {
            // No event at or past `end`: the part ends there.
            let mut best = end;
            let mut bp = MAX_PARTS;
            for (i, p) in parts.iter().enumerate() {
                if p.max < pos || first[i] >= best {
                    continue;
                }
                let l = leaf[i];
                let mut j = at[i];
                while j < l.len() {
                    let m = &l[j];
                    if m.slot >= best {
                        break;
                    }
                    trace.checked();
                    if m.slot >= pos
                        && (m.flags & GUARD != 0 || self.matches(m, key, meta, entries, tables))
                    {
                        best = m.slot;
                        bp = i;
                        break;
                    }
                    j += 1;
                }
                at[i] = j;
            }
            if bp == MAX_PARTS {
                return Verdict::Accept;
            }
            let m = &leaf[bp][at[bp]];
            at[bp] += 1;
            let act = self.acts[best as usize];
            if let Action::Guard { fail } = act.action {
                if !self.matches(m, key, meta, entries, tables) {
                    pos = fail;
                    continue;
                }
            }
            if act.counter != NO_COUNTER {
                counters.bump(act.counter, bytes);
                trace.hit(act.counter);
            }
            pos = best + 1;
            match act.action {
                Action::Count | Action::Guard { .. } => {}
                Action::Mark { xor, mask } => {
                    meta.mark = (meta.mark & !mask) ^ xor;
                    // Slots skipped as non-matching may match the new mark.
                    at = [0; MAX_PARTS];
                }
                Action::Log => {
                    counters.log(act.counter, meta);
                    trace.log();
                }
                Action::Skip(to) | Action::Accept(to) => pos = to,
                Action::Drop => return Verdict::Drop,
                Action::Reject(with) => return Verdict::Reject(with),
                Action::Nat { slot, to } => {
                    meta.nat = slot;
                    pos = to;
                }
                Action::Notrack => {
                    meta.ctstate = ctstate::UNTRACKED;
                    // Slots skipped as non-matching may match the new ctstate.
                    at = [0; MAX_PARTS];
                }
            }
            if pos >= n.min(end) {
                return Verdict::Accept;
            }
        }
    }
}

impl<A: Addr> FamilyProgram<A> {
    /// Exact: the box, then the full predicate where the box does not say it all.
    #[inline(always)]
    fn matches(
        &self,
        m: &Compact<A>,
        key: &[A; DIMS],
        meta: &PacketMeta,
        entries: &[Entry],
        tables: &PredTables,
    ) -> bool {
        m.in_box(key, meta)
            && (m.flags & RESIDUAL == 0
                || entries[self.acts[m.slot as usize].entry as usize]
                    .pred
                    .matches(meta, tables))
    }
}

/// Splits slots by which fields they are large in (EffiCuts' separability; CutSplit
/// pre-splits the same way on the address fields): one group per (src, dst) largeness,
/// and the slots large in both addresses split again by (sport, dport) largeness. Each
/// tree then cuts only where its rules are small. Groups under `MIN_PART` slots join
/// the all-large group (treating a small field as large only costs candidates).
fn partition(items: &[Item], bits: [u8; DIMS]) -> Vec<Vec<u32>> {
    let large = |d: usize, b: (u128, u128)| {
        let space = if bits[d] >= 128 {
            u128::MAX
        } else {
            (1u128 << bits[d]) - 1
        };
        let shift = if d < 2 { LARGE_SHIFT } else { PORT_LARGE_SHIFT };
        b.1 - b.0 >= space >> shift
    };
    const ALL_LARGE: usize = 15;
    let mut groups: Vec<Vec<u32>> = vec![Vec::new(); 16];
    for (s, it) in items.iter().enumerate() {
        let l = |d: usize| usize::from(large(d, it.bounds[d]));
        let mut g = l(0) | l(1) << 1;
        if g == 3 {
            g |= l(2) << 2 | l(3) << 3;
        }
        groups[g].push(s as u32);
    }
    for g in 0..ALL_LARGE {
        if !groups[g].is_empty() && groups[g].len() < MIN_PART.max(items.len() / MIN_PART_FRACTION)
        {
            let small = std::mem::take(&mut groups[g]);
            let all = std::mem::take(&mut groups[ALL_LARGE]);
            groups[ALL_LARGE] = merge_sorted(&all, &small);
        }
    }
    groups.retain(|g| !g.is_empty());
    groups
}

/// Partitions smaller than this join the all-large one: a tree lookup costs more
/// than scanning a few extra candidates.
#[cfg(not(test))]
const MIN_PART: usize = 64;
/// The property tests' rule sets are small: keep every partition so that jumps,
/// RETURNs and marks cross trees there.
#[cfg(test)]
const MIN_PART: usize = 1;
/// Groups under 1/3 of the slots join too: on the generated sets two trees measured
/// faster than four to seven (64/55/64 ns at 10k against 75/128/92).
#[cfg(not(test))]
const MIN_PART_FRACTION: usize = 3;
#[cfg(test)]
const MIN_PART_FRACTION: usize = usize::MAX;
/// Ports: "large" from a quarter of the space up (wildcards, 1024:65535).
const PORT_LARGE_SHIFT: u32 = 2;

fn merge_sorted(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out: Vec<u32> = a.iter().chain(b).copied().collect();
    out.sort_unstable();
    out
}
