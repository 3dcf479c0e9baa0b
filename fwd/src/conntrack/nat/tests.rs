//! NAT on real frames. A translated frame is compared byte for byte with the frame
//! built from scratch (every checksum computed in full) that the far side should
//! see, and re-verified by recomputing every checksum.

use proptest::prelude::*;

use super::super::testutil::*;
use super::super::*;
use crate::packet::meta::Family::{self, V4, V6};
use crate::packet::meta::PacketMeta;

const C: [u8; 4] = [198, 18, 0, 1];
const C2: [u8; 4] = [198, 18, 0, 2];
const S: [u8; 4] = [192, 0, 2, 10];
/// The router's public address (SNAT / MASQUERADE source, DNAT VIP).
const P: [u8; 4] = [203, 0, 113, 1];
const INNER_SRV: [u8; 4] = [198, 18, 0, 80];
const R: [u8; 4] = [198, 51, 100, 254];

fn table() -> Table {
    Table::with_seed(&CtConfig::default(), 11)
}

/// One packet through the whole pipeline: track, DNAT setup (`dnat`) and
/// rewrite in PREROUTING, SNAT setup (`snat`) and rewrite in POSTROUTING,
/// confirm. Returns the ct result and the frame as it leaves.
fn forward(
    t: &mut Table,
    f: &[u8],
    dnat: Option<NatRange>,
    snat: Option<NatRange>,
) -> Result<(CtResult, Vec<u8>), NatError> {
    let mut f = f.to_vec();
    let mut m = meta(&f);
    let ct = t.track(&f, &m, 0, 0).expect("tracked");
    let h = ct.handle.expect("has an entry");
    if let Some(r) = dnat.filter(|_| t.needs_nat_setup(h, Manip::Dst)) {
        t.setup_dnat(h, &r, 0).inspect_err(|_| {
            t.discard_unconfirmed(h);
        })?;
    }
    t.nat(&ct, Manip::Dst, &mut f, &mut m)?;
    if let Some(r) = snat.filter(|_| t.needs_nat_setup(h, Manip::Src)) {
        t.setup_snat(h, &r, 0).inspect_err(|_| {
            t.discard_unconfirmed(h);
        })?;
    }
    t.nat(&ct, Manip::Src, &mut f, &mut m)?;
    t.confirm(h);
    verify_checksums(&f).unwrap_or_else(|e| panic!("{e} in {f:02x?}"));
    // The meta follows the rewrite, as a re-parse would see it.
    let mut reparsed = meta(&f);
    reparsed.in_port = m.in_port;
    assert_eq!(m, reparsed);
    Ok((ct, f))
}

fn fwd(t: &mut Table, f: &[u8]) -> (CtResult, Vec<u8>) {
    forward(t, f, None, None).unwrap()
}

#[test]
fn snat_rewrites_the_source_and_replies_come_back_to_the_client() {
    let mut t = table();
    let (ct, out) = forward(
        &mut t,
        &tcp(V4, v4(C), 40000, v4(S), 80, SYN),
        None,
        Some(NatRange::addr(v4(P))),
    )
    .unwrap();
    assert_eq!(
        out,
        tcp(V4, v4(P), 40000, v4(S), 80, SYN),
        "port kept when free"
    );
    let st = t.status(ct.handle.unwrap());
    assert_ne!(st & ctstatus::SRC_NAT, 0);
    assert_eq!(st & ctstatus::DST_NAT, 0);

    let (r, back) = fwd(&mut t, &tcp(V4, v4(S), 80, v4(P), 40000, SYN | ACK));
    assert_eq!(
        (r.state, r.dir, r.handle),
        (CtState::Established, Dir::Reply, ct.handle)
    );
    assert_eq!(back, tcp(V4, v4(S), 80, v4(C), 40000, SYN | ACK));
    let (_, out) = fwd(&mut t, &tcp(V4, v4(C), 40000, v4(S), 80, ACK));
    assert_eq!(out, tcp(V4, v4(P), 40000, v4(S), 80, ACK));

    let v = t.flow(ct.handle.unwrap(), 0).unwrap();
    assert_eq!(
        (v.reply.src, v.reply.dst, v.reply.dport),
        (v4(S), v4(P), 40000)
    );
}

#[test]
fn snat_remaps_the_port_when_the_reply_tuple_is_taken() {
    let mut t = table();
    let snat = Some(NatRange::addr(v4(P)));
    let (_, a) = forward(&mut t, &tcp(V4, v4(C), 40000, v4(S), 80, SYN), None, snat).unwrap();
    let (_, b) = forward(&mut t, &tcp(V4, v4(C2), 40000, v4(S), 80, SYN), None, snat).unwrap();
    let port_b = meta(&b).sport;
    assert_eq!(meta(&a).sport, 40000);
    assert!(port_b >= 1024 && port_b != 40000, "{port_b}");
    assert_eq!(b, tcp(V4, v4(P), port_b, v4(S), 80, SYN));
    // Each reply finds its own client.
    let (_, back) = fwd(&mut t, &tcp(V4, v4(S), 80, v4(P), port_b, SYN | ACK));
    assert_eq!(back, tcp(V4, v4(S), 80, v4(C2), 40000, SYN | ACK));
    let (_, back) = fwd(&mut t, &tcp(V4, v4(S), 80, v4(P), 40000, SYN | ACK));
    assert_eq!(back, tcp(V4, v4(S), 80, v4(C), 40000, SYN | ACK));
    t.check_invariants();
}

#[test]
fn low_source_ports_stay_in_their_class() {
    let mut t = table();
    let snat = Some(NatRange::addr(v4(P)));
    forward(&mut t, &udp(V4, v4(C), 123, v4(S), 123), None, snat).unwrap();
    let (_, b) = forward(&mut t, &udp(V4, v4(C2), 123, v4(S), 123), None, snat).unwrap();
    let p = meta(&b).sport;
    assert!((1..512).contains(&p) && p != 123, "{p}");
}

#[test]
fn dnat_rewrites_the_destination_and_replies_get_the_public_source() {
    let mut t = table();
    let dnat = NatRange {
        addrs: Some((v4(INNER_SRV), v4(INNER_SRV))),
        ports: Some((8080, 8080)),
        persistent: false,
    };
    let (ct, out) = forward(
        &mut t,
        &tcp(V4, v4(C), 5555, v4(P), 80, SYN),
        Some(dnat),
        None,
    )
    .unwrap();
    assert_eq!(out, tcp(V4, v4(C), 5555, v4(INNER_SRV), 8080, SYN));
    assert_ne!(t.status(ct.handle.unwrap()) & ctstatus::DST_NAT, 0);
    let (r, back) = fwd(
        &mut t,
        &tcp(V4, v4(INNER_SRV), 8080, v4(C), 5555, SYN | ACK),
    );
    assert_eq!(r.dir, Dir::Reply);
    assert_eq!(back, tcp(V4, v4(P), 80, v4(C), 5555, SYN | ACK));
}

#[test]
fn dnat_and_snat_on_one_flow() {
    let mut t = table();
    let dnat = NatRange::addr(v4(INNER_SRV));
    let snat = NatRange::addr(v4([198, 18, 0, 254]));
    let (_, out) = forward(
        &mut t,
        &udp(V4, v4(C), 7000, v4(P), 53),
        Some(dnat),
        Some(snat),
    )
    .unwrap();
    assert_eq!(out, udp(V4, v4([198, 18, 0, 254]), 7000, v4(INNER_SRV), 53));
    let (_, back) = fwd(
        &mut t,
        &udp(V4, v4(INNER_SRV), 53, v4([198, 18, 0, 254]), 7000),
    );
    assert_eq!(back, udp(V4, v4(P), 53, v4(C), 7000));
}

#[test]
fn masquerade_to_ports_exhausts_into_a_counted_drop() {
    let mut t = table();
    let mut ports = Vec::new();
    for i in 0..4u8 {
        let f = udp(V4, v4([198, 18, 1, i]), 5000, v4(S), 53);
        let mut m = meta(&f);
        let ct = t.track(&f, &m, 0, 0).unwrap();
        let h = ct.handle.unwrap();
        match t.setup_masquerade(h, v4(P), Some((6000, 6002)), 0) {
            Ok(()) => {
                let mut f = f.clone();
                t.nat(&ct, Manip::Src, &mut f, &mut m).unwrap();
                verify_checksums(&f).unwrap();
                ports.push(m.sport);
                t.confirm(h);
            }
            Err(e) => {
                assert_eq!((i, e), (3, NatError::Exhausted));
                assert!(t.discard_unconfirmed(h));
            }
        }
    }
    ports.sort();
    assert_eq!(ports, [6000, 6001, 6002]);
    assert_eq!((t.stats().nat_exhausted, t.len()), (1, 3));
}

#[test]
fn udp_without_checksum_keeps_zero_and_nat66_fixes_the_v6_checksum() {
    let mut t = table();
    let f = frame_with(V4, v4(C), v4(S), 17, udp_l4(1000, 53, 5), true);
    let (_, out) = forward(&mut t, &f, None, Some(NatRange::addr(v4(P)))).unwrap();
    assert_eq!(
        out,
        frame_with(V4, v4(P), v4(S), 17, udp_l4(1000, 53, 5), true)
    );

    let (c6, s6, p6) = (
        v6("2001:db8:1::1"),
        v6("2001:db8::53"),
        v6("2001:db8:ffff::1"),
    );
    let (_, out) = forward(
        &mut t,
        &udp(V6, c6, 1000, s6, 53),
        None,
        Some(NatRange::addr(p6)),
    )
    .unwrap();
    assert_eq!(out, udp(V6, p6, 1000, s6, 53));
    let (_, out) = forward(
        &mut t,
        &tcp(V6, c6, 1001, s6, 443, SYN),
        None,
        Some(NatRange::addr(p6)),
    )
    .unwrap();
    assert_eq!(out, tcp(V6, p6, 1001, s6, 443, SYN));
    let (_, back) = fwd(&mut t, &tcp(V6, s6, 443, p6, 1001, SYN | ACK));
    assert_eq!(back, tcp(V6, s6, 443, c6, 1001, SYN | ACK));
}

#[test]
fn icmp_echo_ids_are_remapped_like_ports() {
    for (fam, req, rep, c1, c2, s, p) in [
        (V4, 8u8, 0u8, v4(C), v4(C2), v4(S), v4(P)),
        (
            V6,
            128,
            129,
            v6("2001:db8:1::1"),
            v6("2001:db8:1::2"),
            v6("2001:db8::1"),
            v6("2001:db8:f::1"),
        ),
    ] {
        let mut t = table();
        let snat = Some(NatRange::addr(p));
        let (_, a) = forward(&mut t, &echo(fam, c1, s, req, 7), None, snat).unwrap();
        assert_eq!(a, echo(fam, p, s, req, 7));
        let (_, b) = forward(&mut t, &echo(fam, c2, s, req, 7), None, snat).unwrap();
        let id = u16::from_be_bytes([b[b.len() - 12], b[b.len() - 11]]);
        assert_ne!(id, 7);
        assert_eq!(b, echo(fam, p, s, req, id));
        let (r, back) = fwd(&mut t, &echo(fam, s, p, rep, id));
        assert_eq!((r.state, r.dir), (CtState::Established, Dir::Reply));
        assert_eq!(back, echo(fam, s, c2, rep, 7));
        let (_, back) = fwd(&mut t, &echo(fam, s, p, rep, 7));
        assert_eq!(back, echo(fam, s, c1, rep, 7));
    }
}

/// An ICMP error from `router` about the translated packet `translated`: after
/// reverse translation it must be exactly the error the client would have got
/// about its own packet `original` (outer and quoted headers, every checksum).
fn check_error_translation(
    t: &mut Table,
    translated: &[u8],
    original: &[u8],
    router: u128,
    seen_src: u128,
    ty: u8,
    code: u8,
) {
    let err = icmp_error(translated, router, ty, code);
    let (ct, out) = fwd(t, &err);
    assert_eq!(ct.state, CtState::Related);
    let want = icmp_error(original, seen_src, ty, code);
    assert_eq!(out, want, "got {out:02x?}\nwant {want:02x?}");
}

#[test]
fn icmp_errors_about_snat_flows_are_translated_back_v4() {
    let mut t = table();
    // UDP: the quote holds the whole datagram, so its checksum is checked too.
    let orig = udp(V4, v4(C), 40000, v4(S), 33434);
    let (_, out) = forward(&mut t, &orig, None, Some(NatRange::addr(v4(P)))).unwrap();
    check_error_translation(&mut t, &out, &orig, v4(R), v4(R), 3, 3);
    check_error_translation(&mut t, &out, &orig, v4(R), v4(R), 11, 0);
    // TCP with a remapped port: the quoted TCP header is complete.
    forward(
        &mut t,
        &tcp(V4, v4(C2), 41000, v4(S), 80, SYN),
        None,
        Some(NatRange::addr(v4(P))),
    )
    .unwrap();
    let orig = tcp(V4, v4(C), 41000, v4(S), 80, SYN);
    let (_, out) = forward(&mut t, &orig, None, Some(NatRange::addr(v4(P)))).unwrap();
    assert_ne!(meta(&out).sport, 41000);
    check_error_translation(&mut t, &out, &orig, v4(R), v4(R), 3, 1);
    // Echo: the quoted identifier goes back too.
    forward(
        &mut t,
        &echo(V4, v4(C2), v4(S), 8, 9),
        None,
        Some(NatRange::addr(v4(P))),
    )
    .unwrap();
    let orig = echo(V4, v4(C), v4(S), 8, 9);
    let (_, out) = forward(&mut t, &orig, None, Some(NatRange::addr(v4(P)))).unwrap();
    check_error_translation(&mut t, &out, &orig, v4(R), v4(R), 11, 0);
}

#[test]
fn icmp_errors_about_dnat_flows_come_from_the_public_address() {
    let mut t = table();
    let orig = udp(V4, v4(C), 5000, v4(P), 53);
    let dnat = NatRange {
        addrs: Some((v4(INNER_SRV), v4(INNER_SRV))),
        ports: Some((5353, 5353)),
        persistent: false,
    };
    let (_, out) = forward(&mut t, &orig, Some(dnat), None).unwrap();
    // The inside server's router reports; the client sees the VIP as the
    // reporter and its own packet quoted (Linux hides the inside).
    check_error_translation(&mut t, &out, &orig, v4([198, 18, 0, 99]), v4(P), 3, 3);
}

#[test]
fn icmpv6_errors_about_nat66_flows_are_translated_back() {
    let mut t = table();
    let (c6, s6, p6) = (
        v6("2001:db8:1::1"),
        v6("2001:db8::53"),
        v6("2001:db8:ffff::1"),
    );
    let r6 = v6("2001:db8:77::1");
    let orig = udp(V6, c6, 40000, s6, 33434);
    let (_, out) = forward(&mut t, &orig, None, Some(NatRange::addr(p6))).unwrap();
    check_error_translation(&mut t, &out, &orig, r6, r6, 1, 4);
    check_error_translation(&mut t, &out, &orig, r6, r6, 2, 0);
    check_error_translation(&mut t, &out, &orig, r6, r6, 3, 0);
}

#[test]
fn a_corrupted_error_about_a_nat_flow_is_refused() {
    let mut t = table();
    let orig = udp(V4, v4(C), 40000, v4(S), 9);
    let (_, out) = forward(&mut t, &orig, None, Some(NatRange::addr(v4(P)))).unwrap();
    let mut err = icmp_error(&out, v4(R), 3, 3);
    let ct = t.track(&err, &meta(&err), 0, 0).unwrap();
    assert_eq!(ct.state, CtState::Related);
    let n = err.len();
    err[n - 1] ^= 0xff;
    let mut m: PacketMeta = meta(&err);
    assert_eq!(
        t.nat(&ct, Manip::Dst, &mut err, &mut m),
        Err(NatError::BadIcmpError)
    );
}

#[test]
fn nat_is_decided_once_per_flow() {
    let mut t = table();
    let f = tcp(V4, v4(C), 1, v4(S), 2, SYN);
    let ct = t.track(&f, &meta(&f), 0, 0).unwrap();
    let h = ct.handle.unwrap();
    assert!(t.needs_nat_setup(h, Manip::Src));
    t.setup_snat(h, &NatRange::addr(v4(P)), 0).unwrap();
    assert!(!t.needs_nat_setup(h, Manip::Src));
    assert_eq!(
        t.setup_snat(h, &NatRange::addr(v4(P)), 0),
        Err(NatError::AlreadySet)
    );
    // No DNAT rule matched: the PREROUTING decision is still open until confirm.
    assert!(t.needs_nat_setup(h, Manip::Dst));
    t.confirm(h);
    assert!(!t.needs_nat_setup(h, Manip::Dst));
    assert_eq!(
        t.setup_dnat(h, &NatRange::addr(v4(P)), 0),
        Err(NatError::AlreadySet)
    );
    t.discard_unconfirmed(h);
    let g = tcp(V4, v4(C), 1, v4(S), 2, RST);
    let _ = t.track(&g, &meta(&g), 0, 0);
    let _ = t.track(&f, &meta(&f), 0, 20_000);
    assert_eq!(
        t.setup_snat(h, &NatRange::addr(v4(P)), 0),
        Err(NatError::StaleHandle)
    );
}

fn snat_many(flows: &[(u8, u8, u16)], lo: u16, hi: u16, fam: Family) -> (Table, usize, usize) {
    let mut t = Table::with_seed(&CtConfig::default(), 5);
    let (dst, pub_addr) = match fam {
        V4 => (v4(S), v4(P)),
        V6 => (v6("2001:db8::1"), v6("2001:db8:f::1")),
    };
    let range = NatRange {
        addrs: Some((pub_addr, pub_addr)),
        ports: Some((lo, hi)),
        persistent: false,
    };
    let (mut ok, mut exhausted) = (0, 0);
    for &(a, b, sport) in flows {
        let src = match fam {
            V4 => v4([198, 19, a, b]),
            V6 => v6("2001:db8:1::") + (u128::from(a) << 8 | u128::from(b)),
        };
        let f = udp(fam, src, sport, dst, 443);
        let mut m = meta(&f);
        let ct = t.track(&f, &m, 0, 0).unwrap();
        let h = ct.handle.unwrap();
        assert_eq!(ct.state, CtState::New);
        match t.setup_snat(h, &range, 0) {
            Ok(()) => {
                let mut f = f.clone();
                t.nat(&ct, Manip::Src, &mut f, &mut m).unwrap();
                assert!(
                    (lo..=hi).contains(&m.sport),
                    "{} outside {lo}-{hi}",
                    m.sport
                );
                assert_eq!(m.src, pub_addr);
                t.confirm(h);
                ok += 1;
            }
            Err(NatError::Exhausted) => {
                t.discard_unconfirmed(h);
                exhausted += 1;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    (t, ok, exhausted)
}

proptest! {
    /// Many sources to one destination through SNAT to one address: no two live
    /// entries share a reply tuple (check_invariants), every port is in range, and
    /// once the range is used up further flows are counted drops.
    #[test]
    fn snat_port_allocator_never_reuses_a_reply_tuple(
        flows in proptest::collection::vec((0u8..4, any::<u8>(), 1000u16..1010), 1..200),
        lo in 20000u16..20010,
        len in 1u16..100,
        v6 in any::<bool>(),
    ) {
        let hi = lo + len - 1;
        let fam = if v6 { V6 } else { V4 };
        let mut seen = std::collections::HashSet::new();
        let flows: Vec<_> = flows.into_iter().filter(|f| seen.insert(*f)).collect();
        let distinct = flows.len();
        let (t, ok, exhausted) = snat_many(&flows, lo, hi, fam);
        t.check_invariants();
        // A range of at most 128 ports is searched in full (NAT_MAX_ATTEMPTS).
        prop_assert_eq!(ok, distinct.min(usize::from(len)));
        prop_assert_eq!(ok + exhausted, distinct);
        prop_assert_eq!(t.stats().nat_exhausted as usize, exhausted);
        prop_assert_eq!(t.len(), ok);
    }
}
