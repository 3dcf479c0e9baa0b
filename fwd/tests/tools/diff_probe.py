#!/usr/bin/env python3
"""Sends crafted IP packets as Ethernet frames and records which of them arrived, for
the differential test (fwd/tests/differential.rs) that builds the packets.

A packet file has one packet a line: `ID DIR HEX`, HEX being the IP packet as sent
(IPv4: ID is the IP identification field; IPv6: the flow label), DIR the side it is
sent from (`g`: generator, `s`: sink).

send IFACE DSTMAC FILE DIR [BATCH [GAP_US]]
    send every packet of FILE from side DIR out of IFACE (AF_PACKET), to DSTMAC, from
    IFACE's own MAC; BATCH frames (default 8) then a GAP_US pause (default 1000)
sniff IFACE FILE DIR SECS
    print "ready", then read frames arriving on IFACE until stdin closes (and 0.5 s
    more) or SECS pass; match them with FILE's packets not sent from side DIR and
    print one JSON line: arrived (ids), mangled ([id, why]: arrived with other bytes
    than sent, TTL/hop limit one lower and IPv4 checksum redone), duplicates, unknown
    (IP frames that are none of ours)
"""
import json, select, socket, struct, sys, time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def load(path):
    pkts = []
    with open(path) as f:
        for line in f:
            ident, side, hexbytes = line.split()
            pkts.append((int(ident), side, bytes.fromhex(hexbytes)))
    return pkts


def key(ip):
    """(version, id) of an IP packet: the IPv4 identification or the IPv6 flow label."""
    v = ip[0] >> 4
    if v == 4:
        return (4, struct.unpack("!H", ip[4:6])[0])
    if v == 6:
        return (6, struct.unpack("!I", ip[0:4])[0] & 0xFFFFF)
    return None


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def send(iface, dstmac, path, side, batch=8, gap_us=1000):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    src = s.getsockname()[4]
    dst = bytes.fromhex(dstmac.replace(":", ""))
    n = 0
    for _, d, ip in load(path):
        if d != side:
            continue
        etype = 0x0800 if ip[0] >> 4 == 4 else 0x86DD
        s.send(dst + src + struct.pack("!H", etype) + ip)
        n += 1
        if n % batch == 0 and gap_us:
            time.sleep(gap_us / 1e6)
    print(json.dumps({"sent": n}), flush=True)


def why_mangled(sent, got):
    if len(got) < len(sent):
        return "truncated to %d of %d bytes" % (len(got), len(sent))
    got = got[: len(sent)]
    if sent[0] >> 4 == 4:
        hl = (sent[0] & 0xF) * 4
        if got[8] != sent[8] - 1:
            return "TTL %d, sent %d" % (got[8], sent[8])
        if csum(got[:hl]) != 0:
            return "bad IPv4 header checksum"
        same = lambda b: b[:8] + b[9:10] + b[12:]
    else:
        if got[7] != sent[7] - 1:
            return "hop limit %d, sent %d" % (got[7], sent[7])
        same = lambda b: b[:7] + b[8:]
    if same(got) != same(sent):
        diff = next(i for i, (a, b) in enumerate(zip(got, sent)) if a != b)
        return "byte %d differs" % diff
    return None


def sniff(iface, path, side, secs):
    want = {key(ip): (ident, ip) for ident, d, ip in load(path) if d != side}
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    print("ready", flush=True)
    arrived, mangled, dups, unknown = [], [], [], 0
    seen = set()
    end = time.time() + secs
    stop_at = None
    stdin_open = True
    while time.time() < end and (stop_at is None or time.time() < stop_at):
        fds = [s, sys.stdin] if stdin_open else [s]
        r, _, _ = select.select(fds, [], [], 0.05)
        if sys.stdin in r:
            if not sys.stdin.readline():
                stdin_open = False
                stop_at = time.time() + 0.5
        if s not in r:
            continue
        frame, addr = s.recvfrom(65535)
        if addr[2] == PACKET_OUTGOING:
            continue
        etype = struct.unpack("!H", frame[12:14])[0]
        if etype not in (0x0800, 0x86DD):
            continue
        ip = frame[14:]
        k = key(ip)
        if k not in want:
            unknown += 1
            continue
        ident, sent = want[k]
        if ident in seen:
            dups.append(ident)
            continue
        seen.add(ident)
        why = why_mangled(sent, ip)
        if why:
            mangled.append([ident, why])
        arrived.append(ident)
    print(json.dumps({"arrived": sorted(arrived), "mangled": mangled,
                      "duplicates": dups, "unknown": unknown}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5],
             *(int(a) for a in sys.argv[6:8]))
    elif sys.argv[1] == "sniff":
        sniff(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
