//! Frames waiting for their next hop's MAC, like Linux's per-neighbour arp_queue:
//! small, bounded per next hop and in total, and timed out. Fixed capacity, so the
//! worker never allocates for it.

use std::time::{Duration, Instant};

use crate::{route::neigh::NextHop, xsk::Frame};

/// Frames held per next hop. Linux keeps up to unres_qlen_bytes (212992 bytes, about
/// 100 full-size frames); a forwarder at line rate would hold its whole UMEM that way,
/// so we keep fewer and count the rest.
pub const PER_NEXT_HOP: usize = 64;
/// Frames held in total by one worker.
pub const TOTAL: usize = 512;
/// How long a frame waits: Linux gives up after mcast+ucast probes, 3 x 1 s.
pub const TIMEOUT: Duration = Duration::from_secs(3);

pub struct Held {
    pub next_hop: NextHop,
    pub frame: Frame,
    pub since: Instant,
}

#[derive(Default)]
pub struct HoldQueue {
    items: Vec<Held>,
}

/// A frame leaving the queue.
pub enum Drained {
    Released(NextHop, [u8; 6], Frame),
    Expired(Frame),
}

/// What `hold` did with a frame.
pub enum HoldOutcome {
    /// Held; `first` when no frame for this next hop was waiting (ask the kernel).
    Held { first: bool },
    /// No room: the frame comes back to be freed.
    Full(Frame),
}

impl HoldQueue {
    pub fn new() -> Self {
        Self {
            items: Vec::with_capacity(TOTAL),
        }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn hold(&mut self, next_hop: NextHop, frame: Frame, now: Instant) -> HoldOutcome {
        let same = self.items.iter().filter(|h| h.next_hop == next_hop).count();
        if same >= PER_NEXT_HOP || self.items.len() >= TOTAL {
            return HoldOutcome::Full(frame);
        }
        self.items.push(Held {
            next_hop,
            frame,
            since: now,
        });
        HoldOutcome::Held { first: same == 0 }
    }

    /// Takes out, in arrival order, every frame whose next hop `resolve` now knows
    /// (`Released`, with the MAC) or whose time is up (`Expired`).
    pub fn drain_ready(
        &mut self,
        now: Instant,
        mut resolve: impl FnMut(&NextHop) -> Option<[u8; 6]>,
        mut out: impl FnMut(Drained),
    ) {
        let mut i = 0;
        while i < self.items.len() {
            let h = &self.items[i];
            if let Some(mac) = resolve(&h.next_hop) {
                let h = self.items.remove(i);
                out(Drained::Released(h.next_hop, mac, h.frame));
            } else if now.duration_since(h.since) >= TIMEOUT {
                let h = self.items.remove(i);
                out(Drained::Expired(h.frame));
            } else {
                i += 1;
            }
        }
    }
}
