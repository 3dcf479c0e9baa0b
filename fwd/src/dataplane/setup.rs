//! Turning a config into what the dataplane runs on: port facts from the kernel
//! (ifindex, MAC, MTU, addresses) and the FIB (connected routes + config routes).

use std::{fs, net::IpAddr};

use ipnet::IpNet;

use crate::{
    config::Config,
    packet::meta::Family,
    route::{netlink::Netlink, Fib, FibBuilder, RouteEntry},
};

use super::{pipeline::PortInfo, RunError};

fn read_sys(ifname: &str, attr: &str) -> Result<String, RunError> {
    let p = format!("/sys/class/net/{ifname}/{attr}");
    fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| {
            RunError::BadInput(format!(
            "interface {ifname:?}: cannot read {p}: {e} (does it exist in this network namespace?)"
        ))
        })
}

/// Looks up each port's interface and the box's addresses on it.
pub fn discover_ports(cfg: &Config) -> Result<Vec<PortInfo>, RunError> {
    let mut nl =
        Netlink::new().map_err(|e| RunError::Runtime(format!("opening rtnetlink: {e}")))?;
    let kernel_nets = nl
        .addresses()
        .map_err(|e| RunError::Runtime(format!("reading interface addresses: {e}")))?;
    let mut ports = Vec::new();
    for p in &cfg.ports {
        let p = p.get_ref();
        let ifindex: u32 = read_sys(&p.interface, "ifindex")?
            .parse()
            .map_err(|_| RunError::Runtime(format!("{}: unreadable ifindex", p.interface)))?;
        let mac = read_sys(&p.interface, "address")?
            .parse::<crate::config::MacAddr>()
            .map_err(|_| {
                RunError::BadInput(format!(
                    "interface {:?} has no Ethernet address",
                    p.interface
                ))
            })?
            .0;
        let mtu: u16 = read_sys(&p.interface, "mtu")?.parse().unwrap_or(1500);
        let mut nets: Vec<IpNet> = p.addresses.clone();
        for (idx, net) in &kernel_nets {
            if *idx == ifindex && !nets.iter().any(|n| n.addr() == net.addr()) {
                nets.push(*net);
            }
        }
        let v4 = nets
            .iter()
            .filter_map(|n| match n.addr() {
                IpAddr::V4(a) => Some(a),
                _ => None,
            })
            .collect();
        // ICMPv6 errors must not come from a link-local source when a global one exists.
        let v6 = nets
            .iter()
            .filter_map(|n| match n.addr() {
                IpAddr::V6(a) if a.segments()[0] & 0xffc0 != 0xfe80 => Some(a),
                _ => None,
            })
            .collect();
        ports.push(PortInfo {
            interface: p.interface.clone(),
            ifindex,
            mac,
            mtu,
            v4,
            v6,
            nets,
        });
    }
    Ok(ports)
}

pub fn ip_to_u128(a: IpAddr) -> (Family, u128) {
    match a {
        IpAddr::V4(a) => (Family::V4, u32::from(a) as u128),
        IpAddr::V6(a) => (Family::V6, u128::from(a)),
    }
}

/// Connected routes for every port's prefixes (like the kernel's), then the
/// config's routes.
pub fn build_fib(cfg: &Config, ports: &[PortInfo]) -> Result<Fib, RunError> {
    let mut b = FibBuilder::new();
    let mut connected: Vec<(IpNet, u16)> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        for net in &p.nets {
            let net = net.trunc();
            // Link-local prefixes are not routed.
            if matches!(net, IpNet::V6(n) if n.addr().segments()[0] & 0xffc0 == 0xfe80)
                || connected.iter().any(|(n, _)| *n == net)
            {
                continue;
            }
            connected.push((net, i as u16));
            b.add(net, RouteEntry::new(i as u16, None)).map_err(|e| {
                RunError::BadInput(format!("connected route {net} of {}: {e}", p.interface))
            })?;
        }
    }
    for (i, r) in cfg.routes.iter().enumerate() {
        let r = r.get_ref();
        let port = match (&r.interface, r.via) {
            (Some(ifname), _) => cfg.port_index(ifname).expect("validated in Config::parse") as u16,
            (None, Some(via)) => connected
                .iter()
                .filter(|(n, _)| n.contains(&via))
                .max_by_key(|(n, _)| n.prefix_len())
                .map(|(_, p)| *p)
                .ok_or_else(|| {
                    RunError::BadInput(format!(
                        "routes[{i}]: next hop {via} is on none of the ports' subnets; add `interface`"
                    ))
                })?,
            (None, None) => unreachable!("validated in Config::parse"),
        };
        b.add(r.prefix, RouteEntry::new(port, r.via))
            .map_err(|e| RunError::BadInput(format!("routes[{i}] ({}): {e}", r.prefix)))?;
    }
    Ok(b.build())
}
