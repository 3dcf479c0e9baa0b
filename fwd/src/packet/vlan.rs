//! IEEE 802.1Q / 802.1ad VLAN tag: the 4 bytes that follow a 0x8100 / 0x88a8 TPID,
//! that is the TCI and the encapsulated EtherType.

use super::{get_u16, set_u16, Error};

mod field {
    pub const TCI: usize = 0;
    pub const ETHERTYPE: usize = 2;
    pub const PAYLOAD: usize = 4;
}

pub const HEADER_LEN: usize = field::PAYLOAD;

/// A view over a VLAN tag (starting at the TCI, after the TPID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        VlanTag { buffer }
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
    pub fn tci(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::TCI)
    }

    /// Priority code point (802.1p), 3 bits.
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator (formerly CFI).
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN identifier, 12 bits.
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// EtherType of what the tag encapsulates (another tag, IPv4, IPv6, ...).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    #[inline]
    pub fn set_tci(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::TCI, v)
    }

    #[inline]
    pub fn set_vid(&mut self, vid: u16) {
        let tci = (self.tci() & 0xf000) | (vid & 0x0fff);
        self.set_tci(tci)
    }

    #[inline]
    pub fn set_pcp(&mut self, pcp: u8) {
        let tci = (self.tci() & 0x1fff) | (u16::from(pcp & 0x7) << 13);
        self.set_tci(tci)
    }

    #[inline]
    pub fn set_ethertype(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::ETHERTYPE, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The tag from a captured 802.1Q frame: PCP 5, DEI 0, VID 100, then IPv4.
    const TAG: [u8; 5] = [0xa0, 0x64, 0x08, 0x00, 0x45];

    #[test]
    fn parse_fields() {
        let t = VlanTag::new_checked(&TAG[..]).unwrap();
        assert_eq!(t.pcp(), 5);
        assert!(!t.dei());
        assert_eq!(t.vid(), 100);
        assert_eq!(t.ethertype(), 0x0800);
        assert_eq!(t.payload(), &[0x45]);
    }

    #[test]
    fn too_short() {
        assert_eq!(VlanTag::new_checked(&TAG[..3]), Err(Error::Truncated));
    }

    #[test]
    fn setters() {
        let mut b = TAG;
        let mut t = VlanTag::new_unchecked(&mut b[..]);
        t.set_vid(4094);
        t.set_pcp(1);
        t.set_ethertype(0x86dd);
        assert_eq!(t.vid(), 4094);
        assert_eq!(t.pcp(), 1);
        assert_eq!(&b[..4], &[0x2f, 0xfe, 0x86, 0xdd]);
    }
}
