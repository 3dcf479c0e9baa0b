//! The rule table on real traffic through the daemon: verdicts, per-rule counters
//! read back live, counters kept across a reload, and verdicts switching under a
//! stream of 20 reloads that loses nothing.

mod common;

use std::{thread, time::Duration};

use common::{json_stdout as json, sniffed, Fwd, Testbed};

fn with_rules(tb: &Testbed, rules: &str) -> String {
    format!(
        "{}\n[chains.FORWARD]\npolicy = \"ACCEPT\"\nrules = [\n{rules}\n]\n",
        tb.router_config()
    )
}

const DROP_9999: &str = r#"  { proto = "udp", dport = 9999, src = "198.18.0.0/24", action = "DROP", comment = "no 9999" },"#;

#[test]
fn a_drop_rule_drops_exactly_its_packets_and_counts_them_across_a_reload() {
    require_root!();
    let tb = Testbed::up();
    let cfg = with_rules(&tb, DROP_9999);
    let fwd = Fwd::start(&tb, &cfg);
    tb.ping_sink();
    let pass = tb.sniff(9998, 100, 8);
    tb.send_probes("198.19.0.2", 9999, 100, 1, 200);
    tb.send_probes("198.19.0.2", 9998, 100, 1, 200);
    assert_eq!(sniffed(pass)["received"], 100);
    thread::sleep(Duration::from_millis(400));
    let r = json(&tb.fwd_cli(&["rules", "--json"]));
    let listing = r["listing"].as_str().unwrap();
    assert!(
        listing.contains("Chain FORWARD (policy ACCEPT"),
        "{listing}"
    );
    // Counter 0 is the first FORWARD rule; bytes are IP lengths, as iptables counts:
    // 28 bytes of headers + "fwd-probe N" + 40 bytes of padding, N = 0..99.
    let ip_bytes: usize = (0..100)
        .map(|i: usize| 28 + format!("fwd-probe {i}").len() + 40)
        .sum();
    assert_eq!(
        r["counters"][0],
        serde_json::json!([100, ip_bytes]),
        "{listing}"
    );
    assert_eq!(fwd.drop_count("filtered"), 100);

    // Reload with one more rule in front: the unchanged rule keeps its counters.
    let cfg2 = with_rules(
        &tb,
        &format!("  {{ proto = \"tcp\", dport = 1, action = \"DROP\" }},\n{DROP_9999}"),
    );
    std::fs::write(&fwd.config_file, cfg2).unwrap();
    assert_eq!(tb.fwd_cli(&["reload"]).status.code(), Some(0));
    thread::sleep(Duration::from_millis(300));
    let r = json(&tb.fwd_cli(&["rules", "--json"]));
    assert_eq!(r["counters"][0], serde_json::json!([0, 0]));
    assert_eq!(r["counters"][1][0], 100, "{}", r["listing"]);
}

#[test]
fn verdicts_switch_over_twenty_reloads_and_the_stream_loses_nothing() {
    require_root!();
    let tb = Testbed::up();
    // A drops 7777, B lets it through; both forward the numbered stream on 9999.
    let a = with_rules(
        &tb,
        r#"  { proto = "udp", dport = 7777, action = "DROP" },"#,
    );
    let b = with_rules(
        &tb,
        r#"  { proto = "udp", dport = 7776, action = "DROP" },"#,
    );
    let fwd = Fwd::start(&tb, &a);
    tb.ping_sink();
    let n = 4000;
    let stream = tb.sniff(9999, n, 30);
    let probes = tb.sniff(7777, 30, 30);
    let args = Testbed::probe_args("198.19.0.2", 9999, n, 64, 1, 1000);
    let sender = tb.spawn(
        &tb.gen(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    for i in 0..20 {
        let use_b = i % 2 == 0;
        std::fs::write(&fwd.config_file, if use_b { &b } else { &a }).unwrap();
        let o = tb.fwd_cli(&["reload"]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "reload {i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        tb.send_probes("198.19.0.2", 7777, 3, 1, 1000);
    }
    assert!(sender.wait_with_output().unwrap().status.success());
    let s = sniffed(stream);
    assert_eq!(s["received"], n, "{s}");
    assert_eq!(s["seqs_missing"], 0, "{s}");
    // Ten B phases let 3 probes each through; the ten A phases dropped theirs.
    let p = sniffed(probes);
    assert_eq!(p["received"], 30, "{p}");
    assert_eq!(fwd.drop_count("filtered"), 30);
}
