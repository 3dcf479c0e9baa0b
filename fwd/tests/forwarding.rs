//! fwd forwarding between real namespaces: the daemon, real pings, a real TCP
//! stream, and the wire checked on the far side.

mod common;

use std::{thread, time::Duration};

use common::{sniffed, tool, Fwd, Testbed};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn first_ping_to_unresolved_next_hop_is_answered_v4_and_v6() {
    require_root!();
    let tb = Testbed::up();
    let fwd = Fwd::start(&tb, &tb.router_config());
    // The sink's MAC is unknown to fwd until the kernel resolves it: the first echo
    // request must be held, not dropped.
    let o = tb.exec(&tb.gen(), &["ping", "-c", "1", "-W", "3", "198.19.0.2"]);
    assert!(o.status.success(), "v4 first ping: {}", stdout(&o));
    let o = tb.exec(
        &tb.gen(),
        &["ping", "-6", "-c", "1", "-W", "3", "2001:db8:b::2"],
    );
    assert!(o.status.success(), "v6 first ping: {}", stdout(&o));
    // Via a configured next hop (routes in router.toml).
    let o = tb.exec(
        &tb.gen(),
        &["ping", "-c", "3", "-i", "0.2", "-W", "3", "198.19.128.1"],
    );
    assert!(o.status.success(), "v4 via route: {}", stdout(&o));
    let o = tb.exec(
        &tb.gen(),
        &[
            "ping",
            "-6",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "3",
            "2001:db8:c::1",
        ],
    );
    assert!(o.status.success(), "v6 via route: {}", stdout(&o));
    let s = fwd.stats();
    assert!(s["events"]["neigh_held"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["drops"]["neigh_overflow"], 0);
    assert_eq!(s["drops"]["neigh_timeout"], 0);
    let stopped = fwd.stop();
    assert_eq!(stopped.code, Some(0), "{}", stopped.stderr);
}

#[test]
fn tcp_stream_of_50_mb_arrives_intact() {
    require_root!();
    let tb = Testbed::up();
    let fwd = Fwd::start(&tb, &tb.router_config());
    let mut server = tb.spawn(
        &tb.sink(),
        &[
            "python3",
            &tool("tcp_stream.py"),
            "server",
            "198.19.0.2",
            "5001",
        ],
    );
    thread::sleep(Duration::from_millis(300));
    let n = 50 * 1024 * 1024;
    let client = tb.exec(
        &tb.gen(),
        &[
            "python3",
            &tool("tcp_stream.py"),
            "client",
            "198.19.0.2",
            "5001",
            &n.to_string(),
            "7",
        ],
    );
    assert!(
        client.status.success(),
        "client: {}",
        String::from_utf8_lossy(&client.stderr)
    );
    let sent: serde_json::Value = serde_json::from_str(stdout(&client).trim()).unwrap();
    let got = server.wait_with_output_timeout();
    let got: serde_json::Value = serde_json::from_str(got.lines().last().unwrap()).unwrap();
    assert_eq!(sent["bytes"], n);
    assert_eq!(got["bytes"], n, "byte count at the server");
    assert_eq!(got["sha256"], sent["sha256"], "content at the server");
    let s = fwd.stats();
    assert!(
        s["ports"][1]["tx_packets"].as_u64().unwrap() > 30_000,
        "{s}"
    );
    drop(fwd);
}

trait WaitOutput {
    fn wait_with_output_timeout(&mut self) -> String;
}

impl WaitOutput for std::process::Child {
    fn wait_with_output_timeout(&mut self) -> String {
        for _ in 0..600 {
            if self.try_wait().unwrap().is_some() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.kill();
        let mut out = String::new();
        use std::io::Read;
        self.stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        out
    }
}

#[test]
fn forwarded_packets_have_ttl_one_lower_and_valid_checksums() {
    require_root!();
    let tb = Testbed::up();
    let fwd = Fwd::start(&tb, &tb.router_config());
    for (dst, ttl) in [("198.19.0.2", 64), ("2001:db8:b::2", 64), ("198.19.0.2", 2)] {
        let sniff = tb.sniff(9999, 200, 8);
        tb.send_probes_ttl(dst, 9999, 200, ttl, 1, 1000);
        let r = sniffed(sniff);
        assert_eq!(r["received"], 200, "{dst}: {r}");
        assert_eq!(r["seqs_missing"], 0, "{dst}: {r}");
        assert_eq!(
            r["ttls"],
            serde_json::json!([ttl - 1]),
            "{dst}: TTL/hop limit on the wire: {r}"
        );
        assert_eq!(r["bad_ip_checksum"], 0, "{dst}: {r}");
        assert_eq!(r["bad_udp_checksum"], 0, "{dst}: {r}");
    }
    drop(fwd);
}

#[test]
fn ttl_one_gets_time_exceeded_from_fwd() {
    require_root!();
    let tb = Testbed::up();
    let fwd = Fwd::start(&tb, &tb.router_config());
    // Resolve the path first so the only thing tested is the TTL.
    tb.ping_sink();
    let o = tb.exec(
        &tb.gen(),
        &["ping", "-c", "1", "-t", "1", "-W", "3", "198.19.0.2"],
    );
    let text = stdout(&o);
    assert!(
        text.contains("From 198.18.0.1") && text.contains("Time to live exceeded"),
        "{text}"
    );
    let o = tb.exec(
        &tb.gen(),
        &[
            "ping",
            "-6",
            "-c",
            "1",
            "-t",
            "1",
            "-W",
            "3",
            "2001:db8:b::2",
        ],
    );
    let text = stdout(&o);
    assert!(
        text.contains("From 2001:db8:a::1") && text.contains("Time exceeded"),
        "{text}"
    );
    let s = fwd.stats();
    assert_eq!(s["drops"]["ttl_exceeded"], 2, "{s}");
    assert_eq!(s["events"]["icmp_sent"], 2, "{s}");
}

#[test]
fn unknown_destination_is_counted_and_answered_unreachable() {
    require_root!();
    let tb = Testbed::up();
    let fwd = Fwd::start(&tb, &tb.router_config());
    let o = tb.exec(
        &tb.gen(),
        &["ping", "-c", "3", "-i", "0.2", "-W", "1", "198.18.200.1"],
    );
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains("Destination Net Unreachable"),
        "{}",
        stdout(&o)
    );
    let o = tb.exec(
        &tb.gen(),
        &[
            "ping",
            "-6",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "1",
            "2001:db8:ff::1",
        ],
    );
    assert!(!o.status.success());
    assert!(stdout(&o).contains("No route"), "{}", stdout(&o));
    assert_eq!(fwd.drop_count("no_route"), 5);
}

#[test]
fn stops_cleanly_and_a_crash_leftover_is_replaced() {
    require_root!();
    let tb = Testbed::up();
    let fwd = Fwd::start(&tb, &tb.router_config());
    assert!(tb.xdp_attached());
    let s = fwd.stop();
    assert_eq!(s.code, Some(0), "{}", s.stderr);
    assert!(s.stdout.contains("stopped after"), "{}", s.stdout);
    assert!(!tb.xdp_attached(), "XDP program left behind after SIGINT");

    // A crash leaves the program attached; the next start replaces it and forwards.
    let fwd = Fwd::start(&tb, &tb.router_config());
    fwd.kill();
    assert!(tb.xdp_attached());
    let fwd = Fwd::start(&tb, &tb.router_config());
    tb.ping_sink();
    let s = fwd.stop();
    assert_eq!(s.code, Some(0));
    assert!(s.stderr.contains("stale"), "{}", s.stderr);
    assert!(!tb.xdp_attached());
}

#[test]
fn bad_config_exits_2_naming_the_line_and_attaches_nothing() {
    require_root!();
    let tb = Testbed::up();
    let cfg = tb
        .router_config()
        .replace("via = \"198.19.0.2\"", "via = \"198.19.0.300\"");
    let path = std::env::temp_dir().join(format!("fwd-bad-{}.toml", tb.prefix));
    std::fs::write(&path, &cfg).unwrap();
    let o = tb.exec(
        &tb.fwd(),
        &[
            env!("CARGO_BIN_EXE_fwd"),
            "run",
            "-c",
            path.to_str().unwrap(),
        ],
    );
    let _ = std::fs::remove_file(&path);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    let line = cfg
        .lines()
        .position(|l| l.contains("198.19.0.300"))
        .unwrap()
        + 1;
    assert!(err.contains(&format!(":{line}: routes[0].via: ")), "{err}");
    assert!(!tb.xdp_attached());
    // An interface that does not exist: also bad input, also nothing attached.
    let cfg = tb
        .router_config()
        .replace(&format!("\"{}\"", tb.port_b()), "\"nosuchif0\"");
    std::fs::write(&path, &cfg).unwrap();
    let o = tb.exec(
        &tb.fwd(),
        &[
            env!("CARGO_BIN_EXE_fwd"),
            "run",
            "-c",
            path.to_str().unwrap(),
        ],
    );
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("nosuchif0"));
    assert!(!tb.xdp_attached());
}
