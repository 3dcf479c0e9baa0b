//! One frame through the parser and the whole forwarding pipeline (`Router::route`:
//! parse -> L2 check -> checksum -> PREROUTING -> route -> TTL -> MTU -> FORWARD ->
//! POSTROUTING, ICMP errors built in place) against a two-port box with a small
//! fixed rule set, as a worker runs it.
//!
//! The input is either raw bytes or a structured frame (`Spec`) whose every length
//! field may lie: VLAN stacks, IPv4 IHL/total length/options/fragment fields, IPv6
//! payload length and extension-header chains (fragments, loops of unknown or
//! repeated headers, hop-by-hop anywhere), TCP data offset, and a final cut. The
//! structured form reaches the deep paths (valid checksums, routed destinations,
//! ICMP errors) that random bytes almost never do.
#![no_main]

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::OnceLock,
    time::Instant,
};

use arbitrary::{Arbitrary, Unstructured};
use fwd::{
    conntrack,
    classify::{Classifier, FlowCache},
    dataplane::{
        pipeline::{IcmpLimiter, PortInfo, Router},
        stats::Counters,
    },
    packet::{self, PacketMeta},
    route::{Fib, FibBuilder, RouteEntry},
    rules::{config::RulesConfig, Env, RuleCounters},
};
use libfuzzer_sys::fuzz_target;

/// The UMEM chunk size: no frame is longer.
const CHUNK: usize = 4096;

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

/// Every match kind and target the classifier compiles, on every hook.
const RULES: &str = r#"
[sets.blocked4]
family = "ipv4"
members = ["198.19.128.66", "198.18.7.0/24"]

[sets.blocked6]
family = "ipv6"
members = ["2001:db8:c::66"]

[chains.FORWARD]
policy = "ACCEPT"
rules = [
  { proto = "tcp", tcp_flags = "SYN,RST,ACK,FIN/SYN", action = "jump", target = "SYN_CHECK" },
  { dst_set = "blocked4", action = "DROP" },
  { dst_set = "blocked6", action = "DROP" },
  { proto = "udp", dport = "9:11,53", action = "LOG", log_prefix = "udp " },
  { proto = "icmp", icmp_type = "echo-request", length = "1000:65535", action = "DROP" },
  { proto = "ipv6-icmp", icmp_type = "128", action = "ACCEPT" },
  { fragment = true, action = "goto", target = "FRAGS" },
  { in = "fa", out = "f+", src = "!198.18.0.0/15", family = "ipv4", action = "DROP" },
  { mark = "0x1/0xff", action = "ACCEPT" },
  { dst_type = "LOCAL", action = "DROP" },
  { ctstate = "INVALID", action = "DROP" },
  { in = "fb", proto = "tcp", dport = 23, ctstate = "NEW", action = "REJECT", reject_with = "tcp-reset" },
  { in = "fb", proto = "udp", dport = 69, action = "REJECT" },
]

[chains.SYN_CHECK]
rules = [{ proto = "tcp", sport = "0:1023", action = "DROP" }, { action = "RETURN" }]

[chains.FRAGS]
rules = [{ proto = "udp", action = "DROP" }]

[tables.mangle.chains.PREROUTING]
rules = [{ proto = "tcp", dport = "80", action = "MARK", set_mark = "0x1/0xff" }]

[tables.raw.chains.PREROUTING]
rules = [{ src = "198.18.0.99", action = "DROP" }]

[tables.nat.chains.POSTROUTING]
rules = [
  { out = "fb", proto = "udp", sport = "7", action = "DROP" },
  { out = "fb", src = "198.18.0.0/15", action = "MASQUERADE" },
]

[tables.nat.chains.PREROUTING]
rules = [{ in = "fb", proto = "tcp", dport = 8080, action = "DNAT", to = "198.18.0.2:80" }]
"#;

struct Node {
    fib: Fib,
    ports: Vec<PortInfo>,
    classifier: Classifier,
}

fn the_box() -> &'static Node {
    static BOX: OnceLock<Node> = OnceLock::new();
    BOX.get_or_init(|| {
        let ports = vec![
            PortInfo {
                interface: "fa".into(),
                ifindex: 2,
                mac: MAC_A,
                mtu: 1500,
                v4: vec![Ipv4Addr::new(198, 18, 0, 1)],
                v6: vec!["2001:db8:a::1".parse().unwrap()],
                nets: vec![
                    "198.18.0.1/24".parse().unwrap(),
                    "2001:db8:a::1/64".parse().unwrap(),
                ],
            },
            PortInfo {
                interface: "fb".into(),
                ifindex: 3,
                mac: MAC_B,
                // A smaller egress MTU so "too big" (and frag-needed) is reachable.
                mtu: 1280,
                v4: vec![Ipv4Addr::new(198, 19, 0, 1)],
                v6: Vec::new(),
                nets: vec!["198.19.0.1/24".parse().unwrap()],
            },
        ];
        let mut b = FibBuilder::new();
        b.add("198.18.0.0/24".parse().unwrap(), RouteEntry::new(0, None))
            .unwrap();
        b.add("2001:db8:a::/64".parse().unwrap(), RouteEntry::new(0, None))
            .unwrap();
        b.add("198.19.0.0/24".parse().unwrap(), RouteEntry::new(1, None))
            .unwrap();
        b.add(
            "198.19.128.0/24".parse().unwrap(),
            RouteEntry::new(1, Some(IpAddr::V4(Ipv4Addr::new(198, 19, 0, 2)))),
        )
        .unwrap();
        b.add(
            "2001:db8:c::/64".parse().unwrap(),
            RouteEntry::new(1, Some(IpAddr::V6("2001:db8:b::2".parse().unwrap()))),
        )
        .unwrap();
        let rs = RulesConfig::from_toml_str(RULES, "fuzz.toml").unwrap();
        let env = Env {
            ports: ports.iter().map(|p| p.interface.clone()).collect(),
            local_addrs: ports
                .iter()
                .flat_map(|p| p.nets.iter().map(|n| n.addr()))
                .collect(),
        };
        let classifier = Classifier::compile(&rs, &env).unwrap();
        Node {
            fib: b.build(),
            ports,
            classifier,
        }
    })
}

/// Addresses worth aiming at: routed, connected, local, unrouted, blocked.
const V4_ADDRS: [[u8; 4]; 8] = [
    [198, 19, 128, 1],
    [198, 19, 128, 66],
    [198, 19, 0, 2],
    [198, 18, 0, 2],
    [198, 18, 0, 1],
    [198, 18, 0, 99],
    [203, 0, 113, 1],
    [224, 0, 0, 1],
];
const V6_ADDRS: [&str; 6] = [
    "2001:db8:c::1",
    "2001:db8:c::66",
    "2001:db8:a::2",
    "2001:db8:a::1",
    "2001:db8:ffff::1",
    "ff02::1",
];

#[derive(Arbitrary, Debug)]
struct Spec {
    /// 0: the ingress port's MAC, 1: broadcast, else a stranger's.
    dst_mac: u8,
    in_port: bool,
    /// TPIDs of VLAN tags (0x8100, 0x88a8, 0x9100 or anything), outermost first.
    vlans: Vec<u16>,
    l3: L3,
    l4: L4,
    payload_len: u16,
    /// Cut the frame to this length (after building), if shorter.
    cut: Option<u16>,
    /// Extra room in the buffer past the frame (the rest of the UMEM chunk).
    slack: u16,
}

#[derive(Arbitrary, Debug)]
enum L3 {
    V4 {
        /// None: the real header length.
        ihl: Option<u8>,
        /// None: the real total length.
        total_len: Option<u16>,
        flags_frag: u16,
        ttl: u8,
        proto: Option<u8>,
        options: Vec<u8>,
        src: u8,
        dst: u8,
        good_checksum: bool,
    },
    V6 {
        /// None: the real payload length.
        payload_len: Option<u16>,
        hop_limit: u8,
        ext: Vec<Ext>,
        proto: Option<u8>,
        src: u8,
        dst: u8,
    },
    Other {
        ethertype: u16,
        bytes: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
struct Ext {
    /// Hop-by-hop (0), routing (43), fragment (44), AH (51), dst options (60), or any.
    kind: u8,
    /// The length byte as written (may lie).
    len: u8,
    /// Bytes actually present after the first two (may be fewer than `len` says).
    body: Vec<u8>,
    frag_off: u16,
}

#[derive(Arbitrary, Debug)]
enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        data_off: u8,
        flags: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
        len: Option<u16>,
    },
    Icmp {
        typ: u8,
        code: u8,
    },
    Bytes(Vec<u8>),
}

fn csum(b: &[u8]) -> u16 {
    let mut s = 0u32;
    for c in b.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

impl L4 {
    fn proto(&self, v6: bool) -> u8 {
        match self {
            L4::Tcp { .. } => 6,
            L4::Udp { .. } => 17,
            L4::Icmp { .. } if v6 => 58,
            L4::Icmp { .. } => 1,
            L4::Bytes(_) => 253,
        }
    }

    fn write(&self, out: &mut Vec<u8>, payload: usize) {
        match self {
            L4::Tcp {
                sport,
                dport,
                data_off,
                flags,
            } => {
                out.extend_from_slice(&sport.to_be_bytes());
                out.extend_from_slice(&dport.to_be_bytes());
                out.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
                out.push(data_off << 4);
                out.push(*flags);
                out.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
            }
            L4::Udp { sport, dport, len } => {
                out.extend_from_slice(&sport.to_be_bytes());
                out.extend_from_slice(&dport.to_be_bytes());
                let l = len.unwrap_or((8 + payload) as u16);
                out.extend_from_slice(&l.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            L4::Icmp { typ, code } => out.extend_from_slice(&[*typ, *code, 0, 0, 0, 1, 0, 1]),
            L4::Bytes(b) => out.extend_from_slice(b),
        }
        out.extend(std::iter::repeat_n(0x5a, payload));
    }
}

impl Spec {
    fn build(&self, in_port: usize) -> Vec<u8> {
        let mut f = Vec::with_capacity(256);
        let dst = match self.dst_mac {
            0 => [MAC_A, MAC_B][in_port],
            1 => [0xff; 6],
            _ => [0x02, 9, 9, 9, 9, 9],
        };
        f.extend_from_slice(&dst);
        f.extend_from_slice(&[0x02, 1, 1, 1, 1, 1]);
        for (i, tpid) in self.vlans.iter().take(4).enumerate() {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(100 + i as u16).to_be_bytes());
        }
        let payload = usize::from(self.payload_len % 2048);
        match &self.l3 {
            L3::V4 {
                ihl,
                total_len,
                flags_frag,
                ttl,
                proto,
                options,
                src,
                dst,
                good_checksum,
            } => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let l3 = f.len();
                let opts = &options[..options.len().min(40) & !3];
                let hl = 20 + opts.len();
                let mut l4 = Vec::new();
                self.l4.write(&mut l4, payload);
                let tl = total_len.unwrap_or((hl + l4.len()) as u16);
                f.push(0x40 | ihl.map_or((hl / 4) as u8, |v| v & 0x0f));
                f.push(0);
                f.extend_from_slice(&tl.to_be_bytes());
                f.extend_from_slice(&[0x12, 0x34]);
                f.extend_from_slice(&flags_frag.to_be_bytes());
                f.push(*ttl);
                f.push(proto.unwrap_or(self.l4.proto(false)));
                f.extend_from_slice(&[0, 0]);
                f.extend_from_slice(&[198, 18, 0, 2 + (src % 3)]);
                f.extend_from_slice(&V4_ADDRS[usize::from(*dst) % V4_ADDRS.len()]);
                f.extend_from_slice(opts);
                if *good_checksum {
                    // Over the header IHL says, as far as it is in the frame.
                    let end = (l3 + usize::from(f[l3] & 0x0f) * 4).clamp(l3 + 20, f.len());
                    let c = csum(&f[l3..end]);
                    f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
                }
                f.extend_from_slice(&l4);
            }
            L3::V6 {
                payload_len,
                hop_limit,
                ext,
                proto,
                src,
                dst,
            } => {
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                let mut body = Vec::new();
                let kinds: Vec<u8> = ext
                    .iter()
                    .take(12)
                    .map(|e| match e.kind % 8 {
                        0 => 0,
                        1 => 43,
                        2 => 44,
                        3 => 51,
                        4 | 5 => 60,
                        6 => 59,
                        _ => e.kind,
                    })
                    .collect();
                let last = proto.unwrap_or(self.l4.proto(true));
                for (i, (e, &kind)) in ext.iter().zip(&kinds).enumerate() {
                    let next = kinds.get(i + 1).copied().unwrap_or(last);
                    body.push(next);
                    if kind == 44 {
                        body.push(0);
                        body.extend_from_slice(&e.frag_off.to_be_bytes());
                        body.extend_from_slice(&[0, 0, 0, 7]);
                    } else {
                        body.push(e.len);
                        body.extend_from_slice(&e.body[..e.body.len().min(64)]);
                    }
                }
                self.l4.write(&mut body, payload);
                let first = kinds.first().copied().unwrap_or(last);
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                let pl = payload_len.unwrap_or(body.len() as u16);
                f.extend_from_slice(&pl.to_be_bytes());
                f.push(first);
                f.push(*hop_limit);
                let s: Ipv6Addr = "2001:db8:a::2".parse().unwrap();
                let mut s = s.octets();
                s[15] += src % 3;
                f.extend_from_slice(&s);
                let d: Ipv6Addr = V6_ADDRS[usize::from(*dst) % V6_ADDRS.len()]
                    .parse()
                    .unwrap();
                f.extend_from_slice(&d.octets());
                f.extend_from_slice(&body);
            }
            L3::Other { ethertype, bytes } => {
                f.extend_from_slice(&ethertype.to_be_bytes());
                f.extend_from_slice(bytes);
            }
        }
        if let Some(cut) = self.cut {
            f.truncate(usize::from(cut));
        }
        f.truncate(CHUNK);
        f
    }
}

struct Worker {
    /// Small, so the fuzzer reaches the full-table paths too.
    ct: conntrack::Table,
    flow_cache: FlowCache,
    rule_counters: RuleCounters,
    icmp: IcmpLimiter,
    counters: Counters,
}

fn run(frame: &[u8], in_port: u16, slack: usize) {
    let bx = the_box();
    // Per-worker state lives across inputs, as in a worker: the flow cache must
    // stay right whatever came before.
    static WORKER: OnceLock<std::sync::Mutex<Worker>> = OnceLock::new();
    let mut w = WORKER
        .get_or_init(|| {
            std::sync::Mutex::new(Worker {
                ct: conntrack::Table::new(&conntrack::CtConfig {
                    max_entries: 64,
                    ..Default::default()
                }),
                flow_cache: FlowCache::new(1024),
                rule_counters: RuleCounters::new(bx.classifier.counter_len()),
                // Never out of tokens: every ICMP error path runs.
                icmp: IcmpLimiter::new(u32::MAX, u32::MAX),
                counters: Counters::new(bx.ports.len()),
            })
        })
        .lock()
        .unwrap();
    let w = &mut *w;

    let mut meta = PacketMeta::default();
    if packet::parse(frame, &mut meta).is_ok() {
        assert!(usize::from(meta.l3_off) < frame.len());
        assert!(meta.l3_off < meta.l4_off && usize::from(meta.l4_off) <= frame.len());
    }
    let _ = packet::verify_ipv4_header_checksum(frame, &meta);

    if frame.len() < 14 {
        // The XDP program and veth never hand fwd a frame shorter than Ethernet.
        return;
    }
    let buf_len = (frame.len() + slack).min(CHUNK).max(frame.len());
    let mut buf = vec![0u8; buf_len];
    buf[..frame.len()].copy_from_slice(frame);
    let mut len = frame.len();
    w.icmp.refill(Instant::now());
    static CLOCK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // Time moves 100 ms per input, so entries expire during a run.
    let now_ms = CLOCK.fetch_add(100, std::sync::atomic::Ordering::Relaxed);
    w.ct.expire(now_ms, 16);
    let mut router = Router {
        fib: &bx.fib,
        ports: &bx.ports,
        classifier: &bx.classifier,
        flow_cache: &mut w.flow_cache,
        rule_counters: &mut w.rule_counters,
        ct: Some(&mut w.ct),
        icmp: &mut w.icmp,
        counters: &mut w.counters,
        now_ms,
    };
    if let Some((out, nh)) = router.route(&mut buf, &mut len, in_port, &mut meta) {
        assert!(usize::from(out) < bx.ports.len());
        assert_eq!(nh.port, out);
        assert!(len >= 14 && len <= buf.len(), "len {len} of {}", buf.len());
        // What leaves must parse again (a forwarded frame or a built ICMP error).
        let mut again = PacketMeta::default();
        let r = packet::parse(&buf[..len], &mut again);
        assert!(
            matches!(
                r,
                Ok(()) | Err(packet::ParseError::TruncatedL4 | packet::ParseError::BadTcpHeader)
            ),
            "sent a frame that does not parse: {r:?}"
        );
    }
    let mut drained = Vec::new();
    w.rule_counters.drain_log(&mut drained);
    assert!(w.ct.len() <= w.ct.max_entries(), "the connection table grew past its bound");
}

// The first byte picks the form: even, the rest is a raw frame (the seed corpus
// holds real frames this way, from port 0 or 1 by bit 1); odd, the rest builds a `Spec`.
fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let frame = &rest[..rest.len().min(CHUNK)];
        run(frame, u16::from(mode & 2 != 0), usize::from(mode >> 2) * 16);
    } else if let Ok(spec) = Spec::arbitrary_take_rest(Unstructured::new(rest)) {
        let in_port = usize::from(spec.in_port);
        let f = spec.build(in_port);
        run(&f, in_port as u16, usize::from(spec.slack));
    }
});
