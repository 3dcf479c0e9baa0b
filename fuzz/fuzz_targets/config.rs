//! `Config::parse` on arbitrary text: any input is a config or an error naming a
//! line inside the file, never a panic. What loads must also compile (the path
//! `fwd check` and `fwd run` take) and survive a round trip through the rules' TOML.
#![no_main]

use std::path::Path;

use fwd::{
    classify::Classifier,
    config::Config,
    rules::{config::RulesConfig, Env},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, Path::new("fuzz.toml")) {
        Ok(cfg) => {
            let rs = cfg.ruleset();
            let env = Env {
                ports: cfg.port_names(),
                local_addrs: Vec::new(),
            };
            let _ = Classifier::compile(&rs, &env);
            // The rules written back as TOML load again to the same model.
            let again = RulesConfig::from_ruleset(&rs).to_toml_string();
            let rs2 = RulesConfig::from_toml_str(&again, "again.toml")
                .unwrap_or_else(|e| panic!("round trip: {e}\n{again}"));
            assert_eq!(*rs, rs2, "round trip changed the rules:\n{again}");
        }
        Err(e) => {
            let lines = text.lines().count().max(1);
            assert!(e.line <= lines + 1, "line {} of {lines}: {e}", e.line);
            let _ = e.to_string();
        }
    }
});
