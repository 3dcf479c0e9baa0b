//! The facts about one frame that classification, conntrack and routing read,
//! parsed once per packet and kept in a small `Copy` struct.

/// Address family of the network header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Family {
    #[default]
    V4,
    V6,
}

/// Parsed view of one frame's headers. Addresses are `u128`: IPv4 in the low 32
/// bits (so `198.18.0.1` is `0xc612_0001`), IPv6 as the big-endian 128-bit value.
///
/// `l4_valid` is false for non-first fragments and truncated transport headers:
/// like iptables, port/flag/type matches never match such packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketMeta {
    pub family: Family,
    pub src: u128,
    pub dst: u128,
    /// Upper-layer protocol (IPPROTO_*), after IPv6 extension headers.
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    /// TCP flags byte (FIN=0x01 SYN=0x02 RST=0x04 PSH=0x08 ACK=0x10 URG=0x20 ECE=0x40 CWR=0x80).
    pub tcp_flags: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// Length as `-m length` sees it: the IPv4 total length, or IPv6 payload length + 40.
    pub ip_len: u16,
    /// A non-first fragment (IPv4 offset != 0, IPv6 fragment header offset != 0).
    pub fragment: bool,
    /// Any fragment (first or later): MF set or offset != 0.
    pub is_fragmented: bool,
    pub l4_valid: bool,
    /// Byte offset of the network header in the frame (after Ethernet/VLAN).
    pub l3_off: u16,
    /// Byte offset of the transport header in the frame.
    pub l4_off: u16,
    /// TTL or hop limit as received.
    pub ttl: u8,
    /// Ingress port index (position in the config's `ports`).
    pub in_port: u16,
    /// Egress port index once routed; `u16::MAX` before routing.
    pub out_port: u16,
    /// Packet mark (`-j MARK`), zero on ingress.
    pub mark: u32,
    /// Connection-tracking state as `-m conntrack --ctstate` sees it: one of the
    /// [`ctstate`] bits, 0 before (or without) tracking.
    pub ctstate: u8,
    /// Connection status bits ([`ctstatus`]): `--ctstatus SNAT,DNAT,...`.
    pub ctstatus: u8,
    /// Set by a nat-table rule that matched (DNAT/SNAT/MASQUERADE): 1 + the index of
    /// its target in the classifier's NAT target list; 0 for none. The dataplane
    /// reads it after the hook and sets the binding up in conntrack.
    pub nat: u16,
}

/// `--ctstate` bits (the values of iptables' xt_conntrack XT_CONNTRACK_STATE_*
/// are not used on the wire; these are fwd's own).
pub mod ctstate {
    pub const NEW: u8 = 1;
    pub const ESTABLISHED: u8 = 2;
    pub const RELATED: u8 = 4;
    pub const INVALID: u8 = 8;
    pub const UNTRACKED: u8 = 16;
    /// DNAT: the original destination differs from the reply source.
    pub const DNAT: u8 = 32;
    /// SNAT: the original source differs from the reply destination.
    pub const SNAT: u8 = 64;
}

/// `--ctstatus` bits.
pub mod ctstatus {
    pub const EXPECTED: u8 = 1;
    pub const SEEN_REPLY: u8 = 2;
    pub const ASSURED: u8 = 4;
    pub const CONFIRMED: u8 = 8;
    /// Ours, never in a rule's mask: the nat table's decision for the hook being
    /// run is already made (Linux's IPS_DST_NAT_DONE in PREROUTING, IPS_SRC_NAT_DONE
    /// in POSTROUTING: nf_nat_initialized). The dataplane sets it per hook; the nat
    /// table is skipped when it is set, even for a packet that is still NEW.
    pub const NAT_DONE: u8 = 0x80;
}

pub const NO_PORT: u16 = u16::MAX;
