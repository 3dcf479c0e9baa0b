//! The one-pass parse of a received frame into [`PacketMeta`]: Ethernet, up to two
//! VLAN tags, IPv4 or IPv6 (extension headers walked), then the transport ports,
//! flags or ICMP type. It reads only the bytes it needs, allocates nothing and
//! returns an error instead of panicking on any input.

use super::ethernet::{self, ethertype};
use super::ipv4::protocol;
use super::ipv6::{self, walk_ext_headers, ExtError};
use super::meta::{Family, PacketMeta};
use super::{get_u16, get_u32, vlan};

/// At most this many VLAN tags (802.1ad outer + 802.1Q inner).
pub const MAX_VLAN_TAGS: usize = 2;

/// Why a frame was not parsed. The dataplane counts drops by [`ParseError::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than the Ethernet header, a VLAN tag, or the fixed IP header.
    TooShort,
    /// Longer than 65535 bytes: offsets would not fit `PacketMeta`.
    TooLong,
    /// Not IPv4 or IPv6 (ARP, LLDP, ...): the caller passes these to the kernel.
    NotIp { ethertype: u16 },
    /// More than [`MAX_VLAN_TAGS`] tags.
    TooManyVlanTags,
    /// The IP version field does not match the EtherType.
    BadVersion,
    /// IPv4 IHL < 5, or the header runs past the frame.
    BadHeaderLength,
    /// IPv4 total length below the header length or past the frame.
    BadTotalLength,
    /// IPv6 payload length past the frame.
    BadPayloadLength,
    /// An IPv6 extension header runs past the payload.
    BadExtHeader,
    /// Hop-by-hop options not directly after the IPv6 header (RFC 8200 4.1).
    HopByHopNotFirst,
    /// More than [`ipv6::MAX_EXT_HEADERS`] extension headers.
    TooManyExtHeaders,
    /// The TCP/UDP/ICMP header of an unfragmented or first-fragment packet does not
    /// fit the IP payload. The L3 fields of the meta are filled.
    TruncatedL4,
    /// TCP data offset < 5 (Linux's "evil TCP offset=0 tinygram").
    BadTcpHeader,
}

impl ParseError {
    /// Stable counter name.
    pub const fn as_str(&self) -> &'static str {
        match self {
            ParseError::TooShort => "truncated",
            ParseError::TooLong => "too_long",
            ParseError::NotIp { .. } => "not_ip",
            ParseError::TooManyVlanTags => "too_many_vlans",
            ParseError::BadVersion => "bad_version",
            ParseError::BadHeaderLength => "bad_ihl",
            ParseError::BadTotalLength => "bad_total_len",
            ParseError::BadPayloadLength => "bad_payload_len",
            ParseError::BadExtHeader => "bad_ext_header",
            ParseError::HopByHopNotFirst => "hbh_not_first",
            ParseError::TooManyExtHeaders => "too_many_ext_headers",
            ParseError::TruncatedL4 => "truncated_l4",
            ParseError::BadTcpHeader => "bad_tcp_doff",
        }
    }

    /// Every variant once (with a placeholder EtherType), for registering counters.
    pub const ALL: [ParseError; 13] = [
        ParseError::TooShort,
        ParseError::TooLong,
        ParseError::NotIp { ethertype: 0 },
        ParseError::TooManyVlanTags,
        ParseError::BadVersion,
        ParseError::BadHeaderLength,
        ParseError::BadTotalLength,
        ParseError::BadPayloadLength,
        ParseError::BadExtHeader,
        ParseError::HopByHopNotFirst,
        ParseError::TooManyExtHeaders,
        ParseError::TruncatedL4,
        ParseError::BadTcpHeader,
    ];
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::NotIp { ethertype } => write!(f, "not_ip (ethertype 0x{ethertype:04x})"),
            e => f.write_str(e.as_str()),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses `frame` (the whole Ethernet frame) into `meta`.
///
/// Fills family, src, dst, proto, sport, dport, tcp_flags, icmp_type, icmp_code,
/// ip_len, fragment, is_fragmented, l4_valid, l3_off, l4_off and ttl, and resets
/// them first; in_port, out_port and mark are left alone. The IPv4 header checksum
/// is not verified (see [`verify_ipv4_header_checksum`]).
///
/// On error the meta is partly filled: after `TruncatedL4` and `BadTcpHeader` all
/// L3 fields and `l4_off` are valid and `l4_valid` is false.
///
/// Only TCP, UDP, ICMP (over IPv4) and ICMPv6 (over IPv6) set `l4_valid`; other
/// protocols get `l4_off` and no ports. ICMP echo identifiers are not copied into
/// the ports; read them at `l4_off`.
pub fn parse(frame: &[u8], meta: &mut PacketMeta) -> Result<(), ParseError> {
    reset(meta);
    if frame.len() > usize::from(u16::MAX) {
        return Err(ParseError::TooLong);
    }
    if frame.len() < ethernet::HEADER_LEN {
        return Err(ParseError::TooShort);
    }
    let mut etype = get_u16(frame, 12);
    let mut l3 = ethernet::HEADER_LEN;
    let mut tags = 0;
    while matches!(
        etype,
        ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_OLD
    ) {
        if tags == MAX_VLAN_TAGS {
            return Err(ParseError::TooManyVlanTags);
        }
        if frame.len() < l3 + vlan::HEADER_LEN {
            return Err(ParseError::TooShort);
        }
        etype = get_u16(frame, l3 + 2);
        l3 += vlan::HEADER_LEN;
        tags += 1;
    }
    meta.l3_off = l3 as u16;
    match etype {
        ethertype::IPV4 => parse_ipv4(frame, l3, meta),
        ethertype::IPV6 => parse_ipv6(frame, l3, meta),
        ethertype => Err(ParseError::NotIp { ethertype }),
    }
}

#[inline]
fn reset(meta: &mut PacketMeta) {
    meta.family = Family::V4;
    meta.src = 0;
    meta.dst = 0;
    meta.proto = 0;
    meta.sport = 0;
    meta.dport = 0;
    meta.tcp_flags = 0;
    meta.icmp_type = 0;
    meta.icmp_code = 0;
    meta.ip_len = 0;
    meta.fragment = false;
    meta.is_fragmented = false;
    meta.l4_valid = false;
    meta.l3_off = 0;
    meta.l4_off = 0;
    meta.ttl = 0;
}

#[inline]
fn parse_ipv4(frame: &[u8], l3: usize, meta: &mut PacketMeta) -> Result<(), ParseError> {
    let ip = &frame[l3..];
    if ip.len() < 20 {
        return Err(ParseError::TooShort);
    }
    if ip[0] >> 4 != 4 {
        return Err(ParseError::BadVersion);
    }
    let hl = usize::from(ip[0] & 0x0f) * 4;
    if hl < 20 || hl > ip.len() {
        return Err(ParseError::BadHeaderLength);
    }
    let tl = usize::from(get_u16(ip, 2));
    if tl < hl || tl > ip.len() {
        return Err(ParseError::BadTotalLength);
    }
    let flg_off = get_u16(ip, 6);
    meta.family = Family::V4;
    meta.ttl = ip[8];
    meta.proto = ip[9];
    meta.src = u128::from(get_u32(ip, 12));
    meta.dst = u128::from(get_u32(ip, 16));
    meta.ip_len = tl as u16;
    meta.is_fragmented = flg_off & 0x3fff != 0;
    meta.fragment = flg_off & 0x1fff != 0;
    meta.l4_off = (l3 + hl) as u16;
    if meta.fragment {
        return Ok(());
    }
    parse_l4(&ip[hl..tl], Family::V4, meta)
}

#[inline]
fn parse_ipv6(frame: &[u8], l3: usize, meta: &mut PacketMeta) -> Result<(), ParseError> {
    let ip = &frame[l3..];
    if ip.len() < ipv6::HEADER_LEN {
        return Err(ParseError::TooShort);
    }
    if ip[0] >> 4 != 6 {
        return Err(ParseError::BadVersion);
    }
    let pl = usize::from(get_u16(ip, 4));
    if ipv6::HEADER_LEN + pl > ip.len() {
        return Err(ParseError::BadPayloadLength);
    }
    meta.family = Family::V6;
    meta.ttl = ip[7];
    let mut a = [0u8; 16];
    a.copy_from_slice(&ip[8..24]);
    meta.src = u128::from_be_bytes(a);
    a.copy_from_slice(&ip[24..40]);
    meta.dst = u128::from_be_bytes(a);
    // `-m length` counts the IPv6 header; a 65535-byte payload saturates.
    meta.ip_len = (pl + ipv6::HEADER_LEN).min(usize::from(u16::MAX)) as u16;
    let payload = &ip[ipv6::HEADER_LEN..ipv6::HEADER_LEN + pl];
    let ext = walk_ext_headers(ip[6], payload).map_err(|e| match e {
        ExtError::Truncated => ParseError::BadExtHeader,
        ExtError::TooMany => ParseError::TooManyExtHeaders,
        ExtError::HopByHopNotFirst => ParseError::HopByHopNotFirst,
    })?;
    meta.proto = ext.proto;
    meta.l4_off = (l3 + ipv6::HEADER_LEN + ext.l4_off) as u16;
    if let Some(f) = ext.fragment {
        meta.is_fragmented = true;
        meta.fragment = f.offset != 0;
        if meta.fragment {
            return Ok(());
        }
    }
    parse_l4(&payload[ext.l4_off..], Family::V6, meta)
}

#[inline]
fn parse_l4(l4: &[u8], family: Family, meta: &mut PacketMeta) -> Result<(), ParseError> {
    match (meta.proto, family) {
        (protocol::TCP, _) => {
            if l4.len() < 20 {
                return Err(ParseError::TruncatedL4);
            }
            let hl = usize::from(l4[12] >> 4) * 4;
            if hl < 20 {
                return Err(ParseError::BadTcpHeader);
            }
            if hl > l4.len() {
                return Err(ParseError::TruncatedL4);
            }
            meta.sport = get_u16(l4, 0);
            meta.dport = get_u16(l4, 2);
            meta.tcp_flags = l4[13];
        }
        (protocol::UDP, _) => {
            if l4.len() < 8 {
                return Err(ParseError::TruncatedL4);
            }
            meta.sport = get_u16(l4, 0);
            meta.dport = get_u16(l4, 2);
        }
        (protocol::ICMP, Family::V4) | (protocol::ICMPV6, Family::V6) => {
            // Linux's icmp/icmp6 matches need the full 8-byte header too.
            if l4.len() < 8 {
                return Err(ParseError::TruncatedL4);
            }
            meta.icmp_type = l4[0];
            meta.icmp_code = l4[1];
        }
        _ => return Ok(()),
    }
    meta.l4_valid = true;
    Ok(())
}

/// Verifies the IPv4 header checksum of a frame parsed by [`parse`] (kept out of
/// `parse` because most forwarders never look: RFC 1812 5.2.2 lets a router skip
/// it, and the incremental TTL update keeps a bad checksum bad). False for IPv6
/// or an inconsistent meta.
pub fn verify_ipv4_header_checksum(frame: &[u8], meta: &PacketMeta) -> bool {
    if meta.family != Family::V4 {
        return false;
    }
    match frame.get(usize::from(meta.l3_off)..usize::from(meta.l4_off)) {
        Some(h) if h.len() >= 20 => super::checksum::fold(super::checksum::sum(h, 0)) == 0xffff,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::testdata::*;
    use proptest::prelude::*;

    fn parsed(f: &[u8]) -> Result<PacketMeta, ParseError> {
        let mut m = PacketMeta::default();
        parse(f, &mut m).map(|()| m)
    }

    fn tagged(tpids: &[(u16, u16)], inner: u16, rest: &[u8]) -> Vec<u8> {
        let mut v = ETH_V4[..12].to_vec();
        for &(tpid, vid) in tpids {
            v.extend_from_slice(&tpid.to_be_bytes());
            v.extend_from_slice(&vid.to_be_bytes());
        }
        v.extend_from_slice(&inner.to_be_bytes());
        v.extend_from_slice(rest);
        v
    }

    #[test]
    fn ipv4_tcp_syn() {
        let f = frame(&[&ETH_V4, &IPV4_SYN_HDR, &TCP_SYN]);
        let mut m = PacketMeta {
            in_port: 3,
            out_port: 7,
            mark: 42,
            sport: 9,
            ..Default::default()
        };
        parse(&f, &mut m).unwrap();
        assert_eq!(
            m,
            PacketMeta {
                family: Family::V4,
                src: 0xc612_fbf9,
                dst: 0x5db8_d822,
                proto: 6,
                sport: 54321,
                dport: 443,
                tcp_flags: 0x02,
                icmp_type: 0,
                icmp_code: 0,
                ip_len: 60,
                fragment: false,
                is_fragmented: false,
                l4_valid: true,
                l3_off: 14,
                l4_off: 34,
                ttl: 64,
                in_port: 3,
                out_port: 7,
                mark: 42,
                ctstate: 0,
                ctstatus: 0,
                nat: 0,
            }
        );
        assert!(verify_ipv4_header_checksum(&f, &m));
        let mut bad = f.clone();
        bad[14 + 8] = 63;
        assert!(!verify_ipv4_header_checksum(&bad, &m));
    }

    #[test]
    fn ipv4_icmp_with_ethernet_padding() {
        // 14 + 44 = 58 bytes, padded to the 60-byte minimum frame.
        let f = frame(&[&ETH_V4, &IPV4_PING, &[0, 0]]);
        let m = parsed(&f).unwrap();
        assert_eq!(
            (m.proto, m.icmp_type, m.icmp_code, m.l4_valid),
            (1, 8, 0, true)
        );
        assert_eq!((m.sport, m.dport, m.ip_len), (0, 0, 44));
        assert_eq!(m.dst, 0x0808_0808);
    }

    #[test]
    fn ipv4_fragments() {
        let f = frame(&[&ETH_V4, &IPV4_FRAG_HDR, &[0xab; 8]]);
        let m = parsed(&f).unwrap();
        assert!(m.fragment && m.is_fragmented && !m.l4_valid);
        assert_eq!((m.proto, m.sport, m.dport, m.ttl), (17, 0, 0, 63));
        assert_eq!(m.l4_off, 34);

        let f = frame(&[&ETH_V4, &IPV4_FIRST_FRAG_HDR, &UDP_DNS]);
        let m = parsed(&f).unwrap();
        assert!(!m.fragment && m.is_fragmented && m.l4_valid);
        assert_eq!((m.sport, m.dport), (57585, 53));
    }

    #[test]
    fn vlan_and_qinq() {
        let inner = frame(&[&IPV4_SYN_HDR, &TCP_SYN]);
        let f = tagged(&[(0x8100, 100)], 0x0800, &inner);
        let m = parsed(&f).unwrap();
        assert_eq!((m.l3_off, m.l4_off, m.dport), (18, 38, 443));

        let f = tagged(&[(0x88a8, 10), (0x8100, 20)], 0x86dd, &IPV6_PING);
        let m = parsed(&f).unwrap();
        assert_eq!((m.family, m.l3_off, m.l4_off), (Family::V6, 22, 62));
        assert_eq!((m.proto, m.icmp_type, m.ip_len, m.ttl), (58, 128, 56, 64));

        let f = tagged(&[(0x88a8, 10), (0x8100, 20), (0x8100, 30)], 0x0800, &inner);
        assert_eq!(parsed(&f), Err(ParseError::TooManyVlanTags));
        // A tag cut in half.
        let f = tagged(&[(0x8100, 100)], 0x0800, &[]);
        assert_eq!(parsed(&f[..16]), Err(ParseError::TooShort));
    }

    #[test]
    fn ipv6_dstopts_udp() {
        let f = frame(&[&ETH_V6, &IPV6_DSTOPT_HDR, &DSTOPT_PADN, &udp_dns_v6()]);
        let m = parsed(&f).unwrap();
        assert_eq!(m.family, Family::V6);
        assert_eq!(m.src, 0x2001_0db8_0000_0000_0000_0000_0000_0001);
        assert_eq!(m.dst, 0x2001_0db8_0000_0000_0000_0000_0000_0053);
        assert_eq!(
            (m.proto, m.sport, m.dport, m.l4_valid),
            (17, 57585, 53, true)
        );
        assert_eq!((m.l3_off, m.l4_off, m.ip_len), (14, 62, 85));
        assert!(!verify_ipv4_header_checksum(&f, &m));
    }

    #[test]
    fn ipv6_non_first_fragment() {
        let mut hdr = IPV6_DSTOPT_HDR;
        hdr[5] = 16; // payload: fragment header + 8 bytes
        hdr[6] = 44;
        let f = frame(&[&ETH_V6, &hdr, &[6, 0, 0x05, 0xc8, 0, 0, 0, 7], &[0xab; 8]]);
        let m = parsed(&f).unwrap();
        assert!(m.fragment && m.is_fragmented && !m.l4_valid);
        assert_eq!((m.proto, m.sport, m.l4_off), (6, 0, 62));
    }

    #[test]
    fn not_ip() {
        assert_eq!(
            parsed(&ARP_REQUEST),
            Err(ParseError::NotIp { ethertype: 0x0806 })
        );
        assert_eq!(ParseError::NotIp { ethertype: 0x0806 }.as_str(), "not_ip");
    }

    #[test]
    fn l3_errors() {
        let good = frame(&[&ETH_V4, &IPV4_SYN_HDR, &TCP_SYN]);
        assert_eq!(parsed(&good[..13]), Err(ParseError::TooShort));
        assert_eq!(parsed(&good[..33]), Err(ParseError::TooShort));
        assert_eq!(parsed(&vec![0u8; 70_000]), Err(ParseError::TooLong));

        let mut f = good.clone();
        f[14] = 0x65; // version 6 under EtherType IPv4
        assert_eq!(parsed(&f), Err(ParseError::BadVersion));
        f[14] = 0x44; // IHL 4
        assert_eq!(parsed(&f), Err(ParseError::BadHeaderLength));
        f[14] = 0x4f; // IHL 15 = 60 bytes, one more than the 59 present
        assert_eq!(parsed(&f[..14 + 59]), Err(ParseError::BadHeaderLength));

        let mut f = good.clone();
        f[17] = 61; // total_len 61 > 60 present
        assert_eq!(parsed(&f), Err(ParseError::BadTotalLength));
        f[17] = 19; // below the header
        assert_eq!(parsed(&f), Err(ParseError::BadTotalLength));

        let v6 = frame(&[&ETH_V6, &IPV6_PING]);
        assert_eq!(parsed(&v6[..14 + 39]), Err(ParseError::TooShort));
        assert_eq!(
            parsed(&v6[..v6.len() - 1]),
            Err(ParseError::BadPayloadLength)
        );
        let mut f = v6.clone();
        f[14] = 0x40;
        assert_eq!(parsed(&f), Err(ParseError::BadVersion));
    }

    #[test]
    fn ext_header_errors() {
        // Destination options claiming 16 bytes with 8 there.
        let mut hdr = IPV6_DSTOPT_HDR;
        hdr[5] = 8;
        let f = frame(&[&ETH_V6, &hdr, &[17, 1, 0, 0, 0, 0, 0, 0]]);
        assert_eq!(parsed(&f), Err(ParseError::BadExtHeader));
        // Nine destination options headers.
        let mut chain = vec![0u8; 72];
        for i in 0..9 {
            chain[i * 8] = 60;
        }
        hdr[5] = 72;
        let f = frame(&[&ETH_V6, &hdr, &chain]);
        assert_eq!(parsed(&f), Err(ParseError::TooManyExtHeaders));
        // Hop-by-hop after destination options.
        hdr[5] = 16;
        let f = frame(&[
            &ETH_V6,
            &hdr,
            &[0, 0, 0, 0, 0, 0, 0, 0],
            &[59, 0, 0, 0, 0, 0, 0, 0],
        ]);
        assert_eq!(parsed(&f), Err(ParseError::HopByHopNotFirst));
    }

    #[test]
    fn l4_errors_keep_l3() {
        // TCP cut to 19 bytes: total_len says 20 + 19.
        let mut hdr = IPV4_SYN_HDR;
        hdr[3] = 39;
        let f = frame(&[&ETH_V4, &hdr, &TCP_SYN[..19]]);
        let mut m = PacketMeta::default();
        assert_eq!(parse(&f, &mut m), Err(ParseError::TruncatedL4));
        assert_eq!(
            (m.src, m.proto, m.l4_off, m.l4_valid),
            (0xc612_fbf9, 6, 34, false)
        );
        // Data offset 10 but only 20 bytes of TCP.
        hdr[3] = 40;
        let f = frame(&[&ETH_V4, &hdr, &TCP_SYN[..20]]);
        assert_eq!(parsed(&f), Err(ParseError::TruncatedL4));
        // Data offset 0.
        let mut tcp = TCP_SYN;
        tcp[12] = 0;
        let f = frame(&[&ETH_V4, &IPV4_SYN_HDR, &tcp]);
        assert_eq!(parsed(&f), Err(ParseError::BadTcpHeader));
        // UDP with 7 bytes, ICMP with 4, ICMPv6 with 4.
        let mut hdr = IPV4_FIRST_FRAG_HDR;
        hdr[3] = 27;
        let f = frame(&[&ETH_V4, &hdr, &UDP_DNS[..7]]);
        assert_eq!(parsed(&f), Err(ParseError::TruncatedL4));
        let mut ping = IPV4_PING;
        ping[3] = 24;
        assert_eq!(
            parsed(&frame(&[&ETH_V4, &ping[..24]])),
            Err(ParseError::TruncatedL4)
        );
        let mut ping6 = IPV6_PING;
        ping6[5] = 4;
        assert_eq!(
            parsed(&frame(&[&ETH_V6, &ping6[..44]])),
            Err(ParseError::TruncatedL4)
        );
    }

    #[test]
    fn other_protocols_have_no_ports() {
        // GRE (47) over IPv4: parsed, l4_off set, no ports.
        let mut hdr = IPV4_SYN_HDR;
        hdr[9] = 47;
        let m = parsed(&frame(&[&ETH_V4, &hdr, &TCP_SYN])).unwrap();
        assert_eq!((m.proto, m.l4_valid, m.sport, m.l4_off), (47, false, 0, 34));
        // ICMPv6 number inside IPv4 is not ICMP.
        hdr[9] = 58;
        let m = parsed(&frame(&[&ETH_V4, &hdr, &TCP_SYN])).unwrap();
        assert!(!m.l4_valid);
    }

    #[test]
    fn error_names_are_stable_and_distinct() {
        let names: Vec<&str> = ParseError::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(names[0], "truncated");
        assert!(names.contains(&"bad_ihl"));
        let mut dedup = names.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), names.len());
    }

    fn valid_frames() -> Vec<Vec<u8>> {
        vec![
            frame(&[&ETH_V4, &IPV4_SYN_HDR, &TCP_SYN]),
            frame(&[&ETH_V4, &IPV4_PING]),
            frame(&[&ETH_V4, &IPV4_FIRST_FRAG_HDR, &UDP_DNS]),
            frame(&[&ETH_V4, &IPV4_FRAG_HDR, &[0; 8]]),
            frame(&[&ETH_V6, &IPV6_PING]),
            frame(&[&ETH_V6, &IPV6_DSTOPT_HDR, &DSTOPT_PADN, &udp_dns_v6()]),
            tagged(&[(0x88a8, 1), (0x8100, 2)], 0x86dd, &IPV6_PING),
        ]
    }

    fn check_invariants(f: &[u8], m: &PacketMeta) {
        assert!(usize::from(m.l3_off) < f.len());
        assert!(m.l3_off < m.l4_off);
        assert!(usize::from(m.l4_off) <= f.len());
        if m.fragment {
            assert!(!m.l4_valid && m.sport == 0 && m.dport == 0);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn random_bytes_never_panic(f in proptest::collection::vec(any::<u8>(), 0..300), et in prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x8100), any::<u16>()]) {
            let mut f = f;
            if f.len() >= 14 {
                f[12..14].copy_from_slice(&et.to_be_bytes());
            }
            let mut m = PacketMeta::default();
            if parse(&f, &mut m).is_ok() {
                check_invariants(&f, &m);
            }
        }

        #[test]
        fn mutated_valid_frames_never_panic(
            which in 0usize..7,
            muts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
            cut in any::<prop::sample::Index>(),
            do_cut in any::<bool>(),
        ) {
            let mut f = valid_frames().swap_remove(which);
            // Unmutated frames parse.
            prop_assert!(parsed(&f).is_ok());
            // Lie about lengths and other bytes, biased to the header bytes.
            for (i, v) in muts {
                let at = i.index(f.len().min(80));
                f[at] = v;
            }
            if do_cut {
                f.truncate(cut.index(f.len() + 1));
            }
            let mut m = PacketMeta::default();
            if parse(&f, &mut m).is_ok() {
                check_invariants(&f, &m);
            }
            let _ = verify_ipv4_header_checksum(&f, &m);
        }
    }
}
