//! One rule's matches resolved for the hot path: interfaces as port bitmaps, prefixes
//! as ranges, sets as hash tables. Written apart from `rules::eval` on purpose, so the
//! property test compares two implementations.

use rustc_hash::FxHashSet;

use crate::packet::meta::{ctstate, ctstatus, Family, PacketMeta};
use crate::rules::{iface_matches, net_family, AddrSet, Matches, Neg, ICMP_ANY};
use ipnet::IpNet;

/// A set of port indices (at most 256 ports: one bit each).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortBits([u64; 4]);

pub const MAX_PORTS: usize = 256;

impl PortBits {
    #[inline]
    fn contains(&self, port: u16) -> bool {
        let p = usize::from(port);
        p < MAX_PORTS && self.0[p / 64] & (1 << (p % 64)) != 0
    }
    fn insert(&mut self, p: usize) {
        self.0[p / 64] |= 1 << (p % 64);
    }
}

/// A prefix as an inclusive range of the family's address space (IPv4 in the low 32 bits).
pub fn net_range(n: &IpNet) -> (u128, u128) {
    match n {
        IpNet::V4(n) => (
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// An address set as one hash table of (masked address, prefix length) and the list of
/// lengths present: a lookup is one probe per distinct length (one for a host set).
#[derive(Debug, Default)]
pub struct SetTable {
    family: Option<Family>,
    lens: Vec<u8>,
    members: FxHashSet<(u128, u8)>,
}

impl SetTable {
    pub fn new(set: &AddrSet) -> SetTable {
        let mut members =
            FxHashSet::with_capacity_and_hasher(set.members.len(), Default::default());
        let mut lens = Vec::new();
        for m in &set.members {
            let len = m.prefix_len();
            members.insert((net_range(m).0, len));
            if !lens.contains(&len) {
                lens.push(len);
            }
        }
        lens.sort_unstable_by(|a, b| b.cmp(a));
        SetTable {
            family: Some(set.family),
            lens,
            members,
        }
    }

    #[inline]
    pub fn contains(&self, family: Family, addr: u128) -> bool {
        if self.family != Some(family) {
            return false;
        }
        let width = if family == Family::V4 { 32 } else { 128 };
        self.lens.iter().any(|&len| {
            let host = width - u32::from(len);
            let masked = if host >= 128 {
                0
            } else {
                addr & !((1u128 << host) - 1)
            };
            self.members.contains(&(masked, len))
        })
    }

    pub fn memory_bytes(&self) -> usize {
        self.members.capacity() * (std::mem::size_of::<(u128, u8)>() + 1) + self.lens.len()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range<T> {
    pub lo: T,
    pub hi: T,
    pub invert: bool,
}

impl<T: PartialOrd + Copy> Range<T> {
    #[inline]
    fn test(&self, v: T) -> bool {
        (self.lo <= v && v <= self.hi) != self.invert
    }
}

/// Ports: one range inline, a multiport list in `Pred::lists`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortPred {
    pub lo: u16,
    pub hi: u16,
    pub list: u32,
    pub list_len: u16,
    pub invert: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pred {
    pub family: Option<Family>,
    pub in_port: Option<(PortBits, bool)>,
    pub out_port: Option<(PortBits, bool)>,
    pub src: Option<Range<u128>>,
    pub dst: Option<Range<u128>>,
    pub src_set: Option<(u32, bool)>,
    pub dst_set: Option<(u32, bool)>,
    pub proto: Option<(u8, bool)>,
    pub sport: Option<PortPred>,
    pub dport: Option<PortPred>,
    pub tcp_flags: Option<(u8, u8, bool)>,
    /// (type, code or None, invert); type 255 is any.
    pub icmp: Option<(u8, Option<u8>, bool)>,
    pub mark: Option<(u32, u32, bool)>,
    pub length: Option<Range<u16>>,
    pub fragment: Option<bool>,
    pub src_local: Option<bool>,
    pub dst_local: Option<bool>,
    /// (ctstate bits, invert).
    pub ctstate: Option<(u8, bool)>,
    /// (ctstatus bits, invert, the rule also has a ctstate match).
    pub ctstatus: Option<(u8, bool, bool)>,
}

/// xt_conntrack's `ct != NULL`: the states a packet with a connection is in.
const HAS_CT: u8 = ctstate::NEW | ctstate::ESTABLISHED | ctstate::RELATED;

/// What a predicate needs besides the packet: set tables, local addresses, port lists.
#[derive(Debug, Default)]
pub struct PredTables {
    pub sets: Vec<SetTable>,
    pub local: FxHashSet<(u8, u128)>,
    pub lists: Vec<(u16, u16)>,
}

fn family_tag(f: Family) -> u8 {
    f as u8
}

impl PredTables {
    #[inline]
    fn is_local(&self, family: Family, addr: u128) -> bool {
        self.local.contains(&(family_tag(family), addr))
    }

    pub fn add_local(&mut self, a: std::net::IpAddr) {
        let (f, v) = match a {
            std::net::IpAddr::V4(a) => (Family::V4, u128::from(u32::from(a))),
            std::net::IpAddr::V6(a) => (Family::V6, u128::from(a)),
        };
        self.local.insert((family_tag(f), v));
    }
}

/// Interface patterns that name no port, reported once per compile.
pub type Unresolved = Vec<String>;

impl Pred {
    /// Resolves `m`; `family` is the rule's family (explicit or implied), `set_index`
    /// maps set names to indices in `tables.sets`.
    pub fn new(
        m: &Matches,
        family: Option<Family>,
        ports: &[String],
        set_index: &dyn Fn(&str) -> u32,
        tables: &mut PredTables,
        unresolved: &mut Unresolved,
    ) -> Pred {
        let mut iface = |n: &Option<Neg<String>>| {
            n.as_ref().map(|n| {
                let mut bits = PortBits::default();
                for (i, name) in ports.iter().enumerate().take(MAX_PORTS) {
                    if iface_matches(&n.value, name) {
                        bits.insert(i);
                    }
                }
                if bits == PortBits::default() && !unresolved.contains(&n.value) {
                    unresolved.push(n.value.clone());
                }
                (bits, n.invert)
            })
        };
        let net = |n: &Option<Neg<IpNet>>| {
            n.as_ref().map(|n| {
                debug_assert_eq!(Some(net_family(&n.value)), family);
                let (lo, hi) = net_range(&n.value);
                Range {
                    lo,
                    hi,
                    invert: n.invert,
                }
            })
        };
        let mut ports_pred = |p: &Option<Neg<Vec<(u16, u16)>>>| {
            p.as_ref().map(|p| match p.value.as_slice() {
                [(lo, hi)] => PortPred {
                    lo: *lo,
                    hi: *hi,
                    list: 0,
                    list_len: 0,
                    invert: p.invert,
                },
                list => {
                    let start = tables.lists.len() as u32;
                    tables.lists.extend_from_slice(list);
                    PortPred {
                        lo: 0,
                        hi: 0,
                        list: start,
                        list_len: list.len() as u16,
                        invert: p.invert,
                    }
                }
            })
        };
        let set = |s: &Option<Neg<String>>| s.as_ref().map(|s| (set_index(&s.value), s.invert));
        Pred {
            family,
            in_port: iface(&m.in_iface),
            out_port: iface(&m.out_iface),
            src: net(&m.src),
            dst: net(&m.dst),
            src_set: set(&m.src_set),
            dst_set: set(&m.dst_set),
            proto: m.proto.as_ref().map(|p| (p.value, p.invert)),
            sport: ports_pred(&m.sport),
            dport: ports_pred(&m.dport),
            tcp_flags: m
                .tcp_flags
                .as_ref()
                .map(|f| (f.value.mask, f.value.comp, f.invert)),
            icmp: m
                .icmp
                .as_ref()
                .map(|i| (i.value.kind, i.value.code, i.invert)),
            mark: m
                .mark
                .as_ref()
                .map(|k| (k.value.value, k.value.mask, k.invert)),
            length: m.length.as_ref().map(|l| Range {
                lo: l.value.0,
                hi: l.value.1,
                invert: l.invert,
            }),
            fragment: m.fragment,
            src_local: m.src_local,
            dst_local: m.dst_local,
            ctstate: m.ctstate.as_ref().map(|s| (s.value, s.invert)),
            ctstatus: m
                .ctstatus
                .as_ref()
                .map(|s| (s.value, s.invert, m.ctstate.is_some())),
        }
    }

    /// The nat table's guard: a NEW packet whose binding for this hook is not made
    /// yet ([`ctstatus::NAT_DONE`] clear), i.e. a connection's first packet.
    pub fn nat_guard() -> Pred {
        Pred {
            ctstate: Some((ctstate::NEW, false)),
            ctstatus: Some((ctstatus::NAT_DONE, true, true)),
            ..Pred::default()
        }
    }

    /// True when the predicate is only positive single-range constraints on the fields
    /// the decision tree cuts on, so a tree region inside its box always matches.
    pub fn box_only(&self) -> bool {
        let single = |p: &Option<PortPred>| p.is_none_or(|p| !p.invert && p.list_len == 0);
        self.in_port.is_none()
            && self.out_port.is_none()
            && self.src.is_none_or(|r| !r.invert)
            && self.dst.is_none_or(|r| !r.invert)
            && self.src_set.is_none()
            && self.dst_set.is_none()
            && self.proto.is_none_or(|p| !p.1)
            && single(&self.sport)
            && single(&self.dport)
            && self.tcp_flags.is_none()
            && self.icmp.is_none()
            && self.mark.is_none()
            && self.length.is_none()
            && self.fragment.is_none()
            && self.src_local.is_none()
            && self.dst_local.is_none()
            && self.ctstate.is_none()
            && self.ctstatus.is_none()
    }

    /// Hull of the packets this predicate can match on the tree's dimensions
    /// (src, dst, sport, dport, proto); ports use `NO_L4` for "no transport header".
    pub fn bounds(&self, lists: &[(u16, u16)]) -> [(u128, u128); 5] {
        let full = (0, u128::MAX);
        let addr = |r: &Option<Range<u128>>| match r {
            Some(r) if !r.invert => (r.lo, r.hi),
            _ => full,
        };
        let port = |p: &Option<PortPred>| match p {
            None => (0, u128::from(super::NO_L4)),
            Some(p) if p.invert => (0, 65535),
            Some(p) if p.list_len == 0 => (u128::from(p.lo), u128::from(p.hi)),
            Some(p) => {
                let l = &lists[p.list as usize..][..usize::from(p.list_len)];
                let lo = l.iter().map(|r| r.0).min().unwrap_or(0);
                let hi = l.iter().map(|r| r.1).max().unwrap_or(65535);
                (u128::from(lo), u128::from(hi))
            }
        };
        // TCP flags and ICMP need a transport header too.
        let needs_l4 = self.tcp_flags.is_some() || self.icmp.is_some();
        let l4 = (
            0,
            if needs_l4 {
                65535
            } else {
                u128::from(super::NO_L4)
            },
        );
        let and = |a: (u128, u128), b: (u128, u128)| (a.0.max(b.0), a.1.min(b.1));
        [
            addr(&self.src),
            addr(&self.dst),
            and(port(&self.sport), l4),
            and(port(&self.dport), l4),
            match self.proto {
                Some((p, false)) => (u128::from(p), u128::from(p)),
                _ => (0, 255),
            },
        ]
    }

    #[inline]
    pub fn matches(&self, meta: &PacketMeta, t: &PredTables) -> bool {
        if self.family.is_some_and(|f| f != meta.family) {
            return false;
        }
        if let Some((p, inv)) = self.proto {
            if (meta.proto == p) == inv {
                return false;
            }
        }
        if let Some(r) = &self.dst {
            if !r.test(meta.dst) {
                return false;
            }
        }
        if let Some(r) = &self.src {
            if !r.test(meta.src) {
                return false;
            }
        }
        if let Some(p) = &self.dport {
            if !(meta.l4_valid && port_test(p, meta.dport, &t.lists)) {
                return false;
            }
        }
        if let Some(p) = &self.sport {
            if !(meta.l4_valid && port_test(p, meta.sport, &t.lists)) {
                return false;
            }
        }
        if let Some((bits, inv)) = &self.in_port {
            if bits.contains(meta.in_port) == *inv {
                return false;
            }
        }
        if let Some((bits, inv)) = &self.out_port {
            if bits.contains(meta.out_port) == *inv {
                return false;
            }
        }
        self.rare_matches(meta, t)
    }

    /// The matches that few rules use, kept out of line.
    #[inline(never)]
    fn rare_matches(&self, meta: &PacketMeta, t: &PredTables) -> bool {
        if let Some((mask, comp, inv)) = self.tcp_flags {
            if !(meta.l4_valid && (meta.tcp_flags & mask == comp) != inv) {
                return false;
            }
        }
        if let Some((kind, code, inv)) = self.icmp {
            let hit = kind == ICMP_ANY
                || (meta.icmp_type == kind && code.is_none_or(|c| c == meta.icmp_code));
            if !(meta.l4_valid && hit != inv) {
                return false;
            }
        }
        if let Some((value, mask, inv)) = self.mark {
            if (meta.mark & mask == value) == inv {
                return false;
            }
        }
        if let Some(r) = &self.length {
            if !r.test(meta.ip_len) {
                return false;
            }
        }
        if self.fragment.is_some_and(|f| f != meta.fragment) {
            return false;
        }
        if let Some((set, inv)) = self.src_set {
            if t.sets[set as usize].contains(meta.family, meta.src) == inv {
                return false;
            }
        }
        if let Some((set, inv)) = self.dst_set {
            if t.sets[set as usize].contains(meta.family, meta.dst) == inv {
                return false;
            }
        }
        if self
            .src_local
            .is_some_and(|l| t.is_local(meta.family, meta.src) != l)
        {
            return false;
        }
        if self
            .dst_local
            .is_some_and(|l| t.is_local(meta.family, meta.dst) != l)
        {
            return false;
        }
        if let Some((bits, inv)) = self.ctstate {
            if (meta.ctstate & bits != 0) == inv {
                return false;
            }
        }
        if let Some((bits, inv, with_state)) = self.ctstatus {
            // xt_conntrack: without a connection, only a ctstate match can hold.
            let hit = if meta.ctstate & HAS_CT == 0 {
                with_state
            } else {
                (meta.ctstatus & bits != 0) != inv
            };
            if !hit {
                return false;
            }
        }
        true
    }
}

#[inline]
fn port_test(p: &PortPred, port: u16, lists: &[(u16, u16)]) -> bool {
    let hit = if p.list_len == 0 {
        p.lo <= port && port <= p.hi
    } else {
        lists[p.list as usize..][..usize::from(p.list_len)]
            .iter()
            .any(|&(lo, hi)| lo <= port && port <= hi)
    };
    hit != p.invert
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_table_finds_hosts_and_prefixes_of_its_family_only() {
        let set = AddrSet {
            name: "s".into(),
            family: Family::V4,
            members: vec![
                "198.18.5.0/24".parse().unwrap(),
                "198.18.9.9/32".parse().unwrap(),
            ],
        };
        let t = SetTable::new(&set);
        assert!(t.contains(Family::V4, 0xc612_05fe));
        assert!(t.contains(Family::V4, 0xc612_0909));
        assert!(!t.contains(Family::V4, 0xc612_0908));
        assert!(!t.contains(Family::V6, 0xc612_0909));
        let v6 = AddrSet {
            name: "a".into(),
            family: Family::V6,
            members: vec!["::/0".parse().unwrap()],
        };
        assert!(SetTable::new(&v6).contains(Family::V6, 12345));
    }
}
