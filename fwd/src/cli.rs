//! The subcommands behind `fwd`: each returns the process exit code (0 ok,
//! 1 runtime failure, 2 bad input) and prints its own errors as one sentence.

use std::path::Path;

use crate::{
    config::Config,
    dataplane::{self, RunError, RunOptions, StatsReport},
};

pub const EXIT_OK: u8 = 0;
pub const EXIT_RUNTIME: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;

fn load(path: &Path) -> Result<Config, u8> {
    Config::load(path).map_err(|e| {
        eprintln!("fwd: {e}");
        EXIT_BAD_INPUT
    })
}

pub fn check(path: &Path) -> u8 {
    match load(path) {
        Ok(cfg) => {
            println!(
                "{}: ok ({} ports, {} routes, {} static neighbours)",
                path.display(),
                cfg.ports.len(),
                cfg.routes.len(),
                cfg.neighbours.len()
            );
            EXIT_OK
        }
        Err(code) => code,
    }
}

pub fn run(path: &Path, opts: RunOptions) -> u8 {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match dataplane::run(&cfg, &opts) {
        Ok(report) => {
            print_summary(&report);
            EXIT_OK
        }
        Err(RunError::BadInput(e)) => {
            eprintln!("fwd: {}: {e}", path.display());
            EXIT_BAD_INPUT
        }
        Err(RunError::Runtime(e)) => {
            eprintln!("fwd: {e}");
            EXIT_RUNTIME
        }
    }
}

/// The counters at exit, as a short table.
pub fn print_summary(r: &StatsReport) {
    println!("fwd: stopped after {:.1} s", r.uptime_secs);
    println!(
        "{:<16} {:>12} {:>14} {:>12} {:>14}",
        "port", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes"
    );
    for p in &r.ports {
        println!(
            "{:<16} {:>12} {:>14} {:>12} {:>14}",
            p.interface, p.rx_packets, p.rx_bytes, p.tx_packets, p.tx_bytes
        );
    }
    let nonzero = |m: &std::collections::BTreeMap<&str, u64>| {
        m.iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("events: {}", nonzero(&r.events));
    println!("drops: {}", nonzero(&r.drops));
    if !r.malformed.is_empty() {
        println!("malformed: {}", nonzero(&r.malformed));
    }
}
