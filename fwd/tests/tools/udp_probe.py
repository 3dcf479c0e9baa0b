#!/usr/bin/env python3
"""UDP probes with a known TTL / hop limit, and a sniffer that checks them on the wire.

send DST PORT COUNT TTL [FLOWS [GAP_US]]
                             send COUNT datagrams (payload "fwd-probe <seq>") with that TTL,
                             round robin over FLOWS source ports (default 1), GAP_US
                             microseconds apart (default 1000)
sniff IFACE PORT COUNT SECS  read frames on IFACE (AF_PACKET) until COUNT probes to PORT
                             arrived or SECS passed; print a JSON summary: received,
                             ttls (the distinct TTL/hop-limit values), bad_ip_checksum,
                             bad_udp_checksum, seqs_missing
"""
import json, socket, struct, sys, time

def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF

def send(dst, port, count, ttl, flows=1, gap_us=1000):
    v6 = ":" in dst
    socks = []
    for _ in range(flows):
        s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
        if v6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
        else:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        socks.append(s)
    for i in range(count):
        socks[i % flows].sendto(b"fwd-probe %d" % i + b"x" * 40, (dst, port))
        if gap_us:
            time.sleep(gap_us / 1e6)

def sniff(iface, port, count, secs):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind((iface, 0))
    s.settimeout(0.2)
    end = time.time() + secs
    got, ttls, bad_ip, bad_udp, seqs = 0, set(), 0, 0, set()
    while got < count and time.time() < end:
        try:
            f = s.recv(65535)
        except socket.timeout:
            continue
        et = struct.unpack("!H", f[12:14])[0]
        if et == 0x0800:
            ihl = (f[14] & 0xF) * 4
            ip = f[14:14 + ihl]
            if f[23] != 17:
                continue
            tot = struct.unpack("!H", f[16:18])[0]
            udp = f[14 + ihl:14 + tot]
            if struct.unpack("!H", udp[2:4])[0] != port:
                continue
            ttl = f[22]
            ip_ok = csum(ip) == 0
            pseudo = f[26:34] + struct.pack("!BBH", 0, 17, len(udp))
        elif et == 0x86DD:
            if f[20] != 17:
                continue
            plen = struct.unpack("!H", f[18:20])[0]
            udp = f[54:54 + plen]
            if struct.unpack("!H", udp[2:4])[0] != port:
                continue
            ttl = f[21]
            ip_ok = True
            pseudo = f[22:54] + struct.pack("!IxxxB", len(udp), 17)
        else:
            continue
        got += 1
        ttls.add(ttl)
        bad_ip += 0 if ip_ok else 1
        bad_udp += 0 if csum(pseudo + udp) == 0 else 1
        try:
            seqs.add(int(udp[8:].split(b" ")[1].rstrip(b"x")))
        except (IndexError, ValueError):
            pass
    print(json.dumps({"received": got, "ttls": sorted(ttls), "bad_ip_checksum": bad_ip,
                      "bad_udp_checksum": bad_udp,
                      "seqs_missing": len(set(range(count)) - seqs)}), flush=True)

if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
             *(int(a) for a in sys.argv[6:8]))
    else:
        sniff(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
