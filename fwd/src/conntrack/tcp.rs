//! The TCP tracker of nf_conntrack_proto_tcp.c: the same state transition table
//! (`tcp_conntracks`), flag validation (`tcp_valid_flags`), reopen, simultaneous
//! open, ASSURED and timeout choice.
//!
//! Not done (Linux does it in `tcp_in_window`): sequence and window tracking. We
//! behave as with `nf_conntrack_tcp_be_liberal=1`: every segment is "in window".
//! So an off-path RST with any sequence number closes an entry, and the timeouts
//! that depend on sequence state (`unacknowledged` for unacked data, `max_retrans`,
//! zero window) are not applied; the SYN/ACK resync of an ignored SYN (case b of
//! TCP_CONNTRACK_IGNORE) and the RFC 5961 challenge-ACK case are skipped too.

use super::ctstatus::{ASSURED, SEEN_REPLY};
use super::Dir;
use crate::packet::tcp::flags::{ACK, FIN, RST, SYN, URG};

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

/// tcp_new: may this first packet create an entry? A SYN always; a mid-stream
/// ACK only with `loose` (nf_conntrack_tcp_loose, Linux default 1).
#[inline]
pub(crate) fn new_ok(flags: u8, loose: bool) -> bool {
    match TCP_CONNTRACKS[0][conntrack_index(flags) as usize][S_NO as usize] {
        S_SS => true,
        s if s < S_IV => loose,
        _ => false,
    }
}

/// The per-entry TCP state (a small part of struct ip_ct_tcp).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TcpTrack {
    pub state: TcpState,
    /// CLOSE_INIT per direction, last_dir, last_index, SIMULTANEOUS_OPEN.
    flags: u8,
}

const CLOSE_INIT_ORIG: u8 = 1 << 0;
const CLOSE_INIT_REPLY: u8 = 1 << 1;
const LAST_DIR_REPLY: u8 = 1 << 2;
const LAST_INDEX_SHIFT: u8 = 3;
const LAST_INDEX_MASK: u8 = 0b111 << LAST_INDEX_SHIFT;
const SIMULTANEOUS_OPEN: u8 = 1 << 6;

impl TcpTrack {
    fn set_last(&mut self, index: u8, dir: Dir) {
        self.flags &= !(LAST_INDEX_MASK | LAST_DIR_REPLY);
        self.flags |= index << LAST_INDEX_SHIFT;
        if dir == Dir::Reply {
            self.flags |= LAST_DIR_REPLY;
        }
    }

    fn last_index(&self) -> u8 {
        (self.flags & LAST_INDEX_MASK) >> LAST_INDEX_SHIFT
    }

    fn last_dir(&self) -> Dir {
        if self.flags & LAST_DIR_REPLY != 0 {
            Dir::Reply
        } else {
            Dir::Original
        }
    }
}

/// What the tracker decided for one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TcpOutcome {
    /// Accepted: the entry lives `timeout` ms more.
    Refresh(u64),
    /// Accepted, timer untouched (sIG, or a retransmitted SYN).
    Keep,
    /// Not part of the connection: the packet is INVALID, the entry untouched.
    Invalid,
    /// A SYN reopening a closed connection: delete the entry, track as new.
    Reopen,
    /// The only answer was a RST: the entry ends now (nf_ct_kill_acct), the packet
    /// still belongs to it.
    Kill,
}

/// Timeouts in ms indexed by [`TcpState`], plus `unacknowledged`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TcpTimeouts {
    pub by_state: [u64; 10],
    pub unacknowledged: u64,
}

/// tcp_packet after tcp_new, minus tcp_in_window (see the module docs). `status`
/// is the entry's, before this packet sets SEEN_REPLY (Linux sets it after the
/// protocol tracker ran, in nf_conntrack_in).
pub(crate) fn packet(
    tr: &mut TcpTrack,
    status: &mut u16,
    dir: Dir,
    flags: u8,
    t: &TcpTimeouts,
) -> TcpOutcome {
    let index = conntrack_index(flags);
    let old = tr.state as u8;
    let mut new = TCP_CONNTRACKS[dir.index()][index as usize][old as usize];
    match new {
        S_SS if old >= S_TW => {
            // RFC 1122 4.2.2.13: a SYN may reopen from TIME_WAIT; and an aborted
            // connection (RST seen last in this direction) may be restarted.
            let close_init = tr.flags & (CLOSE_INIT_ORIG | CLOSE_INIT_REPLY) != 0;
            if close_init || (tr.last_dir() == dir && tr.last_index() == RST_SET) {
                return TcpOutcome::Reopen;
            }
            // Otherwise Linux falls through to the IGNORE case.
            tr.set_last(index, dir);
            return TcpOutcome::Keep;
        }
        S_IG => {
            tr.set_last(index, dir);
            return TcpOutcome::Keep;
        }
        S_IV => return TcpOutcome::Invalid,
        S_S2 => {
            // The table cannot tell a simultaneous open's final ACK from others.
            tr.flags |= SIMULTANEOUS_OPEN;
        }
        S_SR if dir == Dir::Reply && index == ACK_SET && tr.flags & SIMULTANEOUS_OPEN != 0 => {
            new = S_ES;
        }
        _ => {}
    }
    tr.set_last(index, dir);
    tr.state = TcpState::from_u8(new);
    if old != new && new == S_FW {
        tr.flags |= if dir == Dir::Original {
            CLOSE_INIT_ORIG
        } else {
            CLOSE_INIT_REPLY
        };
    }
    let mut timeout = if index == RST_SET {
        t.by_state[S_CL as usize]
    } else {
        t.by_state[new as usize]
    };
    if *status & SEEN_REPLY == 0 {
        // "If only reply is a RST, we can consider ourselves not to have an
        // established connection ... delete the conntrack immediately." --RR
        if flags & RST != 0 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_flags_are_linuxs_nine_combinations() {
        let valid: Vec<u8> = (0..=0x3fu8).filter(|&f| valid_flags(f)).collect();
        let expect = [
            SYN,
            SYN | URG,
            SYN | ACK,
            RST,
            RST | ACK,
            FIN | ACK,
            FIN | ACK | URG,
            ACK,
            ACK | URG,
        ];
        // PSH (0x08) is ignored: each valid combination appears with and without it.
        assert_eq!(valid.len(), expect.len() * 2);
        for f in expect {
            assert!(
                valid_flags(f) && valid_flags(f | 0x08 | 0x40 | 0x80),
                "{f:#x}"
            );
        }
        assert!(!valid_flags(SYN | FIN));
        assert!(!valid_flags(0));
        assert!(!valid_flags(FIN));
    }

    #[test]
    fn new_connections_start_on_syn_or_loose_ack_only() {
        assert!(new_ok(SYN, false));
        assert!(new_ok(ACK, true));
        assert!(!new_ok(ACK, false));
        assert!(!new_ok(SYN | ACK, true));
        assert!(!new_ok(FIN | ACK, true));
        assert!(!new_ok(RST, true));
    }
}
