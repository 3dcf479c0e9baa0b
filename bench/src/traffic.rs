//! What the generator sends: Ethernet + IPv4/IPv6 + UDP/TCP/ICMP frames of a given
//! size, one of N flows, with the bench payload (magic, sequence number, send
//! timestamp) right after the transport header, where the sink finds it again.
//!
//! Frame sizes follow RFC 2544 usage: a "64-byte frame" counts the 4-byte FCS the
//! NIC appends, so we build 60 bytes. Headers are written through fwd's own views,
//! and checksums are real (the tests parse frames back with `fwd::packet`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fwd::packet::{
    ethernet::{self, EthernetFrame},
    icmpv4::Icmpv4Packet,
    icmpv6::Icmpv6Packet,
    ipv4::{self, protocol, Ipv4Packet},
    ipv6::{self, Ipv6Packet},
    tcp::{self, TcpPacket},
    udp::{self, UdpPacket},
    PacketMeta,
};

/// Marks a bench payload (and lets the sink ignore everything else).
pub const MAGIC: u16 = 0xbe9c;
/// magic (2) + sequence (8) + timestamp (8).
pub const PAYLOAD_LEN: usize = 18;
/// The FCS the wire adds and we do not build (RFC 2544 frame sizes include it).
pub const FCS_LEN: usize = 4;
/// The largest untagged Ethernet frame, FCS included.
pub const MAX_FRAME: usize = 1518;
/// How many flows vary the source port before the source address moves on.
pub const PORTS_PER_ADDR: u32 = 4096;

const ICMP_ECHO_REQUEST: u8 = 8;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMP_HEADER_LEN: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Udp,
    Tcp,
    Icmp,
}

/// Frame sizes: one fixed size, or simple IMIX (7 x 64, 4 x 570, 1 x 1518 bytes, the
/// classic 7:4:1 mix; average 353.8 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sizes {
    Fixed(usize),
    Imix,
}

const IMIX: [usize; 12] = [64, 570, 64, 1518, 64, 570, 64, 64, 570, 64, 570, 64];

impl Sizes {
    /// Size (FCS included) of the `seq`th frame.
    #[inline]
    pub fn of(self, seq: u64) -> usize {
        match self {
            Sizes::Fixed(s) => s,
            Sizes::Imix => IMIX[(seq % IMIX.len() as u64) as usize],
        }
    }

    pub fn min(self) -> usize {
        match self {
            Sizes::Fixed(s) => s,
            Sizes::Imix => 64,
        }
    }

    pub fn max(self) -> usize {
        match self {
            Sizes::Fixed(s) => s,
            Sizes::Imix => MAX_FRAME,
        }
    }
}

impl std::str::FromStr for Sizes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("imix") {
            return Ok(Sizes::Imix);
        }
        let n: usize = s
            .parse()
            .map_err(|_| format!("'{s}' is neither a frame size in bytes nor 'imix'"))?;
        if !(64..=MAX_FRAME).contains(&n) {
            return Err(format!(
                "frame size {n} is outside 64..={MAX_FRAME} (sizes count the 4-byte FCS)"
            ));
        }
        Ok(Sizes::Fixed(n))
    }
}

/// Everything that is the same in every frame of a run.
#[derive(Clone, Debug)]
pub struct TrafficSpec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: Proto,
    pub sport: u16,
    pub dport: u16,
    pub flows: u32,
    /// Which end of the flow varies from flow to flow.
    pub vary: Vary,
    /// Frame `seq` belongs to flow `(first_flow + seq) % flows`: successive runs
    /// with growing offsets send flows no earlier run has sent.
    pub first_flow: u64,
    pub sizes: Sizes,
    pub ttl: u8,
}

/// The end of a flow that varies: the source (a client's connections) or the
/// destination (the same flows' replies, sent from the other side).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Vary {
    #[default]
    Src,
    Dst,
}

/// One flow's addresses and ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTuple {
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("source {0} and destination {1} are not the same address family")]
    MixedFamilies(IpAddr, IpAddr),
    #[error("{size}-byte {family} {proto:?} frames have no room for the {PAYLOAD_LEN}-byte bench payload; the smallest is {min} bytes")]
    TooSmall {
        size: usize,
        family: &'static str,
        proto: Proto,
        min: usize,
    },
    #[error("--flows must be at least 1")]
    NoFlows,
}

impl TrafficSpec {
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.src.is_ipv4() != self.dst.is_ipv4() {
            return Err(SpecError::MixedFamilies(self.src, self.dst));
        }
        if self.flows == 0 {
            return Err(SpecError::NoFlows);
        }
        let min = self.min_frame();
        if self.sizes.min() < min {
            return Err(SpecError::TooSmall {
                size: self.sizes.min(),
                family: if self.src.is_ipv4() { "IPv4" } else { "IPv6" },
                proto: self.proto,
                min,
            });
        }
        Ok(())
    }

    fn l3_len(&self) -> usize {
        if self.src.is_ipv4() {
            ipv4::MIN_HEADER_LEN
        } else {
            ipv6::HEADER_LEN
        }
    }

    fn l4_len(&self) -> usize {
        match self.proto {
            Proto::Udp => udp::HEADER_LEN,
            Proto::Tcp => tcp::MIN_HEADER_LEN,
            Proto::Icmp => ICMP_HEADER_LEN,
        }
    }

    /// Offset of the bench payload in every frame.
    pub fn payload_offset(&self) -> usize {
        ethernet::HEADER_LEN + self.l3_len() + self.l4_len()
    }

    /// The smallest frame (FCS included) that holds the headers and the payload.
    pub fn min_frame(&self) -> usize {
        self.payload_offset() + PAYLOAD_LEN + FCS_LEN
    }

    /// The flow frame `seq` belongs to.
    pub fn flow_of(&self, seq: u64) -> u32 {
        (self.first_flow.wrapping_add(seq) % u64::from(self.flows)) as u32
    }

    /// Addresses and ports of flow `flow`: on the varying end the port moves fastest,
    /// then the address (so up to 4096 flows share one address).
    pub fn flow_tuple(&self, flow: u32) -> FlowTuple {
        let step = flow / PORTS_PER_ADDR;
        let addr = |a: IpAddr| match a {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(step))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(step.into()))),
        };
        let port = |p: u16| p.wrapping_add((flow % PORTS_PER_ADDR) as u16);
        let mut t = FlowTuple {
            src: self.src,
            sport: self.sport,
            dst: self.dst,
            dport: self.dport,
        };
        match self.vary {
            Vary::Src => (t.src, t.sport) = (addr(t.src), port(t.sport)),
            Vary::Dst => (t.dst, t.dport) = (addr(t.dst), port(t.dport)),
        }
        t
    }

    /// Writes frame `seq` into `buf` and returns its length (without FCS). `buf` must
    /// hold `sizes.max() - FCS_LEN` bytes. The flow is `seq % flows`.
    pub fn build(&self, buf: &mut [u8], seq: u64, tstamp_ns: u64) -> usize {
        let len = self.sizes.of(seq) - FCS_LEN;
        let flow = self.flow_of(seq);
        let t = self.flow_tuple(flow);
        let buf = &mut buf[..len];
        let l3 = ethernet::HEADER_LEN;
        let l4 = l3 + self.l3_len();
        let pl = l4 + self.l4_len();

        // Zero what is not a header field we set: the padding after the payload.
        buf[pl + PAYLOAD_LEN..].fill(0);
        write_payload(&mut buf[pl..pl + PAYLOAD_LEN], seq, tstamp_ns);

        let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.set_dst_addr(self.dst_mac);
        eth.set_src_addr(self.src_mac);
        let proto = match (self.proto, t.dst) {
            (Proto::Udp, _) => protocol::UDP,
            (Proto::Tcp, _) => protocol::TCP,
            (Proto::Icmp, IpAddr::V4(_)) => protocol::ICMP,
            (Proto::Icmp, IpAddr::V6(_)) => protocol::ICMPV6,
        };
        let l4_total = len - l4;
        match (t.src, t.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                eth.set_ethertype(ethernet::ethertype::IPV4);
                let mut ip = Ipv4Packet::new_unchecked(&mut buf[l3..]);
                ip.set_version_header_len(4, ipv4::MIN_HEADER_LEN);
                ip.set_dscp_ecn(0);
                ip.set_total_len((len - l3) as u16);
                ip.set_ident(seq as u16);
                ip.set_flags_frag_offset(true, false, 0);
                ip.set_ttl(self.ttl);
                ip.set_protocol(proto);
                ip.set_src_addr(s);
                ip.set_dst_addr(d);
                ip.fill_checksum();
                self.build_l4(&mut buf[l4..], l4_total, &t, flow, seq, L3Addrs::V4(s, d));
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                eth.set_ethertype(ethernet::ethertype::IPV6);
                let mut ip = Ipv6Packet::new_unchecked(&mut buf[l3..]);
                ip.set_version_tc_flow(0, flow & 0xf_ffff);
                ip.set_payload_len(l4_total as u16);
                ip.set_next_header(proto);
                ip.set_hop_limit(self.ttl);
                ip.set_src_addr(s);
                ip.set_dst_addr(d);
                self.build_l4(&mut buf[l4..], l4_total, &t, flow, seq, L3Addrs::V6(s, d));
            }
            _ => unreachable!("validate() rejects mixed families"),
        }
        len
    }

    fn build_l4(&self, b: &mut [u8], len: usize, t: &FlowTuple, flow: u32, seq: u64, a: L3Addrs) {
        let b = &mut b[..len];
        match self.proto {
            Proto::Udp => {
                let mut u = UdpPacket::new_unchecked(b);
                u.set_src_port(t.sport);
                u.set_dst_port(t.dport);
                u.set_len(len as u16);
                match a {
                    L3Addrs::V4(s, d) => u.fill_checksum_v4(s, d),
                    L3Addrs::V6(s, d) => u.fill_checksum_v6(s, d),
                }
            }
            Proto::Tcp => {
                let mut p = TcpPacket::new_unchecked(b);
                p.set_src_port(t.sport);
                p.set_dst_port(t.dport);
                p.set_seq_number(seq as u32);
                p.set_ack_number(0);
                p.set_header_len(tcp::MIN_HEADER_LEN);
                // ACK only: a mid-connection segment, what a stateless ruleset sees most.
                p.set_flags(tcp::flags::ACK);
                p.set_window_len(65535);
                p.set_urgent_at(0);
                match a {
                    L3Addrs::V4(s, d) => p.fill_checksum_v4(s, d),
                    L3Addrs::V6(s, d) => p.fill_checksum_v6(s, d),
                }
            }
            Proto::Icmp => match a {
                L3Addrs::V4(..) => {
                    let mut i = Icmpv4Packet::new_unchecked(b);
                    i.set_msg_type(ICMP_ECHO_REQUEST);
                    i.set_msg_code(0);
                    i.set_echo_ident(flow as u16);
                    i.set_echo_seq_no(seq as u16);
                    i.fill_checksum();
                }
                L3Addrs::V6(s, d) => {
                    let mut i = Icmpv6Packet::new_unchecked(b);
                    i.set_msg_type(ICMPV6_ECHO_REQUEST);
                    i.set_msg_code(0);
                    i.set_echo_ident(flow as u16);
                    i.set_echo_seq_no(seq as u16);
                    i.fill_checksum(s, d);
                }
            },
        }
    }
}

#[derive(Clone, Copy)]
enum L3Addrs {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

#[inline]
fn write_payload(b: &mut [u8], seq: u64, tstamp_ns: u64) {
    b[0..2].copy_from_slice(&MAGIC.to_be_bytes());
    b[2..10].copy_from_slice(&seq.to_be_bytes());
    b[10..18].copy_from_slice(&tstamp_ns.to_be_bytes());
}

/// The sequence number and send timestamp of a bench frame, found by parsing it
/// with fwd's parser; `None` for anything else (ARP, ND, other traffic).
#[inline]
pub fn read_payload(frame: &[u8], meta: &mut PacketMeta) -> Option<(u64, u64)> {
    fwd::packet::parse(frame, meta).ok()?;
    if !meta.l4_valid {
        return None;
    }
    let l4 = usize::from(meta.l4_off);
    let off = match meta.proto {
        protocol::UDP => l4 + udp::HEADER_LEN,
        protocol::ICMP | protocol::ICMPV6 => l4 + ICMP_HEADER_LEN,
        protocol::TCP => l4 + TcpPacket::new_checked(frame.get(l4..)?).ok()?.header_len(),
        _ => return None,
    };
    let p = frame.get(off..off + PAYLOAD_LEN)?;
    if u16::from_be_bytes([p[0], p[1]]) != MAGIC {
        return None;
    }
    let seq = u64::from_be_bytes(p[2..10].try_into().ok()?);
    let ts = u64::from_be_bytes(p[10..18].try_into().ok()?);
    Some((seq, ts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fwd::packet::{
        icmpv4::Icmpv4Packet, icmpv6::Icmpv6Packet, ipv4::Ipv4Packet, ipv6::Ipv6Packet,
        tcp::TcpPacket, udp::UdpPacket, Family,
    };

    fn spec(src: &str, dst: &str, proto: Proto, sizes: Sizes, flows: u32) -> TrafficSpec {
        TrafficSpec {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto,
            sport: 1024,
            dport: 9,
            flows,
            vary: Vary::Src,
            first_flow: 0,
            sizes,
            ttl: 64,
        }
    }

    /// Builds frame `seq`, parses it back with fwd's parser, and checks every
    /// checksum, the length, the flow and the payload.
    fn check(s: &TrafficSpec, seq: u64) {
        s.validate().unwrap();
        let mut buf = vec![0xaa; MAX_FRAME];
        let len = s.build(&mut buf, seq, 123_456_789);
        let f = &buf[..len];
        assert_eq!(len + FCS_LEN, s.sizes.of(seq));
        let mut m = PacketMeta::default();
        fwd::packet::parse(f, &mut m).unwrap();
        assert!(m.l4_valid);
        let t = s.flow_tuple(s.flow_of(seq));
        let l3 = &f[usize::from(m.l3_off)..];
        let l4 = &f[usize::from(m.l4_off)..];
        match (t.src, t.dst) {
            (IpAddr::V4(sa), IpAddr::V4(da)) => {
                assert_eq!(m.family, Family::V4);
                let ip = Ipv4Packet::new_checked(l3).unwrap();
                assert!(ip.verify_checksum(), "IPv4 header checksum");
                assert_eq!(usize::from(ip.total_len()), len - 14);
                assert_eq!((ip.src_addr(), ip.dst_addr(), ip.ttl()), (sa, da, 64));
                match s.proto {
                    Proto::Udp => {
                        let u = UdpPacket::new_checked(l4).unwrap();
                        assert_ne!(u.checksum(), 0, "a real checksum, not 'none'");
                        assert!(u.verify_checksum_v4(sa, da), "UDP checksum");
                    }
                    Proto::Tcp => {
                        assert!(TcpPacket::new_checked(l4)
                            .unwrap()
                            .verify_checksum_v4(sa, da))
                    }
                    Proto::Icmp => {
                        assert!(Icmpv4Packet::new_checked(l4).unwrap().verify_checksum())
                    }
                }
            }
            (IpAddr::V6(sa), IpAddr::V6(da)) => {
                assert_eq!(m.family, Family::V6);
                let ip = Ipv6Packet::new_checked(l3).unwrap();
                assert_eq!(usize::from(ip.payload_len()), len - 14 - 40);
                assert_eq!((ip.src_addr(), ip.dst_addr()), (sa, da));
                match s.proto {
                    Proto::Udp => {
                        assert!(UdpPacket::new_checked(l4)
                            .unwrap()
                            .verify_checksum_v6(sa, da))
                    }
                    Proto::Tcp => {
                        assert!(TcpPacket::new_checked(l4)
                            .unwrap()
                            .verify_checksum_v6(sa, da))
                    }
                    Proto::Icmp => {
                        assert!(Icmpv6Packet::new_checked(l4)
                            .unwrap()
                            .verify_checksum(sa, da))
                    }
                }
            }
            _ => unreachable!(),
        }
        if s.proto != Proto::Icmp {
            assert_eq!(
                (m.sport, m.dport),
                (t.sport, t.dport),
                "flow {}",
                s.flow_of(seq)
            );
        }
        assert_eq!(read_payload(f, &mut m), Some((seq, 123_456_789)));
    }

    #[test]
    fn every_family_protocol_and_size_parses_back_with_valid_checksums() {
        for (src, dst) in [
            ("198.18.0.2", "198.19.128.1"),
            ("2001:db8:a::2", "2001:db8:c::1"),
        ] {
            for proto in [Proto::Udp, Proto::Tcp, Proto::Icmp] {
                let min = spec(src, dst, proto, Sizes::Fixed(64), 1).min_frame();
                for size in [min, min + 1, 128, 512, 1001, 1518] {
                    let s = spec(src, dst, proto, Sizes::Fixed(size.max(min)), 7);
                    for seq in [0, 1, 6, 7, 1 << 40] {
                        check(&s, seq);
                    }
                }
            }
        }
    }

    #[test]
    fn sixty_four_byte_ipv4_udp_is_sixty_bytes_on_the_wire() {
        let s = spec(
            "198.18.0.2",
            "198.19.128.1",
            Proto::Udp,
            Sizes::Fixed(64),
            1,
        );
        assert_eq!(s.min_frame(), 64);
        let mut buf = vec![0; MAX_FRAME];
        assert_eq!(s.build(&mut buf, 0, 0), 60);
    }

    #[test]
    fn imix_cycles_through_its_sizes_with_valid_frames() {
        let s = spec("198.18.0.2", "198.19.128.1", Proto::Udp, Sizes::Imix, 3);
        let sizes: Vec<usize> = (0..12).map(|q| Sizes::Imix.of(q)).collect();
        assert_eq!(sizes.iter().filter(|&&x| x == 64).count(), 7);
        assert_eq!(sizes.iter().filter(|&&x| x == 570).count(), 4);
        assert_eq!(sizes.iter().filter(|&&x| x == 1518).count(), 1);
        for seq in 0..24 {
            check(&s, seq);
        }
    }

    #[test]
    fn flows_vary_ports_then_addresses() {
        let s = spec(
            "198.18.0.2",
            "198.19.128.1",
            Proto::Udp,
            Sizes::Fixed(64),
            10_000,
        );
        let src = |f| {
            let t = s.flow_tuple(f);
            (t.src.to_string(), t.sport)
        };
        assert_eq!(src(0), ("198.18.0.2".into(), 1024));
        assert_eq!(src(4095), ("198.18.0.2".into(), 1024 + 4095));
        assert_eq!(src(4096), ("198.18.0.3".into(), 1024));
        check(&s, 4096 + 5);
        check(&s, 9_999);
    }

    #[test]
    fn replies_vary_the_destination_and_match_the_flows_they_answer() {
        let out = spec(
            "198.18.64.1",
            "198.19.128.1",
            Proto::Udp,
            Sizes::Fixed(64),
            10_000,
        );
        let mut back = out.clone();
        (back.src, back.sport, back.dst, back.dport) = (out.dst, out.dport, out.src, out.sport);
        back.vary = Vary::Dst;
        for f in [0, 1, 4095, 4096, 9_999] {
            let (o, b) = (out.flow_tuple(f), back.flow_tuple(f));
            assert_eq!(
                (o.src, o.sport, o.dst, o.dport),
                (b.dst, b.dport, b.src, b.sport)
            );
        }
        for seq in [0, 4097, 9_999] {
            check(&back, seq);
        }
    }

    #[test]
    fn first_flow_offsets_runs_so_they_do_not_repeat_flows() {
        let mut s = spec(
            "198.18.64.1",
            "198.19.128.1",
            Proto::Udp,
            Sizes::Fixed(64),
            1 << 20,
        );
        s.first_flow = 5_000;
        assert_eq!((s.flow_of(0), s.flow_of(1)), (5_000, 5_001));
        assert_eq!(s.flow_of((1 << 20) - 5_000), 0, "wraps at --flows");
        check(&s, 7);
    }

    #[test]
    fn too_small_frames_and_mixed_families_are_refused_with_the_minimum() {
        let s = spec(
            "2001:db8:a::2",
            "2001:db8:c::1",
            Proto::Udp,
            Sizes::Fixed(64),
            1,
        );
        assert_eq!(
            s.validate(),
            Err(SpecError::TooSmall {
                size: 64,
                family: "IPv6",
                proto: Proto::Udp,
                min: 84
            })
        );
        let s = spec(
            "198.18.0.2",
            "2001:db8:c::1",
            Proto::Udp,
            Sizes::Fixed(128),
            1,
        );
        assert!(matches!(s.validate(), Err(SpecError::MixedFamilies(..))));
        assert!("63".parse::<Sizes>().is_err());
        assert!("1519".parse::<Sizes>().is_err());
        assert_eq!("IMIX".parse::<Sizes>(), Ok(Sizes::Imix));
    }

    #[test]
    fn non_bench_frames_have_no_payload() {
        let s = spec(
            "198.18.0.2",
            "198.19.128.1",
            Proto::Udp,
            Sizes::Fixed(64),
            1,
        );
        let mut buf = vec![0; MAX_FRAME];
        let len = s.build(&mut buf, 5, 6);
        buf[42] ^= 0xff; // break the magic
        assert_eq!(read_payload(&buf[..len], &mut PacketMeta::default()), None);
    }
}
