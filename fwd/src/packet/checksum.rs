//! The Internet checksum (RFC 1071): one's complement sums over big-endian 16-bit
//! words, pseudo-headers for TCP/UDP/ICMPv6, and RFC 1624 incremental updates.
//!
//! A "sum" here is an unfolded 32-bit partial one's complement sum; chain them by
//! passing one as the `initial` of the next, then [`fold`] and invert (`!`) to get
//! the value that goes in a checksum field. Only the last chunk in such a chain may
//! have an odd length (an odd chunk pads with a zero byte, RFC 1071 4.1).

use std::net::{Ipv4Addr, Ipv6Addr};

/// Adds `data` to the partial sum `initial`.
///
/// Reads 8 bytes per step into a 64-bit accumulator with end-around carry: the
/// one's complement sum of 64-bit words is congruent to the 16-bit one (2^16 - 1
/// divides 2^64 - 1), and it needs a quarter of the additions.
#[inline]
pub fn sum(data: &[u8], initial: u32) -> u32 {
    let mut acc = u64::from(initial);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let (s, carry) = acc.overflowing_add(w);
        // No overflow here: if the add wrapped, `s` is at most 2^64 - 2.
        acc = s + u64::from(carry);
    }
    let mut rest = chunks.remainder();
    let mut tail: u64 = 0;
    if rest.len() >= 4 {
        tail += u64::from(u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]));
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        tail += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let Some(&b) = rest.first() {
        tail += u64::from(b) << 8;
    }
    let (s, carry) = acc.overflowing_add(tail);
    acc = s + u64::from(carry);
    // 64 -> 32 bits, end-around carry twice (the first may carry again).
    let mut s = (acc >> 32) + (acc & 0xffff_ffff);
    s = (s >> 32) + (s & 0xffff_ffff);
    s as u32
}

/// Folds a partial sum to 16 bits with end-around carry. Not inverted: the value
/// stored in a checksum field is `!fold(..)`.
#[inline]
pub fn fold(sum: u32) -> u16 {
    let s = (sum >> 16) + (sum & 0xffff);
    let s = (s >> 16) + (s & 0xffff);
    s as u16
}

/// The checksum field value for `data` alone: `!fold(sum(data, 0))`.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// Partial sum of the IPv4 pseudo-header (RFC 793 3.1, RFC 768): source, destination,
/// zero, protocol, and the transport length.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + u32::from(proto) + u32::from(len)
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 8.1): source, destination, the
/// 32-bit upper-layer length, and the next header value.
#[inline]
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> u32 {
    let mut acc = u32::from(next_header) + (len >> 16) + (len & 0xffff);
    for w in src.segments().iter().chain(dst.segments().iter()) {
        acc += u32::from(*w);
    }
    acc
}

/// Folded sum of a transport segment (`data`, all of it) and its IPv4
/// pseudo-header: 0xffff when the checksum inside verifies; `!` of it (with the
/// field zeroed) is the value to store.
#[inline]
pub fn transport_sum_v4(data: &[u8], src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> u16 {
    fold(sum(
        data,
        pseudo_header_v4(src, dst, proto, data.len() as u16),
    ))
}

/// [`transport_sum_v4`] with the IPv6 pseudo-header.
#[inline]
pub fn transport_sum_v6(data: &[u8], src: Ipv6Addr, dst: Ipv6Addr, next_header: u8) -> u16 {
    fold(sum(
        data,
        pseudo_header_v6(src, dst, next_header, data.len() as u32),
    ))
}

/// RFC 1624 eqn. 3: the checksum after one 16-bit word of the covered data changes
/// from `old` to `new`, HC' = ~(~HC + ~m + m'). Unlike eqn. 2 this never turns a
/// correct checksum into -0 (RFC 1624 section 3 and 4).
#[inline]
pub fn update_u16(csum: u16, old: u16, new: u16) -> u16 {
    let s = u32::from(!csum) + u32::from(!old) + u32::from(new);
    !fold(s)
}

/// [`update_u16`] for an aligned 32-bit field (an IPv4 address, a TCP sequence number).
#[inline]
pub fn update_u32(csum: u16, old: u32, new: u32) -> u16 {
    let s = u32::from(!csum)
        + u32::from(!(old >> 16) as u16)
        + u32::from(!(old as u16))
        + (new >> 16)
        + (new & 0xffff);
    !fold(s)
}

/// [`update_u16`] for an aligned 128-bit field (an IPv6 address, for NAT).
#[inline]
pub fn update_u128(csum: u16, old: u128, new: u128) -> u16 {
    let mut s = u32::from(!csum);
    for i in 0..8 {
        let shift = i * 16;
        s += u32::from(!((old >> shift) as u16)) + u32::from((new >> shift) as u16);
    }
    !fold(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 1071 reference: add 16-bit words one at a time.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let w = if pair.len() == 2 {
                u16::from_be_bytes([pair[0], pair[1]])
            } else {
                u16::from(pair[0]) << 8
            };
            acc += u32::from(w);
            acc = (acc >> 16) + (acc & 0xffff);
        }
        acc as u16
    }

    // An IPv4 header captured from `ping 198.19.251.149` (checksum field 0xb861).
    const IPV4_HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc6, 0x12, 0xfa,
        0x96, 0xc6, 0x12, 0xfb, 0x5c,
    ];

    #[test]
    fn known_ipv4_header() {
        // Verifying a correct header sums to 0xffff; recomputing gives the stored value.
        assert_eq!(fold(sum(&IPV4_HDR, 0)), 0xffff);
        let mut h = IPV4_HDR;
        h[10] = 0;
        h[11] = 0;
        assert_eq!(checksum(&h), 0xb861);
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data, 0)), 0xddf2);
    }

    #[test]
    fn odd_lengths() {
        assert_eq!(fold(sum(&[0xab], 0)), 0xab00);
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56], 0)), 0x1234 + 0x5600);
        assert_eq!(fold(sum(&[], 7)), 7);
    }

    #[test]
    fn rfc1624_section3_example() {
        // HC = 0xdd2f, m = 0x5555 -> m' = 0x3285: eqn. 3 gives 0x0000 (eqn. 2 would
        // give the wrong 0xffff).
        assert_eq!(update_u16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn rfc1624_zero_and_ffff_checksums() {
        // Data summing to 0xffff has checksum 0x0000 (RFC 1624 section 3's case).
        let mut d = [0x12, 0x34, 0x00, 0x00, 0xed, 0xcb];
        assert_eq!(checksum(&d), 0x0000);
        d[2..4].copy_from_slice(&0u16.to_be_bytes());
        // Update from a 0x0000 checksum, to and from 0xffff words.
        for (old, new) in [(0x1234u16, 0x1235u16), (0x1234, 0xffff), (0x1234, 0x0000)] {
            let mut e = d;
            e[0..2].copy_from_slice(&new.to_be_bytes());
            e[2..4].copy_from_slice(&[0, 0]);
            assert_eq!(
                update_u16(0x0000, old, new),
                checksum(&e),
                "{old:#x} -> {new:#x}"
            );
        }
        // A change that brings the sum to 0xffff yields 0x0000, never -0 (0xffff),
        // which eqn. 2 (HC - ~m - m') would produce.
        let e = [0x12, 0x33, 0x00, 0x00, 0xed, 0xcb];
        let c = checksum(&e);
        assert_eq!(c, 0x0001);
        assert_eq!(update_u16(c, 0x1233, 0x1234), 0x0000);
    }

    #[test]
    fn pseudo_headers() {
        let v4 = pseudo_header_v4(
            Ipv4Addr::new(198, 18, 250, 150),
            Ipv4Addr::new(198, 18, 251, 92),
            17,
            0x5f,
        );
        // 0xc612 + 0xfa96 + 0xc612 + 0xfb5c + 17 + 0x5f = 0x3_8286, folded 0x8289.
        assert_eq!(fold(v4), 0x8289);
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let dst: Ipv6Addr = "ff02::1".parse().unwrap();
        // 0xfe80 + 1 + 0xff02 + 1 + 58 + 0x1 + 0x2 = 0x1_fdc1, folded 0xfdc2.
        assert_eq!(fold(pseudo_header_v6(src, dst, 58, 0x1_0002)), 0xfdc2);
    }

    /// Whether data holding its own checksum verifies (sums to -0).
    fn verifies(data: &[u8]) -> bool {
        fold(sum(data, 0)) == 0xffff
    }

    proptest! {
        #[test]
        fn sum_matches_reference(data in proptest::collection::vec(any::<u8>(), 0..200), init in any::<u16>()) {
            let fast = fold(sum(&data, u32::from(init)));
            let slow = reference_sum(&data);
            let expect = fold(u32::from(slow) + u32::from(init));
            // 0x0000 and 0xffff are both zero in one's complement.
            prop_assert!(fast == expect || (fast ^ expect) == 0xffff && (fast == 0 || expect == 0));
        }

        #[test]
        fn incremental_equals_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 4..120),
            word in any::<prop::sample::Index>(),
            new in prop_oneof![Just(0u16), Just(0xffffu16), any::<u16>()],
            zero_all in prop::bool::weighted(0.05),
        ) {
            // Word 0 is the checksum field; the rest is covered data.
            if data.len() % 2 == 1 { data.pop(); }
            if zero_all { for b in data.iter_mut() { *b = 0; } }
            data[0] = 0; data[1] = 0;
            let c = checksum(&data);
            data[0..2].copy_from_slice(&c.to_be_bytes());
            prop_assert!(verifies(&data));

            let words = data.len() / 2 - 1;
            let at = 2 + 2 * word.index(words);
            let old = u16::from_be_bytes([data[at], data[at + 1]]);
            data[at..at + 2].copy_from_slice(&new.to_be_bytes());
            let inc = update_u16(c, old, new);

            data[0] = 0; data[1] = 0;
            let full = checksum(&data);
            let all_zero = data.iter().all(|&b| b == 0);
            // RFC 1624 section 3: eqn. 3 equals recomputation, except when all covered
            // data is zero, where recomputation gives 0xffff and eqn. 3 may give +0.
            if all_zero {
                // Eqn. 3 yields +0 here, which a receiver would reject; it cannot
                // happen for real headers (IPv4 version, pseudo-header protocol are
                // never zero).
                prop_assert!(inc == 0x0000 || inc == 0xffff);
            } else {
                prop_assert_eq!(inc, full);
                data[0..2].copy_from_slice(&inc.to_be_bytes());
                prop_assert!(verifies(&data));
            }
        }

        #[test]
        fn incremental_u32_u128(
            mut data in proptest::collection::vec(any::<u8>(), 40..80),
            new32 in any::<u32>(),
            new128 in any::<u128>(),
        ) {
            // Checksum at [0..2], a u32 field at [4..8], a u128 field at [8..24].
            data[0] = 0; data[1] = 0;
            if data.len() % 2 == 1 { data.pop(); }
            let c = checksum(&data);
            let old32 = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
            let mut old128b = [0u8; 16];
            old128b.copy_from_slice(&data[8..24]);
            let old128 = u128::from_be_bytes(old128b);
            data[4..8].copy_from_slice(&new32.to_be_bytes());
            data[8..24].copy_from_slice(&new128.to_be_bytes());
            let inc = update_u128(update_u32(c, old32, new32), old128, new128);
            let full = checksum(&data);
            prop_assert_eq!(inc, full);
        }
    }
}
