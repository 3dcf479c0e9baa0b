//! UDP header (RFC 768; IPv6 rules from RFC 8200 8.1).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::ipv4::protocol;
use super::{get_u16, set_u16, Error};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
    pub const PAYLOAD: usize = 8;
}

pub const HEADER_LEN: usize = field::PAYLOAD;

/// A view over a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Checks 8 <= length field <= buffer length.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let p = Self::new_unchecked(buffer);
        let ul = usize::from(p.len());
        if ul < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if ul > len {
            return Err(Error::Truncated);
        }
        Ok(p)
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header + data.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..usize::from(self.len())]
    }

    #[inline]
    fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.len())]
    }

    /// Checksum 0 means the sender computed none, which IPv4 allows (RFC 768).
    #[inline]
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        checksum::transport_sum_v4(self.datagram(), src, dst, protocol::UDP) == 0xffff
    }

    /// Over IPv6 the checksum is mandatory: 0 never verifies (RFC 8200 8.1).
    #[inline]
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        if self.checksum() == 0 {
            return false;
        }
        checksum::transport_sum_v6(self.datagram(), src, dst, protocol::UDP) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, v)
    }

    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, v)
    }

    #[inline]
    pub fn set_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, v)
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, v)
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[field::PAYLOAD..end]
    }

    /// A computed 0 is sent as 0xffff, since 0 means "no checksum" (RFC 768).
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = !checksum::transport_sum_v4(self.datagram(), src, dst, protocol::UDP);
        self.set_checksum(if c == 0 { 0xffff } else { c })
    }

    #[inline]
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let c = !checksum::transport_sum_v6(self.datagram(), src, dst, protocol::UDP);
        self.set_checksum(if c == 0 { 0xffff } else { c })
    }
}

/// RFC 1624 update of a UDP checksum for a changed 16-bit word, keeping the UDP
/// rules: an IPv4 checksum of 0 (none) stays 0, a result of 0 is sent as 0xffff.
#[inline]
pub fn update_checksum_u16(csum: u16, old: u16, new: u16) -> u16 {
    if csum == 0 {
        return 0;
    }
    match checksum::update_u16(csum, old, new) {
        0 => 0xffff,
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC4: Ipv4Addr = Ipv4Addr::new(198, 18, 251, 249);
    const DST4: Ipv4Addr = Ipv4Addr::new(198, 19, 251, 149);

    /// DNS query for example.com A from 198.18.251.249:57585 to 198.19.251.149:53.
    const DNS: [u8; 37] = [
        0xe0, 0xf1, 0x00, 0x35, 0x00, 0x25, 0x1f, 0x8c, 0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x03, 0x63,
        0x6f, 0x6d, 0x00, 0x00, 0x01, 0x00, 0x01,
    ];

    #[test]
    fn parse_dns() {
        let u = UdpPacket::new_checked(&DNS[..]).unwrap();
        assert_eq!(u.src_port(), 57585);
        assert_eq!(u.dst_port(), 53);
        assert_eq!(u.len(), 37);
        assert_eq!(u.checksum(), 0x1f8c);
        assert_eq!(u.payload().len(), 29);
        assert!(u.verify_checksum_v4(SRC4, DST4));
        assert!(!u.verify_checksum_v4(SRC4, Ipv4Addr::new(198, 19, 251, 150)));
    }

    #[test]
    fn same_datagram_over_v6() {
        // The same query from [2001:db8::1] to [2001:db8::53]: checksum 0x477c.
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::53".parse().unwrap();
        let mut b = DNS;
        let mut u = UdpPacket::new_unchecked(&mut b[..]);
        u.fill_checksum_v6(src, dst);
        assert_eq!(u.checksum(), 0x477c);
        assert!(u.verify_checksum_v6(src, dst));
        u.set_checksum(0);
        assert!(
            !u.verify_checksum_v6(src, dst),
            "zero checksum is invalid on IPv6"
        );
    }

    #[test]
    fn zero_checksum_v4_means_none() {
        let mut b = DNS;
        let mut u = UdpPacket::new_unchecked(&mut b[..]);
        u.set_checksum(0);
        assert!(u.verify_checksum_v4(SRC4, DST4));
        assert_eq!(update_checksum_u16(0, 53, 5353), 0);
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Find a payload word that makes the sum 0xffff, so the computed checksum
        // is 0 and must be sent as 0xffff.
        let mut b = [0u8; 10];
        let mut u = UdpPacket::new_unchecked(&mut b[..]);
        u.set_len(10);
        u.fill_checksum_v4(SRC4, DST4);
        let c = u.checksum();
        // Adding `c` as payload moves the sum to exactly -0.
        u.payload_mut().copy_from_slice(&c.to_be_bytes());
        u.fill_checksum_v4(SRC4, DST4);
        assert_eq!(u.checksum(), 0xffff);
        assert!(u.verify_checksum_v4(SRC4, DST4));
    }

    #[test]
    fn incremental_port_rewrite() {
        let mut b = DNS;
        let old = UdpPacket::new_unchecked(&b[..]).checksum();
        let mut u = UdpPacket::new_unchecked(&mut b[..]);
        u.set_src_port(40000);
        let c = update_checksum_u16(old, 57585, 40000);
        u.set_checksum(c);
        assert!(u.verify_checksum_v4(SRC4, DST4));
    }

    #[test]
    fn length_errors() {
        assert_eq!(UdpPacket::new_checked(&DNS[..7]), Err(Error::Truncated));
        assert_eq!(UdpPacket::new_checked(&DNS[..36]), Err(Error::Truncated));
        let mut b = DNS;
        b[5] = 7;
        assert_eq!(UdpPacket::new_checked(&b[..]), Err(Error::Malformed));
        // Longer buffer than the length field (IP padding): payload stops at len.
        let mut v = DNS.to_vec();
        v.push(0xee);
        assert_eq!(UdpPacket::new_checked(&v[..]).unwrap().payload().len(), 29);
    }
}
