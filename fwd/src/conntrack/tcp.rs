//! The TCP tracker of nf_conntrack_proto_tcp.c (Linux 6.x): the state transition
//! table (`tcp_conntracks`), flag validation (`tcp_valid_flags`), reopen,
//! simultaneous open, ASSURED, the timeout choice, and sequence and window tracking
//! (`tcp_in_window`).
//!
//! Window tracking keeps, per direction, what Linux keeps in `struct
//! ip_ct_tcp_state`: the highest sequence number sent (`td_end`), the right edge of
//! the window the peer allowed (`td_maxend`), the largest window advertised
//! (`td_maxwin`), the highest ack sent (`td_maxack`), the window scale and the
//! options seen on the SYN (window scale, SACK permitted). A segment past the
//! right edge of the receiver's window, or acking (SACKing) data never sent, is
//! INVALID and leaves the entry as it was (state, windows, timeout), like Linux;
//! only nf_tcp_handle_invalid may shorten the timeout of an ASSURED connection
//! whose ends both sent an out-of-window FIN or RST. A segment wholly behind the
//! window (an old duplicate) or with an overly delayed ack is let through but
//! ignored: not counted, the entry untouched. A RST must carry a sequence number at
//! or past what the other side acked (`tcp_ignore_invalid_rst` = 0), and exactly
//! that one to close an established connection; another in-window RST keeps the
//! state (a challenge ACK may follow) with the CLOSE timeout. Unacknowledged data,
//! three identical retransmissions (`nf_conntrack_tcp_max_retrans`) or a zero
//! window cap the timeout at `unacknowledged` / `max_retrans`.
//!
//! Liberal tracking, where out-of-window segments are accepted (only the RST check
//! stays): for every connection with `tcp_be_liberal` (nf_conntrack_tcp_be_liberal,
//! default off), and for a connection picked up mid-stream (`tcp_loose`), whose
//! window scale was never seen, as Linux does.
//!
//! Not done, because fwd has no such feature: NAT sequence adjustment
//! (`nf_ct_seq_offset`, only for helpers and synproxy; always 0 here) and
//! synproxy's SYN_SENT keep-alive case. `nf_conntrack_tcp_max_retrans` (3) and
//! `tcp_ignore_invalid_rst` (0) are Linux's defaults, not settings.

use super::ctstatus::{ASSURED, SEEN_REPLY};
use super::tuple::ip_end;
use super::Dir;
use crate::packet::meta::PacketMeta;
use crate::packet::tcp::flags::{ACK, FIN, RST, SYN, URG};
use crate::packet::tcp::{TcpPacket, MIN_HEADER_LEN};

/// enum tcp_conntrack, in Linux's order (the table below indexes by it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpState {
    #[default]
    None = 0,
    SynSent = 1,
    SynRecv = 2,
    Established = 3,
    FinWait = 4,
    CloseWait = 5,
    LastAck = 6,
    TimeWait = 7,
    Close = 8,
    SynSent2 = 9,
}

impl TcpState {
    pub const COUNT: usize = 10;
    pub const ALL: [TcpState; 10] = [
        TcpState::None,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::SynSent2,
    ];

    /// tcp_conntrack_names.
    pub const fn as_str(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }

    const fn from_u8(v: u8) -> TcpState {
        TcpState::ALL[v as usize]
    }
}

// enum tcp_bit_set.
const SYN_SET: u8 = 0;
const SYNACK_SET: u8 = 1;
const FIN_SET: u8 = 2;
const ACK_SET: u8 = 3;
const RST_SET: u8 = 4;
const NONE_SET: u8 = 5;

const S_NO: u8 = 0;
const S_SS: u8 = 1;
const S_SR: u8 = 2;
const S_ES: u8 = 3;
const S_FW: u8 = 4;
const S_CW: u8 = 5;
const S_LA: u8 = 6;
const S_TW: u8 = 7;
const S_CL: u8 = 8;
const S_S2: u8 = 9;
/// TCP_CONNTRACK_MAX: invalid.
const S_IV: u8 = 10;
/// TCP_CONNTRACK_IGNORE.
const S_IG: u8 = 11;

/// tcp_conntracks[dir][index][state], copied from nf_conntrack_proto_tcp.c (the
/// per-cell rationale is in the kernel's comments).
#[rustfmt::skip]
static TCP_CONNTRACKS: [[[u8; 10]; 6]; 2] = [
    [
        // ORIGINAL  sNO   sSS   sSR   sES   sFW   sCW   sLA   sTW   sCL   sS2
        /*syn*/    [S_SS, S_SS, S_IG, S_IG, S_IG, S_IG, S_IG, S_SS, S_SS, S_S2],
        /*synack*/ [S_IV, S_IV, S_SR, S_IV, S_IV, S_IV, S_IV, S_IV, S_IV, S_SR],
        /*fin*/    [S_IV, S_IV, S_FW, S_FW, S_LA, S_LA, S_LA, S_TW, S_CL, S_IV],
        /*ack*/    [S_ES, S_IV, S_ES, S_ES, S_CW, S_CW, S_TW, S_TW, S_CL, S_IV],
        /*rst*/    [S_IV, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL],
        /*none*/   [S_IV, S_IV, S_IV, S_IV, S_IV, S_IV, S_IV, S_IV, S_IV, S_IV],
    ],
    [
        // REPLY     sNO   sSS   sSR   sES   sFW   sCW   sLA   sTW   sCL   sS2
        /*syn*/    [S_IV, S_S2, S_IV, S_IV, S_IV, S_IV, S_IV, S_SS, S_IV, S_S2],
        /*synack*/ [S_IV, S_SR, S_IG, S_IG, S_IG, S_IG, S_IG, S_IG, S_IG, S_SR],
        /*fin*/    [S_IV, S_IV, S_FW, S_FW, S_LA, S_LA, S_LA, S_TW, S_CL, S_IV],
        /*ack*/    [S_IV, S_IG, S_SR, S_ES, S_CW, S_CW, S_TW, S_TW, S_CL, S_IG],
        /*rst*/    [S_IV, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL],
        /*none*/   [S_IV, S_IV, S_IV, S_IV, S_IV, S_IV, S_IV, S_IV, S_IV, S_IV],
    ],
];

/// get_conntrack_index.
#[inline]
fn conntrack_index(flags: u8) -> u8 {
    if flags & RST != 0 {
        RST_SET
    } else if flags & SYN != 0 {
        if flags & ACK != 0 {
            SYNACK_SET
        } else {
            SYN_SET
        }
    } else if flags & FIN != 0 {
        FIN_SET
    } else if flags & ACK != 0 {
        ACK_SET
    } else {
        NONE_SET
    }
}

/// tcp_valid_flags (checked by tcp_error before lookup): the combinations of
/// FIN/SYN/RST/ACK/URG a real stack sends; PSH, ECE and CWR are ignored.
#[inline]
pub(crate) fn valid_flags(flags: u8) -> bool {
    let f = flags & (FIN | SYN | RST | ACK | URG);
    matches!(
        f,
        x if x == SYN
            || x == SYN | URG
            || x == SYN | ACK
            || x == RST
            || x == RST | ACK
            || x == FIN | ACK
            || x == FIN | ACK | URG
            || x == ACK
            || x == ACK | URG
    )
}

/// tcp_new's first test: may a packet with these flags start an entry? A SYN
/// always; a mid-stream ACK only with `loose` (nf_conntrack_tcp_loose, Linux
/// default 1).
#[inline]
pub(crate) fn new_ok(flags: u8, loose: bool) -> bool {
    match TCP_CONNTRACKS[0][conntrack_index(flags) as usize][S_NO as usize] {
        S_SS => true,
        s if s < S_IV => loose,
        _ => false,
    }
}

/// Per-direction flags of `struct ip_ct_tcp_state` (IP_CT_TCP_FLAG_* in
/// uapi/linux/netfilter/nf_conntrack_tcp.h, same values), and the two extra bits
/// Linux keeps in `last_flags`.
mod flag {
    /// The SYN carried a window scale option.
    pub const WINDOW_SCALE: u8 = 0x01;
    /// The SYN carried SACK-permitted.
    pub const SACK_PERM: u8 = 0x02;
    /// This side sent the first FIN.
    pub const CLOSE_INIT: u8 = 0x04;
    /// Out-of-window segments from this side are accepted.
    pub const BE_LIBERAL: u8 = 0x08;
    /// This side sent data the other has not acked yet.
    pub const DATA_UNACKNOWLEDGED: u8 = 0x10;
    /// `td_maxack` holds an ack this side sent.
    pub const MAXACK_SET: u8 = 0x20;
    /// `last_flags` only (IP_CT_EXP_CHALLENGE_ACK): a SYN let through in LAST_ACK
    /// may draw an RFC 5961 challenge ACK, which must not end the connection.
    pub const EXP_CHALLENGE_ACK: u8 = 0x40;
    /// `last_flags` only (IP_CT_TCP_SIMULTANEOUS_OPEN).
    pub const SIMULTANEOUS_OPEN: u8 = 0x80;
}

/// TCP option kinds (RFC 9293 3.2, RFC 7323, RFC 2018).
mod opt {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const WINDOW: u8 = 3;
    pub const SACK_PERM: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
}

/// TCP_MAX_WSCALE: RFC 7323 2.3 caps the shift at 14.
const MAX_WSCALE: u8 = 14;

/// MAXACKWINCONST: an ack may lag `td_end` by at least this much and still count
/// (a larger `td_maxwin` widens it: MAXACKWINDOW).
const MAX_ACK_WIN_CONST: u32 = 66_000;

/// nf_conntrack_tcp_max_retrans's default: this many identical ACK segments in a
/// row cap the timeout at `max_retrans`.
const MAX_RETRANS: u8 = 3;

/// nf_tcp_handle_invalid leaves a timeout of less than two minutes alone.
const HANDLE_INVALID_FLOOR_MS: u64 = 120_000;

/// Sequence space comparison with wrap-around (RFC 9293 3.4, Linux's `before`).
#[inline]
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[inline]
fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// The fields of one TCP segment the tracker reads, from the frame.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segment<'a> {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// The window field as sent, unscaled.
    pub win: u16,
    /// Payload bytes: the IP packet's length past the TCP header.
    pub len: u32,
    /// The header's options (past its fixed 20 bytes).
    pub options: &'a [u8],
}

impl<'a> Segment<'a> {
    /// The segment at `meta.l4_off`, bounded by the IP length (link padding is not
    /// payload). None when the header does not fit (tcp_error: "truncated packet").
    #[inline]
    pub(crate) fn read(frame: &'a [u8], meta: &PacketMeta) -> Option<Segment<'a>> {
        let bytes = frame.get(usize::from(meta.l4_off)..ip_end(frame, meta))?;
        let t = TcpPacket::new_checked(bytes).ok()?;
        let hl = t.header_len();
        Some(Segment {
            flags: t.flags(),
            seq: t.seq_number(),
            ack: t.ack_number(),
            win: t.window_len(),
            len: (bytes.len() - hl) as u32,
            options: &bytes[MIN_HEADER_LEN..hl],
        })
    }

    #[inline]
    fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    /// segment_seq_plus_len: the sequence number after this segment (SYN and FIN
    /// count one each).
    #[inline]
    fn end(&self) -> u32 {
        self.seq
            .wrapping_add(self.len)
            .wrapping_add(u32::from(self.has(SYN)))
            .wrapping_add(u32::from(self.has(FIN)))
    }
}

/// The options of a header as tcp_options and tcp_sack walk them: (kind, data)
/// until EOL, a length below 2 or an option running past the end.
fn options(mut rest: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || loop {
        let (&kind, after_kind) = rest.split_first()?;
        if kind == opt::EOL {
            return None;
        }
        if kind == opt::NOP {
            rest = after_kind;
            continue;
        }
        let size = usize::from(*after_kind.first()?);
        if size < 2 || size > rest.len() {
            return None;
        }
        let data = &rest[2..size];
        rest = &rest[size..];
        return Some((kind, data));
    })
}

/// tcp_sack: the highest right edge of the SACK blocks, when above `ack`.
#[inline]
fn sack_right_edge(opts: &[u8], ack: u32) -> u32 {
    // Most segments carry only a timestamp (NOP, NOP, TS): Linux's fast path.
    if opts.len() == 12 && opts[..4] == [opt::NOP, opt::NOP, opt::TIMESTAMP, 10] {
        return ack;
    }
    let mut sack = ack;
    for (kind, data) in options(opts) {
        if kind == opt::SACK && !data.is_empty() && data.len() % 8 == 0 {
            for block in data.chunks_exact(8) {
                let right = u32::from_be_bytes([block[4], block[5], block[6], block[7]]);
                if after(right, sack) {
                    sack = right;
                }
            }
            return sack;
        }
    }
    sack
}

/// What one direction sent and was allowed (struct ip_ct_tcp_state).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Seen {
    /// Highest sequence number sent plus its length.
    td_end: u32,
    /// Highest right edge of the window the other side offered (ack + window).
    td_maxend: u32,
    /// Largest window this side advertised (scaled, SACKed span included); 0 while
    /// nothing was seen from it.
    td_maxwin: u32,
    /// Highest ack this side sent (with MAXACK_SET).
    td_maxack: u32,
    /// Window scale shift this side announced (0 unless both sides did).
    td_scale: u8,
    /// [`flag`] bits.
    flags: u8,
}

impl Seen {
    /// tcp_options: window scale and SACK-permitted from a SYN's options. A SYN
    /// without options keeps what an earlier one set, as in Linux.
    fn take_options(&mut self, opts: &[u8]) {
        if opts.is_empty() {
            return;
        }
        self.td_scale = 0;
        self.flags &= flag::BE_LIBERAL;
        for (kind, data) in options(opts) {
            match (kind, data) {
                (opt::SACK_PERM, []) => self.flags |= flag::SACK_PERM,
                (opt::WINDOW, &[shift]) => {
                    self.td_scale = shift.min(MAX_WSCALE);
                    self.flags |= flag::WINDOW_SCALE;
                }
                _ => {}
            }
        }
    }

    /// nf_ct_tcp_state_reset: forget everything but BE_LIBERAL.
    fn reset(&mut self) {
        *self = Seen {
            flags: self.flags & flag::BE_LIBERAL,
            ..Seen::default()
        };
    }
}

/// tcp_init_sender: a SYN or SYN/ACK (re)starts its direction's window.
fn init_sender(sender: &mut Seen, receiver: &mut Seen, seg: &Segment, end: u32, dir: Dir) {
    sender.td_end = end;
    sender.td_maxend = end;
    sender.td_maxwin = u32::from(seg.win).max(1);
    sender.take_options(seg.options);
    // RFC 7323 2.2: scaling applies only when both SYNs carried the option.
    if dir == Dir::Reply && sender.flags & receiver.flags & flag::WINDOW_SCALE != flag::WINDOW_SCALE
    {
        sender.td_scale = 0;
        receiver.td_scale = 0;
    }
}

/// tcp_in_window's verdict (enum nf_ct_tcp_action).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Window {
    Accept,
    /// Let through without touching the entry (NFCT_TCP_IGNORE).
    Ignore,
    Invalid,
}

/// The per-entry TCP state (struct ip_ct_tcp): 60 bytes, in this order
/// (`repr(C)`) so that [`TcpTrack::prefetch`] knows its ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct TcpTrack {
    /// [original, reply].
    seen: [Seen; 2],
    /// The last ACK segment's (or ignored packet's) seq, ack, end and raw window.
    last_seq: u32,
    last_ack: u32,
    last_end: u32,
    last_win: u16,
    pub state: TcpState,
    /// Direction and flag index (tcp_bit_set) of the last packet that was in
    /// window or ignored.
    last_dir: Dir,
    last_index: u8,
    /// Identical ACK segments in a row from `last_dir`.
    retrans: u8,
    /// An ignored SYN's window scale and [`flag`] bits (for the SYN/ACK resync),
    /// plus EXP_CHALLENGE_ACK and SIMULTANEOUS_OPEN.
    last_wscale: u8,
    last_flags: u8,
}

/// What the tracker decided for one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TcpOutcome {
    /// Accepted: the entry lives `timeout` ms more.
    Refresh(u64),
    /// Accepted, entry timer and counters untouched (an ignored segment, a
    /// retransmitted SYN).
    Keep,
    /// Not part of the connection: the packet is INVALID, the entry untouched but
    /// for nf_tcp_handle_invalid, which may lower its timeout to this many ms.
    Invalid { lower_timeout: Option<u64> },
    /// A SYN reopening a closed connection: delete the entry, track as new.
    Reopen,
    /// The only answer was a RST: the entry ends now (nf_ct_kill_acct), the packet
    /// still belongs to it.
    Kill,
}

const INVALID: TcpOutcome = TcpOutcome::Invalid {
    lower_timeout: None,
};

/// Timeouts in ms indexed by [`TcpState`], plus the caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TcpTimeouts {
    pub by_state: [u64; 10],
    /// nf_conntrack_tcp_timeout_unacknowledged.
    pub unacknowledged: u64,
    /// nf_conntrack_tcp_timeout_max_retrans.
    pub max_retrans: u64,
}

/// tcp_can_early_drop: the closing states, where a RST's sequence number is not
/// checked (the tuple may already be reused).
#[inline]
fn closing(state: u8) -> bool {
    matches!(state, S_FW | S_LA | S_TW | S_CL | S_CW)
}

impl TcpTrack {
    /// Starts loading the state (its first and last byte: it may straddle two
    /// cache lines) ahead of a segment.
    #[inline]
    pub(crate) fn prefetch(&self) {
        crate::xsk::prefetch(&self.seen);
        crate::xsk::prefetch(&self.last_flags);
    }

    /// tcp_new: the state of an entry `seg` creates, None when it may not create
    /// one (not a SYN, and not a mid-stream ACK picked up with `loose`).
    pub(crate) fn new(seg: &Segment, loose: bool) -> Option<TcpTrack> {
        if !new_ok(seg.flags, loose) {
            return None;
        }
        let mut tr = TcpTrack {
            last_index: NONE_SET,
            ..TcpTrack::default()
        };
        let s = &mut tr.seen[0];
        s.td_end = seg.end();
        s.td_maxwin = u32::from(seg.win).max(1);
        if seg.has(SYN) {
            s.td_maxend = s.td_end;
            s.take_options(seg.options);
        } else {
            // Picked up mid-stream: the window scale was never seen, so Linux
            // assumes SACK and tracks the connection liberally.
            s.td_maxend = s.td_end.wrapping_add(s.td_maxwin);
            tr.seen[0].flags = flag::SACK_PERM | flag::BE_LIBERAL;
            tr.seen[1].flags = flag::SACK_PERM | flag::BE_LIBERAL;
        }
        Some(tr)
    }

    /// nf_conntrack_tcp_packet for a segment in `dir` of an entry. `status` is the
    /// entry's, before this packet sets SEEN_REPLY (Linux sets it after the
    /// protocol tracker ran, in nf_conntrack_in); `remaining` is the ms left
    /// before the entry expires.
    pub(crate) fn packet(
        &mut self,
        status: &mut u16,
        dir: Dir,
        seg: &Segment,
        t: &TcpTimeouts,
        be_liberal: bool,
        remaining: u64,
    ) -> TcpOutcome {
        let index = conntrack_index(seg.flags);
        let mut old = self.state as u8;
        let mut new = TCP_CONNTRACKS[dir.index()][index as usize][old as usize];
        let mut check_window = true;
        match new {
            S_SS if old < S_TW => {}
            S_SS | S_IG => {
                // RFC 1122 4.2.2.13: a SYN may reopen from TIME_WAIT; and an
                // aborted connection (RST seen last in this direction) may be
                // restarted. Otherwise Linux falls through to the IGNORE case.
                if new == S_SS
                    && ((self.seen[0].flags | self.seen[1].flags) & flag::CLOSE_INIT != 0
                        || (self.last_dir == dir && self.last_index == RST_SET))
                {
                    return TcpOutcome::Reopen;
                }
                if index == SYNACK_SET
                    && self.last_index == SYN_SET
                    && self.last_dir != dir
                    && seg.ack == self.last_end
                {
                    // Case b): this SYN/ACK answers a SYN we ignored, so both ends
                    // are in sync and we are not: resync from what the SYN showed.
                    old = S_SS;
                    new = S_SR;
                    self.resync_ignored_syn(dir);
                } else {
                    self.ignore(dir, index, seg, old);
                    return TcpOutcome::Keep;
                }
            }
            S_IV => return INVALID,
            S_TW if old == S_LA
                && index == ACK_SET
                && self.last_dir != dir
                && self.last_index == SYN_SET
                && self.last_flags & flag::EXP_CHALLENGE_ACK != 0 =>
            {
                // An RFC 5961 challenge ACK to the SYN, not the ACK of the last FIN.
                self.last_flags &= !flag::EXP_CHALLENGE_ACK;
                return TcpOutcome::Keep;
            }
            S_S2 => {
                // The table cannot tell a simultaneous open's final ACK from others.
                self.last_flags |= flag::SIMULTANEOUS_OPEN;
            }
            S_SR if dir == Dir::Reply
                && index == ACK_SET
                && self.last_flags & flag::SIMULTANEOUS_OPEN != 0 =>
            {
                new = S_ES;
            }
            S_CL if index == RST_SET => 'rst: {
                if closing(old) {
                    check_window = false;
                    break 'rst;
                }
                let peer = self.seen[dir.flip().index()];
                // td_maxack is stale if a SYN went through last.
                if peer.flags & flag::MAXACK_SET != 0 && self.last_index != SYN_SET {
                    let established = old == S_ES && *status & ASSURED != 0;
                    // Likely the answer to a SYN let through above.
                    if seg.seq == 0 && !established {
                        break 'rst;
                    }
                    // RFC 5961 3.2: below what the peer acked (tcp_ignore_invalid_rst
                    // is 0 by default).
                    if before(seg.seq, peer.td_maxack) {
                        return INVALID;
                    }
                    if !established || seg.seq == peer.td_maxack {
                        break 'rst;
                    }
                    // The RST ends a train of this side's segments.
                    if self.last_index == ACK_SET
                        && self.last_dir == dir
                        && seg.seq == self.last_end
                    {
                        break 'rst;
                    }
                    // Not exactly where expected: keep the state, a challenge ACK
                    // may follow.
                    new = old;
                }
                // A RST answering a SYN or ACK let through as ignored (a half-open
                // connection): it may ack what we never saw, so skip the window.
                if ((*status & SEEN_REPLY != 0 && self.last_index == SYN_SET)
                    || (*status & ASSURED == 0 && self.last_index == ACK_SET))
                    && seg.ack == self.last_end
                {
                    check_window = false;
                    break 'rst;
                }
                // A RST answering a challenge ACK let through earlier.
                if old == S_SS
                    && self.last_index == ACK_SET
                    && self.last_dir == Dir::Reply
                    && seg.seq == self.last_ack
                {
                    check_window = false;
                }
            }
            _ => {}
        }
        if check_window {
            match self.in_window(dir, index, seg, be_liberal) {
                Window::Accept => {}
                Window::Ignore => return TcpOutcome::Keep,
                Window::Invalid => {
                    return TcpOutcome::Invalid {
                        lower_timeout: self.handle_invalid(dir, index, *status, remaining, t),
                    }
                }
            }
        }
        self.last_index = index;
        self.last_dir = dir;
        self.state = TcpState::from_u8(new);
        if old != new && new == S_FW {
            self.seen[dir.index()].flags |= flag::CLOSE_INIT;
        }
        let mut timeout = self.timeout(new, index, t);
        if *status & SEEN_REPLY == 0 {
            // "If only reply is a RST, we can consider ourselves not to have an
            // established connection ... delete the conntrack immediately." --RR
            if seg.has(RST) {
                return TcpOutcome::Kill;
            }
            // Do not renew the timeout on a SYN retransmit: port reuse could keep the
            // entry (and its NAT binding) alive forever.
            if index == SYN_SET && old == S_SS {
                return TcpOutcome::Keep;
            }
            // A picked-up connection (loose) gets `unacknowledged` until answered.
            if new == S_ES {
                timeout = timeout.min(t.unacknowledged);
            }
        } else if *status & ASSURED == 0 && (old == S_SR || old == S_ES) && new == S_ES {
            *status |= ASSURED;
        }
        TcpOutcome::Refresh(timeout)
    }

    /// The timeout an accepted segment sets (the end of nf_conntrack_tcp_packet):
    /// the state's, capped while segments are retransmitted, data is unacked or
    /// the window is closed; a RST's is `close`.
    fn timeout(&self, new: u8, index: u8, t: &TcpTimeouts) -> u64 {
        let by_state = t.by_state[new as usize];
        let unacked = (self.seen[0].flags | self.seen[1].flags) & flag::DATA_UNACKNOWLEDGED != 0;
        if self.retrans >= MAX_RETRANS && by_state > t.max_retrans {
            t.max_retrans
        } else if index == RST_SET {
            t.by_state[S_CL as usize]
        } else if unacked && by_state > t.unacknowledged {
            t.unacknowledged
        } else if self.last_win == 0 && by_state > t.max_retrans {
            t.max_retrans
        } else {
            by_state
        }
    }

    /// The TCP_CONNTRACK_IGNORE case: note the packet, so that the answer to it
    /// (a SYN/ACK or a RST) can be recognised.
    fn ignore(&mut self, dir: Dir, index: u8, seg: &Segment, old: u8) {
        self.last_index = index;
        self.last_dir = dir;
        self.last_seq = seg.seq;
        self.last_end = seg.end();
        self.last_win = seg.win;
        // a) A SYN in the original direction: the ends may be in sync while we are
        // not. Keep its options for when the server's SYN/ACK confirms it.
        if index == SYN_SET && dir == Dir::Original {
            let mut seen = Seen::default();
            seen.take_options(seg.options);
            self.last_flags = seen.flags & (flag::WINDOW_SCALE | flag::SACK_PERM);
            self.last_wscale = if seen.flags & flag::WINDOW_SCALE != 0 {
                seen.td_scale
            } else {
                0
            };
            // In LAST_ACK the server may answer with a challenge ACK that must not
            // be taken for the ACK of the last FIN.
            if old == S_LA {
                self.last_flags |= flag::EXP_CHALLENGE_ACK;
            }
        }
        // c) A possible challenge ACK answering the SYN.
        if old == S_SS && index == ACK_SET && dir == Dir::Reply {
            self.last_ack = seg.ack;
        }
    }

    /// Case b) of TCP_CONNTRACK_IGNORE: restart the SYN's direction from the
    /// ignored SYN and forget the other, which this SYN/ACK now starts.
    fn resync_ignored_syn(&mut self, dir: Dir) {
        let syn = &mut self.seen[self.last_dir.index()];
        syn.td_end = self.last_end;
        syn.td_maxend = self.last_end;
        syn.td_maxwin = u32::from(self.last_win).max(1);
        syn.td_scale = self.last_wscale;
        self.last_flags &= !flag::EXP_CHALLENGE_ACK;
        syn.flags = self.last_flags;
        self.seen[dir.index()].reset();
    }

    /// nf_tcp_handle_invalid: an ASSURED connection whose FIN or RST was out of
    /// window right after the other side's FIN or RST is probably dead (the ends
    /// and we disagree): its timeout drops to `unacknowledged`. Otherwise the
    /// FIN/RST is remembered as the last packet.
    fn handle_invalid(
        &mut self,
        dir: Dir,
        index: u8,
        status: u16,
        remaining: u64,
        t: &TcpTimeouts,
    ) -> Option<u64> {
        if status & ASSURED == 0 || !matches!(index, RST_SET | FIN_SET) {
            return None;
        }
        if self.last_dir != dir && matches!(self.last_index, FIN_SET | RST_SET) {
            (remaining >= HANDLE_INVALID_FLOOR_MS && remaining > t.unacknowledged)
                .then_some(t.unacknowledged)
        } else {
            self.last_index = index;
            self.last_dir = dir;
            None
        }
    }

    /// tcp_in_window: is the segment inside the window the receiver offered, and
    /// does it ack only what the receiver sent? Updates both directions when it
    /// is. The bounds, in Linux's words:
    ///
    /// I.   seq <= sender.td_maxend
    /// II.  seq + len >= sender.td_end - receiver.td_maxwin
    /// III. sack <= receiver.td_end
    /// IV.  sack >= receiver.td_end - MAXACKWINDOW(sender)
    ///
    /// where sack is the highest SACK right edge, or the ack without SACK.
    fn in_window(&mut self, dir: Dir, index: u8, seg: &Segment, be_liberal: bool) -> Window {
        let state = self.state;
        let [orig, reply] = &mut self.seen;
        let (sender, receiver) = match dir {
            Dir::Original => (orig, reply),
            Dir::Reply => (reply, orig),
        };
        // nf_tcp_log_invalid: a liberal connection accepts what fails the checks,
        // without learning from it.
        let liberal = be_liberal || sender.flags & flag::BE_LIBERAL != 0;
        let fail = |w: Window| if liberal { Window::Accept } else { w };

        let (mut seq, mut ack) = (seg.seq, seg.ack);
        let mut end = seg.end();
        let mut win = u32::from(seg.win);
        let mut sack = if receiver.flags & flag::SACK_PERM != 0 {
            sack_right_edge(seg.options, ack)
        } else {
            ack
        };

        if sender.td_maxwin == 0 {
            if seg.has(SYN) {
                // The SYN/ACK answering the SYN, or the reply direction's SYN in a
                // simultaneous open.
                init_sender(sender, receiver, seg, end, dir);
                if !seg.has(ACK) {
                    return Window::Accept;
                }
            } else {
                // The first packet of a picked-up connection's other side: its
                // history is lost, take what this packet shows.
                sender.td_end = end;
                sender.td_maxwin = (win << sender.td_scale).max(1);
                sender.td_maxend = end.wrapping_add(sender.td_maxwin);
                if receiver.td_maxwin == 0 {
                    // Nothing seen the other way either: let III and IV pass until
                    // something is.
                    receiver.td_end = sack;
                    receiver.td_maxend = sack;
                } else if sack == receiver.td_end.wrapping_add(1) {
                    // Likely the answer to a keepalive (needed for III).
                    receiver.td_end = receiver.td_end.wrapping_add(1);
                }
            }
        } else if seg.has(SYN)
            && after(end, sender.td_end)
            && matches!(state, TcpState::SynSent | TcpState::SynRecv)
        {
            // RFC 9293 3.4.1: a reinitialised TCP may start over with a higher
            // sequence number; its options may differ too.
            init_sender(sender, receiver, seg, end, dir);
            if dir == Dir::Reply && !seg.has(ACK) {
                return Window::Accept;
            }
        }

        if !seg.has(ACK) || (seg.has(RST) && ack == 0) {
            // No ack (or a broken stack's RST+ACK with ack 0): pretend it acks all.
            ack = receiver.td_end;
            sack = ack;
        }
        if seg.has(RST) && seq == 0 && state == TcpState::SynSent {
            // The RST answering a SYN.
            seq = sender.td_end;
            end = seq;
        }

        let max_ack_win = sender.td_maxwin.max(MAX_ACK_WIN_CONST);
        // I.
        if !before(seq, sender.td_maxend.wrapping_add(1)) {
            let overshot = end.wrapping_sub(sender.td_maxend).wrapping_add(1);
            let ack_ok = after(
                sack,
                receiver.td_end.wrapping_sub(max_ack_win).wrapping_sub(1),
            );
            let in_recv_win = receiver.td_maxwin != 0
                && after(
                    end,
                    sender
                        .td_end
                        .wrapping_sub(receiver.td_maxwin)
                        .wrapping_sub(1),
                );
            if in_recv_win
                && ack_ok
                && overshot <= receiver.td_maxwin
                && before(sack, receiver.td_end.wrapping_add(1))
            {
                // A TCP sending a little more than the window allowed: the segment
                // is dropped as INVALID, but its end is noted, so that the ack of
                // it (if the rules let it through) does not fail III forever.
                sender.td_end = end;
                sender.flags |= flag::DATA_UNACKNOWLEDGED;
                return fail(Window::Ignore);
            }
            return fail(Window::Invalid);
        }
        // III: acks data not seen yet.
        if !before(sack, receiver.td_end.wrapping_add(1)) {
            return fail(Window::Invalid);
        }
        // II: already acked data retransmitted.
        if receiver.td_maxwin != 0
            && !after(
                end,
                sender
                    .td_end
                    .wrapping_sub(receiver.td_maxwin)
                    .wrapping_sub(1),
            )
        {
            return fail(Window::Ignore);
        }
        // IV: an overly delayed ack.
        if !after(
            sack,
            receiver.td_end.wrapping_sub(max_ack_win).wrapping_sub(1),
        ) {
            return fail(Window::Ignore);
        }

        // RFC 7323 2.2: the window field of a SYN is never scaled.
        if !seg.has(SYN) {
            win <<= sender.td_scale;
        }
        sender.td_maxwin = sender
            .td_maxwin
            .max(win.wrapping_add(sack.wrapping_sub(ack)));
        if after(end, sender.td_end) {
            sender.td_end = end;
            sender.flags |= flag::DATA_UNACKNOWLEDGED;
        }
        if seg.has(ACK) {
            if sender.flags & flag::MAXACK_SET == 0 {
                sender.td_maxack = ack;
                sender.flags |= flag::MAXACK_SET;
            } else if after(ack, sender.td_maxack) {
                sender.td_maxack = ack;
            }
        }
        if receiver.td_maxwin != 0 && after(end, sender.td_maxend) {
            receiver.td_maxwin = receiver
                .td_maxwin
                .wrapping_add(end.wrapping_sub(sender.td_maxend));
        }
        let right = sack.wrapping_add(win);
        if after(right, receiver.td_maxend.wrapping_sub(1)) {
            // A zero window still lets a one-byte probe through.
            receiver.td_maxend = right.wrapping_add(u32::from(win == 0));
        }
        if ack == receiver.td_end {
            receiver.flags &= !flag::DATA_UNACKNOWLEDGED;
        }

        // Retransmissions: the same ACK segment again from the same side.
        if index == ACK_SET {
            if self.last_dir == dir
                && self.last_seq == seq
                && self.last_ack == ack
                && self.last_end == end
                && self.last_win == seg.win
            {
                // Linux's counter is a u8 too, and wraps.
                self.retrans = self.retrans.wrapping_add(1);
            } else {
                self.last_dir = dir;
                self.last_seq = seq;
                self.last_ack = ack;
                self.last_end = end;
                self.last_win = seg.win;
                self.retrans = 0;
            }
        }
        Window::Accept
    }
}

#[cfg(test)]
mod tests;
