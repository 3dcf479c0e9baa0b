//! The UMEM one worker shares between all its sockets, and its free list.

use std::num::NonZeroU32;

use xsk_rs::config::{FrameSize, QueueSize, UmemConfig};

use super::{Frame, FrameBatch, XskError, FRAME_SIZE};

/// A UMEM region and the frames currently in our hands but unused.
///
/// Every chunk starts on the free list; from there it goes to a fill ring (and comes
/// back through RX), or is written and sent (and comes back through a completion
/// ring). The free list never grows past the chunk count, so it never reallocates.
pub struct Umem {
    pub(super) inner: xsk_rs::Umem,
    free: Vec<Frame>,
    frames: u32,
}

impl Umem {
    /// `ring_size` sizes the fill and completion rings of every socket on this UMEM.
    pub fn new(frames: u32, ring_size: u32) -> Result<Self, XskError> {
        let err = |reason: String| XskError::Umem { frames, reason };
        let config = UmemConfig::builder()
            .frame_size(FrameSize::new(FRAME_SIZE).map_err(|e| err(e.to_string()))?)
            .fill_queue_size(QueueSize::new(ring_size).map_err(|e| err(e.to_string()))?)
            .comp_queue_size(QueueSize::new(ring_size).map_err(|e| err(e.to_string()))?)
            .build()
            .map_err(|e| err(e.to_string()))?;
        let count = NonZeroU32::new(frames).ok_or_else(|| err("zero frames".into()))?;
        let (inner, descs) =
            xsk_rs::Umem::new(config, count, false).map_err(|e| err(e.to_string()))?;
        let free = descs.into_iter().map(Frame).collect();
        Ok(Self {
            inner,
            free,
            frames,
        })
    }

    /// Total number of chunks.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Chunks on the free list right now.
    #[inline]
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }

    #[inline]
    pub fn alloc(&mut self) -> Option<Frame> {
        self.free.pop()
    }

    #[inline]
    pub fn free(&mut self, frame: Frame) {
        debug_assert!(self.free.len() < self.frames as usize, "frame freed twice");
        self.free.push(frame);
    }

    /// Returns every frame of `batch` to the free list.
    #[inline]
    pub fn free_batch(&mut self, batch: &mut FrameBatch) {
        for f in batch.drain() {
            self.free.push(f);
        }
    }

    /// The packet bytes of a frame we hold.
    #[inline]
    pub fn data(&self, frame: &Frame) -> &[u8] {
        // SAFETY: `frame` is a `Frame`, so no ring holds its chunk: the kernel neither
        // reads nor writes it until we hand it back, and the descriptor came from this
        // UMEM (frames never cross UMEMs: each worker owns one).
        unsafe { self.inner.data(&frame.0) }.contents()
    }

    /// The packet bytes of every frame of a batch we hold, in order (a look ahead
    /// before the frames are taken out one by one).
    #[inline]
    pub fn batch_data<'a>(&'a self, batch: &'a FrameBatch) -> impl Iterator<Item = &'a [u8]> + 'a {
        batch.descs[..batch.len].iter().map(move |d| {
            // SAFETY: as in `data`: the batch holds these descriptors as frames in our
            // hands (no ring has them), and they came from this UMEM.
            unsafe { self.inner.data(d) }.contents()
        })
    }

    /// The packet bytes of a frame we hold, writable.
    #[inline]
    pub fn data_mut<'a>(&'a self, frame: &'a mut Frame) -> &'a mut [u8] {
        // SAFETY: as in `data`; `&mut Frame` is unique, and distinct `Frame`s are
        // distinct chunks, so no other slice aliases this one.
        let mut data = unsafe { self.inner.data_mut(&mut frame.0) };
        let len = data.len();
        let buf: *mut [u8] = &mut data.contents_mut()[..len];
        // SAFETY: the slice points into the UMEM mapping, which lives as long as
        // `self`; `DataMut` only borrowed the length field of `frame`, which we hold
        // mutably for 'a, so nothing else can observe or change it meanwhile.
        unsafe { &mut *buf }
    }

    /// The whole chunk from the packet's first byte, for building a packet of a new
    /// length in place; `set_len` afterwards.
    #[inline]
    pub fn buf_mut<'a>(&'a self, frame: &'a mut Frame) -> &'a mut [u8] {
        // SAFETY: as in `data_mut`.
        let mut data = unsafe { self.inner.data_mut(&mut frame.0) };
        let cap = data.cursor().buf_len();
        let len = data.len();
        data.cursor().set_pos(cap);
        let buf: *mut [u8] = data.contents_mut();
        data.cursor().set_pos(len);
        // SAFETY: as in `data_mut`.
        unsafe { &mut *buf }
    }

    /// Sets the packet length of a frame (capped at the chunk's capacity).
    #[inline]
    pub fn set_len(&self, frame: &mut Frame, len: usize) {
        // SAFETY: as in `data_mut`; only the descriptor's length changes.
        unsafe { self.inner.data_mut(&mut frame.0) }
            .cursor()
            .set_pos(len);
    }
}
