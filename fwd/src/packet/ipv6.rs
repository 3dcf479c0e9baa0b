//! IPv6 header (RFC 8200 section 3) and the walk over its extension headers
//! (section 4).

use std::net::Ipv6Addr;

use super::{get_u16, get_u32, set_u16, set_u32, Error};

mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
    pub const PAYLOAD: usize = 40;
}

pub const HEADER_LEN: usize = field::PAYLOAD;

/// Next-header values of the extension headers we walk, and the terminators.
pub mod next_header {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const NO_NEXT_HEADER: u8 = 59;
    pub const DEST_OPTS: u8 = 60;
}

/// A view over an IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Checks that the fixed header and `payload_len` bytes fit the buffer.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || HEADER_LEN + usize::from(self.payload_len()) > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW] >> 4
    }

    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (get_u16(self.buffer.as_ref(), field::VER_TC_FLOW) >> 4) as u8
    }

    #[inline]
    pub fn flow_label(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000f_ffff
    }

    #[inline]
    pub fn payload_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    #[inline]
    pub fn src_u128(&self) -> u128 {
        read_u128(&self.buffer.as_ref()[field::SRC])
    }

    #[inline]
    pub fn dst_u128(&self) -> u128 {
        read_u128(&self.buffer.as_ref()[field::DST])
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.src_u128())
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.dst_u128())
    }

    /// The `payload_len` bytes after the fixed header (extension headers included,
    /// link-layer padding excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..field::PAYLOAD + usize::from(self.payload_len())]
    }
}

#[inline]
fn read_u128(b: &[u8]) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(b);
    u128::from_be_bytes(a)
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets version 6, traffic class and flow label at once.
    #[inline]
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let v = (6 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        set_u32(self.buffer.as_mut(), field::VER_TC_FLOW, v)
    }

    #[inline]
    pub fn set_payload_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::PAYLOAD_LEN, v)
    }

    #[inline]
    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = v;
    }

    #[inline]
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets())
    }

    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets())
    }

    /// Forwarding step. IPv6 has no header checksum, so this is one store. The
    /// caller has checked hop limit > 1 (RFC 8200 section 3, RFC 4443 3.3); at 0
    /// nothing changes.
    #[inline]
    pub fn decrement_hop_limit(&mut self) {
        let b = self.buffer.as_mut();
        b[field::HOP_LIMIT] = b[field::HOP_LIMIT].saturating_sub(1);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = field::PAYLOAD + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[field::PAYLOAD..end]
    }
}

/// At most this many extension headers are walked; a packet with more is refused
/// (RFC 8200 does not bound the chain; RFC 7112 and every firewall do).
pub const MAX_EXT_HEADERS: usize = 8;

/// Fields of a fragment header (RFC 8200 4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FragmentInfo {
    /// Offset in 8-byte units.
    pub offset: u16,
    pub more: bool,
    pub ident: u32,
}

/// Result of walking the extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtHeaders {
    /// Upper-layer protocol (TCP, UDP, ICMPv6, ESP, No Next Header, ...). For a
    /// non-first fragment this is the fragment header's next header, as ip6tables
    /// reports it.
    pub proto: u8,
    /// Offset of the upper-layer header from the start of the IPv6 payload.
    pub l4_off: usize,
    /// Number of extension headers walked.
    pub count: u8,
    pub fragment: Option<FragmentInfo>,
}

/// Why an extension-header chain was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtError {
    /// A header runs past the end of the payload.
    Truncated,
    /// More than [`MAX_EXT_HEADERS`].
    TooMany,
    /// Hop-by-hop options not directly after the IPv6 header (RFC 8200 4.1).
    HopByHopNotFirst,
}

/// Walks the extension headers of `payload` (the IPv6 payload), starting with the
/// IPv6 header's `next_header`. Stops at the first header that is not hop-by-hop,
/// routing, fragment, destination options or AH, or after a fragment header with
/// a non-zero offset (what follows is not a header). Every length is checked; the
/// walk is bounded by [`MAX_EXT_HEADERS`].
pub fn walk_ext_headers(first: u8, payload: &[u8]) -> Result<ExtHeaders, ExtError> {
    let mut nh = first;
    let mut off = 0usize;
    let mut out = ExtHeaders::default();
    let mut count = 0usize;
    loop {
        let len = match nh {
            next_header::HOP_BY_HOP | next_header::ROUTING | next_header::DEST_OPTS => {
                if nh == next_header::HOP_BY_HOP && count != 0 {
                    return Err(ExtError::HopByHopNotFirst);
                }
                let h = payload.get(off..off + 2).ok_or(ExtError::Truncated)?;
                (usize::from(h[1]) + 1) * 8
            }
            next_header::AH => {
                // RFC 4302 2.2: Payload Len is in 4-byte units, minus 2.
                let h = payload.get(off..off + 2).ok_or(ExtError::Truncated)?;
                (usize::from(h[1]) + 2) * 4
            }
            next_header::FRAGMENT => 8,
            _ => break,
        };
        if count == MAX_EXT_HEADERS {
            return Err(ExtError::TooMany);
        }
        let h = payload.get(off..off + len).ok_or(ExtError::Truncated)?;
        count += 1;
        let this = nh;
        nh = h[0];
        off += len;
        if this == next_header::FRAGMENT {
            let fo = get_u16(h, 2);
            let frag = FragmentInfo {
                offset: fo >> 3,
                more: fo & 1 != 0,
                ident: get_u32(h, 4),
            };
            out.fragment = Some(frag);
            if frag.offset != 0 {
                break;
            }
        }
    }
    out.proto = nh;
    out.l4_off = off;
    out.count = count as u8;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `ping -6 -c1 -s8 2001:db8::2` from 2001:db8::1: IPv6 + ICMPv6 echo request
    /// (id 0x2a1b, seq 1), hop limit 64.
    pub(crate) const PING6: [u8; 56] = [
        0x60, 0x0a, 0xbc, 0xde, 0x00, 0x10, 0x3a, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x80, 0x00, 0x68, 0x8e, 0x2a,
        0x1b, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    ];

    #[test]
    fn parse_fields() {
        let p = Ipv6Packet::new_checked(&PING6[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0);
        assert_eq!(p.flow_label(), 0xabcde);
        assert_eq!(p.payload_len(), 16);
        assert_eq!(p.next_header(), 58);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_u128(), 0x2001_0db8_0000_0000_0000_0000_0000_0002);
        assert_eq!(p.payload()[0], 0x80);
    }

    #[test]
    fn truncated() {
        assert_eq!(Ipv6Packet::new_checked(&PING6[..39]), Err(Error::Truncated));
        assert_eq!(Ipv6Packet::new_checked(&PING6[..55]), Err(Error::Truncated));
    }

    #[test]
    fn setters() {
        let mut b = PING6;
        let mut p = Ipv6Packet::new_unchecked(&mut b[..]);
        p.set_version_tc_flow(0xb8, 0x12345);
        p.set_payload_len(8);
        p.set_next_header(17);
        p.set_hop_limit(2);
        p.decrement_hop_limit();
        p.set_src_addr("fe80::1".parse().unwrap());
        p.set_dst_addr(Ipv6Addr::LOCALHOST);
        p.payload_mut()[0] = 0;
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload().len(), 8);
        assert_eq!(p.hop_limit(), 1);
        assert_eq!(p.src_u128() >> 112, 0xfe80);
        assert_eq!(p.dst_addr(), Ipv6Addr::LOCALHOST);
        assert_eq!(b[0] >> 4, 6);
    }

    #[test]
    fn no_ext_headers() {
        let e = walk_ext_headers(58, &PING6[40..]).unwrap();
        assert_eq!(
            e,
            ExtHeaders {
                proto: 58,
                l4_off: 0,
                count: 0,
                fragment: None
            }
        );
    }

    #[test]
    fn hbh_dst_frag_chain() {
        // MLDv2 report style hop-by-hop (Router Alert, PadN), then destination
        // options (Pad1 x6), then a first fragment (M=1, id 0xdeadbeef), then UDP.
        let payload = [
            60, 0, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00, // HBH: RA + PadN
            44, 0, 0, 0, 0, 0, 0, 0, // DST opts: Pad1s
            17, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef, // fragment, offset 0, M=1
            0x30, 0x39, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00, // UDP
        ];
        let e = walk_ext_headers(0, &payload).unwrap();
        assert_eq!(e.proto, 17);
        assert_eq!(e.l4_off, 24);
        assert_eq!(e.count, 3);
        assert_eq!(
            e.fragment,
            Some(FragmentInfo {
                offset: 0,
                more: true,
                ident: 0xdeadbeef
            })
        );
    }

    #[test]
    fn non_first_fragment_stops() {
        // Fragment offset 185 (1480 bytes), M=0: what follows is data, not a header.
        let payload = [6, 0, 0x05, 0xc8, 0, 0, 0, 7, 0x2b, 0, 0, 0];
        let e = walk_ext_headers(44, &payload).unwrap();
        assert_eq!(e.proto, 6);
        assert_eq!(e.l4_off, 8);
        assert_eq!(
            e.fragment,
            Some(FragmentInfo {
                offset: 185,
                more: false,
                ident: 7
            })
        );
    }

    #[test]
    fn routing_and_ah() {
        // Routing header type 4 (SRH) with hdr_ext_len 2 (24 bytes), then AH with
        // payload len 4 ((4+2)*4 = 24 bytes), then TCP.
        let mut payload = vec![0u8; 48 + 20];
        payload[0] = 51;
        payload[1] = 2;
        payload[2] = 4;
        payload[24] = 6;
        payload[25] = 4;
        let e = walk_ext_headers(43, &payload).unwrap();
        assert_eq!((e.proto, e.l4_off, e.count), (6, 48, 2));
    }

    #[test]
    fn errors() {
        // Destination options claiming 16 bytes in a 8-byte payload.
        assert_eq!(
            walk_ext_headers(60, &[17, 1, 0, 0, 0, 0, 0, 0]),
            Err(ExtError::Truncated)
        );
        assert_eq!(walk_ext_headers(60, &[17]), Err(ExtError::Truncated));
        assert_eq!(
            walk_ext_headers(44, &[17, 0, 0, 0]),
            Err(ExtError::Truncated)
        );
        // HBH after a destination options header.
        assert_eq!(
            walk_ext_headers(60, &[0, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 0]),
            Err(ExtError::HopByHopNotFirst)
        );
        // Nine destination options headers: refused.
        let mut chain = vec![0u8; 9 * 8 + 8];
        for i in 0..9 {
            chain[i * 8] = 60;
        }
        assert_eq!(walk_ext_headers(60, &chain), Err(ExtError::TooMany));
        // Eight are fine.
        chain[7 * 8] = 17;
        let e = walk_ext_headers(60, &chain).unwrap();
        assert_eq!((e.proto, e.count, e.l4_off), (17, 8, 64));
    }

    #[test]
    fn no_next_header_and_esp_stop() {
        assert_eq!(walk_ext_headers(59, &[]).unwrap().proto, 59);
        let e = walk_ext_headers(60, &[50, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]).unwrap();
        assert_eq!((e.proto, e.l4_off), (50, 8));
    }

    proptest! {
        #[test]
        fn walk_never_panics(first in any::<u8>(), payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(e) = walk_ext_headers(first, &payload) {
                prop_assert!(e.l4_off <= payload.len());
                prop_assert!(usize::from(e.count) <= MAX_EXT_HEADERS);
            }
        }
    }
}
