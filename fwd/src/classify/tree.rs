//! A HiCuts-style decision tree over (src, dst, sport, dport, proto): inner nodes cut
//! one dimension of a power-of-two region into 2^k equal parts (child = a shift and a
//! mask of the key), leaves hold the few slots that can match there, in program order.
//! The tree only narrows the candidates; the caller checks each candidate exactly, so
//! over-approximating a rule (negations, lists, sets) costs speed, never correctness.
//! `search` builds one tree per partition of the rules (EffiCuts), so a tree only cuts
//! fields its rules are small in and wildcard rules are not copied into every leaf.

use std::collections::HashMap;

pub const DIMS: usize = 5;

/// Candidates per leaf below which we stop cutting. 8 measured best on acl 10k
/// (`bench classify`, 4: deeper trees and more memory for no gain; 16: +30% ns).
const BINTH: usize = 16;
/// Max child-list total per node, as a multiple of the node's list (HiCuts "spfac").
const SPFAC: usize = 16;
/// At most 2^MAX_CUT_BITS children per node.
const MAX_CUT_BITS: u32 = 16;

/// `dim == LEAF`: a leaf whose candidates are `leaves[base..base + mask]`.
const LEAF: u8 = u8::MAX;

/// One node in 12 bytes: a cut picks child `children[base + (key[dim] >> shift) & mask]`.
#[derive(Clone, Copy, Debug)]
pub struct Node {
    base: u32,
    mask: u32,
    dim: u8,
    shift: u8,
}

impl Node {
    pub const EMPTY: Node = Node {
        base: 0,
        mask: 0,
        dim: LEAF,
        shift: 0,
    };

    #[inline(always)]
    pub fn is_leaf(&self) -> bool {
        self.dim == LEAF
    }

    /// Where a leaf's candidates are in `Tree::leaves` (or a copy laid out alike).
    #[inline(always)]
    pub fn leaf_range(&self) -> std::ops::Range<usize> {
        self.base as usize..self.base as usize + self.mask as usize
    }
}

/// A key element: IPv4 trees look up with u32 keys, IPv6 trees with u128.
pub trait KeyInt: Copy {
    fn bucket(self, shift: u8, mask: u32) -> u32;
}

impl KeyInt for u32 {
    #[inline(always)]
    fn bucket(self, shift: u8, mask: u32) -> u32 {
        (self >> shift) & mask
    }
}

impl KeyInt for u128 {
    #[inline(always)]
    fn bucket(self, shift: u8, mask: u32) -> u32 {
        (self >> shift) as u32 & mask
    }
}

/// How a slot moves the program counter, for pruning (see `prune`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Never transfers (counts, MARK, LOG, jump guards when they match).
    Next,
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

/// The root, then every cut's children stored side by side (a child is one load away),
/// and the leaves' candidate lists.
pub struct Tree {
    root: Node,
    nodes: Vec<Node>,
    /// Dropped by `search` once copied into its own leaf layout.
    pub leaves: Vec<u32>,
}

struct Builder<'a> {
    items: &'a [Item],
    /// Nodes plus leaf slots this tree may hold; past it, see `abort`.
    budget: usize,
    /// Past the budget: give up (true) or turn every further node into a leaf.
    abort: bool,
    over: bool,
    /// `land_after[s]`: the smallest position > s that some slot before s can transfer
    /// to (`u32::MAX`: none); bounds what a sure transfer at s may hide.
    land_after: &'a [u32],
    tree: Tree,
    leaf_dedup: HashMap<Vec<u32>, u32>,
}

impl Tree {
    /// Builds over `list` (slot indices in program order) within a space of
    /// `bits[d]` bits per dimension.
    /// `budget` bounds nodes plus leaf slots (memory and build time); past it the
    /// build returns None when `abort`, else cuts no further (longer leaves).
    pub fn build(
        items: &[Item],
        land_after: &[u32],
        list: Vec<u32>,
        bits: [u8; DIMS],
        budget: usize,
        abort: bool,
    ) -> Option<Tree> {
        let mut b = Builder {
            items,
            budget,
            abort,
            over: false,
            land_after,
            tree: Tree {
                root: Node::EMPTY,
                nodes: Vec::new(),
                leaves: Vec::new(),
            },
            leaf_dedup: HashMap::new(),
        };
        let root = Region {
            lo: [0; DIMS],
            bits,
        };
        b.tree.root = b.node(list, root);
        if b.over {
            return None;
        }
        b.tree.nodes.shrink_to_fit();
        b.tree.leaves.shrink_to_fit();
        Some(b.tree)
    }

    #[cfg(test)]
    pub fn find<K: KeyInt>(&self, key: &[K; DIMS]) -> &[u32] {
        let mut n = self.root();
        while !n.is_leaf() {
            n = self.step(n, key);
        }
        &self.leaves[n.leaf_range()]
    }

    #[inline(always)]
    pub fn root(&self) -> Node {
        self.root
    }

    /// The child of cut `n` that holds `key`.
    #[inline(always)]
    pub fn step<K: KeyInt>(&self, n: Node, key: &[K; DIMS]) -> Node {
        let c = key[usize::from(n.dim)].bucket(n.shift, n.mask);
        self.nodes[(n.base + c) as usize]
    }

    /// (nodes, leaf slots, max depth) for diagnostics.
    pub fn shape(&self) -> (usize, usize, usize) {
        fn depth(t: &Tree, node: Node) -> usize {
            if node.dim == LEAF {
                return 0;
            }
            let kids = &t.nodes[node.base as usize..][..node.mask as usize + 1];
            1 + kids.iter().map(|&c| depth(t, c)).max().unwrap_or(0)
        }
        (
            self.nodes.len() + 1,
            self.leaves.len(),
            depth(self, self.root),
        )
    }

    pub fn memory_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>() + self.leaves.capacity() * 4
    }
}

impl Builder<'_> {
    fn node(&mut self, list: Vec<u32>, region: Region) -> Node {
        if self.over {
            return Node::EMPTY;
        }
        let list = prune(self.items, self.land_after, list, &region);
        if self.tree.nodes.len() + self.tree.leaves.len() > self.budget {
            if self.abort {
                self.over = true;
                return Node::EMPTY;
            }
            return self.leaf(list);
        }
        if list.len() <= BINTH {
            return self.leaf(list);
        }
        let Some((dim, k)) = self.choose_cut(&list, &region) else {
            return self.leaf(list);
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
        drop(list);
        let base = self.tree.nodes.len();
        self.tree.nodes.resize(base + n, Node::EMPTY);
        // Sibling subtrees are never shared: pruning depends on the region, so equal
        // candidate lists can still shrink differently. Equal final leaves are shared.
        for (c, l) in lists.into_iter().enumerate() {
            let mut r = region;
            r.bits[dim] = child_bits;
            r.lo[dim] = region.lo[dim] + ((c as u128) << child_bits);
            self.tree.nodes[base + c] = self.node(l, r);
        }
        Node {
            base: base as u32,
            mask: (n - 1) as u32,
            dim: dim as u8,
            shift: child_bits,
        }
    }

    fn leaf(&mut self, list: Vec<u32>) -> Node {
        let len = list.len() as u32;
        let start = match self.leaf_dedup.get(&list) {
            Some(&start) => start,
            None => {
                let start = self.tree.leaves.len() as u32;
                self.tree.leaves.extend_from_slice(&list);
                self.leaf_dedup.insert(list, start);
                start
            }
        };
        Node {
            base: start,
            mask: len,
            dim: LEAF,
            shift: 0,
        }
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
                // The fewest cuts that reach this largest child: more only copy rules.
                if pick.is_none_or(|p: (usize, usize, usize, u32)| max < p.0) {
                    pick = Some((max, sum, dim, k));
                }
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

/// Drops the candidates a packet in `region` can never reach: a slot that surely
/// matches there (box-only, region inside its box) and transfers to `to` makes every
/// slot between it and `to` dead, unless a slot before it (in any partition) can land
/// inside that gap (`land_after`). Slots whose box misses the region go too.
fn prune(items: &[Item], land_after: &[u32], list: Vec<u32>, region: &Region) -> Vec<u32> {
    let mut out = Vec::with_capacity(list.len());
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
        if !(it.box_only && region.inside(&it.bounds)) {
            continue;
        }
        let landing = land_after[e as usize];
        match it.flow {
            Flow::Next => {}
            Flow::Transfer(to) => skip_until = to.min(landing),
            Flow::End => skip_until = landing,
        }
    }
    out
}

/// `land_after` for `prune`: per slot, the smallest target above it of any transfer
/// (`targets[j]`: where slot j may land, if anywhere) from a slot before it.
pub fn land_after(targets: &[Option<u32>]) -> Vec<u32> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut heap = BinaryHeap::new();
    let mut out = Vec::with_capacity(targets.len());
    for (s, t) in targets.iter().enumerate() {
        while heap.peek().is_some_and(|&Reverse(x)| x as usize <= s) {
            heap.pop();
        }
        out.push(heap.peek().map_or(u32::MAX, |&Reverse(x)| x));
        if let Some(t) = t {
            heap.push(Reverse(*t));
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
        let land = land_after(&[Some(3), None, None, None]);
        assert_eq!(land, vec![u32::MAX, 3, 3, u32::MAX]);
        assert_eq!(prune(&items, &land, vec![0, 1, 2, 3], &r), vec![0, 1, 3]);
    }

    #[test]
    fn lookup_reaches_the_leaf_holding_the_rule() {
        let items: Vec<Item> = (0..64u128)
            .map(|i| item((i * 4, i * 4 + 3), Flow::End))
            .collect();
        let land = vec![u32::MAX; 64];
        let t = Tree::build(
            &items,
            &land,
            (0..64).collect(),
            [8, 8, 8, 8, 8],
            1 << 20,
            true,
        )
        .expect("within budget");
        for i in 0..64u128 {
            let leaf = t.find(&[i as u32 * 4 + 1, 0, 0, 0, 0]);
            assert!(leaf.contains(&(i as u32)), "{i}: {leaf:?}");
            assert!(leaf.len() <= BINTH);
        }
    }
}
