//! Zero-copy header views over frame bytes, checksums, and the one-pass parse that
//! produces the [`PacketMeta`] every later stage reads.

pub mod checksum;
pub mod ethernet;
pub mod icmp_error;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod meta;
pub mod parse;
pub mod reject;
pub mod tcp;
pub mod udp;
pub mod vlan;

#[cfg(test)]
pub(crate) mod testdata;

pub use meta::{Family, PacketMeta};
pub use parse::{parse, verify_ipv4_header_checksum, ParseError};

/// Why a header view could not be made over a buffer (`new_checked`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The buffer is shorter than the header, or than a length field says.
    Truncated,
    /// A length field is impossible on its own (e.g. IHL < 5, TCP data offset < 5).
    Malformed,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated header"),
            Error::Malformed => f.write_str("malformed header"),
        }
    }
}

impl std::error::Error for Error {}

/// Reads a big-endian u16 at `at`. Callers have checked the length.
#[inline(always)]
#[allow(dead_code)]
pub(crate) fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
#[allow(dead_code)]
pub(crate) fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
#[allow(dead_code)]
pub(crate) fn set_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
#[allow(dead_code)]
pub(crate) fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
