//! sink: counts test frames from pktgen and measures loss, reordering, duplicates
//! and one-way latency. Exit codes: 0 ok, 1 runtime failure, 2 bad input.

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use bench::{
    afxdp::{self, RxOptions},
    xdp_sink::{self, XdpSinkOptions},
    EXIT_BAD_INPUT, EXIT_OK, EXIT_RUNTIME,
};
use clap::{Parser, ValueEnum};
use fwd::xsk::{BindMode, XdpAttachMode};

/// sink: the receiving end of a benchmark.
///
/// Takes every frame that arrives on one interface, recognises pktgen's frames by
/// their payload (magic, sequence number, send timestamp), and reports: frames and
/// bytes received, loss, reordering and duplicates from the sequence numbers, and
/// one-way latency percentiles (hdrhistogram; pktgen and sink must run on the same
/// host: they share CLOCK_MONOTONIC across network namespaces). Non-bench frames
/// (ARP, neighbour discovery) are left to the kernel.
///
/// Two engines:
///   xdp    an XDP program counts, tracks sequence numbers and drops in the kernel,
///          and samples latency through a ring buffer: several Mpps on veth.
///   afxdp  an AF_XDP socket (fwd's XDP program steers frames to it); every frame is
///          parsed in userspace with fwd's parser. ~1 Mpps on veth in copy mode.
///
/// Runs until --duration passes or SIGINT/SIGTERM; progress on stderr every second;
/// the summary is JSON on stdout (or in --json FILE). Loss counts sequence numbers
/// below the highest seen: frames lost at the very end show as `unique` below
/// pktgen's `sent`. Exit codes: 0 ok, 1 runtime failure, 2 bad input.
#[derive(Parser)]
#[command(
    version,
    about,
    long_about,
    after_help = "Example:\n  ip netns exec fwd-sink sink -i fwd-s --engine xdp --duration 12 --json /tmp/sink.json"
)]
struct Args {
    /// Interface to receive on (in the current network namespace).
    #[arg(short, long)]
    interface: String,
    #[arg(long, value_enum, default_value_t = Engine::Xdp)]
    engine: Engine,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Record the latency of one frame in N (rounded up to a power of two).
    #[arg(long, default_value_t = 16)]
    sample_every: u64,
    /// XDP attach mode: native if the driver has it, else generic; or force one.
    #[arg(long, value_enum, default_value_t = XdpMode::Auto)]
    xdp_mode: XdpMode,
    /// AF_XDP queue id (afxdp engine).
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// Pin to this CPU core.
    #[arg(long)]
    core: Option<usize>,
    /// Write the JSON summary here instead of stdout.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress lines.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Engine {
    Xdp,
    Afxdp,
}

#[derive(Clone, Copy, ValueEnum)]
enum XdpMode {
    Auto,
    Native,
    Generic,
}

fn bad(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("sink: {msg}");
    ExitCode::from(EXIT_BAD_INPUT)
}

fn main() -> ExitCode {
    let a = Args::parse();
    if !(a.duration > 0.0 && a.duration.is_finite()) {
        return bad("--duration must be a positive number of seconds");
    }
    if a.sample_every == 0 || a.sample_every > 1 << 30 {
        return bad("--sample-every must be between 1 and 2^30");
    }
    if let Err(e) = bench::pin(a.core) {
        return bad(e);
    }
    if let Err(e) = bench::ifindex(&a.interface) {
        return bad(e);
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let duration = Duration::from_secs_f64(a.duration);
    let xdp_mode = match a.xdp_mode {
        XdpMode::Auto => XdpAttachMode::Auto,
        XdpMode::Native => XdpAttachMode::Native,
        XdpMode::Generic => XdpAttachMode::Generic,
    };
    let result = match a.engine {
        Engine::Xdp => xdp_sink::run_xdp_sink(
            &XdpSinkOptions {
                ifname: a.interface.clone(),
                mode: xdp_mode,
                sample_every: a.sample_every,
                duration,
                quiet: a.quiet,
            },
            &stop,
        ),
        Engine::Afxdp => afxdp::run_rx(
            &RxOptions {
                ifname: a.interface.clone(),
                queue: a.queue,
                bind: BindMode::Auto,
                xdp_mode,
                sample_every: a.sample_every,
                duration,
                quiet: a.quiet,
            },
            &stop,
        ),
    };
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sink: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let json = serde_json::to_string_pretty(&report).expect("report serialises");
    match a.json {
        Some(p) => {
            if let Err(e) = std::fs::write(&p, json + "\n") {
                eprintln!("sink: writing {}: {e}", p.display());
                return ExitCode::from(EXIT_RUNTIME);
            }
        }
        None => println!("{json}"),
    }
    ExitCode::from(EXIT_OK)
}
