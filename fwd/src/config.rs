//! The TOML config: ports, routes, neighbours, worker layout (and, embedded, the
//! rules). Loading reports errors as `file:line: field: message`; nothing else in fwd
//! reads TOML.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    ops::Range,
    path::{Path, PathBuf},
    sync::Arc,
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    rules::{
        config::{line_of, ChainConfig, RulesConfig, SetConfig, TableConfig},
        Ruleset,
    },
    xsk::{BindMode, XdpAttachMode},
};

/// The whole config file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub ports: Vec<toml::Spanned<PortConfig>>,
    #[serde(default)]
    pub routes: Vec<toml::Spanned<RouteConfig>>,
    #[serde(default)]
    pub neighbours: Vec<toml::Spanned<NeighbourConfig>>,
    #[serde(default)]
    pub workers: WorkersConfig,
    #[serde(default)]
    pub control: ControlConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Connection tracking: table size and timeouts. Tracking is on when this
    /// section is present or the rules need it (ctstate/ctstatus matches, NAT).
    #[serde(default)]
    pub conntrack: Option<crate::conntrack::CtConfig>,
    /// The rules (see rules::config for their syntax): address sets, filter-table
    /// chains, and `[tables.TABLE.chains.CHAIN]` for raw, mangle and nat.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sets: BTreeMap<String, SetConfig>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub chains: BTreeMap<String, ChainConfig>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tables: BTreeMap<String, TableConfig>,
    /// The validated rule model of the sections above (set by `parse`).
    #[serde(skip)]
    pub ruleset: Option<Arc<Ruleset>>,
}

/// The daemon's control socket (for `fwd stats`, `fwd rules`, `fwd reload`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    #[serde(default = "default_control_socket")]
    pub socket: PathBuf,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            socket: default_control_socket(),
        }
    }
}

pub fn default_control_socket() -> PathBuf {
    PathBuf::from("/run/fwd/fwd.sock")
}

/// Prometheus exposition; off unless `listen` is set.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// e.g. "127.0.0.1:9464"
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
}

/// One interface fwd forwards on.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// The netdev, e.g. "eth1".
    pub interface: String,
    /// NIC queues to serve; one AF_XDP socket each.
    #[serde(default = "default_queues")]
    pub queues: Vec<u32>,
    #[serde(default = "default_xdp_mode")]
    pub xdp_mode: XdpAttachMode,
    #[serde(default)]
    pub bind: BindMode,
    /// Addresses of the box on this port, beside those the kernel has on it. They
    /// make connected routes, are the source of ICMP errors, and traffic to them is
    /// passed to the kernel.
    #[serde(default)]
    pub addresses: Vec<IpNet>,
}

fn default_queues() -> Vec<u32> {
    vec![0]
}

fn default_xdp_mode() -> XdpAttachMode {
    XdpAttachMode::Auto
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub prefix: IpNet,
    /// Next hop; absent means the prefix is on the link of `interface`.
    #[serde(default)]
    pub via: Option<IpAddr>,
    /// Egress interface; may be left out when `via` is on a connected subnet.
    #[serde(default)]
    pub interface: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NeighbourConfig {
    pub address: IpAddr,
    pub mac: MacAddr,
    pub interface: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersConfig {
    /// Cores to pin workers to, one worker each; queues are dealt to workers round
    /// robin. Empty: one unpinned worker.
    #[serde(default)]
    pub cores: Vec<usize>,
    /// Entries in each RX/TX/fill/completion ring.
    #[serde(default = "default_ring_size")]
    pub ring_size: u32,
    /// UMEM chunks per worker per socket.
    #[serde(default = "default_frames_per_socket")]
    pub frames_per_socket: u32,
    /// Empty polls before a worker sleeps in poll(2) until traffic returns; 0 never
    /// sleeps (a dedicated core spinning, lowest latency).
    #[serde(default = "default_idle_spins")]
    pub idle_spins: u32,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self {
            cores: Vec::new(),
            ring_size: default_ring_size(),
            frames_per_socket: default_frames_per_socket(),
            idle_spins: default_idle_spins(),
        }
    }
}

fn default_ring_size() -> u32 {
    2048
}

fn default_frames_per_socket() -> u32 {
    4096
}

fn default_idle_spins() -> u32 {
    1000
}

/// A MAC address written `02:00:00:00:00:01`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl std::str::FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut out {
            let p = parts.next().ok_or_else(|| {
                format!("{s:?} is not a MAC address (six hex bytes, colon-separated)")
            })?;
            *b = u8::from_str_radix(p, 16)
                .ok()
                .filter(|_| p.len() == 2)
                .ok_or_else(|| {
                    format!("{s:?} is not a MAC address (six hex bytes, colon-separated)")
                })?;
        }
        if parts.next().is_some() {
            return Err(format!(
                "{s:?} is not a MAC address (six hex bytes, colon-separated)"
            ));
        }
        Ok(MacAddr(out))
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A config error, printed as `path:line: field: message`.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {field}{sep}{message}", path.display(), sep = if field.is_empty() { "" } else { ": " })]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl ConfigError {
    /// An error about `field` of the table at `span`: the line is that of the field's
    /// key inside the table when it is there, else the table's first line.
    pub fn at(
        path: &Path,
        text: &str,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let field = field.into();
        let key = field
            .rsplit('.')
            .next()
            .unwrap_or("")
            .split('[')
            .next()
            .unwrap_or("");
        let mut offset = span.start;
        if !key.is_empty() && span.end <= text.len() {
            let mut pos = span.start;
            for line in text[span.start..span.end].split_inclusive('\n') {
                let t = line.trim_start();
                if t.strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
                {
                    offset = pos;
                    break;
                }
                pos += line.len();
            }
        }
        ConfigError {
            path: path.to_path_buf(),
            line: line_of(text, offset),
            field,
            message: message.into(),
        }
    }
}

/// The name of the `[table]` or `[[array]]` header last opened before `offset`
/// (`chains.FORWARD`, `ports`), if any.
fn enclosing_table(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset.min(text.len()))?;
    before.lines().rev().find_map(|l| {
        let l = l.trim();
        let inner = l.strip_prefix("[[").and_then(|r| r.strip_suffix("]]"));
        let inner = inner.or_else(|| l.strip_prefix('[').and_then(|r| r.strip_suffix(']')))?;
        // `rules = [` and arrays of values are not headers.
        (!inner.contains(['=', '"', '{', ','])).then(|| inner.trim().to_string())
    })
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            line: 0,
            field: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Parses config text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::new(text);
        let mut cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            // toml::Spanned wraps values in a private struct; its key is noise to a user.
            let field = e
                .path()
                .to_string()
                .replace("$__serde_spanned_private_value.", "")
                .replace(".$__serde_spanned_private_value", "");
            let inner = e.into_inner();
            let span = inner.span().unwrap_or(0..0);
            // A syntax error has no serde path: name the table it sits in instead.
            let field = match field.as_str() {
                "." | "" => enclosing_table(text, span.start).unwrap_or_default(),
                _ => field,
            };
            // toml's messages run over two lines; an error is one line here.
            let message = inner.message().trim_end().replace('\n', ": ");
            ConfigError::at(path, text, span, field, message)
        })?;
        cfg.validate(text, path)?;
        let rules = RulesConfig {
            sets: cfg.sets.clone(),
            chains: cfg.chains.clone(),
            tables: cfg.tables.clone(),
        };
        let ruleset = rules
            .to_ruleset(text, &path.display().to_string())
            .map_err(|e| ConfigError {
                path: path.to_path_buf(),
                line: e.line.unwrap_or(0),
                field: String::new(),
                message: e.msg,
            })?;
        cfg.ruleset = Some(Arc::new(ruleset));
        Ok(cfg)
    }

    fn validate(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let err = |span: Range<usize>, field: String, msg: String| {
            ConfigError::at(path, text, span, field, msg)
        };
        // A rules-only file (what `fwd import` writes) has no ports; `fwd run` refuses
        // it, `fwd check` and `fwd rules -c` take it.
        for (i, p) in self.ports.iter().enumerate() {
            let span = p.span();
            let p = p.get_ref();
            if p.interface.is_empty() || p.interface.len() > 15 || p.interface.contains(['/', ' '])
            {
                return Err(err(
                    span,
                    format!("ports[{i}].interface"),
                    format!(
                        "{:?} is not a network interface name (1-15 characters, no '/' or spaces)",
                        p.interface
                    ),
                ));
            }
            if let Some(j) = self.ports[..i]
                .iter()
                .position(|q| q.get_ref().interface == p.interface)
            {
                return Err(err(
                    span,
                    format!("ports[{i}].interface"),
                    format!("{:?} is already ports[{j}]", p.interface),
                ));
            }
            if p.queues.is_empty() {
                return Err(err(
                    span,
                    format!("ports[{i}].queues"),
                    "needs at least one queue".into(),
                ));
            }
            if let Some(q) = p.queues.iter().find(|&&q| q >= 64) {
                return Err(err(
                    span,
                    format!("ports[{i}].queues"),
                    format!("queue {q} is beyond the 64 queues fwd's XDP program steers"),
                ));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            let span = r.span();
            let r = r.get_ref();
            if let Some(ifname) = &r.interface {
                if self.port_index(ifname).is_none() {
                    return Err(err(
                        span,
                        format!("routes[{i}].interface"),
                        format!("{ifname:?} is not one of the [[ports]]"),
                    ));
                }
            }
            if r.via.is_none() && r.interface.is_none() {
                return Err(err(
                    span,
                    format!("routes[{i}]"),
                    "needs `via` (a next hop) or `interface` (an on-link prefix)".into(),
                ));
            }
            if let Some(via) = r.via {
                if via.is_ipv4() != matches!(r.prefix, IpNet::V4(_)) {
                    return Err(err(
                        span,
                        format!("routes[{i}].via"),
                        format!("{via} is not of the family of {}", r.prefix),
                    ));
                }
            }
            if r.prefix.trunc() != r.prefix {
                return Err(err(
                    span,
                    format!("routes[{i}].prefix"),
                    format!(
                        "{} has host bits set (did you mean {}?)",
                        r.prefix,
                        r.prefix.trunc()
                    ),
                ));
            }
        }
        for (i, n) in self.neighbours.iter().enumerate() {
            let span = n.span();
            if self.port_index(&n.get_ref().interface).is_none() {
                return Err(err(
                    span,
                    format!("neighbours[{i}].interface"),
                    format!("{:?} is not one of the [[ports]]", n.get_ref().interface),
                ));
            }
        }
        if self.workers.ring_size < 64 || !self.workers.ring_size.is_power_of_two() {
            return Err(err(
                0..0,
                "workers.ring_size".into(),
                format!(
                    "{} is not a power of two of at least 64",
                    self.workers.ring_size
                ),
            ));
        }
        if self.workers.frames_per_socket < 2 * self.workers.ring_size {
            return Err(err(0..0, "workers.frames_per_socket".into(), format!("{} is less than twice ring_size ({}): the fill ring alone would take every frame", self.workers.frames_per_socket, self.workers.ring_size)));
        }
        let ncores = core_count();
        if let Some(c) = self.workers.cores.iter().find(|&&c| c >= ncores) {
            return Err(err(
                0..0,
                "workers.cores".into(),
                format!("core {c} does not exist (this machine has {ncores})"),
            ));
        }
        Ok(())
    }

    /// The rule model (empty when the config has no rules).
    pub fn ruleset(&self) -> Arc<Ruleset> {
        self.ruleset.clone().unwrap_or_else(|| {
            Arc::new(Ruleset::new(Vec::new(), Vec::new()).expect("empty ruleset is valid"))
        })
    }

    /// The ports' interface names, in port order: what rules' `in`/`out` resolve against.
    pub fn port_names(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| p.get_ref().interface.clone())
            .collect()
    }

    /// Index of the port with this interface name.
    pub fn port_index(&self, ifname: &str) -> Option<usize> {
        self.ports
            .iter()
            .position(|p| p.get_ref().interface == ifname)
    }
}

fn core_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, String> {
        Config::parse(s, Path::new("t.toml")).map_err(|e| e.to_string())
    }

    const OK: &str = r#"
[[ports]]
interface = "a0"
addresses = ["198.18.0.1/24"]

[[ports]]
interface = "b0"

[[routes]]
prefix = "198.19.128.0/24"
via = "198.19.0.2"
"#;

    #[test]
    fn valid_config_loads() {
        let c = parse(OK).unwrap();
        assert_eq!(c.ports.len(), 2);
        assert_eq!(c.ports[0].get_ref().queues, vec![0]);
        assert_eq!(
            c.routes[0].get_ref().via,
            Some("198.19.0.2".parse().unwrap())
        );
    }

    #[test]
    fn bad_address_names_line_and_field() {
        let text = OK.replace("via = \"198.19.0.2\"", "via = \"198.19.0.300\"");
        let e = parse(&text).unwrap_err();
        assert!(e.starts_with("t.toml:11: routes[0].via: "), "{e}");
    }

    #[test]
    fn unknown_key_is_refused() {
        let e = parse(&format!("{OK}\n[workers]\ncoers = [1]\n")).unwrap_err();
        assert!(e.contains("workers") && e.contains("coers"), "{e}");
    }

    #[test]
    fn route_to_unknown_interface_is_refused() {
        let text = format!("{OK}\n[[routes]]\nprefix = \"2001:db8:c::/64\"\ninterface = \"zz\"\n");
        let e = parse(&text).unwrap_err();
        assert!(
            e.starts_with("t.toml:15: routes[1].interface: \"zz\" is not one of the [[ports]]"),
            "{e}"
        );
    }

    #[test]
    fn host_bits_and_family_mismatch_are_refused() {
        let e = parse(&OK.replace("198.19.128.0/24", "198.19.128.1/24")).unwrap_err();
        assert!(
            e.contains("routes[0].prefix") && e.contains("198.19.128.0/24"),
            "{e}"
        );
        let e = parse(&OK.replace("198.19.0.2", "2001:db8::1")).unwrap_err();
        assert!(e.contains("routes[0].via"), "{e}");
    }

    #[test]
    fn rules_in_the_config_are_parsed_and_errors_name_the_line() {
        let c = parse(&format!("{OK}\n[chains.FORWARD]\npolicy = \"DROP\"\nrules = [{{ proto = \"tcp\", dport = 22, action = \"ACCEPT\" }}]\n")).unwrap();
        assert_eq!(c.ruleset().rule_count(), 1);
        let e = parse(&format!("{OK}\n[chains.FORWARD]\nrules = [{{ dport = \"80-\", proto = \"tcp\", action = \"ACCEPT\" }}]\n")).unwrap_err();
        assert!(e.starts_with("t.toml:14: ") && e.contains("dport"), "{e}");
    }

    #[test]
    fn syntax_errors_name_the_table_and_fit_one_line() {
        // A file cut in the middle of a rule.
        let e = parse(&format!(
            "{OK}\n[chains.FORWARD]\nrules = [\n  {{ proto = \"tcp\", action = \"ACC"
        ))
        .unwrap_err();
        assert!(e.starts_with("t.toml:15: chains.FORWARD: "), "{e}");
        // A chain defined twice.
        let e = parse(&format!(
            "{OK}\n[chains.A]\nrules = []\n\n[chains.A]\nrules = []\n"
        ))
        .unwrap_err();
        assert!(
            e.starts_with("t.toml:16: chains.A: ") && e.contains("duplicate key `A`"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        assert_eq!(
            enclosing_table("[[ports]]\nx = [1,\n", 18),
            Some("ports".into())
        );
        assert_eq!(enclosing_table("x = [\n", 6), None);
    }

    #[test]
    fn a_rules_only_config_loads() {
        let c = parse("[chains.FORWARD]\npolicy = \"DROP\"\nrules = [{ proto = \"tcp\", dport = 22, action = \"ACCEPT\" }]\n").unwrap();
        assert!(c.ports.is_empty());
        assert_eq!(c.ruleset().rule_count(), 1);
    }

    #[test]
    fn mac_parses_and_rejects() {
        assert_eq!(
            "02:00:0a:0B:00:ff".parse::<MacAddr>().unwrap().0,
            [2, 0, 10, 11, 0, 255]
        );
        for bad in [
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "2:00:00:00:00:00",
            "zz:00:00:00:00:00",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}
