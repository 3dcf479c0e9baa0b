//! `fwd import iptables-save` on arbitrary text: a rule set or an error naming a
//! line, never a panic; what imports must write TOML that loads back to the same
//! rules (what `fwd import ... > fwd.toml && fwd check` does).
#![no_main]

use fwd::rules::{config::RulesConfig, iptables, Counter, Ruleset};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match iptables::import(text, "fuzz.rules") {
        Ok((rs, report)) => {
            let _ = report.summary();
            let toml = iptables::to_toml(&rs);
            let back = RulesConfig::from_toml_str(&toml, "import.toml")
                .unwrap_or_else(|e| panic!("imported TOML does not load: {e}\n{toml}"));
            assert_eq!(
                zeroed(&rs),
                back,
                "import -> TOML -> load changed the rules:\n{toml}"
            );
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});

/// The rules without the counters iptables-save carried (TOML has none).
fn zeroed(rs: &Ruleset) -> Ruleset {
    let mut chains = rs.chains().to_vec();
    for c in &mut chains {
        c.policy_counters = Counter::default();
        for r in &mut c.rules {
            r.counters = Counter::default();
        }
    }
    Ruleset::new(rs.sets().to_vec(), chains).expect("was valid")
}
