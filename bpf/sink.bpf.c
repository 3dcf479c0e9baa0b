// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The bench's XDP sink (bench/src/xdp_sink.rs drives it): counts the bench's frames
 * and drops them before the stack, tracks sequence numbers for loss, reordering and
 * duplicates, and samples one-way latency into a ring buffer for the hdrhistogram
 * in userspace. Anything that is not a bench frame (ARP, ND, ...) goes to the kernel.
 *
 * Sequence tracking mirrors bench::seq::SeqTracker: `seen[seq % SEEN_SLOTS]` holds
 * seq + 1 of the last frame in that slot (0: empty), so a duplicate is exact within
 * a window of SEEN_SLOTS frames. Counters use atomic adds; `max_seq1` is updated
 * without a lock, which is exact while one CPU receives (one veth queue).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define SEEN_SLOTS 65536
#define BENCH_MAGIC 0xbe9c

struct sink_state {
	__u64 packets;		/* bench frames */
	__u64 bytes;
	__u64 unique;		/* first copy of a sequence number */
	__u64 duplicates;
	__u64 reordered;	/* arrived after a higher sequence number */
	__u64 max_seq1;		/* highest sequence number seen, plus one */
	__u64 other;		/* frames passed to the kernel */
	__u64 samples_lost;	/* ring buffer full */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sink_state);
} state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SEEN_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

/* Latency samples in ns (one __u64 each). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} samples SEC(".maps");

/* Sample one frame in (sample_mask + 1); a power of two minus one. */
const volatile __u64 sample_mask = 0;

struct bench_payload {
	__be16 magic;
	__be64 seq;
	__be64 tstamp_ns;
} __attribute__((packed));

/* Finds the bench payload: IPv4 without options or IPv6 without extension
 * headers, then UDP, ICMP/ICMPv6 echo (8-byte headers) or TCP. */
static __always_inline struct bench_payload *payload_of(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	__u8 *l3 = (void *)(eth + 1);
	__u8 *l4;
	__u8 proto;

	if ((void *)(eth + 1) > data_end)
		return 0;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		if ((void *)(l3 + 20) > data_end || l3[0] != 0x45)
			return 0;
		proto = l3[9];
		l4 = l3 + 20;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		if ((void *)(l3 + 40) > data_end)
			return 0;
		proto = l3[6];
		l4 = l3 + 40;
	} else {
		return 0;
	}
	if (proto == IPPROTO_UDP || proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6)
		return (void *)(l4 + 8);
	if (proto == IPPROTO_TCP) {
		if ((void *)(l4 + 20) > data_end)
			return 0;
		return (void *)(l4 + ((l4[12] >> 2) & 0x3c));
	}
	return 0;
}

SEC("xdp")
int sink_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct bench_payload *p = payload_of(data, data_end);
	struct sink_state *st;
	__u32 zero = 0, slot;
	__u64 seq, *seen_seq, *sample;

	st = bpf_map_lookup_elem(&state, &zero);
	if (!st)
		return XDP_PASS;
	if (!p || (void *)(p + 1) > data_end || p->magic != bpf_htons(BENCH_MAGIC)) {
		__sync_fetch_and_add(&st->other, 1);
		return XDP_PASS;
	}
	__sync_fetch_and_add(&st->packets, 1);
	__sync_fetch_and_add(&st->bytes, data_end - data);

	seq = bpf_be64_to_cpu(p->seq);
	slot = seq & (SEEN_SLOTS - 1);
	seen_seq = bpf_map_lookup_elem(&seen, &slot);
	if (!seen_seq)
		return XDP_DROP;
	if (*seen_seq == seq + 1) {
		__sync_fetch_and_add(&st->duplicates, 1);
		return XDP_DROP;
	}
	*seen_seq = seq + 1;
	__sync_fetch_and_add(&st->unique, 1);
	if (seq + 1 > st->max_seq1)
		st->max_seq1 = seq + 1;
	else
		__sync_fetch_and_add(&st->reordered, 1);

	if ((seq & sample_mask) == 0) {
		sample = bpf_ringbuf_reserve(&samples, sizeof(*sample), 0);
		if (!sample) {
			__sync_fetch_and_add(&st->samples_lost, 1);
			return XDP_DROP;
		}
		*sample = bpf_ktime_get_ns() - bpf_be64_to_cpu(p->tstamp_ns);
		bpf_ringbuf_submit(sample, 0);
	}
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
