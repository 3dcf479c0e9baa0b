//! ICMP and ICMPv6 error messages built in place from the offending frame, the way
//! Linux's `icmp_send` / `icmp6_send` build them: new IP + ICMP headers in front of
//! as much of the original packet as the size limit allows, in the same UMEM chunk.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::ethernet::{self, EthernetFrame};
use super::icmpv4::{self, Icmpv4Packet};
use super::icmpv6::{self, Icmpv6Packet};
use super::ipv4::{protocol, Ipv4Packet};
use super::ipv6::{self, Ipv6Packet};
use super::meta::{Family, PacketMeta};
use super::{get_u16, get_u32};

/// RFC 1812 4.3.2.3: an ICMPv4 error is at most 576 bytes of IP packet (Linux:
/// `576 - sizeof(iphdr) - sizeof(icmphdr)` bytes of quote).
pub const ICMPV4_ERROR_MAX_LEN: usize = 576;
/// RFC 4443 2.4(c): an ICMPv6 error must not exceed the minimum IPv6 MTU.
pub const ICMPV6_ERROR_MAX_LEN: usize = 1280;
/// TTL / hop limit of the errors we originate: Linux's defaults
/// (net.ipv4.ip_default_ttl, net.ipv6.conf.*.hop_limit).
pub const ERROR_TTL: u8 = 64;

const V4_HDRS: usize = 20 + icmpv4::HEADER_LEN;
const V6_HDRS: usize = ipv6::HEADER_LEN + icmpv6::HEADER_LEN;

/// [`icmpv4_error_in_place_with`] with a zero rest-of-header (time exceeded,
/// destination unreachable other than fragmentation needed).
pub fn icmpv4_error_in_place(
    frame: &mut [u8],
    frame_len: usize,
    l3_off: usize,
    router_ip: Ipv4Addr,
    icmp_type: u8,
    code: u8,
) -> Option<usize> {
    icmpv4_error_in_place_with(frame, frame_len, l3_off, router_ip, icmp_type, code, 0)
}

/// Turns the IPv4 frame `frame[..frame_len]` into an ICMP error about it, in place,
/// and returns the new frame length. `frame` may be longer than `frame_len` (the
/// rest of the UMEM chunk): the error grows into it. `rest_of_header` is ICMP bytes
/// 4..8: the next-hop MTU in the low 16 bits for fragmentation needed (RFC 1191),
/// the pointer in the top byte for parameter problem, else 0.
///
/// Ethernet addresses are swapped and VLAN tags kept; the new IPv4 header has
/// TTL 64, DF clear, TOS as Linux sets it, src `router_ip`, dst the original source.
/// The quote is the original IP packet up to its total length (link padding
/// excluded), cut so the IP packet is at most 576 bytes. Returns `None` when the
/// frame is not a sane IPv4 packet or the buffer cannot hold the IP header plus
/// 8 bytes of quote (RFC 792's minimum). Call [`should_send_icmpv4_error`] first.
pub fn icmpv4_error_in_place_with(
    frame: &mut [u8],
    frame_len: usize,
    l3_off: usize,
    router_ip: Ipv4Addr,
    icmp_type: u8,
    code: u8,
    rest_of_header: u32,
) -> Option<usize> {
    if frame_len > frame.len() || l3_off < ethernet::HEADER_LEN || l3_off + 20 > frame_len {
        return None;
    }
    let orig = &frame[l3_off..frame_len];
    if orig[0] >> 4 != 4 {
        return None;
    }
    let hl = usize::from(orig[0] & 0x0f) * 4;
    let tl = usize::from(get_u16(orig, 2));
    if hl < 20 || hl > orig.len() || tl < hl {
        return None;
    }
    let orig_len = tl.min(orig.len());
    let room = frame.len().checked_sub(l3_off + V4_HDRS)?;
    let quote = orig_len.min(ICMPV4_ERROR_MAX_LEN - V4_HDRS).min(room);
    if quote < orig_len.min(hl + 8) {
        return None;
    }
    // Linux: RT_TOS(tos) | IPTOS_PREC_INTERNETCONTROL for error messages.
    let tos = (orig[1] & 0x1e) | 0xc0;
    // No counter to draw from without shared state; the offender's ident varies
    // per packet and DF is clear only so that a path below 576 can fragment.
    let ident = get_u16(orig, 4);
    let orig_src = Ipv4Addr::from(get_u32(orig, 12));

    frame.copy_within(l3_off..l3_off + quote, l3_off + V4_HDRS);
    EthernetFrame::new_unchecked(&mut *frame).swap_addrs();

    let ip_len = V4_HDRS + quote;
    let ip_buf = &mut frame[l3_off..l3_off + ip_len];
    let mut ip = Ipv4Packet::new_unchecked(&mut ip_buf[..20]);
    ip.set_version_header_len(4, 20);
    ip.set_dscp_ecn(tos);
    ip.set_total_len(ip_len as u16);
    ip.set_ident(ident);
    ip.set_flags_frag_offset(false, false, 0);
    ip.set_ttl(ERROR_TTL);
    ip.set_protocol(protocol::ICMP);
    ip.set_src_addr(router_ip);
    ip.set_dst_addr(orig_src);
    ip.fill_checksum();

    let mut icmp = Icmpv4Packet::new_unchecked(&mut ip_buf[20..]);
    icmp.set_msg_type(icmp_type);
    icmp.set_msg_code(code);
    icmp.set_rest_of_header(rest_of_header);
    icmp.fill_checksum();
    Some(l3_off + ip_len)
}

/// RFC 1812 4.3.2.7 (and Linux's `icmp_send` checks): no ICMP error about an ICMP
/// error (or an unknown ICMP type, or an ICMP header we could not read), a
/// non-first fragment, a link-layer broadcast/multicast, an IP broadcast or
/// multicast destination, or a source that is not one host (0/8, 127/8,
/// multicast, class E, limited broadcast). Directed broadcasts need the
/// interface prefix and are the caller's check.
pub fn should_send_icmpv4_error(meta: &PacketMeta, frame: &[u8]) -> bool {
    if meta.family != Family::V4 || meta.fragment {
        return false;
    }
    match frame.first() {
        Some(b) if b & 0x01 == 0 => {}
        _ => return false,
    }
    let dst = Ipv4Addr::from(meta.dst as u32);
    if dst.is_multicast() || dst.is_broadcast() {
        return false;
    }
    let src = meta.src as u32;
    let first = (src >> 24) as u8;
    if first == 0 || first == 127 || first >= 224 {
        return false;
    }
    if meta.proto == protocol::ICMP && (!meta.l4_valid || icmpv4::is_error(meta.icmp_type)) {
        return false;
    }
    true
}

/// Turns the IPv6 frame `frame[..frame_len]` into an ICMPv6 error about it, in
/// place, and returns the new frame length. `param` is ICMPv6 bytes 4..8: the MTU
/// for packet too big, the pointer for parameter problem, else 0.
///
/// Ethernet addresses are swapped and VLAN tags kept; the new IPv6 header has hop
/// limit 64, traffic class and flow label 0, src `router_ip`, dst the original
/// source. The quote is the original packet (header + payload_len, link padding
/// excluded), cut so the IPv6 packet is at most 1280 bytes. Returns `None` when the
/// frame is not a sane IPv6 packet or the buffer cannot hold the original IPv6
/// header plus 8 bytes. Call [`should_send_icmpv6_error`] first.
pub fn icmpv6_error_in_place(
    frame: &mut [u8],
    frame_len: usize,
    l3_off: usize,
    router_ip: Ipv6Addr,
    icmp_type: u8,
    code: u8,
    param: u32,
) -> Option<usize> {
    if frame_len > frame.len()
        || l3_off < ethernet::HEADER_LEN
        || l3_off + ipv6::HEADER_LEN > frame_len
    {
        return None;
    }
    let orig = &frame[l3_off..frame_len];
    if orig[0] >> 4 != 6 {
        return None;
    }
    let orig_len = (ipv6::HEADER_LEN + usize::from(get_u16(orig, 4))).min(orig.len());
    let room = frame.len().checked_sub(l3_off + V6_HDRS)?;
    let quote = orig_len.min(ICMPV6_ERROR_MAX_LEN - V6_HDRS).min(room);
    if quote < orig_len.min(ipv6::HEADER_LEN + 8) {
        return None;
    }
    let orig_src = Ipv6Packet::new_unchecked(orig).src_addr();

    frame.copy_within(l3_off..l3_off + quote, l3_off + V6_HDRS);
    EthernetFrame::new_unchecked(&mut *frame).swap_addrs();

    let ip_len = V6_HDRS + quote;
    let icmp_len = icmpv6::HEADER_LEN + quote;
    let ip_buf = &mut frame[l3_off..l3_off + ip_len];
    let mut ip = Ipv6Packet::new_unchecked(&mut ip_buf[..ipv6::HEADER_LEN]);
    ip.set_version_tc_flow(0, 0);
    ip.set_payload_len(icmp_len as u16);
    ip.set_next_header(protocol::ICMPV6);
    ip.set_hop_limit(ERROR_TTL);
    ip.set_src_addr(router_ip);
    ip.set_dst_addr(orig_src);

    let mut icmp = Icmpv6Packet::new_unchecked(&mut ip_buf[ipv6::HEADER_LEN..]);
    icmp.set_msg_type(icmp_type);
    icmp.set_msg_code(code);
    icmp.set_rest_of_header(param);
    icmp.fill_checksum(router_ip, orig_src);
    Some(l3_off + ip_len)
}

/// RFC 4443 2.4(e): no ICMPv6 error about an ICMPv6 error or a redirect, about a
/// packet to a multicast address or sent as link-layer multicast/broadcast (except
/// packet too big, and parameter problem code 2), or from a source that is not one
/// node (unspecified, multicast). Like Linux (`is_ineligible`), a non-first
/// fragment is eligible: its ICMPv6 type is unknowable.
pub fn should_send_icmpv6_error(meta: &PacketMeta, frame: &[u8], icmp_type: u8, code: u8) -> bool {
    if meta.family != Family::V6 {
        return false;
    }
    let exempt = icmp_type == icmpv6::msg_type::PACKET_TOO_BIG
        || (icmp_type == icmpv6::msg_type::PARAMETER_PROBLEM && code == 2);
    if !exempt {
        if Ipv6Addr::from(meta.dst).is_multicast() {
            return false;
        }
        match frame.first() {
            Some(b) if b & 0x01 == 0 => {}
            _ => return false,
        }
    }
    let src = Ipv6Addr::from(meta.src);
    if src.is_unspecified() || src.is_multicast() {
        return false;
    }
    if meta.proto == protocol::ICMPV6 {
        if meta.l4_valid {
            if icmpv6::is_error(meta.icmp_type) || meta.icmp_type == icmpv6::msg_type::REDIRECT {
                return false;
            }
        } else if !meta.fragment {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::icmpv4::{msg_type as t4, unreach_code};
    use crate::packet::icmpv6::msg_type as t6;
    use crate::packet::parse::parse;
    use crate::packet::testdata::*;
    use proptest::prelude::*;

    const ROUTER4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
    const CHUNK: usize = 4096 - 256;

    fn router6() -> Ipv6Addr {
        "2001:db8:ffff::1".parse().unwrap()
    }

    /// Puts `f` at the start of a UMEM-chunk-sized buffer.
    fn chunk(f: &[u8]) -> Vec<u8> {
        let mut b = vec![0xa5; CHUNK];
        b[..f.len()].copy_from_slice(f);
        b
    }

    fn parsed(f: &[u8]) -> PacketMeta {
        let mut m = PacketMeta::default();
        parse(f, &mut m).unwrap();
        m
    }

    /// Checks every header of an ICMPv4 error and returns (quote, rest_of_header).
    fn check_v4(out: &[u8], l3: usize, orig_src: u32) -> (Vec<u8>, u32) {
        let m = parsed(out);
        assert_eq!(m.family, Family::V4);
        assert_eq!(
            (m.proto, m.ttl, m.src, m.dst),
            (1, 64, u128::from(u32::from(ROUTER4)), u128::from(orig_src))
        );
        assert_eq!(usize::from(m.l3_off), l3);
        let ip = Ipv4Packet::new_checked(&out[l3..]).unwrap();
        assert_eq!(usize::from(ip.total_len()), out.len() - l3);
        assert!(ip.verify_checksum());
        assert!(!ip.dont_frag() && !ip.is_fragment());
        assert_eq!(ip.header_len(), 20);
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        (icmp.payload().to_vec(), icmp.rest_of_header())
    }

    #[test]
    fn time_exceeded_for_tcp_syn() {
        let orig = frame(&[&ETH_V4, &IPV4_SYN_HDR, &TCP_SYN]);
        let mut buf = chunk(&orig);
        let n =
            icmpv4_error_in_place(&mut buf, orig.len(), 14, ROUTER4, t4::TIME_EXCEEDED, 0).unwrap();
        assert_eq!(n, 14 + 28 + 60);
        let out = &buf[..n];
        assert_eq!(&out[0..6], &orig[6..12]);
        assert_eq!(&out[6..12], &orig[0..6]);
        assert_eq!(&out[12..14], &[0x08, 0x00]);
        let (quote, rest) = check_v4(out, 14, 0xc612_fbf9);
        assert_eq!(quote, &orig[14..]);
        assert_eq!(rest, 0);
        let m = parsed(out);
        assert_eq!((m.icmp_type, m.icmp_code), (11, 0));
        // TOS: precedence internetwork control.
        assert_eq!(out[15], 0xc0);
    }

    #[test]
    fn frag_needed_carries_mtu_and_skips_padding() {
        let orig = frame(&[&ETH_V4, &IPV4_PING, &[0, 0]]);
        let mut buf = chunk(&orig);
        let n = icmpv4_error_in_place_with(
            &mut buf,
            orig.len(),
            14,
            ROUTER4,
            t4::DEST_UNREACHABLE,
            unreach_code::FRAG_NEEDED,
            1400,
        )
        .unwrap();
        let (quote, rest) = check_v4(&buf[..n], 14, 0xc612_fbf9);
        assert_eq!(quote, &IPV4_PING[..], "padding is not quoted");
        assert_eq!(rest, 1400);
        assert_eq!(parsed(&buf[..n]).icmp_code, 4);
    }

    #[test]
    fn large_packet_quote_stops_at_576() {
        // A 1500-byte UDP datagram in a VLAN-tagged frame.
        let mut ip = IPV4_FIRST_FRAG_HDR;
        ip[3] = 0xdc;
        ip[2] = 0x05;
        ip[6] = 0x40; // DF, not a fragment
        let data: Vec<u8> = (0..1480u32).map(|i| i as u8).collect();
        let mut orig = ETH_V4[..12].to_vec();
        orig.extend_from_slice(&[0x81, 0x00, 0x00, 0x64, 0x08, 0x00]);
        orig.extend_from_slice(&ip);
        orig.extend_from_slice(&data);
        let mut buf = chunk(&orig);
        let n = icmpv4_error_in_place(&mut buf, orig.len(), 18, ROUTER4, t4::DEST_UNREACHABLE, 1)
            .unwrap();
        assert_eq!(n, 18 + 576);
        assert_eq!(&buf[12..18], &[0x81, 0x00, 0x00, 0x64, 0x08, 0x00]);
        let (quote, _) = check_v4(&buf[..n], 18, 0xc612_fbf9);
        assert_eq!(quote.len(), 548);
        assert_eq!(quote, &orig[18..18 + 548]);
    }

    #[test]
    fn small_buffer_limits_quote() {
        let orig = frame(&[&ETH_V4, &IPV4_SYN_HDR, &TCP_SYN]);
        // Room for the headers plus 28 + 4 bytes of quote: more than header + 8.
        let mut buf = orig.clone();
        let n = icmpv4_error_in_place(&mut buf, orig.len(), 14, ROUTER4, 11, 0).unwrap();
        assert_eq!(n, orig.len());
        let (quote, _) = check_v4(&buf[..n], 14, 0xc612_fbf9);
        assert_eq!(quote, &orig[14..14 + 32]);
        // Room for less than header + 8: refused.
        let mut buf = orig[..14 + 28 + 27].to_vec();
        let len = buf.len();
        assert_eq!(
            icmpv4_error_in_place(&mut buf, len, 14, ROUTER4, 11, 0),
            None
        );
    }

    #[test]
    fn v4_refuses_garbage() {
        let orig = frame(&[&ETH_V4, &IPV4_SYN_HDR, &TCP_SYN]);
        let mut buf = chunk(&orig);
        assert_eq!(
            icmpv4_error_in_place(&mut buf, CHUNK + 1, 14, ROUTER4, 11, 0),
            None
        );
        assert_eq!(
            icmpv4_error_in_place(&mut buf, 30, 14, ROUTER4, 11, 0),
            None
        );
        assert_eq!(
            icmpv4_error_in_place(&mut buf, 74, 10, ROUTER4, 11, 0),
            None
        );
        let mut bad = chunk(&frame(&[&ETH_V4, &IPV6_PING]));
        assert_eq!(
            icmpv4_error_in_place(&mut bad, 70, 14, ROUTER4, 11, 0),
            None
        );
        let mut bad = buf.clone();
        bad[14] = 0x44;
        assert_eq!(
            icmpv4_error_in_place(&mut bad, 74, 14, ROUTER4, 11, 0),
            None
        );
        // Nothing was touched by the refusals.
        assert_eq!(&buf[..74], &orig[..]);
    }

    #[test]
    fn v4_eligibility() {
        let syn = frame(&[&ETH_V4, &IPV4_SYN_HDR, &TCP_SYN]);
        assert!(should_send_icmpv4_error(&parsed(&syn), &syn));
        // Echo request: yes. An ICMP error (dest unreachable): no.
        let ping = frame(&[&ETH_V4, &IPV4_PING]);
        assert!(should_send_icmpv4_error(&parsed(&ping), &ping));
        let mut unreach = ping.clone();
        unreach[34] = 3;
        assert!(!should_send_icmpv4_error(&parsed(&unreach), &unreach));
        // Non-first fragment: no. First fragment: yes.
        let frag = frame(&[&ETH_V4, &IPV4_FRAG_HDR, &[0; 8]]);
        assert!(!should_send_icmpv4_error(&parsed(&frag), &frag));
        let first = frame(&[&ETH_V4, &IPV4_FIRST_FRAG_HDR, &UDP_DNS]);
        assert!(should_send_icmpv4_error(&parsed(&first), &first));
        // Link-layer broadcast.
        let mut bcast = syn.clone();
        bcast[..6].copy_from_slice(&[0xff; 6]);
        assert!(!should_send_icmpv4_error(&parsed(&bcast), &bcast));
        // Destination multicast / limited broadcast; sources that are not one host.
        let base = parsed(&syn);
        for dst in [0xe000_00fb_u32, 0xffff_ffff] {
            let m = PacketMeta {
                dst: u128::from(dst),
                ..base
            };
            assert!(!should_send_icmpv4_error(&m, &syn), "dst {dst:#x}");
        }
        for src in [0u32, 0x7f00_0001, 0xe000_0001, 0xf000_0001, 0xffff_ffff] {
            let m = PacketMeta {
                src: u128::from(src),
                ..base
            };
            assert!(!should_send_icmpv4_error(&m, &syn), "src {src:#x}");
        }
        let v6 = frame(&[&ETH_V6, &IPV6_PING]);
        assert!(!should_send_icmpv4_error(&parsed(&v6), &v6));
    }

    fn check_v6(out: &[u8], l3: usize, orig_src: Ipv6Addr) -> (Vec<u8>, u32) {
        let m = parsed(out);
        assert_eq!(m.family, Family::V6);
        assert_eq!((m.proto, m.ttl), (58, 64));
        assert_eq!(Ipv6Addr::from(m.src), router6());
        assert_eq!(Ipv6Addr::from(m.dst), orig_src);
        let ip = Ipv6Packet::new_checked(&out[l3..]).unwrap();
        assert_eq!(usize::from(ip.payload_len()) + 40, out.len() - l3);
        assert_eq!((ip.traffic_class(), ip.flow_label()), (0, 0));
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum(router6(), orig_src));
        (icmp.payload().to_vec(), icmp.rest_of_header())
    }

    #[test]
    fn v6_time_exceeded_for_ping() {
        let orig = frame(&[&ETH_V6, &IPV6_PING]);
        let mut buf = chunk(&orig);
        let n = icmpv6_error_in_place(&mut buf, orig.len(), 14, router6(), t6::TIME_EXCEEDED, 0, 0)
            .unwrap();
        assert_eq!(n, 14 + 48 + 56);
        assert_eq!(&buf[0..6], &orig[6..12]);
        let (quote, rest) = check_v6(&buf[..n], 14, "2001:db8::1".parse().unwrap());
        assert_eq!(quote, &IPV6_PING[..]);
        assert_eq!(rest, 0);
        assert_eq!(parsed(&buf[..n]).icmp_type, 3);
    }

    #[test]
    fn v6_packet_too_big_stops_at_1280() {
        let mut hdr = IPV6_DSTOPT_HDR;
        hdr[4] = 0x05;
        hdr[5] = 0xb4; // payload 1460
        hdr[6] = 17;
        let data: Vec<u8> = (0..1460u32).map(|i| (i * 7) as u8).collect();
        let orig = frame(&[&ETH_V6, &hdr, &data]);
        let mut buf = chunk(&orig);
        let n = icmpv6_error_in_place(
            &mut buf,
            orig.len(),
            14,
            router6(),
            t6::PACKET_TOO_BIG,
            0,
            1280,
        )
        .unwrap();
        assert_eq!(n, 14 + 1280);
        let (quote, mtu) = check_v6(&buf[..n], 14, "2001:db8::1".parse().unwrap());
        assert_eq!(quote.len(), 1280 - 48);
        assert_eq!(quote, &orig[14..14 + 1232]);
        assert_eq!(mtu, 1280);
    }

    #[test]
    fn v6_refuses_garbage() {
        let orig = frame(&[&ETH_V6, &IPV6_PING]);
        let mut buf = orig.clone();
        // No room for the 48 bytes of new headers plus 48 of quote.
        assert_eq!(
            icmpv6_error_in_place(&mut buf, 70, 14, router6(), 3, 0, 0),
            None
        );
        let mut buf = chunk(&orig);
        assert_eq!(
            icmpv6_error_in_place(&mut buf, 50, 14, router6(), 3, 0, 0),
            None
        );
        let mut v4 = chunk(&frame(&[&ETH_V4, &IPV4_SYN_HDR, &TCP_SYN]));
        assert_eq!(
            icmpv6_error_in_place(&mut v4, 74, 14, router6(), 3, 0, 0),
            None
        );
    }

    #[test]
    fn v6_eligibility() {
        let ping = frame(&[&ETH_V6, &IPV6_PING]);
        let m = parsed(&ping);
        assert!(should_send_icmpv6_error(&m, &ping, t6::TIME_EXCEEDED, 0));
        // About an ICMPv6 error or a redirect: never.
        for ty in [t6::DEST_UNREACHABLE, t6::PACKET_TOO_BIG, t6::REDIRECT] {
            let e = PacketMeta { icmp_type: ty, ..m };
            assert!(!should_send_icmpv6_error(&e, &ping, t6::TIME_EXCEEDED, 0));
        }
        // Truncated ICMPv6 header on an unfragmented packet: can't tell, don't.
        let e = PacketMeta {
            l4_valid: false,
            ..m
        };
        assert!(!should_send_icmpv6_error(&e, &ping, t6::TIME_EXCEEDED, 0));
        let e = PacketMeta {
            l4_valid: false,
            fragment: true,
            is_fragmented: true,
            ..m
        };
        assert!(should_send_icmpv6_error(&e, &ping, t6::TIME_EXCEEDED, 0));
        // Multicast destination: only packet too big and param problem code 2.
        let mc = PacketMeta {
            dst: u128::from("ff02::1".parse::<Ipv6Addr>().unwrap()),
            ..m
        };
        assert!(!should_send_icmpv6_error(&mc, &ping, t6::TIME_EXCEEDED, 0));
        assert!(!should_send_icmpv6_error(
            &mc,
            &ping,
            t6::PARAMETER_PROBLEM,
            1
        ));
        assert!(should_send_icmpv6_error(&mc, &ping, t6::PACKET_TOO_BIG, 0));
        assert!(should_send_icmpv6_error(
            &mc,
            &ping,
            t6::PARAMETER_PROBLEM,
            2
        ));
        // Link-layer multicast (33:33:...).
        let mut l2mc = ping.clone();
        l2mc[..2].copy_from_slice(&[0x33, 0x33]);
        assert!(!should_send_icmpv6_error(
            &m,
            &l2mc,
            t6::DEST_UNREACHABLE,
            0
        ));
        assert!(should_send_icmpv6_error(&m, &l2mc, t6::PACKET_TOO_BIG, 0));
        // Sources that are not one node.
        for src in ["::", "ff02::1"] {
            let e = PacketMeta {
                src: u128::from(src.parse::<Ipv6Addr>().unwrap()),
                ..m
            };
            assert!(
                !should_send_icmpv6_error(&e, &ping, t6::PACKET_TOO_BIG, 0),
                "{src}"
            );
        }
        let v4 = frame(&[&ETH_V4, &IPV4_PING]);
        assert!(!should_send_icmpv6_error(&parsed(&v4), &v4, 3, 0));
    }

    proptest! {
        #[test]
        fn errors_from_mangled_frames_are_well_formed(
            v6 in any::<bool>(),
            muts in proptest::collection::vec((14usize..80, any::<u8>()), 0..6),
            frame_len in 0usize..200,
            cap in 0usize..300,
        ) {
            let base = if v6 {
                frame(&[&ETH_V6, &IPV6_DSTOPT_HDR, &DSTOPT_PADN, &udp_dns_v6()])
            } else {
                frame(&[&ETH_V4, &IPV4_SYN_HDR, &TCP_SYN])
            };
            let mut buf = vec![0u8; cap.max(base.len())];
            buf[..base.len()].copy_from_slice(&base);
            // The caller vouches for Ethernet and l3_off; everything after is fair game.
            for (at, v) in muts {
                buf[at.min(base.len() - 1)] = v;
            }
            buf.truncate(cap.max(14));
            let out = if v6 {
                icmpv6_error_in_place(&mut buf, frame_len, 14, router6(), 1, 0, 0)
            } else {
                icmpv4_error_in_place(&mut buf, frame_len, 14, ROUTER4, 3, 1)
            };
            if let Some(n) = out {
                prop_assert!(n <= buf.len());
                let mut m = PacketMeta::default();
                prop_assert!(parse(&buf[..n], &mut m).is_ok());
                let ip = &buf[14..n];
                if v6 {
                    prop_assert!(n - 14 <= ICMPV6_ERROR_MAX_LEN);
                    let p = Ipv6Packet::new_checked(ip).unwrap();
                    let icmp = Icmpv6Packet::new_checked(p.payload()).unwrap();
                    prop_assert!(icmp.verify_checksum(p.src_addr(), p.dst_addr()));
                } else {
                    prop_assert!(n - 14 <= ICMPV4_ERROR_MAX_LEN);
                    let p = Ipv4Packet::new_checked(ip).unwrap();
                    prop_assert!(p.verify_checksum());
                    prop_assert!(Icmpv4Packet::new_checked(p.payload()).unwrap().verify_checksum());
                }
            }
        }
    }
}
