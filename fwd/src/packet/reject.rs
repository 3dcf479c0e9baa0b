//! `-j REJECT --reject-with tcp-reset`: the RST built in place from the offending
//! segment, as Linux's nf_send_reset / nf_send_reset6 build it (RFC 793 "Reset
//! Generation"): addresses and ports swapped; if the segment had ACK, the RST takes
//! its ack number as sequence number; otherwise sequence 0 and ACK of everything
//! the segment occupied (data, plus one each for SYN and FIN).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::ethernet::EthernetFrame;
use super::icmp_error::ERROR_TTL;
use super::ipv4::{protocol, Ipv4Packet};
use super::ipv6::{self, Ipv6Packet};
use super::meta::{Family, PacketMeta};
use super::tcp::{self, TcpPacket};

/// Turns the TCP segment in `frame[..frame_len]` into the RST answering it and
/// returns the new frame length. `None` when there is nothing to answer: not TCP,
/// a non-first fragment, an RST itself (never answer a reset), or headers that do
/// not hold together. The caller checks `meta` came from `parse` on this frame.
pub fn tcp_reset_in_place(frame: &mut [u8], frame_len: usize, meta: &PacketMeta) -> Option<usize> {
    if meta.proto != protocol::TCP || !meta.l4_valid || meta.fragment {
        return None;
    }
    let l3 = usize::from(meta.l3_off);
    let l4 = usize::from(meta.l4_off);
    if l4 + tcp::MIN_HEADER_LEN > frame_len || l3 >= l4 {
        return None;
    }
    let l4_end = l3 + usize::from(meta.ip_len);
    if l4_end > frame_len || l4_end < l4 + tcp::MIN_HEADER_LEN {
        return None;
    }
    let (seq, ack, flags) = {
        let t = TcpPacket::new_unchecked(&frame[l4..l4_end]);
        let hl = t.header_len();
        if t.rst() || hl < tcp::MIN_HEADER_LEN || l4 + hl > l4_end {
            return None;
        }
        let data = (l4_end - l4 - hl) as u32;
        if t.ack() {
            (t.ack_number(), 0, tcp::flags::RST)
        } else {
            let occupied = data + u32::from(t.syn()) + u32::from(t.fin());
            (
                0,
                t.seq_number().wrapping_add(occupied),
                tcp::flags::RST | tcp::flags::ACK,
            )
        }
    };
    let (sport, dport) = (meta.sport, meta.dport);
    EthernetFrame::new_unchecked(&mut frame[..]).swap_addrs();
    // The RST is a bare 20-byte TCP header right after the network header.
    let new_l4 = match meta.family {
        Family::V4 => {
            let mut ip = Ipv4Packet::new_unchecked(&mut frame[l3..]);
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            ip.set_version_header_len(4, 20);
            ip.set_dscp_ecn(0);
            ip.set_total_len((20 + tcp::MIN_HEADER_LEN) as u16);
            ip.set_ident(0);
            ip.set_flags_frag_offset(true, false, 0);
            ip.set_ttl(ERROR_TTL);
            ip.set_protocol(protocol::TCP);
            ip.set_src_addr(dst);
            ip.set_dst_addr(src);
            ip.fill_checksum();
            l3 + 20
        }
        Family::V6 => {
            let mut ip = Ipv6Packet::new_unchecked(&mut frame[l3..]);
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            ip.set_version_tc_flow(0, 0);
            ip.set_payload_len(tcp::MIN_HEADER_LEN as u16);
            ip.set_next_header(protocol::TCP);
            ip.set_hop_limit(ERROR_TTL);
            ip.set_src_addr(dst);
            ip.set_dst_addr(src);
            l3 + ipv6::HEADER_LEN
        }
    };
    let new_len = new_l4 + tcp::MIN_HEADER_LEN;
    if new_len > frame.len() {
        return None;
    }
    let mut t = TcpPacket::new_unchecked(&mut frame[new_l4..new_len]);
    t.set_src_port(dport);
    t.set_dst_port(sport);
    t.set_seq_number(seq);
    t.set_ack_number(ack);
    t.set_header_len(tcp::MIN_HEADER_LEN);
    t.set_flags(flags);
    t.set_window_len(0);
    t.set_urgent_at(0);
    match meta.family {
        Family::V4 => {
            let ip = Ipv4Packet::new_unchecked(&frame[l3..new_l4]);
            let (s, d): (Ipv4Addr, Ipv4Addr) = (ip.src_addr(), ip.dst_addr());
            TcpPacket::new_unchecked(&mut frame[new_l4..new_len]).fill_checksum_v4(s, d);
        }
        Family::V6 => {
            let ip = Ipv6Packet::new_unchecked(&frame[l3..new_l4]);
            let (s, d): (Ipv6Addr, Ipv6Addr) = (ip.src_addr(), ip.dst_addr());
            TcpPacket::new_unchecked(&mut frame[new_l4..new_len]).fill_checksum_v6(s, d);
        }
    }
    Some(new_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{parse::parse, testdata::*};

    fn syn_frame() -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&ETH_V4);
        f.extend_from_slice(&IPV4_SYN_HDR);
        f.extend_from_slice(&TCP_SYN);
        f
    }

    #[test]
    fn syn_is_answered_with_rst_ack_of_seq_plus_one() {
        let orig = syn_frame();
        let mut meta = PacketMeta::default();
        parse(&orig, &mut meta).unwrap();
        let mut buf = orig.clone();
        buf.resize(4096, 0);
        let n = tcp_reset_in_place(&mut buf, orig.len(), &meta).unwrap();
        assert_eq!(n, 14 + 20 + 20);
        let mut rm = PacketMeta::default();
        parse(&buf[..n], &mut rm).unwrap();
        assert_eq!((rm.src, rm.dst), (meta.dst, meta.src));
        assert_eq!((rm.sport, rm.dport), (meta.dport, meta.sport));
        assert_eq!(rm.tcp_flags, tcp::flags::RST | tcp::flags::ACK);
        let ip = Ipv4Packet::new_unchecked(&buf[14..n]);
        assert!(ip.verify_checksum());
        let t = TcpPacket::new_unchecked(&buf[34..n]);
        let syn = TcpPacket::new_unchecked(&orig[34..]);
        assert_eq!(t.seq_number(), 0);
        assert_eq!(t.ack_number(), syn.seq_number().wrapping_add(1));
        assert!(t.verify_checksum_v4(ip.src_addr(), ip.dst_addr()));
        assert_eq!(&buf[0..6], &orig[6..12], "Ethernet addresses swapped");
    }

    #[test]
    fn segment_with_ack_gets_rst_with_its_ack_number_and_rst_is_never_answered() {
        let mut orig = syn_frame();
        // Make it a data-less ACK with ack number 0x01020304.
        orig[34 + 13] = tcp::flags::ACK;
        orig[34 + 8..34 + 12].copy_from_slice(&[1, 2, 3, 4]);
        let mut meta = PacketMeta::default();
        parse(&orig, &mut meta).unwrap();
        let mut buf = orig.clone();
        buf.resize(4096, 0);
        let n = tcp_reset_in_place(&mut buf, orig.len(), &meta).unwrap();
        let t = TcpPacket::new_unchecked(&buf[34..n]);
        assert_eq!(t.flags(), tcp::flags::RST);
        assert_eq!(t.seq_number(), 0x01020304);
        // Now the RST itself: no answer.
        let mut m2 = PacketMeta::default();
        parse(&buf[..n], &mut m2).unwrap();
        let len = n;
        assert_eq!(tcp_reset_in_place(&mut buf, len, &m2), None);
    }

    #[test]
    fn not_tcp_is_not_answered() {
        let mut f = Vec::new();
        f.extend_from_slice(&ETH_V4);
        f.extend_from_slice(&IPV4_PING);
        let mut meta = PacketMeta::default();
        parse(&f, &mut meta).unwrap();
        let len = f.len();
        assert_eq!(tcp_reset_in_place(&mut f, len, &meta), None);
    }
}
