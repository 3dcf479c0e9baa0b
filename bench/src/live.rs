//! The live-frames generator: bpf/pktgen.bpf.c run through BPF_PROG_RUN with
//! BPF_F_TEST_XDP_LIVE_FRAMES. The kernel makes a frame per repetition from our
//! template and transmits what the program redirects; no skb, no socket, several
//! Mpps on veth where AF_XDP copy-mode TX stops near 1 Mpps. The catch: frames
//! redirected into a veth arrive at the peer as XDP frames, so the peer needs an
//! XDP program or NAPI (GRO on) to take them, and the peer's kernel stack sees them
//! only through that path (check its counters: bench.sh does).

use std::{
    mem::MaybeUninit,
    net::IpAddr,
    sync::atomic::{AtomicBool, Ordering},
    time::Instant,
};

use libbpf_rs::{
    skel::{OpenSkel, SkelBuilder},
    ProgramInput,
};

use crate::{
    afxdp::Bounds,
    pacer::Pacer,
    report::{GenReport, Progress},
    traffic::{Proto, Sizes, TrafficSpec, FCS_LEN, PORTS_PER_ADDR},
};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/pktgen.skel.rs"));
}

/// include/uapi/linux/bpf.h: run XDP on live frames that are really sent.
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
/// Repetitions per BPF_PROG_RUN call at "max" rate: long enough to amortise the
/// syscall, short enough (~10 ms at 5 Mpps) to notice a stop request promptly.
const MAX_RATE_CHUNK: u64 = 1 << 16;

pub struct LiveOptions {
    pub ifname: String,
    pub rate: Option<f64>,
    pub bounds: Bounds,
    pub quiet: bool,
}

/// What live mode can send: the program varies only the UDP source port.
pub fn check_spec(spec: &TrafficSpec) -> Result<(), String> {
    if !matches!(spec.src, IpAddr::V4(_)) || spec.proto != Proto::Udp {
        return Err("--engine live sends IPv4/UDP only (it zeroes the UDP checksum, which IPv6 forbids); use --engine afxdp for IPv6, TCP or ICMP".into());
    }
    if !matches!(spec.sizes, Sizes::Fixed(_)) {
        return Err("--engine live sends one frame size; use --engine afxdp for IMIX".into());
    }
    if spec.flows > PORTS_PER_ADDR {
        return Err(format!(
            "--engine live varies the source port only: at most {PORTS_PER_ADDR} flows"
        ));
    }
    Ok(())
}

pub fn run_live(
    spec: &TrafficSpec,
    o: &LiveOptions,
    stop: &AtomicBool,
) -> Result<GenReport, String> {
    check_spec(spec)?;
    let ifindex = crate::ifindex(&o.ifname)?;
    let mut storage = MaybeUninit::uninit();
    let mut open = skel::PktgenSkelBuilder::default()
        .open(&mut storage)
        .map_err(|e| format!("opening the pktgen BPF program: {e}"))?;
    {
        let ro = open
            .maps
            .rodata_data
            .as_deref_mut()
            .ok_or("the pktgen BPF program has no .rodata")?;
        ro.out_ifindex = ifindex;
        ro.flows = spec.flows;
        ro.sport_base = spec.sport;
    }
    let skel = open
        .load()
        .map_err(|e| format!("loading the pktgen BPF program: {e}"))?;

    let mut template = vec![0u8; spec.sizes.max()];
    let len = spec.build(&mut template, 0, 0);
    template.truncate(len);
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
    // egress_ifindex (all u32). BPF_PROG_RUN wants data = data_meta = 0 and
    // data_end = the frame length.
    let mut ctx = [0u32; 6];
    ctx[1] = len as u32;
    ctx[3] = ifindex;
    let mut ctx_bytes: Vec<u8> = ctx.iter().flat_map(|w| w.to_ne_bytes()).collect();

    let count = o.bounds.count.unwrap_or(u64::MAX);
    // Pace in slices of ~100 us of traffic: fine enough that a receiver's 2048-frame
    // ring sees no burst it could not absorb at the target rate.
    let chunk = match o.rate {
        Some(r) => ((r / 10_000.0) as u64).clamp(1, MAX_RATE_CHUNK),
        None => MAX_RATE_CHUNK,
    };
    let mut pacer = Pacer::new(o.rate, chunk);
    let mut progress = Progress::new("pktgen", o.quiet);
    let start = Instant::now();
    loop {
        let elapsed = start.elapsed();
        if stop.load(Ordering::Relaxed) || elapsed >= o.bounds.duration || pacer.total() >= count {
            break;
        }
        let n = pacer.allowance(elapsed).min(count - pacer.total());
        if n == 0 {
            std::hint::spin_loop();
            continue;
        }
        let input = ProgramInput {
            context_in: Some(&mut ctx_bytes),
            data_in: Some(&template),
            flags: BPF_F_TEST_XDP_LIVE_FRAMES,
            repeat: n as u32,
            ..Default::default()
        };
        skel.progs
            .pktgen_xdp
            .test_run(input)
            .map_err(|e| format!("BPF_PROG_RUN (live frames) on {}: {e}", o.ifname))?;
        pacer.sent(n);
        progress.tick(pacer.total(), String::new);
    }
    let duration = start.elapsed().as_secs_f64();
    let sent = pacer.total();
    Ok(GenReport {
        engine: "live",
        interface: o.ifname.clone(),
        sent,
        bytes: sent * (len + FCS_LEN) as u64,
        duration_secs: duration,
        pps: sent as f64 / duration,
        target_pps: o.rate,
        frame_size: format!("{:?}", spec.sizes),
        mode: "BPF_PROG_RUN live frames, XDP_REDIRECT".into(),
    })
}
