//! ClassBench filter and trace files: reading them (db_generator / trace_generator
//! format, tab separated) into the fwd model, and generating look-alike sets, since the
//! published seeds cannot be downloaded here.

use std::fmt::Write as _;

use fwd::packet::meta::{Family, PacketMeta};
use fwd::rules::testgen::Rng;
use fwd::rules::{Chain, Counter, MarkMatch, Matches, Neg, Policy, Rule, Ruleset, Table, Target};
use ipnet::{IpNet, Ipv4Net};

/// One ClassBench filter: prefixes, inclusive port ranges, proto value/mask, flags
/// value/mask (`flags & mask == value`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    pub src: Ipv4Net,
    pub dst: Ipv4Net,
    pub sport: (u16, u16),
    pub dport: (u16, u16),
    pub proto: (u8, u8),
    pub flags: (u16, u16),
}

fn hex_pair<T: TryFrom<u32>>(s: &str) -> Option<(T, T)> {
    let (v, m) = s.trim().split_once('/')?;
    let p = |x: &str| {
        u32::from_str_radix(
            x.trim().trim_start_matches("0x").trim_start_matches("0X"),
            16,
        )
        .ok()
    };
    Some((T::try_from(p(v)?).ok()?, T::try_from(p(m)?).ok()?))
}

fn range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once(':')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

pub fn parse_filters(text: &str) -> Result<Vec<Filter>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        let bad = || format!("filter line {}: {line:?} is not a ClassBench filter", i + 1);
        let f: Vec<&str> = line
            .trim_start_matches('@')
            .split('\t')
            .filter(|s| !s.is_empty())
            .collect();
        if f.len() < 6 {
            return Err(bad());
        }
        out.push(Filter {
            src: f[0].trim().parse().map_err(|_| bad())?,
            dst: f[1].trim().parse().map_err(|_| bad())?,
            sport: range(f[2]).ok_or_else(bad)?,
            dport: range(f[3]).ok_or_else(bad)?,
            proto: hex_pair(f[4]).ok_or_else(bad)?,
            flags: hex_pair(f[5]).ok_or_else(bad)?,
        });
    }
    Ok(out)
}

pub fn format_filters(filters: &[Filter]) -> String {
    let mut s = String::new();
    for f in filters {
        let _ = writeln!(
            s,
            "@{}\t{}\t{} : {}\t{} : {}\t0x{:02X}/0x{:02X}\t0x{:04X}/0x{:04X}\t",
            f.src,
            f.dst,
            f.sport.0,
            f.sport.1,
            f.dport.0,
            f.dport.1,
            f.proto.0,
            f.proto.1,
            f.flags.0,
            f.flags.1
        );
    }
    s
}

/// A trace header; `id` is the filter it was drawn from (1-based), not necessarily
/// the first match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub flags: u32,
    pub id: u32,
}

pub fn parse_trace(text: &str) -> Result<Vec<Header>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        let bad = || format!("trace line {}: {line:?} is not a ClassBench header", i + 1);
        if f.len() < 6 {
            return Err(bad());
        }
        let n = |k: usize| f[k].parse::<u64>().map_err(|_| bad());
        out.push(Header {
            src: n(0)? as u32,
            dst: n(1)? as u32,
            sport: n(2)? as u16,
            dport: n(3)? as u16,
            proto: n(4)? as u8,
            flags: n(5)? as u32,
            id: if f.len() > 6 { n(6)? as u32 } else { 0 },
        });
    }
    Ok(out)
}

pub fn format_trace(trace: &[Header]) -> String {
    let mut s = String::new();
    for h in trace {
        let _ = writeln!(
            s,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            h.src, h.dst, h.sport, h.dport, h.proto, h.flags, h.id
        );
    }
    s
}

/// ClassBench semantics as fwd rules: one FORWARD chain, policy DROP, each filter an
/// ACCEPT rule in priority order. Ports compare whatever the header carries (ClassBench
/// has no "needs -p tcp"), flags become a mark match.
pub fn to_ruleset(filters: &[Filter]) -> Ruleset {
    let rules = filters
        .iter()
        .map(|f| {
            let net = |n: Ipv4Net| (n.prefix_len() > 0).then(|| Neg::is(IpNet::V4(n.trunc())));
            let ports =
                |(lo, hi): (u16, u16)| ((lo, hi) != (0, u16::MAX)).then(|| Neg::is(vec![(lo, hi)]));
            let matches = Matches {
                family: Some(Family::V4),
                src: net(f.src),
                dst: net(f.dst),
                sport: ports(f.sport),
                dport: ports(f.dport),
                proto: (f.proto.1 == 0xff).then_some(Neg::is(f.proto.0)),
                mark: (f.flags.1 != 0).then_some(Neg::is(MarkMatch {
                    value: u32::from(f.flags.0),
                    mask: u32::from(f.flags.1),
                })),
                ..Matches::default()
            };
            Rule {
                matches,
                target: Some(Target::Accept),
                comment: None,
                counters: Counter::default(),
            }
        })
        .collect();
    let chain = Chain {
        table: Table::Filter,
        name: "FORWARD".into(),
        policy: Some(Policy::Drop),
        policy_counters: Counter::default(),
        rules,
    };
    Ruleset::new(vec![], vec![chain]).expect("ClassBench rules are valid")
}

pub fn to_meta(h: &Header) -> PacketMeta {
    PacketMeta {
        family: Family::V4,
        src: u128::from(h.src),
        dst: u128::from(h.dst),
        proto: h.proto,
        sport: h.sport,
        dport: h.dport,
        mark: h.flags,
        ip_len: 64,
        l4_valid: true,
        in_port: 0,
        out_port: 1,
        ..PacketMeta::default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    Acl,
    Fw,
    Ipc,
}

/// Draws from a weighted table of (weight, value).
fn weighted<T: Copy>(rng: &mut Rng, table: &[(u64, T)]) -> T {
    let total: u64 = table.iter().map(|(w, _)| w).sum();
    let mut x = rng.below(total);
    for (w, v) in table {
        if x < *w {
            return *v;
        }
        x -= w;
    }
    table[table.len() - 1].1
}

/// A prefix of `len` bits inside one of the `bases` (clustered like real ACLs).
fn prefix(rng: &mut Rng, bases: &[u32], len: u8) -> Ipv4Net {
    let base = *rng.pick(bases);
    let addr = base | (rng.next_u64() as u32 & 0xffff);
    Ipv4Net::new(addr.into(), len).expect("len <= 32").trunc()
}

fn port_field(rng: &mut Rng, kind: u8) -> (u16, u16) {
    const WELL_KNOWN: [u16; 12] = [20, 21, 22, 23, 25, 53, 80, 110, 123, 443, 1521, 8080];
    match kind {
        0 => (0, u16::MAX),
        1 => {
            let p = if rng.chance(70) {
                *rng.pick(&WELL_KNOWN)
            } else {
                rng.below(65536) as u16
            };
            (p, p)
        }
        2 => (1024, u16::MAX),
        3 => (0, 1023),
        _ => {
            let a = rng.below(65000) as u16;
            (a, a.saturating_add(1 + rng.below(2000) as u16))
        }
    }
}

type Weights<T> = &'static [(u64, T)];
type ShapeTables = (
    Weights<u8>,
    Weights<u8>,
    Weights<u8>,
    Weights<u8>,
    Weights<(u8, u8)>,
);

/// ClassBench-like filters with the character of the published seeds.
pub fn generate(shape: Shape, n: usize, seed: u64) -> Vec<Filter> {
    let mut rng = Rng::new(seed);
    let bases: Vec<u32> = (0..64)
        .map(|_| (rng.next_u64() as u32) & 0xffff_0000)
        .collect();
    // (weight, prefix length) tables: acl has long dst prefixes, fw many wildcards.
    let (src_len, dst_len, sport_kind, dport_kind, protos): ShapeTables = match shape {
        Shape::Acl => (
            &[(20, 0), (10, 16), (20, 24), (15, 28), (35, 32)],
            &[(5, 0), (5, 16), (20, 24), (20, 30), (50, 32)],
            &[(95, 0), (5, 2)],
            &[(30, 0), (55, 1), (10, 4), (5, 2)],
            &[
                (60, (6, 0xff)),
                (25, (17, 0xff)),
                (5, (1, 0xff)),
                (10, (0, 0)),
            ],
        ),
        Shape::Fw => (
            &[(45, 0), (20, 8), (15, 16), (10, 24), (10, 32)],
            &[(35, 0), (15, 8), (20, 16), (15, 24), (15, 32)],
            &[(70, 0), (15, 2), (5, 3), (10, 4)],
            &[(30, 0), (35, 1), (15, 2), (20, 4)],
            &[
                (45, (6, 0xff)),
                (25, (17, 0xff)),
                (10, (1, 0xff)),
                (5, (47, 0xff)),
                (15, (0, 0)),
            ],
        ),
        Shape::Ipc => (
            &[(30, 0), (15, 16), (20, 24), (35, 32)],
            &[(25, 0), (15, 16), (25, 24), (35, 32)],
            &[(80, 0), (10, 2), (10, 1)],
            &[(30, 0), (45, 1), (15, 4), (10, 2)],
            &[
                (55, (6, 0xff)),
                (30, (17, 0xff)),
                (5, (1, 0xff)),
                (10, (0, 0)),
            ],
        ),
    };
    (0..n)
        .map(|_| {
            let proto = weighted(&mut rng, protos);
            let has_ports = matches!(proto.0, 6 | 17) || proto.1 == 0;
            let flags = if proto.0 == 6 && rng.chance(10) {
                (0x1000, 0x1000)
            } else {
                (0, 0)
            };
            let (sl, dl) = (weighted(&mut rng, src_len), weighted(&mut rng, dst_len));
            let (sk, dk) = (
                weighted(&mut rng, sport_kind),
                weighted(&mut rng, dport_kind),
            );
            let full = (0, u16::MAX);
            Filter {
                src: prefix(&mut rng, &bases, sl),
                dst: prefix(&mut rng, &bases, dl),
                sport: if has_ports {
                    port_field(&mut rng, sk)
                } else {
                    full
                },
                dport: if has_ports {
                    port_field(&mut rng, dk)
                } else {
                    full
                },
                proto,
                flags,
            }
        })
        .collect()
}

fn inside(rng: &mut Rng, lo: u32, hi: u32) -> u32 {
    lo + (rng.next_u64() % (u64::from(hi - lo) + 1)) as u32
}

/// Headers drawn from the filters: pick a filter, a header inside its box; half the
/// time repeat one of the recent headers instead (flow locality, trace_generator's
/// Pareto knobs in spirit).
pub fn generate_trace(filters: &[Filter], m: usize, seed: u64) -> Vec<Header> {
    let mut rng = Rng::new(seed ^ 0x7ace);
    let mut out: Vec<Header> = Vec::with_capacity(m);
    while out.len() < m {
        if out.len() > 16 && rng.chance(50) {
            let back = 1 + (rng.below(16) * rng.below(16)) as usize % out.len().min(256);
            out.push(out[out.len() - back]);
            continue;
        }
        let i = rng.below(filters.len() as u64) as usize;
        let f = &filters[i];
        let net = |rng: &mut Rng, n: Ipv4Net| {
            inside(rng, u32::from(n.network()), u32::from(n.broadcast()))
        };
        let proto = if f.proto.1 == 0xff {
            f.proto.0
        } else {
            *rng.pick(&[6u8, 17, 1])
        };
        out.push(Header {
            src: net(&mut rng, f.src),
            dst: net(&mut rng, f.dst),
            sport: inside(&mut rng, u32::from(f.sport.0), u32::from(f.sport.1)) as u16,
            dport: inside(&mut rng, u32::from(f.dport.0), u32::from(f.dport.1)) as u16,
            proto,
            flags: u32::from(f.flags.0 | (rng.next_u64() as u16 & !f.flags.1)),
            id: i as u32 + 1,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_classbench_lines() {
        let f = parse_filters("@117.254.57.119/32\t208.40.234.88/32\t0 : 65535\t1521 : 1521\t0x06/0xFF\t0x0000/0x0200\t\n").unwrap();
        assert_eq!(f[0].dport, (1521, 1521));
        assert_eq!(f[0].proto, (6, 0xff));
        assert_eq!(f[0].flags, (0, 0x200));
        assert_eq!(parse_filters(&format_filters(&f)).unwrap(), f);
        let t = parse_trace("3846124511\t1003051916\t65535\t135\t6\t268439552\t447\n").unwrap();
        assert_eq!(t[0].src, 3846124511);
        assert_eq!(t[0].id, 447);
    }

    #[test]
    fn generated_headers_match_their_filter() {
        for shape in [Shape::Acl, Shape::Fw, Shape::Ipc] {
            let filters = generate(shape, 200, 1);
            let trace = generate_trace(&filters, 500, 1);
            for h in &trace {
                let f = &filters[h.id as usize - 1];
                assert!(f.src.contains(&std::net::Ipv4Addr::from(h.src)));
                assert!(f.dst.contains(&std::net::Ipv4Addr::from(h.dst)));
                assert!((f.dport.0..=f.dport.1).contains(&h.dport));
                assert_eq!(h.flags as u16 & f.flags.1, f.flags.0);
            }
        }
    }
}
