//! Entry points for `fwd check` and `fwd rules`: load + compile a config and report,
//! and the `iptables -nvL`-style listing with counters.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Deserialize;

use super::config::{format_net, ConfigError, RulesConfig, SetConfig, TableConfig};
use super::names;
use super::{Counter, Env, Ruleset, Table, Target};
use crate::classify::{Classifier, CompileError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub rules: usize,
    pub chains: usize,
    pub sets: usize,
    pub compile_time: Duration,
    pub memory_bytes: usize,
    /// Interface patterns naming no port (rules with them never match).
    pub unresolved_ifaces: Vec<String>,
}

/// Why `fwd check` failed; `exit_code` is what the CLI returns (2: bad input).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Compile(#[from] CompileError),
}

impl CheckError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CheckError::Io { .. } => 1,
            CheckError::Config(_) | CheckError::Compile(_) => 2,
        }
    }
}

/// The rules sections of a full config; other top-level sections belong to other
/// owners and are not looked at here (the rules sections still deny unknown keys).
#[derive(Deserialize)]
struct RulesView {
    #[serde(default)]
    sets: BTreeMap<String, SetConfig>,
    #[serde(default)]
    chains: BTreeMap<String, super::config::ChainConfig>,
    #[serde(default)]
    tables: BTreeMap<String, TableConfig>,
    #[serde(flatten)]
    _other: toml::Table,
}

/// Loads the rules of a config file (full or rules-only) into a model.
pub fn load(text: &str, path: &str) -> Result<Ruleset, ConfigError> {
    let view: RulesView = toml::from_str(text).map_err(|e| ConfigError {
        path: path.into(),
        line: e.span().map(|s| super::config::line_of(text, s.start)),
        msg: e.message().trim_end().to_string(),
    })?;
    RulesConfig {
        sets: view.sets,
        chains: view.chains,
        tables: view.tables,
    }
    .to_ruleset(text, path)
}

/// `fwd check`: parse, validate and compile; report size and cost.
pub fn check(path: &str, env: &Env) -> Result<CheckReport, CheckError> {
    let text = std::fs::read_to_string(path).map_err(|err| CheckError::Io {
        path: path.into(),
        err,
    })?;
    let rs = load(&text, path)?;
    let c = Classifier::compile(&rs, env)?;
    Ok(CheckReport {
        rules: rs.rule_count(),
        chains: rs.chains().len(),
        sets: rs.sets().len(),
        compile_time: c.build_time(),
        memory_bytes: c.memory_bytes(),
        unresolved_ifaces: c.unresolved_ifaces.clone(),
    })
}

/// `fwd rules`: every table and chain like `iptables -nvL`, with `counters` from
/// `Ruleset::sum_counters`.
pub fn list(rs: &Ruleset, counters: &[Counter]) -> String {
    let mut out = String::new();
    for table in Table::ALL {
        let chains: Vec<(usize, &super::Chain)> = rs
            .chains()
            .iter()
            .enumerate()
            .filter(|(_, c)| c.table == table)
            .collect();
        if chains.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# table {}", table.name());
        for (ci, c) in chains {
            match rs.policy_id(ci) {
                Some(id) => {
                    let k = counters.get(id as usize).copied().unwrap_or_default();
                    let policy = c.policy.map_or("-", super::Policy::name);
                    let _ = writeln!(
                        out,
                        "Chain {} (policy {policy} {} packets, {} bytes)",
                        c.name, k.packets, k.bytes
                    );
                }
                None => {
                    let refs = rs
                        .chains()
                        .iter()
                        .filter(|o| o.table == table)
                        .flat_map(|o| &o.rules)
                        .filter(|r| matches!(&r.target, Some(Target::Jump(t) | Target::Goto(t)) if *t == c.name))
                        .count();
                    let _ = writeln!(out, "Chain {} ({refs} references)", c.name);
                }
            }
            let _ = writeln!(
                out,
                "{:>8} {:>8} {:<10} {:<4} {:<3} {:<8} {:<8} {:<20} {:<20}",
                "pkts", "bytes", "target", "prot", "opt", "in", "out", "source", "destination"
            );
            for (ri, r) in c.rules.iter().enumerate() {
                let k = counters
                    .get(rs.rule_id(ci, ri) as usize)
                    .copied()
                    .unwrap_or_default();
                let _ = writeln!(out, "{}", rule_row(r, k));
            }
            out.push('\n');
        }
    }
    out
}

fn rule_row(r: &super::Rule, k: Counter) -> String {
    let m = &r.matches;
    let neg = |inv: bool| if inv { "!" } else { "" };
    let target = match &r.target {
        None => String::new(),
        Some(Target::Accept) => "ACCEPT".into(),
        Some(Target::Drop) => "DROP".into(),
        Some(Target::Return) => "RETURN".into(),
        Some(Target::Jump(c) | Target::Goto(c)) => c.clone(),
        // iptables-save writes NOTRACK as `-j CT --notrack` and `-L` shows it so.
        Some(Target::Notrack) => "CT".into(),
        Some(t) => t.name().into(),
    };
    let prot = m.proto.as_ref().map_or("all".to_string(), |p| {
        format!("{}{}", neg(p.invert), names::proto_name(p.value))
    });
    let opt = match m.fragment {
        Some(true) => "-f",
        Some(false) => "!f",
        None => "--",
    };
    let iface = |i: &Option<super::Neg<String>>| {
        i.as_ref()
            .map_or("*".into(), |i| format!("{}{}", neg(i.invert), i.value))
    };
    let any = if m.family == Some(super::Family::V6) {
        "::/0"
    } else {
        "0.0.0.0/0"
    };
    let addr = |n: &Option<super::Neg<ipnet::IpNet>>| {
        n.as_ref().map_or(any.to_string(), |n| {
            format!("{}{}", neg(n.invert), format_net(&n.value))
        })
    };
    let mut extra = String::new();
    let pname = m
        .proto
        .as_ref()
        .map_or("".into(), |p| names::proto_name(p.value));
    for (label, p) in [("spt", &m.sport), ("dpt", &m.dport)] {
        if let Some(p) = p {
            let (kw, v) = if p.value.len() == 1 {
                (format!("{pname} {label}"), names::format_ports(&p.value))
            } else {
                (format!("multiport {label}s"), names::format_ports(&p.value))
            };
            let _ = write!(extra, " {kw}:{}{v}", neg(p.invert));
        }
    }
    if let Some(f) = &m.tcp_flags {
        let _ = write!(
            extra,
            " tcp flags:{}{:#x}/{:#x}",
            neg(f.invert),
            f.value.mask,
            f.value.comp
        );
    }
    if let Some(i) = &m.icmp {
        let _ = write!(
            extra,
            " icmptype {}{}",
            neg(i.invert),
            names::format_icmp(i.value)
        );
    }
    if let Some(k) = &m.mark {
        let _ = write!(
            extra,
            " mark match {}{:#x}/{:#x}",
            neg(k.invert),
            k.value.value,
            k.value.mask
        );
    }
    if let Some(l) = &m.length {
        let _ = write!(
            extra,
            " length {}{}",
            neg(l.invert),
            names::format_length(l.value)
        );
    }
    for (dir, l) in [("src", m.src_local), ("dst", m.dst_local)] {
        if let Some(l) = l {
            let _ = write!(extra, " ADDRTYPE match {dir}-type {}LOCAL", neg(!l));
        }
    }
    for (dir, s) in [("src", &m.src_set), ("dst", &m.dst_set)] {
        if let Some(s) = s {
            let _ = write!(extra, " {}match-set {} {dir}", neg(s.invert), s.value);
        }
    }
    if let Some(s) = &m.ctstate {
        let _ = write!(
            extra,
            " {}ctstate {}",
            if s.invert { "! " } else { "" },
            names::format_ctstate(s.value)
        );
    }
    if let Some(s) = &m.ctstatus {
        let _ = write!(
            extra,
            " {}ctstatus {}",
            if s.invert { "! " } else { "" },
            names::format_ctstatus(s.value)
        );
    }
    match &r.target {
        Some(Target::Goto(_)) => extra += " [goto]",
        Some(Target::Mark { xor, mask }) => {
            let _ = write!(extra, " MARK xset {xor:#x}/{mask:#x}");
        }
        Some(Target::Log(l)) => {
            let _ = write!(
                extra,
                " LOG flags 0 level {} prefix {:?}",
                l.level, l.prefix
            );
        }
        Some(Target::Dnat(n) | Target::Snat(n)) => {
            let _ = write!(extra, " to:{}", names::format_nat_range(n));
        }
        Some(Target::Masquerade { ports: Some(p) }) => {
            let _ = write!(extra, " masq ports: {}", names::format_nat_ports(*p));
        }
        Some(Target::Reject(with)) => {
            let family = m.family.unwrap_or(super::Family::V4);
            let _ = write!(extra, " reject-with {}", with.name(family));
        }
        Some(Target::Notrack) => extra += " NOTRACK",
        _ => {}
    }
    if let Some(c) = &r.comment {
        let _ = write!(extra, " /* {c} */");
    }
    format!(
        "{:>8} {:>8} {:<10} {:<4} {:<3} {:<8} {:<8} {:<20} {:<20}{extra}",
        k.packets,
        k.bytes,
        target,
        prot,
        opt,
        iface(&m.in_iface),
        iface(&m.out_iface),
        addr(&m.src),
        addr(&m.dst)
    )
    .trim_end()
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::meta::PacketMeta;
    use crate::rules::{Hook, RuleCounters};

    const CONFIG: &str = r#"
[[ports]]
name = "veth0"

[workers]
count = 1

[chains.FORWARD]
policy = "DROP"
rules = [
  { in = "veth0", proto = "tcp", dport = 22, action = "ACCEPT", comment = "ssh" },
  { proto = "tcp", action = "jump", target = "U" },
]

[chains.U]
rules = [{ action = "RETURN" }]
"#;

    #[test]
    fn full_config_loads_and_lists_with_counters() {
        let rs = load(CONFIG, "router.toml").unwrap();
        let env = Env {
            ports: vec!["veth0".into()],
            local_addrs: vec![],
        };
        let c = Classifier::compile(&rs, &env).unwrap();
        let mut w = RuleCounters::new(rs.counter_len());
        let mut p = PacketMeta {
            proto: 6,
            dport: 22,
            ip_len: 60,
            l4_valid: true,
            ..PacketMeta::default()
        };
        c.run_hook(Hook::Forward, &mut p, 0, &mut w);
        p.dport = 80;
        c.run_hook(Hook::Forward, &mut p, 0, &mut w);
        let text = list(&rs, &rs.sum_counters(&[&w]));
        assert!(
            text.contains("Chain FORWARD (policy DROP 1 packets, 60 bytes)"),
            "{text}"
        );
        assert!(text.contains("Chain U (1 references)"), "{text}");
        let row = text.lines().find(|l| l.contains("/* ssh */")).unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            [
                "1",
                "60",
                "ACCEPT",
                "tcp",
                "--",
                "veth0",
                "*",
                "0.0.0.0/0",
                "0.0.0.0/0",
                "tcp",
                "dpt:22",
                "/*",
                "ssh",
                "*/"
            ]
        );
    }

    #[test]
    fn check_reports_and_refuses_with_exit_code_2() {
        let dir = std::env::temp_dir().join(format!("fwd-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, CONFIG).unwrap();
        let r = check(good.to_str().unwrap(), &Env::default()).unwrap();
        assert_eq!((r.rules, r.chains, r.sets), (3, 2, 0));
        assert!(r.memory_bytes > 0);
        assert_eq!(r.unresolved_ifaces, vec!["veth0".to_string()]);
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, CONFIG.replace("dport = 22", "dport = \"22-\"")).unwrap();
        let e = check(bad.to_str().unwrap(), &Env::default()).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string().ends_with(
                "bad.toml:11: chains.FORWARD.rules[0].dport: \"22-\" is not a port or port range"
            ),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
