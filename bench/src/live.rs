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
    report::{GenReport, Progress},
    traffic::{Proto, Sizes, TrafficSpec, Vary, FCS_LEN, PORTS_PER_ADDR},
};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/pktgen.skel.rs"));
}

/// include/uapi/linux/bpf.h: run XDP on live frames that are really sent.
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
/// Program runs per BPF_PROG_RUN call. A call costs ~20 ms of setup on the 2-core
/// test VM (measured: 76 calls of 20 repetitions took 2 s), and nothing is sent
/// meanwhile, so calls are long: the program paces itself and stops at the
/// deadline (see pktgen.bpf.c); runs past the deadline are cheap drops.
const CHUNK: u32 = 1 << 22;

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
    if spec.vary != Vary::Src || spec.first_flow != 0 {
        return Err(
            "--engine live varies the source port from flow 0 only: use --engine afxdp for --vary dst or --first-flow"
                .into(),
        );
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
        // 1/1024 ns per frame (FP_SHIFT in pktgen.bpf.c); 0 = no pacing.
        ro.gap_fp = o
            .rate
            .map_or(0, |r| ((1e9 * 1024.0) / r).round().max(1.0) as u64);
        ro.max_count = o.bounds.count.unwrap_or(u64::MAX);
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
    let mut skel = skel;
    if let Some(data) = skel.maps.data_data.as_deref_mut() {
        data.deadline_ns = crate::monotonic_ns() + o.bounds.duration.as_nanos() as u64;
    }
    let skel = skel;
    let sent = || skel.maps.bss_data.as_deref().map_or(0, |b| b.next_seq);
    let mut progress = Progress::new("pktgen", o.quiet);
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) && start.elapsed() < o.bounds.duration && sent() < count {
        let input = ProgramInput {
            context_in: Some(&mut ctx_bytes),
            data_in: Some(&template),
            flags: BPF_F_TEST_XDP_LIVE_FRAMES,
            repeat: CHUNK,
            ..Default::default()
        };
        skel.progs
            .pktgen_xdp
            .test_run(input)
            .map_err(|e| format!("BPF_PROG_RUN (live frames) on {}: {e}", o.ifname))?;
        progress.tick(sent(), String::new);
    }
    // Nothing is sent after the deadline, however long the last call ran on.
    let duration = start.elapsed().min(o.bounds.duration).as_secs_f64();
    let sent = sent();
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
