//! fwd benchmarks. `bench classify` measures the compiled classifier on ClassBench
//! files against the linear oracle; `bench gen-classbench` writes such files.

mod classbench;

use std::hint::black_box;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use fwd::classify::{Classifier, FlowCache};
use fwd::packet::meta::PacketMeta;
use fwd::rules::eval::LinearEvaluator;
use fwd::rules::{Env, Hook, RuleCounters, Verdict};

#[derive(Parser)]
#[command(about = "fwd benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Classify a ClassBench trace with the compiled classifier, the flow cache and the
    /// linear oracle; count mismatches.
    Classify {
        #[arg(long)]
        rules: PathBuf,
        #[arg(long)]
        trace: PathBuf,
        #[arg(long)]
        json: bool,
        /// Check (and time) the linear oracle on at most this many trace lines.
        #[arg(long)]
        oracle_packets: Option<usize>,
    },
    /// Write a ClassBench-style filter set and trace: DIR/SHAPE_N and DIR/SHAPE_N_trace.
    GenClassbench {
        #[arg(long, value_enum)]
        shape: classbench::Shape,
        #[arg(long)]
        rules: usize,
        #[arg(long, default_value_t = 100_000)]
        trace_packets: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::Classify {
            rules,
            trace,
            json,
            oracle_packets,
        } => match classify(&rules, &trace, json, oracle_packets) {
            Ok(0) => ExitCode::SUCCESS,
            Ok(_) => ExitCode::from(1),
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Cmd::GenClassbench {
            shape,
            rules,
            trace_packets,
            seed,
            out,
        } => {
            let filters = classbench::generate(shape, rules, seed);
            let trace = classbench::generate_trace(&filters, trace_packets, seed);
            let name = format!("{}_{rules}", format!("{shape:?}").to_lowercase());
            let write = || -> std::io::Result<()> {
                std::fs::create_dir_all(&out)?;
                std::fs::write(out.join(&name), classbench::format_filters(&filters))?;
                std::fs::write(
                    out.join(format!("{name}_trace")),
                    classbench::format_trace(&trace),
                )
            };
            match write() {
                Ok(()) => {
                    println!("{}", out.join(&name).display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: {e}", out.display());
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// Nanoseconds this thread has been on a CPU (`/proc/thread-self/schedstat`), or None
/// where that file is missing. On a shared machine wall time counts the time other
/// processes held the core; CPU time does not.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Per-packet time of a loop: by the wall clock, and by this thread's CPU time.
#[derive(Clone, Copy)]
struct PerPacket {
    wall: f64,
    cpu: Option<f64>,
}

/// Runs `f` over all packets repeatedly for at least `min` and returns ns per packet.
fn time_per_packet(
    packets: &[PacketMeta],
    min: Duration,
    mut f: impl FnMut(&mut PacketMeta) -> Verdict,
) -> PerPacket {
    let cpu0 = thread_cpu_ns();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < min || n == 0 {
        for p in packets {
            let mut m = *p;
            black_box(f(&mut m));
        }
        n += packets.len() as u64;
    }
    let wall = start.elapsed().as_nanos() as f64 / n as f64;
    let cpu = cpu0
        .zip(thread_cpu_ns())
        .map(|(a, b)| b.saturating_sub(a) as f64 / n as f64);
    PerPacket { wall, cpu }
}

fn classify(
    rules: &PathBuf,
    trace: &PathBuf,
    json: bool,
    oracle_packets: Option<usize>,
) -> Result<usize, String> {
    let read =
        |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let filters = classbench::parse_filters(&read(rules)?)?;
    let headers = classbench::parse_trace(&read(trace)?)?;
    let rs = classbench::to_ruleset(&filters);
    let packets: Vec<PacketMeta> = headers.iter().map(classbench::to_meta).collect();
    let env = Env {
        ports: vec!["in0".into(), "out0".into()],
        local_addrs: vec![],
    };

    let t = Instant::now();
    let c = Classifier::compile(&rs, &env).map_err(|e| e.to_string())?;
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    let lin = LinearEvaluator::new(&rs, &env);

    let oracle_n = oracle_packets.unwrap_or(packets.len()).min(packets.len());
    let mut mismatches = 0;
    let (mut cc, mut cl) = (
        RuleCounters::new(rs.counter_len()),
        RuleCounters::new(rs.counter_len()),
    );
    let (mut hc, mut hl) = (Vec::new(), Vec::new());
    for p in &packets[..oracle_n] {
        hc.clear();
        hl.clear();
        let (mut a, mut b) = (*p, *p);
        let va = c.run_hook_traced(Hook::Forward, &mut a, 0, &mut cc, &mut hc);
        let vb = lin.run_hook_traced(Hook::Forward, &mut b, 0, &mut cl, &mut hl);
        if va != vb || hc != hl {
            mismatches += 1;
        }
    }

    let avg_candidates = packets
        .iter()
        .map(|p| c.candidates(Hook::Forward, p))
        .sum::<usize>() as f64
        / packets.len().max(1) as f64;
    let checks = packets
        .iter()
        .map(|p| c.checks(Hook::Forward, p, &mut cc))
        .sum::<usize>() as f64
        / packets.len().max(1) as f64;
    let min = Duration::from_millis(500);
    let mut counters = RuleCounters::new(rs.counter_len());
    let ns = time_per_packet(&packets, min, |m| {
        c.run_hook(Hook::Forward, m, 0, &mut counters)
    });

    let mut cache = FlowCache::new(1 << 16);
    let ns_cached = time_per_packet(&packets, min, |m| {
        cache.run_hook(&c, Hook::Forward, m, 0, &mut counters)
    });
    let ns_linear = time_per_packet(&packets[..oracle_n.max(1)], min, |m| {
        lin.run_hook(Hook::Forward, m, 0, &mut counters)
    });
    let memory = c.memory_bytes();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    if json {
        println!(
            "{}",
            serde_json::json!({
                "rules": rs.rule_count(),
                "packets": packets.len(),
                "oracle_packets": oracle_n,
                "mismatches": mismatches,
                "ns_per_packet": round(ns.wall),
                "ns_per_packet_cached": round(ns_cached.wall),
                "ns_per_packet_linear": round(ns_linear.wall),
                "cpu_ns_per_packet": ns.cpu.map(round),
                "cpu_ns_per_packet_cached": ns_cached.cpu.map(round),
                "cpu_ns_per_packet_linear": ns_linear.cpu.map(round),
                "cache_hit_rate": round(cache.hits as f64 / (cache.hits + cache.misses).max(1) as f64 * 100.0) / 100.0,
                "build_ms": round(build_ms),
                "avg_candidates": round(avg_candidates),
                "avg_checks": round(checks),
                "partitions_v4": c.partitions(Hook::Forward).0,
                "memory_bytes": memory,
                "command": command,
            })
        );
    } else {
        println!("command:            {command}");
        println!("rules:              {}", rs.rule_count());
        println!(
            "packets:            {} ({} checked against the linear oracle)",
            packets.len(),
            oracle_n
        );
        println!("mismatches:         {mismatches}");
        let cpu = |p: PerPacket| {
            p.cpu
                .map_or(String::new(), |c| format!("   (on-CPU {c:.1})"))
        };
        println!("compiled ns/pkt:    {:.1}{}", ns.wall, cpu(ns));
        println!(
            "cached ns/pkt:      {:.1}{}",
            ns_cached.wall,
            cpu(ns_cached)
        );
        println!(
            "linear ns/pkt:      {:.1}{}   (baseline, same run)",
            ns_linear.wall,
            cpu(ns_linear)
        );
        println!("candidates/pkt:     {avg_candidates:.1} in leaves, {checks:.1} checked");
        println!("trees (v4, v6):     {:?}", c.partitions(Hook::Forward));
        println!("build:              {build_ms:.1} ms");
        println!(
            "memory:             {:.1} MiB",
            memory as f64 / (1 << 20) as f64
        );
    }
    Ok(mismatches)
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
