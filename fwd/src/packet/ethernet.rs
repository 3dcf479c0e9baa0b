//! Ethernet II frame header (IEEE 802.3 with an EtherType): dst, src, type.

use super::{get_u16, set_u16, Error};

/// EtherType values the dataplane looks at.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86dd;
    /// 802.1ad service tag (outer tag of QinQ).
    pub const QINQ: u16 = 0x88a8;
    /// Pre-standard QinQ outer tag, still sent by some switches (Linux accepts it too).
    pub const QINQ_OLD: u16 = 0x9100;
}

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: usize = 14;
}

pub const HEADER_LEN: usize = field::PAYLOAD;

/// A view over an Ethernet II frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking it; getters panic if it is shorter than 14 bytes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
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
    pub fn dst_addr(&self) -> [u8; 6] {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        a
    }

    #[inline]
    pub fn src_addr(&self) -> [u8; 6] {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        a
    }

    #[inline]
    pub fn ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// Group bit of the destination: broadcast or multicast.
    #[inline]
    pub fn dst_is_multicast(&self) -> bool {
        self.buffer.as_ref()[0] & 0x01 != 0
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    #[inline]
    pub fn set_dst_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a);
    }

    #[inline]
    pub fn set_src_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a);
    }

    #[inline]
    pub fn set_ethertype(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::ETHERTYPE, v)
    }

    /// Swaps source and destination MACs in place (for replies built from a request).
    #[inline]
    pub fn swap_addrs(&mut self) {
        let (dst, rest) = self.buffer.as_mut().split_at_mut(6);
        dst.swap_with_slice(&mut rest[..6]);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Start of an ARP request captured on a LAN: ff:ff:ff:ff:ff:ff <- 52:54:00:12:34:56.
    const ARP_FRAME: [u8; 16] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06, 0x00,
        0x01,
    ];

    #[test]
    fn parse_fields() {
        let f = EthernetFrame::new_checked(&ARP_FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), [0xff; 6]);
        assert_eq!(f.src_addr(), [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert_eq!(f.ethertype(), ethertype::ARP);
        assert!(f.dst_is_multicast());
        assert_eq!(f.payload(), &[0x00, 0x01]);
    }

    #[test]
    fn too_short() {
        assert_eq!(
            EthernetFrame::new_checked(&ARP_FRAME[..13]),
            Err(Error::Truncated)
        );
        assert!(EthernetFrame::new_checked(&ARP_FRAME[..14]).is_ok());
    }

    #[test]
    fn setters_and_swap() {
        let mut buf = ARP_FRAME;
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        f.swap_addrs();
        assert_eq!(f.src_addr(), [0xff; 6]);
        assert_eq!(f.dst_addr(), [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        f.set_src_addr([2, 0, 0, 0, 0, 1]);
        f.set_ethertype(ethertype::IPV6);
        f.payload_mut()[0] = 0x60;
        assert_eq!(&buf[6..16], &[2, 0, 0, 0, 0, 1, 0x86, 0xdd, 0x60, 0x01]);
    }
}
