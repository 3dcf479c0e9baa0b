//! Frames for the conntrack and NAT tests: built byte by byte with correct
//! checksums, and a checker that recomputes every checksum of a frame (outer and,
//! for ICMP errors, the quoted packet) from scratch.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::packet::icmp_error::{icmpv4_error_in_place, icmpv6_error_in_place};
use crate::packet::meta::{Family, PacketMeta};
use crate::packet::{checksum, parse};

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

pub fn v4(a: [u8; 4]) -> u128 {
    u128::from(u32::from_be_bytes(a))
}

pub fn v6(s: &str) -> u128 {
    u128::from(s.parse::<Ipv6Addr>().unwrap())
}

/// The fields of a TCP segment for [`tcp_seg`].
#[derive(Clone, Copy, Debug)]
pub struct Seg<'a> {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// The window field as sent (before any scaling).
    pub win: u16,
    /// Options, whole 32-bit words (pad with NOP).
    pub options: &'a [u8],
    pub payload: usize,
}

/// The sequence number both ends of [`tcp`]'s segments start from.
pub const ISN: u32 = 0x1000_0000;

impl Default for Seg<'_> {
    /// A bare segment of [`tcp`]'s conversation: sequence [`ISN`], Linux's
    /// initial window, no options.
    fn default() -> Self {
        Seg {
            flags: 0,
            seq: ISN,
            ack: 0,
            win: 64240,
            options: &[],
            payload: 0,
        }
    }
}

/// TCP header with `s`'s fields + `s.payload` bytes, checksum left 0.
pub fn tcp_seg_l4(sport: u16, dport: u16, s: &Seg) -> Vec<u8> {
    assert_eq!(s.options.len() % 4, 0, "options are whole words");
    let hl = 20 + s.options.len();
    let mut l4 = vec![0u8; hl + s.payload];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4[4..8].copy_from_slice(&s.seq.to_be_bytes());
    l4[8..12].copy_from_slice(&s.ack.to_be_bytes());
    l4[12] = ((hl / 4) as u8) << 4;
    l4[13] = s.flags;
    l4[14..16].copy_from_slice(&s.win.to_be_bytes());
    l4[20..hl].copy_from_slice(s.options);
    for (i, b) in l4[hl..].iter_mut().enumerate() {
        *b = i as u8;
    }
    l4
}

/// TCP header (20 bytes) + `payload` bytes of [`tcp`]'s conversation: both ends
/// at [`ISN`], and a segment with ACK acks the other end's SYN (a handshake and
/// a few segments without data stay in window).
pub fn tcp_l4(sport: u16, dport: u16, flags: u8, payload: usize) -> Vec<u8> {
    let ack = if flags & ACK != 0 { ISN + 1 } else { 0 };
    tcp_seg_l4(
        sport,
        dport,
        &Seg {
            flags,
            ack,
            payload,
            ..Seg::default()
        },
    )
}

pub fn udp_l4(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let mut l4 = vec![0u8; 8 + payload];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    for (i, b) in l4[8..].iter_mut().enumerate() {
        *b = 0xa0 ^ i as u8;
    }
    l4
}

/// ICMP/ICMPv6 query header: type, code 0, id, seq 1, 8 bytes of data.
pub fn echo_l4(ty: u8, id: u16) -> Vec<u8> {
    let mut l4 = vec![ty, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8];
    l4[4..6].copy_from_slice(&id.to_be_bytes());
    l4
}

/// Ethernet + IP header + `l4`, with the transport checksum computed (UDP over
/// IPv4 keeps 0 when `udp_zero_csum`).
pub fn frame_with(
    family: Family,
    src: u128,
    dst: u128,
    proto: u8,
    mut l4: Vec<u8>,
    udp_zero_csum: bool,
) -> Vec<u8> {
    let mut f = vec![
        0x52, 0x54, 0, 0xaa, 0xbb, 0xcc, 0x52, 0x54, 0, 0x12, 0x34, 0x56,
    ];
    let csum_at = match proto {
        6 => Some(16),
        17 if !udp_zero_csum => Some(6),
        1 | 58 => Some(2),
        _ => None,
    };
    match family {
        Family::V4 => {
            f.extend_from_slice(&[0x08, 0x00]);
            let total = (20 + l4.len()) as u16;
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            ip[4..6].copy_from_slice(&0x4242u16.to_be_bytes());
            ip[6] = 0x40;
            ip[8] = 64;
            ip[9] = proto;
            ip[12..16].copy_from_slice(&(src as u32).to_be_bytes());
            ip[16..20].copy_from_slice(&(dst as u32).to_be_bytes());
            let c = checksum::checksum(&ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            if let Some(at) = csum_at {
                let c = if proto == 1 {
                    checksum::checksum(&l4)
                } else {
                    let s = Ipv4Addr::from(src as u32);
                    let d = Ipv4Addr::from(dst as u32);
                    match !checksum::transport_sum_v4(&l4, s, d, proto) {
                        0 if proto == 17 => 0xffff,
                        c => c,
                    }
                };
                l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
            }
            f.extend_from_slice(&ip);
        }
        Family::V6 => {
            f.extend_from_slice(&[0x86, 0xdd]);
            let mut ip = [0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
            ip[6] = proto;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&src.to_be_bytes());
            ip[24..40].copy_from_slice(&dst.to_be_bytes());
            if let Some(at) = csum_at {
                let s = Ipv6Addr::from(src);
                let d = Ipv6Addr::from(dst);
                let c = match !checksum::transport_sum_v6(&l4, s, d, proto) {
                    0 if proto == 17 => 0xffff,
                    c => c,
                };
                l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
            }
            f.extend_from_slice(&ip);
        }
    }
    f.extend_from_slice(&l4);
    f
}

pub fn frame(family: Family, src: u128, dst: u128, proto: u8, l4: Vec<u8>) -> Vec<u8> {
    frame_with(family, src, dst, proto, l4, false)
}

pub fn tcp(family: Family, src: u128, sport: u16, dst: u128, dport: u16, flags: u8) -> Vec<u8> {
    frame(family, src, dst, 6, tcp_l4(sport, dport, flags, 0))
}

pub fn tcp_seg(family: Family, src: u128, sport: u16, dst: u128, dport: u16, s: &Seg) -> Vec<u8> {
    frame(family, src, dst, 6, tcp_seg_l4(sport, dport, s))
}

pub fn udp(family: Family, src: u128, sport: u16, dst: u128, dport: u16) -> Vec<u8> {
    frame(family, src, dst, 17, udp_l4(sport, dport, 12))
}

pub fn echo(family: Family, src: u128, dst: u128, ty: u8, id: u16) -> Vec<u8> {
    let proto = if family == Family::V4 { 1 } else { 58 };
    frame(family, src, dst, proto, echo_l4(ty, id))
}

pub fn meta(f: &[u8]) -> PacketMeta {
    let mut m = PacketMeta::default();
    parse(f, &mut m).expect("test frame parses");
    m
}

/// The ICMP error `router` sends about `about` (a frame as it left us or as it
/// reached the router), through the same code the dataplane uses.
pub fn icmp_error(about: &[u8], router: u128, ty: u8, code: u8) -> Vec<u8> {
    let mut buf = about.to_vec();
    let len = buf.len();
    buf.resize(2048, 0);
    let n = if about[12..14] == [0x08, 0x00] {
        icmpv4_error_in_place(&mut buf, len, 14, Ipv4Addr::from(router as u32), ty, code)
    } else {
        icmpv6_error_in_place(&mut buf, len, 14, Ipv6Addr::from(router), ty, code, 0)
    }
    .expect("error built");
    buf.truncate(n);
    buf
}

/// Recomputes every checksum in `f`: IPv4 header, the transport checksum over the
/// whole segment, and for an ICMP error the quoted IPv4 header and, when the quote
/// holds the whole quoted packet, its transport checksum too.
pub fn verify_checksums(f: &[u8]) -> Result<(), String> {
    let m = meta(f);
    let l3 = usize::from(m.l3_off);
    let l4 = usize::from(m.l4_off);
    let end = super::tuple::ip_end(f, &m);
    verify_packet(&f[l3..end], m.family, l4 - l3)?;
    let icmp_err = match m.family {
        Family::V4 => m.proto == 1 && matches!(m.icmp_type, 3 | 4 | 5 | 11 | 12),
        Family::V6 => m.proto == 58 && m.icmp_type < 128,
    };
    if icmp_err {
        let q = &f[l4 + 8..end];
        let (whole, hl) = match m.family {
            Family::V4 => {
                if checksum::checksum(&q[..20]) != 0 {
                    return Err("quoted IPv4 header checksum".into());
                }
                let tl = usize::from(u16::from_be_bytes([q[2], q[3]]));
                (tl <= q.len(), usize::from(q[0] & 15) * 4)
            }
            Family::V6 => {
                let pl = usize::from(u16::from_be_bytes([q[4], q[5]]));
                (40 + pl <= q.len(), 40)
            }
        };
        if whole {
            let tl = match m.family {
                Family::V4 => usize::from(u16::from_be_bytes([q[2], q[3]])),
                Family::V6 => 40 + usize::from(u16::from_be_bytes([q[4], q[5]])),
            };
            verify_packet(&q[..tl], m.family, hl).map_err(|e| format!("quoted: {e}"))?;
        }
    }
    Ok(())
}

/// Checks the IP packet `p` (header at 0, transport at `l4`).
fn verify_packet(p: &[u8], family: Family, l4: usize) -> Result<(), String> {
    let seg = &p[l4..];
    match family {
        Family::V4 => {
            if checksum::checksum(&p[..l4]) != 0 {
                return Err("IPv4 header checksum".into());
            }
            let s = Ipv4Addr::from(u32::from_be_bytes(p[12..16].try_into().unwrap()));
            let d = Ipv4Addr::from(u32::from_be_bytes(p[16..20].try_into().unwrap()));
            let ok = match p[9] {
                6 => checksum::transport_sum_v4(seg, s, d, 6) == 0xffff,
                17 => seg[6..8] == [0, 0] || checksum::transport_sum_v4(seg, s, d, 17) == 0xffff,
                1 => checksum::checksum(seg) == 0,
                _ => true,
            };
            if !ok {
                return Err(format!("IPv4 proto {} checksum", p[9]));
            }
        }
        Family::V6 => {
            let s = Ipv6Addr::from(u128::from_be_bytes(p[8..24].try_into().unwrap()));
            let d = Ipv6Addr::from(u128::from_be_bytes(p[24..40].try_into().unwrap()));
            let nh = p[6];
            if matches!(nh, 6 | 17 | 58) && checksum::transport_sum_v6(seg, s, d, nh) != 0xffff {
                return Err(format!("IPv6 next header {nh} checksum"));
            }
        }
    }
    Ok(())
}
