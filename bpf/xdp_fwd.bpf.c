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

/*
 * Traffic to the box's own addresses that is fwd's, not the kernel's: replies to
 * connections fwd masqueraded or SNATed to a local address (their ports / ICMP
 * echo ids are fwd's NAT range, which Linux's ip_local_port_range, 32768-60999 by
 * default, leaves alone), and port forwards (DNAT) of TCP/UDP ports.
 */
struct port_range {
	__u16 lo;
	__u16 hi;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct port_range);
} nat_ports SEC(".maps");

/* Bitmap of DNAT'd destination ports: word (proto_idx * 1024 + port / 64), bit
 * port % 64; proto_idx 0 = TCP, 1 = UDP. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2048);
	__type(key, __u32);
	__type(value, __u64);
} dnat_ports SEC(".maps");

/* Why a frame went where it went; read by `fwd stats`. Keep in step with
 * XdpStat in fwd/src/xsk/prog.rs. */
enum xdp_stat {
	STAT_REDIRECT = 0,
	STAT_PASS_ARP,
	STAT_PASS_LOCAL,
	STAT_PASS_MCAST,
	STAT_PASS_OTHER,
	STAT_NAT_LOCAL,
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

static __always_inline int in_nat_range(__u16 port)
{
	__u32 zero = 0;
	struct port_range *r = bpf_map_lookup_elem(&nat_ports, &zero);

	return r && r->lo && port >= r->lo && port <= r->hi;
}

static __always_inline int dnat_port(__u8 proto, __u16 port)
{
	__u32 idx = (proto == IPPROTO_TCP ? 0 : 1024) + port / 64;
	__u64 *w;

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return 0;
	w = bpf_map_lookup_elem(&dnat_ports, &idx);
	return w && (*w >> (port % 64)) & 1;
}

/*
 * Whether a packet to one of our addresses belongs to fwd: `l4` is its transport
 * header, `proto` its protocol, `icmp_echo_reply`/`icmp_errors` the ICMP or ICMPv6
 * numbers to look at.
 */
static __always_inline int fwd_owns(void *l4, void *data_end, __u8 proto, int v6)
{
	__u8 icmp = v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP;

	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		__be16 *ports = l4;

		if ((void *)(ports + 2) > data_end)
			return 0;
		return in_nat_range(bpf_ntohs(ports[1])) || dnat_port(proto, bpf_ntohs(ports[1]));
	}
	if (proto == icmp) {
		__u8 *h = l4;
		__u8 type;

		if ((void *)(h + 8) > data_end)
			return 0;
		type = h[0];
		/* Echo reply: the id is what NAT allocated. */
		if (type == (v6 ? 129 : 0))
			return in_nat_range(bpf_ntohs(*(__be16 *)(h + 4)));
		/* Errors (v4: unreach, time exceeded, param problem; v6: 1-4) quoting a
		 * packet we sent: its source port / echo id is ours. */
		if ((!v6 && (type == 3 || type == 11 || type == 12)) || (v6 && type >= 1 && type <= 4)) {
			__u8 *inner = h + 8;
			__u8 inner_proto;
			__u8 *inner_l4;

			if (v6) {
				if ((void *)(inner + 40) > data_end)
					return 0;
				inner_proto = inner[6];
				inner_l4 = inner + 40;
			} else {
				if ((void *)(inner + 20) > data_end)
					return 0;
				inner_proto = inner[9];
				inner_l4 = inner + (inner[0] & 0xf) * 4;
			}
			if ((void *)(inner_l4 + 8) > data_end)
				return 0;
			/* The quoted packet left from our address: its source port is a NAT
			 * port, or a forwarded port (replies of a port forward). */
			if (inner_proto == IPPROTO_TCP || inner_proto == IPPROTO_UDP) {
				__u16 sport = bpf_ntohs(*(__be16 *)inner_l4);

				return in_nat_range(sport) || dnat_port(inner_proto, sport);
			}
			if (inner_proto == icmp)
				return in_nat_range(bpf_ntohs(*(__be16 *)(inner_l4 + 4)));
		}
	}
	return 0;
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
		if (bpf_map_lookup_elem(&local_v4, &daddr)) {
			__u8 *l4 = (__u8 *)ip + (ip->ver_ihl & 0xf) * 4;

			if (!fwd_owns(l4, data_end, ip->protocol, 0))
				return count(STAT_PASS_LOCAL, XDP_PASS);
			count(STAT_NAT_LOCAL, 0);
		}
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
		if (bpf_map_lookup_elem(&local_v6, &ip6->daddr)) {
			/* Extension headers before TCP/UDP/ICMPv6 are rare on NATed flows;
			 * such packets stay the kernel's. */
			if (!fwd_owns(ip6 + 1, data_end, ip6->nexthdr, 1))
				return count(STAT_PASS_LOCAL, XDP_PASS);
			count(STAT_NAT_LOCAL, 0);
		}
	} else {
		return count(STAT_PASS_OTHER, XDP_PASS);
	}

	/* No socket on this queue (yet): the kernel keeps the frame. */
	count(STAT_REDIRECT, 0);
	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
