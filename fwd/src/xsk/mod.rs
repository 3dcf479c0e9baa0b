//! AF_XDP: the UMEM, the four rings of each socket, and the XDP program that steers
//! frames to them. The only module with `unsafe` for UMEM and rings (it wraps xsk-rs);
//! every block says which ownership invariant makes it sound.
//!
//! Ownership of a frame is encoded in [`Frame`]: a UMEM chunk is in exactly one place,
//! a ring (fill, RX, TX, completion) or our hands as a `Frame`, which is not `Clone`.

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
