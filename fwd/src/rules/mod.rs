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

use crate::packet::meta::ctstate;
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

/// Which of a hook's tables one call runs. Linux runs PREROUTING's raw table (priority
/// -300) before the conntrack lookup (-200) and mangle and nat after it, so that NOTRACK
/// can exempt a packet from tracking; the stateful dataplane runs `Raw`, then
/// conntrack, then `AfterRaw`. `All` is both in one call (for callers without
/// connection tracking). At FORWARD and POSTROUTING, `Raw` runs nothing and `AfterRaw`
/// everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookPart {
    All,
    Raw,
    AfterRaw,
}

impl HookPart {
    /// Does this part run `table`'s chain of the hook?
    pub fn runs(self, table: Table) -> bool {
        match self {
            HookPart::All => true,
            HookPart::Raw => table == Table::Raw,
            HookPart::AfterRaw => table != Table::Raw,
        }
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
    /// `-m conntrack --ctstate` / `-m state --state`: [`ctstate`] bits; holds when
    /// `meta.ctstate & bits != 0` (SNAT and DNAT are xt_conntrack's virtual states,
    /// set beside the real one).
    pub ctstate: Option<Neg<u8>>,
    /// `-m conntrack --ctstatus`: [`crate::packet::meta::ctstatus`] bits; holds when
    /// `meta.ctstatus & bits != 0`. Like xt_conntrack, a packet without a connection
    /// (no NEW, ESTABLISHED or RELATED bit) never matches it, inverted or not, unless
    /// the rule also has a ctstate match (then ctstate alone decides).
    pub ctstatus: Option<Neg<u8>>,
}

/// The ctstate bits that mean "the packet has a connection" (xt_conntrack's `ct != NULL`).
pub const CT_TRACKED: u8 = ctstate::NEW | ctstate::ESTABLISHED | ctstate::RELATED;

/// The conntrack match of one rule as xt_conntrack's `conntrack_mt` decides it.
pub fn conntrack_matches(m: &Matches, meta_ctstate: u8, meta_ctstatus: u8) -> bool {
    if let Some(s) = &m.ctstate {
        if (meta_ctstate & s.value != 0) == s.invert {
            return false;
        }
    }
    if let Some(s) = &m.ctstatus {
        if meta_ctstate & CT_TRACKED == 0 {
            return m.ctstate.is_some();
        }
        if (meta_ctstatus & s.value != 0) == s.invert {
            return false;
        }
    }
    true
}

/// `-j REJECT --reject-with`: what the dataplane answers a rejected packet with. The
/// IPv4 types that have an ICMPv6 counterpart share a variant (the rule's family picks
/// the message), so a rule valid for both families can say `PortUnreachable`, the
/// default of both `ipt_REJECT` and `ip6t_REJECT`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RejectWith {
    /// icmp-net-unreachable / icmp6-no-route.
    NetUnreachable,
    /// icmp-host-unreachable / icmp6-addr-unreachable.
    HostUnreachable,
    /// icmp-port-unreachable / icmp6-port-unreachable.
    #[default]
    PortUnreachable,
    /// icmp-proto-unreachable (IPv4 only).
    ProtoUnreachable,
    /// icmp-net-prohibited (IPv4 only).
    NetProhibited,
    /// icmp-host-prohibited (IPv4 only).
    HostProhibited,
    /// icmp-admin-prohibited / icmp6-adm-prohibited.
    AdminProhibited,
    /// tcp-reset: a RST instead of an ICMP error (TCP rules only).
    TcpReset,
}

impl RejectWith {
    pub const ALL: [RejectWith; 8] = [
        RejectWith::NetUnreachable,
        RejectWith::HostUnreachable,
        RejectWith::PortUnreachable,
        RejectWith::ProtoUnreachable,
        RejectWith::NetProhibited,
        RejectWith::HostProhibited,
        RejectWith::AdminProhibited,
        RejectWith::TcpReset,
    ];

    /// The ICMP (`V4`) or ICMPv6 (`V6`) type and code to send (RFC 792, RFC 1812
    /// section 5.2.7.1, RFC 4443 section 3.1); None for tcp-reset and for the IPv4-only
    /// kinds asked for IPv6.
    pub fn icmp(self, family: Family) -> Option<(u8, u8)> {
        match family {
            Family::V4 => {
                let code = match self {
                    RejectWith::NetUnreachable => 0,
                    RejectWith::HostUnreachable => 1,
                    RejectWith::ProtoUnreachable => 2,
                    RejectWith::PortUnreachable => 3,
                    RejectWith::NetProhibited => 9,
                    RejectWith::HostProhibited => 10,
                    RejectWith::AdminProhibited => 13,
                    RejectWith::TcpReset => return None,
                };
                Some((3, code))
            }
            Family::V6 => {
                let code = match self {
                    RejectWith::NetUnreachable => 0,
                    RejectWith::AdminProhibited => 1,
                    RejectWith::HostUnreachable => 3,
                    RejectWith::PortUnreachable => 4,
                    _ => return None,
                };
                Some((1, code))
            }
        }
    }

    /// The family this kind is restricted to (the IPv4-only ICMP codes).
    pub fn family(self) -> Option<Family> {
        match self {
            RejectWith::ProtoUnreachable
            | RejectWith::NetProhibited
            | RejectWith::HostProhibited => Some(Family::V4),
            _ => None,
        }
    }

    /// The `--reject-with` name iptables (`V4`) or ip6tables (`V6`) prints.
    pub fn name(self, family: Family) -> &'static str {
        match (self, family) {
            (RejectWith::NetUnreachable, Family::V4) => "icmp-net-unreachable",
            (RejectWith::NetUnreachable, Family::V6) => "icmp6-no-route",
            (RejectWith::HostUnreachable, Family::V4) => "icmp-host-unreachable",
            (RejectWith::HostUnreachable, Family::V6) => "icmp6-addr-unreachable",
            (RejectWith::PortUnreachable, Family::V4) => "icmp-port-unreachable",
            (RejectWith::PortUnreachable, Family::V6) => "icmp6-port-unreachable",
            (RejectWith::ProtoUnreachable, _) => "icmp-proto-unreachable",
            (RejectWith::NetProhibited, _) => "icmp-net-prohibited",
            (RejectWith::HostProhibited, _) => "icmp-host-prohibited",
            (RejectWith::AdminProhibited, Family::V4) => "icmp-admin-prohibited",
            (RejectWith::AdminProhibited, Family::V6) => "icmp6-adm-prohibited",
            (RejectWith::TcpReset, _) => "tcp-reset",
        }
    }

    /// Reads a `--reject-with` name; also says which family's name it was (None:
    /// tcp-reset, valid in both).
    pub fn from_name(s: &str) -> Option<(RejectWith, Option<Family>)> {
        for r in RejectWith::ALL {
            for f in [Family::V4, Family::V6] {
                if r.name(f) == s {
                    let named = if r == RejectWith::TcpReset {
                        None
                    } else if s.starts_with("icmp6-") {
                        Some(Family::V6)
                    } else {
                        Some(Family::V4)
                    };
                    return Some((r, named));
                }
            }
        }
        None
    }
}

/// The address and port range of `-j DNAT --to-destination` / `-j SNAT --to-source`
/// (`ADDR[-ADDR][:PORT[-PORT]]`). `ports` None keeps the packet's port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NatRange {
    pub addr_min: IpAddr,
    pub addr_max: IpAddr,
    pub ports: Option<(u16, u16)>,
}

impl NatRange {
    pub fn family(&self) -> Family {
        match self.addr_min {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// Which rewrite a NAT target asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatKind {
    Dnat,
    Snat,
    /// SNAT to the egress port's address (the dataplane picks it).
    Masquerade,
}

/// One NAT rule's target as the dataplane reads it: `meta.nat = 1 + i` names
/// `nat_targets()[i]`. Addresses in `PacketMeta`'s form (IPv4 in the low 32 bits);
/// `addr_min == addr_max == 0` for MASQUERADE; `port_min == port_max == 0` keeps the
/// packet's port. `family` None: a MASQUERADE rule that serves both families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NatTarget {
    pub kind: NatKind,
    pub family: Option<Family>,
    pub addr_min: u128,
    pub addr_max: u128,
    pub port_min: u16,
    pub port_max: u16,
}

/// `IpAddr` in `PacketMeta`'s `u128` form.
pub fn addr_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// `-j LOG`: the prefix and syslog level the cold path formats with.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LogTarget {
    pub prefix: String,
    pub level: u8,
}

/// What a matching rule does.
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
    /// Like DROP, and the dataplane answers (filter table only).
    Reject(RejectWith),
    /// nat PREROUTING: rewrite the destination of the connection; ends the chain
    /// like ACCEPT. Only a connection's first packet traverses the nat table.
    Dnat(NatRange),
    /// nat POSTROUTING: rewrite the source; ends the chain like ACCEPT.
    Snat(NatRange),
    /// nat POSTROUTING: SNAT to the egress port's address; `ports` as `--to-ports`.
    Masquerade {
        ports: Option<(u16, u16)>,
    },
    /// raw table: `-j NOTRACK` / `-j CT --notrack`; the packet is UNTRACKED and the
    /// chain goes on.
    Notrack,
}

impl Target {
    /// The nat-table targets that record a binding (`meta.nat`).
    pub fn is_nat(&self) -> bool {
        matches!(
            self,
            Target::Dnat(_) | Target::Snat(_) | Target::Masquerade { .. }
        )
    }

    pub fn name(&self) -> &str {
        match self {
            Target::Accept => "ACCEPT",
            Target::Drop => "DROP",
            Target::Return => "RETURN",
            Target::Jump(c) | Target::Goto(c) => c,
            Target::Log(_) => "LOG",
            Target::Mark { .. } => "MARK",
            Target::Reject(_) => "REJECT",
            Target::Dnat(_) => "DNAT",
            Target::Snat(_) => "SNAT",
            Target::Masquerade { .. } => "MASQUERADE",
            Target::Notrack => "NOTRACK",
        }
    }
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
    /// A target that is not valid where it is or with the rule's matches; `field` is
    /// the TOML field at fault (`action`, `to`, `reject_with`).
    #[error("{place}: {what}")]
    Target {
        place: RulePlace,
        field: &'static str,
        what: String,
    },
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
    /// NAT rules' targets in rule id order, and those rules' ids (sorted): the
    /// numbering `meta.nat` uses, shared by the evaluator and the classifier.
    nat_targets: Vec<NatTarget>,
    nat_ids: Vec<u32>,
}

/// At most this many NAT rules (`meta.nat` is a u16 and 0 means none).
pub const NAT_RULES_MAX: usize = u16::MAX as usize;

impl Ruleset {
    pub fn new(mut sets: Vec<AddrSet>, mut chains: Vec<Chain>) -> Result<Ruleset, ModelError> {
        // A NAT address or an IPv4-only REJECT kind restricts the rule to its family,
        // as the table it would sit in does in iptables (ip_tables vs ip6_tables).
        for rule in chains.iter_mut().flat_map(|c| &mut c.rules) {
            let implied = match &rule.target {
                Some(Target::Dnat(r) | Target::Snat(r)) => Some(r.family()),
                Some(Target::Reject(r)) => r.family(),
                _ => None,
            };
            let m = &mut rule.matches;
            if m.family.is_none() && m.src.is_none() && m.dst.is_none() {
                m.family = implied;
            }
        }
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
        check_target_hooks(&chains)?;
        let mut first_id = Vec::with_capacity(chains.len());
        let mut next = 0u32;
        let (mut nat_targets, mut nat_ids) = (Vec::new(), Vec::new());
        for chain in &chains {
            first_id.push(next);
            for (ri, rule) in chain.rules.iter().enumerate() {
                if let Some(t) = nat_target(rule) {
                    if nat_targets.len() == NAT_RULES_MAX {
                        return Err(ModelError::Target {
                            place: RulePlace {
                                table: chain.table,
                                chain: chain.name.clone(),
                                rule: Some(ri),
                            },
                            field: "action",
                            what: format!("more than {NAT_RULES_MAX} NAT rules"),
                        });
                    }
                    nat_targets.push(t);
                    nat_ids.push(next + ri as u32);
                }
            }
            next += chain.rules.len() as u32 + u32::from(chain.policy.is_some());
        }
        Ok(Ruleset {
            sets,
            chains,
            first_id,
            counter_len: next as usize,
            nat_targets,
            nat_ids,
        })
    }

    /// The targets of the NAT rules, in rule id order: `meta.nat = 1 + i` names
    /// `nat_targets()[i]`.
    pub fn nat_targets(&self) -> &[NatTarget] {
        &self.nat_targets
    }

    /// The `meta.nat` value a match of rule `rule` of chain `chain` records: 1 + its
    /// index in `nat_targets()`, 0 when it is not a NAT rule.
    pub fn nat_slot(&self, chain: usize, rule: usize) -> u16 {
        let id = self.rule_id(chain, rule);
        match self.nat_ids.binary_search(&id) {
            Ok(i) => i as u16 + 1,
            Err(_) => 0,
        }
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

/// The `NatTarget` of a DNAT/SNAT/MASQUERADE rule.
fn nat_target(rule: &Rule) -> Option<NatTarget> {
    let (kind, range, ports) = match &rule.target {
        Some(Target::Dnat(r)) => (NatKind::Dnat, Some(r), r.ports),
        Some(Target::Snat(r)) => (NatKind::Snat, Some(r), r.ports),
        Some(Target::Masquerade { ports }) => (NatKind::Masquerade, None, *ports),
        _ => return None,
    };
    let (port_min, port_max) = ports.unwrap_or((0, 0));
    Some(NatTarget {
        kind,
        family: range.map(NatRange::family).or(rule.matches.family),
        addr_min: range.map_or(0, |r| addr_u128(r.addr_min)),
        addr_max: range.map_or(0, |r| addr_u128(r.addr_max)),
        port_min,
        port_max,
    })
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
        let target_err = |field: &'static str, what: String| ModelError::Target {
            place: place(),
            field,
            what,
        };
        let table_only = |table: Table, name: &str| {
            (chain.table != table).then(|| {
                target_err(
                    "action",
                    format!("{name} is only valid in the {} table", table.name()),
                )
            })
        };
        let refused = match &rule.target {
            Some(Target::Reject(_)) => table_only(Table::Filter, "REJECT"),
            Some(Target::Notrack) => table_only(Table::Raw, "NOTRACK"),
            Some(t) if t.is_nat() => table_only(Table::Nat, t.name()),
            _ => None,
        };
        if let Some(e) = refused {
            return Err(e);
        }
        let rule_family = families.first().copied();
        match &rule.target {
            Some(Target::Dnat(r) | Target::Snat(r)) => {
                let bad = if r.addr_min.is_ipv4() != r.addr_max.is_ipv4() {
                    Some("mixes IPv4 and IPv6 addresses".to_string())
                } else if addr_u128(r.addr_min) > addr_u128(r.addr_max) {
                    Some(format!(
                        "address range {}-{} is reversed",
                        r.addr_min, r.addr_max
                    ))
                } else if rule_family.is_some_and(|f| f != r.family()) {
                    Some(format!(
                        "{} is not of the family the rule matches",
                        r.addr_min
                    ))
                } else {
                    None
                };
                if let Some(what) = bad {
                    return Err(target_err("to", what));
                }
                if let Some((lo, hi)) = r.ports.filter(|(lo, hi)| lo > hi) {
                    return Err(target_err(
                        "to",
                        format!("port range {lo}-{hi} is reversed"),
                    ));
                }
            }
            Some(Target::Masquerade {
                ports: Some((lo, hi)),
            }) if lo > hi => {
                return Err(target_err(
                    "to_ports",
                    format!("port range {lo}-{hi} is reversed"),
                ));
            }
            Some(Target::Reject(r)) => {
                if let (Some(need), Some(f)) = (r.family(), rule_family) {
                    if need != f {
                        return Err(target_err(
                            "reject_with",
                            format!("{} exists only for IPv4", r.name(Family::V4)),
                        ));
                    }
                }
            }
            _ => {}
        }
        if let Some(s) = &m.ctstate {
            if s.value == 0 {
                return Err(invalid("ctstate: empty state list".into()));
            }
        }
        if let Some(s) = &m.ctstatus {
            if s.value == 0 {
                return Err(invalid("ctstatus: empty status list".into()));
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

/// Refuses NAT targets where iptables does (`xt_check_target`'s hook mask): DNAT only
/// in nat PREROUTING and SNAT/MASQUERADE only in nat POSTROUTING, counting the user
/// chains each reaches. A chain no built-in reaches is not checked, as in the kernel.
fn check_target_hooks(chains: &[Chain]) -> Result<(), ModelError> {
    let index = |table: Table, name: &str| {
        chains
            .iter()
            .position(|c| c.table == table && c.name == name)
    };
    // Bit h: chain reached from hook h's built-in chain.
    let mut reach = vec![0u8; chains.len()];
    for (i, c) in chains.iter().enumerate() {
        if c.table != Table::Nat {
            continue;
        }
        if let Some(h) = c.table.builtin_hook(&c.name) {
            let mut todo = vec![i];
            while let Some(at) = todo.pop() {
                if reach[at] & 1 << h.index() != 0 {
                    continue;
                }
                reach[at] |= 1 << h.index();
                for r in &chains[at].rules {
                    if let Some(Target::Jump(t) | Target::Goto(t)) = &r.target {
                        todo.extend(index(c.table, t));
                    }
                }
            }
        }
    }
    for (i, c) in chains.iter().enumerate() {
        for (ri, r) in c.rules.iter().enumerate() {
            let (allowed, hook) = match &r.target {
                Some(Target::Dnat(_)) => (1u8 << Hook::Prerouting.index(), "PREROUTING"),
                Some(Target::Snat(_) | Target::Masquerade { .. }) => {
                    (1u8 << Hook::Postrouting.index(), "POSTROUTING")
                }
                _ => continue,
            };
            if reach[i] & !allowed != 0 {
                let name = r.target.as_ref().map_or("", Target::name);
                return Err(ModelError::Target {
                    place: RulePlace {
                        table: c.table,
                        chain: c.name.clone(),
                        rule: Some(ri),
                    },
                    field: "action",
                    what: format!(
                        "{name} is only valid in nat {hook} and user chains only it reaches"
                    ),
                });
            }
        }
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
