//! The forwarding daemon: sets up ports, XDP programs, workers and the neighbour
//! sync from a [`Config`], serves the control socket, reloads on request, runs
//! until SIGINT/SIGTERM, and tears everything down.

pub mod hold;
pub mod pipeline;
pub mod report;
pub mod setup;
pub mod stats;
pub mod tables;
pub mod worker;

use std::{
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;

use crate::{
    classify::Classifier,
    config::Config,
    control::{self, metrics, Reply, Request},
    route::{neigh::NeighTable, netlink},
    rules::{self, Env},
    xsk::{
        self, SocketStats, Umem, XdpAttachMode, XdpProg, XdpStatsReader, XskSocket, XskSocketConfig,
    },
};

pub use report::{PortReport, StatsReport, WorkerReport};
pub use setup::{build_fib, discover_ports, ip_to_u128};
pub use tables::Tables;

use pipeline::PortInfo;
use stats::{SharedCounters, Totals};
use worker::Worker;

/// A failure to start or run, printed as one sentence.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The config names something this machine does not have (exit code 2).
    #[error("{0}")]
    BadInput(String),
    /// Anything else (exit code 1).
    #[error("{0}")]
    Runtime(String),
}

impl From<xsk::XskError> for RunError {
    fn from(e: xsk::XskError) -> Self {
        RunError::Runtime(e.to_string())
    }
}

/// Options of `fwd run` beside the config.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Write the counters as JSON to this file every `stats_interval` and at exit.
    pub stats_file: Option<PathBuf>,
    pub stats_interval: Duration,
    /// Stop after this long; None runs until SIGINT/SIGTERM.
    pub duration: Option<Duration>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            stats_file: None,
            stats_interval: Duration::from_millis(200),
            duration: None,
        }
    }
}

/// A worker's core and the (interface, queue) pairs it serves.
type WorkerLayout = (Option<usize>, Vec<(String, u32)>);

/// The daemon's shared state: what the control socket, SIGHUP and the stats
/// writer need.
struct Daemon {
    config_path: PathBuf,
    config: Mutex<Config>,
    started: Instant,
    ports: Arc<[PortInfo]>,
    tables: Arc<ArcSwap<Tables>>,
    neigh: Arc<NeighTable>,
    xdp_stats: Vec<XdpStatsReader>,
    steering: Vec<xsk::XdpSteering>,
    /// (port, socket fd) of every socket, for XDP_STATISTICS.
    socket_fds: Vec<(usize, i32)>,
    counters: Vec<Arc<SharedCounters>>,
    /// Each worker's published rule counters.
    rule_counters: Vec<Arc<ArcSwap<tables::RuleSnapshot>>>,
    /// What `-m addrtype --dst-type LOCAL` matches: the box's addresses.
    local_addrs: Vec<IpAddr>,
    /// Whether the workers track connections (fixed at start).
    tracking: bool,
    /// Where to ask each worker for its connection listing.
    ct_requests:
        Vec<crossbeam::channel::Sender<(bool, crossbeam::channel::Sender<Option<worker::CtDump>>)>>,
    /// Each worker's core and (interface, queue) list.
    workers: Vec<WorkerLayout>,
    reloads: AtomicU64,
    last_reload: Mutex<String>,
    reload_lock: Mutex<()>,
}

impl Daemon {
    fn report(&self) -> StatsReport {
        let shared: Vec<&SharedCounters> = self.counters.iter().map(|c| c.as_ref()).collect();
        let t = Totals::sum(&shared);
        let ports = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut xsk = SocketStats::default();
                for (_, fd) in self.socket_fds.iter().filter(|(port, _)| *port == i) {
                    if let Ok(s) = xsk::read_stats(*fd) {
                        xsk.rx_dropped += s.rx_dropped;
                        xsk.rx_invalid_descs += s.rx_invalid_descs;
                        xsk.tx_invalid_descs += s.tx_invalid_descs;
                        xsk.rx_ring_full += s.rx_ring_full;
                        xsk.rx_fill_ring_empty_descs += s.rx_fill_ring_empty_descs;
                        xsk.tx_ring_empty_descs += s.tx_ring_empty_descs;
                    }
                }
                let pt = &t.ports[i];
                PortReport {
                    interface: p.interface.clone(),
                    rx_packets: pt.rx_packets,
                    rx_bytes: pt.rx_bytes,
                    tx_packets: pt.tx_packets,
                    tx_bytes: pt.tx_bytes,
                    xsk,
                    xdp: self.xdp_stats[i]
                        .read()
                        .iter()
                        .map(|(s, v)| (s.name().to_string(), *v))
                        .collect(),
                }
            })
            .collect();
        StatsReport {
            uptime_secs: self.started.elapsed().as_secs_f64(),
            ports,
            drops: t.drops.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            malformed: crate::packet::parse::ParseError::ALL
                .iter()
                .zip(t.malformed.iter())
                .filter(|(_, v)| **v > 0)
                .map(|(e, v)| (e.as_str().to_string(), *v))
                .collect(),
            events: t.events.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            latency_ns: t
                .latency
                .iter()
                .enumerate()
                .map(|(k, v)| (stats::latency_bound_ns(k), *v))
                .collect(),
            conntrack: self.tracking.then(|| {
                let mut sum = std::collections::BTreeMap::new();
                for snap in &self.rule_counters {
                    if let Some(ct) = &snap.load().ct {
                        for (k, v) in report::ct_fields(ct) {
                            *sum.entry(k.to_string()).or_insert(0) += v;
                        }
                    }
                }
                sum
            }),
            reloads: self.reloads.load(Ordering::Relaxed),
            last_reload: self
                .last_reload
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default(),
            workers: self
                .workers
                .iter()
                .enumerate()
                .map(|(id, (core, queues))| WorkerReport {
                    id,
                    core: *core,
                    queues: queues.clone(),
                    rx_packets: self.counters[id].rx_packets(),
                })
                .collect(),
        }
    }

    /// Re-reads the config file and swaps in new tables. A config that fails to
    /// load, or that changes what cannot change while running (ports, queues,
    /// workers), changes nothing and is reported.
    fn reload(&self) -> Result<String, String> {
        let _one_at_a_time = self
            .reload_lock
            .lock()
            .map_err(|_| "reload lock poisoned".to_string())?;
        let result = self.try_reload();
        self.reloads.fetch_add(1, Ordering::Relaxed);
        let summary = match &result {
            Ok(s) => format!("ok: {s}"),
            Err(e) => format!("refused: {e}"),
        };
        if let Ok(mut last) = self.last_reload.lock() {
            *last = summary;
        }
        match &result {
            Ok(s) => tracing::info!("reload: {s}"),
            Err(e) => tracing::warn!("reload refused, the running tables stay: {e}"),
        }
        result
    }

    fn try_reload(&self) -> Result<String, String> {
        let new = Config::load(&self.config_path).map_err(|e| e.to_string())?;
        let mut cur = self
            .config
            .lock()
            .map_err(|_| "config lock poisoned".to_string())?;
        let shape = |c: &Config| {
            (
                c.ports
                    .iter()
                    .map(|p| {
                        let p = p.get_ref();
                        (
                            p.interface.clone(),
                            p.queues.clone(),
                            p.xdp_mode,
                            p.bind,
                            p.addresses.clone(),
                        )
                    })
                    .collect::<Vec<_>>(),
                c.workers.cores.clone(),
                c.workers.ring_size,
                c.workers.frames_per_socket,
                c.control.socket.clone(),
                c.metrics.listen,
            )
        };
        if shape(&new) != shape(&cur) {
            return Err(
                "ports, queues, workers, control or metrics changed: these need a restart (`fwd run` again); routes, neighbours and rules reload"
                    .into(),
            );
        }
        let fib = build_fib(&new, &self.ports)
            .map_err(|e| format!("{}: {e}", self.config_path.display()))?;
        let ruleset = new.ruleset();
        let classifier = compile(&ruleset, &self.ports, &self.local_addrs)
            .map_err(|e| format!("{}: {e}", self.config_path.display()))?;
        if needs_conntrack(&classifier) && !self.tracking {
            return Err(
                "the new rules need connection tracking (ctstate/ctstatus or NAT), which this fwd started without: restart it (or add [conntrack] before starting)"
                    .into(),
            );
        }
        let old = self.tables.load_full();
        let generation = old.generation + 1;
        let routes = fib.len();
        let nrules = ruleset.rule_count();
        let counter_map = tables::counter_map(&old.ruleset, &ruleset);
        self.neigh.set_statics(static_neighbours(&new));
        self.tables.store(Arc::new(Tables {
            fib,
            ruleset,
            classifier,
            generation,
            prev_generation: old.generation,
            counter_map,
        }));
        drop(old);
        set_steering(&self.steering, &new.ruleset(), self.tracking)?;
        *cur = new;
        // Grace period: workers remap their rule counters from the previous generation
        // only, so the next reload waits until every worker has moved to this one (an
        // idle worker wakes from poll(2) within 10 ms).
        let deadline = Instant::now() + Duration::from_secs(1);
        while self
            .rule_counters
            .iter()
            .any(|r| r.load().generation != generation)
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(2));
        }
        Ok(format!(
            "generation {generation}, {routes} routes, {nrules} rules"
        ))
    }
}

impl control::Handler for Daemon {
    fn handle(&self, req: Request) -> Reply {
        match req {
            Request::Stats => {
                Reply::ok(serde_json::to_value(self.report()).expect("report serializes"))
            }
            Request::Reload => match self.reload() {
                Ok(s) => Reply::ok(serde_json::Value::String(s)),
                Err(e) => Reply::err(e),
            },
            Request::Rules => {
                let tables = self.tables.load();
                let snaps: Vec<_> = self.rule_counters.iter().map(|r| r.load_full()).collect();
                let mut sum = vec![rules::Counter::default(); tables.ruleset.counter_len()];
                for snap in snaps.iter().filter(|s| s.generation == tables.generation) {
                    for (a, b) in sum.iter_mut().zip(snap.counts.iter()) {
                        a.packets += b.packets;
                        a.bytes += b.bytes;
                    }
                }
                Reply::ok(serde_json::json!({
                    "generation": tables.generation,
                    "listing": rules::cli::list(&tables.ruleset, &sum),
                    "counters": sum.iter().map(|c| [c.packets, c.bytes]).collect::<Vec<_>>(),
                }))
            }
            Request::Conntrack { count_only } => {
                if !self.tracking {
                    return Reply::err("this fwd does not track connections (no ctstate/ctstatus or NAT rules, no [conntrack] section)");
                }
                let mut flows = Vec::new();
                let mut by_state = std::collections::BTreeMap::<String, u64>::new();
                let mut stats = Vec::new();
                let mut entries = 0;
                for tx in &self.ct_requests {
                    let (rtx, rrx) = crossbeam::channel::bounded(1);
                    if tx
                        .send_timeout((count_only, rtx), Duration::from_secs(1))
                        .is_err()
                    {
                        return Reply::err("a worker did not answer");
                    }
                    match rrx.recv_timeout(Duration::from_secs(2)) {
                        Ok(Some(d)) => {
                            flows.extend(d.flows);
                            for (i, n) in d.by_state.tcp.iter().enumerate() {
                                if *n > 0 {
                                    let name = crate::conntrack::TcpState::ALL
                                        .get(i)
                                        .map_or("?", |s| s.as_str());
                                    *by_state.entry(format!("tcp {name}")).or_default() += n;
                                }
                            }
                            *by_state.entry("udp".into()).or_default() += d.by_state.udp;
                            *by_state.entry("icmp".into()).or_default() += d.by_state.icmp;
                            *by_state.entry("other".into()).or_default() += d.by_state.other;
                            *by_state.entry("assured".into()).or_default() += d.by_state.assured;
                            *by_state.entry("unconfirmed".into()).or_default() +=
                                d.by_state.unconfirmed;
                            *by_state.entry("unreplied".into()).or_default() +=
                                d.by_state.unreplied;
                            entries += d.stats.entries;
                            stats.push(format!("{:?}", d.stats));
                        }
                        Ok(None) => {}
                        Err(_) => return Reply::err("a worker did not answer"),
                    }
                }
                Reply::ok(
                    serde_json::json!({ "flows": flows, "entries": entries, "counts": by_state, "workers": stats }),
                )
            }
        }
    }
}

impl metrics::Exporter for Daemon {
    fn render(&self) -> String {
        report::prometheus(&self.report())
    }
}

/// Ports (and ICMP echo ids) fwd gives connections it SNATs or masquerades to one
/// of the box's own addresses. Linux's ip_local_port_range ends at 60999 by
/// default, so the box's own sockets never hold these, and the XDP program can tell
/// the replies (fwd's) from the kernel's traffic by port.
pub const NAT_LOCAL_PORTS: (u16, u16) = (61000, 65535);

/// The TCP and UDP destination ports DNAT rules forward: traffic to the box's own
/// addresses on them is fwd's. A DNAT rule with no TCP/UDP port match cannot be
/// told from the box's own traffic and is reported.
fn dnat_ports(rs: &rules::Ruleset) -> (rules::Ports, rules::Ports) {
    let (mut tcp, mut udp) = (Vec::new(), Vec::new());
    for chain in rs.chains() {
        for r in &chain.rules {
            if !matches!(r.target, Some(rules::Target::Dnat(_))) {
                continue;
            }
            let proto = r
                .matches
                .proto
                .as_ref()
                .filter(|p| !p.invert)
                .map(|p| p.value);
            match (proto, r.matches.dport.as_ref().filter(|d| !d.invert)) {
                (Some(6), Some(d)) => tcp.extend(d.value.iter().copied()),
                (Some(17), Some(d)) => udp.extend(d.value.iter().copied()),
                _ => tracing::warn!(
                    chain = %chain.name,
                    "a DNAT rule without a TCP/UDP destination port: packets to the box's own addresses it would catch stay the kernel's (fwd steers port forwards by port)"
                ),
            }
        }
    }
    (tcp, udp)
}

/// Points every port's XDP program at fwd's NAT replies and port forwards.
fn set_steering(
    steering: &[xsk::XdpSteering],
    rs: &rules::Ruleset,
    tracking: bool,
) -> Result<(), String> {
    let nat = if tracking { NAT_LOCAL_PORTS } else { (0, 0) };
    let (tcp, udp) = if tracking {
        dnat_ports(rs)
    } else {
        (Vec::new(), Vec::new())
    };
    steering.iter().try_for_each(|s| s.set(nat, &tcp, &udp))
}

/// Whether the compiled rules read connection state or translate addresses.
fn needs_conntrack(c: &Classifier) -> bool {
    let used = c.used_fields();
    used.ctstate || used.ctstatus || !c.nat_targets().is_empty()
}

/// Compiles the rules for this box's ports and addresses.
fn compile(
    ruleset: &rules::Ruleset,
    ports: &[PortInfo],
    local_addrs: &[IpAddr],
) -> Result<Classifier, String> {
    let env = Env {
        ports: ports.iter().map(|p| p.interface.clone()).collect(),
        local_addrs: local_addrs.to_vec(),
    };
    Classifier::compile(ruleset, &env).map_err(|e| e.to_string())
}

fn static_neighbours(cfg: &Config) -> FxHashMap<crate::route::neigh::NextHop, [u8; 6]> {
    cfg.neighbours
        .iter()
        .map(|n| {
            let n = n.get_ref();
            let port = cfg
                .port_index(&n.interface)
                .expect("validated in Config::parse") as u16;
            (netlink::next_hop(port, n.address), n.mac.0)
        })
        .collect()
}

fn write_stats(path: &Path, report: &StatsReport) {
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string_pretty(report).expect("stats serialize");
    if fs::write(&tmp, text)
        .and_then(|_| fs::rename(&tmp, path))
        .is_err()
    {
        tracing::warn!(path = %path.display(), "cannot write the stats file");
    }
}

/// Runs the forwarder until a signal (or `opts.duration`). Everything attached is
/// detached again on the way out, also on errors after attaching.
pub fn run(cfg: Config, config_path: &Path, opts: &RunOptions) -> Result<StatsReport, RunError> {
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    let sig = |e: std::io::Error| RunError::Runtime(format!("installing signal handlers: {e}"));
    for s in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(s, stop.clone()).map_err(sig)?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone()).map_err(sig)?;

    // Everything that can fail on bad input is checked before anything is attached.
    if cfg.ports.is_empty() {
        return Err(RunError::BadInput(
            "at least one [[ports]] entry is needed to forward".into(),
        ));
    }
    let ports: Arc<[PortInfo]> = discover_ports(&cfg)?.into();
    let fib = build_fib(&cfg, &ports)?;
    let local_addrs: Vec<IpAddr> = ports
        .iter()
        .flat_map(|p| p.nets.iter().map(|n| n.addr()))
        .collect();
    let ruleset = cfg.ruleset();
    let classifier = compile(&ruleset, &ports, &local_addrs).map_err(RunError::BadInput)?;
    println!(
        "fwd: {} rules compiled in {:.1} ms ({} KiB)",
        ruleset.rule_count(),
        classifier.build_time().as_secs_f64() * 1e3,
        classifier.memory_bytes() / 1024
    );
    let control_listener = control::bind(&cfg.control.socket).map_err(|e| {
        RunError::Runtime(format!(
            "control socket {}: {e}",
            cfg.control.socket.display()
        ))
    })?;

    let neigh = NeighTable::new(static_neighbours(&cfg));
    let (req_tx, req_rx) = crossbeam::channel::bounded(1024);
    let neigh_thread = netlink::spawn_neigh_sync(
        neigh.clone(),
        ports
            .iter()
            .enumerate()
            .map(|(i, p)| (i as u16, p.ifindex))
            .collect(),
        req_rx,
        stop.clone(),
    )
    .map_err(|e| RunError::Runtime(format!("starting the neighbour sync: {e}")))?;

    // The box's own addresses on every port: traffic to them is the kernel's.
    let local_v4: Vec<_> = ports.iter().flat_map(|p| p.v4.iter().copied()).collect();
    let local_v6: Vec<_> = ports
        .iter()
        .flat_map(|p| p.nets.iter())
        .filter_map(|n| match n.addr() {
            IpAddr::V6(a) => Some(a),
            _ => None,
        })
        .collect();

    let mut progs = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let prog = XdpProg::attach(&p.interface, p.ifindex, cfg.ports[i].get_ref().xdp_mode)?;
        prog.set_local_addrs(&local_v4, &local_v6)?;
        if prog.mode() == XdpAttachMode::Generic {
            tracing::warn!(interface = %p.interface, "XDP runs in generic (skb) mode: the driver has no native XDP; expect a fraction of native speed");
        }
        progs.push(prog);
    }
    let xdp_stats = progs
        .iter()
        .map(|p| p.stats_reader())
        .collect::<Result<Vec<_>, _>>()?;
    let steering = progs
        .iter()
        .map(|p| p.steering())
        .collect::<Result<Vec<_>, _>>()?;

    // Connection tracking lives in per-worker tables: both directions of a flow must
    // reach the same worker. AF_XDP sockets only get their own queue's frames, so
    // only a symmetric RSS hash in the NIC could promise that, and NAT rewrites the
    // tuple the hash sees: with tracking on, fwd runs one worker.
    let ct_config = match (&cfg.conntrack, needs_conntrack(&classifier)) {
        (Some(c), _) => Some(c.clone()),
        (None, true) => Some(crate::conntrack::CtConfig::default()),
        (None, false) => None,
    };
    if ct_config.is_some() && cfg.workers.cores.len() > 1 {
        return Err(RunError::BadInput(format!(
            "workers.cores has {} cores but connection tracking is on (the rules use ctstate/ctstatus or NAT, or [conntrack] is set): both directions of a connection must meet in one worker's table, so tracking runs with one worker",
            cfg.workers.cores.len()
        )));
    }
    if let Some(c) = &ct_config {
        println!(
            "fwd: connection tracking on: up to {} entries; NAT to the box's own addresses uses ports {}-{}",
            c.max_entries, NAT_LOCAL_PORTS.0, NAT_LOCAL_PORTS.1
        );
    }
    let mut ct_request_senders = Vec::new();
    set_steering(&steering, &ruleset, ct_config.is_some()).map_err(RunError::Runtime)?;

    let tables = Arc::new(ArcSwap::from_pointee(Tables {
        fib,
        ruleset,
        classifier,
        generation: 1,
        prev_generation: 0,
        counter_map: Vec::new(),
    }));
    let mut rule_counters = Vec::new();
    let (log_tx, log_rx) = crossbeam::channel::bounded::<Vec<rules::LogEvent>>(64);
    let nworkers = cfg.workers.cores.len().max(1);
    let mut workers = Vec::new();
    let mut socket_fds = Vec::new();
    let mut counters = Vec::new();
    let mut layout = Vec::new();
    for w in 0..nworkers {
        // Worker w takes every queue whose position in its port's list is w modulo
        // the worker count, so each worker has a socket on every port to send on.
        let mut assigned = Vec::new();
        for (pi, p) in cfg.ports.iter().enumerate() {
            let qs = &p.get_ref().queues;
            let before = assigned.len();
            assigned.extend(
                qs.iter()
                    .enumerate()
                    .filter(|(k, _)| k % nworkers == w)
                    .map(|(_, q)| (pi, *q)),
            );
            if assigned.len() == before {
                return Err(RunError::BadInput(format!(
                    "port {} has {} queue(s) for {nworkers} workers: every worker needs a queue on every port",
                    p.get_ref().interface,
                    qs.len()
                )));
            }
        }
        let umem = Umem::new(
            cfg.workers.frames_per_socket * assigned.len() as u32,
            cfg.workers.ring_size,
        )?;
        let mut sockets = Vec::new();
        let mut socket_port = Vec::new();
        let mut tx_socket = vec![usize::MAX; ports.len()];
        let core = cfg.workers.cores.get(w).copied();
        for (pi, q) in &assigned {
            let sc = XskSocketConfig {
                ring_size: cfg.workers.ring_size,
                bind: cfg.ports[*pi].get_ref().bind,
            };
            let s = XskSocket::bind(&umem, &ports[*pi].interface, *q, &sc)?;
            progs[*pi].register_socket(*q, s.fd())?;
            println!(
                "  worker {w}{}: {} queue {q}: {} mode, XDP {}",
                core.map(|c| format!(" (core {c})")).unwrap_or_default(),
                ports[*pi].interface,
                if s.zero_copy() { "zero-copy" } else { "copy" },
                if progs[*pi].mode() == XdpAttachMode::Native {
                    "native"
                } else {
                    "generic"
                },
            );
            if !s.zero_copy() {
                tracing::warn!(interface = %ports[*pi].interface, queue = q, "AF_XDP socket runs in copy mode (the driver has no zero-copy support): every frame is copied once by the kernel");
            }
            if tx_socket[*pi] == usize::MAX {
                tx_socket[*pi] = sockets.len();
            }
            socket_fds.push((*pi, s.fd()));
            sockets.push(s);
            socket_port.push(*pi as u16);
        }
        layout.push((
            core,
            assigned
                .iter()
                .map(|(pi, q)| (ports[*pi].interface.clone(), *q))
                .collect(),
        ));
        let shared = Arc::new(SharedCounters::new(ports.len()));
        counters.push(shared.clone());
        let rules_shared = Arc::new(ArcSwap::from_pointee(tables::RuleSnapshot::default()));
        rule_counters.push(rules_shared.clone());
        workers.push(Worker {
            id: w,
            core,
            umem,
            sockets,
            socket_port,
            tx_socket,
            ports: ports.clone(),
            tables: tables.clone(),
            neigh: neigh.clone(),
            neigh_requests: req_tx.clone(),
            shared,
            rules_shared,
            log: log_tx.clone(),
            stop: stop.clone(),
            idle_spins: cfg.workers.idle_spins,
            conntrack: ct_config.clone(),
            ct_requests: {
                let (tx, rx) = crossbeam::channel::bounded(4);
                ct_request_senders.push(tx);
                rx
            },
        });
    }
    println!(
        "fwd: forwarding on {} port(s) with {nworkers} worker(s); control socket {}",
        ports.len(),
        cfg.control.socket.display()
    );

    let control_path = cfg.control.socket.clone();
    let metrics_addr = cfg.metrics.listen;
    let daemon = Arc::new(Daemon {
        config_path: config_path.to_path_buf(),
        config: Mutex::new(cfg),
        started: Instant::now(),
        ports: ports.clone(),
        tables,
        neigh,
        xdp_stats,
        steering,
        socket_fds,
        counters,
        rule_counters,
        local_addrs,
        tracking: ct_config.is_some(),
        ct_requests: ct_request_senders,
        workers: layout,
        reloads: AtomicU64::new(0),
        last_reload: Mutex::new(String::new()),
        reload_lock: Mutex::new(()),
    });

    let handles: Vec<_> = workers
        .into_iter()
        .map(|w| {
            thread::Builder::new()
                .name(format!("fwd-worker-{}", w.id))
                .spawn(move || w.run())
                .map_err(|e| RunError::Runtime(format!("starting a worker: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let control_thread =
        control::spawn_server(control_listener, control_path, daemon.clone(), stop.clone())
            .map_err(|e| RunError::Runtime(format!("starting the control socket: {e}")))?;
    let metrics_thread = match metrics_addr {
        Some(addr) => {
            println!("fwd: Prometheus metrics on http://{addr}/metrics");
            Some(
                metrics::spawn(addr, daemon.clone(), stop.clone())
                    .map_err(|e| RunError::Runtime(format!("metrics listener {addr}: {e}")))?,
            )
        }
        None => None,
    };

    drop(log_tx);
    let log_thread = spawn_log_printer(log_rx, daemon.tables.clone());

    let mut last_write = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(20));
        if hup.swap(false, Ordering::Relaxed) {
            let _ = daemon.reload();
        }
        if opts.duration.is_some_and(|d| daemon.started.elapsed() >= d) {
            stop.store(true, Ordering::Relaxed);
        }
        if let Some(path) = &opts.stats_file {
            if last_write.elapsed() >= opts.stats_interval {
                write_stats(path, &daemon.report());
                last_write = Instant::now();
            }
        }
    }
    for h in handles {
        let _ = h.join();
    }
    let _ = neigh_thread.join();
    let _ = log_thread.join();
    let _ = control_thread.join();
    if let Some(h) = metrics_thread {
        let _ = h.join();
    }
    let report = daemon.report();
    if let Some(path) = &opts.stats_file {
        write_stats(path, &report);
    }
    // The workers are gone with their sockets; dropping the programs detaches them.
    drop(progs);
    Ok(report)
}

/// Prints `-j LOG` hits off the hot path (the workers only queue them, and drop
/// what exceeds their bounded queue: LOG is rate-limited by that bound).
fn spawn_log_printer(
    rx: crossbeam::channel::Receiver<Vec<rules::LogEvent>>,
    tables: Arc<ArcSwap<Tables>>,
) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name("fwd-log".into())
        .spawn(move || {
            while let Ok(events) = rx.recv() {
                let t = tables.load();
                for e in events {
                    let m = &e.meta;
                    let addr = |a: u128| match m.family {
                        crate::packet::meta::Family::V4 => std::net::Ipv4Addr::from(a as u32).to_string(),
                        crate::packet::meta::Family::V6 => std::net::Ipv6Addr::from(a).to_string(),
                    };
                    tracing::info!(
                        target: "fwd::log",
                        "LOG rule {} (gen {}): IN={} OUT={} SRC={} DST={} PROTO={} SPT={} DPT={} LEN={} MARK={:#x}",
                        e.rule_id,
                        t.generation,
                        m.in_port,
                        m.out_port,
                        addr(m.src),
                        addr(m.dst),
                        m.proto,
                        m.sport,
                        m.dport,
                        m.ip_len,
                        m.mark
                    );
                }
            }
        })
        .expect("spawning the log thread")
}
