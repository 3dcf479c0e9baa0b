//! The textual forms shared by the TOML front end and iptables-save: protocol and ICMP
//! names, port ranges, TCP flag lists, `value/mask` pairs. Errors are one phrase about
//! the value, the caller adds the place.

use std::net::IpAddr;

use super::{IcmpMatch, NatRange, Ports, TcpFlags, ICMP_ANY};
use crate::packet::meta::{ctstate, ctstatus};

/// /etc/protocols names that iptables-save prints.
const PROTOS: &[(&str, u8)] = &[
    ("icmp", 1),
    ("igmp", 2),
    ("tcp", 6),
    ("udp", 17),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("ipv6-icmp", 58),
    ("icmpv6", 58),
    ("dccp", 33),
    ("sctp", 132),
    ("udplite", 136),
];

/// Protocols that carry ports (the ones xt_multiport accepts).
pub const PORT_PROTOS: [u8; 5] = [6, 17, 33, 132, 136];

/// `tcp`, `6`, `all` (None: any protocol).
pub fn parse_proto(s: &str) -> Result<Option<u8>, String> {
    if s == "all" || s == "0" {
        return Ok(None);
    }
    if let Some((_, n)) = PROTOS.iter().find(|(name, _)| name.eq_ignore_ascii_case(s)) {
        return Ok(Some(*n));
    }
    s.parse::<u8>()
        .map(Some)
        .map_err(|_| format!("{s:?} is not a protocol name or number"))
}

pub fn proto_name(p: u8) -> String {
    match PROTOS.iter().find(|(_, n)| *n == p) {
        Some((name, _)) => (*name).to_string(),
        None => p.to_string(),
    }
}

fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `80`, `1024:65535`, `:1023`, `1024:` (iptables' forms).
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?} is not a port or port range");
    match s.split_once(':') {
        None => parse_port(s).map(|p| (p, p)).ok_or_else(bad),
        Some((lo, hi)) => {
            let lo = if lo.is_empty() {
                Some(0)
            } else {
                parse_port(lo)
            };
            let hi = if hi.is_empty() {
                Some(u16::MAX)
            } else {
                parse_port(hi)
            };
            match (lo, hi) {
                (Some(lo), Some(hi)) if lo <= hi => Ok((lo, hi)),
                _ => Err(bad()),
            }
        }
    }
}

/// `80,443,8000:8080`.
pub fn parse_port_list(s: &str) -> Result<Ports, String> {
    s.split(',').map(parse_port_range).collect()
}

pub fn format_ports(p: &[(u16, u16)]) -> String {
    let parts: Vec<String> = p
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}:{hi}")
            }
        })
        .collect();
    parts.join(",")
}

/// The flags iptables knows by name, in the order libxt_tcp prints them.
const TCP_FLAGS: &[(&str, u8)] = &[
    ("FIN", 0x01),
    ("SYN", 0x02),
    ("RST", 0x04),
    ("PSH", 0x08),
    ("ACK", 0x10),
    ("URG", 0x20),
];

/// `SYN,ACK`, `ALL`, `NONE`.
pub fn parse_flag_list(s: &str) -> Result<u8, String> {
    let mut bits = 0;
    for name in s.split(',') {
        bits |= match name.to_ascii_uppercase().as_str() {
            "ALL" => 0x3f,
            "NONE" => 0,
            n => TCP_FLAGS
                .iter()
                .find(|(f, _)| *f == n)
                .map(|(_, b)| *b)
                .ok_or_else(|| {
                    format!("{name:?} is not a TCP flag (FIN,SYN,RST,PSH,ACK,URG,ALL,NONE)")
                })?,
        };
    }
    Ok(bits)
}

pub fn format_flag_list(bits: u8) -> String {
    if bits == 0 {
        return "NONE".into();
    }
    let names: Vec<&str> = TCP_FLAGS
        .iter()
        .filter(|(_, b)| bits & b != 0)
        .map(|(n, _)| *n)
        .collect();
    names.join(",")
}

/// The TOML form `MASK/COMP`, e.g. `SYN,RST,ACK,FIN/SYN`.
pub fn parse_tcp_flags(s: &str) -> Result<TcpFlags, String> {
    let (mask, comp) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not MASK/COMP (e.g. \"SYN,RST,ACK,FIN/SYN\")"))?;
    Ok(TcpFlags {
        mask: parse_flag_list(mask)?,
        comp: parse_flag_list(comp)?,
    })
}

pub fn format_tcp_flags(f: TcpFlags) -> String {
    format!("{}/{}", format_flag_list(f.mask), format_flag_list(f.comp))
}

const ICMP_NAMES: &[(&str, u8, Option<u8>)] = &[
    ("any", ICMP_ANY, None),
    ("echo-reply", 0, None),
    ("pong", 0, None),
    ("destination-unreachable", 3, None),
    ("network-unreachable", 3, Some(0)),
    ("host-unreachable", 3, Some(1)),
    ("protocol-unreachable", 3, Some(2)),
    ("port-unreachable", 3, Some(3)),
    ("fragmentation-needed", 3, Some(4)),
    ("source-quench", 4, None),
    ("redirect", 5, None),
    ("echo-request", 8, None),
    ("ping", 8, None),
    ("router-advertisement", 9, None),
    ("router-solicitation", 10, None),
    ("time-exceeded", 11, None),
    ("ttl-zero-during-transit", 11, Some(0)),
    ("ttl-zero-during-reassembly", 11, Some(1)),
    ("parameter-problem", 12, None),
    ("timestamp-request", 13, None),
    ("timestamp-reply", 14, None),
    ("address-mask-request", 17, None),
    ("address-mask-reply", 18, None),
];

const ICMPV6_NAMES: &[(&str, u8, Option<u8>)] = &[
    ("any", ICMP_ANY, None),
    ("destination-unreachable", 1, None),
    ("no-route", 1, Some(0)),
    ("address-unreachable", 1, Some(3)),
    ("port-unreachable", 1, Some(4)),
    ("packet-too-big", 2, None),
    ("time-exceeded", 3, None),
    ("parameter-problem", 4, None),
    ("echo-request", 128, None),
    ("ping", 128, None),
    ("echo-reply", 129, None),
    ("pong", 129, None),
    ("router-solicitation", 133, None),
    ("router-advertisement", 134, None),
    ("neighbour-solicitation", 135, None),
    ("neighbor-solicitation", 135, None),
    ("neighbour-advertisement", 136, None),
    ("neighbor-advertisement", 136, None),
    ("redirect", 137, None),
];

/// `echo-request`, `8`, `3/3`, `any`; `v6` selects the ICMPv6 names.
pub fn parse_icmp(s: &str, v6: bool) -> Result<IcmpMatch, String> {
    let table = if v6 { ICMPV6_NAMES } else { ICMP_NAMES };
    if let Some((_, kind, code)) = table.iter().find(|(n, _, _)| *n == s) {
        return Ok(IcmpMatch {
            kind: *kind,
            code: *code,
        });
    }
    let bad = || {
        format!(
            "{s:?} is not an ICMP{} type name, TYPE or TYPE/CODE",
            if v6 { "v6" } else { "" }
        )
    };
    let (kind, code) = match s.split_once('/') {
        Some((t, c)) => (t, Some(c)),
        None => (s, None),
    };
    let kind: u8 = kind.parse().map_err(|_| bad())?;
    let code = code
        .map(|c| c.parse::<u8>())
        .transpose()
        .map_err(|_| bad())?;
    if kind == ICMP_ANY && code.is_some() {
        return Err(bad());
    }
    Ok(IcmpMatch { kind, code })
}

/// Numeric form, as iptables-save prints it.
pub fn format_icmp(m: IcmpMatch) -> String {
    match (m.kind, m.code) {
        (ICMP_ANY, _) => "any".into(),
        (t, None) => t.to_string(),
        (t, Some(c)) => format!("{t}/{c}"),
    }
}

/// A u32 in decimal or `0x` hex.
pub fn parse_u32(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("{s:?} is not a 32-bit number"))
}

/// `VALUE[/MASK]`, mask defaulting to all ones.
pub fn parse_value_mask(s: &str) -> Result<(u32, u32), String> {
    match s.split_once('/') {
        Some((v, m)) => Ok((parse_u32(v)?, parse_u32(m)?)),
        None => Ok((parse_u32(s)?, u32::MAX)),
    }
}

/// `64:1500` or `64` for `-m length`.
pub fn parse_length(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?} is not a length or LO:HI length range");
    let (lo, hi) = s.split_once(':').unwrap_or((s, s));
    let lo: u16 = lo.parse().map_err(|_| bad())?;
    let hi: u16 = if hi.is_empty() {
        u16::MAX
    } else {
        hi.parse().map_err(|_| bad())?
    };
    if lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

pub fn format_length((lo, hi): (u16, u16)) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}:{hi}")
    }
}

/// `--ctstate` names in the order libxt_conntrack prints them.
const CTSTATES: &[(&str, u8)] = &[
    ("INVALID", ctstate::INVALID),
    ("NEW", ctstate::NEW),
    ("RELATED", ctstate::RELATED),
    ("ESTABLISHED", ctstate::ESTABLISHED),
    ("UNTRACKED", ctstate::UNTRACKED),
    ("SNAT", ctstate::SNAT),
    ("DNAT", ctstate::DNAT),
];

/// `--ctstatus` names in libxt_conntrack's order.
const CTSTATUSES: &[(&str, u8)] = &[
    ("EXPECTED", ctstatus::EXPECTED),
    ("SEEN_REPLY", ctstatus::SEEN_REPLY),
    ("ASSURED", ctstatus::ASSURED),
    ("CONFIRMED", ctstatus::CONFIRMED),
];

fn parse_bit_list(s: &str, names: &[(&str, u8)], what: &str) -> Result<u8, String> {
    let mut bits = 0;
    for name in s.split(',') {
        bits |= names
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, b)| *b)
            .ok_or_else(|| {
                let all: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
                format!("{name:?} is not a {what} ({})", all.join(","))
            })?;
    }
    Ok(bits)
}

fn format_bit_list(bits: u8, names: &[(&str, u8)]) -> String {
    let parts: Vec<&str> = names
        .iter()
        .filter(|(_, b)| bits & b != 0)
        .map(|(n, _)| *n)
        .collect();
    parts.join(",")
}

/// `ESTABLISHED,RELATED` for `--ctstate` (and `--state`).
pub fn parse_ctstate(s: &str) -> Result<u8, String> {
    parse_bit_list(s, CTSTATES, "conntrack state")
}

/// libxt_conntrack's order: `RELATED,ESTABLISHED`.
pub fn format_ctstate(bits: u8) -> String {
    format_bit_list(bits, CTSTATES)
}

/// `ASSURED,SEEN_REPLY` for `--ctstatus`.
pub fn parse_ctstatus(s: &str) -> Result<u8, String> {
    parse_bit_list(s, CTSTATUSES, "conntrack status")
}

pub fn format_ctstatus(bits: u8) -> String {
    format_bit_list(bits, CTSTATUSES)
}

/// `PORT[-PORT]` of `--to-ports` and of a NAT range (iptables' NAT ranges use `-`).
pub fn parse_nat_ports(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?} is not a port or PORT-PORT range");
    let (lo, hi) = s.split_once('-').unwrap_or((s, s));
    match (parse_port(lo), parse_port(hi)) {
        (Some(lo), Some(hi)) if lo <= hi => Ok((lo, hi)),
        _ => Err(bad()),
    }
}

pub fn format_nat_ports((lo, hi): (u16, u16)) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

/// `--to-destination` / `--to-source`: `ADDR[-ADDR][:PORT[-PORT]]`, IPv6 with ports in
/// brackets as ip6tables writes it (`[2001:db8::1]:80`, `[2001:db8::1-2001:db8::9]:80`).
pub fn parse_nat_range(s: &str) -> Result<NatRange, String> {
    let bad = || format!("{s:?} is not ADDR[-ADDR][:PORT[-PORT]]");
    let (addrs, ports) = if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (inner, None),
            p => (inner, Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else if s.matches(':').count() > 1 {
        (s, None)
    } else {
        match s.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        }
    };
    if addrs.is_empty() {
        return Err(format!(
            "{s:?}: an address is needed (a port-only NAT is not supported)"
        ));
    }
    let (lo, hi) = addrs.split_once('-').unwrap_or((addrs, addrs));
    let addr = |a: &str| a.parse::<IpAddr>().map_err(|_| bad());
    Ok(NatRange {
        addr_min: addr(lo)?,
        addr_max: addr(hi)?,
        ports: ports.map(parse_nat_ports).transpose()?,
    })
}

pub fn format_nat_range(r: &NatRange) -> String {
    let mut addrs = r.addr_min.to_string();
    if r.addr_max != r.addr_min {
        addrs = format!("{addrs}-{}", r.addr_max);
    }
    match (r.ports, r.addr_min) {
        (None, _) => addrs,
        (Some(p), IpAddr::V4(_)) => format!("{addrs}:{}", format_nat_ports(p)),
        (Some(p), IpAddr::V6(_)) => format!("[{addrs}]:{}", format_nat_ports(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conntrack_and_nat_forms() {
        assert_eq!(
            parse_ctstate("ESTABLISHED,RELATED"),
            Ok(ctstate::ESTABLISHED | ctstate::RELATED)
        );
        assert_eq!(
            format_ctstate(ctstate::ESTABLISHED | ctstate::RELATED),
            "RELATED,ESTABLISHED"
        );
        assert!(parse_ctstate("NEW,OLD").unwrap_err().contains("\"OLD\""));
        assert_eq!(
            parse_ctstatus("ASSURED,SEEN_REPLY"),
            Ok(ctstatus::ASSURED | ctstatus::SEEN_REPLY)
        );
        assert_eq!(format_ctstatus(ctstatus::ASSURED), "ASSURED");
        for text in [
            "198.19.0.2",
            "198.19.0.2:80",
            "198.19.0.2-198.19.0.9:1024-2048",
            "2001:db8::2",
            "2001:db8::2-2001:db8::9",
            "[2001:db8::2]:80",
            "[2001:db8::2-2001:db8::9]:80-90",
        ] {
            let r = parse_nat_range(text).unwrap();
            assert_eq!(format_nat_range(&r), text);
        }
        let r = parse_nat_range("198.19.0.2:80").unwrap();
        assert_eq!(r.ports, Some((80, 80)));
        assert!(parse_nat_range(":80").is_err());
        assert!(parse_nat_range("198.19.0.2:90-80").is_err());
        assert!(parse_nat_range("[2001:db8::2]80").is_err());
        assert_eq!(parse_nat_ports("1024-65535"), Ok((1024, 65535)));
    }

    #[test]
    fn port_forms() {
        assert_eq!(parse_port_range("80"), Ok((80, 80)));
        assert_eq!(parse_port_range(":1023"), Ok((0, 1023)));
        assert_eq!(parse_port_range("1024:"), Ok((1024, 65535)));
        assert_eq!(
            parse_port_range("80-").unwrap_err(),
            "\"80-\" is not a port or port range"
        );
        assert!(parse_port_range("90:80").is_err());
        assert!(parse_port_range("65536").is_err());
        assert_eq!(
            parse_port_list("80,443,8000:8080"),
            Ok(vec![(80, 80), (443, 443), (8000, 8080)])
        );
        assert_eq!(format_ports(&[(80, 80), (8000, 8080)]), "80,8000:8080");
    }

    #[test]
    fn tcp_flag_forms_round_trip() {
        let f = parse_tcp_flags("SYN,RST,ACK,FIN/SYN").unwrap();
        assert_eq!(f, super::super::SYN_FLAGS);
        assert_eq!(format_flag_list(f.mask), "FIN,SYN,RST,ACK");
        assert_eq!(parse_flag_list("ALL"), Ok(0x3f));
        assert_eq!(format_flag_list(0), "NONE");
        assert!(parse_flag_list("ECE").is_err());
    }

    #[test]
    fn icmp_forms() {
        assert_eq!(
            parse_icmp("echo-request", false),
            Ok(IcmpMatch {
                kind: 8,
                code: None
            })
        );
        assert_eq!(
            parse_icmp("8/0", false),
            Ok(IcmpMatch {
                kind: 8,
                code: Some(0)
            })
        );
        assert_eq!(
            parse_icmp("echo-request", true),
            Ok(IcmpMatch {
                kind: 128,
                code: None
            })
        );
        assert_eq!(
            parse_icmp("port-unreachable", false),
            Ok(IcmpMatch {
                kind: 3,
                code: Some(3)
            })
        );
        assert!(parse_icmp("8/x", false).is_err());
        assert_eq!(
            format_icmp(IcmpMatch {
                kind: 3,
                code: Some(3)
            }),
            "3/3"
        );
    }

    #[test]
    fn protos_marks_lengths() {
        assert_eq!(parse_proto("tcp"), Ok(Some(6)));
        assert_eq!(parse_proto("ipv6-icmp"), Ok(Some(58)));
        assert_eq!(parse_proto("47"), Ok(Some(47)));
        assert_eq!(parse_proto("all"), Ok(None));
        assert!(parse_proto("tcpx").is_err());
        assert_eq!(proto_name(58), "ipv6-icmp");
        assert_eq!(parse_value_mask("0x10/0xff"), Ok((0x10, 0xff)));
        assert_eq!(parse_value_mask("7"), Ok((7, u32::MAX)));
        assert_eq!(parse_length("64:1500"), Ok((64, 1500)));
        assert!(parse_length("1500:64").is_err());
    }
}
