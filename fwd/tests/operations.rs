//! Running fwd as an appliance: the control socket, reload under traffic, SIGTERM
//! under load, two queues on two workers, and counters that match the wire.

mod common;

use std::{thread, time::Duration};

use common::{sniffed, Fwd, Testbed};

#[test]
fn stats_over_the_control_socket_match_the_wire() {
    require_root!();
    let tb = Testbed::up();
    let fwd = Fwd::start(&tb, &tb.router_config());
    // Resolve the next hop, then count exactly what a known stream adds.
    tb.ping_sink();
    thread::sleep(Duration::from_millis(300));
    let before = tb.stats();
    let sniff = tb.sniff(9999, 500, 10);
    tb.send_probes("198.19.0.2", 9999, 500, 1, 200);
    let seen = sniffed(sniff);
    thread::sleep(Duration::from_millis(300));
    let after = tb.stats();
    let delta = |p: usize, k: &str| {
        after["ports"][p][k].as_u64().unwrap() - before["ports"][p][k].as_u64().unwrap()
    };
    assert_eq!(seen["received"], 500, "{seen}");
    assert_eq!(
        delta(1, "tx_packets"),
        500,
        "fwd's tx on the sink port = frames on the sink's wire"
    );
    assert_eq!(delta(0, "rx_packets"), 500);
    // The human table names the ports and the sockets' kernel counters.
    let table = String::from_utf8_lossy(&tb.fwd_cli(&["stats"]).stdout).into_owned();
    assert!(
        table.contains(&tb.port_a()) && table.contains("fill_empty"),
        "{table}"
    );
    drop(fwd);
}

#[test]
fn twenty_reloads_under_traffic_lose_nothing_and_bad_reloads_are_refused() {
    require_root!();
    let tb = Testbed::up();
    let base = tb.router_config();
    let fwd = Fwd::start(&tb, &base);
    tb.ping_sink();
    // Two valid configs that differ in their routes.
    let other = format!("{base}\n[[routes]]\nprefix = \"198.19.200.0/24\"\nvia = \"198.19.0.2\"\n");
    let n = 3000;
    let sniff = tb.sniff(9999, n, 20);
    let args = Testbed::probe_args("198.19.0.2", 9999, n, 64, 1, 1000);
    let sender = tb.spawn(
        &tb.gen(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    for i in 0..20 {
        std::fs::write(&fwd.config_file, if i % 2 == 0 { &other } else { &base }).unwrap();
        let o = tb.fwd_cli(&["reload"]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "reload {i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        thread::sleep(Duration::from_millis(100));
    }
    // A broken config is refused with its error, and traffic goes on.
    std::fs::write(
        &fwd.config_file,
        base.replace("via = \"198.19.0.2\"", "via = \"not-an-address\""),
    )
    .unwrap();
    let o = tb.fwd_cli(&["reload"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("routes[0].via"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Changing a port is refused explicitly, never half-applied.
    std::fs::write(
        &fwd.config_file,
        base.replace("queues = [0]\nxdp_mode", "queues = [0, 1]\nxdp_mode"),
    )
    .unwrap();
    let o = tb.fwd_cli(&["reload"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("need a restart"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(sender.wait_with_output().unwrap().status.success());
    let seen = sniffed(sniff);
    assert_eq!(seen["received"], n, "{seen}");
    assert_eq!(seen["seqs_missing"], 0, "{seen}");
    let s = tb.stats();
    assert_eq!(s["reloads"], 22);
    assert!(
        s["last_reload"].as_str().unwrap().starts_with("refused"),
        "{s}"
    );
    // SIGHUP reloads too.
    std::fs::write(&fwd.config_file, &base).unwrap();
    fwd.signal("HUP");
    thread::sleep(Duration::from_millis(300));
    let s = tb.stats();
    assert_eq!(s["reloads"], 23);
    assert!(s["last_reload"].as_str().unwrap().starts_with("ok"), "{s}");
    drop(fwd);
}

#[test]
fn sigterm_under_load_exits_cleanly() {
    require_root!();
    let tb = Testbed::up();
    let fwd = Fwd::start(&tb, &tb.router_config());
    tb.ping_sink();
    let args = Testbed::probe_args("198.19.0.2", 9999, 200_000, 64, 8, 0);
    let mut sender = tb.spawn(
        &tb.gen(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    thread::sleep(Duration::from_millis(700));
    fwd.signal("TERM");
    let stopped = fwd.stop();
    let _ = sender.kill();
    let _ = sender.wait();
    assert_eq!(stopped.code, Some(0), "{}", stopped.stderr);
    assert!(stopped.stdout.contains("stopped after"));
    assert!(!tb.xdp_attached(), "XDP program left after SIGTERM");
}

#[test]
fn two_queues_are_served_by_two_workers_and_counters_add_up() {
    require_root!();
    let tb = Testbed::with_queues(2);
    let cfg = tb
        .router_config()
        .replace("queues = [0]", "queues = [0, 1]")
        .replace("cores = [1]", "cores = [0, 1]");
    let fwd = Fwd::start(&tb, &cfg);
    tb.ping_sink();
    let sniff = tb.sniff(9999, 2000, 15);
    // 32 source ports: the flow hash spreads them over both queues.
    tb.send_probes("198.19.0.2", 9999, 2000, 32, 200);
    let seen = sniffed(sniff);
    assert_eq!(seen["received"], 2000, "{seen}");
    thread::sleep(Duration::from_millis(300));
    let s = tb.stats();
    let workers = s["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    let per_worker: Vec<u64> = workers
        .iter()
        .map(|w| w["rx_packets"].as_u64().unwrap())
        .collect();
    assert!(
        per_worker.iter().all(|&n| n > 100),
        "both workers got traffic: {per_worker:?}"
    );
    let port_rx: u64 = s["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["rx_packets"].as_u64().unwrap())
        .sum();
    assert_eq!(
        per_worker.iter().sum::<u64>(),
        port_rx,
        "per-worker counters add up to the ports'"
    );
    assert_eq!(
        workers[0]["queues"],
        serde_json::json!([[tb.port_a(), 0], [tb.port_b(), 0]])
    );
    assert_eq!(
        workers[1]["queues"],
        serde_json::json!([[tb.port_a(), 1], [tb.port_b(), 1]])
    );
    drop(fwd);
}

#[test]
fn prometheus_metrics_are_served_when_asked_for() {
    require_root!();
    let tb = Testbed::up();
    let cfg = format!(
        "{}\n[metrics]\nlisten = \"127.0.0.1:9464\"\n",
        tb.router_config()
    );
    let fwd = Fwd::start(&tb, &cfg);
    assert!(tb
        .exec(
            &tb.gen(),
            &["ping", "-c", "2", "-i", "0.2", "-W", "3", "198.19.0.2"]
        )
        .status
        .success());
    thread::sleep(Duration::from_millis(300));
    let o = tb.exec(
        &tb.fwd(),
        &["python3", "-c", "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9464/metrics', timeout=5).read().decode())"],
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("# TYPE fwd_rx_packets_total counter"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "fwd_tx_packets_total{{interface=\"{}\"}} 2",
            tb.port_b()
        )),
        "{text}"
    );
    assert!(
        text.contains("fwd_drops_total{reason=\"no_route\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("fwd_pipeline_latency_seconds_bucket{le=\"+Inf\"}"),
        "{text}"
    );
    drop(fwd);
}
