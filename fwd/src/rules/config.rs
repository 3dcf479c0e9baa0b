//! The TOML front end: `[sets.NAME]`, `[chains.NAME]` (filter table) and
//! `[tables.TABLE.chains.NAME]` (raw, mangle, nat), each rule one inline table.
//! Every error names the file, the line and the field.
//!
//! ```toml
//! [sets.blocked]
//! family = "ipv4"
//! members = ["198.18.5.0/24", "198.18.9.9"]
//!
//! [chains.FORWARD]
//! policy = "DROP"
//! rules = [
//!   { in = "veth-gen", proto = "tcp", dport = "80,443", action = "ACCEPT", comment = "web" },
//!   { src = "!198.18.0.0/24", action = "DROP" },
//!   { proto = "tcp", tcp_flags = "SYN,RST,ACK,FIN/SYN", action = "jump", target = "SYN_CHECK" },
//! ]
//!
//! [chains.SYN_CHECK]
//! rules = [{ src_set = "blocked", action = "DROP" }, { action = "RETURN" }]
//!
//! [tables.mangle.chains.PREROUTING]
//! rules = [{ in = "eth+", action = "MARK", set_mark = "0x1/0xff" }]
//!
//! [tables.nat.chains.PREROUTING]
//! rules = [{ proto = "tcp", dport = 8080, action = "DNAT", to = "198.19.0.2:80" }]
//!
//! [tables.nat.chains.POSTROUTING]
//! rules = [{ out = "wan0", action = "MASQUERADE" }]
//! ```
//!
//! Stateful matches and targets: `ctstate = "ESTABLISHED,RELATED"` (or `"!NEW"`),
//! `ctstatus = "ASSURED"`, `action = "REJECT"` with `reject_with = "tcp-reset"`,
//! `action = "SNAT"` with `to`, `action = "MASQUERADE"` with `to_ports`, and
//! `action = "NOTRACK"` in the raw table.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::names::{self, PORT_PROTOS};
use super::{
    AddrSet, Chain, Counter, Family, LogTarget, MarkMatch, Matches, ModelError, Neg, Policy,
    RejectWith, Rule, RulePlace, Ruleset, Table, Target,
};

/// The rules part of a config file. The full config embeds it with `#[serde(flatten)]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sets: BTreeMap<String, SetConfig>,
    /// Chains of the filter table.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub chains: BTreeMap<String, ChainConfig>,
    /// Chains of the raw, mangle and nat tables: `[tables.nat.chains.PREROUTING]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tables: BTreeMap<String, TableConfig>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    #[serde(default)]
    pub chains: BTreeMap<String, ChainConfig>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    pub family: Spanned<String>,
    pub members: Vec<Spanned<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// `ACCEPT` or `DROP`, built-in chains only (default ACCEPT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Spanned<String>>,
    #[serde(default)]
    pub rules: Vec<Spanned<RuleConfig>>,
}

/// A number or a string: `dport = 22` and `dport = "!22"` both read naturally.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Scalar {
    Int(i64),
    Str(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Str(s) => f.write_str(s),
        }
    }
}

/// One rule. A leading `!` inverts a match, as in iptables.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// `ipv4` or `ipv6`: restrict a rule without addresses to one family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub in_iface: Option<String>,
    #[serde(default, rename = "out", skip_serializing_if = "Option::is_none")]
    pub out_iface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_set: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_set: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<Scalar>,
    /// `MASK/COMP`, e.g. `SYN,RST,ACK,FIN/SYN` (that is `--syn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<String>,
    /// ICMP or ICMPv6 type (by `proto`): `echo-request`, `8`, `3/3`, `any`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<Scalar>,
    /// `VALUE[/MASK]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<Scalar>,
    /// `LO:HI` IP length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<Scalar>,
    /// true: non-first fragments only (`-f`); false: `! -f`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fragment: Option<bool>,
    /// `LOCAL` or `!LOCAL` (`-m addrtype`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_type: Option<String>,
    /// `NEW,ESTABLISHED,RELATED,INVALID,UNTRACKED,SNAT,DNAT` (`-m conntrack --ctstate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctstate: Option<String>,
    /// `EXPECTED,SEEN_REPLY,ASSURED,CONFIRMED` (`-m conntrack --ctstatus`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctstatus: Option<String>,
    /// ACCEPT, DROP, RETURN, jump, goto, LOG, MARK, REJECT, DNAT, SNAT, MASQUERADE,
    /// NOTRACK; absent: count only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// DNAT/SNAT: `ADDR[-ADDR][:PORT[-PORT]]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// MASQUERADE: `PORT[-PORT]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ports: Option<Scalar>,
    /// REJECT: `icmp-port-unreachable` (default), `tcp-reset`, ... (iptables' names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_with: Option<String>,
    /// The chain of `jump` / `goto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<u8>,
    /// `VALUE[/MASK]`: `mark = (mark & !MASK) | VALUE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_mark: Option<Scalar>,
    /// `VALUE[/MASK]`: `mark = (mark & !MASK) ^ VALUE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_xmark: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A config that cannot be loaded: `file:line: field: what` (the CLI exits 2).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub path: String,
    pub line: Option<usize>,
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.path, line, self.msg),
            None => write!(f, "{}: {}", self.path, self.msg),
        }
    }
}

/// 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl RulesConfig {
    /// Loads a rules-only TOML file (what `fwd import` writes).
    pub fn from_toml_str(text: &str, path: &str) -> Result<Ruleset, ConfigError> {
        let cfg: RulesConfig = toml::from_str(text).map_err(|e| ConfigError {
            path: path.into(),
            line: e.span().map(|s| line_of(text, s.start)),
            msg: e.message().trim_end().to_string(),
        })?;
        cfg.to_ruleset(text, path)
    }

    /// Builds the model. `text` is the document this config was parsed from (spans
    /// index into it), so an embedding config passes its whole file.
    pub fn to_ruleset(&self, text: &str, path: &str) -> Result<Ruleset, ConfigError> {
        let err = |span: Option<Range<usize>>, msg: String| ConfigError {
            path: path.into(),
            line: span.map(|s| line_of(text, s.start)),
            msg,
        };
        let mut sets = Vec::new();
        for (name, set) in &self.sets {
            let family = parse_family(set.family.get_ref())
                .map_err(|m| err(Some(set.family.span()), format!("sets.{name}.family: {m}")))?;
            let mut members = Vec::with_capacity(set.members.len());
            for (i, m) in set.members.iter().enumerate() {
                let net = parse_net(m.get_ref())
                    .map_err(|e| err(Some(m.span()), format!("sets.{name}.members[{i}]: {e}")))?;
                if super::net_family(&net) != family {
                    return Err(err(
                        Some(m.span()),
                        format!(
                            "sets.{name}.members[{i}]: {net} is not {}",
                            family_name(family)
                        ),
                    ));
                }
                members.push(net);
            }
            sets.push(AddrSet {
                name: name.clone(),
                family,
                members,
            });
        }
        let mut chains = Vec::new();
        let mut spans: Vec<(RulePlace, Range<usize>)> = Vec::new();
        let mut groups = vec![(Table::Filter, "chains".to_string(), &self.chains)];
        for (tname, t) in &self.tables {
            let table = match Table::from_name(tname) {
                Some(Table::Filter) => {
                    return Err(err(
                        None,
                        "tables.filter: filter chains go in [chains.NAME]".into(),
                    ))
                }
                Some(t) => t,
                None => {
                    return Err(err(
                        None,
                        format!("tables.{tname}: not a table (raw, mangle, nat)"),
                    ))
                }
            };
            groups.push((table, format!("tables.{tname}.chains"), &t.chains));
        }
        for (table, prefix, group) in groups {
            for (name, c) in group {
                let builtin = table.builtin_hook(name).is_some();
                let policy = match &c.policy {
                    None => None,
                    Some(p) if !builtin => {
                        return Err(err(
                            Some(p.span()),
                            format!("{prefix}.{name}.policy: a user chain has no policy"),
                        ))
                    }
                    Some(p) => Some(parse_policy(p.get_ref()).map_err(|m| {
                        err(Some(p.span()), format!("{prefix}.{name}.policy: {m}"))
                    })?),
                };
                let mut rules = Vec::with_capacity(c.rules.len());
                for (i, r) in c.rules.iter().enumerate() {
                    let rule = r.get_ref().to_rule().map_err(|(field, m)| {
                        err(
                            Some(r.span()),
                            format!("{prefix}.{name}.rules[{i}].{field}: {m}"),
                        )
                    })?;
                    spans.push((
                        RulePlace {
                            table,
                            chain: name.clone(),
                            rule: Some(i),
                        },
                        r.span(),
                    ));
                    rules.push(rule);
                }
                if let Some(first) = c.rules.first() {
                    spans.push((
                        RulePlace {
                            table,
                            chain: name.clone(),
                            rule: None,
                        },
                        first.span(),
                    ));
                }
                chains.push(Chain {
                    table,
                    name: name.clone(),
                    policy,
                    policy_counters: Counter::default(),
                    rules,
                });
            }
        }
        Ruleset::new(sets, chains).map_err(|e| {
            let looping = match &e {
                ModelError::Loop { table, chains } => self.loop_place(*table, chains),
                _ => None,
            };
            let place = match &e {
                ModelError::DuplicateChain { place, .. }
                | ModelError::Invalid { place, .. }
                | ModelError::Target { place, .. }
                | ModelError::UnknownChain { place, .. }
                | ModelError::UnknownSet { place, .. } => Some(place),
                ModelError::Loop { .. } => looping.as_ref(),
                _ => None,
            };
            let span =
                place.and_then(|p| spans.iter().find(|(q, _)| q == p).map(|(_, s)| s.clone()));
            let msg = match (&e, place) {
                (ModelError::Loop { chains, .. }, Some(p)) => format!(
                    "{}.target: chain loop {}",
                    rule_path(p),
                    chains.join(" -> ")
                ),
                _ => describe_model_error(&e),
            };
            err(span, msg)
        })
    }

    /// The rule of chain `cycle[0]` that jumps (or goes) to `cycle[1]`: where a
    /// chain loop is reported.
    fn loop_place(&self, table: Table, cycle: &[String]) -> Option<RulePlace> {
        let (from, to) = (cycle.first()?, cycle.get(1)?);
        let group = match table {
            Table::Filter => &self.chains,
            t => &self.tables.get(t.name())?.chains,
        };
        let rule = group.get(from)?.rules.iter().position(|r| {
            let r = r.get_ref();
            r.target.as_deref() == Some(to.as_str())
                && r.action.as_deref().is_some_and(|a| {
                    a.eq_ignore_ascii_case("jump") || a.eq_ignore_ascii_case("goto")
                })
        })?;
        Some(RulePlace {
            table,
            chain: from.clone(),
            rule: Some(rule),
        })
    }

    /// The config form of a model (counters are not part of a config).
    pub fn from_ruleset(rs: &Ruleset) -> RulesConfig {
        let mut cfg = RulesConfig::default();
        for set in rs.sets() {
            cfg.sets.insert(
                set.name.clone(),
                SetConfig {
                    family: Spanned::new(0..0, family_name(set.family).into()),
                    members: set
                        .members
                        .iter()
                        .map(|m| Spanned::new(0..0, format_net(m)))
                        .collect(),
                },
            );
        }
        for chain in rs.chains() {
            let c = ChainConfig {
                policy: chain
                    .policy
                    .map(|p| Spanned::new(0..0, p.name().to_string())),
                rules: chain
                    .rules
                    .iter()
                    .map(|r| Spanned::new(0..0, RuleConfig::from_rule(r)))
                    .collect(),
            };
            let group = match chain.table {
                Table::Filter => &mut cfg.chains,
                t => &mut cfg.tables.entry(t.name().into()).or_default().chains,
            };
            group.insert(chain.name.clone(), c);
        }
        cfg
    }

    /// Human-readable TOML: one inline table per rule line.
    pub fn to_toml_string(&self) -> String {
        let mut out = String::new();
        for (name, set) in &self.sets {
            out += &format!(
                "[sets.{}]\nfamily = {}\nmembers = [\n",
                key(name),
                quote(set.family.get_ref())
            );
            for m in &set.members {
                out += &format!("  {},\n", quote(m.get_ref()));
            }
            out += "]\n\n";
        }
        let mut groups = vec![("chains".to_string(), &self.chains)];
        groups.extend(
            self.tables
                .iter()
                .map(|(t, tc)| (format!("tables.{}.chains", key(t)), &tc.chains)),
        );
        for (prefix, group) in groups {
            for (name, c) in group {
                out += &format!("[{prefix}.{}]\n", key(name));
                if let Some(p) = &c.policy {
                    out += &format!("policy = {}\n", quote(p.get_ref()));
                }
                out += "rules = [\n";
                for r in &c.rules {
                    out += &format!("  {},\n", r.get_ref().inline());
                }
                out += "]\n\n";
            }
        }
        out
    }
}

/// Where a rule sits in the config: `chains.A.rules[2]`, `tables.nat.chains.B`.
fn rule_path(p: &RulePlace) -> String {
    let mut s = match p.table {
        Table::Filter => format!("chains.{}", p.chain),
        t => format!("tables.{}.chains.{}", t.name(), p.chain),
    };
    if let Some(i) = p.rule {
        s += &format!(".rules[{i}]");
    }
    s
}

fn describe_model_error(e: &ModelError) -> String {
    let path = rule_path;
    match e {
        ModelError::Invalid { place, what } => format!("{}: {what}", path(place)),
        ModelError::Target { place, field, what } => format!("{}.{field}: {what}", path(place)),
        ModelError::UnknownChain { place, target } => {
            format!(
                "{}.target: no chain {target:?} in table {}",
                path(place),
                place.table.name()
            )
        }
        ModelError::UnknownSet { place, set } => {
            format!("{}: no set {set:?} in [sets]", path(place))
        }
        other => other.to_string(),
    }
}

fn quote(s: &str) -> String {
    toml::Value::String(s.into()).to_string()
}

/// A bare key when TOML allows it, a basic string otherwise. Not `quote`: the toml
/// crate may pick a multi-line literal (`'''a'b\\c'''`) for a string holding both quote
/// kinds, which is a valid value but not a valid key (found by fuzzing the importer
/// with a chain named `ON'Y_IN\UT`).
fn key(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return s.to_string();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn scalar_toml(s: &Scalar) -> String {
    match s {
        Scalar::Int(i) => i.to_string(),
        Scalar::Str(s) => quote(s),
    }
}

fn parse_family(s: &str) -> Result<Family, String> {
    match s {
        "ipv4" => Ok(Family::V4),
        "ipv6" => Ok(Family::V6),
        _ => Err(format!("{s:?} is not ipv4 or ipv6")),
    }
}

pub fn family_name(f: Family) -> &'static str {
    match f {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    }
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    match s {
        "ACCEPT" => Ok(Policy::Accept),
        "DROP" => Ok(Policy::Drop),
        _ => Err(format!("{s:?} is not ACCEPT or DROP")),
    }
}

/// An address or prefix; host bits are cleared as iptables does (`198.18.0.1/24` is
/// `198.18.0.0/24`).
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is not an address or prefix"))
}

/// `198.18.0.1` for a host, `198.18.0.0/24` otherwise.
pub fn format_net(n: &IpNet) -> String {
    if n.prefix_len() == n.max_prefix_len() {
        n.addr().to_string()
    } else {
        n.to_string()
    }
}

fn neg(s: &str) -> (bool, &str) {
    match s.strip_prefix('!') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, s),
    }
}

fn neg_str(invert: bool, s: String) -> String {
    if invert {
        format!("!{s}")
    } else {
        s
    }
}

type FieldError = (&'static str, String);

fn field<T>(
    name: &'static str,
    v: &Option<impl ToString>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<Neg<T>>, FieldError> {
    let Some(v) = v else { return Ok(None) };
    let text = v.to_string();
    let (invert, s) = neg(&text);
    parse(s)
        .map(|value| Some(Neg { invert, value }))
        .map_err(|m| (name, m))
}

/// An interface name or `+` pattern as iptables takes it; the importer checks with
/// the same rule so that what it writes loads again.
pub(crate) fn iface_name(s: &str) -> Result<String, String> {
    // IFNAMSIZ is 16 bytes with the NUL.
    if s.is_empty() || s.len() > 15 || s.contains(['/', ' ']) {
        return Err(format!(
            "{s:?} is not an interface name (1-15 characters, optional trailing +)"
        ));
    }
    Ok(s.to_string())
}

fn local_type(s: &str) -> Result<(), String> {
    if s == "LOCAL" {
        Ok(())
    } else {
        Err(format!("{s:?}: only LOCAL is supported"))
    }
}

impl RuleConfig {
    fn to_rule(&self) -> Result<Rule, FieldError> {
        let family = self
            .family
            .as_deref()
            .map(parse_family)
            .transpose()
            .map_err(|m| ("family", m))?;
        let proto = field("proto", &self.proto, |s| {
            names::parse_proto(s)?
                .ok_or_else(|| "\"all\" cannot be negated or combined; omit proto".into())
        });
        let proto = match (&self.proto, proto) {
            (Some(Scalar::Str(s)), Err(_)) if s == "all" => None,
            (_, p) => p?,
        };
        let positive_proto = proto.as_ref().filter(|p| !p.invert).map(|p| p.value);
        let needs = |name: &'static str, ok: &[u8], what: &str| -> Result<(), FieldError> {
            match positive_proto {
                Some(p) if ok.contains(&p) => Ok(()),
                _ => Err((name, format!("needs proto = {what}"))),
            }
        };
        let sport = field("sport", &self.sport, names::parse_port_list)?;
        let dport = field("dport", &self.dport, names::parse_port_list)?;
        if sport.is_some() {
            needs("sport", &PORT_PROTOS, "tcp, udp, sctp, dccp or udplite")?;
        }
        if dport.is_some() {
            needs("dport", &PORT_PROTOS, "tcp, udp, sctp, dccp or udplite")?;
        }
        let tcp_flags = field("tcp_flags", &self.tcp_flags, names::parse_tcp_flags)?;
        if tcp_flags.is_some() {
            needs("tcp_flags", &[6], "tcp")?;
        }
        let icmp = match &self.icmp_type {
            None => None,
            Some(_) => {
                needs("icmp_type", &[1, 58], "icmp or icmpv6")?;
                let v6 = positive_proto == Some(58);
                field("icmp_type", &self.icmp_type, |s| names::parse_icmp(s, v6))?
            }
        };
        let matches = Matches {
            family,
            in_iface: field("in", &self.in_iface, iface_name)?,
            out_iface: field("out", &self.out_iface, iface_name)?,
            src: field("src", &self.src, parse_net)?,
            dst: field("dst", &self.dst, parse_net)?,
            src_set: field("src_set", &self.src_set, |s| Ok(s.to_string()))?,
            dst_set: field("dst_set", &self.dst_set, |s| Ok(s.to_string()))?,
            proto,
            sport,
            dport,
            tcp_flags,
            icmp,
            mark: field("mark", &self.mark, |s| {
                names::parse_value_mask(s).map(|(value, mask)| MarkMatch { value, mask })
            })?,
            length: field("length", &self.length, names::parse_length)?,
            fragment: self.fragment,
            src_local: field("src_type", &self.src_type, local_type)?.map(|n| !n.invert),
            dst_local: field("dst_type", &self.dst_type, local_type)?.map(|n| !n.invert),
            ctstate: field("ctstate", &self.ctstate, names::parse_ctstate)?,
            ctstatus: field("ctstatus", &self.ctstatus, names::parse_ctstatus)?,
        };
        let target = self.target()?;
        // iptables refuses these at parse time (libxt_REJECT, libxt_DNAT, ...).
        let port_proto = positive_proto.is_some_and(|p| PORT_PROTOS.contains(&p));
        match &target {
            Some(Target::Reject(RejectWith::TcpReset)) if positive_proto != Some(6) => {
                return Err(("reject_with", "tcp-reset needs proto = tcp".into()));
            }
            Some(Target::Dnat(r) | Target::Snat(r)) if r.ports.is_some() && !port_proto => {
                return Err((
                    "to",
                    "a port needs proto = tcp, udp, sctp, dccp or udplite".into(),
                ));
            }
            Some(Target::Masquerade { ports: Some(_) }) if !port_proto => {
                return Err((
                    "to_ports",
                    "needs proto = tcp, udp, sctp, dccp or udplite".into(),
                ));
            }
            _ => {}
        }
        Ok(Rule {
            matches,
            target,
            comment: self.comment.clone(),
            counters: Counter::default(),
        })
    }

    fn target(&self) -> Result<Option<Target>, FieldError> {
        let Some(action) = self.action.as_deref() else {
            if self.target.is_some() {
                return Err(("target", "only with action = \"jump\" or \"goto\"".into()));
            }
            return Ok(None);
        };
        let upper = action.to_ascii_uppercase();
        let chain = || {
            self.target.clone().ok_or((
                "target",
                format!("action = {action:?} needs target = \"CHAIN\""),
            ))
        };
        if !matches!(upper.as_str(), "JUMP" | "GOTO") && self.target.is_some() {
            return Err(("target", "only with action = \"jump\" or \"goto\"".into()));
        }
        if upper != "LOG" && (self.log_prefix.is_some() || self.log_level.is_some()) {
            return Err(("log_prefix", "only with action = \"LOG\"".into()));
        }
        if upper != "MARK" && (self.set_mark.is_some() || self.set_xmark.is_some()) {
            return Err(("set_mark", "only with action = \"MARK\"".into()));
        }
        if !matches!(upper.as_str(), "DNAT" | "SNAT") && self.to.is_some() {
            return Err(("to", "only with action = \"DNAT\" or \"SNAT\"".into()));
        }
        if upper != "MASQUERADE" && self.to_ports.is_some() {
            return Err(("to_ports", "only with action = \"MASQUERADE\"".into()));
        }
        if upper != "REJECT" && self.reject_with.is_some() {
            return Err(("reject_with", "only with action = \"REJECT\"".into()));
        }
        let nat_range = || {
            let to = self.to.as_deref().ok_or((
                "to",
                format!("action = {action:?} needs to = \"ADDR[:PORT]\""),
            ))?;
            names::parse_nat_range(to).map_err(|m| ("to", m))
        };
        Ok(Some(match upper.as_str() {
            "ACCEPT" => Target::Accept,
            "DROP" => Target::Drop,
            "RETURN" => Target::Return,
            "JUMP" => Target::Jump(chain()?),
            "GOTO" => Target::Goto(chain()?),
            "LOG" => Target::Log(LogTarget {
                prefix: self.log_prefix.clone().unwrap_or_default(),
                level: self.log_level.unwrap_or(4),
            }),
            "MARK" => match (&self.set_mark, &self.set_xmark) {
                (Some(v), None) => {
                    let (value, mask) =
                        names::parse_value_mask(&v.to_string()).map_err(|m| ("set_mark", m))?;
                    // libxt_MARK: --set-mark v/m is --set-xmark v/(v|m).
                    Target::Mark {
                        xor: value,
                        mask: mask | value,
                    }
                }
                (None, Some(v)) => {
                    let (xor, mask) =
                        names::parse_value_mask(&v.to_string()).map_err(|m| ("set_xmark", m))?;
                    Target::Mark { xor, mask }
                }
                _ => {
                    return Err((
                        "set_mark",
                        "MARK needs exactly one of set_mark, set_xmark".into(),
                    ))
                }
            },
            "REJECT" => Target::Reject(match self.reject_with.as_deref() {
                None => RejectWith::default(),
                Some(name) => {
                    RejectWith::from_name(name)
                        .ok_or((
                            "reject_with",
                            format!("{name:?} is not an iptables --reject-with type"),
                        ))?
                        .0
                }
            }),
            "DNAT" => Target::Dnat(nat_range()?),
            "SNAT" => Target::Snat(nat_range()?),
            "MASQUERADE" => Target::Masquerade {
                ports: self
                    .to_ports
                    .as_ref()
                    .map(|p| names::parse_nat_ports(&p.to_string()))
                    .transpose()
                    .map_err(|m| ("to_ports", m))?,
            },
            "NOTRACK" => Target::Notrack,
            "CT" => {
                return Err((
                    "action",
                    "CT: write action = \"NOTRACK\" (CT --notrack); other CT options are not supported".into(),
                ))
            }
            "REDIRECT" => {
                return Err((
                    "action",
                    "REDIRECT is not supported: traffic to the box is the kernel's".into(),
                ))
            }
            _ => {
                return Err((
                    "action",
                    format!("{action:?} is not ACCEPT, DROP, RETURN, jump, goto, LOG, MARK, REJECT, DNAT, SNAT, MASQUERADE or NOTRACK"),
                ))
            }
        }))
    }

    pub fn from_rule(r: &Rule) -> RuleConfig {
        let m = &r.matches;
        let s = |n: &Option<Neg<String>>| n.as_ref().map(|n| neg_str(n.invert, n.value.clone()));
        let net =
            |n: &Option<Neg<IpNet>>| n.as_ref().map(|n| neg_str(n.invert, format_net(&n.value)));
        let ports = |p: &Option<Neg<super::Ports>>| {
            p.as_ref().map(|p| match p.value.as_slice() {
                [(lo, hi)] if lo == hi && !p.invert => Scalar::Int(i64::from(*lo)),
                v => Scalar::Str(neg_str(p.invert, names::format_ports(v))),
            })
        };
        let local = |l: Option<bool>| l.map(|l| if l { "LOCAL".into() } else { "!LOCAL".into() });
        let mut c = RuleConfig {
            family: m.family.map(|f| family_name(f).into()),
            in_iface: s(&m.in_iface),
            out_iface: s(&m.out_iface),
            src: net(&m.src),
            dst: net(&m.dst),
            src_set: s(&m.src_set),
            dst_set: s(&m.dst_set),
            proto: m
                .proto
                .as_ref()
                .map(|p| Scalar::Str(neg_str(p.invert, names::proto_name(p.value)))),
            sport: ports(&m.sport),
            dport: ports(&m.dport),
            tcp_flags: m
                .tcp_flags
                .as_ref()
                .map(|f| neg_str(f.invert, names::format_tcp_flags(f.value))),
            icmp_type: m
                .icmp
                .as_ref()
                .map(|i| Scalar::Str(neg_str(i.invert, names::format_icmp(i.value)))),
            mark: m.mark.as_ref().map(|k| {
                Scalar::Str(neg_str(
                    k.invert,
                    format!("{:#x}/{:#x}", k.value.value, k.value.mask),
                ))
            }),
            length: m
                .length
                .as_ref()
                .map(|l| Scalar::Str(neg_str(l.invert, names::format_length(l.value)))),
            fragment: m.fragment,
            src_type: local(m.src_local),
            dst_type: local(m.dst_local),
            ctstate: m
                .ctstate
                .as_ref()
                .map(|s| neg_str(s.invert, names::format_ctstate(s.value))),
            ctstatus: m
                .ctstatus
                .as_ref()
                .map(|s| neg_str(s.invert, names::format_ctstatus(s.value))),
            comment: r.comment.clone(),
            ..RuleConfig::default()
        };
        match &r.target {
            None => {}
            Some(Target::Accept) => c.action = Some("ACCEPT".into()),
            Some(Target::Drop) => c.action = Some("DROP".into()),
            Some(Target::Return) => c.action = Some("RETURN".into()),
            Some(Target::Jump(t)) => (c.action, c.target) = (Some("jump".into()), Some(t.clone())),
            Some(Target::Goto(t)) => (c.action, c.target) = (Some("goto".into()), Some(t.clone())),
            Some(Target::Log(l)) => {
                c.action = Some("LOG".into());
                c.log_prefix = (!l.prefix.is_empty()).then(|| l.prefix.clone());
                c.log_level = (l.level != 4).then_some(l.level);
            }
            Some(Target::Mark { xor, mask }) => {
                c.action = Some("MARK".into());
                c.set_xmark = Some(Scalar::Str(format!("{xor:#x}/{mask:#x}")));
            }
            Some(Target::Reject(with)) => {
                c.action = Some("REJECT".into());
                if *with != RejectWith::default() {
                    let family = m.family.unwrap_or(Family::V4);
                    c.reject_with = Some(with.name(family).into());
                }
            }
            Some(Target::Dnat(r)) => {
                c.action = Some("DNAT".into());
                c.to = Some(names::format_nat_range(r));
            }
            Some(Target::Snat(r)) => {
                c.action = Some("SNAT".into());
                c.to = Some(names::format_nat_range(r));
            }
            Some(Target::Masquerade { ports }) => {
                c.action = Some("MASQUERADE".into());
                c.to_ports = ports.map(|p| match p {
                    (lo, hi) if lo == hi => Scalar::Int(i64::from(lo)),
                    p => Scalar::Str(names::format_nat_ports(p)),
                });
            }
            Some(Target::Notrack) => c.action = Some("NOTRACK".into()),
        }
        c
    }

    /// `{ in = "eth0", proto = "tcp", ... }` with keys in reading order.
    fn inline(&self) -> String {
        let mut kv: Vec<(&str, String)> = Vec::new();
        let mut s = |k: &'static str, v: &Option<String>| {
            if let Some(v) = v {
                kv.push((k, quote(v)));
            }
        };
        s("family", &self.family);
        s("in", &self.in_iface);
        s("out", &self.out_iface);
        s("src", &self.src);
        s("dst", &self.dst);
        s("src_set", &self.src_set);
        s("dst_set", &self.dst_set);
        let mut n = |k: &'static str, v: &Option<Scalar>| {
            if let Some(v) = v {
                kv.push((k, scalar_toml(v)));
            }
        };
        n("proto", &self.proto);
        n("sport", &self.sport);
        n("dport", &self.dport);
        if let Some(f) = &self.tcp_flags {
            kv.push(("tcp_flags", quote(f)));
        }
        let mut n = |k: &'static str, v: &Option<Scalar>| {
            if let Some(v) = v {
                kv.push((k, scalar_toml(v)));
            }
        };
        n("icmp_type", &self.icmp_type);
        n("mark", &self.mark);
        n("length", &self.length);
        if let Some(f) = self.fragment {
            kv.push(("fragment", f.to_string()));
        }
        let mut s = |k: &'static str, v: &Option<String>| {
            if let Some(v) = v {
                kv.push((k, quote(v)));
            }
        };
        s("src_type", &self.src_type);
        s("dst_type", &self.dst_type);
        s("ctstate", &self.ctstate);
        s("ctstatus", &self.ctstatus);
        s("action", &self.action);
        s("target", &self.target);
        s("to", &self.to);
        if let Some(v) = &self.to_ports {
            kv.push(("to_ports", scalar_toml(v)));
        }
        let mut s = |k: &'static str, v: &Option<String>| {
            if let Some(v) = v {
                kv.push((k, quote(v)));
            }
        };
        s("reject_with", &self.reject_with);
        s("log_prefix", &self.log_prefix);
        if let Some(l) = self.log_level {
            kv.push(("log_level", l.to_string()));
        }
        if let Some(v) = &self.set_mark {
            kv.push(("set_mark", scalar_toml(v)));
        }
        if let Some(v) = &self.set_xmark {
            kv.push(("set_xmark", scalar_toml(v)));
        }
        if let Some(c) = &self.comment {
            kv.push(("comment", quote(c)));
        }
        if kv.is_empty() {
            return "{}".into();
        }
        let body: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
        format!("{{ {} }}", body.join(", "))
    }
}

/// The TOML text of a model (what `fwd import` prints).
pub fn to_toml(rs: &Ruleset) -> String {
    RulesConfig::from_ruleset(rs).to_toml_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[sets.blocked]
family = "ipv4"
members = ["198.18.5.0/24", "198.18.9.9"]

[chains.FORWARD]
policy = "DROP"
rules = [
  { in = "veth-gen", proto = "tcp", dport = "80,443", action = "ACCEPT", comment = "web" },
  { src = "!198.18.0.0/24", action = "DROP" },
  { proto = "tcp", tcp_flags = "SYN,RST,ACK,FIN/SYN", action = "jump", target = "SYN_CHECK" },
]

[chains.SYN_CHECK]
rules = [ { src_set = "blocked", action = "DROP" }, { action = "RETURN" } ]

[tables.mangle.chains.PREROUTING]
rules = [{ in = "eth+", action = "MARK", set_mark = "0x1/0xff" }]
"#;

    fn load(text: &str) -> Result<Ruleset, String> {
        RulesConfig::from_toml_str(text, "configs/x.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn example_loads_with_iptables_meaning() {
        let rs = load(EXAMPLE).unwrap();
        assert_eq!(rs.rule_count(), 6);
        let fw = &rs.chains()[rs.chain_index(Table::Filter, "FORWARD").unwrap()];
        assert_eq!(fw.policy, Some(Policy::Drop));
        assert_eq!(
            fw.rules[0].matches.dport,
            Some(Neg::is(vec![(80, 80), (443, 443)]))
        );
        assert_eq!(fw.rules[0].comment.as_deref(), Some("web"));
        assert_eq!(
            fw.rules[1].matches.src,
            Some(Neg::not("198.18.0.0/24".parse().unwrap()))
        );
        assert_eq!(
            fw.rules[2].matches.tcp_flags,
            Some(Neg::is(super::super::SYN_FLAGS))
        );
        let pre = &rs.chains()[rs.chain_index(Table::Mangle, "PREROUTING").unwrap()];
        assert_eq!(
            pre.rules[0].target,
            Some(Target::Mark { xor: 1, mask: 0xff })
        );
        assert_eq!(pre.policy, Some(Policy::Accept));
    }

    #[test]
    fn toml_round_trips_through_the_model() {
        let rs = load(EXAMPLE).unwrap();
        let text = to_toml(&rs);
        assert_eq!(load(&text).unwrap(), rs, "{text}");
    }

    const STATEFUL: &str = r#"
[chains.FORWARD]
policy = "DROP"
rules = [
  { ctstate = "ESTABLISHED,RELATED", action = "ACCEPT" },
  { ctstate = "!NEW", ctstatus = "ASSURED", action = "DROP" },
  { proto = "tcp", dport = 23, action = "REJECT", reject_with = "tcp-reset" },
  { family = "ipv6", action = "REJECT", reject_with = "icmp6-adm-prohibited" },
  { action = "REJECT" },
]

[tables.raw.chains.PREROUTING]
rules = [{ in = "lo0", action = "NOTRACK" }]

[tables.nat.chains.PREROUTING]
rules = [{ action = "jump", target = "PORTS" }]

[tables.nat.chains.PORTS]
rules = [
  { proto = "tcp", dport = 8080, action = "DNAT", to = "198.19.0.2:80" },
  { proto = "udp", dport = 53, action = "DNAT", to = "[2001:db8::53]:5353" },
]

[tables.nat.chains.POSTROUTING]
rules = [
  { src = "198.19.0.0/16", out = "wan0", action = "SNAT", to = "198.18.0.1-198.18.0.4" },
  { out = "wan0", proto = "udp", action = "MASQUERADE", to_ports = "1024-2047" },
  { out = "wan0", action = "MASQUERADE" },
]
"#;

    #[test]
    fn stateful_matches_and_targets_load_and_round_trip() {
        use crate::packet::meta::{ctstate, ctstatus};
        use crate::rules::{NatKind, NatRange, NatTarget};
        let rs = load(STATEFUL).unwrap();
        let fw = &rs.chains()[rs.chain_index(Table::Filter, "FORWARD").unwrap()];
        assert_eq!(
            fw.rules[0].matches.ctstate,
            Some(Neg::is(ctstate::ESTABLISHED | ctstate::RELATED))
        );
        assert_eq!(fw.rules[1].matches.ctstate, Some(Neg::not(ctstate::NEW)));
        assert_eq!(
            fw.rules[1].matches.ctstatus,
            Some(Neg::is(ctstatus::ASSURED))
        );
        assert_eq!(
            fw.rules[2].target,
            Some(Target::Reject(RejectWith::TcpReset))
        );
        assert_eq!(
            fw.rules[3].target,
            Some(Target::Reject(RejectWith::AdminProhibited))
        );
        assert_eq!(
            fw.rules[4].target,
            Some(Target::Reject(RejectWith::PortUnreachable))
        );
        let ports = &rs.chains()[rs.chain_index(Table::Nat, "PORTS").unwrap()];
        assert_eq!(
            ports.rules[0].target,
            Some(Target::Dnat(NatRange {
                addr_min: "198.19.0.2".parse().unwrap(),
                addr_max: "198.19.0.2".parse().unwrap(),
                ports: Some((80, 80)),
            }))
        );
        assert_eq!(
            ports.rules[1].matches.family,
            Some(Family::V6),
            "a NAT address restricts the rule to its family"
        );
        // meta.nat numbering: rule id order (nat PREROUTING, then POSTROUTING, then
        // user chains by name).
        let kinds: Vec<NatKind> = rs.nat_targets().iter().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            [
                NatKind::Snat,
                NatKind::Masquerade,
                NatKind::Masquerade,
                NatKind::Dnat,
                NatKind::Dnat
            ]
        );
        let pi = rs.chain_index(Table::Nat, "PORTS").unwrap();
        assert_eq!((rs.nat_slot(pi, 0), rs.nat_slot(pi, 1)), (4, 5));
        assert_eq!(
            rs.nat_targets()[0],
            NatTarget {
                kind: NatKind::Snat,
                family: Some(Family::V4),
                addr_min: 0xc612_0001,
                addr_max: 0xc612_0004,
                port_min: 0,
                port_max: 0,
            }
        );
        assert_eq!(
            (rs.nat_targets()[1].port_min, rs.nat_targets()[1].port_max),
            (1024, 2047)
        );
        assert_eq!(rs.nat_targets()[2].family, None);
        let text = to_toml(&rs);
        assert_eq!(load(&text).unwrap(), rs, "{text}");
        assert!(
            text.contains("{ ctstate = \"RELATED,ESTABLISHED\", action = \"ACCEPT\" }"),
            "{text}"
        );
    }

    #[test]
    fn stateful_targets_are_refused_where_iptables_refuses_them() {
        let cases = [
            (
                "[tables.nat.chains.POSTROUTING]\nrules = [\n  { action = \"DNAT\", to = \"198.19.0.2\" },\n]\n",
                "configs/x.toml:3: tables.nat.chains.POSTROUTING.rules[0].action: DNAT is only valid in nat PREROUTING and user chains only it reaches",
            ),
            (
                "[tables.nat.chains.PREROUTING]\nrules = [{ action = \"jump\", target = \"U\" }]\n[tables.nat.chains.POSTROUTING]\nrules = [{ action = \"jump\", target = \"U\" }]\n[tables.nat.chains.U]\nrules = [\n  { action = \"MASQUERADE\" },\n]\n",
                "configs/x.toml:7: tables.nat.chains.U.rules[0].action: MASQUERADE is only valid in nat POSTROUTING and user chains only it reaches",
            ),
            (
                "[tables.mangle.chains.FORWARD]\nrules = [\n  { action = \"REJECT\" },\n]\n",
                "configs/x.toml:3: tables.mangle.chains.FORWARD.rules[0].action: REJECT is only valid in the filter table",
            ),
            (
                "[chains.FORWARD]\nrules = [\n  { action = \"NOTRACK\" },\n]\n",
                "configs/x.toml:3: chains.FORWARD.rules[0].action: NOTRACK is only valid in the raw table",
            ),
            (
                "[chains.FORWARD]\nrules = [\n  { proto = \"udp\", action = \"REJECT\", reject_with = \"tcp-reset\" },\n]\n",
                "configs/x.toml:3: chains.FORWARD.rules[0].reject_with: tcp-reset needs proto = tcp",
            ),
            (
                "[chains.FORWARD]\nrules = [\n  { family = \"ipv6\", action = \"REJECT\", reject_with = \"icmp-host-prohibited\" },\n]\n",
                "configs/x.toml:3: chains.FORWARD.rules[0].reject_with: icmp-host-prohibited exists only for IPv4",
            ),
            (
                "[tables.nat.chains.POSTROUTING]\nrules = [\n  { action = \"MASQUERADE\", to_ports = 1024 },\n]\n",
                "configs/x.toml:3: tables.nat.chains.POSTROUTING.rules[0].to_ports: needs proto = tcp, udp, sctp, dccp or udplite",
            ),
            (
                "[tables.nat.chains.PREROUTING]\nrules = [\n  { action = \"DNAT\", to = \"198.19.0.2:80\" },\n]\n",
                "configs/x.toml:3: tables.nat.chains.PREROUTING.rules[0].to: a port needs proto = tcp, udp, sctp, dccp or udplite",
            ),
            (
                "[tables.nat.chains.PREROUTING]\nrules = [\n  { dst = \"2001:db8::1\", action = \"DNAT\", to = \"198.19.0.2\" },\n]\n",
                "configs/x.toml:3: tables.nat.chains.PREROUTING.rules[0].to: 198.19.0.2 is not of the family the rule matches",
            ),
            (
                "[tables.nat.chains.PREROUTING]\nrules = [\n  { action = \"DNAT\" },\n]\n",
                "configs/x.toml:3: tables.nat.chains.PREROUTING.rules[0].to: action = \"DNAT\" needs to = \"ADDR[:PORT]\"",
            ),
            (
                "[chains.FORWARD]\nrules = [\n  { ctstate = \"NEW,OLD\" },\n]\n",
                "configs/x.toml:3: chains.FORWARD.rules[0].ctstate: \"OLD\" is not a conntrack state (INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED,SNAT,DNAT)",
            ),
            (
                "[chains.FORWARD]\nrules = [\n  { action = \"ACCEPT\", to = \"198.19.0.2\" },\n]\n",
                "configs/x.toml:3: chains.FORWARD.rules[0].to: only with action = \"DNAT\" or \"SNAT\"",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(load(text).unwrap_err(), want, "{text}");
        }
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let text = "[chains.FORWARD]\nrules = [\n  { proto = \"tcp\", dport = 22 },\n  { proto = \"tcp\", dport = \"80-\" },\n]\n";
        assert_eq!(
            load(text).unwrap_err(),
            "configs/x.toml:4: chains.FORWARD.rules[1].dport: \"80-\" is not a port or port range"
        );
        let text = "[chains.FORWARD]\nrules = [\n  { dport = 22 },\n]\n";
        assert_eq!(
            load(text).unwrap_err(),
            "configs/x.toml:3: chains.FORWARD.rules[0].dport: needs proto = tcp, udp, sctp, dccp or udplite"
        );
        let text = "[chains.FORWARD]\nrules = [\n  { proto = \"tcp\", colour = 1 },\n]\n";
        let e = load(text).unwrap_err();
        assert!(
            e.starts_with("configs/x.toml:3: unknown field `colour`"),
            "{e}"
        );
        let text = "[chains.FORWARD]\nrules = [\n  { action = \"jump\", target = \"NOPE\" },\n]\n";
        assert_eq!(
            load(text).unwrap_err(),
            "configs/x.toml:3: chains.FORWARD.rules[0].target: no chain \"NOPE\" in table filter"
        );
        let text = "[chains.A]\nrules = [{ action = \"jump\", target = \"B\" }]\n[chains.B]\nrules = [{ action = \"goto\", target = \"A\" }]\n";
        assert_eq!(
            load(text).unwrap_err(),
            "configs/x.toml:2: chains.A.rules[0].target: chain loop A -> B -> A"
        );
        let text = "[chains.FORWARD]\nrules = [\n  { action = \"REDIRECT\" },\n]\n";
        assert_eq!(
            load(text).unwrap_err(),
            "configs/x.toml:3: chains.FORWARD.rules[0].action: REDIRECT is not supported: traffic to the box is the kernel's"
        );
        let text =
            "[sets.s]\nfamily = \"ipv4\"\nmembers = [\n \"198.18.0.0/24\",\n \"2001:db8::1\",\n]\n";
        assert_eq!(
            load(text).unwrap_err(),
            "configs/x.toml:5: sets.s.members[1]: 2001:db8::1/128 is not ipv4"
        );
        let text = "[chains.U]\npolicy = \"DROP\"\n";
        assert_eq!(
            load(text).unwrap_err(),
            "configs/x.toml:2: chains.U.policy: a user chain has no policy"
        );
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    /// Found by fuzz/fuzz_targets/iptables_import.rs: a chain name holding both
    /// quote kinds and a backslash was written as a multi-line literal key, which
    /// TOML refuses, so `fwd import ... > x.toml && fwd check -c x.toml` failed.
    #[test]
    fn odd_chain_names_round_trip_through_toml() {
        let dump = "*filter\n:FORWARD ACCEPT [0:0]\n:ON'Y_IN\\UT - [0:0]\n-A FORWARD -j ON'Y_IN\\UT\nCOMMIT\n";
        let (rs, _) = crate::rules::iptables::import(dump, "d").unwrap();
        let toml = to_toml(&rs);
        let back =
            RulesConfig::from_toml_str(&toml, "x.toml").unwrap_or_else(|e| panic!("{e}\n{toml}"));
        assert_eq!(back, rs);
        assert_eq!(key("ON'Y_IN\\UT"), "\"ON'Y_IN\\\\UT\"");
        assert_eq!(key("A\"B"), "\"A\\\"B\"");
        assert_eq!(key("FORWARD"), "FORWARD");
    }
}
