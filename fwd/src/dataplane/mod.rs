//! The forwarding daemon: sets up ports, XDP programs, workers and the neighbour
//! sync from a [`Config`], runs until SIGINT/SIGTERM, and tears everything down.

pub mod hold;
pub mod pipeline;
pub mod stats;
pub mod worker;

use std::{
    fs,
    net::IpAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use ipnet::IpNet;
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::{
    config::Config,
    packet::meta::Family,
    route::{
        neigh::NeighTable,
        netlink::{self, Netlink},
        Fib, FibBuilder, RouteEntry,
    },
    xsk::{self, SocketStats, Umem, XdpAttachMode, XdpProg, XskSocket, XskSocketConfig},
};

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

fn read_sys(ifname: &str, attr: &str) -> Result<String, RunError> {
    let p = format!("/sys/class/net/{ifname}/{attr}");
    fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| {
            RunError::BadInput(format!(
            "interface {ifname:?}: cannot read {p}: {e} (does it exist in this network namespace?)"
        ))
        })
}

/// Looks up each port's interface and the box's addresses on it.
pub fn discover_ports(cfg: &Config) -> Result<Vec<PortInfo>, RunError> {
    let mut nl =
        Netlink::new().map_err(|e| RunError::Runtime(format!("opening rtnetlink: {e}")))?;
    let kernel_nets = nl
        .addresses()
        .map_err(|e| RunError::Runtime(format!("reading interface addresses: {e}")))?;
    let mut ports = Vec::new();
    for p in &cfg.ports {
        let p = p.get_ref();
        let ifindex: u32 = read_sys(&p.interface, "ifindex")?
            .parse()
            .map_err(|_| RunError::Runtime(format!("{}: unreadable ifindex", p.interface)))?;
        let mac = read_sys(&p.interface, "address")?
            .parse::<crate::config::MacAddr>()
            .map_err(|_| {
                RunError::BadInput(format!(
                    "interface {:?} has no Ethernet address",
                    p.interface
                ))
            })?
            .0;
        let mtu: u16 = read_sys(&p.interface, "mtu")?.parse().unwrap_or(1500);
        let mut nets: Vec<IpNet> = p.addresses.clone();
        for (idx, net) in &kernel_nets {
            if *idx == ifindex && !nets.iter().any(|n| n.addr() == net.addr()) {
                nets.push(*net);
            }
        }
        let v4 = nets
            .iter()
            .filter_map(|n| match n.addr() {
                IpAddr::V4(a) => Some(a),
                _ => None,
            })
            .collect();
        // ICMPv6 errors must not come from a link-local source when a global one exists.
        let v6 = nets
            .iter()
            .filter_map(|n| match n.addr() {
                IpAddr::V6(a) if a.segments()[0] & 0xffc0 != 0xfe80 => Some(a),
                _ => None,
            })
            .collect();
        ports.push(PortInfo {
            interface: p.interface.clone(),
            ifindex,
            mac,
            mtu,
            v4,
            v6,
            nets,
        });
    }
    Ok(ports)
}

pub fn ip_to_u128(a: IpAddr) -> (Family, u128) {
    match a {
        IpAddr::V4(a) => (Family::V4, u32::from(a) as u128),
        IpAddr::V6(a) => (Family::V6, u128::from(a)),
    }
}

/// Connected routes for every port's prefixes (like the kernel's), then the
/// config's routes.
pub fn build_fib(cfg: &Config, ports: &[PortInfo]) -> Result<Fib, RunError> {
    let mut b = FibBuilder::new();
    let mut connected: Vec<(IpNet, u16)> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        for net in &p.nets {
            let net = net.trunc();
            // Link-local prefixes are not routed.
            if matches!(net, IpNet::V6(n) if n.addr().segments()[0] & 0xffc0 == 0xfe80)
                || connected.iter().any(|(n, _)| *n == net)
            {
                continue;
            }
            connected.push((net, i as u16));
            b.add(net, RouteEntry::new(i as u16, None)).map_err(|e| {
                RunError::BadInput(format!("connected route {net} of {}: {e}", p.interface))
            })?;
        }
    }
    for (i, r) in cfg.routes.iter().enumerate() {
        let r = r.get_ref();
        let port = match (&r.interface, r.via) {
            (Some(ifname), _) => cfg.port_index(ifname).expect("validated in Config::parse") as u16,
            (None, Some(via)) => connected
                .iter()
                .filter(|(n, _)| n.contains(&via))
                .max_by_key(|(n, _)| n.prefix_len())
                .map(|(_, p)| *p)
                .ok_or_else(|| {
                    RunError::BadInput(format!(
                        "routes[{i}]: next hop {via} is on none of the ports' subnets; add `interface`"
                    ))
                })?,
            (None, None) => unreachable!("validated in Config::parse"),
        };
        b.add(r.prefix, RouteEntry::new(port, r.via))
            .map_err(|e| RunError::BadInput(format!("routes[{i}] ({}): {e}", r.prefix)))?;
    }
    Ok(b.build())
}

/// The counters as `--stats-file` and `fwd stats` show them.
#[derive(Debug, Serialize)]
pub struct StatsReport {
    pub uptime_secs: f64,
    pub ports: Vec<PortReport>,
    pub drops: std::collections::BTreeMap<&'static str, u64>,
    pub malformed: std::collections::BTreeMap<&'static str, u64>,
    pub events: std::collections::BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize)]
pub struct PortReport {
    pub interface: String,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// The kernel's XDP_STATISTICS, summed over this port's sockets.
    pub xsk: SocketStats,
    /// Where the XDP program sent frames (redirect to fwd, or pass to the kernel why).
    pub xdp: std::collections::BTreeMap<&'static str, u64>,
}

/// What the running daemon keeps to answer for its counters.
struct Running {
    started: Instant,
    ports: Arc<[PortInfo]>,
    progs: Vec<XdpProg>,
    /// (port, socket fd) of every socket, for XDP_STATISTICS.
    socket_fds: Vec<(usize, i32)>,
    counters: Vec<Arc<SharedCounters>>,
}

impl Running {
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
                    xdp: self.progs[i]
                        .stats()
                        .iter()
                        .map(|(s, v)| (s.name(), *v))
                        .collect(),
                }
            })
            .collect();
        StatsReport {
            uptime_secs: self.started.elapsed().as_secs_f64(),
            ports,
            drops: t.drops.iter().copied().collect(),
            malformed: crate::packet::parse::ParseError::ALL
                .iter()
                .zip(t.malformed.iter())
                .map(|(e, v)| (e.as_str(), *v))
                .filter(|(_, v)| *v > 0)
                .collect(),
            events: t.events.iter().copied().collect(),
        }
    }
}

fn write_stats(path: &PathBuf, report: &StatsReport) {
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
pub fn run(cfg: &Config, opts: &RunOptions) -> Result<StatsReport, RunError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| RunError::Runtime(format!("installing signal handlers: {e}")))?;
    }

    let ports: Arc<[PortInfo]> = discover_ports(cfg)?.into();
    let fib = Arc::new(build_fib(cfg, &ports)?);

    let mut statics = FxHashMap::default();
    for n in &cfg.neighbours {
        let n = n.get_ref();
        let port = cfg.port_index(&n.interface).expect("validated") as u16;
        statics.insert(netlink::next_hop(port, n.address), n.mac.0);
    }
    let neigh = NeighTable::new(statics);
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
        let want = cfg.ports[i].get_ref().xdp_mode;
        let prog = XdpProg::attach(&p.interface, p.ifindex, want)?;
        prog.set_local_addrs(&local_v4, &local_v6)?;
        if prog.mode() == XdpAttachMode::Generic {
            tracing::warn!(interface = %p.interface, "XDP runs in generic (skb) mode: the driver has no native XDP; expect a fraction of native speed");
        }
        progs.push(prog);
    }

    // Deal (port, queue) pairs to workers: worker w takes every queue whose index in
    // its port's list is w modulo the worker count, so each worker has a socket on
    // every port to transmit on.
    let nworkers = cfg.workers.cores.len().max(1);
    let mut workers = Vec::new();
    let mut socket_fds = Vec::new();
    let mut counters = Vec::new();
    let mut lines = Vec::new();
    for w in 0..nworkers {
        let mut assigned = Vec::new();
        for (pi, p) in cfg.ports.iter().enumerate() {
            let qs = &p.get_ref().queues;
            let mine: Vec<u32> = qs
                .iter()
                .enumerate()
                .filter(|(k, _)| k % nworkers == w)
                .map(|(_, q)| *q)
                .collect();
            if mine.is_empty() {
                return Err(RunError::BadInput(format!(
                    "port {} has {} queue(s) for {nworkers} workers: every worker needs a queue on every port",
                    p.get_ref().interface,
                    qs.len()
                )));
            }
            assigned.extend(mine.into_iter().map(|q| (pi, q)));
        }
        let frames = cfg.workers.frames_per_socket * assigned.len() as u32;
        let umem = Umem::new(frames, cfg.workers.ring_size)?;
        let mut sockets = Vec::new();
        let mut socket_port = Vec::new();
        let mut tx_socket = vec![usize::MAX; ports.len()];
        for (pi, q) in &assigned {
            let sc = XskSocketConfig {
                ring_size: cfg.workers.ring_size,
                bind: cfg.ports[*pi].get_ref().bind,
            };
            let s = XskSocket::bind(&umem, &ports[*pi].interface, *q, &sc)?;
            progs[*pi].register_socket(*q, s.fd())?;
            lines.push(format!(
                "  worker {w}{}: {} queue {q}: {} mode, XDP {}",
                cfg.workers
                    .cores
                    .get(w)
                    .map(|c| format!(" (core {c})"))
                    .unwrap_or_default(),
                ports[*pi].interface,
                if s.zero_copy() { "zero-copy" } else { "copy" },
                if progs[*pi].mode() == XdpAttachMode::Native {
                    "native"
                } else {
                    "generic"
                },
            ));
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
        let shared = Arc::new(SharedCounters::new(ports.len()));
        counters.push(shared.clone());
        workers.push(Worker {
            id: w,
            core: cfg.workers.cores.get(w).copied(),
            umem,
            sockets,
            socket_port,
            tx_socket,
            ports: ports.clone(),
            fib: fib.clone(),
            neigh: neigh.clone(),
            neigh_requests: req_tx.clone(),
            shared,
            stop: stop.clone(),
            idle_spins: cfg.workers.idle_spins,
        });
    }
    println!(
        "fwd: forwarding on {} port(s) with {nworkers} worker(s)",
        ports.len()
    );
    for l in &lines {
        println!("{l}");
    }

    let handles: Vec<_> = workers
        .into_iter()
        .map(|w| {
            thread::Builder::new()
                .name(format!("fwd-worker-{}", w.id))
                .spawn(move || w.run())
                .map_err(|e| RunError::Runtime(format!("starting a worker: {e}")))
        })
        .collect::<Result<_, _>>()?;

    let running = Running {
        started: Instant::now(),
        ports: ports.clone(),
        progs,
        socket_fds,
        counters,
    };
    let mut last_write = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(20));
        if opts
            .duration
            .is_some_and(|d| running.started.elapsed() >= d)
        {
            stop.store(true, Ordering::Relaxed);
        }
        if let Some(path) = &opts.stats_file {
            if last_write.elapsed() >= opts.stats_interval {
                write_stats(path, &running.report());
                last_write = Instant::now();
            }
        }
    }
    for h in handles {
        let _ = h.join();
    }
    let _ = neigh_thread.join();
    let report = running.report();
    if let Some(path) = &opts.stats_file {
        write_stats(path, &report);
    }
    // Dropping `running` detaches the XDP programs; the workers' sockets are gone.
    drop(running);
    Ok(report)
}
