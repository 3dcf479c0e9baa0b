//! The subcommands behind `fwd`: each returns the process exit code (0 ok,
//! 1 runtime failure, 2 bad input) and prints its own errors as one sentence.

use std::path::Path;

use crate::{
    classify::Classifier,
    config::Config,
    control::{self, Request},
    dataplane::{self, PortReport, RunError, RunOptions, StatsReport},
    rules::{self, Env},
};

/// `println!`/`print!` for what a subcommand prints on stdout: when the reader is
/// gone (`fwd conntrack | head`), the process ends quietly as a Unix filter does on
/// SIGPIPE, instead of panicking (Rust ignores SIGPIPE, so the write fails).
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($t)*) {
            stdout_failed(e);
        }
    }};
}

macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let mut o = std::io::stdout().lock();
        if let Err(e) = write!(o, $($t)*).and_then(|()| o.flush()) {
            stdout_failed(e);
        }
    }};
}

fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(i32::from(EXIT_OK));
    }
    eprintln!("fwd: writing to standard output: {e}");
    std::process::exit(i32::from(EXIT_RUNTIME));
}

pub const EXIT_OK: u8 = 0;
pub const EXIT_RUNTIME: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;

fn load(path: &Path) -> Result<Config, u8> {
    Config::load(path).map_err(|e| {
        eprintln!("fwd: {e}");
        EXIT_BAD_INPUT
    })
}

/// `fwd check`: load, validate and compile; report sizes and cost. Touches no
/// interface, so it runs anywhere (a rules-only config is fine too).
pub fn check(path: &Path) -> u8 {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let ruleset = cfg.ruleset();
    let env = Env {
        ports: cfg.port_names(),
        local_addrs: cfg
            .ports
            .iter()
            .flat_map(|p| p.get_ref().addresses.iter().map(|n| n.addr()))
            .collect(),
    };
    match Classifier::compile(&ruleset, &env) {
        Ok(c) => {
            outln!(
                "{}: ok ({} ports, {} routes, {} static neighbours; {} rules in {} chains, {} sets, compiled in {:.1} ms, {} KiB)",
                path.display(),
                cfg.ports.len(),
                cfg.routes.len(),
                cfg.neighbours.len(),
                ruleset.rule_count(),
                ruleset.chains().len(),
                ruleset.sets().len(),
                c.build_time().as_secs_f64() * 1e3,
                c.memory_bytes() / 1024
            );
            if !cfg.ports.is_empty() {
                for i in &c.unresolved_ifaces {
                    eprintln!("fwd: warning: {}: interface {i:?} is none of the ports: rules naming it never match", path.display());
                }
            }
            EXIT_OK
        }
        Err(e) => {
            eprintln!("fwd: {}: {e}", path.display());
            EXIT_BAD_INPUT
        }
    }
}

/// `fwd rules -c CONFIG`: the config's table like `iptables -nvL` (counters are
/// those an import carried, else zero).
pub fn rules_static(path: &Path) -> u8 {
    match load(path) {
        Ok(cfg) => {
            let rs = cfg.ruleset();
            let counters = rs.sum_counters(&[]);
            out!("{}", rules::cli::list(&rs, &counters));
            EXIT_OK
        }
        Err(code) => code,
    }
}

/// `fwd rules`: the running daemon's table with live counters.
pub fn rules_live(socket: &Path, json: bool) -> u8 {
    match ask(socket, Request::Rules) {
        Ok(v) => {
            if json {
                outln!("{v}");
            } else {
                out!("{}", v["listing"].as_str().unwrap_or_default());
            }
            EXIT_OK
        }
        Err(code) => code,
    }
}

/// `fwd import iptables-save FILE [--base CONFIG]`: the dump as config TOML on stdout.
pub fn import_iptables(file: &Path, base: Option<&Path>) -> u8 {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("fwd: {}: cannot read: {e}", file.display());
            return EXIT_BAD_INPUT;
        }
    };
    let (rs, report) = match rules::iptables::import(&text, &file.display().to_string()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fwd: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let out = match base {
        None => rules::iptables::to_toml(&rs),
        Some(b) => {
            let base_text = match std::fs::read_to_string(b) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("fwd: {}: cannot read: {e}", b.display());
                    return EXIT_BAD_INPUT;
                }
            };
            match rules::iptables::replace_rules_in_config(&base_text, &rs) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("fwd: {}: {e}", b.display());
                    return EXIT_BAD_INPUT;
                }
            }
        }
    };
    out!("{out}");
    eprintln!("fwd: {}: {}", file.display(), report.summary());
    EXIT_OK
}

pub fn run(path: &Path, opts: RunOptions) -> u8 {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match dataplane::run(cfg, path, &opts) {
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
    outln!("fwd: stopped after {:.1} s", r.uptime_secs);
    outln!(
        "{:<16} {:>12} {:>14} {:>12} {:>14}",
        "port",
        "rx_packets",
        "rx_bytes",
        "tx_packets",
        "tx_bytes"
    );
    for p in &r.ports {
        outln!(
            "{:<16} {:>12} {:>14} {:>12} {:>14}",
            p.interface,
            p.rx_packets,
            p.rx_bytes,
            p.tx_packets,
            p.tx_bytes
        );
    }
    print_reasons(r);
}

/// Where the daemon's control socket is: `--socket`, else the config's, else the default.
pub fn control_path(
    socket: Option<&Path>,
    config: Option<&Path>,
) -> Result<std::path::PathBuf, u8> {
    if let Some(s) = socket {
        return Ok(s.to_path_buf());
    }
    match config {
        Some(c) => load(c).map(|cfg| cfg.control.socket),
        None => Ok(crate::config::default_control_socket()),
    }
}

/// Sends a request; a refusal by the daemon is `refused_code`, an unreachable
/// daemon is a runtime failure.
fn ask(path: &Path, req: Request) -> Result<serde_json::Value, u8> {
    ask_or(path, req, EXIT_RUNTIME)
}

fn ask_or(path: &Path, req: Request, refused_code: u8) -> Result<serde_json::Value, u8> {
    match control::request(path, &req) {
        Ok(r) if r.ok => Ok(r.data.unwrap_or_default()),
        Ok(r) => {
            eprintln!("fwd: {}", r.error.unwrap_or_default());
            Err(refused_code)
        }
        Err(e) => {
            eprintln!("fwd: {e}");
            Err(EXIT_RUNTIME)
        }
    }
}

/// `fwd stats`: the daemon's counters; with `watch`, refreshed every second with rates.
pub fn stats(path: &Path, json: bool, watch: bool) -> u8 {
    let get = || -> Result<StatsReport, u8> {
        let v = ask(path, Request::Stats)?;
        serde_json::from_value(v).map_err(|e| {
            eprintln!("fwd: unexpected stats reply: {e}");
            EXIT_RUNTIME
        })
    };
    let mut prev: Option<(std::time::Instant, StatsReport)> = None;
    loop {
        let r = match get() {
            Ok(r) => r,
            Err(c) => return c,
        };
        let now = std::time::Instant::now();
        if json {
            outln!("{}", serde_json::to_string(&r).expect("serializes"));
        } else {
            if watch {
                out!("\x1b[2J\x1b[H");
            }
            print_stats(
                &r,
                prev.as_ref()
                    .map(|(t, p)| (now.duration_since(*t).as_secs_f64(), p)),
            );
        }
        if !watch {
            return EXIT_OK;
        }
        prev = Some((now, r));
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// `fwd reload`: ask the daemon to re-read its config.
pub fn reload(path: &Path) -> u8 {
    // A refused reload is a bad config: exit 2, like `fwd check`.
    match ask_or(path, Request::Reload, EXIT_BAD_INPUT) {
        Ok(v) => {
            outln!("fwd: reloaded ({})", v.as_str().unwrap_or_default());
            EXIT_OK
        }
        Err(code) => code,
    }
}

fn print_stats(r: &StatsReport, prev: Option<(f64, &StatsReport)>) {
    outln!(
        "uptime {:.1} s, reloads {} ({})",
        r.uptime_secs,
        r.reloads,
        if r.last_reload.is_empty() {
            "none"
        } else {
            &r.last_reload
        }
    );
    outln!(
        "{:<16} {:>12} {:>10} {:>12} {:>10} {:>10} {:>10} {:>10}",
        "port",
        "rx_packets",
        "rx_Mpps",
        "tx_packets",
        "tx_Mpps",
        "xsk_drop",
        "fill_empty",
        "ring_full"
    );
    for (i, p) in r.ports.iter().enumerate() {
        let rate = |f: &dyn Fn(&PortReport) -> u64| match prev {
            Some((dt, old)) if dt > 0.0 => {
                format!("{:.3}", (f(p) - f(&old.ports[i])) as f64 / dt / 1e6)
            }
            _ => "-".into(),
        };
        outln!(
            "{:<16} {:>12} {:>10} {:>12} {:>10} {:>10} {:>10} {:>10}",
            p.interface,
            p.rx_packets,
            rate(&|p| p.rx_packets),
            p.tx_packets,
            rate(&|p| p.tx_packets),
            p.xsk.rx_dropped,
            p.xsk.rx_fill_ring_empty_descs,
            p.xsk.rx_ring_full
        );
    }
    for w in &r.workers {
        let qs: Vec<String> = w.queues.iter().map(|(i, q)| format!("{i}:{q}")).collect();
        outln!(
            "worker {}{}: {} rx_packets={}",
            w.id,
            w.core.map(|c| format!(" (core {c})")).unwrap_or_default(),
            qs.join(" "),
            w.rx_packets
        );
    }
    print_reasons(r);
}

/// The non-zero events, drops and malformed counters, one line each.
fn print_reasons(r: &StatsReport) {
    let nonzero = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    outln!("events: {}", nonzero(&r.events));
    outln!("drops: {}", nonzero(&r.drops));
    if !r.malformed.is_empty() {
        outln!("malformed: {}", nonzero(&r.malformed));
    }
}

/// `fwd conntrack`: the running daemon's connections, like `conntrack -L`, with
/// counts per state (only those with `count_only`).
pub fn conntrack(socket: &Path, json: bool, count_only: bool) -> u8 {
    match ask(socket, Request::Conntrack { count_only }) {
        Ok(v) => {
            if json {
                outln!("{v}");
                return EXIT_OK;
            }
            let flows = v["flows"].as_array().map(Vec::as_slice).unwrap_or_default();
            for f in flows {
                outln!("{}", f.as_str().unwrap_or_default());
            }
            let counts: Vec<String> = v["counts"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(_, n)| n.as_u64() != Some(0))
                        .map(|(k, n)| format!("{k}={n}"))
                        .collect()
                })
                .unwrap_or_default();
            eprintln!("fwd: {} flow entries ({})", v["entries"], counts.join(" "));
            EXIT_OK
        }
        Err(code) => code,
    }
}
