//! What the differential tests (fwd against Linux's own forwarding, in a testbed of
//! its own) share: running commands in namespaces, loading fwd's rule model into
//! iptables-legacy through fwd's exporter, and reading both sides' rule counters.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::{thread, time::Duration};

use fwd::rules::{iptables, Counter, Ruleset};

use super::{json_stdout, Testbed};

/// The iptables the kernel side runs: the legacy backend, whose matches are the xt
/// modules themselves (iptables-nft translates ports, flags and prefixes into native
/// nft expressions, which differ on malformed packets).
pub const IPTABLES_RESTORE: [&str; 2] = ["iptables-legacy-restore", "ip6tables-legacy-restore"];
pub const IPTABLES_SAVE: [&str; 2] = ["iptables-legacy-save", "ip6tables-legacy-save"];
pub const IPTABLES: [&str; 2] = ["iptables-legacy", "ip6tables-legacy"];

/// "table CHAIN rule N" / "table CHAIN policy" for every counter id of `rs`, with the
/// rule as iptables-save writes it.
pub fn counter_names(rs: &Ruleset, save: &str) -> Vec<(String, String)> {
    let mut names = vec![(String::new(), String::new()); rs.counter_len()];
    let mut table = "";
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut lines: BTreeMap<(String, String, usize), String> = BTreeMap::new();
    for l in save.lines() {
        if let Some(t) = l.strip_prefix('*') {
            table = t;
        } else if let Some(rest) = l.strip_prefix("-A ") {
            let chain = rest.split_whitespace().next().unwrap().to_string();
            let n = seen.entry((table.into(), chain.clone())).or_default();
            lines.insert((table.into(), chain, *n), l.to_string());
            *n += 1;
        }
    }
    for (ci, c) in rs.chains().iter().enumerate() {
        let t = c.table.name();
        for ri in 0..c.rules.len() {
            names[rs.rule_id(ci, ri) as usize] = (
                format!("{t} {} rule {}", c.name, ri + 1),
                lines
                    .get(&(t.into(), c.name.clone(), ri))
                    .cloned()
                    .unwrap_or_default(),
            );
        }
        if let Some(id) = rs.policy_id(ci) {
            names[id as usize] = (
                format!("{t} {} policy", c.name),
                format!("policy {}", c.policy.unwrap().name()),
            );
        }
    }
    names
}

pub fn run(cmd: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn ns_run(ns: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut all = vec!["netns", "exec", ns];
    all.extend_from_slice(args);
    run("ip", &all, stdin)
}

pub fn mac(ns: &str, dev: &str) -> String {
    let out = run("ip", &["-n", ns, "-j", "link", "show", dev], None);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["address"].as_str().unwrap().to_string()
}

/// What both forwarders share: the end hosts' kernels answer nothing (their INPUT
/// drops, so the probes cause no replies that would cross the forwarder again), and
/// the forwarder's namespace knows both hosts' MACs (no ARP during the run).
pub fn quiet_hosts(tb: &Testbed) {
    for ns in [tb.gen(), tb.sink()] {
        // OUTPUT too: no router solicitation or MLD report reaches the forwarder's
        // PREROUTING during the run (fwd passes those to its kernel unjudged).
        for tool in IPTABLES {
            for chain in ["INPUT", "OUTPUT"] {
                ns_run(&ns, &[tool, "-A", chain, "-j", "DROP"], None);
            }
        }
    }
    let gen_mac = mac(&tb.gen(), &format!("{}-g", tb.prefix));
    let sink_mac = mac(&tb.sink(), &format!("{}-s", tb.prefix));
    for (addr, lladdr, dev) in [
        ("198.18.0.2", &gen_mac, tb.port_a()),
        ("198.19.0.2", &sink_mac, tb.port_b()),
        ("2001:db8:a::2", &gen_mac, tb.port_a()),
        ("2001:db8:b::2", &sink_mac, tb.port_b()),
    ] {
        run(
            "ip",
            &[
                "-n",
                &tb.fwd(),
                "neigh",
                "replace",
                addr,
                "lladdr",
                lladdr,
                "dev",
                &dev,
                "nud",
                "permanent",
            ],
            None,
        );
    }
}

pub fn kernel_counters(tb: &Testbed, rs: &Ruleset, v6: bool) -> Vec<Counter> {
    let save = ns_run(&tb.fwd(), &[IPTABLES_SAVE[usize::from(v6)], "-c"], None);
    let (kernel, _) = iptables::import_with_sets(&save, "kernel", rs.sets())
        .unwrap_or_else(|e| panic!("{e}\n{save}"));
    let mut out = vec![Counter::default(); rs.counter_len()];
    for (ci, c) in rs.chains().iter().enumerate() {
        let k = kernel
            .chain_index(c.table, &c.name)
            .unwrap_or_else(|| panic!("kernel has no {} {}\n{save}", c.table.name(), c.name));
        let kc = &kernel.chains()[k];
        assert_eq!(
            kc.rules.len(),
            c.rules.len(),
            "kernel {} has other rules:\n{save}",
            c.name
        );
        for (ri, r) in kc.rules.iter().enumerate() {
            // The kernel gave back the rule we gave it (a round trip through xtables).
            let mut mine = c.rules[ri].clone();
            mine.counters = r.counters;
            mine.matches.family = r.matches.family;
            assert_eq!(r, &mine, "kernel rule differs from ours:\n{save}");
            out[rs.rule_id(ci, ri) as usize] = r.counters;
        }
        if let Some(id) = rs.policy_id(ci) {
            out[id as usize] = kc.policy_counters;
        }
    }
    out
}

pub fn fwd_counters(tb: &Testbed, rs: &Ruleset) -> Vec<Counter> {
    // Workers publish their counters every few hundred ms.
    thread::sleep(Duration::from_millis(600));
    let r = json_stdout(&tb.fwd_cli(&["rules", "--json"]));
    let c = r["counters"].as_array().unwrap();
    assert_eq!(c.len(), rs.counter_len(), "{}", r["listing"]);
    c.iter()
        .map(|pb| Counter {
            packets: pb[0].as_u64().unwrap(),
            bytes: pb[1].as_u64().unwrap(),
        })
        .collect()
}

/// Makes the middle namespace a Linux router: ip_forward on, reverse-path filter
/// off (the probes come from addresses the routes do not lead back to).
pub fn forward(tb: &Testbed) {
    ns_run(
        &tb.fwd(),
        &[
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            &format!("net.ipv4.conf.{}.rp_filter=0", tb.port_a()),
            &format!("net.ipv4.conf.{}.rp_filter=0", tb.port_b()),
            "net.ipv6.conf.all.forwarding=1",
        ],
        None,
    );
}

/// Loads `rs` into the forwarder namespace's ipset and iptables-legacy (v4 or v6)
/// through fwd's exporters; returns the iptables-save text it loaded.
pub fn load_rules(tb: &Testbed, rs: &Ruleset, v6: bool) -> String {
    let fwd_ns = tb.fwd();
    ns_run(
        &fwd_ns,
        &["ipset", "restore"],
        Some(&iptables::export_ipset_save(rs)),
    );
    let save = if v6 {
        iptables::export_ip6tables_save(rs)
    } else {
        iptables::export_iptables_save(rs)
    };
    ns_run(
        &fwd_ns,
        &[IPTABLES_RESTORE[usize::from(v6)], "-c"],
        Some(&save),
    );
    save
}
