//! The bench's shared code: what pktgen sends (`traffic`), how fast (`pacer`), how
//! the sink reads it back (`seq`, `latency`), and the engines that move frames:
//! AF_XDP TX/RX (`afxdp`), BPF_PROG_RUN live frames (`live`), an XDP counting sink
//! (`xdp_sink`). The binaries in src/bin/ only parse arguments and print.

pub mod afxdp;
pub mod latency;
pub mod live;
pub mod pacer;
pub mod report;
pub mod seq;
pub mod traffic;
pub mod xdp_sink;

/// Exit codes of the bench binaries (as fwd's): 0 ok, 1 runtime failure, 2 bad input.
pub const EXIT_OK: u8 = 0;
pub const EXIT_RUNTIME: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;

/// CLOCK_MONOTONIC in ns: the clock of the send timestamps, the same one BPF's
/// bpf_ktime_get_ns() reads, and one clock for every namespace of the host, so
/// generator and sink on one machine measure one-way latency with it.
#[inline]
pub fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// The interface index of `ifname` in this network namespace.
pub fn ifindex(ifname: &str) -> Result<u32, String> {
    let path = format!("/sys/class/net/{ifname}/ifindex");
    std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("no interface '{ifname}' in this network namespace"))
}

/// The MAC address of `ifname` (from sysfs of this network namespace).
pub fn if_mac(ifname: &str) -> Result<[u8; 6], String> {
    let path = format!("/sys/class/net/{ifname}/address");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("reading the MAC of '{ifname}' from {path}: {e}"))?;
    parse_mac(text.trim())
}

pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("'{s}' is not a MAC address like 02:00:00:00:00:01"));
    }
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16)
            .map_err(|_| format!("'{s}' is not a MAC address like 02:00:00:00:00:01"))?;
    }
    Ok(mac)
}

/// Pins the calling thread to `core`, or says why not.
pub fn pin(core: Option<usize>) -> Result<(), String> {
    let Some(core) = core else { return Ok(()) };
    if core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        Ok(())
    } else {
        Err(format!(
            "could not pin to core {core} (is there such a core?)"
        ))
    }
}
