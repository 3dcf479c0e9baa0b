//! fwd's command line: parses arguments and calls the library. Exit codes: 0 ok,
//! 1 runtime failure, 2 bad input (config, arguments, files).

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};

/// fwd: a packet forwarder and stateful firewall over AF_XDP.
///
/// fwd takes NIC queues with an XDP program, forwards IPv4 and IPv6 between its
/// ports with zero copies through AF_XDP sockets, and leaves to the kernel what is
/// not for forwarding (ARP, neighbour discovery, traffic to the box itself).
///
/// Exit codes: 0 ok, 1 runtime failure, 2 bad input (config, arguments, files).
#[derive(Parser)]
#[command(
    version,
    about,
    long_about,
    after_help = "Examples:\n  fwd check -c configs/router.toml\n  fwd run -c configs/router.toml --stats-file /run/fwd/stats.json\n  fwd stats --watch\n  fwd rules\n  fwd import iptables-save /etc/iptables/rules.v4 --base configs/router.toml > fwd.toml\n  fwd reload"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach to the config's ports and forward until SIGINT/SIGTERM.
    ///
    /// Prints the worker/queue map and the AF_XDP and XDP modes it got (and warns
    /// about copy mode and generic XDP). On exit it detaches its XDP programs and
    /// prints the counters.
    Run {
        /// The config file (TOML; see configs/).
        #[arg(short, long)]
        config: PathBuf,
        /// Keep writing the counters as JSON to this file (every 200 ms, and at exit).
        #[arg(long)]
        stats_file: Option<PathBuf>,
        /// Stop after this many seconds (default: run until a signal).
        #[arg(long)]
        duration: Option<f64>,
    },
    /// Validate a config without touching any interface; exit 2 with
    /// `file:line: field: message` if it is wrong.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// The rule table like `iptables -nvL`: the running daemon's, with live
    /// per-rule packet/byte counters, or with `-c CONFIG` a config's (no daemon needed).
    Rules {
        /// List this config's rules instead of asking the daemon.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// The daemon's control socket (default /run/fwd/fwd.sock).
        #[arg(short, long)]
        socket: Option<PathBuf>,
        /// The listing and the raw counters as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The running daemon's tracked connections, like `conntrack -L` (flows on
    /// stdout, the count per state on stderr).
    Conntrack {
        #[command(flatten)]
        target: Target,
        /// The flows, counts and per-worker table counters as JSON.
        #[arg(long)]
        json: bool,
        /// Only the counts per state (like `conntrack -C`, by state): no line per
        /// flow, for tables of millions.
        #[arg(long)]
        count: bool,
    },
    /// Turn another tool's rules into fwd config TOML (on stdout).
    ///
    /// `fwd import iptables-save rules.v4 > rules.toml` takes iptables-save or
    /// ip6tables-save output (legacy or nft). Rules of INPUT/OUTPUT are traffic to the
    /// box, which the kernel keeps: they are reported on stderr with a count, never
    /// dropped silently. A rule fwd cannot express is refused with its line number
    /// (exit 2) and nothing is written.
    Import {
        #[command(subcommand)]
        what: ImportKind,
    },
    /// Show the running daemon's counters: per port rx/tx and Mpps, the kernel's
    /// XDP_STATISTICS, drops by reason, per-worker queues.
    Stats {
        #[command(flatten)]
        target: Target,
        /// One JSON object per sample instead of the table.
        #[arg(long)]
        json: bool,
        /// Refresh every second (with rates) until interrupted.
        #[arg(short, long)]
        watch: bool,
    },
    /// Make the running daemon re-read its config (same as SIGHUP). Routes,
    /// neighbours and rules change in place; a config that fails to load is refused
    /// with its errors and the running tables stay.
    Reload {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum ImportKind {
    /// An iptables-save / ip6tables-save dump.
    IptablesSave {
        /// The dump file.
        file: PathBuf,
        /// Write this config with its rules replaced by the imported ones (ports,
        /// routes, neighbours kept): how an appliance takes over a box's rules.
        #[arg(long)]
        base: Option<PathBuf>,
    },
}

/// Which daemon to talk to.
#[derive(clap::Args)]
struct Target {
    /// The daemon's control socket (default: the config's `[control] socket`, else /run/fwd/fwd.sock).
    #[arg(short, long)]
    socket: Option<PathBuf>,
    /// Take the control socket path from this config.
    #[arg(short, long)]
    config: Option<PathBuf>,
}

impl Target {
    fn path(&self) -> Result<PathBuf, u8> {
        fwd::cli::control_path(self.socket.as_deref(), self.config.as_deref())
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FWD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run {
            config,
            stats_file,
            duration,
        } => fwd::cli::run(
            &config,
            fwd::dataplane::RunOptions {
                stats_file,
                duration: duration.map(Duration::from_secs_f64),
                ..Default::default()
            },
        ),
        Command::Check { config } => fwd::cli::check(&config),
        Command::Rules {
            config: Some(c), ..
        } => fwd::cli::rules_static(&c),
        Command::Rules {
            config: None,
            socket,
            json,
        } => match fwd::cli::control_path(socket.as_deref(), None) {
            Ok(p) => fwd::cli::rules_live(&p, json),
            Err(c) => c,
        },
        Command::Conntrack {
            target,
            json,
            count,
        } => match target.path() {
            Ok(p) => fwd::cli::conntrack(&p, json, count),
            Err(c) => c,
        },
        Command::Import {
            what: ImportKind::IptablesSave { file, base },
        } => fwd::cli::import_iptables(&file, base.as_deref()),
        Command::Stats {
            target,
            json,
            watch,
        } => match target.path() {
            Ok(p) => fwd::cli::stats(&p, json, watch),
            Err(c) => c,
        },
        Command::Reload { target } => match target.path() {
            Ok(p) => fwd::cli::reload(&p),
            Err(c) => c,
        },
    };
    ExitCode::from(code)
}
