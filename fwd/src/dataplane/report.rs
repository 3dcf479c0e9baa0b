//! The counters as `--stats-file`, the control socket and Prometheus show them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::xsk::SocketStats;

/// The counters as `--stats-file` and `fwd stats` show them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatsReport {
    pub uptime_secs: f64,
    pub ports: Vec<PortReport>,
    pub drops: BTreeMap<String, u64>,
    pub malformed: BTreeMap<String, u64>,
    pub events: BTreeMap<String, u64>,
    /// Time from RX burst to TX ring per batch, as (upper bound in ns, frames).
    pub latency_ns: Vec<(u64, u64)>,
    pub reloads: u64,
    pub last_reload: String,
    /// Connection-table counters summed over workers (when tracking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conntrack: Option<BTreeMap<String, u64>>,
    /// Each worker's (port, queue) list and core.
    pub workers: Vec<WorkerReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerReport {
    pub id: usize,
    pub core: Option<usize>,
    pub queues: Vec<(String, u32)>,
    pub rx_packets: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortReport {
    pub interface: String,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// The kernel's XDP_STATISTICS, summed over this port's sockets.
    pub xsk: SocketStats,
    /// Where the XDP program sent frames (redirect to fwd, or pass to the kernel why).
    pub xdp: BTreeMap<String, u64>,
}

/// A connection table's counters by name (`conntrack -S`'s where it has them).
pub fn ct_fields(s: &crate::conntrack::CtStats) -> [(&'static str, u64); 12] {
    [
        ("entries", s.entries),
        ("created", s.created),
        ("confirmed", s.confirmed),
        ("discarded", s.discarded),
        ("expired", s.expired),
        ("killed", s.killed),
        ("early_drops", s.early_drops),
        ("table_full_drops", s.table_full_drops),
        ("clash_drops", s.clash_drops),
        ("invalid", s.invalid),
        ("related", s.related),
        ("nat_exhausted", s.nat_exhausted),
    ]
}

/// The report in Prometheus text format.
pub fn prometheus(r: &StatsReport) -> String {
    use crate::control::metrics::{family, label};
    let mut out = String::new();
    let per_port = |f: &dyn Fn(&PortReport) -> u64| -> Vec<(String, f64)> {
        r.ports
            .iter()
            .map(|p| {
                (
                    format!("interface=\"{}\"", label(&p.interface)),
                    f(p) as f64,
                )
            })
            .collect()
    };
    family(
        &mut out,
        "fwd_rx_packets_total",
        "counter",
        "Frames received by fwd per port.",
        &per_port(&|p| p.rx_packets),
    );
    family(
        &mut out,
        "fwd_rx_bytes_total",
        "counter",
        "Bytes received by fwd per port.",
        &per_port(&|p| p.rx_bytes),
    );
    family(
        &mut out,
        "fwd_tx_packets_total",
        "counter",
        "Frames sent by fwd per port.",
        &per_port(&|p| p.tx_packets),
    );
    family(
        &mut out,
        "fwd_tx_bytes_total",
        "counter",
        "Bytes sent by fwd per port.",
        &per_port(&|p| p.tx_bytes),
    );
    family(
        &mut out,
        "fwd_xsk_rx_dropped_total",
        "counter",
        "XDP_STATISTICS rx_dropped per port.",
        &per_port(&|p| p.xsk.rx_dropped),
    );
    family(
        &mut out,
        "fwd_xsk_rx_ring_full_total",
        "counter",
        "XDP_STATISTICS rx_ring_full per port.",
        &per_port(&|p| p.xsk.rx_ring_full),
    );
    family(
        &mut out,
        "fwd_xsk_fill_ring_empty_total",
        "counter",
        "XDP_STATISTICS rx_fill_ring_empty_descs per port.",
        &per_port(&|p| p.xsk.rx_fill_ring_empty_descs),
    );
    family(
        &mut out,
        "fwd_xsk_tx_ring_empty_total",
        "counter",
        "XDP_STATISTICS tx_ring_empty_descs per port.",
        &per_port(&|p| p.xsk.tx_ring_empty_descs),
    );
    let xdp: Vec<(String, f64)> = r
        .ports
        .iter()
        .flat_map(|p| {
            p.xdp.iter().map(move |(k, v)| {
                (
                    format!(
                        "interface=\"{}\",action=\"{}\"",
                        label(&p.interface),
                        label(k)
                    ),
                    *v as f64,
                )
            })
        })
        .collect();
    family(
        &mut out,
        "fwd_xdp_frames_total",
        "counter",
        "Frames the XDP program steered to fwd or passed to the kernel, by reason.",
        &xdp,
    );
    let kv = |m: &BTreeMap<String, u64>, key: &str| -> Vec<(String, f64)> {
        m.iter()
            .map(|(k, v)| (format!("{key}=\"{}\"", label(k)), *v as f64))
            .collect()
    };
    family(
        &mut out,
        "fwd_drops_total",
        "counter",
        "Frames not forwarded, by reason.",
        &kv(&r.drops, "reason"),
    );
    family(
        &mut out,
        "fwd_malformed_total",
        "counter",
        "Malformed frames, by the check that failed.",
        &kv(&r.malformed, "check"),
    );
    family(
        &mut out,
        "fwd_events_total",
        "counter",
        "Dataplane events.",
        &kv(&r.events, "event"),
    );
    let mut cum = 0u64;
    let mut buckets = Vec::new();
    let mut sum_ns = 0f64;
    for (bound, n) in &r.latency_ns {
        cum += n;
        let le = if *bound == u64::MAX {
            "+Inf".to_string()
        } else {
            format!("{}", *bound as f64 / 1e9)
        };
        buckets.push((format!("le=\"{le}\""), cum as f64));
        // Bucket midpoints: an estimate, as the exposition's _sum of a log histogram must be.
        if *bound != u64::MAX {
            sum_ns += *n as f64 * (*bound as f64 * 0.75);
        }
    }
    let mut hist = String::new();
    family(
        &mut hist,
        "fwd_pipeline_latency_seconds",
        "histogram",
        "Time from RX burst to TX ring, per frame (batch granularity).",
        &[],
    );
    out.push_str(&hist);
    for (l, v) in buckets {
        out.push_str(&format!("fwd_pipeline_latency_seconds_bucket{{{l}}} {v}\n"));
    }
    out.push_str(&format!(
        "fwd_pipeline_latency_seconds_sum {}\nfwd_pipeline_latency_seconds_count {cum}\n",
        sum_ns / 1e9
    ));
    family(
        &mut out,
        "fwd_reloads_total",
        "counter",
        "Reloads tried (SIGHUP or fwd reload).",
        &[(String::new(), r.reloads as f64)],
    );
    let ok = if r.last_reload.starts_with("ok") {
        1.0
    } else {
        0.0
    };
    family(
        &mut out,
        "fwd_last_reload_success",
        "gauge",
        "1 if the last reload was applied, 0 if refused (or none yet).",
        &[(String::new(), ok)],
    );
    family(
        &mut out,
        "fwd_uptime_seconds",
        "gauge",
        "Seconds since fwd started forwarding.",
        &[(String::new(), r.uptime_secs)],
    );
    out
}
