#!/usr/bin/python3
"""Plays scripted connections through a stateful forwarder (fwd, or Linux with
iptables) one packet at a time and records what arrived, for the conntrack/NAT
differential test (fwd/tests/ct_differential.rs). Needs scapy (Debian's python3).

run GEN_NS GEN_IF MAC_A SINK_NS SINK_IF MAC_B [EXTRA,...]
    enter each namespace (setns) for one AF_PACKET socket on its interface, then
    play FLOWS in order: each step is one IPv4 packet sent from the generator ('g',
    to the forwarder's MAC_A) or the sink ('s', to MAC_B). A step waits until its
    packet arrives on the other side, or an answer (TCP reset, ICMP error) comes
    back on its own side, or WAIT seconds pass. Replies are addressed to what the
    other side really received (the translated tuple), so the script follows the
    forwarder's NAT choices. Prints one JSON line: {"steps": [...]}, each step with
    its id, side, what was sent, what arrived (fields and the IP packet in hex, or
    null), the answers, and whether it was skipped (a packet it answers never came).
    EXTRA names optional steps to play too (see script()): sub-cases fwd is known to
    get wrong, each run by a test of its own.

The IP identification field names each step's packet (1, 2, ...); both forwarders
keep it. The end hosts' own kernels must stay silent (their OUTPUT drops) so that
everything on the wire is the script's or the forwarder's.
"""
import ctypes, json, os, select, socket, struct, sys, time

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.packet import Raw

WAIT = 0.5
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
CLONE_NEWNET = 0x40000000

GEN, SINK, GW_B = "198.18.0.2", "198.19.0.2", "198.19.0.1"
# A second LAN host (the forwarder knows its MAC as the generator's).
GEN2 = "198.18.0.3"


def enter(ns):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open("/run/netns/" + ns, os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns " + ns)
    os.close(fd)


def open_port(ns, iface):
    enter(ns)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    return s


def l4_fields(proto, b):
    """Ports/flags (TCP, UDP) or type/code/id (ICMP) of a transport header."""
    if proto == 6 and len(b) >= 14:
        sp, dp, seq, ack = struct.unpack("!HHII", b[:12])
        return {"sport": sp, "dport": dp, "seq": seq, "ack": ack, "flags": b[13]}
    if proto in (6, 17) and len(b) >= 4:
        sp, dp = struct.unpack("!HH", b[:4])
        return {"sport": sp, "dport": dp}
    if proto == 1 and len(b) >= 8:
        d = {"type": b[0], "code": b[1]}
        if b[0] in (0, 8):
            d["id"], d["seq"] = struct.unpack("!HH", b[4:8])
        return d
    return {}


def fields(ip):
    """What a test compares about one IPv4 packet: addresses, TTL, transport
    header fields and, for an ICMP error, the same of the packet it quotes."""
    hl = (ip[0] & 0xF) * 4
    proto = ip[9]
    d = {
        "src": socket.inet_ntoa(ip[12:16]),
        "dst": socket.inet_ntoa(ip[16:20]),
        "proto": proto,
        "ttl": ip[8],
        "len": struct.unpack("!H", ip[2:4])[0],
    }
    d.update(l4_fields(proto, ip[hl:]))
    if proto == 1 and d.get("type") in (3, 4, 5, 11, 12) and len(ip) >= hl + 28:
        inner = ip[hl + 8 :]
        ihl = (inner[0] & 0xF) * 4
        q = {
            "src": socket.inet_ntoa(inner[12:16]),
            "dst": socket.inet_ntoa(inner[16:20]),
            "proto": inner[9],
            "ipid": struct.unpack("!H", inner[4:6])[0],
        }
        q.update(l4_fields(inner[9], inner[ihl:]))
        q.pop("seq", None), q.pop("ack", None)
        d["quoted"] = q
    return d


class Flow:
    """One connection's endpoints as the generator or sink sent its first packet,
    and as the other side saw them (set when that packet arrives)."""

    def __init__(self, name, side, src, dst, proto, sport=0, dport=0):
        self.name, self.side = name, side
        self.src, self.dst, self.proto = src, dst, proto
        self.sport, self.dport = sport, dport
        self.seen = None  # fields() of the first packet at the far end
        self.answer = None  # fields() of the first answer at the flow's own side

    def orig(self, l4, payload=b""):
        return IP(src=self.src, dst=self.dst) / l4(self.sport, self.dport) / payload

    def reply(self, l4, payload=b""):
        s = self.seen
        if s is None:
            return None
        return IP(src=s["dst"], dst=s["src"]) / l4(s.get("dport", 0), s.get("sport", 0)) / payload


def tcp(flags, seq, ack=0, window=64240, options=()):
    return lambda sp, dp: TCP(sport=sp, dport=dp, flags=flags, seq=seq % 2**32, ack=ack,
                              window=window, options=list(options))


def udp():
    return lambda sp, dp: UDP(sport=sp, dport=dp)


def script(extras=()):
    """The flows, in the order played: (step id, side, flow, build) where build()
    returns the scapy packet (or None: skip, the packet it answers never came).
    build gets the flow as its argument: a closure over the loop variable would
    see the last flow."""
    steps = []

    def st(sid, side, flow, build, extra=None):
        if extra is None or extra in extras:
            steps.append((sid, side, flow, build))

    def tcp_open(f, iss, irs):
        """Handshake: SYN from the flow's side, SYN+ACK back, ACK."""
        st(f.name + ".syn", f.side, f, lambda f: f.orig(tcp("S", iss)))
        st(f.name + ".synack", other(f.side), f, lambda f: f.reply(tcp("SA", irs, iss + 1)))
        st(f.name + ".ack", f.side, f, lambda f: f.orig(tcp("A", iss + 1, irs + 1)))

    def other(side):
        return "s" if side == "g" else "g"

    # Out through SNAT to a non-local address (source port kept), data both
    # ways, closed by the generator: TIME_WAIT, ASSURED.
    f = Flow("web80", "g", GEN, SINK, 6, 40001, 80)
    tcp_open(f, 1000, 5000)
    st("web80.data", "g", f, lambda f: f.orig(tcp("PA", 1001, 5001), b"G" * 100))
    st("web80.data-reply", "s", f, lambda f: f.reply(tcp("PA", 5001, 1101), b"S" * 60))
    st("web80.fin", "g", f, lambda f: f.orig(tcp("FA", 1101, 5061)))
    st("web80.fin-reply", "s", f, lambda f: f.reply(tcp("FA", 5061, 1102)))
    st("web80.last-ack", "g", f, lambda f: f.orig(tcp("A", 1102, 5062)))

    # Closed by the sink first (FIN in the reply direction).
    f = Flow("close-by-sink", "g", GEN, SINK, 6, 40002, 443)
    tcp_open(f, 2000, 6000)
    st("close-by-sink.fin", "s", f, lambda f: f.reply(tcp("FA", 6001, 2001)))
    st("close-by-sink.fin-reply", "g", f, lambda f: f.orig(tcp("FA", 2001, 6002)))
    st("close-by-sink.last-ack", "s", f, lambda f: f.reply(tcp("A", 6002, 2002)))

    # Left open: ESTABLISHED, ASSURED.
    f = Flow("open443", "g", GEN, SINK, 6, 40003, 443)
    tcp_open(f, 3000, 7000)
    st("open443.data", "g", f, lambda f: f.orig(tcp("PA", 3001, 7001), b"x" * 10))
    st("open443.data-ack", "s", f, lambda f: f.reply(tcp("A", 7001, 3011)))
    # Far beyond the receiver's window: Linux's tcp_in_window makes it INVALID.
    st("open443.out-of-window", "g", f, lambda f: f.orig(tcp("PA", 3011 + 10**8, 7001), b"w" * 10), extra="window")
    # Data from further back than the receiver's largest window: an old duplicate,
    # which tcp_in_window ignores (let through, the connection untouched).
    st("open443.old-duplicate", "g", f, lambda f: f.orig(tcp("PA", 3011 - 10**5, 7001), b"o" * 10), extra="window")
    # A RST behind what the other side acked: INVALID (RFC 5961 3.2). From the
    # client: untranslated, the sink's would be routed back out (a redirect).
    st("open443.rst-behind", "g", f, lambda f: f.orig(tcp("R", 3011 - 1000)), extra="window")

    # Window scaling (RFC 7323), both SYNs with shift 7: the server's window of
    # 1000 (unscaled on its SYN/ACK) means 128000 bytes once established, so data
    # 100000 bytes ahead is in window only with the scale, and data 300000 bytes
    # ahead is not in it at all (nor within the window's slack for TCPs that send
    # a little more than allowed).
    f = Flow("wscale", "g", GEN, SINK, 6, 40070, 443)
    ws = [("WScale", 7)]
    st("wscale.syn", "g", f, lambda f: f.orig(tcp("S", 40000, options=ws)), extra="wscale")
    st("wscale.synack", "s", f, lambda f: f.reply(tcp("SA", 50000, 40001, window=1000, options=ws)), extra="wscale")
    st("wscale.ack", "g", f, lambda f: f.orig(tcp("A", 40001, 50001, window=502)), extra="wscale")
    st("wscale.window", "s", f, lambda f: f.reply(tcp("A", 50001, 40001, window=1000)), extra="wscale")
    st("wscale.data", "g", f, lambda f: f.orig(tcp("PA", 40001 + 100000, 50001, window=502), b"s" * 100), extra="wscale")
    st("wscale.beyond", "g", f, lambda f: f.orig(tcp("PA", 40001 + 300000, 50001, window=502), b"b" * 100), extra="wscale")

    # Reset by the sink: CLOSE.
    f = Flow("reset", "g", GEN, SINK, 6, 40004, 80)
    tcp_open(f, 4000, 8000)
    st("reset.rst", "s", f, lambda f: f.reply(tcp("R", 8001)))

    # A mid-stream ACK without a connection: nf_conntrack_tcp_loose picks it up
    # (ctstate NEW, TCP state ESTABLISHED), the answer makes it a connection.
    f = Flow("loose", "g", GEN, SINK, 6, 40005, 80)
    st("loose.ack", "g", f, lambda f: f.orig(tcp("A", 9000, 19000)))
    st("loose.reply", "s", f, lambda f: f.reply(tcp("PA", 19000, 9000), b"r" * 10))
    st("loose.ack2", "g", f, lambda f: f.orig(tcp("A", 9000, 19010)))

    # SYN+FIN: invalid flags, INVALID, dropped.
    f = Flow("synfin", "g", GEN, SINK, 6, 40006, 80)
    st("synfin.syn", "g", f, lambda f: f.orig(tcp("SF", 100)))
    # SYN+ACK with no connection (not a valid first packet): INVALID too.
    f = Flow("stray-synack", "g", GEN, SINK, 6, 40007, 80)
    st("stray-synack.synack", "g", f, lambda f: f.orig(tcp("SA", 200, 300)))
    # A port the rules do not allow out: policy DROP.
    f = Flow("deny8000", "g", GEN, SINK, 6, 40008, 8000)
    st("deny8000.syn", "g", f, lambda f: f.orig(tcp("S", 300)))

    # From outside: ssh is refused with a reset, telnet dropped by policy, UDP
    # refused with an ICMP error, ping refused with another.
    f = Flow("in-ssh", "s", SINK, GEN, 6, 40010, 22)
    st("in-ssh.syn", "s", f, lambda f: f.orig(tcp("S", 555)))
    f = Flow("in-telnet", "s", SINK, GEN, 6, 40011, 23)
    st("in-telnet.syn", "s", f, lambda f: f.orig(tcp("S", 556)))
    f = Flow("in-ack", "s", SINK, GEN, 6, 40012, 80)
    st("in-ack.ack", "s", f, lambda f: f.orig(tcp("A", 557, 999)))
    f = Flow("in-udp", "s", SINK, GEN, 17, 40013, 53)
    st("in-udp.query", "s", f, lambda f: f.orig(udp(), b"q" * 20))
    f = Flow("in-ping", "s", SINK, GEN, 1)
    st("in-ping.echo", "s", f, lambda f: IP(src=SINK, dst=GEN) / ICMP(type=8, id=0x4444, seq=1) / (b"p" * 32))

    # UDP request and response through SNAT.
    f = Flow("dns", "g", GEN, SINK, 17, 40020, 53)
    st("dns.query", "g", f, lambda f: f.orig(udp(), b"Q" * 30))
    st("dns.answer", "s", f, lambda f: f.reply(udp(), b"A" * 60))

    # UDP the sink answers with port unreachable: the ICMP error is RELATED and
    # comes back translated (outer destination and the quoted source).
    f = Flow("unreach", "g", GEN, SINK, 17, 40030, 5000)
    st("unreach.dgram", "g", f, lambda f: f.orig(udp(), b"u" * 40))
    st("unreach.icmp", "s", f, lambda f: icmp_error(f, SINK, 3, 3))
    # An ICMP error about no connection: INVALID, dropped.
    st("unknown.icmp", "s", None, lambda f: IP(src=SINK, dst=GEN) / ICMP(type=3, code=3) / bytes(
        IP(src=GEN, dst=SINK, id=77) / UDP(sport=40099, dport=5000) / (b"z" * 4))[:28])

    # MASQUERADE: Linux keeps the source port, fwd maps it into 61000-65535.
    f = Flow("masq", "g", GEN, SINK, 17, 40050, 7000)
    st("masq.dgram", "g", f, lambda f: f.orig(udp(), b"m" * 16))
    st("masq.reply", "s", f, lambda f: f.reply(udp(), b"M" * 16))
    # An ICMP error from outside about it, to the forwarder's own address.
    st("masq.icmp", "s", f, lambda f: icmp_error(f, SINK, 3, 3))

    # Ping out and its reply.
    f = Flow("ping", "g", GEN, SINK, 1)
    st("ping.echo", "g", f, lambda f: IP(src=GEN, dst=SINK) / ICMP(type=8, id=0x1234, seq=1) / (b"e" * 32))
    st("ping.reply", "s", f, lambda f: echo_reply(f))

    # A SYN sent twice before the answer: both NEW (the entry has no reply yet).
    f = Flow("retrans", "g", GEN, SINK, 6, 40060, 80)
    st("retrans.syn", "g", f, lambda f: f.orig(tcp("S", 600)))
    st("retrans.syn-again", "g", f, lambda f: f.orig(tcp("S", 600)))
    st("retrans.synack", "s", f, lambda f: f.reply(tcp("SA", 700, 601)))
    st("retrans.ack", "g", f, lambda f: f.orig(tcp("A", 601, 701)))

    # Refused by the sink: the only answer is a reset, the entry dies at once.
    f = Flow("refused", "g", GEN, SINK, 6, 40061, 80)
    st("refused.syn", "g", f, lambda f: f.orig(tcp("S", 800)))
    st("refused.rst", "s", f, lambda f: f.reply(tcp("RA", 0, 801)))

    # A new SYN on the tuple of a connection in TIME_WAIT reopens it (RFC 1122
    # 4.2.2.13): a new entry, a new NAT binding.
    f = Flow("reopen", "g", GEN, SINK, 6, 40002, 443)
    tcp_open(f, 2500, 6500)

    # Out of state: FIN+ACK and RST with no connection are INVALID.
    f = Flow("stray-fin", "g", GEN, SINK, 6, 40062, 80)
    st("stray-fin.fin", "g", f, lambda f: f.orig(tcp("FA", 900, 901)))
    f = Flow("stray-rst", "g", GEN, SINK, 6, 40063, 80)
    st("stray-rst.rst", "g", f, lambda f: f.orig(tcp("R", 950)))

    # Two datagrams before the answer: both NEW.
    f = Flow("udp-twice", "g", GEN, SINK, 17, 40064, 53)
    st("udp-twice.query", "g", f, lambda f: f.orig(udp(), b"1" * 12))
    st("udp-twice.query-again", "g", f, lambda f: f.orig(udp(), b"2" * 12))
    st("udp-twice.answer", "s", f, lambda f: f.reply(udp(), b"3" * 12))

    # An echo reply nobody asked for: INVALID. An ICMP error about the ping: RELATED,
    # its quoted echo request translated back (address and id).
    st("stray-echo-reply", "s", None, lambda f: IP(src=SINK, dst=GEN) / ICMP(type=0, id=0x5555, seq=1) / (b"r" * 8))
    f = Flow("ping2", "g", GEN, SINK, 1)
    st("ping2.echo", "g", f, lambda f: IP(src=GEN, dst=SINK) / ICMP(type=8, id=0x2345, seq=7) / (b"f" * 24))
    st("ping2.time-exceeded", "s", f, lambda f: icmp_error(f, SINK, 11, 0))

    # SNAT clashes: a second LAN host on web80's source port (its entry, in
    # TIME_WAIT, holds 198.19.0.50:40001): the port must change, within its class
    # (1-511, 600-1023, 1024-65535); Linux picks at random, so only the class is
    # compared. Then the same for a port in 600-1023.
    f = Flow("low", "g", GEN, SINK, 6, 700, 80)
    tcp_open(f, 30000, 31000)
    for name, sport in (("clash", 40001), ("clash-low", 700)):
        f = Flow(name, "g", GEN2, SINK, 6, sport, 80)
        tcp_open(f, 32000 + sport, 33000)
    # And for an echo id: the second host pings with the first one's id.
    f = Flow("ping-clash", "g", GEN2, SINK, 1)
    st("ping-clash.echo", "g", f, lambda f: IP(src=GEN2, dst=SINK) / ICMP(type=8, id=0x1234, seq=2) / (b"c" * 32))
    st("ping-clash.reply", "s", f, lambda f: echo_reply(f))

    # The port forward: outside connects to the forwarder's 8080, reaches the
    # generator's port 80; an ICMP error from the inside about it goes out
    # translated; then a full close.
    f = Flow("dnat", "s", SINK, GW_B, 6, 40040, 8080)
    tcp_open(f, 11000, 21000)
    st("dnat.data", "s", f, lambda f: f.orig(tcp("PA", 11001, 21001), b"d" * 50))
    st("dnat.data-reply", "g", f, lambda f: f.reply(tcp("PA", 21001, 11051), b"D" * 70))
    st("dnat.icmp", "g", f, lambda f: icmp_error(f, GEN, 3, 4, mtu=1400))
    # Path MTU discovery from outside: an ICMP error about the server's answer, to
    # the forwarder's own address, quoting the forwarded port as source.
    st("dnat.icmp-out", "s", f, lambda f: icmp_error_about(f.answer, SINK, 3, 4, mtu=1300), extra="dnat-icmp-out")
    st("dnat.fin", "s", f, lambda f: f.orig(tcp("FA", 11051, 21071)))
    st("dnat.fin-reply", "g", f, lambda f: f.reply(tcp("FA", 21071, 11052)))
    st("dnat.last-ack", "s", f, lambda f: f.orig(tcp("A", 11052, 21072)))
    return steps


def icmp_error(f, src, t, c, mtu=0):
    """An ICMP error from `src` about the flow's first packet as it arrived."""
    return icmp_error_about(f.seen, src, t, c, mtu)


def icmp_error_about(seen, src, t, c, mtu=0):
    """An ICMP error from `src` about a packet as it arrived (fields() + hex)."""
    if seen is None:
        return None
    quoted = bytes.fromhex(seen["hex"])
    hl = (quoted[0] & 0xF) * 4
    return IP(src=src, dst=seen["src"]) / ICMP(type=t, code=c, nexthopmtu=mtu) / Raw(quoted[: hl + 8])


def echo_reply(f):
    s = f.seen
    if s is None:
        return None
    return IP(src=s["dst"], dst=s["src"]) / ICMP(type=0, id=s["id"], seq=s["seq"]) / (b"e" * 32)


def run(gen_ns, gen_if, mac_a, sink_ns, sink_if, mac_b, extras=""):
    socks = {"g": open_port(gen_ns, gen_if), "s": open_port(sink_ns, sink_if)}
    own = {k: s.getsockname()[4] for k, s in socks.items()}
    to = {"g": bytes.fromhex(mac_a.replace(":", "")), "s": bytes.fromhex(mac_b.replace(":", ""))}
    by_sock = {s: k for k, s in socks.items()}
    out = []
    deadline = time.time() + 40
    for n, (sid, side, flow, build) in enumerate(script(extras.split(",")), start=1):
        assert time.time() < deadline, "ct_flows: script took over 40 s"
        pkt = build(flow)
        rec = {"id": sid, "side": side, "sent": None, "arrived": None, "answers": [], "skipped": pkt is None}
        out.append(rec)
        if pkt is None:
            continue
        pkt[IP].id = n
        pkt[IP].ttl = 64
        ip = bytes(pkt)
        rec["sent"] = fields(ip)
        socks[side].send(to[side] + own[side] + b"\x08\x00" + ip)
        end = time.time() + WAIT
        while time.time() < end and rec["arrived"] is None and not rec["answers"]:
            r, _, _ = select.select(list(socks.values()), [], [], max(0.0, end - time.time()))
            for s in r:
                frame, addr = s.recvfrom(65535)
                if addr[2] == PACKET_OUTGOING or frame[12:14] != b"\x08\x00":
                    continue
                got = frame[14:]
                at = by_sock[s]
                ipid = struct.unpack("!H", got[4:6])[0]
                if at != side and ipid == n:
                    rec["arrived"] = dict(fields(got), hex=got.hex())
                    if flow is not None and flow.seen is None and side == flow.side:
                        flow.seen = rec["arrived"]
                    if flow is not None and flow.answer is None and side != flow.side:
                        flow.answer = rec["arrived"]
                elif at == side:
                    rec["answers"].append(fields(got))
                else:
                    rec.setdefault("stray", []).append(fields(got))
    print(json.dumps({"steps": out}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) in (8, 9) and sys.argv[1] == "run":
        run(*sys.argv[2:9])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
