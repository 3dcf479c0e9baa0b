//! One-way latency: send timestamp in the payload, receive time on the same host
//! clock, recorded in an hdrhistogram (1 ns .. 10 s, 3 significant digits).

use hdrhistogram::Histogram;

/// Samples above this are clock trouble or a frame from an earlier run, not latency.
pub const MAX_NS: u64 = 10_000_000_000;

pub struct Latency {
    hist: Histogram<u64>,
    /// Samples outside 0..=MAX_NS (skipped).
    pub out_of_range: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid histogram bounds"),
            out_of_range: 0,
        }
    }

    /// Records a frame sent at `sent_ns` and received at `now_ns`.
    #[inline]
    pub fn record(&mut self, sent_ns: u64, now_ns: u64) {
        match now_ns.checked_sub(sent_ns) {
            Some(d) => self.record_ns(d),
            None => self.out_of_range += 1,
        }
    }

    #[inline]
    pub fn record_ns(&mut self, d: u64) {
        if d > MAX_NS || self.hist.record(d.max(1)).is_err() {
            self.out_of_range += 1;
        }
    }

    pub fn summary(&self) -> LatencySummary {
        let h = &self.hist;
        let q = |p: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(p)
            }
        };
        LatencySummary {
            samples: h.len(),
            min_ns: if h.is_empty() { 0 } else { h.min() },
            p50_ns: q(0.50),
            p99_ns: q(0.99),
            p999_ns: q(0.999),
            max_ns: h.max(),
            mean_ns: if h.is_empty() { 0.0 } else { h.mean() },
            out_of_range: self.out_of_range,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub min_ns: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    pub mean_ns: f64,
    pub out_of_range: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut l = Latency::new();
        for i in 1..=1000u64 {
            l.record(1_000_000, 1_000_000 + i * 1000); // 1 us .. 1 ms
        }
        l.record(5, 4); // receive before send: skipped, counted
        let s = l.summary();
        assert_eq!(s.samples, 1000);
        assert_eq!(s.out_of_range, 1);
        assert!((499_000..=501_000).contains(&s.p50_ns), "{}", s.p50_ns);
        assert!((989_000..=991_000).contains(&s.p99_ns), "{}", s.p99_ns);
    }
}
