//! The differential test against the kernel (DESIGN.md section 6): one rule set, loaded
//! into fwd and, through fwd's own iptables-save exporter, into a Linux forwarder
//! (iptables-legacy-restore + ipset restore) in a testbed of its own; the same few
//! thousand crafted packets, seeded, through each (both directions); then the same
//! packets must have arrived, and every rule and policy must show the same packet and
//! byte counters. A disagreement prints each differing packet with its fields, both
//! outcomes and the rules fwd's reference evaluator says it hit.
//!
//! The kernel side uses no conntrack match, so nothing loads conntrack or nf_defrag in
//! its namespace: fragments cross it as they are, as they cross fwd.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;
use std::{fmt::Write as _, thread, time::Duration};

use common::kernel::{self, counter_names, fwd_counters, kernel_counters, mac, ns_run, run};
use common::{tool, Fwd, Testbed};
use fwd::packet::checksum;
use fwd::packet::meta::{PacketMeta, NO_PORT};
use fwd::packet::parse::{self, ParseError};
use fwd::rules::config::RulesConfig;
use fwd::rules::eval::LinearEvaluator;
use fwd::rules::testgen::Rng;
use fwd::rules::{Counter, Env, Hook, RuleCounters, Ruleset, Verdict};

const SEED: u64 = 0x5eed_0004;
const V4_PACKETS: u32 = 2400;
const V6_PACKETS: u32 = 2000;

/// The IPv4 rule set: every match kind fwd has in FORWARD, a mangle PREROUTING MARK
/// feeding filter `mark` matches, user chains reached by jump and goto, RETURN, LOG,
/// count-only rules, sets. `@A@`/`@B@` are the forwarder's ports towards the generator
/// and the sink, `@P@` the testbed prefix. Rules commented "never" cannot match any
/// packet of this test (the coverage check knows them).
const RULES_V4: &str = r#"
[sets.blk4]
family = "ipv4"
members = ["198.18.5.0/24", "198.18.64.0/20", "198.19.200.9"]

[sets.web4]
family = "ipv4"
members = ["198.19.128.0/25"]

[tables.mangle.chains.PREROUTING]
policy = "ACCEPT"
rules = [
  { proto = "udp", dport = "5000:5099", action = "MARK", set_mark = "0x10/0xf0" },
  { src = "198.18.32.0/19", action = "MARK", set_xmark = "0x3/0xff" },
  { in = "@B@", action = "MARK", set_mark = "0x100" },
  { proto = "tcp", tcp_flags = "SYN,ACK/SYN,ACK", action = "MARK", set_mark = "0x1/0x1" },
]

[chains.FORWARD]
policy = "DROP"
rules = [
  { proto = "tcp", tcp_flags = "ALL/NONE", action = "DROP", comment = "null scan" },
  { proto = "tcp", tcp_flags = "FIN,SYN/FIN,SYN", action = "DROP" },
  { src_type = "LOCAL", action = "DROP", comment = "never" },
  { fragment = true, action = "jump", target = "FRAGS" },
  { src_set = "blk4", action = "DROP" },
  { dst_type = "!LOCAL", src = "198.18.9.0/24", action = "DROP" },
  { proto = "tcp", dst = "198.19.128.0/24", dst_set = "!web4", action = "LOG", log_prefix = "not web: " },
  { comment = "count only" },
  { mark = "0x10/0xf0", action = "jump", target = "MARKED" },
  { in = "@B@", action = "goto", target = "FROM_SINK" },
  { in = "!@A@", action = "DROP", comment = "never" },
  { fragment = false, proto = "!tcp", dst = "198.19.128.64/26", out = "@P@-+", action = "ACCEPT" },
  { proto = "tcp", action = "jump", target = "TCP_IN" },
  { proto = "udp", action = "jump", target = "UDP_IN" },
  { proto = "icmp", action = "jump", target = "ICMP_IN" },
  { proto = "!udp", length = "1000:1500", action = "ACCEPT" },
  { src = "!198.18.0.0/16", out = "t+", action = "DROP" },
  { proto = 47, action = "ACCEPT" },
  { mark = "!0x3/0x3", proto = "!tcp", action = "ACCEPT" },
]

[chains.FRAGS]
rules = [
  { src = "198.18.7.0/24", action = "RETURN" },
  { proto = "udp", action = "ACCEPT" },
  { length = "0:200", action = "DROP" },
  { proto = "tcp", dport = 80, action = "DROP", comment = "never" },
]

[chains.MARKED]
rules = [
  { proto = "udp", dport = "5000:5009", action = "ACCEPT" },
  { proto = "udp", sport = "!1024:65535", action = "DROP" },
  { length = "1000:", action = "RETURN" },
  { src = "198.18.0.0/16", action = "ACCEPT" },
]

[chains.FROM_SINK]
rules = [
  { out = "!@A@", action = "DROP", comment = "never" },
  { proto = "icmp", icmp_type = "echo-reply", action = "ACCEPT" },
  { mark = "0x100", proto = "tcp", tcp_flags = "!SYN,RST,ACK,FIN/SYN", action = "ACCEPT" },
  { proto = "tcp", sport = "80,443,8000:8080", action = "RETURN" },
  { src = "198.19.0.0/17", proto = "udp", action = "ACCEPT" },
  { src_set = "!blk4", dst = "198.18.128.0/18", action = "ACCEPT" },
]

[chains.TCP_IN]
rules = [
  { proto = "tcp", tcp_flags = "FIN,SYN,RST,ACK/SYN", dport = "20:1023", src = "!198.18.0.0/20", action = "DROP" },
  { proto = "tcp", dport = 22, action = "ACCEPT" },
  { proto = "tcp", dport = "80,443,8080:8090", tcp_flags = "!SYN,RST,ACK,FIN/SYN", action = "ACCEPT" },
  { proto = "tcp", sport = "1024:2047", dport = "!0:1023", action = "ACCEPT" },
  { proto = "tcp", dport = "6000:6063", in = "@P@-+", action = "jump", target = "DEEP" },
  { proto = "tcp", tcp_flags = "RST/RST", action = "ACCEPT" },
  { proto = "tcp", sport = "!1:1023,2000,3000:3100", action = "DROP" },
  { proto = "tcp", tcp_flags = "SYN,ACK/ACK", length = "40:60", action = "ACCEPT" },
]

[chains.DEEP]
rules = [
  { proto = "tcp", dport = "6000:6015", action = "ACCEPT" },
  { proto = "tcp", dport = "6016:6031", action = "RETURN" },
  { proto = "tcp", dport = "6032:6047", action = "DROP" },
  { out = "!@B@", action = "ACCEPT", comment = "never" },
]

[chains.UDP_IN]
rules = [
  { proto = "udp", dport = 53, action = "ACCEPT" },
  { proto = "udp", sport = 53, dport = "!10000:20000", action = "DROP" },
  { proto = "udp", dport = "123,161:162,500,4500", action = "ACCEPT" },
  { length = "!28:512", action = "DROP" },
  { dst = "198.19.128.128/25", action = "ACCEPT" },
]

[chains.ICMP_IN]
rules = [
  { proto = "icmp", icmp_type = "echo-request", length = "28:84", action = "ACCEPT" },
  { proto = "icmp", icmp_type = "3/4", action = "ACCEPT" },
  { proto = "icmp", icmp_type = "!11", dst = "198.19.128.0/26", action = "DROP" },
  { proto = "icmp", icmp_type = "any", length = "1000:", action = "DROP" },
  { proto = "icmp", icmp_type = "destination-unreachable", action = "ACCEPT" },
  { proto = "icmp", icmp_type = "13", action = "ACCEPT" },
  { proto = "icmp", icmp_type = "!any", action = "ACCEPT", comment = "never" },
]
"#;

/// The IPv6 rule set: the same shapes over IPv6 (ICMPv6 types), without what
/// ip6tables cannot say: `fragment` (no `-f`) and ICMPv6 type `any`.
const RULES_V6: &str = r#"
[sets.blk6]
family = "ipv6"
members = ["2001:db8:5::/48", "2001:db8:1234::9", "2001:db8:9000::/36"]

[tables.mangle.chains.PREROUTING]
policy = "ACCEPT"
rules = [
  { proto = "udp", dport = "5000:5099", action = "MARK", set_mark = "0x10/0xf0" },
  { src = "2001:db8:1::/48", action = "MARK", set_xmark = "0x3/0xff" },
  { in = "@B@", action = "MARK", set_mark = "0x100" },
  { proto = "tcp", tcp_flags = "SYN,ACK/SYN,ACK", action = "MARK", set_mark = "0x1/0x1" },
]

[chains.FORWARD]
policy = "DROP"
rules = [
  { proto = "tcp", tcp_flags = "ALL/NONE", action = "DROP", comment = "null scan" },
  { src_set = "blk6", action = "DROP" },
  { proto = "tcp", dst = "2001:db8:8000::/40", action = "LOG", log_prefix = "v6 tcp: " },
  { comment = "count only" },
  { mark = "0x10/0xf0", action = "jump", target = "MARKED" },
  { in = "@B@", action = "goto", target = "FROM_SINK" },
  { in = "!@A@", action = "DROP", comment = "never" },
  { proto = "tcp", action = "jump", target = "TCP_IN" },
  { proto = "udp", action = "jump", target = "UDP_IN" },
  { proto = "icmpv6", action = "jump", target = "ICMP_IN" },
  { proto = "!udp", length = "1000:1500", action = "ACCEPT" },
  { src = "!2001:db8::/33", out = "t+", action = "DROP" },
  { proto = 47, action = "ACCEPT" },
  { mark = "!0x3/0x3", proto = "!tcp", dst = "2001:db8:8000::/36", action = "ACCEPT" },
]

[chains.MARKED]
rules = [
  { proto = "udp", dport = "5000:5009", action = "ACCEPT" },
  { proto = "udp", sport = "!1024:65535", action = "DROP" },
  { length = "1000:", action = "RETURN" },
  { src = "2001:db8::/33", action = "ACCEPT" },
]

[chains.FROM_SINK]
rules = [
  { out = "!@A@", action = "DROP", comment = "never" },
  { proto = "icmpv6", icmp_type = "echo-reply", action = "ACCEPT" },
  { mark = "0x100", proto = "tcp", tcp_flags = "!SYN,RST,ACK,FIN/SYN", action = "ACCEPT" },
  { proto = "tcp", sport = "80,443,8000:8080", action = "RETURN" },
  { src = "2001:db8:8000::/33", proto = "udp", action = "ACCEPT" },
  { dst = "2001:db8:1000::/37", action = "ACCEPT" },
]

[chains.TCP_IN]
rules = [
  { proto = "tcp", tcp_flags = "FIN,SYN,RST,ACK/SYN", dport = "20:1023", src = "!2001:db8::/34", action = "DROP" },
  { proto = "tcp", dport = 22, action = "ACCEPT" },
  { proto = "tcp", dport = "80,443,8080:8090", tcp_flags = "!SYN,RST,ACK,FIN/SYN", action = "ACCEPT" },
  { proto = "tcp", sport = "1024:2047", dport = "!0:1023", action = "ACCEPT" },
  { proto = "tcp", dport = "6000:6063", in = "@P@-+", action = "jump", target = "DEEP" },
  { proto = "tcp", tcp_flags = "RST/RST", action = "ACCEPT" },
  { proto = "tcp", sport = "!1:1023,2000,3000:3100", action = "DROP" },
]

[chains.DEEP]
rules = [
  { proto = "tcp", dport = "6000:6015", action = "ACCEPT" },
  { proto = "tcp", dport = "6016:6031", action = "RETURN" },
  { proto = "tcp", dport = "6032:6047", action = "DROP" },
  { out = "!@B@", action = "ACCEPT", comment = "never" },
]

[chains.UDP_IN]
rules = [
  { proto = "udp", dport = 53, action = "ACCEPT" },
  { proto = "udp", sport = 53, dport = "!10000:20000", action = "DROP" },
  { proto = "udp", dport = "123,161:162,500,4500", action = "ACCEPT" },
  { length = "!48:512", action = "DROP" },
  { dst = "2001:db8:c000::/34", action = "ACCEPT" },
]

[chains.ICMP_IN]
rules = [
  { proto = "icmpv6", icmp_type = "echo-request", length = "48:104", action = "ACCEPT" },
  { proto = "icmpv6", icmp_type = "1/4", action = "ACCEPT" },
  { proto = "icmpv6", icmp_type = "!3", dst = "2001:db8:8000::/40", action = "DROP" },
  { proto = "icmpv6", icmp_type = "!128", length = "1000:", action = "DROP" },
  { proto = "icmpv6", icmp_type = "destination-unreachable", action = "ACCEPT" },
  { proto = "icmpv6", icmp_type = "packet-too-big", action = "ACCEPT" },
  { proto = "icmpv6", icmp_type = "144/0", action = "ACCEPT" },
]
"#;

/// Routes both forwarders get: networks behind the generator and the sink.
const ROUTES: [(&str, &str); 4] = [
    ("198.18.128.0/17", "198.18.0.2"),
    ("198.19.128.0/17", "198.19.0.2"),
    ("2001:db8:1000::/36", "2001:db8:a::2"),
    ("2001:db8:8000::/33", "2001:db8:b::2"),
];

fn rules_for(template: &str, tb: &Testbed) -> String {
    template
        .replace("@A@", &tb.port_a())
        .replace("@B@", &tb.port_b())
        .replace("@P@", &tb.prefix)
}

// ---------------------------------------------------------------------------------
// Packets

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frag {
    No,
    /// MF set, offset 0: carries the transport header.
    First,
    /// Offset (8-byte units) != 0: no transport header; `bool` is MF.
    Later(u16, bool),
}

#[derive(Clone, Debug)]
struct Probe {
    /// IPv4 identification or IPv6 flow label (unique per packet; no one reassembles).
    id: u32,
    from_sink: bool,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    icmp: (u8, u8),
    /// IP total length.
    len: u16,
    frag: Frag,
    /// IPv4 header with 4 bytes of NOP options (IHL 6); IPv6: a destination options
    /// header (PadN) before the transport header.
    options: bool,
    bytes: Vec<u8>,
}

impl Probe {
    fn describe(&self) -> String {
        let mut s = format!(
            "#{} {} {} -> {} proto {} len {}",
            self.id,
            if self.from_sink {
                "sink->gen"
            } else {
                "gen->sink"
            },
            self.src,
            self.dst,
            self.proto,
            self.len
        );
        let l4 = !matches!(self.frag, Frag::Later(..));
        match self.proto {
            6 | 17 if l4 => {
                let _ = write!(s, " {}->{}", self.sport, self.dport);
                if self.proto == 6 {
                    let _ = write!(s, " flags {:#04x}", self.tcp_flags);
                }
            }
            1 | 58 if l4 => {
                let _ = write!(s, " icmp {}/{}", self.icmp.0, self.icmp.1);
            }
            _ => {}
        }
        match self.frag {
            Frag::No => {}
            Frag::First => s += " first-fragment",
            Frag::Later(off, mf) => {
                let _ = write!(s, " fragment offset {off}{}", if mf { " MF" } else { "" });
            }
        }
        if self.options {
            s += " ip-options/ext-header";
        }
        s
    }
}

fn addr4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// A random address in `base/bits`, never one of the two connected /24s' special
/// addresses (the kernel takes those as local or broadcast, not as forwarded traffic).
fn random_v4(rng: &mut Rng, base: &str, bits: u32) -> IpAddr {
    let base = u32::from(addr4(base));
    loop {
        let a = base | (rng.below(1u64 << (32 - bits)) as u32);
        let net24 = a >> 8;
        if net24 == 0x00c6_1200 || net24 == 0x00c6_1300 {
            continue;
        }
        return IpAddr::V4(Ipv4Addr::from(a));
    }
}

fn pick_v4(rng: &mut Rng, edges: &[&str], base: &str, bits: u32) -> IpAddr {
    if rng.chance(55) {
        IpAddr::V4(addr4(rng.pick::<&str>(edges)))
    } else {
        random_v4(rng, base, bits)
    }
}

const GEN_SRC: [&str; 25] = [
    "198.18.0.2",
    "198.18.1.1",
    "198.18.4.255",
    "198.18.5.0",
    "198.18.5.77",
    "198.18.5.255",
    "198.18.6.0",
    "198.18.7.1",
    "198.18.7.255",
    "198.18.8.0",
    "198.18.9.9",
    "198.18.15.255",
    "198.18.16.0",
    "198.18.31.255",
    "198.18.32.0",
    "198.18.47.1",
    "198.18.63.255",
    "198.18.64.0",
    "198.18.79.255",
    "198.18.80.0",
    "198.18.255.255",
    "198.19.200.8",
    "198.19.200.9",
    "198.19.200.10",
    "198.19.1.1",
];
const GEN_DST: [&str; 11] = [
    "198.19.0.2",
    "198.19.128.0",
    "198.19.128.1",
    "198.19.128.63",
    "198.19.128.64",
    "198.19.128.127",
    "198.19.128.128",
    "198.19.128.255",
    "198.19.129.0",
    "198.19.200.9",
    "198.19.255.255",
];
const SINK_SRC: [&str; 10] = [
    "198.19.0.2",
    "198.19.1.1",
    "198.19.127.255",
    "198.19.128.0",
    "198.19.128.1",
    "198.19.200.9",
    "198.19.64.5",
    "198.18.5.5",
    "198.18.7.7",
    "198.18.64.1",
];
const SINK_DST: [&str; 7] = [
    "198.18.0.2",
    "198.18.128.0",
    "198.18.128.255",
    "198.18.191.255",
    "198.18.192.0",
    "198.18.200.1",
    "198.18.255.255",
];

const EDGE_PORTS: [u16; 64] = [
    0, 1, 21, 22, 23, 52, 53, 54, 79, 80, 81, 122, 123, 124, 160, 161, 162, 163, 442, 443, 444,
    499, 500, 501, 1023, 1024, 1025, 2000, 2047, 2048, 2999, 3000, 3100, 3101, 4499, 4500, 4501,
    4999, 5000, 5009, 5010, 5099, 5100, 5999, 6000, 6015, 6016, 6031, 6032, 6047, 6048, 6063, 6064,
    8000, 8079, 8080, 8090, 8091, 9999, 10000, 20000, 20001, 65534, 65535,
];
const EDGE_LENGTHS: [u16; 26] = [
    20, 21, 27, 28, 29, 40, 41, 52, 60, 83, 84, 85, 99, 100, 199, 200, 201, 511, 512, 513, 999,
    1000, 1001, 1400, 1499, 1500,
];
/// SYN (twice as likely), SYN+ACK, ACK, PSH+ACK, FIN+ACK, FIN, SYN+FIN, RST, RST+ACK,
/// none, all six, FIN+PSH+URG, SYN+RST, SYN+ECE+CWR.
const TCP_FLAGS: [u8; 15] = [
    0x02, 0x02, 0x12, 0x10, 0x18, 0x11, 0x01, 0x03, 0x04, 0x14, 0x00, 0x3f, 0x29, 0x06, 0xc2,
];
const ICMP_TYPES: [u8; 11] = [0, 3, 4, 5, 8, 11, 12, 13, 14, 17, 40];
const FRAG_OFFSETS: [u16; 6] = [1, 2, 3, 100, 185, 8000];

fn port(rng: &mut Rng) -> u16 {
    if rng.chance(65) {
        *rng.pick(&EDGE_PORTS)
    } else {
        rng.below(65536) as u16
    }
}

fn l4_header_len(proto: u8) -> usize {
    match proto {
        6 => 20,
        17 | 1 => 8,
        _ => 0,
    }
}

/// The IPv4 probes, deterministic from `seed`: ids 1..=n.
fn probes_v4(seed: u64, n: u32) -> Vec<Probe> {
    let mut rng = Rng::new(seed);
    (1..=n)
        .map(|id| {
            let from_sink = rng.chance(30);
            let (src, dst) = if from_sink {
                (
                    pick_v4(&mut rng, &SINK_SRC, "198.18.0.0", 15),
                    pick_v4(&mut rng, &SINK_DST, "198.18.128.0", 17),
                )
            } else {
                (
                    pick_v4(&mut rng, &GEN_SRC, "198.18.0.0", 15),
                    pick_v4(&mut rng, &GEN_DST, "198.19.128.0", 17),
                )
            };
            let proto = match rng.below(100) {
                0..=37 => 6,
                38..=67 => 17,
                68..=91 => 1,
                _ => *rng.pick(&[47, 50, 132]),
            };
            let frag = match rng.below(100) {
                0..=9 => {
                    // TCP at offset 1 is the kernel's hotdrop fwd lacks: see
                    // tcp_fragment_at_offset_1_is_dropped_by_a_tcp_match.
                    let off = match *rng.pick(&FRAG_OFFSETS) {
                        1 if proto == 6 => 2,
                        off => off,
                    };
                    Frag::Later(off, rng.chance(50))
                }
                10..=14 => Frag::First,
                _ => Frag::No,
            };
            let options = rng.chance(5);
            let hl = if options { 24 } else { 20 };
            let min = hl
                + match frag {
                    Frag::Later(..) => 8,
                    _ => l4_header_len(proto),
                };
            let len = if rng.chance(60) {
                *rng.pick(&EDGE_LENGTHS)
            } else {
                (min + rng.below((1500 - min + 1) as u64) as usize) as u16
            };
            let mut p = Probe {
                id,
                from_sink,
                src,
                dst,
                proto,
                sport: port(&mut rng),
                dport: port(&mut rng),
                tcp_flags: if rng.chance(80) {
                    *rng.pick(&TCP_FLAGS)
                } else {
                    rng.below(256) as u8
                },
                icmp: (
                    if rng.chance(85) {
                        *rng.pick(&ICMP_TYPES)
                    } else {
                        rng.below(256) as u8
                    },
                    *rng.pick(&[0, 0, 1, 3, 4, 15]),
                ),
                len: len.max(min as u16),
                frag,
                options,
                bytes: Vec::new(),
            };
            p.bytes = build_v4(&p, rng.next_u64());
            p
        })
        .collect()
}

fn build_v4(p: &Probe, salt: u64) -> Vec<u8> {
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (p.src, p.dst) else {
        unreachable!("IPv4 probe")
    };
    let hl = if p.options { 24 } else { 20 };
    let total = usize::from(p.len);
    let mut ip = vec![0u8; total];
    for (i, b) in ip.iter_mut().enumerate().skip(hl) {
        *b = (salt >> ((i % 8) * 8)) as u8 ^ i as u8;
    }
    ip[0] = 0x40 | (hl / 4) as u8;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&(p.id as u16).to_be_bytes());
    let frag_field: u16 = match p.frag {
        Frag::No => 0,
        Frag::First => 0x2000,
        Frag::Later(off, mf) => off | if mf { 0x2000 } else { 0 },
    };
    ip[6..8].copy_from_slice(&frag_field.to_be_bytes());
    ip[8] = 64;
    ip[9] = p.proto;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    if p.options {
        ip[20..24].copy_from_slice(&[1, 1, 1, 1]);
    }
    if !matches!(p.frag, Frag::Later(..)) {
        let l4 = &mut ip[hl..];
        let l4_len = l4.len();
        match p.proto {
            6 => {
                l4[0..2].copy_from_slice(&p.sport.to_be_bytes());
                l4[2..4].copy_from_slice(&p.dport.to_be_bytes());
                l4[12] = 0x50;
                l4[13] = p.tcp_flags;
                l4[16..18].fill(0);
                if p.frag == Frag::No {
                    let c = !checksum::transport_sum_v4(l4, src, dst, 6);
                    l4[16..18].copy_from_slice(&c.to_be_bytes());
                }
            }
            17 => {
                l4[0..2].copy_from_slice(&p.sport.to_be_bytes());
                l4[2..4].copy_from_slice(&p.dport.to_be_bytes());
                l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                l4[6..8].fill(0);
                if p.frag == Frag::No {
                    let c = match !checksum::transport_sum_v4(l4, src, dst, 17) {
                        0 => 0xffff,
                        c => c,
                    };
                    l4[6..8].copy_from_slice(&c.to_be_bytes());
                }
            }
            1 => {
                l4[0] = p.icmp.0;
                l4[1] = p.icmp.1;
                l4[2..4].fill(0);
                if p.frag == Frag::No {
                    let c = checksum::checksum(l4);
                    l4[2..4].copy_from_slice(&c.to_be_bytes());
                }
            }
            _ => {}
        }
    }
    let c = checksum::checksum(&ip[..hl]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip
}

fn addr6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// A random address in `base/bits`, never in the two connected /64s (whose
/// subnet-router anycast address is the kernel's own).
fn random_v6(rng: &mut Rng, base: &str, bits: u32) -> IpAddr {
    let base = u128::from(addr6(base));
    loop {
        let r = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
        let a = base | (r >> bits);
        if matches!(a >> 64, 0x2001_0db8_000a_0000 | 0x2001_0db8_000b_0000) {
            continue;
        }
        return IpAddr::V6(Ipv6Addr::from(a));
    }
}

fn pick_v6(rng: &mut Rng, edges: &[&str], base: &str, bits: u32) -> IpAddr {
    if rng.chance(55) {
        IpAddr::V6(addr6(rng.pick::<&str>(edges)))
    } else {
        random_v6(rng, base, bits)
    }
}

const GEN_SRC6: [&str; 12] = [
    "2001:db8:a::2",
    "2001:db8:1::",
    "2001:db8:1::1",
    "2001:db8:1:ffff:ffff:ffff:ffff:ffff",
    "2001:db8:2::",
    "2001:db8:5::5",
    "2001:db8:5:ffff::1",
    "2001:db8:6::",
    "2001:db8:3fff:ffff::1",
    "2001:db8:4000::1",
    "2001:db8:1234::9",
    "2001:db8:1234::8",
];
const GEN_DST6: [&str; 8] = [
    "2001:db8:b::2",
    "2001:db8:8000::",
    "2001:db8:8000::1",
    "2001:db8:80ff:ffff:ffff:ffff:ffff:ffff",
    "2001:db8:8100::",
    "2001:db8:8fff::1",
    "2001:db8:c000::1",
    "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
];
const SINK_SRC6: [&str; 6] = [
    "2001:db8:b::2",
    "2001:db8:8000::7",
    "2001:db8:9000::1",
    "2001:db8:5::5",
    "2001:db8:c::1",
    "2001:db8:1234::9",
];
const SINK_DST6: [&str; 6] = [
    "2001:db8:a::2",
    "2001:db8:1000::",
    "2001:db8:1000::1",
    "2001:db8:17ff:ffff:ffff:ffff:ffff:ffff",
    "2001:db8:1800::",
    "2001:db8:1fff:ffff:ffff:ffff:ffff:ffff",
];
const EDGE_LENGTHS6: [u16; 22] = [
    40, 41, 47, 48, 49, 60, 61, 68, 103, 104, 105, 200, 201, 511, 512, 513, 999, 1000, 1001, 1400,
    1499, 1500,
];
const ICMPV6_TYPES: [u8; 8] = [1, 2, 3, 4, 128, 129, 144, 200];

/// The IPv6 probes, deterministic from `seed`: flow labels 1..=n.
fn probes_v6(seed: u64, n: u32) -> Vec<Probe> {
    let mut rng = Rng::new(seed);
    (1..=n)
        .map(|id| {
            let from_sink = rng.chance(30);
            let (src, dst) = if from_sink {
                (
                    pick_v6(&mut rng, &SINK_SRC6, "2001:db8::", 32),
                    pick_v6(&mut rng, &SINK_DST6, "2001:db8:1000::", 36),
                )
            } else {
                (
                    pick_v6(&mut rng, &GEN_SRC6, "2001:db8::", 32),
                    pick_v6(&mut rng, &GEN_DST6, "2001:db8:8000::", 33),
                )
            };
            let proto = match rng.below(100) {
                0..=37 => 6,
                38..=67 => 17,
                68..=91 => 58,
                _ => *rng.pick(&[47, 132]),
            };
            let frag = match rng.below(100) {
                0..=9 => Frag::Later(*rng.pick(&FRAG_OFFSETS), rng.chance(50)),
                10..=14 => Frag::First,
                _ => Frag::No,
            };
            let options = rng.chance(5);
            let min = 40
                + if options { 8 } else { 0 }
                + match frag {
                    Frag::Later(..) => 16,
                    Frag::First => 8 + l4_header_len6(proto),
                    Frag::No => l4_header_len6(proto),
                };
            let len = if rng.chance(60) {
                *rng.pick(&EDGE_LENGTHS6)
            } else {
                (min + rng.below((1500 - min + 1) as u64) as usize) as u16
            };
            let mut p = Probe {
                id,
                from_sink,
                src,
                dst,
                proto,
                sport: port(&mut rng),
                dport: port(&mut rng),
                tcp_flags: if rng.chance(80) {
                    *rng.pick(&TCP_FLAGS)
                } else {
                    rng.below(256) as u8
                },
                icmp: (
                    // ND types (133-137) included: to a transit address they are
                    // forwarded by Linux, and by fwd (its XDP program passes only
                    // ND to multicast, link-local or the box's own addresses).
                    match rng.below(256) as u8 {
                        _ if rng.chance(85) => *rng.pick(&ICMPV6_TYPES),
                        t => t,
                    },
                    *rng.pick(&[0, 0, 1, 3, 4, 15]),
                ),
                len: len.max(min as u16),
                frag,
                options,
                bytes: Vec::new(),
            };
            p.bytes = build_v6(&p, rng.next_u64());
            p
        })
        .collect()
}

fn l4_header_len6(proto: u8) -> usize {
    if proto == 58 {
        8
    } else {
        l4_header_len(proto)
    }
}

fn build_v6(p: &Probe, salt: u64) -> Vec<u8> {
    let (IpAddr::V6(src), IpAddr::V6(dst)) = (p.src, p.dst) else {
        unreachable!("IPv6 probe")
    };
    let total = usize::from(p.len);
    let mut ip = vec![0u8; total];
    for (i, b) in ip.iter_mut().enumerate().skip(40) {
        *b = (salt >> ((i % 8) * 8)) as u8 ^ i as u8;
    }
    ip[0..4].copy_from_slice(&(0x6000_0000 | (p.id & 0xfffff)).to_be_bytes());
    ip[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
    ip[7] = 64;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    // The next-header chain: [destination options] [fragment] transport.
    let mut at = 40;
    let mut nh_at = 6;
    if p.options {
        ip[nh_at] = 60;
        ip[at..at + 8].copy_from_slice(&[0, 0, 1, 4, 0, 0, 0, 0]);
        nh_at = at;
        at += 8;
    }
    if p.frag != Frag::No {
        ip[nh_at] = 44;
        let field: u16 = match p.frag {
            Frag::Later(off, mf) => (off << 3) | u16::from(mf),
            _ => 1,
        };
        ip[at + 1] = 0;
        ip[at + 2..at + 4].copy_from_slice(&field.to_be_bytes());
        ip[at + 4..at + 8].copy_from_slice(&p.id.to_be_bytes());
        nh_at = at;
        at += 8;
    }
    ip[nh_at] = p.proto;
    if matches!(p.frag, Frag::Later(..)) || l4_header_len6(p.proto) == 0 {
        return ip;
    }
    let l4 = &mut ip[at..];
    let csum_at = match p.proto {
        6 => {
            l4[0..2].copy_from_slice(&p.sport.to_be_bytes());
            l4[2..4].copy_from_slice(&p.dport.to_be_bytes());
            l4[12] = 0x50;
            l4[13] = p.tcp_flags;
            16
        }
        17 => {
            l4[0..2].copy_from_slice(&p.sport.to_be_bytes());
            l4[2..4].copy_from_slice(&p.dport.to_be_bytes());
            let l = l4.len() as u16;
            l4[4..6].copy_from_slice(&l.to_be_bytes());
            6
        }
        _ => {
            l4[0] = p.icmp.0;
            l4[1] = p.icmp.1;
            2
        }
    };
    l4[csum_at..csum_at + 2].fill(0);
    if p.frag == Frag::No {
        let c = match !checksum::transport_sum_v6(l4, src, dst, p.proto) {
            0 => 0xffff,
            c => c,
        };
        l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    }
    ip
}

// ---------------------------------------------------------------------------------
// The model's view: what fwd's reference evaluator says each packet hits.

struct Oracle<'a> {
    rs: &'a Ruleset,
    eval: LinearEvaluator<'a>,
}

impl Oracle<'_> {
    /// The verdict and the counter ids hit, as the daemon's pipeline runs the hooks.
    fn judge(&self, p: &Probe) -> (bool, Vec<u32>) {
        let mut frame = vec![0u8; 14];
        let etype: u16 = if p.src.is_ipv6() { 0x86dd } else { 0x0800 };
        frame[12..14].copy_from_slice(&etype.to_be_bytes());
        frame.extend_from_slice(&p.bytes);
        let in_port = u16::from(p.from_sink);
        let mut meta = PacketMeta {
            in_port,
            out_port: NO_PORT,
            ..PacketMeta::default()
        };
        match parse::parse(&frame, &mut meta) {
            Ok(()) | Err(ParseError::TruncatedL4 | ParseError::BadTcpHeader) => {}
            Err(e) => panic!("probe {} does not parse: {e}", p.id),
        }
        let mut counters = RuleCounters::new(self.rs.counter_len());
        let mut hits = Vec::new();
        let len = frame.len() as u32;
        let mut run = |hook, meta: &mut PacketMeta| {
            self.eval
                .run_hook_traced(hook, meta, len, &mut counters, &mut hits)
                == Verdict::Accept
        };
        let mut ok = run(Hook::Prerouting, &mut meta);
        if ok {
            meta.out_port = 1 - in_port;
            ok = run(Hook::Forward, &mut meta) && run(Hook::Postrouting, &mut meta);
        }
        (ok, hits)
    }
}

// ---------------------------------------------------------------------------------
// The two forwarders

/// Linux forwarding with `rs` loaded through fwd's exporters.
fn kernel_up(tb: &Testbed, rs: &Ruleset, v6: bool) -> String {
    kernel::forward(tb);
    for (prefix, via) in ROUTES {
        run(
            "ip",
            &["-n", &tb.fwd(), "route", "add", prefix, "via", via],
            None,
        );
    }
    kernel::load_rules(tb, rs, v6)
}

fn fwd_config(tb: &Testbed, rules: &str) -> String {
    let mut cfg = tb.router_config();
    for (prefix, via) in ROUTES {
        let _ = write!(
            cfg,
            "\n[[routes]]\nprefix = \"{prefix}\"\nvia = \"{via}\"\n"
        );
    }
    cfg + rules
}

struct Sniffer {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
}

impl Sniffer {
    fn start(ns: &str, iface: &str, file: &str, side: &str) -> Sniffer {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", &tool("diff_probe.py")])
            .args(["sniff", iface, file, side, "60"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "sniffer on {iface} did not start");
        Sniffer { child, stdin, out }
    }

    fn finish(mut self) -> serde_json::Value {
        drop(self.stdin.take());
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        let _ = self.child.wait();
        serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }
}

/// What one forwarder did with the probes: which arrived, and its counters by id.
struct Outcome {
    arrived: HashSet<u32>,
    counters: Vec<Counter>,
}

/// Sends every probe through `tb` (generator side, then sink side), returns which
/// arrived on the far side. Asserts that what arrived is what was sent.
fn send_all(tb: &Testbed, file: &str, what: &str) -> HashSet<u32> {
    let (g, s) = (format!("{}-g", tb.prefix), format!("{}-s", tb.prefix));
    let at_sink = Sniffer::start(&tb.sink(), &s, file, "s");
    let at_gen = Sniffer::start(&tb.gen(), &g, file, "g");
    let mac_a = mac(&tb.fwd(), &tb.port_a());
    let mac_b = mac(&tb.fwd(), &tb.port_b());
    let probe = tool("diff_probe.py");
    for (ns, iface, mac, side) in [(tb.gen(), &g, &mac_a, "g"), (tb.sink(), &s, &mac_b, "s")] {
        ns_run(
            &ns,
            &[
                "python3", &probe, "send", iface, mac, file, side, "8", "1000",
            ],
            None,
        );
    }
    thread::sleep(Duration::from_millis(300));
    let mut arrived = HashSet::new();
    for r in [at_sink.finish(), at_gen.finish()] {
        assert_eq!(r["mangled"], serde_json::json!([]), "{what}: {r}");
        assert_eq!(r["duplicates"], serde_json::json!([]), "{what}: {r}");
        arrived.extend(
            r["arrived"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32),
        );
    }
    arrived
}

fn write_probes(probes: &[Probe], tag: &str) -> String {
    let path = std::env::temp_dir().join(format!("fwd-diff-{}-{tag}.txt", std::process::id()));
    let mut text = String::new();
    for p in probes {
        let hex: String = p.bytes.iter().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(
            text,
            "{} {} {hex}",
            p.id,
            if p.from_sink { "s" } else { "g" }
        );
    }
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// Compares the two outcomes and returns a readable report of every difference
/// (empty when they agree).
fn compare(
    probes: &[Probe],
    kernel: &Outcome,
    fwd: &Outcome,
    oracle: &Oracle,
    names: &[(String, String)],
    bytes_too: bool,
) -> String {
    let mut report = String::new();
    let mut differing = 0;
    for p in probes {
        let (k, f) = (kernel.arrived.contains(&p.id), fwd.arrived.contains(&p.id));
        if k == f {
            continue;
        }
        differing += 1;
        if differing > 40 {
            continue;
        }
        let (model, hits) = oracle.judge(p);
        let word = |b: bool| if b { "forwarded" } else { "dropped" };
        let _ = writeln!(
            report,
            "{}\n    kernel: {}, fwd: {}, fwd's model: {} via",
            p.describe(),
            word(k),
            word(f),
            word(model)
        );
        for h in hits {
            let (name, line) = &names[h as usize];
            let _ = writeln!(report, "      {name}: {line}");
        }
    }
    if differing > 0 {
        let _ = writeln!(
            report,
            "{differing} of {} packets had different outcomes (first 40 shown)",
            probes.len()
        );
    }
    for (id, (k, f)) in kernel.counters.iter().zip(&fwd.counters).enumerate() {
        if k.packets != f.packets || (bytes_too && k.bytes != f.bytes) {
            let (name, line) = &names[id];
            let _ = writeln!(
                report,
                "counter {name} ({line}): kernel {} pkts {} bytes, fwd {} pkts {} bytes",
                k.packets, k.bytes, f.packets, f.bytes
            );
        }
    }
    report
}

/// What a differential run found.
struct Run {
    /// Every difference, readable; empty when fwd and the kernel agree.
    report: String,
    /// Counter names with the kernel's counts.
    kernel_counters: Vec<((String, String), Counter)>,
    forwarded: usize,
}

/// Loads `template` into a Linux forwarder and into fwd (one testbed each), sends
/// `probes` through both and compares outcomes and counters.
fn differential(template: &str, probes: &[Probe], tag: &str) -> Run {
    let file = write_probes(probes, tag);

    // Linux.
    let ktb = Testbed::up();
    let k_rs = RulesConfig::from_toml_str(&rules_for(template, &ktb), "rules.toml").unwrap();
    kernel::quiet_hosts(&ktb);
    let v6 = probes[0].src.is_ipv6();
    let save = kernel_up(&ktb, &k_rs, v6);
    let kernel = Outcome {
        arrived: send_all(&ktb, &file, "kernel"),
        counters: kernel_counters(&ktb, &k_rs, v6),
    };
    drop(ktb);

    // fwd.
    let ftb = Testbed::up();
    let rules = rules_for(template, &ftb);
    let f_rs = RulesConfig::from_toml_str(&rules, "rules.toml").unwrap();
    kernel::quiet_hosts(&ftb);
    let daemon = Fwd::start(&ftb, &fwd_config(&ftb, &rules));
    let fwd = Outcome {
        arrived: send_all(&ftb, &file, "fwd"),
        counters: fwd_counters(&ftb, &f_rs),
    };
    let stats = daemon.stats();
    drop(daemon);
    let _ = std::fs::remove_file(&file);

    let env = Env {
        ports: vec![ftb.port_a(), ftb.port_b()],
        local_addrs: ["198.18.0.1", "198.19.0.1", "2001:db8:a::1", "2001:db8:b::1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect(),
    };
    let oracle = Oracle {
        rs: &f_rs,
        eval: LinearEvaluator::new(&f_rs, &env),
    };
    let names = counter_names(&k_rs, &save);
    let mut report = compare(probes, &kernel, &fwd, &oracle, &names, true);
    if !report.is_empty() {
        let _ = write!(report, "fwd stats: {stats}");
    }
    eprintln!(
        "{tag}: {} packets, kernel forwarded {}, fwd {}",
        probes.len(),
        kernel.arrived.len(),
        fwd.arrived.len(),
    );
    // The model itself should agree with the kernel too (informational: the
    // assertion is about the daemon).
    let model_diff = probes
        .iter()
        .filter(|p| oracle.judge(p).0 != kernel.arrived.contains(&p.id))
        .count();
    if model_diff > 0 {
        eprintln!(
            "{tag}: fwd's reference evaluator disagrees with the kernel on {model_diff} packets"
        );
    }
    Run {
        report,
        kernel_counters: names.into_iter().zip(kernel.counters).collect(),
        forwarded: kernel.arrived.len(),
    }
}

#[test]
fn ipv4_verdicts_and_counters_match_the_kernel() {
    require_root!();
    let started = Instant::now();
    let probes = probes_v4(SEED, V4_PACKETS);
    let run = differential(RULES_V4, &probes, "ipv4");
    eprintln!("ipv4: {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        run.report.is_empty(),
        "fwd and the kernel disagree:\n{}",
        run.report
    );
    // Every rule that can match did.
    let unhit: Vec<&str> = run
        .kernel_counters
        .iter()
        .filter(|((_, line), c)| c.packets == 0 && !line.contains("never"))
        .map(|((name, _), _)| name.as_str())
        .collect();
    assert!(unhit.is_empty(), "rules no probe hit: {unhit:?}");
    assert!(
        run.forwarded > probes.len() / 5 && run.forwarded < probes.len() * 4 / 5,
        "{} of {} forwarded: too one-sided to tell much",
        run.forwarded,
        probes.len()
    );
}

#[test]
fn ipv6_verdicts_and_counters_match_the_kernel() {
    require_root!();
    let started = Instant::now();
    let probes = probes_v6(SEED, V6_PACKETS);
    let run = differential(RULES_V6, &probes, "ipv6");
    eprintln!("ipv6: {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        run.report.is_empty(),
        "fwd and the kernel disagree:\n{}",
        run.report
    );
    let unhit: Vec<&str> = run
        .kernel_counters
        .iter()
        .filter(|((_, line), c)| c.packets == 0 && !line.contains("never"))
        .map(|((name, _), _)| name.as_str())
        .collect();
    assert!(unhit.is_empty(), "rules no probe hit: {unhit:?}");
    assert!(
        run.forwarded > probes.len() / 5 && run.forwarded < probes.len() * 4 / 5,
        "{} of {} forwarded: too one-sided to tell much",
        run.forwarded,
        probes.len()
    );
}

/// A rule with a TCP match that meets an IPv4 TCP fragment at offset 1 (8 bytes) drops
/// it on the spot: xt_tcpudp's "evil TCP offset=1 frag" hotdrop (RFC 1858: such a
/// fragment can overwrite the flags of the first). No counter moves, not even the
/// policy's; a rule set without TCP matches forwards it. fwd does not do this yet
/// (its TCP matches just do not match a later fragment), so the main probe set leaves
/// these fragments out and this test says what the kernel does.
#[test]
#[ignore = "fwd does not hotdrop TCP fragments at offset 1 yet"]
fn tcp_fragment_at_offset_1_is_dropped_by_a_tcp_match() {
    require_root!();
    let probes: Vec<Probe> = probes_v4(SEED, 600)
        .into_iter()
        .filter(|p| !p.from_sink && p.proto == 6)
        .enumerate()
        .map(|(i, mut p)| {
            p.frag = if i % 2 == 0 {
                Frag::Later(1, i % 4 == 0)
            } else {
                Frag::Later(2, false)
            };
            p.bytes = build_v4(&p, i as u64);
            p
        })
        .collect();
    let run = differential(RULES_TINY_FRAG, &probes, "tcp-offset-1");
    assert!(
        run.report.is_empty(),
        "fwd and the kernel disagree:\n{}",
        run.report
    );
}

const RULES_TINY_FRAG: &str = r#"
[chains.FORWARD]
policy = "ACCEPT"
rules = [
  { src = "198.18.128.0/17", action = "DROP" },
  { proto = "tcp", dport = 22, action = "DROP" },
  { proto = "tcp", action = "ACCEPT" },
]
"#;
