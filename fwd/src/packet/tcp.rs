//! TCP header (RFC 9293 section 3.1).
//!
//! The view's buffer is the whole segment (header + data, as bounded by the IP
//! length): checksums cover all of it.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::ipv4::protocol;
use super::{get_u16, get_u32, set_u16, set_u32, Error};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
    pub const OPTIONS: usize = 20;
}

pub const MIN_HEADER_LEN: usize = field::OPTIONS;

/// TCP flag bits in the flags byte (byte 13).
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// A view over a TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Checks 20 bytes are there, data offset >= 5 and the options fit.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let len = buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let p = Self::new_unchecked(buffer);
        let hl = p.header_len();
        if hl < MIN_HEADER_LEN {
            return Err(Error::Malformed);
        }
        if hl > len {
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

    #[inline]
    pub fn seq_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEQ)
    }

    #[inline]
    pub fn ack_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::ACK)
    }

    /// Header length in bytes (data offset * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The flags byte (see [`flags`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    #[inline]
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }

    #[inline]
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }

    #[inline]
    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }

    #[inline]
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }

    #[inline]
    pub fn window_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::WINDOW)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn urgent_at(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::URGENT)
    }

    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    #[inline]
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        checksum::transport_sum_v4(self.buffer.as_ref(), src, dst, protocol::TCP) == 0xffff
    }

    #[inline]
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        checksum::transport_sum_v6(self.buffer.as_ref(), src, dst, protocol::TCP) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, v)
    }

    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, v)
    }

    #[inline]
    pub fn set_seq_number(&mut self, v: u32) {
        set_u32(self.buffer.as_mut(), field::SEQ, v)
    }

    #[inline]
    pub fn set_ack_number(&mut self, v: u32) {
        set_u32(self.buffer.as_mut(), field::ACK, v)
    }

    /// Sets the data offset from a header length in bytes (multiple of 4), clearing
    /// the reserved bits.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::DATA_OFF] = ((len / 4) as u8) << 4;
    }

    #[inline]
    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS] = v;
    }

    #[inline]
    pub fn set_window_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::WINDOW, v)
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, v)
    }

    #[inline]
    pub fn set_urgent_at(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::URGENT, v)
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }

    #[inline]
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = !checksum::transport_sum_v4(self.buffer.as_ref(), src, dst, protocol::TCP);
        self.set_checksum(c)
    }

    #[inline]
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let c = !checksum::transport_sum_v6(self.buffer.as_ref(), src, dst, protocol::TCP);
        self.set_checksum(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC4: Ipv4Addr = Ipv4Addr::new(198, 18, 251, 249);
    const DST4: Ipv4Addr = Ipv4Addr::new(93, 184, 216, 34);

    /// A Linux SYN to 93.184.216.34:443: MSS 1460, SACK-permitted, timestamps, NOP,
    /// window scale 7.
    const SYN: [u8; 40] = [
        0xd4, 0x31, 0x01, 0xbb, 0x6b, 0x8b, 0x45, 0x67, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa,
        0xf0, 0x65, 0x9c, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x12, 0x34,
        0x56, 0x78, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    /// SYN-ACK from [2001:db8::53]:443 to [2001:db8::1]:54321, no options.
    const SYNACK6: [u8; 20] = [
        0x01, 0xbb, 0xd4, 0x31, 0x11, 0x11, 0x11, 0x11, 0x6b, 0x8b, 0x45, 0x68, 0x50, 0x12, 0xff,
        0xff, 0xab, 0x0a, 0x00, 0x00,
    ];

    #[test]
    fn parse_syn() {
        let t = TcpPacket::new_checked(&SYN[..]).unwrap();
        assert_eq!(t.src_port(), 54321);
        assert_eq!(t.dst_port(), 443);
        assert_eq!(t.seq_number(), 0x6b8b4567);
        assert_eq!(t.ack_number(), 0);
        assert_eq!(t.header_len(), 40);
        assert_eq!(t.flags(), flags::SYN);
        assert!(t.syn() && !t.ack() && !t.fin() && !t.rst());
        assert_eq!(t.window_len(), 64240);
        assert_eq!(t.checksum(), 0x659c);
        assert_eq!(t.urgent_at(), 0);
        assert_eq!(&t.options()[..4], &[2, 4, 0x05, 0xb4]);
        assert!(t.payload().is_empty());
        assert!(t.verify_checksum_v4(SRC4, DST4));
        assert!(!t.verify_checksum_v4(SRC4, Ipv4Addr::new(93, 184, 216, 35)));
    }

    #[test]
    fn v6_checksum() {
        let src: Ipv6Addr = "2001:db8::53".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let t = TcpPacket::new_checked(&SYNACK6[..]).unwrap();
        assert_eq!(t.flags(), flags::SYN | flags::ACK);
        assert!(t.verify_checksum_v6(src, dst));
        let mut b = SYNACK6;
        let mut t = TcpPacket::new_unchecked(&mut b[..]);
        t.set_checksum(0xdead);
        assert!(!t.verify_checksum_v6(src, dst));
        t.fill_checksum_v6(src, dst);
        assert_eq!(b, SYNACK6);
    }

    #[test]
    fn build_and_fill() {
        let mut b = [0u8; 24];
        let mut t = TcpPacket::new_unchecked(&mut b[..]);
        t.set_src_port(1);
        t.set_dst_port(2);
        t.set_seq_number(3);
        t.set_ack_number(4);
        t.set_header_len(20);
        t.set_flags(flags::RST | flags::ACK);
        t.set_window_len(0);
        t.set_urgent_at(0);
        t.payload_mut().copy_from_slice(b"data");
        t.fill_checksum_v4(SRC4, DST4);
        let t = TcpPacket::new_checked(&b[..]).unwrap();
        assert!(t.verify_checksum_v4(SRC4, DST4));
        assert_eq!(t.payload(), b"data");
        assert!(t.rst() && t.ack());
    }

    #[test]
    fn length_errors() {
        assert_eq!(TcpPacket::new_checked(&SYN[..19]), Err(Error::Truncated));
        // Data offset 10 (40 bytes) but 39 bytes present.
        assert_eq!(TcpPacket::new_checked(&SYN[..39]), Err(Error::Truncated));
        let mut b = SYN;
        b[12] = 0x40; // data offset 4
        assert_eq!(TcpPacket::new_checked(&b[..]), Err(Error::Malformed));
    }
}
