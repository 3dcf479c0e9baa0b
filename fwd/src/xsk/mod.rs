//! AF_XDP: the UMEM, the four rings of each socket, and the XDP program that steers
//! frames to them. The only module with `unsafe` for UMEM and rings (it wraps xsk-rs);
//! every block says which ownership invariant makes it sound.
//!
//! Ownership of a frame is encoded in [`Frame`]: a UMEM chunk is in exactly one place,
//! a ring (fill, RX, TX, completion) or our hands as a `Frame`, which is not `Clone`.
//! The memory hint the hot path gives the CPU ([`prefetch`]) lives here too, so that
//! `unsafe` stays in this one module.

mod frame;
mod prog;
mod socket;
mod umem;

pub use frame::{Frame, FrameBatch, BATCH};
pub use prog::{XdpAttachMode, XdpProg, XdpProgStats, XdpStat, XdpStatsReader, XdpSteering};
pub use socket::{
    read_stats, wait_readable, wake_rx, BindMode, SocketStats, XskSocket, XskSocketConfig,
};
pub use umem::Umem;

/// Starts loading the cache line that holds `r`, without waiting for it: a batch
/// issues the loads it will need, then works while they arrive (DPDK's bulk hash
/// lookups, VPP's dual loops). A no-op on other architectures.
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 (SSE, part of the x86_64 baseline) is a hint: it never
    // faults and has no effect a program can observe but timing; the address comes
    // from a live reference.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((r as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// Size of one UMEM chunk. 4096 holds a 1518-byte frame after the 256-byte
/// XDP_PACKET_HEADROOM, and is what zero-copy drivers expect (page-sized chunks).
pub const FRAME_SIZE: u32 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum XskError {
    #[error("creating the UMEM ({frames} frames of {FRAME_SIZE} bytes): {reason}")]
    Umem { frames: u32, reason: String },
    #[error("binding an AF_XDP socket to {ifname} queue {queue}: {reason}")]
    Bind {
        ifname: String,
        queue: u32,
        reason: String,
    },
    #[error("XDP program on {ifname}: {reason}")]
    Prog { ifname: String, reason: String },
}
