//! Connection tracking and NAT: one [`Table`] per worker (no locks), keyed by the
//! tuple + zone, with Linux's ctstate/ctstatus semantics, TCP state machine and
//! timeouts (nf_conntrack_core.c, nf_conntrack_proto_*.c) and NAT bindings stored in
//! the entry (nf_nat_core.c).
//!
//! Per packet, the dataplane calls, in this order (like the netfilter hooks):
//!
//! 1. PREROUTING, after the raw table: [`Table::track`] (or [`CtResult::UNTRACKED`]
//!    when a raw-table NOTRACK matched). `Err(CtDrop)` means drop the frame.
//! 2. PREROUTING nat, first packet of a flow only (`ct.state == New` and
//!    [`Table::needs_nat_setup`]): run the nat chain; on DNAT call
//!    [`Table::setup_dnat`]. Then [`Table::nat`] with [`Manip::Dst`] for every tracked
//!    packet (it rewrites only when this flow/direction needs it); route on the
//!    rewritten `meta.dst`.
//! 3. FORWARD filter: rules read `ct.state` / `ct.status`.
//! 4. POSTROUTING nat, first packet only: SNAT → [`Table::setup_snat`], MASQUERADE →
//!    [`Table::setup_masquerade`] with the egress port's address. Then
//!    [`Table::nat`] with [`Manip::Src`].
//! 5. Accepted at the end of POSTROUTING: [`Table::confirm`]. Dropped anywhere after
//!    step 1: [`Table::discard_unconfirmed`] (a dropped NEW packet leaves no entry).
//!
//! Once per poll-loop round: [`Table::expire`] with a small budget.
//!
//! Clock: `now` is a coarse monotonic clock in **milliseconds** chosen by the worker.
//! A [`CtHandle`] is valid for the packet it was returned for: until the next
//! `track` or `expire` call on the same table.

mod nat;
mod table;
mod tcp;
mod tuple;

#[cfg(test)]
mod testutil;

pub use nat::{Manip, NatError, NatRange};
pub use table::{FlowView, Lookahead, StateCounts, Table};
pub use tcp::TcpState;
pub use tuple::FlowKey;

use serde::{Deserialize, Serialize};

/// The connection state a packet gets, as `-m conntrack --ctstate` sees it. The
/// discriminants are xt_conntrack's state bits (XT_CONNTRACK_STATE_BIT: INVALID 1,
/// ESTABLISHED 2, RELATED 4, NEW 8) so a rule's state set is a bit mask;
/// UNTRACKED is ours (xt_conntrack uses bit 10, which does not fit a `u8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CtState {
    Invalid = 1,
    Established = 2,
    Related = 4,
    New = 8,
    Untracked = 64,
}

impl CtState {
    /// The bit a `--ctstate` mask tests.
    pub const fn bit(self) -> u8 {
        self as u8
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            CtState::Invalid => "INVALID",
            CtState::Established => "ESTABLISHED",
            CtState::Related => "RELATED",
            CtState::New => "NEW",
            CtState::Untracked => "UNTRACKED",
        }
    }
}

/// Which tuple of the entry the packet matched (IP_CT_DIR_ORIGINAL / _REPLY).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Dir {
    #[default]
    Original = 0,
    Reply = 1,
}

impl Dir {
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    #[inline]
    pub const fn flip(self) -> Dir {
        match self {
            Dir::Original => Dir::Reply,
            Dir::Reply => Dir::Original,
        }
    }
}

/// Status bits of an entry, with Linux's values (enum ip_conntrack_status in
/// uapi/linux/netfilter/nf_conntrack_common.h) so `--ctstatus` masks read the same.
pub mod ctstatus {
    /// Both directions seen (IPS_SEEN_REPLY).
    pub const SEEN_REPLY: u16 = 1 << 1;
    /// Never early-dropped when the table is full (IPS_ASSURED).
    pub const ASSURED: u16 = 1 << 2;
    /// The first packet was accepted at the end of POSTROUTING (IPS_CONFIRMED).
    pub const CONFIRMED: u16 = 1 << 3;
    /// The source is rewritten: SNAT or MASQUERADE (IPS_SRC_NAT).
    pub const SRC_NAT: u16 = 1 << 4;
    /// The destination is rewritten: DNAT (IPS_DST_NAT).
    pub const DST_NAT: u16 = 1 << 5;
    /// The nat table's POSTROUTING decision is made (IPS_SRC_NAT_DONE).
    pub const SRC_NAT_DONE: u16 = 1 << 7;
    /// The nat table's PREROUTING decision is made (IPS_DST_NAT_DONE).
    pub const DST_NAT_DONE: u16 = 1 << 8;
    /// `SRC_NAT | DST_NAT` (IPS_NAT_MASK).
    pub const NAT_MASK: u16 = SRC_NAT | DST_NAT;
    /// The bits `--ctstatus` can match, and what [`super::CtResult::status`] carries.
    pub const PUBLIC: u16 =
        SEEN_REPLY | ASSURED | CONFIRMED | SRC_NAT | DST_NAT | SRC_NAT_DONE | DST_NAT_DONE;
    /// Ours, not Linux's: the slot holds a live entry.
    pub(crate) const ALLOCATED: u16 = 1 << 15;
}

/// Names an entry for the rest of one packet's trip (see the module docs for how
/// long it stays valid). A stale handle is refused, never aliased: the generation
/// changes when the slot is freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtHandle {
    pub(crate) idx: u32,
    pub(crate) gen: u32,
}

/// What [`Table::track`] says about one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtResult {
    pub state: CtState,
    pub dir: Dir,
    /// [`ctstatus`] bits of the entry after this packet (0 without an entry).
    pub status: u16,
    /// None for INVALID and UNTRACKED: Linux detaches the entry from such packets.
    pub handle: Option<CtHandle>,
}

impl CtResult {
    /// What a NOTRACK packet carries (raw table `-j NOTRACK` / `-j CT --notrack`).
    pub const UNTRACKED: CtResult = CtResult {
        state: CtState::Untracked,
        dir: Dir::Original,
        status: 0,
        handle: None,
    };

    pub const INVALID: CtResult = CtResult {
        state: CtState::Invalid,
        dir: Dir::Original,
        status: 0,
        handle: None,
    };
}

/// Why the packet must be dropped (each reason has its counter in [`CtStats`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtDrop {
    /// NEW packet, table at `max_entries` and nothing evictable near its bucket
    /// (Linux: "nf_conntrack: table full, dropping packet").
    TableFull,
    /// NEW packet whose reply tuple is already another entry's tuple (Linux drops
    /// it at confirm and counts `insert_failed`).
    Clash,
}

impl CtDrop {
    pub const fn as_str(self) -> &'static str {
        match self {
            CtDrop::TableFull => "ct_table_full",
            CtDrop::Clash => "ct_clash",
        }
    }
}

/// Per-worker counters, plain `u64`, summed by the reader. Names follow
/// `conntrack -S` where there is one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtStats {
    /// Live entries now (confirmed or not).
    pub entries: u64,
    /// Entries created for a NEW packet (`insert` counts at confirm in Linux: see
    /// `confirmed`).
    pub created: u64,
    /// Entries confirmed (Linux `insert`).
    pub confirmed: u64,
    /// Unconfirmed entries removed because their first packet was dropped.
    pub discarded: u64,
    /// Entries removed on timeout, lazily or by the sweep.
    pub expired: u64,
    /// Entries removed because a TCP RST or reopen ended them.
    pub killed: u64,
    /// Un-ASSURED entries evicted to make room (Linux `early_drop`).
    pub early_drops: u64,
    /// NEW packets dropped because the table was full (Linux `drop`).
    pub table_full_drops: u64,
    /// NEW packets dropped on a reply-tuple clash (Linux `insert_failed`).
    pub clash_drops: u64,
    /// Packets that got INVALID (Linux `invalid`).
    pub invalid: u64,
    /// ICMP errors that got RELATED.
    pub related: u64,
    /// NAT bindings that found no free tuple in their range (packet dropped).
    pub nat_exhausted: u64,
}

/// Timeouts in seconds, Linux's defaults and sysctl names
/// (net.netfilter.nf_conntrack_tcp_timeout_syn_sent → `tcp_syn_sent`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    pub tcp_syn_sent: u32,
    pub tcp_syn_recv: u32,
    pub tcp_established: u32,
    pub tcp_fin_wait: u32,
    pub tcp_close_wait: u32,
    pub tcp_last_ack: u32,
    pub tcp_time_wait: u32,
    pub tcp_close: u32,
    /// Caps the timeout while data is unacknowledged, and ESTABLISHED for a
    /// picked-up connection until the other side answers
    /// (nf_conntrack_tcp_timeout_unacknowledged).
    pub tcp_unacknowledged: u32,
    /// Caps the timeout after `nf_conntrack_tcp_max_retrans` (3) retransmissions in
    /// a row, or while the window is zero (nf_conntrack_tcp_timeout_max_retrans).
    pub tcp_max_retrans: u32,
    /// UDP before a reply, or replied for less than 2 s (nf_conntrack_udp_timeout).
    pub udp: u32,
    /// UDP seen both ways for 2 s: a stream (nf_conntrack_udp_timeout_stream).
    pub udp_stream: u32,
    pub icmp: u32,
    /// Every other protocol (nf_conntrack_generic_timeout).
    pub generic: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn_sent: 120,
            tcp_syn_recv: 60,
            tcp_established: 432_000,
            tcp_fin_wait: 120,
            tcp_close_wait: 60,
            tcp_last_ack: 30,
            tcp_time_wait: 120,
            tcp_close: 10,
            tcp_unacknowledged: 300,
            tcp_max_retrans: 300,
            udp: 30,
            udp_stream: 120,
            icmp: 30,
            generic: 600,
        }
    }
}

/// The `[conntrack]` config section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CtConfig {
    /// Entries per worker; the table never holds more (nf_conntrack_max, per shard).
    pub max_entries: u32,
    /// nf_conntrack_tcp_loose: pick up established TCP connections from a mid-stream
    /// ACK. Linux's default (1) is ours. A picked-up connection is tracked
    /// liberally (its window scale was never seen), as in Linux.
    pub tcp_loose: bool,
    /// nf_conntrack_tcp_be_liberal: accept TCP segments outside the window instead
    /// of making them INVALID (a RST behind what the peer acked stays INVALID).
    /// Linux's default (0) is ours.
    pub tcp_be_liberal: bool,
    pub timeouts: Timeouts,
}

impl Default for CtConfig {
    fn default() -> Self {
        CtConfig {
            max_entries: 65_536,
            tcp_loose: true,
            tcp_be_liberal: false,
            timeouts: Timeouts::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_toml_uses_linux_defaults_for_missing_keys() {
        let c: CtConfig =
            toml::from_str("max_entries = 1000\n[timeouts]\ntcp_established = 3600\nudp = 10\n")
                .unwrap();
        assert_eq!(c.max_entries, 1000);
        assert!(c.tcp_loose);
        assert!(!c.tcp_be_liberal);
        assert_eq!(c.timeouts.tcp_max_retrans, 300);
        assert_eq!(c.timeouts.tcp_established, 3600);
        assert_eq!(c.timeouts.udp, 10);
        assert_eq!(c.timeouts.tcp_syn_sent, 120);
        assert_eq!(c.timeouts.udp_stream, 120);
        assert!(toml::from_str::<CtConfig>("max_entrys = 1").is_err());
    }
}
