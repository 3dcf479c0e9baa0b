//! The conntrack tuple (struct nf_conntrack_tuple): what identifies one direction of
//! a flow, how it inverts into the other direction, how it hashes, and how it is
//! read from a frame, including the header quoted inside an ICMP error.

use crate::packet::ipv4::protocol;
use crate::packet::ipv6::walk_ext_headers;
use crate::packet::meta::{Family, PacketMeta};
use crate::packet::{checksum, get_u16};

/// One direction of a flow. Addresses are `u128` like [`PacketMeta`] (IPv4 in the
/// low 32 bits).
///
/// ICMP/ICMPv6 queries follow Linux (icmp_pkt_to_tuple): `sport` is the echo
/// identifier in *both* directions and `dport` is `type << 8 | code`, so an echo
/// request and the reply to it differ only by type and inverting swaps the
/// addresses and maps request↔reply (icmp_invert_tuple). Protocols without ports
/// (GRE, ESP, ...) have both ports 0, like nf_conntrack_proto_generic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: u128,
    pub dst: u128,
    pub sport: u16,
    pub dport: u16,
    pub zone: u16,
    pub proto: u8,
    pub family: Family,
}

/// Which tracker handles a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum L4 {
    Tcp,
    Udp,
    /// ICMP/ICMPv6 query (echo and the other request/reply pairs).
    IcmpQuery,
    Generic,
}

impl L4 {
    #[inline]
    pub(crate) fn of(family: Family, proto: u8) -> L4 {
        match (proto, family) {
            (protocol::TCP, _) => L4::Tcp,
            (protocol::UDP, _) => L4::Udp,
            (protocol::ICMP, Family::V4) | (protocol::ICMPV6, Family::V6) => L4::IcmpQuery,
            _ => L4::Generic,
        }
    }
}

/// icmp_invert_tuple's invmap: the type the other side answers with. None for
/// types that have no reply (and so cannot be tracked).
#[inline]
pub(crate) fn icmp_reply_type(family: Family, t: u8) -> Option<u8> {
    match family {
        Family::V4 => match t {
            8 => Some(0),
            0 => Some(8),
            13 => Some(14),
            14 => Some(13),
            15 => Some(16),
            16 => Some(15),
            17 => Some(18),
            18 => Some(17),
            _ => None,
        },
        Family::V6 => match t {
            128 => Some(129),
            129 => Some(128),
            139 => Some(140),
            140 => Some(139),
            _ => None,
        },
    }
}

/// Query types that may start an entry (icmp_new's `valid_new`, icmpv6_new's
/// `valid_new`): requests, never replies.
#[inline]
pub(crate) fn icmp_valid_new(family: Family, t: u8) -> bool {
    match family {
        Family::V4 => matches!(t, 8 | 13 | 15 | 17),
        Family::V6 => matches!(t, 128 | 139),
    }
}

/// ICMP errors conntrack relates to a flow (icmp_is_err: dest unreachable, source
/// quench, redirect, time exceeded, parameter problem; ICMPv6: every type below
/// 128, ICMPV6_INFOMSG_MASK clear).
#[inline]
pub(crate) fn icmp_is_error(family: Family, t: u8) -> bool {
    match family {
        Family::V4 => matches!(t, 3 | 4 | 5 | 11 | 12),
        Family::V6 => t < 128,
    }
}

/// ICMPv6 types Linux never tracks (nf_conntrack_proto_icmpv6.c `noct_valid_new`:
/// MLD and neighbour discovery, 130..=143 minus redirect's neighbours): UNTRACKED.
#[inline]
fn icmpv6_noct(t: u8) -> bool {
    matches!(t, 130..=136 | 141..=143)
}

impl FlowKey {
    /// The tuple of the other direction when nothing is translated
    /// (nf_ct_invert_tuple). None for an ICMP type without a reply.
    #[inline]
    pub fn invert(&self) -> Option<FlowKey> {
        let mut t = FlowKey {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            ..*self
        };
        if L4::of(self.family, self.proto) == L4::IcmpQuery {
            let ty = icmp_reply_type(self.family, (self.dport >> 8) as u8)?;
            t.sport = self.sport;
            t.dport = u16::from(ty) << 8 | (self.dport & 0xff);
        }
        Some(t)
    }

    /// Keyed hash. Three 64×64→128 folded multiplies (the foldhash/ahash mixer) over
    /// the five words of the key: a few ns, and the per-table seed keeps a sender
    /// from choosing tuples that all land in one probe run.
    #[inline]
    pub fn hash(&self, seed: u64) -> u64 {
        #[inline(always)]
        fn mix(a: u64, b: u64) -> u64 {
            let r = u128::from(a) * u128::from(b);
            (r as u64) ^ ((r >> 64) as u64)
        }
        const K: [u64; 5] = [
            0x243f_6a88_85a3_08d3,
            0x1319_8a2e_0370_7344,
            0xa409_3822_299f_31d0,
            0x082e_fa98_ec4e_6c89,
            0x4528_21e6_38d0_1377,
        ];
        let rest = u64::from(self.sport)
            | u64::from(self.dport) << 16
            | u64::from(self.zone) << 32
            | u64::from(self.proto) << 48
            | (self.family as u64) << 56;
        let a = mix(
            self.src as u64 ^ seed ^ K[0],
            (self.src >> 64) as u64 ^ K[1],
        );
        let b = mix(self.dst as u64 ^ K[2], (self.dst >> 64) as u64 ^ seed);
        let c = mix(rest ^ K[3], seed ^ K[4]);
        mix(a ^ c, b ^ K[0]) ^ a
    }
}

/// What a frame is, for conntrack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Extracted {
    /// A packet of a flow: its tuple as seen (original or reply direction).
    Flow(FlowKey, L4),
    /// An ICMP error; `inner` is the tuple of the quoted packet as it was sent.
    IcmpError {
        inner: FlowKey,
    },
    Untracked,
    Invalid,
}

/// Reads the tuple of `frame` (parsed into `meta`). Non-first fragments and
/// truncated transport headers are INVALID: Linux reassembles before conntrack
/// (nf_defrag_ipv4/ipv6), we cannot, so only unfragmented packets and first
/// fragments are tracked.
#[inline]
pub(crate) fn extract(frame: &[u8], meta: &PacketMeta, zone: u16) -> Extracted {
    let l4 = L4::of(meta.family, meta.proto);
    let mut key = FlowKey {
        src: meta.src,
        dst: meta.dst,
        sport: 0,
        dport: 0,
        zone,
        proto: meta.proto,
        family: meta.family,
    };
    match l4 {
        L4::Generic => {
            if meta.fragment {
                return Extracted::Invalid;
            }
        }
        L4::Tcp | L4::Udp => {
            if !meta.l4_valid {
                return Extracted::Invalid;
            }
            key.sport = meta.sport;
            key.dport = meta.dport;
        }
        L4::IcmpQuery => {
            if !meta.l4_valid {
                return Extracted::Invalid;
            }
            let t = meta.icmp_type;
            if icmp_is_error(meta.family, t) {
                return icmp_error_inner(frame, meta, zone);
            }
            if meta.family == Family::V6 && icmpv6_noct(t) {
                return Extracted::Untracked;
            }
            let off = usize::from(meta.l4_off);
            key.sport = get_u16(frame, off + 4);
            key.dport = u16::from(t) << 8 | u16::from(meta.icmp_code);
        }
    }
    Extracted::Flow(key, l4)
}

/// End of the IP packet in the frame (link padding excluded).
#[inline]
pub(crate) fn ip_end(frame: &[u8], meta: &PacketMeta) -> usize {
    let l3 = usize::from(meta.l3_off);
    let end = match meta.family {
        Family::V4 => l3 + usize::from(get_u16(frame, l3 + 2)),
        Family::V6 => l3 + 40 + usize::from(get_u16(frame, l3 + 4)),
    };
    end.min(frame.len())
}

/// True when the ICMP/ICMPv6 checksum of the message at `meta.l4_off` verifies
/// (nf_ip_checksum / nf_ip6_checksum, which Linux runs on errors before relating
/// or translating them).
pub(crate) fn icmp_checksum_ok(frame: &[u8], meta: &PacketMeta) -> bool {
    let l4 = usize::from(meta.l4_off);
    let end = ip_end(frame, meta);
    if l4 + 8 > end {
        return false;
    }
    let msg = &frame[l4..end];
    match meta.family {
        Family::V4 => checksum::fold(checksum::sum(msg, 0)) == 0xffff,
        Family::V6 => {
            let l3 = usize::from(meta.l3_off);
            let ph = pseudo_v6(frame, l3, msg.len() as u32);
            checksum::fold(checksum::sum(msg, ph)) == 0xffff
        }
    }
}

/// Partial sum of the IPv6 pseudo-header of the packet at `l3` for an ICMPv6
/// message of `len` bytes.
pub(crate) fn pseudo_v6(frame: &[u8], l3: usize, len: u32) -> u32 {
    let mut s = checksum::sum(&frame[l3 + 8..l3 + 40], 0);
    s = checksum::sum(&len.to_be_bytes(), s);
    checksum::sum(&[0, 0, 0, protocol::ICMPV6], s)
}

/// Where the quoted packet of an ICMP error sits, and its tuple
/// (icmp_error_message / icmpv6_error_message: the inner IP header and the first
/// 8 bytes of its transport header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Inner {
    pub l3: usize,
    pub l4: usize,
    /// End of the quote in the frame.
    pub end: usize,
    pub key: FlowKey,
}

pub(crate) fn parse_inner(frame: &[u8], meta: &PacketMeta, zone: u16) -> Option<Inner> {
    let l3 = usize::from(meta.l4_off) + 8;
    let end = ip_end(frame, meta);
    let q = frame.get(l3..end)?;
    let (proto, l4, src, dst) = match meta.family {
        Family::V4 => {
            if q.len() < 20 || q[0] >> 4 != 4 {
                return None;
            }
            let hl = usize::from(q[0] & 0x0f) * 4;
            // A quoted non-first fragment has no transport header to match on.
            if hl < 20 || get_u16(q, 6) & 0x1fff != 0 {
                return None;
            }
            let src = u128::from(u32::from_be_bytes(q[12..16].try_into().ok()?));
            let dst = u128::from(u32::from_be_bytes(q[16..20].try_into().ok()?));
            (q[9], hl, src, dst)
        }
        Family::V6 => {
            if q.len() < 40 || q[0] >> 4 != 6 {
                return None;
            }
            let src = u128::from_be_bytes(q[8..24].try_into().ok()?);
            let dst = u128::from_be_bytes(q[24..40].try_into().ok()?);
            // ipv6_skip_exthdr over what was quoted.
            let ext = walk_ext_headers(q[6], &q[40..]).ok()?;
            if ext.fragment.is_some_and(|f| f.offset != 0) {
                return None;
            }
            (ext.proto, 40 + ext.l4_off, src, dst)
        }
    };
    let l4q = q.get(l4..)?;
    let mut key = FlowKey {
        src,
        dst,
        sport: 0,
        dport: 0,
        zone,
        proto,
        family: meta.family,
    };
    match L4::of(meta.family, proto) {
        L4::Tcp | L4::Udp => {
            if l4q.len() < 8 {
                return None;
            }
            key.sport = get_u16(l4q, 0);
            key.dport = get_u16(l4q, 2);
        }
        L4::IcmpQuery => {
            if l4q.len() < 8 {
                return None;
            }
            key.sport = get_u16(l4q, 4);
            key.dport = u16::from(l4q[0]) << 8 | u16::from(l4q[1]);
        }
        L4::Generic => {}
    }
    Some(Inner {
        l3,
        l4: l3 + l4,
        end,
        key,
    })
}

#[inline]
fn icmp_error_inner(frame: &[u8], meta: &PacketMeta, zone: u16) -> Extracted {
    // A fragmented error cannot be checked (its checksum covers every fragment).
    if meta.is_fragmented || !icmp_checksum_ok(frame, meta) {
        return Extracted::Invalid;
    }
    match parse_inner(frame, meta, zone) {
        Some(i) => Extracted::IcmpError { inner: i.key },
        None => Extracted::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_key() -> FlowKey {
        FlowKey {
            src: 0x0a00_0001,
            dst: 0x0a00_0002,
            sport: 40000,
            dport: 80,
            zone: 0,
            proto: 6,
            family: Family::V4,
        }
    }

    #[test]
    fn invert_swaps_addresses_and_ports_and_is_an_involution() {
        let k = tcp_key();
        let r = k.invert().unwrap();
        assert_eq!((r.src, r.dst, r.sport, r.dport), (k.dst, k.src, 80, 40000));
        assert_eq!(r.invert().unwrap(), k);
    }

    #[test]
    fn icmp_echo_inverts_to_echo_reply_with_the_same_id() {
        let k = FlowKey {
            sport: 0x1c46,
            dport: 8 << 8,
            proto: 1,
            ..tcp_key()
        };
        let r = k.invert().unwrap();
        assert_eq!((r.sport, r.dport >> 8, r.src), (0x1c46, 0, k.dst));
        let unreplyable = FlowKey { dport: 9 << 8, ..k };
        assert_eq!(unreplyable.invert(), None);
        let v6 = FlowKey {
            family: Family::V6,
            proto: 58,
            dport: 128 << 8,
            ..k
        };
        assert_eq!(v6.invert().unwrap().dport, 129 << 8);
    }

    #[test]
    fn hash_depends_on_every_field_and_the_seed() {
        let k = tcp_key();
        let h = k.hash(1);
        for v in [
            FlowKey { src: 3, ..k },
            FlowKey { dst: 3, ..k },
            FlowKey { sport: 3, ..k },
            FlowKey { dport: 3, ..k },
            FlowKey { zone: 3, ..k },
            FlowKey { proto: 17, ..k },
            FlowKey {
                family: Family::V6,
                ..k
            },
        ] {
            assert_ne!(v.hash(1), h, "{v:?}");
        }
        assert_ne!(k.hash(2), h);
        assert_eq!(k.hash(1), h);
    }
}
