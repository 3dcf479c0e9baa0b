//! Conntrack behaviour walk-throughs on real frames: TCP state machine, UDP/ICMP,
//! timeouts and expiry, RELATED ICMP errors, table-full policy, listing.

use proptest::prelude::*;

use super::super::testutil::*;
use super::super::*;
use crate::packet::meta::Family::{self, V4, V6};

const SEC: u64 = 1000;

fn cfg(max: u32) -> CtConfig {
    CtConfig {
        max_entries: max,
        ..CtConfig::default()
    }
}

fn table(max: u32) -> Table {
    Table::with_seed(&cfg(max), 7)
}

/// Tracks `f` at `now` and confirms the entry (the packet was accepted).
fn go(t: &mut Table, f: &[u8], now: u64) -> CtResult {
    let r = t.track(f, &meta(f), 0, now).expect("not dropped");
    if let Some(h) = r.handle {
        t.confirm(h);
    }
    r
}

const C: [u8; 4] = [198, 18, 0, 1];
const S: [u8; 4] = [192, 0, 2, 10];

fn c2s(flags: u8) -> Vec<u8> {
    tcp(V4, v4(C), 40000, v4(S), 80, flags)
}

fn s2c(flags: u8) -> Vec<u8> {
    tcp(V4, v4(S), 80, v4(C), 40000, flags)
}

fn tcp_state(t: &Table, r: &CtResult, now: u64) -> (TcpState, u64) {
    let v = t.flow(r.handle.unwrap(), now).unwrap();
    (v.tcp_state.unwrap(), v.timeout_secs)
}

#[test]
fn tcp_handshake_data_and_close_walk_linuxs_states_and_timeouts() {
    let mut t = table(64);
    let r = go(&mut t, &c2s(SYN), 0);
    assert_eq!((r.state, r.dir), (CtState::New, Dir::Original));
    assert_eq!(tcp_state(&t, &r, 0), (TcpState::SynSent, 120));
    assert_eq!(r.status & ctstatus::SEEN_REPLY, 0);

    let r = go(&mut t, &s2c(SYN | ACK), SEC);
    assert_eq!((r.state, r.dir), (CtState::Established, Dir::Reply));
    assert_eq!(tcp_state(&t, &r, SEC), (TcpState::SynRecv, 60));
    assert_ne!(r.status & ctstatus::SEEN_REPLY, 0);
    assert_eq!(r.status & ctstatus::ASSURED, 0);

    let r = go(&mut t, &c2s(ACK), 2 * SEC);
    assert_eq!((r.state, r.dir), (CtState::Established, Dir::Original));
    assert_eq!(tcp_state(&t, &r, 2 * SEC), (TcpState::Established, 432_000));
    assert_ne!(
        r.status & ctstatus::ASSURED,
        0,
        "ACK after SYN_RECV assures"
    );

    let r = go(&mut t, &s2c(ACK | 0x08), 3 * SEC);
    assert_eq!(r.state, CtState::Established);

    // Active close by the client, then the server.
    let r = go(&mut t, &c2s(FIN | ACK), 4 * SEC);
    assert_eq!(tcp_state(&t, &r, 4 * SEC), (TcpState::FinWait, 120));
    let r = go(&mut t, &s2c(ACK), 4 * SEC);
    assert_eq!(tcp_state(&t, &r, 4 * SEC), (TcpState::CloseWait, 60));
    let r = go(&mut t, &s2c(FIN | ACK), 5 * SEC);
    assert_eq!(tcp_state(&t, &r, 5 * SEC), (TcpState::LastAck, 30));
    let r = go(&mut t, &c2s(ACK), 5 * SEC);
    assert_eq!(tcp_state(&t, &r, 5 * SEC), (TcpState::TimeWait, 120));
    assert_eq!(t.len(), 1);

    // TIME_WAIT lasts 120 s, then the entry goes.
    assert_eq!(t.expire(124 * SEC, 64), 0);
    assert_eq!(t.expire(125 * SEC, 64), 1);
    assert!(t.is_empty());
    let s = t.stats();
    assert_eq!((s.created, s.confirmed, s.expired, s.invalid), (1, 1, 1, 0));
}

#[test]
fn both_tuples_find_the_entry() {
    let mut t = table(64);
    let r = go(&mut t, &c2s(SYN), 0);
    let orig = FlowKey {
        src: v4(C),
        dst: v4(S),
        sport: 40000,
        dport: 80,
        zone: 0,
        proto: 6,
        family: V4,
    };
    let h = r.handle.unwrap();
    assert_eq!(t.lookup(&orig), Some((h, Dir::Original)));
    assert_eq!(t.lookup(&orig.invert().unwrap()), Some((h, Dir::Reply)));
    assert_eq!(
        t.lookup(&FlowKey { zone: 1, ..orig }),
        None,
        "zones do not mix"
    );
    let r2 = t.track(&c2s(SYN), &meta(&c2s(SYN)), 1, 0).unwrap();
    assert_eq!(r2.state, CtState::New);
    assert_ne!(r2.handle, Some(h));
}

#[test]
fn rst_closes_with_the_close_timeout() {
    let mut t = table(64);
    go(&mut t, &c2s(SYN), 0);
    go(&mut t, &s2c(SYN | ACK), 0);
    go(&mut t, &c2s(ACK), 0);
    // In window: where the client's ACK said the server's next byte is.
    let rst = tcp_seg(
        V4,
        v4(S),
        80,
        v4(C),
        40000,
        &Seg {
            flags: RST,
            seq: ISN + 1,
            ..Seg::default()
        },
    );
    let r = go(&mut t, &rst, SEC);
    assert_eq!(r.state, CtState::Established);
    assert_eq!(tcp_state(&t, &r, SEC), (TcpState::Close, 10));
    // Data after the RST: CLOSE stays CLOSE (sCL row), still tracked.
    let r = go(&mut t, &c2s(ACK), 2 * SEC);
    assert_eq!(tcp_state(&t, &r, 2 * SEC).0, TcpState::Close);
    assert_eq!(t.expire(12 * SEC, 64), 1);
}

#[test]
fn rst_as_the_only_reply_ends_the_entry_at_once() {
    let mut t = table(64);
    go(&mut t, &c2s(SYN), 0);
    let r = go(&mut t, &s2c(RST | ACK), SEC);
    // The RST itself still belongs to the flow (NAT must translate it).
    assert_eq!((r.state, r.dir), (CtState::Established, Dir::Reply));
    assert!(t.flow(r.handle.unwrap(), SEC).is_some());
    // Gone for the next packet: a new SYN is NEW again.
    let r2 = go(&mut t, &c2s(SYN), SEC + 1);
    assert_eq!(r2.state, CtState::New);
    assert_eq!(t.len(), 1);
    let s = t.stats();
    assert_eq!((s.killed, s.expired), (1, 0));
}

#[test]
fn simultaneous_open_and_close() {
    let mut t = table(64);
    go(&mut t, &c2s(SYN), 0);
    let r = go(&mut t, &s2c(SYN), 0);
    assert_eq!(tcp_state(&t, &r, 0).0, TcpState::SynSent2);
    let r = go(&mut t, &c2s(SYN | ACK), 0);
    assert_eq!(tcp_state(&t, &r, 0).0, TcpState::SynRecv);
    let r = go(&mut t, &s2c(ACK), 0);
    assert_eq!(tcp_state(&t, &r, 0).0, TcpState::Established);
    // Both FINs cross.
    go(&mut t, &c2s(FIN | ACK), 0);
    let r = go(&mut t, &s2c(FIN | ACK), 0);
    assert_eq!(tcp_state(&t, &r, 0).0, TcpState::LastAck);
    let r = go(&mut t, &c2s(ACK), 0);
    assert_eq!(tcp_state(&t, &r, 0).0, TcpState::TimeWait);
    let r = go(&mut t, &s2c(ACK), 0);
    assert_eq!(tcp_state(&t, &r, 0), (TcpState::TimeWait, 120));
}

#[test]
fn retransmitted_syn_keeps_the_entry_and_does_not_renew_its_timer() {
    let mut t = table(64);
    let r = go(&mut t, &c2s(SYN), 0);
    let r2 = go(&mut t, &c2s(SYN), 50 * SEC);
    assert_eq!(r2.handle, r.handle);
    assert_eq!(r2.state, CtState::New);
    assert_eq!(tcp_state(&t, &r2, 50 * SEC), (TcpState::SynSent, 70));
    assert_eq!(t.len(), 1);
    // Nor is it counted (Linux returns before nf_ct_refresh_acct), as conntrack -L
    // shows with nf_conntrack_acct=1.
    let v = t.flow(r.handle.unwrap(), 50 * SEC).unwrap();
    assert_eq!((v.packets, v.bytes), ([1, 0], [40, 0]));
}

#[test]
fn ignored_segments_are_not_counted_in_the_entry() {
    let mut t = table(64);
    go(&mut t, &c2s(SYN), 0);
    go(&mut t, &s2c(SYN | ACK), 0);
    let r = go(&mut t, &c2s(ACK), 0);
    // A SYN+ACK in ESTABLISHED is TCP_CONNTRACK_IGNORE: let through, not counted.
    let ignored = go(&mut t, &s2c(SYN | ACK), 0);
    assert_eq!(ignored.state, CtState::Established);
    let v = t.flow(r.handle.unwrap(), 0).unwrap();
    assert_eq!(v.packets, [2, 1]);
}

#[test]
fn syn_in_time_wait_reopens_a_new_entry() {
    let mut t = table(64);
    go(&mut t, &c2s(SYN), 0);
    go(&mut t, &s2c(SYN | ACK), 0);
    let old = go(&mut t, &c2s(ACK), 0);
    go(&mut t, &c2s(FIN | ACK), 0);
    go(&mut t, &s2c(FIN | ACK), 0);
    go(&mut t, &c2s(ACK), 0);
    let r = go(&mut t, &c2s(SYN), SEC);
    assert_eq!(r.state, CtState::New);
    assert_ne!(r.handle, old.handle);
    assert_eq!(tcp_state(&t, &r, SEC).0, TcpState::SynSent);
    assert_eq!(
        t.flow(old.handle.unwrap(), SEC),
        None,
        "old handle is stale"
    );
    assert_eq!((t.len(), t.stats().killed), (1, 1));
}

#[test]
fn packets_outside_the_state_machine_are_invalid_and_change_nothing() {
    let mut t = table(64);
    // A SYN/ACK from the client in ESTABLISHED is sIV.
    go(&mut t, &c2s(SYN), 0);
    go(&mut t, &s2c(SYN | ACK), 0);
    let est = go(&mut t, &c2s(ACK), 0);
    let r = go(&mut t, &c2s(SYN | ACK), SEC);
    assert_eq!(r, CtResult::INVALID);
    assert_eq!(tcp_state(&t, &est, SEC), (TcpState::Established, 431_999));
    // Impossible flag combinations (tcp_error) never reach the table.
    let r = go(&mut t, &c2s(SYN | FIN), SEC);
    assert_eq!(r.state, CtState::Invalid);
    assert_eq!(t.stats().invalid, 2);
}

#[test]
fn first_packet_rules_follow_tcp_loose() {
    // Linux default nf_conntrack_tcp_loose=1: a mid-stream ACK is picked up, with
    // the `unacknowledged` cap until the other side answers.
    let mut t = table(64);
    let r = go(&mut t, &c2s(ACK), 0);
    assert_eq!(r.state, CtState::New);
    assert_eq!(tcp_state(&t, &r, 0), (TcpState::Established, 300));
    let r = go(&mut t, &s2c(ACK), 0);
    assert_eq!(r.state, CtState::Established);
    let r = go(&mut t, &c2s(ACK), 0);
    assert_eq!(tcp_state(&t, &r, 0), (TcpState::Established, 432_000));
    assert_ne!(r.status & ctstatus::ASSURED, 0);
    // FIN, RST, SYN/ACK never start an entry.
    for f in [FIN | ACK, RST, SYN | ACK] {
        let pkt = tcp(V4, v4(C), 1, v4(S), 2, f);
        assert_eq!(go(&mut t, &pkt, 0).state, CtState::Invalid, "{f:#x}");
    }
    let mut strict = Table::with_seed(
        &CtConfig {
            tcp_loose: false,
            ..cfg(64)
        },
        7,
    );
    assert_eq!(go(&mut strict, &c2s(ACK), 0).state, CtState::Invalid);
    assert_eq!(go(&mut strict, &c2s(SYN), 0).state, CtState::New);
    assert_eq!(strict.stats().invalid, 1);
    assert_eq!(t.len(), 1);
}

#[test]
fn udp_unreplied_then_stream() {
    let mut t = table(64);
    let out = udp(V4, v4(C), 5353, v4(S), 53);
    let back = udp(V4, v4(S), 53, v4(C), 5353);
    let r = go(&mut t, &out, 0);
    assert_eq!(r.state, CtState::New);
    assert_eq!(t.flow(r.handle.unwrap(), 0).unwrap().timeout_secs, 30);
    let r = go(&mut t, &back, 500);
    assert_eq!((r.state, r.dir), (CtState::Established, Dir::Reply));
    assert_eq!(r.status & ctstatus::ASSURED, 0);
    let r = go(&mut t, &out, 1000);
    assert_eq!(r.state, CtState::Established);
    assert_eq!(r.status & ctstatus::ASSURED, 0, "not a stream before 2 s");
    let r = go(&mut t, &out, 2500);
    assert_ne!(r.status & ctstatus::ASSURED, 0);
    assert_eq!(t.flow(r.handle.unwrap(), 2500).unwrap().timeout_secs, 120);

    // An unreplied flow times out after 30 s, lazily on the next packet too.
    let lone = udp(V4, v4(C), 9999, v4(S), 9);
    let r = go(&mut t, &lone, 0);
    let r2 = go(&mut t, &lone, 30 * SEC);
    assert_eq!(r2.state, CtState::New);
    assert_ne!(r2.handle, r.handle);
    assert_eq!(t.stats().expired, 1);
}

#[test]
fn icmp_echo_request_reply_v4_and_v6() {
    for (fam, a, b, req, rep) in [
        (V4, v4(C), v4(S), 8u8, 0u8),
        (V6, v6("2001:db8::1"), v6("2001:db8:1::2"), 128, 129),
    ] {
        let mut t = table(64);
        let r = go(&mut t, &echo(fam, a, b, req, 0x1c46), 0);
        assert_eq!(r.state, CtState::New);
        assert_eq!(t.flow(r.handle.unwrap(), 0).unwrap().timeout_secs, 30);
        let r2 = go(&mut t, &echo(fam, b, a, rep, 0x1c46), 0);
        assert_eq!(
            (r2.state, r2.dir, r2.handle),
            (CtState::Established, Dir::Reply, r.handle)
        );
        // Another id is another flow; an unsolicited reply is INVALID (icmp_new).
        assert_eq!(
            go(&mut t, &echo(fam, b, a, rep, 7), 0).state,
            CtState::Invalid
        );
        assert_eq!(go(&mut t, &echo(fam, a, b, req, 7), 0).state, CtState::New);
        assert_eq!(t.len(), 2);
    }
}

#[test]
fn neighbour_discovery_is_untracked_and_other_protocols_are_generic() {
    let mut t = table(64);
    let ns = frame(V6, v6("fe80::1"), v6("ff02::1:ff00:2"), 58, echo_l4(135, 0));
    assert_eq!(go(&mut t, &ns, 0), CtResult::UNTRACKED);
    let gre = |s, d| frame(V4, v4(s), v4(d), 47, vec![0; 8]);
    let r = go(&mut t, &gre(C, S), 0);
    assert_eq!(r.state, CtState::New);
    assert_eq!(t.flow(r.handle.unwrap(), 0).unwrap().timeout_secs, 600);
    assert_eq!(go(&mut t, &gre(S, C), 0).state, CtState::Established);
    assert_eq!(t.len(), 1);
}

#[test]
fn non_first_fragments_are_invalid() {
    let mut t = table(64);
    let mut f = udp(V4, v4(C), 1, v4(S), 2);
    f[14 + 6..14 + 8].copy_from_slice(&0x0010u16.to_be_bytes());
    assert_eq!(go(&mut t, &f, 0).state, CtState::Invalid);
    assert!(t.is_empty());
}

#[test]
fn dropped_new_packet_leaves_no_entry() {
    let mut t = table(64);
    let f = c2s(SYN);
    let r = t.track(&f, &meta(&f), 0, 0).unwrap();
    assert_eq!(r.status & ctstatus::CONFIRMED, 0);
    assert!(t.discard_unconfirmed(r.handle.unwrap()));
    assert!(t.is_empty());
    assert!(!t.confirm(r.handle.unwrap()), "stale handle");
    // Once confirmed, a dropped later packet does not remove the entry.
    let r = go(&mut t, &f, 0);
    assert_ne!(
        t.flow(r.handle.unwrap(), 0).unwrap().status & ctstatus::CONFIRMED,
        0
    );
    assert!(!t.discard_unconfirmed(r.handle.unwrap()));
    assert_eq!(t.len(), 1);
    let s = t.stats();
    assert_eq!((s.created, s.confirmed, s.discarded), (2, 1, 1));
}

#[test]
fn expire_sweeps_incrementally_within_its_budget() {
    let mut t = table(256);
    for p in 0..100u16 {
        go(&mut t, &udp(V4, v4(C), 1000 + p, v4(S), 53), 0);
    }
    assert_eq!(t.expire(29 * SEC, 1000), 0);
    let mut rounds = 0;
    let mut total = 0;
    while !t.is_empty() {
        let n = t.expire(30 * SEC, 10);
        assert!(n <= 10);
        total += n;
        rounds += 1;
    }
    assert_eq!(total, 100);
    assert!(rounds >= 10, "at most budget entries looked at per call");
    assert_eq!(t.stats().expired, 100);
    t.check_invariants();
}

#[test]
fn full_table_early_drops_unassured_entries_never_assured_ones() {
    let max = 64;
    let mut t = table(max);
    // Unassured (unreplied UDP), confirmed: evictable.
    for p in 0..max as u16 {
        go(&mut t, &udp(V4, v4(C), 1000 + p, v4(S), 53), 0);
    }
    assert_eq!(t.len(), max as usize);
    for p in 0..100u16 {
        let r = go(&mut t, &udp(V4, v4(C), 20000 + p, v4(S), 53), SEC);
        assert_eq!(r.state, CtState::New);
        assert_eq!(t.len(), max as usize);
    }
    let s = t.stats();
    assert_eq!((s.early_drops, s.table_full_drops), (100, 0));
    t.check_invariants();

    // ASSURED entries (TCP after the handshake) are never evicted.
    let mut t = table(max);
    for p in 0..max as u16 {
        go(&mut t, &tcp(V4, v4(C), 1000 + p, v4(S), 80, SYN), 0);
        go(&mut t, &tcp(V4, v4(S), 80, v4(C), 1000 + p, SYN | ACK), 0);
        let r = go(&mut t, &tcp(V4, v4(C), 1000 + p, v4(S), 80, ACK), 0);
        assert_ne!(r.status & ctstatus::ASSURED, 0);
    }
    let f = c2s(SYN);
    assert_eq!(t.track(&f, &meta(&f), 0, SEC), Err(CtDrop::TableFull));
    assert_eq!(t.len(), max as usize);
    let s = t.stats();
    assert_eq!((s.early_drops, s.table_full_drops), (0, 1));

    // Unconfirmed entries are not victims either (their packet is in flight).
    let mut t = table(4);
    for p in 0..4u16 {
        let f = udp(V4, v4(C), p, v4(S), 53);
        t.track(&f, &meta(&f), 0, 0).unwrap();
    }
    let f = udp(V4, v4(C), 99, v4(S), 53);
    assert_eq!(t.track(&f, &meta(&f), 0, 0), Err(CtDrop::TableFull));
    // ... but expired ones are reclaimed.
    assert_eq!(
        t.track(&f, &meta(&f), 0, 30 * SEC).unwrap().state,
        CtState::New
    );
}

fn related_case(fam: Family, client: u128, server: u128, router: u128, ty: u8, code: u8) {
    let mut t = table(64);
    let out = udp(fam, client, 40000, server, 33434);
    let r = go(&mut t, &out, 0);
    // The router on the way reports the client's packet back to the client.
    let err = icmp_error(&out, router, ty, code);
    let e = go(&mut t, &err, SEC);
    assert_eq!(
        (e.state, e.dir, e.handle),
        (CtState::Related, Dir::Reply, r.handle)
    );
    // The server's answer, reported back to the server: original direction.
    let back = udp(fam, server, 33434, client, 40000);
    go(&mut t, &back, SEC);
    let err = icmp_error(&back, router, ty, code);
    let e = go(&mut t, &err, SEC);
    assert_eq!((e.state, e.dir), (CtState::Related, Dir::Original));
    // An error about a packet of no flow is INVALID, and so is a forged one whose
    // outer destination is not the flow's.
    let stranger = udp(fam, client, 1, server, 2);
    assert_eq!(
        go(&mut t, &icmp_error(&stranger, router, ty, code), SEC).state,
        CtState::Invalid
    );
    let mut forged = icmp_error(&out, router, ty, code);
    let dst_at = if fam == V4 { 14 + 16 } else { 14 + 39 };
    forged[dst_at] ^= 1;
    assert_eq!(go(&mut t, &forged, SEC).state, CtState::Invalid);
    // A corrupted error (bad ICMP checksum) is INVALID too.
    let mut bad = icmp_error(&out, router, ty, code);
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    assert_eq!(go(&mut t, &bad, SEC).state, CtState::Invalid);
    let s = t.stats();
    assert_eq!((s.related, s.invalid, t.len()), (2, 3, 1));
}

#[test]
fn icmp_errors_are_related_v4() {
    let (c, s, r) = (v4(C), v4(S), v4([198, 51, 100, 1]));
    related_case(V4, c, s, r, 3, 3); // port unreachable
    related_case(V4, c, s, r, 11, 0); // time exceeded
    related_case(V4, c, s, r, 3, 4); // fragmentation needed
    related_case(V4, c, s, r, 12, 0); // parameter problem
}

#[test]
fn icmp_errors_are_related_v6() {
    let (c, s, r) = (v6("2001:db8::1"), v6("2001:db8:1::2"), v6("2001:db8:ff::1"));
    related_case(V6, c, s, r, 1, 4); // port unreachable
    related_case(V6, c, s, r, 2, 0); // packet too big
    related_case(V6, c, s, r, 3, 0); // time exceeded
    related_case(V6, c, s, r, 4, 0); // parameter problem
}

#[test]
fn icmp_error_about_a_tcp_syn_and_an_echo_is_related() {
    let mut t = table(64);
    let syn = c2s(SYN);
    let r = go(&mut t, &syn, 0);
    let e = go(&mut t, &icmp_error(&syn, v4(S), 3, 3), 0);
    assert_eq!((e.state, e.handle), (CtState::Related, r.handle));
    let ping = echo(V4, v4(C), v4(S), 8, 77);
    let r = go(&mut t, &ping, 0);
    let e = go(&mut t, &icmp_error(&ping, v4([203, 0, 113, 9]), 11, 0), 0);
    assert_eq!((e.state, e.handle), (CtState::Related, r.handle));
}

#[test]
fn listing_reads_like_conntrack_l() {
    let mut t = table(64);
    go(&mut t, &c2s(SYN), 0);
    go(&mut t, &s2c(SYN | ACK), 0);
    go(&mut t, &c2s(ACK), 0);
    go(&mut t, &udp(V4, v4(C), 5353, v4(S), 53), 0);
    let unconfirmed = udp(V4, v4(C), 1, v4(S), 2);
    t.track(&unconfirmed, &meta(&unconfirmed), 0, 0).unwrap();
    let mut lines: Vec<String> = t.entries(SEC).map(|v| v.to_string()).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "tcp      6 431999 ESTABLISHED src=198.18.0.1 dst=192.0.2.10 sport=40000 dport=80 \
             packets=2 bytes=80 src=192.0.2.10 dst=198.18.0.1 sport=80 dport=40000 packets=1 \
             bytes=40 [ASSURED]",
            "udp      17 29 src=198.18.0.1 dst=192.0.2.10 sport=5353 dport=53 packets=1 bytes=40 \
             [UNREPLIED] src=192.0.2.10 dst=198.18.0.1 sport=53 dport=5353 packets=0 bytes=0",
        ]
    );
    let c = t.count_by_state();
    assert_eq!(c.tcp[TcpState::Established as usize], 1);
    assert_eq!((c.udp, c.unconfirmed, c.assured, c.unreplied), (2, 1, 1, 2));
}

/// One random packet of a small universe (so flows collide and repeat).
fn arb_packet() -> impl Strategy<Value = (Vec<u8>, u64, u8)> {
    (
        0u8..6,
        0u8..4,
        0u8..4,
        0u16..4,
        any::<u8>(),
        0u64..40_000,
        0u8..4,
    )
        .prop_map(|(kind, a, b, port, flags, dt, action)| {
            let fam = if kind % 2 == 0 { V4 } else { V6 };
            let addr = |x: u8| match fam {
                Family::V4 => v4([198, 18, 0, x]),
                Family::V6 => v6("2001:db8::") + u128::from(x),
            };
            let (s, d) = (addr(a), addr(b));
            let f = match kind {
                0 | 1 => tcp(fam, s, 1000 + port, d, 80 + port % 2, flags),
                2 | 3 => udp(fam, s, 1000 + port, d, 53),
                _ => {
                    let base = if fam == V4 { 8 } else { 128 };
                    let e = echo(fam, s, d, base + (flags & 1), port);
                    if flags & 0x30 == 0x30 {
                        icmp_error(&e, addr(9), if fam == V4 { 3 } else { 1 }, 0)
                    } else {
                        e
                    }
                }
            };
            (f, dt, action)
        })
}

proptest! {
    #[test]
    fn random_packets_never_panic_or_overflow_the_table(
        pkts in proptest::collection::vec(arb_packet(), 1..300),
        max in 1u32..12,
        loose in any::<bool>(),
    ) {
        let mut t = Table::with_seed(&CtConfig { max_entries: max, tcp_loose: loose, ..CtConfig::default() }, 3);
        let mut now = 0u64;
        for (f, dt, action) in pkts {
            now += dt;
            if let Ok(r) = t.track(&f, &meta(&f), 0, now) {
                if let Some(h) = r.handle {
                    match action {
                        0 => { t.discard_unconfirmed(h); }
                        _ => { t.confirm(h); }
                    }
                }
            }
            if action == 3 {
                t.expire(now, 3);
            }
            prop_assert!(t.len() <= max as usize);
            t.check_invariants();
        }
        let s = t.stats();
        prop_assert_eq!(s.entries as usize, t.len());
        prop_assert_eq!(
            s.created,
            s.entries + s.discarded + s.expired + s.killed + s.early_drops
        );
    }
}
