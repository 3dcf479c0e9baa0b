//! Speed and size of the table, as an ignored test (run it in release):
//!
//! `cargo test --release -p fwd --lib conntrack::table::bench -- --ignored --nocapture --test-threads=1`
//!
//! Lookups are `track` calls for established UDP flows visited in a scattered
//! order (a multiplicative stride, so 1M flows miss the caches as live traffic
//! would). The baseline, measured in the same run over the same keys, is a
//! `HashMap<FlowKey, u32>` with FxHash: a lookup only, no state update. Then the
//! same for established TCP connections (the state machine and window tracking
//! on every segment).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use rustc_hash::FxBuildHasher;

use super::*;
use crate::packet::meta::{Family, PacketMeta};

fn meta_of(i: u32) -> PacketMeta {
    PacketMeta {
        family: Family::V4,
        src: u128::from(0xc612_0000 | (i >> 10)),
        dst: u128::from(0xc613_8000 | (i & 0x3ff)),
        proto: 17,
        sport: 1024 + (i % 50_000) as u16,
        dport: 53,
        ip_len: 64,
        l4_valid: true,
        l3_off: 14,
        l4_off: 34,
        ..PacketMeta::default()
    }
}

fn key_of(m: &PacketMeta) -> FlowKey {
    FlowKey {
        src: m.src,
        dst: m.dst,
        sport: m.sport,
        dport: m.dport,
        zone: 0,
        proto: m.proto,
        family: m.family,
    }
}

/// Visits 0..n once each in a cache-unfriendly order.
fn scattered(k: u64, n: u32) -> u32 {
    (k.wrapping_mul(2_654_435_761) % u64::from(n)) as u32
}

/// How many lookups a run of `n` flows times: about 20M, every flow at least twice.
fn lookups_of(n: u32) -> u64 {
    (20_000_000 / u64::from(n)).max(2) * u64::from(n)
}

/// ns per `track` of `frame` for the `n` flows `meta_of` names, in scattered
/// order: one by one, then as the worker does it (a batch's index slots and
/// entries prefetched first, then the batch tracked).
fn lookups(t: &mut Table, frame: &[u8], n: u32, meta_of: impl Fn(u32) -> PacketMeta) -> (f64, f64) {
    let total = lookups_of(n);
    let start = Instant::now();
    for k in 0..total {
        let m = meta_of(scattered(k, n));
        black_box(t.track(frame, &m, 0, 2).unwrap());
    }
    let one_by_one = start.elapsed().as_nanos() as f64 / total as f64;
    let start = Instant::now();
    let mut metas = [PacketMeta::default(); 32];
    let mut ahead = [None; 32];
    for b in (0..total).step_by(metas.len()) {
        for (j, m) in metas.iter_mut().enumerate() {
            *m = meta_of(scattered(b + j as u64, n));
            ahead[j] = t.prefetch(frame, m, 0);
        }
        for a in ahead.iter().flatten() {
            t.prefetch_entry(*a);
        }
        for m in &metas {
            black_box(t.track(frame, m, 0, 2).unwrap());
        }
    }
    let batched = start.elapsed().as_nanos() as f64 / total as f64;
    (one_by_one, batched)
}

fn run(n: u32) {
    let frame = [0u8; 64];
    let cfg = CtConfig {
        max_entries: n,
        ..CtConfig::default()
    };
    let mut t = Table::with_seed(&cfg, 0x1234);

    // New flows: track + confirm into an empty table.
    let start = Instant::now();
    for i in 0..n {
        let r = t.track(&frame, &meta_of(i), 0, 1).unwrap();
        t.confirm(r.handle.unwrap());
    }
    let insert_ns = start.elapsed().as_nanos() as f64 / f64::from(n);
    assert_eq!(t.len(), n as usize);

    // Mean and worst distance of an index slot from its home: the probe cost.
    let (mut sum, mut worst, mut used) = (0usize, 0usize, 0usize);
    for (i, s) in t.index.iter().enumerate() {
        if s.reff != EMPTY {
            let d = i.wrapping_sub(s.hash as usize) & t.mask;
            sum += d;
            worst = worst.max(d);
            used += 1;
        }
    }
    let mean_probe = 1.0 + sum as f64 / used as f64;

    let (track_ns, batched_ns) = lookups(&mut t, &frame, n, meta_of);
    let s = t.stats();
    assert_eq!((s.created, s.expired, s.early_drops), (u64::from(n), 0, 0));

    // New flows again, batched with prefetch, into a second table of the same size.
    let mut t2 = Table::with_seed(&cfg, 0x1234);
    let start = Instant::now();
    for b in (0..n).step_by(32) {
        let batch = b..(b + 32).min(n);
        for i in batch.clone() {
            t2.prefetch(&frame, &meta_of(i), 0);
        }
        for i in batch {
            let r = t2.track(&frame, &meta_of(i), 0, 1).unwrap();
            t2.confirm(r.handle.unwrap());
        }
    }
    let insert_batched_ns = start.elapsed().as_nanos() as f64 / f64::from(n);
    drop(t2);

    let total = lookups_of(n);
    let mut base: HashMap<FlowKey, u32, FxBuildHasher> =
        HashMap::with_capacity_and_hasher(n as usize, FxBuildHasher);
    for i in 0..n {
        base.insert(key_of(&meta_of(i)), i);
    }
    let start = Instant::now();
    for k in 0..total {
        let m = meta_of(scattered(k, n));
        black_box(base.get(&key_of(&m)));
    }
    let base_ns = start.elapsed().as_nanos() as f64 / total as f64;

    println!(
        "{n:>8} flows: track(established) {track_ns:6.1} ns/pkt, batched with prefetch \
         {batched_ns:6.1} | baseline FxHashMap get {base_ns:6.1} ns | new flow track+confirm \
         {insert_ns:6.1} ns ({:.1} M flows/s), batched {insert_batched_ns:6.1} ns | \
         {:.0} bytes/flow (entry {} B, index+free list {:.0} B) | probes mean {mean_probe:.2} \
         worst {}",
        1e3 / insert_ns,
        t.memory_bytes() as f64 / f64::from(n),
        std::mem::size_of::<Conn>(),
        (t.memory_bytes() - n as usize * std::mem::size_of::<Conn>()) as f64 / f64::from(n),
        worst + 1,
    );
}

/// Ethernet + IPv4 + a 20-byte TCP header with these fields. The table takes
/// addresses and ports from the meta, the sequence numbers from the frame, so one
/// frame serves every connection.
fn tcp_frame(flags: u8, seq: u32, ack: u32) -> [u8; 54] {
    let mut f = [0u8; 54];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&40u16.to_be_bytes());
    f[23] = 6;
    f[38..42].copy_from_slice(&seq.to_be_bytes());
    f[42..46].copy_from_slice(&ack.to_be_bytes());
    f[46] = 5 << 4;
    f[47] = flags;
    f[48..50].copy_from_slice(&64240u16.to_be_bytes());
    f
}

/// Connection `i`'s segment from the client (`reply` false) or the server.
fn tcp_meta_of(i: u32, flags: u8, reply: bool) -> PacketMeta {
    let mut m = PacketMeta {
        proto: 6,
        dport: 443,
        tcp_flags: flags,
        ip_len: 40,
        ..meta_of(i)
    };
    if reply {
        std::mem::swap(&mut m.src, &mut m.dst);
        std::mem::swap(&mut m.sport, &mut m.dport);
    }
    m
}

fn run_tcp(n: u32) {
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    let cfg = CtConfig {
        max_entries: n,
        ..CtConfig::default()
    };
    let mut t = Table::with_seed(&cfg, 0x1234);
    let (syn, synack, ack) = (
        tcp_frame(SYN, 1000, 0),
        tcp_frame(SYN | ACK, 5000, 1001),
        tcp_frame(ACK, 1001, 5001),
    );
    for i in 0..n {
        let r = t.track(&syn, &tcp_meta_of(i, SYN, false), 0, 1).unwrap();
        t.confirm(r.handle.unwrap());
        t.track(&synack, &tcp_meta_of(i, SYN | ACK, true), 0, 1)
            .unwrap();
        let r = t.track(&ack, &tcp_meta_of(i, ACK, false), 0, 1).unwrap();
        assert_ne!(r.status & ASSURED, 0);
    }
    let (track_ns, batched_ns) = lookups(&mut t, &ack, n, |i| tcp_meta_of(i, ACK, false));
    let s = t.stats();
    assert_eq!((s.created, s.invalid, s.early_drops), (u64::from(n), 0, 0));
    println!(
        "{n:>8} TCP connections: track(established) {track_ns:6.1} ns/pkt, batched with \
         prefetch {batched_ns:6.1}"
    );
}

#[test]
#[ignore = "speed test: run in release with --ignored --nocapture"]
fn speed() {
    println!(
        "command: cargo test --release -p fwd --lib \
         conntrack::table::bench -- --ignored --nocapture --test-threads=1"
    );
    run(1_000);
    run(1 << 20);
    run_tcp(1_000);
    run_tcp(1 << 20);
}

#[test]
fn entry_stays_within_the_size_budget() {
    // 208-byte entries (TCP window tracking is 60 of them) + the index and free
    // list: within the budget of 256 bytes per flow.
    assert!(std::mem::size_of::<Conn>() <= 208);
    let t = Table::with_seed(
        &CtConfig {
            max_entries: 1000,
            ..CtConfig::default()
        },
        1,
    );
    assert!(
        t.memory_bytes() / 1000 <= 256,
        "{}",
        t.memory_bytes() / 1000
    );
}
