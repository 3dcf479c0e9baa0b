// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The bench's live-frames traffic generator (bench/src/live.rs drives it).
 *
 * Userspace runs this program with BPF_PROG_RUN and BPF_F_TEST_XDP_LIVE_FRAMES
 * (kernel >= 5.18): the kernel builds one frame per repetition from the template
 * passed as data_in, runs us on it, and really transmits what we redirect. This is
 * how xdp-trafficgen (xdp-tools) reaches several Mpps where AF_XDP copy-mode TX on
 * veth tops out near 1 Mpps.
 *
 * The kernel recycles frame pages without re-copying the template, so every field
 * we vary is written on every run: the UDP source port (the flow), the sequence
 * number and the timestamp. The UDP checksum is set to 0 ("no checksum", RFC 768;
 * IPv4 only) because the page may hold a previous run's bytes; the IPv4 header does
 * not change, so its checksum from the template stays right.
 *
 * Rate: one BPF_PROG_RUN call costs ~20 ms of setup on the test VM, so userspace
 * cannot pace by calling often with small repeat counts; it makes long calls. Instead the
 * program holds the rate itself with a token bucket on bpf_ktime_get_ns(): a run
 * that comes before its slot returns XDP_DROP (the page is recycled, nothing is
 * sent, no sequence number is used). Slots are in 1/1024 ns so that rates like
 * 1.234 Mpps are exact to a few ppm. After a stall, at most BURST frames go early.
 *
 * Template layout (bench/src/traffic.rs builds it): Ethernet, IPv4 without options,
 * UDP, then the bench payload: magic (2 bytes), sequence (8, big endian),
 * CLOCK_MONOTONIC timestamp in ns (8, big endian).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Set by userspace before load. */
const volatile __u32 out_ifindex = 0;
const volatile __u32 flows = 1;
const volatile __u16 sport_base = 1024;
/* Time between frames in 1/1024 ns; 0 = as fast as possible. */
const volatile __u64 gap_fp = 0;
/* Stop redirecting after this many frames (userspace checks next_seq). */
const volatile __u64 max_count = ~0ULL;

#define FP_SHIFT 10
#define BURST 64

/* The next sequence number. BPF_PROG_RUN runs on the calling CPU, one frame at a
 * time, so a plain increment is enough. Userspace resets it between runs. */
__u64 next_seq = 0;
/* CLOCK_MONOTONIC ns after which nothing is sent (userspace sets it: a call has
 * millions of repetitions and must not overrun --duration). */
__u64 deadline_ns = ~0ULL;
/* The next frame's slot, in 1/1024 ns of CLOCK_MONOTONIC. */
__u64 next_slot_fp = 0;

#define UDP_OFF (14 + 20)
#define PAYLOAD_OFF (UDP_OFF + 8)

struct udp {
	__be16 source;
	__be16 dest;
	__be16 len;
	__be16 check;
};

struct bench_payload {
	__be16 magic;
	__be64 seq;
	__be64 tstamp_ns;
} __attribute__((packed));

SEC("xdp")
int pktgen_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct udp *udp = data + UDP_OFF;
	struct bench_payload *p = data + PAYLOAD_OFF;
	__u64 seq;

	__u64 now;

	if ((void *)(p + 1) > data_end)
		return XDP_ABORTED;
	if (next_seq >= max_count)
		return XDP_DROP;
	now = bpf_ktime_get_ns();
	if (now >= deadline_ns)
		return XDP_DROP;
	if (gap_fp) {
		__u64 now_fp = now << FP_SHIFT;

		if (now_fp < next_slot_fp)
			return XDP_DROP;
		if (next_slot_fp + BURST * gap_fp < now_fp)
			next_slot_fp = now_fp - BURST * gap_fp;
		next_slot_fp += gap_fp;
	}
	seq = next_seq++;
	udp->source = bpf_htons(sport_base + (__u16)(seq % flows));
	udp->check = 0;
	p->seq = bpf_cpu_to_be64(seq);
	p->tstamp_ns = bpf_cpu_to_be64(now);
	return bpf_redirect(out_ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
