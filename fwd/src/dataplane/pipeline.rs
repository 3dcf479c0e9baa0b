//! What happens to one frame between RX and TX, as Linux's ip_forward does it:
//! parse, L2 check, header checksum, route, TTL, MTU, the FORWARD rules, TTL
//! decrement. ICMP errors are built in the same frame and routed back like any
//! packet. Pure logic over bytes: the worker owns the frames, this owns the rules.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::Instant,
};

use crate::{
    classify::{Classifier, FlowCache},
    packet::{
        ethernet, icmp_error,
        ipv4::Ipv4Packet,
        ipv6::Ipv6Packet,
        meta::{Family, PacketMeta, NO_PORT},
        parse::{self, ParseError},
    },
    route::{neigh::NextHop, Fib},
    rules::{Hook, RuleCounters, Verdict},
};

use super::stats::{malformed_slot, Counters, Event, Reason};

/// What the dataplane knows of a port at run time.
#[derive(Clone, Debug)]
pub struct PortInfo {
    pub interface: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// L3 MTU of the interface.
    pub mtu: u16,
    /// The box's addresses on this port; the first of each family is the source of
    /// ICMP errors sent from here, like Linux's choice of the ingress address.
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
    /// Every prefix the box has on this port (config and kernel): connected routes.
    pub nets: Vec<ipnet::IpNet>,
}

/// ICMP error budget, a token bucket like Linux's icmp_msgs_per_sec (1000/s) and
/// icmp_msgs_burst (50).
pub struct IcmpLimiter {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl IcmpLimiter {
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        Self {
            tokens: burst as f64,
            last: Instant::now(),
            rate: rate_per_sec as f64,
            burst: burst as f64,
        }
    }

    /// Adds the tokens earned since the last call; once per batch.
    #[inline]
    pub fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
    }

    #[inline]
    fn take(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The state one frame is judged against: the tables (read-only, shared) and the
/// worker's own flow cache and rule counters.
pub struct Router<'a> {
    pub fib: &'a Fib,
    pub ports: &'a [PortInfo],
    pub classifier: &'a Classifier,
    pub flow_cache: &'a mut FlowCache,
    pub rule_counters: &'a mut RuleCounters,
}

// ICMP types and codes (RFC 792, RFC 4443).
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_NET_UNREACH: u8 = 0;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMPV6_DEST_UNREACH: u8 = 1;
const ICMPV6_NOROUTE: u8 = 0;
const ICMPV6_PKT_TOOBIG: u8 = 2;
const ICMPV6_TIME_EXCEED: u8 = 3;

/// Which ICMP error to send instead of forwarding.
#[derive(Clone, Copy)]
enum IcmpError {
    NoRoute,
    TimeExceeded,
    TooBig(u16),
}

impl Router<'_> {
    /// Runs the rules of one hook; false when they drop the frame (counted).
    #[inline]
    fn hook(
        &mut self,
        hook: Hook,
        meta: &mut PacketMeta,
        len: usize,
        counters: &mut Counters,
    ) -> bool {
        // A hook without rules costs one load, not a flow-cache probe.
        if self.classifier.program_len(hook) == 0 {
            return true;
        }
        match self
            .flow_cache
            .run_hook(self.classifier, hook, meta, len as u32, self.rule_counters)
        {
            Verdict::Accept => true,
            Verdict::Drop => {
                counters.drop(Reason::Filtered);
                false
            }
        }
    }

    /// Judges one frame received on `in_port`. `buf` is the whole UMEM chunk from
    /// the frame's first byte and `len` the frame length; both may be rewritten (an
    /// ICMP error replaces the frame). Returns the egress port and next hop, or
    /// `None` when the frame is to be freed (the reason is already counted).
    #[inline]
    pub fn route(
        &mut self,
        buf: &mut [u8],
        len: &mut usize,
        in_port: u16,
        meta: &mut PacketMeta,
        icmp: &mut IcmpLimiter,
        counters: &mut Counters,
    ) -> Option<(u16, NextHop)> {
        *meta = PacketMeta {
            in_port,
            out_port: NO_PORT,
            ..PacketMeta::default()
        };
        match parse::parse(&buf[..*len], meta) {
            Ok(()) => {}
            // A router does not look past L3: Linux forwards these (the L3 fields are
            // parsed; port matches will not match them, as in iptables).
            Err(ParseError::TruncatedL4 | ParseError::BadTcpHeader) => meta.l4_valid = false,
            Err(e) => {
                counters.malformed(malformed_slot(&e));
                return None;
            }
        }
        let port = &self.ports[in_port as usize];
        // fwd's ports are untagged: a tagged frame belongs to a VLAN the box has no
        // interface on. Linux marks such a frame PACKET_OTHERHOST and drops it
        // (__netif_receive_skb_core); forwarding it would carry the tag, and the
        // VLAN, onto another port.
        if buf[..6] != port.mac || usize::from(meta.l3_off) != ethernet::HEADER_LEN {
            counters.drop(Reason::NotForUs);
            return None;
        }
        let l3 = meta.l3_off as usize;
        if meta.family == Family::V4 && !Ipv4Packet::new_unchecked(&buf[l3..*len]).verify_checksum()
        {
            counters.drop(Reason::BadChecksum);
            return None;
        }
        // PREROUTING (raw, mangle, nat) sees the frame before the routing decision.
        if !self.hook(Hook::Prerouting, meta, *len, counters) {
            return None;
        }
        let Some(route) = self.fib.lookup(meta.family, meta.dst) else {
            counters.drop(Reason::NoRoute);
            return self.icmp_error(buf, len, in_port, meta, IcmpError::NoRoute, icmp, counters);
        };
        // ip_forward: TTL before MTU before the FORWARD hook, all after routing.
        if meta.ttl <= 1 {
            counters.drop(Reason::TtlExceeded);
            return self.icmp_error(
                buf,
                len,
                in_port,
                meta,
                IcmpError::TimeExceeded,
                icmp,
                counters,
            );
        }
        let out = route.port;
        let mtu = self.ports[out as usize].mtu;
        if meta.ip_len > mtu {
            let df =
                meta.family == Family::V6 || Ipv4Packet::new_unchecked(&buf[l3..*len]).dont_frag();
            counters.drop(Reason::TooBig);
            // Linux would fragment a v4 packet without DF; fwd does not fragment.
            return if df {
                self.icmp_error(
                    buf,
                    len,
                    in_port,
                    meta,
                    IcmpError::TooBig(mtu),
                    icmp,
                    counters,
                )
            } else {
                None
            };
        }
        meta.out_port = out;
        match meta.family {
            Family::V4 => Ipv4Packet::new_unchecked(&mut buf[l3..*len]).decrement_ttl(),
            Family::V6 => Ipv6Packet::new_unchecked(&mut buf[l3..*len]).decrement_hop_limit(),
        }
        // ip_forward: FORWARD after the TTL decrement, then POSTROUTING.
        if !self.hook(Hook::Forward, meta, *len, counters)
            || !self.hook(Hook::Postrouting, meta, *len, counters)
        {
            return None;
        }
        let nh = NextHop {
            port: out,
            family: meta.family,
            addr: route.via.map_or(meta.dst, |v| super::ip_to_u128(v).1),
        };
        Some((out, nh))
    }

    /// Turns the frame into the ICMP error for it and routes that to the sender.
    #[allow(clippy::too_many_arguments)]
    #[cold]
    fn icmp_error(
        &mut self,
        buf: &mut [u8],
        len: &mut usize,
        in_port: u16,
        meta: &mut PacketMeta,
        kind: IcmpError,
        icmp: &mut IcmpLimiter,
        counters: &mut Counters,
    ) -> Option<(u16, NextHop)> {
        let port = &self.ports[in_port as usize];
        let l3 = meta.l3_off as usize;
        let new_len = match meta.family {
            Family::V4 => {
                let src = port.v4.first()?;
                if !icmp_error::should_send_icmpv4_error(meta, &buf[..*len]) || !icmp.take() {
                    counters.drop(Reason::IcmpSuppressed);
                    return None;
                }
                let (t, c, mtu) = match kind {
                    IcmpError::NoRoute => (ICMP_DEST_UNREACH, ICMP_NET_UNREACH, 0),
                    IcmpError::TimeExceeded => (ICMP_TIME_EXCEEDED, 0, 0),
                    IcmpError::TooBig(m) => (ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, m),
                };
                icmp_error::icmpv4_error_in_place_with(buf, *len, l3, *src, t, c, mtu as u32)
            }
            Family::V6 => {
                let src = port.v6.first()?;
                let (t, c, param) = match kind {
                    IcmpError::NoRoute => (ICMPV6_DEST_UNREACH, ICMPV6_NOROUTE, 0),
                    IcmpError::TimeExceeded => (ICMPV6_TIME_EXCEED, 0, 0),
                    IcmpError::TooBig(m) => (ICMPV6_PKT_TOOBIG, 0, m as u32),
                };
                if !icmp_error::should_send_icmpv6_error(meta, &buf[..*len], t, c) || !icmp.take() {
                    counters.drop(Reason::IcmpSuppressed);
                    return None;
                }
                icmp_error::icmpv6_error_in_place(buf, *len, l3, *src, t, c, param)
            }
        };
        let Some(new_len) = new_len else {
            counters.drop(Reason::IcmpSuppressed);
            return None;
        };
        *len = new_len;
        let in_port = meta.in_port;
        *meta = PacketMeta {
            in_port,
            out_port: NO_PORT,
            ..PacketMeta::default()
        };
        parse::parse(&buf[..*len], meta).ok()?;
        let route = self.fib.lookup(meta.family, meta.dst)?;
        meta.out_port = route.port;
        counters.event(Event::IcmpSent, 1);
        Some((
            route.port,
            NextHop {
                port: route.port,
                family: meta.family,
                addr: route.via.map_or(meta.dst, |v| super::ip_to_u128(v).1),
            },
        ))
    }
}

/// Writes the Ethernet addresses for the hop: destination = the next hop's MAC,
/// source = the egress port's.
#[inline]
pub fn rewrite_l2(buf: &mut [u8], dst: [u8; 6], src: [u8; 6]) {
    buf[..6].copy_from_slice(&dst);
    buf[6..12].copy_from_slice(&src);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        dataplane::stats::{SharedCounters, Totals},
        packet::testdata::{frame, ETH_V4, IPV4_SYN_HDR, TCP_SYN},
        route::{FibBuilder, RouteEntry},
        rules::{Env, Ruleset},
    };

    /// A two-port box with a default route out of port 1 and no rules; routes
    /// `f` received on port 0 and returns the verdict and the drop counters.
    fn route(f: &[u8]) -> (Option<u16>, Totals) {
        let port = |name: &str, mac: [u8; 6]| PortInfo {
            interface: name.into(),
            ifindex: 1,
            mac,
            mtu: 1500,
            v4: vec![Ipv4Addr::new(198, 18, 0, 1)],
            v6: Vec::new(),
            nets: Vec::new(),
        };
        let mac_a: [u8; 6] = ETH_V4[..6].try_into().unwrap();
        let ports = [port("a", mac_a), port("b", [2, 0, 0, 0, 0, 0xb])];
        let mut fib = FibBuilder::new();
        fib.add("0.0.0.0/0".parse().unwrap(), RouteEntry::new(1, None))
            .unwrap();
        let fib = fib.build();
        let env = Env {
            ports: vec!["a".into(), "b".into()],
            local_addrs: Vec::new(),
        };
        let classifier =
            Classifier::compile(&Ruleset::new(Vec::new(), Vec::new()).unwrap(), &env).unwrap();
        let mut flow_cache = FlowCache::new(16);
        let mut rule_counters = RuleCounters::new(classifier.counter_len());
        let mut router = Router {
            fib: &fib,
            ports: &ports,
            classifier: &classifier,
            flow_cache: &mut flow_cache,
            rule_counters: &mut rule_counters,
        };
        let mut buf = f.to_vec();
        buf.resize(2048, 0);
        let mut len = f.len();
        let mut meta = PacketMeta::default();
        let mut counters = Counters::new(2);
        let verdict = router.route(
            &mut buf,
            &mut len,
            0,
            &mut meta,
            &mut IcmpLimiter::new(1000, 50),
            &mut counters,
        );
        let shared = SharedCounters::new(2);
        counters.publish(&shared);
        (verdict.map(|(p, _)| p), Totals::sum(&[&shared]))
    }

    #[test]
    fn untagged_frames_are_forwarded_and_tagged_ones_are_not_for_us() {
        let (v, t) = route(&frame(&[&ETH_V4, &IPV4_SYN_HDR, &TCP_SYN]));
        assert_eq!(v, Some(1));
        assert_eq!(t.drop_count("not_for_us"), 0);
        // The same frame with an 802.1Q tag (VLAN 5): Linux drops it as
        // PACKET_OTHERHOST on a port without a VLAN device; found by
        // fwd/tests/robustness.rs, where fwd forwarded it with its tag.
        let tagged = frame(&[
            &ETH_V4[..12],
            &[0x81, 0x00, 0x00, 0x05, 0x08, 0x00],
            &IPV4_SYN_HDR,
            &TCP_SYN,
        ]);
        let (v, t) = route(&tagged);
        assert_eq!(v, None);
        assert_eq!(t.drop_count("not_for_us"), 1);
        assert_eq!(t.drop_count("malformed"), 0);
    }
}
