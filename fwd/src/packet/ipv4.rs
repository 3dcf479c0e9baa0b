//! IPv4 header (RFC 791).

use std::net::Ipv4Addr;

use super::checksum;
use super::{get_u16, get_u32, set_u16, set_u32, Error};

mod field {
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
    pub const OPTIONS: usize = 20;
}

/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = field::OPTIONS;

/// IP protocol numbers (IPPROTO_*).
pub mod protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view over an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checking it; getters panic on a short buffer.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Checks that the header, its options and `total_len` fit the buffer and that
    /// IHL >= 5 and total_len >= IHL * 4. Does not look at the version or checksum.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hl = self.header_len();
        if hl < MIN_HEADER_LEN {
            return Err(Error::Malformed);
        }
        if hl > len {
            return Err(Error::Truncated);
        }
        let tl = usize::from(self.total_len());
        if tl < hl {
            return Err(Error::Malformed);
        }
        if tl > len {
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
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    #[inline]
    pub fn dscp(&self) -> u8 {
        self.dscp_ecn() >> 2
    }

    #[inline]
    pub fn ecn(&self) -> u8 {
        self.dscp_ecn() & 0x3
    }

    #[inline]
    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::TOTAL_LEN)
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT)
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in 8-byte units, as on the wire.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK
    }

    /// MF set or offset non-zero.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn src_u32(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SRC)
    }

    #[inline]
    pub fn dst_u32(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::DST)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src_u32())
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dst_u32())
    }

    /// Header checksum is correct (the header sums to -0).
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        let hdr = &self.buffer.as_ref()[..self.header_len()];
        checksum::fold(checksum::sum(hdr, 0)) == 0xffff
    }

    /// The option bytes between the fixed header and the payload.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    /// The bytes after the header up to `total_len` (link-layer padding excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version and header length (bytes, a multiple of 4).
    #[inline]
    pub fn set_version_header_len(&mut self, version: u8, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = (version << 4) | ((header_len / 4) as u8 & 0x0f);
    }

    #[inline]
    pub fn set_dscp_ecn(&mut self, v: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = v;
    }

    #[inline]
    pub fn set_total_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::TOTAL_LEN, v)
    }

    #[inline]
    pub fn set_ident(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::IDENT, v)
    }

    /// Sets DF, MF and the offset (8-byte units) at once.
    #[inline]
    pub fn set_flags_frag_offset(&mut self, df: bool, mf: bool, offset: u16) {
        let v = (if df { FLAG_DF } else { 0 })
            | (if mf { FLAG_MF } else { 0 })
            | (offset & OFFSET_MASK);
        set_u16(self.buffer.as_mut(), field::FLG_OFF, v)
    }

    #[inline]
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    #[inline]
    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, v)
    }

    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        set_u32(self.buffer.as_mut(), field::SRC, u32::from(a))
    }

    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        set_u32(self.buffer.as_mut(), field::DST, u32::from(a))
    }

    /// Computes and stores the header checksum.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = checksum::checksum(&self.buffer.as_ref()[..hl]);
        self.set_checksum(c)
    }

    /// Forwarding step: TTL - 1 with the checksum updated incrementally (RFC 1624
    /// eqn. 3 over the TTL/protocol word), so a received bad checksum stays bad as
    /// RFC 1812 5.3.1 wants. The caller has already checked TTL > 1 (RFC 1812
    /// 5.3.1: a router answers TTL <= 1 with Time Exceeded); at TTL 0 nothing changes.
    #[inline]
    pub fn decrement_ttl(&mut self) {
        let b = self.buffer.as_mut();
        let ttl = b[field::TTL];
        if ttl == 0 {
            return;
        }
        let old = get_u16(b, field::TTL);
        let new = old - 0x0100;
        b[field::TTL] = ttl - 1;
        let c = checksum::update_u16(get_u16(b, field::CHECKSUM), old, new);
        set_u16(b, field::CHECKSUM, c);
    }

    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[field::OPTIONS..hl]
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        let tl = usize::from(self.total_len());
        &mut self.buffer.as_mut()[hl..tl]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `ping -c1 -s16 8.8.8.8` from 198.18.251.249: IPv4 + ICMP echo request
    /// (ident 0x8f3a, DF, TTL 64, checksum 0xd97a).
    pub(crate) const PING: [u8; 44] = [
        0x45, 0x00, 0x00, 0x2c, 0x8f, 0x3a, 0x40, 0x00, 0x40, 0x01, 0xd9, 0x7a, 0xc6, 0x12, 0xfb,
        0xf9, 0x08, 0x08, 0x08, 0x08, 0x08, 0x00, 0x22, 0xf8, 0x1c, 0x46, 0x00, 0x01, 0x10, 0x11,
        0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
    ];

    #[test]
    fn parse_fields() {
        let p = Ipv4Packet::new_checked(&PING[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.dscp_ecn(), 0);
        assert_eq!(p.total_len(), 44);
        assert_eq!(p.ident(), 0x8f3a);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), protocol::ICMP);
        assert_eq!(p.checksum(), 0xd97a);
        assert_eq!(p.src_addr(), Ipv4Addr::new(198, 18, 251, 249));
        assert_eq!(p.dst_u32(), 0x0808_0808);
        assert!(p.verify_checksum());
        assert!(p.options().is_empty());
        assert_eq!(p.payload().len(), 24);
        assert_eq!(p.payload()[0], 8);
    }

    #[test]
    fn payload_excludes_ethernet_padding() {
        let mut b = PING.to_vec();
        b.extend_from_slice(&[0xee; 16]);
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload(), &PING[20..]);
    }

    #[test]
    fn length_errors() {
        assert_eq!(Ipv4Packet::new_checked(&PING[..19]), Err(Error::Truncated));
        // total_len 44 but only 43 bytes.
        assert_eq!(Ipv4Packet::new_checked(&PING[..43]), Err(Error::Truncated));
        let mut b = PING;
        b[0] = 0x44; // IHL 4
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(Error::Malformed));
        let mut b = PING;
        b[0] = 0x4f; // IHL 15 = 60 bytes > 44
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(Error::Truncated));
        let mut b = PING;
        b[3] = 19; // total_len < header
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(Error::Malformed));
    }

    #[test]
    fn options_router_alert() {
        // IGMPv2 report with the Router Alert option (RFC 2113), IHL 6, as Linux sends it.
        let mut b = [
            0x46, 0xc0, 0x00, 0x20, 0x00, 0x00, 0x40, 0x00, 0x01, 0x02, 0x00, 0x00, 0xc6, 0x12,
            0xfb, 0xf9, 0xe0, 0x00, 0x00, 0xfb, 0x94, 0x04, 0x00, 0x00, 0x16, 0x00, 0x09, 0x04,
            0xe0, 0x00, 0x00, 0xfb,
        ];
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(p.payload().len(), 8);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.dscp(), 0x30);
    }

    #[test]
    fn setters_roundtrip() {
        let mut b = [0u8; 28];
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_version_header_len(4, 20);
        p.set_dscp_ecn(0xb8);
        p.set_total_len(28);
        p.set_ident(0x1234);
        p.set_flags_frag_offset(false, true, 185);
        p.set_ttl(3);
        p.set_protocol(protocol::UDP);
        p.set_src_addr(Ipv4Addr::new(198, 18, 67, 238));
        p.set_dst_addr(Ipv4Addr::new(198, 18, 67, 239));
        p.fill_checksum();
        assert!(p.verify_checksum());
        p.payload_mut()[0] = 0xaa;
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.more_frags() && !p.dont_frag());
        assert_eq!(p.frag_offset(), 185);
        assert_eq!(p.ecn(), 0);
        assert_eq!(p.dscp(), 46);
        assert_eq!(b[20], 0xaa);
    }

    #[test]
    fn decrement_ttl_known() {
        let mut b = PING;
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.decrement_ttl();
        assert_eq!(p.ttl(), 63);
        // Full recompute agrees.
        assert_eq!(p.checksum(), 0xda7a);
        assert!(p.verify_checksum());
        let mut z = PING;
        z[8] = 0;
        let before = z;
        Ipv4Packet::new_unchecked(&mut z[..]).decrement_ttl();
        assert_eq!(z, before);
    }

    proptest! {
        #[test]
        fn decrement_ttl_matches_recompute(hdr in proptest::collection::vec(any::<u8>(), 20), ttl in 1u8..=255) {
            let mut b = hdr;
            b[0] = 0x45;
            b[8] = ttl;
            let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
            p.fill_checksum();
            p.decrement_ttl();
            let inc = p.checksum();
            p.fill_checksum();
            prop_assert_eq!(inc, p.checksum());
            prop_assert_eq!(p.ttl(), ttl - 1);
        }
    }
}
