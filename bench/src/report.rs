//! What the binaries print at the end, as JSON (one object on stdout or in
//! `--json FILE`), and the per-second progress line.

use serde::Serialize;

use crate::{latency::LatencySummary, seq::SeqStats};

#[derive(Debug, Serialize)]
pub struct GenReport {
    pub engine: &'static str,
    pub interface: String,
    /// Frames handed to the kernel (AF_XDP: completed; live: program runs).
    pub sent: u64,
    pub bytes: u64,
    pub duration_secs: f64,
    pub pps: f64,
    /// The asked rate; null for "as fast as possible".
    pub target_pps: Option<f64>,
    pub frame_size: String,
    /// AF_XDP bind mode ("copy"/"zero-copy"); XDP mode for live frames.
    pub mode: String,
}

#[derive(Debug, Serialize)]
pub struct SinkReport {
    pub engine: &'static str,
    pub interface: String,
    /// Bench frames received (duplicates included).
    pub packets: u64,
    pub bytes: u64,
    /// Frames that were not bench frames (passed to the kernel or freed).
    pub other: u64,
    pub seq: SeqStats,
    pub latency: LatencySummary,
    /// Latency samples lost because the sample ring was full (XDP engine).
    pub samples_lost: u64,
    /// From the first to the last bench frame seen, at 100 ms resolution.
    pub active_secs: f64,
    /// `packets / active_secs`.
    pub pps: f64,
    pub mode: String,
}

/// Prints "label: t=..s  x.xxx Mpps  total ..." to stderr once a second.
pub struct Progress {
    label: &'static str,
    last_t: std::time::Instant,
    last_n: u64,
    start: std::time::Instant,
    quiet: bool,
}

impl Progress {
    pub fn new(label: &'static str, quiet: bool) -> Self {
        let now = std::time::Instant::now();
        Self {
            label,
            last_t: now,
            last_n: 0,
            start: now,
            quiet,
        }
    }

    /// Call often; prints when a second has passed. `extra` is appended to the line.
    pub fn tick(&mut self, total: u64, extra: impl FnOnce() -> String) {
        let now = std::time::Instant::now();
        let dt = now.duration_since(self.last_t).as_secs_f64();
        if dt < 1.0 {
            return;
        }
        if !self.quiet {
            let pps = (total - self.last_n) as f64 / dt;
            eprintln!(
                "{}: t={:>4.0}s {:>8.3} Mpps  total {:>12}  {}",
                self.label,
                now.duration_since(self.start).as_secs_f64(),
                pps / 1e6,
                total,
                extra()
            );
        }
        self.last_t = now;
        self.last_n = total;
    }
}
