//! Frames as owned tokens, and fixed-size batches of them.

use xsk_rs::FrameDesc;

/// How many descriptors move through a ring in one go: the RX burst, the TX burst
/// and the fill/completion batches. 64 amortises the ring's atomics and the
/// copy-mode `sendto` kick while keeping a batch's headers in L1.
pub const BATCH: usize = 64;

/// One UMEM chunk in our hands. Not `Clone`/`Copy`: holding a `Frame` is the proof
/// that no ring holds the chunk, which is what makes reading and writing it sound.
#[derive(Debug)]
#[repr(transparent)]
pub struct Frame(pub(super) FrameDesc);

impl Frame {
    /// Length of the packet in the frame, in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.0.lengths().data()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Address of the packet's first byte in the UMEM.
    #[inline]
    pub fn addr(&self) -> usize {
        self.0.addr()
    }
}

/// A fixed array of frames plus a count: the unit every ring operation works on.
/// No allocation; pushing onto a full batch is a logic error (checked in debug).
pub struct FrameBatch {
    pub(super) descs: [FrameDesc; BATCH],
    pub(super) len: usize,
}

impl Default for FrameBatch {
    fn default() -> Self {
        Self {
            descs: [FrameDesc::default(); BATCH],
            len: 0,
        }
    }
}

impl FrameBatch {
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == BATCH
    }

    #[inline]
    pub fn push(&mut self, frame: Frame) {
        debug_assert!(self.len < BATCH, "FrameBatch overflow");
        self.descs[self.len] = frame.0;
        self.len += 1;
    }

    /// Length of the `i`th frame's packet.
    #[inline]
    pub fn frame_len(&self, i: usize) -> usize {
        self.descs[i].lengths().data()
    }

    /// Takes every frame out, in order. The iterator must be run to the end: a frame
    /// left in it would be lost to the UMEM.
    #[inline]
    pub fn drain(&mut self) -> impl Iterator<Item = Frame> + '_ {
        let n = std::mem::take(&mut self.len);
        self.descs[..n].iter().map(|d| Frame(*d))
    }

    /// Removes the first `n` frames (they were handed to a ring), keeping the rest in order.
    #[inline]
    pub(super) fn consume_front(&mut self, n: usize) {
        debug_assert!(n <= self.len);
        self.descs.copy_within(n..self.len, 0);
        self.len -= n;
    }
}
