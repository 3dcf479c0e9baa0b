//! The XDP sink: bpf/sink.bpf.c counts and drops bench frames in the driver's XDP
//! hook (several Mpps on veth, where an AF_XDP copy-mode sink copies every frame),
//! tracks sequence numbers in the kernel and hands one latency sample in N to us
//! through a ring buffer.

use std::{
    cell::RefCell,
    mem::MaybeUninit,
    os::fd::AsFd,
    rc::Rc,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use libbpf_rs::{
    skel::{OpenSkel, SkelBuilder},
    MapCore, MapFlags, RingBufferBuilder, Xdp, XdpFlags,
};

use fwd::xsk::XdpAttachMode;

use crate::{
    latency::Latency,
    report::{Progress, SinkReport},
    seq::{self, SeqStats},
};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/sink.skel.rs"));
}

pub struct XdpSinkOptions {
    pub ifname: String,
    /// Native, generic (skb), or native falling back to generic.
    pub mode: XdpAttachMode,
    pub sample_every: u64,
    pub duration: Duration,
    pub quiet: bool,
}

/// struct sink_state in sink.bpf.c, eight u64.
#[derive(Clone, Copy, Default)]
struct State {
    packets: u64,
    bytes: u64,
    unique: u64,
    duplicates: u64,
    reordered: u64,
    max_seq1: u64,
    other: u64,
    samples_lost: u64,
}

impl State {
    fn from_bytes(b: &[u8]) -> Self {
        let w = |i: usize| u64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        Self {
            packets: w(0),
            bytes: w(1),
            unique: w(2),
            duplicates: w(3),
            reordered: w(4),
            max_seq1: w(5),
            other: w(6),
            samples_lost: w(7),
        }
    }
}

pub fn run_xdp_sink(o: &XdpSinkOptions, stop: &AtomicBool) -> Result<SinkReport, String> {
    let ifindex = crate::ifindex(&o.ifname)? as i32;
    let mut storage = MaybeUninit::uninit();
    let mut open = skel::SinkSkelBuilder::default()
        .open(&mut storage)
        .map_err(|e| format!("opening the sink BPF program: {e}"))?;
    open.maps
        .rodata_data
        .as_deref_mut()
        .ok_or("the sink BPF program has no .rodata")?
        .sample_mask = o.sample_every.next_power_of_two() - 1;
    let skel = open
        .load()
        .map_err(|e| format!("loading the sink BPF program: {e}"))?;
    let xdp = Xdp::new(skel.progs.sink_xdp.as_fd());
    let attach_err = |mode: &str, e: libbpf_rs::Error| {
        format!(
            "attaching the sink XDP program to {} ({mode}): {e} (another XDP program there?)",
            o.ifname
        )
    };
    let native = match o.mode {
        XdpAttachMode::Generic => false,
        XdpAttachMode::Native => {
            xdp.attach(ifindex, XdpFlags::DRV_MODE | XdpFlags::UPDATE_IF_NOEXIST)
                .map_err(|e| attach_err("native", e))?;
            true
        }
        XdpAttachMode::Auto => xdp
            .attach(ifindex, XdpFlags::DRV_MODE | XdpFlags::UPDATE_IF_NOEXIST)
            .is_ok(),
    };
    if !native {
        xdp.attach(ifindex, XdpFlags::SKB_MODE | XdpFlags::UPDATE_IF_NOEXIST)
            .map_err(|e| attach_err("generic", e))?;
    }
    let mode = if native { "native XDP" } else { "generic XDP" };
    let detach = Detach {
        xdp: &xdp,
        ifindex,
        native,
    };

    let lat = Rc::new(RefCell::new(Latency::new()));
    let mut rb = RingBufferBuilder::new();
    let sink = lat.clone();
    rb.add(&skel.maps.samples, move |data: &[u8]| {
        if let Ok(b) = data.try_into() {
            sink.borrow_mut().record_ns(u64::from_ne_bytes(b));
        }
        0
    })
    .map_err(|e| e.to_string())?;
    let rb = rb.build().map_err(|e| e.to_string())?;

    let read_state = || -> State {
        match skel.maps.state.lookup(&0u32.to_ne_bytes(), MapFlags::ANY) {
            Ok(Some(b)) => State::from_bytes(&b),
            _ => State::default(),
        }
    };
    let mut progress = Progress::new("sink", o.quiet);
    let start = Instant::now();
    let (mut first, mut last) = (None::<Instant>, Instant::now());
    let mut seen = 0u64;
    while !stop.load(Ordering::Relaxed) && start.elapsed() < o.duration {
        let _ = rb.poll(Duration::from_millis(100));
        let s = read_state();
        if s.packets != seen {
            seen = s.packets;
            last = Instant::now();
            first.get_or_insert(last);
        }
        progress.tick(s.packets, || {
            let q = seq::finish(to_seq(&s));
            format!(
                "lost {} reordered {} dup {}",
                q.lost, q.reordered, q.duplicates
            )
        });
    }
    let _ = rb.consume();
    let s = read_state();
    drop(detach);
    let active = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    let latency = lat.borrow().summary();
    Ok(SinkReport {
        engine: "xdp",
        interface: o.ifname.clone(),
        packets: s.packets,
        bytes: s.bytes + 4 * s.packets,
        other: s.other,
        seq: seq::finish(to_seq(&s)),
        latency,
        samples_lost: s.samples_lost,
        active_secs: active,
        pps: if active > 0.0 {
            s.packets as f64 / active
        } else {
            0.0
        },
        mode: mode.into(),
    })
}

fn to_seq(s: &State) -> SeqStats {
    SeqStats {
        received: s.packets,
        unique: s.unique,
        duplicates: s.duplicates,
        reordered: s.reordered,
        lost: 0,
        max_seq1: s.max_seq1,
    }
}

/// Detaches the sink's program when the run ends, however it ends.
struct Detach<'a> {
    xdp: &'a Xdp<'a>,
    ifindex: i32,
    native: bool,
}

impl Drop for Detach<'_> {
    fn drop(&mut self) {
        let flags = if self.native {
            XdpFlags::DRV_MODE
        } else {
            XdpFlags::SKB_MODE
        };
        if let Err(e) = self.xdp.detach(self.ifindex, flags) {
            eprintln!("sink: detaching the XDP program: {e}");
        }
    }
}
