//! The reference evaluator: walks the model rule by rule exactly as `ipt_do_table` does
//! (jump pushes a return point, goto does not, RETURN or the end of a user chain pops,
//! an empty stack falls to the built-in chain's policy). Slow and obvious on purpose: it
//! is the oracle the compiled classifier is tested against.

use super::{
    conntrack_matches, iface_matches, net_contains, Env, Hook, HookPart, Matches, Policy,
    RuleCounters, Ruleset, Table, Target, Verdict,
};
use crate::packet::meta::{ctstate, ctstatus, Family, PacketMeta, NO_PORT};

pub struct LinearEvaluator<'a> {
    rs: &'a Ruleset,
    env: &'a Env,
    /// Per chain, per rule: the family the rule is restricted to.
    families: Vec<Vec<Option<Family>>>,
}

/// Bytes a hit adds: the IP length as iptables counts it, or the frame length when the
/// parser could not read one.
pub fn hit_bytes(meta: &PacketMeta, frame_len: u32) -> u64 {
    if meta.ip_len != 0 {
        u64::from(meta.ip_len)
    } else {
        u64::from(frame_len)
    }
}

impl<'a> LinearEvaluator<'a> {
    pub fn new(rs: &'a Ruleset, env: &'a Env) -> Self {
        let families = rs
            .chains()
            .iter()
            .map(|c| c.rules.iter().map(|r| rs.rule_family(&r.matches)).collect())
            .collect();
        LinearEvaluator { rs, env, families }
    }

    /// Runs every table of `hook` in priority order. ACCEPT (and a NAT target) ends
    /// one table, DROP and REJECT all.
    pub fn run_hook(
        &self,
        hook: Hook,
        meta: &mut PacketMeta,
        frame_len: u32,
        counters: &mut RuleCounters,
    ) -> Verdict {
        self.run_hook_traced(hook, meta, frame_len, counters, &mut Vec::new())
    }

    /// `run_hook` restricted to the tables of `part` (raw before conntrack, the rest after).
    pub fn run_hook_part(
        &self,
        hook: Hook,
        part: HookPart,
        meta: &mut PacketMeta,
        frame_len: u32,
        counters: &mut RuleCounters,
    ) -> Verdict {
        self.run_part_traced(hook, part, meta, frame_len, counters, &mut Vec::new())
    }

    /// `run_hook` that also appends every counter id hit to `hits`.
    pub fn run_hook_traced(
        &self,
        hook: Hook,
        meta: &mut PacketMeta,
        frame_len: u32,
        counters: &mut RuleCounters,
        hits: &mut Vec<u32>,
    ) -> Verdict {
        self.run_part_traced(hook, HookPart::All, meta, frame_len, counters, hits)
    }

    fn run_part_traced(
        &self,
        hook: Hook,
        part: HookPart,
        meta: &mut PacketMeta,
        frame_len: u32,
        counters: &mut RuleCounters,
        hits: &mut Vec<u32>,
    ) -> Verdict {
        for &table in hook.tables() {
            if !part.runs(table) {
                continue;
            }
            // The nat table only sees a connection's first packet (nf_nat_inet_fn
            // looks the binding up for the others, NEW ones included: a retransmitted
            // SYN, a second datagram before the reply); untracked packets never.
            if table == Table::Nat
                && (meta.ctstate & ctstate::NEW == 0 || meta.ctstatus & ctstatus::NAT_DONE != 0)
            {
                continue;
            }
            if let Some(ci) = self.rs.chain_index(table, hook.chain_name()) {
                match self.run_chain(ci, meta, frame_len, counters, hits) {
                    Verdict::Accept => {}
                    end => return end,
                }
            }
        }
        Verdict::Accept
    }

    fn run_chain(
        &self,
        builtin: usize,
        meta: &mut PacketMeta,
        frame_len: u32,
        counters: &mut RuleCounters,
        hits: &mut Vec<u32>,
    ) -> Verdict {
        let bytes = hit_bytes(meta, frame_len);
        let mut stack: Vec<(usize, usize)> = Vec::new();
        let (mut chain, mut at) = (builtin, 0);
        loop {
            let rules = &self.rs.chains()[chain].rules;
            if at == rules.len() {
                match stack.pop() {
                    Some(frame) if chain != builtin => (chain, at) = frame,
                    _ => return self.policy(builtin, bytes, counters, hits),
                }
                continue;
            }
            let rule = &rules[at];
            if !self.matches(&rule.matches, self.families[chain][at], meta) {
                at += 1;
                continue;
            }
            let id = self.rs.rule_id(chain, at);
            counters.bump(id, bytes);
            hits.push(id);
            at += 1;
            match &rule.target {
                None => {}
                Some(Target::Accept) => return Verdict::Accept,
                Some(Target::Drop) => return Verdict::Drop,
                Some(Target::Reject(with)) => return Verdict::Reject(*with),
                Some(Target::Dnat(_) | Target::Snat(_) | Target::Masquerade { .. }) => {
                    meta.nat = self.rs.nat_slot(chain, at - 1);
                    return Verdict::Accept;
                }
                Some(Target::Notrack) => meta.ctstate = ctstate::UNTRACKED,
                Some(Target::Log(_)) => counters.log(id, meta),
                Some(Target::Mark { xor, mask }) => meta.mark = (meta.mark & !mask) ^ xor,
                Some(Target::Return) => {
                    if chain == builtin {
                        return self.policy(builtin, bytes, counters, hits);
                    }
                    match stack.pop() {
                        Some(frame) => (chain, at) = frame,
                        None => return self.policy(builtin, bytes, counters, hits),
                    }
                }
                Some(Target::Jump(name)) => {
                    stack.push((chain, at));
                    chain = self.callee(chain, name);
                    at = 0;
                }
                Some(Target::Goto(name)) => {
                    chain = self.callee(chain, name);
                    at = 0;
                }
            }
        }
    }

    fn callee(&self, from: usize, name: &str) -> usize {
        let table = self.rs.chains()[from].table;
        self.rs
            .chain_index(table, name)
            .expect("validated: jump targets exist")
    }

    fn policy(
        &self,
        builtin: usize,
        bytes: u64,
        counters: &mut RuleCounters,
        hits: &mut Vec<u32>,
    ) -> Verdict {
        let id = self
            .rs
            .policy_id(builtin)
            .expect("built-in chains have a policy");
        counters.bump(id, bytes);
        hits.push(id);
        match self.rs.chains()[builtin].policy {
            Some(Policy::Drop) => Verdict::Drop,
            _ => Verdict::Accept,
        }
    }

    /// Does one rule's match list hold for `meta`? Each arm is the man page's sentence.
    pub fn matches(&self, m: &Matches, family: Option<Family>, meta: &PacketMeta) -> bool {
        if family.is_some_and(|f| f != meta.family) {
            return false;
        }
        let port_name = |p: u16| {
            (p != NO_PORT)
                .then(|| self.env.ports.get(usize::from(p)))
                .flatten()
        };
        let iface = |pat: &str, port: u16| port_name(port).is_some_and(|n| iface_matches(pat, n));
        let checks = [
            m.in_iface
                .as_ref()
                .map(|i| iface(&i.value, meta.in_port) != i.invert),
            m.out_iface
                .as_ref()
                .map(|i| iface(&i.value, meta.out_port) != i.invert),
            m.src
                .as_ref()
                .map(|n| net_contains(&n.value, meta.family, meta.src) != n.invert),
            m.dst
                .as_ref()
                .map(|n| net_contains(&n.value, meta.family, meta.dst) != n.invert),
            m.src_set
                .as_ref()
                .map(|s| self.in_set(&s.value, meta.family, meta.src) != s.invert),
            m.dst_set
                .as_ref()
                .map(|s| self.in_set(&s.value, meta.family, meta.dst) != s.invert),
            m.proto
                .as_ref()
                .map(|p| (meta.proto == p.value) != p.invert),
            m.sport
                .as_ref()
                .map(|p| meta.l4_valid && in_ports(&p.value, meta.sport) != p.invert),
            m.dport
                .as_ref()
                .map(|p| meta.l4_valid && in_ports(&p.value, meta.dport) != p.invert),
            m.tcp_flags.as_ref().map(|f| {
                meta.l4_valid && (meta.tcp_flags & f.value.mask == f.value.comp) != f.invert
            }),
            m.icmp.as_ref().map(|i| {
                let hit = i.value.kind == super::ICMP_ANY
                    || (meta.icmp_type == i.value.kind
                        && i.value.code.is_none_or(|c| c == meta.icmp_code));
                meta.l4_valid && hit != i.invert
            }),
            m.mark
                .as_ref()
                .map(|k| (meta.mark & k.value.mask == k.value.value) != k.invert),
            m.length
                .as_ref()
                .map(|l| (l.value.0..=l.value.1).contains(&meta.ip_len) != l.invert),
            m.fragment.map(|f| meta.fragment == f),
            m.src_local
                .map(|l| self.is_local(meta.family, meta.src) == l),
            m.dst_local
                .map(|l| self.is_local(meta.family, meta.dst) == l),
            (m.ctstate.is_some() || m.ctstatus.is_some())
                .then(|| conntrack_matches(m, meta.ctstate, meta.ctstatus)),
        ];
        checks.into_iter().all(|c| c != Some(false))
    }

    fn in_set(&self, name: &str, family: Family, addr: u128) -> bool {
        let set = &self.rs.sets()[self.rs.set_index(name).expect("validated: sets exist")];
        set.members.iter().any(|n| net_contains(n, family, addr))
    }

    fn is_local(&self, family: Family, addr: u128) -> bool {
        self.env.local_addrs.iter().any(|a| match (a, family) {
            (std::net::IpAddr::V4(a), Family::V4) => u128::from(u32::from(*a)) == addr,
            (std::net::IpAddr::V6(a), Family::V6) => u128::from(*a) == addr,
            _ => false,
        })
    }
}

fn in_ports(ranges: &[(u16, u16)], port: u16) -> bool {
    ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Chain, Counter, Neg, Rule, Table};

    fn rule(matches: Matches, target: Option<Target>) -> Rule {
        Rule {
            matches,
            target,
            ..Rule::default()
        }
    }

    fn chain(table: Table, name: &str, policy: Option<Policy>, rules: Vec<Rule>) -> Chain {
        Chain {
            table,
            name: name.into(),
            policy,
            policy_counters: Counter::default(),
            rules,
        }
    }

    fn tcp(dport: u16) -> PacketMeta {
        PacketMeta {
            proto: 6,
            dport,
            src: 0xc612_0001,
            dst: 0xc613_0001,
            ip_len: 60,
            l4_valid: true,
            in_port: 0,
            out_port: 1,
            ..PacketMeta::default()
        }
    }

    fn dport(p: u16) -> Matches {
        Matches {
            proto: Some(Neg::is(6)),
            dport: Some(Neg::is(vec![(p, p)])),
            ..Matches::default()
        }
    }

    #[test]
    fn goto_returns_to_the_callers_caller_and_return_in_builtin_is_policy() {
        // FORWARD: jump A; (policy DROP). A: goto B; ACCEPT. B: dport 22 -> RETURN.
        // A packet to 22 returns from B straight to FORWARD (skipping A's ACCEPT) and
        // falls to the DROP policy; a packet to 80 ends B, also back in FORWARD.
        let rs = Ruleset::new(
            vec![],
            vec![
                chain(
                    Table::Filter,
                    "FORWARD",
                    Some(Policy::Drop),
                    vec![rule(Matches::default(), Some(Target::Jump("A".into())))],
                ),
                chain(
                    Table::Filter,
                    "A",
                    None,
                    vec![
                        rule(Matches::default(), Some(Target::Goto("B".into()))),
                        rule(Matches::default(), Some(Target::Accept)),
                    ],
                ),
                chain(
                    Table::Filter,
                    "B",
                    None,
                    vec![rule(dport(22), Some(Target::Return))],
                ),
            ],
        )
        .unwrap();
        let env = Env::default();
        let ev = LinearEvaluator::new(&rs, &env);
        let mut c = RuleCounters::new(rs.counter_len());
        assert_eq!(
            ev.run_hook(Hook::Forward, &mut tcp(22), 0, &mut c),
            Verdict::Drop
        );
        assert_eq!(
            ev.run_hook(Hook::Forward, &mut tcp(80), 0, &mut c),
            Verdict::Drop
        );
        let fw = rs.chain_index(Table::Filter, "FORWARD").unwrap();
        let a = rs.chain_index(Table::Filter, "A").unwrap();
        let b = rs.chain_index(Table::Filter, "B").unwrap();
        assert_eq!(
            c.get(rs.policy_id(fw).unwrap()),
            Counter {
                packets: 2,
                bytes: 120
            }
        );
        assert_eq!(
            c.get(rs.rule_id(a, 1)).packets,
            0,
            "A's ACCEPT is skipped by the goto"
        );
        assert_eq!(c.get(rs.rule_id(b, 0)).packets, 1);

        let rs = Ruleset::new(
            vec![],
            vec![chain(
                Table::Filter,
                "FORWARD",
                Some(Policy::Drop),
                vec![
                    rule(dport(22), Some(Target::Return)),
                    rule(Matches::default(), Some(Target::Accept)),
                ],
            )],
        )
        .unwrap();
        let ev = LinearEvaluator::new(&rs, &env);
        let mut c = RuleCounters::new(rs.counter_len());
        assert_eq!(
            ev.run_hook(Hook::Forward, &mut tcp(22), 0, &mut c),
            Verdict::Drop
        );
        assert_eq!(
            ev.run_hook(Hook::Forward, &mut tcp(80), 0, &mut c),
            Verdict::Accept
        );
        assert_eq!(c.get(rs.policy_id(0).unwrap()).packets, 1);
    }

    #[test]
    fn accept_ends_one_table_and_mark_carries_to_the_next() {
        let mark = Target::Mark {
            xor: 7,
            mask: u32::MAX,
        };
        let is7 = Matches {
            mark: Some(Neg::is(crate::rules::MarkMatch {
                value: 7,
                mask: 0xff,
            })),
            ..Matches::default()
        };
        let rs = Ruleset::new(
            vec![],
            vec![
                chain(
                    Table::Mangle,
                    "FORWARD",
                    None,
                    vec![
                        rule(Matches::default(), Some(mark)),
                        rule(Matches::default(), Some(Target::Accept)),
                        rule(Matches::default(), Some(Target::Drop)),
                    ],
                ),
                chain(
                    Table::Filter,
                    "FORWARD",
                    Some(Policy::Accept),
                    vec![rule(is7, Some(Target::Drop))],
                ),
            ],
        )
        .unwrap();
        let env = Env::default();
        let ev = LinearEvaluator::new(&rs, &env);
        let mut c = RuleCounters::new(rs.counter_len());
        let mut p = tcp(80);
        assert_eq!(ev.run_hook(Hook::Forward, &mut p, 0, &mut c), Verdict::Drop);
        assert_eq!(p.mark, 7);
        assert_eq!(
            c.get(2).packets,
            0,
            "ACCEPT ended the mangle table before its DROP"
        );
    }

    #[test]
    fn nat_table_sees_only_a_connections_first_packet() {
        use crate::rules::{NatRange, RejectWith};
        let dnat = Target::Dnat(NatRange {
            addr_min: "198.19.0.2".parse().unwrap(),
            addr_max: "198.19.0.2".parse().unwrap(),
            ports: Some((80, 80)),
        });
        let est = Matches {
            ctstate: Some(Neg::is(ctstate::ESTABLISHED)),
            ..Matches::default()
        };
        let rs = Ruleset::new(
            vec![],
            vec![
                chain(
                    Table::Raw,
                    "PREROUTING",
                    None,
                    vec![rule(dport(9), Some(Target::Notrack))],
                ),
                chain(
                    Table::Nat,
                    "PREROUTING",
                    None,
                    vec![
                        rule(dport(8080), Some(dnat)),
                        rule(dport(8080), Some(Target::Drop)),
                    ],
                ),
                chain(
                    Table::Filter,
                    "FORWARD",
                    Some(Policy::Accept),
                    vec![
                        rule(est, Some(Target::Accept)),
                        rule(
                            dport(8080),
                            Some(Target::Reject(RejectWith::HostProhibited)),
                        ),
                    ],
                ),
            ],
        )
        .unwrap();
        let env = Env::default();
        let ev = LinearEvaluator::new(&rs, &env);
        let mut c = RuleCounters::new(rs.counter_len());
        let nat_pre = rs.chain_index(Table::Nat, "PREROUTING").unwrap();

        // First packet: DNAT matches, records slot 1 and ends the nat chain (its DROP
        // is not reached).
        let mut p = tcp(8080);
        p.ctstate = ctstate::NEW;
        assert_eq!(
            ev.run_hook(Hook::Prerouting, &mut p, 0, &mut c),
            Verdict::Accept
        );
        assert_eq!(p.nat, 1);
        assert_eq!(rs.nat_targets()[0].addr_min, 0xc613_0002);
        assert_eq!(c.get(rs.rule_id(nat_pre, 0)).packets, 1);
        assert_eq!(c.get(rs.rule_id(nat_pre, 1)).packets, 0);
        assert_eq!(
            ev.run_hook(Hook::Forward, &mut p, 0, &mut c),
            Verdict::Reject(RejectWith::HostProhibited)
        );

        // Later packets skip the nat table entirely, policy counter included.
        let mut p = tcp(8080);
        p.ctstate = ctstate::ESTABLISHED;
        assert_eq!(
            ev.run_hook(Hook::Prerouting, &mut p, 0, &mut c),
            Verdict::Accept
        );
        assert_eq!(
            (p.nat, c.get(rs.policy_id(nat_pre).unwrap()).packets),
            (0, 0)
        );
        assert_eq!(
            ev.run_hook(Hook::Forward, &mut p, 0, &mut c),
            Verdict::Accept
        );
        // So does a packet still NEW whose binding is made: a retransmitted SYN.
        let mut p = tcp(8080);
        p.ctstate = ctstate::NEW;
        p.ctstatus = ctstatus::NAT_DONE;
        ev.run_hook(Hook::Prerouting, &mut p, 0, &mut c);
        assert_eq!(p.nat, 0);
        assert_eq!(c.get(rs.rule_id(nat_pre, 0)).packets, 1);

        // NOTRACK in raw: UNTRACKED from then on, so nat does not see it either.
        let mut p = tcp(9);
        p.ctstate = ctstate::NEW;
        let v = ev.run_hook_part(Hook::Prerouting, HookPart::Raw, &mut p, 0, &mut c);
        assert_eq!((v, p.ctstate), (Verdict::Accept, ctstate::UNTRACKED));
        ev.run_hook_part(Hook::Prerouting, HookPart::AfterRaw, &mut p, 0, &mut c);
        assert_eq!(c.get(rs.policy_id(nat_pre).unwrap()).packets, 0);
    }

    #[test]
    fn ctstatus_without_a_connection_follows_xt_conntrack() {
        use crate::rules::conntrack_matches;
        let status = Matches {
            ctstatus: Some(Neg::not(ctstatus::ASSURED)),
            ..Matches::default()
        };
        assert!(conntrack_matches(&status, ctstate::NEW, 0));
        assert!(!conntrack_matches(&status, ctstate::NEW, ctstatus::ASSURED));
        // No connection: a ctstatus match alone never holds, even negated ...
        assert!(!conntrack_matches(&status, ctstate::INVALID, 0));
        // ... but beside a ctstate match, ctstate decides.
        let both = Matches {
            ctstate: Some(Neg::is(ctstate::INVALID)),
            ..status
        };
        assert!(conntrack_matches(
            &both,
            ctstate::INVALID,
            ctstatus::ASSURED
        ));
        // SNAT/DNAT are extra bits beside the real state.
        let dnat = Matches {
            ctstate: Some(Neg::is(ctstate::DNAT)),
            ..Matches::default()
        };
        assert!(conntrack_matches(
            &dnat,
            ctstate::ESTABLISHED | ctstate::DNAT,
            0
        ));
        assert!(!conntrack_matches(&dnat, ctstate::ESTABLISHED, 0));
    }

    #[test]
    fn family_interfaces_and_negation() {
        let v4_not = Matches {
            src: Some(Neg::not("198.18.0.0/24".parse().unwrap())),
            ..Matches::default()
        };
        let out_eth = Matches {
            out_iface: Some(Neg::is("eth+".into())),
            ..Matches::default()
        };
        let rs = Ruleset::new(
            vec![],
            vec![chain(
                Table::Filter,
                "FORWARD",
                Some(Policy::Accept),
                vec![
                    rule(v4_not, None),
                    rule(out_eth, None),
                    rule(
                        Matches {
                            in_iface: Some(Neg::not("ghost0".into())),
                            ..Matches::default()
                        },
                        None,
                    ),
                ],
            )],
        )
        .unwrap();
        let env = Env {
            ports: vec!["veth0".into(), "eth1".into()],
            local_addrs: vec![],
        };
        let ev = LinearEvaluator::new(&rs, &env);
        let mut c = RuleCounters::new(rs.counter_len());
        let mut v6 = tcp(80);
        v6.family = Family::V6;
        ev.run_hook(Hook::Forward, &mut v6, 0, &mut c);
        assert_eq!(
            c.get(0).packets,
            0,
            "a v4 rule never matches v6, even negated"
        );
        ev.run_hook(Hook::Forward, &mut tcp(80), 0, &mut c);
        assert_eq!(c.get(0).packets, 0, "198.18.0.1 is inside 198.18.0.0/24");
        let mut outside = tcp(80);
        outside.src = 0xc613_0001;
        ev.run_hook(Hook::Forward, &mut outside, 0, &mut c);
        assert_eq!(c.get(0).packets, 1);
        assert_eq!(c.get(1).packets, 3);
        assert_eq!(
            c.get(2).packets,
            3,
            "a missing interface never matches, so ! matches"
        );
    }
}
