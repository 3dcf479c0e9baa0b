//! The compiled classifier (DESIGN.md section 4) and the per-worker flow cache.
//!
//! Compilation flattens each hook into one program: the tables in priority order, each
//! built-in chain with every user chain it reaches expanded in place (a jump becomes a
//! guard entry that skips the callee's block when the jump rule does not match; RETURN
//! and the end of a goto'd chain become transfers to the end of the right block; ACCEPT
//! transfers to the next table; a policy entry closes each table). A packet runs the
//! program from position 0: only entries that match move it. Per family, `search` lays
//! the program out for the lookup: rules split by which fields they are wildcard-like
//! in, one decision tree (`tree`) per group, leaves holding compact copies of each
//! candidate's match box; the smallest matching position over all trees moves the
//! packet, so the per-packet cost tracks the entries a packet could hit, not the rules.

pub mod cache;
mod pred;
mod search;
mod tree;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pred::{Pred, PredTables, SetTable};
pub use search::Split;
use search::{FamilyProgram, SlotSrc};
use tree::DIMS;

pub use cache::FlowCache;

use crate::packet::meta::{Family, PacketMeta};
use crate::rules::eval::hit_bytes;
use crate::rules::{
    Env, Hook, HookPart, NatTarget, Policy, RejectWith, RuleCounters, Ruleset, Table, Target,
    Verdict,
};

/// Port key of a packet without a valid transport header: outside every port range.
pub const NO_L4: u32 = 65536;

/// Bits of each tree dimension per family: src, dst, sport, dport (17: NO_L4), proto.
const V4_BITS: [u8; DIMS] = [32, 32, 17, 17, 8];
const V6_BITS: [u8; DIMS] = [128, 128, 17, 17, 8];

/// Refuse rule sets whose user chains expand past this many entries (chains reused from
/// many places multiply); 4M entries is about 1 GiB of predicates.
const MAX_ENTRIES: usize = 4 << 20;

const NO_COUNTER: u32 = u32::MAX;

static GENERATION: AtomicU64 = AtomicU64::new(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// Count only (a rule without target).
    Count,
    Mark {
        xor: u32,
        mask: u32,
    },
    Log,
    /// A jump or goto rule: when it does not match, skip the callee block to `fail`.
    Guard {
        fail: u32,
    },
    /// RETURN, or the end of a goto'd block: continue at `to`.
    Skip(u32),
    /// ACCEPT or an ACCEPT policy: continue at the next table's first entry.
    Accept(u32),
    Drop,
    /// REJECT: ends the hook like DROP.
    Reject(RejectWith),
    /// DNAT/SNAT/MASQUERADE: `meta.nat = slot`, then like ACCEPT (continue at `to`).
    Nat {
        slot: u16,
        to: u32,
    },
    /// NOTRACK: `meta.ctstate = UNTRACKED`, then the next entry.
    Notrack,
}

#[derive(Debug)]
struct Entry {
    pred: Pred,
    counter: u32,
    action: Action,
}

struct HookProgram {
    entries: Vec<Entry>,
    /// First entry after the raw table's block (`HookPart::Raw` runs `..raw_end`,
    /// `HookPart::AfterRaw` runs `raw_end..`); the family programs hold it as a slot.
    raw_end: u32,
    v4: FamilyProgram<u32>,
    v6: FamilyProgram<u128>,
}

/// Which packet fields the rule set reads: the flow cache keys on exactly these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsedFields {
    pub in_port: bool,
    pub out_port: bool,
    pub src: bool,
    pub dst: bool,
    pub proto: bool,
    pub sport: bool,
    pub dport: bool,
    pub l4_valid: bool,
    pub tcp_flags: bool,
    pub icmp: bool,
    pub mark: bool,
    pub length: bool,
    pub fragment: bool,
    /// ctstate matches, the nat table's first-packet guard, NOTRACK (writes it).
    pub ctstate: bool,
    pub ctstatus: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("{0} ports: the classifier handles at most {max}", max = pred::MAX_PORTS)]
    TooManyPorts(usize),
    #[error("hook {0:?}: user chains expand to more than {MAX_ENTRIES} entries (a chain jumped to from too many places)")]
    TooLarge(Hook),
}

/// A compiled rule set. Immutable once built; workers share it (behind an Arc or an
/// ArcSwap) and each keeps its own `RuleCounters` and `FlowCache`.
pub struct Classifier {
    generation: u64,
    hooks: Vec<HookProgram>,
    tables: PredTables,
    counter_len: usize,
    used: UsedFields,
    build_time: Duration,
    nat_targets: Vec<NatTarget>,
    /// Interface patterns that named no port at compile time.
    pub unresolved_ifaces: Vec<String>,
}

/// Receives the counter ids a packet hits (the flow cache records them).
trait Trace {
    fn hit(&mut self, id: u32);
    fn log(&mut self);
    /// One candidate's match data was read (diagnostics).
    #[inline(always)]
    fn checked(&mut self) {}
}

/// Counts candidate checks (`Classifier::checks`).
struct CheckCount(usize);

impl Trace for CheckCount {
    fn hit(&mut self, _: u32) {}
    fn log(&mut self) {}
    fn checked(&mut self) {
        self.0 += 1;
    }
}

impl Trace for Vec<u32> {
    fn hit(&mut self, id: u32) {
        self.push(id);
    }
    fn log(&mut self) {}
}

struct NoTrace;

impl Trace for NoTrace {
    #[inline]
    fn hit(&mut self, _: u32) {}
    #[inline]
    fn log(&mut self) {}
}

impl Classifier {
    /// Compiles `rs` for a box whose ports and local addresses are in `env`.
    pub fn compile(rs: &Ruleset, env: &Env) -> Result<Classifier, CompileError> {
        Classifier::compile_with(rs, env, Split::Auto)
    }

    /// `compile`, choosing whether to try a single tree first (`Split::Always`:
    /// never, for tests that want rules spread over several trees).
    pub fn compile_with(rs: &Ruleset, env: &Env, split: Split) -> Result<Classifier, CompileError> {
        let start = Instant::now();
        if env.ports.len() > pred::MAX_PORTS {
            return Err(CompileError::TooManyPorts(env.ports.len()));
        }
        let mut tables = PredTables {
            sets: rs.sets().iter().map(SetTable::new).collect(),
            ..PredTables::default()
        };
        for a in &env.local_addrs {
            tables.add_local(*a);
        }
        let mut c = Compiler {
            rs,
            env,
            tables,
            unresolved: Vec::new(),
            used: UsedFields::default(),
        };
        let mut hooks = Vec::new();
        for hook in Hook::ALL {
            let (entries, raw_end) = c.flatten(hook)?;
            let (v4, v6) = c.families(&entries, raw_end, split);
            hooks.push(HookProgram {
                entries,
                raw_end,
                v4,
                v6,
            });
        }
        for name in &c.unresolved {
            tracing::warn!(
                "interface {name:?} names no port: rules matching it never match (negated: always)"
            );
        }
        Ok(Classifier {
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            hooks,
            counter_len: rs.counter_len(),
            used: c.used,
            unresolved_ifaces: c.unresolved,
            tables: c.tables,
            build_time: start.elapsed(),
            nat_targets: rs.nat_targets().to_vec(),
        })
    }

    /// What `meta.nat = 1 + i` names: the NAT rules' targets in rule id order
    /// (`Ruleset::nat_targets`).
    pub fn nat_targets(&self) -> &[NatTarget] {
        &self.nat_targets
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn counter_len(&self) -> usize {
        self.counter_len
    }

    pub fn used_fields(&self) -> UsedFields {
        self.used
    }

    pub fn build_time(&self) -> Duration {
        self.build_time
    }

    /// Bytes held by the compiled structures (trees, entries, sets).
    pub fn memory_bytes(&self) -> usize {
        let hooks: usize = self
            .hooks
            .iter()
            .map(|h| {
                h.entries.capacity() * std::mem::size_of::<Entry>()
                    + h.v4.memory_bytes()
                    + h.v6.memory_bytes()
            })
            .sum();
        let sets: usize = self.tables.sets.iter().map(SetTable::memory_bytes).sum();
        let local = self.tables.local.capacity() * (std::mem::size_of::<(u8, u128)>() + 1);
        hooks + sets + local + self.tables.lists.capacity() * 4
    }

    /// Entries in the flattened program of `hook` (rules counted once per path).
    pub fn program_len(&self, hook: Hook) -> usize {
        self.hooks[hook.index()].entries.len()
    }

    /// Judges one packet at `hook`: bumps the counter of every rule and policy it
    /// traverses, applies MARK to `meta.mark`, NOTRACK to `meta.ctstate`, records a
    /// NAT target in `meta.nat` (left alone when none matches), queues LOG events. No
    /// allocation, lock, syscall or formatting.
    #[inline]
    pub fn run_hook(
        &self,
        hook: Hook,
        meta: &mut PacketMeta,
        frame_len: u32,
        counters: &mut RuleCounters,
    ) -> Verdict {
        self.run(hook, HookPart::All, meta, frame_len, counters, &mut NoTrace)
    }

    /// `run_hook` for some of the hook's tables: the stateful dataplane runs
    /// PREROUTING as `Raw`, then conntrack, then `AfterRaw` (only if `Raw` accepted).
    #[inline]
    pub fn run_hook_part(
        &self,
        hook: Hook,
        part: HookPart,
        meta: &mut PacketMeta,
        frame_len: u32,
        counters: &mut RuleCounters,
    ) -> Verdict {
        self.run(hook, part, meta, frame_len, counters, &mut NoTrace)
    }

    /// How many candidates the trees hand `meta` at `hook` (diagnostics for benches).
    pub fn candidates(&self, hook: Hook, meta: &PacketMeta) -> usize {
        let prog = &self.hooks[hook.index()];
        match meta.family {
            Family::V4 => prog.v4.candidates(&key_v4(meta)),
            Family::V6 => prog.v6.candidates(&key_v6(meta)),
        }
    }

    /// How many candidates `run_hook` reads for `meta` at `hook` (diagnostics).
    pub fn checks(&self, hook: Hook, meta: &PacketMeta, counters: &mut RuleCounters) -> usize {
        let mut n = CheckCount(0);
        let mut m = *meta;
        self.run(hook, HookPart::All, &mut m, 0, counters, &mut n);
        n.0
    }

    /// Per IPv4 partition at `hook`: slots, nodes, leaf slots, depth (diagnostics).
    pub fn partition_stats(&self, hook: Hook) -> Vec<[usize; 4]> {
        self.hooks[hook.index()].v4.part_stats()
    }

    /// Trees searched per family at `hook` (diagnostics for benches).
    pub fn partitions(&self, hook: Hook) -> (usize, usize) {
        let prog = &self.hooks[hook.index()];
        (prog.v4.partitions(), prog.v6.partitions())
    }

    /// `run_hook` that also appends every counter id hit to `hits` (cold path: tests,
    /// `bench classify` mismatch checks).
    pub fn run_hook_traced(
        &self,
        hook: Hook,
        meta: &mut PacketMeta,
        frame_len: u32,
        counters: &mut RuleCounters,
        hits: &mut Vec<u32>,
    ) -> Verdict {
        self.run(hook, HookPart::All, meta, frame_len, counters, hits)
    }

    /// `run_hook` over a batch; `verdicts[i]` is packet i's.
    pub fn run_batch(
        &self,
        hook: Hook,
        metas: &mut [PacketMeta],
        frame_lens: &[u32],
        counters: &mut RuleCounters,
        verdicts: &mut [Verdict],
    ) {
        for ((meta, len), v) in metas.iter_mut().zip(frame_lens).zip(verdicts.iter_mut()) {
            *v = self.run(hook, HookPart::All, meta, *len, counters, &mut NoTrace);
        }
    }

    #[inline]
    fn run(
        &self,
        hook: Hook,
        part: HookPart,
        meta: &mut PacketMeta,
        frame_len: u32,
        counters: &mut RuleCounters,
        trace: &mut impl Trace,
    ) -> Verdict {
        let prog = &self.hooks[hook.index()];
        // The raw block comes first: a part is a contiguous range of the program.
        let (pos, end) = match part {
            HookPart::All => (0, u32::MAX),
            HookPart::Raw => (0, prog.raw_end),
            HookPart::AfterRaw => (prog.raw_end, u32::MAX),
        };
        if prog.entries.len() as u32 <= pos || end == 0 {
            return Verdict::Accept;
        }
        let bytes = hit_bytes(meta, frame_len);
        match meta.family {
            Family::V4 => prog.v4.run(
                &key_v4(meta),
                part,
                meta,
                bytes,
                &prog.entries,
                &self.tables,
                counters,
                trace,
            ),
            Family::V6 => prog.v6.run(
                &key_v6(meta),
                part,
                meta,
                bytes,
                &prog.entries,
                &self.tables,
                counters,
                trace,
            ),
        }
    }
}

/// The lookup key of an IPv4 packet: addresses are the low 32 bits of `src`/`dst`,
/// ports are `NO_L4` without a valid transport header.
#[inline(always)]
fn key_v4(meta: &PacketMeta) -> [u32; DIMS] {
    let (sport, dport) = if meta.l4_valid {
        (u32::from(meta.sport), u32::from(meta.dport))
    } else {
        (NO_L4, NO_L4)
    };
    [
        meta.src as u32,
        meta.dst as u32,
        sport,
        dport,
        u32::from(meta.proto),
    ]
}

#[inline(always)]
fn key_v6(meta: &PacketMeta) -> [u128; DIMS] {
    let (sport, dport) = if meta.l4_valid {
        (u128::from(meta.sport), u128::from(meta.dport))
    } else {
        (u128::from(NO_L4), u128::from(NO_L4))
    };
    [meta.src, meta.dst, sport, dport, u128::from(meta.proto)]
}

struct Compiler<'a> {
    rs: &'a Ruleset,
    env: &'a Env,
    tables: PredTables,
    unresolved: Vec<String>,
    used: UsedFields,
}

/// Where a chain instance's RETURNs and ACCEPTs must be patched once positions are known.
struct Fixups {
    accepts: Vec<usize>,
}

impl Compiler<'_> {
    /// The program of `hook` and the end of its raw block.
    fn flatten(&mut self, hook: Hook) -> Result<(Vec<Entry>, u32), CompileError> {
        let mut entries = Vec::new();
        let mut raw_end = 0;
        for &table in hook.tables() {
            let Some(ci) = self.rs.chain_index(table, hook.chain_name()) else {
                continue;
            };
            let mut fix = Fixups {
                accepts: Vec::new(),
            };
            // The nat table only sees a connection's first packet: a guard that skips
            // the whole block (policy included) unless ctstate has NEW and the
            // binding is still to be made (a retransmitted SYN is NEW too).
            let nat_guard = (table == Table::Nat).then(|| {
                self.used.ctstate = true;
                self.used.ctstatus = true;
                entries.push(Entry {
                    pred: Pred::nat_guard(),
                    counter: NO_COUNTER,
                    action: Action::Guard { fail: 0 },
                });
                entries.len() - 1
            });
            self.instance(ci, &mut entries, &mut fix, hook)?;
            let policy = self.rs.chains()[ci]
                .policy
                .expect("built-in chains have a policy");
            let end = entries.len() as u32 + 1;
            entries.push(Entry {
                pred: Pred::default(),
                counter: self
                    .rs
                    .policy_id(ci)
                    .expect("built-in chains have a policy"),
                action: match policy {
                    Policy::Accept => Action::Accept(end),
                    Policy::Drop => Action::Drop,
                },
            });
            for i in fix.accepts {
                entries[i].action = match entries[i].action {
                    Action::Nat { slot, .. } => Action::Nat { slot, to: end },
                    _ => Action::Accept(end),
                };
            }
            if let Some(g) = nat_guard {
                entries[g].action = Action::Guard { fail: end };
            }
            if table == Table::Raw {
                raw_end = end;
            }
        }
        Ok((entries, raw_end))
    }

    /// Emits chain `ci`'s rules (and, recursively, its callees); RETURN lands at the
    /// entry after the block.
    fn instance(
        &mut self,
        ci: usize,
        entries: &mut Vec<Entry>,
        fix: &mut Fixups,
        hook: Hook,
    ) -> Result<(), CompileError> {
        let chain = &self.rs.chains()[ci];
        let mut returns = Vec::new();
        for (ri, rule) in chain.rules.iter().enumerate() {
            if entries.len() >= MAX_ENTRIES {
                return Err(CompileError::TooLarge(hook));
            }
            let family = self.rs.rule_family(&rule.matches);
            let rs = self.rs;
            let set_index = |name: &str| rs.set_index(name).expect("validated: sets exist") as u32;
            let pred = Pred::new(
                &rule.matches,
                family,
                &self.env.ports,
                &set_index,
                &mut self.tables,
                &mut self.unresolved,
            );
            self.note_used(&pred, &rule.target);
            let counter = self.rs.rule_id(ci, ri);
            let at = entries.len();
            let action = match &rule.target {
                None => Action::Count,
                Some(Target::Accept) => {
                    fix.accepts.push(at);
                    Action::Accept(0)
                }
                Some(Target::Drop) => Action::Drop,
                Some(Target::Reject(with)) => Action::Reject(*with),
                Some(Target::Dnat(_) | Target::Snat(_) | Target::Masquerade { .. }) => {
                    fix.accepts.push(at);
                    Action::Nat {
                        slot: self.rs.nat_slot(ci, ri),
                        to: 0,
                    }
                }
                Some(Target::Notrack) => Action::Notrack,
                Some(Target::Return) => {
                    returns.push(at);
                    Action::Skip(0)
                }
                Some(Target::Log(_)) => Action::Log,
                Some(Target::Mark { xor, mask }) => Action::Mark {
                    xor: *xor,
                    mask: *mask,
                },
                Some(Target::Jump(name) | Target::Goto(name)) => {
                    entries.push(Entry {
                        pred,
                        counter,
                        action: Action::Guard { fail: 0 },
                    });
                    let callee = self
                        .rs
                        .chain_index(chain.table, name)
                        .expect("validated: jump targets exist");
                    self.instance(callee, entries, fix, hook)?;
                    if matches!(rule.target, Some(Target::Goto(_))) {
                        // The callee ended: a goto does not come back here but to our caller.
                        returns.push(entries.len());
                        entries.push(Entry {
                            pred: Pred::default(),
                            counter: NO_COUNTER,
                            action: Action::Skip(0),
                        });
                    }
                    entries[at].action = Action::Guard {
                        fail: entries.len() as u32,
                    };
                    continue;
                }
            };
            entries.push(Entry {
                pred,
                counter,
                action,
            });
        }
        let end = entries.len() as u32;
        for i in returns {
            entries[i].action = Action::Skip(end);
        }
        Ok(())
    }

    fn note_used(&mut self, p: &Pred, target: &Option<Target>) {
        let u = &mut self.used;
        u.in_port |= p.in_port.is_some();
        u.out_port |= p.out_port.is_some();
        u.src |= p.src.is_some() || p.src_set.is_some() || p.src_local.is_some();
        u.dst |= p.dst.is_some() || p.dst_set.is_some() || p.dst_local.is_some();
        u.proto |= p.proto.is_some();
        u.sport |= p.sport.is_some();
        u.dport |= p.dport.is_some();
        u.tcp_flags |= p.tcp_flags.is_some();
        u.icmp |= p.icmp.is_some();
        u.l4_valid |= u.sport || u.dport || u.tcp_flags || u.icmp;
        u.mark |= p.mark.is_some() || matches!(target, Some(Target::Mark { .. }));
        u.length |= p.length.is_some();
        u.fragment |= p.fragment.is_some();
        // A ctstatus match reads ctstate too (a packet without a connection).
        u.ctstatus |= p.ctstatus.is_some();
        u.ctstate |=
            p.ctstate.is_some() || p.ctstatus.is_some() || matches!(target, Some(Target::Notrack));
    }

    /// One program per family. The placement box of an entry is its own bounds
    /// intersected with those of every jump on its path: inside a callee, the packet
    /// already matched the jump, and the box fields never change during a traversal.
    fn families(
        &self,
        entries: &[Entry],
        raw_end: u32,
        split: Split,
    ) -> (FamilyProgram<u32>, FamilyProgram<u128>) {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        // The jumps enclosing the current entry: (fail position, bounds, reach).
        let mut open: Vec<(u32, Bounds, Reach)> = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            while open.last().is_some_and(|g| g.0 as usize <= i) {
                open.pop();
            }
            let mut bounds = e.pred.bounds(&self.tables.lists);
            let mut r = match e.pred.family {
                Some(f) => Reach::Only(f),
                None => Reach::Any,
            };
            if let Some((_, pb, pr)) = open.last() {
                for d in 0..DIMS {
                    bounds[d] = (bounds[d].0.max(pb[d].0), bounds[d].1.min(pb[d].1));
                }
                r = r.and(*pr);
            }
            if bounds.iter().any(|(lo, hi)| lo > hi) {
                r = Reach::Never;
            }
            if let Action::Guard { fail } = e.action {
                open.push((fail, bounds, r));
            }
            let entry = i as u32;
            if matches!(r, Reach::Any | Reach::Only(Family::V4)) {
                // IPv4 addresses live in the low 32 bits: clamp the wildcard.
                let mut b4 = bounds;
                for b in &mut b4[..2] {
                    b.1 = b.1.min(u128::from(u32::MAX));
                }
                if b4[..2].iter().all(|(lo, hi)| lo <= hi) {
                    v4.push(SlotSrc { entry, bounds: b4 });
                }
            }
            if matches!(r, Reach::Any | Reach::Only(Family::V6)) {
                v6.push(SlotSrc { entry, bounds });
            }
        }
        (
            FamilyProgram::build(entries, &v4, raw_end, V4_BITS, split),
            FamilyProgram::build(entries, &v6, raw_end, V6_BITS, split),
        )
    }
}

type Bounds = [(u128, u128); DIMS];

/// Which packets can reach an entry, by family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    Any,
    Only(Family),
    Never,
}

impl Reach {
    fn and(self, outer: Reach) -> Reach {
        match (self, outer) {
            (Reach::Never, _) | (_, Reach::Never) => Reach::Never,
            (Reach::Any, r) | (r, Reach::Any) => r,
            (Reach::Only(a), Reach::Only(b)) if a == b => Reach::Only(a),
            _ => Reach::Never,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::config::to_toml;
    use crate::rules::eval::LinearEvaluator;
    use crate::rules::testgen::{random_packet, random_ruleset, GenOptions, Rng, PORTS};
    use proptest::prelude::*;

    fn env() -> Env {
        Env {
            ports: PORTS.iter().map(|s| s.to_string()).collect(),
            local_addrs: vec![
                "198.18.1.1".parse().unwrap(),
                "2001:db8:1::1".parse().unwrap(),
            ],
        }
    }

    /// Runs `packets` through all hooks with the oracle, the classifier and the flow
    /// cache (each packet twice, so the second is a cache hit); verdicts, marks,
    /// ctstate (NOTRACK), the NAT slot and every counter must agree. The compiled
    /// classifier and one cache run PREROUTING in two parts (raw, then the rest) as
    /// the stateful dataplane does; the oracle and another cache in one call.
    fn check_same(rs: &Ruleset, packets: &[PacketMeta]) -> Result<(), String> {
        for split in [Split::Auto, Split::Always] {
            check_same_with(rs, packets, split)?;
        }
        Ok(())
    }

    fn check_same_with(rs: &Ruleset, packets: &[PacketMeta], split: Split) -> Result<(), String> {
        let env = env();
        let lin = LinearEvaluator::new(rs, &env);
        let cls = Classifier::compile_with(rs, &env, split).map_err(|e| e.to_string())?;
        assert_eq!(cls.nat_targets(), rs.nat_targets());
        let mut cache = FlowCache::new(64);
        let mut cache_split = FlowCache::new(64);
        let mut counters: Vec<RuleCounters> = (0..4)
            .map(|_| RuleCounters::new(rs.counter_len()))
            .collect();
        let in_parts = |hook: Hook, run: &mut dyn FnMut(HookPart) -> Verdict| {
            if hook != Hook::Prerouting {
                return run(HookPart::All);
            }
            match run(HookPart::Raw) {
                Verdict::Accept => run(HookPart::AfterRaw),
                v => v,
            }
        };
        for (i, p) in packets.iter().enumerate() {
            for _ in 0..2 {
                let mut m = [*p; 4];
                for hook in Hook::ALL {
                    let [cl, cc, cf, cs] = &mut counters[..] else {
                        unreachable!()
                    };
                    let [a, b, c, d] = &mut m;
                    let v = [
                        lin.run_hook(hook, a, 0, cl),
                        in_parts(hook, &mut |part| cls.run_hook_part(hook, part, b, 0, cc)),
                        cache.run_hook(&cls, hook, c, 0, cf),
                        in_parts(hook, &mut |part| {
                            cache_split.run_hook_part(&cls, hook, part, d, 0, cs)
                        }),
                    ];
                    let seen: Vec<_> = m.iter().map(|x| (x.mark, x.ctstate, x.nat)).collect();
                    if v.iter().any(|x| *x != v[0]) || seen.iter().any(|x| *x != seen[0]) {
                        return Err(format!("{split:?}: packet {i} {p:?} at {hook:?}: linear, compiled, cached, cached in parts: {v:?} (mark, ctstate, nat) {seen:?}"));
                    }
                    if counters.iter().any(|c| c.counts() != counters[0].counts()) {
                        let all: Vec<_> = counters.iter().map(|c| c.counts()).collect();
                        return Err(format!(
                            "{split:?}: packet {i} {p:?} at {hook:?}: counters differ\n{all:?}"
                        ));
                    }
                    if v[0] != Verdict::Accept {
                        break;
                    }
                }
            }
        }
        let (cl, cc) = (&counters[0], &counters[1]);
        if cl.pending_log().len() != cc.pending_log().len() {
            return Err("LOG events differ".into());
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn compiled_equals_linear(seed in any::<u64>()) {
            let mut rng = Rng::new(seed);
            let opts = GenOptions { iptables_v4: false, all_tables: true, max_rules_per_chain: 12, stateful: true };
            let rs = random_ruleset(&mut rng, opts);
            let packets: Vec<PacketMeta> = (0..200).map(|_| random_packet(&mut rng, opts)).collect();
            if let Err(e) = check_same(&rs, &packets) {
                panic!("seed {seed}: {e}\n{}", to_toml(&rs));
            }
        }

    }

    proptest! {
        // Debug builds compile these slowly; 40 cases of ~600 rules still cut deep trees.
        #![proptest_config(ProptestConfig::with_cases(40))]
        #[test]
        fn compiled_equals_linear_on_big_flat_chains(seed in any::<u64>()) {
            // Enough rules that the tree really cuts (small chains stay one leaf).
            let mut rng = Rng::new(seed);
            let opts = GenOptions { iptables_v4: false, all_tables: false, max_rules_per_chain: 150, stateful: true };
            let rs = random_ruleset(&mut rng, opts);
            let packets: Vec<PacketMeta> = (0..300).map(|_| random_packet(&mut rng, opts)).collect();
            if let Err(e) = check_same(&rs, &packets) {
                panic!("seed {seed}: {e}\n{}", to_toml(&rs));
            }
        }
    }

    #[test]
    fn cache_misses_after_a_reload() {
        let rs = random_ruleset(
            &mut Rng::new(7),
            GenOptions {
                iptables_v4: false,
                all_tables: false,
                max_rules_per_chain: 5,
                stateful: false,
            },
        );
        let env = env();
        let a = Classifier::compile(&rs, &env).unwrap();
        let b = Classifier::compile(&rs, &env).unwrap();
        assert_ne!(a.generation(), b.generation());
        let mut cache = FlowCache::new(16);
        let mut counters = RuleCounters::new(rs.counter_len());
        let p = random_packet(
            &mut Rng::new(1),
            GenOptions {
                iptables_v4: true,
                all_tables: false,
                max_rules_per_chain: 0,
                stateful: false,
            },
        );
        cache.run_hook(&a, Hook::Forward, &mut p.clone(), 0, &mut counters);
        cache.run_hook(&a, Hook::Forward, &mut p.clone(), 0, &mut counters);
        cache.run_hook(&b, Hook::Forward, &mut p.clone(), 0, &mut counters);
        assert_eq!((cache.hits, cache.misses), (1, 2));
    }
}
