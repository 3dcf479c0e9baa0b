//! The kernel side of routing state over rtnetlink: the box's addresses, the
//! neighbour table (dumped, followed by events, kept fresh), and asking the kernel
//! to resolve a next hop we have no MAC for (`NTF_USE`, which makes the kernel
//! send ARP/ND; the replies reach it because the XDP program passes them).
//! Cold path: one thread, never on a worker.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use crossbeam::channel::Receiver;
use ipnet::IpNet;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REQUEST,
};
use netlink_packet_route::{
    address::{AddressAttribute, AddressMessage},
    neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
    },
    AddressFamily, RouteNetlinkMessage,
};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use rustc_hash::FxHashMap;

use super::neigh::{NeighTable, NextHop};
use crate::packet::meta::Family;

/// Multicast group of neighbour events (RTMGRP_NEIGH in linux/rtnetlink.h).
const RTMGRP_NEIGH: u32 = 0x4;

/// A request/response rtnetlink socket.
pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// One entry of the kernel's neighbour table.
#[derive(Debug, Clone)]
pub struct KernelNeigh {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub mac: Option<[u8; 6]>,
    pub state: NeighbourState,
}

impl KernelNeigh {
    /// Whether the MAC may be used to send (Linux sends on STALE too, and probes).
    pub fn usable(&self) -> bool {
        self.mac.is_some()
            && matches!(
                self.state,
                NeighbourState::Reachable
                    | NeighbourState::Stale
                    | NeighbourState::Delay
                    | NeighbourState::Probe
                    | NeighbourState::Permanent
                    | NeighbourState::Noarp
            )
    }
}

impl Netlink {
    pub fn new() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Self {
            sock,
            seq: 1,
            buf: vec![0; 1 << 16],
        })
    }

    /// Sends one request and collects the answers until DONE (dumps) or the ACK.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        self.seq += 1;
        header.sequence_number = self.seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        req.finalize();
        let mut out = vec![0; req.buffer_len()];
        req.serialize(&mut out);
        self.sock.send(&out, 0)?;

        let mut replies = Vec::new();
        loop {
            let n = self.sock.recv(&mut &mut self.buf[..], 0)?;
            let mut off = 0;
            while off < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = msg.header.length as usize;
                if msg.header.sequence_number == self.seq {
                    match msg.payload {
                        NetlinkPayload::Done(_) => return Ok(replies),
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                None => Ok(replies),
                                Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                            }
                        }
                        NetlinkPayload::InnerMessage(m) => replies.push(m),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
            }
        }
    }

    /// Every address of every interface, as (ifindex, address/prefix).
    pub fn addresses(&mut self) -> io::Result<Vec<(u32, IpNet)>> {
        let replies = self.request(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
        )?;
        let mut out = Vec::new();
        for m in replies {
            if let RouteNetlinkMessage::NewAddress(a) = m {
                // IFA_LOCAL is the address on point-to-point links; IFA_ADDRESS otherwise.
                let local = a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
                let addr = local.or_else(|| {
                    a.attributes.iter().find_map(|x| match x {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                });
                if let Some(ip) = addr {
                    if let Ok(net) = IpNet::new(ip, a.header.prefix_len) {
                        out.push((a.header.index, net));
                    }
                }
            }
        }
        Ok(out)
    }

    /// The kernel's neighbour table (IPv4 and IPv6).
    pub fn neighbours(&mut self) -> io::Result<Vec<KernelNeigh>> {
        let replies = self.request(
            RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => parse_neigh(&n),
                _ => None,
            })
            .collect())
    }

    /// Asks the kernel to resolve `addr` on `ifindex` now (NTF_USE: neigh_event_send,
    /// which creates the entry if needed and sends the ARP request / neighbour
    /// solicitation).
    pub fn resolve(&mut self, ifindex: u32, addr: IpAddr) -> io::Result<()> {
        let mut m = NeighbourMessage::default();
        m.header.family = if addr.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        m.header.ifindex = ifindex;
        m.header.state = NeighbourState::None;
        m.header.flags = NeighbourFlags::Use;
        m.attributes
            .push(NeighbourAttribute::Destination(match addr {
                IpAddr::V4(a) => NeighbourAddress::Inet(a),
                IpAddr::V6(a) => NeighbourAddress::Inet6(a),
            }));
        self.request(
            RouteNetlinkMessage::NewNeighbour(m),
            NLM_F_CREATE | NLM_F_ACK,
        )
        .map(|_| ())
    }
}

fn parse_neigh(n: &NeighbourMessage) -> Option<KernelNeigh> {
    let addr = n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => Some(IpAddr::V6(*ip)),
        _ => None,
    })?;
    let mac = n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
            Some([l[0], l[1], l[2], l[3], l[4], l[5]])
        }
        _ => None,
    });
    Some(KernelNeigh {
        ifindex: n.header.ifindex,
        addr,
        mac,
        state: n.header.state,
    })
}

/// An address as the table's key.
pub fn next_hop(port: u16, addr: IpAddr) -> NextHop {
    match addr {
        IpAddr::V4(a) => NextHop {
            port,
            family: Family::V4,
            addr: u32::from(a) as u128,
        },
        IpAddr::V6(a) => NextHop {
            port,
            family: Family::V6,
            addr: u128::from(a),
        },
    }
}

/// The address of a table key.
pub fn next_hop_addr(nh: &NextHop) -> IpAddr {
    match nh.family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(nh.addr as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(nh.addr)),
    }
}

/// Keeps `table` equal to the kernel's neighbours on our ports: a dump at start,
/// a new dump after each neighbour event, resolution requests from the workers
/// (`requests`), and once a second a probe of STALE entries so next hops in use
/// do not age out (we send without the kernel, so it never sees them used).
pub fn spawn_neigh_sync(
    table: Arc<NeighTable>,
    ports: Vec<(u16, u32)>,
    requests: Receiver<NextHop>,
    stop: Arc<AtomicBool>,
) -> io::Result<thread::JoinHandle<()>> {
    let mut nl = Netlink::new()?;
    let mut events = Socket::new(NETLINK_ROUTE)?;
    events.bind(&SocketAddr::new(0, RTMGRP_NEIGH))?;
    events.set_non_blocking(true)?;
    let ifindex_of = {
        let ports = ports.clone();
        move |port: u16| ports.iter().find(|(p, _)| *p == port).map(|(_, i)| *i)
    };
    let port_of = move |ifindex: u32| ports.iter().find(|(_, i)| *i == ifindex).map(|(p, _)| *p);
    let refresh = move |nl: &mut Netlink, probe_stale: bool| -> io::Result<()> {
        let mut learned = FxHashMap::default();
        for n in nl.neighbours()? {
            let Some(port) = port_of(n.ifindex) else {
                continue;
            };
            if n.usable() {
                learned.insert(next_hop(port, n.addr), n.mac.expect("usable has a MAC"));
            }
            if probe_stale && n.state == NeighbourState::Stale {
                let _ = nl.resolve(n.ifindex, n.addr);
            }
        }
        table.publish(learned);
        Ok(())
    };
    refresh(&mut nl, false)?;
    thread::Builder::new()
        .name("fwd-neigh".into())
        .spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            let mut last_probe = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let mut changed = false;
                while let Ok(nh) = requests.try_recv() {
                    let Some(ifindex) = ifindex_of(nh.port) else {
                        continue;
                    };
                    if let Err(e) = nl.resolve(ifindex, next_hop_addr(&nh)) {
                        tracing::warn!("asking the kernel to resolve {}: {e}", next_hop_addr(&nh));
                    }
                }
                while events.recv(&mut &mut buf[..], libc::MSG_DONTWAIT).is_ok() {
                    changed = true;
                }
                let probe = last_probe.elapsed() >= Duration::from_secs(1);
                if changed || probe {
                    if let Err(e) = refresh(&mut nl, probe) {
                        tracing::warn!("neighbour sync: {e}");
                    }
                    if probe {
                        last_probe = Instant::now();
                    }
                }
                thread::sleep(Duration::from_millis(1));
            }
        })
}
