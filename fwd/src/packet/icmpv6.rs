//! ICMPv6 (RFC 4443): type, code, checksum over the IPv6 pseudo-header, the
//! 4-byte rest of header.

use std::net::Ipv6Addr;

use super::checksum;
use super::ipv4::protocol;
use super::{get_u16, get_u32, set_u16, set_u32, Error};

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: usize = 4;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const PAYLOAD: usize = 8;
}

pub const HEADER_LEN: usize = field::PAYLOAD;

/// Message types (RFC 4443 2.1, RFC 4861).
pub mod msg_type {
    pub const DEST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAMETER_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    pub const REDIRECT: u8 = 137;
}

/// Destination Unreachable codes (RFC 4443 3.1).
pub mod unreach_code {
    pub const NO_ROUTE: u8 = 0;
    pub const ADMIN_PROHIBITED: u8 = 1;
    pub const ADDR_UNREACHABLE: u8 = 3;
    pub const PORT_UNREACHABLE: u8 = 4;
    pub const REJECT_ROUTE: u8 = 6;
}

/// Error messages have the high bit of the type clear (RFC 4443 2.1).
#[inline]
pub fn is_error(t: u8) -> bool {
    t & 0x80 == 0
}

/// A view over an ICMPv6 message (header and body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Bytes 4..8: echo id/seq, MTU (Packet Too Big), pointer (Parameter Problem).
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::REST)
    }

    #[inline]
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }

    /// RFC 4443 2.3: the checksum covers the pseudo-header and the whole message.
    #[inline]
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        checksum::transport_sum_v6(self.buffer.as_ref(), src, dst, protocol::ICMPV6) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    #[inline]
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }

    #[inline]
    pub fn set_msg_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, v)
    }

    #[inline]
    pub fn set_rest_of_header(&mut self, v: u32) {
        set_u32(self.buffer.as_mut(), field::REST, v)
    }

    #[inline]
    pub fn set_echo_ident(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_IDENT, v)
    }

    #[inline]
    pub fn set_echo_seq_no(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_SEQ, v)
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }

    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let c = !checksum::transport_sum_v6(self.buffer.as_ref(), src, dst, protocol::ICMPV6);
        self.set_checksum(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ICMPv6 part of `ping -6 -s8 2001:db8::2` from 2001:db8::1 (see ipv6.rs).
    const ECHO6: [u8; 16] = [
        0x80, 0x00, 0x68, 0x8e, 0x2a, 0x1b, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67,
        0x68,
    ];

    fn addrs() -> (Ipv6Addr, Ipv6Addr) {
        (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        )
    }

    #[test]
    fn parse_echo() {
        let (s, d) = addrs();
        let p = Icmpv6Packet::new_checked(&ECHO6[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.checksum(), 0x688e);
        assert_eq!(p.echo_ident(), 0x2a1b);
        assert_eq!(p.echo_seq_no(), 1);
        assert_eq!(p.payload(), b"abcdefgh");
        assert!(p.verify_checksum(s, d));
        // The pseudo-header is covered: other addresses fail.
        assert!(!p.verify_checksum(d, "2001:db8::3".parse().unwrap()));
    }

    #[test]
    fn echo_reply_in_place() {
        let (s, d) = addrs();
        let mut b = ECHO6;
        let mut p = Icmpv6Packet::new_unchecked(&mut b[..]);
        p.set_msg_type(msg_type::ECHO_REPLY);
        p.set_msg_code(0);
        p.fill_checksum(d, s);
        assert!(p.verify_checksum(d, s));
        // Type 128 -> 129 moves the sum by 0x0100: checksum drops by 0x0100.
        assert_eq!(p.checksum(), 0x678e);
        p.set_echo_ident(1);
        p.set_echo_seq_no(2);
        assert_eq!(p.rest_of_header(), 0x0001_0002);
        p.set_rest_of_header(1280);
        p.payload_mut()[0] = 0;
        assert_eq!(p.echo_seq_no(), 1280);
    }

    #[test]
    fn too_short_and_error_types() {
        assert_eq!(
            Icmpv6Packet::new_checked(&ECHO6[..7]),
            Err(Error::Truncated)
        );
        assert!(is_error(msg_type::PACKET_TOO_BIG));
        assert!(!is_error(msg_type::NEIGHBOR_SOLICIT));
    }
}
