//! What happens to one frame between RX and TX, as Linux's ip_forward and
//! netfilter do it: parse, L2 check, header checksum, raw PREROUTING, conntrack,
//! PREROUTING with DNAT, route, TTL, MTU, TTL decrement, FORWARD (REJECT),
//! POSTROUTING with SNAT/MASQUERADE, confirm. ICMP errors and TCP resets are built
//! in the same frame and routed back like any packet. Pure logic over bytes: the
//! worker owns the frames, this owns the rules.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::Instant,
};

use crate::{
    classify::{Classifier, FlowCache},
    conntrack::{
        self, ctstatus as ct_status, CtDrop, CtResult, CtState, Manip, NatError, NatRange,
    },
    packet::{
        ethernet, icmp_error,
        ipv4::Ipv4Packet,
        ipv6::Ipv6Packet,
        meta::{ctstate, ctstatus, Family, PacketMeta, NO_PORT},
        parse::{self, ParseError},
        reject,
    },
    route::{neigh::NextHop, Fib},
    rules::{Hook, HookPart, NatKind, NatTarget, RejectWith, RuleCounters, Verdict},
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
/// worker's own flow cache, rule counters, connection table, ICMP budget and
/// counters.
pub struct Router<'a> {
    pub fib: &'a Fib,
    pub ports: &'a [PortInfo],
    pub classifier: &'a Classifier,
    pub flow_cache: &'a mut FlowCache,
    pub rule_counters: &'a mut RuleCounters,
    /// The worker's connection table; None when the rules need no tracking.
    pub ct: Option<&'a mut conntrack::Table>,
    pub icmp: &'a mut IcmpLimiter,
    pub counters: &'a mut Counters,
    /// Coarse clock for conntrack timeouts, milliseconds.
    pub now_ms: u64,
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
    /// `-j REJECT --reject-with` an ICMP kind: its (type, code).
    Reject(u8, u8),
}

/// What happened to a frame, before conntrack is told.
enum Outcome {
    /// Forward the (possibly translated) frame.
    Forward(u16, NextHop),
    /// The frame became fwd's own answer (ICMP error, TCP reset): send it, but the
    /// packet it answers was not accepted.
    Answer(u16, NextHop),
    /// Free the frame (the reason is counted).
    Drop,
}

/// meta's `--ctstate` bits for a conntrack result (xt_conntrack: the SNAT/DNAT
/// virtual states hold beside the real one).
fn ctstate_bits(r: &CtResult) -> u8 {
    let state = match r.state {
        CtState::New => ctstate::NEW,
        CtState::Established => ctstate::ESTABLISHED,
        CtState::Related => ctstate::RELATED,
        CtState::Invalid => ctstate::INVALID,
        CtState::Untracked => ctstate::UNTRACKED,
    };
    state | nat_state_bits(r.status)
}

fn nat_state_bits(status: u16) -> u8 {
    let mut bits = 0;
    if status & ct_status::SRC_NAT != 0 {
        bits |= ctstate::SNAT;
    }
    if status & ct_status::DST_NAT != 0 {
        bits |= ctstate::DNAT;
    }
    bits
}

/// meta's `--ctstatus` bits: Linux's low status bits (EXPECTED, SEEN_REPLY,
/// ASSURED, CONFIRMED) have the same values.
fn ctstatus_bits(status: u16) -> u8 {
    (status & 0x0f) as u8
}

impl Router<'_> {
    /// Runs one part of a hook's rules.
    #[inline]
    fn hook(&mut self, hook: Hook, part: HookPart, meta: &mut PacketMeta, len: usize) -> Verdict {
        // A hook without rules costs one load, not a flow-cache probe.
        if self.classifier.program_len(hook) == 0 {
            return Verdict::Accept;
        }
        self.flow_cache.run_hook_part(
            self.classifier,
            hook,
            part,
            meta,
            len as u32,
            self.rule_counters,
        )
    }

    /// Judges one frame received on `in_port`. `buf` is the whole UMEM chunk from
    /// the frame's first byte and `len` the frame length; both may be rewritten (NAT,
    /// or an ICMP error / TCP reset replacing the frame). Returns the egress port and
    /// next hop, or `None` when the frame is to be freed (the reason is counted).
    #[inline]
    pub fn route(
        &mut self,
        buf: &mut [u8],
        len: &mut usize,
        in_port: u16,
        meta: &mut PacketMeta,
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
                self.counters.malformed(malformed_slot(&e));
                return None;
            }
        }
        let port = &self.ports[in_port as usize];
        // fwd's ports are untagged: a tagged frame belongs to a VLAN the box has no
        // interface on. Linux marks such a frame PACKET_OTHERHOST and drops it
        // (__netif_receive_skb_core); forwarding it would carry the tag, and the
        // VLAN, onto another port.
        if buf[..6] != port.mac || usize::from(meta.l3_off) != ethernet::HEADER_LEN {
            self.counters.drop(Reason::NotForUs);
            return None;
        }
        let l3 = meta.l3_off as usize;
        if meta.family == Family::V4 && !Ipv4Packet::new_unchecked(&buf[l3..*len]).verify_checksum()
        {
            self.counters.drop(Reason::BadChecksum);
            return None;
        }
        // PREROUTING's raw table runs before conntrack (priority -300 vs -200).
        if self.hook(Hook::Prerouting, HookPart::Raw, meta, *len) != Verdict::Accept {
            self.counters.drop(Reason::Filtered);
            return None;
        }
        let ct = match (self.ct.as_deref_mut(), meta.ctstate & ctstate::UNTRACKED) {
            (Some(table), 0) => match table.track(&buf[..*len], meta, 0, self.now_ms) {
                Ok(r) => Some(r),
                Err(CtDrop::TableFull) => {
                    self.counters.drop(Reason::CtTableFull);
                    return None;
                }
                Err(CtDrop::Clash) => {
                    self.counters.drop(Reason::CtClash);
                    return None;
                }
            },
            _ => None,
        };
        if let Some(r) = &ct {
            meta.ctstate = ctstate_bits(r);
            meta.ctstatus = ctstatus_bits(r.status) | self.nat_done(r, Manip::Dst);
        }
        let outcome = self.route_tracked(buf, len, in_port, meta, ct.as_ref());
        // nf_conntrack_confirm: a NEW entry lives on only if its packet got through.
        if let (Some(table), Some(h)) = (self.ct.as_deref_mut(), ct.and_then(|r| r.handle)) {
            match outcome {
                Outcome::Forward(..) => {
                    table.confirm(h);
                }
                Outcome::Answer(..) | Outcome::Drop => {
                    table.discard_unconfirmed(h);
                }
            }
        }
        match outcome {
            Outcome::Forward(p, nh) | Outcome::Answer(p, nh) => Some((p, nh)),
            Outcome::Drop => None,
        }
    }

    /// Everything after conntrack: the rest of PREROUTING with DNAT, routing, TTL,
    /// MTU, FORWARD (with REJECT), POSTROUTING with SNAT/MASQUERADE.
    #[inline]
    fn route_tracked(
        &mut self,
        buf: &mut [u8],
        len: &mut usize,
        in_port: u16,
        meta: &mut PacketMeta,
        ct: Option<&CtResult>,
    ) -> Outcome {
        match self.hook(Hook::Prerouting, HookPart::AfterRaw, meta, *len) {
            Verdict::Accept => {}
            _ => {
                self.counters.drop(Reason::Filtered);
                return Outcome::Drop;
            }
        }
        if let Some(r) = ct {
            if !self.nat_hook(buf, *len, meta, r, Manip::Dst, NO_PORT) {
                return Outcome::Drop;
            }
        }
        let l3 = meta.l3_off as usize;
        let Some(route) = self.fib.lookup(meta.family, meta.dst) else {
            self.counters.drop(Reason::NoRoute);
            return self.icmp_error(buf, len, in_port, meta, IcmpError::NoRoute);
        };
        // ip_forward: TTL before MTU before the FORWARD hook, all after routing.
        if meta.ttl <= 1 {
            self.counters.drop(Reason::TtlExceeded);
            return self.icmp_error(buf, len, in_port, meta, IcmpError::TimeExceeded);
        }
        let out = route.port;
        let mtu = self.ports[out as usize].mtu;
        if meta.ip_len > mtu {
            let df =
                meta.family == Family::V6 || Ipv4Packet::new_unchecked(&buf[l3..*len]).dont_frag();
            self.counters.drop(Reason::TooBig);
            // Linux would fragment a v4 packet without DF; fwd does not fragment.
            return if df {
                self.icmp_error(buf, len, in_port, meta, IcmpError::TooBig(mtu))
            } else {
                Outcome::Drop
            };
        }
        meta.out_port = out;
        match meta.family {
            Family::V4 => Ipv4Packet::new_unchecked(&mut buf[l3..*len]).decrement_ttl(),
            Family::V6 => Ipv6Packet::new_unchecked(&mut buf[l3..*len]).decrement_hop_limit(),
        }
        // ip_forward: FORWARD after the TTL decrement, then POSTROUTING.
        match self.hook(Hook::Forward, HookPart::All, meta, *len) {
            Verdict::Accept => {}
            Verdict::Drop => {
                self.counters.drop(Reason::Filtered);
                return Outcome::Drop;
            }
            Verdict::Reject(with) => {
                self.counters.drop(Reason::Rejected);
                return self.reject(buf, len, in_port, meta, with);
            }
        }
        if let Some(r) = ct {
            meta.ctstatus = (meta.ctstatus & !ctstatus::NAT_DONE) | self.nat_done(r, Manip::Src);
        }
        match self.hook(Hook::Postrouting, HookPart::All, meta, *len) {
            Verdict::Accept => {}
            _ => {
                self.counters.drop(Reason::Filtered);
                return Outcome::Drop;
            }
        }
        if let Some(r) = ct {
            if !self.nat_hook(buf, *len, meta, r, Manip::Src, out) {
                return Outcome::Drop;
            }
        }
        let nh = NextHop {
            port: out,
            family: meta.family,
            addr: route.via.map_or(meta.dst, |v| super::ip_to_u128(v).1),
        };
        Outcome::Forward(out, nh)
    }

    /// [`ctstatus::NAT_DONE`] for the nat table at `manip`'s hook: set once the
    /// entry has its binding (nf_nat_initialized), so that only a connection's first
    /// packet runs the nat chains, not every packet that is still NEW (a
    /// retransmitted SYN, a second datagram before the reply).
    #[inline]
    fn nat_done(&self, r: &CtResult, manip: Manip) -> u8 {
        match (self.ct.as_deref(), r.handle) {
            (Some(table), Some(h)) if !table.needs_nat_setup(h, manip) => ctstatus::NAT_DONE,
            _ => 0,
        }
    }

    /// nf_nat_inet_fn at one hook: on a flow's first packet set up the binding the
    /// nat table chose (or the identity), then rewrite the packet if its flow and
    /// direction need it. False when the packet must be dropped (counted).
    #[inline]
    fn nat_hook(
        &mut self,
        buf: &mut [u8],
        len: usize,
        meta: &mut PacketMeta,
        r: &CtResult,
        manip: Manip,
        out_port: u16,
    ) -> bool {
        let (Some(table), Some(h)) = (self.ct.as_deref_mut(), r.handle) else {
            return true;
        };
        if table.needs_nat_setup(h, manip) {
            let slot = std::mem::take(&mut meta.nat);
            let target = (slot as usize)
                .checked_sub(1)
                .and_then(|i| self.classifier.nat_targets().get(i));
            let set = match target {
                Some(t) if manip == Manip::Src && t.kind == NatKind::Masquerade => {
                    let port = &self.ports[out_port as usize];
                    let addr = match meta.family {
                        Family::V4 => port.v4.first().map(|a| u128::from(u32::from(*a))),
                        Family::V6 => port.v6.first().map(|a| u128::from(*a)),
                    };
                    match addr {
                        // The egress address is the box's: replies must carry a port
                        // the XDP program knows as fwd's.
                        Some(a) => table.setup_masquerade(
                            h,
                            a,
                            nat_ports(t).or(Some(super::NAT_LOCAL_PORTS)),
                            self.now_ms,
                        ),
                        // MASQUERADE with no address on the egress port: Linux drops.
                        None => Err(NatError::Exhausted),
                    }
                }
                Some(t) => {
                    // SNAT to one of the box's own addresses: as for MASQUERADE.
                    let local =
                        manip == Manip::Src && is_local(self.ports, meta.family, t.addr_min);
                    let ports = nat_ports(t).or(local.then_some(super::NAT_LOCAL_PORTS));
                    table.setup_nat(
                        h,
                        manip,
                        &NatRange {
                            addrs: (t.addr_max != 0).then_some((t.addr_min, t.addr_max)),
                            ports,
                            persistent: false,
                        },
                        self.now_ms,
                    )
                }
                // No NAT rule matched: the identity binding (nf_nat_alloc_null_binding).
                None => table.setup_nat(h, manip, &NatRange::default(), self.now_ms),
            };
            if set.is_err() {
                self.counters.drop(Reason::NatExhausted);
                return false;
            }
            let status = table.status(h);
            meta.ctstate =
                (meta.ctstate & !(ctstate::SNAT | ctstate::DNAT)) | nat_state_bits(status);
            meta.ctstatus = ctstatus_bits(status);
        }
        match table.nat(r, manip, &mut buf[..len], meta) {
            Ok(_) => true,
            Err(_) => {
                self.counters.drop(Reason::NatExhausted);
                false
            }
        }
    }

    /// `-j REJECT`: turn the frame into the answer it asks for and route that back.
    #[cold]
    fn reject(
        &mut self,
        buf: &mut [u8],
        len: &mut usize,
        in_port: u16,
        meta: &mut PacketMeta,
        with: RejectWith,
    ) -> Outcome {
        if with == RejectWith::TcpReset {
            if !self.icmp.take() {
                self.counters.drop(Reason::IcmpSuppressed);
                return Outcome::Drop;
            }
            let Some(n) = reject::tcp_reset_in_place(buf, *len, meta) else {
                return Outcome::Drop;
            };
            *len = n;
            return self.route_answer(buf, *len, in_port, meta);
        }
        match with.icmp(meta.family) {
            Some((t, c)) => self.icmp_error(buf, len, in_port, meta, IcmpError::Reject(t, c)),
            None => Outcome::Drop,
        }
    }

    /// Turns the frame into the ICMP error for it and routes that to the sender.
    #[cold]
    fn icmp_error(
        &mut self,
        buf: &mut [u8],
        len: &mut usize,
        in_port: u16,
        meta: &mut PacketMeta,
        kind: IcmpError,
    ) -> Outcome {
        let port = &self.ports[in_port as usize];
        let l3 = meta.l3_off as usize;
        let new_len = match meta.family {
            Family::V4 => {
                let Some(src) = port.v4.first() else {
                    return Outcome::Drop;
                };
                if !icmp_error::should_send_icmpv4_error(meta, &buf[..*len]) || !self.icmp.take() {
                    self.counters.drop(Reason::IcmpSuppressed);
                    return Outcome::Drop;
                }
                let (t, c, mtu) = match kind {
                    IcmpError::NoRoute => (ICMP_DEST_UNREACH, ICMP_NET_UNREACH, 0),
                    IcmpError::TimeExceeded => (ICMP_TIME_EXCEEDED, 0, 0),
                    IcmpError::TooBig(m) => (ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, m),
                    IcmpError::Reject(t, c) => (t, c, 0),
                };
                icmp_error::icmpv4_error_in_place_with(buf, *len, l3, *src, t, c, mtu as u32)
            }
            Family::V6 => {
                let Some(src) = port.v6.first() else {
                    return Outcome::Drop;
                };
                let (t, c, param) = match kind {
                    IcmpError::NoRoute => (ICMPV6_DEST_UNREACH, ICMPV6_NOROUTE, 0),
                    IcmpError::TimeExceeded => (ICMPV6_TIME_EXCEED, 0, 0),
                    IcmpError::TooBig(m) => (ICMPV6_PKT_TOOBIG, 0, m as u32),
                    IcmpError::Reject(t, c) => (t, c, 0),
                };
                if !icmp_error::should_send_icmpv6_error(meta, &buf[..*len], t, c)
                    || !self.icmp.take()
                {
                    self.counters.drop(Reason::IcmpSuppressed);
                    return Outcome::Drop;
                }
                icmp_error::icmpv6_error_in_place(buf, *len, l3, *src, t, c, param)
            }
        };
        let Some(new_len) = new_len else {
            self.counters.drop(Reason::IcmpSuppressed);
            return Outcome::Drop;
        };
        *len = new_len;
        self.route_answer(buf, new_len, in_port, meta)
    }

    /// Routes fwd's own answer (already in the frame) to its destination.
    fn route_answer(
        &mut self,
        buf: &mut [u8],
        len: usize,
        in_port: u16,
        meta: &mut PacketMeta,
    ) -> Outcome {
        *meta = PacketMeta {
            in_port,
            out_port: NO_PORT,
            ..PacketMeta::default()
        };
        if parse::parse(&buf[..len], meta).is_err() {
            return Outcome::Drop;
        }
        let Some(route) = self.fib.lookup(meta.family, meta.dst) else {
            return Outcome::Drop;
        };
        meta.out_port = route.port;
        self.counters.event(Event::IcmpSent, 1);
        Outcome::Answer(
            route.port,
            NextHop {
                port: route.port,
                family: meta.family,
                addr: route.via.map_or(meta.dst, |v| super::ip_to_u128(v).1),
            },
        )
    }
}

/// Whether `addr` is one of the box's addresses.
fn is_local(ports: &[PortInfo], family: Family, addr: u128) -> bool {
    ports.iter().any(|p| match family {
        Family::V4 => p.v4.iter().any(|a| u128::from(u32::from(*a)) == addr),
        Family::V6 => p.v6.iter().any(|a| u128::from(*a) == addr),
    })
}

/// A NAT target's port range as conntrack takes it (0/0: keep the port).
fn nat_ports(t: &NatTarget) -> Option<(u16, u16)> {
    (t.port_max != 0).then_some((t.port_min, t.port_max))
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
        let mut buf = f.to_vec();
        buf.resize(2048, 0);
        let mut len = f.len();
        let mut meta = PacketMeta::default();
        let mut counters = Counters::new(2);
        let mut icmp = IcmpLimiter::new(1000, 50);
        let verdict = Router {
            fib: &fib,
            ports: &ports,
            classifier: &classifier,
            flow_cache: &mut flow_cache,
            rule_counters: &mut rule_counters,
            ct: None,
            icmp: &mut icmp,
            counters: &mut counters,
            now_ms: 0,
        }
        .route(&mut buf, &mut len, 0, &mut meta);
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
