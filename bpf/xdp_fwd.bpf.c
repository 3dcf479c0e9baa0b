// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * fwd's XDP program: steer every frame the forwarder owns to the AF_XDP socket of
 * its rx queue, and pass to the kernel what the forwarder must not take:
 *   - ARP, and IPv6 neighbour discovery / router solicitation+advertisement,
 *     so the kernel keeps resolving neighbours for us (DESIGN.md section 1):
 *     ND is sent to multicast, link-local or our own addresses, all passed below;
 *     ND to someone else's global address is transit traffic and is forwarded,
 *     as Linux forwards it;
 *   - frames to one of the box's own addresses (local_v4/local_v6, filled by fwd);
 *   - link-local and multicast/broadcast traffic (routers do not forward it);
 *   - anything that is not IPv4/IPv6.
 * One instance of this program is loaded per port, so `xsks` is keyed by queue.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_QUEUES 64

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

/* The box's own IPv4 addresses (network byte order): traffic to them is the kernel's. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} local_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct in6_addr);
	__type(value, __u8);
} local_v6 SEC(".maps");

/* Why a frame went where it went; read by `fwd stats`. Keep in step with
 * XdpStat in fwd/src/xsk/prog.rs. */
enum xdp_stat {
	STAT_REDIRECT = 0,
	STAT_PASS_ARP,
	STAT_PASS_LOCAL,
	STAT_PASS_MCAST,
	STAT_PASS_OTHER,
	STAT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct ipv4_hdr {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__sum16 check;
	__be32 saddr;
	__be32 daddr;
};

struct ipv6_hdr {
	__be32 ver_tc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	struct in6_addr saddr;
	struct in6_addr daddr;
};

static __always_inline int count(__u32 stat, int action)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &stat);

	if (v)
		*v += 1;
	return action;
}

SEC("xdp")
int fwd_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *l3;
	__u16 proto;

	if ((void *)(eth + 1) > data_end)
		return count(STAT_PASS_OTHER, XDP_PASS);
	/* Group bit: broadcast and multicast are not forwarded by a router. */
	if (eth->h_dest[0] & 1)
		return count(STAT_PASS_MCAST, XDP_PASS);

	proto = eth->h_proto;
	l3 = eth + 1;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vh = l3;

		if ((void *)(vh + 1) > data_end)
			return count(STAT_PASS_OTHER, XDP_PASS);
		proto = vh->proto;
		l3 = vh + 1;
	}

	if (proto == bpf_htons(ETH_P_ARP))
		return count(STAT_PASS_ARP, XDP_PASS);

	if (proto == bpf_htons(ETH_P_IP)) {
		struct ipv4_hdr *ip = l3;
		__u32 daddr;

		if ((void *)(ip + 1) > data_end)
			return count(STAT_PASS_OTHER, XDP_PASS);
		daddr = ip->daddr;
		/* 224.0.0.0/4 multicast and the limited broadcast. */
		if ((bpf_ntohl(daddr) & 0xf0000000) == 0xe0000000 || daddr == 0xffffffff)
			return count(STAT_PASS_MCAST, XDP_PASS);
		if (bpf_map_lookup_elem(&local_v4, &daddr))
			return count(STAT_PASS_LOCAL, XDP_PASS);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6_hdr *ip6 = l3;
		__u8 first;

		if ((void *)(ip6 + 1) > data_end)
			return count(STAT_PASS_OTHER, XDP_PASS);
		first = ip6->daddr.in6_u.u6_addr8[0];
		/* ff00::/8 multicast, fe80::/10 link-local: never forwarded. */
		if (first == 0xff ||
		    (first == 0xfe && (ip6->daddr.in6_u.u6_addr8[1] & 0xc0) == 0x80))
			return count(STAT_PASS_MCAST, XDP_PASS);
		if (bpf_map_lookup_elem(&local_v6, &ip6->daddr))
			return count(STAT_PASS_LOCAL, XDP_PASS);
	} else {
		return count(STAT_PASS_OTHER, XDP_PASS);
	}

	/* No socket on this queue (yet): the kernel keeps the frame. */
	count(STAT_REDIRECT, 0);
	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
