//! The rule model: tables, chains, rules, matches and targets with iptables' meaning
//! (DESIGN.md section 3). Built by `config` (TOML) or `iptables` (iptables-save import),
//! judged packet by packet by `eval` (the oracle) and compiled by `crate::classify`.

pub mod cli;
pub mod config;
pub mod counters;
pub mod eval;
pub mod iptables;
pub mod names;
pub mod testgen;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

pub use crate::packet::meta::Family;
pub use counters::{Counter, LogEvent, RuleCounters, Verdict};

/// A netfilter table. The declaration order is Linux's hook priority order
/// (raw -300, mangle -150, nat DNAT -100, filter 0; POSTROUTING: mangle then nat SNAT 100).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Raw,
    Mangle,
    Nat,
    Filter,
}

impl Table {
    pub const ALL: [Table; 4] = [Table::Raw, Table::Mangle, Table::Nat, Table::Filter];

    pub fn name(self) -> &'static str {
        match self {
            Table::Raw => "raw",
            Table::Mangle => "mangle",
            Table::Nat => "nat",
            Table::Filter => "filter",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The built-in chains of this table that fwd runs (INPUT and OUTPUT stay with the kernel).
    pub fn hooks(self) -> &'static [Hook] {
        match self {
            Table::Raw => &[Hook::Prerouting],
            Table::Mangle => &[Hook::Prerouting, Hook::Forward, Hook::Postrouting],
            Table::Nat => &[Hook::Prerouting, Hook::Postrouting],
            Table::Filter => &[Hook::Forward],
        }
    }

    /// The hook whose built-in chain is called `name` in this table, if any.
    pub fn builtin_hook(self, name: &str) -> Option<Hook> {
        self.hooks()
            .iter()
            .copied()
            .find(|h| h.chain_name() == name)
    }
}

/// Where in the forwarding path a packet is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    Prerouting,
    Forward,
    Postrouting,
}

impl Hook {
    pub const ALL: [Hook; 3] = [Hook::Prerouting, Hook::Forward, Hook::Postrouting];

    pub fn chain_name(self) -> &'static str {
        match self {
            Hook::Prerouting => "PREROUTING",
            Hook::Forward => "FORWARD",
            Hook::Postrouting => "POSTROUTING",
        }
    }

    /// Tables traversed at this hook, in Linux priority order.
    pub fn tables(self) -> &'static [Table] {
        match self {
            Hook::Prerouting => &[Table::Raw, Table::Mangle, Table::Nat],
            Hook::Forward => &[Table::Mangle, Table::Filter],
            Hook::Postrouting => &[Table::Mangle, Table::Nat],
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Built-in chain policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    Accept,
    Drop,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Accept => "ACCEPT",
            Policy::Drop => "DROP",
        }
    }
}

/// A match with iptables' `!` in front of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Neg<T> {
    pub invert: bool,
    pub value: T,
}

impl<T> Neg<T> {
    pub fn is(value: T) -> Self {
        Neg {
            invert: false,
            value,
        }
    }
    pub fn not(value: T) -> Self {
        Neg {
            invert: true,
            value,
        }
    }
}

/// Port ranges (inclusive). One range is `--sport a:b`; several are `-m multiport`.
pub type Ports = Vec<(u16, u16)>;

/// At most this many ports in a multiport match, a range counting as two (xt_multiport).
pub const MULTIPORT_MAX: usize = 15;

/// `--tcp-flags mask comp`: matches when `flags & mask == comp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpFlags {
    pub mask: u8,
    pub comp: u8,
}

/// `--syn`: SYN set, RST/ACK/FIN clear.
pub const SYN_FLAGS: TcpFlags = TcpFlags {
    mask: 0x17,
    comp: 0x02,
};

/// `--icmp-type` / `--icmpv6-type`: type 255 (`any`) matches every type; `code` None
/// matches every code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IcmpMatch {
    pub kind: u8,
    pub code: Option<u8>,
}

pub const ICMP_ANY: u8 = 255;

/// `-m mark --mark value/mask`: matches when `mark & mask == value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MarkMatch {
    pub value: u32,
    pub mask: u32,
}

/// What a rule requires of a packet. Every `Some` must hold (a conjunction).
///
/// Port, TCP-flag and ICMP matches never match a packet without a valid transport
/// header (`l4_valid` false: non-first fragments, truncated headers), inverted or not,
/// like the kernel's `fragoff != 0` early return in xt_tcpudp / xt_multiport.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Matches {
    /// Restricts the rule to one family (imported rules carry it: an iptables rule only
    /// sees IPv4). Addresses and sets imply it too.
    pub family: Option<Family>,
    /// Interface name; a trailing `+` matches every name with that prefix.
    pub in_iface: Option<Neg<String>>,
    pub out_iface: Option<Neg<String>>,
    pub src: Option<Neg<IpNet>>,
    pub dst: Option<Neg<IpNet>>,
    /// Name of an address set (`-m set --match-set NAME src`).
    pub src_set: Option<Neg<String>>,
    pub dst_set: Option<Neg<String>>,
    pub proto: Option<Neg<u8>>,
    pub sport: Option<Neg<Ports>>,
    pub dport: Option<Neg<Ports>>,
    pub tcp_flags: Option<Neg<TcpFlags>>,
    pub icmp: Option<Neg<IcmpMatch>>,
    pub mark: Option<Neg<MarkMatch>>,
    /// `-m length --length lo:hi` on the IP length.
    pub length: Option<Neg<(u16, u16)>>,
    /// `-f` (Some(true)): non-first fragments; `! -f` (Some(false)): everything else.
    pub fragment: Option<bool>,
    /// `-m addrtype --src-type LOCAL` (Some(true)) / `! --src-type LOCAL` (Some(false)).
    pub src_local: Option<bool>,
    pub dst_local: Option<bool>,
}

/// `-j LOG`: the prefix and syslog level the cold path formats with.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LogTarget {
    pub prefix: String,
    pub level: u8,
}

/// What a matching rule does. Reserved for the stateful issue (not accepted by any
/// front end yet): REJECT, DNAT, SNAT, MASQUERADE, NOTRACK — they become variants here
/// and `Verdict` variants in `counters`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    Accept,
    Drop,
    Return,
    Jump(String),
    Goto(String),
    Log(LogTarget),
    /// `-j MARK --set-xmark xor/mask`: `mark = (mark & !mask) ^ xor` (xt_MARK).
    Mark {
        xor: u32,
        mask: u32,
    },
}

/// One rule. `target` None is a rule that only counts (iptables without `-j`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rule {
    pub matches: Matches,
    pub target: Option<Target>,
    pub comment: Option<String>,
    /// Counters carried by an import (`-c p b`); not written to TOML.
    pub counters: Counter,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Chain {
    pub table: Table,
    pub name: String,
    /// Some for built-in chains (default ACCEPT), None for user chains.
    pub policy: Option<Policy>,
    pub policy_counters: Counter,
    pub rules: Vec<Rule>,
}

impl Chain {
    pub fn is_builtin(&self) -> bool {
        self.table.builtin_hook(&self.name).is_some()
    }
}

/// An ipset-like named set of prefixes of one family.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AddrSet {
    pub name: String,
    pub family: Family,
    pub members: Vec<IpNet>,
}

/// What the compiler and the evaluator need to know about the box: the port names
/// (index = port index, as in the config's `ports`) and its own addresses
/// (`-m addrtype LOCAL`).
#[derive(Clone, Debug, Default)]
pub struct Env {
    pub ports: Vec<String>,
    pub local_addrs: Vec<IpAddr>,
}

/// Where a model error sits, so front ends can point at a file line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulePlace {
    pub table: Table,
    pub chain: String,
    pub rule: Option<usize>,
}

impl fmt::Display for RulePlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.table.name(), self.chain)?;
        if let Some(i) = self.rule {
            write!(f, ".rules[{i}]")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("{place}: chain {chain:?} is defined twice")]
    DuplicateChain { place: RulePlace, chain: String },
    #[error("set {0:?} is defined twice")]
    DuplicateSet(String),
    #[error("{place}: {what}")]
    Invalid { place: RulePlace, what: String },
    #[error("{place}: jump to unknown chain {target:?} in table {}", place.table.name())]
    UnknownChain { place: RulePlace, target: String },
    #[error("{place}: unknown set {set:?}")]
    UnknownSet { place: RulePlace, set: String },
    #[error("table {}: chain loop {}", table.name(), chains.join(" -> "))]
    Loop { table: Table, chains: Vec<String> },
}

/// A validated rule set: every jump lands on a user chain of the same table, no loops,
/// sets exist, families agree. Chains are kept in a canonical order (table, built-ins in
/// hook order, then user chains by name) so that two front ends produce equal models.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    sets: Vec<AddrSet>,
    chains: Vec<Chain>,
    /// Counter id of each chain's first rule; a built-in chain's policy id follows its
    /// last rule.
    first_id: Vec<u32>,
    counter_len: usize,
}

impl Ruleset {
    pub fn new(mut sets: Vec<AddrSet>, mut chains: Vec<Chain>) -> Result<Ruleset, ModelError> {
        sets.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = sets.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(ModelError::DuplicateSet(w[0].name.clone()));
        }
        chains.sort_by_key(chain_order);
        if let Some(w) = chains
            .windows(2)
            .find(|w| w[0].table == w[1].table && w[0].name == w[1].name)
        {
            return Err(ModelError::DuplicateChain {
                place: RulePlace {
                    table: w[1].table,
                    chain: w[1].name.clone(),
                    rule: None,
                },
                chain: w[1].name.clone(),
            });
        }
        for chain in &mut chains {
            if chain.is_builtin() {
                chain.policy.get_or_insert(Policy::Accept);
            } else if chain.policy.is_some() {
                return Err(ModelError::Invalid {
                    place: RulePlace {
                        table: chain.table,
                        chain: chain.name.clone(),
                        rule: None,
                    },
                    what: "a user chain has no policy".into(),
                });
            }
        }
        let set_family: HashMap<&str, Family> =
            sets.iter().map(|s| (s.name.as_str(), s.family)).collect();
        for set in &sets {
            if let Some(m) = set.members.iter().find(|m| net_family(m) != set.family) {
                return Err(ModelError::Invalid {
                    place: RulePlace {
                        table: Table::Filter,
                        chain: String::new(),
                        rule: None,
                    },
                    what: format!("set {:?}: member {m} is not {:?}", set.name, set.family),
                });
            }
        }
        for chain in &chains {
            validate_chain(chain, &chains, &set_family)?;
        }
        check_loops(&chains)?;
        let mut first_id = Vec::with_capacity(chains.len());
        let mut next = 0u32;
        for chain in &chains {
            first_id.push(next);
            next += chain.rules.len() as u32 + u32::from(chain.policy.is_some());
        }
        Ok(Ruleset {
            sets,
            chains,
            first_id,
            counter_len: next as usize,
        })
    }

    pub fn sets(&self) -> &[AddrSet] {
        &self.sets
    }

    pub fn chains(&self) -> &[Chain] {
        &self.chains
    }

    pub fn set_index(&self, name: &str) -> Option<usize> {
        self.sets
            .binary_search_by(|s| s.name.as_str().cmp(name))
            .ok()
    }

    pub fn chain_index(&self, table: Table, name: &str) -> Option<usize> {
        self.chains
            .iter()
            .position(|c| c.table == table && c.name == name)
    }

    pub fn rule_id(&self, chain: usize, rule: usize) -> u32 {
        self.first_id[chain] + rule as u32
    }

    pub fn policy_id(&self, chain: usize) -> Option<u32> {
        let c = &self.chains[chain];
        c.policy
            .map(|_| self.first_id[chain] + c.rules.len() as u32)
    }

    /// Length of a `RuleCounters` for this rule set (rules plus policies).
    pub fn counter_len(&self) -> usize {
        self.counter_len
    }

    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }

    /// Sums several workers' counters (plus counters carried in from an import) into
    /// one array indexed by counter id.
    pub fn sum_counters(&self, workers: &[&RuleCounters]) -> Vec<Counter> {
        let mut total = vec![Counter::default(); self.counter_len];
        for (ci, chain) in self.chains.iter().enumerate() {
            for (ri, rule) in chain.rules.iter().enumerate() {
                total[self.rule_id(ci, ri) as usize] = rule.counters;
            }
            if let Some(id) = self.policy_id(ci) {
                total[id as usize] = chain.policy_counters;
            }
        }
        for w in workers {
            for (t, c) in total.iter_mut().zip(w.counts()) {
                t.packets += c.packets;
                t.bytes += c.bytes;
            }
        }
        total
    }

    /// The family a rule is restricted to: explicit, or implied by its addresses/sets.
    /// Validation guarantees these agree.
    pub fn rule_family(&self, m: &Matches) -> Option<Family> {
        m.family
            .or(m.src.as_ref().map(|n| net_family(&n.value)))
            .or(m.dst.as_ref().map(|n| net_family(&n.value)))
            .or(m.src_set.as_ref().and_then(|s| self.set_family(&s.value)))
            .or(m.dst_set.as_ref().and_then(|s| self.set_family(&s.value)))
    }

    fn set_family(&self, name: &str) -> Option<Family> {
        self.set_index(name).map(|i| self.sets[i].family)
    }
}

fn chain_order(c: &Chain) -> (Table, usize, String) {
    let builtin = c
        .table
        .hooks()
        .iter()
        .position(|h| h.chain_name() == c.name);
    (c.table, builtin.unwrap_or(usize::MAX), c.name.clone())
}

pub fn net_family(n: &IpNet) -> Family {
    match n {
        IpNet::V4(_) => Family::V4,
        IpNet::V6(_) => Family::V6,
    }
}

fn validate_chain(
    chain: &Chain,
    chains: &[Chain],
    set_family: &HashMap<&str, Family>,
) -> Result<(), ModelError> {
    if chain.name == "INPUT" || chain.name == "OUTPUT" {
        return Err(ModelError::Invalid {
            place: RulePlace { table: chain.table, chain: chain.name.clone(), rule: None },
            what: "INPUT and OUTPUT belong to the kernel; fwd runs PREROUTING, FORWARD and POSTROUTING".into(),
        });
    }
    for (i, rule) in chain.rules.iter().enumerate() {
        let place = || RulePlace {
            table: chain.table,
            chain: chain.name.clone(),
            rule: Some(i),
        };
        let invalid = |what: String| ModelError::Invalid {
            place: place(),
            what,
        };
        let m = &rule.matches;
        let mut families = Vec::new();
        families.extend(m.family);
        families.extend(m.src.as_ref().map(|n| net_family(&n.value)));
        families.extend(m.dst.as_ref().map(|n| net_family(&n.value)));
        for s in [&m.src_set, &m.dst_set].into_iter().flatten() {
            match set_family.get(s.value.as_str()) {
                Some(f) => families.push(*f),
                None => {
                    return Err(ModelError::UnknownSet {
                        place: place(),
                        set: s.value.clone(),
                    })
                }
            }
        }
        if families.windows(2).any(|w| w[0] != w[1]) {
            return Err(invalid("mixes IPv4 and IPv6 addresses or sets".into()));
        }
        for (name, ports) in [("sport", &m.sport), ("dport", &m.dport)] {
            if let Some(p) = ports {
                if p.value.is_empty() {
                    return Err(invalid(format!("{name}: empty port list")));
                }
                if let Some((lo, hi)) = p.value.iter().find(|(lo, hi)| lo > hi) {
                    return Err(invalid(format!("{name}: range {lo}:{hi} is reversed")));
                }
                let weight: usize = p
                    .value
                    .iter()
                    .map(|(lo, hi)| if lo == hi { 1 } else { 2 })
                    .sum();
                if p.value.len() > 1 && weight > MULTIPORT_MAX {
                    return Err(invalid(format!(
                        "{name}: more than {MULTIPORT_MAX} ports (a range counts as two), like -m multiport"
                    )));
                }
            }
        }
        if let Some(f) = &m.tcp_flags {
            if (f.value.mask | f.value.comp) & !0x3f != 0 {
                return Err(invalid(
                    "tcp_flags: only FIN,SYN,RST,PSH,ACK,URG, like iptables".into(),
                ));
            }
        }
        if let Some(l) = &m.length {
            if l.value.0 > l.value.1 {
                return Err(invalid(format!(
                    "length: range {}:{} is reversed",
                    l.value.0, l.value.1
                )));
            }
        }
        if let Some(Target::Jump(t) | Target::Goto(t)) = &rule.target {
            match chains
                .iter()
                .find(|c| c.table == chain.table && &c.name == t)
            {
                None => {
                    return Err(ModelError::UnknownChain {
                        place: place(),
                        target: t.clone(),
                    })
                }
                Some(c) if c.is_builtin() => {
                    return Err(invalid(format!("cannot jump to built-in chain {t}")));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// Refuses jump/goto cycles, naming the chains of the first cycle found (iptables-restore
/// refuses them too: "Too many levels of symbolic links").
fn check_loops(chains: &[Chain]) -> Result<(), ModelError> {
    fn visit(
        chains: &[Chain],
        at: usize,
        path: &mut Vec<usize>,
        done: &mut HashSet<usize>,
    ) -> Result<(), ModelError> {
        if done.contains(&at) {
            return Ok(());
        }
        if let Some(pos) = path.iter().position(|&p| p == at) {
            let mut names: Vec<String> = path[pos..]
                .iter()
                .map(|&i| chains[i].name.clone())
                .collect();
            names.push(chains[at].name.clone());
            return Err(ModelError::Loop {
                table: chains[at].table,
                chains: names,
            });
        }
        path.push(at);
        for rule in &chains[at].rules {
            if let Some(Target::Jump(t) | Target::Goto(t)) = &rule.target {
                let next = chains
                    .iter()
                    .position(|c| c.table == chains[at].table && &c.name == t)
                    .expect("validated: jump targets exist");
                visit(chains, next, path, done)?;
            }
        }
        path.pop();
        done.insert(at);
        Ok(())
    }
    let mut done = HashSet::new();
    for i in 0..chains.len() {
        visit(chains, i, &mut Vec::new(), &mut done)?;
    }
    Ok(())
}

/// Does interface pattern `pat` (`eth0`, `eth+`, `+`) name interface `name`?
pub fn iface_matches(pat: &str, name: &str) -> bool {
    match pat.strip_suffix('+') {
        Some(prefix) => name.starts_with(prefix),
        None => pat == name,
    }
}

/// `src`/`dst` of a packet as an address in `family`'s space, for prefix tests.
pub fn net_contains(net: &IpNet, family: Family, addr: u128) -> bool {
    match (net, family) {
        (IpNet::V4(n), Family::V4) => {
            let bits = n.prefix_len();
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            (addr as u32) & mask == u32::from(n.network())
        }
        (IpNet::V6(n), Family::V6) => {
            let bits = n.prefix_len();
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            addr & mask == u128::from(n.network())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(table: Table, name: &str, policy: Option<Policy>, rules: Vec<Rule>) -> Chain {
        Chain {
            table,
            name: name.into(),
            policy,
            policy_counters: Counter::default(),
            rules,
        }
    }

    fn jump(t: &str) -> Rule {
        Rule {
            target: Some(Target::Jump(t.into())),
            ..Rule::default()
        }
    }

    #[test]
    fn loop_is_refused_with_chain_names() {
        let err = Ruleset::new(
            vec![],
            vec![
                chain(
                    Table::Filter,
                    "FORWARD",
                    Some(Policy::Drop),
                    vec![jump("A")],
                ),
                chain(Table::Filter, "A", None, vec![jump("B")]),
                chain(Table::Filter, "B", None, vec![jump("A")]),
            ],
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "table filter: chain loop A -> B -> A");
    }

    #[test]
    fn ids_cover_rules_and_policies_in_canonical_order() {
        let rs = Ruleset::new(
            vec![],
            vec![
                chain(Table::Filter, "U", None, vec![Rule::default()]),
                chain(
                    Table::Filter,
                    "FORWARD",
                    None,
                    vec![Rule::default(), jump("U")],
                ),
                chain(Table::Mangle, "PREROUTING", None, vec![]),
            ],
        )
        .unwrap();
        let names: Vec<_> = rs
            .chains()
            .iter()
            .map(|c| (c.table, c.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                (Table::Mangle, "PREROUTING"),
                (Table::Filter, "FORWARD"),
                (Table::Filter, "U")
            ]
        );
        assert_eq!(rs.policy_id(0), Some(0));
        assert_eq!(
            (rs.rule_id(1, 0), rs.rule_id(1, 1), rs.policy_id(1)),
            (1, 2, Some(3))
        );
        assert_eq!((rs.rule_id(2, 0), rs.policy_id(2)), (4, None));
        assert_eq!(rs.counter_len(), 5);
        assert_eq!(rs.chains()[1].policy, Some(Policy::Accept));
    }

    #[test]
    fn unknown_jump_target_and_builtin_target_are_refused() {
        let err = Ruleset::new(
            vec![],
            vec![chain(Table::Filter, "FORWARD", None, vec![jump("X")])],
        );
        assert!(matches!(err, Err(ModelError::UnknownChain { .. })));
        let err = Ruleset::new(
            vec![],
            vec![
                chain(Table::Filter, "FORWARD", None, vec![]),
                chain(Table::Mangle, "FORWARD", None, vec![jump("FORWARD")]),
            ],
        );
        assert!(matches!(err, Err(ModelError::Invalid { .. })), "{err:?}");
    }

    #[test]
    fn prefix_tests_respect_family() {
        let n: IpNet = "198.18.0.0/15".parse().unwrap();
        assert!(net_contains(&n, Family::V4, 0xc613_ffff));
        assert!(!net_contains(&n, Family::V4, 0xc614_0000));
        assert!(!net_contains(&n, Family::V6, 0xc613_0000));
        let all: IpNet = "::/0".parse().unwrap();
        assert!(net_contains(&all, Family::V6, 5));
        assert!(!net_contains(&all, Family::V4, 5));
    }

    #[test]
    fn iface_wildcards() {
        assert!(iface_matches("eth+", "eth0"));
        assert!(iface_matches("+", "veth1"));
        assert!(!iface_matches("eth0", "eth01"));
    }
}
