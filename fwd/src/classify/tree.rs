//! A HiCuts-style decision tree over (src, dst, sport, dport, proto): inner nodes cut
//! one dimension of a power-of-two region into 2^k equal parts (child = a shift and a
//! mask of the key), leaves hold the few entries that can match there, in program order.
//! The tree only narrows the candidates; the leaf checks each candidate exactly, so
//! over-approximating a rule (negations, lists, sets) costs speed, never correctness.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

pub const DIMS: usize = 5;
pub type Key = [u128; DIMS];

/// Candidates per leaf below which we stop cutting. 8 measured best on acl 10k
/// (`bench classify`, 4: deeper trees and more memory for no gain; 16: +30% ns).
const BINTH: usize = 8;
/// Max child-list total per node, as a multiple of the node's list (HiCuts "spfac").
const SPFAC: usize = 4;
/// At most 2^MAX_CUT_BITS children per node.
const MAX_CUT_BITS: u32 = 8;
/// Stop cutting once the leaves hold this many candidate slots in total (memory bound:
/// 32M * 4 bytes = 128 MiB); the remaining nodes become (longer) leaves.
const MAX_LEAF_SLOTS: usize = 32 << 20;

#[derive(Clone, Copy, Debug)]
enum Node {
    Cut {
        dim: u8,
        shift: u8,
        mask: u32,
        base: u32,
    },
    Leaf {
        start: u32,
        len: u32,
    },
}

/// How an entry moves the program counter, for pruning (see `prune`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Never transfers (counts, MARK, LOG).
    Next,
    /// When it does not match, lands at `fail` (a jump guard).
    GuardFail(u32),
    /// When it matches, lands at `to` (RETURN, ACCEPT to the next table, goto end).
    Transfer(u32),
    /// When it matches, ends the hook (DROP).
    End,
}

pub struct Item {
    pub bounds: [(u128, u128); DIMS],
    /// Matches every packet inside its bounds (no other condition).
    pub box_only: bool,
    pub flow: Flow,
}

#[derive(Clone, Copy)]
struct Region {
    lo: [u128; DIMS],
    bits: [u8; DIMS],
}

impl Region {
    fn hi(&self, d: usize) -> u128 {
        self.lo[d] + span(self.bits[d])
    }
    fn inside(&self, b: &[(u128, u128); DIMS]) -> bool {
        (0..DIMS).all(|d| b[d].0 <= self.lo[d] && self.hi(d) <= b[d].1)
    }
}

fn span(bits: u8) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

pub struct Tree {
    nodes: Vec<Node>,
    children: Vec<u32>,
    leaves: Vec<u32>,
}

struct Builder<'a> {
    items: &'a [Item],
    tree: Tree,
    leaf_dedup: HashMap<Vec<u32>, u32>,
}

impl Tree {
    /// Builds over `list` (entry indices in program order) within a space of
    /// `bits[d]` bits per dimension.
    pub fn build(items: &[Item], list: Vec<u32>, bits: [u8; DIMS]) -> Tree {
        let mut b = Builder {
            items,
            tree: Tree {
                nodes: Vec::new(),
                children: Vec::new(),
                leaves: Vec::new(),
            },
            leaf_dedup: HashMap::new(),
        };
        let root = Region {
            lo: [0; DIMS],
            bits,
        };
        let r = b.node(list, root);
        debug_assert_eq!(r, 0);
        b.tree
    }

    #[inline]
    pub fn find(&self, key: &Key) -> &[u32] {
        let mut n = 0usize;
        loop {
            match self.nodes[n] {
                Node::Cut {
                    dim,
                    shift,
                    mask,
                    base,
                } => {
                    let c = (key[usize::from(dim)] >> shift) as u32 & mask;
                    n = self.children[(base + c) as usize] as usize;
                }
                Node::Leaf { start, len } => return &self.leaves[start as usize..][..len as usize],
            }
        }
    }

    pub fn memory_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>()
            + (self.children.capacity() + self.leaves.capacity()) * 4
    }
}

impl Builder<'_> {
    fn node(&mut self, list: Vec<u32>, region: Region) -> u32 {
        let list = prune(self.items, list, &region);
        let idx = self.tree.nodes.len() as u32;
        self.tree.nodes.push(Node::Leaf { start: 0, len: 0 });
        if list.len() <= BINTH || self.tree.leaves.len() > MAX_LEAF_SLOTS {
            self.tree.nodes[idx as usize] = self.leaf(list);
            return idx;
        }
        let Some((dim, k)) = self.choose_cut(&list, &region) else {
            self.tree.nodes[idx as usize] = self.leaf(list);
            return idx;
        };
        let n = 1usize << k;
        let child_bits = region.bits[dim] - k as u8;
        let mut lists: Vec<Vec<u32>> = vec![Vec::new(); n];
        for &e in &list {
            let (a, b) = self.child_span(e, dim, &region, child_bits);
            for l in &mut lists[a..=b] {
                l.push(e);
            }
        }
        let base = self.tree.children.len() as u32;
        self.tree.children.resize(self.tree.children.len() + n, 0);
        // Sibling subtrees are never shared: pruning depends on the region, so equal
        // candidate lists can still shrink differently. Equal final leaves are shared.
        for (c, l) in lists.into_iter().enumerate() {
            let mut r = region;
            r.bits[dim] = child_bits;
            r.lo[dim] = region.lo[dim] + ((c as u128) << child_bits);
            let child = self.node(l, r);
            self.tree.children[base as usize + c] = child;
        }
        self.tree.nodes[idx as usize] = Node::Cut {
            dim: dim as u8,
            shift: child_bits,
            mask: (n - 1) as u32,
            base,
        };
        idx
    }

    fn leaf(&mut self, list: Vec<u32>) -> Node {
        if let Some(&start) = self.leaf_dedup.get(&list) {
            return Node::Leaf {
                start,
                len: list.len() as u32,
            };
        }
        let start = self.tree.leaves.len() as u32;
        self.tree.leaves.extend_from_slice(&list);
        let len = list.len() as u32;
        self.leaf_dedup.insert(list, start);
        Node::Leaf { start, len }
    }

    fn child_span(&self, e: u32, dim: usize, region: &Region, child_bits: u8) -> (usize, usize) {
        let (lo, hi) = self.items[e as usize].bounds[dim];
        let a = lo.max(region.lo[dim]) - region.lo[dim];
        let b = hi.min(region.hi(dim)) - region.lo[dim];
        ((a >> child_bits) as usize, (b >> child_bits) as usize)
    }

    /// Picks the dimension and cut count that leave the smallest largest child, with
    /// the replication bound `sum(children) + cuts <= SPFAC * len`.
    fn choose_cut(&self, list: &[u32], region: &Region) -> Option<(usize, u32)> {
        let mut best: Option<(usize, usize, usize, u32)> = None; // (max, sum, dim, k)
        let mut diff = Vec::new();
        for dim in 0..DIMS {
            let max_k = MAX_CUT_BITS.min(u32::from(region.bits[dim]));
            let mut pick = None;
            for k in 1..=max_k {
                let n = 1usize << k;
                let child_bits = region.bits[dim] - k as u8;
                diff.clear();
                diff.resize(n + 1, 0i64);
                for &e in list {
                    let (a, b) = self.child_span(e, dim, region, child_bits);
                    diff[a] += 1;
                    diff[b + 1] -= 1;
                }
                let (mut run, mut max, mut sum) = (0i64, 0usize, 0usize);
                for d in &diff[..n] {
                    run += d;
                    max = max.max(run as usize);
                    sum += run as usize;
                }
                if sum + n > SPFAC * list.len() && pick.is_some() {
                    break;
                }
                pick = Some((max, sum, dim, k));
                if max <= 1 {
                    break;
                }
            }
            if let Some(p) = pick {
                if best.is_none_or(|b| (p.0, p.1) < (b.0, b.1)) {
                    best = Some(p);
                }
            }
        }
        best.filter(|b| b.0 < list.len()).map(|b| (b.2, b.3))
    }
}

/// Drops the candidates a packet in `region` can never reach: an entry that surely
/// matches there (box-only, region inside its box) and transfers to `to` makes every
/// entry between it and `to` dead, unless an earlier live entry can land inside that
/// gap. Entries whose box misses the region go too.
fn prune(items: &[Item], list: Vec<u32>, region: &Region) -> Vec<u32> {
    let mut out = Vec::with_capacity(list.len());
    let mut landings: BinaryHeap<Reverse<u32>> = BinaryHeap::new();
    let mut skip_until = 0u32;
    for e in list {
        if e < skip_until {
            continue;
        }
        let it = &items[e as usize];
        if (0..DIMS).any(|d| it.bounds[d].0 > region.hi(d) || it.bounds[d].1 < region.lo[d]) {
            continue;
        }
        out.push(e);
        while landings.peek().is_some_and(|l| l.0 <= e) {
            landings.pop();
        }
        let sure = it.box_only && region.inside(&it.bounds);
        let next_landing = landings.peek().map_or(u32::MAX, |l| l.0);
        match it.flow {
            Flow::Next => {}
            Flow::GuardFail(fail) if !sure => landings.push(Reverse(fail)),
            Flow::GuardFail(_) => {}
            Flow::Transfer(to) if sure => {
                skip_until = to.min(next_landing);
                landings.push(Reverse(to));
            }
            Flow::Transfer(to) => landings.push(Reverse(to)),
            Flow::End if sure => skip_until = next_landing,
            Flow::End => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(src: (u128, u128), flow: Flow) -> Item {
        let full = (0, u128::MAX);
        Item {
            bounds: [src, full, full, full, full],
            box_only: true,
            flow,
        }
    }

    #[test]
    fn a_sure_drop_hides_what_follows_but_not_a_landing_after_it() {
        let r = Region {
            lo: [0; DIMS],
            bits: [8, 8, 8, 8, 8],
        };
        // 0: conditional RETURN-like transfer to 3; 1: sure DROP; 2: dead; 3: live (landing).
        let mut items = vec![item((0, 255), Flow::Transfer(3)), item((0, 255), Flow::End)];
        items[0].box_only = false;
        items.push(item((0, 255), Flow::Next));
        items.push(item((0, 255), Flow::Next));
        assert_eq!(prune(&items, vec![0, 1, 2, 3], &r), vec![0, 1, 3]);
    }

    #[test]
    fn lookup_reaches_the_leaf_holding_the_rule() {
        let items: Vec<Item> = (0..64u128)
            .map(|i| item((i * 4, i * 4 + 3), Flow::End))
            .collect();
        let t = Tree::build(&items, (0..64).collect(), [8, 8, 8, 8, 8]);
        for i in 0..64u128 {
            let leaf = t.find(&[i * 4 + 1, 0, 0, 0, 0]);
            assert!(leaf.contains(&(i as u32)), "{i}: {leaf:?}");
            assert!(leaf.len() <= BINTH);
        }
    }
}
