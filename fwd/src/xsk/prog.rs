//! Loading, attaching and feeding fwd's XDP program (bpf/xdp_fwd.bpf.c), through
//! the libbpf-rs skeleton built by build.rs.

use std::{
    ffi::CString,
    mem::MaybeUninit,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::AsFd,
};

use libbpf_rs::{
    query::ProgInfoIter,
    skel::{OpenSkel, SkelBuilder},
    MapCore, MapFlags, MapHandle, OpenObject, Xdp, XdpFlags,
};

use super::XskError;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/xdp_fwd.skel.rs"));
}
use skel::{XdpFwdSkel, XdpFwdSkelBuilder};

/// The program's name in the kernel; how a restart recognises a stale program of ours.
pub const PROG_NAME: &str = "fwd_xdp";

/// Where the program runs: in the driver (native) or on the skb path (generic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum XdpAttachMode {
    /// Native if the driver has it, else generic.
    Auto,
    Native,
    Generic,
}

/// Slots of the program's `stats` map (enum xdp_stat in the C source).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpStat {
    Redirect = 0,
    PassArp,
    PassLocal,
    PassMcast,
    PassOther,
    /// To one of the box's addresses, but a NAT reply or port forward: fwd's.
    NatLocal,
}

impl XdpStat {
    pub const ALL: [XdpStat; 6] = [
        XdpStat::Redirect,
        XdpStat::PassArp,
        XdpStat::PassLocal,
        XdpStat::PassMcast,
        XdpStat::PassOther,
        XdpStat::NatLocal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            XdpStat::Redirect => "xdp_redirect",
            XdpStat::PassArp => "xdp_pass_arp",
            XdpStat::PassLocal => "xdp_pass_local",
            XdpStat::PassMcast => "xdp_pass_mcast",
            XdpStat::PassOther => "xdp_pass_other",
            XdpStat::NatLocal => "xdp_nat_local",
        }
    }
}

/// Counters of the XDP program on one port, summed over CPUs.
pub type XdpProgStats = [(XdpStat, u64); 6];

/// fwd's XDP program, loaded and attached to one interface. Detached on drop.
pub struct XdpProg {
    skel: XdpFwdSkel<'static>,
    ifindex: i32,
    ifname: String,
    mode: XdpAttachMode,
}

impl XdpProg {
    /// Loads the program and attaches it to `ifname` (native first when `Auto`). A
    /// stale program of ours (a crashed run) is replaced; anyone else's program is
    /// left alone and reported.
    pub fn attach(ifname: &str, ifindex: u32, want: XdpAttachMode) -> Result<Self, XskError> {
        let err = |reason: String| XskError::Prog {
            ifname: ifname.to_string(),
            reason,
        };
        let ifindex = ifindex as i32;
        // The skeleton borrows its OpenObject for its whole life; one small allocation
        // per port per process, so we give it 'static storage.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let open = XdpFwdSkelBuilder::default()
            .open(storage)
            .map_err(|e| err(format!("open: {e}")))?;
        let skel = open.load().map_err(|e| err(format!("load: {e}")))?;
        let prog_fd = skel.progs.fwd_xdp.as_fd();
        let xdp = Xdp::new(prog_fd);

        remove_stale(&xdp, ifindex).map_err(err)?;

        let try_mode = |flags: XdpFlags| xdp.attach(ifindex, flags | XdpFlags::UPDATE_IF_NOEXIST);
        let mode = match want {
            XdpAttachMode::Native => {
                try_mode(XdpFlags::DRV_MODE).map_err(|e| err(format!("native attach: {e}")))?;
                XdpAttachMode::Native
            }
            XdpAttachMode::Generic => {
                try_mode(XdpFlags::SKB_MODE).map_err(|e| err(format!("generic attach: {e}")))?;
                XdpAttachMode::Generic
            }
            XdpAttachMode::Auto => match try_mode(XdpFlags::DRV_MODE) {
                Ok(()) => XdpAttachMode::Native,
                Err(native) => {
                    try_mode(XdpFlags::SKB_MODE).map_err(|e| {
                        err(format!("native attach: {native}; generic attach: {e}"))
                    })?;
                    XdpAttachMode::Generic
                }
            },
        };
        Ok(Self {
            skel,
            ifindex,
            ifname: ifname.to_string(),
            mode,
        })
    }

    pub fn mode(&self) -> XdpAttachMode {
        self.mode
    }

    /// Steers `queue`'s frames to the AF_XDP socket `fd`.
    pub fn register_socket(&self, queue: u32, fd: i32) -> Result<(), XskError> {
        self.skel
            .maps
            .xsks
            .update(&queue.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| XskError::Prog {
                ifname: self.ifname.clone(),
                reason: format!("adding the socket of queue {queue} to the XSKMAP: {e}"),
            })
    }

    /// Replaces the set of the box's own addresses (frames to them go to the kernel).
    pub fn set_local_addrs(&self, v4: &[Ipv4Addr], v6: &[Ipv6Addr]) -> Result<(), XskError> {
        let err = |e: libbpf_rs::Error| XskError::Prog {
            ifname: self.ifname.clone(),
            reason: format!("updating local addresses: {e}"),
        };
        let maps = &self.skel.maps;
        for k in maps.local_v4.keys().collect::<Vec<_>>() {
            maps.local_v4.delete(&k).map_err(err)?;
        }
        for k in maps.local_v6.keys().collect::<Vec<_>>() {
            maps.local_v6.delete(&k).map_err(err)?;
        }
        for a in v4 {
            maps.local_v4
                .update(&a.octets(), &[1], MapFlags::ANY)
                .map_err(err)?;
        }
        for a in v6 {
            maps.local_v6
                .update(&a.octets(), &[1], MapFlags::ANY)
                .map_err(err)?;
        }
        Ok(())
    }

    /// A handle on the maps that say which traffic to the box's own addresses is
    /// fwd's (NAT replies, port forwards); any thread may update them.
    pub fn steering(&self) -> Result<XdpSteering, XskError> {
        let err = |e: libbpf_rs::Error| XskError::Prog {
            ifname: self.ifname.clone(),
            reason: format!("opening the NAT steering maps: {e}"),
        };
        Ok(XdpSteering {
            nat_ports: MapHandle::try_from(&self.skel.maps.nat_ports).map_err(err)?,
            dnat_ports: MapHandle::try_from(&self.skel.maps.dnat_ports).map_err(err)?,
        })
    }

    /// A handle on the program's counters that any thread may read.
    pub fn stats_reader(&self) -> Result<XdpStatsReader, XskError> {
        MapHandle::try_from(&self.skel.maps.stats)
            .map(|map| XdpStatsReader { map })
            .map_err(|e| XskError::Prog {
                ifname: self.ifname.clone(),
                reason: format!("opening the stats map: {e}"),
            })
    }
}

/// The NAT steering maps of one port's program.
pub struct XdpSteering {
    nat_ports: MapHandle,
    dnat_ports: MapHandle,
}

impl XdpSteering {
    /// Sets the NAT reply range (`(0, 0)`: none) and the DNAT'd TCP and UDP
    /// destination port ranges.
    pub fn set(
        &self,
        nat: (u16, u16),
        dnat_tcp: &[(u16, u16)],
        dnat_udp: &[(u16, u16)],
    ) -> Result<(), String> {
        let mut range = [0u8; 4];
        range[..2].copy_from_slice(&nat.0.to_ne_bytes());
        range[2..].copy_from_slice(&nat.1.to_ne_bytes());
        self.nat_ports
            .update(&0u32.to_ne_bytes(), &range, MapFlags::ANY)
            .map_err(|e| format!("setting the NAT port range: {e}"))?;
        let mut words = vec![0u64; 2048];
        for (base, ranges) in [(0usize, dnat_tcp), (1024, dnat_udp)] {
            for &(lo, hi) in ranges {
                for p in lo..=hi {
                    words[base + usize::from(p) / 64] |= 1 << (p % 64);
                }
            }
        }
        for (i, w) in words.iter().enumerate() {
            self.dnat_ports
                .update(&(i as u32).to_ne_bytes(), &w.to_ne_bytes(), MapFlags::ANY)
                .map_err(|e| format!("setting the DNAT port map: {e}"))?;
        }
        Ok(())
    }
}

/// Reads one port's XDP program counters (a dup of the map's fd: Send + Sync).
pub struct XdpStatsReader {
    map: MapHandle,
}

impl XdpStatsReader {
    /// The counters, summed over CPUs.
    pub fn read(&self) -> XdpProgStats {
        XdpStat::ALL.map(|s| {
            let key = (s as u32).to_ne_bytes();
            let sum = match self.map.lookup_percpu(&key, MapFlags::ANY) {
                Ok(Some(vals)) => vals
                    .iter()
                    .map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap_or([0; 8])))
                    .sum(),
                _ => 0,
            };
            (s, sum)
        })
    }
}

impl Drop for XdpProg {
    fn drop(&mut self) {
        let flags = match self.mode {
            XdpAttachMode::Generic => XdpFlags::SKB_MODE,
            _ => XdpFlags::DRV_MODE,
        };
        let xdp = Xdp::new(self.skel.progs.fwd_xdp.as_fd());
        if let Err(e) = xdp.detach(self.ifindex, flags) {
            tracing::warn!(ifname = %self.ifname, "detaching the XDP program: {e}");
        }
    }
}

/// If `ifindex` runs a program named `fwd_xdp` (ours, left by a run that crashed),
/// detaches it. Someone else's program is an error: we do not clobber it.
fn remove_stale(xdp: &Xdp<'_>, ifindex: i32) -> Result<(), String> {
    let q = xdp
        .query(ifindex, XdpFlags::NONE)
        .map_err(|e| format!("querying XDP programs: {e}"))?;
    for (id, flags) in [
        (q.drv_prog_id, XdpFlags::DRV_MODE),
        (q.skb_prog_id, XdpFlags::SKB_MODE),
    ] {
        if id == 0 {
            continue;
        }
        let name = ProgInfoIter::default().find(|p| p.id == id).map(|p| p.name);
        if name.as_deref() == Some(CString::new(PROG_NAME).expect("no NUL").as_c_str()) {
            tracing::warn!(
                ifindex,
                prog_id = id,
                "replacing a stale fwd XDP program (a previous run did not exit cleanly)"
            );
            xdp.detach(ifindex, flags)
                .map_err(|e| format!("detaching the stale program {id}: {e}"))?;
        } else {
            return Err(format!(
                "another XDP program (id {id}, {:?}) is attached; fwd does not replace programs it did not load",
                name.unwrap_or_default()
            ));
        }
    }
    Ok(())
}
