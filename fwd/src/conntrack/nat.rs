//! NAT bindings kept in the conntrack entry, as nf_nat_core.c keeps them: a
//! binding rewrites the entry's *reply* tuple, so replies find the entry and the
//! difference between "the inverse of the reply tuple" and the original tuple is
//! the translation. Setup (`nf_nat_setup_info` / `get_unique_tuple`) happens once
//! per flow on its first packet; every later packet is rewritten from the tuples
//! (`nf_nat_packet`, `nf_nat_manip_pkt`), with incremental checksum updates
//! (RFC 1624), and ICMP errors about a NATed flow get their quoted header
//! translated back (`nf_nat_icmp_reply_translation`).
//!
//! Not done: `find_appropriate_src` (reusing a source's earlier SNAT address when
//! a range has several), random-fully, NETMAP, helpers (FTP/SIP payload rewrite),
//! flushing MASQUERADE bindings when the egress address changes.

use super::ctstatus::{CONFIRMED, DST_NAT, DST_NAT_DONE, NAT_MASK, PUBLIC, SRC_NAT, SRC_NAT_DONE};
use super::table::{Conn, Table};
use super::tuple::{icmp_checksum_ok, icmp_is_error, ip_end, parse_inner, pseudo_v6, FlowKey, L4};
use super::{CtHandle, CtResult, CtState, Dir};
use crate::packet::checksum::{self, update_u128, update_u16, update_u32};
use crate::packet::meta::{Family, PacketMeta};
use crate::packet::{get_u16, get_u32, set_u16, set_u32};

/// Which side of the packet a binding rewrites (enum nf_nat_manip_type): the
/// source in POSTROUTING (SNAT, MASQUERADE), the destination in PREROUTING (DNAT).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Manip {
    Src,
    Dst,
}

impl Manip {
    fn flip(self) -> Manip {
        match self {
            Manip::Src => Manip::Dst,
            Manip::Dst => Manip::Src,
        }
    }

    /// The status bit a packet of the original direction needs for this manip.
    fn status_bit(self) -> u16 {
        match self {
            Manip::Src => SRC_NAT,
            Manip::Dst => DST_NAT,
        }
    }

    fn done_bit(self) -> u16 {
        match self {
            Manip::Src => SRC_NAT_DONE,
            Manip::Dst => DST_NAT_DONE,
        }
    }
}

/// `--to-source` / `--to-destination` / `--to-ports` (struct nf_nat_range2).
/// Bounds are inclusive; addresses are `u128` of the flow's family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NatRange {
    /// NF_NAT_RANGE_MAP_IPS; None keeps the address (`--to-destination :8080`).
    pub addrs: Option<(u128, u128)>,
    /// NF_NAT_RANGE_PROTO_SPECIFIED: ports for TCP/UDP, identifiers for ICMP echo.
    pub ports: Option<(u16, u16)>,
    /// NF_NAT_RANGE_PERSISTENT: the address choice ignores the destination.
    pub persistent: bool,
}

impl NatRange {
    pub fn addr(a: u128) -> NatRange {
        NatRange {
            addrs: Some((a, a)),
            ..NatRange::default()
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatError {
    /// The handle's entry is gone (the packet's entry was removed meanwhile).
    StaleHandle,
    /// The binding for this manip was set already, or the entry is confirmed: NAT
    /// is decided on a flow's first packet only.
    AlreadySet,
    /// Every tuple of the range is in use (the NEW packet must be dropped;
    /// counted in `CtStats::nat_exhausted`).
    Exhausted,
    /// An ICMP error to translate failed its checksum or has no quoted header
    /// (nf_nat_icmp_reply_translation drops it).
    BadIcmpError,
}

/// nf_nat_l4proto_unique_tuple's bound on probes: a search of a whole 64k range
/// per NEW packet would stall the worker, so Linux tries 128, then halves the
/// attempts from a new offset while they stay ≥ 16. A nearly full range can thus
/// fail before it is truly exhausted, as in Linux.
const NAT_MAX_ATTEMPTS: u32 = 128;

impl Table {
    /// True while the nat table must still be consulted for this manip: the
    /// entry is unconfirmed (first packet) and has no binding for it yet.
    pub fn needs_nat_setup(&self, h: CtHandle, manip: Manip) -> bool {
        self.conn(h)
            .is_some_and(|c| c.status & (CONFIRMED | manip.done_bit()) == 0)
    }

    /// `-j DNAT --to-destination` on the first packet, in PREROUTING.
    pub fn setup_dnat(&mut self, h: CtHandle, range: &NatRange, now: u64) -> Result<(), NatError> {
        self.setup_nat(h, Manip::Dst, range, now)
    }

    /// `-j SNAT --to-source` on the first packet, in POSTROUTING.
    pub fn setup_snat(&mut self, h: CtHandle, range: &NatRange, now: u64) -> Result<(), NatError> {
        self.setup_nat(h, Manip::Src, range, now)
    }

    /// `-j MASQUERADE [--to-ports]`: SNAT to `egress_addr`, the address of the port
    /// the packet leaves by (nf_nat_masquerade_ipv4 picks it with inet_select_addr;
    /// the integrator passes it).
    pub fn setup_masquerade(
        &mut self,
        h: CtHandle,
        egress_addr: u128,
        ports: Option<(u16, u16)>,
        now: u64,
    ) -> Result<(), NatError> {
        let range = NatRange {
            addrs: Some((egress_addr, egress_addr)),
            ports,
            persistent: false,
        };
        self.setup_nat(h, Manip::Src, &range, now)
    }

    /// nf_nat_setup_info: picks a unique tuple in `range` for this manip and moves
    /// the entry's reply tuple to it. Sets SRC_NAT/DST_NAT only if something
    /// changed, and the *_NAT_DONE bit always.
    pub fn setup_nat(
        &mut self,
        h: CtHandle,
        manip: Manip,
        range: &NatRange,
        now: u64,
    ) -> Result<(), NatError> {
        let c = self.conn(h).ok_or(NatError::StaleHandle)?;
        if c.status & (CONFIRMED | manip.done_bit()) != 0 {
            return Err(NatError::AlreadySet);
        }
        // What we've got will look like the inverse of the reply (earlier
        // manips included).
        let curr = c.tuple[1].invert().ok_or(NatError::StaleHandle)?;
        let Some(new) = self.unique_tuple(&curr, range, manip, h.idx, now) else {
            self.stats.nat_exhausted += 1;
            return Err(NatError::Exhausted);
        };
        let idx = h.idx as usize;
        if new != curr {
            // nf_conntrack_alter_reply.
            let reply = new.invert().ok_or(NatError::StaleHandle)?;
            let old = self.conns[idx].tuple[1];
            self.index_remove(&old, h.idx << 1 | 1);
            self.conns[idx].tuple[1] = reply;
            self.index_insert(reply.hash(self.seed), h.idx << 1 | 1);
            self.conns[idx].status |= manip.status_bit();
        }
        self.conns[idx].status |= manip.done_bit();
        Ok(())
    }

    /// nf_nat_used_tuple: would `t` as the original side make a reply tuple some
    /// other entry already uses? Expired holders are reclaimed on the way.
    fn used_tuple(&mut self, t: &FlowKey, own: u32, now: u64) -> bool {
        let Some(reply) = t.invert() else {
            return true;
        };
        match self.find(&reply, reply.hash(self.seed)) {
            None => false,
            // Our own current reply tuple is free for us to keep.
            Some((idx, Dir::Reply)) if idx == own => false,
            Some((idx, _)) if idx != own && self.conns[idx as usize].expires <= now => {
                self.reap(idx);
                false
            }
            Some(_) => true,
        }
    }

    /// get_unique_tuple.
    fn unique_tuple(
        &mut self,
        curr: &FlowKey,
        range: &NatRange,
        manip: Manip,
        own: u32,
        now: u64,
    ) -> Option<FlowKey> {
        let l4 = L4::of(curr.family, curr.proto);
        // 1) SNAT keeps the source as it is when that fits and is free.
        if manip == Manip::Src
            && addr_in_range(curr, range, manip)
            && port_in_range(curr, range, manip, l4)
            && !self.used_tuple(curr, own, now)
        {
            return Some(*curr);
        }
        // 2) The address: one choice per flow, by hash (find_best_ips_proto).
        let mut t = *curr;
        if let Some((lo, hi)) = range.addrs {
            let a = self.pick_addr(curr, lo, hi, range.persistent);
            match manip {
                Manip::Src => t.src = a,
                Manip::Dst => t.dst = a,
            }
        }
        // 3) Keep the port if it fits.
        if port_in_range(&t, range, manip, l4) && !self.used_tuple(&t, own, now) {
            return Some(t);
        }
        // 4) nf_nat_l4proto_unique_tuple.
        let (min, size) = match (range.ports, l4) {
            (_, L4::Generic) => return None,
            (Some((a, b)), _) => (u32::from(a.min(b)), u32::from(a.max(b) - a.min(b)) + 1),
            (None, L4::IcmpQuery) => (0, 65_536),
            // "If it's dst rewrite, can't change port."
            (None, _) if manip == Manip::Dst => return None,
            (None, _) => match key_port(&t, manip, l4) {
                // Low ports stay low: < 512 and 600..1024 by convention
                // (credential passing); the rest maps to 1024..=65535.
                p if p < 512 => (1, 511),
                p if p < 1024 => (600, 424),
                _ => (1024, 64_512),
            },
        };
        let mut attempts = size.min(NAT_MAX_ATTEMPTS);
        let mut round = 0u64;
        loop {
            // Linux starts from a random offset; a keyed hash of the tuple spreads
            // flows the same way and keeps tests reproducible.
            let mut off = t.hash(self.seed ^ round.wrapping_mul(0x9e37_79b9_7f4a_7c15)) as u32;
            for _ in 0..attempts {
                set_key_port(&mut t, manip, l4, (min + off % size) as u16);
                if !self.used_tuple(&t, own, now) {
                    return Some(t);
                }
                off = off.wrapping_add(1);
            }
            if attempts >= size || attempts < 16 {
                return None;
            }
            attempts /= 2;
            round += 1;
        }
    }

    fn pick_addr(&self, t: &FlowKey, lo: u128, hi: u128, persistent: bool) -> u128 {
        if lo >= hi {
            return lo;
        }
        // Hash source (and destination unless persistent) so one client keeps
        // one address toward one server (Linux: "Internet Banking sites like this").
        let k = FlowKey {
            src: t.src,
            dst: if persistent { 0 } else { t.dst },
            sport: 0,
            dport: 0,
            zone: t.zone,
            proto: 0,
            family: t.family,
        };
        let span = hi - lo;
        let j = u128::from(k.hash(self.seed));
        if span == u128::MAX {
            lo.wrapping_add(j)
        } else {
            lo + j % (span + 1)
        }
    }

    /// nf_nat_packet (and nf_nat_icmp_reply_translation for a RELATED error) at
    /// the hook that does `manip`: PREROUTING → `Manip::Dst`, POSTROUTING →
    /// `Manip::Src`. Rewrites the frame and `meta` when this flow and direction
    /// need it; returns whether it did.
    pub fn nat(
        &self,
        ct: &CtResult,
        manip: Manip,
        frame: &mut [u8],
        meta: &mut PacketMeta,
    ) -> Result<bool, NatError> {
        let Some(h) = ct.handle else {
            return Ok(false);
        };
        let c = self.conn(h).ok_or(NatError::StaleHandle)?;
        // Original direction: SNAT in POSTROUTING, DNAT in PREROUTING; the reply
        // direction undoes them at the opposite hooks.
        let mut bit = manip.status_bit();
        if ct.dir == Dir::Reply {
            bit ^= NAT_MASK;
        }
        if c.status & bit == 0 {
            return Ok(false);
        }
        if ct.state == CtState::Related {
            return icmp_reply_translation(c, ct.dir, manip, frame, meta).map(|()| true);
        }
        let target = c.tuple[ct.dir.flip().index()]
            .invert()
            .ok_or(NatError::StaleHandle)?;
        let pos = Pos::outer(frame, meta);
        manip_pkt(frame, &pos, &target, manip, true);
        update_meta(meta, &target, manip);
        Ok(true)
    }

    /// Both manips in hook order (DNAT side, then SNAT side), for callers that do
    /// not split the rewrite across PREROUTING and POSTROUTING.
    pub fn apply(
        &self,
        ct: &CtResult,
        frame: &mut [u8],
        meta: &mut PacketMeta,
    ) -> Result<bool, NatError> {
        let d = self.nat(ct, Manip::Dst, frame, meta)?;
        let s = self.nat(ct, Manip::Src, frame, meta)?;
        Ok(d || s)
    }

    /// The entry's ctstatus (for rules that run after a NAT setup changed it).
    pub fn status(&self, h: CtHandle) -> u16 {
        self.conn(h).map_or(0, |c| c.status & PUBLIC)
    }
}

fn addr_in_range(t: &FlowKey, r: &NatRange, manip: Manip) -> bool {
    let a = match manip {
        Manip::Src => t.src,
        Manip::Dst => t.dst,
    };
    r.addrs.is_none_or(|(lo, hi)| lo <= a && a <= hi)
}

fn port_in_range(t: &FlowKey, r: &NatRange, manip: Manip, l4: L4) -> bool {
    match (r.ports, l4) {
        (None, _) | (_, L4::Generic) => true,
        (Some((a, b)), _) => {
            let p = key_port(t, manip, l4);
            a.min(b) <= p && p <= a.max(b)
        }
    }
}

/// The field nf_nat_l4proto_unique_tuple varies: the port on the manipulated
/// side, or the ICMP identifier (kept in `sport` in both directions).
fn key_port(t: &FlowKey, manip: Manip, l4: L4) -> u16 {
    match (l4, manip) {
        (L4::IcmpQuery, _) | (_, Manip::Src) => t.sport,
        (_, Manip::Dst) => t.dport,
    }
}

fn set_key_port(t: &mut FlowKey, manip: Manip, l4: L4, p: u16) {
    match (l4, manip) {
        (L4::IcmpQuery, _) | (_, Manip::Src) => t.sport = p,
        (_, Manip::Dst) => t.dport = p,
    }
}

fn update_meta(meta: &mut PacketMeta, target: &FlowKey, manip: Manip) {
    let ports = matches!(L4::of(meta.family, meta.proto), L4::Tcp | L4::Udp) && meta.l4_valid;
    match manip {
        Manip::Src => {
            meta.src = target.src;
            if ports {
                meta.sport = target.sport;
            }
        }
        Manip::Dst => {
            meta.dst = target.dst;
            if ports {
                meta.dport = target.dport;
            }
        }
    }
}

/// Where one IP packet sits in the frame: the outer packet, or the one quoted
/// inside an ICMP error (then `end` is where the quote stops).
struct Pos {
    family: Family,
    l3: usize,
    l4: usize,
    end: usize,
    proto: u8,
    /// The transport header is here (not a later fragment).
    has_l4: bool,
}

impl Pos {
    fn outer(frame: &[u8], meta: &PacketMeta) -> Pos {
        Pos {
            family: meta.family,
            l3: usize::from(meta.l3_off),
            l4: usize::from(meta.l4_off),
            end: ip_end(frame, meta),
            proto: meta.proto,
            has_l4: meta.l4_valid && !meta.fragment,
        }
    }
}

/// Rewrites a transport checksum at `at` with `f`, keeping UDP's rules: over IPv4
/// a zero checksum means none and stays zero; a computed zero is sent as 0xffff
/// (RFC 768; Linux's __udp_manip_pkt and CSUM_MANGLED_0).
fn l4_csum(buf: &mut [u8], at: usize, udp: bool, family: Family, f: impl Fn(u16) -> u16) {
    let old = get_u16(buf, at);
    if udp && family == Family::V4 && old == 0 {
        return;
    }
    let new = match f(old) {
        0 if udp => 0xffff,
        c => c,
    };
    set_u16(buf, at, new);
}

/// nf_nat_ipv4_manip_pkt / nf_nat_ipv6_manip_pkt + the l4proto manip: make the
/// `manip` side of the packet at `p` equal to `target`'s, fixing every checksum
/// that covers what changed. `ports`: also the transport port (or ICMP id).
fn manip_pkt(buf: &mut [u8], p: &Pos, target: &FlowKey, manip: Manip, ports: bool) {
    let l4 = L4::of(p.family, p.proto);
    let avail = p.end.saturating_sub(p.l4);
    let udp = l4 == L4::Udp;
    // The transport checksum field, when it is inside the bytes we have. A quoted
    // TCP header holds its checksum only if all 20 bytes were quoted (Linux
    // tcp_manip_pkt: "cannot update the checksum field since it is outside of the
    // 8 bytes of transport layer headers we are guaranteed").
    let csum_at = if !p.has_l4 {
        None
    } else {
        match l4 {
            L4::Tcp if avail >= 20 => Some(p.l4 + 16),
            L4::Udp if avail >= 8 => Some(p.l4 + 6),
            // ICMPv6 covers the pseudo-header; ICMPv4 does not.
            L4::IcmpQuery if avail >= 4 => Some(p.l4 + 2),
            _ => None,
        }
    };
    let pseudo_csum = csum_at.filter(|_| l4 != L4::IcmpQuery || p.family == Family::V6);
    match p.family {
        Family::V4 => {
            let at = p.l3 + if manip == Manip::Src { 12 } else { 16 };
            let (old, new) = (get_u32(buf, at), target_addr(target, manip) as u32);
            if old != new {
                set_u32(buf, at, new);
                let c = update_u32(get_u16(buf, p.l3 + 10), old, new);
                set_u16(buf, p.l3 + 10, c);
                if let Some(at) = pseudo_csum {
                    l4_csum(buf, at, udp, p.family, |c| update_u32(c, old, new));
                }
            }
        }
        Family::V6 => {
            let at = p.l3 + if manip == Manip::Src { 8 } else { 24 };
            let old = u128::from_be_bytes(buf[at..at + 16].try_into().unwrap_or_default());
            let new = target_addr(target, manip);
            if old != new {
                buf[at..at + 16].copy_from_slice(&new.to_be_bytes());
                if let Some(at) = pseudo_csum {
                    l4_csum(buf, at, udp, p.family, |c| update_u128(c, old, new));
                }
            }
        }
    }
    if !ports || !p.has_l4 {
        return;
    }
    let (at, new) = match l4 {
        L4::Tcp | L4::Udp if avail >= 4 => match manip {
            Manip::Src => (p.l4, target.sport),
            Manip::Dst => (p.l4 + 2, target.dport),
        },
        // icmp_manip_pkt: only queries carry an identifier.
        L4::IcmpQuery if avail >= 8 && !icmp_is_error(p.family, buf[p.l4]) => {
            (p.l4 + 4, target.sport)
        }
        _ => return,
    };
    let old = get_u16(buf, at);
    if old != new {
        set_u16(buf, at, new);
        if let Some(c) = csum_at {
            l4_csum(buf, c, udp, p.family, |x| update_u16(x, old, new));
        }
    }
}

fn target_addr(t: &FlowKey, manip: Manip) -> u128 {
    match manip {
        Manip::Src => t.src,
        Manip::Dst => t.dst,
    }
}

/// nf_nat_icmp_reply_translation / nf_nat_icmpv6_reply_translation: the quoted
/// packet is put back the way its sender saw it (the opposite manip, toward the
/// other direction's tuple), the outer header is translated like any packet of
/// this direction (addresses only: an error has no identifier), and the ICMP
/// checksum is recomputed over the whole message, as Linux does.
fn icmp_reply_translation(
    c: &Conn,
    dir: Dir,
    manip: Manip,
    frame: &mut [u8],
    meta: &mut PacketMeta,
) -> Result<(), NatError> {
    if !icmp_checksum_ok(frame, meta) {
        return Err(NatError::BadIcmpError);
    }
    // A redirect about a NATed flow would point at an address the sender never
    // talked to: Linux drops it.
    if meta.family == Family::V4 && meta.icmp_type == 5 {
        return Err(NatError::BadIcmpError);
    }
    let inner = parse_inner(frame, meta, c.tuple[0].zone).ok_or(NatError::BadIcmpError)?;
    let other = c.tuple[dir.flip().index()];
    let ipos = Pos {
        family: meta.family,
        l3: inner.l3,
        l4: inner.l4,
        end: inner.end,
        proto: inner.key.proto,
        has_l4: true,
    };
    manip_pkt(frame, &ipos, &other, manip.flip(), true);
    let target = other.invert().ok_or(NatError::BadIcmpError)?;
    let opos = Pos {
        has_l4: false,
        ..Pos::outer(frame, meta)
    };
    manip_pkt(frame, &opos, &target, manip, false);
    match manip {
        Manip::Src => meta.src = target.src,
        Manip::Dst => meta.dst = target.dst,
    }
    let l4 = usize::from(meta.l4_off);
    let end = opos.end;
    set_u16(frame, l4 + 2, 0);
    let sum = match meta.family {
        Family::V4 => checksum::sum(&frame[l4..end], 0),
        Family::V6 => {
            let ph = pseudo_v6(frame, opos.l3, (end - l4) as u32);
            checksum::sum(&frame[l4..end], ph)
        }
    };
    set_u16(frame, l4 + 2, !checksum::fold(sum));
    Ok(())
}

#[cfg(test)]
mod tests;
