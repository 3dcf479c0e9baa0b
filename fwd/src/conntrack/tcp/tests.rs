//! The TCP tracker: flag rules, option parsing, and window tracking walked through
//! a table on real frames, one connection played from both ends with explicit
//! sequence numbers.

use super::super::testutil::{self, Seg};
use super::super::{CtConfig, CtResult, CtState, Dir, FlowView, Table};
use super::*;
use crate::packet::meta::Family::{self, V4, V6};

const PSH: u8 = 0x08;
const SEC: u64 = 1000;

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

#[test]
fn sequence_comparison_wraps_around() {
    assert!(before(1, 2) && after(2, 1));
    assert!(before(0xffff_fff0, 0x10), "0x10 is 32 past 0xfffffff0");
    assert!(after(0x10, 0xffff_fff0));
    assert!(!before(5, 5) && !after(5, 5));
    // Half the space away flips.
    assert!(before(0, 0x7fff_ffff) && !before(0, 0x8000_0001));
}

/// MSS 1460, SACK-permitted, timestamps, NOP, window scale 7: what a Linux SYN
/// carries.
const LINUX_SYN_OPTIONS: [u8; 20] = [
    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
];

#[test]
fn syn_options_give_window_scale_and_sack_permitted() {
    let mut s = Seen::default();
    s.take_options(&LINUX_SYN_OPTIONS);
    assert_eq!(
        (s.td_scale, s.flags),
        (7, flag::WINDOW_SCALE | flag::SACK_PERM)
    );
    // A shift above 14 is 14 (RFC 7323 2.3); a window option of the wrong length
    // is not one.
    let mut s = Seen::default();
    s.take_options(&[3, 3, 15, 0]);
    assert_eq!((s.td_scale, s.flags), (14, flag::WINDOW_SCALE));
    let mut s = Seen::default();
    s.take_options(&[3, 4, 7, 0]);
    assert_eq!(s.flags, 0);
    // Parsing stops at EOL, at a length below 2 and at an option running past the
    // end, and keeps what it found before.
    for (opts, want) in [
        (&[4, 2, 0, 0, 3, 3, 7, 0][..], flag::SACK_PERM),
        (&[4, 2, 8, 1, 3, 3, 7, 0][..], flag::SACK_PERM),
        (
            &[4, 2, 3, 3, 7, 8, 10, 0][..],
            flag::SACK_PERM | flag::WINDOW_SCALE,
        ),
        (&[1, 1, 1, 4, 2, 3, 9, 7][..], flag::SACK_PERM),
    ] {
        let mut s = Seen::default();
        s.take_options(opts);
        assert_eq!(s.flags, want, "{opts:?}");
    }
    // A SYN without options leaves what an earlier SYN set; one with options
    // replaces it (but never BE_LIBERAL).
    let mut s = Seen {
        flags: flag::WINDOW_SCALE | flag::BE_LIBERAL | flag::MAXACK_SET,
        td_scale: 7,
        ..Seen::default()
    };
    s.take_options(&[]);
    assert_eq!(s.td_scale, 7);
    s.take_options(&[1, 1, 4, 2]);
    assert_eq!(
        (s.td_scale, s.flags),
        (0, flag::BE_LIBERAL | flag::SACK_PERM)
    );
}

fn sack_option(blocks: &[(u32, u32)]) -> Vec<u8> {
    let mut o = vec![1, 1, 5, 2 + 8 * blocks.len() as u8];
    for (l, r) in blocks {
        o.extend_from_slice(&l.to_be_bytes());
        o.extend_from_slice(&r.to_be_bytes());
    }
    o
}

#[test]
fn sack_gives_the_highest_right_edge_past_the_ack() {
    let ack = 0xffff_ff00;
    // Right edges across the wrap: 0x100 is after 0xffffff00.
    let o = sack_option(&[(0xffff_ff80, 0xffff_ffc0), (0x0000_0010, 0x0000_0100)]);
    assert_eq!(sack_right_edge(&o, ack), 0x100);
    // A block below the ack does not lower it.
    let old = sack_option(&[(0xffff_0000, 0xffff_0100)]);
    assert_eq!(sack_right_edge(&old, ack), ack);
    // Timestamps only, a SACK of a broken length, no options: the ack.
    let ts = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
    assert_eq!(sack_right_edge(&ts, ack), ack);
    let mut bad = sack_option(&[(ack, ack + 10)]);
    bad[3] = 9;
    assert_eq!(sack_right_edge(&bad, ack), ack);
    assert_eq!(sack_right_edge(&[], ack), ack);
}

/// One TCP connection played from both ends through a table, with explicit
/// sequence numbers: the client [198.18.0.1]:40000 (or [2001:db8::1]) and the
/// server [198.19.0.10]:443 (or [2001:db8:1::10]). The server's numbers start
/// just below 2^32, so its data crosses the wrap.
struct Conv {
    t: Table,
    fam: Family,
    addr: [u128; 2],
    /// Next sequence number of [client, server].
    nxt: [u32; 2],
    now: u64,
}

const CLIENT_ISN: u32 = 0x7fff_ff00;
const SERVER_ISN: u32 = 0xffff_f000;

impl Conv {
    fn new(cfg: &CtConfig, fam: Family) -> Conv {
        let addr = match fam {
            V4 => [
                testutil::v4([198, 18, 0, 1]),
                testutil::v4([198, 19, 0, 10]),
            ],
            V6 => [testutil::v6("2001:db8::1"), testutil::v6("2001:db8:1::10")],
        };
        Conv {
            t: Table::with_seed(cfg, 9),
            fam,
            addr,
            nxt: [CLIENT_ISN, SERVER_ISN],
            now: 0,
        }
    }

    fn v4() -> Conv {
        Conv::new(&CtConfig::default(), V4)
    }

    fn frame(&self, from: Dir, s: &Seg) -> Vec<u8> {
        let (i, j) = (from.index(), from.flip().index());
        let port = [40000, 443];
        testutil::tcp_seg(self.fam, self.addr[i], port[i], self.addr[j], port[j], s)
    }

    /// Tracks a segment from `from` and confirms the entry (the packet was
    /// accepted).
    fn track(&mut self, from: Dir, s: &Seg) -> CtResult {
        let f = self.frame(from, s);
        let r = self
            .t
            .track(&f, &testutil::meta(&f), 0, self.now)
            .expect("not dropped");
        if let Some(h) = r.handle {
            self.t.confirm(h);
        }
        r
    }

    /// A segment from `from` at its next sequence number, acking everything the
    /// other side sent when it has ACK.
    fn next(&self, from: Dir, flags: u8, payload: usize) -> Seg<'static> {
        Seg {
            flags,
            seq: self.nxt[from.index()],
            ack: if flags & ACK != 0 {
                self.nxt[from.flip().index()]
            } else {
                0
            },
            payload,
            ..Seg::default()
        }
    }

    /// Tracks `s` and moves `from`'s next sequence number past it.
    fn send(&mut self, from: Dir, s: &Seg) -> CtResult {
        let r = self.track(from, s);
        let used = s.payload as u32 + u32::from(s.flags & SYN != 0) + u32::from(s.flags & FIN != 0);
        self.nxt[from.index()] = s.seq.wrapping_add(used);
        r
    }

    /// [`Conv::send`] of [`Conv::next`].
    fn data(&mut self, from: Dir, flags: u8, payload: usize) -> CtResult {
        let s = self.next(from, flags, payload);
        self.send(from, &s)
    }

    /// A bare ACK from `from`, of everything the other side sent, offering a
    /// window of `win` (before scaling).
    fn ack(&mut self, from: Dir, win: u16) -> CtResult {
        let s = Seg {
            win,
            ..self.next(from, ACK, 0)
        };
        self.send(from, &s)
    }

    /// The handshake, with these options and windows on the SYN and the SYN/ACK,
    /// then the client's ACK.
    fn open(&mut self, syn: (&[u8], u16), synack: (&[u8], u16)) {
        let s = Seg {
            options: syn.0,
            win: syn.1,
            ..self.next(Dir::Original, SYN, 0)
        };
        assert_eq!(self.send(Dir::Original, &s).state, CtState::New);
        let s = Seg {
            options: synack.0,
            win: synack.1,
            ..self.next(Dir::Reply, SYN | ACK, 0)
        };
        assert_eq!(self.send(Dir::Reply, &s).state, CtState::Established);
        self.data(Dir::Original, ACK, 0);
        assert_eq!(self.state(), TcpState::Established);
    }

    fn view(&self) -> FlowView {
        self.t.entries(self.now).next().expect("one entry")
    }

    fn state(&self) -> TcpState {
        self.view().tcp_state.unwrap()
    }

    fn timeout(&self) -> u64 {
        self.view().timeout_secs
    }
}

use Dir::{Original as C2S, Reply as S2C};

fn est(r: CtResult) -> bool {
    r.state == CtState::Established
}

#[test]
fn in_window_data_both_ways_is_established_v4_and_v6() {
    for fam in [V4, V6] {
        let mut k = Conv::new(&CtConfig::default(), fam);
        k.open((&LINUX_SYN_OPTIONS, 64240), (&LINUX_SYN_OPTIONS, 65160));
        // Data the server has not acked yet caps the timeout at `unacknowledged`.
        assert!(est(k.data(C2S, ACK | PSH, 1000)));
        assert_eq!((k.state(), k.timeout()), (TcpState::Established, 300));
        // The server acks it and answers with 4 segments across the 2^32 wrap,
        // the client acks them: all in window, and nothing is left unacked.
        for _ in 0..4 {
            assert!(est(k.data(S2C, ACK | PSH, 1400)));
        }
        assert!(k.nxt[1] < SERVER_ISN, "wrapped");
        assert!(est(k.data(C2S, ACK, 0)));
        assert_eq!((k.state(), k.timeout()), (TcpState::Established, 432_000));
        let v = k.view();
        assert_eq!(v.packets, [4, 5], "{fam:?}");
        assert_eq!(k.t.stats().invalid, 0);
    }
}

#[test]
fn a_segment_beyond_the_window_is_invalid_and_leaves_the_entry_as_it_was() {
    let mut k = Conv::v4();
    k.open((&LINUX_SYN_OPTIONS, 64240), (&LINUX_SYN_OPTIONS, 65160));
    k.data(C2S, ACK | PSH, 500);
    k.data(S2C, ACK, 0);
    let before = k.view();
    k.now += 5 * SEC;
    // 100 MB ahead: far past the window the server offered (64240 << 7).
    let far = Seg {
        seq: k.nxt[0].wrapping_add(100_000_000),
        ..k.next(C2S, ACK | PSH, 100)
    };
    assert_eq!(k.track(C2S, &far), CtResult::INVALID);
    // An ack of data the server never sent.
    let unsent = Seg {
        ack: k.nxt[1].wrapping_add(100_000),
        ..k.next(C2S, ACK, 0)
    };
    assert_eq!(k.track(C2S, &unsent), CtResult::INVALID);
    let after = k.view();
    assert_eq!(after.packets, before.packets, "not counted");
    assert_eq!(after.timeout_secs, before.timeout_secs - 5, "not refreshed");
    assert_eq!(k.state(), TcpState::Established);
    assert_eq!(k.t.stats().invalid, 2);
    // The connection goes on where it was.
    assert!(est(k.data(C2S, ACK | PSH, 100)));
    assert!(est(k.data(S2C, ACK, 0)));
}

#[test]
fn an_old_duplicate_is_let_through_without_touching_the_entry() {
    // No window scaling, and a server window of 1000: three segments of 1000
    // bytes put the first one behind the largest window.
    let mut k = Conv::v4();
    k.open((&[], 64240), (&[], 1000));
    let first = k.next(C2S, ACK | PSH, 1000);
    for _ in 0..3 {
        k.data(C2S, ACK | PSH, 1000);
        k.ack(S2C, 1000);
    }
    let before = k.view();
    k.now += SEC;
    // tcp_in_window: "SEQ is under lower bound (already ACKed data
    // retransmitted)": ignored, so the packet keeps its ESTABLISHED state, but
    // neither counts nor refreshes the entry.
    let r = k.track(C2S, &first);
    assert!(est(r), "{r:?}");
    assert_eq!(k.view().packets, before.packets);
    assert_eq!(k.view().timeout_secs, before.timeout_secs - 1);
    assert_eq!(k.t.stats().invalid, 0);
    // A duplicate of the last segment is still inside the window: a
    // retransmission like any other.
    let last = Seg {
        seq: k.nxt[0] - 1000,
        ..k.next(C2S, ACK | PSH, 1000)
    };
    assert!(est(k.track(C2S, &last)));
    assert_eq!(k.view().packets[0], before.packets[0] + 1);
}

#[test]
fn window_scaling_counts_only_when_both_syns_carry_it() {
    let ws: &[u8] = &[1, 3, 3, 7];
    for (client, server, scaled) in [(ws, ws, true), (ws, &[][..], false), (&[][..], ws, false)] {
        let mut k = Conv::v4();
        // The SYN/ACK's window is never scaled: 1000 bytes.
        k.open((client, 64240), (server, 1000));
        // The server's window of 1000 is 128000 bytes when scaled by 7.
        k.ack(S2C, 1000);
        let ahead = Seg {
            seq: k.nxt[0].wrapping_add(100_000),
            ..k.next(C2S, ACK | PSH, 100)
        };
        let r = k.track(C2S, &ahead);
        assert_eq!(est(r), scaled, "client {client:?} server {server:?}: {r:?}");
        // Within 1000 bytes is in window either way.
        assert!(est(k.data(C2S, ACK | PSH, 900)));
    }
}

#[test]
fn sacked_data_must_have_been_sent() {
    let sack_perm: &[u8] = &[1, 1, 4, 2];
    for permitted in [true, false] {
        let mut k = Conv::v4();
        let opts = if permitted { sack_perm } else { &[] };
        k.open((opts, 64240), (opts, 64240));
        let base = k.nxt[0];
        for _ in 0..3 {
            k.data(C2S, ACK | PSH, 100);
        }
        // The second segment was lost: the server acks the first and SACKs the
        // third.
        let blocks = sack_option(&[(base + 200, base + 300)]);
        let s = Seg {
            ack: base + 100,
            options: &blocks,
            ..k.next(S2C, ACK, 0)
        };
        assert!(est(k.track(S2C, &s)));
        // A SACK of data never sent acks the unseen (III), when SACK is permitted;
        // without it, Linux does not read the option.
        let blocks = sack_option(&[(base + 300, base + 400)]);
        let s = Seg {
            ack: base + 100,
            options: &blocks,
            ..k.next(S2C, ACK, 0)
        };
        let r = k.track(S2C, &s);
        assert_eq!(
            r == CtResult::INVALID,
            permitted,
            "permitted {permitted}: {r:?}"
        );
    }
}

#[test]
fn a_rst_must_be_in_window_and_at_the_ack_to_close() {
    let mut k = Conv::v4();
    k.open((&[], 64240), (&[], 64240));
    k.data(C2S, ACK | PSH, 100);
    k.data(S2C, ACK, 0);
    let acked = k.nxt[0];
    let rst = |seq: u32| Seg {
        flags: RST,
        seq,
        ..Seg::default()
    };
    // Behind what the server acked (RFC 5961 3.2), or far past the window:
    // INVALID, the connection untouched.
    assert_eq!(k.track(C2S, &rst(acked - 50)), CtResult::INVALID);
    assert_eq!(
        k.track(C2S, &rst(acked.wrapping_add(100_000_000))),
        CtResult::INVALID
    );
    assert_eq!((k.state(), k.timeout()), (TcpState::Established, 432_000));
    // In window but not exactly at the ack: let through, the state kept for the
    // challenge ACK that may follow, the timeout that of CLOSE.
    assert!(est(k.track(C2S, &rst(acked + 10))));
    assert_eq!((k.state(), k.timeout()), (TcpState::Established, 10));
    // Exactly at the ack: CLOSE.
    assert!(est(k.track(C2S, &rst(acked))));
    assert_eq!((k.state(), k.timeout()), (TcpState::Close, 10));
    assert_eq!(k.t.stats().invalid, 2);

    // The RST answering a SYN carries seq 0 and acks the SYN: it ends the entry.
    let mut k = Conv::v4();
    k.data(C2S, SYN, 0);
    let r = k.track(
        S2C,
        &Seg {
            flags: RST | ACK,
            seq: 0,
            ack: k.nxt[0],
            ..Seg::default()
        },
    );
    assert_eq!((r.state, r.dir), (CtState::Established, S2C));
    assert_eq!(k.t.stats().killed, 0);
    k.data(C2S, SYN, 0);
    assert_eq!(k.t.stats().killed, 1, "gone at the next packet");
}

#[test]
fn a_connection_picked_up_mid_stream_is_tracked_liberally() {
    let mut k = Conv::v4();
    let r = k.data(C2S, ACK | PSH, 100);
    assert_eq!(r.state, CtState::New);
    assert_eq!((k.state(), k.timeout()), (TcpState::Established, 300));
    assert!(est(k.data(S2C, ACK | PSH, 100)));
    // Its window scale was never seen: out-of-window segments are accepted
    // (and counted), as with nf_conntrack_tcp_be_liberal.
    let far = Seg {
        seq: k.nxt[0].wrapping_add(100_000_000),
        ..k.next(C2S, ACK | PSH, 100)
    };
    assert!(est(k.track(C2S, &far)));
    assert_eq!(k.view().packets, [2, 1]);
    assert_eq!(k.t.stats().invalid, 0);
}

#[test]
fn tcp_be_liberal_accepts_out_of_window_segments_but_not_rsts_behind_the_ack() {
    for be_liberal in [false, true] {
        let cfg = CtConfig {
            tcp_be_liberal: be_liberal,
            ..CtConfig::default()
        };
        let mut k = Conv::new(&cfg, V4);
        k.open((&LINUX_SYN_OPTIONS, 64240), (&LINUX_SYN_OPTIONS, 65160));
        k.data(C2S, ACK | PSH, 100);
        k.data(S2C, ACK, 0);
        let far = Seg {
            seq: k.nxt[0].wrapping_add(100_000_000),
            ..k.next(C2S, ACK | PSH, 100)
        };
        assert_eq!(est(k.track(C2S, &far)), be_liberal);
        let behind = Seg {
            flags: RST,
            seq: k.nxt[0] - 50,
            ..Seg::default()
        };
        assert_eq!(k.track(C2S, &behind), CtResult::INVALID);
        assert_eq!(k.state(), TcpState::Established);
    }
}

#[test]
fn retransmissions_and_a_closed_window_cap_the_timeout() {
    let mut k = Conv::v4();
    k.open((&[], 64240), (&[], 64240));
    assert_eq!(k.timeout(), 432_000);
    // The same ACK segment from the server, again and again: after three
    // repeats (nf_conntrack_tcp_max_retrans) the timeout is `max_retrans`.
    let dup = k.next(S2C, ACK, 0);
    for (n, want) in [(1, 432_000), (2, 432_000), (3, 432_000), (4, 300)] {
        assert!(est(k.track(S2C, &dup)));
        assert_eq!(k.timeout(), want, "after {n}");
    }
    // Another segment ends the run.
    k.data(C2S, ACK, 0);
    assert_eq!(k.timeout(), 432_000);
    // A zero window caps it too, until the window opens.
    k.ack(S2C, 0);
    assert_eq!(k.timeout(), 300);
    k.ack(S2C, 1000);
    assert_eq!(k.timeout(), 432_000);
}

#[test]
fn a_syn_ack_answering_an_ignored_syn_resyncs_the_entry() {
    for answers in [false, true] {
        let mut k = Conv::v4();
        k.open((&[], 64240), (&[], 64240));
        k.data(C2S, ACK | PSH, 100);
        k.data(S2C, ACK, 0);
        // Both ends restart with new sequence numbers (the entry missed the
        // close): a SYN in ESTABLISHED is ignored, let through, the entry
        // untouched.
        k.nxt[0] = k.nxt[0].wrapping_add(50_000_000);
        k.nxt[1] = k.nxt[1].wrapping_add(70_000_000);
        assert!(est(k.data(C2S, SYN, 0)));
        assert_eq!(k.state(), TcpState::Established);
        let synack = k.next(S2C, SYN | ACK, 0);
        if !answers {
            // A SYN/ACK acking something else is ignored too.
            let other = Seg {
                ack: synack.ack + 1,
                ..synack
            };
            assert!(est(k.track(S2C, &other)));
            assert_eq!(k.state(), TcpState::Established);
            continue;
        }
        // The one answering the SYN puts the entry back in sync: SYN_RECV, then
        // the new sequence space is in window.
        assert!(est(k.send(S2C, &synack)));
        assert_eq!(k.state(), TcpState::SynRecv);
        assert!(est(k.data(C2S, ACK, 0)));
        assert!(est(k.data(C2S, ACK | PSH, 100)));
        assert!(est(k.data(S2C, ACK, 0)));
        assert_eq!(k.state(), TcpState::Established);
        assert_eq!(k.t.stats().invalid, 0);
    }
}

#[test]
fn a_syn_sent_again_with_a_higher_sequence_number_restarts_its_window() {
    for again in [false, true] {
        let mut k = Conv::v4();
        let first = k.next(C2S, SYN, 0);
        k.send(C2S, &first);
        if again {
            k.nxt[0] = first.seq.wrapping_add(5000);
            k.data(C2S, SYN, 0);
        }
        // A SYN/ACK acking the second SYN: acks unsent data unless the SYN
        // restarted the client's window (RFC 9293 3.4.1).
        let synack = Seg {
            ack: first.seq.wrapping_add(5001),
            ..k.next(S2C, SYN | ACK, 0)
        };
        let r = k.track(S2C, &synack);
        assert_eq!(est(r), again, "{r:?}");
        let want = if again {
            TcpState::SynRecv
        } else {
            TcpState::SynSent
        };
        assert_eq!(k.state(), want);
    }
}

#[test]
fn an_out_of_window_close_after_the_peers_lowers_the_timeout() {
    let mut k = Conv::v4();
    k.open((&[], 64240), (&[], 64240));
    k.data(C2S, ACK | PSH, 100);
    k.data(S2C, ACK, 0);
    // A FIN from the server out of window: INVALID, remembered
    // (nf_tcp_handle_invalid).
    let fin = Seg {
        seq: k.nxt[1].wrapping_add(100_000_000),
        ..k.next(S2C, FIN | ACK, 0)
    };
    assert_eq!(k.track(S2C, &fin), CtResult::INVALID);
    assert_eq!(k.timeout(), 432_000);
    // Then a RST from the client out of window: the two ends and the entry
    // disagree, so the entry's timeout drops to `unacknowledged`.
    let rst = Seg {
        flags: RST,
        seq: k.nxt[0].wrapping_add(100_000_000),
        ..Seg::default()
    };
    assert_eq!(k.track(C2S, &rst), CtResult::INVALID);
    assert_eq!((k.state(), k.timeout()), (TcpState::Established, 300));
}
