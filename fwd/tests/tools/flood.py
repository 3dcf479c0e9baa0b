#!/usr/bin/python3
"""Floods a router port with one UDP frame as fast as one core sends it.

flood.py IFACE DST_MAC DST_IP COUNT   send COUNT copies of a 64-byte UDP frame
                                      (198.18.0.2:40000 -> DST_IP:7200) on IFACE
                                      with AF_PACKET, bypassing the qdisc; print
                                      {"sent": n, "secs": s} as JSON
"""
import json, socket, struct, sys, time

SOL_PACKET, PACKET_QDISC_BYPASS = 263, 20


def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def frame(dst_mac, dst_ip):
    payload = b"fwd-flood" + b"\0" * 9
    udp = struct.pack("!HHHH", 40000, 7200, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     socket.inet_aton("198.18.0.2"), socket.inet_aton(dst_ip))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex("020000000099") + b"\x08\x00"
    return eth + ip + udp


def main():
    iface, mac, dst, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    f = frame(mac, dst)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
    s.bind((iface, 0))
    sent, t0 = 0, time.time()
    send = s.send
    for _ in range(count):
        try:
            send(f)
            sent += 1
        except OSError:
            pass
    print(json.dumps({"sent": sent, "secs": time.time() - t0}), flush=True)


if __name__ == "__main__":
    main()
