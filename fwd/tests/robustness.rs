//! Malformed traffic through the real daemon: every class of broken frame from
//! tools/malformed.py is sent from the generator while a numbered UDP stream runs
//! beside it. fwd keeps forwarding the stream (no loss), counts each bad frame under
//! its reason (exactly), and forwards or drops each class as Linux's own forwarding
//! does with the same frames (measured in a second testbed whose middle namespace
//! forwards with the kernel), except for the differences documented in CLASSES.
//! The table this test checks is in the "Reliability" section of README.md.

mod common;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Child,
    thread,
    time::{Duration, Instant},
};

use common::{tool, Fwd, Testbed};

/// Frames per class.
const COUNT: u64 = 5;

/// The system python has python3-scapy.
const PY: &str = "/usr/bin/python3";

/// (class, Linux forwards it, fwd forwards it, fwd's counter for it, why they differ).
/// `xdp.*` counters are the XDP program's (frames it passed to the kernel, which in
/// fwd's namespace does not forward: ip_forward=0); `drops.*` and `malformed.*` are
/// fwd's own.
const CLASSES: &[(&str, bool, bool, &str, &str)] = &[
    ("good_v4", true, true, "", ""),
    ("good_v6", true, true, "", ""),
    ("ipv4_truncated_header", false, false, "xdp.xdp_pass_other", ""),
    ("ipv4_ihl_below_5", false, false, "malformed.bad_ihl", ""),
    ("ipv4_total_len_past_frame", false, false, "malformed.bad_total_len", ""),
    ("ipv4_total_len_below_header", false, false, "malformed.bad_total_len", ""),
    ("ipv4_bad_checksum", false, false, "drops.bad_checksum", ""),
    ("ipv4_version_6", false, false, "malformed.bad_version", ""),
    ("ipv4_options_rr", true, true, "", ""),
    ("ipv4_ttl_1", false, false, "drops.ttl_exceeded", ""),
    ("ipv4_ttl_0", false, false, "drops.ttl_exceeded", ""),
    ("ipv4_non_first_fragment", true, true, "", ""),
    ("ipv4_tcp_data_offset_2", true, true, "", ""),
    ("ipv4_tcp_cut_to_10_bytes", true, true, "", ""),
    ("ipv6_payload_len_past_frame", false, false, "malformed.bad_payload_len", ""),
    ("ipv6_payload_len_short", true, true, "", ""),
    (
        "ipv6_9_ext_headers",
        true,
        false,
        "malformed.too_many_ext_headers",
        "a firewall must find the transport header to judge a packet; RFC 7112 and every firewall bound the chain (fwd: 8)",
    ),
    (
        "ipv6_ext_header_cut",
        true,
        false,
        "malformed.bad_ext_header",
        "Linux forwards without reading destination options; fwd walks the chain to find the transport header",
    ),
    (
        "ipv6_hop_by_hop_second",
        true,
        false,
        "malformed.hbh_not_first",
        "RFC 8200 4.1: hop-by-hop only directly after the IPv6 header; Linux checks this only for local delivery",
    ),
    ("ipv6_non_first_fragment", true, true, "", ""),
    ("ipv6_hop_limit_1", false, false, "drops.ttl_exceeded", ""),
    ("vlan_tagged", false, false, "drops.not_for_us", ""),
    ("two_vlan_tags", false, false, "xdp.xdp_pass_other", ""),
    ("wrong_dst_mac", false, false, "drops.not_for_us", ""),
];

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Each class and the destination address it is sent to.
fn class_dsts() -> BTreeMap<String, String> {
    let o = std::process::Command::new(PY)
        .args([&tool("malformed.py"), "list"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["dst"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The MAC address of `dev` in namespace `ns`.
fn mac(tb: &Testbed, ns: &str, dev: &str) -> String {
    let o = tb.exec(ns, &["cat", &format!("/sys/class/net/{dev}/address")]);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Pings the sink's far addresses once so that the router has its next hops
/// resolved before the classes are counted.
fn warm_up(tb: &Testbed) {
    for dst in ["198.19.128.1", "2001:db8:c::1"] {
        let o = tb.exec(&tb.gen(), &["ping", "-c", "2", "-i", "0.2", "-W", "3", dst]);
        assert!(o.status.success(), "warm-up ping {dst}: {}", out(&o));
    }
}

/// A sniffer on the sink's interface counting frames per destination address.
struct Sniffer {
    child: Child,
    stop: PathBuf,
}

impl Sniffer {
    fn start(tb: &Testbed) -> Self {
        let stop = std::env::temp_dir().join(format!("fwd-{}-sniff.stop", tb.prefix));
        let _ = std::fs::remove_file(&stop);
        let child = tb.spawn(
            &tb.sink(),
            &[
                PY,
                &tool("malformed.py"),
                "sniff",
                &format!("{}-s", tb.prefix),
                stop.to_str().unwrap(),
                "120",
            ],
        );
        thread::sleep(Duration::from_millis(500));
        Sniffer { child, stop }
    }

    fn finish(self) -> BTreeMap<String, u64> {
        thread::sleep(Duration::from_millis(300));
        std::fs::write(&self.stop, "").unwrap();
        let o = self.child.wait_with_output().unwrap();
        let _ = std::fs::remove_file(&self.stop);
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("sniffer: {e}: {}", out(&o)))
    }
}

fn send(tb: &Testbed, router_mac: &str, class: &str) {
    let o = tb.exec(
        &tb.gen(),
        &[
            PY,
            &tool("malformed.py"),
            "send",
            &format!("{}-g", tb.prefix),
            router_mac,
            class,
            &COUNT.to_string(),
        ],
    );
    assert!(o.status.success(), "send {class}: {}", out(&o));
}

/// fwd's counters as one flat map: drops.X, malformed.X, events.X, xdp.X (summed
/// over ports).
fn counters(tb: &Testbed) -> BTreeMap<String, u64> {
    let o = tb.fwd_cli(&["stats", "--json"]);
    assert!(o.status.success(), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut m = BTreeMap::new();
    for group in ["drops", "malformed", "events"] {
        for (k, n) in v[group].as_object().unwrap() {
            m.insert(format!("{group}.{k}"), n.as_u64().unwrap());
        }
    }
    for p in v["ports"].as_array().unwrap() {
        for (k, n) in p["xdp"].as_object().unwrap() {
            *m.entry(format!("xdp.{k}")).or_default() += n.as_u64().unwrap();
        }
    }
    m
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// Counters that move with the good stream and the ICMP errors, not with a class.
fn background(k: &str) -> bool {
    matches!(
        k,
        "events.forwarded"
            | "events.idle_rounds"
            | "events.sleeps"
            | "events.busy_ns"
            | "events.icmp_sent"
            | "xdp.xdp_redirect"
            | "xdp.xdp_pass_arp"
            | "xdp.xdp_pass_nd"
            | "xdp.xdp_pass_mcast"
            | "xdp.xdp_pass_local"
    ) || k.starts_with("events.neigh")
}

#[test]
fn malformed_frames_are_counted_by_reason_and_judged_like_linux() {
    require_root!();
    let dsts = class_dsts();
    assert_eq!(
        dsts.len(),
        CLASSES.len(),
        "malformed.py and CLASSES disagree"
    );

    // Linux forwarding the same frames: a testbed whose middle namespace forwards.
    let linux = Testbed::up();
    let o = linux.exec(
        &linux.fwd(),
        &[
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
        ],
    );
    assert!(o.status.success(), "{}", out(&o));
    // The routes configs/router.toml gives fwd.
    for route in [
        ["198.19.128.0/24", "198.19.0.2"],
        ["2001:db8:c::/64", "2001:db8:b::2"],
    ] {
        let o = linux.exec(
            &linux.fwd(),
            &["ip", "route", "add", route[0], "via", route[1]],
        );
        assert!(o.status.success(), "{}", out(&o));
    }
    warm_up(&linux);
    let linux_mac = mac(&linux, &linux.fwd(), &linux.port_a());
    let sniff = Sniffer::start(&linux);
    for (class, ..) in CLASSES {
        send(&linux, &linux_mac, class);
    }
    let linux_seen = sniff.finish();
    drop(linux);

    // fwd, with a numbered UDP stream beside the classes.
    let tb = Testbed::up();
    let fwd = Fwd::start(&tb, &tb.router_config());
    warm_up(&tb);
    let fwd_mac = mac(&tb, &tb.fwd(), &tb.port_a());
    let probes = 300u32;
    let stream_sink = tb.spawn(
        &tb.sink(),
        &[
            "python3",
            &tool("udp_probe.py"),
            "sniff",
            &format!("{}-s", tb.prefix),
            "7100",
            &probes.to_string(),
            "60",
        ],
    );
    thread::sleep(Duration::from_millis(300));
    let mut stream = tb.spawn(
        &tb.gen(),
        &[
            "python3",
            &tool("udp_probe.py"),
            "send",
            "198.19.128.1",
            "7100",
            &probes.to_string(),
            "64",
            "1",
            "20000",
        ],
    );
    let sniff = Sniffer::start(&tb);
    let mut moved = BTreeMap::new();
    for (class, ..) in CLASSES {
        let before = counters(&tb);
        send(&tb, &fwd_mac, class);
        thread::sleep(Duration::from_millis(150));
        let d = delta(&before, &counters(&tb));
        moved.insert(
            class.to_string(),
            d.into_iter()
                .filter(|(k, _)| !background(k))
                .collect::<BTreeMap<_, _>>(),
        );
    }
    let fwd_seen = sniff.finish();
    let deadline = Instant::now() + Duration::from_secs(30);
    while stream.try_wait().unwrap().is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    let _ = stream.kill();
    let stream_out = stream_sink.wait_with_output().unwrap();
    let stream_got: serde_json::Value = serde_json::from_slice(&stream_out.stdout)
        .unwrap_or_else(|e| panic!("stream sniffer: {e}: {}", out(&stream_out)));

    // The table, printed whatever happens next.
    let seen = |m: &BTreeMap<String, u64>, class: &str| m.get(&dsts[class]).copied().unwrap_or(0);
    println!("{:<30} {:>6} {:>6}  fwd counters", "class", "linux", "fwd");
    for (class, ..) in CLASSES {
        println!(
            "{:<30} {:>6} {:>6}  {:?}",
            class,
            seen(&linux_seen, class),
            seen(&fwd_seen, class),
            moved[*class]
        );
    }
    println!("good stream: {stream_got}");

    let mut failures = Vec::new();
    for &(class, linux_fwds, fwd_fwds, counter, why) in CLASSES {
        let outcome = |n: u64| match n {
            0 => Some(false),
            n if n == COUNT => Some(true),
            _ => None,
        };
        let l = seen(&linux_seen, class);
        let f = seen(&fwd_seen, class);
        if outcome(l) != Some(linux_fwds) {
            failures.push(format!(
                "{class}: Linux forwarded {l} of {COUNT}, the table says {}",
                if linux_fwds { "all" } else { "none" }
            ));
        }
        if outcome(f) != Some(fwd_fwds) {
            failures.push(format!(
                "{class}: fwd forwarded {f} of {COUNT}, the table says {}",
                if fwd_fwds { "all" } else { "none" }
            ));
        }
        if linux_fwds != fwd_fwds && why.is_empty() {
            failures.push(format!("{class}: fwd differs from Linux without a reason"));
        }
        let want: BTreeMap<String, u64> = if counter.is_empty() {
            BTreeMap::new()
        } else {
            let mut w = BTreeMap::from([(counter.to_string(), COUNT)]);
            if counter.starts_with("malformed.") {
                w.insert("drops.malformed".into(), COUNT);
            }
            w
        };
        if moved[class] != want {
            failures.push(format!(
                "{class}: counters moved {:?}, expected {want:?}",
                moved[class]
            ));
        }
    }
    assert_eq!(
        stream_got["received"], probes,
        "good traffic lost beside the malformed frames: {stream_got}"
    );
    assert_eq!(stream_got["seqs_missing"], 0, "{stream_got}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let stopped = fwd.stop();
    assert_eq!(stopped.code, Some(0), "{}", stopped.stderr);
}
