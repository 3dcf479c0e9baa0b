#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets (run from the repository root):
fuzz/corpus/pipeline/ gets real frames built with scapy (mode byte 0x00 = raw frame
from port 0, see fuzz_targets/pipeline.rs), fuzz/corpus/config/ the shipped configs
and a rules example, fuzz/corpus/iptables_import/ a few iptables-save dumps."""
import glob, hashlib, os, shutil
from scapy.all import (Ether, Dot1Q, Dot1AD, IP, IPv6, TCP, UDP, ICMP, ICMPv6EchoRequest,
                       IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt,
                       IPv6ExtHdrRouting, IPOption_RR, raw)

MAC_A = "02:00:00:00:00:0a"   # the fuzz box's port 0
SRC = "02:01:01:01:01:01"

def e():
    return Ether(dst=MAC_A, src=SRC)

frames = {
    "udp4": e() / IP(src="198.18.0.2", dst="198.19.128.1", ttl=64) / UDP(sport=1234, dport=53) / (b"x" * 20),
    "tcp4_syn": e() / IP(src="198.18.0.2", dst="198.19.128.1") / TCP(sport=40000, dport=80, flags="S"),
    "tcp4_lowport_syn": e() / IP(src="198.18.0.2", dst="198.19.128.1") / TCP(sport=80, dport=80, flags="S"),
    "icmp4_echo": e() / IP(src="198.18.0.2", dst="198.19.128.1") / ICMP() / (b"p" * 56),
    "icmp4_big": e() / IP(src="198.18.0.2", dst="198.19.128.1", flags="DF") / ICMP() / (b"p" * 1400),
    "ttl1": e() / IP(src="198.18.0.2", dst="198.19.128.1", ttl=1) / UDP(dport=9) / b"t",
    "noroute4": e() / IP(src="198.18.0.2", dst="203.0.113.1") / UDP(dport=9) / b"t",
    "ipopts": e() / IP(src="198.18.0.2", dst="198.19.128.1", options=[IPOption_RR()]) / UDP(dport=9),
    "frag4_first": e() / IP(src="198.18.0.2", dst="198.19.128.1", flags="MF", id=7) / UDP(dport=9) / (b"f" * 32),
    "frag4_later": e() / IP(src="198.18.0.2", dst="198.19.128.1", frag=5, proto=17, id=7) / (b"f" * 32),
    "vlan": Ether(dst=MAC_A, src=SRC) / Dot1Q(vlan=100) / IP(src="198.18.0.2", dst="198.19.128.1") / UDP(dport=9),
    "qinq": Ether(dst=MAC_A, src=SRC) / Dot1AD(vlan=10) / Dot1Q(vlan=20) / IPv6(src="2001:db8:a::2", dst="2001:db8:c::1") / UDP(dport=9),
    "udp6": e() / IPv6(src="2001:db8:a::2", dst="2001:db8:c::1") / UDP(sport=1234, dport=53) / (b"x" * 20),
    "ping6": e() / IPv6(src="2001:db8:a::2", dst="2001:db8:c::1") / ICMPv6EchoRequest() / (b"p" * 56),
    "hop6": e() / IPv6(src="2001:db8:a::2", dst="2001:db8:c::1", hlim=1) / UDP(dport=9),
    "v6_hbh_dst_rt": e() / IPv6(src="2001:db8:a::2", dst="2001:db8:c::1") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting() / TCP(dport=80, flags="S"),
    "v6_frag_first": e() / IPv6(src="2001:db8:a::2", dst="2001:db8:c::1") / IPv6ExtHdrFragment(m=1, id=9) / UDP(dport=9) / (b"f" * 16),
    "v6_frag_later": e() / IPv6(src="2001:db8:a::2", dst="2001:db8:c::1") / IPv6ExtHdrFragment(offset=3, nh=17, id=9) / (b"f" * 16),
    "v6_hbh_second": e() / IPv6(src="2001:db8:a::2", dst="2001:db8:c::1") / IPv6ExtHdrDestOpt() / IPv6ExtHdrHopByHop() / UDP(dport=9),
    "v6_ext_chain9": e() / IPv6(src="2001:db8:a::2", dst="2001:db8:c::1") / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / UDP(dport=9),
    "arp": Ether(dst="ff:ff:ff:ff:ff:ff", src=SRC, type=0x0806) / (b"\x00" * 28),
}

def write(dirname, name, data):
    os.makedirs(dirname, exist_ok=True)
    with open(os.path.join(dirname, name), "wb") as f:
        f.write(data)

for name, p in frames.items():
    write("fuzz/corpus/pipeline", name, b"\x00" + raw(p))
    # The same from port 1 with some room left in the buffer.
    if name in ("udp4", "udp6", "ping6"):
        write("fuzz/corpus/pipeline", name + "_port1", b"\x06" + raw(p))

for path in glob.glob("configs/*.toml"):
    shutil.copy(path, "fuzz/corpus/config/" + os.path.basename(path))
for path in glob.glob("fuzz/seeds/*.toml"):
    shutil.copy(path, "fuzz/corpus/config/" + os.path.basename(path))
for path in glob.glob("fuzz/seeds/*.rules"):
    shutil.copy(path, "fuzz/corpus/iptables_import/" + os.path.basename(path))
