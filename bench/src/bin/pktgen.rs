//! pktgen: sends numbered, timestamped test frames out of one interface.
//! Exit codes: 0 ok, 1 runtime failure, 2 bad input.

use std::{
    net::IpAddr,
    path::PathBuf,
    process::ExitCode,
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use bench::{
    afxdp::{self, Bounds, TxOptions},
    live::{self, LiveOptions},
    traffic::{Proto, Sizes, TrafficSpec, Vary},
    EXIT_BAD_INPUT, EXIT_OK, EXIT_RUNTIME,
};
use clap::{Parser, ValueEnum};
use fwd::xsk::BindMode;

/// pktgen: a traffic generator for benchmarking forwarders.
///
/// Sends Ethernet/IPv4|IPv6 + UDP|TCP|ICMP frames of a fixed size (64..1518 bytes,
/// counting the FCS, as RFC 2544 does) or IMIX, spread over N flows (the source port
/// varies, then the source address), at a target rate or as fast as it can, for a
/// count or a duration. Each frame carries a magic, a sequence number and a
/// CLOCK_MONOTONIC send timestamp right after the transport header, which `sink`
/// reads for loss, reordering, duplicates and one-way latency (same host clock).
///
/// Two engines:
///   afxdp  AF_XDP TX socket. Copy mode on veth: each frame becomes an skb, so the
///          receiving kernel stack sees it (what a Linux-forwarding baseline needs).
///          Real UDP/TCP/ICMP checksums. ~1 Mpps on veth.
///   live   BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (kernel >= 5.18) redirecting
///          into the interface: several Mpps on veth. IPv4/UDP, one size, UDP
///          checksum 0 ("none", RFC 768). The peer interface needs an XDP program or
///          GRO on to accept redirected frames.
///
/// A progress line goes to stderr every second; the summary is JSON on stdout (or
/// in --json FILE). Exit codes: 0 ok, 1 runtime failure, 2 bad input.
#[derive(Parser)]
#[command(
    version,
    about,
    long_about,
    after_help = "Examples:\n  \
    # 1 Mpps of 64-byte UDP for 10 s, 100 flows, from the testbed's generator namespace\n  \
    ip netns exec fwd-gen pktgen -i fwd-g --dst-mac 02:00:00:00:00:0a \\\n      \
    --src 198.18.0.2 --dst 198.19.128.1 --flows 100 --rate 1000000 --duration 10\n  \
    # As fast as possible with live frames, 50 M frames at most\n  \
    pktgen -i fwd-g --dst-mac 02:00:00:00:00:0a --engine live --rate max --count 50000000"
)]
struct Args {
    /// Interface to send on (in the current network namespace).
    #[arg(short, long)]
    interface: String,
    #[arg(long, value_enum, default_value_t = Engine::Afxdp)]
    engine: Engine,
    /// Destination MAC: the next hop's (the forwarder's ingress port).
    #[arg(long)]
    dst_mac: String,
    /// Source MAC (default: the interface's own).
    #[arg(long)]
    src_mac: Option<String>,
    /// Source address (IPv4 or IPv6); every 4096 flows step it up by one.
    #[arg(long, default_value = "198.18.0.2")]
    src: IpAddr,
    /// Destination address, same family as --src.
    #[arg(long, default_value = "198.19.128.1")]
    dst: IpAddr,
    #[arg(long, value_enum, default_value_t = Proto::Udp)]
    proto: Proto,
    /// First source port; flow i uses sport + (i % 4096).
    #[arg(long, default_value_t = 1024)]
    sport: u16,
    #[arg(long, default_value_t = 9)]
    dport: u16,
    /// Number of flows (distinct source port/address pairs).
    #[arg(long, default_value_t = 1)]
    flows: u32,
    /// Which end the flows vary: src (a client's connections) or dst (their
    /// replies: give the forward run's --dst/--dport as --src/--sport and its
    /// --src/--sport as --dst/--dport, from the other side).
    #[arg(long, value_enum, default_value_t = Vary::Src)]
    vary: Vary,
    /// Start at this flow (frame k is flow (first_flow + k) % flows): successive
    /// runs with growing offsets send only flows no earlier run sent.
    #[arg(long, default_value_t = 0)]
    first_flow: u64,
    /// Frame size in bytes including the 4-byte FCS (64..1518), or "imix".
    #[arg(long, default_value = "64")]
    size: Sizes,
    /// Target rate in frames per second, or "max".
    #[arg(long, default_value = "max")]
    rate: String,
    /// Stop after this many frames.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this many seconds (default 10; every run is bounded in time).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 64)]
    ttl: u8,
    /// Pin to this CPU core (keep it off the forwarder's core).
    #[arg(long)]
    core: Option<usize>,
    /// AF_XDP queue id (afxdp engine).
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// AF_XDP bind mode (afxdp engine): auto, copy or zero-copy.
    #[arg(long, default_value = "auto", value_parser = parse_bind)]
    bind: BindMode,
    /// Write the JSON summary here instead of stdout.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress lines.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Engine {
    Afxdp,
    Live,
}

fn parse_bind(s: &str) -> Result<BindMode, String> {
    match s {
        "auto" => Ok(BindMode::Auto),
        "copy" => Ok(BindMode::Copy),
        "zero-copy" => Ok(BindMode::ZeroCopy),
        _ => Err(format!("'{s}' is not one of auto, copy, zero-copy")),
    }
}

fn parse_rate(s: &str) -> Result<Option<f64>, String> {
    if s == "max" {
        return Ok(None);
    }
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(Some(r)),
        _ => Err(format!(
            "--rate '{s}' is neither a positive number of frames per second nor 'max'"
        )),
    }
}

fn bad(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("pktgen: {msg}");
    ExitCode::from(EXIT_BAD_INPUT)
}

fn main() -> ExitCode {
    let a = Args::parse();
    let rate = match parse_rate(&a.rate) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    if !(a.duration > 0.0 && a.duration.is_finite()) {
        return bad("--duration must be a positive number of seconds");
    }
    let dst_mac = match bench::parse_mac(&a.dst_mac) {
        Ok(m) => m,
        Err(e) => return bad(format!("--dst-mac: {e}")),
    };
    let src_mac = match a
        .src_mac
        .as_deref()
        .map_or_else(|| bench::if_mac(&a.interface), bench::parse_mac)
    {
        Ok(m) => m,
        Err(e) => return bad(e),
    };
    let spec = TrafficSpec {
        src_mac,
        dst_mac,
        src: a.src,
        dst: a.dst,
        proto: a.proto,
        sport: a.sport,
        dport: a.dport,
        flows: a.flows,
        vary: a.vary,
        first_flow: a.first_flow,
        sizes: a.size,
        ttl: a.ttl,
    };
    if let Err(e) = spec.validate() {
        return bad(e);
    }
    if matches!(a.engine, Engine::Live) {
        if let Err(e) = live::check_spec(&spec) {
            return bad(e);
        }
    }
    if let Err(e) = bench::pin(a.core) {
        return bad(e);
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let bounds = Bounds {
        count: a.count,
        duration: Duration::from_secs_f64(a.duration),
    };
    let result = match a.engine {
        Engine::Afxdp => afxdp::run_tx(
            &spec,
            &TxOptions {
                ifname: a.interface.clone(),
                queue: a.queue,
                bind: a.bind,
                rate,
                bounds,
                quiet: a.quiet,
            },
            &stop,
        ),
        Engine::Live => live::run_live(
            &spec,
            &LiveOptions {
                ifname: a.interface.clone(),
                rate,
                bounds,
                quiet: a.quiet,
            },
            &stop,
        ),
    };
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pktgen: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let json = serde_json::to_string_pretty(&report).expect("report serialises");
    match a.json {
        Some(p) => {
            if let Err(e) = std::fs::write(&p, json + "\n") {
                eprintln!("pktgen: writing {}: {e}", p.display());
                return ExitCode::from(EXIT_RUNTIME);
            }
        }
        None => println!("{json}"),
    }
    ExitCode::from(EXIT_OK)
}
