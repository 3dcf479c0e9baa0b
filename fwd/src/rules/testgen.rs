//! Random rule sets and packets for the property tests (compiled == linear, import
//! round trip) and the kernel differential test. Values come from small pools near
//! prefix and range edges so that rules overlap and packets hit the borders.

use ipnet::IpNet;

use std::net::IpAddr;

use super::{
    AddrSet, Chain, Counter, Family, Hook, IcmpMatch, LogTarget, MarkMatch, Matches, NatRange, Neg,
    Policy, RejectWith, Rule, Ruleset, Table, Target, TcpFlags,
};
use crate::packet::meta::{ctstate, PacketMeta, NO_PORT};

/// xorshift64*: deterministic from a seed, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The port names the generated rules and packets use (`ghost0` in rules names none).
pub const PORTS: [&str; 4] = ["veth0", "veth1", "eth0", "eth1"];
const IFACES: [&str; 6] = ["veth0", "veth1", "eth0", "eth+", "veth+", "ghost0"];
const V4_NETS: [&str; 8] = [
    "198.18.0.0/15",
    "198.18.0.0/16",
    "198.19.0.0/16",
    "198.18.1.0/24",
    "198.18.1.128/25",
    "198.18.1.1/32",
    "198.19.2.0/24",
    "198.19.2.2/32",
];
const V6_NETS: [&str; 5] = [
    "2001:db8::/32",
    "2001:db8:1::/48",
    "2001:db8:1::1/128",
    "2001:db8:2::/64",
    "2001:db8::/33",
];
const EDGE_PORTS: [u16; 9] = [0, 1, 22, 53, 80, 443, 1024, 8080, 65535];

/// What the generator may produce.
#[derive(Clone, Copy)]
pub struct GenOptions {
    /// Only rules iptables-save can express for IPv4 (explicit family, no IPv6).
    pub iptables_v4: bool,
    /// Allow nat/raw chains (the kernel's nat table only sees a flow's first packet).
    pub all_tables: bool,
    pub max_rules_per_chain: u64,
    /// ctstate/ctstatus matches, REJECT, NAT targets, NOTRACK; packets get conntrack
    /// states.
    pub stateful: bool,
}

fn neg<T>(rng: &mut Rng, value: T) -> Neg<T> {
    Neg {
        invert: rng.chance(25),
        value,
    }
}

fn net(rng: &mut Rng, family: Family) -> IpNet {
    let s = match family {
        Family::V4 => *rng.pick(&V4_NETS),
        Family::V6 => *rng.pick(&V6_NETS),
    };
    s.parse().expect("pool prefixes parse")
}

fn ports(rng: &mut Rng) -> Vec<(u16, u16)> {
    let n = if rng.chance(70) { 1 } else { 1 + rng.below(4) };
    (0..n)
        .map(|_| {
            let a = *rng.pick(&EDGE_PORTS);
            let b = *rng.pick(&EDGE_PORTS);
            if rng.chance(50) {
                (a, a)
            } else {
                (a.min(b), a.max(b))
            }
        })
        .collect()
}

pub fn random_matches(rng: &mut Rng, opts: GenOptions, sets: &[AddrSet]) -> Matches {
    let family = if opts.iptables_v4 || rng.chance(50) {
        Family::V4
    } else {
        Family::V6
    };
    let mut m = Matches::default();
    if opts.iptables_v4 || rng.chance(15) {
        m.family = Some(family);
    }
    if rng.chance(20) {
        m.in_iface = Some({
            let v = rng.pick(&IFACES).to_string();
            neg(rng, v)
        });
    }
    if rng.chance(20) {
        m.out_iface = Some({
            let v = rng.pick(&IFACES).to_string();
            neg(rng, v)
        });
    }
    if rng.chance(40) {
        m.family = Some(family);
        m.src = Some({
            let v = net(rng, family);
            neg(rng, v)
        });
    }
    if rng.chance(40) {
        m.family = Some(family);
        m.dst = Some({
            let v = net(rng, family);
            neg(rng, v)
        });
    }
    let same_family: Vec<&AddrSet> = sets.iter().filter(|s| s.family == family).collect();
    if !same_family.is_empty() && rng.chance(15) {
        m.family = Some(family);
        m.src_set = Some({
            let v = rng.pick(&same_family).name.clone();
            neg(rng, v)
        });
    }
    if !same_family.is_empty() && rng.chance(10) {
        m.family = Some(family);
        m.dst_set = Some({
            let v = rng.pick(&same_family).name.clone();
            neg(rng, v)
        });
    }
    if rng.chance(60) {
        let icmp = if family == Family::V6 && !opts.iptables_v4 {
            58
        } else {
            1
        };
        let proto = *rng.pick(&[6, 6, 17, 17, icmp, 47]);
        if rng.chance(15) {
            m.proto = Some(Neg::not(proto));
        } else {
            m.proto = Some(Neg::is(proto));
            match proto {
                6 | 17 => {
                    if rng.chance(50) {
                        m.dport = Some({
                            let v = ports(rng);
                            neg(rng, v)
                        });
                    }
                    if rng.chance(30) {
                        m.sport = Some({
                            let v = ports(rng);
                            neg(rng, v)
                        });
                    }
                    if proto == 6 && rng.chance(25) {
                        let mask = rng.below(64) as u8;
                        let comp = mask & rng.below(64) as u8;
                        m.tcp_flags = Some({
                            let v = TcpFlags { mask, comp };
                            neg(rng, v)
                        });
                    }
                }
                1 | 58 if rng.chance(60) => {
                    let kind = *rng.pick(&[0u8, 3, 8, 11, 128, 129, super::ICMP_ANY]);
                    let code = if kind != super::ICMP_ANY && rng.chance(40) {
                        Some(rng.below(4) as u8)
                    } else {
                        None
                    };
                    m.icmp = Some({
                        let v = IcmpMatch { kind, code };
                        neg(rng, v)
                    });
                }
                _ => {}
            }
        }
    }
    if rng.chance(15) {
        m.mark = Some({
            let v = MarkMatch {
                value: rng.below(4) as u32,
                mask: *rng.pick(&[1u32, 3, 0xff, u32::MAX]),
            };
            neg(rng, v)
        });
    }
    if rng.chance(10) {
        let a = *rng.pick(&[0u16, 40, 60, 100, 1500]);
        let b = *rng.pick(&[40u16, 60, 100, 1500, 65535]);
        m.length = Some({
            let v = (a.min(b), a.max(b));
            neg(rng, v)
        });
    }
    if family == Family::V4 && rng.chance(8) {
        m.fragment = Some(rng.chance(50));
    }
    if rng.chance(5) {
        m.dst_local = Some(rng.chance(50));
    }
    if rng.chance(3) {
        m.src_local = Some(rng.chance(50));
    }
    if opts.stateful && rng.chance(25) {
        let bits = 1u8 << rng.below(7) | 1u8 << rng.below(7);
        m.ctstate = Some(neg(rng, bits));
    }
    if opts.stateful && rng.chance(10) {
        let bits = 1u8 << rng.below(4) | 1u8 << rng.below(4);
        m.ctstatus = Some(neg(rng, bits));
    }
    m
}

const V4_NAT: [&str; 3] = ["198.19.0.2", "198.19.0.9", "198.18.255.1"];
const V6_NAT: [&str; 2] = ["2001:db8:9::2", "2001:db8:9::9"];

fn nat_range(rng: &mut Rng, m: &Matches, opts: GenOptions) -> NatRange {
    let family = match m.family {
        Some(f) => f,
        None if opts.iptables_v4 || rng.chance(50) => Family::V4,
        None => Family::V6,
    };
    let pool: &[&str] = if family == Family::V4 {
        &V4_NAT
    } else {
        &V6_NAT
    };
    let a: IpAddr = rng.pick(pool).parse().expect("pool addresses parse");
    let b: IpAddr = rng.pick(pool).parse().expect("pool addresses parse");
    let (addr_min, addr_max) = if rng.chance(50) {
        (a, a)
    } else {
        (a.min(b), a.max(b))
    };
    NatRange {
        addr_min,
        addr_max,
        ports: has_port_proto(m).then(|| nat_ports(rng)).flatten(),
    }
}

fn has_port_proto(m: &Matches) -> bool {
    m.proto
        .as_ref()
        .is_some_and(|p| !p.invert && matches!(p.value, 6 | 17))
}

fn nat_ports(rng: &mut Rng) -> Option<(u16, u16)> {
    match rng.below(3) {
        0 => None,
        1 => Some((80, 80)),
        _ => Some((1024, 2048)),
    }
}

/// A stateful target valid in `table` for a rule with matches `m` (None: none fits).
fn stateful_target(rng: &mut Rng, table: Table, m: &Matches, opts: GenOptions) -> Option<Target> {
    match table {
        Table::Filter => {
            let mut kinds: Vec<RejectWith> = RejectWith::ALL
                .into_iter()
                .filter(|r| r.family().is_none() || r.family() == m.family)
                .filter(|r| *r != RejectWith::TcpReset)
                .collect();
            if m.proto.as_ref().is_some_and(|p| !p.invert && p.value == 6) {
                kinds.push(RejectWith::TcpReset);
            }
            Some(Target::Reject(*rng.pick(&kinds)))
        }
        Table::Nat => Some(match rng.below(3) {
            0 => Target::Dnat(nat_range(rng, m, opts)),
            1 => Target::Snat(nat_range(rng, m, opts)),
            _ => Target::Masquerade {
                ports: has_port_proto(m).then(|| nat_ports(rng)).flatten(),
            },
        }),
        Table::Raw => Some(Target::Notrack),
        Table::Mangle => None,
    }
}

/// Turns NAT targets that sit where iptables refuses them (DNAT reached from
/// POSTROUTING, SNAT/MASQUERADE from PREROUTING) into ACCEPT.
fn fix_nat_placement(chains: &mut [Chain]) {
    let nat: Vec<usize> = (0..chains.len())
        .filter(|&i| chains[i].table == Table::Nat)
        .collect();
    let mut reach = vec![0u8; chains.len()];
    for &root in &nat {
        let Some(h) = Table::Nat.builtin_hook(&chains[root].name) else {
            continue;
        };
        let mut todo = vec![root];
        while let Some(at) = todo.pop() {
            reach[at] |= 1 << h.index();
            for r in &chains[at].rules {
                if let Some(Target::Jump(t) | Target::Goto(t)) = &r.target {
                    todo.extend(nat.iter().copied().filter(|&i| &chains[i].name == t));
                }
            }
        }
    }
    for (i, c) in chains.iter_mut().enumerate() {
        for r in &mut c.rules {
            let allowed = match r.target {
                Some(Target::Dnat(_)) => 1 << Hook::Prerouting.index(),
                Some(Target::Snat(_) | Target::Masquerade { .. }) => 1 << Hook::Postrouting.index(),
                _ => continue,
            };
            if reach[i] & !allowed != 0 {
                r.target = Some(Target::Accept);
            }
        }
    }
}

/// A valid rule set: user chains only jump to chains with a higher number (no loops).
pub fn random_ruleset(rng: &mut Rng, opts: GenOptions) -> Ruleset {
    let mut sets = Vec::new();
    for i in 0..rng.below(3) {
        let family = if opts.iptables_v4 || i == 0 {
            Family::V4
        } else {
            Family::V6
        };
        let members = (0..1 + rng.below(3)).map(|_| net(rng, family)).collect();
        sets.push(AddrSet {
            name: format!("set{i}"),
            family,
            members,
        });
    }
    let mut builtins = vec![(Table::Filter, "FORWARD"), (Table::Mangle, "FORWARD")];
    builtins.push((Table::Mangle, "PREROUTING"));
    builtins.push((Table::Mangle, "POSTROUTING"));
    if opts.all_tables {
        builtins.extend([
            (Table::Raw, "PREROUTING"),
            (Table::Nat, "PREROUTING"),
            (Table::Nat, "POSTROUTING"),
        ]);
    }
    let mut chains = Vec::new();
    for table in [Table::Raw, Table::Mangle, Table::Nat, Table::Filter] {
        let users = if builtins.iter().any(|(t, _)| *t == table) {
            rng.below(4)
        } else {
            0
        };
        let names: Vec<String> = builtins
            .iter()
            .filter(|(t, _)| *t == table)
            .map(|(_, n)| n.to_string())
            .chain((0..users).map(|i| format!("U{i}")))
            .collect();
        for (ci, name) in names.iter().enumerate() {
            let builtin = table.builtin_hook(name).is_some();
            let callees: Vec<&String> = names[ci + 1..]
                .iter()
                .filter(|n| table.builtin_hook(n).is_none())
                .collect();
            let rules = (0..rng.below(opts.max_rules_per_chain + 1))
                .map(|_| {
                    let matches = random_matches(rng, opts, &sets);
                    let stateful = if opts.stateful && rng.chance(25) {
                        stateful_target(rng, table, &matches, opts)
                    } else {
                        None
                    };
                    let target = stateful.or_else(|| match rng.below(16) {
                        0..=2 => Some(Target::Accept),
                        3..=5 => Some(Target::Drop),
                        6 => Some(Target::Return),
                        7..=8 => None,
                        9 => Some(Target::Log(LogTarget {
                            prefix: "fwd \"t\" ".into(),
                            level: 4,
                        })),
                        10 => Some(Target::Mark {
                            xor: rng.below(4) as u32,
                            mask: *rng.pick(&[3u32, u32::MAX]),
                        }),
                        11..=13 if !callees.is_empty() => {
                            Some(Target::Jump(rng.pick(&callees).to_string()))
                        }
                        14..=15 if !callees.is_empty() => {
                            Some(Target::Goto(rng.pick(&callees).to_string()))
                        }
                        _ => Some(Target::Accept),
                    });
                    let comment = rng.chance(10).then(|| "a \"quoted\" comment".to_string());
                    Rule {
                        matches,
                        target,
                        comment,
                        counters: Counter::default(),
                    }
                })
                .collect();
            let policy = builtin.then(|| {
                if rng.chance(50) {
                    Policy::Accept
                } else {
                    Policy::Drop
                }
            });
            chains.push(Chain {
                table,
                name: name.clone(),
                policy,
                policy_counters: Counter::default(),
                rules,
            });
        }
    }
    fix_nat_placement(&mut chains);
    Ruleset::new(sets, chains).expect("generated rule sets are valid")
}

/// Addresses on and around the pool prefixes' edges.
fn addr(rng: &mut Rng, family: Family) -> u128 {
    let n = net(rng, family);
    let (lo, hi) = match n {
        IpNet::V4(n) => (
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    };
    match rng.below(4) {
        0 => lo,
        1 => hi,
        2 => hi.wrapping_add(1),
        _ => lo + u128::from(rng.next_u64()) % (hi - lo).max(1),
    }
}

/// Conntrack states a packet can carry (SNAT/DNAT only beside a real state).
const CTSTATES: [u8; 11] = [
    0,
    ctstate::NEW,
    ctstate::NEW,
    ctstate::ESTABLISHED,
    ctstate::ESTABLISHED,
    ctstate::RELATED,
    ctstate::INVALID,
    ctstate::UNTRACKED,
    ctstate::NEW | ctstate::DNAT,
    ctstate::ESTABLISHED | ctstate::SNAT,
    ctstate::ESTABLISHED | ctstate::SNAT | ctstate::DNAT,
];

pub fn random_packet(rng: &mut Rng, opts: GenOptions) -> PacketMeta {
    let family = if opts.iptables_v4 || rng.chance(50) {
        Family::V4
    } else {
        Family::V6
    };
    let proto = *rng.pick(&[6u8, 6, 17, 17, 1, 58, 47]);
    let has_ports = matches!(proto, 6 | 17);
    let fragment = family == Family::V4 && rng.chance(10);
    let port = |rng: &mut Rng| {
        if rng.chance(80) {
            *rng.pick(&EDGE_PORTS)
        } else {
            rng.next_u64() as u16
        }
    };
    let ifport = |rng: &mut Rng| {
        if rng.chance(10) {
            NO_PORT
        } else {
            rng.below(PORTS.len() as u64) as u16
        }
    };
    let mask = if family == Family::V4 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    PacketMeta {
        family,
        src: addr(rng, family) & mask,
        dst: addr(rng, family) & mask,
        proto,
        sport: if has_ports { port(rng) } else { 0 },
        dport: if has_ports { port(rng) } else { 0 },
        tcp_flags: if proto == 6 {
            rng.next_u64() as u8 & 0x3f
        } else {
            0
        },
        icmp_type: if matches!(proto, 1 | 58) {
            *rng.pick(&[0u8, 3, 8, 11, 128, 129])
        } else {
            0
        },
        icmp_code: if matches!(proto, 1 | 58) {
            rng.below(4) as u8
        } else {
            0
        },
        ip_len: *rng.pick(&[40u16, 60, 61, 100, 1500]),
        fragment,
        is_fragmented: fragment,
        l4_valid: !fragment && rng.chance(95),
        in_port: ifport(rng),
        out_port: ifport(rng),
        mark: rng.below(4) as u32,
        ctstate: if opts.stateful {
            *rng.pick(&CTSTATES)
        } else {
            0
        },
        ctstatus: if opts.stateful {
            // NAT_DONE: a packet whose nat binding is made (the nat table's guard).
            rng.below(16) as u8
                | if rng.chance(25) {
                    crate::packet::meta::ctstatus::NAT_DONE
                } else {
                    0
                }
        } else {
            0
        },
        ..PacketMeta::default()
    }
}
