#!/usr/bin/python3
"""Malformed frames, one class at a time, for fwd/tests/robustness.rs (scapy; run with
the system python, which has python3-scapy).

list                          print the classes as JSON: [{"name", "dst"}], in order
send IFACE DST_MAC NAME COUNT send COUNT frames of class NAME on IFACE (AF_PACKET),
                              Ethernet destination DST_MAC (the router's port)
sniff IFACE STOP_FILE SECS    count frames on IFACE by IP destination until STOP_FILE
                              exists or SECS passed; print {"dst": count} as JSON

Class i is addressed to 198.19.128.(10+i) or 2001:db8:c::(10+i), routed through the
router to the sink, so the sink side tells which classes were forwarded.
"""
import json, os, socket, struct, sys, time

from scapy.all import (Ether, Dot1Q, Dot1AD, IP, IPv6, TCP, UDP, IPOption_RR,
                       IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, IPv6ExtHdrFragment, raw)

SRC_MAC = "02:00:00:00:00:99"  # the router does not care who sends
PAYLOAD = b"fwd-malformed" + b"x" * 30


def v4(i):
    return "198.19.128.%d" % (10 + i)


def v6(i):
    return "2001:db8:c::%x" % (10 + i)


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def fix_ip_csum(f, l3=14):
    """Recomputes the IPv4 header checksum over the 20-byte base header (so that a
    length lie is the only thing wrong)."""
    f = bytearray(f)
    hl = max(20, (f[l3] & 0xF) * 4)
    f[l3 + 10:l3 + 12] = b"\0\0"
    f[l3 + 10:l3 + 12] = struct.pack("!H", csum(bytes(f[l3:l3 + hl])))
    return bytes(f)


def ip4(i, **kw):
    return IP(src="198.18.0.2", dst=v4(i), **kw)


def ip6(i, **kw):
    return IPv6(src="2001:db8:a::2", dst=v6(i), **kw)


def udp():
    return UDP(sport=40000, dport=9) / PAYLOAD


def build(name, i, mac):
    e = Ether(dst=mac, src=SRC_MAC)
    if name == "good_v4":
        return raw(e / ip4(i) / udp())
    if name == "good_v6":
        return raw(e / ip6(i) / udp())
    if name == "ipv4_truncated_header":
        return raw(e / ip4(i) / udp())[:14 + 12]
    if name == "ipv4_ihl_below_5":
        f = bytearray(raw(e / ip4(i) / udp()))
        f[14] = 0x44
        return fix_ip_csum(f)
    if name == "ipv4_total_len_past_frame":
        f = bytearray(raw(e / ip4(i) / udp()))
        f[16:18] = struct.pack("!H", len(f) - 14 + 20)
        return fix_ip_csum(f)
    if name == "ipv4_total_len_below_header":
        f = bytearray(raw(e / ip4(i) / udp()))
        f[16:18] = struct.pack("!H", 16)
        return fix_ip_csum(f)
    if name == "ipv4_bad_checksum":
        f = bytearray(raw(e / ip4(i) / udp()))
        f[24] ^= 0xFF
        return bytes(f)
    if name == "ipv4_version_6":
        f = bytearray(raw(e / ip4(i) / udp()))
        f[14] = 0x65
        return fix_ip_csum(f)
    if name == "ipv4_options_rr":
        return raw(e / ip4(i, options=[IPOption_RR(length=11, routers=["0.0.0.0", "0.0.0.0"])]) / udp())
    if name == "ipv4_ttl_1":
        return raw(e / ip4(i, ttl=1) / udp())
    if name == "ipv4_ttl_0":
        return raw(e / ip4(i, ttl=0) / udp())
    if name == "ipv4_non_first_fragment":
        return raw(e / ip4(i, frag=100, proto=17, id=77) / PAYLOAD)
    if name == "ipv4_tcp_data_offset_2":
        return raw(e / ip4(i) / TCP(sport=40000, dport=80, dataofs=2, flags="S"))
    if name == "ipv4_tcp_cut_to_10_bytes":
        return raw(e / ip4(i, proto=6) / raw(TCP(sport=40000, dport=80, flags="S"))[:10])
    if name == "ipv6_payload_len_past_frame":
        f = bytearray(raw(e / ip6(i) / udp()))
        f[18:20] = struct.pack("!H", len(f) - 54 + 16)
        return bytes(f)
    if name == "ipv6_payload_len_short":
        # Trailing bytes past the payload length: Ethernet-padding-like.
        f = bytearray(raw(e / ip6(i) / udp()))
        return bytes(f) + b"\0" * 8
    if name == "ipv6_9_ext_headers":
        p = ip6(i)
        for _ in range(9):
            p = p / IPv6ExtHdrDestOpt()
        return raw(e / p / udp())
    if name == "ipv6_ext_header_cut":
        # Destination options saying 16 bytes with 8 in the payload.
        return raw(e / ip6(i, nh=60, plen=8) / bytes([59, 1, 1, 4, 0, 0, 0, 0]))
    if name == "ipv6_hop_by_hop_second":
        return raw(e / ip6(i) / IPv6ExtHdrDestOpt() / IPv6ExtHdrHopByHop() / udp())
    if name == "ipv6_non_first_fragment":
        return raw(e / ip6(i) / IPv6ExtHdrFragment(offset=100, nh=17, id=77) / PAYLOAD)
    if name == "ipv6_hop_limit_1":
        return raw(e / ip6(i, hlim=1) / udp())
    if name == "vlan_tagged":
        return raw(e / Dot1Q(vlan=5) / ip4(i) / udp())
    if name == "two_vlan_tags":
        return raw(e / Dot1AD(vlan=5) / Dot1Q(vlan=6) / ip4(i) / udp())
    if name == "wrong_dst_mac":
        return raw(Ether(dst="02:99:99:99:99:99", src=SRC_MAC) / ip4(i) / udp())
    raise SystemExit("unknown class " + name)


CLASSES = [
    ("good_v4", 4), ("good_v6", 6),
    ("ipv4_truncated_header", 4), ("ipv4_ihl_below_5", 4), ("ipv4_total_len_past_frame", 4),
    ("ipv4_total_len_below_header", 4), ("ipv4_bad_checksum", 4), ("ipv4_version_6", 4),
    ("ipv4_options_rr", 4), ("ipv4_ttl_1", 4), ("ipv4_ttl_0", 4),
    ("ipv4_non_first_fragment", 4), ("ipv4_tcp_data_offset_2", 4), ("ipv4_tcp_cut_to_10_bytes", 4),
    ("ipv6_payload_len_past_frame", 6), ("ipv6_payload_len_short", 6), ("ipv6_9_ext_headers", 6),
    ("ipv6_ext_header_cut", 6), ("ipv6_hop_by_hop_second", 6), ("ipv6_non_first_fragment", 6),
    ("ipv6_hop_limit_1", 6),
    ("vlan_tagged", 4), ("two_vlan_tags", 4), ("wrong_dst_mac", 4),
]


def dst_of(i):
    return v4(i) if CLASSES[i][1] == 4 else v6(i)


def main():
    cmd = sys.argv[1]
    if cmd == "list":
        print(json.dumps([{"name": n, "dst": dst_of(i)} for i, (n, _) in enumerate(CLASSES)]))
    elif cmd == "send":
        iface, mac, name, count = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
        i = [n for n, _ in CLASSES].index(name)
        f = build(name, i, mac)
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind((iface, 0))
        for _ in range(count):
            s.send(f)
            time.sleep(0.002)
    elif cmd == "sniff":
        iface, stop, secs = sys.argv[2], sys.argv[3], float(sys.argv[4])
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        s.bind((iface, 0))
        s.settimeout(0.1)
        counts = {}
        end = time.time() + secs
        while time.time() < end and not os.path.exists(stop):
            try:
                f, addr = s.recvfrom(65535)
            except socket.timeout:
                continue
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            l3, et = 14, struct.unpack("!H", f[12:14])[0]
            while et in (0x8100, 0x88A8) and len(f) >= l3 + 4:
                et = struct.unpack("!H", f[l3 + 2:l3 + 4])[0]
                l3 += 4
            if et == 0x0800 and len(f) >= l3 + 20:
                dst = socket.inet_ntop(socket.AF_INET, f[l3 + 16:l3 + 20])
            elif et == 0x86DD and len(f) >= l3 + 40:
                dst = socket.inet_ntop(socket.AF_INET6, f[l3 + 24:l3 + 40])
            else:
                continue
            counts[dst] = counts.get(dst, 0) + 1
        print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
