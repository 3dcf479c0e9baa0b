//! Exhaustion: a flood into a forwarder with tiny rings (64 entries, 128 frames per
//! socket), so that the fill ring starves and the RX/TX rings fill. Asserted: fwd
//! neither crashes nor grows, stays responsive and forwards good traffic once the
//! flood ends, and its counters with the kernel's explain every frame the XDP
//! program redirected (XSK rx_dropped + rx_ring_full + fwd's rx) and every frame fwd received
//! (forwarded + drops by reason).

mod common;

use std::{thread, time::Duration};

use common::{tool, Fwd, Testbed};

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Frames per flooding process (two run side by side).
const FLOOD: u64 = 250_000;

fn stats(tb: &Testbed) -> serde_json::Value {
    let o = tb.fwd_cli(&["stats", "--json"]);
    assert!(o.status.success(), "fwd stopped answering: {}", out(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn sum(v: &serde_json::Value) -> u64 {
    v.as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum()
}

#[test]
fn flood_into_tiny_rings_is_counted_and_survived() {
    require_root!();
    let tb = Testbed::up();
    let cfg = tb.router_config().replace(
        "ring_size = 2048",
        "ring_size = 64\nframes_per_socket = 128",
    );
    assert!(cfg.contains("frames_per_socket = 128"));
    let mut fwd = Fwd::start(&tb, &cfg);
    // Resolve the next hop first: held frames are not what this test is about.
    let o = tb.exec(
        &tb.gen(),
        &["ping", "-c", "2", "-i", "0.2", "-W", "3", "198.19.128.1"],
    );
    assert!(o.status.success(), "{}", out(&o));
    thread::sleep(Duration::from_millis(300));
    let rss_before = fwd.status_kib("VmRSS");
    let s0 = stats(&tb);

    let mac = String::from_utf8_lossy(
        &tb.exec(
            &tb.fwd(),
            &["cat", &format!("/sys/class/net/{}/address", tb.port_a())],
        )
        .stdout,
    )
    .into_owned();
    let flooders: Vec<_> = (0..2)
        .map(|_| {
            tb.spawn(
                &tb.gen(),
                &[
                    "/usr/bin/python3",
                    &tool("flood.py"),
                    &format!("{}-g", tb.prefix),
                    mac.trim(),
                    "198.19.128.1",
                    &FLOOD.to_string(),
                ],
            )
        })
        .collect();
    // fwd answers while flooded.
    thread::sleep(Duration::from_millis(500));
    let during = stats(&tb);
    let mut sent = 0;
    let mut secs: f64 = 0.0;
    for f in flooders {
        let o = f.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", out(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        sent += v["sent"].as_u64().unwrap();
        secs = secs.max(v["secs"].as_f64().unwrap());
    }
    thread::sleep(Duration::from_millis(500));
    assert!(fwd.running(), "fwd died under the flood");
    let s1 = stats(&tb);
    let rss_after = fwd.status_kib("VmRSS");

    // Counter deltas over the flood: of port `p` at `path`, or of fwd's drops.
    let port = |p: usize, path: &[&str]| -> i64 {
        let get = |v: &serde_json::Value| {
            path.iter()
                .fold(&v["ports"][p], |v, k| &v[*k])
                .as_u64()
                .unwrap() as i64
        };
        get(&s1) - get(&s0)
    };
    let xdp_redirect = port(0, &["xdp", "xdp_redirect"]);
    let xsk_dropped = port(0, &["xsk", "rx_dropped"]);
    let fill_empty = port(0, &["xsk", "rx_fill_ring_empty_descs"]);
    let ring_full = port(0, &["xsk", "rx_ring_full"]);
    let rx = port(0, &["rx_packets"]);
    let tx = port(1, &["tx_packets"]);
    let drops = (sum(&s1["drops"]) - sum(&s0["drops"])) as i64;
    let tx_full = (s1["drops"]["tx_ring_full"].as_u64().unwrap()
        - s0["drops"]["tx_ring_full"].as_u64().unwrap()) as i64;
    println!(
        "flood: sent {sent} in {secs:.1} s ({:.0} pps); XDP redirected {xdp_redirect}; XSK rx_dropped {xsk_dropped} (fill ring empty {fill_empty}, rx ring full {ring_full}); fwd rx {rx}, forwarded {tx}, drops {drops} (tx_ring_full {tx_full}); RSS {rss_before} -> {rss_after} KiB; stats during flood: rx {}",
        sent as f64 / secs,
        during["ports"][0]["rx_packets"]
    );
    // Every frame the XDP program redirected reached fwd or was counted by the
    // kernel at the socket: rx_dropped (no fill-ring frame) or rx_ring_full (the
    // kernel counts the two apart). Warm-up ND frames may share the redirect count.
    assert!(
        (xdp_redirect - (xsk_dropped + ring_full + rx)).abs() <= 4,
        "redirected {xdp_redirect} != XSK dropped {xsk_dropped} + rx ring full {ring_full} + fwd rx {rx}"
    );
    // Every frame fwd received was forwarded or dropped for a counted reason.
    assert_eq!(
        rx,
        tx + drops,
        "fwd rx {rx} != forwarded {tx} + drops {drops}"
    );
    // The flood was more than the tiny rings take: the starvation is visible.
    assert!(
        xsk_dropped + drops > 0,
        "the flood did not exhaust anything"
    );
    assert!(
        rss_after < rss_before + 8 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );

    // Workers are not stuck: a numbered stream afterwards arrives whole.
    let sniff = tb.spawn(
        &tb.sink(),
        &[
            "python3",
            &tool("udp_probe.py"),
            "sniff",
            &format!("{}-s", tb.prefix),
            "7300",
            "200",
            "20",
        ],
    );
    thread::sleep(Duration::from_millis(300));
    let o = tb.exec(
        &tb.gen(),
        &[
            "python3",
            &tool("udp_probe.py"),
            "send",
            "198.19.128.1",
            "7300",
            "200",
            "64",
            "1",
            "2000",
        ],
    );
    assert!(o.status.success(), "{}", out(&o));
    let got = sniff.wait_with_output().unwrap();
    let got: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(got["received"], 200, "after the flood: {got}");
    let stopped = fwd.stop();
    assert_eq!(stopped.code, Some(0), "{}", stopped.stderr);
}
