//! One AF_XDP socket bound to a (netdev, queue), on a worker's shared UMEM.

use std::os::fd::{AsRawFd, RawFd};

use xsk_rs::{
    config::{BindFlags, LibxdpFlags, QueueSize, SocketConfig},
    CompQueue, FillQueue, RxQueue, Socket, TxQueue,
};

use super::{FrameBatch, Umem, XskError, BATCH};

/// How the socket binds: let the kernel choose (zero-copy when the driver can),
/// or force one. Forcing zero-copy on a driver without it fails the bind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BindMode {
    #[default]
    Auto,
    ZeroCopy,
    Copy,
}

pub struct XskSocketConfig {
    pub ring_size: u32,
    pub bind: BindMode,
}

/// The kernel's `struct xdp_statistics` for one socket (getsockopt XDP_STATISTICS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SocketStats {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// RX, TX, fill and completion rings of one (netdev, queue). Sockets on the same
/// UMEM but another (netdev, queue) have their own fill/completion pair
/// (DESIGN.md section 8: one producer per fill ring, and that is this worker).
pub struct XskSocket {
    rx: RxQueue,
    tx: TxQueue,
    fill: FillQueue,
    comp: CompQueue,
    zero_copy: bool,
    /// Frames handed to TX and not yet seen on the completion ring.
    tx_outstanding: u32,
    ring_size: u32,
    /// Scratch batch for completion and fill (kept here: zeroing a fresh 64-entry
    /// batch on every call showed at 2.8% of the worker in perf).
    scratch: FrameBatch,
}

// libc's definitions of these are missing on some targets; values from
// include/uapi/linux/if_xdp.h.
const SOL_XDP: libc::c_int = 283;
const XDP_OPTIONS: libc::c_int = 8;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;
const XDP_STATISTICS: libc::c_int = 7;

impl XskSocket {
    /// Binds a socket on `ifname`/`queue`. Our own XDP program steers frames to it,
    /// so libxdp is told not to load its default one.
    pub fn bind(
        umem: &Umem,
        ifname: &str,
        queue: u32,
        cfg: &XskSocketConfig,
    ) -> Result<Self, XskError> {
        let err = |reason: String| XskError::Bind {
            ifname: ifname.to_string(),
            queue,
            reason,
        };
        let mut flags = BindFlags::XDP_USE_NEED_WAKEUP;
        match cfg.bind {
            BindMode::Auto => {}
            BindMode::ZeroCopy => flags |= BindFlags::XDP_ZEROCOPY,
            BindMode::Copy => flags |= BindFlags::XDP_COPY,
        }
        let size = QueueSize::new(cfg.ring_size).map_err(|e| err(e.to_string()))?;
        let config = SocketConfig::builder()
            .rx_queue_size(size)
            .tx_queue_size(size)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(flags)
            .build();
        let name = ifname
            .parse()
            .map_err(|_| err("interface name is not valid".into()))?;
        // SAFETY: xsk-rs requires INHIBIT_PROG_LOAD when a (netdev, queue) is bound twice
        // on one UMEM; we set it always, and fwd binds each (netdev, queue) once per UMEM.
        let (tx, rx, rings) =
            unsafe { Socket::new(config, &umem.inner, &name, queue) }.map_err(|e| {
                err(format!(
                    "{e} (is the interface up, and the queue id below its queue count?)"
                ))
            })?;
        let (fill, comp) = rings
            .ok_or_else(|| err("this (interface, queue) is already bound on this UMEM".into()))?;
        let zero_copy = read_zero_copy(rx.fd().as_raw_fd())
            .map_err(|e| err(format!("reading XDP_OPTIONS: {e}")))?;
        Ok(Self {
            rx,
            tx,
            fill,
            comp,
            zero_copy,
            tx_outstanding: 0,
            ring_size: cfg.ring_size,
            scratch: FrameBatch::default(),
        })
    }

    /// Whether the kernel gave us zero-copy (else copy mode).
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    pub fn fd(&self) -> RawFd {
        self.rx.fd().as_raw_fd()
    }

    /// Appends up to `BATCH - out.len()` received frames to `out`.
    #[inline]
    pub fn rx_burst(&mut self, out: &mut FrameBatch) -> usize {
        let start = out.len;
        // SAFETY: the descriptors the RX ring hands us are chunks the kernel filled and
        // gave up; from here they are ours (`Frame`s in `out`).
        let n = unsafe { self.rx.consume(&mut out.descs[start..]) };
        out.len += n;
        n
    }

    /// Hands as many frames of `batch` as the TX ring takes to the kernel, removing
    /// them from `batch`; returns how many. The rest stay in `batch`.
    #[inline]
    pub fn tx_burst(&mut self, batch: &mut FrameBatch) -> usize {
        // SAFETY: the frames in `batch` are ours (`Frame`s); produce() moves them to the
        // TX ring and we drop them from `batch` below, so no copy stays usable.
        let n = unsafe { self.tx.produce(&batch.descs[..batch.len]) };
        batch.consume_front(n);
        self.tx_outstanding += n as u32;
        n
    }

    /// Kicks the kernel to transmit. In copy mode there is no kernel TX thread and
    /// each `sendto` sends at most a bounded batch (TX_BATCH_SIZE, 32 in
    /// net/xdp/xsk.c), so we kick once per that many outstanding frames.
    #[inline]
    pub fn kick_tx(&mut self) {
        if self.tx_outstanding == 0 || !self.tx.needs_wakeup() {
            return;
        }
        let kicks = if self.zero_copy {
            1
        } else {
            self.tx_outstanding.div_ceil(32).min(16)
        };
        for _ in 0..kicks {
            // Errors here are EAGAIN/EBUSY/ENOBUFS (ring full, retried next loop).
            if self.tx.wakeup().is_err() {
                break;
            }
        }
    }

    /// Moves completed TX frames back to the free list.
    #[inline]
    pub fn complete(&mut self, umem: &mut Umem) -> usize {
        let batch = &mut self.scratch;
        let mut total = 0;
        loop {
            // SAFETY: the completion ring returns chunks the kernel finished sending;
            // they become ours.
            let n = unsafe { self.comp.consume(&mut batch.descs[..]) };
            batch.len = n;
            umem.free_batch(batch);
            total += n;
            if n < BATCH {
                break;
            }
        }
        self.tx_outstanding = self.tx_outstanding.saturating_sub(total as u32);
        total
    }

    /// Tops the fill ring up from the free list. Returns how many frames were given.
    #[inline]
    pub fn refill(&mut self, umem: &mut Umem) -> usize {
        let mut given = 0;
        let batch = &mut self.scratch;
        loop {
            let room = self.fill.nb_free(BATCH as u32) as usize;
            let want = room.min(BATCH).min(umem.free_frames());
            if want == 0 {
                break;
            }
            for _ in 0..want {
                if let Some(f) = umem.alloc() {
                    batch.push(f);
                }
            }
            // SAFETY: the frames are ours (taken from the free list); the fill ring has
            // room for all of them (nb_free above), so all move to the kernel.
            let n = unsafe { self.fill.produce(&batch.descs[..batch.len]) };
            batch.consume_front(n);
            umem.free_batch(batch);
            given += n;
            if n < want {
                break;
            }
        }
        given
    }

    /// True when the kernel asks for a syscall before it will use the fill ring
    /// (XDP_USE_NEED_WAKEUP); the poll loop then calls `wake_rx`.
    #[inline]
    pub fn rx_needs_wakeup(&self) -> bool {
        self.fill.needs_wakeup()
    }

    /// Frames in flight on TX, for the poll loop's bookkeeping.
    pub fn tx_outstanding(&self) -> u32 {
        self.tx_outstanding
    }

    pub fn ring_size(&self) -> u32 {
        self.ring_size
    }

    /// Reads the kernel's per-socket counters.
    pub fn stats(&self) -> std::io::Result<SocketStats> {
        read_stats(self.fd())
    }
}

/// Reads XDP_STATISTICS of a socket by fd; callable from the stats thread.
pub fn read_stats(fd: RawFd) -> std::io::Result<SocketStats> {
    let mut raw = [0u64; 6];
    let mut len = std::mem::size_of_val(&raw) as libc::socklen_t;
    // SAFETY: `raw` is a writable buffer of `len` bytes laid out like the kernel's
    // struct xdp_statistics (six __u64); getsockopt writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_STATISTICS,
            raw.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(SocketStats {
        rx_dropped: raw[0],
        rx_invalid_descs: raw[1],
        tx_invalid_descs: raw[2],
        rx_ring_full: raw[3],
        rx_fill_ring_empty_descs: raw[4],
        tx_ring_empty_descs: raw[5],
    })
}

fn read_zero_copy(fd: RawFd) -> std::io::Result<bool> {
    let mut opts: u32 = 0;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: `opts` is a writable u32 and `len` says so; the kernel writes struct
    // xdp_options { __u32 flags; } into it.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_OPTIONS,
            (&mut opts as *mut u32).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(opts & XDP_OPTIONS_ZEROCOPY != 0)
}

/// Blocks up to `timeout_ms` until one of `fds` has RX frames (the idle path of the
/// poll loop; never called while traffic flows).
pub fn wait_readable(fds: &mut [libc::pollfd], timeout_ms: i32) {
    // SAFETY: `fds` is a valid, writable array of pollfd of the given length.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
}

/// `recvfrom` with MSG_DONTWAIT: what the kernel wants when the fill ring's
/// need_wakeup flag is set in copy mode.
pub fn wake_rx(fd: RawFd) {
    // SAFETY: a zero-length recvfrom with null buffers is the documented AF_XDP wakeup;
    // the kernel writes nothing.
    unsafe {
        libc::recvfrom(
            fd,
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
}
