//! What workers judge frames against, replaced whole on reload: the FIB and the
//! compiled rules. Built off the hot path, published with one pointer swap
//! (ArcSwap), freed when the last worker drops its guard.

use std::sync::Arc;

use crate::{
    classify::Classifier,
    route::Fib,
    rules::{Counter, Ruleset},
};

pub struct Tables {
    pub fib: Fib,
    pub ruleset: Arc<Ruleset>,
    pub classifier: Classifier,
    pub generation: u64,
    /// For counters: the generation these tables replaced, and where each of its
    /// rule counter ids went (None: the rule is gone).
    pub prev_generation: u64,
    pub counter_map: Vec<Option<u32>>,
}

/// Maps each counter id of `old` to the id of the same rule in `new`, so a reload
/// keeps the counters of the rules it did not change. A rule is the same when its
/// table, chain, matches, target and comment are; among equal rules of one chain
/// the n-th maps to the n-th. A chain's policy counter follows its chain.
pub fn counter_map(old: &Ruleset, new: &Ruleset) -> Vec<Option<u32>> {
    let mut map = vec![None; old.counter_len()];
    for (oc, ochain) in old.chains().iter().enumerate() {
        let Some(nc) = new.chain_index(ochain.table, &ochain.name) else {
            continue;
        };
        let nchain = &new.chains()[nc];
        let mut taken = vec![false; nchain.rules.len()];
        for (oi, orule) in ochain.rules.iter().enumerate() {
            let same = |r: &crate::rules::Rule| {
                r.matches == orule.matches && r.target == orule.target && r.comment == orule.comment
            };
            if let Some(ni) =
                (0..nchain.rules.len()).find(|&ni| !taken[ni] && same(&nchain.rules[ni]))
            {
                taken[ni] = true;
                map[old.rule_id(oc, oi) as usize] = Some(new.rule_id(nc, ni));
            }
        }
        if let (Some(op), Some(np)) = (old.policy_id(oc), new.policy_id(nc)) {
            map[op as usize] = Some(np);
        }
    }
    map
}

/// One worker's rule counters as last published (every 100 ms and at a reload).
#[derive(Default)]
pub struct RuleSnapshot {
    pub generation: u64,
    pub counts: Vec<Counter>,
    /// The worker's connection-table counters, when it tracks connections.
    pub ct: Option<crate::conntrack::CtStats>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::config::RulesConfig;

    fn rs(text: &str) -> Ruleset {
        RulesConfig::from_toml_str(text, "t.toml").unwrap()
    }

    #[test]
    fn unchanged_rules_keep_their_counters_across_a_reload() {
        let old = rs(r#"
[chains.FORWARD]
policy = "DROP"
rules = [
  { proto = "tcp", dport = 22, action = "ACCEPT" },
  { proto = "udp", dport = 53, action = "ACCEPT" },
  { proto = "tcp", dport = 80, action = "ACCEPT" },
]
"#);
        let new = rs(r#"
[chains.FORWARD]
policy = "DROP"
rules = [
  { proto = "tcp", dport = 80, action = "ACCEPT" },
  { proto = "tcp", dport = 443, action = "ACCEPT" },
  { proto = "tcp", dport = 22, action = "ACCEPT" },
]
"#);
        let map = counter_map(&old, &new);
        let fwd = old
            .chain_index(crate::rules::Table::Filter, "FORWARD")
            .unwrap();
        let nfwd = new
            .chain_index(crate::rules::Table::Filter, "FORWARD")
            .unwrap();
        assert_eq!(
            map[old.rule_id(fwd, 0) as usize],
            Some(new.rule_id(nfwd, 2)),
            "ssh moved"
        );
        assert_eq!(map[old.rule_id(fwd, 1) as usize], None, "dns is gone");
        assert_eq!(
            map[old.rule_id(fwd, 2) as usize],
            Some(new.rule_id(nfwd, 0)),
            "http moved"
        );
        assert_eq!(
            map[old.policy_id(fwd).unwrap() as usize],
            new.policy_id(nfwd)
        );
    }
}
