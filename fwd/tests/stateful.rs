//! The stateful firewall and NAT through the real daemon: configs/firewall.toml and
//! configs/nat-gateway.toml as shipped, real TCP connections, a port forward, ICMP
//! errors translated back through NAT, and a full connection table.

mod common;

use std::{thread, time::Duration};

use common::{json_stdout, tool, Fwd, Testbed};

/// Runs tools/tcp_stream.py's server in `server_ns` on `listen`, a client in
/// `client_ns` to `connect`, and returns (server's report, client's report).
fn stream(
    tb: &Testbed,
    server_ns: &str,
    listen: (&str, u16),
    client_ns: &str,
    connect: (&str, u16),
    bytes: usize,
) -> (serde_json::Value, serde_json::Value) {
    let server = tb.spawn(
        server_ns,
        &[
            "python3",
            &tool("tcp_stream.py"),
            "server",
            listen.0,
            &listen.1.to_string(),
        ],
    );
    thread::sleep(Duration::from_millis(300));
    let client = tb.exec(
        client_ns,
        &[
            "python3",
            &tool("tcp_stream.py"),
            "client",
            connect.0,
            &connect.1.to_string(),
            &bytes.to_string(),
            "3",
        ],
    );
    assert!(
        client.status.success(),
        "client: {}",
        String::from_utf8_lossy(&client.stderr)
    );
    let out = server.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let server: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    (server, json_stdout(&client))
}

fn tcp_connect(tb: &Testbed, ns: &str, addr: &str, port: u16) -> String {
    let script = format!(
        "import socket\ntry:\n  socket.create_connection(('{addr}', {port}), timeout=3)\n  print('connected')\nexcept ConnectionRefusedError:\n  print('refused')\nexcept OSError as e:\n  print('error', e)"
    );
    String::from_utf8_lossy(&tb.exec(ns, &["python3", "-c", &script]).stdout)
        .trim()
        .to_string()
}

#[test]
fn firewall_lets_replies_in_and_refuses_new_inbound_connections() {
    require_root!();
    let tb = Testbed::up();
    let fwd = Fwd::start(&tb, &tb.shipped_config("firewall.toml"));
    tb.ping_sink();
    // Web out from the LAN works, replies come back (ESTABLISHED).
    let (server, client) = stream(
        &tb,
        &tb.sink(),
        ("198.19.0.2", 443),
        &tb.gen(),
        ("198.19.0.2", 443),
        2 << 20,
    );
    assert_eq!(server["sha256"], client["sha256"]);
    assert_eq!(server["peer"], "198.18.0.2", "no NAT in this config");
    // Window tracking followed Linux's TCP (window scaling, SACK, timestamps): no
    // segment of the transfer was out of window.
    let s = tb.stats();
    assert_eq!(s["conntrack"]["invalid"], 0, "{s}");
    // A new connection from outside: REJECT with tcp-reset, so it is refused at once.
    let listener = tb.spawn(&tb.gen(), &["python3", "-c", "import socket,time\ns=socket.socket(); s.bind(('198.18.0.2', 22)); s.listen(1); time.sleep(4)"]);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(tcp_connect(&tb, &tb.sink(), "198.18.0.2", 22), "refused");
    // A port the LAN may not use outbound is dropped by policy (times out).
    let o = tcp_connect(&tb, &tb.gen(), "198.19.0.2", 8000);
    assert!(o.starts_with("error"), "{o}");
    drop(listener);
    let s = tb.stats();
    assert!(s["drops"]["rejected"].as_u64().unwrap() >= 1, "{s}");
    let ct = json_stdout(&tb.fwd_cli(&["conntrack", "--json"]));
    assert!(
        ct["flows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f.as_str().unwrap().contains("dport=443")),
        "{ct}"
    );
    drop(fwd);
}

#[test]
fn nat_gateway_masquerades_and_forwards_a_port() {
    require_root!();
    let tb = Testbed::up();
    let fwd = Fwd::start(&tb, &tb.shipped_config("nat-gateway.toml"));
    tb.ping_sink();
    // Out through MASQUERADE: the server sees the gateway's address.
    let (server, client) = stream(
        &tb,
        &tb.sink(),
        ("198.19.0.2", 5001),
        &tb.gen(),
        ("198.19.0.2", 5001),
        10 << 20,
    );
    assert_eq!(server["bytes"], 10 << 20);
    assert_eq!(server["sha256"], client["sha256"], "content through NAT");
    assert_eq!(server["peer"], "198.19.0.1", "translated source");
    // In through the port forward: outside connects to the gateway's 8080, reaches
    // the LAN host's port 80, which sees the real client.
    let (server, client) = stream(
        &tb,
        &tb.gen(),
        ("198.18.0.2", 80),
        &tb.sink(),
        ("198.19.0.1", 8080),
        1 << 20,
    );
    assert_eq!(
        server["sha256"], client["sha256"],
        "content through the port forward"
    );
    assert_eq!(server["peer"], "198.19.0.2");
    let s = tb.stats();
    assert_eq!(s["conntrack"]["invalid"], 0, "every segment in window: {s}");
    // The gateway's own address still answers for itself (ping is the kernel's).
    assert!(tb
        .exec(&tb.sink(), &["ping", "-c", "1", "-W", "2", "198.19.0.1"])
        .status
        .success());
    let s = tb.stats();
    assert!(
        s["ports"][1]["xdp"]["xdp_nat_local"].as_u64().unwrap() > 0,
        "{s}"
    );
    drop(fwd);
}

#[test]
fn ttl_expiry_beyond_the_nat_comes_back_translated() {
    require_root!();
    let tb = Testbed::up();
    let cfg = format!(
        "{}\n[[routes]]\nprefix = \"198.19.200.0/24\"\nvia = \"198.19.0.2\"\n",
        tb.shipped_config("nat-gateway.toml")
    );
    let fwd = Fwd::start(&tb, &cfg);
    // Make the sink a router towards 198.19.200.0/24, so a TTL that runs out there
    // gets Linux's time exceeded, addressed to the gateway's masqueraded source.
    for cmd in [
        vec!["sysctl", "-qw", "net.ipv4.ip_forward=1"],
        vec![
            "ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1",
        ],
        vec!["ip", "link", "set", "d0", "up"],
        vec!["ip", "link", "set", "d1", "up"],
        vec!["ip", "route", "add", "198.19.200.0/24", "dev", "d0"],
    ] {
        assert!(tb.exec(&tb.sink(), &cmd).status.success(), "{cmd:?}");
    }
    tb.ping_sink();
    let o = tb.exec(
        &tb.gen(),
        &["ping", "-c", "1", "-t", "2", "-W", "3", "198.19.200.1"],
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("From 198.19.0.2") && text.contains("Time to live exceeded"),
        "{text}"
    );
    drop(fwd);
}

#[test]
fn a_full_connection_table_evicts_unanswered_flows_and_never_grows() {
    require_root!();
    let tb = Testbed::up();
    let cfg = tb
        .shipped_config("nat-gateway.toml")
        .replace("max_entries = 65536", "max_entries = 16");
    let fwd = Fwd::start(&tb, &cfg);
    tb.ping_sink();
    // 64 UDP flows (64 source ports) against a 16-entry table.
    tb.send_probes("198.19.0.2", 9999, 256, 64, 200);
    thread::sleep(Duration::from_millis(400));
    // Unanswered UDP flows are not ASSURED: like Linux's early_drop, a new flow
    // evicts one of them rather than being refused; the table never grows.
    let s = tb.stats();
    let ct = &s["conntrack"];
    assert!(ct["early_drops"].as_u64().unwrap() >= 64 - 16, "{s}");
    assert!(ct["entries"].as_u64().unwrap() <= 16, "{s}");
    let listing = json_stdout(&tb.fwd_cli(&["conntrack", "--json"]));
    let listed = listing["flows"].as_array().unwrap();
    assert!(listed.len() <= 16, "{listing}");
    // --count: the same table counted in the worker, no line per flow. The UDP
    // probes were never answered ([UNREPLIED]); the ping was.
    let counted = json_stdout(&tb.fwd_cli(&["conntrack", "--json", "--count"]));
    let n = |k: &str| counted["counts"][k].as_u64().unwrap_or(0);
    assert!(counted["flows"].as_array().unwrap().is_empty(), "{counted}");
    assert_eq!(
        n("udp") + n("icmp"),
        listed.len() as u64,
        "{counted} vs {listing}"
    );
    let unreplied = listed
        .iter()
        .filter(|f| f.as_str().unwrap().contains("[UNREPLIED]"))
        .count() as u64;
    assert_eq!(
        (n("unreplied"), n("udp")),
        (unreplied, unreplied),
        "{counted}"
    );
    drop(fwd);
}
