//! AF_XDP engines on fwd's `xsk` wrappers: the TX generator (skb-producing in copy
//! mode, so the kernel stack sees its frames: the Linux baseline needs that) and
//! the RX sink (fwd's own XDP program steers frames to the socket; ARP/ND still go
//! to the kernel).

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use fwd::{
    packet::PacketMeta,
    xsk::{self, BindMode, FrameBatch, Umem, XdpAttachMode, XdpProg, XskSocket, XskSocketConfig},
};

use crate::{
    latency::Latency,
    monotonic_ns,
    pacer::Pacer,
    report::{GenReport, Progress, SinkReport},
    seq::SeqTracker,
    traffic::{read_payload, TrafficSpec, FCS_LEN},
};

/// Frames in the UMEM: two TX rings' worth, so building never waits on completions.
const UMEM_FRAMES: u32 = 4096;
const RING_SIZE: u32 = 2048;

/// How long a run may go, whichever comes first.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub count: Option<u64>,
    pub duration: Duration,
}

pub struct TxOptions {
    pub ifname: String,
    pub queue: u32,
    pub bind: BindMode,
    pub rate: Option<f64>,
    pub bounds: Bounds,
    pub quiet: bool,
}

pub fn run_tx(spec: &TrafficSpec, o: &TxOptions, stop: &AtomicBool) -> Result<GenReport, String> {
    let mut umem = Umem::new(UMEM_FRAMES, RING_SIZE).map_err(|e| e.to_string())?;
    let cfg = XskSocketConfig {
        ring_size: RING_SIZE,
        bind: o.bind,
    };
    let mut sock = XskSocket::bind(&umem, &o.ifname, o.queue, &cfg).map_err(|e| e.to_string())?;
    let mode = if sock.zero_copy() {
        "zero-copy"
    } else {
        "copy"
    };
    let count = o.bounds.count.unwrap_or(u64::MAX);
    let mut pacer = Pacer::new(o.rate, xsk::BATCH as u64);
    let mut progress = Progress::new("pktgen", o.quiet);
    let mut pending = FrameBatch::default();
    let mut seq = 0u64;
    let mut bytes = 0u64;
    let start = Instant::now();
    let mut elapsed = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) && elapsed < o.bounds.duration {
        sock.complete(&mut umem);
        if pending.is_empty() && seq < count {
            let allow = pacer.allowance(elapsed).min(count - seq) as usize;
            for _ in 0..allow.min(xsk::BATCH) {
                let Some(mut f) = umem.alloc() else { break };
                let len = spec.build(umem.buf_mut(&mut f), seq, monotonic_ns());
                umem.set_len(&mut f, len);
                pending.push(f);
                bytes += (len + FCS_LEN) as u64;
                seq += 1;
            }
        }
        let n = sock.tx_burst(&mut pending);
        pacer.sent(n as u64);
        sock.kick_tx();
        if seq >= count && pending.is_empty() && sock.tx_outstanding() == 0 {
            break;
        }
        elapsed = start.elapsed();
        progress.tick(pacer.total(), String::new);
    }
    // Let the last frames complete (bounded: copy mode completes within a kick).
    let drain_until = Instant::now() + Duration::from_millis(500);
    while sock.tx_outstanding() > 0 && Instant::now() < drain_until {
        sock.kick_tx();
        sock.complete(&mut umem);
    }
    let duration = start.elapsed().as_secs_f64();
    let sent = pacer.total() - u64::from(sock.tx_outstanding());
    umem.free_batch(&mut pending);
    Ok(GenReport {
        engine: "afxdp",
        interface: o.ifname.clone(),
        sent,
        bytes,
        duration_secs: duration,
        pps: sent as f64 / duration,
        target_pps: o.rate,
        frame_size: format!("{:?}", spec.sizes),
        mode: mode.into(),
    })
}

pub struct RxOptions {
    pub ifname: String,
    pub queue: u32,
    pub bind: BindMode,
    pub xdp_mode: XdpAttachMode,
    /// Record the latency of one frame in `sample_every` (a power of two).
    pub sample_every: u64,
    pub duration: Duration,
    pub quiet: bool,
}

pub fn run_rx(o: &RxOptions, stop: &AtomicBool) -> Result<SinkReport, String> {
    let ifindex = crate::ifindex(&o.ifname)?;
    let prog = XdpProg::attach(&o.ifname, ifindex, o.xdp_mode).map_err(|e| e.to_string())?;
    let mut umem = Umem::new(UMEM_FRAMES, RING_SIZE).map_err(|e| e.to_string())?;
    let cfg = XskSocketConfig {
        ring_size: RING_SIZE,
        bind: o.bind,
    };
    let mut sock = XskSocket::bind(&umem, &o.ifname, o.queue, &cfg).map_err(|e| e.to_string())?;
    prog.register_socket(o.queue, sock.fd())
        .map_err(|e| e.to_string())?;
    let mode = format!(
        "{} / {:?} XDP",
        if sock.zero_copy() {
            "zero-copy"
        } else {
            "copy"
        },
        prog.mode()
    );
    sock.refill(&mut umem);

    let mask = o.sample_every.next_power_of_two() - 1;
    let mut tracker = SeqTracker::new();
    let mut lat = Latency::new();
    let mut meta = PacketMeta::default();
    let mut batch = FrameBatch::default();
    let mut progress = Progress::new("sink", o.quiet);
    let mut pollfd = [libc_pollfd(sock.fd())];
    let (mut packets, mut bytes, mut other) = (0u64, 0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) && start.elapsed() < o.duration {
        let n = sock.rx_burst(&mut batch);
        if n > 0 {
            let now = monotonic_ns();
            for f in batch.drain() {
                let data = umem.data(&f);
                match read_payload(data, &mut meta) {
                    Some((seq, ts)) => {
                        packets += 1;
                        bytes += (data.len() + FCS_LEN) as u64;
                        tracker.record(seq);
                        if seq & mask == 0 {
                            lat.record(ts, now);
                        }
                    }
                    None => other += 1,
                }
                umem.free(f);
            }
            last = Instant::now();
            first.get_or_insert(last);
        }
        sock.refill(&mut umem);
        if sock.rx_needs_wakeup() {
            xsk::wake_rx(sock.fd());
        }
        if n == 0 {
            xsk::wait_readable(&mut pollfd, 10);
        }
        progress.tick(packets, || {
            let s = tracker.stats();
            format!(
                "lost {} reordered {} dup {}",
                s.lost, s.reordered, s.duplicates
            )
        });
    }
    let active = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    Ok(SinkReport {
        engine: "afxdp",
        interface: o.ifname.clone(),
        packets,
        bytes,
        other,
        seq: tracker.stats(),
        latency: lat.summary(),
        samples_lost: 0,
        active_secs: active,
        pps: if active > 0.0 {
            packets as f64 / active
        } else {
            0.0
        },
        mode,
    })
}

fn libc_pollfd(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}
